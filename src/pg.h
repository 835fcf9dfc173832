/* PostgreSQL service: connections, parameterised queries and their results.
 * The only file besides cluster.c and migrate.c that calls libpq; bindings
 * go through these functions. */
#ifndef NYX_PG_H
#define NYX_PG_H

#include "util.h"

typedef struct nyx_pg nyx_pg;
typedef struct pg_result nyx_pg_res; /* libpq's PGresult, opaque here */

/* Opens a connection. conninfo is a libpq conninfo string or URI (NULL or
 * "" means libpq's defaults: the PG* variables). keys/vals, NULL-terminated
 * and possibly NULL, override single parameters (e.g. dbname). The session
 * runs in UTC with notices off. On failure err says which database and why. */
nyx_pg *nyx_pg_connect(const char *conninfo, const char *const *keys,
                       const char *const *vals, nyx_err *err);
void nyx_pg_close(nyx_pg *pg);

/* A second connection to the same database with the same parameters. */
nyx_pg *nyx_pg_clone(const nyx_pg *pg, nyx_err *err);

/* "database \"nyx\" on /path/to/socket" or "... on host:port". */
const char *nyx_pg_describe(const nyx_pg *pg);
/* A connection parameter in use: 'h' host (or socket folder), 'p' port,
 * 'u' user, 'd' database; NULL if unknown. */
const char *nyx_pg_param(const nyx_pg *pg, char which);
int nyx_pg_server_version(const nyx_pg *pg); /* e.g. 150018 */
int nyx_pg_in_transaction(const nyx_pg *pg);

/* Runs one statement with text parameters (NULL entries are SQL NULL).
 * Returns a result to free with nyx_pg_clear, also on SQL errors (see
 * nyx_pg_res_ok); NULL only when out of memory. */
nyx_pg_res *nyx_pg_exec(nyx_pg *pg, const char *sql, int nparams,
                        const char *const *params);
/* Same, for a string that may hold several statements and no parameters. */
nyx_pg_res *nyx_pg_exec_script(nyx_pg *pg, const char *sql);
void nyx_pg_clear(nyx_pg_res *res);

/* Runs sql and returns 0, or fills err with "context: message" and returns
 * -1; for statements whose result is not needed. */
int nyx_pg_run(nyx_pg *pg, const char *sql, int nparams,
               const char *const *params, const char *context, nyx_err *err);

typedef enum {
    NYX_PG_TEXT,
    NYX_PG_INT,
    NYX_PG_FLOAT,
    NYX_PG_BOOL,
    NYX_PG_JSON
} nyx_pg_kind;

int nyx_pg_res_ok(const nyx_pg_res *res);
int nyx_pg_ntuples(const nyx_pg_res *res);
int nyx_pg_nfields(const nyx_pg_res *res);
const char *nyx_pg_fname(const nyx_pg_res *res, int col);
nyx_pg_kind nyx_pg_fkind(const nyx_pg_res *res, int col);
/* NULL for SQL NULL. */
const char *nyx_pg_value(const nyx_pg_res *res, int row, int col);
const char *nyx_pg_cmd_tuples(const nyx_pg_res *res); /* "" if none */

/* What PostgreSQL said about a failed statement; strings point into res
 * (or the connection) and are never NULL ("" when absent). */
typedef struct nyx_pg_error {
    const char *sqlstate, *message, *detail, *hint, *constraint, *table,
        *column;
    int position; /* 1-based character offset in the statement, 0 if none */
    int connection_lost;
} nyx_pg_error;

void nyx_pg_res_error(const nyx_pg *pg, const nyx_pg_res *res,
                      nyx_pg_error *out);

/* Sending without waiting, for code on the event loop. nyx_pg_send_cached
 * puts the connection in non-blocking pipeline mode and queues the
 * statement; a text seen for the second time is prepared on the server
 * (up to 128 per connection) and from then on sent by name, so the server
 * parses and plans it once (returns 1 then, 0 when sent as text, -1 on
 * failure). nyx_pg_flush sends what is queued (0: all sent, 1: more to
 * send when the socket is writable, -1: failed); nyx_pg_consume reads
 * what arrived (-1: the connection failed); nyx_pg_next then gives 1 with
 * *res a result to clear, 0 once everything sent is done, -1 when more
 * input must arrive first. Errors go to err / nyx_pg_error_message. */
int nyx_pg_socket(const nyx_pg *pg);
int nyx_pg_send_cached(nyx_pg *pg, const char *sql, int nparams,
                       const char *const *params, nyx_err *err);
int nyx_pg_next(nyx_pg *pg, nyx_pg_res **res);
int nyx_pg_flush(nyx_pg *pg);
int nyx_pg_consume(nyx_pg *pg);
const char *nyx_pg_error_message(const nyx_pg *pg);
int nyx_pg_ok(const nyx_pg *pg); /* the connection is usable */

/* Notifications (LISTEN/NOTIFY) that nyx_pg_consume has read: each call
 * fills n with the next one and returns 1, or returns 0 when none is
 * waiting. channel and payload stay valid until nyx_pg_note_free(n). */
typedef struct nyx_pg_note {
    const char *channel, *payload;
    int pid; /* the notifying backend's */
    void *raw;
} nyx_pg_note;
int nyx_pg_next_note(nyx_pg *pg, nyx_pg_note *n);
void nyx_pg_note_free(nyx_pg_note *n);

/* libpq's version, e.g. 150018. */
int nyx_pg_lib_version(void);

/* 1 if a server accepts connections with this conninfo, 0 if not (yet). */
int nyx_pg_ping(const char *conninfo);

#endif
