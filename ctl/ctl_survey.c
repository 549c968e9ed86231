/*
 * ctl_survey - the survey subcommand of hikyakuctl. See ctl_survey.h.
 * Postfix lines are parsed by ctl/postfix_log.c, hikyaku's own lines by
 * jansson; this file keeps the outcomes per address, prints, and imports
 * through the store's CSV import (relay/suppression.h), which keeps a
 * row's times and count and writes every row in one transaction.
 */
#include "ctl/ctl_survey.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "config/config.h"
#include "ctl/postfix_log.h"
#include "relay/suppression.h"
#include "util/clock.h"
#include "util/eventlog.h"

#define READ_CHUNK ((size_t)1 << 20)
#define LINE_MAX_BYTES ((size_t)1 << 20)   /* longer lines are malformed */
#define RESPONSE_COLUMNS 60
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
static char *fold(const char *p, size_t n)
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

/*
 * The delivered addresses: hash of the folded address -> time of the
 * latest delivery. Open addressing, 16 bytes a slot, half full at most:
 * this is the table that grows with the shop's good recipients, so it
 * keeps no strings.
 */
struct dtab {
	uint64_t *key;          /* 0: empty */
	int64_t *ts;
	size_t cap, n;
};

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

/* One failure line: its time and a digest of what identifies the line. */
struct failure {
	int64_t ts;
	uint64_t key;
};

struct addr {
	char *display;          /* the spelling of the latest failure */
	char *status;           /* ... its enhanced status */
	char *response;         /* ... its response (NULL: none) */
	int64_t last_ts;
	uint64_t last_key;
	unsigned file;          /* ... the file it was read from */
	struct failure *v;
	size_t n, cap, compacted;
};

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

static void addr_free(gpointer p)
{
	struct addr *a = p;

	g_free(a->display);
	g_free(a->status);
	g_free(a->response);
	g_free(a->v);
	g_free(a);
}

struct counts {
	unsigned long lines, records, other, foreign, malformed, old;
};

/*
 * mktime() asks the time zone file each time (glibc stats /etc/localtime
 * when TZ is unset): a 1 GB log would spend seconds in the kernel. The
 * local time of the hour a line falls in is kept instead.
 */
struct hour_cache {
	bool valid;
	int rc;
	int mon, mday, hour;
	int64_t ref_ms, base_ms;
};

struct survey {
	GHashTable *addrs;      /* folded address -> struct addr */
	struct hour_cache hc;
	struct dtab delivered;
	int64_t since_ms;       /* INT64_MIN: no --since */
	struct counts c;
	unsigned file;          /* index of the file being read */
	int64_t ref_ms;         /* its modification time (year inference) */
};

/* SPEC §6.1: 5.1.x (bad mailbox or destination) and 5.2.1 (disabled). */
static bool learnable(const char *st, size_t n)
{
	return pflog_dsn_valid(st, n) && st[0] == '5' &&
	       ((st[2] == '1' && st[3] == '.') || (n == 5 && memcmp(st, "5.2.1", 5) == 0));
}

static void note_delivery(struct survey *s, const char *to, size_t n, int64_t ts)
{
	char *f = fold(to, n);

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
	char *f = fold(to, n);
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
static int read_file(struct survey *s, const char *name, char *buf)
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
/* Output                                                           */
/* ---------------------------------------------------------------- */

struct row {
	const char *folded;
	struct addr *a;
	int64_t first_ts;
	size_t count;
};

static int row_cmp(const void *x, const void *y)
{
	return strcmp(((const struct row *)x)->folded, ((const struct row *)y)->folded);
}

/*
 * Text fit for a terminal (SPEC §8): printable characters as they are;
 * \t \n \r \\ and \xNN for other control characters, DEL and bytes that
 * are not UTF-8; \uNNNN for the C1 controls (U+0080..U+009F, which some
 * terminals obey). At most max characters (0: no limit), "..." when cut.
 */
static char *term_text(const char *s, size_t max)
{
	GString *g = g_string_new(NULL);
	const char *p = s ? s : "", *end = p + strlen(p);
	size_t chars = 0;

	if (!*p)
		g_string_append(g, "-");
	while (p < end) {
		gunichar c = g_utf8_get_char_validated(p, end - p);

		if (max && chars >= max) {
			g_string_append(g, "...");
			break;
		}
		if (c == (gunichar)-1 || c == (gunichar)-2) {
			g_string_append_printf(g, "\\x%02x", (unsigned char)*p);
			p++;
		} else if (c < 0x20 || c == 0x7f) {
			if (c == '\t')
				g_string_append(g, "\\t");
			else if (c == '\n')
				g_string_append(g, "\\n");
			else if (c == '\r')
				g_string_append(g, "\\r");
			else
				g_string_append_printf(g, "\\x%02x", (unsigned)c);
			p++;
		} else if (c >= 0x80 && c <= 0x9f) {
			g_string_append_printf(g, "\\u%04x", (unsigned)c);
			p = g_utf8_next_char(p);
		} else if (c == '\\') {
			g_string_append(g, "\\\\");
			p++;
		} else {
			const char *n = g_utf8_next_char(p);

			g_string_append_len(g, p, n - p);
			p = n;
		}
		chars++;
	}
	return g_string_free(g, FALSE);
}

/* Terminal columns of valid UTF-8 (wide characters count 2). */
static size_t columns(const char *s)
{
	size_t w = 0;

	for (; *s; s = g_utf8_next_char(s))
		w += g_unichar_iswide(g_utf8_get_char(s)) ? 2 : 1;
	return w;
}

static void local_time(int64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000 - (ms % 1000 < 0));
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(out, cap, "?");
}

