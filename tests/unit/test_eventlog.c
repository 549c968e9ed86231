/*
 * test_eventlog - the JSON event log (util/eventlog.h): line format, key
 * order, rotation, concurrent writers, and hostile bytes in fields.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/eventlog.h"

static char root[64];
static char logpath[256];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	strcpy(root, "/tmp/hk-evlog-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	/* Two levels that do not exist yet: evlog_open() makes them. */
	snprintf(logpath, sizeof(logpath), "%s/var/log/hikyaku.log", root);
}

static void teardown(void)
{
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The lines of a file, each without its '\n'; the last must end in '\n'. */
static char **read_lines(const char *path, size_t *count)
{
	FILE *f = fopen(path, "r");
	char **lines = NULL;
	char *line = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;

	ck_assert_ptr_nonnull(f);
	while ((len = getline(&line, &cap, f)) > 0) {
		ck_assert_msg(line[len - 1] == '\n', "unterminated line");
		line[len - 1] = '\0';
		lines = realloc(lines, (n + 1) * sizeof(*lines));
		lines[n++] = strdup(line);
	}
	free(line);
	fclose(f);
	*count = n;
	return lines;
}

static void free_lines(char **lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
}

static bool ts_ok(const char *s)
{
	regex_t re;
	bool ok;

	ck_assert_int_eq(regcomp(&re, "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T"
	                              "([01][0-9]|2[0-3]):[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z$",
	                         REG_EXTENDED | REG_NOSUB), 0);
	ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

START_TEST(test_line_format)
{
	struct evlog *log;
	json_t *f, *j;
	size_t n;
	char **lines;
	const char *key;
	json_t *val;
	const char *want[] = { "ts", "event", "queue_id", "session", "client", "matched",
	                       "rcpts", "tls", "from" };
	size_t k = 0;

	umask(022);
	ck_assert_int_eq(evlog_open(logpath, &log), 0);
	f = json_object();
	/* Deliberately not in alphabetical order. */
	json_object_set_new(f, "queue_id", json_string("0005F1E2D3C4B5A697"));
	json_object_set_new(f, "session", json_string("S1"));
	json_object_set_new(f, "client", json_string("192.0.2.1"));
	json_object_set_new(f, "matched", json_null());
	json_object_set_new(f, "rcpts", json_integer(2));
	json_object_set_new(f, "tls", json_true());
	json_object_set_new(f, "from", json_string("店舗@例え.jp"));
	json_object_set_new(f, "ts", json_string("forged"));    /* ours, dropped */
	evlog_emit(log, "received", f);
	evlog_emit(log, "deleted", NULL);
	evlog_emit(NULL, "ignored", json_object()); /* no log: only frees */
	evlog_close(log);

	lines = read_lines(logpath, &n);
	ck_assert_uint_eq(n, 2);
	/* UTF-8 as is, not \u escapes; no spaces. */
	ck_assert_ptr_nonnull(strstr(lines[0], "\"from\":\"店舗@例え.jp\""));
	ck_assert_ptr_nonnull(strstr(lines[0], ",\"event\":\"received\",\"queue_id\":"));
	ck_assert(strncmp(lines[0], "{\"ts\":\"", 7) == 0);
	ck_assert_ptr_null(strstr(lines[0], "forged"));

	j = json_loads(lines[0], JSON_REJECT_DUPLICATES, NULL);
	ck_assert_ptr_nonnull(j);
	json_object_foreach(j, key, val) {
		ck_assert_uint_lt(k, sizeof(want) / sizeof(want[0]));
		ck_assert_str_eq(key, want[k]);
		k++;
	}
	ck_assert_uint_eq(k, sizeof(want) / sizeof(want[0]));
	ck_assert(ts_ok(json_string_value(json_object_get(j, "ts"))));
	ck_assert(json_is_null(json_object_get(j, "matched")));
	json_decref(j);

	j = json_loads(lines[1], 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(json_object_size(j), 2);
	ck_assert_str_eq(json_string_value(json_object_get(j, "event")), "deleted");
	json_decref(j);
	free_lines(lines, n);

	struct stat st;
	ck_assert_int_eq(stat(logpath, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0640);
}
END_TEST

START_TEST(test_ts)
{
	char ts[EVLOG_TS_SIZE], small[8];
	struct tm tm;
	time_t now = time(NULL), t;

	evlog_now_rfc3339(ts, sizeof(ts));
	ck_assert_uint_eq(strlen(ts), 24);
	ck_assert(ts_ok(ts));
	memset(&tm, 0, sizeof(tm));
	ck_assert_ptr_nonnull(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
	t = timegm(&tm);
	ck_assert_int_le(labs((long)(t - now)), 5);
	/* A short buffer is truncated, never overrun. */
	evlog_now_rfc3339(small, sizeof(small));
	ck_assert_uint_eq(strlen(small), 7);
	ck_assert(!ts_ok("2026-11-26T06:14:04Z"));
	ck_assert(!ts_ok("2026-11-26 06:14:04.123Z"));
	ck_assert(ts_ok("2026-11-26T06:14:04.123Z"));
}
END_TEST

START_TEST(test_reopen)
{
	struct evlog *log;
	char rotated[300];
	char **lines;
	size_t n;

	snprintf(rotated, sizeof(rotated), "%s.1", logpath);
	ck_assert_int_eq(evlog_open(logpath, &log), 0);
	evlog_emit(log, "one", NULL);
	ck_assert_int_eq(rename(logpath, rotated), 0);
	evlog_emit(log, "two", NULL);       /* still the old file */
	ck_assert_int_eq(evlog_reopen(log), 0);
	evlog_emit(log, "three", NULL);
	evlog_close(log);

	lines = read_lines(rotated, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_ptr_nonnull(strstr(lines[0], "\"event\":\"one\""));
	ck_assert_ptr_nonnull(strstr(lines[1], "\"event\":\"two\""));
	free_lines(lines, n);
	lines = read_lines(logpath, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_ptr_nonnull(strstr(lines[0], "\"event\":\"three\""));
	free_lines(lines, n);
}
END_TEST

#define NLINES 1000

static void writer(const char *who)
{
	struct evlog *log;
	char pad[600];

	/* Long lines make a torn or interleaved write likely to show. */
	memset(pad, who[0], sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	if (evlog_open(logpath, &log))
		_exit(2);
	for (int i = 0; i < NLINES; i++) {
		json_t *f = json_object();

		json_object_set_new(f, "who", json_string(who));
		json_object_set_new(f, "seq", json_integer(i));
		json_object_set_new(f, "pad", json_string(pad));
		evlog_emit(log, "test", f);
	}
	evlog_close(log);
}

START_TEST(test_two_processes)
{
	pid_t pid[2];
	const char *who[2] = { "a", "b" };
	int next[2] = { 0, 0 };
	char **lines;
	size_t n;

	for (int p = 0; p < 2; p++) {
		pid[p] = fork();
		ck_assert_int_ge(pid[p], 0);
		if (pid[p] == 0) {
			writer(who[p]);
			_exit(0);
		}
	}
	for (int p = 0; p < 2; p++) {
		int st;

		ck_assert_int_eq(waitpid(pid[p], &st, 0), pid[p]);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}

	lines = read_lines(logpath, &n);
	ck_assert_uint_eq(n, 2 * NLINES);
	for (size_t i = 0; i < n; i++) {
		json_t *j = json_loads(lines[i], 0, NULL);
		const char *w;
		int p;

		ck_assert_msg(j != NULL, "line %zu is torn", i);
		w = json_string_value(json_object_get(j, "who"));
		ck_assert_ptr_nonnull(w);
		p = w[0] == 'a' ? 0 : 1;
		ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), next[p]);
		ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "pad"))), 599);
		next[p]++;
		json_decref(j);
	}
	ck_assert_int_eq(next[0], NLINES);
	ck_assert_int_eq(next[1], NLINES);
	free_lines(lines, n);
}
END_TEST

static void str_is(const char *in, size_t len, const char *want)
{
	json_t *j = evlog_str(in, len);

	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(json_string_length(j), strlen(want));
	ck_assert(memcmp(json_string_value(j), want, strlen(want)) == 0);
	json_decref(j);
}

#define FFFD "\xEF\xBF\xBD"

START_TEST(test_evlog_str)
{
	json_t *j;

	str_is("plain", 5, "plain");
	str_is("日本語 ✉ 𝄞", strlen("日本語 ✉ 𝄞"), "日本語 ✉ 𝄞");
	str_is("", 0, "");
	str_is("a\xff" "b", 3, "a" FFFD "b");
	str_is("\xe6\x97", 2, FFFD);                        /* truncated at the end */
	str_is("\xe6\x97x", 3, FFFD "x");                   /* truncated in the middle */
	str_is("\xc0\xaf", 2, FFFD FFFD);                   /* overlong '/' */
	str_is("\xe0\x80\xaf", 3, FFFD FFFD FFFD);          /* overlong, 3 bytes */
	str_is("\xed\xa0\x80", 3, FFFD FFFD FFFD);          /* surrogate U+D800 */
	str_is("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD); /* above U+10FFFF */
	str_is("\xf0\x9f\x98", 3, FFFD);                    /* truncated 4-byte */
	str_is("\x80\x80", 2, FFFD FFFD);                   /* lone continuations */
	str_is("\xf5\xfe", 2, FFFD FFFD);

	/* Lengths travel with the bytes: a NUL is kept, not an end. */
	j = evlog_str("ok\0nul", 6);
	ck_assert_uint_eq(json_string_length(j), 6);
	ck_assert(memcmp(json_string_value(j), "ok\0nul", 6) == 0);
	json_decref(j);

	j = evlog_str(NULL, 0);
	ck_assert(json_is_null(j));
	json_decref(j);

	/* Every byte value, alone and in pairs: never NULL, always valid. */
	for (int a = 0; a < 256; a++) {
		for (int b = 0; b < 256; b += 7) {
			char in[3] = { (char)a, (char)b, (char)0xe2 };

			j = evlog_str(in, 3);
			ck_assert_ptr_nonnull(j);
			char *s = json_dumps(j, JSON_ENCODE_ANY);
			ck_assert_ptr_nonnull(s);
			free(s);
			json_decref(j);
		}
	}
}
END_TEST

/* A field built with json_stringn_nocheck() and bad bytes still logs. */
START_TEST(test_invalid_utf8_field)
{
	struct evlog *log;
	json_t *f, *j;
	char **lines;
	size_t n;

	ck_assert_int_eq(evlog_open(logpath, &log), 0);
	f = json_object();
	json_object_set_new(f, "to", json_stringn_nocheck("bad\xff@x", 6));
	json_object_set_new(f, "list", json_pack("[s, o]", "ok",
	                                         json_stringn_nocheck("\xc0", 1)));
	json_object_set_new(f, "from", evlog_str("a\xfe@b", 4));
	evlog_emit(log, "rejected", f);
	evlog_close(log);

	lines = read_lines(logpath, &n);
	ck_assert_uint_eq(n, 1);
	j = json_loads(lines[0], 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(json_string_value(json_object_get(j, "to")), "bad" FFFD "@x");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "list"), 1)), FFFD);
	ck_assert_str_eq(json_string_value(json_object_get(j, "from")), "a" FFFD "@b");
	json_decref(j);
	free_lines(lines, n);
}
END_TEST

