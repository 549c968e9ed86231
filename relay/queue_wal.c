/*
 * queue_wal - the spool's append-only segment files. See queue_wal.h for
 * the format and the contract. One mutex guards the index and every
 * segment's end: a record is written whole, at the end, under it (page
 * cache writes, no disk wait), so a segment never has a gap; the syncs
 * run outside it, and one fdatasync covers every record written before
 * it, other threads' included.
 */
#include "relay/queue_wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <uv.h>
#include <zlib.h>

#include "relay/queue.h"
#include "util/fsutil.h"

#define WAL_SEQ_LEN 16
#define WAL_MAGIC "HKW1 "

struct wal_seg {
	uint64_t seq;
	int fd;
	uint64_t end;           /* where the next record goes */
	size_t live;            /* M records without their D record yet */
	unsigned refs;          /* the log's (while linked), readers', syncs' */
	bool current;           /* appends go here */
	bool broken;            /* a failed write could not be undone: no more */
	bool linked;            /* DIR/wal/SEQ still exists */
};

/* Where a live mail's payload is. The key of the index is id. */
struct wal_loc {
	char id[QUEUE_ID_LEN + 1];
	struct wal_seg *seg;
	uint64_t off;
	uint64_t len;
	bool state;             /* DIR/state/ID was written (wal_note_state) */
	bool file;              /* DIR/mail/ID was made (wal_evict), its D record
	                         * not yet durable */
};

struct wal {
	char mail_dir[PATH_MAX];
	char tmp_dir[PATH_MAX];
	int dfd;                /* DIR/wal */
	uv_mutex_t lock;
	struct wal_seg *cur;    /* NULL: the next append starts a segment */
	uint64_t next_seq;
	GHashTable *index;      /* id -> struct wal_loc (owned) */
};

/* ---- records */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly n upper-case hex digits. */
static bool parse_hex(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		int d = hexval(p[i]);
		if (d < 0)
			return false;
		v = (v << 4) | (uint64_t)d;
	}
	*out = v;
	return true;
}

static void format_hdr(char out[WAL_HDR_LEN + 1], char type, const char *id, uint64_t len,
                       uint32_t crc)
{
	snprintf(out, WAL_HDR_LEN + 1, WAL_MAGIC "%c %s %016" PRIX64 " %08" PRIX32 "\n", type, id,
	         len, crc);
}

/* A header: its type, id, payload length and CRC; false when malformed. */
static bool parse_hdr(const char *h, char *type, char id[QUEUE_ID_LEN + 1], uint64_t *len,
                      uint32_t *crc)
{
	uint64_t c;
	if (memcmp(h, WAL_MAGIC, 5) || (h[5] != 'M' && h[5] != 'D') || h[6] != ' ' ||
	    h[25] != ' ' || h[42] != ' ' || h[51] != '\n')
		return false;
	memcpy(id, h + 7, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	if (!queue_id_valid(id) || !parse_hex(h + 26, 16, len) || !parse_hex(h + 43, 8, &c))
		return false;
	*type = h[5];
	*crc = (uint32_t)c;
	return *type == 'M' || (*len == 0 && c == 0);
}

static int pread_all(int fd, char *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* ---- reading segments (wal_scan, wal_recover) */

struct scan_ent {
	char id[QUEUE_ID_LEN + 1];
	const char *payload;
	size_t len;
	bool dead;
};

static bool seq_name(const char *s, uint64_t *seq)
{
	return strlen(s) == WAL_SEQ_LEN && parse_hex(s, WAL_SEQ_LEN, seq);
}

static int seq_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The segments in DIR/wal, sorted (g_array of uint64_t); NULL if none. */
static int list_segments(int dfd, GArray **out)
{
	int fd = dup(dfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	GArray *a = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	struct dirent *de;
	while ((errno = 0, de = readdir(d)) != NULL) {
		uint64_t seq;
		if (seq_name(de->d_name, &seq))
			g_array_append_val(a, seq);
	}
	int rc = errno ? -errno : 0;
	closedir(d);
	if (rc) {
		g_array_free(a, TRUE);
		return rc;
	}
	g_array_sort(a, seq_cmp);
	*out = a;
	return 0;
}

/* One segment: fn for each live record (see queue_wal.h). */
static int scan_segment(int dfd, int mail_dfd, uint64_t seq, wal_scan_fn fn, void *arg)
{
	char name[WAL_SEQ_LEN + 1];
	snprintf(name, sizeof(name), "%016" PRIX64, seq);
	/* Only a regular file is a segment: no FIFO to hang on, no link. */
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? 0 : -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return 0;
	}
	size_t size = (size_t)st.st_size;
	const char *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return -errno;

	GArray *ents = g_array_new(FALSE, FALSE, sizeof(struct scan_ent));
	/* id -> 1 + its index in ents (the array moves as it grows). */
	GHashTable *pos = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	size_t at = 0;
	while (size - at >= WAL_HDR_LEN) {
		struct scan_ent e = { 0 };
		char type;
		uint64_t len;
		uint32_t crc;
		if (!parse_hdr(map + at, &type, e.id, &len, &crc) || len > size - at - WAL_HDR_LEN)
			break;
		e.payload = map + at + WAL_HDR_LEN;
		e.len = (size_t)len;
		if (crc32_z(0, (const Bytef *)e.payload, e.len) != crc)
			break;
		at += WAL_HDR_LEN + e.len;
		gpointer k, v;
		if (type == 'M') {
			g_array_append_val(ents, e);
			g_hash_table_replace(pos, g_strdup(e.id), GUINT_TO_POINTER(ents->len));
		} else if (g_hash_table_lookup_extended(pos, e.id, &k, &v)) {
			g_array_index(ents, struct scan_ent, GPOINTER_TO_UINT(v) - 1).dead = true;
		}
	}
	g_hash_table_destroy(pos);
	int rc = 0;
	for (guint i = 0; i < ents->len && !rc; i++) {
		struct scan_ent *e = &g_array_index(ents, struct scan_ent, i);
		if (e->dead || faccessat(mail_dfd, e->id, F_OK, 0) == 0)
			continue;
		rc = fn(arg, e->id, e->payload, e->len);
	}
	g_array_free(ents, TRUE);
	munmap((void *)map, size);
	return rc;
}


static int open_dirs(const char *dir, int *dfd, int *mail_dfd)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/wal", dir);
	*dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*dfd < 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/mail", dir);
	*mail_dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*mail_dfd < 0) {
		int e = -errno;
		close(*dfd);
		return e;
	}
	return 0;
}

