/*
 * NAME
 *	test_dnscheck - unit tests of relay/dnscheck.c and relay/dnsquery.c
 * SUMMARY
 *	The checks of "hikyakuctl domain check" against a zone held in a
 *	table (the lookup function is the module's seam; the end-to-end test
 *	t_domain_check.sh runs them against dnsmasq), and dnsq_parse() on
 *	answer messages built here byte by byte.
 * DESCRIPTION
 *	Covered: the SPF lookup counter (RFC 7208 §4.6.4: include, a, mx,
 *	ptr, exists, redirect counted, ip4/ip6/all not; through includes and
 *	redirects; redirect ignored when there is an all; macros counted
 *	without following; loops end), the final qualifier through redirect,
 *	libspf2's syntax verdict; SPF records missing or doubled; MX / A /
 *	null MX / MAIL FROM; DMARC at the domain and at the organisational
 *	domain (sp=), p=none, two records, a bad record; DKIM key records;
 *	the tag-list parser; --expect files and the doubled zone; the
 *	answer parser (TXT strings joined, MX, CNAME, NXDOMAIN, SERVFAIL,
 *	truncated messages).
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	A temporary file for the --expect tests.
 */
#include "relay/dnscheck.h"
#include "relay/dnsquery.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct rr {
	const char *name;
	enum dnsq_type type;
	const char *value;
};

/* The zone of a test; a name with no record at all is NXDOMAIN. */
static const struct rr *zone;
static unsigned asked;

static void table_lookup(void *arg, const char *name, enum dnsq_type type, struct dnsq_answer *ans)
{
	(void)arg;
	memset(ans, 0, sizeof(*ans));
	asked++;
	bool exists = false;
	for (const struct rr *r = zone; r->name; r++) {
		if (strcasecmp(r->name, name) != 0)
			continue;
		exists = true;
		if (r->type == type && strcmp(r->value, "SERVFAIL") == 0) {
			ans->status = DNSQ_TEMPFAIL;
			snprintf(ans->error, sizeof(ans->error), "the DNS server answered SERVFAIL");
			return;
		}
		if (r->type == type)
			ans->rec[ans->n++] = strdup(r->value);
	}
	ans->status = ans->n ? DNSQ_OK : exists ? DNSQ_NODATA : DNSQ_NXDOMAIN;
}

static const struct dnscheck C = { table_lookup, NULL };

static const struct dnscheck_row *find(const struct dnscheck_report *r, const char *domain,
                                       const char *check)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].domain, domain) == 0 && strcmp(r->v[i].check, check) == 0)
			return &r->v[i];
	return NULL;
}

#define ASSERT_ROW(r, dom, chk, res, needle)                                                  \
	do {                                                                                  \
		const struct dnscheck_row *row_ = find((r), (dom), (chk));                    \
		ck_assert_msg(row_ != NULL, "no row %s %s", (dom), (chk));                    \
		ck_assert_msg(row_->result == (res), "%s %s: %s: %s", (dom), (chk),          \
		              dnscheck_result_name(row_->result), row_->text);                \
		ck_assert_msg(strstr(row_->text, (needle)) != NULL, "%s %s: \"%s\" lacks \"%s\"", \
		              (dom), (chk), row_->text, (needle));                            \
	} while (0)

