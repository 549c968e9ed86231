/*
 * eventlog - the relay log, one JSON object per line (SPEC §7). See
 * eventlog.h. The daemon and hikyakuctl append to the same file, so each
 * line goes out in a single write(2) on an O_APPEND descriptor: the kernel
 * then places every line whole at the end of the file.
 */
#include "util/eventlog.h"
#include "util/clock.h"
#include "util/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct evlog {
	char *path;
	int fd;
	/* Report a failing log once, not once per event; cleared when a
	 * write succeeds again. Atomic so evlog_emit() is thread-safe. */
	atomic_bool failing;
	evlog_observer_fn *observer;    /* metrics; NULL: none */
	void *observer_arg;
};

static int evlog_open_fd(const char *path)
{
	int rc = fs_mkdir_parent(path, 0750);
	int fd;

	if (rc)
		return rc;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	return fd < 0 ? -errno : fd;
}

int evlog_open(const char *path, struct evlog **out)
{
	struct evlog *log;
	int rc;

	if (!path || !*path || !out)
		return -EINVAL;
	log = calloc(1, sizeof(*log));
	if (!log)
		return -ENOMEM;
	log->path = strdup(path);
	if (!log->path) {
		rc = -ENOMEM;
		goto fail_log;
	}
	log->fd = evlog_open_fd(path);
	if (log->fd < 0) {
		rc = log->fd;
		goto fail_path;
	}
	atomic_init(&log->failing, false);
	*out = log;
	return 0;

fail_path:
	free(log->path);
fail_log:
	free(log);
	return rc;
}

int evlog_reopen(struct evlog *log)
{
	int fd = evlog_open_fd(log->path);

	if (fd < 0)
		return fd;      /* keep writing to the old file */
	/*
	 * dup3() swaps the file under the same descriptor number in one
	 * step: a writer in another thread sees the old file or the new
	 * one, never a closed descriptor.
	 */
	if (dup3(fd, log->fd, O_CLOEXEC) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	close(fd);
	return 0;
}

void evlog_set_observer(struct evlog *log, evlog_observer_fn *fn, void *arg)
{
	log->observer = fn;
	log->observer_arg = arg;
}

void evlog_close(struct evlog *log)
{
	if (!log)
		return;
	close(log->fd);
	free(log->path);
	free(log);
}

void evlog_now_rfc3339(char *out, size_t cap)
{
	clock_rfc3339(clock_now_ms(), out, cap);
}

/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 when there is none;
 * *bad then gets the length of the maximal ill-formed prefix, which is
 * replaced by one U+FFFD (the Unicode "maximal subpart" practice).
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t need, i;

	*bad = 1;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		need = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		need = 4;
	else
		return 0;
	if (c == 0xE0)
		lo = 0xA0;      /* overlong */
	else if (c == 0xED)
		hi = 0x9F;      /* surrogates */
	else if (c == 0xF0)
		lo = 0x90;      /* overlong */
	else if (c == 0xF4)
		hi = 0x8F;      /* above U+10FFFF */
	for (i = 1; i < need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xBF;
	}
	return need;
}

static json_t *str_or_null(const char *s)
{
	return s ? evlog_str(s, strlen(s)) : json_null();
}

json_t *evlog_received(const struct evlog_received *r)
{
	json_t *f = json_object();
	if (!f)
		return NULL;
	json_object_set_new(f, "queue_id", str_or_null(r->queue_id));
	json_object_set_new(f, "session", str_or_null(r->session));
	json_object_set_new(f, "client", str_or_null(r->client));
	json_object_set_new(f, "helo", str_or_null(r->helo));
	json_object_set_new(f, "from", r->from ? evlog_str(r->from, r->from_len) : json_string(""));
	json_object_set_new(f, "header_from", str_or_null(r->header_from));
	json_object_set_new(f, "message_id", str_or_null(r->message_id));
	json_object_set_new(f, "rcpts", json_integer((json_int_t)r->rcpts));
	json_object_set_new(f, "size", json_integer((json_int_t)r->size));
	json_object_set_new(f, "tls", json_boolean(r->tls));
	json_object_set_new(f, "route", str_or_null(r->route));
	json_object_set_new(f, "matched", str_or_null(r->matched));
	json_object_set_new(f, "dkim", str_or_null(r->dkim));
	if (r->dkim_skipped && r->dkim_skipped[0])
		json_object_set_new(f, "dkim_skipped", str_or_null(r->dkim_skipped));
	if (r->warning)
		json_object_set_new(f, "warning", str_or_null(r->warning));
	return f;
}

void evlog_learned(struct evlog *log, const char *to, const char *source, const char *status,
                   const char *response)
{
	json_t *f;
	if (!log || !(f = json_object()))
		return;
	json_object_set_new(f, "to", str_or_null(to));
	json_object_set_new(f, "source", json_string(source));
	json_object_set_new(f, "status", str_or_null(status));
	json_object_set_new(f, "response", str_or_null(response));
	evlog_emit(log, "learned", f);
}

