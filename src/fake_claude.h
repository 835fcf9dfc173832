/* A fake Claude: an HTTP server on loopback that speaks the Messages API
 * (POST /v1/messages) as the docs define it: bodies, headers, errors, SSE
 * streams, simulated prompt caching; with a configurable delay and
 * scripted faults. Deterministic for a given seed. It is NYX's embedded
 * default model when no API key is set, and what the tests talk to.
 *
 * Faults and behaviours are scripted by a marker in the request's text
 * (the system prompt or the last message): [[fake:key=value,...]]
 *   status=N          answer with that HTTP status and its error body
 *   times=N           faults (status, malformed, drop, stream_error, delay_ms)
 *                     hold only for the first N requests with this marker
 *                     (verdict=, quality=, plan=: see there)
 *   id=NAME           key of the times counter (default: the marker text)
 *   retry_after=S     retry-after header (seconds); retry_after_ms=MS
 *   should_retry=B    x-should-retry header (true/false)
 *   delay_ms=N        wait before answering
 *   tokens=N          answer with exactly N output tokens
 *   malformed         a 200 whose body is not valid JSON
 *   drop              close the connection half way through the body
 *   stream_error=T    in a stream, an error event of type T after a delta
 *   chunk_delay_ms=N  in a stream, wait before each event
 *   tool_use[=N]      answer with a tool_use block (the first tool, input
 *                     {"query": the text}) while fewer than N (1) earlier
 *                     assistant turns used a tool; a last message holding
 *                     tool_result blocks is answered "Tool results: [..]"
 *   tool=NAME         the tool to use instead of the first
 *   verdict=pass|fail a verdict prompt's answer passes or fails (quality in
 *                     that default range); with times=N, for the first N
 *                     verdicts answered with this id, then it passes
 *   quality=Q         a verdict's quality (0..1); it passes if Q >= 0.6
 *                     unless verdict= says; times=N as for verdict=
 *   choice=K          a vote prompt's answer chooses proposal K
 *   plan=malformed    a decomposition prompt is answered in prose, not
 *                     JSON; with times=N, for the first N plans answered
 *                     with this id (other requests do not count)
 *   plan=atomic       a decomposition prompt is answered {"atomic": true}
 * (A request answered with an error, malformed or cut off, counts for
 * status/malformed/drop/... but not as a verdict or a plan.)
 *
 * What a prompt asks for, when it mentions JSON: a verdict if it also says
 * "verdict" (system or last message, any case): {"pass": P, "quality": Q,
 * "reasons": "..."}, failing (Q in 0.20-0.50) when the last message's
 * "Goal: " line is longer than 60 characters and holds neither "(part "
 * nor ": step " (a goal that should have been split) and the text after
 * a "Result:" line is 600 characters or less, else passing (Q in
 * 0.70-0.99); else a vote if it says "vote": {"choice": K, "reasons":
 * "..."}, K = 1 + hash % n among the n lines "Proposal <digit>..." of the
 * last message (1 if none); else a plan if it says "subtask". Other
 * prompts get prose, which names the first words of a "Goal: " line.
 * Q and K come from the request's hash: the same request, the same answer.
 *
 * A decomposition prompt (it mentions subtasks and JSON) whose last line
 * is "DEPTH: k" is the fractal workload: see fractal_* below.
 *
 * Other routes: GET /_fake/stats (requests, in flight, peak in flight, by
 * status, cache reads and writes), POST /_fake/reset. */
#ifndef NYX_FAKE_CLAUDE_H
#define NYX_FAKE_CLAUDE_H

#include "util.h"

typedef struct nyx_fake nyx_fake;

typedef struct nyx_fake_opts {
    const char *host;     /* address to bind: "127.0.0.1" */
    int port;             /* 0: an ephemeral port */
    int delay_ms;         /* before every answer */
    unsigned seed;        /* answers depend on it and the request only */
    int cache_min_tokens; /* shorter prefixes are not cached (1024) */
    double ttl_scale;     /* cache TTLs times this (1: 5 min and 1 h) */
    /* The fractal workload: a decomposition prompt whose last line is
     * "DEPTH: k" gets {"subtasks": [...]} with fractal_branching subtasks
     * while k < fractal_depth, else {"answer": "..."} (3 and 2). */
    int fractal_branching, fractal_depth;
} nyx_fake_opts;

void nyx_fake_defaults(nyx_fake_opts *o);
/* Options from the environment: NYX_FAKE_FRACTAL="B,D" and
 * NYX_FAKE_DELAY_MS. Returns -1 with a message on a bad value. */
int nyx_fake_env(nyx_fake_opts *o, nyx_err *err);
/* Sets the fractal options from "B,D"; -1 if spec is not that. */
int nyx_fake_fractal(nyx_fake_opts *o, const char *spec);
nyx_fake *nyx_fake_start(const nyx_fake_opts *o, nyx_err *err);
int nyx_fake_port(const nyx_fake *f);
void nyx_fake_stop(nyx_fake *f);

/* What GET /_fake/stats answers, appended to b as JSON. */
int nyx_fake_stats(nyx_fake *f, nyx_buf *b);
/* What POST /_fake/reset does: counters, cache and fault counts to zero. */
void nyx_fake_reset(nyx_fake *f);

#endif
