/*
 * fuzz_smtp_cmd - proto/smtp_cmd.c on arbitrary command lines.
 *
 * The input is one command line without its CRLF, as the session hands
 * it to smtp_cmd_parse(). Whatever the verb, the argument grammars are
 * also run on the raw input, so that the fuzzer need not discover
 * "MAIL FROM:" before it can reach the path parser. Checked:
 *
 *  - smtp_cmd_parse(): the argument lies inside the line, without the
 *    spaces around it; a line with a control character is refused.
 *  - smtp_mail_parse() / smtp_rcpt_parse(): on success the address is
 *    NUL-terminated, as long as addr_len says, at most SMTP_PATH_MAX,
 *    free of control characters and of '<' '>'; a non-null address splits
 *    at an '@' into a local part of at most SMTP_LOCAL_MAX octets and a
 *    domain that smtp_domain_valid() accepts; non-ASCII only when
 *    has_utf8 (and then only with SMTPUTF8 / utf8); parsing "<addr>"
 *    again gives the same address (the parser's output is its own
 *    canonical form: a source route is gone, nothing else changed).
 *    On failure the output structure is all zero.
 *  - smtp_domain_valid(): nothing over SMTP_DOMAIN_MAX octets passes.
 *  - smtp_base64_decode(): decoded length within bounds; the decoder is
 *    strict, so encoding the result again gives the input back.
 *  - smtp_auth_plain_decode(): on success user and password are
 *    non-empty and fit; authz and user have no control character; on
 *    failure no byte of the password buffer is left set.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz/fuzz_check.h"

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *u = p;
	for (size_t i = 0; i < n; i++)
		if (u[i])
			return false;
	return true;
}

static bool has_ctl(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

static bool has_high(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* Common checks of an address the path parser produced. */
static void check_addr(const char *addr, size_t len, bool has_utf8)
{
	CHECK(len <= SMTP_PATH_MAX);
	CHECK(addr[len] == '\0');
	CHECK(strlen(addr) == len);
	CHECK(!has_ctl(addr, len));
	CHECK(has_utf8 == has_high(addr, len));
	/* '<' and '>' may appear inside a quoted local part only. */
	long at = smtp_addr_split(addr, len);
	CHECK(at > 0 && (size_t)at + 1 < len);
	CHECK((size_t)at <= SMTP_LOCAL_MAX);
	CHECK(smtp_domain_valid(addr + at + 1, len - (size_t)at - 1, true));
	for (size_t i = (size_t)at + 1; i < len; i++)
		CHECK(addr[i] != '<' && addr[i] != '>' && addr[i] != '@' && addr[i] != ' ');
}

static void check_mail(const char *arg, size_t len)
{
	struct smtp_mail_args m, m2;
	enum smtp_parse_status st = smtp_mail_parse(arg, len, &m);

	if (st != SMTP_PARSE_OK) {
		CHECK(all_zero(&m, sizeof(m)));
		return;
	}
	CHECK(m.null_sender == (m.addr_len == 0));
	CHECK(!m.has_utf8 || m.smtputf8);
	CHECK(m.body == SMTP_BODY_NONE || m.body == SMTP_BODY_7BIT || m.body == SMTP_BODY_8BITMIME);
	CHECK(m.size_given || m.size == 0);
	if (m.null_sender) {
		CHECK(m.addr[0] == '\0' && !m.has_utf8);
		return;
	}
	check_addr(m.addr, m.addr_len, m.has_utf8);

	/* Idempotence: the canonical form parses to itself. */
	char again[SMTP_PATH_MAX + 16];
	int n = snprintf(again, sizeof(again), "<%s>%s", m.addr, m.has_utf8 ? " SMTPUTF8" : "");
	CHECK(n > 0 && (size_t)n < sizeof(again));
	CHECK(smtp_mail_parse(again, (size_t)n, &m2) == SMTP_PARSE_OK);
	CHECK(m2.addr_len == m.addr_len && memcmp(m2.addr, m.addr, m.addr_len) == 0);
	CHECK(m2.has_utf8 == m.has_utf8);
}

static void check_rcpt(const char *arg, size_t len, bool utf8)
{
	struct smtp_rcpt_args r, r2;
	enum smtp_parse_status st = smtp_rcpt_parse(arg, len, utf8, &r);

	if (st != SMTP_PARSE_OK) {
		CHECK(all_zero(&r, sizeof(r)));
		return;
	}
	CHECK(!r.has_utf8 || utf8);
	if (r.postmaster) {
		CHECK(r.addr_len == 10 && strcmp(r.addr, "postmaster") == 0);
		return;
	}
	check_addr(r.addr, r.addr_len, r.has_utf8);

	char again[SMTP_PATH_MAX + 8];
	int n = snprintf(again, sizeof(again), "<%s>", r.addr);
	CHECK(n > 0 && (size_t)n < sizeof(again));
	CHECK(smtp_rcpt_parse(again, (size_t)n, true, &r2) == SMTP_PARSE_OK);
	CHECK(r2.addr_len == r.addr_len && memcmp(r2.addr, r.addr, r.addr_len) == 0);
	CHECK(r2.has_utf8 == r.has_utf8);
}

