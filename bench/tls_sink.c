/*
 * tls_sink - an SMTP sink with STARTTLS (OpenSSL), for the benchmark
 *
 * Accepts every transaction and throws the message away, like Postfix's
 * smtp-sink, but offers STARTTLS: the upstream of the TLS figure. (stunnel
 * in front of smtp-sink does not do: in server mode its "protocol = smtp"
 * waits 200 ms on every connection to see whether the client speaks TLS at
 * once.) One thread per connection, blocking I/O: the relays open at most a
 * few dozen connections.
 *
 * usage: tls_sink -p PORT -c CERT.pem -k KEY.pem
 *
 * Listens on 127.0.0.1:PORT. Every 10 ms when it changed, prints the number
 * of messages received so far as "plain=P mesg=N\r" on standard output (N
 * in the format of smtp-sink -c, which the benchmark reads; P of them came
 * without TLS).
 *
 * Built by bench/run.sh: gcc -O2 -pthread -o tls_sink tls_sink.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static SSL_CTX *ctx;
static atomic_long messages, plain_messages;

struct conn {
	int fd;
	SSL *ssl;
	char buf[65536];
	size_t off, len;
	int at_line_start;
};

static ssize_t conn_read(struct conn *c, void *p, size_t n)
{
	if (c->ssl) {
		int r = SSL_read(c->ssl, p, (int)n);
		return r > 0 ? r : -1;
	}
	ssize_t r;
	do
		r = read(c->fd, p, n);
	while (r < 0 && errno == EINTR);
	return r > 0 ? r : -1;
}

static int conn_write(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t r;
		if (c->ssl)
			r = SSL_write(c->ssl, p, (int)n);
		else
			r = write(c->fd, p, n);
		if (r <= 0) {
			if (!c->ssl && r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int reply(struct conn *c, const char *s)
{
	return conn_write(c, s, strlen(s));
}

/* The next line (with its line end), or the buffer's worth of a longer
 * one. *partial tells that the line goes on. Returns its length, -1 at EOF. */
static ssize_t read_line(struct conn *c, char **line, int *partial)
{
	for (;;) {
		char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
		if (nl) {
			size_t n = (size_t)(nl - (c->buf + c->off)) + 1;
			*line = c->buf + c->off;
			*partial = 0;
			c->off += n;
			return (ssize_t)n;
		}
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		if (c->len == sizeof c->buf) {
			*line = c->buf;
			*partial = 1;
			c->off = c->len;
			return (ssize_t)c->len;
		}
		ssize_t r = conn_read(c, c->buf + c->len, sizeof c->buf - c->len);
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

static int is_cmd(const char *line, const char *cmd)
{
	return strncasecmp(line, cmd, strlen(cmd)) == 0;
}

static void *session(void *arg)
{
	struct conn *c = arg;
	char *line;
	int partial;
	ssize_t n;
	if (reply(c, "220 tls-sink.bench.test ESMTP\r\n") < 0)
		goto out;
	while ((n = read_line(c, &line, &partial)) >= 0) {
		if (is_cmd(line, "EHLO")) {
			if (reply(c, c->ssl ? "250-tls-sink.bench.test\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n"
			                      "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
			                    : "250-tls-sink.bench.test\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n"
			                      "250-8BITMIME\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n") < 0)
				break;
		} else if (is_cmd(line, "HELO")) {
			if (reply(c, "250 tls-sink.bench.test\r\n") < 0)
				break;
		} else if (is_cmd(line, "STARTTLS") && !c->ssl) {
			if (reply(c, "220 2.0.0 Ready to start TLS\r\n") < 0)
				break;
			c->off = c->len = 0;      /* nothing pipelined behind STARTTLS counts */
			c->ssl = SSL_new(ctx);
			SSL_set_fd(c->ssl, c->fd);
			if (SSL_accept(c->ssl) != 1)
				break;
		} else if (is_cmd(line, "MAIL") || is_cmd(line, "RCPT")) {
			if (reply(c, is_cmd(line, "MAIL") ? "250 2.1.0 Ok\r\n" : "250 2.1.5 Ok\r\n") < 0)
				break;
		} else if (is_cmd(line, "DATA")) {
			if (reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n") < 0)
				break;
			int start = 1, done = 0;
			while ((n = read_line(c, &line, &partial)) >= 0) {
				if (start && !partial && (n == 3 && memcmp(line, ".\r\n", 3) == 0)) {
					done = 1;
					break;
				}
				start = !partial;
			}
			if (!done)
				break;
			atomic_fetch_add(&messages, 1);
			if (!c->ssl)
				atomic_fetch_add(&plain_messages, 1);
			if (reply(c, "250 2.0.0 Ok: queued\r\n") < 0)
				break;
		} else if (is_cmd(line, "RSET") || is_cmd(line, "NOOP")) {
			if (reply(c, "250 2.0.0 Ok\r\n") < 0)
				break;
		} else if (is_cmd(line, "QUIT")) {
			reply(c, "221 2.0.0 Bye\r\n");
			break;
		} else {
			if (reply(c, "502 5.5.2 Error: command not recognized\r\n") < 0)
				break;
		}
	}
out:
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	close(c->fd);
	free(c);
	ERR_clear_error();
	return NULL;
}

static void *reporter(void *arg)
{
	(void)arg;
	long last = -1;
	struct timespec ts = {0, 10 * 1000 * 1000};
	for (;;) {
		long m = atomic_load(&messages);
		if (m != last) {
			printf("plain=%ld mesg=%ld\r", atomic_load(&plain_messages), m);
			fflush(stdout);
			last = m;
		}
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int port = 0, opt;
	const char *cert = NULL, *key = NULL;
	while ((opt = getopt(argc, argv, "p:c:k:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		default: goto usage;
		}
	}
	if (!port || !cert || !key) {
usage:
		fprintf(stderr, "usage: tls_sink -p PORT -c CERT.pem -k KEY.pem\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"tls_sink", 8);

	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) {
		perror("tls_sink: bind/listen");
		return 1;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_t t;
	pthread_create(&t, &attr, reporter, NULL);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			perror("tls_sink: accept");
			return 1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = calloc(1, sizeof *c);
		c->fd = fd;
		if (pthread_create(&t, &attr, session, c) != 0) {
			close(fd);
			free(c);
		}
	}
}
