/*
 * test_sendmail_body - unit tests for sendmail/sm_body.c (see sm_body.h):
 * LF and CRLF to CRLF, dot-stuffing, the lone dot that ends the input
 * without -i and is kept with it, bare CR, the end of input. Every input
 * is also fed cut at every byte boundary and one byte at a time: the
 * output must not depend on how read(2) cut the pipe.
 */
#include "sendmail/sm_body.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* Converts msg cut at the given offsets; returns the output (malloc'd). */
static char *conv_cuts(const char *msg, size_t len, bool dot_ends, const size_t *cuts, size_t ncuts,
                       size_t *out_len, bool *ended)
{
	struct sm_body b;
	char *out = malloc(SM_BODY_OUT_MAX(len) + SM_BODY_FINISH_MAX + 8 * (ncuts + 1));
	size_t o = 0, pos = 0;

	sm_body_init(&b, dot_ends);
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		char *chunk = malloc(end - pos ? end - pos : 1); /* exact size: ASan sees overreads */
		memcpy(chunk, msg + pos, end - pos);
		size_t w = sm_body_feed(&b, chunk, end - pos, out + o);
		ck_assert_uint_le(w, SM_BODY_OUT_MAX(end - pos));
		o += w;
		free(chunk);
		pos = end;
	}
	size_t w = sm_body_finish(&b, out + o);
	ck_assert_uint_le(w, SM_BODY_FINISH_MAX);
	o += w;
	*out_len = o;
	*ended = b.ended;
	return out;
}

/* Checks msg -> want, whole, at every single cut, and byte by byte. */
static void check_conv(const char *msg, bool dot_ends, const char *want, bool want_ended)
{
	size_t len = strlen(msg), ol;
	bool ended;
	char *o = conv_cuts(msg, len, dot_ends, NULL, 0, &ol, &ended);

	ck_assert_msg(ol == strlen(want) && memcmp(o, want, ol) == 0, "\"%s\": got \"%.*s\", want \"%s\"",
	              msg, (int)ol, o, want);
	ck_assert_int_eq(ended, want_ended);
	free(o);
	for (size_t c = 0; c <= len; c++) {
		o = conv_cuts(msg, len, dot_ends, &c, 1, &ol, &ended);
		ck_assert_msg(ol == strlen(want) && memcmp(o, want, ol) == 0, "\"%s\" cut at %zu: got \"%.*s\"",
		              msg, c, (int)ol, o);
		ck_assert_int_eq(ended, want_ended);
		free(o);
	}
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));
	for (size_t c = 0; c < len; c++)
		cuts[c] = c + 1;
	o = conv_cuts(msg, len, dot_ends, cuts, len, &ol, &ended);
	ck_assert_msg(ol == strlen(want) && memcmp(o, want, ol) == 0, "\"%s\" byte by byte", msg);
	free(o);
	free(cuts);
}

START_TEST(lf_becomes_crlf)
{
	check_conv("a\nb\n", true, "a\r\nb\r\n", false);
	check_conv("a\r\nb\r\n", true, "a\r\nb\r\n", false);
	check_conv("a\r\nb\nc\r\n\n", true, "a\r\nb\r\nc\r\n\r\n", false);
	check_conv("\n\n", true, "\r\n\r\n", false);
}
END_TEST

START_TEST(last_line_gets_a_line_end)
{
	check_conv("no newline", true, "no newline\r\n", false);
	check_conv("a\r", true, "a\r\n", false);
	check_conv("", true, "", false);
}
END_TEST

START_TEST(dots_are_stuffed)
{
	check_conv(".hidden\n", true, "..hidden\r\n", false);
	check_conv("a\n..\n", true, "a\r\n...\r\n", false);
	check_conv("a.\n.b.\n", true, "a.\r\n..b.\r\n", false);
	check_conv(". \n", true, ".. \r\n", false);
}
END_TEST

