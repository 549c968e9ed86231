/*
 * dns - MX and address lookups with c-ares on the libuv loop. See dns.h
 * for the contract.
 *
 * How c-ares meets libuv: c-ares tells us through its socket-state
 * callback which sockets it wants watched and for what; each such socket
 * gets a uv_poll_t, and readiness is handed back with ares_process_fd().
 * c-ares' retransmissions and timeouts are driven by one uv_timer_t,
 * re-armed from ares_timeout() after every call into c-ares. Nothing on
 * the loop ever blocks on the network (no getaddrinfo(3)).
 *
 * Ownership and callbacks: a lookup returns 0 and later calls its
 * callback exactly once, or returns a negative libuv error code and never
 * calls it. The callback never runs from inside dns_lookup_*() nor from
 * inside c-ares: finished lookups wait on a queue that a uv_idle_t drains
 * on the next loop turn, so a callback may start new lookups or free the
 * resolver. The struct dns_result given to the callback belongs to this
 * module and is freed as soon as the callback returns: copy what you keep.
 *
 * dns_resolver_free() cancels what is in flight (those callbacks run
 * inside it, with DNS_TEMPFAIL "cancelled"), delivers lookups that had
 * already finished, destroys the channel and closes the handles; the
 * struct itself goes when the last handle's close callback has run, so
 * the loop must be run after it for the memory to be released.
 *
 * Why one file of about 1,000 lines: the lookups (addresses, MX, the
 * implicit MX), their completion queue and the c-ares/libuv glue all
 * work on one struct dns_resolver and one life cycle of a lookup, which
 * the ownership rules above describe as a whole; the one pure part, the
 * MX order of RFC 5321 §5.1 (dns_mx_order()), is public and unit-tested
 * (tests/unit/test_dns.c) where it is.
 */
#include "relay/dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

/* Bounds on what one answer may make us hold and try. */
#define DNS_MAX_MX 20
#define DNS_MAX_ADDRS 16

/* Per-try timeout when the caller gives none, and tries per query. */
#define DNS_DEFAULT_TIMEOUT_MS 5000
#define DNS_TRIES 2

/* Longest name we send: 253 octets, plus an optional final dot. */
#define DNS_NAME_MAX 254

/* One socket c-ares asked us to watch. */
struct dns_poll {
	uv_poll_t h;
	struct dns_resolver *r;
	ares_socket_t fd;
	int events;
	struct dns_poll *next;  /* in r->polls while not closing */
};

struct dns_resolver {
	uv_loop_t *loop;
	ares_channel ch;         /* NULL once destroyed */
	uv_timer_t timer;        /* c-ares timeouts */
	uv_idle_t idle;          /* delivers finished lookups */
	/*
	 * Only the polls that are not closing: c-ares may close a socket
	 * and open another with the same number in one ares_process_fd(),
	 * and a closing handle must be neither found nor reused for it.
	 */
	struct dns_poll *polls;
	struct dns_lookup *done_head, **done_tail;
	size_t ndone;
	unsigned open_handles;   /* timer, idle and every poll not yet closed */
	int closing;
};

enum dns_kind { DNS_KIND_MX, DNS_KIND_HOST };

/* What the outstanding queries of a lookup are for. */
enum dns_stage { DNS_STAGE_MX, DNS_STAGE_ADDRS, DNS_STAGE_DONE };

/* The A and AAAA answers for one host of a lookup. */
struct dns_addrq {
	struct dns_lookup *lk;
	struct in_addr v4[DNS_MAX_ADDRS];
	struct in6_addr v6[DNS_MAX_ADDRS];
	int n4, n6;
	int st4, st6;            /* ARES_* status of each query */
};

struct dns_lookup {
	struct dns_resolver *r;
	struct dns_lookup *next; /* in r->done_head once finished */
	dns_cb cb;
	void *arg;
	enum dns_kind kind;
	enum dns_stage stage;
	char *name;
	int pending;             /* outstanding c-ares queries, plus holds */
	int cancelled;           /* a query ended by ares_cancel/ares_destroy */
	struct dns_addrq *aq;    /* in stage ADDRS: one per res->hosts[] */
	struct dns_result *res;
};

