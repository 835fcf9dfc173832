#include "test.h"

#include <stdlib.h>
#include <unistd.h>

int test_failures;

const char *test_admin_conninfo(void)
{
    static char buf[4200];
    const char *url = getenv("NYX_TEST_DATABASE_URL");
    if (url && *url)
        return url;
    const char *home = getenv("NYX_TEST_HOME");
    if (!home) {
        fprintf(stderr, "set NYX_TEST_DATABASE_URL or NYX_TEST_HOME "
                        "(ctest sets NYX_TEST_HOME)\n");
        exit(2);
    }
    snprintf(buf, sizeof buf,
             "host=%s/nyx/pg port=5432 dbname=postgres user=nyx", home);
    return buf;
}

static void admin_run(const char *sql, const char *name)
{
    nyx_err err;
    nyx_pg *admin = nyx_pg_connect(test_admin_conninfo(), NULL, NULL, &err);
    if (!admin) {
        fprintf(stderr, "test database server: %s\n", err.msg);
        exit(2);
    }
    /* Identifiers cannot be parameters: format() quotes it server-side. */
    const char *p[] = {sql, name};
    nyx_pg_res *r = nyx_pg_exec(admin, "SELECT format($1, $2::text)", 2, p);
    if (!nyx_pg_res_ok(r)) {
        nyx_pg_error e;
        nyx_pg_res_error(admin, r, &e);
        fprintf(stderr, "%s: %s\n", sql, e.message);
        exit(2);
    }
    if (nyx_pg_run(admin, nyx_pg_value(r, 0, 0), 0, NULL, sql, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    nyx_pg_clear(r);
    nyx_pg_close(admin);
}

nyx_pg *test_fresh_db(char *name)
{
    static int counter;
    snprintf(name, 64, "nyx_ctest_%d_%d", (int)getpid(), ++counter);
    admin_run("CREATE DATABASE %I", name);
    nyx_err err;
    const char *k[] = {"dbname", NULL}, *v[] = {name, NULL};
    nyx_pg *pg = nyx_pg_connect(test_admin_conninfo(), k, v, &err);
    if (!pg) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    return pg;
}

void test_drop_db(nyx_pg *pg, const char *name)
{
    nyx_pg_close(pg);
    admin_run("DROP DATABASE %I WITH (FORCE)", name);
}

const char *test_value(nyx_pg *pg, const char *sql)
{
    static char buf[4096];
    nyx_pg_res *r = nyx_pg_exec(pg, sql, 0, NULL);
    buf[0] = '\0';
    if (nyx_pg_res_ok(r) && nyx_pg_ntuples(r) > 0 && nyx_pg_value(r, 0, 0))
        snprintf(buf, sizeof buf, "%s", nyx_pg_value(r, 0, 0));
    nyx_pg_clear(r);
    return buf;
}

int test_done(void)
{
    if (test_failures)
        fprintf(stderr, "%d check(s) failed\n", test_failures);
    return test_failures ? 1 : 0;
}
