/* nyx.db: PostgreSQL from Lua. Module functions use the default
 * connection (opened on first use: NYX_DATABASE_URL, the PG* variables or
 * the embedded cluster, migrated); the same functions are methods of
 * connection objects from nyx.db.open. Queries always take parameters
 * ($1, $2, ...) separately from the SQL text. */
#include "database.h"
#include "logrows.h"
#include "lua_json.h"
#include "lua_listen.h"
#include "lua_nyx.h"
#include "lua_task.h"
#include "migrate.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define CONN_MT "nyx.db.conn"
#define RES_MT  "nyx.db.result"

typedef struct conn {
    nyx_pg *pg;
    unsigned generation; /* which default connection this is (or follows) */
    int tx_depth;        /* nesting of transaction(): 0 outside */
    int embedded;
    char source[32];
} conn;

static char DEFAULT_KEY;    /* registry[&DEFAULT_KEY] = the default conn */
static char LOG_KEY[2];     /* registry[&LOG_KEY[i]] = lane i's connection */
static unsigned generation; /* counts default connections made */

static int conn_close(lua_State *L)
{
    conn *c = luaL_checkudata(L, 1, CONN_MT);
    nyx_pg_close(c->pg);
    c->pg = NULL;
    return 0;
}

static conn *new_conn(lua_State *L, nyx_pg *pg, const char *source,
                      int embedded)
{
    conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->pg = pg;
    c->embedded = embedded;
    snprintf(c->source, sizeof c->source, "%s", source);
    luaL_setmetatable(L, CONN_MT);
    return c;
}

static int raise_connection(lua_State *L, const char *msg, const char *source)
{
    lua_pushfstring(L, "%s (database chosen by %s)", msg, source);
    return nyx_raise(L, "connection", lua_tostring(L, -1));
}

/* Opens the default database and makes it the default. stack: +1 (conn) */
static conn *connect_default(lua_State *L)
{
    nyx_dbtarget t;
    nyx_err err;
    if (nyx_db_target(&t, &err) < 0)
        raise_connection(L, err.msg, "the environment");
    nyx_pg *pg = nyx_db_open(&t, NYX_DB_MIGRATE, &err);
    if (!pg)
        raise_connection(L, err.msg, t.source);
    conn *c = new_conn(L, pg, t.source, t.embedded);
    c->generation = ++generation;
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DEFAULT_KEY);
    return c;
}

/* The connection a function works on: a conn passed as argument 1 (method
 * call), else the default. *first is set to the first argument after it. */
static conn *get_conn(lua_State *L, int *first)
{
    conn *c = luaL_testudata(L, 1, CONN_MT);
    *first = c ? 2 : 1;
    if (!c) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &DEFAULT_KEY);
        c = lua_touserdata(L, -1);
        lua_pop(L, 1); /* the registry keeps it alive */
        if (!c || !c->pg) {
            c = connect_default(L);
            lua_pop(L, 1);
        }
    }
    if (!c->pg)
        nyx_raise(L, "connection", "the database connection is closed");
    return c;
}

nyx_pg *nyx_db_default_pg(lua_State *L)
{
    lua_pushnil(L); /* not a conn: get_conn takes the default */
    lua_insert(L, 1);
    int first;
    conn *c = get_conn(L, &first);
    lua_remove(L, 1);
    return c->pg;
}

/* ---- values in ------------------------------------------------------- */

/* Pushes the text form of the Lua value at idx as a query parameter (a
 * table as JSON), or nothing for SQL NULL.
 * Returns 1 if it pushed a string. */
static int push_param(lua_State *L, int idx, int n)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TLIGHTUSERDATA: /* cjson.null */
        return 0;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        return 1;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            char buf[64];
            if (isnan(d))
                snprintf(buf, sizeof buf, "NaN");
            else if (isinf(d))
                snprintf(buf, sizeof buf, d > 0 ? "Infinity" : "-Infinity");
            else
                snprintf(buf, sizeof buf, "%.17g", d);
            lua_pushstring(L, buf);
        }
        return 1;
    case LUA_TSTRING:
        lua_pushvalue(L, idx);
        return 1;
    case LUA_TTABLE:
        nyx_json_encode(L, idx);
        return 1;
    default:
        return luaL_error(L,
                          "bad query parameter $%d (%s cannot go into SQL: "
                          "use nil, a boolean, number, string or table)",
                          n, luaL_typename(L, idx));
    }
}

/* Converts the Lua values at first..top into text parameters, which stay
 * on the stack (above top) while the returned array is in use. */
static const char **params(lua_State *L, int first, int *n)
{
    int top = lua_gettop(L);
    *n = top - first + 1;
    if (*n <= 0)
        return NULL;
    if (*n > 65535)
        luaL_error(L, "too many query parameters (%d; PostgreSQL takes 65535)",
                   *n);
    luaL_checkstack(L, *n + 4, "too many query parameters");
    const char **v = lua_newuserdatauv(L, sizeof *v * (size_t)*n, 0);
    for (int i = 0; i < *n; i++)
        v[i] = push_param(L, first + i, i + 1) ? lua_tostring(L, -1) : NULL;
    return v;
}

/* ---- values out ------------------------------------------------------ */

static int res_gc(lua_State *L)
{
    nyx_pg_res **box = luaL_checkudata(L, 1, RES_MT);
    nyx_pg_clear(*box);
    *box = NULL;
    return 0;
}

static void push_value(lua_State *L, nyx_pg_kind kind, const char *v)
{
    switch (kind) {
    case NYX_PG_INT:
    case NYX_PG_FLOAT:
        if (lua_stringtonumber(L, v) == 0)
            lua_pushstring(L, v); /* NaN, Infinity: keep PostgreSQL's text */
        return;
    case NYX_PG_BOOL:
        lua_pushboolean(L, v[0] == 't');
        return;
    case NYX_PG_JSON:
        /* PostgreSQL gave valid JSON; a null in it is cjson.null, as
         * nyx.json would give it */
        lua_pushlightuserdata(L, NULL);
        if (nyx_json_decode(L, v, strlen(v), -1) != 1)
            lua_pop(L, 1); /* cannot happen: leave the message */
        lua_remove(L, -2);
        return;
    case NYX_PG_TEXT:
        lua_pushstring(L, v);
        return;
    }
}

