/*
 * smtp_header - the header fields hikyaku adds to a mail it queues, and
 * the unfolded value of a field it reads. See smtp_header.h.
 */
#include "proto/smtp_header.h"

#include <stdio.h>
#include <string.h>

#include <glib.h>

const char *smtp_received_protocol(bool esmtp, bool tls, bool auth, bool smtputf8)
{
	/* RFC 3848 and RFC 6531 §3.7.3 "with" keywords. */
	if (smtputf8)
		return tls ? (auth ? "UTF8SMTPSA" : "UTF8SMTPS") : (auth ? "UTF8SMTPA" : "UTF8SMTP");
	if (!esmtp)
		return "SMTP";
	return tls ? (auth ? "ESMTPSA" : "ESMTPS") : (auth ? "ESMTPA" : "ESMTP");
}

/* RFC 5322 §3.3 date-time, local time with its numeric offset: the form
 * GMime's g_mime_utils_header_format_date() writes too. */
void smtp_date_format(char *out, size_t cap, time_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm = { 0 };

	if (!cap)
		return;
	if (!localtime_r(&t, &tm)) {
		gmtime_r(&t, &tm);
		tm.tm_gmtoff = 0;
	}
	long off = tm.tm_gmtoff / 60;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	/* Names by hand: strftime's %a and %b follow the locale. */
	snprintf(out, cap, "%s, %02d %s %d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
	         tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	         tm.tm_sec, sign, off / 60, off % 60);
}

int smtp_header_build(buf_t *out, const struct smtp_header_info *h)
{
	char date[64];
	int rc;

	smtp_date_format(date, sizeof(date), h->arrival);
	rc = buf_appendf(out, "Received: from %s ([%s])\r\n", h->helo, h->client_ip);
	if (!rc && h->tls)
		rc = buf_appendf(out, "\t(using %s)\r\n", h->tls);
	if (!rc)
		rc = buf_appendf(out, "\tby %s (hikyaku) with %s id %s", h->hostname, h->protocol,
		                 h->queue_id);
	if (!rc && h->single_rcpt)
		rc = buf_appendf(out, "\r\n\tfor <%s>", h->single_rcpt);
	if (!rc)
		rc = buf_appendf(out, "; %s\r\n", date);
	if (!rc && !h->has_date)
		rc = buf_appendf(out, "Date: %s\r\n", date);
	if (!rc && !h->has_message_id)
		rc = buf_appendf(out, "Message-ID: <%s@%s>\r\n", h->queue_id, h->hostname);
	return rc;
}

char *smtp_header_unfold(const char *field, size_t len)
{
	const char *colon = field ? memchr(field, ':', len) : NULL;

	if (!colon)
		return NULL;
	const char *p = colon + 1, *end = field + len;
	char *out = g_malloc((size_t)(end - p) + 1);
	size_t k = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t take = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		size_t n = take;
		/* RFC 5322 §2.2.3: unfolding removes the line ends only. */
		if (n > 0 && p[n - 1] == '\n')
			n--;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		memcpy(out + k, p, n);
		k += n;
		p += take;
	}
	out[k] = '\0';
	return out;
}
