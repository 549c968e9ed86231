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
 * DESCRIPTION
 *	Diagnostics are collected with their line numbers while parsing and
 *	sorted by line at the end, so that --check lists them in file order
 *	whatever pass found them (syntax, value, contradiction).
 * DIAGNOSTICS
 *	See config.h.
 * TOUCHES
 *	Reads the configuration file; open()s the files that must be
 *	readable (and closes them at once); gethostname() and getaddrinfo()
 *	for the default host name.
 */
#include "config/config.h"
#include "config/ini_reader.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <idn2.h>
#include <ini.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

/*
 * libinih hands our reader a buffer of INI_MAX_LINE bytes; the line
 * limit of SPEC §3 is what fits in it with its NUL. Debian's libinih
 * 55 is built with the default of 200.
 */
_Static_assert(INI_MAX_LINE - 1 == CONFIG_MAX_LINE, "INI_MAX_LINE does not match CONFIG_MAX_LINE");

#define DEFAULT_PATH "/etc/hikyaku/hikyaku.conf"
#define COUNT_MAX 1000000u      /* for every count: a typo guard, not a policy */

#define SEC(x) ((uint64_t)(x) * 1000u)
#define MIN(x) (SEC(x) * 60u)
#define HOUR(x) (MIN(x) * 60u)
#define DAY(x) (HOUR(x) * 24u)

/* ------------------------------------------------------------------ */
/* The key table                                                       */
/* ------------------------------------------------------------------ */

enum section {
	S_SERVER, S_ROUTING, S_SERVICE, S_DIRECT, S_QUEUE, S_SUPPRESSION, S_LOG, S_CONTROL,
	S_DKIM,
	S_METRICS,
	S_COUNT,
	S_DESTINATION = S_COUNT, /* a [destination NAME]: its own keys (dest_key) */
	S_NONE = -1,            /* before the first section header */
	S_BAD = -2,             /* an unknown or broken header: its keys are skipped */
};

static const char *const section_names[S_COUNT] = {
	"server", "routing", "service", "direct", "queue", "suppression", "log", "control",
	"dkim",
	"metrics",
};

enum ktype {
	T_LISTEN,               /* list of IP:port */
	T_CIDRS,                /* list of networks */
	T_DOMAINS,              /* list of verified domains and addresses */
	T_DNS,                  /* list of IP[:port] */
	T_HOSTNAME,             /* our own name: a domain */
	T_HOST,                 /* a remote host: a domain or an IP address */
	T_STRING,
	T_ADDRESS,              /* local@domain */
	T_UINT,                 /* 1 .. COUNT_MAX */
	T_PORT,
	T_SIZE,
	T_SIZE_CAP,     /* a size, or 0 / empty for none */
	T_DURATION,             /* greater than zero */
	T_DURATION_OFF,         /* a duration, or 0 for off */
	T_RATE,
	T_BOOL,
	T_ENUM,
	T_FILE,                 /* a file that must be readable; empty: none */
	T_PATH,                 /* a path that must not be empty */
	T_SOCKET,               /* a path of at most CONFIG_SOCKET_MAX bytes */
	T_DKIM_KEYS,            /* list of "DOMAIN SELECTOR FILE", one per line */
	T_HOSTPORT,             /* one IP:port ([IPv6]:port), or empty: off */
};

enum key_id {
	K_LISTEN, K_HOSTNAME, K_ALLOW, K_MAXCONN, K_MAXCONN_CLIENT, K_OUTSIDE_CONN, K_MAXSIZE,
	K_MAXRCPT, K_IDLE, K_TLS_CERT, K_TLS_KEY, K_BARE_LF, K_AUTH_FILE,
	K_DOMAINS, K_MATCH_ON,
	K_SVC_HOST, K_SVC_PORT, K_SVC_TLS, K_SVC_CA, K_SVC_USER, K_SVC_PASSWORD,
	K_SVC_MAXCONN, K_SVC_RATE, K_SVC_MAXRCPT, K_SVC_PAUSE, K_SVC_CONNECT,
	K_SVC_TIMEOUT, K_SVC_FROM, K_SVC_VERP,
	K_DIR_TLS, K_DIR_PORT, K_DIR_DNS, K_DIR_MAXCONN, K_DIR_INTERNAL, K_DIR_CONNECT, K_DIR_TIMEOUT,
	K_DKIM_KEYS, K_DKIM_SIGN,
	K_Q_DIR, K_Q_RETRY_MIN, K_Q_RETRY_MAX, K_Q_LIFETIME, K_Q_MAX_SIZE, K_Q_DELAY_WARNING,
	K_SUP_DB, K_SUP_APPLY, K_SUP_BOUNCE,
	K_LOG_FILE,
	K_CTL_SOCKET,
	K_METRICS_LISTEN,
	K_COUNT,
};

