/*
 * NAME
 *	config - hikyaku's configuration file (SPEC §3). See config.h.
 * SUMMARY
 *	libinih splits the file into (section, key, value) calls; our own
 *	line reader (ini_reader.c) decides which lines libinih sees and
 *	tells us the line number and whether a value is a continuation. One
 *	table lists every key with its section, type and field; loading,
 *	validation and printing are driven by it, so a key cannot be parsed
 *	and then forgotten by config_print().
 *
 *	This file holds the table, the loading (libinih callbacks, the
 *	diagnostics), the defaults and the checks across keys, and the life
 *	cycle of a struct config; the other jobs are in the files that
 *	config_int.h lists.
 * DESCRIPTION
 *	Diagnostics are collected with their line numbers while parsing and
 *	sorted by line at the end, so that --check lists them in file order
 *	whatever pass found them (syntax, value, contradiction).
 * DIAGNOSTICS
 *	See config.h.
 * TOUCHES
 *	Reads the configuration file (and, through config_keys.c and
 *	config_dkim.c, the files it names); gethostname() and getaddrinfo()
 *	for the default host name.
 */
#include "config/config_int.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * libinih hands our reader a buffer of INI_MAX_LINE bytes; the line
 * limit of SPEC §3 is what fits in it with its NUL. Debian's libinih
 * 55 is built with the default of 200.
 */
_Static_assert(INI_MAX_LINE - 1 == CONFIG_MAX_LINE, "INI_MAX_LINE does not match CONFIG_MAX_LINE");

#define DEFAULT_PATH "/etc/hikyaku/hikyaku.conf"

/* ------------------------------------------------------------------ */
/* The key table                                                       */
/* ------------------------------------------------------------------ */

const char *const cfg_section_names[S_COUNT] = {
	"server", "routing", "service", "direct", "queue", "suppression", "log", "control",
	"dkim",
	"metrics",
};

static const char *const words_bare_lf[] = { "normalize", "reject", NULL };
static const char *const words_match_on[] = { "header_from", "envelope_from", NULL };
static const char *const words_svc_tls[] = { "starttls", "smtps", "none", NULL };
static const char *const words_dir_tls[] = { "may", "encrypt", "verify", "none", NULL };
static const char *const words_dir_internal[] = { "private", "public", "any", NULL };
static const char *const words_apply_to[] = { "service", "all", NULL };
static const char *const words_dkim_sign[] = { "direct", "all", "none", NULL };

#define F(member) offsetof(struct config, member)

