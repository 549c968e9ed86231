/*
 * smtp_latency - an open-loop SMTP load generator for the benchmark
 *
 * Offers RATE messages per second for SECONDS seconds, each over a new
 * connection, whatever the server's speed: message i is due at
 * start + i / RATE, and its latency is measured from that due time (not
 * from when the generator managed to start it), to the server's 250 after
 * the final dot. So a server that falls behind sees its queueing delay in
 * the figures (no coordinated omission). Each session is
 *
 *	connect, 220, EHLO, 250, MAIL, 250, RCPT, 250, DATA, 354, body, 250
 *
 * in lock step (no pipelining, like most shop applications), then QUIT.
 *
 * usage: smtp_latency [-r RATE] [-d SECONDS] [-l BYTES] [-f FROM]
 *                     [-t DOMAIN] [-c MAXCONN] [-T TIMEOUT] HOST PORT
 *
 * Prints one line of key=value pairs (times in ms):
 *	offered ok errors err_connect err_reply err_timeout err_overrun
 *	rate achieved_rate (connections started per second) max_start_lag_ms
 *	mean_ok_ms (of the messages that succeeded) p50_ms p90_ms p99_ms
 *	p999_ms max_ms (over every message offered; "inf" when the
 *	percentile falls on a failed message) first_error
 * Exit 0 when every message got its 250, 1 otherwise, 2 on usage errors.
 *
 * Built by bench/run.sh: gcc -O2 -o smtp_latency smtp_latency.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { S_FREE, S_CONNECT, S_GREET, S_EHLO, S_MAIL, S_RCPT, S_DATA, S_BODY, S_QUIT };

struct conn {
	enum state st;
	int fd;
	long idx;            /* message number */
	double due;          /* when the message was due (monotonic s) */
	const char *out;     /* bytes still to write */
	size_t outlen;
	char cmd[512];       /* the command being written (not the body) */
	char in[4096];       /* reply bytes read, not yet a complete reply */
	size_t inlen;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: smtp_latency [-r RATE] [-d SECONDS] [-l BYTES] [-f FROM] [-t DOMAIN]\n"
	                "                    [-c MAXCONN] [-T TIMEOUT] HOST PORT\n");
	exit(2);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The globals of one run. */
static struct conn *conns;
static struct pollfd *pfds;
static int maxconn;
static int *freelist, nfree;
static double *lat;
static long nlat;
static long err_connect, err_reply, err_timeout, err_overrun;
static char first_error[200];
static char *body;
static size_t bodylen;
static const char *from = "bench@bench.example";
static const char *domain = "dest.bench.test";
static struct sockaddr_in sa;

static void note_error(long *counter, const char *fmt, ...)
{
	(*counter)++;
	if (first_error[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(first_error, sizeof first_error, fmt, ap);
		va_end(ap);
		for (char *p = first_error; *p; p++)
			if (*p == ' ' || *p == '\r' || *p == '\n' || *p == '=')
				*p = '_';
	}
}

static void conn_close(int slot)
{
	struct conn *c = &conns[slot];
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->st = S_FREE;
	pfds[slot].fd = -1;
	pfds[slot].events = 0;
	freelist[nfree++] = slot;
}

static void conn_send(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c->cmd, sizeof c->cmd, fmt, ap);
	va_end(ap);
	c->out = c->cmd;
	c->outlen = (size_t)n;
}

static void start_conn(long idx, double due)
{
	if (nfree == 0) {
		note_error(&err_overrun, "more than %d connections open", maxconn);
		return;
	}
	int slot = freelist[--nfree];
	struct conn *c = &conns[slot];
	memset(c, 0, sizeof *c);
	c->idx = idx;
	c->due = due;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		note_error(&err_connect, "socket: %s", strerror(errno));
		c->st = S_FREE;
		freelist[nfree++] = slot;
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->st = S_CONNECT;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		note_error(&err_connect, "connect: %s", strerror(errno));
		conn_close(slot);
		return;
	}
	pfds[slot].fd = c->fd;
	pfds[slot].events = POLLOUT;
}

