/*
 * NAME
 *	test_esc - unit tests of util/esc (control characters on terminals)
 * SUMMARY
 *	Known answers for esc_text(), esc_tmp(), esc_json() and esc_needed():
 *	the escape sequences of issue 20 (OSC title, clear screen, OSC-8
 *	link), C1 controls in UTF-8 and as raw bytes, invalid UTF-8, NUL,
 *	bidi overrides; Japanese text and backslashes kept; JSON that stays
 *	valid and equal once escaped.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	Memory only.
 */
#include "util/esc.h"

#include <check.h>
#include <glib.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* No C0 (LF only when allowed), DEL, C1 byte or code point, invalid UTF-8. */
static void assert_clean(const char *s, bool nl_ok)
{
	ck_assert_msg(g_utf8_validate(s, -1, NULL), "not UTF-8: %s", s);
	for (const char *p = s; *p; p = g_utf8_next_char(p)) {
		gunichar c = g_utf8_get_char(p);
		ck_assert_msg(!(c < 0x20 && !(nl_ok && c == '\n')) && !(c >= 0x7f && c <= 0x9f),
		              "control U+%04X in %s", c, s);
	}
}

static void expect_text(const char *in, ssize_t n, unsigned flags, const char *want)
{
	char *got = esc_text(in, n, flags);
	ck_assert_str_eq(got, want);
	assert_clean(got, flags & ESC_KEEP_NL);
	if (flags == 0 && n < 0)
		ck_assert(esc_needed(in, n) == (strcmp(want, in) != 0));
	g_free(got);
}

START_TEST(test_text)
{
	/* Issue 20: title, clear screen, OSC-8 hyperlink. */
	expect_text("Shop \x1b]2;owned\x07 <a@b>", -1, 0, "Shop \\x1b]2;owned\\x07 <a@b>");
	expect_text("\x1b[2J\x1b[H", -1, 0, "\\x1b[2J\\x1b[H");
	expect_text("\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\", -1, 0,
	            "\\x1b]8;;http://evil.example/\\x1b\\click\\x1b]8;;\\x1b\\");
	/* C1 in UTF-8 (CSI U+009B, OSC U+009D, ST U+009C), NEL U+0085. */
	expect_text("a\xc2\x9b" "2Jb\xc2\x9d" "0;t\xc2\x9c\xc2\x85", -1, 0,
	            "a\\u009b2Jb\\u009d0;t\\u009c\\u0085");
	/* Raw C1 bytes and other invalid UTF-8. */
	expect_text("x\x9b" "2J\xff\xc3", -1, 0, "x\\x9b2J\\xff\\xc3");
	expect_text("t\tn\nr\rdel\x7f", -1, 0, "t\\tn\\nr\\rdel\\x7f");
	expect_text("one\ntwo\n", -1, ESC_KEEP_NL, "one\ntwo\n");
	expect_text("one\n\x1b", -1, ESC_KEEP_NL, "one\n\\x1b");
	/* Bidi override, line separator. */
	expect_text("abc\xe2\x80\xae" "fdp.exe\xe2\x80\xa8", -1, 0, "abc\\u202efdp.exe\\u2028");
	/* Kept as it is. */
	expect_text("山田 太郎 <taro@例え.jp> C:\\dir", -1, 0, "山田 太郎 <taro@例え.jp> C:\\dir");
	expect_text("", -1, 0, "");
	/* With a length: a NUL inside. */
	expect_text("a\0b", 3, 0, "a\\x00b");
	char *e = esc_text(NULL, -1, 0);
	ck_assert_str_eq(e, "");
	g_free(e);
}
END_TEST

START_TEST(test_tmp)
{
	const char *a = esc_tmp("\x1b[31mred");
	const char *b = esc_tmp("plain");
	ck_assert_str_eq(a, "\\x1b[31mred");
	ck_assert_str_eq(b, "plain");
	ck_assert_ptr_null(esc_tmp(NULL));
	/* A slot lives for ESC_TMP_SLOTS - 1 further calls. */
	const char *c = esc_tmp("keep\x07");
	for (int i = 0; i < ESC_TMP_SLOTS - 1; i++)
		esc_tmp("other");
	ck_assert_str_eq(c, "keep\\x07");
}
END_TEST

START_TEST(test_json)
{
	json_t *o = json_pack("{s:s,s:s,s:s}", "from", "Shop \x1b]2;x\x07 \xc2\x9b" "2J\x7f",
	                      "to", "山田@例え.jp", "nl", "a\nb\tc");
	char *dump = json_dumps(o, JSON_INDENT(2));
	char *e = esc_json(dump, -1);

	/* Still JSON, still the same values. */
	json_t *back = json_loads(e, 0, NULL);
	ck_assert_ptr_nonnull(back);
	ck_assert(json_equal(o, back));
	ck_assert_ptr_null(strchr(e, 0x7f));
	ck_assert_ptr_null(strstr(e, "\xc2\x9b"));
	ck_assert_ptr_nonnull(strstr(e, "\\u009b"));
	ck_assert_ptr_nonnull(strstr(e, "\\u007f"));
	ck_assert_ptr_nonnull(strstr(e, "山田@例え.jp"));
	ck_assert_ptr_nonnull(strchr(e, '\n'));     /* the indentation is kept */
	for (const char *p = e; *p; p++)
		ck_assert(*p == '\n' || (unsigned char)*p >= 0x20);
	json_decref(back);
	g_free(e);
	free(dump);
	json_decref(o);

	e = esc_json("{\"a\":\"x\xff\"}", -1);
	ck_assert_str_eq(e, "{\"a\":\"x\\ufffd\"}");
	g_free(e);
}
END_TEST

/* server/control.c cuts names at 40 octets: never inside a character. */
START_TEST(test_cut)
{
	const char *jp = "ああああああああああああああ";   /* 14 x 3 octets */
	ck_assert_uint_eq(esc_cut(jp, 40), 39);
	ck_assert_uint_eq(esc_cut(jp, 42), 42);
	ck_assert_uint_eq(esc_cut(jp, 100), 42);
	ck_assert_uint_eq(esc_cut("abc", 2), 2);
	ck_assert_uint_eq(esc_cut("abc", 3), 3);
	ck_assert_uint_eq(esc_cut("a\xf0\x9f\x98\x80", 4), 1);   /* U+1F600 */
	ck_assert_uint_eq(esc_cut("a\xf0\x9f\x98\x80", 5), 5);
	ck_assert_uint_eq(esc_cut("", 0), 0);
	char buf[64];
	snprintf(buf, sizeof(buf), "%.*s", (int)esc_cut(jp, 40), jp);
	ck_assert(g_utf8_validate(buf, -1, NULL));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("esc");
	TCase *tc = tcase_create("esc");

	tcase_add_test(tc, test_text);
	tcase_add_test(tc, test_tmp);
	tcase_add_test(tc, test_json);
	tcase_add_test(tc, test_cut);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
