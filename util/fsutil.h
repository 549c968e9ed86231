/*
 * NAME
 *	fsutil - small file-system helpers shared by the queue, the log and
 *	the suppression store
 * DESCRIPTION
 *	fs_mkdir_p() creates a directory and its missing parents (mkdir -p)
 *	with mode; it fails with -ENOTDIR when path exists and is not a
 *	directory. fs_mkdir_parent() does the same for the directory part of
 *	a file's path.
 * DIAGNOSTICS
 *	0 or a negative errno.
 * TOUCHES
 *	The directories named.
 */
#ifndef HK_UTIL_FSUTIL_H
#define HK_UTIL_FSUTIL_H

#include <sys/types.h>

int fs_mkdir_p(const char *path, mode_t mode);
int fs_mkdir_parent(const char *path, mode_t mode);

#endif
