/* LISTEN/NOTIFY for nyx.db (src/lua_listen.c): the listening connection
 * on the event loop and the functions nyx.db registers. */
#ifndef NYX_LUA_LISTEN_H
#define NYX_LUA_LISTEN_H

#include "pg.h"

#include <lua.h>

int nyx_db_listen(lua_State *L);   /* nyx.db.listen(channel, fn) */
int nyx_db_unlisten(lua_State *L); /* nyx.db.unlisten(channel) */

/* The channel name at idx, checked (a lowercase identifier), or a raise. */
const char *nyx_listen_check_channel(lua_State *L, int idx);

/* Closes the listening connection (the default connection was closed or
 * replaced); the functions stay, and the next listen() listens again. */
void nyx_listen_close(lua_State *L);

/* The default connection of nyx.db, opened if need be (lua_db.c). */
nyx_pg *nyx_db_default_pg(lua_State *L);

#endif
