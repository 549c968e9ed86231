/*
 * NAME
 *	ctl_survey_read - the survey's reading of past mail logs
 * SUMMARY
 *	Part of "hikyakuctl suppression survey" (ctl/ctl_survey_int.h; what
 *	counts as a failure or a delivery is told in ctl/ctl_survey.h). Each
 *	file, plain or gzip (zlib), line by line with a bound on a line;
 *	Postfix lines parsed by ctl/postfix_log.c, hikyaku's own lines by
 *	jansson (the plain "delivered" ones without parsing); per bounced
 *	address its failure lines (a line read twice counts once), per
 *	delivered address only a hash and the time of its latest delivery;
 *	then the rows: the failures after each address's latest delivery.
 * TOUCHES
 *	The log files it is given (read only), stdin for "-"; stderr.
 */
#include "ctl/ctl_survey_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ctl/postfix_log.h"
#include "util/clock.h"

#define READ_CHUNK ((size_t)1 << 20)
#define RESPONSE_KEEP 1000                 /* bytes of a response kept (and imported) */
#define ADDRESS_MAX 1024                   /* a longer "address" is a malformed record */

/* ---------------------------------------------------------------- */
/* Keys                                                             */
/* ---------------------------------------------------------------- */

/* FNV-1a, 64 bits, then a finalizer (splitmix64) for the table's bits. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The address in ASCII lower case (SPEC §6.1: compared so), as a new string. */
char *survey_fold(const char *p, size_t n)
{
	char *s = g_malloc(n + 1);

	for (size_t i = 0; i < n; i++)
		s[i] = p[i] >= 'A' && p[i] <= 'Z' ? (char)(p[i] + 32) : p[i];
	s[n] = '\0';
	return s;
}

static uint64_t addr_hash(const char *folded, size_t n)
{
	uint64_t h = mix(fnv(FNV_INIT, folded, n));

	return h ? h : 1;
}

static void dtab_put(struct dtab *t, uint64_t h, int64_t ts);

static void dtab_grow(struct dtab *t)
{
	struct dtab o = *t;

	t->cap = o.cap ? o.cap * 2 : 1024;
	t->key = g_malloc0(t->cap * sizeof(*t->key));
	t->ts = g_malloc(t->cap * sizeof(*t->ts));
	t->n = 0;
	for (size_t i = 0; i < o.cap; i++)
		if (o.key[i])
			dtab_put(t, o.key[i], o.ts[i]);
	g_free(o.key);
	g_free(o.ts);
}

static void dtab_put(struct dtab *t, uint64_t h, int64_t ts)
{
	size_t i;

	if ((t->n + 1) * 2 > t->cap)
		dtab_grow(t);
	for (i = h & (t->cap - 1); t->key[i] && t->key[i] != h; i = (i + 1) & (t->cap - 1))
		;
	if (!t->key[i]) {
		t->key[i] = h;
		t->ts[i] = ts;
		t->n++;
	} else if (ts > t->ts[i]) {
		t->ts[i] = ts;
	}
}

static bool dtab_get(const struct dtab *t, uint64_t h, int64_t *ts)
{
	if (!t->cap)
		return false;
	for (size_t i = h & (t->cap - 1); t->key[i]; i = (i + 1) & (t->cap - 1))
		if (t->key[i] == h) {
			*ts = t->ts[i];
			return true;
		}
	return false;
}

/* ---------------------------------------------------------------- */
/* The bounced addresses                                            */
/* ---------------------------------------------------------------- */

static int failure_cmp(const void *a, const void *b)
{
	const struct failure *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->ts < y->ts ? -1 : x->ts > y->ts;
}

/*
 * Drops the lines read twice: the same key (the key of a Postfix line
 * holds its time to the second, so that the rsyslog copy of a
 * maillog_file line, which has a fraction, is the same line).
 */
static void addr_compact(struct addr *a)
{
	size_t o = 0;

	qsort(a->v, a->n, sizeof(*a->v), failure_cmp);
	for (size_t i = 0; i < a->n; i++)
		if (o == 0 || a->v[o - 1].key != a->v[i].key)
			a->v[o++] = a->v[i];
	a->n = o;
	a->compacted = o;
}

void survey_addr_free(gpointer p)
{
	struct addr *a = p;

	g_free(a->display);
	g_free(a->status);
	g_free(a->response);
	g_free(a->v);
	g_free(a);
}

/* SPEC §6.1: 5.1.x (bad mailbox or destination) and 5.2.1 (disabled). */
static bool learnable(const char *st, size_t n)
{
	return pflog_dsn_valid(st, n) && st[0] == '5' &&
	       ((st[2] == '1' && st[3] == '.') || (n == 5 && memcmp(st, "5.2.1", 5) == 0));
}

