/*
 * test_smtp_client - the outbound SMTP client (relay/smtp_client.h).
 *
 * No mocks: the client talks to real servers on loopback. Debian's
 * aiosmtpd (tests/unit/peers/smtp_peer.py) plays a well-behaved server
 * and records what it received; a scripted byte-exact server
 * (tests/unit/peers/raw_peer.py) plays the misbehaviour that a library
 * would smooth over: bytes behind the STARTTLS reply, garbage, stalls,
 * 421, replies in odd shapes. Certificates (a CA, a leaf for localhost
 * and 127.0.0.1, a leaf for another name) are made per run with openssl.
 * Callbacks count and record; the assertions run after the loop. The
 * reply parser and the statuses of failures without a reply are
 * proto/smtp_reply.c's (tests/unit/test_smtp_reply.c); here the status
 * each failure ends with is checked where the failure happens.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relay/smtp_client.h"
#include "util/tls.h"

static char workdir[64];          /* certificates and peer records */
static char peerdir[PATH_MAX];    /* tests/unit/peers */

/* ---- peers ------------------------------------------------------------ */

struct peer {
	pid_t pid;
	int port;
	char log[PATH_MAX];           /* raw_peer's --log, smtp_peer's --record */
};

/* Starts peers/<script> with args (NULL-terminated) and waits for "READY port". */
static void peer_start(struct peer *pr, const char *script, const char *const *args)
{
	static int seq;
	char path[PATH_MAX + 32];
	const char *argv[32];
	int fds[2], n = 0;
	bool raw = strcmp(script, "raw_peer.py") == 0;

	snprintf(pr->log, sizeof(pr->log), "%s/rec.%d.%d", workdir, (int)getpid(), seq++);
	snprintf(path, sizeof(path), "%s/%s", peerdir, script);
	argv[n++] = "python3";
	argv[n++] = path;
	for (; *args && n < 28; args++)
		argv[n++] = *args;
	argv[n++] = raw ? "--log" : "--record";
	argv[n++] = pr->log;
	argv[n] = NULL;

	ck_assert_int_eq(pipe(fds), 0);
	pr->pid = fork();
	ck_assert_int_ge(pr->pid, 0);
	if (pr->pid == 0) {
		/* Die with the test, even when it dies on a failed assertion. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv("/usr/bin/python3", (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);

	char buf[128];
	size_t len = 0;
	struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
	while (!memchr(buf, '\n', len) && len < sizeof(buf) - 1) {
		ck_assert_msg(poll(&pfd, 1, 15000) == 1, "peer %s did not start", script);
		ssize_t r = read(fds[0], buf + len, sizeof(buf) - 1 - len);
		ck_assert_msg(r > 0, "peer %s exited before READY", script);
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(fds[0]);
	ck_assert_msg(sscanf(buf, "READY %d", &pr->port) == 1, "peer said: %s", buf);
}

static void peer_stop(struct peer *pr)
{
	if (pr->pid > 0) {
		kill(pr->pid, SIGTERM);
		waitpid(pr->pid, NULL, 0);
		pr->pid = 0;
	}
}

/* smtp_peer's records, one JSON object per event. */
static json_t *records(const struct peer *pr)
{
	json_t *a = json_array();
	FILE *f = fopen(pr->log, "r");
	char line[65536];

	if (!f)
		return a;
	while (fgets(line, sizeof(line), f)) {
		json_t *o = json_loads(line, 0, NULL);
		ck_assert_ptr_nonnull(o);
		json_array_append_new(a, o);
	}
	fclose(f);
	return a;
}

/* The events' names, space-separated: "conn ehlo mail data". */
static void events(json_t *recs, char *out, size_t cap)
{
	size_t i;
	json_t *o;

	out[0] = '\0';
	json_array_foreach(recs, i, o) {
		size_t len = strlen(out);
		snprintf(out + len, cap - len, "%s%s", len ? " " : "",
		         json_string_value(json_object_get(o, "ev")));
	}
}

/* The first record of an event, or NULL. */
static json_t *record_of(json_t *recs, const char *ev, int nth)
{
	size_t i;
	json_t *o;

	json_array_foreach(recs, i, o) {
		if (strcmp(json_string_value(json_object_get(o, "ev")), ev) == 0 && nth-- == 0)
			return o;
	}
	return NULL;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *p = malloc((size_t)n + 1);
	ck_assert_uint_eq(fread(p, 1, (size_t)n, f), (size_t)n);
	p[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return p;
}

/* ---- the client under test -------------------------------------------- */

#define MAXMSG 3
#define MAXRCPT 4

struct result {
	struct smtp_reply mail, data, rcpt[MAXRCPT];
	bool reusable;
};

struct run {
	uv_loop_t loop;
	struct sockaddr_storage ss;
	struct smtp_client_params p;
	const struct smtp_client_msg *msgs[MAXMSG];
	size_t nmsgs;
	bool close_at_open;           /* smtp_client_close() right after open */
	uint64_t close_after_send_ms; /* close while the first transaction runs */
	uint64_t send_after_ms;       /* open, wait, then send */
	uv_timer_t timer;
	bool timer_on;

	/* observed */
	struct smtp_client *c;
	int open_rc;
	int open_calls;
	int done_calls;
	bool opened;
	bool alive_at_open;
	bool alive_before_send;
	struct smtp_reply fail;
	bool tls;
	bool has_pipelining, has_size, has_dsn, has_8bitmime, has_starttls;
	uint64_t size_limit;
	char relay[320];
	struct result res[MAXMSG];
	int send_rc;
	uint64_t elapsed_ms;
};

static SSL_CTX *verify_ctx(void)
{
	char ca[PATH_MAX], err[256];
	snprintf(ca, sizeof(ca), "%s/ca.pem", workdir);
	SSL_CTX *ctx = tls_client_ctx_new(true, ca, err, sizeof(err));
	ck_assert_msg(ctx != NULL, "%s", err);
	return ctx;
}

static void run_init(struct run *r, int port, enum smtp_client_tls tls)
{
	memset(r, 0, sizeof(*r));
	struct sockaddr_in *sin = (struct sockaddr_in *)&r->ss;
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->p.host = "localhost";
	r->p.addr = (const struct sockaddr *)&r->ss;
	r->p.helo = "client.test";
	r->p.tls = tls;
	r->p.connect_timeout_ms = 5000;
	r->p.timeout_ms = 5000;
	r->p.data_timeout_ms = 5000;
	if (tls == SCT_VERIFY || tls == SCT_SMTPS)
		r->p.tls_ctx = verify_ctx();
}

static void done_cb(struct smtp_client *c, void *arg, const struct smtp_client_result *res);

static void send_next(struct run *r)
{
	const struct smtp_client_msg *m = r->msgs[r->done_calls];
	r->send_rc = smtp_client_send(r->c, m, done_cb, r);
	if (r->send_rc < 0)
		smtp_client_close(r->c);
}

static void timer_closed(uv_handle_t *h)
{
	(void)h;
}

static void timer_cb(uv_timer_t *t)
{
	struct run *r = t->data;
	uv_close((uv_handle_t *)t, timer_closed);
	if (r->send_after_ms) {
		r->alive_before_send = smtp_client_alive(r->c);
		send_next(r);
	}
	else
		smtp_client_close(r->c);
}

static void start_timer(struct run *r, uint64_t ms)
{
	uv_timer_init(&r->loop, &r->timer);
	r->timer.data = r;
	uv_timer_start(&r->timer, timer_cb, ms, 0);
	r->timer_on = true;
}

static void open_cb(struct smtp_client *c, void *arg, const struct smtp_reply *fail)
{
	struct run *r = arg;
	r->open_calls++;
	if (fail) {
		r->fail = *fail;
		return;
	}
	r->opened = true;
	r->alive_at_open = smtp_client_alive(c);
	r->c = c;
	r->tls = smtp_client_tls_active(c);
	r->has_pipelining = smtp_client_has(c, "pipelining");
	r->has_size = smtp_client_has(c, "SIZE");
	r->has_dsn = smtp_client_has(c, "DSN");
	r->has_8bitmime = smtp_client_has(c, "8BITMIME");
	r->has_starttls = smtp_client_has(c, "STARTTLS");
	r->size_limit = smtp_client_size_limit(c);
	if (r->send_after_ms) {
		start_timer(r, r->send_after_ms);
		return;
	}
	if (r->nmsgs == 0) {
		smtp_client_close(c);
		return;
	}
	send_next(r);
	if (r->close_after_send_ms)
		start_timer(r, r->close_after_send_ms);
}

static void done_cb(struct smtp_client *c, void *arg, const struct smtp_client_result *res)
{
	struct run *r = arg;
	ck_assert_int_lt(r->done_calls, MAXMSG);
	struct result *o = &r->res[r->done_calls];
	const struct smtp_client_msg *m = r->msgs[r->done_calls];
	r->done_calls++;
	o->mail = res->mail;
	o->data = res->data;
	o->reusable = res->reusable;
	for (size_t i = 0; i < m->nrcpts && i < MAXRCPT; i++)
		o->rcpt[i] = res->rcpt[i];
	/* The next transaction from inside the callback, or goodbye from inside it. */
	if (res->reusable && (size_t)r->done_calls < r->nmsgs)
		send_next(r);
	else if (!r->close_after_send_ms)
		smtp_client_close(c);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void run_client(struct run *r)
{
	ck_assert_int_eq(uv_loop_init(&r->loop), 0);
	uint64_t t0 = now_ms();
	struct smtp_client *c = NULL;
	r->open_rc = smtp_client_open(&r->loop, &r->p, open_cb, r, &c);
	if (r->open_rc == 0) {
		snprintf(r->relay, sizeof(r->relay), "%s", smtp_client_relay(c));
		if (r->close_at_open)
			smtp_client_close(c);
	}
	uv_run(&r->loop, UV_RUN_DEFAULT);
	r->elapsed_ms = now_ms() - t0;
	/* Every handle closed: the client freed itself (LSan checks the rest). */
	ck_assert_int_eq(uv_loop_close(&r->loop), 0);
	if (r->p.tls_ctx)
		SSL_CTX_free(r->p.tls_ctx);
	r->p.tls_ctx = NULL;
	if (r->open_rc == 0)
		ck_assert_int_eq(r->open_calls, 1);      /* exactly once */
}

static const char *const rcpts1[] = { "rcpt@example.org" };

static const struct smtp_client_msg simple_msg = {
	.from = "sender@example.org",
	.rcpts = rcpts1,
	.nrcpts = 1,
	.data = "Subject: hello\r\n\r\nHello.\r\n",
	.len = 26,
};

#define ASSERT_OPENED(r) \
	ck_assert_msg((r)->opened, "open failed: %d %s", (r)->fail.code, (r)->fail.text)

#define ASSERT_CONTAINS(hay, needle) \
	ck_assert_msg(strstr((hay), (needle)) != NULL, "\"%s\" lacks \"%s\"", (hay), (needle))

/* ---- delivery against aiosmtpd ---------------------------------------- */

/*
 * A message that exercises dot-stuffing everywhere, also across the
 * client's 64 KiB write chunks: every 7th line starts with '.', some
 * lines are a lone dot, 8-bit bytes, and no CRLF after the last line.
 */
static char *make_message(size_t *len)
{
	size_t cap = 1 << 20, n = 0;
	char *m = malloc(cap);
	n += (size_t)sprintf(m + n, "From: sender@example.org\r\nSubject: dots\r\n\r\n");
	n += (size_t)sprintf(m + n, ".leading dot\r\n..two dots\r\n.\r\n\r\ncaf\xc3\xa9\r\n");
	for (int i = 0; i < 6000; i++) {
		if (i % 7 == 0)
			n += (size_t)sprintf(m + n, ".line %d with a leading dot\r\n", i);
		else if (i % 101 == 0)
			n += (size_t)sprintf(m + n, ".\r\n");
		else
			n += (size_t)sprintf(m + n, "line %d of the message body, some text\r\n", i);
	}
	n += (size_t)sprintf(m + n, ".last line without CRLF");
	*len = n;
	return m;
}

START_TEST(test_plain_pipelined)
{
	struct peer pr;
	struct run r;
	size_t len;
	char *msg = make_message(&len);
	static const char *const to[] = { "one@example.org", "two@example.org" };
	struct smtp_client_msg m = {
		.from = "sender@example.org", .rcpts = to, .nrcpts = 2, .data = msg, .len = len,
		.smtputf8 = true, .body_8bit = true, .envid = "hk+id=1 x",
	};

	peer_start(&pr, "smtp_peer.py", (const char *const[]){ NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &m;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(!r.tls);
	ck_assert(r.has_pipelining && r.has_size && r.has_dsn && r.has_8bitmime);
	ck_assert(!r.has_starttls);
	ck_assert_uint_eq(r.size_limit, 33554432);     /* aiosmtpd's default */
	ck_assert_int_eq(r.done_calls, 1);
	ck_assert_int_eq(r.res[0].mail.code, 250);
	ck_assert_int_eq(r.res[0].rcpt[0].code, 250);
	ck_assert_int_eq(r.res[0].rcpt[1].code, 250);
	ck_assert_str_eq(r.res[0].rcpt[1].status, "2.1.5");
	ck_assert_int_eq(r.res[0].data.code, 250);
	ck_assert_str_eq(r.res[0].data.status, "2.0.0");
	ck_assert(r.res[0].reusable);

	json_t *recs = records(&pr);
	char ev[256];
	events(recs, ev, sizeof(ev));
	ck_assert_str_eq(ev, "conn ehlo mail data");
	/* RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 ENVID as xtext. */
	char want[128];
	snprintf(want, sizeof(want), "FROM:<sender@example.org> SIZE=%zu BODY=8BITMIME SMTPUTF8 "
	         "ENVID=hk+2Bid+3D1+20x", len);
	ck_assert_str_eq(json_string_value(json_object_get(record_of(recs, "mail", 0), "arg")), want);
	json_t *d = record_of(recs, "data", 0);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(d, "rcpts"), 1)),
	                 "two@example.org");
	ck_assert(json_is_false(json_object_get(d, "tls")));
	/* The server undid the dot-stuffing: the message as given, plus the final CRLF. */
	size_t got_len;
	char *got = slurp(json_string_value(json_object_get(d, "file")), &got_len);
	ck_assert_uint_eq(got_len, len + 2);
	ck_assert(memcmp(got, msg, len) == 0);
	ck_assert(memcmp(got + len, "\r\n", 2) == 0);
	free(got);
	json_decref(recs);
	free(msg);
}
END_TEST

START_TEST(test_lockstep_rcpt_replies)
{
	struct peer pr;
	struct run r;
	static const char *const to[] = { "bad@example.org", "good@example.org" };
	struct smtp_client_msg m = simple_msg;
	m.rcpts = to;
	m.nrcpts = 2;
	m.envid = "ID1";          /* DSN not offered: no ENVID */

	peer_start(&pr, "smtp_peer.py",
	           (const char *const[]){ "--no-pipelining", "--reject", "bad@example.org", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &m;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(!r.has_pipelining && !r.has_dsn);
	ck_assert_int_eq(r.done_calls, 1);
	ck_assert_int_eq(r.res[0].mail.code, 250);
	ck_assert_int_eq(r.res[0].rcpt[0].code, 550);
	ck_assert_str_eq(r.res[0].rcpt[0].status, "5.1.1");
	ck_assert_str_eq(r.res[0].rcpt[0].text, "<bad@example.org>: Recipient address rejected");
	ck_assert_int_eq(r.res[0].rcpt[1].code, 250);
	ck_assert_int_eq(r.res[0].data.code, 250);
	ck_assert(r.res[0].reusable);

	json_t *recs = records(&pr);
	ck_assert_str_eq(json_string_value(json_object_get(record_of(recs, "mail", 0), "arg")),
	                 "FROM:<sender@example.org> SIZE=26");
	json_t *d = record_of(recs, "data", 0);
	ck_assert_uint_eq(json_array_size(json_object_get(d, "rcpts")), 1);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(d, "rcpts"), 0)),
	                 "good@example.org");
	json_decref(recs);
}
END_TEST

START_TEST(test_data_rejected)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "smtp_peer.py",
	           (const char *const[]){ "--data-reply", "554 5.7.1 Message rejected as spam", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.done_calls, 1);
	ck_assert_int_eq(r.res[0].mail.code, 250);
	ck_assert_int_eq(r.res[0].rcpt[0].code, 250);
	ck_assert_int_eq(r.res[0].data.code, 554);
	ck_assert_str_eq(r.res[0].data.status, "5.7.1");
	ck_assert_str_eq(r.res[0].data.text, "Message rejected as spam");
	ck_assert(r.res[0].reusable);
}
END_TEST

/* Only 354 lets the message go: a 250 to DATA itself, or a final reply
 * that arrives behind the 354 before the message was sent, is a protocol
 * error (the mail is deferred), never a delivery. */
START_TEST(test_data_premature_250)
{
	static const struct {
		const char *scenario;
		const char *text;
	} cases[] = {
		{ "data250", "protocol error: 250 reply to DATA, expected 354" },
		{ "early250", "protocol error: the server replied before receiving the message "
		              "(data after its 354)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct peer pr;
		struct run r;
		peer_start(&pr, "raw_peer.py", (const char *const[]){ cases[i].scenario, NULL });
		run_init(&r, pr.port, SCT_NONE);
		r.msgs[0] = &simple_msg;
		r.nmsgs = 1;
		run_client(&r);
		peer_stop(&pr);
		ASSERT_OPENED(&r);
		ck_assert_int_eq(r.done_calls, 1);
		ck_assert_int_eq(r.res[0].rcpt[0].code, 250);
		ck_assert_msg(r.res[0].data.code == 0, "%s: data reply %d", cases[i].scenario,
		              r.res[0].data.code);
		ck_assert_str_eq(r.res[0].data.text, cases[i].text);
		ck_assert(!r.res[0].reusable);
	}
}
END_TEST

/* Three transactions on one connection; RSET only after the failed one. */
START_TEST(test_reuse_and_rset)
{
	struct peer pr;
	struct run r;
	static const char *const bad[] = { "x@example.org", "y@example.org" };
	struct smtp_client_msg m1 = simple_msg;
	m1.rcpts = bad;
	m1.nrcpts = 2;

	peer_start(&pr, "smtp_peer.py",
	           (const char *const[]){ "--reject", "x@example.org", "--reject", "y@example.org", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &m1;
	r.msgs[1] = &simple_msg;
	r.msgs[2] = &simple_msg;
	r.nmsgs = 3;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.done_calls, 3);
	ck_assert_int_eq(r.res[0].mail.code, 250);
	ck_assert_int_eq(r.res[0].rcpt[0].code, 550);
	ck_assert_int_eq(r.res[0].rcpt[1].code, 550);
	/* Pipelined DATA got 503 (no valid recipients): the data was not sent. */
	ck_assert_int_eq(r.res[0].data.code, 0);
	ASSERT_CONTAINS(r.res[0].data.text, "no recipient");
	ck_assert_str_eq(r.res[0].data.status, "");
	ck_assert(r.res[0].reusable);
	ck_assert_int_eq(r.res[1].data.code, 250);
	ck_assert(r.res[1].reusable);
	ck_assert_int_eq(r.res[2].data.code, 250);

	json_t *recs = records(&pr);
	char ev[256];
	events(recs, ev, sizeof(ev));
	ck_assert_str_eq(ev, "conn ehlo mail rset mail data mail data");
	json_decref(recs);
}
END_TEST

/* ---- TLS --------------------------------------------------------------- */

static const char *certfile(const char *name)
{
	static char paths[4][PATH_MAX];
	static int k;
	char *p = paths[k++ % 4];
	snprintf(p, PATH_MAX, "%s/%s", workdir, name);
	return p;
}

START_TEST(test_starttls_verify)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "smtp_peer.py",
	           (const char *const[]){ "--cert", certfile("server.pem"), "--key",
	                                  certfile("server.key"), "--require-starttls", NULL });
	run_init(&r, pr.port, SCT_VERIFY);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(r.tls);
	ck_assert(!r.has_starttls);       /* what EHLO said after TLS */
	ck_assert_int_eq(r.res[0].data.code, 250);
	char relay[64];
	snprintf(relay, sizeof(relay), "localhost[127.0.0.1]:%d", pr.port);
	ck_assert_str_eq(r.relay, relay);

	json_t *recs = records(&pr);
	char ev[256];
	events(recs, ev, sizeof(ev));
	/* EHLO again after TLS (RFC 3207 §4.2). */
	ck_assert_str_eq(ev, "conn ehlo ehlo mail data");
	ck_assert(json_is_false(json_object_get(record_of(recs, "ehlo", 0), "tls")));
	ck_assert(json_is_true(json_object_get(record_of(recs, "ehlo", 1), "tls")));
	ck_assert(json_is_true(json_object_get(record_of(recs, "data", 0), "tls")));
	json_decref(recs);
}
END_TEST

START_TEST(test_starttls_wrong_name)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "smtp_peer.py",
	           (const char *const[]){ "--cert", certfile("wrong.pem"), "--key",
	                                  certfile("wrong.key"), NULL });
	run_init(&r, pr.port, SCT_VERIFY);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ck_assert(!r.opened);
	ck_assert_int_eq(r.open_calls, 1);
	ck_assert_int_eq(r.fail.code, 0);
	ASSERT_CONTAINS(r.fail.text, "certificate verification failed");
	ASSERT_CONTAINS(r.fail.text, "hostname mismatch");
	ck_assert_str_eq(r.fail.status, "4.7.5");     /* by reason, not by wording */
	ck_assert_int_eq(r.done_calls, 0);
}
END_TEST

