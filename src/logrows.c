/* Log rows in C (logrows.h). A caller's rows become text when logged:
 * each value the element of a PostgreSQL array literal, in one buffer per
 * caller, its table and column names interned. Until then the rows were
 * Lua tables kept until their batch was written (about a kilobyte per
 * row, and the collector's work), and a batch was folded and grouped in
 * Lua (lua/nyx/dblog.lua, as it was), then turned into arrays: a fifth of
 * nyx's CPU for each LLM call of a fractal tree. */
#include "logrows.h"
#include "json.h"
#include "lua_json.h"
#include "lua_nyx.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names, column lists, merges, types ---------------------------------- */

struct lr_name {
    uint64_t hash;
    size_t len;
    int is_id; /* "id": a column whose 36-byte values are written ids */
    char s[];
};

struct lr_shape {
    uint64_t hash;
    int ncols;
    const lr_name *cols[];
};

/* Where an update's columns go in a row of shape a: into is a's columns
 * with those a lacks appended (interned, so rows widened alike share it). */
typedef struct lr_merge {
    uint64_t hash;
    const lr_shape *a, *u, *into;
    int at[]; /* u's column i is into's column at[i] (i >= 1) */
} lr_merge;

typedef struct lr_type {
    const lr_name *table, *col; /* NULL table: a free slot */
    char *type;
} lr_type;

/* Open addressing on items that begin with their 64-bit hash: a power of
 * two slots, at most half full. */
typedef struct htab {
    void **slot;
    size_t cap, n;
} htab;

struct lr_catalog {
    htab names, shapes, merges;
    lr_type *types;
    size_t tcap, tn;
    nyx_buf scratch; /* a table's JSON before it is quoted */
};

#define FNV0 0xcbf29ce484222325u

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3u;
    }
    return h;
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    return h;
}

/* Room for one more item; -1: no memory (t unchanged). */
static int htab_room(htab *t)
{
    if (2 * (t->n + 1) <= t->cap)
        return 0;
    size_t cap = t->cap ? 2 * t->cap : 64;
    void **slot = calloc(cap, sizeof *slot);
    if (!slot)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slot[i])
            continue;
        size_t j = *(const uint64_t *)t->slot[i] & (cap - 1);
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = t->slot[i];
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
    return 0;
}

static void htab_put(htab *t, void *item)
{
    size_t j = *(const uint64_t *)item & (t->cap - 1);
    while (t->slot[j])
        j = (j + 1) & (t->cap - 1);
    t->slot[j] = item;
    t->n++;
}

static void htab_free(htab *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->slot[i]);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

static const lr_name *find_name(const lr_catalog *c, const char *s, size_t len,
                                uint64_t h)
{
    if (!c->names.cap)
        return NULL;
    for (size_t i = h & (c->names.cap - 1); c->names.slot[i];
         i = (i + 1) & (c->names.cap - 1)) {
        const lr_name *x = c->names.slot[i];
        if (x->hash == h && x->len == len && memcmp(x->s, s, len) == 0)
            return x;
    }
    return NULL;
}

/* The interned name; NULL: no memory. */
static const lr_name *intern_name(lr_catalog *c, const char *s, size_t len)
{
    uint64_t h = fnv(s, len, FNV0);
    const lr_name *x = find_name(c, s, len, h);
    if (x)
        return x;
    if (htab_room(&c->names) < 0)
        return NULL;
    lr_name *n = malloc(sizeof *n + len + 1);
    if (!n)
        return NULL;
    n->hash = h;
    n->len = len;
    memcpy(n->s, s, len);
    n->s[len] = '\0';
    n->is_id = len == 2 && memcmp(s, "id", 2) == 0;
    htab_put(&c->names, n);
    return n;
}

