/*
 * test_session - one SMTP session (server/session.h) driven with
 * scripted bytes, no socket: a test host records the replies, the
 * commits and the events, and finishes the asynchronous steps (commit,
 * password check, spill, TLS handshake) when the test says so. Each test
 * sends what a client would and compares the replies with what SPEC §5
 * says.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "relay/route.h"
#include "server/auth.h"
#include "server/session.h"

/* ---- the test host --------------------------------------------------- */

struct host {
	struct session *s;
	struct settings *set;
	GString *out;              /* every reply, as sent */
	bool closed;               /* the session asked to close */
	bool reading;
	bool tls_started;
	char *tls_desc;            /* "the TLS engine": freed when the connection goes */
	/* pending steps */
	session_step_cb commit_cb;
	void *commit_arg;
	GString *committed;        /* the message bytes of the last commit */
	char *commit_route;
	char *commit_tls;
	char *commit_header_from;
	session_step_cb spill_cb;
	void *spill_arg;
	GString *spill;            /* what was spilled so far */
	int spill_calls;
	session_auth_cb auth_cb;
	void *auth_arg;
	bool auth_ok;
	/* events */
	int rejected;
	int received;
	char *received_tls;        /* env->tls as read in received() */
	char *received_route;
	bool gone;
	unsigned next_id;
	bool storage;
};

static int h_write(void *h, const char *p, size_t n)
{
	struct host *t = h;
	g_string_append_len(t->out, p, (gssize)n);
	return 0;
}

static void h_close(void *h, bool flush)
{
	struct host *t = h;
	(void)flush;
	t->closed = true;
}

static void h_read(void *h, bool on)
{
	((struct host *)h)->reading = on;
}

static void h_timeout(void *h, uint64_t ms)
{
	(void)h;
	(void)ms;
}

static size_t h_write_queued(void *h)
{
	(void)h;
	return 0;
}

static int h_starttls(void *h, SSL_CTX *ctx)
{
	struct host *t = h;
	(void)ctx;
	t->tls_started = true;
	return 0;
}

static const char *h_tls_info(void *h)
{
	return ((struct host *)h)->tls_desc;
}

static struct settings *h_settings(void *h)
{
	return ((struct host *)h)->set;
}

static bool h_storage_ok(void *h, uint64_t size)
{
	(void)size;
	return ((struct host *)h)->storage;
}

static void h_new_id(void *h, char id[QUEUE_ID_LEN + 1])
{
	struct host *t = h;
	snprintf(id, QUEUE_ID_LEN + 1, "%018X", ++t->next_id);
}

static int h_spill(void *h, void **sp, const char *p, size_t n, session_step_cb cb, void *arg)
{
	struct host *t = h;
	*sp = t;
	g_string_append_len(t->spill, p, (gssize)n);
	t->spill_calls++;
	t->spill_cb = cb;
	t->spill_arg = arg;
	return 0;
}

static void h_spill_free(void *h, void *sp)
{
	(void)h;
	(void)sp;
}

static char *dup_or_null(const char *s)
{
	return s ? g_strdup(s) : NULL;
}

static int h_commit(void *h, const struct queue_envelope *env, const struct session_message *m,
                    session_step_cb cb, void *arg)
{
	struct host *t = h;
	g_string_truncate(t->committed, 0);
	g_string_append_len(t->committed, m->hdr, (gssize)m->hdr_len);
	ck_assert_uint_eq(m->spill_len, t->spill->len);
	g_string_append_len(t->committed, t->spill->str, (gssize)m->spill_len);
	g_string_append_len(t->committed, m->tail, (gssize)m->tail_len);
	g_free(t->commit_route);
	g_free(t->commit_tls);
	g_free(t->commit_header_from);
	t->commit_route = dup_or_null(env->route);
	t->commit_tls = dup_or_null(env->tls);
	t->commit_header_from = dup_or_null(env->header_from);
	t->commit_cb = cb;
	t->commit_arg = arg;
	return 0;
}

static int h_auth(void *h, struct auth_db *db, const char *user, const char *pass,
                  session_auth_cb cb, void *arg)
{
	struct host *t = h;
	(void)db;
	t->auth_ok = strcmp(user, "shop") == 0 && strcmp(pass, "secret") == 0;
	t->auth_cb = cb;
	t->auth_arg = arg;
	return 0;
}

static void h_rejected(void *h, json_t *fields)
{
	((struct host *)h)->rejected++;
	json_decref(fields);
}

