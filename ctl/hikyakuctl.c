/*
 * NAME
 *	hikyakuctl - the administration tool (SPEC §8)
 * SUMMARY
 *	hikyakuctl [-c FILE] COMMAND ...
 *	  check     validate the configuration (same as hikyaku --check)
 *	  config    print the effective configuration
 *	  route ADDRESS
 *	            print the route a mail from ADDRESS takes, and the entry
 *	            that matched (exit 0 when one matched, 1 when none did)
 *	  log [--follow] [--json] [--since DUR] [--queue-id ID] [--to ADDR]
 *	      [--from ADDR] [--event EV]
 *	            the relay log as a table, or its lines (SPEC §7)
 *	  suppression list|add|remove|import|export|ingest
 *	            manage the suppression list (SPEC §6)
 *	  suppression survey [FILE ...] [--since DUR] [--import] [--json]
 *	            the recipients past mail logs say would bounce (SPEC §8;
 *	            ctl/ctl_survey.h)
 *	  queue list|show|retry|delete, status
 *	            the running daemon's queue, through the control socket
 *	  domain check [DOMAIN ...] [--expect FILE] [--json]
 *	            the DNS records receivers and the delivery service need
 *	  dkim keygen DOMAIN SELECTOR FILE [--type rsa|ed25519] [--bits N]
 *	            a new DKIM key and its TXT record
 * DIAGNOSTICS
 *	Exit 0 success, 1 not found / no match, 2 usage or configuration
 *	error. Errors go to stderr in one sentence.
 * TOUCHES
 *	Reads the configuration file; the files and the socket it names.
 */
#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "config/config.h"
#include "ctl/ctl_dkim.h"
#include "ctl/ctl_domain.h"
#include "ctl/ctl_log.h"
#include "ctl/ctl_queue.h"
#include "ctl/ctl_suppression.h"
#include "ctl/ctl_survey.h"
#include "relay/bounce_in.h"
#include "relay/dsn_parse.h"
#include "relay/route.h"
#include "relay/suppression.h"
#include "util/buf.h"
#include "util/eventlog.h"
#include "util/esc.h"

static void usage(FILE *fp)
{
	fprintf(fp, "usage: hikyakuctl [-c FILE] COMMAND ...\n"
	            "commands:\n"
	            "  check               validate the configuration\n"
	            "  config              print the effective configuration\n"
	            "  route ADDRESS       the route a mail from ADDRESS takes (SPEC §4)\n"
	            "  log [--follow] [--json] [--since DUR] [--queue-id ID] [--to ADDR]\n"
	            "      [--from ADDR] [--event EV]  the relay log (SPEC §7)\n"
	            "  suppression list [--search TEXT] | add ADDR [--reason TEXT] | remove ADDR\n"
	            "              | import FILE.csv | export | ingest (a DSN on stdin)\n"
	            "  suppression survey [FILE ...] [--since DUR] [--import] [--json]\n"
	            "                      the addresses past mail logs say would bounce\n"
	            "  queue list [--json] | show ID [--json] | retry ID|--all | delete ID\n"
	            "                      the queue of the running daemon (or its spool)\n"
	            "  status [--json]     uptime, connections, queue size, counts since start\n"
	            "  domain check [DOMAIN ...] [--expect FILE] [--json]\n"
	            "                      the DNS records receivers and the service need\n"
	            "  dkim keygen DOMAIN SELECTOR FILE [--type rsa|ed25519] [--bits N]\n"
	            "                      a new DKIM key and the TXT record to publish\n");
}

static int load(const char *path, struct config **cfg, bool quiet_ok)
{
	struct config_diags diags = { 0 };
	int rc = config_load(path, cfg, &diags);
	for (size_t i = 0; i < diags.n; i++)
		if (!quiet_ok || !diags.v[i].warning || rc < 0)
			fprintf(stderr, "%s\n", esc_tmp(diags.v[i].text));
	config_diags_free(&diags);
	return rc;
}

