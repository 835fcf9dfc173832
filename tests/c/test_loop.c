/* The event loop: timers in due order, stopped timers, fd watchers, and
 * the "nothing to wait for" answer the scheduler relies on. */
#include "loop.h"
#include "test.h"

#include <unistd.h>

static char order[32];
static int norder;

static void mark(nyx_loop *loop, void *arg)
{
    order[norder++] = *(const char *)arg;
    order[norder] = '\0';
}

static void test_timers_fire_in_order(void)
{
    nyx_loop *loop = nyx_loop_new();
    norder = 0;
    order[0] = '\0';
    static const char a = 'a', b = 'b', c = 'c', d = 'd', z = 'z';
    nyx_timer_start(loop, 30, mark, (void *)&c);
    nyx_timer_start(loop, 10, mark, (void *)&a);
    nyx_timer *stop = nyx_timer_start(loop, 15, mark, (void *)&z);
    nyx_timer_start(loop, 20, mark, (void *)&b);
    nyx_timer_start(loop, 0, mark, (void *)&d);
    nyx_timer_stop(loop, stop);
    CHECK_INT(nyx_loop_pending(loop), 4);
    double t0 = nyx_now_ms();
    while (nyx_loop_run_once(loop, -1) >= 0)
        ;
    CHECK_STR(order, "dabc");
    CHECK(nyx_now_ms() - t0 >= 29);
    CHECK_INT(nyx_loop_pending(loop), 0);
    CHECK_INT(nyx_loop_run_once(loop, -1), -1); /* nothing to wait for */
    CHECK_INT(nyx_loop_run_once(loop, 0), 0);   /* but a poll is fine */
    nyx_loop_free(loop);
}

static double last_due;
static int fired, out_of_order;

static void count(nyx_loop *loop, void *arg)
{
    double due = *(double *)arg;
    out_of_order += due < last_due;
    last_due = due;
    fired++;
}

static void test_many_timers(void)
{
    nyx_loop *loop = nyx_loop_new();
    static double due[1000];
    nyx_timer *t[1000];
    for (int i = 0; i < 1000; i++) {
        due[i] = (i * 7919) % 10 * 5; /* steps far above start jitter */
        t[i] = nyx_timer_start(loop, due[i], count, &due[i]);
    }
    for (int i = 0; i < 1000; i += 2)
        nyx_timer_stop(loop, t[i]);
    fired = out_of_order = 0;
    last_due = -1;
    while (nyx_loop_run_once(loop, -1) >= 0)
        ;
    CHECK_INT(fired, 500);
    CHECK_INT(out_of_order, 0);
    nyx_loop_free(loop);
}

static int reads;

static void on_read(nyx_loop *loop, int fd, unsigned events, void *arg)
{
    char buf[16];
    CHECK(events & NYX_READ);
    reads += (int)read(fd, buf, sizeof buf);
    if (reads >= 6)
        nyx_loop_watch(loop, fd, 0, NULL, NULL);
}

static void test_fd_watch(void)
{
    nyx_loop *loop = nyx_loop_new();
    int p[2];
    CHECK(pipe(p) == 0);
    reads = 0;
    CHECK_INT(nyx_loop_watch(loop, p[0], NYX_READ, on_read, NULL), 0);
    CHECK_INT(nyx_loop_pending(loop), 1);
    CHECK_INT(nyx_loop_run_once(loop, 0), 0); /* nothing written yet */
    CHECK(write(p[1], "abc", 3) == 3);
    CHECK_INT(nyx_loop_run_once(loop, 1000), 1);
    CHECK_INT(reads, 3);
    CHECK(write(p[1], "def", 3) == 3);
    CHECK_INT(nyx_loop_run_once(loop, 1000), 1);
    CHECK_INT(nyx_loop_pending(loop), 0); /* unwatched itself */
    CHECK_INT(nyx_loop_watch(loop, p[0], 0, NULL, NULL), 0); /* again: fine */
    CHECK_INT(nyx_loop_watch(loop, -1, NYX_READ, on_read, NULL), -1);
    close(p[0]);
    close(p[1]);
    nyx_loop_free(loop);
}

/* A watched fd closed without being unwatched (curl and libpq close
 * their sockets themselves) whose number comes back for a new file: the
 * new file is watched, not lost (a transfer would wait for its timeout). */
static void test_fd_reused_after_close(void)
{
    nyx_loop *loop = nyx_loop_new();
    int a[2], b[2];
    CHECK(pipe(a) == 0);
    reads = 0;
    CHECK_INT(nyx_loop_watch(loop, a[0], NYX_READ, on_read, NULL), 0);
    int num = a[0];
    close(a[0]); /* behind the loop's back: epoll forgets it */
    CHECK(pipe(b) == 0);
    if (b[0] != num) { /* make the new read end take the old number */
        CHECK(dup2(b[0], num) == num);
        close(b[0]);
        b[0] = num;
    }
    CHECK_INT(nyx_loop_watch(loop, b[0], NYX_READ, on_read, NULL), 0);
    CHECK(write(b[1], "xyz", 3) == 3);
    CHECK_INT(nyx_loop_run_once(loop, 1000), 1);
    CHECK_INT(reads, 3);
    /* and the same when it was last watched for writing */
    CHECK_INT(nyx_loop_watch(loop, b[0], 0, NULL, NULL), 0);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    nyx_loop_free(loop);
}

/* A watcher that keeps nothing (nyx_loop_keep 0: a listening socket) is
 * still served, but alone it leaves nothing to wait for. */
static void test_unkept_watcher(void)
{
    nyx_loop *loop = nyx_loop_new();
    int p[2];
    CHECK(pipe(p) == 0);
    reads = 0;
    CHECK_INT(nyx_loop_watch(loop, p[0], NYX_READ, on_read, NULL), 0);
    nyx_loop_keep(loop, p[0], 0);
    nyx_loop_keep(loop, p[0], 0);               /* twice: one */
    CHECK_INT(nyx_loop_run_once(loop, -1), -1); /* would wait for ever */
    CHECK(write(p[1], "abc", 3) == 3);
    CHECK_INT(nyx_loop_run_once(loop, 1000), 1); /* served all the same */
    CHECK_INT(reads, 3);
    static const char t = 't';
    norder = 0;
    nyx_timer_start(loop, 5, mark, (void *)&t);
    CHECK(write(p[1], "def", 3) == 3);
    int ran = 0;
    while (nyx_loop_run_once(loop, -1) >= 0)
        ran++;
    CHECK(ran >= 1);
    CHECK_INT(reads, 6); /* read while the timer kept the loop waiting */
    CHECK_STR(order, "t");
    /* unwatched (on_read did at 6): the count went with it */
    CHECK_INT(nyx_loop_watch(loop, p[0], NYX_READ, on_read, NULL), 0);
    CHECK_INT(nyx_loop_run_once(loop, 0), 0);
    nyx_loop_keep(loop, p[0], 1);
    CHECK(write(p[1], "g", 1) == 1);
    CHECK_INT(nyx_loop_run_once(loop, -1), 1); /* kept: waited for */
    nyx_loop_watch(loop, p[0], 0, NULL, NULL);
    close(p[0]);
    close(p[1]);
    nyx_loop_free(loop);
}

int main(void)
{
    RUN(test_timers_fire_in_order);
    RUN(test_many_timers);
    RUN(test_fd_watch);
    RUN(test_fd_reused_after_close);
    RUN(test_unkept_watcher);
    return test_done();
}
