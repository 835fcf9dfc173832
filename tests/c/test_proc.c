/* The process service without Lua: runs driven by a bare loop, the
 * waitpid timer used where pidfd_open is missing, a child's signal state,
 * SIGPIPE from a child that does not read, and the ways a run can end
 * early (release, cancel_all, freeing the service) reaping every child. */
#include "proc.h"
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int ndone;

static void count_done(nyx_proc *p, void *arg) { ndone++; }

static nyx_proc_opts opts_for(const char *const *argv)
{
    nyx_proc_opts o = {0};
    o.argv = argv;
    o.timeout_ms = -1;
    o.max_output = 1 << 20;
    o.on_done = count_done;
    return o;
}

/* Starts a run and drives the loop until it is done (NULL if it did not
 * start). */
static nyx_proc *run(nyx_loop *loop, nyx_procs *s, const nyx_proc_opts *o)
{
    nyx_err err;
    nyx_proc *p = nyx_proc_start(s, o, &err);
    if (!p) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    while (!nyx_proc_done(p) && nyx_loop_run_once(loop, 1000) >= 0)
        ;
    return p;
}

/* Whether pid is still a child of ours waiting to be reaped. */
static int unreaped(pid_t pid)
{
    return !(waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD);
}

static void test_output_and_exit(int polling)
{
    nyx_loop *loop = nyx_loop_new();
    nyx_procs *s = nyx_procs_new(loop);
    nyx_procs_set_polling(s, polling);
    const char *argv[] = {"sh", "-c", "cat; echo err >&2; exit 4", NULL};
    nyx_proc_opts o = opts_for(argv);
    o.input = "in\n";
    o.input_len = 3;
    nyx_proc *p = run(loop, s, &o);
    CHECK(p != NULL);
    const nyx_proc_result *r = nyx_proc_result_of(p);
    CHECK(r->exited);
    CHECK_INT(r->exit_code, 4);
    CHECK_INT(r->signal, 0);
    CHECK_STR(r->out.data, "in\n");
    CHECK_STR(r->err.data, "err\n");
    CHECK(!unreaped(r->pid));
    CHECK_INT(nyx_procs_running(s), 0);
    nyx_proc_release(p);
    CHECK_INT(nyx_loop_pending(loop), 0);
    nyx_procs_free(s);
    nyx_loop_free(loop);
}

static void test_pidfd(void) { test_output_and_exit(0); }
static void test_polling(void) { test_output_and_exit(1); }

static void test_timeout_polling(void)
{
    nyx_loop *loop = nyx_loop_new();
    nyx_procs *s = nyx_procs_new(loop);
    nyx_procs_set_polling(s, 1);
    const char *argv[] = {"sleep", "30", NULL};
    nyx_proc_opts o = opts_for(argv);
    o.timeout_ms = 50;
    double t0 = nyx_now_ms();
    nyx_proc *p = run(loop, s, &o);
    CHECK(nyx_now_ms() - t0 < 10000);
    CHECK(nyx_proc_result_of(p)->timed_out);
    CHECK_INT(nyx_proc_result_of(p)->signal, SIGTERM);
    nyx_proc_release(p);
    nyx_procs_free(s);
    nyx_loop_free(loop);
}

/* With SIGPIPE at its default, feeding a child that exits at once must
 * give EPIPE, not kill the test. */
static void test_sigpipe(void)
{
    nyx_loop *loop = nyx_loop_new();
    nyx_procs *s = nyx_procs_new(loop);
    size_t n = 8 << 20;
    char *big = malloc(n);
    memset(big, 'x', n);
    const char *argv[] = {"true", NULL};
    nyx_proc_opts o = opts_for(argv);
    o.input = big;
    o.input_len = n;
    for (int i = 0; i < 5; i++) {
        nyx_proc *p = run(loop, s, &o);
        CHECK_INT(nyx_proc_result_of(p)->exit_code, 0);
        nyx_proc_release(p);
    }
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    free(big);
    nyx_procs_free(s);
    nyx_loop_free(loop);
}

/* Hex mask after "name:" in /proc/<pid>/status text. */
static unsigned long long mask_of(const char *status, const char *name)
{
    const char *at = status ? strstr(status, name) : NULL;
    return at ? strtoull(at + strlen(name) + 1, NULL, 16) : ~0ULL;
}

