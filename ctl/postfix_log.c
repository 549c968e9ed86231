/*
 * postfix_log - the Postfix log line parser of "hikyakuctl suppression
 * survey". See postfix_log.h. The forms were taken from Postfix 3.7
 * itself (tests/e2e/data/survey/make_postfix_log.sh): smtp(8), lmtp(8),
 * local(8), virtual(8), pipe(8), error(8) and qmgr(8) write a delivery as
 *
 *	QUEUEID: to=<ADDR>, [orig_to=<ADDR>, ]relay=HOST[IP]:PORT,
 *	    [conn_use=N, ]delay=D, delays=A/B/C/D, dsn=X.Y.Z, status=WORD (TEXT)
 *
 * (src/global/log_adhoc.c), one line, the text to the end of the line.
 */
#include "ctl/postfix_log.h"

#include <string.h>
#include <time.h>

/* ---- small scanners: each takes [*p, end) and advances *p ---- */

static bool digits(const char **p, const char *end, int n, int *out)
{
	int v = 0;

	if (end - *p < n)
		return false;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool lit(const char **p, const char *end, const char *s)
{
	size_t n = strlen(s);

	if ((size_t)(end - *p) < n || memcmp(*p, s, n) != 0)
		return false;
	*p += n;
	return true;
}

static bool span_is(struct pflog_span s, const char *w)
{
	size_t n = strlen(w);

	return s.n == n && memcmp(s.p, w, n) == 0;
}

/* "HH:MM:SS" */
static bool clock_time(const char **p, const char *end, struct pflog_time *t)
{
	return digits(p, end, 2, &t->hour) && lit(p, end, ":") && digits(p, end, 2, &t->min) &&
	       lit(p, end, ":") && digits(p, end, 2, &t->sec) && t->hour < 24 && t->min < 60 &&
	       t->sec <= 60;
}

/* RFC 3339: "2026-12-02T02:29:54.755810+00:00" (any fraction, Z or offset). */
static bool rfc3339(const char **p, const char *end, struct pflog_time *t)
{
	const char *q = *p;
	int oh, om;

	if (!digits(&q, end, 4, &t->year) || t->year < 1970 || !lit(&q, end, "-") || !digits(&q, end, 2, &t->mon) ||
	    !lit(&q, end, "-") || !digits(&q, end, 2, &t->mday) || q == end ||
	    (*q != 'T' && *q != 't'))
		return false;
	q++;
	if (!clock_time(&q, end, t))
		return false;
	t->usec = 0;
	if (q < end && *q == '.') {
		int nd = 0;

		for (q++; q < end && *q >= '0' && *q <= '9'; q++, nd++)
			if (nd < 6)
				t->usec = t->usec * 10 + (*q - '0');
		if (nd == 0)
			return false;
		for (; nd < 6; nd++)
			t->usec *= 10;
	}
	t->zoned = true;
	t->off_min = 0;
	if (q < end && (*q == 'Z' || *q == 'z')) {
		q++;
	} else if (q < end && (*q == '+' || *q == '-')) {
		int sign = *q == '+' ? 1 : -1;

		q++;
		if (!digits(&q, end, 2, &oh) || !lit(&q, end, ":") || !digits(&q, end, 2, &om) ||
		    oh > 23 || om > 59)
			return false;
		t->off_min = sign * (oh * 60 + om);
	} else {
		return false;
	}
	if (t->mon < 1 || t->mon > 12 || t->mday < 1 || t->mday > 31)
		return false;
	*p = q;
	return true;
}

/* "Dec 02 02:29:18" (maillog_file) or "Dec  2 02:29:18" (syslog). */
static bool bsd_time(const char **p, const char *end, struct pflog_time *t)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	const char *q = *p;
	int m = -1;

	if (end - q < 15)
		return false;
	for (int i = 0; i < 12; i++)
		if (memcmp(q, months + 3 * i, 3) == 0)
			m = i;
	if (m < 0 || q[3] != ' ')
		return false;
	q += 4;
	if (*q == ' ') {                        /* " 2" */
		q++;
		if (!digits(&q, end, 1, &t->mday))
			return false;
	} else if (!digits(&q, end, 2, &t->mday)) {
		return false;
	}
	if (!lit(&q, end, " ") || !clock_time(&q, end, t) || t->mday < 1 || t->mday > 31)
		return false;
	t->year = 0;
	t->mon = m + 1;
	t->usec = 0;
	t->zoned = false;
	t->off_min = 0;
	*p = q;
	return true;
}

