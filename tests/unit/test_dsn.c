/*
 * NAME
 *	test_dsn - unit tests of relay/dsn (RFC 3464, RFC 6522, RFC 6533)
 * SUMMARY
 *	Builds notifications with dsn_build(), checks the bytes on the wire
 *	(CRLF only, no line over 998 octets), parses them back with GMime
 *	and compares the structure and the fields with what dsn.h promises.
 * DESCRIPTION
 *	Covered: a DSN for two recipients (header fields, multipart/report
 *	with report-type=delivery-status, three parts in order, each
 *	recipient's fields, the original headers); long diagnostics and
 *	header lines; UTF-8 addresses (message/global-delivery-status,
 *	"utf-8;" addresses); missing original headers; missing optional
 *	fields; delayed recipients and the delay warning (Will-Retry-Until,
 *	the diagnostic type); header injection through a server's
 *	reply; a boundary that occurs in the content; bad arguments and a
 *	buffer that is too small; the dates, byte for byte.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	Memory only.
 */
#include "relay/dsn.h"

#include <check.h>
#include <errno.h>
#include <gmime/gmime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST "relay.example.jp"
#define QID "0123456789ABCDEF01"
#define NOW 1700000001000ULL

static const char orig_headers[] =
	"Received: from shop.example.jp ([127.0.0.1])\r\n"
	"\tby relay.example.jp (hikyaku) with ESMTP id 0123456789ABCDEF01\r\n"
	"From: Shop <shop@interfactory1.co.jp>\r\n"
	"To: a@x.example, b@y.example\r\n"
	"Subject: =?UTF-8?B?5rOo5paH56K66KqN?= #1234\r\n"
	"Message-ID: <order-1234@shop.example.jp>\r\n"
	"\r\n"
	"This body must not appear in the DSN.\r\n";

static struct dsn_info info_for(const char *headers)
{
	return (struct dsn_info){
		.hostname = HOST,
		.queue_id = QID,
		.sender = "shop@interfactory1.co.jp",
		.arrival_ms = NOW - 3600000,
		.headers = headers,
		.headers_len = headers ? strlen(headers) : 0,
		.now_ms = NOW,
	};
}

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

/* CRLF only, and every line at most 998 octets (RFC 5322 §2.1.1). */
static void check_wire(const buf_t *b)
{
	size_t col = 0, line = 1;

	ck_assert_uint_gt(b->len, 0);
	ck_assert_msg(b->len >= 2 && memcmp(b->data + b->len - 2, "\r\n", 2) == 0,
	              "does not end in CRLF");
	for (size_t i = 0; i < b->len; i++) {
		char c = b->data[i];
		if (c == '\r') {
			ck_assert_msg(i + 1 < b->len && b->data[i + 1] == '\n', "bare CR on line %zu",
			              line);
			continue;
		}
		if (c == '\n') {
			ck_assert_msg(i > 0 && b->data[i - 1] == '\r', "bare LF on line %zu", line);
			col = 0;
			line++;
			continue;
		}
		ck_assert_msg(c != '\0', "NUL on line %zu", line);
		col++;
		ck_assert_msg(col <= 998, "line %zu is longer than 998 octets", line);
	}
}

static GMimeMessage *parse(const buf_t *b)
{
	GMimeStream *st = g_mime_stream_mem_new_with_buffer(b->data, b->len);
	GMimeParser *p = g_mime_parser_new_with_stream(st);
	GMimeMessage *m = g_mime_parser_construct_message(p, NULL);

	g_object_unref(p);
	g_object_unref(st);
	ck_assert_ptr_nonnull(m);
	return m;
}

static GMimeMultipart *report_of(GMimeMessage *m, const char *report_type)
{
	GMimeObject *top = g_mime_message_get_mime_part(m);
	GMimeContentType *ct = g_mime_object_get_content_type(top);

	ck_assert(g_mime_content_type_is_type(ct, "multipart", "report"));
	ck_assert_str_eq(g_mime_content_type_get_parameter(ct, "report-type"), report_type);
	ck_assert(GMIME_IS_MULTIPART(top));
	return GMIME_MULTIPART(top);
}

static void expect_type(GMimeObject *o, const char *type, const char *subtype)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);

	ck_assert_msg(g_mime_content_type_is_type(ct, type, subtype), "part is %s/%s, want %s/%s",
	              g_mime_content_type_get_media_type(ct),
	              g_mime_content_type_get_media_subtype(ct), type, subtype);
}

