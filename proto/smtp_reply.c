/*
 * smtp_reply - SMTP replies, both ways. See smtp_reply.h.
 *
 * The reply parser was part of relay/smtp_client.c; it lives here so that
 * it is tested and fuzzed without any I/O code, and so that the enhanced
 * status of a failure without a reply comes from one table, by reason.
 */
#include "proto/smtp_reply.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- the reply parser (RFC 5321 §4.2, RFC 2034) ------------------------ */

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
}

/*
 * The length of an enhanced status code at p (RFC 3463 §2: class "."
 * subject "." detail, 1-3 digits each), followed by a space or the end;
 * 0 when there is none. RFC 2034 §3: its class must be the reply's.
 */
static size_t status_code_len(const char *p, size_t n, char cls)
{
	size_t i = 2;

	if (n < 5 || p[0] != cls || p[1] != '.')
		return 0;
	for (int part = 0; part < 2; part++) {
		size_t digits = 0;
		while (i < n && isdigit((unsigned char)p[i])) {
			if (++digits > 3)
				return 0;
			i++;
		}
		if (digits == 0)
			return 0;
		if (part == 0) {
			if (i >= n || p[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && p[i] != ' ')
		return 0;
	return i;
}

/*
 * Adds one line's text. The server's bytes end up in logs and DSNs:
 * control characters and non-ASCII bytes become '?'.
 */
static void text_append(struct smtp_reply *r, const char *p, size_t n)
{
	while (n > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n == 0)
		return;
	size_t len = strnlen(r->text, sizeof(r->text) - 1);
	size_t room = sizeof(r->text) - 1 - len;
	if (len > 0) {
		/* The joining blank only with room for text after it: a reply
		 * text never ends in a blank (fuzz/regressions/smtp_reply). */
		if (room < 2)
			return;
		r->text[len++] = ' ';
		room--;
	}
	for (size_t i = 0; i < n && room > 0; i++, room--) {
		unsigned char ch = (unsigned char)p[i];
		r->text[len++] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
	}
	/* Cut short at a blank inside the line: no blank at the end either. */
	while (len > 0 && r->text[len - 1] == ' ')
		len--;
	r->text[len] = '\0';
}

int smtp_reply_parser_line(struct smtp_reply_parser *p, const char *line, size_t len)
{
	/* Reply-code = %x32-35 %x30-35 %x30-39 (RFC 5321 §4.2). */
	if (len < 3 || len > SMTP_REPLY_LINE_MAX || p->nlines >= SMTP_REPLY_LINES_MAX)
		return -1;
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    !isdigit((unsigned char)line[2]))
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (p->nlines > 0 && code != p->r.code)
		return -1;

	const char *t = len > 4 ? line + 4 : line + len;
	size_t tn = len > 4 ? len - 4 : 0;
	if (p->nlines == 0) {
		p->r.code = code;
		size_t sl = status_code_len(t, tn, line[0]);
		if (sl > 0 && sl < sizeof(p->r.status)) {
			memcpy(p->r.status, t, sl);
			p->r.status[sl] = '\0';
		}
	}
	/* RFC 2034 §3 repeats the code on every line: keep it out of the text. */
	size_t sl = strlen(p->r.status);
	if (sl > 0 && tn >= sl && memcmp(t, p->r.status, sl) == 0 && (tn == sl || t[sl] == ' ')) {
		t += sl;
		tn -= sl;
	}
	text_append(&p->r, t, tn);
	p->nlines++;
	return len == 3 || line[3] == ' ' ? 1 : 0;
}

/* ---- failures without a reply ----------------------------------------- */

const char *smtp_noreply_status(enum smtp_noreply why)
{
	switch (why) {
	case SMTP_NOREPLY_NO_ANSWER:
		return "4.4.1";      /* RFC 3463 §3.5: no answer from host */
	case SMTP_NOREPLY_CONNECTION:
		return "4.4.2";      /* bad connection */
	case SMTP_NOREPLY_PROTOCOL:
		return "4.5.0";      /* other or undefined protocol status */
	case SMTP_NOREPLY_TLS_FAILED:
		return "4.7.5";      /* cryptographic failure */
	case SMTP_NOREPLY_TLS_REQUIRED:
		return "4.7.10";     /* RFC 5248: encryption needed */
	case SMTP_NOREPLY_AUTH:
		return "4.7.8";      /* RFC 4954 §6: authentication credentials invalid */
	case SMTP_NOREPLY_LOCAL:
		break;
	}
	return "";
}

void smtp_reply_none(struct smtp_reply *r, enum smtp_noreply why, const char *fmt, ...)
{
	va_list ap;

	memset(r, 0, sizeof(*r));
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
	snprintf(r->status, sizeof(r->status), "%s", smtp_noreply_status(why));
}