int wal_scan(const char *dir, wal_scan_fn fn, void *arg)
{
	int dfd, mail_dfd, rc;
	if ((rc = open_dirs(dir, &dfd, &mail_dfd)))
		return rc == -ENOENT ? 0 : rc; /* a spool of an older release */
	GArray *segs;
	if (!(rc = list_segments(dfd, &segs))) {
		for (guint i = 0; i < segs->len && !rc; i++)
			rc = scan_segment(dfd, mail_dfd, g_array_index(segs, uint64_t, i), fn, arg);
		g_array_free(segs, TRUE);
	}
	close(mail_dfd);
	close(dfd);
	return rc;
}

/* ---- moving a mail out to DIR/mail/ID */

/* DIR/mail/ID from its bytes, durably but for the directory sync. */
static int write_mail_file(const char *tmp_dir, const char *mail_dir, const char *id,
                           const char *p, size_t len)
{
	char tmp[PATH_MAX + QUEUE_ID_LEN + 2], dst[PATH_MAX + QUEUE_ID_LEN + 2];
	snprintf(tmp, sizeof(tmp), "%s/%s", tmp_dir, id);
	snprintf(dst, sizeof(dst), "%s/%s", mail_dir, id);
	int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct iovec v = { (void *)p, len };
	int rc = fs_writev_all(fd, &v, 1, 0);
	if (!rc && fdatasync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	/* NOREPLACE: a file already there is the mail's, moved out before. */
	if (!rc && renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
		return 0;
	if (!rc && errno != EEXIST)
		rc = -errno;
	unlink(tmp);
	return rc;
}

struct recover_ctx {
	const char *tmp_dir;
	const char *mail_dir;
	size_t moved;
	size_t stuck;           /* no room for their files: the segment stays */
	GPtrArray *made;        /* ids whose files this segment's pass made */
};

static int recover_one(void *arg, const char *id, const char *payload, size_t len)
{
	struct recover_ctx *c = arg;
	int rc = write_mail_file(c->tmp_dir, c->mail_dir, id, payload, len);
	if (rc == -ENOSPC || rc == -EDQUOT) {
		c->stuck++;
		return 0;
	}
	if (rc == 0) {
		c->moved++;
		g_ptr_array_add(c->made, g_strdup(id));
	}
	return rc;
}

int wal_recover(const char *dir)
{
	char path[PATH_MAX], mail[PATH_MAX], tmp[PATH_MAX];
	snprintf(path, sizeof(path), "%s/wal", dir);
	snprintf(mail, sizeof(mail), "%s/mail", dir);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	int rc = fs_mkdir_p(path, 0700);
	if (rc)
		return rc;
	int dfd, mail_dfd;
	if ((rc = open_dirs(dir, &dfd, &mail_dfd)))
		return rc;
	GArray *segs = NULL;
	struct recover_ctx c = { tmp, mail, 0, 0, g_ptr_array_new_with_free_func(g_free) };
	if ((rc = list_segments(dfd, &segs)))
		goto out;
	bool removed = false;
	for (guint i = 0; i < segs->len; i++) {
		uint64_t seq = g_array_index(segs, uint64_t, i);
		size_t stuck = c.stuck;
		g_ptr_array_set_size(c.made, 0);
		if ((rc = scan_segment(dfd, mail_dfd, seq, recover_one, &c)))
			goto out;
		/* A full disk: the segment keeps all its mails for the next start,
		 * those moved out in this pass too (their files go again): a mail
		 * in both, delivered from its file, would come back from the
		 * segment, which the running log never writes to. */
		if (c.stuck > stuck) {
			for (guint k = 0; k < c.made->len; k++)
				unlinkat(mail_dfd, g_ptr_array_index(c.made, k), 0);
			if (c.made->len)
				(void)fsync(mail_dfd);
			c.moved = 0;
			continue;
		}
		/* The files are named for good before the segment goes. */
		if (c.moved && (rc = fs_sync_dir(mail)))
			goto out;
		c.moved = 0;
		char name[WAL_SEQ_LEN + 1];
		snprintf(name, sizeof(name), "%016" PRIX64, seq);
		if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT) {
			rc = -errno;
			goto out;
		}
		removed = true;
	}
	if (c.stuck)
		fprintf(stderr,
		        "hikyaku: %s/wal: %zu mails stay in the segment log for want of room to move "
		        "them out (No space left on device); they are moved out and delivered after a "
		        "start with room\n",
		        dir, c.stuck);
	if (removed && fsync(dfd) < 0)
		rc = -errno;
out:
	if (segs)
		g_array_free(segs, TRUE);
	g_ptr_array_free(c.made, TRUE);
	close(mail_dfd);
	close(dfd);
	return rc;
}

/* ---- the log of a running queue */

int wal_open(const char *dir, struct wal **out)
{
	struct wal *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	int mail_dfd, rc;
	if ((rc = open_dirs(dir, &w->dfd, &mail_dfd))) {
		free(w);
		return rc;
	}
	close(mail_dfd);
	GArray *segs;
	if ((rc = list_segments(w->dfd, &segs))) {
		close(w->dfd);
		free(w);
		return rc;
	}
	/* wal_recover() removed them (but those it had no room to empty, which
	 * the next start tries again); a name is never used twice. */
	w->next_seq = segs->len ? g_array_index(segs, uint64_t, segs->len - 1) + 1 : 1;
	g_array_free(segs, TRUE);
	snprintf(w->mail_dir, sizeof(w->mail_dir), "%s/mail", dir);
	snprintf(w->tmp_dir, sizeof(w->tmp_dir), "%s/tmp", dir);
	w->index = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, free);
	uv_mutex_init(&w->lock);
	*out = w;
	return 0;
}

