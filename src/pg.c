#include "pg.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A statement nyx_pg_send_cached has seen: its text once it is prepared
 * (as "nyx_<number>"), else only its hash and how often it came. */
typedef struct seen_stmt {
    uint64_t hash;
    char *sql; /* prepared: the text, to tell hash collisions apart */
    int number, count;
} seen_stmt;

enum {
    SEEN_SLOTS = 1024, /* statements tracked per connection */
    MAX_PREPARED = 128 /* statements prepared per connection */
};

struct nyx_pg {
    PGconn *conn;
    char describe[512];
    seen_stmt *seen; /* SEEN_SLOTS, open addressing; NULL until needed */
    int nseen, nprepared;
    int syncs;     /* pipeline syncs sent whose results are not all read */
    int broken;    /* a send failed half way: not to be used again */
    int preparing; /* slot whose Prepare's result comes next, or -1 */
};

/* Type OIDs from pg_type.h, which is not part of libpq's public headers. */
enum {
    BOOLOID = 16,
    INT8OID = 20,
    INT2OID = 21,
    INT4OID = 23,
    OIDOID = 26,
    JSONOID = 114,
    FLOAT4OID = 700,
    FLOAT8OID = 701,
    NUMERICOID = 1700,
    JSONBOID = 3802
};

static void describe(nyx_pg *pg)
{
    const char *db = PQdb(pg->conn), *host = PQhost(pg->conn);
    const char *port = PQport(pg->conn);
    db = db ? db : "?";
    if (!host || !*host)
        host = "the default socket";
    if (host[0] == '/')
        snprintf(pg->describe, sizeof pg->describe, "database \"%s\" on %s", db,
                 host);
    else
        snprintf(pg->describe, sizeof pg->describe, "database \"%s\" on %s:%s",
                 db, host, port && *port ? port : "5432");
}

static void notice(void *arg, const PGresult *res)
{
    /* client_min_messages = warning lets only warnings through. */
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    fprintf(stderr, "nyx: postgres: %s\n", msg ? msg : "(warning)");
}

nyx_pg *nyx_pg_connect(const char *conninfo, const char *const *keys,
                       const char *const *vals, nyx_err *err)
{
    const char *k[72], *v[72];
    int n = 0;
    k[n] = "dbname", v[n++] = conninfo ? conninfo : "";
    k[n] = "fallback_application_name", v[n++] = "nyx";
    for (int i = 0; keys && keys[i] && n < 71; i++)
        k[n] = keys[i], v[n++] = vals[i];
    k[n] = v[n] = NULL;

    nyx_pg *pg = calloc(1, sizeof *pg);
    if (pg)
        pg->preparing = -1;
    if (!pg) {
        nyx_errf(err, "cannot connect to PostgreSQL: out of memory");
        return NULL;
    }
    pg->conn = PQconnectdbParams(k, v, 1);
    if (!pg->conn) {
        nyx_errf(err, "cannot connect to PostgreSQL: out of memory");
        free(pg);
        return NULL;
    }
    describe(pg);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        nyx_errf(err, "cannot connect to %s: %s", pg->describe,
                 PQerrorMessage(pg->conn));
        nyx_pg_close(pg);
        return NULL;
    }
    PQsetNoticeReceiver(pg->conn, notice, NULL);
    if (nyx_pg_run(pg, "SET TIME ZONE 'UTC'; SET client_min_messages = warning",
                   0, NULL, "setting up the session", err) < 0) {
        nyx_pg_close(pg);
        return NULL;
    }
    return pg;
}

void nyx_pg_close(nyx_pg *pg)
{
    if (!pg)
        return;
    PQfinish(pg->conn);
    for (int i = 0; pg->seen && i < SEEN_SLOTS; i++)
        free(pg->seen[i].sql);
    free(pg->seen);
    free(pg);
}

nyx_pg *nyx_pg_clone(const nyx_pg *pg, nyx_err *err)
{
    PQconninfoOption *opts = PQconninfo(pg->conn);
    if (!opts) {
        nyx_errf(err, "cannot read the connection's parameters");
        return NULL;
    }
    const char *k[64], *v[64];
    int n = 0;
    for (PQconninfoOption *o = opts; o->keyword && n < 63; o++)
        if (o->val && *o->val && strcmp(o->keyword, "dbname") != 0)
            k[n] = o->keyword, v[n++] = o->val;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && strcmp(o->keyword, "dbname") == 0 && n < 63)
            k[n] = "dbname", v[n++] = o->val; /* a name, not a conninfo */
    k[n] = v[n] = NULL;
    nyx_pg *copy = nyx_pg_connect(NULL, k, v, err);
    PQconninfoFree(opts);
    return copy;
}