static pthread_once_t dns_lib_once = PTHREAD_ONCE_INIT;
static int dns_lib_status = ARES_ENOTINITIALIZED;

static void dns_lib_init(void)
{
	/* Once per process, never cleaned up: other resolvers may live on. */
	dns_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

const char *dns_status_name(enum dns_status s)
{
	switch (s) {
	case DNS_OK:
		return "ok";
	case DNS_NOTFOUND:
		return "notfound";
	case DNS_NULL_MX:
		return "null_mx";
	case DNS_TEMPFAIL:
		return "tempfail";
	}
	return "unknown";
}

/* Words for the log and the DSN; the RCODE names are what admins grep. */
static const char *dns_ares_reason(int status)
{
	switch (status) {
	case ARES_ESERVFAIL:
		return "SERVFAIL";
	case ARES_EREFUSED:
		return "REFUSED";
	case ARES_EFORMERR:
		return "FORMERR";
	case ARES_ENOTIMP:
		return "NOTIMP";
	case ARES_ETIMEOUT:
		return "timeout";
	case ARES_ECONNREFUSED:
		/* also: every server answered SERVFAIL or REFUSED, see dns_resolver_new() */
		return "no DNS server answered (connection refused, SERVFAIL or REFUSED)";
	case ARES_ECANCELLED:
	case ARES_EDESTRUCTION:
		return "cancelled";
	case ARES_EBADRESP:
		return "malformed response";
	case ARES_ENOMEM:
		return "out of memory";
	default:
		return ares_strerror(status);
	}
}

/* The name has no record of the type asked for, or does not exist at all. */
static int dns_is_absent(int status)
{
	return status == ARES_ENOTFOUND || status == ARES_ENODATA;
}

static int dns_is_cancel(int status)
{
	return status == ARES_ECANCELLED || status == ARES_EDESTRUCTION;
}

static void dns_result_free(struct dns_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->nhosts; i++) {
		free(res->hosts[i].name);
		free(res->hosts[i].addrs);
	}
	free(res->hosts);
	free(res);
}

static void dns_lookup_free(struct dns_lookup *lk)
{
	dns_result_free(lk->res);
	free(lk->aq);
	free(lk->name);
	free(lk);
}

static void dns_fail(struct dns_result *res, enum dns_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sets a failure, dropping whatever hosts were gathered. */
static void dns_fail(struct dns_result *res, enum dns_status st, const char *fmt, ...)
{
	va_list ap;

	for (size_t i = 0; i < res->nhosts; i++) {
		free(res->hosts[i].name);
		free(res->hosts[i].addrs);
	}
	free(res->hosts);
	res->hosts = NULL;
	res->nhosts = 0;
	res->status = st;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
}

/* ---- lookups: completion and delivery ---------------------------------- */

static void dns_idle_cb(uv_idle_t *h);

/* Queues a finished lookup; its callback runs on a later loop turn. */
static void dns_finish(struct dns_lookup *lk)
{
	struct dns_resolver *r = lk->r;

	lk->stage = DNS_STAGE_DONE;
	lk->next = NULL;
	*r->done_tail = lk;
	r->done_tail = &lk->next;
	r->ndone++;
	/* While closing, dns_resolver_free() delivers the queue itself. */
	if (!r->closing)
		uv_idle_start(&r->idle, dns_idle_cb);
}

static void dns_deliver_one(struct dns_resolver *r)
{
	struct dns_lookup *lk = r->done_head;

	r->done_head = lk->next;
	if (!r->done_head)
		r->done_tail = &r->done_head;
	r->ndone--;
	lk->cb(lk->arg, lk->res);
	dns_lookup_free(lk);
}

static void dns_idle_cb(uv_idle_t *h)
{
	struct dns_resolver *r = h->data;
	/*
	 * Only what was queued before this turn: a callback that starts a
	 * literal lookup (finished at once) must not keep us here, starving
	 * the sockets.
	 */
	size_t n = r->ndone;

	while (n-- > 0 && r->done_head && !r->closing)
		dns_deliver_one(r);
	if (!r->closing && !r->done_head)
		uv_idle_stop(&r->idle);
}

/*
 * Interleaves the families, IPv4 first (RFC 8305 §4): a host whose IPv6
 * (or IPv4) route is broken then costs the caller one failed connect
 * before the other family is tried, not every address it has.
 */
static int dns_host_addrs(struct dns_host *h, const struct dns_addrq *q)
{
	size_t n = (size_t)q->n4 + (size_t)q->n6;
	int i4 = 0, i6 = 0;

	if (n > DNS_MAX_ADDRS)
		n = DNS_MAX_ADDRS;
	h->naddrs = 0;
	if (n == 0)
		return 0;
	h->addrs = calloc(n, sizeof(*h->addrs));
	if (!h->addrs)
		return -1;
	for (size_t k = 0; k < n; k++) {
		if (i4 < q->n4 && (k % 2 == 0 || i6 >= q->n6)) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&h->addrs[k];
			sin->sin_family = AF_INET;
			sin->sin_addr = q->v4[i4++];
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&h->addrs[k];
			sin6->sin6_family = AF_INET6;
			sin6->sin6_addr = q->v6[i6++];
		}
	}
	h->naddrs = n;
	return 0;
}

