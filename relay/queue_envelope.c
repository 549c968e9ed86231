/*
 * queue_envelope - a queued mail's envelope: the JSON line of its queue
 * file both ways, and reading it back from DIR/mail/ID. See queue.h for
 * the format and the contract. (It was the second half of relay/queue.c,
 * which keeps the commit path and its promise.)
 * TOUCHES
 *	Memory only, but queue_read_envelope(): it reads DIR/mail/ID as far
 *	as the end of the envelope line.
 */
#include "relay/queue.h"
#include "relay/queue_state.h"   /* the recipients' state names */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"

static json_t *jstr_or_null(const char *s)
{
	/* json_string() refuses invalid UTF-8: so does the queue, as a mail
	 * whose envelope cannot be read back would be a lost mail. */
	return s ? json_string(s) : json_null();
}

json_t *queue_envelope_to_json(const struct queue_envelope *env)
{
	json_t *o, *rcpts;

	if (!env || !queue_id_valid(env->id) || (env->nrcpts && !env->rcpts))
		return NULL;
	if (env->arrival_ms > INT64_MAX || env->size > INT64_MAX)
		return NULL;
	o = json_object();
	rcpts = json_array();
	if (!o || !rcpts)
		goto fail;

	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *rc = &env->rcpts[i];
		const char *state = queue_rcpt_state_name(rc->state);
		enum queue_rcpt_state back;
		json_t *e;

		/* One of the states (a name for any other value reads back as
		 * another state). */
		if (!rc->addr || queue_rcpt_state_parse(state, &back) < 0 || back != rc->state)
			goto fail;
		e = json_object();
		if (!e || json_array_append_new(rcpts, e) ||
		    json_object_set_new(e, "addr", json_string(rc->addr)) ||
		    json_object_set_new(e, "state", json_string(state)))
			goto fail;
	}

	if (json_object_set_new(o, "id", json_string(env->id)) ||
	    json_object_set_new(o, "arrival_ms", json_integer((json_int_t)env->arrival_ms)) ||
	    json_object_set_new(o, "session", jstr_or_null(env->session)) ||
	    json_object_set_new(o, "from", jstr_or_null(env->from)))
		goto fail;
	/* From here on rcpts belongs to o (set_new steals it even on error). */
	if (json_object_set_new(o, "rcpts", rcpts))
		goto fail_o;
	if (json_object_set_new(o, "client_ip", jstr_or_null(env->client_ip)) ||
	    json_object_set_new(o, "helo", jstr_or_null(env->helo)) ||
	    json_object_set_new(o, "tls", jstr_or_null(env->tls)) ||
	    json_object_set_new(o, "auth_user", jstr_or_null(env->auth_user)) ||
	    json_object_set_new(o, "smtputf8", json_boolean(env->smtputf8)) ||
	    json_object_set_new(o, "body_8bit", json_boolean(env->body_8bit)) ||
	    json_object_set_new(o, "size", json_integer((json_int_t)env->size)) ||
	    json_object_set_new(o, "header_from", jstr_or_null(env->header_from)) ||
	    json_object_set_new(o, "message_id", jstr_or_null(env->message_id)) ||
	    json_object_set_new(o, "route", jstr_or_null(env->route)) ||
	    json_object_set_new(o, "matched", jstr_or_null(env->matched)))
		goto fail_o;
	return o;

fail:
	json_decref(rcpts);
fail_o:
	json_decref(o);
	return NULL;
}

/* A JSON string usable as a C string: jansson strings may hold NULs. */
static const char *json_cstr(const json_t *v)
{
	const char *s;

	if (!json_is_string(v))
		return NULL;
	s = json_string_value(v);
	return strlen(s) == json_string_length(v) ? s : NULL;
}

