/*
 * smtp_stuff - the outbound message as SMTP DATA. See smtp_stuff.h.
 * (It was write_data() of relay/smtp_client.c; the client now only
 * writes what this produces.)
 */
#include "proto/smtp_stuff.h"

#include <string.h>

void smtp_stuff_init(struct smtp_stuff *s)
{
	s->bol = true;
	s->cr = false;
}

size_t smtp_stuff_encode(struct smtp_stuff *s, const char *in, size_t n, char *out, size_t cap,
                         size_t *outn)
{
	size_t i = 0, o = 0;

	for (; i < n && o + SMTP_STUFF_EXPAND <= cap; i++) {
		char ch = in[i];
		if (ch == '\n') {
			if (!s->cr)
				out[o++] = '\r';
			out[o++] = '\n';
			s->cr = false;
			s->bol = true;
			continue;
		}
		if (s->cr) {
			/* A bare CR ends its line. */
			out[o++] = '\n';
			s->bol = true;
		}
		if (s->bol && ch == '.')
			out[o++] = '.';
		out[o++] = ch;
		s->bol = false;
		s->cr = ch == '\r';
	}
	*outn = o;
	return i;
}

size_t smtp_stuff_finish(struct smtp_stuff *s, char *out)
{
	size_t o = 0;

	if (s->cr) {
		out[o++] = '\n';
	} else if (!s->bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	smtp_stuff_init(s);
	return o + 3;
}

bool smtp_stuff_plain(struct smtp_stuff *s, const char *in, size_t n)
{
	size_t lf = 0, cr = 0;
	const char *p = in, *end = in + n;

	if (n && in[0] == '.')
		return false;
	while ((p = memchr(p, '\n', (size_t)(end - p)))) {
		if (p == in || p[-1] != '\r' || (p + 1 < end && p[1] == '.'))
			return false;
		lf++;
		p++;
	}
	/* Each LF has its CR; one CR more is a bare one. */
	for (p = in; (p = memchr(p, '\r', (size_t)(end - p))); p++)
		if (++cr > lf)
			return false;
	s->bol = n == 0 || in[n - 1] == '\n';
	s->cr = false;
	return true;
}