/*
 * All address queries of the lookup have answered: keep the hosts that
 * have addresses, in order, and say why when none has.
 */
static void dns_collect(struct dns_lookup *lk)
{
	struct dns_result *res = lk->res;
	size_t kept = 0;
	int temp = ARES_SUCCESS;
	char temp_host[DNS_NAME_MAX + 1] = "";

	for (size_t i = 0; i < res->nhosts; i++) {
		struct dns_host h = res->hosts[i];
		const struct dns_addrq *q = &lk->aq[i];

		if (dns_host_addrs(&h, q) < 0 && temp == ARES_SUCCESS) {
			temp = ARES_ENOMEM;
			snprintf(temp_host, sizeof(temp_host), "%s", h.name);
		}
		if (h.naddrs == 0) {
			int st = !dns_is_absent(q->st4) ? q->st4 : q->st6;

			if (!dns_is_absent(st) && temp == ARES_SUCCESS) {
				temp = st;
				snprintf(temp_host, sizeof(temp_host), "%s", h.name);
			}
			free(h.name);
			free(h.addrs);
			continue;
		}
		res->hosts[kept++] = h;
	}
	res->nhosts = kept;
	if (kept > 0) {
		res->status = DNS_OK;
		return;
	}
	if (temp != ARES_SUCCESS) {
		if (lk->kind == DNS_KIND_MX && !res->implicit)
			dns_fail(res, DNS_TEMPFAIL, "DNS lookup of the address of MX host %s for %s failed: %s",
			         temp_host, lk->name, dns_ares_reason(temp));
		else
			dns_fail(res, DNS_TEMPFAIL, "DNS lookup of the address of %s failed: %s",
			         lk->name, dns_ares_reason(temp));
	} else if (lk->kind == DNS_KIND_HOST) {
		dns_fail(res, DNS_NOTFOUND, "DNS lookup of the address of %s: host not found", lk->name);
	} else if (res->implicit) {
		dns_fail(res, DNS_NOTFOUND, "DNS lookup of MX for %s: no MX and no address record", lk->name);
	} else {
		dns_fail(res, DNS_NOTFOUND, "DNS lookup of MX for %s: no MX host has an address", lk->name);
	}
}

/* The last outstanding query of the lookup has answered. */
static void dns_complete(struct dns_lookup *lk)
{
	if (lk->cancelled)
		dns_fail(lk->res, DNS_TEMPFAIL, "DNS lookup of %s for %s failed: cancelled",
		         lk->kind == DNS_KIND_MX ? "MX" : "the address", lk->name);
	else if (lk->stage == DNS_STAGE_ADDRS)
		dns_collect(lk);
	/* else the MX answer itself settled it (failure or null MX) */
	dns_finish(lk);
}

/*
 * pending counts the outstanding queries plus one "hold" while a callback
 * or dns_lookup_*() is starting more: c-ares may answer a query inside
 * ares_query() itself (a bad name, no memory, no usable server), and the
 * lookup must not complete before all of its queries are sent.
 */