static const struct rr spf_zone[] = {
	{ "a.test", DNSQ_TXT, "v=spf1 include:b.test ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all" },
	{ "a.test", DNSQ_TXT, "google-site-verification=x" },
	{ "b.test", DNSQ_TXT, "v=spf1 a mx ptr exists:%{i}.e.test include:c.test -all" },
	{ "c.test", DNSQ_TXT, "v=spf1 a:x.c.test mx:y.c.test/24 -all" },
	/* redirect: counted, its all decides */
	{ "r.test", DNSQ_TXT, "v=spf1 mx redirect=rr.test" },
	{ "rr.test", DNSQ_TXT, "v=spf1 a ?all" },
	/* redirect ignored when there is an all */
	{ "ra.test", DNSQ_TXT, "v=spf1 redirect=rr.test -all" },
	/* a loop */
	{ "loop.test", DNSQ_TXT, "v=spf1 include:loop.test -all" },
	/* eleven */
	{ "eleven.test", DNSQ_TXT, "v=spf1 a mx a mx a mx include:c.test include:c.test ~all" },
	{ "ten.test", DNSQ_TXT, "v=spf1 a mx a mx include:c.test include:c.test ~all" },
	{ "macro.test", DNSQ_TXT, "v=spf1 include:%{d}.m.test -all" },
	{ "two.test", DNSQ_TXT, "v=spf1 -all" },
	{ "two.test", DNSQ_TXT, "V=SPF1 mx -all" },
	{ "none.test", DNSQ_TXT, "v=spf10 -all" },
	{ "bad.test", DNSQ_TXT, "v=spf1 ip4:1.2.3.999 -all" },
	{ "badinc.test", DNSQ_TXT, "v=spf1 include:nothing.test -all" },
	{ "plus.test", DNSQ_TXT, "v=spf1 +all" },
	{ "bare.test", DNSQ_TXT, "v=spf1 mx" },
	{ "soft.test", DNSQ_TXT, "v=spf1" },
	{ "fail.test", DNSQ_TXT, "SERVFAIL" },
	{ NULL, 0, NULL },
};

START_TEST(test_spf_walk)
{
	static const struct {
		const char *domain;
		int rc;
		unsigned lookups;
		char all;
	} cases[] = {
		{ "a.test", 0, 8, '~' },        /* include b (1): a mx ptr exists (5) include c (6): 2 (8) */
		{ "c.test", 0, 2, '-' },
		{ "r.test", 0, 3, '?' },        /* mx, redirect, a */
		{ "ra.test", 0, 0, '-' },
		{ "eleven.test", 0, 12, '~' },  /* 6, + 2 includes of 2 each */
		{ "ten.test", 0, 10, '~' },
		{ "macro.test", 0, 1, '-' },
		{ "plus.test", 0, 0, '+' },
		{ "bare.test", 0, 1, 0 },
		{ "bad.test", -1, 0, 0 },
		{ "badinc.test", -1, 1, 0 },
	};
	zone = spf_zone;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dnsq_answer a;
		char *rec = NULL, why[512], all = 'x';
		unsigned lookups;
		table_lookup(NULL, cases[i].domain, DNSQ_TXT, &a);
		for (size_t j = 0; j < a.n; j++)
			if (strncmp(a.rec[j], "v=spf1", 6) == 0)
				rec = a.rec[j];
		ck_assert_ptr_nonnull(rec);
		int rc = dnscheck_spf_walk(&C, cases[i].domain, rec, &lookups, &all, why, sizeof(why));
		ck_assert_msg(rc == cases[i].rc, "%s: rc %d: %s", cases[i].domain, rc, why);
		ck_assert_msg(lookups == cases[i].lookups, "%s: %u lookups", cases[i].domain, lookups);
		if (rc == 0)
			ck_assert_msg(all == cases[i].all, "%s: all %c", cases[i].domain, all ? all : '0');
		dnsq_answer_free(&a);
	}
	/* A loop ends: every include counts, so the limit stops it. */
	unsigned lookups;
	char all, why[512];
	asked = 0;
	ck_assert_int_eq(dnscheck_spf_walk(&C, "loop.test", "v=spf1 include:loop.test -all", &lookups,
	                                   &all, why, sizeof(why)), 0);
	ck_assert_uint_gt(lookups, DNSCHECK_SPF_MAX_LOOKUPS);
	ck_assert_uint_le(asked, 12);
}
END_TEST

