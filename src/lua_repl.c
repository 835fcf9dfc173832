/* nyx.repl: the terminal side of the REPL (lua/nyx/cmd/repl.lua holds its
 * logic). stdin is one more source on nyx's event loop: on a terminal,
 * GNU readline's callback interface is fed a character at a time when
 * stdin is readable, so tasks keep running while the user types; otherwise
 * lines are read plainly, still through the loop. SIGINT is caught here: at
 * the prompt it clears the line, while a chunk runs it interrupts the chunk
 * (a debug hook for a chunk that computes, a wake-up for the task that
 * cancels one that waits). */
#include "lua_nyx.h"
#include "lua_task.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#define READ_MT     "nyx.repl.read"
#define INTR_MT     "nyx.repl.interrupt"
#define HISTORY_MAX 1000

/* A read or an interrupt wait in progress, boxed on its task's stack. */
typedef struct repl_wait {
    nyx_waiter w;
    int signals; /* the signal count when it started */
    int got;     /* read: 1 line, 0 end of input, -1 Ctrl-C */
    char *line;  /* read: the line, malloc'd */
} repl_wait;

typedef struct repl_state {
    lua_State *L; /* the main thread: completion runs there */
    nyx_loop *loop;
    int open, tty, stdin_watched, sig_fds[2];
    int complete_ref; /* the Lua completion function */
    int target_ref;   /* the thread a Ctrl-C interrupts */
    repl_wait *reading, *interrupt;
    char *history; /* the history file, or NULL */
    char buf[4096];
    size_t len; /* plain reads: what was read past the last line */
    int eof;
} repl_state;

static repl_state R = {
    .sig_fds = {-1, -1}, .complete_ref = LUA_NOREF, .target_ref = LUA_NOREF};

/* ---- SIGINT ------------------------------------------------------------ */

static volatile sig_atomic_t sig_count;
static lua_State *volatile sig_target;

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void on_sigint(int sig)
{
    int saved = errno;
    sig_count++;
    /* as lua.c does: a hook is the one safe way to stop running Lua code
     * from a signal handler */
    if (sig_target)
        lua_sethook(sig_target, stop_hook,
                    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    if (R.sig_fds[1] >= 0 && write(R.sig_fds[1], "", 1) < 0) {
        /* the pipe is full: a wake-up is already pending */
    }
    errno = saved;
}

static void stop_reading(void);

static void finish_wait(repl_wait **slot, int got, char *line)
{
    repl_wait *rw = *slot;
    *slot = NULL;
    rw->got = got;
    rw->line = line;
    nyx_waiter_done(&rw->w);
}

/* Ctrl-C reached the loop: a read in progress gives up its line (and the
 * REPL its pending chunk), a task waiting for Ctrl-C wakes up. */
static void on_signal_pipe(nyx_loop *loop, int fd, unsigned events, void *a)
{
    char b[64];
    while (read(fd, b, sizeof b) > 0) {
    }
    if (R.reading && sig_count != R.reading->signals) {
        if (R.tty) {
            rl_free_line_state();
            rl_callback_sigcleanup();
            rl_replace_line("", 0);
            rl_crlf();
        }
        stop_reading();
        finish_wait(&R.reading, -1, NULL);
    } else if (R.interrupt && sig_count != R.interrupt->signals) {
        finish_wait(&R.interrupt, 1, NULL);
    }
}

static void trap_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
}

/* ---- reading ----------------------------------------------------------- */

static void on_stdin(nyx_loop *loop, int fd, unsigned events, void *arg);

static void watch_stdin(void)
{
    if (!R.stdin_watched &&
        nyx_loop_watch(R.loop, 0, NYX_READ, on_stdin, NULL) == 0)
        R.stdin_watched = 1;
}

static void stop_reading(void)
{
    if (R.tty)
        rl_callback_handler_remove(); /* the terminal as it was */
    if (R.stdin_watched)
        nyx_loop_watch(R.loop, 0, 0, NULL, NULL);
    R.stdin_watched = 0;
}

