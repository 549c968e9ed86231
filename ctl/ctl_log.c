/*
 * ctl_log - the log subcommand of hikyakuctl. See ctl_log.h. The log is
 * written by util/eventlog.c (compact JSON, keys in insertion order, ts
 * first, UTF-8 as is); this file only reads it.
 */
#include "util/clock.h"
#include "ctl/ctl_log.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "util/esc.h"

#define READ_CHUNK ((size_t)1 << 20)    /* one read() */
#define LINE_MAX_BYTES ((size_t)2 << 20) /* longer lines are malformed */
#define RESPONSE_COLUMNS 60
#define CHUNK_ROWS 4096                 /* table rows buffered per print */
#define FOLLOW_POLL_MS 200
#define NCOLS 7

static const char *const event_names[] = {
	"received", "delivered", "deferred", "bounced", "expired",
	"suppressed", "rejected", "deleted", "learned", "delayed",
};
#define NEVENTS (sizeof(event_names) / sizeof(event_names[0]))

struct filter {
	bool since_set;
	int64_t since_ms;               /* oldest ts kept, epoch ms */
	char since_ts[32];              /* the same as "YYYY-MM-DDTHH:MM:SS.mmmZ" */
	const char *queue_id;
	const char *to;
	const char *from;
	bool to_raw, from_raw;          /* may be looked for in the raw line */
	unsigned events;                /* bit i: event_names[i]; 0: all */
	GHashTable *from_ids;           /* queue ids received from --from */
};

struct row {
	char *col[NCOLS];
};

struct out {
	bool json;
	bool follow;
	bool header_done;
	size_t width[NCOLS];
	struct row *rows;
	size_t nrows;
	unsigned long malformed;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *fp)
{
	fprintf(fp, "usage: hikyakuctl log [--follow] [--json] [--since DUR] [--queue-id ID]\n"
	            "                      [--to ADDR] [--from ADDR] [--event EV[,EV...]]\n"
	            "events: received delivered deferred bounced expired suppressed rejected\n"
	            "        deleted learned\n");
}

/*
 * A needle can be looked for in the raw line only when the log writes it
 * byte for byte: jansson escapes '"', '\\' and control characters.
 */
static bool raw_searchable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || *s == 0x7f)
			return false;
	return true;
}

static int event_index(const char *name)
{
	for (size_t i = 0; i < NEVENTS; i++)
		if (strcmp(name, event_names[i]) == 0)
			return (int)i;
	return -1;
}

static bool add_events(struct filter *f, const char *list)
{
	char *copy = strdup(list), *save = NULL, *tok;
	bool ok = copy != NULL;

	for (tok = copy ? strtok_r(copy, ", ", &save) : NULL; tok; tok = strtok_r(NULL, ", ", &save)) {
		int i = event_index(tok);

		if (i < 0) {
			fprintf(stderr, "hikyakuctl: log: unknown event \"%s\" (one of received, "
			        "delivered, deferred, bounced, expired, suppressed, rejected, "
			        "deleted, learned, delayed).\n", esc_tmp(tok));
			ok = false;
			break;
		}
		f->events |= 1u << i;
	}
	free(copy);
	return ok;
}

/* "--name VALUE" or "--name=VALUE": the value, or NULL when arg is not --name. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
	size_t n = strlen(name);
	const char *arg = argv[*i];

	if (strncmp(arg, name, n) != 0)
		return NULL;
	if (arg[n] == '=')
		return arg + n + 1;
	if (arg[n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

static int parse_args(int argc, char **argv, struct filter *f, struct out *o)
{
	static const char *const valued[] = { "--since", "--queue-id", "--to", "--from", "--event" };

	for (int i = 1; i < argc; i++) {
		const char *v = NULL;
		bool missing = false;
		size_t k;

		if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0) {
			o->follow = true;
			continue;
		}
		if (strcmp(argv[i], "--json") == 0) {
			o->json = true;
			continue;
		}
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 1;
		}
		for (k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
			if ((v = opt_value(argc, argv, &i, valued[k], &missing)) || missing)
				break;
		if (missing) {
			fprintf(stderr, "hikyakuctl: log: %s needs a value.\n", valued[k]);
			return -1;
		}
		if (!v) {
			fprintf(stderr, "hikyakuctl: log: unknown argument \"%s\".\n", esc_tmp(argv[i]));
			usage(stderr);
			return -1;
		}
		switch (k) {
		case 0: {
			uint64_t ms;

			if (config_parse_duration(v, &ms) < 0 || ms > (uint64_t)INT64_MAX / 2) {
				fprintf(stderr, "hikyakuctl: log: --since \"%s\" is not a duration "
				        "(a number with s, m, h or d).\n", esc_tmp(v));
				return -1;
			}
			f->since_set = true;
			f->since_ms = (int64_t)clock_now_ms() - (int64_t)ms;
			if (f->since_ms < 0 || clock_rfc3339(f->since_ms, f->since_ts,
			                                     sizeof(f->since_ts)) < 0)
				f->since_ts[0] = '\0';
			break;
		}
		case 1: f->queue_id = v; break;
		case 2: f->to = v; break;
		case 3: f->from = v; break;
		case 4:
			if (!add_events(f, v))
				return -1;
			break;
		}
	}
	f->to_raw = f->to && raw_searchable(f->to);
	f->from_raw = f->from && raw_searchable(f->from);
	return 0;
}

/*
 * The value of the string member "key" in a compact JSON line, without
 * parsing it: only when written plainly (no escape). Returns its length
 * and sets *val, or -1.
 */
