/* PostgreSQL v3 protocol codec. */
#include "wire/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wire_buf_init(wire_buf *b) { memset(b, 0, sizeof *b); }

void wire_buf_free(wire_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void wire_buf_reset(wire_buf *b) {
    b->len = 0;
    b->oom = 0;
}

int wire_put(wire_buf *b, const void *p, size_t n) {
    if (b->oom)
        return -1;
    if (n > SIZE_MAX - b->len) {
        b->oom = 1;
        return -1;
    }
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n) {
            if (nc > SIZE_MAX / 2) {
                nc = b->len + n;
                break;
            }
            nc *= 2;
        }
        uint8_t *d = realloc(b->data, nc);
        if (!d) {
            b->oom = 1;
            return -1;
        }
        b->data = d;
        b->cap = nc;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int wire_put_u8(wire_buf *b, uint8_t v) { return wire_put(b, &v, 1); }

int wire_put_u16(wire_buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return wire_put(b, x, 2);
}

int wire_put_u32(wire_buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return wire_put(b, x, 4);
}

int wire_put_str(wire_buf *b, const char *s) { return wire_put(b, s, strlen(s) + 1); }

size_t wire_begin(wire_buf *b, char type) {
    if (type)
        wire_put_u8(b, (uint8_t)type);
    size_t off = b->len;
    wire_put_u32(b, 0);
    return off;
}

int wire_end(wire_buf *b, size_t off) {
    if (b->oom || off + 4 > b->len)
        return -1;
    size_t n = b->len - off;
    if (n > WIRE_MAX_MESSAGE) {
        b->oom = 1;
        return -1;
    }
    uint8_t *d = b->data + off;
    d[0] = (uint8_t)(n >> 24);
    d[1] = (uint8_t)(n >> 16);
    d[2] = (uint8_t)(n >> 8);
    d[3] = (uint8_t)n;
    return 0;
}

int wire_startup(wire_buf *b, const char *const *params) {
    return wire_startup_version(b, 0, params);
}

int wire_startup_version(wire_buf *b, int minor, const char *const *params) {
    size_t off = wire_begin(b, 0);
    wire_put_u32(b, WIRE_PROTOCOL_3_0 + (uint32_t)minor);
    for (size_t i = 0; params && params[i] && params[i + 1]; i += 2) {
        wire_put_str(b, params[i]);
        wire_put_str(b, params[i + 1]);
    }
    wire_put_u8(b, 0);
    return wire_end(b, off);
}

int wire_query(wire_buf *b, const char *sql) {
    size_t off = wire_begin(b, PqMsg_Query);
    wire_put_str(b, sql);
    return wire_end(b, off);
}

int wire_terminate(wire_buf *b) { return wire_end(b, wire_begin(b, PqMsg_Terminate)); }
int wire_sync(wire_buf *b) { return wire_end(b, wire_begin(b, PqMsg_Sync)); }

void wire_reader_init(wire_reader *r, const void *data, size_t len) {
    r->p = data;
    r->len = len;
    r->pos = 0;
}

uint32_t wire_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* PostgreSQL's limit for a frontend message of type t (0: a type it does
 * not accept there), as SocketBackend() and the COPY reader apply them. */
static uint32_t frontend_limit(uint8_t t, wire_from from) {
    switch (t) {
    case PqMsg_CopyData:
        return from == WIRE_FROM_AUTH ? 0 : WIRE_LARGE_MESSAGE_LIMIT;
    case PqMsg_CopyDone: case PqMsg_CopyFail: case PqMsg_Flush: case PqMsg_Sync:
        return from == WIRE_FROM_AUTH ? 0 : WIRE_SMALL_MESSAGE_LIMIT;
    case PqMsg_Query: case PqMsg_FunctionCall: case PqMsg_Bind: case PqMsg_Parse:
        return from == WIRE_FROM_CLIENT ? WIRE_LARGE_MESSAGE_LIMIT : 0;
    case PqMsg_Close: case PqMsg_Describe: case PqMsg_Execute: case PqMsg_Terminate:
        return from == WIRE_FROM_CLIENT ? WIRE_SMALL_MESSAGE_LIMIT : 0;
    case PqMsg_PasswordMessage:
        return from == WIRE_FROM_AUTH ? WIRE_MAX_AUTH_TOKEN + 4 : 0;
    }
    return 0;
}

static void say(char *why, size_t n, const char *fmt, unsigned a, unsigned b) {
    if (why && n)
        snprintf(why, n, fmt, a, b);
}

