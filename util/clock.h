/*
 * NAME
 *	clock - wall-clock time as hikyaku records it, and RFC 3339 text
 * DESCRIPTION
 *	clock_now_ms() is the current Unix time in milliseconds.
 *
 *	clock_rfc3339() formats such a time as the log's "ts" field does
 *	(SPEC §7): RFC 3339, UTC, milliseconds, "2026-11-26T06:14:04.123Z",
 *	the year in four digits; a time before 1970 too.
 *	clock_rfc3339_seconds() is the same without the milliseconds,
 *	"2026-11-26T06:14:04Z" (the suppression store's "since"). Each
 *	writes at most CLOCK_RFC3339_SIZE bytes with the NUL.
 *
 *	clock_rfc3339_parse() reads an RFC 3339 date-time (§5.6) into Unix
 *	milliseconds: "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)"; also a
 *	lower-case t or z, a blank for the T, "+hhmm", and one blank before
 *	the zone (what spreadsheets and SES's tools write). A fraction has
 *	at least one digit; those beyond milliseconds are dropped. Refused:
 *	a date that does not exist (31 February), hours over 23, minutes
 *	over 59, seconds over 60, an offset over 23:59, a time without its
 *	zone, any other ISO 8601 form (basic, week or ordinal dates, a comma
 *	for the point), blanks around it. Second 60 is read as the next
 *	minute's first, and refused at 23:59 (it would be another day),
 *	as the suppression import always did.
 *
 *	The calendar is GLib's (GDateTime), so the date of a time given or
 *	read lies in the years 1 to 9999.
 * DIAGNOSTICS
 *	clock_rfc3339() and clock_rfc3339_seconds() return 0, or -1: with
 *	out empty for a time outside the years 1 to 9999, with the text cut
 *	(never overrun) when cap is too small.
 *	clock_rfc3339_parse() returns 0, or -1 (and leaves *ms) when s is
 *	not such a time.
 * TOUCHES
 *	Nothing (clock_now_ms() reads the clock).
 */
#ifndef HK_UTIL_CLOCK_H
#define HK_UTIL_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define CLOCK_RFC3339_SIZE 32

uint64_t clock_now_ms(void);
int clock_rfc3339(int64_t ms, char *out, size_t cap);
int clock_rfc3339_seconds(int64_t ms, char *out, size_t cap);
int clock_rfc3339_parse(const char *s, int64_t *ms);

#endif
