/*
 * NAME
 *	sm_body - hikyaku-sendmail's conversion of a message to SMTP DATA
 * SUMMARY
 *	A byte-at-a-time state machine that turns what a program pipes into
 *	sendmail(1) into the bytes of an SMTP DATA stream: every line end
 *	(LF, CRLF) becomes CRLF, a line starting with '.' gets a second one
 *	(RFC 5321 §4.5.2), and, unless -i was given, a line holding only a
 *	dot ends the input, as sendmail(8) does. It keeps at most two bytes
 *	of look-ahead, so any cut of the input gives the same output.
 * DESCRIPTION
 *	sm_body_init() starts a conversion; dot_ends is true without -i.
 *
 *	sm_body_feed() converts in[0..n) and writes the result to out,
 *	which must have room for SM_BODY_OUT_MAX(n) bytes; it returns the
 *	number of bytes written. Once the lone-dot line was seen (dot_ends
 *	only), b->ended is true and the rest of the input is ignored (its
 *	line was not written).
 *
 *	sm_body_finish() ends the input: it writes the bytes still held
 *	and a CRLF when the last line had no line end, at most
 *	SM_BODY_FINISH_MAX bytes, and returns their number. The caller then
 *	sends ".\r\n". A '.' held at the end of the input counts as a line
 *	of its own (a lone dot without -i); a CR held there as a line end.
 *
 *	A bare CR (not before LF) is passed on as it is: the daemon refuses
 *	such a message (SPEC §5), and the caller reports that.
 * TOUCHES
 *	Nothing: bytes in, bytes out.
 */
#ifndef HK_SENDMAIL_SM_BODY_H
#define HK_SENDMAIL_SM_BODY_H

#include <stdbool.h>
#include <stddef.h>

#define SM_BODY_OUT_MAX(n) (2 * (n) + 4)
#define SM_BODY_FINISH_MAX 8

struct sm_body {
	bool dot_ends;      /* without -i: a "." line ends the input */
	bool at_bol;        /* the next byte starts a line */
	bool ended;         /* the lone-dot line was seen */
	bool eight_bit;     /* a byte >= 0x80 was fed */
	int held;           /* H_NONE, H_DOT, H_DOT_CR, H_CR (sm_body.c) */
};

void sm_body_init(struct sm_body *b, bool dot_ends);
size_t sm_body_feed(struct sm_body *b, const char *in, size_t n, char *out);
size_t sm_body_finish(struct sm_body *b, char *out);

#endif
