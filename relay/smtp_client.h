/*
 * NAME
 *	smtp_client - the outbound SMTP client (RFC 5321, 3207, 4954, 2920)
 * SUMMARY
 *	One connection to one server, on util/conn.c: greeting, EHLO (HELO
 *	when EHLO is refused), STARTTLS as the TLS mode says, AUTH, then any
 *	number of transactions on the same connection. A timeout guards every
 *	step. The caller (the queue runner) classifies the replies.
 * DESCRIPTION
 *	smtp_client_open() connects and gets the session ready; open_cb runs
 *	once: with fail == NULL when transactions may begin, or with the
 *	reason it failed (then the client is already being freed).
 *	TLS modes: SCT_NONE plain text; SCT_MAY STARTTLS when offered, no
 *	certificate check, and when the handshake fails a new plain-text
 *	connection; SCT_ENCRYPT STARTTLS required, no certificate check;
 *	SCT_VERIFY STARTTLS required, chain and host name verified (tls_ctx
 *	must verify); SCT_SMTPS TLS from the first byte (port 465), verified.
 *	A server that sends bytes behind its 220 to STARTTLS is dropped
 *	(never read as post-TLS replies). AUTH (PLAIN when offered, else
 *	LOGIN) runs when username is set, only over TLS unless the mode is
 *	SCT_NONE.
 *
 *	smtp_client_send() runs one transaction: MAIL FROM (SIZE=, BODY=8BITMIME
 *	when the server offers them and they apply, SMTPUTF8 when the mail
 *	needs it, ENVID= when envid is set and the server offers DSN), RCPT
 *	TO each, DATA, the message dot-stuffed with CRLF line ends, the final
 *	dot; with PIPELINING offered, MAIL, RCPTs and DATA go in one write.
 *	When no recipient was accepted the data is not sent. done_cb gets
 *	every reply. A transaction after a failed one starts with RSET.
 *	The caller checks smtp_client_has() first for what the message needs
 *	(SMTPUTF8, SIZE). Everything in the message but m->data is copied;
 *	m->data must stay valid until done_cb runs. smtp_client_send()
 *	returns 0, or (and done_cb then does not run) UV_EINVAL (no
 *	recipient, or a control character or angle bracket in an address),
 *	UV_EBUSY (the open or a transaction is under way) or UV_ENOTCONN (the
 *	connection is gone, e.g. the server hung up while it was idle:
 *	smtp_client_alive() tells before the call).
 *	A timeout of 0 in the parameters means the default: 30 s to connect,
 *	5 min per reply, 10 min after the final dot.
 *
 *	smtp_client_close() says QUIT when the connection is idle and closes;
 *	the memory is freed later, on the loop. smtp_client_on_freed() asks
 *	for a call when that happens: the connection is closed then, so a
 *	caller that limits its connections counts one as open until it runs
 *	(the QUIT and its 221 still hold the server's slot). It may run inside
 *	smtp_client_close() when the connection was already closed.
 *
 *	The replies are struct smtp_reply of proto/smtp_reply.h, read by its
 *	parser; the keywords of the reply to EHLO are read by
 *	proto/smtp_ehlo.h; the message is dot-stuffed by proto/smtp_stuff.h.
 * DIAGNOSTICS
 *	A reply with code 0 means there was none: connection refused or
 *	lost, TLS failed, timeout; text then says what happened in one line,
 *	and status the enhanced status of the reason (enum smtp_noreply:
 *	4.4.1 no answer, 4.4.2 bad connection, 4.5.0 protocol, 4.7.5 TLS,
 *	4.7.10 encryption needed, 4.7.8 authentication; "" when the step was
 *	not sent because an earlier one failed).
 * TOUCHES
 *	One TCP connection.
 */
#ifndef HK_RELAY_SMTP_CLIENT_H
#define HK_RELAY_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "proto/smtp_reply.h"   /* struct smtp_reply, its parser, enum smtp_noreply */

enum smtp_client_tls { SCT_NONE, SCT_MAY, SCT_ENCRYPT, SCT_VERIFY, SCT_SMTPS };

