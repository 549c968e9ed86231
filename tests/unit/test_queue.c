/*
 * test_queue - the durable queue (relay/queue.h). Commits run on a real
 * libuv loop against a fresh directory under /tmp; callbacks count, and
 * the assertions run after the loop.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/mman.h>

#include "relay/queue.h"
#include "relay/queue_fs.h"
#include "relay/queue_wal.h"

static char root[64];
static char path_mail[128];
static char path_tmp[128];
static uv_loop_t loop;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	strcpy(root, "/tmp/hk-queue-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(path_mail, sizeof(path_mail), "%s/mail", root);
	snprintf(path_tmp, sizeof(path_tmp), "%s/tmp", root);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
}

static void teardown(void)
{
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	size_t cap = 0, n = 0, got;

	if (!f)
		return NULL;
	do {
		cap = cap ? cap * 2 : 4096;
		p = realloc(p, cap);
		got = fread(p + n, 1, cap - n, f);
		n += got;
	} while (n == cap);
	fclose(f);
	*len = n;
	return p;
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* An envelope with every field set, non-ASCII included. */
static void env_full(struct queue_envelope *e, const char *id)
{
	static struct queue_rcpt rcpts[] = {
		{ "alice@example.com", RCPT_PENDING, NULL },
		{ "ユーザー@例え.jp", RCPT_DELIVERED, NULL },
		{ "bob@example.org", RCPT_BOUNCED, NULL },
		{ "carol@example.net", RCPT_EXPIRED, NULL },
		{ "dave@example.net", RCPT_SUPPRESSED, NULL },
	};

	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%.18s", id);
	e->arrival_ms = 1795500844123ULL;
	e->session = "S0001";
	e->from = "shop@例え.jp";
	e->rcpts = rcpts;
	e->nrcpts = sizeof(rcpts) / sizeof(rcpts[0]);
	e->client_ip = "2001:db8::1";
	e->helo = "app1.example.com";
	e->tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
	e->auth_user = "shop";
	e->smtputf8 = true;
	e->body_8bit = true;
	e->size = 123456;
	e->header_from = "\"Shop \\\"Ü\\\"\" <shop@例え.jp>";
	e->message_id = "<a.b@c>";
	e->route = "service";
	e->matched = "shop@例え.jp";
}

/* Compares two strings that may both be NULL. */
#define ck_assert_nstr_eq(a, b)                                                  \
	do {                                                                     \
		if ((a) == NULL || (b) == NULL)                                  \
			ck_assert_ptr_eq((a), (b));                              \
		else                                                             \
			ck_assert_str_eq((a), (b));                              \
	} while (0)

static void env_assert_eq(const struct queue_envelope *a, const struct queue_envelope *b)
{
	ck_assert_str_eq(a->id, b->id);
	ck_assert_uint_eq(a->arrival_ms, b->arrival_ms);
	ck_assert_nstr_eq(a->session, b->session);
	ck_assert_nstr_eq(a->from, b->from);
	ck_assert_uint_eq(a->nrcpts, b->nrcpts);
	for (size_t i = 0; i < a->nrcpts; i++) {
		ck_assert_str_eq(a->rcpts[i].addr, b->rcpts[i].addr);
		ck_assert_int_eq(a->rcpts[i].state, b->rcpts[i].state);
	}
	ck_assert_nstr_eq(a->client_ip, b->client_ip);
	ck_assert_nstr_eq(a->helo, b->helo);
	ck_assert_nstr_eq(a->tls, b->tls);
	ck_assert_nstr_eq(a->auth_user, b->auth_user);
	ck_assert_int_eq(a->smtputf8, b->smtputf8);
	ck_assert_int_eq(a->body_8bit, b->body_8bit);
	ck_assert_uint_eq(a->size, b->size);
	ck_assert_nstr_eq(a->header_from, b->header_from);
	ck_assert_nstr_eq(a->message_id, b->message_id);
	ck_assert_nstr_eq(a->route, b->route);
	ck_assert_nstr_eq(a->matched, b->matched);
}

struct cb_rec {
	int called;
	int status;
};

static void commit_cb(void *arg, int status)
{
	struct cb_rec *r = arg;

	r->called++;
	r->status = status;
}

/* Commit one mail and run the loop until it is called back. */
static int commit_one(struct queue *q, const struct queue_envelope *env,
                      const uv_buf_t *parts, size_t nparts)
{
	struct cb_rec rec = { 0, 1 };

	ck_assert_int_eq(queue_commit(q, env, parts, nparts, commit_cb, &rec), 0);
	ck_assert_uint_eq(queue_pending(q), 1);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(rec.called, 1);
	ck_assert_uint_eq(queue_pending(q), 0);
	return rec.status;
}

/* A restart: the log's live records become DIR/mail files. */
static void reopen(struct queue **q)
{
	queue_close(*q);
	ck_assert_int_eq(queue_open(&loop, root, q), 0);
}

