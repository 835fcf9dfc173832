/* Migrations against a real PostgreSQL: the real schema applies once and
 * only once; a failing file leaves nothing behind and names its line;
 * concurrent nyx processes do not race. */
#include "migrate.h"
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static char *temp_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/nyx_test_migrate_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    return dir;
}

static void remove_dir(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_real_schema_applies_once(void)
{
    char name[64];
    nyx_pg *pg = test_fresh_db(name);
    nyx_migration_set set;
    nyx_err err;
    CHECK_INT(nyx_migrations_load(NULL, &set, &err), 0);
    CHECK(set.n >= 4);
    CHECK_INT(nyx_migrate_pending(pg, &set, &err), (long long)set.n);
    CHECK_INT(nyx_migrate_apply(pg, &set, NULL, NULL, &err), (long long)set.n);
    CHECK_INT(nyx_migrate_pending(pg, &set, &err), 0);
    /* twice changes nothing: not the rows, not the config (the founding
     * document's six settings and 0007's six models by role) */
    CHECK_STR(test_value(pg, "SELECT count(*) FROM system_config"), "12");
    CHECK_INT(nyx_migrate_apply(pg, &set, NULL, NULL, &err), 0);
    CHECK_STR(test_value(pg, "SELECT count(*) FROM system_config"), "12");
    char count[16];
    snprintf(count, sizeof count, "%zu", set.n);
    CHECK_STR(test_value(pg, "SELECT count(*) FROM schema_migrations"), count);

    nyx_mig_status *s;
    size_t n;
    CHECK_INT(nyx_migrate_status(pg, &set, &s, &n, &err), 0);
    CHECK_INT(n, (long long)set.n);
    for (size_t i = 0; i < n; i++) {
        CHECK_INT(s[i].state, NYX_MIG_APPLIED);
        CHECK(s[i].applied_at[0] != '\0');
    }
    free(s);
    nyx_migrations_free(&set);
    test_drop_db(pg, name);
}

static void test_embedded_copies_match_disk(void)
{
    nyx_migration_set disk, embedded;
    nyx_err err;
    CHECK_INT(nyx_migrations_load(NULL, &disk, &err), 0);
    CHECK_INT(nyx_migrations_load(NYX_MIGRATIONS_EMBEDDED, &embedded, &err), 0);
    CHECK_STR(embedded.source, "embedded");
    CHECK_INT(embedded.n, (long long)disk.n);
    for (size_t i = 0; i < disk.n && i < embedded.n; i++) {
        CHECK_STR(embedded.v[i].name, disk.v[i].name);
        CHECK_STR(embedded.v[i].checksum, disk.v[i].checksum);
    }
    nyx_migrations_free(&disk);
    nyx_migrations_free(&embedded);
}

static void test_failure_rolls_back_and_names_line(void)
{
    char *dir = temp_dir(), name[64];
    write_file(dir, "0001_ok.sql", "CREATE TABLE t_ok (a int);\n");
    write_file(dir, "0002_bad.sql",
               "-- a migration that fails half way\n"
               "CREATE TABLE t_partial (a int);\n"
               "\n"
               "INSERT INTO t_partial VALUES (1);\n"
               "SELECT *\n"
               "  FROM missing_table;\n"
               "CREATE TABLE t_after (a int);\n");
    write_file(dir, "0003_later.sql", "CREATE TABLE t_later (a int);\n");
    nyx_pg *pg = test_fresh_db(name);
    nyx_migration_set set;
    nyx_err err;
    CHECK_INT(nyx_migrations_load(dir, &set, &err), 0);
    CHECK_INT(nyx_migrate_apply(pg, &set, NULL, NULL, &err), -1);
    CHECK_HAS(err.msg, "0002_bad.sql failed at line 6");
    CHECK_HAS(err.msg, "missing_table");
    CHECK_HAS(err.msg, "nothing from 0002_bad.sql was applied");
    /* 0001 stays; nothing of 0002 or after it */
    CHECK_STR(test_value(pg, "SELECT to_regclass('t_ok') IS NOT NULL"), "t");
    CHECK_STR(test_value(pg, "SELECT to_regclass('t_partial') IS NULL"), "t");
    CHECK_STR(test_value(pg, "SELECT to_regclass('t_later') IS NULL"), "t");
    CHECK_STR(test_value(pg, "SELECT string_agg(version::text, ',') FROM "
                             "schema_migrations"),
              "1");
    CHECK_INT(nyx_pg_in_transaction(pg), 0);
    nyx_migrations_free(&set);

    /* a runtime error without a position: the statement's first line */
    write_file(dir, "0002_bad.sql",
               "CREATE TABLE t_partial (a int);\n\n"
               "SELECT 1 /\n 0;\n");
    CHECK_INT(nyx_migrations_load(dir, &set, &err), 0);
    CHECK_INT(nyx_migrate_apply(pg, &set, NULL, NULL, &err), -1);
    CHECK_HAS(err.msg, "0002_bad.sql failed at line 3: division by zero");
    nyx_migrations_free(&set);

    /* fixed: the rest applies, and again changes nothing */
    write_file(dir, "0002_bad.sql", "CREATE TABLE t_partial (a int);\n");
    CHECK_INT(nyx_migrations_load(dir, &set, &err), 0);
    CHECK_INT(nyx_migrate_apply(pg, &set, NULL, NULL, &err), 2);
    CHECK_INT(nyx_migrate_apply(pg, &set, NULL, NULL, &err), 0);
    CHECK_STR(test_value(pg, "SELECT to_regclass('t_later') IS NOT NULL"), "t");
    nyx_migrations_free(&set);

    /* a file edited after it was applied, and a version only the database
     * knows, show in the status */
    write_file(dir, "0001_ok.sql", "CREATE TABLE t_ok (a int, b int);\n");
    CHECK_INT(nyx_migrations_load(dir, &set, &err), 0);
    CHECK(nyx_pg_run(pg,
                     "INSERT INTO schema_migrations (version, name, "
                     "checksum) VALUES (99, '0099_future.sql', 'x')",
                     0, NULL, "insert", &err) == 0);
    nyx_mig_status *s;
    size_t n;
    CHECK_INT(nyx_migrate_status(pg, &set, &s, &n, &err), 0);
    CHECK_INT(n, 4);
    CHECK_INT(s[0].state, NYX_MIG_CHANGED);
    CHECK_INT(s[1].state, NYX_MIG_APPLIED);
    CHECK_INT(s[3].state, NYX_MIG_UNKNOWN);
    CHECK_STR(s[3].name, "0099_future.sql");
    free(s);
    nyx_migrations_free(&set);
    test_drop_db(pg, name);
    remove_dir(dir);
}

static void test_bad_sets(void)
{
    char *dir = temp_dir();
    nyx_migration_set set;
    nyx_err err;
    write_file(dir, "README.txt", "not a migration, ignored");
    write_file(dir, "0001_a.sql", "SELECT 1;");
    write_file(dir, "1_b.sql", "SELECT 1;");
    CHECK_INT(nyx_migrations_load(dir, &set, &err), -1);
    CHECK_HAS(err.msg, "have the same number");
    remove_dir(dir);

    dir = temp_dir();
    write_file(dir, "init.sql", "SELECT 1;");
    CHECK_INT(nyx_migrations_load(dir, &set, &err), -1);
    CHECK_HAS(err.msg, "init.sql: a migration's name starts with its number");
    remove_dir(dir);

    CHECK_INT(nyx_migrations_load("/nonexistent/sql", &set, &err), -1);
    CHECK_HAS(err.msg, "/nonexistent/sql");

    dir = temp_dir();
    write_file(dir, "0001_open.sql", "SELECT 1;\nSELECT 'never closed;\n");
    CHECK_INT(nyx_migrations_load(dir, &set, &err), 0);
    char name[64];
    nyx_pg *pg = test_fresh_db(name);
    CHECK_INT(nyx_migrate_apply(pg, &set, NULL, NULL, &err), -1);
    CHECK_HAS(err.msg, "0001_open.sql: quote or comment opened at line 2");
    CHECK_STR(test_value(pg, "SELECT count(*) FROM schema_migrations"), "0");
    nyx_migrations_free(&set);
    test_drop_db(pg, name);
    remove_dir(dir);
}

/* Several processes migrate one new database at once: the advisory lock
 * makes one apply everything and the others nothing. */
static void test_concurrent(void)
{
    char name[64];
    nyx_pg *pg = test_fresh_db(name);
    nyx_migration_set set;
    nyx_err err;
    CHECK_INT(nyx_migrations_load(NULL, &set, &err), 0);
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            const char *k[] = {"dbname", NULL}, *v[] = {name, NULL};
            nyx_pg *mine = nyx_pg_connect(test_admin_conninfo(), k, v, &err);
            int n = mine ? nyx_migrate_apply(mine, &set, NULL, NULL, &err) : -1;
            if (n < 0)
                fprintf(stderr, "child: %s\n", err.msg);
            _exit(n < 0 ? 255 : n);
        }
    }
    int total = 0, failed = 0;
    for (int i = 0; i < 4; i++) {
        int status;
        waitpid(pids[i], &status, 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
        failed += code == 255;
        total += code == 255 ? 0 : code;
    }
    CHECK_INT(failed, 0);
    CHECK_INT(total, (long long)set.n);
    CHECK_STR(test_value(pg, "SELECT count(*) FROM system_config"), "12");
    nyx_migrations_free(&set);
    test_drop_db(pg, name);
}

int main(void)
{
    RUN(test_real_schema_applies_once);
    RUN(test_embedded_copies_match_disk);
    RUN(test_failure_rolls_back_and_names_line);
    RUN(test_bad_sets);
    RUN(test_concurrent);
    return test_done();
}
