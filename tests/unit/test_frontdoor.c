/*
 * Unit tests for the server's pure parts: the front door
 * (frontdoor_process) fed bytes as a client sends them, the frame parser
 * (wire_frame) with PostgreSQL's per-type limits, and SCRAM-SHA-256 with a
 * client computed here from RFC 5802 with libcrypto.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/frontdoor.h"
#include "wire/wire.h"

/* ---- helpers ---------------------------------------------------------------- */

static scram_secret g_secret;
static char g_verifier[256]; /* g_secret as pg_authid keeps it */

typedef struct door {
    char log[1024]; /* the last log line */
    frontdoor_cfg cfg;
    conn c;
    wire_buf out;
    const char *rolpassword; /* what the server finds in pg_authid */
    int secrets;             /* times the front door asked for it */
} door;

static void keep_log(void *ctx, server_log_level level, const char *fmt, va_list ap) {
    (void)level;
    vsnprintf(ctx, 1024, fmt, ap);
}

static void door_init(door *d, enum auth_kind auth) {
    memset(d, 0, sizeof *d);
    d->cfg = (frontdoor_cfg){.auth = auth, .log = keep_log, .log_ctx = d->log};
    d->rolpassword = g_verifier;
    d->c.fd = -1;
    d->c.state = CONN_STARTUP;
    wire_buf_init(&d->out);
}

static void door_free(door *d) {
    frontdoor_conn_clear(&d->c);
    wire_buf_free(&d->out);
}

/* Feed bytes; when the front door asks for the role's secret, give it
 * d->rolpassword and go on, as the server does. */
static frontdoor_result feed(door *d, const void *p, size_t n) {
    assert_int_equal(frontdoor_append(&d->c, p, n), 0);
    frontdoor_result r = frontdoor_process(&d->cfg, &d->c, &d->out);
    if (r == FRONT_SECRET) {
        d->secrets++;
        /* it asks again until it has it */
        assert_int_equal(frontdoor_process(&d->cfg, &d->c, &d->out), FRONT_SECRET);
        assert_int_equal(frontdoor_set_secret(&d->c, d->rolpassword), 0);
        r = frontdoor_process(&d->cfg, &d->c, &d->out);
    }
    return r;
}

static void startup(wire_buf *b, uint32_t version, const char *const *params) {
    size_t off = wire_begin(b, 0);
    wire_put_u32(b, version);
    for (size_t i = 0; params[i]; i += 2) {
        wire_put_str(b, params[i]);
        wire_put_str(b, params[i + 1]);
    }
    wire_put_u8(b, 0);
    wire_end(b, off);
}

/* The SQLSTATE of the one ErrorResponse in out ("" if none). */
static const char *error_code(const wire_buf *out) {
    static char code[8];
    code[0] = 0;
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, out->data, out->len);
    while (wire_next(&r, &m) == 1)
        if (m.type == PqMsg_ErrorResponse)
            wire_error_field(&m, PG_DIAG_SQLSTATE, code, sizeof code);
    return code;
}

