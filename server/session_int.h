/*
 * NAME
 *	session_int - the inside of a session, shared by its three files
 * SUMMARY
 *	server/session.c (input, replies, the command table),
 *	server/session_auth.c (AUTH) and server/session_commit.c (the end of
 *	DATA: checks, headers, envelope, queue commit) work on this one
 *	struct. Nothing outside these files includes this header.
 * TOUCHES
 *	Nothing: declarations only.
 */
#ifndef HK_SERVER_SESSION_INT_H
#define HK_SERVER_SESSION_INT_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "proto/smtp_cmd.h"
#include "proto/smtp_data.h"
#include "relay/route.h"
#include "server/session.h"
#include "util/buf.h"

#define SESSION_CMD_LINE_MAX 4096            /* RFC 4954 §4 wants room for AUTH */
#define SESSION_INPUT_MAX ((size_t)1 << 20)  /* pipelined input waiting for a step */
#define SESSION_OUTPUT_MAX ((size_t)1 << 20)
#define SESSION_ERROR_LIMIT 20               /* bad commands before we hang up */
#define SESSION_FEED_MAX ((size_t)64 << 10)  /* DATA bytes handed to smtp_data at once */
#define SESSION_HOP_LIMIT 50                 /* SPEC §5: more Received: is a loop */
#define SESSION_AUTH_FIELD 256
#define SESSION_AUTH_FAIL_LIMIT 3            /* wrong credentials before we hang up */

enum sess_state {
	S_GREET,    /* no HELO/EHLO yet (again after STARTTLS) */
	S_READY,    /* HELO done, no transaction */
	S_MAIL,     /* MAIL accepted, collecting RCPT */
	S_DATA,     /* reading the message */
	S_TLS,      /* TLS handshake under way */
	S_AUTH,     /* waiting for an AUTH continuation line */
};

enum sess_wait { WAIT_NONE, WAIT_COMMIT, WAIT_AUTH, WAIT_SPILL };

enum auth_mech { MECH_PLAIN, MECH_LOGIN };

/* DKIM signing of one commit (session_commit.c). Only the queue's worker
 * writes here until the commit's callback reads it on the loop. */
struct session_sign {
	struct dkim_keys *keys;    /* a reference; NULL: no signing asked for */
	enum route_kind route;
	char *field;               /* the DKIM-Signature field added, or NULL */
	size_t len;
	char dkim[320];            /* "DOMAIN SELECTOR" of the signature */
	char why[256];             /* why the mail went unsigned, or "" */
};

struct session {
	const struct session_host *host;
	void *h;
	struct settings *set;
	char id[32];
	char ip[INET6_ADDRSTRLEN];
	bool allowed;             /* client in allow_networks */
	enum sess_state state;
	enum sess_wait wait;
	bool closing;             /* asked the host to close: no more output */
	bool gone;                /* the host's connection is gone */
	bool draining;            /* 421 after the current transaction */
	bool skip_line;           /* discarding an over-long command line */
	unsigned lines;           /* complete command lines in this read (timeouts) */
	bool write_blocked;       /* reading stopped until the replies drain */
	bool esmtp;
	bool tls;                 /* TLS is up */
	bool tls_fresh;           /* TLS just started: EHLO must come again */
	unsigned errors;
	unsigned auth_failures;   /* wrong credentials so far (SESSION_AUTH_FAIL_LIMIT) */
	char helo[SMTP_DOMAIN_MAX + 1];
	char tls_desc[128];       /* our copy: the engine may be freed first */
	char *auth_user;
	enum auth_mech auth_mech;
	char auth_login_user[SESSION_AUTH_FIELD];
	char auth_pending_user[SESSION_AUTH_FIELD];
	buf_t in;
	buf_t out;

	/* the transaction */
	struct smtp_mail_args mail;
	GPtrArray *rcpts;         /* char * */
	buf_t msg;                /* the part of the message in memory */
	buf_t hdr;
	struct smtp_data data;
	bool data_on;             /* data is initialised */
	void *spill;              /* the host's spill, or NULL */
	uint64_t spilled;         /* message bytes in the spill */
	size_t spilling;          /* bytes of msg being written to it now */
	char qid[QUEUE_ID_LEN + 1];
	uint64_t arrival_ms;
	struct queue_envelope env;   /* during the commit */
	const char *warning;         /* for the received event */
	struct session_sign sign;    /* DKIM, during the commit */
};

/* session.c */
const struct config *session_cfg(const struct session *s);
void session_reply(struct session *s, const char *line);
void session_replyf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void session_log_rejected(struct session *s, const char *to, const char *line);
bool session_count_error(struct session *s);
/* A wrong password: an error, and 421 and close at SESSION_AUTH_FAIL_LIMIT. */
bool session_count_auth_failure(struct session *s);
void session_txn_reset(struct session *s);
void session_maybe_drain(struct session *s);
void session_resume(struct session *s);
/* Ends a step that waited (commit, password check, spill): true when the
 * session was freed because the connection went away meanwhile. */
bool session_step_over(struct session *s);

/* session_auth.c */
void session_cmd_auth(struct session *s, const struct smtp_cmd *c);
void session_auth_continue(struct session *s, const char *line, size_t len);

/* session_commit.c */
void session_data_end(struct session *s);
void session_data_spill(struct session *s);
void session_commit_release(struct session *s);

#endif
