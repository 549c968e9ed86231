/*
 * control - the control socket: hikyakuctl's queue and status commands.
 * See control.h.
 */
#include "server/control.h"

#include <errno.h>
#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "relay/queue.h"
#include "relay/runner.h"
#include "server/server.h"
#include "util/clock.h"
#include "util/esc.h"
#include "util/fsutil.h"

struct control {
	uv_loop_t *loop;
	uv_pipe_t pipe;
	struct server *srv;
	char *path;
	struct ctl_client *clients;
};

struct ctl_client {
	struct control *c;
	struct ctl_client *next, **prevp;
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_write_t wr;
	char *reply;
	char req[CONTROL_REQUEST_MAX];
	size_t len;
	int handles;                /* open libuv handles: freed at 0 */
	bool done;                  /* answered or dropped: read no more */
};

/* ---- requests -------------------------------------------------------- */

static json_t *fail(const char *code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static json_t *fail(const char *code, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A cut (the arguments are cut with esc_cut(), the whole by
	 * vsnprintf) must leave valid UTF-8: json_pack() refuses anything
	 * else, and the client would get an empty answer. */
	const char *end;
	if (!g_utf8_validate(msg, -1, &end) && strlen(end) < 4)
		msg[end - msg] = '\0';
	char *valid = g_utf8_make_valid(msg, -1);
	json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 0, "code", code, "error", valid);
	g_free(valid);
	return o;
}

static json_t *ok(json_t *o)
{
	json_object_set_new(o, "ok", json_true());
	return o;
}

static json_t *cmd_status(struct control *c)
{
	struct server *srv = c->srv;
	const struct config *cfg = srv->set->cfg;
	uint64_t now_s = clock_now_ms() / 1000;
	char since[40];
	clock_rfc3339(srv->start_time * 1000, since, sizeof(since));
	json_t *o = srv->runner ? runner_status(srv->runner) : json_object();
	json_object_set_new(o, "version", json_string(HIKYAKU_VERSION));
	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "hostname", json_string(cfg->server.hostname));
	json_object_set_new(o, "started", json_string(since));
	json_object_set_new(o, "uptime_s", json_integer(
		(json_int_t)(now_s > srv->start_time ? now_s - srv->start_time : 0)));
	json_object_set_new(o, "stopping", json_boolean(srv->stopping));
	json_object_set_new(o, "connections", json_pack("{s:I,s:I,s:I}",
		"open", (json_int_t)srv->nsessions, "limit", (json_int_t)cfg->server.max_connections,
		"total", (json_int_t)srv->stats.connections));
	json_t *counts = json_object_get(o, "counts");
	if (!counts) {
		counts = json_object();
		json_object_set_new(o, "counts", counts);
	}
	json_object_set_new(counts, "received", json_integer((json_int_t)srv->stats.received));
	json_object_set_new(counts, "rejected", json_integer((json_int_t)srv->stats.rejected));
	return ok(o);
}

/* Answers one request. */
static json_t *control_handle(struct control *c, const json_t *req)
{
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	const char *id = json_string_value(json_object_get(req, "id"));
	if (!cmd)
		return fail("bad_request", "%s", "the request names no command");
	if (strcmp(cmd, "status") == 0)
		return cmd_status(c);
	struct runner *r = c->srv->runner;
	if (!r)
		return fail("bad_request", "%s", "this daemon has no queue runner");
	if (strcmp(cmd, "queue.list") == 0)
		return ok(json_pack("{s:o}", "mails", runner_queue_list(r)));
	if (strcmp(cmd, "queue.retry") == 0 && !id && json_is_true(json_object_get(req, "all"))) {
		int n = runner_queue_retry(r, NULL);
		return ok(json_pack("{s:i}", "mails", n));
	}
	if (strcmp(cmd, "queue.show") != 0 && strcmp(cmd, "queue.retry") != 0 &&
	    strcmp(cmd, "queue.delete") != 0)
		return fail("bad_request", "unknown command \"%.*s\"", (int)esc_cut(cmd, 100), cmd);
	if (!id)
		return fail("bad_request", "%s", "the request names no queue id");
	/* Only the id's own form may reach the queue (queue.h). */
	if (!queue_id_valid(id))
		return fail("not_found", "no mail %.*s in the queue", (int)esc_cut(id, 40), id);
	if (strcmp(cmd, "queue.show") == 0) {
		json_t *v = runner_queue_show(r, id);
		return v ? ok(json_pack("{s:o}", "mail", v)) : fail("not_found", "no mail %s in the queue", id);
	}
	if (strcmp(cmd, "queue.retry") == 0) {
		int n = runner_queue_retry(r, id);
		return n < 0 ? fail("not_found", "no mail %s in the queue", id)
		             : ok(json_pack("{s:i}", "mails", n));
	}
	int rc = runner_queue_delete(r, id);
	if (rc < 0)
		return fail("not_found", "no mail %s in the queue", id);
	return ok(json_pack("{s:b}", "after_delivery", rc == 1));
}

/* ---- connections ----------------------------------------------------- */

static void client_handle_closed(uv_handle_t *h)
{
	struct ctl_client *cl = h->data;
	if (--cl->handles > 0)
		return;
	free(cl->reply);
	free(cl);
}

