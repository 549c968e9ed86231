/*
 * test_tls_client - the outbound TLS contexts (util/tls.c): what a hostile
 * MX can make the client do.
 */
#include <check.h>
#include <stdlib.h>

#include "util/tls.h"

/* Issue 20: a server must not be able to force renegotiations, on either
 * context (opportunistic and verifying), as the server's context refuses
 * them already. */
START_TEST(client_refuses_renegotiation)
{
	char err[300];
	for (int verify = 0; verify < 2; verify++) {
		SSL_CTX *ctx = tls_client_ctx_new(verify, NULL, err, sizeof(err));
		ck_assert_ptr_nonnull(ctx);
		ck_assert(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
		SSL_CTX_free(ctx);
	}
}
END_TEST

START_TEST(client_needs_tls12)
{
	char err[300];
	SSL_CTX *ctx = tls_client_ctx_new(false, NULL, err, sizeof(err));
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	SSL_CTX_free(ctx);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tls_client");
	TCase *tc = tcase_create("ctx");
	tcase_add_test(tc, client_refuses_renegotiation);
	tcase_add_test(tc, client_needs_tls12);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
