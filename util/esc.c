/*
 * esc - show untrusted text on a terminal without its control
 * characters. See esc.h. GLib decodes the UTF-8; what counts as a
 * control is decided here, in one place, for every hikyakuctl command.
 */
#include "util/esc.h"

#include <glib.h>
#include <string.h>

/* JSON text: TAB, LF, CR outside strings are its white space (jansson
 * escapes them inside strings), kept. */
#define KEEP_JSON_WS 0x100u

/* A code point that must not reach a terminal as it is. */
static bool cp_hidden(gunichar c)
{
	return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029 ||
	       (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/*
 * Walks s, calling out for each run of kept text and each character to
 * escape (cp, or (gunichar)-1 - byte for an invalid octet).
 */
typedef void (*esc_put_fn)(GString *g, const char *p, size_t n, gunichar cp, unsigned flags);

static void esc_walk(GString *g, const char *s, size_t n, unsigned flags, esc_put_fn put)
{
	size_t i = 0, run = 0;

	while (i < n) {
		gunichar c = g_utf8_get_char_validated(s + i, (gssize)(n - i));
		size_t len;

		if (c == (gunichar)-1 || c == (gunichar)-2) {
			if (i > run)
				g_string_append_len(g, s + run, (gssize)(i - run));
			put(g, s + i, 1, (gunichar)-1, flags);
			run = ++i;
			continue;
		}
		len = (size_t)(g_utf8_next_char(s + i) - (s + i));
		/* g_utf8_get_char_validated() takes a NUL for the end. */
		if (c == 0)
			len = 1;
		bool keep = (c == '\n' && (flags & ESC_KEEP_NL)) ||
		            ((flags & KEEP_JSON_WS) && (c == '\t' || c == '\n' || c == '\r'));
		if (cp_hidden(c) && !keep) {
			if (i > run)
				g_string_append_len(g, s + run, (gssize)(i - run));
			put(g, s + i, len, c, flags);
			run = i + len;
		}
		i += len;
	}
	if (n > run)
		g_string_append_len(g, s + run, (gssize)(n - run));
}

static void put_text(GString *g, const char *p, size_t n, gunichar c, unsigned flags)
{
	(void)n;
	(void)flags;
	if (c == (gunichar)-1)
		g_string_append_printf(g, "\\x%02x", (unsigned char)p[0]);
	else if (c == '\t')
		g_string_append(g, "\\t");
	else if (c == '\n')
		g_string_append(g, "\\n");
	else if (c == '\r')
		g_string_append(g, "\\r");
	else if (c < 0x80)
		g_string_append_printf(g, "\\x%02x", (unsigned)c);
	else
		g_string_append_printf(g, "\\u%04x", (unsigned)c);
}

static void put_json(GString *g, const char *p, size_t n, gunichar c, unsigned flags)
{
	(void)p;
	(void)n;
	(void)flags;
	if (c == (gunichar)-1)
		g_string_append(g, "\\ufffd");
	else
		g_string_append_printf(g, "\\u%04x", (unsigned)c);
}

static size_t len_of(const char *s, ssize_t n)
{
	return n < 0 ? strlen(s) : (size_t)n;
}

char *esc_text(const char *s, ssize_t n, unsigned flags)
{
	if (!s)
		return g_strdup("");
	size_t len = len_of(s, n);
	GString *g = g_string_sized_new(len + 1);

	esc_walk(g, s, len, flags, put_text);
	return g_string_free(g, FALSE);
}

const char *esc_tmp(const char *s)
{
	static _Thread_local char *ring[ESC_TMP_SLOTS];
	static _Thread_local unsigned next;

	if (!s)
		return NULL;
	unsigned k = next++ % ESC_TMP_SLOTS;
	g_free(ring[k]);
	ring[k] = esc_text(s, -1, 0);
	return ring[k];
}

char *esc_json(const char *s, ssize_t n)
{
	if (!s)
		return g_strdup("");
	size_t len = len_of(s, n);
	GString *g = g_string_sized_new(len + 1);

	esc_walk(g, s, len, KEEP_JSON_WS, put_json);
	return g_string_free(g, FALSE);
}

bool esc_needed(const char *s, ssize_t n)
{
	if (!s)
		return false;
	size_t len = len_of(s, n);
	for (size_t i = 0; i < len;) {
		gunichar c = g_utf8_get_char_validated(s + i, (gssize)(len - i));
		if (c == (gunichar)-1 || c == (gunichar)-2 || c == 0 || cp_hidden(c))
			return true;
		i += (size_t)(g_utf8_next_char(s + i) - (s + i));
	}
	return false;
}

size_t esc_cut(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n < max || !s[n])
		return n;
	/* s[n] is the first octet left out: back up over continuation octets. */
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}
