/*
 * libFuzzer target for the server's pure parsing: the front door
 * (SSLRequest, GSSENCRequest, CancelRequest, startup packet, password,
 * SASL messages: frontdoor_process, called as the listener calls it), the
 * frame parser (wire_frame, as the session pump and the front door use it)
 * and the reader of backend replies (wire_next, wire_error_field, ...).
 *
 * Input: byte 0 chooses the authentication (bits 0-1: trust, SCRAM, md5,
 * cleartext) and how the rest arrives (bits 2-7: 0 at once, else in pieces
 * of that many bytes; an odd count also offers TLS); the rest is what a
 * client sends.
 *
 * Built with clang (-fsanitize=fuzzer,address,undefined) from the front
 * door, auth and wire sources only: no sockets, threads or backend.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/frontdoor.h"
#include "wire/wire.h"

/* Format every log line (and print none). */
static void format_log(void *ctx, server_log_level level, const char *fmt, va_list ap) {
    (void)ctx;
    (void)level;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
}

/* data through the front door as one connection (fed chunk bytes at a
 * time; 0: at once) under authentication auth, as the listener does. */
static void front_door(const uint8_t *data, size_t n, int auth, size_t chunk) {
    frontdoor_cfg cfg = {.auth = (enum auth_kind)auth, .log = format_log,
                         .tls = (int)(chunk & 1)};
    conn c = {.fd = -1, .tcp = 1, .state = CONN_STARTUP, .peer = "[fuzz]"};
    wire_buf out;
    wire_buf_init(&out);
    if (!chunk)
        chunk = n ? n : 1;
    size_t off = 0;
    frontdoor_result r = FRONT_MORE;
    do {
        size_t k = n - off < chunk ? n - off : chunk;
        if (frontdoor_append(&c, data + off, k) != 0)
            break;
        off += k;
        size_t before = out.len;
        r = frontdoor_process(&cfg, &c, &out);
        if (r == FRONT_SECRET) { /* as the server does: the role's secret, then on */
            static const char *const secrets[] = {
                NULL, "md5d5c7d4a7c3e4c1c0e8e7f9c0f8a0b1c2",
                "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$"
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="};
            if (frontdoor_set_secret(&c, secrets[n % 3]) != 0)
                abort();
            r = frontdoor_process(&cfg, &c, &out);
        }
        if (out.len < before || c.len > FRONT_BUF_MAX)
            abort();
        /* what it wrote is whole messages (or the one-byte 'N') */
        wire_reader rd;
        wire_msg m;
        size_t p = before;
        while (p < out.len && out.data[p] == 'N' && (p + 1 == out.len || out.data[p + 1] != 0))
            p++;
        if (p < out.len) {
            wire_reader_init(&rd, out.data + p, out.len - p);
            while (wire_next(&rd, &m) == 1)
                ;
        }
        if (r == FRONT_READY && (!c.user || !c.database))
            abort(); /* authenticated without a user */
    } while (r == FRONT_MORE && off < n);
    wire_buf_free(&out);
    frontdoor_conn_clear(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    int auth = data[0] & 3;
    size_t chunk = data[0] >> 2;
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    /* the front door */
    front_door(p, n, auth, chunk);

    /* the session's frame parser, outside and inside COPY, and in auth */
    for (int from = WIRE_FROM_CLIENT; from <= WIRE_FROM_AUTH; from++) {
        size_t off = 0;
        char m[128];
        for (;;) {
            long k = wire_frame(p + off, n - off, (wire_from)from, m, sizeof m);
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