/* A spill file holding data (a mail received partly to disk). */
static int spill_of(const char *data, size_t len)
{
	int fd = memfd_create("spill", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	return fd;
}

/* commit_one() for a mail whose last bytes were spilled: it keeps a file
 * of its own (DIR/tmp, then DIR/mail), not a record in the log. */
static int commit_one_spilled(struct queue *q, const struct queue_envelope *env,
                              const char *spilled)
{
	struct cb_rec rec = { 0, 1 };
	int fd = spill_of(spilled, strlen(spilled));
	ck_assert_int_eq(queue_commit_spilled(q, env, NULL, 0, 0, fd, strlen(spilled), NULL, NULL,
	                                      commit_cb, &rec), 0);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(rec.called, 1);
	close(fd);
	return rec.status;
}

START_TEST(test_commit_readback)
{
	struct queue *q;
	struct queue_envelope env, back;
	char id[QUEUE_ID_LEN + 1], path[256];
	char *big = malloc(70000);
	uv_buf_t parts[4];
	uint64_t off = 0;
	size_t len, exp_len = 0;
	struct stat st;

	for (size_t i = 0; i < 70000; i++)
		big[i] = (char)('a' + i % 26);
	parts[0] = uv_buf_init("Received: from x\r\n", 18);
	parts[1] = uv_buf_init("", 0);
	parts[2] = uv_buf_init(big, 70000);
	parts[3] = uv_buf_init("\r\nbye\r\n", 7);

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	ck_assert_str_eq(queue_dir(q), root);
	queue_new_id(q, id);
	env_full(&env, id);
	ck_assert_int_eq(commit_one(q, &env, parts, 4), 0);

	/* A record in the log, readable at once; no file of its own. */
	ck_assert_int_eq(count_files(path_mail), 0);
	ck_assert_uint_eq(wal_live(queue_wal(q)), 1);
	char *msg;
	ck_assert_int_eq(queue_fs_read_message(queue_wal(q), root, id, &msg, &len), 0);
	ck_assert_uint_eq(len, 18 + 70000 + 7);
	ck_assert(memcmp(msg, "Received: from x\r\n", 18) == 0);
	ck_assert(memcmp(msg + 18, big, 70000) == 0);
	free(msg);

	/* After a restart it is the file of old, byte for byte. */
	reopen(&q);
	ck_assert_uint_eq(wal_live(queue_wal(q)), 0);
	json_t *j = queue_envelope_to_json(&env);
	char *js = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	char *expect = malloc(100000);
	exp_len += (size_t)sprintf(expect, "HIKYAKU-QUEUE 1\n%s\n", js);
	for (int i = 0; i < 4; i++) {
		memcpy(expect + exp_len, parts[i].base, parts[i].len);
		exp_len += parts[i].len;
	}
	snprintf(path, sizeof(path), "%s/%s", path_mail, id);
	char *got = slurp(path, &len);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(len, exp_len);
	ck_assert(memcmp(got, expect, len) == 0);
	ck_assert_ptr_null(memchr(js, '\n', strlen(js)));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(count_files(path_tmp), 0);

	/* And through queue_read_envelope(). */
	ck_assert_int_eq(queue_read_envelope(root, id, &back, &off), 0);
	env_assert_eq(&env, &back);
	ck_assert_uint_eq(off, strlen("HIKYAKU-QUEUE 1\n") + strlen(js) + 1);
	ck_assert(memcmp(got + off, "Received: from x\r\n", 18) == 0);
	queue_envelope_free(&back);

	free(got);
	free(expect);
	free(js);
	free(big);
	queue_close(q);
}
END_TEST

#define NCOMMITS 500
static int group_called;
static int group_ok;

static void group_cb(void *arg, int status)
{
	(void)arg;
	group_called++;
	if (status == 0)
		group_ok++;
}

START_TEST(test_group_commit)
{
	struct queue *q;
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1], first[QUEUE_ID_LEN + 1];
	static char data[1024];
	uv_buf_t part = uv_buf_init(data, sizeof(data));

	memset(data, 'x', sizeof(data));
	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	for (int i = 0; i < NCOMMITS; i++) {
		queue_new_id(q, id);
		if (i == 0)
			memcpy(first, id, sizeof(id));
		env_full(&env, id);
		ck_assert_int_eq(queue_commit(q, &env, &part, 1, group_cb, NULL), 0);
	}
	ck_assert_uint_eq(queue_pending(q), NCOMMITS);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

	ck_assert_int_eq(group_called, NCOMMITS);
	ck_assert_int_eq(group_ok, NCOMMITS);
	ck_assert_uint_eq(queue_pending(q), 0);
	/* Grouped: far fewer batches (directory fsyncs) than commits. */
	ck_assert_uint_lt(queue_batches(q), NCOMMITS / 10);
	ck_assert_uint_ge(queue_batches(q), 1);
	ck_assert_uint_eq(wal_live(queue_wal(q)), NCOMMITS);
	reopen(&q);
	ck_assert_int_eq(count_files(path_mail), NCOMMITS);
	ck_assert_int_eq(count_files(path_tmp), 0);

	struct queue_envelope back;
	uint64_t off;
	ck_assert_int_eq(queue_read_envelope(root, first, &back, &off), 0);
	ck_assert_str_eq(back.id, first);
	queue_envelope_free(&back);
	queue_close(q);
}
END_TEST

/* A callback may commit again (a DSN queued as a result, say). */
static struct queue *chain_q;
static int chain_left = 10;
static int chain_ok;
static char chain_data[] = "Subject: chain\r\n\r\nx\r\n";

static void chain_cb(void *arg, int status)
{
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1];
	uv_buf_t part = uv_buf_init(chain_data, sizeof(chain_data) - 1);

	(void)arg;
	if (status == 0)
		chain_ok++;
	if (--chain_left == 0)
		return;
	queue_new_id(chain_q, id);
	env_full(&env, id);
	ck_assert_int_eq(queue_commit(chain_q, &env, &part, 1, chain_cb, NULL), 0);
}

