/*
 * metrics_http - /metrics and /health with libmicrohttpd on the libuv
 * loop. See metrics_http.h.
 *
 * libmicrohttpd runs in its "external polling" mode with epoll: it owns
 * one epoll descriptor holding its listening socket and connections,
 * and does one round of work whenever MHD_run() is called. That
 * descriptor is readable whenever MHD has something to do, so a
 * uv_poll on it and a uv_timer set to MHD_get_timeout() are all the loop
 * needs. MHD_run() never blocks: its sockets are non-blocking and it
 * asks epoll with a zero timeout.
 *
 * MHD bounds the request's size (the connection's memory pool) and its
 * idleness, but not its total time: a client sending one byte of header
 * every few seconds would keep its slot forever. Each connection is
 * therefore watched from MHD_OPTION_NOTIFY_CONNECTION, and one whose
 * request has taken longer than REQUEST_MS is shut down (shutdown(2),
 * not close(2): MHD still owns the descriptor and closes it itself when
 * it sees the end of the stream).
 *
 * metrics_http_start_unbound() starts the same daemon with
 * MHD_USE_NO_LISTEN_SOCKET, for fuzz/fuzz_metrics_http.c: its
 * connections come from MHD_add_connection() (metrics_http_add_connection())
 * and get every bound above (the per-address one by the address given).
 *
 * libmicrohttpd 0.9.75 closes the connection after any response queued
 * at the handler's first call (it will not read a body or a next
 * request after it), so each connection carries one request.
 */
#include "server/metrics_http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <uv.h>

#include "relay/runner.h"
#include "relay/suppression.h"
#include "util/clock.h"

#define MAX_CONNECTIONS 64
#define MAX_PER_ADDRESS 32
#define MEMORY_LIMIT (16 * 1024)
#define IDLE_S 10
#define REQUEST_MS 15000
#define SWEEP_MS 1000
#define SUPP_REFRESH_MS 1000
#define LOG_EVERY_MS 60000

/* One TCP connection, from MHD's STARTED to its CLOSED notification. */
struct hconn {
	struct hconn *next, *prev;
	struct MHD_Connection *c;
	int fd;
	uint64_t since_ms;              /* start of the current request */
	bool cut;                       /* shut down by the sweep */
};

struct supp_count {
	uv_work_t req;
	struct metrics_http *h;
	struct supp *supp;
	uv_mutex_t *lock;
	int64_t version;                /* in: the last one counted; out: now */
	int64_t entries;                /* in: the last count; out: now, or -1 */
};

struct metrics_http {
	uv_loop_t *loop;
	struct server *srv;
	struct metrics *reg;
	struct config_listen addr;
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;               /* MHD_get_timeout() */
	uv_timer_t sweep;               /* REQUEST_MS */
	int refs;                       /* handles not closed yet, and the count in flight */
	bool closing;
	struct hconn *conns;
	/* The suppression list's size (-1: not counted yet). */
	int64_t supp_entries;
	int64_t supp_version;
	uint64_t supp_at_ms;
	bool supp_busy;
	/* MHD's own messages: into err while starting, then to stderr at
	 * most once a minute (a flood would otherwise fill the journal). */
	char *start_err;
	size_t start_errlen;
	uint64_t log_at_ms;
	unsigned log_dropped;
};

static void unref(struct metrics_http *h)
{
	if (--h->refs == 0)
		free(h);
}

static void handle_closed(uv_handle_t *hd)
{
	unref(hd->data);
}

/* ---- MHD on the loop ------------------------------------------------ */

static void mhd_run(struct metrics_http *h);

static void on_timer(uv_timer_t *t)
{
	mhd_run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	mhd_run(p->data);
}

static void mhd_run(struct metrics_http *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (h->closing)
		return;
	MHD_run(h->mhd);
	if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
		uv_timer_start(&h->timer, on_timer, ms, 0);
	else
		uv_timer_stop(&h->timer);
}

