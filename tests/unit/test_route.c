/*
 * NAME
 *	test_route - unit tests of relay/route (SPEC §4)
 * SUMMARY
 *	Every test writes a small configuration into a fresh temporary
 *	directory and loads it with config_load(), so that the entries are
 *	normalised exactly as in production, then asks route_decide() (or
 *	the helpers below it) about one mail.
 * DESCRIPTION
 *	Covered: every row of SPEC §4's table, read from the From: header,
 *	from the envelope with match_on = envelope_from, and from the envelope
 *	when the header is missing; subdomains at several depths and
 *	look-alikes; trailing dots; case; IDN in both forms; address entries
 *	against domain entries and which entry is named; display names,
 *	comments and encoded words that look like a verified address; groups;
 *	several mailboxes; two From: fields; missing and unparseable headers;
 *	the null sender; verified entries without a [service] host.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	A directory under $TMPDIR (or /tmp) per test, removed afterwards.
 */
#include "relay/route.h"

#include <check.h>
#include <ftw.h>
#include <gmime/gmime.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SERVICE true
#define NO_SERVICE false

static char tdir[256];
static char conf[300];
static struct config *cfg;

static void setup(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(tdir, sizeof(tdir), "%s/hk-route-XXXXXX", t && *t ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	snprintf(conf, sizeof(conf), "%s/hikyaku.conf", tdir);
	cfg = NULL;
	route_init();
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void teardown(void)
{
	config_free(cfg);
	cfg = NULL;
	nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Loads a configuration whose verified_domains is domains (a '\n' in it
 * starts an indented continuation line, as an operator writes a list),
 * with the given match_on and with or without a [service] host.
 */
static void use(const char *domains, const char *match_on, bool service)
{
	FILE *fp = fopen(conf, "w");
	struct config_diags d = { 0 };

	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "[server]\nhostname = relay.example.jp\n[routing]\nverified_domains = ");
	for (const char *p = domains; *p; p++) {
		if (*p == '\n')
			fputs("\n    ", fp);
		else
			fputc(*p, fp);
	}
	fprintf(fp, "\nmatch_on = %s\n", match_on);
	if (service)
		fprintf(fp, "[service]\nhost = email-smtp.ap-northeast-1.amazonaws.com\n"
		            "envelope_from = bounces@interfactory1.co.jp\n");
	ck_assert_int_eq(fclose(fp), 0);
	config_free(cfg);
	cfg = NULL;
	int rc = config_load(conf, &cfg, &d);
	if (rc != 0)
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n", d.v[i].text);
	config_diags_free(&d);
	ck_assert_int_eq(rc, 0);
	ck_assert_ptr_nonnull(cfg);
}

/* The decision for one mail: header is the From: value, NULL when absent. */
static struct route_decision decide(const char *envelope, const char *header)
{
	struct route_decision d;

	route_decide(cfg, envelope, header, header ? strlen(header) : 0, header ? 1 : 0, &d);
	return d;
}

/*
 * Checks a decision: route, and the entry named (NULL: none), and frees
 * it. all_matched must be true exactly when an entry is named.
 */
#define EXPECT(d_, route_, matched_) do {						\
	struct route_decision dd_ = (d_);						\
	const char *want_ = (matched_);							\
	ck_assert_msg(dd_.route == (route_), "line %d: route %s, want %s", __LINE__,	\
	              route_name(dd_.route), route_name(route_));			\
	if (want_) {									\
		ck_assert_msg(dd_.matched != NULL, "line %d: nothing matched, want \"%s\"",	\
		              __LINE__, want_);						\
		ck_assert_str_eq(dd_.matched->entry, want_);				\
		ck_assert(dd_.all_matched);						\
	} else {									\
		ck_assert_msg(dd_.matched == NULL, "line %d: matched \"%s\"", __LINE__,	\
		              dd_.matched->entry);					\
		ck_assert(!dd_.all_matched);						\
	}										\
	route_decision_free(&dd_);							\
} while (0)

/* An envelope sender that no test configuration verifies. */
#define UNVERIFIED "app@unverified.example"

/* ------------------------------------------------------------------ */

static const struct {
	const char *domains;
	const char *from;
	const char *matched;    /* NULL: no match, direct */
} spec_table[] = {
	/* 1 */ { "interfactory1.co.jp", "test@interfactory1.co.jp", "interfactory1.co.jp" },
	/* 2 */ { "interfactory1.co.jp", "test@example.com", NULL },
	/* 3 */ { "interfactory1.co.jp", "test@test.interfactory1.co.jp", "interfactory1.co.jp" },
	/* 4 */ { "interfactory1.co.jp", "test@testinterfactory1.co.jp", NULL },
	/* 5 */ { "interfactory1.co.jp,example.co.jp", "test@interfactory1.co.jp",
		  "interfactory1.co.jp" },
	/* 6 */ { "interfactory1.co.jp\ntest.com", "test@interfactory1.co.jp",
		  "interfactory1.co.jp" },
	/* 7 */ { "test@testinterfactory1.co.jp", "test@testinterfactory1.co.jp",
		  "test@testinterfactory1.co.jp" },
	/* 8 */ { "test@testinterfactory1.co.jp", "test@example.com", NULL },
	/* 9 */ { "", "test@testinterfactory1.co.jp", NULL },
};

START_TEST(test_spec_table)
{
	for (size_t i = 0; i < sizeof(spec_table) / sizeof(spec_table[0]); i++) {
		const char *from = spec_table[i].from, *m = spec_table[i].matched;
		enum route_kind want = m ? ROUTE_SERVICE : ROUTE_DIRECT;
		char hdr[200];

		/* From: header decides; the envelope is unverified. */
		use(spec_table[i].domains, "header_from", SERVICE);
		EXPECT(decide(UNVERIFIED, from), want, m);
		snprintf(hdr, sizeof(hdr), "Shop <%s>", from);
		EXPECT(decide(UNVERIFIED, hdr), want, m);
		/* No From: header: the envelope decides. */
		EXPECT(decide(from, NULL), want, m);
		/* match_on = envelope_from: the header is not read. */
		use(spec_table[i].domains, "envelope_from", SERVICE);
		EXPECT(decide(from, UNVERIFIED), want, m);
		/* The route_match() of the row, alone. */
		const struct config_domain *e = route_match(cfg, from);
		if (m)
			ck_assert_str_eq(e->entry, m);
		else
			ck_assert_ptr_null(e);
	}
}
END_TEST

START_TEST(test_subdomains)
{
	static const char *const yes[] = {
		"a@interfactory1.co.jp",
		"a@mail.interfactory1.co.jp",
		"a@x.mail.interfactory1.co.jp",
		"a@1.2.3.4.5.6.7.8.interfactory1.co.jp",
		"a@xn--r8jz45g.interfactory1.co.jp",
	};
	static const char *const no[] = {
		"a@testinterfactory1.co.jp",        /* no dot boundary (row 4) */
		"a@test-interfactory1.co.jp",
		"a@interfactory1.co.jp.evil.example",
		"a@interfactory1.co.jpx",
		"a@interfactory1.co",
		"a@nterfactory1.co.jp",
		"a@co.jp",
		"a@jp",
		"a@[192.0.2.1]",
	};

	use("interfactory1.co.jp", "envelope_from", SERVICE);
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		EXPECT(decide(yes[i], NULL), ROUTE_SERVICE, "interfactory1.co.jp");
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		EXPECT(decide(no[i], NULL), ROUTE_DIRECT, NULL);

	/* A short entry covers everything below it, on label boundaries. */
	use("co.jp", "envelope_from", SERVICE);
	EXPECT(decide("a@interfactory1.co.jp", NULL), ROUTE_SERVICE, "co.jp");
	EXPECT(decide("a@b.c.d.co.jp", NULL), ROUTE_SERVICE, "co.jp");
	EXPECT(decide("a@xco.jp", NULL), ROUTE_DIRECT, NULL);
}
END_TEST

START_TEST(test_trailing_dots)
{
	/* Dot on the entry's side. */
	use("interfactory1.co.jp., test@shop.example.jp.", "envelope_from", SERVICE);
	EXPECT(decide("a@interfactory1.co.jp", NULL), ROUTE_SERVICE, "interfactory1.co.jp.");
	EXPECT(decide("a@interfactory1.co.jp.", NULL), ROUTE_SERVICE, "interfactory1.co.jp.");
	EXPECT(decide("a@sub.interfactory1.co.jp.", NULL), ROUTE_SERVICE, "interfactory1.co.jp.");
	EXPECT(decide("test@shop.example.jp.", NULL), ROUTE_SERVICE, "test@shop.example.jp.");
	EXPECT(decide("test@shop.example.jp", NULL), ROUTE_SERVICE, "test@shop.example.jp.");
	/* One trailing dot only: "x.jp.." is no domain. */
	EXPECT(decide("a@interfactory1.co.jp..", NULL), ROUTE_DIRECT, NULL);
	EXPECT(decide("a@.interfactory1.co.jp", NULL), ROUTE_DIRECT, NULL);

	/* Dot on the address's side only, and in the header. */
	use("interfactory1.co.jp", "header_from", SERVICE);
	EXPECT(decide(UNVERIFIED, "a@interfactory1.co.jp."), ROUTE_SERVICE, "interfactory1.co.jp");
	EXPECT(decide(UNVERIFIED, "A <a@interfactory1.co.jp.>"), ROUTE_SERVICE,
	       "interfactory1.co.jp");
	EXPECT(decide("a@interfactory1.co.jp.", NULL), ROUTE_SERVICE, "interfactory1.co.jp");
}
END_TEST

START_TEST(test_case)
{
	use("InterFactory1.CO.JP, Info@Shop.Example.JP", "header_from", SERVICE);
	EXPECT(decide(UNVERIFIED, "TEST@INTERFACTORY1.CO.JP"), ROUTE_SERVICE, "InterFactory1.CO.JP");
	EXPECT(decide(UNVERIFIED, "test@Mail.InterFactory1.co.jp"), ROUTE_SERVICE,
	       "InterFactory1.CO.JP");
	EXPECT(decide(UNVERIFIED, "INFO@shop.example.jp"), ROUTE_SERVICE, "Info@Shop.Example.JP");
	EXPECT(decide(UNVERIFIED, "info@SHOP.EXAMPLE.JP"), ROUTE_SERVICE, "Info@Shop.Example.JP");
	EXPECT(decide(UNVERIFIED, "sales@shop.example.jp"), ROUTE_DIRECT, NULL);
	EXPECT(decide("Info@Shop.Example.Jp", NULL), ROUTE_SERVICE, "Info@Shop.Example.JP");
}
END_TEST

START_TEST(test_idn)
{
	/* Entry as a U-label, address as an A-label, and the reverse. */
	use("例え.jp", "header_from", SERVICE);
	EXPECT(decide(UNVERIFIED, "user@xn--r8jz45g.jp"), ROUTE_SERVICE, "例え.jp");
	EXPECT(decide(UNVERIFIED, "user@例え.jp"), ROUTE_SERVICE, "例え.jp");
	EXPECT(decide(UNVERIFIED, "テスト <user@例え.jp>"), ROUTE_SERVICE, "例え.jp");
	EXPECT(decide(UNVERIFIED, "user@shop.例え.jp"), ROUTE_SERVICE, "例え.jp");
	EXPECT(decide(UNVERIFIED, "user@XN--R8JZ45G.JP"), ROUTE_SERVICE, "例え.jp");
	EXPECT(decide("user@例え.jp.", NULL), ROUTE_SERVICE, "例え.jp");
	EXPECT(decide(UNVERIFIED, "user@例えば.jp"), ROUTE_DIRECT, NULL);

	use("xn--r8jz45g.jp", "header_from", SERVICE);
	EXPECT(decide(UNVERIFIED, "user@例え.jp"), ROUTE_SERVICE, "xn--r8jz45g.jp");
	EXPECT(decide(UNVERIFIED, "user@xn--r8jz45g.jp"), ROUTE_SERVICE, "xn--r8jz45g.jp");
	EXPECT(decide("山田@例え.jp", NULL), ROUTE_SERVICE, "xn--r8jz45g.jp");

	/* An address entry with a UTF-8 local part. */
	use("山田@例え.jp", "envelope_from", SERVICE);
	EXPECT(decide("山田@xn--r8jz45g.jp", NULL), ROUTE_SERVICE, "山田@例え.jp");
	EXPECT(decide("山田@例え.jp", NULL), ROUTE_SERVICE, "山田@例え.jp");
	EXPECT(decide("田中@例え.jp", NULL), ROUTE_DIRECT, NULL);

	/* A domain that is not a valid IDN matches nothing. */
	use("example.jp", "envelope_from", SERVICE);
	EXPECT(decide("a@xn--zz.example.jp", NULL), ROUTE_DIRECT, NULL);
	EXPECT(decide("a@-bad.example.jp", NULL), ROUTE_DIRECT, NULL);
	EXPECT(decide("a@bad_label.example.jp", NULL), ROUTE_DIRECT, NULL);
}
END_TEST

START_TEST(test_address_entries)
{
	use("info@shop.example.jp", "envelope_from", SERVICE);
	EXPECT(decide("info@shop.example.jp", NULL), ROUTE_SERVICE, "info@shop.example.jp");
	EXPECT(decide("sales@shop.example.jp", NULL), ROUTE_DIRECT, NULL);
	/* An address entry covers that address, not its domain's children. */
	EXPECT(decide("info@mail.shop.example.jp", NULL), ROUTE_DIRECT, NULL);
	EXPECT(decide("info@example.jp", NULL), ROUTE_DIRECT, NULL);
	EXPECT(decide("xinfo@shop.example.jp", NULL), ROUTE_DIRECT, NULL);
	/* The quotes of "info" are semantically invisible (RFC 5322 §3.2.4). */
	EXPECT(decide("\"info\"@shop.example.jp", NULL), ROUTE_SERVICE, "info@shop.example.jp");
	EXPECT(decide("\"in\\fo\"@shop.example.jp", NULL), ROUTE_SERVICE, "info@shop.example.jp");
	EXPECT(decide("\"info \"@shop.example.jp", NULL), ROUTE_DIRECT, NULL);

	/* Mixed lists: the most specific entry is named, whatever the order. */
	use("example.jp, info@shop.example.jp, shop.example.jp", "envelope_from", SERVICE);
	EXPECT(decide("info@shop.example.jp", NULL), ROUTE_SERVICE, "info@shop.example.jp");
	EXPECT(decide("sales@shop.example.jp", NULL), ROUTE_SERVICE, "shop.example.jp");
	EXPECT(decide("sales@a.shop.example.jp", NULL), ROUTE_SERVICE, "shop.example.jp");
	EXPECT(decide("sales@other.example.jp", NULL), ROUTE_SERVICE, "example.jp");
	use("shop.example.jp, example.jp", "envelope_from", SERVICE);
	EXPECT(decide("sales@shop.example.jp", NULL), ROUTE_SERVICE, "shop.example.jp");
}
END_TEST

START_TEST(test_display_names_and_comments)
{
	use("interfactory1.co.jp", "header_from", SERVICE);
	/* The verified-looking text is a display name: evil decides. */
	EXPECT(decide("a@interfactory1.co.jp", "\"test@interfactory1.co.jp\" <evil@example.com>"),
	       ROUTE_DIRECT, NULL);
	EXPECT(decide("a@interfactory1.co.jp", "(test@interfactory1.co.jp) evil@example.com"),
	       ROUTE_DIRECT, NULL);
	EXPECT(decide("a@interfactory1.co.jp", "evil@example.com (test@interfactory1.co.jp)"),
	       ROUTE_DIRECT, NULL);
	EXPECT(decide("a@interfactory1.co.jp",
	              "\"test@interfactory1.co.jp\" (test@interfactory1.co.jp) "
	              "<evil(test@interfactory1.co.jp)@example.com>"),
	       ROUTE_DIRECT, NULL);
	/* And the other way round: the address decides, not the name. */
	EXPECT(decide(UNVERIFIED, "\"evil@example.com\" <test@interfactory1.co.jp>"),
	       ROUTE_SERVICE, "interfactory1.co.jp");
	EXPECT(decide(UNVERIFIED, "test@interfactory1.co.jp (evil@example.com)"),
	       ROUTE_SERVICE, "interfactory1.co.jp");
	/* A source route never decides (RFC 5322 §4.4). */
	EXPECT(decide(UNVERIFIED, "<@interfactory1.co.jp:evil@example.com>"), ROUTE_DIRECT, NULL);
	EXPECT(decide(UNVERIFIED, "<@a.example,@b.example:test@interfactory1.co.jp>"),
	       ROUTE_SERVICE, "interfactory1.co.jp");

	char **a = NULL;
	const char *v = "\"test@interfactory1.co.jp\" <evil@example.com>";
	ck_assert_int_eq(route_header_addrs(v, strlen(v), &a), 1);
	ck_assert_str_eq(a[0], "evil@example.com");
	route_addrs_free(a, 1);
	v = "(test@interfactory1.co.jp) evil@example.com (test@interfactory1.co.jp)";
	ck_assert_int_eq(route_header_addrs(v, strlen(v), &a), 1);
	ck_assert_str_eq(a[0], "evil@example.com");
	route_addrs_free(a, 1);

	/*
	 * An unquoted '@' in a display name is not RFC 5322: the value is
	 * unparseable and the envelope decides, never the name.
	 */
	v = "test@interfactory1.co.jp <evil@example.com>";
	ck_assert_int_eq(route_header_addrs(v, strlen(v), &a), -1);
	ck_assert_ptr_null(a);
	EXPECT(decide(UNVERIFIED, v), ROUTE_DIRECT, NULL);
}
END_TEST

START_TEST(test_encoded_words)
{
	/* "test@interfactory1.co.jp" in base64 and in Q encoding. */
	static const char *const b64 =
		"=?UTF-8?B?dGVzdEBpbnRlcmZhY3RvcnkxLmNvLmpw?= <evil@example.com>";
	static const char *const q =
		"=?UTF-8?Q?test=40interfactory1=2Eco=2Ejp?= <evil@example.com>";

	use("interfactory1.co.jp", "header_from", SERVICE);
	EXPECT(decide("a@interfactory1.co.jp", b64), ROUTE_DIRECT, NULL);
	EXPECT(decide("a@interfactory1.co.jp", q), ROUTE_DIRECT, NULL);
	/* "例え" as a display name: the address decides. */
	EXPECT(decide(UNVERIFIED, "=?UTF-8?B?5L6L44GI?= <test@interfactory1.co.jp>"),
	       ROUTE_SERVICE, "interfactory1.co.jp");
	EXPECT(decide(UNVERIFIED, "=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= <test@interfactory1.co.jp>"),
	       ROUTE_SERVICE, "interfactory1.co.jp");
	/*
	 * An encoded word is never decoded into an address (RFC 2047 §5):
	 * here it is an addr-spec of plain atoms whose domain,
	 * "interfactory1.co.jp?=", is no host name.
	 */
	EXPECT(decide("a@interfactory1.co.jp", "=?UTF-8?Q?test@interfactory1.co.jp?="),
	       ROUTE_DIRECT, NULL);
	char **a = NULL;
	ck_assert_int_eq(route_header_addrs(b64, strlen(b64), &a), 1);
	ck_assert_str_eq(a[0], "evil@example.com");
	route_addrs_free(a, 1);
}
END_TEST

START_TEST(test_groups)
{
	use("interfactory1.co.jp, example.co.jp", "header_from", SERVICE);
	EXPECT(decide(UNVERIFIED, "Shop: a@interfactory1.co.jp, b@test.interfactory1.co.jp;"),
	       ROUTE_SERVICE, "interfactory1.co.jp");
	EXPECT(decide(UNVERIFIED, "Shop: b@example.co.jp, a@interfactory1.co.jp;"),
	       ROUTE_SERVICE, "example.co.jp");
	EXPECT(decide(UNVERIFIED, "Shop: a@interfactory1.co.jp, b@example.com;"),
	       ROUTE_DIRECT, NULL);
	EXPECT(decide(UNVERIFIED, "Shop: a@interfactory1.co.jp;, Other: b@example.com;"),
	       ROUTE_DIRECT, NULL);
	/* An empty group besides a mailbox adds nothing. */
	EXPECT(decide(UNVERIFIED, "Nobody: ;, a@interfactory1.co.jp"),
	       ROUTE_SERVICE, "interfactory1.co.jp");
	/* An empty group alone is no From: at all: the envelope decides. */
	EXPECT(decide(UNVERIFIED, "Undisclosed: ;"), ROUTE_DIRECT, NULL);
	EXPECT(decide("a@interfactory1.co.jp", "Undisclosed: ;"), ROUTE_SERVICE,
	       "interfactory1.co.jp");

	char **a = NULL;
	const char *v = "Shop: A <a@x.jp>, (c) b@y.jp; , c@z.jp";
	ck_assert_int_eq(route_header_addrs(v, strlen(v), &a), 3);
	ck_assert_str_eq(a[0], "a@x.jp");
	ck_assert_str_eq(a[1], "b@y.jp");
	ck_assert_str_eq(a[2], "c@z.jp");
	route_addrs_free(a, 3);
}
END_TEST

START_TEST(test_several_mailboxes)
{
	use("interfactory1.co.jp, example.co.jp", "header_from", SERVICE);
	/* Every address must match; "matched" names the first one's entry. */
	EXPECT(decide(UNVERIFIED, "a@interfactory1.co.jp, b@example.co.jp"),
	       ROUTE_SERVICE, "interfactory1.co.jp");
	EXPECT(decide(UNVERIFIED, "B <b@example.co.jp>, A <a@interfactory1.co.jp>"),
	       ROUTE_SERVICE, "example.co.jp");
	/* One unverified address is enough to go direct, wherever it is. */
	EXPECT(decide("a@interfactory1.co.jp", "a@interfactory1.co.jp, evil@example.com"),
	       ROUTE_DIRECT, NULL);
	EXPECT(decide("a@interfactory1.co.jp", "evil@example.com, a@interfactory1.co.jp"),
	       ROUTE_DIRECT, NULL);
	EXPECT(decide("a@interfactory1.co.jp",
	              "a@interfactory1.co.jp, b@example.co.jp, c@testinterfactory1.co.jp"),
	       ROUTE_DIRECT, NULL);

	/* Folded over two lines, as a client may send it. */
	EXPECT(decide(UNVERIFIED, "A <a@interfactory1.co.jp>,\r\n\tB <b@example.co.jp>"),
	       ROUTE_SERVICE, "interfactory1.co.jp");

	/* from is F's first address. */
	struct route_decision d = decide(UNVERIFIED, "B <b@example.co.jp>, a@interfactory1.co.jp");
	ck_assert_str_eq(d.from, "b@example.co.jp");
	route_decision_free(&d);
	ck_assert_ptr_null(d.from);
}
END_TEST

START_TEST(test_two_from_fields)
{
	struct route_decision d;
	const char *v = "a@interfactory1.co.jp";

	use("interfactory1.co.jp", "header_from", SERVICE);
	route_decide(cfg, "a@interfactory1.co.jp", v, strlen(v), 2, &d);
	EXPECT(d, ROUTE_DIRECT, NULL);
	route_decide(cfg, "a@interfactory1.co.jp", v, strlen(v), 3, &d);
	EXPECT(d, ROUTE_DIRECT, NULL);
	/* Even when the envelope decides. */
	use("interfactory1.co.jp", "envelope_from", SERVICE);
	route_decide(cfg, "a@interfactory1.co.jp", v, strlen(v), 2, &d);
	EXPECT(d, ROUTE_DIRECT, NULL);
}
END_TEST

START_TEST(test_missing_header)
{
	struct route_decision d;

	use("interfactory1.co.jp", "header_from", SERVICE);
	EXPECT(decide("a@interfactory1.co.jp", NULL), ROUTE_SERVICE, "interfactory1.co.jp");
	EXPECT(decide(UNVERIFIED, NULL), ROUTE_DIRECT, NULL);
	/* No From: field counted: the value is not looked at. */
	route_decide(cfg, "a@interfactory1.co.jp", "evil@example.com", 16, 0, &d);
	EXPECT(d, ROUTE_SERVICE, "interfactory1.co.jp");
	d = decide("a@interfactory1.co.jp", NULL);
	ck_assert_str_eq(d.from, "a@interfactory1.co.jp");
	route_decision_free(&d);
}
END_TEST

START_TEST(test_unparseable_header)
{
	static const char *const bad[] = {
		"not an address",
		"Shop",
		"",
		"   ",
		"user@",
		"@interfactory1.co.jp",
		"<a@interfactory1.co.jp",              /* unclosed */
		"\"unterminated <a@interfactory1.co.jp>",
		"a@interfactory1.co.jp (unterminated",
		"a@example.com, garbage",              /* a "mailbox" without '@' */
		"<a@example.com> trailing",
		"evil@example.com@interfactory1.co.jp", /* GMime would keep the head */
		"a..b@example.com",
		"Undisclosed: ;",
		"a@example.com, <a@interfactory1.co.jp",  /* GMime keeps the head */
		"x@example.com z <a@interfactory1.co.jp>",
		"a@interfactory1.co.jp)",
		"a@interfactory1.co.jp;",
		"<a@interfactory1.co.jp>>",
		"<<a@interfactory1.co.jp>",
		"Shop: a@interfactory1.co.jp",           /* the group is not closed */
		"Shop: a@interfactory1.co.jp; b@example.com",
		"Outer: Inner: a@interfactory1.co.jp;;",
		"a@interfactory1.co.jp (nested (comment)",
		"<>",
		"Shop <>",
		",,,",
		"a@[192.0.2.1",
		"a\\@interfactory1.co.jp",
		"a@interfactory1.co.jp\x01",
	};
	char **a = (char **)1;

	use("interfactory1.co.jp", "header_from", SERVICE);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(route_header_addrs(bad[i], strlen(bad[i]), &a) == -1,
		              "\"%s\" parsed", bad[i]);
		ck_assert_ptr_null(a);
		/* The envelope decides, either way. */
		EXPECT(decide("a@interfactory1.co.jp", bad[i]), ROUTE_SERVICE,
		       "interfactory1.co.jp");
		EXPECT(decide(UNVERIFIED, bad[i]), ROUTE_DIRECT, NULL);
	}
	/* A NUL inside the value makes it unparseable too. */
	ck_assert_int_eq(route_header_addrs("a@x.jp\0b@y.jp", 13, &a), -1);
	ck_assert_int_eq(route_header_addrs(NULL, 0, &a), -1);
	/* len, not the NUL, ends the value. */
	ck_assert_int_eq(route_header_addrs("a@x.jp, b@y.jp", 6, &a), 1);
	ck_assert_str_eq(a[0], "a@x.jp");
	route_addrs_free(a, 1);
}
END_TEST