/* stack: +1 (array of rows, each a table keyed by column name) */
static void push_rows(lua_State *L, nyx_pg_res *res)
{
    int rows = nyx_pg_ntuples(res), cols = nyx_pg_nfields(res);
    lua_createtable(L, rows, 0);
    for (int r = 0; r < rows; r++) {
        lua_createtable(L, 0, cols);
        for (int c = 0; c < cols; c++) {
            const char *v = nyx_pg_value(res, r, c);
            if (!v)
                continue; /* NULL: the field is nil */
            push_value(L, nyx_pg_fkind(res, c), v);
            lua_setfield(L, -2, nyx_pg_fname(res, c));
        }
        lua_rawseti(L, -2, r + 1);
    }
}

static void set_string(lua_State *L, const char *key, const char *v)
{
    if (v && *v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, key);
    }
}

static int raise_sql(lua_State *L, conn *c, nyx_pg_res *res)
{
    nyx_pg_error e;
    nyx_pg_res_error(c->pg, res, &e);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", e.message);
    nyx_one_line(msg, sizeof msg);
    nyx_push_error(L, e.connection_lost ? "connection" : "sql", msg);
    set_string(L, "sqlstate", e.sqlstate);
    set_string(L, "detail", e.detail);
    set_string(L, "hint", e.hint);
    set_string(L, "constraint", e.constraint);
    set_string(L, "table", e.table);
    set_string(L, "column", e.column);
    if (e.position) {
        lua_pushinteger(L, e.position);
        lua_setfield(L, -2, "position");
    }
    return lua_error(L); /* the result is boxed: __gc frees it */
}

/* Runs the query at argument first with its parameters; leaves a boxed
 * result on the stack and returns it. stack: +1 */
static nyx_pg_res *run(lua_State *L, conn *c, int first)
{
    const char *sql = luaL_checkstring(L, first);
    int n;
    const char **p = params(L, first + 1, &n);
    nyx_pg_res **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, RES_MT);
    *box = nyx_pg_exec(c->pg, sql, n, p);
    if (!*box)
        return luaL_error(L, "out of memory"), NULL;
    if (!nyx_pg_res_ok(*box))
        raise_sql(L, c, *box);
    return *box;
}

static int db_query(lua_State *L)
{
    int first;
    conn *c = get_conn(L, &first);
    nyx_pg_res *res = run(L, c, first);
    push_rows(L, res);
    return 1;
}

static int db_exec(lua_State *L)
{
    int first;
    conn *c = get_conn(L, &first);
    nyx_pg_res *res = run(L, c, first);
    lua_Integer n = 0;
    const char *tuples = nyx_pg_cmd_tuples(res);
    if (*tuples)
        n = (lua_Integer)strtoll(tuples, NULL, 10);
    lua_pushinteger(L, n);
    return 1;
}

static void command(lua_State *L, conn *c, const char *sql)
{
    nyx_pg_res **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, RES_MT);
    *box = nyx_pg_exec_script(c->pg, sql);
    if (!nyx_pg_res_ok(*box))
        raise_sql(L, c, *box);
    lua_pop(L, 1);
}

/* transaction(fn, ...): runs fn(...) inside BEGIN/COMMIT (a savepoint when
 * nested); an error rolls back and is raised again unchanged. fn must not
 * yield: other coroutines would see the connection mid-transaction. */
static int db_transaction(lua_State *L)
{
    int first;
    conn *c = get_conn(L, &first);
    luaL_checktype(L, first, LUA_TFUNCTION);
    char sql[64];
    int depth = c->tx_depth;
    if (depth == 0)
        snprintf(sql, sizeof sql, "BEGIN");
    else
        snprintf(sql, sizeof sql, "SAVEPOINT nyx_tx_%d", depth);
    command(L, c, sql);
    c->tx_depth++;
    int base = first - 1;
    int status = lua_pcall(L, lua_gettop(L) - first, LUA_MULTRET, 0);
    c->tx_depth--;
    if (!c->pg) /* closed inside the transaction: nothing to finish */
        return status == LUA_OK ? lua_gettop(L) - base : lua_error(L);
    if (status == LUA_OK) {
        if (depth == 0)
            snprintf(sql, sizeof sql, "COMMIT");
        else
            snprintf(sql, sizeof sql, "RELEASE SAVEPOINT nyx_tx_%d", depth);
        command(L, c, sql);
        return lua_gettop(L) - base;
    }
    if (depth == 0)
        snprintf(sql, sizeof sql, "ROLLBACK");
    else
        snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT nyx_tx_%d", depth);
    nyx_pg_res *r = nyx_pg_exec_script(c->pg, sql); /* keep the first error */
    nyx_pg_clear(r);
    return lua_error(L);
}

static int db_info(lua_State *L)
{
    int first;
    conn *c = get_conn(L, &first);
    lua_createtable(L, 0, 9);
    lua_pushstring(L, nyx_pg_describe(c->pg));
    lua_setfield(L, -2, "database");
    lua_pushinteger(L, nyx_pg_server_version(c->pg));
    lua_setfield(L, -2, "server_version");
    lua_pushstring(L, c->source);
    lua_setfield(L, -2, "source");
    lua_pushboolean(L, c->embedded);
    lua_setfield(L, -2, "embedded");
    lua_pushboolean(L, nyx_pg_in_transaction(c->pg));
    lua_setfield(L, -2, "in_transaction");
    /* where it is, as libpq's keywords name it (never the password) */
    static const struct {
        char which;
        const char *name;
    } params[] = {{'h', "host"}, {'p', "port"}, {'u', "user"}, {'d', "dbname"}};
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
        const char *v = nyx_pg_param(c->pg, params[i].which);
        if (v && *v) {
            lua_pushstring(L, v);
            lua_setfield(L, -2, params[i].name);
        }
    }
    return 1;
}