START_TEST(test_commit_from_callback)
{
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1];
	uv_buf_t part = uv_buf_init(chain_data, sizeof(chain_data) - 1);

	ck_assert_int_eq(queue_open(&loop, root, &chain_q), 0);
	queue_new_id(chain_q, id);
	env_full(&env, id);
	ck_assert_int_eq(queue_commit(chain_q, &env, &part, 1, chain_cb, NULL), 0);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(chain_left, 0);
	ck_assert_int_eq(chain_ok, 10);
	ck_assert_uint_eq(wal_live(queue_wal(chain_q)), 10);
	ck_assert_int_eq(count_files(path_mail), 0);
	/* A clean close leaves the spool as earlier releases had it. */
	queue_close(chain_q);
	char wal[160];
	snprintf(wal, sizeof(wal), "%s/wal", root);
	ck_assert_int_eq(count_files(path_mail), 10);
	ck_assert_int_eq(count_files(wal), 0);
}
END_TEST

/* The last callback may close the queue (shutdown): nothing touches it after. */
static int close_called;

static void close_cb(void *arg, int status)
{
	struct queue *q = arg;

	ck_assert_int_eq(status, 0);
	if (++close_called == 3) {
		ck_assert_uint_eq(queue_pending(q), 0);
		queue_close(q);
	}
}

START_TEST(test_close_from_callback)
{
	struct queue *q;
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1];
	uv_buf_t part = uv_buf_init(chain_data, sizeof(chain_data) - 1);

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	for (int i = 0; i < 3; i++) {
		queue_new_id(q, id);
		env_full(&env, id);
		ck_assert_int_eq(queue_commit(q, &env, &part, 1, close_cb, q), 0);
	}
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(close_called, 3);
}
END_TEST

START_TEST(test_ids)
{
	struct queue *q;
	char prev[QUEUE_ID_LEN + 1] = "", id[QUEUE_ID_LEN + 1];

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	for (int i = 0; i < 10000; i++) {
		memset(id, '#', sizeof(id));
		queue_new_id(q, id);
		ck_assert_uint_eq(strlen(id), QUEUE_ID_LEN);
		ck_assert(queue_id_valid(id));
		ck_assert_int_gt(strcmp(id, prev), 0);
		memcpy(prev, id, sizeof(id));
	}
	/* Microseconds of today, not of 1970 or of the year 3000. */
	uint64_t us = strtoull(prev, NULL, 16);
	uint64_t now = (uint64_t)time(NULL) * 1000000u;
	ck_assert_uint_gt(us + 60000000u, now);
	ck_assert_uint_lt(us, now + 60000000u);
	queue_close(q);
}
END_TEST

/* After a restart with the clock behind, ids still go above the queue. */
START_TEST(test_ids_seeded_from_queue)
{
	struct queue *q;
	char id[QUEUE_ID_LEN + 1], path[256];

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	queue_close(q);
	snprintf(path, sizeof(path), "%s/00FFFFFFFFFFFFFFF0", path_mail);
	write_file(path, "x", 1);
	snprintf(path, sizeof(path), "%s/00FFFFFFFFFFFFFFF8.state", path_mail);
	write_file(path, "x", 1);
	snprintf(path, sizeof(path), "%s/FFFFFFFFFFFFFFFFFF", path_mail); /* > 64 bits */
	write_file(path, "x", 1);
	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	queue_new_id(q, id);
	ck_assert_str_eq(id, "00FFFFFFFFFFFFFFF9");
	queue_close(q);
}
END_TEST

/* A deep copy: equal, and nothing shared with the original. */
START_TEST(test_envelope_copy)
{
	struct queue_envelope env, copy;
	env_full(&env, "0123456789ABCDEF01");
	ck_assert_int_eq(queue_envelope_copy(&copy, &env), 0);
	env_assert_eq(&env, &copy);
	ck_assert_ptr_ne(copy.from, env.from);
	ck_assert_ptr_ne(copy.rcpts, env.rcpts);
	ck_assert_ptr_ne(copy.rcpts[1].addr, env.rcpts[1].addr);
	queue_envelope_free(&copy);

	/* NULL fields stay NULL. */
	env.session = env.tls = env.auth_user = env.header_from = NULL;
	env.message_id = env.route = env.matched = NULL;
	ck_assert_int_eq(queue_envelope_copy(&copy, &env), 0);
	env_assert_eq(&env, &copy);
	queue_envelope_free(&copy);
}
END_TEST

START_TEST(test_id_valid)
{
	ck_assert(queue_id_valid("0123456789ABCDEF01"));
	ck_assert(!queue_id_valid(NULL));
	ck_assert(!queue_id_valid(""));
	ck_assert(!queue_id_valid("0123456789abcdef01"));
	ck_assert(!queue_id_valid("0123456789ABCDEF0"));
	ck_assert(!queue_id_valid("0123456789ABCDEF012"));
	ck_assert(!queue_id_valid("0123456789ABCDEFG1"));
	ck_assert(!queue_id_valid("../../etc/passwd00"));
}
END_TEST

START_TEST(test_json_roundtrip)
{
	struct queue_envelope env, back;
	json_t *j;
	char *s;

	env_full(&env, "0005F1E2D3C4B5A697");
	j = queue_envelope_to_json(&env);
	ck_assert_ptr_nonnull(j);
	/* Through text, as in the file. */
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	ck_assert_ptr_nonnull(strstr(s, "\"ユーザー@例え.jp\""));
	ck_assert_ptr_nonnull(strstr(s, "\"state\":\"suppressed\""));
	ck_assert(strncmp(s, "{\"id\":\"0005F1E2D3C4B5A697\",\"arrival_ms\":1795500844123,", 54) == 0);
	j = json_loads(s, 0, NULL);
	free(s);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(queue_envelope_from_json(j, &back), 0);
	json_decref(j);
	env_assert_eq(&env, &back);
	queue_envelope_free(&back);
	queue_envelope_free(&back); /* idempotent */
}
END_TEST