/* A complete reply is in c->in: act on it. Returns 0, or -1 when closed. */
static int on_reply(int slot, const char *line)
{
	struct conn *c = &conns[slot];
	char want = '2';
	if (c->st == S_DATA)
		want = '3';
	if (line[0] != want) {
		if (c->st == S_QUIT) {       /* after the 250: not counted */
			conn_close(slot);
			return -1;
		}
		char l[120];
		snprintf(l, sizeof l, "%.*s", (int)strcspn(line, "\r\n"), line);
		note_error(&err_reply, "state%d:%s", (int)c->st, l);
		conn_close(slot);
		return -1;
	}
	switch (c->st) {
	case S_GREET:
		conn_send(c, "EHLO latency.bench.example\r\n");
		c->st = S_EHLO;
		break;
	case S_EHLO:
		conn_send(c, "MAIL FROM:<%s>\r\n", from);
		c->st = S_MAIL;
		break;
	case S_MAIL:
		conn_send(c, "RCPT TO:<u%ld@%s>\r\n", c->idx, domain);
		c->st = S_RCPT;
		break;
	case S_RCPT:
		conn_send(c, "DATA\r\n");
		c->st = S_DATA;
		break;
	case S_DATA:
		c->out = body;
		c->outlen = bodylen;
		c->st = S_BODY;
		break;
	case S_BODY:
		lat[nlat++] = now_s() - c->due;
		conn_send(c, "QUIT\r\n");
		c->st = S_QUIT;
		break;
	case S_QUIT:
		conn_close(slot);
		return -1;
	default:
		break;
	}
	return 0;
}

static void on_event(int slot, short rev)
{
	struct conn *c = &conns[slot];
	if (c->st == S_CONNECT) {
		if (!(rev & (POLLOUT | POLLERR | POLLHUP)))
			return;
		int err = 0;
		socklen_t len = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			note_error(&err_connect, "connect: %s", strerror(err));
			conn_close(slot);
			return;
		}
		c->st = S_GREET;
		pfds[slot].events = POLLIN;
		return;
	}
	if (rev & POLLOUT) {
		while (c->outlen > 0) {
			ssize_t n = write(c->fd, c->out, c->outlen);
			if (n < 0) {
				if (errno == EAGAIN)
					break;
				if (c->st == S_QUIT) {
					conn_close(slot);
					return;
				}
				note_error(&err_reply, "write: %s", strerror(errno));
				conn_close(slot);
				return;
			}
			c->out += n;
			c->outlen -= (size_t)n;
		}
	}
	if (rev & (POLLIN | POLLERR | POLLHUP)) {
		ssize_t n = read(c->fd, c->in + c->inlen, sizeof c->in - 1 - c->inlen);
		if (n <= 0) {
			if (n < 0 && errno == EAGAIN)
				return;
			if (c->st == S_QUIT) {
				conn_close(slot);
				return;
			}
			note_error(&err_reply, "state%d:%s", (int)c->st,
			           n == 0 ? "connection_closed" : strerror(errno));
			conn_close(slot);
			return;
		}
		c->inlen += (size_t)n;
		c->in[c->inlen] = '\0';
		/* Walk the complete lines; the last line of a reply has a blank
		 * (or nothing) after the code. */
		for (;;) {
			char *nl = memchr(c->in, '\n', c->inlen);
			if (!nl)
				break;
			size_t linelen = (size_t)(nl - c->in) + 1;
			int last = linelen < 5 || c->in[3] != '-';
			int rc = 0;
			if (last) {
				char line[128];
				snprintf(line, sizeof line, "%.*s", (int)(linelen < 127 ? linelen : 127), c->in);
				rc = on_reply(slot, line);
			}
			if (rc < 0)
				return;
			memmove(c->in, c->in + linelen, c->inlen - linelen);
			c->inlen -= linelen;
		}
		if (c->inlen >= sizeof c->in - 1) {
			note_error(&err_reply, "reply line too long");
			conn_close(slot);
			return;
		}
	}
	pfds[slot].events = POLLIN | (c->outlen > 0 ? POLLOUT : 0);
}

