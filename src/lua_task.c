/* The scheduler and nyx.task. Each task is a Lua thread; a slow call
 * yields NYX_YIELD from it (nyx_await) and the task waits until its waiter
 * is done. coroutine.resume and coroutine.wrap are replaced so that a
 * NYX_YIELD from a user's own coroutine travels up to the task (or, where
 * the caller cannot yield, is waited out right there): a user's coroutines
 * keep working inside tasks, as in OpenResty. */
#include "lua_task.h"

#include "lua_nyx.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char NYX_YIELD[] = "nyx.yield";

#define TASK_MT  "nyx.task"
#define WAIT_MT  "nyx.task.waitlink"
#define SLEEP_MT "nyx.task.sleep"
#define UNOBSERVED                                                             \
    "nyx.task.unobserved" /* registry: failed, not waited for                  \
                           */

#if LUA_VERSION_RELEASE_NUM >= 50406
#define close_thread(co, from) lua_closethread(co, from)
#else
#define close_thread(co, from) lua_resetthread(co)
#endif

enum { T_READY, T_RUNNING, T_WAITING, T_DONE, T_FAILED };
static const char *const STATES[] = {"ready", "running", "waiting", "done",
                                     "failed"};

typedef struct nyx_sched nyx_sched;

/* A caller waiting for a task to finish, linked into the task's list. */
typedef struct waitlink {
    nyx_waiter w;
    nyx_task *target;
    struct waitlink *prev, *next;
} waitlink;

struct nyx_task {
    nyx_sched *sched;
    lua_State *co; /* NULL once finished */
    int ref;       /* registry ref to the userdata while unfinished */
    int state, nargs, woken;
    nyx_waiter *waiting_on; /* what its NYX_YIELD waits for */
    int cancel_ref;         /* the error a cancelled task raises, or NOREF */
    int let_go;             /* its waiter was let go: raise on resume */
    int started;            /* resumed at least once */
    unsigned long id;
    nyx_task *next_ready;
    waitlink *waiters;
};

typedef struct hook {
    nyx_sched_hook fn;
    void *arg;
} hook;

struct nyx_sched {
    lua_State *L; /* the main thread */
    nyx_loop *loop;
    nyx_task *current;
    nyx_task *ready_head, *ready_tail;
    int live; /* tasks not finished */
    int held; /* background work the run waits for (nyx_sched_hold) */
    unsigned long next_id;
    hook hooks[8];
    int nhooks;
};

/* Every thread of the state shares the main thread's extra space: the
 * scheduler is one pointer away from any of them. */
static nyx_sched *sched_of(lua_State *L)
{
    return *(nyx_sched **)lua_getextraspace(L);
}

nyx_loop *nyx_sched_loop(lua_State *L) { return sched_of(L)->loop; }

/* ---- running tasks ------------------------------------------------------ */

static void enqueue(nyx_sched *s, nyx_task *t)
{
    t->state = T_READY;
    t->next_ready = NULL;
    if (s->ready_tail)
        s->ready_tail->next_ready = t;
    else
        s->ready_head = t;
    s->ready_tail = t;
}

void nyx_waiter_done(nyx_waiter *w)
{
    w->done = 1;
    nyx_task *t = w->task;
    w->task = NULL;
    if (!t || t->waiting_on != w)
        return; /* a stale waiter: its task has moved on */
    t->waiting_on = NULL;
    if (t->state == T_WAITING)
        enqueue(t->sched, t);
    else if (t->state == T_RUNNING) /* done before it got to yield */
        t->woken = 1;
}

/* Moves the finished task's results (or error) into a table kept with its
 * handle, and releases the thread. stack: 0 */
