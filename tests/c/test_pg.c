/* The libpq service: connecting (and failing to), values and their kinds,
 * parameters, errors as PostgreSQL reports them. */
#include "pg.h"
#include "test.h"

#include <stdlib.h>
#include <sys/select.h>

static void test_connect_failure(void)
{
    nyx_err err;
    nyx_pg *pg = nyx_pg_connect(
        "postgresql://someone:s3cret-pw@127.0.0.1:1/somedb?connect_timeout=5",
        NULL, NULL, &err);
    CHECK(pg == NULL);
    CHECK_HAS(err.msg, "cannot connect to database \"somedb\" on 127.0.0.1:1");
    CHECK(strstr(err.msg, "s3cret-pw") == NULL);
    CHECK(strchr(err.msg, '\n') == NULL);

    pg = nyx_pg_connect("host=/nonexistent/socket/dir dbname=x", NULL, NULL,
                        &err);
    CHECK(pg == NULL);
    CHECK_HAS(err.msg, "database \"x\" on /nonexistent/socket/dir");
}

static void test_overrides(void)
{
    char name[64];
    nyx_pg *pg = test_fresh_db(name);
    CHECK_HAS(nyx_pg_describe(pg), name);
    CHECK_STR(test_value(pg, "SELECT current_database()"), name);
    CHECK_STR(test_value(pg, "SHOW TimeZone"), "UTC");
    CHECK_STR(test_value(pg, "SHOW application_name"), "nyx");
    CHECK(nyx_pg_server_version(pg) >= 130000);
    test_drop_db(pg, name);
}

static void test_values(void)
{
    char name[64];
    nyx_pg *pg = test_fresh_db(name);
    const char *p[] = {"41", NULL, "{\"a\": [1, 2]}"};
    nyx_pg_res *r = nyx_pg_exec(
        pg,
        "SELECT $1::int + 1 AS i, 2.5::numeric(5,4) AS n, true AS b, "
        "$3::jsonb AS j, 'x'::text AS t, $2::text AS missing, "
        "9007199254740993::bigint AS big, 1.5::float8 AS f",
        3, p);
    CHECK(nyx_pg_res_ok(r));
    CHECK_INT(nyx_pg_ntuples(r), 1);
    CHECK_INT(nyx_pg_nfields(r), 8);
    CHECK_STR(nyx_pg_value(r, 0, 0), "42");
    CHECK_INT(nyx_pg_fkind(r, 0), NYX_PG_INT);
    CHECK_STR(nyx_pg_value(r, 0, 1), "2.5000");
    CHECK_INT(nyx_pg_fkind(r, 1), NYX_PG_FLOAT);
    CHECK_INT(nyx_pg_fkind(r, 2), NYX_PG_BOOL);
    CHECK_INT(nyx_pg_fkind(r, 3), NYX_PG_JSON);
    CHECK_STR(nyx_pg_value(r, 0, 3), "{\"a\": [1, 2]}");
    CHECK_INT(nyx_pg_fkind(r, 4), NYX_PG_TEXT);
    CHECK(nyx_pg_value(r, 0, 5) == NULL);
    CHECK_STR(nyx_pg_fname(r, 5), "missing");
    CHECK_INT(nyx_pg_fkind(r, 6), NYX_PG_INT);
    CHECK_INT(nyx_pg_fkind(r, 7), NYX_PG_FLOAT);
    nyx_pg_clear(r);
    test_drop_db(pg, name);
}