/* Under the lock. */
static void seg_unref(struct wal_seg *s)
{
	if (--s->refs)
		return;
	close(s->fd);
	free(s);
}

/* Under the lock: a segment no one appends to and with nothing live goes.
 * Its D records were synced before, so a power loss that undoes the
 * unlink brings back nothing live. */
static void seg_maybe_drop(struct wal *w, struct wal_seg *s)
{
	if (s->current || s->live || !s->linked)
		return;
	char name[WAL_SEQ_LEN + 1];
	snprintf(name, sizeof(name), "%016" PRIX64, s->seq);
	s->linked = false;
	unlinkat(w->dfd, name, 0);
	seg_unref(s);
}

/* Under the lock: retire the current segment (full, or suspect after an
 * error); the next append starts one. */
static void seg_retire(struct wal *w)
{
	struct wal_seg *s = w->cur;
	if (!s)
		return;
	w->cur = NULL;
	s->current = false;
	seg_maybe_drop(w, s);
}

/* Under the lock: a new current segment, its name durable. */
static int seg_start(struct wal *w)
{
	struct wal_seg *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	char name[WAL_SEQ_LEN + 1];
	s->seq = w->next_seq++;
	snprintf(name, sizeof(name), "%016" PRIX64, s->seq);
	s->fd = openat(w->dfd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (s->fd < 0) {
		int e = -errno;
		free(s);
		return e;
	}
	if (fsync(w->dfd) < 0) {
		int e = -errno;
		unlinkat(w->dfd, name, 0);
		close(s->fd);
		free(s);
		return e;
	}
	s->refs = 1;
	s->current = s->linked = true;
	w->cur = s;
	return 0;
}

/* Under the lock: D records for ids[0..n) at the end of s, one write. */
static int seg_put_removals(struct wal_seg *s, const char *const *ids, size_t n)
{
	if (s->broken)
		return -EIO; /* past a torn tail it could not be read */
	char (*hdr)[WAL_HDR_LEN + 1] = calloc(n ? n : 1, sizeof(*hdr));
	struct iovec *iov = calloc(n ? n : 1, sizeof(*iov));
	int rc = hdr && iov ? 0 : -ENOMEM;
	for (size_t i = 0; !rc && i < n; i++) {
		format_hdr(hdr[i], 'D', ids[i], 0, 0);
		iov[i] = (struct iovec){ hdr[i], WAL_HDR_LEN };
	}
	if (!rc && (rc = fs_writev_all(s->fd, iov, (int)n, (int64_t)s->end))) {
		/* Never leave a torn record: it would hide every later one. */
		if (ftruncate(s->fd, (off_t)s->end) < 0)
			s->broken = true; /* nothing more goes here */
	} else if (!rc) {
		s->end += (uint64_t)n * WAL_HDR_LEN;
	}
	free(hdr);
	free(iov);
	return rc;
}

static int seg_put_removal(struct wal_seg *s, const char *id)
{
	return seg_put_removals(s, &id, 1);
}

int wal_append(struct wal *w, struct wal_rec *recs, size_t n)
{
	size_t niov = 0, m = 0;
	/* An id already in the log is refused, never replaced: that mail
	 * was answered 250. */
	uv_mutex_lock(&w->lock);
	for (size_t i = 0; i < n; i++) {
		recs[i].status = g_hash_table_contains(w->index, recs[i].id) ? -EEXIST : 0;
		if (!recs[i].status) {
			niov += 1 + (size_t)recs[i].iovcnt;
			m++;
		}
	}
	uv_mutex_unlock(&w->lock);
	if (!m)
		return 0;
	struct iovec *iov = calloc(niov, sizeof(*iov));
	char (*hdr)[WAL_HDR_LEN + 1] = calloc(n, sizeof(*hdr));
	uint64_t *len = calloc(n, sizeof(*len));
	struct wal_loc **loc = calloc(n, sizeof(*loc));
	int rc = 0;
	if (!iov || !hdr || !len || !loc) {
		rc = -ENOMEM;
		goto out;
	}
	/* Headers and CRCs outside the lock: only the write is inside. */
	size_t k = 0;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t crc = 0;
		if (recs[i].status)
			continue;
		for (int j = 0; j < recs[i].iovcnt; j++) {
			crc = (uint32_t)crc32_z(crc, recs[i].iov[j].iov_base, recs[i].iov[j].iov_len);
			len[i] += recs[i].iov[j].iov_len;
		}
		format_hdr(hdr[i], 'M', recs[i].id, len[i], crc);
		iov[k++] = (struct iovec){ hdr[i], WAL_HDR_LEN };
		for (int j = 0; j < recs[i].iovcnt; j++)
			iov[k++] = recs[i].iov[j];
		total += WAL_HDR_LEN + len[i];
		if (!(loc[i] = calloc(1, sizeof(**loc)))) {
			rc = -ENOMEM;
			goto out;
		}
	}

	uv_mutex_lock(&w->lock);
	if (w->cur && (w->cur->end >= WAL_SEGMENT_MAX || w->cur->broken))
		seg_retire(w);
	if (!w->cur && (rc = seg_start(w))) {
		uv_mutex_unlock(&w->lock);
		goto out;
	}
	struct wal_seg *s = w->cur;
	uint64_t off = s->end;
	if ((rc = fs_writev_all(s->fd, iov, (int)niov, (int64_t)off))) {
		/* Never leave a torn record: it would hide every later one. */
		if (ftruncate(s->fd, (off_t)off) < 0)
			s->broken = true;
		uv_mutex_unlock(&w->lock);
		goto out;
	}
	s->end = off + total;
	s->refs++;     /* for the sync below */
	s->live += m;  /* so that no one drops the segment meanwhile */
	uv_mutex_unlock(&w->lock);

	rc = fdatasync(s->fd) < 0 ? -errno : 0;

	uv_mutex_lock(&w->lock);
	if (rc) {
		/* Not durable, so not queued: nothing of it may be delivered
		 * after a restart either. Removal records, as far as they go. */
		for (size_t i = 0; i < n; i++)
			if (!recs[i].status)
				(void)seg_put_removal(s, recs[i].id);
		(void)fdatasync(s->fd);
		s->live -= m;
		/* Retired, not broken: the file has no torn tail, and the
		 * removals of its older mails still go there. */
		if (w->cur == s)
			seg_retire(w);
		else
			seg_maybe_drop(w, s);
	} else {
		uint64_t at = off;
		for (size_t i = 0; i < n; i++) {
			if (recs[i].status)
				continue;
			memcpy(loc[i]->id, recs[i].id, sizeof(loc[i]->id));
			loc[i]->seg = s;
			loc[i]->off = at + WAL_HDR_LEN;
			loc[i]->len = len[i];
			at += WAL_HDR_LEN + len[i];
			g_hash_table_replace(w->index, loc[i]->id, loc[i]);
			loc[i] = NULL;
		}
	}
	seg_unref(s);
	uv_mutex_unlock(&w->lock);
out:
	for (size_t i = 0; i < n; i++) {
		if (!recs[i].status)
			recs[i].status = rc;
		if (loc)
			free(loc[i]);
	}
	free(loc);
	free(len);
	free(hdr);
	free(iov);
	return rc;
}