/* A part's content, transfer encoding undone, NUL-terminated (g_free). */
static char *content_of(GMimeObject *o)
{
	ck_assert(GMIME_IS_PART(o));
	GMimeDataWrapper *dw = g_mime_part_get_content(GMIME_PART(o));
	ck_assert_ptr_nonnull(dw);
	GByteArray *ba = g_byte_array_new();
	GMimeStream *st = g_mime_stream_mem_new_with_byte_array(ba);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(st), FALSE);
	g_mime_data_wrapper_write_to_stream(dw, st);
	g_object_unref(st);
	g_byte_array_append(ba, (const guint8 *)"", 1);
	return (char *)g_byte_array_free(ba, FALSE);
}

/*
 * The blocks of a delivery-status content (RFC 3464 §2.1: groups of
 * fields separated by blank lines), unfolded, "\n" between fields.
 * blocks[0] is the per-message block. Returns the number of blocks.
 */
static int status_blocks(const char *content, char ***blocks)
{
	GString *cur = g_string_new("");
	GPtrArray *v = g_ptr_array_new();
	char **lines = g_strsplit(content, "\r\n", -1);

	for (char **l = lines;; l++) {
		if (!*l || !**l) {
			if (cur->len) {
				g_ptr_array_add(v, g_string_free(cur, FALSE));
				cur = g_string_new("");
			}
			if (!*l)
				break;
			continue;
		}
		if (**l == ' ' || **l == '\t') {
			g_string_append(cur, *l);     /* unfold: drop the CRLF only */
		} else {
			if (cur->len)
				g_string_append_c(cur, '\n');
			g_string_append(cur, *l);
		}
	}
	g_string_free(cur, TRUE);
	g_strfreev(lines);
	int n = (int)v->len;
	g_ptr_array_add(v, NULL);
	*blocks = (char **)g_ptr_array_free(v, FALSE);
	return n;
}

/* The value of field name in block (without "Name: "), or NULL (g_free). */
static char *field(const char *block, const char *name)
{
	char **lines = g_strsplit(block, "\n", -1);
	char *r = NULL;
	size_t n = strlen(name);

	for (char **l = lines; *l && !r; l++)
		if (g_ascii_strncasecmp(*l, name, n) == 0 && (*l)[n] == ':')
			r = g_strdup(*l + n + 1 + ((*l)[n + 1] == ' '));
	g_strfreev(lines);
	return r;
}

#define EXPECT_FIELD(block, name, want) do {					\
	char *v_ = field((block), (name));					\
	ck_assert_msg(v_ != NULL, "no %s field in:\n%s", (name), (block));	\
	ck_assert_str_eq(v_, (want));						\
	g_free(v_);								\
} while (0)

#define EXPECT_NO_FIELD(block, name) do {					\
	char *v_ = field((block), (name));					\
	ck_assert_msg(v_ == NULL, "unexpected %s: %s", (name), v_);		\
} while (0)

/* The number of times needle occurs in hay. */
static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* ------------------------------------------------------------------ */