START_TEST(test_json_roundtrip_nulls)
{
	struct queue_envelope env, back;
	json_t *j;

	memset(&env, 0, sizeof(env));
	strcpy(env.id, "000000000000000001");
	env.from = "";  /* the null sender */
	j = queue_envelope_to_json(&env);
	ck_assert_ptr_nonnull(j);
	ck_assert(json_is_null(json_object_get(j, "session")));
	ck_assert(json_is_null(json_object_get(j, "matched")));
	ck_assert_str_eq(json_string_value(json_object_get(j, "from")), "");
	ck_assert_uint_eq(json_array_size(json_object_get(j, "rcpts")), 0);
	ck_assert_int_eq(queue_envelope_from_json(j, &back), 0);
	json_decref(j);
	env_assert_eq(&env, &back);
	ck_assert_ptr_null(back.rcpts);
	queue_envelope_free(&back);
}
END_TEST

/* Each case: replace (or, with NULL text, delete) one key of a valid envelope. */
static const struct {
	const char *key;
	const char *json;
} bad_fields[] = {
	{ "id", NULL }, { "id", "null" }, { "id", "1" }, { "id", "\"\"" },
	{ "id", "\"0123456789abcdef01\"" }, { "id", "\"0123456789ABCDEF0\"" },
	{ "id", "\"0123456789ABCDEF012\"" }, { "id", "\"../../etc/passwd\"" },
	{ "id", "\"../../etc/passwd00\"" }, { "id", "[\"0123456789ABCDEF01\"]" },
	{ "arrival_ms", NULL }, { "arrival_ms", "\"1\"" }, { "arrival_ms", "-1" },
	{ "arrival_ms", "1.5" }, { "arrival_ms", "null" }, { "arrival_ms", "true" },
	{ "size", NULL }, { "size", "-5" }, { "size", "{}" }, { "size", "1e3" },
	{ "smtputf8", NULL }, { "smtputf8", "0" }, { "smtputf8", "\"true\"" },
	{ "smtputf8", "null" }, { "body_8bit", NULL }, { "body_8bit", "1" },
	{ "session", NULL }, { "session", "1" }, { "session", "false" },
	{ "from", NULL }, { "from", "[]" }, { "from", "{}" },
	{ "client_ip", NULL }, { "client_ip", "4" }, { "helo", NULL }, { "helo", "true" },
	{ "tls", NULL }, { "tls", "1.3" }, { "auth_user", NULL }, { "auth_user", "[null]" },
	{ "header_from", NULL }, { "header_from", "0" }, { "message_id", NULL },
	{ "message_id", "{}" }, { "route", NULL }, { "route", "1" },
	{ "matched", NULL }, { "matched", "false" },
	{ "rcpts", NULL }, { "rcpts", "null" }, { "rcpts", "{}" }, { "rcpts", "\"a\"" },
	{ "rcpts", "[1]" }, { "rcpts", "[null]" }, { "rcpts", "[{}]" }, { "rcpts", "[[]]" },
	{ "rcpts", "[{\"addr\":\"a@b\"}]" }, { "rcpts", "[{\"state\":\"pending\"}]" },
	{ "rcpts", "[{\"addr\":1,\"state\":\"pending\"}]" },
	{ "rcpts", "[{\"addr\":null,\"state\":\"pending\"}]" },
	{ "rcpts", "[{\"addr\":\"a@b\",\"state\":1}]" },
	{ "rcpts", "[{\"addr\":\"a@b\",\"state\":null}]" },
	{ "rcpts", "[{\"addr\":\"a@b\",\"state\":\"PENDING\"}]" },
	{ "rcpts", "[{\"addr\":\"a@b\",\"state\":\"gone\"}]" },
	{ "rcpts", "[{\"addr\":\"a@b\",\"state\":\"\"}]" },
	{ "rcpts", "[{\"addr\":\"a@b\",\"state\":\"pending\"},{\"addr\":\"c@d\",\"state\":\"lost\"}]" },
	{ "rcpts", "[{\"addr\":\"a@b\",\"state\":\"pending\"},7]" },
};

