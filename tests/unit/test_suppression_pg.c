/*
 * test_suppression_pg - the PostgreSQL store behind relay/suppression.h.
 * Without a server: the URI is told from a path, never shown with its
 * password, an unreachable server fails hikyakuctl's calls quickly, and
 * the daemon's mode keeps what it learns in its local journal, across a
 * restart. With HIKYAKU_TEST_PG_URI set (tests/e2e/t_pgsql.sh runs this
 * program against the cluster it starts): the same calls as the SQLite
 * store's tests, the tables made once by two relays starting at once, and
 * the daemon's copy kept in step with the server.
 */
#include <check.h>
#include <glib.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "relay/suppression.h"

static char dir[64];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	strcpy(dir, "/tmp/hk-supp-pg-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A port nothing listens on. */
#define DEAD_URI "postgresql://hikyaku:s3cret@127.0.0.1:1/hikyaku?connect_timeout=2"

START_TEST(test_is_pg_and_display)
{
	char out[256];

	ck_assert(supp_db_is_pg("postgresql://h/db"));
	ck_assert(supp_db_is_pg("postgres://h/db"));
	ck_assert(!supp_db_is_pg("/var/lib/hikyaku/suppression.db"));
	ck_assert(!supp_db_is_pg("postgresql:/h"));
	supp_db_display("postgresql://relay:s3cret@db.example:5432/hikyaku", out, sizeof(out));
	ck_assert_str_eq(out, "postgresql://relay@db.example:5432/hikyaku");
	supp_db_display("postgres://relay@db/hk?sslmode=require&password=s3cret&application_name=x",
	                out, sizeof(out));
	ck_assert_str_eq(out, "postgres://relay@db/hk?sslmode=require&application_name=x");
	supp_db_display("postgresql://:s3cret@db/hk?password=s3cret", out, sizeof(out));
	ck_assert_ptr_null(strstr(out, "s3cret"));
	supp_db_display("/var/lib/x.db", out, sizeof(out));
	ck_assert_str_eq(out, "/var/lib/x.db");
	supp_db_display("postgresql://u:pw@h/db", out, 10);
	ck_assert_uint_eq(strlen(out), 9);
}
END_TEST

START_TEST(test_direct_unreachable)
{
	struct supp *s = NULL;
	int64_t t0 = mono_ms();
	int rc = supp_open(DEAD_URI, &s);

	ck_assert_int_eq(rc, -ENOTCONN);
	ck_assert_ptr_null(s);
	ck_assert_int_lt(mono_ms() - t0, 5000);
	ck_assert_ptr_nonnull(strstr(supp_strerror(rc), "cannot be reached"));
	ck_assert_int_eq(supp_open("postgresql://h/db?nosuchparam=1", &s), -EINVAL);
}
END_TEST

/* [suppression] db: a URI is kept as written, and config_print hides its password. */
START_TEST(test_config_db_uri)
{
	char path[128], *buf = NULL;
	size_t len = 0;
	struct config *cfg = NULL;
	struct config_diags d = { 0 };
	FILE *f;

	snprintf(path, sizeof(path), "%s/hikyaku.conf", dir);
	f = fopen(path, "w");
	fprintf(f, "[server]\nhostname = relay.test\n[queue]\ndir = %s/q\n[suppression]\n"
	        "db = postgresql://relay:s3cret@db.internal:5432/hikyaku?password=s3cret&sslmode=require\n"
	        "[log]\nfile = %s/log\n[control]\nsocket = %s/ctl\n", dir, dir, dir);
	fclose(f);
	ck_assert_msg(config_load(path, &cfg, &d) == 0, "%s", d.n ? d.v[0].text : "");
	ck_assert_str_eq(cfg->suppression.db,
	                 "postgresql://relay:s3cret@db.internal:5432/hikyaku?password=s3cret&sslmode=require");
	f = open_memstream(&buf, &len);
	config_print(cfg, f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "db = postgresql://relay:***@db.internal:5432/hikyaku?password=***&sslmode=require\n"));
	ck_assert_ptr_null(strstr(buf, "s3cret"));
	free(buf);
	config_free(cfg);
	config_diags_free(&d);
	/* "postgres://" with nothing after it is refused with the line. */
	f = fopen(path, "w");
	fprintf(f, "[server]\nhostname = relay.test\n[queue]\ndir = %s/q\n[suppression]\n"
	        "db = postgres://\n[log]\nfile = %s/log\n[control]\nsocket = %s/ctl\n", dir, dir, dir);
	fclose(f);
	memset(&d, 0, sizeof(d));
	cfg = NULL;
	ck_assert_int_eq(config_load(path, &cfg, &d), -1);
	ck_assert_uint_ge(d.n, 1);
	ck_assert_ptr_nonnull(strstr(d.v[0].text, ":6: db: "));
	ck_assert_ptr_nonnull(strstr(d.v[0].text, "not a PostgreSQL URI"));
	config_diags_free(&d);
	/* An unknown parameter: libpq's reason, so --check catches the typo. */
	f = fopen(path, "w");
	fprintf(f, "[server]\nhostname = relay.test\n[queue]\ndir = %s/q\n[suppression]\n"
	        "db = postgresql://relay@db/hk?sslmod=require\n[log]\nfile = %s/log\n"
	        "[control]\nsocket = %s/ctl\n", dir, dir, dir);
	fclose(f);
	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(config_load(path, &cfg, &d), -1);
	ck_assert_ptr_nonnull(strstr(d.v[0].text, ":6: db: not a PostgreSQL URI"));
	ck_assert_ptr_nonnull(strstr(d.v[0].text, "sslmod"));
	config_diags_free(&d);
	/* ... but not when the reason could quote a password. */
	f = fopen(path, "w");
	fprintf(f, "[server]\nhostname = relay.test\n[queue]\ndir = %s/q\n[suppression]\n"
	        "db = postgresql://relay:s3%%zzcret@db/hk\n[log]\nfile = %s/log\n"
	        "[control]\nsocket = %s/ctl\n", dir, dir, dir);
	fclose(f);
	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(config_load(path, &cfg, &d), -1);
	ck_assert_ptr_null(strstr(d.v[0].text, "s3"));
	config_diags_free(&d);
}
END_TEST

