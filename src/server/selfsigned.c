/* A self-signed certificate for the server, made on request and kept as
 * server.crt / server.key in a directory (the data directory, where
 * PostgreSQL looks for its pair by default), over OpenSSL's libcrypto. */
#define _GNU_SOURCE
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VALID_DAYS 3650
/* The names a client on this machine connects by (sslmode=verify-full). */
#define SAN "DNS:localhost,IP:127.0.0.1,IP:::1"

static int crypto_fail(char *err, size_t errlen, const char *what) {
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "cannot make a self-signed certificate: %s%s%s", what,
             *buf ? ": " : "", buf);
    ERR_clear_error();
    return -1;
}

static int add_ext(X509 *x, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* An EC P-256 key and a certificate for it, CN=localhost with SAN. */
static X509 *make_cert(EVP_PKEY *key) {
    X509 *x = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;
    X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
    int ok = x && RAND_bytes(serial, sizeof serial) == 1;
    if (ok) {
        serial[0] &= 0x7f; /* positive */
        ok = (bn = BN_bin2bn(serial, sizeof serial, NULL)) && (sn = BN_to_ASN1_INTEGER(bn, NULL)) &&
             X509_set_version(x, 2) == 1 && X509_set_serialNumber(x, sn) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x), (long)VALID_DAYS * 86400) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        (const unsigned char *)"localhost", -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, name) == 1 && X509_set_pubkey(x, key) == 1 &&
             add_ext(x, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") &&
             add_ext(x, NID_ext_key_usage, "serverAuth") &&
             add_ext(x, NID_subject_alt_name, SAN) && X509_sign(x, key, EVP_sha256()) > 0;
    }
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Write a PEM file atomically (path.tmp-PID, then rename) with mode. */
static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert, char *err,
                     size_t errlen) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1
                 : PEM_write_X509(f, cert) == 1;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int server_self_signed_pair(const char *dir, char *cert, char *key, size_t n, char *err,
                            size_t errlen) {
    if (!dir || !*dir) {
        snprintf(err, errlen, "a self-signed certificate needs a directory to keep it in");
        return -1;
    }
    if ((size_t)snprintf(cert, n, "%s/server.crt", dir) >= n ||
        (size_t)snprintf(key, n, "%s/server.key", dir) >= n) {
        snprintf(err, errlen, "the path %s is too long", dir);
        return -1;
    }
    int have_cert = access(cert, F_OK) == 0, have_key = access(key, F_OK) == 0;
    if (have_cert && have_key)
        return 0; /* made before (or put there by the user): used as it is */
    if (have_cert != have_key) {
        snprintf(err, errlen, "%s exists without %s: remove it or supply both",
                 have_cert ? cert : key, have_cert ? key : cert);
        return -1;
    }
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    if (!pk)
        return crypto_fail(err, errlen, "key generation failed");
    X509 *x = make_cert(pk);
    if (!x) {
        EVP_PKEY_free(pk);
        return crypto_fail(err, errlen, "signing failed");
    }
    /* The key first: a certificate without its key is never left behind. */
    int rc = write_pem(key, 0600, pk, NULL, err, errlen);
    if (rc == 0 && (rc = write_pem(cert, 0644, NULL, x, err, errlen)) != 0)
        unlink(key);
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}
