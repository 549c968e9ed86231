/*
 * dnscheck - the DNS record checks of "hikyakuctl domain check". See
 * dnscheck.h.
 *
 * libspf2 decides whether an SPF record parses (SPF_record_compile);
 * the lookup count needs the records that include: and redirect= name,
 * which libspf2 would fetch with its own resolver, so the terms are
 * walked here (RFC 7208 §4.6.1 grammar: terms split on spaces, a
 * modifier has "=" before any ":" or "/"), and the records come from the
 * caller's lookup function ([direct] dns_servers). libopendmarc parses
 * DMARC records; libpsl gives the organisational domain.
 */
#include "relay/dnscheck.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpsl.h>
#include <opendmarc/dmarc.h>
#include <spf2/spf.h>

#define EXPECT_LINE_MAX 4096
#define EXPECT_MAX 1000

const char *dnscheck_result_name(enum dnscheck_result res)
{
	return res == DNSCHECK_OK ? "ok" : res == DNSCHECK_WARN ? "warn" : "fail";
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void row(struct dnscheck_report *r, const char *domain, const char *check,
                enum dnscheck_result res, const char *name, const char *record, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

static void row(struct dnscheck_report *r, const char *domain, const char *check,
                enum dnscheck_result res, const char *name, const char *record, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	struct dnscheck_row *v = realloc(r->v, (r->n + 1) * sizeof(*v));
	if (!v) {
		free(text);
		return;
	}
	r->v = v;
	v[r->n++] = (struct dnscheck_row){ xstrdup(domain), xstrdup(check), res,
	                                   text ? text : strdup("(out of memory)"), xstrdup(name),
	                                   xstrdup(record) };
	if (res == DNSCHECK_FAIL)
		r->nfail++;
	else if (res == DNSCHECK_WARN)
		r->nwarn++;
}

void dnscheck_report_free(struct dnscheck_report *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].domain);
		free(r->v[i].check);
		free(r->v[i].text);
		free(r->v[i].name);
		free(r->v[i].record);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

static const char *status_text(const struct dnsq_answer *a)
{
	switch (a->status) {
	case DNSQ_NXDOMAIN: return "the name does not exist (NXDOMAIN)";
	case DNSQ_NODATA: return "no record of that type";
	case DNSQ_TEMPFAIL: return a->error[0] ? a->error : "the DNS lookup failed";
	default: return "";
	}
}

/* ---- MX ---------------------------------------------------------------- */

static void join(const struct dnsq_answer *a, char *out, size_t n)
{
	out[0] = '\0';
	for (size_t i = 0; i < a->n; i++) {
		size_t l = strlen(out);
		snprintf(out + l, n - l, "%s%s", i ? ", " : "", a->rec[i]);
	}
}

void dnscheck_mx(const struct dnscheck *c, const char *domain, bool mail_from,
                 struct dnscheck_report *r)
{
	const char *check = mail_from ? "mail-from mx" : "mx";
	struct dnsq_answer a, b;
	char list[512];

	c->lookup(c->arg, domain, DNSQ_MX, &a);
	if (a.status == DNSQ_OK) {
		join(&a, list, sizeof(list));
		if (a.n == 1 && strcmp(a.rec[0], "0 .") == 0)
			row(r, domain, check, mail_from ? DNSCHECK_FAIL : DNSCHECK_WARN, domain, list,
			    "a null MX (RFC 7505): the domain receives no mail, so %s",
			    mail_from ? "the delivery service's bounces cannot come back"
			              : "replies and bounces to it are lost");
		else
			row(r, domain, check, DNSCHECK_OK, domain, list, "MX %s", list);
		dnsq_answer_free(&a);
		return;
	}
	if (a.status == DNSQ_TEMPFAIL) {
		row(r, domain, check, DNSCHECK_FAIL, domain, NULL, "cannot ask DNS for its MX: %s",
		    status_text(&a));
		return;
	}
	if (a.status == DNSQ_NXDOMAIN) {
		row(r, domain, check, DNSCHECK_FAIL, domain, NULL,
		    "the domain does not exist in DNS (NXDOMAIN)");
		return;
	}
	if (mail_from) {
		row(r, domain, check, DNSCHECK_FAIL, domain, NULL,
		    "no MX record: the custom MAIL FROM domain needs the MX the delivery service "
		    "names (e.g. feedback-smtp.REGION.amazonses.com)");
		return;
	}
	c->lookup(c->arg, domain, DNSQ_A, &a);
	c->lookup(c->arg, domain, DNSQ_AAAA, &b);
	if (a.status == DNSQ_OK || b.status == DNSQ_OK) {
		const struct dnsq_answer *x = a.status == DNSQ_OK ? &a : &b;
		join(x, list, sizeof(list));
		row(r, domain, check, DNSCHECK_OK, domain, list,
		    "no MX, but %s %s (mail to the domain goes there)",
		    x == &a ? "A" : "AAAA", list);
	} else if (a.status == DNSQ_TEMPFAIL || b.status == DNSQ_TEMPFAIL) {
		row(r, domain, check, DNSCHECK_FAIL, domain, NULL, "no MX; cannot ask DNS for A/AAAA: %s",
		    status_text(a.status == DNSQ_TEMPFAIL ? &a : &b));
	} else {
		row(r, domain, check, DNSCHECK_FAIL, domain, NULL,
		    "no MX and no A/AAAA record: receivers such as docomo refuse mail from a "
		    "domain without one");
	}
	dnsq_answer_free(&a);
	dnsq_answer_free(&b);
}

/* ---- SPF --------------------------------------------------------------- */

static bool is_spf(const char *rec)
{
	/* RFC 7208 §4.5: "v=spf1" alone or followed by a space, any case. */
	return strncasecmp(rec, "v=spf1", 6) == 0 && (rec[6] == '\0' || rec[6] == ' ');
}

/*
 * The SPF records of domain: 1 with *one (malloc), 0 for none (or the
 * name does not exist), -1 with why: more than one, or DNS failed.
 */
static int spf_record(const struct dnscheck *c, const char *domain, char **one, char *why,
                      size_t whylen)
{
	struct dnsq_answer a;
	size_t n = 0;

	*one = NULL;
	c->lookup(c->arg, domain, DNSQ_TXT, &a);
	if (a.status == DNSQ_TEMPFAIL) {
		snprintf(why, whylen, "cannot ask DNS for the TXT records of %s: %s", domain,
		         status_text(&a));
		return -1;
	}
	for (size_t i = 0; i < a.n; i++)
		if (is_spf(a.rec[i]) && n++ == 0)
			*one = strdup(a.rec[i]);
	dnsq_answer_free(&a);
	if (n > 1) {
		snprintf(why, whylen, "%s has %zu SPF records; receivers treat that as an error "
		         "(RFC 7208 §4.5): merge them into one", domain, n);
		free(*one);
		*one = NULL;
		return -1;
	}
	return n ? 1 : 0;
}

static SPF_server_t *spf_server(void)
{
	static SPF_server_t *s;
	if (!s)
		s = SPF_server_new(SPF_DNS_ZONE, 0);  /* never asks DNS: we only compile */
	return s;
}

/* libspf2's verdict on the syntax; 0, or -1 with why. */
static int spf_parses(const char *domain, const char *record, char *why, size_t whylen)
{
	SPF_server_t *s = spf_server();
	SPF_response_t *resp = s ? SPF_response_new(NULL) : NULL;
	SPF_record_t *rec = NULL;
	int ret = 0;

	if (!resp) {
		snprintf(why, whylen, "libspf2 cannot be initialised");
		return -1;
	}
	SPF_errcode_t e = SPF_record_compile(s, resp, &rec, record);
	/* Too many DNS mechanisms is counted (with includes) by the walk. */
	if (e != SPF_E_SUCCESS && e != SPF_E_BIG_DNS) {
		const char *msg = NULL;
		for (int i = 0; i < SPF_response_messages(resp) && !msg; i++) {
			SPF_error_t *err = SPF_response_message(resp, i);
			if (err && SPF_error_code(err) == e)
				msg = SPF_error_message(err);
		}
		snprintf(why, whylen, "the SPF record of %s does not parse: %s", domain,
		         msg ? msg : SPF_strerror(e));
		ret = -1;
	}
	if (rec)                /* libspf2 does not take NULL (fuzz/regressions/dns_records/) */
		SPF_record_free(rec);
	SPF_response_free(resp);
	return ret;
}

static int walk(const struct dnscheck *c, const char *domain, const char *record, int depth,
                unsigned *lookups, char *all, char *why, size_t whylen)
{
	char *copy, *save = NULL, *redirect = NULL;
	char q_all = 0;
	bool has_all = false;
	int ret = 0;

	*all = 0;
	if (depth > DNSCHECK_SPF_MAX_LOOKUPS) {
		snprintf(why, whylen, "include/redirect loop through %s", domain);
		return -1;
	}
	if (spf_parses(domain, record, why, whylen) < 0)
		return -1;
	copy = strdup(record);
	if (!copy)
		return -1;
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (strncasecmp(t, "v=spf1", 6) == 0 && t[6] == '\0')
			continue;
		size_t name_len = strcspn(t, "=:/");
		if (t[name_len] == '=') {               /* a modifier */
			if (name_len == 8 && strncasecmp(t, "redirect", 8) == 0)
				redirect = t + 9;
			continue;
		}
		char q = '+';
		if (strchr("+-~?", *t)) {
			q = *t;
			t++;
		}
		size_t n = strcspn(t, ":/");
		const char *arg = t[n] == ':' ? t + n + 1 : NULL;
		if (n == 3 && strncasecmp(t, "all", 3) == 0) {
			has_all = true;
			q_all = q;
		} else if (n == 7 && strncasecmp(t, "include", 7) == 0) {
			(*lookups)++;
			if (*lookups > DNSCHECK_SPF_MAX_LOOKUPS || !arg)
				continue;
			char target[256];
			snprintf(target, sizeof(target), "%.*s", (int)strcspn(arg, "/"), arg);
			if (strchr(target, '%'))
				continue;       /* a macro: known only at delivery time */
			char *sub = NULL, sub_all;
			int k = spf_record(c, target, &sub, why, whylen);
			if (k == 0)
				snprintf(why, whylen, "include:%s has no SPF record (a permanent error "
				         "for receivers, RFC 7208 §5.2)", target);
			if (k <= 0 || walk(c, target, sub, depth + 1, lookups, &sub_all, why, whylen) < 0) {
				free(sub);
				ret = -1;
				break;
			}
			free(sub);
		} else if ((n == 1 && strncasecmp(t, "a", 1) == 0) ||
		           (n == 2 && strncasecmp(t, "mx", 2) == 0) ||
		           (n == 3 && strncasecmp(t, "ptr", 3) == 0) ||
		           (n == 6 && strncasecmp(t, "exists", 6) == 0)) {
			(*lookups)++;
		}
	}
	/* RFC 7208 §6.1: redirect= is used only when there is no "all". */
	if (ret == 0 && !has_all && redirect && *redirect) {
		(*lookups)++;
		if (*lookups <= DNSCHECK_SPF_MAX_LOOKUPS && !strchr(redirect, '%')) {
			char *sub = NULL;
			int k = spf_record(c, redirect, &sub, why, whylen);
			if (k == 0)
				snprintf(why, whylen, "redirect=%s has no SPF record (a permanent error "
				         "for receivers, RFC 7208 §6.1)", redirect);
			if (k <= 0 || walk(c, redirect, sub, depth + 1, lookups, all, why, whylen) < 0)
				ret = -1;
			free(sub);
		}
	} else if (has_all) {
		*all = q_all;
	}
	free(copy);
	return ret;
}