struct smtp_client_params {
	const char *host;                 /* name: SNI, certificate check, logs */
	const struct sockaddr *addr;      /* where to connect, port included */
	const char *helo;                 /* our host name */
	enum smtp_client_tls tls;
	SSL_CTX *tls_ctx;                 /* verifying for VERIFY/SMTPS, any for MAY/ENCRYPT */
	const char *username;             /* AUTH when set */
	const char *password;
	uint64_t connect_timeout_ms;
	uint64_t timeout_ms;              /* for each reply */
	uint64_t data_timeout_ms;         /* for the reply to the final dot (RFC 5321 §4.5.3.2: 10 min) */
};

struct smtp_client_msg {
	const char *from;                 /* "" for the null sender */
	const char *const *rcpts;
	size_t nrcpts;
	const char *data;                 /* CRLF line ends, not dot-stuffed */
	size_t len;
	bool smtputf8;
	bool body_8bit;
	const char *envid;                /* ENVID= (xtext-encoded by the client), or NULL */
};

struct smtp_client_result {
	struct smtp_reply mail;
	struct smtp_reply *rcpt;          /* one per recipient */
	struct smtp_reply data;           /* code 0 when DATA was not reached */
	bool reusable;                    /* may carry another transaction */
};

struct smtp_client;
typedef void (*smtp_client_open_cb)(struct smtp_client *c, void *arg, const struct smtp_reply *fail);
typedef void (*smtp_client_done_cb)(struct smtp_client *c, void *arg,
                                    const struct smtp_client_result *r);

int smtp_client_open(uv_loop_t *loop, const struct smtp_client_params *p,
                     smtp_client_open_cb cb, void *arg, struct smtp_client **out);
int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m,
                     smtp_client_done_cb cb, void *arg);
void smtp_client_close(struct smtp_client *c);
void smtp_client_on_freed(struct smtp_client *c, void (*cb)(void *arg), void *arg);
bool smtp_client_tls_active(const struct smtp_client *c);
bool smtp_client_has(const struct smtp_client *c, const char *ext);
uint64_t smtp_client_size_limit(const struct smtp_client *c); /* 0: none advertised */
const char *smtp_client_relay(const struct smtp_client *c);  /* "host[ip]:port" */
/* Added: false once the connection can carry no transaction (closed, 421, error). */
bool smtp_client_alive(const struct smtp_client *c);

/*
 * A scripted transport instead of TCP, for unit tests and
 * fuzz/fuzz_smtp_client.c: the same state machine, driven without a
 * socket or a loop. smtp_client_open_io() is smtp_client_open() with io
 * in place of util/conn.c (p->addr still names the peer, for the relay
 * name). The client calls io->connect() to connect (answer with
 * smtp_client_io_connected()), io->write() to send (0, or a negative
 * error), io->timeout() to arm its one step timer (0: stop it; call
 * smtp_client_io_timeout() when it would fire), io->starttls() to begin
 * a handshake (answer with smtp_client_io_tls(): 0 done, CONN_ETLS
 * failed; the bytes stay plain text), io->close() to close (answer with
 * smtp_client_io_closed(), not from within io->close()), io->queued()
 * (optional) for bytes written but not yet gone, io->freed() (optional)
 * when the client's memory is released: no call on it after that.
 * smtp_client_io_input() hands it bytes the server sent, in any pieces;
 * smtp_client_io_eof() the end of the stream (UV_EOF, a libuv error,
 * CONN_ETLS). Calls on a closed client are ignored.
 */
struct smtp_client_io {
	void (*connect)(void *arg);
	int (*write)(void *arg, const void *p, size_t n);
	void (*timeout)(void *arg, uint64_t ms);
	int (*starttls)(void *arg);
	void (*close)(void *arg);
	size_t (*queued)(void *arg);
	void (*freed)(void *arg);
};
int smtp_client_open_io(const struct smtp_client_params *p, const struct smtp_client_io *io,
                        void *io_arg, smtp_client_open_cb cb, void *arg,
                        struct smtp_client **out);
void smtp_client_io_connected(struct smtp_client *c, int status);
void smtp_client_io_input(struct smtp_client *c, const char *p, size_t n);
void smtp_client_io_eof(struct smtp_client *c, int status);
void smtp_client_io_tls(struct smtp_client *c, int status);
void smtp_client_io_timeout(struct smtp_client *c);
void smtp_client_io_closed(struct smtp_client *c);

#endif
