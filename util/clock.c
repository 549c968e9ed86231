/*
 * clock - wall-clock time as hikyaku records it. See clock.h.
 */
#include "util/clock.h"

#include <stdio.h>
#include <time.h>

uint64_t clock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void clock_rfc3339(uint64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char date[CLOCK_RFC3339_SIZE];

	if (!out || cap == 0)
		return;
	if (!gmtime_r(&t, &tm) || !strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm)) {
		out[0] = '\0';
		return;
	}
	snprintf(out, cap, "%s.%03uZ", date, (unsigned)(ms % 1000));
}