static void md5_hex(const void *p, size_t n, char out[33]) {
    unsigned char d[16];
    unsigned int dl = 0;
    EVP_Digest(p, n, d, &dl, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* "md5" + md5(password user), as pg_authid keeps an md5 password. */
static void md5_secret(const char *pw, const char *user, char out[36]) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", pw, user);
    memcpy(out, "md5", 3);
    md5_hex(buf, strlen(buf), out + 3);
}

/* ---- the front door ------------------------------------------------------------ */

static void test_trust_startup(void **state) {
    (void)state;
    door d;
    door_init(&d, AUTH_TRUST);
    wire_buf b;
    wire_buf_init(&b);
    const char *p[] = {"user", "alice", "application_name", "x", "options", "-c a=b", NULL};
    startup(&b, WIRE_PROTOCOL_3_0, p);
    /* byte by byte: nothing until the whole packet is there */
    for (size_t i = 0; i + 1 < b.len; i++)
        assert_int_equal(feed(&d, b.data + i, 1), FRONT_MORE);
    assert_int_equal(feed(&d, b.data + b.len - 1, 1), FRONT_READY);
    assert_int_equal(d.out.len, 0);
    assert_string_equal(d.c.user, "alice");
    assert_string_equal(d.c.database, "alice"); /* the user's name by default */
    assert_string_equal(d.c.options, "-c a=b");
    assert_int_equal(d.c.ngucs, 1);
    assert_string_equal(d.c.gucs[0], "application_name");
    assert_int_equal(d.c.len, 0);
    wire_buf_free(&b);
    door_free(&d);
}

static void test_quiet_close(void **state) {
    (void)state;
    /* what PostgreSQL only logs: closed with no reply */
    static const struct {
        const char *bytes;
        size_t n;
    } quiet[] = {
        {"X\0\0\0\4", 5},                        /* Terminate first: length 0x58000000 */
        {"\0\0\0\4", 4},                         /* below 8 */
        {"\0\0\0\7\0\3\0", 7},
        {"\0\0\x27\x11", 4},                     /* 10001: above 10,000 */
        {"GET / HTTP/1.1\r\n", 16},
        {"\0\0\0\x0c\x04\xd2\x16\x2e\0\0\0\1", 12}, /* CancelRequest without a key */
    };
    for (size_t i = 0; i < sizeof quiet / sizeof *quiet; i++) {
        door d;
        door_init(&d, AUTH_TRUST);
        assert_int_equal(feed(&d, quiet[i].bytes, quiet[i].n), FRONT_CLOSE);
        assert_int_equal(d.out.len, 0);
        assert_non_null(strstr(d.log, "closed: invalid length of ")); /* logged, as PostgreSQL does */
        door_free(&d);
    }
}

static void test_fatal_replies(void **state) {
    (void)state;
    door d;
    /* protocol 2: FATAL 0A000 */
    door_init(&d, AUTH_TRUST);
    assert_int_equal(feed(&d, "\0\0\0\x08\0\2\0\0", 8), FRONT_CLOSE);
    assert_string_equal(error_code(&d.out), "0A000");
    door_free(&d);
    /* no user: 28000 */
    door_init(&d, AUTH_TRUST);
    wire_buf b;
    wire_buf_init(&b);
    const char *nouser[] = {"database", "x", NULL};
    startup(&b, WIRE_PROTOCOL_3_0, nouser);
    assert_int_equal(feed(&d, b.data, b.len), FRONT_CLOSE);
    assert_string_equal(error_code(&d.out), "28000");
    door_free(&d);
    /* a bad layout: 08P01 */
    door_init(&d, AUTH_TRUST);
    assert_int_equal(feed(&d, "\0\0\0\x0c\0\3\0\0user", 12), FRONT_CLOSE);
    assert_string_equal(error_code(&d.out), "08P01");
    door_free(&d);
    /* data pipelined after SSLRequest: 08P01, and no 'N' */
    door_init(&d, AUTH_TRUST);
    wire_buf_reset(&b);
    wire_put_u32(&b, 8);
    wire_put_u32(&b, WIRE_SSL_REQUEST);
    wire_put(&b, "junk", 4);
    assert_int_equal(feed(&d, b.data, b.len), FRONT_CLOSE);
    assert_int_equal(d.out.data[0], PqMsg_ErrorResponse);
    assert_string_equal(error_code(&d.out), "08P01");
    door_free(&d);
    wire_buf_free(&b);
}

static void test_ssl_gss_then_startup(void **state) {
    (void)state;
    door d;
    door_init(&d, AUTH_TRUST);
    wire_buf b;
    wire_buf_init(&b);
    wire_put_u32(&b, 8);
    wire_put_u32(&b, WIRE_GSSENC_REQUEST);
    assert_int_equal(feed(&d, b.data, b.len), FRONT_MORE);
    wire_buf_reset(&b);
    wire_put_u32(&b, 8);
    wire_put_u32(&b, WIRE_SSL_REQUEST);
    assert_int_equal(feed(&d, b.data, b.len), FRONT_MORE);
    assert_int_equal(d.out.len, 2);
    assert_memory_equal(d.out.data, "NN", 2);
    /* a second SSLRequest is a protocol version 1234.5679: 0A000 */
    door dd;
    door_init(&dd, AUTH_TRUST);
    dd.c.ssl_done = 1;
    assert_int_equal(feed(&dd, b.data, b.len), FRONT_CLOSE);
    assert_string_equal(error_code(&dd.out), "0A000");
    door_free(&dd);
    /* then a 3.9 startup with a _pq_ option: NegotiateProtocolVersion 3.2 */
    wire_buf_reset(&b);
    const char *p[] = {"user", "bob", "_pq_.x", "1", NULL};
    startup(&b, 3u << 16 | 9, p);
    wire_buf_reset(&d.out);
    assert_int_equal(feed(&d, b.data, b.len), FRONT_READY);
    assert_int_equal(d.c.minor, 2);
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, d.out.data, d.out.len);
    assert_int_equal(wire_next(&r, &m), 1);
    assert_int_equal(m.type, PqMsg_NegotiateProtocolVersion);
    assert_int_equal(m.len, 4 + 4 + 7);
    assert_memory_equal(m.body, "\0\3\0\2\0\0\0\1_pq_.x", 15);
    wire_buf_free(&b);
    door_free(&d);
}