/* The daemon's mode without a server: learns locally, durably. */
START_TEST(test_spool_offline_journal)
{
	struct supp *s = NULL;
	struct supp_entry e;
	char *sender, *qid;
	json_t *st;
	int64_t t0;

	ck_assert_int_eq(supp_open_spool(DEAD_URI, dir, &s), 0);
	t0 = mono_ms();
	ck_assert_int_eq(supp_add(s, "Gone@Example.COM", "bounced", "5.1.1", "550 no", "delivery", 1000), 1);
	ck_assert_int_eq(supp_add(s, "gone@example.com", NULL, NULL, NULL, "delivery", 2000), 0);
	ck_assert_int_eq(supp_lookup(s, "GONE@example.com", &e), 1);
	ck_assert_str_eq(e.address, "Gone@Example.COM");
	ck_assert_int_eq(e.count, 2);
	supp_entry_free(&e);
	ck_assert_int_eq(supp_sent_add(s, "Q1-T", "a@b.test", "shop@x.test", "svc-id-123", 1000), 0);
	ck_assert_int_eq(supp_sent_find(s, "Q1-T", NULL, "A@B.test", &sender, &qid), 1);
	ck_assert_str_eq(sender, "shop@x.test");
	free(sender);
	free(qid);
	/* Not ours, and the server is away: no answer rather than a wait. */
	ck_assert_int_lt(supp_sent_find(s, "Q2-T", NULL, "a@b.test", &sender, &qid), 0);
	ck_assert_int_lt(mono_ms() - t0, 1000);
	usleep(300 * 1000);
	st = supp_status_json(s, DEAD_URI);
	ck_assert_str_eq(json_string_value(json_object_get(st, "store")), "postgresql");
	ck_assert(json_is_false(json_object_get(st, "reachable")));
	ck_assert_int_eq(json_integer_value(json_object_get(st, "pending")), 3);
	char *dump = json_dumps(st, 0);
	ck_assert_ptr_null(strstr(dump, "s3cret"));
	free(dump);
	json_decref(st);
	supp_close(s);
	/* After a restart the journal and the copy are still there. */
	ck_assert_int_eq(supp_open_spool(DEAD_URI, dir, &s), 0);
	ck_assert_int_eq(supp_lookup(s, "gone@example.com", NULL), 1);
	st = supp_status_json(s, DEAD_URI);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "pending")), 3);
	json_decref(st);
	ck_assert_int_eq(supp_remove(s, "GONE@example.com"), 1);
	ck_assert_int_eq(supp_lookup(s, "gone@example.com", NULL), 0);
	supp_close(s);
}
END_TEST

/* ---- against a real server ------------------------------------------- */

static const char *pg_uri(void)
{
	const char *u = getenv("HIKYAKU_TEST_PG_URI");
	return u && *u ? u : NULL;
}

static int collect(void *arg, const struct supp_entry *e)
{
	GString *g = arg;

	g_string_append_printf(g, "%s|%s|%lld;", e->address, e->reason ? e->reason : "-",
	                       (long long)e->count);
	return 0;
}

