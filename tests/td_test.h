/* A small test harness: a table of named cases per file, run in order, or
 * one case when its name is given on the command line. Exit status 0 = pass,
 * 1 = fail, 77 = skip (meson and automake read 77 as "skipped"). */
#ifndef TD_TEST_H
#define TD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} td_test_case;

static int td_test_failures;
static int td_test_skipped;

#define TD_CHECK(cond)                                                       \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            td_test_failures++;                                              \
        }                                                                    \
    } while (0)

#define TD_CHECK_EQ_INT(a, b)                                                \
    do {                                                                     \
        long long td_a_ = (long long)(a), td_b_ = (long long)(b);            \
        if (td_a_ != td_b_) {                                                \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",        \
                    __FILE__, __LINE__, #a, #b, td_a_, td_b_);               \
            td_test_failures++;                                              \
        }                                                                    \
    } while (0)

#define TD_CHECK_STR(a, b)                                                   \
    do {                                                                     \
        const char *td_a_ = (a), *td_b_ = (b);                               \
        if (!td_a_ || !td_b_ || strcmp(td_a_, td_b_) != 0) {                 \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n",    \
                    __FILE__, __LINE__, #a, #b, td_a_ ? td_a_ : "(null)",    \
                    td_b_ ? td_b_ : "(null)");                               \
            td_test_failures++;                                              \
        }                                                                    \
    } while (0)

/* Marks the current case skipped with a reason; the file exits 77 if every
 * case that ran skipped. */
#define TD_SKIP(...)                                                         \
    do {                                                                     \
        fprintf(stderr, "skip: " __VA_ARGS__);                               \
        fprintf(stderr, "\n");                                               \
        td_test_skipped++;                                                   \
        return;                                                              \
    } while (0)

static inline int td_test_run(const td_test_case *cases, int argc, char **argv)
{
    int ran = 0;
    for (const td_test_case *c = cases; c->name; c++) {
        if (argc > 1 && strcmp(argv[1], c->name) != 0)
            continue;
        int before = td_test_failures;
        c->fn();
        fprintf(stderr, "%s %s\n", td_test_failures > before ? "FAIL" : "ok  ",
                c->name);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no test case named %s\n", argc > 1 ? argv[1] : "");
        return 1;
    }
    if (td_test_failures)
        return 1;
    return td_test_skipped == ran ? 77 : 0;
}

#define TD_TEST_MAIN(...)                                                    \
    int main(int argc, char **argv)                                          \
    {                                                                        \
        static const td_test_case cases[] = {__VA_ARGS__, {NULL, NULL}};     \
        return td_test_run(cases, argc, argv);                               \
    }

#endif