int main(int argc, char **argv)
{
	double rate = 1000, seconds = 10, timeout = 60;
	long size = 1024;
	int opt;
	maxconn = 4000;
	while ((opt = getopt(argc, argv, "r:d:l:f:t:c:T:")) != -1) {
		switch (opt) {
		case 'r': rate = atof(optarg); break;
		case 'd': seconds = atof(optarg); break;
		case 'l': size = atol(optarg); break;
		case 'f': from = optarg; break;
		case 't': domain = optarg; break;
		case 'c': maxconn = atoi(optarg); break;
		case 'T': timeout = atof(optarg); break;
		default: usage();
		}
	}
	if (argc - optind != 2 || rate <= 0 || seconds <= 0 || maxconn < 1 || size < 0)
		usage();
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)atoi(argv[optind + 1]));
	if (inet_pton(AF_INET, argv[optind], &sa.sin_addr) != 1) {
		fprintf(stderr, "smtp_latency: HOST must be an IPv4 address\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)maxconn + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)maxconn + 64 ? rl.rlim_max : (rlim_t)maxconn + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
		if ((rlim_t)maxconn + 64 > rl.rlim_cur)
			maxconn = (int)rl.rlim_cur - 64;
	}

	/* The message: a few headers and SIZE bytes of body in 78-byte lines. */
	size_t cap = (size_t)size + (size_t)size / 78 * 2 + 1024;
	body = malloc(cap);
	int h = snprintf(body, cap, "From: <%s>\r\nTo: <user@%s>\r\nSubject: latency probe\r\n\r\n", from, domain);
	bodylen = (size_t)h;
	for (long left = size; left > 0;) {
		long n = left > 78 ? 78 : left;
		memset(body + bodylen, 'X', (size_t)n);
		bodylen += (size_t)n;
		memcpy(body + bodylen, "\r\n", 2);
		bodylen += 2;
		left -= n;
	}
	memcpy(body + bodylen, ".\r\n", 3);
	bodylen += 3;

	long total = (long)(rate * seconds + 0.5);
	conns = calloc((size_t)maxconn, sizeof *conns);
	pfds = calloc((size_t)maxconn, sizeof *pfds);
	freelist = calloc((size_t)maxconn, sizeof *freelist);
	lat = calloc((size_t)total + 1, sizeof *lat);
	for (int i = maxconn - 1; i >= 0; i--) {
		conns[i].fd = -1;
		pfds[i].fd = -1;
		freelist[nfree++] = i;
	}

	double t0 = now_s() + 0.05, max_lag = 0, first_start = 0, last_start = 0;
	long next = 0;
	int hi = 0;       /* slots [0, hi) may be in use */
	for (;;) {
		double now = now_s();
		while (next < total && t0 + next / rate <= now) {
			double due = t0 + next / rate;
			if (now - due > max_lag)
				max_lag = now - due;
			start_conn(next, due);
			if (next == 0)
				first_start = now;
			last_start = now;
			next++;
		}
		hi = 0;
		for (int i = maxconn - 1; i >= 0; i--)
			if (conns[i].st != S_FREE) {
				hi = i + 1;
				break;
			}
		if (next >= total && hi == 0)
			break;
		/* Time out sessions that take too long. */
		for (int i = 0; i < hi; i++)
			if (conns[i].st != S_FREE && now - conns[i].due > timeout) {
				if (conns[i].st == S_QUIT)
					conn_close(i);
				else {
					note_error(&err_timeout, "timeout_in_state%d", (int)conns[i].st);
					conn_close(i);
				}
			}
		int wait_ms = 50;
		if (next < total) {
			double d = (t0 + next / rate - now_s()) * 1000;
			wait_ms = d <= 0 ? 0 : d < 50 ? (int)d + 1 : 50;
		}
		int n = poll(pfds, (nfds_t)hi, wait_ms);
		if (n < 0 && errno != EINTR) {
			perror("poll");
			return 2;
		}
		for (int i = 0; n > 0 && i < hi; i++) {
			if (pfds[i].fd >= 0 && pfds[i].revents) {
				short rev = pfds[i].revents;
				pfds[i].revents = 0;
				on_event(i, rev);
			}
		}
	}
	double span = last_start - first_start;

	qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
	double sum = 0;
	for (long i = 0; i < nlat; i++)
		sum += lat[i];
	/* Percentiles over every message offered: one that failed counts as
	 * slower than any that succeeded (infinite), so that a server that
	 * drops half of the load does not show the latency of the other half. */
	char pct[5][32];
	const double ps[5] = {0.50, 0.90, 0.99, 0.999, 1.0};
	for (int k = 0; k < 5; k++) {
		long i = total ? (long)((total - 1) * ps[k] + 0.5) : 0;
		if (i < nlat)
			snprintf(pct[k], sizeof pct[k], "%.2f", lat[i] * 1000);
		else
			snprintf(pct[k], sizeof pct[k], "inf");
	}
	long errors = err_connect + err_reply + err_timeout + err_overrun;
	printf("offered=%ld ok=%ld errors=%ld err_connect=%ld err_reply=%ld err_timeout=%ld err_overrun=%ld "
	       "rate=%.0f achieved_rate=%.1f max_start_lag_ms=%.1f mean_ok_ms=%.2f p50_ms=%s p90_ms=%s "
	       "p99_ms=%s p999_ms=%s max_ms=%s first_error=%s\n",
	       total, nlat, errors, err_connect, err_reply, err_timeout, err_overrun, rate,
	       span > 0 ? (total - 1) / span : 0.0, max_lag * 1000, nlat ? sum / nlat * 1000 : -1.0,
	       pct[0], pct[1], pct[2], pct[3], pct[4], first_error[0] ? first_error : "-");
	return errors == 0 && nlat == total ? 0 : 1;
}
