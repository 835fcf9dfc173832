/* nyx.claude: the Claude client's Lua face, the I/O half of nyx.llm
 * (lua/nyx/llm.lua holds the policy: validation, caching, cost, logging).
 * request(body, opts) sends one Messages API request with its retries,
 * yielding the task meanwhile (blocking outside one), hands each streamed
 * event to opts.on_event inside the caller's coroutine, and returns what
 * happened. Where it sends: ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY; with
 * neither (or NYX_OFFLINE=1), the embedded offline model. */
#include "claude.h"
#include "fake_claude.h"
#include "json.h"
#include "lua_json.h"
#include "lua_nyx.h"
#include "lua_task.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_KEY "nyx.claude.client"
#define CALL_MT    "nyx.claude.call"

typedef struct client {
    nyx_claude *claude;
    nyx_fake *fake; /* the offline model, when it is the one answering */
    char base_url[512];
    int offline;
} client;

typedef struct call_box {
    nyx_waiter w; /* first: the box is where its waiter is */
    nyx_claude_call http;
    int done, ref;
    nyx_buf events; /* streamed, not yet handed to Lua: len,event,len,data */
    size_t events_read;
    nyx_buf scratch; /* the outcome's JSON and text, while it is built */
} call_box;

static int client_gc(lua_State *L)
{
    client *c = lua_touserdata(L, 1);
    nyx_claude_free(c->claude);
    c->claude = NULL;
    nyx_fake_stop(c->fake);
    c->fake = NULL;
    return 0;
}

/* Whether the script asked for JSON events on stderr (nyx.run.json). */
static int json_events(lua_State *L)
{
    int top = lua_gettop(L), on = 0;
    if (lua_getglobal(L, "nyx") == LUA_TTABLE &&
        lua_getfield(L, -1, "run") == LUA_TTABLE &&
        lua_getfield(L, -1, "json") != LUA_TNIL)
        on = lua_toboolean(L, -1);
    lua_settop(L, top);
    return on;
}

static int start_offline(lua_State *L, client *c, int forced)
{
    nyx_fake_opts o;
    nyx_fake_defaults(&o);
    nyx_err err;
    if (nyx_fake_env(&o, &err) < 0)
        return nyx_raise(L, "connection", err.msg);
    c->fake = nyx_fake_start(&o, &err);
    if (!c->fake)
        return nyx_raise(L, "connection", err.msg);
    c->offline = 1;
    snprintf(c->base_url, sizeof c->base_url, "http://127.0.0.1:%d",
             nyx_fake_port(c->fake));
    char msg[sizeof c->base_url + 128];
    if (forced)
        snprintf(msg, sizeof msg,
                 "offline: the offline model answers (a fake Claude on %s)",
                 c->base_url);
    else
        snprintf(msg, sizeof msg,
                 "no ANTHROPIC_API_KEY: the offline model answers (a fake "
                 "Claude on %s; set ANTHROPIC_API_KEY for the real one)",
                 c->base_url);
    /* with --json, stderr is a stream of JSON events (nyx.progress); the
     * message holds no quote or backslash */
    if (json_events(L))
        fprintf(stderr, "{\"event\":\"notice\",\"message\":\"%s\"}\n", msg);
    else
        fprintf(stderr, "nyx: %s\n", msg);
    return 0;
}

/* The client, made on first use. */
static client *get_client(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, CLIENT_KEY) == LUA_TUSERDATA) {
        client *c = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return c;
    }
    lua_pop(L, 1);
    client *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    nyx_gc_metatable(L, "nyx.claude.client", client_gc);
    luaL_setmetatable(L, "nyx.claude.client");
    const char *base = getenv("ANTHROPIC_BASE_URL");
    const char *key = getenv("ANTHROPIC_API_KEY");
    const char *offline = getenv("NYX_OFFLINE");
    base = base && *base ? base : NULL;
    key = key && *key ? key : NULL;
    int forced = offline && strcmp(offline, "1") == 0;
    if (forced || (!base && !key)) {
        start_offline(L, c, forced);
        key = "offline";
    } else if (!key) {
        lua_pushfstring(L,
                        "ANTHROPIC_BASE_URL is set (%s) but ANTHROPIC_API_KEY "
                        "is not: set the key, or unset ANTHROPIC_BASE_URL to "
                        "use the offline model",
                        base);
        return nyx_raise(L, "authentication_error", lua_tostring(L, -1)), NULL;
    } else {
        snprintf(c->base_url, sizeof c->base_url, "%s",
                 base ? base : "https://api.anthropic.com");
    }
    nyx_err err;
    c->claude = nyx_claude_new(nyx_sched_loop(L), c->base_url, key, &err);
    if (!c->claude)
        return nyx_raise(L, "connection", err.msg), NULL;
    lua_setfield(L, LUA_REGISTRYINDEX, CLIENT_KEY);
    return c;
}