static void test_signal_state(void)
{
    struct sigaction ign = {0}, old;
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old);
    sigset_t usr1, oldmask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &oldmask);

    nyx_loop *loop = nyx_loop_new();
    nyx_procs *s = nyx_procs_new(loop);
    const char *argv[] = {"cat", "/proc/self/status", NULL};
    nyx_proc_opts o = opts_for(argv);
    nyx_proc *p = run(loop, s, &o);
    const char *status = nyx_proc_result_of(p)->out.data;
    CHECK_INT(mask_of(status, "SigBlk"), 0);
    /* signals 1-31; glibc keeps its internal ones (32, 33) ignored */
    CHECK_INT(mask_of(status, "SigIgn") & 0x7fffffff, 0);
    nyx_proc_release(p);
    nyx_procs_free(s);
    nyx_loop_free(loop);

    sigaction(SIGPIPE, &old, NULL);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
}

/* A released run: killed at once, reaped by the service, freed by it. */
static void test_release_running(void)
{
    nyx_loop *loop = nyx_loop_new();
    nyx_procs *s = nyx_procs_new(loop);
    const char *argv[] = {"sleep", "30", NULL};
    nyx_proc_opts o = opts_for(argv);
    nyx_err err;
    ndone = 0;
    nyx_proc *p = nyx_proc_start(s, &o, &err);
    pid_t pid = nyx_proc_result_of(p)->pid;
    CHECK_INT(nyx_procs_running(s), 1);
    nyx_proc_release(p);
    CHECK_INT(nyx_procs_running(s), 0);
    double t0 = nyx_now_ms();
    while (nyx_loop_pending(loop) > 0 && nyx_now_ms() - t0 < 10000)
        nyx_loop_run_once(loop, 100);
    CHECK_INT(nyx_loop_pending(loop), 0);
    CHECK(!unreaped(pid));
    CHECK_INT(ndone, 0);
    nyx_procs_free(s);
    nyx_loop_free(loop);
}

static void test_cancel_all_and_free(void)
{
    nyx_loop *loop = nyx_loop_new();
    nyx_procs *s = nyx_procs_new(loop);
    const char *argv[] = {"sleep", "30", NULL};
    nyx_proc_opts o = opts_for(argv);
    nyx_err err;
    nyx_proc *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = nyx_proc_start(s, &o, &err);
    ndone = 0;
    CHECK_INT(nyx_procs_running(s), 4);
    nyx_proc_release(p[2]); /* released: not the caller's to cancel */
    CHECK_INT(nyx_procs_running(s), 3);
    CHECK_INT(nyx_procs_cancel_all(s), 3);
    CHECK_INT(nyx_procs_cancel_all(s), 0); /* nothing new */
    double t0 = nyx_now_ms();
    while (ndone < 3 && nyx_now_ms() - t0 < 10000)
        nyx_loop_run_once(loop, 100);
    CHECK_INT(ndone, 3);
    for (int i = 0; i < 4; i++) {
        if (i == 2)
            continue;
        CHECK(nyx_proc_done(p[i]));
        CHECK(nyx_proc_result_of(p[i])->cancelled);
        CHECK(!unreaped(nyx_proc_result_of(p[i])->pid));
    }
    nyx_proc_release(p[0]);
    nyx_proc_release(p[1]);
    nyx_proc_release(p[3]);

    /* a run still going when the service goes: killed, reaped, cancelled */
    nyx_proc *late = nyx_proc_start(s, &o, &err);
    pid_t late_pid = nyx_proc_result_of(late)->pid;
    nyx_procs_free(s);
    CHECK(nyx_proc_done(late));
    CHECK(nyx_proc_result_of(late)->cancelled);
    CHECK(!unreaped(late_pid));
    nyx_proc_release(late);
    nyx_loop_free(loop);
}

static void test_start_failures(void)
{
    nyx_loop *loop = nyx_loop_new();
    nyx_procs *s = nyx_procs_new(loop);
    nyx_err err;
    const char *argv[] = {"nyx-no-such-program", NULL};
    nyx_proc_opts o = opts_for(argv);
    CHECK(nyx_proc_start(s, &o, &err) == NULL);
    CHECK_STR(err.msg,
              "cannot run 'nyx-no-such-program': No such file or directory");
    const char *ok[] = {"true", NULL};
    o = opts_for(ok);
    o.cwd = "/nonexistent";
    CHECK(nyx_proc_start(s, &o, &err) == NULL);
    CHECK_STR(err.msg, "cannot run 'true': cwd '/nonexistent': No such file or "
                       "directory");
    CHECK_INT(nyx_procs_running(s), 0);
    CHECK_INT(nyx_loop_pending(loop), 0);
    nyx_procs_free(s);
    nyx_loop_free(loop);
}

int main(void)
{
    RUN(test_pidfd);
    RUN(test_polling);
    RUN(test_timeout_polling);
    RUN(test_sigpipe);
    RUN(test_signal_state);
    RUN(test_release_running);
    RUN(test_cancel_all_and_free);
    RUN(test_start_failures);
    return test_done();
}
