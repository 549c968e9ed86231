/*
 * ctl_suppression - the suppression subcommands of hikyakuctl. See
 * ctl_suppression.h. The store does the work (relay/suppression.c); this
 * file parses arguments, words the messages for a shop administrator, and
 * logs what the list learned.
 */
#include "util/clock.h"
#include "ctl/ctl_suppression.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "ctl/ctl_csv.h"
#include "relay/suppression.h"
#include "util/eventlog.h"
#include "util/esc.h"

/* The reason column is cut here; the export has the whole text. */
#define REASON_COLUMNS 60

static void usage(FILE *fp)
{
	fprintf(fp, "usage: hikyakuctl suppression COMMAND ...\n"
	            "commands:\n"
	            "  list [--search TEXT]      the listed addresses, or those with TEXT\n"
	            "                            in the address or reason\n"
	            "  add ADDRESS [--reason TEXT]\n"
	            "                            put ADDRESS on the list\n"
	            "  remove ADDRESS            take ADDRESS off the list: mail to it\n"
	            "                            goes out again\n"
	            "  import FILE.csv           add the addresses of a CSV file (\"-\": stdin)\n"
	            "  export                    write the whole list as CSV to stdout\n"
	            "  ingest                    read a delivery status notification on stdin\n"
	            "  survey [FILE ...] [--since DUR] [--import] [--json]\n"
	            "                            the recipients past mail logs show as hard\n"
	            "                            bounces; --import adds them\n");
}

/*
 * Opens the database. With create false, a missing file is not made
 * (list, export and remove only read or delete): returns 1 then, and
 * *out stays NULL. Returns 0 when open, 2 after printing the error.
 */
static int open_store(const struct config *cfg, bool create, struct supp **out)
{
	const char *path = cfg ? cfg->suppression.db : NULL;
	struct stat st;
	int rc;

	*out = NULL;
	if (!path || !*path) {
		fprintf(stderr, "hikyakuctl: no suppression database is configured "
		        "([suppression] db).\n");
		return 2;
	}
	if (!supp_db_is_pg(path) && !create && stat(path, &st) < 0 && errno == ENOENT)
		return 1;
	rc = supp_open(path, out);
	if (rc < 0) {
		char shown[256];        /* a PostgreSQL URI without its password */

		supp_db_display(path, shown, sizeof(shown));
		fprintf(stderr, "hikyakuctl: cannot open the suppression list %s: %s.\n", shown,
		        supp_strerror(rc));
		return 2;
	}
	return 0;
}

static void log_learned(struct evlog *log, const char *address, const char *source)
{
	evlog_learned(log, address, source, NULL, NULL);
}

/*
 * Option parsing shared by the subcommands: "--NAME VALUE" or
 * "--NAME=VALUE" for the one option a subcommand takes, operands
 * elsewhere, "--" ends options. Returns false after printing a usage
 * error.
 */
struct args {
	const char *opt_value;
	const char *operand[2];
	int noperands;
};

static bool parse_args(int argc, char **argv, const char *cmd, const char *opt, struct args *a)
{
	size_t optlen = opt ? strlen(opt) : 0;
	bool options = true;

	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];

		if (options && strcmp(arg, "--") == 0) {
			options = false;
		} else if (options && opt && strncmp(arg, opt, optlen) == 0 && arg[optlen] == '=') {
			a->opt_value = arg + optlen + 1;
		} else if (options && opt && strcmp(arg, opt) == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "hikyakuctl: suppression %s: %s needs a value.\n",
				        cmd, opt);
				return false;
			}
			a->opt_value = argv[++i];
		} else if (options && arg[0] == '-' && arg[1] != '\0') {
			fprintf(stderr, "hikyakuctl: suppression %s: unknown option \"%s\"; "
			        "try hikyakuctl suppression --help.\n", cmd, esc_tmp(arg));
			return false;
		} else if (a->noperands < 2) {
			a->operand[a->noperands++] = arg;
		} else {
			a->noperands++;
		}
	}
	return true;
}