static const char *const words_bare_lf[] = { "normalize", "reject", NULL };
static const char *const words_match_on[] = { "header_from", "envelope_from", NULL };
static const char *const words_svc_tls[] = { "starttls", "smtps", "none", NULL };
static const char *const words_dir_tls[] = { "may", "encrypt", "verify", "none", NULL };
static const char *const words_dir_internal[] = { "private", "public", "any", NULL };
static const char *const words_apply_to[] = { "service", "all", NULL };
static const char *const words_dkim_sign[] = { "direct", "all", "none", NULL };

struct key_def {
	enum section sec;
	const char *name;
	enum ktype type;
	size_t off;                     /* of the field in struct config */
	const char *const *words;       /* T_ENUM: the names, in enum order */
};

#define F(member) offsetof(struct config, member)

/* In the order of SPEC §3, which is also the order config_print() uses. */
static const struct key_def keys[K_COUNT] = {
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

#define FIELD(cfg, k, type) ((type *)(void *)((char *)(cfg) + keys[k].off))
#define CFIELD(cfg, k, type) ((const type *)(const void *)((const char *)(cfg) + keys[k].off))

/* The keys of a [destination NAME] section, in the order config_print() uses. */
enum dest_key { DK_DOMAINS, DK_MAXCONN, DK_MAXRCPT, DK_RATE, DK_PAUSE, DK_COUNT };
static const char *const dest_key_names[DK_COUNT] = {
	"domains", "max_connections", "max_recipients_per_message", "rate", "pause",
};

/* ------------------------------------------------------------------ */
/* Loading context and diagnostics                                    */
/* ------------------------------------------------------------------ */

struct ldiag {
	int line;
	size_t seq;             /* keeps the sort stable */
	bool warning;
	char *text;
};

struct load_ctx {
	struct config *cfg;
	const char *path;       /* as given, for the messages */
	struct ini_reader rd;
	struct ldiag *d;
	size_t nd;
	size_t nerrors;
	bool oom;
	int section;            /* enum section, S_NONE or S_BAD */
	int cur_key;            /* the key continuation lines go to; -1: none */
	int key_line[K_COUNT];  /* where each key was set; 0: not set */
	int dest_key_line[DK_COUNT]; /* the same for the current [destination] */
	int dest_cur_key;       /* its key continuation lines go to; -1: none */
	bool key_bad[K_COUNT];  /* its value (or an entry) was refused */
};

static void diag(struct load_ctx *c, int line, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void diag(struct load_ctx *c, int line, bool warning, const char *fmt, ...)
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

#define ERR(c, line, ...) diag((c), (line), false, __VA_ARGS__)
#define WARN(c, line, ...) diag((c), (line), true, __VA_ARGS__)

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
/* Small string helpers                                               */
/* ------------------------------------------------------------------ */

static char *trim(char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

static void ascii_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* Digits only (no sign, no blanks), without overflow. */
static int parse_u64(const char *s, const char **end, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*end = p;
	*out = v;
	return 0;
}

static int parse_uint_full(const char *s, uint64_t *out)
{
	const char *end;

	if (parse_u64(s, &end, out) < 0 || *end)
		return -1;
	return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
	uint64_t v;

	if (parse_uint_full(s, &v) < 0 || v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Public value parsers                                               */
/* ------------------------------------------------------------------ */

int config_parse_duration(const char *s, uint64_t *ms)
{
	const char *end;
	uint64_t v, unit;

	if (!s || parse_u64(s, &end, &v) < 0)
		return -1;
	switch (*end) {
	case '\0':              /* a bare number is seconds */
	case 's': case 'S': unit = SEC(1); break;
	case 'm': case 'M': unit = MIN(1); break;
	case 'h': case 'H': unit = HOUR(1); break;
	case 'd': case 'D': unit = DAY(1); break;
	default: return -1;
	}
	if (*end && end[1])
		return -1;
	if (v > UINT64_MAX / unit)
		return -1;
	*ms = v * unit;
	return 0;
}

int config_parse_size(const char *s, uint64_t *bytes)
{
	const char *end;
	uint64_t v, unit;

	if (!s || parse_u64(s, &end, &v) < 0)
		return -1;
	switch (*end) {
	case '\0': unit = 1; break;
	case 'k': case 'K': unit = 1024; break;
	case 'm': case 'M': unit = 1024 * 1024; break;
	case 'g': case 'G': unit = 1024 * 1024 * 1024; break;
	default: return -1;
	}
	if (*end && end[1])
		return -1;
	if (v > UINT64_MAX / unit)
		return -1;
	*bytes = v * unit;
	return 0;
}

int config_parse_rate(const char *s, unsigned *count, unsigned *period_s)
{
	const char *end;
	uint64_t v;
	unsigned p;

	if (!s || parse_u64(s, &end, &v) < 0 || v < 1 || v > UINT_MAX || *end != '/')
		return -1;
	switch (end[1]) {
	case 's': case 'S': p = 1; break;
	case 'm': case 'M': p = 60; break;
	case 'h': case 'H': p = 3600; break;
	default: return -1;
	}
	if (end[2])
		return -1;
	*count = (unsigned)v;
	*period_s = p;
	return 0;
}

/* *host_bits tells whether the address had bits set beyond the prefix. */
static int cidr_parse(const char *s, struct config_cidr *out, bool *host_bits)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	struct config_cidr n = { 0 };
	unsigned max;

	if (alen == 0 || alen >= sizeof(addr))
		return -1;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, n.addr) == 1) {
		n.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, n.addr) == 1) {
		n.family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	n.prefix = max;
	if (slash) {
		uint64_t v;
		if (parse_uint_full(slash + 1, &v) < 0 || v > max)
			return -1;
		n.prefix = (unsigned)v;
	}

	bool bits = false;
	for (unsigned i = 0; i < max / 8; i++) {
		unsigned keep = n.prefix > i * 8 ? n.prefix - i * 8 : 0;
		uint8_t mask = keep >= 8 ? 0xff : (uint8_t)(0xff00u >> keep);
		if (n.addr[i] & (uint8_t)~mask)
			bits = true;
		n.addr[i] &= mask;
	}
	if (host_bits)
		*host_bits = bits;
	*out = n;
	return 0;
}

int config_parse_cidr(const char *s, struct config_cidr *out)
{
	if (!s || !out)
		return -1;
	return cidr_parse(s, out, NULL);
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff00u >> rest);
	return (a[full] & mask) == net[full];
}

bool config_cidr_contains(const struct config_cidr *net, const struct sockaddr *sa)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	uint8_t a[16];

	if (!net || !sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
		if (net->family == AF_INET)
			return prefix_match((const uint8_t *)&sin->sin_addr, net->addr, net->prefix);
		/* An IPv6 network such as ::ffff:0:0/96 holds the IPv4 addresses. */
		memcpy(a, v4mapped, 12);
		memcpy(a + 12, &sin->sin_addr, 4);
		return net->family == AF_INET6 && prefix_match(a, net->addr, net->prefix);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(a, &sin6->sin6_addr, 16);
		if (net->family == AF_INET6)
			return prefix_match(a, net->addr, net->prefix);
		/*
		 * A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d;
		 * they must match the IPv4 networks they come from.
		 */
		if (net->family == AF_INET && memcmp(a, v4mapped, 12) == 0)
			return prefix_match(a + 12, net->addr, net->prefix);
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Domains and addresses                                              */
/* ------------------------------------------------------------------ */

/* Letters, digits and hyphens (RFC 1035 §2.3.1, RFC 5321 §4.1.2). */
static bool ldh_valid(const char *d)
{
	size_t total = strlen(d);
	const char *label = d;

	if (total == 0 || total > 253)
		return false;
	for (;;) {
		const char *dot = strchr(label, '.');
		size_t n = dot ? (size_t)(dot - label) : strlen(label);
		if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
			return false;
		bool digits = true;
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)label[i];
			if (!isalnum(ch) && ch != '-')
				return false;
			if (!isdigit(ch))
				digits = false;
		}
		if (!dot)
			/* An all-numeric last label is an IP address, not a domain. */
			return !digits;
		label = dot + 1;
	}
}

