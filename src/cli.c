#include "cli.h"

#include "cluster.h"
#include "database.h"
#include "fake_claude.h"
#include "migrate.h"

#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The help is laid out as it prints. */
/* clang-format off */
static const char USAGE[] =
    "usage: nyx [options] SCRIPT [ARGS...]   run a Lua script with the nyx module\n"
    "       nyx COMMAND [ARGS...]\n"
    "\n"
    "Commands:\n"
    "  db migrate       apply pending schema migrations\n"
    "  db status        migrations applied and pending, the server, where the database is\n"
    "  db start         start the embedded database (created on first use)\n"
    "  db stop          stop the embedded database\n"
    "  fake-claude      run the offline model: a fake Claude API on loopback\n"
    "  help [COMMAND]   this help, or a command's\n"
    "  repl             a Lua REPL with the nyx module (SCRIPT ... --repl: next to\n"
    "                   the running script)\n"
    "  report [ID]      one self-contained HTML page of a tree\n"
    "  stats            LLM calls, tokens, cost and caching, by model and template\n"
    "  tree show [ID]   a tree as text; tree export ID --format dot|mermaid|json\n"
    "  version          the version\n"
    "\n"
    "Options:\n"
    "  --offline        the offline model answers (a fake Claude on loopback), even\n"
    "                   with ANTHROPIC_API_KEY set\n"
    "and, as the lua interpreter takes them:\n"
    "  -e CODE          run the Lua code CODE\n"
    "  -l NAME          require NAME into global NAME (-l g=NAME: into global g)\n"
    "  -E               ignore LUA_INIT, LUA_PATH, LUA_CPATH and NYX_LUA_PATH\n"
    "  -W               turn warnings on\n"
    "  -v, --version    print the version\n"
    "  -h, --help       print this help\n"
    "  --               stop handling options\n"
    "  -                run the script from standard input\n"
    "\n"
    "The script sees its arguments in arg and ..., the nyx module in the global\n"
    "nyx. Where the database is: NYX_DATABASE_URL, else the PG* variables, else\n"
    "a private PostgreSQL under ${XDG_DATA_HOME:-~/.local/share}/nyx/pg that nyx\n"
    "creates and starts itself. 'nyx help db' says more. Which model answers:\n"
    "ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL) for Claude; with neither, the\n"
    "offline model, which 'nyx help fake-claude' describes.\n";

static const char HELP_DB[] =
    "usage: nyx db migrate | status | start | stop\n"
    "\n"
    "  migrate   apply the migrations (sql/NNNN_*.sql) the database lacks, in\n"
    "            order, each in its own transaction; applying twice changes\n"
    "            nothing. nyx also does this by itself when it connects.\n"
    "  status    the migrations applied and pending, the server's version and\n"
    "            where the database is.\n"
    "  start     create (first time) and start the embedded database, bring its\n"
    "            schema up to date, and print its connection string.\n"
    "  stop      stop the embedded database.\n"
    "\n"
    "Which database: NYX_DATABASE_URL (a libpq conninfo or postgresql:// URI),\n"
    "else the standard PG* variables (PGHOST, PGDATABASE, PGUSER, ...), else the\n"
    "embedded one: a private cluster in ${XDG_DATA_HOME:-~/.local/share}/nyx/pg\n"
    "that listens only on a Unix socket in that folder. As root its server runs\n"
    "as the 'postgres' account (or NYX_PG_USER); NYX_PG_BINDIR says where\n"
    "initdb and pg_ctl are if nyx does not find them.\n";

