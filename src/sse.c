#include "sse.h"

#include <stdio.h>
#include <string.h>

static void dispatch(nyx_sse *s, nyx_sse_cb cb, void *arg)
{
    if (s->has_data) {
        size_t len = s->data.len;
        if (len && s->data.data[len - 1] == '\n') /* the last data line's */
            s->data.data[--len] = '\0';
        cb(arg, s->event[0] ? s->event : "message", s->data.data, len);
    }
    s->data.len = 0;
    if (s->data.data)
        s->data.data[0] = '\0';
    s->event[0] = '\0';
    s->has_data = 0;
}

/* One line, without its end of line. */
static int line(nyx_sse *s, const char *l, size_t n, nyx_sse_cb cb, void *arg)
{
    if (n == 0) {
        dispatch(s, cb, arg);
        return 0;
    }
    if (l[0] == ':') /* a comment */
        return 0;
    const char *colon = memchr(l, ':', n);
    size_t fn = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vn = (size_t)(l + n - v);
    if (vn && *v == ' ')
        v++, vn--;
    if (fn == 5 && memcmp(l, "event", 5) == 0) {
        snprintf(s->event, sizeof s->event, "%.*s", (int)vn, v);
    } else if (fn == 4 && memcmp(l, "data", 4) == 0) {
        s->has_data = 1;
        if (nyx_buf_add(&s->data, v, vn) < 0 ||
            nyx_buf_add(&s->data, "\n", 1) < 0)
            return -1;
    } /* id, retry and unknown fields do not matter here */
    return 0;
}

int nyx_sse_feed(nyx_sse *s, const char *p, size_t n, nyx_sse_cb cb, void *arg)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (nyx_buf_add(&s->line, p, take) < 0)
            return -1;
        p += take;
        n -= take;
        if (!nl)
            break; /* the rest of the line comes later */
        p++, n--;
        size_t len = s->line.len;
        if (len && s->line.data[len - 1] == '\r')
            len--;
        int rc = line(s, s->line.data ? s->line.data : "", len, cb, arg);
        s->line.len = 0;
        if (rc < 0)
            return -1;
    }
    return 0;
}

void nyx_sse_free(nyx_sse *s)
{
    nyx_buf_free(&s->line);
    nyx_buf_free(&s->data);
}