START_TEST(test_spf_rows)
{
	struct dnscheck_report r = { 0 };
	zone = spf_zone;
	const char *d[] = { "a.test", "eleven.test", "ten.test", "two.test", "none.test", "bad.test",
	                    "badinc.test", "plus.test", "bare.test", "soft.test", "fail.test", "r.test" };
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++)
		dnscheck_spf(&C, d[i], "spf", &r);
	ASSERT_ROW(&r, "a.test", "spf", DNSCHECK_OK, "(8 DNS lookups)");
	ASSERT_ROW(&r, "eleven.test", "spf", DNSCHECK_FAIL, "needs 12 DNS lookups");
	ASSERT_ROW(&r, "ten.test", "spf", DNSCHECK_OK, "(10 DNS lookups)");
	ASSERT_ROW(&r, "two.test", "spf", DNSCHECK_FAIL, "two.test has 2 SPF records");
	ASSERT_ROW(&r, "none.test", "spf", DNSCHECK_FAIL, "no SPF record");
	ASSERT_ROW(&r, "bad.test", "spf", DNSCHECK_FAIL, "the SPF record of bad.test does not parse");
	ASSERT_ROW(&r, "badinc.test", "spf", DNSCHECK_FAIL, "include:nothing.test has no SPF record");
	ASSERT_ROW(&r, "plus.test", "spf", DNSCHECK_FAIL, "ends in +all");
	ASSERT_ROW(&r, "bare.test", "spf", DNSCHECK_FAIL, "has no -all or ~all");
	ASSERT_ROW(&r, "soft.test", "spf", DNSCHECK_FAIL, "has no -all or ~all");
	ASSERT_ROW(&r, "fail.test", "spf", DNSCHECK_FAIL, "SERVFAIL");
	ASSERT_ROW(&r, "r.test", "spf", DNSCHECK_FAIL, "ends in ?all");
	ck_assert_uint_eq(r.nfail, 10);
	ck_assert_uint_eq(r.nwarn, 0);
	dnscheck_report_free(&r);
}
END_TEST

static const struct rr mx_zone[] = {
	{ "shop.test", DNSQ_MX, "10 mx.shop.test" },
	{ "aonly.test", DNSQ_A, "192.0.2.1" },
	{ "v6only.test", DNSQ_AAAA, "2001:db8::1" },
	{ "txtonly.test", DNSQ_TXT, "x" },
	{ "null.test", DNSQ_MX, "0 ." },
	{ "bounce.test", DNSQ_A, "192.0.2.2" },
	{ "broken.test", DNSQ_MX, "SERVFAIL" },
	{ NULL, 0, NULL },
};

START_TEST(test_mx)
{
	struct dnscheck_report r = { 0 };
	zone = mx_zone;
	dnscheck_mx(&C, "shop.test", false, &r);
	dnscheck_mx(&C, "aonly.test", false, &r);
	dnscheck_mx(&C, "v6only.test", false, &r);
	dnscheck_mx(&C, "txtonly.test", false, &r);
	dnscheck_mx(&C, "gone.test", false, &r);
	dnscheck_mx(&C, "null.test", false, &r);
	dnscheck_mx(&C, "bounce.test", true, &r);
	dnscheck_mx(&C, "broken.test", false, &r);
	ASSERT_ROW(&r, "shop.test", "mx", DNSCHECK_OK, "MX 10 mx.shop.test");
	ASSERT_ROW(&r, "aonly.test", "mx", DNSCHECK_OK, "no MX, but A 192.0.2.1");
	ASSERT_ROW(&r, "v6only.test", "mx", DNSCHECK_OK, "no MX, but AAAA 2001:db8::1");
	ASSERT_ROW(&r, "txtonly.test", "mx", DNSCHECK_FAIL, "no MX and no A/AAAA record");
	ASSERT_ROW(&r, "gone.test", "mx", DNSCHECK_FAIL, "does not exist in DNS (NXDOMAIN)");
	ASSERT_ROW(&r, "null.test", "mx", DNSCHECK_WARN, "null MX (RFC 7505)");
	ASSERT_ROW(&r, "bounce.test", "mail-from mx", DNSCHECK_FAIL, "no MX record: the custom MAIL FROM");
	ASSERT_ROW(&r, "broken.test", "mx", DNSCHECK_FAIL, "SERVFAIL");
	dnscheck_report_free(&r);
}
END_TEST

static const struct rr dmarc_zone[] = {
	{ "_dmarc.shop.test", DNSQ_TXT, "v=DMARC1; p=reject; rua=mailto:d@shop.test" },
	{ "_dmarc.shop.test", DNSQ_TXT, "unrelated" },
	{ "_dmarc.sp.test", DNSQ_TXT, "v=DMARC1; p=reject; sp=none" },
	{ "_dmarc.mon.test", DNSQ_TXT, "v=DMARC1; p=none" },
	{ "_dmarc.two.test", DNSQ_TXT, "v=DMARC1; p=none" },
	{ "_dmarc.two.test", DNSQ_TXT, "v=DMARC1; p=reject" },
	{ "_dmarc.bad.test", DNSQ_TXT, "v=DMARC1; p=sometimes" },
	{ "_dmarc.nop.test", DNSQ_TXT, "v=DMARC1; rua=mailto:x@nop.test" },
	{ "_dmarc.own.shop.test", DNSQ_TXT, "v=DMARC1; p=quarantine" },
	{ "_dmarc.co.jp.test", DNSQ_TXT, "v=DMARC1; p=reject" },
	{ NULL, 0, NULL },
};