static void keep_results(nyx_sched *s, nyx_task *t, int status, int nres)
{
    lua_State *L = s->L, *co = t->co;
    int cancelled = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    if (status == LUA_OK) {
        int first = lua_gettop(co) - nres + 1;
        lua_createtable(co, nres, 2);
        for (int i = 0; i < nres; i++) {
            lua_pushvalue(co, first + i);
            lua_rawseti(co, -2, i + 1);
        }
        lua_pushinteger(co, nres);
        lua_setfield(co, -2, "n");
        lua_pushboolean(co, 1);
        lua_setfield(co, -2, "ok");
        lua_xmove(co, L, 1);
    } else {
        lua_createtable(L, 0, 3);
        lua_pushvalue(co, -1);
        lua_xmove(co, L, 1);
        if (t->cancel_ref != LUA_NOREF) { /* ended by its cancellation: */
            lua_rawgeti(L, LUA_REGISTRYINDEX, t->cancel_ref); /* whoever */
            cancelled = lua_rawequal(L, -1, -2); /* cancelled it knows */
            lua_pop(L, 1);
        }
        lua_setfield(L, -2, "error");
        nyx_push_traceback(L, co, lua_gettop(co), 0);
        lua_setfield(L, -2, "traceback");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "ok");
        close_thread(co, L); /* runs its pending <close> variables */
    }
    lua_setiuservalue(L, -2, 2);
    lua_pushnil(L);
    lua_setiuservalue(L, -2, 1); /* the thread can go now */
    if (status != LUA_OK && !t->waiters && !cancelled) {
        lua_getfield(L, LUA_REGISTRYINDEX, UNOBSERVED);
        lua_pushvalue(L, -2);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void finish(nyx_sched *s, nyx_task *t, int status, int nres)
{
    keep_results(s, t, status, nres);
    t->state = status == LUA_OK ? T_DONE : T_FAILED;
    t->co = NULL;
    for (waitlink *wl = t->waiters; wl; wl = t->waiters) {
        t->waiters = wl->next;
        wl->prev = wl->next = NULL;
        wl->target = NULL;
        nyx_waiter_done(&wl->w);
    }
    s->live--;
    nyx_unref(s->L, t->cancel_ref);
    t->cancel_ref = LUA_NOREF;
    nyx_unref(s->L, t->ref); /* the handle may be collected now */
    t->ref = LUA_NOREF;
}

static void step(nyx_sched *s, nyx_task *t)
{
    lua_State *co = t->co;
    int nargs = t->nargs, nres;
    t->nargs = 0;
    if (!t->started && t->cancel_ref != LUA_NOREF) { /* cancelled before */
        lua_settop(co, 0);                           /* it ever ran */
        lua_rawgeti(co, LUA_REGISTRYINDEX, t->cancel_ref);
        finish(s, t, LUA_ERRRUN, 0);
        return;
    }
    t->started = 1;
    nyx_task *prev = s->current;
    s->current = t;
    t->state = T_RUNNING;
    int status = lua_resume(co, s->L, nargs, &nres);
    s->current = prev;
    if (status != LUA_YIELD) {
        finish(s, t, status, nres);
        return;
    }
    int ours = nres == 1 && lua_touserdata(co, -1) == NYX_YIELD;
    lua_pop(co, nres);
    if (ours && !t->woken) {
        t->state = T_WAITING;
    } else { /* woken already, or a plain coroutine.yield: go again */
        t->woken = 0;
        enqueue(s, t);
    }
}

/* Runs the tasks that were ready when it started; returns how many. */
/* Runs the tasks ready now (not those they wake). A long run of them (a
 * committed batch wakes hundreds) polls the loop each POLL_MS: requests
 * they started go on the wire and answers that arrived are read while the
 * rest run, instead of waiting for the whole run; tasks woken meanwhile
 * run in the next round. */
#define POLL_MS 1.0
static int run_ready(nyx_sched *s)
{
    nyx_task *last = s->ready_tail;
    int n = 0;
    double polled = nyx_now_ms();
    while (s->ready_head) {
        nyx_task *t = s->ready_head;
        s->ready_head = t->next_ready;
        if (!s->ready_head)
            s->ready_tail = NULL;
        step(s, t);
        n++;
        if (t == last)
            break;
        double now = nyx_now_ms();
        if (now - polled >= POLL_MS) {
            nyx_loop_run_once(s->loop, 0);
            polled = nyx_now_ms();
        }
    }
    return n;
}

static int call_hook(lua_State *L)
{
    hook *h = lua_touserdata(L, 1);
    lua_pushboolean(L, h->fn(L, h->arg));
    return 1;
}

static int run_hooks(nyx_sched *s)
{
    int worked = 0;
    for (int i = 0; i < s->nhooks; i++) {
        lua_State *L = s->L;
        lua_pushcfunction(L, call_hook);
        lua_pushlightuserdata(L, &s->hooks[i]);
        if (nyx_pcall(L, 1, 1) != LUA_OK) {
            fprintf(stderr, "nyx: %s\n", lua_tostring(L, -1));
            lua_pop(L, 1);
            continue;
        }
        worked |= lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    return worked;
}

void nyx_sched_add_hook(lua_State *L, nyx_sched_hook fn, void *arg)
{
    nyx_sched *s = sched_of(L);
    if (s->nhooks < 8)
        s->hooks[s->nhooks++] = (hook){fn, arg};
}

/* Runs tasks, hooks and the loop until pred(arg); -1 if that can never
 * happen (nothing ready, nothing to wait for). */
static int run_until(nyx_sched *s, int (*pred)(void *), void *arg)
{
    while (!pred(arg)) {
        /* what the ready tasks start (tasks they spawn, rows they log)
         * runs in the same turn, so a cascade ends up in one batch; a
         * bound keeps the loop's fds served */
        for (int rounds = 0; s->ready_head && rounds < 64; rounds++)
            run_ready(s);
        if (pred(arg))
            break;
        int worked = run_hooks(s);
        if (pred(arg))
            break;
        if (s->ready_head || worked)
            nyx_loop_run_once(s->loop, 0);
        else if (nyx_loop_run_once(s->loop, -1) < 0)
            return -1;
        /* what the loop finished may have freed a hook's resource (a log
         * batch committed): the rows queued meanwhile go now, and
         * PostgreSQL writes them while the tasks the loop woke run */
        run_hooks(s);
    }
    return 0;
}

static int waiter_is_done(void *w) { return ((nyx_waiter *)w)->done; }
static int task_is_woken(void *t) { return ((nyx_task *)t)->woken; }
static int task_is_over(void *t) { return ((nyx_task *)t)->state >= T_DONE; }
static int none_live(void *s)
{
    return ((nyx_sched *)s)->live == 0 && ((nyx_sched *)s)->held == 0;
}

void nyx_sched_hold(lua_State *L, int delta) { sched_of(L)->held += delta; }

static int deadlock(lua_State *L)
{
    return luaL_error(L, "deadlock: waiting for something that can never "
                         "happen (no task can run and nothing is pending)");
}

/* Raises the error the cancelled task t was given. */
static int raise_cancel(lua_State *L, nyx_task *t)
{
    t->let_go = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->cancel_ref);
    return lua_error(L);
}

/* Lets w go if it can be: 1 if it was (its work is stopped). */
static int let_go(lua_State *L, nyx_waiter *w)
{
    if (!w->cancel || !w->cancel(L, w))
        return 0;
    w->task = NULL;
    w->done = 1;
    return 1;
}

/* Where every wait of a task resumes: a cancelled task raises, after its
 * binding has finished the wait when the work was not let go. */
static int await_k(lua_State *L, int status, lua_KContext ctx)
{
    nyx_task *t = sched_of(L)->current;
    nyx_waiter *w = (nyx_waiter *)ctx; /* alive: on this coroutine's stack */
    if (t->cancel_ref != LUA_NOREF && t->let_go)
        return raise_cancel(L, t);
    int n = w->k(L, status, w->kctx); /* may wait again */
    if (t->cancel_ref != LUA_NOREF)
        return raise_cancel(L, t);
    return n;
}

int nyx_await(lua_State *L, nyx_waiter *w, lua_KContext ctx, lua_KFunction k)
{
    nyx_sched *s = sched_of(L);
    nyx_task *t = s->current;
    if (t && t->cancel_ref != LUA_NOREF && !w->done && let_go(L, w))
        return raise_cancel(L, t);
    if (!w->done && t && lua_isyieldable(L)) {
        w->task = t;
        t->waiting_on = w;
        w->k = k;
        w->kctx = ctx;
        lua_pushlightuserdata(L, (void *)NYX_YIELD);
        return lua_yieldk(L, 1, (lua_KContext)w, await_k);
    }
    w->task = NULL;
    if (run_until(s, waiter_is_done, w) < 0)
        return deadlock(L);
    int n = k(L, LUA_OK, ctx);
    if (t && t == s->current && t->cancel_ref != LUA_NOREF)
        return raise_cancel(L, t);
    return n;
}

int nyx_task_cancel(lua_State *L, int idx)
{
    nyx_task *t = luaL_checkudata(L, idx, TASK_MT);
    if (t->state >= T_DONE || t->cancel_ref != LUA_NOREF) {
        lua_pop(L, 1);
        return 0;
    }
    t->cancel_ref = nyx_ref(L);
    nyx_waiter *w = t->waiting_on;
    if (t->state == T_WAITING && w && let_go(L, w)) {
        t->waiting_on = NULL;
        t->let_go = 1;
        enqueue(t->sched, t);
    }
    return 1;
}

/* ---- coroutine.resume and coroutine.wrap -------------------------------- */

/* Resumes co with narg values from L's top. Returns the number of results
 * (moved to L), -1 with the error on L, or -2 when co waits for nyx and L
 * must yield NYX_YIELD (pushed) up to the task. */
static int resume_step(lua_State *L, lua_State *co, int narg)
{
    for (;;) {
        int nres;
        if (!lua_checkstack(co, narg)) {
            lua_pushliteral(L, "too many arguments to resume");
            return -1;
        }
        lua_xmove(L, co, narg);
        int status = lua_resume(co, L, narg, &nres);
        if (status != LUA_OK && status != LUA_YIELD) {
            lua_xmove(co, L, 1);
            return -1;
        }
        if (status == LUA_YIELD && nres == 1 &&
            lua_touserdata(co, -1) == NYX_YIELD) {
            lua_pop(co, 1);
            nyx_sched *s = sched_of(L);
            nyx_task *t = s->current;
            if (t && lua_isyieldable(L)) {
                lua_pushlightuserdata(L, (void *)NYX_YIELD);
                return -2;
            }
            /* cannot pass it up: wait for it here */
            if (!t || run_until(s, task_is_woken, t) < 0) {
                lua_pushliteral(L, "deadlock: a coroutine waits for "
                                   "something that can never happen");
                return -1;
            }
            t->woken = 0;
            narg = 0;
            continue;
        }
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
}

static int resume_k(lua_State *L, int status, lua_KContext ctx);

static int resume_go(lua_State *L, lua_State *co, int narg)
{
    int r = resume_step(L, co, narg);
    if (r == -2)
        return lua_yieldk(L, 1, 0, resume_k);
    lua_pushboolean(L, r >= 0);
    lua_insert(L, r >= 0 ? -(r + 1) : -2);
    return r >= 0 ? r + 1 : 2;
}

static int resume_k(lua_State *L, int status, lua_KContext ctx)
{
    lua_settop(L, 1);
    return resume_go(L, lua_tothread(L, 1), 0);
}

static int co_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    return resume_go(L, co, lua_gettop(L) - 1);
}

static int wrap_k(lua_State *L, int status, lua_KContext ctx);

static int wrap_go(lua_State *L, int narg)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int r = resume_step(L, co, narg);
    if (r == -2)
        return lua_yieldk(L, 1, 0, wrap_k);
    if (r >= 0)
        return r;
    int stat = lua_status(co);
    if (stat != LUA_OK && stat != LUA_YIELD) { /* as lua's auxwrap */
        stat = close_thread(co, L);
        lua_xmove(co, L, 1);
    }
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

static int wrap_k(lua_State *L, int status, lua_KContext ctx)
{
    lua_settop(L, 0);
    return wrap_go(L, 0);
}

static int wrap_call(lua_State *L) { return wrap_go(L, lua_gettop(L)); }

static int co_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, wrap_call, 1);
    return 1;
}

