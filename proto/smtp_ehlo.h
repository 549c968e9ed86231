/*
 * NAME
 *	smtp_ehlo - what a server offers in its reply to EHLO
 *	(RFC 5321 §4.1.1.1)
 * SUMMARY
 *	The outbound client's reading of the keyword lines of a 250 reply to
 *	EHLO: the extensions hikyaku uses, the AUTH mechanisms it has (RFC
 *	4954), and the SIZE limit (RFC 1870). Pure: no I/O, so it is
 *	unit-tested alone.
 * DESCRIPTION
 *	smtp_ehlo_init() forgets everything (before EHLO, after TLS, for
 *	HELO). smtp_ehlo_line() reads one keyword line, without the code and
 *	its separator and without CRLF: "KEYWORD [params]", the keyword in
 *	any case; "AUTH=..." (the old form) is taken as AUTH. Unknown
 *	keywords are ignored. SIZE sets size_limit only when all of its
 *	parameter is digits (at most 19; none or 0: no fixed limit); AUTH
 *	adds PLAIN and LOGIN when listed.
 *
 *	smtp_ehlo_ext() is the SMTP_EXT_ bit of an extension's name, in any
 *	case, or 0 for one this module does not know.
 * TOUCHES
 *	Memory only.
 */
#ifndef HK_PROTO_SMTP_EHLO_H
#define HK_PROTO_SMTP_EHLO_H

#include <stddef.h>
#include <stdint.h>

enum {
	SMTP_EXT_PIPELINING = 1u << 0,
	SMTP_EXT_SIZE = 1u << 1,
	SMTP_EXT_8BITMIME = 1u << 2,
	SMTP_EXT_SMTPUTF8 = 1u << 3,
	SMTP_EXT_STARTTLS = 1u << 4,
	SMTP_EXT_AUTH = 1u << 5,
	SMTP_EXT_DSN = 1u << 6,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1u << 7,
};

enum { SMTP_MECH_PLAIN = 1u << 0, SMTP_MECH_LOGIN = 1u << 1 };

struct smtp_ehlo {
	unsigned ext;           /* SMTP_EXT_* offered */
	unsigned mechs;         /* SMTP_MECH_* listed with AUTH */
	uint64_t size_limit;    /* SIZE's number; 0: none, or no fixed limit */
};

void smtp_ehlo_init(struct smtp_ehlo *e);
void smtp_ehlo_line(struct smtp_ehlo *e, const char *p, size_t n);
unsigned smtp_ehlo_ext(const char *name);

#endif