static ssize_t raw_field(const char *line, size_t len, const char *pat, size_t patlen,
                         const char **val)
{
	const char *p = memmem(line, len, pat, patlen), *end;
	size_t n;

	if (!p)
		return -1;
	p += patlen;
	end = line + len;
	for (n = 0; p + n < end && p[n] != '"'; n++)
		if (p[n] == '\\')
			return -1;
	if (p + n >= end)
		return -1;
	*val = p;
	return (ssize_t)n;
}

#define PAT(s) s, sizeof(s) - 1

/*
 * The cheap pre-filter: false when the line cannot match, decided from
 * its bytes. Every test errs on the side of parsing.
 */
static bool may_match(struct filter *f, const char *line, size_t len)
{
	const char *v, *qv;
	ssize_t n, qvn;

	/* A line with the --from address may be a "received" to remember.
	 * Written plainly, it is remembered here without parsing (a shop
	 * sends most of its mail from one address: these are most lines);
	 * then the other filters decide about the line itself. */
	if (f->from && (!f->from_raw || strcasestr(line, f->from))) {
		if (!f->from_raw || !memmem(line, len, PAT("\"event\":\"received\"")))
			return true;
		n = raw_field(line, len, PAT("\"from\":\""), &v);
		qvn = raw_field(line, len, PAT("\"queue_id\":\""), &qv);
		if (n < 0 || qvn <= 0 || qvn > 64)
			return true;
		if ((size_t)n == strlen(f->from) && strncasecmp(v, f->from, (size_t)n) == 0) {
			char id[65];
			memcpy(id, qv, (size_t)qvn);
			id[qvn] = '\0';
			if (!g_hash_table_contains(f->from_ids, id))
				g_hash_table_add(f->from_ids, g_strdup(id));
		}
	}
	if (f->queue_id && !memmem(line, len, f->queue_id, strlen(f->queue_id)))
		return false;
	if (f->to_raw && !strcasestr(line, f->to))
		return false;
	if (f->events) {
		bool any = false;

		for (size_t i = 0; i < NEVENTS && !any; i++) {
			char q[16];
			int qn;

			if (!(f->events & (1u << i)))
				continue;
			qn = snprintf(q, sizeof(q), "\"%s\"", event_names[i]);
			any = memmem(line, len, q, (size_t)qn) != NULL;
		}
		if (!any)
			return false;
	}
	if (f->since_set && f->since_ts[0] &&
	    (n = raw_field(line, len, PAT("\"ts\":\""), &v)) == 24 && v[23] == 'Z' &&
	    memcmp(v, f->since_ts, 24) < 0)
		return false;
	if (f->from && f->from_raw) {
		/* No from address in the line: only a queue id received from it. */
		char id[128];

		if (g_hash_table_size(f->from_ids) == 0)
			return false;
		n = raw_field(line, len, PAT("\"queue_id\":\""), &v);
		if (n >= 0 && (size_t)n < sizeof(id)) {
			memcpy(id, v, (size_t)n);
			id[n] = '\0';
			if (!g_hash_table_contains(f->from_ids, id))
				return false;
		}
	}
	return true;
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* "to" is a string; "deleted" may hold an array of them. */
static bool to_matches(json_t *o, const char *addr)
{
	json_t *to = json_object_get(o, "to"), *e;
	size_t i;

	if (json_is_string(to))
		return strcasecmp(json_string_value(to), addr) == 0;
	json_array_foreach(to, i, e)
		if (json_is_string(e) && strcasecmp(json_string_value(e), addr) == 0)
			return true;
	return false;
}

static bool matches(struct filter *f, json_t *o, int ev, int64_t ts)
{
	const char *qid = jstr(o, "queue_id");

	if (f->from && ev == 0 && qid) {
		const char *from = jstr(o, "from");

		if (from && strcasecmp(from, f->from) == 0 && !g_hash_table_contains(f->from_ids, qid))
			g_hash_table_add(f->from_ids, g_strdup(qid));
	}
	if (f->events && !(f->events & (1u << ev)))
		return false;
	if (f->since_set && ts < f->since_ms)
		return false;
	if (f->queue_id && (!qid || strcmp(qid, f->queue_id) != 0))
		return false;
	if (f->to && !to_matches(o, f->to))
		return false;
	if (f->from) {
		json_t *from = json_object_get(o, "from");

		if (from)
			return json_is_string(from) &&
			       strcasecmp(json_string_value(from), f->from) == 0;
		return qid && g_hash_table_contains(f->from_ids, qid);
	}
	return true;
}

/* ---------------------------------------------------------------- */
/* The table                                                        */
/* ---------------------------------------------------------------- */

static const char *const headers[NCOLS] = {
	"TIME", "QUEUE ID", "EVENT", "RECIPIENT", "ROUTE", "STATUS", "RESPONSE",
};
/* --follow cannot see the rows to come: these widths, widened as needed. */
static const size_t follow_width[NCOLS] = { 19, 18, 10, 32, 7, 6, 0 };

/*
 * A copy of s fit for one terminal cell: at most max characters of s
 * (0: no limit), "..." when cut, control characters shown escaped
 * (util/esc.h, SPEC §8: a multi-line reply stays one row, an escape
 * sequence from a peer never reaches the terminal).
 */
static char *cell(const char *s, size_t max)
{
	size_t chars = 0, i = 0;

	if (!s || !*s)
		return g_strdup("-");
	while (s[i] && !(max && chars == max)) {
		i += (size_t)(g_utf8_next_char(s + i) - (s + i));
		chars++;
	}
	char *out = esc_text(s, (ssize_t)i, 0);
	if (s[i]) {
		char *cut = g_strconcat(out, "...", NULL);
		g_free(out);
		out = cut;
	}
	return out;
}

/* Terminal columns of a valid UTF-8 string (wide characters count 2). */
static size_t columns(const char *s)
{
	size_t w = 0;

	if (!g_utf8_validate(s, -1, NULL))
		return strlen(s);
	for (; *s; s = g_utf8_next_char(s))
		w += g_unichar_iswide(g_utf8_get_char(s)) ? 2 : 1;
	return w;
}

static char *scalar_text(json_t *v)
{
	if (json_is_string(v))
		return cell(json_string_value(v), 0);
	if (json_is_integer(v))
		return g_strdup_printf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	return g_strdup("-");
}

static char *response_text(json_t *o, int ev)
{
	const char *resp = jstr(o, "response");

	if (ev == 0) {
		json_t *r = json_object_get(o, "rcpts"), *sz = json_object_get(o, "size");
		GString *g = g_string_new(NULL);

		if (json_is_integer(r))
			g_string_append_printf(g, "%" JSON_INTEGER_FORMAT " rcpt%s",
			                       json_integer_value(r), json_integer_value(r) == 1 ? "" : "s");
		if (json_is_integer(sz))
			g_string_append_printf(g, "%s%" JSON_INTEGER_FORMAT " bytes", g->len ? ", " : "",
			                       json_integer_value(sz));
		if (!g->len)
			g_string_append(g, "-");
		return g_string_free(g, FALSE);
	}
	if (ev == 5)
		return cell(jstr(o, "reason"), RESPONSE_COLUMNS);
	if (ev == 8 && !resp && jstr(o, "source")) {
		char *src = cell(jstr(o, "source"), 0);
		char *t = g_strdup_printf("(%s)", src);
		g_free(src);
		return t;
	}
	return cell(resp, RESPONSE_COLUMNS);
}

static char *recipient_text(json_t *o, int ev)
{
	json_t *to = json_object_get(o, "to");

	if (json_is_array(to) && json_array_size(to) > 0) {
		GString *g = g_string_new(NULL);
		json_t *e;
		size_t i;
		char *c;

		json_array_foreach(to, i, e) {
			c = scalar_text(e);
			g_string_append_printf(g, "%s%s", i ? "," : "", c);
			g_free(c);
		}
		return g_string_free(g, FALSE);
	}
	if (json_is_string(to))
		return cell(json_string_value(to), 0);
	if (ev == 0 || ev == 6)
		return cell(jstr(o, "from"), 0);
	return g_strdup("-");
}

static void make_row(struct row *r, json_t *o, int ev, int64_t ts)
{
	time_t t = (time_t)(ts / 1000 - (ts % 1000 < 0));
	struct tm tm;
	char when[32];

	if (localtime_r(&t, &tm) && strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm))
		r->col[0] = g_strdup(when);
	else
		r->col[0] = g_strdup("?");
	r->col[1] = cell(jstr(o, "queue_id"), 0);
	r->col[2] = g_strdup(event_names[ev]);
	r->col[3] = recipient_text(o, ev);
	r->col[4] = cell(jstr(o, "route"), 0);
	r->col[5] = cell(jstr(o, "status"), 0);
	r->col[6] = response_text(o, ev);
}

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

