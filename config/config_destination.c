/*
 * NAME
 *	config_destination - [destination NAME] sections (SPEC §3, §5)
 * SUMMARY
 *	A delivery policy shared by some recipient domains of the direct
 *	route: its own keys (domains, max_connections,
 *	max_recipients_per_message, rate, pause), with defaults, read when
 *	the section header is met (cfg_dest_begin, cfg_dest_key). After the
 *	file: every policy has domains and no domain is covered by two
 *	(cfg_dest_check). config_destination_for() (config.h) finds the
 *	policy of a domain; cfg_dest_print() writes the sections back.
 * TOUCHES
 *	The struct config being loaded or printed.
 */
#include "config/config_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const dest_key_names[DK_COUNT] = {
	"domains", "max_connections", "max_recipients_per_message", "rate", "pause",
};

/* DOMAIN (A-label, lowercase) is ENTRY or a subdomain of it on a dot boundary. */
static bool domain_covers(const char *entry, const char *domain)
{
	size_t e = strlen(entry), d = strlen(domain);

	if (d == e)
		return strcmp(entry, domain) == 0;
	return d > e && domain[d - e - 1] == '.' && strcmp(domain + d - e, entry) == 0;
}

void cfg_dest_begin(struct load_ctx *c, int line, const char *rest)
{
	struct config *cfg = c->cfg;
	char name[CONFIG_MAX_LINE + 1];

	while (*rest == ' ' || *rest == '\t')
		rest++;
	snprintf(name, sizeof(name), "%s", rest);
	cfg_trim(name);
	bool valid = name[0] != '\0' && strlen(name) <= 64;
	for (const char *p = name; *p && valid; p++)
		valid = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.';
	if (!valid) {
		ERR(c, line, "[destination%s%s]: a policy needs a NAME of letters, digits, "
		    "'-', '_' or '.' (at most 64), e.g. [destination docomo]", *name ? " " : "", name);
		return; /* c->section stays S_BAD: its keys are skipped */
	}
	for (size_t i = 0; i < cfg->ndestinations; i++)
		if (strcmp(cfg->destinations[i].name, name) == 0) {
			ERR(c, line, "[destination %s] is defined twice (first on line %d)", name,
			    cfg->destinations[i].line);
			return;
		}
	char *copy = strdup(name);
	struct config_destination *v = copy ? cfg_grow(c, cfg->destinations, cfg->ndestinations,
						   sizeof(*v)) : NULL;
	if (!v) {
		c->oom = true;
		free(copy);
		return;
	}
	cfg->destinations = v;
	v[cfg->ndestinations++] = (struct config_destination){
		.name = copy,
		.line = line,
		.max_connections = 2,
		.max_recipients_per_message = 100,
		.pause_ms = MIN(10),
	};
	memset(c->dest_key_line, 0, sizeof(c->dest_key_line));
	c->dest_cur_key = -1;
	c->section = S_DESTINATION;
}

