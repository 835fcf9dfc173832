/* The event loop: epoll fd watchers and one-shot timers on a monotonic
 * clock. Knows nothing of Lua; the scheduler (lua_task.c) drives it, and
 * libcurl (claude.c) plugs into it through its socket and timer callbacks. */
#ifndef NYX_LOOP_H
#define NYX_LOOP_H

typedef struct nyx_loop nyx_loop;
typedef struct nyx_timer nyx_timer;

enum { NYX_READ = 1, NYX_WRITE = 2, NYX_ERROR = 4 };

typedef void (*nyx_io_cb)(nyx_loop *loop, int fd, unsigned events, void *arg);
typedef void (*nyx_timer_cb)(nyx_loop *loop, void *arg);

nyx_loop *nyx_loop_new(void);
void nyx_loop_free(nyx_loop *loop);

/* Watches fd for events (NYX_READ | NYX_WRITE), replacing what was
 * watched before; events 0 stops watching. Returns -1 on failure. */
int nyx_loop_watch(nyx_loop *loop, int fd, unsigned events, nyx_io_cb cb,
                   void *arg);

/* keep 0: the watcher on fd (set with nyx_loop_watch) does not keep the
 * loop waiting by itself, as libuv's uv_unref: when only such watchers are
 * left, nyx_loop_run_once(loop, -1) returns -1 (nothing to wait for) and a
 * deadlock is still seen. A listening connection is one. keep 1 undoes it.
 * Cleared when the fd is no longer watched. */
void nyx_loop_keep(nyx_loop *loop, int fd, int keep);

/* Calls cb(loop, arg) once, after ms milliseconds (0: on the next
 * iteration). The timer belongs to the loop until it fires or is stopped. */
nyx_timer *nyx_timer_start(nyx_loop *loop, double ms, nyx_timer_cb cb,
                           void *arg);
/* Stops a timer that has not fired yet (NULL is fine). */
void nyx_timer_stop(nyx_loop *loop, nyx_timer *t);

/* One iteration: waits up to max_wait_ms (< 0: until something happens)
 * for fd events or the next timer, then runs their callbacks. Returns the
 * number of callbacks run, or -1 if there was nothing to wait for. */
int nyx_loop_run_once(nyx_loop *loop, double max_wait_ms);

/* Milliseconds on the monotonic clock. */
double nyx_now_ms(void);

/* Watched fds plus pending timers. */
int nyx_loop_pending(const nyx_loop *loop);

#endif
