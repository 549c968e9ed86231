/*
 * NAME
 *	password_file - the secret of [service] password_file
 * SUMMARY
 *	password_file_read() returns the file's first line without its line
 *	end (malloc'd), or NULL (and says why on standard error) when the
 *	path is NULL or the file cannot be read. The copy on the stack is
 *	wiped; the caller wipes and frees the result.
 * TOUCHES
 *	Reads the file (blocking: at start and on reload).
 */
#ifndef HK_RELAY_PASSWORD_FILE_H
#define HK_RELAY_PASSWORD_FILE_H

char *password_file_read(const char *path);

#endif
