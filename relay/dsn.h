/*
 * NAME
 *	dsn - delivery status notifications (RFC 3464, RFC 3462/6522)
 * SUMMARY
 *	Builds the MAILER-DAEMON mail that tells a sender which recipients of
 *	a mail failed (bounced, expired, suppressed) and why.
 * DESCRIPTION
 *	dsn_build() writes a complete RFC 5322 message into out, CRLF line
 *	ends only: From: MAILER-DAEMON@HOSTNAME (Mail Delivery System), To:
 *	the original envelope sender, Subject: "Undelivered Mail Returned to
 *	Sender", Date:, Message-ID:, Auto-Submitted: auto-replied (RFC 3834),
 *	MIME-Version, Content-Type: multipart/report;
 *	report-type=delivery-status, with three parts: a readable explanation
 *	(text/plain, UTF-8: which recipients, what the remote server said, in
 *	plain words), message/delivery-status (per-message fields
 *	Reporting-MTA: dns; HOSTNAME, X-Hikyaku-Queue-ID / Original-Envelope-Id,
 *	Arrival-Date; per-recipient Final-Recipient: rfc822; ADDR, Action,
 *	Status, Remote-MTA: dns; HOST (when known), Diagnostic-Code: smtp;
 *	TEXT (when known), Last-Attempt-Date, and for a "delayed" recipient
 *	Will-Retry-Until when known), and text/rfc822-headers with the
 *	original message's header section. The caller queues it with the
 *	null sender.
 *
 *	A report whose recipients are all "delayed" is a delay warning
 *	(SPEC §5 delay_warning): Subject "Delayed Mail (still being
 *	retried)", and the readable part says that this is a warning only,
 *	that nothing needs to be sent again, and until when the mail system
 *	keeps trying.
 * TOUCHES
 *	Memory only.
 */
#ifndef HK_RELAY_DSN_H
#define HK_RELAY_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct dsn_rcpt {
	const char *addr;          /* final recipient */
	const char *action;        /* "failed" (or "delayed") */
	const char *status;        /* enhanced status, e.g. "5.1.1" */
	const char *remote_mta;    /* host name of the server that answered, or NULL */
	const char *diagnostic;    /* the server's reply, e.g. "550 5.1.1 no such user", or NULL */
	const char *diagnostic_type; /* its RFC 3464 §2.3.6 type: NULL "smtp"; "X-Hikyaku" for a
	                              * text of hikyaku's own (an atom, else "smtp" is used) */
	const char *reason;        /* one plain sentence for the readable part */
	uint64_t last_attempt_ms;  /* 0: unknown */
	uint64_t will_retry_until_ms; /* "delayed": when the mail system gives up (RFC 3464
	                               * §2.3.7 Will-Retry-Until); 0: not said */
};

struct dsn_info {
	const char *hostname;      /* reporting MTA and MAILER-DAEMON's domain */
	const char *queue_id;      /* the original mail's queue id */
	const char *sender;        /* the original envelope sender (the DSN's To:) */
	uint64_t arrival_ms;       /* when the original mail was queued */
	const char *headers;       /* the original message's header section */
	size_t headers_len;
	uint64_t now_ms;
};

int dsn_build(const struct dsn_info *info, const struct dsn_rcpt *rcpts, size_t n, buf_t *out);

#endif
