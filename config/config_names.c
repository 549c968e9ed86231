/*
 * NAME
 *	config_names - domain names and addresses as the configuration
 *	stores them
 * SUMMARY
 *	config_domain_ascii() (config.h) gives the lowercase A-label form of
 *	a domain written in either form (libidn2, UTS #46), refusing what is
 *	no host name (letters, digits and hyphens, RFC 1035 §2.3.1; an
 *	all-numeric last label is an IP address). cfg_address_ascii() does
 *	the same for local@domain with a dot-atom local part. Entries of
 *	verified_domains and [destination] domains are stored in this form,
 *	and relay/route.c, hikyakuctl (domain check, dkim keygen) and the
 *	fuzzers compare with them through config_domain_ascii(): one rule
 *	for what the configuration accepted and what it is matched against.
 *	(proto/smtp_cmd.c's EHLO check and relay/suppression.c's address
 *	check have rules of their own for other inputs.)
 *
 *	config_is_bounce_address() (config.h) is the [suppression]
 *	bounce_address rule: that address or one of its +tag forms.
 * TOUCHES
 *	Memory only.
 */
#include "config/config_int.h"

#include <ctype.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Domains and addresses                                              */
/* ------------------------------------------------------------------ */

/* Letters, digits and hyphens (RFC 1035 §2.3.1, RFC 5321 §4.1.2). */
static bool ldh_valid(const char *d)
{
	size_t total = strlen(d);
	const char *label = d;

	if (total == 0 || total > 253)
		return false;
	for (;;) {
		const char *dot = strchr(label, '.');
		size_t n = dot ? (size_t)(dot - label) : strlen(label);
		if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
			return false;
		bool digits = true;
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)label[i];
			if (!isalnum(ch) && ch != '-')
				return false;
			if (!isdigit(ch))
				digits = false;
		}
		if (!dot)
			/* An all-numeric last label is an IP address, not a domain. */
			return !digits;
		label = dot + 1;
	}
}

/*
 * Whether UTS #46 leaves a lowercase host name as it is: letters, digits
 * and hyphens only, and no label with hyphens in its third and fourth
 * places (an A-label "xn--", or a reserved form libidn2 refuses). Most
 * domains a relay sees are such names; libidn2's normalisation of them
 * was a tenth of the loop thread's time (docs/performance.md).
 */
static bool ldh_plain(const char *d)
{
	if (!ldh_valid(d))
		return false;
	for (const char *label = d; label; label = strchr(label, '.'), label = label ? label + 1 : NULL)
		if (label[0] && label[1] && label[2] == '-' && label[3] == '-')
			return false;
	return true;
}

/*
 * The lowercase A-label form of a domain written in either form, one
 * trailing dot allowed. UTS #46 nontransitional processing first (what
 * browsers and current resolvers do: "faß.de" stays "faß"), then the
 * transitional one for names only it accepts. A plain host name is its
 * own A-label form (ldh_plain).
 */
char *config_domain_ascii(const char *in, size_t n)
{
	char *a = NULL;

	if (n && in[n - 1] == '.')
		n--;
	if (n == 0 || n > 1024 || in[0] == '[')
		return NULL; /* a domain literal is no domain name */
	char *tmp = strndup(in, n);
	if (!tmp)
		return NULL;
	cfg_ascii_lower(tmp);
	if (ldh_plain(tmp))
		return tmp;
	int rc = idn2_to_ascii_8z(tmp, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK)
		rc = idn2_to_ascii_8z(tmp, &a, IDN2_NFC_INPUT | IDN2_TRANSITIONAL);
	free(tmp);
	if (rc != IDN2_OK)
		return NULL;
	cfg_ascii_lower(a);
	if (!ldh_valid(a)) {
		idn2_free(a);
		return NULL;
	}
	char *r = strdup(a);
	idn2_free(a);
	return r;
}

/*
 * A dot-atom local part (RFC 5322 §3.2.3), UTF-8 allowed (RFC 6531).
 * Quoted local parts are refused: no shop sends from one.
 */
static bool local_valid(const char *s, size_t n)
{
	if (n == 0 || n > 64 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.' && s[i + 1] == '.')
			return false;
		if (ch >= 0x80 || isalnum(ch) || ch == '.')
			continue;
		if (!strchr("!#$%&'*+-/=?^_`{|}~", ch))
			return false;
	}
	return true;
}

/* "local@domain" to "local@a-label", local part lowercased; NULL if invalid. */
char *cfg_address_ascii(const char *in)
{
	const char *at = strchr(in, '@');

	if (!at || strchr(at + 1, '@') || !local_valid(in, (size_t)(at - in)))
		return NULL;
	char *dom = config_domain_ascii(at + 1, strlen(at + 1));
	if (!dom)
		return NULL;
	char *r = NULL;
	if (asprintf(&r, "%.*s@%s", (int)(at - in), in, dom) < 0)
		r = NULL;
	free(dom);
	if (r) {
		char *p = strchr(r, '@');
		*p = '\0';
		cfg_ascii_lower(r);
		*p = '@';
	}
	return r;
}

/* ------------------------------------------------------------------ */
/* The bounce address                                                 */
/* ------------------------------------------------------------------ */

bool config_is_bounce_address(const struct config *cfg, const char *addr,
                              const char **tag, size_t *tag_len)
{
	const char *b = cfg->suppression.bounce_address;
	if (tag) {
		*tag = NULL;
		*tag_len = 0;
	}
	if (!b || !addr)
		return false;
	if (strcasecmp(addr, b) == 0)
		return true;
	const char *bat = strrchr(b, '@');
	const char *aat = strrchr(addr, '@');
	if (!bat || !aat || strcasecmp(bat, aat) != 0)
		return false;
	size_t blocal = (size_t)(bat - b);
	if ((size_t)(aat - addr) <= blocal || strncasecmp(addr, b, blocal) != 0 ||
	    addr[blocal] != '+')
		return false;
	if (tag) {
		*tag = addr + blocal + 1;
		*tag_len = (size_t)(aat - *tag);
	}
	return true;
}