static void dns_release(struct dns_lookup *lk)
{
	if (--lk->pending == 0)
		dns_complete(lk);
}

static void dns_query(struct dns_lookup *lk, const char *name, int type,
                      ares_callback cb, void *arg)
{
	struct dns_resolver *r = lk->r;

	if (r->closing || !r->ch) {
		lk->cancelled = 1;
		return;
	}
	lk->pending++;
	ares_query(r->ch, name, ns_c_in, type, cb, arg);
}

/* ---- address queries --------------------------------------------------- */

static void dns_a_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_addrq *q = arg;
	struct ares_addrttl t[DNS_MAX_ADDRS];
	int n = DNS_MAX_ADDRS;

	(void)timeouts;
	if (status == ARES_SUCCESS) {
		status = ares_parse_a_reply(abuf, alen, NULL, t, &n);
		if (status == ARES_SUCCESS && n <= 0)
			status = ARES_ENODATA;   /* only a CNAME, say */
	}
	if (status == ARES_SUCCESS) {
		for (int i = 0; i < n && i < DNS_MAX_ADDRS; i++)
			q->v4[q->n4++] = t[i].ipaddr;
	}
	if (dns_is_cancel(status))
		q->lk->cancelled = 1;
	q->st4 = status;
	dns_release(q->lk);
}

static void dns_aaaa_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_addrq *q = arg;
	struct ares_addr6ttl t[DNS_MAX_ADDRS];
	int n = DNS_MAX_ADDRS;

	(void)timeouts;
	if (status == ARES_SUCCESS) {
		status = ares_parse_aaaa_reply(abuf, alen, NULL, t, &n);
		if (status == ARES_SUCCESS && n <= 0)
			status = ARES_ENODATA;
	}
	if (status == ARES_SUCCESS) {
		for (int i = 0; i < n && i < DNS_MAX_ADDRS; i++)
			memcpy(&q->v6[q->n6++], &t[i].ip6addr, sizeof(struct in6_addr));
	}
	if (dns_is_cancel(status))
		q->lk->cancelled = 1;
	q->st6 = status;
	dns_release(q->lk);
}

/* Asks A and AAAA for every host of res, in parallel. The caller holds. */
static void dns_start_addrs(struct dns_lookup *lk)
{
	struct dns_result *res = lk->res;

	lk->aq = calloc(res->nhosts, sizeof(*lk->aq));
	if (!lk->aq) {
		dns_fail(res, DNS_TEMPFAIL, "DNS lookup of the address of %s failed: out of memory",
		         lk->name);
		return;
	}
	lk->stage = DNS_STAGE_ADDRS;
	for (size_t i = 0; i < res->nhosts; i++) {
		struct dns_addrq *q = &lk->aq[i];

		q->lk = lk;
		/* What a query that is never sent (resolver closing) reports. */
		q->st4 = q->st6 = ARES_ECANCELLED;
		dns_query(lk, res->hosts[i].name, ns_t_a, dns_a_cb, q);
		dns_query(lk, res->hosts[i].name, ns_t_aaaa, dns_aaaa_cb, q);
	}
}

/* A copy of name without its final dot, as it goes into results. */
static char *dns_name_dup(const char *name)
{
	size_t len = strlen(name);

	if (len > 0 && name[len - 1] == '.')
		len--;
	return strndup(name, len);
}

/* ---- MX ---------------------------------------------------------------- */

/* RFC 5321 §5.1: no MX record, so the domain itself is the host, pref 0. */
static void dns_implicit(struct dns_lookup *lk)
{
	struct dns_result *res = lk->res;

	res->hosts = calloc(1, sizeof(*res->hosts));
	if (!res->hosts || !(res->hosts[0].name = dns_name_dup(lk->name))) {
		dns_fail(res, DNS_TEMPFAIL, "DNS lookup of MX for %s failed: out of memory", lk->name);
		return;
	}
	res->nhosts = 1;
	res->implicit = 1;
	dns_start_addrs(lk);
}

