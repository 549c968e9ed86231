/*
 * server - the SMTP listener: sockets, accept and the counts, the host of
 * every session, reload and stop. See server.h.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/smtp_reply.h"
#include "relay/queue_spill.h"
#include "relay/runner.h"
#include "server/auth.h"
#include "server/session.h"
#include "util/conn.h"
#include "util/tls.h"

#define LISTEN_BACKLOG 511

/* ---- one client connection: the host of its session ------------------ */

struct client {
	struct conn conn;
	struct server *srv;
	struct session *sess;      /* NULL when refused at accept */
	struct client *prev, *next;
	char ip[INET6_ADDRSTRLEN];
	char key[INET6_ADDRSTRLEN + 4];
	bool listed;               /* on srv->clients */
	bool counted;              /* holds a per-client slot */
	bool outside;              /* holds an outside_connections slot */
	bool conn_gone;            /* on_close ran: conn is dead */
	uint64_t spilled;          /* bytes of its message in the spool's tmp/ now */
	/* the commit in progress (one per session at a time) */
	uint64_t commit_size;
	session_step_cb commit_cb;
	void *commit_arg;
};

static void server_maybe_stopped(struct server *srv);

static int host_write(void *h, const char *p, size_t n)
{
	struct client *c = h;
	return c->conn_gone ? -1 : conn_write(&c->conn, p, n);
}

static void host_close(void *h, bool flush)
{
	struct client *c = h;
	if (!c->conn_gone)
		conn_close(&c->conn, flush);
}

static void host_read(void *h, bool on)
{
	struct client *c = h;
	if (c->conn_gone)
		return;
	if (on)
		conn_read_start(&c->conn);
	else
		conn_read_stop(&c->conn);
}

static void host_timeout(void *h, uint64_t ms)
{
	struct client *c = h;
	if (!c->conn_gone)
		conn_timeout(&c->conn, ms);
}

static size_t host_write_queued(void *h)
{
	struct client *c = h;
	return c->conn_gone ? 0 : c->conn.write_queued;
}

static int host_starttls(void *h, SSL_CTX *ctx)
{
	struct client *c = h;
	return c->conn_gone ? -1 : conn_starttls(&c->conn, ctx, true, NULL);
}

static const char *host_tls_info(void *h)
{
	struct client *c = h;
	return !c->conn_gone && conn_is_tls(&c->conn) ? tls_engine_describe(c->conn.tls) : NULL;
}

static struct settings *host_settings(void *h)
{
	struct client *c = h;
	return c->srv->set;
}

static bool host_storage_ok(void *h, uint64_t size)
{
	struct client *c = h;
	/* Its own spilled bytes are counted already (spilling_bytes). */
	return server_storage_ok(c->srv, size > c->spilled ? size - c->spilled : 0);
}

static void host_new_id(void *h, char id[QUEUE_ID_LEN + 1])
{
	struct client *c = h;
	queue_new_id(c->srv->queue, id);
}

static int host_spill(void *h, void **sp, const char *p, size_t n, session_step_cb cb, void *arg)
{
	struct client *c = h;
	/* A message being received takes room in the spool before its commit:
	 * counted, and refused (452 4.3.1 at the dot) when the spool is full,
	 * so that many large mails arriving at once cannot fill it first. */
	if (!server_storage_ok(c->srv, n))
		return -ENOSPC;
	if (!*sp && !(*sp = queue_spill_new(c->srv->loop, c->srv->queue)))
		return -ENOMEM;
	int rc = queue_spill_append(*sp, p, n, cb, arg);
	if (rc == 0) {
		c->spilled += n;
		c->srv->spilling_bytes += n;
	}
	return rc;
}

static void host_spill_free(void *h, void *sp)
{
	struct client *c = h;
	c->srv->spilling_bytes -= c->spilled;
	c->spilled = 0;
	queue_spill_free(sp);
}

static void client_commit_done(void *arg, int status)
{
	struct client *c = arg;
	c->srv->committing_bytes -= c->commit_size;
	c->commit_size = 0;
	/* May free c (a client gone meanwhile): nothing of c after it. */
	c->commit_cb(c->commit_arg, status);
}