static void h_received(void *h, const struct queue_envelope *env, json_t *fields)
{
	struct host *t = h;
	t->received++;
	g_free(t->received_tls);
	g_free(t->received_route);
	/* Read like the runner does: a pointer into freed memory shows here. */
	t->received_tls = dup_or_null(env->tls);
	t->received_route = dup_or_null(env->route);
	json_decref(fields);
}

static void h_gone(void *h)
{
	((struct host *)h)->gone = true;
}

static const struct session_host test_host = {
	.write = h_write, .close = h_close, .read = h_read, .timeout = h_timeout,
	.write_queued = h_write_queued, .starttls = h_starttls, .tls_info = h_tls_info,
	.settings = h_settings, .storage_ok = h_storage_ok, .new_id = h_new_id,
	.spill = h_spill, .spill_free = h_spill_free, .commit = h_commit, .auth = h_auth,
	.rejected = h_rejected, .received = h_received, .gone = h_gone,
};

static char tdir[64];

static struct settings *load_settings(const char *extra_server, const char *more)
{
	char path[128], text[2048];
	snprintf(path, sizeof(path), "%s/hikyaku-%u.conf", tdir, (unsigned)g_random_int());
	snprintf(text, sizeof(text),
	         "[server]\nhostname = relay.test.example\nallow_networks = 127.0.0.1/32\n%s\n"
	         "[queue]\ndir = %s/queue\n[suppression]\ndb = %s/s.db\n[log]\nfile = %s/log\n"
	         "[control]\nsocket = %s/ctl\n%s\n",
	         extra_server ? extra_server : "", tdir, tdir, tdir, tdir, more ? more : "");
	ck_assert(g_file_set_contents(path, text, -1, NULL));
	struct config *cfg = NULL;
	struct config_diags d = { 0 };
	int rc = config_load(path, &cfg, &d);
	if (rc != 0)
		ck_abort_msg("config: %s", d.n ? d.v[0].text : "?");
	config_diags_free(&d);
	char err[256];
	struct settings *set = settings_new(cfg, err, sizeof(err));
	ck_assert_msg(set != NULL, "%s", err);
	return set;
}

static struct host *host_new(struct settings *set, bool allowed)
{
	struct host *t = calloc(1, sizeof(*t));
	t->set = set;
	t->out = g_string_new(NULL);
	t->committed = g_string_new(NULL);
	t->spill = g_string_new(NULL);
	t->storage = true;
	t->s = session_new(&test_host, t, "SESSION1", allowed ? "127.0.0.1" : "192.0.2.9", allowed);
	session_start(t->s);
	return t;
}

/* The connection goes: what the host would do at on_close. */
static void host_drop(struct host *t)
{
	free(t->tls_desc); /* the TLS engine goes with the connection */
	t->tls_desc = NULL;
	session_closed(t->s);
}

static void host_free(struct host *t)
{
	if (!t->gone)
		host_drop(t);
	ck_assert(t->gone);
	g_string_free(t->out, TRUE);
	g_string_free(t->committed, TRUE);
	g_string_free(t->spill, TRUE);
	g_free(t->commit_route);
	g_free(t->commit_tls);
	g_free(t->commit_header_from);
	g_free(t->received_tls);
	g_free(t->received_route);
	settings_unref(t->set);
	free(t);
}

static void send_str(struct host *t, const char *s)
{
	/* An exact-size heap copy, so that ASan sees any read past it. */
	size_t n = strlen(s);
	char *p = malloc(n ? n : 1);
	memcpy(p, s, n);
	session_input(t->s, p, n);
	free(p);
}

/* The replies since the last call, and forget them. */
static char *take(struct host *t)
{
	char *r = g_strdup(t->out->str);
	g_string_truncate(t->out, 0);
	return r;
}

#define EXPECT(t, want)                                                        \
	do {                                                                   \
		char *got_ = take(t);                                          \
		ck_assert_msg(g_regex_match_simple(want, got_, G_REGEX_MULTILINE, 0), \
		              "replies %s do not match /%s/", got_, want);      \
		g_free(got_);                                                  \
	} while (0)

static void finish_commit(struct host *t, int status)
{
	ck_assert_ptr_nonnull(t->commit_cb);
	session_step_cb cb = t->commit_cb;
	t->commit_cb = NULL;
	cb(t->commit_arg, status);
}

static void finish_spills(struct host *t)
{
	while (t->spill_cb) {
		session_step_cb cb = t->spill_cb;
		t->spill_cb = NULL;
		cb(t->spill_arg, 0);
	}
}