/* ---- nyx.task ----------------------------------------------------------- */

static nyx_task *check_task(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, TASK_MT);
}

/* spawn(fn, ...): a new task, ready to run; returns its handle. */
static int task_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    nyx_sched *s = sched_of(L);
    int nargs = lua_gettop(L) - 1;
    nyx_task *t = lua_newuserdatauv(L, sizeof *t, 2);
    memset(t, 0, sizeof *t);
    t->sched = s;
    t->id = ++s->next_id;
    t->ref = LUA_NOREF;
    t->cancel_ref = LUA_NOREF;
    luaL_setmetatable(L, TASK_MT);
    t->co = lua_newthread(L);
    lua_setiuservalue(L, -2, 1);
    lua_insert(L, 1); /* handle, fn, args... */
    if (!lua_checkstack(t->co, nargs + 1))
        return luaL_error(L, "too many arguments to spawn");
    lua_xmove(L, t->co, nargs + 1);
    t->nargs = nargs;
    lua_pushvalue(L, 1);
    t->ref = nyx_ref(L);
    s->live++;
    enqueue(s, t);
    return 1;
}

/* Somebody looked at the task's outcome: its failure is not lost. */
static void observed(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_getfield(L, LUA_REGISTRYINDEX, UNOBSERVED);
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* Pushes the results of a finished task: true, ... or false, error. */
static int push_results(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    observed(L, idx);
    lua_getiuservalue(L, idx, 2);
    int results = lua_gettop(L);
    lua_getfield(L, results, "ok");
    if (!lua_toboolean(L, -1)) {
        lua_getfield(L, results, "error");
        return 2;
    }
    lua_getfield(L, results, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (int i = 1; i <= n; i++)
        lua_rawgeti(L, results, i);
    return n + 1;
}

/* Takes the waiter out of its target's list (if it is still on it). */
static void unlink_waitlink(waitlink *wl)
{
    if (!wl->target)
        return;
    if (wl->prev)
        wl->prev->next = wl->next;
    else
        wl->target->waiters = wl->next;
    if (wl->next)
        wl->next->prev = wl->prev;
    wl->target = NULL;
    wl->prev = wl->next = NULL;
}

static int waitlink_gc(lua_State *L)
{
    unlink_waitlink(lua_touserdata(L, 1)); /* the waiting side went first */
    return 0;
}

static int waitlink_cancel(lua_State *L, nyx_waiter *w)
{
    (void)L;
    unlink_waitlink((waitlink *)w); /* w is its first member */
    return 1;
}

/* Links a waiter into t's list, boxed on the stack. stack: +1 */
static waitlink *link_waiter(lua_State *L, nyx_task *t)
{
    if (t == sched_of(L)->current)
        luaL_error(L, "a task cannot wait for itself");
    waitlink *wl = lua_newuserdatauv(L, sizeof *wl, 0);
    memset(wl, 0, sizeof *wl);
    luaL_setmetatable(L, WAIT_MT);
    wl->w.cancel = waitlink_cancel;
    wl->target = t;
    wl->next = t->waiters;
    if (t->waiters)
        t->waiters->prev = wl;
    t->waiters = wl;
    return wl;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx)
{
    return push_results(L, 1);
}

/* handle:wait(): true, results... or false, error, once the task ends. */
static int task_wait(lua_State *L)
{
    nyx_task *t = check_task(L, 1);
    lua_settop(L, 1);
    if (t->state >= T_DONE)
        return push_results(L, 1);
    waitlink *wl = link_waiter(L, t);
    return nyx_await(L, &wl->w, 0, wait_k);
}

/* wait_all(handles): waits for each; returns {ok=true, n=, ...} or
 * {ok=false, error=} per handle, in order. */
static int wait_all_k(lua_State *L, int status, lua_KContext ctx)
{
    for (lua_Integer i = (lua_Integer)ctx;; i++) {
        lua_settop(L, 2);
        if (lua_rawgeti(L, 1, i) == LUA_TNIL)
            break;
        nyx_task *t = check_task(L, 3);
        if (t->state < T_DONE) {
            waitlink *wl = link_waiter(L, t);
            return nyx_await(L, &wl->w, (lua_KContext)i, wait_all_k);
        }
        push_results(L, 3);
        lua_getiuservalue(L, 3, 2); /* the results table itself */
        lua_rawseti(L, 2, i);
    }
    lua_settop(L, 2);
    return 1;
}

static int task_wait_all(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L);
    return wait_all_k(L, LUA_OK, 1);
}

typedef struct sleeper {
    nyx_waiter w;
    nyx_timer *timer;
    nyx_loop *loop;
} sleeper;

static void sleep_fired(nyx_loop *loop, void *arg)
{
    sleeper *sl = arg;
    sl->timer = NULL;
    nyx_waiter_done(&sl->w);
}

static int sleeper_gc(lua_State *L)
{
    sleeper *sl = lua_touserdata(L, 1);
    nyx_timer_stop(sl->loop, sl->timer); /* gone before it fired */
    sl->timer = NULL;
    return 0;
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) { return 0; }

static int sleep_cancel(lua_State *L, nyx_waiter *w)
{
    sleeper *sl = (sleeper *)w; /* w is its first member */
    (void)L;
    nyx_timer_stop(sl->loop, sl->timer);
    sl->timer = NULL;
    return 1;
}

/* sleep(seconds): lets every other task run meanwhile. */
static int task_sleep(lua_State *L)
{
    double seconds = luaL_optnumber(L, 1, 0);
    luaL_argcheck(L, seconds >= 0, 1, "seconds must not be negative");
    sleeper *sl = lua_newuserdatauv(L, sizeof *sl, 0);
    memset(sl, 0, sizeof *sl);
    luaL_setmetatable(L, SLEEP_MT);
    sl->loop = sched_of(L)->loop;
    sl->w.cancel = sleep_cancel;
    sl->timer = nyx_timer_start(sl->loop, seconds * 1e3, sleep_fired, sl);
    if (!sl->timer)
        return luaL_error(L, "out of memory");
    return nyx_await(L, &sl->w, 0, sleep_k);
}

/* handle:cancel([err]): err (default: a "cancelled" error) is raised in
 * the task at the wait it is in, or its next, and at every wait after;
 * what it waits for is stopped (a request aborted, a process killed).
 * Returns false if it had already ended or been cancelled. */
static int task_cancel(lua_State *L)
{
    check_task(L, 1);
    if (lua_isnoneornil(L, 2))
        nyx_push_error(L, "cancelled", "the task was cancelled");
    else
        lua_pushvalue(L, 2);
    lua_pushboolean(L, nyx_task_cancel(L, 1));
    return 1;
}

static int task_current(lua_State *L)
{
    nyx_task *t = sched_of(L)->current;
    if (!t)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    return 1;
}

static int task_count(lua_State *L)
{
    lua_pushinteger(L, sched_of(L)->live);
    return 1;
}

static int task_index(lua_State *L)
{
    nyx_task *t = check_task(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "status") == 0)
        lua_pushstring(L, STATES[t->state]);
    else if (strcmp(key, "id") == 0)
        lua_pushinteger(L, (lua_Integer)t->id);
    else if (strcmp(key, "wait") == 0)
        lua_pushcfunction(L, task_wait);
    else if (strcmp(key, "cancel") == 0)
        lua_pushcfunction(L, task_cancel);
    else if (strcmp(key, "cancelled") == 0)
        lua_pushboolean(L, t->cancel_ref != LUA_NOREF);
    else
        lua_pushnil(L);
    return 1;
}