START_TEST(test_pg_calls)
{
	struct supp *s = NULL;
	struct supp_entry e;
	char *sender, *qid, err[200];
	long line;
	GString *g;
	FILE *in;
	int64_t v;
	const char *csv = "address,reason,status,response,source,first_seen,last_seen,count\n"
	                  "imp1@pg.test,bounced,5.1.1,\"550 a, b\",delivery,2025-01-01T00:00:00.000Z,"
	                  "2025-01-02T00:00:00.000Z,4\n"
	                  "Imp2@PG.test,complaint,,,admin,2025-01-01T00:00:00.000Z,"
	                  "2025-01-01T00:00:00.000Z,1\n";

	if (!pg_uri())
		return;
	ck_assert_int_eq(supp_open(pg_uri(), &s), 0);
	supp_remove(s, "unit1@pg.test");
	supp_remove(s, "imp1@pg.test");
	supp_remove(s, "imp2@pg.test");
	v = supp_data_version(s);
	ck_assert_int_eq(supp_add(s, "Unit1@PG.test", "bounced", "5.1.1", "550 \xff bad utf-8",
	                          "delivery", 1000), 1);
	ck_assert_int_ne(supp_data_version(s), v);
	ck_assert_int_eq(supp_add(s, "unit1@pg.test", NULL, "5.1.2", NULL, "dsn", 500), 0);
	ck_assert_int_eq(supp_lookup(s, "UNIT1@pg.TEST", &e), 1);
	ck_assert_str_eq(e.address, "Unit1@PG.test");
	ck_assert_str_eq(e.reason, "bounced");
	ck_assert_str_eq(e.status, "5.1.2");
	ck_assert_str_eq(e.source, "delivery");
	ck_assert_int_eq(e.count, 2);
	ck_assert_int_eq(e.first_ms, 1000);
	ck_assert_int_eq(e.last_ms, 1000);
	supp_entry_free(&e);
	in = fmemopen((void *)csv, strlen(csv), "r");
	ck_assert_int_eq(supp_import_csv(s, in, "import", 5000, &line, err, sizeof(err)), 2);
	fclose(in);
	in = fmemopen((void *)csv, strlen(csv), "r");
	ck_assert_int_eq(supp_import_csv(s, in, "import", 5000, &line, err, sizeof(err)), 2);
	fclose(in);
	g = g_string_new("");
	ck_assert_int_ge(supp_list(s, "pg.test", collect, g), 3);
	ck_assert_ptr_nonnull(strstr(g->str, "imp1@pg.test|bounced|4;Imp2@PG.test|complaint|1;"));
	g_string_truncate(g, 0);
	ck_assert_int_eq(supp_list(s, "COMPLAINT", collect, g), 1);
	g_string_free(g, TRUE);
	ck_assert_int_eq(supp_remove(s, "IMP2@pg.test"), 1);
	ck_assert_int_eq(supp_remove(s, "imp2@pg.test"), 0);
	ck_assert_int_eq(supp_sent_add(s, "QPG1-TAG", "R@PG.test", "shop@x.test", "0101abcdef", 7000), 0);
	ck_assert_int_eq(supp_sent_find(s, "QPG1-TAG", NULL, "r@pg.test", &sender, &qid), 1);
	ck_assert_str_eq(sender, "shop@x.test");
	ck_assert_str_eq(qid, "QPG1-TAG");
	free(sender);
	free(qid);
	ck_assert_int_eq(supp_sent_find(s, NULL, "0101abcdef", "r@pg.test", &sender, &qid), 1);
	free(sender);
	free(qid);
	ck_assert_int_eq(supp_sent_find(s, "QPG1", NULL, "r@pg.test", &sender, &qid), 0);
	ck_assert_int_ge(supp_sent_prune(s, 7001), 1);
	ck_assert_int_eq(supp_sent_find(s, "QPG1-TAG", NULL, "r@pg.test", &sender, &qid), 0);
	supp_close(s);
}
END_TEST

struct opener {
	const char *dir;
	int rc;
};

static void *open_one(void *arg)
{
	struct opener *o = arg;
	struct supp *s = NULL;

	o->rc = supp_open(pg_uri(), &s);
	supp_close(s);
	return NULL;
}