static void utc_time(int64_t ms, char *out, size_t cap)
{
	if (clock_rfc3339(ms, out, cap) < 0)
		snprintf(out, cap, "?");
}

#define NCOLS 6

static void print_cells(char *const *col, const size_t *width)
{
	for (int c = 0; c < NCOLS; c++) {
		fputs(col[c], stdout);
		if (c == NCOLS - 1)
			break;
		for (size_t w = columns(col[c]); w < width[c] + 2; w++)
			putchar(' ');
	}
	putchar('\n');
}

static void print_table(const struct row *rows, size_t n, size_t failures)
{
	static const char *const head[NCOLS] = {
		"ADDRESS", "FAILURES", "FIRST", "LAST", "STATUS", "LAST RESPONSE",
	};
	size_t width[NCOLS];
	char *(*cells)[NCOLS] = g_malloc0((n ? n : 1) * sizeof(*cells));

	for (int c = 0; c < NCOLS; c++)
		width[c] = strlen(head[c]);
	for (size_t i = 0; i < n; i++) {
		char t[32];

		cells[i][0] = term_text(rows[i].a->display, 0);
		cells[i][1] = g_strdup_printf("%zu", rows[i].count);
		local_time(rows[i].first_ts, t, sizeof(t));
		cells[i][2] = g_strdup(t);
		local_time(rows[i].a->last_ts, t, sizeof(t));
		cells[i][3] = g_strdup(t);
		cells[i][4] = term_text(rows[i].a->status, 0);
		cells[i][5] = term_text(rows[i].a->response, RESPONSE_COLUMNS);
		for (int c = 0; c < NCOLS; c++) {
			size_t w = columns(cells[i][c]);

			if (w > width[c])
				width[c] = w;
		}
	}
	if (n) {
		print_cells((char *const *)head, width);
		for (size_t i = 0; i < n; i++)
			print_cells(cells[i], width);
		printf("total: %zu address%s would be suppressed (%zu failure%s)\n", n,
		       n == 1 ? "" : "es", failures, failures == 1 ? "" : "s");
	} else {
		printf("total: no address in these logs would be suppressed\n");
	}
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < NCOLS; c++)
			g_free(cells[i][c]);
	g_free(cells);
}

/*
 * jansson escapes the C0 controls but writes DEL and the C1 controls
 * (U+0080..U+009F, which some terminals obey) as they are: escaped here.
 * They occur inside strings only, so the text stays the same JSON.
 */
static void put_json(const char *text)
{
	GString *g = g_string_sized_new(strlen(text) + 16);

	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (*p == 0x7f)
			g_string_append(g, "\\u007f");
		else if (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F)
			g_string_append_printf(g, "\\u%04x", (unsigned)p[1]), p++;
		else
			g_string_append_c(g, (char)*p);
	}
	puts(g->str);
	g_string_free(g, TRUE);
}

static json_t *json_text(const char *s)
{
	return s ? evlog_str(s, strlen(s)) : json_null();
}