/* libmicrohttpd's error logger: fmt is the library's own format. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct metrics_http *h = cls;
	char msg[300];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\r\n")] = '\0';
	if (h->start_err) {
		if (!h->start_err[0])
			snprintf(h->start_err, h->start_errlen, "%s", msg);
		return;
	}
	uint64_t now = clock_now_ms();
	if (h->log_at_ms && now - h->log_at_ms < LOG_EVERY_MS) {
		h->log_dropped++;
		return;
	}
	if (h->log_dropped)
		fprintf(stderr, "hikyaku: metrics: %s (and %u more messages in the last minute)\n",
		        msg, h->log_dropped);
	else
		fprintf(stderr, "hikyaku: metrics: %s\n", msg);
	h->log_at_ms = now;
	h->log_dropped = 0;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct metrics_http *h = cls;
	struct hconn *hc = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		hc = calloc(1, sizeof(*hc));
		if (!hc)
			return;     /* not watched: MHD's idle timeout still holds */
		hc->c = c;
		hc->fd = ci ? ci->connect_fd : -1;
		hc->since_ms = clock_now_ms();
		hc->next = h->conns;
		if (h->conns)
			h->conns->prev = hc;
		h->conns = hc;
		*socket_context = hc;
		return;
	}
	if (!hc)
		return;
	if (hc->prev)
		hc->prev->next = hc->next;
	else
		h->conns = hc->next;
	if (hc->next)
		hc->next->prev = hc->prev;
	free(hc);
	*socket_context = NULL;
}

/* A request is over: the next one on the connection gets its own time. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)con_cls;
	(void)toe;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct hconn *hc = ci ? ci->socket_context : NULL;
	if (hc)
		hc->since_ms = clock_now_ms();
}

static void supp_refresh(struct metrics_http *h);

static void on_sweep(uv_timer_t *t)
{
	struct metrics_http *h = t->data;
	uint64_t now = clock_now_ms();
	bool cut = false;
	for (struct hconn *hc = h->conns; hc; hc = hc->next)
		if (!hc->cut && hc->fd >= 0 && now - hc->since_ms > REQUEST_MS) {
			shutdown(hc->fd, SHUT_RDWR);
			hc->cut = true;
			cut = true;
		}
	if (cut)
		mhd_run(h);
	if (h->supp_entries < 0)
		supp_refresh(h);
}

/* ---- what is served ------------------------------------------------- */

static void supp_count_work(uv_work_t *req);
static void supp_count_done(uv_work_t *req, int status);

/* Counting the list reads the database: on the thread pool, under the
 * lock every user of the runner's handle holds, and only when the list
 * changed since the last count (supp_data_version() costs no read). */
static void supp_refresh(struct metrics_http *h)
{
	struct runner *r = h->srv->runner;
	uv_mutex_t *lock;
	struct supp *s;

	if (h->supp_busy || !r || clock_now_ms() - h->supp_at_ms < SUPP_REFRESH_MS)
		return;
	s = runner_suppression(r, &lock);
	if (!s)
		return;
	struct supp_count *w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->req.data = w;
	w->h = h;
	w->supp = s;
	w->lock = lock;
	w->version = h->supp_version;
	w->entries = h->supp_entries;
	if (uv_queue_work(h->loop, &w->req, supp_count_work, supp_count_done) != 0) {
		free(w);
		return;
	}
	h->supp_busy = true;
	h->refs++;
}

static int count_one(void *arg, const struct supp_entry *e)
{
	(void)e;
	(*(int64_t *)arg)++;
	return 0;
}

static void supp_count_work(uv_work_t *req)
{
	struct supp_count *w = req->data;
	uv_mutex_lock(w->lock);
	int64_t v = supp_data_version(w->supp);
	if (w->entries < 0 || v != w->version) {
		int64_t n = 0;
		w->entries = supp_list(w->supp, NULL, count_one, &n) < 0 ? -1 : n;
		w->version = v;
	}
	uv_mutex_unlock(w->lock);
}

static void supp_count_done(uv_work_t *req, int status)
{
	struct supp_count *w = req->data;
	struct metrics_http *h = w->h;
	if (status == 0 && !h->closing) {
		h->supp_entries = w->entries;
		h->supp_version = w->version;
	}
	h->supp_at_ms = clock_now_ms();
	h->supp_busy = false;
	free(w);
	unref(h);
}