START_TEST(test_dmarc)
{
	struct dnscheck_report r = { 0 };
	zone = dmarc_zone;
	const char *d[] = { "shop.test", "news.shop.test", "own.shop.test", "a.sp.test", "mon.test",
	                    "two.test", "bad.test", "nop.test", "none.test", "x.none.test" };
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++)
		dnscheck_dmarc(&C, d[i], &r);
	ASSERT_ROW(&r, "shop.test", "dmarc", DNSCHECK_OK, "p=reject at _dmarc.shop.test");
	ASSERT_ROW(&r, "news.shop.test", "dmarc", DNSCHECK_OK,
	           "p=reject at _dmarc.shop.test (the organisational domain's)");
	ASSERT_ROW(&r, "own.shop.test", "dmarc", DNSCHECK_OK, "p=quarantine at _dmarc.own.shop.test");
	ASSERT_ROW(&r, "a.sp.test", "dmarc", DNSCHECK_WARN, "sp=none at _dmarc.sp.test");
	ASSERT_ROW(&r, "mon.test", "dmarc", DNSCHECK_WARN, "p=none at _dmarc.mon.test: monitoring only");
	ASSERT_ROW(&r, "two.test", "dmarc", DNSCHECK_FAIL, "2 DMARC records at _dmarc.two.test");
	ASSERT_ROW(&r, "bad.test", "dmarc", DNSCHECK_FAIL, "does not parse");
	ASSERT_ROW(&r, "nop.test", "dmarc", DNSCHECK_FAIL, "does not parse");
	ASSERT_ROW(&r, "none.test", "dmarc", DNSCHECK_FAIL, "no DMARC record at _dmarc.none.test");
	ASSERT_ROW(&r, "x.none.test", "dmarc", DNSCHECK_FAIL,
	           "no DMARC record at _dmarc.x.none.test nor at _dmarc.none.test");
	dnscheck_report_free(&r);
	/* The Public Suffix List: co.jp is a public suffix, example.co.jp is the
	 * organisational domain of a.example.co.jp. */
	char *o = dnscheck_org_domain("a.b.example.co.jp");
	ck_assert_str_eq(o, "example.co.jp");
	free(o);
	o = dnscheck_org_domain("mail.shop.test");
	ck_assert_str_eq(o, "shop.test");
	free(o);
}
END_TEST

START_TEST(test_tags)
{
	char *v;
	ck_assert_str_eq((v = dnscheck_tag("v=DKIM1; k=rsa; p=MIIB IjAN\t BgkQ ;", "p")), "MIIBIjANBgkQ");
	free(v);
	ck_assert_str_eq((v = dnscheck_tag(" v = DKIM1 ;k=ed25519;p=abc", "k")), "ed25519");
	free(v);
	ck_assert_str_eq((v = dnscheck_tag("v=DKIM1; p=", "p")), "");
	free(v);
	ck_assert_ptr_null(dnscheck_tag("v=DKIM1; k=rsa", "p"));
	ck_assert_ptr_null(dnscheck_tag("v=spf1 include:x -all", "p"));  /* not a tag list */
	ck_assert_ptr_null(dnscheck_tag("K=rsa; p=x", "k"));              /* tags are case-sensitive */
}
END_TEST