static void test_ssl_request_with_tls(void **state) {
    (void)state;
    wire_buf b;
    wire_buf_init(&b);
    wire_put_u32(&b, 8);
    wire_put_u32(&b, WIRE_SSL_REQUEST);
    /* TLS configured, TCP: 'S', and the caller begins the handshake */
    door d;
    door_init(&d, AUTH_TRUST);
    d.cfg.tls = 1;
    d.c.tcp = 1;
    assert_int_equal(feed(&d, b.data, b.len), FRONT_TLS);
    assert_int_equal(d.out.len, 1);
    assert_int_equal(d.out.data[0], 'S');
    assert_int_equal(d.c.len, 0);
    door_free(&d);
    /* a Unix socket: 'N' as PostgreSQL answers there */
    door_init(&d, AUTH_TRUST);
    d.cfg.tls = 1;
    assert_int_equal(feed(&d, b.data, b.len), FRONT_MORE);
    assert_int_equal(d.out.len, 1);
    assert_int_equal(d.out.data[0], 'N');
    door_free(&d);
    wire_buf_free(&b);
}

static void test_cancel_request(void **state) {
    (void)state;
    door d;
    door_init(&d, AUTH_SCRAM);
    wire_buf b;
    wire_buf_init(&b);
    wire_put_u32(&b, 16 + 28);
    wire_put_u32(&b, WIRE_CANCEL_REQUEST);
    wire_put_u32(&b, 4242);
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 7);
    wire_put(&b, key, 32);
    assert_int_equal(feed(&d, b.data, 20), FRONT_MORE);
    assert_int_equal(feed(&d, b.data + 20, b.len - 20), FRONT_CANCEL);
    assert_int_equal(d.c.cancel_pid, 4242);
    assert_int_equal(d.c.cancel_keylen, 32);
    assert_memory_equal(d.c.cancel_key, key, 32);
    assert_int_equal(d.out.len, 0); /* never answered */
    wire_buf_free(&b);
    door_free(&d);
}

static void test_cleartext_and_md5(void **state) {
    (void)state;
    wire_buf b;
    wire_buf_init(&b);
    const char *p[] = {"user", "carol", NULL};
    startup(&b, WIRE_PROTOCOL_3_0, p);
    for (int good = 0; good < 2; good++) {
        door d;
        door_init(&d, AUTH_PASSWORD);
        assert_int_equal(feed(&d, b.data, b.len), FRONT_MORE);
        assert_memory_equal(d.out.data, "R\0\0\0\x08\0\0\0\3", 9); /* cleartext */
        wire_buf pw;
        wire_buf_init(&pw);
        size_t off = wire_begin(&pw, PqMsg_PasswordMessage);
        wire_put_str(&pw, good ? "secret" : "Secret");
        wire_end(&pw, off);
        wire_buf_reset(&d.out);
        assert_int_equal(feed(&d, pw.data, pw.len), good ? FRONT_READY : FRONT_CLOSE);
        assert_string_equal(error_code(&d.out), good ? "" : "28P01");
        wire_buf_free(&pw);
        door_free(&d);
    }
    /* md5: the salt is in the request, a made-up response fails */
    door d;
    door_init(&d, AUTH_MD5);
    char md5pw[36];
    md5_secret("secret", "carol", md5pw);
    d.rolpassword = md5pw;
    assert_int_equal(feed(&d, b.data, b.len), FRONT_MORE);
    assert_int_equal(d.out.len, 13);
    assert_memory_equal(d.out.data, "R\0\0\0\x0c\0\0\0\5", 9);
    assert_memory_equal(d.out.data + 9, d.c.md5_salt, 4);
    /* a message other than 'p' while waiting for the password: 08P01 */
    wire_buf_reset(&d.out);
    assert_int_equal(feed(&d, "Q\0\0\0\5x", 6), FRONT_CLOSE);
    assert_string_equal(error_code(&d.out), "08P01");
    door_free(&d);
    wire_buf_free(&b);
}

