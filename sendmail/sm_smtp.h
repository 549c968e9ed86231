/*
 * NAME
 *	sm_smtp - hikyaku-sendmail's SMTP connection to the daemon
 * SUMMARY
 *	A small blocking SMTP client for one submission on loopback: connect,
 *	commands and replies one at a time, the DATA stream in blocks. Every
 *	step has a deadline (poll(2)); replies are read by the outbound
 *	client's parser (smtp_reply_parser_line(), relay/smtp_client.h).
 * DESCRIPTION
 *	sm_smtp_connect() connects to HOST (a numeric address) and PORT
 *	within timeout_ms. sm_smtp_reply() reads one complete reply within
 *	timeout_ms; with ehlo, the extensions 8BITMIME, SMTPUTF8 and SIZE
 *	of a 250 reply's lines are noted in s. sm_smtp_cmd() sends one
 *	command line (CRLF added) and reads its reply. sm_smtp_write()
 *	sends bytes, each write making progress within timeout_ms.
 *	sm_smtp_close() closes the socket.
 *
 *	A failure without a reply is returned as a reply with code 0 and
 *	a sentence in its text ("timeout waiting for ...", "connection
 *	closed ...").
 * DIAGNOSTICS
 *	Each function returns 0, or -1 with r (or fail) describing why.
 * TOUCHES
 *	One TCP socket.
 */
#ifndef HK_SENDMAIL_SM_SMTP_H
#define HK_SENDMAIL_SM_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/smtp_client.h"   /* struct smtp_reply and its parser */

#define SM_LINE_MAX 4096

struct sm_smtp {
	int fd;
	char in[SM_LINE_MAX];
	size_t in_len;
	bool ext_8bitmime;
	bool ext_smtputf8;
	bool ext_size;
};

int sm_smtp_connect(struct sm_smtp *s, const char *host, uint16_t port, int timeout_ms,
                    struct smtp_reply *fail);
int sm_smtp_reply(struct sm_smtp *s, int timeout_ms, bool ehlo, struct smtp_reply *r);
int sm_smtp_cmd(struct sm_smtp *s, const char *line, int timeout_ms, struct smtp_reply *r);
int sm_smtp_write(struct sm_smtp *s, const char *p, size_t n, int timeout_ms,
                  struct smtp_reply *fail);
void sm_smtp_close(struct sm_smtp *s);

#endif
