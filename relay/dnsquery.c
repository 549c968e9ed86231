/*
 * dnsquery - blocking DNS queries for the record checks. See dnsquery.h.
 *
 * c-ares parses TXT, MX, A and AAAA answers; CNAME has no parser of its
 * own in c-ares 1.18, so the answer section is walked here with
 * ares_expand_name() (which handles compression and bounds).
 */
#include "relay/dnsquery.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>

#define DNSQ_TRIES 2
#define DNSQ_TXT_MAX 4096       /* one TXT record, joined; far above any SPF/DKIM/DMARC */

struct dnsq {
	ares_channel ch;
};

struct pending {
	bool done;
	enum dnsq_type type;
	struct dnsq_answer *ans;
};

const char *dnsq_type_name(enum dnsq_type type)
{
	switch (type) {
	case DNSQ_A: return "A";
	case DNSQ_AAAA: return "AAAA";
	case DNSQ_MX: return "MX";
	case DNSQ_TXT: return "TXT";
	case DNSQ_CNAME: return "CNAME";
	}
	return "?";
}

void dnsq_answer_free(struct dnsq_answer *ans)
{
	for (size_t i = 0; i < ans->n; i++)
		free(ans->rec[i]);
	ans->n = 0;
}

static void add(struct dnsq_answer *ans, const char *s, size_t n)
{
	if (ans->n >= DNSQ_MAX_RECORDS)
		return;
	char *r = malloc(n + 1);
	if (!r)
		return;
	memcpy(r, s, n);
	r[n] = '\0';
	ans->rec[ans->n++] = r;
}

/* Host names: lower case, no final dot ("." stays for the null MX). */
static void add_host(struct dnsq_answer *ans, const char *prefix, const char *host)
{
	char b[300];
	size_t n = strlen(host);
	if (n > 1 && host[n - 1] == '.')
		n--;
	if (n > 255)
		return;
	if (n == 0) {
		host = ".";
		n = 1;
	}
	int l = snprintf(b, sizeof(b), "%s%.*s", prefix, (int)n, host);
	for (int i = 0; i < l; i++)
		b[i] = (char)tolower((unsigned char)b[i]);
	add(ans, b, (size_t)l);
}

static void parse_cname(const unsigned char *buf, size_t len, struct dnsq_answer *ans)
{
	if (len < 12 || len > INT_MAX)
		return;
	unsigned qd = (unsigned)buf[4] << 8 | buf[5], an = (unsigned)buf[6] << 8 | buf[7];
	const unsigned char *p = buf + 12, *end = buf + len;
	char *name;
	long el;

	for (unsigned i = 0; i < qd; i++) {
		if (ares_expand_name(p, buf, (int)len, &name, &el) != ARES_SUCCESS)
			return;
		ares_free_string(name);
		if (el < 0 || end - p < el + 4)
			return;
		p += el + 4;
	}
	for (unsigned i = 0; i < an; i++) {
		if (ares_expand_name(p, buf, (int)len, &name, &el) != ARES_SUCCESS)
			return;
		ares_free_string(name);
		if (el < 0 || end - p < el + 10)
			return;
		p += el;
		unsigned type = (unsigned)p[0] << 8 | p[1];
		unsigned rdlen = (unsigned)p[8] << 8 | p[9];
		p += 10;
		if ((size_t)(end - p) < rdlen)
			return;
		if (type == DNSQ_CNAME) {
			if (ares_expand_name(p, buf, (int)len, &name, &el) != ARES_SUCCESS)
				return;
			add_host(ans, "", name);
			ares_free_string(name);
		}
		p += rdlen;
	}
}

