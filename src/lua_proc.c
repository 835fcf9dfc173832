/* nyx.proc: child processes, the Lua face of proc.c. run(opts) starts a
 * program, yields the task until it has ended (blocking outside one) and
 * returns what happened; cancel_all() and running() look after the runs
 * in flight. A non-zero exit is data; a program that cannot start raises a
 * structured error of type "spawn". */
#include "lua_nyx.h"
#include "lua_task.h"
#include "proc.h"

#include <lauxlib.h>
#include <string.h>

#define SERVICE_KEY "nyx.proc.instance" /* registry: the service's box */
#define SERVICE_MT  "nyx.proc.service"
#define CALL_MT     "nyx.proc.call"

#define DEFAULT_MAX_OUTPUT (1024 * 1024)

typedef struct call_box {
    nyx_waiter w; /* first: the box is where its waiter is */
    nyx_proc *run;
} call_box;

static int service_gc(lua_State *L)
{
    nyx_procs **s = lua_touserdata(L, 1);
    nyx_procs_free(*s); /* kills and reaps what still runs */
    *s = NULL;
    return 0;
}

/* The service, made on first use; NULL if there is none and !create. */
static nyx_procs *get_service(lua_State *L, int create)
{
    lua_getfield(L, LUA_REGISTRYINDEX, SERVICE_KEY);
    nyx_procs **s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (s || !create)
        return s ? *s : NULL;
    s = lua_newuserdatauv(L, sizeof *s, 0);
    *s = NULL;
    nyx_gc_metatable(L, SERVICE_MT, service_gc);
    luaL_setmetatable(L, SERVICE_MT);
    *s = nyx_procs_new(nyx_sched_loop(L));
    if (!*s)
        luaL_error(L, "out of memory");
    lua_setfield(L, LUA_REGISTRYINDEX, SERVICE_KEY);
    return *s;
}

/* A call's box goes (its coroutine was collected, the state closes): the
 * run goes with it, its process group killed. */
static int call_gc(lua_State *L)
{
    call_box *b = lua_touserdata(L, 1);
    nyx_proc_release(b->run);
    b->run = NULL;
    return 0;
}

/* The waiting task is cancelled: the run's process group is killed
 * (SIGKILL) and reaped by the service. */
static int call_cancel(lua_State *L, nyx_waiter *w)
{
    call_box *b = (call_box *)w;
    (void)L;
    nyx_proc_release(b->run);
    b->run = NULL;
    return 1;
}

static void on_done(nyx_proc *run, void *arg)
{
    call_box *b = arg;
    nyx_waiter_done(&b->w);
}

/* ---- options ------------------------------------------------------------- */

static int bad_opt(lua_State *L, const char *why)
{
    return luaL_argerror(L, 1, why);
}

static void check_keys(lua_State *L)
{
    static const char *const known[] = {"argv",    "stdin",      "cwd", "env",
                                        "timeout", "max_output", NULL};
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; known[i] && !ok; i++)
                ok = strcmp(lua_tostring(L, -1), known[i]) == 0;
        if (!ok)
            bad_opt(L, lua_pushfstring(L, "unknown option '%s'",
                                       luaL_tolstring(L, -1, NULL)));
    }
}

/* A string without NUL bytes (they cannot reach the child). */
static const char *plain_string(lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return s && strlen(s) == len ? s : NULL;
}

/* opts.argv as a NULL-terminated array, boxed. stack: +2 (argv, array) */
static const char *const *check_argv(lua_State *L)
{
    if (lua_getfield(L, 1, "argv") != LUA_TTABLE || lua_rawlen(L, -1) == 0)
        bad_opt(L, "argv must be a non-empty list of strings");
    int t = lua_gettop(L);
    size_t n = lua_rawlen(L, t);
    const char **argv = lua_newuserdatauv(L, (n + 1) * sizeof *argv, 0);
    for (size_t i = 0; i < n; i++) {
        int type = lua_rawgeti(L, t, (lua_Integer)i + 1);
        argv[i] = type == LUA_TSTRING ? plain_string(L, -1) : NULL;
        if (!argv[i])
            luaL_argerror(L, 1,
                          lua_pushfstring(L,
                                          "argv[%d] must be a string "
                                          "without NUL bytes, got %s",
                                          (int)i + 1, lua_typename(L, type)));
        lua_pop(L, 1); /* kept by the argv table */
    }
    argv[n] = NULL;
    return argv;
}

/* opts.env as name/value pairs, boxed; *n gets how many. stack: +2 */
static const nyx_proc_env *check_env(lua_State *L, size_t *n)
{
    *n = 0;
    int type = lua_getfield(L, 1, "env");
    if (type == LUA_TNIL) {
        lua_pushnil(L);
        return NULL;
    }
    if (type != LUA_TTABLE)
        bad_opt(L, "env must be a table of names to strings (or false)");
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        ++*n;
    }
    nyx_proc_env *env = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *env, 0);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *name =
            lua_type(L, -2) == LUA_TSTRING ? plain_string(L, -2) : NULL;
        if (!name || !*name || strchr(name, '='))
            bad_opt(L, "env names must be non-empty strings without '='");
        int vt = lua_type(L, -1);
        if (!(vt == LUA_TSTRING ||
              (vt == LUA_TBOOLEAN && !lua_toboolean(L, -1))))
            bad_opt(L, lua_pushfstring(
                           L, "env value for '%s' must be a string or false",
                           name));
        env[i].name = name;
        env[i].value = vt == LUA_TSTRING ? plain_string(L, -1) : NULL;
        if (vt == LUA_TSTRING && !env[i].value)
            bad_opt(L, lua_pushfstring(
                           L, "env value for '%s' contains a NUL byte", name));
        i++;
        lua_pop(L, 1); /* kept by the env table */
    }
    return env;
}