static json_t *rows_json(const struct row *rows, size_t n, size_t failures, char **files,
                         int nfiles, const struct counts *c)
{
	json_t *o = json_object(), *arr = json_array(), *lines = json_object(), *fs = json_array();

	for (size_t i = 0; i < n; i++) {
		json_t *r = json_object();
		char t[40];

		json_object_set_new(r, "address", json_text(rows[i].a->display));
		json_object_set_new(r, "count", json_integer((json_int_t)rows[i].count));
		utc_time(rows[i].first_ts, t, sizeof(t));
		json_object_set_new(r, "first", json_string(t));
		utc_time(rows[i].a->last_ts, t, sizeof(t));
		json_object_set_new(r, "last", json_string(t));
		json_object_set_new(r, "status", json_text(rows[i].a->status));
		json_object_set_new(r, "response", json_text(rows[i].a->response));
		json_object_set_new(r, "file", json_text(files[rows[i].a->file]));
		json_array_append_new(arr, r);
	}
	for (int i = 0; i < nfiles; i++)
		json_array_append_new(fs, json_text(files[i]));
	json_object_set_new(o, "addresses", arr);
	json_object_set_new(o, "total", json_integer((json_int_t)n));
	json_object_set_new(o, "failures", json_integer((json_int_t)failures));
	json_object_set_new(o, "files", fs);
	json_object_set_new(lines, "read", json_integer((json_int_t)c->lines));
	json_object_set_new(lines, "records", json_integer((json_int_t)c->records));
	json_object_set_new(lines, "before_since", json_integer((json_int_t)c->old));
	json_object_set_new(lines, "other", json_integer((json_int_t)c->other));
	json_object_set_new(lines, "foreign", json_integer((json_int_t)c->foreign));
	json_object_set_new(lines, "malformed", json_integer((json_int_t)c->malformed));
	json_object_set_new(o, "lines", lines);
	return o;
}

/* ---------------------------------------------------------------- */
/* Import                                                           */
/* ---------------------------------------------------------------- */

static void csv_field(GString *g, const char *s)
{
	const char *p;

	if (!s)
		s = "";
	if (!strpbrk(s, ",\"\r\n")) {
		g_string_append(g, s);
		return;
	}
	g_string_append_c(g, '"');
	for (p = s; *p; p++) {
		if (*p == '"')
			g_string_append_c(g, '"');
		g_string_append_c(g, *p);
	}
	g_string_append_c(g, '"');
}

struct import_state {
	struct evlog *log;
	GHashTable *by_folded;  /* folded address -> struct row */
	long fresh;
};

static void import_new(void *arg, const char *address)
{
	struct import_state *is = arg;
	char *f = fold(address, strlen(address));
	const struct row *r = g_hash_table_lookup(is->by_folded, f);
	g_free(f);
	is->fresh++;
	evlog_learned(is->log, address, "import", r ? r->a->status : NULL, r ? r->a->response : NULL);
}

struct import_result {
	long fresh, listed, invalid;
};

/* Returns 0 or 2 (after printing the error). */
static int import_rows(const struct config *cfg, const struct row *rows, size_t n,
                       struct import_result *res)
{
	struct import_state is = { 0 };
	GString *csv = g_string_new("address,reason,status,response,first_seen,last_seen,count\n");
	const char *db = cfg->suppression.db;
	struct supp *s = NULL;
	long err_line = 0;
	char err[256] = "";
	size_t todo = 0;
	int rc, status = 0;

