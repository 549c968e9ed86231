/*
 * NAME
 *	server - the SMTP listener: sockets, sessions, limits, reload, stop
 * SUMMARY
 *	One struct server per daemon. It owns the listening sockets, the
 *	set of live sessions, the per-client connection counts and the
 *	current settings (configuration, TLS context, AUTH database, DKIM keys) as one
 *	reference-counted bundle: a session keeps the bundle it started with,
 *	so a reload never changes the rules under a transaction in progress.
 * DESCRIPTION
 *	server_init() prepares a server on a loop with a loaded configuration
 *	(ownership moves to the server), the queue and the event log.
 *	server_listen() opens every [server] listen address.
 *	server_reload() swaps in a new configuration (already validated):
 *	new TLS and AUTH material, listeners opened/closed as the new list
 *	says. It returns 0, or -1 with the reason in err (the old settings
 *	then stay in force).
 *	server_stop() stops accepting, says 421 to idle sessions, lets the
 *	others finish their transaction (at most SERVER_DRAIN_MS), and calls
 *	done when the last session is gone.
 *	server_free() releases what is left after the loop ended.
 * TOUCHES
 *	Sockets; the queue (through relay/queue.h); the event log.
 */
#ifndef HK_SERVER_SERVER_H
#define HK_SERVER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "config/config.h"
#include "relay/queue.h"
#include "util/eventlog.h"

#define SERVER_DRAIN_MS 30000

struct auth_db;
struct dkim_keys;
struct session;

/* What a session needs from the configuration, shared by reference. */
struct settings {
	int refs;
	struct config *cfg;
	SSL_CTX *tls;              /* NULL: no STARTTLS */
	struct auth_db *auth;      /* NULL: no AUTH */
	struct dkim_keys *dkim;    /* [dkim] keys, ready to sign (relay/dkim.h) */
};

struct listener {
	uv_tcp_t tcp;
	struct server *srv;
	struct config_listen addr;
	bool keep;                 /* reload bookkeeping */
};

struct server_stats {
	uint64_t connections;
	uint64_t received;
	uint64_t rejected;
};

struct server {
	uv_loop_t *loop;
	struct settings *set;
	struct queue *queue;
	struct evlog *log;
	struct runner *runner;     /* gets every mail committed; may be NULL in tests */
	GPtrArray *listeners;      /* struct listener * */
	GHashTable *per_client;    /* client ip -> connection count */
	struct session *sessions;  /* doubly linked list of live sessions */
	unsigned nsessions;
	uint64_t next_session;
	uint64_t start_time;
	bool stopping;
	uv_timer_t drain_timer;
	/* Room in the spool (SPEC §5 "452 4.3.1"): the file system's free
	 * space, read every second on the thread pool, and the bytes of mail
	 * being committed now. */
	uv_timer_t space_timer;
	uv_fs_t space_req;
	bool space_busy;
	bool space_known;
	uint64_t spool_avail, spool_total;
	uint64_t committing_bytes;
	void (*stopped)(struct server *srv);
	struct server_stats stats;
};

int server_init(struct server *srv, uv_loop_t *loop, struct config *cfg,
                struct queue *queue, struct evlog *log, char *err, size_t errlen);
int server_listen(struct server *srv, char *err, size_t errlen);
int server_reload(struct server *srv, struct config *cfg, char *err, size_t errlen);
void server_stop(struct server *srv, void (*stopped)(struct server *srv));
void server_free(struct server *srv);

struct settings *settings_new(struct config *cfg, char *err, size_t errlen);
void settings_ref(struct settings *set);
void settings_unref(struct settings *set);

/* session.c */
void session_start(struct server *srv, uv_stream_t *listener);
/* Says 421 to idle sessions now; the busy ones after their transaction. */
void sessions_drain(struct server *srv);
/* Closes every session that is not waiting for the queue. */
void sessions_close_all(struct server *srv);

/* server.c, called by sessions */
void server_session_gone(struct server *srv);
/*
 * Is there room for a mail of size bytes (0: not known yet)? No when the
 * queue would pass [queue] max_size, or the spool's file system would
 * keep less than a reserve: twice max_message_size, at most 1/20 of the
 * file system (room for state files, the log and the database).
 */
bool server_storage_ok(const struct server *srv, uint64_t size);

#endif
