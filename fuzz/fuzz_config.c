/*
 * fuzz_config - the configuration loader (config/config*.c,
 * config/ini_reader.c, libinih) on arbitrary file content.
 *
 * The input is written to DIR/hikyaku.conf in a private temporary
 * directory and loaded with config_load(). Checked:
 *
 *  - config_load() returns 0 exactly when no error was reported, and
 *    then gives a configuration; -1 leaves *out NULL;
 *  - every diagnostic is "FILE:LINE: ..." or "FILE: ..." with the path
 *    given, one line, and the count of errors is right;
 *  - a loaded configuration passes its own checks: listen addresses,
 *    verified_domains in A-label form;
 *  - round trip: config_print() of a loaded configuration is a file
 *    that loads without error, and printing that gives the same text
 *    (hikyakuctl config shows a configuration one can use). Not checked
 *    when a printed path or host name is longer than a line may be
 *    (a relative path printed absolute, a U-label host name printed as
 *    A-labels): such a file cannot be written back at all.
 *  - config_free() / config_diags_free() free everything (LeakSanitizer).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

static char dir[256];
static char path[300];
static char path2[300];

static void cleanup(void)
{
	unlink(path);
	unlink(path2);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/hikyaku-fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/hikyaku.conf", dir);
	snprintf(path2, sizeof(path2), "%s/printed.conf", dir);
	atexit(cleanup);
	return 0;
}

static void write_file(const char *p, const void *b, size_t n)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	const char *c = b;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		CHECK(w > 0);
		c += w;
		n -= (size_t)w;
	}
	close(fd);
}

static void check_diags(const struct config_diags *d, const char *file, int rc)
{
	size_t nerr = 0, plen = strlen(file);

	for (size_t i = 0; i < d->n; i++) {
		const char *t = d->v[i].text;
		CHECK(t);
		CHECK(strncmp(t, file, plen) == 0 && t[plen] == ':');
		CHECK(!strchr(t, '\n'));
		if (!d->v[i].warning)
			nerr++;
	}
	CHECK(nerr == d->nerrors);
	CHECK((rc == 0) == (d->nerrors == 0));
}

static char *print(const struct config *cfg, size_t *len)
{
	char *text = NULL;
	FILE *fp = open_memstream(&text, len);
	CHECK(fp);
	config_print(cfg, fp);
	CHECK(fclose(fp) == 0);
	return text;
}

/*
 * A printed line may exceed the file's limit where the printer cannot
 * help it: a relative path printed absolute, a host name printed in
 * A-label form. Then the round trip is not possible, and not checked.
 */
static bool too_long_by_nature(const char *text, size_t len)
{
	static const char *const keys[] = { "hostname", "host", "tls_cert", "tls_key",
	                                    "auth_file", "ca_file", "password_file", "dir",
	                                    "db", "file", "socket", NULL };
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > CONFIG_MAX_LINE) {
			for (int i = 0; keys[i]; i++) {
				size_t kl = strlen(keys[i]);
				if (n > kl + 2 && strncmp(p, keys[i], kl) == 0 &&
				    strncmp(p + kl, " =", 2) == 0)
					return true;
			}
		}
		p = nl ? nl + 1 : end;
	}
	return false;
}

static void check_config(const struct config *cfg)
{
	CHECK(cfg->server.nlisten > 0);
	CHECK(cfg->server.hostname && *cfg->server.hostname);
	for (size_t i = 0; i < cfg->routing.ndomains; i++) {
		const struct config_domain *e = &cfg->routing.domains[i];
		CHECK(e->entry && e->ascii);
		CHECK(e->is_address == (strchr(e->entry, '@') != NULL));
		CHECK(e->is_address == (strchr(e->ascii, '@') != NULL));
	}
	CHECK(cfg->service.rate_period_s == 1 || cfg->service.rate_period_s == 60 ||
	      cfg->service.rate_period_s == 3600);
	CHECK(cfg->service.rate_count >= 1);
	CHECK(cfg->queue.dir && cfg->suppression.db && cfg->log.file && cfg->control.socket);
	CHECK(strlen(cfg->control.socket) <= CONFIG_SOCKET_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = (struct config *)1;
	struct config_diags diags = { 0 };

	if (size > 64 * 1024)
		return 0;
	write_file(path, data, size);
	int rc = config_load(path, &cfg, &diags);
	CHECK(rc == 0 || rc == -1);
	check_diags(&diags, path, rc);
	config_diags_free(&diags);
	CHECK(diags.v == NULL && diags.n == 0);
	if (rc != 0) {
		CHECK(cfg == NULL);
		return 0;
	}
	CHECK(cfg);
	check_config(cfg);

	/* Round trip through config_print(). */
	size_t len1 = 0, len2 = 0;
	char *text1 = print(cfg, &len1);
	config_free(cfg);
	if (too_long_by_nature(text1, len1)) {
		free(text1);
		return 0;
	}
	write_file(path2, text1, len1);
	struct config *cfg2 = NULL;
	rc = config_load(path2, &cfg2, &diags);
	if (rc != 0) {
		for (size_t i = 0; i < diags.n; i++)
			fprintf(stderr, "round trip: %s\n", diags.v[i].text);
		fprintf(stderr, "printed:\n%s", text1);
	}
	CHECK(rc == 0);
	config_diags_free(&diags);
	char *text2 = print(cfg2, &len2);
	if (len1 != len2 || memcmp(text1, text2, len1) != 0)
		fprintf(stderr, "first print:\n%s\nsecond print:\n%s", text1, text2);
	CHECK(len1 == len2 && memcmp(text1, text2, len1) == 0);
	config_free(cfg2);
	free(text1);
	free(text2);
	return 0;
}
