/*
 * password_file - the secret of [service] password_file. See password_file.h.
 */
#include "relay/password_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- life cycle ------------------------------------------------------ */

char *password_file_read(const char *path)
{
	if (!path)
		return NULL;
	FILE *fp = fopen(path, "re");
	if (!fp) {
		fprintf(stderr, "hikyaku: cannot read %s: %s\n", path, strerror(errno));
		return NULL;
	}
	char line[1024];
	char *pw = NULL;
	if (fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\r\n")] = '\0';
		pw = strdup(line);
	}
	explicit_bzero(line, sizeof(line));
	fclose(fp);
	return pw;
}