START_TEST(test_json_malformed)
{
	struct queue_envelope env, out;
	json_t *good, *j;

	env_full(&env, "0005F1E2D3C4B5A697");
	good = queue_envelope_to_json(&env);
	ck_assert_ptr_nonnull(good);

	/* The base case parses, and so do unknown keys (a newer writer). */
	j = json_deep_copy(good);
	json_object_set_new(j, "future_field", json_integer(1));
	ck_assert_int_eq(queue_envelope_from_json(j, &out), 0);
	queue_envelope_free(&out);
	json_decref(j);

	for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++) {
		j = json_deep_copy(good);
		if (bad_fields[i].json) {
			json_t *v = json_loads(bad_fields[i].json, JSON_DECODE_ANY, NULL);
			ck_assert_msg(v != NULL, "case %zu does not parse", i);
			json_object_set_new(j, bad_fields[i].key, v);
		} else {
			json_object_del(j, bad_fields[i].key);
		}
		memset(&out, 0, sizeof(out));
		out.nrcpts = 4242;      /* untouched on error */
		ck_assert_msg(queue_envelope_from_json(j, &out) == -EINVAL,
		              "case %zu (%s = %s) accepted", i, bad_fields[i].key,
		              bad_fields[i].json ? bad_fields[i].json : "deleted");
		ck_assert_uint_eq(out.nrcpts, 4242);
		json_decref(j);
	}

	/* NUL inside a string: legal in jansson, never in a C string. */
	j = json_deep_copy(good);
	json_object_set_new(j, "helo", json_stringn("a\0b", 3));
	ck_assert_int_eq(queue_envelope_from_json(j, &out), -EINVAL);
	json_decref(j);
	j = json_deep_copy(good);
	json_object_set_new(j, "id", json_stringn("0123456789ABCDEF01\0", 19));
	ck_assert_int_eq(queue_envelope_from_json(j, &out), -EINVAL);
	json_decref(j);

	/* Not an object at all. */
	const char *tops[] = { "null", "[]", "\"x\"", "1", "true", "[{}]" };
	for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
		j = json_loads(tops[i], JSON_DECODE_ANY, NULL);
		ck_assert_int_eq(queue_envelope_from_json(j, &out), -EINVAL);
		json_decref(j);
	}
	ck_assert_int_eq(queue_envelope_from_json(NULL, &out), -EINVAL);
	json_decref(good);
}
END_TEST

START_TEST(test_to_json_rejects)
{
	struct queue_envelope env;
	struct queue_rcpt bad_rcpt[] = { { NULL, RCPT_PENDING, NULL } };
	struct queue_rcpt bad_state[] = { { "a@b", (enum queue_rcpt_state)9, NULL } };
	struct queue *q;
	struct cb_rec rec = { 0, 0 };

	env_full(&env, "0005F1E2D3C4B5A697");
	env.helo = "bad\xff" "utf8";
	ck_assert_ptr_null(queue_envelope_to_json(&env));

	env_full(&env, "0005F1E2D3C4B5A697");
	env.rcpts = bad_rcpt;
	env.nrcpts = 1;
	ck_assert_ptr_null(queue_envelope_to_json(&env));
	env.rcpts = bad_state;
	ck_assert_ptr_null(queue_envelope_to_json(&env));

	env_full(&env, "../../etc/passwd");
	ck_assert_ptr_null(queue_envelope_to_json(&env));

	/* queue_commit() refuses such envelopes up front, and calls nobody. */
	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	ck_assert_int_eq(queue_commit(q, &env, NULL, 0, commit_cb, &rec), -EINVAL);
	env_full(&env, "0005F1E2D3C4B5A697");
	env.from = "\xc0\xaf@x";
	ck_assert_int_eq(queue_commit(q, &env, NULL, 0, commit_cb, &rec), -EINVAL);
	ck_assert_uint_eq(queue_pending(q), 0);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(rec.called, 0);
	queue_close(q);
}
END_TEST

START_TEST(test_open_cleans_tmp)
{
	struct queue *q;
	char path[256];

	ck_assert_int_eq(mkdir(path_tmp, 0700), 0);
	ck_assert_int_eq(mkdir(path_mail, 0700), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/00000000000000000%d", path_tmp, i);
		write_file(path, "half", 4);
	}
	snprintf(path, sizeof(path), "%s/000000000000000009", path_mail);
	write_file(path, "kept", 4);
	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	ck_assert_int_eq(count_files(path_tmp), 0);
	ck_assert_int_eq(count_files(path_mail), 1);
	queue_close(q);
}
END_TEST

START_TEST(test_open_creates_and_fails)
{
	struct queue *q;
	char dir[256], file[256];
	struct stat st;

	/* mkdir -p, mode 0700. */
	snprintf(dir, sizeof(dir), "%s/a/b/queue", root);
	ck_assert_int_eq(queue_open(&loop, dir, &q), 0);
	queue_close(q);
	snprintf(dir, sizeof(dir), "%s/a/b/queue/mail", root);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0700);

	/* A file where a directory should be. */
	snprintf(file, sizeof(file), "%s/file", root);
	write_file(file, "x", 1);
	ck_assert_int_eq(queue_open(&loop, file, &q), -ENOTDIR);
	snprintf(dir, sizeof(dir), "%s/file/queue", root);
	ck_assert_int_eq(queue_open(&loop, dir, &q), -ENOTDIR);
}
END_TEST

/* Fails for root too: the temporary directory is gone. */
START_TEST(test_fail_no_tmp)
{
	struct queue *q;
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1];
	uv_buf_t part = uv_buf_init("x\r\n", 3);

	char wal[256];

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	ck_assert_int_eq(rmdir(path_tmp), 0);
	queue_new_id(q, id);
	env_full(&env, id);
	ck_assert_int_eq(commit_one_spilled(q, &env, "x\r\n"), -ENOENT);
	ck_assert_int_eq(count_files(path_mail), 0);

	/* The log's directory gone: its first segment cannot be made. */
	snprintf(wal, sizeof(wal), "%s/wal", root);
	ck_assert_int_eq(rmdir(wal), 0);
	queue_new_id(q, id);
	env_full(&env, id);
	ck_assert_int_eq(commit_one(q, &env, &part, 1), -ENOENT);
	ck_assert_uint_eq(wal_live(queue_wal(q)), 0);
	queue_close(q);
}
END_TEST

