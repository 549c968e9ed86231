/*
 * NAME
 *	postfix_log - one line of a Postfix mail log, parsed (SPEC §8 survey)
 * SUMMARY
 *	Pure: bytes in, a structure out; no I/O, no allocation. The fields
 *	of a record point into the caller's line (lengths travel with them;
 *	nothing relies on a NUL terminator).
 * DESCRIPTION
 *	pflog_parse() reads one line (without its newline; a trailing CR is
 *	ignored) in any of the three prefixes real logs have:
 *
 *	  Dec 02 02:29:18 host postfix/smtp[123]: ...    maillog_file (postlogd)
 *	  2026-12-02T02:29:54.755810+00:00 host postfix/smtp[123]: ...
 *	                                                 Debian 12 rsyslog (RFC 3339)
 *	  Dec  2 02:29:54 host postfix/smtp[123]: ...    traditional syslog
 *
 *	and returns what the line is:
 *
 *	  PFLOG_DELIVERY   a delivery agent's record, "QUEUEID: to=<ADDR>,
 *	                   [orig_to=<ADDR>, ]relay=..., ..., dsn=X.Y.Z,
 *	                   status=WORD[ (TEXT)]": every field of r is set.
 *	                   The queue id is short (hex) or long
 *	                   (enable_long_queue_ids); it never identifies a
 *	                   line, since short ids recur. The response is the
 *	                   text between the first "(" after the status and the
 *	                   LAST ")" of the line, since responses contain
 *	                   parentheses themselves; a line cut short (no ")")
 *	                   keeps the text to its end. dsn is X.Y.Z with class
 *	                   2, 4 or 5 and one to three digits each in subject
 *	                   and detail (RFC 3463: "5.1.10" is one).
 *	  PFLOG_OTHER      another line of Postfix's (smtpd, qmgr, cleanup,
 *	                   bounce, master, ...): r->time, host and program set.
 *	  PFLOG_FOREIGN    a syslog line of another program (CRON, dovecot,
 *	                   kernel ...): r->time, host and program set.
 *	  PFLOG_MALFORMED  no known prefix, or a record that starts like a
 *	                   delivery ("QUEUEID: to=<") but does not parse.
 *
 *	A delivery record is read from any program whose name has the
 *	syslog_name/daemon form ("postfix/smtp", "postfix-out/smtp",
 *	"mta/lmtp"); another line is Postfix's when that name starts with
 *	"postfix" ("postfix/submission/smtpd").
 *	The agent "discard" is PFLOG_OTHER: "status=sent (discarded)" is no
 *	delivery to anyone.
 *
 *	pflog_time_ms() turns the parsed time into Unix milliseconds. An
 *	RFC 3339 time carries its year and offset. The other two prefixes
 *	carry neither: the time is local (mktime, TZ), and the year is the
 *	one that puts the line at or before ref_ms plus one day (the most
 *	recent such date): with ref_ms the file's modification time, a line
 *	of December read in January belongs to the year before. Returns 0, or
 *	-1 when the fields name no time (31 April; 29 February of no year
 *	near ref_ms).
 *
 *	pflog_time_parse() reads just the time of either prefix form at the
 *	start of s (n bytes) and returns the bytes it took, 0 when s does
 *	not start with one.
 *
 *	pflog_dsn_valid() is the check of the dsn field: X.Y.Z as above.
 * DIAGNOSTICS
 *	None; the kinds above say it all.
 * TOUCHES
 *	Nothing (pflog_time_ms() reads the local time zone).
 */
#ifndef HK_CTL_POSTFIX_LOG_H
#define HK_CTL_POSTFIX_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pflog_kind {
	PFLOG_DELIVERY,
	PFLOG_OTHER,
	PFLOG_FOREIGN,
	PFLOG_MALFORMED,
};

enum pflog_status {
	PFLOG_SENT,
	PFLOG_BOUNCED,
	PFLOG_DEFERRED,
	PFLOG_EXPIRED,
	PFLOG_STATUS_OTHER,     /* deliverable, undeliverable (probes), SOFTBOUNCE ... */
};

struct pflog_span {
	const char *p;          /* NULL when absent */
	size_t n;
};

struct pflog_time {
	int year;               /* 0: the prefix has none */
	int mon;                /* 1..12 */
	int mday, hour, min, sec;
	int usec;
	bool zoned;             /* off_min applies; else local time */
	int off_min;            /* east of UTC */
};

struct pflog_record {
	struct pflog_time time;
	struct pflog_span host;
	struct pflog_span program;      /* "postfix/smtp", without [pid] */
	struct pflog_span queue_id;
	struct pflog_span to;           /* as logged, in its original case */
	struct pflog_span orig_to;      /* p NULL when the line has none */
	struct pflog_span relay;
	struct pflog_span dsn;
	struct pflog_span status;       /* the word: "bounced" */
	struct pflog_span response;     /* p NULL when the line has none */
	enum pflog_status st;
};

enum pflog_kind pflog_parse(const char *line, size_t len, struct pflog_record *r);
size_t pflog_time_parse(const char *s, size_t n, struct pflog_time *t);
int pflog_time_ms(const struct pflog_time *t, int64_t ref_ms, int64_t *ms);
bool pflog_dsn_valid(const char *p, size_t n);

#endif
