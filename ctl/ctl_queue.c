/*
 * ctl_queue - "hikyakuctl queue ..." and "hikyakuctl status".
 * See ctl_queue.h.
 */
#include "ctl/ctl_queue.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <jansson.h>

#include "config/config.h"
#include "ctl/ctl_control.h"
#include "relay/queue_state.h"
#include "util/clock.h"
#include "util/esc.h"

/* A string of the daemon's answer, shown escaped (util/esc.h, SPEC §8). */
static const char *jstr(const json_t *o, const char *key)
{
	return esc_tmp(json_string_value(json_object_get(o, key)));
}

static long long jint(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/* An RFC 3339 time of the daemon as local time, "2026-11-26 17:40:01". */
static char *local_time(const char *rfc3339)
{
	if (!rfc3339)
		return NULL;
	int64_t ms;
	GDateTime *l = clock_rfc3339_parse(rfc3339, &ms) == 0
	               ? g_date_time_new_from_unix_local(ms / 1000 - (ms % 1000 < 0)) : NULL;
	if (!l)
		return g_strdup(rfc3339);
	char *s = g_date_time_format(l, "%Y-%m-%d %H:%M:%S");
	g_date_time_unref(l);
	return s;
}

static void human_size(long long n, char *out, size_t cap)
{
	static const char units[] = "KMGT";
	if (n < 1024) {
		snprintf(out, cap, "%lld B", n);
		return;
	}
	double v = (double)n;
	int u = -1;
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(out, cap, "%.1f%c", v, units[u]);
}

static int print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	if (!s)
		return 2;
	char *e = esc_json(s, -1);
	puts(e);
	g_free(e);
	free(s);
	return 0;
}

/* Asks the daemon; returns CTL_OK with the answer, or prints why not. */
static int ask(const struct config *cfg, json_t *req, json_t **ans, bool quiet_down)
{
	char err[600];
	int rc = ctl_request(cfg->control.socket, req, ans, err, sizeof(err));
	json_decref(req);
	if (rc == CTL_DOWN && quiet_down)
		return rc;
	if (rc == CTL_DOWN)
		fprintf(stderr, "hikyakuctl: hikyaku is not running (%s).\n", esc_tmp(err));
	else if (rc != CTL_OK)
		fprintf(stderr, "hikyakuctl: %s.\n", esc_tmp(err));
	return rc;
}

/* An answer with "ok": false: prints its sentence; 1 for not_found. */
static int refused(json_t *ans)
{
	const char *code = jstr(ans, "code");
	fprintf(stderr, "hikyakuctl: %s.\n", jstr(ans, "error") ? jstr(ans, "error") : "refused");
	int rc = code && strcmp(code, "not_found") == 0 ? 1 : 2;
	json_decref(ans);
	return rc;
}

/* ---- queue list ------------------------------------------------------ */

#define LIST_COLS 7

static const char *const list_head[LIST_COLS] = {
	"QUEUE ID", "ARRIVED", "SIZE", "ROUTE", "TRIES", "NEXT TRY", "FROM",
};

static void list_row(const json_t *m, char **col)
{
	char size[32], tries[16];
	human_size(jint(m, "size"), size, sizeof(size));
	snprintf(tries, sizeof(tries), "%lld", jint(m, "attempts"));
	col[0] = g_strdup(jstr(m, "queue_id") ? jstr(m, "queue_id") : "?");
	col[1] = local_time(jstr(m, "arrival"));
	if (!col[1])
		col[1] = g_strdup("-");
	col[2] = g_strdup(size);
	col[3] = g_strdup(jstr(m, "route") ? jstr(m, "route") : "-");
	col[4] = g_strdup(tries);
	if (json_is_true(json_object_get(m, "active")))
		col[5] = g_strdup("now (active)");
	else if (!jstr(m, "next_try"))
		col[5] = g_strdup("now");
	else
		col[5] = local_time(jstr(m, "next_try"));
	const char *from = jstr(m, "from");
	col[6] = g_strdup(from && *from ? from : "<>");
}