/* readline's callback: a whole line, or NULL at end of input. */
static void on_line(char *line)
{
    stop_reading();
    if (R.reading)
        finish_wait(&R.reading, line != NULL, line);
    else
        free(line);
}

/* Plain reads: the next line from what was read, if there is one. */
static int take_line(void)
{
    char *nl = memchr(R.buf, '\n', R.len);
    size_t n = nl ? (size_t)(nl - R.buf) : R.len;
    if (!nl && !R.eof && R.len < sizeof R.buf - 1)
        return 0;
    if (!nl && R.len == 0) { /* end of input */
        stop_reading();
        finish_wait(&R.reading, 0, NULL);
        return 1;
    }
    char *line = malloc(n + 1);
    if (!line)
        return 0;
    memcpy(line, R.buf, n);
    line[n] = '\0';
    size_t used = nl ? n + 1 : n;
    memmove(R.buf, R.buf + used, R.len - used);
    R.len -= used;
    stop_reading();
    finish_wait(&R.reading, 1, line);
    return 1;
}

static void read_plain(void)
{
    ssize_t n = read(0, R.buf + R.len, sizeof R.buf - 1 - R.len);
    if (n > 0)
        R.len += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        R.eof = 1;
}

static void on_stdin(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    if (!R.reading)
        return;
    if (R.tty) {
        rl_callback_read_char();
        return;
    }
    read_plain();
    take_line();
}

static int read_k(lua_State *L, int status, lua_KContext ctx)
{
    repl_wait *rw = (repl_wait *)ctx;
    if (rw->got < 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rw->got == 0)
        return 0;
    lua_pushstring(L, rw->line);
    free(rw->line);
    rw->line = NULL;
    return 1;
}

/* The read or the wait for Ctrl-C rw stands for is given up: nothing
 * touches rw after. */
static void detach(repl_wait *rw)
{
    if (R.reading == rw) {
        stop_reading();
        R.reading = NULL;
    }
    if (R.interrupt == rw)
        R.interrupt = NULL;
}

static int wait_gc(lua_State *L)
{
    repl_wait *rw = lua_touserdata(L, 1);
    detach(rw); /* its task went away mid-wait */
    free(rw->line);
    rw->line = NULL;
    return 0;
}

/* Its task was cancelled (nyx_task_cancel): given up at once. */
static int wait_cancel(lua_State *L, nyx_waiter *w)
{
    (void)L;
    detach((repl_wait *)w); /* w is its first member */
    return 1;
}

static repl_wait *new_wait(lua_State *L, const char *mt)
{
    repl_wait *rw = lua_newuserdatauv(L, sizeof *rw, 0);
    memset(rw, 0, sizeof *rw);
    luaL_setmetatable(L, mt);
    rw->w.cancel = wait_cancel;
    rw->signals = sig_count;
    return rw;
}

static void check_open(lua_State *L)
{
    if (!R.open)
        luaL_error(L, "the REPL is not open (call nyx.repl.open first)");
}

/* read(prompt): the next line (without its newline); nil at the end of
 * input; false when Ctrl-C cleared it. Yields the task meanwhile. */
static int repl_read(lua_State *L)
{
    const char *prompt = luaL_optstring(L, 1, "");
    check_open(L);
    if (R.reading)
        return luaL_error(L, "read: another read is in progress");
    repl_wait *rw = new_wait(L, READ_MT);
    R.reading = rw;
    if (R.tty) {
        rl_callback_handler_install(prompt, on_line);
        watch_stdin();
    } else if (!take_line()) {
        watch_stdin();
        /* a regular file (epoll refuses those) is always readable */
        while (!R.stdin_watched && R.reading) {
            read_plain();
            take_line();
        }
    }
    return nyx_await(L, &rw->w, (lua_KContext)rw, read_k);
}

