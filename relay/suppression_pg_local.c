/*
 * NAME
 *	suppression_pg_local - the daemon's local copy of the PostgreSQL store
 * SUMMARY
 *	Part of the PostgreSQL store (relay/suppression_pg_int.h; how the
 *	store works is told in relay/suppression_pg.c). The SQLite file
 *	local_dir/suppression-pg.db: the copy of the whole list (entries),
 *	the daemon's own sent records (sent), the copy's random node name
 *	(meta) and the journal of the writes not yet on the server; opening
 *	it, an entry operation applied to the copy as the SQLite store does
 *	it, and the journal's rows written, read, counted and replayed.
 * DESCRIPTION
 *	Errors are negative errno values (spg_lerr() maps SQLite's codes).
 *	spg_local_apply() and spg_journal_replay() run inside the caller's
 *	transaction.
 * TOUCHES
 *	local_dir/suppression-pg.db and its -wal and -shm files (created
 *	0640), through the connections it is given.
 */
#include "relay/suppression_pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOCAL_BUSY_MS 5000

static const char local_schema[] =
	"PRAGMA journal_mode = WAL;"
	"CREATE TABLE IF NOT EXISTS entries ("
	" address TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,"
	" reason TEXT, status TEXT, response TEXT, source TEXT,"
	" first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, count INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS sent ("
	" queue_id TEXT NOT NULL, rcpt TEXT NOT NULL COLLATE NOCASE, sender TEXT NOT NULL,"
	" service_id TEXT, sent_ms INTEGER NOT NULL, PRIMARY KEY (queue_id, rcpt)"
	") WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS sent_service_id ON sent (service_id);"
	"CREATE INDEX IF NOT EXISTS sent_time ON sent (sent_ms);"
	/* What is not on the server yet, in order. */
	/* This copy's random name, for the ids of its journal rows. */
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"INSERT OR IGNORE INTO meta (key, value) VALUES ('node', lower(hex(randomblob(8))));"
	"CREATE TABLE IF NOT EXISTS journal ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL,"
	" address TEXT, reason TEXT, status TEXT, response TEXT, source TEXT,"
	" first_ms INTEGER, last_ms INTEGER, count INTEGER,"
	" queue_id TEXT, sender TEXT, service_id TEXT)";

int spg_lerr(sqlite3 *db, int rc)
{
	return supp_sqlite_errno(db, rc);
}

int spg_lexec(sqlite3 *db, const char *sql)
{
	return spg_lerr(db, sqlite3_exec(db, sql, NULL, NULL, NULL));
}

/*
 * create: make the file first, 0640 (SQLite would give it 0644). Only
 * before any connection of this process has it open: closing a
 * descriptor of the file drops every POSIX lock the process holds on it,
 * SQLite's included, and a reader elsewhere then rebuilds the WAL index
 * under our feet.
 */
