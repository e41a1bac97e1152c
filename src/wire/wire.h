/*
 * wire: PostgreSQL v3 protocol messages, encoded and decoded. No I/O.
 *
 * A wire_buf is a growable byte buffer messages are appended to; a
 * wire_reader walks the messages of a buffer. All lengths are checked: a
 * malformed message is an error, never a read past the end.
 */
#ifndef PGLITE_WIRE_H
#define PGLITE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_PROTOCOL_3_0 196608u /* 3 << 16 */
#define WIRE_SSL_REQUEST 80877103u
#define WIRE_GSSENC_REQUEST 80877104u
#define WIRE_CANCEL_REQUEST 80877102u
/* Largest message we accept (PostgreSQL's PQ_LARGE_MESSAGE_LIMIT is 1 GB). */
#define WIRE_MAX_MESSAGE (1u << 30)

typedef struct wire_buf {
    uint8_t *data;
    size_t len, cap;
    int oom; /* an append failed: the buffer is incomplete */
} wire_buf;

void wire_buf_init(wire_buf *b);
void wire_buf_free(wire_buf *b);
void wire_buf_reset(wire_buf *b);
int wire_put(wire_buf *b, const void *p, size_t n);
int wire_put_u8(wire_buf *b, uint8_t v);
int wire_put_u16(wire_buf *b, uint16_t v);
int wire_put_u32(wire_buf *b, uint32_t v);
int wire_put_str(wire_buf *b, const char *s); /* with its NUL */

/* Begin a message of type `type` (0 for the untyped startup packet);
 * returns its offset for wire_end. */
size_t wire_begin(wire_buf *b, char type);
/* Patch the length of the message begun at off. 0, or -1 if too long. */
int wire_end(wire_buf *b, size_t off);

/* Whole messages. params: NULL-terminated name, value, name, value... */
int wire_startup(wire_buf *b, const char *const *params);
int wire_query(wire_buf *b, const char *sql);
int wire_terminate(wire_buf *b);
int wire_sync(wire_buf *b);

/* One decoded backend (or frontend) message. */
typedef struct wire_msg {
    char type;
    const uint8_t *body; /* after the length word */
    uint32_t len;        /* body length */
} wire_msg;

typedef struct wire_reader {
    const uint8_t *p;
    size_t len, pos;
} wire_reader;

void wire_reader_init(wire_reader *r, const void *data, size_t len);
/* 1 and *m for the next message, 0 at the end, -1 if the rest is malformed
 * (bad length) or truncated. */
int wire_next(wire_reader *r, wire_msg *m);

/* Length of the first complete typed message at data, 0 if incomplete, or
 * -1 if its length word is invalid. */
long wire_frame_len(const uint8_t *data, size_t len);

/* Fields of an ErrorResponse/NoticeResponse body: value of field code
 * (e.g. 'C' SQLSTATE, 'M' message) copied into out, or -1 if absent. */
int wire_error_field(const wire_msg *m, char code, char *out, size_t n);

#endif