START_TEST(test_smtps)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "smtp_peer.py",
	           (const char *const[]){ "--cert", certfile("server.pem"), "--key",
	                                  certfile("server.key"), "--smtps", NULL });
	run_init(&r, pr.port, SCT_SMTPS);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(r.tls);
	ck_assert_int_eq(r.res[0].data.code, 250);
	json_t *recs = records(&pr);
	ck_assert(json_is_true(json_object_get(record_of(recs, "data", 0), "tls")));
	json_decref(recs);
}
END_TEST

START_TEST(test_may_without_starttls)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "smtp_peer.py", (const char *const[]){ NULL });
	run_init(&r, pr.port, SCT_MAY);    /* tls_ctx NULL: the client makes its own */
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(!r.tls);
	ck_assert_int_eq(r.res[0].data.code, 250);
}
END_TEST

START_TEST(test_may_with_starttls)
{
	struct peer pr;
	struct run r;

	/* The wrong name does not matter: SCT_MAY checks no certificate. */
	peer_start(&pr, "smtp_peer.py",
	           (const char *const[]){ "--cert", certfile("wrong.pem"), "--key",
	                                  certfile("wrong.key"), NULL });
	run_init(&r, pr.port, SCT_MAY);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(r.tls);
	ck_assert_int_eq(r.res[0].data.code, 250);
}
END_TEST

