/*
 * NAME
 *	fsutil - small file-system helpers shared by the queue, the log and
 *	the suppression store
 * DESCRIPTION
 *	fs_mkdir_p() creates a directory and its missing parents (mkdir -p)
 *	with mode; it fails with -ENOTDIR when path exists and is not a
 *	directory. fs_mkdir_parent() does the same for the directory part of
 *	a file's path.
 *
 *	fs_writev_all() writes all of iov[0..iovcnt) to fd, at off (pwritev)
 *	or, with off < 0, at the file position (writev): a write may be short
 *	(ENOSPC part way, RLIMIT_FSIZE, a signal), and the next call then
 *	says why. The iov entries are advanced as it goes.
 *
 *	fs_sync_dir() fsyncs a directory: what makes a new, renamed or
 *	removed name in it durable.
 * DIAGNOSTICS
 *	0 or a negative errno.
 * TOUCHES
 *	The directories and files named.
 */
#ifndef HK_UTIL_FSUTIL_H
#define HK_UTIL_FSUTIL_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

int fs_mkdir_p(const char *path, mode_t mode);
int fs_mkdir_parent(const char *path, mode_t mode);
int fs_writev_all(int fd, struct iovec *iov, int iovcnt, int64_t off);
int fs_sync_dir(const char *path);

#endif
