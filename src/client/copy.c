/* COPY through /dev/blob: the backend's reads and writes of the guest
 * device come here (backend_options.blob_read/blob_write), from inside the
 * exchange of the call that set them up. */
#include "client/client.h"

#include <stdlib.h>
#include <string.h>

long client_blob_read(void *ctx, void *buf, size_t len) {
    pglite *db = ctx;
    if (!db->blob_in)
        return 0;
    size_t n = db->blob_in_len - db->blob_in_pos;
    if (n > len)
        n = len;
    memcpy(buf, db->blob_in + db->blob_in_pos, n);
    db->blob_in_pos += n;
    return (long)n;
}

long client_blob_write(void *ctx, const void *buf, size_t len) {
    pglite *db = ctx;
    if (db->blob_capture)
        wire_put(&db->blob_out, buf, len); /* a failure is seen after the call */
    return (long)len;
}

int pglite_copy_from(pglite *db, const char *sql, const void *data, size_t len,
                     pglite_result **res) {
    if (res)
        *res = NULL;
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!sql || (!data && len))
        return client_leave(db, client_fail(db, PGLITE_MISUSE, NULL,
                                            "pglite_copy_from: sql or data is NULL"));
    db->blob_in = data ? data : (const uint8_t *)"";
    db->blob_in_len = len;
    db->blob_in_pos = 0;
    rc = client_simple(db, sql, res);
    db->blob_in = NULL;
    db->blob_in_len = db->blob_in_pos = 0;
    return client_leave(db, rc);
}

int pglite_copy_to(pglite *db, const char *sql, void **data, size_t *len, pglite_result **res) {
    if (res)
        *res = NULL;
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    int rc = client_enter(db);
    if (rc)
        return rc;
    if (!sql || !data || !len)
        return client_leave(db, client_fail(db, PGLITE_MISUSE, NULL,
                                            "pglite_copy_to: sql, data or len is NULL"));
    wire_buf_reset(&db->blob_out);
    db->blob_capture = 1;
    pglite_result *r = NULL;
    rc = client_simple(db, sql, &r);
    db->blob_capture = 0;
    if (rc == PGLITE_OK && (db->blob_out.oom || wire_put_u8(&db->blob_out, 0) != 0)) {
        pglite_result_free(r);
        r = result_error(errobj_nomem());
        rc = client_set_error(db, errobj_nomem());
    }
    if (rc == PGLITE_OK) {
        *len = db->blob_out.len - 1;
        *data = db->blob_out.data;
        wire_buf_init(&db->blob_out); /* the buffer is the caller's now */
    } else {
        wire_buf_free(&db->blob_out);
    }
    if (res)
        *res = r;
    else
        pglite_result_free(r);
    return client_leave(db, rc);
}
