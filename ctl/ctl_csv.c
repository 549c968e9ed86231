/*
 * ctl_csv - CSV fields a spreadsheet will not run. See ctl_csv.h.
 * libcsv reads the fields; this file decides the "'" prefix and writes
 * them back, quoted as relay/suppression.c quotes them.
 */
#include "ctl/ctl_csv.h"

#include <csv.h>
#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "util/esc.h"

static bool formula_start(char c)
{
	return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r';
}

bool ctl_csv_guarded(const char *v, size_t n)
{
	size_t i = 0;

	while (i < n && v[i] == '\'')
		i++;
	return i < n && formula_start(v[i]);
}

struct rw {
	FILE *out;
	enum ctl_csv_mode mode;
	bool escape;
	bool first_field;        /* of the record being written */
	long line;               /* physical line of the input being parsed */
	long record_line;        /* where the current record began */
	bool at_record_start;
	long out_line;           /* physical line of out being written */
	int err;
};

static void put_value(struct rw *rw, const char *v, size_t n)
{
	size_t k;
	bool quote = false;

	for (k = 0; k < n && !quote; k++)
		quote = v[k] == ',' || v[k] == '"' || v[k] == '\r' || v[k] == '\n';
	if (n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		quote = true;
	if (!quote) {
		fwrite(v, 1, n, rw->out);
		return;
	}
	putc('"', rw->out);
	for (k = 0; k < n; k++) {
		if (v[k] == '"')
			putc('"', rw->out);
		if (v[k] == '\n')
			rw->out_line++;
		putc(v[k], rw->out);
	}
	putc('"', rw->out);
}

/* libcsv: the end of a field. */
static void on_field(void *data, size_t len, void *arg)
{
	struct rw *rw = arg;
	const char *v = data ? data : "";

	if (rw->first_field)
		for (; rw->out_line < rw->record_line; rw->out_line++)
			putc('\n', rw->out);
	if (!rw->first_field)
		putc(',', rw->out);
	rw->first_field = false;
	if (rw->mode == CTL_CSV_UNGUARD) {
		if (len > 1 && v[0] == '\'' && ctl_csv_guarded(v + 1, len - 1)) {
			v++;
			len--;
		}
		put_value(rw, v, len);
		return;
	}
	GString *g = g_string_sized_new(len + 2);
	if (ctl_csv_guarded(v, len))
		g_string_append_c(g, '\'');
	if (rw->escape) {
		char *e = esc_text(v, (ssize_t)len, 0);
		g_string_append(g, e);
		g_free(e);
	} else {
		g_string_append_len(g, v, (gssize)len);
	}
	put_value(rw, g->str, g->len);
	g_string_free(g, TRUE);
}

/* libcsv: the end of a record. */
static void on_record(int c, void *arg)
{
	struct rw *rw = arg;

	(void)c;
	if (!rw->first_field) {
		putc('\n', rw->out);
		rw->out_line++;
	}
	rw->first_field = true;
	rw->at_record_start = true;
}

int ctl_csv_rewrite(const char *in, size_t n, FILE *out, enum ctl_csv_mode mode, bool escape)
{
	struct rw rw = { .out = out, .mode = mode, .escape = escape, .first_field = true,
	                 .line = 1, .record_line = 1, .at_record_start = true, .out_line = 1 };
	struct csv_parser p;

	if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
		return -ENOMEM;
	if (n >= 3 && memcmp(in, "\xEF\xBB\xBF", 3) == 0) {
		in += 3;
		n -= 3;
	}
	/* Line by line, to know where each record begins (libcsv counts none). */
	while (n > 0) {
		const char *nl = memchr(in, '\n', n);
		size_t seg = nl ? (size_t)(nl - in) + 1 : n;

		/* libcsv skips an empty line: the next record starts later. */
		bool empty = true;
		for (size_t k = 0; k < seg && empty; k++)
			empty = in[k] == '\r' || in[k] == '\n';
		if (rw.at_record_start)
			rw.record_line = rw.line;
		if (!empty)
			rw.at_record_start = false;
		if (csv_parse(&p, in, seg, on_field, on_record, &rw) != seg) {
			rw.err = csv_error(&p) == CSV_ENOMEM ? -ENOMEM : -EINVAL;
			break;
		}
		/* A line ending inside a quoted field leaves the record open. */
		rw.line++;
		in += seg;
		n -= seg;
	}
	if (!rw.err && csv_fini(&p, on_field, on_record, &rw) != 0)
		rw.err = -EINVAL;
	csv_free(&p);
	if (!rw.err && (fflush(out) != 0 || ferror(out)))
		rw.err = -EIO;
	return rw.err;
}
