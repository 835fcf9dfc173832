/* A server-sent events parser (the text/event-stream format): fed bytes
 * as they arrive, it calls back once per complete event. */
#ifndef NYX_SSE_H
#define NYX_SSE_H

#include "util.h"

typedef void (*nyx_sse_cb)(void *arg, const char *event, const char *data,
                           size_t len);

typedef struct nyx_sse {
    nyx_buf line, data;
    char event[64];
    int has_data;
} nyx_sse;

/* Parses n bytes; calls cb for each event completed by them ("message" if
 * it named none). Returns -1 when out of memory. */
int nyx_sse_feed(nyx_sse *s, const char *p, size_t n, nyx_sse_cb cb, void *arg);
void nyx_sse_free(nyx_sse *s);

#endif
