/*
 * NAME
 *	queue_tag - the unguessable reference QUEUEID-TAG of a queued mail
 * SUMMARY
 *	The VERP envelope sender (local+QUEUEID-TAG@domain) and the ENVID
 *	name a mail by its queue id and a tag (SPEC §3 verp, §5, §6.1). The
 *	queue id alone is the arrival time in hex and appears in Received:
 *	headers; the tag makes the reference impossible to guess, so that a
 *	forged report cannot name a mail. TAG is QUEUE_TAG_HEX lower-case
 *	hex digits of HMAC-SHA256(key, QUEUEID) with a random key kept in
 *	the spool (DIR/tag.key): no per-mail storage, the same reference for
 *	every attempt and transaction of a mail, across restarts.
 * DESCRIPTION
 *	queue_tag_key_load() reads DIR/tag.key, or makes one (32 random
 *	bytes, written durably) when there is none.
 *
 *	queue_tag_ref() writes "QUEUEID-TAG" for a queue id.
 *
 *	queue_tag_ref_parse() reads a reference from outside (a VERP tag, an
 *	Original-Envelope-Id): a valid queue id (either case), '-', then 16
 *	to 64 hex digits (either case), nothing else. It writes the
 *	canonical form (id upper case, tag lower case) and the queue id.
 *	Whether the tag is right is decided by the record of what was sent
 *	(relay/suppression.h keeps the reference), so that a relay sharing
 *	the database with others matches their mail too. A bare queue id is
 *	no reference: it names nothing.
 * DIAGNOSTICS
 *	queue_tag_key_load() returns 0 or a negative errno.
 * TOUCHES
 *	queue_tag_key_load(): DIR/tag.key (call it at start, before the loop
 *	serves). The others touch nothing.
 */
#ifndef HK_RELAY_QUEUE_TAG_H
#define HK_RELAY_QUEUE_TAG_H

#include <stdbool.h>
#include <stddef.h>

#include "relay/queue.h"

#define QUEUE_TAG_KEY_LEN 32
#define QUEUE_TAG_HEX 16
#define QUEUE_TAG_HEX_MAX 64
#define QUEUE_REF_MAX (QUEUE_ID_LEN + 1 + QUEUE_TAG_HEX_MAX)

int queue_tag_key_load(const char *dir, unsigned char key[QUEUE_TAG_KEY_LEN]);
void queue_tag_ref(const unsigned char key[QUEUE_TAG_KEY_LEN], const char *id,
                   char out[QUEUE_REF_MAX + 1]);
bool queue_tag_ref_parse(const char *s, size_t n, char out[QUEUE_REF_MAX + 1],
                         char id[QUEUE_ID_LEN + 1]);

#endif
