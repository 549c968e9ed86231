/*
 * test_server_client - how the listener counts a client's connections
 * (server/server.h server_client_key()): SPEC §3 max_connections_per_client
 * is per client address, and an IPv6 client by its /64 (one user of a /64
 * may take any of its 2^64 addresses).
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static void key_of(const char *ip, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		a6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &a6->sin6_addr), 1);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		a4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip, &a4->sin_addr), 1);
	}
	server_client_key((struct sockaddr *)&ss, out, cap);
}

START_TEST(client_key)
{
	char a[64], b[64];
	key_of("192.0.2.7", a, sizeof(a));
	ck_assert_str_eq(a, "192.0.2.7");
	key_of("192.0.2.8", b, sizeof(b));
	ck_assert_str_ne(a, b);
	/* One /64: every address of it counts as one client. */
	key_of("2001:db8:1:2::1", a, sizeof(a));
	ck_assert_str_eq(a, "2001:db8:1:2::/64");
	key_of("2001:db8:1:2:ffff:eeee:dddd:cccc", b, sizeof(b));
	ck_assert_str_eq(a, b);
	key_of("2001:db8:1:3::1", b, sizeof(b));
	ck_assert_str_ne(a, b);
	key_of("::1", a, sizeof(a));
	ck_assert_str_eq(a, "::/64");
	/* An IPv4 client on a dual-stack socket is counted by its address. */
	key_of("::ffff:192.0.2.7", a, sizeof(a));
	ck_assert_str_eq(a, "192.0.2.7");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("server_client");
	TCase *tc = tcase_create("key");
	tcase_add_test(tc, client_key);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