/* In the order of SPEC §3, which is also the order config_print() uses. */
const struct key_def cfg_keys[K_COUNT] = {
	[K_LISTEN]        = { S_SERVER, "listen", T_LISTEN, 0, NULL },
	[K_HOSTNAME]      = { S_SERVER, "hostname", T_HOSTNAME, F(server.hostname), NULL },
	[K_ALLOW]         = { S_SERVER, "allow_networks", T_CIDRS, 0, NULL },
	[K_MAXCONN]       = { S_SERVER, "max_connections", T_UINT, F(server.max_connections), NULL },
	[K_MAXCONN_CLIENT] = { S_SERVER, "max_connections_per_client", T_UINT,
			       F(server.max_connections_per_client), NULL },
	[K_OUTSIDE_CONN]  = { S_SERVER, "outside_connections", T_UINT,
			       F(server.outside_connections), NULL },
	[K_MAXSIZE]       = { S_SERVER, "max_message_size", T_SIZE, F(server.max_message_size), NULL },
	[K_MAXRCPT]       = { S_SERVER, "max_recipients", T_UINT, F(server.max_recipients), NULL },
	[K_IDLE]          = { S_SERVER, "idle_timeout", T_DURATION, F(server.idle_timeout_ms), NULL },
	[K_TLS_CERT]      = { S_SERVER, "tls_cert", T_FILE, F(server.tls_cert), NULL },
	[K_TLS_KEY]       = { S_SERVER, "tls_key", T_FILE, F(server.tls_key), NULL },
	[K_BARE_LF]       = { S_SERVER, "bare_lf", T_ENUM, F(server.bare_lf), words_bare_lf },
	[K_AUTH_FILE]     = { S_SERVER, "auth_file", T_FILE, F(server.auth_file), NULL },

	[K_DOMAINS]       = { S_ROUTING, "verified_domains", T_DOMAINS, 0, NULL },
	[K_MATCH_ON]      = { S_ROUTING, "match_on", T_ENUM, F(routing.match_on), words_match_on },

	[K_SVC_HOST]      = { S_SERVICE, "host", T_HOST, F(service.host), NULL },
	[K_SVC_PORT]      = { S_SERVICE, "port", T_PORT, F(service.port), NULL },
	[K_SVC_TLS]       = { S_SERVICE, "tls", T_ENUM, F(service.tls), words_svc_tls },
	[K_SVC_CA]        = { S_SERVICE, "ca_file", T_FILE, F(service.ca_file), NULL },
	[K_SVC_USER]      = { S_SERVICE, "username", T_STRING, F(service.username), NULL },
	[K_SVC_PASSWORD]  = { S_SERVICE, "password_file", T_FILE, F(service.password_file), NULL },
	[K_SVC_MAXCONN]   = { S_SERVICE, "max_connections", T_UINT, F(service.max_connections), NULL },
	[K_SVC_RATE]      = { S_SERVICE, "rate", T_RATE, 0, NULL },
	[K_SVC_MAXRCPT]   = { S_SERVICE, "max_recipients_per_message", T_UINT,
			      F(service.max_recipients_per_message), NULL },
	[K_SVC_PAUSE]     = { S_SERVICE, "pause", T_DURATION, F(service.pause_ms), NULL },
	[K_SVC_CONNECT]   = { S_SERVICE, "connect_timeout", T_DURATION, F(service.connect_timeout_ms), NULL },
	[K_SVC_TIMEOUT]   = { S_SERVICE, "timeout", T_DURATION, F(service.timeout_ms), NULL },
	[K_SVC_FROM]      = { S_SERVICE, "envelope_from", T_ADDRESS, F(service.envelope_from), NULL },
	[K_SVC_VERP]      = { S_SERVICE, "verp", T_BOOL, F(service.verp), NULL },

	[K_DIR_TLS]       = { S_DIRECT, "tls", T_ENUM, F(direct.tls), words_dir_tls },
	[K_DIR_PORT]      = { S_DIRECT, "port", T_PORT, F(direct.port), NULL },
	[K_DIR_DNS]       = { S_DIRECT, "dns_servers", T_DNS, 0, NULL },
	[K_DIR_MAXCONN]   = { S_DIRECT, "max_connections_per_domain", T_UINT,
			      F(direct.max_connections_per_domain), NULL },
	[K_DIR_INTERNAL]  = { S_DIRECT, "internal_destinations", T_ENUM,
			      F(direct.internal_destinations), words_dir_internal },
	[K_DIR_CONNECT]   = { S_DIRECT, "connect_timeout", T_DURATION, F(direct.connect_timeout_ms), NULL },
	[K_DIR_TIMEOUT]   = { S_DIRECT, "timeout", T_DURATION, F(direct.timeout_ms), NULL },

	[K_DKIM_KEYS]     = { S_DKIM, "keys", T_DKIM_KEYS, 0, NULL },
	[K_DKIM_SIGN]     = { S_DKIM, "sign", T_ENUM, F(dkim.sign), words_dkim_sign },

	[K_Q_DIR]         = { S_QUEUE, "dir", T_PATH, F(queue.dir), NULL },
	[K_Q_RETRY_MIN]   = { S_QUEUE, "retry_min", T_DURATION, F(queue.retry_min_ms), NULL },
	[K_Q_RETRY_MAX]   = { S_QUEUE, "retry_max", T_DURATION, F(queue.retry_max_ms), NULL },
	[K_Q_LIFETIME]    = { S_QUEUE, "lifetime", T_DURATION, F(queue.lifetime_ms), NULL },
	[K_Q_MAX_SIZE]    = { S_QUEUE, "max_size", T_SIZE_CAP, F(queue.max_size), NULL },
	[K_Q_DELAY_WARNING] = { S_QUEUE, "delay_warning", T_DURATION_OFF, F(queue.delay_warning_ms), NULL },

	[K_SUP_DB]        = { S_SUPPRESSION, "db", T_PATH, F(suppression.db), NULL },
	[K_SUP_APPLY]     = { S_SUPPRESSION, "apply_to", T_ENUM, F(suppression.apply_to), words_apply_to },
	[K_SUP_BOUNCE]    = { S_SUPPRESSION, "bounce_address", T_ADDRESS, F(suppression.bounce_address), NULL },

	[K_LOG_FILE]      = { S_LOG, "file", T_PATH, F(log.file), NULL },

	[K_CTL_SOCKET]    = { S_CONTROL, "socket", T_SOCKET, F(control.socket), NULL },

	[K_METRICS_LISTEN] = { S_METRICS, "listen", T_HOSTPORT, F(metrics.listen), NULL },
};

