/*
 * NAME
 *	suppression_sqlite - the suppression list in one SQLite file
 * SUMMARY
 *	The embedded default store behind relay/suppression.h (see there for
 *	the contract, and suppression_backend.h for the backend table). Two
 *	promises shape this file: the daemon and hikyakuctl may write at the
 *	same moment (WAL, a busy timeout, one short transaction per change,
 *	BEGIN IMMEDIATE so that a writer never has to upgrade a read lock and
 *	fail with SQLITE_BUSY_SNAPSHOT), and a bad CSV file imports nothing
 *	(suppression.c checks every row before the one transaction here).
 * DESCRIPTION
 *	Table "suppression" (address COLLATE NOCASE, so lookups ignore ASCII
 *	case) and table "sent" (what went through the delivery service, to
 *	match its bounces); PRAGMA user_version is the schema version.
 * TOUCHES
 *	The database file, its -wal and -shm files, and its directory
 *	(created 0750; the file is created 0640).
 */
#include "relay/suppression_backend.h"
#include "util/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

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

struct supp_sqlite {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	int64_t data_version;   /* the last PRAGMA data_version seen */
	int64_t generation;     /* what supp_data_version() returns */
};


int supp_sqlite_errno(sqlite3 *db, int rc)
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

static int exec(struct supp_sqlite *s, const char *sql)
{
	return supp_sqlite_errno(s->db, sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

static int pragma_int(struct supp_sqlite *s, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return supp_sqlite_errno(s->db, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		*out = 0;
	rc = sqlite3_finalize(st);
	return supp_sqlite_errno(s->db, rc);
}

/* Brings the schema to SUPP_SCHEMA_VERSION, in one write transaction so
 * that two processes opening a new file at once do not both migrate. */
static int migrate(struct supp_sqlite *s)
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

static void sq_close(void *h);

int supp_sqlite_open(const char *path, void **out)
{
	struct supp_sqlite *s;
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
		rc = supp_sqlite_errno(s->db, rc);
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	rc = supp_sqlite_errno(s->db, sqlite3_busy_timeout(s->db, SUPP_BUSY_TIMEOUT_MS));
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
			rc = supp_sqlite_errno(s->db, rc);
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
	sq_close(s);
	return rc ? rc : -EIO;
}

static void sq_close(void *h)
{
	struct supp_sqlite *s = h;

	if (!s)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

/* Runs a statement that returns no row, and resets it. */
static int step_done(struct supp_sqlite *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : supp_sqlite_errno(s->db, rc ? rc : SQLITE_ERROR);
}

static int begin(struct supp_sqlite *s)
{
	return step_done(s, s->st[ST_BEGIN]);
}

static int commit(struct supp_sqlite *s)
{
	int rc = step_done(s, s->st[ST_COMMIT]);

	if (rc == 0)
		s->generation++;
	return rc;
}

static void rollback(struct supp_sqlite *s)
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
static int bind_entry(struct supp_sqlite *s, sqlite3_stmt *st, const struct supp_entry *e)
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
		return supp_sqlite_errno(s->db, rc);
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

static int sq_lookup(void *h, const char *address, struct supp_entry *e)
{
	struct supp_sqlite *s = h;
	sqlite3_stmt *st;
	struct supp_entry row;
	int rc;

	st = s->st[ST_LOOKUP];
	rc = sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return supp_sqlite_errno(s->db, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = 0;
	} else if (rc != SQLITE_ROW) {
		rc = supp_sqlite_errno(s->db, rc);
	} else if (!e) {
		rc = 1;
	} else {
		row_entry(st, &row);
		rc = supp_entry_copy(e, &row);
		if (rc == 0)
			rc = 1;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

/*
 * Inserts e unless listed, else runs update with the same bindings.
 * Returns 1 inserted, 0 updated, or a negative errno. Inside a
 * transaction.
 */
static int upsert(struct supp_sqlite *s, const struct supp_entry *e, enum supp_stmt update)
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

static int sq_add(void *h, const struct supp_entry *ep)
{
	struct supp_sqlite *s = h;
	const struct supp_entry e = *ep;
	int rc, added;

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

static int sq_remove(void *h, const char *address)
{
	struct supp_sqlite *s = h;
	sqlite3_stmt *st;
	int rc;

	st = s->st[ST_DELETE];
	rc = sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return supp_sqlite_errno(s->db, rc);
	/* One statement in autocommit mode is its own short transaction. */
	rc = step_done(s, st);
	if (rc)
		return rc;
	if (sqlite3_changes(s->db) == 0)
		return 0;
	s->generation++;
	return 1;
}


static int sq_list(void *h, const char *search,
                   int (*cb)(void *arg, const struct supp_entry *e), void *arg)
{
	struct supp_sqlite *s = h;
	sqlite3_stmt *st;
	char *pattern = NULL;
	int rc, n = 0;

	if (search && *search) {
		pattern = supp_like_pattern(search);
		if (!pattern)
			return -ENOMEM;
		st = s->st[ST_SEARCH];
		rc = sqlite3_bind_text(st, 1, pattern, -1, SQLITE_STATIC);
		if (rc != SQLITE_OK) {
			free(pattern);
			return supp_sqlite_errno(s->db, rc);
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
	rc = rc == SQLITE_DONE ? n : supp_sqlite_errno(s->db, rc);
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	free(pattern);
	return rc;
}

static int64_t sq_data_version(void *h)
{
	struct supp_sqlite *s = h;
	sqlite3_stmt *st;
	int64_t dv;
	int rc;

	st = s->st[ST_DATA_VERSION];
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return supp_sqlite_errno(s->db, rc);
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

/* The rows of an import, checked already, in one transaction. */
static int sq_merge(void *h, struct supp_entry *rows, size_t n, bool *fresh, size_t *failed)
{
	struct supp_sqlite *s = h;
	int rc = begin(s);

	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		rc = upsert(s, &rows[i], ST_UPDATE_IMPORT);
		if (rc < 0) {
			*failed = i;
			rollback(s);
			return rc;
		}
		fresh[i] = rc == 1;
	}
	rc = commit(s);
	if (rc)
		rollback(s);
	return rc;
}

/* ---- what went through the service ----------------------------------- */

static int one_shot(struct supp_sqlite *s, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
	return rc == SQLITE_OK ? 0 : supp_sqlite_errno(s->db, rc);
}

static int sq_sent_add(void *h, const char *queue_id, const char *rcpt, const char *sender,
                       const char *service_id, int64_t now_ms)
{
	struct supp_sqlite *s = h;
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
	rc = rc == SQLITE_DONE ? 0 : supp_sqlite_errno(s->db, rc);
	sqlite3_finalize(st);
	return rc;
}

static int sq_sent_find(void *h, const char *queue_id, const char *service_id,
                        const char *rcpt, char **sender, char **qid)
{
	struct supp_sqlite *s = h;
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
		rc = rc == SQLITE_DONE ? 0 : supp_sqlite_errno(s->db, rc);
	}
	sqlite3_finalize(st);
	return rc;
}

static int sq_sent_prune(void *h, int64_t before_ms)
{
	struct supp_sqlite *s = h;
	sqlite3_stmt *st;
	int rc = one_shot(s, "DELETE FROM sent WHERE sent_ms < ?1", &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, before_ms);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? sqlite3_changes(s->db) : supp_sqlite_errno(s->db, rc);
	sqlite3_finalize(st);
	return rc;
}

static void sq_status(void *h, json_t *o)
{
	(void)h;
	json_object_set_new(o, "reachable", json_true());
}

const struct supp_backend supp_sqlite_backend = {
	.name = "sqlite",
	.close = sq_close,
	.lookup = sq_lookup,
	.add = sq_add,
	.remove = sq_remove,
	.list = sq_list,
	.merge = sq_merge,
	.data_version = sq_data_version,
	.sent_add = sq_sent_add,
	.sent_find = sq_sent_find,
	.sent_prune = sq_sent_prune,
	.status = sq_status,
};
