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
 *
 *	The code is in four files, behind relay/suppression_pg_int.h (the
 *	handle and the internal spg_ functions): this one, the backend's
 *	functions with open and close; suppression_pg_server.c, libpq with
 *	deadlines, the schema and the statements on the server;
 *	suppression_pg_local.c, the local copy and its journal;
 *	suppression_pg_sync.c, the sync thread.
 * TOUCHES
 *	The PostgreSQL server; local_dir/suppression-pg.db and its -wal and
 *	-shm files (0640); stderr.
 */
#include "relay/suppression_pg_int.h"
#include "util/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOCAL_NAME "suppression-pg.db"

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
	spg_drop(&p->fg);
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
		rc = spg_connect(p->uri, &p->fg);
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
	rc = spg_local_open(p->local_path, true, &p->lc);
	if (rc)
		goto fail;
	rc = sqlite3_prepare_v3(p->lc, "SELECT " PG_COLUMNS " FROM entries WHERE address = ?1", -1,
	                        SQLITE_PREPARE_PERSISTENT, &p->lookup_st, NULL);
	if (rc != SQLITE_OK) {
		rc = spg_lerr(p->lc, rc);
		goto fail;
	}
	atomic_store(&p->pending, spg_journal_count(p->lc));
	{
		sqlite3_stmt *st;

		if (sqlite3_prepare_v2(p->lc, "SELECT value FROM meta WHERE key = 'node'", -1, &st,
		                       NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
			snprintf(p->node, sizeof(p->node), "%s", spg_ctext(st, 0));
		sqlite3_finalize(st);
	}
	if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		goto fail;
	}
	if (pthread_create(&p->thr, NULL, spg_sync_main, p) != 0) {
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
	return p->fg.conn ? 0 : spg_connect(p->uri, &p->fg);
}

/* Runs fn in one local transaction with its journal row. */
static int local_write(struct supp_pg *p, const char *op, const struct supp_entry *e)
{
	int rc = spg_lexec(p->lc, "BEGIN IMMEDIATE");
	int res;

	if (rc)
		return rc;
	res = spg_local_apply(p->lc, op, e);
	rc = res < 0 ? res : spg_journal_put(p->lc, op, e, NULL, NULL, NULL);
	if (!rc)
		rc = spg_lexec(p->lc, "COMMIT");
	if (rc) {
		spg_lexec(p->lc, "ROLLBACK");
		return rc;
	}
	p->generation++;
	spg_wake(p);
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
		spg_par_key(&par, address);
		rc = spg_query(&p->fg, "SELECT " PG_COLUMNS " FROM hikyaku_suppression"
		               " WHERE address_key = $1", 1, par.v, spg_mono_ms() + PG_CALL_MS, &r);
		spg_par_free(&par);
		if (rc)
			return rc;
		rc = PQntuples(r) == 1;
		if (rc && e) {
			spg_row(r, 0, &row);
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
			row.address = (char *)spg_ctext(p->lookup_st, 0);
			row.reason = (char *)spg_ctext(p->lookup_st, 1);
			row.status = (char *)spg_ctext(p->lookup_st, 2);
			row.response = (char *)spg_ctext(p->lookup_st, 3);
			row.source = (char *)spg_ctext(p->lookup_st, 4);
			row.first_ms = sqlite3_column_int64(p->lookup_st, 5);
			row.last_ms = sqlite3_column_int64(p->lookup_st, 6);
			row.count = sqlite3_column_int64(p->lookup_st, 7);
			rc = supp_entry_copy(e, &row);
			rc = rc < 0 ? rc : 1;
		}
	} else {
		rc = rc == SQLITE_DONE ? 0 : spg_lerr(p->lc, rc);
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
	return rc ? rc : spg_put_entry(&p->fg, "add", e);
}

static int pg_remove(void *h, const char *address)
{
	struct supp_pg *p = h;
	struct supp_entry e = { .address = (char *)address };
	int rc;

	if (p->daemon)
		return local_write(p, "remove", &e);
	rc = fg_ready(p);
	return rc ? rc : spg_remove_key(&p->fg, address);
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
			return spg_lerr(p->lc, rc);
		}
		if (pattern)
			sqlite3_bind_text(st, 1, pattern, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			struct supp_entry e = {
				(char *)spg_ctext(st, 0), (char *)spg_ctext(st, 1),
				(char *)spg_ctext(st, 2), (char *)spg_ctext(st, 3),
				(char *)spg_ctext(st, 4), sqlite3_column_int64(st, 5),
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
		rc = rc == SQLITE_DONE ? n : spg_lerr(p->lc, rc);
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
	rc = spg_query(&p->fg, pattern ?
	               "SELECT " PG_COLUMNS " FROM hikyaku_suppression WHERE address_key LIKE $1"
	               " OR reason ILIKE $2 ORDER BY address_key" :
	               "SELECT " PG_COLUMNS " FROM hikyaku_suppression ORDER BY address_key",
	               pattern ? 2 : 0, pattern ? params : NULL, spg_mono_ms() + 10 * PG_CALL_MS,
	               &r);
	g_free(lower);
	free(pattern);
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		struct supp_entry e;
		int x;

		spg_row(r, i, &e);
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
		rc = spg_lexec(p->lc, "BEGIN IMMEDIATE");
		for (size_t i = 0; !rc && i < n; i++) {
			int res = spg_local_apply(p->lc, "merge", &rows[i]);

			rc = res < 0 ? res :
			     spg_journal_put(p->lc, "merge", &rows[i], NULL, NULL, NULL);
			fresh[i] = res == 1;
			if (rc)
				*failed = i;
		}
		if (!rc)
			rc = spg_lexec(p->lc, "COMMIT");
		if (rc) {
			spg_lexec(p->lc, "ROLLBACK");
			return rc;
		}
		p->generation++;
		spg_wake(p);
		return 0;
	}
	rc = fg_ready(p);
	if (!rc)
		rc = spg_exec(&p->fg, "BEGIN");
	for (size_t i = 0; !rc && i < n; i++) {
		int res = spg_put_entry(&p->fg, "merge", &rows[i]);

		if (res < 0) {
			*failed = i;
			rc = res;
		} else {
			fresh[i] = res == 1;
		}
	}
	if (!rc)
		rc = spg_exec(&p->fg, "COMMIT");
	if (rc && p->fg.conn)
		spg_exec(&p->fg, "ROLLBACK");
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
		rc = spg_query(&p->fg, "SELECT last_value + (CASE WHEN is_called THEN 1 ELSE 0 END)"
		               " FROM hikyaku_change_seq", 0, NULL, spg_mono_ms() + PG_CALL_MS, &r);
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
		return rc ? rc : spg_sent_add(&p->fg, queue_id, rcpt, sender, service_id, now_ms);
	}
	rc = spg_lexec(p->lc, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = sqlite3_prepare_v2(p->lc, "INSERT OR REPLACE INTO sent (queue_id, rcpt, sender,"
	                        " service_id, sent_ms) VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		spg_bind_t(st, 1, queue_id);
		spg_bind_t(st, 2, rcpt);
		spg_bind_t(st, 3, sender);
		spg_bind_t(st, 4, service_id);
		sqlite3_bind_int64(st, 5, now_ms);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? 0 : spg_lerr(p->lc, rc);
		sqlite3_finalize(st);
	} else {
		rc = spg_lerr(p->lc, rc);
	}
	if (!rc)
		rc = spg_journal_put(p->lc, "sent", &e, queue_id, sender, service_id);
	if (!rc)
		rc = spg_lexec(p->lc, "COMMIT");
	if (rc) {
		spg_lexec(p->lc, "ROLLBACK");
		return rc;
	}
	spg_wake(p);
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
			return spg_lerr(p->lc, rc);
		spg_bind_t(st, 1, queue_id);
		spg_bind_t(st, 2, service_id);
		spg_bind_t(st, 3, rcpt);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*sender = strdup(spg_ctext(st, 0));
			*qid = strdup(spg_ctext(st, 1));
			rc = *sender && *qid ? 1 : -ENOMEM;
		} else {
			rc = rc == SQLITE_DONE ? 0 : spg_lerr(p->lc, rc);
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
		rc = spg_sent_find(&p->fg, queue_id, service_id, rcpt, sender, qid);
	if (rc == -ENOTCONN && had && !fg_ready(p))
		rc = spg_sent_find(&p->fg, queue_id, service_id, rcpt, sender, qid);
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
		return rc ? rc : spg_prune(&p->fg, before_ms);
	}
	rc = spg_lexec(p->lc, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	rc = sqlite3_prepare_v2(p->lc, "DELETE FROM sent WHERE sent_ms < ?1", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, before_ms);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? 0 : spg_lerr(p->lc, rc);
		n = sqlite3_changes(p->lc);
		sqlite3_finalize(st);
	} else {
		rc = spg_lerr(p->lc, rc);
	}
	if (!rc)
		rc = spg_journal_put(p->lc, "prune", &e, NULL, NULL, NULL);
	if (!rc)
		rc = spg_lexec(p->lc, "COMMIT");
	if (rc) {
		spg_lexec(p->lc, "ROLLBACK");
		return rc;
	}
	spg_wake(p);
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