/* ------------------------------------------------------------------ */
/* Loading context and diagnostics                                    */
/* ------------------------------------------------------------------ */

void cfg_diag(struct load_ctx *c, int line, bool warning, const char *fmt, ...)
{
	char *msg = NULL, *text = NULL;
	va_list ap;

	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0) {
		c->oom = true;
		return;
	}
	if (line > 0)
		n = asprintf(&text, "%s:%d: %s%s", c->path, line, warning ? "warning: " : "", msg);
	else
		n = asprintf(&text, "%s: %s%s", c->path, warning ? "warning: " : "", msg);
	free(msg);
	if (n < 0) {
		c->oom = true;
		return;
	}
	struct ldiag *v = realloc(c->d, (c->nd + 1) * sizeof(*v));
	if (!v) {
		free(text);
		c->oom = true;
		return;
	}
	c->d = v;
	c->d[c->nd] = (struct ldiag){ line, c->nd, warning, text };
	c->nd++;
	if (!warning)
		c->nerrors++;
}

#define ERR(c, line, ...) cfg_diag((c), (line), false, __VA_ARGS__)
#define WARN(c, line, ...) cfg_diag((c), (line), true, __VA_ARGS__)

static int ldiag_cmp(const void *a, const void *b)
{
	const struct ldiag *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort by line and hand the texts over to the caller's diags. */
static void diags_publish(struct load_ctx *c, struct config_diags *out)
{
	if (c->nd)
		qsort(c->d, c->nd, sizeof(*c->d), ldiag_cmp);
	struct config_diag *v = NULL;
	if (out && c->nd)
		v = realloc(out->v, (out->n + c->nd) * sizeof(*v));
	for (size_t i = 0; i < c->nd; i++) {
		if (v) {
			v[out->n + i].text = c->d[i].text;
			v[out->n + i].warning = c->d[i].warning;
		} else {
			free(c->d[i].text);
		}
	}
	if (v) {
		out->v = v;
		out->n += c->nd;
		out->nerrors += c->nerrors;
	}
	free(c->d);
	c->d = NULL;
	c->nd = 0;
}

/* ------------------------------------------------------------------ */
/* libinih callbacks                                                  */
/* ------------------------------------------------------------------ */

static void on_reader_error(void *arg, int line, const char *msg)
{
	ERR((struct load_ctx *)arg, line, "%s", msg);
}

static void on_section(void *arg, int line, const char *name)
{
	struct load_ctx *c = arg;

	c->cur_key = -1;
	c->section = S_BAD;
	if (!name)
		return;         /* the reader reported the broken header */
	for (int s = 0; s < S_COUNT; s++)
		if (strcmp(name, cfg_section_names[s]) == 0) {
			c->section = s;
			return;
		}
	if (strncmp(name, "destination", 11) == 0 && (name[11] == ' ' || name[11] == '\0')) {
		cfg_dest_begin(c, line, name + 11);
		return;
	}
	ERR(c, line, "unknown section [%s]", name);
}

/*
 * The section argument of libinih is not used: our reader saw every
 * header and knows also about the broken ones, after which libinih
 * would still be in the section before.
 */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *c = user;
	int line = c->rd.line;

	(void)section;
	if (c->section == S_DESTINATION) {
		cfg_dest_key(c, name, value, line, c->rd.continuation);
		return 1;
	}
	if (c->rd.continuation) {
		if (c->cur_key < 0)
			return 1;       /* continues a key already refused */
		const struct key_def *kd = &cfg_keys[c->cur_key];
		if (!cfg_is_list(kd->type)) {
			ERR(c, line, "%s: takes one value; only lists continue on indented lines",
			    kd->name);
			c->cur_key = -1;
			return 1;
		}
		size_t before = c->nerrors;
		cfg_list_add(c, (enum key_id)c->cur_key, value, line);
		if (c->nerrors > before)
			c->key_bad[c->cur_key] = true;
		return 1;
	}

	c->cur_key = -1;
	if (c->section == S_NONE) {
		ERR(c, line, "key \"%s\" is outside any section", name);
		return 1;
	}
	if (c->section == S_BAD)
		return 1;       /* the header was reported */
	int k;
	for (k = 0; k < K_COUNT; k++)
		if ((int)cfg_keys[k].sec == c->section && strcmp(cfg_keys[k].name, name) == 0)
			break;
	if (k == K_COUNT) {
		ERR(c, line, "unknown key \"%s\" in [%s]", name, cfg_section_names[c->section]);
		return 1;
	}
	if (c->key_line[k]) {
		ERR(c, line, "%s: set twice in [%s] (first on line %d)", name,
		    cfg_section_names[c->section], c->key_line[k]);
		return 1;
	}
	c->key_line[k] = line;
	c->cur_key = k;
	size_t before = c->nerrors;
	cfg_set_value(c, (enum key_id)k, value, line);
	if (c->nerrors > before)
		c->key_bad[k] = true;
	return 1;
}

