/*
 * NAME
 *	route - the verified sender domain rule (SPEC §4)
 * SUMMARY
 *	Decides, once per mail when it is queued, whether it goes through the
 *	delivery service or directly via MX, and which verified entry matched.
 * DESCRIPTION
 *	route_header_addrs() parses the value of a From: header (RFC 5322:
 *	display names, comments, quoted local parts, encoded words, groups;
 *	parsed with GMime) into its mailboxes' addr-specs, in order. A
 *	display name, comment or source route never yields an address.
 *	Returns the number of addresses (>= 1), or -1 when the value has no
 *	mailbox or cannot be parsed.
 *
 *	route_ascii() gives the form entries are compared in: the domain in
 *	lowercase A-label form (libidn2), no trailing dot; the local part
 *	lowercased (ASCII) and otherwise as written. NULL when the address
 *	has no '@' or its domain is not a valid IDN.
 *
 *	route_entry_matches(): an entry with '@' matches the equal address;
 *	a domain entry matches the equal domain or any subdomain on a dot
 *	boundary ("interfactory1.co.jp" matches "a.interfactory1.co.jp", not
 *	"testinterfactory1.co.jp"). addr_ascii is route_ascii()'s output.
 *
 *	route_decide() applies the whole rule: F is the header's addresses
 *	with match_on = header_from (the envelope sender when the header is
 *	missing or unparseable), the envelope sender with envelope_from. The
 *	null sender ("") never matches. More than one From: field never
 *	matches. Every address of F must match some entry; "matched" is the
 *	entry (as written in the file) that matched the first. The route is
 *	"service" when everything matched and [service] host is set,
 *	"direct" otherwise.
 * TOUCHES
 *	Memory only (GMime must be initialised: route_init()).
 */
#ifndef HK_RELAY_ROUTE_H
#define HK_RELAY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

enum route_kind { ROUTE_DIRECT = 0, ROUTE_SERVICE = 1 };

struct route_decision {
	enum route_kind route;
	const struct config_domain *matched; /* into cfg; NULL when nothing matched */
	bool all_matched;                    /* true even without a service host */
	char *from;                          /* the first address of F (malloc), or NULL */
};

void route_init(void);
int route_header_addrs(const char *value, size_t len, char ***addrs);
void route_addrs_free(char **addrs, int n);
char *route_ascii(const char *addr);
bool route_entry_matches(const struct config_domain *e, const char *addr_ascii);
/* The entry matching one address, or NULL. */
const struct config_domain *route_match(const struct config *cfg, const char *addr);
void route_decide(const struct config *cfg, const char *envelope_from, const char *header_from,
                  size_t header_from_len, unsigned n_from_fields, struct route_decision *out);
void route_decision_free(struct route_decision *d);
const char *route_name(enum route_kind r);

#endif