/*
 * The lowercase A-label form of a domain written in either form, one
 * trailing dot allowed. UTS #46 nontransitional processing first (what
 * browsers and current resolvers do: "faß.de" stays "faß"), then the
 * transitional one for names only it accepts.
 */
char *config_domain_ascii(const char *in, size_t n)
{
	char *a = NULL;

	if (n && in[n - 1] == '.')
		n--;
	if (n == 0 || n > 1024 || in[0] == '[')
		return NULL; /* a domain literal is no domain name */
	char *tmp = strndup(in, n);
	if (!tmp)
		return NULL;
	ascii_lower(tmp);
	int rc = idn2_to_ascii_8z(tmp, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK)
		rc = idn2_to_ascii_8z(tmp, &a, IDN2_NFC_INPUT | IDN2_TRANSITIONAL);
	free(tmp);
	if (rc != IDN2_OK)
		return NULL;
	ascii_lower(a);
	if (!ldh_valid(a)) {
		idn2_free(a);
		return NULL;
	}
	char *r = strdup(a);
	idn2_free(a);
	return r;
}

/*
 * A dot-atom local part (RFC 5322 §3.2.3), UTF-8 allowed (RFC 6531).
 * Quoted local parts are refused: no shop sends from one.
 */
static bool local_valid(const char *s, size_t n)
{
	if (n == 0 || n > 64 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.' && s[i + 1] == '.')
			return false;
		if (ch >= 0x80 || isalnum(ch) || ch == '.')
			continue;
		if (!strchr("!#$%&'*+-/=?^_`{|}~", ch))
			return false;
	}
	return true;
}