int dnscheck_spf_walk(const struct dnscheck *c, const char *domain, const char *record,
                      unsigned *lookups, char *all, char *why, size_t whylen)
{
	*lookups = 0;
	why[0] = '\0';
	return walk(c, domain, record, 0, lookups, all, why, whylen);
}

void dnscheck_spf(const struct dnscheck *c, const char *domain, const char *check,
                  struct dnscheck_report *r)
{
	char why[512], *rec = NULL, all;
	unsigned lookups;

	int k = spf_record(c, domain, &rec, why, sizeof(why));
	if (k < 0) {
		row(r, domain, check, DNSCHECK_FAIL, domain, NULL, "%s", why);
		return;
	}
	if (k == 0) {
		row(r, domain, check, DNSCHECK_FAIL, domain, NULL,
		    "no SPF record (a TXT record \"v=spf1 ... -all\")");
		return;
	}
	if (dnscheck_spf_walk(c, domain, rec, &lookups, &all, why, sizeof(why)) < 0)
		row(r, domain, check, DNSCHECK_FAIL, domain, rec, "%s", why);
	else if (lookups > DNSCHECK_SPF_MAX_LOOKUPS)
		row(r, domain, check, DNSCHECK_FAIL, domain, rec,
		    "needs %u DNS lookups (through include: and redirect=); receivers stop at %d "
		    "(RFC 7208 §4.6.4) and fail it", lookups, DNSCHECK_SPF_MAX_LOOKUPS);
	else if (all && all != '-' && all != '~')
		row(r, domain, check, DNSCHECK_FAIL, domain, rec,
		    "ends in %call: it must end in -all or ~all so that other senders fail", all);
	else if (!all)
		row(r, domain, check, DNSCHECK_FAIL, domain, rec,
		    "has no -all or ~all at the end: other senders are not refused");
	else
		row(r, domain, check, DNSCHECK_OK, domain, rec, "%s (%u DNS lookup%s)", rec, lookups,
		    lookups == 1 ? "" : "s");
	free(rec);
}

