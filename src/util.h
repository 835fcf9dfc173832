/* Small helpers shared by the C services: one-line errors, bounded
 * formatting, whole-file reads, a growable byte buffer. */
#ifndef NYX_UTIL_H
#define NYX_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

/* A service reports failure by filling one of these with a single line
 * that says what went wrong and, where it can, what to do. */
typedef struct nyx_err {
    char msg[1024];
} nyx_err;

void nyx_errf(nyx_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* snprintf that reports truncation: 0 on success, -1 if it did not fit. */
int nyx_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reads a whole file into a NUL-terminated malloc'd buffer. */
char *nyx_read_file(const char *path, size_t *len, nyx_err *err);

/* Replaces line breaks with "; " and trims trailing blanks, in place, so a
 * multi-line library message (libpq's) prints as one line. cap is the
 * size of the buffer s points into. */
char *nyx_one_line(char *s, size_t cap);

/* 64-bit FNV-1a, as 16 lowercase hex digits plus NUL. */
void nyx_fnv1a_hex(const char *data, size_t len, char out[17]);

/* mkdir -p with the given mode for each directory it creates. */
int nyx_mkdirs(const char *path, unsigned mode, nyx_err *err);

typedef struct nyx_buf {
    char *data;
    size_t len, cap;
} nyx_buf;

/* nyx_buf_reserve's slow path: the buffer grows. */
int nyx_buf_grow(nyx_buf *b, size_t extra);

/* Makes room for extra more bytes (and a terminating NUL); -1: no memory.
 * Inline, as nyx_buf_add: the JSON writers call them a hundred times per
 * logged LLM call, nearly always with room to spare. */
static inline int nyx_buf_reserve(nyx_buf *b, size_t extra)
{
    return b->len + extra + 1 <= b->cap ? 0 : nyx_buf_grow(b, extra);
}

static inline int nyx_buf_add(nyx_buf *b, const char *data, size_t len)
{
    if (nyx_buf_reserve(b, len) < 0)
        return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int nyx_buf_addf(nyx_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void nyx_buf_free(nyx_buf *b);

#endif