/* Loads the migrations, boxed so an error frees them. stack: +1 */
static int set_gc(lua_State *L)
{
    nyx_migrations_free(lua_touserdata(L, 1));
    return 0;
}

static nyx_migration_set *load_set(lua_State *L)
{
    nyx_migration_set *set = lua_newuserdatauv(L, sizeof *set, 0);
    memset(set, 0, sizeof *set);
    nyx_gc_metatable(L, "nyx.db.migrations", set_gc);
    luaL_setmetatable(L, "nyx.db.migrations");
    nyx_err err;
    if (nyx_migrations_load(NULL, set, &err) < 0)
        nyx_raise(L, "migration", err.msg);
    return set;
}

static int db_migrate(lua_State *L)
{
    int first;
    conn *c = get_conn(L, &first);
    nyx_migration_set *set = load_set(L);
    nyx_err err;
    int n = nyx_migrate_apply(c->pg, set, NULL, NULL, &err);
    if (n < 0)
        nyx_raise(L, "migration", err.msg);
    lua_pushinteger(L, n);
    return 1;
}

static int db_status(lua_State *L)
{
    static const char *const states[] = {"pending", "applied", "changed",
                                         "unknown"};
    int first;
    conn *c = get_conn(L, &first);
    nyx_migration_set *set = load_set(L);
    nyx_mig_status *s;
    size_t n;
    nyx_err err;
    if (nyx_migrate_status(c->pg, set, &s, &n, &err) < 0)
        nyx_raise(L, "migration", err.msg);
    nyx_box_malloc(L, s);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, s[i].version);
        lua_setfield(L, -2, "version");
        lua_pushstring(L, s[i].name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, states[s[i].state]);
        lua_setfield(L, -2, "state");
        set_string(L, "applied_at", s[i].applied_at);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* Keywords from an optional overrides table {dbname = "x", ...}; the
 * strings stay referenced by the table while k and v are in use. */
static void overrides(lua_State *L, int idx, const char **k, const char **v,
                      int max)
{
    int n = 0;
    if (!lua_isnoneornil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING ||
                lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "bad connection parameter (give name = \"value\" "
                              "strings, e.g. {dbname = \"nyx\"})");
            if (n >= max)
                luaL_error(L, "too many connection parameters (at most %d)",
                           max);
            k[n] = lua_tostring(L, -2);
            v[n++] = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
    }
    k[n] = v[n] = NULL;
}

/* open(conninfo [, overrides]): a connection of its own. With migrate, the
 * schema is brought up to date too. stack: +1 (conn) */
static void open_conn(lua_State *L, int flags)
{
    const char *conninfo = luaL_optstring(L, 1, NULL);
    const char *k[17], *v[17];
    overrides(L, 2, k, v, 16);
    nyx_err err;
    nyx_pg *pg = nyx_db_open_conninfo(conninfo, k, v, flags, &err);
    if (!pg)
        raise_connection(L, err.msg, "the caller");
    new_conn(L, pg, "the caller", 0);
}

static int db_open(lua_State *L)
{
    open_conn(L, 0);
    return 1;
}

/* connect([conninfo [, overrides]]): replaces the default connection;
 * without arguments, with the one the environment names. */
static int db_connect(lua_State *L)
{
    lua_settop(L, 2);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &DEFAULT_KEY); /* kept until closed */
    conn *old = lua_touserdata(L, 3);
    if (lua_isnil(L, 1) && lua_isnil(L, 2)) {
        connect_default(L);
    } else {
        open_conn(L, NYX_DB_MIGRATE);
        ((conn *)lua_touserdata(L, -1))->generation = ++generation;
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &DEFAULT_KEY);
    }
    if (old && old->pg) {
        nyx_pg_close(old->pg);
        old->pg = NULL;
    }
    nyx_listen_close(L); /* listen() listens again, on the new one */
    return 1;
}

static int db_close(lua_State *L)
{
    conn *c = luaL_testudata(L, 1, CONN_MT);
    if (!c) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &DEFAULT_KEY);
        c = lua_touserdata(L, -1);
    }
    if (c) {
        nyx_pg_close(c->pg);
        c->pg = NULL;
    }
    if (!luaL_testudata(L, 1, CONN_MT))
        nyx_listen_close(L); /* the default's: listen() opens it again */
    return 0;
}

/* notify(channel [, payload]): pg_notify on the default connection (or
 * this one); delivered when the transaction commits (at once outside
 * one). */
static int db_notify(lua_State *L)
{
    int first;
    conn *c = get_conn(L, &first);
    nyx_listen_check_channel(L, first);
    luaL_optstring(L, first + 1, "");
    lua_settop(L, first + 1);
    if (lua_isnil(L, first + 1)) {
        lua_pushliteral(L, "");
        lua_replace(L, first + 1);
    }
    lua_pushliteral(L, "SELECT pg_notify($1, $2)");
    lua_insert(L, first);
    run(L, c, first);
    return 0;
}

static int conn_tostring(lua_State *L)
{
    conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->pg)
        lua_pushfstring(L, "nyx.db.conn (%s)", nyx_pg_describe(c->pg));
    else
        lua_pushliteral(L, "nyx.db.conn (closed)");
    return 1;
}

/* ---- the log writer --------------------------------------------------- */