static int intr_k(lua_State *L, int status, lua_KContext ctx)
{
    lua_pushboolean(L, 1);
    return 1;
}

/* wait_interrupt(): waits for the next Ctrl-C; returns true. */
static int repl_wait_interrupt(lua_State *L)
{
    check_open(L);
    if (R.interrupt)
        return luaL_error(L, "wait_interrupt: somebody waits already");
    repl_wait *rw = new_wait(L, INTR_MT);
    R.interrupt = rw;
    return nyx_await(L, &rw->w, (lua_KContext)rw, intr_k);
}

/* guard(on): a Ctrl-C from now on stops the calling thread's Lua code
 * (with "interrupted!") wherever it is; guard(false) ends that. */
static int repl_guard(lua_State *L)
{
    int on = lua_toboolean(L, 1);
    sig_target = NULL;
    lua_sethook(L, NULL, 0, 0);
    nyx_unref(L, R.target_ref);
    R.target_ref = LUA_NOREF;
    if (on) {
        lua_pushthread(L); /* kept alive while the handler may touch it */
        R.target_ref = nyx_ref(L);
        sig_target = L;
    }
    return 0;
}

/* ---- history and completion --------------------------------------------- */

/* mkdir -p for the folders above path. */
static void make_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(path, 0700);
        *p = '/';
    }
}

static void open_history(lua_State *L, const char *path)
{
    free(R.history);
    R.history = strdup(path);
    if (!R.history)
        luaL_error(L, "out of memory");
    make_parents(R.history);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "nyx: history is not kept: cannot open %s: %s\n", path,
                strerror(errno));
        free(R.history);
        R.history = NULL;
        return;
    }
    close(fd);
    history_write_timestamps = 1; /* keeps multi-line chunks whole */
    read_history(path);
}

/* add_history(chunk): into the history, and its file at once (so it is
 * kept whatever way nyx ends), which keeps its last 1000 entries. */
static int repl_add_history(lua_State *L)
{
    const char *line = luaL_checkstring(L, 1);
    if (!R.tty || !*line)
        return 0;
    HIST_ENTRY *last = history_get(history_base + history_length - 1);
    if (last && strcmp(last->line, line) == 0)
        return 0; /* the same again: once is enough */
    add_history(line);
    if (R.history) {
        append_history(1, R.history);
        history_truncate_file(R.history, HISTORY_MAX);
    }
    return 0;
}

static char **matches_from(lua_State *L, int t)
{
    size_t n = lua_rawlen(L, t);
    if (n == 0)
        return NULL;
    char **m = calloc(n + 2, sizeof *m);
    if (!m)
        return NULL;
    size_t common = 0;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, t, (lua_Integer)i + 1);
        const char *s = lua_tostring(L, -1);
        m[i + 1] = strdup(s ? s : "");
        lua_pop(L, 1);
        if (!m[i + 1])
            break;
        if (i == 0)
            common = strlen(m[1]);
        else
            while (common && strncmp(m[1], m[i + 1], common) != 0)
                common--;
    }
    m[0] = m[1] ? strndup(m[1], common) : NULL;
    if (!m[0]) {
        for (size_t i = 1; i <= n; i++)
            free(m[i]);
        free(m);
        return NULL;
    }
    if (n == 1) { /* readline wants the one match in m[0] alone */
        free(m[0]);
        m[0] = m[1];
        m[1] = NULL;
    }
    return m;
}

/* readline asks for completions of text (the word before the cursor):
 * the Lua function given to open answers, with the line up to the word. */
static char **complete(const char *text, int start, int end)
{
    rl_attempted_completion_over = 1; /* never file names */
    if (R.complete_ref == LUA_NOREF)
        return NULL;
    lua_State *L = R.L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, R.complete_ref);
    lua_pushstring(L, text);
    lua_pushlstring(L, rl_line_buffer, (size_t)start);
    char **m = NULL;
    if (nyx_pcall(L, 2, 1) == LUA_OK && lua_istable(L, -1))
        m = matches_from(L, lua_gettop(L));
    lua_settop(L, top);
    return m;
}

