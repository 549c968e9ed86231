/*
 * test_bounce_in - reading a report against the suppression list and the
 * records of what was sent (relay/bounce_in.c: bounce_in_read): forged
 * references name nothing, a recipient named many times counts once, the
 * recipients looked at are capped, a trusted report needs no match.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay/bounce_in.h"
#include "relay/queue_fs.h"

#define QID "00000661A0000000AA"
#define REF QID "-0123456789abcdef"

static char dir[64], db[128];
static struct supp *s;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_bounce_in.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/supp.db", dir);
	ck_assert_int_eq(supp_open(db, &s), 0);
	ck_assert_int_eq(supp_sent_add(s, REF, "gone@dest.test", "shop@example.jp", NULL, 1000), 0);
	ck_assert_int_eq(supp_sent_add(s, REF, "gone2@dest.test", "shop@example.jp", NULL, 1000), 0);
	/* a record from before tags: keyed by the bare queue id */
	ck_assert_int_eq(supp_sent_add(s, QID, "old@dest.test", "shop@example.jp", NULL, 1000), 0);
}

static void teardown(void)
{
	supp_close(s);
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* A report for rcpts (comma-separated), each block repeated n times. */
static void report(struct dsn_report *rep, const char *envid, const char *rcpts, int n)
{
	GString *m = g_string_new("From: MAILER-DAEMON@x.example\r\nTo: b@x\r\nSubject: f\r\n"
	                          "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
	                          "report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\n"
	                          "Content-Type: text/plain\r\n\r\nfailed\r\n--B\r\n"
	                          "Content-Type: message/delivery-status\r\n\r\n"
	                          "Reporting-MTA: dns; x.example\r\n");
	if (envid)
		g_string_append_printf(m, "Original-Envelope-Id: %s\r\n", envid);
	gchar **v = g_strsplit(rcpts, ",", -1);
	for (int k = 0; k < n; k++)
		for (gchar **p = v; *p; p++)
			g_string_append_printf(m, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\n"
			                       "Status: 5.1.1\r\n", *p);
	g_strfreev(v);
	g_string_append(m, "\r\n--B--\r\n");
	ck_assert_int_eq(dsn_parse(m->str, m->len, rep), 1);
	g_string_free(m, TRUE);
}

static GArray *found_new(void)
{
	return g_array_new(FALSE, TRUE, sizeof(struct bounce_found));
}

static void found_free(GArray *f)
{
	for (guint i = 0; i < f->len; i++)
		bounce_in_found_clear(&g_array_index(f, struct bounce_found, i));
	g_array_free(f, TRUE);
}

START_TEST(tagged_reference_matches_once)
{
	struct dsn_report rep;
	report(&rep, NULL, "gone@dest.test", 1000);
	const char *tags[] = { REF };
	struct bounce_in_ctx ctx = { tags, 1, dir, NULL };
	GArray *f = found_new();
	unsigned unmatched = 0, ignored = 0;
	bounce_in_read(s, &rep, &ctx, 100, 2000, f, &unmatched, &ignored);
	ck_assert_uint_eq(f->len, 1);
	struct bounce_found *x = &g_array_index(f, struct bounce_found, 0);
	ck_assert_str_eq(x->addr, "gone@dest.test");
	ck_assert_str_eq(x->qid, QID);
	ck_assert_str_eq(x->sender, "shop@example.jp");
	ck_assert(x->is_new && x->notify);
	ck_assert_uint_eq(unmatched, 0);
	/* once told (recorded), a later report does not notify again */
	ck_assert_int_eq(queue_fs_reported_add(dir, QID, "gone@dest.test"), 0);
	found_free(f);
	f = found_new();
	bounce_in_read(s, &rep, &ctx, 100, 3000, f, &unmatched, &ignored);
	ck_assert_uint_eq(f->len, 1);
	ck_assert(!g_array_index(f, struct bounce_found, 0).notify);
	ck_assert(!g_array_index(f, struct bounce_found, 0).is_new);
	found_free(f);
	dsn_report_free(&rep);
}
END_TEST

START_TEST(forged_references_name_nothing)
{
	struct dsn_report rep;
	unsigned unmatched = 0, ignored = 0;
	/* the bare queue id, as VERP tag and as ENVID, even for a record
	 * written before tags */
	report(&rep, QID, "gone@dest.test,old@dest.test", 1);
	const char *bare[] = { QID };
	struct bounce_in_ctx ctx = { bare, 1, dir, NULL };
	GArray *f = found_new();
	bounce_in_read(s, &rep, &ctx, 100, 2000, f, &unmatched, &ignored);
	ck_assert_uint_eq(f->len, 0);
	ck_assert_uint_eq(unmatched, 2);
	dsn_report_free(&rep);
	/* a wrong tag */
	report(&rep, QID "-fedcba9876543210", "gone@dest.test", 1);
	const char *wrong[] = { QID "-fedcba9876543210" };
	ctx.tags = wrong;
	unmatched = 0;
	bounce_in_read(s, &rep, &ctx, 100, 2000, f, &unmatched, &ignored);
	ck_assert_uint_eq(f->len, 0);
	ck_assert_uint_eq(unmatched, 1);
	struct supp_entry e = { 0 };
	ck_assert_int_eq(supp_lookup(s, "gone@dest.test", &e), 0);
	found_free(f);
	dsn_report_free(&rep);
}
END_TEST

START_TEST(envid_matches_and_cap_bounds)
{
	struct dsn_report rep;
	unsigned unmatched = 0, ignored = 0;
	report(&rep, REF, "gone@dest.test,GONE2@dest.test,a@x.test,b@x.test", 3);
	struct bounce_in_ctx ctx = { NULL, 0, dir, NULL };
	GArray *f = found_new();
	bounce_in_read(s, &rep, &ctx, 3, 2000, f, &unmatched, &ignored);
	/* 4 different recipients, 12 blocks: the parser keeps one per
	 * recipient (relay/dsn_parse.c), 3 looked at (cap), 2 matched */
	ck_assert_uint_eq(f->len, 2);
	ck_assert_uint_eq(unmatched, 1);
	ck_assert_uint_eq(ignored, 1); /* b@x.test, past the cap */
	found_free(f);
	dsn_report_free(&rep);
}
END_TEST

/* SPEC §6.6: a shared store that cannot answer (PostgreSQL away, a record
 * this relay's copy does not have) leaves the failure to be read again,
 * never counted as naming no mail (which would drop the report). */
START_TEST(unreachable_store_is_read_again)
{
	struct supp *pg = NULL;
	ck_assert_int_eq(supp_open_spool("postgresql://hikyaku@127.0.0.1:1/hikyaku?connect_timeout=2",
	                                 dir, &pg), 0);
	struct dsn_report rep;
	report(&rep, REF, "gone@dest.test", 1);
	const char *tags[] = { REF };
	unsigned unavailable = 0, unmatched = 0, ignored = 0;
	struct bounce_in_ctx ctx = { tags, 1, dir, &unavailable };
	GArray *f = found_new();
	bounce_in_read(pg, &rep, &ctx, 100, 2000, f, &unmatched, &ignored);
	ck_assert_uint_eq(f->len, 0);
	ck_assert_uint_eq(unavailable, 1);
	ck_assert_uint_eq(unmatched, 0);
	found_free(f);
	dsn_report_free(&rep);
	supp_close(pg);
}
END_TEST

/* A forged report with many distinct well-formed tags and many failed
 * recipients costs a bounded number of lookups: two references at most,
 * and reading stops after five failures that name no mail. */
START_TEST(forged_report_costs_bounded_work)
{
	struct dsn_report rep;
	GString *rcpts = g_string_new(NULL);
	for (int i = 0; i < 100; i++)
		g_string_append_printf(rcpts, "%scustomer%d@victim.test", i ? "," : "", i);
	report(&rep, NULL, rcpts->str, 1);
	g_string_free(rcpts, TRUE);
	static char tagbuf[100][64];
	const char *tags[100];
	for (int i = 0; i < 100; i++) {
		snprintf(tagbuf[i], sizeof(tagbuf[i]), "%s-%016x", QID, 0x1000 + i);
		tags[i] = tagbuf[i];
	}
	unsigned unmatched = 0, ignored = 0;
	struct bounce_in_ctx ctx = { tags, 100, dir, NULL };
	GArray *f = found_new();
	bounce_in_read(s, &rep, &ctx, 100, 2000, f, &unmatched, &ignored);
	ck_assert_uint_eq(f->len, 0);
	ck_assert_uint_eq(unmatched, 5);
	ck_assert_uint_eq(ignored, 95);
	struct supp_entry e = { 0 };
	ck_assert_int_eq(supp_lookup(s, "customer0@victim.test", &e), 0);
	found_free(f);
	dsn_report_free(&rep);
}
END_TEST

START_TEST(trusted_report_needs_no_match)
{
	struct dsn_report rep;
	unsigned unmatched = 0, ignored = 0;
	report(&rep, NULL, "stranger@x.test,stranger@x.test", 2);
	GArray *f = found_new();
	bounce_in_read(s, &rep, NULL, 100, 2000, f, &unmatched, &ignored);
	ck_assert_uint_eq(f->len, 1);
	ck_assert(g_array_index(f, struct bounce_found, 0).is_new);
	ck_assert(!g_array_index(f, struct bounce_found, 0).notify);
	ck_assert_uint_eq(unmatched, 0);
	found_free(f);
	dsn_report_free(&rep);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("bounce_in");
	TCase *tc = tcase_create("read");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, tagged_reference_matches_once);
	tcase_add_test(tc, forged_references_name_nothing);
	tcase_add_test(tc, envid_matches_and_cap_bounds);
	tcase_add_test(tc, trusted_report_needs_no_match);
	tcase_add_test(tc, unreachable_store_is_read_again);
	tcase_add_test(tc, forged_report_costs_bounded_work);
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
