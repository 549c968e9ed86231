/*
 * test_outcome - reply classification, the synthetic statuses and the
 * suppression rule (relay/outcome.c), and the address classes of the
 * direct route (relay/addr_class.c).
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "relay/addr_class.h"
#include "relay/outcome.h"

static struct smtp_reply R(int code, const char *status, const char *text)
{
	struct smtp_reply r = { 0 };
	r.code = code;
	snprintf(r.status, sizeof(r.status), "%s", status);
	snprintf(r.text, sizeof(r.text), "%s", text);
	return r;
}

START_TEST(classify_by_code)
{
	struct smtp_reply r;
	r = R(250, "2.0.0", "Ok");
	ck_assert_int_eq(outcome_classify(false, &r), OUTCOME_DELIVERED);
	r = R(0, "", "connection refused");
	ck_assert_int_eq(outcome_classify(false, &r), OUTCOME_DEFERRED);
	r = R(451, "4.3.0", "later");
	ck_assert_int_eq(outcome_classify(false, &r), OUTCOME_DEFERRED);
	r = R(550, "5.1.1", "unknown");
	ck_assert_int_eq(outcome_classify(false, &r), OUTCOME_BOUNCED);
	ck_assert_int_eq(outcome_classify(true, &r), OUTCOME_BOUNCED);
	r = R(354, "", "odd");
	ck_assert_int_eq(outcome_classify(false, &r), OUTCOME_BOUNCED);
}
END_TEST

START_TEST(service_auth_failure_never_bounces)
{
	int codes[] = { 530, 535 };
	for (int i = 0; i < 2; i++) {
		struct smtp_reply r = R(codes[i], "5.7.8", "authentication failed");
		ck_assert_int_eq(outcome_classify(true, &r), OUTCOME_DEFERRED);
		ck_assert_int_eq(outcome_classify(false, &r), OUTCOME_BOUNCED);
		ck_assert(outcome_throttle_or_auth(codes[i]));
	}
	ck_assert(outcome_throttle_or_auth(421));
	ck_assert(outcome_throttle_or_auth(454));
	ck_assert(!outcome_throttle_or_auth(450));
	ck_assert(!outcome_throttle_or_auth(554));
	struct smtp_reply u = R(554, "5.7.1", "Email address is not verified.");
	ck_assert(outcome_unverified_identity(&u));
	u = R(554, "5.7.1", "Message rejected");
	ck_assert(!outcome_unverified_identity(&u));
}
END_TEST

START_TEST(one_suppression_rule)
{
	ck_assert(outcome_suppresses("5.1.1"));
	ck_assert(outcome_suppresses("5.1.10"));
	ck_assert(outcome_suppresses("5.2.1"));
	ck_assert(!outcome_suppresses("5.2.2"));
	ck_assert(!outcome_suppresses("4.1.1"));
	ck_assert(!outcome_suppresses("5.7.1"));
	ck_assert(!outcome_suppresses("5.1"));
	ck_assert(!outcome_suppresses(""));
	ck_assert(!outcome_suppresses(NULL));
}
END_TEST

START_TEST(synthetic_table_is_complete)
{
	for (int w = 0; w < OUT_COUNT; w++) {
		const struct outcome_synthetic *s = outcome_synthetic((enum outcome_why)w);
		ck_assert_ptr_nonnull(s);
		ck_assert_ptr_nonnull(s->fmt);
		ck_assert(strlen(s->status) >= 5);
		/* the class digit of the status agrees with the verdict, but for
		 * expiry: final, with the transient status it expired on (4.4.7) */
		if (w != OUT_EXPIRED)
			ck_assert_int_eq(s->status[0] == '5', s->verdict == OUTCOME_BOUNCED);
	}
	ck_assert_ptr_null(outcome_synthetic(OUT_COUNT));
	struct smtp_reply r;
	outcome_set(&r, OUT_LOOP, "loop.test", "127.0.0.1", 2525u);
	ck_assert_int_eq(r.code, 0);
	ck_assert_str_eq(r.status, "5.4.6");
	ck_assert_str_eq(r.text, "mail for loop.test loops back to myself (127.0.0.1 is hikyaku's "
	                 "own address and port 2525)");
	outcome_set(&r, OUT_TOO_BIG, "mx[192.0.2.1]:25", 1000ull);
	ck_assert_str_eq(r.status, "5.3.4");
	ck_assert_str_eq(r.text, "the message is larger than mx[192.0.2.1]:25 accepts (1000 bytes)");
	outcome_set(&r, OUT_ADDR_REFUSED, "x.test", "private", "127.0.0.1 (loopback) of mx.x.test", "");
	ck_assert_str_eq(r.status, "5.4.4");
	outcome_set(&r, OUT_DEST_PAUSED, "docomo", "421 4.7.0 Too many connections");
	ck_assert_str_eq(r.status, "4.7.0");
	ck_assert_str_eq(r.text, "delivery temporarily suspended: [destination docomo] is paused "
	                 "(one of its hosts answered 421 4.7.0 Too many connections)");
	ck_assert_int_eq(outcome_classify(false, &r), OUTCOME_DEFERRED);
	ck_assert(outcome_policy_pause(421));
	ck_assert(!outcome_policy_pause(451));
	ck_assert(!outcome_policy_pause(454));
	outcome_set(&r, OUT_EXPIRED);
	ck_assert_str_eq(r.status, "4.4.7");
	ck_assert_int_eq(outcome_classify(false, &r), OUTCOME_DEFERRED); /* code 0 */
}
END_TEST

