#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define READ_CHUNK      65536
#define READS_PER_EVENT 16 /* then the loop serves the others */
#define POLL_FIRST_MS   1  /* the waitpid timer, without pidfd_open */
#define POLL_MAX_MS     20

enum { IN, OUT, ERR };

struct nyx_procs {
    nyx_loop *loop;
    nyx_proc *head; /* every run not done, released ones included */
    int running;    /* of those, the ones somebody waits for */
    int polling;
};

struct nyx_proc {
    nyx_procs *svc;
    nyx_proc *prev, *next;
    nyx_proc_result r;
    void (*on_done)(nyx_proc *p, void *arg);
    void *arg;
    int fd[3]; /* stdin's write end, stdout's and stderr's read ends */
    int pidfd; /* -1: closed, or watched by the waitpid timer */
    const char *input;
    size_t input_len, input_off, max_output;
    double started_ms, poll_ms;
    nyx_timer *timeout, *kill, *poll, *drain;
    int reaped, killing, sigkilled, done, released;
};

const nyx_proc_result *nyx_proc_result_of(const nyx_proc *p) { return &p->r; }
int nyx_proc_done(const nyx_proc *p) { return p->done; }
int nyx_procs_running(const nyx_procs *s) { return s->running; }
void nyx_procs_set_polling(nyx_procs *s, int on) { s->polling = on; }

nyx_procs *nyx_procs_new(nyx_loop *loop)
{
    nyx_procs *s = calloc(1, sizeof *s);
    if (s)
        s->loop = loop;
    return s;
}

/* ---- ending a run -------------------------------------------------------- */

static void close_fd(nyx_proc *p, int i)
{
    if (p->fd[i] < 0)
        return;
    nyx_loop_watch(p->svc->loop, p->fd[i], 0, NULL, NULL);
    close(p->fd[i]);
    p->fd[i] = -1;
}

static void stop_timer(nyx_proc *p, nyx_timer **t)
{
    nyx_timer_stop(p->svc->loop, *t);
    *t = NULL;
}

static void stop_watching_exit(nyx_proc *p)
{
    if (p->pidfd >= 0) {
        nyx_loop_watch(p->svc->loop, p->pidfd, 0, NULL, NULL);
        close(p->pidfd);
        p->pidfd = -1;
    }
    stop_timer(p, &p->poll);
}

