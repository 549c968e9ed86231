/*
 * fuzz_session - a whole SMTP session (server/session.c, session_auth.c,
 * session_commit.c: the real code) driven by arbitrary client bytes, with
 * no socket: the harness is the session's host (server/session.h).
 *
 * Input: byte 0 chooses the settings (allowed client or not, STARTTLS
 * and AUTH offered, bare_lf = reject); byte 1 seeds the schedule; the
 * rest is what the client sends, cut into pieces of 1 to 96 bytes (now
 * and then everything at once). Between two pieces the schedule may end
 * an asynchronous step: the queue commit (durable, or -ENOSPC), the
 * password check (right password "secret" for user "shop"), a spill of
 * the message (done, or failed), the STARTTLS handshake (done, or
 * failed), a timeout, or the connection dropping; at the end the
 * connection goes and every pending step ends, so the session frees
 * itself. The in-memory part of a message is small (256 bytes) so that
 * spilling is exercised, max_message_size is 64 KiB.
 *
 * Checked:
 *  - every reply line is "DDD " or "DDD-" and ends in CRLF; nothing is
 *    written after the session asked to close;
 *  - at most one asynchronous step at a time; the session reads nothing
 *    (no step, no reply) while one is pending;
 *  - a committed message has no bare CR or LF (SPEC §5), starts with
 *    hikyaku's Received:, has at least one recipient and a valid queue
 *    id, and holds every spilled byte, in order;
 *  - a mail is "received" only after a commit reported 0;
 *  - the session calls gone exactly once, after it was closed, and
 *    never touches the host afterwards (ASan: the host is freed).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "relay/route.h"
#include "server/auth.h"
#include "server/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

/* settings[reject_bare_lf][tls][auth] */
static struct settings *settings[2][2][2];

struct host {
	struct session *s;
	struct settings *set;
	bool closed;                 /* the session asked to close */
	bool dropped;                /* session_closed() was called */
	bool gone;
	bool in_handshake;
	const char *tls_desc;
	GString *line;               /* the reply line being written */
	GString *spill;
	bool spill_made;
	/* pending steps */
	session_step_cb commit_cb, spill_cb;
	session_auth_cb auth_cb;
	void *commit_arg, *spill_arg, *auth_arg;
	bool auth_ok;
	int commits, received;
	unsigned next_id;
	uint32_t rng;
};

static unsigned pending(const struct host *t)
{
	return (t->commit_cb != NULL) + (t->spill_cb != NULL) + (t->auth_cb != NULL);
}

static int h_write(void *h, const char *p, size_t n)
{
	struct host *t = h;
	CHECK(!t->gone && !t->closed && !t->dropped);
	for (size_t i = 0; i < n; i++) {
		g_string_append_c(t->line, p[i]);
		if (p[i] != '\n')
			continue;
		const char *l = t->line->str;
		size_t len = t->line->len;
		CHECK(len >= 6 && l[len - 2] == '\r');
		CHECK(l[0] >= '2' && l[0] <= '5' && g_ascii_isdigit(l[1]) && g_ascii_isdigit(l[2]));
		CHECK(l[3] == ' ' || l[3] == '-');
		CHECK(memchr(l, '\r', len - 2) == NULL);
		g_string_truncate(t->line, 0);
	}
	return 0;
}

static void h_close(void *h, bool flush)
{
	struct host *t = h;
	(void)flush;
	CHECK(!t->gone);
	t->closed = true;
}

static void h_read(void *h, bool on)
{
	struct host *t = h;
	(void)on;
	CHECK(!t->gone);
}

static void h_timeout(void *h, uint64_t ms)
{
	struct host *t = h;
	(void)ms;
	CHECK(!t->gone);
}

static size_t h_write_queued(void *h)
{
	(void)h;
	return 0;
}

static int h_starttls(void *h, SSL_CTX *ctx)
{
	struct host *t = h;
	CHECK(ctx != NULL && !t->in_handshake && !t->dropped);
	t->in_handshake = true;
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
	struct host *t = h;
	(void)size;
	return (t->rng & 0x1f) != 0;
}

static void h_new_id(void *h, char id[QUEUE_ID_LEN + 1])
{
	struct host *t = h;
	snprintf(id, QUEUE_ID_LEN + 1, "%018X", ++t->next_id);
}

static int h_spill(void *h, void **sp, const char *p, size_t n, session_step_cb cb, void *arg)
{
	struct host *t = h;
	CHECK(!t->gone && pending(t) == 0 && n > 0);
	CHECK(*sp == NULL || *sp == t);
	*sp = t;
	t->spill_made = true;
	g_string_append_len(t->spill, p, (gssize)n);
	t->spill_cb = cb;
	t->spill_arg = arg;
	return 0;
}