/* ---- a call ------------------------------------------------------------ */

static void on_event(nyx_claude_call *http, const char *event, const char *data,
                     size_t len)
{
    call_box *b = http->arg;
    uint32_t elen = (uint32_t)strlen(event), dlen = (uint32_t)len;
    nyx_buf_add(&b->events, (const char *)&elen, sizeof elen);
    nyx_buf_add(&b->events, event, elen);
    nyx_buf_add(&b->events, (const char *)&dlen, sizeof dlen);
    nyx_buf_add(&b->events, data, dlen);
    nyx_waiter_done(&b->w);
}

static void on_done(nyx_claude_call *http)
{
    call_box *b = http->arg;
    b->done = 1;
    nyx_waiter_done(&b->w);
}

static int call_gc(lua_State *L)
{
    call_box *b = lua_touserdata(L, 1);
    nyx_claude_cancel(&b->http); /* frees it too, if it ran */
    nyx_buf_free(&b->events);
    nyx_buf_free(&b->scratch);
    return 0;
}

/* Milliseconds to the microsecond: short to print, exact enough. */
static double to_us(double ms)
{
    return (double)(long long)(ms * 1e3 + 0.5) / 1e3;
}

static void set_number(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, to_us(v));
    lua_setfield(L, -2, k);
}

