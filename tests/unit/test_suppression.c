/*
 * test_suppression - the suppression list store (relay/suppression.h).
 * Every test gets a fresh database in a new directory under /tmp; CSV
 * input comes from memory (fmemopen), and list callbacks collect what they
 * see so that the assertions run after the walk.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relay/suppression.h"

static char top[64];             /* per run; removed by the parent */
static char root[128];           /* per test, inside top */
static char db_path[192];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/*
 * The unchecked fixture runs in the parent, so the directory goes even
 * when a failing test's child exits without its teardown.
 */
static void setup_run(void)
{
	strcpy(top, "/tmp/hk-supp-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
}

static void teardown_run(void)
{
	nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	snprintf(root, sizeof(root), "%s/t-XXXXXX", top);
	ck_assert_ptr_nonnull(mkdtemp(root));
	/* A directory that does not exist yet: supp_open() makes it. */
	snprintf(db_path, sizeof(db_path), "%s/lib/hikyaku/suppression.db", root);
}

static void teardown(void)
{
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct supp *open_db(void)
{
	struct supp *s = NULL;

	ck_assert_int_eq(supp_open(db_path, &s), 0);
	ck_assert_ptr_nonnull(s);
	return s;
}

static FILE *mem(const char *text)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");

	ck_assert_ptr_nonnull(f);
	return f;
}

/* Collects the entries a walk sees, as "address|reason|status|count" lines. */
struct seen {
	char text[4096];
	int calls;
};

static int collect(void *arg, const struct supp_entry *e)
{
	struct seen *s = arg;
	size_t n = strlen(s->text);

	snprintf(s->text + n, sizeof(s->text) - n, "%s|%s|%s|%lld\n", e->address,
	         e->reason ? e->reason : "-", e->status ? e->status : "-",
	         (long long)e->count);
	s->calls++;
	return 0;
}

static int stop_at_two(void *arg, const struct supp_entry *e)
{
	struct seen *s = arg;

	(void)e;
	return ++s->calls == 2 ? -ECANCELED : 0;
}

START_TEST(test_open_creates)
{
	struct supp *s = open_db();
	struct stat st;
	char wal[224];

	ck_assert_int_eq(stat(db_path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777 & ~0640, 0);
	/* WAL mode leaves a -wal file beside the database while open. */
	snprintf(wal, sizeof(wal), "%s-wal", db_path);
	ck_assert_int_eq(access(wal, F_OK), 0);
	supp_close(s);
	/* Opening again finds the schema in place. */
	s = open_db();
	ck_assert_int_eq(supp_lookup(s, "a@example.com", NULL), 0);
	supp_close(s);
}
END_TEST

START_TEST(test_open_refuses)
{
	struct supp *s = (struct supp *)1;
	char path[192];
	FILE *f;

	/* Not a database. */
	snprintf(path, sizeof(path), "%s/junk.db", root);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("this is not an SQLite database, but long enough to have a header....\n"
	      "................................................................\n", f);
	fclose(f);
	ck_assert_int_eq(supp_open(path, &s), -EBADMSG);
	ck_assert_ptr_null(s);
	/* A directory where the file should be. */
	snprintf(path, sizeof(path), "%s/dir.db", root);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_lt(supp_open(path, &s), 0);
	ck_assert_int_eq(supp_open(NULL, &s), -EINVAL);
	ck_assert_str_ne(supp_strerror(-EBADMSG), "");
}
END_TEST

START_TEST(test_open_newer_schema)
{
	struct supp *s = open_db();
	char cmd[300];

	supp_close(s);
	snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'PRAGMA user_version = 99' 2>/dev/null",
	         db_path);
	if (system(cmd) != 0)
		return;         /* no sqlite3 shell here: nothing to check */
	s = (struct supp *)1;
	ck_assert_int_eq(supp_open(db_path, &s), -ENOTSUP);
	ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_add_lookup_nocase)
{
	struct supp *s = open_db();
	struct supp_entry e;

	ck_assert_int_eq(supp_add(s, "User.Name@Example.COM", "bounce", "5.1.1",
	                          "550 5.1.1 <User.Name@Example.COM>: no such user",
	                          "delivery", 1000), 1);
	ck_assert_int_eq(supp_lookup(s, "user.name@example.com", &e), 1);
	/* Stored as first given. */
	ck_assert_str_eq(e.address, "User.Name@Example.COM");
	ck_assert_str_eq(e.reason, "bounce");
	ck_assert_str_eq(e.status, "5.1.1");
	ck_assert_str_eq(e.response, "550 5.1.1 <User.Name@Example.COM>: no such user");
	ck_assert_str_eq(e.source, "delivery");
	ck_assert_int_eq(e.first_ms, 1000);
	ck_assert_int_eq(e.last_ms, 1000);
	ck_assert_int_eq(e.count, 1);
	supp_entry_free(&e);
	supp_entry_free(&e);    /* harmless twice */
	ck_assert_int_eq(supp_lookup(s, "USER.NAME@EXAMPLE.COM", NULL), 1);
	ck_assert_int_eq(supp_lookup(s, "user.name@example.co", &e), 0);
	ck_assert_ptr_null(e.address);
	/* Beyond ASCII, addresses compare as given. */
	ck_assert_int_eq(supp_add(s, "ユーザー@例え.jp", NULL, NULL, NULL, "admin", 5), 1);
	ck_assert_int_eq(supp_lookup(s, "ユーザー@例え.jp", NULL), 1);
	ck_assert_int_eq(supp_lookup(s, "ユーザ@例え.jp", NULL), 0);
	ck_assert_int_eq(supp_lookup(s, "ÄBC@example.com", NULL), 0);
	ck_assert_int_eq(supp_add(s, "Äbc@example.com", NULL, NULL, NULL, "admin", 5), 1);
	ck_assert_int_eq(supp_lookup(s, "äbc@example.com", NULL), 0);
	ck_assert_int_eq(supp_lookup(s, "Äbc@EXAMPLE.com", NULL), 1);
	supp_close(s);
}
END_TEST

START_TEST(test_add_twice)
{
	struct supp *s = open_db();
	struct supp_entry e;

	ck_assert_int_eq(supp_add(s, "a@example.com", "bounce", "5.1.1", "550 no such user",
	                          "delivery", 1000), 1);
	/* Seen again: count 2, last seen moves, NULL keeps the old text. */
	ck_assert_int_eq(supp_add(s, "A@EXAMPLE.COM", "mailbox disabled", "5.2.1", NULL,
	                          "dsn", 2000), 0);
	ck_assert_int_eq(supp_lookup(s, "a@example.com", &e), 1);
	ck_assert_str_eq(e.address, "a@example.com");
	ck_assert_int_eq(e.count, 2);
	ck_assert_int_eq(e.first_ms, 1000);
	ck_assert_int_eq(e.last_ms, 2000);
	ck_assert_str_eq(e.reason, "mailbox disabled");
	ck_assert_str_eq(e.status, "5.2.1");
	ck_assert_str_eq(e.response, "550 no such user");
	/* The source says how it came on the list: it stays. */
	ck_assert_str_eq(e.source, "delivery");
	supp_entry_free(&e);
	/* A clock that steps back does not move last seen back. */
	ck_assert_int_eq(supp_add(s, "a@example.com", NULL, NULL, NULL, NULL, 1500), 0);
	ck_assert_int_eq(supp_lookup(s, "a@example.com", &e), 1);
	ck_assert_int_eq(e.count, 3);
	ck_assert_int_eq(e.last_ms, 2000);
	supp_entry_free(&e);
	supp_close(s);
}
END_TEST

START_TEST(test_remove)
{
	struct supp *s = open_db();

	ck_assert_int_eq(supp_add(s, "a@example.com", NULL, NULL, NULL, "admin", 1), 1);
	ck_assert_int_eq(supp_remove(s, "A@Example.Com"), 1);
	ck_assert_int_eq(supp_lookup(s, "a@example.com", NULL), 0);
	ck_assert_int_eq(supp_remove(s, "a@example.com"), 0);
	ck_assert_int_eq(supp_remove(s, "not an address"), 0);
	/* Removed, then listed anew: count starts over. */
	ck_assert_int_eq(supp_add(s, "a@example.com", NULL, NULL, NULL, "admin", 1), 1);
	supp_close(s);
}
END_TEST

START_TEST(test_list_search)
{
	struct supp *s = open_db();
	struct seen seen = { 0 };

	ck_assert_int_eq(supp_list(s, NULL, collect, &seen), 0);
	ck_assert_int_eq(seen.calls, 0);
	ck_assert_int_eq(supp_add(s, "zed@example.org", "complaint", NULL, NULL, "import", 1), 1);
	ck_assert_int_eq(supp_add(s, "Bob@Example.com", "bounce", "5.1.1", NULL, "delivery", 1), 1);
	ck_assert_int_eq(supp_add(s, "alice@shop.example.jp", "bounce", "5.2.1", NULL, "dsn", 1),
	                 1);
	ck_assert_int_eq(supp_add(s, "50%_off@example.net", NULL, NULL, NULL, "admin", 1), 1);
	ck_assert_int_eq(supp_list(s, NULL, collect, &seen), 4);
	/* Ordered by address, ASCII case ignored. */
	ck_assert_str_eq(seen.text, "50%_off@example.net|-|-|1\n"
	                            "alice@shop.example.jp|bounce|5.2.1|1\n"
	                            "Bob@Example.com|bounce|5.1.1|1\n"
	                            "zed@example.org|complaint|-|1\n");
	/* By address, any case. */
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(supp_list(s, "EXAMPLE.COM", collect, &seen), 1);
	ck_assert_str_eq(seen.text, "Bob@Example.com|bounce|5.1.1|1\n");
	/* By reason. */
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(supp_list(s, "Complain", collect, &seen), 1);
	ck_assert_str_eq(seen.text, "zed@example.org|complaint|-|1\n");
	/* LIKE's own characters are plain text. */
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(supp_list(s, "%_", collect, &seen), 1);
	ck_assert_str_eq(seen.text, "50%_off@example.net|-|-|1\n");
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(supp_list(s, "_", collect, &seen), 1);
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(supp_list(s, "nobody", collect, &seen), 0);
	ck_assert_int_eq(supp_list(s, "", collect, &seen), 4);
	/* A callback can stop the walk. */
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(supp_list(s, NULL, stop_at_two, &seen), -ECANCELED);
	ck_assert_int_eq(seen.calls, 2);
	/* The statement was reset: the next walk starts over. */
	memset(&seen, 0, sizeof(seen));
	ck_assert_int_eq(supp_list(s, NULL, collect, &seen), 4);
	supp_close(s);
}
END_TEST

START_TEST(test_bad_addresses)
{
	static const char *const bad[] = {
		"", "example.com", "@example.com", "user@", "user@@",
		"user@example..com", "user@.example.com", "user@example.com.",
		"us er@example.com", "user@exa mple.com", "<user@example.com>",
		"user@example.com\r\nRCPT TO:<x@y>", "user\t@example.com", "a\x7f@example.com",
		"\"unterminated@example.com", "\"a\"b@example.com", "user@[1.2.3.4",
		"user@exa\xffmple.com", "\xc0\xaf@example.com", "a,b@example.com",
	};
	static const char *const good[] = {
		"a@b", "user+tag@example.com", "taro..yamada.@docomo.ne.jp",
		".dot@ezweb.ne.jp", "\"john doe\"@example.com", "\"a\\\"b\"@example.com",
		"user@[192.0.2.1]", "user@[IPv6:2001:db8::1]", "ユーザー@例え.jp",
		"o'brien@example.ie", "x_y@sub_domain.example.com",
	};
	struct supp *s = open_db();
	char longest[SUPP_ADDRESS_MAX + 2];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(!supp_address_valid(bad[i]), "accepted \"%s\"", bad[i]);
		ck_assert_int_eq(supp_add(s, bad[i], NULL, NULL, NULL, "admin", 1), -EINVAL);
		ck_assert_int_eq(supp_lookup(s, bad[i], NULL), 0);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(supp_address_valid(good[i]), "refused \"%s\"", good[i]);
		ck_assert_int_eq(supp_add(s, good[i], NULL, NULL, NULL, "admin", 1), 1);
	}
	ck_assert(!supp_address_valid(NULL));
	ck_assert_int_eq(supp_add(s, NULL, NULL, NULL, NULL, "admin", 1), -EINVAL);
	/* 320 bytes is the most. */
	memset(longest, 'a', sizeof(longest));
	memcpy(longest + SUPP_ADDRESS_MAX - 12, "@example.com", 13);
	ck_assert_uint_eq(strlen(longest), SUPP_ADDRESS_MAX);
	ck_assert(supp_address_valid(longest));
	memset(longest, 'a', sizeof(longest));
	memcpy(longest + SUPP_ADDRESS_MAX - 11, "@example.com", 13);
	ck_assert(!supp_address_valid(longest));
	supp_close(s);
}
END_TEST

