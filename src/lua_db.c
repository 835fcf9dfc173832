/* nyx.db: PostgreSQL from Lua. Module functions use the default
 * connection (opened on first use: NYX_DATABASE_URL, the PG* variables or
 * the embedded cluster, migrated); the same functions are methods of
 * connection objects from nyx.db.open. Queries always take parameters
 * ($1, $2, ...) separately from the SQL text. */
#include "database.h"
#include "lua_json.h"
#include "lua_listen.h"
#include "lua_nyx.h"
#include "lua_task.h"
#include "migrate.h"

#include <lauxlib.h>
#include <math.h>
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
    lua_createtable(L, 0, 5);
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
    if (luaL_newmetatable(L, "nyx.db.migrations")) {
        lua_pushcfunction(L, set_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
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
 * one; a batch is one statement (lua/nyx/dblog.lua builds it: one INSERT
 * per table, chained in a WITH), sent without blocking on a connection of
 * the writer's own, so the event loop runs on while PostgreSQL commits and
 * a script's open transaction never holds a log row. Each caller waits
 * until its rows are committed. If a batch fails, its callers' rows are
 * written again one caller at a time, so one bad row fails only its own.
 *
 * Two lanes, each with its connection: lane 0 takes every kind of row, in
 * order. Rows logged with append = true (inserts of rows that nothing
 * updates or references later, such as an LLM call's) may also go on lane
 * 1, while lane 0 writes a batch of append rows only: then everything
 * logged before them that is not append rows is committed, so each row
 * their foreign keys point at is visible to lane 1's statement (a row
 * another transaction has not committed is not: its foreign key check
 * would fail, not wait). Both batches are written at once by two server
 * processes. No UPDATE ever goes on lane 1. */

#define ENTRY_MT         "nyx.db.logentry"
#define MAX_BATCH_PARAMS 60000 /* PostgreSQL takes 65535 */

typedef struct log_entry {
    nyx_waiter w;
    int rows_ref, ok, queued, solo, nparams, append;
    int self_ref; /* nobody waits (wait = false): the registry keeps it */
    char error[512];
    struct log_entry *next;
} log_entry;

typedef struct log_lane {
    struct log_writer *w;
    int index;         /* 0: every row, in order; 1: append rows only */
    log_entry *flight; /* the batch being written */
    int all_append;    /* every entry of the flight is append rows */
    conn *log;         /* the lane's connection */
    int watched;       /* its socket is on the loop */
    char error[512];   /* the batch's first error */
} log_lane;

typedef struct log_writer {
    lua_State *L;           /* the main thread */
    log_entry *head, *tail; /* waiting for the next batch */
    log_lane lane[2];
    /* sent so far (nyx.db.log_stats): batches on each lane, and the row
     * versions they wrote, rows folded together counting once */
    unsigned long long batches[2], inserted, updated;
    unsigned long long prepared; /* batches sent as a prepared statement */
} log_writer;

static log_writer *get_writer(lua_State *L);

/* The column types of the tables pg sees, as nyx.dblog.types: {table =
 * {column = "type"}} (none when the catalog cannot be read: then every
 * row goes as JSON). Without their modifiers: a value cast to
 * varchar(100) is cut to fit, one assigned to the column is refused.
 * stack: 0 */
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
    lua_getglobal(L, "require");
    lua_pushliteral(L, "nyx.dblog");
    lua_call(L, 1, 1);
    if (!res || !nyx_pg_res_ok(res)) {
        nyx_pg_clear(res);
        lua_pushnil(L);
        lua_setfield(L, -2, "types");
        lua_pop(L, 1);
        return;
    }
    lua_newtable(L);
    const char *last = NULL;
    for (int r = 0, n = nyx_pg_ntuples(res); r < n; r++) {
        const char *rel = nyx_pg_value(res, r, 0);
        if (!last || strcmp(last, rel) != 0) {
            if (last)
                lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, rel);
            last = rel;
        }
        lua_pushstring(L, nyx_pg_value(res, r, 2));
        lua_setfield(L, -2, nyx_pg_value(res, r, 1));
    }
    if (last)
        lua_pop(L, 1);
    lua_setfield(L, -2, "types");
    lua_pop(L, 1);
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
        snprintf(e->error, sizeof e->error, "%s", error);
        nyx_one_line(e->error, sizeof e->error);
    }
    nyx_unref(w->L, e->rows_ref);
    e->rows_ref = LUA_NOREF;
    if (e->self_ref != LUA_NOREF) { /* nobody to tell but the user */
        if (error)
            fprintf(stderr, "nyx: log rows were not written: %s\n", e->error);
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

/* Parameters of a batch: numbers and booleans are written into one buffer,
 * strings point at the Lua strings (their rows keep them), tables become
 * JSON kept in a Lua table: no Lua string is made per value. */
typedef struct batch_params {
    const char **p;
    size_t *at; /* offset in text, or -1: p[k] is set */
    nyx_buf text;
    int keep, nkeep;
} batch_params;

/* Decimal digits of v into buf (24 bytes); returns the length. */
static int format_integer(char *buf, lua_Integer v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    lua_Unsigned u = v < 0 ? 0u - (lua_Unsigned)v : (lua_Unsigned)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    int n = (int)(tmp + sizeof tmp - p);
    memcpy(buf, p, (size_t)n);
    return n;
}

/* Converts the value on top of the stack into parameter k; pops it. */
static void add_param(lua_State *L, batch_params *b, int k)
{
    int t = lua_type(L, -1);
    char num[64];
    int len = -1;
    b->p[k] = NULL;
    b->at[k] = (size_t)-1;
    if (t == LUA_TSTRING) {
        b->p[k] = lua_tostring(L, -1);
    } else if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
        len = format_integer(num, lua_tointeger(L, -1));
    } else if (t == LUA_TNUMBER) {
        double d = lua_tonumber(L, -1);
        len = isnan(d) ? snprintf(num, sizeof num, "NaN")
              : isinf(d)
                  ? snprintf(num, sizeof num, "%sInfinity", d > 0 ? "" : "-")
                  : snprintf(num, sizeof num, "%.17g", d);
    } else if (t == LUA_TBOOLEAN) {
        num[0] = lua_toboolean(L, -1) ? 't' : 'f';
        len = 1;
    } else if (t == LUA_TTABLE) {
        nyx_json_encode(L, -1);
        b->p[k] = lua_tostring(L, -1);
        lua_rawseti(L, b->keep, ++b->nkeep);
    } else if (t != LUA_TNIL && t != LUA_TLIGHTUSERDATA) {
        luaL_error(L, "bad log value $%d (%s)", k + 1, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    if (len >= 0) {
        num[len] = '\0';
        b->at[k] = b->text.len;
        if (nyx_buf_add(&b->text, num, (size_t)len + 1) < 0)
            luaL_error(L, "out of memory");
    }
}

/* Converts the groups (at index groups: {ncol=, rows={values...}}) into
 * n parameters. */
static void batch_values(lua_State *L, batch_params *b, int groups, int n)
{
    int k = 0;
    for (lua_Integer g = 1; lua_rawgeti(L, groups, g) == LUA_TTABLE; g++) {
        lua_getfield(L, -1, "ncol");
        int ncol = (int)lua_tointeger(L, -1);
        lua_getfield(L, -2, "rows");
        for (lua_Integer r = 1; lua_rawgeti(L, -1, r) == LUA_TTABLE; r++) {
            for (int col = 1; col <= ncol && k < n; col++) {
                lua_rawgeti(L, -1, col);
                add_param(L, b, k++);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 4); /* the nil row, rows, ncol, the group */
    }
    lua_pop(L, 1);
    for (int i = 0; i < n; i++)
        if (b->at[i] != (size_t)-1)
            b->p[i] = b->text.data + b->at[i];
}

static int free_text(lua_State *L)
{
    batch_params *b = lua_touserdata(L, 1);
    nyx_buf_free(&b->text);
    return 0;
}

/* send(lane): builds the lane's flight batch's statement and sends it. */
static int log_send(lua_State *L)
{
    log_lane *l = lua_touserdata(L, 1);
    conn *c = log_conn(L, l);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "nyx.dblog");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "build");
    lua_newtable(L);
    int i = 0;
    for (log_entry *e = l->flight; e; e = e->next) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, e->rows_ref);
        lua_rawseti(L, -2, ++i);
    }
    lua_call(L, 1, 3); /* sql, groups, n */
    int n = (int)lua_tointeger(L, -1), groups = lua_gettop(L) - 1;
    const char *sql = lua_tostring(L, groups - 1);
    if (!sql) { /* nothing to write (a flush) */
        batch_done(l);
        return 0;
    }
    unsigned long long ins = 0, upd = 0;
    for (lua_Integer g = 1; lua_rawgeti(L, groups, g) == LUA_TTABLE; g++) {
        lua_getfield(L, -1, "count");
        lua_getfield(L, -2, "update");
        unsigned long long rows = (unsigned long long)lua_tointeger(L, -2);
        *(lua_toboolean(L, -1) ? &upd : &ins) += rows;
        lua_pop(L, 3);
    }
    lua_pop(L, 1);
    luaL_checkstack(L, 16, "log batch");
    batch_params *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    nyx_gc_metatable(L, "nyx.db.batch", free_text);
    luaL_setmetatable(L, "nyx.db.batch"); /* the text goes even on a raise */
    lua_newtable(L);
    b->keep = lua_gettop(L);
    b->p = lua_newuserdatauv(L, sizeof *b->p * (size_t)(n + 1), 0);
    b->at = lua_newuserdatauv(L, sizeof *b->at * (size_t)(n + 1), 0);
    batch_values(L, b, groups, n);
    nyx_err err;
    /* batches of one shape recur (an LLM call's two rows, a node's):
     * prepared once, parsed and planned once */
    int named = nyx_pg_send_cached(c->pg, sql, n, b->p, &err); /* copied */
    if (named < 0)
        return nyx_raise(L, "log", err.msg);
    l->w->prepared += (unsigned long long)named;
    l->w->batches[l->index]++;
    l->w->inserted += ins;
    l->w->updated += upd;
    int f = nyx_pg_flush(c->pg);
    if (f < 0)
        return nyx_raise(L, "log", nyx_pg_error_message(c->pg));
    int fd = nyx_pg_socket(c->pg);
    nyx_loop_watch(nyx_sched_loop(L), fd, NYX_READ | (f ? NYX_WRITE : 0),
                   log_io, l);
    l->watched = fd + 1;
    return 0;
}