/* Rows the engine logs (LLM calls, tool runs, ...) go through nyx.db.log.
 * Everything logged while a batch is being written waits for the next
 * one; a batch is one statement (logrows.c builds it: one INSERT per
 * table, chained in a WITH), sent without blocking on a connection of
 * the writer's own, so the event loop runs on while PostgreSQL commits and
 * a script's open transaction never holds a log row. Each caller waits
 * until its rows are committed. If a batch fails, its callers' rows are
 * written again one caller at a time, so one bad row fails only its own.
 *
 * Two lanes, each with its connection, so two server processes write at
 * once. A caller's entry may go on either lane when it is independent of
 * the other lane's batch: a row another transaction has not committed is
 * invisible (a foreign key check on it fails, it does not wait; an update
 * of it finds nothing), so an entry that refers to a row the other batch
 * writes, or writes a row it writes or refers to, waits for it. The ids
 * are the entry's UUID-sized strings: written in the first column or a
 * column named id, referred to elsewhere (logrows.h). Rows that only refer to
 * the same rows (the same node, say) go side by side. When both lanes are free
 * and much is waiting, the queue is shared between them so that what depends on
 * each other stays on one lane (take()). */

#define ENTRY_MT "nyx.db.logentry"
#define MAX_BATCH_PARAMS                                                       \
    60000 /* values per batch, unless one entry has more                       \
           */
#define MAX_ENTRY_PARAMS                                                       \
    5000000               /* one caller's rows: a statement of ~1 GB at most */
#define SPLIT_PARAMS 2000 /* waiting values that two lanes share */

typedef struct log_entry {
    nyx_waiter w;
    int ok, queued, solo, nparams;
    int self_ref; /* nobody waits (wait = false): the registry keeps it */
    lr_rows rows; /* as text, with the ids they write and refer to */
    char *error;  /* why its rows were not written (malloc'd): rarely set,
                   * so not a buffer in every entry */
    struct log_entry *next;
} log_entry;

/* The ids a lane's batch in flight writes and refers to: open addressing
 * on their 36 bytes, which its entries hold. */
#define ID_LEN 36
typedef struct id_set {
    const char **slot;
    unsigned char *written;
    size_t cap;
} id_set;

typedef struct log_lane {
    struct log_writer *w;
    int index;         /* 0, or 1: never a retried caller alone, a flush */
    log_entry *flight; /* the batch being written */
    id_set ids;        /* what its rows write and refer to */
    conn *log;         /* the lane's connection */
    int watched;       /* its socket is on the loop */
    char error[512];   /* the batch's first error */
} log_lane;

typedef struct drain_wait drain_wait;

typedef struct log_writer {
    lua_State *L;           /* the main thread */
    log_entry *head, *tail; /* waiting for the next batch */
    log_lane lane[2];
    long queued_params; /* of the entries waiting */
    drain_wait *drains; /* tasks in log_drain */
    /* sent so far (nyx.db.log_stats): batches on each lane, and the row
     * versions they wrote, rows folded together counting once */
    unsigned long long batches[2], inserted, updated;
    unsigned long long prepared; /* batches sent as a prepared statement */
} log_writer;

static log_writer *get_writer(lua_State *L);

/* A UUID's text: its last 16 hex digits are random enough. */
static size_t id_hash(const char *p, size_t cap)
{
    uint64_t a, b;
    memcpy(&a, p + ID_LEN - 16, 8);
    memcpy(&b, p + ID_LEN - 8, 8);
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15u)) * 0xff51afd7ed558ccdu;
    return (size_t)(h >> 17) & (cap - 1);
}

/* 0: p is not in set; 1: it is, referred to only; 2: written. */
static int id_find(const id_set *set, const char *p)
{
    if (!set->cap)
        return 0;
    for (size_t i = id_hash(p, set->cap);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slot[i])
            return 0;
        if (memcmp(set->slot[i], p, ID_LEN) == 0)
            return set->written[i] ? 2 : 1;
    }
}

static void id_add(id_set *set, const char *p, int written)
{
    for (size_t i = id_hash(p, set->cap);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slot[i]) {
            set->slot[i] = p;
            set->written[i] = (unsigned char)written;
            return;
        }
        if (memcmp(set->slot[i], p, ID_LEN) == 0) {
            set->written[i] |= (unsigned char)written;
            return;
        }
    }
}

static void id_set_free(id_set *set)
{
    free(set->slot);
    free(set->written);
    memset(set, 0, sizeof *set);
}

/* Room in set for n ids at half load; -1 on no memory (set unchanged). */
static int id_set_grow(id_set *set, size_t n)
{
    if (2 * n + 1 <= set->cap)
        return 0;
    size_t cap = 64;
    while (cap < 4 * n + 1)
        cap *= 2;
    id_set bigger = {calloc(cap, sizeof(char *)), calloc(cap, 1), cap};
    if (!bigger.slot || !bigger.written) {
        id_set_free(&bigger);
        return -1;
    }
    for (size_t i = 0; i < set->cap; i++)
        if (set->slot[i])
            id_add(&bigger, set->slot[i], set->written[i]);
    id_set_free(set);
    *set = bigger;
    return 0;
}

/* Lane l's set made of its flight's entries' ids (none on no memory:
 * then the other lane waits for it, as if everything conflicted). */
static int id_set_fill(log_lane *l)
{
    id_set_free(&l->ids);
    size_t n = 0;
    for (log_entry *e = l->flight; e; e = e->next)
        n += (size_t)e->rows.nids;
    if (id_set_grow(&l->ids, n) < 0)
        return -1;
    for (log_entry *e = l->flight; e; e = e->next)
        for (int i = 0; i < e->rows.nids; i++)
            id_add(&l->ids, e->rows.ids[i], i < e->rows.nwrite);
    return 0;
}

/* Whether entry e may be written while the batch of lane other is: it
 * writes nothing that batch writes or refers to, and refers to nothing it
 * writes (a row another transaction has not committed is invisible: a
 * foreign key check on it fails, an update of it finds nothing). Rows
 * that only refer to the same rows go side by side. */
