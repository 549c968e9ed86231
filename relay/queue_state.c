/*
 * queue_state - a queued mail's delivery state, on disk and as shown.
 * See queue_state.h.
 */
#include "relay/queue_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relay/queue_wal.h"
#include "util/clock.h"

#define STATE_MAX ((size_t)1 << 20)

static const char *const state_names[] = {
	[RCPT_PENDING] = "pending",
	[RCPT_DELIVERED] = "delivered",
	[RCPT_BOUNCED] = "bounced",
	[RCPT_EXPIRED] = "expired",
	[RCPT_SUPPRESSED] = "suppressed",
};

const char *queue_rcpt_state_name(enum queue_rcpt_state s)
{
	if ((size_t)s < sizeof(state_names) / sizeof(state_names[0]))
		return state_names[s];
	return "pending";
}

int queue_rcpt_state_parse(const char *s, enum queue_rcpt_state *out)
{
	for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum queue_rcpt_state)i;
			return 0;
		}
	return -EINVAL;
}

static json_t *str_or_null(const char *s)
{
	/* The queue holds only valid UTF-8 (queue.h); a response from a
	 * remote server may not be: json_string() then fails to null. */
	json_t *j = s ? json_string(s) : NULL;
	return j ? j : json_null();
}

char *queue_state_dump(const struct queue_envelope *env, const struct queue_state *st)
{
	json_t *o = json_object();
	json_object_set_new(o, "attempts", json_integer(st->attempts));
	json_object_set_new(o, "next_ms", json_integer((json_int_t)st->next_ms));
	json_object_set_new(o, "last_ms", json_integer((json_int_t)st->last_ms));
	json_t *a = json_array(), *l = json_array();
	for (size_t i = 0; i < env->nrcpts; i++) {
		json_array_append_new(a, json_string(queue_rcpt_state_name(env->rcpts[i].state)));
		json_array_append_new(l, str_or_null(env->rcpts[i].last));
	}
	json_object_set_new(o, "rcpts", a);
	json_object_set_new(o, "last", l);
	json_object_set_new(o, "notify", st->notify ? json_incref(st->notify) : json_array());
	if (st->warned_ms)
		json_object_set_new(o, "warned_ms", json_integer((json_int_t)st->warned_ms));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

static uint64_t get_u64(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

int queue_state_parse(const char *text, size_t len, struct queue_envelope *env,
                      struct queue_state *st)
{
	json_error_t err;
	json_t *o = json_loadb(text, len, 0, &err);
	memset(st, 0, sizeof(*st));
	if (!json_is_object(o)) {
		json_decref(o);
		return -EINVAL;
	}
	uint64_t at = get_u64(o, "attempts");
	st->attempts = at > UINT_MAX ? UINT_MAX : (unsigned)at;
	st->next_ms = get_u64(o, "next_ms");
	st->last_ms = get_u64(o, "last_ms");
	st->warned_ms = get_u64(o, "warned_ms");
	json_t *a = json_object_get(o, "rcpts");
	json_t *l = json_object_get(o, "last");
	if (json_is_array(a) && json_array_size(a) == env->nrcpts) {
		for (size_t i = 0; i < env->nrcpts; i++) {
			const char *s = json_string_value(json_array_get(a, i));
			enum queue_rcpt_state rs;
			if (s && queue_rcpt_state_parse(s, &rs) == 0)
				env->rcpts[i].state = rs;
			const char *r = json_string_value(json_array_get(l, i));
			if (r && json_array_size(l) == env->nrcpts) {
				free(env->rcpts[i].last);
				env->rcpts[i].last = strdup(r);
			}
		}
	}
	json_t *nt = json_object_get(o, "notify");
	if (json_is_array(nt) && json_array_size(nt) > 0)
		st->notify = json_incref(nt);
	json_decref(o);
	return 0;
}

int queue_state_load(const char *dir, const char *id, struct queue_envelope *env,
                     struct queue_state *st)
{
	memset(st, 0, sizeof(*st));
	if (!queue_id_valid(id))
		return -EINVAL;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/state/%s", dir, id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	char *text = malloc(STATE_MAX);
	ssize_t n = text ? read(fd, text, STATE_MAX) : -1;
	int e = n < 0 ? (text ? -errno : -ENOMEM) : 0;
	close(fd);
	if (e == 0)
		e = queue_state_parse(text, (size_t)n, env, st);
	free(text);
	return e;
}

static json_t *time_or_null(uint64_t ms)
{
	if (!ms)
		return json_null();
	char ts[40];
	clock_rfc3339(ms, ts, sizeof(ts));
	return json_string(ts);
}

json_t *queue_view(const struct queue_envelope *env, const struct queue_state *st, bool all)
{
	json_t *o = json_object();
	json_object_set_new(o, "queue_id", json_string(env->id));
	json_object_set_new(o, "arrival", time_or_null(env->arrival_ms));
	json_object_set_new(o, "size", json_integer((json_int_t)env->size));
	json_object_set_new(o, "from", str_or_null(env->from));
	json_object_set_new(o, "header_from", str_or_null(env->header_from));
	json_object_set_new(o, "message_id", str_or_null(env->message_id));
	json_object_set_new(o, "route", str_or_null(env->route));
	json_object_set_new(o, "matched", str_or_null(env->matched));
	json_object_set_new(o, "client", str_or_null(env->client_ip));
	json_object_set_new(o, "helo", str_or_null(env->helo));
	json_object_set_new(o, "tls", str_or_null(env->tls));
	json_object_set_new(o, "auth_user", str_or_null(env->auth_user));
	json_object_set_new(o, "attempts", json_integer(st->attempts));
	json_object_set_new(o, "last_try", time_or_null(st->last_ms));
	json_object_set_new(o, "next_try", time_or_null(st->next_ms));
	json_object_set_new(o, "delay_warning", time_or_null(st->warned_ms));
	json_t *rc = json_array();
	unsigned pending = 0;
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->state == RCPT_PENDING)
			pending++;
		else if (!all)
			continue;
		json_t *e = json_object();
		json_object_set_new(e, "to", str_or_null(r->addr));
		json_object_set_new(e, "state", json_string(queue_rcpt_state_name(r->state)));
		json_object_set_new(e, "response", str_or_null(r->last));
		json_array_append_new(rc, e);
	}
	json_object_set_new(o, "pending", json_integer(pending));
	json_object_set_new(o, "rcpts", rc);
	return o;
}