/* A live record's place, its segment held; false when not in the log. */
static bool loc_get(struct wal *w, const char *id, struct wal_loc *out)
{
	uv_mutex_lock(&w->lock);
	struct wal_loc *l = g_hash_table_lookup(w->index, id);
	if (l) {
		*out = *l;
		l->seg->refs++;
	}
	uv_mutex_unlock(&w->lock);
	return l != NULL;
}

static void loc_put(struct wal *w, struct wal_loc *l)
{
	uv_mutex_lock(&w->lock);
	seg_unref(l->seg);
	uv_mutex_unlock(&w->lock);
}

int wal_read(struct wal *w, const char *id, char **data, size_t *len)
{
	struct wal_loc l;
	if (!loc_get(w, id, &l))
		return 1;
	int rc = 0;
	char *p = l.len < SIZE_MAX ? malloc((size_t)l.len + 1) : NULL;
	if (!p)
		rc = -ENOMEM;
	else if ((rc = pread_all(l.seg->fd, p, (size_t)l.len, l.off)))
		free(p);
	loc_put(w, &l);
	if (rc)
		return rc;
	p[l.len] = '\0';
	*data = p;
	*len = (size_t)l.len;
	return 0;
}

/* Under the lock: the mail is gone from the log. */
static void loc_forget(struct wal *w, const char *id)
{
	struct wal_loc *l = g_hash_table_lookup(w->index, id);
	if (!l)
		return;
	struct wal_seg *s = l->seg;
	g_hash_table_remove(w->index, id);
	s->live--;
	seg_maybe_drop(w, s);
}