static void dns_mx_hosts(struct dns_lookup *lk, const struct ares_mx_reply *mx)
{
	struct dns_result *res = lk->res;
	struct dns_host *hosts;
	size_t n = 0, nrec = 0;
	int saw_root = 0;

	for (const struct ares_mx_reply *m = mx; m; m = m->next)
		nrec++;
	hosts = calloc(nrec ? nrec : 1, sizeof(*hosts));
	if (!hosts)
		goto nomem;
	for (const struct ares_mx_reply *m = mx; m; m = m->next) {
		size_t len = strlen(m->host), i;

		if (len > 0 && m->host[len - 1] == '.')
			len--;
		if (len == 0) {
			saw_root = 1;
			continue;
		}
		/* One host under several preferences: keep the best. */
		for (i = 0; i < n; i++)
			if (strlen(hosts[i].name) == len && !strncasecmp(hosts[i].name, m->host, len))
				break;
		if (i < n) {
			if (m->priority < hosts[i].pref)
				hosts[i].pref = m->priority;
			continue;
		}
		hosts[n].name = strndup(m->host, len);
		if (!hosts[n].name)
			goto nomem;
		hosts[n].pref = m->priority;
		n++;
	}
	if (n == 0) {
		/*
		 * RFC 7505 §3: a null MX is the only MX of its domain, and its
		 * preference should be 0. Whatever the preference, an MX
		 * list with nothing but the root is a domain refusing mail:
		 * there is no host to try.
		 */
		free(hosts);
		if (saw_root)
			dns_fail(res, DNS_NULL_MX, "%s accepts no mail (null MX, RFC 7505)", lk->name);
		else
			dns_fail(res, DNS_NOTFOUND, "DNS lookup of MX for %s: no MX host", lk->name);
		return;
	}
	/*
	 * A "." beside real hosts breaks RFC 7505 §3; it names no host we
	 * could connect to, so it was skipped above and the others are used.
	 */
	dns_mx_order(hosts, n, NULL, NULL);
	while (n > DNS_MAX_MX)
		free(hosts[--n].name);
	res->hosts = hosts;
	res->nhosts = n;
	dns_start_addrs(lk);
	return;
nomem:
	if (hosts) {
		for (size_t i = 0; i < n; i++)
			free(hosts[i].name);
		free(hosts);
	}
	dns_fail(res, DNS_TEMPFAIL, "DNS lookup of MX for %s failed: out of memory", lk->name);
}

static void dns_mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_lookup *lk = arg;
	struct ares_mx_reply *mx = NULL;

	(void)timeouts;
	if (status == ARES_SUCCESS)
		status = ares_parse_mx_reply(abuf, alen, &mx);
	/* Hold: the address queries started below may answer at once. */
	lk->pending++;
	if (dns_is_cancel(status))
		lk->cancelled = 1;
	else if (status == ARES_SUCCESS)
		dns_mx_hosts(lk, mx);
	else if (status == ARES_ENODATA)
		dns_implicit(lk);
	else if (status == ARES_ENOTFOUND)
		dns_fail(lk->res, DNS_NOTFOUND, "DNS lookup of MX for %s: domain does not exist", lk->name);
	else if (status == ARES_EBADNAME)
		dns_fail(lk->res, DNS_NOTFOUND, "DNS lookup of MX for %s: not a valid domain name", lk->name);
	else
		dns_fail(lk->res, DNS_TEMPFAIL, "DNS lookup of MX for %s failed: %s",
		         lk->name, dns_ares_reason(status));
	if (mx)
		ares_free_data(mx);
	dns_release(lk);   /* the hold */
	dns_release(lk);   /* the MX query */
}

/* ---- ordering ---------------------------------------------------------- */

static unsigned dns_rand_default(void *arg)
{
	unsigned v;

	(void)arg;
	/* Never blocks once the kernel pool is ready; random() if it is not. */
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = (unsigned)random();
	return v;
}

static int dns_host_cmp(const void *a, const void *b)
{
	const struct dns_host *x = a, *y = b;

	return (x->pref > y->pref) - (x->pref < y->pref);
}

