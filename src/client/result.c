/* Results: built from RowDescription/DataRow/CommandComplete..., read with
 * libpq-style accessors and typed getters. */
#define _GNU_SOURCE
#include "client/client.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Type OIDs the getters know (pg_type.dat). */
enum {
    OID_BOOL = 16, OID_BYTEA = 17, OID_CHAR = 18, OID_NAME = 19, OID_INT8 = 20,
    OID_INT2 = 21, OID_INT4 = 23, OID_TEXT = 25, OID_OID = 26, OID_JSON = 114,
    OID_XML = 142, OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_UNKNOWN = 705,
    OID_BPCHAR = 1042, OID_VARCHAR = 1043,
};

pglite_result *result_new(int status) {
    pglite_result *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->status = status;
    wire_buf_init(&r->data);
    return r;
}

pglite_result *result_error(errobj *err) {
    pglite_result *r = result_new(PGLITE_RESULT_ERROR);
    if (!r) {
        errobj_free(err);
        return NULL;
    }
    r->err = err;
    return r;
}

void pglite_result_free(pglite_result *r) {
    if (!r)
        return;
    for (int i = 0; i < r->nfields; i++)
        free(r->fields[i].name);
    free(r->fields);
    free(r->ptypes);
    free(r->cells);
    free(r->tag);
    wire_buf_free(&r->data);
    errobj_free(r->err);
    free(r);
}

void pglite_results_free(pglite_result **list, int n) {
    if (!list)
        return;
    for (int i = 0; i < n; i++)
        pglite_result_free(list[i]);
    free(list);
}

int result_set_fields(pglite_result *r, const wire_msg *m, int *malformed) {
    long n = wire_row_description(m, NULL, 0);
    if (n < 0) {
        *malformed = 1;
        return -1;
    }
    if (r->fields || r->ntuples) {
        *malformed = 1; /* a second RowDescription for one result */
        return -1;
    }
    wire_field *wf = n ? calloc((size_t)n, sizeof *wf) : NULL;
    rfield *f = n ? calloc((size_t)n, sizeof *f) : NULL;
    if (n && (!wf || !f)) {
        free(wf);
        free(f);
        return -1;
    }
    wire_row_description(m, wf, (size_t)n);
    for (long i = 0; i < n; i++) {
        f[i].name = strdup(wf[i].name);
        if (!f[i].name) {
            for (long j = 0; j < i; j++)
                free(f[j].name);
            free(wf);
            free(f);
            return -1;
        }
        f[i].type = wf[i].type_oid;
        f[i].table = wf[i].table_oid;
        f[i].column = wf[i].column;
        f[i].typlen = wf[i].typlen;
        f[i].typmod = wf[i].typmod;
        f[i].format = wf[i].format;
    }
    free(wf);
    r->fields = f;
    r->nfields = (int)n;
    r->has_rowdesc = 1;
    return 0;
}

int result_set_params(pglite_result *r, const wire_msg *m, int *malformed) {
    long n = wire_parameter_description(m, NULL, 0);
    if (n < 0 || r->ptypes) {
        *malformed = 1;
        return -1;
    }
    if (n) {
        r->ptypes = calloc((size_t)n, sizeof *r->ptypes);
        if (!r->ptypes)
            return -1;
        wire_parameter_description(m, r->ptypes, (size_t)n);
    }
    r->nparams = (int)n;
    return 0;
}

int result_add_row(pglite_result *r, const wire_msg *m, int *malformed) {
    long n = wire_data_row(m, NULL, 0);
    if (n < 0 || n != r->nfields || !r->has_rowdesc || r->ntuples == INT_MAX) {
        *malformed = 1;
        return -1;
    }
    if ((size_t)r->ntuples == r->rows_cap) {
        size_t nc = r->rows_cap ? r->rows_cap * 2 : 16;
        size_t per = r->nfields ? (size_t)r->nfields : 1;
        if (nc > SIZE_MAX / per / sizeof(rcell))
            return -1;
        rcell *c = realloc(r->cells, nc * per * sizeof(rcell));
        if (!c)
            return -1;
        r->cells = c;
        r->rows_cap = nc;
    }
    wire_value vals[64];
    wire_value *v = n <= 64 ? vals : malloc((size_t)n * sizeof *v);
    if (!v)
        return -1;
    wire_data_row(m, v, (size_t)n);
    rcell *row = r->cells + (size_t)r->ntuples * (size_t)(r->nfields ? r->nfields : 1);
    int rc = 0;
    for (long i = 0; i < n; i++) {
        row[i].len = v[i].len;
        row[i].off = r->data.len;
        if (v[i].len >= 0) {
            wire_put(&r->data, v[i].data, (size_t)v[i].len);
            wire_put_u8(&r->data, 0);
        }
    }
    if (r->data.oom)
        rc = -1;
    if (v != vals)
        free(v);
    if (rc == 0)
        r->ntuples++;
    return rc;
}