/* The handshake fails: SCT_MAY tries once more in plain text; open_cb runs once. */
START_TEST(test_may_fallback)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "badtls", NULL });
	run_init(&r, pr.port, SCT_MAY);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(!r.tls);
	ck_assert_int_eq(r.res[0].data.code, 250);
	ck_assert_str_eq(r.res[0].data.text, "queued in plain text");
	size_t n;
	char *log = slurp(pr.log, &n);
	const char *second = strstr(log, "N: 2\n");
	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_null(strstr(second, "STARTTLS"));   /* no second attempt */
	ck_assert_ptr_null(strstr(log, "N: 3"));
	free(log);
}
END_TEST

START_TEST(test_encrypt_without_starttls)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "smtp_peer.py", (const char *const[]){ NULL });
	run_init(&r, pr.port, SCT_ENCRYPT);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ck_assert(!r.opened);
	ck_assert_int_eq(r.fail.code, 0);
	ASSERT_CONTAINS(r.fail.text, "does not offer STARTTLS");
	ck_assert_str_eq(r.fail.status, "4.7.10");
	json_t *recs = records(&pr);
	ck_assert_ptr_null(record_of(recs, "mail", 0));
	json_decref(recs);
}
END_TEST

/* Bytes behind the 220 to STARTTLS: dropped, never read after TLS. */
START_TEST(test_starttls_injection)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "inject", NULL });
	run_init(&r, pr.port, SCT_ENCRYPT);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ck_assert(!r.opened);
	ck_assert_int_eq(r.open_calls, 1);
	ck_assert_int_eq(r.fail.code, 0);
	ck_assert_str_eq(r.fail.text, "server sent data after its STARTTLS reply");
	ck_assert_str_eq(r.fail.status, "4.5.0");
}
END_TEST