static int independent(const log_entry *e, const log_lane *other)
{
    if (!other->flight)
        return 1;
    if (!other->ids.cap || e->nparams == 0)
        return 0; /* ids unknown (no memory); a flush waits for both */
    for (int i = 0; i < e->rows.nids; i++) {
        int in = id_find(&other->ids, e->rows.ids[i]);
        if (in == 2 || (in == 1 && i < e->rows.nwrite))
            return 0;
    }
    return 1;
}

/* Whether e refers to or writes what the entries taken so far (their ids
 * in set) write, or writes what they refer to. */
static int depends(const log_entry *e, const id_set *set)
{
    for (int i = 0; i < e->rows.nids; i++) {
        int in = id_find(set, e->rows.ids[i]);
        if (in == 2 || (in == 1 && i < e->rows.nwrite))
            return 1;
    }
    return 0;
}

/* The column types of the tables pg sees, for the log rows' statements
 * (logrows.h): format_type's names, without their modifiers (a value cast
 * to varchar(100) is cut to fit, one assigned to the column is refused).
 * None when the catalog cannot be read: then every row goes as JSON. */
static void read_types(lua_State *L, nyx_pg *pg)
{
    nyx_pg_res *res = nyx_pg_exec(
        pg,
        "SELECT c.relname, a.attname, format_type(a.atttypid, NULL) "
        "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT "
        "a.attisdropped AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, "
        "'information_schema'::regnamespace) AND pg_table_is_visible(c.oid) "
        "ORDER BY 1",
        0, NULL);
    lr_catalog *cat = lr_catalog_get(L);
    lr_types_begin(cat);
    for (int r = 0, n = res && nyx_pg_res_ok(res) ? nyx_pg_ntuples(res) : 0;
         r < n; r++)
        if (lr_types_add(cat, nyx_pg_value(res, r, 0), nyx_pg_value(res, r, 1),
                         nyx_pg_value(res, r, 2)) < 0) {
            lr_types_begin(cat); /* no memory: JSON for all */
            break;
        }
    nyx_pg_clear(res);
}

/* A lane's connection: a clone of the default one, remade when the
 * default changes (never while a batch is on it). stack: 0 */
static conn *log_conn(lua_State *L, log_lane *l)
{
    int first;
    conn *d = get_conn(L, &first); /* may open the default */
    if (l->log && l->log->pg && l->log->generation == d->generation &&
        nyx_pg_ok(l->log->pg))
        return l->log;
    if (l->log) {
        nyx_pg_close(l->log->pg);
        l->log->pg = NULL;
    }
    nyx_err err;
    nyx_pg *pg = nyx_pg_clone(d->pg, &err);
    if (!pg)
        raise_connection(L, err.msg, "the log writer");
    conn *c = new_conn(L, pg, "the log writer", d->embedded);
    c->generation = d->generation;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOG_KEY[l->index]);
    read_types(L, pg);
    return l->log = c;
}

static void finish_entry(log_writer *w, log_entry *e, const char *error)
{
    e->queued = 0;
    e->next = NULL;
    e->ok = error == NULL;
    if (error) {
        char line[512];
        snprintf(line, sizeof line, "%s", error);
        nyx_one_line(line, sizeof line);
        free(e->error);
        e->error = strdup(line);
    }
    lr_rows_free(&e->rows);
    if (e->self_ref != LUA_NOREF) { /* nobody to tell but the user */
        if (error)
            fprintf(stderr, "nyx: log rows were not written: %s\n",
                    e->error ? e->error : "out of memory");
        nyx_sched_hold(w->L, -1);
        int ref = e->self_ref;
        e->self_ref = LUA_NOREF;
        nyx_unref(w->L, ref);
        return;
    }
    nyx_waiter_done(&e->w);
}

/* The batch is over: wake its callers, or give each failed one a second
 * chance on its own. */
static void batch_done(log_lane *l)
{
    log_writer *w = l->w;
    if (l->watched)
        nyx_loop_watch(nyx_sched_loop(w->L), l->watched - 1, 0, NULL, NULL);
    l->watched = 0;
    log_entry *batch = l->flight, *rhead = NULL, *rtail = NULL;
    l->flight = NULL;
    id_set_free(&l->ids);
    int alone = batch && !batch->next;
    for (log_entry *e = batch, *next; e; e = next) {
        next = e->next;
        if (l->error[0] && !alone && !e->solo) {
            e->solo = 1;
            e->next = NULL;
            if (rtail)
                rtail->next = e;
            else
                rhead = e;
            rtail = e;
        } else {
            finish_entry(w, e, l->error[0] ? l->error : NULL);
        }
    }
    for (log_entry *e = rhead; e; e = e->next)
        w->queued_params += e->nparams;
    if (rhead) { /* ahead of the rest, in their order */
        rtail->next = w->head;
        if (!w->head)
            w->tail = rtail;
        w->head = rhead;
    }
    if (l->log && l->log->pg && !nyx_pg_ok(l->log->pg)) {
        nyx_pg_close(l->log->pg); /* lost: the next batch reconnects */
        l->log->pg = NULL;
    }
}

static void log_io(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    log_lane *l = arg;
    nyx_pg *pg = l->log->pg;
    if (events & NYX_WRITE) {
        int f = nyx_pg_flush(pg);
        if (f == 0)
            nyx_loop_watch(loop, fd, NYX_READ, log_io, l);
        if (f < 0)
            goto failed;
    }
    if (!(events & (NYX_READ | NYX_ERROR)))
        return;
    if (nyx_pg_consume(pg) < 0)
        goto failed;
    for (;;) {
        nyx_pg_res *res;
        int more = nyx_pg_next(pg, &res);
        if (more < 0)
            return;
        if (!more) {
            batch_done(l);
            return;
        }
        if (!nyx_pg_res_ok(res) && !l->error[0]) {
            nyx_pg_error e;
            nyx_pg_res_error(pg, res, &e);
            snprintf(l->error, sizeof l->error, "%s", e.message);
        }
        nyx_pg_clear(res);
    }
    return;
failed:
    snprintf(l->error, sizeof l->error, "%s", nyx_pg_error_message(pg));
    if (!l->error[0])
        snprintf(l->error, sizeof l->error, "the log connection failed");
    batch_done(l);
}