/* ---- role secrets ------------------------------------------------------------------ */

/* A door under auth past user's startup packet, the role's secret being
 * rolpassword (asked for once). */
static void door_started(door *d, enum auth_kind auth, const char *rolpassword,
                         const char *user) {
    door_init(d, auth);
    d->rolpassword = rolpassword;
    wire_buf b;
    wire_buf_init(&b);
    const char *p[] = {"user", user, NULL};
    startup(&b, WIRE_PROTOCOL_3_0, p);
    assert_int_equal(feed(d, b.data, b.len), FRONT_MORE);
    assert_int_equal(d->secrets, 1);
    wire_buf_free(&b);
}

/* A PasswordMessage with pw through a door under auth with the role's
 * rolpassword: the result, and the SQLSTATE sent. */
static frontdoor_result plain_login(enum auth_kind auth, const char *rolpassword,
                                    const char *pw, char *code) {
    door d;
    door_started(&d, auth, rolpassword, "erin");
    wire_buf b;
    wire_buf_init(&b);
    frontdoor_result r;
    if (auth == AUTH_MD5) {
        assert_memory_equal(d.out.data, "R\0\0\0\x0c\0\0\0\5", 9); /* the md5 challenge */
        char inner[36], salted[40], resp[36];
        md5_secret(pw, "erin", inner);
        memcpy(salted, inner + 3, 32);
        memcpy(salted + 32, d.c.md5_salt, 4);
        memcpy(resp, "md5", 3);
        md5_hex(salted, 36, resp + 3);
        size_t off = wire_begin(&b, PqMsg_PasswordMessage);
        wire_put_str(&b, resp);
        wire_end(&b, off);
    } else {
        size_t off = wire_begin(&b, PqMsg_PasswordMessage);
        wire_put_str(&b, pw);
        wire_end(&b, off);
    }
    wire_buf_reset(&d.out);
    r = feed(&d, b.data, b.len);
    strcpy(code, error_code(&d.out));
    wire_buf_free(&b);
    door_free(&d);
    return r;
}