START_TEST(test_import_ses)
{
	/* What the SES console and `aws sesv2 list-suppressed-destinations`
	 * tooling give: quoted header and fields, extra columns. */
	static const char csv[] =
		"\xEF\xBB\xBF\"EmailAddress\",\"Reason\",\"LastUpdateTime\"\n"
		"\"bounce@simulator.amazonses.com\",\"BOUNCE\",\"2024-03-01T09:30:00.000+09:00\"\n"
		"\"Complaint@Example.com\",\"COMPLAINT\",\"not a time\"\n"
		"\n"
		"\"x@example.org\",\"BOUNCE, hard\",\"2024-03-02 00:00:00 +0000\"\n";
	struct supp *s = open_db();
	struct supp_entry e;
	char err[200];
	long line = -1;
	FILE *f = mem(csv);

	ck_assert_int_eq(supp_import_csv(s, f, "import", 5000, &line, err, sizeof(err)), 3);
	fclose(f);
	ck_assert_int_eq(line, 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(supp_lookup(s, "BOUNCE@simulator.amazonses.com", &e), 1);
	ck_assert_str_eq(e.reason, "BOUNCE");
	ck_assert_str_eq(e.source, "import");
	ck_assert_ptr_null(e.status);
	ck_assert_int_eq(e.count, 1);
	/* 2024-03-01T00:30:00Z */
	ck_assert_int_eq(e.last_ms, 1709253000000LL);
	ck_assert_int_eq(e.first_ms, 1709253000000LL);
	supp_entry_free(&e);
	/* An unreadable SES time is only a hint: now is used. */
	ck_assert_int_eq(supp_lookup(s, "complaint@example.com", &e), 1);
	ck_assert_int_eq(e.last_ms, 5000);
	supp_entry_free(&e);
	ck_assert_int_eq(supp_lookup(s, "x@example.org", &e), 1);
	ck_assert_str_eq(e.reason, "BOUNCE, hard");
	ck_assert_int_eq(e.last_ms, 1709337600000LL);
	supp_entry_free(&e);
	supp_close(s);
}
END_TEST

START_TEST(test_import_crlf_and_names)
{
	static const char csv[] =
		"id,E-Mail,note\r\n"
		"1,a@example.com,\"two\r\nlines\"\r\n"
		"2,  b@example.com  ,\r\n"
		",,\r\n"
		"3,c@example.com,last line without CRLF";
	struct supp *s = open_db();
	struct supp_entry e;
	struct seen seen = { 0 };
	char err[200];
	long line = -1;
	FILE *f = mem(csv);

	ck_assert_int_eq(supp_import_csv(s, f, "import", 1, &line, err, sizeof(err)), 3);
	fclose(f);
	ck_assert_int_eq(supp_list(s, NULL, collect, &seen), 3);
	ck_assert_str_eq(seen.text, "a@example.com|-|-|1\n"
	                            "b@example.com|-|-|1\n"
	                            "c@example.com|-|-|1\n");
	ck_assert_int_eq(supp_lookup(s, "c@example.com", &e), 1);
	ck_assert_str_eq(e.source, "import");
	supp_entry_free(&e);
	supp_close(s);
}
END_TEST

/* The file must be refused whole, with the line of the first bad row. */
static void import_fails(const char *csv, long want_line, const char *want_err)
{
	struct supp *s = open_db();
	struct seen seen = { 0 };
	char err[200];
	long line = -1;
	FILE *f = mem(csv);

	ck_assert_int_eq(supp_import_csv(s, f, "import", 1, &line, err, sizeof(err)), -EINVAL);
	fclose(f);
	ck_assert_msg(line == want_line, "line %ld, want %ld (%s)", line, want_line, err);
	ck_assert_msg(strstr(err, want_err), "error \"%s\" lacks \"%s\"", err, want_err);
	ck_assert_int_eq(supp_list(s, NULL, collect, &seen), 0);
	supp_close(s);
}

START_TEST(test_import_bad)
{
	import_fails("address,reason\n"
	             "ok@example.com,bounce\n"
	             "\n"
	             "not-an-address,bounce\n"
	             "ok2@example.com,bounce\n",
	             4, "\"not-an-address\" is not a mail address");
	import_fails("address,reason\r\n"
	             "ok@example.com,\"two\r\nlines\"\r\n"
	             "bad@,x\r\n",
	             4, "is not a mail address");
	import_fails("address,reason\n"
	             "ok@example.com,bounce\n"
	             "a@example.com,bo\"unce\n",
	             3, "quote");
	import_fails("address,reason\n"
	             "a@example.com,\"never closed\n"
	             "b@example.com,x\n",
	             2, "not closed");
	import_fails("address,reason\n"
	             "a@example.com,x,extra\n",
	             2, "3 fields");
	import_fails("address,reason\n"
	             ",no address\n",
	             2, "no address");
	import_fails("name,reason\n"
	             "a@example.com,x\n",
	             1, "no address column");
	import_fails("email,EmailAddress\n"
	             "a@example.com,a@example.com\n",
	             1, "two columns");
	import_fails("", 1, "empty");
	import_fails("\n\n", 1, "empty");
	import_fails("address,count\n"
	             "a@example.com,0\n",
	             2, "count");
	import_fails("address,last_seen\n"
	             "a@example.com,2024-02-30T00:00:00Z\n",
	             2, "RFC 3339");
	import_fails("address,first_seen,last_seen\n"
	             "a@example.com,2024-03-02T00:00:00Z,2024-03-01T00:00:00Z\n",
	             2, "after");
}
END_TEST

START_TEST(test_import_bounded)
{
	size_t n = 70 * 1024;
	char *csv = malloc(n + 64);

	ck_assert_ptr_nonnull(csv);
	strcpy(csv, "address,reason\na@example.com,\"");
	memset(csv + strlen(csv), 'x', n);
	strcpy(csv + 30 + n, "\"\n");
	import_fails(csv, 2, "longer than");
	free(csv);
}
END_TEST

static int new_count;
static char new_seen[256];

static void on_new(void *arg, const char *address)
{
	(void)arg;
	new_count++;
	strncat(new_seen, address, sizeof(new_seen) - strlen(new_seen) - 2);
	strcat(new_seen, " ");
}

START_TEST(test_import_merge)
{
	static const char csv[] =
		"address,reason,count,last_seen\n"
		"old@example.com,newer reason,5,2030-01-01T00:00:00Z\n"
		"new@example.com,x,1,2030-01-01T00:00:00Z\n"
		"NEW@example.com,y,2,2030-01-02T00:00:00Z\n";
	struct supp *s = open_db();
	struct supp_entry e;
	long line;
	FILE *f;

	ck_assert_int_eq(supp_add(s, "old@example.com", "bounce", "5.1.1", NULL, "delivery",
	                          1000), 1);
	new_count = 0;
	new_seen[0] = '\0';
	f = mem(csv);
	ck_assert_int_eq(supp_import_csv_cb(s, f, "import", 2000, on_new, NULL, &line, NULL, 0),
	                 3);
	fclose(f);
	ck_assert_int_eq(new_count, 1);
	ck_assert_str_eq(new_seen, "new@example.com ");
	ck_assert_int_eq(supp_lookup(s, "old@example.com", &e), 1);
	ck_assert_int_eq(e.count, 5);
	ck_assert_int_eq(e.first_ms, 1000);
	ck_assert_int_eq(e.last_ms, 1893456000000LL);
	ck_assert_str_eq(e.reason, "newer reason");
	ck_assert_str_eq(e.status, "5.1.1");
	ck_assert_str_eq(e.source, "delivery");
	supp_entry_free(&e);
	ck_assert_int_eq(supp_lookup(s, "new@example.com", &e), 1);
	ck_assert_int_eq(e.count, 2);
	ck_assert_str_eq(e.reason, "y");
	supp_entry_free(&e);
	/* Twice the same file: nothing changes, nothing is new. */
	new_count = 0;
	f = mem(csv);
	ck_assert_int_eq(supp_import_csv_cb(s, f, "import", 3000, on_new, NULL, &line, NULL, 0),
	                 3);
	fclose(f);
	ck_assert_int_eq(new_count, 0);
	ck_assert_int_eq(supp_lookup(s, "old@example.com", &e), 1);
	ck_assert_int_eq(e.count, 5);
	supp_entry_free(&e);
	supp_close(s);
}
END_TEST

static char *export_text(struct supp *s, int want)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(supp_export_csv(s, f), want);
	fclose(f);
	return text;
}

