/*
 * NAME
 *	dns - asynchronous MX and address lookups (c-ares on the libuv loop)
 * SUMMARY
 *	c-ares does the DNS work; its sockets are watched with uv_poll and its
 *	timeouts with a uv_timer, so no lookup ever blocks the loop.
 * DESCRIPTION
 *	dns_resolver_new() makes a resolver using servers ("127.0.0.1:5353",
 *	"[::1]:53"; none: the system's /etc/resolv.conf), each query given
 *	timeout_ms per try. dns_resolver_free() cancels what is pending (their
 *	callbacks run with DNS_TEMPFAIL) and closes its handles.
 *
 *	dns_lookup_mx() finds where mail for a domain (A-label form) goes
 *	(RFC 5321 §5.1): the MX records in preference order, equal
 *	preferences in random order, each host with its IPv4 and IPv6
 *	addresses (port 0: the caller sets it); no MX record but an A/AAAA
 *	record: the domain itself (implicit MX); a single MX "." (RFC 7505):
 *	DNS_NULL_MX; the domain does not exist, or has neither MX nor
 *	address: DNS_NOTFOUND; SERVFAIL, REFUSED, timeouts: DNS_TEMPFAIL.
 *	An MX host whose addresses cannot be found is left out; if none is
 *	left the result is DNS_TEMPFAIL (or DNS_NOTFOUND when every host
 *	name does not exist).
 *
 *	dns_lookup_host() finds the addresses of one host name (A and AAAA),
 *	or parses an IP literal at once.
 *
 *	dns_mx_order() sorts hosts by preference, shuffling equal ones with
 *	rand_fn (exposed for tests).
 * TOUCHES
 *	UDP/TCP sockets to the DNS servers.
 */
#ifndef HK_RELAY_DNS_H
#define HK_RELAY_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

enum dns_status { DNS_OK = 0, DNS_NOTFOUND, DNS_NULL_MX, DNS_TEMPFAIL };

struct dns_host {
	char *name;
	unsigned pref;
	struct sockaddr_storage *addrs;
	size_t naddrs;
};

struct dns_result {
	enum dns_status status;
	struct dns_host *hosts;  /* MX hosts in the order to try, or the one host */
	size_t nhosts;
	int implicit;            /* no MX: the domain's own address */
	char error[160];         /* why, for logs and DSNs, when status != DNS_OK */
};

struct dns_resolver;
typedef void (*dns_cb)(void *arg, struct dns_result *res); /* res freed by the callee after return */

int dns_resolver_new(uv_loop_t *loop, char *const *servers, size_t nservers,
                     uint64_t timeout_ms, struct dns_resolver **out);
void dns_resolver_free(struct dns_resolver *r);
int dns_lookup_mx(struct dns_resolver *r, const char *domain, dns_cb cb, void *arg);
int dns_lookup_host(struct dns_resolver *r, const char *name, dns_cb cb, void *arg);
void dns_mx_order(struct dns_host *hosts, size_t n, unsigned (*rand_fn)(void *), void *rand_arg);
const char *dns_status_name(enum dns_status s);

#endif
