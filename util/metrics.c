/*
 * metrics - counters from the relay log's events and their Prometheus
 * rendering (SPEC §9). See metrics.h.
 *
 * The counters are fed by util/eventlog.c as it emits each event, from
 * whatever thread emits it: one mutex guards the registry. It is held for
 * a few additions per event and, while rendering, for a copy of the
 * numbers; the text is written outside it.
 */
#include "util/metrics.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

enum outcome { O_DELIVERED, O_DEFERRED, O_BOUNCED, O_EXPIRED, O_SUPPRESSED, O_COUNT };

static const char *const outcome_names[O_COUNT] = {
	"delivered", "deferred", "bounced", "expired", "suppressed",
};
static const char *const route_names[METRICS_NROUTES] = { "direct", "service" };

/* Arrival to delivery: from a mail delivered in the same second to one
 * that waited a day in the queue. */
const double metrics_delivery_buckets[] = {
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400,
};
#define NBUCKETS (sizeof(metrics_delivery_buckets) / sizeof(metrics_delivery_buckets[0]))
const size_t metrics_ndelivery_buckets = NBUCKETS;

#define STATUS_MAX 16

struct status_count {
	char status[STATUS_MAX];
	uint64_t n;
};

struct histogram {
	uint64_t buckets[NBUCKETS];     /* not cumulative: rendering sums them */
	uint64_t count;
	double sum;
};

/* Everything metrics_render() copies under the lock. */
struct counts {
	uint64_t received;
	uint64_t recipients[METRICS_NROUTES][O_COUNT];
	struct histogram delivery[METRICS_NROUTES];
	struct status_count rejected[METRICS_MAX_STATUSES + 1]; /* + "other" */
	size_t nrejected;
	uint64_t rejected_other;
};

struct metrics {
	uv_mutex_t lock;
	struct counts c;
};

int metrics_new(struct metrics **out)
{
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (uv_mutex_init(&m->lock) != 0) {
		free(m);
		return -ENOMEM;
	}
	*out = m;
	return 0;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	uv_mutex_destroy(&m->lock);
	free(m);
}

static int route_of(const json_t *fields)
{
	const char *r = json_string_value(json_object_get(fields, "route"));
	/* The runner logs a mail without a route as "direct". */
	return r && strcmp(r, "service") == 0 ? METRICS_SERVICE : METRICS_DIRECT;
}

/* An enhanced status ("5.7.1"), else the reply code of the response
 * ("421"), else "unknown": digits and dots only, so that the label set
 * stays small and clean whatever a client made the listener answer. */
static void status_of(const json_t *fields, char out[STATUS_MAX])
{
	const char *s = json_string_value(json_object_get(fields, "status"));
	const char *resp = json_string_value(json_object_get(fields, "response"));
	size_t n;

	if (s && (n = strlen(s)) > 0 && n < STATUS_MAX && strspn(s, "0123456789.") == n) {
		memcpy(out, s, n + 1);
		return;
	}
	if (resp && isdigit((unsigned char)resp[0]) && isdigit((unsigned char)resp[1]) &&
	    isdigit((unsigned char)resp[2]) && (resp[3] == '\0' || resp[3] == ' ' || resp[3] == '-')) {
		memcpy(out, resp, 3);
		out[3] = '\0';
		return;
	}
	strcpy(out, "unknown");
}

static void count_rejected(struct counts *c, const char *status)
{
	for (size_t i = 0; i < c->nrejected; i++)
		if (strcmp(c->rejected[i].status, status) == 0) {
			c->rejected[i].n++;
			return;
		}
	if (c->nrejected < METRICS_MAX_STATUSES) {
		snprintf(c->rejected[c->nrejected].status, STATUS_MAX, "%s", status);
		c->rejected[c->nrejected++].n = 1;
		return;
	}
	c->rejected_other++;
}

