/*
 * test_smtp_cmd - unit tests for proto/smtp_cmd.c (see proto/smtp_cmd.h).
 *
 * The strict cases come first: what must be refused, and what must come
 * back exactly as written. Then the accepted forms.
 */
#include "proto/smtp_cmd.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* ---- helpers ---- */

static enum smtp_parse_status mail(const char *s, struct smtp_mail_args *a)
{
	return smtp_mail_parse(s, strlen(s), a);
}

static enum smtp_parse_status rcpt(const char *s, bool utf8, struct smtp_rcpt_args *a)
{
	return smtp_rcpt_parse(s, strlen(s), utf8, a);
}

static void mail_ok(const char *arg, const char *want)
{
	struct smtp_mail_args a;
	enum smtp_parse_status st = mail(arg, &a);

	ck_assert_msg(st == SMTP_PARSE_OK, "MAIL FROM:%s: status %d", arg, st);
	ck_assert_str_eq(a.addr, want);
	ck_assert_uint_eq(a.addr_len, strlen(want));
}

static void mail_st(const char *arg, enum smtp_parse_status want)
{
	struct smtp_mail_args a;
	enum smtp_parse_status st = mail(arg, &a);

	ck_assert_msg(st == want, "MAIL FROM:%s: status %d, want %d", arg, st, want);
	if (st != SMTP_PARSE_OK) {
		ck_assert_str_eq(a.addr, "");
		ck_assert_uint_eq(a.addr_len, 0);
	}
}

static void rcpt_st(const char *arg, bool utf8, enum smtp_parse_status want)
{
	struct smtp_rcpt_args a;
	enum smtp_parse_status st = rcpt(arg, utf8, &a);

	ck_assert_msg(st == want, "RCPT TO:%s: status %d, want %d", arg, st, want);
}

static int cmd(const char *s, struct smtp_cmd *c)
{
	return smtp_cmd_parse(s, strlen(s), c);
}

static void arg_is(const struct smtp_cmd *c, const char *want)
{
	ck_assert_uint_eq(c->arg_len, strlen(want));
	ck_assert(memcmp(c->arg, want, c->arg_len) == 0);
}

static char *rep(char ch, size_t n)
{
	static char bufs[4][600];
	static int k;
	char *b = bufs[k++ % 4];

	ck_assert(n < sizeof(bufs[0]));
	memset(b, ch, n);
	b[n] = '\0';
	return b;
}

static bool no_ctl(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
			return false;
	return true;
}

/* ---- smtp_cmd_parse ---- */