void dns_mx_order(struct dns_host *hosts, size_t n, unsigned (*rand_fn)(void *), void *rand_arg)
{
	if (n < 2)
		return;
	if (!rand_fn)
		rand_fn = dns_rand_default;
	qsort(hosts, n, sizeof(*hosts), dns_host_cmp);
	/*
	 * RFC 5321 §5.1: hosts of equal preference are tried in random
	 * order, which spreads the load. Fisher-Yates over each run.
	 */
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		while (j < n && hosts[j].pref == hosts[i].pref)
			j++;
		for (size_t k = j - 1; k > i; k--) {
			size_t m = i + rand_fn(rand_arg) % (k - i + 1);
			struct dns_host t = hosts[k];

			hosts[k] = hosts[m];
			hosts[m] = t;
		}
		i = j;
	}
}

/* ---- the loop side: c-ares sockets and timer ---------------------------- */

static void dns_handle_closed(uv_handle_t *h)
{
	struct dns_resolver *r = h->data;

	if (h->type == UV_POLL)
		free((struct dns_poll *)h);     /* h is its first member */
	if (--r->open_handles == 0 && r->closing)
		free(r);
}

static void dns_timer_cb(uv_timer_t *t);

/* After every call into c-ares: when does it next need to run? */
static void dns_rearm(struct dns_resolver *r)
{
	struct timeval tv, *tvp;
	uint64_t ms;

	if (!r->ch || r->closing)
		return;
	tvp = ares_timeout(r->ch, NULL, &tv);
	if (!tvp) {
		uv_timer_stop(&r->timer);
		return;
	}
	/* Rounded up: waking before the deadline would only spin. */
	ms = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
	uv_timer_start(&r->timer, dns_timer_cb, ms, 0);
}

static void dns_timer_cb(uv_timer_t *t)
{
	struct dns_resolver *r = t->data;

	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_rearm(r);
}

static void dns_poll_cb(uv_poll_t *h, int status, int events)
{
	struct dns_poll *p = (struct dns_poll *)h;
	struct dns_resolver *r = p->r;
	ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

	if (status < 0) {
		/*
		 * libuv turns POLLERR (an ICMP port unreachable on c-ares'
		 * connected UDP socket, say) into an error and stops the
		 * handle. Let c-ares read and write so that it meets the error
		 * itself and closes or retries; if it keeps the socket, watch
		 * it again below.
		 */
		rfd = wfd = p->fd;
	} else {
		if (events & UV_READABLE)
			rfd = p->fd;
		if (events & UV_WRITABLE)
			wfd = p->fd;
	}
	ares_process_fd(r->ch, rfd, wfd);
	/* p itself outlives a uv_close() made meanwhile: freed on close. */
	if (status < 0 && !uv_is_closing((uv_handle_t *)h) && p->events)
		uv_poll_start(h, p->events, dns_poll_cb);
	dns_rearm(r);
}

/*
 * c-ares: watch fd for reading and/or writing, or (neither) stop, just
 * before it closes the socket. Only polls not yet closing are searched,
 * so a socket number reused at once gets a fresh handle.
 */
static void dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_poll **pp, *p;
	int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);

	for (pp = &r->polls; (p = *pp) && p->fd != fd; pp = &p->next)
		;
	if (!events) {
		if (p) {
			*pp = p->next;
			p->events = 0;
			uv_close((uv_handle_t *)&p->h, dns_handle_closed);
		}
		return;
	}
	if (!p) {
		/*
		 * Failing here leaves the socket unwatched: its queries end
		 * by c-ares' timeout (DNS_TEMPFAIL), which is the right
		 * outcome for a resolver out of memory or descriptors.
		 */
		p = calloc(1, sizeof(*p));
		if (!p)
			return;
		if (uv_poll_init_socket(r->loop, &p->h, fd) < 0) {
			free(p);
			return;
		}
		p->h.data = r;
		p->r = r;
		p->fd = fd;
		p->next = r->polls;
		r->polls = p;
		r->open_handles++;
	}
	p->events = events;
	uv_poll_start(&p->h, events, dns_poll_cb);
}

/* ---- public ------------------------------------------------------------ */

static int dns_uv_error(int ares_status)
{
	switch (ares_status) {
	case ARES_ENOMEM:
		return UV_ENOMEM;
	case ARES_EBADSTR:
	case ARES_EBADFAMILY:
		return UV_EINVAL;
	default:
		return UV_EIO;
	}
}

