/*
 * sm_body - the DATA conversion of hikyaku-sendmail. See sm_body.h.
 *
 * Held bytes: a '.' at the start of a line cannot be written before the
 * next byte says whether the line is the lone dot (".\n", ".\r\n"), and a
 * CR cannot be written before the next byte says whether it ends a line
 * (then it becomes part of the CRLF) or is bare.
 */
#include "sendmail/sm_body.h"

#include <string.h>

enum { H_NONE, H_DOT, H_DOT_CR, H_CR };

void sm_body_init(struct sm_body *b, bool dot_ends)
{
	memset(b, 0, sizeof(*b));
	b->dot_ends = dot_ends;
	b->at_bol = true;
	b->held = H_NONE;
}

/* The line ".": with dot_ends the input is over; else it is sent stuffed. */
static size_t lone_dot(struct sm_body *b, char *out)
{
	b->held = H_NONE;
	if (b->dot_ends) {
		b->ended = true;
		return 0;
	}
	memcpy(out, "..\r\n", 4);
	b->at_bol = true;
	return 4;
}

size_t sm_body_feed(struct sm_body *b, const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n && !b->ended; i++) {
		char c = in[i];

		if ((unsigned char)c >= 0x80)
			b->eight_bit = true;
		switch (b->held) {
		case H_DOT:
			if (c == '\n') {
				o += lone_dot(b, out + o);
				continue;
			}
			if (c == '\r') {
				b->held = H_DOT_CR;
				continue;
			}
			memcpy(out + o, "..", 2);
			o += 2;
			b->held = H_NONE;
			b->at_bol = false;
			break; /* c is an ordinary byte of the line */
		case H_DOT_CR:
			if (c == '\n') {
				o += lone_dot(b, out + o);
				continue;
			}
			memcpy(out + o, "..\r", 3); /* a bare CR after the dot */
			o += 3;
			b->held = H_NONE;
			b->at_bol = false;
			break;
		case H_CR:
			b->held = H_NONE;
			if (c == '\n') {
				memcpy(out + o, "\r\n", 2);
				o += 2;
				b->at_bol = true;
				continue;
			}
			out[o++] = '\r'; /* bare */
			b->at_bol = false;
			break;
		default:
			break;
		}
		if (b->at_bol && c == '.') {
			b->held = H_DOT;
			continue;
		}
		if (c == '\r') {
			b->held = H_CR;
			continue;
		}
		if (c == '\n') {
			memcpy(out + o, "\r\n", 2);
			o += 2;
			b->at_bol = true;
			continue;
		}
		out[o++] = c;
		b->at_bol = false;
	}
	return o;
}

size_t sm_body_finish(struct sm_body *b, char *out)
{
	size_t o = 0;

	if (b->ended)
		return 0;
	switch (b->held) {
	case H_DOT:
	case H_DOT_CR:
		return lone_dot(b, out);
	case H_CR:
		b->held = H_NONE;
		b->at_bol = false;
		break; /* the CR becomes the CRLF below */
	default:
		break;
	}
	if (!b->at_bol) {
		memcpy(out + o, "\r\n", 2);
		o += 2;
		b->at_bol = true;
	}
	return o;
}