START_TEST(test_two_recipients)
{
	struct dsn_rcpt r[2] = {
		{ .addr = "a@x.example", .action = "failed", .status = "5.1.1",
		  .remote_mta = "mx.x.example[192.0.2.1]:25",
		  .diagnostic = "550 5.1.1 <a@x.example>: Recipient address rejected: User unknown",
		  .reason = "The recipient's mail server does not know this address.",
		  .last_attempt_ms = NOW - 1000 },
		{ .addr = "b@y.example", .action = "failed", .status = "5.1.1",
		  .reason = "The address is on the suppression list." },
	};
	struct dsn_info in = info_for(orig_headers);
	buf_t b;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, r, 2, &b), 0);
	check_wire(&b);
	GMimeMessage *m = parse(&b);

	/* Header fields. */
	InternetAddressList *from = g_mime_message_get_from(m);
	ck_assert_int_eq(internet_address_list_length(from), 1);
	InternetAddress *ia = internet_address_list_get_address(from, 0);
	ck_assert_str_eq(INTERNET_ADDRESS_MAILBOX(ia)->addr, "MAILER-DAEMON@" HOST);
	ck_assert_str_eq(internet_address_get_name(ia), "Mail Delivery System");
	InternetAddressList *to = g_mime_message_get_to(m);
	ck_assert_int_eq(internet_address_list_length(to), 1);
	ia = internet_address_list_get_address(to, 0);
	ck_assert_str_eq(INTERNET_ADDRESS_MAILBOX(ia)->addr, "shop@interfactory1.co.jp");
	ck_assert_str_eq(g_mime_message_get_subject(m), "Undelivered Mail Returned to Sender");
	ck_assert_str_eq(g_mime_object_get_header(GMIME_OBJECT(m), "Auto-Submitted"),
	                 "auto-replied");
	ck_assert_str_eq(g_mime_object_get_header(GMIME_OBJECT(m), "MIME-Version"), "1.0");
	GDateTime *date = g_mime_message_get_date(m);
	ck_assert_ptr_nonnull(date);
	ck_assert_int_eq(g_date_time_to_unix(date), NOW / 1000);
	const char *mid = g_mime_message_get_message_id(m);
	ck_assert_ptr_nonnull(mid);
	ck_assert_ptr_nonnull(strstr(mid, QID));
	ck_assert_ptr_nonnull(strstr(mid, "@" HOST));

	/* multipart/report; report-type=delivery-status, three parts in order. */
	GMimeMultipart *mp = report_of(m, "delivery-status");
	ck_assert_int_eq(g_mime_multipart_get_count(mp), 3);
	GMimeObject *p0 = g_mime_multipart_get_part(mp, 0);
	GMimeObject *p1 = g_mime_multipart_get_part(mp, 1);
	GMimeObject *p2 = g_mime_multipart_get_part(mp, 2);
	expect_type(p0, "text", "plain");
	expect_type(p1, "message", "delivery-status");
	expect_type(p2, "text", "rfc822-headers");
	ck_assert_str_eq(g_mime_object_get_content_type_parameter(p0, "charset"), "utf-8");

	/* The readable part. */
	char *text = content_of(p0);
	ck_assert_ptr_nonnull(strstr(text, "This is the mail system at host " HOST "."));
	ck_assert_ptr_nonnull(strstr(text, "could not be delivered to one or more recipients"));
	ck_assert_ptr_nonnull(strstr(text, "<a@x.example>: The recipient's mail server"));
	ck_assert_ptr_nonnull(strstr(text, "The mail server mx.x.example[192.0.2.1] answered: 550"));
	ck_assert_ptr_nonnull(strstr(text, "<b@y.example>: The address is on the suppression"));
	ck_assert_ptr_nonnull(strstr(text, "注文確認 #1234"));   /* the decoded Subject */
	ck_assert_ptr_nonnull(strstr(text, QID));
	g_free(text);

	/* The machine-readable part. */
	char *status = content_of(p1), **blk = NULL;
	ck_assert_int_eq(status_blocks(status, &blk), 3);
	EXPECT_FIELD(blk[0], "Reporting-MTA", "dns; " HOST);
	EXPECT_FIELD(blk[0], "X-Hikyaku-Queue-ID", QID);
	char *arrival = field(blk[0], "Arrival-Date");
	ck_assert_ptr_nonnull(arrival);
	ck_assert_ptr_nonnull(strstr(arrival, " 2023 "));
	g_free(arrival);
	EXPECT_FIELD(blk[1], "Final-Recipient", "rfc822; a@x.example");
	EXPECT_FIELD(blk[1], "Action", "failed");
	EXPECT_FIELD(blk[1], "Status", "5.1.1");
	EXPECT_FIELD(blk[1], "Remote-MTA", "dns; mx.x.example");
	EXPECT_FIELD(blk[1], "Diagnostic-Code",
	             "smtp; 550 5.1.1 <a@x.example>: Recipient address rejected: User unknown");
	ck_assert_ptr_nonnull(strstr(blk[1], "\nLast-Attempt-Date: "));
	EXPECT_FIELD(blk[2], "Final-Recipient", "rfc822; b@y.example");
	EXPECT_FIELD(blk[2], "Action", "failed");
	EXPECT_FIELD(blk[2], "Status", "5.1.1");
	EXPECT_NO_FIELD(blk[2], "Remote-MTA");
	EXPECT_NO_FIELD(blk[2], "Diagnostic-Code");
	EXPECT_NO_FIELD(blk[2], "Last-Attempt-Date");
	g_strfreev(blk);
	g_free(status);

	/* The original header section, and nothing of the body. */
	char *hdrs = content_of(p2);
	ck_assert_ptr_nonnull(strstr(hdrs, "From: Shop <shop@interfactory1.co.jp>\r\n"));
	ck_assert_ptr_nonnull(strstr(hdrs, "Message-ID: <order-1234@shop.example.jp>\r\n"));
	ck_assert_ptr_nonnull(strstr(hdrs, "\r\n\tby relay.example.jp (hikyaku)"));
	ck_assert_ptr_null(strstr(hdrs, "This body"));
	g_free(hdrs);
	ck_assert_ptr_null(strstr(b.data, "This body"));

	g_object_unref(m);
	buf_free(&b);
}
END_TEST

