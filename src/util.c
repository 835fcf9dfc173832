#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void nyx_errf(nyx_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    nyx_one_line(err->msg, sizeof err->msg);
}

int nyx_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

char *nyx_read_file(const char *path, size_t *len, nyx_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        nyx_errf(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    nyx_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (nyx_buf_add(&b, chunk, n) < 0) {
            nyx_errf(err, "cannot read %s: out of memory", path);
            goto fail;
        }
    }
    if (ferror(f)) {
        nyx_errf(err, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    fclose(f);
    if (nyx_buf_add(&b, "", 1) < 0) { /* the NUL, not counted in len */
        nyx_errf(err, "cannot read %s: out of memory", path);
        nyx_buf_free(&b);
        return NULL;
    }
    if (len)
        *len = b.len - 1;
    return b.data;
fail:
    fclose(f);
    nyx_buf_free(&b);
    return NULL;
}

char *nyx_one_line(char *s, size_t cap)
{
    char out[2048];
    size_t o = 0;
    for (const char *p = s; *p && o + 3 < sizeof out; p++) {
        if (*p != '\n' && *p != '\r') {
            out[o++] = *p == '\t' ? ' ' : *p;
            continue;
        }
        while (p[1] == '\n' || p[1] == '\r' || p[1] == ' ' || p[1] == '\t')
            p++;
        if (p[1] != '\0') {
            out[o++] = ';';
            out[o++] = ' ';
        }
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    snprintf(s, cap, "%s", out);
    return s;
}

void nyx_fnv1a_hex(const char *data, size_t len, char out[17])
{
    unsigned long long h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)data[i];
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016llx", h);
}

int nyx_mkdirs(const char *path, unsigned mode, nyx_err *err)
{
    char tmp[4096];
    if (nyx_fmt(tmp, sizeof tmp, "%s", path) < 0) {
        nyx_errf(err, "path too long: %s", path);
        return -1;
    }
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST) {
            nyx_errf(err, "cannot create directory %s: %s", tmp,
                     strerror(errno));
            return -1;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    return 0;
}

int nyx_buf_grow(nyx_buf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int nyx_buf_addf(nyx_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof small)
        return nyx_buf_add(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = nyx_buf_add(b, big, (size_t)n);
    free(big);
    return rc;
}

void nyx_buf_free(nyx_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