START_TEST(reply_line_forms)
{
	char b[600];
	struct smtp_reply r = R(550, "5.1.1", "User unknown");
	ck_assert_str_eq(outcome_reply_line(&r, b, sizeof(b)), "550 5.1.1 User unknown");
	r = R(550, "", "User unknown");
	ck_assert_str_eq(outcome_reply_line(&r, b, sizeof(b)), "550 User unknown");
	r = R(0, "4.4.1", "timeout");
	ck_assert_str_eq(outcome_reply_line(&r, b, sizeof(b)), "timeout");
}
END_TEST

START_TEST(service_ids)
{
	struct smtp_reply r = R(250, "", "Ok 0101018c1d2e3f4a-aaaa-000000");
	char *id = outcome_service_id(&r);
	ck_assert_str_eq(id, "0101018c1d2e3f4a-aaaa-000000");
	free(id);
	r = R(250, "", "Ok short");
	ck_assert_ptr_null(outcome_service_id(&r));
	/* a reply that ends in a word gives no id: every mail would share it */
	r = R(250, "2.0.0", "xB2AbCdE012345 Message accepted for delivery");
	ck_assert_ptr_null(outcome_service_id(&r));
	r = R(250, "2.6.0", "<x@y> [InternalId=123] Queued mail for delivery");
	ck_assert_ptr_null(outcome_service_id(&r));
	r = R(250, "", "Ok abcdefghijklmnopqrst");   /* long, but no digits */
	ck_assert_ptr_null(outcome_service_id(&r));
	id = outcome_message_id_local("<0101018c1d2e3f4a@email.amazonses.com>");
	ck_assert_str_eq(id, "0101018c1d2e3f4a");
	free(id);
	ck_assert_ptr_null(outcome_message_id_local("<a@b>"));
	ck_assert_ptr_null(outcome_message_id_local(NULL));
}
END_TEST

static enum addr_class cls(const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return addr_classify((struct sockaddr *)&ss);
}

START_TEST(address_classes)
{
	ck_assert_int_eq(cls("192.0.2.1"), ADDR_PUBLIC);
	ck_assert_int_eq(cls("8.8.8.8"), ADDR_PUBLIC);
	ck_assert_int_eq(cls("10.1.2.3"), ADDR_PRIVATE);
	ck_assert_int_eq(cls("172.16.0.1"), ADDR_PRIVATE);
	ck_assert_int_eq(cls("172.31.255.1"), ADDR_PRIVATE);
	ck_assert_int_eq(cls("172.32.0.1"), ADDR_PUBLIC);
	ck_assert_int_eq(cls("192.168.1.1"), ADDR_PRIVATE);
	ck_assert_int_eq(cls("100.64.0.1"), ADDR_PRIVATE);
	ck_assert_int_eq(cls("127.0.0.1"), ADDR_LOOPBACK);
	ck_assert_int_eq(cls("127.9.9.9"), ADDR_LOOPBACK);
	ck_assert_int_eq(cls("0.0.0.0"), ADDR_UNSPECIFIED);
	ck_assert_int_eq(cls("0.1.2.3"), ADDR_UNSPECIFIED);
	ck_assert_int_eq(cls("169.254.1.1"), ADDR_LINK_LOCAL);
	ck_assert_int_eq(cls("224.0.0.1"), ADDR_MULTICAST);
	ck_assert_int_eq(cls("239.255.255.255"), ADDR_MULTICAST);
	ck_assert_int_eq(cls("240.0.0.1"), ADDR_RESERVED);
	ck_assert_int_eq(cls("255.255.255.255"), ADDR_RESERVED);
	ck_assert_int_eq(cls("2001:db8::1"), ADDR_PUBLIC);
	ck_assert_int_eq(cls("::1"), ADDR_LOOPBACK);
	ck_assert_int_eq(cls("::"), ADDR_UNSPECIFIED);
	ck_assert_int_eq(cls("fe80::1"), ADDR_LINK_LOCAL);
	ck_assert_int_eq(cls("ff02::1"), ADDR_MULTICAST);
	ck_assert_int_eq(cls("fd00::1"), ADDR_PRIVATE);
	ck_assert_int_eq(cls("fc00::1"), ADDR_PRIVATE);
	ck_assert_int_eq(cls("::ffff:127.0.0.1"), ADDR_LOOPBACK);
	ck_assert_int_eq(cls("::ffff:10.0.0.1"), ADDR_PRIVATE);
	/* forms that carry an IPv4 address are what that address is */
	ck_assert_int_eq(cls("64:ff9b::a00:1"), ADDR_PRIVATE);        /* NAT64 of 10.0.0.1 */
	ck_assert_int_eq(cls("64:ff9b::7f00:1"), ADDR_LOOPBACK);
	ck_assert_int_eq(cls("64:ff9b::808:808"), ADDR_PUBLIC);
	ck_assert_int_eq(cls("2002:7f00:1::1"), ADDR_LOOPBACK);        /* 6to4 of 127.0.0.1 */
	ck_assert_int_eq(cls("2002:c0a8:101::1"), ADDR_PRIVATE);
	ck_assert_int_eq(cls("::127.0.0.1"), ADDR_LOOPBACK);          /* IPv4-compatible */
	ck_assert_int_eq(cls("::0.0.0.2"), ADDR_UNSPECIFIED);
	ck_assert_int_eq(cls("fec0::1"), ADDR_PRIVATE);
}
END_TEST