/* ------------------------------------------------------------------ */
/* Defaults and the checks across keys                                */
/* ------------------------------------------------------------------ */

static int config_defaults(struct config *cfg)
{
	cfg->server.listen = calloc(1, sizeof(*cfg->server.listen));
	cfg->server.allow = calloc(2, sizeof(*cfg->server.allow));
	if (!cfg->server.listen || !cfg->server.allow)
		return -1;
	strcpy(cfg->server.listen[0].host, "127.0.0.1");
	cfg->server.listen[0].port = 2525;
	cfg->server.nlisten = 1;
	if (cfg_cidr_parse("127.0.0.0/8", &cfg->server.allow[0], NULL) < 0 ||
	    cfg_cidr_parse("::1/128", &cfg->server.allow[1], NULL) < 0)
		return -1;
	cfg->server.nallow = 2;
	cfg->server.max_connections = 1000;
	cfg->server.outside_connections = 100;
	cfg->server.max_connections_per_client = 100;
	cfg->server.max_message_size = 25u * 1024 * 1024;
	cfg->server.max_recipients = 100;
	cfg->server.idle_timeout_ms = MIN(5);
	cfg->server.bare_lf = BARE_LF_NORMALIZE;

	cfg->routing.match_on = MATCH_HEADER_FROM;

	cfg->service.port = 587;
	cfg->service.tls = SERVICE_TLS_STARTTLS;
	cfg->service.max_connections = 10;
	cfg->service.rate_count = 14;
	cfg->service.rate_period_s = 1;
	cfg->service.rate_per_sec = 14.0;
	cfg->service.max_recipients_per_message = 50;
	cfg->service.pause_ms = MIN(5);
	cfg->service.connect_timeout_ms = SEC(30);
	cfg->service.timeout_ms = MIN(5);
	cfg->service.verp = false;

	cfg->direct.tls = DIRECT_TLS_MAY;
	cfg->direct.port = 25;
	cfg->direct.max_connections_per_domain = 10;
	cfg->direct.internal_destinations = DIRECT_DEST_PRIVATE;
	cfg->direct.connect_timeout_ms = SEC(30);
	cfg->direct.timeout_ms = MIN(5);

	cfg->queue.retry_min_ms = MIN(1);
	cfg->queue.retry_max_ms = HOUR(1);
	cfg->queue.lifetime_ms = DAY(5);
	cfg->suppression.apply_to = APPLY_SERVICE;

	cfg->queue.dir = strdup("/var/spool/hikyaku");
	cfg->suppression.db = strdup("/var/lib/hikyaku/suppression.db");
	cfg->log.file = strdup("/var/log/hikyaku/hikyaku.jsonl");
	cfg->control.socket = strdup("/run/hikyaku/control.sock");
	if (!cfg->queue.dir || !cfg->suppression.db || !cfg->log.file || !cfg->control.socket)
		return -1;
	return 0;
}