static void client_close(struct ctl_client *cl)
{
	if (cl->prevp) {
		*cl->prevp = cl->next;
		if (cl->next)
			cl->next->prevp = cl->prevp;
		cl->prevp = NULL;
	}
	cl->done = true;
	uv_close((uv_handle_t *)&cl->timer, client_handle_closed);
	uv_close((uv_handle_t *)&cl->pipe, client_handle_closed);
}

static void client_written(uv_write_t *w, int status)
{
	(void)status;
	struct ctl_client *cl = w->data;
	if (cl->prevp)
		client_close(cl);
}

static void client_reply(struct ctl_client *cl, json_t *ans)
{
	cl->done = true;
	uv_read_stop((uv_stream_t *)&cl->pipe);
	size_t n = 0;
	char *text = json_dumps(ans, JSON_COMPACT);
	json_decref(ans);
	if (text) {
		n = strlen(text);
		char *t = realloc(text, n + 2);
		if (t) {
			t[n++] = '\n';
			t[n] = '\0';
			text = t;
		}
	}
	cl->reply = text;
	uv_buf_t b = uv_buf_init(text ? text : "", (unsigned)n);
	cl->wr.data = cl;
	if (!text || uv_write(&cl->wr, (uv_stream_t *)&cl->pipe, &b, 1, client_written) < 0)
		client_close(cl);
}

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)hint;
	struct ctl_client *cl = h->data;
	buf->base = cl->req + cl->len;
	buf->len = sizeof(cl->req) - cl->len;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	(void)buf;
	struct ctl_client *cl = s->data;
	if (cl->done)
		return;
	if (n < 0) {
		client_close(cl);
		return;
	}
	cl->len += (size_t)n;
	char *nl = memchr(cl->req, '\n', cl->len);
	if (!nl) {
		if (cl->len == sizeof(cl->req))
			client_reply(cl, fail("bad_request", "%s", "the request is longer than 4096 bytes"));
		return;
	}
	json_error_t err;
	json_t *req = json_loadb(cl->req, (size_t)(nl - cl->req), 0, &err);
	if (!json_is_object(req))
		client_reply(cl, fail("bad_request", "%s", "the request is not a JSON object"));
	else
		client_reply(cl, control_handle(cl->c, req));
	json_decref(req);
}

static void client_timeout(uv_timer_t *t)
{
	struct ctl_client *cl = t->data;
	if (cl->prevp)
		client_close(cl);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct control *c = server->data;
	if (status < 0)
		return;
	struct ctl_client *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return;
	cl->c = c;
	uv_pipe_init(c->loop, &cl->pipe, 0);
	uv_timer_init(c->loop, &cl->timer);
	cl->pipe.data = cl->timer.data = cl;
	cl->handles = 2;
	cl->next = c->clients;
	if (cl->next)
		cl->next->prevp = &cl->next;
	cl->prevp = &c->clients;
	c->clients = cl;
	if (uv_accept(server, (uv_stream_t *)&cl->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&cl->pipe, client_alloc, client_read) < 0) {
		client_close(cl);
		return;
	}
	/* Every step has a timeout: a client that sends nothing goes. */
	uv_timer_start(&cl->timer, client_timeout, CONTROL_TIMEOUT_MS, 0);
}

/* ---- the socket ------------------------------------------------------ */

static void control_closed(uv_handle_t *h)
{
	struct control *c = h->data;
	free(c->path);
	free(c);
}

/* Is a daemon answering on path? A socket nobody answers on is stale. */
static bool socket_alive(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return alive;
}

int control_open(uv_loop_t *loop, const char *path, struct server *srv, struct control **out,
                 char *err, size_t errlen)
{
	struct stat st;
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "control socket %s: the path is too long", path);
		return -ENAMETOOLONG;
	}
	int rc = fs_mkdir_parent(path, 0750);
	if (rc < 0) {
		snprintf(err, errlen, "control socket %s: cannot create its directory: %s", path,
		         strerror(-rc));
		return rc;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "control socket %s: the path exists and is not a socket", path);
			return -EEXIST;
		}
		if (socket_alive(path)) {
			snprintf(err, errlen, "control socket %s: another hikyaku answers on it", path);
			return -EADDRINUSE;
		}
		unlink(path);
	}
	struct control *c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(path))) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->loop = loop;
	c->srv = srv;
	uv_pipe_init(loop, &c->pipe, 0);
	c->pipe.data = c;
	/* Connecting needs write permission on the socket: 0660 leaves it to
	 * the daemon's user and group (the operators). The umask is not
	 * narrowed around bind(): it is process-wide, and worker threads
	 * may be creating spool files and directories meanwhile. */
	rc = uv_pipe_bind(&c->pipe, path);
	if (rc == 0)
		rc = chmod(path, 0660) < 0 ? -errno : 0;
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&c->pipe, 16, on_connection);
	if (rc < 0) {
		snprintf(err, errlen, "control socket %s: %s", path, uv_strerror(rc));
		if (rc != UV_EADDRINUSE)
			unlink(path);
		uv_close((uv_handle_t *)&c->pipe, control_closed);
		return rc;
	}
	*out = c;
	return 0;
}

const char *control_path(const struct control *c)
{
	return c->path;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	while (c->clients)
		client_close(c->clients);
	unlink(c->path);
	uv_close((uv_handle_t *)&c->pipe, control_closed);
}
