/*
 * fuzz_sendmail - hikyaku-sendmail's handling of what a program pipes into
 * it: the header (sendmail/sm_header.c, addresses read by GMime) and the
 * DATA conversion (sendmail/sm_body.c).
 *
 * The first byte picks -i and -t; the rest is the input. Checked:
 *
 *  - the header found is a prefix of the input within the bound;
 *  - the header to send has CRLF line ends only, ends in CRLF, and no
 *    line of it starts a Bcc: or Resent-Bcc: field;
 *  - no recipient or From: address holds a CR or LF;
 *  - the DATA bytes have every LF after a CR and never a line that is a
 *    single dot (which would end DATA early: RFC 5321 §4.5.2), and are
 *    the same whether the input comes whole or cut in two.
 */
#include <gmime/gmime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sendmail/sm_body.h"
#include "sendmail/sm_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz/fuzz_check.h"

#define HDR_BOUND 4096

static void check_crlf(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\n')
			CHECK(i > 0 && p[i - 1] == '\r');
}

static char *convert(const char *in, size_t n, bool dot_ends, size_t cut, size_t *out_len)
{
	struct sm_body b;
	char *out = malloc(SM_BODY_OUT_MAX(n) + 2 * SM_BODY_FINISH_MAX + 8);
	size_t o = 0;

	sm_body_init(&b, dot_ends);
	o += sm_body_feed(&b, in, cut, out + o);
	o += sm_body_feed(&b, in + cut, n - cut, out + o);
	o += sm_body_finish(&b, out + o);
	*out_len = o;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		g_mime_init();
		init = true;
	}
	if (size < 1)
		return 0;
	bool dot_ends = data[0] & 1, extract = data[0] & 2;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;

	size_t hl = 0;
	enum sm_hdr_end e = sm_header_scan(in, n, true, HDR_BOUND, &hl);
	if (e == SM_HDR_TOO_BIG)
		return 0;
	CHECK(e != SM_HDR_MORE);
	CHECK(hl <= n && hl <= HDR_BOUND);

	struct sm_header_opts o = { .extract = extract, .full_name = "N\r\name", .from_addr = "u@h.test" };
	struct sm_header_result r;
	if (sm_header_process(in, hl, &o, &r) == 0) {
		check_crlf(r.out->str, r.out->len);
		CHECK(r.out->len >= 2 && memcmp(r.out->str + r.out->len - 2, "\r\n", 2) == 0);
		for (size_t i = 0; i < r.out->len; i++) {
			if (i > 0 && r.out->str[i - 1] != '\n')
				continue;
			CHECK(strncasecmp(r.out->str + i, "bcc:", 4) != 0);
			CHECK(strncasecmp(r.out->str + i, "resent-bcc:", 11) != 0);
		}
		for (guint i = 0; i < r.rcpts->len; i++)
			CHECK(strpbrk(g_ptr_array_index(r.rcpts, i), "\r\n") == NULL);
		if (r.from_addr)
			CHECK(strpbrk(r.from_addr, "\r\n") == NULL);
	}
	sm_header_result_free(&r);

	const char *body = in + hl;
	size_t bn = n - hl, l1, l2;
	char *a = convert(body, bn, dot_ends, 0, &l1);
	char *b = convert(body, bn, dot_ends, bn ? (size_t)data[0] % (bn + 1) : 0, &l2);
	CHECK(l1 == l2 && memcmp(a, b, l1) == 0);
	check_crlf(a, l1);
	CHECK(!(l1 >= 3 && memcmp(a, ".\r\n", 3) == 0));
	for (size_t i = 0; i + 5 <= l1; i++)
		CHECK(memcmp(a + i, "\r\n.\r\n", 5) != 0);
	free(a);
	free(b);
	return 0;
}
