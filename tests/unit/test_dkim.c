/*
 * NAME
 *	test_dkim - unit tests of relay/dkim.c and the [dkim] keys of config/
 * SUMMARY
 *	Keys are made with OpenSSL into a temporary directory, a
 *	configuration names them, and messages are signed with
 *	dkim_sign_mail(). Every signature is checked by python3-dkim
 *	(tests/e2e/dkim_verify.py), an implementation independent of the
 *	signer, against the TXT record dkim_public_record() gives.
 * DESCRIPTION
 *	Covered: RSA and Ed25519 signatures that verify, with the tags of
 *	SPEC §5 (a=, c=relaxed/relaxed, d=, s=, h= with From twice); a
 *	subdomain signed by its parent's key, and the nearest parent chosen;
 *	"testshop.test" not covered by "shop.test"; From mailboxes that need
 *	two keys, or one that has none, and two From fields: unsigned with
 *	the reason; sign = direct / all / none by route; a From added after
 *	signing breaks the signature; a header section split across parts;
 *	UTF-8 and 8-bit content; relaxed canonicalisation edge cases for both
 *	algorithms; the configuration's diagnostics for bad, unreadable,
 *	small, encrypted and non-RSA keys and bad entries; the queue's
 *	prepend hook (queue_commit_spilled() with a hook: on a pool thread, the bytes in
 *	front, the size counted), as server/session.c signs with it.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	A directory under $TMPDIR (or /tmp) per test; runs /usr/bin/python3.
 */
#include "config/config.h"
#include "relay/dkim.h"
#include "relay/queue.h"

#include <check.h>
#include <ftw.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tdir[256];
static char conf[300];

static void setup(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(tdir, sizeof(tdir), "%s/hk-dkim-XXXXXX", t && *t ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	snprintf(conf, sizeof(conf), "%s/hikyaku.conf", tdir);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(p);
}

static void teardown(void)
{
	nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *name, const char *text)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", tdir, name);
	FILE *fp = fopen(p, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

/* A new key in tdir/name: "RSA" with bits, or "ED25519". */
static void make_key(const char *name, const char *type, size_t bits, const char *pass)
{
	char p[400];
	EVP_PKEY *pk = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits)
	               : strcmp(type, "EC") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
	                                         : EVP_PKEY_Q_keygen(NULL, NULL, type);
	ck_assert_ptr_nonnull(pk);
	snprintf(p, sizeof(p), "%s/%s", tdir, name);
	FILE *fp = fopen(p, "w");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(PEM_write_PrivateKey(fp, pk, pass ? EVP_aes_128_cbc() : NULL,
	                                      (unsigned char *)pass, pass ? (int)strlen(pass) : 0,
	                                      NULL, NULL), 1);
	fclose(fp);
	EVP_PKEY_free(pk);
}

static struct config *load_conf(const char *dkim_section, struct config_diags *d)
{
	char text[2048];
	snprintf(text, sizeof(text), "[server]\nhostname = relay.test\n[queue]\ndir = q\n[dkim]\n%s", dkim_section);
	write_file("hikyaku.conf", text);
	struct config *cfg = NULL;
	config_load(conf, &cfg, d);
	return cfg;
}

static bool has_diag(const struct config_diags *d, const char *needle)
{
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->v[i].text, needle))
			return true;
	return false;
}

static void dump_diags(const struct config_diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "diag: %s\n", d->v[i].text);
}

/* The TXT record of a key of cfg, "NAME=v=DKIM1; k=..; p=..". */
static char *key_arg(const struct config *cfg, size_t i)
{
	const struct config_dkim_key *k = &cfg->dkim.keys[i];
	const char *kt;
	char *p, *s = NULL;
	ck_assert_int_eq(dkim_public_record(k->pem, k->pem_len, &kt, &p), 0);
	ck_assert_int_ne(asprintf(&s, "%s._domainkey.%s=v=DKIM1; k=%s; p=%s", k->selector, k->domain,
	                          kt, p), -1);
	free(p);
	return s;
}

