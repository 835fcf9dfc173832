/* Which database nyx uses, and opening it ready for work: the connection
 * made, the embedded cluster started if that is the one, the schema
 * migrated. */
#ifndef NYX_DATABASE_H
#define NYX_DATABASE_H

#include "pg.h"
#include "util.h"

#include <limits.h>

typedef struct nyx_dbtarget {
    char conninfo[4096]; /* may hold a password: never print it */
    const char *source;  /* "NYX_DATABASE_URL", "PG* variables", "embedded" */
    int embedded;
    char cluster_dir[PATH_MAX];
} nyx_dbtarget;

/* NYX_DATABASE_URL, else the PG* variables (PGHOST, PGDATABASE, ...),
 * else the embedded cluster. Starts nothing. */
int nyx_db_target(nyx_dbtarget *t, nyx_err *err);

/* The embedded cluster, whatever the environment says. */
int nyx_db_target_embedded(nyx_dbtarget *t, nyx_err *err);

enum { NYX_DB_MIGRATE = 1, NYX_DB_QUIET = 2 };

/* Connects to t (creating and starting the embedded cluster if needed;
 * the first time, one line on stderr says where the data lives) and, with
 * NYX_DB_MIGRATE, applies pending migrations. */
nyx_pg *nyx_db_open(const nyx_dbtarget *t, int flags, nyx_err *err);

/* Same for an explicit conninfo with overrides (see nyx_pg_connect). */
nyx_pg *nyx_db_open_conninfo(const char *conninfo, const char *const *keys,
                             const char *const *vals, int flags, nyx_err *err);

#endif
