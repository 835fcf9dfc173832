/* The SQL splitter: statements, their lines, and what hides a ';'. */
#include "sqlsplit.h"
#include "test.h"

typedef struct got {
    int n;
    char text[16][128];
    int line[16];
    nyx_sql_stmt st[16];
} got;

static const char *cur_sql;

static int collect(const nyx_sql_stmt *st, void *arg)
{
    got *g = arg;
    if (g->n < 15) {
        /* the statement without the blanks around it, for comparison */
        const char *s = cur_sql + st->offset, *e = s + st->len;
        while (s < e && (*s == ' ' || *s == '\n'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\n'))
            e--;
        snprintf(g->text[g->n], sizeof g->text[0], "%.*s", (int)(e - s), s);
        g->line[g->n] = st->line;
        g->st[g->n] = *st;
    }
    g->n++;
    return 0;
}

static got split(const char *sql, int *rc)
{
    got g = {0};
    int line = 0;
    cur_sql = sql;
    *rc = nyx_sql_split(sql, strlen(sql), collect, &g, &line);
    if (*rc == 1)
        g.line[15] = line;
    return g;
}

static void test_plain(void)
{
    int rc;
    got g = split("SELECT 1; SELECT 2;\nSELECT 3", &rc);
    CHECK_INT(rc, 0);
    CHECK_INT(g.n, 3);
    CHECK_STR(g.text[0], "SELECT 1");
    CHECK_STR(g.text[1], "SELECT 2");
    CHECK_STR(g.text[2], "SELECT 3");
    CHECK_INT(g.line[2], 2);
}

static void test_comments(void)
{
    int rc;
    got g = split(
        "-- one; two\n/* a; /* nested; */ still; */\nSELECT 1; -- x;\n", &rc);
    CHECK_INT(rc, 0);
    CHECK_INT(g.n, 1);
    CHECK_INT(g.line[0], 3);
    g = split("  \n -- only a comment;\n/* ; */\n", &rc);
    CHECK_INT(g.n, 0);
}

static void test_quotes(void)
{
    int rc;
    got g = split(
        "SELECT 'a;b''c;'; SELECT E'x\\';y'; SELECT 1 AS \"a;\"\"b\";", &rc);
    CHECK_INT(rc, 0);
    CHECK_INT(g.n, 3);
    CHECK_STR(g.text[0], "SELECT 'a;b''c;'");
    CHECK_STR(g.text[1], "SELECT E'x\\';y'");
    CHECK_STR(g.text[2], "SELECT 1 AS \"a;\"\"b\"");
    /* a backslash in a standard string is just a character */
    g = split("SELECT 'a\\'; SELECT 2;", &rc);
    CHECK_INT(g.n, 2);
}

static void test_dollar(void)
{
    int rc;
    got g = split(
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
        "DO $body$ BEGIN PERFORM 1; RAISE NOTICE '$$;'; END $body$;\n"
        "SELECT $1; SELECT a$b$c FROM t;",
        &rc);
    CHECK_INT(rc, 0);
    CHECK_INT(g.n, 4);
    CHECK_INT(g.line[1], 2);
    CHECK_STR(g.text[2], "SELECT $1");
    CHECK_STR(g.text[3], "SELECT a$b$c FROM t");
}

static void test_unterminated(void)
{
    int rc;
    got g = split("SELECT 1;\nSELECT 'abc;\nSELECT 2;", &rc);
    CHECK_INT(rc, 1);
    CHECK_INT(g.line[15], 2);
    split("SELECT 1; /* open", &rc);
    CHECK_INT(rc, 1);
    split("DO $x$ BEGIN END $y$;", &rc);
    CHECK_INT(rc, 1);
}

static int stop_at_second(const nyx_sql_stmt *st, void *arg)
{
    return ++*(int *)arg == 2 ? 7 : 0;
}

static void test_stop(void)
{
    int calls = 0;
    CHECK_INT(nyx_sql_split("A; B; C;", 8, stop_at_second, &calls, NULL), 7);
    CHECK_INT(calls, 2);
}

static void test_line_at(void)
{
    const char *sql = "SELECT 1;\n\n-- c\nSELECT\n  '\xc3\xa9',\n  nope";
    int rc;
    got g = split(sql, &rc);
    CHECK_INT(g.n, 2);
    CHECK_INT(g.line[1], 4);
    /* PostgreSQL counts characters from the statement's first byte (just
     * after the ';'): the two-byte e-acute is one of them. */
    const char *stmt = sql + g.st[1].offset;
    int pos = 1;
    for (const char *p = stmt; p < strstr(stmt, "nope"); p++)
        pos += (*p & 0xC0) != 0x80;
    CHECK_INT(nyx_sql_line_at(sql, &g.st[1], pos), 6);
    CHECK_INT(nyx_sql_line_at(sql, &g.st[1], 1), 1);
    CHECK_INT(nyx_sql_line_at(sql, &g.st[0], 8), 1);
}

int main(void)
{
    RUN(test_plain);
    RUN(test_comments);
    RUN(test_quotes);
    RUN(test_dollar);
    RUN(test_unterminated);
    RUN(test_stop);
    RUN(test_line_at);
    return test_done();
}
