/*
 * ctl_control - hikyakuctl's side of the control socket. See ctl_control.h.
 */
#include "ctl/ctl_control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready for ev until the deadline: 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short ev, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = ev };
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int ctl_request(const char *socket_path, const json_t *req, json_t **ans, char *err,
                size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "the control socket path %s is too long", socket_path);
		return CTL_ERROR;
	}
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot make a socket: %s", strerror(errno));
		return CTL_ERROR;
	}
	long long deadline = now_ms() + CTL_REPLY_TIMEOUT_MS;
	/* A Unix connect() completes at once (or fails: EAGAIN when the
	 * daemon's backlog is full); the exchange after it is bounded. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		snprintf(err, errlen, "cannot connect to %s: %s", socket_path, strerror(e));
		return e == ENOENT || e == ECONNREFUSED ? CTL_DOWN : CTL_ERROR;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	char *text = json_dumps(req, JSON_COMPACT);
	size_t len = text ? strlen(text) : 0, off = 0;
	int rc = text ? 0 : -ENOMEM;
	if (text)
		text[len++] = '\n'; /* json_dumps' NUL becomes the line end */
	while (rc == 0 && off < len) {
		ssize_t w = send(fd, text + off, len - off, MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else if (errno == EAGAIN)
			rc = wait_fd(fd, POLLOUT, deadline);
		else if (errno != EINTR)
			rc = -errno;
	}
	free(text);
	buf_t in;
	buf_init(&in, CTL_REPLY_MAX);
	char chunk[65536];
	while (rc == 0) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
		if (n > 0) {
			if (buf_append(&in, chunk, (size_t)n) < 0)
				rc = -EMSGSIZE;
		} else if (n == 0) {
			break;
		} else if (errno == EAGAIN) {
			rc = wait_fd(fd, POLLIN, deadline);
		} else if (errno != EINTR) {
			rc = -errno;
		}
	}
	close(fd);
	if (rc < 0) {
		snprintf(err, errlen, "no answer from hikyaku on %s: %s", socket_path,
		         rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
		buf_free(&in);
		return CTL_ERROR;
	}
	json_error_t jerr;
	*ans = json_loadb(in.data ? in.data : "", in.len, 0, &jerr);
	buf_free(&in);
	if (!json_is_object(*ans)) {
		json_decref(*ans);
		*ans = NULL;
		snprintf(err, errlen, "hikyaku on %s sent an answer that is not JSON", socket_path);
		return CTL_ERROR;
	}
	return CTL_OK;
}
