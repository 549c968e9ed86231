/*
 * NAME
 *	clock - wall-clock time as hikyaku records it
 * DESCRIPTION
 *	clock_now_ms() is the current Unix time in milliseconds.
 *	clock_rfc3339() formats such a time as the log's "ts" field does
 *	(SPEC §7): RFC 3339, UTC, milliseconds, "2026-11-26T06:14:04.123Z";
 *	CLOCK_RFC3339_SIZE bytes are enough.
 * TOUCHES
 *	Nothing.
 */
#ifndef HK_UTIL_CLOCK_H
#define HK_UTIL_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define CLOCK_RFC3339_SIZE 32

uint64_t clock_now_ms(void);
void clock_rfc3339(uint64_t ms, char *out, size_t cap);

#endif
