/* `nyx repl` driven through a pseudo-terminal (forkpty), as a user would:
 * golden transcripts of sessions (multi-line input, =expr, errors with
 * their traceback, a nested table with a cycle, _PROMPT), tab completion,
 * Ctrl-C at the prompt and while a chunk runs, and the history kept across
 * two sessions. What varies (escapes, carriage returns, the version) is
 * normalised before comparing. NYX_TEST_VERBOSE=1 prints the raw output. */
#include "test.h"

#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct session {
    pid_t pid;
    int fd;
    char out[65536];
    size_t len, mark; /* mark: where the next expect starts looking */
} session;

static char home[256], db_url[4400];

static void child_env(void)
{
    char state[300], dir[300];
    snprintf(state, sizeof state, "%s/state", home);
    setenv("HOME", home, 1);
    setenv("XDG_STATE_HOME", state, 1);
    snprintf(dir, sizeof dir, "%s/data", home);
    setenv("XDG_DATA_HOME", dir, 1);
    setenv("TERM", "dumb", 1);
    setenv("INPUTRC", "/dev/null", 1);
    setenv("NYX_DATABASE_URL", db_url, 1);
    setenv("COLUMNS", "200", 1);
    unsetenv("LUA_INIT");
    unsetenv("LUA_INIT_5_4");
    unsetenv("PGHOST");
    unsetenv("PGDATABASE");
}

static void start(session *s)
{
    memset(s, 0, sizeof *s);
    struct winsize ws = {.ws_row = 50, .ws_col = 200};
    s->pid = forkpty(&s->fd, NULL, NULL, &ws);
    if (s->pid < 0) {
        perror("forkpty");
        exit(2);
    }
    if (s->pid == 0) {
        child_env();
        const char *bin = getenv("NYX_BIN");
        execl(bin, bin, "repl", (char *)NULL);
        _exit(127);
    }
}