static void unlink_run(nyx_proc *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->svc->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void free_run(nyx_proc *p)
{
    nyx_buf_free(&p->r.out);
    nyx_buf_free(&p->r.err);
    free(p);
}

/* Lets go of everything the loop watches for the run. */
static void stop_all(nyx_proc *p)
{
    stop_timer(p, &p->timeout);
    stop_timer(p, &p->kill);
    stop_timer(p, &p->drain);
    stop_watching_exit(p);
    for (int i = IN; i <= ERR; i++)
        close_fd(p, i);
}

static void finish(nyx_proc *p)
{
    stop_all(p);
    /* A killed group ends killed: what outlived SIGTERM (a grandchild
     * that closed its output) gets SIGKILL now rather than never. */
    if (p->killing && !p->sigkilled)
        kill(-p->r.pid, SIGKILL);
    p->done = 1;
    p->r.duration_ms = nyx_now_ms() - p->started_ms;
    unlink_run(p);
    if (p->released) {
        free_run(p);
        return;
    }
    p->svc->running--;
    p->on_done(p, p->arg); /* may release p: nothing after this */
}

static void drain_over(nyx_loop *loop, void *arg);

/* The run is complete once the child is reaped and both pipes reached
 * EOF. If a grandchild keeps a pipe open after the child exited, reading
 * stops NYX_PROC_DRAIN_MS later (after SIGKILL, for a group being killed)
 * so that a background process cannot hold the call forever. */
static void check_done(nyx_proc *p)
{
    if (!p->reaped)
        return;
    if (p->fd[OUT] < 0 && p->fd[ERR] < 0) {
        finish(p);
        return;
    }
    if (!p->drain && (!p->killing || p->sigkilled))
        p->drain =
            nyx_timer_start(p->svc->loop, NYX_PROC_DRAIN_MS, drain_over, p);
}

/* ---- output and input ---------------------------------------------------- */

static void keep(nyx_proc *p, int i, const char *data, size_t n)
{
    nyx_buf *b = i == OUT ? &p->r.out : &p->r.err;
    int *truncated = i == OUT ? &p->r.out_truncated : &p->r.err_truncated;
    size_t room = p->max_output > b->len ? p->max_output - b->len : 0;
    size_t take = n < room ? n : room;
    if (take < n)
        *truncated = 1; /* the rest is read and dropped: the child goes on */
    if (take && nyx_buf_add(b, data, take) < 0)
        *truncated = 1; /* out of memory: keep what there is */
}

/* Reads what the pipe holds, up to max_reads chunks; returns 1 if the
 * pipe is finished (EOF or an error) and was closed. */
static int read_pipe(nyx_proc *p, int i, int max_reads)
{
    char buf[READ_CHUNK];
    for (int n = 0; n < max_reads;) {
        ssize_t got = read(p->fd[i], buf, sizeof buf);
        if (got > 0) {
            keep(p, i, buf, (size_t)got);
            n++;
        } else if (got < 0 && errno == EINTR) {
            continue;
        } else if (got < 0 && errno == EAGAIN) {
            return 0;
        } else {
            close_fd(p, i);
            return 1;
        }
    }
    return 0;
}

static void on_output(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    nyx_proc *p = arg;
    if (read_pipe(p, fd == p->fd[OUT] ? OUT : ERR, READS_PER_EVENT))
        check_done(p);
}

static void drain_over(nyx_loop *loop, void *arg)
{
    nyx_proc *p = arg;
    p->drain = NULL;
    for (int i = OUT; i <= ERR; i++) {
        if (p->fd[i] >= 0)
            read_pipe(p, i, READS_PER_EVENT); /* what is there already */
        close_fd(p, i);
    }
    finish(p);
}

/* write(2) with SIGPIPE held off for this thread, as libpq does: nyx
 * leaves SIGPIPE's disposition alone, and a child that stops reading must
 * give EPIPE here, not kill nyx. */
static ssize_t write_nosigpipe(int fd, const void *data, size_t n)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    ssize_t w = write(fd, data, n);
    int e = errno;
    if (w < 0 && e == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero); /* the SIGPIPE of our write */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return w;
}

static void on_input(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    nyx_proc *p = arg;
    while (p->input_off < p->input_len) {
        ssize_t w = write_nosigpipe(fd, p->input + p->input_off,
                                    p->input_len - p->input_off);
        if (w > 0)
            p->input_off += (size_t)w;
        else if (w < 0 && errno == EAGAIN)
            return;
        else if (!(w < 0 && errno == EINTR))
            break; /* EPIPE: the child reads no more, which is its right */
    }
    close_fd(p, IN); /* all written: the child sees EOF */
}

/* ---- the child's exit ---------------------------------------------------- */

/* Reaps the child if it has exited; returns 1 if it has (p may be gone). */
static int try_reap(nyx_proc *p)
{
    int status = 0;
    pid_t w;
    do
        w = waitpid(p->r.pid, &status, WNOHANG);
    while (w < 0 && errno == EINTR);
    if (w == 0)
        return 0;
    if (w == p->r.pid && WIFEXITED(status)) {
        p->r.exited = 1;
        p->r.exit_code = WEXITSTATUS(status);
    } else if (w == p->r.pid && WIFSIGNALED(status)) {
        p->r.signal = WTERMSIG(status);
    } /* else ECHILD: reaped elsewhere (SIGCHLD ignored); status unknown */
    p->reaped = 1;
    stop_watching_exit(p);
    stop_timer(p, &p->timeout);
    close_fd(p, IN); /* nobody left to read it */
    check_done(p);
    return 1;
}

static void on_pidfd(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    try_reap(arg);
}

