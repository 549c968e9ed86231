/*
 * smtp_cmd - parse SMTP command lines and their arguments. See smtp_cmd.h.
 *
 * The parsers follow the ABNF of RFC 5321 §4.1.2 and §4.1.3 (extended by
 * RFC 6531 §3.3 for UTF-8) literally and reject everything else: the
 * mail-parsing CVEs of the field (Sendmail's and Exim's %-hack and
 * source-route confusions, OpenSMTPD CVE-2020-7247, Postfix
 * CVE-2023-51764's "be liberal") all came from accepting more than the
 * grammar. Every output is a copy of input bytes that passed the grammar,
 * so no output can ever hold a CR, an LF, a NUL or any other control
 * character.
 */
#include "proto/smtp_cmd.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* ---- character classes (RFC 5234 core rules, RFC 5321 §4.1.2) ---- */

static bool is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_letdig(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

/* strchr() would also find the terminating NUL: c == 0 is never in set. */
static bool in_set(unsigned char c, const char *set)
{
	return c != 0 && strchr(set, c) != NULL;
}

static bool is_hexup(unsigned char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'F');
}

/* atext, RFC 5322 §3.2.3, as used by RFC 5321's Atom. */
static bool is_atext(unsigned char c)
{
	return is_letdig(c) || in_set(c, "!#$%&'*+-/=?^_`{|}~");
}

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629 §4: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0.
 */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xBF;
	size_t need;

	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		need = 2;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		need = 3;
		if (p[0] == 0xE0)
			lo = 0xA0;
		else if (p[0] == 0xED)
			hi = 0x9F;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		need = 4;
		if (p[0] == 0xF0)
			lo = 0x90;
		else if (p[0] == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (n < need || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return need;
}

/* ---- command line ---- */

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
	{ "EHLO", SMTP_EHLO },
	{ "HELO", SMTP_HELO },
	{ "MAIL", SMTP_MAIL },
	{ "RCPT", SMTP_RCPT },
	{ "DATA", SMTP_DATA },
	{ "RSET", SMTP_RSET },
	{ "NOOP", SMTP_NOOP },
	{ "QUIT", SMTP_QUIT },
	{ "VRFY", SMTP_VRFY },
	{ "EXPN", SMTP_EXPN },
	{ "HELP", SMTP_HELP },
	{ "STARTTLS", SMTP_STARTTLS },
	{ "AUTH", SMTP_AUTH },
	{ "BDAT", SMTP_BDAT },
};

/*
 * On -1 cmd->verb still names the verb when it was recognised (MAIL
 * without " FROM:"), so that the session can answer 501 rather than 500.
 */
int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd)
{
	size_t i, vlen;

	cmd->verb = SMTP_UNKNOWN;
	cmd->arg = line + len;
	cmd->arg_len = 0;

	/*
	 * RFC 5321 §4.1.1: commands are printable text. A NUL would cut the
	 * line for any C string consumer; a CR or LF inside a line is the
	 * beginning of every injection. TAB is tolerated (it is harmless and
	 * the argument grammars reject it where it does not belong).
	 */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7F)
			return -1;
	}

	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i].name) == vlen && strncasecmp(line, verbs[i].name, vlen) == 0) {
			cmd->verb = verbs[i].verb;
			break;
		}
	}
	if (cmd->verb == SMTP_UNKNOWN)
		return 0;

	i = vlen;
	if (cmd->verb == SMTP_MAIL || cmd->verb == SMTP_RCPT) {
		/* RFC 5321 §4.1.1.2/§4.1.1.3: "MAIL FROM:" and "RCPT TO:" are one
		 * keyword each, with exactly one SP inside. */
		const char *kw = cmd->verb == SMTP_MAIL ? " FROM:" : " TO:";
		size_t kwlen = strlen(kw);
		if (len - i < kwlen || strncasecmp(line + i, kw, kwlen) != 0)
			return -1;
		i += kwlen;
	}
	/* Real clients send "MAIL FROM: <a@b>"; RFC 5321 has no space there,
	 * but accepting it is harmless. */
	while (i < len && line[i] == ' ')
		i++;
	while (len > i && line[len - 1] == ' ')
		len--;
	cmd->arg = line + i;
	cmd->arg_len = len - i;
	return 0;
}

