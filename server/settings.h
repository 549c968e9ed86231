/*
 * NAME
 *	settings - what a session needs from the configuration, by reference
 * SUMMARY
 *	One reference-counted bundle per configuration: the configuration,
 *	the TLS context, the AUTH database and the DKIM keys built from it. The server
 *	holds the current one; a session holds the one its transaction
 *	started with and takes the server's current one at the next
 *	EHLO/HELO or MAIL (SPEC §4: after a reload the next mail follows the
 *	new rule; a transaction in progress keeps its rules).
 * DESCRIPTION
 *	settings_new() builds a bundle from a loaded configuration (ownership
 *	of cfg moves to the bundle on success; on failure it stays with the
 *	caller and err says why). settings_ref() / settings_unref() count
 *	the users; the last unref frees everything.
 * TOUCHES
 *	The TLS key and certificate files and the auth file (read once); the
 *	DKIM keys come parsed with the configuration.
 */
#ifndef HK_SERVER_SETTINGS_H
#define HK_SERVER_SETTINGS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "config/config.h"

/* Message bytes a session keeps in memory before it spills to the spool. */
#define SETTINGS_DATA_MEM_MAX ((size_t)256 << 10)

struct auth_db;
struct dkim_keys;

struct settings {
	int refs;
	struct config *cfg;
	SSL_CTX *tls;              /* NULL: no STARTTLS */
	struct auth_db *auth;      /* NULL: no AUTH */
	struct dkim_keys *dkim;    /* [dkim] keys, ready to sign (relay/dkim.h) */
	size_t data_mem_max;       /* SETTINGS_DATA_MEM_MAX (tests: smaller) */
};

struct settings *settings_new(struct config *cfg, char *err, size_t errlen);
void settings_ref(struct settings *set);
void settings_unref(struct settings *set);

#endif