START_TEST(test_export_roundtrip)
{
	struct supp *s = open_db();
	struct supp *t;
	char *first, *second;
	char err[200];
	long line;
	FILE *f;

	ck_assert_int_eq(supp_add(s, "a@example.com", "bounce", "5.1.1",
	                          "550-5.1.1 \"quoted\", with comma\r\n550 5.1.1 second line",
	                          "delivery", 1767225600123LL), 1);
	ck_assert_int_eq(supp_add(s, "a@example.com", NULL, NULL, NULL, "dsn",
	                          1767225700456LL), 0);
	ck_assert_int_eq(supp_add(s, "ユーザー@例え.jp", " padded ", NULL, NULL, "admin", 1), 1);
	ck_assert_int_eq(supp_add(s, "Z@Example.com", "", NULL, NULL, "import", 0), 1);
	first = export_text(s, 3);
	ck_assert_str_eq(first,
		"address,reason,status,response,source,first_seen,last_seen,count\n"
		"a@example.com,bounce,5.1.1,\"550-5.1.1 \"\"quoted\"\", with comma\r\n"
		"550 5.1.1 second line\",delivery,2026-01-01T00:00:00.123Z,"
		"2026-01-01T00:01:40.456Z,2\n"
		"Z@Example.com,,,,import,1970-01-01T00:00:00.000Z,"
		"1970-01-01T00:00:00.000Z,1\n"
		"ユーザー@例え.jp,\" padded \",,,admin,1970-01-01T00:00:00.001Z,"
		"1970-01-01T00:00:00.001Z,1\n");
	/* Into a second, empty database: the same entries come out. */
	snprintf(db_path + strlen(db_path) - 3, 8, "2.db");
	ck_assert_int_eq(supp_open(db_path, &t), 0);
	f = mem(first);
	ck_assert_int_eq(supp_import_csv(t, f, "import", 99, &line, err, sizeof(err)), 3);
	fclose(f);
	second = export_text(t, 3);
	ck_assert_str_eq(second, first);
	free(first);
	free(second);
	supp_close(t);
	supp_close(s);
}
END_TEST

