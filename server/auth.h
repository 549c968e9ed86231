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
 *	with true or false. An unknown user costs the same as a known one
 *	(it is checked against a hash of the file). At most AUTH_MAX_RUNNING
 *	checks run on the pool at once, the rest wait in order, so that
 *	password guessing cannot hold the threads the queue commits need.
 *	auth_running() and auth_waiting() count them (tests, status).
 *	The request keeps its own reference to the database, so a reload may
 *	free the caller's reference at any time.
 * TOUCHES
 *	The auth file; the libuv thread pool.
 */
#ifndef HK_SERVER_AUTH_H
#define HK_SERVER_AUTH_H

#include <stdbool.h>

#include <uv.h>

#include <stddef.h>

/* Password checks on the thread pool at once (the pool has 4 threads or
 * more, UV_THREADPOOL_SIZE; the queue's commits need the rest). */
#define AUTH_MAX_RUNNING 2

struct auth_db;

typedef void (*auth_diag_fn)(void *arg, const char *msg);
typedef void (*auth_result_cb)(void *arg, bool ok);

struct auth_db *auth_db_load(const char *path, auth_diag_fn diag, void *arg);
void auth_db_unref(struct auth_db *db);
int auth_verify(uv_loop_t *loop, struct auth_db *db, const char *user, const char *pass,
                auth_result_cb cb, void *arg);
unsigned auth_running(void);
size_t auth_waiting(void);

#endif