/* "a:53,[b]:53" for ares_set_servers_ports_csv(). */
static int dns_servers_csv(char *const *servers, size_t n, char **out)
{
	size_t len = 1;
	char *csv, *p;

	for (size_t i = 0; i < n; i++) {
		if (!servers[i] || !servers[i][0] || strchr(servers[i], ','))
			return UV_EINVAL;
		len += strlen(servers[i]) + 1;
	}
	csv = p = malloc(len);
	if (!csv)
		return UV_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(servers[i]);

		if (i > 0)
			*p++ = ',';
		memcpy(p, servers[i], l);
		p += l;
	}
	*p = '\0';
	*out = csv;
	return 0;
}

/* How many servers the channel will ask. */
static size_t dns_count_servers(ares_channel ch)
{
	struct ares_addr_port_node *list = NULL;
	size_t n = 0;

	if (ares_get_servers_ports(ch, &list) != ARES_SUCCESS)
		return 0;
	for (struct ares_addr_port_node *s = list; s; s = s->next)
		n++;
	ares_free_data(list);
	return n;
}

static int dns_channel_new(struct dns_resolver *r, const char *csv, uint64_t timeout_ms,
                           int flags, ares_channel *out)
{
	struct ares_options o;
	ares_channel ch;
	int st;

	memset(&o, 0, sizeof(o));
	o.flags = flags;
	o.sock_state_cb = dns_sock_state_cb;
	o.sock_state_cb_data = r;
	o.timeout = timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
	o.tries = DNS_TRIES;
	/*
	 * No search domains: mail domains and MX hosts are fully qualified
	 * (RFC 5321 §2.3.5), and retrying a missing name under a local
	 * suffix could send mail to the wrong host.
	 */
	o.domains = NULL;
	o.ndomains = 0;
	st = ares_init_options(&ch, &o, ARES_OPT_FLAGS | ARES_OPT_SOCK_STATE_CB |
	                       ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_DOMAINS);
	if (st != ARES_SUCCESS)
		return dns_uv_error(st);
	if (csv && (st = ares_set_servers_ports_csv(ch, csv)) != ARES_SUCCESS) {
		ares_destroy(ch);
		return dns_uv_error(st);
	}
	*out = ch;
	return 0;
}

int dns_resolver_new(uv_loop_t *loop, char *const *servers, size_t nservers,
                     uint64_t timeout_ms, struct dns_resolver **out)
{
	struct dns_resolver *r;
	char *csv = NULL;
	int rc;

	*out = NULL;
	pthread_once(&dns_lib_once, dns_lib_init);
	if (dns_lib_status != ARES_SUCCESS)
		return UV_EIO;
	r = calloc(1, sizeof(*r));
	if (!r)
		return UV_ENOMEM;
	r->loop = loop;
	r->done_tail = &r->done_head;
	if (nservers > 0 && (rc = dns_servers_csv(servers, nservers, &csv)) < 0)
		goto fail_r;
	if (timeout_ms == 0)
		timeout_ms = DNS_DEFAULT_TIMEOUT_MS;

	rc = dns_channel_new(r, csv, timeout_ms, 0, &r->ch);
	if (rc < 0)
		goto fail_csv;
	/*
	 * c-ares 1.18 takes a SERVFAIL or REFUSED answer as a broken server:
	 * it moves on to the next one and, when none is left, reports
	 * ARES_ECONNREFUSED, so the log would say "connection refused" for
	 * a zone that is broken. With a single server there is nothing to
	 * move on to: let the answer through (ARES_FLAG_NOCHECKRESP) and
	 * report its RCODE. With several, failing over is worth more than
	 * the precise word.
	 */
	if (dns_count_servers(r->ch) == 1) {
		ares_destroy(r->ch);
		r->ch = NULL;
		rc = dns_channel_new(r, csv, timeout_ms, ARES_FLAG_NOCHECKRESP, &r->ch);
		if (rc < 0)
			goto fail_csv;
	}
	uv_timer_init(loop, &r->timer);
	uv_idle_init(loop, &r->idle);
	r->timer.data = r;
	r->idle.data = r;
	r->open_handles = 2;
	free(csv);
	*out = r;
	return 0;

fail_csv:
	free(csv);
fail_r:
	free(r);
	return rc;
}