/* The same through aiosmtpd, and SCT_MAY must not fall back to plain text on it. */
START_TEST(test_starttls_injection_may)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "smtp_peer.py",
	           (const char *const[]){ "--cert", certfile("server.pem"), "--key",
	                                  certfile("server.key"), "--starttls-extra",
	                                  "250 2.0.0 injected\\r\\n", NULL });
	run_init(&r, pr.port, SCT_MAY);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ck_assert(!r.opened);
	ck_assert_str_eq(r.fail.text, "server sent data after its STARTTLS reply");
	ck_assert_str_eq(r.fail.status, "4.5.0");
	json_t *recs = records(&pr);
	char ev[256];
	events(recs, ev, sizeof(ev));
	ck_assert_str_eq(ev, "conn ehlo");
	json_decref(recs);
}
END_TEST

/* ---- AUTH -------------------------------------------------------------- */

static void auth_run(struct run *r, struct peer *pr, const char *user, const char *pass,
                     const char *const *peer_args)
{
	peer_start(pr, "smtp_peer.py", peer_args);
	run_init(r, pr->port, SCT_VERIFY);
	r->p.username = user;
	r->p.password = pass;
	r->msgs[0] = &simple_msg;
	r->nmsgs = 1;
	run_client(r);
	peer_stop(pr);
}

