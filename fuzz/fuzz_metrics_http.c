/*
 * fuzz_metrics_http - the HTTP endpoint (server/metrics_http.c: the real
 * handler on the real libmicrohttpd daemon, driven by the real libuv
 * loop integration) fed arbitrary request bytes, with no port: the
 * daemon is started without a listening socket
 * (metrics_http_start_unbound()) and gets one end of a socketpair per
 * input (metrics_http_add_connection()), as if accepted from 127.0.0.1.
 *
 * Input: the whole request stream a client sends (one request, several
 * pipelined ones, a body, chunks, garbage). It is written into the other
 * end as fast as the socket takes it; once the daemon has answered what
 * it could (a few loop rounds without a byte moved), that end is
 * half-closed (the client has nothing more to say), and the loop runs
 * (UV_RUN_NOWAIT, single-threaded: nothing sleeps, nothing runs on the
 * thread pool as the server has no runner) until the daemon has closed
 * the connection. The state of the server /health reports on (taking
 * mail, stopping, not listening, at max_connections, queue full) is
 * chosen by the input's length, so every input still is all request.
 * (libmicrohttpd 0.9.75 closes a connection after its first response,
 * the handler answering at its first call: pipelined requests after the
 * first are never answered.)
 *
 * Known answers, once at start: GET /health is 200 "ok"; a 20 KB header
 * gets 431 (the 16 KiB memory limit); 32 connections from one address
 * and 64 in all are taken, the next ones refused.
 *
 * Checked:
 *  - the daemon closes the connection of every input, within a bound of
 *    loop rounds that move no byte (a client that said everything and
 *    half-closed is never left hanging), and the connection list of
 *    metrics_http.c is empty again afterwards (one STARTED, one CLOSED);
 *  - what comes back, when anything does, starts with "HTTP/1.";
 *  - every response of hikyaku's own handler (200, 404, 405, 503, and
 *    500 for out of memory) has "Cache-Control: no-store" and a
 *    Content-Type, a 405 "Allow: GET, HEAD", a 200 or 503 to GET /health
 *    the body the server's state calls for; the body of 200 /metrics
 *    responses holds hikyaku_build_info. Responses of libmicrohttpd
 *    itself (400, 413, 414, 431, 505, ...) are only required to start
 *    with a status line: 0.9.75 may write its 413 head twice.
 *  - ASan and UBSan on everything, hikyaku's code and MHD's callbacks.
 *
 * FUZZ_METRICS_HTTP_DUMP=1 in the environment prints each response (to
 * read what an input got when replaying it).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>
#include <uv.h>

#include "config/config.h"
#include "server/metrics_http.h"
#include "server/server.h"
#include "server/settings.h"
#include "util/metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

/* Loop rounds in a row that move no byte before the connection counts as
 * hung (a round is one uv_run(UV_RUN_NOWAIT): a few system calls). */
#define IDLE_ROUNDS 200
/* Rounds without a byte moved, everything written, before the client
 * half-closes: the daemon has answered what it could. */
#define QUIET_ROUNDS 3
/* What is kept of the responses for the checks (the rest is counted). */
#define KEEP (256 * 1024)

enum state { ST_OK, ST_STOPPING, ST_NOT_LISTENING, ST_FULL, ST_QUEUE_FULL, ST_N };

static uv_loop_t loop;
static struct config cfg;
static struct settings set;
static struct server srv;
static struct metrics *reg;
static struct metrics_http *http;
static char *resp;
static bool dump;                       /* FUZZ_METRICS_HTTP_DUMP: responses to stderr */

static void known_answers(void);

static void set_state(enum state st)
{
	srv.stopping = st == ST_STOPPING;
	g_ptr_array_set_size(srv.listeners, st == ST_NOT_LISTENING ? 0 : 1);
	srv.nsessions = st == ST_FULL ? cfg.server.max_connections : 3;
	srv.committing_bytes = st == ST_QUEUE_FULL ? cfg.queue.max_size + 1 : 0;
}

static const char *health_body(enum state st)
{
	switch (st) {
	case ST_STOPPING:
		return "stopping\n";
	case ST_NOT_LISTENING:
		return "not listening\n";
	case ST_FULL:
		return "at max_connections\n";
	case ST_QUEUE_FULL:
		return "the queue is full (452 4.3.1)\n";
	default:
		return "ok\n";
	}
}

/* The value of header field name (as MHD writes it) in the head
 * [p, end), compared exactly; NULL when there is none. */
