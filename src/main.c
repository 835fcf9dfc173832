/* nyx's entry point: a command (db, help, version) or, like the standalone
 * lua interpreter (lua.c), a script with its arguments and options. */
#include "cli.h"
#include "lua_nyx.h"
#include "lua_task.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct opts {
    int ignore_env, warnings, version;
    int script;   /* index in argv of the script, or argc when none */
    int lua_opts; /* -e and -l seen: they run in order, before the script */
} opts;

/* The option's argument: attached ("-eCODE") or the next word. */
static const char *option_arg(int argc, char **argv, int *i)
{
    if (argv[*i][2])
        return argv[*i] + 2;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

/* Reads options up to the script or command; returns -1 when done (all
 * good), or an exit status. */
static int parse(int argc, char **argv, opts *o)
{
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0)
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            nyx_cli_usage();
            return NYX_EXIT_OK;
        }
        if (strcmp(a, "--offline") == 0) {
            /* the offline model answers, whatever the environment says */
            setenv("NYX_OFFLINE", "1", 1);
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
            o->version = 1;
        } else if (strcmp(a, "-E") == 0) {
            o->ignore_env = 1;
        } else if (strcmp(a, "-W") == 0) {
            o->warnings = 1;
        } else if (a[1] == 'e' || a[1] == 'l') {
            if (!option_arg(argc, argv, &i)) {
                char what[64];
                snprintf(what, sizeof what, "'%s' needs an argument", a);
                return nyx_cli_usage_error(what);
            }
            o->lua_opts = 1;
        } else {
            char what[256];
            snprintf(what, sizeof what, "unknown option '%s'", a);
            return nyx_cli_usage_error(what);
        }
    }
    o->script = i;
    return -1;
}

/* arg as lua.c builds it: arg[0] the script, arg[1..] its arguments,
 * negative indices the interpreter and its options. */
static void create_arg_table(lua_State *L, int argc, char **argv, int script)
{
    if (script == argc)
        script = 0; /* no script: arg[0] is the interpreter */
    lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0,
                    script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

/* Runs the chunk loaded with this status, which sits below its nargs
 * arguments, as a task (so it can wait without blocking others, and start
 * tasks of its own); if loading failed (nargs is then 0), reports why. */
static int run_chunk(lua_State *L, int status, int nargs)
{
    if (status == LUA_OK)
        status = nyx_task_run(L, nargs);
    return nyx_report(L, status);
}

static int run_string(lua_State *L, const char *code, const char *name)
{
    return run_chunk(L, luaL_loadbuffer(L, code, strlen(code), name), 0);
}

/* -l mod, or -l g=mod: require mod into global mod (or g). */
static int run_require(lua_State *L, const char *spec)
{
    const char *eq = strchr(spec, '=');
    const char *mod = eq ? eq + 1 : spec;
    lua_getglobal(L, "require");
    lua_pushstring(L, mod);
    int status = nyx_pcall(L, 1, 1);
    if (status == LUA_OK) {
        if (eq)
            lua_pushlstring(L, spec, (size_t)(eq - spec));
        else
            lua_pushstring(L, mod);
        lua_insert(L, -2);
        lua_setglobal(L, lua_tostring(L, -2));
        lua_pop(L, 1);
    }
    return nyx_report(L, status);
}

static int run_init(lua_State *L)
{
    const char *name = "=LUA_INIT_5_4";
    const char *init = getenv(name + 1);
    if (!init) {
        name = "=LUA_INIT";
        init = getenv(name + 1);
    }
    if (!init)
        return LUA_OK;
    if (init[0] == '@')
        return run_chunk(L, luaL_loadfile(L, init + 1), 0);
    return run_string(L, init, name);
}

static int run_options(lua_State *L, int argc, char **argv, const opts *o)
{
    for (int i = 1; i < o->script; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l'))
            continue;
        const char *v = option_arg(argc, argv, &i);
        int status = a[1] == 'e' ? run_string(L, v, "=(command line)")
                                 : run_require(L, v);
        if (status != LUA_OK)
            return status;
    }
    return LUA_OK;
}

/* nyx.run.repl: the script was given --repl. */
static int want_repl(lua_State *L)
{
    int top = lua_gettop(L), yes = 0;
    if (lua_getglobal(L, "nyx") == LUA_TTABLE &&
        lua_getfield(L, -1, "run") == LUA_TTABLE) {
        lua_getfield(L, -1, "repl");
        yes = lua_toboolean(L, -1);
    }
    lua_settop(L, top);
    return yes;
}

/* With --repl the script runs as a task next to a REPL: the chunk below
 * its n arguments becomes the first argument of
 * require("nyx.cmd.repl").with_script. */
static int wrap_for_repl(lua_State *L, int n)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "nyx.cmd.repl");
    int status = nyx_pcall(L, 1, 1);
    if (status != LUA_OK)
        return status;
    lua_getfield(L, -1, "with_script");
    lua_remove(L, -2);
    lua_insert(L, -(n + 2));
    return LUA_OK;
}