static void note_delivery(struct survey *s, const char *to, size_t n, int64_t ts)
{
	char *f = survey_fold(to, n);

	dtab_put(&s->delivered, addr_hash(f, strlen(f)), ts);
	g_free(f);
}

/* At most RESPONSE_KEEP bytes, cut on a UTF-8 character boundary. */
static size_t keep_len(const char *p, size_t n)
{
	if (n <= RESPONSE_KEEP)
		return n;
	n = RESPONSE_KEEP;
	while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80)
		n--;
	return n;
}

static void note_failure(struct survey *s, const char *to, size_t n, int64_t ts, uint64_t key,
                         const char *status, size_t status_n, const char *resp, size_t resp_n)
{
	char *f = survey_fold(to, n);
	struct addr *a = g_hash_table_lookup(s->addrs, f);

	if (!a) {
		a = g_new0(struct addr, 1);
		g_hash_table_insert(s->addrs, f, a);
	} else {
		g_free(f);
	}
	if (a->n == a->cap) {
		if (a->n >= 16 && a->n >= a->compacted * 2)
			addr_compact(a);
		if (a->n == a->cap) {
			a->cap = a->cap ? a->cap * 2 : 2;
			a->v = g_renew(struct failure, a->v, a->cap);
		}
	}
	a->v[a->n++] = (struct failure){ ts, key };
	/* The latest failure names the row: by time, then by key, so that
	 * the order the files are read in does not matter. */
	if (!a->display || ts > a->last_ts || (ts == a->last_ts && key > a->last_key)) {
		g_free(a->display);
		g_free(a->status);
		g_free(a->response);
		a->display = g_strndup(to, n);
		a->status = g_strndup(status, status_n);
		a->response = resp ? g_strndup(resp, keep_len(resp, resp_n)) : NULL;
		a->last_ts = ts;
		a->last_key = key;
		a->file = s->file;
	}
}

/* ---------------------------------------------------------------- */
/* Lines                                                            */
/* ---------------------------------------------------------------- */

static int line_time(struct survey *s, const struct pflog_time *t, int64_t *ms)
{
	struct hour_cache *c = &s->hc;

	if (t->zoned)
		return pflog_time_ms(t, s->ref_ms, ms);
	if (!c->valid || c->mon != t->mon || c->mday != t->mday || c->hour != t->hour ||
	    c->ref_ms != s->ref_ms) {
		struct pflog_time h = *t;

		h.min = h.sec = h.usec = 0;
		c->rc = pflog_time_ms(&h, s->ref_ms, &c->base_ms);
		c->valid = true;
		c->mon = t->mon;
		c->mday = t->mday;
		c->hour = t->hour;
		c->ref_ms = s->ref_ms;
	}
	if (c->rc < 0)
		return -1;
	*ms = c->base_ms + (int64_t)(t->min * 60 + t->sec) * 1000 + t->usec / 1000;
	return 0;
}

static void postfix_line(struct survey *s, const char *line, size_t len)
{
	struct pflog_record r;
	int64_t ts;
	uint64_t key;

	switch (pflog_parse(line, len, &r)) {
	case PFLOG_OTHER: s->c.other++; return;
	case PFLOG_FOREIGN: s->c.foreign++; return;
	case PFLOG_MALFORMED: s->c.malformed++; return;
	case PFLOG_DELIVERY: break;
	}
	if (r.to.n > ADDRESS_MAX || line_time(s, &r.time, &ts) < 0) {
		s->c.malformed++;
		return;
	}
	s->c.records++;
	if (ts < s->since_ms) {
		s->c.old++;
		return;
	}
	/* SPEC §8: the LAST outcome decides. A delivery, an expiry or a
	 * permanent failure of another kind (5.7.1 policy, 5.0.0 without an
	 * enhanced code) is an outcome that is no learnable bounce: it clears
	 * the failures before it. A deferral is no outcome (the mail is still
	 * pending) and changes nothing. */
	if (r.st == PFLOG_SENT || r.st == PFLOG_EXPIRED ||
	    (r.st == PFLOG_BOUNCED && !learnable(r.dsn.p, r.dsn.n))) {
		note_delivery(s, r.to.p, r.to.n, ts);
		return;
	}
	if (r.st != PFLOG_BOUNCED)
		return;
	/* What identifies the line: its time to the second (the same line
	 * in the rsyslog copy has a fraction the other has not), the queue
	 * id, the status. The address is the entry's. */
	int64_t sec = ts / 1000;
	key = fnv(FNV_INIT, "P", 1);
	key = fnv(key, &sec, sizeof(sec));
	key = fnv(key, r.queue_id.p, r.queue_id.n);
	key = fnv(key, r.dsn.p, r.dsn.n);
	note_failure(s, r.to.p, r.to.n, ts, key, r.dsn.p, r.dsn.n, r.response.p, r.response.n);
}