/* ---- DMARC ------------------------------------------------------------- */

char *dnscheck_org_domain(const char *domain)
{
	static const psl_ctx_t *psl;
	if (!psl) {
		psl = psl_latest(NULL);  /* Debian's list, else the built-in one */
		if (!psl)
			psl = psl_builtin();
	}
	const char *org = psl ? psl_registrable_domain(psl, domain) : NULL;
	return strdup(org ? org : domain);
}

static bool is_dmarc(const char *rec)
{
	/* RFC 7489 §6.4: "v=DMARC1" first (blanks around "=" allowed). */
	const char *p = rec;
	if (*p != 'v')
		return false;
	p++;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p++ != '=')
		return false;
	while (*p == ' ' || *p == '\t')
		p++;
	return strncmp(p, "DMARC1", 6) == 0 && (p[6] == '\0' || p[6] == ';' || p[6] == ' ' || p[6] == '\t');
}

/* 0 none, 1 one (*one), -1 with why. */
static int dmarc_at(const struct dnscheck *c, const char *name, char **one, char *why, size_t whylen)
{
	struct dnsq_answer a;
	size_t n = 0;

	*one = NULL;
	c->lookup(c->arg, name, DNSQ_TXT, &a);
	if (a.status == DNSQ_TEMPFAIL) {
		snprintf(why, whylen, "cannot ask DNS for %s: %s", name, status_text(&a));
		return -1;
	}
	for (size_t i = 0; i < a.n; i++)
		if (is_dmarc(a.rec[i]) && n++ == 0)
			*one = strdup(a.rec[i]);
	dnsq_answer_free(&a);
	if (n > 1) {
		snprintf(why, whylen, "%zu DMARC records at %s: receivers then apply none of them "
		         "(RFC 7489 §6.6.3)", n, name);
		free(*one);
		*one = NULL;
		return -1;
	}
	return n ? 1 : 0;
}

