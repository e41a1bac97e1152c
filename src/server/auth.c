/* Password checks: SCRAM-SHA-256, md5, cleartext (OpenSSL libcrypto). */
#define _GNU_SOURCE
#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int auth_random(void *buf, size_t n) {
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}

int auth_str_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return 0;
    return CRYPTO_memcmp(a, b, la) == 0;
}

static int hmac(const uint8_t *key, size_t klen, const void *msg, size_t mlen,
                uint8_t out[SCRAM_KEY_LEN]) {
    unsigned int olen = 0;
    return HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen) && olen == SCRAM_KEY_LEN
               ? 0
               : -1;
}

static size_t b64_encode(const uint8_t *in, size_t n, char *out, size_t cap) {
    if (cap < 4 * ((n + 2) / 3) + 1)
        return 0;
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decode strict base64 (length a multiple of 4). Bytes, or -1. */
static long b64_decode(const char *in, size_t n, uint8_t *out, size_t cap) {
    if (n == 0)
        return 0;
    if (n % 4 != 0 || n / 4 * 3 > cap)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i >= n - 2);
        if (!ok)
            return -1;
    }
    if (in[n - 2] == '=' && in[n - 1] != '=')
        return -1;
    int r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (r < 0)
        return -1;
    if (in[n - 1] == '=')
        r--;
    if (in[n - 2] == '=')
        r--;
    return r;
}

int scram_make_secret(const char *password, scram_secret *s) {
    uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    s->iterations = SCRAM_ITERATIONS;
    s->salt_len = SCRAM_SALT_LEN;
    if (auth_random(s->salt, s->salt_len) != 0)
        return -1;
    /* PostgreSQL normalises the password with SASLprep; for ASCII (and for
     * strings SASLprep rejects) that is the password as it is. Secrets
     * PostgreSQL made (role_secret_parse) carry its own normalisation. */
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), s->salt, (int)s->salt_len,
                          s->iterations, EVP_sha256(), sizeof salted, salted) != 1)
        return -1;
    if (hmac(salted, sizeof salted, "Client Key", 10, client_key) != 0 ||
        hmac(salted, sizeof salted, "Server Key", 10, s->server_key) != 0)
        return -1;
    SHA256(client_key, sizeof client_key, s->stored_key);
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return 0;
}

/* Copy a NUL-free message into a C string. */
static int take(const uint8_t *msg, size_t len, char *out, size_t n) {
    if (len >= n || memchr(msg, 0, len))
        return -1;
    memcpy(out, msg, len);
    out[len] = 0;
    return 0;
}

static int printable_nonce(const char *s, size_t n) {
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
            return 0;
    return 1;
}

int scram_server_first(scram_state *st, const scram_secret *sec, const uint8_t *msg,
                       size_t len, char *out, size_t n, char *why, size_t whylen) {
    char m[1200];
    memset(st, 0, sizeof *st);
    if (take(msg, len, m, sizeof m) != 0) {
        snprintf(why, whylen, "malformed SCRAM message (length)");
        return -1;
    }
    /* gs2-header: cbind flag "n" or "y" (no channel binding is offered),
     * no authzid. */
    if ((m[0] != 'n' && m[0] != 'y') || m[1] != ',') {
        snprintf(why, whylen, m[0] == 'p' ? "channel binding is not supported"
                                          : "malformed SCRAM message (unexpected channel-binding flag)");
        return -1;
    }
    if (m[2] != ',') {
        snprintf(why, whylen, "client uses authorization identity, but it is not supported");
        return -1;
    }
    memcpy(st->gs2_header, m, 3);
    st->gs2_header[3] = 0;
    const char *bare = m + 3;
    if (strlen(bare) >= sizeof st->client_first_bare) {
        snprintf(why, whylen, "malformed SCRAM message (too long)");
        return -1;
    }
    memcpy(st->client_first_bare, bare, strlen(bare) + 1);
    /* n=user (ignored: the startup packet names the user), r=nonce */
    if (strncmp(bare, "m=", 2) == 0) {
        snprintf(why, whylen, "client requires an unsupported SCRAM extension");
        return -1;
    }
    if (strncmp(bare, "n=", 2) != 0) {
        snprintf(why, whylen, "malformed SCRAM message (expected attribute \"n\")");
        return -1;
    }
    const char *r = strchr(bare, ',');
    if (!r || strncmp(r + 1, "r=", 2) != 0) {
        snprintf(why, whylen, "malformed SCRAM message (expected attribute \"r\")");
        return -1;
    }
    const char *cnonce = r + 3;
    size_t cn = strcspn(cnonce, ",");
    if (!printable_nonce(cnonce, cn) || cn > 256) {
        snprintf(why, whylen, "malformed SCRAM message (invalid nonce)");
        return -1;
    }
    uint8_t raw[18];
    char snonce[32], salt64[4 * (SCRAM_SALT_MAX + 2) / 3 + 4];
    if (auth_random(raw, sizeof raw) != 0 || !b64_encode(raw, sizeof raw, snonce, sizeof snonce) ||
        !b64_encode(sec->salt, sec->salt_len, salt64, sizeof salt64)) {
        snprintf(why, whylen, "could not generate a random nonce");
        return -1;
    }
    snprintf(st->nonce, sizeof st->nonce, "%.*s%s", (int)cn, cnonce, snonce);
    int k = snprintf(st->server_first, sizeof st->server_first, "r=%s,s=%s,i=%d", st->nonce,
                     salt64, sec->iterations);
    if (k < 0 || (size_t)k >= sizeof st->server_first || (size_t)k >= n) {
        snprintf(why, whylen, "malformed SCRAM message (too long)");
        return -1;
    }
    memcpy(out, st->server_first, (size_t)k + 1);
    return 0;
}