static const char HELP_FAKE[] =
    "usage: nyx fake-claude [--port N] [--host ADDR] [--delay-ms N] [--seed N]\n"
    "                       [--cache-min-tokens N] [--ttl-scale X] [--fractal B,D]\n"
    "\n"
    "Serves the Anthropic Messages API (POST /v1/messages) on loopback the way\n"
    "the docs define it: responses, errors, SSE streams, simulated prompt\n"
    "caching, deterministic answers for a seed. Prints the address it listens\n"
    "on, then serves until interrupted. Point nyx at it with\n"
    "ANTHROPIC_BASE_URL=http://127.0.0.1:PORT and any ANTHROPIC_API_KEY. nyx\n"
    "starts one by itself when no key is set. A request scripts faults with a\n"
    "marker in its text, e.g. [[fake:status=429,retry_after=1,times=2]];\n"
    "see src/fake_claude.h. GET /_fake/stats gives its counters.\n"
    "\n"
    "--fractal B,D (or NYX_FAKE_FRACTAL=B,D, which the offline model also\n"
    "reads, with NYX_FAKE_DELAY_MS): a decomposition prompt whose last line is\n"
    "'DEPTH: k' gets B subtasks while k < D, else an answer (default 3,2).\n";
/* clang-format on */

static const char HELP_REPL[] =
    "usage: nyx repl                 a Lua REPL with the nyx module\n"
    "       nyx SCRIPT [ARGS] --repl the script and a REPL side by side\n"
    "\n"
    "Chunks run as tasks on the event loop (LLM calls and trees work at the\n"
    "prompt while other tasks go on); =expr or a bare expression prints its\n"
    "values with nyx.pretty (credentials redacted); Ctrl-C interrupts the\n"
    "chunk; TAB completes names and fields; the history is kept in\n"
    "${XDG_STATE_HOME:-~/.local/state}/nyx/history. _PROMPT, _PROMPT2 and\n"
    "LUA_INIT are honoured.\n";

static const char HELP_TREE[] =
    "usage: nyx tree show [ID] [--depth N] [--siblings N] [--all]\n"
    "       nyx tree export ID --format dot|mermaid|json\n"
    "\n"
    "show: the tree (default: the latest root) with status marks, strategy or\n"
    "agent class, weight and importance, its subtree's tokens, cost and time;\n"
    "colour on a terminal unless NO_COLOR is set. export: a Graphviz or\n"
    "Mermaid picture, or the whole subtree as JSON (agents, calls, tools,\n"
    "messages). ID: a node's id or a unique prefix of it.\n";

static const char HELP_REPORT[] =
    "usage: nyx report [ID] [-o FILE]   (default: the latest root, to stdout)\n"
    "\n"
    "One self-contained HTML file (no network): the tree, collapsible; a\n"
    "timeline of agents, LLM calls and tools; each node's own and subtree's\n"
    "tokens, cost and cache savings.\n";

static const char HELP_STATS[] =
    "usage: nyx stats [--tree ID] [--since YYYY-MM-DD] [--json]\n"
    "\n"
    "LLM calls, tokens, cost, cache read share and savings, by model and by\n"
    "template version, and failures by error type.\n";

static const char HELP_HELP[] = "usage: nyx help [COMMAND]\n";
static const char HELP_VERSION[] = "usage: nyx version (or nyx --version)\n";

static const struct topic {
    const char *name, *text;
} TOPICS[] = {{"db", HELP_DB},
              {"fake-claude", HELP_FAKE},
              {"help", HELP_HELP},
              {"version", HELP_VERSION},
              {NULL, NULL}};

/* The commands written in Lua (src/main.c runs them): help only. */
static const struct topic LUA_TOPICS[] = {{"repl", HELP_REPL},
                                          {"report", HELP_REPORT},
                                          {"stats", HELP_STATS},
                                          {"tree", HELP_TREE},
                                          {NULL, NULL}};

int nyx_cli_is_command(const char *word)
{
    for (const struct topic *t = TOPICS; t->name; t++)
        if (strcmp(t->name, word) == 0)
            return 1;
    return 0;
}

void nyx_cli_usage(void) { fputs(USAGE, stdout); }

void nyx_cli_version(void)
{
    printf("nyx %s (%s, libpq %d.%d)\n", NYX_VERSION, LUA_RELEASE,
           nyx_pg_lib_version() / 10000, nyx_pg_lib_version() % 100);
}

int nyx_cli_usage_error(const char *what)
{
    fprintf(stderr, "nyx: %s\ntry 'nyx --help'\n", what);
    return NYX_EXIT_USAGE;
}

