#include "claude.h"

#include "json.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define POOL_MAX 4096

/* Transfers per multi handle. libcurl 7.88 walks every connection of a
 * multi handle's cache when a transfer leaves it (curl_multi_remove_handle
 * looks for connect-only connections) and every connection to the host
 * when one starts (looking for an idle one): with 1,000 calls in flight on
 * 1,000 connections, that was a million steps per thousand calls. Calls
 * are spread over as many multi handles as needed, each with its own
 * connections, so each walk stays this short. */
#define SHARD_CALLS 32

typedef struct shard {
    nyx_claude *client;
    CURLM *multi;
    nyx_timer *timer;
    int running; /* transfers added to it */
} shard;

struct nyx_claude {
    nyx_loop *loop;
    shard **shards;
    int nshards;
    char url[1024];
    CURLU *curlu; /* the url, parsed once rather than once per request */
    char key_header[512];       /* "x-api-key: ..." */
    struct curl_slist *headers; /* the same for every call without a beta */
    CURL *pool[POOL_MAX]; /* idle handles, options set: reused, not remade */
    int npool;
    int in_flight;
    unsigned long long rand;
};

const char *nyx_claude_url(const nyx_claude *c) { return c->url; }
int nyx_claude_in_flight(const nyx_claude *c) { return c->in_flight; }

static void check_done(shard *sh);

/* ---- the loop drives curl --------------------------------------------- */

