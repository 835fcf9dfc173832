/* nyx.db.listen, nyx.db.unlisten and nyx.db.notify: PostgreSQL's
 * LISTEN/NOTIFY on the event loop. One connection of its own (a clone of
 * the default one, opened by the first listen) LISTENs on every channel
 * asked for; its socket is watched by the loop, so a notification is read
 * when it arrives (PQconsumeInput, PQnotifies: no polling) and each
 * function listening on its channel runs as a task of its own, from the
 * scheduler's hook. A lost connection says so in one line and is made
 * again a second later (notifications sent meanwhile are lost). The
 * socket does not keep the loop waiting (nyx_loop_keep): a script that
 * waits for nothing else still ends, and a deadlock is still seen. */
#include "lua_listen.h"

#include "lua_nyx.h"
#include "lua_task.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_MS 1000.0

/* A notification read from the socket, not yet handed to Lua. */
typedef struct note {
    struct note *next;
    int pid;
    char channel[64];
    char payload[]; /* NUL-terminated */
} note;

typedef struct listener {
    lua_State *L; /* the main thread */
    nyx_pg *pg;   /* NULL: not connected */
    int fd;       /* watched, or -1 */
    note *head, *tail;
    nyx_timer *retry;
    int reconnect; /* the retry timer fired: connect again */
    int failures;  /* reconnections failed in a row (said once) */
} listener;

static char LISTENER_KEY; /* registry: the listener */
static char CHANNELS_KEY; /* registry: {channel = {fn, ...}} */

static int listen_hook(lua_State *L, void *arg);

/* At the state's end: the connection and what was not handed out go (the
 * loop goes on its own). */
static int listener_gc(lua_State *L)
{
    listener *l = lua_touserdata(L, 1);
    nyx_pg_close(l->pg);
    l->pg = NULL;
    while (l->head) {
        note *q = l->head;
        l->head = q->next;
        free(q);
    }
    l->tail = NULL;
    return 0;
}

/* The state's listener, made (with its hook) on first use when create;
 * else NULL if there is none. */
static listener *get_listener(lua_State *L, int create)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LISTENER_KEY) == LUA_TUSERDATA) {
        listener *l = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return l;
    }
    lua_pop(L, 1);
    if (!create)
        return NULL;
    listener *l = lua_newuserdatauv(L, sizeof *l, 0);
    memset(l, 0, sizeof *l);
    nyx_gc_metatable(L, "nyx.db.listener", listener_gc);
    luaL_setmetatable(L, "nyx.db.listener");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LISTENER_KEY);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    l->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    l->fd = -1;
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CHANNELS_KEY);
    nyx_sched_add_hook(L, listen_hook, l);
    return l;
}

static void drop_connection(listener *l)
{
    if (l->fd >= 0)
        nyx_loop_watch(nyx_sched_loop(l->L), l->fd, 0, NULL, NULL);
    l->fd = -1;
    nyx_pg_close(l->pg);
    l->pg = NULL;
}

static void retry_fired(nyx_loop *loop, void *arg)
{
    listener *l = arg;
    (void)loop;
    l->retry = NULL;
    l->reconnect = 1;
}

static void lost(listener *l)
{
    char why[256];
    snprintf(why, sizeof why, "%s",
             l->pg ? nyx_pg_error_message(l->pg) : "closed");
    nyx_one_line(why, sizeof why);
    fprintf(stderr,
            "nyx: the listening connection was lost (%s); listening again "
            "in 1 s\n",
            *why ? why : "no reason given");
    drop_connection(l);
    l->retry = nyx_timer_start(nyx_sched_loop(l->L), RETRY_MS, retry_fired, l);
}

/* Keeps the notifications read so far, in order; -1 if out of memory. */
static int take_notes(listener *l)
{
    nyx_pg_note n;
    while (nyx_pg_next_note(l->pg, &n)) {
        size_t len = strlen(n.payload);
        note *q = malloc(sizeof *q + len + 1);
        if (!q) {
            nyx_pg_note_free(&n);
            return -1;
        }
        q->next = NULL;
        q->pid = n.pid;
        snprintf(q->channel, sizeof q->channel, "%s", n.channel);
        memcpy(q->payload, n.payload, len + 1);
        nyx_pg_note_free(&n);
        if (l->tail)
            l->tail->next = q;
        else
            l->head = q;
        l->tail = q;
    }
    return 0;
}

static void listen_io(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    listener *l = arg;
    (void)loop, (void)fd, (void)events;
    if (nyx_pg_consume(l->pg) < 0 || !nyx_pg_ok(l->pg)) {
        take_notes(l); /* what arrived before it went */
        lost(l);
        return;
    }
    if (take_notes(l) < 0)
        fprintf(stderr, "nyx: out of memory: a notification was lost\n");
}

/* LISTEN on channel (checked: a plain identifier). Returns 0, or -1 with
 * the reason in err. */
static int send_listen(listener *l, const char *verb, const char *channel,
                       nyx_err *err)
{
    char sql[96];
    snprintf(sql, sizeof sql, "%s %s", verb, channel);
    return nyx_pg_run(l->pg, sql, 0, NULL, verb, err);
}

/* Connects (a clone of pg) and LISTENs on every channel with functions.
 * stack: 0. Returns 0, or -1 with the reason in err. */
