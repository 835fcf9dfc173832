/* The SSE parser: events split anywhere, CRLF, comments, multi-line data. */
#include "sse.h"
#include "test.h"

typedef struct seen {
    char log[2048];
    int n;
} seen;

static void record(void *arg, const char *event, const char *data, size_t len)
{
    seen *s = arg;
    size_t used = strlen(s->log);
    snprintf(s->log + used, sizeof s->log - used, "[%s|%.*s]", event, (int)len,
             data);
    s->n++;
}

static const char STREAM[] = "event: message_start\n"
                             "data: {\"a\":1}\n"
                             "\n"
                             ": a comment\r\n"
                             "event: ping\r\n"
                             "data: {\"type\": \"ping\"}\r\n"
                             "\r\n"
                             "data: line one\n"
                             "data: line two\n"
                             "\n"
                             "event: empty\n"
                             "data:\n"
                             "\n"
                             "event: no_data\n"
                             "\n"
                             "event: tail\n"
                             "data: not finished";

static const char WANT[] =
    "[message_start|{\"a\":1}][ping|{\"type\": \"ping\"}]"
    "[message|line one\nline two][empty|]";

static void test_whole(void)
{
    seen s = {{0}, 0};
    nyx_sse p = {0};
    CHECK_INT(nyx_sse_feed(&p, STREAM, strlen(STREAM), record, &s), 0);
    CHECK_STR(s.log, WANT);
    CHECK_INT(s.n, 4); /* the unfinished one waits for its blank line */
    CHECK_INT(nyx_sse_feed(&p, "\n\n", 2, record, &s), 0);
    CHECK_INT(s.n, 5);
    nyx_sse_free(&p);
}

static void test_byte_by_byte(void)
{
    seen s = {{0}, 0};
    nyx_sse p = {0};
    for (size_t i = 0; i < strlen(STREAM); i++)
        CHECK_INT(nyx_sse_feed(&p, STREAM + i, 1, record, &s), 0);
    CHECK_STR(s.log, WANT);
    nyx_sse_free(&p);
}

int main(void)
{
    RUN(test_whole);
    RUN(test_byte_by_byte);
    return test_done();
}
