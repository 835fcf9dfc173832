#include "database.h"

#include "cluster.h"
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const PG_VARS[] = {"PGHOST",     "PGHOSTADDR", "PGPORT",
                                      "PGDATABASE", "PGUSER",     "PGSERVICE",
                                      NULL};

int nyx_db_target(nyx_dbtarget *t, nyx_err *err)
{
    memset(t, 0, sizeof *t);
    const char *url = getenv("NYX_DATABASE_URL");
    if (url && *url) {
        if (nyx_fmt(t->conninfo, sizeof t->conninfo, "%s", url) < 0) {
            nyx_errf(err, "NYX_DATABASE_URL is longer than %zu bytes",
                     sizeof t->conninfo - 1);
            return -1;
        }
        t->source = "NYX_DATABASE_URL";
        return 0;
    }
    for (int i = 0; PG_VARS[i]; i++) {
        const char *v = getenv(PG_VARS[i]);
        if (v && *v) {
            t->source = "PG* variables"; /* libpq reads them itself */
            return 0;
        }
    }
    return nyx_db_target_embedded(t, err);
}

int nyx_db_target_embedded(nyx_dbtarget *t, nyx_err *err)
{
    memset(t, 0, sizeof *t);
    nyx_cluster c;
    if (nyx_cluster_init(&c, err) < 0)
        return -1;
    t->embedded = 1;
    t->source = "embedded";
    if (nyx_fmt(t->conninfo, sizeof t->conninfo, "%s", c.conninfo) < 0 ||
        nyx_fmt(t->cluster_dir, sizeof t->cluster_dir, "%s", c.dir) < 0) {
        nyx_errf(err, "data folder path too long: %s", c.dir);
        return -1;
    }
    return 0;
}

static int migrate(nyx_pg *pg, int quiet, nyx_err *err)
{
    nyx_migration_set set;
    if (nyx_migrations_load(NULL, &set, err) < 0)
        return -1;
    int n = nyx_migrate_pending(pg, &set, err);
    if (n > 0)
        n = nyx_migrate_apply(pg, &set, NULL, NULL, err);
    if (n > 0 && !quiet)
        fprintf(stderr,
                "nyx: applied %d migration%s to %s (schema now at "
                "%d)\n",
                n, n == 1 ? "" : "s", nyx_pg_describe(pg),
                set.v[set.n - 1].version);
    nyx_migrations_free(&set);
    return n < 0 ? -1 : 0;
}

nyx_pg *nyx_db_open_conninfo(const char *conninfo, const char *const *keys,
                             const char *const *vals, int flags, nyx_err *err)
{
    nyx_pg *pg = nyx_pg_connect(conninfo, keys, vals, err);
    if (pg && (flags & NYX_DB_MIGRATE) &&
        migrate(pg, flags & NYX_DB_QUIET, err) < 0) {
        nyx_pg_close(pg);
        return NULL;
    }
    return pg;
}

nyx_pg *nyx_db_open(const nyx_dbtarget *t, int flags, nyx_err *err)
{
    int created = 0;
    if (t->embedded) {
        nyx_cluster c;
        if (nyx_cluster_init(&c, err) < 0 ||
            nyx_cluster_ensure(&c, &created, err) < 0)
            return NULL;
        for (int i = 0; i < c.nnotes; i++)
            fprintf(stderr, "nyx: %s\n", c.notes[i]);
        if (created)
            fprintf(stderr,
                    "nyx: created the embedded database in %s "
                    "(Unix socket only; 'nyx db stop' stops it)\n",
                    c.dir);
    }
    if (created)
        flags |= NYX_DB_QUIET; /* a new database: its schema is no news */
    return nyx_db_open_conninfo(t->conninfo, NULL, NULL, flags, err);
}