static int run_script(lua_State *L, int argc, char **argv, int script)
{
    const char *fname = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
    int status = luaL_loadfile(L, fname);
    if (status != LUA_OK)
        return run_chunk(L, status, 0);
    int n = argc - script - 1;
    luaL_checkstack(L, n + 4, "too many arguments to script");
    for (int i = 1; i <= n; i++)
        lua_pushstring(L, argv[script + i]);
    if (want_repl(L)) {
        status = wrap_for_repl(L, n);
        if (status != LUA_OK)
            return nyx_report(L, status);
        n++;
    }
    return run_chunk(L, status, n);
}

/* Loads the nyx module into the global nyx, as the script expects. */
static int load_nyx(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "nyx");
    int status = nyx_pcall(L, 1, 1);
    if (status == LUA_OK)
        lua_setglobal(L, "nyx");
    return nyx_report(L, status);
}

/* Commands written in Lua: `nyx NAME ARGS...` runs lua/nyx/cmd/NAME.lua
 * (compiled in), a function of ARGS, as a task. */
static const char *const LUA_COMMANDS[] = {"repl", "tree", "report", "stats",
                                           NULL};

static int is_lua_command(const char *word)
{
    for (const char *const *c = LUA_COMMANDS; *c; c++)
        if (strcmp(*c, word) == 0)
            return 1;
    return 0;
}

static int run_command(lua_State *L, int argc, char **argv, int at)
{
    char code[96];
    snprintf(code, sizeof code, "return require('nyx.cmd.%s')(...)", argv[at]);
    int status = luaL_loadbuffer(L, code, strlen(code), "=nyx");
    if (status != LUA_OK)
        return run_chunk(L, status, 0);
    int n = argc - at - 1;
    luaL_checkstack(L, n + 3, "too many arguments to the command");
    for (int i = 1; i <= n; i++)
        lua_pushstring(L, argv[at + i]);
    return run_chunk(L, status, n);
}

/* nyx's own words among a script's arguments, wherever they are: taken
 * out of arg and put in the table nyx.run ({repl =, quiet =, json =}). */
static const char *const RUN_FLAGS[] = {"--repl", "--quiet", "--json", NULL};

static int run_flag(const char *word)
{
    for (int i = 0; RUN_FLAGS[i]; i++)
        if (strcmp(RUN_FLAGS[i], word) == 0)
            return i;
    return -1;
}

static int take_run_flags(lua_State *L, int *argc, char **argv, int script)
{
    int seen[3] = {0, 0, 0}, n = script + 1;
    for (int i = script + 1; i < *argc; i++) {
        int f = run_flag(argv[i]);
        if (f >= 0)
            seen[f] = 1;
        else
            argv[n++] = argv[i];
    }
    *argc = n;
    lua_getglobal(L, "nyx");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return LUA_OK;
    }
    lua_createtable(L, 0, 3);
    for (int i = 0; RUN_FLAGS[i]; i++) {
        lua_pushboolean(L, seen[i]);
        lua_setfield(L, -2, RUN_FLAGS[i] + 2);
    }
    lua_setfield(L, -2, "run");
    lua_pop(L, 1);
    return LUA_OK;
}

static int run_lua(int argc, char **argv, const opts *o)
{
    lua_State *L = nyx_lua_new(o->ignore_env);
    if (!L) {
        fprintf(stderr, "nyx: cannot create the Lua state: out of memory\n");
        return NYX_EXIT_FAILURE;
    }
    if (o->warnings)
        lua_warning(L, "@on", 0);
    int command = o->script < argc && is_lua_command(argv[o->script]);
    int status = load_nyx(L);
    if (status == LUA_OK && o->script < argc && !command)
        status = take_run_flags(L, &argc, argv, o->script);
    create_arg_table(L, argc, argv, o->script);
    if (status == LUA_OK && !o->ignore_env)
        status = run_init(L);
    if (status == LUA_OK)
        status = run_options(L, argc, argv, o);
    if (status == LUA_OK && command)
        status = run_command(L, argc, argv, o->script);
    else if (status == LUA_OK && o->script < argc)
        status = run_script(L, argc, argv, o->script);
    nyx_lua_close(L);
    return status == LUA_OK ? NYX_EXIT_OK : NYX_EXIT_FAILURE;
}

static int is_script(const char *word)
{
    size_t n = strlen(word);
    return strcmp(word, "-") == 0 || strchr(word, '/') ||
           (n > 4 && strcmp(word + n - 4, ".lua") == 0) ||
           access(word, F_OK) == 0;
}

/* A fan-out of a thousand calls needs a thousand sockets: take what the
 * hard limit allows instead of the usual soft 1024. */
static void raise_fd_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

int main(int argc, char **argv)
{
    opts o = {0};
    raise_fd_limit();
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (o.version)
        nyx_cli_version();
    /* A command word wins over a file of that name: ./db runs the file. */
    if (o.script < argc && nyx_cli_is_command(argv[o.script]))
        return nyx_cli_run(argc - o.script, argv + o.script);
    if (o.script < argc && !is_lua_command(argv[o.script]) &&
        !is_script(argv[o.script])) {
        char what[300];
        snprintf(what, sizeof what,
                 "unknown command '%.200s' (and no script file by that name)",
                 argv[o.script]);
        return nyx_cli_usage_error(what);
    }
    if (o.script == argc && !o.lua_opts) {
        if (!o.version)
            nyx_cli_usage();
        return NYX_EXIT_OK;
    }
    return run_lua(argc, argv, &o);
}