START_TEST(test_long_lines)
{
	char diag[4000], token[1601], headers[2200];
	struct dsn_rcpt r[2] = { { 0 } };
	struct dsn_info in;
	buf_t b;

	/* A long multi-line reply, joined: folded, and unfolded unchanged. */
	diag[0] = '\0';
	for (int i = 0; strlen(diag) < 3000; i++)
		snprintf(diag + strlen(diag), sizeof(diag) - strlen(diag),
		         "550-5.1.1 line %d of a long reply\r\n", i);
	strcat(diag, "550 5.1.1 end");
	/* A word longer than a line may be. */
	memset(token, 'x', 1600);
	token[1600] = '\0';
	r[0] = (struct dsn_rcpt){ .addr = "a@x.example", .status = "5.1.1", .diagnostic = diag,
	                          .remote_mta = "mx.x.example", .reason = diag };
	r[1] = (struct dsn_rcpt){ .addr = "b@y.example", .status = "5.1.1", .diagnostic = token };
	/* A header line of 1500 octets, LF line ends and a stray CR. */
	snprintf(headers, sizeof(headers), "X-Long: %01500d\nSubject: plain\rtext\nTo: b@y.example\n",
	         0);
	in = info_for(headers);
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, r, 2, &b), 0);
	check_wire(&b);

	GMimeMessage *m = parse(&b);
	GMimeMultipart *mp = report_of(m, "delivery-status");
	ck_assert_int_eq(g_mime_multipart_get_count(mp), 3);
	char *status = content_of(g_mime_multipart_get_part(mp, 1)), **blk = NULL;
	ck_assert_int_eq(status_blocks(status, &blk), 3);
	/* CRLF inside the reply became single spaces. */
	char *want = g_strdup(diag);
	for (char *p = want; *p; p++)
		if (*p == '\r')
			*p = ' ';
	char **parts = g_strsplit(want, "\n", -1);
	char *joined = g_strjoinv("", parts);
	char *expect = g_strconcat("smtp; ", joined, NULL);
	EXPECT_FIELD(blk[1], "Diagnostic-Code", expect);
	g_free(expect);
	g_free(joined);
	g_strfreev(parts);
	g_free(want);
	/* The long word is cut, never lost. */
	char *v = field(blk[2], "Diagnostic-Code");
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(count(v, "x"), 1600);
	g_free(v);
	g_strfreev(blk);
	g_free(status);

	char *text = content_of(g_mime_multipart_get_part(mp, 0));
	ck_assert_ptr_nonnull(strstr(text, "550 5.1.1 end"));
	g_free(text);
	char *hdrs = content_of(g_mime_multipart_get_part(mp, 2));
	ck_assert_int_eq(count(hdrs, "0"), 1500);
	ck_assert_ptr_nonnull(strstr(hdrs, "Subject: plain text\r\nTo: b@y.example\r\n"));
	g_free(hdrs);
	g_object_unref(m);
	buf_free(&b);
}
END_TEST

START_TEST(test_utf8_addresses)
{
	static const char headers[] = "From: =?UTF-8?B?5bqX?= <shop@例え.jp>\r\n"
	                              "Subject: ご注文ありがとうございます\r\n";
	struct dsn_rcpt r[2] = {
		{ .addr = "山田@例え.jp", .action = "failed", .status = "5.1.1",
		  .remote_mta = "mx.xn--r8jz45g.jp", .diagnostic = "550 5.1.1 no such user",
		  .reason = "no such user" },
		{ .addr = "b@y.example", .action = "failed", .status = "5.1.1",
		  .reason = "no such user" },
	};
	struct dsn_info in = info_for(headers);
	buf_t b;

	in.sender = "店長@例え.jp";
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, r, 2, &b), 0);
	check_wire(&b);
	GMimeMessage *m = parse(&b);
	InternetAddressList *to = g_mime_message_get_to(m);
	ck_assert_int_eq(internet_address_list_length(to), 1);
	ck_assert_str_eq(INTERNET_ADDRESS_MAILBOX(internet_address_list_get_address(to, 0))->addr,
	                 "店長@例え.jp");

	/* RFC 6533: raw UTF-8 addresses only in global-delivery-status. */
	GMimeMultipart *mp = report_of(m, "global-delivery-status");
	ck_assert_int_eq(g_mime_multipart_get_count(mp), 3);
	expect_type(g_mime_multipart_get_part(mp, 0), "text", "plain");
	expect_type(g_mime_multipart_get_part(mp, 1), "message", "global-delivery-status");
	expect_type(g_mime_multipart_get_part(mp, 2), "message", "global-headers");
	char *status = content_of(g_mime_multipart_get_part(mp, 1)), **blk = NULL;
	ck_assert_int_eq(status_blocks(status, &blk), 3);
	EXPECT_FIELD(blk[1], "Final-Recipient", "utf-8; 山田@例え.jp");
	EXPECT_FIELD(blk[2], "Final-Recipient", "rfc822; b@y.example");
	g_strfreev(blk);
	g_free(status);

	char *text = content_of(g_mime_multipart_get_part(mp, 0));
	ck_assert_ptr_nonnull(strstr(text, "<山田@例え.jp>: "));
	ck_assert_ptr_nonnull(strstr(text, "ご注文ありがとうございます"));
	g_free(text);
	char *hdrs = content_of(g_mime_multipart_get_part(mp, 2));
	ck_assert_ptr_nonnull(strstr(hdrs, "Subject: ご注文ありがとうございます\r\n"));
	g_free(hdrs);
	g_object_unref(m);
	buf_free(&b);

	/* ASCII recipients with a UTF-8 Subject: only the headers part is global. */
	r[0].addr = "a@x.example";
	in.sender = "shop@interfactory1.co.jp";
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, r, 2, &b), 0);
	check_wire(&b);
	m = parse(&b);
	mp = report_of(m, "delivery-status");
	expect_type(g_mime_multipart_get_part(mp, 1), "message", "delivery-status");
	expect_type(g_mime_multipart_get_part(mp, 2), "message", "global-headers");
	g_object_unref(m);
	buf_free(&b);
}
END_TEST

