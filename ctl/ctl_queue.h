/*
 * NAME
 *	ctl_queue - "hikyakuctl queue ..." and "hikyakuctl status" (SPEC §8)
 * SUMMARY
 *	hikyakuctl queue list [--json]
 *	hikyakuctl queue show ID [--json]
 *	hikyakuctl queue retry ID | --all
 *	hikyakuctl queue delete ID
 *	hikyakuctl status [--json]
 * DESCRIPTION
 *	Each command asks the running daemon through the control socket
 *	(ctl/ctl_control.h). queue list and queue show read the spool
 *	directly when no daemon answers, and say so on stderr; retry,
 *	delete and status need the daemon.
 *
 *	queue list prints one block per mail, oldest first: a row (queue
 *	id, arrival in local time, size, route, attempts, next try, envelope
 *	sender) and one indented line per pending recipient with its last
 *	response; then a total. queue show prints one mail with every
 *	recipient. --json prints the daemon's view (relay/queue_state.h).
 * DIAGNOSTICS
 *	Return the exit status: 0 done, 1 no such mail, 2 usage error, an
 *	unreadable spool, or no daemon for a command that needs one.
 * TOUCHES
 *	The control socket; with no daemon, reads [queue] dir.
 */
#ifndef HK_CTL_QUEUE_H
#define HK_CTL_QUEUE_H

struct config;

int ctl_queue(const struct config *cfg, int argc, char **argv);
int ctl_status(const struct config *cfg, int argc, char **argv);

#endif
