/*
 * NAME
 *	auth - SMTP AUTH credentials from auth_file (crypt(3) hashes)
 * SUMMARY
 *	auth_file holds lines "user:HASH" ($y$ yescrypt, $6$ SHA-512 crypt,
 *	$2b$ bcrypt; anything libxcrypt knows). Blank lines and lines
 *	starting with '#' are ignored.
 * DESCRIPTION
 *	auth_db_load() reads the file; every malformed line is reported as
 *	"FILE:LINE: message" through the diag callback and the load fails.
 *	auth_verify() checks a user name and password on the libuv thread
 *	pool (a password hash costs milliseconds of CPU on purpose, which must
 *	not stall every other session) and calls back on the loop thread
 *	with true or false. An unknown user costs the same as a known one.
 *	The request keeps its own reference to the database, so a reload may
 *	free the caller's reference at any time.
 * TOUCHES
 *	The auth file; the libuv thread pool.
 */
#ifndef HK_SERVER_AUTH_H
#define HK_SERVER_AUTH_H

#include <stdbool.h>

#include <uv.h>

struct auth_db;

typedef void (*auth_diag_fn)(void *arg, const char *msg);
typedef void (*auth_result_cb)(void *arg, bool ok);

struct auth_db *auth_db_load(const char *path, auth_diag_fn diag, void *arg);
void auth_db_ref(struct auth_db *db);
void auth_db_unref(struct auth_db *db);
int auth_verify(uv_loop_t *loop, struct auth_db *db, const char *user, const char *pass,
                auth_result_cb cb, void *arg);

#endif
