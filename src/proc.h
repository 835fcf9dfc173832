/* Child processes on nyx's event loop. A run starts a program (posix_spawn,
 * so a vfork-style clone however large nyx's heap), feeds it stdin and
 * captures stdout and stderr through non-blocking pipes watched by the
 * loop, notices its exit through a pidfd (or, on kernels without one, a
 * waitpid(WNOHANG) timer: no process-wide SIGCHLD handler) and reaps it.
 * The child runs in its own process group, which is what a timeout or a
 * cancellation kills: SIGTERM, then SIGKILL after NYX_PROC_KILL_GRACE_MS.
 * Knows nothing of Lua. */
#ifndef NYX_PROC_H
#define NYX_PROC_H

#include "loop.h"
#include "util.h"

#include <stddef.h>

/* After SIGTERM to a timed-out or cancelled group, how long before SIGKILL. */
#define NYX_PROC_KILL_GRACE_MS 200
/* After the child exited, how long its pipes may stay open (a background
 * grandchild holding them) before the run stops reading and completes. */
#define NYX_PROC_DRAIN_MS 100

typedef struct nyx_procs nyx_procs; /* the service: one per loop */
typedef struct nyx_proc nyx_proc;   /* one run */

typedef struct nyx_proc_env {
    const char *name;
    const char *value; /* NULL: remove the variable */
} nyx_proc_env;

typedef struct nyx_proc_opts {
    const char *const *argv; /* NULL-terminated; argv[0] is looked up in
                                nyx's PATH unless it holds a '/' */
    const nyx_proc_env *env; /* set over nyx's environment; may be NULL */
    size_t nenv;
    const char *cwd;   /* NULL: nyx's */
    const char *input; /* stdin; NULL: /dev/null. Valid until done/release */
    size_t input_len;
    double timeout_ms; /* < 0: none */
    size_t max_output; /* bytes kept per stream; the rest is read and dropped */
    void (*on_done)(nyx_proc *p, void *arg); /* from a loop callback */
    void *arg;
} nyx_proc_opts;

/* What happened, valid once the run is done. */
typedef struct nyx_proc_result {
    int pid;
    int exited, exit_code; /* exited: a normal exit with exit_code */
    int signal;            /* the signal that ended it, or 0 */
    nyx_buf out, err;
    int out_truncated, err_truncated;
    int timed_out, cancelled;
    double duration_ms;
} nyx_proc_result;

nyx_procs *nyx_procs_new(nyx_loop *loop);
/* Kills (SIGKILL) and reaps every child still running, waiting for them.
 * Runs not yet released end as cancelled, without on_done; release them
 * still. */
void nyx_procs_free(nyx_procs *s);

/* Tests: watch children with the waitpid timer, as without pidfd_open. */
void nyx_procs_set_polling(nyx_procs *s, int on);

/* Starts a run; on_done follows from a loop callback. NULL (with err
 * saying "cannot run 'prog': reason") if the program could not start. */
nyx_proc *nyx_proc_start(nyx_procs *s, const nyx_proc_opts *o, nyx_err *err);

const nyx_proc_result *nyx_proc_result_of(const nyx_proc *p);
int nyx_proc_done(const nyx_proc *p);

/* The caller is done with the run: frees it if it is done; otherwise
 * on_done will not be called, the group is killed (SIGKILL) and the service
 * reaps the child and frees the run by itself. NULL is fine. */
void nyx_proc_release(nyx_proc *p);

/* Cancels every run in progress: SIGTERM to each group, SIGKILL after the
 * grace; each completes with cancelled set. Returns how many. */
int nyx_procs_cancel_all(nyx_procs *s);

/* Runs started and not yet done (released ones not counted). */
int nyx_procs_running(const nyx_procs *s);

#endif