static const lr_shape *intern_shape(lr_catalog *c, const lr_name *const *cols,
                                    int n)
{
    size_t size = sizeof *cols * (size_t)n;
    uint64_t h = fnv(cols, size, FNV0);
    if (c->shapes.cap)
        for (size_t i = h & (c->shapes.cap - 1); c->shapes.slot[i];
             i = (i + 1) & (c->shapes.cap - 1)) {
            const lr_shape *x = c->shapes.slot[i];
            if (x->hash == h && x->ncols == n &&
                memcmp(x->cols, cols, size) == 0)
                return x;
        }
    if (htab_room(&c->shapes) < 0)
        return NULL;
    lr_shape *s = malloc(sizeof *s + size);
    if (!s)
        return NULL;
    s->hash = h;
    s->ncols = n;
    memcpy(s->cols, cols, size);
    htab_put(&c->shapes, s);
    return s;
}

static const lr_merge *merge_of(lr_catalog *c, const lr_shape *a,
                                const lr_shape *u)
{
    uint64_t h = mix((uint64_t)(uintptr_t)a * 31 + (uint64_t)(uintptr_t)u);
    if (c->merges.cap)
        for (size_t i = h & (c->merges.cap - 1); c->merges.slot[i];
             i = (i + 1) & (c->merges.cap - 1)) {
            const lr_merge *x = c->merges.slot[i];
            if (x->a == a && x->u == u)
                return x;
        }
    if (htab_room(&c->merges) < 0)
        return NULL;
    lr_merge *m = malloc(sizeof *m + sizeof(int) * (size_t)u->ncols);
    const lr_name **cols = malloc(sizeof *cols * (size_t)(a->ncols + u->ncols));
    if (!m || !cols) {
        free(m);
        free(cols);
        return NULL;
    }
    memcpy(cols, a->cols, sizeof *cols * (size_t)a->ncols);
    int n = a->ncols;
    m->at[0] = 0;
    for (int i = 1; i < u->ncols; i++) {
        int j = 0;
        while (j < n && cols[j] != u->cols[i])
            j++;
        if (j == n)
            cols[n++] = u->cols[i];
        m->at[i] = j;
    }
    m->hash = h;
    m->a = a;
    m->u = u;
    m->into = n == a->ncols ? a : intern_shape(c, cols, n);
    free(cols);
    if (!m->into) {
        free(m);
        return NULL;
    }
    htab_put(&c->merges, m);
    return m;
}

static size_t type_slot(const lr_catalog *c, const lr_name *t,
                        const lr_name *col)
{
    size_t i = mix((uint64_t)(uintptr_t)t ^ (uint64_t)(uintptr_t)col * 7) &
               (c->tcap - 1);
    while (c->types[i].table &&
           (c->types[i].table != t || c->types[i].col != col))
        i = (i + 1) & (c->tcap - 1);
    return i;
}

static const char *type_find(const lr_catalog *c, const lr_name *t,
                             const lr_name *col)
{
    if (!c->tcap)
        return NULL;
    const lr_type *x = &c->types[type_slot(c, t, col)];
    return x->table ? x->type : NULL;
}

static void types_clear(lr_catalog *c)
{
    for (size_t i = 0; i < c->tcap; i++)
        free(c->types[i].type);
    free(c->types);
    c->types = NULL;
    c->tcap = c->tn = 0;
}

void lr_types_begin(lr_catalog *cat) { types_clear(cat); }

int lr_types_add(lr_catalog *c, const char *table, const char *column,
                 const char *type)
{
    const lr_name *t = intern_name(c, table, strlen(table));
    const lr_name *col = intern_name(c, column, strlen(column));
    if (!t || !col)
        return -1;
    if (2 * (c->tn + 1) > c->tcap) {
        size_t cap = c->tcap ? 2 * c->tcap : 256;
        lr_catalog bigger = {.types = calloc(cap, sizeof(lr_type)),
                             .tcap = cap};
        if (!bigger.types)
            return -1;
        for (size_t i = 0; i < c->tcap; i++)
            if (c->types[i].table)
                bigger.types[type_slot(&bigger, c->types[i].table,
                                       c->types[i].col)] = c->types[i];
        free(c->types);
        c->types = bigger.types;
        c->tcap = cap;
    }
    lr_type *x = &c->types[type_slot(c, t, col)];
    char *copy = strdup(type);
    if (!copy)
        return -1;
    if (x->table) {
        free(x->type);
    } else {
        x->table = t;
        x->col = col;
        c->tn++;
    }
    x->type = copy;
    return 0;
}