int scram_server_final(scram_state *st, const scram_secret *sec, const uint8_t *msg,
                       size_t len, char *out, size_t n, char *why, size_t whylen) {
    char m[1200];
    if (take(msg, len, m, sizeof m) != 0) {
        snprintf(why, whylen, "malformed SCRAM message (length)");
        return -1;
    }
    /* c=base64(gs2-header),r=nonce,p=proof */
    if (strncmp(m, "c=", 2) != 0) {
        snprintf(why, whylen, "malformed SCRAM message (expected attribute \"c\")");
        return -1;
    }
    char *comma = strchr(m, ',');
    if (!comma) {
        snprintf(why, whylen, "malformed SCRAM message (expected attribute \"r\")");
        return -1;
    }
    uint8_t cb[64];
    long cbn = b64_decode(m + 2, (size_t)(comma - m - 2), cb, sizeof cb);
    if (cbn < 0 || (size_t)cbn != strlen(st->gs2_header) ||
        memcmp(cb, st->gs2_header, (size_t)cbn) != 0) {
        snprintf(why, whylen, "SCRAM channel binding check failed");
        return -1;
    }
    char *r = comma + 1;
    if (strncmp(r, "r=", 2) != 0) {
        snprintf(why, whylen, "malformed SCRAM message (expected attribute \"r\")");
        return -1;
    }
    size_t rn = strcspn(r + 2, ",");
    if (rn != strlen(st->nonce) || memcmp(r + 2, st->nonce, rn) != 0) {
        snprintf(why, whylen, "SCRAM nonce mismatch");
        return -1;
    }
    char *p = strstr(m, ",p=");
    if (!p || strchr(p + 3, ',')) {
        snprintf(why, whylen, "malformed SCRAM message (expected attribute \"p\")");
        return -1;
    }
    uint8_t proof[SCRAM_KEY_LEN + 3];
    long pn = b64_decode(p + 3, strlen(p + 3), proof, sizeof proof);
    if (pn != SCRAM_KEY_LEN) {
        snprintf(why, whylen, "malformed SCRAM message (invalid proof)");
        return -1;
    }
    /* AuthMessage = client-first-bare "," server-first "," final-without-proof */
    char auth[3200];
    int k = snprintf(auth, sizeof auth, "%s,%s,%.*s", st->client_first_bare, st->server_first,
                     (int)(p - m), m);
    if (k < 0 || (size_t)k >= sizeof auth) {
        snprintf(why, whylen, "malformed SCRAM message (too long)");
        return -1;
    }
    uint8_t sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], check[SCRAM_KEY_LEN];
    if (hmac(sec->stored_key, SCRAM_KEY_LEN, auth, (size_t)k, sig) != 0) {
        snprintf(why, whylen, "could not compute the SCRAM signature");
        return -1;
    }
    for (int i = 0; i < SCRAM_KEY_LEN; i++)
        client_key[i] = proof[i] ^ sig[i];
    SHA256(client_key, sizeof client_key, check);
    if (CRYPTO_memcmp(check, sec->stored_key, SCRAM_KEY_LEN) != 0)
        return 0;
    uint8_t ssig[SCRAM_KEY_LEN];
    char s64[64];
    if (hmac(sec->server_key, SCRAM_KEY_LEN, auth, (size_t)k, ssig) != 0 ||
        !b64_encode(ssig, sizeof ssig, s64, sizeof s64)) {
        snprintf(why, whylen, "could not compute the SCRAM signature");
        return -1;
    }
    snprintf(out, n, "v=%s", s64);
    return 1;
}