/* "local@domain" to "local@a-label", local part lowercased; NULL if invalid. */
static char *address_ascii(const char *in)
{
	const char *at = strchr(in, '@');

	if (!at || strchr(at + 1, '@') || !local_valid(in, (size_t)(at - in)))
		return NULL;
	char *dom = config_domain_ascii(at + 1, strlen(at + 1));
	if (!dom)
		return NULL;
	char *r = NULL;
	if (asprintf(&r, "%.*s@%s", (int)(at - in), in, dom) < 0)
		r = NULL;
	free(dom);
	if (r) {
		char *p = strchr(r, '@');
		*p = '\0';
		ascii_lower(r);
		*p = '@';
	}
	return r;
}

/* ------------------------------------------------------------------ */
/* Paths                                                              */
/* ------------------------------------------------------------------ */

/*
 * dir (absolute, without symbolic links: it comes from realpath()) joined
 * with p. Leading "./" and "../" of p are folded into dir, which is
 * right because every component of dir is a real directory; any later
 * ".." is left alone, as it could follow a symbolic link.
 */
static char *path_resolve(const char *dir, const char *p)
{
	size_t dlen = strlen(dir);
	char *r = NULL;

	if (p[0] == '/')
		return strdup(p);
	for (;;) {
		if (p[0] == '.' && (p[1] == '/' || p[1] == '\0')) {
			p += 1;
		} else if (dir[0] == '/' && p[0] == '.' && p[1] == '.' &&
			   (p[2] == '/' || p[2] == '\0')) {
			while (dlen > 1 && dir[dlen - 1] != '/')
				dlen--;
			if (dlen > 1)
				dlen--;
			p += 2;
		} else {
			break;
		}
		while (*p == '/')
			p++;
	}
	if (*p == '\0')
		return strndup(dir, dlen);
	if (dlen == 1 && dir[0] == '/')
		dlen = 0;
	if (asprintf(&r, "%.*s/%s", (int)dlen, dir, p) < 0)
		return NULL;
	return r;
}

/* The directory of the configuration file, absolute when possible. */
static char *config_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d;

	if (!slash)
		d = strdup(".");
	else if (slash == path)
		d = strdup("/");
	else
		d = strndup(path, (size_t)(slash - path));
	if (!d)
		return NULL;
	char *real = realpath(d, NULL);
	if (real) {
		free(d);
		return real;
	}
	return d;
}

/* 0, or an errno value; a directory is not a readable file. */
static int file_readable(const char *p)
{
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;

	if (fd < 0)
		return errno;
	int err = 0;
	if (fstat(fd, &st) < 0)
		err = errno;
	else if (S_ISDIR(st.st_mode))
		err = EISDIR;
	close(fd);
	return err;
}

/* ------------------------------------------------------------------ */
/* Lists                                                              */
/* ------------------------------------------------------------------ */

static void *grow(struct load_ctx *c, void *v, size_t n, size_t size)
{
	void *p = realloc(v, (n + 1) * size);

	if (!p)
		c->oom = true;
	return p;
}

/*
 * host:port with a numeric host; IPv6 in brackets. When default_port is
 * non-zero the port may be left out (then a bare IPv6 address needs no
 * brackets). The host comes back in inet_ntop()'s canonical form.
 */
static int hostport_parse(const char *s, char host[64], int *family, uint16_t *port,
			  uint16_t default_port)
{
	char h[64];
	const char *ps = NULL;
	uint8_t bin[16];
	int fam;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || (size_t)(rb - s - 1) >= sizeof(h))
			return -1;
		memcpy(h, s + 1, (size_t)(rb - s - 1));
		h[rb - s - 1] = '\0';
		if (rb[1] == ':')
			ps = rb + 2;
		else if (rb[1] != '\0')
			return -1;
		fam = AF_INET6;
	} else if (default_port && inet_pton(AF_INET6, s, bin) == 1) {
		if (strlen(s) >= sizeof(h))
			return -1;
		strcpy(h, s);
		fam = AF_INET6;
	} else {
		const char *colon = strrchr(s, ':');
		size_t hl = colon ? (size_t)(colon - s) : strlen(s);
		if (hl >= sizeof(h))
			return -1;
		memcpy(h, s, hl);
		h[hl] = '\0';
		if (colon)
			ps = colon + 1;
		fam = AF_INET;
	}
	if (inet_pton(fam, h, bin) != 1)
		return -1;
	if (ps) {
		if (parse_port(ps, port) < 0)
			return -1;
	} else if (default_port) {
		*port = default_port;
	} else {
		return -1;
	}
	if (!inet_ntop(fam, bin, host, 64))
		return -1;
	*family = fam;
	return 0;
}

