/*
 * NAME
 *	eventlog - the relay log: one JSON object per line (SPEC §7)
 * SUMMARY
 *	Appends events to [log] file. Each line gets "ts" (RFC 3339, UTC,
 *	milliseconds) and "event" first, then the caller's fields in the
 *	order given. A line is written with one write(2) on an O_APPEND
 *	descriptor, so lines from several writers never interleave, and is
 *	never rewritten.
 * DESCRIPTION
 *	evlog_open() opens (creating it and its directory when missing) the
 *	log file. evlog_emit() writes one event; it takes ownership of
 *	fields (a JSON object, may be NULL). evlog_reopen() reopens the file
 *	by name (log rotation). evlog_close() closes it.
 *	evlog_now_rfc3339() formats the current time as the "ts" field does.
 * DIAGNOSTICS
 *	evlog_open() and evlog_reopen() return 0 or a negative errno;
 *	evlog_emit() reports a failed write to stderr once and carries on.
 * TOUCHES
 *	The log file, and the observer (evlog_set_observer()) when one is set.
 */
#ifndef HK_UTIL_EVENTLOG_H
#define HK_UTIL_EVENTLOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evlog;

int evlog_open(const char *path, struct evlog **out);
int evlog_reopen(struct evlog *log);
void evlog_close(struct evlog *log);
void evlog_emit(struct evlog *log, const char *event, json_t *fields);
void evlog_now_rfc3339(char *out, size_t cap);

/*
 * Additions (eventlog module):
 *	EVLOG_TS_SIZE is enough room for evlog_now_rfc3339()'s output
 *	("2026-11-26T06:14:04.123Z" and its NUL).
 *
 *	evlog_str() makes a JSON string from len bytes, replacing every
 *	ill-formed UTF-8 sequence with U+FFFD; NULL gives JSON null. Use it
 *	for anything that came from the network (addresses, HELO names,
 *	replies): json_string() returns NULL on invalid UTF-8, and a string
 *	made with json_stringn_nocheck() makes jansson refuse to dump the
 *	line. evlog_emit() copes with the latter by sanitising the fields
 *	and retrying, but that is a fallback, not a way to log.
 *
 *	evlog_emit() with log == NULL only releases fields (logging off).
 *	Fields named "ts" or "event" are dropped: those two keys are the
 *	log's own. It may be called from several threads.
 */
#define EVLOG_TS_SIZE 32

json_t *evlog_str(const char *s, size_t len);

/*
 * evlog_learned() emits SPEC §7's "learned" event (an address added to
 * the suppression list): to, source (delivery, dsn, admin, import),
 * status and response (NULL: null). The one builder of that event, for
 * the runner and hikyakuctl alike.
 */
void evlog_learned(struct evlog *log, const char *to, const char *source, const char *status,
                   const char *response);

/*
 * evlog_received() builds the fields of SPEC §7's "received" event (a
 * mail was queued) from r: the one builder, for mail from a client and
 * the notices hikyaku queues itself (no session, client or HELO: NULL
 * gives null). from is from_len bytes (the null sender: ""); dkim is
 * "DOMAIN SELECTOR" of the signature added or NULL; dkim_skipped and
 * warning are added only when set. The caller emits the result.
 */
struct evlog_received {
	const char *queue_id, *session, *client, *helo;
	const char *from;
	size_t from_len;
	const char *header_from, *message_id;
	size_t rcpts;
	uint64_t size;
	bool tls;
	const char *route, *matched, *dkim, *dkim_skipped, *warning;
};

json_t *evlog_received(const struct evlog_received *r);

/*
 * Observer (the metrics of SPEC §9): evlog_set_observer() makes
 * evlog_emit() call fn(arg, event, fields) once for every event it
 * emits, with the caller's fields, before they are released, and whether
 * or not the line could be written: the counters then agree with the
 * log by construction. fn runs on the emitting thread and must be
 * thread-safe and quick; it must not keep fields. Set it before the log
 * is shared with other threads; fn NULL removes it.
 */
typedef void evlog_observer_fn(void *arg, const char *event, const json_t *fields);
void evlog_set_observer(struct evlog *log, evlog_observer_fn *fn, void *arg);

#endif
