/*
 * NAME
 *	ini_reader - the line reader that feeds libinih hikyaku's file syntax
 * SUMMARY
 *	See ini_reader.h. libinih is trusted with the splitting of a good
 *	line (name, value, inline comment); this file only decides which
 *	lines libinih may see at all.
 * DESCRIPTION
 *	The classification below mirrors libinih's own loop (ini.c,
 *	ini_parse_stream(), release 55) so that the two never disagree about
 *	what a line is: a line whose first non-blank character is in ";#" is
 *	a comment (a blank line too); an indented line continues the last
 *	key; "[" opens a section; anything else is split at the first '=' or
 *	':' found before an inline comment (a ';' preceded by a blank).
 * DIAGNOSTICS
 *	Through the error() callback.
 * TOUCHES
 *	Reads the FILE given to ini_reader_init().
 */
#include "config/ini_reader.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

void ini_reader_init(struct ini_reader *r, FILE *fp,
		     void (*error)(void *arg, int line, const char *msg),
		     void (*section)(void *arg, int line, const char *name),
		     void *arg)
{
	r->fp = fp;
	r->line = 0;
	r->continuation = false;
	r->state = INI_READER_NO_KEY;
	r->error = error;
	r->section = section;
	r->arg = arg;
}

/*
 * libinih's find_chars_or_comment() with inline comments on and ";" as
 * the only inline comment prefix: the first character of chars, or the
 * ';' of a " ;" comment, or the end of the string.
 */
static const char *find_chars_or_comment(const char *s, const char *chars)
{
	bool was_space = false;

	while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static const char *skip_blanks(const char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return s;
}

/*
 * Refuse the current line: report it, and hand libinih an empty line so
 * that it goes on with the next one. A refused line in column 0 takes
 * the place of a key, so the indented lines under it are its own
 * (broken) continuation and must not be appended to an earlier key.
 */
static char *refuse(struct ini_reader *r, char *str, bool indented, const char *msg)
{
	if (msg && r->error)
		r->error(r->arg, r->line, msg);
	if (!indented)
		r->state = INI_READER_BROKEN;
	str[0] = '\0';
	return str;
}

static char *section_line(struct ini_reader *r, char *str, const char *p)
{
	const char *end = find_chars_or_comment(p + 1, "]");

	if (*end != ']') {
		if (r->section)
			r->section(r->arg, r->line, NULL);
		r->state = INI_READER_NO_KEY;
		return refuse(r, str, true, "section header has no closing \"]\"");
	}
	/* libinih ignores whatever follows the "]"; a typo there must not. */
	const char *rest = skip_blanks(end + 1);
	if (*rest && !(*rest == ';' && rest > end + 1)) {
		if (r->section)
			r->section(r->arg, r->line, NULL);
		r->state = INI_READER_NO_KEY;
		return refuse(r, str, true, "text after the section header");
	}

	char name[256];
	size_t n = (size_t)(end - (p + 1));
	if (n >= sizeof(name))
		n = sizeof(name) - 1;
	memcpy(name, p + 1, n);
	name[n] = '\0';
	if (r->section)
		r->section(r->arg, r->line, name);
	r->state = INI_READER_NO_KEY;
	return str;
}

static char *classify(struct ini_reader *r, char *str)
{
	const char *p = skip_blanks(str);
	bool indented = p != str;

	if (*p == '\0' || *p == ';' || *p == '#')
		return str;     /* blank or comment: no change of state */

	if (indented) {
		switch (r->state) {
		case INI_READER_IN_KEY:
			/*
			 * SPEC §3: comments never sit on a continuation line.
			 * libinih 55 hands such a comment on as part of the
			 * value (a release that strips it would not); refusing
			 * it keeps the meaning of a file the same with either.
			 */
			if (*find_chars_or_comment(p, ""))
				return refuse(r, str, true,
					      "a continuation line cannot carry a comment "
					      "(put it on a line of its own)");
			r->continuation = true;
			return str;
		case INI_READER_BROKEN:
			return refuse(r, str, true, NULL);
		case INI_READER_NO_KEY:
			break;
		}
		/*
		 * libinih would take this for a key of its own (it has no
		 * previous key to continue), which would make indentation
		 * meaningful in one place and not in another.
		 */
		return refuse(r, str, true,
			      "indented line continues no key (keys and sections start in column 0)");
	}

	if (*p == '[')
		return section_line(r, str, p);

	const char *sep = find_chars_or_comment(p, "=:");
	if (*sep == ':')
		return refuse(r, str, false, "expected \"key = value\" (with \"=\", not \":\")");
	if (*sep != '=')
		return refuse(r, str, false, "expected \"key = value\", a [section] or a comment");
	if (skip_blanks(p) == sep)
		return refuse(r, str, false, "no key name before \"=\"");
	r->state = INI_READER_IN_KEY;
	return str;
}

char *ini_reader_gets(char *str, int num, void *stream)
{
	struct ini_reader *r = stream;
	size_t max = num > 1 ? (size_t)num - 1 : 0;
	size_t n = 0;
	bool got = false, over = false, nul = false;
	int c;

	/*
	 * Read one whole physical line however long it is, but store at
	 * most max bytes: the rest of a long line is consumed here, never
	 * handed on as a line of its own (libinih would silently split it).
	 */
	while ((c = getc(r->fp)) != EOF) {
		got = true;
		if (c == '\n')
			break;
		if (c == '\r') {
			int d = getc(r->fp);
			if (d == '\n')
				break;
			if (d != EOF)
				ungetc(d, r->fp);
		}
		if (c == '\0')
			nul = true;
		if (n < max)
			str[n++] = (char)c;
		else
			over = true;
	}
	if (!got)
		return NULL;
	str[n] = '\0';
	r->line++;
	r->continuation = false;

	if (r->line == 1 && n >= 3 && memcmp(str, "\xEF\xBB\xBF", 3) == 0)
		memmove(str, str + 3, n - 2);

	bool indented = isspace((unsigned char)str[0]);
	if (over) {
		char msg[64];
		snprintf(msg, sizeof(msg), "line is longer than %zu bytes", max);
		return refuse(r, str, indented, msg);
	}
	if (nul)
		return refuse(r, str, indented, "line contains a NUL byte");
	return classify(r, str);
}
