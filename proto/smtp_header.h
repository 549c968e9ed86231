/*
 * NAME
 *	smtp_header - the header fields hikyaku adds to a mail it queues,
 *	and the unfolded value of a field it reads
 * SUMMARY
 *	Pure text building: the Received: field (RFC 5321 §4.4), and Date:
 *	and Message-ID: for a mail that lacks them (RFC 5322 §3.6, SPEC §5).
 *	Pure reading: a field's value unfolded. No I/O, no clock: the caller
 *	passes the time.
 * DESCRIPTION
 *	smtp_received_protocol() names the "with" keyword of RFC 3848 and
 *	RFC 6531 §3.7.3 for a session (ESMTPSA, UTF8SMTPS, ...).
 *
 *	smtp_date_format() formats a Unix time as an RFC 5322 date in the
 *	local time zone ("Tue, 01 Dec 2026 09:00:00 +0900"; English names
 *	whatever the locale, the day in two digits, as GMime writes it), cut
 *	to fit cap. The one date format of hikyaku's mail: the Received: and
 *	Date: fields here, and the DSNs' dates (relay/dsn.c).
 *
 *	smtp_header_build() appends to out, in this order: "Received: from
 *	HELO ([IP])", "(using TLS)" when tls is set, "by HOST (hikyaku)
 *	with PROTO id QUEUEID", "for <RCPT>" when there is exactly one
 *	recipient (naming one of several would tell each about the others),
 *	"; DATE"; then Date: and Message-ID: <QUEUEID@HOST> when the mail
 *	has none. Every line ends in CRLF; continuation lines start with a
 *	tab. Returns 0, or the buf_append() error (out's cap).
 *
 *	smtp_header_unfold() gives the value of one header field (len bytes
 *	from its name on, its lines ending in CRLF or LF, the last maybe in
 *	none) unfolded (RFC 5322 §2.2.3): the bytes after the first ':'
 *	with each line end removed, LF and a CR before it, and nothing
 *	else; the blanks that began the continuation lines stay, and so do
 *	the value's leading and trailing blanks. NUL-terminated, allocated
 *	with g_malloc() (g_free() it); NULL when the field has no ':'. Used
 *	by the listener (server/session_commit.c) and hikyaku-sendmail
 *	(sendmail/sm_header.c); relay/dsn_parse.c unfolds while it splits a
 *	status part into fields, with rules of its own (see there).
 * TOUCHES
 *	out only (smtp_header_build); memory (smtp_header_unfold).
 */
#ifndef HK_PROTO_SMTP_HEADER_H
#define HK_PROTO_SMTP_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "util/buf.h"

#define SMTP_HEADER_MAX 4096   /* the headers hikyaku adds, at most */

struct smtp_header_info {
	const char *helo;          /* the EHLO/HELO name as given */
	const char *client_ip;
	const char *tls;           /* "TLSv1.3 TLS_AES_..." or NULL */
	const char *hostname;      /* [server] hostname */
	const char *protocol;      /* smtp_received_protocol() */
	const char *queue_id;
	const char *single_rcpt;   /* the recipient when there is one, else NULL */
	time_t arrival;
	bool has_date;             /* the mail has a Date: field */
	bool has_message_id;
};

const char *smtp_received_protocol(bool esmtp, bool tls, bool auth, bool smtputf8);
void smtp_date_format(char *out, size_t cap, time_t t);
int smtp_header_build(buf_t *out, const struct smtp_header_info *h);
char *smtp_header_unfold(const char *field, size_t len);

#endif
