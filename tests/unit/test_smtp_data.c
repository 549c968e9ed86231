/*
 * test_smtp_data - unit tests for proto/smtp_data.c (see proto/smtp_data.h).
 *
 * Every message is also fed split at every byte boundary, at every pair
 * of boundaries (short messages), one byte at a time and in random
 * chunks: the reader must give the same result however the socket cuts
 * the stream. A simple line-by-line reference model, run on the whole
 * input at once, checks random inputs differentially.
 */
#include "proto/smtp_data.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- harness ---- */

struct run {
	int done;
	size_t used;      /* offset in the whole input just after the end */
	struct smtp_data d;
	buf_t out;
};

static void run_cuts(struct run *r, const char *msg, size_t len, const size_t *cuts, size_t ncuts,
                     bool reject, uint64_t max, size_t out_max, const char *prefix)
{
	size_t pos = 0;

	buf_init(&r->out, out_max);
	if (prefix)
		ck_assert_int_eq(buf_appends(&r->out, prefix), 0);
	smtp_data_init(&r->d, &r->out, max, reject);
	r->done = 0;
	r->used = 0;
	for (size_t k = 0; k <= ncuts && !r->done; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		size_t used = (size_t)-1;
		/* An exact-size heap copy: ASan catches any read past it. */
		char *chunk = malloc(end - pos ? end - pos : 1);
		memcpy(chunk, msg + pos, end - pos);
		int rc = smtp_data_feed(&r->d, chunk, end - pos, &used);
		free(chunk);

		if (rc == 1) {
			if (used > end - pos)
				ck_abort_msg("used %zu > %zu", used, end - pos);
			r->done = 1;
			r->used = pos + used;
		} else if (rc != 0 || used != end - pos) {
			ck_abort_msg("rc %d, used %zu of %zu", rc, used, end - pos);
		}
		pos = end;
	}
	if (!r->done)
		r->used = len;
}

static void run_free(struct run *r)
{
	smtp_data_free(&r->d);
	buf_free(&r->out);
}

/*
 * One ck_assert per comparison, not per field: every check assertion
 * writes a progress record, and these comparisons run by the hundred
 * thousand.
 */
static void same(const struct run *a, const struct run *b, const char *what, size_t at)
{
	const char *diff = NULL;

	if (a->done != b->done)
		diff = "done";
	else if (a->used != b->used)
		diff = "used";
	else if (a->d.error != b->d.error)
		diff = "error";
	else if (a->d.size != b->d.size)
		diff = "size";
	else if (a->d.has_8bit != b->d.has_8bit)
		diff = "has_8bit";
	else if (a->d.error != SMTP_DATA_OK)
		diff = NULL;
	else if (a->out.len != b->out.len ||
	         (a->out.len && memcmp(a->out.data, b->out.data, a->out.len) != 0))
		diff = "out";
	else if (a->d.has_date != b->d.has_date || a->d.has_message_id != b->d.has_message_id)
		diff = "has_date/has_message_id";
	else if (a->d.n_from != b->d.n_from || a->d.from_off != b->d.from_off ||
	         a->d.from_len != b->d.from_len)
		diff = "from";
	else if (a->d.msgid_off != b->d.msgid_off || a->d.msgid_len != b->d.msgid_len)
		diff = "msgid";
	else if (a->d.header_end != b->d.header_end)
		diff = "header_end";
	if (diff)
		ck_abort_msg("%s %zu: %s differs", what, at, diff);
}

/*
 * Feeds msg whole into ref, then compares every other way of cutting it:
 * two chunks at each boundary, three chunks at each pair of boundaries
 * (messages up to 120 bytes), one byte at a time.
 */
static void feed_all_ways(struct run *ref, const char *msg, size_t len, bool reject, uint64_t max)
{
	struct run r;
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));

	run_cuts(ref, msg, len, NULL, 0, reject, max, 1 << 24, NULL);
	for (size_t s = 0; s <= len; s++) {
		run_cuts(&r, msg, len, &s, 1, reject, max, 1 << 24, NULL);
		same(ref, &r, "split", s);
		run_free(&r);
	}
	if (len <= 120) {
		for (size_t s = 1; s < len; s++) {
			for (size_t t = s; t < len; t++) {
				size_t c2[2] = { s, t };
				run_cuts(&r, msg, len, c2, 2, reject, max, 1 << 24, NULL);
				same(ref, &r, "split3", s * 1000 + t);
				run_free(&r);
			}
		}
	}
	for (size_t s = 0; s < len; s++)
		cuts[s] = s + 1;
	run_cuts(&r, msg, len, cuts, len ? len - 1 : 0, reject, max, 1 << 24, NULL);
	same(ref, &r, "bytewise", 0);
	run_free(&r);
	free(cuts);
}

#define S(lit) lit, sizeof(lit) - 1

static void out_is(const struct run *r, const char *want, size_t wlen)
{
	ck_assert_msg(r->out.len == wlen && (wlen == 0 || memcmp(r->out.data, want, wlen) == 0),
	              "out is \"%.*s\" (%zu), want \"%.*s\" (%zu)", (int)r->out.len,
	              r->out.data ? r->out.data : "", r->out.len, (int)wlen, want, wlen);
}

/* ---- end of data ---- */