START_TEST(test_no_original_headers)
{
	struct dsn_rcpt r = { .addr = "a@x.example", .action = "failed", .status = "5.1.1",
	                      .reason = "no such user" };
	static const char *const empties[] = { NULL, "", "\r\n", "\n\r\nbody\r\n" };

	for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		struct dsn_info in = info_for(empties[i]);
		buf_t b;
		buf_init(&b, 1 << 20);
		ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
		check_wire(&b);
		GMimeMessage *m = parse(&b);
		/* RFC 3464 §2: the third part is optional; without headers it
		 * is left out rather than sent empty. */
		GMimeMultipart *mp = report_of(m, "delivery-status");
		ck_assert_int_eq(g_mime_multipart_get_count(mp), 2);
		expect_type(g_mime_multipart_get_part(mp, 0), "text", "plain");
		expect_type(g_mime_multipart_get_part(mp, 1), "message", "delivery-status");
		ck_assert_ptr_null(strstr(b.data, "body"));
		g_object_unref(m);
		buf_free(&b);
	}
}
END_TEST

START_TEST(test_optional_fields_missing)
{
	struct dsn_rcpt r = { .addr = "a@x.example" };
	struct dsn_info in = info_for(orig_headers);
	buf_t b;

	in.queue_id = NULL;
	in.arrival_ms = 0;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
	check_wire(&b);
	GMimeMessage *m = parse(&b);
	GMimeMultipart *mp = report_of(m, "delivery-status");
	ck_assert_int_eq(g_mime_multipart_get_count(mp), 3);
	char *status = content_of(g_mime_multipart_get_part(mp, 1)), **blk = NULL;
	ck_assert_int_eq(status_blocks(status, &blk), 2);
	EXPECT_FIELD(blk[0], "Reporting-MTA", "dns; " HOST);
	EXPECT_NO_FIELD(blk[0], "X-Hikyaku-Queue-ID");
	EXPECT_NO_FIELD(blk[0], "Arrival-Date");
	EXPECT_FIELD(blk[1], "Final-Recipient", "rfc822; a@x.example");
	EXPECT_FIELD(blk[1], "Action", "failed");
	EXPECT_FIELD(blk[1], "Status", "5.0.0");
	EXPECT_NO_FIELD(blk[1], "Remote-MTA");
	EXPECT_NO_FIELD(blk[1], "Diagnostic-Code");
	EXPECT_NO_FIELD(blk[1], "Last-Attempt-Date");
	g_strfreev(blk);
	g_free(status);
	char *text = content_of(g_mime_multipart_get_part(mp, 0));
	ck_assert_ptr_nonnull(strstr(text, "<a@x.example>: the message could not be delivered."));
	ck_assert_ptr_null(strstr(text, "answered"));
	g_free(text);
	g_object_unref(m);
	buf_free(&b);

	/* A malformed status is replaced, never copied. */
	r.status = "5.1.1\r\nAction: delivered";
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
	ck_assert_int_eq(count(b.data, "Status: 5.0.0\r\n"), 1);
	ck_assert_ptr_null(strstr(b.data, "delivered\r\n"));
	buf_free(&b);
}
END_TEST