static int task_tostring(lua_State *L)
{
    nyx_task *t = check_task(L, 1);
    lua_pushfstring(L, "nyx.task %d (%s)", (int)t->id, STATES[t->state]);
    return 1;
}

int luaopen_nyx_task(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"spawn", task_spawn}, {"wait_all", task_wait_all},
        {"sleep", task_sleep}, {"current", task_current},
        {"count", task_count}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}

/* ---- setting up, and running a script as the first task ----------------- */

static int sched_gc(lua_State *L)
{
    nyx_sched *s = lua_touserdata(L, 1);
    nyx_loop_free(s->loop);
    s->loop = NULL;
    return 0;
}

void nyx_sched_open(lua_State *L)
{
    nyx_sched *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    s->L = L;
    s->loop = nyx_loop_new();
    if (!s->loop)
        luaL_error(L, "cannot create the event loop");
    lua_newtable(L);
    lua_pushcfunction(L, sched_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "nyx.sched");
    *(nyx_sched **)lua_getextraspace(L) = s;

    lua_newtable(L); /* weak keys: a handle still goes when dropped */
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, UNOBSERVED);

    luaL_newmetatable(L, TASK_MT);
    lua_pushcfunction(L, task_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, task_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    nyx_gc_metatable(L, WAIT_MT, waitlink_gc);
    nyx_gc_metatable(L, SLEEP_MT, sleeper_gc);

    lua_getglobal(L, "coroutine");
    lua_pushcfunction(L, co_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, co_wrap);
    lua_setfield(L, -2, "wrap");
    lua_pop(L, 1);
}

