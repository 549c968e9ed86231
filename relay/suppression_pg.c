/*
 * NAME
 *	suppression_pg - the suppression list in PostgreSQL, shared by several relays
 * SUMMARY
 *	The store behind relay/suppression.h for db = postgresql://... (SPEC
 *	§6.6), with libpq. The entries and the records of mails sent through
 *	the delivery service live on the server, so that what one relay learns
 *	or removes applies on the others, and a bounce that reaches any relay
 *	is matched to the mail that another one sent.
 * DESCRIPTION
 *	Tables (created on first use, in one transaction under an advisory
 *	lock so that two relays starting at once do not collide):
 *	hikyaku_schema(version), hikyaku_suppression (address_key = the
 *	address with ASCII letters in lower case, the primary key; the other
 *	columns as the SQLite store's, and "changed" from the sequence
 *	hikyaku_change_seq), hikyaku_sent (queue_id, rcpt_key, rcpt, sender,
 *	service_id, sent_ms), hikyaku_applied (op_id, applied_ms: the
 *	journal rows written, see below). Every write notifies channel
 *	hikyaku_suppression with the address key.
 *
 *	Without a local directory (hikyakuctl) every call goes to the server
 *	on one connection, each waiting at most PG_CALL_MS (connect_timeout 3
 *	s; a client-side deadline on every query, as statement_timeout cannot
 *	help when the server is gone).
 *
 *	With one (the daemon), local_dir/suppression-pg.db (SQLite) holds a
 *	copy of the whole list, the daemon's own records of sent mail, and a
 *	journal of the writes not yet on the server. Lookups read the copy;
 *	add, remove, the import and the sent records write the copy and the
 *	journal in one local transaction (durable: nothing learned is lost if
 *	the server is down or the relay is killed) and wake the sync thread.
 *	The sync thread owns a second connection: on connecting it writes
 *	the journal, LISTENs, reads the whole list into the copy (journal
 *	rows still pending are applied again on top), and then refreshes one
 *	address per notification, writes the journal as it grows, pings every
 *	PG_PING_MS and reads everything again every PG_RESYNC_MS. Losing the
 *	connection (or a deadline passing) marks the server unreachable and
 *	is logged once on stderr, as is its return. supp_sent_find() looks
 *	locally first and asks the server only while it is reachable.
 *
 *	A journal row that the server refuses for its content (not for the
 *	connection) is logged and dropped, so that one bad row cannot stop
 *	the rest. Each journalled "add" is written once only, even when the
 *	relay dies after the server committed it and before the row left the
 *	journal: its id (the copy's random node name and the row's sequence
 *	number) goes into hikyaku_applied in the same transaction, and ids
 *	older than the pruning age of the sent records are forgotten. The
 *	other operations give the same result when written twice.
 * TOUCHES
 *	The PostgreSQL server; local_dir/suppression-pg.db and its -wal and
 *	-shm files (0640); stderr.
 */
#include "relay/suppression_backend.h"
#include "util/clock.h"
#include "util/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#define PG_CALL_MS 3000         /* one query, client side */
#define PG_RETRY_MS 2000        /* between connection attempts */
#define PG_PING_MS 5000
#define PG_RESYNC_MS (300 * 1000)
#define PG_BATCH 256            /* journal rows per server transaction */
#define PG_REFETCH_MAX 64       /* more notifications at once: read everything */
#define PG_SCHEMA_VERSION 1
#define PG_CHANNEL "hikyaku_suppression"
#define PG_LOCK_KEY "7254350017"
#define LOCAL_NAME "suppression-pg.db"
#define LOCAL_BUSY_MS 5000

struct pgc {
	PGconn *conn;
	char err[256];          /* the last failure, one line */
};