void dns_resolver_free(struct dns_resolver *r)
{
	struct dns_poll *p;

	if (!r || r->closing)
		return;
	r->closing = 1;
	/*
	 * Every query's callback runs now with ARES_ECANCELLED, so every
	 * lookup in flight lands on the done queue as DNS_TEMPFAIL
	 * "cancelled"; ares_destroy() then closes the sockets, which
	 * closes their polls through dns_sock_state_cb().
	 */
	ares_cancel(r->ch);
	ares_destroy(r->ch);
	r->ch = NULL;
	/* Callbacks here may call dns_lookup_*() (refused) or this (ignored). */
	while (r->done_head)
		dns_deliver_one(r);
	while ((p = r->polls)) {
		r->polls = p->next;
		uv_close((uv_handle_t *)&p->h, dns_handle_closed);
	}
	uv_close((uv_handle_t *)&r->timer, dns_handle_closed);
	uv_close((uv_handle_t *)&r->idle, dns_handle_closed);
}

static int dns_lookup_new(struct dns_resolver *r, enum dns_kind kind, const char *name,
                          dns_cb cb, void *arg, struct dns_lookup **out)
{
	struct dns_lookup *lk;
	size_t len;

	if (!r || !name || !cb)
		return UV_EINVAL;
	if (r->closing)
		return UV_ECANCELED;
	len = strlen(name);
	if (len == 0 || len > DNS_NAME_MAX || !strcmp(name, "."))
		return UV_EINVAL;
	lk = calloc(1, sizeof(*lk));
	if (!lk)
		return UV_ENOMEM;
	lk->r = r;
	lk->cb = cb;
	lk->arg = arg;
	lk->kind = kind;
	lk->stage = DNS_STAGE_MX;
	lk->name = strdup(name);
	lk->res = calloc(1, sizeof(*lk->res));
	if (!lk->name || !lk->res) {
		dns_lookup_free(lk);
		return UV_ENOMEM;
	}
	*out = lk;
	return 0;
}

int dns_lookup_mx(struct dns_resolver *r, const char *domain, dns_cb cb, void *arg)
{
	struct dns_lookup *lk;
	int rc = dns_lookup_new(r, DNS_KIND_MX, domain, cb, arg, &lk);

	if (rc < 0)
		return rc;
	lk->pending = 1;   /* hold */
	dns_query(lk, domain, ns_t_mx, dns_mx_cb, lk);
	dns_release(lk);
	dns_rearm(r);
	return 0;
}

int dns_lookup_host(struct dns_resolver *r, const char *name, dns_cb cb, void *arg)
{
	struct dns_lookup *lk;
	struct dns_result *res;
	struct in_addr a4;
	struct in6_addr a6;
	int rc = dns_lookup_new(r, DNS_KIND_HOST, name, cb, arg, &lk);

	if (rc < 0)
		return rc;
	res = lk->res;
	res->hosts = calloc(1, sizeof(*res->hosts));
	if (!res->hosts || !(res->hosts[0].name = dns_name_dup(name))) {
		dns_lookup_free(lk);
		return UV_ENOMEM;
	}
	res->nhosts = 1;

	if (inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1) {
		struct dns_host *h = &res->hosts[0];

		h->addrs = calloc(1, sizeof(*h->addrs));
		if (!h->addrs) {
			dns_lookup_free(lk);
			return UV_ENOMEM;
		}
		h->naddrs = 1;
		if (strchr(name, ':')) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)h->addrs;
			sin6->sin6_family = AF_INET6;
			sin6->sin6_addr = a6;
		} else {
			struct sockaddr_in *sin = (struct sockaddr_in *)h->addrs;
			sin->sin_family = AF_INET;
			sin->sin_addr = a4;
		}
		res->status = DNS_OK;
		dns_finish(lk);   /* delivered on the next loop turn */
		return 0;
	}

	lk->pending = 1;   /* hold */
	dns_start_addrs(lk);
	dns_release(lk);
	dns_rearm(r);
	return 0;
}
