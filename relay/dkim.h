/*
 * NAME
 *	dkim - DKIM signing of queued mail (RFC 6376, RFC 8463; SPEC §5)
 * SUMMARY
 *	libopendkim computes the signatures; this module chooses the key by
 *	the header From domain, feeds the message to the library and hands
 *	back the DKIM-Signature field to put in front of the message.
 * DESCRIPTION
 *	dkim_keys_load() prepares the [dkim] keys of a configuration (read
 *	and checked by config_load(), so it fails only for want of memory or
 *	of a working libopendkim); NULL with the reason in err. Call it on
 *	the loop thread, at start and on every reload. The set is reference
 *	counted: dkim_keys_ref() / dkim_keys_unref() (the last one frees).
 *	A set with no keys is valid and signs nothing.
 *
 *	dkim_sign_mail() signs one message (the bytes as queued, CRLF line ends,
 *	not dot-stuffed), given as parts that are read in order, for a mail
 *	on route (ROUTE_DIRECT or ROUTE_SERVICE):
 *	  * [dkim] sign must cover the route (direct: ROUTE_DIRECT only;
 *	    all: both; none: never);
 *	  * the message must have exactly one From: field whose mailboxes all
 *	    have the same key: the key of the address's domain, or else of
 *	    its nearest parent on a dot boundary (relaxed DMARC alignment);
 *	  * the signature: rsa-sha256 or ed25519-sha256 after the key type,
 *	    c=relaxed/relaxed, d= the key's domain, s= its selector, h= the
 *	    fields of DKIM_SIGNED_FIELDS present in the message, and From
 *	    once more (oversigned: no From can be added without breaking it).
 *	It returns 1 with *field (malloc; "DKIM-Signature: ...\r\n", folded,
 *	CRLF line ends), *field_len and the key in *used; 0 when the mail is
 *	not signed, with why: "" when the configuration does not ask for it
 *	(no keys, the route is not covered), else the reason (no key for the
 *	From domain, several keys needed, no From field, the library failed).
 *	Pure CPU work on its arguments: safe on a thread-pool worker, never
 *	touches the loop; several threads may sign with one set at once.
 *
 *	dkim_key_domain() / dkim_key_selector() name a key ("DOMAIN SELECTOR"
 *	in the received event, SPEC §7).
 *
 *	dkim_public_record() gives the tags of the DNS key record of a PEM
 *	private key: *k "rsa" or "ed25519" (static), *p (malloc) the base64
 *	public key: for RSA the SubjectPublicKeyInfo (RFC 6376 §3.6.1), for
 *	Ed25519 the raw 32 bytes (RFC 8463 §4). 0, or -1 for a PEM text that
 *	holds no RSA or Ed25519 private key.
 * TOUCHES
 *	Memory only. OpenSSL through libopendkim, and directly for the
 *	public half of a key.
 */
#ifndef HK_RELAY_DKIM_H
#define HK_RELAY_DKIM_H

#include <stddef.h>
#include <sys/uio.h>

#include "config/config.h"
#include "relay/route.h"

/* SPEC §5: signed where present; From once more (oversigned). */
#define DKIM_SIGNED_FIELDS "From", "To", "Cc", "Subject", "Date", "Message-ID", \
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Reply-To", \
	"List-Unsubscribe", "List-Unsubscribe-Post"

struct dkim_keys;
struct dkim_key;

struct dkim_keys *dkim_keys_load(const struct config *cfg, char *err, size_t errlen);
struct dkim_keys *dkim_keys_ref(struct dkim_keys *k);
void dkim_keys_unref(struct dkim_keys *k);
size_t dkim_keys_count(const struct dkim_keys *k);

int dkim_sign_mail(const struct dkim_keys *keys, const struct iovec *parts, size_t nparts,
              enum route_kind route, char **field, size_t *field_len,
              const struct dkim_key **used, char *why, size_t whylen);

const char *dkim_key_domain(const struct dkim_key *key);
int dkim_public_record(const char *pem, size_t pem_len, const char **k, char **p);
const char *dkim_key_selector(const struct dkim_key *key);

#endif
