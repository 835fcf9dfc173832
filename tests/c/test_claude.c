/* The Claude client service, without Lua: the retry rules as a table, the
 * backoff bounds, and real calls through the event loop to the fake
 * server: success, a retried 429, a stream, a cancelled call. */
#include "claude.h"
#include "fake_claude.h"
#include "test.h"

static void test_retry_rules(void)
{
    long yes[] = {0, 408, 409, 429, 500, 502, 503, 504, 529};
    long no[] = {200, 400, 401, 402, 403, 404, 413, 422};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        CHECK_INT(nyx_claude_retryable(yes[i], -1), 1);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        CHECK_INT(nyx_claude_retryable(no[i], -1), 0);
    CHECK_INT(nyx_claude_retryable(500, 0), 0); /* x-should-retry: false */
    CHECK_INT(nyx_claude_retryable(400, 1), 1); /* x-should-retry: true */
    CHECK_INT(nyx_claude_retryable(200, 1), 0); /* never a success */
}

static void test_backoff(void)
{
    CHECK(nyx_claude_backoff_ms(0, -1, 0) == 500);
    CHECK(nyx_claude_backoff_ms(0, -1, 0.999999) > 375);
    CHECK(nyx_claude_backoff_ms(1, -1, 0) == 1000);
    CHECK(nyx_claude_backoff_ms(3, -1, 0) == 4000);
    CHECK(nyx_claude_backoff_ms(4, -1, 0) == 8000); /* the cap */
    CHECK(nyx_claude_backoff_ms(9, -1, 0.5) == 7000);
    CHECK(nyx_claude_backoff_ms(2, 1500, 0.3) == 1500); /* the server's */
    CHECK(nyx_claude_backoff_ms(0, 61000, 0) == 500);   /* not past 60 s */
    CHECK(nyx_claude_backoff_ms(0, 0, 0) == 500);       /* nor zero */
}

typedef struct outcome {
    int done, events;
} outcome;

static void on_event(nyx_claude_call *call, const char *event, const char *data,
                     size_t len)
{
    ((outcome *)call->arg)->events++;
}

static void on_done(nyx_claude_call *call) { ((outcome *)call->arg)->done = 1; }

static void run(nyx_loop *loop, outcome *o)
{
    double until = nyx_now_ms() + 10000;
    while (!o->done && nyx_now_ms() < until)
        nyx_loop_run_once(loop, 100);
}

static void call(nyx_claude *c, nyx_loop *loop, nyx_claude_call *k,
                 const char *body, int stream, outcome *o)
{
    memset(k, 0, sizeof *k);
    memset(o, 0, sizeof *o);
    k->body = body;
    k->body_len = strlen(body);
    k->stream = stream;
    k->max_retries = 2;
    k->timeout_ms = 5000;
    k->on_event = on_event;
    k->on_done = on_done;
    k->arg = o;
    nyx_err err;
    CHECK_INT(nyx_claude_start(c, k, &err), 0);
    run(loop, o);
    CHECK(o->done);
}