/* ---- domains and address literals ---- */

/*
 * Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]
 * (RFC 5321 §4.1.2), or a U-label when non-ASCII (RFC 6531 §3.3; only
 * well-formed UTF-8 is checked here, IDNA rules are the resolver's
 * business). Labels at most 63 octets, the name at most 255 (RFC 1035
 * §2.3.4, RFC 5321 §4.5.3.1.2). underscore admits '_' for EHLO names.
 */
static bool domain_ok(const unsigned char *s, size_t n, bool underscore, bool *saw_utf8)
{
	size_t i = 0, start = 0;

	if (n == 0 || n > SMTP_DOMAIN_MAX)
		return false;
	for (;;) {
		if (i == n || s[i] == '.') {
			size_t ll = i - start;
			if (ll == 0 || ll > 63 || s[start] == '-' || s[i - 1] == '-')
				return false;
			if (i == n)
				return true;
			start = ++i;
			continue;
		}
		if (is_letdig(s[i]) || s[i] == '-' || (underscore && s[i] == '_')) {
			i++;
		} else if (s[i] >= 0x80) {
			size_t k = utf8_seq(s + i, n - i);
			if (k == 0)
				return false;
			*saw_utf8 = true;
			i += k;
		} else {
			return false;
		}
	}
}

/*
 * address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
 * General-address-literal ) "]" (RFC 5321 §4.1.3). The IP forms are
 * checked by inet_pton(), which is a little stricter than the ABNF: it
 * refuses leading zeros ([010.0.0.1]), which other software reads as
 * octal. The characters are checked before inet_pton() sees a copy, so a
 * NUL cannot end its string early.
 */
static bool addr_literal_ok(const unsigned char *s, size_t n)
{
	char tmp[64];
	const unsigned char *in;
	size_t m, i;

	/* SPEC §5: an address literal, like a domain, is at most 255 octets
	 * (RFC 5321 §4.5.3.1.2), whatever its form: callers copy it into
	 * fixed arrays of SMTP_DOMAIN_MAX + 1. */
	if (n < 3 || n > SMTP_DOMAIN_MAX || s[0] != '[' || s[n - 1] != ']')
		return false;
	in = s + 1;
	m = n - 2;

	if (m >= 5 && strncasecmp((const char *)in, "IPv6:", 5) == 0) {
		struct in6_addr a6;
		in += 5;
		m -= 5;
		if (m == 0 || m >= sizeof(tmp))
			return false;
		for (i = 0; i < m; i++)
			if (!is_digit(in[i]) && !in_set(in[i], "abcdefABCDEF:."))
				return false;
		memcpy(tmp, in, m);
		tmp[m] = '\0';
		return inet_pton(AF_INET6, tmp, &a6) == 1;
	}

	const unsigned char *colon = memchr(in, ':', m);
	if (colon) {
		/* General-address-literal = Standardized-tag ":" 1*dcontent,
		 * Standardized-tag = Ldh-str. IPv6 was handled above, so an
		 * invalid IPv6 literal can never pass as a general one. */
		size_t tl = (size_t)(colon - in);
		if (tl == 0 || !is_letdig(in[0]) || !is_letdig(in[tl - 1]))
			return false;
		for (i = 0; i < tl; i++)
			if (!is_letdig(in[i]) && in[i] != '-')
				return false;
		if (tl + 1 == m)
			return false;
		/* dcontent = %d33-90 / %d94-126, but without '@', '<' and
		 * '>': with an '@' in the domain, everything that takes the
		 * domain after the last '@' (route_ascii(), the runner, the
		 * suppression list) would read another one, and the outbound
		 * client refuses an address with an angle bracket, so such a
		 * mail could be accepted but never sent. No registered tag
		 * needs them (fuzz/regressions/smtp_cmd/). */
		for (i = tl + 1; i < m; i++)
			if (in[i] < 33 || in[i] > 126 || (in[i] >= 91 && in[i] <= 93) ||
			    in[i] == '@' || in[i] == '<' || in[i] == '>')
				return false;
		return true;
	}

	struct in_addr a4;
	if (m == 0 || m >= 16)
		return false;
	for (i = 0; i < m; i++)
		if (!is_digit(in[i]) && in[i] != '.')
			return false;
	memcpy(tmp, in, m);
	tmp[m] = '\0';
	return inet_pton(AF_INET, tmp, &a4) == 1;
}