	memset(res, 0, sizeof(*res));
	if (!db || !*db) {
		fprintf(stderr, "hikyakuctl: no suppression database is configured "
		        "([suppression] db).\n");
		g_string_free(csv, TRUE);
		return 2;
	}
	rc = supp_open(db, &s);
	if (rc < 0) {
		fprintf(stderr, "hikyakuctl: cannot open the suppression list %s: %s.\n", db,
		        supp_strerror(rc));
		g_string_free(csv, TRUE);
		return 2;
	}
	is.by_folded = g_hash_table_new(g_str_hash, g_str_equal);
	for (size_t i = 0; i < n; i++) {
		const struct addr *a = rows[i].a;
		char first[40], last[40], count[24];

		if (!supp_address_valid(a->display)) {
			res->invalid++;
			continue;
		}
		rc = supp_lookup(s, a->display, NULL);
		if (rc < 0) {
			fprintf(stderr, "hikyakuctl: cannot read the suppression list: %s.\n",
			        supp_strerror(rc));
			status = 2;
			goto out;
		}
		if (rc == 1) {
			res->listed++;
			continue;
		}
		g_hash_table_insert(is.by_folded, (gpointer)rows[i].folded, (gpointer)&rows[i]);
		utc_time(rows[i].first_ts, first, sizeof(first));
		utc_time(a->last_ts, last, sizeof(last));
		snprintf(count, sizeof(count), "%zu", rows[i].count);
		csv_field(csv, a->display);
		g_string_append_c(csv, ',');
		csv_field(csv, "bounced");
		g_string_append_c(csv, ',');
		csv_field(csv, a->status);
		g_string_append_c(csv, ',');
		csv_field(csv, a->response);
		g_string_append_printf(csv, ",%s,%s,%s\n", first, last, count);
		todo++;
	}
	if (todo) {
		FILE *in = fmemopen(csv->str, csv->len, "r");

		if (!in) {
			fprintf(stderr, "hikyakuctl: out of memory.\n");
			status = 2;
			goto out;
		}
		if (evlog_open(cfg->log.file, &is.log) < 0)
			is.log = NULL;  /* the list still works; the events are not logged */
		rc = supp_import_csv_cb(s, in, "import", (int64_t)clock_now_ms(), import_new, &is,
		                        &err_line, err, sizeof(err));
		fclose(in);
		evlog_close(is.log);
		if (rc < 0) {
			fprintf(stderr, "hikyakuctl: cannot add the addresses to the suppression list: "
			        "%s; nothing was imported.\n", *err ? err : supp_strerror(rc));
			status = 2;
			goto out;
		}
		res->fresh = is.fresh;
		/* Listed meanwhile (by the daemon): counted as listed. */
		res->listed += (long)todo - is.fresh;
	}
out:
	g_hash_table_destroy(is.by_folded);
	supp_close(s);
	g_string_free(csv, TRUE);
	return status;
}

/* ---------------------------------------------------------------- */
/* The command                                                      */
/* ---------------------------------------------------------------- */

static void usage(FILE *fp)
{
	fprintf(fp, "usage: hikyakuctl suppression survey [FILE ...] [--since DUR] [--import] [--json]\n"
	            "  Reads past mail logs (hikyaku's JSON lines, Postfix's syslog or\n"
	            "  maillog_file lines; plain or .gz; \"-\" is stdin; default: the [log]\n"
	            "  file) and lists the recipients whose last outcome was a permanent\n"
	            "  failure with 5.1.x or 5.2.1. --since DUR reads only the last DUR\n"
	            "  (30m, 12h, 90d); --import adds them to the suppression list.\n");
}

static int load_config(const char *path, struct config **cfg)
{
	struct config_diags diags = { 0 };
	int rc = config_load(path, cfg, &diags);

	for (size_t i = 0; i < diags.n; i++)
		if (!diags.v[i].warning || rc < 0)
			fprintf(stderr, "%s\n", diags.v[i].text);
	config_diags_free(&diags);
	return rc;
}

