/*
 * NAME
 *	config - hikyaku's configuration file (SPEC §3)
 * SUMMARY
 *	Reads the INI file with libinih through our own line reader (which
 *	counts lines, refuses lines of 200 bytes or more and tells indented
 *	continuation lines apart from duplicate keys), fills a struct config
 *	with every key of SPEC §3 (defaults where a key is absent), and
 *	validates values and their combinations.
 * DESCRIPTION
 *	config_load() reads PATH. Every problem becomes one diagnostic
 *	"FILE:LINE: message" (warnings: "FILE:LINE: warning: message"; a
 *	problem that has no line, such as a missing file, is "FILE: message");
 *	all of them are collected, not only the first.  On success (no
 *	errors; warnings allowed) *out holds the configuration.
 *	config_free() releases it; config_diags_free() releases diagnostics.
 *	config_print() writes the effective configuration as INI, defaults
 *	included, verified_domains one entry per line (hikyakuctl config).
 *	config_default_path() is $HIKYAKU_CONFIG, else
 *	/etc/hikyaku/hikyaku.conf.
 *	[dkim] keys: each key file is read and parsed (OpenSSL) when the
 *	file is loaded; its bytes are kept in the configuration, so what
 *	--check accepted is what signs (relay/dkim.h).
 * DIAGNOSTICS
 *	config_load() returns 0 when the file is valid (maybe with warnings),
 *	-1 when it has at least one error.
 * TOUCHES
 *	Reads the configuration file and checks that the files it names are
 *	readable (and reads the [dkim] key files); resolves the host name
 *	for the default `hostname`. No sockets are opened, nothing is
 *	written.
 */
#ifndef HK_CONFIG_CONFIG_H
#define HK_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define CONFIG_MAX_LINE 199   /* bytes per line, without the newline */
#define CONFIG_SOCKET_MAX 107 /* sun_path minus its NUL */

struct config_listen {
	char host[64];          /* "127.0.0.1" or "::1" (without brackets) */
	uint16_t port;
};

/* [metrics] listen: one address, or none (set false). */
struct config_hostport {
	bool set;
	struct config_listen addr;
};

struct config_cidr {
	int family;             /* AF_INET or AF_INET6 */
	uint8_t addr[16];       /* network address, host bits cleared */
	unsigned prefix;        /* 0..32 or 0..128 */
};

struct config_domain {
	char *entry;            /* as written, trimmed, e.g. "Example.co.JP." */
	char *ascii;            /* lowercase A-label form, no trailing dot:
	                           "example.co.jp" or "test@xn--...jp" */
	bool is_address;        /* entry contains '@' */
	int line;               /* where it was written */
};

enum config_bare_lf { BARE_LF_NORMALIZE, BARE_LF_REJECT };
enum config_match_on { MATCH_HEADER_FROM, MATCH_ENVELOPE_FROM };
enum config_service_tls { SERVICE_TLS_STARTTLS, SERVICE_TLS_SMTPS, SERVICE_TLS_NONE };
enum config_direct_tls { DIRECT_TLS_MAY, DIRECT_TLS_ENCRYPT, DIRECT_TLS_VERIFY, DIRECT_TLS_NONE };
enum config_apply_to { APPLY_SERVICE, APPLY_ALL };
/* [direct] internal_destinations (SPEC §3): which addresses may be connected to. */
enum config_direct_dest { DIRECT_DEST_PRIVATE, DIRECT_DEST_PUBLIC, DIRECT_DEST_ANY };

/* A [destination NAME] section: a delivery policy shared by some recipient
 * domains of the direct route (SPEC §3, §5). */
struct config_destination {
	char *name;                     /* NAME of the section header */
	int line;                       /* of the header */
	struct config_domain *domains;  /* as verified_domains: dot-boundary cover */
	size_t ndomains;
	unsigned max_connections;       /* for the policy as a whole */
	unsigned max_recipients_per_message;
	unsigned rate_count;            /* 0: no rate limit */
	unsigned rate_period_s;
	double rate_per_sec;
	uint64_t pause_ms;              /* after a 421 from one of its hosts */
};
/* The largest max_message_size (SPEC §3): a FILE:LINE error beyond it. */
#define CONFIG_MESSAGE_SIZE_MAX ((uint64_t)1 << 30)
/* [dkim] (SPEC §3, §5): one signing key, read and checked when the
 * configuration is loaded. */
enum config_dkim_sign { CONFIG_DKIM_SIGN_DIRECT, CONFIG_DKIM_SIGN_ALL, CONFIG_DKIM_SIGN_NONE };
enum config_dkim_type { CONFIG_DKIM_RSA, CONFIG_DKIM_ED25519 };

struct config_dkim_key {
	char *domain;           /* lowercase A-label form, no trailing dot */
	char *selector;         /* lowercase */
	char *file;             /* absolute path, as printed */
	char *pem;              /* the file's bytes (a PEM private key), NUL-terminated */
	size_t pem_len;
	enum config_dkim_type type;
	unsigned bits;          /* RSA modulus bits; 256 for Ed25519 */
	int line;
};

