/*
 * ctl_survey - the survey subcommand of hikyakuctl. See ctl_survey.h.
 * The logs are read by ctl/ctl_survey_read.c (Postfix lines parsed by
 * ctl/postfix_log.c, hikyaku's own lines by jansson) into the outcomes
 * per address (ctl/ctl_survey_int.h); this file takes the options,
 * prints the rows, and imports through the store's CSV import
 * (relay/suppression.h), which keeps a row's times and count and writes
 * every row in one transaction.
 * TOUCHES
 *	stdout, stderr; with --import the suppression list and the [log]
 *	file (a "learned" event per new address).
 */
#include "ctl/ctl_survey.h"
#include "ctl/ctl_survey_int.h"

#include <glib.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "relay/suppression.h"
#include "util/clock.h"
#include "util/eventlog.h"

#define RESPONSE_COLUMNS 60

/* ---------------------------------------------------------------- */
/* Output                                                           */
/* ---------------------------------------------------------------- */

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
	char *f = survey_fold(address, strlen(address));
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

	s.addrs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, survey_addr_free);
	buf = g_malloc(LINE_MAX_BYTES);
	for (int i = 0; i < nfiles; i++) {
		s.file = (unsigned)i;
		if (survey_read_file(&s, files[i], buf) < 0) {
			fprintf(stderr, "hikyakuctl: suppression survey stopped%s.\n",
			        do_import ? "; nothing was imported" : "");
			status = 2;
			goto out;
		}
	}

	/* The rows: failures after the latest delivery. */
	rows = survey_rows(&s, &nrows, &failures);

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
