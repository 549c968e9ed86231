/*
 * smtp_data - the DATA stream reader. See smtp_data.h.
 *
 * The reader behaves as a byte-at-a-time state machine, but it moves
 * through the ordinary bytes of a line with memchr() and appends whole
 * runs of input to out at once: a run is only cut where the output
 * differs from the input (a dot removed by unstuffing, a CR added before
 * a bare LF, the terminating ".CRLF") or where the header scanner needs
 * a complete line in out. This is the hot path of the relay.
 *
 * End of data is recognised only as CRLF "." CRLF (RFC 5321 §4.1.1.4):
 * the state that may see the terminating dot, ST_BOL, is reached only
 * through a CR immediately followed by an LF. That is the whole defence
 * against SMTP smuggling (CVE-2023-51764/51765/51766): no look-alike
 * sequence can reach ST_BOL, so none can end the data.
 */
#include "proto/smtp_data.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

enum {
	ST_BOL = 0,  /* start of a line after CRLF: a "." may begin the end */
	ST_BOL_LF,   /* start of a line after a bare LF: a "." is only stuffing */
	ST_DOT,      /* CRLF "." seen (the dot is not in out) */
	ST_DOT_CR,   /* CRLF "." CR seen (the CR is not in out either) */
	ST_TEXT,     /* inside a line */
	ST_CR,       /* inside a line; a CR ended the previous chunk (it is in out) */
	ST_DONE,     /* end of data seen */
};

/* The header field that a continuation line would belong to. */
enum { F_NONE = 0, F_FROM, F_MSGID, F_OTHER };

struct feed {
	struct smtp_data *d;
	const char *p;
	size_t run;  /* start of the input bytes not yet appended to out */
};

static void latch(struct smtp_data *d, enum smtp_data_error e)
{
	if (d->error == SMTP_DATA_OK)
		d->error = e;
}

static void emit(struct smtp_data *d, const char *p, size_t n)
{
	int rc;

	if (n == 0 || d->error != SMTP_DATA_OK)
		return;
	rc = buf_append(d->out, p, n);
	if (rc)
		latch(d, rc == -ENOSPC ? SMTP_DATA_TOO_BIG : SMTP_DATA_NOMEM);
}

/* Appends the pending run up to input offset upto. */
static void flush(struct feed *f, size_t upto)
{
	emit(f->d, f->p + f->run, upto - f->run);
	f->run = upto;
}

/* Counts content bytes; max_size 0 means no limit but out's own cap. */
static void count(struct smtp_data *d, size_t n)
{
	d->size += n;
	if (d->max_size && d->size > d->max_size)
		latch(d, SMTP_DATA_TOO_BIG);
}

static bool any_8bit(const char *p, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (w & 0x8080808080808080ULL)
			return true;
	}
	for (; i < n; i++)
		if ((unsigned char)p[i] & 0x80)
			return true;
	return false;
}

static void begin_line(struct feed *f, size_t i)
{
	f->d->line_len = 0;
	f->d->line_start = f->d->drained + f->d->out->len + (i - f->run);
}

/* The stream offset of the end of out. */
static size_t out_end(const struct smtp_data *d)
{
	return d->drained + d->out->len;
}

/* Keeps a copy of a line of the From: or Message-ID: field, at most
 * SMTP_DATA_FIELD_MAX octets of it: the session may spill out to disk
 * before the field is complete. */
static void capture(buf_t *field, bool *too_long, const char *l, size_t n)
{
	if (*too_long)
		return;
	if (buf_append(field, l, n) < 0 || buf_append(field, "\r\n", 2) < 0) {
		*too_long = true;
		buf_free(field);
	}
}

static void header_done(struct smtp_data *d, size_t body_off)
{
	d->in_header = false;
	d->header_end = body_off;
	d->cur_field = F_NONE;
}

/*
 * Classifies the complete header line now in out at line_start (RFC 5322
 * §2.2, §3.6). A line that is neither a field nor a continuation ends the
 * header section and belongs to the body, as a MIME parser would see it.
 */
