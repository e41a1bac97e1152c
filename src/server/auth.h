/*
 * server auth: password checks for the socket server (internal).
 *
 * SCRAM-SHA-256 (RFC 5802/7677, as PostgreSQL does it without channel
 * binding), md5 and cleartext, over OpenSSL's libcrypto, against a role's
 * own secret as pg_authid.rolpassword stores it (made by PostgreSQL, with
 * its SASLprep, from CREATE ROLE ... PASSWORD). Each connection has its own
 * exchange state.
 */
#ifndef PGLITE_SERVER_AUTH_H
#define PGLITE_SERVER_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define SCRAM_ITERATIONS 4096
#define SCRAM_KEY_LEN 32
#define SCRAM_SALT_LEN 16    /* what we make */
#define SCRAM_SALT_MAX 64    /* what a stored secret may have */
#define SCRAM_MECHANISM "SCRAM-SHA-256"

typedef struct scram_secret {
    uint8_t salt[SCRAM_SALT_MAX];
    size_t salt_len;
    int iterations;
    uint8_t stored_key[SCRAM_KEY_LEN];
    uint8_t server_key[SCRAM_KEY_LEN];
} scram_secret;

/* One SCRAM exchange. */
typedef struct scram_state {
    char gs2_header[64];           /* "n,," or "y,," */
    char client_first_bare[1024];
    char server_first[1024];
    char nonce[512];               /* client nonce + server nonce */
} scram_state;

/* Derive the stored and server keys from password with a random salt.
 * 0, or -1 (libcrypto failure). */
int scram_make_secret(const char *password, scram_secret *out);

/* A role's secret, from pg_authid.rolpassword. */
typedef enum role_secret_kind {
    ROLE_NO_PASSWORD, /* none (NULL), or one we cannot use: every login fails */
    ROLE_SCRAM,       /* "SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey" */
    ROLE_MD5,         /* "md5" + md5(password user) in hex */
} role_secret_kind;

typedef struct role_secret {
    role_secret_kind kind;
    scram_secret scram; /* ROLE_SCRAM; otherwise a random one, so that a
                           SCRAM exchange runs to its end and fails there,
                           as PostgreSQL's mock authentication does */
    char md5[36];       /* ROLE_MD5 */
} role_secret;

/* Parse rolpassword (NULL: none). 0, or -1 (libcrypto failure). */
int role_secret_parse(const char *rolpassword, role_secret *out);
/* A cleartext password against the secret: 1 if it is the role's. */
int role_secret_check_plain(const role_secret *s, const char *user, const char *password);
/* An md5 challenge's response against the secret (ROLE_MD5 only): 1 if
 * right. */
int role_secret_check_md5(const role_secret *s, const uint8_t salt[4], const char *response);

/* The client-first-message (the SASLInitialResponse data): fills st and
 * writes the server-first-message into out. 0, or -1 if malformed (a
 * message for the client in why). */
int scram_server_first(scram_state *st, const scram_secret *sec, const uint8_t *msg,
                       size_t len, char *out, size_t n, char *why, size_t whylen);

/* The client-final-message: 1 if the proof is right (server-final-message
 * "v=..." in out), 0 if the password is wrong, -1 if malformed (why). */
int scram_server_final(scram_state *st, const scram_secret *sec, const uint8_t *msg,
                       size_t len, char *out, size_t n, char *why, size_t whylen);

/* Constant-time comparison of two NUL-terminated strings. 1 if equal. */
int auth_str_equal(const char *a, const char *b);

/* n random bytes. 0, or -1. */
int auth_random(void *buf, size_t n);

#endif
