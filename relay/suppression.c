/*
 * suppression - the suppression list in SQLite. See suppression.h for the
 * contract. Two promises shape this file: the daemon and hikyakuctl may
 * write at the same moment (WAL, a busy timeout, one short transaction per
 * change, BEGIN IMMEDIATE so that a writer never has to upgrade a read
 * lock and fail with SQLITE_BUSY_SNAPSHOT), and a bad CSV file imports
 * nothing (every row is parsed and checked before the one transaction).
 */
#include "relay/suppression.h"
#include "util/fsutil.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define SUPP_BUSY_TIMEOUT_MS 5000

/* Bounds of the import: a record (one row, quoted newlines included) and
 * the header's width. A suppression list row is a few hundred bytes. */
#define SUPP_CSV_RECORD_MAX (64 * 1024)
#define SUPP_CSV_COLUMNS_MAX 256

/* Prepared once per connection, finalized by supp_close(). */
enum supp_stmt {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_LOOKUP,
	ST_INSERT,
	ST_UPDATE_ADD,
	ST_UPDATE_IMPORT,
	ST_DELETE,
	ST_LIST,
	ST_SEARCH,
	ST_DATA_VERSION,
	ST_COUNT
};

#define SUPP_COLUMNS "address, reason, status, response, source, first_ms, last_ms, count"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_LOOKUP] = "SELECT " SUPP_COLUMNS " FROM suppression WHERE address = ?1",
	[ST_INSERT] = "INSERT INTO suppression (" SUPP_COLUMNS ")"
	              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
	              " ON CONFLICT (address) DO NOTHING",
	/* supp_add() on a listed address: seen once more. */
	[ST_UPDATE_ADD] = "UPDATE suppression SET"
	                  " reason = coalesce(?2, reason),"
	                  " status = coalesce(?3, status),"
	                  " response = coalesce(?4, response),"
	                  " last_ms = max(last_ms, ?7),"
	                  " count = count + 1"
	                  " WHERE address = ?1",
	/* The import on a listed address: a merge, so that it is idempotent. */
	[ST_UPDATE_IMPORT] = "UPDATE suppression SET"
	                     " reason = iif(?7 >= last_ms, coalesce(?2, reason), reason),"
	                     " status = iif(?7 >= last_ms, coalesce(?3, status), status),"
	                     " response = iif(?7 >= last_ms, coalesce(?4, response), response),"
	                     " first_ms = min(first_ms, ?6),"
	                     " last_ms = max(last_ms, ?7),"
	                     " count = max(count, ?8)"
	                     " WHERE address = ?1",
	[ST_DELETE] = "DELETE FROM suppression WHERE address = ?1",
	[ST_LIST] = "SELECT " SUPP_COLUMNS " FROM suppression ORDER BY address",
	/* LIKE ignores ASCII case; ?1 is %text% with %, _ and \ escaped. */
	[ST_SEARCH] = "SELECT " SUPP_COLUMNS " FROM suppression"
	              " WHERE address LIKE ?1 ESCAPE '\\' OR reason LIKE ?1 ESCAPE '\\'"
	              " ORDER BY address",
	[ST_DATA_VERSION] = "PRAGMA data_version",
};

/*
 * Schema migrations: step i brings user_version i to i + 1. Only ever
 * append. COLLATE NOCASE makes the primary key, and so every lookup,
 * ASCII case-insensitive (SPEC §6).
 */
static const char *const migrations[SUPP_SCHEMA_VERSION] = {
	"CREATE TABLE IF NOT EXISTS suppression ("
	" address TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,"
	" reason TEXT,"
	" status TEXT,"
	" response TEXT,"
	" source TEXT,"
	" first_ms INTEGER NOT NULL,"
	" last_ms INTEGER NOT NULL,"
	" count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1)"
	") WITHOUT ROWID",
	/* 2: what went through the delivery service, to match its bounces. */
	"CREATE TABLE IF NOT EXISTS sent ("
	" queue_id TEXT NOT NULL,"
	" rcpt TEXT NOT NULL COLLATE NOCASE,"
	" sender TEXT NOT NULL,"
	" service_id TEXT,"
	" sent_ms INTEGER NOT NULL,"
	" PRIMARY KEY (queue_id, rcpt)"
	") WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS sent_service_id ON sent (service_id);"
	"CREATE INDEX IF NOT EXISTS sent_time ON sent (sent_ms)",
};

