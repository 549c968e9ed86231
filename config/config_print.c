/*
 * NAME
 *	config_print - the effective configuration written as INI
 * SUMMARY
 *	config_print() (config.h, hikyakuctl config) writes every key of the
 *	table in the order of SPEC §3, defaults included, then the
 *	[destination] sections. The text loads again and prints the same
 *	(fuzz/fuzz_config.c checks it): lists go on one line when they fit,
 *	verified_domains one entry per line, durations and sizes in their
 *	largest exact unit; a password in a PostgreSQL URI is shown as ***.
 * TOUCHES
 *	Writes to the stream given.
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/*
 * A list goes on the key line when it fits there, else one entry per
 * continuation line; verified_domains always one per line, the form the
 * administrators read (SPEC §8, hikyakuctl config).
 */
static void print_list(const struct config *cfg, enum key_id k, FILE *fp)
{
	char line[CONFIG_MAX_LINE + 1];
	char item[80];
	size_t n = 0;
	bool one_line = cfg_keys[k].type != T_DOMAINS;

	switch (cfg_keys[k].type) {
	case T_LISTEN: n = cfg->server.nlisten; break;
	case T_CIDRS: n = cfg->server.nallow; break;
	case T_DNS: n = cfg->direct.ndns_servers; break;
	case T_DOMAINS: n = cfg->routing.ndomains; break;
	default: break;
	}
	int len = snprintf(line, sizeof(line), "%s =", cfg_keys[k].name);
	for (size_t i = 0; i < n && one_line; i++) {
		const char *s = item;
		switch (cfg_keys[k].type) {
		case T_LISTEN: {
			const struct config_listen *l = &cfg->server.listen[i];
			snprintf(item, sizeof(item), strchr(l->host, ':') ? "[%s]:%u" : "%s:%u",
				 l->host, (unsigned)l->port);
			break;
		}
		case T_CIDRS: {
			const struct config_cidr *a = &cfg->server.allow[i];
			char h[INET6_ADDRSTRLEN] = "";
			inet_ntop(a->family, a->addr, h, sizeof(h));
			snprintf(item, sizeof(item), "%s/%u", h, a->prefix);
			break;
		}
		default:
			s = cfg->direct.dns_servers[i];
			break;
		}
		int m = snprintf(line + len, sizeof(line) - (size_t)len, "%s %s", i ? "," : "", s);
		if (m < 0 || (size_t)(len + m) >= sizeof(line))
			one_line = false;
		else
			len += m;
	}
	if (one_line) {
		fprintf(fp, "%s\n", line);
		return;
	}
	fprintf(fp, "%s =\n", cfg_keys[k].name);
	for (size_t i = 0; i < n; i++) {
		switch (cfg_keys[k].type) {
		case T_LISTEN: {
			const struct config_listen *l = &cfg->server.listen[i];
			fprintf(fp, strchr(l->host, ':') ? "    [%s]:%u\n" : "    %s:%u\n",
				l->host, (unsigned)l->port);
			break;
		}
		case T_CIDRS: {
			const struct config_cidr *a = &cfg->server.allow[i];
			char h[INET6_ADDRSTRLEN] = "";
			inet_ntop(a->family, a->addr, h, sizeof(h));
			fprintf(fp, "    %s/%u\n", h, a->prefix);
			break;
		}
		case T_DNS:
			fprintf(fp, "    %s\n", cfg->direct.dns_servers[i]);
			break;
		default: {
			/* An entry written on a continuation line of 199 bytes
			 * fits again only with a one-blank indent: the printed
			 * file must load (fuzz/regressions/config/). */
			const char *e = cfg->routing.domains[i].entry;
			int indent = strlen(e) + 4 <= CONFIG_MAX_LINE ? 4 : 1;
			fprintf(fp, "%*s%s\n", indent, "", e);
			break;
		}
		}
	}
}

