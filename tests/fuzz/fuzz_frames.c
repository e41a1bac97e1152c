/*
 * libFuzzer target for the server's pure parsing: the front door
 * (SSLRequest, GSSENCRequest, CancelRequest, startup packet, password,
 * SASL messages: server_fuzz_front_door), the frame splitter of the
 * session pump (session_frame_length) and the reader of backend replies
 * (wire_next, wire_error_field, ...).
 *
 * Input: byte 0 chooses the authentication (bits 0-1: trust, SCRAM, md5,
 * cleartext) and how the rest arrives (bits 2-7: 0 at once, else in pieces
 * of that many bytes); the rest is what a client sends.
 *
 * Built with clang (-fsanitize=fuzzer,address,undefined) from the server
 * sources only: the backend is stubbed out (the front door never uses it).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "wire/wire.h"

/* ---- the backend, never reached from the parts fuzzed here ---- */
int backend_start(const backend_options *o, backend **out, char *err, size_t errlen) {
    (void)o; (void)out; (void)err; (void)errlen;
    abort();
}
const uint8_t *backend_startup_reply(backend *b, size_t *len) { (void)b; (void)len; abort(); }
int backend_exchange(backend *b, const uint8_t *in, size_t len, const uint8_t **out,
                     size_t *outlen, char *err, size_t errlen) {
    (void)b; (void)in; (void)len; (void)out; (void)outlen; (void)err; (void)errlen;
    abort();
}
void backend_set_input(backend *b, backend_input_fn fn, void *ctx) { (void)b; (void)fn; (void)ctx; abort(); }
void backend_cancel(backend *b) { (void)b; abort(); }
int backend_alive(const backend *b) { (void)b; abort(); }
void backend_close(backend *b) { (void)b; abort(); }

static int g_sock[2] = {-1, -1};

static void drain(void) {
    char buf[65536];
    while (recv(g_sock[1], buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (g_sock[0] < 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, g_sock) != 0)
        abort();
    if (size < 1)
        return 0;
    int auth = data[0] & 3;
    size_t chunk = data[0] >> 2;
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    /* the front door */
    server_fuzz_front_door(p, n, auth, chunk, g_sock[0]);
    drain();

    /* the session's frame splitter, outside and inside COPY */
    for (int copy = 0; copy < 2; copy++) {
        size_t off = 0;
        char m[128];
        for (;;) {
            long k = session_frame_length(p + off, n - off, copy, m, sizeof m);
            if (k <= 0)
                break;
            if ((size_t)k > n - off)
                abort(); /* a frame longer than what is there */
            off += (size_t)k;
        }
    }

    /* the same bytes as backend replies */
    wire_reader r;
    wire_msg msg;
    wire_reader_init(&r, p, n);
    while (wire_next(&r, &msg) == 1) {
        char f[256];
        const char *name, *value;
        char tx;
        switch (msg.type) {
        case 'E': case 'N':
            wire_error_field(&msg, 'M', f, sizeof f);
            wire_error_field(&msg, 'C', f, sizeof f);
            break;
        case 'S':
            wire_parameter_status(&msg, &name, &value);
            break;
        case 'Z':
            wire_ready_for_query(&msg, &tx);
            break;
        }
    }
    return 0;
}