static int free_batch(lua_State *L)
{
    lr_batch_free(lua_touserdata(L, 1));
    return 0;
}

/* A batch's statement to build, freed with it even on a raise. stack: +1 */
static lr_batch *push_batch(lua_State *L)
{
    lr_batch *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    nyx_gc_metatable(L, "nyx.db.batch", free_batch);
    luaL_setmetatable(L, "nyx.db.batch");
    return b;
}

/* send(lane): builds the lane's flight batch's statement and sends it. */
static int log_send(lua_State *L)
{
    log_lane *l = lua_touserdata(L, 1);
    conn *c = log_conn(L, l);
    lr_batch *b = push_batch(L);
    lr_catalog *cat = lr_catalog_get(L);
    int n = 0;
    for (log_entry *e = l->flight; e; e = e->next)
        n++;
    lr_rows **callers =
        lua_newuserdatauv(L, sizeof *callers * (size_t)(n + 1), 0);
    /* taken after the last allocation: a collection could run a cancelled
     * caller's entry_gc, which takes its entry out of the flight */
    n = 0;
    for (log_entry *e = l->flight; e; e = e->next)
        callers[n++] = &e->rows;
    nyx_err err;
    if (lr_build(cat, callers, n, b, &err) < 0)
        return nyx_raise(L, "log", err.msg);
    if (b->nparams == 0) { /* nothing to write (a flush) */
        batch_done(l);
        return 0;
    }
    /* batches of one shape recur (an LLM call's two rows, a node's):
     * prepared once, parsed and planned once */
    int named = nyx_pg_send_cached(c->pg, b->sql.data, b->nparams, b->params,
                                   &err); /* copied */
    if (named < 0)
        return nyx_raise(L, "log", err.msg);
    l->w->prepared += (unsigned long long)named;
    l->w->batches[l->index]++;
    l->w->inserted += b->inserted;
    l->w->updated += b->updated;
    lr_batch_free(b);
    int f = nyx_pg_flush(c->pg);
    if (f < 0)
        return nyx_raise(L, "log", nyx_pg_error_message(c->pg));
    int fd = nyx_pg_socket(c->pg);
    nyx_loop_watch(nyx_sched_loop(L), fd, NYX_READ | (f ? NYX_WRITE : 0),
                   log_io, l);
    l->watched = fd + 1;
    return 0;
}

/* Adds e's ids to set; -1 on no memory. */
static int set_take(id_set *set, size_t *held, const log_entry *e)
{
    if (id_set_grow(set, *held + (size_t)e->rows.nids) < 0)
        return -1;
    for (int i = 0; i < e->rows.nids; i++)
        id_add(set, e->rows.ids[i], i < e->rows.nwrite);
    *held += (size_t)e->rows.nids;
    return 0;
}

/* Fills the free lanes' flights from the queue, in its order. An entry
 * that depends on a lane's batch in flight, or on an entry left waiting,
 * waits (it is left, and what depends on it after it); one that depends
 * on what a free lane took goes on that lane; one independent of all goes
 * on the free lane with fewer values; one that depends on what both free
 * lanes took waits. Each lane's batch is then independent of the other's.
 * A caller retried after a failed batch goes alone on lane 0, a flush
 * (no rows) only when both lanes are free and nothing is left before it:
 * both stop the filling. Lane 1 takes a batch only beside another, or
 * with lane 0 busy. */
static void take(log_writer *w, int free0, int free1)
{
    log_lane *lane = w->lane;
    id_set set[3] = {{0}, {0}, {0}}; /* lane 0's, lane 1's, left's */
    size_t held[3] = {0, 0, 0};
    long params[2] = {0, 0};
    int open[2] = {free0, free1};
    log_entry **tail[2] = {&lane[0].flight, &lane[1].flight};
    log_entry *left = NULL, **left_tail = &left;
    if (free0)
        lane[0].flight = NULL;
    if (free1)
        lane[1].flight = NULL;
    while (w->head) {
        log_entry *e = w->head;
        int special = e->solo || e->nparams == 0;
        if (special) { /* alone, on lane 0, with nothing before it */
            if (!free0 || left || lane[0].flight || lane[1].flight)
                break; /* lane 1 in flight or taking: it waits */
            w->head = e->next;
            e->next = NULL;
            *tail[0] = e;
            tail[0] = &e->next;
            w->queued_params -= e->nparams;
            if (e->nparams == 0) /* a flush takes the rest with it */
                continue;
            break;
        }
        int k = -1;
        if (!depends(e, &set[2])) {
            int d[2];
            for (int j = 0; j < 2; j++)
                d[j] =
                    open[j] ? depends(e, &set[j]) : !independent(e, &lane[j]);
            if (open[0] && !d[1] &&
                (d[0] || !open[1] || params[0] <= params[1]))
                k = 0;
            else if (open[1] && !d[0])
                k = 1;
            /* full: the rest waits, in order (an entry bigger than a
             * batch goes alone: a statement's parameters are its columns,
             * not its values, so only its size bounds it) */
            if (k >= 0 && params[k] > 0 &&
                params[k] + e->nparams > MAX_BATCH_PARAMS)
                break;
        }
        w->head = e->next;
        e->next = NULL;
        if (k < 0 || set_take(&set[k], &held[k], e) < 0) {
            if (set_take(&set[2], &held[2], e) < 0) { /* back, and stop */
                e->next = w->head;
                w->head = e;
                break;
            }
            *left_tail = e;
            left_tail = &e->next;
            continue;
        }
        *tail[k] = e;
        tail[k] = &e->next;
        params[k] += e->nparams;
        w->queued_params -= e->nparams;
    }
    if (left) { /* back at the head, in their order */
        *left_tail = w->head;
        w->head = left;
    }
    w->tail = NULL;
    for (log_entry *e = w->head; e; e = e->next)
        w->tail = e;
    for (int j = 0; j < 2; j++) {
        if (open[j] && lane[j].flight) {
            id_set_free(&lane[j].ids);
            lane[j].ids = set[j];
            set[j] = (id_set){0};
            if (!lane[j].ids.cap)
                id_set_fill(&lane[j]); /* a flush or a retry alone */
        }
        id_set_free(&set[j]);
    }
    id_set_free(&set[2]);
}