START_TEST(empty_message)
{
	struct run r;

	feed_all_ways(&r, S(".\r\n"), false, 0);
	ck_assert(r.done);
	ck_assert_uint_eq(r.used, 3);
	ck_assert_int_eq(r.d.error, SMTP_DATA_OK);
	out_is(&r, S(""));
	ck_assert_uint_eq(r.d.size, 0);
	ck_assert_uint_eq(r.d.header_end, 0);
	ck_assert_uint_eq(r.d.n_from, 0);
	ck_assert_uint_eq(r.d.from_len, 0);
	run_free(&r);

	/* Nothing but empty lines. */
	feed_all_ways(&r, S("\r\n\r\n.\r\n"), false, 0);
	ck_assert(r.done);
	out_is(&r, S("\r\n\r\n"));
	ck_assert_uint_eq(r.d.header_end, 2);
	run_free(&r);
}
END_TEST

START_TEST(needs_more)
{
	struct run r;
	const char *parts[] = { "", "a", "a\r", "a\r\n", "a\r\n.", "a\r\n.\r", "a\r\n.\n", "a\n.\r\n",
	                        "a\r\n..\r\n", "a\r\n. \r\n",
	                        ".\n.\r\n", "\n.\n.\r\n", ".\r.\r\n", "a\r\n.\r\r\n" };

	for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
		run_cuts(&r, parts[k], strlen(parts[k]), NULL, 0, false, 0, 1 << 20, NULL);
		ck_assert_msg(!r.done, "%zu", k);
		run_free(&r);
	}
}
END_TEST

START_TEST(pipelined_after_end)
{
	struct run r;
	const char msg[] = "Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n";

	feed_all_ways(&r, S(msg), false, 0);
	ck_assert(r.done);
	ck_assert_uint_eq(r.used, strlen("Subject: x\r\n\r\nhi\r\n.\r\n"));
	out_is(&r, S("Subject: x\r\n\r\nhi\r\n"));
	run_free(&r);

	/* The next message's DATA right behind: still only the first. */
	feed_all_ways(&r, S(".\r\n.\r\n"), false, 0);
	ck_assert(r.done);
	ck_assert_uint_eq(r.used, 3);
	run_free(&r);
}
END_TEST

START_TEST(feed_after_done)
{
	buf_t out;
	struct smtp_data d;
	size_t used;

	buf_init(&out, 1024);
	smtp_data_init(&d, &out, 0, false);
	ck_assert_int_eq(smtp_data_feed(&d, S("x\r\n.\r\nQUIT"), &used), 1);
	ck_assert_uint_eq(used, 6);
	ck_assert_int_eq(smtp_data_feed(&d, S("more\r\n"), &used), 1);
	ck_assert_uint_eq(used, 0);
	ck_assert_uint_eq(out.len, 3);
	smtp_data_free(&d);
	buf_free(&out);
}
END_TEST

/* The hop count, the kept copies of From:/Message-ID: and draining the
 * front of out (what a session spills to disk) with stream offsets. */
START_TEST(received_count_fields_drain)
{
	buf_t out;
	struct smtp_data d;
	size_t used;

	buf_init(&out, 1 << 20);
	smtp_data_init(&d, &out, 0, false);
	ck_assert_int_eq(smtp_data_feed(&d, S("Received: a\r\nreceived: b\r\nX-Received: c\r\n"), &used), 0);
	/* Everything before the last line may go now (it stays until the
	 * next one begins). */
	size_t k = smtp_data_drainable(&d);
	ck_assert_uint_eq(k, strlen("Received: a\r\nreceived: b\r\n"));
	buf_consume(&out, k);
	smtp_data_drained(&d, k);
	ck_assert_int_eq(smtp_data_feed(&d, S("From: A <a@x.example>,"), &used), 0);
	/* all but the From: line, which is not complete */
	ck_assert_uint_eq(smtp_data_drainable(&d), strlen("X-Received: c\r\n"));
	ck_assert_int_eq(smtp_data_feed(&d, S("\r\n\tB <b@x.example>\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n"), &used), 0);
	k = smtp_data_drainable(&d);
	ck_assert_uint_eq(k, out.len);  /* the body: everything may go */
	buf_consume(&out, k);
	smtp_data_drained(&d, k);
	ck_assert_int_eq(smtp_data_feed(&d, S("more\r\n.\r\n"), &used), 1);
	ck_assert_uint_eq(d.n_received, 2);
	ck_assert_uint_eq(d.n_from, 1);
	ck_assert_str_eq(d.from_field.data, "From: A <a@x.example>,\r\n\tB <b@x.example>\r\n");
	ck_assert_str_eq(d.msgid_field.data, "Message-ID: <m@x>\r\n");
	ck_assert(!d.from_too_long);
	ck_assert_str_eq(out.data, "more\r\n");
	smtp_data_free(&d);
	buf_free(&out);

	/* A From: field over SMTP_DATA_FIELD_MAX is flagged, not kept. */
	buf_init(&out, 1 << 20);
	smtp_data_init(&d, &out, 0, false);
	ck_assert_int_eq(smtp_data_feed(&d, S("From: <a@x.example>\r\n"), &used), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(smtp_data_feed(&d, S(" , <aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.example>\r\n"), &used), 0);
	ck_assert_int_eq(smtp_data_feed(&d, S("\r\n.\r\n"), &used), 1);
	ck_assert(d.from_too_long);
	ck_assert_uint_eq(d.from_field.len, 0);
	ck_assert_uint_eq(d.n_from, 1);
	smtp_data_free(&d);
	buf_free(&out);
}
END_TEST

START_TEST(dot_unstuffing)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{ "..\r\n.\r\n", ".\r\n" },
		{ "..foo\r\n.\r\n", ".foo\r\n" },
		{ ".foo\r\n.\r\n", "foo\r\n" },   /* unstuffed even when not stuffed */
		{ "...\r\n.\r\n", "..\r\n" },
		{ "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n" },
		{ "a.\r\n.b\r\n.\r\n", "a.\r\nb\r\n" },
		{ ". \r\n.\r\n", " \r\n" },
		{ ".\t\r\n.\r\n", "\t\r\n" },
		{ "a\r\n.\r\n..\r\n", "a\r\n" },
	};

	for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
		struct run r;
		feed_all_ways(&r, t[k].in, strlen(t[k].in), false, 0);
		ck_assert_msg(r.done, "%zu", k);
		ck_assert_int_eq(r.d.error, SMTP_DATA_OK);
		out_is(&r, t[k].out, strlen(t[k].out));
		ck_assert_uint_eq(r.d.size, strlen(t[k].out));
		run_free(&r);
	}
}
END_TEST

