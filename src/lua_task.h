/* Tasks: Lua coroutines scheduled on nyx's event loop. A slow call made
 * in a task yields (nyx_await) and the loop resumes it when the work is
 * done; made where yielding is impossible (the main thread, a C boundary)
 * it runs the loop until done instead. Opens the nyx.task module. */
#ifndef NYX_LUA_TASK_H
#define NYX_LUA_TASK_H

#include "loop.h"

#include <lua.h>

typedef struct nyx_task nyx_task;

/* What a slow call waits for; the binding embeds it in its own state and
 * calls nyx_waiter_done when the work is done. */
typedef struct nyx_waiter nyx_waiter;
struct nyx_waiter {
    nyx_task *task; /* set by nyx_await: the task to resume, or NULL */
    int done;
    /* Optional: stops the work when the waiting task is cancelled
     * (nyx_task_cancel). Returns 1 if the work is let go (nothing touches
     * the waiter again and the task raises at once), 0 if it still
     * completes (the task raises right after). NULL: as 0. */
    int (*cancel)(lua_State *L, nyx_waiter *w);
    lua_KFunction k; /* nyx_await's: where the wait continues */
    lua_KContext kctx;
};

/* Sets up the scheduler of this Lua state (nyx_lua_new does). */
void nyx_sched_open(lua_State *L);

nyx_loop *nyx_sched_loop(lua_State *L);

/* Suspends the calling Lua code until nyx_waiter_done(w), then continues
 * in k(L, LUA_OK, ctx). Use as: return nyx_await(L, w, ctx, k); */
int nyx_await(lua_State *L, nyx_waiter *w, lua_KContext ctx, lua_KFunction k);

/* Cancels the task whose handle is at idx: err (the value on top of the
 * stack, popped) is raised in it at the wait it is in (whose cancel is
 * called), or at its next one, and again at every wait after, until it
 * ends. Returns 0 if the task had already ended or was cancelled. */
int nyx_task_cancel(lua_State *L, int idx);

/* Marks w done and makes its task ready to run. Safe from loop callbacks. */
void nyx_waiter_done(nyx_waiter *w);

/* A hook the scheduler calls once per round, before it waits for events
 * (e.g. to write a batch of log rows); it runs in protected mode on L's
 * main thread. Returns non-zero if it did something. */
typedef int (*nyx_sched_hook)(lua_State *L, void *arg);
void nyx_sched_add_hook(lua_State *L, nyx_sched_hook fn, void *arg);

/* Background work (a log row nobody waits for) that a run must see
 * finished before it ends: +1 when it starts, -1 when it is done. */
void nyx_sched_hold(lua_State *L, int delta);

/* Runs the function below nargs arguments on the stack as a task, and the
 * scheduler until it and every task it started are finished. Returns
 * LUA_OK, or an error status with the message (and traceback) on the
 * stack, like nyx_pcall. */
int nyx_task_run(lua_State *L, int nargs);

/* The sentinel value NYX's own yields carry. */
extern const char NYX_YIELD[];

int luaopen_nyx_task(lua_State *L);

#endif