static int cmd_check(const char *path, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "hikyakuctl: check takes no argument\n");
		return 2;
	}
	struct config *cfg = NULL;
	if (load(path, &cfg, false) < 0)
		return 2;
	config_free(cfg);
	return 0;
}

static int cmd_config(const char *path, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "hikyakuctl: config takes no argument\n");
		return 2;
	}
	struct config *cfg = NULL;
	if (load(path, &cfg, true) < 0)
		return 2;
	/* The configuration's lines are the output's: escape all but LF. */
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (!mem) {
		fprintf(stderr, "hikyakuctl: out of memory.\n");
		config_free(cfg);
		return 2;
	}
	config_print(cfg, mem);
	fclose(mem);
	char *shown = esc_text(text, (ssize_t)len, ESC_KEEP_NL);
	fputs(shown, stdout);
	g_free(shown);
	free(text);
	config_free(cfg);
	return 0;
}

/* SPEC §8: "service (matched "interfactory1.co.jp")" or "direct". */
static int cmd_route(const char *path, int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "hikyakuctl: usage: hikyakuctl route ADDRESS\n");
		return 2;
	}
	const char *addr = argv[1];
	char *ascii = route_ascii(addr);
	if (!ascii) {
		fprintf(stderr, "hikyakuctl: \"%s\" is not a mail address (local@domain).\n",
		        esc_tmp(addr));
		return 2;
	}
	free(ascii);
	struct config *cfg = NULL;
	if (load(path, &cfg, true) < 0)
		return 2;
	route_init();
	const struct config_domain *e = route_match(cfg, addr);
	int rc = e ? 0 : 1;
	if (e && cfg->service.host)
		printf("service (matched \"%s\")\n", esc_tmp(e->entry));
	else if (e)
		printf("direct (matched \"%s\", but no [service] host is configured)\n",
		       esc_tmp(e->entry));
	else
		printf("direct\n");
	config_free(cfg);
	return rc;
}

/* SPEC §8: the relay log, filtered (ctl/ctl_log.h). */
static int cmd_log(const char *path, int argc, char **argv)
{
	struct config *cfg = NULL;
	if (load(path, &cfg, true) < 0)
		return 2;
	int rc = ctl_log(cfg, argc, argv);
	config_free(cfg);
	return rc;
}

#define INGEST_MAX ((size_t)32 << 20)

/*
 * suppression ingest: a delivery status report on stdin, from the operator
 * (trusted, SPEC §6): every recipient it reports as failed with 5.1.x or
 * 5.2.1 is added. Exit 0 when at least one address was learned or already
 * listed, 1 when the input reports no such failure.
 */