/* Key present, and a string or null; *out gets a copy or NULL. */
static int get_nullable_str(const json_t *j, const char *key, char **out)
{
	const json_t *v = json_object_get(j, key);
	const char *s;

	if (!v)
		return -EINVAL;
	if (json_is_null(v)) {
		*out = NULL;
		return 0;
	}
	if (!(s = json_cstr(v)))
		return -EINVAL;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int get_u64(const json_t *j, const char *key, uint64_t *out)
{
	const json_t *v = json_object_get(j, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EINVAL;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_bool(const json_t *j, const char *key, bool *out)
{
	const json_t *v = json_object_get(j, key);

	if (!json_is_boolean(v))
		return -EINVAL;
	*out = json_is_true(v);
	return 0;
}

static int get_rcpts(const json_t *j, struct queue_envelope *e)
{
	const json_t *a = json_object_get(j, "rcpts");
	size_t n;

	if (!json_is_array(a))
		return -EINVAL;
	n = json_array_size(a);
	if (n == 0)
		return 0;
	e->rcpts = calloc(n, sizeof(*e->rcpts));
	if (!e->rcpts)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *o = json_array_get(a, i);
		const char *addr, *state;
		enum queue_rcpt_state s;

		if (!json_is_object(o))
			return -EINVAL;
		addr = json_cstr(json_object_get(o, "addr"));
		state = json_cstr(json_object_get(o, "state"));
		if (!addr || !state)
			return -EINVAL;
		if (queue_rcpt_state_parse(state, &s) < 0)
			return -EINVAL;
		e->rcpts[i].addr = strdup(addr);
		if (!e->rcpts[i].addr)
			return -ENOMEM;
		e->rcpts[i].state = s;
		/* Counted as we go, so queue_envelope_free() frees exactly these. */
		e->nrcpts = i + 1;
	}
	return 0;
}

int queue_envelope_from_json(const json_t *j, struct queue_envelope *env)
{
	struct queue_envelope e;
	const char *id;
	int rc;

	memset(&e, 0, sizeof(e));
	if (!env || !json_is_object(j))
		return -EINVAL;

	id = json_cstr(json_object_get(j, "id"));
	if (!queue_id_valid(id))
		return -EINVAL;
	memcpy(e.id, id, sizeof(e.id));

	/*
	 * Every key is required: a queue file is only ever written by
	 * queue_envelope_to_json(), so a missing key means damage. Unknown
	 * keys are ignored, so that a newer writer stays readable.
	 */
	if ((rc = get_u64(j, "arrival_ms", &e.arrival_ms)) ||
	    (rc = get_nullable_str(j, "session", &e.session)) ||
	    (rc = get_nullable_str(j, "from", &e.from)) ||
	    (rc = get_rcpts(j, &e)) ||
	    (rc = get_nullable_str(j, "client_ip", &e.client_ip)) ||
	    (rc = get_nullable_str(j, "helo", &e.helo)) ||
	    (rc = get_nullable_str(j, "tls", &e.tls)) ||
	    (rc = get_nullable_str(j, "auth_user", &e.auth_user)) ||
	    (rc = get_bool(j, "smtputf8", &e.smtputf8)) ||
	    (rc = get_bool(j, "body_8bit", &e.body_8bit)) ||
	    (rc = get_u64(j, "size", &e.size)) ||
	    (rc = get_nullable_str(j, "header_from", &e.header_from)) ||
	    (rc = get_nullable_str(j, "message_id", &e.message_id)) ||
	    (rc = get_nullable_str(j, "route", &e.route)) ||
	    (rc = get_nullable_str(j, "matched", &e.matched)))
		goto fail;

	*env = e;
	return 0;

fail:
	queue_envelope_free(&e);
	return rc;
}

/* strdup() that keeps NULL, and tells a failure from it. */
static bool dup_field(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return !src || *dst;
}

int queue_envelope_copy(struct queue_envelope *dst, const struct queue_envelope *src)
{
	struct queue_envelope e = *src;
	e.rcpts = calloc(src->nrcpts ? src->nrcpts : 1, sizeof(*e.rcpts));
	bool ok = e.rcpts != NULL;
	e.nrcpts = ok ? src->nrcpts : 0;
	for (size_t i = 0; i < e.nrcpts; i++) {
		e.rcpts[i].state = src->rcpts[i].state;
		ok = dup_field(&e.rcpts[i].addr, src->rcpts[i].addr) && ok;
	}
	ok = dup_field(&e.session, src->session) && ok;
	ok = dup_field(&e.from, src->from) && ok;
	ok = dup_field(&e.client_ip, src->client_ip) && ok;
	ok = dup_field(&e.helo, src->helo) && ok;
	ok = dup_field(&e.tls, src->tls) && ok;
	ok = dup_field(&e.auth_user, src->auth_user) && ok;
	ok = dup_field(&e.header_from, src->header_from) && ok;
	ok = dup_field(&e.message_id, src->message_id) && ok;
	ok = dup_field(&e.route, src->route) && ok;
	ok = dup_field(&e.matched, src->matched) && ok;
	if (!ok) {
		queue_envelope_free(&e);
		return -ENOMEM;
	}
	*dst = e;
	return 0;
}

void queue_envelope_free(struct queue_envelope *env)
{
	if (!env)
		return;
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].last);
	}
	free(env->rcpts);
	env->rcpts = NULL;
	env->nrcpts = 0;
	free(env->session);
	free(env->from);
	free(env->client_ip);
	free(env->helo);
	free(env->tls);
	free(env->auth_user);
	free(env->header_from);
	free(env->message_id);
	free(env->route);
	free(env->matched);
	env->session = env->from = env->client_ip = env->helo = NULL;
	env->tls = env->auth_user = env->header_from = NULL;
	env->message_id = env->route = env->matched = NULL;
}