/* A token up to the next blank (at least one byte). */
static bool token(const char **p, const char *end, struct pflog_span *s)
{
	const char *q = *p;

	while (q < end && *q != ' ')
		q++;
	if (q == *p)
		return false;
	s->p = *p;
	s->n = (size_t)(q - *p);
	*p = q;
	return true;
}

/*
 * "prog[pid]: " or "prog: ". The name is what syslog's TAG holds:
 * letters, digits and "._-/".
 */
static bool program(const char **p, const char *end, struct pflog_span *s)
{
	const char *q = *p;

	while (q < end && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
	                   (*q >= '0' && *q <= '9') || *q == '.' || *q == '_' || *q == '-' ||
	                   *q == '/'))
		q++;
	if (q == *p)
		return false;
	s->p = *p;
	s->n = (size_t)(q - *p);
	if (q < end && *q == '[') {
		const char *d = ++q;

		while (q < end && *q >= '0' && *q <= '9')
			q++;
		if (q == d || q == end || *q != ']')
			return false;
		q++;
	}
	if (!lit(&q, end, ": ") && !(q + 1 == end && *q == ':'))
		return false;
	*p = q;
	return true;
}

/* The last path component of the program: "smtp" of "postfix/relay/smtp". */
static struct pflog_span daemon_name(struct pflog_span prog)
{
	struct pflog_span d = prog;

	for (size_t i = prog.n; i > 0; i--)
		if (prog.p[i - 1] == '/') {
			d.p = prog.p + i;
			d.n = prog.n - i;
			break;
		}
	return d;
}

