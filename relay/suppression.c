/*
 * NAME
 *	suppression - the suppression list: the interface and what every store shares
 * SUMMARY
 *	See suppression.h for the contract. This file picks the store from
 *	the db setting (a postgresql:// or postgres:// URI: PostgreSQL,
 *	suppression_pg.c; anything else: a SQLite file, suppression_sqlite.c),
 *	checks arguments and addresses, and holds what does not depend on the
 *	store: the address syntax, RFC 3339 times, the CSV export's writer
 *	and the CSV import's parser (every row is parsed and checked before
 *	the store's one transaction, so a bad file imports nothing).
 * DESCRIPTION
 *	struct supp is a backend (suppression_backend.h) and its handle.
 * TOUCHES
 *	Nothing itself; the stores touch their files and connections.
 */
#include "relay/suppression.h"
#include "relay/suppression_backend.h"
#include "util/clock.h"

#include <csv.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Bounds of the import: a record (one row, quoted newlines included) and
 * the header's width. A suppression list row is a few hundred bytes. */
#define SUPP_CSV_RECORD_MAX (64 * 1024)
#define SUPP_CSV_COLUMNS_MAX 256

struct supp {
	const struct supp_backend *be;
	void *h;
	char display[256];      /* db without its password */
};

const char *supp_strerror(int rc)
{
	switch (rc) {
	case -EINVAL:
		return "invalid address or value";
	case -EBUSY:
		return "the database stayed locked by another process for 5 seconds";
	case -EBADMSG:
		return "the file is not a suppression database, or it is damaged";
	case -ENOTCONN:
		return "the PostgreSQL database cannot be reached";
	case -ETIMEDOUT:
		return "the PostgreSQL database did not answer in time";
	case -ENOTSUP:
		return "the database was written by a newer version of hikyaku";
	default:
		return strerror(rc < 0 ? -rc : rc);
	}
}

/* ---- address syntax (RFC 5321 §4.1.2, RFC 6531 §3.3) ---- */

/* Length of the well-formed UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	unsigned min;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	unsigned cp = c & (0x7F >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/* RFC 5322 atext, plus the dot of dot-atom. */
static bool is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL;
}

static bool local_valid(const unsigned char *p, size_t n)
{
	if (n == 0)
		return false;
	if (p[0] == '"') {
		/* quoted-string: printable ASCII or UTF-8, \ quotes one char */
		if (n < 2 || p[n - 1] != '"')
			return false;
		for (size_t i = 1; i < n - 1; i++) {
			if (p[i] == '"')
				return false;
			if (p[i] == '\\' && ++i >= n - 1)
				return false;
		}
		return true;
	}
	/*
	 * Dot-atom, but with dots allowed anywhere: Japanese mobile carriers
	 * handed out "taro..x.@docomo.ne.jp" for years, and those are just
	 * the addresses that end up here.
	 */
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x80 && !is_atext(p[i]))
			return false;
	return true;
}

static bool domain_valid(const unsigned char *p, size_t n)
{
	size_t label = 0;

	if (n == 0)
		return false;
	if (p[0] == '[') {
		/* address literal: [192.0.2.1], [IPv6:2001:db8::1] */
		if (n < 3 || p[n - 1] != ']')
			return false;
		for (size_t i = 1; i < n - 1; i++)
			if (p[i] == '[' || p[i] == ']' || p[i] == '\\' || p[i] == ' ' ||
			    p[i] >= 0x80)
				return false;
		return true;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		label++;
	}
	return label > 0;
}