void dnscheck_dmarc(const struct dnscheck *c, const char *domain, struct dnscheck_report *r)
{
	char name[300], why[512], *rec = NULL;
	char *org = dnscheck_org_domain(domain);
	bool at_org = false;

	snprintf(name, sizeof(name), "_dmarc.%s", domain);
	int k = dmarc_at(c, name, &rec, why, sizeof(why));
	if (k == 0 && org && strcasecmp(org, domain) != 0) {
		snprintf(name, sizeof(name), "_dmarc.%s", org);
		k = dmarc_at(c, name, &rec, why, sizeof(why));
		at_org = true;
	}
	if (k < 0) {
		row(r, domain, "dmarc", DNSCHECK_FAIL, name, NULL, "%s", why);
		goto out;
	}
	if (k == 0) {
		if (at_org)
			row(r, domain, "dmarc", DNSCHECK_FAIL, name, NULL,
			    "no DMARC record at _dmarc.%s nor at _dmarc.%s (the organisational domain)",
			    domain, org);
		else
			row(r, domain, "dmarc", DNSCHECK_FAIL, name, NULL, "no DMARC record at _dmarc.%s",
			    domain);
		goto out;
	}
	DMARC_POLICY_T *pctx = opendmarc_policy_connect_init((u_char *)"192.0.2.1",
	                                                     DMARC_POLICY_IP_TYPE_IPV4);
	if (!pctx) {
		row(r, domain, "dmarc", DNSCHECK_FAIL, name, rec, "libopendmarc cannot be initialised");
		goto out;
	}
	OPENDMARC_STATUS_T st = opendmarc_policy_parse_dmarc(pctx, (u_char *)(at_org ? org : domain),
	                                                     (u_char *)rec);
	int p = DMARC_RECORD_P_UNSPECIFIED, sp = DMARC_RECORD_P_UNSPECIFIED;
	if (st == DMARC_PARSE_OKAY) {
		opendmarc_policy_fetch_p(pctx, &p);
		opendmarc_policy_fetch_sp(pctx, &sp);
	}
	opendmarc_policy_connect_shutdown(pctx);
	if (st != DMARC_PARSE_OKAY) {
		row(r, domain, "dmarc", DNSCHECK_FAIL, name, rec, "the record at %s does not parse: %s",
		    name, opendmarc_policy_status_to_str(st));
		goto out;
	}
	/* A subdomain under its organisational domain's record gets sp=. */
	bool use_sp = at_org && sp != DMARC_RECORD_P_UNSPECIFIED;
	int pol = use_sp ? sp : p;
	const char *word = pol == DMARC_RECORD_P_REJECT ? "reject" :
	                   pol == DMARC_RECORD_P_QUARANTINE ? "quarantine" :
	                   pol == DMARC_RECORD_P_NONE ? "none" : NULL;
	char where[400];
	snprintf(where, sizeof(where), "%s%s%s", name,
	         at_org ? " (the organisational domain's)" : "", "");
	if (!word)
		row(r, domain, "dmarc", DNSCHECK_FAIL, name, rec, "the record at %s has no valid p=", where);
	else if (pol == DMARC_RECORD_P_NONE)
		row(r, domain, "dmarc", DNSCHECK_WARN, name, rec,
		    "%s=none at %s: monitoring only, mail that fails DMARC is still delivered; "
		    "move to quarantine or reject once the reports are clean", use_sp ? "sp" : "p", where);
	else
		row(r, domain, "dmarc", DNSCHECK_OK, name, rec, "%s=%s at %s", use_sp ? "sp" : "p", word,
		    where);
out:
	free(rec);
	free(org);
}

