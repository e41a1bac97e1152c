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

#include "wire/protocol.h"

/* Largest message we write, and accept from the backend (whose replies,
 * a DataRow of a 1 GB value for one, may exceed what it accepts from a
 * client: the per-type WIRE_*_LIMIT of wire_frame). */
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
/* The same for protocol 3.minor. */
int wire_startup_version(wire_buf *b, int minor, const char *const *params);
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

/* Big-endian 32-bit word at p (p must have 4 bytes). */
uint32_t wire_be32(const uint8_t *p);

/* Who sent the bytes a frame is cut from, which decides the message types
 * and lengths allowed. */
typedef enum wire_from {
    WIRE_FROM_BACKEND,  /* any type, 4 to WIRE_MAX_MESSAGE */
    WIRE_FROM_CLIENT,   /* a frontend message of a session, PostgreSQL's per-type limit */
    WIRE_FROM_COPY,     /* the same during COPY FROM STDIN: CopyData, CopyDone,
                           CopyFail, Flush, Sync only */
    WIRE_FROM_AUTH,     /* during authentication: a 'p' message (password, SASL)
                           of at most WIRE_MAX_AUTH_TOKEN bytes */
} wire_from;

/* The one frame parser: the length of the first complete typed message at
 * data (type byte included), 0 if more bytes are needed, -1 if its type or
 * length is refused (the reason, PostgreSQL's words, in why). A length is
 * judged as soon as its word is there, never after buffering it. */
long wire_frame(const uint8_t *data, size_t len, wire_from from, char *why, size_t whylen);

/* wire_frame(data, len, WIRE_FROM_BACKEND, NULL, 0). */
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

/* ---- backend messages the server writes ------------------------------------
 * Each appends one whole message; 0, or -1 (the buffer marked oom). */

/* ErrorResponse (type PqMsg_ErrorResponse) or NoticeResponse: severity
 * ("FATAL", "ERROR", ...), SQLSTATE, message, and detail and hint when not
 * NULL or empty. */
int wire_error_response(wire_buf *b, char type, const char *severity, const char *code,
                        const char *msg, const char *detail, const char *hint);
/* AuthenticationRequest: code (AUTH_REQ_*) and n bytes of data. */
int wire_auth_request(wire_buf *b, uint32_t code, const void *data, size_t n);
/* NegotiateProtocolVersion: the newest minor version of 3 we speak, and the
 * protocol options (_pq_.*) we do not know. */
int wire_negotiate_protocol(wire_buf *b, uint32_t minor, const char *const *unknown,
                            size_t nunknown);
int wire_parameter_status_msg(wire_buf *b, const char *name, const char *value);
/* BackendKeyData: pid and a key of keylen (4 to WIRE_MAX_CANCEL_KEY) bytes. */
int wire_backend_key_msg(wire_buf *b, int32_t pid, const uint8_t *key, size_t keylen);
/* ReadyForQuery with status 'I', 'T' or 'E'. */
int wire_ready_for_query_msg(wire_buf *b, char status);

/* ---- frontend packets the server reads ----------------------------------------
 * The untyped first packet (length word, then a code): pkt and len span
 * it all, length word included. */

/* The code of the first packet (protocol version or request code). */
uint32_t wire_packet_code(const uint8_t *pkt);
/* CancelRequest: 0 with the pid and the key (pointing into pkt), or -1
 * for a key of a length PostgreSQL refuses (0 or over 256 bytes). */
int wire_cancel_request(const uint8_t *pkt, size_t len, int32_t *pid, const uint8_t **key,
                        size_t *keylen);
/* StartupMessage: the parameters one at a time. Start with *pos 0; 1 with
 * name and value (pointing into pkt), 0 at the terminator that ends the
 * packet, -1 if the layout is invalid ("invalid startup packet layout:
 * expected terminator as last byte"). */
int wire_startup_param(const uint8_t *pkt, size_t len, size_t *pos, const char **name,
                       const char **value);
/* PasswordMessage (md5 or cleartext): exactly one NUL-terminated string. */
int wire_password_message(const wire_msg *m, const char **password);
/* SASLInitialResponse: the mechanism name and the client's first message
 * (data, n; the length -1 for none is refused). 0 or -1 if malformed. */
int wire_sasl_initial_response(const wire_msg *m, const char **mechanism,
                               const uint8_t **data, size_t *n);

#endif
