/*
 * NAME
 *	conn - a TCP connection on libuv with optional TLS
 * SUMMARY
 *	The one place where bytes meet the socket, for the listener's
 *	sessions and the outbound client alike. The user sees plaintext in
 *	both directions; once conn_starttls() is called every byte on the
 *	wire goes through the TLS engine (util/tls.h).
 * DESCRIPTION
 *	conn_init() prepares the handle (the caller then uv_accept()s or
 *	uv_tcp_connect()s on c->tcp). conn_read_start()/conn_read_stop()
 *	turn reading on and off (back-pressure). ops->on_read receives
 *	plaintext; ops->on_eof the end of the stream or an error (a negative
 *	libuv code, or CONN_ETLS for a TLS failure); ops->on_tls the end of
 *	a handshake (0 or CONN_ETLS); ops->on_close runs once, when every
 *	handle is closed; the memory may be freed there.
 *	conn_write() copies and sends (encrypting under TLS).
 *	conn_close() closes; with flush it first lets queued writes drain
 *	(at most CONN_FLUSH_TIMEOUT_MS), so that a final 421 or 221 reaches
 *	the client.
 *	conn_timeout() (re)arms the connection's one timer: ops->on_timeout
 *	runs after ms milliseconds unless it is re-armed (idle and step
 *	timeouts). Callbacks may call conn_close(); after that no callback
 *	but on_close runs.
 * TOUCHES
 *	Its socket; one loop-thread scratch buffer for reads.
 */
#ifndef HK_UTIL_CONN_H
#define HK_UTIL_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "util/tls.h"

#define CONN_ETLS (-100000)
#define CONN_FLUSH_TIMEOUT_MS 5000

struct conn;

struct conn_ops {
	void (*on_read)(struct conn *c, const char *p, size_t n);
	void (*on_eof)(struct conn *c, int status);
	void (*on_tls)(struct conn *c, int status);
	void (*on_close)(struct conn *c);
	void (*on_timeout)(struct conn *c);
	/* Optional: the bytes queued for writing fell to CONN_LOW_WATER or
	 * below (back-pressure: a reader stopped for a slow client resumes). */
	void (*on_drain)(struct conn *c);
};

#define CONN_LOW_WATER ((size_t)64 << 10)

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;          /* bounds the flush on close */
	uv_shutdown_t shutdown;
	const struct conn_ops *ops;
	void *data;
	struct tls_engine *tls;
	size_t write_queued;       /* bytes handed to libuv, not yet written */
	int open_handles;
	bool reading;
	bool closing;
};

int conn_init(uv_loop_t *loop, struct conn *c, const struct conn_ops *ops, void *data);
int conn_read_start(struct conn *c);
void conn_read_stop(struct conn *c);
int conn_write(struct conn *c, const void *p, size_t n);
int conn_starttls(struct conn *c, SSL_CTX *ctx, bool server, const char *host);
void conn_close(struct conn *c, bool flush);
void conn_timeout(struct conn *c, uint64_t ms);
bool conn_is_tls(const struct conn *c);

#endif
