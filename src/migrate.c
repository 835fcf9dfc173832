#include "migrate.h"

#include "paths.h"
#include "sqlsplit.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Any constant will do, as long as it is nyx's own: serialises migrations
 * of concurrent nyx processes on one database. */
#define MIGRATE_LOCK   "SELECT pg_advisory_lock(7375247012783291001)"
#define MIGRATE_UNLOCK "SELECT pg_advisory_unlock(7375247012783291001)"

static const char CREATE_TABLE[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,"
    " duration_ms INTEGER)";

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int add(nyx_migration_set *set, const char *name, const char *data,
               size_t len, nyx_err *err)
{
    if (!isdigit((unsigned char)name[0])) {
        nyx_errf(err,
                 "%s/%s: a migration's name starts with its number "
                 "(e.g. 0005_add_index.sql)",
                 set->source, name);
        return -1;
    }
    nyx_migration *v = realloc(set->v, (set->n + 1) * sizeof *v);
    if (!v)
        goto oom;
    set->v = v;
    nyx_migration *m = &v[set->n];
    memset(m, 0, sizeof *m);
    m->version = atoi(name);
    if (nyx_fmt(m->name, sizeof m->name, "%s", name) < 0) {
        nyx_errf(err, "%s/%s: file name too long", set->source, name);
        return -1;
    }
    m->sql = malloc(len + 1);
    if (!m->sql)
        goto oom;
    memcpy(m->sql, data, len);
    m->sql[len] = '\0';
    m->len = len;
    nyx_fnv1a_hex(data, len, m->checksum);
    set->n++;
    return 0;
oom:
    nyx_errf(err, "cannot load migrations: out of memory");
    return -1;
}

static int load_dir(const char *dir, nyx_migration_set *set, nyx_err *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        nyx_errf(err, "cannot open migrations folder %s", dir);
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".sql"))
            continue;
        char path[4096];
        size_t len;
        if (nyx_fmt(path, sizeof path, "%s/%s", dir, e->d_name) < 0) {
            nyx_errf(err, "path too long: %s/%s", dir, e->d_name);
            rc = -1;
            break;
        }
        char *data = nyx_read_file(path, &len, err);
        rc = data ? add(set, e->d_name, data, len, err) : -1;
        free(data);
    }
    closedir(d);
    return rc;
}

static int load_embedded(nyx_migration_set *set, nyx_err *err)
{
    for (const nyx_asset *a = nyx_assets; a->name; a++)
        if (strncmp(a->name, "sql/", 4) == 0 && ends_with(a->name, ".sql") &&
            add(set, a->name + 4, a->data, a->size, err) < 0)
            return -1;
    return 0;
}

