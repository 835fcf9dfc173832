/* Schema migrations: numbered files (sql/0001_tables.sql, ...) applied in
 * order, each in its own transaction, recorded in schema_migrations. */
#ifndef NYX_MIGRATE_H
#define NYX_MIGRATE_H

#include "pg.h"
#include "util.h"

typedef struct nyx_migration {
    int version;    /* the file name's leading number */
    char name[128]; /* "0001_tables.sql" */
    char *sql;      /* owned */
    size_t len;
    char checksum[17];
} nyx_migration;

typedef struct nyx_migration_set {
    nyx_migration *v;
    size_t n;
    char source[4096]; /* the folder they came from, or "embedded" */
} nyx_migration_set;

/* Loads *.sql from dir, or when dir is NULL from <nyx home>/sql, falling
 * back to the copies compiled into the binary. Sorted by version;
 * duplicate versions and names without a leading number are errors. */
int nyx_migrations_load(const char *dir, nyx_migration_set *set, nyx_err *err);
/* Pass as dir for the embedded copies, whatever is on disk. */
extern const char NYX_MIGRATIONS_EMBEDDED[];
void nyx_migrations_free(nyx_migration_set *set);

typedef enum {
    NYX_MIG_PENDING,
    NYX_MIG_APPLIED,
    NYX_MIG_CHANGED, /* applied, but the file differs from what was applied */
    NYX_MIG_UNKNOWN  /* applied, but no such file here (a newer nyx?) */
} nyx_mig_state;

typedef struct nyx_mig_status {
    int version;
    char name[128];
    char applied_at[64]; /* "" when pending */
    nyx_mig_state state;
} nyx_mig_status;

/* Fills *out (malloc'd, *n entries, by version) with every migration known
 * here or recorded in the database. */
int nyx_migrate_status(nyx_pg *pg, const nyx_migration_set *set,
                       nyx_mig_status **out, size_t *n, nyx_err *err);

/* Applies the pending migrations under an advisory lock, so concurrent
 * nyx processes do not race. Calls on_applied after each one. Returns how
 * many were applied, or -1: err then names the file and line that failed,
 * and that file left nothing behind. */
int nyx_migrate_apply(nyx_pg *pg, const nyx_migration_set *set,
                      void (*on_applied)(const nyx_migration *, double ms,
                                         void *),
                      void *arg, nyx_err *err);

/* Number of migrations in set not yet recorded in the database, or -1. */
int nyx_migrate_pending(nyx_pg *pg, const nyx_migration_set *set, nyx_err *err);

#endif