static size_t b64_encode(const unsigned char *in, size_t n, char *out, bool pad)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0, i;

	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
		out[o++] = a[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
		if (pad)
			out[o++] = '=';
	}
	return o;
}

static void check_base64(const char *s, size_t len)
{
	size_t cap = len / 4 * 3 + 3;
	unsigned char *out = malloc(cap + 1);
	char *re = malloc(len + 8);

	CHECK(out && re);
	long n = smtp_base64_decode(s, len, out, cap);
	if (n >= 0) {
		CHECK((size_t)n <= cap && (size_t)n <= len * 3 / 4);
		bool pad = len > 0 && s[len - 1] == '=';
		size_t m = b64_encode(out, (size_t)n, re, pad);
		CHECK(m == len && memcmp(re, s, len) == 0);
		/* A buffer one byte too small must be refused, not overrun. */
		if (n > 0) {
			unsigned char *tight = malloc((size_t)n - 1 + 1);
			CHECK(tight);
			CHECK(smtp_base64_decode(s, len, tight, (size_t)n - 1) < 0);
			free(tight);
		}
	}
	free(out);
	free(re);
}

static void check_auth_plain(const char *s, size_t len, size_t cap)
{
	char *authz = malloc(cap ? cap : 1);
	char *user = malloc(cap ? cap : 1);
	char *pass = malloc(cap ? cap : 1);

	CHECK(authz && user && pass);
	memset(authz, 'A', cap ? cap : 1);
	memset(user, 'U', cap ? cap : 1);
	memset(pass, 'P', cap ? cap : 1);
	if (smtp_auth_plain_decode(s, len, authz, user, pass, cap) == 0) {
		CHECK(cap > 0);
		size_t za = strnlen(authz, cap), zu = strnlen(user, cap), zp = strnlen(pass, cap);
		CHECK(za < cap && zu < cap && zp < cap);
		CHECK(zu > 0 && zp > 0);
		CHECK(!has_ctl(authz, za) && !has_ctl(user, zu));
	} else if (cap > 0) {
		CHECK(all_zero(pass, cap));
		CHECK(authz[0] == '\0' && user[0] == '\0');
	}
	free(authz);
	free(user);
	free(pass);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The session never hands over more than a command line. */
	if (size > 4096)
		return 0;
	/* Own copy, exactly as long as the input: ASan sees any overread. */
	char *line = malloc(size ? size : 1);
	if (!line)
		return 0;
	memcpy(line, data, size);

	struct smtp_cmd cmd;
	int rc = smtp_cmd_parse(line, size, &cmd);
	CHECK(cmd.arg >= line && cmd.arg + cmd.arg_len <= line + size);
	if (rc == 0) {
		for (size_t i = 0; i < size; i++) {
			unsigned char c = (unsigned char)line[i];
			CHECK((c >= 0x20 || c == '\t') && c != 0x7f);
		}
		if (cmd.arg_len) {
			CHECK(cmd.arg[0] != ' ' && cmd.arg[cmd.arg_len - 1] != ' ');
		}
		switch (cmd.verb) {
		case SMTP_MAIL:
			check_mail(cmd.arg, cmd.arg_len);
			break;
		case SMTP_RCPT:
			check_rcpt(cmd.arg, cmd.arg_len, size & 1);
			break;
		case SMTP_EHLO:
		case SMTP_HELO:
			/* SPEC §5: whatever the form, at most 255 octets
			 * (fuzz/regressions/smtp_cmd/ehlo_long_general_literal). */
			if (smtp_domain_valid(cmd.arg, cmd.arg_len, size & 1))
				CHECK(cmd.arg_len <= SMTP_DOMAIN_MAX);
			break;
		case SMTP_AUTH:
			if (cmd.arg_len > 6 && memcmp(cmd.arg, "PLAIN ", 6) == 0)
				check_auth_plain(cmd.arg + 6, cmd.arg_len - 6, 256);
			break;
		default:
			break;
		}
	}

	/* The argument grammars on the raw bytes. */
	check_mail(line, size);
	check_rcpt(line, size, false);
	check_rcpt(line, size, true);
	if (smtp_domain_valid(line, size, false))
		CHECK(size <= SMTP_DOMAIN_MAX);
	if (smtp_domain_valid(line, size, true))
		CHECK(size <= SMTP_DOMAIN_MAX);
	(void)smtp_addr_split(line, size);
	check_base64(line, size);
	/* A small, input-chosen capacity reaches the bounds of the parts. */
	check_auth_plain(line, size, size ? (size_t)(unsigned char)line[0] % 24 : 0);
	check_auth_plain(line, size, 256);

	free(line);
	return 0;
}