static void print_padded(const char *s, size_t width, bool last)
{
	fputs(s, stdout);
	if (last)
		return;
	for (glong w = g_utf8_strlen(s, -1); (size_t)w < width + 2; w++)
		putchar(' ');
}

static int print_list(const json_t *mails)
{
	size_t n = json_array_size(mails);
	if (n == 0) {
		printf("The queue is empty.\n");
		return 0;
	}
	char *(*rows)[LIST_COLS] = calloc(n, sizeof(*rows));
	size_t width[LIST_COLS];
	for (int c = 0; c < LIST_COLS; c++)
		width[c] = strlen(list_head[c]);
	long long pending = 0, bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const json_t *m = json_array_get(mails, i);
		list_row(m, rows[i]);
		for (int c = 0; c < LIST_COLS; c++) {
			size_t w = (size_t)g_utf8_strlen(rows[i][c], -1);
			if (w > width[c])
				width[c] = w;
		}
		pending += jint(m, "pending");
		bytes += jint(m, "size");
	}
	for (int c = 0; c < LIST_COLS; c++)
		print_padded(list_head[c], width[c], c == LIST_COLS - 1);
	putchar('\n');
	for (size_t i = 0; i < n; i++) {
		const json_t *m = json_array_get(mails, i);
		for (int c = 0; c < LIST_COLS; c++) {
			print_padded(rows[i][c], width[c], c == LIST_COLS - 1);
			g_free(rows[i][c]);
		}
		putchar('\n');
		size_t k;
		json_t *r;
		json_array_foreach(json_object_get(m, "rcpts"), k, r) {
			const char *resp = jstr(r, "response");
			printf("    to %s: %s\n", jstr(r, "to") ? jstr(r, "to") : "?",
			       resp ? resp : "not tried yet");
		}
	}
	free(rows);
	char size[32];
	human_size(bytes, size, sizeof(size));
	printf("-- %zu mail%s, %lld recipient%s pending, %s\n", n, n == 1 ? "" : "s", pending,
	       pending == 1 ? "" : "s", size);
	return 0;
}

/* ---- queue show ------------------------------------------------------ */

static void field(const char *name, const char *value)
{
	/* The values are escaped (jstr); a line cut by snprintf() may still
	 * end inside a character: never print half of one. */
	const char *end;
	if (!g_utf8_validate(value, -1, &end))
		printf("%-13s%.*s\n", name, (int)(end - value), value);
	else
		printf("%-13s%s\n", name, value);
}

