/*
 * NAME
 *	smtp_stuff - the outbound message as SMTP DATA (RFC 5321 §4.5.2)
 * SUMMARY
 *	A pure encoder: message bytes in, the bytes the client sends after
 *	its DATA's 354 out, in pieces of any size.
 * DESCRIPTION
 *	smtp_stuff_init() starts a message. smtp_stuff_encode() reads from
 *	in[0..n) and writes to out[0..cap): a '.' at the start of a line is
 *	doubled (dot-stuffing), and every line ends in CRLF: the input has
 *	CRLF only (the listener saw to it), but a bare CR or LF would still
 *	go out as CRLF, since nothing bare may leave (SPEC §5). It returns the
 *	input octets consumed (it stops when fewer than SMTP_STUFF_EXPAND
 *	octets of room are left) and sets *outn. smtp_stuff_finish() writes
 *	the end: CRLF when the message did not end with one, and the final
 *	".\r\n"; out needs SMTP_STUFF_FINISH octets. Feeding the message in
 *	pieces of any size gives the same bytes as feeding it whole.
 *
 *	smtp_stuff_plain() tells whether the whole message in[0..n), at the
 *	start (s just initialised), needs no change at all: no line starts
 *	with '.', and every CR and LF is part of a CRLF. Its encoding is then
 *	the message itself: the caller may send it as it is, without the
 *	byte-by-byte pass (the common case; it scans with memchr()), and s is
 *	left as after encoding it, so that smtp_stuff_finish() writes its end.
 *	Otherwise s is untouched.
 * TOUCHES
 *	Memory only.
 */
#ifndef HK_PROTO_SMTP_STUFF_H
#define HK_PROTO_SMTP_STUFF_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_STUFF_EXPAND 3    /* most octets one input octet becomes ("\n" "." c) */
#define SMTP_STUFF_FINISH 5    /* "\r\n" ".\r\n" */

struct smtp_stuff {
	bool bol;              /* at the start of a line */
	bool cr;               /* the last octet out was a CR */
};

void smtp_stuff_init(struct smtp_stuff *s);
size_t smtp_stuff_encode(struct smtp_stuff *s, const char *in, size_t n, char *out, size_t cap,
                         size_t *outn);
size_t smtp_stuff_finish(struct smtp_stuff *s, char *out);
bool smtp_stuff_plain(struct smtp_stuff *s, const char *in, size_t n);

#endif
