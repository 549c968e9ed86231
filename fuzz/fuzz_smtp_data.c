/*
 * fuzz_smtp_data - proto/smtp_data.c, the DATA stream reader.
 *
 * Input layout: byte 0 flags (bit 0 reject_bare_lf, bits 1-2 the
 * max_size choice), bytes 1-4 the seed of the chunk splits, then the
 * bytes the client sends after "DATA" CRLF (the message, maybe its end,
 * maybe pipelined commands after it).
 *
 * The stream is read three times: in one piece, in chunks whose lengths
 * a PRNG seeded from the input draws (mostly short, so that CR, LF and
 * "." fall on chunk boundaries), and one byte at a time. Checked:
 *
 *  - End of data: the reader reports it exactly where the first CRLF "."
 *    CRLF ends (the CRLF of the DATA command counts, so ".\r\n" at the
 *    very start ends an empty message), and never anywhere else: no
 *    "\n.\n", "\r.\r\n", "\n.\r\n", "\r\n.\n" ... (SMTP smuggling).
 *    *used is the offset just after that CRLF; without an end, 0 is
 *    returned and every byte is used. Once done, it stays done.
 *  - The three readings agree on everything: result, used, error, size,
 *    8-bit flag, header fields; and, when no error was latched, on the
 *    content.
 *  - A simple line-by-line model of RFC 5321 §4.5.2 (unstuffing) and of
 *    SPEC §5 (bare CR, NUL, long line, bare LF) gives the same content
 *    (every line CRLF-terminated, nothing else), the same size and the
 *    same error (TOO_BIG excepted: which of two problems in one chunk is
 *    "first" may depend on where the chunk ends when one is the size).
 *  - The header scan: From:/Message-ID: offsets point at those fields in
 *    the content, header_end is at a line start, counts agree with the
 *    model.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/smtp_data.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz/fuzz_check.h"

struct run {
	int ret;                   /* 1: end seen */
	size_t used;               /* bytes of the stream consumed */
	struct smtp_data d;
	buf_t out;
};