static void setup(void)
{
	strcpy(tdir, "/tmp/hk-session-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	route_init();
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
	(void)!system(cmd);
}

/* ---- tests ----------------------------------------------------------- */

START_TEST(pipelined_mail)
{
	struct host *t = host_new(load_settings(NULL, NULL), true);
	EXPECT(t, "^220 relay.test.example ESMTP hikyaku\r\n$");
	send_str(t, "EHLO c.example\r\nMAIL FROM:<a@example.jp>\r\nRCPT TO:<b@example.com>\r\n"
	            "DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
	EXPECT(t, "^250-relay.test.example\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n"
	          "250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	          "354 End data[^\r]*\r\n$");
	/* Nothing more before the mail is durable: no 250, QUIT not run. */
	ck_assert(!t->reading);
	finish_commit(t, 0);
	EXPECT(t, "^250 2.0.0 Ok: queued as 000000000000000001\r\n221 2.0.0 relay.test.example closing");
	ck_assert(t->closed);
	ck_assert_int_eq(t->received, 1);
	ck_assert(g_str_has_prefix(t->committed->str, "Received: from c.example ([127.0.0.1])\r\n"
	                                              "\tby relay.test.example (hikyaku) with ESMTP id "
	                                              "000000000000000001\r\n\tfor <b@example.com>; "));
	ck_assert_ptr_nonnull(strstr(t->committed->str, "\r\nMessage-ID: <000000000000000001@relay.test.example>\r\n"
	                                                "Subject: hi\r\n\r\nbody\r\n"));
	host_free(t);
}
END_TEST

START_TEST(sequence_checks)
{
	struct host *t = host_new(load_settings(NULL, NULL), true);
	g_free(take(t));
	send_str(t, "MAIL FROM:<a@example.jp>\r\n");
	EXPECT(t, "^503 5.5.1 Error: send HELO/EHLO first\r\n$");
	send_str(t, "AUTH PLAIN AGFhAGI=\r\n");
	EXPECT(t, "^503 5.5.1 Error: authentication not enabled\r\n$");
	send_str(t, "HELO c.example\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	EXPECT(t, "^250 relay.test.example\r\n503 5.5.1 Error: need MAIL command\r\n"
	          "503 5.5.1 Error: need MAIL command\r\n$");
	send_str(t, "MAIL FROM:<a@example.jp>\r\nMAIL FROM:<a@example.jp>\r\nDATA\r\nRSET x\r\n");
	EXPECT(t, "^250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n"
	          "503 5.5.1 Error: no valid recipients\r\n501 5.5.4 Syntax error: RSET takes no argument\r\n$");
	send_str(t, "STARTTLS\r\nBDAT 1\r\nFOO\r\nNOOP\r\n");
	EXPECT(t, "^502 5.5.1 Error: STARTTLS not available\r\n502 5.5.1 Error: CHUNKING not offered\r\n"
	          "500 5.5.2 Error: command not recognized\r\n250 2.0.0 Ok\r\n$");
	host_free(t);
}
END_TEST

/* Issue 11: "EHLO [x:" + 2,000 "A" + "]" overflowed the EHLO name. */
START_TEST(long_ehlo_literal)
{
	struct host *t = host_new(load_settings(NULL, NULL), false);
	g_free(take(t));
	GString *l = g_string_new("EHLO [x:");
	for (int i = 0; i < 2000; i++)
		g_string_append_c(l, 'A');
	g_string_append(l, "]\r\n");
	send_str(t, l->str);
	EXPECT(t, "^501 5.5.4 ");
	g_string_assign(l, "EHLO [x:");
	for (int i = 0; i < 270; i++)
		g_string_append_c(l, 'A');
	g_string_append(l, "]\r\nMAIL FROM:<a@example.jp>\r\n");
	send_str(t, l->str);
	EXPECT(t, "^501 5.5.4 [^\r]*\r\n503 5.5.1 ");
	g_string_free(l, TRUE);
	send_str(t, "EHLO ok.example\r\nMAIL FROM:<a@example.jp>\r\nRCPT TO:<v@target.example>\r\n");
	EXPECT(t, "\r\n250 2.1.0 Ok\r\n554 5.7.1 Relay access denied\r\n$");
	host_free(t);
}
END_TEST

static struct settings *tls_auth_settings(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/auth", tdir);
	ck_assert(g_file_set_contents(path, "shop:$6$saltsalt$x\n", -1, NULL));
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
	         "-keyout %s/key.pem -out %s/cert.pem -days 2 -subj /CN=relay.test.example "
	         ">/dev/null 2>&1", tdir, tdir);
	ck_assert_int_eq(system(cmd), 0);
	char extra[512];
	snprintf(extra, sizeof(extra), "auth_file = %s\ntls_cert = %s/cert.pem\ntls_key = %s/key.pem",
	         path, tdir, tdir);
	return load_settings(extra, NULL);
}

START_TEST(starttls_and_auth)
{
	struct host *t = host_new(tls_auth_settings(), false);
	g_free(take(t));
	send_str(t, "EHLO c.example\r\nAUTH PLAIN AHNob3AAc2VjcmV0\r\n");
	EXPECT(t, "250-STARTTLS\r\n250 SMTPUTF8\r\n530 5.7.0 Must issue a STARTTLS command first\r\n$");
	/* Pipelined behind STARTTLS: thrown away (RFC 3207 §4.2). */
	send_str(t, "STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n");
	EXPECT(t, "^220 2.0.0 Ready to start TLS\r\n$");
	ck_assert(t->tls_started);
	t->tls_desc = strdup("TLSv1.3 TEST_CIPHER");
	session_tls_done(t->s, 0);
	send_str(t, "MAIL FROM:<a@example.jp>\r\nEHLO c.example\r\n");
	EXPECT(t, "^503 5.5.1 Error: send EHLO again after STARTTLS\r\n250-relay.test.example\r\n"
	          "(250-[^\r]*\r\n)*250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n$");
	send_str(t, "AUTH PLAIN AHNob3AAd3Jvbmc=\r\nNOOP\r\n");
	ck_assert_ptr_nonnull(t->auth_cb);
	EXPECT(t, "^$");            /* waits for the check; NOOP not run yet */
	t->auth_cb(t->auth_arg, t->auth_ok);
	EXPECT(t, "^535 5.7.8 [^\r]*\r\n250 2.0.0 Ok\r\n$");
	send_str(t, "AUTH LOGIN c2hvcA==\r\n");
	EXPECT(t, "^334 UGFzc3dvcmQ6\r\n$");
	send_str(t, "c2VjcmV0\r\n");
	t->auth_cb(t->auth_arg, t->auth_ok);
	EXPECT(t, "^235 2.7.0 Authentication successful\r\n$");
	send_str(t, "AUTH PLAIN AHNob3AAc2VjcmV0\r\nMAIL FROM:<a@example.jp>\r\nRCPT TO:<v@target.example>\r\n");
	EXPECT(t, "^503 5.5.1 Error: already authenticated\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n$");
	host_free(t);
}
END_TEST

/* A password guesser gets SESSION_AUTH_FAIL_LIMIT (3) tries per connection:
 * two wrong answers leave the session open, the third is answered 421. */
START_TEST(auth_failures_hang_up)
{
	struct host *t = host_new(tls_auth_settings(), false);
	g_free(take(t));
	send_str(t, "EHLO c.example\r\nSTARTTLS\r\n");
	t->tls_desc = strdup("TLSv1.3 TEST_CIPHER");
	session_tls_done(t->s, 0);
	send_str(t, "EHLO c.example\r\n");
	g_free(take(t));
	for (int i = 0; i < 2; i++) {
		send_str(t, "AUTH PLAIN AHNob3AAd3Jvbmc=\r\n");
		ck_assert_ptr_nonnull(t->auth_cb);
		t->auth_cb(t->auth_arg, false);
		EXPECT(t, "^535 5.7.8 [^\r]*\r\n$");
		ck_assert(!t->closed);
	}
	send_str(t, "AUTH LOGIN c2hvcA==\r\n");
	EXPECT(t, "^334 UGFzc3dvcmQ6\r\n$");
	send_str(t, "d3Jvbmc=\r\nNOOP\r\n");
	t->auth_cb(t->auth_arg, false);
	EXPECT(t, "^535 5.7.8 [^\r]*\r\n421 4.7.0 Error: too many authentication failures\r\n$");
	ck_assert(t->closed);
	host_free(t);
}
END_TEST

/* Issue 11: a TLS client that drops while its mail is being committed.
 * The envelope must not point into the TLS engine, which goes with the
 * connection; the mail is still handed over (not left until a restart). */
START_TEST(tls_drop_during_commit)
{
	struct host *t = host_new(tls_auth_settings(), true);
	send_str(t, "EHLO c.example\r\nSTARTTLS\r\n");
	t->tls_desc = strdup("TLSv1.3 TEST_CIPHER");
	session_tls_done(t->s, 0);
	send_str(t, "EHLO c.example\r\nMAIL FROM:<a@example.jp>\r\nRCPT TO:<b@example.com>\r\n"
	            "DATA\r\nSubject: x\r\n\r\nx\r\n.\r\n");
	ck_assert_ptr_nonnull(t->commit_cb);
	ck_assert_str_eq(t->commit_tls, "TLSv1.3 TEST_CIPHER");
	host_drop(t);               /* frees the "engine" */
	ck_assert(!t->gone);        /* the session waits for its commit */
	finish_commit(t, 0);
	ck_assert(t->gone);
	ck_assert_int_eq(t->received, 1);
	ck_assert_str_eq(t->received_tls, "TLSv1.3 TEST_CIPHER");
	ck_assert_ptr_nonnull(strstr(t->committed->str, "\t(using TLSv1.3 TEST_CIPHER)\r\n"));
	host_free(t);
}
END_TEST

static void send_mail_with_received(struct host *t, int n)
{
	GString *m = g_string_new("MAIL FROM:<a@example.jp>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	for (int i = 0; i < n; i++)
		g_string_append_printf(m, "Received: from hop%d.example by x; Tue, 1 Dec 2026 00:00:00 +0000\r\n", i);
	g_string_append(m, "Subject: loop\r\n\r\nx\r\n.\r\n");
	send_str(t, m->str);
	g_string_free(m, TRUE);
}

/* SPEC §5: more than 50 Received: fields is a loop: 554 5.4.6. */
START_TEST(hop_limit)
{
	struct host *t = host_new(load_settings(NULL, NULL), true);
	send_str(t, "EHLO c.example\r\n");
	g_free(take(t));
	send_mail_with_received(t, 51);
	EXPECT(t, "\r\n354 [^\r]*\r\n554 5.4.6 [^\r]*\r\n$");
	ck_assert_ptr_null(t->commit_cb);
	ck_assert_int_eq(t->rejected, 1);
	send_mail_with_received(t, 50);
	finish_commit(t, 0);
	EXPECT(t, "\r\n250 2.0.0 Ok: queued as ");
	host_free(t);
}
END_TEST

/* SPEC §5: a bounded part of a message in memory; the rest is spilled,
 * and the commit gets every byte back in order. */
START_TEST(spill_large_message)
{
	struct settings *set = load_settings(NULL, NULL);
	set->data_mem_max = 4096;
	struct host *t = host_new(set, true);
	send_str(t, "EHLO c.example\r\nMAIL FROM:<a@example.jp>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	g_free(take(t));
	GString *want = g_string_new("From: <a@example.jp>\r\nSubject: big\r\n\r\n");
	send_str(t, want->str);
	for (int i = 0; i < 3000; i++) {
		char line[128];
		snprintf(line, sizeof(line), "line %05d of a large message, with some padding text\r\n", i);
		g_string_append(want, line);
		send_str(t, line);
		finish_spills(t);  /* a spill ends before the next read */
	}
	send_str(t, ".\r\n");
	finish_spills(t);
	ck_assert_int_gt(t->spill_calls, 10);
	ck_assert_ptr_nonnull(t->commit_cb);
	finish_commit(t, 0);
	EXPECT(t, "^250 2.0.0 Ok: queued as ");
	const char *body = strstr(t->committed->str, "\r\nFrom: <a@example.jp>\r\n");
	ck_assert_ptr_nonnull(body);
	ck_assert_str_eq(body + 2, want->str);
	ck_assert_str_eq(t->commit_header_from, "<a@example.jp>");
	g_string_free(want, TRUE);
	host_free(t);
}
END_TEST

/* A failed spill: the message is refused with 452 4.3.1, nothing queued. */
START_TEST(spill_failure)
{
	struct settings *set = load_settings(NULL, NULL);
	set->data_mem_max = 4096;
	struct host *t = host_new(set, true);
	send_str(t, "EHLO c.example\r\nMAIL FROM:<a@example.jp>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	g_free(take(t));
	for (int i = 0; i < 200; i++) {
		send_str(t, "0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
		if (t->spill_cb) {
			session_step_cb cb = t->spill_cb;
			t->spill_cb = NULL;
			cb(t->spill_arg, -ENOSPC);
		}
	}
	send_str(t, ".\r\nNOOP\r\n");
	EXPECT(t, "^452 4.3.1 [^\r]*\r\n250 2.0.0 Ok\r\n$");
	ck_assert_ptr_null(t->commit_cb);
	host_free(t);
}
END_TEST

/* Issue 11: a 25 MB From: field is never parsed (nor kept whole): it
 * counts as unparseable and the envelope sender decides (SPEC §4). */
START_TEST(huge_from_field)
{
	struct settings *set = load_settings("max_message_size = 30M",
	                                     "[routing]\nverified_domains = shop.example\n"
	                                     "[service]\nhost = 127.0.0.1\nport = 9\ntls = none\n");
	set->data_mem_max = 65536;
	struct host *t = host_new(set, true);
	send_str(t, "EHLO c.example\r\nMAIL FROM:<a@shop.example>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
	            "From: <x@evil.example>");
	g_free(take(t));
	char fold[1002];
	memset(fold, 'a', sizeof(fold));
	memcpy(fold, ",\r\n <", 5);
	memcpy(fold + sizeof(fold) - 16, "@evil.example>", 14);
	fold[sizeof(fold) - 2] = '\0';
	for (int i = 0; i < 25 * 1024; i++) {
		send_str(t, fold);
		finish_spills(t);
	}
	send_str(t, "\r\nSubject: x\r\n\r\nx\r\n.\r\n");
	finish_spills(t);
	ck_assert_ptr_nonnull(t->commit_cb);
	ck_assert_ptr_null(t->commit_header_from);
	ck_assert_str_eq(t->commit_route, "service");   /* by the envelope sender */
	finish_commit(t, 0);
	EXPECT(t, "^250 2.0.0 Ok: queued as ");
	host_free(t);
}
END_TEST

/* SPEC §4: after a reload, the next mail of an open session follows the
 * new verified_domains. */
START_TEST(reload_next_mail)
{
	const char *svc = "[service]\nhost = 127.0.0.1\nport = 9\ntls = none\n";
	struct host *t = host_new(load_settings(NULL, svc), true);
	send_str(t, "EHLO c.example\r\nMAIL FROM:<a@shop.example>\r\nRCPT TO:<b@example.com>\r\n"
	            "DATA\r\nFrom: <a@shop.example>\r\n\r\nx\r\n.\r\n");
	finish_commit(t, 0);
	ck_assert_str_eq(t->received_route, "direct");
	/* The operator verifies shop.example and reloads. */
	char more[256];
	snprintf(more, sizeof(more), "[routing]\nverified_domains = shop.example\n%s", svc);
	struct settings *old = t->set;
	t->set = load_settings(NULL, more);
	settings_unref(old);
	send_str(t, "MAIL FROM:<a@shop.example>\r\nRCPT TO:<b@example.com>\r\n"
	            "DATA\r\nFrom: <a@shop.example>\r\n\r\nx\r\n.\r\n");
	finish_commit(t, 0);
	ck_assert_str_eq(t->received_route, "service");
	host_free(t);
}
END_TEST

/* A transaction in progress keeps its rules: the reload applies from the
 * next MAIL. */
START_TEST(reload_keeps_transaction)
{
	const char *svc = "[service]\nhost = 127.0.0.1\nport = 9\ntls = none\n";
	struct host *t = host_new(load_settings(NULL, svc), true);
	send_str(t, "EHLO c.example\r\nMAIL FROM:<a@shop.example>\r\nRCPT TO:<b@example.com>\r\n");
	char more[256];
	snprintf(more, sizeof(more), "[routing]\nverified_domains = shop.example\n%s", svc);
	struct settings *old = t->set;
	t->set = load_settings(NULL, more);
	settings_unref(old);
	send_str(t, "DATA\r\nFrom: <a@shop.example>\r\n\r\nx\r\n.\r\n");
	finish_commit(t, 0);
	ck_assert_str_eq(t->received_route, "direct");
	host_free(t);
}
END_TEST

static Suite *session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("session");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, pipelined_mail);
	tcase_add_test(tc, sequence_checks);
	tcase_add_test(tc, long_ehlo_literal);
	tcase_add_test(tc, starttls_and_auth);
	tcase_add_test(tc, auth_failures_hang_up);
	tcase_add_test(tc, tls_drop_during_commit);
	tcase_add_test(tc, hop_limit);
	tcase_add_test(tc, spill_large_message);
	tcase_add_test(tc, spill_failure);
	tcase_add_test(tc, huge_from_field);
	tcase_add_test(tc, reload_next_mail);
	tcase_add_test(tc, reload_keeps_transaction);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(session_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