int ctl_survey(const char *config_path, int argc, char **argv)
{
	struct survey s = { .since_ms = INT64_MIN };
	struct config *cfg = NULL;
	bool json = false, do_import = false, options = true;
	char **files = g_new0(char *, (size_t)argc + 1);
	int nfiles = 0, status = 0;
	struct row *rows = NULL;
	size_t nrows = 0, failures = 0;
	struct import_result ir = { 0 };
	char *buf = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (options && strcmp(a, "--") == 0) {
			options = false;
		} else if (options && strcmp(a, "--json") == 0) {
			json = true;
		} else if (options && strcmp(a, "--import") == 0) {
			do_import = true;
		} else if (options && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
			usage(stdout);
			goto out;
		} else if (options && (strcmp(a, "--since") == 0 || strncmp(a, "--since=", 8) == 0)) {
			const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
			uint64_t ms;

			if (!v) {
				fprintf(stderr, "hikyakuctl: suppression survey: --since needs a value.\n");
				status = 2;
				goto out;
			}
			if (config_parse_duration(v, &ms) < 0 || ms > (uint64_t)INT64_MAX / 2) {
				fprintf(stderr, "hikyakuctl: suppression survey: --since \"%s\" is not a "
				        "duration (a number with s, m, h or d).\n", v);
				status = 2;
				goto out;
			}
			s.since_ms = (int64_t)clock_now_ms() - (int64_t)ms;
		} else if (options && a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "hikyakuctl: suppression survey: unknown option \"%s\"; "
			        "try hikyakuctl suppression survey --help.\n", a);
			status = 2;
			goto out;
		} else {
			files[nfiles++] = g_strdup(a);
		}
	}
	if (nfiles == 0 || do_import) {
		if (load_config(config_path, &cfg) < 0) {
			status = 2;
			goto out;
		}
	}
	if (nfiles == 0) {
		if (!cfg->log.file || !*cfg->log.file) {
			fprintf(stderr, "hikyakuctl: no log file is configured ([log] file); "
			        "name the log files to survey.\n");
			status = 2;
			goto out;
		}
		files[nfiles++] = g_strdup(cfg->log.file);
	}

	s.addrs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, addr_free);
	buf = g_malloc(LINE_MAX_BYTES);
	for (int i = 0; i < nfiles; i++) {
		s.file = (unsigned)i;
		if (read_file(&s, files[i], buf) < 0) {
			fprintf(stderr, "hikyakuctl: suppression survey stopped%s.\n",
			        do_import ? "; nothing was imported" : "");
			status = 2;
			goto out;
		}
	}

	/* The rows: failures after the latest delivery. */
	GHashTableIter it;
	gpointer k, v;
	rows = g_new(struct row, g_hash_table_size(s.addrs) + 1);
	g_hash_table_iter_init(&it, s.addrs);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		const char *f = k;
		struct addr *a = v;
		int64_t dts = INT64_MIN;
		size_t count = 0;
		int64_t first = 0;

		dtab_get(&s.delivered, addr_hash(f, strlen(f)), &dts);
		if (a->last_ts <= dts)
			continue;
		addr_compact(a);
		for (size_t j = 0; j < a->n; j++)
			if (a->v[j].ts > dts) {
				if (!count || a->v[j].ts < first)
					first = a->v[j].ts;
				count++;
			}
		rows[nrows++] = (struct row){ f, a, first, count };
		failures += count;
	}
	qsort(rows, nrows, sizeof(*rows), row_cmp);

	if (do_import && nrows) {
		status = import_rows(cfg, rows, nrows, &ir);
		if (status)
			goto out;
	}
	if (json) {
		json_t *o = rows_json(rows, nrows, failures, files, nfiles, &s.c);
		char *text;

		if (do_import) {
			json_t *im = json_object();

			json_object_set_new(im, "new", json_integer(ir.fresh));
			json_object_set_new(im, "already_listed", json_integer(ir.listed));
			json_object_set_new(im, "invalid", json_integer(ir.invalid));
			json_object_set_new(o, "import", im);
		}
		text = json_dumps(o, JSON_INDENT(2));
		json_decref(o);
		if (text)
			put_json(text);
		free(text);
	} else {
		print_table(rows, nrows, failures);
		if (do_import && nrows) {
			printf("imported: %ld new address%s added to the suppression list, "
			       "%ld already listed (not changed)", ir.fresh, ir.fresh == 1 ? "" : "es",
			       ir.listed);
			if (ir.invalid)
				printf(", %ld not valid mail addresses (not added)", ir.invalid);
			printf("\n");
		} else if (do_import) {
			printf("imported: nothing to add\n");
		}
	}
	fprintf(stderr, "hikyakuctl: read %lu line%s from %d file%s: %lu delivery record%s",
	        s.c.lines, s.c.lines == 1 ? "" : "s", nfiles, nfiles == 1 ? "" : "s",
	        s.c.records, s.c.records == 1 ? "" : "s");
	if (s.c.old)
		fprintf(stderr, " (%lu before --since)", s.c.old);
	fprintf(stderr, ", %lu other line%s; skipped %lu malformed and %lu foreign line%s.\n",
	        s.c.other, s.c.other == 1 ? "" : "s", s.c.malformed, s.c.foreign,
	        s.c.foreign == 1 ? "" : "s");
	if (fflush(stdout) != 0)
		status = 2;
	else if (!status)
		status = nrows ? 0 : 1;
out:
	g_free(rows);
	g_free(buf);
	if (s.addrs)
		g_hash_table_destroy(s.addrs);
	g_free(s.delivered.key);
	g_free(s.delivered.ts);
	for (int i = 0; i < nfiles; i++)
		g_free(files[i]);
	g_free(files);
	config_free(cfg);
	return status;
}