/* Prints the failures nobody waited for: an engine does not lose errors. */
static void report_unobserved(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, UNOBSERVED);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        nyx_task *t = lua_touserdata(L, -1);
        lua_getiuservalue(L, -1, 2);
        lua_getfield(L, -1, "traceback");
        fprintf(stderr, "nyx: task %lu failed and nobody waited for it: %s\n",
                t->id, lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

static int run_main(lua_State *L)
{
    nyx_sched *s = sched_of(L);
    task_spawn(L);
    nyx_task *t = check_task(L, -1);
    int stuck = run_until(s, task_is_over, t) < 0;
    if (!stuck)
        stuck = run_until(s, none_live, s) < 0;
    observed(L, -1); /* its error is the script's, reported by the caller */
    report_unobserved(L);
    if (t->state == T_FAILED) {
        lua_getiuservalue(L, -1, 2);
        lua_getfield(L, -1, "traceback");
        return lua_error(L);
    }
    if (stuck)
        return deadlock(L);
    return 0;
}

int nyx_task_run(lua_State *L, int nargs)
{
    lua_pushcfunction(L, run_main);
    lua_insert(L, -(nargs + 2));
    /* no message handler: the task's error already has its traceback */
    return lua_pcall(L, nargs + 1, 0, 0);
}