/*
 * Decision: EHLO/HELO names accept '_' in labels. The name is only
 * recorded (Received:, the log), never used for routing, and Windows hosts
 * with NetBIOS-style names ("SHOP_SRV01") are common among the shop
 * servers hikyaku serves (SPEC §5: any syntactically valid EHLO name is
 * accepted; real mailers are met where they are). Paths never accept '_'
 * in domains.
 */
bool smtp_domain_valid(const char *s, size_t len, bool utf8)
{
	const unsigned char *u = (const unsigned char *)s;
	bool saw_utf8 = false;

	if (len > SMTP_DOMAIN_MAX)
		return false;
	if (len > 0 && u[0] == '[')
		return addr_literal_ok(u, len);
	if (!domain_ok(u, len, true, &saw_utf8))
		return false;
	return utf8 || !saw_utf8;
}

/* ---- paths ---- */

/*
 * Finds the '>' that closes the path starting with '<' at s[0], skipping
 * quoted strings (a quoted local part may contain '>'). Returns its
 * offset, or 0 when there is none.
 */
static size_t path_close(const char *s, size_t n)
{
	bool quoted = false;

	for (size_t i = 1; i < n; i++) {
		if (quoted) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				quoted = false;
		} else if (s[i] == '"') {
			quoted = true;
		} else if (s[i] == '>') {
			return i;
		}
	}
	return 0;
}

/*
 * Parses the inside of <...> (without the brackets) as
 * [ A-d-l ":" ] Mailbox (RFC 5321 §4.1.2) and writes "local@domain" to
 * out. The source route is parsed and dropped (RFC 5321 §4.1.1.3 and
 * Appendix C: "SHOULD ignore"): it never decides the domain. The grammar
 * itself places the domain after the one unquoted '@' that follows the
 * local part, so "a%b@c" and "\"a@b\"@c" go to c, and "a@b@c" is refused.
 * Non-ASCII is parsed as RFC 6531 allows and reported in *has_utf8; the
 * caller decides whether it is permitted.
 */
