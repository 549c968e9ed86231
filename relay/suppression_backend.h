/*
 * NAME
 *	suppression_backend - the stores behind relay/suppression.h
 * SUMMARY
 *	struct supp (suppression.c) is a backend and its handle. A backend is
 *	a table of functions, as OpenSMTPD's table backends are: the SQLite
 *	file (suppression_sqlite.c, the embedded default) and PostgreSQL
 *	(suppression_pg.c and its parts behind suppression_pg_int.h,
 *	db = postgresql://..., shared by several relays).
 *	suppression.c keeps what is the same for both: the address check,
 *	the CSV import's parser and the export's writer, the time format.
 * DESCRIPTION
 *	The generic layer checks arguments and addresses before it calls a
 *	backend, so a backend sees valid addresses in lookup and add only.
 *
 *	lookup fills e (when not NULL) with malloc'd copies: 1 listed, 0 not.
 *	add lists e->address (first = last = e->last_ms, count 1) or counts it
 *	once more, as supp_add() says: 1 new, 0 counted again.
 *	merge writes the rows of an import in one transaction, merging into
 *	listed addresses as supp_import_csv() says; fresh[i] is set for a row
 *	that was not listed before; on failure *failed is the row's index.
 *	status adds "store", "db" (redacted), "reachable" and what the
 *	backend knows to o; it may be called from any thread.
 * TOUCHES
 *	Nothing itself.
 */
#ifndef HK_RELAY_SUPPRESSION_BACKEND_H
#define HK_RELAY_SUPPRESSION_BACKEND_H

#include "relay/suppression.h"

#include <jansson.h>

struct supp_backend {
	const char *name;       /* "sqlite", "postgresql" */
	void (*close)(void *h);
	int (*lookup)(void *h, const char *address, struct supp_entry *e);
	int (*add)(void *h, const struct supp_entry *e);
	int (*remove)(void *h, const char *address);
	int (*list)(void *h, const char *search,
	            int (*cb)(void *arg, const struct supp_entry *e), void *arg);
	int (*merge)(void *h, struct supp_entry *rows, size_t n, bool *fresh, size_t *failed);
	int64_t (*data_version)(void *h);
	int (*sent_add)(void *h, const char *queue_id, const char *rcpt, const char *sender,
	                const char *service_id, int64_t now_ms);
	int (*sent_find)(void *h, const char *queue_id, const char *service_id, const char *rcpt,
	                 char **sender, char **qid);
	int (*sent_prune)(void *h, int64_t before_ms);
	void (*status)(void *h, json_t *o);
};

extern const struct supp_backend supp_sqlite_backend;
extern const struct supp_backend supp_pg_backend;

int supp_sqlite_open(const char *path, void **h);
/* An SQLite result code as 0 or a negative errno (the PostgreSQL store's
 * local copy uses it too). */
struct sqlite3;
int supp_sqlite_errno(struct sqlite3 *db, int rc);
/* local_dir NULL: every call goes to the server (hikyakuctl). Otherwise
 * the daemon's mode: a local copy and journal in local_dir, and a thread
 * that keeps them in step with the server. */
int supp_pg_open(const char *uri, const char *local_dir, void **h);

/* Shared helpers (suppression.c). */
char *supp_like_pattern(const char *text);
char *supp_dup_or_null(const char *v, int *rc);
int supp_entry_copy(struct supp_entry *dst, const struct supp_entry *src);

#endif
