/*
 * NAME
 *	smtp_cmd - parse SMTP command lines and their arguments (RFC 5321)
 * SUMMARY
 *	Pure functions: bytes in, structures out. No I/O, no clock, no
 *	allocation. Every input carries its length; nothing relies on a NUL.
 * DESCRIPTION
 *	smtp_cmd_parse() splits one command line (without its CRLF) into a
 *	verb and the argument text. "MAIL FROM:" and "RCPT TO:" are verbs
 *	of their own (the argument then starts after the colon and any
 *	spaces). Verbs are case-insensitive.
 *
 *	smtp_mail_parse() parses the argument of MAIL FROM: the reverse-path
 *	and the ESMTP parameters SIZE=, BODY=7BIT|8BITMIME, SMTPUTF8 and
 *	AUTH= (RFC 4954 §5, accepted and ignored). smtp_rcpt_parse() parses
 *	RCPT TO: a forward-path, or <postmaster>; RCPT takes no parameter
 *	(hikyaku does not offer DSN). Source routes (<@a,@b:user@c>) are
 *	accepted and dropped (RFC 5321 §4.1.1.3, Appendix C). Quoted local
 *	parts are kept as written. Non-ASCII in a path is allowed only when
 *	utf8 is true (RFC 6531) and must be valid UTF-8.
 *
 *	smtp_domain_valid() checks an EHLO/HELO argument: a domain (labels of
 *	letters, digits and hyphens, a single label such as "localhost"
 *	included) or an address literal ([192.0.2.1], [IPv6:...]).
 *	Either is at most SMTP_DOMAIN_MAX (255) octets, brackets included
 *	(SPEC §5: 501 5.5.4 beyond), so it always fits a char[SMTP_DOMAIN_MAX + 1].
 * DIAGNOSTICS
 *	The parsers return one of enum smtp_parse_status; the session maps
 *	each to its reply (proto/smtp_reply.h).
 * TOUCHES
 *	Nothing but its arguments.
 */
#ifndef HK_PROTO_SMTP_CMD_H
#define HK_PROTO_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_LOCAL_MAX 64     /* RFC 5321 §4.5.3.1.1 */
#define SMTP_DOMAIN_MAX 255   /* RFC 5321 §4.5.3.1.2 */
#define SMTP_PATH_MAX 256     /* RFC 5321 §4.5.3.1.3, including < > */
#define SMTP_CMD_LINE_MAX 512 /* RFC 5321 §4.5.3.1.4, including CRLF */

enum smtp_verb {
	SMTP_UNKNOWN = 0,
	SMTP_EHLO,
	SMTP_HELO,
	SMTP_MAIL,       /* "MAIL FROM:" */
	SMTP_RCPT,       /* "RCPT TO:" */
	SMTP_DATA,
	SMTP_RSET,
	SMTP_NOOP,
	SMTP_QUIT,
	SMTP_VRFY,
	SMTP_EXPN,
	SMTP_HELP,
	SMTP_STARTTLS,
	SMTP_AUTH,
	SMTP_BDAT,       /* recognised so that it gets a clear "not offered" */
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg;      /* points into the line; leading spaces skipped */
	size_t arg_len;       /* trailing spaces removed */
};

enum smtp_parse_status {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_SYNTAX,         /* 501 5.5.4 (or 501 5.1.7/5.1.3 for paths) */
	SMTP_PARSE_BAD_ADDRESS,    /* 553 5.1.3: path syntax wrong */
	SMTP_PARSE_TOO_LONG,       /* 501 5.5.4 path or part too long */
	SMTP_PARSE_UNKNOWN_PARAM,  /* 555 5.5.4 */
	SMTP_PARSE_BAD_PARAM,      /* 501 5.5.4 known parameter, bad value */
	SMTP_PARSE_NEED_SMTPUTF8,  /* 553 5.6.7 non-ASCII without SMTPUTF8 */
};

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

struct smtp_mail_args {
	char addr[SMTP_PATH_MAX + 1];  /* "local@domain", "" for the null path */
	size_t addr_len;
	bool null_sender;
	bool has_utf8;                 /* the address has non-ASCII bytes */
	bool size_given;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
};

struct smtp_rcpt_args {
	char addr[SMTP_PATH_MAX + 1];  /* "local@domain" or "postmaster" */
	size_t addr_len;
	bool postmaster;               /* <postmaster> without a domain */
	bool has_utf8;
};

int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd);
enum smtp_parse_status smtp_mail_parse(const char *arg, size_t len, struct smtp_mail_args *out);
enum smtp_parse_status smtp_rcpt_parse(const char *arg, size_t len, bool utf8,
                                       struct smtp_rcpt_args *out);
bool smtp_domain_valid(const char *s, size_t len, bool utf8);

/*
 * smtp_addr_split() finds the '@' that separates local part and domain in
 * an address produced by the parsers above (the last '@' outside quotes).
 * Returns its offset, or -1 when there is none.
 */
long smtp_addr_split(const char *addr, size_t len);

/*
 * smtp_auth_plain_decode() decodes an AUTH PLAIN response (RFC 4616):
 * base64 of authzid NUL authcid NUL passwd. Returns 0 and fills the
 * three NUL-terminated outputs (each at most cap-1 bytes), or -1.
 * smtp_base64_decode() decodes standard base64 into out (cap bytes);
 * returns the decoded length or -1.
 */
int smtp_auth_plain_decode(const char *b64, size_t len, char *authz, char *user,
                           char *pass, size_t cap);
long smtp_base64_decode(const char *b64, size_t len, unsigned char *out, size_t cap);

#endif