static bool bytes_high(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

static enum smtp_parse_status parse_path(const char *str, size_t n, char *out, size_t *out_len,
                                         bool *has_utf8)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, lstart, llen, k;

	*has_utf8 = false;

	/* A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain */
	if (n > 0 && s[0] == '@') {
		for (;;) {
			size_t d;
			i++;
			for (d = i; d < n && s[d] != ',' && s[d] != ':'; d++)
				;
			if (d == n || !domain_ok(s + i, d - i, false, has_utf8))
				return SMTP_PARSE_BAD_ADDRESS;
			i = d + 1;
			if (s[d] == ':')
				break;
			if (i == n || s[i] != '@')
				return SMTP_PARSE_BAD_ADDRESS;
		}
	}

	/* Local-part = Dot-string / Quoted-string */
	lstart = i;
	if (i < n && s[i] == '"') {
		for (i++;;) {
			if (i == n)
				return SMTP_PARSE_BAD_ADDRESS;
			if (s[i] == '"') {
				i++;
				break;
			}
			if (s[i] == '\\') {
				/* quoted-pairSMTP = %d92 %d32-126 */
				if (i + 1 == n || s[i + 1] < 32 || s[i + 1] > 126)
					return SMTP_PARSE_BAD_ADDRESS;
				i += 2;
			} else if (s[i] >= 32 && s[i] <= 126) {
				/* qtextSMTP = %d32-33 / %d35-91 / %d93-126; '"' and
				 * '\\' were handled above. */
				i++;
			} else if (s[i] >= 0x80 && (k = utf8_seq(s + i, n - i)) != 0) {
				*has_utf8 = true;
				i += k;
			} else {
				return SMTP_PARSE_BAD_ADDRESS;
			}
		}
	} else {
		/* Dot-string = Atom *("." Atom): no leading, trailing or double
		 * dot. */
		for (;;) {
			size_t astart = i;
			while (i < n) {
				if (is_atext(s[i])) {
					i++;
				} else if (s[i] >= 0x80 && (k = utf8_seq(s + i, n - i)) != 0) {
					*has_utf8 = true;
					i += k;
				} else {
					break;
				}
			}
			if (i == astart)
				return SMTP_PARSE_BAD_ADDRESS;
			if (i < n && s[i] == '.')
				i++;
			else
				break;
		}
	}
	llen = i - lstart;
	if (llen > SMTP_LOCAL_MAX)
		return SMTP_PARSE_TOO_LONG;

	if (i == n || s[i] != '@')
		return SMTP_PARSE_BAD_ADDRESS;
	i++;

	/* Domain / address-literal, up to the end of the path. */
	if (i < n && s[i] == '[') {
		if (!addr_literal_ok(s + i, n - i))
			return SMTP_PARSE_BAD_ADDRESS;
	} else if (!domain_ok(s + i, n - i, false, has_utf8)) {
		return SMTP_PARSE_BAD_ADDRESS;
	}

	/* The caller checked that the whole path fits SMTP_PATH_MAX. */
	memcpy(out, s + lstart, n - lstart);
	out[n - lstart] = '\0';
	*out_len = n - lstart;
	return SMTP_PARSE_OK;
}

/*
 * Splits arg into "<path>" and the parameter text after it. Leading and
 * trailing spaces are tolerated (smtp_cmd_parse() removes them anyway).
 * (*in, *in_len) is the inside of the brackets, (*params, *plen) what follows
 * the SP after '>' (plen 0 when there is none).
 */
static enum smtp_parse_status split_path(const char *arg, size_t len, const char **in, size_t *in_len,
                                         const char **params, size_t *plen)
{
	size_t close;

	while (len > 0 && arg[0] == ' ') {
		arg++;
		len--;
	}
	while (len > 0 && arg[len - 1] == ' ')
		len--;
	/* RFC 5321 §4.1.2: Reverse-path and Forward-path are always in angle
	 * brackets; a bare address is a syntax error, not something to guess
	 * at. */
	if (len == 0 || arg[0] != '<' || (close = path_close(arg, len)) == 0)
		return SMTP_PARSE_SYNTAX;
	if (close + 1 > SMTP_PATH_MAX)
		return SMTP_PARSE_TOO_LONG;
	*in = arg + 1;
	*in_len = close - 1;
	if (close + 1 == len) {
		*params = arg + len;
		*plen = 0;
		return SMTP_PARSE_OK;
	}
	if (arg[close + 1] != ' ')
		return SMTP_PARSE_SYNTAX;
	*params = arg + close + 2;
	*plen = len - close - 2;
	return SMTP_PARSE_OK;
}

/* ---- ESMTP parameters (RFC 5321 §4.1.2 Mail-parameters) ---- */

struct param {
	const char *kw;
	size_t kwlen;
	const char *val;   /* NULL when there is no "=" */
	size_t vlen;
};

/*
 * Takes the next SP-separated esmtp-param from *s. Returns 1 and fills p,
 * 0 at the end, or -1 when the keyword is not an esmtp-keyword
 * (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
 */
