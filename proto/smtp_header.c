/*
 * smtp_header - the header fields hikyaku adds to a mail it queues, and
 * the unfolded value of a field it reads. See smtp_header.h.
 */
#include "proto/smtp_header.h"

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

void smtp_date_format(char *out, size_t cap, time_t t)
{
	struct tm tm;
	localtime_r(&t, &tm);
	if (strftime(out, cap, "%a, %d %b %Y %H:%M:%S %z", &tm) == 0 && cap)
		out[0] = '\0';
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
