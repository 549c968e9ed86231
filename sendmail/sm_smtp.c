/*
 * sm_smtp - hikyaku-sendmail's SMTP connection. See sm_smtp.h.
 *
 * The socket is non-blocking from the start; every wait is a poll(2) up
 * to the step's deadline, so neither a daemon that never answers nor one
 * that stops reading can hold the caller (PHP, cron) for longer than the
 * timeouts of hikyaku-sendmail(8).
 */
#include "sendmail/sm_smtp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void fail_set(struct smtp_reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_set(struct smtp_reply *r, const char *fmt, ...)
{
	va_list ap;

	memset(r, 0, sizeof(*r));
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on the socket until the deadline: 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd pfd = { .fd = fd, .events = events };
		int rc = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

int sm_smtp_connect(struct sm_smtp *s, const char *host, uint16_t port, int timeout_ms,
                    struct smtp_reply *fail)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char ps[8];

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	snprintf(ps, sizeof(ps), "%u", port);
	int gai = getaddrinfo(host, ps, &hints, &ai);
	if (gai != 0) {
		fail_set(fail, "%s is not an IP address: %s", host, gai_strerror(gai));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail_set(fail, "cannot make a socket: %s", strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rc < 0 && errno != EINPROGRESS) {
		fail_set(fail, "cannot connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (rc < 0) {
		int w = wait_fd(fd, POLLOUT, now_ms() + timeout_ms);
		int err = 0;
		socklen_t el = sizeof(err);
		if (w == 0) {
			fail_set(fail, "timeout connecting (%d s)", timeout_ms / 1000);
			close(fd);
			return -1;
		}
		if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			fail_set(fail, "cannot connect: %s", strerror(err ? err : errno));
			close(fd);
			return -1;
		}
	}
	s->fd = fd;
	return 0;
}

static void ext_note(struct sm_smtp *s, const char *kw, size_t n)
{
	size_t w = strcspn(kw, " ");
	if (w > n)
		w = n;
	if (w == 8 && strncasecmp(kw, "8BITMIME", 8) == 0)
		s->ext_8bitmime = true;
	else if (w == 8 && strncasecmp(kw, "SMTPUTF8", 8) == 0)
		s->ext_smtputf8 = true;
	else if (w == 4 && strncasecmp(kw, "SIZE", 4) == 0)
		s->ext_size = true;
}

int sm_smtp_reply(struct sm_smtp *s, int timeout_ms, bool ehlo, struct smtp_reply *r)
{
	struct smtp_reply_parser p;
	int64_t deadline = now_ms() + timeout_ms;

	smtp_reply_parser_init(&p);
	for (;;) {
		char *nl = memchr(s->in, '\n', s->in_len);
		if (nl) {
			size_t take = (size_t)(nl - s->in) + 1;
			size_t len = take - 1;
			if (len > 0 && s->in[len - 1] == '\r')
				len--;
			s->in[len] = '\0';
			int rc = smtp_reply_parser_line(&p, s->in, len);
			if (rc >= 0 && ehlo && p.r.code == 250 && len > 4)
				ext_note(s, s->in + 4, len - 4);
			memmove(s->in, s->in + take, s->in_len - take);
			s->in_len -= take;
			if (rc < 0) {
				fail_set(r, "protocol error: malformed reply");
				return -1;
			}
			if (rc == 1) {
				*r = p.r;
				return 0;
			}
			continue;
		}
		if (s->in_len == sizeof(s->in)) {
			fail_set(r, "protocol error: a reply line longer than %d bytes", SM_LINE_MAX);
			return -1;
		}
		int w = wait_fd(s->fd, POLLIN, deadline);
		if (w == 0) {
			fail_set(r, "timeout waiting for a reply (%d s)", timeout_ms / 1000);
			return -1;
		}
		ssize_t got = w < 0 ? -1 : read(s->fd, s->in + s->in_len, sizeof(s->in) - s->in_len);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (got == 0) {
			fail_set(r, "connection closed by the daemon");
			return -1;
		}
		if (got < 0) {
			fail_set(r, "cannot read from the daemon: %s", strerror(errno));
			return -1;
		}
		s->in_len += (size_t)got;
	}
}

int sm_smtp_write(struct sm_smtp *s, const char *p, size_t n, int timeout_ms,
                  struct smtp_reply *fail)
{
	while (n > 0) {
		ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			int rc = wait_fd(s->fd, POLLOUT, now_ms() + timeout_ms);
			if (rc == 0) {
				fail_set(fail, "timeout sending to the daemon (%d s)", timeout_ms / 1000);
				return -1;
			}
			if (rc > 0)
				continue;
		}
		fail_set(fail, "cannot send to the daemon: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int sm_smtp_cmd(struct sm_smtp *s, const char *line, int timeout_ms, struct smtp_reply *r)
{
	size_t n = strlen(line);

	if (sm_smtp_write(s, line, n, timeout_ms, r) < 0 || sm_smtp_write(s, "\r\n", 2, timeout_ms, r) < 0)
		return -1;
	return sm_smtp_reply(s, timeout_ms, strncasecmp(line, "EHLO", 4) == 0, r);
}

void sm_smtp_close(struct sm_smtp *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}