static void test_role_secrets(void **state) {
    (void)state;
    char code[8], md5pw[36];
    md5_secret("secret", "erin", md5pw);
    /* cleartext against a SCRAM secret and an md5 one */
    assert_int_equal(plain_login(AUTH_PASSWORD, g_verifier, "secret", code), FRONT_READY);
    assert_int_equal(plain_login(AUTH_PASSWORD, g_verifier, "secreT", code), FRONT_CLOSE);
    assert_string_equal(code, "28P01");
    assert_int_equal(plain_login(AUTH_PASSWORD, md5pw, "secret", code), FRONT_READY);
    assert_int_equal(plain_login(AUTH_PASSWORD, md5pw, "nope", code), FRONT_CLOSE);
    /* md5 challenge against an md5 secret */
    assert_int_equal(plain_login(AUTH_MD5, md5pw, "secret", code), FRONT_READY);
    assert_int_equal(plain_login(AUTH_MD5, md5pw, "Secret", code), FRONT_CLOSE);
    assert_string_equal(code, "28P01");
    /* no password, or one we cannot read: every password fails */
    assert_int_equal(plain_login(AUTH_PASSWORD, NULL, "", code), FRONT_CLOSE);
    assert_string_equal(code, "28P01");
    assert_int_equal(plain_login(AUTH_PASSWORD, "SCRAM-SHA-256$x", "secret", code), FRONT_CLOSE);
    assert_int_equal(plain_login(AUTH_MD5, NULL, "secret", code), FRONT_CLOSE);
    /* md5 with a SCRAM secret: SCRAM, as PostgreSQL does */
    door d;
    door_started(&d, AUTH_MD5, g_verifier, "erin");
    assert_memory_equal(d.out.data, "R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256", 22);
    door_free(&d);
    /* the parser: a secret with another salt length and iteration count */
    role_secret rs;
    assert_int_equal(role_secret_parse("SCRAM-SHA-256$4096:c2FsdA==$"
                                       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
                                       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                                       &rs),
                     0);
    assert_int_equal(rs.kind, ROLE_SCRAM);
    assert_int_equal(rs.scram.salt_len, 4);
    assert_int_equal(rs.scram.iterations, 4096);
    assert_int_equal(role_secret_parse("SCRAM-SHA-256$0:c2FsdA==$AA==:AA==", &rs), 0);
    assert_int_equal(rs.kind, ROLE_NO_PASSWORD);
    assert_int_equal(role_secret_parse("md5nothex", &rs), 0);
    assert_int_equal(rs.kind, ROLE_NO_PASSWORD);
}

/* A whole SCRAM exchange with a role that has no password: it runs to its
 * end and fails there, not telling the client which it was. */
static frontdoor_result scram_login_as(const char *pw, const char *rolpassword,
                                       int *server_verified);

static void test_scram_no_password(void **state) {
    (void)state;
    int verified = 0;
    assert_int_equal(scram_login_as("secret", NULL, &verified), FRONT_CLOSE);
    assert_false(verified);
}

/* ---- SCRAM-SHA-256, the client side from RFC 5802 -------------------------------- */

static void hmac(const uint8_t *key, size_t kl, const void *msg, size_t ml, uint8_t out[32]) {
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)kl, msg, ml, out, &n);
}

static char *b64(const uint8_t *p, size_t n) {
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    return o;
}

static size_t unb64(const char *s, uint8_t *out) {
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)strlen(s));
    size_t len = strlen(s);
    while (len && s[len - 1] == '=') {
        n--;
        len--;
    }
    return (size_t)n;
}

/* A whole SCRAM exchange with password pw: the front door's result. */
static frontdoor_result scram_login(const char *pw, int *server_verified) {
    return scram_login_as(pw, g_verifier, server_verified);
}

