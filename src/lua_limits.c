/* nyx.limits: the limits scripts cannot break. A pool counts the slots of
 * work under a limit (agents active in the process, agents active under
 * one orchestrator); acquire() takes a slot or waits for one, in FIFO
 * order, without spinning; release() gives it back and hands it to the
 * longest waiter. depth() is the recursion check. The runtime
 * (lua/nyx/runtime.lua) takes a slot before an agent works and gives it
 * back while the agent only waits for its children. */
#include "lua_nyx.h"
#include "lua_task.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define POOL_MT "nyx.limits.pool"
#define WAIT_MT "nyx.limits.wait"

typedef struct pool pool;

/* A task waiting for a slot, linked into its pool's queue. Lives on the
 * waiting task's stack; if the task goes away first, its __gc unlinks it
 * (or gives back the slot it was granted and never took). */
typedef struct slot_wait {
    nyx_waiter w;
    pool *pool;
    struct slot_wait *prev, *next;
    int queued, granted, taken;
} slot_wait;

struct pool {
    lua_Integer limit, active, peak, waiting, granted_total;
    slot_wait *head, *tail;
    char name[64];
};

static pool *check_pool(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, POOL_MT);
}

static void unlink_wait(pool *p, slot_wait *sw)
{
    if (sw->prev)
        sw->prev->next = sw->next;
    else
        p->head = sw->next;
    if (sw->next)
        sw->next->prev = sw->prev;
    else
        p->tail = sw->prev;
    sw->prev = sw->next = NULL;
    sw->queued = 0;
    p->waiting--;
}

static void take(pool *p)
{
    p->active++;
    p->granted_total++;
    if (p->active > p->peak)
        p->peak = p->active;
}

/* Hands free slots to the waiters, oldest first. */
static void grant(pool *p)
{
    while (p->head && p->active < p->limit) {
        slot_wait *sw = p->head;
        unlink_wait(p, sw);
        take(p);
        sw->granted = 1;
        nyx_waiter_done(&sw->w);
    }
}

static int wait_gc(lua_State *L)
{
    slot_wait *sw = lua_touserdata(L, 1);
    if (!sw->pool)
        return 0;
    if (sw->queued)
        unlink_wait(sw->pool, sw);
    else if (sw->granted && !sw->taken) { /* granted to a task now gone */
        sw->pool->active--;
        grant(sw->pool);
    }
    sw->pool = NULL;
    return 0;
}

/* The waiting task is cancelled: out of the queue (a slot granted and not
 * yet taken is not waited for: the wait completes and acquire_k takes it,
 * so the task's code gives it back). */
static int wait_cancel(lua_State *L, nyx_waiter *w)
{
    slot_wait *sw = (slot_wait *)w; /* w is its first member */
    (void)L;
    if (!sw->queued)
        return 0;
    unlink_wait(sw->pool, sw);
    return 1;
}

static int acquire_k(lua_State *L, int status, lua_KContext ctx)
{
    slot_wait *sw = (slot_wait *)ctx;
    sw->taken = 1;
    lua_pushboolean(L, 1);
    return 1;
}

/* pool:acquire([front]): takes a slot, waiting (in FIFO order) while none
 * is free; returns true. front: wait ahead of the queue (for a task taking
 * back the slot it gave up while it waited, so it does not queue behind
 * work that has not started). */
static int pool_acquire(lua_State *L)
{
    pool *p = check_pool(L, 1);
    int front = lua_toboolean(L, 2);
    if ((front || !p->head) && p->active < p->limit) {
        take(p);
        lua_pushboolean(L, 1);
        return 1;
    }
    slot_wait *sw = lua_newuserdatauv(L, sizeof *sw, 1);
    memset(sw, 0, sizeof *sw);
    luaL_setmetatable(L, WAIT_MT);
    lua_pushvalue(L, 1); /* the pool outlives its waiters */
    lua_setiuservalue(L, -2, 1);
    sw->pool = p;
    sw->queued = 1;
    sw->w.cancel = wait_cancel;
    if (front) {
        sw->next = p->head;
        if (p->head)
            p->head->prev = sw;
        else
            p->tail = sw;
        p->head = sw;
    } else {
        sw->prev = p->tail;
        if (p->tail)
            p->tail->next = sw;
        else
            p->head = sw;
        p->tail = sw;
    }
    p->waiting++;
    return nyx_await(L, &sw->w, (lua_KContext)sw, acquire_k);
}

/* pool:try_acquire(): takes a free slot if there is one, without waiting;
 * returns whether it did. */
static int pool_try_acquire(lua_State *L)
{
    pool *p = check_pool(L, 1);
    int ok = !p->head && p->active < p->limit;
    if (ok)
        take(p);
    lua_pushboolean(L, ok);
    return 1;
}

/* pool:release(): gives a slot back. */
static int pool_release(lua_State *L)
{
    pool *p = check_pool(L, 1);
    if (p->active <= 0)
        return luaL_error(L, "release of %s: no slot is taken", p->name);
    p->active--;
    grant(p);
    return 0;
}

