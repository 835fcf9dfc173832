#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct nyx_timer {
    double due;
    size_t slot; /* index in the heap */
    nyx_timer_cb cb;
    void *arg;
};

typedef struct watcher {
    unsigned events;
    int unkept; /* nyx_loop_keep(fd, 0) */
    nyx_io_cb cb;
    void *arg;
} watcher;

struct nyx_loop {
    int epfd;
    watcher *fds;              /* indexed by fd */
    int nfds, watched, unkept; /* unkept: watched fds that keep nothing */
    nyx_timer **heap;          /* min-heap on due */
    size_t ntimers, cap;
};

double nyx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

nyx_loop *nyx_loop_new(void)
{
    nyx_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    return loop;
}

void nyx_loop_free(nyx_loop *loop)
{
    if (!loop)
        return;
    for (size_t i = 0; i < loop->ntimers; i++)
        free(loop->heap[i]);
    free(loop->heap);
    free(loop->fds);
    close(loop->epfd);
    free(loop);
}

int nyx_loop_pending(const nyx_loop *loop)
{
    return loop->watched + (int)loop->ntimers;
}

/* ---- fd watchers ----------------------------------------------------- */

static int grow_fds(nyx_loop *loop, int fd)
{
    if (fd < loop->nfds)
        return 0;
    int n = loop->nfds ? loop->nfds : 64;
    while (n <= fd)
        n *= 2;
    watcher *w = realloc(loop->fds, (size_t)n * sizeof *w);
    if (!w)
        return -1;
    memset(w + loop->nfds, 0, (size_t)(n - loop->nfds) * sizeof *w);
    loop->fds = w;
    loop->nfds = n;
    return 0;
}

int nyx_loop_watch(nyx_loop *loop, int fd, unsigned events, nyx_io_cb cb,
                   void *arg)
{
    if (fd < 0 || grow_fds(loop, fd) < 0)
        return -1;
    watcher *w = &loop->fds[fd];
    struct epoll_event ev = {0};
    ev.data.fd = fd;
    ev.events =
        (events & NYX_READ ? EPOLLIN : 0) | (events & NYX_WRITE ? EPOLLOUT : 0);
    int op = !events     ? EPOLL_CTL_DEL
             : w->events ? EPOLL_CTL_MOD
                         : EPOLL_CTL_ADD;
    if (!events && !w->events)
        return 0;
    if (epoll_ctl(loop->epfd, op, fd, &ev) < 0) {
        /* The fd was closed behind our back (epoll forgot it when it was
         * closed), and its number may be in use again by a new file that
         * we are asked to watch: add it instead of modifying it, or the
         * new file is never watched (a transfer waits for its timeout). */
        if (op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT)) {
            /* already gone: nothing to stop */
        } else if (op == EPOLL_CTL_MOD && errno == ENOENT) {
            if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -1;
        } else if (op == EPOLL_CTL_ADD && errno == EEXIST) {
            if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
                return -1;
        } else {
            return -1;
        }
    }
    loop->watched += (events != 0) - (w->events != 0);
    if (!events && w->unkept) {
        w->unkept = 0;
        loop->unkept--;
    }
    w->events = events;
    w->cb = events ? cb : NULL;
    w->arg = events ? arg : NULL;
    return 0;
}

void nyx_loop_keep(nyx_loop *loop, int fd, int keep)
{
    if (fd < 0 || fd >= loop->nfds || !loop->fds[fd].events ||
        loop->fds[fd].unkept == !keep)
        return;
    loop->fds[fd].unkept = !keep;
    loop->unkept += keep ? -1 : 1;
}

/* ---- timers: a binary min-heap ---------------------------------------- */

static void heap_set(nyx_loop *loop, size_t i, nyx_timer *t)
{
    loop->heap[i] = t;
    t->slot = i;
}

static void sift_up(nyx_loop *loop, size_t i)
{
    nyx_timer *t = loop->heap[i];
    while (i > 0 && loop->heap[(i - 1) / 2]->due > t->due) {
        heap_set(loop, i, loop->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(loop, i, t);
}

static void sift_down(nyx_loop *loop, size_t i)
{
    nyx_timer *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->ntimers)
            break;
        if (c + 1 < loop->ntimers &&
            loop->heap[c + 1]->due < loop->heap[c]->due)
            c++;
        if (loop->heap[c]->due >= t->due)
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

nyx_timer *nyx_timer_start(nyx_loop *loop, double ms, nyx_timer_cb cb,
                           void *arg)
{
    if (loop->ntimers == loop->cap) {
        size_t cap = loop->cap ? loop->cap * 2 : 64;
        nyx_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (!h)
            return NULL;
        loop->heap = h;
        loop->cap = cap;
    }
    nyx_timer *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    t->due = nyx_now_ms() + (ms > 0 ? ms : 0);
    t->cb = cb;
    t->arg = arg;
    heap_set(loop, loop->ntimers++, t);
    sift_up(loop, t->slot);
    return t;
}

static void heap_remove(nyx_loop *loop, nyx_timer *t)
{
    size_t i = t->slot;
    nyx_timer *last = loop->heap[--loop->ntimers];
    if (last != t) {
        heap_set(loop, i, last);
        sift_down(loop, i);
        sift_up(loop, last->slot);
    }
}

void nyx_timer_stop(nyx_loop *loop, nyx_timer *t)
{
    if (!t)
        return;
    heap_remove(loop, t);
    free(t);
}

/* Runs the timers that are due; returns how many. */
static int run_timers(nyx_loop *loop)
{
    int n = 0;
    double now = nyx_now_ms();
    while (loop->ntimers && loop->heap[0]->due <= now) {
        nyx_timer *t = loop->heap[0];
        heap_remove(loop, t);
        nyx_timer_cb cb = t->cb;
        void *arg = t->arg;
        free(t); /* before the call: it may start timers of its own */
        cb(loop, arg);
        n++;
    }
    return n;
}

int nyx_loop_run_once(nyx_loop *loop, double max_wait_ms)
{
    if (loop->watched == loop->unkept && !loop->ntimers && max_wait_ms < 0)
        return -1;
    double wait = max_wait_ms;
    if (loop->ntimers) {
        double until = loop->heap[0]->due - nyx_now_ms();
        if (until < 0)
            until = 0;
        if (wait < 0 || until < wait)
            wait = until;
    }
    /* round up: waking a little late beats spinning until the due time */
    int timeout = wait < 0 ? -1 : (int)(wait + 0.999);
    struct epoll_event ev[256];
    int n = epoll_wait(loop->epfd, ev, 256, timeout);
    if (n < 0)
        n = 0; /* EINTR: a signal; the caller checks what it means */
    int ran = 0;
    for (int i = 0; i < n; i++) {
        int fd = ev[i].data.fd;
        if (fd >= loop->nfds || !loop->fds[fd].events)
            continue; /* unwatched by an earlier callback of this batch */
        unsigned e = (ev[i].events & EPOLLIN ? NYX_READ : 0) |
                     (ev[i].events & EPOLLOUT ? NYX_WRITE : 0) |
                     (ev[i].events & (EPOLLERR | EPOLLHUP) ? NYX_ERROR : 0);
        watcher w = loop->fds[fd];
        w.cb(loop, fd, e, w.arg);
        ran++;
    }
    return ran + run_timers(loop);
}
