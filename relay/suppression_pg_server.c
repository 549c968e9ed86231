/*
 * NAME
 *	suppression_pg_server - the PostgreSQL store's side on the server
 * SUMMARY
 *	Part of the PostgreSQL store (relay/suppression_pg_int.h; how the
 *	store works is told in relay/suppression_pg.c). libpq with a
 *	client-side deadline on every call (PG_CALL_MS: statement_timeout
 *	cannot help when the server is gone), the connection with its
 *	timeouts, the tables created or checked under an advisory lock, the
 *	statement parameters (valid UTF-8, the address key in ASCII lower
 *	case), and the statements that write and read entries, sent records
 *	and the pruning on the server.
 * DESCRIPTION
 *	spg_query() runs one statement with parameters on a non-blocking
 *	connection, polling until the deadline; a failure of the connection
 *	or the deadline drops it (-ENOTCONN, -ETIMEDOUT), a statement the
 *	server refuses is -EINVAL with the connection kept; c->err holds the
 *	last failure on one line. spg_connect() connects and makes sure of
 *	the tables (-ENOTSUP for a newer schema).
 * TOUCHES
 *	The PostgreSQL server, through the connection it is given.
 */
#include "relay/suppression_pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_SCHEMA_VERSION 1
#define PG_LOCK_KEY "7254350017"

int64_t spg_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- libpq with deadlines --------------------------------------------- */

void spg_set_err(struct pgc *c, const char *msg)
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

void spg_drop(struct pgc *c)
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
		int64_t left = deadline - spg_mono_ms();
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
int spg_query(struct pgc *c, const char *sql, int n, const char *const *params,
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
	spg_set_err(c, last ? PQresultErrorMessage(last) : PQerrorMessage(c->conn));
	if (conn_error(c->conn, last)) {
		PQclear(last);
		spg_drop(c);
		return -ENOTCONN;
	}
	PQclear(last);
	return -EINVAL;
timed_out:
	PQclear(last);
	snprintf(c->err, sizeof(c->err), "no answer within %d ms", PG_CALL_MS);
	spg_drop(c);
	return -ETIMEDOUT;
conn_failed:
	PQclear(last);
	spg_set_err(c, PQerrorMessage(c->conn));
	spg_drop(c);
	return -ENOTCONN;
}

int spg_exec(struct pgc *c, const char *sql)
{
	return spg_query(c, sql, 0, NULL, spg_mono_ms() + PG_CALL_MS, NULL);
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

	rc = spg_exec(c, "BEGIN");
	if (rc)
		return rc;
	rc = spg_exec(c, "SELECT pg_advisory_xact_lock(" PG_LOCK_KEY ")");
	if (!rc)
		rc = spg_exec(c, "CREATE TABLE IF NOT EXISTS hikyaku_schema (version integer NOT NULL)");
	if (!rc)
		rc = spg_query(c, "SELECT coalesce(max(version), 0) FROM hikyaku_schema", 0, NULL,
		               spg_mono_ms() + PG_CALL_MS, &r);
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
			rc = spg_exec(c, schema_v1[i]);
		if (!rc)
			rc = spg_exec(c, "INSERT INTO hikyaku_schema (version) VALUES (1)");
		if (rc)
			goto fail;
	}
	/* Later versions: migrate here, from version to PG_SCHEMA_VERSION. */
	rc = spg_exec(c, "COMMIT");
	if (rc)
		goto fail;
	return 0;
fail:
	if (c->conn)
		spg_exec(c, "ROLLBACK");
	return rc;
}

static void quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Connects, sets the timeouts and makes sure of the tables. */
int spg_connect(const char *uri, struct pgc *c)
{
	/* Ours first: what the URI says wins (libpq keeps the last value). */
	static const char *const kw[] = {
		"connect_timeout", "application_name", "client_encoding", "keepalives",
		"keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
		"dbname", NULL
	};
	const char *val[] = { "3", "hikyaku", "UTF8", "1", "5", "2", "2", "5000", uri, NULL };
	int rc;

	spg_drop(c);
	c->conn = PQconnectdbParams(kw, val, 1);
	if (!c->conn) {
		snprintf(c->err, sizeof(c->err), "out of memory");
		return -ENOMEM;
	}
	if (PQstatus(c->conn) != CONNECTION_OK) {
		spg_set_err(c, PQerrorMessage(c->conn));
		spg_drop(c);
		return -ENOTCONN;
	}
	/* "relation ... already exists, skipping" and the like: not for the log. */
	PQsetNoticeProcessor(c->conn, quiet_notice, NULL);
	if (PQsetnonblocking(c->conn, 1) != 0) {
		spg_set_err(c, PQerrorMessage(c->conn));
		spg_drop(c);
		return -ENOTCONN;
	}
	rc = spg_exec(c, "SET statement_timeout = 3000");
	if (!rc)
		rc = spg_exec(c, "SET lock_timeout = 3000");
	if (!rc)
		rc = pg_schema(c);
	if (rc && c->conn && rc != -ENOTSUP)
		spg_drop(c);
	return rc;
}