static void h_spill_free(void *h, void *sp)
{
	struct host *t = h;
	CHECK(sp == t && t->spill_cb == NULL);
	g_string_truncate(t->spill, 0);
	t->spill_made = false;
}

/* SPEC §5: what goes onward has no bare CR or LF. */
static void check_crlf(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r')
			CHECK(i + 1 < n && p[i + 1] == '\n');
		if (p[i] == '\n')
			CHECK(i > 0 && p[i - 1] == '\r');
	}
}

static int h_commit(void *h, const struct queue_envelope *env, const struct session_message *m,
                    session_step_cb cb, void *arg)
{
	struct host *t = h;
	CHECK(!t->gone && pending(t) == 0);
	CHECK(queue_id_valid(env->id));
	CHECK(env->nrcpts >= 1 && env->rcpts);
	CHECK(env->size == m->hdr_len + m->spill_len + m->tail_len);
	CHECK(m->hdr_len > 10 && memcmp(m->hdr, "Received: ", 10) == 0);
	CHECK(m->spill_len == (m->spill ? t->spill->len : 0));
	GString *all = g_string_sized_new(env->size);
	g_string_append_len(all, m->hdr, (gssize)m->hdr_len);
	if (m->spill_len)
		g_string_append_len(all, t->spill->str, (gssize)m->spill_len);
	g_string_append_len(all, m->tail, (gssize)m->tail_len);
	check_crlf(all->str, all->len);
	g_string_free(all, TRUE);
	if (env->tls)
		CHECK(strcmp(env->tls, "TLSv1.3 FUZZ") == 0);
	t->commits++;
	t->commit_cb = cb;
	t->commit_arg = arg;
	return 0;
}

static int h_auth(void *h, struct auth_db *db, const char *user, const char *pass,
                  session_auth_cb cb, void *arg)
{
	struct host *t = h;
	CHECK(db != NULL && !t->gone && pending(t) == 0);
	CHECK(strlen(user) < 256 && strlen(pass) < 256);
	t->auth_ok = strcmp(user, "shop") == 0 && strcmp(pass, "secret") == 0;
	t->auth_cb = cb;
	t->auth_arg = arg;
	return 0;
}

static void h_rejected(void *h, json_t *fields)
{
	struct host *t = h;
	CHECK(!t->gone);
	CHECK(json_is_string(json_object_get(fields, "response")));
	json_decref(fields);
}

static void h_received(void *h, const struct queue_envelope *env, json_t *fields)
{
	struct host *t = h;
	CHECK(!t->gone);
	CHECK(queue_id_valid(env->id));
	if (env->tls)
		CHECK(strcmp(env->tls, "TLSv1.3 FUZZ") == 0);
	t->received++;
	json_decref(fields);
}

static void h_gone(void *h)
{
	struct host *t = h;
	CHECK(t->dropped && !t->gone && pending(t) == 0);
	t->gone = true;
}

static const struct session_host fuzz_host = {
	.write = h_write, .close = h_close, .read = h_read, .timeout = h_timeout,
	.write_queued = h_write_queued, .starttls = h_starttls, .tls_info = h_tls_info,
	.settings = h_settings, .storage_ok = h_storage_ok, .new_id = h_new_id,
	.spill = h_spill, .spill_free = h_spill_free, .commit = h_commit, .auth = h_auth,
	.rejected = h_rejected, .received = h_received, .gone = h_gone,
};

static uint32_t next(struct host *t)
{
	/* xorshift32: the schedule is a function of the input. */
	uint32_t x = t->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return t->rng = x ? x : 0x9e3779b9u;
}

/* Ends one pending step, or does one other host event. */
static void event(struct host *t)
{
	uint32_t r = next(t);
	if (t->dropped)
		return;
	if (t->commit_cb && (r & 3) != 0) {
		session_step_cb cb = t->commit_cb;
		t->commit_cb = NULL;
		cb(t->commit_arg, (r & 0x70) == 0x70 ? -ENOSPC : 0);
	} else if (t->spill_cb && (r & 3) != 0) {
		session_step_cb cb = t->spill_cb;
		t->spill_cb = NULL;
		cb(t->spill_arg, (r & 0xf0) == 0xf0 ? -EIO : 0);
	} else if (t->auth_cb && (r & 3) != 0) {
		session_auth_cb cb = t->auth_cb;
		t->auth_cb = NULL;
		cb(t->auth_arg, t->auth_ok);
	} else if (t->in_handshake && (r & 3) != 0) {
		t->in_handshake = false;
		if ((r & 0x30) == 0x30) {
			session_tls_done(t->s, -1);
		} else {
			t->tls_desc = "TLSv1.3 FUZZ";
			session_tls_done(t->s, 0);
		}
	} else if ((r & 0x3ff) == 0x3ff) {
		session_timeout(t->s);
	} else if ((r & 0x3ff) == 0x3fe) {
		session_drain(t->s);
	} else if ((r & 0x3ff) == 0x3fd) {
		session_drained(t->s);
	}
}