long wire_frame(const uint8_t *data, size_t len, wire_from from, char *why, size_t whylen) {
    if (len < 1 || (from == WIRE_FROM_BACKEND && len < 5))
        return 0;
    uint8_t t = data[0];
    uint32_t limit = from == WIRE_FROM_BACKEND ? WIRE_MAX_MESSAGE : frontend_limit(t, from);
    if (!limit) {
        if (from == WIRE_FROM_COPY)
            say(why, whylen, "unexpected message type 0x%02X during COPY from stdin", t, 0);
        else if (from == WIRE_FROM_AUTH)
            say(why, whylen, "expected password response, got message type %u", t, 0);
        else
            say(why, whylen, "invalid frontend message type %u", t, 0);
        return -1;
    }
    if (len < 5)
        return 0;
    uint32_t n = wire_be32(data + 1);
    if (n < 4 || n > limit) {
        if (from == WIRE_FROM_AUTH)
            say(why, whylen, "invalid message length", 0, 0);
        else
            say(why, whylen, "invalid message length %u for message type %u", n, t);
        return -1;
    }
    if (len < (size_t)n + 1)
        return 0;
    return (long)n + 1;
}

long wire_frame_len(const uint8_t *data, size_t len) {
    return wire_frame(data, len, WIRE_FROM_BACKEND, NULL, 0);
}

int wire_next(wire_reader *r, wire_msg *m) {
    if (r->pos >= r->len)
        return 0;
    long n = wire_frame_len(r->p + r->pos, r->len - r->pos);
    if (n <= 0)
        return -1;
    m->type = (char)r->p[r->pos];
    m->body = r->p + r->pos + 5;
    m->len = (uint32_t)(n - 5);
    r->pos += (size_t)n;
    return 1;
}

int wire_error_field(const wire_msg *m, char code, char *out, size_t n) {
    const uint8_t *p = m->body, *end = m->body + m->len;
    while (p < end && *p) {
        char c = (char)*p++;
        const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
        if (!nul)
            return -1;
        if (c == code) {
            size_t l = (size_t)(nul - p);
            if (n) {
                size_t k = l < n - 1 ? l : n - 1;
                memcpy(out, p, k);
                out[k] = 0;
            }
            return (int)l;
        }
        p = nul + 1;
    }
    return -1;
}

/* ---- extended query protocol and COPY ------------------------------------ */

/* Mark b as failed (so wire_end reports it) and fail. */
static int wire_fail(wire_buf *b) {
    b->oom = 1;
    return -1;
}

int wire_parse(wire_buf *b, const char *name, const char *sql, int nparams,
               const uint32_t *types) {
    if (!name || !sql || nparams < 0 || nparams > 65535)
        return -1;
    size_t off = wire_begin(b, PqMsg_Parse);
    wire_put_str(b, name);
    wire_put_str(b, sql);
    wire_put_u16(b, (uint16_t)nparams);
    for (int i = 0; i < nparams; i++)
        wire_put_u32(b, types ? types[i] : 0);
    return wire_end(b, off);
}

int wire_bind(wire_buf *b, const char *portal, const char *stmt, int nparams,
              const char *const *values, const int *lengths, const int *formats,
              int result_format) {
    if (!portal || !stmt || nparams < 0 || nparams > 65535 || (nparams && !values))
        return -1;
    for (int i = 0; i < nparams; i++)
        if (formats && formats[i] && values[i] && (!lengths || lengths[i] < 0))
            return -1; /* a binary value needs its length */
    size_t off = wire_begin(b, PqMsg_Bind);
    wire_put_str(b, portal);
    wire_put_str(b, stmt);
    if (formats) {
        wire_put_u16(b, (uint16_t)nparams);
        for (int i = 0; i < nparams; i++)
            wire_put_u16(b, formats[i] ? 1 : 0);
    } else {
        wire_put_u16(b, 0); /* all text */
    }
    wire_put_u16(b, (uint16_t)nparams);
    for (int i = 0; i < nparams; i++) {
        if (!values[i]) {
            wire_put_u32(b, 0xffffffffu);
            continue;
        }
        size_t n = formats && formats[i] ? (size_t)lengths[i] : strlen(values[i]);
        if (n > WIRE_MAX_MESSAGE)
            return wire_fail(b);
        wire_put_u32(b, (uint32_t)n);
        wire_put(b, values[i], n);
    }
    wire_put_u16(b, 1);
    wire_put_u16(b, result_format ? 1 : 0);
    return wire_end(b, off);
}

static int kind_name(wire_buf *b, char type, char kind, const char *name) {
    if (!name || (kind != 'S' && kind != 'P'))
        return -1;
    size_t off = wire_begin(b, type);
    wire_put_u8(b, (uint8_t)kind);
    wire_put_str(b, name);
    return wire_end(b, off);
}