bool supp_address_valid(const char *address)
{
	const unsigned char *p = (const unsigned char *)address;
	const char *at;
	size_t n;

	if (!address)
		return false;
	n = strnlen(address, SUPP_ADDRESS_MAX + 1);
	if (n == 0 || n > SUPP_ADDRESS_MAX)
		return false;
	for (size_t i = 0; i < n;) {
		size_t k;

		if (p[i] < 0x20 || p[i] == 0x7F)
			return false;
		k = utf8_len(p + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	at = strrchr(address, '@');
	if (!at)
		return false;
	return local_valid(p, (size_t)(at - address)) &&
	       domain_valid((const unsigned char *)at + 1, n - (size_t)(at - address) - 1);
}

/* ---- lookup, add, remove, list ---- */

char *supp_dup_or_null(const char *v, int *rc)
{
	char *d;

	if (!v)
		return NULL;
	d = strdup(v);
	if (!d)
		*rc = -ENOMEM;
	return d;
}

void supp_entry_free(struct supp_entry *e)
{
	if (!e)
		return;
	free(e->address);
	free(e->reason);
	free(e->status);
	free(e->response);
	free(e->source);
	memset(e, 0, sizeof(*e));
}

/* "%text%" for LIKE, with the pattern characters of text escaped. */
char *supp_like_pattern(const char *text)
{
	size_t n = strlen(text);
	char *p, *o;

	if (n > (SIZE_MAX - 3) / 2)
		return NULL;
	p = malloc(2 * n + 3);
	if (!p)
		return NULL;
	o = p;
	*o++ = '%';
	for (const char *t = text; *t; t++) {
		if (*t == '%' || *t == '_' || *t == '\\')
			*o++ = '\\';
		*o++ = *t;
	}
	*o++ = '%';
	*o = '\0';
	return p;
}

/* ---- time as text: RFC 3339 (util/clock.h) ---- */

/* "2026-11-26T06:14:04.123Z"; a time no calendar date holds (outside the
 * years 1 to 9999) as its number of milliseconds. */
static void format_time(int64_t ms, char out[CLOCK_RFC3339_SIZE])
{
	if (clock_rfc3339(ms, out, CLOCK_RFC3339_SIZE) < 0)
		snprintf(out, CLOCK_RFC3339_SIZE, "%" PRId64, ms);
}

/* ---- export ---- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* One CSV field, quoted only when it has to be (RFC 4180 §2.6, §2.7). */
static int put_field(FILE *out, const char *v, bool last)
{
	size_t n = v ? strlen(v) : 0;

	/* libcsv trims blanks around unquoted fields: keep them quoted. */
	if (v && n > 0 && v[strcspn(v, ",\"\r\n")] == '\0' && !is_blank(v[0]) &&
	    !is_blank(v[n - 1])) {
		fputs(v, out);
	} else if (v) {
		putc('"', out);
		for (const char *p = v; *p; p++) {
			if (*p == '"')
				putc('"', out);
			putc(*p, out);
		}
		putc('"', out);
	}
	putc(last ? '\n' : ',', out);
	return ferror(out) ? -EIO : 0;
}

static int export_row(void *arg, const struct supp_entry *e)
{
	FILE *out = arg;
	char first[CLOCK_RFC3339_SIZE], last[CLOCK_RFC3339_SIZE], count[24];

	format_time(e->first_ms, first);
	format_time(e->last_ms, last);
	snprintf(count, sizeof(count), "%" PRId64, e->count);
	if (put_field(out, e->address, false) || put_field(out, e->reason, false) ||
	    put_field(out, e->status, false) || put_field(out, e->response, false) ||
	    put_field(out, e->source, false) || put_field(out, first, false) ||
	    put_field(out, last, false) || put_field(out, count, true))
		return -EIO;
	return 0;
}

int supp_export_csv(struct supp *s, FILE *out)
{
	int rc;

	if (!s || !out)
		return -EINVAL;
	fputs("address,reason,status,response,source,first_seen,last_seen,count\n", out);
	if (ferror(out))
		return -EIO;
	/* One SELECT reads one snapshot, whatever is written meanwhile. */
	rc = supp_list(s, NULL, export_row, out);
	if (rc >= 0 && fflush(out) != 0)
		rc = -EIO;
	return rc;
}

/* ---- import ---- */

enum imp_col {
	COL_IGNORE = 0,
	COL_ADDRESS,
	COL_REASON,
	COL_STATUS,
	COL_RESPONSE,
	COL_SOURCE,
	COL_FIRST,
	COL_LAST,
	COL_COUNT,
	COL_SES_TIME,           /* SES "LastUpdateTime": a hint, never an error */
	COL_KINDS
};

static const struct {
	const char *name;       /* lower case, without blanks, '_' or '-' */
	enum imp_col kind;
} imp_names[] = {
	{ "address", COL_ADDRESS },
	{ "email", COL_ADDRESS },
	{ "emailaddress", COL_ADDRESS },
	{ "reason", COL_REASON },
	{ "status", COL_STATUS },
	{ "response", COL_RESPONSE },
	{ "source", COL_SOURCE },
	{ "firstseen", COL_FIRST },
	{ "lastseen", COL_LAST },
	{ "count", COL_COUNT },
	{ "lastupdatetime", COL_SES_TIME },
};

struct imp_row {
	struct supp_entry e;
	long line;
};

struct imp {
	int64_t now_ms;
	long line;              /* the physical line being fed to the parser */
	long record_line;       /* the line on which the current record began */
	bool at_record_start;   /* no byte of the next record has been fed */
	bool header_done;
	enum imp_col *kinds;    /* per header column */
	size_t ncols;
	size_t field;           /* index of the next field in the record */
	char *val[COL_KINDS];   /* this record's values, by kind */
	bool nonempty;          /* this record has a non-empty field */
	size_t record_bytes;
	struct imp_row *rows;
	size_t nrows, caprows;
	int rc;                 /* first error, latched */
	long err_line;
	char *err;
	size_t errlen;
};

static void imp_fail(struct imp *im, int rc, long line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Latches the first error; line 0 = not tied to a line. */
static void imp_fail(struct imp *im, int rc, long line, const char *fmt, ...)
{
	va_list ap;

	if (im->rc)
		return;
	im->rc = rc;
	im->err_line = line;
	if (im->err && im->errlen) {
		va_start(ap, fmt);
		vsnprintf(im->err, im->errlen, fmt, ap);
		va_end(ap);
	}
}

static void imp_clear_record(struct imp *im)
{
	for (int k = 0; k < COL_KINDS; k++) {
		free(im->val[k]);
		im->val[k] = NULL;
	}
	im->field = 0;
	im->nonempty = false;
	im->record_bytes = 0;
}

static void imp_header_field(struct imp *im, const char *v, size_t len)
{
	char name[32];
	size_t n = 0;
	enum imp_col kind = COL_IGNORE;
	enum imp_col *k;

	if (im->ncols >= SUPP_CSV_COLUMNS_MAX) {
		imp_fail(im, -EINVAL, im->record_line, "the header has more than %d columns",
		         SUPP_CSV_COLUMNS_MAX);
		return;
	}
	/* "EmailAddress", "email_address" and "E-mail Address" alike. */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == ' ' || c == '\t' || c == '_' || c == '-')
			continue;
		if (n == sizeof(name) - 1) {
			n = 0;  /* longer than any name we know */
			break;
		}
		name[n++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
	name[n] = '\0';
	for (size_t i = 0; n && i < sizeof(imp_names) / sizeof(imp_names[0]); i++)
		if (strcmp(name, imp_names[i].name) == 0)
			kind = imp_names[i].kind;
	for (size_t i = 0; kind != COL_IGNORE && i < im->ncols; i++) {
		if (im->kinds[i] == kind) {
			imp_fail(im, -EINVAL, im->record_line,
			         "the header has two columns for the same thing (\"%.*s\")",
			         (int)(len > 40 ? 40 : len), v);
			return;
		}
	}
	k = realloc(im->kinds, (im->ncols + 1) * sizeof(*k));
	if (!k) {
		imp_fail(im, -ENOMEM, 0, "out of memory");
		return;
	}
	im->kinds = k;
	im->kinds[im->ncols++] = kind;
}

/* libcsv: the end of a field. */
static void imp_field(void *data, size_t len, void *arg)
{
	struct imp *im = arg;
	const char *v = data ? data : "";
	size_t i = im->field++;

	if (im->rc)
		return;
	if (!im->header_done) {
		imp_header_field(im, v, len);
		return;
	}
	if (len)
		im->nonempty = true;
	if (i >= im->ncols || im->kinds[i] == COL_IGNORE || len == 0)
		return;
	if (memchr(v, '\0', len)) {
		imp_fail(im, -EINVAL, im->record_line, "a field contains a NUL byte");
		return;
	}
	im->val[im->kinds[i]] = strndup(v, len);
	if (!im->val[im->kinds[i]])
		imp_fail(im, -ENOMEM, 0, "out of memory");
}

static bool parse_count(const char *v, int64_t *out)
{
	char *end;
	long long n;

	if (*v < '0' || *v > '9')
		return false;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || *end || n < 1)
		return false;
	*out = n;
	return true;
}

static void imp_take(struct imp *im, enum imp_col k, char **dst)
{
	*dst = im->val[k];
	im->val[k] = NULL;
}

/* A data record is complete: check it and keep it. */
static void imp_data_record(struct imp *im)
{
	struct imp_row r = { .line = im->record_line };
	const char *v;

	if (!im->nonempty)
		return;         /* ",,," from a spreadsheet */
	if (im->field != im->ncols) {
		imp_fail(im, -EINVAL, im->record_line, "the row has %zu fields, the header %zu",
		         im->field, im->ncols);
		return;
	}
	v = im->val[COL_ADDRESS];
	if (!v) {
		imp_fail(im, -EINVAL, im->record_line, "the row has no address");
		return;
	}
	if (!supp_address_valid(v)) {
		imp_fail(im, -EINVAL, im->record_line, "\"%.80s\" is not a mail address", v);
		return;
	}
	r.e.first_ms = r.e.last_ms = im->now_ms;
	r.e.count = 1;
	if ((v = im->val[COL_SES_TIME]) && clock_rfc3339_parse(v, &r.e.last_ms) == 0)
		r.e.first_ms = r.e.last_ms;
	if ((v = im->val[COL_LAST]) && clock_rfc3339_parse(v, &r.e.last_ms) < 0) {
		imp_fail(im, -EINVAL, im->record_line,
		         "last_seen \"%.40s\" is not an RFC 3339 time", v);
		return;
	}
	if ((v = im->val[COL_FIRST]) && clock_rfc3339_parse(v, &r.e.first_ms) < 0) {
		imp_fail(im, -EINVAL, im->record_line,
		         "first_seen \"%.40s\" is not an RFC 3339 time", v);
		return;
	}
	if (!im->val[COL_FIRST] && r.e.first_ms > r.e.last_ms)
		r.e.first_ms = r.e.last_ms;
	if (!im->val[COL_LAST] && r.e.last_ms < r.e.first_ms)
		r.e.last_ms = r.e.first_ms;
	if (r.e.first_ms > r.e.last_ms) {
		imp_fail(im, -EINVAL, im->record_line, "first_seen is after last_seen");
		return;
	}
	if ((v = im->val[COL_COUNT]) && !parse_count(v, &r.e.count)) {
		imp_fail(im, -EINVAL, im->record_line,
		         "count \"%.40s\" is not a positive number", v);
		return;
	}
	if (im->nrows == im->caprows) {
		size_t cap = im->caprows ? im->caprows * 2 : 64;
		struct imp_row *rows = realloc(im->rows, cap * sizeof(*rows));

		if (!rows) {
			imp_fail(im, -ENOMEM, 0, "out of memory");
			return;
		}
		im->rows = rows;
		im->caprows = cap;
	}
	imp_take(im, COL_ADDRESS, &r.e.address);
	imp_take(im, COL_REASON, &r.e.reason);
	imp_take(im, COL_STATUS, &r.e.status);
	imp_take(im, COL_RESPONSE, &r.e.response);
	imp_take(im, COL_SOURCE, &r.e.source);
	im->rows[im->nrows++] = r;
}

/* libcsv: the end of a record. */
static void imp_record(int c, void *arg)
{
	struct imp *im = arg;
	bool has_address = false;

	(void)c;
	if (im->rc)
		goto out;
	if (im->header_done) {
		imp_data_record(im);
		goto out;
	}
	for (size_t i = 0; i < im->ncols; i++)
		has_address |= im->kinds[i] == COL_ADDRESS;
	if (!has_address)
		imp_fail(im, -EINVAL, im->record_line, "the header names no address column "
		         "(\"address\", \"email\" or \"EmailAddress\")");
	im->header_done = true;
out:
	imp_clear_record(im);
	im->at_record_start = true;
}

static bool is_blank_line(const char *b, size_t n)
{
	return (n == 1 && b[0] == '\n') || (n == 2 && b[0] == '\r' && b[1] == '\n');
}

/*
 * Feeds in to the parser one physical line at a time, so that im->line is
 * the line being parsed when a callback runs and im->record_line the line
 * where the record began (libcsv counts no lines, and a quoted field may
 * span several). libcsv skips empty lines without a callback; so do we.
 */
static void imp_parse(struct imp *im, FILE *in)
{
	struct csv_parser p;
	char buf[16384];
	size_t n;
	bool first = true;

	if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
		imp_fail(im, -ENOMEM, 0, "out of memory");
		return;
	}
	im->line = 1;
	im->record_line = 1;
	im->at_record_start = true;
	while (!im->rc && (n = fread(buf, 1, sizeof(buf), in)) > 0) {
		const char *b = buf;

		if (first && n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0) {
			b += 3;     /* the byte order mark spreadsheets write */
			n -= 3;
		}
		first = false;
		while (n > 0 && !im->rc) {
			const char *nl = memchr(b, '\n', n);
			size_t seg = nl ? (size_t)(nl - b) + 1 : n;
			bool was_start = im->at_record_start;

			if (was_start) {
				im->record_line = im->line;
				im->record_bytes = 0;
			}
			im->record_bytes += seg;
			if (im->record_bytes > SUPP_CSV_RECORD_MAX) {
				imp_fail(im, -EINVAL, im->record_line,
				         "the row is longer than %d bytes", SUPP_CSV_RECORD_MAX);
				break;
			}
			im->at_record_start = false;
			if (csv_parse(&p, b, seg, imp_field, imp_record, im) != seg) {
				imp_fail(im, -EINVAL, im->line, "%s",
				         csv_error(&p) == CSV_EPARSE ?
				         "a quote is misplaced (a field with quotes in it must be "
				         "quoted, and its quotes doubled)" :
				         csv_strerror(csv_error(&p)));
				break;
			}
			if (was_start && !im->at_record_start && is_blank_line(b, seg))
				im->at_record_start = true;
			b += seg;
			n -= seg;
			if (nl)
				im->line++;
		}
	}
	if (!im->rc && ferror(in))
		imp_fail(im, -EIO, 0, "cannot read the file: %s", strerror(errno));
	if (!im->rc && csv_fini(&p, imp_field, imp_record, im) != 0)
		imp_fail(im, -EINVAL, im->record_line,
		         "a quoted field is not closed at the end of the file");
	if (!im->rc && !im->header_done)
		imp_fail(im, -EINVAL, 1, "the file is empty; expected a header line");
	csv_free(&p);
}

static void imp_free(struct imp *im)
{
	imp_clear_record(im);
	for (size_t i = 0; i < im->nrows; i++)
		supp_entry_free(&im->rows[i].e);
	free(im->rows);
	free(im->kinds);
}


/* ---- the interface: pick the store, check, dispatch ------------------- */

int supp_entry_copy(struct supp_entry *dst, const struct supp_entry *src)
{
	int rc = 0;

	dst->address = supp_dup_or_null(src->address, &rc);
	dst->reason = supp_dup_or_null(src->reason, &rc);
	dst->status = supp_dup_or_null(src->status, &rc);
	dst->response = supp_dup_or_null(src->response, &rc);
	dst->source = supp_dup_or_null(src->source, &rc);
	dst->first_ms = src->first_ms;
	dst->last_ms = src->last_ms;
	dst->count = src->count;
	if (rc < 0)
		supp_entry_free(dst);
	return rc;
}

bool supp_db_is_pg(const char *db)
{
	return db && (strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0);
}

/*
 * The URI without a password: "postgresql://user:secret@host/db?password=x&sslmode=require"
 * becomes "postgresql://user@host/db?sslmode=require". A file path is
 * shown as it is.
 */
void supp_db_display(const char *db, char *out, size_t cap)
{
	size_t o = 0;
	const char *p, *auth_end, *slash, *q;

	if (!cap)
		return;
	out[0] = '\0';
	if (!db)
		return;
	if (!supp_db_is_pg(db)) {
		snprintf(out, cap, "%s", db);
		return;
	}
#define PUT(s, n) do { size_t n_ = (n); if (o + n_ >= cap) n_ = cap - 1 - o; \
		memcpy(out + o, (s), n_); o += n_; out[o] = '\0'; } while (0)
	p = strstr(db, "://") + 3;
	PUT(db, (size_t)(p - db));
	slash = p + strcspn(p, "/?");
	auth_end = memchr(p, '@', (size_t)(slash - p));
	if (auth_end) {
		/* The last '@' before the host part ends the user info. */
		for (const char *a = auth_end; a < slash; a++)
			if (*a == '@')
				auth_end = a;
		const char *colon = memchr(p, ':', (size_t)(auth_end - p));
		PUT(p, (size_t)((colon ? colon : auth_end) - p));
		PUT("@", 1);
		p = auth_end + 1;
	}
	q = strchr(p, '?');
	PUT(p, q ? (size_t)(q - p) : strlen(p));
	if (q) {
		bool first = true;

		q++;
		while (*q) {
			size_t n = strcspn(q, "&");

			if (!(n >= 9 && strncasecmp(q, "password=", 9) == 0)) {
				PUT(first ? "?" : "&", 1);
				PUT(q, n);
				first = false;
			}
			q += n;
			if (*q == '&')
				q++;
		}
	}
#undef PUT
}

