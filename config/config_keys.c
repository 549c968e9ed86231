/*
 * NAME
 *	config_keys - a key's value set into struct config (SPEC §3)
 * SUMMARY
 *	cfg_set_value() parses the value of one key of the table
 *	(config_int.h) by its type and stores it in its field, or reports
 *	why not as a FILE:LINE diagnostic naming the key. Lists (listen,
 *	allow_networks, dns_servers, verified_domains, [dkim] keys) take
 *	comma-separated entries on the key's line and on its continuation
 *	lines (cfg_list_add); a list in the file replaces the default one.
 *	Paths are made absolute against the file's directory; a file that
 *	must be readable is opened now; [suppression] db may be a PostgreSQL
 *	URI, checked with libpq.
 * TOUCHES
 *	The struct config being loaded; open() of the files that must be
 *	readable (config_value.c); the [dkim] key files (config_dkim.c).
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

/* ------------------------------------------------------------------ */
/* Lists                                                              */
/* ------------------------------------------------------------------ */

void *cfg_grow(struct load_ctx *c, void *v, size_t n, size_t size)
{
	void *p = realloc(v, (n + 1) * size);

	if (!p)
		c->oom = true;
	return p;
}

static void add_listen(struct load_ctx *c, const char *e, int line)
{
	struct config *cfg = c->cfg;
	struct config_listen l;
	int fam;

	if (cfg_hostport_parse(e, l.host, &fam, &l.port, 0) < 0) {
		ERR(c, line, "listen: \"%s\" is not an IP address and port "
		    "(host:port, [IPv6]:port)", e);
		return;
	}
	for (size_t i = 0; i < cfg->server.nlisten; i++) {
		const struct config_listen *o = &cfg->server.listen[i];
		if (o->port == l.port && strcmp(o->host, l.host) == 0) {
			ERR(c, line, "listen: \"%s\" is listed twice", e);
			return;
		}
	}
	struct config_listen *v = cfg_grow(c, cfg->server.listen, cfg->server.nlisten, sizeof(*v));
	if (!v)
		return;
	cfg->server.listen = v;
	v[cfg->server.nlisten++] = l;
}

static void add_cidr(struct load_ctx *c, const char *e, int line)
{
	struct config *cfg = c->cfg;
	struct config_cidr n;
	bool host_bits;

	if (cfg_cidr_parse(e, &n, &host_bits) < 0) {
		ERR(c, line, "allow_networks: \"%s\" is not a network (address/prefix)", e);
		return;
	}
	if (host_bits) {
		char a[INET6_ADDRSTRLEN];
		inet_ntop(n.family, n.addr, a, sizeof(a));
		WARN(c, line, "allow_networks: \"%s\" has host bits set; using %s/%u",
		     e, a, n.prefix);
	}
	struct config_cidr *v = cfg_grow(c, cfg->server.allow, cfg->server.nallow, sizeof(*v));
	if (!v)
		return;
	cfg->server.allow = v;
	v[cfg->server.nallow++] = n;
}

static void add_dns(struct load_ctx *c, const char *e, int line)
{
	struct config *cfg = c->cfg;
	char host[64], *s = NULL;
	uint16_t port;
	int fam;

	if (cfg_hostport_parse(e, host, &fam, &port, 53) < 0) {
		ERR(c, line, "dns_servers: \"%s\" is not an IP address with an optional port "
		    "(ip, ip:port, [IPv6]:port)", e);
		return;
	}
	if (asprintf(&s, fam == AF_INET6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port) < 0) {
		c->oom = true;
		return;
	}
	char **v = cfg_grow(c, cfg->direct.dns_servers, cfg->direct.ndns_servers, sizeof(*v));
	if (!v) {
		free(s);
		return;
	}
	cfg->direct.dns_servers = v;
	v[cfg->direct.ndns_servers++] = s;
}