START_TEST(test_delayed)
{
	struct dsn_rcpt r = { .addr = "a@x.example", .action = "delayed",
	                      .diagnostic = "451 4.7.1 try again later", .remote_mta = "mx.x.example" };
	struct dsn_info in = info_for(orig_headers);
	buf_t b;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
	check_wire(&b);
	GMimeMessage *m = parse(&b);
	ck_assert_str_eq(g_mime_message_get_subject(m), "Delayed Mail (still being retried)");
	GMimeMultipart *mp = report_of(m, "delivery-status");
	char *status = content_of(g_mime_multipart_get_part(mp, 1)), **blk = NULL;
	ck_assert_int_eq(status_blocks(status, &blk), 2);
	EXPECT_FIELD(blk[1], "Action", "delayed");
	EXPECT_FIELD(blk[1], "Status", "4.0.0");
	EXPECT_NO_FIELD(blk[1], "Will-Retry-Until");    /* not given: not said */
	g_strfreev(blk);
	g_free(status);
	g_object_unref(m);
	buf_free(&b);
}
END_TEST

/*
 * The delay warning the runner sends (SPEC §5 delay_warning): every
 * recipient "delayed", its 4.x.x status and last response, the end of
 * the lifetime as Will-Retry-Until (RFC 3464 §2.3.7), and a readable
 * part that says it is only a warning. A response of hikyaku's own (no
 * server said it) goes with its own diagnostic type.
 */
START_TEST(test_delay_warning)
{
	uint64_t until = NOW + 4ULL * 86400 * 1000 + 3600000;  /* arrival + 5 days */
	struct dsn_rcpt r[2] = {
		{ .addr = "a@x.example", .action = "delayed", .status = "4.3.0",
		  .diagnostic = "451 4.3.0 Mailbox busy, try later",
		  .reason = "the mail system could not deliver it yet and keeps trying.",
		  .last_attempt_ms = NOW - 60000, .will_retry_until_ms = until },
		{ .addr = "b@y.example", .action = "delayed", .status = "4.7.0",
		  .diagnostic = "delivery temporarily suspended: [destination docomo] is paused",
		  .diagnostic_type = "X-Hikyaku",
		  .reason = "the mail system could not deliver it yet and keeps trying.",
		  .will_retry_until_ms = until },
	};
	struct dsn_info in = info_for(orig_headers);
	buf_t b;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, r, 2, &b), 0);
	check_wire(&b);
	GMimeMessage *m = parse(&b);
	ck_assert_str_eq(g_mime_message_get_subject(m), "Delayed Mail (still being retried)");
	InternetAddress *ia = internet_address_list_get_address(g_mime_message_get_to(m), 0);
	ck_assert_str_eq(INTERNET_ADDRESS_MAILBOX(ia)->addr, "shop@interfactory1.co.jp");
	GMimeMultipart *mp = report_of(m, "delivery-status");
	ck_assert_int_eq(g_mime_multipart_get_count(mp), 3);

	char *text = content_of(g_mime_multipart_get_part(mp, 0));
	ck_assert_ptr_nonnull(strstr(text, "has not been delivered yet to one or more recipients"));
	ck_assert_ptr_nonnull(strstr(text, "This is a warning only: you do not need to send the "
	                                   "message again."));
	ck_assert_ptr_nonnull(strstr(text, "The mail system will keep trying until "));
	ck_assert_ptr_null(strstr(text, "could not be delivered to"));
	ck_assert_ptr_nonnull(strstr(text, "<a@x.example>: "));
	ck_assert_ptr_nonnull(strstr(text, "451 4.3.0 Mailbox busy"));
	ck_assert_ptr_nonnull(strstr(text, "<b@y.example>: "));
	g_free(text);

	char *status = content_of(g_mime_multipart_get_part(mp, 1)), **blk = NULL;
	ck_assert_int_eq(status_blocks(status, &blk), 3);
	EXPECT_FIELD(blk[1], "Final-Recipient", "rfc822; a@x.example");
	EXPECT_FIELD(blk[1], "Action", "delayed");
	EXPECT_FIELD(blk[1], "Status", "4.3.0");
	EXPECT_FIELD(blk[1], "Diagnostic-Code", "smtp; 451 4.3.0 Mailbox busy, try later");
	ck_assert_ptr_nonnull(strstr(blk[1], "\nLast-Attempt-Date: "));
	char *wru = field(blk[1], "Will-Retry-Until");
	ck_assert_ptr_nonnull(wru);
	/* an RFC 5322 date-time of that moment */
	GDateTime *t = g_mime_utils_header_decode_date(wru);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(g_date_time_to_unix(t), (gint64)(until / 1000));
	g_date_time_unref(t);
	g_free(wru);
	/* the order of RFC 3464 §2.3: Will-Retry-Until after Last-Attempt-Date */
	ck_assert(strstr(blk[1], "Last-Attempt-Date") < strstr(blk[1], "Will-Retry-Until"));
	EXPECT_FIELD(blk[2], "Action", "delayed");
	EXPECT_FIELD(blk[2], "Status", "4.7.0");
	EXPECT_FIELD(blk[2], "Diagnostic-Code",
	             "X-Hikyaku; delivery temporarily suspended: [destination docomo] is paused");
	EXPECT_NO_FIELD(blk[2], "Last-Attempt-Date");
	ck_assert_ptr_nonnull(strstr(blk[2], "\nWill-Retry-Until: "));
	g_strfreev(blk);
	g_free(status);
	g_object_unref(m);
	buf_free(&b);

	/* Will-Retry-Until belongs to delayed recipients only (RFC 3464
	 * §2.3.7); a diagnostic type that is not an atom is not copied. */
	r[0].action = "failed";
	r[0].status = "5.1.1";
	r[1].diagnostic_type = "x; Action: delivered";
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, r, 2, &b), 0);
	m = parse(&b);
	ck_assert_str_eq(g_mime_message_get_subject(m), "Undelivered Mail Returned to Sender");
	mp = report_of(m, "delivery-status");
	status = content_of(g_mime_multipart_get_part(mp, 1));
	ck_assert_int_eq(status_blocks(status, &blk), 3);
	EXPECT_NO_FIELD(blk[1], "Will-Retry-Until");
	ck_assert_ptr_nonnull(strstr(blk[2], "\nWill-Retry-Until: "));
	EXPECT_FIELD(blk[2], "Diagnostic-Code",
	             "smtp; delivery temporarily suspended: [destination docomo] is paused");
	ck_assert_ptr_null(strstr(status, "Action: delivered"));
	g_strfreev(blk);
	g_free(status);
	g_object_unref(m);
	buf_free(&b);
}
END_TEST