static const char *field(const char *p, const char *end, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	for (const char *l = p; l && l < end;) {
		const char *eol = memmem(l, (size_t)(end - l), "\r\n", 2);
		if (!eol)
			eol = end;
		if ((size_t)(eol - l) > nl + 1 && g_ascii_strncasecmp(l, name, nl) == 0 &&
		    l[nl] == ':') {
			const char *v = l + nl + 1;
			while (v < eol && *v == ' ')
				v++;
			*vlen = (size_t)(eol - v);
			return v;
		}
		l = eol + 2;
	}
	return NULL;
}

/* Every response head in resp[0..n): a status line at the start or at
 * the start of a line, "HTTP/1.1 DDD ". */
static void check_responses(const char *r, size_t n, enum state st)
{
	CHECK(n >= 7 && memcmp(r, "HTTP/1.", 7) == 0);
	for (size_t i = 0; i + 13 <= n; i++) {
		if ((i > 0 && r[i - 1] != '\n') || memcmp(r + i, "HTTP/1.1 ", 9) != 0)
			continue;
		const char *head = r + i;
		const char *hend = memmem(head, n - i, "\r\n\r\n", 4);
		if (!hend)
			break;                  /* cut by KEEP */
		const char *s = head + 9;
		if (!g_ascii_isdigit(s[0]) || !g_ascii_isdigit(s[1]) || !g_ascii_isdigit(s[2]))
			continue;
		unsigned code = (unsigned)(s[0] - '0') * 100 + (unsigned)(s[1] - '0') * 10 +
		                (unsigned)(s[2] - '0');
		const char *line_end = memmem(head, (size_t)(hend - head) + 2, "\r\n", 2);
		bool ours = code == 200 || code == 404 || code == 405 || code == 503 ||
		            (code == 500 && field(line_end + 2, hend, "Cache-Control", &(size_t){ 0 }));
		if (!ours)
			continue;
		size_t vl;
		const char *v = field(line_end + 2, hend, "Cache-Control", &vl);
		CHECK(v && vl == 8 && memcmp(v, "no-store", 8) == 0);
		v = field(line_end + 2, hend, "Content-Type", &vl);
		CHECK(v && vl >= 10 && memcmp(v, "text/plain", 10) == 0);
		if (code == 405) {
			v = field(line_end + 2, hend, "Allow", &vl);
			CHECK(v && vl == 9 && memcmp(v, "GET, HEAD", 9) == 0);
		}
		/* The body, when this response has one that was kept whole
		 * (HEAD responses have a Content-Length and no body: a body
		 * that is not what is expected may be the next head). */
		v = field(line_end + 2, hend, "Content-Length", &vl);
		if (!v)
			continue;
		size_t blen = strtoul(v, NULL, 10);
		const char *body = hend + 4;
		size_t avail = n - (size_t)(body - r);
		if (avail < blen || (avail >= 5 && memcmp(body, "HTTP/", 5) == 0) ||
		    (avail == 0))
			continue;
		const char *want = health_body(st);
		if (code == 200 && blen == 3 && memcmp(body, "ok\n", 3) == 0)
			CHECK(st == ST_OK);
		if (code == 503)
			CHECK(blen == strlen(want) && memcmp(body, want, blen) == 0);
		if (code == 200 && blen > 3)
			CHECK(memmem(body, blen, "hikyaku_build_info{version=\"", 28) != NULL);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	CHECK(uv_loop_init(&loop) == 0);
	cfg.server.max_connections = 100;
	cfg.server.max_message_size = 10 << 20;
	cfg.queue.max_size = 1 << 30;
	set.refs = 1;
	set.cfg = &cfg;
	srv.loop = &loop;
	srv.set = &set;
	srv.listeners = g_ptr_array_new();
	srv.start_time = 1700000000;
	CHECK(metrics_new(&reg) == 0);
	/* A few counters with labels, so that /metrics has some body. */
	json_t *f = json_pack("{s:s, s:s}", "route", "direct", "dsn", "5.1.1");
	metrics_observe(reg, "received", f);
	metrics_observe(reg, "bounced", f);
	json_decref(f);
	f = json_pack("{s:s, s:i}", "status", "5.7.1", "code", 554);
	metrics_observe(reg, "rejected", f);
	json_decref(f);
	char err[256];
	if (metrics_http_start_unbound(&loop, &srv, reg, &http, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_metrics_http: %s\n", err);
		abort();
	}
	dump = getenv("FUZZ_METRICS_HTTP_DUMP") != NULL;
	resp = malloc(KEEP);
	CHECK(resp);
	known_answers();
	return 0;
}

/* One connection carrying data: written, answered, closed. Returns the
 * response's size (the first KEEP bytes of it in resp, *kept of them). */
static size_t exchange(const uint8_t *data, size_t size, size_t *keptp)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000),
		                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK(metrics_http_add_connection(http, sv[1], (struct sockaddr *)&peer, sizeof(peer)) == 0);
	CHECK(metrics_http_connections(http) == 1);

	size_t off = 0, kept = 0, total = 0;
	bool shut = false, eof = false;
	int idle = 0;
	while (!eof) {
		bool moved = false;
		if (off < size) {
			ssize_t n = send(sv[0], data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				off += (size_t)n;
				moved = true;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				off = size;     /* the daemon closed: the rest is never read */
			}
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		for (;;) {
			char buf[16384];
			ssize_t n = recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0) {
				size_t k = (size_t)n < KEEP - kept ? (size_t)n : KEEP - kept;
				memcpy(resp + kept, buf, k);
				kept += k;
				total += (size_t)n;
				moved = true;
				continue;
			}
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				eof = true;
			break;
		}
		idle = moved ? 0 : idle + 1;
		/* Everything sent and answered as far as the daemon goes: the
		 * client half-closes (were it to close at once, MHD could see
		 * the end of the stream before it answered, and would answer
		 * "Connection: close" or not at all). */
		if (off == size && !shut && idle >= QUIET_ROUNDS) {
			shutdown(sv[0], SHUT_WR);
			shut = true;
			idle = 0;
		}
		CHECK(idle < IDLE_ROUNDS);
	}
	/* Closed on the daemon's side: its CLOSED notification ends it. */
	for (int i = 0; metrics_http_connections(http) > 0; i++) {
		CHECK(i < IDLE_ROUNDS);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	close(sv[0]);
	if (dump)
		fprintf(stderr, "---- %zu bytes of response (%zu kept):\n%.*s\n----\n", total, kept,
		        (int)kept, resp);
	*keptp = kept;
	return total;
}

/* Known answers, once at start: the bounds of metrics_http.c are in
 * force on connections handed in (a bound that went missing would let
 * the fuzzer pass without noticing). */
static void known_answers(void)
{
	size_t kept;
	static const char health[] = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
	set_state(ST_OK);
	CHECK(exchange((const uint8_t *)health, sizeof(health) - 1, &kept) > 0);
	CHECK(kept > 17 && memcmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK(memcmp(resp + kept - 7, "\r\n\r\nok\n", 7) == 0);
	check_responses(resp, kept, ST_OK);

	/* 16 KiB of request per connection: a 20 KB header is refused. */
	GString *big = g_string_new("GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: ");
	for (int i = 0; i < 20000; i++)
		g_string_append_c(big, 'A');
	g_string_append(big, "\r\n\r\n");
	CHECK(exchange((const uint8_t *)big->str, big->len, &kept) > 0);
	CHECK(kept > 13 && memcmp(resp, "HTTP/1.1 431 ", 13) == 0);
	g_string_free(big, TRUE);

	/* 32 connections from one address, 64 in all: 40 tries from
	 * 127.0.0.1 (the last 8 refused), then 40 from 127.0.0.2 to .5, 10
	 * each (the last 8 refused). */
	int fds[80], n = 0;
	for (int i = 0; i < 80; i++) {
		int sv[2];
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
		uint32_t a = INADDR_LOOPBACK + (i < 40 ? 0 : 1 + (uint32_t)(i - 40) / 10);
		struct sockaddr_in peer = { .sin_family = AF_INET,
			                    .sin_port = htons((uint16_t)(40000 + i)),
			                    .sin_addr.s_addr = htonl(a) };
		bool ok = metrics_http_add_connection(http, sv[1], (struct sockaddr *)&peer,
		                                      sizeof(peer)) == 0;
		if (ok)
			fds[n++] = sv[0];
		else
			close(sv[0]);
		CHECK(ok == (i < 32 || (i >= 40 && i < 72)));
	}
	CHECK(n == 64 && metrics_http_connections(http) == 64);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	for (int i = 0; metrics_http_connections(http) > 0; i++) {
		CHECK(i < IDLE_ROUNDS);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum state st = (enum state)(size % ST_N);
	set_state(st);
	size_t kept;
	if (exchange(data, size, &kept) > 0)
		check_responses(resp, kept, st);
	return 0;
}