/* Sends lane l's flight (taken already). */
static void send_lane(lua_State *L, log_lane *l)
{
    if (!l->flight)
        return;
    l->error[0] = '\0';
    lua_pushcfunction(L, log_send);
    lua_pushlightuserdata(L, l);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) { /* nothing was sent */
        snprintf(l->error, sizeof l->error, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        batch_done(l);
    }
}

/* A task in log_drain(n): it goes on once at most n values wait for a
 * batch. */
#define DRAIN_MT "nyx.db.drain"
struct drain_wait {
    nyx_waiter w;
    long below;
    drain_wait *next, **pprev;
};

static void drain_unlink(drain_wait *d)
{
    if (!d->pprev)
        return;
    *d->pprev = d->next;
    if (d->next)
        d->next->pprev = d->pprev;
    d->next = NULL;
    d->pprev = NULL;
}

static int drain_cancel(lua_State *L, nyx_waiter *w)
{
    (void)L;
    drain_unlink((drain_wait *)w); /* w is its first member */
    return 1;
}

static int drain_gc(lua_State *L)
{
    drain_unlink(lua_touserdata(L, 1));
    return 0;
}

static void wake_drains(log_writer *w)
{
    drain_wait **p = &w->drains;
    while (*p) {
        drain_wait *d = *p;
        if (w->queued_params <= d->below) {
            drain_unlink(d); /* *p is the next one now */
            nyx_waiter_done(&d->w);
        } else {
            p = &d->next;
        }
    }
}

static int log_hook(lua_State *L, void *arg)
{
    log_writer *w = arg;
    if (w->drains)
        wake_drains(w);
    log_lane *l0 = &w->lane[0], *l1 = &w->lane[1];
    int free0 = !l0->flight, free1 = !l1->flight;
    if (!w->head || (!free0 && !free1))
        return 0;
    /* with both free and little waiting, lane 0 takes it all */
    take(w, free0, free1 && (!free0 || w->queued_params >= SPLIT_PARAMS));
    if (w->drains)
        wake_drains(w);
    if (free0)
        send_lane(L, l0);
    if (free1)
        send_lane(L, l1);
    return (free0 && l0->flight) || (free1 && l1->flight);
}

static log_writer *get_writer(lua_State *L)
{
    static char WRITER_KEY;
    int fresh;
    log_writer *w = nyx_state_block(L, &WRITER_KEY, sizeof *w, &fresh);
    if (fresh) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
        w->L = lua_tothread(L, -1);
        lua_pop(L, 1);
        for (int i = 0; i < 2; i++) {
            w->lane[i].w = w;
            w->lane[i].index = i;
        }
        nyx_sched_add_hook(L, log_hook, w);
    }
    return w;
}

static int entry_gc(lua_State *L)
{
    log_entry *e = lua_touserdata(L, 1);
    free(e->error);
    e->error = NULL;
    if (!e->queued) { /* done, or never queued (refused, log_statement) */
        lr_rows_free(&e->rows);
        return 0;
    }
    /* its caller died while it waited (a cancelled task): take it out of
     * the queue, or out of the batch in flight, which then finishes
     * without it (the rows were sent already) */
    log_writer *w = get_writer(L);
    log_entry **p = &w->head, *prev = NULL;
    while (*p && *p != e)
        prev = *p, p = &(*p)->next;
    if (*p) {
        *p = e->next;
        if (w->tail == e)
            w->tail = prev;
        w->queued_params -= e->nparams;
    } else {
        int lane = -1;
        for (int i = 0; i < 2 && lane < 0; i++) {
            for (p = &w->lane[i].flight; *p && *p != e; p = &(*p)->next) {
            }
            if (*p) {
                *p = e->next;
                lane = i;
            }
        }
        /* the lane's ids were its rows': made again without them */
        if (lane >= 0 && id_set_fill(&w->lane[lane]) < 0)
            id_set_free(&w->lane[lane].ids);
    }
    lr_rows_free(&e->rows);
    return 0;
}

/* A new entry, pushed; not queued yet. */
static log_entry *new_entry(lua_State *L)
{
    log_entry *e = lua_newuserdatauv(L, sizeof *e, 0);
    memset(e, 0, sizeof *e);
    e->self_ref = LUA_NOREF;
    luaL_setmetatable(L, ENTRY_MT);
    return e;
}

static void enqueue(log_writer *w, log_entry *e)
{
    e->nparams = e->rows.nvalues;
    e->queued = 1;
    w->queued_params += e->nparams;
    if (w->tail)
        w->tail->next = e;
    else
        w->head = e;
    w->tail = e;
}

static int flush_k(lua_State *L, int status, lua_KContext ctx) { return 0; }

static int log_k(lua_State *L, int status, lua_KContext ctx)
{
    log_entry *e = (log_entry *)ctx;
    if (!e->ok)
        return nyx_raise(L, "log",
                         e->error ? e->error : "the rows were not written");
    lua_pushboolean(L, 1);
    return 1;
}

/* log(rows [, opts]): rows = {{table=, columns={...}, values={...}}, ...};
 * waits until they are committed, then returns true. opts.wait = false:
 * returns at once; the rows go with the next batch all the same, a failure
 * is one line on stderr, and the script's run ends only once they are
 * written. opts.append = true: the rows are inserts that nothing updates
 * later (checked: no update rows allowed). */