static void poll_exit(nyx_loop *loop, void *arg)
{
    nyx_proc *p = arg;
    p->poll = NULL;
    if (try_reap(p))
        return;
    p->poll_ms = p->poll_ms * 2 < POLL_MAX_MS ? p->poll_ms * 2 : POLL_MAX_MS;
    p->poll = nyx_timer_start(loop, p->poll_ms, poll_exit, p);
}

/* ---- killing ----------------------------------------------------------------
 * The child leads its own process group, so kill(-pid) reaches what it
 * started too. The pid cannot be reused while the child is unreaped, nor
 * while any process of the group lives. */

static void kill_grace_over(nyx_loop *loop, void *arg)
{
    nyx_proc *p = arg;
    p->kill = NULL;
    kill(-p->r.pid, SIGKILL);
    p->sigkilled = 1;
    check_done(p);
}

static void begin_kill(nyx_proc *p)
{
    if (p->killing)
        return;
    p->killing = 1;
    kill(-p->r.pid, SIGTERM);
    p->kill = nyx_timer_start(p->svc->loop, NYX_PROC_KILL_GRACE_MS,
                              kill_grace_over, p);
    if (!p->kill) { /* no timer: no grace either */
        kill(-p->r.pid, SIGKILL);
        p->sigkilled = 1;
    }
}

static void timed_out(nyx_loop *loop, void *arg)
{
    nyx_proc *p = arg;
    p->timeout = NULL;
    p->r.timed_out = 1;
    begin_kill(p);
}

static void cancel(nyx_proc *p)
{
    p->r.cancelled = 1;
    if (p->reaped) { /* only its pipes left: stop now */
        p->killing = 1;
        finish(p);
    } else {
        begin_kill(p);
    }
}

int nyx_procs_cancel_all(nyx_procs *s)
{
    int n = 0;
    /* from the head each time: on_done may release runs */
    for (;;) {
        nyx_proc *p = s->head;
        while (p && (p->released || p->r.cancelled))
            p = p->next;
        if (!p)
            return n;
        n++;
        cancel(p);
    }
}

void nyx_proc_release(nyx_proc *p)
{
    if (!p)
        return;
    if (p->done) {
        free_run(p);
        return;
    }
    p->released = 1;
    p->on_done = NULL;
    p->input = NULL;
    p->svc->running--;
    stop_timer(p, &p->timeout);
    stop_timer(p, &p->kill);
    stop_timer(p, &p->drain);
    for (int i = IN; i <= ERR; i++)
        close_fd(p, i);
    /* nobody waits for it: no grace; reaped when it is gone */
    p->killing = p->sigkilled = 1;
    kill(-p->r.pid, SIGKILL);
    if (p->reaped)
        finish(p);
}

void nyx_procs_free(nyx_procs *s)
{
    if (!s)
        return;
    while (s->head) {
        nyx_proc *p = s->head;
        stop_all(p);
        kill(-p->r.pid, SIGKILL);
        while (!p->reaped && waitpid(p->r.pid, NULL, 0) < 0 && errno == EINTR)
            ;
        p->reaped = p->done = 1;
        unlink_run(p);
        if (p->released) {
            free_run(p);
        } else {
            p->r.cancelled = 1;
            s->running--;
        }
    }
    free(s);
}

/* ---- starting ------------------------------------------------------------ */

/* The ones make_env made are the last nmade before the NULL. */
static void free_env(char **env, size_t nmade)
{
    if (!env)
        return;
    size_t n = 0;
    while (env[n])
        n++;
    for (size_t i = n - nmade; i < n; i++)
        free(env[i]);
    free(env);
}

/* nyx's environment with o->env set over it; NULL-terminated, malloc'd
 * (the strings of the set ones too: free with free_env). */
static char **make_env(const nyx_proc_opts *o, size_t *nmade)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + o->nenv + 1) * sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int replaced = 0;
        for (size_t j = 0; j < o->nenv && !replaced; j++) {
            size_t len = strlen(o->env[j].name);
            replaced = strncmp(environ[i], o->env[j].name, len) == 0 &&
                       environ[i][len] == '=';
        }
        if (!replaced)
            env[k++] = environ[i];
    }
    *nmade = 0;
    for (size_t j = 0; j < o->nenv; j++) {
        if (!o->env[j].value)
            continue;
        size_t len = strlen(o->env[j].name) + strlen(o->env[j].value) + 2;
        char *kv = malloc(len);
        env[k] = NULL;
        if (!kv) {
            free_env(env, *nmade);
            return NULL;
        }
        snprintf(kv, len, "%s=%s", o->env[j].name, o->env[j].value);
        env[k++] = kv;
        ++*nmade;
    }
    env[k] = NULL;
    return env;
}