int supp_open_spool(const char *db, const char *local_dir, struct supp **out)
{
	struct supp *s;
	int rc;

	if (!db || !*db || !out)
		return -EINVAL;
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	supp_db_display(db, s->display, sizeof(s->display));
	if (supp_db_is_pg(db)) {
		s->be = &supp_pg_backend;
		rc = supp_pg_open(db, local_dir, &s->h);
	} else {
		s->be = &supp_sqlite_backend;
		rc = supp_sqlite_open(db, &s->h);
	}
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int supp_open(const char *db, struct supp **out)
{
	return supp_open_spool(db, NULL, out);
}

void supp_close(struct supp *s)
{
	if (!s)
		return;
	s->be->close(s->h);
	free(s);
}

int supp_lookup(struct supp *s, const char *address, struct supp_entry *e)
{
	if (!s || !address)
		return -EINVAL;
	if (e)
		memset(e, 0, sizeof(*e));
	if (!supp_address_valid(address))
		return 0;
	return s->be->lookup(s->h, address, e);
}

int supp_add(struct supp *s, const char *address, const char *reason, const char *status,
             const char *response, const char *source, int64_t now_ms)
{
	const struct supp_entry e = {
		.address = (char *)address,
		.reason = (char *)(reason && *reason ? reason : NULL),
		.status = (char *)(status && *status ? status : NULL),
		.response = (char *)(response && *response ? response : NULL),
		.source = (char *)(source && *source ? source : NULL),
		.first_ms = now_ms,
		.last_ms = now_ms,
		.count = 1,
	};

	if (!s || !supp_address_valid(address))
		return -EINVAL;
	return s->be->add(s->h, &e);
}

int supp_remove(struct supp *s, const char *address)
{
	if (!s || !address)
		return -EINVAL;
	return s->be->remove(s->h, address);
}

int supp_list(struct supp *s, const char *search,
              int (*cb)(void *arg, const struct supp_entry *e), void *arg)
{
	if (!s || !cb)
		return -EINVAL;
	return s->be->list(s->h, search, cb, arg);
}

int64_t supp_data_version(struct supp *s)
{
	if (!s)
		return -EINVAL;
	return s->be->data_version(s->h);
}

int supp_import_csv_cb(struct supp *s, FILE *in, const char *source, int64_t now_ms,
                       void (*on_new)(void *arg, const char *address), void *arg,
                       long *err_line, char *err, size_t errlen)
{
	struct imp im = {
		.now_ms = now_ms,
		.err = err,
		.errlen = errlen,
	};
	bool *fresh = NULL;
	size_t failed = 0;
	int rc;

	if (err_line)
		*err_line = 0;
	if (err && errlen)
		err[0] = '\0';
	if (!s || !in)
		return -EINVAL;
	imp_parse(&im, in);
	if (im.rc) {
		rc = im.rc;
		if (err_line)
			*err_line = im.err_line;
		goto out;
	}
	fresh = calloc(im.nrows ? im.nrows : 1, sizeof(*fresh));
	if (!fresh) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < im.nrows; i++) {
		struct supp_entry *e = &im.rows[i].e;

		if (!e->source && source) {
			e->source = strdup(source);
			if (!e->source) {
				rc = -ENOMEM;
				goto out;
			}
		}
	}
	rc = 0;
	if (im.nrows) {
		/* The rows are struct imp_row; give the backend plain entries. */
		struct supp_entry *rows = calloc(im.nrows, sizeof(*rows));

		if (!rows) {
			rc = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < im.nrows; i++)
			rows[i] = im.rows[i].e;
		rc = s->be->merge(s->h, rows, im.nrows, fresh, &failed);
		free(rows);
	}
	if (rc < 0) {
		if (err_line && failed < im.nrows)
			*err_line = im.rows[failed].line;
		goto db_error;
	}
	for (size_t i = 0; on_new && i < im.nrows; i++)
		if (fresh[i])
			on_new(arg, im.rows[i].e.address);
	rc = im.nrows > INT_MAX ? INT_MAX : (int)im.nrows;
	goto out;
db_error:
	if (err && errlen)
		snprintf(err, errlen, "%s", supp_strerror(rc));
out:
	free(fresh);
	imp_free(&im);
	return rc;
}

