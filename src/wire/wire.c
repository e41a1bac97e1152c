/* PostgreSQL v3 protocol codec. */
#include "wire/wire.h"

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
    size_t off = wire_begin(b, 0);
    wire_put_u32(b, WIRE_PROTOCOL_3_0);
    for (size_t i = 0; params && params[i] && params[i + 1]; i += 2) {
        wire_put_str(b, params[i]);
        wire_put_str(b, params[i + 1]);
    }
    wire_put_u8(b, 0);
    return wire_end(b, off);
}

int wire_query(wire_buf *b, const char *sql) {
    size_t off = wire_begin(b, 'Q');
    wire_put_str(b, sql);
    return wire_end(b, off);
}

int wire_terminate(wire_buf *b) { return wire_end(b, wire_begin(b, 'X')); }
int wire_sync(wire_buf *b) { return wire_end(b, wire_begin(b, 'S')); }

void wire_reader_init(wire_reader *r, const void *data, size_t len) {
    r->p = data;
    r->len = len;
    r->pos = 0;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

long wire_frame_len(const uint8_t *data, size_t len) {
    if (len < 5)
        return 0;
    uint32_t n = be32(data + 1);
    if (n < 4 || n > WIRE_MAX_MESSAGE)
        return -1;
    if (len < (size_t)n + 1)
        return 0;
    return (long)n + 1;
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