static int ingest(const struct config *cfg, struct evlog *log)
{
	buf_t in;
	buf_init(&in, INGEST_MAX);
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		if (buf_append(&in, chunk, n) < 0) {
			fprintf(stderr, "hikyakuctl: the report on stdin is larger than 32 MiB.\n");
			buf_free(&in);
			return 2;
		}
	}
	route_init();
	struct dsn_report rep;
	int rc = dsn_parse(in.data ? in.data : "", in.len, &rep);
	buf_free(&in);
	if (rc <= 0) {
		fprintf(stderr, "hikyakuctl: stdin is not a delivery status report.\n");
		if (rc == 0)
			dsn_report_free(&rep);
		return rc == 0 ? 1 : 2;
	}
	struct supp *s;
	int orc = supp_open(cfg->suppression.db, &s);
	if (orc < 0) {
		char shown[256];        /* a PostgreSQL URI without its password */
		supp_db_display(cfg->suppression.db, shown, sizeof(shown));
		fprintf(stderr, "hikyakuctl: cannot open the suppression list %s: %s.\n",
		        shown, supp_strerror(orc));
		dsn_report_free(&rep);
		return 2;
	}
	/* The daemon's reading of a report (relay/bounce_in.h), trusted: no
	 * context, so every recipient that failed with 5.1.x or 5.2.1 is added.
	 * dsn_parse() reports each address once and at most
	 * DSN_PARSE_RCPTS_MAX of them: none is ignored. */
	GArray *learned = g_array_new(FALSE, TRUE, sizeof(struct bounce_found));
	unsigned unmatched = 0, ignored = 0;
	bounce_in_read(s, &rep, NULL, DSN_PARSE_RCPTS_MAX, (int64_t)clock_now_ms(), learned,
	               &unmatched, &ignored);
	supp_close(s);
	dsn_report_free(&rep);
	int found = 0, status = 0;
	for (guint i = 0; i < learned->len; i++) {
		struct bounce_found *f = &g_array_index(learned, struct bounce_found, i);
		if (f->add_failed) {
			fprintf(stderr, "hikyakuctl: cannot add %s to the suppression list.\n",
			        esc_tmp(f->addr));
			status = 2;
		} else {
			found++;
			printf("%s %s (%s)\n", f->is_new ? "learned" : "already listed:",
			       esc_tmp(f->addr), esc_tmp(f->status));
			if (f->is_new)
				evlog_learned(log, f->addr, "dsn", f->status, f->diagnostic);
		}
		bounce_in_found_clear(f);
	}
	g_array_free(learned, TRUE);
	if (!found && !status) {
		printf("the report names no recipient that failed with 5.1.x or 5.2.1; nothing learned\n");
		return 1;
	}
	return status;
}

static int cmd_suppression(const char *path, int argc, char **argv)
{
	/* survey reads the configuration only when it needs it (ctl_survey.h). */
	if (argc >= 2 && strcmp(argv[1], "survey") == 0)
		return ctl_survey(path, argc - 1, argv + 1);
	struct config *cfg = NULL;
	if (load(path, &cfg, true) < 0)
		return 2;
	struct evlog *log = NULL;
	if (evlog_open(cfg->log.file, &log) < 0)
		log = NULL; /* the list still works; the event is not logged */
	int rc;
	if (argc == 2 && strcmp(argv[1], "ingest") == 0)
		rc = ingest(cfg, log);
	else
		rc = ctl_suppression(cfg, log, argc, argv);
	evlog_close(log);
	config_free(cfg);
	return rc;
}

/* queue ... and status: through the control socket (ctl/ctl_queue.h). */
static int cmd_queue(const char *path, int argc, char **argv)
{
	struct config *cfg = NULL;
	if (load(path, &cfg, true) < 0)
		return 2;
	int rc = strcmp(argv[0], "status") == 0 ? ctl_status(cfg, argc, argv) : ctl_queue(cfg, argc, argv);
	config_free(cfg);
	return rc;
}

/* dkim keygen: no configuration needed (ctl/ctl_dkim.h). */
static int cmd_dkim(const char *path, int argc, char **argv)
{
	(void)path;
	return ctl_dkim(argc, argv);
}

/* domain check: the DNS records of SPEC §8 (ctl/ctl_domain.h). */
static int cmd_domain(const char *path, int argc, char **argv)
{
	struct config *cfg = NULL;
	if (load(path, &cfg, true) < 0)
		return 2;
	int rc = ctl_domain(cfg, argc, argv);
	config_free(cfg);
	return rc;
}

static const struct {
	const char *name;
	int (*fn)(const char *path, int argc, char **argv);
} commands[] = {
	{ "check", cmd_check },
	{ "config", cmd_config },
	{ "dkim", cmd_dkim },
	{ "domain", cmd_domain },
	{ "log", cmd_log },
	{ "queue", cmd_queue },
	{ "route", cmd_route },
	{ "status", cmd_queue },
	{ "suppression", cmd_suppression },
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	int opt;
	/* "+": options after the command belong to the command. */
	while ((opt = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (!path)
		path = config_default_path();
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			return commands[i].fn(path, argc - optind, argv + optind);
	fprintf(stderr, "hikyakuctl: unknown command \"%s\"; try hikyakuctl --help\n",
	        esc_tmp(argv[optind]));
	return 2;
}