static frontdoor_result scram_login_as(const char *pw, const char *rolpassword,
                                       int *server_verified) {
    door d;
    door_started(&d, AUTH_SCRAM, rolpassword, "dave");
    wire_buf b;
    wire_buf_init(&b);
    static const char sasl[] = "R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0";
    assert_int_equal(d.out.len, sizeof sasl - 1);
    assert_memory_equal(d.out.data, sasl, sizeof sasl - 1);

    const char *cfirst_bare = "n=,r=clientnonce0123456789";
    char cfirst[128];
    snprintf(cfirst, sizeof cfirst, "n,,%s", cfirst_bare);
    wire_buf_reset(&b);
    size_t off = wire_begin(&b, PqMsg_SASLInitialResponse);
    wire_put_str(&b, SCRAM_MECHANISM);
    wire_put_u32(&b, (uint32_t)strlen(cfirst));
    wire_put(&b, cfirst, strlen(cfirst));
    wire_end(&b, off);
    wire_buf_reset(&d.out);
    assert_int_equal(feed(&d, b.data, b.len), FRONT_MORE);
    wire_reader r;
    wire_msg m;
    wire_reader_init(&r, d.out.data, d.out.len);
    assert_int_equal(wire_next(&r, &m), 1);
    assert_int_equal(m.type, PqMsg_AuthenticationRequest);
    assert_int_equal(wire_be32(m.body), AUTH_REQ_SASL_CONT);
    char sfirst[1024];
    snprintf(sfirst, sizeof sfirst, "%.*s", (int)m.len - 4, (const char *)m.body + 4);
    /* r=<nonce>,s=<salt>,i=<iterations> */
    char nonce[512], salt64[128];
    int iters;
    assert_int_equal(sscanf(sfirst, "r=%511[^,],s=%127[^,],i=%d", nonce, salt64, &iters), 3);
    assert_memory_equal(nonce, "clientnonce0123456789", 21); /* ours, then the server's */
    uint8_t salt[96], salted[32], ckey[32], skey[32], stored[32], sig[32], proof[32], ssig[32];
    size_t sl = unb64(salt64, salt);
    PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, (int)sl, iters, EVP_sha256(), 32, salted);
    hmac(salted, 32, "Client Key", 10, ckey);
    hmac(salted, 32, "Server Key", 10, skey);
    SHA256(ckey, 32, stored);
    char without_proof[600], auth_msg[2048];
    snprintf(without_proof, sizeof without_proof, "c=biws,r=%s", nonce);
    snprintf(auth_msg, sizeof auth_msg, "%s,%s,%s", cfirst_bare, sfirst, without_proof);
    hmac(stored, 32, auth_msg, strlen(auth_msg), sig);
    for (int i = 0; i < 32; i++)
        proof[i] = ckey[i] ^ sig[i];
    hmac(skey, 32, auth_msg, strlen(auth_msg), ssig);
    char *proof64 = b64(proof, 32), *ssig64 = b64(ssig, 32);
    char final[800];
    snprintf(final, sizeof final, "%s,p=%s", without_proof, proof64);
    wire_buf_reset(&b);
    off = wire_begin(&b, PqMsg_SASLResponse);
    wire_put(&b, final, strlen(final));
    wire_end(&b, off);
    wire_buf_reset(&d.out);
    frontdoor_result res = feed(&d, b.data, b.len);
    *server_verified = 0;
    if (res == FRONT_READY) {
        char expect[128];
        snprintf(expect, sizeof expect, "v=%s", ssig64);
        wire_reader_init(&r, d.out.data, d.out.len);
        assert_int_equal(wire_next(&r, &m), 1);
        assert_int_equal(wire_be32(m.body), AUTH_REQ_SASL_FIN);
        *server_verified = m.len - 4 == strlen(expect) && !memcmp(m.body + 4, expect, m.len - 4);
    } else {
        assert_string_equal(error_code(&d.out), "28P01");
    }
    free(proof64);
    free(ssig64);
    wire_buf_free(&b);
    door_free(&d);
    return res;
}

static void test_scram(void **state) {
    (void)state;
    int verified;
    assert_int_equal(scram_login("secret", &verified), FRONT_READY);
    assert_true(verified); /* the server proved it knows the password too */
    assert_int_equal(scram_login("wrong", &verified), FRONT_CLOSE);
}

static void test_scram_malformed(void **state) {
    (void)state;
    const char *bad[] = {"", "x", "n,,", "p=tls-server-end-point,,n=,r=abc", "n,,n=,", NULL};
    for (int i = 0; bad[i]; i++) {
        door d;
        door_init(&d, AUTH_SCRAM);
        wire_buf b;
        wire_buf_init(&b);
        const char *p[] = {"user", "eve", NULL};
        startup(&b, WIRE_PROTOCOL_3_0, p);
        assert_int_equal(feed(&d, b.data, b.len), FRONT_MORE);
        wire_buf_reset(&b);
        size_t off = wire_begin(&b, PqMsg_SASLInitialResponse);
        wire_put_str(&b, SCRAM_MECHANISM);
        wire_put_u32(&b, (uint32_t)strlen(bad[i]));
        wire_put(&b, bad[i], strlen(bad[i]));
        wire_end(&b, off);
        wire_buf_reset(&d.out);
        assert_int_equal(feed(&d, b.data, b.len), FRONT_CLOSE);
        assert_string_equal(error_code(&d.out), "08P01");
        wire_buf_free(&b);
        door_free(&d);
    }
}

/* ---- the frame parser ------------------------------------------------------------- */