static int db_log(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int wait = 1, append = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "wait");
        wait = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_getfield(L, 2, "append");
        append = lua_toboolean(L, -1);
    }
    lua_settop(L, 1);
    log_writer *w = get_writer(L);
    log_entry *e = new_entry(L); /* frees the rows read if reading raises */
    lr_rows_read(L, lr_catalog_get(L), 1, &e->rows, append);
    luaL_argcheck(L, e->rows.nvalues > 0 && e->rows.nvalues <= MAX_ENTRY_PARAMS,
                  1,
                  "rows must hold between 1 and 5000000 values: log more "
                  "in separate calls");
    enqueue(w, e);
    /* the rows are text now: their tables need not live while the caller
     * waits (its argument slot is the only reference a caller's
     * log{...} has) */
    lua_pushnil(L);
    lua_replace(L, 1);
    if (!wait) {
        lua_pushvalue(L, -1);
        e->self_ref = nyx_ref(L);
        nyx_sched_hold(L, 1);
        lua_pushboolean(L, 1);
        return 1;
    }
    return nyx_await(L, &e->w, (lua_KContext)e, log_k);
}

/* log_statement(rows): the statement and parameters one batch of these
 * rows would be sent as, without sending it: for looking at what the
 * writer does (which tables go as arrays, which as JSON, what folds). */
static int db_log_statement(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    log_writer *w = get_writer(L);
    if (!w->lane[0].flight)       /* a lane is never remade under its batch */
        log_conn(L, &w->lane[0]); /* the column types come with it */
    log_entry *e = new_entry(L);
    lr_rows_read(L, lr_catalog_get(L), 1, &e->rows, 0);
    lr_rows *callers[1] = {&e->rows};
    lr_batch *b = push_batch(L);
    nyx_err err;
    if (lr_build(lr_catalog_get(L), callers, 1, b, &err) < 0)
        return nyx_raise(L, "log", err.msg);
    if (b->nparams == 0)
        lua_pushnil(L);
    else
        lua_pushstring(L, b->sql.data);
    lua_createtable(L, b->nparams, 0);
    for (int k = 0; k < b->nparams; k++) {
        lua_pushstring(L, b->params[k]);
        lua_rawseti(L, -2, k + 1);
    }
    lr_batch_free(b);
    return 2;
}

static int drain_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)L, (void)status, (void)ctx;
    return 0;
}

/* log_drain(n): waits until at most n values wait for a batch (those in a
 * batch being written do not count): backpressure for code that makes
 * rows faster than PostgreSQL takes them. */
static int db_log_drain(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    log_writer *w = get_writer(L);
    if (w->queued_params <= n)
        return 0;
    drain_wait *d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, DRAIN_MT);
    d->below = (long)n;
    d->w.cancel = drain_cancel;
    d->next = w->drains;
    if (d->next)
        d->next->pprev = &d->next;
    d->pprev = &w->drains;
    w->drains = d;
    return nyx_await(L, &d->w, (lua_KContext)d, drain_k);
}

/* log_backlog(): how many values wait for a batch. */
static int db_log_backlog(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)get_writer(L)->queued_params);
    return 1;
}

/* log_stats(): {batches =, lane1_batches =, prepared_batches =, inserted =,
 * updated =}: what the log writer has sent since the process started. */
static int db_log_stats(lua_State *L)
{
    log_writer *w = get_writer(L);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)(w->batches[0] + w->batches[1]));
    lua_setfield(L, -2, "batches");
    lua_pushinteger(L, (lua_Integer)w->batches[1]);
    lua_setfield(L, -2, "lane1_batches");
    lua_pushinteger(L, (lua_Integer)w->prepared);
    lua_setfield(L, -2, "prepared_batches");
    lua_pushinteger(L, (lua_Integer)w->inserted);
    lua_setfield(L, -2, "inserted");
    lua_pushinteger(L, (lua_Integer)w->updated);
    lua_setfield(L, -2, "updated");
    return 1;
}

/* flush(): waits until every row logged so far is committed. */
static int db_flush(lua_State *L)
{
    log_writer *w = get_writer(L);
    if (!w->head && !w->lane[0].flight && !w->lane[1].flight)
        return 0;
    lua_settop(L, 0);
    log_entry *e =
        new_entry(L); /* no rows: it waits its turn behind the others */
    enqueue(w, e);
    return nyx_await(L, &e->w, (lua_KContext)e, flush_k);
}

static const luaL_Reg module_funcs[] = {{"query", db_query},
                                        {"exec", db_exec},
                                        {"transaction", db_transaction},
                                        {"info", db_info},
                                        {"migrate", db_migrate},
                                        {"status", db_status},
                                        {"open", db_open},
                                        {"connect", db_connect},
                                        {"close", db_close},
                                        {"log", db_log},
                                        {"flush", db_flush},
                                        {"log_stats", db_log_stats},
                                        {"log_statement", db_log_statement},
                                        {"log_backlog", db_log_backlog},
                                        {"log_drain", db_log_drain},
                                        {"listen", nyx_db_listen},
                                        {"unlisten", nyx_db_unlisten},
                                        {"notify", db_notify},
                                        {NULL, NULL}};

static const luaL_Reg conn_methods[] = {{"query", db_query},
                                        {"exec", db_exec},
                                        {"transaction", db_transaction},
                                        {"info", db_info},
                                        {"migrate", db_migrate},
                                        {"status", db_status},
                                        {"notify", db_notify},
                                        {"close", db_close},
                                        {NULL, NULL}};

int luaopen_nyx_db(lua_State *L)
{
    nyx_gc_metatable(L, ENTRY_MT, entry_gc);
    nyx_gc_metatable(L, DRAIN_MT, drain_gc);
    nyx_gc_metatable(L, RES_MT, res_gc);

    luaL_newmetatable(L, CONN_MT);
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, conn_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newlib(L, module_funcs);
    return 1;
}