void config_print(const struct config *cfg, FILE *fp)
{
	int sec = -1;
	char v[64];

	fprintf(fp, "; hikyaku: the effective configuration, defaults included\n");
	for (int k = 0; k < K_COUNT; k++) {
		const struct key_def *kd = &cfg_keys[k];
		const char *s = v;

		if ((int)kd->sec != sec) {
			sec = (int)kd->sec;
			fprintf(fp, "%s[%s]\n", k ? "\n" : "", cfg_section_names[sec]);
		}
		switch (kd->type) {
		case T_LISTEN:
		case T_CIDRS:
		case T_DNS:
		case T_DOMAINS:
			print_list(cfg, (enum key_id)k, fp);
			continue;
		case T_DKIM_KEYS:
			fprintf(fp, "keys =\n");
			for (size_t i = 0; i < cfg->dkim.nkeys; i++)
				fprintf(fp, "    %s %s %s\n", cfg->dkim.keys[i].domain,
					cfg->dkim.keys[i].selector, cfg->dkim.keys[i].file);
			continue;
		case T_HOSTNAME:
		case T_HOST:
		case T_STRING:
		case T_ADDRESS:
		case T_FILE:
		case T_PATH:
		case T_SOCKET:
			s = *CFIELD(cfg, k, char *);
			break;
		case T_UINT:
			snprintf(v, sizeof(v), "%u", *CFIELD(cfg, k, unsigned));
			break;
		case T_PORT:
			snprintf(v, sizeof(v), "%u", (unsigned)*CFIELD(cfg, k, uint16_t));
			break;
		case T_SIZE:
		case T_SIZE_CAP:
			cfg_format_size(*CFIELD(cfg, k, uint64_t), v, sizeof(v));
			break;
		case T_DURATION:
			cfg_format_duration(*CFIELD(cfg, k, uint64_t), v, sizeof(v));
			break;
		case T_DURATION_OFF:
			if (*CFIELD(cfg, k, uint64_t))
				cfg_format_duration(*CFIELD(cfg, k, uint64_t), v, sizeof(v));
			else
				snprintf(v, sizeof(v), "0");
			break;
		case T_RATE:
			snprintf(v, sizeof(v), "%u/%c", cfg->service.rate_count,
				 cfg->service.rate_period_s == 3600 ? 'h' :
				 cfg->service.rate_period_s == 60 ? 'm' : 's');
			break;
		case T_BOOL:
			s = *CFIELD(cfg, k, bool) ? "yes" : "no";
			break;
		case T_ENUM:
			s = kd->words[*CFIELD(cfg, k, int)];
			break;
		case T_HOSTPORT: {
			const struct config_hostport *hp = CFIELD(cfg, k, struct config_hostport);
			if (!hp->set)
				s = NULL;
			else
				snprintf(v, sizeof(v), strchr(hp->addr.host, ':') ? "[%s]:%u" : "%s:%u",
				         hp->addr.host, (unsigned)hp->addr.port);
			break;
		}
		}
		/* A password in a PostgreSQL URI is not shown (SPEC §6.6). */
		char shown[1024];
		if (k == K_SUP_DB && s && strstr(s, "://") && strlen(s) < sizeof(shown)) {
			const char *h = strstr(s, "://") + 3, *at = strchr(h, '@');
			const char *end = h + strcspn(h, "/?");
			const char *colon = at && at < end ? memchr(h, ':', (size_t)(at - h)) : NULL;
			const char *pw = strstr(s, "password=");
			if (colon)
				snprintf(shown, sizeof(shown), "%.*s:***%s", (int)(colon - s), s, at);
			else
				snprintf(shown, sizeof(shown), "%s", s);
			if (pw && strlen(shown) + 4 < sizeof(shown) && (pw = strstr(shown, "password="))) {
				size_t n = strcspn(pw + 9, "&");
				memmove((char *)pw + 12, pw + 9 + n, strlen(pw + 9 + n) + 1);
				memcpy((char *)pw + 9, "***", 3);
			}
			s = shown;
		}
		if (s && *s)
			fprintf(fp, "%s = %s\n", kd->name, s);
		else
			fprintf(fp, "%s =\n", kd->name);
	}
	cfg_dest_print(cfg, fp);
}
