/*
 * NAME
 *	smtp_reply - SMTP replies, both ways: the lines the listener sends,
 *	and the replies the outbound client receives
 * SUMMARY
 *	One module for replies and statuses (RFC 5321 §4.2, RFC 3463,
 *	RFC 2034, RFC 5248). The R_* constants are every reply hikyaku's
 *	listener sends (SPEC §5's table) as ready-made lines without CRLF;
 *	struct smtp_reply is one reply as a server sent it, put together by
 *	the reply parser, or the reason there was none (enum smtp_noreply).
 *	Pure: no I/O, so the reply parser is unit-tested and fuzzed alone.
 * DESCRIPTION
 *	The R_* lines: the session adds CRLF; replies that carry a value (host
 *	name, queue id) are formats.
 *
 *	smtp_reply_parser_init() readies a parser for one reply;
 *	smtp_reply_parser_line() feeds it one line (without CRLF) and returns
 *	1 when the reply is complete, 0 when more lines follow, -1 on a
 *	malformed line (no 3-digit code 2xx-5xx, no blank or '-' after it, a
 *	code that changes between lines of one reply, a line over
 *	SMTP_REPLY_LINE_MAX octets, more than SMTP_REPLY_LINES_MAX lines). The
 *	complete reply is in p->r: code, the enhanced status of the first
 *	line when its class is the reply's (RFC 2034 §3; "" otherwise), and
 *	the text of all lines joined with one blank, the status repeated on
 *	each line left out, control characters and non-ASCII octets as '?',
 *	cut to fit, never with a blank at an end.
 *
 *	smtp_reply_none() fills in a reply for a failure without one: code
 *	0, the enhanced status of the reason (smtp_noreply_status()), the
 *	text formatted from fmt. The status follows the reason alone, never
 *	the wording of the text:
 *	  SMTP_NOREPLY_LOCAL        ""      nothing wrong with the server (not
 *	                                    sent: an earlier step failed; out
 *	                                    of memory; a command too long)
 *	  SMTP_NOREPLY_NO_ANSWER    4.4.1   no connection (refused, timeout)
 *	  SMTP_NOREPLY_CONNECTION   4.4.2   the connection broke (closed, a
 *	                                    read/write/TLS error, a timeout)
 *	  SMTP_NOREPLY_PROTOCOL     4.5.0   the server broke the protocol
 *	  SMTP_NOREPLY_TLS_FAILED   4.7.5   the TLS handshake failed
 *	  SMTP_NOREPLY_TLS_REQUIRED 4.7.10  the TLS mode needs STARTTLS, or
 *	                                    credentials need TLS
 *	  SMTP_NOREPLY_AUTH         4.7.8   no AUTH the client can use
 * TOUCHES
 *	Memory only.
 */
#ifndef HK_PROTO_SMTP_REPLY_H
#define HK_PROTO_SMTP_REPLY_H

#include <stddef.h>

/* Connection level. */
#define R_GREETING_FMT        "220 %s ESMTP hikyaku"
#define R_BYE_FMT             "221 2.0.0 %s closing connection"
#define R_TOO_MANY_CONN       "421 4.3.2 Too many connections, try again later"
#define R_TOO_MANY_OUTSIDE    "421 4.3.2 Too many connections from outside networks, try again later"
#define R_TOO_MANY_CLIENT     "421 4.7.0 Too many connections from your address"
#define R_TIMEOUT_FMT         "421 4.4.2 %s Error: timeout exceeded"
#define R_SHUTDOWN_FMT        "421 4.3.2 %s Service shutting down"
#define R_LINE_TOO_LONG       "500 5.5.2 Error: command line too long"

/* Commands. */
#define R_NOOP_OK             "250 2.0.0 Ok"
#define R_SENDER_OK           "250 2.1.0 Ok"
#define R_RCPT_OK             "250 2.1.5 Ok"
#define R_RESET_OK            "250 2.0.0 Ok"
#define R_HELO_FMT            "250 %s"
#define R_VRFY                "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"
#define R_EXPN                "502 5.5.1 EXPN not available"
#define R_HELP                "214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321"
#define R_DATA_GO             "354 End data with <CR><LF>.<CR><LF>"
#define R_QUEUED_FMT          "250 2.0.0 Ok: queued as %s"
#define R_STARTTLS_GO         "220 2.0.0 Ready to start TLS"

