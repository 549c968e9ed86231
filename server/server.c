/*
 * server - the SMTP listener: sockets, settings, reload and stop.
 * See server.h.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay/dkim.h"
#include "relay/runner.h"
#include "server/auth.h"
#include "util/tls.h"

#define LISTEN_BACKLOG 511

struct diag_ctx {
	char *err;
	size_t errlen;
};

static void settings_auth_diag(void *arg, const char *msg)
{
	struct diag_ctx *d = arg;
	if (!d->err[0])
		snprintf(d->err, d->errlen, "%s", msg);
}

struct settings *settings_new(struct config *cfg, char *err, size_t errlen)
{
	struct settings *set = calloc(1, sizeof(*set));
	if (!set) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	set->refs = 1;
	set->cfg = cfg;
	if (cfg->server.tls_cert && cfg->server.tls_key) {
		set->tls = tls_server_ctx_new(cfg->server.tls_cert, cfg->server.tls_key, err, errlen);
		if (!set->tls)
			goto fail;
	}
	if (cfg->server.auth_file) {
		err[0] = '\0';
		struct diag_ctx d = { err, errlen };
		set->auth = auth_db_load(cfg->server.auth_file, settings_auth_diag, &d);
		if (!set->auth)
			goto fail;
	}
	set->dkim = dkim_keys_load(cfg, err, errlen);
	if (!set->dkim)
		goto fail;
	return set;
fail:
	set->cfg = NULL; /* stays with the caller */
	settings_unref(set);
	return NULL;
}

void settings_ref(struct settings *set)
{
	set->refs++;
}

void settings_unref(struct settings *set)
{
	if (!set || --set->refs > 0)
		return;
	SSL_CTX_free(set->tls);
	auth_db_unref(set->auth);
	dkim_keys_unref(set->dkim);
	config_unref(set->cfg);
	free(set);
}

static void on_connection(uv_stream_t *ls, int status)
{
	struct listener *l = ls->data;
	if (status < 0) {
		fprintf(stderr, "hikyaku: accept on %s:%u: %s\n", l->addr.host,
		        (unsigned)l->addr.port, uv_strerror(status));
		return;
	}
	session_start(l->srv, ls);
}

static void listener_closed(uv_handle_t *h)
{
	free(h->data);
}

static int listener_open(struct server *srv, const struct config_listen *a, char *err, size_t errlen)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l)
		return UV_ENOMEM;
	l->srv = srv;
	l->addr = *a;
	struct sockaddr_storage ss;
	int rc;
	unsigned flags = 0;
	if (strchr(a->host, ':')) {
		rc = uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)&ss);
		flags = UV_TCP_IPV6ONLY; /* [::]:25 and 0.0.0.0:25 may both be listed */
	} else {
		rc = uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)&ss);
	}
	if (rc == 0)
		rc = uv_tcp_init(srv->loop, &l->tcp);
	if (rc < 0) {
		free(l);
		snprintf(err, errlen, "listen %s:%u: %s", a->host, (unsigned)a->port, uv_strerror(rc));
		return rc;
	}
	l->tcp.data = l;
	rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, flags);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
	if (rc < 0) {
		snprintf(err, errlen, "cannot listen on %s%s%s:%u: %s", flags ? "[" : "", a->host,
		         flags ? "]" : "", (unsigned)a->port, uv_strerror(rc));
		uv_close((uv_handle_t *)&l->tcp, listener_closed);
		return rc;
	}
	g_ptr_array_add(srv->listeners, l);
	return 0;
}

static void listener_close(struct listener *l)
{
	uv_close((uv_handle_t *)&l->tcp, listener_closed);
}

#define SPACE_CHECK_MS 1000

static void space_done(uv_fs_t *req)
{
	struct server *srv = req->data;
	if (req->result == 0 && req->ptr) {
		const uv_statfs_t *st = req->ptr;
		srv->spool_avail = st->f_bavail * st->f_bsize;
		srv->spool_total = st->f_blocks * st->f_bsize;
		srv->space_known = true;
	}
	uv_fs_req_cleanup(req);
	srv->space_busy = false;
}

/* statfs() may wait on the disk: it runs on the thread pool. */
static void space_check(uv_timer_t *t)
{
	struct server *srv = t->data;
	if (srv->space_busy)
		return;
	srv->space_req.data = srv;
	if (uv_fs_statfs(srv->loop, &srv->space_req, queue_dir(srv->queue), space_done) == 0)
		srv->space_busy = true;
}