static void observe_delivery(struct histogram *h, const json_t *fields)
{
	const json_t *d = json_object_get(fields, "delay_ms");
	double s = json_is_integer(d) ? (double)json_integer_value(d) / 1000.0
	           : json_is_real(d) ? json_real_value(d) / 1000.0 : 0.0;
	if (!(s >= 0))      /* negative (a clock step) or NaN */
		s = 0;
	for (size_t i = 0; i < NBUCKETS; i++)
		if (s <= metrics_delivery_buckets[i]) {
			h->buckets[i]++;
			break;
		}
	h->count++;
	h->sum += s;
}

void metrics_observe(void *arg, const char *event, const json_t *fields)
{
	struct metrics *m = arg;
	int outcome = -1;

	if (!m || !event)
		return;
	if (strcmp(event, "received") == 0) {
		uv_mutex_lock(&m->lock);
		m->c.received++;
		uv_mutex_unlock(&m->lock);
		return;
	}
	if (strcmp(event, "rejected") == 0) {
		char st[STATUS_MAX];
		status_of(fields, st);
		uv_mutex_lock(&m->lock);
		count_rejected(&m->c, st);
		uv_mutex_unlock(&m->lock);
		return;
	}
	for (int i = 0; i < O_COUNT; i++)
		if (strcmp(event, outcome_names[i]) == 0)
			outcome = i;
	if (outcome < 0)
		return;
	int r = route_of(fields);
	uv_mutex_lock(&m->lock);
	m->c.recipients[r][outcome]++;
	if (outcome == O_DELIVERED)
		observe_delivery(&m->c.delivery[r], fields);
	uv_mutex_unlock(&m->lock);
}