START_TEST(test_match_on_envelope)
{
	use("interfactory1.co.jp", "envelope_from", SERVICE);
	EXPECT(decide(UNVERIFIED, "a@interfactory1.co.jp"), ROUTE_DIRECT, NULL);
	EXPECT(decide("a@interfactory1.co.jp", "evil@example.com"), ROUTE_SERVICE,
	       "interfactory1.co.jp");
	EXPECT(decide("a@interfactory1.co.jp", "not an address"), ROUTE_SERVICE,
	       "interfactory1.co.jp");
	struct route_decision d = decide("a@interfactory1.co.jp", "evil@example.com");
	ck_assert_str_eq(d.from, "a@interfactory1.co.jp");
	route_decision_free(&d);
}
END_TEST

START_TEST(test_null_sender)
{
	struct route_decision d;

	use("interfactory1.co.jp", "header_from", SERVICE);
	EXPECT(decide("", "a@interfactory1.co.jp"), ROUTE_DIRECT, NULL);
	EXPECT(decide("", "MAILER-DAEMON@interfactory1.co.jp"), ROUTE_DIRECT, NULL);
	EXPECT(decide("", NULL), ROUTE_DIRECT, NULL);
	EXPECT(decide(NULL, "a@interfactory1.co.jp"), ROUTE_DIRECT, NULL);
	d = decide("", "a@interfactory1.co.jp");
	ck_assert_str_eq(d.from, "a@interfactory1.co.jp");
	route_decision_free(&d);
	d = decide("", NULL);
	ck_assert_ptr_null(d.from);
	route_decision_free(&d);
	use("interfactory1.co.jp", "envelope_from", SERVICE);
	EXPECT(decide("", "a@interfactory1.co.jp"), ROUTE_DIRECT, NULL);
}
END_TEST

