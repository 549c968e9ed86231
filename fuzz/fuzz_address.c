/*
 * fuzz_address - the From: header and the routing rule (relay/route.c),
 * and domain names in A-label form (config_domain_ascii(), libidn2).
 *
 * The input is the value of a From: header field as the session passes
 * it (unfolded, after the colon), and is also tried as a domain name and
 * as an envelope sender. Checked:
 *
 *  - route_header_addrs(): -1 with no array, or n >= 1 addresses, each a
 *    NUL-terminated, valid UTF-8 string without control characters,
 *    with an '@' that is neither first nor last.
 *  - route_ascii() of each: NULL, or "local@domain" with the domain in
 *    lowercase LDH form (labels of letters, digits and hyphens, at most
 *    63 octets, no leading or trailing hyphen, at most 253 in all, no
 *    trailing dot) and no upper-case ASCII in the local part; applying
 *    route_ascii() to its own output changes nothing.
 *  - config_domain_ascii(): NULL or the same LDH form; idempotent (an
 *    A-label name converts to itself, so "xn--..." in an address matches
 *    the entry written in U-labels).
 *  - known answers for what the fuzzer found (once, at start-up);
 *  - a bare ASCII addr-spec compares as written: route_ascii() of what
 *    GMime made of it (GMime decodes A-labels) equals route_ascii() of
 *    the text;
 *  - route_decide() against a fixed configuration: a decision for the
 *    service implies every address matched; the entry named matches the
 *    first address (route_match() agrees); two From: fields and the
 *    null sender never match.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "config/config.h"
#include "relay/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

static struct config cfg_header, cfg_envelope;
static struct config_domain domains[6];
static char service_host[] = "email-smtp.ap-northeast-1.amazonaws.com";

static void add_entry(size_t *n, const char *entry)
{
	struct config_domain *d = &domains[(*n)++];

	d->entry = strdup(entry);
	d->is_address = strchr(entry, '@') != NULL;
	if (d->is_address) {
		d->ascii = strdup(entry);      /* already lowercase ASCII */
	} else {
		d->ascii = config_domain_ascii(entry, strlen(entry));
	}
	CHECK(d->entry && d->ascii);
	d->line = (int)*n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t n = 0;

	(void)argc;
	(void)argv;
	route_init();
	add_entry(&n, "interfactory1.co.jp");
	add_entry(&n, "example.co.jp");
	add_entry(&n, "test@testinterfactory1.co.jp");
	add_entry(&n, "\xe4\xbe\x8b\xe3\x81\x88.jp");          /* 例え.jp */
	add_entry(&n, "B\xc3\xbc" "cher.Example.");          /* Bücher.Example. */
	add_entry(&n, "shop.example.jp");
	cfg_header.routing.domains = domains;
	cfg_header.routing.ndomains = n;
	cfg_header.routing.match_on = MATCH_HEADER_FROM;
	cfg_header.service.host = service_host;
	cfg_envelope = cfg_header;
	cfg_envelope.routing.match_on = MATCH_ENVELOPE_FROM;

	/*
	 * Known answers of the findings (fuzz/regressions/address/), checked
	 * once per run: GMime reads these headers differently from the
	 * grammar, so they are unparseable and the envelope sender decides.
	 */
	static const char *const unparseable[] = {
		"user@xn--r8jy971d.jp",      /* U+F9B5 え: would compare as 例え.jp */
		"op@xn--r8j4z5g.j",
		"\xd1@[x,:shop@interfactory1.co.jp,:.<b@o,:,,,:,,,:o,]",
		"\xd1@[x,:_@o,:.<b@o,:,,,:,,\x0c,:o,]",
	};
	for (size_t i = 0; i < sizeof(unparseable) / sizeof(unparseable[0]); i++) {
		char **a = NULL;
		int k = route_header_addrs(unparseable[i], strlen(unparseable[i]), &a);
		if (k != -1)
			fprintf(stderr, "route_header_addrs(\"%s\") = %d, {%s}\n", unparseable[i], k,
			        k > 0 ? a[0] : "");
		CHECK(k == -1);
	}
	return 0;
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static void check_ldh(const char *d)
{
	size_t total = strlen(d);

	CHECK(total > 0 && total <= 253);
	CHECK(d[total - 1] != '.');
	const char *label = d;
	for (;;) {
		const char *dot = strchr(label, '.');
		size_t n = dot ? (size_t)(dot - label) : strlen(label);
		CHECK(n > 0 && n <= 63);
		CHECK(label[0] != '-' && label[n - 1] != '-');
		for (size_t i = 0; i < n; i++) {
			char c = label[i];
			CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
		}
		if (!dot)
			break;
		label = dot + 1;
	}
}