struct supp_pg {
	char *uri;
	char display[256];
	struct pgc fg;          /* the calling thread's connection */
	/* the daemon's mode */
	bool daemon;
	char *local_path;
	char node[40];          /* meta.node of the local copy */
	sqlite3 *lc;            /* the local copy, for the calling thread */
	sqlite3_stmt *lookup_st;
	int64_t data_version, generation;
	pthread_t thr;
	bool thr_started;
	int wake[2];
	atomic_bool stop;
	atomic_int reachable;   /* 1 yes, 0 no, -1 not known yet */
	atomic_llong pending;   /* journal rows not yet on the server */
	atomic_llong since_ms;  /* wall clock of the last change of reachable */
	pthread_mutex_t err_lock;
	char last_err[256];
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- libpq with deadlines --------------------------------------------- */

static void set_err(struct pgc *c, const char *msg)
{
	size_t o = 0;

	for (const char *p = msg ? msg : "unknown error"; *p && o + 3 < sizeof(c->err); p++) {
		if (*p == '\n') {
			if (p[1] == '\0')
				break;
			c->err[o++] = ';';
			c->err[o++] = ' ';
		} else if ((unsigned char)*p >= 0x20) {
			c->err[o++] = *p;
		}
	}
	c->err[o] = '\0';
}

static void pg_drop(struct pgc *c)
{
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
}

static int pg_wait(PGconn *conn, short events, int64_t deadline)
{
	int fd = PQsocket(conn);

	if (fd < 0)
		return -ENOTCONN;
	for (;;) {
		int64_t left = deadline - mono_ms();
		struct pollfd p = { .fd = fd, .events = events };
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* The server's answer is about the connection, not the statement. */
static bool conn_error(PGconn *conn, const PGresult *r)
{
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	if (PQstatus(conn) != CONNECTION_OK || !st)
		return true;
	/* 08 connection, 57P admin shutdown / cannot connect now, 53 resources,
	 * 40 serialization / deadlock, 55P03 lock not available, 57014 canceled
	 * (statement_timeout): all worth another try later. */
	return strncmp(st, "08", 2) == 0 || strncmp(st, "57", 2) == 0 ||
	       strncmp(st, "53", 2) == 0 || strncmp(st, "40", 2) == 0 ||
	       strcmp(st, "55P03") == 0;
}

/*
 * One statement with parameters; waits until deadline at most. *res gets
 * the result (PGRES_COMMAND_OK or PGRES_TUPLES_OK) for the caller to
 * PQclear, or stays NULL. A failure of the connection or the deadline
 * drops the connection: -ENOTCONN / -ETIMEDOUT; a statement the server
 * refuses: -EINVAL, the connection kept.
 */
static int pg_query(struct pgc *c, const char *sql, int n, const char *const *params,
                    int64_t deadline, PGresult **res)
{
	PGresult *last = NULL, *r;
	int rc, f;

	if (res)
		*res = NULL;
	if (!c->conn)
		return -ENOTCONN;
	if (!PQsendQueryParams(c->conn, sql, n, NULL, params, NULL, NULL, 0))
		goto conn_failed;
	while ((f = PQflush(c->conn)) == 1) {
		rc = pg_wait(c->conn, POLLOUT | POLLIN, deadline);
		if (rc)
			goto timed_out;
		if (!PQconsumeInput(c->conn))
			goto conn_failed;
	}
	if (f < 0)
		goto conn_failed;
	for (;;) {
		while (PQisBusy(c->conn)) {
			rc = pg_wait(c->conn, POLLIN, deadline);
			if (rc)
				goto timed_out;
			if (!PQconsumeInput(c->conn))
				goto conn_failed;
		}
		r = PQgetResult(c->conn);
		if (!r)
			break;
		PQclear(last);
		last = r;
	}
	if (last && (PQresultStatus(last) == PGRES_COMMAND_OK ||
	             PQresultStatus(last) == PGRES_TUPLES_OK)) {
		if (res)
			*res = last;
		else
			PQclear(last);
		return 0;
	}
	set_err(c, last ? PQresultErrorMessage(last) : PQerrorMessage(c->conn));
	if (conn_error(c->conn, last)) {
		PQclear(last);
		pg_drop(c);
		return -ENOTCONN;
	}
	PQclear(last);
	return -EINVAL;
timed_out:
	PQclear(last);
	snprintf(c->err, sizeof(c->err), "no answer within %d ms", PG_CALL_MS);
	pg_drop(c);
	return -ETIMEDOUT;
conn_failed:
	PQclear(last);
	set_err(c, PQerrorMessage(c->conn));
	pg_drop(c);
	return -ENOTCONN;
}

static int pg_exec(struct pgc *c, const char *sql)
{
	return pg_query(c, sql, 0, NULL, mono_ms() + PG_CALL_MS, NULL);
}

static const char *const schema_v1[] = {
	"CREATE SEQUENCE IF NOT EXISTS hikyaku_change_seq",
	"CREATE TABLE IF NOT EXISTS hikyaku_suppression ("
	" address_key text COLLATE \"C\" PRIMARY KEY,"
	" address text NOT NULL,"
	" reason text, status text, response text, source text,"
	" first_ms bigint NOT NULL, last_ms bigint NOT NULL,"
	" count bigint NOT NULL DEFAULT 1 CHECK (count >= 1),"
	" changed bigint NOT NULL)",
	"CREATE TABLE IF NOT EXISTS hikyaku_sent ("
	" queue_id text COLLATE \"C\" NOT NULL,"
	" rcpt_key text COLLATE \"C\" NOT NULL,"
	" rcpt text NOT NULL, sender text NOT NULL, service_id text,"
	" sent_ms bigint NOT NULL,"
	" PRIMARY KEY (queue_id, rcpt_key))",
	"CREATE INDEX IF NOT EXISTS hikyaku_sent_service_id ON hikyaku_sent (service_id)",
	"CREATE INDEX IF NOT EXISTS hikyaku_sent_time ON hikyaku_sent (sent_ms)",
	/* The journalled "add"s already written (RELAYNODE-SEQ), so that one
	 * written again after a crash is not counted twice. */
	("CREATE TABLE IF NOT EXISTS hikyaku_applied ("
	 " op_id text COLLATE \"C\" PRIMARY KEY, applied_ms bigint NOT NULL)"),
};

/* Creates or checks the tables: -ENOTSUP for a newer schema. */
static int pg_schema(struct pgc *c)
{
	PGresult *r;
	int rc, version = 0;

	rc = pg_exec(c, "BEGIN");
	if (rc)
		return rc;
	rc = pg_exec(c, "SELECT pg_advisory_xact_lock(" PG_LOCK_KEY ")");
	if (!rc)
		rc = pg_exec(c, "CREATE TABLE IF NOT EXISTS hikyaku_schema (version integer NOT NULL)");
	if (!rc)
		rc = pg_query(c, "SELECT coalesce(max(version), 0) FROM hikyaku_schema", 0, NULL,
		              mono_ms() + PG_CALL_MS, &r);
	if (rc)
		goto fail;
	version = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (version > PG_SCHEMA_VERSION) {
		snprintf(c->err, sizeof(c->err), "the tables have schema version %d, newer than "
		         "this hikyaku's %d", version, PG_SCHEMA_VERSION);
		rc = -ENOTSUP;
		goto fail;
	}
	if (version < 1) {
		for (size_t i = 0; !rc && i < sizeof(schema_v1) / sizeof(schema_v1[0]); i++)
			rc = pg_exec(c, schema_v1[i]);
		if (!rc)
			rc = pg_exec(c, "INSERT INTO hikyaku_schema (version) VALUES (1)");
		if (rc)
			goto fail;
	}
	/* Later versions: migrate here, from version to PG_SCHEMA_VERSION. */
	rc = pg_exec(c, "COMMIT");
	if (rc)
		goto fail;
	return 0;
fail:
	if (c->conn)
		pg_exec(c, "ROLLBACK");
	return rc;
}

static void quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Connects, sets the timeouts and makes sure of the tables. */
static int pg_connect(const char *uri, struct pgc *c)
{
	/* Ours first: what the URI says wins (libpq keeps the last value). */
	static const char *const kw[] = {
		"connect_timeout", "application_name", "client_encoding", "keepalives",
		"keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
		"dbname", NULL
	};
	const char *val[] = { "3", "hikyaku", "UTF8", "1", "5", "2", "2", "5000", uri, NULL };
	int rc;

	pg_drop(c);
	c->conn = PQconnectdbParams(kw, val, 1);
	if (!c->conn) {
		snprintf(c->err, sizeof(c->err), "out of memory");
		return -ENOMEM;
	}
	if (PQstatus(c->conn) != CONNECTION_OK) {
		set_err(c, PQerrorMessage(c->conn));
		pg_drop(c);
		return -ENOTCONN;
	}
	/* "relation ... already exists, skipping" and the like: not for the log. */
	PQsetNoticeProcessor(c->conn, quiet_notice, NULL);
	if (PQsetnonblocking(c->conn, 1) != 0) {
		set_err(c, PQerrorMessage(c->conn));
		pg_drop(c);
		return -ENOTCONN;
	}
	rc = pg_exec(c, "SET statement_timeout = 3000");
	if (!rc)
		rc = pg_exec(c, "SET lock_timeout = 3000");
	if (!rc)
		rc = pg_schema(c);
	if (rc && c->conn && rc != -ENOTSUP)
		pg_drop(c);
	return rc;
}

/* ---- parameters -------------------------------------------------------- */

#define PAR_MAX 10

struct par {
	const char *v[PAR_MAX];
	char *own[PAR_MAX];
	int n;
};

/* A text parameter: NULL for NULL (and for "" when empty_null), made
 * valid UTF-8 (the server refuses anything else). */
static void par_text(struct par *p, const char *s, bool empty_null)
{
	int i = p->n++;

	p->own[i] = NULL;
	if (!s || (empty_null && !*s)) {
		p->v[i] = NULL;
	} else if (g_utf8_validate(s, -1, NULL)) {
		p->v[i] = s;
	} else {
		p->own[i] = g_utf8_make_valid(s, -1);
		p->v[i] = p->own[i];
	}
}

/* The address key: ASCII letters in lower case, as SQLite's NOCASE. */
static void par_key(struct par *p, const char *s)
{
	int i = p->n++;

	p->own[i] = g_ascii_strdown(s, -1);
	p->v[i] = p->own[i];
}

static void par_int(struct par *p, int64_t v)
{
	int i = p->n++;

	p->own[i] = g_strdup_printf("%" PRId64, v);
	p->v[i] = p->own[i];
}

static void par_free(struct par *p)
{
	for (int i = 0; i < p->n; i++)
		g_free(p->own[i]);
	p->n = 0;
}

/* ---- server statements ------------------------------------------------- */

#define PG_COLUMNS "address, reason, status, response, source, first_ms, last_ms, count"

static const char sql_add[] =
	"WITH u AS (INSERT INTO hikyaku_suppression AS s (address_key, " PG_COLUMNS ", changed)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 1, nextval('hikyaku_change_seq'))"
	" ON CONFLICT (address_key) DO UPDATE SET"
	" reason = coalesce(EXCLUDED.reason, s.reason),"
	" status = coalesce(EXCLUDED.status, s.status),"
	" response = coalesce(EXCLUDED.response, s.response),"
	" last_ms = greatest(s.last_ms, EXCLUDED.last_ms),"
	" count = s.count + 1, changed = EXCLUDED.changed"
	" RETURNING (xmax = 0) AS fresh)"
	" SELECT u.fresh, pg_notify('" PG_CHANNEL "', $1) FROM u";

static const char sql_merge[] =
	"WITH u AS (INSERT INTO hikyaku_suppression AS s (address_key, " PG_COLUMNS ", changed)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, nextval('hikyaku_change_seq'))"
	" ON CONFLICT (address_key) DO UPDATE SET"
	" reason = CASE WHEN EXCLUDED.last_ms >= s.last_ms"
	"  THEN coalesce(EXCLUDED.reason, s.reason) ELSE s.reason END,"
	" status = CASE WHEN EXCLUDED.last_ms >= s.last_ms"
	"  THEN coalesce(EXCLUDED.status, s.status) ELSE s.status END,"
	" response = CASE WHEN EXCLUDED.last_ms >= s.last_ms"
	"  THEN coalesce(EXCLUDED.response, s.response) ELSE s.response END,"
	" first_ms = least(s.first_ms, EXCLUDED.first_ms),"
	" last_ms = greatest(s.last_ms, EXCLUDED.last_ms),"
	" count = greatest(s.count, EXCLUDED.count), changed = EXCLUDED.changed"
	" RETURNING (xmax = 0) AS fresh)"
	" SELECT u.fresh, pg_notify('" PG_CHANNEL "', $1) FROM u";

static const char sql_remove[] =
	"WITH d AS (DELETE FROM hikyaku_suppression WHERE address_key = $1 RETURNING 1)"
	" SELECT (SELECT count(*) FROM d), pg_notify('" PG_CHANNEL "', $1),"
	" nextval('hikyaku_change_seq')";

static const char sql_sent_add[] =
	"INSERT INTO hikyaku_sent (queue_id, rcpt_key, rcpt, sender, service_id, sent_ms)"
	" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (queue_id, rcpt_key) DO UPDATE SET"
	" rcpt = EXCLUDED.rcpt, sender = EXCLUDED.sender, service_id = EXCLUDED.service_id,"
	" sent_ms = EXCLUDED.sent_ms";

static const char sql_sent_find[] =
	"SELECT sender, queue_id FROM hikyaku_sent WHERE rcpt_key = $3 AND"
	" (($1::text IS NOT NULL AND queue_id = $1) OR ($2::text IS NOT NULL AND service_id = $2))"
	" ORDER BY sent_ms DESC LIMIT 1";

static const char sql_prune[] = "DELETE FROM hikyaku_sent WHERE sent_ms < $1";

/* An entry write: op "add" or "merge"; 1 new, 0 listed before. */
static int pg_put_entry(struct pgc *c, const char *op, const struct supp_entry *e)
{
	struct par p = { 0 };
	PGresult *r;
	int rc;
	bool merge = strcmp(op, "merge") == 0;

	par_key(&p, e->address);
	par_text(&p, e->address, false);
	par_text(&p, e->reason, true);
	par_text(&p, e->status, true);
	par_text(&p, e->response, true);
	par_text(&p, e->source, true);
	if (merge) {
		par_int(&p, e->first_ms);
		par_int(&p, e->last_ms);
		par_int(&p, e->count);
	} else {
		par_int(&p, e->last_ms);
	}
	rc = pg_query(c, merge ? sql_merge : sql_add, p.n, p.v, mono_ms() + PG_CALL_MS, &r);
	par_free(&p);
	if (rc)
		return rc;
	rc = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	return rc;
}

static int pg_remove_key(struct pgc *c, const char *address)
{
	struct par p = { 0 };
	PGresult *r;
	int rc;

	par_key(&p, address);
	rc = pg_query(c, sql_remove, p.n, p.v, mono_ms() + PG_CALL_MS, &r);
	par_free(&p);
	if (rc)
		return rc;
	rc = PQntuples(r) == 1 && atoi(PQgetvalue(r, 0, 0)) > 0;
	PQclear(r);
	return rc;
}

static int pg_sent_add(struct pgc *c, const char *queue_id, const char *rcpt, const char *sender,
                       const char *service_id, int64_t now_ms)
{
	struct par p = { 0 };
	int rc;

	par_text(&p, queue_id, false);
	par_key(&p, rcpt);
	par_text(&p, rcpt, false);
	par_text(&p, sender, false);
	par_text(&p, service_id, true);
	par_int(&p, now_ms);
	rc = pg_query(c, sql_sent_add, p.n, p.v, mono_ms() + PG_CALL_MS, NULL);
	par_free(&p);
	return rc;
}

static int pg_sent_find(struct pgc *c, const char *queue_id, const char *service_id,
                        const char *rcpt, char **sender, char **qid)
{
	struct par p = { 0 };
	PGresult *r;
	int rc;

	par_text(&p, queue_id, true);
	par_text(&p, service_id, true);
	par_key(&p, rcpt);
	rc = pg_query(c, sql_sent_find, p.n, p.v, mono_ms() + PG_CALL_MS, &r);
	par_free(&p);
	if (rc)
		return rc;
	if (PQntuples(r) == 1) {
		*sender = strdup(PQgetvalue(r, 0, 0));
		*qid = strdup(PQgetvalue(r, 0, 1));
		rc = *sender && *qid ? 1 : -ENOMEM;
		if (rc < 0) {
			free(*sender);
			free(*qid);
			*sender = *qid = NULL;
		}
	}
	PQclear(r);
	return rc;
}

static int pg_prune(struct pgc *c, int64_t before_ms)
{
	struct par p = { 0 };
	PGresult *r;
	int rc;

	par_int(&p, before_ms);
	rc = pg_query(c, sql_prune, p.n, p.v, mono_ms() + PG_CALL_MS, &r);
	par_free(&p);
	if (rc)
		return rc;
	rc = atoi(PQcmdTuples(r));
	PQclear(r);
	par_int(&p, before_ms);
	int rc2 = pg_query(c, "DELETE FROM hikyaku_applied WHERE applied_ms < $1", p.n, p.v,
	                   mono_ms() + PG_CALL_MS, NULL);
	par_free(&p);
	return rc2 ? rc2 : rc;
}

/* A row of SELECT PG_COLUMNS; strings valid while r lives. */
static void pg_row(PGresult *r, int i, struct supp_entry *e)
{
	const char *v;

#define TXT(k) (PQgetisnull(r, i, k) ? NULL : PQgetvalue(r, i, k))
	e->address = (char *)TXT(0);
	e->reason = (char *)TXT(1);
	e->status = (char *)TXT(2);
	e->response = (char *)TXT(3);
	e->source = (char *)TXT(4);
#undef TXT
	v = PQgetvalue(r, i, 5);
	e->first_ms = strtoll(v, NULL, 10);
	v = PQgetvalue(r, i, 6);
	e->last_ms = strtoll(v, NULL, 10);
	v = PQgetvalue(r, i, 7);
	e->count = strtoll(v, NULL, 10);
}

/* ---- the local copy (daemon) ------------------------------------------ */

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

static int lerr(sqlite3 *db, int rc)
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
	case SQLITE_CANTOPEN: {
		int e = db ? sqlite3_system_errno(db) : 0;
		return e > 0 ? -e : -EACCES;
	}
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return -EBADMSG;
	default:
		return -EIO;
	}
}

static int lexec(sqlite3 *db, const char *sql)
{
	return lerr(db, sqlite3_exec(db, sql, NULL, NULL, NULL));
}

/*
 * create: make the file first, 0640 (SQLite would give it 0644). Only
 * before any connection of this process has it open: closing a
 * descriptor of the file drops every POSIX lock the process holds on it,
 * SQLite's included, and a reader elsewhere then rebuilds the WAL index
 * under our feet.
 */
static int local_open(const char *path, bool create, sqlite3 **out)
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
		rc = lerr(db, rc);
		sqlite3_close(db);
		return rc ? rc : -EIO;
	}
	sqlite3_busy_timeout(db, LOCAL_BUSY_MS);
	rc = lexec(db, local_schema);
	if (rc) {
		sqlite3_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

static void bind_t(sqlite3_stmt *st, int i, const char *v)
{
	if (v && *v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static const char *ctext(sqlite3_stmt *st, int i)
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
		return lerr(db, rc);
	n = sqlite3_bind_parameter_count(st);
	bind_t(st, 1, e->address);
	if (n >= 2)
		bind_t(st, 2, e->reason);
	if (n >= 3)
		bind_t(st, 3, e->status);
	if (n >= 4)
		bind_t(st, 4, e->response);
	if (n >= 5)
		bind_t(st, 5, e->source);
	if (n >= 6)
		sqlite3_bind_int64(st, 6, e->first_ms);
	if (n >= 7)
		sqlite3_bind_int64(st, 7, e->last_ms);
	if (n >= 8)
		sqlite3_bind_int64(st, 8, e->count);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : lerr(db, rc);
	sqlite3_finalize(st);
	return rc;
}

/*
 * Applies an entry operation to the local copy: "add" and "merge" as the
 * SQLite store does them, "remove", or "put" (the server's row as it is).
 * Returns 1 when the address was not listed before (add, merge) or was
 * removed (remove), 0 otherwise, <0 on error. Inside a transaction.
 */
static int local_apply(sqlite3 *db, const char *op, const struct supp_entry *e)
{
	sqlite3_stmt *st;
	int rc, had;

	rc = sqlite3_prepare_v2(db, "SELECT 1 FROM entries WHERE address = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return lerr(db, rc);
	sqlite3_bind_text(st, 1, e->address, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	had = rc == SQLITE_ROW;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return lerr(db, rc);
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

/* A journal row: an entry op, or "sent" / "prune". */
struct jrow {
	int64_t seq;
	char op[8];
	struct supp_entry e;    /* address .. count; first_ms = before for prune */
	char *queue_id, *sender, *service_id;
};

static int journal_put(sqlite3 *db, const char *op, const struct supp_entry *e,
                       const char *queue_id, const char *sender, const char *service_id)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "INSERT INTO journal (op, address, reason, status,"
	                                " response, source, first_ms, last_ms, count, queue_id,"
	                                " sender, service_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
	                                " ?8, ?9, ?10, ?11, ?12)", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return lerr(db, rc);
	sqlite3_bind_text(st, 1, op, -1, SQLITE_STATIC);
	bind_t(st, 2, e ? e->address : NULL);
	bind_t(st, 3, e ? e->reason : NULL);
	bind_t(st, 4, e ? e->status : NULL);
	bind_t(st, 5, e ? e->response : NULL);
	bind_t(st, 6, e ? e->source : NULL);
	sqlite3_bind_int64(st, 7, e ? e->first_ms : 0);
	sqlite3_bind_int64(st, 8, e ? e->last_ms : 0);
	sqlite3_bind_int64(st, 9, e ? e->count : 0);
	bind_t(st, 10, queue_id);
	bind_t(st, 11, sender);
	bind_t(st, 12, service_id);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : lerr(db, rc);
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
static int journal_read(sqlite3 *db, int64_t after, int max, const char *address, GArray *out)
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
		return lerr(db, rc);
	if (address)
		sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	else {
		sqlite3_bind_int64(st, 2, after);
		sqlite3_bind_int(st, 3, max > 0 ? max : -1);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct jrow j = { .seq = sqlite3_column_int64(st, 0) };
		struct supp_entry e = {
			.address = (char *)ctext(st, 2),
			.reason = (char *)ctext(st, 3),
			.status = (char *)ctext(st, 4),
			.response = (char *)ctext(st, 5),
			.source = (char *)ctext(st, 6),
			.first_ms = sqlite3_column_int64(st, 7),
			.last_ms = sqlite3_column_int64(st, 8),
			.count = sqlite3_column_int64(st, 9),
		};

		snprintf(j.op, sizeof(j.op), "%s", ctext(st, 1) ? ctext(st, 1) : "");
		if (supp_entry_copy(&j.e, &e) < 0)
			err = -ENOMEM;
		j.queue_id = supp_dup_or_null(ctext(st, 10), &err);
		j.sender = supp_dup_or_null(ctext(st, 11), &err);
		j.service_id = supp_dup_or_null(ctext(st, 12), &err);
		g_array_append_val(out, j);
	}
	rc = rc == SQLITE_DONE ? err : lerr(db, rc);
	sqlite3_finalize(st);
	return rc;
}

static void jrows_free(GArray *a)
{
	for (guint i = 0; i < a->len; i++)
		jrow_free(&g_array_index(a, struct jrow, i));
	g_array_set_size(a, 0);
}

static int64_t journal_count(sqlite3 *db)
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
static int journal_replay(sqlite3 *db, const char *address)
{
	GArray *rows = g_array_new(FALSE, TRUE, sizeof(struct jrow));
	int rc = journal_read(db, 0, 0, address, rows);

	for (guint i = 0; rc >= 0 && i < rows->len; i++) {
		struct jrow *j = &g_array_index(rows, struct jrow, i);

		if (j->e.address && (strcmp(j->op, "add") == 0 || strcmp(j->op, "merge") == 0 ||
		                     strcmp(j->op, "remove") == 0))
			rc = local_apply(db, j->op, &j->e);
	}
	jrows_free(rows);
	g_array_free(rows, TRUE);
	return rc < 0 ? rc : 0;
}

/* ---- the sync thread --------------------------------------------------- */

static void note_err(struct supp_pg *p, const char *msg)
{
	pthread_mutex_lock(&p->err_lock);
	snprintf(p->last_err, sizeof(p->last_err), "%s", msg);
	pthread_mutex_unlock(&p->err_lock);
}

static void set_reachable(struct supp_pg *p, bool up, const char *why, int64_t written)
{
	int was = atomic_load(&p->reachable);

	if (was == (int)up)
		return;
	atomic_store(&p->reachable, up ? 1 : 0);
	atomic_store(&p->since_ms, (int64_t)clock_now_ms());
	if (up) {
		note_err(p, "");
		if (was == 0)
			fprintf(stderr, "hikyaku: the suppression database %s is reachable again; "
			        "%" PRId64 " change(s) kept meanwhile written, the list read again\n",
			        p->display, written);
		else
			fprintf(stderr, "hikyaku: the suppression database %s is connected "
			        "(%" PRId64 " change(s) kept from before written)\n", p->display, written);
	} else {
		note_err(p, why);
		fprintf(stderr, "hikyaku: the suppression database %s is unreachable (%s); lookups "
		        "use the local copy in %s, and what is learned is kept there and written "
		        "when the database is back\n", p->display, why, p->local_path);
	}
}

/* 1 when the journal row id was not written before (and now is). */
static int first_time(struct pgc *c, const char *node, int64_t seq)
{
	struct par p = { 0 };
	PGresult *r;
	char *id = g_strdup_printf("%s-%" PRId64, node, seq);
	int rc;

	par_text(&p, id, false);
	par_int(&p, (int64_t)clock_now_ms());
	rc = pg_query(c, "INSERT INTO hikyaku_applied (op_id, applied_ms) VALUES ($1, $2)"
	              " ON CONFLICT (op_id) DO NOTHING", p.n, p.v, mono_ms() + PG_CALL_MS, &r);
	par_free(&p);
	g_free(id);
	if (rc)
		return rc;
	rc = atoi(PQcmdTuples(r)) == 1;
	PQclear(r);
	return rc;
}

/* Writes one journal row to the server. An "add" counts, so it is
 * written once only; the other operations give the same result twice. */
static int flush_row(struct pgc *c, const char *node, const struct jrow *j)
{
	if (strcmp(j->op, "add") == 0 && j->e.address) {
		int rc = first_time(c, node, j->seq);

		return rc <= 0 ? rc : pg_put_entry(c, j->op, &j->e);
	}
	if (strcmp(j->op, "merge") == 0)
		return j->e.address ? pg_put_entry(c, j->op, &j->e) : 0;
	if (strcmp(j->op, "remove") == 0)
		return j->e.address ? pg_remove_key(c, j->e.address) : 0;
	if (strcmp(j->op, "sent") == 0)
		return j->queue_id && j->e.address && j->sender ?
		       pg_sent_add(c, j->queue_id, j->e.address, j->sender, j->service_id,
		                   j->e.first_ms) : 0;
	if (strcmp(j->op, "prune") == 0)
		return pg_prune(c, j->e.first_ms);
	return 0;
}

static int journal_delete(sqlite3 *db, int64_t from, int64_t to)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "DELETE FROM journal WHERE seq >= ?1 AND seq <= ?2", -1,
	                            &st, NULL);

	if (rc != SQLITE_OK)
		return lerr(db, rc);
	sqlite3_bind_int64(st, 1, from);
	sqlite3_bind_int64(st, 2, to);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : lerr(db, rc);
	sqlite3_finalize(st);
	return rc;
}

/*
 * Writes the journal to the server, PG_BATCH rows per transaction, and
 * deletes what the server committed. Returns the rows written, or
 * -ENOTCONN / -ETIMEDOUT when the connection went.
 */
static int64_t flush(struct supp_pg *p, sqlite3 *db, struct pgc *c)
{
	GArray *rows = g_array_new(FALSE, TRUE, sizeof(struct jrow));
	int64_t written = 0, after = 0;
	int rc = 0;

	for (;;) {
		guint i;

		jrows_free(rows);
		rc = journal_read(db, after, PG_BATCH, NULL, rows);
		if (rc < 0 || rows->len == 0)
			break;
		rc = pg_exec(c, "BEGIN");
		for (i = 0; !rc && i < rows->len; i++) {
			rc = flush_row(c, p->node, &g_array_index(rows, struct jrow, i));
			rc = rc > 0 ? 0 : rc;
		}
		if (!rc)
			rc = pg_exec(c, "COMMIT");
		if (rc == -EINVAL && c->conn) {
			/* A row the server refuses for its content: drop it, keep the rest. */
			struct jrow *bad = &g_array_index(rows, struct jrow, i - 1);

			pg_exec(c, "ROLLBACK");
			fprintf(stderr, "hikyaku: the suppression database refused a change (%s %s: %s); "
			        "it is dropped\n", bad->op, bad->e.address ? bad->e.address : "",
			        c->err);
			journal_delete(db, bad->seq, bad->seq);
			rc = 0;
			continue;
		}
		if (rc)
			break;
		struct jrow *first = &g_array_index(rows, struct jrow, 0);
		struct jrow *last = &g_array_index(rows, struct jrow, rows->len - 1);
		rc = journal_delete(db, first->seq, last->seq);
		if (rc < 0) {
			/* Written but still journalled: skip it this time. */
			after = last->seq;
			rc = 0;
		}
		written += rows->len;
	}
	jrows_free(rows);
	g_array_free(rows, TRUE);
	atomic_store(&p->pending, journal_count(db));
	return rc < 0 && rc != -EBUSY ? rc : written;
}

/* Replaces the copy with the server's list (the journal applied on top). */
static int resync(sqlite3 *db, struct pgc *c)
{
	PGresult *r;
	int rc = pg_query(c, "SELECT " PG_COLUMNS " FROM hikyaku_suppression", 0, NULL,
	                  mono_ms() + 10 * PG_CALL_MS, &r);

	if (rc)
		return rc;
	rc = lexec(db, "BEGIN IMMEDIATE");
	if (!rc)
		rc = lexec(db, "DELETE FROM entries");
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		struct supp_entry e;

		pg_row(r, i, &e);
		rc = local_apply(db, "put", &e);
		rc = rc > 0 ? 0 : rc;
	}
	PQclear(r);
	if (!rc)
		rc = journal_replay(db, NULL);
	if (!rc)
		rc = lexec(db, "COMMIT");
	if (rc)
		lexec(db, "ROLLBACK");
	return rc;
}

/* One address again from the server, after a notification. */
static int refetch(sqlite3 *db, struct pgc *c, const char *key)
{
	const char *params[1] = { key };
	PGresult *r;
	int rc = pg_query(c, "SELECT " PG_COLUMNS " FROM hikyaku_suppression WHERE address_key = $1",
	                  1, params, mono_ms() + PG_CALL_MS, &r);

	if (rc)
		return rc;
	rc = lexec(db, "BEGIN IMMEDIATE");
	if (!rc) {
		struct supp_entry e = { .address = (char *)key };

		if (PQntuples(r) == 1)
			pg_row(r, 0, &e);
		rc = local_apply(db, PQntuples(r) == 1 ? "put" : "remove", &e);
		rc = rc > 0 ? 0 : rc;
	}
	PQclear(r);
	if (!rc)
		rc = journal_replay(db, key);
	if (!rc)
		rc = lexec(db, "COMMIT");
	if (rc)
		lexec(db, "ROLLBACK");
	return rc;
}

/* Sleeps until woken, stopped or ms passed. */
static void wait_wake(struct supp_pg *p, int fd, int ms)
{
	struct pollfd f[2] = { { .fd = p->wake[0], .events = POLLIN }, { .fd = fd, .events = POLLIN } };
	char buf[64];

	if (poll(f, fd >= 0 ? 2 : 1, ms) > 0 && (f[0].revents & POLLIN))
		while (read(p->wake[0], buf, sizeof(buf)) > 0)
			;
}

static bool lost(int rc)
{
	return rc == -ENOTCONN || rc == -ETIMEDOUT;
}

static void *sync_main(void *arg)
{
	struct supp_pg *p = arg;
	struct pgc c = { 0 };
	sqlite3 *db = NULL;
	int64_t next_try = 0, last_ping = 0, last_full = 0;
	GHashTable *keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	if (local_open(p->local_path, false, &db) < 0) {
		fprintf(stderr, "hikyaku: cannot open %s; the suppression list is not kept in step "
		        "with the database\n", p->local_path);
		goto out;
	}
	while (!atomic_load(&p->stop)) {
		int64_t now = mono_ms();
		int64_t rc;

		if (!c.conn) {
			if (now < next_try) {
				wait_wake(p, -1, (int)(next_try - now));
				continue;
			}
			rc = pg_connect(p->uri, &c);
			if (!rc)
				rc = pg_exec(&c, "LISTEN " PG_CHANNEL);
			int64_t written = rc ? 0 : flush(p, db, &c);
			if (!rc && written >= 0)
				rc = resync(db, &c);
			else if (!rc)
				rc = written;
			if (rc) {
				pg_drop(&c);
				set_reachable(p, false, c.err, 0);
				next_try = mono_ms() + PG_RETRY_MS;
				continue;
			}
			set_reachable(p, true, NULL, written);
			last_ping = last_full = mono_ms();
		}
		wait_wake(p, PQsocket(c.conn), 1000);
		if (atomic_load(&p->stop))
			break;
		rc = 0;
		if (!PQconsumeInput(c.conn)) {
			set_err(&c, PQerrorMessage(c.conn));
			rc = -ENOTCONN;
		}
		bool full = false;
		PGnotify *n;
		while (!rc && (n = PQnotifies(c.conn))) {
			if (strcmp(n->extra, "*") == 0 || g_hash_table_size(keys) >= PG_REFETCH_MAX)
				full = true;
			else
				g_hash_table_add(keys, g_strdup(n->extra));
			PQfreemem(n);
		}
		if (!rc && atomic_load(&p->pending) > 0) {
			rc = flush(p, db, &c);
			rc = rc > 0 ? 0 : rc;
		}
		/* Our own writes notify us too: read them back as anyone's. */
		while (!rc && c.conn && (n = PQnotifies(c.conn))) {
			if (g_hash_table_size(keys) >= PG_REFETCH_MAX)
				full = true;
			else
				g_hash_table_add(keys, g_strdup(n->extra));
			PQfreemem(n);
		}
		now = mono_ms();
		if (!rc && (full || now - last_full >= PG_RESYNC_MS)) {
			rc = resync(db, &c);
			last_full = now;
		} else if (!rc) {
			GHashTableIter it;
			gpointer k;

			g_hash_table_iter_init(&it, keys);
			while (!rc && g_hash_table_iter_next(&it, &k, NULL))
				rc = refetch(db, &c, k);
		}
		g_hash_table_remove_all(keys);
		if (!rc && now - last_ping >= PG_PING_MS) {
			rc = pg_exec(&c, "SELECT 1");
			last_ping = now;
		}
		if (rc && (lost((int)rc) || !c.conn)) {
			pg_drop(&c);
			set_reachable(p, false, c.err, 0);
			next_try = mono_ms() + PG_RETRY_MS;
		} else if (rc) {
			fprintf(stderr, "hikyaku: the local copy of the suppression list %s: %s\n",
			        p->local_path, rc == -EBUSY ? "busy" : strerror((int)-rc));
		}
	}
out:
	pg_drop(&c);
	g_hash_table_destroy(keys);
	sqlite3_close(db);
	return NULL;
}

static void wake(struct supp_pg *p)
{
	if (p->daemon) {
		atomic_fetch_add(&p->pending, 1);
		(void)!write(p->wake[1], "", 1);
	}
}

/* ---- the backend ------------------------------------------------------- */

static void pg_close(void *h)
{
	struct supp_pg *p = h;

	if (!p)
		return;
	if (p->thr_started) {
		atomic_store(&p->stop, true);
		(void)!write(p->wake[1], "", 1);
		pthread_join(p->thr, NULL);
	}
	if (p->wake[0] >= 0) {
		close(p->wake[0]);
		close(p->wake[1]);
	}
	sqlite3_finalize(p->lookup_st);
	sqlite3_close(p->lc);
	pg_drop(&p->fg);
	pthread_mutex_destroy(&p->err_lock);
	free(p->local_path);
	free(p->uri);
	free(p);
}

int supp_pg_open(const char *uri, const char *local_dir, void **out)
{
	struct supp_pg *p = calloc(1, sizeof(*p));
	PQconninfoOption *opts;
	char *errmsg = NULL;
	int rc;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->wake[0] = p->wake[1] = -1;
	pthread_mutex_init(&p->err_lock, NULL);
	atomic_init(&p->reachable, -1);
	atomic_init(&p->stop, false);
	atomic_init(&p->pending, 0);
	atomic_init(&p->since_ms, (int64_t)clock_now_ms());
	p->uri = strdup(uri);
	supp_db_display(uri, p->display, sizeof(p->display));
	if (!p->uri) {
		rc = -ENOMEM;
		goto fail;
	}
	opts = PQconninfoParse(uri, &errmsg);
	if (!opts) {
		PQfreemem(errmsg);
		rc = -EINVAL;
		goto fail;
	}
	PQconninfoFree(opts);
	if (!local_dir) {
		rc = pg_connect(p->uri, &p->fg);
		if (rc) {
			fprintf(stderr, "%s: the suppression database %s: %s\n",
			        program_invocation_short_name, p->display, p->fg.err);
			goto fail;
		}
		atomic_store(&p->reachable, 1);
		*out = p;
		return 0;
	}
	p->daemon = true;
	p->local_path = g_build_filename(local_dir, LOCAL_NAME, NULL);
	rc = local_open(p->local_path, true, &p->lc);
	if (rc)
		goto fail;
	rc = sqlite3_prepare_v3(p->lc, "SELECT " PG_COLUMNS " FROM entries WHERE address = ?1", -1,
	                        SQLITE_PREPARE_PERSISTENT, &p->lookup_st, NULL);
	if (rc != SQLITE_OK) {
		rc = lerr(p->lc, rc);
		goto fail;
	}
	atomic_store(&p->pending, journal_count(p->lc));
	{
		sqlite3_stmt *st;

		if (sqlite3_prepare_v2(p->lc, "SELECT value FROM meta WHERE key = 'node'", -1, &st,
		                       NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
			snprintf(p->node, sizeof(p->node), "%s", ctext(st, 0));
		sqlite3_finalize(st);
	}
	if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		goto fail;
	}
	if (pthread_create(&p->thr, NULL, sync_main, p) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	p->thr_started = true;
	p->generation = 1;
	*out = p;
	return 0;
fail:
	pg_close(p);
	return rc;
}

/* The calling thread's connection, made when missing. */
static int fg_ready(struct supp_pg *p)
{
	return p->fg.conn ? 0 : pg_connect(p->uri, &p->fg);
}

/* Runs fn in one local transaction with its journal row. */
static int local_write(struct supp_pg *p, const char *op, const struct supp_entry *e)
{
	int rc = lexec(p->lc, "BEGIN IMMEDIATE");
	int res;

	if (rc)
		return rc;
	res = local_apply(p->lc, op, e);
	rc = res < 0 ? res : journal_put(p->lc, op, e, NULL, NULL, NULL);
	if (!rc)
		rc = lexec(p->lc, "COMMIT");
	if (rc) {
		lexec(p->lc, "ROLLBACK");
		return rc;
	}
	p->generation++;
	wake(p);
	return res;
}

static int pg_lookup(void *h, const char *address, struct supp_entry *e)
{
	struct supp_pg *p = h;
	struct supp_entry row;
	int rc;

	if (!p->daemon) {
		struct par par = { 0 };
		PGresult *r;

		rc = fg_ready(p);
		if (rc)
			return rc;
		par_key(&par, address);
		rc = pg_query(&p->fg, "SELECT " PG_COLUMNS " FROM hikyaku_suppression"
		              " WHERE address_key = $1", 1, par.v, mono_ms() + PG_CALL_MS, &r);
		par_free(&par);
		if (rc)
			return rc;
		rc = PQntuples(r) == 1;
		if (rc && e) {
			pg_row(r, 0, &row);
			rc = supp_entry_copy(e, &row);
			rc = rc < 0 ? rc : 1;
		}
		PQclear(r);
		return rc;
	}
	sqlite3_bind_text(p->lookup_st, 1, address, -1, SQLITE_STATIC);
	rc = sqlite3_step(p->lookup_st);
	if (rc == SQLITE_ROW) {
		rc = 1;
		if (e) {
			row.address = (char *)ctext(p->lookup_st, 0);
			row.reason = (char *)ctext(p->lookup_st, 1);
			row.status = (char *)ctext(p->lookup_st, 2);
			row.response = (char *)ctext(p->lookup_st, 3);
			row.source = (char *)ctext(p->lookup_st, 4);
			row.first_ms = sqlite3_column_int64(p->lookup_st, 5);
			row.last_ms = sqlite3_column_int64(p->lookup_st, 6);
			row.count = sqlite3_column_int64(p->lookup_st, 7);
			rc = supp_entry_copy(e, &row);
			rc = rc < 0 ? rc : 1;
		}
	} else {
		rc = rc == SQLITE_DONE ? 0 : lerr(p->lc, rc);
	}
	sqlite3_reset(p->lookup_st);
	sqlite3_clear_bindings(p->lookup_st);
	return rc;
}

static int pg_add(void *h, const struct supp_entry *e)
{
	struct supp_pg *p = h;
	int rc;

	if (p->daemon)
		return local_write(p, "add", e);
	rc = fg_ready(p);
	return rc ? rc : pg_put_entry(&p->fg, "add", e);
}

static int pg_remove(void *h, const char *address)
{
	struct supp_pg *p = h;
	struct supp_entry e = { .address = (char *)address };
	int rc;

	if (p->daemon)
		return local_write(p, "remove", &e);
	rc = fg_ready(p);
	return rc ? rc : pg_remove_key(&p->fg, address);
}

static int pg_list(void *h, const char *search,
                   int (*cb)(void *arg, const struct supp_entry *e), void *arg)
{
	struct supp_pg *p = h;
	char *pattern = NULL, *lower = NULL;
	int rc, n = 0;

	if (search && *search) {
		pattern = supp_like_pattern(search);
		if (!pattern)
			return -ENOMEM;
	}
	if (p->daemon) {
		sqlite3_stmt *st;

		rc = sqlite3_prepare_v2(p->lc, pattern ?
		                        "SELECT " PG_COLUMNS " FROM entries WHERE address LIKE ?1"
		                        " ESCAPE '\\' OR reason LIKE ?1 ESCAPE '\\' ORDER BY address" :
		                        "SELECT " PG_COLUMNS " FROM entries ORDER BY address",
		                        -1, &st, NULL);
		if (rc != SQLITE_OK) {
			free(pattern);
			return lerr(p->lc, rc);
		}
		if (pattern)
			sqlite3_bind_text(st, 1, pattern, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			struct supp_entry e = {
				(char *)ctext(st, 0), (char *)ctext(st, 1), (char *)ctext(st, 2),
				(char *)ctext(st, 3), (char *)ctext(st, 4), sqlite3_column_int64(st, 5),
				sqlite3_column_int64(st, 6), sqlite3_column_int64(st, 7)
			};
			int r = cb(arg, &e);

			if (r < 0) {
				sqlite3_finalize(st);
				free(pattern);
				return r;
			}
			n++;
		}
		rc = rc == SQLITE_DONE ? n : lerr(p->lc, rc);
		sqlite3_finalize(st);
		free(pattern);
		return rc;
	}
	rc = fg_ready(p);
	if (rc) {
		free(pattern);
		return rc;
	}
	PGresult *r;
	const char *params[2];

	if (pattern) {
		lower = g_ascii_strdown(pattern, -1);
		params[0] = lower;
		params[1] = g_utf8_validate(pattern, -1, NULL) ? pattern : lower;
	}
	/* address_key is the ASCII lower case; ILIKE on the reason. One
	 * SELECT reads one snapshot. */
	rc = pg_query(&p->fg, pattern ?
	              "SELECT " PG_COLUMNS " FROM hikyaku_suppression WHERE address_key LIKE $1"
	              " OR reason ILIKE $2 ORDER BY address_key" :
	              "SELECT " PG_COLUMNS " FROM hikyaku_suppression ORDER BY address_key",
	              pattern ? 2 : 0, pattern ? params : NULL, mono_ms() + 10 * PG_CALL_MS, &r);
	g_free(lower);
	free(pattern);
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		struct supp_entry e;
		int x;

		pg_row(r, i, &e);
		x = cb(arg, &e);
		if (x < 0) {
			PQclear(r);
			return x;
		}
		n++;
	}
	PQclear(r);
	return n;
}

static int pg_merge(void *h, struct supp_entry *rows, size_t n, bool *fresh, size_t *failed)
{
	struct supp_pg *p = h;
	int rc;

	if (p->daemon) {
		rc = lexec(p->lc, "BEGIN IMMEDIATE");
		for (size_t i = 0; !rc && i < n; i++) {
			int res = local_apply(p->lc, "merge", &rows[i]);

			rc = res < 0 ? res : journal_put(p->lc, "merge", &rows[i], NULL, NULL, NULL);
			fresh[i] = res == 1;
			if (rc)
				*failed = i;
		}
		if (!rc)
			rc = lexec(p->lc, "COMMIT");
		if (rc) {
			lexec(p->lc, "ROLLBACK");
			return rc;
		}
		p->generation++;
		wake(p);
		return 0;
	}
	rc = fg_ready(p);
	if (!rc)
		rc = pg_exec(&p->fg, "BEGIN");
	for (size_t i = 0; !rc && i < n; i++) {
		int res = pg_put_entry(&p->fg, "merge", &rows[i]);

		if (res < 0) {
			*failed = i;
			rc = res;
		} else {
			fresh[i] = res == 1;
		}
	}
	if (!rc)
		rc = pg_exec(&p->fg, "COMMIT");
	if (rc && p->fg.conn)
		pg_exec(&p->fg, "ROLLBACK");
	return rc;
}

static int64_t pg_data_version(void *h)
{
	struct supp_pg *p = h;
	PGresult *r;
	int64_t v;
	int rc;

	if (p->daemon) {
		sqlite3_stmt *st;

		if (sqlite3_prepare_v2(p->lc, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
			return -EIO;
		if (sqlite3_step(st) == SQLITE_ROW) {
			v = sqlite3_column_int64(st, 0);
			if (v != p->data_version) {
				p->data_version = v;
				p->generation++;
			}
		}
		sqlite3_finalize(st);
		return p->generation;
	}
	rc = fg_ready(p);
	if (!rc)
		rc = pg_query(&p->fg, "SELECT last_value + (CASE WHEN is_called THEN 1 ELSE 0 END)"
		              " FROM hikyaku_change_seq", 0, NULL, mono_ms() + PG_CALL_MS, &r);
	if (rc)
		return rc;
	v = strtoll(PQgetvalue(r, 0, 0), NULL, 10) + 1;
	PQclear(r);
	return v;
}

static int pg_sent_add_cb(void *h, const char *queue_id, const char *rcpt, const char *sender,
                          const char *service_id, int64_t now_ms)
{
	struct supp_pg *p = h;
	struct supp_entry e = { .address = (char *)rcpt, .first_ms = now_ms };
	sqlite3_stmt *st;
	int rc;

	if (!p->daemon) {
		rc = fg_ready(p);
		return rc ? rc : pg_sent_add(&p->fg, queue_id, rcpt, sender, service_id, now_ms);
	}
	rc = lexec(p->lc, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = sqlite3_prepare_v2(p->lc, "INSERT OR REPLACE INTO sent (queue_id, rcpt, sender,"
	                        " service_id, sent_ms) VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		bind_t(st, 1, queue_id);
		bind_t(st, 2, rcpt);
		bind_t(st, 3, sender);
		bind_t(st, 4, service_id);
		sqlite3_bind_int64(st, 5, now_ms);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? 0 : lerr(p->lc, rc);
		sqlite3_finalize(st);
	} else {
		rc = lerr(p->lc, rc);
	}
	if (!rc)
		rc = journal_put(p->lc, "sent", &e, queue_id, sender, service_id);
	if (!rc)
		rc = lexec(p->lc, "COMMIT");
	if (rc) {
		lexec(p->lc, "ROLLBACK");
		return rc;
	}
	wake(p);
	return 0;
}

static int pg_sent_find_cb(void *h, const char *queue_id, const char *service_id,
                           const char *rcpt, char **sender, char **qid)
{
	struct supp_pg *p = h;
	sqlite3_stmt *st;
	int rc;

	if (p->daemon) {
		rc = sqlite3_prepare_v2(p->lc, "SELECT sender, queue_id FROM sent WHERE rcpt = ?3 AND"
		                        " ((?1 IS NOT NULL AND queue_id = ?1) OR"
		                        "  (?2 IS NOT NULL AND service_id = ?2))"
		                        " ORDER BY sent_ms DESC LIMIT 1", -1, &st, NULL);
		if (rc != SQLITE_OK)
			return lerr(p->lc, rc);
		bind_t(st, 1, queue_id);
		bind_t(st, 2, service_id);
		bind_t(st, 3, rcpt);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*sender = strdup(ctext(st, 0));
			*qid = strdup(ctext(st, 1));
			rc = *sender && *qid ? 1 : -ENOMEM;
		} else {
			rc = rc == SQLITE_DONE ? 0 : lerr(p->lc, rc);
		}
		sqlite3_finalize(st);
		if (rc != 0)
			return rc;
		/* Another relay's mail: only the server knows it. */
		if (atomic_load(&p->reachable) != 1)
			return -ENOTCONN;
	}
	/* A connection idle for hours may have been closed by the server or a
	 * firewall: one more try on a new one. */
	bool had = p->fg.conn != NULL;
	rc = fg_ready(p);
	if (!rc)
		rc = pg_sent_find(&p->fg, queue_id, service_id, rcpt, sender, qid);
	if (rc == -ENOTCONN && had && !fg_ready(p))
		rc = pg_sent_find(&p->fg, queue_id, service_id, rcpt, sender, qid);
	return rc;
}

static int pg_sent_prune_cb(void *h, int64_t before_ms)
{
	struct supp_pg *p = h;
	struct supp_entry e = { .first_ms = before_ms };
	sqlite3_stmt *st;
	int rc, n = 0;

	if (!p->daemon) {
		rc = fg_ready(p);
		return rc ? rc : pg_prune(&p->fg, before_ms);
	}
	rc = lexec(p->lc, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = sqlite3_prepare_v2(p->lc, "DELETE FROM sent WHERE sent_ms < ?1", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, before_ms);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? 0 : lerr(p->lc, rc);
		n = sqlite3_changes(p->lc);
		sqlite3_finalize(st);
	} else {
		rc = lerr(p->lc, rc);
	}
	if (!rc)
		rc = journal_put(p->lc, "prune", &e, NULL, NULL, NULL);
	if (!rc)
		rc = lexec(p->lc, "COMMIT");
	if (rc) {
		lexec(p->lc, "ROLLBACK");
		return rc;
	}
	wake(p);
	return n;
}

static void pg_status(void *h, json_t *o)
{
	struct supp_pg *p = h;
	int up = atomic_load(&p->reachable);
	char ts[CLOCK_RFC3339_SIZE];

	json_object_set_new(o, "reachable", up == 1 ? json_true() : json_false());
	if (!p->daemon)
		return;
	clock_rfc3339_seconds((int64_t)atomic_load(&p->since_ms), ts, sizeof(ts));
	json_object_set_new(o, "since", json_string(ts));
	json_object_set_new(o, "pending", json_integer((json_int_t)atomic_load(&p->pending)));
	json_object_set_new(o, "local", json_string(p->local_path));
	pthread_mutex_lock(&p->err_lock);
	if (up != 1 && p->last_err[0])
		json_object_set_new(o, "error", json_string(p->last_err));
	else if (up == -1)
		json_object_set_new(o, "error", json_string("not connected yet"));
	pthread_mutex_unlock(&p->err_lock);
}

const struct supp_backend supp_pg_backend = {
	.name = "postgresql",
	.close = pg_close,
	.lookup = pg_lookup,
	.add = pg_add,
	.remove = pg_remove,
	.list = pg_list,
	.merge = pg_merge,
	.data_version = pg_data_version,
	.sent_add = pg_sent_add_cb,
	.sent_find = pg_sent_find_cb,
	.sent_prune = pg_sent_prune_cb,
	.status = pg_status,
};