/*
 * The times an import reads and refuses: clock_rfc3339_parse()'s rules
 * (tests/unit/test_clock.c has them all); a few here show the import
 * uses them and names the column it refuses.
 */
START_TEST(test_import_times)
{
	static const struct {
		const char *in;
		bool ok;
		long long ms;
	} cases[] = {
		{ "2026-11-26T06:14:04Z", true, 1795673644000LL },
		{ "2026-11-26T06:14:04.123999Z", true, 1795673644123LL },
		{ "2026-11-26 15:14:04 +0900", true, 1795673644000LL },
		{ "1969-12-31T23:59:59.999Z", true, -1LL },
		{ "2026-02-31T00:00:00Z", false, 0 },
		{ "2026-11-26T06:14:04", false, 0 },
		{ "20261126T061404Z", false, 0 },
		{ "0000-01-01T00:00:00Z", false, 0 },  /* GLib's calendar starts at year 1 */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char csv[200], err[200];
		long line = -1;
		struct supp_entry e;

		snprintf(db_path + strlen(db_path) - 3, 16, "%zu.db", i);
		struct supp *s = open_db();
		snprintf(csv, sizeof(csv), "address,last_seen\na@example.com,\"%s\"\n", cases[i].in);
		FILE *f = mem(csv);
		int rc = supp_import_csv(s, f, "import", 5000, &line, err, sizeof(err));
		fclose(f);
		if (!cases[i].ok) {
			ck_assert_msg(rc == -EINVAL, "\"%s\" accepted", cases[i].in);
			ck_assert_msg(strstr(err, "last_seen \"") && strstr(err, "is not an RFC 3339 time"),
			              "%s: %s", cases[i].in, err);
		} else {
			ck_assert_msg(rc == 1, "\"%s\" refused: %s", cases[i].in, err);
			ck_assert_int_eq(supp_lookup(s, "a@example.com", &e), 1);
			ck_assert_msg(e.last_ms == cases[i].ms, "%s: %lld", cases[i].in,
			              (long long)e.last_ms);
			supp_entry_free(&e);
		}
		supp_close(s);
	}
}
END_TEST