int wire_describe(wire_buf *b, char kind, const char *name) {
    return kind_name(b, PqMsg_Describe, kind, name);
}

int wire_close(wire_buf *b, char kind, const char *name) {
    return kind_name(b, PqMsg_Close, kind, name);
}

int wire_execute(wire_buf *b, const char *portal, uint32_t max_rows) {
    if (!portal)
        return -1;
    size_t off = wire_begin(b, PqMsg_Execute);
    wire_put_str(b, portal);
    wire_put_u32(b, max_rows);
    return wire_end(b, off);
}

int wire_flush(wire_buf *b) { return wire_end(b, wire_begin(b, PqMsg_Flush)); }

int wire_copy_data(wire_buf *b, const void *data, size_t len) {
    if (!data && len)
        return -1;
    if (len > WIRE_MAX_MESSAGE - 4)
        return -1;
    size_t off = wire_begin(b, PqMsg_CopyData);
    wire_put(b, data, len);
    return wire_end(b, off);
}

int wire_copy_done(wire_buf *b) { return wire_end(b, wire_begin(b, PqMsg_CopyDone)); }

int wire_copy_fail(wire_buf *b, const char *reason) {
    if (!reason)
        return -1;
    size_t off = wire_begin(b, PqMsg_CopyFail);
    wire_put_str(b, reason);
    return wire_end(b, off);
}

/* ---- decoding --------------------------------------------------------------- */

void wire_cur_init(wire_cur *c, const wire_msg *m) {
    c->p = m ? m->body : NULL;
    c->len = m && m->body ? m->len : 0;
    c->pos = 0;
    c->bad = 0;
}

size_t wire_cur_left(const wire_cur *c) { return c->bad ? 0 : c->len - c->pos; }

const uint8_t *wire_get_bytes(wire_cur *c, size_t n) {
    if (c->bad || n > c->len - c->pos) {
        c->bad = 1;
        return NULL;
    }
    const uint8_t *p = c->p + c->pos;
    c->pos += n;
    return p;
}

uint8_t wire_get_u8(wire_cur *c) {
    const uint8_t *p = wire_get_bytes(c, 1);
    return p ? p[0] : 0;
}