static void header_line(struct smtp_data *d)
{
	const char *l = d->out->data + (d->line_start - d->drained);
	size_t n = d->line_len, k;

	if (n == 0) {
		header_done(d, out_end(d));
		return;
	}
	if (l[0] == ' ' || l[0] == '\t') {
		/* Folding (RFC 5322 §2.2.3): the field goes on. */
		size_t end = d->line_start + n;
		if (d->cur_field == F_FROM) {
			d->from_len = end - d->from_off;
			capture(&d->from_field, &d->from_too_long, l, n);
		} else if (d->cur_field == F_MSGID) {
			d->msgid_len = end - d->msgid_off;
			capture(&d->msgid_field, &d->msgid_too_long, l, n);
		}
		return;
	}
	/* field-name = 1*ftext, ftext = %d33-57 / %d59-126 */
	for (k = 0; k < n && l[k] != ':'; k++) {
		unsigned char c = (unsigned char)l[k];
		if (c < 33 || c > 126)
			break;
	}
	if (k == 0 || k == n || l[k] != ':') {
		header_done(d, d->line_start);
		return;
	}
	d->cur_field = F_OTHER;
	if (k == 4 && strncasecmp(l, "From", 4) == 0) {
		if (d->n_from++ == 0) {
			d->from_off = d->line_start;
			d->from_len = n;
			d->cur_field = F_FROM;
			capture(&d->from_field, &d->from_too_long, l, n);
		}
	} else if (k == 10 && strncasecmp(l, "Message-ID", 10) == 0) {
		if (!d->has_message_id) {
			d->has_message_id = true;
			d->msgid_off = d->line_start;
			d->msgid_len = n;
			d->cur_field = F_MSGID;
			capture(&d->msgid_field, &d->msgid_too_long, l, n);
		}
	} else if (k == 4 && strncasecmp(l, "Date", 4) == 0) {
		d->has_date = true;
	} else if (k == 8 && strncasecmp(l, "Received", 8) == 0) {
		d->n_received++;
	}
}

/* A line ended; i is the input offset just after its LF. */
static void end_line(struct feed *f, size_t i)
{
	struct smtp_data *d = f->d;

	if (d->in_header && d->error == SMTP_DATA_OK) {
		flush(f, i);
		if (d->error == SMTP_DATA_OK)
			header_line(d);
	}
}

/*
 * Checks n content bytes of the current line (no line ending among them)
 * and latches the first problem by position: a CR here is bare (the CR of
 * a CRLF is never passed in), a NUL is refused, and the line may not grow
 * past 998 octets (RFC 5321 §4.5.3.1.6).
 */
static void content(struct smtp_data *d, const char *q, size_t n)
{
	if (!d->has_8bit && any_8bit(q, n))
		d->has_8bit = true;
	if (d->error == SMTP_DATA_OK) {
		enum smtp_data_error e = SMTP_DATA_OK;
		size_t first = n;
		const char *c = memchr(q, '\r', n);
		const char *z;

		if (c) {
			first = (size_t)(c - q);
			e = SMTP_DATA_BARE_CR;
		}
		z = memchr(q, '\0', first);
		if (z) {
			first = (size_t)(z - q);
			e = SMTP_DATA_NUL;
		}
		/* line_len <= SMTP_DATA_LINE_MAX while no error is latched */
		if (d->line_len + n > SMTP_DATA_LINE_MAX && SMTP_DATA_LINE_MAX - d->line_len < first)
			e = SMTP_DATA_LONG_LINE;
		if (e != SMTP_DATA_OK)
			latch(d, e);
	}
	d->line_len += n;
	count(d, n);
}

void smtp_data_init(struct smtp_data *d, buf_t *out, uint64_t max_size, bool reject_bare_lf)
{
	memset(d, 0, sizeof(*d));
	d->out = out;
	d->max_size = max_size;
	d->reject_bare_lf = reject_bare_lf;
	/* The CRLF of the DATA command counts: an immediate ".CRLF" ends an
	 * empty message (RFC 5321 §4.1.1.4). */
	d->state = ST_BOL;
	d->in_header = true;
	d->line_start = out->len;
	d->header_end = out->len;
	d->cur_field = F_NONE;
	buf_init(&d->from_field, SMTP_DATA_FIELD_MAX);
	buf_init(&d->msgid_field, SMTP_DATA_FIELD_MAX);
}

void smtp_data_free(struct smtp_data *d)
{
	buf_free(&d->from_field);
	buf_free(&d->msgid_field);
}