static void test_live(void)
{
    nyx_fake_opts opts;
    nyx_fake_defaults(&opts);
    nyx_err err;
    nyx_fake *f = nyx_fake_start(&opts, &err);
    CHECK(f != NULL);
    nyx_loop *loop = nyx_loop_new();
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/", nyx_fake_port(f));
    nyx_claude *c = nyx_claude_new(loop, base, "test-key", &err);
    char want[80]; /* the trailing slash goes, /v1/messages comes */
    snprintf(want, sizeof want, "http://127.0.0.1:%d/v1/messages",
             nyx_fake_port(f));
    CHECK_STR(nyx_claude_url(c), want);
    nyx_claude_call k;
    outcome o;

    call(c, loop, &k,
         "{\"model\":\"m\",\"max_tokens\":50,\"messages\":[{\"role\":"
         "\"user\",\"content\":\"hi\"}]}",
         0, &o);
    CHECK_INT(k.status, 200);
    CHECK_HAS(k.response.data, "\"type\":\"message\"");
    CHECK_HAS(k.request_id, "req_fake");
    CHECK_HAS(k.headers.data,
              "\"anthropic-ratelimit-requests-limit\":\"4000\"");
    CHECK_INT(k.nattempts, 1);
    CHECK_INT(nyx_claude_in_flight(c), 0);
    nyx_claude_call_free(&k);

    call(c, loop, &k,
         "{\"model\":\"m\",\"max_tokens\":50,\"messages\":[{\"role\":"
         "\"user\",\"content\":\"[[fake:status=429,times=1,"
         "retry_after_ms=20]]\"}]}",
         0, &o);
    CHECK_INT(k.status, 200);
    CHECK_INT(k.retries, 1);
    CHECK_INT(k.attempts[0].status, 429);
    CHECK(k.attempts[0].delay_ms == 20);
    nyx_claude_call_free(&k);

    call(c, loop, &k,
         "{\"model\":\"m\",\"max_tokens\":50,\"stream\":true,"
         "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
         1, &o);
    CHECK_INT(k.status, 200);
    CHECK(o.events >= 6); /* start, block start, ping, deltas, stops */
    CHECK_INT(k.events, o.events);
    CHECK_INT((int)k.response.len, 0); /* a stream's body goes to events */
    nyx_claude_call_free(&k);

    /* a call cancelled in flight never reports */
    memset(&k, 0, sizeof k);
    memset(&o, 0, sizeof o);
    const char *slow =
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":"
        "\"user\",\"content\":\"[[fake:delay_ms=300]]\"}]}";
    k.body = slow;
    k.body_len = strlen(slow);
    k.timeout_ms = 5000;
    k.on_done = on_done;
    k.arg = &o;
    CHECK_INT(nyx_claude_start(c, &k, &err), 0);
    nyx_loop_run_once(loop, 20);
    CHECK_INT(nyx_claude_in_flight(c), 1);
    nyx_claude_cancel(&k);
    CHECK_INT(nyx_claude_in_flight(c), 0);
    for (int i = 0; i < 10; i++)
        nyx_loop_run_once(loop, 50);
    CHECK_INT(o.done, 0);

    nyx_claude_free(c);
    nyx_loop_free(loop);
    nyx_fake_stop(f);
}

/* The answers strategies parse, seen as the client gets them: a verdict
 * (failing a long unsplit goal, forced once by a marker), a vote, a
 * malformed plan once. The JSON answer is quoted inside the body. */
static void test_roles(void)
{
    nyx_fake_opts opts;
    nyx_fake_defaults(&opts);
    nyx_err err;
    nyx_fake *f = nyx_fake_start(&opts, &err);
    CHECK(f != NULL);
    nyx_loop *loop = nyx_loop_new();
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", nyx_fake_port(f));
    nyx_claude *c = nyx_claude_new(loop, base, "test-key", &err);
    nyx_claude_call k;
    outcome o;
#define ASK(system, text)                                                      \
    "{\"model\":\"m\",\"max_tokens\":200,\"system\":\"" system                 \
    "\",\"messages\":[{\"role\":\"user\",\"content\":\"" text "\"}]}"
    static const struct {
        const char *body, *want;
    } cases[] = {
        {ASK("Verdict as JSON.", "Goal: a haiku"), "{\\\"pass\\\": true"},
        {ASK("Verdict as JSON.", "Goal: a report on the history of printing "
                                 "presses in Europe and Asia"),
         "{\\\"pass\\\": false"},
        {ASK("Verdict as JSON.", "Goal: a haiku [[fake:verdict=fail,times=1]]"),
         "{\\\"pass\\\": false"},
        {ASK("Verdict as JSON.", "Goal: a haiku [[fake:verdict=fail,times=1]]"),
         "{\\\"pass\\\": true"},
        {ASK("Verdict as JSON.", "Goal: a haiku [[fake:quality=0.42]]"),
         "{\\\"pass\\\": false, \\\"quality\\\": 0.42,"},
        {ASK("Vote as JSON.", "Proposal 1: a\\nProposal 2: b[[fake:choice=2]]"),
         "{\\\"choice\\\": 2,"},
        {ASK("Vote as JSON.", "Proposal 1: a"), "{\\\"choice\\\": 1,"},
        {ASK("Subtasks as JSON.", "Goal: x [[fake:plan=malformed,times=1]]"),
         "\"I would split this into a few parts"},
        {ASK("Subtasks as JSON.", "Goal: x [[fake:plan=malformed,times=1]]"),
         "\\\"subtasks\\\": [{"},
    };
#undef ASK
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        call(c, loop, &k, cases[i].body, 0, &o);
        CHECK_INT(k.status, 200);
        CHECK_HAS(k.response.data, cases[i].want);
        nyx_claude_call_free(&k);
    }
    nyx_claude_free(c);
    nyx_loop_free(loop);
    nyx_fake_stop(f);
}

int main(void)
{
    RUN(test_retry_rules);
    RUN(test_backoff);
    RUN(test_live);
    RUN(test_roles);
    return test_done();
}