static void check_domain_ascii(const char *in, size_t n)
{
	char *a = config_domain_ascii(in, n);

	if (!a)
		return;
	check_ldh(a);
	char *b = config_domain_ascii(a, strlen(a));
	CHECK(b && strcmp(a, b) == 0);
	free(b);
	free(a);
}

static void check_addr_ascii(const char *addr)
{
	char *a = route_ascii(addr);

	if (!a)
		return;
	const char *at = strrchr(a, '@');
	CHECK(at && at > a);
	check_ldh(at + 1);
	for (const char *p = a; p < at; p++)
		CHECK(!(*p >= 'A' && *p <= 'Z'));
	char *b = route_ascii(a);
	CHECK(b && strcmp(a, b) == 0);
	free(b);
	free(a);
}

static void check_decision(const struct config *cfg, const struct route_decision *d,
                           const char *envelope_from, unsigned n_from)
{
	CHECK(d->route == ROUTE_DIRECT || d->route == ROUTE_SERVICE);
	if (d->route == ROUTE_SERVICE)
		CHECK(d->all_matched);
	if (n_from > 1 || !envelope_from || !*envelope_from)
		CHECK(!d->all_matched && d->route == ROUTE_DIRECT && !d->matched);
	if (d->all_matched) {
		CHECK(d->from && d->matched);
		CHECK(route_match(cfg, d->from) == d->matched);
		char *a = route_ascii(d->from);
		CHECK(a && route_entry_matches(d->matched, a));
		free(a);
	}
	if (d->matched)
		CHECK(d->matched >= cfg->routing.domains &&
		      d->matched < cfg->routing.domains + cfg->routing.ndomains);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	char *value = malloc(size + 1);
	CHECK(value);
	memcpy(value, data, size);
	value[size] = '\0';

	char **addrs = NULL;
	int n = route_header_addrs(value, size, &addrs);
	CHECK(n == -1 || n >= 1);
	if (n < 0) {
		CHECK(addrs == NULL);
	} else {
		CHECK(addrs);
		for (int i = 0; i < n; i++) {
			const char *a = addrs[i];
			CHECK(a);
			CHECK(g_utf8_validate(a, -1, NULL));
			CHECK(!has_ctl(a));
			const char *at = strrchr(a, '@');
			CHECK(at && at != a && at[1] != '\0');
			check_addr_ascii(a);
		}
	}
	/*
	 * A bare ASCII addr-spec compares as written: GMime's reading of it
	 * (which decodes A-labels to U-labels) converts back to the same
	 * form as the text itself (SPEC §4: compared in A-label form).
	 */
	if (n == 1 && size > 0 && !memchr(value, '\0', size) &&
	    strcspn(value, " \t\r\n()<>\",:;\\[]") == size) {
		bool ascii = true;
		for (size_t i = 0; i < size; i++)
			ascii &= data[i] > 0x20 && data[i] < 0x7f;
		if (ascii) {
			char *via = route_ascii(addrs[0]);
			char *direct = route_ascii(value);
			if (!via != !direct || (via && strcmp(via, direct) != 0))
				fprintf(stderr, "header {%s} read as {%s}: {%s} vs {%s}\n", value,
				        addrs[0], via ? via : "NULL", direct ? direct : "NULL");
			CHECK(!via == !direct);
			CHECK(!via || strcmp(via, direct) == 0);
			free(via);
			free(direct);
		}
	}
	route_addrs_free(addrs, n);

	bool nul = memchr(value, '\0', size) != NULL;
	if (!nul) {
		check_domain_ascii(value, size);
		check_addr_ascii(value);
	}

	/* The whole rule: the header decides, with an envelope sender that
	 * would match (so that a mismatch is the header's doing) ... */
	struct route_decision d;
	route_decide(&cfg_header, "shop@interfactory1.co.jp", value, size, 1, &d);
	check_decision(&cfg_header, &d, "shop@interfactory1.co.jp", 1);
	route_decision_free(&d);
	route_decide(&cfg_header, "shop@interfactory1.co.jp", value, size, 2, &d);
	check_decision(&cfg_header, &d, "shop@interfactory1.co.jp", 2);
	route_decision_free(&d);
	route_decide(&cfg_header, "", value, size, 1, &d);
	check_decision(&cfg_header, &d, "", 1);
	route_decision_free(&d);
	/* ... and the input as the envelope sender. */
	if (!nul) {
		route_decide(&cfg_envelope, value, NULL, 0, 0, &d);
		check_decision(&cfg_envelope, &d, value, 0);
		route_decision_free(&d);
	}

	free(value);
	return 0;
}
