/*
 * NAME
 *	dnscheck - the DNS record checks of "hikyakuctl domain check" (SPEC §8)
 * SUMMARY
 *	Each check asks DNS through a lookup function (relay/dnsquery.h in
 *	hikyakuctl, a table in the unit tests) and appends rows of
 *	(domain, check, ok | warn | fail, one sentence) to a report.
 * DESCRIPTION
 *	dnscheck_mx(): the domain has an MX record, or else an A/AAAA
 *	record (receivers such as docomo refuse a From domain without one);
 *	a null MX (RFC 7505) warns. With mail_from set (the domain of
 *	[service] envelope_from, the delivery service's custom MAIL FROM) an
 *	MX is required.
 *
 *	dnscheck_spf(): exactly one TXT record "v=spf1 ..." (RFC 7208 §4.5),
 *	which libspf2 compiles, needing at most 10 DNS lookups counted
 *	through include: and redirect= (RFC 7208 §4.6.4: include, a, mx,
 *	ptr, exists, redirect), whose result for everyone else is -all or
 *	~all (in the record itself, or in the record a redirect= names).
 *	dnscheck_spf_walk() is the counter alone: the lookups *lookups and
 *	the final qualifier *all ('-', '~', '?', '+', 0 for none); -1 with
 *	why when a record on the way is missing, doubled or does not parse.
 *
 *	dnscheck_dmarc(): exactly one "v=DMARC1" record at _dmarc.DOMAIN,
 *	else at _dmarc.ORG, ORG the organisational domain (libpsl, the
 *	Public Suffix List; RFC 7489 §3.2, §6.6.3), parsed by libopendmarc
 *	with a valid p= (for a subdomain covered by ORG's record, sp= when
 *	present); p=none warns, no record fails.
 *
 *	dnscheck_dkim(): SELECTOR._domainkey.DOMAIN is one DKIM key record
 *	(RFC 6376 §3.6.1, tags parsed by dnscheck_tag()) of type k (rsa or
 *	ed25519) whose p= is p, the public half of the configured key.
 *
 *	dnscheck_expect_load() reads an --expect FILE: lines "NAME TYPE
 *	VALUE" (TYPE CNAME, TXT or MX; VALUE the rest of the line, a TXT
 *	value maybe in quoted strings that are joined; "#" lines and blank
 *	lines skipped). dnscheck_expect() checks one: NAME has a TYPE record
 *	equal to VALUE (names without regard to case or a final dot); when
 *	not, a record at NAME.ZONE (the zone appended a second time by a DNS
 *	console) is named as the mistake.
 *
 *	dnscheck_org_domain() gives the organisational domain (malloc).
 *	dnscheck_report_free() releases a report.
 * DIAGNOSTICS
 *	dnscheck_expect_load() returns 0, or -1 with "FILE:LINE: message"
 *	(or "FILE: message") in err.
 * TOUCHES
 *	Only the lookup function's DNS; reads the --expect file.
 */
#ifndef HK_RELAY_DNSCHECK_H
#define HK_RELAY_DNSCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "relay/dnsquery.h"

enum dnscheck_result { DNSCHECK_OK, DNSCHECK_WARN, DNSCHECK_FAIL };

struct dnscheck_row {
	char *domain;
	char *check;            /* "mx", "spf", "dmarc", "dkim SELECTOR", "expect NAME TYPE", ... */
	enum dnscheck_result result;
	char *text;             /* one sentence */
	char *name;             /* the DNS name that decided */
	char *record;           /* the record found there, or NULL */
};

struct dnscheck_report {
	struct dnscheck_row *v;
	size_t n;
	unsigned nfail, nwarn;
};

typedef void (*dnscheck_lookup_fn)(void *arg, const char *name, enum dnsq_type type,
                                   struct dnsq_answer *ans);

struct dnscheck {
	dnscheck_lookup_fn lookup;
	void *arg;
};

struct dnscheck_expect {
	char *name;             /* lower case, no final dot */
	enum dnsq_type type;
	char *value;
	int line;
};

#define DNSCHECK_SPF_MAX_LOOKUPS 10

void dnscheck_mx(const struct dnscheck *c, const char *domain, bool mail_from,
                 struct dnscheck_report *r);
void dnscheck_spf(const struct dnscheck *c, const char *domain, const char *check,
                  struct dnscheck_report *r);
int dnscheck_spf_walk(const struct dnscheck *c, const char *domain, const char *record,
                      unsigned *lookups, char *all, char *why, size_t whylen);
void dnscheck_dmarc(const struct dnscheck *c, const char *domain, struct dnscheck_report *r);
void dnscheck_dkim(const struct dnscheck *c, const char *domain, const char *selector,
                   const char *k, const char *p, struct dnscheck_report *r);
int dnscheck_expect_load(const char *path, struct dnscheck_expect **v, size_t *n, char *err,
                         size_t errlen);
void dnscheck_expect_free(struct dnscheck_expect *v, size_t n);
void dnscheck_expect(const struct dnscheck *c, const struct dnscheck_expect *e, const char *domain,
                     struct dnscheck_report *r);
char *dnscheck_org_domain(const char *domain);
/* The value of tag in a tag=value list (RFC 6376 §3.2), blanks around it
 * removed (and inside it too for "p"); NULL when absent or the list is
 * malformed. The caller frees it. */
char *dnscheck_tag(const char *list, const char *tag);
void dnscheck_report_free(struct dnscheck_report *r);
const char *dnscheck_result_name(enum dnscheck_result res);

#endif
