/*
 * NAME
 *	ctl_csv - CSV fields a spreadsheet will not run (SPEC §6.5)
 * SUMMARY
 *	The formula guard of "hikyakuctl suppression export" and "import":
 *	a recipient "=1+1@example.com" or a diagnostic "=HYPERLINK(...)" must
 *	reach a spreadsheet as text, not as a formula it evaluates.
 * DESCRIPTION
 *	ctl_csv_guarded() tells whether a field value gets the "'" prefix on
 *	export: it starts with '=', '+', '-', '@', TAB or CR (what
 *	spreadsheets read as the start of a formula), or with one or more
 *	"'" followed by one of those: the import removes one "'" from a
 *	field whose rest would be guarded, so every value comes back
 *	exactly ("'=x" is exported as "''=x" and imported as "'=x").
 *
 *	ctl_csv_rewrite() copies the CSV text of in (RFC 4180, as libcsv
 *	reads it: quoted fields, "" for a quote, a UTF-8 byte order mark
 *	dropped) to out record by record, every field passed through the
 *	mode:
 *	  CTL_CSV_GUARD    add "'" to the fields ctl_csv_guarded() names,
 *	                   and, with escape set, show control characters
 *	                   escaped (util/esc.h; for a terminal);
 *	  CTL_CSV_UNGUARD  remove one "'" from a field whose rest
 *	                   ctl_csv_guarded() names (a foreign file's "'=x"
 *	                   is read as "=x", as a spreadsheet shows it).
 *	A field is quoted when it has a comma, a quote, CR or LF, or a blank
 *	at an end (libcsv trims unquoted blanks), as relay/suppression.c
 *	writes them. Every record starts on the physical line it started on
 *	in the input (blank lines are kept as blank lines), so that line
 *	numbers in later errors still name the input's lines.
 * DIAGNOSTICS
 *	ctl_csv_rewrite() returns 0, -EINVAL when in is no well-formed CSV
 *	(nothing useful was written; read the input as it is instead),
 *	-ENOMEM, -EIO.
 * TOUCHES
 *	in and out only.
 */
#ifndef HK_CTL_CSV_H
#define HK_CTL_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum ctl_csv_mode { CTL_CSV_GUARD, CTL_CSV_UNGUARD };

bool ctl_csv_guarded(const char *v, size_t n);
int ctl_csv_rewrite(const char *in, size_t n, FILE *out, enum ctl_csv_mode mode, bool escape);

#endif