static int connect_listener(lua_State *L, listener *l, nyx_pg *pg, nyx_err *err)
{
    l->pg = nyx_pg_clone(pg, err);
    if (!l->pg)
        return -1;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CHANNELS_KEY);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        if (send_listen(l, "LISTEN", lua_tostring(L, -1), err) < 0) {
            lua_pop(L, 2);
            drop_connection(l);
            return -1;
        }
    }
    lua_pop(L, 1);
    l->fd = nyx_pg_socket(l->pg);
    nyx_loop *loop = nyx_sched_loop(L);
    if (nyx_loop_watch(loop, l->fd, NYX_READ, listen_io, l) < 0) {
        nyx_errf(err, "cannot watch the listening connection's socket");
        l->fd = -1;
        drop_connection(l);
        return -1;
    }
    nyx_loop_keep(loop, l->fd, 0);
    /* a notification may have come with LISTEN's own result */
    if (take_notes(l) < 0) {
        nyx_errf(err, "out of memory");
        return -1;
    }
    return 0;
}

/* Hands each notification read to the functions on its channel, a task
 * each: fn(payload, channel, pid). stack: 0 */
static int dispatch(lua_State *L, listener *l)
{
    int worked = 0;
    while (l->head) {
        note *q = l->head;
        l->head = q->next;
        if (!l->head)
            l->tail = NULL;
        lua_rawgetp(L, LUA_REGISTRYINDEX, &CHANNELS_KEY);
        lua_getfield(L, -1, q->channel);
        lua_pushstring(L, q->payload);
        lua_pushstring(L, q->channel);
        lua_pushinteger(L, q->pid);
        free(q); /* nothing of it is needed any more */
        int fns = lua_gettop(L) - 3;
        for (lua_Integer i = 1;
             lua_istable(L, fns) && lua_rawgeti(L, fns, i) == LUA_TFUNCTION;
             i++) {
            lua_getglobal(L, "require");
            lua_pushliteral(L, "nyx.task");
            lua_call(L, 1, 1);
            lua_getfield(L, -1, "spawn");
            lua_replace(L, -2);
            lua_insert(L, -2); /* spawn, fn */
            for (int k = 1; k <= 3; k++)
                lua_pushvalue(L, fns + k);
            lua_call(L, 4, 0);
            worked = 1;
        }
        lua_settop(L, fns - 2);
    }
    return worked;
}

/* The scheduler's hook, once per round: connect again when it is time,
 * then dispatch. */
static int listen_hook(lua_State *L, void *arg)
{
    listener *l = arg;
    if (l->reconnect) {
        l->reconnect = 0;
        nyx_err err;
        if (connect_listener(L, l, nyx_db_default_pg(L), &err) < 0) {
            if (l->failures++ == 0)
                fprintf(stderr,
                        "nyx: listening again failed (%s); trying every "
                        "second\n",
                        err.msg);
            l->retry =
                nyx_timer_start(nyx_sched_loop(L), RETRY_MS, retry_fired, l);
        } else {
            if (l->failures)
                fprintf(stderr, "nyx: listening again\n");
            l->failures = 0;
        }
    }
    return l->head ? dispatch(L, l) : 0;
}

const char *nyx_listen_check_channel(lua_State *L, int idx)
{
    size_t len;
    const char *ch = luaL_checklstring(L, idx, &len);
    int ok = len > 0 && len < 64 && !(ch[0] >= '0' && ch[0] <= '9');
    for (size_t i = 0; ok && i < len; i++)
        ok = (ch[i] >= 'a' && ch[i] <= 'z') || (ch[i] >= '0' && ch[i] <= '9') ||
             ch[i] == '_';
    if (!ok)
        luaL_argerror(L, idx,
                      "channel must be a lowercase identifier of letters, "
                      "digits and _ (at most 63), e.g. \"nyx_control\"");
    return ch;
}

/* listen(channel, fn): from now on, each notification on channel runs
 * fn(payload, channel, pid) as a task. The same fn twice is one. */
int nyx_db_listen(lua_State *L)
{
    const char *ch = nyx_listen_check_channel(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    listener *l = get_listener(L, 1);
    nyx_err err;
    if (!l->pg && !l->retry &&
        connect_listener(L, l, nyx_db_default_pg(L), &err) < 0)
        return nyx_raise(L, "connection", err.msg);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CHANNELS_KEY);
    if (lua_getfield(L, 3, ch) != LUA_TTABLE) {
        if (l->pg && send_listen(l, "LISTEN", ch, &err) < 0)
            return nyx_raise(L, "connection", err.msg);
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, 3, ch);
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, 4);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 4, i);
        if (lua_rawequal(L, -1, 2))
            return 0;
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 2);
    lua_rawseti(L, 4, n + 1);
    return 0;
}

/* unlisten(channel): no function runs on channel any more. */
int nyx_db_unlisten(lua_State *L)
{
    const char *ch = nyx_listen_check_channel(L, 1);
    listener *l = get_listener(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CHANNELS_KEY);
    if (lua_getfield(L, -1, ch) != LUA_TTABLE)
        return 0;
    lua_pushnil(L);
    lua_setfield(L, -3, ch);
    nyx_err err;
    if (l->pg && send_listen(l, "UNLISTEN", ch, &err) < 0)
        return nyx_raise(L, "connection", err.msg);
    return 0;
}

void nyx_listen_close(lua_State *L)
{
    listener *l = get_listener(L, 0);
    if (!l)
        return;
    drop_connection(l);
    nyx_timer_stop(nyx_sched_loop(L), l->retry);
    l->retry = NULL;
    l->reconnect = 0;
}
