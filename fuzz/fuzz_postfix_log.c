/*
 * fuzz_postfix_log - the Postfix log line parser of "hikyakuctl
 * suppression survey" (pflog_parse(), pflog_time_parse(),
 * pflog_time_ms() in ctl/postfix_log.c).
 *
 * The input is a piece of a mail log: it is cut into lines at LF, and
 * each line goes to the parser in a buffer of exactly its length (so
 * that ASan sees any read past it). Checked, for every line:
 *
 *  - the parse is deterministic, and a CR added at the end changes
 *    nothing (a CRLF log reads as an LF one);
 *  - any kind but MALFORMED has a time, a host (no blank) and a
 *    program name (letters, digits, "._-/") inside the line, and
 *    pflog_time_parse() of the line reads the same time;
 *  - DELIVERY: every field lies inside the line, in the order Postfix
 *    writes them (queue id, to, orig_to, relay, dsn, status, response);
 *    the queue id is 5 to 32 letters and digits, the address is not
 *    empty, dsn passes pflog_dsn_valid() (class 2, 4 or 5), the status
 *    is a word of letters and the status enum agrees with it;
 *  - pflog_time_ms(): a line with a zone gives a time that gmtime()
 *    turns back into its fields (but a leap second); a line without one is placed at most a
 *    day (and an hour of DST) after the reference time.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/postfix_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

/* 2026-12-02T00:00:00Z */
#define REF_MS ((int64_t)1796169600 * 1000)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("TZ", "Asia/Tokyo", 1);
	tzset();
	return 0;
}

static bool inside(struct pflog_span s, const char *line, size_t len)
{
	return s.p && s.p >= line && s.p + s.n <= line + len;
}

static bool same_span(struct pflog_span a, const char *la, struct pflog_span b, const char *lb)
{
	if (!a.p || !b.p)
		return !a.p && !b.p;
	return a.n == b.n && a.p - la == b.p - lb;
}

static bool same_time(const struct pflog_time *a, const struct pflog_time *b)
{
	return a->year == b->year && a->mon == b->mon && a->mday == b->mday &&
	       a->hour == b->hour && a->min == b->min && a->sec == b->sec && a->usec == b->usec &&
	       a->zoned == b->zoned && a->off_min == b->off_min;
}

static bool same(const struct pflog_record *a, const char *la, const struct pflog_record *b,
                 const char *lb)
{
	return same_time(&a->time, &b->time) && same_span(a->host, la, b->host, lb) &&
	       same_span(a->program, la, b->program, lb) &&
	       same_span(a->queue_id, la, b->queue_id, lb) && same_span(a->to, la, b->to, lb) &&
	       same_span(a->orig_to, la, b->orig_to, lb) &&
	       same_span(a->relay, la, b->relay, lb) && same_span(a->dsn, la, b->dsn, lb) &&
	       same_span(a->status, la, b->status, lb) &&
	       same_span(a->response, la, b->response, lb) && a->st == b->st;
}

static bool word_is(struct pflog_span s, const char *w)
{
	return s.n == strlen(w) && memcmp(s.p, w, s.n) == 0;
}

static void check_time(const struct pflog_time *t)
{
	int64_t ms;

	if (pflog_time_ms(t, REF_MS, &ms) < 0)
		return;
	if (t->zoned) {
		if (t->sec == 60)
			return;         /* a leap second: normalized into the next minute */
		time_t s = (time_t)((ms - t->usec / 1000) / 1000 + (int64_t)t->off_min * 60);
		struct tm tm;

		CHECK(gmtime_r(&s, &tm));
		CHECK(tm.tm_year + 1900 == t->year && tm.tm_mon + 1 == t->mon);
		CHECK(tm.tm_mday == t->mday && tm.tm_hour == t->hour && tm.tm_min == t->min);
		CHECK(tm.tm_sec == t->sec);
	} else {
		CHECK(ms <= REF_MS + 86400000 + 3600000);
		CHECK(ms > REF_MS - (int64_t)10 * 366 * 86400000);
	}
}

static void one_line(const uint8_t *p, size_t n)
{
	char *line = malloc(n ? n : 1), *cr = malloc(n + 1);
	struct pflog_record r, r2, r3;
	struct pflog_time t;
	enum pflog_kind k;

	memcpy(line, p, n);
	memcpy(cr, p, n);
	cr[n] = '\r';
	k = pflog_parse(line, n, &r);
	CHECK(k == PFLOG_DELIVERY || k == PFLOG_OTHER || k == PFLOG_FOREIGN || k == PFLOG_MALFORMED);
	CHECK(pflog_parse(line, n, &r2) == k && same(&r, line, &r2, line));
	if (n == 0 || line[n - 1] != '\r')
		CHECK(pflog_parse(cr, n + 1, &r3) == k && same(&r, line, &r3, cr));
	if (k != PFLOG_MALFORMED) {
		CHECK(r.time.mon >= 1 && r.time.mon <= 12 && r.time.mday >= 1 && r.time.mday <= 31);
		CHECK(inside(r.host, line, n) && r.host.n > 0 && !memchr(r.host.p, ' ', r.host.n));
		CHECK(inside(r.program, line, n) && r.program.n > 0);
		for (size_t i = 0; i < r.program.n; i++) {
			char c = r.program.p[i];
			CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			      c == '.' || c == '_' || c == '-' || c == '/');
		}
		CHECK(pflog_time_parse(line, n, &t) > 0 && same_time(&t, &r.time));
		check_time(&r.time);
	}
	if (k == PFLOG_DELIVERY) {
		CHECK(inside(r.queue_id, line, n) && r.queue_id.n >= 5 && r.queue_id.n <= 32);
		for (size_t i = 0; i < r.queue_id.n; i++) {
			char c = r.queue_id.p[i];
			CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
		}
		CHECK(inside(r.to, line, n) && r.to.n > 0 && r.to.p > r.queue_id.p);
		CHECK(!r.orig_to.p || (inside(r.orig_to, line, n) && r.orig_to.p > r.to.p + r.to.n));
		CHECK(inside(r.relay, line, n) && r.relay.n > 0);
		CHECK(r.relay.p > (r.orig_to.p ? r.orig_to.p + r.orig_to.n : r.to.p + r.to.n));
		CHECK(inside(r.dsn, line, n) && r.dsn.p > r.relay.p);
		CHECK(pflog_dsn_valid(r.dsn.p, r.dsn.n));
		CHECK(inside(r.status, line, n) && r.status.n > 0 && r.status.p > r.dsn.p);
		for (size_t i = 0; i < r.status.n; i++)
			CHECK((r.status.p[i] >= 'a' && r.status.p[i] <= 'z') ||
			      (r.status.p[i] >= 'A' && r.status.p[i] <= 'Z'));
		CHECK((r.st == PFLOG_SENT) == word_is(r.status, "sent"));
		CHECK((r.st == PFLOG_BOUNCED) == word_is(r.status, "bounced"));
		CHECK((r.st == PFLOG_DEFERRED) == word_is(r.status, "deferred"));
		CHECK((r.st == PFLOG_EXPIRED) == word_is(r.status, "expired"));
		CHECK(!r.response.p ||
		      (r.response.p + r.response.n <= line + n && r.response.p > r.status.p &&
		       r.response.p[-1] == '('));
	}
	/* The time alone, at the start of any line. */
	if (pflog_time_parse(line, n, &t) > 0)
		check_time(&t);
	free(line);
	free(cr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t start = 0;

	for (size_t i = 0; i <= size; i++)
		if (i == size || data[i] == '\n') {
			one_line(data + start, i - start);
			start = i + 1;
		}
	return 0;
}