static int param_next(const char **s, size_t *n, struct param *p)
{
	size_t i, end;

	while (*n > 0 && **s == ' ') {
		(*s)++;
		(*n)--;
	}
	if (*n == 0)
		return 0;
	for (end = 0; end < *n && (*s)[end] != ' '; end++)
		;
	for (i = 0; i < end && (*s)[i] != '='; i++)
		;
	p->kw = *s;
	p->kwlen = i;
	p->val = i < end ? *s + i + 1 : NULL;
	p->vlen = i < end ? end - i - 1 : 0;
	*s += end;
	*n -= end;

	if (p->kwlen == 0 || !is_letdig((unsigned char)p->kw[0]))
		return -1;
	for (i = 1; i < p->kwlen; i++)
		if (!is_letdig((unsigned char)p->kw[i]) && p->kw[i] != '-')
			return -1;
	return 1;
}

static bool kw_is(const struct param *p, const char *name)
{
	return p->kwlen == strlen(name) && strncasecmp(p->kw, name, p->kwlen) == 0;
}

static bool val_is(const struct param *p, const char *v)
{
	return p->vlen == strlen(v) && strncasecmp(p->val, v, p->vlen) == 0;
}

/* SIZE = 1*20DIGIT (RFC 1870 §6), and it must fit in 64 bits. */
static bool size_value(const struct param *p, uint64_t *v)
{
	*v = 0;
	if (!p->val || p->vlen == 0 || p->vlen > 20)
		return false;
	for (size_t i = 0; i < p->vlen; i++) {
		unsigned d = (unsigned char)p->val[i] - '0';
		if (d > 9 || *v > (UINT64_MAX - d) / 10)
			return false;
		*v = *v * 10 + d;
	}
	return true;
}

/*
 * AUTH=xtext (RFC 4954 §5, xtext per RFC 3461 §4): %d33-42 / %d44-60 /
 * %d62-126, or "+" and two upper-case hex digits. hikyaku ignores the
 * value, so it also lets well-formed UTF-8 through (RFC 6531 §3.3 widens
 * esmtp-value), whatever the order of AUTH= and SMTPUTF8.
 */
static bool xtext_value(const struct param *p)
{
	const unsigned char *v = (const unsigned char *)p->val;
	size_t i = 0, k;

	if (!v || p->vlen == 0)
		return false;
	while (i < p->vlen) {
		if (v[i] == '+') {
			if (p->vlen - i < 3 || !is_hexup(v[i + 1]) || !is_hexup(v[i + 2]))
				return false;
			i += 3;
		} else if (v[i] >= 33 && v[i] <= 126 && v[i] != '=') {
			i++;
		} else if (v[i] >= 0x80 && (k = utf8_seq(v + i, p->vlen - i)) != 0) {
			i += k;
		} else {
			return false;
		}
	}
	return true;
}

static enum smtp_parse_status mail_params(const char *s, size_t n, struct smtp_mail_args *out)
{
	bool seen_auth = false;
	struct param p;
	int rc;

	while ((rc = param_next(&s, &n, &p)) > 0) {
		if (kw_is(&p, "SIZE")) {
			if (out->size_given || !size_value(&p, &out->size))
				return SMTP_PARSE_BAD_PARAM;
			out->size_given = true;
		} else if (kw_is(&p, "BODY")) {
			if (out->body != SMTP_BODY_NONE || !p.val)
				return SMTP_PARSE_BAD_PARAM;
			if (val_is(&p, "7BIT"))
				out->body = SMTP_BODY_7BIT;
			else if (val_is(&p, "8BITMIME"))
				out->body = SMTP_BODY_8BITMIME;
			else
				return SMTP_PARSE_BAD_PARAM;
		} else if (kw_is(&p, "SMTPUTF8")) {
			/* RFC 6531 §3.4: the parameter has no value. */
			if (out->smtputf8 || p.val)
				return SMTP_PARSE_BAD_PARAM;
			out->smtputf8 = true;
		} else if (kw_is(&p, "AUTH")) {
			if (seen_auth || !xtext_value(&p))
				return SMTP_PARSE_BAD_PARAM;
			seen_auth = true;
		} else {
			return SMTP_PARSE_UNKNOWN_PARAM;
		}
	}
	return rc < 0 ? SMTP_PARSE_SYNTAX : SMTP_PARSE_OK;
}

