/*
 * outcome - what a reply (or its absence) means for a recipient.
 * See outcome.h.
 */
#include "relay/outcome.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

static const struct outcome_synthetic table[OUT_COUNT] = {
	[OUT_LOOP] = { "5.4.6", OUTCOME_BOUNCED,
	               "mail for %s loops back to myself (%s is hikyaku's own address and port %u)" },
	[OUT_ADDR_REFUSED] = { "5.4.4", OUTCOME_BOUNCED,
	                       "no address of %s may be connected to (internal_destinations = %s): %s%s" },
	[OUT_UNREACHABLE] = { "4.4.1", OUTCOME_DEFERRED, "no host of %s could be reached" },
	[OUT_DNS_TEMP] = { "4.4.3", OUTCOME_DEFERRED, "%s" },
	[OUT_DNS_START] = { "4.4.3", OUTCOME_DEFERRED, "DNS lookup could not start" },
	[OUT_NULL_MX] = { "5.1.10", OUTCOME_BOUNCED, "%s" },
	[OUT_NO_DOMAIN] = { "5.1.2", OUTCOME_BOUNCED, "%s" },
	[OUT_BAD_DOMAIN] = { "5.1.2", OUTCOME_BOUNCED,
	                     "the recipient's domain is not a valid domain name" },
	[OUT_NO_SMTPUTF8] = { "5.6.7", OUTCOME_BOUNCED,
	                      "the server %s does not support SMTPUTF8, which this mail needs" },
	[OUT_TOO_BIG] = { "5.3.4", OUTCOME_BOUNCED, "the message is larger than %s accepts (%llu bytes)" },
	[OUT_SEND_FAILED] = { "4.4.2", OUTCOME_DEFERRED, "could not send on the connection to %s" },
	[OUT_PAUSED] = { "4.7.0", OUTCOME_DEFERRED, "the delivery service is paused: %s" },
	[OUT_NO_SERVICE] = { "4.3.5", OUTCOME_DEFERRED, "no delivery service is configured" },
	[OUT_SUSPENDED_PAUSED] = { "4.7.0", OUTCOME_DEFERRED,
	                           "delivery temporarily suspended: the delivery service is paused: %s" },
	[OUT_SUSPENDED_DOWN] = { "4.4.1", OUTCOME_DEFERRED, "delivery temporarily suspended: %.400s" },
	[OUT_SHUTDOWN] = { "4.3.2", OUTCOME_DEFERRED, "hikyaku is shutting down; the mail stays queued" },
	[OUT_EXPIRED] = { "4.4.7", OUTCOME_BOUNCED,
	                  "delivery time expired: the mail stayed in the queue for its whole lifetime" },
	[OUT_DEST_PAUSED] = { "4.7.0", OUTCOME_DEFERRED,
	                      "delivery temporarily suspended: [destination %s] is paused (one of its "
	                      "hosts answered %.280s)" },
};

bool outcome_throttle_or_auth(int code)
{
	return code == 421 || code == 454 || code == 530 || code == 535;
}

bool outcome_policy_pause(int code)
{
	return code == 421;
}

enum outcome_verdict outcome_classify(bool service, const struct smtp_reply *rep)
{
	if (rep->code >= 200 && rep->code < 300)
		return OUTCOME_DELIVERED;
	if (rep->code == 0 || (rep->code >= 400 && rep->code < 500))
		return OUTCOME_DEFERRED;
	/* On the service route an authentication failure never bounces the
	 * queue: the credentials are wrong, not the recipients. */
	if (service && outcome_throttle_or_auth(rep->code))
		return OUTCOME_DEFERRED;
	return OUTCOME_BOUNCED;
}

bool outcome_unverified_identity(const struct smtp_reply *rep)
{
	return rep->code == 554 &&
	       (strcasestr(rep->text, "not verified") || strcasestr(rep->text, "unverified"));
}

/* SPEC §6 item 1: 5.1.x (bad mailbox or destination) and 5.2.1 (disabled). */
bool outcome_suppresses(const char *st)
{
	return st && (strncmp(st, "5.1.", 4) == 0 || strcmp(st, "5.2.1") == 0);
}

const struct outcome_synthetic *outcome_synthetic(enum outcome_why why)
{
	return why < OUT_COUNT ? &table[why] : NULL;
}

void outcome_set(struct smtp_reply *rep, enum outcome_why why, ...)
{
	const struct outcome_synthetic *s = outcome_synthetic(why);
	memset(rep, 0, sizeof(*rep));
	if (!s)
		return;
	snprintf(rep->status, sizeof(rep->status), "%s", s->status);
	va_list ap;
	va_start(ap, why);
	/* The formats are the constant table above; tests/unit/test_outcome.c
	 * checks each with its arguments. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	vsnprintf(rep->text, sizeof(rep->text), s->fmt, ap);
#pragma GCC diagnostic pop
	va_end(ap);
}

const char *outcome_reply_line(const struct smtp_reply *rep, char *out, size_t cap)
{
	if (rep->code == 0)
		snprintf(out, cap, "%s", rep->text);
	else if (rep->status[0])
		snprintf(out, cap, "%d %s %s", rep->code, rep->status, rep->text);
	else
		snprintf(out, cap, "%d %s", rep->code, rep->text);
	return out;
}

/*
 * SES answers "250 Ok 0101018c1d2e3f4a-...-000000" and puts "<that id@...>"
 * in the Message-ID of the bounce it sends later. Only a token that looks
 * unique is kept: at least 16 characters of letters, digits, '.', '-' and
 * '_', at least 4 of them digits. A reply that ends in a word ("Message
 * accepted for delivery", "Queued mail for delivery") would otherwise give
 * every mail the same id, and a forged report naming it in its Message-ID
 * could put any recipient on the list (SPEC §6.1).
 */
char *outcome_service_id(const struct smtp_reply *rep)
{
	const char *t = rep->text;
	if (strncasecmp(t, "Ok ", 3) == 0)
		t += 3;
	else if (strrchr(t, ' '))
		t = strrchr(t, ' ') + 1;
	size_t n = strcspn(t, " <>@");
	unsigned digits = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)t[i];
		if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_')
			return NULL;
		digits += isdigit(ch) != 0;
	}
	return n >= 16 && digits >= 4 ? strndup(t, n) : NULL;
}

char *outcome_message_id_local(const char *mid)
{
	if (!mid)
		return NULL;
	if (*mid == '<')
		mid++;
	size_t n = strcspn(mid, "@>");
	return n >= 8 ? strndup(mid, n) : NULL;
}
