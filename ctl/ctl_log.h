/*
 * NAME
 *	ctl_log - "hikyakuctl log ..." (SPEC §7, §8)
 * SUMMARY
 *	hikyakuctl log [--follow] [--json] [--since DUR] [--queue-id ID]
 *	               [--to ADDR] [--from ADDR] [--event EV[,EV...]]
 * DESCRIPTION
 *	ctl_log() reads the relay log ([log] file, one JSON object per
 *	line) and prints the events that pass every filter given: by
 *	default as an aligned table (local time, queue id, event,
 *	recipient, route, status, a short response), with --json the
 *	matching lines exactly as they are in the file. argv[0] is "log".
 *
 *	--since DUR keeps events whose ts is at most DUR old (30s, 5m,
 *	2h, 1d: the suffixes of the configuration); --queue-id is exact;
 *	--to and --from compare addresses without regard to case. --from
 *	matches the from field, and for an event that has none (delivered,
 *	deferred, ...) the from of an earlier "received" event of the same
 *	queue id. --event may be repeated or hold a comma-separated list.
 *
 *	The file is read in 1 MiB blocks; when a filter names a string,
 *	lines that do not contain it are skipped before any JSON parsing,
 *	so that filtering a large log costs little more than reading it.
 *
 *	--follow prints the matching lines there are, then those appended
 *	later (polled every 200 ms), and reopens the file from its start
 *	when the path names another file (rotation) or the file shrank.
 *	SIGINT or SIGTERM ends it with status 0.
 * DIAGNOSTICS
 *	Returns the exit status: 0 done (also when nothing matched), 2
 *	usage error or unreadable log. Errors go to stderr as one sentence.
 *	Malformed lines (not JSON, no ts or event, longer than 2 MiB) are
 *	skipped; their number is reported on stderr at the end.
 * TOUCHES
 *	Reads the log file; writes stdout and stderr. With --follow,
 *	installs handlers for SIGINT and SIGTERM.
 */
#ifndef HK_CTL_LOG_H
#define HK_CTL_LOG_H

struct config;

int ctl_log(const struct config *cfg, int argc, char **argv);

#endif