/* Reads what is there within ms milliseconds; 0 at the end of output. */
static int pump(session *s, int ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return 1;
    ssize_t n = read(s->fd, s->out + s->len, sizeof s->out - 1 - s->len);
    if (n <= 0)
        return 0; /* EIO: the child has gone */
    s->len += (size_t)n;
    s->out[s->len] = '\0';
    return 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Waits (up to 20 s) until the output since the mark holds needle; moves
 * the mark past it. */
static int expect(session *s, const char *needle)
{
    double until = now_ms() + 20000;
    for (;;) {
        char *at = strstr(s->out + s->mark, needle);
        if (at) {
            s->mark = (size_t)(at - s->out) + strlen(needle);
            return 1;
        }
        if (now_ms() > until || !pump(s, 50)) {
            if (!strstr(s->out + s->mark, needle)) {
                fprintf(stderr, "expected \"%s\" in:\n%s\n", needle,
                        s->out + s->mark);
                test_failures++;
                return 0;
            }
        }
    }
}

static void send_keys(session *s, const char *keys)
{
    size_t n = strlen(keys);
    if (write(s->fd, keys, n) != (ssize_t)n)
        perror("write to the pty");
}

/* Sends a line once the prompt is there (at the start of a line: the
 * echo of what was typed may hold the prompt's text too). */
static void line(session *s, const char *prompt, const char *text)
{
    char at_start[64];
    snprintf(at_start, sizeof at_start, "\n%s", prompt);
    expect(s, at_start);
    send_keys(s, text);
    send_keys(s, "\r");
}

/* Ctrl-D at the prompt; returns the exit status. */
static int finish(session *s, const char *prompt)
{
    char at_start[64];
    snprintf(at_start, sizeof at_start, "\n%s", prompt);
    expect(s, at_start);
    send_keys(s, "\x04");
    while (pump(s, 5000)) {
    }
    int st;
    waitpid(s->pid, &st, 0);
    close(s->fd);
    if (getenv("NYX_TEST_VERBOSE"))
        fprintf(stderr, "---- raw ----\n%s\n---- end ----\n", s->out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The transcript as a reader sees it: no escape sequences, no carriage
 * returns, the version and Lua's release as X. */
static char *normalise(const char *raw)
{
    char *out = malloc(strlen(raw) + 1), *o = out;
    for (const char *p = raw; *p; p++) {
        if (*p == '\x1b') { /* CSI ... final byte, or ESC + one */
            if (p[1] == '[') {
                p += 2;
                while (*p && !(*p >= '@' && *p <= '~'))
                    p++;
            } else if (p[1]) {
                p++;
            }
            if (!*p)
                break;
            continue;
        }
        if (*p == '\r' || *p == '\a')
            continue;
        *o++ = *p;
    }
    *o = '\0';
    char *v = strstr(out, "nyx " NYX_VERSION " (Lua ");
    if (v) {
        char *end = strchr(v, ')');
        if (end)
            memmove(v + 3, end + 1, strlen(end + 1) + 1);
    }
    /* the first session migrates the fresh database */
    char *m = strstr(out, "nyx: applied ");
    if (m) {
        char *end = strchr(m, '\n');
        if (end)
            memmove(m, end + 1, strlen(end + 1) + 1);
    }
    return out;
}

static void check_golden(const char *raw, const char *golden)
{
    char *got = normalise(raw);
    if (strcmp(got, golden) != 0) {
        fprintf(stderr, "transcript differs; got:\n%s\n---- expected:\n%s\n",
                got, golden);
        test_failures++;
    }
    free(got);
}

/* ---- the sessions ----------------------------------------------------------
 */

static const char GOLDEN_BASICS[] =
    "nyx: the nyx API is in `nyx` (TAB completes); Ctrl-D or os.exit() "
    "leaves\n"
    "> =1+1\n"
    "2\n"
    "> 1+1\n"
    "2\n"
    "> for i=1,2 do\n"
    ">> print(i)\n"
    ">> end\n"
    "1\n"
    "2\n"
    "> error(\"boom\")\n"
    "stdin:1: boom\n"
    "stack traceback:\n"
    "\t[C]: in function 'error'\n"
    "\tstdin:1: in main chunk\n"
    "> local f = function() return nil + 1 end; f()\n"
    "stdin:1: attempt to perform arithmetic on a nil value\n"
    "stack traceback:\n"
    "\tstdin:1: in local 'f'\n"
    "\tstdin:1: in main chunk\n"
    "> = 'still here'\n"
    "\"still here\"\n"
    "> t = {name = \"tea\", steps = {\"boil\", \"steep\"}, deep = {a = {b = {c "
    "= {d = 1}}}}}\n"
    "> t.self = t\n"
    "> =t\n"
    "<1>{\n"
    "  deep = {a = {b = {c = {...}}}},\n"
    "  name = \"tea\",\n"
    "  self = <cycle 1>,\n"
    "  steps = {\"boil\", \"steep\"}\n"
    "}\n"
    "> _PROMPT = 'nyx> '\n"
    "nyx> _PROMPT2 = '... '\n"
    "nyx> if true then\n"
    "... print('two prompts')\n"
    "... end\n"
    "two prompts\n"
    "nyx> x_from_first = 41\n"
    "nyx> \n";

static void test_basics(void)
{
    session s;
    start(&s);
    line(&s, "> ", "=1+1");
    line(&s, "> ", "1+1");
    line(&s, "> ", "for i=1,2 do");
    line(&s, ">> ", "print(i)");
    line(&s, ">> ", "end");
    line(&s, "> ", "error(\"boom\")");
    line(&s, "> ", "local f = function() return nil + 1 end; f()");
    line(&s, "> ", "= 'still here'");
    line(&s, "> ",
         "t = {name = \"tea\", steps = {\"boil\", \"steep\"}, deep = {a = {b "
         "= {c = {d = 1}}}}}");
    line(&s, "> ", "t.self = t");
    line(&s, "> ", "=t");
    line(&s, "> ", "_PROMPT = 'nyx> '");
    line(&s, "nyx> ", "_PROMPT2 = '... '");
    line(&s, "nyx> ", "if true then");
    line(&s, "... ", "print('two prompts')");
    line(&s, "... ", "end");
    line(&s, "nyx> ", "x_from_first = 41");
    CHECK_INT(finish(&s, "nyx> "), 0);
    check_golden(s.out, GOLDEN_BASICS);
}

static void test_completion_and_ctrl_c(void)
{
    session s;
    start(&s);
    /* TAB completes nyx.tr to nyx.tree, and fields of any global table,
     * methods through __index included */
    expect(&s, "\n> ");
    send_keys(&s, "=nyx.tr\t");
    expect(&s, "=nyx.tree");
    send_keys(&s, ".STATUSES\r");
    expect(&s, "{\"pending\", \"in_progress\", \"completed\", \"failed\", "
               "\"cancelled\"}");
    line(&s, "> ",
         "obj = setmetatable({}, {__index = {greet = function() return "
         "'hi' end}})");
    expect(&s, "\n> ");
    send_keys(&s, "=obj:gr\t");
    expect(&s, "obj:greet");
    send_keys(&s, "()\r");
    expect(&s, "\"hi\"");
    /* Ctrl-C at the prompt clears the line, and a pending chunk */
    expect(&s, "\n> ");
    send_keys(&s, "this is not lua");
    expect(&s, "not lua");
    send_keys(&s, "\x03");
    line(&s, "> ", "for i = 1, 3 do");
    expect(&s, ">> ");
    send_keys(&s, "\x03");
    line(&s, "> ", "=6*7");
    expect(&s, "42");
    /* Ctrl-C while a chunk waits, or computes, interrupts that chunk */
    double t0 = now_ms();
    line(&s, "> ", "nyx.task.sleep(30) print('not interrupted')");
    usleep(300 * 1000);
    send_keys(&s, "\x03");
    expect(&s, "interrupted!");
    line(&s, "> ", "while true do end");
    usleep(300 * 1000);
    send_keys(&s, "\x03");
    expect(&s, "interrupted!");
    CHECK(now_ms() - t0 < 10000);
    line(&s, "> ", "=nyx.task.count()");
    expect(&s, "\n3\r"); /* the REPL, its Ctrl-C watcher, this chunk */
    CHECK_INT(finish(&s, "> "), 0);
    CHECK(strstr(s.out, "\nnot interrupted") == NULL);
    CHECK(strstr(s.out, "stdin:1: syntax error") == NULL);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_history(void)
{
    char path[400];
    snprintf(path, sizeof path, "%s/state/nyx/history", home);
    const char *h = slurp(path); /* written by test_basics' session */
    CHECK_HAS(h, "x_from_first = 41\n");
    CHECK_HAS(h, "for i=1,2 do\nprint(i)\nend\n"); /* a chunk kept whole */
    session s;
    start(&s);
    expect(&s, "\n> ");
    send_keys(&s, "\x1b[A"); /* up: the last line of the last session */
    expect(&s, "x_from_first = 41");
    send_keys(&s, "\r");
    line(&s, "> ", "=x_from_first + 1");
    expect(&s, "42");
    CHECK_INT(finish(&s, "> "), 0);
}

int main(void)
{
    char name[64];
    nyx_pg *pg = test_fresh_db(name);
    snprintf(db_url, sizeof db_url, "%s dbname=%s", test_admin_conninfo(),
             name);
    snprintf(home, sizeof home, "/tmp/nyx_repl_XXXXXX");
    if (!mkdtemp(home)) {
        perror("mkdtemp");
        return 2;
    }
    RUN(test_basics);
    RUN(test_history); /* of test_basics' session */
    RUN(test_completion_and_ctrl_c);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", home);
    test_drop_db(pg, name);
    return test_done();
}
