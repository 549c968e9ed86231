/*
 * test_metrics - the metrics registry and its Prometheus rendering
 * (util/metrics.h), fed through the relay log's observer
 * (util/eventlog.h) so that the counters and the log's lines agree.
 */
#include <check.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "util/eventlog.h"
#include "util/metrics.h"

static char root[64];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	strcpy(root, "/tmp/hk-metrics-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
}

static void teardown(void)
{
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const struct metrics_gauges no_gauges = {
	.suppression_entries = -1,
	.version = "0.1.0",
};

static char *render(struct metrics *m, const struct metrics_gauges *g)
{
	size_t len = 0;
	char *t = metrics_render(m, g ? g : &no_gauges, &len);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(strlen(t), len);
	return t;
}

/* The value of the sample line "NAME{LABELS} VALUE" (name with labels as
 * written); -1 when there is no such line. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

static void emit(struct evlog *log, const char *event, const char *json)
{
	json_error_t err;
	json_t *f = json ? json_loads(json, 0, &err) : NULL;
	ck_assert_msg(!json || f, "bad test JSON %s: %s", json, err.text);
	evlog_emit(log, event, f);
}

START_TEST(test_empty)
{
	struct metrics *m;
	ck_assert_int_eq(metrics_new(&m), 0);
	char *t = render(m, NULL);
	/* Every route and outcome from the start, at 0 (rate() needs them). */
	ck_assert_double_eq(sample(t, "hikyaku_messages_received_total"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"service\",outcome=\"suppressed\"}"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"direct\",outcome=\"delivered\"}"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_bucket{route=\"direct\",le=\"+Inf\"}"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_count{route=\"service\"}"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_queue_messages{route=\"service\"}"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_service_paused"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_build_info{version=\"0.1.0\"}"), 1);
	/* Not known yet: not rendered rather than a false 0. */
	ck_assert_ptr_null(strstr(t, "hikyaku_suppression_entries"));
	ck_assert_ptr_null(strstr(t, "hikyaku_destination_paused{"));
	ck_assert_ptr_nonnull(strstr(t, "# TYPE hikyaku_destination_paused gauge\n"));
	ck_assert_ptr_null(strstr(t, "hikyaku_rejected_total{"));
	ck_assert(t[strlen(t) - 1] == '\n');
	free(t);
	metrics_free(m);
}
END_TEST

/* Every §7 event through the log's observer: the counters equal the
 * number of lines of each kind that the log got. */
START_TEST(test_counts_agree_with_log)
{
	char path[128];
	struct evlog *log;
	struct metrics *m;

	snprintf(path, sizeof(path), "%s/log.jsonl", root);
	ck_assert_int_eq(evlog_open(path, &log), 0);
	ck_assert_int_eq(metrics_new(&m), 0);
	evlog_set_observer(log, metrics_observe, m);

	emit(log, "received", "{\"queue_id\":\"A\",\"route\":\"service\",\"rcpts\":3}");
	emit(log, "received", "{\"queue_id\":\"B\",\"route\":\"direct\",\"rcpts\":1}");
	emit(log, "received", "{\"queue_id\":\"C\",\"session\":null,\"route\":\"direct\"}");
	emit(log, "delivered", "{\"queue_id\":\"A\",\"route\":\"service\",\"status\":\"2.0.0\",\"delay_ms\":40}");
	emit(log, "delivered", "{\"queue_id\":\"A\",\"route\":\"service\",\"status\":\"2.0.0\",\"delay_ms\":1500}");
	emit(log, "delivered", "{\"queue_id\":\"B\",\"route\":\"direct\",\"status\":\"2.0.0\",\"delay_ms\":7200000}");
	emit(log, "deferred", "{\"queue_id\":\"A\",\"route\":\"service\",\"status\":\"4.7.0\"}");
	emit(log, "deferred", "{\"queue_id\":\"A\",\"route\":\"service\",\"status\":null}");
	emit(log, "bounced", "{\"queue_id\":\"A\",\"route\":\"service\",\"status\":\"5.1.1\"}");
	emit(log, "expired", "{\"queue_id\":\"B\",\"route\":\"direct\"}");
	emit(log, "suppressed", "{\"queue_id\":\"A\",\"route\":\"service\",\"reason\":\"bounced\"}");
	emit(log, "suppressed", "{\"queue_id\":\"D\"}");  /* no route: the runner's "direct" */
	emit(log, "rejected", "{\"status\":\"5.7.1\",\"response\":\"554 5.7.1 Relay access denied\"}");
	emit(log, "rejected", "{\"status\":\"5.7.1\",\"response\":\"554 5.7.1 Relay access denied\"}");
	emit(log, "rejected", "{\"status\":\"4.3.1\",\"response\":\"452 4.3.1 Insufficient system storage\"}");
	emit(log, "rejected", "{\"status\":null,\"response\":\"421 too busy\"}");
	emit(log, "rejected", "{\"status\":\"5.5.\\\"}x\",\"response\":\"hostile\"}");
	/* Not counted: */
	emit(log, "learned", "{\"to\":\"x@y\",\"source\":\"delivery\"}");
	emit(log, "deleted", "{\"queue_id\":\"E\",\"to\":[\"a@b\"]}");
	emit(log, "delayed", NULL);
	evlog_close(log);

	/* What the log holds. */
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char line[1024];
	int received = 0, delivered = 0, rejected = 0;
	while (fgets(line, sizeof(line), f)) {
		received += strstr(line, "\"event\":\"received\"") != NULL;
		delivered += strstr(line, "\"event\":\"delivered\"") != NULL;
		rejected += strstr(line, "\"event\":\"rejected\"") != NULL;
	}
	fclose(f);

	char *t = render(m, NULL);
	ck_assert_double_eq(sample(t, "hikyaku_messages_received_total"), received);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"service\",outcome=\"delivered\"}") +
	                    sample(t, "hikyaku_recipients_total{route=\"direct\",outcome=\"delivered\"}"),
	                    delivered);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"service\",outcome=\"delivered\"}"), 2);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"service\",outcome=\"deferred\"}"), 2);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"service\",outcome=\"bounced\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"direct\",outcome=\"expired\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"service\",outcome=\"suppressed\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"direct\",outcome=\"suppressed\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_rejected_total{status=\"5.7.1\"}"), 2);
	ck_assert_double_eq(sample(t, "hikyaku_rejected_total{status=\"4.3.1\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_rejected_total{status=\"421\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_rejected_total{status=\"unknown\"}"), 1);
	ck_assert_int_eq(rejected, 5);

	/* The histogram: 0.04 s and 1.5 s on the service route, 2 h direct. */
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_bucket{route=\"service\",le=\"0.1\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_bucket{route=\"service\",le=\"1\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_bucket{route=\"service\",le=\"2.5\"}"), 2);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_bucket{route=\"service\",le=\"+Inf\"}"), 2);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_count{route=\"service\"}"), 2);
	ck_assert_double_eq_tol(sample(t, "hikyaku_delivery_seconds_sum{route=\"service\"}"), 1.54, 1e-9);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_bucket{route=\"direct\",le=\"3600\"}"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_bucket{route=\"direct\",le=\"21600\"}"), 1);
	free(t);
	metrics_free(m);
}
END_TEST

