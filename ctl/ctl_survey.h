/*
 * NAME
 *	ctl_survey - "hikyakuctl suppression survey" (SPEC §8, §6.1)
 * SUMMARY
 *	hikyakuctl suppression survey [FILE ...] [--since DUR] [--import] [--json]
 * DESCRIPTION
 *	ctl_survey() reads past mail logs and lists the recipients whose
 *	last outcome in them was a permanent failure that the suppression
 *	list would learn from (SPEC §6.1: enhanced status 5.1.x or 5.2.1):
 *	the step before a shop moves to the delivery service. argv[0] is
 *	"survey"; config_path is the configuration, read only when needed
 *	(no FILE: the default is its [log] file; --import: its [suppression]
 *	db and [log] file).
 *
 *	Each FILE ("-": stdin) is plain or gzip-compressed (recognized by
 *	its bytes, not its name; concatenated members too), and may hold
 *	hikyaku's own JSON lines (SPEC §7) and Postfix's syslog or
 *	maillog_file lines (ctl/postfix_log.h) in any mixture. Files are read
 *	in any order and may overlap: outcomes are ordered by their time,
 *	not by where they were read, and a line read twice counts once.
 *
 *	What counts, per address (compared without regard to ASCII case,
 *	shown in the spelling of its latest failure):
 *	  - a failure: a Postfix "status=bounced" record or a hikyaku
 *	    "bounced" event whose status is 5.1.x or 5.2.1, and a hikyaku
 *	    "learned" event with source "dsn" (the delivery service accepted
 *	    the mail, then its bounce came back);
 *	  - a delivery: a Postfix "status=sent" record or a hikyaku
 *	    "delivered" event. A delivery clears the failures before it (at
 *	    the same time too): only later failures are counted.
 *	Everything else neither adds nor clears: deferrals (4.x.x), expiries,
 *	permanent failures for other reasons (5.7.1 policy, 5.0.0 replies
 *	without an enhanced code), which say nothing about the mailbox.
 *	Postfix's own bounce notices are deliveries to the envelope sender
 *	and are read as such: they concern the sender's address only. With
 *	orig_to= (an address rewritten by an alias or canonical map), the
 *	address delivered to (to=) is the one that counts: an alias may
 *	stand for several mailboxes, of which only one bounced.
 *
 *	Output: an aligned table (address, failures counted, first and last
 *	failure in local time, status and response of the last one) sorted
 *	by address, then a total line; with --json one JSON object with the
 *	same rows (times in RFC 3339 UTC) and the line counts. Terminal text
 *	never holds a control character or a stray byte from the logs: they
 *	are shown escaped (\t, \x1b, \u009b ...). A summary of the lines
 *	read (delivery records, other lines, and the malformed and foreign
 *	lines skipped) goes to stderr.
 *
 *	--since DUR reads only outcomes at most DUR old. --import adds every
 *	row to the suppression list with source "import", reason "bounced",
 *	and the row's status, response, first and last time and count, in
 *	one transaction; an address already listed is counted and left as
 *	it is. Each new address is logged as a "learned" event. A second
 *	--import of the same logs adds nothing.
 *
 *	Memory is one entry per distinct bounced address (with one 16-byte
 *	record per distinct failure line) plus 16 bytes per distinct
 *	delivered address, whatever the size of the logs; a line longer than
 *	1 MiB is malformed.
 * DIAGNOSTICS
 *	Returns the exit status: 0 at least one address would be suppressed
 *	(or was imported), 1 none would, 2 usage or configuration error, an
 *	unreadable or damaged file (then nothing is imported), or a failed
 *	import. Errors go to stderr as one sentence.
 * TOUCHES
 *	Reads the configuration, the log files and stdin; with --import, the
 *	suppression database and the log ("learned" events).
 */
#ifndef HK_CTL_SURVEY_H
#define HK_CTL_SURVEY_H

int ctl_survey(const char *config_path, int argc, char **argv);

#endif
