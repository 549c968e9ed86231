/*
 * NAME
 *	esc - show untrusted text on a terminal without its control characters
 * SUMMARY
 *	The one escaping helper of hikyakuctl (SPEC §8): text that came from
 *	mail, peers or the log is written to a terminal with every control
 *	character shown escaped, so that a display name holding ESC ]2;...BEL,
 *	ESC [2J or an OSC-8 link cannot retitle the window, clear the screen
 *	or plant a link.
 * DESCRIPTION
 *	esc_text() returns a copy of n octets of s (n < 0: up to the NUL) in
 *	which
 *	  - TAB, LF and CR are shown as \t, \n and \r, every other C0
 *	    control (ESC, BEL, NUL, ...) and DEL as \xHH;
 *	  - the C1 controls U+0080..U+009F (CSI, OSC, ST ... in their UTF-8
 *	    form), the line and paragraph separators U+2028/U+2029 and the
 *	    bidirectional overrides and isolates (U+202A..U+202E,
 *	    U+2066..U+2069, which reorder what follows on the line) as \uHHHH;
 *	  - every octet that is not part of valid UTF-8 (a raw C1 byte
 *	    included) as \xHH.
 *	Everything else, backslashes and non-ASCII text included, is kept.
 *	With ESC_KEEP_NL, LF is kept (for text whose lines are the output's
 *	own lines, such as a printed configuration). The result is valid
 *	UTF-8 without control characters (but LF with ESC_KEEP_NL).
 *
 *	esc_tmp() is esc_text(s, -1, 0) for use inside one printf(): the
 *	result stays valid until ESC_TMP_SLOTS further calls (a ring of
 *	buffers; one thread). esc_tmp(NULL) is NULL.
 *
 *	esc_json() takes JSON text (as jansson writes it, or a log line)
 *	and returns it with DEL and the characters above written as
 *	\uHHHH escapes, a raw C0 control but TAB, LF and CR (JSON's white
 *	space; inside strings jansson escapes them) as \u00HH, an invalid
 *	octet as \ufffd. JSON allows any character to be escaped, so a valid
 *	document stays valid and means the same; jansson itself escapes
 *	only C0, '"' and '\\'.
 *
 *	esc_needed() tells whether esc_text() would change s.
 *
 *	esc_cut() gives the length of the longest prefix of the string s of
 *	at most max octets that does not end inside a UTF-8 character, for
 *	printf("%.*s"): "%.40s" may cut a character in two, and JSON (jansson)
 *	refuses the invalid UTF-8 that leaves.
 * DIAGNOSTICS
 *	The returned strings are g_malloc'd (g_free), except esc_tmp's.
 * TOUCHES
 *	Memory only.
 */
#ifndef HK_UTIL_ESC_H
#define HK_UTIL_ESC_H

#include <stdbool.h>
#include <sys/types.h>

#define ESC_KEEP_NL 1u
#define ESC_TMP_SLOTS 32

char *esc_text(const char *s, ssize_t n, unsigned flags);
const char *esc_tmp(const char *s);
char *esc_json(const char *s, ssize_t n);
bool esc_needed(const char *s, ssize_t n);
size_t esc_cut(const char *s, size_t max);

#endif