static const struct rr dkim_zone[] = {
	{ "s1._domainkey.shop.test", DNSQ_TXT, "v=DKIM1; k=rsa; p=MIIBKEY" },
	{ "s2._domainkey.shop.test", DNSQ_TXT, "p=MIIB KEY" },         /* k= defaults to rsa */
	{ "s3._domainkey.shop.test", DNSQ_TXT, "v=DKIM1; k=rsa; p=OTHER" },
	{ "s4._domainkey.shop.test", DNSQ_TXT, "v=DKIM1; k=rsa; p=" },
	{ "s5._domainkey.shop.test", DNSQ_TXT, "v=DKIM1; k=ed25519; p=MIIBKEY" },
	{ "s6._domainkey.shop.test", DNSQ_TXT, "v=DKIM1; p=MIIBKEY" },
	{ "s6._domainkey.shop.test", DNSQ_TXT, "v=DKIM1; p=MIIBKEY" },
	{ "s7._domainkey.shop.test", DNSQ_TXT, "v=DKIM2; p=MIIBKEY" },
	{ "s8._domainkey.shop.test", DNSQ_TXT, "a CNAME's target without a key" },
	{ NULL, 0, NULL },
};

START_TEST(test_dkim)
{
	struct dnscheck_report r = { 0 };
	zone = dkim_zone;
	for (int i = 1; i <= 9; i++) {
		char sel[8];
		snprintf(sel, sizeof(sel), "s%d", i);
		dnscheck_dkim(&C, "shop.test", sel, "rsa", "MIIBKEY", &r);
	}
	ASSERT_ROW(&r, "shop.test", "dkim s1", DNSCHECK_OK, "p= matches the configured key");
	ASSERT_ROW(&r, "shop.test", "dkim s2", DNSCHECK_OK, "p= matches");
	ASSERT_ROW(&r, "shop.test", "dkim s3", DNSCHECK_FAIL, "p= is not the public half");
	ASSERT_ROW(&r, "shop.test", "dkim s4", DNSCHECK_FAIL, "p= is empty: the key is revoked");
	ASSERT_ROW(&r, "shop.test", "dkim s5", DNSCHECK_FAIL, "k=ed25519, but the configured key is rsa");
	ASSERT_ROW(&r, "shop.test", "dkim s6", DNSCHECK_FAIL, "2 key records");
	ASSERT_ROW(&r, "shop.test", "dkim s7", DNSCHECK_FAIL, "v=DKIM2");
	ASSERT_ROW(&r, "shop.test", "dkim s8", DNSCHECK_FAIL, "no DKIM key record at s8._domainkey.shop.test");
	ASSERT_ROW(&r, "shop.test", "dkim s9", DNSCHECK_FAIL, "no DKIM key record");
	dnscheck_report_free(&r);
}
END_TEST

static const struct rr expect_zone[] = {
	{ "a._domainkey.shop.test", DNSQ_CNAME, "a.dkim.amazonses.com" },
	{ "b._domainkey.shop.test.shop.test", DNSQ_CNAME, "b.dkim.amazonses.com" },
	{ "c._domainkey.shop.test", DNSQ_CNAME, "wrong.example" },
	{ "mail.shop.test", DNSQ_MX, "10 feedback-smtp.ap-northeast-1.amazonses.com" },
	{ "mail.shop.test", DNSQ_TXT, "v=spf1 include:amazonses.com ~all" },
	{ "x.mail.shop.test.shop.test", DNSQ_TXT, "v=spf1 -all" },
	{ NULL, 0, NULL },
};