static lua_Integer check_limit(lua_State *L, int idx)
{
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 1, idx, "a limit must be at least 1");
    return n;
}

/* pool:set_limit(n): a new limit; a higher one wakes waiters at once, a
 * lower one lets the active finish and grants nothing until under it. */
static int pool_set_limit(lua_State *L)
{
    pool *p = check_pool(L, 1);
    p->limit = check_limit(L, 2);
    grant(p);
    return 0;
}

/* pool:stats(): {limit, active, peak, waiting, granted}. */
static int pool_stats(lua_State *L)
{
    pool *p = check_pool(L, 1);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, p->limit);
    lua_setfield(L, -2, "limit");
    lua_pushinteger(L, p->active);
    lua_setfield(L, -2, "active");
    lua_pushinteger(L, p->peak);
    lua_setfield(L, -2, "peak");
    lua_pushinteger(L, p->waiting);
    lua_setfield(L, -2, "waiting");
    lua_pushinteger(L, p->granted_total);
    lua_setfield(L, -2, "granted");
    return 1;
}

/* pool:waiting(): how many tasks wait for a slot (stats() without the
 * table, for callers that ask often). */
static int pool_waiting(lua_State *L)
{
    pool *p = check_pool(L, 1);
    lua_pushinteger(L, p->waiting);
    return 1;
}

/* pool:reset_peak(): the peak starts again from the active count. */
static int pool_reset_peak(lua_State *L)
{
    pool *p = check_pool(L, 1);
    p->peak = p->active;
    return 0;
}

static int pool_tostring(lua_State *L)
{
    pool *p = check_pool(L, 1);
    lua_pushfstring(L, "nyx.limits.pool %s (%I of %I active, %I waiting)",
                    p->name, p->active, p->limit, p->waiting);
    return 1;
}

/* pool(limit [, name]): a new pool of `limit` slots. */
static int limits_pool(lua_State *L)
{
    lua_Integer limit = check_limit(L, 1);
    const char *name = luaL_optstring(L, 2, "a pool");
    pool *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    p->limit = limit;
    strncpy(p->name, name, sizeof p->name - 1);
    luaL_setmetatable(L, POOL_MT);
    return 1;
}

/* depth(depth, limit, setting): nil when a node at `depth` is allowed
 * under `limit`, else the refusal's message naming the setting. */
static int limits_depth(lua_State *L)
{
    lua_Integer depth = luaL_checkinteger(L, 1);
    lua_Integer limit = luaL_checkinteger(L, 2);
    const char *setting = luaL_optstring(L, 3, "max_recursion_depth");
    if (depth <= limit)
        return 0;
    lua_pushfstring(L,
                    "recursion limit: depth %I is deeper than %s (%I); "
                    "answer the subtask directly or raise the limit",
                    depth, setting, limit);
    return 1;
}

/* ---- events ----------------------------------------------------------- */

/* An event: tasks wait() for it (optionally with a timeout) and set()
 * wakes every task waiting at that moment. What a mailbox waits on. */
#define EVENT_MT "nyx.limits.event"
#define EWAIT_MT "nyx.limits.eventwait"

typedef struct ev_wait {
    nyx_waiter w;
    struct ev_wait **owner; /* the event's list, NULL when not on it */
    struct ev_wait *next, *prev;
    nyx_timer *timer;
    nyx_loop *loop;
    int fired; /* 1: set, 0: timed out */
} ev_wait;

typedef struct event {
    ev_wait *head;
} event;

static void ev_unlink(ev_wait *ew)
{
    if (!ew->owner)
        return;
    if (ew->prev)
        ew->prev->next = ew->next;
    else
        *ew->owner = ew->next;
    if (ew->next)
        ew->next->prev = ew->prev;
    ew->owner = NULL;
    ew->next = ew->prev = NULL;
}

static void ev_timeout(nyx_loop *loop, void *arg)
{
    ev_wait *ew = arg;
    ew->timer = NULL;
    ev_unlink(ew);
    nyx_waiter_done(&ew->w);
}

static int ewait_gc(lua_State *L)
{
    ev_wait *ew = lua_touserdata(L, 1);
    ev_unlink(ew);
    nyx_timer_stop(ew->loop, ew->timer);
    ew->timer = NULL;
    return 0;
}

static int ewait_cancel(lua_State *L, nyx_waiter *w)
{
    ev_wait *ew = (ev_wait *)w; /* w is its first member */
    (void)L;
    ev_unlink(ew);
    nyx_timer_stop(ew->loop, ew->timer);
    ew->timer = NULL;
    return 1;
}

static int event_wait_k(lua_State *L, int status, lua_KContext ctx)
{
    ev_wait *ew = (ev_wait *)ctx;
    lua_pushboolean(L, ew->fired);
    return 1;
}

/* event:wait([seconds]): true when set() woke it, false after the
 * timeout. */