/* The write and sync succeed, the rename fails: the temporary goes. */
START_TEST(test_fail_rename)
{
	struct queue *q;
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1], old[256];

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	snprintf(old, sizeof(old), "%s/mail.old", root);
	ck_assert_int_eq(rename(path_mail, old), 0);
	write_file(path_mail, "not a directory", 15);
	queue_new_id(q, id);
	env_full(&env, id);
	ck_assert_int_eq(commit_one_spilled(q, &env, "x\r\n"), -ENOTDIR);
	ck_assert_int_eq(count_files(path_tmp), 0);
	ck_assert_int_eq(count_files(old), 0);
	queue_close(q);
}
END_TEST

/*
 * A write that fails part way, as on a full disk: RLIMIT_FSIZE makes the
 * first pwritev() short and the next one fail with EFBIG, for root too.
 * The segment is cut back to its last whole record, so the records
 * written after the failure are read at the next start.
 */
START_TEST(test_fail_short_write)
{
	struct queue *q;
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1];
	struct rlimit old, lim;
	char path[256];
	size_t n = 200000;
	char *big = malloc(n);
	uv_buf_t part;

	memset(big, 'y', n);
	part = uv_buf_init(big, (unsigned)n);
	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);

	/* Cut inside the envelope line, then inside the message. */
	const rlim_t cuts[] = { 100, 65536 };
	for (size_t i = 0; i < 2; i++) {
		lim = old;
		lim.rlim_cur = cuts[i];
		ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
		queue_new_id(q, id);
		env_full(&env, id);
		int status = commit_one(q, &env, &part, 1);
		ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);

		ck_assert_int_eq(status, -EFBIG);
		ck_assert_uint_eq(wal_live(queue_wal(q)), 0);
	}
	signal(SIGXFSZ, SIG_DFL);

	/* Short but within the limit: the loop completes the write. */
	queue_new_id(q, id);
	env_full(&env, id);
	part.len = 1000;
	ck_assert_int_eq(commit_one(q, &env, &part, 1), 0);
	ck_assert_uint_eq(wal_live(queue_wal(q)), 1);
	reopen(&q);
	ck_assert_int_eq(count_files(path_mail), 1);
	snprintf(path, sizeof(path), "%s/%s", path_mail, id);
	size_t flen;
	char *f = slurp(path, &flen);
	ck_assert_ptr_nonnull(f);
	ck_assert(flen > 1000 && f[flen - 1] == 'y');
	free(f);
	ck_assert_int_eq(count_files(path_tmp), 0);
	free(big);
	queue_close(q);
}
END_TEST

/* A second mail under a queued id fails; the first is not replaced. */
START_TEST(test_duplicate_id)
{
	struct queue *q;
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1], path[256];
	uv_buf_t first = uv_buf_init("first\r\n", 7), second = uv_buf_init("second\r\n", 8);
	size_t len;
	char *got;

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	queue_new_id(q, id);
	env_full(&env, id);
	ck_assert_int_eq(commit_one(q, &env, &first, 1), 0);
	ck_assert_int_eq(commit_one(q, &env, &second, 1), -EEXIST);
	ck_assert_int_eq(queue_fs_read_message(queue_wal(q), root, id, &got, &len), 0);
	ck_assert_uint_eq(len, 7);
	ck_assert(memcmp(got, "first\r\n", 7) == 0);
	free(got);
	ck_assert_uint_eq(wal_live(queue_wal(q)), 1);

	/* A file of its own under an id already queued fails too. */
	queue_new_id(q, id);
	env_full(&env, id);
	ck_assert_int_eq(commit_one_spilled(q, &env, "first\r\n"), 0);
	ck_assert_int_eq(commit_one_spilled(q, &env, "second\r\n"), -EEXIST);
	snprintf(path, sizeof(path), "%s/%s", path_mail, id);
	got = slurp(path, &len);
	ck_assert_ptr_nonnull(got);
	ck_assert(len > 7 && memcmp(got + len - 7, "first\r\n", 7) == 0);
	free(got);
	ck_assert_int_eq(count_files(path_tmp), 0);

	/* A temporary that is not ours is left alone. */
	queue_new_id(q, id);
	env_full(&env, id);
	snprintf(path, sizeof(path), "%s/%s", path_tmp, id);
	write_file(path, "other", 5);
	ck_assert_int_eq(commit_one_spilled(q, &env, "first\r\n"), -EEXIST);
	ck_assert_int_eq(count_files(path_tmp), 1);
	ck_assert_int_eq(count_files(path_mail), 1);
	queue_close(q);
}
END_TEST

/* One bad mail in a batch fails alone. */
static struct cb_rec mixed[3];

START_TEST(test_batch_mixed)
{
	struct queue *q;
	struct queue_envelope env;
	char ids[3][QUEUE_ID_LEN + 1], path[256];
	int fd[3];

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	for (int i = 0; i < 3; i++)
		queue_new_id(q, ids[i]);
	snprintf(path, sizeof(path), "%s/%s", path_tmp, ids[1]);
	write_file(path, "in the way", 10);
	for (int i = 0; i < 3; i++) {
		env_full(&env, ids[i]);
		fd[i] = spill_of("x\r\n", 3);
		ck_assert_int_eq(queue_commit_spilled(q, &env, NULL, 0, 0, fd[i], 3, NULL, NULL,
		                                      commit_cb, &mixed[i]), 0);
	}
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	ck_assert_int_eq(mixed[0].called + mixed[1].called + mixed[2].called, 3);
	ck_assert_int_eq(mixed[0].status, 0);
	ck_assert_int_eq(mixed[1].status, -EEXIST);
	ck_assert_int_eq(mixed[2].status, 0);
	ck_assert_int_eq(count_files(path_mail), 2);
	queue_close(q);
}
END_TEST

