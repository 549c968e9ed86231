/*
 * NAME
 *	dnsquery - blocking DNS queries for the record checks (hikyakuctl)
 * SUMMARY
 *	One query at a time over c-ares, waiting with poll(): for a command
 *	line tool (hikyakuctl domain check), never for the daemon's loop,
 *	which has relay/dns.h.
 * DESCRIPTION
 *	dnsq_open() makes a resolver using servers ("127.0.0.1:5353",
 *	"[::1]:53"; none: /etc/resolv.conf), each try waiting timeout_ms.
 *	dnsq_close() frees it.
 *
 *	dnsq_lookup() asks one name for one type and fills *ans: status
 *	DNSQ_OK with the records (at least one), DNSQ_NODATA (the name
 *	exists without that type), DNSQ_NXDOMAIN, or DNSQ_TEMPFAIL with the
 *	reason in ans->error (SERVFAIL, REFUSED, timeout). The records are
 *	text: A and AAAA the address, MX "PREF HOST" ("0 ." for a null MX),
 *	CNAME the target, TXT the record's strings joined (RFC 7208 §3.3,
 *	RFC 6376 §3.6.2.2); host names lower case without the final dot.
 *	dnsq_answer_free() releases the records.
 *
 *	dnsq_parse() reads an answer message (from the wire, or a fuzzer)
 *	for type into *ans the same way; it is what dnsq_lookup() uses.
 * DIAGNOSTICS
 *	dnsq_open() returns 0 or -1 with the reason in err.
 * TOUCHES
 *	UDP/TCP sockets to the DNS servers; blocks the calling thread for at
 *	most the timeout times the tries per query.
 */
#ifndef HK_RELAY_DNSQUERY_H
#define HK_RELAY_DNSQUERY_H

#include <stddef.h>
#include <stdint.h>

enum dnsq_type { DNSQ_A = 1, DNSQ_CNAME = 5, DNSQ_MX = 15, DNSQ_TXT = 16, DNSQ_AAAA = 28 };
enum dnsq_status { DNSQ_OK, DNSQ_NODATA, DNSQ_NXDOMAIN, DNSQ_TEMPFAIL };

#define DNSQ_MAX_RECORDS 64

struct dnsq_answer {
	enum dnsq_status status;
	char *rec[DNSQ_MAX_RECORDS];
	size_t n;
	char error[128];
};

struct dnsq;

int dnsq_open(char *const *servers, size_t nservers, uint64_t timeout_ms, struct dnsq **out,
              char *err, size_t errlen);
void dnsq_close(struct dnsq *q);
void dnsq_lookup(struct dnsq *q, const char *name, enum dnsq_type type, struct dnsq_answer *ans);
void dnsq_parse(const unsigned char *buf, size_t len, enum dnsq_type type, struct dnsq_answer *ans);
void dnsq_answer_free(struct dnsq_answer *ans);
const char *dnsq_type_name(enum dnsq_type type);

#endif
