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
 * DIAGNOSTICS
 *	Exit 0 success, 1 not found / no match, 2 usage or configuration
 *	error. Errors go to stderr in one sentence.
 * TOUCHES
 *	Reads the configuration file.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "relay/route.h"

static void usage(FILE *fp)
{
	fprintf(fp, "usage: hikyakuctl [-c FILE] COMMAND ...\n"
	            "commands:\n"
	            "  check               validate the configuration\n"
	            "  config              print the effective configuration\n"
	            "  route ADDRESS       the route a mail from ADDRESS takes (SPEC §4)\n");
}

static int load(const char *path, struct config **cfg, bool quiet_ok)
{
	struct config_diags diags = { 0 };
	int rc = config_load(path, cfg, &diags);
	for (size_t i = 0; i < diags.n; i++)
		if (!quiet_ok || !diags.v[i].warning || rc < 0)
			fprintf(stderr, "%s\n", diags.v[i].text);
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
	config_print(cfg, stdout);
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
		fprintf(stderr, "hikyakuctl: \"%s\" is not a mail address (local@domain).\n", addr);
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
		printf("service (matched \"%s\")\n", e->entry);
	else if (e)
		printf("direct (matched \"%s\", but no [service] host is configured)\n", e->entry);
	else
		printf("direct\n");
	config_free(cfg);
	return rc;
}

static const struct {
	const char *name;
	int (*fn)(const char *path, int argc, char **argv);
} commands[] = {
	{ "check", cmd_check },
	{ "config", cmd_config },
	{ "route", cmd_route },
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
	fprintf(stderr, "hikyakuctl: unknown command \"%s\"; try hikyakuctl --help\n", argv[optind]);
	return 2;
}
