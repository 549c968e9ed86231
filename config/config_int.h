/*
 * NAME
 *	config_int - the configuration loader's parts, shared among its files
 * SUMMARY
 *	Not an interface for others (that is config/config.h): the key table,
 *	the loading context with its diagnostics, and the functions the files
 *	of config/ call in each other. Internal names start with cfg_ (the
 *	public ones with config_), so that none can clash with another
 *	library's in the programs that link them all.
 * DESCRIPTION
 *	config/config.c             the key table, loading (libinih callbacks),
 *	                            defaults and the checks across keys, the
 *	                            life cycle (load, ref, free)
 *	config/config_value.c       (pure) values from text and back: numbers,
 *	                            durations, sizes, rates, networks, host:port,
 *	                            paths
 *	config/config_keys.c        a key's value set into struct config, with its
 *	                            FILE:LINE diagnostics: lists and scalars
 *	config/config_names.c       (pure) domain names and addresses in A-label
 *	                            form (libidn2); the bounce_address rule
 *	config/config_dkim.c        [dkim] keys: the key files read and checked
 *	config/config_destination.c [destination NAME] sections
 *	config/config_print.c       the effective configuration written as INI
 *	config/ini_reader.c         the line reader under libinih
 * TOUCHES
 *	Nothing: declarations only.
 */
#ifndef HK_CONFIG_CONFIG_INT_H
#define HK_CONFIG_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "config/ini_reader.h"

#define COUNT_MAX 1000000u      /* for every count: a typo guard, not a policy */

#define SEC(x) ((uint64_t)(x) * 1000u)
#define MIN(x) (SEC(x) * 60u)
#define HOUR(x) (MIN(x) * 60u)
#define DAY(x) (HOUR(x) * 24u)

/* ------------------------------------------------------------------ */
/* The key table (config.c)                                            */
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

struct key_def {
	enum section sec;
	const char *name;
	enum ktype type;
	size_t off;                     /* of the field in struct config */
	const char *const *words;       /* T_ENUM: the names, in enum order */
};

/* In the order of SPEC §3, which is also the order config_print() uses. */
extern const struct key_def cfg_keys[K_COUNT];
extern const char *const cfg_section_names[S_COUNT];

#define FIELD(cfg, k, type) ((type *)(void *)((char *)(cfg) + cfg_keys[k].off))
#define CFIELD(cfg, k, type) ((const type *)(const void *)((const char *)(cfg) + cfg_keys[k].off))

/* The keys of a [destination NAME] section, in the order config_print()
 * uses (their names: config_destination.c). */
enum dest_key { DK_DOMAINS, DK_MAXCONN, DK_MAXRCPT, DK_RATE, DK_PAUSE, DK_COUNT };

/* ------------------------------------------------------------------ */
/* Loading context and diagnostics (config.c)                          */
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

/* One diagnostic at LINE (0: none) of the file; sorted by line at the end. */
void cfg_diag(struct load_ctx *c, int line, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define ERR(c, line, ...) cfg_diag((c), (line), false, __VA_ARGS__)
#define WARN(c, line, ...) cfg_diag((c), (line), true, __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Values from text and back (config_value.c)                          */
/* ------------------------------------------------------------------ */

char *cfg_trim(char *s);
void cfg_ascii_lower(char *s);
int cfg_parse_uint(const char *s, uint64_t *out);
int cfg_parse_port(const char *s, uint16_t *port);
int cfg_cidr_parse(const char *s, struct config_cidr *out, bool *host_bits);
int cfg_hostport_parse(const char *s, char host[64], int *family, uint16_t *port,
                       uint16_t default_port);
char *cfg_path_resolve(const char *dir, const char *p);
char *cfg_dir_of(const char *path);
int cfg_file_readable(const char *p);
void cfg_format_duration(uint64_t ms, char *out, size_t n);
void cfg_format_size(uint64_t b, char *out, size_t n);

/* ------------------------------------------------------------------ */
/* Setting a key (config_keys.c)                                       */
/* ------------------------------------------------------------------ */

void *cfg_grow(struct load_ctx *c, void *v, size_t n, size_t size);
bool cfg_is_list(enum ktype t);
void cfg_list_add(struct load_ctx *c, enum key_id k, const char *value, int line);
void cfg_list_clear(struct config *cfg, enum key_id k);
void cfg_set_value(struct load_ctx *c, enum key_id k, const char *v, int line);

/* ------------------------------------------------------------------ */
/* Names (config_names.c), [dkim] (config_dkim.c), [destination]       */
/* (config_destination.c)                                              */
/* ------------------------------------------------------------------ */

char *cfg_address_ascii(const char *in);

void cfg_dkim_key_add(struct load_ctx *c, const char *e, int line);
void cfg_dkim_keys_clear(struct config *cfg);

void cfg_dest_begin(struct load_ctx *c, int line, const char *rest);
void cfg_dest_key(struct load_ctx *c, const char *name, const char *value, int line,
                  bool continuation);
void cfg_dest_check(struct load_ctx *c);
void cfg_dest_print(const struct config *cfg, FILE *fp);
void cfg_dest_free(struct config *cfg);

#endif