/* ---- DKIM -------------------------------------------------------------- */

char *dnscheck_tag(const char *list, const char *tag)
{
	size_t tl = strlen(tag);
	const char *p = list;

	while (*p) {
		const char *end = strchr(p, ';');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', n);
		const char *s = p, *e = p + n;
		while (s < e && isspace((unsigned char)*s))
			s++;
		if (s < e) {
			if (!eq)
				return NULL;    /* not a tag list */
			const char *ne = eq;
			while (ne > s && isspace((unsigned char)ne[-1]))
				ne--;
			if ((size_t)(ne - s) == tl && strncmp(s, tag, tl) == 0) {
				const char *v = eq + 1;
				while (v < e && isspace((unsigned char)*v))
					v++;
				while (e > v && isspace((unsigned char)e[-1]))
					e--;
				char *out = malloc((size_t)(e - v) + 1);
				if (!out)
					return NULL;
				size_t o = 0;
				for (const char *q = v; q < e; q++)
					if (strcmp(tag, "p") != 0 || !isspace((unsigned char)*q))
						out[o++] = *q;
				out[o] = '\0';
				return out;
			}
		}
		if (!end)
			break;
		p = end + 1;
	}
	return NULL;
}

void dnscheck_dkim(const struct dnscheck *c, const char *domain, const char *selector,
                   const char *k, const char *p, struct dnscheck_report *r)
{
	char name[600], check[300];
	struct dnsq_answer a;
	snprintf(name, sizeof(name), "%s._domainkey.%s", selector, domain);
	snprintf(check, sizeof(check), "dkim %s", selector);

	c->lookup(c->arg, name, DNSQ_TXT, &a);
	if (a.status == DNSQ_TEMPFAIL) {
		row(r, domain, check, DNSCHECK_FAIL, name, NULL, "cannot ask DNS for %s: %s", name,
		    status_text(&a));
		return;
	}
	/* The key records: tag lists with p= (v=DKIM1 is optional, first). */
	const char *rec = NULL;
	size_t n = 0;
	for (size_t i = 0; i < a.n; i++) {
		char *pp = dnscheck_tag(a.rec[i], "p");
		if (pp && n++ == 0)
			rec = a.rec[i];
		free(pp);
	}
	if (n == 0) {
		row(r, domain, check, DNSCHECK_FAIL, name, a.n ? a.rec[0] : NULL,
		    "no DKIM key record at %s: publish the TXT record that hikyakuctl dkim keygen "
		    "printed", name);
		goto out;
	}
	if (n > 1) {
		row(r, domain, check, DNSCHECK_FAIL, name, rec,
		    "%zu key records at %s: a verifier may take either; keep one", n, name);
		goto out;
	}
	char *v = dnscheck_tag(rec, "v"), *kk = dnscheck_tag(rec, "k"), *pp = dnscheck_tag(rec, "p");
	if (v && strcmp(v, "DKIM1") != 0)
		row(r, domain, check, DNSCHECK_FAIL, name, rec, "v=%s: a key record has v=DKIM1", v);
	else if (strcasecmp(kk ? kk : "rsa", k) != 0)
		row(r, domain, check, DNSCHECK_FAIL, name, rec,
		    "k=%s, but the configured key is %s", kk ? kk : "rsa (the default)", k);
	else if (!pp || !*pp)
		row(r, domain, check, DNSCHECK_FAIL, name, rec, "p= is empty: the key is revoked");
	else if (strcmp(pp, p) != 0)
		row(r, domain, check, DNSCHECK_FAIL, name, rec,
		    "p= is not the public half of the configured key (another key is published, or "
		    "the key file was replaced)");
	else
		row(r, domain, check, DNSCHECK_OK, name, rec, "%s: k=%s, p= matches the configured key",
		    name, k);
	free(v);
	free(kk);
	free(pp);
out:
	dnsq_answer_free(&a);
}