/* ---- reading a queued mail's envelope */

int queue_envelope_parse(const char *p, size_t len, const char *id, struct queue_envelope *env,
                         uint64_t *data_offset)
{
	const size_t max = QUEUE_MAGIC_LEN + 1 + QUEUE_ENVELOPE_MAX + 1;
	if (len > max)
		len = max;
	if (len < QUEUE_MAGIC_LEN + 1 || memcmp(p, QUEUE_MAGIC "\n", QUEUE_MAGIC_LEN + 1))
		return -EINVAL;
	const char *nl = memchr(p + QUEUE_MAGIC_LEN + 1, '\n', len - (QUEUE_MAGIC_LEN + 1));
	if (!nl)
		return -EINVAL;         /* truncated, or the line too long */
	/* json_loadb() refuses NUL bytes and trailing garbage on the line. */
	json_t *j = json_loadb(p + QUEUE_MAGIC_LEN + 1, (size_t)(nl - p) - (QUEUE_MAGIC_LEN + 1),
	                       JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return -EINVAL;
	int rc = queue_envelope_from_json(j, env);
	json_decref(j);
	if (rc)
		return rc;
	/* A file that names another mail is damaged, not a second copy. */
	if (strcmp(env->id, id)) {
		queue_envelope_free(env);
		return -EINVAL;
	}
	if (data_offset)
		*data_offset = (uint64_t)(nl - p) + 1;
	return 0;
}

int queue_read_envelope(const char *dir, const char *id, struct queue_envelope *env,
                        uint64_t *data_offset)
{
	char path[PATH_MAX];
	const size_t max = QUEUE_MAGIC_LEN + 1 + QUEUE_ENVELOPE_MAX + 1;
	size_t scanned = QUEUE_MAGIC_LEN + 1;
	const char *nl = NULL;
	buf_t b;
	int fd, n, rc;

	if (!dir || !env || !queue_id_valid(id))
		return -EINVAL;
	n = snprintf(path, sizeof(path), "%s/mail/%s", dir, id);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;

	/* Read only as far as the end of the envelope line, and at most max:
	 * the message after it may be large and is not ours to load. */
	buf_init(&b, max);
	while (!nl) {
		size_t want = b.len < 4096 ? 4096 : b.len;
		ssize_t got;

		if (want > max - b.len)
			want = max - b.len;
		if (want == 0) {
			rc = -EINVAL;           /* envelope line too long */
			goto out;
		}
		if ((rc = buf_reserve(&b, want)))
			goto out;
		got = read(fd, b.data + b.len, want);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		if (got == 0) {
			rc = -EINVAL;           /* truncated */
			goto out;
		}
		b.len += (size_t)got;
		if (b.len < QUEUE_MAGIC_LEN + 1)
			continue;
		if (memcmp(b.data, QUEUE_MAGIC "\n", QUEUE_MAGIC_LEN + 1)) {
			rc = -EINVAL;
			goto out;
		}
		nl = memchr(b.data + scanned, '\n', b.len - scanned);
		scanned = b.len;
	}

	rc = queue_envelope_parse(b.data, b.len, id, env, data_offset);

out:
	buf_free(&b);
	close(fd);
	return rc;
}