static void set_integer(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_string(lua_State *L, const char *k, const char *v, size_t n)
{
    lua_pushlstring(L, v, n);
    lua_setfield(L, -2, k);
}

/* The attempts as the log's JSON: [{status, curl_code, ms, delay_ms,
 * request_id}, ...], zero and empty fields left out. */
static int attempts_json(nyx_buf *j, const nyx_claude_call *h)
{
    int rc = nyx_buf_add(j, "[", 1);
    for (int i = 0; i < h->nattempts; i++) {
        const nyx_claude_attempt *a = &h->attempts[i];
        rc |= nyx_buf_add(j, i ? ",{\"status\":" : "{\"status\":", i ? 11 : 10);
        rc |= nyx_json_add_integer(j, a->status);
        if (a->curl_code) {
            rc |= nyx_buf_add(j, ",\"curl_code\":", 13);
            rc |= nyx_json_add_integer(j, a->curl_code);
        }
        rc |= nyx_buf_add(j, ",\"ms\":", 6);
        rc |= nyx_json_add_number(j, to_us(a->ms));
        if (a->delay_ms > 0) {
            rc |= nyx_buf_add(j, ",\"delay_ms\":", 12);
            rc |= nyx_json_add_number(j, to_us(a->delay_ms));
        }
        if (a->request_id[0]) {
            rc |= nyx_buf_add(j, ",\"request_id\":", 14);
            rc |= nyx_json_quote(j, a->request_id, strlen(a->request_id));
        }
        rc |= nyx_buf_add(j, "}", 1);
    }
    return rc | nyx_buf_add(j, "]", 1);
}

static int is_text_block(lua_State *L)
{
    size_t n;
    const char *t = lua_getfield(L, -1, "type") == LUA_TSTRING
                        ? lua_tolstring(L, -1, &n)
                        : NULL;
    lua_pop(L, 1);
    return t && n == 4 && memcmp(t, "text", 4) == 0;
}

/* The text blocks of the response at the top joined, in the table below
 * it as text; left to Lua (not set) unless every one holds a string. */
static void set_text(lua_State *L, call_box *b)
{
    b->scratch.len = 0;
    if (lua_getfield(L, -1, "content") != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    int ok = 1;
    for (lua_Integer i = 1; ok; i++) {
        int t = lua_rawgeti(L, -1, i);
        if (t != LUA_TTABLE) {
            ok = t == LUA_TNIL;
            lua_pop(L, 1);
            break;
        }
        if (is_text_block(L)) {
            size_t n;
            ok = lua_getfield(L, -1, "text") == LUA_TSTRING;
            const char *s = ok ? lua_tolstring(L, -1, &n) : NULL;
            ok = ok && nyx_buf_add(&b->scratch, s, n) == 0;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* content */
    if (ok) {
        lua_pushlstring(L, b->scratch.data ? b->scratch.data : "",
                        b->scratch.len);
        lua_setfield(L, -3, "text");
    }
}

/* What happened, as a table: a 200's answer decoded (response, text),
 * other bodies as they came, the headers and attempts as JSON for the
 * log. stack: +1 */
static void push_outcome(lua_State *L, call_box *b)
{
    nyx_claude_call *h = &b->http;
    lua_createtable(L, 0, 12);
    set_integer(L, "status", h->status);
    if (h->status == 200 && !h->stream && h->response.len) {
        int top = lua_gettop(L);
        if (nyx_json_decode(L, h->response.data, h->response.len, 0) == 1 &&
            lua_type(L, -1) == LUA_TTABLE) {
            set_text(L, b);
            lua_setfield(L, -2, "response");
        }
        lua_settop(L, top);
    } else if (h->response.len) {
        set_string(L, "body", h->response.data, h->response.len);
    }
    if (h->request_id[0])
        set_string(L, "request_id", h->request_id, strlen(h->request_id));
    if (h->headers.len) {
        nyx_json_push_raw(L, h->headers.data, h->headers.len);
        lua_setfield(L, -2, "headers");
    }
    if (h->error[0])
        set_string(L, "error", h->error, strlen(h->error));
    lua_pushboolean(L, h->timed_out);
    lua_setfield(L, -2, "timed_out");
    set_integer(L, "retries", h->retries);
    set_integer(L, "events", h->events);
    set_number(L, "latency_ms", h->finished_ms - h->started_ms);
    b->scratch.len = 0;
    if (attempts_json(&b->scratch, h) != 0)
        luaL_error(L, "out of memory");
    nyx_json_push_raw(L, b->scratch.data, b->scratch.len);
    lua_setfield(L, -2, "attempts");
}

/* The waiting task is cancelled: the request is aborted at once (its
 * connection closed, a retry's timer stopped); the box goes with the GC. */
static int call_cancel(lua_State *L, nyx_waiter *w)
{
    call_box *b = (call_box *)w;
    nyx_claude_cancel(&b->http);
    nyx_unref(L, b->ref);
    b->ref = LUA_NOREF;
    return 1;
}

/* An error from on_event: the call stops here, and so does the request. */
static int abandon(lua_State *L, call_box *b)
{
    nyx_claude_cancel(&b->http);
    nyx_unref(L, b->ref);
    b->ref = LUA_NOREF;
    return lua_error(L);
}

/* stack: 1 body, 2 opts, 3 box (uservalue 1: body, 2: on_event) */
static int request_k(lua_State *L, int status, lua_KContext ctx)
{
    call_box *b = (call_box *)ctx;
    if (status != LUA_OK && status != LUA_YIELD)
        return abandon(L, b); /* on_event raised after it had waited */
    while (b->events_read < b->events.len) {
        const char *p = b->events.data + b->events_read;
        uint32_t elen, dlen;
        memcpy(&elen, p, sizeof elen);
        const char *event = p + sizeof elen;
        memcpy(&dlen, event + elen, sizeof dlen);
        const char *data = event + elen + sizeof dlen;
        b->events_read += 2 * sizeof elen + elen + dlen;
        lua_getiuservalue(L, 3, 2);
        lua_pushlstring(L, event, elen);
        lua_pushlstring(L, data, dlen);
        /* on_event may wait too; an error in it cancels the request */
        if (lua_pcallk(L, 2, 0, 0, ctx, request_k) != LUA_OK)
            return abandon(L, b);
    }
    if (!b->done) {
        b->w.done = 0;
        return nyx_await(L, &b->w, ctx, request_k);
    }
    push_outcome(L, b);
    nyx_unref(L, b->ref);
    b->ref = LUA_NOREF;
    return 1;
}

static double opt_number(lua_State *L, int t, const char *k, double def)
{
    double v = def;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "bad option '%s' to 'request' (number expected)", k);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* request(body, opts): opts = {stream=, max_retries=, timeout=(seconds),
 * beta=, on_event=function(event, data)}. */
static int claude_request(lua_State *L)
{
    size_t len;
    luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    client *c = get_client(L);
    call_box *b = lua_newuserdatauv(L, sizeof *b, 2);
    memset(b, 0, sizeof *b);
    b->ref = LUA_NOREF;
    luaL_setmetatable(L, CALL_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 3, 1); /* the body lives as long as the call */
    lua_getfield(L, 2, "on_event");
    lua_setiuservalue(L, 3, 2);
    lua_getfield(L, 2, "stream");
    b->http.stream = lua_toboolean(L, -1);
    lua_getfield(L, 2, "beta");
    b->http.beta = lua_tostring(L, -1); /* kept by opts, on the stack */
    lua_pop(L, 2);
    b->http.body = lua_tostring(L, 1);
    b->http.body_len = len;
    b->http.max_retries = (int)opt_number(L, 2, "max_retries", 2);
    b->http.timeout_ms = opt_number(L, 2, "timeout", 600) * 1e3;
    b->http.on_event = on_event;
    b->http.on_done = on_done;
    b->http.arg = b;
    b->w.cancel = call_cancel;
    nyx_err err = {{0}};
    if (nyx_claude_start(c->claude, &b->http, &err) < 0)
        return nyx_raise(L, "connection", err.msg);
    lua_pushvalue(L, 3);
    b->ref = nyx_ref(L); /* in flight: kept whatever happens to the caller */
    return nyx_await(L, &b->w, (lua_KContext)b, request_k);
}

/* ---- the request's body ------------------------------------------------ */

/* The request's fields that are nyx's own, never sent (llm.lua's list). */
static int nyx_field(const char *k, size_t n)
{
    static const char *const own[] = {"tree",  "agent", "on_text",
                                      "cache", "beta",  "template"};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (strlen(own[i]) == n && memcmp(own[i], k, n) == 0)
            return 1;
    return 0;
}

static int key_is(const char *k, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(k, name, n) == 0;
}

/* Appends "key": and the value at the top, popped. */
static void add_member(lua_State *L, nyx_buf *b, const char *k, size_t n)
{
    int rc = nyx_buf_add(b, b->len > 1 ? "," : "", b->len > 1);
    rc |= nyx_json_quote(b, k, n) | nyx_buf_add(b, ":", 1);
    rc |= nyx_json_add_value(L, -1, b);
    if (rc != 0)
        luaL_error(L, "out of memory");
    lua_pop(L, 1);
}

/* body(request, model, max_tokens, stream): the Messages API body of a
 * request — nyx's own fields left out, model and max_tokens when the
 * request has none, stream = true when stream is — and the messages'
 * JSON, a slice of it (the log's prompt_text). Nothing when the request
 * has a key that is not a string (llm.lua then encodes it as it did). */
static int claude_body(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int stream = lua_toboolean(L, 4);
    lua_settop(L, 3);
    nyx_buf *b = nyx_json_push_buf(L); /* 4 */
    size_t from = 0, to = 0, n;
    if (nyx_buf_add(b, "{", 1) != 0)
        return luaL_error(L, "out of memory");
    static const char *const first[] = {"model", "max_tokens"};
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, 1, first[i]);
        if (!lua_toboolean(L, -1)) { /* nil or false: the default */
            lua_pop(L, 1);
            lua_pushvalue(L, 2 + i);
        }
        add_member(L, b, first[i], strlen(first[i]));
    }
    if (stream) {
        lua_pushboolean(L, 1);
        add_member(L, b, "stream", 6);
    }
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return 0;
        const char *k = lua_tolstring(L, -2, &n);
        if (nyx_field(k, n) || key_is(k, n, "model") ||
            key_is(k, n, "max_tokens") || (stream && key_is(k, n, "stream"))) {
            lua_pop(L, 1);
            continue;
        }
        int messages = key_is(k, n, "messages");
        if (messages)
            from = b->len + (b->len > 1) + n + 3; /* after ,"messages": */
        add_member(L, b, k, n);
        if (messages)
            to = b->len;
    }
    if (nyx_buf_add(b, "}", 1) != 0)
        return luaL_error(L, "out of memory");
    lua_pushlstring(L, b->data, b->len);
    if (to > from)
        lua_pushlstring(L, b->data + from, to - from);
    else
        lua_pushnil(L);
    nyx_buf_free(b);
    return 2;
}

/* Counts the cache_control at the top (popped) into n and ttl. */
static void mark(lua_State *L, lua_Integer *n, lua_Integer *ttl)
{
    if (lua_type(L, -1) == LUA_TTABLE) {
        size_t len;
        const char *t = lua_getfield(L, -1, "ttl") == LUA_TSTRING
                            ? lua_tolstring(L, -1, &len)
                            : NULL;
        lua_Integer secs =
            t && len == 2 && memcmp(t, "1h", 2) == 0 ? 3600 : 300;
        lua_pop(L, 1);
        *n += 1;
        *ttl = secs > *ttl ? secs : *ttl;
    }
    lua_pop(L, 1);
}

/* The breakpoints among the blocks of the list at the top (popped). */
static void mark_blocks(lua_State *L, lua_Integer *n, lua_Integer *ttl)
{
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_Integer len = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= len; i++) {
            if (lua_geti(L, -1, i) == LUA_TTABLE) {
                lua_getfield(L, -1, "cache_control");
                mark(L, n, ttl);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* breakpoints(body): how many cache_control breakpoints the body has
 * where the API takes them (the top level, tools, system blocks, message
 * content blocks) and the longest TTL in seconds (nil: none). Nothing when
 * a message is not a table (llm.lua then counts, and fails, as it did). */
static int claude_breakpoints(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = 0, ttl = 0;
    lua_getfield(L, 1, "cache_control");
    mark(L, &n, &ttl);
    lua_getfield(L, 1, "tools");
    mark_blocks(L, &n, &ttl);
    lua_getfield(L, 1, "system");
    mark_blocks(L, &n, &ttl);
    lua_getfield(L, 1, "messages");
    lua_Integer len = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= len; i++) {
        if (lua_geti(L, -1, i) != LUA_TTABLE)
            return 0;
        lua_getfield(L, -1, "content");
        mark_blocks(L, &n, &ttl);
        lua_pop(L, 1);
    }
    lua_pushinteger(L, n);
    if (ttl)
        lua_pushinteger(L, ttl);
    else
        lua_pushnil(L);
    return 2;
}

static int claude_endpoint(lua_State *L)
{
    client *c = get_client(L);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, c->base_url);
    lua_setfield(L, -2, "base_url");
    lua_pushboolean(L, c->offline);
    lua_setfield(L, -2, "offline");
    return 1;
}

/* The offline model's counters (nil when calls go elsewhere). */
static int claude_fake_stats(lua_State *L)
{
    client *c = get_client(L);
    if (!c->fake)
        return 0;
    nyx_buf b = {0};
    nyx_fake_stats(c->fake, &b);
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_getfield(L, -1, "nyx.core");
    lua_getfield(L, -1, "json_decode");
    lua_pushlstring(L, b.data ? b.data : "{}", b.len);
    nyx_buf_free(&b);
    lua_call(L, 1, 1);
    return 1;
}

static int claude_fake_reset(lua_State *L)
{
    client *c = get_client(L);
    if (c->fake)
        nyx_fake_reset(c->fake);
    return 0;
}

static int claude_in_flight(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, CLIENT_KEY);
    client *c = lua_touserdata(L, -1);
    lua_pushinteger(L, c && c->claude ? nyx_claude_in_flight(c->claude) : 0);
    return 1;
}

int luaopen_nyx_claude(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"request", claude_request},
                                     {"endpoint", claude_endpoint},
                                     {"body", claude_body},
                                     {"breakpoints", claude_breakpoints},
                                     {"in_flight", claude_in_flight},
                                     {"fake_stats", claude_fake_stats},
                                     {"fake_reset", claude_fake_reset},
                                     {NULL, NULL}};
    nyx_gc_metatable(L, CALL_MT, call_gc);
    luaL_newlib(L, funcs);
    return 1;
}
