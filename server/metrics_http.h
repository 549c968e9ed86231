/*
 * NAME
 *	metrics_http - GET /metrics and GET /health over HTTP/1.1 (SPEC §9)
 * SUMMARY
 *	An HTTP listener on [metrics] listen, with libmicrohttpd driven from
 *	the libuv loop (its epoll descriptor under a uv_poll, its timeouts
 *	under a uv_timer): every request is answered on the loop thread,
 *	so the gauges are read from the server and the runner as they are,
 *	with no copy, lock or race, and nothing the loop owns is touched from
 *	another thread.
 * DESCRIPTION
 *	metrics_http_start() listens on addr and, once loop runs, serves
 *	(srv need not be set up before that):
 *	  GET /metrics  the Prometheus text format (util/metrics.h): the
 *	                registry's counters and the gauges read at that
 *	                moment (the suppression list's size, counted on the
 *	                thread pool, is the latest count, refreshed by the
 *	                scrapes at most once a second);
 *	  GET /health   200 "ok" while the listener accepts mail (not
 *	                stopping, below max_connections) and the queue is
 *	                writable (server_storage_ok(): the check behind
 *	                452 4.3.1), else 503 with the reason;
 *	HEAD likewise; another path is 404, another method 405. Nothing
 *	reaches the file system or the queue's contents. Bounds: 64
 *	connections (32 from one address), 16 KiB of request per connection
 *	(larger headers get 431), 10 s of idleness, 15 s per request (a
 *	client that drips its request is cut off). It returns 0, or -1 with
 *	the reason in err.
 *	metrics_http_reload() applies [metrics] listen after a reload: a new
 *	address moves the listener (the old one stays when the new one
 *	cannot be bound: -1 and the reason), empty closes it.
 *	metrics_http_close() stops serving at once (NULL: nothing).
 *
 *	For fuzz/fuzz_metrics_http.c (the seam: no port, no accept):
 *	metrics_http_start_unbound() is the same server without a listening
 *	socket (MHD_USE_NO_LISTEN_SOCKET), on the same loop; its only
 *	connections are the ones metrics_http_add_connection() hands it, a
 *	connected stream socket (say one end of a socketpair(2)) served as if
 *	accepted from the client at addr: the bounds above hold for it, and
 *	the daemon owns fd from then on (it closes it, also when it refuses
 *	it: -1). metrics_http_connections() counts the connections open now,
 *	from MHD's STARTED notification to its CLOSED one.
 * TOUCHES
 *	One listening socket and its connections; reads struct server and
 *	the runner's gauges; the suppression list (a count, on the thread
 *	pool, under the runner's lock).
 */
#ifndef HK_SERVER_METRICS_HTTP_H
#define HK_SERVER_METRICS_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"
#include "server/server.h"
#include "util/metrics.h"

struct metrics_http;

int metrics_http_start(uv_loop_t *loop, struct server *srv, struct metrics *reg,
                       const struct config_listen *addr, struct metrics_http **out,
                       char *err, size_t errlen);
int metrics_http_reload(struct metrics_http **h, struct server *srv, struct metrics *reg,
                        const struct config_hostport *listen, char *err, size_t errlen);
void metrics_http_close(struct metrics_http *h);

int metrics_http_start_unbound(uv_loop_t *loop, struct server *srv, struct metrics *reg,
                               struct metrics_http **out, char *err, size_t errlen);
int metrics_http_add_connection(struct metrics_http *h, int fd, const struct sockaddr *addr,
                                socklen_t addrlen);
unsigned metrics_http_connections(const struct metrics_http *h);

#endif
