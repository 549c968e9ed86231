/*
 * queue_fs - the runner's reads, writes and removals of spool files.
 * See queue_fs.h.
 */
#include "relay/queue_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "relay/queue.h"
#include "relay/queue_wal.h"
#include "util/fsutil.h"

#define REPORTED_MAX ((size_t)64 << 10)

static int read_all(const char *path, size_t max, char **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	size_t len = (size_t)st.st_size, off = 0;
	char *d = malloc(len + 1);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	while (off < len) {
		ssize_t n = pread(fd, d + off, len - off, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? -errno : -EIO;
			free(d);
			close(fd);
			return e;
		}
		off += (size_t)n;
	}
	close(fd);
	d[off] = '\0';
	*out = d;
	*outlen = off;
	return 0;
}

int queue_fs_read_message(struct wal *w, const char *dir, const char *id, char **data,
                          size_t *len)
{
	char path[PATH_MAX];
	if (!queue_id_valid(id))
		return -EINVAL;
	char *d;
	size_t n;
	int rc = w ? wal_read(w, id, &d, &n) : 1;
	if (rc == 1) {
		snprintf(path, sizeof(path), "%s/mail/%s", dir, id);
		rc = read_all(path, SIZE_MAX - 1, &d, &n);
	}
	if (rc < 0)
		return rc;
	/* The message starts after the magic line and the envelope line. */
	char *nl = memchr(d, '\n', n);
	nl = nl ? memchr(nl + 1, '\n', n - (size_t)(nl + 1 - d)) : NULL;
	if (!nl || strncmp(d, QUEUE_MAGIC "\n", sizeof(QUEUE_MAGIC)) != 0) {
		free(d);
		return -EINVAL;
	}
	size_t off = (size_t)(nl + 1 - d);
	memmove(d, d + off, n - off);
	d[n - off] = '\0';
	*data = d;
	*len = n - off;
	return 0;
}

static int write_durably(const char *dirpath, const char *path, const char *text, size_t len)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t off = 0;
	int rc = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	/* The rename is durable only once the directory is: a failed sync
	 * fails the write (the caller tries again). */
	return fs_sync_dir(dirpath);
}

int queue_fs_write_state(struct wal *w, const char *dir, const char *id, const char *text)
{
	char sdir[PATH_MAX], path[PATH_MAX + QUEUE_ID_LEN + 2];
	if (!queue_id_valid(id))
		return -EINVAL;
	/* A mail with a state is one that waits: it leaves the log first.
	 * With no room for its copy it stays there (its state file is small,
	 * the copy is the whole mail), and its removal takes the state too. */
	int rc = w ? wal_evict(w, id) : 1;
	if (rc == -ENOSPC || rc == -EDQUOT)
		wal_note_state(w, id);
	else if (rc < 0)
		return rc;
	snprintf(sdir, sizeof(sdir), "%s/state", dir);
	snprintf(path, sizeof(path), "%s/%s", sdir, id);
	return write_durably(sdir, path, text, strlen(text));
}

void queue_fs_remove(struct wal *w, const char *dir, const char *const *ids, size_t n,
                     int *status)
{
	char mdir[PATH_MAX], sdir[PATH_MAX], p[PATH_MAX + QUEUE_ID_LEN + 2];
	snprintf(mdir, sizeof(mdir), "%s/mail", dir);
	snprintf(sdir, sizeof(sdir), "%s/state", dir);
	unsigned char *in_wal = calloc(n ? n : 1, sizeof(*in_wal));
	if (!in_wal) {
		for (size_t i = 0; i < n; i++)
			status[i] = -ENOMEM;
		return;
	}
	/* Mails still in the log have no file, and seldom a state file (a
	 * state write moves a mail out first): a removal record each, and
	 * after it the state file if there is one. */
	if (w)
		wal_remove(w, ids, n, in_wal, status);
	size_t files = 0;
	for (size_t i = 0; i < n; i++) {
		if ((in_wal[i] & WAL_FILE) && status[i] == 0) {
			/* Its removal record is durable: the file may go. */
			snprintf(p, sizeof(p), "%s/%s", mdir, ids[i]);
			unlink(p);
			files++;
		}
		if ((in_wal[i] & WAL_STATE) && status[i] == 0) {
			snprintf(p, sizeof(p), "%s/%s", sdir, ids[i]);
			unlink(p);
		}
		if (in_wal[i])
			continue;
		files++;
		status[i] = 0;
		if (!queue_id_valid(ids[i])) {
			status[i] = -EINVAL;
			continue;
		}
		snprintf(p, sizeof(p), "%s/%s", mdir, ids[i]);
		if (unlink(p) < 0 && errno != ENOENT)
			status[i] = -errno;
		/* The state file may stay behind if this fails: without its
		 * mail it is an orphan, removed at the next start. */
		snprintf(p, sizeof(p), "%s/%s", sdir, ids[i]);
		unlink(p);
	}
	/*
	 * Only the mails' names need to be gone for good: a state file that a
	 * power loss brings back has no mail and is removed at the next start
	 * (queue_fs_list()), so state/ is not synced here. Its sync cost a
	 * disk write and a cache flush per batch for nothing.
	 */
	int rc = files ? fs_sync_dir(mdir) : 0;
	for (size_t i = 0; rc < 0 && i < n; i++)
		if ((!in_wal[i] || (in_wal[i] & WAL_FILE)) && status[i] == 0)
			status[i] = rc;
	free(in_wal);
}

