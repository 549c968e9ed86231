/*
 * NAME
 *	test_config - unit tests of config/ (SPEC §3)
 * SUMMARY
 *	Every test writes its configuration into a fresh temporary directory,
 *	loads it, and compares the fields or the exact diagnostics
 *	("FILE:LINE: message") with what SPEC §3 and config.h promise.
 * DESCRIPTION
 *	Covered: the defaults; a file that sets every key; the example block
 *	of SPEC §3 as it stands; each kind of syntax error, value error and
 *	contradiction with its line; several errors in one load; lists on
 *	continuation lines (SPEC §4 rows 5 and 6); comments; relative paths;
 *	the socket length limit; the value parsers; the printed configuration
 *	read back; the bundled configuration files; $HIKYAKU_CONFIG.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	A directory under $TMPDIR (or /tmp) per test, removed afterwards;
 *	reads config/hikyaku.conf and config/hikyaku.conf.example of the
 *	source tree.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <check.h>
#include <glib.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tdir[256];          /* the test's directory, as created */
static char rdir[256];          /* the same, without symbolic links */
static char conf[300];          /* tdir/hikyaku.conf */

static void setup(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(tdir, sizeof(tdir), "%s/hk-config-XXXXXX", t && *t ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	char *r = realpath(tdir, NULL);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_lt(strlen(r), sizeof(rdir));
	strcpy(rdir, r);
	free(r);
	snprintf(conf, sizeof(conf), "%s/hikyaku.conf", tdir);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void teardown(void)
{
	nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes content to tdir/name (directories created as needed). */
static void write_file(const char *name, const char *content)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", tdir, name);
	for (char *s = strchr(p + strlen(tdir) + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		mkdir(p, 0700);
		*s = '/';
	}
	FILE *fp = fopen(p, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(content, fp);
	ck_assert_int_eq(fclose(fp), 0);
}

static int load(const char *content, struct config **cfg, struct config_diags *d)
{
	write_file("hikyaku.conf", content);
	memset(d, 0, sizeof(*d));
	return config_load(conf, cfg, d);
}

/* The number of the first line of text that contains needle. */
static int line_with(const char *text, const char *needle)
{
	const char *at = strstr(text, needle);
	int line = 1;

	ck_assert_msg(at != NULL, "\"%s\" not in the test's file", needle);
	for (const char *p = text; p < at; p++)
		line += *p == '\n';
	return line;
}

static char *all_diags(const struct config_diags *d)
{
	static char all[8192];

	all[0] = '\0';
	for (size_t i = 0; i < d->n; i++) {
		strncat(all, d->v[i].text, sizeof(all) - strlen(all) - 2);
		strcat(all, "\n");
	}
	return all;
}

static bool has_diag(const struct config_diags *d, bool warning, const char *text)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].warning == warning && strcmp(d->v[i].text, text) == 0)
			return true;
	return false;
}

/* "conf:LINE: message" (or "conf: message" for line 0) must be among d. */
#define EXPECT_DIAG(d, warning, line, ...) do {					\
	char msg_[1024], want_[PATH_MAX + 1100];				\
	snprintf(msg_, sizeof(msg_), __VA_ARGS__);				\
	if ((line) > 0)								\
		snprintf(want_, sizeof(want_), "%s:%d: %s%s", conf, (int)(line),\
			 (warning) ? "warning: " : "", msg_);			\
	else									\
		snprintf(want_, sizeof(want_), "%s: %s%s", conf,		\
			 (warning) ? "warning: " : "", msg_);			\
	ck_assert_msg(has_diag((d), (warning), want_),				\
		      "missing diagnostic:\n%s\nhave:\n%s", want_, all_diags(d));\
} while (0)
#define EXPECT_ERR(d, line, ...) EXPECT_DIAG(d, false, line, __VA_ARGS__)
#define EXPECT_WARN(d, line, ...) EXPECT_DIAG(d, true, line, __VA_ARGS__)

/*
 * The number of diagnostics, less the warning about this machine's own
 * name when it has no dot (a test host is often called "vm").
 */
static size_t ndiag(const struct config_diags *d)
{
	char own[sizeof(conf) + 40];
	size_t n = 0;

	snprintf(own, sizeof(own), "%s: warning: hostname \"", conf);
	for (size_t i = 0; i < d->n; i++)
		n += strncmp(d->v[i].text, own, strlen(own)) != 0;
	return n;
}

/* A file that loads with errors: *cfg stays NULL. */
static struct config_diags load_bad(const char *content)
{
	struct config *cfg = (struct config *)1;
	struct config_diags d;

	ck_assert_int_eq(load(content, &cfg, &d), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(d.nerrors > 0, "no error counted");
	return d;
}

static struct config *load_ok(const char *content, struct config_diags *d)
{
	struct config *cfg = NULL;
	int rc = load(content, &cfg, d);