int supp_import_csv(struct supp *s, FILE *in, const char *source, int64_t now_ms,
                    long *err_line, char *err, size_t errlen)
{
	return supp_import_csv_cb(s, in, source, now_ms, NULL, NULL, err_line, err, errlen);
}

int supp_sent_add(struct supp *s, const char *queue_id, const char *rcpt, const char *sender,
                  const char *service_id, int64_t now_ms)
{
	if (!s || !queue_id || !rcpt || !sender)
		return -EINVAL;
	return s->be->sent_add(s->h, queue_id, rcpt, sender, service_id, now_ms);
}

int supp_sent_find(struct supp *s, const char *queue_id, const char *service_id,
                   const char *rcpt, char **sender, char **qid)
{
	*sender = *qid = NULL;
	if (!s || !rcpt || (!queue_id && !service_id))
		return s && rcpt ? 0 : -EINVAL;
	return s->be->sent_find(s->h, queue_id, service_id, rcpt, sender, qid);
}

int supp_sent_prune(struct supp *s, int64_t before_ms)
{
	if (!s)
		return -EINVAL;
	return s->be->sent_prune(s->h, before_ms);
}

json_t *supp_status_json(struct supp *s, const char *db)
{
	json_t *o = json_object();
	char shown[256];

	if (!s) {
		supp_db_display(db, shown, sizeof(shown));
		json_object_set_new(o, "store", json_string(supp_db_is_pg(db) ? "postgresql" : "sqlite"));
		json_object_set_new(o, "db", json_string(shown));
		json_object_set_new(o, "reachable", json_false());
		json_object_set_new(o, "error", json_string("the suppression list could not be opened"));
		return o;
	}
	json_object_set_new(o, "store", json_string(s->be->name));
	json_object_set_new(o, "db", json_string(s->display));
	s->be->status(s->h, o);
	return o;
}