/* Prints the buffered rows, widening the columns to the widest cell seen. */
static void flush_rows(struct out *o)
{
	if (!o->nrows)
		return;
	for (size_t i = 0; i < o->nrows; i++)
		for (int c = 0; c < NCOLS; c++) {
			size_t w = columns(o->rows[i].col[c]);

			if (w > o->width[c] && !o->follow)
				o->width[c] = w;
		}
	if (!o->header_done) {
		print_cells((char *const *)headers, o->width);
		o->header_done = true;
	}
	for (size_t i = 0; i < o->nrows; i++) {
		print_cells(o->rows[i].col, o->width);
		for (int c = 0; c < NCOLS; c++)
			g_free(o->rows[i].col[c]);
	}
	o->nrows = 0;
	fflush(stdout);
}

/*
 * --json: the line as it is in the log, but with DEL and C1 controls
 * (which JSON may hold raw) written as \u escapes: same JSON, nothing a
 * terminal acts on (util/esc.h).
 */
static void print_json_line(const char *line, size_t len)
{
	if (!esc_needed(line, (ssize_t)len)) {
		fwrite(line, 1, len, stdout);
	} else {
		char *e = esc_json(line, (ssize_t)len);
		fputs(e, stdout);
		g_free(e);
	}
	putchar('\n');
}

