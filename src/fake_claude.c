#include "fake_claude.h"

#include "json.h"
#include "loop.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct cache_entry {
    uint64_t key;
    double expires; /* ms, monotonic; 0: free slot */
} cache_entry;

typedef struct counter {
    char id[272]; /* a marker's id, and a suffix such as "#verdict" */
    long n;
} counter;

#define FAKE_THREADS 2 /* MHD's polling threads */

/* A suspended connection and when to resume it. */
typedef struct wake {
    double due; /* ms, monotonic */
    struct MHD_Connection *conn;
} wake;

struct nyx_fake {
    struct MHD_Daemon *d;
    nyx_fake_opts o;
    int port;
    /* delays suspend their connection and the waker resumes it when due:
     * a thousand slow answers cost no thread each */
    pthread_t waker;
    pthread_mutex_t wmu;
    pthread_cond_t wcond;
    wake *wakes; /* a min-heap on due */
    size_t nwakes, wcap;
    int waker_started, quit;
    pthread_mutex_t mu;
    long requests, in_flight, peak, streams, cache_reads, cache_writes;
    long by_status[600];
    unsigned long serial;
    cache_entry *cache;
    size_t cache_cap;
    counter *counters;
    size_t ncounters, counters_cap;
};

/* What one request asks for, and what it gets. */
typedef struct analysis {
    const nyx_json *root, *tools, *stops, *tool_choice;
    const char *model;
    long max_tokens;
    int stream, breakpoints;
    long input, cache_read, w5m, w1h;
    const char *last_text;        /* the last message's text */
    const char *plan_text;        /* the planning prompt (find_plan_text) */
    uint64_t hash;                /* of model and messages: the answer's seed */
    int decompose, verdict, vote; /* what the prompt asks for */
    /* from the marker */
    char marker[256], id[256], stream_error[64];
    int status, malformed, drop, tool_use, should_retry;
    int tool_turns;               /* assistant turns that used a tool */
    const nyx_json *tool_results; /* the last message's, if it has any */
    char tool_forced[64];         /* marker tool=NAME */
    long times, delay_ms, tokens, retry_after_ms, chunk_delay_ms;
    double retry_after;
    int force_pass;       /* verdict=pass|fail: 1 or 0; -1: not forced */
    double force_quality; /* quality=Q; -1: not forced */
    int force_choice;     /* choice=K; 0: not forced */
    int plan_malformed;   /* plan=malformed */
    int plan_atomic;      /* plan=atomic */
} analysis;

typedef struct reply {
    int status;
    nyx_buf body;
    const char *content_type;
    char request_id[64];
    analysis *a;
    /* streamed or cut bodies go through a callback */
    size_t *bounds; /* event boundaries in body */
    size_t nbounds, next_bound;
    size_t cut; /* end here with an error (drop), 0: no */
    long chunk_delay_ms;
    size_t waited; /* the boundary already waited for, plus one */
    struct MHD_Connection *conn;
    unsigned long serial;
    nyx_fake *f;
} reply;

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void wake_swap(wake *h, size_t i, size_t j)
{
    wake t = h[i];
    h[i] = h[j];
    h[j] = t;
}

