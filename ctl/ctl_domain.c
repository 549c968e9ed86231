/*
 * ctl_domain - "hikyakuctl domain check". See ctl_domain.h.
 */
#include "ctl/ctl_domain.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <glib.h>
#include <jansson.h>

#include "config/config.h"
#include "relay/dkim.h"
#include "relay/dnscheck.h"
#include "relay/dnsquery.h"
#include "util/esc.h"
#include "util/eventlog.h"

#define DOMAIN_DNS_TIMEOUT_MS 3000

static void lookup(void *arg, const char *name, enum dnsq_type type, struct dnsq_answer *ans)
{
	dnsq_lookup(arg, name, type, ans);
}

struct domains {
	char **v;
	size_t n;
};

static void domains_add(struct domains *d, const char *dom)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->v[i], dom) == 0)
			return;
	char **v = realloc(d->v, (d->n + 1) * sizeof(*v));
	if (!v)
		return;
	d->v = v;
	if ((d->v[d->n] = strdup(dom)))
		d->n++;
}

static bool under(const char *name, const char *dom)
{
	size_t n = strlen(name), l = strlen(dom);
	return (n == l && strcasecmp(name, dom) == 0) ||
	       (n > l && name[n - l - 1] == '.' && strcasecmp(name + n - l, dom) == 0);
}

/* The text of a cell: control characters (C0, DEL, C1, bidi overrides,
 * invalid UTF-8: DNS text may come from anyone's zone) escaped as every
 * hikyakuctl output does (util/esc.h, SPEC §8). */
static char *cell(const char *s)
{
	if (!s)
		return strdup("-");
	char *e = esc_text(s, -1, 0);
	char *out = e ? strdup(e) : NULL;
	g_free(e);
	return out;
}

static void print_table(const struct dnscheck_report *r)
{
	size_t w[3] = { strlen("DOMAIN"), strlen("CHECK"), strlen("RESULT") };
	for (size_t i = 0; i < r->n; i++) {
		size_t a = strlen(r->v[i].domain), b = strlen(r->v[i].check);
		w[0] = a > w[0] ? a : w[0];
		w[1] = b > w[1] ? b : w[1];
	}
	printf("%-*s  %-*s  %-*s  %s\n", (int)w[0], "DOMAIN", (int)w[1], "CHECK", (int)w[2], "RESULT",
	       "DETAIL");
	for (size_t i = 0; i < r->n; i++) {
		char *d = cell(r->v[i].domain), *c = cell(r->v[i].check), *t = cell(r->v[i].text);
		printf("%-*s  %-*s  %-*s  %s\n", (int)w[0], d ? d : "", (int)w[1], c ? c : "", (int)w[2],
		       dnscheck_result_name(r->v[i].result), t ? t : "");
		free(d);
		free(c);
		free(t);
	}
	printf("%zu checks: %zu ok, %u warning%s, %u failed\n", r->n,
	       r->n - r->nfail - r->nwarn, r->nwarn, r->nwarn == 1 ? "" : "s", r->nfail);
}

static json_t *jstr(const char *s)
{
	return s ? evlog_str(s, strlen(s)) : json_null();
}

static void print_json(const struct dnscheck_report *r)
{
	for (size_t i = 0; i < r->n; i++) {
		json_t *o = json_object();
		json_object_set_new(o, "domain", jstr(r->v[i].domain));
		json_object_set_new(o, "check", jstr(r->v[i].check));
		json_object_set_new(o, "result", json_string(dnscheck_result_name(r->v[i].result)));
		json_object_set_new(o, "text", jstr(r->v[i].text));
		json_object_set_new(o, "name", jstr(r->v[i].name));
		json_object_set_new(o, "record", jstr(r->v[i].record));
		char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (s)
			printf("%s\n", s);
		free(s);
		json_decref(o);
	}
}

