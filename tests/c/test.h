/* A minimal test harness: CHECK macros that count failures, and helpers
 * for a fresh database on the test server (NYX_TEST_DATABASE_URL, or the
 * embedded cluster ctest starts under NYX_TEST_HOME). */
#ifndef NYX_TEST_H
#define NYX_TEST_H

#include "pg.h"

#include <stdio.h>
#include <string.h>

extern int test_failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#define CHECK_INT(a, b)                                                        \
    do {                                                                       \
        long long a_ = (a), b_ = (b);                                          \
        if (a_ != b_) {                                                        \
            fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n", __FILE__,    \
                    __LINE__, #a, a_, b_);                                     \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (!a_ || strcmp(a_, b_) != 0) {                                      \
            fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n",          \
                    __FILE__, __LINE__, #a, a_ ? a_ : "(null)", b_);           \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#define CHECK_HAS(hay, needle)                                                 \
    do {                                                                       \
        const char *h_ = (hay), *n_ = (needle);                                \
        if (!h_ || !strstr(h_, n_)) {                                          \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n",         \
                    __FILE__, __LINE__, h_ ? h_ : "(null)", n_);               \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

/* Runs a test function, printing its name. */
#define RUN(fn)                                                                \
    do {                                                                       \
        int before_ = test_failures;                                           \
        fn();                                                                  \
        fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL", \
                #fn);                                                          \
    } while (0)

/* The admin conninfo of the test server. */
const char *test_admin_conninfo(void);

/* Creates a new, empty database and connects to it; name receives its
 * name (64 bytes). Exits the test on failure. */
nyx_pg *test_fresh_db(char *name);

/* Closes pg and drops its database. */
void test_drop_db(nyx_pg *pg, const char *name);

/* The first value of the first row of sql, as text ("" for none);
 * valid until the next call. */
const char *test_value(nyx_pg *pg, const char *sql);

int test_done(void);

#endif