/* ---- parameters -------------------------------------------------------- */

/* A text parameter: NULL for NULL (and for "" when empty_null), made
 * valid UTF-8 (the server refuses anything else). */
void spg_par_text(struct par *p, const char *s, bool empty_null)
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
void spg_par_key(struct par *p, const char *s)
{
	int i = p->n++;

	p->own[i] = g_ascii_strdown(s, -1);
	p->v[i] = p->own[i];
}

void spg_par_int(struct par *p, int64_t v)
{
	int i = p->n++;

	p->own[i] = g_strdup_printf("%" PRId64, v);
	p->v[i] = p->own[i];
}

void spg_par_free(struct par *p)
{
	for (int i = 0; i < p->n; i++)
		g_free(p->own[i]);
	p->n = 0;
}

/* ---- server statements ------------------------------------------------- */

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
int spg_put_entry(struct pgc *c, const char *op, const struct supp_entry *e)
{
	struct par p = { 0 };
	PGresult *r;
	int rc;
	bool merge = strcmp(op, "merge") == 0;

	spg_par_key(&p, e->address);
	spg_par_text(&p, e->address, false);
	spg_par_text(&p, e->reason, true);
	spg_par_text(&p, e->status, true);
	spg_par_text(&p, e->response, true);
	spg_par_text(&p, e->source, true);
	if (merge) {
		spg_par_int(&p, e->first_ms);
		spg_par_int(&p, e->last_ms);
		spg_par_int(&p, e->count);
	} else {
		spg_par_int(&p, e->last_ms);
	}
	rc = spg_query(c, merge ? sql_merge : sql_add, p.n, p.v, spg_mono_ms() + PG_CALL_MS, &r);
	spg_par_free(&p);
	if (rc)
		return rc;
	rc = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	return rc;
}

int spg_remove_key(struct pgc *c, const char *address)
{
	struct par p = { 0 };
	PGresult *r;
	int rc;

	spg_par_key(&p, address);
	rc = spg_query(c, sql_remove, p.n, p.v, spg_mono_ms() + PG_CALL_MS, &r);
	spg_par_free(&p);
	if (rc)
		return rc;
	rc = PQntuples(r) == 1 && atoi(PQgetvalue(r, 0, 0)) > 0;
	PQclear(r);
	return rc;
}

int spg_sent_add(struct pgc *c, const char *queue_id, const char *rcpt, const char *sender,
                 const char *service_id, int64_t now_ms)
{
	struct par p = { 0 };
	int rc;

	spg_par_text(&p, queue_id, false);
	spg_par_key(&p, rcpt);
	spg_par_text(&p, rcpt, false);
	spg_par_text(&p, sender, false);
	spg_par_text(&p, service_id, true);
	spg_par_int(&p, now_ms);
	rc = spg_query(c, sql_sent_add, p.n, p.v, spg_mono_ms() + PG_CALL_MS, NULL);
	spg_par_free(&p);
	return rc;
}

int spg_sent_find(struct pgc *c, const char *queue_id, const char *service_id,
                  const char *rcpt, char **sender, char **qid)
{
	struct par p = { 0 };
	PGresult *r;
	int rc;

	spg_par_text(&p, queue_id, true);
	spg_par_text(&p, service_id, true);
	spg_par_key(&p, rcpt);
	rc = spg_query(c, sql_sent_find, p.n, p.v, spg_mono_ms() + PG_CALL_MS, &r);
	spg_par_free(&p);
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

int spg_prune(struct pgc *c, int64_t before_ms)
{
	struct par p = { 0 };
	PGresult *r;
	int rc;

	spg_par_int(&p, before_ms);
	rc = spg_query(c, sql_prune, p.n, p.v, spg_mono_ms() + PG_CALL_MS, &r);
	spg_par_free(&p);
	if (rc)
		return rc;
	rc = atoi(PQcmdTuples(r));
	PQclear(r);
	spg_par_int(&p, before_ms);
	int rc2 = spg_query(c, "DELETE FROM hikyaku_applied WHERE applied_ms < $1", p.n, p.v,
	                    spg_mono_ms() + PG_CALL_MS, NULL);
	spg_par_free(&p);
	return rc2 ? rc2 : rc;
}

/* A row of SELECT PG_COLUMNS; strings valid while r lives. */
void spg_row(PGresult *r, int i, struct supp_entry *e)
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