static char CATALOG_KEY;

static int catalog_gc(lua_State *L)
{
    lr_catalog *c = lua_touserdata(L, 1);
    htab_free(&c->names);
    htab_free(&c->shapes);
    htab_free(&c->merges);
    types_clear(c);
    nyx_buf_free(&c->scratch);
    return 0;
}

/* The catalog, and its cache of the column lists seen (a Lua table of
 * weak keys: columns table -> lightuserdata shape). stack: +1 (the cache)
 * when cache is set */
static lr_catalog *catalog(lua_State *L, int cache)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &CATALOG_KEY) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        lr_catalog *c = lua_newuserdatauv(L, sizeof *c, 1);
        memset(c, 0, sizeof *c);
        nyx_gc_metatable(L, "nyx.db.logcatalog", catalog_gc);
        luaL_setmetatable(L, "nyx.db.logcatalog");
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_setiuservalue(L, -2, 1);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &CATALOG_KEY);
    }
    lr_catalog *c = lua_touserdata(L, -1);
    if (cache)
        lua_getiuservalue(L, -1, 1);
    lua_remove(L, cache ? -2 : -1);
    return c;
}

lr_catalog *lr_catalog_get(lua_State *L) { return catalog(L, 0); }

/* ---- reading a caller's rows --------------------------------------------- */

/* A name as nyx's tables and columns are named: lowercase letters, digits
 * and underscores, not starting with a digit (it goes into SQL as is). */
static int is_ident(const char *s, size_t len)
{
    if (len == 0 || len > 63 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_'))
            return 0;
    return 1;
}

#define BAD(...) luaL_error(L, "bad argument #1 to 'log' (" __VA_ARGS__)

/* The shape of the columns table on top (popped), from the cache at
 * index cache or made. */
static const lr_shape *shape_of(lua_State *L, lr_catalog *c, int cache, int row)
{
    int cols = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, cols);
    lua_pushvalue(L, cols);
    if (lua_rawget(L, cache) == LUA_TLIGHTUSERDATA) {
        const lr_shape *s = lua_touserdata(L, -1);
        lua_pop(L, 1);
        if (s->ncols == n) { /* a list changed since is read again */
            lua_pop(L, 1);
            return s;
        }
    } else {
        lua_pop(L, 1);
    }
    if (n < 1)
        BAD("row %d has no columns)", row);
    if (n > 1600) /* PostgreSQL's most columns */
        BAD("row %d has more than 1600 columns)", row);
    const lr_name *names[1600];
    for (lua_Integer i = 1; i <= n; i++) {
        size_t len;
        const char *s = lua_rawgeti(L, cols, i) == LUA_TSTRING
                            ? lua_tolstring(L, -1, &len)
                            : NULL;
        if (!s || !is_ident(s, len))
            BAD("row %d: column %d is not a lowercase SQL name)", row, (int)i);
        if (!(names[i - 1] = intern_name(c, s, len)))
            luaL_error(L, "out of memory");
        lua_pop(L, 1);
    }
    const lr_shape *s = intern_shape(c, names, (int)n);
    if (!s)
        luaL_error(L, "out of memory");
    lua_pushlightuserdata(L, (void *)s);
    lua_rawset(L, cache); /* cache[columns] = shape; pops both */
    return s;
}

/* The value on top as slot s's text, appended to out->text (s->p holds
 * its offset until the rows are read). Returns a string's length, else 0. */