static void test_errors(void)
{
    char name[64];
    nyx_pg *pg = test_fresh_db(name);
    nyx_err err;
    CHECK_INT(nyx_pg_run(pg, "CREATE TABLE t (id int PRIMARY KEY)", 0, NULL,
                         "create", &err),
              0);
    const char *one[] = {"1"};
    CHECK_INT(
        nyx_pg_run(pg, "INSERT INTO t VALUES ($1)", 1, one, "insert", &err), 0);
    nyx_pg_res *r = nyx_pg_exec(pg, "INSERT INTO t VALUES ($1)", 1, one);
    CHECK(!nyx_pg_res_ok(r));
    nyx_pg_error e;
    nyx_pg_res_error(pg, r, &e);
    CHECK_STR(e.sqlstate, "23505");
    CHECK_STR(e.constraint, "t_pkey");
    CHECK_STR(e.table, "t");
    CHECK_HAS(e.message, "duplicate key");
    CHECK_HAS(e.detail, "(id)=(1)");
    CHECK_INT(e.connection_lost, 0);
    nyx_pg_clear(r);

    r = nyx_pg_exec(pg, "SELECT nope FROM t", 0, NULL);
    nyx_pg_res_error(pg, r, &e);
    CHECK_STR(e.sqlstate, "42703");
    CHECK_INT(e.position, 8);
    nyx_pg_clear(r);

    CHECK_INT(nyx_pg_run(pg, "SELEC 1", 0, NULL, "a typo", &err), -1);
    CHECK_HAS(err.msg, "a typo: syntax error at or near \"SELEC\"");

    CHECK_INT(nyx_pg_in_transaction(pg), 0);
    CHECK_INT(nyx_pg_run(pg, "BEGIN", 0, NULL, "begin", &err), 0);
    CHECK_INT(nyx_pg_in_transaction(pg), 1);
    CHECK_INT(nyx_pg_run(pg, "ROLLBACK", 0, NULL, "rollback", &err), 0);

    /* the server goes away under the connection */
    r = nyx_pg_exec(pg, "SELECT pg_terminate_backend(pg_backend_pid())", 0,
                    NULL);
    nyx_pg_clear(r);
    r = nyx_pg_exec(pg, "SELECT 1", 0, NULL);
    CHECK(!nyx_pg_res_ok(r));
    nyx_pg_res_error(pg, r, &e);
    CHECK_INT(e.connection_lost, 1);
    CHECK(e.message[0] != '\0');
    nyx_pg_clear(r);
    test_drop_db(pg, name);
}

/* LISTEN/NOTIFY: a notification from another session arrives on the
 * listening connection's socket, is read without blocking and comes out of
 * nyx_pg_next_note with its channel, payload and sender. */
static void test_notifications(void)
{
    char name[64];
    nyx_pg *pg = test_fresh_db(name);
    nyx_err err;
    nyx_pg *listener = nyx_pg_clone(pg, &err);
    CHECK(listener != NULL);
    nyx_pg_note n;
    CHECK_INT(nyx_pg_next_note(listener, &n), 0);
    CHECK_INT(nyx_pg_run(listener, "LISTEN nyx_test", 0, NULL, "listen", &err),
              0);
    const char *p[] = {"nyx_test", "hello"};
    CHECK_INT(nyx_pg_run(pg, "SELECT pg_notify($1, $2)", 2, p, "notify", &err),
              0);
    CHECK_INT(nyx_pg_run(pg, "NOTIFY nyx_other, 'not listened to'", 0, NULL,
                         "notify", &err),
              0);
    int pid = atoi(test_value(pg, "SELECT pg_backend_pid()"));
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(nyx_pg_socket(listener), &rd);
    struct timeval tv = {5, 0};
    CHECK(select(nyx_pg_socket(listener) + 1, &rd, NULL, NULL, &tv) == 1);
    CHECK_INT(nyx_pg_consume(listener), 0);
    CHECK_INT(nyx_pg_next_note(listener, &n), 1);
    CHECK_STR(n.channel, "nyx_test");
    CHECK_STR(n.payload, "hello");
    CHECK_INT(n.pid, pid);
    nyx_pg_note_free(&n);
    CHECK_INT(nyx_pg_next_note(listener, &n), 0); /* the other channel: no */
    nyx_pg_close(listener);
    test_drop_db(pg, name);
}

int main(void)
{
    RUN(test_connect_failure);
    RUN(test_overrides);
    RUN(test_values);
    RUN(test_errors);
    RUN(test_notifications);
    return test_done();
}
