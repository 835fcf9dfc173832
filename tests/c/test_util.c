/* util.c: one-line messages, checksums, bounded formatting, buffers. */
#include "test.h"
#include "util.h"

#include <stdlib.h>
#include <unistd.h>

static void test_one_line(void)
{
    char s[128] = "connection failed: refused\n\tIs the server running?\n";
    CHECK_STR(nyx_one_line(s, sizeof s),
              "connection failed: refused; Is the server running?");
    char t[128] = "a\nb\n\n  c   \n\n";
    CHECK_STR(nyx_one_line(t, sizeof t), "a; b; c");
    char u[8] = "abc\ndef"; /* "abc; def" does not fit: cut, still ended */
    nyx_one_line(u, sizeof u);
    CHECK_STR(u, "abc; de");
}

static void test_fnv(void)
{
    char h[17];
    nyx_fnv1a_hex("", 0, h);
    CHECK_STR(h, "cbf29ce484222325"); /* the FNV-1a 64 offset basis */
    nyx_fnv1a_hex("a", 1, h);
    CHECK_STR(h, "af63dc4c8601ec8c"); /* published test vector */
}

static void test_fmt(void)
{
    char b[8];
    CHECK_INT(nyx_fmt(b, sizeof b, "%s", "1234567"), 0);
    CHECK_INT(nyx_fmt(b, sizeof b, "%s", "12345678"), -1);
    nyx_err err;
    nyx_errf(&err, "x=%d\nsecond line", 5);
    CHECK_STR(err.msg, "x=5; second line");
}

static void test_buf(void)
{
    nyx_buf b = {0};
    for (int i = 0; i < 1000; i++)
        CHECK_INT(nyx_buf_addf(&b, "%d,", i), 0);
    CHECK_INT(b.len, 3890);
    CHECK(strncmp(b.data, "0,1,2,", 6) == 0);
    CHECK(b.data[b.len] == '\0');
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_INT(nyx_buf_addf(&b, "%s", big), 0); /* longer than the fast path */
    CHECK_INT(b.len, 3890 + 1999);
    nyx_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0);
}

static void test_read_file(void)
{
    nyx_err err;
    size_t len;
    CHECK(nyx_read_file("/nonexistent/x", &len, &err) == NULL);
    CHECK_HAS(err.msg, "cannot open /nonexistent/x");
    char path[] = "/tmp/nyx_test_util_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "abc\0def", 7) == 7);
    close(fd);
    char *data = nyx_read_file(path, &len, &err);
    CHECK_INT(len, 7);
    CHECK(data && memcmp(data, "abc\0def", 8) == 0);
    free(data);
    unlink(path);
}

int main(void)
{
    RUN(test_one_line);
    RUN(test_fnv);
    RUN(test_fmt);
    RUN(test_buf);
    RUN(test_read_file);
    return test_done();
}