/* ---- --expect ---------------------------------------------------------- */

void dnscheck_expect_free(struct dnscheck_expect *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].value);
	}
	free(v);
}

static void lower_nodot(char *s)
{
	for (char *p = s; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	size_t n = strlen(s);
	if (n > 1 && s[n - 1] == '.')
		s[n - 1] = '\0';
}

/* "a" "b" -> ab; a value without quotes stays as it is. 0 or -1. */
static int unquote(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	const char *p = in;
	if (*p != '"') {
		snprintf(out, outlen, "%s", in);
		return 0;
	}
	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		if (*p++ != '"')
			return -1;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = *p++;
		}
		if (*p++ != '"')
			return -1;
	}
	out[o] = '\0';
	return 0;
}

int dnscheck_expect_load(const char *path, struct dnscheck_expect **out, size_t *nout, char *err,
                         size_t errlen)
{
	FILE *fp = fopen(path, "re");
	struct dnscheck_expect *v = NULL;
	size_t n = 0;
	char line[EXPECT_LINE_MAX + 2];
	int lineno = 0, ret = -1;

	*out = NULL;
	*nout = 0;
	if (!fp) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp)) {
		lineno++;
		size_t l = strlen(line);
		if (l > EXPECT_LINE_MAX) {
			snprintf(err, errlen, "%s:%d: the line is longer than %d bytes", path, lineno,
			         EXPECT_LINE_MAX);
			goto out;
		}
		while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || isspace((unsigned char)line[l - 1])))
			line[--l] = '\0';
		char *s = line;
		while (isspace((unsigned char)*s))
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		char name[256], type[16];
		int off = 0;
		if (sscanf(s, "%255s %15s %n", name, type, &off) != 2 || !s[off]) {
			snprintf(err, errlen, "%s:%d: not \"NAME TYPE VALUE\"", path, lineno);
			goto out;
		}
		enum dnsq_type t;
		if (strcasecmp(type, "CNAME") == 0)
			t = DNSQ_CNAME;
		else if (strcasecmp(type, "TXT") == 0)
			t = DNSQ_TXT;
		else if (strcasecmp(type, "MX") == 0)
			t = DNSQ_MX;
		else {
			snprintf(err, errlen, "%s:%d: type \"%s\" is not CNAME, TXT or MX", path, lineno, type);
			goto out;
		}
		char value[EXPECT_LINE_MAX];
		if (t == DNSQ_TXT) {
			if (unquote(s + off, value, sizeof(value)) < 0) {
				snprintf(err, errlen, "%s:%d: the TXT value has an unclosed quote", path, lineno);
				goto out;
			}
		} else {
			unsigned pref;
			char host[256];
			int used = 0;
			if (t == DNSQ_MX && (sscanf(s + off, "%u %255s %n", &pref, host, &used) != 2 ||
			                     s[off + used])) {
				snprintf(err, errlen, "%s:%d: an MX value is \"PREFERENCE HOST\"", path, lineno);
				goto out;
			}
			if (t == DNSQ_MX)
				snprintf(value, sizeof(value), "%u %s", pref, host);
			else if (sscanf(s + off, "%255s %n", host, &used) != 1 || s[off + used]) {
				snprintf(err, errlen, "%s:%d: a CNAME value is one host name", path, lineno);
				goto out;
			} else
				snprintf(value, sizeof(value), "%s", host);
			lower_nodot(value);
		}
		if (n >= EXPECT_MAX) {
			snprintf(err, errlen, "%s:%d: more than %d records", path, lineno, EXPECT_MAX);
			goto out;
		}
		struct dnscheck_expect *nv = realloc(v, (n + 1) * sizeof(*nv));
		if (!nv)
			goto oom;
		v = nv;
		lower_nodot(name);
		v[n] = (struct dnscheck_expect){ strdup(name), t, strdup(value), lineno };
		if (!v[n].name || !v[n].value) {
			n++;
			goto oom;
		}
		n++;
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		goto out;
	}
	*out = v;
	*nout = n;
	v = NULL;
	n = 0;
	ret = 0;
	goto out;
