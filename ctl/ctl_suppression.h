/*
 * NAME
 *	ctl_suppression - "hikyakuctl suppression ..." (SPEC §6, §8)
 * SUMMARY
 *	hikyakuctl suppression list [--search TEXT]
 *	hikyakuctl suppression add ADDRESS [--reason TEXT]
 *	hikyakuctl suppression remove ADDRESS
 *	hikyakuctl suppression import FILE.csv   ("-" reads stdin)
 *	hikyakuctl suppression export            (CSV on stdout)
 *	(suppression ingest, a DSN on stdin, is in ctl/hikyakuctl.c)
 * DESCRIPTION
 *	ctl_suppression() runs one subcommand; argv[0] is "suppression". It
 *	works on the database [suppression] db names, at the same time as
 *	the daemon (relay/suppression.h). list prints an aligned table
 *	(address, reason, status, count, last seen in local time), or "no
 *	entries"; add and import log one "learned" event (SPEC §7) per
 *	address that was not listed before, through log when it is not NULL.
 *	list, export and remove never create a missing database: there is
 *	nothing on the list then.
 * DIAGNOSTICS
 *	Returns the exit status: 0 done, 1 the address is not on the list
 *	(remove), 2 usage or any other error. Errors go to stderr as one
 *	sentence.
 * TOUCHES
 *	The suppression database; stdout, stderr, stdin (import -); the log
 *	through log.
 */
#ifndef HK_CTL_SUPPRESSION_H
#define HK_CTL_SUPPRESSION_H

struct config;
struct evlog;

int ctl_suppression(const struct config *cfg, struct evlog *log, int argc, char **argv);

#endif