int spg_local_open(const char *path, bool create, sqlite3 **out)
{
	sqlite3 *db = NULL;
	int fd, rc;

	*out = NULL;
	if (create) {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
		close(fd);
	}
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = spg_lerr(db, rc);
		sqlite3_close(db);
		return rc ? rc : -EIO;
	}
	sqlite3_busy_timeout(db, LOCAL_BUSY_MS);
	rc = spg_lexec(db, local_schema);
	if (rc) {
		sqlite3_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

void spg_bind_t(sqlite3_stmt *st, int i, const char *v)
{
	if (v && *v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

const char *spg_ctext(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* Runs sql (?1..?8 = the entry's columns, as far as used) once. */
static int lrun_entry(sqlite3 *db, const char *sql, const struct supp_entry *e)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	int n;

	if (rc != SQLITE_OK)
		return spg_lerr(db, rc);
	n = sqlite3_bind_parameter_count(st);
	spg_bind_t(st, 1, e->address);
	if (n >= 2)
		spg_bind_t(st, 2, e->reason);
	if (n >= 3)
		spg_bind_t(st, 3, e->status);
	if (n >= 4)
		spg_bind_t(st, 4, e->response);
	if (n >= 5)
		spg_bind_t(st, 5, e->source);
	if (n >= 6)
		sqlite3_bind_int64(st, 6, e->first_ms);
	if (n >= 7)
		sqlite3_bind_int64(st, 7, e->last_ms);
	if (n >= 8)
		sqlite3_bind_int64(st, 8, e->count);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : spg_lerr(db, rc);
	sqlite3_finalize(st);
	return rc;
}

/*
 * Applies an entry operation to the local copy: "add" and "merge" as the
 * SQLite store does them, "remove", or "put" (the server's row as it is).
 * Returns 1 when the address was not listed before (add, merge) or was
 * removed (remove), 0 otherwise, <0 on error. Inside a transaction.
 */
int spg_local_apply(sqlite3 *db, const char *op, const struct supp_entry *e)
{
	sqlite3_stmt *st;
	int rc, had;

	rc = sqlite3_prepare_v2(db, "SELECT 1 FROM entries WHERE address = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return spg_lerr(db, rc);
	sqlite3_bind_text(st, 1, e->address, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	had = rc == SQLITE_ROW;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return spg_lerr(db, rc);
	if (strcmp(op, "remove") == 0) {
		rc = lrun_entry(db, "DELETE FROM entries WHERE address = ?1", e);
		return rc ? rc : had;
	}
	if (strcmp(op, "put") == 0 || !had) {
		rc = lrun_entry(db, "INSERT OR REPLACE INTO entries (" PG_COLUMNS ")"
		                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", e);
		return rc ? rc : !had;
	}
	if (strcmp(op, "add") == 0)
		rc = lrun_entry(db, "UPDATE entries SET reason = coalesce(?2, reason),"
		                    " status = coalesce(?3, status), response = coalesce(?4, response),"
		                    " last_ms = max(last_ms, ?7), count = count + 1"
		                    " WHERE address = ?1", e);
	else
		rc = lrun_entry(db, "UPDATE entries SET"
		                    " reason = iif(?7 >= last_ms, coalesce(?2, reason), reason),"
		                    " status = iif(?7 >= last_ms, coalesce(?3, status), status),"
		                    " response = iif(?7 >= last_ms, coalesce(?4, response), response),"
		                    " first_ms = min(first_ms, ?6), last_ms = max(last_ms, ?7),"
		                    " count = max(count, ?8) WHERE address = ?1", e);
	return rc ? rc : 0;
}

int spg_journal_put(sqlite3 *db, const char *op, const struct supp_entry *e,
                    const char *queue_id, const char *sender, const char *service_id)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "INSERT INTO journal (op, address, reason, status,"
	                                " response, source, first_ms, last_ms, count, queue_id,"
	                                " sender, service_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
	                                " ?8, ?9, ?10, ?11, ?12)", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return spg_lerr(db, rc);
	sqlite3_bind_text(st, 1, op, -1, SQLITE_STATIC);
	spg_bind_t(st, 2, e ? e->address : NULL);
	spg_bind_t(st, 3, e ? e->reason : NULL);
	spg_bind_t(st, 4, e ? e->status : NULL);
	spg_bind_t(st, 5, e ? e->response : NULL);
	spg_bind_t(st, 6, e ? e->source : NULL);
	sqlite3_bind_int64(st, 7, e ? e->first_ms : 0);
	sqlite3_bind_int64(st, 8, e ? e->last_ms : 0);
	sqlite3_bind_int64(st, 9, e ? e->count : 0);
	spg_bind_t(st, 10, queue_id);
	spg_bind_t(st, 11, sender);
	spg_bind_t(st, 12, service_id);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : spg_lerr(db, rc);
	sqlite3_finalize(st);
	return rc;
}

static void jrow_free(struct jrow *j)
{
	supp_entry_free(&j->e);
	free(j->queue_id);
	free(j->sender);
	free(j->service_id);
}

/* Up to max journal rows after seq (all when max is 0), or those for one
 * address (entry ops only) when address is set. */
int spg_journal_read(sqlite3 *db, int64_t after, int max, const char *address, GArray *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, address ?
	                            "SELECT seq, op, " PG_COLUMNS ", queue_id, sender, service_id"
	                            " FROM journal WHERE address = ?1 COLLATE NOCASE AND"
	                            " op IN ('add', 'merge', 'remove') ORDER BY seq" :
	                            "SELECT seq, op, " PG_COLUMNS ", queue_id, sender, service_id"
	                            " FROM journal WHERE seq > ?2 ORDER BY seq LIMIT ?3",
	                            -1, &st, NULL);
	int err = 0;

	if (rc != SQLITE_OK)
		return spg_lerr(db, rc);
	if (address)
		sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	else {
		sqlite3_bind_int64(st, 2, after);
		sqlite3_bind_int(st, 3, max > 0 ? max : -1);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct jrow j = { .seq = sqlite3_column_int64(st, 0) };
		struct supp_entry e = {
			.address = (char *)spg_ctext(st, 2),
			.reason = (char *)spg_ctext(st, 3),
			.status = (char *)spg_ctext(st, 4),
			.response = (char *)spg_ctext(st, 5),
			.source = (char *)spg_ctext(st, 6),
			.first_ms = sqlite3_column_int64(st, 7),
			.last_ms = sqlite3_column_int64(st, 8),
			.count = sqlite3_column_int64(st, 9),
		};

		snprintf(j.op, sizeof(j.op), "%s", spg_ctext(st, 1) ? spg_ctext(st, 1) : "");
		if (supp_entry_copy(&j.e, &e) < 0)
			err = -ENOMEM;
		j.queue_id = supp_dup_or_null(spg_ctext(st, 10), &err);
		j.sender = supp_dup_or_null(spg_ctext(st, 11), &err);
		j.service_id = supp_dup_or_null(spg_ctext(st, 12), &err);
		g_array_append_val(out, j);
	}
	rc = rc == SQLITE_DONE ? err : spg_lerr(db, rc);
	sqlite3_finalize(st);
	return rc;
}

void spg_jrows_free(GArray *a)
{
	for (guint i = 0; i < a->len; i++)
		jrow_free(&g_array_index(a, struct jrow, i));
	g_array_set_size(a, 0);
}

int64_t spg_journal_count(sqlite3 *db)
{
	sqlite3_stmt *st;
	int64_t n = 0;

	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM journal", -1, &st, NULL) != SQLITE_OK)
		return 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* Applies the journal's pending entry ops (all, or one address's) to the
 * copy again, after the server's rows replaced it. In a transaction. */
int spg_journal_replay(sqlite3 *db, const char *address)
{
	GArray *rows = g_array_new(FALSE, TRUE, sizeof(struct jrow));
	int rc = spg_journal_read(db, 0, 0, address, rows);

	for (guint i = 0; rc >= 0 && i < rows->len; i++) {
		struct jrow *j = &g_array_index(rows, struct jrow, i);

		if (j->e.address && (strcmp(j->op, "add") == 0 || strcmp(j->op, "merge") == 0 ||
		                     strcmp(j->op, "remove") == 0))
			rc = spg_local_apply(db, j->op, &j->e);
	}
	spg_jrows_free(rows);
	g_array_free(rows, TRUE);
	return rc < 0 ? rc : 0;
}