static void add_listen(struct load_ctx *c, const char *e, int line)
{
	struct config *cfg = c->cfg;
	struct config_listen l;
	int fam;

	if (hostport_parse(e, l.host, &fam, &l.port, 0) < 0) {
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
	struct config_listen *v = grow(c, cfg->server.listen, cfg->server.nlisten, sizeof(*v));
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

	if (cidr_parse(e, &n, &host_bits) < 0) {
		ERR(c, line, "allow_networks: \"%s\" is not a network (address/prefix)", e);
		return;
	}
	if (host_bits) {
		char a[INET6_ADDRSTRLEN];
		inet_ntop(n.family, n.addr, a, sizeof(a));
		WARN(c, line, "allow_networks: \"%s\" has host bits set; using %s/%u",
		     e, a, n.prefix);
	}
	struct config_cidr *v = grow(c, cfg->server.allow, cfg->server.nallow, sizeof(*v));
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

	if (hostport_parse(e, host, &fam, &port, 53) < 0) {
		ERR(c, line, "dns_servers: \"%s\" is not an IP address with an optional port "
		    "(ip, ip:port, [IPv6]:port)", e);
		return;
	}
	if (asprintf(&s, fam == AF_INET6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port) < 0) {
		c->oom = true;
		return;
	}
	char **v = grow(c, cfg->direct.dns_servers, cfg->direct.ndns_servers, sizeof(*v));
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
	ascii = is_address ? address_ascii(e) : config_domain_ascii(e, strlen(e));
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
		v = grow(c, cfg->routing.domains, cfg->routing.ndomains, sizeof(*v));
	if (!v) {
		c->oom = true;
		free(entry);
		free(ascii);
		return;
	}
	cfg->routing.domains = v;
	v[cfg->routing.ndomains++] = (struct config_domain){ entry, ascii, is_address, line };
}

/* ---- [dkim] keys (SPEC §3): "DOMAIN SELECTOR FILE", the key read now */

#define DKIM_KEY_FILE_MAX (64 * 1024)

static void dkim_keys_clear(struct config *cfg)
{
	for (size_t i = 0; i < cfg->dkim.nkeys; i++) {
		struct config_dkim_key *k = &cfg->dkim.keys[i];
		free(k->domain);
		free(k->selector);
		free(k->file);
		if (k->pem)
			OPENSSL_cleanse(k->pem, k->pem_len);
		free(k->pem);
	}
	free(cfg->dkim.keys);
	cfg->dkim.keys = NULL;
	cfg->dkim.nkeys = 0;
}

/* An encrypted key cannot be used unattended: never ask for a passphrase. */
static int dkim_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;
}

/* The whole file, at most DKIM_KEY_FILE_MAX bytes; 0 or an errno value
 * (EFBIG when larger). */
static int dkim_read_file(const char *p, char **out, size_t *len)
{
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	char *b = NULL;
	size_t n = 0;
	int err = 0;

	if (fd < 0)
		return errno;
	if (fstat(fd, &st) < 0) {
		err = errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		err = EISDIR;
		goto out;
	}
	b = malloc(DKIM_KEY_FILE_MAX + 1);
	if (!b) {
		err = ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, b + n, DKIM_KEY_FILE_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = errno;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > DKIM_KEY_FILE_MAX) {
			err = EFBIG;
			break;
		}
	}