bool pflog_dsn_valid(const char *p, size_t n)
{
	size_t i = 0, k;

	if (n < 5 || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
		return false;
	i = 2;
	for (int part = 0; part < 2; part++) {
		for (k = 0; i < n && k < 4 && p[i] >= '0' && p[i] <= '9'; i++, k++)
			;
		if (k < 1 || k > 3)
			return false;
		if (part == 0) {
			if (i >= n || p[i] != '.')
				return false;
			i++;
		}
	}
	return i == n;
}

static const char *find(const char *from, const char *end, const char *needle)
{
	size_t n = strlen(needle);

	if (from >= end)
		return NULL;
	return memmem(from, (size_t)(end - from), needle, n);
}

/*
 * The delivery record after "QUEUEID: to=<" (at p). Returns false when
 * it does not parse.
 */
static bool delivery(const char *p, const char *end, struct pflog_record *r)
{
	const char *a = find(p, end, ">, relay=");
	const char *o = find(p, end, ">, orig_to=<");
	const char *q;

	if (!a)
		return false;
	r->orig_to.p = NULL;
	r->orig_to.n = 0;
	if (o && o < a) {
		r->to.p = p;
		r->to.n = (size_t)(o - p);
		r->orig_to.p = o + strlen(">, orig_to=<");
		r->orig_to.n = (size_t)(a - r->orig_to.p);
	} else {
		r->to.p = p;
		r->to.n = (size_t)(a - p);
	}
	if (r->to.n == 0)
		return false;
	q = a + strlen(">, relay=");
	r->relay.p = q;
	while (q < end && !(q + 1 < end && q[0] == ',' && q[1] == ' '))
		q++;
	r->relay.n = (size_t)(q - r->relay.p);
	if (r->relay.n == 0 || q == end)
		return false;
	r->dsn.p = NULL;
	r->dsn.n = 0;
	/* ", key=value" until status. */
	for (;;) {
		const char *k, *v;

		if (!lit(&q, end, ", "))
			return false;
		k = q;
		while (q < end && ((*q >= 'a' && *q <= 'z') || *q == '_'))
			q++;
		if (q == k || q == end || *q != '=')
			return false;
		v = ++q;
		if ((size_t)(v - k) == 7 && memcmp(k, "status=", 7) == 0) {
			/* A word; "SOFTBOUNCE" with soft_bounce = yes. */
			while (q < end && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
				q++;
			r->status.p = v;
			r->status.n = (size_t)(q - v);
			break;
		}
		while (q < end && !(q + 1 < end && q[0] == ',' && q[1] == ' '))
			q++;
		if ((size_t)(v - k) == 4 && memcmp(k, "dsn=", 4) == 0) {
			r->dsn.p = v;
			r->dsn.n = (size_t)(q - v);
		}
		if (q == end)
			return false;
	}
	if (r->status.n == 0 || !r->dsn.p || !pflog_dsn_valid(r->dsn.p, r->dsn.n))
		return false;
	if (q < end && *q != ' ' && *q != ',')
		return false;
	if (span_is(r->status, "sent"))
		r->st = PFLOG_SENT;
	else if (span_is(r->status, "bounced"))
		r->st = PFLOG_BOUNCED;
	else if (span_is(r->status, "deferred"))
		r->st = PFLOG_DEFERRED;
	else if (span_is(r->status, "expired"))
		r->st = PFLOG_EXPIRED;
	else
		r->st = PFLOG_STATUS_OTHER;
	/* "status=bounced (TEXT)", "status=expired, returned to sender (TEXT)". */
	r->response.p = NULL;
	r->response.n = 0;
	const char *open = memchr(q, '(', (size_t)(end - q));
	if (open) {
		const char *close = NULL;

		for (const char *c = end; c > open + 1; c--)
			if (c[-1] == ')') {
				close = c - 1;
				break;
			}
		r->response.p = open + 1;
		r->response.n = (size_t)((close ? close : end) - r->response.p);
	}
	return true;
}

enum pflog_kind pflog_parse(const char *line, size_t len, struct pflog_record *r)
{
	const char *p = line, *end = line + len, *qid;
	struct pflog_span d;
	bool postfix;

	memset(r, 0, sizeof(*r));
	if (len > 0 && end[-1] == '\r')
		end--;
	if (!rfc3339(&p, end, &r->time) && !bsd_time(&p, end, &r->time))
		return PFLOG_MALFORMED;
	if (!lit(&p, end, " ") || !token(&p, end, &r->host) || !lit(&p, end, " ") ||
	    !program(&p, end, &r->program))
		return PFLOG_MALFORMED;
	if (!memchr(r->program.p, '/', r->program.n))
		return PFLOG_FOREIGN;
	postfix = r->program.n >= 7 && memcmp(r->program.p, "postfix", 7) == 0;
	/* "QUEUEID: to=<": short ids are hex, long ones base 52 with a 'z'. */
	qid = p;
	while (p < end && ((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') ||
	                   (*p >= 'a' && *p <= 'z')))
		p++;
	if (p - qid < 5 || p - qid > 32 || !lit(&p, end, ": to=<"))
		return postfix ? PFLOG_OTHER : PFLOG_FOREIGN;
	r->queue_id.p = qid;
	r->queue_id.n = (size_t)(p - qid - strlen(": to=<"));
	d = daemon_name(r->program);
	if (!delivery(p, end, r))
		return PFLOG_MALFORMED;
	if (span_is(d, "discard"))
		return PFLOG_OTHER;
	return PFLOG_DELIVERY;
}

size_t pflog_time_parse(const char *s, size_t n, struct pflog_time *t)
{
	const char *p = s, *end = s + n;

	memset(t, 0, sizeof(*t));
	if (!rfc3339(&p, end, t) && !bsd_time(&p, end, t))
		return 0;
	return (size_t)(p - s);
}

/* ---- time ---- */

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int mdays(int y, int m)
{
	static const int d[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && leap(y) ? 29 : d[m - 1];
}

static int64_t local_ms(const struct pflog_time *t, int year)
{
	struct tm tm = { 0 };
	time_t s;

	tm.tm_year = year - 1900;
	tm.tm_mon = t->mon - 1;
	tm.tm_mday = t->mday;
	tm.tm_hour = t->hour;
	tm.tm_min = t->min;
	tm.tm_sec = t->sec;
	tm.tm_isdst = -1;
	s = mktime(&tm);
	return (int64_t)s * 1000 + t->usec / 1000;
}

int pflog_time_ms(const struct pflog_time *t, int64_t ref_ms, int64_t *ms)
{
	if (t->mon < 1 || t->mon > 12 || t->mday < 1)
		return -1;
	if (t->year) {
		struct tm tm = { 0 };

		if (t->mday > mdays(t->year, t->mon))
			return -1;
		tm.tm_year = t->year - 1900;
		tm.tm_mon = t->mon - 1;
		tm.tm_mday = t->mday;
		tm.tm_hour = t->hour;
		tm.tm_min = t->min;
		tm.tm_sec = t->sec;
		*ms = ((int64_t)timegm(&tm) - (int64_t)t->off_min * 60) * 1000 + t->usec / 1000;
		return 0;
	}
	time_t rs = (time_t)(ref_ms / 1000);
	struct tm rt;

	if (!localtime_r(&rs, &rt))
		return -1;
	/* The latest year that puts the line no later than a day after ref. */
	for (int y = rt.tm_year + 1900 + 1; y >= rt.tm_year + 1900 - 8; y--) {
		int64_t v;

		if (t->mday > mdays(y, t->mon))
			continue;
		v = local_ms(t, y);
		if (v <= ref_ms + 86400000) {
			*ms = v;
			return 0;
		}
	}
	return -1;
}