/* Runs the verifier on field + message; its first output line in out. */
static int verify(const struct config *cfg, const char *field, const char *msg, char *out,
                  size_t outlen)
{
	char path[400], cmd[8192], dir[300];
	snprintf(path, sizeof(path), "%s/signed.eml", tdir);
	FILE *fp = fopen(path, "wb");
	ck_assert_ptr_nonnull(fp);
	if (field)
		fputs(field, fp);
	fputs(msg, fp);
	fclose(fp);
	const char *src = getenv("HIKYAKU_SRCDIR");
	snprintf(dir, sizeof(dir), "%s", src && *src ? src : ".");
	int n = snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/e2e/dkim_verify.py %s", dir, path);
	for (size_t i = 0; i < cfg->dkim.nkeys; i++) {
		char *k = key_arg(cfg, i);
		n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " --key '%s'", k);
		free(k);
	}
	ck_assert_int_lt(n, (int)sizeof(cmd));
	FILE *pp = popen(cmd, "r");
	ck_assert_ptr_nonnull(pp);
	out[0] = '\0';
	if (!fgets(out, (int)outlen, pp))
		out[0] = '\0';
	char rest[512];
	while (fgets(rest, sizeof(rest), pp))
		;
	int st = pclose(pp);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int sign(const struct dkim_keys *k, const char *msg, enum route_kind route, char **field,
                const struct dkim_key **used, char *why, size_t whylen)
{
	struct iovec iov = { (void *)(uintptr_t)msg, strlen(msg) };
	size_t len;
	return dkim_sign_mail(k, &iov, 1, route, field, &len, used, why, whylen);
}

static const char *const MSG_SHOP =
	"From: Shop <info@shop.test>\r\n"
	"To: customer@example.jp\r\n"
	"Subject: =?UTF-8?B?44GU5rOo5paH44GC44KK44GM44Go44GG44GU44GW44GE44G+44GZ?=\r\n"
	"Date: Mon, 1 Dec 2026 10:00:00 +0900\r\n"
	"Message-ID: <1@shop.test>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=UTF-8\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"X-Not-Signed: yes\r\n"
	"\r\n"
	"\xe3\x81\x94\xe6\xb3\xa8\xe6\x96\x87\xe3\x81\x82\xe3\x82\x8a\xe3\x81\x8c\xe3\x81\xa8\xe3\x81\x86\r\n"
	".a line that starts with a dot\r\n"
	"trailing blanks   \r\n"
	"\r\n"
	"\r\n";

