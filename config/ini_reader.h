/*
 * NAME
 *	ini_reader - the line reader that feeds libinih hikyaku's file syntax
 * SUMMARY
 *	libinih reads a file through an fgets-like callback. This module is
 *	that callback: it counts lines, refuses long lines instead of letting
 *	them be split, tells continuation lines apart from key lines, and
 *	turns every line that libinih would reject into a diagnostic of its
 *	own, so that one pass reports every syntax error, not only the first.
 * DESCRIPTION
 *	ini_reader_init() prepares a reader of fp. error() is called once for
 *	each bad line with its number and a message; section() is called for
 *	each section header with the name between the brackets, or with NULL
 *	when the header itself is broken (the keys below it then belong to
 *	no section). Both get arg.
 *
 *	ini_reader_gets() is the ini_reader passed to ini_parse_stream() with
 *	the struct ini_reader as the stream. It returns one physical line
 *	without its line end (LF or CRLF), at most num - 1 bytes, or NULL at
 *	end of file or on a read error (check ferror(fp)). A line it refuses
 *	is handed on as an empty line, which libinih skips like a blank line,
 *	so that parsing goes on. After each call:
 *
 *	line		is the number of the line just returned (1 is the
 *			first). libinih calls its handler for a line before
 *			reading the next one, so a handler may read it.
 *	continuation	is true when that line is indented and continues the
 *			value of the key above it (libinih then calls the
 *			handler again with that key's name).
 *
 *	The syntax enforced (SPEC §3): sections and keys start in column 0;
 *	a key line is "name = value" (libinih's "name: value" is refused);
 *	an indented non-blank line continues the last key of the section
 *	(comment and blank lines in between allowed, as in libinih); a
 *	line whose first non-blank character is ';' or '#' is a comment,
 *	indented or not, and never a continuation; "[name]" may be followed
 *	by blanks and a " ;" comment only. Refused: a line of more than
 *	num - 1 bytes (its rest is consumed, never read as a line of its
 *	own), a NUL byte, a "[" without "]", text after "]", a column-0 line
 *	without "=", an empty key name, an indented line that follows a
 *	section header or the start of the file, and a continuation line
 *	that carries a " ;" comment (SPEC §3: comments never sit on a
 *	continuation line; libinih 55 keeps such a comment as part of the
 *	value). Indented lines below a refused line are dropped without a
 *	second diagnostic: they belong to the line already reported. A
 *	UTF-8 byte order mark at the start of the file is skipped.
 * DIAGNOSTICS
 *	Through the error() callback only.
 * TOUCHES
 *	Reads fp; nothing else.
 */
#ifndef HK_CONFIG_INI_READER_H
#define HK_CONFIG_INI_READER_H

#include <stdbool.h>
#include <stdio.h>

enum ini_reader_state {
	INI_READER_NO_KEY,      /* no key line yet in this section */
	INI_READER_IN_KEY,      /* indented lines continue the last key */
	INI_READER_BROKEN,      /* the last key-level line was refused */
};

struct ini_reader {
	FILE *fp;
	int line;
	bool continuation;
	enum ini_reader_state state;
	void (*error)(void *arg, int line, const char *msg);
	void (*section)(void *arg, int line, const char *name);
	void *arg;
};

void ini_reader_init(struct ini_reader *r, FILE *fp,
		     void (*error)(void *arg, int line, const char *msg),
		     void (*section)(void *arg, int line, const char *name),
		     void *arg);
char *ini_reader_gets(char *str, int num, void *stream);

#endif
