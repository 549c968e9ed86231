/*
 * clock - wall-clock time as hikyaku records it, and RFC 3339 text.
 * See clock.h. GLib's GDateTime does the calendar; the text forms are
 * checked here, as they are narrower than g_date_time_new_from_iso8601()
 * reads (it takes basic and week dates, a comma, an offset of hours).
 */
#include "util/clock.h"

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include <glib.h>

uint64_t clock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int format(int64_t ms, bool millis, char *out, size_t cap)
{
	if (!out || cap == 0)
		return -1;
	out[0] = '\0';
	/* Whole seconds toward minus infinity: -1 ms is 23:59:59.999. */
	int64_t secs = ms / 1000 - (ms % 1000 < 0);
	GDateTime *t = g_date_time_new_from_unix_utc(secs);
	if (!t)
		return -1;
	int frac = (int)(ms - secs * 1000); /* secs is within GLib's years: no overflow */
	int y, mo, d;
	g_date_time_get_ymd(t, &y, &mo, &d);
	int h = g_date_time_get_hour(t), mi = g_date_time_get_minute(t);
	int sec = g_date_time_get_second(t);
	g_date_time_unref(t);
	int n = millis ? snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, mo, d, h, mi,
	                          sec, frac)
	               : snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d, h, mi, sec);
	return n < 0 || (size_t)n >= cap ? -1 : 0; /* cut short: snprintf()'s text */
}

int clock_rfc3339(int64_t ms, char *out, size_t cap)
{
	return format(ms, true, out, cap);
}

int clock_rfc3339_seconds(int64_t ms, char *out, size_t cap)
{
	return format(ms, false, out, cap);
}

/* n decimal digits at *p; advances *p. */
static bool digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

int clock_rfc3339_parse(const char *s, int64_t *ms)
{
	int y, mo, d, h, mi, sec, ms_part = 0, oh = 0, om = 0, sign = 0;
	const char *p = s;

	if (!s || !ms)
		return -1;
	if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
	    !digits(&p, 2, &d))
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
	    !digits(&p, 2, &sec))
		return -1;
	if (*p == '.') {
		int scale = 100, nd = 0;

		for (p++; *p >= '0' && *p <= '9'; p++, nd++) {
			ms_part += (*p - '0') * scale;
			scale /= 10;
		}
		if (nd == 0)
			return -1;
	}
	if (*p == ' ')
		p++;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (!digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (!digits(&p, 2, &om))
			return -1;
	} else {
		return -1;
	}
	if (*p != '\0' || h > 23 || mi > 59 || sec > 60 || oh > 23 || om > 59)
		return -1;
	/* 60 is the next minute: on the same day only. */
	if (sec == 60 && h == 23 && mi == 59)
		return -1;
	/* NULL for a date that does not exist (31 February, month 13, year 0). */
	GDateTime *t = g_date_time_new_utc(y, mo, d, h, mi, sec == 60 ? 59 : sec);
	if (!t)
		return -1;
	int64_t secs = g_date_time_to_unix(t) + (sec == 60) - sign * (oh * 3600 + om * 60);
	g_date_time_unref(t);
	*ms = secs * 1000 + ms_part;
	return 0;
}
