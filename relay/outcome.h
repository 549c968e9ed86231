/*
 * NAME
 *	outcome - what a reply (or its absence) means for a recipient
 * SUMMARY
 *	Pure functions, no I/O, no clock: the classification of replies into
 *	delivered / deferred / bounced (SPEC §5), the statuses hikyaku makes
 *	up itself when there is no reply to quote (one table, so each
 *	synthetic status is written once), the suppression rule (SPEC §6.1:
 *	5.1.x and 5.2.1), and the small parsers of what a reply carries.
 * DESCRIPTION
 *	outcome_classify(): 2xx delivered; no reply (code 0) or 4xx deferred;
 *	on the service route (service) also 421, 454, 530 and 535 (throttling
 *	and authentication say nothing about the recipients); every other
 *	reply bounces.
 *
 *	outcome_throttle_or_auth() is the service's pause rule (421, 454,
 *	530, 535); outcome_policy_pause() a [destination NAME] policy's
 *	(421: the host closes the session and asks the sender to wait,
 *	RFC 5321 §3.8, which is how the carriers say "too much, too fast"). outcome_unverified_identity() recognises the service's
 *	554 for an identity that is not verified (logged loudly).
 *
 *	outcome_suppresses() is THE suppression predicate: an enhanced
 *	status 5.1.x (bad mailbox or destination) or 5.2.1 (disabled).
 *
 *	outcome_set() fills rep with one of the synthetic outcomes (code 0,
 *	its status, its text made from the table's format and the
 *	arguments); outcome_synthetic() gives the table entry (status,
 *	verdict, format) for tests and documentation.
 *
 *	outcome_reply_line() formats a reply as the log and DSNs show it:
 *	"550 5.1.1 User unknown", or only the text for a synthetic one.
 *
 *	outcome_service_id() finds the service's message id in its 250 to
 *	the final dot ("250 Ok 0101018c...-000000"); outcome_message_id_local()
 *	the local part of a Message-ID ("<id@host>"): both NULL when shorter
 *	than 8 characters. Malloc'd.
 * TOUCHES
 *	Nothing.
 */
#ifndef HK_RELAY_OUTCOME_H
#define HK_RELAY_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>

#include "relay/smtp_client.h"

enum outcome_verdict { OUTCOME_DELIVERED, OUTCOME_DEFERRED, OUTCOME_BOUNCED };

enum outcome_why {
	OUT_LOOP,               /* 5.4.6: the MX is hikyaku itself */
	OUT_ADDR_REFUSED,       /* 5.4.4: internal_destinations left no address */
	OUT_UNREACHABLE,        /* 4.4.1: no host could be reached */
	OUT_DNS_TEMP,           /* 4.4.3: DNS failed for now */
	OUT_DNS_START,          /* 4.4.3: the lookup could not start */
	OUT_NULL_MX,            /* 5.1.10: RFC 7505 */
	OUT_NO_DOMAIN,          /* 5.1.2: the domain does not exist */
	OUT_BAD_DOMAIN,         /* 5.1.2: not a valid domain name */
	OUT_NO_SMTPUTF8,        /* 5.6.7 */
	OUT_TOO_BIG,            /* 5.3.4: over the server's SIZE */
	OUT_SEND_FAILED,        /* 4.4.2 */
	OUT_PAUSED,             /* 4.7.0: the service route is paused */
	OUT_NO_SERVICE,         /* 4.3.5: a reload removed [service] host */
	OUT_SUSPENDED_PAUSED,   /* 4.7.0: held back without an attempt (paused) */
	OUT_SUSPENDED_DOWN,     /* 4.4.1: held back without an attempt (down) */
	OUT_SHUTDOWN,           /* 4.3.2 */
	OUT_EXPIRED,            /* 4.4.7: the queue lifetime is over */
	OUT_DEST_PAUSED,        /* 4.7.0: a [destination NAME] policy is paused (after a 421) */
	OUT_COUNT,
};

struct outcome_synthetic {
	const char *status;
	enum outcome_verdict verdict;
	const char *fmt;        /* printf format of the text */
};

/* The DSN texts for failures that have no reply of a server. */
#define OUTCOME_REASON_REFUSED "the receiving server refused it"
#define OUTCOME_REASON_SUPPRESSED "the recipient is on the suppression list: an earlier mail to " \
	"this address bounced, so it was not sent again"
#define OUTCOME_STATUS_SUPPRESSED "5.1.1"
#define OUTCOME_REASON_EXPIRED "the mail could not be delivered within the queue lifetime"
#define OUTCOME_REASON_SERVICE_BOUNCE "the delivery service accepted the mail, then reported " \
	"that it could not be delivered"

enum outcome_verdict outcome_classify(bool service, const struct smtp_reply *rep);
bool outcome_throttle_or_auth(int code);
bool outcome_policy_pause(int code);
bool outcome_unverified_identity(const struct smtp_reply *rep);
bool outcome_suppresses(const char *status);
const struct outcome_synthetic *outcome_synthetic(enum outcome_why why);
void outcome_set(struct smtp_reply *rep, enum outcome_why why, ...);
const char *outcome_reply_line(const struct smtp_reply *rep, char *out, size_t cap);
char *outcome_service_id(const struct smtp_reply *rep);
char *outcome_message_id_local(const char *mid);

#endif