static int fail(const nyx_err *err)
{
    fprintf(stderr, "nyx: %s\n", err->msg);
    return NYX_EXIT_FAILURE;
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        nyx_cli_usage();
        return NYX_EXIT_OK;
    }
    for (int list = 0; list < 2; list++)
        for (const struct topic *t = list ? LUA_TOPICS : TOPICS; t->name; t++)
            if (strcmp(t->name, argv[1]) == 0) {
                fputs(t->text, stdout);
                return NYX_EXIT_OK;
            }
    char what[256];
    snprintf(what, sizeof what,
             "no help for '%s' (commands: db, fake-claude, help, repl, report, "
             "stats, tree, version)",
             argv[1]);
    return nyx_cli_usage_error(what);
}

/* Opens the database nyx would use, without migrating it, and loads the
 * migrations this nyx knows. */
static nyx_pg *open_target(nyx_dbtarget *t, nyx_migration_set *set,
                           nyx_err *err)
{
    if (nyx_db_target(t, err) < 0)
        return NULL;
    nyx_pg *pg = nyx_db_open(t, 0, err);
    if (!pg) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " (database chosen by %s)",
                 t->source);
        return NULL;
    }
    if (nyx_migrations_load(NULL, set, err) < 0) {
        nyx_pg_close(pg);
        return NULL;
    }
    return pg;
}

static void print_applied(const nyx_migration *m, double ms, void *arg)
{
    printf("applied %s (%.0f ms)\n", m->name, ms);
}

static int db_migrate(void)
{
    nyx_dbtarget t;
    nyx_err err;
    nyx_migration_set set;
    nyx_pg *pg = open_target(&t, &set, &err);
    if (!pg)
        return fail(&err);
    int n = nyx_migrate_apply(pg, &set, print_applied, NULL, &err);
    if (n >= 0)
        printf("%s: schema at version %d (%d migration%s applied now)\n",
               nyx_pg_describe(pg), set.n ? set.v[set.n - 1].version : 0, n,
               n == 1 ? "" : "s");
    nyx_migrations_free(&set);
    nyx_pg_close(pg);
    return n < 0 ? fail(&err) : NYX_EXIT_OK;
}

static int print_status(nyx_pg *pg, const nyx_dbtarget *t,
                        const nyx_migration_set *set, nyx_err *err)
{
    static const char *const states[] = {"pending", "applied",
                                         "applied, file changed since",
                                         "applied, no such file here"};
    nyx_mig_status *s;
    size_t n;
    if (nyx_migrate_status(pg, set, &s, &n, err) < 0)
        return -1;
    int v = nyx_pg_server_version(pg), pending = 0;
    printf("database:   %s (%s)\n", nyx_pg_describe(pg),
           t->embedded ? "embedded" : t->source);
    printf("server:     PostgreSQL %d.%d\n", v / 10000, v % 100);
    printf("migrations: %s\n", set->source);
    for (size_t i = 0; i < n; i++) {
        pending += s[i].state == NYX_MIG_PENDING;
        printf("  %-32s %s%s%s\n", s[i].name, states[s[i].state],
               s[i].applied_at[0] ? " " : "", s[i].applied_at);
    }
    printf("%d pending\n", pending);
    free(s);
    return 0;
}

static int db_status(void)
{
    nyx_dbtarget t;
    nyx_err err;
    nyx_migration_set set;
    nyx_pg *pg = open_target(&t, &set, &err);
    if (!pg)
        return fail(&err);
    int rc = print_status(pg, &t, &set, &err);
    nyx_migrations_free(&set);
    nyx_pg_close(pg);
    return rc < 0 ? fail(&err) : NYX_EXIT_OK;
}

static int db_start(void)
{
    nyx_dbtarget t;
    nyx_err err;
    if (nyx_db_target_embedded(&t, &err) < 0)
        return fail(&err);
    nyx_pg *pg = nyx_db_open(&t, NYX_DB_MIGRATE, &err);
    if (!pg)
        return fail(&err);
    nyx_pg_close(pg);
    printf("%s\n", t.conninfo);
    return NYX_EXIT_OK;
}

