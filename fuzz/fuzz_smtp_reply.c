/*
 * fuzz_smtp_reply - the outbound client's reply parser
 * (smtp_reply_parser_line() in proto/smtp_reply.c; linked without any
 * I/O code: hk_proto only).
 *
 * The input is what a server sends. It is cut into lines the way
 * client_on_read() does (at LF, one CR before it dropped; a line longer
 * than the client's buffer is refused there, so it is skipped here) and
 * every line goes to the parser; a complete or refused reply starts a
 * new one. Checked, for each complete reply:
 *
 *  - the code is the first line's three digits, 2xx to 5xx, second digit
 *    0-5; every line of the reply had that code;
 *  - status is "" or an RFC 3463 code "C.SSS.DDD" whose class is the
 *    code's, NUL-terminated in its array;
 *  - text is NUL-terminated in its array, printable ASCII only (the
 *    server's bytes go into logs and DSNs), without blanks at its ends;
 *  - the last line is the one with a space (or nothing) after the code,
 *    and no reply has more lines than the parser's limit.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz/fuzz_check.h"

#define LINE_MAX_CLIENT SMTP_REPLY_LINE_MAX
#define LINES_MAX_CLIENT SMTP_REPLY_LINES_MAX

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void check_status(const char *s, int code)
{
	size_t n = strnlen(s, 16);

	CHECK(n < 16);
	if (n == 0)
		return;
	CHECK(s[0] == '0' + code / 100 && s[1] == '.');
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (i < n && is_digit(s[i])) {
			i++;
			d++;
		}
		CHECK(d >= 1 && d <= 3);
		if (part == 0) {
			CHECK(i < n && s[i] == '.');
			i++;
		}
	}
	CHECK(i == n);
}

static void check_reply(const struct smtp_reply *r, int first_code)
{
	CHECK(r->code == first_code);
	CHECK(r->code >= 200 && r->code <= 559 && (r->code / 10) % 10 <= 5);
	check_status(r->status, r->code);
	size_t n = strnlen(r->text, sizeof(r->text));
	CHECK(n < sizeof(r->text));
	for (size_t i = 0; i < n; i++)
		CHECK(r->text[i] >= 0x20 && r->text[i] < 0x7f);
	if (n) {
		CHECK(r->text[0] != ' ');
		/* Once failed when the text was full: the blank joining the
		 * next line took its last byte (regressions/smtp_reply/). */
		CHECK(r->text[n - 1] != ' ');
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser p;
	size_t off = 0;
	int first_code = -1;
	int lines = 0;

	smtp_reply_parser_init(&p);
	while (off < size) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		if (!nl)
			break;                 /* the client waits for the rest */
		size_t len = (size_t)(nl - (data + off));
		size_t take = len + 1;
		if (len > 0 && data[off + len - 1] == '\r')
			len--;
		if (take > LINE_MAX_CLIENT + 2) {
			off += take;
			continue;
		}
		/* The line in its own allocation, exactly as long. */
		char *line = malloc(len ? len : 1);
		CHECK(line);
		memcpy(line, data + off, len);
		off += take;

		int rc = smtp_reply_parser_line(&p, line, len);
		CHECK(rc >= -1 && rc <= 1);
		if (rc >= 0) {
			CHECK(len >= 3 && is_digit(line[0]) && is_digit(line[1]) && is_digit(line[2]));
			int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
			if (first_code < 0)
				first_code = code;
			CHECK(code == first_code);
			CHECK(rc == (len == 3 || line[3] == ' '));
			CHECK(len == 3 || line[3] == ' ' || line[3] == '-');
			lines++;
			CHECK(lines <= LINES_MAX_CLIENT);
			CHECK(p.nlines == lines);
		}
		free(line);
		if (rc == 1) {
			check_reply(&p.r, first_code);
			smtp_reply_parser_init(&p);
			first_code = -1;
			lines = 0;
		} else if (rc < 0) {
			smtp_reply_parser_init(&p);
			first_code = -1;
			lines = 0;
		} else {
			/* A reply in progress is consistent too. */
			check_reply(&p.r, first_code);
		}
	}
	return 0;
}