static int check(const struct config *cfg, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "expect", required_argument, NULL, 'e' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *expect_file = NULL;
	bool json = false;
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'e': expect_file = optarg; break;
		case 'j': json = true; break;
		default:
			fprintf(stderr, "hikyakuctl: usage: hikyakuctl domain check [DOMAIN ...] "
			                "[--expect FILE] [--json]\n");
			return 2;
		}
	}

	struct domains doms = { 0 };
	bool named = optind < argc;
	for (int i = optind; i < argc; i++) {
		char *a = config_domain_ascii(argv[i], strlen(argv[i]));
		if (!a) {
			fprintf(stderr, "hikyakuctl: \"%s\" is not a valid domain.\n", argv[i]);
			for (size_t j = 0; j < doms.n; j++)
				free(doms.v[j]);
			free(doms.v);
			return 2;
		}
		domains_add(&doms, a);
		free(a);
	}
	if (!named) {
		for (size_t i = 0; i < cfg->routing.ndomains; i++) {
			const char *e = cfg->routing.domains[i].ascii;
			const char *at = strrchr(e, '@');
			domains_add(&doms, at ? at + 1 : e);
		}
		for (size_t i = 0; i < cfg->dkim.nkeys; i++)
			domains_add(&doms, cfg->dkim.keys[i].domain);
	}
	/* The custom MAIL FROM domain of the delivery service. */
	char *mail_from = NULL;
	if (cfg->service.envelope_from) {
		const char *at = strrchr(cfg->service.envelope_from, '@');
		mail_from = at ? config_domain_ascii(at + 1, strlen(at + 1)) : NULL;
		bool wanted = !named;
		for (size_t i = 0; mail_from && named && i < doms.n; i++)
			wanted |= under(mail_from, doms.v[i]);
		if (!wanted) {
			free(mail_from);
			mail_from = NULL;
		}
	}
	struct dnscheck_expect *exp = NULL;
	size_t nexp = 0;
	char err[512];
	if (expect_file && dnscheck_expect_load(expect_file, &exp, &nexp, err, sizeof(err)) < 0) {
		fprintf(stderr, "hikyakuctl: %s\n", err);
		goto usage_fail;
	}
	if (doms.n == 0 && !mail_from && nexp == 0) {
		fprintf(stderr, "hikyakuctl: no domain to check: name one, or set [routing] "
		                "verified_domains or [dkim] keys.\n");
		goto usage_fail;
	}

	struct dnsq *q = NULL;
	if (dnsq_open(cfg->direct.dns_servers, cfg->direct.ndns_servers, DOMAIN_DNS_TIMEOUT_MS, &q, err,
	              sizeof(err)) < 0) {
		fprintf(stderr, "hikyakuctl: %s.\n", err);
		goto usage_fail;
	}
	struct dnscheck c = { lookup, q };
	struct dnscheck_report r = { 0 };
	/* Each expected record is shown under the domain its name is in
	 * (the longest that holds it), else under its organisational domain. */
	const char **owner = calloc(nexp ? nexp : 1, sizeof(*owner));
	for (size_t e = 0; owner && e < nexp; e++) {
		for (size_t j = 0; j < doms.n; j++)
			if (under(exp[e].name, doms.v[j]) &&
			    (!owner[e] || strlen(doms.v[j]) > strlen(owner[e])))
				owner[e] = doms.v[j];
		if (mail_from && under(exp[e].name, mail_from) &&
		    (!owner[e] || strlen(mail_from) > strlen(owner[e])))
			owner[e] = mail_from;
	}
	for (size_t i = 0; i < doms.n; i++) {
		const char *d = doms.v[i];
		dnscheck_mx(&c, d, false, &r);
		dnscheck_spf(&c, d, "spf", &r);
		dnscheck_dmarc(&c, d, &r);
		for (size_t k = 0; k < cfg->dkim.nkeys; k++) {
			const struct config_dkim_key *key = &cfg->dkim.keys[k];
			const char *kt;
			char *p = NULL;
			if (strcmp(key->domain, d) != 0)
				continue;
			if (dkim_public_record(key->pem, key->pem_len, &kt, &p) == 0)
				dnscheck_dkim(&c, d, key->selector, kt, p, &r);
			free(p);
		}
		for (size_t e = 0; owner && e < nexp; e++)
			if (owner[e] == d)
				dnscheck_expect(&c, &exp[e], d, &r);
	}
	if (mail_from) {
		dnscheck_mx(&c, mail_from, true, &r);
		dnscheck_spf(&c, mail_from, "mail-from spf", &r);
		for (size_t e = 0; owner && e < nexp; e++)
			if (owner[e] == mail_from)
				dnscheck_expect(&c, &exp[e], mail_from, &r);
	}
	for (size_t e = 0; owner && e < nexp; e++) {
		if (owner[e])
			continue;
		char *org = dnscheck_org_domain(exp[e].name);
		dnscheck_expect(&c, &exp[e], org, &r);
		free(org);
	}
	free(owner);
	if (json)
		print_json(&r);
	else
		print_table(&r);
	int rc = r.nfail ? 1 : 0;
	dnscheck_report_free(&r);
	dnsq_close(q);
	dnscheck_expect_free(exp, nexp);
	free(mail_from);
	for (size_t j = 0; j < doms.n; j++)
		free(doms.v[j]);
	free(doms.v);
	return rc;

usage_fail:
	dnscheck_expect_free(exp, nexp);
	free(mail_from);
	for (size_t j = 0; j < doms.n; j++)
		free(doms.v[j]);
	free(doms.v);
	return 2;
}

int ctl_domain(const struct config *cfg, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return check(cfg, argc - 1, argv + 1);
	fprintf(stderr, "hikyakuctl: usage: hikyakuctl domain check [DOMAIN ...] [--expect FILE] "
	                "[--json]\n");
	return 2;
}