/* A pipe, close-on-exec both ends, not on fds 0-2 (which the child's
 * dup2s target), the parent's end (end) non-blocking. */
static int make_pipe(int fds[2], int end)
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        if (fds[i] > 2)
            continue;
        int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        close(fds[i]);
        fds[i] = moved;
    }
    if (fds[0] < 0 || fds[1] < 0 ||
        fcntl(fds[end], F_SETFL, fcntl(fds[end], F_GETFL) | O_NONBLOCK) < 0) {
        int e = errno;
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        errno = e;
        return -1;
    }
    return 0;
}

static void close_pair(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* What the child gets: its ends of the pipes on 0, 1 and 2 (/dev/null
 * for stdin without input), no other fd, the cwd; its own process group,
 * every signal at its default and none blocked, whatever nyx has. */
static int spawn_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *sa,
                       const nyx_proc_opts *o, int pin[2], int pout[2],
                       int perr[2])
{
    int rc = o->input ? posix_spawn_file_actions_adddup2(fa, pin[0], 0)
                      : posix_spawn_file_actions_addopen(fa, 0, "/dev/null",
                                                         O_RDONLY, 0);
    rc = rc ? rc : posix_spawn_file_actions_adddup2(fa, pout[1], 1);
    rc = rc ? rc : posix_spawn_file_actions_adddup2(fa, perr[1], 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
    /* close-on-exec covers nyx's own fds; this, a library's that are not */
    rc = rc ? rc : posix_spawn_file_actions_addclosefrom_np(fa, 3);
#endif
    if (o->cwd)
        rc = rc ? rc : posix_spawn_file_actions_addchdir_np(fa, o->cwd);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    rc = rc ? rc
            : posix_spawnattr_setflags(sa, POSIX_SPAWN_SETPGROUP |
                                               POSIX_SPAWN_SETSIGDEF |
                                               POSIX_SPAWN_SETSIGMASK);
    rc = rc ? rc : posix_spawnattr_setpgroup(sa, 0);
    rc = rc ? rc : posix_spawnattr_setsigdefault(sa, &all);
    rc = rc ? rc : posix_spawnattr_setsigmask(sa, &none);
    return rc;
}

/* Says why the program did not start: a bad cwd and a missing program
 * both come back from posix_spawn as ENOENT, so look at the cwd. */
static void spawn_error(nyx_err *err, const nyx_proc_opts *o, int rc)
{
    struct stat st;
    if (o->cwd && stat(o->cwd, &st) < 0)
        nyx_errf(err, "cannot run '%s': cwd '%s': %s", o->argv[0], o->cwd,
                 strerror(errno));
    else if (o->cwd && !S_ISDIR(st.st_mode))
        nyx_errf(err, "cannot run '%s': cwd '%s': %s", o->argv[0], o->cwd,
                 strerror(ENOTDIR));
    else if (o->cwd && access(o->cwd, X_OK) < 0)
        nyx_errf(err, "cannot run '%s': cwd '%s': %s", o->argv[0], o->cwd,
                 strerror(errno));
    else
        nyx_errf(err, "cannot run '%s': %s", o->argv[0], strerror(rc));
}

static int spawn(const nyx_proc_opts *o, int pin[2], int pout[2], int perr[2],
                 pid_t *pid, nyx_err *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t sa;
    size_t nmade = 0;
    char **env = o->nenv ? make_env(o, &nmade) : environ;
    if (!env) {
        nyx_errf(err, "cannot run '%s': out of memory", o->argv[0]);
        return -1;
    }
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc == 0 && (rc = posix_spawnattr_init(&sa)) != 0)
        posix_spawn_file_actions_destroy(&fa);
    if (rc == 0) {
        rc = spawn_setup(&fa, &sa, o, pin, pout, perr);
        if (rc == 0)
            rc = posix_spawnp(pid, o->argv[0], &fa, &sa, (char *const *)o->argv,
                              env);
        posix_spawnattr_destroy(&sa);
        posix_spawn_file_actions_destroy(&fa);
    }
    if (env != environ)
        free_env(env, nmade);
    if (rc != 0)
        spawn_error(err, o, rc);
    return rc ? -1 : 0;
}