enum smtp_parse_status smtp_mail_parse(const char *arg, size_t len, struct smtp_mail_args *out)
{
	const char *in, *params;
	size_t in_len, plen;
	enum smtp_parse_status st;
	bool has_utf8 = false;

	memset(out, 0, sizeof(*out));
	st = split_path(arg, len, &in, &in_len, &params, &plen);
	if (st != SMTP_PARSE_OK)
		return st;
	/* Path before parameters, so that a bad address is reported as such;
	 * whether its UTF-8 is allowed is known only after the parameters. */
	if (in_len == 0)
		out->null_sender = true;
	else
		st = parse_path(in, in_len, out->addr, &out->addr_len, &has_utf8);
	if (st == SMTP_PARSE_OK)
		st = mail_params(params, plen, out);
	if (st == SMTP_PARSE_OK && has_utf8 && !out->smtputf8)
		st = SMTP_PARSE_NEED_SMTPUTF8;
	if (st != SMTP_PARSE_OK) {
		memset(out, 0, sizeof(*out));
		return st;
	}
	/* The address's own: a UTF-8 source route (needs SMTPUTF8 all the
	 * same, above) is dropped and says nothing about the address. */
	out->has_utf8 = bytes_high(out->addr, out->addr_len);
	return SMTP_PARSE_OK;
}

enum smtp_parse_status smtp_rcpt_parse(const char *arg, size_t len, bool utf8, struct smtp_rcpt_args *out)
{
	const char *in, *params;
	size_t in_len, plen;
	enum smtp_parse_status st;
	bool has_utf8 = false;
	struct param p;
	int rc;

	memset(out, 0, sizeof(*out));
	st = split_path(arg, len, &in, &in_len, &params, &plen);
	if (st != SMTP_PARSE_OK)
		return st;
	if (in_len == 10 && strncasecmp(in, "postmaster", 10) == 0) {
		/* RFC 5321 §4.1.1.3: "<Postmaster>" without a domain must be
		 * accepted; the keyword is case-insensitive. */
		out->postmaster = true;
		memcpy(out->addr, "postmaster", 11);
		out->addr_len = 10;
	} else if (in_len == 0) {
		st = SMTP_PARSE_BAD_ADDRESS;   /* "<>" is a reverse-path only */
	} else {
		st = parse_path(in, in_len, out->addr, &out->addr_len, &has_utf8);
	}
	/* hikyaku offers no RCPT parameter (no DSN, RFC 3461). */
	if (st == SMTP_PARSE_OK && (rc = param_next(&params, &plen, &p)) != 0)
		st = rc < 0 ? SMTP_PARSE_SYNTAX : SMTP_PARSE_UNKNOWN_PARAM;
	if (st == SMTP_PARSE_OK && has_utf8 && !utf8)
		st = SMTP_PARSE_NEED_SMTPUTF8;
	if (st != SMTP_PARSE_OK) {
		memset(out, 0, sizeof(*out));
		return st;
	}
	/* The address's own: a UTF-8 source route (needs SMTPUTF8 all the
	 * same, above) is dropped and says nothing about the address. */
	out->has_utf8 = bytes_high(out->addr, out->addr_len);
	return SMTP_PARSE_OK;
}

long smtp_addr_split(const char *addr, size_t len)
{
	bool quoted = false;
	long at = -1;

	for (size_t i = 0; i < len; i++) {
		if (quoted) {
			if (addr[i] == '\\')
				i++;
			else if (addr[i] == '"')
				quoted = false;
		} else if (addr[i] == '"') {
			quoted = true;
		} else if (addr[i] == '@') {
			at = (long)i;
		}
	}
	return at;
}

/* ---- base64 (RFC 4648 §4) and AUTH PLAIN (RFC 4616) ---- */