static int host_commit(void *h, const struct queue_envelope *env, const struct session_message *m,
                       session_step_cb cb, void *arg)
{
	struct client *c = h;
	uv_buf_t parts[2] = {
		{ .base = (char *)m->hdr, .len = m->hdr_len },
		{ .base = (char *)m->tail, .len = m->tail_len },
	};
	int fd = m->spill ? queue_spill_fd(m->spill) : -1;
	c->commit_cb = cb;
	c->commit_arg = arg;
	int rc = queue_commit_spilled(c->srv->queue, env, parts, 2, 1, fd, m->spill_len, m->sign,
	                              m->sign_arg, client_commit_done, c);
	if (rc == 0) {
		c->commit_size = env->size;
		c->srv->committing_bytes += env->size;
	}
	return rc;
}

static int host_auth(void *h, struct auth_db *db, const char *user, const char *pass,
                     session_auth_cb cb, void *arg)
{
	struct client *c = h;
	return auth_verify(c->srv->loop, db, user, pass, cb, arg);
}

static void host_rejected(void *h, json_t *fields)
{
	struct client *c = h;
	evlog_emit(c->srv->log, "rejected", fields);
	c->srv->stats.rejected++;
}

static void host_received(void *h, const struct queue_envelope *env, json_t *fields)
{
	struct client *c = h;
	c->srv->stats.received++;
	evlog_emit(c->srv->log, "received", fields);
	if (c->srv->runner) {
		/* Called from the commit's callback (session_commit.c): the
		 * queue's copy of the message goes to the runner with it. */
		size_t len = 0;
		char *msg = queue_commit_message(c->srv->queue, &len);
		runner_add(c->srv->runner, env, msg, len);
	}
}

static void host_gone(void *h)
{
	free(h);
}

static const struct session_host client_host = {
	.write = host_write,
	.close = host_close,
	.read = host_read,
	.timeout = host_timeout,
	.write_queued = host_write_queued,
	.starttls = host_starttls,
	.tls_info = host_tls_info,
	.settings = host_settings,
	.storage_ok = host_storage_ok,
	.new_id = host_new_id,
	.spill = host_spill,
	.spill_free = host_spill_free,
	.commit = host_commit,
	.auth = host_auth,
	.rejected = host_rejected,
	.received = host_received,
	.gone = host_gone,
};

/* ---- connection callbacks -------------------------------------------- */

static void on_read(struct conn *cn, const char *p, size_t n)
{
	struct client *c = cn->data;
	if (c->sess)
		session_input(c->sess, p, n);
}

static void on_eof(struct conn *cn, int status)
{
	struct client *c = cn->data;
	(void)status;
	if (c->sess)
		session_eof(c->sess);
	else
		conn_close(cn, false);
}

static void on_tls(struct conn *cn, int status)
{
	struct client *c = cn->data;
	if (status < 0)
		fprintf(stderr, "hikyaku: session %s client %s: %s\n",
		        c->sess ? session_id(c->sess) : "-", c->ip, tls_engine_error(cn->tls));
	if (c->sess)
		session_tls_done(c->sess, status < 0 ? -1 : 0);
	else
		conn_close(cn, false);
}

static void on_timeout(struct conn *cn)
{
	struct client *c = cn->data;
	if (c->sess)
		session_timeout(c->sess);
	else
		conn_close(cn, false);
}

static void on_drain(struct conn *cn)
{
	struct client *c = cn->data;
	if (c->sess)
		session_drained(c->sess);
}

static void on_close(struct conn *cn)
{
	struct client *c = cn->data;
	struct server *srv = c->srv;
	c->conn_gone = true;
	if (c->counted) {
		gpointer n = g_hash_table_lookup(srv->per_client, c->key);
		if (GPOINTER_TO_UINT(n) <= 1)
			g_hash_table_remove(srv->per_client, c->key);
		else
			g_hash_table_insert(srv->per_client, g_strdup(c->key),
			                    GUINT_TO_POINTER(GPOINTER_TO_UINT(n) - 1));
	}
	if (c->outside)
		srv->noutside--;
	if (c->listed) {
		if (c->prev)
			c->prev->next = c->next;
		else
			srv->clients = c->next;
		if (c->next)
			c->next->prev = c->prev;
	}
	srv->nsessions--;
	/* The session may outlive the connection (a commit in progress):
	 * it frees itself, and then c (host_gone). */
	if (c->sess)
		session_closed(c->sess);
	else
		free(c);
	server_maybe_stopped(srv);
}

static const struct conn_ops client_ops = {
	.on_read = on_read,
	.on_eof = on_eof,
	.on_tls = on_tls,
	.on_close = on_close,
	.on_timeout = on_timeout,
	.on_drain = on_drain,
};

static bool client_allowed(const struct config *cfg, const struct sockaddr *sa)
{
	for (size_t i = 0; i < cfg->server.nallow; i++)
		if (config_cidr_contains(&cfg->server.allow[i], sa))
			return true;
	return false;
}