/* The times an export writes: UTC, milliseconds, 'Z', the year in four
 * digits; before 1970 too. */
START_TEST(test_export_times)
{
	static const struct {
		long long ms;
		const char *out;
	} cases[] = {
		{ 1795673644123LL, "2026-11-26T06:14:04.123Z" },
		{ 0, "1970-01-01T00:00:00.000Z" },
		{ -1, "1969-12-31T23:59:59.999Z" },
		{ -1000, "1969-12-31T23:59:59.000Z" },
		{ -1001, "1969-12-31T23:59:58.999Z" },
		{ -61000000000000LL, "0036-12-26T11:33:20.000Z" },
		{ -62135596800000LL, "0001-01-01T00:00:00.000Z" },
		/* Outside the years 1 to 9999 (util/clock.h): the number. */
		{ -62135596800001LL, "-62135596800001" },
		{ 253402300800000LL, "253402300800000" },
		{ 253402300799999LL, "9999-12-31T23:59:59.999Z" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char want[300];

		snprintf(db_path + strlen(db_path) - 3, 16, "%zu.db", i);
		struct supp *s = open_db();
		ck_assert_int_eq(supp_add(s, "a@example.com", NULL, NULL, NULL, "admin",
		                          cases[i].ms), 1);
		char *text = export_text(s, 1);
		snprintf(want, sizeof(want),
		         "address,reason,status,response,source,first_seen,last_seen,count\n"
		         "a@example.com,,,,admin,%s,%s,1\n", cases[i].out, cases[i].out);
		ck_assert_str_eq(text, want);
		free(text);
		supp_close(s);
	}
}
END_TEST

START_TEST(test_two_connections)
{
	struct supp *a = open_db();
	struct supp *b = open_db();
	int64_t va, vb, v;
	FILE *f;
	long line;

	va = supp_data_version(a);
	vb = supp_data_version(b);
	ck_assert_int_gt(va, 0);
	ck_assert_int_gt(vb, 0);
	/* Nothing changed: the same value, however often asked. */
	ck_assert_int_eq(supp_data_version(b), vb);
	ck_assert_int_eq(supp_add(a, "x@example.com", "bounce", "5.1.1", NULL, "delivery", 1), 1);
	/* The writer's own change moves its counter too. */
	v = supp_data_version(a);
	ck_assert_int_ne(v, va);
	va = v;
	/* The other connection sees the entry and a new version. */
	ck_assert_int_eq(supp_lookup(b, "X@example.com", NULL), 1);
	v = supp_data_version(b);
	ck_assert_int_ne(v, vb);
	vb = v;
	ck_assert_int_eq(supp_data_version(b), vb);
	/* And the other way round, for remove and import. */
	ck_assert_int_eq(supp_remove(b, "x@example.com"), 1);
	ck_assert_int_ne(supp_data_version(a), va);
	va = supp_data_version(a);
	ck_assert_int_eq(supp_lookup(a, "x@example.com", NULL), 0);
	f = mem("email\ny@example.com\n");
	ck_assert_int_eq(supp_import_csv(b, f, "import", 1, &line, NULL, 0), 1);
	fclose(f);
	ck_assert_int_ne(supp_data_version(a), va);
	ck_assert_int_eq(supp_lookup(a, "y@example.com", NULL), 1);
	/* Both write, one after the other, while both are open. */
	ck_assert_int_eq(supp_add(a, "y@example.com", NULL, NULL, NULL, "delivery", 2), 0);
	ck_assert_int_eq(supp_add(b, "y@example.com", NULL, NULL, NULL, "delivery", 3), 0);
	struct supp_entry e;
	ck_assert_int_eq(supp_lookup(a, "y@example.com", &e), 1);
	ck_assert_int_eq(e.count, 3);
	supp_entry_free(&e);
	supp_close(a);
	supp_close(b);
}
END_TEST

/* A reader in the middle of a walk does not stop a writer (WAL). */
static struct supp *writer;
static int add_during_walk(void *arg, const struct supp_entry *e)
{
	(void)e;
	(*(int *)arg)++;
	return supp_add(writer, "during@example.com", NULL, NULL, NULL, "delivery", 1) == 1 ?
	       0 : -EIO;
}

START_TEST(test_write_during_read)
{
	struct supp *a = open_db();
	int calls = 0;

	writer = open_db();
	ck_assert_int_eq(supp_add(a, "first@example.com", NULL, NULL, NULL, "admin", 1), 1);
	ck_assert_int_eq(supp_list(a, NULL, add_during_walk, &calls), 1);
	ck_assert_int_eq(calls, 1);
	ck_assert_int_eq(supp_lookup(a, "during@example.com", NULL), 1);
	supp_close(writer);
	supp_close(a);
}
END_TEST

static Suite *suppression_suite(void)
{
	Suite *s = suite_create("suppression");
	TCase *tc = tcase_create("store");

	tcase_add_unchecked_fixture(tc, setup_run, teardown_run);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_open_creates);
	tcase_add_test(tc, test_open_refuses);
	tcase_add_test(tc, test_open_newer_schema);
	tcase_add_test(tc, test_add_lookup_nocase);
	tcase_add_test(tc, test_add_twice);
	tcase_add_test(tc, test_remove);
	tcase_add_test(tc, test_list_search);
	tcase_add_test(tc, test_bad_addresses);
	tcase_add_test(tc, test_import_ses);
	tcase_add_test(tc, test_import_crlf_and_names);
	tcase_add_test(tc, test_import_bad);
	tcase_add_test(tc, test_import_bounded);
	tcase_add_test(tc, test_import_merge);
	tcase_add_test(tc, test_export_roundtrip);
	tcase_add_test(tc, test_import_times);
	tcase_add_test(tc, test_export_times);
	tcase_add_test(tc, test_two_connections);
	tcase_add_test(tc, test_write_during_read);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suppression_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