/* The view of a mail whose envelope is read; env is freed. */
static json_t *env_view(const char *dir, struct queue_envelope *env, bool all)
{
	struct queue_state st;
	queue_state_load(dir, env->id, env, &st); /* unreadable state: shown as never tried */
	json_t *v = queue_view(env, &st, all);
	json_decref(st.notify);
	queue_envelope_free(env);
	return v;
}

static int spool_view(const char *dir, const char *id, bool all, json_t **out)
{
	struct queue_envelope env;
	uint64_t off;
	memset(&env, 0, sizeof(env));
	int rc = queue_read_envelope(dir, id, &env, &off);
	if (rc < 0)
		return rc;
	*out = env_view(dir, &env, all);
	return 0;
}

/* Mails still in the segment log (relay/queue_wal.h): read once, at the
 * same time, not per id. */
struct wal_views {
	const char *dir;
	const char *only;       /* one id, or NULL for all */
	bool all;
	json_t *views;          /* array */
};

static int wal_view_one(void *arg, const char *id, const char *payload, size_t len)
{
	struct wal_views *w = arg;
	struct queue_envelope env;
	memset(&env, 0, sizeof(env));
	if (w->only && strcmp(id, w->only))
		return 0;
	if (queue_envelope_parse(payload, len, id, &env, NULL) == 0)
		json_array_append_new(w->views, env_view(w->dir, &env, w->all));
	return 0;
}

static int view_cmp(const void *a, const void *b)
{
	const char *x = json_string_value(json_object_get(*(json_t *const *)a, "queue_id"));
	const char *y = json_string_value(json_object_get(*(json_t *const *)b, "queue_id"));
	return strcmp(x ? x : "", y ? y : "");
}

int queue_spool_read(const char *dir, json_t **out)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/mail", dir);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	size_t n = 0, cap = 0;
	char **ids = NULL;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (!queue_id_valid(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **t = realloc(ids, cap * sizeof(*ids));
			if (!t) {
				rc = -ENOMEM;
				break;
			}
			ids = t;
		}
		if (!(ids[n] = strdup(de->d_name))) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *v;
		/* A mail delivered meanwhile is gone: not an error. */
		if (rc == 0 && spool_view(dir, ids[i], false, &v) == 0)
			json_array_append_new(a, v);
		free(ids[i]);
	}
	free(ids);
	struct wal_views wv = { dir, NULL, false, a };
	if (rc == 0)
		rc = wal_scan(dir, wal_view_one, &wv);
	if (rc < 0) {
		json_decref(a);
		return rc;
	}
	/* Ids are arrival times in hex of one width: sorted, oldest first. */
	size_t na = json_array_size(a);
	json_t **v = calloc(na ? na : 1, sizeof(*v));
	if (!v) {
		json_decref(a);
		return -ENOMEM;
	}
	for (size_t i = 0; i < na; i++)
		v[i] = json_incref(json_array_get(a, i));
	qsort(v, na, sizeof(*v), view_cmp);
	json_array_clear(a);
	for (size_t i = 0; i < na; i++)
		json_array_append_new(a, v[i]);
	free(v);
	*out = a;
	return 0;
}

int queue_spool_show(const char *dir, const char *id, json_t **out)
{
	if (!queue_id_valid(id))
		return -ENOENT;
	int rc = spool_view(dir, id, true, out);
	if (rc != -ENOENT)
		return rc;
	struct wal_views wv = { dir, id, true, json_array() };
	rc = wal_scan(dir, wal_view_one, &wv);
	if (rc == 0 && json_array_size(wv.views) == 0)
		rc = -ENOENT;
	if (rc == 0)
		*out = json_incref(json_array_get(wv.views, 0));
	json_decref(wv.views);
	return rc;
}
