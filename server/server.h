/*
 * NAME
 *	server - the SMTP listener: sockets, sessions, limits, reload, stop
 * SUMMARY
 *	One struct server per daemon. It owns the listening sockets, accepts
 *	connections, keeps the counts (per client address, an IPv6 client by
 *	its /64; clients outside allow_networks together; SPEC §3), and is
 *	the host of every session (server/session.h): it carries the
 *	session's bytes over util/conn.c, and does its queue commits, spills,
 *	password checks and log events. The current settings are one
 *	reference-counted bundle (server/settings.h): a session takes the
 *	current one at its next transaction, so a reload never changes the
 *	rules under a transaction in progress, and the next mail of an open
 *	session follows the new ones (SPEC §4).
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
 *	Sockets; the queue (relay/queue.h, relay/queue_spill.h); the event
 *	log; the runner (each mail committed); the thread pool (via those).
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
#include "server/settings.h"
#include "util/eventlog.h"

#define SERVER_DRAIN_MS 30000

struct client;

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
	GHashTable *per_client;    /* client address (IPv6: its /64) -> connection count */
	struct client *clients;    /* doubly linked list of open connections */
	unsigned nsessions;        /* open connections */
	unsigned noutside;         /* of them, from outside allow_networks */
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
	uint64_t spilling_bytes;   /* messages being received, in the spool's tmp/ */
	void (*stopped)(struct server *srv);
	struct server_stats stats;
};

int server_init(struct server *srv, uv_loop_t *loop, struct config *cfg,
                struct queue *queue, struct evlog *log, char *err, size_t errlen);
int server_listen(struct server *srv, char *err, size_t errlen);
int server_reload(struct server *srv, struct config *cfg, char *err, size_t errlen);
void server_stop(struct server *srv, void (*stopped)(struct server *srv));
void server_free(struct server *srv);

/*
 * Is there room for a mail of size bytes (0: not known yet)? No when the
 * queue would pass [queue] max_size, or the spool's file system would
 * keep less than a reserve: twice max_message_size, at most 1/20 of the
 * file system (room for state files, the log and the database).
 */
bool server_storage_ok(const struct server *srv, uint64_t size);

/* The key a client's connections are counted under: an IPv4 address as
 * is, an IPv6 address by its /64 ("2001:db8:1:2::/64"), as one user of
 * a /64 may take any of its addresses. */
void server_client_key(const struct sockaddr *sa, char *out, size_t cap);

#endif