/* ---- SMTP smuggling (CVE-2023-51764 and kin) ---- */

static const char *smuggle_seq[] = { "\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\rX", "\r\n.\n", "\r\n.\r\r\n" };

START_TEST(smuggling_never_ends)
{
	const char *seq = smuggle_seq[_i];
	char msg[256];
	struct run r;

	for (int reject = 0; reject <= 1; reject++) {
		int n = snprintf(msg, sizeof(msg),
		                 "From: a@b.example\r\n\r\nhello%sMAIL FROM:<evil@x.example>\r\n"
		                 "RCPT TO:<victim@y.example>\r\nDATA\r\n\r\nevil\r\n.\r\nQUIT\r\n",
		                 seq);
		feed_all_ways(&r, msg, (size_t)n, reject, 0);
		ck_assert(r.done);
		/* It ends at the real CRLF.CRLF only. */
		ck_assert_uint_eq(r.used, (size_t)n - strlen("QUIT\r\n"));
		if (reject)
			ck_assert_int_ne(r.d.error, SMTP_DATA_OK);
		if (r.d.error == SMTP_DATA_OK)
			ck_assert(memmem(r.out.data, r.out.len, "\r\nRCPT TO:<victim@y.example>\r\n", 30) != NULL);
		run_free(&r);
	}
}
END_TEST

START_TEST(smuggling_outcomes)
{
	static const struct {
		const char *in;
		enum smtp_data_error normalize;
		const char *out;             /* in normalize mode, when OK */
		enum smtp_data_error reject;
	} t[] = {
		{ "a\n.\nb\r\n.\r\n", SMTP_DATA_OK, "a\r\n\r\nb\r\n", SMTP_DATA_BARE_LF },
		{ "a\n.\r\nb\r\n.\r\n", SMTP_DATA_OK, "a\r\n\r\nb\r\n", SMTP_DATA_BARE_LF },
		{ "a\r.\r\nb\r\n.\r\n", SMTP_DATA_BARE_CR, NULL, SMTP_DATA_BARE_CR },
		{ "a\r\n.\rXb\r\n.\r\n", SMTP_DATA_BARE_CR, NULL, SMTP_DATA_BARE_CR },
		{ "a\r\n.\r.\r\n.\r\n", SMTP_DATA_BARE_CR, NULL, SMTP_DATA_BARE_CR },
		{ "a\r\n.\nb\r\n.\r\n", SMTP_DATA_OK, "a\r\n\r\nb\r\n", SMTP_DATA_BARE_LF },
		{ "a\r\n.\r\r\n.\r\n", SMTP_DATA_BARE_CR, NULL, SMTP_DATA_BARE_CR },
		{ "a\n..\nb\r\n.\r\n", SMTP_DATA_OK, "a\r\n.\r\nb\r\n", SMTP_DATA_BARE_LF },
		/* The commands after a smuggled end stay message content. */
		{ "a\n.\nMAIL FROM:<e@x>\r\n.\r\n", SMTP_DATA_OK, "a\r\n\r\nMAIL FROM:<e@x>\r\n", SMTP_DATA_BARE_LF },
		{ "\n.\n\r\n.\r\n", SMTP_DATA_OK, "\r\n\r\n\r\n", SMTP_DATA_BARE_LF },
		{ ".\nx\r\n.\r\n", SMTP_DATA_OK, "\r\nx\r\n", SMTP_DATA_BARE_LF },
		{ "\r.\r\n.\r\n", SMTP_DATA_BARE_CR, NULL, SMTP_DATA_BARE_CR },
		{ ".\r.\r\n.\r\n", SMTP_DATA_BARE_CR, NULL, SMTP_DATA_BARE_CR },
	};

	for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
		struct run r;
		size_t len = strlen(t[k].in);

		feed_all_ways(&r, t[k].in, len, false, 0);
		ck_assert_msg(r.done && r.used == len, "%zu", k);
		ck_assert_msg(r.d.error == t[k].normalize, "%zu: %d", k, r.d.error);
		if (t[k].out)
			out_is(&r, t[k].out, strlen(t[k].out));
		run_free(&r);

		feed_all_ways(&r, t[k].in, len, true, 0);
		ck_assert_msg(r.done && r.used == len, "%zu", k);
		ck_assert_msg(r.d.error == t[k].reject, "%zu: %d", k, r.d.error);
		run_free(&r);
	}
}
END_TEST

