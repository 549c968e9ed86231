/*
 * NAME
 *	test_smtp_stuff - unit tests of proto/smtp_stuff (outbound DATA)
 * SUMMARY
 *	Known answers for dot-stuffing and line ends (RFC 5321 §4.5.2: a
 *	leading '.' doubled; CRLF kept; a bare CR or LF sent as CRLF; the
 *	final dot, after a CRLF added when missing), and the same bytes
 *	whatever the input pieces and output room.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	Memory only.
 */
#include "proto/smtp_stuff.h"

#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The whole encoding of in[0..n), fed in pieces of piece octets into room octets. */
static char *encode(const char *in, size_t n, size_t piece, size_t room, size_t *outlen)
{
	struct smtp_stuff s;
	char *out = malloc(n * 3 + 8), *buf = malloc(room + SMTP_STUFF_FINISH);
	size_t o = 0, i = 0;

	ck_assert_ptr_nonnull(out);
	smtp_stuff_init(&s);
	while (i < n) {
		size_t end = i + piece < n ? i + piece : n;
		while (i < end) {
			size_t w;
			size_t used = smtp_stuff_encode(&s, in + i, end - i, buf, room, &w);
			ck_assert_uint_le(w, room);
			ck_assert(used > 0 || room < SMTP_STUFF_EXPAND);
			memcpy(out + o, buf, w);
			o += w;
			i += used;
		}
	}
	o += smtp_stuff_finish(&s, out + o);
	free(buf);
	*outlen = o;
	return out;
}

START_TEST(test_known)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "", ".\r\n" },
		{ "a\r\n", "a\r\n.\r\n" },
		{ "a", "a\r\n.\r\n" },
		{ ".a\r\n", "..a\r\n.\r\n" },
		{ "a\r\n.\r\n", "a\r\n..\r\n.\r\n" },
		{ "a\r\n..b\r\n", "a\r\n...b\r\n.\r\n" },
		{ "x.y\r\n", "x.y\r\n.\r\n" },
		{ "a\nb", "a\r\nb\r\n.\r\n" },              /* bare LF */
		{ "a\rb", "a\r\nb\r\n.\r\n" },              /* bare CR */
		{ "a\r.b\r\n", "a\r\n..b\r\n.\r\n" },       /* a bare CR ends the line: '.' stuffed */
		{ "a\n.\n", "a\r\n..\r\n.\r\n" },           /* the smuggling shape goes out harmless */
		{ "a\r", "a\r\n.\r\n" },
		{ "\r\n", "\r\n.\r\n" },
		{ "a\r\r\n", "a\r\n\r\n.\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;
		char *got = encode(cases[i].in, strlen(cases[i].in), 1000, 65536, &n);
		ck_assert_msg(n == strlen(cases[i].want) && memcmp(got, cases[i].want, n) == 0,
		              "case %zu: \"%.*s\"", i, (int)n, got);
		free(got);
	}
}
END_TEST

/* Any piece size and output room: the same bytes as in one go. */
START_TEST(test_pieces)
{
	char in[3000];
	unsigned seed = 12345;
	static const char alphabet[] = "..\r\n\r\nab.\n\r";

	for (size_t i = 0; i < sizeof(in); i++) {
		seed = seed * 1103515245u + 12345u;
		in[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
	}
	size_t wn;
	char *want = encode(in, sizeof(in), sizeof(in), 1 << 20, &wn);
	/* The output: CRLF only, no line starting with a lone '.' but the last. */
	for (size_t i = 0; i < wn; i++) {
		if (want[i] == '\n')
			ck_assert(i > 0 && want[i - 1] == '\r');
		if (want[i] == '\r')
			ck_assert(i + 1 < wn && want[i + 1] == '\n');
	}
	ck_assert(wn >= 5 && memcmp(want + wn - 5, "\r\n.\r\n", 5) == 0);
	ck_assert_ptr_null(memmem(want, wn - 3, "\r\n.\r\n", 5));
	static const size_t pieces[] = { 1, 2, 3, 7, 64, 1000 };
	static const size_t rooms[] = { 3, 4, 5, 16, 4096 };
	for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++)
		for (size_t r = 0; r < sizeof(rooms) / sizeof(rooms[0]); r++) {
			size_t n;
			char *got = encode(in, sizeof(in), pieces[p], rooms[r], &n);
			ck_assert_msg(n == wn && memcmp(got, want, n) == 0, "piece %zu room %zu",
			              pieces[p], rooms[r]);
			free(got);
		}
	free(want);
}
END_TEST

static bool plain(const char *in, size_t n)
{
	struct smtp_stuff s;
	smtp_stuff_init(&s);
	return smtp_stuff_plain(&s, in, n);
}

/* smtp_stuff_plain() is true exactly when the encoding is the input and
 * then the end that smtp_stuff_finish() adds; it leaves the state from
 * which smtp_stuff_finish() writes that end. */
START_TEST(test_plain)
{
	static const char alphabet[] = ".\r\nab";
	unsigned seed = 777;
	char in[16], want[16 + 5];
	int nplain = 0;

	ck_assert(plain("", 0));
	ck_assert(plain("a\r\nb.\r\n", 8));
	ck_assert(!plain(".a\r\n", 5));
	ck_assert(!plain("a\r\n.\r\n", 7));
	ck_assert(!plain("a\nb", 3));
	ck_assert(!plain("a\rb", 3));
	ck_assert(!plain("a\r", 2));
	ck_assert(!plain("\n", 1));
	for (int k = 0; k < 200000; k++) {
		seed = seed * 1103515245u + 12345u;
		size_t n = (seed >> 16) % sizeof(in);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		size_t got_n, w = n;
		char *got = encode(in, n, n ? n : 1, 64, &got_n);
		memcpy(want, in, n);
		if (n && !(n >= 2 && in[n - 2] == '\r' && in[n - 1] == '\n')) {
			memcpy(want + w, "\r\n", 2);
			w += 2;
		}
		memcpy(want + w, ".\r\n", 3);
		w += 3;
		bool same = got_n == w && memcmp(got, want, w) == 0;
		struct smtp_stuff st;
		smtp_stuff_init(&st);
		ck_assert_msg(smtp_stuff_plain(&st, in, n) == same, "input %d of %zu octets", k, n);
		if (same) {
			char end[SMTP_STUFF_FINISH];
			size_t e = smtp_stuff_finish(&st, end);
			ck_assert(e == w - n && memcmp(end, want + n, e) == 0);
		}
		nplain += same;
		free(got);
	}
	ck_assert_int_gt(nplain, 1000); /* both answers were tried */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("smtp_stuff");
	TCase *tc = tcase_create("stuff");

	tcase_add_test(tc, test_known);
	tcase_add_test(tc, test_pieces);
	tcase_add_test(tc, test_plain);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