static bool want_operands(const struct args *a, int n, const char *cmd, const char *synopsis)
{
	if (a->noperands == n)
		return true;
	fprintf(stderr, "hikyakuctl: usage: hikyakuctl suppression %s%s%s\n", cmd,
	        *synopsis ? " " : "", synopsis);
	return false;
}

/* ---- list ---- */

/* Columns a UTF-8 sequence takes on a terminal; wide for East Asian
 * scripts, which the shop's addresses and reasons may well contain. */
static int cp_width(uint32_t cp)
{
	if ((cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) ||
	    (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
	    (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
	    (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1FAFF) ||
	    (cp >= 0x20000 && cp <= 0x3FFFD))
		return 2;
	return 1;
}

/* Decodes one character at *p (lenient: a stray byte is U+FFFD). */
static uint32_t next_cp(const unsigned char **p)
{
	const unsigned char *s = *p;
	uint32_t cp = s[0];
	int n = 0;

	if (cp >= 0xF0 && cp <= 0xF4) {
		n = 3;
		cp &= 0x07;
	} else if (cp >= 0xE0 && cp <= 0xEF) {
		n = 2;
		cp &= 0x0F;
	} else if (cp >= 0xC2 && cp <= 0xDF) {
		n = 1;
		cp &= 0x1F;
	} else if (cp >= 0x80) {
		*p = s + 1;
		return 0xFFFD;
	}
	/* A NUL is no continuation byte: this never reads past the end. */
	for (int i = 1; i <= n; i++) {
		if ((s[i] & 0xC0) != 0x80) {
			*p = s + 1;
			return 0xFFFD;
		}
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	*p = s + n + 1;
	return cp;
}

static int char_width(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7F ? 1 : cp_width(cp);
}

/*
 * A cell of the table: control characters (a multi-line reply, a tab)
 * become spaces so that a row stays one line, a stray byte becomes U+FFFD,
 * and a text wider than max columns (0: no limit) is cut and ends in
 * "...". Returns a new string; *width gets its columns.
 */
static char *cell(const char *v, int max, int *width)
{
	/* Shown escaped first (util/esc.h): valid UTF-8, no controls. */
	char *shown = esc_text(v && *v ? v : "-", -1, 0);
	const unsigned char *text = (const unsigned char *)shown;
	const unsigned char *p = text;
	int total = 0, limit, w = 0;
	size_t o = 0;
	char *out;

	while (*p)
		total += char_width(next_cp(&p));
	limit = max > 0 && total > max ? max - 3 : total;
	/* U+FFFD is 3 bytes for what may have been 1: room for that. */
	out = malloc(strlen((const char *)text) * 3 + 4);
	if (!out) {
		g_free(shown);
		return NULL;
	}
	p = text;
	while (*p) {
		const unsigned char *start = p;
		uint32_t cp = next_cp(&p);
		int cw = char_width(cp);

		if (w + cw > limit)
			break;
		if (cp < 0x20 || cp == 0x7F) {
			out[o++] = ' ';
		} else if (cp == 0xFFFD && p - start == 1) {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
		} else {
			memcpy(out + o, start, (size_t)(p - start));
			o += (size_t)(p - start);
		}
		w += cw;
	}
	if (limit < total) {
		memcpy(out + o, "...", 3);
		o += 3;
		w += 3;
	}
	out[o] = '\0';
	*width = w;
	g_free(shown);
	return out;
}

enum { C_ADDRESS, C_REASON, C_STATUS, C_COUNT, C_LAST, NCOLS };

struct table {
	char *(*rows)[NCOLS];
	int (*widths)[NCOLS];
	size_t n, cap;
	int colw[NCOLS];
	bool oom;
};

static int table_add(void *arg, const struct supp_entry *e)
{
	static const int max[NCOLS] = { 0, REASON_COLUMNS, 0, 0, 0 };
	struct table *t = arg;
	char count[24], last[32];
	const char *text[NCOLS];
	time_t secs = (time_t)(e->last_ms / 1000);
	struct tm tm;

	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		void *r = realloc(t->rows, cap * sizeof(*t->rows));

		if (!r)
			return -ENOMEM;
		t->rows = r;
		r = realloc(t->widths, cap * sizeof(*t->widths));
		if (!r)
			return -ENOMEM;
		t->widths = r;
		t->cap = cap;
	}
	snprintf(count, sizeof(count), "%" PRId64, e->count);
	if (localtime_r(&secs, &tm))
		strftime(last, sizeof(last), "%Y-%m-%d %H:%M:%S", &tm);
	else
		snprintf(last, sizeof(last), "-");
	text[C_ADDRESS] = e->address;
	text[C_REASON] = e->reason;
	text[C_STATUS] = e->status;
	text[C_COUNT] = count;
	text[C_LAST] = last;
	for (int c = 0; c < NCOLS; c++) {
		t->rows[t->n][c] = cell(text[c], max[c], &t->widths[t->n][c]);
		if (!t->rows[t->n][c]) {
			while (c-- > 0)
				free(t->rows[t->n][c]);
			return -ENOMEM;
		}
		if (t->widths[t->n][c] > t->colw[c])
			t->colw[c] = t->widths[t->n][c];
	}
	t->n++;
	return 0;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		for (int c = 0; c < NCOLS; c++)
			free(t->rows[i][c]);
	free(t->rows);
	free(t->widths);
}

static void print_padded(const char *text, int width, int colw, bool right, bool last)
{
	if (right)
		printf("%*s%s", colw - width, "", text);
	else if (last)
		fputs(text, stdout);
	else
		printf("%s%*s", text, colw - width, "");
	fputs(last ? "\n" : "  ", stdout);
}

static void table_print(const struct table *t)
{
	static const char *const head[NCOLS] = {
		"ADDRESS", "REASON", "STATUS", "COUNT", "LAST SEEN",
	};
	int colw[NCOLS];

	for (int c = 0; c < NCOLS; c++) {
		int hw = (int)strlen(head[c]);

		colw[c] = t->colw[c] > hw ? t->colw[c] : hw;
	}
	for (int c = 0; c < NCOLS; c++)
		print_padded(head[c], (int)strlen(head[c]), colw[c], c == C_COUNT,
		             c == NCOLS - 1);
	for (size_t i = 0; i < t->n; i++)
		for (int c = 0; c < NCOLS; c++)
			print_padded(t->rows[i][c], t->widths[i][c], colw[c], c == C_COUNT,
			             c == NCOLS - 1);
}

static int cmd_list(const struct config *cfg, int argc, char **argv)
{
	struct table t = { 0 };
	struct supp *s;
	struct args a;
	int rc;

	if (!parse_args(argc - 1, argv + 1, "list", "--search", &a) ||
	    !want_operands(&a, 0, "list", "[--search TEXT]"))
		return 2;
	rc = open_store(cfg, false, &s);
	if (rc == 2)
		return 2;
	if (s) {
		rc = supp_list(s, a.opt_value, table_add, &t);
		supp_close(s);
		if (rc < 0) {
			fprintf(stderr, "hikyakuctl: cannot read the suppression list: %s.\n",
			        supp_strerror(rc));
			table_free(&t);
			return 2;
		}
	}
	if (t.n == 0 && a.opt_value && *a.opt_value)
		printf("no entries match \"%s\"\n", esc_tmp(a.opt_value));
	else if (t.n == 0)
		printf("no entries\n");
	else
		table_print(&t);
	table_free(&t);
	return fflush(stdout) == 0 ? 0 : 2;
}

/* ---- add, remove ---- */

static int cmd_add(const struct config *cfg, struct evlog *log, int argc, char **argv)
{
	struct supp *s;
	struct args a;
	const char *addr, *reason;
	int rc;

	if (!parse_args(argc - 1, argv + 1, "add", "--reason", &a) ||
	    !want_operands(&a, 1, "add", "ADDRESS [--reason TEXT]"))
		return 2;
	addr = a.operand[0];
	if (!supp_address_valid(addr)) {
		fprintf(stderr, "hikyakuctl: \"%s\" is not a mail address (local@domain).\n",
		        esc_tmp(addr));
		return 2;
	}
	if (open_store(cfg, true, &s) != 0)
		return 2;
	/* Without --reason, a new entry says who put it there, and a listed
	 * one keeps the reason it has. */
	reason = a.opt_value;
	if (!reason || !*reason)
		reason = supp_lookup(s, addr, NULL) == 1 ? NULL : "added by the administrator";
	rc = supp_add(s, addr, reason, NULL, NULL, "admin", (int64_t)clock_now_ms());
	supp_close(s);
	if (rc < 0) {
		fprintf(stderr, "hikyakuctl: cannot add %s to the suppression list: %s.\n",
		        esc_tmp(addr), supp_strerror(rc));
		return 2;
	}
	if (rc == 1) {
		log_learned(log, addr, "admin");
		printf("added %s\n", esc_tmp(addr));
	} else {
		printf("%s was already listed; updated\n", esc_tmp(addr));
	}
	return 0;
}

static int cmd_remove(const struct config *cfg, int argc, char **argv)
{
	struct supp *s;
	struct args a;
	const char *addr;
	int rc;

	if (!parse_args(argc - 1, argv + 1, "remove", NULL, &a) ||
	    !want_operands(&a, 1, "remove", "ADDRESS"))
		return 2;
	addr = a.operand[0];
	rc = open_store(cfg, false, &s);
	if (rc == 2)
		return 2;
	rc = s ? supp_remove(s, addr) : 0;
	supp_close(s);
	if (rc < 0) {
		fprintf(stderr, "hikyakuctl: cannot remove %s from the suppression list: %s.\n",
		        esc_tmp(addr), supp_strerror(rc));
		return 2;
	}
	if (rc == 0) {
		fprintf(stderr, "hikyakuctl: %s is not on the suppression list.\n", esc_tmp(addr));
		return 1;
	}
	printf("removed %s\n", esc_tmp(addr));
	return 0;
}

/* ---- import, export ---- */

struct import_log {
	struct evlog *log;
	long fresh;
};

static void import_new(void *arg, const char *address)
{
	struct import_log *il = arg;

	il->fresh++;
	log_learned(il->log, address, "import");
}

/*
 * The CSV of in without the export's formula guards (ctl/ctl_csv.h), as
 * a stream for supp_import_csv_cb(); the input as it is when it is no
 * well-formed CSV, so that the import names the line at fault. NULL with
 * errno set when in cannot be read.
 */
static FILE *unguarded(FILE *in)
{
	GByteArray *raw = g_byte_array_new();
	char chunk[65536];
	size_t n;

	while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0)
		g_byte_array_append(raw, (const guint8 *)chunk, (guint)n);
	if (ferror(in)) {
		int e = errno ? errno : EIO;
		g_byte_array_free(raw, TRUE);
		errno = e;
		return NULL;
	}
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (!mem) {
		g_byte_array_free(raw, TRUE);
		return NULL;
	}
	int rc = ctl_csv_rewrite((const char *)raw->data, raw->len, mem, CTL_CSV_UNGUARD, false);
	fclose(mem);
	if (rc < 0) {
		free(text);
		text = g_memdup2(raw->data, raw->len);
		len = raw->len;
	}
	g_byte_array_free(raw, TRUE);
	FILE *f = tmpfile();
	if (f && (fwrite(text, 1, len, f) != len || fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0)) {
		fclose(f);
		f = NULL;
	}
	int e = errno;
	if (rc < 0)
		g_free(text);
	else
		free(text);
	errno = e;
	return f;
}

static int cmd_import(const struct config *cfg, struct evlog *log, int argc, char **argv)
{
	struct import_log il = { .log = log };
	struct supp *s;
	struct args a;
	const char *file;
	char err[256];
	long line = 0;
	FILE *in;
	int rc;

	if (!parse_args(argc - 1, argv + 1, "import", NULL, &a) ||
	    !want_operands(&a, 1, "import", "FILE.csv"))
		return 2;
	file = a.operand[0];
	in = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
	if (!in) {
		fprintf(stderr, "hikyakuctl: cannot open %s: %s.\n", esc_tmp(file), strerror(errno));
		return 2;
	}
	/* SPEC §6.5: the "'" the export put before a formula-like field goes. */
	FILE *csv = unguarded(in);
	if (in != stdin)
		fclose(in);
	if (!csv) {
		fprintf(stderr, "hikyakuctl: cannot read %s: %s.\n", esc_tmp(file), strerror(errno));
		return 2;
	}
	if (open_store(cfg, true, &s) != 0) {
		fclose(csv);
		return 2;
	}
	rc = supp_import_csv_cb(s, csv, "import", (int64_t)clock_now_ms(), import_new, &il, &line,
	                        err, sizeof(err));
	supp_close(s);
	fclose(csv);
	if (rc < 0) {
		if (line > 0)
			fprintf(stderr, "hikyakuctl: %s:%ld: %s; nothing was imported.\n",
			        strcmp(file, "-") ? esc_tmp(file) : "stdin", line, esc_tmp(err));
		else
			fprintf(stderr, "hikyakuctl: cannot import %s: %s; nothing was imported.\n",
			        esc_tmp(file), *err ? esc_tmp(err) : supp_strerror(rc));
		return 2;
	}
	printf("imported %d address%s (%ld new)\n", rc, rc == 1 ? "" : "es", il.fresh);
	return 0;
}

static int cmd_export(const struct config *cfg, int argc, char **argv)
{
	struct supp *s;
	struct args a;
	int rc;

	if (!parse_args(argc - 1, argv + 1, "export", NULL, &a) ||
	    !want_operands(&a, 0, "export", ""))
		return 2;
	rc = open_store(cfg, false, &s);
	if (rc == 2)
		return 2;
	/*
	 * SPEC §6.5: a formula-like field gets "'"; SPEC §8: on a terminal,
	 * control characters are shown escaped (a file keeps them, so that
	 * import gives the list back exactly).
	 */
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (!mem)
		return 2;
	if (s) {
		rc = supp_export_csv(s, mem);
		supp_close(s);
	} else {
		/* Nothing listed yet: the header alone, as for an empty list. */
		fputs("address,reason,status,response,source,first_seen,last_seen,count\n", mem);
		rc = 0;
	}
	if (fclose(mem) != 0 && rc >= 0)
		rc = -EIO;
	if (rc >= 0)
		rc = ctl_csv_rewrite(text, len, stdout, CTL_CSV_GUARD, isatty(STDOUT_FILENO));
	free(text);
	if (rc < 0) {
		fprintf(stderr, "hikyakuctl: cannot export the suppression list: %s.\n",
		        supp_strerror(rc));
		return 2;
	}
	return 0;
}

int ctl_suppression(const struct config *cfg, struct evlog *log, int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	argc--;
	argv++;
	if (strcmp(cmd, "list") == 0)
		return cmd_list(cfg, argc, argv);
	if (strcmp(cmd, "add") == 0)
		return cmd_add(cfg, log, argc, argv);
	if (strcmp(cmd, "remove") == 0)
		return cmd_remove(cfg, argc, argv);
	if (strcmp(cmd, "import") == 0)
		return cmd_import(cfg, log, argc, argv);
	if (strcmp(cmd, "export") == 0)
		return cmd_export(cfg, argc, argv);
	fprintf(stderr, "hikyakuctl: unknown suppression command \"%s\"; "
	        "try hikyakuctl suppression --help.\n", esc_tmp(cmd));
	return 2;
}