START_TEST(policies)
{
	for (int c = ADDR_PUBLIC; c <= ADDR_RESERVED; c++) {
		ck_assert(addr_allowed(DIRECT_DEST_ANY, (enum addr_class)c));
		ck_assert_int_eq(addr_allowed(DIRECT_DEST_PUBLIC, (enum addr_class)c), c == ADDR_PUBLIC);
		ck_assert_int_eq(addr_allowed(DIRECT_DEST_PRIVATE, (enum addr_class)c),
		                 c == ADDR_PUBLIC || c == ADDR_PRIVATE);
	}
}
END_TEST

static struct sockaddr_storage sa(const char *ip, unsigned port)
{
	struct sockaddr_storage ss = { 0 };
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
	return ss;
}

START_TEST(self_detection)
{
	struct config_listen one[] = { { "127.0.0.1", 2525 } };
	struct config_listen wild[] = { { "0.0.0.0", 25 } };
	struct config_listen wild6[] = { { "::", 25 } };
	struct sockaddr_storage locals[] = { sa("192.0.2.7", 0), sa("2001:db8::7", 0) };
	struct sockaddr_storage t;
	t = sa("127.0.0.1", 2525);
	ck_assert(addr_is_self((struct sockaddr *)&t, one, 1, locals, 2));
	t = sa("127.0.0.1", 25);
	ck_assert(!addr_is_self((struct sockaddr *)&t, one, 1, locals, 2));
	t = sa("127.0.0.2", 2525);
	ck_assert(!addr_is_self((struct sockaddr *)&t, one, 1, locals, 2));
	t = sa("::ffff:127.0.0.1", 2525);
	ck_assert(addr_is_self((struct sockaddr *)&t, one, 1, locals, 2));
	t = sa("0.0.0.0", 2525);
	ck_assert(addr_is_self((struct sockaddr *)&t, one, 1, locals, 2));
	/* a wildcard listener: every local address, and loopback */
	t = sa("192.0.2.7", 25);
	ck_assert(addr_is_self((struct sockaddr *)&t, wild, 1, locals, 2));
	t = sa("127.0.0.5", 25);
	ck_assert(addr_is_self((struct sockaddr *)&t, wild, 1, locals, 2));
	t = sa("192.0.2.8", 25);
	ck_assert(!addr_is_self((struct sockaddr *)&t, wild, 1, locals, 2));
	t = sa("2001:db8::7", 25);
	ck_assert(addr_is_self((struct sockaddr *)&t, wild6, 1, locals, 2));
	t = sa("2001:db8::7", 26);
	ck_assert(!addr_is_self((struct sockaddr *)&t, wild6, 1, locals, 2));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("outcome");
	TCase *tc = tcase_create("outcome");
	tcase_add_test(tc, classify_by_code);
	tcase_add_test(tc, service_auth_failure_never_bounces);
	tcase_add_test(tc, one_suppression_rule);
	tcase_add_test(tc, synthetic_table_is_complete);
	tcase_add_test(tc, reply_line_forms);
	tcase_add_test(tc, service_ids);
	suite_add_tcase(s, tc);
	TCase *ta = tcase_create("addr_class");
	tcase_add_test(ta, address_classes);
	tcase_add_test(ta, policies);
	tcase_add_test(ta, self_detection);
	suite_add_tcase(s, ta);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