START_TEST(test_expect)
{
	char path[] = "/tmp/hk-expect-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	FILE *fp = fdopen(fd, "w");
	fprintf(fp, "# SES\n\n"
	            "a._domainkey.shop.test CNAME A.dkim.amazonses.com.\n"
	            "b._domainkey.shop.test  CNAME b.dkim.amazonses.com\n"
	            "c._domainkey.shop.test CNAME c.dkim.amazonses.com\n"
	            "d._domainkey.shop.test CNAME d.dkim.amazonses.com\n"
	            "mail.shop.test MX 10 feedback-smtp.ap-northeast-1.amazonses.com\n"
	            "mail.shop.test TXT \"v=spf1 include:amazonses.com\" \" ~all\"\n"
	            "x.mail.shop.test TXT v=spf1 -all\n");
	fclose(fp);
	struct dnscheck_expect *e;
	size_t n;
	char err[512];
	ck_assert_msg(dnscheck_expect_load(path, &e, &n, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(n, 7);
	ck_assert_str_eq(e[0].value, "a.dkim.amazonses.com");
	ck_assert_int_eq(e[0].line, 3);
	ck_assert_str_eq(e[5].value, "v=spf1 include:amazonses.com ~all");
	zone = expect_zone;
	struct dnscheck_report r = { 0 };
	for (size_t i = 0; i < n; i++)
		dnscheck_expect(&C, &e[i], "shop.test", &r);
	ck_assert_uint_eq(r.n, 7);
	ck_assert_int_eq(r.v[0].result, DNSCHECK_OK);
	ck_assert_int_eq(r.v[1].result, DNSCHECK_FAIL);
	ck_assert_msg(strstr(r.v[1].text, "b._domainkey.shop.test.shop.test has it: the DNS console "
	                                  "appended the zone shop.test a second time"), "%s", r.v[1].text);
	ck_assert_msg(strstr(r.v[2].text, "c._domainkey.shop.test CNAME is wrong.example; expected "
	                                  "c.dkim.amazonses.com"), "%s", r.v[2].text);
	ck_assert_msg(strstr(r.v[3].text, "no CNAME record at d._domainkey.shop.test"), "%s", r.v[3].text);
	ck_assert_int_eq(r.v[4].result, DNSCHECK_OK);
	ck_assert_int_eq(r.v[5].result, DNSCHECK_OK);
	ck_assert_msg(r.v[6].result == DNSCHECK_FAIL && strstr(r.v[6].text, "x.mail.shop.test.shop.test has it"),
	              "%s", r.v[6].text);
	dnscheck_report_free(&r);
	dnscheck_expect_free(e, n);

	static const struct {
		const char *text, *err;
	} bad[] = {
		{ "a.test A 192.0.2.1\n", ":1: type \"A\" is not CNAME, TXT or MX" },
		{ "\n\na.test CNAME\n", ":3: not \"NAME TYPE VALUE\"" },
		{ "a.test MX feedback.test\n", ":1: an MX value is \"PREFERENCE HOST\"" },
		{ "a.test CNAME b.test c.test\n", ":1: a CNAME value is one host name" },
		{ "a.test TXT \"open\n", ":1: the TXT value has an unclosed quote" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fp = fopen(path, "w");
		fputs(bad[i].text, fp);
		fclose(fp);
		ck_assert_int_eq(dnscheck_expect_load(path, &e, &n, err, sizeof(err)), -1);
		ck_assert_msg(strncmp(err, path, strlen(path)) == 0 && strstr(err, bad[i].err), "%s", err);
	}
	unlink(path);
	ck_assert_int_eq(dnscheck_expect_load(path, &e, &n, err, sizeof(err)), -1);
	ck_assert(strstr(err, "cannot open"));
}
END_TEST

/* ---- dnsq_parse() on wire answers ---- */

static size_t put_name(unsigned char *p, const char *name)
{
	size_t o = 0;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		p[o++] = (unsigned char)l;
		memcpy(p + o, name, l);
		o += l;
		name += l + (dot ? 1 : 0);
	}
	p[o++] = 0;
	return o;
}

/* A response to NAME/TYPE with the given answer RRs (owner: a pointer to the question). */
static size_t answer(unsigned char *m, const char *name, unsigned type, unsigned rcode,
                     unsigned n, const unsigned *types, const unsigned char *const *rd,
                     const size_t *rdlen)
{
	size_t o = 0;
	unsigned char h[12] = { 0x12, 0x34, 0x81, (unsigned char)(0x80 | rcode), 0, 1, 0, (unsigned char)n, 0, 0, 0, 0 };
	memcpy(m, h, 12);
	o = 12;
	o += put_name(m + o, name);
	m[o++] = 0; m[o++] = (unsigned char)type; m[o++] = 0; m[o++] = 1;
	for (unsigned i = 0; i < n; i++) {
		m[o++] = 0xc0; m[o++] = 12;
		m[o++] = 0; m[o++] = (unsigned char)types[i]; m[o++] = 0; m[o++] = 1;
		m[o++] = 0; m[o++] = 0; m[o++] = 0; m[o++] = 60;
		m[o++] = (unsigned char)(rdlen[i] >> 8); m[o++] = (unsigned char)rdlen[i];
		memcpy(m + o, rd[i], rdlen[i]);
		o += rdlen[i];
	}
	return o;
}

START_TEST(test_parse)
{
	unsigned char m[1024];
	struct dnsq_answer a;

	/* TXT: the strings of one record are joined; two records stay two. */
	static const unsigned char t1[] = "\x0dv=spf1 a -all";
	static const unsigned char t2[] = "\x07v=DKIM1\x04; p=\x03MII";
	const unsigned char *rd[2] = { t1, t2 };
	size_t rl[2] = { sizeof(t1) - 1, sizeof(t2) - 1 };
	unsigned ty[2] = { 16, 16 };
	size_t n = answer(m, "shop.test", 16, 0, 2, ty, rd, rl);
	dnsq_parse(m, n, DNSQ_TXT, &a);
	ck_assert_int_eq(a.status, DNSQ_OK);
	ck_assert_uint_eq(a.n, 2);
	ck_assert_str_eq(a.rec[0], "v=spf1 a -all");
	ck_assert_str_eq(a.rec[1], "v=DKIM1; p=MII");
	dnsq_answer_free(&a);
	/* Cut short anywhere: never a crash, never a record beyond the data. */
	for (size_t cut = 0; cut < n; cut++) {
		dnsq_parse(m, cut, DNSQ_TXT, &a);
		ck_assert(a.status != DNSQ_OK || a.n <= 2);
		dnsq_answer_free(&a);
	}

	/* MX, and the null MX. */
	static const unsigned char mx1[] = "\x00\x0a\x02mx\x04shop\x04test";
	static const unsigned char mx0[] = "\x00\x00";
	rd[0] = mx1; rl[0] = sizeof(mx1); ty[0] = 15;
	rd[1] = mx0; rl[1] = 3; ty[1] = 15;
	n = answer(m, "shop.test", 15, 0, 2, ty, rd, rl);
	dnsq_parse(m, n, DNSQ_MX, &a);
	ck_assert_int_eq(a.status, DNSQ_OK);
	ck_assert_uint_eq(a.n, 2);
	ck_assert_str_eq(a.rec[0], "10 mx.shop.test");
	ck_assert_str_eq(a.rec[1], "0 .");
	dnsq_answer_free(&a);

	/* CNAME, with a compression pointer in the target, and an A after it. */
	static const unsigned char cn[] = "\x03" "abc\x04" "dkim\xc0\x0c";
	static const unsigned char ip[] = { 192, 0, 2, 1 };
	rd[0] = cn; rl[0] = sizeof(cn) - 1; ty[0] = 5;
	rd[1] = ip; rl[1] = 4; ty[1] = 1;
	n = answer(m, "Shop.Test", 5, 0, 2, ty, rd, rl);
	dnsq_parse(m, n, DNSQ_CNAME, &a);
	ck_assert_int_eq(a.status, DNSQ_OK);
	ck_assert_uint_eq(a.n, 1);
	ck_assert_str_eq(a.rec[0], "abc.dkim.shop.test");
	dnsq_answer_free(&a);
	dnsq_parse(m, n, DNSQ_TXT, &a);
	ck_assert_int_eq(a.status, DNSQ_NODATA);

	/* RCODEs */
	n = answer(m, "x.test", 16, 3, 0, ty, rd, rl);
	dnsq_parse(m, n, DNSQ_TXT, &a);
	ck_assert_int_eq(a.status, DNSQ_NXDOMAIN);
	n = answer(m, "x.test", 16, 2, 0, ty, rd, rl);
	dnsq_parse(m, n, DNSQ_TXT, &a);
	ck_assert_int_eq(a.status, DNSQ_TEMPFAIL);
	ck_assert(strstr(a.error, "SERVFAIL"));
	dnsq_parse(m, 5, DNSQ_TXT, &a);
	ck_assert_int_eq(a.status, DNSQ_TEMPFAIL);
}
END_TEST

static Suite *dnscheck_suite(void)
{
	Suite *s = suite_create("dnscheck");
	TCase *tc = tcase_create("dnscheck");
	tcase_add_test(tc, test_spf_walk);
	tcase_add_test(tc, test_spf_rows);
	tcase_add_test(tc, test_mx);
	tcase_add_test(tc, test_dmarc);
	tcase_add_test(tc, test_tags);
	tcase_add_test(tc, test_dkim);
	tcase_add_test(tc, test_expect);
	tcase_add_test(tc, test_parse);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(dnscheck_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