START_TEST(test_auth_plain)
{
	struct peer pr;
	struct run r;

	auth_run(&r, &pr, "user", "s3cret",
	         (const char *const[]){ "--cert", certfile("server.pem"), "--key",
	                                certfile("server.key"), "--auth", "user:s3cret", NULL });
	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.res[0].data.code, 250);
	json_t *recs = records(&pr);
	ck_assert_str_eq(json_string_value(json_object_get(record_of(recs, "data", 0), "login")),
	                 "user");
	json_decref(recs);
}
END_TEST

START_TEST(test_auth_login)
{
	struct peer pr;
	struct run r;

	auth_run(&r, &pr, "user", "s3cret",
	         (const char *const[]){ "--cert", certfile("server.pem"), "--key",
	                                certfile("server.key"), "--auth", "user:s3cret",
	                                "--no-plain", NULL });
	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.res[0].data.code, 250);
	json_t *recs = records(&pr);
	ck_assert_str_eq(json_string_value(json_object_get(record_of(recs, "data", 0), "login")),
	                 "user");
	json_decref(recs);
}
END_TEST

START_TEST(test_auth_wrong_password)
{
	struct peer pr;
	struct run r;

	auth_run(&r, &pr, "user", "wrong",
	         (const char *const[]){ "--cert", certfile("server.pem"), "--key",
	                                certfile("server.key"), "--auth", "user:s3cret", NULL });
	ck_assert(!r.opened);
	ck_assert_int_eq(r.open_calls, 1);
	ck_assert_msg(r.fail.code == 535, "%d %s", r.fail.code, r.fail.text);
	ck_assert_str_eq(r.fail.status, "5.7.8");
	ck_assert_int_eq(r.done_calls, 0);
}
END_TEST