/* The fully qualified name of this host, else its plain name. */
static char *default_hostname(void)
{
	char name[HOST_NAME_MAX + 1];
	struct addrinfo hints = { 0 }, *res = NULL;
	char *r = NULL;

	if (gethostname(name, sizeof(name)) != 0 || name[0] == '\0')
		return strdup("localhost");
	name[sizeof(name) - 1] = '\0';
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_CANONNAME;
	if (getaddrinfo(name, NULL, &hints, &res) == 0) {
		if (res && res->ai_canonname && res->ai_canonname[0])
			r = strdup(res->ai_canonname);
		freeaddrinfo(res);
	}
	return r ? r : strdup(name);
}

/* The line of the first of two keys that was set, for a message about both. */
static int line_of(const struct load_ctx *c, enum key_id a, enum key_id b)
{
	return c->key_line[a] ? c->key_line[a] : c->key_line[b];
}

/*
 * A key whose value was refused has been reported already: it must not
 * also be reported as missing by the checks that need it.
 */
static void check_combinations(struct load_ctx *c)
{
	struct config *cfg = c->cfg;
	const bool *bad = c->key_bad;
	char a[32], b[32];

	if (c->key_line[K_LISTEN] && cfg->server.nlisten == 0 && !bad[K_LISTEN])
		ERR(c, c->key_line[K_LISTEN], "listen: no address to listen on");

	int hline = c->key_line[K_HOSTNAME];
	if (!cfg->server.hostname) {
		cfg->server.hostname = default_hostname();
		if (!cfg->server.hostname)
			c->oom = true;
		hline = bad[K_HOSTNAME] ? -1 : 0;
	}
	if (hline >= 0 && cfg->server.hostname && !strchr(cfg->server.hostname, '.'))
		WARN(c, hline, "hostname \"%s\" has no dot; "
		     "other mail servers expect a fully qualified name", cfg->server.hostname);

	if (cfg->server.tls_cert && !cfg->server.tls_key && !bad[K_TLS_KEY])
		ERR(c, c->key_line[K_TLS_CERT], "tls_cert is set but tls_key is not");
	if (cfg->server.tls_key && !cfg->server.tls_cert && !bad[K_TLS_CERT])
		ERR(c, c->key_line[K_TLS_KEY], "tls_key is set but tls_cert is not");
	if (cfg->server.auth_file && !(cfg->server.tls_cert && cfg->server.tls_key) &&
	    !bad[K_TLS_CERT] && !bad[K_TLS_KEY])
		ERR(c, c->key_line[K_AUTH_FILE], "auth_file needs tls_cert and tls_key: "
		    "AUTH is offered only after STARTTLS");

	if (cfg->routing.ndomains && !cfg->service.host && !bad[K_SVC_HOST])
		WARN(c, c->key_line[K_DOMAINS], "verified_domains is set but [service] has no host: "
		     "every mail goes direct");

	if (cfg->service.username && !cfg->service.password_file && !bad[K_SVC_PASSWORD])
		ERR(c, c->key_line[K_SVC_USER], "username is set but password_file is not");
	if (cfg->service.password_file && !cfg->service.username)
		ERR(c, c->key_line[K_SVC_PASSWORD], "password_file is set but username is not");
	if (cfg->service.verp && !cfg->service.envelope_from && !bad[K_SVC_FROM])
		ERR(c, c->key_line[K_SVC_VERP], "verp = yes needs envelope_from");
	if (cfg->service.host && cfg->service.tls == SERVICE_TLS_NONE)
		WARN(c, c->key_line[K_SVC_TLS], "[service] tls = none sends the password and the "
		     "mail in clear text (for tests only)");
	if (cfg->service.host && !cfg->service.envelope_from && !bad[K_SVC_FROM])
		WARN(c, c->key_line[K_SVC_HOST], "[service] envelope_from is empty: the delivery "
		     "service also verifies the envelope sender, and its bounces go to the "
		     "original senders instead of hikyaku");

	/* [metrics] (SPEC §9): no authentication, and not on an SMTP port. */
	if (cfg->metrics.listen.set) {
		const struct config_listen *m = &cfg->metrics.listen.addr;
		for (size_t i = 0; i < cfg->server.nlisten; i++) {
			const struct config_listen *l = &cfg->server.listen[i];
			bool wild = !strcmp(l->host, "0.0.0.0") || !strcmp(l->host, "::") ||
			            !strcmp(m->host, "0.0.0.0") || !strcmp(m->host, "::");
			if (l->port == m->port && (wild || !strcmp(l->host, m->host)) &&
			    (strchr(l->host, ':') != NULL) == (strchr(m->host, ':') != NULL))
				ERR(c, c->key_line[K_METRICS_LISTEN], "[metrics] listen: %s%s%s:%u is "
				    "also an SMTP listen address", strchr(m->host, ':') ? "[" : "",
				    m->host, strchr(m->host, ':') ? "]" : "", (unsigned)m->port);
		}
		if (!strcmp(m->host, "0.0.0.0") || !strcmp(m->host, "::"))
			WARN(c, c->key_line[K_METRICS_LISTEN], "[metrics] listen on every address: "
			     "/metrics has no authentication; prefer loopback or a private address");
	}

	cfg_dest_check(c);
	if (cfg->queue.delay_warning_ms && cfg->queue.delay_warning_ms >= cfg->queue.lifetime_ms &&
	    !bad[K_Q_DELAY_WARNING] && !bad[K_Q_LIFETIME]) {
		cfg_format_duration(cfg->queue.delay_warning_ms, a, sizeof(a));
		cfg_format_duration(cfg->queue.lifetime_ms, b, sizeof(b));
		WARN(c, line_of(c, K_Q_DELAY_WARNING, K_Q_LIFETIME),
		     "delay_warning (%s) is not shorter than lifetime (%s): no delay warning "
		     "is ever sent", a, b);
	}
	if (cfg->queue.retry_min_ms > cfg->queue.retry_max_ms &&
	    !bad[K_Q_RETRY_MIN] && !bad[K_Q_RETRY_MAX]) {
		cfg_format_duration(cfg->queue.retry_min_ms, a, sizeof(a));
		cfg_format_duration(cfg->queue.retry_max_ms, b, sizeof(b));
		ERR(c, line_of(c, K_Q_RETRY_MIN, K_Q_RETRY_MAX),
		    "retry_min (%s) is longer than retry_max (%s)", a, b);
	}
	if (cfg->queue.lifetime_ms < cfg->queue.retry_min_ms &&
	    !bad[K_Q_LIFETIME] && !bad[K_Q_RETRY_MIN]) {
		cfg_format_duration(cfg->queue.lifetime_ms, a, sizeof(a));
		cfg_format_duration(cfg->queue.retry_min_ms, b, sizeof(b));
		WARN(c, line_of(c, K_Q_LIFETIME, K_Q_RETRY_MIN),
		     "lifetime (%s) is shorter than retry_min (%s): a deferred mail expires "
		     "before its first retry", a, b);
	}
}

