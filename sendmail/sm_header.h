/*
 * NAME
 *	sm_header - the header of a message piped into hikyaku-sendmail
 * SUMMARY
 *	Finds where the header of the input ends, takes the recipients from
 *	To:, Cc: and Bcc: (-t), removes Bcc:, finds the From: address, and
 *	adds a From: when the message has none (SPEC §10). Addresses are read
 *	by GMime's RFC 5322 parser (internet_address_list_parse); a display
 *	name given with -F is RFC 2047-encoded by GMime.
 * DESCRIPTION
 *	sm_header_scan() looks at the first n bytes of the input (eof: that
 *	is all of it) and says where its header ends: SM_HDR_MORE (no end
 *	yet: read more), SM_HDR_BLANK (an empty line ends it), SM_HDR_BODY
 *	(a line that is neither a header field nor its continuation starts
 *	the body; a blank line must be put before it), SM_HDR_EOF (the input
 *	is only header), SM_HDR_TOO_BIG (more than max bytes of header).
 *	*hdr_len is the length of the header fields, complete lines; the
 *	empty or body line after it is the body's (sm_body).
 *
 *	sm_header_process() reads the header fields p[0..n) and fills r:
 *	r->out is the header to send, CRLF line ends, without Bcc: and
 *	Resent-Bcc: (blind copies are never shown, with or without -t),
 *	plus "From: NAME <from_addr>" when the message has no From: (NAME:
 *	o->full_name, may be NULL; o->from_addr is the envelope sender, or
 *	USER@HOSTNAME for the null sender); r->rcpts, with o->extract, every
 *	address of To:, Cc: and Bcc: (groups included); r->from_addr, the
 *	first mailbox of From:, or NULL. r->eight_bit: a byte >= 0x80 in the
 *	header.
 *
 *	sm_addrs_add() parses an address list (a header value, a command
 *	line argument) and appends each addr-spec to v (g_free'd strings),
 *	skipping those already there (compared case-insensitively). It
 *	returns the number of mailboxes read (0 for an empty group), -1
 *	when the text holds no address GMime can read, or -2 (and appends
 *	nothing) when an address of it holds a control character (a bare CR
 *	in a quoted local part: GMime keeps it). No address given out, in
 *	r->rcpts or r->from_addr, holds one; a From: mailbox that does is
 *	passed over.
 * DIAGNOSTICS
 *	sm_header_process() returns 0, or -1 with a sentence in r->error
 *	(an address field that cannot be read, or that holds an address
 *	with a control character).
 * TOUCHES
 *	Nothing: bytes in, strings out. Needs g_mime_init().
 */
#ifndef HK_SENDMAIL_SM_HEADER_H
#define HK_SENDMAIL_SM_HEADER_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

enum sm_hdr_end { SM_HDR_MORE, SM_HDR_BLANK, SM_HDR_BODY, SM_HDR_EOF, SM_HDR_TOO_BIG };

enum sm_hdr_end sm_header_scan(const char *p, size_t n, bool eof, size_t max, size_t *hdr_len);

struct sm_header_opts {
	bool extract;               /* -t */
	const char *full_name;      /* -F, or NULL */
	const char *from_addr;      /* for the From: added when there is none */
};

struct sm_header_result {
	GString *out;
	GPtrArray *rcpts;           /* char *, g_free */
	char *from_addr;            /* g_free; NULL: no From: mailbox */
	bool had_from;
	bool eight_bit;
	char error[256];
};

int sm_header_process(const char *p, size_t n, const struct sm_header_opts *o,
                      struct sm_header_result *r);
void sm_header_result_free(struct sm_header_result *r);
int sm_addrs_add(const char *text, GPtrArray *v);

#endif