START_TEST(test_injection)
{
	/* A server reply that tries to add a recipient block of its own. */
	struct dsn_rcpt r = {
		.addr = "a@x.example", .status = "5.1.1", .remote_mta = "mx.x.example\r\nX: y",
		.diagnostic = "550 no\r\n\r\nFinal-Recipient: rfc822; victim@example.com\r\n"
		              "Action: failed\r\n\r\n--=_hikyaku",
		.reason = "bad\r\n\r\n--boundary",
	};
	struct dsn_info in = info_for(orig_headers);
	buf_t b;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
	check_wire(&b);
	GMimeMessage *m = parse(&b);
	GMimeMultipart *mp = report_of(m, "delivery-status");
	ck_assert_int_eq(g_mime_multipart_get_count(mp), 3);
	char *status = content_of(g_mime_multipart_get_part(mp, 1)), **blk = NULL;
	ck_assert_int_eq(status_blocks(status, &blk), 2);
	EXPECT_FIELD(blk[1], "Final-Recipient", "rfc822; a@x.example");
	EXPECT_FIELD(blk[1], "Remote-MTA", "dns; mx.x.example");
	EXPECT_FIELD(blk[1], "Diagnostic-Code",
	             "smtp; 550 no Final-Recipient: rfc822; victim@example.com Action: failed "
	             "--=_hikyaku");
	/* Only one field starts a line; the rest is inside the folded value. */
	ck_assert_int_eq(count(status, "\nFinal-Recipient:"), 1);
	g_strfreev(blk);
	g_free(status);
	g_object_unref(m);
	buf_free(&b);
}
END_TEST

START_TEST(test_boundary_in_content)
{
	/* Original headers that hold every boundary the first tries could use. */
	GString *h = g_string_new("Subject: traps\r\n");
	for (unsigned id = 0; id < 64; id++)
		g_string_append_printf(h, "X-Trap: --=_hikyaku/%s/%llu.%u.0\r\n", QID, NOW, id);
	struct dsn_rcpt r = { .addr = "a@x.example", .status = "5.1.1" };
	struct dsn_info in = info_for(h->str);
	buf_t b;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
	check_wire(&b);
	GMimeMessage *m = parse(&b);
	GMimeMultipart *mp = report_of(m, "delivery-status");
	ck_assert_int_eq(g_mime_multipart_get_count(mp), 3);
	char *hdrs = content_of(g_mime_multipart_get_part(mp, 2));
	ck_assert_int_eq(count(hdrs, "X-Trap: "), 64);
	g_free(hdrs);
	g_object_unref(m);
	buf_free(&b);
	g_string_free(h, TRUE);
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct dsn_rcpt r = { .addr = "a@x.example", .status = "5.1.1" };
	struct dsn_rcpt bad = { .addr = "a@x.example\r\nBcc: victim@example.com" };
	struct dsn_rcpt none = { .addr = NULL };
	struct dsn_info in = info_for(orig_headers);
	buf_t b;

	buf_init(&b, 1 << 20);
	buf_appends(&b, "kept");
	ck_assert_int_eq(dsn_build(NULL, &r, 1, &b), -EINVAL);
	ck_assert_int_eq(dsn_build(&in, NULL, 1, &b), -EINVAL);
	ck_assert_int_eq(dsn_build(&in, &r, 0, &b), -EINVAL);
	ck_assert_int_eq(dsn_build(&in, &bad, 1, &b), -EINVAL);
	ck_assert_int_eq(dsn_build(&in, &none, 1, &b), -EINVAL);
	in.sender = "";          /* a bounce is never bounced (SPEC §5) */
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), -EINVAL);
	in.sender = "a@x.example>\r\nBcc: <victim@example.com";
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), -EINVAL);
	in = info_for(orig_headers);
	in.hostname = NULL;
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), -EINVAL);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_str_eq(b.data, "kept");
	buf_free(&b);

	/* Too small a buffer: -ENOSPC, and the buffer as it was. */
	in = info_for(orig_headers);
	buf_init(&b, 600);
	buf_appends(&b, "kept");
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), -ENOSPC);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_str_eq(b.data, "kept");
	buf_free(&b);
}
END_TEST

