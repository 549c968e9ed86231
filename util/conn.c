/*
 * conn - a TCP connection on libuv with optional TLS. See conn.h.
 */
#include "util/conn.h"

#include <stdlib.h>
#include <string.h>

struct conn_write_req {
	uv_write_t req;
	struct conn *c;
	size_t len;
	char data[];
};

/*
 * libuv calls alloc then read synchronously on the loop thread, and every
 * read is consumed before the callback returns, so one scratch buffer
 * serves every connection of the loop: idle connections cost no read
 * buffer at all.
 */
static char conn_scratch[65536];
static char conn_plain[65536];

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	(void)suggested;
	b->base = conn_scratch;
	b->len = sizeof(conn_scratch);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->open_handles == 0) {
		tls_engine_free(c->tls);
		c->tls = NULL;
		if (c->ops->on_close)
			c->ops->on_close(c);
	}
}

static void conn_close_now(struct conn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void conn_write_cb(uv_write_t *req, int status)
{
	struct conn_write_req *w = (struct conn_write_req *)req;
	struct conn *c = w->c;
	size_t before = c->write_queued;
	c->write_queued -= w->len;
	free(w);
	if (status < 0 && status != UV_ECANCELED && !c->closing && c->ops->on_eof) {
		c->ops->on_eof(c, status);
		return;
	}
	if (!c->closing && c->ops->on_drain && before > CONN_LOW_WATER &&
	    c->write_queued <= CONN_LOW_WATER)
		c->ops->on_drain(c);
}

static int conn_send_raw(struct conn *c, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	struct conn_write_req *w = malloc(sizeof(*w) + n);
	if (!w)
		return UV_ENOMEM;
	memcpy(w->data, p, n);
	w->c = c;
	w->len = n;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb);
	if (rc < 0) {
		free(w);
		return rc;
	}
	c->write_queued += n;
	return 0;
}

/* Sends whatever ciphertext the engine has produced. */
static int conn_flush_tls(struct conn *c)
{
	buf_t out;
	buf_init(&out, (size_t)64 << 20);
	int rc = tls_engine_output(c->tls, &out);
	if (rc == 0 && out.len)
		rc = conn_send_raw(c, out.data, out.len);
	buf_free(&out);
	return rc;
}

static void conn_fail(struct conn *c, int status)
{
	if (!c->closing && c->ops->on_eof)
		c->ops->on_eof(c, status);
}

static void conn_read_tls(struct conn *c, const char *p, size_t n)
{
	if (tls_engine_feed(c->tls, p, n) < 0) {
		conn_fail(c, CONN_ETLS);
		return;
	}
	if (!tls_engine_done(c->tls)) {
		int hs = tls_engine_handshake(c->tls);
		if (conn_flush_tls(c) < 0 && hs >= 0)
			hs = -1;
		if (hs < 0) {
			if (c->ops->on_tls)
				c->ops->on_tls(c, CONN_ETLS);
			return;
		}
		if (hs == 0)
			return;
		if (c->ops->on_tls)
			c->ops->on_tls(c, 0);
		if (c->closing)
			return;
	}
	for (;;) {
		long r = tls_engine_read(c->tls, conn_plain, sizeof(conn_plain));
		/* TLS 1.3 may produce post-handshake messages (tickets, key updates). */
		conn_flush_tls(c);
		if (r == 0)
			return;
		if (r < 0) {
			conn_fail(c, CONN_ETLS);
			return;
		}
		c->ops->on_read(c, conn_plain, (size_t)r);
		if (c->closing || !c->tls)
			return;
	}
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = s->data;
	if (c->closing)
		return;
	if (nread < 0) {
		conn_fail(c, (int)nread);
		return;
	}
	if (nread == 0)
		return;
	if (c->tls)
		conn_read_tls(c, b->base, (size_t)nread);
	else
		c->ops->on_read(c, b->base, (size_t)nread);
}

int conn_init(uv_loop_t *loop, struct conn *c, const struct conn_ops *ops, void *data)
{
	memset(c, 0, sizeof(*c));
	c->ops = ops;
	c->data = data;
	int rc = uv_tcp_init(loop, &c->tcp);
	if (rc < 0)
		return rc;
	c->tcp.data = c;
	c->open_handles = 1;
	rc = uv_timer_init(loop, &c->timer);
	if (rc < 0) {
		uv_close((uv_handle_t *)&c->tcp, NULL);
		return rc;
	}
	c->timer.data = c;
	c->open_handles = 2;
	return 0;
}

int conn_read_start(struct conn *c)
{
	if (c->reading || c->closing)
		return 0;
	int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
	if (rc == 0)
		c->reading = true;
	return rc;
}

void conn_read_stop(struct conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
}

int conn_write(struct conn *c, const void *p, size_t n)
{
	if (c->closing)
		return UV_ECANCELED;
	if (!c->tls)
		return conn_send_raw(c, p, n);
	if (tls_engine_write(c->tls, p, n) < 0)
		return CONN_ETLS;
	return conn_flush_tls(c);
}

int conn_starttls(struct conn *c, SSL_CTX *ctx, bool server, const char *host)
{
	c->tls = tls_engine_new(ctx, server, host);
	if (!c->tls)
		return UV_ENOMEM;
	if (!server) {
		/* The client speaks first: send the ClientHello now. */
		if (tls_engine_handshake(c->tls) < 0)
			return CONN_ETLS;
		return conn_flush_tls(c);
	}
	return 0;
}

bool conn_is_tls(const struct conn *c)
{
	return c->tls && tls_engine_done(c->tls);
}

static void conn_timer_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->closing)
		conn_close_now(c);      /* the flush took too long */
	else if (c->ops->on_timeout)
		c->ops->on_timeout(c);
}

void conn_timeout(struct conn *c, uint64_t ms)
{
	if (!c->closing)
		uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	(void)status;
	conn_close_now(req->data);
}

void conn_close(struct conn *c, bool flush)
{
	if (c->closing)
		return;
	c->closing = true;
	conn_read_stop(c);
	uv_timer_stop(&c->timer);
	if (flush && c->write_queued > 0) {
		c->shutdown.data = c;
		if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, conn_shutdown_cb) == 0) {
			uv_timer_start(&c->timer, conn_timer_cb, CONN_FLUSH_TIMEOUT_MS, 0);
			return;
		}
	}
	conn_close_now(c);
}