static void dest_add_domains(struct load_ctx *c, struct config_destination *d, const char *value,
			     int line)
{
	char *copy = strdup(value);
	char *save = NULL;

	if (!copy) {
		c->oom = true;
		return;
	}
	for (char *e = strtok_r(copy, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
		e = cfg_trim(e);
		if (*e == '\0')
			continue;
		char *ascii = strchr(e, '@') ? NULL : config_domain_ascii(e, strlen(e));
		if (!ascii) {
			ERR(c, line, "[destination %s] domains: \"%s\" is not a valid domain", d->name, e);
			continue;
		}
		bool dup = false;
		for (size_t i = 0; i < d->ndomains && !dup; i++)
			if (strcmp(d->domains[i].ascii, ascii) == 0) {
				WARN(c, line, "[destination %s] domains: \"%s\" is listed twice "
				     "(first on line %d)", d->name, e, d->domains[i].line);
				dup = true;
			}
		char *entry = dup ? NULL : strdup(e);
		struct config_domain *v = entry ? cfg_grow(c, d->domains, d->ndomains, sizeof(*v)) : NULL;
		if (!v) {
			c->oom |= !dup;
			free(entry);
			free(ascii);
			continue;
		}
		d->domains = v;
		v[d->ndomains++] = (struct config_domain){ entry, ascii, false, line };
	}
	free(copy);
}

void cfg_dest_key(struct load_ctx *c, const char *name, const char *value, int line,
		     bool continuation)
{
	struct config_destination *d = &c->cfg->destinations[c->cfg->ndestinations - 1];
	uint64_t u;

	if (continuation) {
		if (c->dest_cur_key == DK_DOMAINS)
			dest_add_domains(c, d, value, line);
		else if (c->dest_cur_key >= 0)
			ERR(c, line, "%s: takes one value; only lists continue on indented lines",
			    dest_key_names[c->dest_cur_key]);
		c->dest_cur_key = c->dest_cur_key == DK_DOMAINS ? DK_DOMAINS : -1;
		return;
	}
	c->dest_cur_key = -1;
	int k;
	for (k = 0; k < DK_COUNT; k++)
		if (strcmp(dest_key_names[k], name) == 0)
			break;
	if (k == DK_COUNT) {
		ERR(c, line, "unknown key \"%s\" in [destination %s] (it takes domains, "
		    "max_connections, max_recipients_per_message, rate and pause)", name, d->name);
		return;
	}
	if (c->dest_key_line[k]) {
		ERR(c, line, "%s: set twice in [destination %s] (first on line %d)", name, d->name,
		    c->dest_key_line[k]);
		return;
	}
	c->dest_key_line[k] = line;
	c->dest_cur_key = k;
	switch ((enum dest_key)k) {
	case DK_DOMAINS:
		dest_add_domains(c, d, value, line);
		break;
	case DK_MAXCONN:
	case DK_MAXRCPT:
		if (cfg_parse_uint(value, &u) < 0 || u < 1 || u > COUNT_MAX)
			ERR(c, line, "%s: \"%s\" is not a number from 1 to %u", name, value, COUNT_MAX);
		else if (k == DK_MAXCONN)
			d->max_connections = (unsigned)u;
		else
			d->max_recipients_per_message = (unsigned)u;
		break;
	case DK_RATE: {
		unsigned n, per;
		if (*value == '\0') {
			d->rate_count = 0;
		} else if (config_parse_rate(value, &n, &per) < 0 || n > COUNT_MAX) {
			ERR(c, line, "%s: \"%s\" is not a rate (N/s, N/m or N/h, N at least 1; "
			    "empty for no limit)", name, value);
		} else {
			d->rate_count = n;
			d->rate_period_s = per;
			d->rate_per_sec = (double)n / per;
		}
		break;
	}
	case DK_PAUSE:
		if (config_parse_duration(value, &u) < 0 || u == 0)
			ERR(c, line, "%s: \"%s\" is not a duration (a number with s, m, h or d)",
			    name, value);
		else
			d->pause_ms = u;
		break;
	case DK_COUNT:
		break;
	}
}

/* Every policy has domains; no domain is covered by two policies. */
void cfg_dest_check(struct load_ctx *c)
{
	const struct config *cfg = c->cfg;

	for (size_t i = 0; i < cfg->ndestinations; i++) {
		const struct config_destination *a = &cfg->destinations[i];
		if (a->ndomains == 0)
			ERR(c, a->line, "[destination %s] has no domains: a policy needs at least one",
			    a->name);
		for (size_t j = i + 1; j < cfg->ndestinations; j++) {
			const struct config_destination *b = &cfg->destinations[j];
			for (size_t x = 0; x < a->ndomains; x++)
				for (size_t y = 0; y < b->ndomains; y++) {
					const struct config_domain *da = &a->domains[x], *db = &b->domains[y];
					if (domain_covers(da->ascii, db->ascii) ||
					    domain_covers(db->ascii, da->ascii))
						ERR(c, db->line, "[destination %s] domains: \"%s\" is also "
						    "covered by [destination %s] (\"%s\", line %d); a domain "
						    "belongs to one policy", b->name, db->entry, a->name,
						    da->entry, da->line);
				}
		}
	}
}

const struct config_destination *config_destination_for(const struct config *cfg,
                                                        const char *domain)
{
	for (size_t i = 0; i < cfg->ndestinations; i++)
		for (size_t j = 0; j < cfg->destinations[i].ndomains; j++)
			if (domain_covers(cfg->destinations[i].domains[j].ascii, domain))
				return &cfg->destinations[i];
	return NULL;
}

/* The sections, after the keys of the table (config_print). */
void cfg_dest_print(const struct config *cfg, FILE *fp)
{
	char v[64];

	for (size_t i = 0; i < cfg->ndestinations; i++) {
		const struct config_destination *d = &cfg->destinations[i];
		fprintf(fp, "\n[destination %s]\n%s =\n", d->name, dest_key_names[DK_DOMAINS]);
		for (size_t j = 0; j < d->ndomains; j++)
			fprintf(fp, "    %s\n", d->domains[j].entry);
		fprintf(fp, "%s = %u\n", dest_key_names[DK_MAXCONN], d->max_connections);
		fprintf(fp, "%s = %u\n", dest_key_names[DK_MAXRCPT], d->max_recipients_per_message);
		if (d->rate_count)
			fprintf(fp, "%s = %u/%c\n", dest_key_names[DK_RATE], d->rate_count,
				d->rate_period_s == 3600 ? 'h' : d->rate_period_s == 60 ? 'm' : 's');
		else
			fprintf(fp, "%s =\n", dest_key_names[DK_RATE]);
		cfg_format_duration(d->pause_ms, v, sizeof(v));
		fprintf(fp, "%s = %s\n", dest_key_names[DK_PAUSE], v);
	}
}

void cfg_dest_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->ndestinations; i++) {
		struct config_destination *d = &cfg->destinations[i];
		for (size_t j = 0; j < d->ndomains; j++) {
			free(d->domains[j].entry);
			free(d->domains[j].ascii);
		}
		free(d->domains);
		free(d->name);
	}
	free(cfg->destinations);
	cfg->destinations = NULL;
	cfg->ndestinations = 0;
}