static void on_socket_event(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    shard *sh = arg;
    int flags = (events & NYX_READ ? CURL_CSELECT_IN : 0) |
                (events & NYX_WRITE ? CURL_CSELECT_OUT : 0) |
                (events & NYX_ERROR ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(sh->multi, fd, flags, &running);
    check_done(sh);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp)
{
    shard *sh = userp;
    unsigned events = what == CURL_POLL_IN      ? NYX_READ
                      : what == CURL_POLL_OUT   ? NYX_WRITE
                      : what == CURL_POLL_INOUT ? NYX_READ | NYX_WRITE
                                                : 0;
    nyx_loop_watch(sh->client->loop, s, events, on_socket_event, sh);
    return 0;
}

static void on_timer(nyx_loop *loop, void *arg)
{
    shard *sh = arg;
    sh->timer = NULL;
    int running;
    curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(sh);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    shard *sh = userp;
    nyx_loop *loop = sh->client->loop;
    nyx_timer_stop(loop, sh->timer);
    sh->timer = timeout_ms < 0
                    ? NULL
                    : nyx_timer_start(loop, (double)timeout_ms, on_timer, sh);
    return 0;
}

static shard *new_shard(nyx_claude *c)
{
    shard **v = realloc(c->shards, sizeof *v * (size_t)(c->nshards + 1));
    if (!v)
        return NULL;
    c->shards = v;
    shard *sh = calloc(1, sizeof *sh);
    if (!sh || !(sh->multi = curl_multi_init())) {
        free(sh);
        return NULL;
    }
    sh->client = c;
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
    /* keep every connection of a large fan-out alive for the next calls */
    curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, 4096L);
    curl_multi_setopt(sh->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    return c->shards[c->nshards++] = sh;
}

/* The first multi handle with room: the busy ones first, so that the
 * connections they keep are the ones reused. */
static shard *pick_shard(nyx_claude *c)
{
    for (int i = 0; i < c->nshards; i++)
        if (c->shards[i]->running < SHARD_CALLS)
            return c->shards[i];
    return new_shard(c);
}

nyx_claude *nyx_claude_new(nyx_loop *loop, const char *base_url,
                           const char *api_key, nyx_err *err)
{
    static int global_init;
    if (!global_init && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        nyx_errf(err, "cannot initialise libcurl");
        return NULL;
    }
    global_init = 1;
    nyx_claude *c = calloc(1, sizeof *c);
    if (!c) {
        nyx_errf(err, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->rand = (unsigned long long)nyx_now_ms() ^ 0x9E3779B97F4A7C15ULL;
    size_t n = strlen(base_url);
    while (n && base_url[n - 1] == '/')
        n--;
    if (nyx_fmt(c->url, sizeof c->url, "%.*s/v1/messages", (int)n, base_url) <
            0 ||
        nyx_fmt(c->key_header, sizeof c->key_header, "x-api-key: %s", api_key) <
            0) {
        nyx_errf(err, "ANTHROPIC_BASE_URL or ANTHROPIC_API_KEY is too long");
        free(c);
        return NULL;
    }
    /* a url libcurl cannot parse is left to fail each request, as before */
    if ((c->curlu = curl_url()) &&
        curl_url_set(c->curlu, CURLUPART_URL, c->url, 0) != CURLUE_OK) {
        curl_url_cleanup(c->curlu);
        c->curlu = NULL;
    }
    if (!new_shard(c)) {
        nyx_errf(err, "cannot create a libcurl multi handle");
        free(c->shards);
        curl_url_cleanup(c->curlu);
        free(c);
        return NULL;
    }
    return c;
}

void nyx_claude_free(nyx_claude *c)
{
    if (!c)
        return;
    while (c->npool)
        curl_easy_cleanup(c->pool[--c->npool]);
    for (int i = 0; i < c->nshards; i++) {
        nyx_timer_stop(c->loop, c->shards[i]->timer);
        curl_multi_cleanup(c->shards[i]->multi);
        free(c->shards[i]);
    }
    free(c->shards);
    curl_slist_free_all(c->headers);
    curl_url_cleanup(c->curlu);
    /* the key leaves memory with the client */
    memset(c->key_header, 0, sizeof c->key_header);
    free(c);
}

/* ---- one call ---------------------------------------------------------- */

static void on_sse(void *arg, const char *event, const char *data, size_t len)
{
    nyx_claude_call *call = arg;
    call->events++;
    if (call->on_event)
        call->on_event(call, event, data, len);
}

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
    nyx_claude_call *call = arg;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    if (call->stream && status == 200) {
        if (nyx_sse_feed(&call->sse, p, len, on_sse, call) < 0)
            return 0; /* out of memory: fail the transfer */
        return len;
    }
    return nyx_buf_add(&call->response, p, len) < 0 ? 0 : len;
}

/* Appends name and value to the headers object, both lowercase-named and
 * JSON-quoted (header values are nearly always plain ASCII: copied as is
 * unless they need escapes). */
static void keep_header(nyx_buf *b, const char *name, size_t nlen,
                        const char *v, size_t vlen)
{
    char lower[64];
    if (nlen >= sizeof lower)
        return;
    for (size_t i = 0; i < nlen; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    nyx_buf_add(b, b->len ? ",\"" : "{\"", 2);
    nyx_buf_add(b, lower, nlen);
    nyx_buf_add(b, "\":", 2);
    if (nyx_json_plain(v, v + vlen) == v + vlen) {
        nyx_buf_add(b, "\"", 1);
        nyx_buf_add(b, v, vlen);
        nyx_buf_add(b, "\"", 1);
    } else {
        nyx_json_quote(b, v, vlen);
    }
}

static int name_is(const char *h, size_t n, const char *name, size_t len)
{
    return n == len && strncasecmp(h, name, len) == 0;
}

/* Keeps the headers worth keeping of the current attempt: request-id, the
 * retry ones, the rate limits. Called once per header line. */
static size_t header_cb(char *h, size_t size, size_t n, void *arg)
{
    nyx_claude_call *call = arg;
    size_t len = size * n, k = len;
    while (k && (h[k - 1] == '\r' || h[k - 1] == '\n'))
        k--;
    if (k >= 5 && memcmp(h, "HTTP/", 5) == 0) { /* a new response begins */
        call->headers.len = 0;
        call->request_id[0] = '\0';
        call->retry_after_ms = -1;
        call->should_retry = -1;
        return len;
    }
    const char *colon = memchr(h, ':', k);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - h);
    const char *v = colon + 1;
    while (v < h + k && *v == ' ')
        v++;
    size_t vlen = (size_t)(h + k - v);
    char value[64]; /* filled only for the headers that need it */
    size_t vcopy = vlen < sizeof value - 1 ? vlen : sizeof value - 1;
    switch (tolower((unsigned char)h[0])) {
    case 'r':
        if (name_is(h, nlen, "request-id", 10)) {
            memcpy(call->request_id, v, vcopy);
            call->request_id[vcopy] = '\0';
            return len;
        }
        memcpy(value, v, vcopy);
        value[vcopy] = '\0';
        if (name_is(h, nlen, "retry-after-ms", 14)) {
            call->retry_after_ms = atof(value);
        } else if (name_is(h, nlen, "retry-after", 11)) {
            char *end;
            double secs = strtod(value, &end);
            struct tm tm = {0};
            if (end != value && !*end) {
                if (call->retry_after_ms < 0)
                    call->retry_after_ms = secs * 1e3;
            } else if (strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm) &&
                       call->retry_after_ms < 0) { /* an HTTP date */
                call->retry_after_ms = difftime(timegm(&tm), time(NULL)) * 1e3;
            }
        } else {
            return len;
        }
        break;
    case 'x':
        if (!name_is(h, nlen, "x-should-retry", 14))
            return len;
        call->should_retry = vlen == 4 && strncasecmp(v, "true", 4) == 0;
        break;
    case 'a':
        if (!(nlen > 20 && strncasecmp(h, "anthropic-ratelimit-", 20) == 0) &&
            !name_is(h, nlen, "anthropic-organization-id", 25))
            return len;
        break;
    default:
        return len;
    }
    keep_header(&call->headers, h, nlen, v, vlen);
    return len;
}

static struct curl_slist *make_headers(const nyx_claude *c, const char *beta)
{
    struct curl_slist *l = NULL, *n;
    const char *lines[] = {c->key_header, "anthropic-version: 2023-06-01",
                           "content-type: application/json",
                           /* else libcurl waits for a 100 Continue on
                            * bodies over 1 KB */
                           "Expect:", beta};
    for (size_t i = 0; i < sizeof lines / sizeof *lines && lines[i]; i++) {
        if (!(n = curl_slist_append(l, lines[i]))) {
            curl_slist_free_all(l);
            return NULL;
        }
        l = n;
    }
    return l;
}

/* Whether the environment names a proxy for libcurl (read once). */
static int proxy_in_env(void)
{
    static int known = -1;
    if (known < 0) {
        static const char *const vars[] = {
            "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
            "all_proxy",  "ALL_PROXY",  NULL};
        known = 0;
        for (int i = 0; vars[i]; i++) {
            const char *v = getenv(vars[i]);
            if (v && *v)
                known = 1;
        }
    }
    return known;
}

/* A handle with everything set that is the same for every call. */
static CURL *new_easy(nyx_claude *c)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    if (c->curlu)
        curl_easy_setopt(e, CURLOPT_CURLU, c->curlu);
    else
        curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* answers are small JSON or a trickle of events: a thousand calls in
     * flight should not each hold libcurl's default 16 KiB and 64 KiB */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    /* libcurl looks for proxy variables in the environment on every
     * request; with none set, it is told so once */
    if (!proxy_in_env()) {
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    }
    return e;
}