/* Mails for the log and spilled ones committed together: each goes its
 * way (the log's in one batch, the spilled ones in another), all done. */
static struct cb_rec both[6];

START_TEST(test_batch_log_and_files)
{
	struct queue *q;
	struct queue_envelope env;
	char id[QUEUE_ID_LEN + 1];
	uv_buf_t part = uv_buf_init("x\r\n", 3);
	int fd[3];

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	for (int i = 0; i < 6; i++) {
		queue_new_id(q, id);
		env_full(&env, id);
		if (i % 2) {
			fd[i / 2] = spill_of("spilled\r\n", 9);
			ck_assert_int_eq(queue_commit_spilled(q, &env, NULL, 0, 0, fd[i / 2], 9, NULL,
			                                      NULL, commit_cb, &both[i]), 0);
		} else {
			ck_assert_int_eq(queue_commit(q, &env, &part, 1, commit_cb, &both[i]), 0);
		}
	}
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (int i = 0; i < 6; i++) {
		ck_assert_int_eq(both[i].called, 1);
		ck_assert_int_eq(both[i].status, 0);
	}
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	ck_assert_uint_eq(wal_live(queue_wal(q)), 3);
	ck_assert_int_eq(count_files(path_mail), 3);
	ck_assert_uint_ge(queue_batches(q), 2); /* a log batch and a file batch at least */
	queue_close(q);
	ck_assert_int_eq(count_files(path_mail), 6);
}
END_TEST

/* queue_keep_messages(): the commit callback may take a copy of the
 * message bytes, equal to what a read of the spool gives, while the
 * copies out stay within the budget; spilled mails get none. */
static struct queue *keep_q;
struct keep_rec {
	int status;
	bool take;
	char *msg;
	size_t len;
};

static void keep_cb(void *arg, int status)
{
	struct keep_rec *k = arg;
	k->status = status;
	if (k->take)
		k->msg = queue_commit_message(keep_q, &k->len);
}

START_TEST(test_commit_keeps_copy)
{
	struct queue_envelope env;
	char ids[4][QUEUE_ID_LEN + 1];
	char body[4][41];
	struct keep_rec k[4] = { { 1, true, NULL, 0 }, { 1, true, NULL, 0 }, { 1, true, NULL, 0 },
	                         { 1, true, NULL, 0 } };
	size_t len;

	ck_assert_int_eq(queue_open(&loop, root, &keep_q), 0);
	queue_keep_messages(keep_q, 100);
	ck_assert_ptr_null(queue_commit_message(keep_q, &len)); /* not in a callback */
	for (int i = 0; i < 3; i++) {
		uv_buf_t parts[2];
		snprintf(body[i], sizeof(body[i]), "Subject: %d\r\n\r\nbody of mail number %d...\r\n", i, i);
		ck_assert_uint_eq(strlen(body[i]), 40);
		parts[0] = uv_buf_init(body[i], 20);
		parts[1] = uv_buf_init(body[i] + 20, 20);
		queue_new_id(keep_q, ids[i]);
		env_full(&env, ids[i]);
		ck_assert_int_eq(queue_commit(keep_q, &env, parts, 2, keep_cb, &k[i]), 0);
	}
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(k[i].status, 0);
	/* The first two fit in 100 bytes, the third does not. */
	for (int i = 0; i < 2; i++) {
		char *back;
		ck_assert_ptr_nonnull(k[i].msg);
		ck_assert_uint_eq(k[i].len, 40);
		ck_assert_int_eq(k[i].msg[40], '\0');
		ck_assert_int_eq(queue_fs_read_message(queue_wal(keep_q), root, ids[i], &back, &len), 0);
		ck_assert_uint_eq(len, k[i].len);
		ck_assert(memcmp(back, k[i].msg, len) == 0);
		ck_assert(memcmp(back, body[i], 40) == 0);
		free(back);
	}
	ck_assert_ptr_null(k[2].msg);
	ck_assert_uint_eq(queue_messages_kept(keep_q), 80);

	/* A spilled mail: none. With both copies still out, nothing else fits. */
	struct keep_rec sp = { 1, true, NULL, 0 };
	int fd = spill_of("spilled\r\n", 9);
	queue_new_id(keep_q, ids[3]);
	env_full(&env, ids[3]);
	ck_assert_int_eq(queue_commit_spilled(keep_q, &env, NULL, 0, 0, fd, 9, NULL, NULL, keep_cb, &sp),
	                 0);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	close(fd);
	ck_assert_int_eq(sp.status, 0);
	ck_assert_ptr_null(sp.msg);

	uv_buf_t one = uv_buf_init(body[0], 40);
	struct keep_rec full = { 1, true, NULL, 0 };
	queue_new_id(keep_q, ids[3]);
	env_full(&env, ids[3]);
	ck_assert_int_eq(queue_commit(keep_q, &env, &one, 1, keep_cb, &full), 0);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_ptr_null(full.msg);

	/* Released, the budget is back; a copy not taken costs nothing. */
	for (int i = 0; i < 2; i++) {
		free(k[i].msg);
		queue_message_release(keep_q, k[i].len);
	}
	ck_assert_uint_eq(queue_messages_kept(keep_q), 0);
	struct keep_rec left = { 1, false, NULL, 0 }, again = { 1, true, NULL, 0 };
	queue_new_id(keep_q, ids[3]);
	env_full(&env, ids[3]);
	ck_assert_int_eq(queue_commit(keep_q, &env, &one, 1, keep_cb, &left), 0);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (int n = 0; n < 2; n++) {
		queue_new_id(keep_q, ids[3]);
		env_full(&env, ids[3]);
		again.msg = NULL;
		ck_assert_int_eq(queue_commit(keep_q, &env, &one, 1, keep_cb, &again), 0);
		ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
		ck_assert_ptr_nonnull(again.msg);
		ck_assert(memcmp(again.msg, body[0], 40) == 0);
		free(again.msg);
		queue_message_release(keep_q, again.len);
	}
	ck_assert_uint_eq(queue_messages_kept(keep_q), 0);
	queue_close(keep_q);
}
END_TEST