static int print_mail(const json_t *m)
{
	char *t = local_time(jstr(m, "arrival"));
	const char *from = jstr(m, "from");
	field("Queue ID:", jstr(m, "queue_id") ? jstr(m, "queue_id") : "?");
	field("Arrived:", t ? t : "-");
	g_free(t);
	field("Sender:", from && *from ? from : "<> (the null sender: a bounce)");
	field("From:", jstr(m, "header_from") ? jstr(m, "header_from") : "-");
	field("Message-ID:", jstr(m, "message_id") ? jstr(m, "message_id") : "-");
	char line[1200];
	snprintf(line, sizeof(line), "%lld bytes", jint(m, "size"));
	field("Size:", line);
	int o = snprintf(line, sizeof(line), "%s", jstr(m, "client") ? jstr(m, "client") : "?");
	if (jstr(m, "helo"))
		o += snprintf(line + o, sizeof(line) - (size_t)o, " (HELO %s)", jstr(m, "helo"));
	o += snprintf(line + o, sizeof(line) - (size_t)o, ", %s", jstr(m, "tls") ? jstr(m, "tls") : "no TLS");
	if (jstr(m, "auth_user"))
		snprintf(line + o, sizeof(line) - (size_t)o, ", AUTH %s", jstr(m, "auth_user"));
	field("Client:", line);
	const char *route = jstr(m, "route") ? jstr(m, "route") : "-";
	if (jstr(m, "matched"))
		snprintf(line, sizeof(line), "%s (matched \"%s\")", route, jstr(m, "matched"));
	else
		snprintf(line, sizeof(line), "%s", route);
	field("Route:", line);
	char *last = local_time(jstr(m, "last_try"));
	char *next = local_time(jstr(m, "next_try"));
	o = snprintf(line, sizeof(line), "%lld", jint(m, "attempts"));
	if (last)
		o += snprintf(line + o, sizeof(line) - (size_t)o, ", last %s", last);
	if (json_is_true(json_object_get(m, "active")))
		snprintf(line + o, sizeof(line) - (size_t)o, ", being delivered now");
	else
		snprintf(line + o, sizeof(line) - (size_t)o, ", next %s", next ? next : "now");
	field("Attempts:", line);
	g_free(last);
	g_free(next);
	char *warned = local_time(jstr(m, "delay_warning"));
	if (warned) {
		snprintf(line, sizeof(line), "a delay warning was sent to the sender %s", warned);
		field("Delayed:", line);
		g_free(warned);
	}
	printf("Recipients:\n");
	const json_t *rc = json_object_get(m, "rcpts");
	size_t wt = 0, ws = 0, k;
	json_t *r;
	json_array_foreach(rc, k, r) {
		size_t a = (size_t)g_utf8_strlen(jstr(r, "to") ? jstr(r, "to") : "?", -1);
		size_t b = strlen(jstr(r, "state") ? jstr(r, "state") : "?");
		wt = a > wt ? a : wt;
		ws = b > ws ? b : ws;
	}
	json_array_foreach(rc, k, r) {
		fputs("  ", stdout);
		print_padded(jstr(r, "to") ? jstr(r, "to") : "?", wt, false);
		print_padded(jstr(r, "state") ? jstr(r, "state") : "?", ws, false);
		const char *resp = jstr(r, "response");
		printf("%s\n", resp ? resp : (strcmp(jstr(r, "state") ? jstr(r, "state") : "", "pending") == 0
		                              ? "not tried yet" : "-"));
	}
	return 0;
}

/* ---- commands -------------------------------------------------------- */

/*
 * The daemon's view of the queue (one mail when id is set), or, when no
 * daemon answers, the same view read from the spool. 0 with *out set,
 * else the exit status (a message is printed).
 */
static int queue_fetch(const struct config *cfg, const char *id, json_t **out)
{
	json_t *ans = NULL;
	json_t *req = id ? json_pack("{s:s,s:s}", "cmd", "queue.show", "id", id)
	                 : json_pack("{s:s}", "cmd", "queue.list");
	int rc = ask(cfg, req, &ans, true);
	if (rc == CTL_OK) {
		if (!json_is_true(json_object_get(ans, "ok")))
			return refused(ans);
		*out = json_incref(json_object_get(ans, id ? "mail" : "mails"));
		json_decref(ans);
		return 0;
	}
	if (rc != CTL_DOWN)
		return 2;
	const char *dir = cfg->queue.dir;
	fprintf(stderr, "hikyakuctl: hikyaku is not running; read from the spool %s\n", dir);
	int e = id ? queue_spool_show(dir, id, out) : queue_spool_read(dir, out);
	if (e == -ENOENT && id) {
		fprintf(stderr, "hikyakuctl: no mail %s in the queue.\n", esc_tmp(id));
		return 1;
	}
	if (e < 0) {
		fprintf(stderr, "hikyakuctl: cannot read the spool %s: %s%s.\n", dir, strerror(-e),
		        e == -EACCES ? " (it is readable by root and the daemon's user only)" : "");
		return 2;
	}
	return 0;
}