json_t *evlog_str(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, bad;
	char *out;
	json_t *j;

	if (!s)
		return json_null();
	/* Each bad byte becomes at most 3: the output is bounded. */
	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	out = malloc(len * 3 + 1);
	if (!out)
		return NULL;
	while (i < len) {
		size_t n = utf8_seq(p + i, len - i, &bad);

		if (n) {
			memcpy(out + o, p + i, n);
			o += n;
			i += n;
		} else {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i += bad;
		}
	}
	j = json_stringn(out, o);
	free(out);
	return j;
}

/*
 * A copy of v in which every string is valid UTF-8. Only needed when a
 * caller built a string with json_stringn_nocheck(): jansson would then
 * refuse to dump the whole line, and the event would be lost.
 */
static json_t *sanitize(json_t *v)
{
	json_t *c;
	const char *key;
	json_t *val;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return evlog_str(json_string_value(v), json_string_length(v));
	case JSON_OBJECT:
		c = json_object();
		if (!c)
			return NULL;
		json_object_foreach(v, key, val) {
			if (json_object_set_new(c, key, sanitize(val))) {
				json_decref(c);
				return NULL;
			}
		}
		return c;
	case JSON_ARRAY:
		c = json_array();
		if (!c)
			return NULL;
		json_array_foreach(v, i, val) {
			if (json_array_append_new(c, sanitize(val))) {
				json_decref(c);
				return NULL;
			}
		}
		return c;
	default:
		return json_incref(v);
	}
}

/*
 * The common case without a copy of the fields: their own text, its "{"
 * replaced by ts and event. Only for an event name that needs no escaping
 * and fields that do not name ts or event themselves; NULL otherwise (and
 * when the fields cannot be dumped).
 */
static char *evlog_format_fast(const char *event, json_t *fields)
{
	for (const char *p = event; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x80)
			return NULL;
	if (!json_is_object(fields) || json_object_size(fields) == 0 ||
	    json_object_get(fields, "ts") || json_object_get(fields, "event"))
		return NULL;
	char *body = json_dumps(fields, JSON_COMPACT);
	if (!body)
		return NULL;
	char ts[EVLOG_TS_SIZE];
	evlog_now_rfc3339(ts, sizeof(ts));
	char *line = NULL;
	if (asprintf(&line, "{\"ts\":\"%s\",\"event\":\"%s\",%s", ts, event, body + 1) < 0)
		line = NULL;
	free(body);
	return line;
}

static char *evlog_format(const char *event, json_t *fields)
{
	char ts[EVLOG_TS_SIZE];
	char *fast = evlog_format_fast(event, fields);
	if (fast)
		return fast;
	json_t *o = json_object();
	const char *key;
	json_t *val;
	char *line = NULL;

	if (!o)
		return NULL;
	evlog_now_rfc3339(ts, sizeof(ts));
	if (json_object_set_new(o, "ts", json_string(ts)) ||
	    json_object_set_new(o, "event", evlog_str(event, strlen(event))))
		goto out;
	if (json_is_object(fields)) {
		json_object_foreach(fields, key, val) {
			/* ts and event are ours: a field must not overwrite them. */
			if (!strcmp(key, "ts") || !strcmp(key, "event"))
				continue;
			if (json_object_set(o, key, val))
				goto out;
		}
	}
	/* Jansson (>= 2.8) keeps object keys in insertion order; JSON_COMPACT
	 * has no newline; without JSON_ENSURE_ASCII UTF-8 goes out as is. */
	line = json_dumps(o, JSON_COMPACT);
out:
	json_decref(o);
	return line;
}

void evlog_emit(struct evlog *log, const char *event, json_t *fields)
{
	char *line, *nl;
	size_t len;
	int rc;

	if (!log || !event)
		goto out_fields;
	if (log->observer)
		log->observer(log->observer_arg, event, fields);
	line = evlog_format(event, fields);
	if (!line && fields) {
		json_t *clean = sanitize(fields);

		line = clean ? evlog_format(event, clean) : NULL;
		json_decref(clean);
	}
	if (!line) {
		/* Out of memory: still say that something happened. */
		line = evlog_format(event, NULL);
		if (!line) {
			rc = -ENOMEM;
			goto fail;
		}
	}

	len = strlen(line);
	nl = realloc(line, len + 2);
	if (!nl) {
		free(line);
		rc = -ENOMEM;
		goto fail;
	}
	line = nl;
	line[len++] = '\n';
	line[len] = '\0';
	/* One write per line: with O_APPEND the line lands whole at the end
	 * of the file; a loop only matters after a short write (disk full). */
	struct iovec v = { line, len };
	rc = fs_writev_all(log->fd, &v, 1, -1);
	free(line);
	if (rc)
		goto fail;
	atomic_store(&log->failing, false);
	goto out_fields;

fail:
	if (!atomic_exchange(&log->failing, true))
		fprintf(stderr, "hikyaku: event log %s: %s (further errors not shown)\n",
		        log->path, strerror(-rc));
out_fields:
	json_decref(fields);
}