uint16_t wire_get_u16(wire_cur *c) {
    const uint8_t *p = wire_get_bytes(c, 2);
    return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

uint32_t wire_get_u32(wire_cur *c) {
    const uint8_t *p = wire_get_bytes(c, 4);
    return p ? wire_be32(p) : 0;
}

const char *wire_get_str(wire_cur *c) {
    if (c->bad)
        return NULL;
    const uint8_t *nul = memchr(c->p + c->pos, 0, c->len - c->pos);
    if (!nul) {
        c->bad = 1;
        return NULL;
    }
    const char *s = (const char *)(c->p + c->pos);
    c->pos = (size_t)(nul - c->p) + 1;
    return s;
}

/* The whole body read, nothing left over. */
static int cur_done(const wire_cur *c) { return !c->bad && c->pos == c->len; }

long wire_row_description(const wire_msg *m, wire_field *out, size_t max) {
    if (!m || m->type != 'T')
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    uint16_t n = wire_get_u16(&c);
    for (uint16_t i = 0; i < n; i++) {
        wire_field f;
        f.name = wire_get_str(&c);
        f.table_oid = wire_get_u32(&c);
        f.column = (int16_t)wire_get_u16(&c);
        f.type_oid = wire_get_u32(&c);
        f.typlen = (int16_t)wire_get_u16(&c);
        f.typmod = (int32_t)wire_get_u32(&c);
        f.format = (int16_t)wire_get_u16(&c);
        if (c.bad || (f.format != 0 && f.format != 1))
            return -1;
        if (out && i < max)
            out[i] = f;
    }
    return cur_done(&c) ? (long)n : -1;
}

long wire_data_row(const wire_msg *m, wire_value *out, size_t max) {
    if (!m || m->type != 'D')
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    uint16_t n = wire_get_u16(&c);
    for (uint16_t i = 0; i < n; i++) {
        int32_t l = (int32_t)wire_get_u32(&c);
        const uint8_t *d = NULL;
        if (l < -1)
            return -1;
        if (l >= 0 && !(d = wire_get_bytes(&c, (size_t)l)))
            return -1;
        if (c.bad)
            return -1;
        if (out && i < max)
            out[i] = (wire_value){d, l};
    }
    return cur_done(&c) ? (long)n : -1;
}

long wire_parameter_description(const wire_msg *m, uint32_t *out, size_t max) {
    if (!m || m->type != 't')
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    uint16_t n = wire_get_u16(&c);
    for (uint16_t i = 0; i < n; i++) {
        uint32_t t = wire_get_u32(&c);
        if (out && i < max)
            out[i] = t;
    }
    return cur_done(&c) ? (long)n : -1;
}

long wire_copy_response(const wire_msg *m, int *format, int16_t *out, size_t max) {
    if (!m || (m->type != 'G' && m->type != 'H' && m->type != 'W'))
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    uint8_t f = wire_get_u8(&c);
    uint16_t n = wire_get_u16(&c);
    for (uint16_t i = 0; i < n; i++) {
        int16_t v = (int16_t)wire_get_u16(&c);
        if (v != 0 && v != 1)
            return -1;
        if (out && i < max)
            out[i] = v;
    }
    if (!cur_done(&c) || f > 1)
        return -1;
    if (format)
        *format = f;
    return (long)n;
}

int wire_command_complete(const wire_msg *m, const char **tag) {
    if (!m || m->type != PqMsg_CommandComplete)
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    const char *t = wire_get_str(&c);
    if (!cur_done(&c))
        return -1;
    if (tag)
        *tag = t;
    return 0;
}

int wire_ready_for_query(const wire_msg *m, char *status) {
    if (!m || m->type != PqMsg_ReadyForQuery || m->len != 1)
        return -1;
    char s = (char)m->body[0];
    if (s != 'I' && s != 'T' && s != 'E')
        return -1;
    if (status)
        *status = s;
    return 0;
}

int wire_notification(const wire_msg *m, int32_t *pid, const char **channel,
                      const char **payload) {
    if (!m || m->type != PqMsg_NotificationResponse)
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    int32_t p = (int32_t)wire_get_u32(&c);
    const char *ch = wire_get_str(&c);
    const char *pl = wire_get_str(&c);
    if (!cur_done(&c))
        return -1;
    if (pid)
        *pid = p;
    if (channel)
        *channel = ch;
    if (payload)
        *payload = pl;
    return 0;
}

int wire_parameter_status(const wire_msg *m, const char **name, const char **value) {
    if (!m || m->type != PqMsg_ParameterStatus)
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    const char *n = wire_get_str(&c);
    const char *v = wire_get_str(&c);
    if (!cur_done(&c))
        return -1;
    if (name)
        *name = n;
    if (value)
        *value = v;
    return 0;
}

int wire_backend_key(const wire_msg *m, int32_t *pid, uint32_t *key) {
    if (!m || m->type != PqMsg_BackendKeyData || m->len < 8 || m->len > 4 + 256)
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    int32_t p = (int32_t)wire_get_u32(&c);
    uint32_t k = wire_get_u32(&c);
    if (pid)
        *pid = p;
    if (key)
        *key = k;
    return 0;
}

int wire_error_next(wire_cur *c, char *code, const char **value) {
    uint8_t t = wire_get_u8(c);
    if (c->bad)
        return -1;
    if (t == 0)
        return 0;
    const char *v = wire_get_str(c);
    if (!v)
        return -1;
    if (code)
        *code = (char)t;
    if (value)
        *value = v;
    return 1;
}

int wire_query_len(wire_buf *b, const char *sql, size_t len) {
    if ((!sql && len) || len > WIRE_MAX_MESSAGE - 5 || (len && memchr(sql, 0, len)))
        return -1;
    size_t off = wire_begin(b, PqMsg_Query);
    wire_put(b, sql, len);
    wire_put_u8(b, 0);
    return wire_end(b, off);
}

/* ---- backend messages the server writes ------------------------------------- */

int wire_error_response(wire_buf *b, char type, const char *severity, const char *code,
                        const char *msg, const char *detail, const char *hint) {
    if (!severity || !code || !msg || (type != PqMsg_ErrorResponse && type != PqMsg_NoticeResponse))
        return wire_fail(b);
    size_t off = wire_begin(b, type);
    wire_put_u8(b, PG_DIAG_SEVERITY);
    wire_put_str(b, severity);
    wire_put_u8(b, PG_DIAG_SEVERITY_NONLOCALIZED);
    wire_put_str(b, severity);
    wire_put_u8(b, PG_DIAG_SQLSTATE);
    wire_put_str(b, code);
    wire_put_u8(b, PG_DIAG_MESSAGE_PRIMARY);
    wire_put_str(b, msg);
    if (detail && *detail) {
        wire_put_u8(b, PG_DIAG_MESSAGE_DETAIL);
        wire_put_str(b, detail);
    }
    if (hint && *hint) {
        wire_put_u8(b, PG_DIAG_MESSAGE_HINT);
        wire_put_str(b, hint);
    }
    wire_put_u8(b, 0);
    return wire_end(b, off);
}

int wire_auth_request(wire_buf *b, uint32_t code, const void *data, size_t n) {
    if (n && !data)
        return wire_fail(b);
    size_t off = wire_begin(b, PqMsg_AuthenticationRequest);
    wire_put_u32(b, code);
    wire_put(b, data, n);
    return wire_end(b, off);
}

int wire_negotiate_protocol(wire_buf *b, uint32_t minor, const char *const *unknown,
                            size_t nunknown) {
    size_t off = wire_begin(b, PqMsg_NegotiateProtocolVersion);
    wire_put_u32(b, 3u << 16 | (minor & 0xffff));
    wire_put_u32(b, (uint32_t)nunknown);
    for (size_t i = 0; i < nunknown; i++)
        wire_put_str(b, unknown[i]);
    return wire_end(b, off);
}

int wire_parameter_status_msg(wire_buf *b, const char *name, const char *value) {
    if (!name || !value)
        return wire_fail(b);
    size_t off = wire_begin(b, PqMsg_ParameterStatus);
    wire_put_str(b, name);
    wire_put_str(b, value);
    return wire_end(b, off);
}

int wire_backend_key_msg(wire_buf *b, int32_t pid, const uint8_t *key, size_t keylen) {
    if (!key || keylen < 4 || keylen > WIRE_MAX_CANCEL_KEY)
        return wire_fail(b);
    size_t off = wire_begin(b, PqMsg_BackendKeyData);
    wire_put_u32(b, (uint32_t)pid);
    wire_put(b, key, keylen);
    return wire_end(b, off);
}

int wire_ready_for_query_msg(wire_buf *b, char status) {
    if (status != 'I' && status != 'T' && status != 'E')
        return wire_fail(b);
    size_t off = wire_begin(b, PqMsg_ReadyForQuery);
    wire_put_u8(b, (uint8_t)status);
    return wire_end(b, off);
}

/* ---- frontend packets the server reads ------------------------------------- */

uint32_t wire_packet_code(const uint8_t *pkt) { return wire_be32(pkt + 4); }

int wire_cancel_request(const uint8_t *pkt, size_t len, int32_t *pid, const uint8_t **key,
                        size_t *keylen) {
    /* length, code, pid, then the key: 4 bytes (3.0) or up to 256 (3.2) */
    if (len < 12 || len - 12 == 0 || len - 12 > WIRE_MAX_CANCEL_KEY)
        return -1;
    *pid = (int32_t)wire_be32(pkt + 8);
    *key = pkt + 12;
    *keylen = len - 12;
    return 0;
}

int wire_startup_param(const uint8_t *pkt, size_t len, size_t *pos, const char **name,
                       const char **value) {
    /* name NUL value NUL ... NUL, the last NUL the packet's last byte */
    if (len <= 8 || pkt[len - 1] != 0)
        return -1;
    size_t p = *pos ? *pos : 8;
    if (p >= len)
        return -1;
    if (pkt[p] == 0)
        return p == len - 1 ? 0 : -1;
    const char *n = (const char *)pkt + p;
    p += strlen(n) + 1; /* pkt[len-1] is NUL: strlen stays inside */
    if (p >= len)
        return -1;
    const char *v = (const char *)pkt + p;
    p += strlen(v) + 1;
    if (p >= len)
        return -1;
    *name = n;
    *value = v;
    *pos = p;
    return 1;
}

int wire_password_message(const wire_msg *m, const char **password) {
    if (!m || m->type != PqMsg_PasswordMessage || m->len == 0 || m->body[m->len - 1] != 0 ||
        memchr(m->body, 0, m->len) != m->body + m->len - 1)
        return -1;
    *password = (const char *)m->body;
    return 0;
}

int wire_sasl_initial_response(const wire_msg *m, const char **mechanism,
                               const uint8_t **data, size_t *n) {
    if (!m || m->type != PqMsg_SASLInitialResponse)
        return -1;
    wire_cur c;
    wire_cur_init(&c, m);
    const char *mech = wire_get_str(&c);
    int32_t dl = (int32_t)wire_get_u32(&c);
    if (c.bad || dl < 0 || (size_t)dl != wire_cur_left(&c))
        return -1;
    *mechanism = mech;
    *data = wire_get_bytes(&c, (size_t)dl);
    *n = (size_t)dl;
    return 0;
}
