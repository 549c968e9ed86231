/*
 * smtp_header - the header fields hikyaku adds to a mail it queues.
 * See smtp_header.h.
 */
#include "proto/smtp_header.h"

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
