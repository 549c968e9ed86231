/*
 * fuzz_dns_records - what "hikyakuctl domain check" reads from DNS:
 * answer messages (dnsq_parse() in relay/dnsquery.c, over c-ares's
 * parsers and our CNAME walker) and the records in them (relay/
 * dnscheck.c: SPF through libspf2 and the lookup counter, DMARC through
 * libopendmarc, DKIM key tag lists).
 *
 * The first byte chooses:
 *   even: the rest is an answer message, parsed for each record type;
 *         checked: a status in range, at most DNSQ_MAX_RECORDS records,
 *         each NUL-terminated, MX records "PREF HOST", no record for a
 *         non-OK status.
 *   odd:  the rest is a zone of TXT records, one a line, served for
 *         every name asked (so include: and redirect= loop back to it):
 *         the SPF, DMARC and DKIM checks run on it; checked: the walk
 *         ends, every row has a text and a result in range, the counts
 *         of fail and warn rows agree with the rows.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/dnscheck.h"
#include "relay/dnsquery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz/fuzz_check.h"

struct zone {
	char *lines[16];
	size_t n;
	unsigned asked;
};

static void zone_lookup(void *arg, const char *name, enum dnsq_type type, struct dnsq_answer *ans)
{
	struct zone *z = arg;
	(void)name;
	memset(ans, 0, sizeof(*ans));
	z->asked++;
	CHECK(z->asked < 1000);         /* the walk is bounded */
	if (type != DNSQ_TXT) {
		ans->status = type == DNSQ_MX ? DNSQ_NODATA : DNSQ_NXDOMAIN;
		return;
	}
	for (size_t i = 0; i < z->n; i++)
		ans->rec[ans->n++] = strdup(z->lines[i]);
	ans->status = ans->n ? DNSQ_OK : DNSQ_NODATA;
}

static void check_report(const struct dnscheck_report *r)
{
	unsigned f = 0, w = 0;
	for (size_t i = 0; i < r->n; i++) {
		CHECK(r->v[i].text && r->v[i].domain && r->v[i].check);
		CHECK(r->v[i].result <= DNSCHECK_FAIL);
		f += r->v[i].result == DNSCHECK_FAIL;
		w += r->v[i].result == DNSCHECK_WARN;
	}
	CHECK(f == r->nfail && w == r->nwarn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 70000)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	if ((data[0] & 1) == 0) {
		static const enum dnsq_type types[] = { DNSQ_A, DNSQ_AAAA, DNSQ_MX, DNSQ_TXT, DNSQ_CNAME };
		for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
			struct dnsq_answer a;
			dnsq_parse(p, n, types[t], &a);
			CHECK(a.status <= DNSQ_TEMPFAIL);
			CHECK(a.n <= DNSQ_MAX_RECORDS);
			CHECK(a.status == DNSQ_OK ? a.n > 0 : a.n == 0);
			for (size_t i = 0; i < a.n; i++) {
				CHECK(a.rec[i] != NULL);
				if (types[t] == DNSQ_MX) {
					unsigned pref;
					char host[300];
					CHECK(sscanf(a.rec[i], "%u %299s", &pref, host) == 2);
				}
			}
			CHECK(memchr(a.error, '\0', sizeof(a.error)) != NULL);
			dnsq_answer_free(&a);
		}
		return 0;
	}

	/* A zone of TXT lines; NUL bytes end a line (DNS text may hold them,
	 * our records are C strings: c-ares cuts them the same way). */
	char *text = malloc(n + 1);
	if (!text)
		return 0;
	memcpy(text, p, n);
	text[n] = '\0';
	struct zone z = { .n = 0 };
	char *save = NULL;
	for (char *l = strtok_r(text, "\n", &save); l && z.n < 16; l = strtok_r(NULL, "\n", &save))
		z.lines[z.n++] = l;
	struct dnscheck c = { zone_lookup, &z };
	struct dnscheck_report r = { 0 };
	dnscheck_spf(&c, "f.test", "spf", &r);
	z.asked = 0;
	dnscheck_dmarc(&c, "a.b.f.test", &r);
	z.asked = 0;
	dnscheck_dkim(&c, "f.test", "s1", "rsa", "MIIB", &r);
	check_report(&r);
	dnscheck_report_free(&r);
	for (size_t i = 0; i < z.n; i++) {
		static const char *const tags[] = { "v", "k", "p", "t" };
		for (size_t t = 0; t < 4; t++) {
			char *v = dnscheck_tag(z.lines[i], tags[t]);
			if (v)
				CHECK(strlen(v) <= strlen(z.lines[i]));
			free(v);
		}
		unsigned lookups;
		char all, why[512];
		z.asked = 0;
		(void)dnscheck_spf_walk(&c, "f.test", z.lines[i], &lookups, &all, why, sizeof(why));
		CHECK(memchr(why, '\0', sizeof(why)) != NULL);
	}
	free(text);
	return 0;
}