/* One line of the log, NUL-terminated at line[len]. */
static void handle_line(struct filter *f, struct out *o, char *line, size_t len)
{
	json_t *obj;
	const char *evname, *ts;
	int64_t tms = 0;
	int ev;

	if (len == 0)
		return;
	if (!may_match(f, line, len))
		return;
	obj = json_loadb(line, len, 0, NULL);
	evname = jstr(obj, "event");
	ts = jstr(obj, "ts");
	if (!json_is_object(obj) || !evname || !ts || clock_rfc3339_parse(ts, &tms) < 0) {
		o->malformed++;
		json_decref(obj);
		return;
	}
	ev = event_index(evname);
	/* An event this version does not know is shown, but never filtered in. */
	if (ev < 0) {
		if (!f->events && !f->since_set && !f->queue_id && !f->to && !f->from) {
			if (o->json)
				print_json_line(line, len);
		}
		json_decref(obj);
		return;
	}
	if (matches(f, obj, ev, tms)) {
		if (o->json) {
			print_json_line(line, len);
		} else {
			if (o->nrows == CHUNK_ROWS)
				flush_rows(o);
			make_row(&o->rows[o->nrows++], obj, ev, tms);
		}
	}
	json_decref(obj);
}

/* ---------------------------------------------------------------- */
/* Reading                                                          */
/* ---------------------------------------------------------------- */

struct reader {
	int fd;
	char *buf;                      /* LINE_MAX_BYTES + 1 */
	size_t start, end;              /* unread bytes: buf[start..end) */
	bool skipping;                  /* inside an over-long line */
	off_t offset;                   /* bytes read from fd */
};

/*
 * Reads fd to its end, handing over each complete line. Returns 0 at end
 * of file, -errno on a read error. The last line without a newline stays
 * in the buffer (a writer may be in the middle of it).
 */
