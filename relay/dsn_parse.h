/*
 * NAME
 *	dsn_parse - read incoming delivery status notifications (RFC 3464)
 * SUMMARY
 *	Finds the machine-readable status part of a bounce (Amazon SES,
 *	Postfix, Exim, Gmail, hikyaku's own relay/dsn.c, ...) and gives its
 *	per-message and per-recipient fields, and the Message-ID and From of
 *	the returned original message, for the suppression list (SPEC §6).
 * DESCRIPTION
 *	dsn_parse() parses a whole message (header section and body, CRLF or
 *	LF) with GMime and walks its MIME tree, descending into multiparts
 *	at most DSN_PARSE_DEPTH_MAX levels deep. The first
 *	message/delivery-status or message/global-delivery-status part
 *	(RFC 3464 §2, RFC 6533 §6.2) makes the message a report. Its content
 *	is a series of header-style field blocks separated by blank lines:
 *	the first block is the per-message block unless it already names a
 *	Final-Recipient, every block with a Final-Recipient is one
 *	recipient. Field names are case-insensitive; folded values are
 *	unfolded, every run of blanks and control characters becomes one
 *	space, the ends are trimmed; the first occurrence of a field in a
 *	block counts; unknown fields are ignored.
 *
 *	A recipient is reported only when its block has a Final-Recipient of
 *	type rfc822 or utf-8 (RFC 6533 §3, "\x{HEX}" escapes decoded; a
 *	value without a type is read as rfc822), a known Action and a valid
 *	Status: final_recipient, action and status are never NULL. The
 *	address is the one between <> when there are brackets, otherwise the
 *	value up to a blank or a comment; its case is kept. action is
 *	lowercased and one of failed, delayed, delivered, relayed, expanded.
 *	status is the RFC 3463 code alone ("5.1.1"), without the comment
 *	that may follow it. diagnostic is the Diagnostic-Code text without
 *	its "smtp;" type, remote_mta and reporting_mta the first word of the
 *	MTA name after "dns;" (real reports append comments and addresses).
 *
 *	The returned original (RFC 3462 §2: text/rfc822-headers, or
 *	message/rfc822, message/global, message/global-headers) supplies
 *	original_message_id (the first <...> of its Message-ID, brackets
 *	kept) and original_from (the From field's value as written, unfolded
 *	but not RFC 2047-decoded: give it to route_header_addrs()). A part
 *	next to the status part is preferred over one elsewhere. Message
 *	parts are read for their header section only and never searched for
 *	a status part: the returned original is the sender's content, and a
 *	report attached to it must not count as a report about it.
 *
 *	Every string is valid UTF-8, NUL-terminated, without control
 *	characters (C0, DEL, C1 as U+0080..U+009F), and at most DSN_PARSE_FIELD_MAX octets. A field value
 *	longer than that is cut (Diagnostic-Code) or treated as absent
 *	(every other field: a cut address would name someone else). At most
 *	DSN_PARSE_RCPTS_MAX recipients are reported, each address once
 *	(compared case-insensitively): of several blocks for one address the
 *	first that dsn_rcpt_suppresses() is kept, else the first "failed",
 *	else the first. Later blocks, and those after DSN_PARSE_BLOCKS_MAX,
 *	are ignored.
 *
 *	Cost is bounded whatever the size and MIME structure (SPEC §6.1):
 *	only the first DSN_PARSE_BYTES_MAX octets and DSN_PARSE_LINES_MAX
 *	lines of the message are read, and only up to the
 *	(DSN_PARSE_PARTS_MAX + 1)-th line starting with "--" (a possible
 *	MIME boundary), each cut falling at the start of a line. A report
 *	has its status part and the returned header section near its start
 *	(RFC 6522 §3); one whose status part lies beyond the cut is read as
 *	no report. 25 MB of empty parts cost a few MB and milliseconds.
 *
 *	dsn_report_free() releases what dsn_parse() filled in and zeroes the
 *	structure; it accepts NULL and a zeroed structure.
 *
 *	dsn_rcpt_suppresses() tells whether a recipient's result puts the
 *	address on the suppression list (SPEC §6): action "failed" with a
 *	status that outcome_suppresses() (relay/outcome.h) names, 5.1.x
 *	(bad mailbox or destination) or 5.2.1 (mailbox disabled). Policy rejections (5.7.x), full mailboxes (5.2.2) and
 *	everything that is not "failed" do not. Whether the report itself is
 *	to be believed (VERP tag, envelope id, message id) is the caller's
 *	decision.
 * DIAGNOSTICS
 *	dsn_parse() returns 1 when the message is a delivery status report,
 *	0 when it is not one (including bytes that are no message at all),
 *	-EINVAL for bad arguments, -ENOMEM when memory ran out. out is
 *	filled in only when 1 is returned and is zeroed otherwise. A report
 *	may have no recipients (nrcpts 0) when no block was usable.
 * TOUCHES
 *	Memory only (initialises GMime through route_init()). Safe on
 *	hostile input: the octets, lines and parts given to GMime, the tree
 *	walk, the number of recipients and every field are bounded.
 */
#ifndef HK_RELAY_DSN_PARSE_H
#define HK_RELAY_DSN_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define DSN_PARSE_DEPTH_MAX 10     /* multipart levels below the top */
#define DSN_PARSE_PARTS_MAX 1000   /* MIME parts visited */
#define DSN_PARSE_RCPTS_MAX 1000   /* recipients reported */
#define DSN_PARSE_FIELD_MAX 4096   /* octets per field value */
#define DSN_PARSE_BYTES_MAX (1024 * 1024)  /* octets of the message read */
#define DSN_PARSE_LINES_MAX 8000   /* lines of the message read (GMime: ~600 B a header) */
#define DSN_PARSE_BLOCKS_MAX 4000  /* field blocks of the status part read */

struct dsn_report_rcpt {
	char *final_recipient;     /* the address, without "rfc822;" and <>, trimmed */
	char *original_recipient;  /* or NULL */
	char *action;              /* lowercased: failed, delayed, delivered, relayed, expanded */
	char *status;              /* "5.1.1" (the code only) */
	char *diagnostic;          /* Diagnostic-Code without "smtp;", unfolded, or NULL */
	char *remote_mta;          /* without "dns;", or NULL */
};

struct dsn_report {
	char *original_envelope_id;   /* Original-Envelope-Id, or NULL */
	char *reporting_mta;          /* without "dns;", or NULL */
	char *original_message_id;    /* of the returned headers/message, <> kept, or NULL */
	char *original_from;          /* From of the returned headers, or NULL */
	struct dsn_report_rcpt *rcpts;
	size_t nrcpts;
};

int dsn_parse(const char *msg, size_t len, struct dsn_report *out);
void dsn_report_free(struct dsn_report *r);
bool dsn_rcpt_suppresses(const struct dsn_report_rcpt *r);

#endif
