/*
 * NAME
 *	suppression_pg_sync - the daemon's thread that keeps the copy in step
 * SUMMARY
 *	Part of the PostgreSQL store (relay/suppression_pg_int.h; how the
 *	store works is told in relay/suppression_pg.c). The sync thread owns
 *	its own connection and its own handle on the local copy: on
 *	connecting it writes the journal (PG_BATCH rows per transaction, each
 *	journalled "add" once only, through hikyaku_applied), LISTENs, reads
 *	the whole list into the copy; then it refreshes one address per
 *	notification, writes the journal as it grows, pings every PG_PING_MS
 *	and reads everything again every PG_RESYNC_MS. It marks the server
 *	reachable or not for the status and says each change once on stderr.
 * DESCRIPTION
 *	spg_sync_main() is the thread's body (arg: the struct supp_pg);
 *	spg_wake() is called after a local write: one more pending row, the
 *	thread woken through the pipe.
 * TOUCHES
 *	The PostgreSQL server; local_dir/suppression-pg.db; the handle's
 *	wake pipe, reachable, pending, since_ms and last_err; stderr.
 */
#include "relay/suppression_pg_int.h"
#include "util/clock.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PG_RETRY_MS 2000        /* between connection attempts */
#define PG_PING_MS 5000
#define PG_RESYNC_MS (300 * 1000)
#define PG_BATCH 256            /* journal rows per server transaction */
#define PG_REFETCH_MAX 64       /* more notifications at once: read everything */

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

	spg_par_text(&p, id, false);
	spg_par_int(&p, (int64_t)clock_now_ms());
	rc = spg_query(c, "INSERT INTO hikyaku_applied (op_id, applied_ms) VALUES ($1, $2)"
	               " ON CONFLICT (op_id) DO NOTHING", p.n, p.v, spg_mono_ms() + PG_CALL_MS, &r);
	spg_par_free(&p);
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

		return rc <= 0 ? rc : spg_put_entry(c, j->op, &j->e);
	}
	if (strcmp(j->op, "merge") == 0)
		return j->e.address ? spg_put_entry(c, j->op, &j->e) : 0;
	if (strcmp(j->op, "remove") == 0)
		return j->e.address ? spg_remove_key(c, j->e.address) : 0;
	if (strcmp(j->op, "sent") == 0)
		return j->queue_id && j->e.address && j->sender ?
		       spg_sent_add(c, j->queue_id, j->e.address, j->sender, j->service_id,
		                    j->e.first_ms) : 0;
	if (strcmp(j->op, "prune") == 0)
		return spg_prune(c, j->e.first_ms);
	return 0;
}

static int journal_delete(sqlite3 *db, int64_t from, int64_t to)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "DELETE FROM journal WHERE seq >= ?1 AND seq <= ?2", -1,
	                            &st, NULL);

	if (rc != SQLITE_OK)
		return spg_lerr(db, rc);
	sqlite3_bind_int64(st, 1, from);
	sqlite3_bind_int64(st, 2, to);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : spg_lerr(db, rc);
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

		spg_jrows_free(rows);
		rc = spg_journal_read(db, after, PG_BATCH, NULL, rows);
		if (rc < 0 || rows->len == 0)
			break;
		rc = spg_exec(c, "BEGIN");
		for (i = 0; !rc && i < rows->len; i++) {
			rc = flush_row(c, p->node, &g_array_index(rows, struct jrow, i));
			rc = rc > 0 ? 0 : rc;
		}
		if (!rc)
			rc = spg_exec(c, "COMMIT");
		if (rc == -EINVAL && c->conn) {
			/* A row the server refuses for its content: drop it, keep the rest. */
			struct jrow *bad = &g_array_index(rows, struct jrow, i - 1);

			spg_exec(c, "ROLLBACK");
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
	spg_jrows_free(rows);
	g_array_free(rows, TRUE);
	atomic_store(&p->pending, spg_journal_count(db));
	return rc < 0 && rc != -EBUSY ? rc : written;
}