const char *nyx_pg_describe(const nyx_pg *pg) { return pg->describe; }

const char *nyx_pg_param(const nyx_pg *pg, char which)
{
    switch (which) {
    case 'h':
        return PQhost(pg->conn);
    case 'p':
        return PQport(pg->conn);
    case 'u':
        return PQuser(pg->conn);
    case 'd':
        return PQdb(pg->conn);
    }
    return NULL;
}

int nyx_pg_server_version(const nyx_pg *pg)
{
    return PQserverVersion(pg->conn);
}

int nyx_pg_in_transaction(const nyx_pg *pg)
{
    PGTransactionStatusType s = PQtransactionStatus(pg->conn);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
}

nyx_pg_res *nyx_pg_exec(nyx_pg *pg, const char *sql, int nparams,
                        const char *const *params)
{
    return PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
}

nyx_pg_res *nyx_pg_exec_script(nyx_pg *pg, const char *sql)
{
    return PQexec(pg->conn, sql);
}

void nyx_pg_clear(nyx_pg_res *res) { PQclear(res); }

int nyx_pg_run(nyx_pg *pg, const char *sql, int nparams,
               const char *const *params, const char *context, nyx_err *err)
{
    PGresult *res = nparams ? nyx_pg_exec(pg, sql, nparams, params)
                            : nyx_pg_exec_script(pg, sql);
    if (nyx_pg_res_ok(res)) {
        PQclear(res);
        return 0;
    }
    nyx_pg_error e;
    nyx_pg_res_error(pg, res, &e);
    nyx_errf(err, "%s: %s", context, e.message);
    PQclear(res);
    return -1;
}

int nyx_pg_res_ok(const nyx_pg_res *res)
{
    ExecStatusType s = PQresultStatus(res);
    return res && (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ||
                   s == PGRES_EMPTY_QUERY);
}

int nyx_pg_ntuples(const nyx_pg_res *res) { return PQntuples(res); }
int nyx_pg_nfields(const nyx_pg_res *res) { return PQnfields(res); }
const char *nyx_pg_fname(const nyx_pg_res *res, int col)
{
    return PQfname(res, col);
}

nyx_pg_kind nyx_pg_fkind(const nyx_pg_res *res, int col)
{
    switch (PQftype(res, col)) {
    case BOOLOID:
        return NYX_PG_BOOL;
    case INT2OID:
    case INT4OID:
    case INT8OID:
    case OIDOID:
        return NYX_PG_INT;
    case FLOAT4OID:
    case FLOAT8OID:
    case NUMERICOID:
        return NYX_PG_FLOAT;
    case JSONOID:
    case JSONBOID:
        return NYX_PG_JSON;
    default:
        return NYX_PG_TEXT;
    }
}

