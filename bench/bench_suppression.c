/*
 * bench_suppression - the suppression lookup's cost per delivery, per store.
 *
 *	bench_suppression DB DIR [ENTRIES [LOOKUPS]]
 *
 * Fills the store named by DB (a SQLite path or a postgresql:// URI) with
 * ENTRIES addresses (default 10000) through the import, then times LOOKUPS
 * (default 20000) supp_lookup() calls, half of them listed, half not, as
 * the runner makes them: one per pending recipient of a delivery attempt.
 * For PostgreSQL it times both the daemon's way (supp_open_spool(): the
 * local copy in DIR, kept in step by the sync thread) and hikyakuctl's
 * (supp_open(): one round trip to the server per call). Prints one line per
 * store: median, 99th percentile and mean in microseconds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "relay/suppression.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void run(const char *name, struct supp *s, long entries, long lookups)
{
	double *t = malloc(sizeof(*t) * (size_t)lookups), sum = 0;
	long hits = 0;
	char addr[64];

	for (long i = 0; i < lookups; i++) {
		/* Even i: a listed address; odd: one that is not. */
		snprintf(addr, sizeof(addr), "%s%ld@bench.example", i % 2 ? "miss" : "user",
		         (i * 7919) % entries);
		double t0 = now_us();
		int rc = supp_lookup(s, addr, NULL);
		t[i] = now_us() - t0;
		sum += t[i];
		if (rc < 0) {
			fprintf(stderr, "%s: lookup failed: %s\n", name, supp_strerror(rc));
			exit(1);
		}
		hits += rc == 1;
	}
	qsort(t, (size_t)lookups, sizeof(*t), cmp);
	printf("%-26s %7ld lookups (%ld listed) of %ld entries: median %.1f us, p99 %.1f us, "
	       "mean %.1f us\n", name, lookups, hits, entries, t[lookups / 2],
	       t[lookups * 99 / 100], sum / (double)lookups);
	free(t);
}

int main(int argc, char **argv)
{
	struct supp *s;
	long entries = argc > 3 ? atol(argv[3]) : 10000;
	long lookups = argc > 4 ? atol(argv[4]) : 20000;
	char err[200], path[512];
	long line;
	FILE *f;
	int rc;

	if (argc < 3 || entries < 1 || lookups < 1) {
		fprintf(stderr, "usage: bench_suppression DB DIR [ENTRIES [LOOKUPS]]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/bench.csv", argv[2]);
	f = fopen(path, "w");
	if (!f)
		return 1;
	fprintf(f, "address,reason\n");
	for (long i = 0; i < entries; i++)
		fprintf(f, "user%ld@bench.example,bounced\n", i);
	fclose(f);
	rc = supp_open(argv[1], &s);
	if (rc < 0) {
		fprintf(stderr, "cannot open the store: %s\n", supp_strerror(rc));
		return 1;
	}
	f = fopen(path, "r");
	rc = supp_import_csv(s, f, "import", 1, &line, err, sizeof(err));
	fclose(f);
	if (rc < 0) {
		fprintf(stderr, "import: %s\n", err);
		return 1;
	}
	if (!supp_db_is_pg(argv[1])) {
		run("sqlite", s, entries, lookups);
		supp_close(s);
		return 0;
	}
	run("postgresql (hikyakuctl)", s, entries, lookups / 10);
	supp_close(s);
	rc = supp_open_spool(argv[1], argv[2], &s);
	if (rc < 0)
		return 1;
	/* Wait until the sync thread has read the list into the copy. */
	snprintf(path, sizeof(path), "user%ld@bench.example", entries - 1);
	for (int i = 0; i < 600 && supp_lookup(s, path, NULL) != 1; i++)
		usleep(100 * 1000);
	run("postgresql (daemon, copy)", s, entries, lookups);
	supp_close(s);
	return 0;
}
