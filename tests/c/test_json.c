/* The C JSON reader: values, escapes, errors, and the canonical form the
 * fake server hashes for its cache. */
#include "json.h"
#include "test.h"

#include <math.h>

static nyx_json_doc *parse(const char *s, nyx_err *err)
{
    return nyx_json_parse(s, strlen(s), err);
}

static void test_values(void)
{
    nyx_err err;
    nyx_json_doc *d = parse(" {\"a\": [1, -2.5e3, true, false, null], \"s\": "
                            "\"x\\n\\u00e9\\ud83d\\ude00\\\"\", \"o\": {}} ",
                            &err);
    CHECK(d != NULL);
    const nyx_json *r = nyx_json_root(d);
    CHECK_INT(r->type, NYX_JOBJ);
    const nyx_json *a = nyx_json_get(r, "a");
    CHECK_INT(a->n, 5);
    CHECK(a->items[1]->num == -2500);
    CHECK_INT(a->items[2]->boolean, 1);
    CHECK_INT(a->items[4]->type, NYX_JNULL);
    CHECK_STR(nyx_json_str(r, "s", NULL), "x\n\xc3\xa9\xf0\x9f\x98\x80\"");
    CHECK_INT(nyx_json_get(r, "s")->len, 9);
    CHECK_INT(nyx_json_get(r, "o")->n, 0);
    CHECK(nyx_json_get(r, "missing") == NULL);
    CHECK(nyx_json_num(r, "s", 7) == 7);
    nyx_json_free(d);
}

static void test_errors(void)
{
    const char *bad[] = {"",           "{",      "[1,]",  "{\"a\" 1}",
                         "tru",        "\"open", "[1] 2", "{\"a\":\"\\x\"}",
                         "\"ctl\x01\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nyx_err err;
        CHECK(parse(bad[i], &err) == NULL);
        CHECK_HAS(err.msg, "invalid JSON at byte");
    }
    char deep[1024];
    memset(deep, '[', 300);
    deep[300] = '\0';
    nyx_err err;
    CHECK(parse(deep, &err) == NULL);
    CHECK_HAS(err.msg, "nested too deeply");
}

static void test_canon(void)
{
    nyx_err err;
    nyx_json_doc *d =
        parse("{\"b\": 1, \"a\": {\"z\": [true, \"q\"], \"cache_control\": "
              "{\"type\": \"ephemeral\"}, \"m\": null}}",
              &err);
    nyx_buf b = {0};
    CHECK_INT(nyx_json_canon(&b, nyx_json_root(d), "cache_control"), 0);
    CHECK_STR(b.data, "{\"a\":{\"m\":null,\"z\":[true,\"q\"]},\"b\":1}");
    nyx_buf_free(&b);
    nyx_json_free(d);
    CHECK_INT(nyx_json_quote(&b, "a\"b\\c\n\x01", 7), 0);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001\"");
    nyx_buf_free(&b);
}

/* The word-at-a-time scan finds the same first byte as a byte-by-byte one,
 * at every offset and length, for each byte value. */
static void test_plain(void)
{
    char s[40];
    for (int c = 0; c < 256; c++) {
        int stop = c < 0x20 || c == '"' || c == '\\';
        for (int len = 1; len <= 24; len++) {
            for (int at = 0; at < len; at++) {
                memset(s, 'a', sizeof s);
                s[at] = (char)c;
                const char *end = nyx_json_plain(s, s + len);
                CHECK(end == (stop ? s + at : s + len));
            }
        }
    }
    memset(s, 0x80, sizeof s); /* UTF-8 bytes are plain */
    CHECK(nyx_json_plain(s, s + sizeof s) == s + sizeof s);
}

int main(void)
{
    RUN(test_plain);
    RUN(test_values);
    RUN(test_errors);
    RUN(test_canon);
    return test_done();
}