/* No password in plain text, unless the mode is SCT_NONE. */
START_TEST(test_auth_plaintext)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "smtp_peer.py", (const char *const[]){ "--auth", "user:s3cret", NULL });
	run_init(&r, pr.port, SCT_MAY);
	r.p.username = "user";
	r.p.password = "s3cret";
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	ck_assert(!r.opened);
	ck_assert_int_eq(r.fail.code, 0);
	ASSERT_CONTAINS(r.fail.text, "without TLS");
	ck_assert_str_eq(r.fail.status, "4.7.10");

	run_init(&r, pr.port, SCT_NONE);
	r.p.username = "user";
	r.p.password = "s3cret";
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);
	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.res[0].data.code, 250);
}
END_TEST

/* ---- byte-exact misbehaviour ------------------------------------------- */

START_TEST(test_pipelining_raw)
{
	struct peer pr;
	struct run r;
	static const char *const ab[] = { "a@example.org", "b@example.org" };
	struct smtp_client_msg m1 = simple_msg;
	m1.rcpts = ab;
	m1.nrcpts = 2;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "pipeline", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &m1;
	r.msgs[1] = &simple_msg;
	r.nmsgs = 2;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert_uint_eq(r.size_limit, 1000000);
	ck_assert_int_eq(r.done_calls, 2);
	ck_assert_int_eq(r.res[0].mail.code, 250);
	ck_assert_int_eq(r.res[0].rcpt[0].code, 550);
	ck_assert_str_eq(r.res[0].rcpt[0].status, "5.1.1");
	ck_assert_int_eq(r.res[0].rcpt[1].code, 550);
	ck_assert_int_eq(r.res[0].data.code, 0);   /* 354 anyway: nothing was sent */
	ck_assert(r.res[0].reusable);
	ck_assert_int_eq(r.res[1].data.code, 250);

	size_t n;
	char *log = slurp(pr.log, &n);
	/* After the unwanted 354 only the lone dot; then RSET opens the next group. */
	ASSERT_CONTAINS(log, "C: DATA\nC: .\nC: RSET\nC: MAIL FROM:<sender@example.org> SIZE=26\n"
	                     "C: RCPT TO:<rcpt@example.org>\nC: DATA\nDATA: 3 lines, 0 stuffed\n"
	                     "C: QUIT\n");
	free(log);
}
END_TEST

START_TEST(test_helo_fallback)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "helo", NULL });
	run_init(&r, pr.port, SCT_MAY);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(!r.has_pipelining && !r.has_size);
	ck_assert_int_eq(r.res[0].data.code, 250);
	ck_assert_str_eq(r.res[0].data.status, "2.0.0");
	ck_assert_str_eq(r.res[0].data.text, "queued as RAW1");
	size_t n;
	char *log = slurp(pr.log, &n);
	ASSERT_CONTAINS(log, "C: EHLO client.test\nC: HELO client.test\n"
	                     "C: MAIL FROM:<sender@example.org>\n");
	free(log);
}
END_TEST

START_TEST(test_greeting_421)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "greet421", NULL });
	run_init(&r, pr.port, SCT_NONE);
	run_client(&r);
	peer_stop(&pr);

	ck_assert(!r.opened);
	ck_assert_int_eq(r.fail.code, 421);
	ck_assert_str_eq(r.fail.status, "4.3.2");
	ck_assert_str_eq(r.fail.text, "Service busy, try later");
}
END_TEST

START_TEST(test_421_in_transaction)
{
	struct peer pr;
	struct run r;
	static const char *const ab[] = { "a@example.org", "b@example.org" };
	struct smtp_client_msg m = simple_msg;
	m.rcpts = ab;
	m.nrcpts = 2;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "mail421", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &m;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.done_calls, 1);
	ck_assert_int_eq(r.res[0].mail.code, 250);
	ck_assert_int_eq(r.res[0].rcpt[0].code, 421);
	ck_assert_str_eq(r.res[0].rcpt[0].status, "4.3.2");
	ck_assert_int_eq(r.res[0].rcpt[1].code, 421);
	ck_assert_int_eq(r.res[0].data.code, 421);
	ck_assert(!r.res[0].reusable);
}
END_TEST