/* opts[k] if it is a string (or absent: NULL). stack: +1 */
static const char *opt_string(lua_State *L, const char *k, size_t *len)
{
    int type = lua_getfield(L, 1, k);
    if (type == LUA_TNIL)
        return NULL;
    if (type != LUA_TSTRING)
        bad_opt(L, lua_pushfstring(L, "%s must be a string", k));
    return lua_tolstring(L, -1, len);
}

static double opt_timeout(lua_State *L)
{
    int type = lua_getfield(L, 1, "timeout");
    double seconds = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (type == LUA_TNIL)
        return -1;
    if (type != LUA_TNUMBER || !(seconds >= 0))
        bad_opt(L, "timeout must be a non-negative number of seconds");
    return seconds * 1e3;
}

static size_t opt_max_output(lua_State *L)
{
    int isint = 0;
    int type = lua_getfield(L, 1, "max_output");
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    lua_pop(L, 1);
    if (type == LUA_TNIL)
        return DEFAULT_MAX_OUTPUT;
    if (type != LUA_TNUMBER || !isint || v < 0)
        bad_opt(L, "max_output must be a non-negative integer (bytes)");
    return (size_t)v;
}

/* ---- run ----------------------------------------------------------------- */

static void set_bool(lua_State *L, const char *k, int v)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

/* What happened, as a table. stack: +1 */
static void push_result(lua_State *L, const nyx_proc_result *r)
{
    lua_createtable(L, 0, 11);
    if (r->exited) {
        lua_pushinteger(L, r->exit_code);
        lua_setfield(L, -2, "exit_code");
    }
    if (r->signal) {
        lua_pushinteger(L, r->signal);
        lua_setfield(L, -2, "signal");
    }
    lua_pushlstring(L, r->out.data ? r->out.data : "", r->out.len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, r->err.data ? r->err.data : "", r->err.len);
    lua_setfield(L, -2, "stderr");
    set_bool(L, "stdout_truncated", r->out_truncated);
    set_bool(L, "stderr_truncated", r->err_truncated);
    set_bool(L, "timed_out", r->timed_out);
    set_bool(L, "cancelled", r->cancelled);
    lua_pushnumber(L, r->duration_ms);
    lua_setfield(L, -2, "duration_ms");
    lua_pushinteger(L, r->pid);
    lua_setfield(L, -2, "pid");
}

static int run_k(lua_State *L, int status, lua_KContext ctx)
{
    call_box *b = (call_box *)ctx;
    if (!nyx_proc_done(b->run)) {
        b->w.done = 0;
        return nyx_await(L, &b->w, ctx, run_k);
    }
    push_result(L, nyx_proc_result_of(b->run));
    nyx_proc_release(b->run);
    b->run = NULL;
    return 1;
}

static int spawn_failed(lua_State *L, const char *program, const char *msg)
{
    nyx_push_error(L, "spawn", msg);
    lua_pushstring(L, program);
    lua_setfield(L, -2, "program");
    return lua_error(L);
}

/* run{argv=, stdin=, cwd=, env=, timeout=, max_output=} */
static int proc_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    check_keys(L);
    nyx_proc_opts o = {0};
    o.argv = check_argv(L);        /* 2, 3 */
    o.env = check_env(L, &o.nenv); /* 4, 5 */
    o.cwd = opt_string(L, "cwd", NULL);
    if (o.cwd && strlen(o.cwd) != lua_rawlen(L, -1))
        bad_opt(L, "cwd contains a NUL byte");
    o.input = opt_string(L, "stdin", &o.input_len);
    o.timeout_ms = opt_timeout(L);
    o.max_output = opt_max_output(L);
    nyx_procs *s = get_service(L, 1);
    call_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, CALL_MT);
    o.on_done = on_done;
    o.arg = b;
    b->w.cancel = call_cancel;
    nyx_err err;
    b->run = nyx_proc_start(s, &o, &err);
    if (!b->run)
        return spawn_failed(L, o.argv[0], err.msg);
    /* the strings stay on this stack (argv, env, cwd, stdin) until the end */
    return nyx_await(L, &b->w, (lua_KContext)b, run_k);
}

/* cancel_all(): every run in flight ends, cancelled; how many. */
static int proc_cancel_all(lua_State *L)
{
    nyx_procs *s = get_service(L, 0);
    lua_pushinteger(L, s ? nyx_procs_cancel_all(s) : 0);
    return 1;
}

static int proc_running(lua_State *L)
{
    nyx_procs *s = get_service(L, 0);
    lua_pushinteger(L, s ? nyx_procs_running(s) : 0);
    return 1;
}

int luaopen_nyx_proc(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"run", proc_run},
                                     {"cancel_all", proc_cancel_all},
                                     {"running", proc_running},
                                     {NULL, NULL}};
    nyx_gc_metatable(L, CALL_MT, call_gc);
    luaL_newlib(L, funcs);
    return 1;
}