START_TEST(cmd_rejects_control_chars)
{
	struct smtp_cmd c;

	ck_assert_int_eq(smtp_cmd_parse("NOOP\0x", 6, &c), -1);
	ck_assert_int_eq(smtp_cmd_parse("\0", 1, &c), -1);
	ck_assert_int_eq(cmd("NOOP\r", &c), -1);
	ck_assert_int_eq(cmd("MAIL FROM:<a@b>\rRCPT TO:<c@d>", &c), -1);
	ck_assert_int_eq(cmd("MAIL FROM:<a@b>\nRCPT TO:<c@d>", &c), -1);
	ck_assert_int_eq(cmd("HELO a\x01", &c), -1);
	ck_assert_int_eq(cmd("HELO a\x1b[0m", &c), -1);
	ck_assert_int_eq(cmd("HELO a\x7f", &c), -1);
	ck_assert_int_eq(smtp_cmd_parse("MAIL FROM:<a\0@b>", 16, &c), -1);
	/* TAB is not a control character for this purpose. */
	ck_assert_int_eq(cmd("HELO a\tb", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_HELO);
	arg_is(&c, "a\tb");
	/* 8-bit bytes are allowed on the line (SMTPUTF8 addresses). */
	ck_assert_int_eq(cmd("MAIL FROM:<\xc3\xbc@x.example> SMTPUTF8", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_MAIL);
}
END_TEST

static const struct {
	const char *name;
	enum smtp_verb verb;
} verb_table[] = {
	{ "EHLO", SMTP_EHLO }, { "HELO", SMTP_HELO }, { "DATA", SMTP_DATA },
	{ "RSET", SMTP_RSET }, { "NOOP", SMTP_NOOP }, { "QUIT", SMTP_QUIT },
	{ "VRFY", SMTP_VRFY }, { "EXPN", SMTP_EXPN }, { "HELP", SMTP_HELP },
	{ "STARTTLS", SMTP_STARTTLS }, { "AUTH", SMTP_AUTH }, { "BDAT", SMTP_BDAT },
};

START_TEST(cmd_every_verb_any_case)
{
	const char *name = verb_table[_i].name;
	char up[32], low[32], mixed[32], line[64];
	struct smtp_cmd c;
	size_t n = strlen(name);

	for (size_t k = 0; k <= n; k++) {
		up[k] = name[k];
		low[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
		mixed[k] = k % 2 ? low[k] : up[k];
	}
	const char *forms[] = { up, low, mixed };
	for (size_t f = 0; f < 3; f++) {
		ck_assert_int_eq(cmd(forms[f], &c), 0);
		ck_assert_int_eq(c.verb, verb_table[_i].verb);
		ck_assert_uint_eq(c.arg_len, 0);

		snprintf(line, sizeof(line), "%s  some arg  ", forms[f]);
		ck_assert_int_eq(cmd(line, &c), 0);
		ck_assert_int_eq(c.verb, verb_table[_i].verb);
		arg_is(&c, "some arg");

		/* A verb must be followed by SP or the end of the line. */
		snprintf(line, sizeof(line), "%sX", forms[f]);
		ck_assert_int_eq(cmd(line, &c), 0);
		ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
		snprintf(line, sizeof(line), "%s\targ", forms[f]);
		ck_assert_int_eq(cmd(line, &c), 0);
		ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
		snprintf(line, sizeof(line), "X%s", forms[f]);
		ck_assert_int_eq(cmd(line, &c), 0);
		ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
	}
}
END_TEST

START_TEST(cmd_mail_rcpt_keywords)
{
	struct smtp_cmd c;

	ck_assert_int_eq(cmd("MAIL FROM:<a@b.example>", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_MAIL);
	arg_is(&c, "<a@b.example>");
	ck_assert_int_eq(cmd("mail from:<a@b.example> SIZE=10", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_MAIL);
	arg_is(&c, "<a@b.example> SIZE=10");
	/* Real clients put a space after the colon. */
	ck_assert_int_eq(cmd("Mail From: <a@b.example>", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_MAIL);
	arg_is(&c, "<a@b.example>");
	ck_assert_int_eq(cmd("MAIL FROM:    <>   ", &c), 0);
	arg_is(&c, "<>");
	ck_assert_int_eq(cmd("MAIL FROM:", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_MAIL);
	ck_assert_uint_eq(c.arg_len, 0);

	ck_assert_int_eq(cmd("RCPT TO:<c@d.example>", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_RCPT);
	arg_is(&c, "<c@d.example>");
	ck_assert_int_eq(cmd("rcpt to: <c@d.example>", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_RCPT);
	arg_is(&c, "<c@d.example>");

	/* Without the keyword: a syntax error, but the verb is known. */
	const char *bad[] = {
		"MAIL", "MAIL <a@b>", "MAIL FROM <a@b>", "MAIL  FROM:<a@b>",
		"MAIL FROM :<a@b>", "MAIL TO:<a@b>", "MAIL FRO", "MAIL FROM",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		ck_assert_msg(cmd(bad[k], &c) == -1, "%s", bad[k]);
		ck_assert_int_eq(c.verb, SMTP_MAIL);
	}
	const char *badr[] = { "RCPT", "RCPT <a@b>", "RCPT TO <a@b>", "RCPT FROM:<a@b>", "RCPT TO" };
	for (size_t k = 0; k < sizeof(badr) / sizeof(badr[0]); k++) {
		ck_assert_msg(cmd(badr[k], &c) == -1, "%s", badr[k]);
		ck_assert_int_eq(c.verb, SMTP_RCPT);
	}
	/* Glued to the verb: not the MAIL verb at all. */
	ck_assert_int_eq(cmd("MAILFROM:<a@b>", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
}
END_TEST

START_TEST(cmd_unknown_and_empty)
{
	struct smtp_cmd c;

	ck_assert_int_eq(cmd("", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
	ck_assert_int_eq(cmd("    ", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
	ck_assert_int_eq(cmd(" NOOP", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
	ck_assert_int_eq(cmd("GET / HTTP/1.1", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
	ck_assert_int_eq(cmd("X-FOO bar", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
	ck_assert_int_eq(cmd("QUI", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
	ck_assert_int_eq(cmd("STARTTLSX", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_UNKNOWN);
	ck_assert_int_eq(cmd("AUTH PLAIN AGZvbwBiYXI=", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_AUTH);
	arg_is(&c, "PLAIN AGZvbwBiYXI=");
	ck_assert_int_eq(cmd("BDAT 100 LAST", &c), 0);
	ck_assert_int_eq(c.verb, SMTP_BDAT);
	arg_is(&c, "100 LAST");
	ck_assert_int_eq(cmd("EHLO    mail.example.com   ", &c), 0);
	arg_is(&c, "mail.example.com");
}
END_TEST

/* ---- MAIL FROM: security cases ---- */

START_TEST(mail_no_crlf_in_output)
{
	struct smtp_mail_args a;

	ck_assert_int_eq(smtp_mail_parse("<a\r\n@b.example>", 15, &a), SMTP_PARSE_BAD_ADDRESS);
	ck_assert_int_eq(smtp_mail_parse("<a@b.example\r\n>", 15, &a), SMTP_PARSE_BAD_ADDRESS);
	ck_assert_int_eq(smtp_mail_parse("<\"a\r\nb\"@b.example>", 18, &a), SMTP_PARSE_BAD_ADDRESS);
	ck_assert_int_eq(smtp_mail_parse("<\"a\\\r\"@b.example>", 17, &a), SMTP_PARSE_BAD_ADDRESS);
	ck_assert_int_eq(smtp_mail_parse("<\"a\\\n\"@b.example>", 17, &a), SMTP_PARSE_BAD_ADDRESS);
	ck_assert_int_eq(smtp_mail_parse("<a\0b@c.example>", 15, &a), SMTP_PARSE_BAD_ADDRESS);
	ck_assert_int_eq(smtp_mail_parse("<\"a\0b\"@c.example>", 17, &a), SMTP_PARSE_BAD_ADDRESS);
	ck_assert_int_eq(smtp_mail_parse("<a@[1.2.3.4\0]>", 14, &a), SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b.example>\r\nRCPT TO:<c@d.example>", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example> SIZE=1\r\n", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.\texample>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<\"a\tb\"@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<\"a\\\tb\"@b.example>", SMTP_PARSE_BAD_ADDRESS);
}
END_TEST

START_TEST(mail_domain_after_last_unquoted_at)
{
	struct smtp_mail_args a;

	/* %-hack: the '%' is an ordinary atext character. */
	mail_ok("<user%evil.example@good.example>", "user%evil.example@good.example");
	ck_assert_int_eq(mail("<user%evil.example@good.example>", &a), SMTP_PARSE_OK);
	ck_assert_int_eq(smtp_addr_split(a.addr, a.addr_len), 17);
	ck_assert_str_eq(a.addr + 18, "good.example");

	/* Quoted '@' belongs to the local part. */
	mail_ok("<\"a@evil.example\"@good.example>", "\"a@evil.example\"@good.example");
	ck_assert_int_eq(mail("<\"a@evil.example\"@good.example>", &a), SMTP_PARSE_OK);
	ck_assert_str_eq(a.addr + smtp_addr_split(a.addr, a.addr_len) + 1, "good.example");

	mail_ok("<\"a\\\"@evil.example\"@good.example>", "\"a\\\"@evil.example\"@good.example");
	ck_assert_int_eq(mail("<\"a\\\"@evil.example\"@good.example>", &a), SMTP_PARSE_OK);
	ck_assert_str_eq(a.addr + smtp_addr_split(a.addr, a.addr_len) + 1, "good.example");

	/* Two unquoted '@' are not an address. */
	mail_st("<a@evil.example@good.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b@c>", SMTP_PARSE_BAD_ADDRESS);

	/* A source route never decides the domain. */
	mail_ok("<@evil.example:user@good.example>", "user@good.example");
	mail_ok("<@a.example,@b.example:user@good.example>", "user@good.example");
	ck_assert_int_eq(mail("<@evil.example:user@good.example>", &a), SMTP_PARSE_OK);
	ck_assert_str_eq(a.addr + smtp_addr_split(a.addr, a.addr_len) + 1, "good.example");
}
END_TEST

START_TEST(mail_opensmtpd_2020)
{
	/* CVE-2020-7247: the local part went to a shell. Unquoted, it is
	 * not an address at all. */
	mail_st("<;sleep 66;>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<;sleep 66;@example.com>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<;sleep${IFS}66;@example.com>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a;b@example.com>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<`id`@example.com>", SMTP_PARSE_OK);   /* '`' is atext */
	mail_ok("<`id`@example.com>", "`id`@example.com");
	/* Quoted, it is a valid address that comes back byte for byte: no
	 * unescaping, no quote removal. */
	mail_ok("<\";sleep 66;\"@example.com>", "\";sleep 66;\"@example.com");
	mail_ok("<\"x\\\"; rm -rf /; \\\"\"@example.com>", "\"x\\\"; rm -rf /; \\\"\"@example.com");
	mail_ok("<\"$(id)|&<>\"@example.com>", "\"$(id)|&<>\"@example.com");
	mail_ok("<\"a\\\\\"@example.com>", "\"a\\\\\"@example.com");
}
END_TEST

/* ---- MAIL FROM: paths ---- */

START_TEST(mail_basic_and_null)
{
	struct smtp_mail_args a;

	ck_assert_int_eq(mail("<User.Name+tag@Example.COM>", &a), SMTP_PARSE_OK);
	ck_assert_str_eq(a.addr, "User.Name+tag@Example.COM");
	ck_assert(!a.null_sender);
	ck_assert(!a.has_utf8);
	ck_assert(!a.size_given);
	ck_assert(!a.smtputf8);
	ck_assert_int_eq(a.body, SMTP_BODY_NONE);

	ck_assert_int_eq(mail("<>", &a), SMTP_PARSE_OK);
	ck_assert(a.null_sender);
	ck_assert_str_eq(a.addr, "");
	ck_assert_uint_eq(a.addr_len, 0);
	ck_assert_int_eq(mail("<> SIZE=1000 BODY=8BITMIME", &a), SMTP_PARSE_OK);
	ck_assert(a.null_sender);
	ck_assert(a.size_given);
	ck_assert_uint_eq(a.size, 1000);
	ck_assert_int_eq(a.body, SMTP_BODY_8BITMIME);

	mail_ok("<a@localhost>", "a@localhost");
	mail_ok("<!#$%&'*+-/=?^_`{|}~@x.example>", "!#$%&'*+-/=?^_`{|}~@x.example");
	mail_ok("<a.b.c@x-y.example>", "a.b.c@x-y.example");
	mail_ok("<0@0.0>", "0@0.0");
	/* Spaces around the argument are tolerated. */
	mail_ok("  <a@b.example>  ", "a@b.example");
}
END_TEST

START_TEST(mail_brackets_and_garbage)
{
	mail_st("", SMTP_PARSE_SYNTAX);
	mail_st("   ", SMTP_PARSE_SYNTAX);
	mail_st("a@b.example", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example", SMTP_PARSE_SYNTAX);
	mail_st("a@b.example>", SMTP_PARSE_SYNTAX);
	mail_st("<<a@b.example>>", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example>>", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example>SIZE=1", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example>x", SMTP_PARSE_SYNTAX);
	mail_st("<", SMTP_PARSE_SYNTAX);
	mail_st(">", SMTP_PARSE_SYNTAX);
	mail_st("<\"a@b.example>", SMTP_PARSE_SYNTAX);     /* quote never closed */
	mail_st("<<a@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a<b@c.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b.example<>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a b@c.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a(b)@c.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a,b@c.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a:b@c.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a[b]@c.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a\\b@c.example>", SMTP_PARSE_BAD_ADDRESS);
	/* Every RFC 5322 special outside quotes. */
	for (const char *sp = "()<>[]:;@\\,\" "; *sp; sp++) {
		char buf[32];
		snprintf(buf, sizeof(buf), "<a%cb@c.example>", *sp);
		/* '>' closes the path early and '"' opens a quote that never
		 * closes: both break the <...> framing itself. */
		mail_st(buf, *sp == '>' || *sp == '"' ? SMTP_PARSE_SYNTAX : SMTP_PARSE_BAD_ADDRESS);
	}
	mail_st("<a>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("< a@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b.example >", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<\"\">", SMTP_PARSE_BAD_ADDRESS);
}
END_TEST

START_TEST(mail_dot_string)
{
	mail_st("<.a@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a.@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a..b@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<.@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<..@b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_ok("<a.b@b.example>", "a.b@b.example");
}
END_TEST

START_TEST(mail_quoted)
{
	mail_ok("<\"john doe\"@x.example>", "\"john doe\"@x.example");
	mail_ok("<\"a\\\"b\"@x.example>", "\"a\\\"b\"@x.example");
	mail_ok("<\"\"@x.example>", "\"\"@x.example");
	mail_ok("<\" \"@x.example>", "\" \"@x.example");
	mail_ok("<\"a>b\"@x.example>", "\"a>b\"@x.example");
	mail_ok("<\"a..b.\"@x.example>", "\"a..b.\"@x.example");
	mail_ok("<\"\\a\"@x.example>", "\"\\a\"@x.example");
	mail_ok("<\"a>b\"@x.example> SIZE=5", "\"a>b\"@x.example");
	/* Quoted-string must be the whole local part. */
	mail_st("<\"a\"b@x.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a\"b\"@x.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<\"a\".b@x.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<\"a\\\"@x.example>", SMTP_PARSE_SYNTAX);  /* \" escapes the close */
	mail_st("<\"a\x7f\"@x.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<\"a\\\x7f\"@x.example>", SMTP_PARSE_BAD_ADDRESS);
}
END_TEST

START_TEST(mail_domains)
{
	mail_ok("<a@b>", "a@b");
	mail_ok("<a@xn--bcher-kva.example>", "a@xn--bcher-kva.example");
	mail_ok("<a@1.2.3.4>", "a@1.2.3.4");
	mail_ok("<a@a-b--c.example>", "a@a-b--c.example");
	mail_st("<a@-b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b-.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b..example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@.b.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b.example.>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b_c.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b!c.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@b%c.example>", SMTP_PARSE_BAD_ADDRESS);

	char buf[400];
	snprintf(buf, sizeof(buf), "<a@%s.example>", rep('b', 63));
	mail_st(buf, SMTP_PARSE_OK);
	snprintf(buf, sizeof(buf), "<a@%s.example>", rep('b', 64));
	mail_st(buf, SMTP_PARSE_BAD_ADDRESS);
	snprintf(buf, sizeof(buf), "<a@example.%s>", rep('b', 64));
	mail_st(buf, SMTP_PARSE_BAD_ADDRESS);
}
END_TEST

START_TEST(mail_address_literals)
{
	mail_ok("<a@[192.0.2.1]>", "a@[192.0.2.1]");
	mail_ok("<a@[0.0.0.0]>", "a@[0.0.0.0]");
	mail_ok("<a@[255.255.255.255]>", "a@[255.255.255.255]");
	mail_ok("<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]");
	mail_ok("<a@[ipv6:2001:DB8::1]>", "a@[ipv6:2001:DB8::1]");
	mail_ok("<a@[IPv6:::1]>", "a@[IPv6:::1]");
	mail_ok("<a@[IPv6:::ffff:192.0.2.1]>", "a@[IPv6:::ffff:192.0.2.1]");
	mail_ok("<a@[IPv6:2001:db8:0:0:0:0:0:1]>", "a@[IPv6:2001:db8:0:0:0:0:0:1]");
	/* General-address-literal (RFC 5321 §4.1.3). */
	mail_ok("<a@[x-tag:some-content]>", "a@[x-tag:some-content]");

	mail_st("<a@[256.0.0.1]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[1.2.3]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[1.2.3.4.5]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[1.2.3.]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[01.2.3.4]>", SMTP_PARSE_BAD_ADDRESS);  /* octal look-alike */
	mail_st("<a@[ 1.2.3.4]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[1.2.3.4]x>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@x[1.2.3.4]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[1.2.3.4>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[example.com]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[IPv6:]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[IPv6:2001:db8::g]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[IPv6:2001:db8:::1]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[IPv6:1.2.3.4]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[IPv6:1:2:3:4:5:6:7:8:9]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[IPv6:fe80::1%eth0]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[:x]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[tag:]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[-tag:x]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[tag-:x]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[tag:a[b]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[tag:a\\b]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[tag:a b]>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[1.2.3.4] SMTPUTF8>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a@[\xc3\xbc] SMTPUTF8>", SMTP_PARSE_BAD_ADDRESS);
}
END_TEST

START_TEST(mail_utf8)
{
	struct smtp_mail_args a;

	ck_assert_int_eq(mail("<\xc3\xbc@example.com>", &a), SMTP_PARSE_NEED_SMTPUTF8);
	ck_assert_int_eq(mail("<a@b\xc3\xbc" "cher.example>", &a), SMTP_PARSE_NEED_SMTPUTF8);
	ck_assert_int_eq(mail("<\"\xc3\xbc\"@example.com>", &a), SMTP_PARSE_NEED_SMTPUTF8);
	ck_assert_int_eq(mail("<\xc3\xbc@example.com> SIZE=10", &a), SMTP_PARSE_NEED_SMTPUTF8);

	ck_assert_int_eq(mail("<\xc3\xbc@example.com> SMTPUTF8", &a), SMTP_PARSE_OK);
	ck_assert_str_eq(a.addr, "\xc3\xbc@example.com");
	ck_assert(a.has_utf8);
	ck_assert(a.smtputf8);
	ck_assert_int_eq(mail("<a@b\xc3\xbc" "cher.example> smtputf8", &a), SMTP_PARSE_OK);
	ck_assert(a.has_utf8);
	ck_assert_int_eq(mail("<\"\xe6\x97\xa5 \xe6\x9c\xac\"@example.com> SMTPUTF8", &a), SMTP_PARSE_OK);
	ck_assert_int_eq(mail("<\xf0\x9f\x93\xa7@\xe4\xbe\x8b.jp> SIZE=5 SMTPUTF8", &a), SMTP_PARSE_OK);
	ck_assert(a.has_utf8);
	ck_assert_int_eq(mail("<a@b.example> SMTPUTF8", &a), SMTP_PARSE_OK);
	ck_assert(a.smtputf8);
	ck_assert(!a.has_utf8);

	/* Ill-formed UTF-8 is a bad address, with or without SMTPUTF8. */
	const char *bad[] = {
		"<\xff@example.com>",                 /* never valid */
		"<\xc3@example.com>",                 /* truncated */
		"<a\xc3@example.com>",
		"<\xc0\xaf@example.com>",             /* overlong '/' */
		"<\xe0\x80\xaf@example.com>",         /* overlong */
		"<\xed\xa0\x80@example.com>",         /* surrogate */
		"<\xf4\x90\x80\x80@example.com>",     /* > U+10FFFF */
		"<\x80@example.com>",                 /* lone continuation */
		"<a@\xc3.example>",
		"<\"\xc3\"@example.com>",
		"<\"\\\xc3\xbc\"@example.com>",       /* quoted-pair is ASCII only */
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		char line[128];
		ck_assert_msg(mail(bad[k], &a) == SMTP_PARSE_BAD_ADDRESS, "%zu", k);
		snprintf(line, sizeof(line), "%s SMTPUTF8", bad[k]);
		ck_assert_msg(mail(line, &a) == SMTP_PARSE_BAD_ADDRESS, "%zu+", k);
	}
}
END_TEST

START_TEST(mail_length_limits)
{
	char buf[600];
	struct smtp_mail_args a;

	/* Local part: 64 octets fit, 65 do not (RFC 5321 §4.5.3.1.1). */
	snprintf(buf, sizeof(buf), "<%s@x.example>", rep('a', 64));
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_OK);
	snprintf(buf, sizeof(buf), "<%s@x.example>", rep('a', 65));
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_TOO_LONG);
	/* The quotes count. */
	snprintf(buf, sizeof(buf), "<\"%s\"@x.example>", rep('a', 62));
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_OK);
	snprintf(buf, sizeof(buf), "<\"%s\"@x.example>", rep('a', 63));
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_TOO_LONG);

	/* Path: 256 octets with the brackets fit, 257 do not (§4.5.3.1.3). */
	snprintf(buf, sizeof(buf), "<%s@%s.%s.%s>", rep('a', 64), rep('b', 63), rep('c', 63), rep('d', 61));
	ck_assert_uint_eq(strlen(buf), 256);
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_OK);
	ck_assert_uint_eq(a.addr_len, 254);
	ck_assert_uint_eq(strlen(a.addr), 254);
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " SIZE=1");
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_OK);
	snprintf(buf, sizeof(buf), "<%s@%s.%s.%s>", rep('a', 64), rep('b', 63), rep('c', 63), rep('d', 62));
	ck_assert_uint_eq(strlen(buf), 257);
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_TOO_LONG);
	/* A source route counts toward the path length. */
	snprintf(buf, sizeof(buf), "<@r.example:%s@%s.%s.%s>", rep('a', 64), rep('b', 63), rep('c', 63),
	         rep('d', 51));
	ck_assert_uint_eq(strlen(buf), 257);
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_TOO_LONG);
	/* Far too long, and not even well-formed. */
	snprintf(buf, sizeof(buf), "<%s>", rep('x', 500));
	ck_assert_int_eq(mail(buf, &a), SMTP_PARSE_TOO_LONG);
}
END_TEST

START_TEST(mail_source_routes)
{
	mail_ok("<@relay.example:user@real.example>", "user@real.example");
	mail_ok("<@a.example,@b.example,@c.example:u@d.example>", "u@d.example");
	mail_ok("<@a:\"q@x\"@d.example>", "\"q@x\"@d.example");
	mail_st("<@a.example,b.example:u@d.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@a.example:@b.example:u@d.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@:u@d.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@a.example,:u@d.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@a.example,@:u@d.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@a.example:>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@a.example u@d.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@a_b.example:u@d.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@[192.0.2.1]:u@d.example>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<@a.example:u>", SMTP_PARSE_BAD_ADDRESS);
	mail_st("<a.example:u@d.example>", SMTP_PARSE_BAD_ADDRESS);
}
END_TEST

/* ---- MAIL FROM: parameters ---- */

START_TEST(mail_param_size)
{
	struct smtp_mail_args a;

	ck_assert_int_eq(mail("<a@b.example> SIZE=0", &a), SMTP_PARSE_OK);
	ck_assert(a.size_given);
	ck_assert_uint_eq(a.size, 0);
	ck_assert_int_eq(mail("<a@b.example> size=12345", &a), SMTP_PARSE_OK);
	ck_assert_uint_eq(a.size, 12345);
	ck_assert_int_eq(mail("<a@b.example> Size=18446744073709551615", &a), SMTP_PARSE_OK);
	ck_assert_uint_eq(a.size, UINT64_MAX);
	ck_assert_int_eq(mail("<a@b.example> SIZE=00000000000000000001", &a), SMTP_PARSE_OK);
	ck_assert_uint_eq(a.size, 1);

	mail_st("<a@b.example> SIZE=18446744073709551616", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=99999999999999999999", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=000000000000000000001", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=12a", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=-1", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=+1", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=1=2", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=1 SIZE=1", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SIZE=1 size=2", SMTP_PARSE_BAD_PARAM);
}
END_TEST

START_TEST(mail_param_body)
{
	struct smtp_mail_args a;

	ck_assert_int_eq(mail("<a@b.example> BODY=7BIT", &a), SMTP_PARSE_OK);
	ck_assert_int_eq(a.body, SMTP_BODY_7BIT);
	ck_assert_int_eq(mail("<a@b.example> body=8bitmime", &a), SMTP_PARSE_OK);
	ck_assert_int_eq(a.body, SMTP_BODY_8BITMIME);
	ck_assert_int_eq(mail("<a@b.example> Body=8BitMime", &a), SMTP_PARSE_OK);
	ck_assert_int_eq(a.body, SMTP_BODY_8BITMIME);

	mail_st("<a@b.example> BODY=BINARYMIME", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> BODY=8BIT", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> BODY=7BITX", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> BODY=", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> BODY", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> BODY=7BIT BODY=7BIT", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> BODY=7BIT BODY=8BITMIME", SMTP_PARSE_BAD_PARAM);
}
END_TEST

START_TEST(mail_param_smtputf8_auth)
{
	struct smtp_mail_args a;

	ck_assert_int_eq(mail("<a@b.example> SMTPUTF8", &a), SMTP_PARSE_OK);
	ck_assert(a.smtputf8);
	ck_assert_int_eq(mail("<a@b.example> SmtpUtf8", &a), SMTP_PARSE_OK);
	ck_assert(a.smtputf8);
	mail_st("<a@b.example> SMTPUTF8=yes", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SMTPUTF8=", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> SMTPUTF8 SMTPUTF8", SMTP_PARSE_BAD_PARAM);

	mail_st("<a@b.example> AUTH=<>", SMTP_PARSE_OK);
	mail_st("<a@b.example> AUTH=user+2Bx@b.example", SMTP_PARSE_OK);
	mail_st("<a@b.example> auth=u+3D", SMTP_PARSE_OK);
	mail_st("<a@b.example> AUTH=\xc3\xbc@b.example SMTPUTF8", SMTP_PARSE_OK);
	mail_st("<a@b.example> AUTH=u+2b", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> AUTH=u+2", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> AUTH=u+", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> AUTH=u=v", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> AUTH=\xff", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> AUTH=", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> AUTH", SMTP_PARSE_BAD_PARAM);
	mail_st("<a@b.example> AUTH=<> AUTH=<>", SMTP_PARSE_BAD_PARAM);

	/* All at once, any order, extra spaces between parameters. */
	ck_assert_int_eq(mail("<a@b.example> SMTPUTF8  AUTH=<> BODY=8BITMIME SIZE=42", &a), SMTP_PARSE_OK);
	ck_assert(a.smtputf8);
	ck_assert_int_eq(a.body, SMTP_BODY_8BITMIME);
	ck_assert_uint_eq(a.size, 42);
}
END_TEST

START_TEST(mail_param_unknown)
{
	mail_st("<a@b.example> RET=FULL", SMTP_PARSE_UNKNOWN_PARAM);
	mail_st("<a@b.example> ENVID=x", SMTP_PARSE_UNKNOWN_PARAM);
	mail_st("<a@b.example> FOO", SMTP_PARSE_UNKNOWN_PARAM);
	mail_st("<a@b.example> X-FOO=bar", SMTP_PARSE_UNKNOWN_PARAM);
	mail_st("<a@b.example> SIZE=1 HOLDFOR=10", SMTP_PARSE_UNKNOWN_PARAM);
	mail_st("<a@b.example> SIZES=1", SMTP_PARSE_UNKNOWN_PARAM);
	mail_st("<> TRANSID=<x@y>", SMTP_PARSE_UNKNOWN_PARAM);
	/* Not an esmtp-keyword at all. */
	mail_st("<a@b.example> -FOO=1", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example> =1", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example> F_O=1", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example> F\xc3\x96=1", SMTP_PARSE_SYNTAX);
	mail_st("<a@b.example> <c@d.example>", SMTP_PARSE_SYNTAX);
	/* A bad address wins over a later parameter problem. */
	mail_st("<a..b@c.example> FOO=1", SMTP_PARSE_BAD_ADDRESS);
	/* ... and a parameter problem over missing SMTPUTF8. */
	mail_st("<\xc3\xbc@c.example> FOO=1", SMTP_PARSE_UNKNOWN_PARAM);
}
END_TEST

/* ---- RCPT TO: ---- */

START_TEST(rcpt_cases)
{
	struct smtp_rcpt_args a;

	ck_assert_int_eq(rcpt("<b@c.example>", false, &a), SMTP_PARSE_OK);
	ck_assert_str_eq(a.addr, "b@c.example");
	ck_assert_uint_eq(a.addr_len, 11);
	ck_assert(!a.postmaster);

	const char *pm[] = { "<postmaster>", "<Postmaster>", "<POSTMASTER>", "<PostMaster>" };
	for (size_t k = 0; k < 4; k++) {
		ck_assert_int_eq(rcpt(pm[k], false, &a), SMTP_PARSE_OK);
		ck_assert(a.postmaster);
		ck_assert_str_eq(a.addr, "postmaster");
		ck_assert_uint_eq(a.addr_len, 10);
	}
	ck_assert_int_eq(rcpt("<Postmaster@c.example>", false, &a), SMTP_PARSE_OK);
	ck_assert(!a.postmaster);
	ck_assert_str_eq(a.addr, "Postmaster@c.example");

	rcpt_st("<>", false, SMTP_PARSE_BAD_ADDRESS);
	rcpt_st("<postmaste>", false, SMTP_PARSE_BAD_ADDRESS);
	rcpt_st("<postmasterx>", false, SMTP_PARSE_BAD_ADDRESS);
	rcpt_st("<@r.example:postmaster>", false, SMTP_PARSE_BAD_ADDRESS);
	rcpt_st("<\"postmaster\">", false, SMTP_PARSE_BAD_ADDRESS);
	rcpt_st("b@c.example", false, SMTP_PARSE_SYNTAX);
	rcpt_st("<b@c.example", false, SMTP_PARSE_SYNTAX);
	rcpt_st("", false, SMTP_PARSE_SYNTAX);

	/* No parameter is offered for RCPT. */
	rcpt_st("<b@c.example> NOTIFY=NEVER", false, SMTP_PARSE_UNKNOWN_PARAM);
	rcpt_st("<b@c.example> ORCPT=rfc822;b@c.example", false, SMTP_PARSE_UNKNOWN_PARAM);
	rcpt_st("<b@c.example> SIZE=1", false, SMTP_PARSE_UNKNOWN_PARAM);
	rcpt_st("<postmaster> FOO", false, SMTP_PARSE_UNKNOWN_PARAM);
	rcpt_st("<b@c.example> -x", false, SMTP_PARSE_SYNTAX);
	rcpt_st("<b@c.example>x", false, SMTP_PARSE_SYNTAX);
	rcpt_st("<b@c.example>  ", false, SMTP_PARSE_OK);

	rcpt_st("<\xc3\xbc@c.example>", false, SMTP_PARSE_NEED_SMTPUTF8);
	ck_assert_int_eq(rcpt("<\xc3\xbc@c.example>", true, &a), SMTP_PARSE_OK);
	ck_assert(a.has_utf8);
	rcpt_st("<\xc3@c.example>", true, SMTP_PARSE_BAD_ADDRESS);

	rcpt_st("<@r.example:b@c.example>", false, SMTP_PARSE_OK);
	ck_assert_int_eq(rcpt("<@r.example:b@c.example>", false, &a), SMTP_PARSE_OK);
	ck_assert_str_eq(a.addr, "b@c.example");
	rcpt_st("<\"a@b\"@c.example>", false, SMTP_PARSE_OK);
	rcpt_st("<b@c.example\r\n>", false, SMTP_PARSE_BAD_ADDRESS);

	char buf[600];
	snprintf(buf, sizeof(buf), "<%s@x.example>", rep('a', 65));
	rcpt_st(buf, false, SMTP_PARSE_TOO_LONG);
	snprintf(buf, sizeof(buf), "<%s@%s.%s.%s>", rep('a', 64), rep('b', 63), rep('c', 63), rep('d', 62));
	rcpt_st(buf, false, SMTP_PARSE_TOO_LONG);
}
END_TEST

/* ---- random garbage: never a crash, never a control character out ---- */

START_TEST(garbage_random)
{
	static const char alphabet[] = "<>@\"\\.:,[] =-aZ09\r\n\t\x01\x7f\x80\xc3\xbc\xff%;IPv6SIZEBODY";
	unsigned seed = 12345;
	char line[300];
	int n_ok = 0;

	for (int iter = 0; iter < 200000; iter++) {
		size_t n, k;
		struct smtp_mail_args m;
		struct smtp_rcpt_args r;
		struct smtp_cmd c;

		seed = seed * 1103515245u + 12345u;
		n = (seed >> 16) % 40;
		for (k = 0; k < n; k++) {
			seed = seed * 1103515245u + 12345u;
			unsigned v = seed >> 16;
			if (v % 8 == 0)
				line[k] = (char)(v >> 3);   /* any byte, NUL included */
			else
				line[k] = alphabet[(v >> 3) % (sizeof(alphabet) - 1)];
		}
		if (iter % 2)
			line[0] = '<';
		if (iter % 4 == 3) {
			/* Address-shaped input, so that many parse. */
			static const char *tok[] = {
				"a@b.example", "a@b.example", "\"q@x\"@b.example", "a", "b.example", "@", "@", ".", "\"", "\\", " ", "x-y", "[192.0.2.1]",
				"[IPv6:::1]", "@r.example:", ",", "\r", "\n", "\xc3\xbc", "\xff", "%", ";",
				">", " SIZE=1", " SMTPUTF8", " BODY=8BITMIME", " AUTH=<>", "postmaster",
			};
			size_t nt = sizeof(tok) / sizeof(tok[0]);
			n = 1;
			line[0] = '<';
			seed = seed * 1103515245u + 12345u;
			size_t ntok = 1 + (seed >> 16) % 5;
			for (k = 0; k < ntok; k++) {
				seed = seed * 1103515245u + 12345u;
				const char *t = tok[(seed >> 16) % nt];
				memcpy(line + n, t, strlen(t));
				n += strlen(t);
			}
			seed = seed * 1103515245u + 12345u;
			if ((seed >> 16) % 2)
				line[n++] = '>';
		}
		/* An exact-size heap copy, so that ASan sees any read past
		 * the length (nothing may rely on a terminating NUL). */
		char *h = malloc(n ? n : 1);
		memcpy(h, line, n);

		if (smtp_mail_parse(h, n, &m) == SMTP_PARSE_OK) {
			n_ok++;
			ck_assert(no_ctl(m.addr, m.addr_len));
			ck_assert_uint_eq(strlen(m.addr), m.addr_len);
			ck_assert(m.null_sender == (m.addr_len == 0));
			if (!m.null_sender)
				ck_assert(smtp_addr_split(m.addr, m.addr_len) > 0);
		}
		if (smtp_rcpt_parse(h, n, true, &r) == SMTP_PARSE_OK) {
			ck_assert(no_ctl(r.addr, r.addr_len));
			ck_assert_uint_eq(strlen(r.addr), r.addr_len);
			ck_assert(r.postmaster || smtp_addr_split(r.addr, r.addr_len) > 0);
		}
		if (smtp_cmd_parse(h, n, &c) == 0) {
			ck_assert(no_ctl(c.arg, c.arg_len) || memchr(c.arg, '\t', c.arg_len));
			ck_assert(c.arg >= h && c.arg + c.arg_len <= h + n);
		}
		(void)smtp_domain_valid(h, n, true);
		(void)smtp_addr_split(h, n);
		free(h);
	}
	/* The generator does reach the accepting paths. */
	ck_assert_int_gt(n_ok, 500);
}
END_TEST

/* ---- smtp_domain_valid (EHLO / HELO) ---- */

START_TEST(domain_valid_cases)
{
	char buf[400];

#define DV(s, u) smtp_domain_valid(s, strlen(s), u)
	ck_assert(DV("localhost", false));
	ck_assert(DV("mail.example.com", false));
	ck_assert(DV("MAIL.Example.COM", false));
	ck_assert(DV("a", false));
	ck_assert(DV("1.2.3.4", false));
	ck_assert(DV("xn--bcher-kva.example", false));
	/* Decision: '_' is accepted in EHLO names (Windows hosts). */
	ck_assert(DV("SHOP_SRV01", false));
	ck_assert(DV("shop_srv.example.com", false));
	ck_assert(DV("[192.0.2.1]", false));
	ck_assert(DV("[IPv6:2001:db8::1]", false));
	ck_assert(DV("[IPv6:::1]", false));

	ck_assert(!DV("", false));
	ck_assert(!DV("-a", false));
	ck_assert(!DV("a-", false));
	ck_assert(!DV("a..b", false));
	ck_assert(!DV(".a", false));
	ck_assert(!DV("a.", false));
	ck_assert(!DV("a b", false));
	ck_assert(!DV("a@b", false));
	ck_assert(!DV("[1.2.3.256]", false));
	ck_assert(!DV("[1.2.3.4", false));
	ck_assert(!DV("1.2.3.4]", false));
	ck_assert(!DV("[IPv6:zz::1]", false));
	ck_assert(!DV("[]", false));
	ck_assert(!smtp_domain_valid("a\0b", 3, false));
	ck_assert(!smtp_domain_valid("a\r\nb", 4, false));
	ck_assert(!smtp_domain_valid("[1.2.3.4\0]", 10, false));

	ck_assert(!DV("b\xc3\xbc" "cher.example", false));
	ck_assert(DV("b\xc3\xbc" "cher.example", true));
	ck_assert(!DV("\xff.example", true));
	ck_assert(!DV("\xc3.example", true));

	snprintf(buf, sizeof(buf), "%s.example", rep('a', 63));
	ck_assert(DV(buf, false));
	snprintf(buf, sizeof(buf), "%s.example", rep('a', 64));
	ck_assert(!DV(buf, false));
	/* 255 octets in total fit, 256 do not. */
	snprintf(buf, sizeof(buf), "%s.%s.%s.%s", rep('a', 63), rep('b', 63), rep('c', 63), rep('d', 63));
	ck_assert_uint_eq(strlen(buf), 255);
	ck_assert(DV(buf, false));
	snprintf(buf, sizeof(buf), "%s.%s.%s.%s.e", rep('a', 63), rep('b', 63), rep('c', 63), rep('d', 61));
	ck_assert_uint_eq(strlen(buf), 255);
	ck_assert(DV(buf, false));
	snprintf(buf, sizeof(buf), "%s.%s.%s.%s.e", rep('a', 63), rep('b', 63), rep('c', 63), rep('d', 62));
	ck_assert_uint_eq(strlen(buf), 256);
	ck_assert(!DV(buf, false));
#undef DV
}
END_TEST

/* SPEC §5: an address literal is at most 255 octets too, whatever its
 * form (issue 11: "EHLO [x:" + 2,000 "A" + "]" overflowed the session's
 * 256-byte EHLO name). */
START_TEST(domain_valid_literal_length)
{
	static char buf[4096];

	memcpy(buf, "[x:", 3);
	memset(buf + 3, 'A', 2000);
	memcpy(buf + 2003, "]", 2);
	ck_assert(!smtp_domain_valid(buf, strlen(buf), false));
	snprintf(buf, sizeof(buf), "[x:%s]", rep('A', 251));
	ck_assert_uint_eq(strlen(buf), 255);
	ck_assert(smtp_domain_valid(buf, strlen(buf), false));
	snprintf(buf, sizeof(buf), "[x:%s]", rep('A', 252));
	ck_assert_uint_eq(strlen(buf), 256);
	ck_assert(!smtp_domain_valid(buf, strlen(buf), false));
	/* The same literal in a path is refused, never copied. */
	struct smtp_rcpt_args r;
	memcpy(buf, "<a@[x:", 6);
	memset(buf + 6, 'A', 2000);
	memcpy(buf + 2006, "]>", 3);
	ck_assert_int_ne(smtp_rcpt_parse(buf, strlen(buf), false, &r), SMTP_PARSE_OK);
}
END_TEST

/* ---- smtp_addr_split ---- */

START_TEST(addr_split_cases)
{
#define AS(s) smtp_addr_split(s, strlen(s))
	ck_assert_int_eq(AS("a@b"), 1);
	ck_assert_int_eq(AS("\"a@b\"@c"), 5);
	ck_assert_int_eq(AS("\"a\\\"@\"@c"), 6);
	ck_assert_int_eq(AS("a%b@c"), 3);
	ck_assert_int_eq(AS("abc"), -1);
	ck_assert_int_eq(AS(""), -1);
	ck_assert_int_eq(AS("\"@\""), -1);
	ck_assert_int_eq(AS("postmaster"), -1);
	ck_assert_int_eq(AS("a@b@c"), 3);
	/* Length bounds the scan. */
	ck_assert_int_eq(smtp_addr_split("a@b@c", 3), 1);
#undef AS
}
END_TEST

/* ---- base64 and AUTH PLAIN ---- */

static long b64(const char *s, unsigned char *out, size_t cap)
{
	return smtp_base64_decode(s, strlen(s), out, cap);
}

START_TEST(base64_cases)
{
	unsigned char out[64];

	ck_assert_int_eq(b64("", out, sizeof(out)), 0);
	ck_assert_int_eq(b64("Zg==", out, sizeof(out)), 1);
	ck_assert(memcmp(out, "f", 1) == 0);
	ck_assert_int_eq(b64("Zg", out, sizeof(out)), 1);
	ck_assert_int_eq(b64("Zm8=", out, sizeof(out)), 2);
	ck_assert(memcmp(out, "fo", 2) == 0);
	ck_assert_int_eq(b64("Zm8", out, sizeof(out)), 2);
	ck_assert_int_eq(b64("Zm9v", out, sizeof(out)), 3);
	ck_assert(memcmp(out, "foo", 3) == 0);
	ck_assert_int_eq(b64("Zm9vYmFy", out, sizeof(out)), 6);
	ck_assert(memcmp(out, "foobar", 6) == 0);
	ck_assert_int_eq(b64("+/+/", out, sizeof(out)), 3);
	ck_assert(memcmp(out, "\xfb\xff\xbf", 3) == 0);
	ck_assert_int_eq(b64("AA==", out, sizeof(out)), 1);
	ck_assert_int_eq(out[0], 0);

	ck_assert_int_eq(b64("Z", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zm9vY", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zg=", out, sizeof(out)), -1);      /* half padding */
	ck_assert_int_eq(b64("Zm9v=", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zm9v===", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Z===", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("====", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("=", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zg==Zg==", out, sizeof(out)), -1);  /* padding inside */
	ck_assert_int_eq(b64("Z=g=", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zm9v\n", out, sizeof(out)), -1);
	ck_assert_int_eq(b64(" Zm9v", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zm 9v", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zm9-", out, sizeof(out)), -1);     /* URL-safe alphabet */
	ck_assert_int_eq(b64("Zm9_", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zm9\xff", out, sizeof(out)), -1);
	ck_assert_int_eq(smtp_base64_decode("Zm\0v", 4, out, sizeof(out)), -1);
	/* Non-zero bits after the last byte: not a canonical encoding. */
	ck_assert_int_eq(b64("Zh==", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zh", out, sizeof(out)), -1);
	ck_assert_int_eq(b64("Zm9=", out, sizeof(out)), -1);

	/* cap is respected exactly. */
	ck_assert_int_eq(b64("Zm9v", out, 3), 3);
	ck_assert_int_eq(b64("Zm9v", out, 2), -1);
	ck_assert_int_eq(b64("Zg==", out, 1), 1);
	ck_assert_int_eq(b64("Zg==", out, 0), -1);
}
END_TEST

START_TEST(base64_matches_openssl)
{
	unsigned char in[100], out[100];
	char enc[200];
	unsigned seed = 7;

	for (int n = 0; n < 100; n++) {
		for (int k = 0; k < n; k++) {
			seed = seed * 1103515245u + 12345u;
			in[k] = (unsigned char)(seed >> 16);
		}
		int elen = EVP_EncodeBlock((unsigned char *)enc, in, n);
		ck_assert_int_eq(smtp_base64_decode(enc, (size_t)elen, out, sizeof(out)), n);
		ck_assert(memcmp(in, out, (size_t)n) == 0);
		/* Without the padding. */
		while (elen > 0 && enc[elen - 1] == '=')
			elen--;
		ck_assert_int_eq(smtp_base64_decode(enc, (size_t)elen, out, sizeof(out)), n);
		ck_assert(memcmp(in, out, (size_t)n) == 0);
	}
}
END_TEST

static int plain(const void *raw, size_t rawlen, char *z, char *u, char *p, size_t cap)
{
	char enc[400];
	int elen = EVP_EncodeBlock((unsigned char *)enc, raw, (int)rawlen);

	return smtp_auth_plain_decode(enc, (size_t)elen, z, u, p, cap);
}

#define PLAIN(lit, z, u, p, cap) plain(lit, sizeof(lit) - 1, z, u, p, cap)

START_TEST(auth_plain_cases)
{
	char z[32], u[32], p[32];

	ck_assert_int_eq(PLAIN("\0user\0pass", z, u, p, 32), 0);
	ck_assert_str_eq(z, "");
	ck_assert_str_eq(u, "user");
	ck_assert_str_eq(p, "pass");
	ck_assert_int_eq(PLAIN("user\0user\0p w\x01\xc3\xbc", z, u, p, 32), 0);
	ck_assert_str_eq(z, "user");
	ck_assert_str_eq(u, "user");
	ck_assert_str_eq(p, "p w\x01\xc3\xbc");
	ck_assert_int_eq(PLAIN("\0\xc3\xbcser@b.example\0x", z, u, p, 32), 0);
	ck_assert_str_eq(u, "\xc3\xbcser@b.example");
	/* The literal from RFC 4616 §4. */
	ck_assert_int_eq(smtp_auth_plain_decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 28, z, u, p, 32), 0);
	ck_assert_str_eq(u, "tim");
	ck_assert_str_eq(p, "tanstaaftanstaaf");

	ck_assert_int_eq(PLAIN("userpass", z, u, p, 32), -1);       /* no NUL */
	ck_assert_int_eq(PLAIN("\0userpass", z, u, p, 32), -1);     /* one NUL */
	ck_assert_int_eq(PLAIN("\0user\0pa\0ss", z, u, p, 32), -1); /* three */
	ck_assert_int_eq(PLAIN("\0\0pass", z, u, p, 32), -1);       /* empty user */
	ck_assert_int_eq(PLAIN("\0user\0", z, u, p, 32), -1);       /* empty password */
	ck_assert_int_eq(PLAIN("", z, u, p, 32), -1);
	ck_assert_int_eq(PLAIN("\0us\r\ner\0pass", z, u, p, 32), -1);
	ck_assert_int_eq(PLAIN("a\nb\0user\0pass", z, u, p, 32), -1);
	ck_assert_int_eq(smtp_auth_plain_decode("AHVzZXIAcGFzcw=", 15, z, u, p, 32), -1);
	ck_assert_int_eq(smtp_auth_plain_decode("AHVzZXIAcGFzcw==\r\n", 18, z, u, p, 32), -1);
	ck_assert_int_eq(smtp_auth_plain_decode("*", 1, z, u, p, 32), -1);

	/* Each part must fit in cap - 1 bytes. */
	ck_assert_int_eq(PLAIN("\0user567\0pass567", z, u, p, 8), 0);
	ck_assert_str_eq(u, "user567");
	ck_assert_str_eq(p, "pass567");
	ck_assert_int_eq(PLAIN("\0user5678\0pass", z, u, p, 8), -1);
	ck_assert_int_eq(PLAIN("\0user\0pass5678", z, u, p, 8), -1);
	ck_assert_int_eq(PLAIN("authz678\0user\0pass", z, u, p, 8), -1);
	ck_assert_int_eq(PLAIN("\0u\0p", z, u, p, 0), -1);

	/* A failure leaves no part of the secret behind. */
	memset(p, 'x', sizeof(p));
	ck_assert_int_eq(PLAIN("\0user\0secret\0", z, u, p, 32), -1);
	for (size_t k = 0; k < sizeof(p); k++)
		ck_assert_int_eq(p[k], 0);
	ck_assert_str_eq(u, "");
	ck_assert_str_eq(z, "");
}
END_TEST

static Suite *smtp_cmd_suite(void)
{
	Suite *s = suite_create("smtp_cmd");
	TCase *tc;

	tc = tcase_create("cmd");
	tcase_add_test(tc, cmd_rejects_control_chars);
	tcase_add_loop_test(tc, cmd_every_verb_any_case, 0, (int)(sizeof(verb_table) / sizeof(verb_table[0])));
	tcase_add_test(tc, cmd_mail_rcpt_keywords);
	tcase_add_test(tc, cmd_unknown_and_empty);
	suite_add_tcase(s, tc);

	tc = tcase_create("security");
	tcase_add_test(tc, mail_no_crlf_in_output);
	tcase_add_test(tc, mail_domain_after_last_unquoted_at);
	tcase_add_test(tc, mail_opensmtpd_2020);
	tcase_add_test(tc, garbage_random);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("mail");
	tcase_add_test(tc, mail_basic_and_null);
	tcase_add_test(tc, mail_brackets_and_garbage);
	tcase_add_test(tc, mail_dot_string);
	tcase_add_test(tc, mail_quoted);
	tcase_add_test(tc, mail_domains);
	tcase_add_test(tc, mail_address_literals);
	tcase_add_test(tc, mail_utf8);
	tcase_add_test(tc, mail_length_limits);
	tcase_add_test(tc, mail_source_routes);
	tcase_add_test(tc, mail_param_size);
	tcase_add_test(tc, mail_param_body);
	tcase_add_test(tc, mail_param_smtputf8_auth);
	tcase_add_test(tc, mail_param_unknown);
	suite_add_tcase(s, tc);

	tc = tcase_create("rcpt");
	tcase_add_test(tc, rcpt_cases);
	suite_add_tcase(s, tc);

	tc = tcase_create("misc");
	tcase_add_test(tc, domain_valid_cases);
	tcase_add_test(tc, domain_valid_literal_length);
	tcase_add_test(tc, addr_split_cases);
	tcase_add_test(tc, base64_cases);
	tcase_add_test(tc, base64_matches_openssl);
	tcase_add_test(tc, auth_plain_cases);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(smtp_cmd_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
