#include "lua_nyx.h"

#include "lua-cjson.h"
#include "lua_json.h"
#include "lua_task.h"
#include "paths.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>
#include <uuid/uuid.h>

extern int luaopen_cjson_safe(lua_State *L);

/* ---- structured errors ----------------------------------------------- */

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "message");
    if (!lua_isstring(L, -1))
        lua_pushliteral(L, "(nyx error without a message)");
    return 1;
}

void nyx_push_error(lua_State *L, const char *type, const char *message)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    if (luaL_newmetatable(L, "nyx.error")) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_setmetatable(L, -2);
}

int nyx_raise(lua_State *L, const char *type, const char *message)
{
    nyx_push_error(L, type, message);
    return lua_error(L);
}

static int box_gc(lua_State *L)
{
    void **box = lua_touserdata(L, 1);
    free(*box);
    *box = NULL;
    return 0;
}

void *nyx_state_block(lua_State *L, const void *key, size_t size, int *fresh)
{
    *fresh = 0;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TUSERDATA) {
        void *p = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return p;
    }
    lua_pop(L, 1);
    void *p = lua_newuserdatauv(L, size, 0);
    memset(p, 0, size);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
    *fresh = 1;
    return p;
}

void nyx_gc_metatable(lua_State *L, const char *name, lua_CFunction gc)
{
    if (luaL_newmetatable(L, name)) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

void nyx_box_malloc(lua_State *L, void *p)
{
    void **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = p;
    nyx_gc_metatable(L, "nyx.malloc", box_gc);
    luaL_setmetatable(L, "nyx.malloc");
}

/* ---- the door from C into Lua ---------------------------------------- */

/* An error that comes from the world outside the script (no database to
 * connect to) says all it needs in one line: no traceback. */
static int is_environment_error(lua_State *L, int idx)
{
    if (!lua_istable(L, idx))
        return 0;
    lua_getfield(L, idx, "type");
    int yes =
        lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "connection") == 0;
    lua_pop(L, 1);
    return yes;
}

void nyx_push_traceback(lua_State *L, lua_State *co, int idx, int level)
{
    lua_pushvalue(co, idx); /* a copy to work on, on the live thread */
    if (co != L)
        lua_xmove(co, L, 1);
    int e = lua_gettop(L);
    const char *msg = lua_tostring(L, e);
    if (msg == NULL) {
        int env = is_environment_error(L, e);
        if (luaL_callmeta(L, e, "__tostring") &&
            lua_type(L, -1) == LUA_TSTRING) {
            if (env) { /* one line says it all */
                lua_replace(L, e);
                return;
            }
            msg = lua_tostring(L, -1);
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, e));
        }
    }
    luaL_traceback(L, co, msg, level);
    lua_replace(L, e);
    lua_settop(L, e);
}

static int msghandler(lua_State *L)
{
    /* runs on the failing thread; level 1 skips the handler itself */
    nyx_push_traceback(L, L, 1, 1);
    return 1;
}

static long refs;

int nyx_ref(lua_State *L)
{
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    refs += ref != LUA_REFNIL && ref != LUA_NOREF;
    return ref;
}

void nyx_unref(lua_State *L, int ref)
{
    if (ref == LUA_REFNIL || ref == LUA_NOREF)
        return;
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    refs--;
}

long nyx_ref_count(void) { return refs; }

int nyx_pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    return status;
}

int nyx_report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "nyx: %s\n", msg ? msg : "(error without a message)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

/* ---- nyx.core -------------------------------------------------------- */

/* Seconds on the monotonic clock: for measuring, not for dates. */
static int core_now(lua_State *L)
{
    lua_pushnumber(L, nyx_now_ms() / 1e3);
    return 1;
}

/* The wall clock as PostgreSQL takes it: "2026-12-04 20:40:50.123456+00". */
static int core_timestamp(lua_State *L)
{
    /* two per LLM call: the date and time are formatted once a second */
    static _Thread_local time_t last = -1;
    static _Thread_local char buf[64];
    static _Thread_local size_t n;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != last) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
        last = ts.tv_sec;
    }
    long us = ts.tv_nsec / 1000;
    char *p = buf + n;
    *p++ = '.';
    for (int i = 5; i >= 0; i--, us /= 10)
        p[i] = (char)('0' + us % 10);
    memcpy(p + 6, "+00", 3);
    lua_pushlstring(L, buf, n + 10);
    return 1;
}

/* mtime(path): the file's modification time in seconds (with the
 * nanoseconds), or nil if it cannot be read. */