static int queue_list(const struct config *cfg, bool as_json)
{
	json_t *mails = NULL;
	int rc = queue_fetch(cfg, NULL, &mails);
	if (rc)
		return rc;
	rc = as_json ? print_json(mails) : print_list(mails);
	json_decref(mails);
	return rc;
}

static int queue_show(const struct config *cfg, const char *id, bool as_json)
{
	json_t *mail = NULL;
	int rc = queue_fetch(cfg, id, &mail);
	if (rc)
		return rc;
	rc = as_json ? print_json(mail) : print_mail(mail);
	json_decref(mail);
	return rc;
}

static int queue_act(const struct config *cfg, const char *cmd, const char *id)
{
	json_t *ans = NULL;
	json_t *req = id ? json_pack("{s:s,s:s}", "cmd", cmd, "id", id)
	                 : json_pack("{s:s,s:b}", "cmd", cmd, "all", 1);
	if (ask(cfg, req, &ans, false) != CTL_OK)
		return 2;
	if (!json_is_true(json_object_get(ans, "ok")))
		return refused(ans);
	if (strcmp(cmd, "queue.retry") == 0) {
		long long n = jint(ans, "mails");
		printf("retry scheduled for %lld mail%s\n", n, n == 1 ? "" : "s");
	} else if (json_is_true(json_object_get(ans, "after_delivery"))) {
		printf("%s is being delivered now; it is deleted when that attempt ends\n", esc_tmp(id));
	} else {
		printf("deleted %s\n", esc_tmp(id));
	}
	json_decref(ans);
	return 0;
}

static void queue_usage(void)
{
	fprintf(stderr, "hikyakuctl: usage: hikyakuctl queue list [--json] | show ID [--json] | "
	                "retry ID|--all | delete ID\n");
}

int ctl_queue(const struct config *cfg, int argc, char **argv)
{
	if (argc < 2) {
		queue_usage();
		return 2;
	}
	const char *sub = argv[1];
	bool as_json = argc >= 3 && strcmp(argv[argc - 1], "--json") == 0;
	int nargs = argc - 2 - as_json; /* operands after the subcommand */
	if (strcmp(sub, "list") == 0 && nargs == 0)
		return queue_list(cfg, as_json);
	if (strcmp(sub, "show") == 0 && nargs == 1)
		return queue_show(cfg, argv[2], as_json);
	if (strcmp(sub, "retry") == 0 && argc == 3 && !as_json)
		return queue_act(cfg, "queue.retry", strcmp(argv[2], "--all") == 0 ? NULL : argv[2]);
	if (strcmp(sub, "delete") == 0 && argc == 3 && !as_json && argv[2][0] != '-')
		return queue_act(cfg, "queue.delete", argv[2]);
	queue_usage();
	return 2;
}

/* ---- status ---------------------------------------------------------- */