out:
	close(fd);
	if (err) {
		if (b)
			OPENSSL_cleanse(b, n);
		free(b);
		return err;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

/* A selector is one or more labels of letters, digits and hyphens
 * (RFC 6376 §3.1). */
bool config_dkim_selector_valid(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > 63 * 4)
		return false;
	for (size_t i = 0; i <= n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.' || ch == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-')
				return false;
			label = 0;
		} else if (isalnum(ch) || ch == '-') {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

static void add_dkim_key(struct load_ctx *c, const char *e, int line)
{
	struct config *cfg = c->cfg;
	char dom[256], sel[256], file[200];
	int n = 0;

	if (sscanf(e, "%255s %255s %199s %n", dom, sel, file, &n) != 3 || e[n] != '\0') {
		ERR(c, line, "keys: \"%s\" is not \"DOMAIN SELECTOR FILE\"", e);
		return;
	}
	char *ascii = config_domain_ascii(dom, strlen(dom));
	if (!ascii) {
		ERR(c, line, "keys: \"%s\" is not a valid domain", dom);
		return;
	}
	ascii_lower(sel);
	if (!config_dkim_selector_valid(sel)) {
		ERR(c, line, "keys: \"%s\" is not a valid selector (letters, digits, hyphens "
		    "and dots)", sel);
		free(ascii);
		return;
	}
	for (size_t i = 0; i < cfg->dkim.nkeys; i++)
		if (strcmp(cfg->dkim.keys[i].domain, ascii) == 0) {
			ERR(c, line, "keys: %s has a key already (line %d); one key signs "
			    "for a domain", ascii, cfg->dkim.keys[i].line);
			free(ascii);
			return;
		}
	struct config_dkim_key k = { .domain = ascii, .line = line };
	k.selector = strdup(sel);
	k.file = path_resolve(cfg->dir, file);
	if (!k.selector || !k.file) {
		c->oom = true;
		goto fail;
	}
	int err = dkim_read_file(k.file, &k.pem, &k.pem_len);
	if (err) {
		ERR(c, line, "keys: cannot read \"%s\": %s", k.file,
		    err == EFBIG ? "larger than 64 KiB, not a key" : strerror(err));
		goto fail;
	}
	BIO *bio = BIO_new_mem_buf(k.pem, (int)k.pem_len);
	EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, dkim_no_passphrase, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error();
	if (!pk) {
		ERR(c, line, "keys: \"%s\" holds no PEM private key (or an encrypted one)", k.file);
		goto fail;
	}
	int id = EVP_PKEY_get_base_id(pk);
	if (id == EVP_PKEY_RSA) {
		k.type = CONFIG_DKIM_RSA;
		k.bits = (unsigned)EVP_PKEY_get_bits(pk);
	} else if (id == EVP_PKEY_ED25519) {
		k.type = CONFIG_DKIM_ED25519;
		k.bits = 256;
	}
	EVP_PKEY_free(pk);
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) {
		ERR(c, line, "keys: \"%s\" is a %s key; DKIM signs with RSA or Ed25519", k.file,
		    OBJ_nid2sn(id));
		goto fail;
	}
	if (k.type == CONFIG_DKIM_RSA && k.bits < 1024) {
		ERR(c, line, "keys: \"%s\" is an RSA key of %u bits; at least 1024 are needed "
		    "(RFC 8301)", k.file, k.bits);
		goto fail;
	}
	if (k.type == CONFIG_DKIM_RSA && k.bits < 2048)
		WARN(c, line, "keys: \"%s\" is an RSA key of %u bits; use 2048 "
		     "(hikyakuctl dkim keygen)", k.file, k.bits);
	struct config_dkim_key *v = grow(c, cfg->dkim.keys, cfg->dkim.nkeys, sizeof(*v));
	if (!v)
		goto fail;
	cfg->dkim.keys = v;
	v[cfg->dkim.nkeys++] = k;
	return;
fail:
	free(k.domain);
	free(k.selector);
	free(k.file);
	if (k.pem)
		OPENSSL_cleanse(k.pem, k.pem_len);
	free(k.pem);
}

static void list_add(struct load_ctx *c, enum key_id k, const char *value, int line)
{
	char *copy = strdup(value);

	if (!copy) {
		c->oom = true;
		return;
	}
	if (keys[k].type == T_DKIM_KEYS) {
		/* One entry a line: a file name may hold a comma. */
		char *e = trim(copy);
		if (*e)
			add_dkim_key(c, e, line);
		free(copy);
		return;
	}
	/* Entries are separated by commas here and by new lines by libinih. */
	char *save = NULL;
	for (char *e = strtok_r(copy, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
		e = trim(e);
		if (*e == '\0')
			continue;
		switch (keys[k].type) {
		case T_LISTEN: add_listen(c, e, line); break;
		case T_CIDRS: add_cidr(c, e, line); break;
		case T_DNS: add_dns(c, e, line); break;
		case T_DOMAINS: add_domain(c, e, line); break;
		default: break;
		}
	}
	free(copy);
}

static void list_clear(struct config *cfg, enum key_id k)
{
	switch (keys[k].type) {
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
		dkim_keys_clear(cfg);
		break;
	default:
		break;
	}
}

static bool is_list(enum ktype t)
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
	const struct key_def *kd = &keys[k];

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
	p = path_resolve(c->cfg->dir, v);
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
		int err = file_readable(p);
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
	const char *const *w = keys[k].words;
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
	ERR(c, line, "%s: \"%s\" is not %s", keys[k].name, v, list);
}

/* [metrics] listen: one address, never a list; empty turns it off. */
static void set_hostport(struct load_ctx *c, enum key_id k, const char *v, int line)
{
	struct config_hostport *hp = FIELD(c->cfg, k, struct config_hostport);
	int fam;

	memset(hp, 0, sizeof(*hp));
	if (*v == '\0')
		return;
	if (strchr(v, ',') || hostport_parse(v, hp->addr.host, &fam, &hp->addr.port, 0) < 0) {
		ERR(c, line, "%s: \"%s\" is not one IP address and port (host:port, [IPv6]:port)",
		    keys[k].name, v);
		return;
	}
	hp->set = true;
}

