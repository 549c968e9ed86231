/*
 * NAME
 *	ctl_control - hikyakuctl's side of the control socket
 * SUMMARY
 *	Sends one request to the running daemon and reads its answer
 *	(the protocol is in server/control.h).
 * DESCRIPTION
 *	ctl_request() connects to the socket, writes the request as one
 *	line of JSON and returns the answer in *ans. Every step is bounded:
 *	CTL_REPLY_TIMEOUT_MS for the whole exchange, CTL_REPLY_MAX bytes
 *	for the answer.
 * DIAGNOSTICS
 *	0 on success; CTL_DOWN when no daemon listens on the socket (the
 *	path does not exist, or nobody answers: a stale socket); CTL_ERROR
 *	for anything else (permission denied, timeout, a malformed answer).
 *	On failure err holds one sentence.
 * TOUCHES
 *	The control socket.
 */
#ifndef HK_CTL_CONTROL_H
#define HK_CTL_CONTROL_H

#include <stddef.h>
#include <jansson.h>

#define CTL_REPLY_TIMEOUT_MS 60000
#define CTL_REPLY_MAX ((size_t)512 << 20)

enum { CTL_OK = 0, CTL_DOWN = -1, CTL_ERROR = -2 };

int ctl_request(const char *socket_path, const json_t *req, json_t **ans, char *err,
                size_t errlen);

#endif