/* A failing log says so on stderr once, not once per event. */
START_TEST(test_write_error_reported_once)
{
	struct evlog *log;
	char errpath[300];
	int saved, fd;
	char **lines;
	size_t n;

	if (access("/dev/full", W_OK))
		return;
	snprintf(errpath, sizeof(errpath), "%s/stderr", root);
	fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	saved = dup(2);
	dup2(fd, 2);
	close(fd);

	ck_assert_int_eq(evlog_open("/dev/full", &log), 0);
	for (int i = 0; i < 5; i++)
		evlog_emit(log, "deferred", json_pack("{s:i}", "attempt", i));
	evlog_close(log);

	dup2(saved, 2);
	close(saved);
	lines = read_lines(errpath, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_ptr_nonnull(strstr(lines[0], "/dev/full"));
	free_lines(lines, n);
}
END_TEST

/* SPEC §7 "received": every field present, null where hikyaku queued the
 * mail itself, the optional ones only when set. */
START_TEST(test_received_fields)
{
	static const char *const keys[] = { "queue_id", "session", "client", "helo", "from",
		"header_from", "message_id", "rcpts", "size", "tls", "route", "matched", "dkim" };
	json_t *f = evlog_received(&(struct evlog_received){
		.queue_id = "0006612824C4D754AB", .from = "", .header_from = "MAILER-DAEMON@x.example",
		.rcpts = 1, .size = 1234, .route = "direct" });
	ck_assert_ptr_nonnull(f);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_msg(json_object_get(f, keys[i]), "no %s", keys[i]);
	ck_assert_uint_eq(json_object_size(f), sizeof(keys) / sizeof(keys[0]));
	ck_assert(json_is_null(json_object_get(f, "session")));
	ck_assert(json_is_null(json_object_get(f, "dkim")));
	ck_assert_str_eq(json_string_value(json_object_get(f, "from")), "");
	ck_assert_int_eq(json_integer_value(json_object_get(f, "size")), 1234);
	ck_assert(json_is_false(json_object_get(f, "tls")));
	json_decref(f);

	const char from[] = "shop@example.jp\xff";
	f = evlog_received(&(struct evlog_received){
		.queue_id = "0006612824C4D754AB", .session = "S1", .client = "127.0.0.1",
		.helo = "client.example", .from = from, .from_len = sizeof(from) - 1, .rcpts = 3,
		.tls = true, .route = "service", .matched = "example.jp", .dkim = "example.jp s1",
		.dkim_skipped = "", .warning = "a warning" });
	ck_assert_str_eq(json_string_value(json_object_get(f, "from")), "shop@example.jp\xef\xbf\xbd");
	ck_assert_str_eq(json_string_value(json_object_get(f, "dkim")), "example.jp s1");
	ck_assert_ptr_null(json_object_get(f, "dkim_skipped"));
	ck_assert_str_eq(json_string_value(json_object_get(f, "warning")), "a warning");
	ck_assert(json_is_true(json_object_get(f, "tls")));
	json_decref(f);
}
END_TEST

START_TEST(test_open_errors)
{
	struct evlog *log;
	char path[300];

	snprintf(path, sizeof(path), "%s/file", root);
	ck_assert_int_eq(evlog_open(path, &log), 0);
	evlog_close(log);
	/* A file where the directory should be. */
	snprintf(path, sizeof(path), "%s/file/sub/x.log", root);
	ck_assert_int_eq(evlog_open(path, &log), -ENOTDIR);
	ck_assert_int_eq(evlog_open("", &log), -EINVAL);

	/* A reopen that fails keeps the old file. */
	snprintf(path, sizeof(path), "%s/d/x.log", root);
	ck_assert_int_eq(evlog_open(path, &log), 0);
	snprintf(path, sizeof(path), "%s/d", root);
	char moved[300];
	snprintf(moved, sizeof(moved), "%s/e", root);
	ck_assert_int_eq(rename(path, moved), 0);
	FILE *blocker = fopen(path, "w");        /* d is now a file */
	ck_assert_ptr_nonnull(blocker);
	fclose(blocker);
	ck_assert_int_eq(evlog_reopen(log), -ENOTDIR);
	evlog_emit(log, "still", NULL);
	evlog_close(log);
	snprintf(path, sizeof(path), "%s/e/x.log", root);
	size_t n;
	char **lines = read_lines(path, &n);
	ck_assert_uint_eq(n, 1);
	free_lines(lines, n);
}
END_TEST

static Suite *eventlog_suite(void)
{
	Suite *s = suite_create("eventlog");
	TCase *tc = tcase_create("eventlog");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_line_format);
	tcase_add_test(tc, test_ts);
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_two_processes);
	tcase_add_test(tc, test_evlog_str);
	tcase_add_test(tc, test_invalid_utf8_field);
	tcase_add_test(tc, test_write_error_reported_once);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_received_fields);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(eventlog_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