struct config {
	int refs;               /* extra references (config_ref); 0: one owner */
	char *path;             /* the file read, as given */
	char *dir;              /* its directory, for relative paths */

	struct {
		struct config_listen *listen;
		size_t nlisten;
		char *hostname;
		struct config_cidr *allow;
		size_t nallow;
		unsigned max_connections;
		unsigned max_connections_per_client;
		unsigned outside_connections;   /* clients outside allow_networks, together */
		uint64_t max_message_size;      /* bytes */
		unsigned max_recipients;
		uint64_t idle_timeout_ms;
		char *tls_cert;                 /* absolute path or NULL */
		char *tls_key;
		enum config_bare_lf bare_lf;
		char *auth_file;
	} server;

	struct {
		struct config_domain *domains;
		size_t ndomains;
		enum config_match_on match_on;
	} routing;

	struct {
		char *host;                     /* NULL: no delivery service */
		uint16_t port;
		enum config_service_tls tls;
		char *ca_file;
		char *username;
		char *password_file;
		unsigned max_connections;
		unsigned rate_count;            /* rate = rate_count per rate_period_s */
		unsigned rate_period_s;         /* 1, 60 or 3600 */
		double rate_per_sec;
		unsigned max_recipients_per_message;
		uint64_t pause_ms;
		uint64_t connect_timeout_ms;
		uint64_t timeout_ms;
		char *envelope_from;            /* NULL: keep the sender's */
		bool verp;
	} service;

	struct {
		enum config_direct_tls tls;
		uint16_t port;
		char **dns_servers;             /* "127.0.0.1:5353", "[::1]:53" */
		size_t ndns_servers;
		unsigned max_connections_per_domain;
		enum config_direct_dest internal_destinations;
		uint64_t connect_timeout_ms;
		uint64_t timeout_ms;
	} direct;

	struct {
		struct config_dkim_key *keys;   /* "DOMAIN SELECTOR FILE" entries */
		size_t nkeys;
		enum config_dkim_sign sign;
	} dkim;

	struct {
		char *dir;
		uint64_t retry_min_ms;
		uint64_t retry_max_ms;
		uint64_t lifetime_ms;
		uint64_t max_size;              /* bytes of mail queued at most; 0: no cap */
		uint64_t delay_warning_ms;      /* 0: never */
	} queue;

	struct config_destination *destinations;   /* in the file's order */
	size_t ndestinations;

	struct {
		char *db;
		enum config_apply_to apply_to;
		char *bounce_address;           /* NULL: none */
	} suppression;

	struct {
		char *file;
	} log;

	struct {
		char *socket;
	} control;

	struct {
		struct config_hostport listen;  /* HTTP /metrics and /health (SPEC §9) */
	} metrics;
};

struct config_diag {
	char *text;             /* "FILE:LINE: message", ready to print */
	bool warning;
};

struct config_diags {
	struct config_diag *v;
	size_t n;
	size_t nerrors;
};

int config_load(const char *path, struct config **out, struct config_diags *diags);
void config_free(struct config *cfg);
/* Shared ownership: config_ref() adds a reference, config_unref() drops one
 * and frees the configuration with the last. */
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);
void config_diags_free(struct config_diags *diags);
void config_print(const struct config *cfg, FILE *fp);
const char *config_default_path(void);
/* The lowercase A-label form of a domain name written in either form (one
 * trailing dot dropped), as verified_domains entries are stored: UTS #46
 * nontransitional processing, then transitional (libidn2). NULL for an
 * invalid name or an address literal. The caller frees the result. */
char *config_domain_ascii(const char *in, size_t n);
/* The [destination NAME] policy that covers DOMAIN (the lowercase A-label
 * form), or NULL: that domain or a parent of it on a dot boundary is one of
 * the policy's domains. Policies never overlap (config_load refuses it). */
const struct config_destination *config_destination_for(const struct config *cfg,
                                                        const char *domain);
/* [suppression] bounce_address or one of its +tag forms, case-insensitive
 * (SPEC §6). With tag != NULL, *tag points at the tag inside addr (after
 * the '+') and *tag_len is its length (0 without a tag). */
bool config_is_bounce_address(const struct config *cfg, const char *addr,
                              const char **tag, size_t *tag_len);
/* A DKIM selector: dot-separated labels of letters, digits and hyphens
 * (RFC 6376 §3.1), as [dkim] keys accepts it. */
bool config_dkim_selector_valid(const char *s);

/* Value parsers, exposed for reuse and unit tests. Each returns 0 or -1. */
int config_parse_duration(const char *s, uint64_t *ms);
int config_parse_size(const char *s, uint64_t *bytes);
int config_parse_rate(const char *s, unsigned *count, unsigned *period_s);
int config_parse_cidr(const char *s, struct config_cidr *out);
bool config_cidr_contains(const struct config_cidr *net, const struct sockaddr *sa);

#endif
