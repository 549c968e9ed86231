/*
 * fuzz_dsn_parse - relay/dsn_parse.c on arbitrary bytes as a message.
 *
 * The input is a whole mail as it arrives for bounce_address. Checked,
 * as dsn_parse.h promises:
 *
 *  - the result is 1 (a report) or 0; with 0 the report is all zero;
 *  - at most DSN_PARSE_RCPTS_MAX recipients, each with final_recipient,
 *    action and status set; action one of the five RFC 3464 words;
 *    status an RFC 3463 code and nothing else;
 *  - every string is valid UTF-8, NUL-terminated, at most
 *    DSN_PARSE_FIELD_MAX octets, without control characters and without
 *    blanks at its ends; addresses have no '<' or '>';
 *  - dsn_rcpt_suppresses() only for "failed" with 5.1.x or 5.2.1;
 *  - original_from goes through route_header_addrs() as the runner does;
 *  - dsn_report_free() leaves a zeroed report, and a second call is fine;
 *  - no two recipients have the same address (case-insensitively).
 *
 * Structure bombs: an input that starts with a NUL octet is also read as
 * NUL HEAD NUL UNIT (the last NUL), and the message HEAD UNIT UNIT ... of
 * AMPLIFY_BYTES is parsed too (opt-in by the first octet, so that most
 * inputs stay fast). With NUL "Content-Type: multipart/report;
 * boundary=b" CRLF CRLF NUL "--b" CRLF CRLF that is issue 20's report
 * bomb (600,000 empty parts); run with -rss_limit_mb=512 and a small
 * ASan quarantine (scripts/fuzz.sh does) the GMime tree it once built
 * (~1.3 kB a part) is reported as out of memory.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "relay/dsn_parse.h"
#include "relay/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	route_init();
	return 0;
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *u = p;
	for (size_t i = 0; i < n; i++)
		if (u[i])
			return false;
	return true;
}

static void check_str(const char *s, bool may_be_null)
{
	if (!s) {
		CHECK(may_be_null);
		return;
	}
	size_t n = strlen(s);
	CHECK(n > 0 && n <= DSN_PARSE_FIELD_MAX);
	CHECK(g_utf8_validate(s, (gssize)n, NULL));
	for (size_t i = 0; i < n; i++)
		CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
	for (const char *p = s; *p; p = g_utf8_next_char(p))
		CHECK(g_utf8_get_char(p) < 0x80 || g_utf8_get_char(p) > 0x9f);
	CHECK(s[0] != ' ' && s[n - 1] != ' ');
}

static void check_address(const char *s, bool may_be_null)
{
	check_str(s, may_be_null);
	if (s)
		CHECK(!strchr(s, '<') && !strchr(s, '>'));
}

static void check_status(const char *s)
{
	size_t i = 2;

	CHECK((s[0] == '2' || s[0] == '4' || s[0] == '5') && s[1] == '.');
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (s[i] >= '0' && s[i] <= '9') {
			i++;
			d++;
		}
		CHECK(d >= 1 && d <= 3);
		if (part == 0)
			CHECK(s[i++] == '.');
	}
	CHECK(s[i] == '\0');
}

#define AMPLIFY_BYTES (4 * 1024 * 1024)   /* past DSN_PARSE_BYTES_MAX */

static void check_one(const char *msg, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 256 * 1024)
		return 0;
	/* Own copy, exactly as long as the input: no NUL after it. */
	char *msg = malloc(size ? size : 1);
	CHECK(msg);
	memcpy(msg, data, size);
	check_one(msg, size);

	const char *nul = size > 1 && msg[0] == '\0' ? memrchr(msg + 1, '\0', size - 1) : NULL;
	if (nul) {
		size_t head = (size_t)(nul - msg) - 1, unit = size - (size_t)(nul - msg) - 1;
		size_t n = head;
		char *big = malloc(AMPLIFY_BYTES);
		CHECK(big);
		memcpy(big, msg + 1, head);
		while (unit && n + unit <= AMPLIFY_BYTES) {
			memcpy(big + n, nul + 1, unit);
			n += unit;
		}
		check_one(big, n);
		free(big);
	}
	free(msg);
	return 0;
}

static void check_one(const char *msg, size_t size)
{
	static const char *const actions[] = { "failed", "delayed", "delivered", "relayed",
	                                       "expanded" };
	struct dsn_report r;

	memset(&r, 0xa5, sizeof(r));
	int rc = dsn_parse(msg, size, &r);
	CHECK(rc == 0 || rc == 1);
	if (rc == 0) {
		CHECK(all_zero(&r, sizeof(r)));
		return;
	}

	check_str(r.original_envelope_id, true);
	check_str(r.reporting_mta, true);
	check_str(r.original_message_id, true);
	check_str(r.original_from, true);
	CHECK(r.nrcpts <= DSN_PARSE_RCPTS_MAX);
	CHECK(r.nrcpts == 0 || r.rcpts);
	for (size_t i = 0; i < r.nrcpts; i++) {
		const struct dsn_report_rcpt *x = &r.rcpts[i];
		check_address(x->final_recipient, false);
		check_address(x->original_recipient, true);
		check_str(x->action, false);
		check_str(x->status, false);
		check_str(x->diagnostic, true);
		check_str(x->remote_mta, true);
		bool known = false;
		for (size_t k = 0; k < sizeof(actions) / sizeof(actions[0]); k++)
			known |= strcmp(x->action, actions[k]) == 0;
		CHECK(known);
		check_status(x->status);
		for (size_t j = 0; j < i; j++) {
			char *a = g_utf8_casefold(x->final_recipient, -1);
			char *b = g_utf8_casefold(r.rcpts[j].final_recipient, -1);
			CHECK(strcmp(a, b) != 0);
			g_free(a);
			g_free(b);
		}
		bool sup = dsn_rcpt_suppresses(x);
		CHECK(sup == (strcmp(x->action, "failed") == 0 &&
		              (strncmp(x->status, "5.1.", 4) == 0 || strcmp(x->status, "5.2.1") == 0)));
	}
	if (r.original_from) {
		char **addrs = NULL;
		int n = route_header_addrs(r.original_from, strlen(r.original_from), &addrs);
		route_addrs_free(addrs, n);
	}

	dsn_report_free(&r);
	CHECK(all_zero(&r, sizeof(r)));
	dsn_report_free(&r);
}