static void gather(struct metrics_http *h, struct metrics_gauges *g)
{
	struct server *srv = h->srv;
	memset(g, 0, sizeof(*g));
	if (srv->runner) {
		struct runner_gauges rg;
		runner_gauges(srv->runner, &rg);
		for (int i = 0; i < METRICS_NROUTES; i++) {
			g->queue_messages[i] = rg.mails[i];
			g->queue_recipients[i] = rg.rcpts[i];
		}
		g->queue_bytes = rg.bytes;
		uint64_t now = clock_now_ms();
		if (rg.oldest_arrival_ms && now > rg.oldest_arrival_ms)
			g->queue_oldest_seconds = (double)(now - rg.oldest_arrival_ms) / 1000.0;
		g->connections_out = rg.conns_out;
		g->service_paused = rg.service_paused;
		/* Each [destination NAME] policy in force, paused or not (SPEC §9
		 * hikyaku_destination_paused); freed by the caller. */
		const struct config *cfg = srv->set->cfg;
		struct metrics_destination *ds =
			cfg->ndestinations ? calloc(cfg->ndestinations, sizeof(*ds)) : NULL;
		for (size_t i = 0; ds && i < cfg->ndestinations; i++) {
			ds[i].name = cfg->destinations[i].name;
			ds[i].paused = runner_destination_paused(srv->runner, ds[i].name);
		}
		g->destinations = ds;
		g->ndestinations = ds ? cfg->ndestinations : 0;
	}
	g->connections_in = srv->nsessions;
	g->suppression_entries = h->supp_entries;
	g->start_time_seconds = (double)srv->start_time;
	g->version = HIKYAKU_VERSION;
}

/* NULL when the relay takes mail, else why not (a line of text). */
static const char *unhealthy(const struct server *srv)
{
	if (srv->stopping)
		return "stopping\n";
	if (srv->listeners->len == 0)
		return "not listening\n";
	if (srv->nsessions >= srv->set->cfg->server.max_connections)
		return "at max_connections\n";
	if (!server_storage_ok(srv, 0))
		return "the queue is full (452 4.3.1)\n";
	return NULL;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
                             char *body, size_t len, bool must_free)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result rc = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned code, const char *s)
{
	return reply(c, code, "text/plain; charset=utf-8", (char *)s, strlen(s), false);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
	struct metrics_http *h = cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;

	/* Answered at the first call, with the header: a body that a
	 * client sends along is never read (MHD then closes the
	 * connection). */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/metrics") == 0) {
		struct metrics_gauges g;
		size_t len;
		gather(h, &g);
		char *body = metrics_render(h->reg, &g, &len);
		free((void *)g.destinations);
		supp_refresh(h);
		if (!body)
			return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len,
		             true);
	}
	if (strcmp(url, "/health") == 0) {
		const char *why = unhealthy(h->srv);
		return why ? text(c, MHD_HTTP_SERVICE_UNAVAILABLE, why) : text(c, MHD_HTTP_OK, "ok\n");
	}
	return text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* ---- start and stop ------------------------------------------------- */

/* The daemon on addr, or with no listening socket at all (addr NULL:
 * connections come from metrics_http_add_connection()). Either way the
 * same handler, bounds and loop integration. */
static int start(uv_loop_t *loop, struct server *srv, struct metrics *reg,
                 const struct config_listen *addr, struct metrics_http **out, char *err,
                 size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	bool v6 = addr && strchr(addr->host, ':') != NULL;
	int rc = 0;

	memset(&ss, 0, sizeof(ss));
	if (!addr) {
		flags |= MHD_USE_NO_LISTEN_SOCKET;
		ss.ss_family = AF_INET;         /* MHD keeps it, opens nothing */
	} else if (v6) {
		rc = uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&ss);
		flags |= MHD_USE_IPv6;
	} else {
		rc = uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&ss);
	}
	if (rc < 0) {
		snprintf(err, errlen, "[metrics] listen %s: %s", addr->host, uv_strerror(rc));
		return -1;
	}
	struct metrics_http *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	h->loop = loop;
	h->srv = srv;
	h->reg = reg;
	if (addr)
		h->addr = *addr;
	h->supp_entries = -1;
	err[0] = '\0';
	h->start_err = err;
	h->start_errlen = errlen;
	h->mhd = MHD_start_daemon(flags, addr ? addr->port : 0, NULL, NULL, on_request, h,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MAX_PER_ADDRESS,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MEMORY_LIMIT,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_S,
		MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)MAX_CONNECTIONS,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
		MHD_OPTION_END);
	h->start_err = NULL;
	const union MHD_DaemonInfo *di = h->mhd ? MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
	if (!di) {
		char why[256];
		snprintf(why, sizeof(why), "%s", err[0] ? err : strerror(errno));
		if (addr)
			snprintf(err, errlen, "[metrics] cannot listen on %s%s%s:%u: %s", v6 ? "[" : "",
			         addr->host, v6 ? "]" : "", (unsigned)addr->port, why);
		else
			snprintf(err, errlen, "[metrics] cannot start: %s", why);
		if (h->mhd)
			MHD_stop_daemon(h->mhd);
		free(h);
		return -1;
	}
	uv_poll_init(h->loop, &h->poll, di->epoll_fd);
	uv_timer_init(h->loop, &h->timer);
	uv_timer_init(h->loop, &h->sweep);
	h->poll.data = h->timer.data = h->sweep.data = h;
	h->refs = 3;
	uv_poll_start(&h->poll, UV_READABLE, on_poll);
	uv_timer_start(&h->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
	/* MHD's first round, and the first count of the suppression list,
	 * once the loop runs: srv may not be set up before that. */
	uv_timer_start(&h->timer, on_timer, 0, 0);
	*out = h;
	return 0;
}

