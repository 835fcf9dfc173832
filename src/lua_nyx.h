/* The Lua side of nyx: creating the state with the nyx modules in it, the
 * one door from C into Lua (nyx_pcall), and nyx's structured errors. */
#ifndef NYX_LUA_NYX_H
#define NYX_LUA_NYX_H

#include <lua.h>

/* A Lua state with the standard libraries, lua-cjson, the nyx modules
 * preloaded, package.path starting with nyx's lua/ folder and
 * NYX_LUA_PATH, and the embedded library as a fallback searcher. With
 * ignore_env, LUA_PATH & co. and NYX_LUA_PATH are ignored (lua -E). */
lua_State *nyx_lua_new(int ignore_env);
/* lua_close, and the state's allocator with it. */
void nyx_lua_close(lua_State *L);

/* lua_pcall with a traceback handler: on error, the message (with its
 * traceback) is left on the stack. */
int nyx_pcall(lua_State *L, int nargs, int nresults);

/* Prints the error on top of the stack to stderr as "nyx: ..." if status
 * is not LUA_OK; returns status. */
int nyx_report(lua_State *L, int status);

/* Pushes a structured error: a table {type=..., message=...} with the
 * "nyx.error" metatable (__tostring gives the message). stack: +1 */
void nyx_push_error(lua_State *L, const char *type, const char *message);

/* Pushes a structured error and raises it. */
int nyx_raise(lua_State *L, const char *type, const char *message);

/* Pushes onto L the error at index idx of thread co as a report: its
 * message and co's traceback from level on (only the message for errors
 * of the outside world, which say all in one line). stack: +1 */
void nyx_push_traceback(lua_State *L, lua_State *co, int idx, int level);

/* luaL_ref/luaL_unref on the registry, counted, so tests can see that
 * tasks and callbacks do not leak references. nyx_ref pops the value. */
int nyx_ref(lua_State *L);
void nyx_unref(lua_State *L, int ref);
long nyx_ref_count(void);

/* Registers (once) the metatable name with gc as its __gc, for userdata
 * that own something outside Lua. stack: 0 */
void nyx_gc_metatable(lua_State *L, const char *name, lua_CFunction gc);

/* The state's one block of size bytes kept in the registry under key (it
 * lives as long as the state): made zeroed on first use, with *fresh set
 * so the caller fills it in. stack: 0 */
void *nyx_state_block(lua_State *L, const void *key, size_t size, int *fresh);

/* Gives a malloc'd block to the garbage collector: a userdata whose __gc
 * frees it, so a raise cannot leak it. stack: +1 */
void nyx_box_malloc(lua_State *L, void *p);

int luaopen_nyx_core(lua_State *L);
int luaopen_nyx_db(lua_State *L);
int luaopen_nyx_claude(lua_State *L);
int luaopen_nyx_limits(lua_State *L);
int luaopen_nyx_proc(lua_State *L);
int luaopen_nyx_repl(lua_State *L);

#endif