START_TEST(test_malformed_replies)
{
	static const struct {
		const char *scenario;
		const char *text;
	} cases[] = {
		{ "garbage", "protocol error: malformed reply to EHLO: \"hello there\"" },
		{ "longline", "protocol error: reply line longer than 4096 octets" },
		{ "manylines", "protocol error: reply to EHLO has more than 100 lines" },
		{ "codechange", "protocol error: malformed reply to greeting: \"230 second\"" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct peer pr;
		struct run r;
		peer_start(&pr, "raw_peer.py", (const char *const[]){ cases[i].scenario, NULL });
		run_init(&r, pr.port, SCT_NONE);
		r.msgs[0] = &simple_msg;
		r.nmsgs = 1;
		run_client(&r);
		peer_stop(&pr);
		ck_assert_msg(!r.opened, "%s", cases[i].scenario);
		ck_assert_int_eq(r.open_calls, 1);
		ck_assert_int_eq(r.fail.code, 0);
		ck_assert_str_eq(r.fail.text, cases[i].text);
	}
}
END_TEST

/* ---- timeouts and closing ---------------------------------------------- */

START_TEST(test_timeout_greeting)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "stall", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.p.timeout_ms = 300;
	run_client(&r);
	peer_stop(&pr);

	ck_assert(!r.opened);
	ck_assert_int_eq(r.fail.code, 0);
	ck_assert_str_eq(r.fail.text, "timeout waiting for the greeting");
	ck_assert_str_eq(r.fail.status, "4.4.2");
	ck_assert_uint_ge(r.elapsed_ms, 290);
	ck_assert_uint_lt(r.elapsed_ms, 1500);
}
END_TEST

START_TEST(test_timeout_data)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "stalldot", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.p.data_timeout_ms = 400;
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.done_calls, 1);
	ck_assert_int_eq(r.res[0].mail.code, 250);
	ck_assert_int_eq(r.res[0].rcpt[0].code, 250);
	ck_assert_int_eq(r.res[0].data.code, 0);
	ck_assert_str_eq(r.res[0].data.text, "timeout waiting for the reply to the end of data");
	ck_assert_str_eq(r.res[0].data.status, "4.4.2");
	ck_assert(!r.res[0].reusable);
	ck_assert_uint_ge(r.elapsed_ms, 390);
	ck_assert_uint_lt(r.elapsed_ms, 3000);
}
END_TEST

START_TEST(test_close_during_open)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "stall", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.close_at_open = true;
	run_client(&r);
	peer_stop(&pr);

	ck_assert_int_eq(r.open_rc, 0);
	ck_assert_int_eq(r.open_calls, 1);
	ck_assert(!r.opened);
	ck_assert_int_eq(r.fail.code, 0);
	ck_assert_uint_lt(r.elapsed_ms, 1000);
}
END_TEST

/* Closed while a transaction waits: done_cb still runs, once. */
START_TEST(test_close_during_transaction)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "stalldot", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	r.close_after_send_ms = 300;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.done_calls, 1);
	ck_assert_int_eq(r.res[0].mail.code, 250);
	ck_assert_int_eq(r.res[0].rcpt[0].code, 250);
	ck_assert_int_eq(r.res[0].data.code, 0);
	ck_assert_str_eq(r.res[0].data.text, "connection closed by the caller");
	ck_assert_str_eq(r.res[0].data.status, "4.4.2");
	ck_assert(!r.res[0].reusable);
}
END_TEST

