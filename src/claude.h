/* The Claude client: POST {base}/v1/messages over one libcurl multi handle
 * driven by nyx's event loop, many calls at once on kept-alive connections,
 * each retried as the official SDKs do (x-should-retry; 408, 409, 429, 5xx
 * and connection errors; retry-after-ms, retry-after, else backoff 0.5 s
 * doubling to 8 s with jitter). Knows nothing of Lua. The API key is held
 * here and only ever written into the request header. */
#ifndef NYX_CLAUDE_H
#define NYX_CLAUDE_H

#include "loop.h"
#include "sse.h"
#include "util.h"

typedef struct nyx_claude nyx_claude;
typedef struct nyx_claude_call nyx_claude_call;

#define NYX_CLAUDE_MAX_ATTEMPTS 16

typedef struct nyx_claude_attempt {
    long status;     /* HTTP status, 0 when no response came */
    int curl_code;   /* CURLcode, 0 for a response */
    double ms;       /* how long the attempt took */
    double delay_ms; /* the wait before the next attempt, if any */
    char request_id[64];
} nyx_claude_attempt;

struct nyx_claude_call {
    /* set by the caller; body stays valid until on_done */
    const char *body;
    size_t body_len;
    int stream;
    int max_retries;   /* retries after the first attempt */
    double timeout_ms; /* per attempt */
    const char *beta;  /* anthropic-beta, or NULL */
    /* a streamed 200's events, as they arrive */
    void (*on_event)(nyx_claude_call *call, const char *event, const char *data,
                     size_t len);
    void (*on_done)(nyx_claude_call *call);
    void *arg;

    /* the outcome, valid in on_done (the last attempt's) */
    long status;
    nyx_buf response; /* the body, unless it was a streamed 200 */
    char request_id[64];
    nyx_buf headers; /* JSON object: rate-limit and retry headers */
    char error[256]; /* a transport failure: "" for none */
    int timed_out, retries, events;
    nyx_claude_attempt *attempts; /* nattempts of them: &one, or allocated */
    int nattempts;
    nyx_claude_attempt one; /* most calls take one attempt: no allocation */
    double started_ms, finished_ms;

    /* private */
    nyx_claude *client;
    void *shard; /* the multi handle the attempt is on */
    void *easy;
    struct curl_slist *slist;
    nyx_timer *retry_timer;
    nyx_sse sse;
    double attempt_started_ms, retry_after_ms;
    int should_retry; /* -1: no x-should-retry header */
    int active;
};

/* base_url without /v1 (a trailing slash is dropped). */
nyx_claude *nyx_claude_new(nyx_loop *loop, const char *base_url,
                           const char *api_key, nyx_err *err);
void nyx_claude_free(nyx_claude *c);
/* The endpoint: {base}/v1/messages. */
const char *nyx_claude_url(const nyx_claude *c);

/* Starts the call; on_done follows, from a loop callback. */
int nyx_claude_start(nyx_claude *c, nyx_claude_call *call, nyx_err *err);

/* Stops a call that has not finished (on_done is not called) and frees
 * what it holds; safe on a finished or never started call. */
void nyx_claude_cancel(nyx_claude_call *call);

/* Frees what a finished call holds (response, headers). */
void nyx_claude_call_free(nyx_claude_call *call);

int nyx_claude_in_flight(const nyx_claude *c);

/* The retry decision, exposed for the tests: retry after a response with
 * this status and x-should-retry header (-1: absent)? Or, for status 0,
 * after a transport failure. */
int nyx_claude_retryable(long status, int should_retry);

/* The wait before retry number n (0-based) given a server's wait in ms
 * (< 0: none); jitter in [0, 1) picks within the backoff's 25%. */
double nyx_claude_backoff_ms(int n, double server_ms, double jitter);

#endif
