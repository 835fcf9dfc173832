/* JSON to and from Lua values for nyx's own use: integers stay integers,
 * no printf for them, parsing straight into Lua values. (nyx.json, for
 * scripts, is lua-cjson.) */
#ifndef NYX_LUA_JSON_H
#define NYX_LUA_JSON_H

#include "util.h"

#include <lua.h>
#include <stddef.h>

/* The metatable (in the registry) of {json_text}: a value the encoder
 * writes as the text it holds (nyx.core.json_raw). */
#define NYX_JSON_RAW "nyx.json.raw"

/* Pushes the JSON text of the value at idx; raises on what JSON cannot
 * hold (functions, NaN, cycles). An empty table is {}. stack: +1 */
void nyx_json_encode(lua_State *L, int idx);

/* Pushes a buffer the GC frees, so that it is not lost when what fills
 * it raises (free it early with nyx_buf_free). stack: +1 */
nyx_buf *nyx_json_push_buf(lua_State *L);

/* Appends the JSON text of the value at idx (raises as nyx_json_encode). */
int nyx_json_add_value(lua_State *L, int idx, nyx_buf *b);

/* Pushes {text} with the NYX_JSON_RAW metatable (nyx.core.json_raw).
 * stack: +1 */
void nyx_json_push_raw(lua_State *L, const char *s, size_t len);

int nyx_json_add_integer(nyx_buf *b, lua_Integer v);
/* Appends a float as the encoder writes it: the shortest of %.15g and
 * %.17g that reads back the same. */
int nyx_json_add_number(nyx_buf *b, double d);

/* Appends s as a quoted element of a PostgreSQL array literal: in double
 * quotes, each quote and backslash after a backslash. -1: no memory. */
int nyx_pg_array_quote(nyx_buf *b, const char *s, size_t len);

/* Pushes the value of the JSON text and returns 1, or pushes nil and a
 * message and returns 2. A JSON null becomes the value at stack index
 * null, or nil (absent) when null is 0. */
int nyx_json_decode(lua_State *L, const char *s, size_t len, int null);

#endif