/* Takes lane l's next batch off the queue: a caller that failed in a
 * batch goes alone, the others together up to the parameter limit; lane 1
 * takes append rows only. */
static void take_batch(log_writer *w, log_lane *l)
{
    log_entry **tail = &l->flight;
    int params = 0;
    l->flight = NULL;
    l->all_append = 1;
    while (w->head) {
        log_entry *e = w->head;
        if (l->index == 1 && (!e->append || e->solo))
            break;
        if (l->flight && (e->solo || params + e->nparams > MAX_BATCH_PARAMS))
            break;
        w->head = e->next;
        e->next = NULL;
        *tail = e;
        tail = &e->next;
        params += e->nparams;
        l->all_append &= e->append;
        if (e->solo)
            break;
    }
    if (!w->head)
        w->tail = NULL;
}

static void start_lane(lua_State *L, log_writer *w, log_lane *l)
{
    take_batch(w, l);
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

static int log_hook(lua_State *L, void *arg)
{
    log_writer *w = arg;
    log_lane *l0 = &w->lane[0], *l1 = &w->lane[1];
    if (!w->head)
        return 0;
    /* a flush (no rows) waits for both lanes: whatever was logged before
     * it must be committed when it returns */
    if (!l0->flight && (w->head->nparams > 0 || !l1->flight)) {
        start_lane(L, w, l0);
        return 1;
    }
    if (l0->flight && l0->all_append && !l1->flight && w->head->append &&
        !w->head->solo) {
        start_lane(L, w, l1);
        return 1;
    }
    return 0;
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
    if (!e->queued)
        return 0;
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
    } else {
        for (int i = 0; i < 2 && !*p; i++)
            for (p = &w->lane[i].flight; *p && *p != e; p = &(*p)->next) {
            }
        if (*p)
            *p = e->next;
    }
    nyx_unref(L, e->rows_ref);
    return 0;
}