static size_t read_value(lua_State *L, lr_rows *out, lr_slot *s, nyx_buf *tmp,
                         int row, const lr_name *col)
{
    nyx_buf *b = &out->text;
    size_t at = b->len;
    int rc = 0;
    size_t len;
    const char *str;
    s->kind = LR_NULL;
    s->p = NULL;
    s->len = 0;
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
    case LUA_TLIGHTUSERDATA: /* nyx.json.null */
        return 0;
    case LUA_TBOOLEAN:
        s->kind = LR_BOOL;
        rc = nyx_buf_add(b, lua_toboolean(L, -1) ? "t" : "f", 1);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
            s->kind = LR_NUM;
            rc = nyx_json_add_integer(b, lua_tointeger(L, -1));
        } else {
            double d = lua_tonumber(L, -1);
            s->kind = isfinite(d) ? LR_NUM : LR_SPECIAL;
            rc = isnan(d)    ? nyx_buf_add(b, "\"NaN\"", 5)
                 : !isinf(d) ? nyx_json_add_number(b, d)
                 : d > 0     ? nyx_buf_add(b, "\"Infinity\"", 10)
                             : nyx_buf_add(b, "\"-Infinity\"", 11);
        }
        break;
    case LUA_TSTRING:
        s->kind = LR_STR;
        str = lua_tolstring(L, -1, &len);
        if (memchr(str, '\0', len)) /* PostgreSQL's text cannot hold one */
            BAD("row %d, column %s: a string with a NUL byte)", row, col->s);
        rc = nyx_pg_array_quote(b, str, len);
        break;
    case LUA_TTABLE: /* JSON, in any column */
        s->kind = LR_JSON;
        tmp->len = 0;
        rc = nyx_json_add_value(L, -1, tmp);
        if (rc == 0)
            rc = nyx_pg_array_quote(b, tmp->data ? tmp->data : "", tmp->len);
        break;
    default:
        BAD("row %d, column %s: a %s cannot be logged)", row, col->s,
            luaL_typename(L, -1));
    }
    if (rc < 0)
        luaL_error(L, "out of memory");
    if (b->len - at > UINT32_MAX)
        BAD("row %d, column %s: a value over 4 GB)", row, col->s);
    s->p = (const char *)(uintptr_t)at;
    s->len = (uint32_t)(b->len - at);
    return s->kind == LR_STR ? len : 0;
}

/* t[key] where key is at index k (raw: a row is a plain table). */
static int field(lua_State *L, int t, int k)
{
    lua_pushvalue(L, k);
    return lua_rawget(L, t);
}