int result_set_tag(pglite_result *r, const char *tag) {
    free(r->tag);
    r->tag = strdup(tag ? tag : "");
    return r->tag ? 0 : -1;
}

/* ---- accessors ------------------------------------------------------------ */

int pglite_result_status(const pglite_result *r) { return r ? r->status : PGLITE_RESULT_ERROR; }

const pglite_error *pglite_result_error(const pglite_result *r) {
    return r && r->status == PGLITE_RESULT_ERROR && r->err ? &r->err->e : NULL;
}

const char *pglite_result_error_field(const pglite_result *r, char code) {
    return pglite_error_field(pglite_result_error(r), code);
}

int pglite_result_ntuples(const pglite_result *r) { return r ? r->ntuples : 0; }
int pglite_result_nfields(const pglite_result *r) { return r ? r->nfields : 0; }

static int col_ok(const pglite_result *r, int col) { return r && col >= 0 && col < r->nfields; }

static const rcell *cell(const pglite_result *r, int row, int col) {
    if (!col_ok(r, col) || row < 0 || row >= r->ntuples)
        return NULL;
    return r->cells + (size_t)row * (size_t)r->nfields + (size_t)col;
}

const char *pglite_result_fname(const pglite_result *r, int col) {
    return col_ok(r, col) ? r->fields[col].name : NULL;
}