static uint32_t rng_next(uint32_t *s)
{
	/* xorshift32 */
	uint32_t x = *s ? *s : 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

/* mode 0: one piece; 1: PRNG chunks; 2: byte by byte. */
static void read_stream(struct run *r, const char *p, size_t n, uint64_t max_size,
                        size_t buf_max, bool reject_lf, int mode, uint32_t seed)
{
	size_t off = 0;

	buf_init(&r->out, buf_max);
	smtp_data_init(&r->d, &r->out, max_size, reject_lf);
	r->ret = 0;
	r->used = 0;
	while (off < n || (off == 0 && n == 0)) {
		size_t len;
		if (mode == 0) {
			len = n - off;
		} else if (mode == 2) {
			len = 1;
		} else {
			uint32_t x = rng_next(&seed);
			len = (x & 3) == 0 ? (x >> 8) % 64 : (x >> 8) % 4;
			if (len == 0)
				len = 1;
		}
		if (len > n - off)
			len = n - off;
		/* Each chunk in its own allocation: ASan catches a read past it. */
		char *chunk = malloc(len ? len : 1);
		CHECK(chunk);
		memcpy(chunk, p + off, len);
		size_t used = (size_t)-1;
		int ret = smtp_data_feed(&r->d, chunk, len, &used);
		free(chunk);
		CHECK(ret == 0 || ret == 1);
		if (ret == 0) {
			CHECK(used == len);
			off += len;
			if (n == 0)
				break;
			continue;
		}
		CHECK(used <= len);
		r->ret = 1;
		r->used = off + used;
		/* Done stays done, and takes nothing more. */
		used = 7;
		CHECK(smtp_data_feed(&r->d, p, n, &used) == 1 && used == 0);
		return;
	}
	r->used = n;
}

/* ---- the model ---- */

struct model {
	bool ended;
	size_t end;                /* stream offset after the final CRLF */
	enum smtp_data_error error;
	bool too_big;              /* the content or size passed a limit */
	uint64_t size;
	bool has_8bit;
	char *out;                 /* the content when ended (and valid) */
	size_t out_len;
};

static void model_err(struct model *m, enum smtp_data_error e)
{
	if (m->error == SMTP_DATA_OK)
		m->error = e;
}

static void run_model(struct model *m, const char *p, size_t n, bool reject_lf,
                      uint64_t max_size, size_t buf_max)
{
	size_t i, limit;

	memset(m, 0, sizeof(*m));
	/* The end: the first CRLF "." CRLF, the DATA command's CRLF included. */
	if (n >= 3 && memcmp(p, ".\r\n", 3) == 0) {
		m->ended = true;
		m->end = 3;
	} else {
		for (i = 0; i + 5 <= n; i++)
			if (memcmp(p + i, "\r\n.\r\n", 5) == 0) {
				m->ended = true;
				m->end = i + 5;
				break;
			}
	}
	limit = m->ended ? m->end : n;
	for (i = 0; i < limit; i++)
		if ((unsigned char)p[i] & 0x80)
			m->has_8bit = true;

	/* The lines before the terminating ".CRLF" (or all of an unended
	 * stream, the last line maybe incomplete). */
	size_t content_end = m->ended ? m->end - 3 : n;
	m->out = malloc(2 * content_end + 3);
	CHECK(m->out);
	i = 0;
	while (i < content_end) {
		const char *nl = memchr(p + i, '\n', content_end - i);
		size_t e = nl ? (size_t)(nl - p) : content_end;   /* the LF, or the end */
		size_t s = i;
		bool complete = nl != NULL;
		bool crlf = complete && e > s && p[e - 1] == '\r';
		size_t ce = crlf ? e - 1 : e;                     /* content end */
		/* An incomplete last line's trailing CR is undecided, not content. */
		if (!complete && ce > s && p[ce - 1] == '\r')
			ce--;
		if (s < ce && p[s] == '.')
			s++;                                      /* unstuffing */
		size_t len = ce - s;
		/* The first problem of the line by position; a tie at the 999th
		 * octet goes to the bad character. */
		size_t first = len;
		enum smtp_data_error e1 = SMTP_DATA_OK;
		for (size_t k = 0; k < len; k++) {
			if (p[s + k] == '\r') {
				first = k;
				e1 = SMTP_DATA_BARE_CR;
				break;
			}
			if (p[s + k] == '\0') {
				first = k;
				e1 = SMTP_DATA_NUL;
				break;
			}
		}
		if (len > SMTP_DATA_LINE_MAX && SMTP_DATA_LINE_MAX < first)
			e1 = SMTP_DATA_LONG_LINE;
		if (e1 != SMTP_DATA_OK)
			model_err(m, e1);
		if (complete && !crlf && reject_lf)
			model_err(m, SMTP_DATA_BARE_LF);
		memcpy(m->out + m->out_len, p + s, len);
		m->out_len += len;
		m->size += len;
		if (complete) {
			memcpy(m->out + m->out_len, "\r\n", 2);
			m->out_len += 2;
			m->size += 2;
		}
		i = complete ? e + 1 : content_end;
	}
	if ((max_size && m->size > max_size) || m->out_len > buf_max)
		m->too_big = true;
}

/* ---- header checks ---- */

static bool field_at(const buf_t *b, size_t off, size_t len, const char *name)
{
	size_t nl = strlen(name);

	if (off > b->len || len > b->len - off || len < nl + 1)
		return false;
	if (off > 0 && (off < 2 || memcmp(b->data + off - 2, "\r\n", 2) != 0))
		return false;
	return strncasecmp(b->data + off, name, nl) == 0 && b->data[off + nl] == ':' &&
	       (off + len == b->len || memcmp(b->data + off + len, "\r\n", 2) == 0);
}

/* Counts the From: fields and finds Date:/Message-ID: in the header
 * section of the content as RFC 5322 reads it. */
static void model_header(const char *c, size_t n, unsigned *n_from, bool *has_date,
                         bool *has_msgid, size_t *header_end)
{
	size_t i = 0;

	*n_from = 0;
	*has_date = *has_msgid = false;
	*header_end = n;
	while (i < n) {
		const char *nl = memchr(c + i, '\n', n - i);
		size_t e = (size_t)(nl - c) - 1;      /* the CR; the content is all CRLF lines */
		size_t len = e - i, k;
		if (len == 0) {
			*header_end = e + 2;
			return;
		}
		if (c[i] != ' ' && c[i] != '\t') {
			for (k = 0; k < len && c[i + k] != ':'; k++)
				if ((unsigned char)c[i + k] < 33 || (unsigned char)c[i + k] > 126)
					break;
			if (k == 0 || k == len || c[i + k] != ':') {
				*header_end = i;
				return;
			}
			if (k == 4 && strncasecmp(c + i, "From", 4) == 0)
				(*n_from)++;
			else if (k == 10 && strncasecmp(c + i, "Message-ID", 10) == 0)
				*has_msgid = true;
			else if (k == 4 && strncasecmp(c + i, "Date", 4) == 0)
				*has_date = true;
		}
		i = e + 2;
	}
}

static void same_results(const struct run *a, const struct run *b)
{
	CHECK(a->ret == b->ret);
	CHECK(a->used == b->used);
	CHECK(a->d.size == b->d.size);
	CHECK(a->d.has_8bit == b->d.has_8bit);
	/* Which of two problems comes first may differ when one is the size. */
	if (a->d.error != SMTP_DATA_TOO_BIG && b->d.error != SMTP_DATA_TOO_BIG)
		CHECK(a->d.error == b->d.error);
	CHECK((a->d.error == SMTP_DATA_OK) == (b->d.error == SMTP_DATA_OK));
	if (a->d.error != SMTP_DATA_OK)
		return;
	CHECK(a->out.len == b->out.len);
	CHECK(a->out.len == 0 || memcmp(a->out.data, b->out.data, a->out.len) == 0);
	CHECK(a->d.n_from == b->d.n_from);
	CHECK(a->d.has_date == b->d.has_date);
	CHECK(a->d.has_message_id == b->d.has_message_id);
	CHECK(a->d.from_off == b->d.from_off && a->d.from_len == b->d.from_len);
	CHECK(a->d.msgid_off == b->d.msgid_off && a->d.msgid_len == b->d.msgid_len);
	if (a->ret)
		CHECK(a->d.header_end == b->d.header_end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t max_sizes[4] = { 0, 64, 1000, 1u << 20 };

	if (size < 5 || size > 1u << 16)
		return 0;
	bool reject_lf = data[0] & 1;
	uint64_t max_size = max_sizes[(data[0] >> 1) & 3];
	uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
	                (uint32_t)data[4] << 24;
	const char *p = (const char *)data + 5;
	size_t n = size - 5;
	/* As the session sizes its buffer (server/session.c). */
	size_t buf_max = max_size ? (size_t)max_size + SMTP_DATA_LINE_MAX + 2 : 4u << 20;

	struct run whole, chunks, bytes;
	read_stream(&whole, p, n, max_size, buf_max, reject_lf, 0, seed);
	read_stream(&chunks, p, n, max_size, buf_max, reject_lf, 1, seed);
	read_stream(&bytes, p, n, max_size, buf_max, reject_lf, 2, seed);
	same_results(&whole, &chunks);
	same_results(&whole, &bytes);

	struct model m;
	run_model(&m, p, n, reject_lf, max_size, buf_max);
	const struct smtp_data *d = &whole.d;

	/* The end, and only the end. */
	CHECK(whole.ret == (int)m.ended);
	if (m.ended)
		CHECK(whole.used == m.end);
	else
		CHECK(whole.used == n);
	CHECK(d->has_8bit == m.has_8bit);
	CHECK(d->size == m.size);

	/* Errors. */
	if (m.error != SMTP_DATA_OK) {
		CHECK(d->error != SMTP_DATA_OK);
		if (d->error != SMTP_DATA_TOO_BIG)
			CHECK(d->error == m.error);
	} else if (m.too_big) {
		CHECK(d->error == SMTP_DATA_TOO_BIG);
	} else {
		CHECK(d->error == SMTP_DATA_OK);
	}
	if (d->error == SMTP_DATA_TOO_BIG && m.error == SMTP_DATA_OK)
		CHECK(m.too_big);

	if (d->error == SMTP_DATA_OK && m.ended) {
		/* The content, exactly. */
		CHECK(whole.out.len == m.out_len);
		CHECK(m.out_len == 0 || memcmp(whole.out.data, m.out, m.out_len) == 0);
		{
			CHECK(d->size == whole.out.len);
			/* Clean: CRLF line ends only, no NUL, no long line. */
			size_t line = 0;
			for (size_t i = 0; i < whole.out.len; i++) {
				char c = whole.out.data[i];
				CHECK(c != '\0');
				if (c == '\r') {
					CHECK(i + 1 < whole.out.len && whole.out.data[i + 1] == '\n');
					i++;
					line = 0;
					continue;
				}
				CHECK(c != '\n');
				CHECK(++line <= SMTP_DATA_LINE_MAX);
			}
			CHECK(whole.out.len == 0 || whole.out.data[whole.out.len - 1] == '\n');

			/* The header scan. */
			unsigned n_from;
			bool has_date, has_msgid;
			size_t header_end;
			model_header(whole.out.data ? whole.out.data : "", whole.out.len, &n_from,
			             &has_date, &has_msgid, &header_end);
			CHECK(d->n_from == n_from);
			CHECK(d->has_date == has_date);
			CHECK(d->has_message_id == has_msgid);
			CHECK(d->header_end == header_end);
			CHECK(d->header_end <= whole.out.len);
			if (d->n_from)
				CHECK(field_at(&whole.out, d->from_off, d->from_len, "From"));
			else
				CHECK(d->from_len == 0);
			if (d->has_message_id)
				CHECK(field_at(&whole.out, d->msgid_off, d->msgid_len, "Message-ID"));
			else
				CHECK(d->msgid_len == 0);
		}
	}

	free(m.out);
	smtp_data_free(&whole.d);
	smtp_data_free(&chunks.d);
	smtp_data_free(&bytes.d);
	buf_free(&whole.out);
	buf_free(&chunks.out);
	buf_free(&bytes.out);
	return 0;
}