START_TEST(bare_lf_normalised)
{
	struct run r;

	feed_all_ways(&r, S("Subject: x\n\nline1\nline2\r\n.\r\n"), false, 0);
	ck_assert(r.done);
	ck_assert_int_eq(r.d.error, SMTP_DATA_OK);
	out_is(&r, S("Subject: x\r\n\r\nline1\r\nline2\r\n"));
	ck_assert_uint_eq(r.d.size, r.out.len);
	ck_assert_uint_eq(r.d.header_end, 14);
	run_free(&r);

	feed_all_ways(&r, S("Subject: x\n\nline1\nline2\r\n.\r\n"), true, 0);
	ck_assert(r.done);
	ck_assert_int_eq(r.d.error, SMTP_DATA_BARE_LF);
	run_free(&r);
}
END_TEST

/* ---- refused content ---- */

START_TEST(bare_cr_and_nul)
{
	struct run r;

	feed_all_ways(&r, S("a\rb\r\n.\r\n"), false, 0);
	ck_assert(r.done);
	ck_assert_uint_eq(r.used, 8);
	ck_assert_int_eq(r.d.error, SMTP_DATA_BARE_CR);
	run_free(&r);

	feed_all_ways(&r, S("abc\r"), false, 0);
	ck_assert(!r.done);
	ck_assert_int_eq(r.d.error, SMTP_DATA_OK);  /* undecided yet */
	run_free(&r);

	feed_all_ways(&r, S("abc\r\r\n.\r\n"), false, 0);
	ck_assert(r.done);
	ck_assert_int_eq(r.d.error, SMTP_DATA_BARE_CR);
	run_free(&r);

	feed_all_ways(&r, S("\r\r\n.\r\n"), false, 0);
	ck_assert_int_eq(r.d.error, SMTP_DATA_BARE_CR);
	run_free(&r);

	feed_all_ways(&r, S("a\0b\r\nmore text\r\n.\r\n"), false, 0);
	ck_assert(r.done);
	ck_assert_uint_eq(r.used, 19);
	ck_assert_int_eq(r.d.error, SMTP_DATA_NUL);
	/* Nothing after the error is appended. */
	ck_assert(r.out.len == 0 || memmem(r.out.data, r.out.len, "more", 4) == NULL);
	run_free(&r);

	/* The first problem is the one reported. */
	feed_all_ways(&r, S("a\0b\rc\r\n.\r\n"), false, 0);
	ck_assert_int_eq(r.d.error, SMTP_DATA_NUL);
	run_free(&r);
	feed_all_ways(&r, S("a\rb\0c\r\n.\r\n"), false, 0);
	ck_assert_int_eq(r.d.error, SMTP_DATA_BARE_CR);
	run_free(&r);
	feed_all_ways(&r, S("a\0b\nc\r\n.\r\n"), true, 0);
	ck_assert_int_eq(r.d.error, SMTP_DATA_NUL);
	run_free(&r);
	feed_all_ways(&r, S("a\nb\0c\r\n.\r\n"), true, 0);
	ck_assert_int_eq(r.d.error, SMTP_DATA_BARE_LF);
	run_free(&r);
}
END_TEST

static char *make_line(const char *lead, size_t n, const char *tail)
{
	size_t ll = strlen(lead), tl = strlen(tail);
	char *m = malloc(ll + n + tl + 1);

	memcpy(m, lead, ll);
	memset(m + ll, 'x', n);
	memcpy(m + ll + n, tail, tl + 1);
	return m;
}

START_TEST(line_length)
{
	static const struct {
		const char *lead;
		size_t n;
		const char *tail;
		bool reject;
		enum smtp_data_error want;
	} t[] = {
		{ "", 998, "\r\n.\r\n", false, SMTP_DATA_OK },
		{ "", 999, "\r\n.\r\n", false, SMTP_DATA_LONG_LINE },
		{ "", 5000, "\r\n.\r\n", false, SMTP_DATA_LONG_LINE },
		/* after unstuffing: the stuffing dot does not count */
		{ ".", 998, "\r\n.\r\n", false, SMTP_DATA_OK },
		{ ".", 999, "\r\n.\r\n", false, SMTP_DATA_LONG_LINE },
		{ "..", 997, "\r\n.\r\n", false, SMTP_DATA_OK },
		{ "..", 998, "\r\n.\r\n", false, SMTP_DATA_LONG_LINE },
		/* the line ending does not count, whatever it is */
		{ "", 998, "\n\r\n.\r\n", false, SMTP_DATA_OK },
		{ "", 999, "\n\r\n.\r\n", false, SMTP_DATA_LONG_LINE },
		{ "a\r\n", 998, "\r\nb\r\n.\r\n", false, SMTP_DATA_OK },
		{ "a\r\n", 999, "\r\nb\r\n.\r\n", false, SMTP_DATA_LONG_LINE },
		/* a problem earlier in the line wins */
		{ "\r", 1000, "\r\n.\r\n", false, SMTP_DATA_BARE_CR },
		{ "", 999, "\0\r\n.\r\n", false, SMTP_DATA_LONG_LINE },
		{ "", 998, "\r\r\n.\r\n", false, SMTP_DATA_BARE_CR },
		{ "", 999, "\n\r\n.\r\n", true, SMTP_DATA_LONG_LINE },
		{ "", 998, "\n\r\n.\r\n", true, SMTP_DATA_BARE_LF },
	};

	for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
		char *m = make_line(t[k].lead, t[k].n, t[k].tail);
		size_t len = strlen(m);
		struct run ref, r;

		if (k == 12) {
			free(m);
			m = malloc(999 + 6);
			memset(m, 'x', 999);
			memcpy(m + 999, "\0\r\n.\r\n", 6);
			len = 1005;
		}
		/* Every split of a long message is slow; cut at the
		 * interesting places and byte by byte. */
		run_cuts(&ref, m, len, NULL, 0, t[k].reject, 0, 1 << 24, NULL);
		ck_assert_msg(ref.done && ref.used == len, "%zu", k);
		ck_assert_msg(ref.d.error == t[k].want, "%zu: %d", k, ref.d.error);
		for (size_t s = len > 12 ? len - 12 : 0; s <= len; s++) {
			run_cuts(&r, m, len, &s, 1, t[k].reject, 0, 1 << 24, NULL);
			same(&ref, &r, "long", k * 10000 + s);
			run_free(&r);
		}
		for (size_t s = 990; s < 1010 && s <= len; s++) {
			run_cuts(&r, m, len, &s, 1, t[k].reject, 0, 1 << 24, NULL);
			same(&ref, &r, "long", k * 10000 + s);
			run_free(&r);
		}
		size_t *cuts = malloc(len * sizeof(*cuts));
		for (size_t s = 0; s + 1 < len; s++)
			cuts[s] = s + 1;
		run_cuts(&r, m, len, cuts, len - 1, t[k].reject, 0, 1 << 24, NULL);
		same(&ref, &r, "long bytewise", k);
		run_free(&r);
		free(cuts);
		run_free(&ref);
		free(m);
	}
}
END_TEST