static int by_version(const void *a, const void *b)
{
    const nyx_migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

const char NYX_MIGRATIONS_EMBEDDED[] = "embedded";

int nyx_migrations_load(const char *dir, nyx_migration_set *set, nyx_err *err)
{
    memset(set, 0, sizeof *set);
    char path[4096];
    struct stat st;
    const char *home = nyx_home();
    if (dir == NYX_MIGRATIONS_EMBEDDED)
        dir = NULL;
    else if (!dir && home && nyx_fmt(path, sizeof path, "%s/sql", home) == 0 &&
             stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        dir = path;
    snprintf(set->source, sizeof set->source, "%s", dir ? dir : "embedded");
    int rc = dir ? load_dir(dir, set, err) : load_embedded(set, err);
    if (rc < 0) {
        nyx_migrations_free(set);
        return -1;
    }
    qsort(set->v, set->n, sizeof *set->v, by_version);
    for (size_t i = 1; i < set->n; i++)
        if (set->v[i].version == set->v[i - 1].version) {
            nyx_errf(err, "%s: %s and %s have the same number; renumber one",
                     set->source, set->v[i - 1].name, set->v[i].name);
            nyx_migrations_free(set);
            return -1;
        }
    return 0;
}

void nyx_migrations_free(nyx_migration_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        free(set->v[i].sql);
    free(set->v);
    set->v = NULL;
    set->n = 0;
}

/* Versions recorded in the database (NULL, *n = 0 if the table is missing). */
static int applied_versions(nyx_pg *pg, nyx_pg_res **out, nyx_err *err)
{
    *out = NULL;
    nyx_pg_res *r = nyx_pg_exec(
        pg, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL);
    if (!nyx_pg_res_ok(r)) {
        nyx_pg_error e;
        nyx_pg_res_error(pg, r, &e);
        nyx_errf(err, "cannot read the schema version of %s: %s",
                 nyx_pg_describe(pg), e.message);
        nyx_pg_clear(r);
        return -1;
    }
    int exists = strcmp(nyx_pg_value(r, 0, 0), "t") == 0;
    nyx_pg_clear(r);
    if (!exists)
        return 0;
    r = nyx_pg_exec(pg,
                    "SELECT version, name, checksum, to_char(applied_at, "
                    "'YYYY-MM-DD HH24:MI:SS TZ') FROM schema_migrations "
                    "ORDER BY version",
                    0, NULL);
    if (!nyx_pg_res_ok(r)) {
        nyx_pg_error e;
        nyx_pg_res_error(pg, r, &e);
        nyx_errf(err, "cannot read schema_migrations: %s", e.message);
        nyx_pg_clear(r);
        return -1;
    }
    *out = r;
    return 0;
}

static int find_row(nyx_pg_res *r, int version)
{
    for (int i = 0; r && i < nyx_pg_ntuples(r); i++)
        if (atoi(nyx_pg_value(r, i, 0)) == version)
            return i;
    return -1;
}

int nyx_migrate_pending(nyx_pg *pg, const nyx_migration_set *set, nyx_err *err)
{
    nyx_pg_res *r;
    if (applied_versions(pg, &r, err) < 0)
        return -1;
    int pending = 0;
    for (size_t i = 0; i < set->n; i++)
        pending += find_row(r, set->v[i].version) < 0;
    nyx_pg_clear(r);
    return pending;
}

static int by_status_version(const void *a, const void *b)
{
    const nyx_mig_status *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

int nyx_migrate_status(nyx_pg *pg, const nyx_migration_set *set,
                       nyx_mig_status **out, size_t *n, nyx_err *err)
{
    nyx_pg_res *r;
    if (applied_versions(pg, &r, err) < 0)
        return -1;
    int rows = r ? nyx_pg_ntuples(r) : 0;
    nyx_mig_status *s = calloc(set->n + (size_t)rows + 1, sizeof *s);
    if (!s) {
        nyx_pg_clear(r);
        nyx_errf(err, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < set->n; i++, k++) {
        const nyx_migration *m = &set->v[i];
        int row = find_row(r, m->version);
        s[k].version = m->version;
        snprintf(s[k].name, sizeof s[k].name, "%s", m->name);
        s[k].state = row < 0 ? NYX_MIG_PENDING
                     : strcmp(nyx_pg_value(r, row, 2), m->checksum)
                         ? NYX_MIG_CHANGED
                         : NYX_MIG_APPLIED;
        if (row >= 0)
            snprintf(s[k].applied_at, sizeof s[k].applied_at, "%s",
                     nyx_pg_value(r, row, 3));
    }
    for (int row = 0; row < rows; row++) {
        int version = atoi(nyx_pg_value(r, row, 0)), known = 0;
        for (size_t i = 0; i < set->n; i++)
            known |= set->v[i].version == version;
        if (known)
            continue;
        s[k].version = version;
        s[k].state = NYX_MIG_UNKNOWN;
        snprintf(s[k].name, sizeof s[k].name, "%s", nyx_pg_value(r, row, 1));
        snprintf(s[k].applied_at, sizeof s[k].applied_at, "%s",
                 nyx_pg_value(r, row, 3));
        k++;
    }
    nyx_pg_clear(r);
    qsort(s, k, sizeof *s, by_status_version);
    *out = s;
    *n = k;
    return 0;
}

typedef struct run_ctx {
    nyx_pg *pg;
    const nyx_migration_set *set;
    const nyx_migration *m;
    nyx_err *err;
} run_ctx;

static int run_statement(const nyx_sql_stmt *st, void *arg)
{
    run_ctx *c = arg;
    char *text = strndup(c->m->sql + st->offset, st->len);
    if (!text) {
        nyx_errf(c->err, "migration %s: out of memory", c->m->name);
        return -1;
    }
    nyx_pg_res *r = nyx_pg_exec_script(c->pg, text);
    free(text);
    if (nyx_pg_res_ok(r)) {
        nyx_pg_clear(r);
        return 0;
    }
    nyx_pg_error e;
    nyx_pg_res_error(c->pg, r, &e);
    int line =
        e.position ? nyx_sql_line_at(c->m->sql, st, e.position) : st->line;
    nyx_errf(c->err,
             "migration %s/%s failed at line %d: %s%s%s (rolled back: "
             "nothing from %s was applied)",
             c->set->source, c->m->name, line, e.message, *e.detail ? "; " : "",
             e.detail, c->m->name);
    nyx_pg_clear(r);
    return -1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int apply_one(nyx_pg *pg, const nyx_migration_set *set,
                     const nyx_migration *m, double *ms, nyx_err *err)
{
    double t0 = now_ms();
    if (nyx_pg_run(pg, "BEGIN", 0, NULL, "starting a migration", err) < 0)
        return -1;
    run_ctx c = {pg, set, m, err};
    int unterminated = 0;
    int rc = nyx_sql_split(m->sql, m->len, run_statement, &c, &unterminated);
    if (rc == 1)
        nyx_errf(err,
                 "migration %s/%s: quote or comment opened at line %d "
                 "is never closed (nothing from it was applied)",
                 set->source, m->name, unterminated);
    if (rc == 0) {
        char version[16], duration[16];
        snprintf(version, sizeof version, "%d", m->version);
        snprintf(duration, sizeof duration, "%d", (int)(now_ms() - t0));
        const char *p[] = {version, m->name, m->checksum, duration};
        rc = nyx_pg_run(pg,
                        "INSERT INTO schema_migrations (version, name, "
                        "checksum, duration_ms) VALUES ($1, $2, $3, $4)",
                        4, p, "recording a migration", err);
    }
    if (rc == 0)
        rc = nyx_pg_run(pg, "COMMIT", 0, NULL, "committing a migration", err);
    if (rc != 0) {
        nyx_err ignore;
        nyx_pg_run(pg, "ROLLBACK", 0, NULL, "rollback", &ignore);
        return -1;
    }
    *ms = now_ms() - t0;
    return 0;
}

int nyx_migrate_apply(nyx_pg *pg, const nyx_migration_set *set,
                      void (*on_applied)(const nyx_migration *, double, void *),
                      void *arg, nyx_err *err)
{
    if (nyx_pg_in_transaction(pg)) {
        nyx_errf(err, "cannot migrate inside a transaction; commit it first");
        return -1;
    }
    if (nyx_pg_run(pg, MIGRATE_LOCK, 0, NULL, "locking for migration", err) < 0)
        return -1;
    int applied = 0;
    nyx_pg_res *r = NULL;
    if (nyx_pg_run(pg, CREATE_TABLE, 0, NULL, "creating schema_migrations",
                   err) < 0 ||
        applied_versions(pg, &r, err) < 0) {
        applied = -1;
    }
    for (size_t i = 0; applied >= 0 && i < set->n; i++) {
        const nyx_migration *m = &set->v[i];
        double ms;
        if (find_row(r, m->version) >= 0)
            continue;
        if (apply_one(pg, set, m, &ms, err) < 0) {
            applied = -1;
            break;
        }
        applied++;
        if (on_applied)
            on_applied(m, ms, arg);
    }
    nyx_pg_clear(r);
    nyx_err ignore;
    nyx_pg_run(pg, MIGRATE_UNLOCK, 0, NULL, "unlock", &ignore);
    return applied;
}