int queue_fs_list(const char *dir, GPtrArray **ids)
{
	char mdir[PATH_MAX], sdir[PATH_MAX];
	snprintf(mdir, sizeof(mdir), "%s/mail", dir);
	snprintf(sdir, sizeof(sdir), "%s/state", dir);
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
	DIR *d = opendir(mdir);
	if (!d) {
		int e = -errno;
		g_ptr_array_free(a, TRUE);
		return e;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (queue_id_valid(de->d_name))
			g_ptr_array_add(a, g_strdup(de->d_name));
	closedir(d);
	/* State files whose mail is gone were being deleted: finish that. */
	d = opendir(sdir);
	if (d) {
		char mp[PATH_MAX * 2], sp[PATH_MAX * 2];
		bool removed = false;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(mp, sizeof(mp), "%s/%.64s", mdir, de->d_name);
			snprintf(sp, sizeof(sp), "%s/%.64s", sdir, de->d_name);
			if (!queue_id_valid(de->d_name) || access(mp, F_OK) < 0) {
				unlink(sp);
				removed = true;
			}
		}
		closedir(d);
		if (removed)
			fs_sync_dir(sdir);
	}
	*ids = a;
	return 0;
}

static int reported_path(const char *dir, const char *id, char *rdir, size_t rcap, char *path,
                         size_t pcap)
{
	if (!queue_id_valid(id))
		return -EINVAL;
	snprintf(rdir, rcap, "%s/reported", dir);
	snprintf(path, pcap, "%s/%s", rdir, id);
	return 0;
}

/* Whether the record text holds the line rcpt (compared case-insensitively). */
static bool lines_have(const char *text, const char *rcpt)
{
	size_t n = strlen(rcpt);
	for (const char *p = text; *p;) {
		const char *e = strchr(p, '\n');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == n && g_ascii_strncasecmp(p, rcpt, n) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

int queue_fs_reported_has(const char *dir, const char *id, const char *rcpt)
{
	char rdir[PATH_MAX], path[PATH_MAX + QUEUE_ID_LEN + 2];
	int rc = reported_path(dir, id, rdir, sizeof(rdir), path, sizeof(path));
	if (rc < 0)
		return rc;
	char *text;
	size_t len;
	rc = read_all(path, REPORTED_MAX, &text, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	rc = lines_have(text, rcpt) ? 1 : 0;
	free(text);
	return rc;
}

/* The reported files are read, extended and written back: the notices of
 * one report run on several pool threads at once and would lose each
 * other's lines (and share the temporary file) without this lock. */
static GMutex reported_lock;

static int reported_add_locked(const char *dir, const char *id, const char *rcpt);

int queue_fs_reported_add(const char *dir, const char *id, const char *rcpt)
{
	g_mutex_lock(&reported_lock);
	int rc = reported_add_locked(dir, id, rcpt);
	g_mutex_unlock(&reported_lock);
	return rc;
}

static int reported_add_locked(const char *dir, const char *id, const char *rcpt)
{
	char rdir[PATH_MAX], path[PATH_MAX + QUEUE_ID_LEN + 2];
	int rc = reported_path(dir, id, rdir, sizeof(rdir), path, sizeof(path));
	if (rc < 0)
		return rc;
	if (strchr(rcpt, '\n'))
		return -EINVAL;
	if (mkdir(rdir, 0700) < 0 && errno != EEXIST)
		return -errno;
	char *text = NULL;
	size_t len = 0;
	rc = read_all(path, REPORTED_MAX, &text, &len);
	if (rc == -ENOENT) {
		text = strdup("");
		len = 0;
	} else if (rc < 0) {
		return rc;
	}
	if (!text)
		return -ENOMEM;
	if (lines_have(text, rcpt)) {
		free(text);
		return 0;
	}
	char *low = g_ascii_strdown(rcpt, -1);
	char *next = g_strdup_printf("%s%s\n", text, low);
	g_free(low);
	free(text);
	rc = write_durably(rdir, path, next, strlen(next));
	g_free(next);
	return rc;
}

void queue_fs_reported_prune(const char *dir, uint64_t before_ms)
{
	char rdir[PATH_MAX], p[PATH_MAX * 2];
	snprintf(rdir, sizeof(rdir), "%s/reported", dir);
	DIR *d = opendir(rdir);
	if (!d)
		return;
	struct dirent *de;
	struct stat st;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%.64s", rdir, de->d_name);
		if (stat(p, &st) == 0 && (uint64_t)st.st_mtime * 1000 < before_ms)
			unlink(p);
	}
	closedir(d);
}