static void test_frame_limits(void **state) {
    (void)state;
    char why[128];
    /* Sync of 10,000 bytes is the limit; 10,001 refused as soon as the word is there */
    assert_int_equal(wire_frame((const uint8_t *)"S\0\0\x27\x10", 5, WIRE_FROM_CLIENT, why,
                                sizeof why), 0);
    assert_int_equal(wire_frame((const uint8_t *)"S\0\0\x27\x11", 5, WIRE_FROM_CLIENT, why,
                                sizeof why), -1);
    assert_string_equal(why, "invalid message length 10001 for message type 83");
    /* Query: up to PQ_LARGE_MESSAGE_LIMIT */
    assert_int_equal(wire_frame((const uint8_t *)"Q\x3f\xff\xff\xfe", 5, WIRE_FROM_CLIENT, why,
                                sizeof why), 0);
    assert_int_equal(wire_frame((const uint8_t *)"Q\x3f\xff\xff\xff", 5, WIRE_FROM_CLIENT, why,
                                sizeof why), -1);
    assert_int_equal(wire_frame((const uint8_t *)"Q\0\0\0\3", 5, WIRE_FROM_CLIENT, why,
                                sizeof why), -1);
    assert_int_equal(wire_frame((const uint8_t *)"Q\0\0\0\5x", 6, WIRE_FROM_CLIENT, why,
                                sizeof why), 6);
    /* types: a backend-only one from a client, Query during COPY */
    assert_int_equal(wire_frame((const uint8_t *)"T", 1, WIRE_FROM_CLIENT, why, sizeof why), -1);
    assert_string_equal(why, "invalid frontend message type 84");
    assert_int_equal(wire_frame((const uint8_t *)"Q", 1, WIRE_FROM_COPY, why, sizeof why), -1);
    assert_string_equal(why, "unexpected message type 0x51 during COPY from stdin");
    assert_int_equal(wire_frame((const uint8_t *)"d\0\0\0\4", 5, WIRE_FROM_COPY, why,
                                sizeof why), 5);
    /* authentication: 'p' only, 65,535 bytes of token */
    assert_int_equal(wire_frame((const uint8_t *)"Q", 1, WIRE_FROM_AUTH, why, sizeof why), -1);
    assert_string_equal(why, "expected password response, got message type 81");
    assert_int_equal(wire_frame((const uint8_t *)"p\0\1\0\3", 5, WIRE_FROM_AUTH, why,
                                sizeof why), 0);
    assert_int_equal(wire_frame((const uint8_t *)"p\0\1\0\4", 5, WIRE_FROM_AUTH, why,
                                sizeof why), -1);
    /* backend replies: any type, up to WIRE_MAX_MESSAGE */
    assert_int_equal(wire_frame((const uint8_t *)"T\x40\0\0\0", 5, WIRE_FROM_BACKEND, NULL, 0), 0);
    assert_int_equal(wire_frame((const uint8_t *)"T\x40\0\0\1", 5, WIRE_FROM_BACKEND, NULL, 0),
                     -1);
    assert_int_equal(wire_frame_len((const uint8_t *)"Z\0\0\0\5I", 6), 6);
}

static int setup(void **state) {
    (void)state;
    if (scram_make_secret("secret", &g_secret) != 0)
        return -1;
    char salt[64], sk[64], svk[64];
    EVP_EncodeBlock((unsigned char *)salt, g_secret.salt, (int)g_secret.salt_len);
    EVP_EncodeBlock((unsigned char *)sk, g_secret.stored_key, 32);
    EVP_EncodeBlock((unsigned char *)svk, g_secret.server_key, 32);
    snprintf(g_verifier, sizeof g_verifier, "SCRAM-SHA-256$%d:%s$%s:%s", g_secret.iterations, salt,
             sk, svk);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_startup),
        cmocka_unit_test(test_quiet_close),
        cmocka_unit_test(test_fatal_replies),
        cmocka_unit_test(test_ssl_gss_then_startup),
        cmocka_unit_test(test_ssl_request_with_tls),
        cmocka_unit_test(test_cancel_request),
        cmocka_unit_test(test_cleartext_and_md5),
        cmocka_unit_test(test_scram),
        cmocka_unit_test(test_role_secrets),
        cmocka_unit_test(test_scram_no_password),
        cmocka_unit_test(test_scram_malformed),
        cmocka_unit_test(test_frame_limits),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