void wal_remove(struct wal *w, const char *const *ids, size_t n, unsigned char *in_wal,
                int *status)
{
	GPtrArray *segs = g_ptr_array_new();
	uv_mutex_lock(&w->lock);
	/* The D records of a run of ids in one segment in one write: the ids
	 * of a batch are mostly of the current segment. */
	for (size_t i = 0; i < n;) {
		struct wal_loc *o = g_hash_table_lookup(w->index, ids[i]);
		status[i] = 0;
		in_wal[i] = 0;
		if (!o) {
			i++;
			continue;
		}
		struct wal_seg *s = o->seg;
		size_t k = i;
		while (o && o->seg == s) {
			in_wal[k] = WAL_IN | (o->state ? WAL_STATE : 0) | (o->file ? WAL_FILE : 0);
			o = ++k < n ? g_hash_table_lookup(w->index, ids[k]) : NULL;
		}
		int rc = seg_put_removals(s, ids + i, k - i);
		for (size_t j = i; j < k; j++)
			status[j] = rc;
		if (!rc && !g_ptr_array_find(segs, s, NULL)) {
			s->refs++;
			g_ptr_array_add(segs, s);
		}
		i = k;
	}
	uv_mutex_unlock(&w->lock);

	/* One sync per segment touched, outside the lock. */
	int *srv = calloc(segs->len ? segs->len : 1, sizeof(*srv));
	for (guint k = 0; k < segs->len; k++) {
		struct wal_seg *s = g_ptr_array_index(segs, k);
		int rc = fdatasync(s->fd) < 0 ? -errno : 0;
		if (srv)
			srv[k] = rc;
	}

	uv_mutex_lock(&w->lock);
	for (size_t i = 0; i < n; i++) {
		struct wal_loc *l = in_wal[i] && !status[i] ? g_hash_table_lookup(w->index, ids[i]) : NULL;
		if (!l)
			continue;
		guint k;
		g_ptr_array_find(segs, l->seg, &k);
		status[i] = srv ? srv[k] : -ENOMEM;
		/* Not surely gone: it stays live, so the caller's fallback (a
		 * state file, which moves it out) records the outcome. */
		if (!status[i])
			loc_forget(w, ids[i]);
	}
	for (guint k = 0; k < segs->len; k++)
		seg_unref(g_ptr_array_index(segs, k));
	uv_mutex_unlock(&w->lock);
	free(srv);
	g_ptr_array_free(segs, TRUE);
}