/* ------------------------------------------------------------------ */
/* Public functions                                                   */
/* ------------------------------------------------------------------ */

int config_load(const char *path, struct config **out, struct config_diags *diags)
{
	struct load_ctx c = { 0 };
	struct config *cfg;

	*out = NULL;
	c.path = path;
	c.section = S_NONE;
	c.cur_key = -1;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg || config_defaults(cfg) < 0 || !(cfg->path = strdup(path)) ||
	    !(cfg->dir = cfg_dir_of(path))) {
		ERR(&c, 0, "out of memory");
		goto done;
	}
	c.cfg = cfg;

	FILE *fp = fopen(path, "re");
	if (!fp) {
		ERR(&c, 0, "cannot open: %s", strerror(errno));
		goto done;
	}
	ini_reader_init(&c.rd, fp, on_reader_error, on_section, &c);
	int rc = ini_parse_stream(ini_reader_gets, &c.rd, on_key, &c);
	if (ferror(fp))
		ERR(&c, 0, "cannot read: %s", strerror(errno));
	fclose(fp);
	if (rc == -2) {
		c.oom = true;
	} else if (rc > 0) {
		/* Our reader should have caught whatever libinih refuses. */
		bool seen = false;
		for (size_t i = 0; i < c.nd; i++)
			seen |= c.d[i].line == rc && !c.d[i].warning;
		if (!seen)
			ERR(&c, rc, "syntax error");
	}
	check_combinations(&c);