const char *nyx_pg_value(const nyx_pg_res *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

const char *nyx_pg_cmd_tuples(const nyx_pg_res *res)
{
    return PQcmdTuples((PGresult *)res);
}

static const char *field(const PGresult *res, int code)
{
    const char *s = res ? PQresultErrorField(res, code) : NULL;
    return s ? s : "";
}

void nyx_pg_res_error(const nyx_pg *pg, const nyx_pg_res *res,
                      nyx_pg_error *out)
{
    out->sqlstate = field(res, PG_DIAG_SQLSTATE);
    out->message = field(res, PG_DIAG_MESSAGE_PRIMARY);
    out->detail = field(res, PG_DIAG_MESSAGE_DETAIL);
    out->hint = field(res, PG_DIAG_MESSAGE_HINT);
    out->constraint = field(res, PG_DIAG_CONSTRAINT_NAME);
    out->table = field(res, PG_DIAG_TABLE_NAME);
    out->column = field(res, PG_DIAG_COLUMN_NAME);
    out->position = atoi(field(res, PG_DIAG_STATEMENT_POSITION));
    out->connection_lost = PQstatus(pg->conn) != CONNECTION_OK;
    if (!*out->message) /* no server message: libpq's own (lost connection) */
        out->message = res && *PQresultErrorMessage(res)
                           ? PQresultErrorMessage(res)
                           : PQerrorMessage(pg->conn);
    if (!*out->message)
        out->message = "out of memory";
}

int nyx_pg_ping(const char *conninfo) { return PQping(conninfo) == PQPING_OK; }

int nyx_pg_lib_version(void) { return PQlibVersion(); }

int nyx_pg_socket(const nyx_pg *pg) { return PQsocket(pg->conn); }

/* FNV-1a, 64 bits. */
static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The slot of sql in pg's table of seen statements: its own, a free one
 * to take, or -1 when the table is full. */
static int seen_slot(nyx_pg *pg, const char *sql, uint64_t h)
{
    for (int i = 0; i < SEEN_SLOTS; i++) {
        int k = (int)((h + (uint64_t)i) % SEEN_SLOTS);
        seen_stmt *e = &pg->seen[k];
        if (!e->count)
            return pg->nseen < SEEN_SLOTS * 3 / 4 ? k : -1;
        if (e->hash == h && (!e->sql || strcmp(e->sql, sql) == 0))
            return k;
    }
    return -1;
}

int nyx_pg_send_cached(nyx_pg *pg, const char *sql, int nparams,
                       const char *const *params, nyx_err *err)
{
    PGconn *c = pg->conn;
    if (!PQisnonblocking(c) && PQsetnonblocking(c, 1) != 0)
        goto failed;
    if (PQpipelineStatus(c) == PQ_PIPELINE_OFF && !PQenterPipelineMode(c))
        goto failed;
    if (!pg->seen && !(pg->seen = calloc(SEEN_SLOTS, sizeof *pg->seen))) {
        nyx_errf(err, "out of memory");
        return -1;
    }
    uint64_t h = hash_text(sql);
    int k = seen_slot(pg, sql, h);
    seen_stmt *e = k >= 0 ? &pg->seen[k] : NULL;
    char name[32] = "";
    if (e && !e->count) { /* first sight */
        e->hash = h;
        pg->nseen++;
    }
    if (e)
        e->count++;
    if (e && e->sql) {
        snprintf(name, sizeof name, "nyx_%d", e->number);
    } else if (e && e->count >= 2 && pg->nprepared < MAX_PREPARED &&
               (e->sql = strdup(sql))) {
        e->number = ++pg->nprepared;
        snprintf(name, sizeof name, "nyx_%d", e->number);
        if (!PQsendPrepare(c, name, sql, nparams, NULL))
            goto failed;
        pg->preparing = k;
    }
    int sent =
        name[0]
            ? PQsendQueryPrepared(c, name, nparams, params, NULL, NULL, 0)
            : PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    if (!sent || !PQpipelineSync(c))
        goto failed;
    pg->syncs++;
    return name[0] != '\0';
failed:
    nyx_errf(err, "%s", PQerrorMessage(c));
    pg->broken = 1; /* what was queued is unknown: nyx_pg_ok says no more */
    return -1;
}

int nyx_pg_next(nyx_pg *pg, nyx_pg_res **out)
{
    *out = NULL;
    for (int nulls = 0;;) {
        if (PQstatus(pg->conn) != CONNECTION_OK) {
            pg->syncs = 0;
            return 0;
        }
        if (PQisBusy(pg->conn))
            return -1;
        PGresult *r = PQgetResult(pg->conn);
        if (!r) {
            if (pg->syncs > 0 && ++nulls < 2)
                continue; /* between the statements of a pipeline */
            pg->syncs = 0;
            return 0;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            if (--pg->syncs <= 0) {
                pg->syncs = 0;
                return 0;
            }
            continue;
        }
        if (pg->preparing >= 0) { /* the Prepare's answer */
            seen_stmt *e = &pg->seen[pg->preparing];
            pg->preparing = -1;
            if (st != PGRES_COMMAND_OK) { /* not prepared: forget it */
                free(e->sql);
                e->sql = NULL;
                e->count = 1;
                pg->nprepared--;
            }
        }
        *out = r;
        return 1;
    }
}

int nyx_pg_flush(nyx_pg *pg) { return PQflush(pg->conn); }

int nyx_pg_consume(nyx_pg *pg) { return PQconsumeInput(pg->conn) ? 0 : -1; }

const char *nyx_pg_error_message(const nyx_pg *pg)
{
    return PQerrorMessage(pg->conn);
}

int nyx_pg_ok(const nyx_pg *pg)
{
    return !pg->broken && PQstatus(pg->conn) == CONNECTION_OK;
}

int nyx_pg_next_note(nyx_pg *pg, nyx_pg_note *n)
{
    PGnotify *note = PQnotifies(pg->conn);
    memset(n, 0, sizeof *n);
    if (!note)
        return 0;
    n->raw = note;
    n->channel = note->relname;
    n->payload = note->extra ? note->extra : "";
    n->pid = note->be_pid;
    return 1;
}

void nyx_pg_note_free(nyx_pg_note *n)
{
    PQfreemem(n->raw);
    n->raw = NULL;
}