static int core_mtime(lua_State *L)
{
    struct stat st;
    if (stat(luaL_checkstring(L, 1), &st) < 0)
        return 0;
    lua_pushnumber(L, (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9);
    return 1;
}

/* The DIR of a dir() in progress, boxed so a raise while pushing names
 * (out of memory) still closes it. */
#define NYX_DIR "nyx.core.dir"

static int dir_close(lua_State *L)
{
    DIR **d = luaL_checkudata(L, 1, NYX_DIR);
    if (*d) {
        closedir(*d);
        *d = NULL;
    }
    return 0;
}

/* dir(path): the names in folder path (without . and ..), in no order; or
 * nil and why. */
static int core_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR **d = lua_newuserdatauv(L, sizeof *d, 0);
    *d = NULL;
    if (luaL_newmetatable(L, NYX_DIR)) {
        lua_pushcfunction(L, dir_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (!(*d = opendir(path))) {
        int e = errno;
        luaL_pushfail(L);
        lua_pushfstring(L, "%s: %s", path, strerror(e));
        return 2;
    }
    lua_newtable(L);
    lua_Integer n = 0;
    struct dirent *e;
    while ((e = readdir(*d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            lua_pushstring(L, e->d_name);
            lua_rawseti(L, -2, ++n);
        }
    closedir(*d);
    *d = NULL;
    return 1;
}

/* assets(prefix): {name = data} of the files compiled into nyx whose name
 * (relative to the source tree) starts with prefix. */
static int core_assets(lua_State *L)
{
    size_t len;
    const char *prefix = luaL_checklstring(L, 1, &len);
    lua_newtable(L);
    for (const nyx_asset *a = nyx_assets; a->name; a++)
        if (strncmp(a->name, prefix, len) == 0) {
            lua_pushlstring(L, a->data, a->size);
            lua_setfield(L, -2, a->name);
        }
    return 1;
}

/* hash(s): FNV-1a of s, 16 hex digits (a version mark, not a secret). */
static int core_hash(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char out[17];
    nyx_fnv1a_hex(s, len, out);
    lua_pushstring(L, out);
    return 1;
}

/* cpu(): seconds of CPU this process has used, user + system. */
static int core_cpu(lua_State *L)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    lua_pushnumber(L, (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                          (double)ru.ru_stime.tv_sec +
                          ru.ru_stime.tv_usec / 1e6);
    return 1;
}

/* maxrss(): the peak resident set size of this process, in bytes. */
static int core_maxrss(lua_State *L)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
    return 1;
}

/* A stream argument: an fd number, or "stdin", "stdout", "stderr". */
static int check_fd(lua_State *L, int idx)
{
    static const char *const names[] = {"stdin", "stdout", "stderr", NULL};
    if (lua_type(L, idx) == LUA_TSTRING)
        return luaL_checkoption(L, idx, NULL, names);
    lua_Integer fd = luaL_checkinteger(L, idx);
    luaL_argcheck(L, fd >= 0 && fd <= 1024, idx, "not a file descriptor");
    return (int)fd;
}

/* isatty(fd): whether the stream is a terminal (the views colour and
 * redraw only there). */
static int core_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty(check_fd(L, 1)) == 1);
    return 1;
}

/* columns(fd): the terminal's width, or nil when it is not a terminal or
 * does not say. */
static int core_columns(lua_State *L)
{
    struct winsize ws;
    if (ioctl(check_fd(L, 1), TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0)
        return 0;
    lua_pushinteger(L, ws.ws_col);
    return 1;
}

/* error_object(type, message [, fields]): a structured error (not raised). */
static int core_error(lua_State *L)
{
    const char *type = luaL_checkstring(L, 1);
    const char *message = luaL_checkstring(L, 2);
    nyx_push_error(L, type, message);
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    return 1;
}

/* json_decode(text): the value (integers as integers, null as nil), or
 * nil and why. */
static int core_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    return nyx_json_decode(L, s, len, 0);
}

/* json_raw(text): a value json_encode writes as text, as it is (JSON
 * already encoded, e.g. for a JSONB column in a log row). */
static int core_json_raw(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    luaL_setmetatable(L, NYX_JSON_RAW);
    return 1;
}

/* json_encode(value): JSON text (integers exact, {} for an empty table). */
static int core_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    nyx_json_encode(L, 1);
    return 1;
}

static int core_refs(lua_State *L)
{
    lua_pushinteger(L, nyx_ref_count());
    return 1;
}

