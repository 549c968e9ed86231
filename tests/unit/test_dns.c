/*
 * test_dns - the resolver (relay/dns.h) against a real DNS server: the
 * suite starts dnsmasq on a free port of 127.0.0.1 (and ::1 when the host
 * has it) serving the zone built in dnsmasq_start(), and kills it at the
 * end. Callbacks copy their results; the assertions run after the loop.
 *
 * How each case is made:
 *	MX order	mx.test: MX 10 mx1.mx.test, MX 20 mx2.mx.test
 *	null MX		--mx-host=nullmx.test,.,0 (RDATA 0000 00)
 *	implicit MX	implicit.test has only A and AAAA
 *	NXDOMAIN	--local=/test/: every unknown name under .test
 *	no records	empty.test has only a TXT record
 *	REFUSED		any name outside .test (--no-resolv: no upstream)
 *	timeout		a UDP socket of ours that never answers
 *	conn refused	a UDP port nobody listens on
 *	cancel mid-way	slow.test's MX host lives under bh.test, which dnsmasq
 *			forwards (--server=/bh.test/...) to that silent socket
 *	TCP fallback	big.test has 25 MX records: the UDP answer is truncated
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "relay/dns.h"

#define DNSMASQ "/usr/sbin/dnsmasq"
#define MAX_ARGS 128

/* ---- the DNS server, one for the whole suite --------------------------- */

static pid_t dnsmasq_pid = -1;
static unsigned dns_port;
static int blackhole_fd = -1;     /* bound, never read: queries to it time out */
static unsigned blackhole_port;
static int have_v6;

static char server_v4[64], server_v6[64], server_silent[64], server_dead[64];

/* A UDP socket bound to a free port of addr; its port in *port. */
static int udp_bind(int family, unsigned *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

/* A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both). */
static unsigned free_port(void)
{
	for (int tries = 0; tries < 50; tries++) {
		unsigned port;
		int u = udp_bind(AF_INET, &port), t;
		struct sockaddr_in sin = { .sin_family = AF_INET,
		                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
		                           .sin_port = htons((uint16_t)port) };

		if (u < 0)
			continue;
		t = socket(AF_INET, SOCK_STREAM, 0);
		int ok = t >= 0 && bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		if (t >= 0)
			close(t);
		close(u);
		if (ok)
			return port;
	}
	return 0;
}

/* Sends one A query for mx1.mx.test and waits briefly for any answer. */
static int dns_answers(unsigned port)
{
	static const unsigned char q[] = {
		0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'm', 'x', '1', 2, 'm', 'x', 4, 't', 'e', 's', 't', 0,
		0, 1, 0, 1,
	};
	struct sockaddr_in sin = { .sin_family = AF_INET,
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                           .sin_port = htons((uint16_t)port) };
	unsigned char buf[512];
	int fd = socket(AF_INET, SOCK_DGRAM, 0), ok = 0;

	if (fd < 0)
		return 0;
	if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sin, sizeof(sin)) == (ssize_t)sizeof(q)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 100) == 1 && recv(fd, buf, sizeof(buf), 0) > 12)
			ok = 1;
	}
	close(fd);
	return ok;
}