START_TEST(lone_dot_ends_input_without_i)
{
	check_conv("a\n.\nnot sent\n", true, "a\r\n", true);
	check_conv("a\r\n.\r\nnot sent\r\n", true, "a\r\n", true);
	check_conv(".\n", true, "", true);
	check_conv("a\n.", true, "a\r\n", true);   /* a dot at the end is a line */
}
END_TEST

START_TEST(lone_dot_kept_with_i)
{
	check_conv("a\n.\nb\n", false, "a\r\n..\r\nb\r\n", false);
	check_conv("a\r\n.\r\nb\r\n", false, "a\r\n..\r\nb\r\n", false);
	check_conv("a\n.", false, "a\r\n..\r\n", false);
}
END_TEST

START_TEST(bare_cr_is_passed_on)
{
	/* SPEC §5: the daemon refuses a bare CR; sendmail does not hide it. */
	check_conv("a\rb\n", true, "a\rb\r\n", false);
	check_conv(".\rx\n", true, "..\rx\r\n", false);
	check_conv("a\r\r\n", true, "a\r\r\n", false);
	check_conv(".\r\r\n", false, "..\r\r\n", false);
}
END_TEST

START_TEST(eight_bit_is_noted)
{
	struct sm_body b;
	char out[64];

	sm_body_init(&b, true);
	sm_body_feed(&b, "plain\n", 6, out);
	ck_assert(!b.eight_bit);
	sm_body_feed(&b, "\xe6\x97\xa5\n", 4, out);
	ck_assert(b.eight_bit);
}
END_TEST

/* Random inputs from a small alphabet, against a line-by-line model. */
static size_t model(const char *in, size_t n, bool dot_ends, char *out)
{
	size_t o = 0, i = 0;

	while (i < n) {
		size_t s = i;
		while (i < n && in[i] != '\n')
			i++;
		size_t e = i; /* the line is in[s..e), LF at i if i < n */
		bool lf = i < n;
		if (lf)
			i++;
		/* Without LF, a CR at the very end is the line end: dropped below. */
		size_t l = e;
		if (l > s && in[l - 1] == '\r')
			l--;
		if (l - s == 1 && in[s] == '.') {
			if (dot_ends)
				return o;
		}
		if (l > s && in[s] == '.')
			out[o++] = '.';
		memcpy(out + o, in + s, l - s);
		o += l - s;
		memcpy(out + o, "\r\n", 2);
		o += 2;
	}
	return o;
}

START_TEST(random_against_model)
{
	const char alpha[] = ".\r\nab";
	char in[40], want[200];

	srand(1234);
	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)(rand() % 12);
		for (size_t k = 0; k < n; k++)
			in[k] = alpha[rand() % 5];
		/* The model knows no bare CR: keep CRs before LFs or at the end. */
		for (size_t k = 0; k + 1 < n; k++)
			if (in[k] == '\r' && in[k + 1] != '\n')
				in[k] = 'a';
		bool dot_ends = rand() % 2;
		size_t wl = model(in, n, dot_ends, want);
		size_t cut = n ? (size_t)rand() % (n + 1) : 0, ol;
		bool ended;
		char *o = conv_cuts(in, n, dot_ends, &cut, 1, &ol, &ended);
		ck_assert_msg(ol == wl && memcmp(o, want, wl) == 0, "round %d: \"%.*s\" -> \"%.*s\", model \"%.*s\"",
		              round, (int)n, in, (int)ol, o, (int)wl, want);
		free(o);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sendmail_body");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, lf_becomes_crlf);
	tcase_add_test(tc, last_line_gets_a_line_end);
	tcase_add_test(tc, dots_are_stuffed);
	tcase_add_test(tc, lone_dot_ends_input_without_i);
	tcase_add_test(tc, lone_dot_kept_with_i);
	tcase_add_test(tc, bare_cr_is_passed_on);
	tcase_add_test(tc, eight_bit_is_noted);
	tcase_add_test(tc, random_against_model);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