START_TEST(test_rsa_signature_verifies)
{
	struct config_diags d = { 0 };
	make_key("rsa.pem", "RSA", 2048, NULL);
	struct config *cfg = load_conf("keys = shop.test s2026 rsa.pem\n", &d);
	dump_diags(&d);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_uint_eq(d.n, 0);
	ck_assert_uint_eq(cfg->dkim.nkeys, 1);
	ck_assert_int_eq(cfg->dkim.keys[0].type, CONFIG_DKIM_RSA);
	ck_assert_uint_eq(cfg->dkim.keys[0].bits, 2048);
	ck_assert_int_eq(cfg->dkim.sign, CONFIG_DKIM_SIGN_DIRECT);
	char err[256];
	struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
	ck_assert_msg(k != NULL, "%s", err);
	char *field = NULL, why[256], out[1024];
	const struct dkim_key *used;
	ck_assert_int_eq(sign(k, MSG_SHOP, ROUTE_DIRECT, &field, &used, why, sizeof(why)), 1);
	ck_assert_str_eq(dkim_key_domain(used), "shop.test");
	ck_assert_str_eq(dkim_key_selector(used), "s2026");
	ck_assert(strncmp(field, "DKIM-Signature: ", 16) == 0);
	ck_assert(strstr(field, "a=rsa-sha256;"));
	ck_assert(strstr(field, "c=relaxed/relaxed;"));
	ck_assert(strstr(field, "d=shop.test;"));
	ck_assert(strstr(field, "s=s2026;"));
	/* CRLF only, and the field ends in one. */
	for (const char *p = field; *p; p++)
		if (*p == '\n')
			ck_assert(p > field && p[-1] == '\r');
	ck_assert(strcmp(field + strlen(field) - 2, "\r\n") == 0);
	int rc = verify(cfg, field, MSG_SHOP, out, sizeof(out));
	ck_assert_msg(rc == 0, "verifier: %s", out);
	ck_assert_msg(strncmp(out, "pass d=shop.test s=s2026 a=rsa-sha256", 37) == 0, "%s", out);
	/* h=: From twice (oversigned), the other present fields once, not X-. */
	ck_assert_msg(strstr(out, "h=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:"
	                          "Content-Transfer-Encoding:From") != NULL ||
	              strstr(out, "h=from:to:subject:date:message-id:mime-version:content-type:"
	                          "content-transfer-encoding:from") != NULL, "%s", out);
	ck_assert(strstr(out, "X-Not") == NULL && strstr(out, "x-not") == NULL);

	/* A second From added after signing breaks it (the oversigning). */
	char *two = NULL;
	ck_assert_int_ne(asprintf(&two, "From: attacker@evil.test\r\n%s", MSG_SHOP), -1);
	rc = verify(cfg, field, two, out, sizeof(out));
	ck_assert_msg(rc == 1 && strncmp(out, "fail", 4) == 0, "%s", out);
	free(two);
	/* So does a changed body. */
	char *changed = strdup(MSG_SHOP);
	changed[strlen(changed) - 12] = 'X';
	rc = verify(cfg, field, changed, out, sizeof(out));
	ck_assert_int_eq(rc, 1);
	free(changed);
	free(field);
	dkim_keys_unref(k);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_ed25519_signature_verifies)
{
	struct config_diags d = { 0 };
	make_key("ed.pem", "ED25519", 0, NULL);
	struct config *cfg = load_conf("keys = shop.test ed1 ed.pem\n", &d);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->dkim.keys[0].type, CONFIG_DKIM_ED25519);
	char err[256];
	struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
	ck_assert_msg(k != NULL, "%s", err);
	char *field = NULL, why[256], out[1024];
	const struct dkim_key *used;
	ck_assert_int_eq(sign(k, MSG_SHOP, ROUTE_DIRECT, &field, &used, why, sizeof(why)), 1);
	ck_assert(strstr(field, "a=ed25519-sha256;"));
	int rc = verify(cfg, field, MSG_SHOP, out, sizeof(out));
	ck_assert_msg(rc == 0 && strncmp(out, "pass d=shop.test s=ed1 a=ed25519-sha256", 39) == 0,
	              "verifier: %s", out);
	free(field);
	dkim_keys_unref(k);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_key_choice)
{
	struct config_diags d = { 0 };
	make_key("a.pem", "ED25519", 0, NULL);
	make_key("b.pem", "ED25519", 0, NULL);
	make_key("c.pem", "ED25519", 0, NULL);
	struct config *cfg = load_conf("keys = shop.test a a.pem\n"
	                               "    news.shop.test b b.pem\n"
	                               "    other.test c c.pem\n", &d);
	dump_diags(&d);
	ck_assert_ptr_nonnull(cfg);
	char err[256];
	struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
	ck_assert_ptr_nonnull(k);
	ck_assert_uint_eq(dkim_keys_count(k), 3);
	static const struct {
		const char *from;
		const char *domain;     /* NULL: unsigned */
		const char *why;
	} cases[] = {
		{ "a@shop.test", "shop.test", NULL },
		{ "a@SHOP.Test", "shop.test", NULL },
		{ "a@mail.shop.test", "shop.test", NULL },       /* the parent's key */
		{ "a@x.news.shop.test", "news.shop.test", NULL }, /* the nearest parent */
		{ "a@news.shop.test", "news.shop.test", NULL },
		{ "\"Shop, Inc.\" <a@shop.test>, b@mail.shop.test", "shop.test", NULL },
		{ "a@testshop.test", NULL, "no [dkim] key covers the From domain testshop.test" },
		{ "a@example.com", NULL, "no [dkim] key covers the From domain example.com" },
		{ "a@shop.test, b@other.test", NULL, "the From mailboxes need different keys" },
		{ "a@shop.test, b@news.shop.test", NULL, "the From mailboxes need different keys" },
		{ "a@shop.test, b@example.com", NULL, "no [dkim] key covers the From domain example.com" },
		{ "undisclosed:;", NULL, "the From field cannot be parsed" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *msg = NULL, *field = NULL, why[256], out[1024];
		const struct dkim_key *used;
		ck_assert_int_ne(asprintf(&msg, "From: %s\r\nTo: x@example.jp\r\nSubject: t\r\n\r\nbody\r\n",
		                          cases[i].from), -1);
		int rc = sign(k, msg, ROUTE_DIRECT, &field, &used, why, sizeof(why));
		if (cases[i].domain) {
			ck_assert_msg(rc == 1, "%s: %s", cases[i].from, why);
			ck_assert_str_eq(dkim_key_domain(used), cases[i].domain);
			ck_assert_msg(verify(cfg, field, msg, out, sizeof(out)) == 0, "%s: %s",
			              cases[i].from, out);
		} else {
			ck_assert_msg(rc == 0, "%s signed", cases[i].from);
			ck_assert_ptr_null(field);
			ck_assert_msg(strstr(why, cases[i].why), "%s: \"%s\"", cases[i].from, why);
		}
		free(field);
		free(msg);
	}
	/* Two From fields, and none. */
	char *field = NULL, why[256];
	const struct dkim_key *used;
	ck_assert_int_eq(sign(k, "From: a@shop.test\r\nFrom: b@shop.test\r\n\r\nx\r\n", ROUTE_DIRECT,
	                      &field, &used, why, sizeof(why)), 0);
	ck_assert_str_eq(why, "the message has 2 From fields");
	ck_assert_int_eq(sign(k, "To: a@shop.test\r\n\r\nx\r\n", ROUTE_DIRECT, &field, &used, why,
	                      sizeof(why)), 0);
	ck_assert_str_eq(why, "the message has no From field");
	dkim_keys_unref(k);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_sign_by_route)
{
	static const struct {
		const char *sign;
		int direct, service;
	} cases[] = { { "", 1, 0 }, { "sign = direct\n", 1, 0 }, { "sign = all\n", 1, 1 },
	              { "sign = none\n", 0, 0 } };
	make_key("a.pem", "ED25519", 0, NULL);
	for (size_t i = 0; i < 4; i++) {
		struct config_diags d = { 0 };
		char sec[256], err[256], why[256] = "x", *field = NULL;
		const struct dkim_key *used;
		snprintf(sec, sizeof(sec), "keys = shop.test a a.pem\n%s", cases[i].sign);
		struct config *cfg = load_conf(sec, &d);
		ck_assert_ptr_nonnull(cfg);
		struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
		ck_assert_int_eq(sign(k, MSG_SHOP, ROUTE_DIRECT, &field, &used, why, sizeof(why)),
		                 cases[i].direct);
		if (!cases[i].direct)
			ck_assert_str_eq(why, "");      /* as configured: no reason to give */
		free(field);
		field = NULL;
		ck_assert_int_eq(sign(k, MSG_SHOP, ROUTE_SERVICE, &field, &used, why, sizeof(why)),
		                 cases[i].service);
		if (!cases[i].service)
			ck_assert_str_eq(why, "");
		free(field);
		dkim_keys_unref(k);
		config_free(cfg);
		config_diags_free(&d);
	}
	/* No keys at all: nothing signed, nothing to explain. */
	struct config_diags d = { 0 };
	char err[256], why[256] = "x", *field = NULL;
	const struct dkim_key *used;
	struct config *cfg = load_conf("sign = all\n", &d);
	struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
	ck_assert_ptr_nonnull(k);
	ck_assert_int_eq(sign(k, MSG_SHOP, ROUTE_DIRECT, &field, &used, why, sizeof(why)), 0);
	ck_assert_str_eq(why, "");
	dkim_keys_unref(k);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* The queue hands the message over as parts: our header block, then the
 * client's bytes; a field or the empty line may not straddle them, but
 * the split must not matter. */
START_TEST(test_parts)
{
	struct config_diags d = { 0 };
	make_key("a.pem", _i ? "ED25519" : "RSA", 2048, NULL);
	struct config *cfg = load_conf("keys = shop.test a a.pem\n", &d);
	char err[256], why[256], out[1024];
	struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
	const char *msg = MSG_SHOP;
	size_t n = strlen(msg);
	for (size_t cut = 0; cut <= n; cut += 7) {
		static const char rcvd[] = "Received: from x\r\n\tby y; now\r\n";
		struct iovec iov[3] = { { (void *)rcvd, sizeof(rcvd) - 1 },
		                        { (void *)(uintptr_t)msg, cut },
		                        { (void *)(uintptr_t)(msg + cut), n - cut } };
		char *field = NULL, *whole = NULL;
		size_t len;
		const struct dkim_key *used;
		int rc = dkim_sign_mail(k, iov, 3, ROUTE_DIRECT, &field, &len, &used, why, sizeof(why));
		ck_assert_msg(rc == 1, "cut %zu: %s", cut, why);
		ck_assert_uint_eq(len, strlen(field));
		if (cut % 49 == 0) {
			ck_assert_int_ne(asprintf(&whole, "Received: from x\r\n\tby y; now\r\n%s", msg), -1);
			ck_assert_msg(verify(cfg, field, whole, out, sizeof(out)) == 0, "cut %zu: %s", cut, out);
			free(whole);
		}
		free(field);
	}
	dkim_keys_unref(k);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* Bodies and headers where relaxed canonicalisation has work to do: each
 * signature (libopendkim for RSA, ours for Ed25519) must verify. */
START_TEST(test_canonical_edges)
{
	static const char *const msgs[] = {
		"From: a@shop.test\r\nSubject: empty body\r\n\r\n",
		"From: a@shop.test\r\nSubject: no body at all\r\n",
		"From: a@shop.test\r\n\r\nno final line end",
		"From: a@shop.test\r\n\r\ntrailing blank lines\r\n\r\n\r\n \r\n\t\r\n",
		"From: a@shop.test\r\n\r\n\r\n\r\nleading empty lines\r\n",
		"From: a@shop.test\r\n\r\nblanks \t inside\tand at the end \t\r\n \tindented\r\n",
		"From:a@shop.test\r\nSUBJECT:   folded\r\n\t and  \r\n   again  \r\nTo: x@y.test,\r\n z@y.test\r\n\r\nx\r\n",
		"From: a@shop.test\r\nTo: one@x.test\r\nTo: two@x.test\r\nSubject: two To fields\r\n\r\nx\r\n",
		"From: \"=?ISO-2022-JP?B?GyRCJTclZyVDJVcbKEI=?=\" <a@shop.test>\r\n"
		"Subject: =?UTF-8?B?5rOo5paH?=\r\n\r\n\x1b$B$3$s$K$A$O\x1b(B\r\n",
	};
	struct config_diags d = { 0 };
	make_key("k.pem", _i ? "ED25519" : "RSA", 2048, NULL);
	struct config *cfg = load_conf("keys = shop.test k k.pem\n", &d);
	char err[256], why[256], out[1024];
	struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
	ck_assert_ptr_nonnull(k);
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		char *field = NULL;
		const struct dkim_key *used;
		ck_assert_msg(sign(k, msgs[i], ROUTE_DIRECT, &field, &used, why, sizeof(why)) == 1,
		              "message %zu: %s", i, why);
		ck_assert_msg(verify(cfg, field, msgs[i], out, sizeof(out)) == 0, "%s message %zu: %s\n%s",
		              _i ? "ed25519" : "rsa", i, out, field);
		free(field);
	}
	dkim_keys_unref(k);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_config_diagnostics)
{
	struct config_diags d = { 0 };
	make_key("small.pem", "RSA", 1024, NULL);
	make_key("tiny.pem", "RSA", 512, NULL);
	make_key("ec.pem", "EC", 0, NULL);
	make_key("enc.pem", "ED25519", 0, "secret");
	make_key("ok.pem", "ED25519", 0, NULL);
	write_file("junk.pem", "not a key\n");
	chmod(tdir, 0700);
	struct config *cfg = load_conf("keys = small.test s small.pem\n"     /* line 6 */
	                               "    tiny.test s tiny.pem\n"          /* 7 */
	                               "    junk.test s junk.pem\n"          /* 8 */
	                               "    gone.test s gone.pem\n"          /* 9 */
	                               "    enc.test s enc.pem\n"            /* 10 */
	                               "    bad_domain s ok.pem\n"           /* 11 */
	                               "    ok.test bad/sel ok.pem\n"        /* 12 */
	                               "    ok.test s\n"                     /* 13 */
	                               "    ok.test s ok.pem\n"              /* 14 */
	                               "    OK.test t ok.pem\n"              /* 15 */
	                               "sign = some\n", &d);                 /* 16 */
	ck_assert_ptr_null(cfg);
	dump_diags(&d);
	ck_assert(has_diag(&d, conf));
	ck_assert(has_diag(&d, ":6: warning: keys:") && has_diag(&d, "1024 bits; use 2048"));
	ck_assert(has_diag(&d, ":7: keys:") && has_diag(&d, "RSA key of 512 bits; at least 1024"));
	ck_assert(has_diag(&d, ":8: keys:") && has_diag(&d, "junk.pem\" holds no PEM private key"));
	ck_assert(has_diag(&d, ":9: keys: cannot read") && has_diag(&d, "No such file or directory"));
	ck_assert(has_diag(&d, ":10: keys:") && has_diag(&d, "enc.pem\" holds no PEM private key "
	                                                    "(or an encrypted one)"));
	ck_assert(has_diag(&d, ":11: keys: \"bad_domain\" is not a valid domain"));
	ck_assert(has_diag(&d, ":12: keys: \"bad/sel\" is not a valid selector"));
	ck_assert(has_diag(&d, ":13: keys: \"ok.test s\" is not \"DOMAIN SELECTOR FILE\""));
	ck_assert(has_diag(&d, ":15: keys: ok.test has a key already (line 14)"));
	ck_assert(has_diag(&d, ":16: sign: \"some\" is not direct, all or none"));
	config_diags_free(&d);

	cfg = load_conf("keys = ec.test s ec.pem\n", &d);
	ck_assert_ptr_null(cfg);
	ck_assert(has_diag(&d, ":6: keys:") && has_diag(&d, "is a id-ecPublicKey key; DKIM signs with "
	                                                    "RSA or Ed25519"));
	config_diags_free(&d);

	/* A 1024-bit key warns but loads; the printed configuration loads back. */
	cfg = load_conf("keys = small.test s small.pem\n    ok.test s2 ok.pem\nsign = all\n", &d);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_uint_eq(d.nerrors, 0);
	ck_assert_uint_eq(d.n, 1);
	char printed[400];
	snprintf(printed, sizeof(printed), "%s/printed.conf", tdir);
	FILE *fp = fopen(printed, "w");
	config_print(cfg, fp);
	fclose(fp);
	config_free(cfg);
	config_diags_free(&d);
	ck_assert_int_eq(config_load(printed, &cfg, &d), 0);
	ck_assert_uint_eq(cfg->dkim.nkeys, 2);
	ck_assert_str_eq(cfg->dkim.keys[1].domain, "ok.test");
	ck_assert_str_eq(cfg->dkim.keys[1].selector, "s2");
	ck_assert_int_eq(cfg->dkim.sign, CONFIG_DKIM_SIGN_ALL);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_public_record)
{
	make_key("rsa.pem", "RSA", 2048, NULL);
	make_key("ed.pem", "ED25519", 0, NULL);
	struct config_diags d = { 0 };
	struct config *cfg = load_conf("keys = a.test s rsa.pem\n    b.test s ed.pem\n", &d);
	ck_assert_ptr_nonnull(cfg);
	const char *k;
	char *p;
	ck_assert_int_eq(dkim_public_record(cfg->dkim.keys[0].pem, cfg->dkim.keys[0].pem_len, &k, &p), 0);
	ck_assert_str_eq(k, "rsa");
	ck_assert(strncmp(p, "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 44) == 0);
	ck_assert_uint_eq(strlen(p), 392);
	free(p);
	ck_assert_int_eq(dkim_public_record(cfg->dkim.keys[1].pem, cfg->dkim.keys[1].pem_len, &k, &p), 0);
	ck_assert_str_eq(k, "ed25519");
	ck_assert_uint_eq(strlen(p), 44);
	free(p);
	ck_assert_int_eq(dkim_public_record("junk", 4, &k, &p), -1);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* ---- the queue's hook, as server/session.c uses it for signing ---- */

struct hook {
	pthread_t loop_thread, hook_thread;
	int calls;
	size_t seen;            /* bytes of the parts the hook saw */
	int status;
	bool done;
	const struct dkim_keys *keys;
	char *field;
	size_t len;
};

static void hook_fn(void *arg, const struct iovec *parts, size_t nparts, struct iovec *pre)
{
	struct hook *h = arg;
	const struct dkim_key *used;
	char why[256];
	h->calls++;
	h->hook_thread = pthread_self();
	for (size_t i = 0; i < nparts; i++)
		h->seen += parts[i].iov_len;
	if (dkim_sign_mail(h->keys, parts, nparts, ROUTE_DIRECT, &h->field, &h->len, &used, why,
	                   sizeof(why)) == 1) {
		pre->iov_base = h->field;
		pre->iov_len = h->len;
	}
}

static void hook_done(void *arg, int status)
{
	struct hook *h = arg;
	h->status = status;
	h->done = true;
}

/* The hook runs once, on a pool thread (never the loop's); its bytes go
 * in front of the message and the envelope's size counts them; the
 * mail as queued verifies. */
START_TEST(test_queue_hook)
{
	struct config_diags d = { 0 };
	make_key("k.pem", "ED25519", 0, NULL);
	struct config *cfg = load_conf("keys = shop.test k k.pem\n", &d);
	char err[256], qdir[300], path[400], out[1024];
	struct dkim_keys *k = dkim_keys_load(cfg, err, sizeof(err));
	uv_loop_t loop;
	struct queue *q;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	snprintf(qdir, sizeof(qdir), "%s/spool", tdir);
	ck_assert_int_eq(queue_open(&loop, qdir, &q), 0);

	static const char rcvd[] = "Received: from x\r\n\tby relay.test; now\r\n";
	uv_buf_t parts[2] = { uv_buf_init((char *)rcvd, sizeof(rcvd) - 1),
	                      uv_buf_init((char *)MSG_SHOP, (unsigned)strlen(MSG_SHOP)) };
	struct queue_rcpt rc = { .addr = (char *)"x@example.jp" };
	struct queue_envelope env = { .from = (char *)"shop@shop.test", .rcpts = &rc, .nrcpts = 1,
	                              .size = parts[0].len + parts[1].len };
	queue_new_id(q, env.id);
	struct hook h = { .loop_thread = pthread_self(), .keys = k };
	ck_assert_int_eq(queue_commit_spilled(q, &env, parts, 2, 2, -1, 0, hook_fn, &h, hook_done, &h), 0);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert(h.done);
	ck_assert_int_eq(h.status, 0);
	ck_assert_int_eq(h.calls, 1);
	ck_assert(!pthread_equal(h.hook_thread, h.loop_thread));
	ck_assert_uint_eq(h.seen, env.size);
	ck_assert_ptr_nonnull(h.field);

	/* The mail went to the segment log; a restart makes it its file. */
	queue_close(q);
	ck_assert_int_eq(queue_open(&loop, qdir, &q), 0);
	struct queue_envelope back;
	uint64_t off;
	ck_assert_int_eq(queue_read_envelope(qdir, env.id, &back, &off), 0);
	ck_assert_uint_eq(back.size, env.size + h.len);
	snprintf(path, sizeof(path), "%s/mail/%s", qdir, env.id);
	FILE *fp = fopen(path, "rb");
	ck_assert_ptr_nonnull(fp);
	char *data = malloc(back.size + 1);
	ck_assert_int_eq(fseek(fp, (long)off, SEEK_SET), 0);
	ck_assert_uint_eq(fread(data, 1, back.size + 1, fp), back.size);
	fclose(fp);
	data[back.size] = '\0';
	ck_assert(strncmp(data, h.field, h.len) == 0);
	ck_assert_int_eq(verify(cfg, NULL, data, out, sizeof(out)), 0);
	queue_envelope_free(&back);
	free(data);
	free(h.field);
	queue_close(q);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	dkim_keys_unref(k);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

static Suite *dkim_suite(void)
{
	Suite *s = suite_create("dkim");
	TCase *tc = tcase_create("dkim");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_rsa_signature_verifies);
	tcase_add_test(tc, test_ed25519_signature_verifies);
	tcase_add_test(tc, test_key_choice);
	tcase_add_test(tc, test_sign_by_route);
	tcase_add_loop_test(tc, test_parts, 0, 2);
	tcase_add_loop_test(tc, test_canonical_edges, 0, 2);
	tcase_add_test(tc, test_config_diagnostics);
	tcase_add_test(tc, test_public_record);
	tcase_add_test(tc, test_queue_hook);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(dkim_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