void lr_rows_read(lua_State *L, lr_catalog *c, int idx, lr_rows *out,
                  int append)
{
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 16, "log rows");
    /* counted first, so that the arrays are made once, at their size */
    long nrows = 0, nvalues = 0;
    for (lua_Integer i = 1; lua_rawgeti(L, idx, i) == LUA_TTABLE; i++) {
        lua_pushliteral(L, "columns");
        if (lua_rawget(L, -2) != LUA_TTABLE)
            BAD("row %d has no columns)", (int)i);
        nvalues += (long)lua_rawlen(L, -1);
        lua_pop(L, 2);
        if (++nrows > INT_MAX / 64 || nvalues > INT_MAX / 64)
            BAD("more rows than one call can log: log them in separate "
                "calls)");
    }
    lua_pop(L, 1);
    if ((long)lua_rawlen(L, idx) > nrows)
        BAD("row %d is not a table)", (int)nrows + 1);
    /* one block: the rows, their slots, the ids */
    char *block =
        malloc(sizeof *out->rows * (size_t)nrows +
               (sizeof *out->slots + sizeof *out->ids) * (size_t)nvalues + 1);
    if (!block)
        luaL_error(L, "out of memory");
    out->rows = (lr_row *)block;
    out->slots = (lr_slot *)(out->rows + nrows);
    out->ids = (const char **)(out->slots + nvalues);
    out->nrows = (int)nrows;
    out->nvalues = 0; /* set once read; cap: room for them */
    int cap = (int)nvalues;
    catalog(L, 1);
    int cache = lua_gettop(L);
    nyx_buf *tmp = &c->scratch;
    lua_pushliteral(L, "table");
    lua_pushliteral(L, "columns");
    lua_pushliteral(L, "update");
    lua_pushliteral(L, "values");
    int k_table = cache + 1, k_columns = cache + 2, k_update = cache + 3,
        k_values = cache + 4;
    const char **ids = out->ids; /* offsets in the text, until the end */
    int nw = 0, nr = 0;
    lr_slot *slot = out->slots;
    for (int r = 0; r < out->nrows; r++) {
        int row = r + 1;
        lua_rawgeti(L, idx, row);
        int t = lua_gettop(L);
        lr_row *rw = &out->rows[r];
        size_t len;
        const char *name = field(L, t, k_table) == LUA_TSTRING
                               ? lua_tolstring(L, -1, &len)
                               : NULL;
        if (!name || !is_ident(name, len))
            BAD("row %d: its table is not a lowercase SQL name)", row);
        if (!(rw->table = intern_name(c, name, len)))
            luaL_error(L, "out of memory");
        lua_pop(L, 1);
        field(L, t, k_columns);
        rw->shape = shape_of(L, c, cache, row);
        field(L, t, k_update);
        rw->update = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (rw->update && append)
            BAD("row %d is an update: append rows are inserts only)", row);
        if (rw->update && rw->shape->ncols < 2)
            BAD("row %d: an update names its key column, then those it "
                "sets)",
                row);
        if (slot + rw->shape->ncols > out->slots + cap)
            BAD("row %d: its columns changed while it was read)", row);
        if (field(L, t, k_values) != LUA_TTABLE)
            BAD("row %d has no values)", row);
        rw->slots = slot;
        for (int k = 0; k < rw->shape->ncols; k++, slot++) {
            lua_rawgeti(L, t + 1, k + 1);
            size_t n = read_value(L, out, slot, tmp, row, rw->shape->cols[k]);
            lua_pop(L, 1);
            /* a UUID's text: 36 bytes, quoted, none escaped */
            if (n == 36 && slot->len == 38) {
                const char *at = (const char *)((uintptr_t)slot->p + 1);
                if (k == 0 || rw->shape->cols[k]->is_id)
                    ids[nw++] = at;
                else
                    ids[cap - ++nr] = at;
            }
        }
        lua_settop(L, t - 1);
    }
    lua_settop(L, cache - 1); /* the keys, the cache */
    /* the text at its size, then offsets made pointers */
    if (out->text.data && out->text.cap > out->text.len + 1) {
        char *p = realloc(out->text.data, out->text.len + 1);
        if (p) {
            out->text.data = p;
            out->text.cap = out->text.len + 1;
        }
    }
    out->nvalues = (int)(slot - out->slots); /* fewer if a list shrank */
    const char *base = out->text.data;
    for (int i = 0; i < out->nvalues; i++)
        if (out->slots[i].kind != LR_NULL)
            out->slots[i].p = base + (uintptr_t)out->slots[i].p;
    memmove(ids + nw, ids + cap - nr, sizeof *ids * (size_t)nr);
    for (int i = 0; i < nw + nr; i++)
        ids[i] = base + (uintptr_t)ids[i];
    out->nwrite = nw;
    out->nids = nw + nr;
}

void lr_rows_free(lr_rows *r)
{
    free(r->rows); /* the slots and ids with them */
    nyx_buf_free(&r->text);
    memset(r, 0, sizeof *r);
}

/* ---- a batch's statement --------------------------------------------------
 */

typedef struct out_row {
    lr_row r;
    int own;  /* r.slots is the batch's (a fold's copy) */
    int next; /* the next row of its group, or -1 */
} out_row;

typedef struct group {
    const lr_name *table;
    const lr_shape *shape;
    int update, first, last, count;
} group;

static int same_slot(const lr_slot *a, const lr_slot *b)
{
    return a->kind == b->kind && a->len == b->len &&
           memcmp(a->p, b->p, a->len) == 0;
}