static void add_domain(struct load_ctx *c, const char *e, int line)
{
	struct config *cfg = c->cfg;
	bool is_address = strchr(e, '@') != NULL;
	char *ascii = NULL;

	/*
	 * "#shop@example.jp" is an address, but on a line of its own (the
	 * list form, and what config_print() writes) it is a comment: the
	 * entry would vanish when the file is rewritten. Refused wherever
	 * it is written (fuzz/regressions/config/).
	 */
	if (e[0] == '#') {
		ERR(c, line, "verified_domains: \"%s\" starts with \"#\", which begins a comment "
		    "on a line of its own", e);
		return;
	}
	ascii = is_address ? cfg_address_ascii(e) : config_domain_ascii(e, strlen(e));
	if (!ascii) {
		ERR(c, line, "verified_domains: \"%s\" is not a %s", e,
		    is_address ? "valid address (local@domain)" : "valid domain");
		return;
	}
	for (size_t i = 0; i < cfg->routing.ndomains; i++)
		if (strcmp(cfg->routing.domains[i].ascii, ascii) == 0) {
			WARN(c, line, "verified_domains: \"%s\" is listed twice (first on line %d)",
			     e, cfg->routing.domains[i].line);
			free(ascii);
			return;
		}
	char *entry = strdup(e);
	struct config_domain *v = NULL;
	if (entry)
		v = cfg_grow(c, cfg->routing.domains, cfg->routing.ndomains, sizeof(*v));
	if (!v) {
		c->oom = true;
		free(entry);
		free(ascii);
		return;
	}
	cfg->routing.domains = v;
	v[cfg->routing.ndomains++] = (struct config_domain){ entry, ascii, is_address, line };
}