done:
	if (c.oom)
		ERR(&c, 0, "out of memory");
	int ret = c.nerrors || c.oom ? -1 : 0;
	diags_publish(&c, diags);
	if (ret == 0)
		*out = cfg;
	else
		config_free(cfg);
	return ret;
}

struct config *config_ref(struct config *cfg)
{
	cfg->refs++;
	return cfg;
}

void config_unref(struct config *cfg)
{
	if (cfg && cfg->refs-- == 0)
		config_free(cfg);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (int k = 0; k < K_COUNT; k++) {
		switch (cfg_keys[k].type) {
		case T_LISTEN:
		case T_CIDRS:
		case T_DNS:
		case T_DOMAINS:
		case T_DKIM_KEYS:
			cfg_list_clear(cfg, (enum key_id)k);
			break;
		case T_HOSTNAME:
		case T_HOST:
		case T_STRING:
		case T_ADDRESS:
		case T_FILE:
		case T_PATH:
		case T_SOCKET:
			free(*FIELD(cfg, k, char *));
			break;
		default:
			break;
		}
	}
	cfg_dest_free(cfg);
	free(cfg->path);
	free(cfg->dir);
	free(cfg);
}

void config_diags_free(struct config_diags *diags)
{
	if (!diags)
		return;
	for (size_t i = 0; i < diags->n; i++)
		free(diags->v[i].text);
	free(diags->v);
	diags->v = NULL;
	diags->n = 0;
	diags->nerrors = 0;
}

const char *config_default_path(void)
{
	const char *p = getenv("HIKYAKU_CONFIG");

	return p && *p ? p : DEFAULT_PATH;
}