void dnsq_parse(const unsigned char *buf, size_t len, enum dnsq_type type, struct dnsq_answer *ans)
{
	memset(ans, 0, sizeof(*ans));
	if (len < 12 || len > 65535) {
		ans->status = DNSQ_TEMPFAIL;
		snprintf(ans->error, sizeof(ans->error), "a malformed DNS answer");
		return;
	}
	switch (buf[3] & 15) {
	case 0:
		break;
	case 3:
		ans->status = DNSQ_NXDOMAIN;
		return;
	default:
		ans->status = DNSQ_TEMPFAIL;
		snprintf(ans->error, sizeof(ans->error), "the DNS server answered RCODE %u%s",
		         buf[3] & 15u, (buf[3] & 15) == 2 ? " (SERVFAIL)" : (buf[3] & 15) == 5 ? " (REFUSED)" : "");
		return;
	}
	int alen = (int)len;
	switch (type) {
	case DNSQ_TXT: {
		struct ares_txt_ext *txt = NULL;
		if (ares_parse_txt_reply_ext(buf, alen, &txt) != ARES_SUCCESS)
			break;
		char *joined = malloc(DNSQ_TXT_MAX);
		size_t jl = 0;
		bool have = false;
		for (struct ares_txt_ext *t = txt; t && joined; t = t->next) {
			if (t->record_start && have) {
				add(ans, joined, jl);
				jl = 0;
			}
			have = true;
			size_t n = t->length < DNSQ_TXT_MAX - jl ? t->length : DNSQ_TXT_MAX - jl;
			memcpy(joined + jl, t->txt, n);
			jl += n;
		}
		if (have && joined)
			add(ans, joined, jl);
		free(joined);
		ares_free_data(txt);
		break;
	}
	case DNSQ_MX: {
		struct ares_mx_reply *mx = NULL;
		if (ares_parse_mx_reply(buf, alen, &mx) != ARES_SUCCESS)
			break;
		for (struct ares_mx_reply *m = mx; m; m = m->next) {
			char pref[16];
			snprintf(pref, sizeof(pref), "%u ", m->priority);
			add_host(ans, pref, m->host ? m->host : "");
		}
		ares_free_data(mx);
		break;
	}
	case DNSQ_A: {
		struct ares_addrttl t[DNSQ_MAX_RECORDS];
		int n = DNSQ_MAX_RECORDS;
		char a[INET6_ADDRSTRLEN];
		if (ares_parse_a_reply(buf, alen, NULL, t, &n) != ARES_SUCCESS)
			break;
		for (int i = 0; i < n; i++)
			if (inet_ntop(AF_INET, &t[i].ipaddr, a, sizeof(a)))
				add(ans, a, strlen(a));
		break;
	}
	case DNSQ_AAAA: {
		struct ares_addr6ttl t[DNSQ_MAX_RECORDS];
		int n = DNSQ_MAX_RECORDS;
		char a[INET6_ADDRSTRLEN];
		if (ares_parse_aaaa_reply(buf, alen, NULL, t, &n) != ARES_SUCCESS)
			break;
		for (int i = 0; i < n; i++)
			if (inet_ntop(AF_INET6, &t[i].ip6addr, a, sizeof(a)))
				add(ans, a, strlen(a));
		break;
	}
	case DNSQ_CNAME:
		parse_cname(buf, len, ans);
		break;
	}
	ans->status = ans->n ? DNSQ_OK : DNSQ_NODATA;
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct pending *p = arg;
	(void)timeouts;
	p->done = true;
	switch (status) {
	case ARES_SUCCESS:
		dnsq_parse(abuf, (size_t)alen, p->type, p->ans);
		return;
	case ARES_ENODATA:
		p->ans->status = DNSQ_NODATA;
		return;
	case ARES_ENOTFOUND:
		p->ans->status = DNSQ_NXDOMAIN;
		return;
	case ARES_ESERVFAIL:
		snprintf(p->ans->error, sizeof(p->ans->error), "the DNS server answered SERVFAIL");
		break;
	case ARES_EREFUSED:
		snprintf(p->ans->error, sizeof(p->ans->error), "the DNS server refused the query");
		break;
	case ARES_ETIMEOUT:
		snprintf(p->ans->error, sizeof(p->ans->error), "no answer from the DNS server (timeout)");
		break;
	default:
		snprintf(p->ans->error, sizeof(p->ans->error), "DNS: %s", ares_strerror(status));
		break;
	}
	p->ans->status = DNSQ_TEMPFAIL;
}

int dnsq_open(char *const *servers, size_t nservers, uint64_t timeout_ms, struct dnsq **out,
              char *err, size_t errlen)
{
	struct ares_options o;
	struct dnsq *q;
	int st;

	*out = NULL;
	if ((st = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
		return -1;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memset(&o, 0, sizeof(o));
	/* A SERVFAIL is reported as such, not hidden behind the next server. */
	o.flags = ARES_FLAG_NOCHECKRESP;
	o.timeout = timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
	o.tries = DNSQ_TRIES;
	o.domains = NULL;
	o.ndomains = 0;      /* no search list: every name is fully qualified */
	st = ares_init_options(&q->ch, &o, ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	                       ARES_OPT_DOMAINS);
	if (st != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
		free(q);
		return -1;
	}
	if (nservers) {
		size_t len = 1;
		for (size_t i = 0; i < nservers; i++)
			len += strlen(servers[i]) + 1;
		char *csv = calloc(1, len);
		for (size_t i = 0; csv && i < nservers; i++) {
			if (i)
				strcat(csv, ",");
			strcat(csv, servers[i]);
		}
		st = csv ? ares_set_servers_ports_csv(q->ch, csv) : ARES_ENOMEM;
		free(csv);
		if (st != ARES_SUCCESS) {
			snprintf(err, errlen, "dns_servers: %s", ares_strerror(st));
			dnsq_close(q);
			return -1;
		}
	}
	*out = q;
	return 0;
}

void dnsq_close(struct dnsq *q)
{
	if (!q)
		return;
	ares_destroy(q->ch);
	free(q);
}

void dnsq_lookup(struct dnsq *q, const char *name, enum dnsq_type type, struct dnsq_answer *ans)
{
	struct pending p = { false, type, ans };

	memset(ans, 0, sizeof(*ans));
	ares_query(q->ch, name, 1 /* IN */, (int)type, on_answer, &p);
	while (!p.done) {
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		struct pollfd pfd[ARES_GETSOCK_MAXNUM];
		int bits = ares_getsock(q->ch, socks, ARES_GETSOCK_MAXNUM), n = 0;
		for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = 0;
			/* c-ares's ARES_GETSOCK_WRITABLE() shifts 1 into the sign bit
			 * for the last socket (UBSan): test the bits unsigned. */
			if (((unsigned)bits >> i) & 1u)
				ev |= POLLIN;
			if (((unsigned)bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u)
				ev |= POLLOUT;
			if (ev)
				pfd[n++] = (struct pollfd){ .fd = socks[i], .events = ev };
		}
		struct timeval tv, *tvp = ares_timeout(q->ch, NULL, &tv);
		int ms = tvp ? (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) + 1 : 1000;
		int r = poll(pfd, (nfds_t)n, ms);
		if (r <= 0) {
			ares_process_fd(q->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
			continue;
		}
		for (int i = 0; i < n; i++)
			ares_process_fd(q->ch,
			                pfd[i].revents & (POLLIN | POLLERR | POLLHUP) ? pfd[i].fd : ARES_SOCKET_BAD,
			                pfd[i].revents & POLLOUT ? pfd[i].fd : ARES_SOCKET_BAD);
	}
}