static int setup_easy(nyx_claude *c, nyx_claude_call *call, nyx_err *err)
{
    CURL *e = c->npool ? c->pool[--c->npool] : new_easy(c);
    if (!e) {
        nyx_errf(err, "cannot create a libcurl handle");
        return -1;
    }
    call->easy = e;
    if (!c->headers && !(c->headers = make_headers(c, NULL))) {
        nyx_errf(err, "out of memory");
        return -1;
    }
    struct curl_slist *headers = c->headers;
    if (call->beta) {
        char beta[512];
        snprintf(beta, sizeof beta, "anthropic-beta: %s", call->beta);
        if (!(call->slist = headers = make_headers(c, beta))) {
            nyx_errf(err, "out of memory");
            return -1;
        }
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)call->body_len);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)call->timeout_ms);
    curl_easy_setopt(
        e, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(call->timeout_ms < 10000 ? call->timeout_ms : 10000));
    return 0;
}

static void remove_easy(nyx_claude_call *call)
{
    shard *sh = call->shard;
    curl_multi_remove_handle(sh->multi, call->easy);
    sh->running--;
    call->shard = NULL;
}

static int begin_attempt(nyx_claude_call *call)
{
    call->response.len = 0;
    call->headers.len = 0;
    call->request_id[0] = '\0';
    call->retry_after_ms = -1;
    call->should_retry = -1;
    nyx_sse_free(&call->sse);
    memset(&call->sse, 0, sizeof call->sse);
    call->attempt_started_ms = nyx_now_ms();
    shard *sh = pick_shard(call->client);
    if (!sh || curl_multi_add_handle(sh->multi, call->easy) != CURLM_OK)
        return -1;
    call->shard = sh;
    sh->running++;
    return 0;
}

int nyx_claude_start(nyx_claude *c, nyx_claude_call *call, nyx_err *err)
{
    call->client = c;
    call->started_ms = nyx_now_ms();
    if (call->max_retries > NYX_CLAUDE_MAX_ATTEMPTS - 1)
        call->max_retries = NYX_CLAUDE_MAX_ATTEMPTS - 1;
    if (setup_easy(c, call, err) < 0 || begin_attempt(call) < 0) {
        if (!err->msg[0])
            nyx_errf(err, "cannot start the request");
        nyx_claude_call_free(call);
        return -1;
    }
    call->active = 1;
    c->in_flight++;
    return 0;
}

int nyx_claude_retryable(long status, int should_retry)
{
    if (status >= 200 && status < 300)
        return 0;
    if (should_retry >= 0)
        return should_retry;
    if (status == 0)
        return 1; /* connection errors and timeouts */
    return status == 408 || status == 409 || status == 429 || status >= 500;
}