static void duration(long long s, char *out, size_t cap)
{
	if (s >= 86400)
		snprintf(out, cap, "%lldd %lldh %lldm", s / 86400, s % 86400 / 3600, s % 3600 / 60);
	else if (s >= 3600)
		snprintf(out, cap, "%lldh %lldm %llds", s / 3600, s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(out, cap, "%lldm %llds", s / 60, s % 60);
	else
		snprintf(out, cap, "%llds", s);
}

static int print_status(const json_t *a)
{
	char up[64], size[32];
	char *since = local_time(jstr(a, "started"));
	duration(jint(a, "uptime_s"), up, sizeof(up));
	printf("hikyaku %s %s, pid %lld, up %s (since %s)\n", jstr(a, "version") ? jstr(a, "version") : "",
	       json_is_true(json_object_get(a, "stopping")) ? "stopping" : "running", jint(a, "pid"),
	       up, since ? since : "?");
	g_free(since);
	const json_t *c = json_object_get(a, "connections");
	printf("%-14s%lld open (limit %lld), %lld since start\n", "connections:", jint(c, "open"),
	       jint(c, "limit"), jint(c, "total"));
	const json_t *q = json_object_get(a, "queue");
	human_size(jint(q, "bytes"), size, sizeof(size));
	printf("%-14s%lld mail%s, %lld recipient%s pending, %s, %lld being delivered\n", "queue:",
	       jint(q, "mails"), jint(q, "mails") == 1 ? "" : "s", jint(q, "recipients"),
	       jint(q, "recipients") == 1 ? "" : "s", size, jint(q, "active"));
	const json_t *n = json_object_get(a, "counts");
	printf("%-14sreceived %lld, rejected %lld, delivered %lld, deferred %lld, bounced %lld, "
	       "expired %lld, suppressed %lld, deleted %lld\n", "since start:",
	       jint(n, "received"), jint(n, "rejected"), jint(n, "delivered"), jint(n, "deferred"),
	       jint(n, "bounced"), jint(n, "expired"), jint(n, "suppressed"), jint(n, "deleted"));
	const json_t *sp = json_object_get(a, "suppression");
	if (json_is_object(sp)) {
		printf("%-14s%s %s, %s", "suppression:", jstr(sp, "store"), jstr(sp, "db"),
		       json_is_true(json_object_get(sp, "reachable")) ? "reachable" : "UNREACHABLE");
		if (jint(sp, "pending") > 0)
			printf(", %lld change(s) waiting to be written", jint(sp, "pending"));
		if (!json_is_true(json_object_get(sp, "reachable")) && jstr(sp, "error"))
			printf(" (%s)", jstr(sp, "error"));
		putchar('\n');
	}
	const json_t *s = json_object_get(a, "service");
	if (!json_is_object(s)) {
		printf("%-14snone configured: every mail goes direct\n", "service:");
	} else {
		printf("%-14s%s, %lld connection%s, %lld waiting", "service:", jstr(s, "host"),
		       jint(s, "connections"), jint(s, "connections") == 1 ? "" : "s",
		       jint(s, "waiting"));
		if (jstr(s, "paused_until")) {
			char *until = local_time(jstr(s, "paused_until"));
			printf(", PAUSED until %s: %s", until,
			       jstr(s, "pause_reason") ? jstr(s, "pause_reason") : "");
			g_free(until);
		}
		putchar('\n');
	}
	/* SPEC §3 [destination NAME]: one line per policy. */
	const json_t *ds = json_object_get(a, "destinations");
	size_t i;
	json_t *d;
	json_array_foreach(ds, i, d) {
		printf("%-14s[%s] %lld connection%s (limit %lld), %lld waiting", "destination:",
		       jstr(d, "name") ? jstr(d, "name") : "?", jint(d, "connections"),
		       jint(d, "connections") == 1 ? "" : "s", jint(d, "max_connections"),
		       jint(d, "waiting"));
		if (jstr(d, "paused_until")) {
			char *until = local_time(jstr(d, "paused_until"));
			printf(", PAUSED until %s: %s", until,
			       jstr(d, "pause_reason") ? jstr(d, "pause_reason") : "");
			g_free(until);
		}
		putchar('\n');
	}
	return 0;
}

int ctl_status(const struct config *cfg, int argc, char **argv)
{
	bool as_json = argc == 2 && strcmp(argv[1], "--json") == 0;
	if (argc > 2 || (argc == 2 && !as_json)) {
		fprintf(stderr, "hikyakuctl: usage: hikyakuctl status [--json]\n");
		return 2;
	}
	json_t *ans = NULL;
	if (ask(cfg, json_pack("{s:s}", "cmd", "status"), &ans, false) != CTL_OK)
		return 2;
	if (!json_is_true(json_object_get(ans, "ok")))
		return refused(ans);
	json_object_del(ans, "ok");
	int rc = as_json ? print_json(ans) : print_status(ans);
	json_decref(ans);
	return rc;
}