/* RFC 3339 (SPEC §7) to Unix milliseconds; -1 when s is not one. */
static int rfc3339_ms(const char *s, int64_t *ms)
{
	struct pflog_time t;
	size_t n = strlen(s);

	if (pflog_time_parse(s, n, &t) != n || !t.year)
		return -1;
	return pflog_time_ms(&t, 0, ms);
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/*
 * The value of the string member KEY of a compact JSON line (pat is
 * "\"KEY\":\""), without parsing it: only when written plainly, without
 * an escape. A quote inside a string value is always escaped, so the
 * pattern cannot start inside one.
 */
static bool raw_field(const char *line, size_t len, const char *pat, const char **v, size_t *vn)
{
	size_t pn = strlen(pat);
	const char *p = memmem(line, len, pat, pn), *e;

	if (!p)
		return false;
	p += pn;
	for (e = p; e < line + len && *e != '"'; e++)
		if (*e == '\\')
			return false;
	if (e == line + len)
		return false;
	*v = p;
	*vn = (size_t)(e - p);
	return true;
}

static void hikyaku_line(struct survey *s, const char *line, size_t len)
{
	const char *ev, *ts_s, *to, *status, *qid;
	size_t evn;
	json_t *o;
	int64_t ts;
	uint64_t key;
	bool delivered = false, bounced = false, learned = false;

	/* Most lines are "received" and "delivered": not parsed at all
	 * when their fields are written plainly (util/eventlog.c writes
	 * compact JSON). */
	if (raw_field(line, len, "\"event\":\"", &ev, &evn)) {
		const char *v, *t;
		size_t vn, tn;
		char tsbuf[40];

		delivered = evn == 9 && memcmp(ev, "delivered", 9) == 0;
		bounced = evn == 7 && memcmp(ev, "bounced", 7) == 0;
		learned = evn == 7 && memcmp(ev, "learned", 7) == 0;
		/* an expiry is an outcome that clears, as a delivery does */
		delivered |= evn == 7 && memcmp(ev, "expired", 7) == 0;
		if (!delivered && !bounced && !learned) {
			s->c.other++;
			return;
		}
		if (delivered && raw_field(line, len, "\"ts\":\"", &t, &tn) && tn < sizeof(tsbuf) &&
		    raw_field(line, len, "\"to\":\"", &v, &vn) && vn > 0 && vn <= ADDRESS_MAX) {
			memcpy(tsbuf, t, tn);
			tsbuf[tn] = '\0';
			if (rfc3339_ms(tsbuf, &ts) == 0) {
				s->c.records++;
				if (ts < s->since_ms)
					s->c.old++;
				else
					note_delivery(s, v, vn, ts);
				return;
			}
		}
	}
	o = json_loadb(line, len, 0, NULL);
	ev = jstr(o, "event");
	ts_s = jstr(o, "ts");
	to = jstr(o, "to");
	if (!json_is_object(o) || !ev || !ts_s || rfc3339_ms(ts_s, &ts) < 0) {
		s->c.malformed++;
		json_decref(o);
		return;
	}
	delivered = strcmp(ev, "delivered") == 0 || strcmp(ev, "expired") == 0;
	bounced = strcmp(ev, "bounced") == 0;
	learned = strcmp(ev, "learned") == 0;
	if (!delivered && !bounced && !learned) {
		s->c.other++;
		json_decref(o);
		return;
	}
	if (!to || !*to || strlen(to) > ADDRESS_MAX) {
		s->c.malformed++;
		json_decref(o);
		return;
	}
	/* "learned" from a delivery comes with its "bounced" event; from an
	 * administrator or an import it is no outcome of a mail. */
	if (learned && !(jstr(o, "source") && strcmp(jstr(o, "source"), "dsn") == 0)) {
		s->c.other++;
		json_decref(o);
		return;
	}
	s->c.records++;
	if (ts < s->since_ms) {
		s->c.old++;
		json_decref(o);
		return;
	}
	if (delivered) {
		note_delivery(s, to, strlen(to), ts);
		json_decref(o);
		return;
	}
	status = jstr(o, "status");
	if (status && learnable(status, strlen(status))) {
		const char *resp = jstr(o, "response");

		qid = jstr(o, "queue_id");
		key = fnv(FNV_INIT, ev, strlen(ev));
		key = fnv(key, &ts, sizeof(ts));
		if (qid)
			key = fnv(key, qid, strlen(qid));
		key = fnv(key, status, strlen(status));
		note_failure(s, to, strlen(to), ts, key, status, strlen(status), resp,
		             resp ? strlen(resp) : 0);
	} else if (bounced) {
		note_delivery(s, to, strlen(to), ts);   /* another permanent failure: clears */
	}
	json_decref(o);
}

static void handle_line(struct survey *s, const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	s->c.lines++;
	if (len == 0) {
		s->c.other++;
		return;
	}
	if (line[0] == '{')
		hikyaku_line(s, line, len);
	else
		postfix_line(s, line, len);
}

/*
 * Reads one file (plain or gzip: zlib's gzread reads both, and
 * concatenated members) line by line. Returns 0, or -1 after printing why
 * the file could not be read to its end.
 */
int survey_read_file(struct survey *s, const char *name, char *buf)
{
	bool is_stdin = strcmp(name, "-") == 0;
	int fd = is_stdin ? dup(0) : open(name, O_RDONLY | O_CLOEXEC);
	struct stat st = { 0 };
	size_t have = 0;
	bool skipping = false;
	gzFile gz;

	if (fd < 0) {
		fprintf(stderr, "hikyakuctl: cannot read %s: %s.\n", name, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0)
		memset(&st, 0, sizeof(st));
	if (S_ISDIR(st.st_mode)) {
		fprintf(stderr, "hikyakuctl: cannot read %s: it is a directory.\n", name);
		close(fd);
		return -1;
	}
	s->ref_ms = !is_stdin && S_ISREG(st.st_mode) ?
	            (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000 :
	            (int64_t)clock_now_ms();
	gz = gzdopen(fd, "rb");
	if (!gz) {
		fprintf(stderr, "hikyakuctl: cannot read %s: out of memory.\n", name);
		close(fd);
		return -1;
	}
	gzbuffer(gz, 256 * 1024);
	for (;;) {
		int n = gzread(gz, buf + have, (unsigned)(LINE_MAX_BYTES - have > READ_CHUNK ?
		                                          READ_CHUNK : LINE_MAX_BYTES - have));
		size_t start = 0;
		char *nl;

		if (n < 0) {
			int zerr;
			const char *msg = gzerror(gz, &zerr);

			fprintf(stderr, "hikyakuctl: cannot read %s: %s.\n", name,
			        zerr == Z_ERRNO ? strerror(errno) : msg);
			gzclose(gz);
			return -1;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		while ((nl = memchr(buf + start, '\n', have - start))) {
			size_t len = (size_t)(nl - (buf + start));

			if (skipping)
				skipping = false;
			else
				handle_line(s, buf + start, len);
			start += len + 1;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		if (have == LINE_MAX_BYTES) {
			if (!skipping) {
				s->c.lines++;
				s->c.malformed++;
			}
			skipping = true;
			have = 0;
		}
	}
	/* A gzip file cut short reads as its end: zlib says so only here. */
	int zerr = Z_OK;
	const char *msg = gzerror(gz, &zerr);
	if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
		fprintf(stderr, "hikyakuctl: cannot read %s: %s.\n", name, msg);
		gzclose(gz);
		return -1;
	}
	if (zerr == Z_BUF_ERROR) {
		fprintf(stderr, "hikyakuctl: cannot read %s: the compressed data ends early "
		        "(a truncated .gz file).\n", name);
		gzclose(gz);
		return -1;
	}
	if (have > 0 && !skipping)
		handle_line(s, buf, have);
	gzclose(gz);
	return 0;
}

/* ---------------------------------------------------------------- */
/* The rows                                                         */
/* ---------------------------------------------------------------- */

static int row_cmp(const void *x, const void *y)
{
	return strcmp(((const struct row *)x)->folded, ((const struct row *)y)->folded);
}

/* The failures after each address's latest delivery, one row an address. */
struct row *survey_rows(struct survey *s, size_t *nrows, size_t *failures)
{
	GHashTableIter it;
	gpointer k, v;
	struct row *rows = g_new(struct row, g_hash_table_size(s->addrs) + 1);

	*nrows = *failures = 0;
	g_hash_table_iter_init(&it, s->addrs);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		const char *f = k;
		struct addr *a = v;
		int64_t dts = INT64_MIN;
		size_t count = 0;
		int64_t first = 0;

		dtab_get(&s->delivered, addr_hash(f, strlen(f)), &dts);
		if (a->last_ts <= dts)
			continue;
		addr_compact(a);
		for (size_t j = 0; j < a->n; j++)
			if (a->v[j].ts > dts) {
				if (!count || a->v[j].ts < first)
					first = a->v[j].ts;
				count++;
			}
		rows[(*nrows)++] = (struct row){ f, a, first, count };
		*failures += count;
	}
	qsort(rows, *nrows, sizeof(*rows), row_cmp);
	return rows;
}