static void set_value(struct load_ctx *c, enum key_id k, const char *v, int line)
{
	const struct key_def *kd = &keys[k];
	struct config *cfg = c->cfg;
	uint64_t u;

	switch (kd->type) {
	case T_LISTEN:
	case T_CIDRS:
	case T_DNS:
	case T_DOMAINS:
	case T_DKIM_KEYS:
		/* The file's value replaces the default list, it does not add to it. */
		list_clear(cfg, k);
		list_add(c, k, v, line);
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
		char *a = address_ascii(v);
		if (!a) {
			ERR(c, line, "%s: \"%s\" is not an address (local@domain)", kd->name, v);
			break;
		}
		free(a);
		set_string(c, k, strdup(v));
		break;
	}
	case T_UINT:
		if (parse_uint_full(v, &u) < 0) {
			ERR(c, line, "%s: \"%s\" is not a number", kd->name, v);
		} else if (u < 1 || u > COUNT_MAX) {
			ERR(c, line, "%s: %s is out of range (1 to %u)", kd->name, v, COUNT_MAX);
		} else {
			*FIELD(cfg, k, unsigned) = (unsigned)u;
		}
		break;
	case T_PORT:
		if (parse_port(v, FIELD(cfg, k, uint16_t)) < 0)
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

/* ------------------------------------------------------------------ */
/* [destination NAME] sections                                         */
/* ------------------------------------------------------------------ */

/* DOMAIN (A-label, lowercase) is ENTRY or a subdomain of it on a dot boundary. */
static bool domain_covers(const char *entry, const char *domain)
{
	size_t e = strlen(entry), d = strlen(domain);

	if (d == e)
		return strcmp(entry, domain) == 0;
	return d > e && domain[d - e - 1] == '.' && strcmp(domain + d - e, entry) == 0;
}

static void dest_begin(struct load_ctx *c, int line, const char *rest)
{
	struct config *cfg = c->cfg;
	char name[CONFIG_MAX_LINE + 1];

	while (*rest == ' ' || *rest == '\t')
		rest++;
	snprintf(name, sizeof(name), "%s", rest);
	trim(name);
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
	struct config_destination *v = copy ? grow(c, cfg->destinations, cfg->ndestinations,
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
		e = trim(e);
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
		struct config_domain *v = entry ? grow(c, d->domains, d->ndomains, sizeof(*v)) : NULL;
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

static void dest_key(struct load_ctx *c, const char *name, const char *value, int line,
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
		if (parse_uint_full(value, &u) < 0 || u < 1 || u > COUNT_MAX)
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
static void dest_check(struct load_ctx *c)
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

static void dest_free_all(struct config *cfg)
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
		if (strcmp(name, section_names[s]) == 0) {
			c->section = s;
			return;
		}
	if (strncmp(name, "destination", 11) == 0 && (name[11] == ' ' || name[11] == '\0')) {
		dest_begin(c, line, name + 11);
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
		dest_key(c, name, value, line, c->rd.continuation);
		return 1;
	}
	if (c->rd.continuation) {
		if (c->cur_key < 0)
			return 1;       /* continues a key already refused */
		const struct key_def *kd = &keys[c->cur_key];
		if (!is_list(kd->type)) {
			ERR(c, line, "%s: takes one value; only lists continue on indented lines",
			    kd->name);
			c->cur_key = -1;
			return 1;
		}
		size_t before = c->nerrors;
		list_add(c, (enum key_id)c->cur_key, value, line);
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
		if ((int)keys[k].sec == c->section && strcmp(keys[k].name, name) == 0)
			break;
	if (k == K_COUNT) {
		ERR(c, line, "unknown key \"%s\" in [%s]", name, section_names[c->section]);
		return 1;
	}
	if (c->key_line[k]) {
		ERR(c, line, "%s: set twice in [%s] (first on line %d)", name,
		    section_names[c->section], c->key_line[k]);
		return 1;
	}
	c->key_line[k] = line;
	c->cur_key = k;
	size_t before = c->nerrors;
	set_value(c, (enum key_id)k, value, line);
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
	if (cidr_parse("127.0.0.0/8", &cfg->server.allow[0], NULL) < 0 ||
	    cidr_parse("::1/128", &cfg->server.allow[1], NULL) < 0)
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

static void format_duration(uint64_t ms, char *out, size_t n)
{
	if (ms && ms % DAY(1) == 0)
		snprintf(out, n, "%llud", (unsigned long long)(ms / DAY(1)));
	else if (ms && ms % HOUR(1) == 0)
		snprintf(out, n, "%lluh", (unsigned long long)(ms / HOUR(1)));
	else if (ms && ms % MIN(1) == 0)
		snprintf(out, n, "%llum", (unsigned long long)(ms / MIN(1)));
	else
		snprintf(out, n, "%llus", (unsigned long long)(ms / SEC(1)));
}

static void format_size(uint64_t b, char *out, size_t n)
{
	static const char units[] = "GMK";

	for (int i = 0; units[i]; i++) {
		uint64_t u = 1ull << (10 * (3 - i));
		if (b && b % u == 0) {
			snprintf(out, n, "%llu%c", (unsigned long long)(b / u), units[i]);
			return;
		}
	}
	snprintf(out, n, "%llu", (unsigned long long)b);
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

	dest_check(c);
	if (cfg->queue.delay_warning_ms && cfg->queue.delay_warning_ms >= cfg->queue.lifetime_ms &&
	    !bad[K_Q_DELAY_WARNING] && !bad[K_Q_LIFETIME]) {
		format_duration(cfg->queue.delay_warning_ms, a, sizeof(a));
		format_duration(cfg->queue.lifetime_ms, b, sizeof(b));
		WARN(c, line_of(c, K_Q_DELAY_WARNING, K_Q_LIFETIME),
		     "delay_warning (%s) is not shorter than lifetime (%s): no delay warning "
		     "is ever sent", a, b);
	}
	if (cfg->queue.retry_min_ms > cfg->queue.retry_max_ms &&
	    !bad[K_Q_RETRY_MIN] && !bad[K_Q_RETRY_MAX]) {
		format_duration(cfg->queue.retry_min_ms, a, sizeof(a));
		format_duration(cfg->queue.retry_max_ms, b, sizeof(b));
		ERR(c, line_of(c, K_Q_RETRY_MIN, K_Q_RETRY_MAX),
		    "retry_min (%s) is longer than retry_max (%s)", a, b);
	}
	if (cfg->queue.lifetime_ms < cfg->queue.retry_min_ms &&
	    !bad[K_Q_LIFETIME] && !bad[K_Q_RETRY_MIN]) {
		format_duration(cfg->queue.lifetime_ms, a, sizeof(a));
		format_duration(cfg->queue.retry_min_ms, b, sizeof(b));
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
	    !(cfg->dir = config_dir(path))) {
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
		switch (keys[k].type) {
		case T_LISTEN:
		case T_CIDRS:
		case T_DNS:
		case T_DOMAINS:
		case T_DKIM_KEYS:
			list_clear(cfg, (enum key_id)k);
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
	dest_free_all(cfg);
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
	bool one_line = keys[k].type != T_DOMAINS;

	switch (keys[k].type) {
	case T_LISTEN: n = cfg->server.nlisten; break;
	case T_CIDRS: n = cfg->server.nallow; break;
	case T_DNS: n = cfg->direct.ndns_servers; break;
	case T_DOMAINS: n = cfg->routing.ndomains; break;
	default: break;
	}
	int len = snprintf(line, sizeof(line), "%s =", keys[k].name);
	for (size_t i = 0; i < n && one_line; i++) {
		const char *s = item;
		switch (keys[k].type) {
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
	fprintf(fp, "%s =\n", keys[k].name);
	for (size_t i = 0; i < n; i++) {
		switch (keys[k].type) {
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
		const struct key_def *kd = &keys[k];
		const char *s = v;

		if ((int)kd->sec != sec) {
			sec = (int)kd->sec;
			fprintf(fp, "%s[%s]\n", k ? "\n" : "", section_names[sec]);
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
			format_size(*CFIELD(cfg, k, uint64_t), v, sizeof(v));
			break;
		case T_DURATION:
			format_duration(*CFIELD(cfg, k, uint64_t), v, sizeof(v));
			break;
		case T_DURATION_OFF:
			if (*CFIELD(cfg, k, uint64_t))
				format_duration(*CFIELD(cfg, k, uint64_t), v, sizeof(v));
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
		format_duration(d->pause_ms, v, sizeof(v));
		fprintf(fp, "%s = %s\n", dest_key_names[DK_PAUSE], v);
	}
}

const char *config_default_path(void)
{
	const char *p = getenv("HIKYAKU_CONFIG");

	return p && *p ? p : DEFAULT_PATH;
}

bool config_is_bounce_address(const struct config *cfg, const char *addr,
                              const char **tag, size_t *tag_len)
{
	const char *b = cfg->suppression.bounce_address;
	if (tag) {
		*tag = NULL;
		*tag_len = 0;
	}
	if (!b || !addr)
		return false;
	if (strcasecmp(addr, b) == 0)
		return true;
	const char *bat = strrchr(b, '@');
	const char *aat = strrchr(addr, '@');
	if (!bat || !aat || strcasecmp(bat, aat) != 0)
		return false;
	size_t blocal = (size_t)(bat - b);
	if ((size_t)(aat - addr) <= blocal || strncasecmp(addr, b, blocal) != 0 ||
	    addr[blocal] != '+')
		return false;
	if (tag) {
		*tag = addr + blocal + 1;
		*tag_len = (size_t)(aat - *tag);
	}
	return true;
}
