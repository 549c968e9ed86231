/*
 * NAME
 *	smtp_data - the DATA stream reader (RFC 5321 §4.1.1.4, §4.5.2)
 * SUMMARY
 *	A byte-at-a-time state machine fed with whatever the socket delivered.
 *	It finds the end of data, removes dot-stuffing, normalises line ends
 *	to CRLF, and refuses what must never be queued. Pure: no I/O.
 * DESCRIPTION
 *	smtp_data_init() prepares a reader that appends the message content
 *	(unstuffed, every line ending in CRLF) to out.
 *
 *	smtp_data_feed() consumes bytes. It returns 1 when the end of data
 *	was seen, with *used set to the bytes consumed up to and including
 *	the final CRLF (the rest of the input is the client's next command,
 *	pipelined); it returns 0 when it needs more (then *used == len).
 *
 *	Only CRLF "." CRLF ends the data: a "." line reached or ended by a
 *	bare LF (\n.\n, \n.\r\n, \r\n.\n) never does (SMTP smuggling).  A
 *	line ended by a bare LF is stored as if it ended in CRLF when
 *	reject_bare_lf is false; otherwise the message is refused. A bare CR
 *	(CR not followed by LF), a NUL byte, or a line longer than 998
 *	octets refuses the message, and so does content beyond max_size.
 *	The first such problem is latched in d->error; reading goes on to the
 *	real end of data so that the session stays in step with the client,
 *	but nothing more is appended to out once an error is latched.
 *
 *	While reading the header section it records where the From: and
 *	Message-ID: fields are in out (offset and length of the whole
 *	field, folded lines included, without the final CRLF), whether Date:
 *	and Message-ID: are present, how many From: and Received: fields
 *	there are, where the header section ends, and whether any byte is
 *	8-bit. It also keeps its own copy of the first From: and Message-ID:
 *	fields (from_field, msgid_field: the field's lines, each with CRLF),
 *	at most SMTP_DATA_FIELD_MAX octets each; a longer field is dropped
 *	and flagged (from_too_long): the routing rule then reads it as
 *	unparseable (SPEC §4), and nothing of that size is ever parsed.
 *
 *	Offsets are stream offsets: the consumer may move the front of out
 *	elsewhere (the session spills a large message to disk), at most
 *	smtp_data_drainable() bytes at a time, and then says so with
 *	smtp_data_drained(); a byte at offset x is then at
 *	out->data[x - drained]. smtp_data_free() releases the field copies.
 * DIAGNOSTICS
 *	d->error is SMTP_DATA_OK or the first problem seen.
 * TOUCHES
 *	Its struct and the out buffer only.
 */
#ifndef HK_PROTO_SMTP_DATA_H
#define HK_PROTO_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define SMTP_DATA_LINE_MAX 998 /* octets per line, without CRLF (RFC 5322 §2.1.1) */
#define SMTP_DATA_FIELD_MAX ((size_t)64 << 10) /* From:/Message-ID: kept (Postfix: header_size_limit) */

enum smtp_data_error {
	SMTP_DATA_OK = 0,
	SMTP_DATA_BARE_CR,     /* 550 5.6.0 (hikyaku's reply; see smtp_reply.h) */
	SMTP_DATA_NUL,
	SMTP_DATA_LONG_LINE,
	SMTP_DATA_BARE_LF,     /* only with reject_bare_lf */
	SMTP_DATA_TOO_BIG,     /* 552 5.3.4 */
	SMTP_DATA_NOMEM,       /* 452 4.3.1: out could not grow */
};

struct smtp_data {
	/* settings */
	buf_t *out;
	uint64_t max_size;
	bool reject_bare_lf;

	/* results */
	enum smtp_data_error error;
	uint64_t size;               /* content bytes seen (counted even after an error) */
	bool has_8bit;
	bool has_date;
	bool has_message_id;
	unsigned n_from;
	unsigned n_received;         /* Received: fields (SPEC §5: a loop beyond 50) */
	buf_t from_field;            /* copy of the first From: field (see above) */
	buf_t msgid_field;           /* copy of the first Message-ID: field */
	bool from_too_long, msgid_too_long;
	size_t drained;              /* bytes the consumer took from the front of out */
	size_t from_off, from_len;   /* first From: field in out; len 0 if none */
	size_t msgid_off, msgid_len; /* first Message-ID: field in out */
	size_t header_end;           /* offset in out where the body starts
	                                (after the empty line), or the length of
	                                out if the message has no body */

	/* private state */
	int state;
	size_t line_len;             /* octets on the current line so far */
	size_t line_start;           /* offset in out of the current line */
	bool in_header;
	int cur_field;               /* which field the current header line continues */
};

void smtp_data_init(struct smtp_data *d, buf_t *out, uint64_t max_size, bool reject_bare_lf);
int smtp_data_feed(struct smtp_data *d, const char *p, size_t len, size_t *used);
void smtp_data_free(struct smtp_data *d);
size_t smtp_data_drainable(const struct smtp_data *d);
void smtp_data_drained(struct smtp_data *d, size_t n);
const char *smtp_data_strerror(enum smtp_data_error e);

#endif