char *metrics_label_escape(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return out;
	for (; s && *s; s++) {
		const char *rep = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
		size_t n = rep ? 2 : 1;
		if (o + n >= cap)
			break;
		if (rep)
			memcpy(out + o, rep, 2);
		else
			out[o] = *s;
		o += n;
	}
	out[o] = '\0';
	return out;
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A float as the format wants it: shortest round trip, +Inf spelt so. */
static void put_double(FILE *f, double v)
{
	if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", f);
	else {
		char b[32];
		snprintf(b, sizeof(b), "%.15g", v);
		if (strtod(b, NULL) != v)
			snprintf(b, sizeof(b), "%.17g", v);
		fputs(b, f);
	}
}

static void render_counters(FILE *f, const struct counts *c)
{
	family(f, "hikyaku_messages_received_total", "counter",
	       "Mails queued (the log's received events, DSNs that hikyaku wrote included).");
	fprintf(f, "hikyaku_messages_received_total %llu\n", (unsigned long long)c->received);

	family(f, "hikyaku_recipients_total", "counter",
	       "Recipient outcomes by route, one per delivered, deferred, bounced, expired "
	       "or suppressed event of the log.");
	for (int r = 0; r < METRICS_NROUTES; r++)
		for (int o = 0; o < O_COUNT; o++)
			fprintf(f, "hikyaku_recipients_total{route=\"%s\",outcome=\"%s\"} %llu\n",
			        route_names[r], outcome_names[o],
			        (unsigned long long)c->recipients[r][o]);

	family(f, "hikyaku_rejected_total", "counter",
	       "Transactions refused by the listener (the log's rejected events), by enhanced "
	       "status.");
	for (size_t i = 0; i < c->nrejected; i++)
		fprintf(f, "hikyaku_rejected_total{status=\"%s\"} %llu\n", c->rejected[i].status,
		        (unsigned long long)c->rejected[i].n);
	if (c->rejected_other)
		fprintf(f, "hikyaku_rejected_total{status=\"other\"} %llu\n",
		        (unsigned long long)c->rejected_other);

	family(f, "hikyaku_delivery_seconds", "histogram",
	       "Time from a mail's arrival to the delivery of a recipient, by route.");
	for (int r = 0; r < METRICS_NROUTES; r++) {
		const struct histogram *h = &c->delivery[r];
		uint64_t cum = 0;
		for (size_t i = 0; i < NBUCKETS; i++) {
			cum += h->buckets[i];
			fprintf(f, "hikyaku_delivery_seconds_bucket{route=\"%s\",le=\"", route_names[r]);
			put_double(f, metrics_delivery_buckets[i]);
			fprintf(f, "\"} %llu\n", (unsigned long long)cum);
		}
		fprintf(f, "hikyaku_delivery_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
		        route_names[r], (unsigned long long)h->count);
		fprintf(f, "hikyaku_delivery_seconds_sum{route=\"%s\"} ", route_names[r]);
		put_double(f, h->sum);
		fprintf(f, "\nhikyaku_delivery_seconds_count{route=\"%s\"} %llu\n", route_names[r],
		        (unsigned long long)h->count);
	}
}

static void render_gauges(FILE *f, const struct metrics_gauges *g)
{
	char esc[256];

	family(f, "hikyaku_queue_messages", "gauge", "Mails in the queue, by route.");
	for (int r = 0; r < METRICS_NROUTES; r++)
		fprintf(f, "hikyaku_queue_messages{route=\"%s\"} %llu\n", route_names[r],
		        (unsigned long long)g->queue_messages[r]);
	family(f, "hikyaku_queue_recipients", "gauge",
	       "Recipients still pending in the queue, by route.");
	for (int r = 0; r < METRICS_NROUTES; r++)
		fprintf(f, "hikyaku_queue_recipients{route=\"%s\"} %llu\n", route_names[r],
		        (unsigned long long)g->queue_recipients[r]);
	family(f, "hikyaku_queue_bytes", "gauge", "Bytes of mail in the queue.");
	fprintf(f, "hikyaku_queue_bytes %llu\n", (unsigned long long)g->queue_bytes);
	family(f, "hikyaku_queue_oldest_seconds", "gauge",
	       "Age of the oldest mail in the queue (0 when it is empty).");
	fputs("hikyaku_queue_oldest_seconds ", f);
	put_double(f, g->queue_oldest_seconds);
	fputc('\n', f);

	family(f, "hikyaku_connections", "gauge",
	       "Open SMTP connections: in from clients, out to the next hops.");
	fprintf(f, "hikyaku_connections{side=\"in\"} %llu\n", (unsigned long long)g->connections_in);
	fprintf(f, "hikyaku_connections{side=\"out\"} %llu\n",
	        (unsigned long long)g->connections_out);

	family(f, "hikyaku_service_paused", "gauge",
	       "1 while the delivery service route is paused (throttling, authentication).");
	fprintf(f, "hikyaku_service_paused %d\n", g->service_paused ? 1 : 0);

	family(f, "hikyaku_destination_paused", "gauge",
	       "1 while a [destination NAME] policy is paused.");
	for (size_t i = 0; i < g->ndestinations; i++)
		fprintf(f, "hikyaku_destination_paused{destination=\"%s\"} %d\n",
		        metrics_label_escape(g->destinations[i].name, esc, sizeof(esc)),
		        g->destinations[i].paused ? 1 : 0);

	if (g->suppression_entries >= 0) {
		family(f, "hikyaku_suppression_entries", "gauge",
		       "Addresses on the suppression list.");
		fprintf(f, "hikyaku_suppression_entries %lld\n", (long long)g->suppression_entries);
	}

	family(f, "hikyaku_start_time_seconds", "gauge",
	       "When the daemon started, in seconds since the Unix epoch.");
	fputs("hikyaku_start_time_seconds ", f);
	put_double(f, g->start_time_seconds);
	fputc('\n', f);

	family(f, "hikyaku_build_info", "gauge", "The version of hikyaku; the value is 1.");
	fprintf(f, "hikyaku_build_info{version=\"%s\"} 1\n",
	        metrics_label_escape(g->version ? g->version : "", esc, sizeof(esc)));
}

char *metrics_render(struct metrics *m, const struct metrics_gauges *g, size_t *len)
{
	struct counts c;
	char *text = NULL;
	size_t n = 0;
	FILE *f;

	uv_mutex_lock(&m->lock);
	c = m->c;
	uv_mutex_unlock(&m->lock);

	f = open_memstream(&text, &n);
	if (!f)
		return NULL;
	render_counters(f, &c);
	render_gauges(f, g);
	if (ferror(f) | fclose(f)) {
		free(text);
		return NULL;
	}
	*len = n;
	return text;
}
