/*
 * NAME
 *	buf - growable byte buffer with a hard cap
 * SUMMARY
 *	The one buffer type of hikyaku. Lengths travel with the bytes; the
 *	buffer is NUL-terminated for convenience only, never for correctness.
 *	Every buffer has a maximum size: appending past it fails, so no input
 *	can make a buffer grow without bound.
 * DESCRIPTION
 *	buf_init() prepares an empty buffer that may hold at most max bytes.
 *	buf_append() / buf_appendf() add bytes; buf_consume() drops bytes
 *	from the front (for read buffers); buf_reset() empties, buf_free()
 *	releases the memory.
 * DIAGNOSTICS
 *	buf_append() and buf_appendf() return 0, or -ENOSPC when the cap
 *	would be exceeded (the buffer is then unchanged), or -ENOMEM.
 * TOUCHES
 *	Memory only.
 */
#ifndef HK_UTIL_BUF_H
#define HK_UTIL_BUF_H

#include <stddef.h>

typedef struct buf {
	char *data;   /* NULL until the first append; always NUL-terminated after */
	size_t len;   /* bytes in use */
	size_t cap;   /* bytes allocated (excluding the NUL) */
	size_t max;   /* hard cap on len */
} buf_t;

void buf_init(buf_t *b, size_t max);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_appends(buf_t *b, const char *s);
int buf_appendf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_consume(buf_t *b, size_t n);
/* Transfers ownership of the bytes to the caller; the buffer is left empty. */
char *buf_steal(buf_t *b, size_t *len);

#endif