/* is_uuid(s): s is a UUID in text form (8-4-4-4-12 hex digits, either
 * case), what llm.lua and tree.lua check every id they are given against;
 * a Lua pattern of 36 classes cost more than the rest of the check. */
static int core_is_uuid(lua_State *L)
{
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    int ok = lua_type(L, 1) == LUA_TSTRING && len == 36;
    for (size_t i = 0; ok && i < len; i++)
        ok = i == 8 || i == 13 || i == 18 || i == 23
                 ? s[i] == '-'
                 : isxdigit((unsigned char)s[i]) != 0;
    lua_pushboolean(L, ok);
    return 1;
}

/* Random version 4 UUIDs, from a pool of random bytes refilled 4 KiB at a
 * time (a getrandom call per id was most of their cost). A forked child
 * starts with an empty pool (pthread_atfork, set once: asking getpid()
 * on every id was a system call per id), so parent and child never share
 * ids. */
static unsigned char uuid_pool[4096];
static size_t uuid_used = sizeof uuid_pool;

static void uuid_forked(void) { uuid_used = sizeof uuid_pool; }

static int core_uuid(lua_State *L)
{
    static int atfork;
    if (!atfork) {
        if (pthread_atfork(NULL, NULL, uuid_forked) != 0)
            return luaL_error(L, "cannot register the UUID pool's fork hook");
        atfork = 1;
    }
    unsigned char *pool = uuid_pool;
    if (uuid_used + 16 > sizeof uuid_pool) {
        for (size_t got = 0; got < sizeof uuid_pool;) {
            ssize_t n = getrandom(pool + got, sizeof uuid_pool - got, 0);
            if (n < 0)
                return luaL_error(L, "no random bytes for a UUID");
            got += (size_t)n;
        }
        uuid_used = 0;
    }
    size_t used = uuid_used;
    uuid_t u;
    memcpy(u, pool + used, 16);
    memset(pool + used, 0, 16); /* an id is used once */
    uuid_used = used + 16;
    u[6] = (unsigned char)((u[6] & 0x0F) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    char s[37];
    uuid_unparse_lower(u, s);
    lua_pushlstring(L, s, 36);
    return 1;
}

static int core_embedded(lua_State *L);

int luaopen_nyx_core(lua_State *L)
{

    static const luaL_Reg funcs[] = {{"uuid", core_uuid},
                                     {"is_uuid", core_is_uuid},
                                     {"refs", core_refs},
                                     {"now", core_now},
                                     {"timestamp", core_timestamp},
                                     {"mtime", core_mtime},
                                     {"dir", core_dir},
                                     {"assets", core_assets},
                                     {"hash", core_hash},
                                     {"cpu", core_cpu},
                                     {"maxrss", core_maxrss},
                                     {"isatty", core_isatty},
                                     {"columns", core_columns},
                                     {"error_object", core_error},
                                     {"json_decode", core_json_decode},
                                     {"json_encode", core_json_encode},
                                     {"json_raw", core_json_raw},
                                     {"embedded", core_embedded},
                                     {NULL, NULL}};
    luaL_newmetatable(L, NYX_JSON_RAW);
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    lua_pushliteral(L, NYX_VERSION);
    lua_setfield(L, -2, "version");
    const char *home = nyx_home();
    if (home) {
        lua_pushstring(L, home);
        lua_setfield(L, -2, "home");
    }
    lua_pushstring(L, nyx_exe_path());
    lua_setfield(L, -2, "executable");
    return 1;
}

/* ---- finding modules ------------------------------------------------- */

/* The compiled-in copy of module name (lua/NAME.lua or lua/NAME/init.lua),
 * or NULL. stack: +1 (lua/NAME, for messages) */
static const nyx_asset *find_module(lua_State *L, const char *name)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "lua/");
    luaL_addgsub(&b, name, ".", "/");
    luaL_pushresult(&b);
    const char *base = lua_tostring(L, -1);
    const nyx_asset *a = NULL;
    const char *suffixes[] = {".lua", "/init.lua"};
    for (int i = 0; i < 2 && !a; i++) {
        a = nyx_asset_find(lua_pushfstring(L, "%s%s", base, suffixes[i]));
        lua_pop(L, 1);
    }
    return a;
}

/* embedded(name): whether module name is compiled in. */
static int core_embedded(lua_State *L)
{
    lua_pushboolean(L, find_module(L, luaL_checkstring(L, 1)) != NULL);
    return 1;
}

/* package.searchers entry for the copies of the lua/nyx files compiled into
 * the binary; it runs after the path searcher, so files on disk win. */