/* The text of a quoted slot without its quotes and escapes. */
static int unquote(nyx_buf *b, const lr_slot *s)
{
    if (nyx_buf_reserve(b, s->len) < 0)
        return -1;
    char *o = b->data + b->len;
    for (const char *p = s->p + 1, *end = s->p + s->len - 1; p < end; p++) {
        if (*p == '\\')
            p++;
        *o++ = *p;
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

/* Slot s as an element of column c's array; json: c is json or jsonb, so
 * a string (or NaN, Infinity) is written as a JSON string, a boolean as
 * JSON. tmp: two scratch buffers. */
static int add_element(nyx_buf *b, nyx_buf *tmp, const lr_slot *s, int json)
{
    switch (s->kind) {
    case LR_NULL:
        return nyx_buf_add(b, "NULL", 4);
    case LR_BOOL:
        if (json)
            return *s->p == 't' ? nyx_buf_add(b, "true", 4)
                                : nyx_buf_add(b, "false", 5);
        break;
    case LR_STR:
    case LR_SPECIAL: /* NaN, Infinity: JSON's strings, as on the JSON path */
        if (json) {
            tmp[0].len = tmp[1].len = 0;
            if (unquote(&tmp[1], s) < 0 ||
                nyx_json_quote(&tmp[0], tmp[1].data, tmp[1].len) < 0)
                return -1;
            return nyx_pg_array_quote(b, tmp[0].data, tmp[0].len);
        }
        break;
    }
    return nyx_buf_add(b, s->p, s->len);
}

/* Slot s as a JSON value (not LR_NULL: left out). */
static int add_json(nyx_buf *b, nyx_buf *tmp, const lr_slot *s)
{
    switch (s->kind) {
    case LR_BOOL:
        return *s->p == 't' ? nyx_buf_add(b, "true", 4)
                            : nyx_buf_add(b, "false", 5);
    case LR_STR:
        tmp->len = 0;
        return unquote(tmp, s) < 0 ? -1
                                   : nyx_json_quote(b, tmp->data, tmp->len);
    case LR_JSON:
        return unquote(b, s);
    default: /* a number, or a quoted NaN: JSON as it is */
        return nyx_buf_add(b, s->p, s->len);
    }
}

/* "a,b,c": the shape's column names. */
static int add_list(nyx_buf *b, const lr_shape *s)
{
    int rc = 0;
    for (int c = 0; c < s->ncols; c++)
        rc |= (c ? nyx_buf_add(b, ",", 1) : 0) |
              nyx_buf_add(b, s->cols[c]->s, s->cols[c]->len);
    return rc;
}

/* Starts parameter k: the text from here on, NUL-terminated when ended. */
static int begin_param(lr_batch *b)
{
    if (b->nparams == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        size_t *at = realloc(b->at, sizeof *at * (size_t)cap);
        if (!at)
            return -1;
        b->at = at;
        b->cap = cap;
    }
    b->at[b->nparams++] = b->text.len;
    return 0;
}

static int end_param(lr_batch *b)
{
    if (nyx_buf_reserve(&b->text, 1) < 0)
        return -1;
    b->text.len++; /* past the NUL nyx_buf keeps */
    b->text.data[b->text.len] = '\0';
    return 0;
}

/* Group g's statement (its rows as parameters), appended to b->sql. */
static int add_group(lr_catalog *c, lr_batch *b, const group *g,
                     const out_row *out, nyx_buf *tmp)
{
    const lr_shape *s = g->shape;
    int typed = 1, rc = 0;
    char json[1600];
    if (s->ncols > 1600) /* widened by folds past PostgreSQL's columns */
        typed = 0;
    for (int k = 0; k < s->ncols && typed; k++) {
        const char *ty = type_find(c, g->table, s->cols[k]);
        size_t n = ty ? strlen(ty) : 0;
        typed = ty && !(n >= 2 && strcmp(ty + n - 2, "[]") == 0);
        json[k] =
            typed && (strcmp(ty, "json") == 0 || strcmp(ty, "jsonb") == 0);
    }
    nyx_buf src = {0};
    if (typed) {
        /* one array per column, unnest()ed: the server parses each value
         * with its type's input function and nothing else */
        rc |= nyx_buf_add(&src, "unnest(", 7);
        for (int k = 0; k < s->ncols && rc == 0; k++) {
            rc |= begin_param(b) | nyx_buf_add(&b->text, "{", 1);
            for (int r = g->first, n = 0; r >= 0 && rc == 0;
                 r = out[r].next, n++)
                rc |= (n ? nyx_buf_add(&b->text, ",", 1) : 0) |
                      add_element(&b->text, tmp, &out[r].r.slots[k], json[k]);
            rc |= nyx_buf_add(&b->text, "}", 1) | end_param(b);
            rc |= nyx_buf_addf(&src, "%s$%d::%s[]", k ? ", " : "", b->nparams,
                               type_find(c, g->table, s->cols[k]));
        }
        rc |= nyx_buf_add(&src, ") v(", 4) | add_list(&src, s) |
              nyx_buf_add(&src, ")", 1);
    } else {
        /* a table made since, or an array column: JSON, typed by the
         * table's own row type */
        rc |= begin_param(b) | nyx_buf_add(&b->text, "[", 1);
        for (int r = g->first, n = 0; r >= 0 && rc == 0; r = out[r].next, n++) {
            rc |= nyx_buf_add(&b->text, n ? ",{" : "{", n ? 2 : 1);
            int first = 1;
            for (int k = 0; k < s->ncols && rc == 0; k++) {
                const lr_slot *v = &out[r].r.slots[k];
                if (v->kind == LR_NULL)
                    continue;
                rc |= (first ? 0 : nyx_buf_add(&b->text, ",", 1)) |
                      nyx_json_quote(&b->text, s->cols[k]->s, s->cols[k]->len) |
                      nyx_buf_add(&b->text, ":", 1) |
                      add_json(&b->text, tmp, v);
                first = 0;
            }
            rc |= nyx_buf_add(&b->text, "}", 1);
        }
        rc |= nyx_buf_add(&b->text, "]", 1) | end_param(b);
        rc |= nyx_buf_addf(&src, "json_populate_recordset(NULL::%s, $%d) v",
                           g->table->s, b->nparams);
    }
    if (g->update) {
        rc |= nyx_buf_addf(&b->sql, "UPDATE %s t SET ", g->table->s);
        for (int k = 1; k < s->ncols; k++)
            rc |= nyx_buf_addf(&b->sql, "%s%s = v.%s", k > 1 ? ", " : "",
                               s->cols[k]->s, s->cols[k]->s);
        rc |= nyx_buf_addf(&b->sql, " FROM %s WHERE t.%s = v.%s",
                           src.data ? src.data : "", s->cols[0]->s,
                           s->cols[0]->s);
    } else {
        rc |= nyx_buf_addf(&b->sql, "INSERT INTO %s (", g->table->s) |
              add_list(&b->sql, s) | nyx_buf_add(&b->sql, ") SELECT ", 9) |
              add_list(&b->sql, s) |
              nyx_buf_addf(&b->sql, " FROM %s", src.data ? src.data : "");
    }
    nyx_buf_free(&src);
    return rc ? -1 : 0;
}

static size_t pow2_above(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

int lr_build(lr_catalog *c, lr_rows *const *callers, int n, lr_batch *b,
             nyx_err *err)
{
    memset(b, 0, sizeof *b);
    size_t total = 0;
    int updates = 0;
    for (int i = 0; i < n; i++) {
        total += (size_t)callers[i]->nrows;
        for (int r = 0; r < callers[i]->nrows && !updates; r++)
            updates = callers[i]->rows[r].update;
    }
    if (total == 0)
        return 0;
    size_t kcap = pow2_above(total);
    out_row *out = malloc(sizeof *out * total);
    group *groups = malloc(sizeof *groups * total);
    int *keyed = updates ? malloc(sizeof *keyed * kcap) : NULL;
    int *grouped = malloc(sizeof *grouped * kcap);
    nyx_buf tmp[2] = {{0}, {0}}; /* scratch for values requoted as JSON */
    int nout = 0, ng = 0, rc = 0;
    if (!out || !groups || !grouped || (updates && !keyed))
        goto nomem;
    /* folded: an update of a row before it in the batch (same table, same
     * key) becomes part of it. Rows of a statement all see the same
     * snapshot: an UPDATE could not see an INSERT of its own batch, nor
     * should one row be updated twice. */
    if (keyed)
        memset(keyed, -1, sizeof *keyed * kcap);
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < callers[i]->nrows; r++) {
            const lr_row *row = &callers[i]->rows[r];
            const lr_slot *id = &row->slots[0];
            size_t k = 0;
            if (keyed && id->kind != LR_NULL) {
                uint64_t h = mix(fnv(id->p, id->len,
                                     FNV0 ^ (uint64_t)(uintptr_t)row->table));
                for (k = h & (kcap - 1); keyed[k] >= 0;
                     k = (k + 1) & (kcap - 1)) {
                    const out_row *o = &out[keyed[k]];
                    if (o->r.table == row->table &&
                        same_slot(&o->r.slots[0], id))
                        break;
                }
                if (keyed[k] >= 0 && row->update) {
                    out_row *t = &out[keyed[k]];
                    const lr_merge *m = merge_of(c, t->r.shape, row->shape);
                    if (!m)
                        goto nomem;
                    if (!t->own || m->into != t->r.shape) {
                        lr_slot *s = malloc(sizeof *s * (size_t)m->into->ncols);
                        if (!s)
                            goto nomem;
                        memcpy(s, t->r.slots,
                               sizeof *s * (size_t)t->r.shape->ncols);
                        for (int j = t->r.shape->ncols; j < m->into->ncols; j++)
                            s[j] = (lr_slot){NULL, 0, LR_NULL};
                        if (t->own)
                            free(t->r.slots);
                        t->r.slots = s;
                        t->r.shape = m->into;
                        t->own = 1;
                    }
                    for (int j = 1; j < row->shape->ncols; j++)
                        t->r.slots[m->at[j]] = row->slots[j];
                    continue;
                }
            }
            out[nout] = (out_row){*row, 0, -1};
            if (keyed && id->kind != LR_NULL)
                keyed[k] = nout;
            nout++;
        }
    }
    /* grouped by table, columns and kind, in the order they first come */
    memset(grouped, -1, sizeof *grouped * kcap);
    for (int r = 0; r < nout; r++) {
        const lr_row *row = &out[r].r;
        uint64_t h =
            mix((uint64_t)(uintptr_t)row->table * 31 +
                (uint64_t)(uintptr_t)row->shape * 2 + (uint64_t)row->update);
        size_t k = h & (kcap - 1);
        for (; grouped[k] >= 0; k = (k + 1) & (kcap - 1)) {
            const group *g = &groups[grouped[k]];
            if (g->table == row->table && g->shape == row->shape &&
                g->update == row->update)
                break;
        }
        if (grouped[k] < 0) {
            grouped[k] = ng;
            groups[ng++] =
                (group){row->table, row->shape, row->update, r, r, 0};
        } else {
            group *g = &groups[grouped[k]];
            out[g->last].next = r;
            g->last = r;
        }
        groups[grouped[k]].count++;
    }
    /* one statement per group, chained in a WITH: one round trip, atomic */
    for (int i = 0; i < ng && rc == 0; i++) {
        if (i == 0 && ng > 1)
            rc |= nyx_buf_add(&b->sql, "WITH ", 5);
        if (i < ng - 1)
            rc |= nyx_buf_addf(&b->sql, "g%d AS (", i + 1);
        rc |= add_group(c, b, &groups[i], out, tmp);
        if (i < ng - 1)
            rc |= nyx_buf_add(&b->sql,
                              i < ng - 2 ? " RETURNING 1), " : " RETURNING 1) ",
                              i < ng - 2 ? 15 : 14);
        *(groups[i].update ? &b->updated : &b->inserted) +=
            (unsigned long long)groups[i].count;
    }
    if (rc)
        goto nomem;
    b->params = malloc(sizeof *b->params * (size_t)(b->nparams + 1));
    if (!b->params)
        goto nomem;
    for (int k = 0; k < b->nparams; k++)
        b->params[k] = b->text.data + b->at[k];
    rc = 0;
    goto done;
nomem:
    nyx_errf(err, "out of memory building a log batch");
    lr_batch_free(b);
    rc = -1;
done:
    if (out)
        for (int r = 0; r < nout; r++)
            if (out[r].own)
                free(out[r].r.slots);
    free(out);
    free(groups);
    free(keyed);
    free(grouped);
    nyx_buf_free(&tmp[0]);
    nyx_buf_free(&tmp[1]);
    return rc;
}

void lr_batch_free(lr_batch *b)
{
    nyx_buf_free(&b->sql);
    nyx_buf_free(&b->text);
    free(b->at);
    free(b->params);
    memset(b, 0, sizeof *b);
}