/* The server hangs up while the connection is idle: the next send says so. */
START_TEST(test_idle_close_by_server)
{
	struct peer pr;
	struct run r;

	peer_start(&pr, "raw_peer.py", (const char *const[]){ "idleclose", NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &simple_msg;
	r.nmsgs = 1;
	r.send_after_ms = 300;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert(r.alive_at_open);
	ck_assert(!r.alive_before_send);
	ck_assert_int_eq(r.send_rc, UV_ENOTCONN);
	ck_assert_int_eq(r.done_calls, 0);
}
END_TEST

START_TEST(test_refused_and_relay_name)
{
	struct run r;
	int s = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t alen = sizeof(a);

	/* A port nobody listens on: bound, never listening. */
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	run_init(&r, 0, SCT_NONE);
	memcpy(&r.ss, &a, sizeof(a));
	r.p.host = "mx.example";
	run_client(&r);
	close(s);

	char want[64];
	snprintf(want, sizeof(want), "mx.example[::1]:%u", ntohs(a.sin6_port));
	ck_assert_str_eq(r.relay, want);
	ck_assert(!r.opened);
	ck_assert_int_eq(r.fail.code, 0);
	ASSERT_CONTAINS(r.fail.text, "cannot connect to mx.example[::1]");
	ck_assert_str_eq(r.fail.status, "4.4.1");
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct run r;
	struct smtp_client *c;

	run_init(&r, 25, SCT_VERIFY);
	SSL_CTX_free(r.p.tls_ctx);
	r.p.tls_ctx = NULL;              /* VERIFY without a verifying context */
	ck_assert_int_eq(uv_loop_init(&r.loop), 0);
	ck_assert_int_eq(smtp_client_open(&r.loop, &r.p, open_cb, &r, &c), UV_EINVAL);
	r.p.tls = SCT_NONE;
	r.p.helo = "bad\r\nRSET";
	ck_assert_int_eq(smtp_client_open(&r.loop, &r.p, open_cb, &r, &c), UV_EINVAL);
	ck_assert_int_eq(uv_loop_close(&r.loop), 0);
	ck_assert_int_eq(r.open_calls, 0);
}
END_TEST

/* A recipient carrying CRLF never reaches the wire. */
START_TEST(test_command_injection_refused)
{
	struct peer pr;
	struct run r;
	static const char *const evil[] = { "a@example.org>\r\nRCPT TO:<b@example.org" };
	struct smtp_client_msg m = simple_msg;
	m.rcpts = evil;

	peer_start(&pr, "smtp_peer.py", (const char *const[]){ NULL });
	run_init(&r, pr.port, SCT_NONE);
	r.msgs[0] = &m;
	r.nmsgs = 1;
	run_client(&r);
	peer_stop(&pr);

	ASSERT_OPENED(&r);
	ck_assert_int_eq(r.send_rc, UV_EINVAL);
	ck_assert_int_eq(r.done_calls, 0);
	json_t *recs = records(&pr);
	ck_assert_ptr_null(record_of(recs, "mail", 0));
	json_decref(recs);
}
END_TEST

/* ---- main -------------------------------------------------------------- */

static Suite *client_suite(void)
{
	Suite *s = suite_create("smtp_client");
	TCase *tc = tcase_create("client");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_plain_pipelined);
	tcase_add_test(tc, test_lockstep_rcpt_replies);
	tcase_add_test(tc, test_data_rejected);
	tcase_add_test(tc, test_data_premature_250);
	tcase_add_test(tc, test_reuse_and_rset);
	tcase_add_test(tc, test_starttls_verify);
	tcase_add_test(tc, test_starttls_wrong_name);
	tcase_add_test(tc, test_smtps);
	tcase_add_test(tc, test_may_without_starttls);
	tcase_add_test(tc, test_may_with_starttls);
	tcase_add_test(tc, test_may_fallback);
	tcase_add_test(tc, test_encrypt_without_starttls);
	tcase_add_test(tc, test_starttls_injection);
	tcase_add_test(tc, test_starttls_injection_may);
	tcase_add_test(tc, test_auth_plain);
	tcase_add_test(tc, test_auth_login);
	tcase_add_test(tc, test_auth_wrong_password);
	tcase_add_test(tc, test_auth_plaintext);
	tcase_add_test(tc, test_pipelining_raw);
	tcase_add_test(tc, test_helo_fallback);
	tcase_add_test(tc, test_greeting_421);
	tcase_add_test(tc, test_421_in_transaction);
	tcase_add_test(tc, test_malformed_replies);
	tcase_add_test(tc, test_timeout_greeting);
	tcase_add_test(tc, test_timeout_data);
	tcase_add_test(tc, test_close_during_open);
	tcase_add_test(tc, test_close_during_transaction);
	tcase_add_test(tc, test_idle_close_by_server);
	tcase_add_test(tc, test_refused_and_relay_name);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_command_injection_refused);
	suite_add_tcase(s, tc);
	return s;
}

/* A CA, a leaf for localhost and 127.0.0.1, a leaf for another name. */
static int make_certs(void)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
	         "set -e; cd '%s'\n"
	         "q() { \"$@\" >/dev/null 2>&1; }\n"
	         "q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
	         "  -keyout ca.key -out ca.pem -days 2 -subj '/CN=hikyaku test CA' "
	         "  -addext basicConstraints=critical,CA:TRUE "
	         "  -addext keyUsage=critical,keyCertSign,cRLSign\n"
	         "leaf() {\n"
	         "  q openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
	         "    -keyout $1.key -out $1.csr -subj /CN=$2\n"
	         "  printf 'subjectAltName=%%s\\nbasicConstraints=CA:FALSE\\n"
	         "extendedKeyUsage=serverAuth\\n' \"$3\" >$1.ext\n"
	         "  q openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	         "    -out $1.pem -days 2 -extfile $1.ext\n"
	         "}\n"
	         "leaf server localhost DNS:localhost,IP:127.0.0.1\n"
	         "leaf wrong wrong.test.example DNS:wrong.test.example\n",
	         workdir);
	return system(cmd);
}

int main(void)
{
	const char *src = getenv("HIKYAKU_SRCDIR");
	int failed;

	if (src) {
		snprintf(peerdir, sizeof(peerdir), "%s/tests/unit/peers", src);
	} else {
		/* __FILE__ is this file's path as the compiler was given it. */
		snprintf(peerdir, sizeof(peerdir), "%s", __FILE__);
		char *slash = strrchr(peerdir, '/');
		snprintf(slash ? slash + 1 : peerdir, sizeof(peerdir) - (size_t)(slash ? slash + 1 - peerdir : 0),
		         "peers");
	}
	snprintf(workdir, sizeof(workdir), "/tmp/hk-client-XXXXXX");
	if (!mkdtemp(workdir) || make_certs() != 0) {
		fprintf(stderr, "test_smtp_client: cannot make test certificates\n");
		return EXIT_FAILURE;
	}
	signal(SIGPIPE, SIG_IGN);

	SRunner *sr = srunner_create(client_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_smtp_client: cannot remove %s\n", workdir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