START_TEST(test_appends)
{
	struct dsn_rcpt r = { .addr = "a@x.example", .status = "5.1.1" };
	struct dsn_info in = info_for(orig_headers);
	buf_t b;

	/* Two DSNs in a row differ in Message-ID and boundary. */
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
	char *first = g_strndup(b.data, b.len);
	buf_reset(&b);
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
	GMimeMessage *m1 = parse(&(buf_t){ first, strlen(first), strlen(first), strlen(first) });
	GMimeMessage *m2 = parse(&b);
	ck_assert_str_ne(g_mime_message_get_message_id(m1), g_mime_message_get_message_id(m2));
	g_object_unref(m1);
	g_object_unref(m2);
	g_free(first);
	buf_free(&b);
}
END_TEST

/* The dates (RFC 5322 §3.3) in the header, the readable part and the
 * status part, byte for byte, in the local zone: smtp_date_format()'s
 * form (the day in two digits), as in the Received: and Date: fields
 * the listener adds. */
START_TEST(test_dates)
{
	/* 2026-12-01 00:00:00 UTC is 09:00 in Tokyo. */
	struct dsn_rcpt r = { .addr = "a@x.example", .action = "failed", .status = "5.1.1",
	                      .last_attempt_ms = 1796083201000ULL };
	struct dsn_info in = info_for(orig_headers);
	buf_t b;

	setenv("TZ", "JST-9", 1);
	tzset();
	in.arrival_ms = 1796079600000ULL;
	in.now_ms = 1796083205000ULL;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(dsn_build(&in, &r, 1, &b), 0);
	ck_assert_ptr_nonnull(memmem(b.data, b.len, "\r\nDate: Tue, 01 Dec 2026 09:00:05 +0900\r\n",
	                             strlen("\r\nDate: Tue, 01 Dec 2026 09:00:05 +0900\r\n")));
	GMimeMessage *m = parse(&b);
	GMimeMultipart *mp = report_of(m, "delivery-status");
	char *text = content_of(g_mime_multipart_get_part(mp, 0));
	ck_assert_msg(strstr(text, "  Received: Tue, 01 Dec 2026 08:00:00 +0900\r\n"), "%s", text);
	char *status = content_of(g_mime_multipart_get_part(mp, 1)), **blk = NULL;
	ck_assert_int_eq(status_blocks(status, &blk), 2);
	EXPECT_FIELD(blk[0], "Arrival-Date", "Tue, 01 Dec 2026 08:00:00 +0900");
	EXPECT_FIELD(blk[1], "Last-Attempt-Date", "Tue, 01 Dec 2026 09:00:01 +0900");
	g_strfreev(blk);
	g_free(status);
	g_free(text);
	g_object_unref(m);
	buf_free(&b);
}
END_TEST

static Suite *dsn_suite(void)
{
	Suite *s = suite_create("dsn");
	TCase *tc = tcase_create("dsn");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_two_recipients);
	tcase_add_test(tc, test_long_lines);
	tcase_add_test(tc, test_utf8_addresses);
	tcase_add_test(tc, test_no_original_headers);
	tcase_add_test(tc, test_optional_fields_missing);
	tcase_add_test(tc, test_delayed);
	tcase_add_test(tc, test_delay_warning);
	tcase_add_test(tc, test_injection);
	tcase_add_test(tc, test_boundary_in_content);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_appends);
	tcase_add_test(tc, test_dates);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(dsn_suite());

	/* Once here, so that forked tests inherit it and one shutdown at
	 * the end releases GMime's one-time allocations for LeakSanitizer. */
	g_mime_init();
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	g_mime_shutdown();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