static int read_lines(struct reader *r, struct filter *f, struct out *o)
{
	for (;;) {
		char *nl;

		while ((nl = memchr(r->buf + r->start, '\n', r->end - r->start))) {
			size_t len = (size_t)(nl - (r->buf + r->start));

			*nl = '\0';
			if (r->skipping)
				r->skipping = false;
			else
				handle_line(f, o, r->buf + r->start, len);
			r->start += len + 1;
		}
		if (r->start > 0) {
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		}
		if (r->end == LINE_MAX_BYTES) {
			/* Bounded: a line this long is not one evlog writes. */
			if (!r->skipping)
				o->malformed++;
			r->skipping = true;
			r->end = 0;
		}
		size_t want = LINE_MAX_BYTES - r->end;
		if (want > READ_CHUNK)
			want = READ_CHUNK;
		ssize_t n = read(r->fd, r->buf + r->end, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		r->end += (size_t)n;
		r->offset += n;
	}
}

/* At the real end of a file: the last line, even without its newline. */
static void finish_lines(struct reader *r, struct filter *f, struct out *o)
{
	if (r->end > r->start && !r->skipping) {
		r->buf[r->end] = '\0';
		handle_line(f, o, r->buf + r->start, r->end - r->start);
	}
	r->start = r->end = 0;
	r->skipping = false;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);       /* EINTR: a signal, checked by the caller */
}

/*
 * --follow: after each end of file, wait, then look at the path. Another
 * inode there means the log was rotated (the old file, still open, is read
 * to its end first); a size below what was read means it was truncated.
 * Either way the file is read again from its start. A missing path (between
 * the rename and the creation of the new file) is waited for.
 */
static int follow(struct reader *r, const char *path, struct filter *f, struct out *o)
{
	struct sigaction sa = { 0 };
	int rc;

	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!stop_requested) {
		struct stat ps, fs;

		flush_rows(o);
		fflush(stdout);
		sleep_ms(FOLLOW_POLL_MS);
		if (stop_requested)
			break;
		if ((rc = read_lines(r, f, o)) < 0)
			return rc;
		if (stat(path, &ps) < 0 || fstat(r->fd, &fs) < 0)
			continue;
		if (ps.st_ino != fs.st_ino || ps.st_dev != fs.st_dev) {
			int nfd = open(path, O_RDONLY | O_CLOEXEC);

			if (nfd < 0)
				continue;
			finish_lines(r, f, o);
			close(r->fd);
			r->fd = nfd;
			r->offset = 0;
			if ((rc = read_lines(r, f, o)) < 0)
				return rc;
		} else if (fs.st_size < r->offset) {
			if (lseek(r->fd, 0, SEEK_SET) < 0)
				return -errno;
			r->start = r->end = 0;
			r->skipping = false;
			r->offset = 0;
			if ((rc = read_lines(r, f, o)) < 0)
				return rc;
		}
	}
	finish_lines(r, f, o);
	return 0;
}

int ctl_log(const struct config *cfg, int argc, char **argv)
{
	struct filter f = { 0 };
	struct out o = { 0 };
	struct reader r = { .fd = -1 };
	const char *path = cfg ? cfg->log.file : NULL;
	int rc, status = 0;

	rc = parse_args(argc, argv, &f, &o);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (!path || !*path) {
		fprintf(stderr, "hikyakuctl: no log file is configured ([log] file).\n");
		return 2;
	}
	r.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r.fd < 0) {
		fprintf(stderr, "hikyakuctl: cannot read the log %s: %s.\n", path, strerror(errno));
		return 2;
	}
	r.buf = malloc(LINE_MAX_BYTES + 1);
	o.rows = calloc(CHUNK_ROWS, sizeof(*o.rows));
	f.from_ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	if (!r.buf || !o.rows) {
		fprintf(stderr, "hikyakuctl: out of memory.\n");
		status = 2;
		goto out;
	}
	if (o.follow)
		memcpy(o.width, follow_width, sizeof(o.width));
	for (int c = 0; c < NCOLS - 1; c++)
		if (o.width[c] < strlen(headers[c]))
			o.width[c] = strlen(headers[c]);
	rc = read_lines(&r, &f, &o);
	if (rc == 0 && o.follow)
		rc = follow(&r, path, &f, &o);
	else if (rc == 0)
		finish_lines(&r, &f, &o);
	if (rc < 0) {
		fprintf(stderr, "hikyakuctl: cannot read the log %s: %s.\n", path, strerror(-rc));
		status = 2;
	}
	flush_rows(&o);
	fflush(stdout);
	if (o.malformed)
		fprintf(stderr, "hikyakuctl: %lu malformed line%s skipped.\n", o.malformed,
		        o.malformed == 1 ? "" : "s");
out:
	for (size_t i = 0; i < o.nrows; i++)
		for (int c = 0; c < NCOLS; c++)
			g_free(o.rows[i].col[c]);
	free(o.rows);
	g_hash_table_destroy(f.from_ids);
	free(r.buf);
	if (r.fd >= 0)
		close(r.fd);
	return status;
}