/* The daemon's copy follows the server both ways, within seconds. */
START_TEST(test_pg_spool_sync)
{
	struct supp *d = NULL, *c = NULL;
	json_t *st;
	int i;

	if (!pg_uri())
		return;
	/* Two first uses at once: the advisory lock makes one create. */
	{
		pthread_t t[4];
		struct opener o[4] = { { 0 } };

		for (i = 0; i < 4; i++)
			pthread_create(&t[i], NULL, open_one, &o[i]);
		for (i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			ck_assert_int_eq(o[i].rc, 0);
		}
	}
	ck_assert_int_eq(supp_open(pg_uri(), &c), 0);
	supp_remove(c, "sync1@pg.test");
	supp_remove(c, "sync2@pg.test");
	ck_assert_int_eq(supp_open_spool(pg_uri(), dir, &d), 0);
	for (i = 0; i < 100; i++) {
		st = supp_status_json(d, pg_uri());
		bool up = json_is_true(json_object_get(st, "reachable"));
		json_decref(st);
		if (up)
			break;
		usleep(100 * 1000);
	}
	ck_assert_int_lt(i, 100);
	/* Learned by the daemon: local at once, on the server soon. */
	ck_assert_int_eq(supp_add(d, "sync1@pg.test", "bounced", "5.1.1", NULL, "delivery", 1), 1);
	ck_assert_int_eq(supp_lookup(d, "sync1@pg.test", NULL), 1);
	for (i = 0; i < 100 && supp_lookup(c, "sync1@pg.test", NULL) != 1; i++)
		usleep(50 * 1000);
	ck_assert_int_lt(i, 100);
	/* Added elsewhere: in the daemon's copy soon; removed: gone soon. */
	ck_assert_int_eq(supp_add(c, "sync2@pg.test", "admin", NULL, NULL, "admin", 1), 1);
	for (i = 0; i < 100 && supp_lookup(d, "sync2@pg.test", NULL) != 1; i++)
		usleep(50 * 1000);
	ck_assert_int_lt(i, 100);
	ck_assert_int_eq(supp_remove(c, "sync1@pg.test"), 1);
	for (i = 0; i < 100 && supp_lookup(d, "sync1@pg.test", NULL) != 0; i++)
		usleep(50 * 1000);
	ck_assert_int_lt(i, 100);
	supp_close(d);
	supp_close(c);
}
END_TEST

static int64_t pending_of(struct supp *s, bool *up)
{
	json_t *st = supp_status_json(s, pg_uri());
	int64_t n = json_integer_value(json_object_get(st, "pending"));

	*up = json_is_true(json_object_get(st, "reachable"));
	json_decref(st);
	return n;
}

/* Open the daemon's mode, wait until the journal is written, close. */
static void flush_spool(void)
{
	struct supp *d = NULL;
	bool up = false;
	int i;

	ck_assert_int_eq(supp_open_spool(pg_uri(), dir, &d), 0);
	for (i = 0; i < 100 && (pending_of(d, &up) != 0 || !up); i++)
		usleep(100 * 1000);
	ck_assert_int_lt(i, 100);
	supp_close(d);
}

static void copy_file(const char *from, const char *to)
{
	char buf[8192];
	size_t n;
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
}

/*
 * Learned while the server was away, written when it is back; and the same
 * journal written a second time (the relay died before it took the rows
 * off) counts once.
 */
START_TEST(test_pg_journal_once)
{
	struct supp *d = NULL, *c = NULL;
	struct supp_entry e;
	char db[128], saved[128], wal[140];

	if (!pg_uri())
		return;
	ck_assert_int_eq(supp_open(pg_uri(), &c), 0);
	supp_remove(c, "once@pg.test");
	ck_assert_int_eq(supp_open_spool(DEAD_URI, dir, &d), 0);
	ck_assert_int_eq(supp_add(d, "once@pg.test", "bounced", "5.1.1", "550 gone", "delivery", 42), 1);
	supp_close(d);
	snprintf(db, sizeof(db), "%s/suppression-pg.db", dir);
	snprintf(saved, sizeof(saved), "%s/saved.db", dir);
	copy_file(db, saved);
	ck_assert_int_eq(supp_lookup(c, "once@pg.test", NULL), 0);
	flush_spool();
	ck_assert_int_eq(supp_lookup(c, "once@pg.test", &e), 1);
	ck_assert_int_eq(e.count, 1);
	ck_assert_str_eq(e.status, "5.1.1");
	supp_entry_free(&e);
	/* The journal as it was before it was written: written again. */
	snprintf(wal, sizeof(wal), "%s-wal", db);
	unlink(wal);
	snprintf(wal, sizeof(wal), "%s-shm", db);
	unlink(wal);
	copy_file(saved, db);
	flush_spool();
	ck_assert_int_eq(supp_lookup(c, "once@pg.test", &e), 1);
	ck_assert_int_eq(e.count, 1);
	supp_entry_free(&e);
	supp_close(c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("suppression_pg");
	TCase *tc = tcase_create("pg");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_is_pg_and_display);
	tcase_add_test(tc, test_direct_unreachable);
	tcase_add_test(tc, test_config_db_uri);
	tcase_add_test(tc, test_spool_offline_journal);
	tcase_add_test(tc, test_pg_calls);
	tcase_add_test(tc, test_pg_spool_sync);
	tcase_add_test(tc, test_pg_journal_once);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