START_TEST(test_read_envelope_rejects)
{
	struct queue *q;
	struct queue_envelope env, out;
	char id[QUEUE_ID_LEN + 1], path[256];
	uint64_t off;
	const char *bad_ids[] = {
		"../../etc/passwd", "../../etc/passwd00", "", "0123456789abcdef01",
		"0123456789ABCDEF0", "0123456789ABCDEF012", "/etc/passwd", "0123456789ABCDEF0/",
	};

	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
		ck_assert_int_eq(queue_read_envelope(root, bad_ids[i], &out, &off), -EINVAL);
	ck_assert_int_eq(queue_read_envelope(root, NULL, &out, &off), -EINVAL);
	ck_assert_int_eq(queue_read_envelope(root, "0123456789ABCDEF01", &out, &off), -ENOENT);

	/* Damaged files, each under a valid id. */
	json_t *j;
	char *js;
	env_full(&env, "0123456789ABCDEF01");
	j = queue_envelope_to_json(&env);
	js = json_dumps(j, JSON_COMPACT);
	json_decref(j);

	size_t big_len = 1024 * 1024 + 100;
	char *big = malloc(big_len + 64);
	memcpy(big, "HIKYAKU-QUEUE 1\n", 16);
	memset(big + 16, ' ', big_len - 16);
	big[big_len - 1] = '\n';

	char buf[4096];
	struct {
		const char *data;
		size_t len;
	} cases[8];
	int n = 0;
	cases[n].data = "";
	cases[n++].len = 0;
	cases[n].data = "HIKYAKU-QUEUE 2\n{}\n";
	cases[n++].len = 19;
	cases[n].data = "HIKYAKU-QUEUE 1";           /* no newline */
	cases[n++].len = 15;
	cases[n].data = "HIKYAKU-QUEUE 1\n{\"id\":";  /* truncated line */
	cases[n++].len = 22;
	cases[n].data = "HIKYAKU-QUEUE 1\n[]\ndata";
	cases[n++].len = 23;
	cases[n].data = big;                          /* line over 1 MiB */
	cases[n++].len = big_len;
	snprintf(buf, sizeof(buf), "HIKYAKU-QUEUE 1\n%s x\n", js);   /* trailing garbage */
	cases[n].data = strdup(buf);
	cases[n++].len = strlen(buf);
	snprintf(buf, sizeof(buf), "HIKYAKU-QUEUE 1\n%s\n", js);     /* another id */
	cases[n].data = strdup(buf);
	cases[n++].len = strlen(buf);

	for (int i = 0; i < n; i++) {
		queue_new_id(q, id);
		snprintf(path, sizeof(path), "%s/%s", path_mail, id);
		write_file(path, cases[i].data, cases[i].len);
		memset(&out, 0, sizeof(out));
		ck_assert_msg(queue_read_envelope(root, id, &out, &off) == -EINVAL,
		              "case %d accepted", i);
		ck_assert_ptr_null(out.from);
	}

	/* The same file under its own id is fine; data may be empty. */
	snprintf(path, sizeof(path), "%s/0123456789ABCDEF01", path_mail);
	write_file(path, buf, strlen(buf));
	ck_assert_int_eq(queue_read_envelope(root, "0123456789ABCDEF01", &out, &off), 0);
	ck_assert_uint_eq(off, strlen(buf));
	queue_envelope_free(&out);

	free((char *)cases[6].data);
	free((char *)cases[7].data);
	free(big);
	free(js);
	queue_close(q);
}
END_TEST

static Suite *queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("queue");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_commit_readback);
	tcase_add_test(tc, test_commit_keeps_copy);
	tcase_add_test(tc, test_group_commit);
	tcase_add_test(tc, test_commit_from_callback);
	tcase_add_test(tc, test_close_from_callback);
	tcase_add_test(tc, test_ids);
	tcase_add_test(tc, test_ids_seeded_from_queue);
	tcase_add_test(tc, test_id_valid);
	tcase_add_test(tc, test_envelope_copy);
	tcase_add_test(tc, test_json_roundtrip);
	tcase_add_test(tc, test_json_roundtrip_nulls);
	tcase_add_test(tc, test_json_malformed);
	tcase_add_test(tc, test_to_json_rejects);
	tcase_add_test(tc, test_open_cleans_tmp);
	tcase_add_test(tc, test_open_creates_and_fails);
	tcase_add_test(tc, test_fail_no_tmp);
	tcase_add_test(tc, test_fail_rename);
	tcase_add_test(tc, test_fail_short_write);
	tcase_add_test(tc, test_duplicate_id);
	tcase_add_test(tc, test_batch_mixed);
	tcase_add_test(tc, test_batch_log_and_files);
	tcase_add_test(tc, test_read_envelope_rejects);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(queue_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