static int embedded_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const nyx_asset *a = find_module(L, name);
    if (!a) {
        lua_pushfstring(L, "no embedded file '%s.lua'", lua_tostring(L, -1));
        return 1;
    }
    const char *chunkname = lua_pushfstring(L, "@(embedded)/%s", a->name);
    if (luaL_loadbufferx(L, a->data, a->size, chunkname, "t") != LUA_OK)
        return luaL_error(L, "error loading module '%s' from %s:\n\t%s", name,
                          chunkname + 1, lua_tostring(L, -1));
    lua_pushstring(L, chunkname + 1);
    return 2;
}

static void add_searcher(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = n; i >= 3; i--) { /* insert as the 3rd searcher */
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, embedded_searcher);
    lua_rawseti(L, -2, 3);
    lua_pop(L, 2);
}

/* Appends to b the entries of a NYX_LUA_PATH: templates with '?' as they
 * are, plain folders as folder/?.lua;folder/?/init.lua. */
static void add_user_path(luaL_Buffer *b, const char *list)
{
    while (*list) {
        size_t n = strcspn(list, ";");
        if (n > 0) {
            luaL_addlstring(b, list, n);
            if (!memchr(list, '?', n)) {
                luaL_addstring(b, "/?.lua;");
                luaL_addlstring(b, list, n);
                luaL_addstring(b, "/?/init.lua");
            }
            luaL_addchar(b, ';');
        }
        list += n + (list[n] == ';');
    }
}

static void set_path(lua_State *L, int ignore_env)
{
    lua_getglobal(L, "package");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *home = nyx_home();
    if (home) {
        lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", home, home);
        luaL_addvalue(&b);
    }
    const char *user = ignore_env ? NULL : getenv("NYX_LUA_PATH");
    if (user)
        add_user_path(&b, user);
    lua_getfield(L, -2, "path"); /* LUA_PATH_5_4, LUA_PATH or the default */
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

static void preload(lua_State *L, const char *name, lua_CFunction f)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* The Lua state's allocator. Lua makes and drops small objects all the
 * time (tables, strings, closures of a call); blocks up to 256 bytes are
 * kept on free lists by size class, carved from 64 KiB slabs, instead of
 * going through malloc and free each time. A state belongs to one thread,
 * so nothing here locks. Larger blocks use the C library. */
#define SMALL_MAX  256
#define SMALL_STEP 16
#define SLAB       (64 * 1024)

typedef struct free_block {
    struct free_block *next;
} free_block;

typedef struct nyx_alloc {
    int warn_on, warn_cont; /* the warning function's state */
    free_block *free[SMALL_MAX / SMALL_STEP + 1];
    char *slab, *slab_end;
    void **slabs; /* every slab, to free them with the state */
    size_t nslabs, cap;
} nyx_alloc;

static size_t size_class(size_t n) { return (n + SMALL_STEP - 1) / SMALL_STEP; }

static void *small_alloc(nyx_alloc *a, size_t cls)
{
    free_block *b = a->free[cls];
    if (b) {
        a->free[cls] = b->next;
        return b;
    }
    size_t size = cls * SMALL_STEP;
    if ((size_t)(a->slab_end - a->slab) < size) {
        if (a->nslabs == a->cap) {
            size_t cap = a->cap ? a->cap * 2 : 64;
            void **v = realloc(a->slabs, cap * sizeof *v);
            if (!v)
                return NULL;
            a->slabs = v;
            a->cap = cap;
        }
        char *slab = malloc(SLAB);
        if (!slab)
            return NULL;
        a->slabs[a->nslabs++] = slab;
        a->slab = slab;
        a->slab_end = slab + SLAB;
    }
    void *p = a->slab;
    a->slab += size;
    return p;
}

static void small_free(nyx_alloc *a, void *p, size_t cls)
{
    free_block *b = p;
    b->next = a->free[cls];
    a->free[cls] = b;
}

/* What lua_alloc leaves to a call of its own: a new block that the free
 * lists do not have, a block that changes size, a large block. */
__attribute__((noinline)) static void *alloc_slow(nyx_alloc *a, void *ptr,
                                                  size_t osize, size_t nsize)
{
    /* with ptr == NULL, osize tells the type of object, not a size */
    size_t ocls = ptr && osize <= SMALL_MAX ? size_class(osize) : 0;
    size_t ncls = nsize <= SMALL_MAX ? size_class(nsize) : 0;
    if (ptr && ocls == ncls && ocls)
        return ptr; /* same size class: nothing to move */
    if (ptr && !ocls && !ncls)
        return realloc(ptr, nsize);
    void *n = ncls ? small_alloc(a, ncls) : malloc(nsize);
    if (!n)
        return NULL;
    if (ptr) {
        memcpy(n, ptr, osize < nsize ? osize : nsize);
        if (ocls)
            small_free(a, ptr, ocls);
        else
            free(ptr);
    }
    return n;
}

/* The two calls Lua makes most, a small block freed and a small block
 * taken from its free list, call nothing: no registers to save. */
static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    nyx_alloc *a = ud;
#if defined(__SANITIZE_ADDRESS__)
    /* sanitizer builds: every block through malloc, so ASan sees Lua's too */
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
#endif
    if (nsize == 0) {
        if (ptr && osize <= SMALL_MAX)
            small_free(a, ptr, size_class(osize));
        else
            free(ptr);
        return NULL;
    }
    if (!ptr && nsize <= SMALL_MAX) {
        free_block *b = a->free[size_class(nsize)];
        if (b) {
            a->free[size_class(nsize)] = b->next;
            return b;
        }
    }
    return alloc_slow(a, ptr, osize, nsize);
}