static void wake_push(nyx_fake *f, wake w)
{
    size_t i = f->nwakes++;
    f->wakes[i] = w;
    while (i > 0 && f->wakes[(i - 1) / 2].due > f->wakes[i].due) {
        wake_swap(f->wakes, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static wake wake_pop(nyx_fake *f)
{
    wake top = f->wakes[0];
    f->wakes[0] = f->wakes[--f->nwakes];
    for (size_t i = 0;;) {
        size_t c = 2 * i + 1;
        if (c >= f->nwakes)
            break;
        if (c + 1 < f->nwakes && f->wakes[c + 1].due < f->wakes[c].due)
            c++;
        if (f->wakes[c].due >= f->wakes[i].due)
            break;
        wake_swap(f->wakes, i, c);
        i = c;
    }
    return top;
}

/* Resumes each connection when it is due; all of them when quitting. */
static void *waker_main(void *arg)
{
    nyx_fake *f = arg;
    pthread_mutex_lock(&f->wmu);
    for (;;) {
        double now = nyx_now_ms();
        if (f->nwakes && (f->quit || f->wakes[0].due <= now)) {
            wake w = wake_pop(f);
            pthread_mutex_unlock(&f->wmu);
            MHD_resume_connection(w.conn);
            pthread_mutex_lock(&f->wmu);
        } else if (f->quit) {
            break;
        } else if (!f->nwakes) {
            pthread_cond_wait(&f->wcond, &f->wmu);
        } else {
            double due = f->wakes[0].due - now;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            long long ns = ts.tv_nsec + (long long)(due * 1e6);
            ts.tv_sec += (time_t)(ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&f->wcond, &f->wmu, &ts);
        }
    }
    pthread_mutex_unlock(&f->wmu);
    return NULL;
}

/* Suspends conn for ms; MHD calls back (the access handler, or the
 * content reader) once it is resumed. Only from those callbacks. Returns
 * 0 when it did not wait (the server is stopping, or out of memory). */
static int defer(nyx_fake *f, struct MHD_Connection *conn, long ms)
{
    int ok = 0;
    pthread_mutex_lock(&f->wmu);
    if (!f->quit && f->nwakes == f->wcap) {
        size_t cap = f->wcap ? f->wcap * 2 : 256;
        wake *v = realloc(f->wakes, cap * sizeof *v);
        if (v) {
            f->wakes = v;
            f->wcap = cap;
        }
    }
    if (!f->quit && f->nwakes < f->wcap) {
        MHD_suspend_connection(conn);
        wake w = {nyx_now_ms() + (double)ms, conn};
        wake_push(f, w);
        pthread_cond_signal(&f->wcond);
        ok = 1;
    }
    pthread_mutex_unlock(&f->wmu);
    return ok;
}

/* ---- reading the request ------------------------------------------------ */

static long tokens_of(size_t chars) { return (long)((chars + 3) / 4); }

/* The text of a message's content (string, or its text blocks). */
static const char *content_text(const nyx_json *content)
{
    if (!content)
        return "";
    if (content->type == NYX_JSTR)
        return content->str;
    for (size_t i = content->n; content->type == NYX_JARR && i-- > 0;) {
        const char *t = nyx_json_str(content->items[i], "text", NULL);
        if (t)
            return t;
    }
    return "";
}

static void parse_marker(analysis *a, const char *text)
{
    const char *m = text ? strstr(text, "[[fake:") : NULL;
    if (!m || a->marker[0])
        return;
    const char *end = strstr(m, "]]");
    if (!end)
        return;
    snprintf(a->marker, sizeof a->marker, "%.*s", (int)(end - m - 7), m + 7);
    snprintf(a->id, sizeof a->id, "%s", a->marker);
    char copy[256];
    snprintf(copy, sizeof copy, "%s", a->marker);
    char *save = NULL;
    for (char *kv = strtok_r(copy, ", ", &save); kv;
         kv = strtok_r(NULL, ", ", &save)) {
        char *eq = strchr(kv, '=');
        const char *v = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        if (!strcmp(kv, "status"))
            a->status = atoi(v);
        else if (!strcmp(kv, "times"))
            a->times = atol(v);
        else if (!strcmp(kv, "id"))
            snprintf(a->id, sizeof a->id, "%s", v);
        else if (!strcmp(kv, "retry_after"))
            a->retry_after = atof(v);
        else if (!strcmp(kv, "retry_after_ms"))
            a->retry_after_ms = atol(v);
        else if (!strcmp(kv, "should_retry"))
            a->should_retry = !strcmp(v, "true");
        else if (!strcmp(kv, "delay_ms"))
            a->delay_ms = atol(v);
        else if (!strcmp(kv, "tokens"))
            a->tokens = atol(v);
        else if (!strcmp(kv, "malformed"))
            a->malformed = 1;
        else if (!strcmp(kv, "drop"))
            a->drop = 1;
        else if (!strcmp(kv, "tool_use"))
            a->tool_use = *v ? atoi(v) : 1;
        else if (!strcmp(kv, "tool"))
            snprintf(a->tool_forced, sizeof a->tool_forced, "%s", v);
        else if (!strcmp(kv, "stream_error"))
            snprintf(a->stream_error, sizeof a->stream_error, "%s", v);
        else if (!strcmp(kv, "chunk_delay_ms"))
            a->chunk_delay_ms = atol(v);
        else if (!strcmp(kv, "verdict"))
            a->force_pass = !strcmp(v, "pass")   ? 1
                            : !strcmp(v, "fail") ? 0
                                                 : -1;
        else if (!strcmp(kv, "quality"))
            a->force_quality = atof(v) < 0 ? 0 : atof(v) > 1 ? 1 : atof(v);
        else if (!strcmp(kv, "choice"))
            a->force_choice = atoi(v);
        else if (!strcmp(kv, "plan")) {
            a->plan_malformed = !strcmp(v, "malformed");
            a->plan_atomic = !strcmp(v, "atomic");
        }
    }
}

/* One piece of the cacheable prefix: tools, then system, then messages. */
typedef struct segment {
    long tokens;
    uint64_t hash;
    int ttl; /* seconds if it carries cache_control, else 0 */
} segment;

typedef struct segments {
    segment v[512];
    size_t n;
    uint64_t h;
} segments;

static void add_segment(segments *s, const nyx_json *v)
{
    nyx_buf b = {0};
    if (v->type == NYX_JSTR)
        nyx_buf_add(&b, v->str, v->len);
    else
        nyx_json_canon(&b, v, "cache_control");
    const nyx_json *cc = nyx_json_get(v, "cache_control");
    s->h = fnv(s->h, b.data ? b.data : "", b.len);
    if (s->n < 512) {
        segment *g = &s->v[s->n++];
        /* a text block counts its text, not the JSON around it */
        const nyx_json *text = nyx_json_get(v, "text");
        g->tokens =
            tokens_of(text && text->type == NYX_JSTR ? text->len : b.len);
        g->hash = s->h;
        g->ttl =
            cc ? (!strcmp(nyx_json_str(cc, "ttl", "5m"), "1h") ? 3600 : 300)
               : 0;
    }
    nyx_buf_free(&b);
}

static void add_all(segments *s, const nyx_json *v)
{
    if (!v)
        return;
    if (v->type == NYX_JARR)
        for (size_t i = 0; i < v->n; i++)
            add_segment(s, v->items[i]);
    else
        add_segment(s, v);
}

static double *cache_slot(nyx_fake *f, uint64_t key, int create)
{
    if (create && f->cache_cap == 0) {
        f->cache_cap = 4096;
        f->cache = calloc(f->cache_cap, sizeof *f->cache);
        if (!f->cache) {
            f->cache_cap = 0;
            return NULL;
        }
    }
    if (!f->cache_cap)
        return NULL;
    double now = nyx_now_ms();
    for (size_t i = 0; i < f->cache_cap; i++) {
        cache_entry *e = &f->cache[(key + i) % f->cache_cap];
        if (e->key == key && e->expires > now)
            return &e->expires;
        if (e->expires <= now) {
            if (!create)
                return NULL;
            e->key = key;
            return &e->expires;
        }
    }
    return NULL; /* full of live entries: do not cache */
}

/* The API looks for the longest cached prefix among the breakpoints,
 * reads it, and writes the rest up to the last breakpoint. */
static void simulate_cache(nyx_fake *f, analysis *a, segments *s,
                           int top_level_ttl)
{
    long total = 0, cum[512];
    for (size_t i = 0; i < s->n; i++) {
        total += s->v[i].tokens;
        cum[i] = total;
    }
    if (top_level_ttl && s->n && !s->v[s->n - 1].ttl)
        s->v[s->n - 1].ttl = top_level_ttl;
    long read = 0, written = 0;
    pthread_mutex_lock(&f->mu);
    int hit = -1;
    for (size_t i = s->n; i-- > 0;) {
        double *slot;
        if (s->v[i].ttl && cum[i] >= f->o.cache_min_tokens &&
            (slot = cache_slot(f, s->v[i].hash, 0))) {
            *slot = nyx_now_ms() + s->v[i].ttl * 1e3 * f->o.ttl_scale;
            hit = (int)i;
            read = cum[i];
            break;
        }
    }
    for (size_t i = (size_t)(hit + 1); i < s->n; i++) {
        if (!s->v[i].ttl || cum[i] < f->o.cache_min_tokens)
            continue;
        double *slot = cache_slot(f, s->v[i].hash, 1);
        if (slot)
            *slot = nyx_now_ms() + s->v[i].ttl * 1e3 * f->o.ttl_scale;
        long part = cum[i] - (read + written);
        if (s->v[i].ttl == 3600)
            a->w1h += part;
        else
            a->w5m += part;
        written += part;
    }
    f->cache_reads += read > 0;
    f->cache_writes += written > 0;
    pthread_mutex_unlock(&f->mu);
    a->cache_read = read;
    a->input = total - read - written;
    if (a->input < 1)
        a->input = 1; /* the API always counts some input */
}

static int count_breakpoints(const nyx_json *v)
{
    if (!v)
        return 0;
    int n = nyx_json_get(v, "cache_control") != NULL;
    for (size_t i = 0; (v->type == NYX_JARR || v->type == NYX_JOBJ) && i < v->n;
         i++)
        n += count_breakpoints(v->items[i]);
    return n;
}

/* contains_ci, outside [[fake:...]] markers (a marker's words, such as
 * verdict=fail, say nothing of what the prompt asks for) */
static int says_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; hay && *hay; hay++) {
        if (!strncmp(hay, "[[fake:", 7)) {
            const char *end = strstr(hay, "]]");
            if (!end)
                return 0;
            hay = end + 1;
        } else if (strncasecmp(hay, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

static int mentions(const analysis *a, const char *system_text,
                    const char *word)
{
    return says_ci(a->last_text, word) || says_ci(system_text, word);
}

/* What the prompt asks for: a validator's verdict, a council's vote, a
 * plan (subtasks), or else an answer; each as JSON but the answer. */
static void classify(analysis *a, const char *system_text)
{
    if (!mentions(a, system_text, "json"))
        return;
    a->verdict = mentions(a, system_text, "verdict");
    a->vote = !a->verdict && mentions(a, system_text, "vote");
    a->decompose =
        !a->verdict && !a->vote && mentions(a, system_text, "subtask");
}

static int depth_line(const char *text);

/* The user message a plan is for: the last one, or, when the last is not
 * a planning prompt (a request to repair a malformed reply), the latest
 * earlier one that ends with a "DEPTH: k" line; its marker applies. */
static void find_plan_text(analysis *a, const nyx_json *msgs)
{
    a->plan_text = a->last_text;
    if (!a->decompose || depth_line(a->last_text) >= 0)
        return;
    for (size_t i = msgs->n - 1; i-- > 0;) {
        const nyx_json *m = msgs->items[i];
        if (strcmp(nyx_json_str(m, "role", ""), "user"))
            continue;
        const char *t = content_text(nyx_json_get(m, "content"));
        if (depth_line(t) >= 0) {
            a->plan_text = t;
            parse_marker(a, t);
            return;
        }
    }
}

/* Fills a from the request; returns an error message for a 400, or NULL. */
static const char *analyse(nyx_fake *f, analysis *a, const nyx_json *root)
{
    a->root = root;
    a->should_retry = -1;
    a->force_pass = -1;
    a->force_quality = -1;
    if (!root || root->type != NYX_JOBJ)
        return "request body must be a JSON object";
    a->model = nyx_json_str(root, "model", NULL);
    if (!a->model)
        return "model: Field required";
    const nyx_json *mt = nyx_json_get(root, "max_tokens");
    if (!mt || mt->type != NYX_JNUM || mt->num < 1)
        return "max_tokens: Field required (an integer >= 1)";
    a->max_tokens = (long)mt->num;
    const nyx_json *msgs = nyx_json_get(root, "messages");
    if (!msgs || msgs->type != NYX_JARR || msgs->n == 0)
        return "messages: at least one message is required";
    for (size_t i = 0; i < msgs->n; i++) {
        const char *role = nyx_json_str(msgs->items[i], "role", "");
        if (strcmp(role, "user") && strcmp(role, "assistant"))
            return "messages: each message's role must be user or assistant";
        const nyx_json *c = nyx_json_get(msgs->items[i], "content");
        for (size_t j = 0; c && c->type == NYX_JARR && j < c->n; j++) {
            const char *type = nyx_json_str(c->items[j], "type", "");
            if (!strcmp(role, "assistant") && !strcmp(type, "tool_use")) {
                a->tool_turns++;
                break;
            }
            if (i == msgs->n - 1 && !strcmp(type, "tool_result"))
                a->tool_results = c;
        }
    }
    const nyx_json *stream = nyx_json_get(root, "stream");
    a->stream = stream && stream->type == NYX_JBOOL && stream->boolean;
    a->tools = nyx_json_get(root, "tools");
    a->stops = nyx_json_get(root, "stop_sequences");
    a->tool_choice = nyx_json_get(root, "tool_choice");
    const nyx_json *system = nyx_json_get(root, "system");
    const nyx_json *top_cc = nyx_json_get(root, "cache_control");
    a->breakpoints = count_breakpoints(a->tools) + count_breakpoints(system) +
                     count_breakpoints(msgs) + (top_cc != NULL);
    if (a->breakpoints > 4)
        return "A maximum of 4 blocks with cache_control may be provided.";

    a->last_text =
        content_text(nyx_json_get(msgs->items[msgs->n - 1], "content"));
    const char *system_text =
        system && system->type == NYX_JSTR ? system->str : content_text(system);
    parse_marker(a, a->last_text);
    parse_marker(a, system_text);
    classify(a, system_text);
    find_plan_text(a, msgs);

    segments *s = calloc(1, sizeof *s);
    if (!s)
        return "out of memory";
    s->h = fnv(1469598103934665603ULL ^ f->o.seed, a->model, strlen(a->model));
    add_all(s, a->tools);
    add_all(s, system);
    for (size_t i = 0; i < msgs->n; i++)
        add_all(s, nyx_json_get(msgs->items[i], "content"));
    a->hash = s->h;
    simulate_cache(
        f, a, s,
        top_cc ? (!strcmp(nyx_json_str(top_cc, "ttl", "5m"), "1h") ? 3600 : 300)
               : 0);
    free(s);
    return NULL;
}

/* ---- answering ------------------------------------------------------------
 */

static const char *const WORDS[] = {
    "the",      "plan",    "first",    "checks",  "each",  "step",  "then",
    "verifies", "results", "against",  "goal",    "with",  "care",  "and",
    "records",  "what",    "changed",  "so",      "that",  "later", "work",
    "builds",   "on",      "solid",    "ground",  "while", "risks", "stay",
    "visible",  "to",      "everyone", "involved"};

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The k of a last line "DEPTH: k" (the fractal workload), or -1. */
static int depth_line(const char *text)
{
    const char *p = NULL;
    for (const char *q = text; (q = strstr(q, "DEPTH:")); q++)
        p = q;
    if (!p || (p != text && p[-1] != '\n'))
        return -1;
    char *end;
    long k = strtol(p + 6, &end, 10);
    while (*end == ' ' || *end == '\n' || *end == '\r')
        end++;
    return end == p + 6 || *end || k < 0 || k > 1000 ? -1 : (int)k;
}

/* The text after "Goal: " up to the end of its line; 0 if none. */
static int goal_line(const char *text, const char **goal)
{
    const char *g = strstr(text, "Goal: ");
    int len = 0;
    if (g) {
        g += 6;
        while (g[len] && g[len] != '\n' && g[len] != '\r')
            len++;
    }
    *goal = g;
    return len;
}

static void tool_results_text(const analysis *a, nyx_buf *text)
{
    nyx_buf_addf(text, "Tool results:");
    const nyx_json *c = a->tool_results;
    for (size_t i = 0; i < c->n; i++) {
        const nyx_json *b = c->items[i];
        if (strcmp(nyx_json_str(b, "type", ""), "tool_result"))
            continue;
        const nyx_json *rc = nyx_json_get(b, "content");
        const char *t = rc && rc->type == NYX_JSTR ? rc->str : content_text(rc);
        const nyx_json *err = nyx_json_get(b, "is_error");
        nyx_buf_addf(
            text, " [%s%.300s]",
            err && err->type == NYX_JBOOL && err->boolean ? "error: " : "", t);
    }
}

/* A validator's verdict. By default a goal longer than 60 characters that
 * is not already a part of a split ("(part ", ": step ") fails: it should
 * have been split. Markers verdict= and quality= force it. */
static void verdict_text(const analysis *a, uint64_t *r, nyx_buf *text)
{
    int pass = a->force_pass;
    double q = a->force_quality;
    if (pass < 0 && q >= 0)
        pass = q >= 0.6;
    if (pass < 0) {
        const char *g;
        int len = goal_line(a->last_text, &g);
        /* a broad goal answered in a few lines: too broad to answer at
         * once; a long result (subtasks' results combined) passes */
        const char *res = strstr(a->last_text, "\nResult:");
        pass = len <= 60 || memmem(g, (size_t)len, "(part ", 6) ||
               memmem(g, (size_t)len, ": step ", 7) ||
               (res && strlen(res) > 600);
    }
    if (q < 0)
        q = pass ? 0.70 + (double)(next_rand(r) % 30) / 100
                 : 0.20 + (double)(next_rand(r) % 31) / 100;
    nyx_buf_addf(text, "{\"pass\": %s, \"quality\": %.4g, \"reasons\": \"%s\"}",
                 pass ? "true" : "false", q,
                 pass ? "The result addresses the goal and is consistent."
                      : "The result does not cover the whole goal: it is "
                        "too broad to answer at once; split it.");
}

/* A council judge's vote among the "Proposal N" lines of the prompt. */
static void vote_text(const analysis *a, uint64_t *r, nyx_buf *text)
{
    int n = 0;
    for (const char *p = a->last_text; p; p = strchr(p, '\n')) {
        p += *p == '\n';
        n += !strncmp(p, "Proposal ", 9) && isdigit((unsigned char)p[9]);
    }
    long k = a->force_choice > 0 ? a->force_choice
             : n                 ? 1 + (long)(next_rand(r) % (uint64_t)n)
                                 : 1;
    nyx_buf_addf(text,
                 "{\"choice\": %ld, \"reasons\": \"Proposal %ld is the most "
                 "complete and the most concrete.\"}",
                 k, k);
}

/* B subtasks while k < D, then an answer (the fractal workload). */
static void fractal_plan(const nyx_fake_opts *o, const analysis *a, int k,
                         uint64_t *r, nyx_buf *text)
{
    if (k >= o->fractal_depth) {
        nyx_buf_addf(text, "{\"answer\": \"leaf at depth %d: %016llx\"}", k,
                     (unsigned long long)next_rand(r));
        return;
    }
    /* the subtasks name the goal's line ("Goal: ...") when there is one,
     * so a tree reads like a plan */
    const char *g;
    int glen = goal_line(a->plan_text, &g);
    if (glen > 80)
        glen = 80;
    nyx_buf_addf(text, "{\"subtasks\": [");
    for (int i = 1; i <= o->fractal_branching; i++) {
        char goal[160];
        if (glen)
            snprintf(goal, sizeof goal, "%.*s: step %d of %d", glen, g, i,
                     o->fractal_branching);
        else
            snprintf(goal, sizeof goal, "part %d of %d at depth %d", i,
                     o->fractal_branching, k + 1);
        nyx_buf_addf(text, "%s{\"goal\": ", i > 1 ? ", " : "");
        nyx_json_quote(text, goal, strlen(goal));
        nyx_buf_addf(text, "}");
    }
    nyx_buf_addf(text, "]}");
}

static void plan_text(const analysis *a, uint64_t *r, nyx_buf *text)
{
    const char *goal = a->plan_text;
    int depth = 0;
    for (const char *p = goal; (p = strstr(p, "(part ")); p++)
        depth++;
    if (depth >= 2 || strlen(goal) < 12) {
        nyx_buf_addf(text, "{\"atomic\": true, \"subtasks\": []}");
        return;
    }
    int n = 2 + (int)(next_rand(r) % 3);
    nyx_buf_addf(text, "{\"atomic\": false, \"subtasks\": [");
    for (int i = 1; i <= n; i++) {
        char goal_part[200];
        snprintf(goal_part, sizeof goal_part, "%.120s (part %d of %d)", goal, i,
                 n);
        nyx_buf_addf(text, "%s{\"goal\": ", i > 1 ? ", " : "");
        nyx_json_quote(text, goal_part, strlen(goal_part));
        nyx_buf_addf(text, "}");
    }
    nyx_buf_addf(text, "]}");
}

/* Words, deterministic from the hash; a "Goal: " line's first words
 * come first, so a tree of offline answers reads like its goals. */
static void prose_text(const analysis *a, uint64_t *r, nyx_buf *text)
{
    size_t want = a->tokens > 0 ? (size_t)a->tokens * 4 : 0;
    int words = want ? 1 << 30 : 12 + (int)(next_rand(r) % 40);
    nyx_buf_addf(text, "Offline answer:");
    const char *g;
    int glen = goal_line(a->last_text, &g), cut = 0;
    /* six words at most, and never a marker: it would travel on */
    for (int spaces = 0; cut < glen && cut < 60 && g[cut] != '['; cut++)
        if (g[cut] == ' ' && ++spaces == 6)
            break;
    while (cut && g[cut - 1] == ' ')
        cut--;
    if (cut)
        nyx_buf_addf(text, " on %.*s,", cut, g);
    for (int i = 0; i < words && (!want || text->len < want); i++)
        nyx_buf_addf(text, " %s",
                     WORDS[next_rand(r) % (sizeof WORDS / sizeof *WORDS)]);
    if (want) {
        while (text->len < want)
            nyx_buf_add(text, ".", 1);
        text->len = want;
        text->data[want] = '\0';
    } else {
        nyx_buf_add(text, ".", 1);
    }
}

static void answer_text(const nyx_fake_opts *o, const analysis *a,
                        nyx_buf *text)
{
    uint64_t r = a->hash ^ o->seed ^ 0x9E3779B97F4A7C15ULL;
    if (!r)
        r = 1;
    int k = a->decompose ? depth_line(a->plan_text) : -1;
    if (a->tool_results) /* after tools ran: what they said */
        tool_results_text(a, text);
    else if (a->verdict)
        verdict_text(a, &r, text);
    else if (a->vote)
        vote_text(a, &r, text);
    else if (a->decompose && a->plan_malformed)
        nyx_buf_addf(text, "I would split this into a few parts: first, "
                           "find out what the goal needs; then, work "
                           "through each piece; finally, check the whole.");
    else if (a->decompose && a->plan_atomic)
        nyx_buf_addf(text, "{\"atomic\": true, \"subtasks\": []}");
    else if (k >= 0)
        fractal_plan(o, a, k, &r, text);
    else if (a->decompose)
        plan_text(a, &r, text);
    else
        prose_text(a, &r, text);
}

static const char *error_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 409:
        return "conflict_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 408:
    case 504:
        return "timeout_error";
    case 529:
        return "overloaded_error";
    default:
        return "api_error";
    }
}

static const char *error_message(int status)
{
    switch (status) {
    case 401:
        return "invalid x-api-key";
    case 429:
        return "Number of requests has exceeded your rate limit";
    case 529:
        return "Overloaded";
    case 500:
        return "Internal server error";
    default:
        return "The fake server was told to fail this request";
    }
}

static void error_body(reply *r, int status, const char *type, const char *msg)
{
    r->status = status;
    nyx_buf_addf(&r->body,
                 "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                 "\"message\":",
                 type);
    nyx_json_quote(&r->body, msg, strlen(msg));
    nyx_buf_addf(&r->body, "},\"request_id\":\"%s\"}", r->request_id);
}

typedef struct answer {
    nyx_buf text;
    long output_tokens;
    const char *stop_reason;
    const char *stop_sequence;
    const char *tool_name;
    char tool_input[256];
    char tool_id[64];
} answer;

static void make_answer(nyx_fake *f, const analysis *a, answer *ans,
                        unsigned long serial)
{
    answer_text(&f->o, a, &ans->text);
    ans->stop_reason = "end_turn";
    for (size_t i = 0;
         a->stops && a->stops->type == NYX_JARR && i < a->stops->n; i++) {
        const nyx_json *s = a->stops->items[i];
        char *hit = s->type == NYX_JSTR && s->len
                        ? strstr(ans->text.data, s->str)
                        : NULL;
        if (hit) {
            ans->text.len = (size_t)(hit - ans->text.data);
            ans->text.data[ans->text.len] = '\0';
            ans->stop_reason = "stop_sequence";
            ans->stop_sequence = s->str;
        }
    }
    ans->output_tokens = tokens_of(ans->text.len);
    if (ans->output_tokens < 1)
        ans->output_tokens = 1;
    if (ans->output_tokens > a->max_tokens) {
        size_t keep = (size_t)a->max_tokens * 4;
        while (keep > 0 && (ans->text.data[keep] & 0xC0) == 0x80)
            keep--; /* not in the middle of a character */
        ans->text.len = keep;
        ans->text.data[keep] = '\0';
        ans->output_tokens = a->max_tokens;
        ans->stop_reason = "max_tokens";
        ans->stop_sequence = NULL;
    }
    const char *forced = nyx_json_str(a->tool_choice, "type", "auto");
    int want_tool = a->tool_turns < a->tool_use || !strcmp(forced, "any") ||
                    !strcmp(forced, "tool");
    if (want_tool && a->tools && a->tools->type == NYX_JARR && a->tools->n &&
        strcmp(ans->stop_reason, "max_tokens") != 0) {
        ans->tool_name = nyx_json_str(a->tool_choice, "name", NULL);
        if (!ans->tool_name && a->tool_forced[0])
            ans->tool_name = a->tool_forced;
        if (!ans->tool_name)
            ans->tool_name = nyx_json_str(a->tools->items[0], "name", "tool");
        nyx_buf in = {0};
        nyx_buf_addf(&in, "{\"query\": ");
        nyx_json_quote(&in, a->last_text,
                       strlen(a->last_text) > 40 ? 40 : strlen(a->last_text));
        nyx_buf_addf(&in, "}");
        snprintf(ans->tool_input, sizeof ans->tool_input, "%s", in.data);
        nyx_buf_free(&in);
        snprintf(ans->tool_id, sizeof ans->tool_id, "toolu_fake_%06lu", serial);
        ans->stop_reason = "tool_use";
        ans->stop_sequence = NULL;
        ans->output_tokens += tokens_of(strlen(ans->tool_input)) + 8;
    }
}

static void usage_json(nyx_buf *b, const analysis *a, long output_tokens)
{
    nyx_buf_addf(b,
                 "{\"input_tokens\":%ld,\"cache_creation_input_tokens\":%ld,"
                 "\"cache_read_input_tokens\":%ld,\"cache_creation\":{"
                 "\"ephemeral_5m_input_tokens\":%ld,"
                 "\"ephemeral_1h_input_tokens\":%ld},\"output_tokens\":%ld,"
                 "\"service_tier\":\"standard\"}",
                 a->input, a->w5m + a->w1h, a->cache_read, a->w5m, a->w1h,
                 output_tokens);
}

static void message_json(nyx_buf *b, const analysis *a, const answer *ans,
                         const char *msg_id, int complete)
{
    nyx_buf_addf(b,
                 "{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\","
                 "\"model\":",
                 msg_id);
    nyx_json_quote(b, a->model, strlen(a->model));
    nyx_buf_addf(b, ",\"content\":[");
    if (complete) {
        nyx_buf_addf(b, "{\"type\":\"text\",\"text\":");
        nyx_json_quote(b, ans->text.data, ans->text.len);
        nyx_buf_addf(b, "}");
        if (ans->tool_name) {
            nyx_buf_addf(b, ",{\"type\":\"tool_use\",\"id\":\"%s\",\"name\":",
                         ans->tool_id);
            nyx_json_quote(b, ans->tool_name, strlen(ans->tool_name));
            nyx_buf_addf(b, ",\"input\":%s}", ans->tool_input);
        }
    }
    nyx_buf_addf(b, "],\"stop_reason\":");
    if (complete)
        nyx_buf_addf(b, "\"%s\"", ans->stop_reason);
    else
        nyx_buf_addf(b, "null");
    nyx_buf_addf(b, ",\"stop_sequence\":");
    if (complete && ans->stop_sequence)
        nyx_json_quote(b, ans->stop_sequence, strlen(ans->stop_sequence));
    else
        nyx_buf_addf(b, "null");
    nyx_buf_addf(b, ",\"usage\":");
    usage_json(b, a, complete ? ans->output_tokens : 1);
    nyx_buf_addf(b, "}");
}

static int add_bound(reply *r)
{
    size_t *b = realloc(r->bounds, (r->nbounds + 1) * sizeof *b);
    if (!b)
        return -1;
    r->bounds = b;
    r->bounds[r->nbounds++] = r->body.len;
    return 0;
}

static void event(reply *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void event(reply *r, const char *name, const char *fmt, ...)
{
    nyx_buf_addf(&r->body, "event: %s\ndata: ", name);
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof small) {
        nyx_buf_add(&r->body, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        va_start(ap, fmt);
        if (big)
            vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        if (big)
            nyx_buf_add(&r->body, big, (size_t)n);
        free(big);
    }
    nyx_buf_add(&r->body, "\n\n", 2);
    add_bound(r);
}

/* The SSE sequence the docs give, text cut into deltas of ~24 bytes. */
static void stream_body(reply *r, const analysis *a, const answer *ans,
                        const char *msg_id)
{
    nyx_buf m = {0}, q = {0};
    message_json(&m, a, ans, msg_id, 0);
    event(r, "message_start", "{\"type\":\"message_start\",\"message\":%s}",
          m.data);
    event(r, "content_block_start",
          "{\"type\":\"content_block_start\","
          "\"index\":0,\"content_block\":{\"type\":"
          "\"text\",\"text\":\"\"}}");
    event(r, "ping", "{\"type\": \"ping\"}");
    int deltas = 0;
    for (size_t i = 0; i < ans->text.len;) {
        size_t n = ans->text.len - i < 24 ? ans->text.len - i : 24;
        while (i + n < ans->text.len && (ans->text.data[i + n] & 0xC0) == 0x80)
            n++;
        q.len = 0;
        nyx_json_quote(&q, ans->text.data + i, n);
        event(r, "content_block_delta",
              "{\"type\":\"content_block_delta\","
              "\"index\":0,\"delta\":{\"type\":"
              "\"text_delta\",\"text\":%s}}",
              q.data);
        i += n;
        if (++deltas == 1 && a->stream_error[0]) {
            event(r, "error",
                  "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                  "\"message\":\"%s\"}}",
                  a->stream_error,
                  !strcmp(a->stream_error, "overloaded_error")
                      ? "Overloaded"
                      : "Stream failed");
            goto out;
        }
    }
    event(r, "content_block_stop",
          "{\"type\":\"content_block_stop\",\"index\":0}");
    if (ans->tool_name) {
        q.len = 0;
        nyx_json_quote(&q, ans->tool_name, strlen(ans->tool_name));
        event(r, "content_block_start",
              "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
              "{\"type\":\"tool_use\",\"id\":\"%s\",\"name\":%s,\"input\":{}}}",
              ans->tool_id, q.data);
        size_t len = strlen(ans->tool_input);
        event(r, "content_block_delta",
              "{\"type\":\"content_block_delta\","
              "\"index\":1,\"delta\":{\"type\":"
              "\"input_json_delta\",\"partial_json\":\"\"}}");
        for (size_t i = 0; i < len; i += 10) {
            q.len = 0;
            nyx_json_quote(&q, ans->tool_input + i,
                           len - i < 10 ? len - i : 10);
            event(r, "content_block_delta",
                  "{\"type\":\"content_block_delta\","
                  "\"index\":1,\"delta\":{\"type\":"
                  "\"input_json_delta\","
                  "\"partial_json\":%s}}",
                  q.data);
        }
        event(r, "content_block_stop",
              "{\"type\":\"content_block_stop\",\"index\":1}");
    }
    q.len = 0;
    if (ans->stop_sequence)
        nyx_json_quote(&q, ans->stop_sequence, strlen(ans->stop_sequence));
    event(r, "message_delta",
          "{\"type\":\"message_delta\",\"delta\":{"
          "\"stop_reason\":\"%s\",\"stop_sequence\":%s},"
          "\"usage\":{\"output_tokens\":%ld}}",
          ans->stop_reason, ans->stop_sequence ? q.data : "null",
          ans->output_tokens);
    event(r, "message_stop", "{\"type\":\"message_stop\"}");
out:
    nyx_buf_free(&m);
    nyx_buf_free(&q);
}

/* Counts a request under the marker's id and suffix (requests of one
 * kind count apart, e.g. "#verdict"); 1 while it is among the first
 * `times` (always, without times). */
static int still_failing(nyx_fake *f, const analysis *a, const char *suffix)
{
    if (!a->times)
        return 1;
    char key[sizeof((counter *)0)->id];
    snprintf(key, sizeof key, "%s%s", a->id, suffix);
    pthread_mutex_lock(&f->mu);
    counter *c = NULL;
    for (size_t i = 0; i < f->ncounters && !c; i++)
        if (!strcmp(f->counters[i].id, key))
            c = &f->counters[i];
    if (!c && f->ncounters == f->counters_cap) {
        size_t cap = f->counters_cap ? f->counters_cap * 2 : 16;
        counter *v = realloc(f->counters, cap * sizeof *v);
        if (v) {
            f->counters = v;
            f->counters_cap = cap;
        }
    }
    if (!c && f->ncounters < f->counters_cap) {
        c = &f->counters[f->ncounters++];
        snprintf(c->id, sizeof c->id, "%s", key);
        c->n = 0;
    }
    int fail = c ? c->n++ < a->times : 1;
    pthread_mutex_unlock(&f->mu);
    return fail;
}

/* With times=N a marker's faults hold for its first N requests; a forced
 * verdict for its first N verdicts answered (then: pass), a malformed plan
 * for its first N plans answered. */
static void expire_faults(nyx_fake *f, analysis *a)
{
    if (!a->marker[0])
        return;
    if (!still_failing(f, a, "")) {
        a->status = a->malformed = a->drop = 0;
        a->stream_error[0] = '\0';
        a->delay_ms = 0;
    }
    /* only an answer delivered whole counts as a verdict or a plan */
    if (a->status || a->malformed || a->drop || a->stream_error[0])
        return;
    if (a->verdict && (a->force_pass >= 0 || a->force_quality >= 0) &&
        !still_failing(f, a, "#verdict")) {
        a->force_pass = 1;
        a->force_quality = -1;
    }
    if (a->decompose && a->plan_malformed && !still_failing(f, a, "#plan"))
        a->plan_malformed = 0;
}

/* Fills r; returns how long to wait before sending it (ms). */
static long messages(nyx_fake *f, reply *r, struct MHD_Connection *conn,
                     const nyx_buf *body, analysis *a)
{
    if (!MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-api-key")) {
        error_body(r, 401, "authentication_error",
                   "x-api-key header is required");
        return 0;
    }
    if (!MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                     "anthropic-version")) {
        error_body(r, 400, "invalid_request_error",
                   "anthropic-version: header is required");
        return 0;
    }
    nyx_err err;
    nyx_json_doc *doc =
        nyx_json_parse(body->data ? body->data : "", body->len, &err);
    const char *bad = doc ? analyse(f, a, nyx_json_root(doc)) : err.msg;
    if (bad) {
        error_body(r, 400, "invalid_request_error", bad);
        nyx_json_free(doc);
        return 0;
    }
    expire_faults(f, a);
    long delay = a->delay_ms ? a->delay_ms : f->o.delay_ms;
    if (a->status) {
        error_body(r, a->status, error_type(a->status),
                   error_message(a->status));
    } else if (a->malformed) {
        r->status = 200;
        nyx_buf_addf(&r->body,
                     "{\"id\": \"msg_broken\", \"content\": [{\"type\":");
    } else {
        answer ans = {0};
        char msg_id[64];
        snprintf(msg_id, sizeof msg_id, "msg_fake_%08x%06lu", f->o.seed,
                 r->serial);
        make_answer(f, a, &ans, r->serial);
        r->status = 200;
        if (a->stream) {
            r->content_type = "text/event-stream; charset=utf-8";
            r->chunk_delay_ms = a->chunk_delay_ms;
            stream_body(r, a, &ans, msg_id);
        } else {
            message_json(&r->body, a, &ans, msg_id, 1);
        }
        nyx_buf_free(&ans.text);
        if (a->drop)
            r->cut = r->body.len / 2;
    }
    a->root = NULL;
    nyx_json_free(doc);
    return delay;
}

/* ---- HTTP ------------------------------------------------------------------
 */

typedef struct request {
    nyx_buf body;
    /* the answer, made before its delay and sent after it */
    struct MHD_Response *resp;
    int status, counted, streamed;
} request;

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    reply *r = cls;
    size_t end = r->cut ? r->cut : r->body.len;
    if (pos >= end)
        return r->cut ? MHD_CONTENT_READER_END_WITH_ERROR
                      : MHD_CONTENT_READER_END_OF_STREAM;
    /* stop at the next event boundary, so each event can be delayed */
    while (r->next_bound < r->nbounds && r->bounds[r->next_bound] <= pos)
        r->next_bound++;
    size_t until = r->next_bound < r->nbounds ? r->bounds[r->next_bound] : end;
    if (until > end)
        until = end;
    if (r->chunk_delay_ms && r->nbounds && r->waited != r->next_bound + 1) {
        r->waited = r->next_bound + 1;
        if (defer(r->f, r->conn, r->chunk_delay_ms))
            return 0; /* called again once resumed */
    }
    size_t n = until - (size_t)pos;
    if (n > max)
        n = max;
    memcpy(buf, r->body.data + pos, n);
    return (ssize_t)n;
}

static void free_reply(void *cls)
{
    reply *r = cls;
    nyx_buf_free(&r->body);
    free(r->bounds);
    free(r);
}

static void add_headers(struct MHD_Response *resp, reply *r, const analysis *a)
{
    char v[64];
    MHD_add_response_header(resp, "content-type", r->content_type);
    MHD_add_response_header(resp, "request-id", r->request_id);
    MHD_add_response_header(resp, "anthropic-organization-id",
                            "00000000-0000-4000-8000-00000000fa4e");
    MHD_add_response_header(resp, "anthropic-ratelimit-requests-limit", "4000");
    MHD_add_response_header(resp, "anthropic-ratelimit-requests-remaining",
                            "3999");
    MHD_add_response_header(resp, "anthropic-ratelimit-requests-reset",
                            "2026-01-01T00:00:00Z");
    MHD_add_response_header(resp, "anthropic-ratelimit-tokens-limit", "400000");
    MHD_add_response_header(resp, "anthropic-ratelimit-tokens-remaining",
                            "399000");
    MHD_add_response_header(resp, "anthropic-ratelimit-tokens-reset",
                            "2026-01-01T00:00:00Z");
    if (a->retry_after > 0) {
        snprintf(v, sizeof v, "%g", a->retry_after);
        MHD_add_response_header(resp, "retry-after", v);
    }
    if (a->retry_after_ms > 0) {
        snprintf(v, sizeof v, "%ld", a->retry_after_ms);
        MHD_add_response_header(resp, "retry-after-ms", v);
    }
    if (a->should_retry >= 0)
        MHD_add_response_header(resp, "x-should-retry",
                                a->should_retry ? "true" : "false");
}

int nyx_fake_stats(nyx_fake *f, nyx_buf *b)
{
    pthread_mutex_lock(&f->mu);
    int rc = nyx_buf_addf(b,
                          "{\"requests\":%ld,\"in_flight\":%ld,"
                          "\"peak_in_flight\":%ld,\"streams\":%ld,"
                          "\"cache_reads\":%ld,\"cache_writes\":%ld,"
                          "\"by_status\":{",
                          f->requests, f->in_flight, f->peak, f->streams,
                          f->cache_reads, f->cache_writes);
    int first = 1;
    for (int s = 0; s < 600; s++)
        if (f->by_status[s]) {
            rc |= nyx_buf_addf(b, "%s\"%d\":%ld", first ? "" : ",", s,
                               f->by_status[s]);
            first = 0;
        }
    rc |= nyx_buf_addf(b, "}}");
    pthread_mutex_unlock(&f->mu);
    return rc;
}

void nyx_fake_reset(nyx_fake *f)
{
    pthread_mutex_lock(&f->mu);
    f->requests = f->streams = f->cache_reads = f->cache_writes = 0;
    f->peak = f->in_flight;
    memset(f->by_status, 0, sizeof f->by_status);
    free(f->cache);
    f->cache = NULL;
    f->cache_cap = 0;
    f->ncounters = 0;
    pthread_mutex_unlock(&f->mu);
}

/* Counts the answer (once its delay is over, as a client sees it) and
 * queues it. */
static enum MHD_Result send_answer(nyx_fake *f, struct MHD_Connection *conn,
                                   request *req)
{
    pthread_mutex_lock(&f->mu);
    if (req->counted) {
        f->requests++;
        f->streams += req->streamed;
        if (req->status > 0 && req->status < 600)
            f->by_status[req->status]++;
    }
    pthread_mutex_unlock(&f->mu);
    enum MHD_Result ok =
        MHD_queue_response(conn, (unsigned)req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    req->counted = 0;
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    nyx_fake *f = cls;
    request *req = *con_cls;
    if (!req) { /* first call: headers only */
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        pthread_mutex_lock(&f->mu);
        if (++f->in_flight > f->peak)
            f->peak = f->in_flight;
        pthread_mutex_unlock(&f->mu);
        return MHD_YES;
    }
    if (*upload_size) {
        if (nyx_buf_add(&req->body, upload, *upload_size) < 0)
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (req->resp) /* resumed after its delay */
        return send_answer(f, conn, req);
    reply *r = calloc(1, sizeof *r);
    analysis *a = calloc(1, sizeof *a);
    if (!r || !a) {
        free(r);
        free(a);
        return MHD_NO;
    }
    r->f = f;
    r->a = a;
    r->conn = conn;
    a->should_retry = -1;
    r->content_type = "application/json";
    pthread_mutex_lock(&f->mu);
    r->serial = ++f->serial;
    pthread_mutex_unlock(&f->mu);
    snprintf(r->request_id, sizeof r->request_id, "req_fake%08x%012lu",
             f->o.seed, r->serial);
    int counted = 1;
    long delay = 0;
    if (!strcmp(url, "/v1/messages") && !strcmp(method, "POST")) {
        delay = messages(f, r, conn, &req->body, a);
    } else if (!strcmp(url, "/_fake/stats")) {
        r->status = 200;
        nyx_fake_stats(f, &r->body);
        counted = 0;
    } else if (!strcmp(url, "/_fake/reset") && !strcmp(method, "POST")) {
        nyx_fake_reset(f);
        r->status = 200;
        nyx_buf_addf(&r->body, "{\"reset\":true}");
        counted = 0;
    } else {
        error_body(r, 404, "not_found_error", "Not found");
    }
    req->status = r->status;
    req->counted = counted;
    req->streamed = a->stream && r->status == 200;
    int by_callback = a->stream || r->cut || r->chunk_delay_ms;
    req->resp = by_callback ? MHD_create_response_from_callback(
                                  a->stream ? MHD_SIZE_UNKNOWN : r->body.len,
                                  4096, read_body, r, free_reply)
                            : MHD_create_response_from_buffer(
                                  r->body.len, r->body.data ? r->body.data : "",
                                  MHD_RESPMEM_MUST_COPY);
    if (!req->resp) {
        free_reply(r);
        free(a);
        return MHD_NO;
    }
    add_headers(req->resp, r, a);
    free(a);
    r->a = NULL;
    if (!by_callback) /* the buffer was copied */
        free_reply(r);
    if (delay > 0 && defer(f, conn, delay))
        return MHD_YES; /* back here once resumed */
    return send_answer(f, conn, req);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    nyx_fake *f = cls;
    request *req = *con_cls;
    if (!req)
        return;
    if (req->resp)
        MHD_destroy_response(req->resp);
    nyx_buf_free(&req->body);
    free(req);
    *con_cls = NULL;
    pthread_mutex_lock(&f->mu);
    f->in_flight--;
    pthread_mutex_unlock(&f->mu);
}

static void free_fake(nyx_fake *f);

void nyx_fake_defaults(nyx_fake_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->seed = 1;
    o->cache_min_tokens = 1024;
    o->ttl_scale = 1;
    o->fractal_branching = 3;
    o->fractal_depth = 2;
}

static int parse_fractal(nyx_fake_opts *o, const char *v)
{
    char *end;
    long b = strtol(v, &end, 10), d = -1;
    if (*end == ',')
        d = strtol(end + 1, &end, 10);
    if (*end || b < 1 || b > 100 || d < 0 || d > 100)
        return -1;
    o->fractal_branching = (int)b;
    o->fractal_depth = (int)d;
    return 0;
}

int nyx_fake_env(nyx_fake_opts *o, nyx_err *err)
{
    const char *v = getenv("NYX_FAKE_FRACTAL");
    if (v && *v && parse_fractal(o, v) < 0) {
        nyx_errf(err,
                 "NYX_FAKE_FRACTAL='%.100s' is not B,D (branching 1-100, "
                 "depth 0-100), e.g. 3,6",
                 v);
        return -1;
    }
    v = getenv("NYX_FAKE_DELAY_MS");
    if (v && *v) {
        char *end;
        long ms = strtol(v, &end, 10);
        if (*end || ms < 0 || ms > 600000) {
            nyx_errf(err,
                     "NYX_FAKE_DELAY_MS='%.100s' is not a number of "
                     "milliseconds",
                     v);
            return -1;
        }
        o->delay_ms = (int)ms;
    }
    return 0;
}

int nyx_fake_fractal(nyx_fake_opts *o, const char *spec)
{
    return parse_fractal(o, spec);
}

nyx_fake *nyx_fake_start(const nyx_fake_opts *o, nyx_err *err)
{
    nyx_fake *f = calloc(1, sizeof *f);
    if (!f) {
        nyx_errf(err, "out of memory");
        return NULL;
    }
    f->o = *o;
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_init(&f->wmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->wcond, &ca);
    pthread_condattr_destroy(&ca);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1) {
        nyx_errf(err, "fake Claude: '%s' is not an IPv4 address", o->host);
        free(f);
        return NULL;
    }
    if (pthread_create(&f->waker, NULL, waker_main, f) != 0) {
        nyx_errf(err, "fake Claude: cannot start a thread");
        free_fake(f);
        return NULL;
    }
    f->waker_started = 1;
    /* a few threads polling every connection (epoll), not a thread per
     * connection: a slow answer is a suspended connection, not a thread */
    f->d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME,
        (uint16_t)o->port, NULL, NULL, handle, f, MHD_OPTION_SOCK_ADDR, &sa,
        MHD_OPTION_NOTIFY_COMPLETED, completed, f, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)20000, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)FAKE_THREADS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!f->d) {
        nyx_errf(err, "fake Claude: cannot listen on %s:%d", o->host, o->port);
        free_fake(f);
        return NULL;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    f->port = info ? info->port : o->port;
    return f;
}

int nyx_fake_port(const nyx_fake *f) { return f->port; }

/* Stops the waker (resuming every suspended connection: MHD must have
 * none at stop) and frees what the server holds. */
static void free_fake(nyx_fake *f)
{
    if (f->waker_started) {
        pthread_mutex_lock(&f->wmu);
        f->quit = 1;
        pthread_cond_signal(&f->wcond);
        pthread_mutex_unlock(&f->wmu);
        pthread_join(f->waker, NULL);
    }
    if (f->d)
        MHD_stop_daemon(f->d);
    pthread_cond_destroy(&f->wcond);
    pthread_mutex_destroy(&f->wmu);
    pthread_mutex_destroy(&f->mu);
    free(f->wakes);
    free(f->cache);
    free(f->counters);
    free(f);
}

void nyx_fake_stop(nyx_fake *f)
{
    if (!f)
        return;
    free_fake(f);
}