void cfg_list_add(struct load_ctx *c, enum key_id k, const char *value, int line)
{
	char *copy = strdup(value);

	if (!copy) {
		c->oom = true;
		return;
	}
	if (cfg_keys[k].type == T_DKIM_KEYS) {
		/* One entry a line: a file name may hold a comma. */
		char *e = cfg_trim(copy);
		if (*e)
			cfg_dkim_key_add(c, e, line);
		free(copy);
		return;
	}
	/* Entries are separated by commas here and by new lines by libinih. */
	char *save = NULL;
	for (char *e = strtok_r(copy, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
		e = cfg_trim(e);
		if (*e == '\0')
			continue;
		switch (cfg_keys[k].type) {
		case T_LISTEN: add_listen(c, e, line); break;
		case T_CIDRS: add_cidr(c, e, line); break;
		case T_DNS: add_dns(c, e, line); break;
		case T_DOMAINS: add_domain(c, e, line); break;
		default: break;
		}
	}
	free(copy);
}

void cfg_list_clear(struct config *cfg, enum key_id k)
{
	switch (cfg_keys[k].type) {
	case T_LISTEN:
		free(cfg->server.listen);
		cfg->server.listen = NULL;
		cfg->server.nlisten = 0;
		break;
	case T_CIDRS:
		free(cfg->server.allow);
		cfg->server.allow = NULL;
		cfg->server.nallow = 0;
		break;
	case T_DNS:
		for (size_t i = 0; i < cfg->direct.ndns_servers; i++)
			free(cfg->direct.dns_servers[i]);
		free(cfg->direct.dns_servers);
		cfg->direct.dns_servers = NULL;
		cfg->direct.ndns_servers = 0;
		break;
	case T_DOMAINS:
		for (size_t i = 0; i < cfg->routing.ndomains; i++) {
			free(cfg->routing.domains[i].entry);
			free(cfg->routing.domains[i].ascii);
		}
		free(cfg->routing.domains);
		cfg->routing.domains = NULL;
		cfg->routing.ndomains = 0;
		break;
	case T_DKIM_KEYS:
		cfg_dkim_keys_clear(cfg);
		break;
	default:
		break;
	}
}

bool cfg_is_list(enum ktype t)
{
	return t == T_LISTEN || t == T_CIDRS || t == T_DNS || t == T_DOMAINS ||
	       t == T_DKIM_KEYS;
}

/* ------------------------------------------------------------------ */
/* Scalar values                                                      */
/* ------------------------------------------------------------------ */

static void set_string(struct load_ctx *c, enum key_id k, char *s)
{
	char **field = FIELD(c->cfg, k, char *);

	free(*field);
	*field = s;
}

static void set_path(struct load_ctx *c, enum key_id k, const char *v, int line)
{
	const struct key_def *kd = &cfg_keys[k];

	if (*v == '\0') {
		if (kd->type == T_FILE)
			set_string(c, k, NULL);
		else
			ERR(c, line, "%s: a path is needed", kd->name);
		return;
	}
	char *p;

	/* [suppression] db may be a PostgreSQL URI (SPEC §3, §6.6): kept as
	 * written; libpq reads the password from passfile / ~/.pgpass. */
	if (k == K_SUP_DB && (strncmp(v, "postgresql://", 13) == 0 ||
	                      strncmp(v, "postgres://", 11) == 0)) {
		const char *h = strstr(v, "://") + 3;
		char *perr = NULL;
		PQconninfoOption *opts = *h ? PQconninfoParse(v, &perr) : NULL;
		if (opts)
			PQconninfoFree(opts);
		if (!opts || strchr(v, ' ') || strchr(v, '\t')) {
			/* libpq's reason, without its newline; not when it might quote a
			 * password (user:password@ or password=). */
			const char *at = strchr(h, '@');
			if (perr && (strstr(v, "password") || (at && memchr(h, ':', (size_t)(at - h)))))
				perr[0] = '\0';
			if (perr && *perr && perr[strlen(perr) - 1] == '\n')
				perr[strlen(perr) - 1] = '\0';
			ERR(c, line, "%s: not a PostgreSQL URI (postgresql://[user@]host[:port]/dbname"
			    "[?param=value&...])%s%s", kd->name, perr && *perr ? ": " : "",
			    perr ? perr : "");
		} else if (!(p = strdup(v)))
			c->oom = true;
		else
			set_string(c, k, p);
		PQfreemem(perr);
		return;
	}
	p = cfg_path_resolve(c->cfg->dir, v);
	if (!p) {
		c->oom = true;
		return;
	}
	if (kd->type == T_SOCKET && strlen(p) > CONFIG_SOCKET_MAX) {
		ERR(c, line, "%s: \"%s\" is %zu bytes long; a socket path has at most %d",
		    kd->name, p, strlen(p), CONFIG_SOCKET_MAX);
		free(p);
		return;
	}
	if (kd->type == T_FILE) {
		int err = cfg_file_readable(p);
		if (err) {
			ERR(c, line, "%s: cannot read \"%s\": %s", kd->name, p, strerror(err));
			free(p);
			return;
		}
	}
	set_string(c, k, p);
}

static void set_enum(struct load_ctx *c, enum key_id k, const char *v, int line)
{
	const char *const *w = cfg_keys[k].words;
	char list[128] = "";

	for (int i = 0; w[i]; i++)
		if (strcasecmp(v, w[i]) == 0) {
			*FIELD(c->cfg, k, int) = i;
			return;
		}
	for (int i = 0; w[i]; i++) {
		if (i)
			strncat(list, w[i + 1] ? ", " : " or ", sizeof(list) - strlen(list) - 1);
		strncat(list, w[i], sizeof(list) - strlen(list) - 1);
	}
	ERR(c, line, "%s: \"%s\" is not %s", cfg_keys[k].name, v, list);
}

/* [metrics] listen: one address, never a list; empty turns it off. */
static void set_hostport(struct load_ctx *c, enum key_id k, const char *v, int line)
{
	struct config_hostport *hp = FIELD(c->cfg, k, struct config_hostport);
	int fam;

	memset(hp, 0, sizeof(*hp));
	if (*v == '\0')
		return;
	if (strchr(v, ',') || cfg_hostport_parse(v, hp->addr.host, &fam, &hp->addr.port, 0) < 0) {
		ERR(c, line, "%s: \"%s\" is not one IP address and port (host:port, [IPv6]:port)",
		    cfg_keys[k].name, v);
		return;
	}
	hp->set = true;
}

void cfg_set_value(struct load_ctx *c, enum key_id k, const char *v, int line)
{
	const struct key_def *kd = &cfg_keys[k];
	struct config *cfg = c->cfg;
	uint64_t u;

	switch (kd->type) {
	case T_LISTEN:
	case T_CIDRS:
	case T_DNS:
	case T_DOMAINS:
	case T_DKIM_KEYS:
		/* The file's value replaces the default list, it does not add to it. */
		cfg_list_clear(cfg, k);
		cfg_list_add(c, k, v, line);
		break;
	case T_HOSTNAME: {
		if (*v == '\0')
			break;  /* empty: the default, the FQDN */
		char *a = config_domain_ascii(v, strlen(v));
		if (!a) {
			ERR(c, line, "%s: \"%s\" is not a valid host name", kd->name, v);
			break;
		}
		set_string(c, k, a);
		break;
	}
	case T_HOST: {
		uint8_t bin[16];
		char h[64];
		size_t n = strlen(v);
		if (n == 0) {
			set_string(c, k, NULL);
			break;
		}
		if (v[0] == '[' && v[n - 1] == ']' && n - 2 < sizeof(h)) {
			memcpy(h, v + 1, n - 2);
			h[n - 2] = '\0';
			if (inet_pton(AF_INET6, h, bin) == 1) {
				set_string(c, k, strdup(h));
				break;
			}
		} else if (inet_pton(AF_INET, v, bin) == 1 || inet_pton(AF_INET6, v, bin) == 1) {
			set_string(c, k, strdup(v));
			break;
		}
		char *a = config_domain_ascii(v, strlen(v));
		if (!a) {
			ERR(c, line, "%s: \"%s\" is not a host name or an IP address", kd->name, v);
			break;
		}
		set_string(c, k, a);
		break;
	}
	case T_STRING:
		set_string(c, k, *v ? strdup(v) : NULL);
		break;
	case T_ADDRESS: {
		if (*v == '\0') {
			set_string(c, k, NULL);
			break;
		}
		char *a = cfg_address_ascii(v);
		if (!a) {
			ERR(c, line, "%s: \"%s\" is not an address (local@domain)", kd->name, v);
			break;
		}
		free(a);
		set_string(c, k, strdup(v));
		break;
	}
	case T_UINT:
		if (cfg_parse_uint(v, &u) < 0) {
			ERR(c, line, "%s: \"%s\" is not a number", kd->name, v);
		} else if (u < 1 || u > COUNT_MAX) {
			ERR(c, line, "%s: %s is out of range (1 to %u)", kd->name, v, COUNT_MAX);
		} else {
			*FIELD(cfg, k, unsigned) = (unsigned)u;
		}
		break;
	case T_PORT:
		if (cfg_parse_port(v, FIELD(cfg, k, uint16_t)) < 0)
			ERR(c, line, "%s: \"%s\" is not a port (1 to 65535)", kd->name, v);
		break;
	case T_SIZE:
		if (config_parse_size(v, &u) < 0)
			ERR(c, line, "%s: \"%s\" is not a size (bytes, or a number with K, M or G)",
			    kd->name, v);
		else if (u == 0)
			ERR(c, line, "%s: must be greater than zero", kd->name);
		/* A mail is received into the spool, not into memory, but a
		 * bound keeps one client's mail from filling the disk and every
		 * size far from any 32-bit truncation (issue 11). */
		else if (k == K_MAXSIZE && u > CONFIG_MESSAGE_SIZE_MAX)
			ERR(c, line, "%s: \"%s\" is over the largest supported size (1G)", kd->name, v);
		else
			*FIELD(cfg, k, uint64_t) = u;
		break;
	case T_SIZE_CAP:
		if (!*v || strcmp(v, "0") == 0)
			*FIELD(cfg, k, uint64_t) = 0;
		else if (config_parse_size(v, &u) < 0)
			ERR(c, line, "%s: \"%s\" is not a size (bytes, or a number with K, M or G; "
			    "0 for no limit)", kd->name, v);
		else
			*FIELD(cfg, k, uint64_t) = u;
		break;
	case T_DURATION_OFF:
		if (strcmp(v, "0") == 0)
			*FIELD(cfg, k, uint64_t) = 0;
		else if (config_parse_duration(v, &u) < 0)
			ERR(c, line, "%s: \"%s\" is not a duration (a number with s, m, h or d; "
			    "0 for off)", kd->name, v);
		else
			*FIELD(cfg, k, uint64_t) = u;
		break;
	case T_DURATION:
		if (config_parse_duration(v, &u) < 0)
			ERR(c, line, "%s: \"%s\" is not a duration (a number with s, m, h or d)",
			    kd->name, v);
		else if (u == 0)
			ERR(c, line, "%s: must be greater than zero", kd->name);
		else
			*FIELD(cfg, k, uint64_t) = u;
		break;
	case T_RATE: {
		unsigned n, p;
		if (config_parse_rate(v, &n, &p) < 0 || n > COUNT_MAX) {
			ERR(c, line, "%s: \"%s\" is not a rate (N/s, N/m or N/h, N at least 1)",
			    kd->name, v);
			break;
		}
		cfg->service.rate_count = n;
		cfg->service.rate_period_s = p;
		cfg->service.rate_per_sec = (double)n / p;
		break;
	}
	case T_BOOL:
		if (strcasecmp(v, "yes") == 0)
			*FIELD(cfg, k, bool) = true;
		else if (strcasecmp(v, "no") == 0)
			*FIELD(cfg, k, bool) = false;
		else
			ERR(c, line, "%s: \"%s\" is not yes or no", kd->name, v);
		break;
	case T_ENUM:
		set_enum(c, k, v, line);
		break;
	case T_FILE:
	case T_PATH:
	case T_SOCKET:
		set_path(c, k, v, line);
		break;
	case T_HOSTPORT:
		set_hostport(c, k, v, line);
		break;
	}
}