/* The connection goes (on_close); pending steps still end later. */
static void drop(struct host *t)
{
	if (t->dropped)
		return;
	t->dropped = true;
	session_closed(t->s);
}

static void finish(struct host *t)
{
	drop(t);
	while (pending(t)) {
		if (t->commit_cb) {
			session_step_cb cb = t->commit_cb;
			t->commit_cb = NULL;
			cb(t->commit_arg, 0);
		} else if (t->spill_cb) {
			session_step_cb cb = t->spill_cb;
			t->spill_cb = NULL;
			cb(t->spill_arg, 0);
		} else {
			session_auth_cb cb = t->auth_cb;
			t->auth_cb = NULL;
			cb(t->auth_arg, false);
		}
	}
	CHECK(t->gone);
	CHECK(t->received <= t->commits);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	route_init();
	char dir[] = "/tmp/hk-fuzz-session-XXXXXX";
	CHECK(mkdtemp(dir));
	char auth[64], conf[64];
	snprintf(auth, sizeof(auth), "%s/auth", dir);
	/* crypt(3) never runs here (the harness checks the password), but
	 * the file must load. */
	FILE *fp = fopen(auth, "w");
	CHECK(fp);
	fprintf(fp, "shop:$6$fuzzsalt$notarealhash\n");
	fclose(fp);
	for (int lf = 0; lf < 2; lf++) {
		snprintf(conf, sizeof(conf), "%s/hikyaku%d.conf", dir, lf);
		fp = fopen(conf, "w");
		CHECK(fp);
		fprintf(fp,
		        "[server]\nhostname = relay.fuzz.example\nallow_networks = 127.0.0.1/32\n"
		        "max_message_size = 64K\nmax_recipients = 5\nbare_lf = %s\n"
		        "[routing]\nverified_domains = shop.example, a@b.example\n"
		        "[service]\nhost = 127.0.0.1\nport = 9\ntls = none\n"
		        "[suppression]\ndb = %s/s.db\nbounce_address = bounces@shop.example\n"
		        "[queue]\ndir = %s/queue\n[log]\nfile = %s/log\n[control]\nsocket = %s/ctl\n",
		        lf ? "reject" : "normalize", dir, dir, dir, dir);
		fclose(fp);
		for (int tls = 0; tls < 2; tls++) {
			for (int au = 0; au < 2; au++) {
				struct config *cfg = NULL;
				struct config_diags d = { 0 };
				CHECK(config_load(conf, &cfg, &d) == 0);
				config_diags_free(&d);
				char err[256];
				struct settings *set = settings_new(cfg, err, sizeof(err));
				CHECK(set);
				set->data_mem_max = 256;
				if (tls)
					set->tls = SSL_CTX_new(TLS_server_method());
				if (au)
					set->auth = auth_db_load(auth, NULL, NULL);
				CHECK(!au || set->auth);
				settings[lf][tls][au] = set;
			}
		}
	}
	unlink(auth);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > 1 << 18)
		return 0;
	uint8_t flags = data[0];
	struct host *t = calloc(1, sizeof(*t));
	CHECK(t);
	t->set = settings[flags & 1][(flags >> 1) & 1][(flags >> 2) & 1];
	t->line = g_string_new(NULL);
	t->spill = g_string_new(NULL);
	t->rng = 0x12345678u ^ ((uint32_t)data[1] << 8) ^ (uint32_t)size;
	bool allowed = flags & 8;
	t->s = session_new(&fuzz_host, t, "FUZZSESSION", allowed ? "127.0.0.1" : "192.0.2.1", allowed);
	CHECK(t->s);
	session_start(t->s);

	const uint8_t *p = data + 2;
	size_t n = size - 2;
	while (n > 0 && !t->dropped) {
		uint32_t r = next(t);
		size_t k = (r & 0xff) == 0 ? n : 1 + (r >> 8) % 96;
		if (k > n)
			k = n;
		/* An exact-size heap copy: ASan sees any read past it. */
		char *chunk = malloc(k);
		CHECK(chunk);
		memcpy(chunk, p, k);
		unsigned before = pending(t);
		session_input(t->s, chunk, k);
		free(chunk);
		CHECK(pending(t) <= 1);
		CHECK(before == 0 || pending(t) == before);
		p += k;
		n -= k;
		if (t->closed || (r & 0xfff000) == 0xfff000)
			drop(t);
		int events = 1 + (int)((r >> 16) & 3);
		for (int i = 0; i < events && !t->dropped; i++)
			event(t);
	}
	finish(t);
	g_string_free(t->line, TRUE);
	g_string_free(t->spill, TRUE);
	free(t);
	return 0;
}
