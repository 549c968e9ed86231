/*
 * NAME
 *	suppression_pg_int - the PostgreSQL store's parts, shared among its files
 * SUMMARY
 *	Not an interface for others (that is relay/suppression_backend.h):
 *	the store's handle, a connection with its last error, a statement's
 *	parameters, a journal row, and the functions the files of the store
 *	call in each other. Internal names start with spg_ (the public ones
 *	with supp_pg_). How the store works (tables, the daemon's local copy
 *	and journal, the sync thread, writing a journal row once) is told
 *	once, in relay/suppression_pg.c.
 * DESCRIPTION
 *	relay/suppression_pg.c         the backend's functions, open and close;
 *	                               the design
 *	relay/suppression_pg_server.c  libpq with deadlines, the schema, the
 *	                               statements on the server
 *	relay/suppression_pg_local.c   the daemon's local copy (SQLite) and its
 *	                               journal
 *	relay/suppression_pg_sync.c    the sync thread: journal to the server,
 *	                               the server's list into the copy
 * TOUCHES
 *	Nothing: declarations only.
 */
#ifndef HK_RELAY_SUPPRESSION_PG_INT_H
#define HK_RELAY_SUPPRESSION_PG_INT_H

#include "relay/suppression_backend.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#define PG_CALL_MS 3000         /* one query, client side */
#define PG_CHANNEL "hikyaku_suppression"
#define PG_COLUMNS "address, reason, status, response, source, first_ms, last_ms, count"

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

/* ------------------------------------------------------------------ */
/* libpq with deadlines, the statements (suppression_pg_server.c)      */
/* ------------------------------------------------------------------ */

/* What each function returns is said at its definition. */
int64_t spg_mono_ms(void);
void spg_set_err(struct pgc *c, const char *msg);
void spg_drop(struct pgc *c);
int spg_query(struct pgc *c, const char *sql, int n, const char *const *params,
              int64_t deadline, PGresult **res);
int spg_exec(struct pgc *c, const char *sql);
int spg_connect(const char *uri, struct pgc *c);

#define PAR_MAX 10

struct par {
	const char *v[PAR_MAX];
	char *own[PAR_MAX];
	int n;
};

void spg_par_text(struct par *p, const char *s, bool empty_null);
void spg_par_key(struct par *p, const char *s);
void spg_par_int(struct par *p, int64_t v);
void spg_par_free(struct par *p);

int spg_put_entry(struct pgc *c, const char *op, const struct supp_entry *e);
int spg_remove_key(struct pgc *c, const char *address);
int spg_sent_add(struct pgc *c, const char *queue_id, const char *rcpt, const char *sender,
                 const char *service_id, int64_t now_ms);
int spg_sent_find(struct pgc *c, const char *queue_id, const char *service_id,
                  const char *rcpt, char **sender, char **qid);
int spg_prune(struct pgc *c, int64_t before_ms);
void spg_row(PGresult *r, int i, struct supp_entry *e);

/* ------------------------------------------------------------------ */
/* The local copy and its journal (suppression_pg_local.c)             */
/* ------------------------------------------------------------------ */

/* A journal row: an entry op, or "sent" / "prune". */
struct jrow {
	int64_t seq;
	char op[8];
	struct supp_entry e;    /* address .. count; first_ms = before for prune */
	char *queue_id, *sender, *service_id;
};

int spg_lerr(sqlite3 *db, int rc);
int spg_lexec(sqlite3 *db, const char *sql);
int spg_local_open(const char *path, bool create, sqlite3 **out);
void spg_bind_t(sqlite3_stmt *st, int i, const char *v);
const char *spg_ctext(sqlite3_stmt *st, int i);
int spg_local_apply(sqlite3 *db, const char *op, const struct supp_entry *e);
int spg_journal_put(sqlite3 *db, const char *op, const struct supp_entry *e,
                    const char *queue_id, const char *sender, const char *service_id);
int spg_journal_read(sqlite3 *db, int64_t after, int max, const char *address, GArray *out);
void spg_jrows_free(GArray *a);
int64_t spg_journal_count(sqlite3 *db);
int spg_journal_replay(sqlite3 *db, const char *address);

/* ------------------------------------------------------------------ */
/* The sync thread (suppression_pg_sync.c)                             */
/* ------------------------------------------------------------------ */

/* The thread's body; arg is the struct supp_pg. */
void *spg_sync_main(void *arg);
/* After a local write: one more pending row, the thread woken. */
void spg_wake(struct supp_pg *p);

#endif