static int event_wait(lua_State *L)
{
    event *e = luaL_checkudata(L, 1, EVENT_MT);
    double timeout = luaL_optnumber(L, 2, -1);
    ev_wait *ew = lua_newuserdatauv(L, sizeof *ew, 1);
    memset(ew, 0, sizeof *ew);
    luaL_setmetatable(L, EWAIT_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    ew->loop = nyx_sched_loop(L);
    ew->w.cancel = ewait_cancel;
    ew->owner = &e->head;
    ew->next = e->head;
    if (e->head)
        e->head->prev = ew;
    e->head = ew;
    if (timeout >= 0)
        ew->timer = nyx_timer_start(ew->loop, timeout * 1000, ev_timeout, ew);
    return nyx_await(L, &ew->w, (lua_KContext)ew, event_wait_k);
}

/* event:set(): wakes every task waiting now; returns how many. */
static int event_set(lua_State *L)
{
    event *e = luaL_checkudata(L, 1, EVENT_MT);
    int n = 0;
    while (e->head) {
        ev_wait *ew = e->head;
        ev_unlink(ew);
        nyx_timer_stop(ew->loop, ew->timer);
        ew->timer = NULL;
        ew->fired = 1;
        nyx_waiter_done(&ew->w);
        n++;
    }
    lua_pushinteger(L, n);
    return 1;
}

static int limits_event(lua_State *L)
{
    event *e = lua_newuserdatauv(L, sizeof *e, 0);
    e->head = NULL;
    luaL_setmetatable(L, EVENT_MT);
    return 1;
}

/* ---- SIGINT and SIGTERM ----------------------------------------------- */

/* The handler only notes the signal and wakes the loop through a pipe; a
 * scheduler hook then runs the Lua handler in a task of its own, so it can
 * write to the database. A second signal while it runs ends nyx at once. */
typedef struct trap {
    int fds[2];
    int ref; /* the Lua handler */
    int watched, running;
} trap;

static volatile sig_atomic_t caught, handling;
static int trap_wfd = -1;

static void on_signal(int sig)
{
    if (handling)
        _exit(128 + sig);
    caught = sig;
    int saved = errno;
    if (trap_wfd >= 0 && write(trap_wfd, "", 1) < 0) {
        /* the pipe is full: a wake-up is already pending */
    }
    errno = saved;
}

static void trap_io(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

static int trap_hook(lua_State *L, void *arg)
{
    trap *t = arg;
    if (!caught || t->running || t->ref == LUA_NOREF)
        return 0;
    int sig = caught;
    caught = 0;
    handling = 1;
    t->running = 1;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "nyx.task");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "spawn");
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    lua_pushstring(L, sig == SIGINT ? "SIGINT" : "SIGTERM");
    lua_call(L, 2, 0);
    lua_pop(L, 1);
    return 1;
}

static trap *get_trap(lua_State *L)
{
    static char TRAP_KEY;
    int fresh;
    trap *t = nyx_state_block(L, &TRAP_KEY, sizeof *t, &fresh);
    if (fresh) {
        t->ref = LUA_NOREF;
        t->fds[0] = t->fds[1] = -1;
    }
    return t;
}

/* trap(fn): on SIGINT or SIGTERM, fn(signal_name) runs in a task of its
 * own (it decides what to stop and how to exit); a second signal while it
 * runs exits at once with 128 + the signal. trap(nil): the default
 * behaviour again. */
static int limits_trap(lua_State *L)
{
    trap *t = get_trap(L);
    if (lua_isnoneornil(L, 1)) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        nyx_unref(L, t->ref);
        t->ref = LUA_NOREF;
        return 0;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (t->fds[0] < 0) {
        if (pipe2(t->fds, O_CLOEXEC | O_NONBLOCK) < 0)
            return luaL_error(L, "trap: cannot make a pipe: %s",
                              strerror(errno));
        trap_wfd = t->fds[1];
        nyx_sched_add_hook(L, trap_hook, t);
    }
    if (!t->watched) {
        nyx_loop_watch(nyx_sched_loop(L), t->fds[0], NYX_READ, trap_io, t);
        t->watched = 1;
    }
    nyx_unref(L, t->ref);
    lua_pushvalue(L, 1);
    t->ref = nyx_ref(L);
    caught = handling = 0;
    t->running = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

static const luaL_Reg pool_methods[] = {
    {"acquire", pool_acquire},       {"try_acquire", pool_try_acquire},
    {"release", pool_release},       {"set_limit", pool_set_limit},
    {"stats", pool_stats},           {"waiting", pool_waiting},
    {"reset_peak", pool_reset_peak}, {NULL, NULL}};

static const luaL_Reg event_methods[] = {
    {"wait", event_wait}, {"set", event_set}, {NULL, NULL}};

static const luaL_Reg module_funcs[] = {{"pool", limits_pool},
                                        {"event", limits_event},
                                        {"depth", limits_depth},
                                        {"trap", limits_trap},
                                        {NULL, NULL}};

int luaopen_nyx_limits(lua_State *L)
{
    luaL_newmetatable(L, POOL_MT);
    luaL_newlib(L, pool_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, pool_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, EVENT_MT);
    luaL_newlib(L, event_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    nyx_gc_metatable(L, WAIT_MT, wait_gc);
    nyx_gc_metatable(L, EWAIT_MT, ewait_gc);
    luaL_newlib(L, module_funcs);
    return 1;
}