size_t smtp_data_drainable(const struct smtp_data *d)
{
	/* In the header section the current line must stay: header_line()
	 * reads it whole once its end arrives. */
	if (d->in_header && d->state != ST_DONE)
		return d->line_start > d->drained ? d->line_start - d->drained : 0;
	return d->out->len;
}

void smtp_data_drained(struct smtp_data *d, size_t n)
{
	d->drained += n;
}

int smtp_data_feed(struct smtp_data *d, const char *p, size_t len, size_t *used)
{
	struct feed f = { d, p, 0 };
	size_t i = 0;

	if (d->state == ST_DONE) {
		*used = 0;
		return 1;
	}
	while (i < len) {
		switch (d->state) {
		case ST_BOL:
			if (p[i] == '.') {
				flush(&f, i);
				f.run = ++i;
				d->state = ST_DOT;
			} else {
				begin_line(&f, i);
				d->state = ST_TEXT;
			}
			break;

		case ST_BOL_LF:
			/* Unstuffed like any line, but this "." line can never be
			 * the end: it was not preceded by CRLF. */
			if (p[i] == '.') {
				flush(&f, i);
				f.run = ++i;
			}
			begin_line(&f, i);
			d->state = ST_TEXT;
			break;

		case ST_DOT:
			if (p[i] == '\r') {
				f.run = ++i;
				d->state = ST_DOT_CR;
			} else {
				/* A stuffed line (or "." LF, which ST_TEXT treats as a
				 * bare LF ending an empty line). */
				begin_line(&f, i);
				d->state = ST_TEXT;
			}
			break;

		case ST_DOT_CR:
			if (p[i] == '\n') {
				i++;
				if (d->in_header)
					header_done(d, out_end(d));
				d->state = ST_DONE;
				*used = i;
				return 1;
			}
			/* CRLF "." CR x: the CR is bare. Not the end. */
			latch(d, SMTP_DATA_BARE_CR);
			begin_line(&f, i);
			d->line_len = 1;
			count(d, 1);
			d->state = ST_TEXT;
			break;

		case ST_CR:
			if (p[i] == '\n') {
				count(d, 2);
				end_line(&f, ++i);
				d->state = ST_BOL;
			} else {
				latch(d, SMTP_DATA_BARE_CR);
				d->line_len++;
				count(d, 1);
				d->state = ST_TEXT;
			}
			break;

		case ST_TEXT: {
			const char *q = p + i;
			size_t n = len - i;
			const char *nl = memchr(q, '\n', n);
			size_t seg = nl ? (size_t)(nl - q) : n;
			size_t c = seg;
			bool cr_last = seg > 0 && q[seg - 1] == '\r';

			/* A CR right before the LF is the line ending; a CR at the
			 * very end of the chunk is decided by the next chunk. */
			if (cr_last)
				c--;
			if (c)
				content(d, q, c);
			if (!nl) {
				i = len;
				d->state = cr_last ? ST_CR : ST_TEXT;
				break;
			}
			i += seg + 1;
			count(d, 2);
			if (cr_last) {
				end_line(&f, i);
				d->state = ST_BOL;
				break;
			}
			/* A bare LF (RFC 5321 §2.3.8 forbids it). */
			if (d->reject_bare_lf) {
				latch(d, SMTP_DATA_BARE_LF);
			} else {
				flush(&f, i - 1);
				emit(d, "\r", 1);
			}
			end_line(&f, i);
			d->state = ST_BOL_LF;
			break;
		}

		default:
			*used = 0;
			return 1;
		}
	}
	flush(&f, len);
	*used = len;
	return 0;
}

const char *smtp_data_strerror(enum smtp_data_error e)
{
	switch (e) {
	case SMTP_DATA_OK:
		return "ok";
	case SMTP_DATA_BARE_CR:
		return "bare CR in message";
	case SMTP_DATA_NUL:
		return "NUL byte in message";
	case SMTP_DATA_LONG_LINE:
		return "line longer than 998 octets";
	case SMTP_DATA_BARE_LF:
		return "bare LF in message";
	case SMTP_DATA_TOO_BIG:
		return "message too big";
	case SMTP_DATA_NOMEM:
		return "out of memory";
	}
	return "unknown error";
}