/* Queues the rows at index 1 as a new entry, pushed. */
static log_entry *enqueue_entry(lua_State *L, log_writer *w, int nparams,
                                int append)
{
    log_entry *e = lua_newuserdatauv(L, sizeof *e, 0);
    memset(e, 0, sizeof *e);
    e->self_ref = LUA_NOREF;
    luaL_setmetatable(L, ENTRY_MT);
    e->nparams = nparams;
    e->append = append;
    lua_pushvalue(L, 1);
    e->rows_ref = nyx_ref(L);
    e->queued = 1;
    if (w->tail)
        w->tail->next = e;
    else
        w->head = e;
    w->tail = e;
    return e;
}

static int flush_k(lua_State *L, int status, lua_KContext ctx) { return 0; }

static int log_k(lua_State *L, int status, lua_KContext ctx)
{
    log_entry *e = (log_entry *)ctx;
    if (!e->ok)
        return nyx_raise(L, "log", e->error);
    lua_pushboolean(L, 1);
    return 1;
}

/* log(rows [, opts]): rows = {{table=, columns={...}, values={...}}, ...};
 * waits until they are committed, then returns true. opts.wait = false:
 * returns at once; the rows go with the next batch all the same, a failure
 * is one line on stderr, and the script's run ends only once they are
 * written. opts.append = true: the rows are inserts that nothing updates
 * later, free to go on the second lane (no update rows allowed). */
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
    int nparams = 0;
    for (lua_Integer i = 1; lua_rawgeti(L, 1, i) == LUA_TTABLE; i++) {
        if (lua_getfield(L, -1, "columns") != LUA_TTABLE)
            return luaL_error(L,
                              "bad argument #1 to 'log' (row %d has no "
                              "columns)",
                              (int)i);
        nparams += (int)lua_rawlen(L, -1);
        lua_pop(L, 1);
        if (append) {
            lua_getfield(L, -1, "update");
            int update = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (update)
                return luaL_error(L,
                                  "bad argument #1 to 'log' (row %d is an "
                                  "update: append rows are inserts only)",
                                  (int)i);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    luaL_argcheck(L, nparams > 0 && nparams <= MAX_BATCH_PARAMS, 1,
                  "rows must hold between 1 and 60000 values");
    log_entry *e = enqueue_entry(L, w, nparams, append);
    if (!wait) {
        lua_pushvalue(L, -1);
        e->self_ref = nyx_ref(L);
        nyx_sched_hold(L, 1);
        lua_pushboolean(L, 1);
        return 1;
    }
    return nyx_await(L, &e->w, (lua_KContext)e, log_k);
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
    lua_newtable(L); /* no rows: it waits its turn behind the others */
    log_entry *e = enqueue_entry(L, w, 0, 0);
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