/* Warnings as lua.c shows them: off until "@on", "Lua warning: " first. */
static void warnf(void *ud, const char *msg, int tocont)
{
    nyx_alloc *a = ud;
    if (!a->warn_cont && msg[0] == '@') { /* a control message */
        if (strcmp(msg, "@on") == 0)
            a->warn_on = 1;
        else if (strcmp(msg, "@off") == 0)
            a->warn_on = 0;
        return;
    }
    if (a->warn_on) {
        if (!a->warn_cont)
            fputs("Lua warning: ", stderr);
        fputs(msg, stderr);
        if (!tocont)
            fputs("\n", stderr);
        fflush(stderr);
    }
    a->warn_cont = tocont;
}

static int alloc_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "nyx: unprotected error in Lua: %s\n",
            msg ? msg : "(not a string)");
    return 0; /* Lua aborts */
}

void nyx_lua_close(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    lua_close(L);
    nyx_alloc *a = ud;
    for (size_t i = 0; i < a->nslabs; i++)
        free(a->slabs[i]);
    free(a->slabs);
    free(a);
}

/* os.exit as loslib's, but closing the state (exit(code, true)) frees
 * nyx's allocator too, as nyx_lua_close does: lua_close alone leaks it. */
static int os_exit(lua_State *L)
{
    int status;
    if (lua_isboolean(L, 1))
        status = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
    else
        status = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
    if (lua_toboolean(L, 2))
        nyx_lua_close(L);
    exit(status);
}

lua_State *nyx_lua_new(int ignore_env)
{
    nyx_alloc *a = calloc(1, sizeof *a);
    lua_State *L = a ? lua_newstate(lua_alloc, a) : NULL;
    if (!L) {
        free(a);
        return NULL;
    }
    lua_atpanic(L, alloc_panic);
    lua_setwarnf(L, warnf, a);
    if (!L)
        return NULL;
    if (ignore_env) { /* what lua -E does: luaopen_package reads this */
        lua_pushboolean(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
    }
    luaL_openlibs(L);
    lua_getglobal(L, "os");
    lua_pushcfunction(L, os_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
    /* Generational, with a young collection when the heap has grown 60%
     * (Lua's default is 20%): each young collection also goes over every
     * live coroutine's stack, and a wide tree keeps thousands of them (its
     * agents waiting for their commits). A B=4 D=6 tree: a third less
     * collector work, 3% fewer instructions in all (callgrind), 6-12% less
     * CPU in alternating runs; peak RSS the same within noise (+-5%). */
    lua_gc(L, LUA_GCGEN, 60, 0);
    nyx_sched_open(L);
    preload(L, "cjson", luaopen_cjson);
    preload(L, "cjson.safe", luaopen_cjson_safe);
    preload(L, "nyx.core", luaopen_nyx_core);
    preload(L, "nyx.db", luaopen_nyx_db);
    preload(L, "nyx.task", luaopen_nyx_task);
    preload(L, "nyx.claude", luaopen_nyx_claude);
    preload(L, "nyx.limits", luaopen_nyx_limits);
    preload(L, "nyx.proc", luaopen_nyx_proc);
    preload(L, "nyx.repl", luaopen_nyx_repl);
    set_path(L, ignore_env);
    add_searcher(L);
    return L;
}