/* ---- opening and closing --------------------------------------------------
 */

static void open_signals(lua_State *L)
{
    if (R.sig_fds[0] < 0 && pipe2(R.sig_fds, O_CLOEXEC | O_NONBLOCK) < 0)
        luaL_error(L, "repl: cannot make a pipe: %s", strerror(errno));
    nyx_loop_watch(R.loop, R.sig_fds[0], NYX_READ, on_signal_pipe, NULL);
    trap_sigint();
}

static void open_readline(lua_State *L)
{
    rl_readline_name = "nyx";
    rl_catch_signals = 0; /* SIGINT is ours */
    rl_attempted_completion_function = complete;
    rl_completion_append_character = '\0';
    /* "nyx.tree" and "t:method" are one word each */
    rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]";
    using_history();
    stifle_history(HISTORY_MAX);
    if (lua_getfield(L, 1, "history") == LUA_TSTRING)
        open_history(L, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "complete") == LUA_TFUNCTION)
        R.complete_ref = nyx_ref(L);
    else
        lua_pop(L, 1);
}

/* open{history = path, complete = fn(word, line_before)}: takes stdin and
 * SIGINT for the REPL. On a terminal (both stdin and stdout) with
 * readline; otherwise plain lines and no history. Returns whether it is a
 * terminal. */
static int repl_open(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (R.open)
        return luaL_error(L, "the REPL is open already");
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    R.L = lua_tothread(L, -1);
    lua_pop(L, 1);
    R.loop = nyx_sched_loop(L);
    R.tty = isatty(0) && isatty(1);
    R.len = 0;
    R.eof = 0;
    if (R.tty)
        open_readline(L);
    else
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    open_signals(L);
    R.open = 1;
    lua_pushboolean(L, R.tty);
    return 1;
}

/* close(): gives stdin and SIGINT back. */
static int repl_close(lua_State *L)
{
    if (!R.open)
        return 0;
    stop_reading();
    R.reading = R.interrupt = NULL; /* their tasks are gone or going */
    if (!R.tty)
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) & ~O_NONBLOCK);
    signal(SIGINT, SIG_DFL);
    sig_target = NULL;
    nyx_loop_watch(R.loop, R.sig_fds[0], 0, NULL, NULL);
    nyx_unref(L, R.complete_ref);
    nyx_unref(L, R.target_ref);
    R.complete_ref = R.target_ref = LUA_NOREF;
    free(R.history);
    R.history = NULL;
    R.open = 0;
    return 0;
}

/* above(text [, to_stderr]): writes text to stdout (or stderr) without
 * mixing it into the line being edited: the prompt and the line are taken
 * away, text written, and they come back under it. */
static int repl_above(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    FILE *f = lua_toboolean(L, 2) ? stderr : stdout;
    int editing = R.open && R.tty && R.reading;
    if (editing) {
        rl_save_prompt();
        rl_clear_visible_line();
    }
    fflush(stdout);
    fwrite(text, 1, n, f);
    fflush(f);
    if (editing) {
        rl_restore_prompt();
        rl_forced_update_display();
    }
    return 0;
}

static int repl_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty(0) && isatty(1));
    return 1;
}

int luaopen_nyx_repl(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"open", repl_open},   {"close", repl_close},
        {"read", repl_read},   {"wait_interrupt", repl_wait_interrupt},
        {"guard", repl_guard}, {"add_history", repl_add_history},
        {"above", repl_above}, {"isatty", repl_isatty},
        {NULL, NULL}};
    nyx_gc_metatable(L, READ_MT, wait_gc);
    nyx_gc_metatable(L, INTR_MT, wait_gc);
    luaL_newlib(L, funcs);
    return 1;
}
