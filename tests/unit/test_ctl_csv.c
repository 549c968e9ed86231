/*
 * NAME
 *	test_ctl_csv - unit tests of ctl/ctl_csv (the CSV formula guard)
 * SUMMARY
 *	SPEC §6.5: which fields get the "'" prefix on export, that import
 *	removes exactly it (export then import gives every value back, also
 *	values that start with "'" themselves), that quoting and physical
 *	line numbers are kept, and that on a terminal control characters are
 *	shown escaped. ctl/ is linked into hikyakuctl only, so the module is
 *	compiled into this test directly.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	Memory only (memory streams).
 */
#include "ctl/ctl_csv.c"

#include <check.h>
#include <stdio.h>

static char *rewrite(const char *in, enum ctl_csv_mode mode, bool escape, int *rc)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	ck_assert_ptr_nonnull(f);
	*rc = ctl_csv_rewrite(in, strlen(in), f, mode, escape);
	fclose(f);
	return out;
}

static void expect(const char *in, enum ctl_csv_mode mode, bool escape, const char *want)
{
	int rc;
	char *got = rewrite(in, mode, escape, &rc);

	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(got, want);
	free(got);
}

START_TEST(test_guarded)
{
	static const struct {
		const char *v;
		bool want;
	} cases[] = {
		{ "=1+1@example.com", true }, { "+1", true }, { "-2", true }, { "@SUM(1)", true },
		{ "\tx", true }, { "\rx", true }, { "'=x", true }, { "''+x", true },
		{ "a=b", false }, { "'x", false }, { "'", false }, { "", false },
		{ "5.1.1", false }, { "user@example.com", false }, { " =x", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(ctl_csv_guarded(cases[i].v, strlen(cases[i].v)) == cases[i].want, "%s",
		              cases[i].v);
}
END_TEST

START_TEST(test_export)
{
	expect("address,reason\n=1+1@x.test,\"=HYPERLINK(\"\"http://e/\"\",\"\"c\"\")\"\n",
	       CTL_CSV_GUARD, false,
	       "address,reason\n'=1+1@x.test,\"'=HYPERLINK(\"\"http://e/\"\",\"\"c\"\")\"\n");
	expect("a,\"\ttab\",\"'=q\",-1,@x,\"\rcr\",plain\n", CTL_CSV_GUARD, false,
	       "a,'\ttab,''=q,'-1,'@x,\"'\rcr\",plain\n");
	/* Quoting as relay/suppression.c quotes: only when needed. */
	expect("\"a\",\" b\",\"c,d\",\"e\nf\",,g\n", CTL_CSV_GUARD, false,
	       "a,\" b\",\"c,d\",\"e\nf\",,g\n");
	/* On a terminal: control characters escaped. */
	expect("x,\"\x1b]2;t\x07\"\n", CTL_CSV_GUARD, true, "x,\\x1b]2;t\\x07\n");
}
END_TEST

START_TEST(test_import)
{
	expect("address,reason\n'=1+1@x.test,'@SUM(1)\n''=q,'plain,'\n", CTL_CSV_UNGUARD, false,
	       "address,reason\n=1+1@x.test,@SUM(1)\n'=q,'plain,'\n");
	/* A byte order mark goes; blank lines stay, so line numbers hold. */
	expect("\xEF\xBB\xBF" "a\r\n\r\n\n'-1\r\n\"x\ny\",z\n\nlast", CTL_CSV_UNGUARD, false,
	       "a\n\n\n-1\n\"x\ny\",z\n\nlast\n");
	int rc;
	char *out = rewrite("a,\"b\nc", CTL_CSV_UNGUARD, false, &rc);
	ck_assert_int_eq(rc, -EINVAL);
	free(out);
	out = rewrite("a,b\"c\"\n", CTL_CSV_UNGUARD, false, &rc);
	ck_assert_int_eq(rc, -EINVAL);
	free(out);
}
END_TEST

/* Export then import: every value back, whatever it starts with. */
START_TEST(test_round_trip)
{
	static const char *const values[] = {
		"=1+1@example.com", "'=x", "''=x", "'''-x", "'x", "'", "x'", "@", "-", "+",
		"\t", "\r", "=HYPERLINK(\"http://evil/\",\"x\")", "a,b", " lead", "trail ",
		"line\nbreak", "", "山田",
	};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		GString *in = g_string_new("v\n\"");
		for (const char *p = values[i]; *p; p++) {
			if (*p == '"')
				g_string_append_c(in, '"');
			g_string_append_c(in, *p);
		}
		g_string_append(in, "\",end\n");
		int rc;
		char *exported = rewrite(in->str, CTL_CSV_GUARD, false, &rc);
		ck_assert_int_eq(rc, 0);
		char *back = rewrite(exported, CTL_CSV_UNGUARD, false, &rc);
		ck_assert_int_eq(rc, 0);
		/* back equals the canonical form of the input. */
		FILE *f;
		char *canon = NULL;
		size_t clen = 0;
		f = open_memstream(&canon, &clen);
		struct rw rw = { .out = f, .first_field = true, .out_line = 1, .record_line = 1 };
		put_value(&rw, "v", 1);
		putc('\n', f);
		put_value(&rw, values[i], strlen(values[i]));
		fputs(",end\n", f);
		fclose(f);
		ck_assert_msg(strcmp(back, canon) == 0, "%s: got %s want %s", values[i], back, canon);
		free(canon);
		free(back);
		free(exported);
		g_string_free(in, TRUE);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ctl_csv");
	TCase *tc = tcase_create("csv");

	tcase_add_test(tc, test_guarded);
	tcase_add_test(tc, test_export);
	tcase_add_test(tc, test_import);
	tcase_add_test(tc, test_round_trip);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
