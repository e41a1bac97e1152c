/*
 * protocol: the names of PostgreSQL v3 protocol messages and codes, as
 * PostgreSQL's own src/include/libpq/protocol.h and pqcomm.h spell them.
 * A letter means one thing per direction ('S' is Sync from the frontend,
 * ParameterStatus from the backend): code names the message, never the
 * letter. Included by wire.h.
 */
#ifndef PGLITE_WIRE_PROTOCOL_H
#define PGLITE_WIRE_PROTOCOL_H

/* Frontend (client) messages. */
#define PqMsg_Bind 'B'
#define PqMsg_Close 'C'
#define PqMsg_Describe 'D'
#define PqMsg_Execute 'E'
#define PqMsg_FunctionCall 'F'
#define PqMsg_Flush 'H'
#define PqMsg_Parse 'P'
#define PqMsg_Query 'Q'
#define PqMsg_Sync 'S'
#define PqMsg_Terminate 'X'
#define PqMsg_CopyFail 'f'
#define PqMsg_GSSResponse 'p'
#define PqMsg_PasswordMessage 'p'
#define PqMsg_SASLInitialResponse 'p'
#define PqMsg_SASLResponse 'p'

/* Backend (server) messages. */
#define PqMsg_ParseComplete '1'
#define PqMsg_BindComplete '2'
#define PqMsg_CloseComplete '3'
#define PqMsg_NotificationResponse 'A'
#define PqMsg_CommandComplete 'C'
#define PqMsg_DataRow 'D'
#define PqMsg_ErrorResponse 'E'
#define PqMsg_CopyInResponse 'G'
#define PqMsg_CopyOutResponse 'H'
#define PqMsg_EmptyQueryResponse 'I'
#define PqMsg_BackendKeyData 'K'
#define PqMsg_NoticeResponse 'N'
#define PqMsg_AuthenticationRequest 'R'
#define PqMsg_ParameterStatus 'S'
#define PqMsg_RowDescription 'T'
#define PqMsg_FunctionCallResponse 'V'
#define PqMsg_CopyBothResponse 'W'
#define PqMsg_ReadyForQuery 'Z'
#define PqMsg_NoData 'n'
#define PqMsg_PortalSuspended 's'
#define PqMsg_ParameterDescription 't'
#define PqMsg_NegotiateProtocolVersion 'v'

/* Both directions. */
#define PqMsg_CopyData 'd'
#define PqMsg_CopyDone 'c'

/* AuthenticationRequest codes. */
#define AUTH_REQ_OK 0
#define AUTH_REQ_PASSWORD 3
#define AUTH_REQ_MD5 5
#define AUTH_REQ_SASL 10
#define AUTH_REQ_SASL_CONT 11
#define AUTH_REQ_SASL_FIN 12

/* The untyped first packets: a protocol version or one of these codes. */
#define WIRE_PROTOCOL_3_0 196608u       /* 3 << 16 */
#define WIRE_CANCEL_REQUEST 80877102u   /* 1234.5678 */
#define WIRE_SSL_REQUEST 80877103u      /* 1234.5679 */
#define WIRE_GSSENC_REQUEST 80877104u   /* 1234.5680 */
#define WIRE_PROTOCOL_LATEST_MINOR 2    /* we speak 3.0 to 3.2 */

/* ErrorResponse / NoticeResponse field codes. */
#define PG_DIAG_SEVERITY 'S'
#define PG_DIAG_SEVERITY_NONLOCALIZED 'V'
#define PG_DIAG_SQLSTATE 'C'
#define PG_DIAG_MESSAGE_PRIMARY 'M'
#define PG_DIAG_MESSAGE_DETAIL 'D'
#define PG_DIAG_MESSAGE_HINT 'H'

/* PostgreSQL's limits (pqcomm.h, libpq-be.h): whole message length, the
 * length word included. */
#define WIRE_SMALL_MESSAGE_LIMIT 10000u           /* PQ_SMALL_MESSAGE_LIMIT */
#define WIRE_LARGE_MESSAGE_LIMIT (0x3fffffffu - 1) /* PQ_LARGE_MESSAGE_LIMIT */
#define WIRE_MAX_STARTUP_PACKET 10000u            /* MAX_STARTUP_PACKET_LENGTH */
#define WIRE_MAX_AUTH_TOKEN 65535u                /* PG_MAX_AUTH_TOKEN_LENGTH */
#define WIRE_MAX_CANCEL_KEY 256u

#endif