static void md5_hex(const void *data, size_t n, char out[33]) {
    unsigned char d[16];
    unsigned int dl = 0;
    EVP_Digest(data, n, d, &dl, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* "md5" + md5(password user): what pg_authid keeps for an md5 password. */
static int md5_of(const char *user, const char *password, char out[36]) {
    size_t pl = strlen(password), ul = strlen(user);
    char *buf = malloc(pl + ul + 1);
    if (!buf)
        return -1;
    memcpy(buf, password, pl);
    memcpy(buf + pl, user, ul);
    memcpy(out, "md5", 3);
    md5_hex(buf, pl + ul, out + 3);
    OPENSSL_cleanse(buf, pl + ul);
    free(buf);
    return 0;
}

int role_secret_check_md5(const role_secret *s, const uint8_t salt[4], const char *response) {
    if (s->kind != ROLE_MD5)
        return 0;
    uint8_t salted[36];
    char expect[36];
    memcpy(salted, s->md5 + 3, 32);
    memcpy(salted + 32, salt, 4);
    memcpy(expect, "md5", 3);
    md5_hex(salted, sizeof salted, expect + 3);
    return auth_str_equal(expect, response);
}

int role_secret_check_plain(const role_secret *s, const char *user, const char *password) {
    if (s->kind == ROLE_MD5) {
        char h[36];
        int ok = md5_of(user, password, h) == 0 && auth_str_equal(h, s->md5);
        OPENSSL_cleanse(h, sizeof h);
        return ok;
    }
    if (s->kind != ROLE_SCRAM)
        return 0;
    /* StoredKey = H(HMAC(Hi(password, salt, i), "Client Key")) */
    uint8_t salted[SCRAM_KEY_LEN], ck[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
    int ok = PKCS5_PBKDF2_HMAC(password, (int)strlen(password), s->scram.salt,
                               (int)s->scram.salt_len, s->scram.iterations, EVP_sha256(),
                               sizeof salted, salted) == 1 &&
             hmac(salted, sizeof salted, "Client Key", 10, ck) == 0;
    if (ok)
        SHA256(ck, sizeof ck, stored);
    ok = ok && CRYPTO_memcmp(stored, s->scram.stored_key, SCRAM_KEY_LEN) == 0;
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(ck, sizeof ck);
    return ok;
}

/* base64 field [p, end) into out (exactly want bytes unless want is 0:
 * then up to cap, the length in *got). 0 or -1. */
static int b64_field(const char *p, const char *end, uint8_t *out, size_t cap, size_t want,
                     size_t *got) {
    uint8_t tmp[4 * SCRAM_SALT_MAX];
    long n = b64_decode(p, (size_t)(end - p), tmp, sizeof tmp);
    if (n < 0 || (want && (size_t)n != want) || (size_t)n > cap || n == 0)
        return -1;
    memcpy(out, tmp, (size_t)n);
    if (got)
        *got = (size_t)n;
    return 0;
}

int role_secret_parse(const char *pw, role_secret *out) {
    memset(out, 0, sizeof *out);
    out->kind = ROLE_NO_PASSWORD;
    /* the mock: a random secret no password matches */
    if (auth_random(out->scram.salt, SCRAM_SALT_LEN) != 0 ||
        auth_random(out->scram.stored_key, SCRAM_KEY_LEN) != 0 ||
        auth_random(out->scram.server_key, SCRAM_KEY_LEN) != 0)
        return -1;
    out->scram.salt_len = SCRAM_SALT_LEN;
    out->scram.iterations = SCRAM_ITERATIONS;
    if (!pw)
        return 0;
    size_t n = strlen(pw);
    if (n == 35 && !strncmp(pw, "md5", 3) && strspn(pw + 3, "0123456789abcdef") == 32) {
        memcpy(out->md5, pw, 36);
        out->kind = ROLE_MD5;
        return 0;
    }
    /* SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> */
    static const char pfx[] = "SCRAM-SHA-256$";
    if (strncmp(pw, pfx, sizeof pfx - 1) != 0)
        return 0;
    const char *p = pw + sizeof pfx - 1;
    char *e;
    long it = strtol(p, &e, 10);
    if (e == p || *e != ':' || it < 1 || it > 100000000)
        return 0;
    const char *salt = e + 1, *d1 = strchr(salt, '$');
    const char *sk = d1 ? d1 + 1 : NULL, *c2 = sk ? strchr(sk, ':') : NULL;
    if (!d1 || !c2)
        return 0;
    scram_secret sec = {.iterations = (int)it};
    if (b64_field(salt, d1, sec.salt, sizeof sec.salt, 0, &sec.salt_len) != 0 ||
        b64_field(sk, c2, sec.stored_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN, NULL) != 0 ||
        b64_field(c2 + 1, pw + n, sec.server_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN, NULL) != 0)
        return 0;
    out->scram = sec;
    out->kind = ROLE_SCRAM;
    return 0;
}