int metrics_http_start(uv_loop_t *loop, struct server *srv, struct metrics *reg,
                       const struct config_listen *addr, struct metrics_http **out,
                       char *err, size_t errlen)
{
	if (start(loop, srv, reg, addr, out, err, errlen) < 0)
		return -1;
	bool v6 = strchr(addr->host, ':') != NULL;
	fprintf(stderr, "hikyaku: metrics on http://%s%s%s:%u/metrics\n", v6 ? "[" : "", addr->host,
	        v6 ? "]" : "", (unsigned)addr->port);
	return 0;
}

int metrics_http_start_unbound(uv_loop_t *loop, struct server *srv, struct metrics *reg,
                               struct metrics_http **out, char *err, size_t errlen)
{
	return start(loop, srv, reg, NULL, out, err, errlen);
}

int metrics_http_add_connection(struct metrics_http *h, int fd, const struct sockaddr *addr,
                                socklen_t addrlen)
{
	if (h->closing) {
		close(fd);
		return -1;
	}
	/* MHD owns fd from here on, and closes it itself when it refuses it. */
	if (MHD_add_connection(h->mhd, fd, addr, addrlen) != MHD_YES)
		return -1;
	/* Its first read comes from MHD's ready list, not from an epoll
	 * event: a round on the next loop iteration. */
	uv_timer_start(&h->timer, on_timer, 0, 0);
	return 0;
}

unsigned metrics_http_connections(const struct metrics_http *h)
{
	unsigned n = 0;
	for (const struct hconn *hc = h->conns; hc; hc = hc->next)
		n++;
	return n;
}

void metrics_http_close(struct metrics_http *h)
{
	if (!h || h->closing)
		return;
	h->closing = true;
	/* Out of libuv's epoll set before MHD closes the descriptor. */
	uv_poll_stop(&h->poll);
	uv_timer_stop(&h->timer);
	uv_timer_stop(&h->sweep);
	MHD_stop_daemon(h->mhd);        /* closes every connection: on_connection frees them */
	h->mhd = NULL;
	uv_close((uv_handle_t *)&h->poll, handle_closed);
	uv_close((uv_handle_t *)&h->timer, handle_closed);
	uv_close((uv_handle_t *)&h->sweep, handle_closed);
}

static bool same_addr(const struct config_listen *a, const struct config_listen *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

int metrics_http_reload(struct metrics_http **hp, struct server *srv, struct metrics *reg,
                        const struct config_hostport *listen, char *err, size_t errlen)
{
	struct metrics_http *old = *hp, *nh = NULL;

	if (!listen->set) {
		metrics_http_close(old);
		*hp = NULL;
		return 0;
	}
	if (old && same_addr(&old->addr, &listen->addr))
		return 0;
	/* The new address first, so that a failure leaves the old one
	 * serving; when the two collide (the same port on a wildcard),
	 * close the old one and try again, and reopen it if that fails. */
	if (metrics_http_start(srv->loop, srv, reg, &listen->addr, &nh, err, errlen) == 0) {
		metrics_http_close(old);
		*hp = nh;
		return 0;
	}
	if (!old)
		return -1;
	struct config_listen was = old->addr;
	metrics_http_close(old);
	*hp = NULL;
	if (metrics_http_start(srv->loop, srv, reg, &listen->addr, &nh, err, errlen) == 0) {
		*hp = nh;
		return 0;
	}
	char why[512];
	snprintf(why, sizeof(why), "%s", err);
	if (metrics_http_start(srv->loop, srv, reg, &was, hp, err, errlen) == 0)
		snprintf(err, errlen, "%s; still on the old address", why);
	else
		snprintf(err, errlen, "%s; metrics are off", why);
	return -1;
}