START_TEST(size_limit)
{
	struct run r;

	/* Content is "abc\r\n..\r\n" after unstuffing... counted in CRLF form. */
	feed_all_ways(&r, S("abc\r\n...\r\n.\r\n"), false, 9);
	ck_assert(r.done);
	ck_assert_int_eq(r.d.error, SMTP_DATA_OK);
	ck_assert_uint_eq(r.d.size, 9);
	run_free(&r);
	feed_all_ways(&r, S("abc\r\n...\r\n.\r\n"), false, 8);
	ck_assert(r.done);
	ck_assert_uint_eq(r.used, 13);
	ck_assert_int_eq(r.d.error, SMTP_DATA_TOO_BIG);
	ck_assert_uint_eq(r.d.size, 9);   /* counted on after the error */
	run_free(&r);

	/* A normalised bare LF counts as CRLF. */
	feed_all_ways(&r, S("abc\nd\r\n.\r\n"), false, 8);
	ck_assert_int_eq(r.d.error, SMTP_DATA_OK);
	ck_assert_uint_eq(r.d.size, 8);
	run_free(&r);
	feed_all_ways(&r, S("abc\nd\r\n.\r\n"), false, 7);
	ck_assert_int_eq(r.d.error, SMTP_DATA_TOO_BIG);
	run_free(&r);

	/* Way over: reading still goes on to the real end. */
	char *big = malloc(100000 + 10);
	for (size_t k = 0; k < 1000; k++) {
		memset(big + k * 100, 'x', 98);
		memcpy(big + k * 100 + 98, "\r\n", 2);
	}
	memcpy(big + 100000, ".\r\nQUIT\r\n", 9);
	size_t cut = 4096;
	run_cuts(&r, big, 100009, &cut, 1, false, 1000, 1 << 24, NULL);
	ck_assert(r.done);
	ck_assert_uint_eq(r.used, 100003);
	ck_assert_uint_eq(r.d.size, 100000);
	ck_assert_int_eq(r.d.error, SMTP_DATA_TOO_BIG);
	ck_assert_uint_le(r.out.len, 1000);
	run_free(&r);
	free(big);

	/* The out buffer's own cap: -ENOSPC is reported as too big. */
	run_cuts(&r, S("abcdef\r\n.\r\n"), NULL, 0, false, 0, 7, NULL);
	ck_assert(r.done);
	ck_assert_int_eq(r.d.error, SMTP_DATA_TOO_BIG);
	run_free(&r);
	run_cuts(&r, S("abcde\r\n.\r\n"), NULL, 0, false, 0, 7, NULL);
	ck_assert_int_eq(r.d.error, SMTP_DATA_OK);
	run_free(&r);
}
END_TEST

/* ---- header scan ---- */

START_TEST(header_fields)
{
	struct run r;
	const char msg[] =
		"Received: by x\r\n"
		"From: Alice <a@b.example>\r\n"
		"  (folded)\r\n"
		"\tmore\r\n"
		"To: c@d.example\r\n"
		"  not part of From\r\n"
		"Message-ID:\r\n"
		" <id@b.example>\r\n"
		"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
		"\r\n"
		"From: in the body is not a header\r\n"
		".\r\n";
	const char *o;

	feed_all_ways(&r, S(msg), false, 0);
	ck_assert(r.done);
	ck_assert_int_eq(r.d.error, SMTP_DATA_OK);
	o = r.out.data;
	ck_assert_uint_eq(r.d.n_from, 1);
	ck_assert_uint_eq(r.d.from_off, 16);
	ck_assert_uint_eq(r.d.from_len, strlen("From: Alice <a@b.example>\r\n  (folded)\r\n\tmore"));
	ck_assert(memcmp(o + r.d.from_off, "From: Alice <a@b.example>\r\n  (folded)\r\n\tmore", r.d.from_len) == 0);
	ck_assert(r.d.has_message_id);
	ck_assert(memcmp(o + r.d.msgid_off, "Message-ID:\r\n <id@b.example>", r.d.msgid_len) == 0);
	ck_assert_uint_eq(r.d.msgid_len, strlen("Message-ID:\r\n <id@b.example>"));
	ck_assert(r.d.has_date);
	ck_assert(memcmp(o + r.d.header_end, "From: in the body", 17) == 0);
	ck_assert(memcmp(o + r.d.header_end - 4, "\r\n\r\n", 4) == 0);
	run_free(&r);
}
END_TEST