static void add_arg(char **argv, int *argc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add_arg(char **argv, int *argc, const char *fmt, ...)
{
	va_list ap;

	ck_assert_int_lt(*argc, MAX_ARGS - 1);
	va_start(ap, fmt);
	ck_assert_int_ge(vasprintf(&argv[(*argc)++], fmt, ap), 0);
	va_end(ap);
	argv[*argc] = NULL;
}

static pid_t dnsmasq_spawn(unsigned port)
{
	char *argv[MAX_ARGS];
	int argc = 0;
	pid_t pid;

	add_arg(argv, &argc, "%s", DNSMASQ);
	add_arg(argv, &argc, "--keep-in-foreground");
	add_arg(argv, &argc, "--no-resolv");
	add_arg(argv, &argc, "--no-hosts");
	add_arg(argv, &argc, "--conf-file=/dev/null");
	add_arg(argv, &argc, "--log-facility=/dev/null");
	add_arg(argv, &argc, "--pid-file");
	add_arg(argv, &argc, "--bind-interfaces");
	add_arg(argv, &argc, "--listen-address=127.0.0.1%s", have_v6 ? ",::1" : "");
	add_arg(argv, &argc, "--port=%u", port);
	if (geteuid() == 0)
		add_arg(argv, &argc, "--user=root");
	add_arg(argv, &argc, "--local=/test/");

	add_arg(argv, &argc, "--mx-host=mx.test,mx1.mx.test,10");
	add_arg(argv, &argc, "--mx-host=mx.test,mx2.mx.test,20");
	add_arg(argv, &argc, "--host-record=mx1.mx.test,127.0.0.2,::2");
	add_arg(argv, &argc, "--host-record=mx2.mx.test,127.0.0.3");

	add_arg(argv, &argc, "--mx-host=eq.test,a.eq.test,10");
	add_arg(argv, &argc, "--mx-host=eq.test,b.eq.test,10");
	add_arg(argv, &argc, "--mx-host=eq.test,c.eq.test,5");
	add_arg(argv, &argc, "--host-record=a.eq.test,127.0.1.1");
	add_arg(argv, &argc, "--host-record=b.eq.test,127.0.1.2");
	add_arg(argv, &argc, "--host-record=c.eq.test,127.0.1.3");

	/* the same host twice: dnsmasq keeps both records */
	add_arg(argv, &argc, "--mx-host=dup.test,mx1.mx.test,30");
	add_arg(argv, &argc, "--mx-host=dup.test,MX1.mx.test,10");
	add_arg(argv, &argc, "--mx-host=dup.test,mx2.mx.test,20");

	add_arg(argv, &argc, "--host-record=implicit.test,127.0.0.4,::4");
	add_arg(argv, &argc, "--mx-host=nullmx.test,.,0");
	add_arg(argv, &argc, "--txt-record=empty.test,nothing here");
	add_arg(argv, &argc, "--mx-host=dangling.test,nohost.dangling.test,10");
	add_arg(argv, &argc, "--mx-host=half.test,nohost.half.test,10");
	add_arg(argv, &argc, "--mx-host=half.test,mx2.mx.test,20");
	add_arg(argv, &argc, "--host-record=v6only.test,::5");

	/* 25 MX: more than a UDP answer holds, and more than we keep */
	for (int i = 1; i <= 25; i++)
		add_arg(argv, &argc, "--mx-host=big.test,h%d.big.test,%d", i, i);
	add_arg(argv, &argc, "--address=/big.test/127.0.3.1");
	/* 20 A records: more than we keep per host */
	for (int i = 1; i <= 20; i++)
		add_arg(argv, &argc, "--host-record=many.test,127.0.4.%d", i);

	add_arg(argv, &argc, "--mx-host=slow.test,host.bh.test,10");
	add_arg(argv, &argc, "--server=/bh.test/127.0.0.1#%u", blackhole_port);

	pid = fork();
	if (pid == 0) {
		/* Dies with the test runner, whatever kills it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(DNSMASQ, argv);
		_exit(127);
	}
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	return pid;
}

static void dnsmasq_start(void)
{
	unsigned port;
	int v6fd;

	ck_assert_msg(access(DNSMASQ, X_OK) == 0, "%s is needed for this test", DNSMASQ);
	v6fd = udp_bind(AF_INET6, &port);
	have_v6 = v6fd >= 0;
	if (v6fd >= 0)
		close(v6fd);
	blackhole_fd = udp_bind(AF_INET, &blackhole_port);
	ck_assert_int_ge(blackhole_fd, 0);

	/* A free port may be taken before dnsmasq binds it: then try another. */
	for (int attempt = 0; attempt < 5 && dnsmasq_pid < 0; attempt++) {
		pid_t pid;
		int status, up = 0;

		dns_port = free_port();
		ck_assert_uint_ne(dns_port, 0);
		pid = dnsmasq_spawn(dns_port);
		ck_assert_int_gt(pid, 0);
		for (int i = 0; i < 50 && !up; i++) {
			if (waitpid(pid, &status, WNOHANG) == pid) {
				pid = -1;
				break;
			}
			up = dns_answers(dns_port);
		}
		if (up) {
			dnsmasq_pid = pid;
		} else if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		}
	}
	ck_assert_msg(dnsmasq_pid > 0, "dnsmasq did not start");

	snprintf(server_v4, sizeof(server_v4), "127.0.0.1:%u", dns_port);
	snprintf(server_v6, sizeof(server_v6), "[::1]:%u", dns_port);
	snprintf(server_silent, sizeof(server_silent), "127.0.0.1:%u", blackhole_port);
	/* Nobody listens here once the probe socket is closed. */
	snprintf(server_dead, sizeof(server_dead), "127.0.0.1:%u", free_port());
}

static void dnsmasq_stop(void)
{
	int status;

	if (dnsmasq_pid > 0) {
		kill(dnsmasq_pid, SIGTERM);
		waitpid(dnsmasq_pid, &status, 0);
		dnsmasq_pid = -1;
	}
	if (blackhole_fd >= 0) {
		close(blackhole_fd);
		blackhole_fd = -1;
	}
}

/* ---- per test: a loop and a resolver on dnsmasq ------------------------ */

static uv_loop_t loop;
static struct dns_resolver *res;

static struct dns_resolver *resolver(const char *server, uint64_t timeout_ms)
{
	char *servers[1] = { (char *)server };
	struct dns_resolver *r = NULL;

	ck_assert_int_eq(dns_resolver_new(&loop, servers, 1, timeout_ms, &r), 0);
	ck_assert_ptr_nonnull(r);
	return r;
}

static void setup(void)
{
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	res = resolver(server_v4, 2000);
}

static void teardown(void)
{
	dns_resolver_free(res);
	res = NULL;
	uv_run(&loop, UV_RUN_DEFAULT);
	/* Every handle closed and the resolver gone: nothing keeps the loop. */
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* What a callback saw, copied out of the result it may not keep. */
#define GOT_HOSTS 24
struct got {
	int called;
	enum dns_status status;
	int implicit;
	size_t nhosts;
	char name[GOT_HOSTS][256];
	unsigned pref[GOT_HOSTS];
	size_t naddrs[GOT_HOSTS];
	char addr[GOT_HOSTS][16][INET6_ADDRSTRLEN];
	int port_nonzero;
	char error[160];
};

static void got_cb(void *arg, struct dns_result *r)
{
	struct got *g = arg;

	g->called++;
	g->status = r->status;
	g->implicit = r->implicit;
	g->nhosts = r->nhosts;
	snprintf(g->error, sizeof(g->error), "%s", r->error);
	for (size_t i = 0; i < r->nhosts && i < GOT_HOSTS; i++) {
		const struct dns_host *h = &r->hosts[i];

		snprintf(g->name[i], sizeof(g->name[i]), "%s", h->name);
		g->pref[i] = h->pref;
		g->naddrs[i] = h->naddrs;
		ck_assert_uint_le(h->naddrs, 16);
		for (size_t k = 0; k < h->naddrs; k++) {
			const struct sockaddr_storage *ss = &h->addrs[k];

			if (ss->ss_family == AF_INET) {
				const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
				inet_ntop(AF_INET, &sin->sin_addr, g->addr[i][k], INET6_ADDRSTRLEN);
				g->port_nonzero |= sin->sin_port != 0;
			} else {
				const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
				ck_assert_int_eq(ss->ss_family, AF_INET6);
				inet_ntop(AF_INET6, &sin6->sin6_addr, g->addr[i][k], INET6_ADDRSTRLEN);
				g->port_nonzero |= sin6->sin6_port != 0;
			}
		}
	}
}

static void run(void)
{
	uv_run(&loop, UV_RUN_DEFAULT);
}

static void lookup_mx(const char *domain, struct got *g)
{
	memset(g, 0, sizeof(*g));
	ck_assert_int_eq(dns_lookup_mx(res, domain, got_cb, g), 0);
	/* Never called from inside the call. */
	ck_assert_int_eq(g->called, 0);
	run();
	ck_assert_int_eq(g->called, 1);
}

static void lookup_host(const char *name, struct got *g)
{
	memset(g, 0, sizeof(*g));
	ck_assert_int_eq(dns_lookup_host(res, name, got_cb, g), 0);
	ck_assert_int_eq(g->called, 0);
	run();
	ck_assert_int_eq(g->called, 1);
}

/* ---- MX ---------------------------------------------------------------- */

START_TEST(test_mx_order)
{
	struct got g;

	lookup_mx("mx.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_int_eq(g.implicit, 0);
	ck_assert_uint_eq(g.nhosts, 2);
	ck_assert_str_eq(g.name[0], "mx1.mx.test");
	ck_assert_uint_eq(g.pref[0], 10);
	ck_assert_str_eq(g.name[1], "mx2.mx.test");
	ck_assert_uint_eq(g.pref[1], 20);
	/* IPv4 and IPv6, IPv4 first; the port is the caller's to set */
	ck_assert_uint_eq(g.naddrs[0], 2);
	ck_assert_str_eq(g.addr[0][0], "127.0.0.2");
	ck_assert_str_eq(g.addr[0][1], "::2");
	ck_assert_uint_eq(g.naddrs[1], 1);
	ck_assert_str_eq(g.addr[1][0], "127.0.0.3");
	ck_assert_int_eq(g.port_nonzero, 0);
}
END_TEST

/* A trailing dot names the same domain. */
START_TEST(test_mx_absolute)
{
	struct got g;

	lookup_mx("mx.test.", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.nhosts, 2);
	ck_assert_str_eq(g.name[0], "mx1.mx.test");
}
END_TEST

START_TEST(test_mx_equal_shuffled)
{
	int a_first = 0, b_first = 0;

	for (int i = 0; i < 24; i++) {
		struct got g;

		lookup_mx("eq.test", &g);
		ck_assert_int_eq(g.status, DNS_OK);
		ck_assert_uint_eq(g.nhosts, 3);
		ck_assert_str_eq(g.name[0], "c.eq.test");
		ck_assert_uint_eq(g.pref[1], 10);
		ck_assert_uint_eq(g.pref[2], 10);
		if (!strcmp(g.name[1], "a.eq.test")) {
			ck_assert_str_eq(g.name[2], "b.eq.test");
			a_first++;
		} else {
			ck_assert_str_eq(g.name[1], "b.eq.test");
			ck_assert_str_eq(g.name[2], "a.eq.test");
			b_first++;
		}
	}
	/* 2^-23 of a false alarm */
	ck_assert_int_gt(a_first, 0);
	ck_assert_int_gt(b_first, 0);
}
END_TEST

START_TEST(test_mx_dedupe)
{
	struct got g;

	lookup_mx("dup.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.nhosts, 2);
	ck_assert_str_eq(g.name[0], "mx1.mx.test");
	ck_assert_uint_eq(g.pref[0], 10);
	ck_assert_str_eq(g.name[1], "mx2.mx.test");
	ck_assert_uint_eq(g.pref[1], 20);
}
END_TEST

/* 25 MX records come over TCP (the UDP answer is truncated); 20 are kept. */
START_TEST(test_mx_bounded)
{
	struct got g;

	lookup_mx("big.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.nhosts, 20);
	for (unsigned i = 0; i < 20; i++) {
		char want[32];

		snprintf(want, sizeof(want), "h%u.big.test", i + 1);
		ck_assert_str_eq(g.name[i], want);
		ck_assert_uint_eq(g.pref[i], i + 1);
		ck_assert_uint_eq(g.naddrs[i], 1);
		ck_assert_str_eq(g.addr[i][0], "127.0.3.1");
	}
}
END_TEST

START_TEST(test_mx_implicit)
{
	struct got g;

	lookup_mx("implicit.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_int_eq(g.implicit, 1);
	ck_assert_uint_eq(g.nhosts, 1);
	ck_assert_str_eq(g.name[0], "implicit.test");
	ck_assert_uint_eq(g.pref[0], 0);
	ck_assert_uint_eq(g.naddrs[0], 2);
	ck_assert_str_eq(g.addr[0][0], "127.0.0.4");
	ck_assert_str_eq(g.addr[0][1], "::4");
}
END_TEST

START_TEST(test_mx_null)
{
	struct got g;

	lookup_mx("nullmx.test", &g);
	ck_assert_int_eq(g.status, DNS_NULL_MX);
	ck_assert_uint_eq(g.nhosts, 0);
	ck_assert_ptr_nonnull(strstr(g.error, "null MX"));
}
END_TEST

START_TEST(test_mx_nxdomain)
{
	struct got g;

	lookup_mx("nosuch.test", &g);
	ck_assert_int_eq(g.status, DNS_NOTFOUND);
	ck_assert_uint_eq(g.nhosts, 0);
	ck_assert_str_eq(g.error, "DNS lookup of MX for nosuch.test: domain does not exist");
}
END_TEST

/* The name exists (a TXT record) but has neither MX nor address. */
START_TEST(test_mx_no_records)
{
	struct got g;

	lookup_mx("empty.test", &g);
	ck_assert_int_eq(g.status, DNS_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(g.error, "no MX and no address"));
}
END_TEST

START_TEST(test_mx_host_missing)
{
	struct got g;

	/* the only MX host does not exist */
	lookup_mx("dangling.test", &g);
	ck_assert_int_eq(g.status, DNS_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(g.error, "no MX host has an address"));

	/* one of two does: it alone is tried */
	lookup_mx("half.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.nhosts, 1);
	ck_assert_str_eq(g.name[0], "mx2.mx.test");
	ck_assert_uint_eq(g.pref[0], 20);
}
END_TEST

START_TEST(test_mx_refused)
{
	struct got g;

	lookup_mx("example.invalid", &g);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	ck_assert_str_eq(g.error, "DNS lookup of MX for example.invalid failed: REFUSED");
}
END_TEST

START_TEST(test_mx_timeout)
{
	struct got g;
	uint64_t t0;

	dns_resolver_free(res);
	res = resolver(server_silent, 300);
	t0 = uv_hrtime();
	lookup_mx("mx.test", &g);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	ck_assert_str_eq(g.error, "DNS lookup of MX for mx.test failed: timeout");
	/* two tries: 300 ms, then 600 ms */
	ck_assert_uint_lt((uv_hrtime() - t0) / 1000000, 3000);
	ck_assert_uint_ge((uv_hrtime() - t0) / 1000000, 250);
}
END_TEST

START_TEST(test_mx_conn_refused)
{
	struct got g;

	uint64_t t0 = uv_hrtime();

	dns_resolver_free(res);
	res = resolver(server_dead, 300);
	lookup_mx("mx.test", &g);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	ck_assert_msg(strstr(g.error, "connection refused") || strstr(g.error, "timeout"),
	              "%s", g.error);
	/* and at once: the ICMP error is not waited out */
	ck_assert_uint_lt((uv_hrtime() - t0) / 1000000, 250);

	/*
	 * Many at once: c-ares closes and reopens its socket on every
	 * refusal, often under the same descriptor number in the same turn.
	 */
	static struct got many[20];
	memset(many, 0, sizeof(many));
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(dns_lookup_mx(res, i % 2 ? "mx.test" : "implicit.test",
		                               got_cb, &many[i]), 0);
	run();
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(many[i].called, 1);
		ck_assert_int_eq(many[i].status, DNS_TEMPFAIL);
	}
}
END_TEST

/* A dead first server: c-ares moves on to the next. */
START_TEST(test_servers_fallback)
{
	char *servers[2] = { server_dead, server_v4 };
	struct got g;

	dns_resolver_free(res);
	ck_assert_int_eq(dns_resolver_new(&loop, servers, 2, 300, &res), 0);
	lookup_mx("mx.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.nhosts, 2);

	/*
	 * With several servers c-ares 1.18 takes REFUSED as a broken server
	 * and tries the next; when all refuse, all it says is ECONNREFUSED.
	 */
	lookup_mx("example.invalid", &g);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	ck_assert_ptr_nonnull(strstr(g.error, "no DNS server answered"));
}
END_TEST

START_TEST(test_server_ipv6)
{
	struct got g;

	if (!have_v6)
		return;   /* no ::1 on this host */
	dns_resolver_free(res);
	res = resolver(server_v6, 2000);
	lookup_mx("mx.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.nhosts, 2);
}
END_TEST

START_TEST(test_bad_arguments)
{
	char *bad[1] = { "not-an-address:53" };
	char *comma[1] = { "127.0.0.1:53,127.0.0.2:53" };
	char longname[300];
	struct dns_resolver *r = (struct dns_resolver *)&loop;
	struct got g;

	ck_assert_int_lt(dns_resolver_new(&loop, bad, 1, 100, &r), 0);
	ck_assert_ptr_null(r);
	ck_assert_int_lt(dns_resolver_new(&loop, comma, 1, 100, &r), 0);
	ck_assert_ptr_null(r);

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(dns_lookup_mx(res, "", got_cb, &g), UV_EINVAL);
	ck_assert_int_eq(dns_lookup_mx(res, longname, got_cb, &g), UV_EINVAL);
	ck_assert_int_eq(dns_lookup_host(res, "", got_cb, &g), UV_EINVAL);
	run();
	ck_assert_int_eq(g.called, 0);
}
END_TEST

/* ---- dns_mx_order ------------------------------------------------------ */

static unsigned lcg(void *arg)
{
	uint32_t *s = arg;

	*s = *s * 1103515245u + 12345u;
	return *s >> 16;
}

START_TEST(test_order_shuffle)
{
	uint32_t seed = 1;
	int first[3] = { 0, 0, 0 };
	const char *mid[3] = { "a", "b", "e" };

	for (int round = 0; round < 300; round++) {
		struct dns_host h[5] = {
			{ .name = "a", .pref = 10 }, { .name = "b", .pref = 10 },
			{ .name = "c", .pref = 5 },  { .name = "d", .pref = 20 },
			{ .name = "e", .pref = 10 },
		};
		int seen = 0;

		dns_mx_order(h, 5, lcg, &seed);
		ck_assert_str_eq(h[0].name, "c");
		ck_assert_str_eq(h[4].name, "d");
		for (int i = 1; i <= 3; i++) {
			ck_assert_uint_eq(h[i].pref, 10);
			for (int k = 0; k < 3; k++)
				if (!strcmp(h[i].name, mid[k]))
					seen |= 1 << k;
		}
		ck_assert_int_eq(seen, 7);
		for (int k = 0; k < 3; k++)
			if (!strcmp(h[1].name, mid[k]))
				first[k]++;
	}
	/* every host of the tie comes first some of the time */
	for (int k = 0; k < 3; k++)
		ck_assert_int_gt(first[k], 50);

	/* nothing, one host, and no rand_fn (the module's own) */
	dns_mx_order(NULL, 0, lcg, &seed);
	struct dns_host one = { .name = "x", .pref = 1 };
	dns_mx_order(&one, 1, lcg, &seed);
	ck_assert_str_eq(one.name, "x");
	struct dns_host two[2] = { { .name = "y", .pref = 2 }, { .name = "x", .pref = 1 } };
	dns_mx_order(two, 2, NULL, NULL);
	ck_assert_str_eq(two[0].name, "x");
}
END_TEST

START_TEST(test_status_names)
{
	ck_assert_str_eq(dns_status_name(DNS_OK), "ok");
	ck_assert_str_eq(dns_status_name(DNS_NOTFOUND), "notfound");
	ck_assert_str_eq(dns_status_name(DNS_NULL_MX), "null_mx");
	ck_assert_str_eq(dns_status_name(DNS_TEMPFAIL), "tempfail");
}
END_TEST

/* ---- dns_lookup_host --------------------------------------------------- */

START_TEST(test_host_name)
{
	struct got g;

	lookup_host("mx1.mx.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.nhosts, 1);
	ck_assert_str_eq(g.name[0], "mx1.mx.test");
	ck_assert_uint_eq(g.naddrs[0], 2);
	ck_assert_str_eq(g.addr[0][0], "127.0.0.2");
	ck_assert_str_eq(g.addr[0][1], "::2");

	lookup_host("v6only.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.naddrs[0], 1);
	ck_assert_str_eq(g.addr[0][0], "::5");

	lookup_host("many.test", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.naddrs[0], 16);

	lookup_host("nosuch.test", &g);
	ck_assert_int_eq(g.status, DNS_NOTFOUND);
	ck_assert_uint_eq(g.nhosts, 0);
	ck_assert_ptr_nonnull(strstr(g.error, "nosuch.test"));

	lookup_host("example.invalid", &g);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	ck_assert_ptr_nonnull(strstr(g.error, "REFUSED"));
}
END_TEST

/* Literals need no DNS: the resolver here points at nothing at all. */
START_TEST(test_host_literal)
{
	struct got g;

	dns_resolver_free(res);
	res = resolver(server_silent, 5000);

	lookup_host("192.0.2.1", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.nhosts, 1);
	ck_assert_str_eq(g.name[0], "192.0.2.1");
	ck_assert_uint_eq(g.naddrs[0], 1);
	ck_assert_str_eq(g.addr[0][0], "192.0.2.1");
	ck_assert_int_eq(g.port_nonzero, 0);

	lookup_host("2001:db8::1", &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_uint_eq(g.naddrs[0], 1);
	ck_assert_str_eq(g.addr[0][0], "2001:db8::1");
}
END_TEST

/* ---- many at once, and cancelling -------------------------------------- */

#define NCONC 100

START_TEST(test_concurrent)
{
	static struct got g[NCONC];
	static const char *names[4] = { "mx.test", "nosuch.test", "implicit.test", "mx1.mx.test" };
	static const enum dns_status want[4] = { DNS_OK, DNS_NOTFOUND, DNS_OK, DNS_OK };

	memset(g, 0, sizeof(g));
	for (int i = 0; i < NCONC; i++) {
		if (i % 4 == 3)
			ck_assert_int_eq(dns_lookup_host(res, names[3], got_cb, &g[i]), 0);
		else
			ck_assert_int_eq(dns_lookup_mx(res, names[i % 4], got_cb, &g[i]), 0);
	}
	run();
	for (int i = 0; i < NCONC; i++) {
		ck_assert_int_eq(g[i].called, 1);
		ck_assert_int_eq(g[i].status, want[i % 4]);
	}
	ck_assert_uint_eq(g[0].nhosts, 2);
	ck_assert_int_eq(g[2].implicit, 1);
	ck_assert_uint_eq(g[3].naddrs[0], 2);
}
END_TEST

static int refused_rc;

static void cancelled_cb(void *arg, struct dns_result *r)
{
	got_cb(arg, r);
	/* A lookup from inside dns_resolver_free() is refused. */
	refused_rc = dns_lookup_mx(res, "mx.test", got_cb, arg);
}

START_TEST(test_free_pending)
{
	struct got g[10], lit;

	dns_resolver_free(res);
	res = resolver(server_silent, 5000);
	memset(g, 0, sizeof(g));
	memset(&lit, 0, sizeof(lit));
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(dns_lookup_mx(res, "mx.test", cancelled_cb, &g[i]), 0);
	ck_assert_int_eq(dns_lookup_host(res, "127.0.0.9", got_cb, &lit), 0);
	uv_run(&loop, UV_RUN_NOWAIT);   /* the queries go out */
	/* the literal was delivered by that turn; the others hang */
	ck_assert_int_eq(lit.called, 1);

	dns_resolver_free(res);
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(g[i].called, 1);
		ck_assert_int_eq(g[i].status, DNS_TEMPFAIL);
		ck_assert_str_eq(g[i].error, "DNS lookup of MX for mx.test failed: cancelled");
	}
	ck_assert_int_eq(refused_rc, UV_ECANCELED);
	res = NULL;
	run();   /* closes the handles; teardown checks the loop is empty */
}
END_TEST

/* Freed before the loop ever ran: nothing was sent, everything answers. */
START_TEST(test_free_at_once)
{
	struct got g, lit;

	memset(&g, 0, sizeof(g));
	memset(&lit, 0, sizeof(lit));
	ck_assert_int_eq(dns_lookup_mx(res, "mx.test", got_cb, &g), 0);
	ck_assert_int_eq(dns_lookup_host(res, "::1", got_cb, &lit), 0);
	dns_resolver_free(res);
	res = NULL;
	ck_assert_int_eq(g.called, 1);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	ck_assert_int_eq(lit.called, 1);
	ck_assert_int_eq(lit.status, DNS_OK);
}
END_TEST

static void free_timer_cb(uv_timer_t *t)
{
	dns_resolver_free(res);
	res = NULL;
	uv_close((uv_handle_t *)t, NULL);
}

/* The MX answer is in; its host's addresses are still being asked for. */
START_TEST(test_free_mid_lookup)
{
	struct got g;
	uv_timer_t t;

	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(dns_lookup_mx(res, "slow.test", got_cb, &g), 0);
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, free_timer_cb, 300, 0);
	run();
	ck_assert_int_eq(g.called, 1);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	ck_assert_uint_eq(g.nhosts, 0);
	ck_assert_ptr_nonnull(strstr(g.error, "cancelled"));
}
END_TEST

static struct got chain_g;

static void free_from_cb(void *arg, struct dns_result *r)
{
	got_cb(arg, r);
	dns_resolver_free(res);
	res = NULL;
}

/* A callback frees the resolver while another lookup is in flight. */
START_TEST(test_free_from_callback)
{
	struct got lit;

	memset(&chain_g, 0, sizeof(chain_g));
	memset(&lit, 0, sizeof(lit));
	ck_assert_int_eq(dns_lookup_mx(res, "slow.test", got_cb, &chain_g), 0);
	ck_assert_int_eq(dns_lookup_host(res, "127.0.0.1", free_from_cb, &lit), 0);
	run();
	ck_assert_int_eq(lit.called, 1);
	ck_assert_int_eq(chain_g.called, 1);
	ck_assert_int_eq(chain_g.status, DNS_TEMPFAIL);
}
END_TEST

static Suite *dns_suite(void)
{
	Suite *s = suite_create("dns");
	TCase *tc = tcase_create("dns");

	tcase_set_timeout(tc, 30);
	tcase_add_unchecked_fixture(tc, dnsmasq_start, dnsmasq_stop);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_mx_order);
	tcase_add_test(tc, test_mx_absolute);
	tcase_add_test(tc, test_mx_equal_shuffled);
	tcase_add_test(tc, test_mx_dedupe);
	tcase_add_test(tc, test_mx_bounded);
	tcase_add_test(tc, test_mx_implicit);
	tcase_add_test(tc, test_mx_null);
	tcase_add_test(tc, test_mx_nxdomain);
	tcase_add_test(tc, test_mx_no_records);
	tcase_add_test(tc, test_mx_host_missing);
	tcase_add_test(tc, test_mx_refused);
	tcase_add_test(tc, test_mx_timeout);
	tcase_add_test(tc, test_mx_conn_refused);
	tcase_add_test(tc, test_servers_fallback);
	tcase_add_test(tc, test_server_ipv6);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_order_shuffle);
	tcase_add_test(tc, test_status_names);
	tcase_add_test(tc, test_host_name);
	tcase_add_test(tc, test_host_literal);
	tcase_add_test(tc, test_concurrent);
	tcase_add_test(tc, test_free_pending);
	tcase_add_test(tc, test_free_at_once);
	tcase_add_test(tc, test_free_mid_lookup);
	tcase_add_test(tc, test_free_from_callback);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(dns_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
