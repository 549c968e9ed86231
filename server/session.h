/*
 * NAME
 *	session - one SMTP session of the listener, apart from its host
 * SUMMARY
 *	An explicit state machine (RFC 5321, RFC 2920 pipelining, RFC 3207
 *	STARTTLS, RFC 4954 AUTH) fed with the client's bytes in whatever
 *	pieces they arrive. It knows no socket, no server and no counter:
 *	everything outside the protocol goes through a small host interface,
 *	struct session_host. server/server.c is the real host (a socket per
 *	session, the queue, the log, the counts); tests/unit/test_session.c
 *	and fuzz/fuzz_session.c are hosts too, with scripted bytes.
 * DESCRIPTION
 *	session_new() makes a session for a client (ip as text; allowed:
 *	the client is in allow_networks); session_start() sends the greeting
 *	and starts reading. The host then reports what happens with:
 *	  session_input()     bytes from the client (plaintext);
 *	  session_tls_done()  the STARTTLS handshake ended (0 or < 0);
 *	  session_timeout()   the timer armed by host->timeout ran out;
 *	  session_eof()       the client closed or the connection failed;
 *	  session_drained()   the replies waiting to be written went down;
 *	  session_drain()     the server stops: 421 after the transaction;
 *	  session_closed()    the connection is gone; the session frees
 *	                      itself at once, or when its pending step
 *	                      (commit, password check, spill) returns, and
 *	                      then calls host->gone: the host's last news.
 *	session_id() is the id given to session_new().
 *	session_busy() tells whether the session waits for a queue commit
 *	(closing it then would lose the answer to a mail that is queued).
 *
 *	The host's operations (hctx is passed back as h):
 *	  write(h, p, n)       send replies; < 0: the connection failed
 *	  close(h, flush)      close (flush: let the last reply out first);
 *	                       the host calls session_closed() afterwards
 *	  read(h, on)          start/stop reading (back-pressure)
 *	  timeout(h, ms)       (re)arm the one timer
 *	  write_queued(h)      bytes written but not yet sent
 *	  starttls(h, ctx)     start the server side of a TLS handshake
 *	  tls_info(h)          "TLSv1.3 TLS_AES_..." once TLS is up; the
 *	                       session copies it (the engine may go first)
 *	  settings(h)          the current settings bundle (reload)
 *	  storage_ok(h, size)  room in the spool for a mail of size bytes
 *	  new_id(h, id)        the next queue id
 *	  spill(h, &sp, p, n, cb, arg)  append n message bytes to *sp (made
 *	                       on the first call) off the loop thread; cb
 *	                       with 0 or -errno; spill_free(h, sp) drops it
 *	  commit(h, env, msg, cb, arg)  queue a mail (queue_commit_spilled)
 *	  auth(h, db, user, pass, cb, arg)  check a password off the loop
 *	  rejected(h, fields)  a "rejected" event (SPEC §7); fields are the
 *	                       host's to emit or drop
 *	  received(h, env, fields)  a mail was queued: "received" event, and
 *	                       the envelope for the runner (valid during
 *	                       the call only)
 *	  gone(h)              the session has been freed
 * TOUCHES
 *	Only what the host does for it.
 */
#ifndef HK_SERVER_SESSION_H
#define HK_SERVER_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "relay/queue.h"
#include "server/settings.h"

struct session;

/* A message to commit: hdr (hikyaku's header fields), then the spilled
 * part (spill_len bytes of spill, may be 0), then tail (in memory). */
struct session_message {
	const char *hdr;
	size_t hdr_len;
	void *spill;
	uint64_t spill_len;
	const char *tail;
	size_t tail_len;
	/* DKIM (SPEC §5): run on the queue's worker before the write, its
	 * field goes in front of the message (queue_commit_spilled()); NULL:
	 * nothing to sign. */
	queue_prepend_fn sign;
	void *sign_arg;
};

typedef void (*session_step_cb)(void *arg, int status);
typedef void (*session_auth_cb)(void *arg, bool ok);

struct session_host {
	int (*write)(void *h, const char *p, size_t n);
	void (*close)(void *h, bool flush);
	void (*read)(void *h, bool on);
	void (*timeout)(void *h, uint64_t ms);
	size_t (*write_queued)(void *h);
	int (*starttls)(void *h, SSL_CTX *ctx);
	const char *(*tls_info)(void *h);
	struct settings *(*settings)(void *h);
	bool (*storage_ok)(void *h, uint64_t size);
	void (*new_id)(void *h, char id[QUEUE_ID_LEN + 1]);
	int (*spill)(void *h, void **sp, const char *p, size_t n, session_step_cb cb, void *arg);
	void (*spill_free)(void *h, void *sp);
	int (*commit)(void *h, const struct queue_envelope *env, const struct session_message *m,
	              session_step_cb cb, void *arg);
	int (*auth)(void *h, struct auth_db *db, const char *user, const char *pass,
	            session_auth_cb cb, void *arg);
	void (*rejected)(void *h, json_t *fields);
	void (*received)(void *h, const struct queue_envelope *env, json_t *fields);
	void (*gone)(void *h);
};

struct session *session_new(const struct session_host *host, void *hctx, const char *id,
                            const char *ip, bool allowed);
void session_start(struct session *s);
void session_input(struct session *s, const char *p, size_t n);
void session_tls_done(struct session *s, int status);
void session_timeout(struct session *s);
void session_eof(struct session *s);
void session_drained(struct session *s);
void session_drain(struct session *s);
void session_closed(struct session *s);
bool session_busy(const struct session *s);
const char *session_id(const struct session *s);

#endif