void server_client_key(const struct sockaddr *sa, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
			inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], ip, sizeof(ip));
			snprintf(out, cap, "%s", ip);
			return;
		}
		struct in6_addr net = a6->sin6_addr;
		memset(&net.s6_addr[8], 0, 8);
		inet_ntop(AF_INET6, &net, ip, sizeof(ip));
		snprintf(out, cap, "%s/64", ip);
		return;
	}
	inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
	snprintf(out, cap, "%s", ip);
}

/* Refused before a session exists: the reply, then close. */
static void client_refuse(struct client *c, const char *line)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s\r\n", line);
	if (conn_write(&c->conn, buf, (size_t)n) < 0)
		conn_close(&c->conn, false);
	else
		conn_close(&c->conn, true);
}

static void client_accept(struct server *srv, uv_stream_t *listener)
{
	struct client *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->srv = srv;
	if (conn_init(srv->loop, &c->conn, &client_ops, c) < 0) {
		free(c);
		return;
	}
	srv->nsessions++;
	if (uv_accept(listener, (uv_stream_t *)&c->conn.tcp) < 0) {
		conn_close(&c->conn, false);
		return;
	}
	c->listed = true;
	c->next = srv->clients;
	if (srv->clients)
		srv->clients->prev = c;
	srv->clients = c;
	srv->stats.connections++;

	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	if (uv_tcp_getpeername(&c->conn.tcp, (struct sockaddr *)&ss, &sslen) < 0) {
		conn_close(&c->conn, false);
		return;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
			inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], c->ip, sizeof(c->ip));
		else
			inet_ntop(AF_INET6, &a6->sin6_addr, c->ip, sizeof(c->ip));
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&ss)->sin_addr, c->ip, sizeof(c->ip));
	}
	server_client_key((const struct sockaddr *)&ss, c->key, sizeof(c->key));
	const struct config *cfg = srv->set->cfg;
	bool allowed = client_allowed(cfg, (const struct sockaddr *)&ss);
	uv_tcp_nodelay(&c->conn.tcp, 1);

	if (srv->nsessions > cfg->server.max_connections || srv->stopping) {
		client_refuse(c, R_TOO_MANY_CONN);
		return;
	}
	unsigned have = GPOINTER_TO_UINT(g_hash_table_lookup(srv->per_client, c->key));
	if (have >= cfg->server.max_connections_per_client) {
		client_refuse(c, R_TOO_MANY_CLIENT);
		return;
	}
	/* SPEC §3: outsiders (who may only write to the bounce address)
	 * share outside_connections; the shop's own clients never wait for
	 * them. */
	if (!allowed && srv->noutside >= cfg->server.outside_connections) {
		client_refuse(c, R_TOO_MANY_OUTSIDE);
		return;
	}
	g_hash_table_insert(srv->per_client, g_strdup(c->key), GUINT_TO_POINTER(have + 1));
	c->counted = true;
	if (!allowed) {
		srv->noutside++;
		c->outside = true;
	}
	char id[32];
	snprintf(id, sizeof(id), "%08llX%06llX", (unsigned long long)srv->start_time,
	         (unsigned long long)++srv->next_session);
	c->sess = session_new(&client_host, c, id, c->ip, allowed);
	if (!c->sess) {
		conn_close(&c->conn, false);
		return;
	}
	session_start(c->sess);
}

static void clients_drain(struct server *srv)
{
	for (struct client *c = srv->clients, *next; c; c = next) {
		next = c->next;
		if (c->sess)
			session_drain(c->sess);
	}
}

static void clients_close_all(struct server *srv)
{
	for (struct client *c = srv->clients, *next; c; c = next) {
		next = c->next;
		if (!c->sess || !session_busy(c->sess))
			conn_close(&c->conn, false);
	}
}

static void on_connection(uv_stream_t *ls, int status)
{
	struct listener *l = ls->data;
	if (status < 0) {
		fprintf(stderr, "hikyaku: accept on %s:%u: %s\n", l->addr.host,
		        (unsigned)l->addr.port, uv_strerror(status));
		return;
	}
	client_accept(l->srv, ls);
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
	uint64_t queued = srv->committing_bytes + srv->spilling_bytes +
	                  (srv->runner ? runner_queued_bytes(srv->runner) : 0);
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

static void drain_timeout(uv_timer_t *t)
{
	struct server *srv = t->data;
	clients_close_all(srv);
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
	clients_drain(srv);
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