/* Replaces the copy with the server's list (the journal applied on top). */
static int resync(sqlite3 *db, struct pgc *c)
{
	PGresult *r;
	int rc = spg_query(c, "SELECT " PG_COLUMNS " FROM hikyaku_suppression", 0, NULL,
	                   spg_mono_ms() + 10 * PG_CALL_MS, &r);

	if (rc)
		return rc;
	rc = spg_lexec(db, "BEGIN IMMEDIATE");
	if (!rc)
		rc = spg_lexec(db, "DELETE FROM entries");
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		struct supp_entry e;

		spg_row(r, i, &e);
		rc = spg_local_apply(db, "put", &e);
		rc = rc > 0 ? 0 : rc;
	}
	PQclear(r);
	if (!rc)
		rc = spg_journal_replay(db, NULL);
	if (!rc)
		rc = spg_lexec(db, "COMMIT");
	if (rc)
		spg_lexec(db, "ROLLBACK");
	return rc;
}

/* One address again from the server, after a notification. */
static int refetch(sqlite3 *db, struct pgc *c, const char *key)
{
	const char *params[1] = { key };
	PGresult *r;
	int rc = spg_query(c, "SELECT " PG_COLUMNS " FROM hikyaku_suppression WHERE address_key = $1",
	                   1, params, spg_mono_ms() + PG_CALL_MS, &r);

	if (rc)
		return rc;
	rc = spg_lexec(db, "BEGIN IMMEDIATE");
	if (!rc) {
		struct supp_entry e = { .address = (char *)key };

		if (PQntuples(r) == 1)
			spg_row(r, 0, &e);
		rc = spg_local_apply(db, PQntuples(r) == 1 ? "put" : "remove", &e);
		rc = rc > 0 ? 0 : rc;
	}
	PQclear(r);
	if (!rc)
		rc = spg_journal_replay(db, key);
	if (!rc)
		rc = spg_lexec(db, "COMMIT");
	if (rc)
		spg_lexec(db, "ROLLBACK");
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

void *spg_sync_main(void *arg)
{
	struct supp_pg *p = arg;
	struct pgc c = { 0 };
	sqlite3 *db = NULL;
	int64_t next_try = 0, last_ping = 0, last_full = 0;
	GHashTable *keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	if (spg_local_open(p->local_path, false, &db) < 0) {
		fprintf(stderr, "hikyaku: cannot open %s; the suppression list is not kept in step "
		        "with the database\n", p->local_path);
		goto out;
	}
	while (!atomic_load(&p->stop)) {
		int64_t now = spg_mono_ms();
		int64_t rc;

		if (!c.conn) {
			if (now < next_try) {
				wait_wake(p, -1, (int)(next_try - now));
				continue;
			}
			rc = spg_connect(p->uri, &c);
			if (!rc)
				rc = spg_exec(&c, "LISTEN " PG_CHANNEL);
			int64_t written = rc ? 0 : flush(p, db, &c);
			if (!rc && written >= 0)
				rc = resync(db, &c);
			else if (!rc)
				rc = written;
			if (rc) {
				spg_drop(&c);
				set_reachable(p, false, c.err, 0);
				next_try = spg_mono_ms() + PG_RETRY_MS;
				continue;
			}
			set_reachable(p, true, NULL, written);
			last_ping = last_full = spg_mono_ms();
		}
		wait_wake(p, PQsocket(c.conn), 1000);
		if (atomic_load(&p->stop))
			break;
		rc = 0;
		if (!PQconsumeInput(c.conn)) {
			spg_set_err(&c, PQerrorMessage(c.conn));
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
		now = spg_mono_ms();
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
			rc = spg_exec(&c, "SELECT 1");
			last_ping = now;
		}
		if (rc && (lost((int)rc) || !c.conn)) {
			spg_drop(&c);
			set_reachable(p, false, c.err, 0);
			next_try = spg_mono_ms() + PG_RETRY_MS;
		} else if (rc) {
			fprintf(stderr, "hikyaku: the local copy of the suppression list %s: %s\n",
			        p->local_path, rc == -EBUSY ? "busy" : strerror((int)-rc));
		}
	}
out:
	spg_drop(&c);
	g_hash_table_destroy(keys);
	sqlite3_close(db);
	return NULL;
}

void spg_wake(struct supp_pg *p)
{
	if (p->daemon) {
		atomic_fetch_add(&p->pending, 1);
		(void)!write(p->wake[1], "", 1);
	}
}