struct supp {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	int64_t data_version;   /* the last PRAGMA data_version seen */
	int64_t generation;     /* what supp_data_version() returns */
};

/* SQLite result codes to the negative errno of this module's contract. */
static int sqlite_errno(sqlite3 *db, int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN: {
		int e = db ? sqlite3_system_errno(db) : 0;
		return e > 0 ? -e : -EACCES;
	}
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
	case SQLITE_FORMAT:
	case SQLITE_SCHEMA:
		return -EBADMSG;
	case SQLITE_CONSTRAINT:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
	case SQLITE_TOOBIG:
		return -EINVAL;
	default:
		return -EIO;
	}
}

const char *supp_strerror(int rc)
{
	switch (rc) {
	case -EINVAL:
		return "invalid address or value";
	case -EBUSY:
		return "the database stayed locked by another process for 5 seconds";
	case -EBADMSG:
		return "the file is not a suppression database, or it is damaged";
	case -ENOTSUP:
		return "the database was written by a newer version of hikyaku";
	default:
		return strerror(rc < 0 ? -rc : rc);
	}
}

static int exec(struct supp *s, const char *sql)
{
	return sqlite_errno(s->db, sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

static int pragma_int(struct supp *s, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return sqlite_errno(s->db, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		*out = 0;
	rc = sqlite3_finalize(st);
	return sqlite_errno(s->db, rc);
}

/* Brings the schema to SUPP_SCHEMA_VERSION, in one write transaction so
 * that two processes opening a new file at once do not both migrate. */
static int migrate(struct supp *s)
{
	int64_t version;
	char sql[64];
	int rc;

	rc = pragma_int(s, "PRAGMA user_version", &version);
	if (rc)
		return rc;
	if (version == SUPP_SCHEMA_VERSION)
		return 0;
	if (version > SUPP_SCHEMA_VERSION || version < 0)
		return -ENOTSUP;
	rc = exec(s, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = pragma_int(s, "PRAGMA user_version", &version);
	if (rc)
		goto rollback;
	if (version > SUPP_SCHEMA_VERSION || version < 0) {
		rc = -ENOTSUP;
		goto rollback;
	}
	for (int64_t v = version; v < SUPP_SCHEMA_VERSION; v++) {
		rc = exec(s, migrations[v]);
		if (rc)
			goto rollback;
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SUPP_SCHEMA_VERSION);
	rc = exec(s, sql);
	if (rc)
		goto rollback;
	rc = exec(s, "COMMIT");
	if (rc)
		goto rollback;
	return 0;
rollback:
	exec(s, "ROLLBACK");
	return rc;
}

int supp_open(const char *path, struct supp **out)
{
	struct supp *s;
	int rc, fd;

	if (!path || !*path || !out)
		return -EINVAL;
	*out = NULL;
	rc = fs_mkdir_parent(path, 0750);
	if (rc)
		return rc;
	/*
	 * Create the file ourselves so that it gets 0640 rather than
	 * SQLite's 0644: the list holds customers' addresses. SQLite gives
	 * the -wal and -shm files the database file's mode (and owner, when
	 * run as root), so hikyakuctl run by root does not lock the daemon
	 * out.
	 */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	close(fd);

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		rc = sqlite_errno(s->db, rc);
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	rc = sqlite_errno(s->db, sqlite3_busy_timeout(s->db, SUPP_BUSY_TIMEOUT_MS));
	if (rc)
		goto fail;
	/* Reading the schema is the first access: a file that is not a
	 * database fails here with SQLITE_NOTADB. */
	rc = exec(s, "PRAGMA journal_mode = WAL");
	if (rc)
		goto fail;
	rc = migrate(s);
	if (rc)
		goto fail;
	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                        &s->st[i], NULL);
		if (rc != SQLITE_OK) {
			rc = sqlite_errno(s->db, rc);
			goto fail;
		}
	}
	rc = pragma_int(s, "PRAGMA data_version", &s->data_version);
	if (rc)
		goto fail;
	s->generation = 1;
	*out = s;
	return 0;
fail:
	supp_close(s);
	return rc ? rc : -EIO;
}

void supp_close(struct supp *s)
{
	if (!s)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

/* Runs a statement that returns no row, and resets it. */
static int step_done(struct supp *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : sqlite_errno(s->db, rc ? rc : SQLITE_ERROR);
}

static int begin(struct supp *s)
{
	return step_done(s, s->st[ST_BEGIN]);
}

static int commit(struct supp *s)
{
	int rc = step_done(s, s->st[ST_COMMIT]);

	if (rc == 0)
		s->generation++;
	return rc;
}

static void rollback(struct supp *s)
{
	/* After some errors SQLite has rolled back already. */
	if (!sqlite3_get_autocommit(s->db))
		step_done(s, s->st[ST_ROLLBACK]);
}

/* An empty text is no text: NULL, so that an export reads back the same. */
static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (!v || !*v)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/*
 * Binds ?1..?8 in the order of SUPP_COLUMNS, as far as the statement has
 * them (the updates do not use them all; binding a parameter that the
 * statement does not use is fine, one beyond its last is SQLITE_RANGE).
 */
static int bind_entry(struct supp *s, sqlite3_stmt *st, const struct supp_entry *e)
{
	int n = sqlite3_bind_parameter_count(st);
	int rc = bind_text(st, 1, e->address);

	if (rc == SQLITE_OK && n >= 2)
		rc = bind_text(st, 2, e->reason);
	if (rc == SQLITE_OK && n >= 3)
		rc = bind_text(st, 3, e->status);
	if (rc == SQLITE_OK && n >= 4)
		rc = bind_text(st, 4, e->response);
	if (rc == SQLITE_OK && n >= 5)
		rc = bind_text(st, 5, e->source);
	if (rc == SQLITE_OK && n >= 6)
		rc = sqlite3_bind_int64(st, 6, e->first_ms);
	if (rc == SQLITE_OK && n >= 7)
		rc = sqlite3_bind_int64(st, 7, e->last_ms);
	if (rc == SQLITE_OK && n >= 8)
		rc = sqlite3_bind_int64(st, 8, e->count);
	if (rc != SQLITE_OK) {
		sqlite3_clear_bindings(st);
		return sqlite_errno(s->db, rc);
	}
	return 0;
}

/* Column text of the current row; NULL for SQL NULL. Valid until the next
 * step or reset. */
static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static void row_entry(sqlite3_stmt *st, struct supp_entry *e)
{
	e->address = (char *)col_text(st, 0);
	e->reason = (char *)col_text(st, 1);
	e->status = (char *)col_text(st, 2);
	e->response = (char *)col_text(st, 3);
	e->source = (char *)col_text(st, 4);
	e->first_ms = sqlite3_column_int64(st, 5);
	e->last_ms = sqlite3_column_int64(st, 6);
	e->count = sqlite3_column_int64(st, 7);
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

static char *dup_or_null(const char *v, int *rc)
{
	char *d;

	if (!v)
		return NULL;
	d = strdup(v);
	if (!d)
		*rc = -ENOMEM;
	return d;
}

int supp_lookup(struct supp *s, const char *address, struct supp_entry *e)
{
	sqlite3_stmt *st;
	struct supp_entry row;
	int rc;

	if (!s || !address)
		return -EINVAL;
	if (e)
		memset(e, 0, sizeof(*e));
	if (!supp_address_valid(address))
		return 0;
	st = s->st[ST_LOOKUP];
	rc = sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return sqlite_errno(s->db, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = 0;
	} else if (rc != SQLITE_ROW) {
		rc = sqlite_errno(s->db, rc);
	} else if (!e) {
		rc = 1;
	} else {
		row_entry(st, &row);
		rc = 0;
		e->address = dup_or_null(row.address, &rc);
		e->reason = dup_or_null(row.reason, &rc);
		e->status = dup_or_null(row.status, &rc);
		e->response = dup_or_null(row.response, &rc);
		e->source = dup_or_null(row.source, &rc);
		e->first_ms = row.first_ms;
		e->last_ms = row.last_ms;
		e->count = row.count;
		if (rc < 0)
			supp_entry_free(e);
		else
			rc = 1;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
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

/*
 * Inserts e unless listed, else runs update with the same bindings.
 * Returns 1 inserted, 0 updated, or a negative errno. Inside a
 * transaction.
 */
static int upsert(struct supp *s, const struct supp_entry *e, enum supp_stmt update)
{
	int rc = bind_entry(s, s->st[ST_INSERT], e);

	if (rc)
		return rc;
	rc = step_done(s, s->st[ST_INSERT]);
	if (rc)
		return rc;
	if (sqlite3_changes(s->db) == 1)
		return 1;
	rc = bind_entry(s, s->st[update], e);
	if (rc)
		return rc;
	rc = step_done(s, s->st[update]);
	return rc ? rc : 0;
}

int supp_add(struct supp *s, const char *address, const char *reason, const char *status,
             const char *response, const char *source, int64_t now_ms)
{
	struct supp_entry e = {
		.address = (char *)address,
		.reason = (char *)reason,
		.status = (char *)status,
		.response = (char *)response,
		.source = (char *)source,
		.first_ms = now_ms,
		.last_ms = now_ms,
		.count = 1,
	};
	int rc, added;

	if (!s || !supp_address_valid(address))
		return -EINVAL;
	rc = begin(s);
	if (rc)
		return rc;
	added = upsert(s, &e, ST_UPDATE_ADD);
	if (added < 0) {
		rollback(s);
		return added;
	}
	rc = commit(s);
	if (rc) {
		rollback(s);
		return rc;
	}
	return added;
}

int supp_remove(struct supp *s, const char *address)
{
	sqlite3_stmt *st;
	int rc;

	if (!s || !address)
		return -EINVAL;
	st = s->st[ST_DELETE];
	rc = sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return sqlite_errno(s->db, rc);
	/* One statement in autocommit mode is its own short transaction. */
	rc = step_done(s, st);
	if (rc)
		return rc;
	if (sqlite3_changes(s->db) == 0)
		return 0;
	s->generation++;
	return 1;
}

/* "%text%" for LIKE, with the pattern characters of text escaped. */
static char *like_pattern(const char *text)
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

int supp_list(struct supp *s, const char *search,
              int (*cb)(void *arg, const struct supp_entry *e), void *arg)
{
	sqlite3_stmt *st;
	char *pattern = NULL;
	int rc, n = 0;

	if (!s || !cb)
		return -EINVAL;
	if (search && *search) {
		pattern = like_pattern(search);
		if (!pattern)
			return -ENOMEM;
		st = s->st[ST_SEARCH];
		rc = sqlite3_bind_text(st, 1, pattern, -1, SQLITE_STATIC);
		if (rc != SQLITE_OK) {
			free(pattern);
			return sqlite_errno(s->db, rc);
		}
	} else {
		st = s->st[ST_LIST];
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct supp_entry e;
		int r;

		row_entry(st, &e);
		r = cb(arg, &e);
		if (r < 0) {
			rc = r;
			goto out;
		}
		n++;
	}
	rc = rc == SQLITE_DONE ? n : sqlite_errno(s->db, rc);
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	free(pattern);
	return rc;
}

int64_t supp_data_version(struct supp *s)
{
	sqlite3_stmt *st;
	int64_t dv;
	int rc;

	if (!s)
		return -EINVAL;
	st = s->st[ST_DATA_VERSION];
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return sqlite_errno(s->db, rc);
	}
	dv = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	/* data_version moves for other connections' commits only; our own
	 * commits bump generation directly. */
	if (dv != s->data_version) {
		s->data_version = dv;
		s->generation++;
	}
	return s->generation;
}

/* ---- time as text: RFC 3339 ---- */

/*
 * "2026-11-26T06:14:04.123Z". The room is what the compiler reckons the
 * format may take for any int, not what a real date needs.
 */
#define TIME_SIZE 96

static void format_time(int64_t ms, char out[TIME_SIZE])
{
	const size_t cap = TIME_SIZE;
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	int frac = (int)(ms - (int64_t)t * 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm)) {
		snprintf(out, cap, "%" PRId64, ms);
		return;
	}
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* n decimal digits at *p; advances *p. */
static bool digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/*
 * RFC 3339 date-time: "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)"; a space
 * for the T and "+hhmm" are accepted too (what spreadsheets and SES's tools
 * write). Fractions beyond milliseconds are dropped.
 */
static bool parse_time(const char *s, int64_t *ms)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec, ms_part = 0, oh = 0, om = 0, sign = 0;
	const char *p = s;
	time_t t;

	if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
	    !digits(&p, 2, &d))
		return false;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return false;
	p++;
	if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
	    !digits(&p, 2, &sec))
		return false;
	if (*p == '.') {
		int scale = 100, nd = 0;

		p++;
		while (*p >= '0' && *p <= '9') {
			ms_part += (*p - '0') * scale;
			scale /= 10;
			p++;
			nd++;
		}
		if (nd == 0)
			return false;
	}
	if (*p == ' ')
		p++;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (!digits(&p, 2, &oh))
			return false;
		if (*p == ':')
			p++;
		if (!digits(&p, 2, &om))
			return false;
	} else {
		return false;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60 || oh > 23 || om > 59)
		return false;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	/* timegm() normalises 31 February to 3 March: refuse such dates. */
	if (!gmtime_r(&t, &tm) || tm.tm_mday != d || tm.tm_mon != mo - 1)
		return false;
	*ms = ((int64_t)t - sign * (oh * 3600 + om * 60)) * 1000 + ms_part;
	return true;
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
	char first[TIME_SIZE], last[TIME_SIZE], count[24];

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
	if ((v = im->val[COL_SES_TIME]) && parse_time(v, &r.e.last_ms))
		r.e.first_ms = r.e.last_ms;
	if ((v = im->val[COL_LAST]) && !parse_time(v, &r.e.last_ms)) {
		imp_fail(im, -EINVAL, im->record_line,
		         "last_seen \"%.40s\" is not an RFC 3339 time", v);
		return;
	}
	if ((v = im->val[COL_FIRST]) && !parse_time(v, &r.e.first_ms)) {
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
	rc = begin(s);
	if (rc)
		goto db_error;
	for (size_t i = 0; i < im.nrows; i++) {
		struct supp_entry *e = &im.rows[i].e;

		if (!e->source && source) {
			e->source = strdup(source);
			if (!e->source) {
				rc = -ENOMEM;
				rollback(s);
				goto out;
			}
		}
		rc = upsert(s, e, ST_UPDATE_IMPORT);
		if (rc < 0) {
			if (err_line)
				*err_line = im.rows[i].line;
			rollback(s);
			goto db_error;
		}
		fresh[i] = rc == 1;
	}
	rc = commit(s);
	if (rc) {
		rollback(s);
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

/* ---- what went through the service ----------------------------------- */

static int one_shot(struct supp *s, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
	return rc == SQLITE_OK ? 0 : sqlite_errno(s->db, rc);
}

int supp_sent_add(struct supp *s, const char *queue_id, const char *rcpt, const char *sender,
                  const char *service_id, int64_t now_ms)
{
	sqlite3_stmt *st;
	int rc = one_shot(s, "INSERT OR REPLACE INTO sent (queue_id, rcpt, sender, service_id, sent_ms)"
	                     " VALUES (?1, ?2, ?3, ?4, ?5)", &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, queue_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, rcpt, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, sender, -1, SQLITE_TRANSIENT);
	if (service_id && *service_id)
		sqlite3_bind_text(st, 4, service_id, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int64(st, 5, now_ms);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sqlite_errno(s->db, rc);
	sqlite3_finalize(st);
	return rc;
}

int supp_sent_find(struct supp *s, const char *queue_id, const char *service_id,
                   const char *rcpt, char **sender, char **qid)
{
	sqlite3_stmt *st;
	*sender = *qid = NULL;
	int rc = one_shot(s, "SELECT sender, queue_id FROM sent WHERE rcpt = ?3 AND"
	                     " ((?1 IS NOT NULL AND queue_id = ?1) OR"
	                     "  (?2 IS NOT NULL AND service_id = ?2))"
	                     " ORDER BY sent_ms DESC LIMIT 1", &st);
	if (rc)
		return rc;
	if (queue_id)
		sqlite3_bind_text(st, 1, queue_id, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 1);
	if (service_id)
		sqlite3_bind_text(st, 2, service_id, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_text(st, 3, rcpt, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*sender = strdup((const char *)sqlite3_column_text(st, 0));
		*qid = strdup((const char *)sqlite3_column_text(st, 1));
		rc = *sender && *qid ? 1 : -ENOMEM;
	} else {
		rc = rc == SQLITE_DONE ? 0 : sqlite_errno(s->db, rc);
	}
	sqlite3_finalize(st);
	return rc;
}

int supp_sent_prune(struct supp *s, int64_t before_ms)
{
	sqlite3_stmt *st;
	int rc = one_shot(s, "DELETE FROM sent WHERE sent_ms < ?1", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, before_ms);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? sqlite3_changes(s->db) : sqlite_errno(s->db, rc);
	sqlite3_finalize(st);
	return rc;
}
