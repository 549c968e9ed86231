/*
 * NAME
 *	control - the control socket: hikyakuctl's queue and status commands
 * SUMMARY
 *	A Unix domain socket ([control] socket, mode 0660: the daemon's user
 *	and group) on which hikyakuctl asks the running daemon about its
 *	queue and acts on it (SPEC §8). One request per connection: a line
 *	of JSON, at most CONTROL_REQUEST_MAX bytes, answered by one line of
 *	JSON, then the daemon closes the connection.
 *
 *	  {"cmd":"status"}
 *	  {"cmd":"queue.list"}
 *	  {"cmd":"queue.show","id":"…"}
 *	  {"cmd":"queue.retry","id":"…"}   or  {"cmd":"queue.retry","all":true}
 *	  {"cmd":"queue.delete","id":"…"}
 *
 *	Answers carry "ok": true and the command's fields, or "ok": false,
 *	"error" (one sentence) and "code" ("not_found", "bad_request").
 * DESCRIPTION
 *	control_open() removes a stale socket left by a crash (one nobody
 *	answers on), binds and listens; it fails, with the reason in err,
 *	when another daemon answers on the path or it cannot bind.
 *	control_close() stops listening, drops clients and unlinks the path.
 * TOUCHES
 *	The socket path and its directory (created 0750 when missing); reads
 *	the server's and the runner's state; the runner's retry and delete.
 */
#ifndef HK_SERVER_CONTROL_H
#define HK_SERVER_CONTROL_H

#include <stddef.h>
#include <jansson.h>
#include <uv.h>

#define CONTROL_REQUEST_MAX 4096
#define CONTROL_TIMEOUT_MS 10000

struct server;
struct control;

int control_open(uv_loop_t *loop, const char *path, struct server *srv, struct control **out,
                 char *err, size_t errlen);
void control_close(struct control *c);
const char *control_path(const struct control *c);

#endif