double nyx_claude_backoff_ms(int n, double server_ms, double jitter)
{
    /* the server's word counts when it is sane, as the Python SDK does */
    if (server_ms > 0 && server_ms <= 60000)
        return server_ms;
    double s = 0.5 * (double)(1u << (n < 10 ? n : 10));
    if (s > 8)
        s = 8;
    return s * (1 - 0.25 * jitter) * 1e3;
}

static void release_easy(nyx_claude_call *call);

static void retry_now(nyx_loop *loop, void *arg)
{
    nyx_claude_call *call = arg;
    call->retry_timer = NULL;
    if (begin_attempt(call) < 0) {
        snprintf(call->error, sizeof call->error, "cannot restart the request");
        call->active = 0;
        call->client->in_flight--;
        call->finished_ms = nyx_now_ms();
        release_easy(call);
        call->on_done(call);
    }
}

static double next_jitter(nyx_claude *c)
{
    c->rand ^= c->rand << 13;
    c->rand ^= c->rand >> 7;
    c->rand ^= c->rand << 17;
    return (double)(c->rand % 1000000) / 1e6;
}

/* The handle back to the pool (its connection kept by the multi) once the
 * call is over: the outcome is in the call, and the box that holds the
 * call may live on until Lua collects it. */
static void release_easy(nyx_claude_call *call)
{
    if (call->easy) {
        nyx_claude *c = call->client;
        curl_easy_setopt(call->easy, CURLOPT_PRIVATE, NULL);
        if (c && c->npool < POOL_MAX)
            c->pool[c->npool++] = call->easy;
        else
            curl_easy_cleanup(call->easy);
        call->easy = NULL;
    }
    curl_slist_free_all(call->slist);
    call->slist = NULL;
}

static void attempt_done(nyx_claude *c, nyx_claude_call *call, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    remove_easy(call);
    if (call->headers.len)
        nyx_buf_add(&call->headers, "}", 1);
    if (call->nattempts == 0) {
        call->attempts = &call->one;
    } else if (call->attempts == &call->one) { /* a retry: room for all */
        nyx_claude_attempt *all = malloc(sizeof *all * NYX_CLAUDE_MAX_ATTEMPTS);
        if (all) {
            all[0] = call->one;
            call->attempts = all;
        } else { /* out of memory: the first attempt's record is reused */
            call->nattempts = 0;
        }
    }
    nyx_claude_attempt *a = &call->attempts[call->nattempts++];
    memset(a, 0, sizeof *a);
    a->status = status;
    a->curl_code = rc;
    a->ms = nyx_now_ms() - call->attempt_started_ms;
    snprintf(a->request_id, sizeof a->request_id, "%s", call->request_id);
    call->status = status;
    call->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    call->error[0] = '\0';
    if (rc != CURLE_OK)
        snprintf(call->error, sizeof call->error, "%s",
                 call->timed_out ? "timed out" : curl_easy_strerror(rc));
    /* a transport failure counts as no response, even half way through a
     * 200; but a stream that delivered events cannot be replayed */
    int retry =
        (rc != CURLE_OK ? nyx_claude_retryable(0, -1)
                        : nyx_claude_retryable(status, call->should_retry)) &&
        call->events == 0 && call->retries < call->max_retries;
    if (retry) {
        a->delay_ms = nyx_claude_backoff_ms(call->retries, call->retry_after_ms,
                                            next_jitter(c));
        call->retries++;
        call->retry_timer =
            nyx_timer_start(c->loop, a->delay_ms, retry_now, call);
        if (call->retry_timer)
            return;
    }
    call->active = 0;
    c->in_flight--;
    call->finished_ms = nyx_now_ms();
    release_easy(call);
    call->on_done(call);
}

static void check_done(shard *sh)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(sh->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        nyx_claude_call *call = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call)
            attempt_done(sh->client, call, m->data.result);
    }
}

void nyx_claude_call_free(nyx_claude_call *call)
{
    release_easy(call);
    nyx_buf_free(&call->response);
    nyx_buf_free(&call->headers);
    nyx_sse_free(&call->sse);
    if (call->attempts != &call->one)
        free(call->attempts);
    call->attempts = NULL;
    call->nattempts = 0;
}

void nyx_claude_cancel(nyx_claude_call *call)
{
    nyx_claude *c = call->client;
    if (call->active) {
        if (call->retry_timer)
            nyx_timer_stop(c->loop, call->retry_timer);
        else
            remove_easy(call);
        call->retry_timer = NULL;
        call->active = 0;
        c->in_flight--;
    }
    nyx_claude_call_free(call);
}