	ck_assert_msg(rc == 0, "load failed:\n%s", all_diags(d));
	ck_assert_ptr_nonnull(cfg);
	ck_assert_uint_eq(d->nerrors, 0);
	return cfg;
}

static char *path_in(const char *dir, const char *name)
{
	static char p[4][2 * PATH_MAX];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static char *cidr_str(const struct config_cidr *c)
{
	static char s[4][INET6_ADDRSTRLEN + 8];
	static int i;
	char a[INET6_ADDRSTRLEN];

	i = (i + 1) % 4;
	inet_ntop(c->family, c->addr, a, sizeof(a));
	snprintf(s[i], sizeof(s[i]), "%s/%u", a, c->prefix);
	return s[i];
}

/* ------------------------------------------------------------------ */
/* Defaults, a full file, the SPEC's own example                      */
/* ------------------------------------------------------------------ */

START_TEST(test_defaults)
{
	struct config_diags d;
	struct config *cfg = load_ok("; nothing but a comment\n", &d);

	ck_assert_str_eq(cfg->path, conf);
	ck_assert_str_eq(cfg->dir, rdir);
	ck_assert_uint_eq(cfg->server.nlisten, 1);
	ck_assert_str_eq(cfg->server.listen[0].host, "127.0.0.1");
	ck_assert_uint_eq(cfg->server.listen[0].port, 2525);
	ck_assert_ptr_nonnull(cfg->server.hostname);
	ck_assert_uint_eq(cfg->server.nallow, 2);
	ck_assert_str_eq(cidr_str(&cfg->server.allow[0]), "127.0.0.0/8");
	ck_assert_str_eq(cidr_str(&cfg->server.allow[1]), "::1/128");
	ck_assert_uint_eq(cfg->server.max_connections, 1000);
	ck_assert_uint_eq(cfg->server.max_connections_per_client, 100);
	ck_assert_uint_eq(cfg->server.max_message_size, 25u << 20);
	ck_assert_uint_eq(cfg->server.max_recipients, 100);
	ck_assert_uint_eq(cfg->server.idle_timeout_ms, 300000);
	ck_assert_ptr_null(cfg->server.tls_cert);
	ck_assert_ptr_null(cfg->server.tls_key);
	ck_assert_int_eq(cfg->server.bare_lf, BARE_LF_NORMALIZE);
	ck_assert_ptr_null(cfg->server.auth_file);

	ck_assert_uint_eq(cfg->routing.ndomains, 0);
	ck_assert_int_eq(cfg->routing.match_on, MATCH_HEADER_FROM);

	ck_assert_ptr_null(cfg->service.host);
	ck_assert_uint_eq(cfg->service.port, 587);
	ck_assert_int_eq(cfg->service.tls, SERVICE_TLS_STARTTLS);
	ck_assert_ptr_null(cfg->service.ca_file);
	ck_assert_ptr_null(cfg->service.username);
	ck_assert_ptr_null(cfg->service.password_file);
	ck_assert_uint_eq(cfg->service.max_connections, 10);
	ck_assert_uint_eq(cfg->service.rate_count, 14);
	ck_assert_uint_eq(cfg->service.rate_period_s, 1);
	ck_assert_double_eq(cfg->service.rate_per_sec, 14.0);
	ck_assert_uint_eq(cfg->service.max_recipients_per_message, 50);
	ck_assert_uint_eq(cfg->service.pause_ms, 300000);
	ck_assert_uint_eq(cfg->service.connect_timeout_ms, 30000);
	ck_assert_uint_eq(cfg->service.timeout_ms, 300000);
	ck_assert_ptr_null(cfg->service.envelope_from);
	ck_assert(!cfg->service.verp);

	ck_assert_int_eq(cfg->direct.tls, DIRECT_TLS_MAY);
	ck_assert_uint_eq(cfg->direct.port, 25);
	ck_assert_uint_eq(cfg->direct.ndns_servers, 0);
	ck_assert_uint_eq(cfg->direct.max_connections_per_domain, 10);
	ck_assert_int_eq(cfg->direct.internal_destinations, DIRECT_DEST_PRIVATE);
	ck_assert_uint_eq(cfg->direct.connect_timeout_ms, 30000);
	ck_assert_uint_eq(cfg->direct.timeout_ms, 300000);

	ck_assert_str_eq(cfg->queue.dir, "/var/spool/hikyaku");
	ck_assert_uint_eq(cfg->queue.retry_min_ms, 60000);
	ck_assert_uint_eq(cfg->queue.retry_max_ms, 3600000);
	ck_assert_uint_eq(cfg->queue.lifetime_ms, 5ull * 86400000);
	ck_assert_str_eq(cfg->suppression.db, "/var/lib/hikyaku/suppression.db");
	ck_assert_int_eq(cfg->suppression.apply_to, APPLY_SERVICE);
	ck_assert_ptr_null(cfg->suppression.bounce_address);
	ck_assert_str_eq(cfg->log.file, "/var/log/hikyaku/hikyaku.jsonl");
	ck_assert_str_eq(cfg->control.socket, "/run/hikyaku/control.sock");
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* Every key, none at its default. */
static const char full[] =
	"[server]\n"
	"listen = 0.0.0.0:25, [::]:2525\n"
	"    [0:0::1]:587\n"
	"hostname = Relay.Example.JP\n"
	"allow_networks = 10.0.0.0/8,192.168.1.0/24\n"
	"\t2001:db8::/32, 192.0.2.7\n"
	"max_connections = 200\n"
	"max_connections_per_client = 20\n"
	"max_message_size = 10m\n"
	"max_recipients = 500\n"
	"idle_timeout = 90s\n"
	"tls_cert = cert.pem\n"
	"tls_key = ./key.pem\n"
	"bare_lf = reject\n"
	"auth_file = auth/users\n"
	"\n"
	"[routing]\n"
	"verified_domains = interfactory1.co.jp, Example.CO.JP.\n"
	"    test.com\n"
	"    shop@Mail.例え.jp\n"
	"match_on = envelope_from\n"
	"\n"
	"[service]\n"
	"host = email-smtp.ap-northeast-1.amazonaws.com\n"
	"port = 465\n"
	"tls = smtps\n"
	"ca_file = ca.pem\n"
	"username = AKIAEXAMPLE\n"
	"password_file = secret\n"
	"max_connections = 3\n"
	"rate = 100/m\n"
	"max_recipients_per_message = 25\n"
	"pause = 10m\n"
	"connect_timeout = 15s\n"
	"timeout = 2m\n"
	"envelope_from = bounces@mail.shop.example\n"
	"verp = yes\n"
	"\n"
	"[direct]\n"
	"tls = verify\n"
	"port = 2526\n"
	"dns_servers = 127.0.0.1:5353, ::1\n"
	"    [2001:db8::53]:5353, 192.0.2.53\n"
	"max_connections_per_domain = 4\n"
	"connect_timeout = 1m\n"
	"timeout = 10m\n"
	"\n"
	"[queue]\n"
	"dir = ../spool\n"
	"retry_min = 30s\n"
	"retry_max = 2h\n"
	"lifetime = 3d\n"
	"\n"
	"[suppression]\n"
	"db = db/suppression.db\n"
	"apply_to = all\n"
	"bounce_address = bounces@mail.shop.example\n"
	"\n"
	"[log]\n"
	"file = /var/log/x.jsonl\n"
	"\n"
	"[control]\n"
	"socket = ctl.sock\n";

static void write_full_files(void)
{
	write_file("cert.pem", "cert\n");
	write_file("key.pem", "key\n");
	write_file("auth/users", "user:$y$...\n");
	write_file("ca.pem", "ca\n");
	write_file("secret", "password\n");
}

START_TEST(test_full)
{
	struct config_diags d;
	char parent[sizeof(rdir)];

	write_full_files();
	struct config *cfg = load_ok(full, &d);
	ck_assert_msg(ndiag(&d) == 0, "unexpected diagnostics:\n%s", all_diags(&d));

	ck_assert_uint_eq(cfg->server.nlisten, 3);
	ck_assert_str_eq(cfg->server.listen[0].host, "0.0.0.0");
	ck_assert_uint_eq(cfg->server.listen[0].port, 25);
	ck_assert_str_eq(cfg->server.listen[1].host, "::");
	ck_assert_uint_eq(cfg->server.listen[1].port, 2525);
	ck_assert_str_eq(cfg->server.listen[2].host, "::1");
	ck_assert_uint_eq(cfg->server.listen[2].port, 587);
	ck_assert_str_eq(cfg->server.hostname, "relay.example.jp");
	ck_assert_uint_eq(cfg->server.nallow, 4);
	ck_assert_str_eq(cidr_str(&cfg->server.allow[0]), "10.0.0.0/8");
	ck_assert_str_eq(cidr_str(&cfg->server.allow[1]), "192.168.1.0/24");
	ck_assert_str_eq(cidr_str(&cfg->server.allow[2]), "2001:db8::/32");
	ck_assert_str_eq(cidr_str(&cfg->server.allow[3]), "192.0.2.7/32");
	ck_assert_uint_eq(cfg->server.max_connections, 200);
	ck_assert_uint_eq(cfg->server.max_connections_per_client, 20);
	ck_assert_uint_eq(cfg->server.max_message_size, 10u << 20);
	ck_assert_uint_eq(cfg->server.max_recipients, 500);
	ck_assert_uint_eq(cfg->server.idle_timeout_ms, 90000);
	ck_assert_str_eq(cfg->server.tls_cert, path_in(rdir, "cert.pem"));
	ck_assert_str_eq(cfg->server.tls_key, path_in(rdir, "key.pem"));
	ck_assert_int_eq(cfg->server.bare_lf, BARE_LF_REJECT);
	ck_assert_str_eq(cfg->server.auth_file, path_in(rdir, "auth/users"));

	ck_assert_uint_eq(cfg->routing.ndomains, 4);
	const struct config_domain *dm = cfg->routing.domains;
	ck_assert_str_eq(dm[0].entry, "interfactory1.co.jp");
	ck_assert_str_eq(dm[0].ascii, "interfactory1.co.jp");
	ck_assert_int_eq(dm[0].line, line_with(full, "verified_domains"));
	ck_assert_str_eq(dm[1].entry, "Example.CO.JP.");
	ck_assert_str_eq(dm[1].ascii, "example.co.jp");
	ck_assert(!dm[1].is_address);
	ck_assert_int_eq(dm[1].line, line_with(full, "verified_domains"));
	ck_assert_str_eq(dm[2].ascii, "test.com");
	ck_assert_int_eq(dm[2].line, line_with(full, "    test.com"));
	ck_assert_str_eq(dm[3].entry, "shop@Mail.例え.jp");
	ck_assert_str_eq(dm[3].ascii, "shop@mail.xn--r8jz45g.jp");
	ck_assert(dm[3].is_address);
	ck_assert_int_eq(dm[3].line, line_with(full, "shop@"));
	ck_assert_int_eq(cfg->routing.match_on, MATCH_ENVELOPE_FROM);

	ck_assert_str_eq(cfg->service.host, "email-smtp.ap-northeast-1.amazonaws.com");
	ck_assert_uint_eq(cfg->service.port, 465);
	ck_assert_int_eq(cfg->service.tls, SERVICE_TLS_SMTPS);
	ck_assert_str_eq(cfg->service.ca_file, path_in(rdir, "ca.pem"));
	ck_assert_str_eq(cfg->service.username, "AKIAEXAMPLE");
	ck_assert_str_eq(cfg->service.password_file, path_in(rdir, "secret"));
	ck_assert_uint_eq(cfg->service.max_connections, 3);
	ck_assert_uint_eq(cfg->service.rate_count, 100);
	ck_assert_uint_eq(cfg->service.rate_period_s, 60);
	ck_assert_double_eq_tol(cfg->service.rate_per_sec, 100.0 / 60, 1e-9);
	ck_assert_uint_eq(cfg->service.max_recipients_per_message, 25);
	ck_assert_uint_eq(cfg->service.pause_ms, 600000);
	ck_assert_uint_eq(cfg->service.connect_timeout_ms, 15000);
	ck_assert_uint_eq(cfg->service.timeout_ms, 120000);
	ck_assert_str_eq(cfg->service.envelope_from, "bounces@mail.shop.example");
	ck_assert(cfg->service.verp);

	ck_assert_int_eq(cfg->direct.tls, DIRECT_TLS_VERIFY);
	ck_assert_uint_eq(cfg->direct.port, 2526);
	ck_assert_uint_eq(cfg->direct.ndns_servers, 4);
	ck_assert_str_eq(cfg->direct.dns_servers[0], "127.0.0.1:5353");
	ck_assert_str_eq(cfg->direct.dns_servers[1], "[::1]:53");
	ck_assert_str_eq(cfg->direct.dns_servers[2], "[2001:db8::53]:5353");
	ck_assert_str_eq(cfg->direct.dns_servers[3], "192.0.2.53:53");
	ck_assert_uint_eq(cfg->direct.max_connections_per_domain, 4);
	ck_assert_uint_eq(cfg->direct.connect_timeout_ms, 60000);
	ck_assert_uint_eq(cfg->direct.timeout_ms, 600000);

	strcpy(parent, rdir);
	*strrchr(parent, '/') = '\0';
	ck_assert_str_eq(cfg->queue.dir, path_in(parent, "spool"));
	ck_assert_uint_eq(cfg->queue.retry_min_ms, 30000);
	ck_assert_uint_eq(cfg->queue.retry_max_ms, 7200000);
	ck_assert_uint_eq(cfg->queue.lifetime_ms, 3ull * 86400000);
	ck_assert_str_eq(cfg->suppression.db, path_in(rdir, "db/suppression.db"));
	ck_assert_int_eq(cfg->suppression.apply_to, APPLY_ALL);
	ck_assert_str_eq(cfg->suppression.bounce_address, "bounces@mail.shop.example");
	ck_assert_str_eq(cfg->log.file, "/var/log/x.jsonl");
	ck_assert_str_eq(cfg->control.socket, path_in(rdir, "ctl.sock"));
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* The block of SPEC §3, word for word, with its example values. */
static const char spec_block[] =
	"[server]\n"
	"listen = 127.0.0.1:2525          ; comma-separated host:port list; [::1]:2525 for IPv6\n"
	"hostname = relay.example.jp      ; greeting, EHLO, Received:, DSN From (default: the fully\n"
	"                                 ; qualified host name; --check warns if it has no dot)\n"
	"allow_networks = 127.0.0.0/8, ::1/128   ; clients that may relay without AUTH\n"
	"max_connections = 1000\n"
	"max_connections_per_client = 100 ; per client address; beyond it: 421 4.7.0\n"
	"max_message_size = 25M\n"
	"max_recipients = 100\n"
	"idle_timeout = 5m\n"
	"tls_cert =                       ; PEM chain; when set with tls_key, STARTTLS is offered\n"
	"tls_key =\n"
	"bare_lf = normalize              ; normalize: a line ending in bare LF is read as if it ended in CRLF\n"
	"                                 ; (it never ends DATA); reject: such a mail is refused\n"
	"auth_file =                      ; when set, AUTH PLAIN and LOGIN are offered, only after STARTTLS;\n"
	"                                 ; lines \"user:HASH\" with crypt(3) hashes ($y$, $6$, $2b$)\n"
	"\n"
	"[routing]\n"
	"verified_domains = interfactory1.co.jp, example.co.jp   ; example; default empty\n"
	"    test.com\n"
	"match_on = header_from           ; header_from or envelope_from\n"
	"\n"
	"[service]                        ; the delivery service's SMTP endpoint; no host = none\n"
	"host = email-smtp.ap-northeast-1.amazonaws.com          ; example; default empty\n"
	"port = 587\n"
	"tls = starttls                   ; starttls | smtps (implicit TLS) | none (tests only; warns)\n"
	"ca_file =                        ; default: the system trust store; the name is always verified\n"
	"username =\n"
	"password_file =                  ; first line is the password\n"
	"max_connections = 10\n"
	"rate = 14/s                      ; sending quota in recipients (as SES counts): a token bucket\n"
	"                                 ; holding one second's worth (at least 1); a transaction never\n"
	"                                 ; carries more recipients than the bucket holds\n"
	"max_recipients_per_message = 50  ; larger mails are split into several transactions\n"
	"pause = 5m                       ; after throttling or an authentication failure; a reload\n"
	"                                 ; lifts the pause\n"
	"connect_timeout = 30s\n"
	"timeout = 5m                     ; for each reply (10m after the final dot, RFC 5321 §4.5.3.2)\n"
	"envelope_from =                  ; empty: keep the sender's envelope address; else send with this\n"
	"                                 ; (verified) address so that the service's bounces come back to\n"
	"                                 ; hikyaku (§6); the original sender is kept in the queue.\n"
	"                                 ; The service also verifies the envelope sender: --check warns\n"
	"                                 ; when this is empty, and a mail whose envelope sender matches\n"
	"                                 ; no verified entry logs a warning in `received`\n"
	"verp = no                        ; yes: envelope_from becomes local+QUEUEID@domain, so a bounce\n"
	"                                 ; names the mail it belongs to\n"
	"\n"
	"[direct]\n"
	"tls = may                        ; may (opportunistic) | encrypt | verify | none\n"
	"port = 25                        ; for tests only\n"
	"dns_servers =                    ; default: the system resolver; e.g. 127.0.0.1:5353 for tests\n"
	"max_connections_per_domain = 10\n"
	"connect_timeout = 30s\n"
	"timeout = 5m\n"
	"\n"
	"[queue]\n"
	"dir = /var/spool/hikyaku\n"
	"retry_min = 1m                   ; first retry; doubles each time …\n"
	"retry_max = 1h                   ; … up to this\n"
	"lifetime = 5d                    ; then the mail expires and the sender gets a DSN\n"
	"\n"
	"[suppression]\n"
	"db = /var/lib/hikyaku/suppression.db\n"
	"apply_to = service               ; service (as the delivery service does) | all\n"
	"bounce_address =                 ; e.g. bounces@mail.shop.example: DSNs sent here (or to its\n"
	"                                 ; +tag forms) are read, not relayed (§6)\n"
	"\n"
	"[log]\n"
	"file = /var/log/hikyaku/hikyaku.jsonl\n"
	"\n"
	"[control]\n"
	"socket = /run/hikyaku/control.sock\n"
	;

START_TEST(test_spec_example)
{
	struct config_diags d;
	struct config *cfg = load_ok(spec_block, &d);

	ck_assert_str_eq(cfg->server.hostname, "relay.example.jp");
	ck_assert_uint_eq(cfg->server.nlisten, 1);
	ck_assert_uint_eq(cfg->server.nallow, 2);
	ck_assert_ptr_null(cfg->server.tls_cert);
	ck_assert_ptr_null(cfg->server.auth_file);
	ck_assert_uint_eq(cfg->routing.ndomains, 3);
	ck_assert_str_eq(cfg->routing.domains[0].ascii, "interfactory1.co.jp");
	ck_assert_str_eq(cfg->routing.domains[1].ascii, "example.co.jp");
	ck_assert_str_eq(cfg->routing.domains[2].ascii, "test.com");
	ck_assert_int_eq(cfg->routing.domains[2].line, line_with(spec_block, "    test.com"));
	ck_assert_str_eq(cfg->service.host, "email-smtp.ap-northeast-1.amazonaws.com");
	ck_assert_uint_eq(cfg->service.rate_count, 14);
	ck_assert_uint_eq(cfg->direct.ndns_servers, 0);
	ck_assert_str_eq(cfg->queue.dir, "/var/spool/hikyaku");
	/* host set, envelope_from empty: the one warning of the block */
	EXPECT_WARN(&d, line_with(spec_block, "host = email-smtp"),
		    "[service] envelope_from is empty: the delivery service also verifies the "
		    "envelope sender, and its bounces go to the original senders instead of hikyaku");
	ck_assert_uint_eq(ndiag(&d), 1);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Syntax                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_long_line)
{
	char text[2048], l199[200], l200[201], v199[200];
	struct config_diags d;

	memset(l199, 'x', 199);
	l199[0] = ';';
	l199[199] = '\0';
	memset(l200, 'x', 200);
	l200[0] = ';';
	l200[200] = '\0';
	/* "dir = /" and 192 more bytes: exactly 199 */
	snprintf(v199, sizeof(v199), "dir = /%0192d", 0);
	ck_assert_uint_eq(strlen(v199), 199);

	/* 199 bytes are fine, with LF or CRLF */
	snprintf(text, sizeof(text), "%s\n%s\r\n[queue]\n%s\n", l199, l199, v199);
	struct config *cfg = load_ok(text, &d);
	ck_assert_uint_eq(strlen(cfg->queue.dir), 193);
	config_free(cfg);
	config_diags_free(&d);

	/*
	 * 200 bytes are not; the rest of the long line is never read as a
	 * line of its own (the key hidden at its end is not seen), and the
	 * line numbers after it stay right.
	 */
	snprintf(text, sizeof(text),
		 "[server]\n"
		 "%s\n"
		 "hostname = a.example\n"
		 "; %0190d bogus = 1\n"
		 "max_connections = x\n", l200, 0);
	d = load_bad(text);
	EXPECT_ERR(&d, 2, "line is longer than 199 bytes");
	EXPECT_ERR(&d, 4, "line is longer than 199 bytes");
	EXPECT_ERR(&d, 5, "max_connections: \"x\" is not a number");
	ck_assert_uint_eq(d.nerrors, 3);
	config_diags_free(&d);

	/* A long line without a newline at the end of the file */
	snprintf(text, sizeof(text), "[server]\n%s", l200);
	d = load_bad(text);
	EXPECT_ERR(&d, 2, "line is longer than 199 bytes");
	config_diags_free(&d);

	/* A long key line: its continuation lines are not read as another key's */
	snprintf(text, sizeof(text),
		 "[routing]\n"
		 "match_on = header_from\n"
		 "verified_domains = %0200d\n"
		 "    example.com\n", 0);
	d = load_bad(text);
	EXPECT_ERR(&d, 3, "line is longer than 199 bytes");
	ck_assert_uint_eq(ndiag(&d), 1);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_syntax_errors)
{
	static const char text[] =
		"[server\n"                             /* 1 */
		"max_connections = 5\n"                 /* 2: in no section: skipped */
		"[server] junk\n"                       /* 3 */
		"[server]\n"                            /* 4 */
		"    max_recipients = 5\n"              /* 5: indented first line */
		"max_connections 5\n"                   /* 6: no = */
		"    more\n"                            /* 7: belongs to line 6 */
		"hostname: relay.example.jp\n"          /* 8 */
		" = value\n"                            /* 9: belongs to line 8 */
		"= value\n"                             /* 10 */
		"bare_lf = reject\n"                    /* 11 */
		"[ser ;ver]\n"                          /* 12: comment before ] */
		"x\n"                                   /* 13 */
		"[routing] ; a comment is fine\n"       /* 14 */
		"match_on = envelope_from\n";           /* 15 */
	struct config_diags d = load_bad(text);

	EXPECT_ERR(&d, 1, "section header has no closing \"]\"");
	EXPECT_ERR(&d, 3, "text after the section header");
	EXPECT_ERR(&d, 5, "indented line continues no key (keys and sections start in column 0)");
	EXPECT_ERR(&d, 6, "expected \"key = value\", a [section] or a comment");
	EXPECT_ERR(&d, 8, "expected \"key = value\" (with \"=\", not \":\")");
	EXPECT_ERR(&d, 10, "no key name before \"=\"");
	EXPECT_ERR(&d, 12, "section header has no closing \"]\"");
	EXPECT_ERR(&d, 13, "expected \"key = value\", a [section] or a comment");
	ck_assert_msg(d.nerrors == 8, "%s", all_diags(&d));
	/* sorted by line */
	for (size_t i = 1; i < d.n; i++)
		ck_assert_int_le(atoi(d.v[i - 1].text + strlen(conf) + 1),
				 atoi(d.v[i].text + strlen(conf) + 1));
	config_diags_free(&d);
}
END_TEST

START_TEST(test_nul_bom_crlf)
{
	struct config_diags d;
	struct config *cfg;
	char p[PATH_MAX];

	cfg = load_ok("\xEF\xBB\xBF[server]\r\nmax_recipients = 7\r\n"
		      "listen = 127.0.0.1:1, \r\n    127.0.0.1:2\r\n", &d);
	ck_assert_uint_eq(cfg->server.max_recipients, 7);
	ck_assert_uint_eq(cfg->server.nlisten, 2);
	config_free(cfg);
	config_diags_free(&d);

	snprintf(p, sizeof(p), "%s/hikyaku.conf", tdir);
	FILE *fp = fopen(p, "w");
	fwrite("[server]\nmax_re\0cipients = 7\nmax_connections = 0\n", 1, 49, fp);
	fclose(fp);
	memset(&d, 0, sizeof(d));
	cfg = NULL;
	ck_assert_int_eq(config_load(conf, &cfg, &d), -1);
	EXPECT_ERR(&d, 2, "line contains a NUL byte");
	EXPECT_ERR(&d, 3, "max_connections: 0 is out of range (1 to 1000000)");
	config_diags_free(&d);
}
END_TEST

START_TEST(test_sections_and_keys)
{
	static const char text[] =
		"listen = 127.0.0.1:25\n"               /* 1 */
		"[server]\n"                            /* 2 */
		"max_connections = 5\n"                 /* 3 */
		"max_conections = 5\n"                  /* 4 */
		"[servre]\n"                            /* 5 */
		"max_connections = 5\n"                 /* 6: skipped */
		"    continued\n"                       /* 7: skipped */
		"[server]\n"                            /* 8: again: fine */
		"max_connections = 6\n"                 /* 9: but not its keys */
		"    7\n"                               /* 10: skipped with it */
		"Listen = 127.0.0.1:25\n"               /* 11 */
		"[routing]\n"                           /* 12 */
		"verified_domains = a.example\n"        /* 13 */
		"verified_domains = b.example\n"        /* 14 */
		"    c.example\n"                       /* 15: skipped */
		"[service]\n"                           /* 16 */
		"max_connections = 5\n"                 /* 17: same name, other section */
		"listen = 127.0.0.1:25\n"               /* 18: a key of another section */
		"[]\n";                                 /* 19 */
	struct config_diags d = load_bad(text);

	EXPECT_ERR(&d, 1, "key \"listen\" is outside any section");
	EXPECT_ERR(&d, 4, "unknown key \"max_conections\" in [server]");
	EXPECT_ERR(&d, 5, "unknown section [servre]");
	EXPECT_ERR(&d, 9, "max_connections: set twice in [server] (first on line 3)");
	EXPECT_ERR(&d, 11, "unknown key \"Listen\" in [server]");
	EXPECT_ERR(&d, 14, "verified_domains: set twice in [routing] (first on line 13)");
	EXPECT_ERR(&d, 18, "unknown key \"listen\" in [service]");
	EXPECT_ERR(&d, 19, "unknown section []");
	ck_assert_msg(d.nerrors == 8, "%s", all_diags(&d));
	config_diags_free(&d);
}
END_TEST

START_TEST(test_comments)
{
	static const char text[] =
		"; a comment\n"
		"# another\n"
		"   ; an indented comment before any key\n"
		"[routing] ; after a header\n"
		"verified_domains = a.example, b.example   ; inline ; with ; semicolons\n"
		"                                 ; an indented comment is no continuation\n"
		"    # nor is this\n"
		"\n"
		"    c.example ; an inline comment after a continuation value\n"
		"match_on = envelope_from;not a comment without a blank before it\n"
		"[server]\n"
		"hostname = relay.example.jp # not a comment either\n";
	struct config_diags d;
	struct config *cfg = NULL;

	ck_assert_int_eq(load(text, &cfg, &d), -1);
	EXPECT_ERR(&d, 10, "match_on: \"envelope_from;not a comment without a blank before it\" "
		   "is not header_from or envelope_from");
	EXPECT_ERR(&d, 12, "hostname: \"relay.example.jp # not a comment either\" "
		   "is not a valid host name");
	/* SPEC §3: comments never sit on a continuation line */
	EXPECT_ERR(&d, 9, "a continuation line cannot carry a comment (put it on a line of its own)");
	ck_assert_msg(d.nerrors == 3, "%s", all_diags(&d));
	config_diags_free(&d);

	cfg = load_ok("[routing]\n"
		      "verified_domains = a.example, b.example   ; inline\n"
		      "                                 ; an indented comment\n"
		      "    # another\n"
		      "\n"
		      "    c.example\n"
		      "match_on = envelope_from ; inline\n", &d);
	ck_assert_uint_eq(cfg->routing.ndomains, 3);
	ck_assert_str_eq(cfg->routing.domains[2].entry, "c.example");
	ck_assert_int_eq(cfg->routing.domains[2].line, 6);
	ck_assert_int_eq(cfg->routing.match_on, MATCH_ENVELOPE_FROM);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Values                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_bad_values)
{
	static const char text[] =
		"[server]\n"                                    /* 1 */
		"listen = 127.0.0.1, localhost:25\n"            /* 2 */
		"    ::1:25, [::1]:0, 127.0.0.1:2525\n"         /* 3 */
		"    127.0.0.1:2525\n"                          /* 4 */
		"hostname = -bad-.example\n"                    /* 5 */
		"allow_networks = 10.0.0.0/33, 10.0.0.1/8\n"    /* 6 */
		"    fe80::/129, 300.1.1.1, 10.0.0.0/x\n"       /* 7 */
		"max_connections = abc\n"                       /* 8 */
		"max_connections_per_client = -1\n"             /* 9 */
		"max_message_size = 25MB\n"                     /* 10 */
		"max_recipients = 0\n"                          /* 11 */
		"idle_timeout = 5 m\n"                          /* 12 */
		"tls_cert = missing.pem\n"                      /* 13 */
		"tls_key = .\n"                                 /* 14 */
		"bare_lf = crlf\n"                              /* 15 */
		"[routing]\n"                                   /* 16 */
		"verified_domains = good.example, bad..example\n" /* 17 */
		"    *.example.com, @example.com, a@b@c.example\n" /* 18 */
		"match_on = from\n"                             /* 19 */
		"[service]\n"                                   /* 20 */
		"host = bad_host.example\n"                     /* 21 */
		"port = 65536\n"                                /* 22 */
		"tls = ssl\n"                                   /* 23 */
		"rate = 0/s\n"                                  /* 24 */
		"pause = 0s\n"                                  /* 25 */
		"verp = true\n"                                 /* 26 */
		"envelope_from = no-at-sign\n"                  /* 27 */
		"timeout = 1w\n"                                /* 28 */
		"[direct]\n"                                    /* 29 */
		"tls = always\n"                                /* 30 */
		"dns_servers = 127.0.0.1:99999, dns.example\n"  /* 31 */
		"port = 0\n"                                    /* 32 */
		"[suppression]\n"                               /* 33 */
		"apply_to = none\n"                             /* 34 */
		"bounce_address = bounces@\n"                   /* 35 */
		"[queue]\n"                                     /* 36 */
		"dir =\n"                                       /* 37 */
		"retry_min = 99999999999999999999s\n"           /* 38 */
		"[log]\n"                                       /* 39 */
		"file =\n"                                      /* 40 */
		"[server]\n"                                    /* 41 */
		"tls_cert = \n";                                /* 42: duplicate */
	struct config_diags d = load_bad(text);

	EXPECT_ERR(&d, 2, "listen: \"127.0.0.1\" is not an IP address and port (host:port, [IPv6]:port)");
	EXPECT_ERR(&d, 2, "listen: \"localhost:25\" is not an IP address and port (host:port, [IPv6]:port)");
	EXPECT_ERR(&d, 3, "listen: \"::1:25\" is not an IP address and port (host:port, [IPv6]:port)");
	EXPECT_ERR(&d, 3, "listen: \"[::1]:0\" is not an IP address and port (host:port, [IPv6]:port)");
	EXPECT_ERR(&d, 4, "listen: \"127.0.0.1:2525\" is listed twice");
	EXPECT_ERR(&d, 5, "hostname: \"-bad-.example\" is not a valid host name");
	EXPECT_ERR(&d, 6, "allow_networks: \"10.0.0.0/33\" is not a network (address/prefix)");
	EXPECT_WARN(&d, 6, "allow_networks: \"10.0.0.1/8\" has host bits set; using 10.0.0.0/8");
	EXPECT_ERR(&d, 7, "allow_networks: \"fe80::/129\" is not a network (address/prefix)");
	EXPECT_ERR(&d, 7, "allow_networks: \"300.1.1.1\" is not a network (address/prefix)");
	EXPECT_ERR(&d, 7, "allow_networks: \"10.0.0.0/x\" is not a network (address/prefix)");
	EXPECT_ERR(&d, 8, "max_connections: \"abc\" is not a number");
	EXPECT_ERR(&d, 9, "max_connections_per_client: \"-1\" is not a number");
	EXPECT_ERR(&d, 10, "max_message_size: \"25MB\" is not a size (bytes, or a number with K, M or G)");
	EXPECT_ERR(&d, 11, "max_recipients: 0 is out of range (1 to 1000000)");
	EXPECT_ERR(&d, 12, "idle_timeout: \"5 m\" is not a duration (a number with s, m, h or d)");
	EXPECT_ERR(&d, 13, "tls_cert: cannot read \"%s/missing.pem\": No such file or directory", rdir);
	EXPECT_ERR(&d, 14, "tls_key: cannot read \"%s\": Is a directory", rdir);
	EXPECT_ERR(&d, 15, "bare_lf: \"crlf\" is not normalize or reject");
	EXPECT_ERR(&d, 17, "verified_domains: \"bad..example\" is not a valid domain");
	EXPECT_ERR(&d, 18, "verified_domains: \"*.example.com\" is not a valid domain");
	EXPECT_ERR(&d, 18, "verified_domains: \"@example.com\" is not a valid address (local@domain)");
	EXPECT_ERR(&d, 18, "verified_domains: \"a@b@c.example\" is not a valid address (local@domain)");
	EXPECT_ERR(&d, 19, "match_on: \"from\" is not header_from or envelope_from");
	EXPECT_ERR(&d, 21, "host: \"bad_host.example\" is not a host name or an IP address");
	EXPECT_ERR(&d, 22, "port: \"65536\" is not a port (1 to 65535)");
	EXPECT_ERR(&d, 23, "tls: \"ssl\" is not starttls, smtps or none");
	EXPECT_ERR(&d, 24, "rate: \"0/s\" is not a rate (N/s, N/m or N/h, N at least 1)");
	EXPECT_ERR(&d, 25, "pause: must be greater than zero");
	EXPECT_ERR(&d, 26, "verp: \"true\" is not yes or no");
	EXPECT_ERR(&d, 27, "envelope_from: \"no-at-sign\" is not an address (local@domain)");
	EXPECT_ERR(&d, 28, "timeout: \"1w\" is not a duration (a number with s, m, h or d)");
	EXPECT_ERR(&d, 30, "tls: \"always\" is not may, encrypt, verify or none");
	EXPECT_ERR(&d, 31, "dns_servers: \"127.0.0.1:99999\" is not an IP address with an optional "
		   "port (ip, ip:port, [IPv6]:port)");
	EXPECT_ERR(&d, 31, "dns_servers: \"dns.example\" is not an IP address with an optional "
		   "port (ip, ip:port, [IPv6]:port)");
	EXPECT_ERR(&d, 32, "port: \"0\" is not a port (1 to 65535)");
	EXPECT_ERR(&d, 34, "apply_to: \"none\" is not service or all");
	EXPECT_ERR(&d, 35, "bounce_address: \"bounces@\" is not an address (local@domain)");
	EXPECT_ERR(&d, 37, "dir: a path is needed");
	EXPECT_ERR(&d, 38, "retry_min: \"99999999999999999999s\" is not a duration (a number with s, m, h or d)");
	EXPECT_ERR(&d, 40, "file: a path is needed");
	EXPECT_ERR(&d, 42, "tls_cert: set twice in [server] (first on line 13)");
	ck_assert_msg(d.nerrors == 41, "%zu errors:\n%s", d.nerrors, all_diags(&d));
	config_diags_free(&d);
}
END_TEST

/* Issue 11: [server] outside_connections (SPEC §3), and an upper bound on
 * max_message_size: a FILE:LINE error beyond 1G, never a truncated size. */
START_TEST(test_outside_and_size_bound)
{
	struct config_diags d;
	struct config *cfg = load_ok("[server]\nhostname = relay.example.jp\n"
	                             "outside_connections = 7\nmax_message_size = 1G\n", &d);
	ck_assert_uint_eq(cfg->server.outside_connections, 7);
	ck_assert_uint_eq(cfg->server.max_message_size, (uint64_t)1 << 30);
	config_free(cfg);
	config_diags_free(&d);
	cfg = load_ok("[server]\nhostname = relay.example.jp\n", &d);
	ck_assert_uint_eq(cfg->server.outside_connections, 100);
	config_free(cfg);
	config_diags_free(&d);

	d = load_bad("[server]\nhostname = relay.example.jp\nmax_message_size = 5G\n"
	             "outside_connections = 0\n");
	EXPECT_ERR(&d, 3, "max_message_size: \"5G\" is over the largest supported size (1G)");
	EXPECT_ERR(&d, 4, "outside_connections: 0 is out of range (1 to 1000000)");
	config_diags_free(&d);
	d = load_bad("[server]\nhostname = relay.example.jp\nmax_message_size = 1025M\n");
	EXPECT_ERR(&d, 3, "max_message_size: \"1025M\" is over the largest supported size (1G)");
	config_diags_free(&d);
}
END_TEST

START_TEST(test_value_forms)
{
	static const char text[] =
		"[server]\n"
		"listen = [::1]:2525,127.0.0.1:2525,,\n"
		"    , [::ffff:192.0.2.1]:25\n"
		"max_message_size = 512K\n"
		"idle_timeout = 300\n"
		"bare_lf = REJECT\n"
		"hostname = relay.例え.jp.\n"
		"[service]\n"
		"host = [2001:db8::25]\n"
		"port = 2587\n"
		"tls = none\n"
		"rate = 3600/H\n"
		"verp = No\n"
		"pause = 2D\n"
		"[direct]\n"
		"dns_servers = [::1], 192.0.2.1:5353\n"
		"[suppression]\n"
		"bounce_address = Bounces+x@Mail.Example\n";
	struct config_diags d;
	struct config *cfg = load_ok(text, &d);

	ck_assert_uint_eq(cfg->server.nlisten, 3);
	ck_assert_str_eq(cfg->server.listen[0].host, "::1");
	ck_assert_str_eq(cfg->server.listen[2].host, "::ffff:192.0.2.1");
	ck_assert_uint_eq(cfg->server.max_message_size, 512 * 1024);
	ck_assert_uint_eq(cfg->server.idle_timeout_ms, 300000);
	ck_assert_int_eq(cfg->server.bare_lf, BARE_LF_REJECT);
	ck_assert_str_eq(cfg->server.hostname, "relay.xn--r8jz45g.jp");
	ck_assert_str_eq(cfg->service.host, "2001:db8::25");
	ck_assert_int_eq(cfg->service.tls, SERVICE_TLS_NONE);
	ck_assert_uint_eq(cfg->service.rate_count, 3600);
	ck_assert_uint_eq(cfg->service.rate_period_s, 3600);
	ck_assert_double_eq_tol(cfg->service.rate_per_sec, 1.0, 1e-9);
	ck_assert(!cfg->service.verp);
	ck_assert_uint_eq(cfg->service.pause_ms, 2ull * 86400000);
	ck_assert_uint_eq(cfg->direct.ndns_servers, 2);
	ck_assert_str_eq(cfg->direct.dns_servers[0], "[::1]:53");
	ck_assert_str_eq(cfg->direct.dns_servers[1], "192.0.2.1:5353");
	ck_assert_str_eq(cfg->suppression.bounce_address, "Bounces+x@Mail.Example");
	EXPECT_WARN(&d, 11, "[service] tls = none sends the password and the mail in clear text "
		    "(for tests only)");
	config_free(cfg);
	config_diags_free(&d);

	/* Empty lists: no DNS server is the system resolver; no network relays */
	cfg = load_ok("[server]\nallow_networks =\n[direct]\ndns_servers = ,\n", &d);
	ck_assert_uint_eq(cfg->server.nallow, 0);
	ck_assert_uint_eq(cfg->direct.ndns_servers, 0);
	config_free(cfg);
	config_diags_free(&d);

	/* ... but a relay must listen somewhere */
	d = load_bad("[server]\nlisten = ,\n");
	EXPECT_ERR(&d, 2, "listen: no address to listen on");
	config_diags_free(&d);

	/* [queue] max_size: a size, or 0 / empty for no cap */
	cfg = load_ok("[queue]\nmax_size = 2G\n", &d);
	ck_assert_uint_eq(cfg->queue.max_size, 2ull << 30);
	config_free(cfg);
	config_diags_free(&d);
	cfg = load_ok("[queue]\nmax_size = 0\n", &d);
	ck_assert_uint_eq(cfg->queue.max_size, 0);
	config_free(cfg);
	config_diags_free(&d);
	cfg = load_ok("[queue]\nmax_size =\n", &d);
	ck_assert_uint_eq(cfg->queue.max_size, 0);
	config_free(cfg);
	config_diags_free(&d);
	d = load_bad("[queue]\nmax_size = lots\n");
	EXPECT_ERR(&d, 2, "max_size: \"lots\" is not a size (bytes, or a number with K, M or G; "
	           "0 for no limit)");
	config_diags_free(&d);
	/* A single value does not continue */
	d = load_bad("[server]\nhostname = relay.example.jp\n    example.jp\n    more\n");
	EXPECT_ERR(&d, 3, "hostname: takes one value; only lists continue on indented lines");
	ck_assert_uint_eq(ndiag(&d), 1);
	config_diags_free(&d);
}
END_TEST

/* SPEC §4 rows 5 and 6, and entries in every form. */
START_TEST(test_verified_domains)
{
	struct config_diags d;
	struct config *cfg;

	cfg = load_ok("[routing]\nverified_domains = interfactory1.co.jp,example.co.jp\n", &d);
	ck_assert_uint_eq(cfg->routing.ndomains, 2);
	ck_assert_str_eq(cfg->routing.domains[1].ascii, "example.co.jp");
	/* no [service] host: valid, but everything goes direct */
	EXPECT_WARN(&d, 2, "verified_domains is set but [service] has no host: every mail goes direct");
	config_free(cfg);
	config_diags_free(&d);

	cfg = load_ok("[routing]\nverified_domains = interfactory1.co.jp\n    test.com\n"
		      "[service]\nhost = smtp.example.net\nenvelope_from = b@interfactory1.co.jp\n", &d);
	ck_assert_uint_eq(cfg->routing.ndomains, 2);
	ck_assert_str_eq(cfg->routing.domains[0].ascii, "interfactory1.co.jp");
	ck_assert_int_eq(cfg->routing.domains[0].line, 2);
	ck_assert_str_eq(cfg->routing.domains[1].ascii, "test.com");
	ck_assert_int_eq(cfg->routing.domains[1].line, 3);
	ck_assert_uint_eq(ndiag(&d), 0);
	config_free(cfg);
	config_diags_free(&d);

	/* value on the continuation lines only, commas and blanks anywhere */
	cfg = load_ok("[routing]\n"
		      "verified_domains =\n"
		      "    ,  TEST@TestInterfactory1.co.jp ,\n"
		      "\t例え.テスト.\n"
		      "    xn--r8jz45g.jp,  Ünïcode.example  \n"
		      "    test@testinterfactory1.co.jp\n", &d);
	ck_assert_uint_eq(cfg->routing.ndomains, 4);
	const struct config_domain *dm = cfg->routing.domains;
	ck_assert_str_eq(dm[0].entry, "TEST@TestInterfactory1.co.jp");
	ck_assert_str_eq(dm[0].ascii, "test@testinterfactory1.co.jp");
	ck_assert(dm[0].is_address);
	ck_assert_int_eq(dm[0].line, 3);
	ck_assert_str_eq(dm[1].entry, "例え.テスト.");
	ck_assert_str_eq(dm[1].ascii, "xn--r8jz45g.xn--zckzah");
	ck_assert_str_eq(dm[2].ascii, "xn--r8jz45g.jp");
	ck_assert_str_eq(dm[3].entry, "Ünïcode.example");
	ck_assert_str_eq(dm[3].ascii, "xn--ncode-cta3g.example");
	ck_assert_int_eq(dm[3].line, 5);
	EXPECT_WARN(&d, 6, "verified_domains: \"test@testinterfactory1.co.jp\" is listed twice "
		    "(first on line 3)");
	config_free(cfg);
	config_diags_free(&d);

	/* a bad entry is reported on the continuation line where it was written */
	d = load_bad("[routing]\n"
		     "verified_domains = a.example\n"
		     "    b.example\n"
		     "    c example\n"
		     "    d.example, -e.example\n");
	EXPECT_ERR(&d, 4, "verified_domains: \"c example\" is not a valid domain");
	EXPECT_ERR(&d, 5, "verified_domains: \"-e.example\" is not a valid domain");
	ck_assert_uint_eq(d.nerrors, 2);
	config_diags_free(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Contradictions and warnings                                        */
/* ------------------------------------------------------------------ */

START_TEST(test_contradictions)
{
	static const char text[] =
		"[server]\n"                            /* 1 */
		"tls_cert = cert.pem\n"                 /* 2 */
		"auth_file = users\n"                   /* 3 */
		"[service]\n"                           /* 4 */
		"username = u\n"                        /* 5 */
		"verp = yes\n"                          /* 6 */
		"[queue]\n"                             /* 7 */
		"retry_min = 2h\n"                      /* 8 */
		"[suppression]\n"                       /* 9 */
		"bounce_address = \"quoted\"@x.example\n"; /* 10 */
	struct config_diags d;

	write_file("cert.pem", "c");
	write_file("key.pem", "k");
	write_file("users", "u");
	write_file("pw", "p");
	d = load_bad(text);
	EXPECT_ERR(&d, 2, "tls_cert is set but tls_key is not");
	EXPECT_ERR(&d, 3, "auth_file needs tls_cert and tls_key: AUTH is offered only after STARTTLS");
	EXPECT_ERR(&d, 5, "username is set but password_file is not");
	EXPECT_ERR(&d, 6, "verp = yes needs envelope_from");
	EXPECT_ERR(&d, 8, "retry_min (2h) is longer than retry_max (1h)");
	EXPECT_ERR(&d, 10, "bounce_address: \"\"quoted\"@x.example\" is not an address (local@domain)");
	ck_assert_msg(d.nerrors == 6, "%s", all_diags(&d));
	config_diags_free(&d);

	d = load_bad("[server]\ntls_key = key.pem\n[service]\npassword_file = pw\n"
		     "[queue]\nretry_max = 30s\n");
	EXPECT_ERR(&d, 2, "tls_key is set but tls_cert is not");
	EXPECT_ERR(&d, 4, "password_file is set but username is not");
	EXPECT_ERR(&d, 6, "retry_min (1m) is longer than retry_max (30s)");
	ck_assert_msg(d.nerrors == 3, "%s", all_diags(&d));
	config_diags_free(&d);

	/* a refused value is not reported a second time as missing */
	d = load_bad("[service]\nusername = u\npassword_file = nosuch\nverp = yes\n"
		     "envelope_from = bad\n[queue]\nretry_max = 1x\nretry_min = 2h\n");
	EXPECT_ERR(&d, 3, "password_file: cannot read \"%s/nosuch\": No such file or directory", rdir);
	EXPECT_ERR(&d, 5, "envelope_from: \"bad\" is not an address (local@domain)");
	EXPECT_ERR(&d, 7, "retry_max: \"1x\" is not a duration (a number with s, m, h or d)");
	ck_assert_msg(d.nerrors == 3, "%s", all_diags(&d));
	config_diags_free(&d);

	/* the same keys, consistent */
	struct config *cfg = load_ok("[server]\ntls_cert = cert.pem\ntls_key = key.pem\nauth_file = users\n"
				     "[service]\nhost = 127.0.0.1\nusername = u\npassword_file = pw\n"
				     "envelope_from = b@example.jp\nverp = yes\n", &d);
	ck_assert_uint_eq(ndiag(&d), 0);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_warnings)
{
	struct config_diags d;
	struct config *cfg = load_ok("[server]\n"
				     "hostname = relay\n"
				     "[service]\n"
				     "host = smtp.example.net\n"
				     "tls = none\n"
				     "[queue]\n"
				     "retry_min = 10m\n"
				     "retry_max = 10m\n"
				     "lifetime = 5m\n", &d);
	ck_assert_str_eq(cfg->server.hostname, "relay");
	EXPECT_WARN(&d, 2, "hostname \"relay\" has no dot; other mail servers expect a fully "
		    "qualified name");
	EXPECT_WARN(&d, 4, "[service] envelope_from is empty: the delivery service also verifies "
		    "the envelope sender, and its bounces go to the original senders instead of hikyaku");
	EXPECT_WARN(&d, 5, "[service] tls = none sends the password and the mail in clear text "
		    "(for tests only)");
	EXPECT_WARN(&d, 9, "lifetime (5m) is shorter than retry_min (10m): a deferred mail expires "
		    "before its first retry");
	ck_assert_uint_eq(ndiag(&d), 4);
	ck_assert_uint_eq(d.nerrors, 0);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_many_errors_one_load)
{
	char text[1024];
	struct config_diags d;

	snprintf(text, sizeof(text),
		 "[server]\n"
		 "max_connections = many\n"             /* 2 */
		 "%0205d\n"                             /* 3 */
		 "bogus\n"                              /* 4 */
		 "[nosuch]\n"                           /* 5 */
		 "[server]\n"
		 "max_connections = 1\n"                /* 7 */
		 "tls_key = key.pem\n"                  /* 8 */
		 "[queue]\n"
		 "lifetime = forever\n",                /* 10 */
		 0);
	write_file("key.pem", "k");
	d = load_bad(text);
	EXPECT_ERR(&d, 2, "max_connections: \"many\" is not a number");
	EXPECT_ERR(&d, 3, "line is longer than 199 bytes");
	EXPECT_ERR(&d, 4, "expected \"key = value\", a [section] or a comment");
	EXPECT_ERR(&d, 5, "unknown section [nosuch]");
	EXPECT_ERR(&d, 7, "max_connections: set twice in [server] (first on line 2)");
	EXPECT_ERR(&d, 8, "tls_key is set but tls_cert is not");
	EXPECT_ERR(&d, 10, "lifetime: \"forever\" is not a duration (a number with s, m, h or d)");
	ck_assert_msg(d.nerrors == 7 && ndiag(&d) == 7, "%s", all_diags(&d));
	config_diags_free(&d);
}
END_TEST

START_TEST(test_missing_file)
{
	struct config_diags d = { 0 };
	struct config *cfg = (struct config *)1;

	ck_assert_int_eq(config_load(conf, &cfg, &d), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(ndiag(&d), 1);
	EXPECT_ERR(&d, 0, "cannot open: No such file or directory");
	config_diags_free(&d);

	/* diagnostics may be discarded */
	ck_assert_int_eq(config_load(conf, &cfg, NULL), -1);
	write_file("hikyaku.conf", "[server]\n");
	ck_assert_int_eq(config_load(conf, &cfg, NULL), 0);
	config_free(cfg);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Paths                                                              */
/* ------------------------------------------------------------------ */

START_TEST(test_relative_paths)
{
	struct config_diags d;
	char parent[sizeof(rdir)], text[1024], sub[PATH_MAX];

	strcpy(parent, rdir);
	*strrchr(parent, '/') = '\0';
	write_file("etc/hikyaku.conf", "");
	write_file("etc/tls/cert.pem", "c");
	write_file("etc/tls/key.pem", "k");
	snprintf(text, sizeof(text),
		 "[server]\n"
		 "tls_cert = tls/cert.pem\n"
		 "tls_key = ./tls/../tls/key.pem\n"
		 "[queue]\n"
		 "dir = ../var/queue\n"
		 "[suppression]\n"
		 "db = ../../suppression.db\n"
		 "[log]\n"
		 "file = %s/abs.jsonl\n"
		 "[control]\n"
		 "socket = .\n", tdir);
	write_file("etc/hikyaku.conf", text);
	/* the directory of a relative configuration path, too */
	ck_assert_int_eq(chdir(tdir), 0);
	memset(&d, 0, sizeof(d));
	struct config *cfg = NULL;
	ck_assert_int_eq(config_load("etc/hikyaku.conf", &cfg, &d), 0);
	snprintf(sub, sizeof(sub), "%s/etc", rdir);
	ck_assert_str_eq(cfg->path, "etc/hikyaku.conf");
	ck_assert_str_eq(cfg->dir, sub);
	ck_assert_str_eq(cfg->server.tls_cert, path_in(sub, "tls/cert.pem"));
	/* a ".." after a name is left alone: the name may be a symbolic link */
	ck_assert_str_eq(cfg->server.tls_key, path_in(sub, "tls/../tls/key.pem"));
	ck_assert_str_eq(cfg->queue.dir, path_in(rdir, "var/queue"));
	ck_assert_str_eq(cfg->suppression.db, path_in(parent, "suppression.db"));
	ck_assert_str_eq(cfg->log.file, path_in(tdir, "abs.jsonl"));
	ck_assert_str_eq(cfg->control.socket, sub);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_socket_limit)
{
	char text[512], name[200];
	struct config_diags d;
	size_t base = strlen(rdir) + 1;     /* rdir + "/" */

	ck_assert_uint_lt(base, CONFIG_SOCKET_MAX);
	/* exactly 107 bytes once resolved */
	memset(name, 's', CONFIG_SOCKET_MAX - base);
	name[CONFIG_SOCKET_MAX - base] = '\0';
	snprintf(text, sizeof(text), "[control]\nsocket = %s\n", name);
	struct config *cfg = load_ok(text, &d);
	ck_assert_uint_eq(strlen(cfg->control.socket), CONFIG_SOCKET_MAX);
	config_free(cfg);
	config_diags_free(&d);

	/* 108 */
	strcat(name, "s");
	snprintf(text, sizeof(text), "[control]\n\nsocket = %s\n", name);
	d = load_bad(text);
	EXPECT_ERR(&d, 3, "socket: \"%s/%s\" is 108 bytes long; a socket path has at most 107", rdir, name);
	config_diags_free(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Value parsers                                                      */
/* ------------------------------------------------------------------ */

START_TEST(test_parse_duration)
{
	uint64_t ms = 7;

	ck_assert_int_eq(config_parse_duration("30s", &ms), 0);
	ck_assert_uint_eq(ms, 30000);
	ck_assert_int_eq(config_parse_duration("5M", &ms), 0);
	ck_assert_uint_eq(ms, 300000);
	ck_assert_int_eq(config_parse_duration("1h", &ms), 0);
	ck_assert_uint_eq(ms, 3600000);
	ck_assert_int_eq(config_parse_duration("5d", &ms), 0);
	ck_assert_uint_eq(ms, 432000000);
	ck_assert_int_eq(config_parse_duration("45", &ms), 0);
	ck_assert_uint_eq(ms, 45000);
	ck_assert_int_eq(config_parse_duration("0", &ms), 0);
	ck_assert_uint_eq(ms, 0);
	ms = 7;
	static const char *const bad[] = {
		"", "s", "-1s", "+1s", " 1s", "1s ", "1 s", "1ms", "1w", "1.5h", "1ss",
		"0x10", "213503982335d", "18446744073709551616", NULL,
	};
	for (int i = 0; bad[i]; i++)
		ck_assert_msg(config_parse_duration(bad[i], &ms) == -1, "\"%s\" accepted", bad[i]);
	ck_assert_uint_eq(ms, 7);
	ck_assert_int_eq(config_parse_duration(NULL, &ms), -1);
	ck_assert_int_eq(config_parse_duration("213503982334d", &ms), 0);
}
END_TEST

START_TEST(test_parse_size)
{
	uint64_t b = 7;

	ck_assert_int_eq(config_parse_size("25M", &b), 0);
	ck_assert_uint_eq(b, 26214400);
	ck_assert_int_eq(config_parse_size("512k", &b), 0);
	ck_assert_uint_eq(b, 524288);
	ck_assert_int_eq(config_parse_size("1G", &b), 0);
	ck_assert_uint_eq(b, 1073741824);
	ck_assert_int_eq(config_parse_size("1000", &b), 0);
	ck_assert_uint_eq(b, 1000);
	ck_assert_int_eq(config_parse_size("17179869183G", &b), 0);
	b = 7;
	static const char *const bad[] = {
		"", "M", "25MB", "25 M", "-1", "1.5M", "1T", "17179869184G",
		"99999999999999999999", NULL,
	};
	for (int i = 0; bad[i]; i++)
		ck_assert_msg(config_parse_size(bad[i], &b) == -1, "\"%s\" accepted", bad[i]);
	ck_assert_uint_eq(b, 7);
}
END_TEST

START_TEST(test_parse_rate)
{
	unsigned n = 7, p = 7;

	ck_assert_int_eq(config_parse_rate("14/s", &n, &p), 0);
	ck_assert_uint_eq(n, 14);
	ck_assert_uint_eq(p, 1);
	ck_assert_int_eq(config_parse_rate("100/M", &n, &p), 0);
	ck_assert_uint_eq(p, 60);
	ck_assert_int_eq(config_parse_rate("1/h", &n, &p), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(p, 3600);
	n = p = 7;
	static const char *const bad[] = {
		"", "14", "0/s", "14/", "14/d", "14/ss", "14 /s", "/s", "-1/s",
		"4294967296/s", "14/sec", NULL,
	};
	for (int i = 0; bad[i]; i++)
		ck_assert_msg(config_parse_rate(bad[i], &n, &p) == -1, "\"%s\" accepted", bad[i]);
	ck_assert_uint_eq(n, 7);
	ck_assert_uint_eq(p, 7);
}
END_TEST

static struct sockaddr_storage sa_of(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
		sin6->sin6_family = AF_INET6;
	}
	return ss;
}

static bool contains(const char *net, const char *ip)
{
	struct config_cidr c;
	struct sockaddr_storage ss = sa_of(ip);

	ck_assert_int_eq(config_parse_cidr(net, &c), 0);
	return config_cidr_contains(&c, (struct sockaddr *)&ss);
}

START_TEST(test_parse_cidr)
{
	struct config_cidr c;

	ck_assert_int_eq(config_parse_cidr("127.0.0.0/8", &c), 0);
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_uint_eq(c.prefix, 8);
	ck_assert_str_eq(cidr_str(&c), "127.0.0.0/8");
	ck_assert_int_eq(config_parse_cidr("192.0.2.77/26", &c), 0);
	ck_assert_str_eq(cidr_str(&c), "192.0.2.64/26");
	ck_assert_int_eq(config_parse_cidr("192.0.2.1", &c), 0);
	ck_assert_str_eq(cidr_str(&c), "192.0.2.1/32");
	ck_assert_int_eq(config_parse_cidr("::1", &c), 0);
	ck_assert_str_eq(cidr_str(&c), "::1/128");
	ck_assert_int_eq(config_parse_cidr("2001:db8:ffff::1/33", &c), 0);
	ck_assert_str_eq(cidr_str(&c), "2001:db8:8000::/33");
	ck_assert_int_eq(config_parse_cidr("0.0.0.0/0", &c), 0);
	ck_assert_int_eq(config_parse_cidr("::/0", &c), 0);
	static const char *const bad[] = {
		"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0/8",
		"10.0.0.0/8/8", "10.0.0.0 /8", "localhost", "[::1]/128", "10.0.0.0/+8", NULL,
	};
	for (int i = 0; bad[i]; i++)
		ck_assert_msg(config_parse_cidr(bad[i], &c) == -1, "\"%s\" accepted", bad[i]);

	ck_assert(contains("127.0.0.0/8", "127.1.2.3"));
	ck_assert(!contains("127.0.0.0/8", "128.0.0.1"));
	ck_assert(contains("192.0.2.64/26", "192.0.2.127"));
	ck_assert(!contains("192.0.2.64/26", "192.0.2.128"));
	ck_assert(contains("0.0.0.0/0", "203.0.113.9"));
	ck_assert(!contains("0.0.0.0/0", "::1"));
	ck_assert(contains("::1/128", "::1"));
	ck_assert(!contains("::1/128", "::2"));
	ck_assert(contains("2001:db8::/32", "2001:db8:1::5"));
	ck_assert(!contains("2001:db8::/32", "2001:db9::5"));
	/* a dual-stack listener's view of an IPv4 client */
	ck_assert(contains("127.0.0.0/8", "::ffff:127.0.0.1"));
	ck_assert(!contains("127.0.0.0/8", "::ffff:10.0.0.1"));
	ck_assert(!contains("0.0.0.0/0", "::127.0.0.1"));
	ck_assert(contains("::ffff:0:0/96", "192.0.2.1"));
	ck_assert(!contains("::1/128", "127.0.0.1"));
	ck_assert(!config_cidr_contains(&c, NULL));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Printing                                                           */
/* ------------------------------------------------------------------ */

static char *print_to_string(const struct config *cfg)
{
	char *s = NULL;
	size_t n = 0;
	FILE *fp = open_memstream(&s, &n);

	ck_assert_ptr_nonnull(fp);
	config_print(cfg, fp);
	ck_assert_int_eq(fclose(fp), 0);
	return s;
}

/* Printing, loading the print and printing again gives the same text. */
static void round_trip(const char *text)
{
	struct config_diags d;
	struct config *cfg = load_ok(text, &d);
	char *one = print_to_string(cfg);

	config_diags_free(&d);
	/* every line loads again, none over the limit */
	for (char *l = one, *e; *l; l = e + 1) {
		e = strchr(l, '\n');
		ck_assert_ptr_nonnull(e);
		ck_assert_int_le(e - l, CONFIG_MAX_LINE);
	}
	write_file("printed/hikyaku.conf", one);
	struct config *again = NULL;
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/printed/hikyaku.conf", tdir);
	memset(&d, 0, sizeof(d));
	ck_assert_msg(config_load(p, &again, &d) == 0, "%s\n%s", one, all_diags(&d));
	char *two = print_to_string(again);
	ck_assert_str_eq(one, two);

	ck_assert_uint_eq(again->routing.ndomains, cfg->routing.ndomains);
	for (size_t i = 0; i < cfg->routing.ndomains; i++) {
		ck_assert_str_eq(again->routing.domains[i].entry, cfg->routing.domains[i].entry);
		ck_assert_str_eq(again->routing.domains[i].ascii, cfg->routing.domains[i].ascii);
	}
	ck_assert_double_eq(again->service.rate_per_sec, cfg->service.rate_per_sec);
	ck_assert_uint_eq(again->server.nallow, cfg->server.nallow);
	ck_assert_mem_eq(again->server.allow, cfg->server.allow, cfg->server.nallow * sizeof(*cfg->server.allow));
	free(one);
	free(two);
	config_free(cfg);
	config_free(again);
	config_diags_free(&d);
}

/* [destination NAME] policies and delay_warning (SPEC §3). */
START_TEST(test_destinations)
{
	static const char good[] =
		"[queue]\n"
		"delay_warning = 4h\n"
		"[destination docomo]\n"
		"domains = docomo.ne.jp\n"
		"max_recipients_per_message = 1\n"
		"rate = 2/s\n"
		"[destination au]\n"
		"domains = ezweb.ne.jp, AU.com.\n"
		"    uqmobile.jp\n"
		"max_connections = 1\n"
		"pause = 30m\n";
	struct config_diags d;
	struct config *cfg = load_ok(good, &d);

	ck_assert_uint_eq(cfg->queue.delay_warning_ms, 4u * 3600 * 1000);
	ck_assert_uint_eq(cfg->ndestinations, 2);
	const struct config_destination *a = &cfg->destinations[0], *b = &cfg->destinations[1];
	ck_assert_str_eq(a->name, "docomo");
	ck_assert_uint_eq(a->max_connections, 2);            /* the default */
	ck_assert_uint_eq(a->max_recipients_per_message, 1);
	ck_assert_uint_eq(a->rate_count, 2);
	ck_assert_uint_eq(a->rate_period_s, 1);
	ck_assert_uint_eq(a->pause_ms, 10u * 60 * 1000);     /* the default */
	ck_assert_str_eq(b->name, "au");
	ck_assert_uint_eq(b->ndomains, 3);
	ck_assert_str_eq(b->domains[1].ascii, "au.com");
	ck_assert_int_eq(b->domains[2].line, line_with(good, "    uqmobile.jp"));
	ck_assert_uint_eq(b->max_recipients_per_message, 100); /* the default */
	ck_assert_uint_eq(b->rate_count, 0);                 /* no limit */
	ck_assert_uint_eq(b->pause_ms, 30u * 60 * 1000);
	/* Dot-boundary cover, as verified_domains. */
	ck_assert_ptr_eq(config_destination_for(cfg, "docomo.ne.jp"), a);
	ck_assert_ptr_eq(config_destination_for(cfg, "mail.docomo.ne.jp"), a);
	ck_assert_ptr_null(config_destination_for(cfg, "xdocomo.ne.jp"));
	ck_assert_ptr_eq(config_destination_for(cfg, "au.com"), b);
	ck_assert_ptr_null(config_destination_for(cfg, "example.com"));
	config_free(cfg);
	config_diags_free(&d);
	round_trip(good);

	static const char bad[] =
		"[destination docomo]\n"
		"domains = docomo.ne.jp\n"
		"[destination au]\n"
		"domains = au.com\n"
		"    mail.docomo.ne.jp\n"
		"bogus = 1\n"
		"max_connections = 0\n"
		"rate = fast\n"
		"[destination empty]\n"
		"pause = 5m\n"
		"[destination docomo]\n"
		"domains = other.jp\n"
		"[destination]\n"
		"[queue]\n"
		"delay_warning = soon\n";
	d = load_bad(bad);
	EXPECT_ERR(&d, line_with(bad, "    mail.docomo"), "[destination au] domains: "
		   "\"mail.docomo.ne.jp\" is also covered by [destination docomo] (\"docomo.ne.jp\", "
		   "line 2); a domain belongs to one policy");
	EXPECT_ERR(&d, line_with(bad, "bogus"), "unknown key \"bogus\" in [destination au] (it "
		   "takes domains, max_connections, max_recipients_per_message, rate and pause)");
	EXPECT_ERR(&d, line_with(bad, "max_connections = 0"),
		   "max_connections: \"0\" is not a number from 1 to 1000000");
	EXPECT_ERR(&d, line_with(bad, "rate = fast"), "rate: \"fast\" is not a rate (N/s, N/m or "
		   "N/h, N at least 1; empty for no limit)");
	EXPECT_ERR(&d, line_with(bad, "[destination empty]"),
		   "[destination empty] has no domains: a policy needs at least one");
	EXPECT_ERR(&d, 11, "[destination docomo] is defined twice (first on line 1)");
	EXPECT_ERR(&d, line_with(bad, "[destination]\n"), "[destination]: a policy needs a NAME of "
		   "letters, digits, '-', '_' or '.' (at most 64), e.g. [destination docomo]");
	EXPECT_ERR(&d, line_with(bad, "delay_warning"), "delay_warning: \"soon\" is not a duration "
		   "(a number with s, m, h or d; 0 for off)");
	config_diags_free(&d);
}
END_TEST

START_TEST(test_print_round_trip)
{
	write_full_files();
	round_trip(full);
	round_trip("");
	round_trip(spec_block);
	round_trip("[queue]\nmax_size = 512M\n");
}
END_TEST

START_TEST(test_print_form)
{
	struct config_diags d;

	write_full_files();
	struct config *cfg = load_ok(full, &d);
	char *s = print_to_string(cfg);

	ck_assert_ptr_nonnull(strstr(s, "\n[server]\nlisten = 0.0.0.0:25, [::]:2525, [::1]:587\n"
				      "hostname = relay.example.jp\n"
				      "allow_networks = 10.0.0.0/8, 192.168.1.0/24, 2001:db8::/32, 192.0.2.7/32\n"));
	ck_assert_ptr_nonnull(strstr(s, "\nmax_message_size = 10M\n"));
	ck_assert_ptr_nonnull(strstr(s, "\nidle_timeout = 90s\n"));
	ck_assert_ptr_nonnull(strstr(s, "\nverified_domains =\n"
				      "    interfactory1.co.jp\n"
				      "    Example.CO.JP.\n"
				      "    test.com\n"
				      "    shop@Mail.例え.jp\n"
				      "match_on = envelope_from\n"));
	ck_assert_ptr_nonnull(strstr(s, "\nrate = 100/m\n"));
	ck_assert_ptr_nonnull(strstr(s, "\nverp = yes\n"));
	ck_assert_ptr_nonnull(strstr(s, "\nlifetime = 3d\n"));
	ck_assert_ptr_nonnull(strstr(s, "\ndns_servers = 127.0.0.1:5353, [::1]:53, "
				      "[2001:db8::53]:5353, 192.0.2.53:53\n"));
	free(s);
	config_free(cfg);
	config_diags_free(&d);

	/* defaults: empty values as "key =", every key present */
	cfg = load_ok("[server]\nhostname = relay.example.jp\n", &d);
	s = print_to_string(cfg);
	ck_assert_str_eq(s,
		"; hikyaku: the effective configuration, defaults included\n"
		"[server]\n"
		"listen = 127.0.0.1:2525\n"
		"hostname = relay.example.jp\n"
		"allow_networks = 127.0.0.0/8, ::1/128\n"
		"max_connections = 1000\n"
		"max_connections_per_client = 100\n"
		"outside_connections = 100\n"
		"max_message_size = 25M\n"
		"max_recipients = 100\n"
		"idle_timeout = 5m\n"
		"tls_cert =\n"
		"tls_key =\n"
		"bare_lf = normalize\n"
		"auth_file =\n"
		"\n"
		"[routing]\n"
		"verified_domains =\n"
		"match_on = header_from\n"
		"\n"
		"[service]\n"
		"host =\n"
		"port = 587\n"
		"tls = starttls\n"
		"ca_file =\n"
		"username =\n"
		"password_file =\n"
		"max_connections = 10\n"
		"rate = 14/s\n"
		"max_recipients_per_message = 50\n"
		"pause = 5m\n"
		"connect_timeout = 30s\n"
		"timeout = 5m\n"
		"envelope_from =\n"
		"verp = no\n"
		"\n"
		"[direct]\n"
		"tls = may\n"
		"port = 25\n"
		"dns_servers =\n"
		"max_connections_per_domain = 10\n"
		"internal_destinations = private\n"
		"connect_timeout = 30s\n"
		"timeout = 5m\n"
		"\n"
		"[dkim]\n"
		"keys =\n"
		"sign = direct\n"
		"\n"
		"[queue]\n"
		"dir = /var/spool/hikyaku\n"
		"retry_min = 1m\n"
		"retry_max = 1h\n"
		"lifetime = 5d\n"
		"max_size = 0\n"
		"delay_warning = 0\n"
		"\n"
		"[suppression]\n"
		"db = /var/lib/hikyaku/suppression.db\n"
		"apply_to = service\n"
		"bounce_address =\n"
		"\n"
		"[log]\n"
		"file = /var/log/hikyaku/hikyaku.jsonl\n"
		"\n"
		"[control]\n"
		"socket = /run/hikyaku/control.sock\n"
		"\n"
		"[metrics]\n"
		"listen =\n");
	free(s);
	config_free(cfg);
	config_diags_free(&d);

	/* a list too long for one line goes on continuation lines */
	char text[4096] = "[server]\nallow_networks =\n";
	for (int i = 0; i < 20; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
			 "    2001:db8:%x::/48, 10.%d.0.0/16\n", i, i);
	round_trip(text);
	cfg = load_ok(text, &d);
	s = print_to_string(cfg);
	ck_assert_ptr_nonnull(strstr(s, "\nallow_networks =\n    2001:db8::/48\n    10.0.0.0/16\n"));
	free(s);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The bundled files and the default path                             */
/* ------------------------------------------------------------------ */

static const char *srcdir(void)
{
	static char dir[PATH_MAX];
	const char *env = getenv("HIKYAKU_SRCDIR");

	if (env && *env)
		return env;
	/* this file is SRCDIR/tests/unit/test_config.c */
	snprintf(dir, sizeof(dir), "%s", __FILE__);
	for (int i = 0; i < 3; i++) {
		char *s = strrchr(dir, '/');
		if (!s)
			return ".";
		*s = '\0';
	}
	return dir;
}

START_TEST(test_bundled)
{
	char p[PATH_MAX], root[1024];
	struct config_diags d = { 0 };
	struct config *cfg = NULL;
	char *r = realpath(srcdir(), NULL);

	ck_assert_ptr_nonnull(r);
	ck_assert_uint_lt(strlen(r), sizeof(root));
	strcpy(root, r);
	free(r);
	snprintf(p, sizeof(p), "%s/config/hikyaku.conf", root);
	ck_assert_msg(config_load(p, &cfg, &d) == 0, "%s", all_diags(&d));
	ck_assert_uint_eq(cfg->server.nlisten, 1);
	ck_assert_str_eq(cfg->server.listen[0].host, "127.0.0.1");
	ck_assert_uint_eq(cfg->server.listen[0].port, 2525);
	ck_assert_ptr_null(cfg->service.host);
	ck_assert_str_eq(cfg->queue.dir, path_in(root, "var/queue"));
	ck_assert_str_eq(cfg->suppression.db, path_in(root, "var/suppression.db"));
	ck_assert_str_eq(cfg->log.file, path_in(root, "var/hikyaku.jsonl"));
	ck_assert_str_eq(cfg->control.socket, path_in(root, "var/control.sock"));
	config_free(cfg);
	config_diags_free(&d);

	snprintf(p, sizeof(p), "%s/config/hikyaku.conf.example", root);
	ck_assert_msg(config_load(p, &cfg, &d) == 0, "%s", all_diags(&d));
	ck_assert_uint_eq(cfg->ndestinations, 0);       /* the profile is commented out */
	config_free(cfg);
	config_diags_free(&d);

	/* The carriers' profile, uncommented as the example says, loads and
	 * covers docomo, au and SoftBank. */
	FILE *in = fopen(p, "r");
	ck_assert_ptr_nonnull(in);
	GString *text = g_string_new(NULL);
	char line[512];
	bool on = false;
	while (fgets(line, sizeof(line), in)) {
		if (strncmp(line, ";[destination ", 14) == 0)
			on = true;
		if (line[0] == '[')
			on = false;     /* the next section proper */
		g_string_append(text, on && line[0] == ';' ? line + 1 : line);
	}
	fclose(in);
	cfg = load_ok(text->str, &d);
	g_string_free(text, TRUE);
	ck_assert_uint_eq(cfg->ndestinations, 3);
	ck_assert_str_eq(config_destination_for(cfg, "docomo.ne.jp")->name, "docomo");
	ck_assert_str_eq(config_destination_for(cfg, "ezweb.ne.jp")->name, "au");
	ck_assert_str_eq(config_destination_for(cfg, "biz.ezweb.ne.jp")->name, "au");
	ck_assert_str_eq(config_destination_for(cfg, "au.com")->name, "au");
	ck_assert_str_eq(config_destination_for(cfg, "i.softbank.jp")->name, "softbank");
	ck_assert_str_eq(config_destination_for(cfg, "softbank.ne.jp")->name, "softbank");
	ck_assert_uint_eq(config_destination_for(cfg, "docomo.ne.jp")->max_recipients_per_message, 1);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* [metrics] listen (SPEC §3, §9): one address or none. */
START_TEST(test_metrics_listen)
{
	struct config_diags d;
	struct config *cfg = load_ok("", &d);
	ck_assert(!cfg->metrics.listen.set);
	config_free(cfg);
	config_diags_free(&d);

	cfg = load_ok("[metrics]\nlisten = 127.0.0.1:9125\n", &d);
	ck_assert(cfg->metrics.listen.set);
	ck_assert_str_eq(cfg->metrics.listen.addr.host, "127.0.0.1");
	ck_assert_uint_eq(cfg->metrics.listen.addr.port, 9125);
	char *s = print_to_string(cfg);
	ck_assert_ptr_nonnull(strstr(s, "\n[metrics]\nlisten = 127.0.0.1:9125\n"));
	free(s);
	config_free(cfg);
	config_diags_free(&d);

	cfg = load_ok("[metrics]\nlisten = [0:0::1]:9125\n", &d);
	ck_assert_str_eq(cfg->metrics.listen.addr.host, "::1");
	s = print_to_string(cfg);
	ck_assert_ptr_nonnull(strstr(s, "\nlisten = [::1]:9125\n"));
	free(s);
	config_free(cfg);
	config_diags_free(&d);

	cfg = load_ok("[metrics]\nlisten =\n", &d);
	ck_assert(!cfg->metrics.listen.set);
	config_free(cfg);
	config_diags_free(&d);

	d = load_bad("[metrics]\nlisten = localhost:9125\n");
	EXPECT_ERR(&d, 2, "listen: \"localhost:9125\" is not one IP address and port "
		   "(host:port, [IPv6]:port)");
	config_diags_free(&d);
	d = load_bad("[metrics]\nlisten = 127.0.0.1:9125, 127.0.0.1:9126\n");
	EXPECT_ERR(&d, 2, "listen: \"127.0.0.1:9125, 127.0.0.1:9126\" is not one IP address "
		   "and port (host:port, [IPv6]:port)");
	config_diags_free(&d);
	d = load_bad("[metrics]\nlisten = 127.0.0.1\n");
	ck_assert_uint_eq(d.nerrors, 1);
	config_diags_free(&d);
	d = load_bad("[metrics]\nlisten = 127.0.0.1:9125\n    127.0.0.1:9126\n");
	EXPECT_ERR(&d, 3, "listen: takes one value; only lists continue on indented lines");
	config_diags_free(&d);
	d = load_bad("[server]\nlisten = 127.0.0.1:2525\n[metrics]\nlisten = 127.0.0.1:2525\n");
	EXPECT_ERR(&d, 4, "[metrics] listen: 127.0.0.1:2525 is also an SMTP listen address");
	config_diags_free(&d);
	d = load_bad("[server]\nlisten = 0.0.0.0:2525\n[metrics]\nlisten = 127.0.0.1:2525\n");
	EXPECT_ERR(&d, 4, "[metrics] listen: 127.0.0.1:2525 is also an SMTP listen address");
	config_diags_free(&d);

	cfg = load_ok("[metrics]\nlisten = 0.0.0.0:9125\n", &d);
	EXPECT_WARN(&d, 2, "[metrics] listen on every address: /metrics has no authentication; "
		    "prefer loopback or a private address");
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_default_path)
{
	unsetenv("HIKYAKU_CONFIG");
	ck_assert_str_eq(config_default_path(), "/etc/hikyaku/hikyaku.conf");
	setenv("HIKYAKU_CONFIG", "", 1);
	ck_assert_str_eq(config_default_path(), "/etc/hikyaku/hikyaku.conf");
	setenv("HIKYAKU_CONFIG", "/srv/relay/hikyaku.conf", 1);
	ck_assert_str_eq(config_default_path(), "/srv/relay/hikyaku.conf");
	unsetenv("HIKYAKU_CONFIG");
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_outside_and_size_bound);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_spec_example);
	tcase_add_test(tc, test_long_line);
	tcase_add_test(tc, test_syntax_errors);
	tcase_add_test(tc, test_nul_bom_crlf);
	tcase_add_test(tc, test_sections_and_keys);
	tcase_add_test(tc, test_comments);
	tcase_add_test(tc, test_bad_values);
	tcase_add_test(tc, test_value_forms);
	tcase_add_test(tc, test_verified_domains);
	tcase_add_test(tc, test_contradictions);
	tcase_add_test(tc, test_warnings);
	tcase_add_test(tc, test_many_errors_one_load);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_relative_paths);
	tcase_add_test(tc, test_socket_limit);
	tcase_add_test(tc, test_parse_duration);
	tcase_add_test(tc, test_parse_size);
	tcase_add_test(tc, test_parse_rate);
	tcase_add_test(tc, test_parse_cidr);
	tcase_add_test(tc, test_destinations);
	tcase_add_test(tc, test_print_round_trip);
	tcase_add_test(tc, test_print_form);
	tcase_add_test(tc, test_bundled);
	tcase_add_test(tc, test_default_path);
	tcase_add_test(tc, test_metrics_listen);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