int pglite_result_fnumber(const pglite_result *r, const char *name) {
    if (!r || !name)
        return -1;
    for (int i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            return i;
    return -1;
}

uint32_t pglite_result_ftype(const pglite_result *r, int col) {
    return col_ok(r, col) ? r->fields[col].type : 0;
}

int pglite_result_fmod(const pglite_result *r, int col) {
    return col_ok(r, col) ? r->fields[col].typmod : -1;
}

int pglite_result_fformat(const pglite_result *r, int col) {
    return col_ok(r, col) ? r->fields[col].format : 0;
}

const char *pglite_result_getvalue(const pglite_result *r, int row, int col) {
    const rcell *c = cell(r, row, col);
    if (!c)
        return NULL;
    if (c->len < 0)
        return "";
    return (const char *)r->data.data + c->off;
}

int pglite_result_getisnull(const pglite_result *r, int row, int col) {
    const rcell *c = cell(r, row, col);
    return !c || c->len < 0;
}

int pglite_result_getlength(const pglite_result *r, int row, int col) {
    const rcell *c = cell(r, row, col);
    return c && c->len > 0 ? c->len : 0;
}

int pglite_result_nparams(const pglite_result *r) { return r ? r->nparams : 0; }

uint32_t pglite_result_paramtype(const pglite_result *r, int i) {
    return r && i >= 0 && i < r->nparams ? r->ptypes[i] : 0;
}

const char *pglite_result_cmd_tag(const pglite_result *r) {
    return r && r->tag ? r->tag : "";
}

int64_t pglite_result_rows_affected(const pglite_result *r) {
    if (!r || !r->tag)
        return -1;
    static const char *const counted[] = {"INSERT ", "UPDATE ", "DELETE ", "SELECT ", "MERGE ",
                                          "MOVE ", "FETCH ", "COPY ", NULL};
    for (int i = 0; counted[i]; i++) {
        size_t l = strlen(counted[i]);
        if (strncmp(r->tag, counted[i], l) != 0)
            continue;
        const char *num = strrchr(r->tag, ' ') + 1; /* INSERT oid rows: the last */
        char *end;
        errno = 0;
        long long v = strtoll(num, &end, 10);
        if (errno || end == num || *end || v < 0)
            return -1;
        return (int64_t)v;
    }
    return -1;
}

/* ---- typed getters ------------------------------------------------------------ */

/* The cell, or a status: RANGE, NULL. */
static int get_cell(const pglite_result *r, int row, int col, const rcell **c) {
    *c = cell(r, row, col);
    if (!*c)
        return PGLITE_RANGE;
    if ((*c)->len < 0)
        return PGLITE_NULL;
    return PGLITE_OK;
}

/* The start of every typed getter: MISUSE without somewhere to put the
 * value, else get_cell. */
static int typed_cell(const pglite_result *r, int row, int col, int have_out,
                      const rcell **c) {
    if (!have_out)
        return PGLITE_MISUSE;
    return get_cell(r, row, col, c);
}

static const uint8_t *cell_data(const pglite_result *r, const rcell *c) {
    return r->data.data + c->off;
}

static uint64_t be_n(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int parse_int64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int pglite_result_get_int64(const pglite_result *r, int row, int col, int64_t *out) {
    const rcell *c;
    if (out)
        *out = 0;
    int rc = typed_cell(r, row, col, out != NULL, &c);
    if (rc)
        return rc;
    const uint8_t *d = cell_data(r, c);
    uint32_t t = r->fields[col].type;
    if (r->fields[col].format == 0) {
        int64_t v;
        if (parse_int64((const char *)d, &v) != 0)
            return PGLITE_MISMATCH;
        *out = v;
        return PGLITE_OK;
    }
    if (t == OID_INT2 && c->len == 2)
        *out = (int16_t)be_n(d, 2);
    else if (t == OID_INT4 && c->len == 4)
        *out = (int32_t)be_n(d, 4);
    else if (t == OID_INT8 && c->len == 8)
        *out = (int64_t)be_n(d, 8);
    else if (t == OID_OID && c->len == 4)
        *out = (uint32_t)be_n(d, 4);
    else
        return PGLITE_MISMATCH;
    return PGLITE_OK;
}

int pglite_result_get_double(const pglite_result *r, int row, int col, double *out) {
    const rcell *c;
    if (out)
        *out = 0;
    int rc = typed_cell(r, row, col, out != NULL, &c);
    if (rc)
        return rc;
    const uint8_t *d = cell_data(r, c);
    uint32_t t = r->fields[col].type;
    if (r->fields[col].format == 0) {
        const char *s = (const char *)d;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || *end || (errno == ERANGE && isinf(v)))
            return PGLITE_MISMATCH;
        *out = v;
        return PGLITE_OK;
    }
    if (t == OID_FLOAT8 && c->len == 8) {
        uint64_t b = be_n(d, 8);
        memcpy(out, &b, 8);
    } else if (t == OID_FLOAT4 && c->len == 4) {
        uint32_t b = (uint32_t)be_n(d, 4);
        float f;
        memcpy(&f, &b, 4);
        *out = f;
    } else {
        int64_t i;
        rc = pglite_result_get_int64(r, row, col, &i);
        if (rc)
            return rc;
        *out = (double)i;
    }
    return PGLITE_OK;
}

int pglite_result_get_bool(const pglite_result *r, int row, int col, int *out) {
    const rcell *c;
    if (out)
        *out = 0;
    int rc = typed_cell(r, row, col, out != NULL, &c);
    if (rc)
        return rc;
    const uint8_t *d = cell_data(r, c);
    if (r->fields[col].format == 0) {
        const char *s = (const char *)d;
        if (strcmp(s, "t") == 0 || strcasecmp(s, "true") == 0)
            *out = 1;
        else if (strcmp(s, "f") == 0 || strcasecmp(s, "false") == 0)
            *out = 0;
        else
            return PGLITE_MISMATCH;
        return PGLITE_OK;
    }
    if (r->fields[col].type != OID_BOOL || c->len != 1)
        return PGLITE_MISMATCH;
    *out = d[0] != 0;
    return PGLITE_OK;
}

static int text_like(uint32_t t) {
    return t == OID_TEXT || t == OID_VARCHAR || t == OID_BPCHAR || t == OID_NAME ||
           t == OID_CHAR || t == OID_UNKNOWN || t == OID_JSON || t == OID_XML;
}

int pglite_result_get_text(const pglite_result *r, int row, int col, const char **out) {
    const rcell *c;
    if (out)
        *out = NULL;
    int rc = typed_cell(r, row, col, out != NULL, &c);
    if (rc)
        return rc;
    if (r->fields[col].format != 0 && !text_like(r->fields[col].type))
        return PGLITE_MISMATCH;
    *out = (const char *)cell_data(r, c);
    return PGLITE_OK;
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* bytea's text output (hex "\x..." or escape format) into out (room for
 * n bytes); the decoded length, or -1 if malformed. */
static long bytea_decode(const uint8_t *s, size_t n, uint8_t *out) {
    size_t o = 0;
    if (n >= 2 && s[0] == '\\' && s[1] == 'x') {
        for (size_t i = 2; i < n;) {
            if (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
                i++;
                continue;
            }
            int hi = hexval(s[i]), lo = i + 1 < n ? hexval(s[i + 1]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            out[o++] = (uint8_t)(hi << 4 | lo);
            i += 2;
        }
        return (long)o;
    }
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            out[o++] = s[i++];
        } else if (i + 1 < n && s[i + 1] == '\\') {
            out[o++] = '\\';
            i += 2;
        } else if (i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
                   s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            out[o++] = (uint8_t)((s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 | (s[i + 3] - '0'));
            i += 4;
        } else {
            return -1;
        }
    }
    return (long)o;
}

int pglite_result_get_bytea(const pglite_result *r, int row, int col, uint8_t **out,
                            size_t *len) {
    const rcell *c;
    if (out)
        *out = NULL;
    if (len)
        *len = 0;
    int rc = typed_cell(r, row, col, out && len, &c);
    if (rc)
        return rc;
    const uint8_t *d = cell_data(r, c);
    size_t n = (size_t)c->len;
    uint8_t *b = malloc(n + 1);
    if (!b)
        return PGLITE_NOMEM;
    if (r->fields[col].format == 0 && r->fields[col].type == OID_BYTEA) {
        long k = bytea_decode(d, n, b);
        if (k < 0) {
            free(b);
            return PGLITE_MISMATCH;
        }
        n = (size_t)k;
    } else {
        memcpy(b, d, n);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return PGLITE_OK;
}

void pglite_free(void *p) { free(p); }