bool server_storage_ok(const struct server *srv, uint64_t size)
{
	const struct config *cfg = srv->set->cfg;
	uint64_t queued = srv->committing_bytes + (srv->runner ? runner_queued_bytes(srv->runner) : 0);
	if (cfg->queue.max_size && queued + size > cfg->queue.max_size)
		return false;
	if (!srv->space_known)
		return true;
	uint64_t reserve = 2 * cfg->server.max_message_size;
	if (reserve > srv->spool_total / 20)
		reserve = srv->spool_total / 20;
	return srv->spool_avail >= reserve + size;
}

int server_init(struct server *srv, uv_loop_t *loop, struct config *cfg, struct queue *queue,
                struct evlog *log, char *err, size_t errlen)
{
	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->queue = queue;
	srv->log = log;
	srv->start_time = (uint64_t)time(NULL);
	srv->set = settings_new(cfg, err, errlen);
	if (!srv->set)
		return -1;
	srv->listeners = g_ptr_array_new();
	srv->per_client = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	uv_timer_init(loop, &srv->drain_timer);
	srv->drain_timer.data = srv;
	uv_timer_init(loop, &srv->space_timer);
	srv->space_timer.data = srv;
	uv_timer_start(&srv->space_timer, space_check, 0, SPACE_CHECK_MS);
	return 0;
}

int server_listen(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = srv->set->cfg;
	for (size_t i = 0; i < cfg->server.nlisten; i++)
		if (listener_open(srv, &cfg->server.listen[i], err, errlen) < 0)
			return -1;
	return 0;
}

static bool same_listen(const struct config_listen *a, const struct config_listen *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

int server_reload(struct server *srv, struct config *cfg, char *err, size_t errlen)
{
	struct settings *set = settings_new(cfg, err, errlen);
	if (!set)
		return -1;
	/* Open what is new first: if a new address cannot be bound, the old
	 * settings stay whole. */
	for (unsigned i = 0; i < srv->listeners->len; i++)
		((struct listener *)g_ptr_array_index(srv->listeners, i))->keep = false;
	unsigned old_count = srv->listeners->len;
	for (size_t j = 0; j < cfg->server.nlisten; j++) {
		bool found = false;
		for (unsigned i = 0; i < old_count; i++) {
			struct listener *l = g_ptr_array_index(srv->listeners, i);
			if (same_listen(&l->addr, &cfg->server.listen[j])) {
				l->keep = true;
				found = true;
			}
		}
		if (!found && listener_open(srv, &cfg->server.listen[j], err, errlen) < 0) {
			while (srv->listeners->len > old_count) {
				listener_close(g_ptr_array_index(srv->listeners, srv->listeners->len - 1));
				g_ptr_array_remove_index(srv->listeners, srv->listeners->len - 1);
			}
			set->cfg = NULL; /* the caller still owns cfg */
			settings_unref(set);
			return -1;
		}
	}
	for (unsigned i = 0; i < old_count;) {
		struct listener *l = g_ptr_array_index(srv->listeners, i);
		if (!l->keep) {
			listener_close(l);
			g_ptr_array_remove_index(srv->listeners, i);
			old_count--;
		} else {
			i++;
		}
	}
	settings_unref(srv->set);
	srv->set = set;
	return 0;
}

static void server_maybe_stopped(struct server *srv)
{
	if (srv->stopping && srv->nsessions == 0 && srv->stopped) {
		void (*cb)(struct server *) = srv->stopped;
		srv->stopped = NULL;
		uv_close((uv_handle_t *)&srv->drain_timer, NULL);
		uv_close((uv_handle_t *)&srv->space_timer, NULL);
		cb(srv);
	}
}

void server_session_gone(struct server *srv)
{
	srv->nsessions--;
	server_maybe_stopped(srv);
}

static void drain_timeout(uv_timer_t *t)
{
	struct server *srv = t->data;
	sessions_close_all(srv);
}

void server_stop(struct server *srv, void (*stopped)(struct server *srv))
{
	if (srv->stopping)
		return;
	srv->stopping = true;
	srv->stopped = stopped;
	for (unsigned i = 0; i < srv->listeners->len; i++)
		listener_close(g_ptr_array_index(srv->listeners, i));
	g_ptr_array_set_size(srv->listeners, 0);
	sessions_drain(srv);
	uv_timer_start(&srv->drain_timer, drain_timeout, SERVER_DRAIN_MS, 0);
	server_maybe_stopped(srv);
}

void server_free(struct server *srv)
{
	if (srv->listeners)
		g_ptr_array_free(srv->listeners, TRUE);
	if (srv->per_client)
		g_hash_table_destroy(srv->per_client);
	settings_unref(srv->set);
	srv->set = NULL;
}
