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
/* Query with the first len bytes of sql (which must hold no NUL). */
int wire_query_len(wire_buf *b, const char *sql, size_t len);
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

/* ---- extended query protocol and COPY (frontend messages) ---------------
 *
 * Each appends one whole message and returns 0, or -1 if the buffer is out
 * of memory, an argument is invalid (a NULL name, a negative count, more
 * than 65535 parameters), or the message would exceed WIRE_MAX_MESSAGE. */

/* Parse: prepare sql as statement name ("" = unnamed) with nparams
 * parameter type OIDs (types may be NULL: all unspecified, 0). */
int wire_parse(wire_buf *b, const char *name, const char *sql, int nparams,
               const uint32_t *types);
/* Bind portal to statement with nparams values, libpq-style: values[i]
 * NULL is SQL NULL; formats NULL or formats[i] 0 is text (length strlen),
 * 1 is binary (length lengths[i]); result_format 0 text, 1 binary, for
 * every column. */
int wire_bind(wire_buf *b, const char *portal, const char *stmt, int nparams,
              const char *const *values, const int *lengths, const int *formats,
              int result_format);
/* Describe ('S' statement or 'P' portal) and Close ('S' or 'P'). */
int wire_describe(wire_buf *b, char kind, const char *name);
int wire_close(wire_buf *b, char kind, const char *name);
/* Execute portal, at most max_rows rows (0 = all). */
int wire_execute(wire_buf *b, const char *portal, uint32_t max_rows);
int wire_flush(wire_buf *b);
int wire_copy_data(wire_buf *b, const void *data, size_t len);
int wire_copy_done(wire_buf *b);
int wire_copy_fail(wire_buf *b, const char *reason);

/* ---- decoding message bodies -----------------------------------------------
 *
 * A wire_cur reads a message body front to back. Every get checks the
 * remaining length: reading past the end (or a string without its NUL)
 * sets bad, returns 0/NULL, and every later get fails too. */
typedef struct wire_cur {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} wire_cur;

void wire_cur_init(wire_cur *c, const wire_msg *m);
uint8_t wire_get_u8(wire_cur *c);
uint16_t wire_get_u16(wire_cur *c);
uint32_t wire_get_u32(wire_cur *c);
const char *wire_get_str(wire_cur *c);                 /* NUL-terminated in the body */
const uint8_t *wire_get_bytes(wire_cur *c, size_t n);  /* n bytes */
/* Bytes left unread. */
size_t wire_cur_left(const wire_cur *c);

/* One column of a RowDescription ('T'). name points into the message. */
typedef struct wire_field {
    const char *name;
    uint32_t table_oid;
    int16_t column;
    uint32_t type_oid;
    int16_t typlen;
    int32_t typmod;
    int16_t format; /* 0 text, 1 binary */
} wire_field;

/* One value of a DataRow ('D'): len -1 for NULL (data then NULL). */
typedef struct wire_value {
    const uint8_t *data;
    int32_t len;
} wire_value;

/* Decoders return the count in the message (which may exceed max: then
 * only max entries are filled; call again with room for all), or -1 if the
 * message is malformed: wrong type, truncated, negative counts or lengths
 * other than -1, or trailing bytes. The whole message is checked even when
 * max is 0. */
long wire_row_description(const wire_msg *m, wire_field *out, size_t max);
long wire_data_row(const wire_msg *m, wire_value *out, size_t max);
long wire_parameter_description(const wire_msg *m, uint32_t *out, size_t max);
/* CopyInResponse 'G', CopyOutResponse 'H', CopyBothResponse 'W': the
 * overall format into *format and the column formats into out. */
long wire_copy_response(const wire_msg *m, int *format, int16_t *out, size_t max);

/* CommandComplete 'C': the tag ("INSERT 0 1"). 0, or -1 if malformed. */
int wire_command_complete(const wire_msg *m, const char **tag);
/* ReadyForQuery 'Z': transaction status 'I', 'T' or 'E'. 0 or -1. */
int wire_ready_for_query(const wire_msg *m, char *status);
/* NotificationResponse 'A'. 0 or -1. */
int wire_notification(const wire_msg *m, int32_t *pid, const char **channel,
                      const char **payload);
/* ParameterStatus 'S'. 0 or -1. */
int wire_parameter_status(const wire_msg *m, const char **name, const char **value);
/* BackendKeyData 'K' (the key may be longer than 4 bytes in protocol 3.2:
 * only its first 4 bytes are returned). 0 or -1. */
int wire_backend_key(const wire_msg *m, int32_t *pid, uint32_t *key);
/* The fields of an ErrorResponse/NoticeResponse one at a time: 1 with
 * *code and *value (pointing into the message), 0 at the terminator, -1
 * if malformed. Start with wire_cur_init on the message. */
int wire_error_next(wire_cur *c, char *code, const char **value);

#endif
