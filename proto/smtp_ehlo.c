/*
 * smtp_ehlo - what a server offers in its reply to EHLO. See smtp_ehlo.h.
 * (It was ext_parse() of relay/smtp_client.c; the client now keeps only
 * what this reads.)
 */
#include "proto/smtp_ehlo.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	unsigned bit;
} ext_names[] = {
	{ "PIPELINING", SMTP_EXT_PIPELINING },
	{ "SIZE", SMTP_EXT_SIZE },
	{ "8BITMIME", SMTP_EXT_8BITMIME },
	{ "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
	{ "STARTTLS", SMTP_EXT_STARTTLS },
	{ "AUTH", SMTP_EXT_AUTH },
	{ "DSN", SMTP_EXT_DSN },
	{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES },
};

void smtp_ehlo_init(struct smtp_ehlo *e)
{
	e->ext = 0;
	e->mechs = 0;
	e->size_limit = 0;
}

/* One EHLO keyword line (RFC 5321 §4.1.1.1): "KEYWORD [params]". */
void smtp_ehlo_line(struct smtp_ehlo *e, const char *p, size_t n)
{
	size_t kl = 0;

	while (n > 0 && p[n - 1] == ' ')
		n--;
	while (kl < n && p[kl] != ' ' && p[kl] != '=')
		kl++;
	const char *args = p + kl;
	size_t an = n - kl;
	if (an > 0) {           /* "AUTH=LOGIN PLAIN": the old form of AUTH */
		args++;
		an--;
	}
	unsigned bit = 0;
	for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++) {
		if (strlen(ext_names[i].name) == kl && strncasecmp(p, ext_names[i].name, kl) == 0)
			bit = ext_names[i].bit;
	}
	e->ext |= bit;
	if (bit == SMTP_EXT_SIZE) {
		/* RFC 1870 §4: "SIZE" [SP number]; 0 or none: no fixed limit. */
		uint64_t v = 0;
		size_t i = 0;
		while (i < an && i < 19 && isdigit((unsigned char)args[i]))
			v = v * 10 + (uint64_t)(args[i++] - '0');
		if (i == an)
			e->size_limit = v;
	} else if (bit == SMTP_EXT_AUTH) {
		while (an > 0) {
			size_t ml = 0;
			while (ml < an && args[ml] != ' ')
				ml++;
			if (ml == 5 && strncasecmp(args, "PLAIN", 5) == 0)
				e->mechs |= SMTP_MECH_PLAIN;
			else if (ml == 5 && strncasecmp(args, "LOGIN", 5) == 0)
				e->mechs |= SMTP_MECH_LOGIN;
			while (ml < an && args[ml] == ' ')
				ml++;
			args += ml;
			an -= ml;
		}
	}
}

unsigned smtp_ehlo_ext(const char *name)
{
	for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++)
		if (strcasecmp(name, ext_names[i].name) == 0)
			return ext_names[i].bit;
	return 0;
}