START_TEST(test_no_service_host)
{
	use("interfactory1.co.jp", "header_from", NO_SERVICE);
	ck_assert_ptr_null(cfg->service.host);
	struct route_decision d = decide(UNVERIFIED, "a@interfactory1.co.jp");
	ck_assert_int_eq(d.route, ROUTE_DIRECT);
	ck_assert(d.all_matched);
	ck_assert_ptr_nonnull(d.matched);
	ck_assert_str_eq(d.matched->entry, "interfactory1.co.jp");
	ck_assert_str_eq(d.from, "a@interfactory1.co.jp");
	route_decision_free(&d);
	EXPECT(decide(UNVERIFIED, "evil@example.com"), ROUTE_DIRECT, NULL);
}
END_TEST

START_TEST(test_header_addrs)
{
	static const struct {
		const char *value;
		const char *first;
		int n;
	} cases[] = {
		{ "a@x.jp", "a@x.jp", 1 },
		{ "  <a@x.jp>  ", "a@x.jp", 1 },
		{ "\"Doe, John\" <john@x.jp>, jane@y.jp", "john@x.jp", 2 },
		{ "\"john doe\"@x.jp", "\"john doe\"@x.jp", 1 },
		{ "\"a@b\"@x.jp", "\"a@b\"@x.jp", 1 },
		{ "<@route.example:user@x.jp>", "user@x.jp", 1 },
		{ "user@[192.0.2.1]", "user@[192.0.2.1]", 1 },
		{ "山田 太郎 <山田@例え.jp>", "山田@例え.jp", 1 },
		{ "a@x.jp,\r\n b@y.jp,\r\n\tc@z.jp", "a@x.jp", 3 },
		{ "John Q. Public <jqp@x.jp>", "jqp@x.jp", 1 },
		{ "\"Joe \\\"Q\\\" <x@y>\" <joe@x.jp>", "joe@x.jp", 1 },
		{ "(a (nested) comment) joe@x.jp (another)", "joe@x.jp", 1 },
		{ "joe (c) . (c) doe @ (c) x . jp", "joe.doe@x.jp", 1 },
		{ ", a@x.jp,, b@y.jp,", "a@x.jp", 2 },
		{ "Shop:;, List: a@x.jp, , b@y.jp;", "a@x.jp", 2 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char **a = NULL;
		int n = route_header_addrs(cases[i].value, strlen(cases[i].value), &a);
		ck_assert_msg(n == cases[i].n, "\"%s\": %d addresses", cases[i].value, n);
		ck_assert_str_eq(a[0], cases[i].first);
		route_addrs_free(a, n);
	}
}
END_TEST

START_TEST(test_ascii_form)
{
	static const struct {
		const char *in;
		const char *out;    /* NULL: no comparison form */
	} cases[] = {
		{ "Test@InterFactory1.CO.JP", "test@interfactory1.co.jp" },
		{ "a@x.jp.", "a@x.jp" },
		{ "a@x.jp..", NULL },
		{ "a@例え.jp", "a@xn--r8jz45g.jp" },
		{ "a@例え.JP", "a@xn--r8jz45g.jp" },
		{ "A@XN--R8JZ45G.JP", "a@xn--r8jz45g.jp" },
		{ "山田@例え.jp", "山田@xn--r8jz45g.jp" },
		{ "\"Info\"@x.jp", "info@x.jp" },
		{ "\"a b\"@x.jp", "\"a b\"@x.jp" },
		{ "\"a@b\"@x.jp", "\"a@b\"@x.jp" },
		{ "a@[192.0.2.1]", NULL },
		{ "a@", NULL },
		{ "@x.jp", NULL },
		{ "nobody", NULL },
		{ "", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *a = route_ascii(cases[i].in);
		if (cases[i].out)
			ck_assert_msg(a && strcmp(a, cases[i].out) == 0, "%s: %s", cases[i].in,
			              a ? a : "(null)");
		else
			ck_assert_msg(a == NULL, "%s: %s", cases[i].in, a);
		free(a);
	}
	ck_assert_ptr_null(route_ascii(NULL));
	ck_assert_str_eq(route_name(ROUTE_SERVICE), "service");
	ck_assert_str_eq(route_name(ROUTE_DIRECT), "direct");
}
END_TEST

START_TEST(test_entry_matches)
{
	struct config_domain dom = { "Example.JP", "example.jp", false, 1 };
	struct config_domain adr = { "info@example.jp", "info@example.jp", true, 2 };

	ck_assert(route_entry_matches(&dom, "a@example.jp"));
	ck_assert(route_entry_matches(&dom, "a@b.example.jp"));
	ck_assert(!route_entry_matches(&dom, "a@bexample.jp"));
	ck_assert(!route_entry_matches(&dom, "a@example.jp.x"));
	ck_assert(!route_entry_matches(&dom, "example.jp"));
	ck_assert(!route_entry_matches(&dom, NULL));
	ck_assert(route_entry_matches(&adr, "info@example.jp"));
	ck_assert(!route_entry_matches(&adr, "info@b.example.jp"));
	ck_assert(!route_entry_matches(&adr, "x@example.jp"));
}
END_TEST

static Suite *route_suite(void)
{
	Suite *s = suite_create("route");
	TCase *tc = tcase_create("route");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_spec_table);
	tcase_add_test(tc, test_subdomains);
	tcase_add_test(tc, test_trailing_dots);
	tcase_add_test(tc, test_case);
	tcase_add_test(tc, test_idn);
	tcase_add_test(tc, test_address_entries);
	tcase_add_test(tc, test_display_names_and_comments);
	tcase_add_test(tc, test_encoded_words);
	tcase_add_test(tc, test_groups);
	tcase_add_test(tc, test_several_mailboxes);
	tcase_add_test(tc, test_two_from_fields);
	tcase_add_test(tc, test_missing_header);
	tcase_add_test(tc, test_unparseable_header);
	tcase_add_test(tc, test_match_on_envelope);
	tcase_add_test(tc, test_null_sender);
	tcase_add_test(tc, test_no_service_host);
	tcase_add_test(tc, test_header_addrs);
	tcase_add_test(tc, test_ascii_form);
	tcase_add_test(tc, test_entry_matches);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(route_suite());

	route_init();
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* GMime's one-time allocations, so that LeakSanitizer sees none. */
	g_mime_shutdown();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