/* Errors of syntax and sequence. */
#define R_UNKNOWN_CMD         "500 5.5.2 Error: command not recognized"
#define R_NEED_HELO           "503 5.5.1 Error: send HELO/EHLO first"
#define R_NEED_MAIL           "503 5.5.1 Error: need MAIL command"
#define R_NESTED_MAIL         "503 5.5.1 Error: nested MAIL command"
#define R_NO_VALID_RCPT       "503 5.5.1 Error: no valid recipients"
#define R_NEED_EHLO_AFTER_TLS "503 5.5.1 Error: send EHLO again after STARTTLS"
#define R_SYNTAX              "501 5.5.4 Syntax error in parameters or arguments"
#define R_SYNTAX_HELO         "501 5.5.4 Syntax error: invalid domain name in HELO/EHLO"
#define R_SYNTAX_NOARG_FMT    "501 5.5.4 Syntax error: %s takes no argument"
#define R_BAD_ADDRESS         "501 5.5.4 Error: bad address syntax"
#define R_ADDR_TOO_LONG       "501 5.5.4 Error: address too long"
#define R_UNKNOWN_PARAM       "555 5.5.4 Error: unrecognized MAIL/RCPT parameter"
#define R_BAD_PARAM           "501 5.5.4 Error: bad MAIL/RCPT parameter value"
#define R_NEED_SMTPUTF8       "553 5.6.7 Error: UTF-8 address requires the SMTPUTF8 parameter"
#define R_BDAT                "502 5.5.1 Error: CHUNKING not offered"
#define R_STARTTLS_UNAVAIL    "502 5.5.1 Error: STARTTLS not available"
#define R_STARTTLS_AGAIN      "503 5.5.1 Error: TLS already active"

/* Policy and limits. */
#define R_RELAY_DENIED        "554 5.7.1 Relay access denied"
#define R_TOO_MANY_RCPT       "452 4.5.3 Error: too many recipients"
#define R_SIZE_EXCEEDED       "552 5.3.4 Error: message size exceeds fixed maximum message size"
#define R_STORAGE             "452 4.3.1 Insufficient system storage"
#define R_LOCAL_ERROR         "451 4.3.0 Error: local error in processing"
#define R_NO_POSTMASTER       "550 5.1.1 Error: no local mailbox; use postmaster@domain"
#define R_BARE_CR             "554 5.6.0 Error: message contains a bare CR"
#define R_BARE_LF             "554 5.6.0 Error: message contains a bare LF"
#define R_BARE_LF_CMD         "500 5.5.2 Error: bare <LF> in a command line"
#define R_NUL                 "554 5.6.0 Error: message contains a NUL byte"
#define R_TOO_MANY_HOPS       "554 5.4.6 Error: too many hops, the mail is looping"
#define R_LONG_LINE           "554 5.6.0 Error: message has a line longer than 998 octets"

/* AUTH (RFC 4954). */
#define R_AUTH_OK             "235 2.7.0 Authentication successful"
#define R_AUTH_FAILED         "535 5.7.8 Error: authentication credentials invalid"
#define R_AUTH_TOO_MANY       "421 4.7.0 Error: too many authentication failures"
#define R_AUTH_NEED_TLS       "530 5.7.0 Must issue a STARTTLS command first"
#define R_AUTH_UNAVAIL        "503 5.5.1 Error: authentication not enabled"
#define R_AUTH_ALREADY        "503 5.5.1 Error: already authenticated"
#define R_AUTH_IN_MAIL        "503 5.5.1 Error: AUTH not allowed during a mail transaction"
#define R_AUTH_MECH           "504 5.5.4 Error: unsupported authentication mechanism"
#define R_AUTH_CANCELLED      "501 5.7.0 Error: authentication cancelled"
#define R_AUTH_BAD_B64        "501 5.5.2 Error: cannot decode response"
#define R_AUTH_USERNAME       "334 VXNlcm5hbWU6"      /* "Username:" */
#define R_AUTH_PASSWORD       "334 UGFzc3dvcmQ6"      /* "Password:" */
#define R_AUTH_CONTINUE       "334 "

/* ---- replies received (the outbound client) ---- */

/*
 * RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; real servers
 * send longer ones, so the bound is generous but finite.
 */
#define SMTP_REPLY_LINE_MAX 4096
#define SMTP_REPLY_LINES_MAX 100          /* EHLO replies have ~15 lines */

struct smtp_reply {
	int code;                         /* 0: no reply (smtp_reply_none()) */
	char status[16];                  /* enhanced status code ("5.1.1"), or "" */
	char text[512];                   /* the reply, lines joined with " ", or what went wrong */
};

struct smtp_reply_parser {
	struct smtp_reply r;
	int nlines;
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
int smtp_reply_parser_line(struct smtp_reply_parser *p, const char *line, size_t len);

/* Why there is no reply; each reason has one enhanced status. */
enum smtp_noreply {
	SMTP_NOREPLY_LOCAL,
	SMTP_NOREPLY_NO_ANSWER,
	SMTP_NOREPLY_CONNECTION,
	SMTP_NOREPLY_PROTOCOL,
	SMTP_NOREPLY_TLS_FAILED,
	SMTP_NOREPLY_TLS_REQUIRED,
	SMTP_NOREPLY_AUTH,
};

const char *smtp_noreply_status(enum smtp_noreply why);
void smtp_reply_none(struct smtp_reply *r, enum smtp_noreply why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
