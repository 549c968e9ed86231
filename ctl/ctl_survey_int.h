/*
 * NAME
 *	ctl_survey_int - the survey's parts, shared between its two files
 * SUMMARY
 *	Not an interface for others (that is ctl/ctl_survey.h, which says
 *	what the survey counts and prints): what reading the logs leaves
 *	behind (struct survey: per bounced address its failures, the
 *	delivered addresses, the line counts) and the rows made of it.
 *	Internal functions start with survey_.
 * DESCRIPTION
 *	ctl/ctl_survey_read.c  the logs read: files (plain or gzip), Postfix
 *	                       lines (ctl/postfix_log.c), hikyaku's JSON lines,
 *	                       the outcomes per address; the rows made of them
 *	ctl/ctl_survey.c       the command: options, the table and --json
 *	                       output, --import
 *
 *	survey_read_file() reads one file into s (s->file its index,
 *	s->addrs made with survey_addr_free() for its values; buf holds
 *	LINE_MAX_BYTES); it returns 0, or -1 after printing why the file
 *	could not be read to its end. survey_rows() returns the rows (free
 *	with g_free(); they point into s), sorted by folded address, with
 *	*failures the failures they count. survey_fold() is an address in
 *	ASCII lower case, as the rows' keys are (SPEC §6.1), to g_free().
 * TOUCHES
 *	Nothing: declarations only.
 */
#ifndef HK_CTL_CTL_SURVEY_INT_H
#define HK_CTL_CTL_SURVEY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#define LINE_MAX_BYTES ((size_t)1 << 20)   /* longer lines are malformed */

/*
 * The delivered addresses: hash of the folded address -> time of the
 * latest delivery. Open addressing, 16 bytes a slot, half full at most:
 * this is the table that grows with the shop's good recipients, so it
 * keeps no strings.
 */
struct dtab {
	uint64_t *key;          /* 0: empty */
	int64_t *ts;
	size_t cap, n;
};

/* One failure line: its time and a digest of what identifies the line. */
struct failure {
	int64_t ts;
	uint64_t key;
};

struct addr {
	char *display;          /* the spelling of the latest failure */
	char *status;           /* ... its enhanced status */
	char *response;         /* ... its response (NULL: none) */
	int64_t last_ts;
	uint64_t last_key;
	unsigned file;          /* ... the file it was read from */
	struct failure *v;
	size_t n, cap, compacted;
};

struct counts {
	unsigned long lines, records, other, foreign, malformed, old;
};

/*
 * mktime() asks the time zone file each time (glibc stats /etc/localtime
 * when TZ is unset): a 1 GB log would spend seconds in the kernel. The
 * local time of the hour a line falls in is kept instead.
 */
struct hour_cache {
	bool valid;
	int rc;
	int mon, mday, hour;
	int64_t ref_ms, base_ms;
};

struct survey {
	GHashTable *addrs;      /* folded address -> struct addr */
	struct hour_cache hc;
	struct dtab delivered;
	int64_t since_ms;       /* INT64_MIN: no --since */
	struct counts c;
	unsigned file;          /* index of the file being read */
	int64_t ref_ms;         /* its modification time (year inference) */
};

struct row {
	const char *folded;
	struct addr *a;
	int64_t first_ts;
	size_t count;
};

char *survey_fold(const char *p, size_t n);
void survey_addr_free(gpointer p);
int survey_read_file(struct survey *s, const char *name, char *buf);
struct row *survey_rows(struct survey *s, size_t *nrows, size_t *failures);

#endif