START_TEST(header_multiple_and_case)
{
	struct run r;

	feed_all_ways(&r, S("FROM: a\r\nfrom: b\r\nmessage-id: <x@y>\r\nMESSAGE-ID: <z@y>\r\ndate: d\r\n\r\nbody\r\n.\r\n"),
	              false, 0);
	ck_assert_int_eq(r.d.error, SMTP_DATA_OK);
	ck_assert_uint_eq(r.d.n_from, 2);
	ck_assert_uint_eq(r.d.from_off, 0);
	ck_assert_uint_eq(r.d.from_len, 7);
	ck_assert(r.d.has_message_id);
	ck_assert_uint_eq(r.d.msgid_off, 18);
	ck_assert_uint_eq(r.d.msgid_len, 17);
	ck_assert(r.d.has_date);
	ck_assert_uint_eq(r.d.header_end, 67);
	run_free(&r);

	/* A continuation after a second From: does not touch the first. */
	feed_all_ways(&r, S("From: a\r\nFrom: b\r\n c\r\n\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 2);
	ck_assert_uint_eq(r.d.from_len, 7);
	run_free(&r);

	/* Not quite those fields. */
	feed_all_ways(&r, S("From : a\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 0);
	ck_assert_uint_eq(r.d.header_end, 0);
	run_free(&r);
	feed_all_ways(&r, S("Fromx: a\r\nMessage-IDs: b\r\nDated: c\r\nResent-From: d\r\n\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 0);
	ck_assert(!r.d.has_message_id);
	ck_assert(!r.d.has_date);
	ck_assert_uint_eq(r.d.from_len, 0);
	ck_assert_uint_eq(r.d.msgid_len, 0);
	run_free(&r);

	/* A stuffed header line is still a header line. */
	feed_all_ways(&r, S(".From: a\r\n\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 1);
	ck_assert_uint_eq(r.d.from_off, 0);
	ck_assert_uint_eq(r.d.from_len, 7);
	run_free(&r);
}
END_TEST

START_TEST(header_missing_and_no_body)
{
	struct run r;

	feed_all_ways(&r, S("Subject: x\r\n\r\nbody\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 0);
	ck_assert_uint_eq(r.d.from_len, 0);
	ck_assert(!r.d.has_message_id);
	ck_assert(!r.d.has_date);
	ck_assert_uint_eq(r.d.header_end, 14);
	run_free(&r);

	/* The header section never ends: header_end is the end of out. */
	feed_all_ways(&r, S("From: a\r\nSubject: x\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 1);
	ck_assert_uint_eq(r.d.header_end, 21);
	ck_assert_uint_eq(r.d.header_end, r.out.len);
	run_free(&r);

	/* ... also when the last field is folded. */
	feed_all_ways(&r, S("From: a\r\n b\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.from_len, 11);
	ck_assert_uint_eq(r.d.header_end, 13);
	run_free(&r);

	/* A line without a colon ends the header section and is body. */
	feed_all_ways(&r, S("From: a\r\nthis is body\r\nDate: no\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 1);
	ck_assert_uint_eq(r.d.header_end, 9);
	ck_assert(!r.d.has_date);
	run_free(&r);
	feed_all_ways(&r, S("no header at all\r\nFrom: x\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 0);
	ck_assert_uint_eq(r.d.header_end, 0);
	run_free(&r);
	feed_all_ways(&r, S(":empty name\r\nFrom: x\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 0);
	ck_assert_uint_eq(r.d.header_end, 0);
	run_free(&r);
	/* A leading continuation line belongs to no field. */
	feed_all_ways(&r, S(" x\r\nFrom: a\r\n\r\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.n_from, 1);
	ck_assert_uint_eq(r.d.from_off, 4);
	ck_assert_uint_eq(r.d.header_end, 15);
	run_free(&r);

	/* Normalised bare LFs give the same offsets as CRLF would. */
	feed_all_ways(&r, S("From: a\n b\nDate: x\n\nbody\n.\r\n"), false, 0);
	ck_assert_uint_eq(r.d.from_off, 0);
	ck_assert_uint_eq(r.d.from_len, 11);
	ck_assert(r.d.has_date);
	ck_assert_uint_eq(r.d.header_end, 24);
	run_free(&r);
}
END_TEST

START_TEST(header_offsets_with_prefix)
{
	/* out may already hold something (e.g. a Received: line); offsets
	 * are into out. */
	struct run r;
	const char pre[] = "Received: from x\r\n";

	run_cuts(&r, S("From: a\r\n\r\nb\r\n.\r\n"), NULL, 0, false, 0, 1 << 20, pre);
	ck_assert(r.done);
	ck_assert_uint_eq(r.d.from_off, strlen(pre));
	ck_assert_uint_eq(r.d.from_len, 7);
	ck_assert_uint_eq(r.d.header_end, strlen(pre) + 11);
	ck_assert_uint_eq(r.d.size, 14);
	run_free(&r);
}
END_TEST

START_TEST(eight_bit)
{
	struct run r;

	feed_all_ways(&r, S("Subject: plain\r\n\r\nascii only ~\x7f\r\n.\r\n"), false, 0);
	ck_assert(!r.d.has_8bit);
	run_free(&r);
	feed_all_ways(&r, S("Subject: \xc3\xa9t\xc3\xa9\r\n\r\nx\r\n.\r\n"), false, 0);
	ck_assert(r.d.has_8bit);
	run_free(&r);
	feed_all_ways(&r, S("Subject: x\r\n\r\nbody \xff\r\n.\r\n"), false, 0);
	ck_assert(r.d.has_8bit);
	run_free(&r);
	feed_all_ways(&r, S(".\x80\r\n.\r\n"), false, 0);
	ck_assert(r.d.has_8bit);
	run_free(&r);
	/* After the end, 8-bit bytes are the next command's business. */
	feed_all_ways(&r, S("x\r\n.\r\n\xff"), false, 0);
	ck_assert(!r.d.has_8bit);
	run_free(&r);
}
END_TEST

START_TEST(strerror_all)
{
	for (int e = SMTP_DATA_OK; e <= SMTP_DATA_NOMEM; e++) {
		const char *s = smtp_data_strerror((enum smtp_data_error)e);
		ck_assert(s != NULL && s[0] != '\0');
	}
	ck_assert_str_eq(smtp_data_strerror(SMTP_DATA_BARE_CR), "bare CR in message");
}
END_TEST

/* ---- differential test against a line-by-line model ---- */

struct model {
	int done;
	size_t used;
	enum smtp_data_error error;
	buf_t full;   /* the content as if no error had happened */
	bool has_8bit;
};

/* The rules of smtp_data.h, applied to a whole input one line at a time. */
static void model_run(struct model *m, const char *in, size_t len, bool reject)
{
	size_t pos = 0;
	bool after_crlf = true;

	memset(m, 0, sizeof(*m));
	buf_init(&m->full, 1 << 24);
	while (pos < len) {
		const char *nl = memchr(in + pos, '\n', len - pos);
		if (!nl)
			break;   /* inputs here always end in CRLF.CRLF */
		size_t e = (size_t)(nl - in);
		bool crlf = e > pos && in[e - 1] == '\r';
		size_t cs = pos, ce = crlf ? e - 1 : e;

		if (after_crlf && crlf && ce - cs == 1 && in[cs] == '.') {
			m->done = 1;
			m->used = e + 1;
			return;
		}
		if (ce > cs && in[cs] == '.')
			cs++;
		for (size_t k = cs; k < ce && m->error == SMTP_DATA_OK; k++) {
			if (in[k] == '\r')
				m->error = SMTP_DATA_BARE_CR;
			else if (in[k] == '\0')
				m->error = SMTP_DATA_NUL;
			else if (k - cs == SMTP_DATA_LINE_MAX)
				m->error = SMTP_DATA_LONG_LINE;
		}
		for (size_t k = cs; k < ce; k++)
			if ((unsigned char)in[k] & 0x80)
				m->has_8bit = true;
		if (!crlf && reject && m->error == SMTP_DATA_OK)
			m->error = SMTP_DATA_BARE_LF;
		buf_append(&m->full, in + cs, ce - cs);
		buf_append(&m->full, "\r\n", 2);
		after_crlf = crlf;
		pos = e + 1;
	}
}

/* Header scan of a CRLF-only text, independent of the reader's. */
static void model_headers(const char *o, size_t n, struct smtp_data *h)
{
	size_t off = 0;
	int cur = 0;

	memset(h, 0, sizeof(*h));
	h->header_end = n;
	while (off < n) {
		const char *crlf = memmem(o + off, n - off, "\r\n", 2);
		size_t e = (size_t)(crlf - o), k;
		if (e == off) {
			h->header_end = e + 2;
			return;
		}
		if (o[off] == ' ' || o[off] == '\t') {
			if (cur == 1)
				h->from_len = e - h->from_off;
			if (cur == 2)
				h->msgid_len = e - h->msgid_off;
		} else {
			for (k = off; k < e && o[k] != ':' && (unsigned char)o[k] >= 33 && (unsigned char)o[k] <= 126; k++)
				;
			if (k == off || k == e || o[k] != ':') {
				h->header_end = off;
				return;
			}
			cur = 0;
			if (k - off == 4 && strncasecmp(o + off, "from", 4) == 0 && h->n_from++ == 0) {
				h->from_off = off;
				h->from_len = e - off;
				cur = 1;
			} else if (k - off == 10 && strncasecmp(o + off, "message-id", 10) == 0 && !h->has_message_id) {
				h->has_message_id = true;
				h->msgid_off = off;
				h->msgid_len = e - off;
				cur = 2;
			} else if (k - off == 4 && strncasecmp(o + off, "date", 4) == 0) {
				h->has_date = true;
			}
		}
		off = e + 2;
	}
}

START_TEST(differential_random)
{
	static const char *tok[] = {
		"\r\n", "\r\n", "\r\n", "\n", "\r", ".", ".", "..", "a", "bc", " ", "\t", ":", "\0",
		"From: x", "Message-ID: <a@b>", "Date: d", "FROM:", "message-id:", " fold",
		"\xc3\xa9", "\xff", "\r\n.", "\n.", "\r.", "\r\n.\r",
	};
	const size_t ntok = sizeof(tok) / sizeof(tok[0]);
	unsigned seed = 4242;
	char msg[4096];

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = 0, ntoks, k;
		bool reject;

#define RND() (seed = seed * 1103515245u + 12345u, seed >> 16)
		reject = RND() % 2;
		ntoks = RND() % 40;
		for (k = 0; k < ntoks; k++) {
			unsigned t = RND();
			if (t % 97 == 0 && len < 2000) {
				/* a line near the length limit */
				size_t n = 995 + RND() % 6;
				memset(msg + len, 'y', n);
				len += n;
			} else {
				const char *s = tok[t % ntok];
				size_t sl = (t % ntok == 13) ? 1 : strlen(s);
				memcpy(msg + len, s, sl);
				len += sl;
			}
		}
		memcpy(msg + len, "\r\n.\r\nNEXT", 9);
		len += 9;

		struct model m;
		struct run r, whole;
		size_t cuts[8], nc = RND() % 8, c;

		model_run(&m, msg, len, reject);
		ck_assert(m.done);
		for (c = 0; c < nc; c++)
			cuts[c] = RND() % (len + 1);
		/* ascending */
		for (size_t a = 0; a < nc; a++)
			for (size_t b = a + 1; b < nc; b++)
				if (cuts[b] < cuts[a]) {
					size_t x = cuts[a];
					cuts[a] = cuts[b];
					cuts[b] = x;
				}
		run_cuts(&r, msg, len, cuts, nc, reject, 0, 1 << 24, NULL);
		run_cuts(&whole, msg, len, NULL, 0, reject, 0, 1 << 24, NULL);
		same(&whole, &r, "random", (size_t)iter);

		ck_assert_msg(r.done && r.used == m.used, "iter %d: used %zu, model %zu", iter, r.used, m.used);
		ck_assert_msg(r.d.error == m.error, "iter %d: error %d, model %d", iter, r.d.error, m.error);
		ck_assert_msg(r.d.size == m.full.len, "iter %d: size %lu, model %zu", iter,
		              (unsigned long)r.d.size, m.full.len);
		ck_assert_msg(r.d.has_8bit == m.has_8bit, "iter %d: 8bit", iter);
		/* What was appended before an error is a prefix of the content. */
		ck_assert(r.out.len <= m.full.len);
		ck_assert(r.out.len == 0 || memcmp(r.out.data, m.full.data, r.out.len) == 0);
		if (m.error == SMTP_DATA_OK) {
			struct smtp_data h;
			ck_assert_uint_eq(r.out.len, m.full.len);
			ck_assert(memchr(r.out.data ? r.out.data : "", '\0', r.out.len) == NULL);
			model_headers(r.out.data, r.out.len, &h);
			ck_assert_msg(h.header_end == r.d.header_end, "iter %d: header_end %zu vs %zu", iter,
			              h.header_end, r.d.header_end);
			ck_assert_uint_eq(h.n_from, r.d.n_from);
			ck_assert_uint_eq(h.from_off, r.d.from_off);
			ck_assert_uint_eq(h.from_len, r.d.from_len);
			ck_assert(h.has_message_id == r.d.has_message_id);
			ck_assert_uint_eq(h.msgid_off, r.d.msgid_off);
			ck_assert_uint_eq(h.msgid_len, r.d.msgid_len);
			ck_assert(h.has_date == r.d.has_date);
			/* Output has no bare CR or LF. */
			for (size_t i = 0; i < r.out.len; i++) {
				if (r.out.data[i] == '\r')
					ck_assert(i + 1 < r.out.len && r.out.data[i + 1] == '\n');
				if (r.out.data[i] == '\n')
					ck_assert(i > 0 && r.out.data[i - 1] == '\r');
			}
		}
		run_free(&r);
		run_free(&whole);
		buf_free(&m.full);
#undef RND
	}
}
END_TEST

static Suite *smtp_data_suite(void)
{
	Suite *s = suite_create("smtp_data");
	TCase *tc;

	tc = tcase_create("end");
	tcase_add_test(tc, empty_message);
	tcase_add_test(tc, needs_more);
	tcase_add_test(tc, pipelined_after_end);
	tcase_add_test(tc, feed_after_done);
	tcase_add_test(tc, dot_unstuffing);
	suite_add_tcase(s, tc);

	tc = tcase_create("smuggling");
	tcase_add_loop_test(tc, smuggling_never_ends, 0, (int)(sizeof(smuggle_seq) / sizeof(smuggle_seq[0])));
	tcase_add_test(tc, smuggling_outcomes);
	tcase_add_test(tc, bare_lf_normalised);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("refused");
	tcase_add_test(tc, bare_cr_and_nul);
	tcase_add_test(tc, line_length);
	tcase_add_test(tc, size_limit);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("headers");
	tcase_add_test(tc, header_fields);
	tcase_add_test(tc, header_multiple_and_case);
	tcase_add_test(tc, header_missing_and_no_body);
	tcase_add_test(tc, header_offsets_with_prefix);
	tcase_add_test(tc, eight_bit);
	tcase_add_test(tc, strerror_all);
	tcase_add_test(tc, received_count_fields_drain);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("differential");
	tcase_add_test(tc, differential_random);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(smtp_data_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