START_TEST(test_gauges)
{
	struct metrics *m;
	ck_assert_int_eq(metrics_new(&m), 0);
	struct metrics_destination dests[] = { { "docomo", true }, { "a\"b\\c\nd", false } };
	struct metrics_gauges g = {
		.queue_messages = { 3, 100000 },
		.queue_recipients = { 4, 250000 },
		.queue_bytes = 123456789012ull,
		.queue_oldest_seconds = 3600.5,
		.connections_in = 7,
		.connections_out = 11,
		.service_paused = true,
		.destinations = dests,
		.ndestinations = 2,
		.suppression_entries = 42,
		.start_time_seconds = 1700000000,
		.version = "1.2.3",
	};
	char *t = render(m, &g);
	ck_assert_double_eq(sample(t, "hikyaku_queue_messages{route=\"direct\"}"), 3);
	ck_assert_double_eq(sample(t, "hikyaku_queue_messages{route=\"service\"}"), 100000);
	ck_assert_double_eq(sample(t, "hikyaku_queue_recipients{route=\"service\"}"), 250000);
	ck_assert_ptr_nonnull(strstr(t, "\nhikyaku_queue_bytes 123456789012\n"));
	ck_assert_double_eq(sample(t, "hikyaku_queue_oldest_seconds"), 3600.5);
	ck_assert_double_eq(sample(t, "hikyaku_connections{side=\"in\"}"), 7);
	ck_assert_double_eq(sample(t, "hikyaku_connections{side=\"out\"}"), 11);
	ck_assert_double_eq(sample(t, "hikyaku_service_paused"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_destination_paused{destination=\"docomo\"}"), 1);
	ck_assert_double_eq(sample(t, "hikyaku_destination_paused{destination=\"a\\\"b\\\\c\\nd\"}"), 0);
	ck_assert_double_eq(sample(t, "hikyaku_suppression_entries"), 42);
	ck_assert_double_eq(sample(t, "hikyaku_start_time_seconds"), 1700000000);
	ck_assert_double_eq(sample(t, "hikyaku_build_info{version=\"1.2.3\"}"), 1);
	free(t);
	metrics_free(m);
}
END_TEST

START_TEST(test_label_escape)
{
	char out[16];
	ck_assert_str_eq(metrics_label_escape("plain", out, sizeof(out)), "plain");
	ck_assert_str_eq(metrics_label_escape("a\\b\"c\nd", out, sizeof(out)), "a\\\\b\\\"c\\nd");
	/* Cut short, never in the middle of an escape. */
	ck_assert_str_eq(metrics_label_escape("abcdefghijklmn\"", out, sizeof(out)), "abcdefghijklmn");
	ck_assert_str_eq(metrics_label_escape(NULL, out, sizeof(out)), "");
}
END_TEST

/* A hostile peer cannot grow the registry: statuses are bounded. */
START_TEST(test_status_bound)
{
	struct metrics *m;
	ck_assert_int_eq(metrics_new(&m), 0);
	for (int i = 0; i < 1000; i++) {
		char js[128];
		snprintf(js, sizeof(js), "{\"status\":\"5.%d.%d\"}", i / 10, i % 10);
		json_t *f = json_loads(js, 0, NULL);
		metrics_observe(m, "rejected", f);
		json_decref(f);
	}
	char *t = render(m, NULL);
	size_t n = 0;
	for (const char *p = t; (p = strstr(p, "\nhikyaku_rejected_total{")); p++)
		n++;
	ck_assert_uint_eq(n, METRICS_MAX_STATUSES + 1);
	ck_assert_double_eq(sample(t, "hikyaku_rejected_total{status=\"other\"}"),
	                    1000 - METRICS_MAX_STATUSES);
	free(t);
	metrics_free(m);
}
END_TEST

/* Several threads emitting at once: nothing lost. */
static struct metrics *shared;
static void worker(void *arg)
{
	(void)arg;
	json_t *f = json_pack("{s:s,s:I}", "route", "service", "delay_ms", (json_int_t)10);
	for (int i = 0; i < 10000; i++)
		metrics_observe(shared, "delivered", f);
	json_decref(f);
}

START_TEST(test_threads)
{
	uv_thread_t th[4];
	ck_assert_int_eq(metrics_new(&shared), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(uv_thread_create(&th[i], worker, NULL), 0);
	for (int i = 0; i < 4; i++)
		uv_thread_join(&th[i]);
	char *t = render(shared, NULL);
	ck_assert_double_eq(sample(t, "hikyaku_recipients_total{route=\"service\",outcome=\"delivered\"}"), 40000);
	ck_assert_double_eq(sample(t, "hikyaku_delivery_seconds_count{route=\"service\"}"), 40000);
	free(t);
	metrics_free(shared);
}
END_TEST

/* Debian's promtool (package prometheus) accepts the output. */
START_TEST(test_promtool)
{
	if (access("/usr/bin/promtool", X_OK) != 0)
		return;     /* not installed: the e2e test checks it again */
	struct metrics *m;
	ck_assert_int_eq(metrics_new(&m), 0);
	json_t *f = json_pack("{s:s,s:s,s:I}", "route", "direct", "status", "5.7.1",
	                      "delay_ms", (json_int_t)2500);
	metrics_observe(m, "delivered", f);
	metrics_observe(m, "rejected", f);
	metrics_observe(m, "received", f);
	json_decref(f);
	struct metrics_destination dests[] = { { "docomo", true } };
	struct metrics_gauges g = no_gauges;
	g.destinations = dests;
	g.ndestinations = 1;
	g.suppression_entries = 5;
	g.queue_oldest_seconds = 12.25;
	char *t = render(m, &g);
	char path[128], cmd[300];
	snprintf(path, sizeof(path), "%s/metrics.txt", root);
	FILE *o = fopen(path, "w");
	ck_assert_ptr_nonnull(o);
	fputs(t, o);
	fclose(o);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s/promtool.out 2>&1", path, root);
	int rc = system(cmd);
	char out[4096] = "";
	snprintf(path, sizeof(path), "%s/promtool.out", root);
	FILE *in = fopen(path, "r");
	if (in) {
		size_t n = fread(out, 1, sizeof(out) - 1, in);
		out[n] = '\0';
		fclose(in);
	}
	ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "promtool: %s\n%s", out, t);
	ck_assert_msg(out[0] == '\0', "promtool has remarks: %s", out);
	free(t);
	metrics_free(m);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_counts_agree_with_log);
	tcase_add_test(tc, test_gauges);
	tcase_add_test(tc, test_label_escape);
	tcase_add_test(tc, test_status_bound);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_promtool);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