oom:
	snprintf(err, errlen, "%s: out of memory", path);
out:
	dnscheck_expect_free(v, n);
	fclose(fp);
	return ret;
}

static bool has_value(const struct dnsq_answer *a, enum dnsq_type t, const char *value)
{
	for (size_t i = 0; i < a->n; i++)
		if (t == DNSQ_TXT ? strcmp(a->rec[i], value) == 0 : strcasecmp(a->rec[i], value) == 0)
			return true;
	return false;
}

void dnscheck_expect(const struct dnscheck *c, const struct dnscheck_expect *e, const char *domain,
                     struct dnscheck_report *r)
{
	const char *tn = dnsq_type_name(e->type);
	char check[300], list[512];
	struct dnsq_answer a;
	snprintf(check, sizeof(check), "expect %s", tn);

	c->lookup(c->arg, e->name, e->type, &a);
	if (a.status == DNSQ_OK && has_value(&a, e->type, e->value)) {
		row(r, domain, check, DNSCHECK_OK, e->name, e->value, "%s %s %s", e->name, tn, e->value);
		dnsq_answer_free(&a);
		return;
	}
	if (a.status == DNSQ_TEMPFAIL) {
		row(r, domain, check, DNSCHECK_FAIL, e->name, NULL, "cannot ask DNS for %s: %s", e->name,
		    status_text(&a));
		return;
	}
	/* The zone appended a second time: NAME.ZONE, ZONE the domain
	 * checked or NAME's organisational domain. */
	char *org = dnscheck_org_domain(e->name);
	const char *zones[2] = { domain, org };
	for (int i = 0; i < 2; i++) {
		if (!zones[i] || (i == 1 && domain && strcasecmp(zones[1], domain) == 0))
			continue;
		char dup[600];
		struct dnsq_answer b;
		snprintf(dup, sizeof(dup), "%s.%s", e->name, zones[i]);
		c->lookup(c->arg, dup, e->type, &b);
		if (b.status == DNSQ_OK) {
			join(&b, list, sizeof(list));
			row(r, domain, check, DNSCHECK_FAIL, dup, list,
			    "%s %s is missing, but %s has it: the DNS console appended the zone %s a "
			    "second time; enter the name without \".%s\"", e->name, tn, dup, zones[i],
			    zones[i]);
			dnsq_answer_free(&b);
			dnsq_answer_free(&a);
			free(org);
			return;
		}
		dnsq_answer_free(&b);
	}
	free(org);
	if (a.status == DNSQ_OK) {
		join(&a, list, sizeof(list));
		row(r, domain, check, DNSCHECK_FAIL, e->name, list, "%s %s is %s; expected %s", e->name, tn,
		    list, e->value);
	} else {
		row(r, domain, check, DNSCHECK_FAIL, e->name, NULL, "no %s record at %s: %s; expected %s",
		    tn, e->name, status_text(&a), e->value);
	}
	dnsq_answer_free(&a);
}