/*
 * Hand-written rather than OpenSSL's EVP_DecodeBlock(): that one strips
 * surrounding whitespace, counts padding as output bytes and accepts
 * unpadded input only in multiples of four, so it would need as much code
 * around it as this. Strict: only the standard alphabet, "=" padding
 * either complete or absent, no whitespace, and the unused bits of the
 * last group must be zero (RFC 4648 §3.5) so that each text has exactly
 * one encoding.
 */
static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

typedef int (*b64_sink)(void *ctx, const unsigned char *b, size_t n);

static long b64_run(const char *in, size_t len, b64_sink sink, void *ctx)
{
	size_t pad = 0, m, i;
	long total = 0;

	while (pad < len && in[len - 1 - pad] == '=')
		pad++;
	if (pad > 2 || (pad > 0 && len % 4 != 0))
		return -1;
	m = len - pad;
	if (m % 4 == 1)
		return -1;

	for (i = 0; i < m; i += 4) {
		size_t g = m - i < 4 ? m - i : 4;
		uint32_t acc = 0;
		unsigned char b[3];

		for (size_t j = 0; j < 4; j++) {
			int v = j < g ? b64_val((unsigned char)in[i + j]) : 0;
			if (v < 0)
				return -1;
			acc = acc << 6 | (uint32_t)v;
		}
		b[0] = (unsigned char)(acc >> 16);
		b[1] = (unsigned char)(acc >> 8);
		b[2] = (unsigned char)acc;
		/* A short last group: 2 chars -> 1 byte, 3 -> 2; the bits
		 * beyond them must be zero. */
		if ((g == 2 && (acc & 0xFFFF)) || (g == 3 && (acc & 0xFF)))
			return -1;
		if (sink(ctx, b, g - 1) < 0)
			return -1;
		total += (long)(g - 1);
	}
	return total;
}

struct flat_sink {
	unsigned char *out;
	size_t len, cap;
};

static int flat_put(void *ctx, const unsigned char *b, size_t n)
{
	struct flat_sink *f = ctx;

	if (f->cap - f->len < n)
		return -1;
	memcpy(f->out + f->len, b, n);
	f->len += n;
	return 0;
}

long smtp_base64_decode(const char *b64, size_t len, unsigned char *out, size_t cap)
{
	struct flat_sink f = { out, 0, cap };

	return b64_run(b64, len, flat_put, &f);
}

struct plain_sink {
	char *part[3];   /* authzid, authcid, passwd */
	int idx;
	size_t pos, cap;
};

static int plain_put(void *ctx, const unsigned char *b, size_t n)
{
	struct plain_sink *ps = ctx;

	for (size_t i = 0; i < n; i++) {
		if (b[i] == 0) {
			/* RFC 4616 §2: exactly two NULs separate the three
			 * parts. */
			if (ps->idx == 2)
				return -1;
			ps->part[ps->idx][ps->pos] = '\0';
			ps->idx++;
			ps->pos = 0;
			continue;
		}
		/* The identities end up in the log and in Received:; a control
		 * character there is never legitimate. The password may hold
		 * any byte but NUL. */
		if (ps->idx < 2 && (b[i] < 0x20 || b[i] == 0x7F))
			return -1;
		if (ps->pos + 1 >= ps->cap)
			return -1;
		ps->part[ps->idx][ps->pos++] = (char)b[i];
	}
	return 0;
}

int smtp_auth_plain_decode(const char *b64, size_t len, char *authz, char *user, char *pass, size_t cap)
{
	struct plain_sink ps = { { authz, user, pass }, 0, 0, cap };

	if (cap == 0)
		return -1;
	authz[0] = user[0] = pass[0] = '\0';
	if (b64_run(b64, len, plain_put, &ps) < 0 || ps.idx != 2)
		goto fail;
	pass[ps.pos] = '\0';
	/* authcid = 1*SAFE, passwd = 1*SAFE (RFC 4616 §2). */
	if (user[0] == '\0' || pass[0] == '\0')
		goto fail;
	return 0;
fail:
	/* Leave no partial secret behind in the caller's buffers. */
	explicit_bzero(pass, cap);
	authz[0] = user[0] = '\0';
	return -1;
}