static int db_stop(void)
{
    nyx_cluster c;
    nyx_err err;
    int was_running;
    if (nyx_cluster_init(&c, &err) < 0 ||
        nyx_cluster_stop(&c, &was_running, &err) < 0)
        return fail(&err);
    if (!nyx_cluster_exists(&c))
        printf("no embedded database in %s\n", c.dir);
    else if (was_running)
        printf("stopped the embedded database in %s\n", c.dir);
    else
        printf("the embedded database in %s is not running\n", c.dir);
    return NYX_EXIT_OK;
}

static int cmd_db(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(void);
    } SUB[] = {{"migrate", db_migrate},
               {"status", db_status},
               {"start", db_start},
               {"stop", db_stop},
               {NULL, NULL}};
    if (argc < 2) {
        fputs(HELP_DB, stderr);
        return NYX_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(HELP_DB, stdout);
        return NYX_EXIT_OK;
    }
    char what[256];
    if (argc > 2) {
        snprintf(what, sizeof what, "'nyx db %s' takes no arguments (got '%s')",
                 argv[1], argv[2]);
        return nyx_cli_usage_error(what);
    }
    for (int i = 0; SUB[i].name; i++)
        if (strcmp(SUB[i].name, argv[1]) == 0)
            return SUB[i].fn();
    snprintf(what, sizeof what,
             "unknown db command '%s' (db commands: migrate, status, start, "
             "stop)",
             argv[1]);
    return nyx_cli_usage_error(what);
}

/* The value of option argv[*i] ("--port 80" or "--port=80"), or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int cmd_fake(int argc, char **argv)
{
    nyx_fake_opts o;
    nyx_fake_defaults(&o);
    char what[256];
    nyx_err err;
    if (nyx_fake_env(&o, &err) < 0) {
        fprintf(stderr, "nyx: fake-claude: %s\n", err.msg);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *v;
        char *end = NULL;
        if ((v = opt_value(argc, argv, &i, "--port")))
            o.port = (int)strtol(v, &end, 10);
        else if ((v = opt_value(argc, argv, &i, "--host")))
            o.host = v, end = "";
        else if ((v = opt_value(argc, argv, &i, "--delay-ms")))
            o.delay_ms = (int)strtol(v, &end, 10);
        else if ((v = opt_value(argc, argv, &i, "--seed")))
            o.seed = (unsigned)strtoul(v, &end, 10);
        else if ((v = opt_value(argc, argv, &i, "--cache-min-tokens")))
            o.cache_min_tokens = (int)strtol(v, &end, 10);
        else if ((v = opt_value(argc, argv, &i, "--ttl-scale")))
            o.ttl_scale = strtod(v, &end);
        else if ((v = opt_value(argc, argv, &i, "--fractal")))
            end = nyx_fake_fractal(&o, v) < 0 ? NULL : "";
        if (!v || !end || *end) {
            snprintf(what, sizeof what,
                     "fake-claude: bad option '%s' (see "
                     "'nyx help fake-claude')",
                     argv[i]);
            return nyx_cli_usage_error(what);
        }
    }
    /* the server's threads inherit this mask: only sigwait sees these */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    nyx_fake *f = nyx_fake_start(&o, &err);
    if (!f)
        return fail(&err);
    printf("listening on http://%s:%d\n", o.host, nyx_fake_port(f));
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    nyx_fake_stop(f);
    return NYX_EXIT_OK;
}

int nyx_cli_run(int argc, char **argv)
{
    if (strcmp(argv[0], "fake-claude") == 0)
        return cmd_fake(argc, argv);
    if (strcmp(argv[0], "help") == 0)
        return cmd_help(argc, argv);
    if (strcmp(argv[0], "version") == 0) {
        nyx_cli_version();
        return NYX_EXIT_OK;
    }
    return cmd_db(argc, argv);
}
