/*
 * NAME
 *	ctl_domain - "hikyakuctl domain check ..." (SPEC §8)
 * SUMMARY
 *	hikyakuctl domain check [DOMAIN ...] [--expect FILE] [--json]
 * DESCRIPTION
 *	ctl_domain() checks the DNS records that receivers and the delivery
 *	service need (relay/dnscheck.h), asking [direct] dns_servers when
 *	set (else the system's resolver). For each domain: mx, spf, dmarc,
 *	and "dkim SELECTOR" for each [dkim] keys entry of that domain. The
 *	domain of [service] envelope_from gets "mail-from mx" and
 *	"mail-from spf" (when no DOMAIN is named, or it is one of them or
 *	under one). --expect FILE adds "expect TYPE" rows, each shown under
 *	the domain its name is in. Default domains: every verified_domains
 *	entry (an address by its domain) and every [dkim] keys domain.
 *
 *	The output is an aligned table (DOMAIN, CHECK, RESULT, DETAIL) and a
 *	summary line, or with --json one JSON object per row: domain, check,
 *	result ("ok", "warn", "fail"), text, name (the DNS name asked) and
 *	record (what was found there, or null). Text that came from DNS is
 *	shown with control characters escaped. argv[0] is "domain".
 * DIAGNOSTICS
 *	Returns the exit status: 0 nothing failed (warnings allowed), 1 a
 *	check failed, 2 usage error or a bad --expect file.
 * TOUCHES
 *	DNS; reads the --expect file.
 */
#ifndef HK_CTL_DOMAIN_H
#define HK_CTL_DOMAIN_H

struct config;

int ctl_domain(const struct config *cfg, int argc, char **argv);

#endif