/* Kills and reaps a run that could not be set up, there and then. */
static void abort_run(nyx_proc *p)
{
    stop_all(p);
    kill(-p->r.pid, SIGKILL);
    while (waitpid(p->r.pid, NULL, 0) < 0 && errno == EINTR)
        ;
    unlink_run(p);
    p->svc->running--;
    free_run(p);
}

/* Puts the new child's pipes and exit on the loop. */
static int watch(nyx_procs *s, nyx_proc *p, double timeout_ms)
{
    int rc = 0;
    if (p->fd[IN] >= 0 && p->input_len == 0)
        close_fd(p, IN);
    if (p->fd[IN] >= 0)
        rc |= nyx_loop_watch(s->loop, p->fd[IN], NYX_WRITE, on_input, p);
    rc |= nyx_loop_watch(s->loop, p->fd[OUT], NYX_READ, on_output, p);
    rc |= nyx_loop_watch(s->loop, p->fd[ERR], NYX_READ, on_output, p);
    p->pidfd = s->polling ? -1 : (int)syscall(SYS_pidfd_open, p->r.pid, 0);
    if (p->pidfd >= 0) {
        fcntl(p->pidfd, F_SETFD, FD_CLOEXEC); /* pidfds are; to be sure */
        rc |= nyx_loop_watch(s->loop, p->pidfd, NYX_READ, on_pidfd, p);
    } else { /* ENOSYS (Linux < 5.3) or a test: ask waitpid now and then */
        p->poll_ms = POLL_FIRST_MS;
        p->poll = nyx_timer_start(s->loop, p->poll_ms, poll_exit, p);
        rc |= p->poll ? 0 : -1;
    }
    if (timeout_ms >= 0) {
        p->timeout = nyx_timer_start(s->loop, timeout_ms, timed_out, p);
        rc |= p->timeout ? 0 : -1;
    }
    return rc;
}

nyx_proc *nyx_proc_start(nyx_procs *s, const nyx_proc_opts *o, nyx_err *err)
{
    if (!o->argv || !o->argv[0]) {
        nyx_errf(err, "cannot run a program without argv[0]");
        return NULL;
    }
    nyx_proc *p = calloc(1, sizeof *p);
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    if (!p || (o->input && make_pipe(pin, 1) < 0) || make_pipe(pout, 0) < 0 ||
        make_pipe(perr, 0) < 0) {
        nyx_errf(err, "cannot run '%s': %s", o->argv[0],
                 p ? strerror(errno) : "out of memory");
        goto fail;
    }
    p->svc = s;
    p->input = o->input;
    p->input_len = o->input_len;
    p->max_output = o->max_output;
    p->on_done = o->on_done;
    p->arg = o->arg;
    p->started_ms = nyx_now_ms();
    pid_t pid;
    if (spawn(o, pin, pout, perr, &pid, err) < 0)
        goto fail;
    p->r.pid = pid;
    p->fd[IN] = pin[1], p->fd[OUT] = pout[0], p->fd[ERR] = perr[0];
    if (pin[0] >= 0)
        close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    p->next = s->head;
    if (s->head)
        s->head->prev = p;
    s->head = p;
    s->running++;
    if (watch(s, p, o->timeout_ms) < 0) { /* out of memory: undo it all */
        nyx_errf(err, "cannot run '%s': cannot watch it", o->argv[0]);
        abort_run(p);
        return NULL;
    }
    return p;
fail:
    close_pair(pin);
    close_pair(pout);
    close_pair(perr);
    free(p);
    return NULL;
}