int wal_evict(struct wal *w, const char *id)
{
	struct wal_loc l;
	if (!loc_get(w, id, &l))
		return 1;
	int rc = 0;
	char *p = l.len < SIZE_MAX ? malloc((size_t)l.len ? (size_t)l.len : 1) : NULL;
	if (!p)
		rc = -ENOMEM;
	else if (!(rc = pread_all(l.seg->fd, p, (size_t)l.len, l.off)) &&
	         !(rc = write_mail_file(w->tmp_dir, w->mail_dir, id, p, (size_t)l.len)))
		rc = fs_sync_dir(w->mail_dir);
	free(p);
	bool gone = false;
	if (!rc) {
		uv_mutex_lock(&w->lock);
		struct wal_loc *e = g_hash_table_lookup(w->index, id);
		if (!e) {
			gone = true; /* removed meanwhile (an administrator's delete) */
		} else {
			/* From here the file is the mail's too: a removal takes it
			 * with it until the D record below is durable. */
			e->file = true;
			rc = seg_put_removal(l.seg, id);
		}
		uv_mutex_unlock(&w->lock);
	}
	if (gone) {
		/* Not to come back from the dead at the next start. */
		char path[PATH_MAX + QUEUE_ID_LEN + 2];
		snprintf(path, sizeof(path), "%s/%s", w->mail_dir, id);
		unlink(path);
		(void)fs_sync_dir(w->mail_dir);
		rc = 1;
	}
	/* The file is the mail's from now on; its D record must be durable
	 * before the file may be removed, or a restart would bring it back. */
	if (!rc && fdatasync(l.seg->fd) < 0)
		rc = -errno;
	uv_mutex_lock(&w->lock);
	if (!rc)
		loc_forget(w, id);
	seg_unref(l.seg);
	uv_mutex_unlock(&w->lock);
	return rc;
}

void wal_note_state(struct wal *w, const char *id)
{
	uv_mutex_lock(&w->lock);
	struct wal_loc *l = g_hash_table_lookup(w->index, id);
	if (l)
		l->state = true;
	uv_mutex_unlock(&w->lock);
}

size_t wal_live(struct wal *w)
{
	uv_mutex_lock(&w->lock);
	size_t n = g_hash_table_size(w->index);
	uv_mutex_unlock(&w->lock);
	return n;
}

void wal_close(struct wal *w)
{
	if (!w)
		return;
	/* Live records stay: the next start moves them to DIR/mail. */
	GPtrArray *segs = g_ptr_array_new();
	GHashTableIter it;
	gpointer v;
	g_hash_table_iter_init(&it, w->index);
	while (g_hash_table_iter_next(&it, NULL, &v)) {
		struct wal_loc *l = v;
		if (!g_ptr_array_find(segs, l->seg, NULL))
			g_ptr_array_add(segs, l->seg);
	}
	if (w->cur && !g_ptr_array_find(segs, w->cur, NULL))
		g_ptr_array_add(segs, w->cur);
	g_hash_table_destroy(w->index);
	for (guint k = 0; k < segs->len; k++) {
		struct wal_seg *s = g_ptr_array_index(segs, k);
		close(s->fd);
		free(s);
	}
	g_ptr_array_free(segs, TRUE);
	uv_mutex_destroy(&w->lock);
	close(w->dfd);
	free(w);
}
