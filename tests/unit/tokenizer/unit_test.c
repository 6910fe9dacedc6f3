/* Tokenizer behaviour beyond the reference vectors: pre-tokenizer pieces,
 * the two BPE paths agreeing, very long inputs, invalid UTF-8, the flags,
 * streaming decode, lookups and concurrent use. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "tests/td_test.h"
#include "tokenizer/tok_internal.h"

#define TINY_TOK TD_SOURCE_ROOT "/models/tiny-v4/tokenizer.json"
#define V4_TOK TD_SOURCE_ROOT \
    "/../shared/data/deepseek-v4-tokenizer/tokenizer.json"

static td_tok *load(const char *path)
{
    td_tok *tok = NULL;
    char err[512];
    if (td_tok_load(&tok, path, err, sizeof err))
        fprintf(stderr, "%s\n", err);
    return tok;
}

/* The V4 tokenizer when it is beside the repository, else the tiny one. */
static td_tok *load_best(void)
{
    FILE *f = fopen(V4_TOK, "rb");
    if (f)
        fclose(f);
    return load(f ? V4_TOK : TINY_TOK);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- pre-tokenizer ----------------------------------------------------- */

typedef struct {
    char buf[512];
    size_t len;
} joined;

/* Collects pieces as "piece|piece|...". */
static int collect(void *ctx, const uint8_t *s, size_t n)
{
    joined *j = ctx;
    if (j->len + n + 2 > sizeof j->buf)
        return 1;
    if (j->len)
        j->buf[j->len++] = '|';
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
    return 0;
}

/* Expected splits, as printed by HF's preTokenizeString for V4. */
static void test_pretokenizer(void)
{
    td_tok *tok = load(TINY_TOK);
    TD_CHECK(tok != NULL);
    if (!tok)
        return;
    static const char *const cases[][2] = {
        {"Hello, world!", "Hello|,| world|!"},
        {"abc  \n  def", "abc|  \n| | def"},
        {"1234567", "123|456|7"},
        {"The year 2026", "The| year| |202|6"},
        {"カタ・カナ", "カタ|・|カナ"},
        {"漢字かなカナ한글", "漢字かなカナ|한글"},
        {"x\u0301\u0301 y", "x\u0301\u0301| y"},
        {"\u0301\u0301", "\u0301\u0301"},
        {" \u200d\u200d x", " |\u200d\u200d| x"},
        {"\r\n\r\n  x", "\r\n\r\n| | x"},
        {".\n\n\nx", ".\n\n\n|x"},
        {"x\t\tb", "x|\t|\tb"},
        {"a\u00a0\u00a0\u00a0.", "a|\u00a0\u00a0|\u00a0|."},
        {"a\u200b\u200b\u200b.", "a|\u200b\u200b\u200b|."},
        {"a  ", "a|  "},
        {"#include <stdio.h>", "#include| <|stdio|.h|>"},
        {"file.py", "file|.py"},
        {" ...and", " ...|and"},
        {"it's", "it|'s"},
        {"  \n", "  \n"},
        {" !!\r\n", " !!\r\n"},
        {"x²y", "x|²|y"},
        {"a \n b", "a| \n| b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        joined j = {.len = 0};
        j.buf[0] = '\0';
        tok_pretokenize(tok, (const uint8_t *)cases[i][0],
                        strlen(cases[i][0]), collect, &j);
        TD_CHECK_STR(j.buf, cases[i][1]);
    }
    td_tok_destroy(tok);
}

/* tok_char_class agrees with HF on every code point (groups as in
 * tools/tokenizer-vectors/classes.js), including characters newer than
 * libutf8proc's Unicode tables. */
static void test_char_classes(void)
{
    json_error_t jerr;
    json_t *root = json_load_file(TD_SOURCE_ROOT
                                  "/tests/data/tokenizer/hf_char_groups.json",
                                  0, &jerr);
    TD_CHECK(root != NULL);
    size_t i, checked = 0, wrong = 0;
    json_t *run;
    json_array_foreach(json_object_get(root, "runs"), i, run) {
        int32_t lo = (int32_t)json_integer_value(json_array_get(run, 0));
        int32_t hi = (int32_t)json_integer_value(json_array_get(run, 1));
        char want = json_string_value(json_array_get(run, 2))[0];
        for (int32_t cp = lo; cp <= hi; cp++) {
            /* The probes misread ASCII punctuation, CR/LF and the step-2
             * CJK ranges; the vectors cover those. */
            if (cp < 0x80 || (cp >= 0x3040 && cp <= 0x30ff) ||
                (cp >= 0x4e00 && cp <= 0x9fa5))
                continue;
            unsigned c = tok_char_class(cp);
            char got = c & (TOK_C_L | TOK_C_M) ? 'L' : c & TOK_C_N ? 'N'
                     : c & (TOK_C_P | TOK_C_S) ? 'P' : 'O';
            if (got != want && wrong++ < 10)
                fprintf(stderr, "U+%04X: class %c, HF %c\n", (unsigned)cp,
                        got, want);
            checked++;
        }
    }
    TD_CHECK(checked > 1000000);
    TD_CHECK_EQ_INT(wrong, 0);
    json_decref(root);
}

/* ---- BPE --------------------------------------------------------------- */

static uint32_t rng_next(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* The rescanning and the heap paths must give identical merges. */
static void test_bpe_paths_agree(void)
{
    td_tok *tok = load_best();
    TD_CHECK(tok != NULL);
    if (!tok)
        return;
    static const char *const atoms[] = {
        "e", "t", "a", "th", "in", "er", " ", "  ", "\n", "ing", "the",
        "\xc3\xa9", "\xe4\xb8\xad", "0", "1", ".", "-", "=", "\xff", "\x80"};
    const size_t natoms = sizeof atoms / sizeof *atoms;
    uint32_t x = 12345;
    tok_bpe_scratch sc = {0};
    char piece[1200];
    for (int iter = 0; iter < 400; iter++) {
        size_t len = 0, want = 1 + rng_next(&x) % 600;
        while (len < want) {
            const char *a = atoms[rng_next(&x) % natoms];
            memcpy(piece + len, a, strlen(a));
            len += strlen(a);
        }
        td_tok_ids small = {0}, heap = {0};
        TD_CHECK_EQ_INT(tok_bpe(tok, (const uint8_t *)piece, len,
                                TOK_BPE_SMALL, &sc, &small), TD_OK);
        TD_CHECK_EQ_INT(tok_bpe(tok, (const uint8_t *)piece, len,
                                TOK_BPE_HEAP, &sc, &heap), TD_OK);
        TD_CHECK(small.len == heap.len &&
                 !memcmp(small.ids, heap.ids, small.len * sizeof *small.ids));
        td_tok_ids_free(&small);
        td_tok_ids_free(&heap);
    }
    tok_bpe_scratch_free(&sc);
    td_tok_destroy(tok);
}

/* ---- long and odd inputs ----------------------------------------------- */

static void round_trip(const td_tok *tok, const char *text, size_t len,
                       unsigned flags, size_t *ntok)
{
    td_tok_ids ids = {0};
    td_tok_bytes back = {0};
    char err[256];
    TD_CHECK_EQ_INT(td_tok_encode(tok, text, len, flags, &ids, err,
                                  sizeof err), TD_OK);
    TD_CHECK_EQ_INT(td_tok_decode(tok, ids.ids, ids.len, 0, &back, err,
                                  sizeof err), TD_OK);
    TD_CHECK(back.len == len && (!len || !memcmp(back.data, text, len)));
    if (ntok)
        *ntok = ids.len;
    td_tok_ids_free(&ids);
    td_tok_bytes_free(&back);
}

/* 100 KB runs that are a single piece (spaces, letters) or many (digits)
 * must stay linear: a quadratic path would take minutes here. */
static void test_long_runs(void)
{
    td_tok *tok = load_best();
    TD_CHECK(tok != NULL);
    if (!tok)
        return;
    static const char *const units[] = {
        " ", "7", "a", "\n", "\t", " \n", "ab", "\xe4\xb8\xad", ".",
        "\xf0\x9f\x98\x80", "a ", "\r\n", "\xcc\x81", "\xc2\xa0", "\xff",
        "<\xef\xbd\x9cUser\xef\xbd\x9c>"};
    const size_t size = 100 * 1000;
    char *buf = malloc(size + 16);
    TD_CHECK(buf != NULL);
    for (size_t u = 0; buf && u < sizeof units / sizeof *units; u++) {
        size_t ulen = strlen(units[u]), len = 0;
        while (len + ulen <= size) {
            memcpy(buf + len, units[u], ulen);
            len += ulen;
        }
        double t0 = now();
        size_t ntok = 0;
        round_trip(tok, buf, len, 0, &ntok);
        double dt = now() - t0;
        /* Generous: sanitizer builds are ~10x slower; quadratic is ~1000x. */
        if (dt > 5.0) {
            fprintf(stderr, "unit \"%s\" x %zu took %.2f s\n", units[u],
                    len / ulen, dt);
            td_test_failures++;
        }
        if (u == 1 && td_tok_vocab_size(tok) > 100000)
            TD_CHECK_EQ_INT(ntok, (len + 2) / 3); /* "777" is one V4 token */
    }
    free(buf);
    td_tok_destroy(tok);
}

/* Any byte string survives encode + decode, valid UTF-8 or not. */
static void test_invalid_utf8(void)
{
    td_tok *tok = load_best();
    TD_CHECK(tok != NULL);
    if (!tok)
        return;
    static const char *const odd[] = {
        "\x80", "\xc3", "\xc3(", "\xe2\x82", "\xe2\x82(", "\xf0\x9f\x98",
        "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xfe\xff", "a\x80 b\xc3 c", "\xff\xff\xff 123\x80\x80",
        "<\xef\xbd\x9c\x80User\xef\xbd\x9c>"};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
        round_trip(tok, odd[i], strlen(odd[i]), 0, NULL);
    round_trip(tok, "a\0b\0", 4, 0, NULL); /* NULs are bytes like others */

    uint32_t x = 99;
    char buf[256];
    for (int iter = 0; iter < 300; iter++) {
        size_t len = rng_next(&x) % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)rng_next(&x);
        round_trip(tok, buf, len, iter & 1 ? TD_TOK_PLAIN_TEXT : 0, NULL);
    }
    td_tok_destroy(tok);
}

/* ---- flags and API ----------------------------------------------------- */

static bool contains(const td_tok_ids *v, int32_t id)
{
    for (size_t i = 0; i < v->len; i++)
        if (v->ids[i] == id)
            return true;
    return false;
}

static void test_plain_text_and_append(void)
{
    td_tok *tok = load(TINY_TOK);
    TD_CHECK(tok != NULL);
    if (!tok)
        return;
    int32_t user = -1, think = -1;
    const char *text = "<｜User｜>hi<think>";
    TD_CHECK_EQ_INT(td_tok_token_to_id(tok, "<｜User｜>",
                                       strlen("<｜User｜>"), &user), TD_OK);
    TD_CHECK_EQ_INT(td_tok_token_to_id(tok, "<think>", 7, &think), TD_OK);
    td_tok_ids ids = {0};
    TD_CHECK_EQ_INT(td_tok_encode(tok, text, strlen(text), 0, &ids, NULL, 0),
                    TD_OK);
    TD_CHECK(ids.len >= 3 && ids.ids[0] == user &&
             ids.ids[ids.len - 1] == think);
    size_t first = ids.len;
    /* Appends: the same text as plain text goes after the first result. */
    TD_CHECK_EQ_INT(td_tok_encode(tok, text, strlen(text), TD_TOK_PLAIN_TEXT,
                                  &ids, NULL, 0), TD_OK);
    TD_CHECK(ids.len > first + 3);
    td_tok_ids plain = {.ids = ids.ids + first, .len = ids.len - first};
    TD_CHECK(!contains(&plain, user) && !contains(&plain, think));
    td_tok_bytes back = {0};
    TD_CHECK_EQ_INT(td_tok_decode(tok, ids.ids, ids.len, 0, &back, NULL, 0),
                    TD_OK);
    TD_CHECK_STR(back.data, "<｜User｜>hi<think><｜User｜>hi<think>");

    /* A bad id leaves the output as it was. */
    int32_t bad[] = {user, td_tok_vocab_size(tok)};
    char err[128] = "";
    size_t before = back.len;
    TD_CHECK_EQ_INT(td_tok_decode(tok, bad, 2, 0, &back, err, sizeof err),
                    TD_ERANGE);
    TD_CHECK(back.len == before && strstr(err, "not in the vocabulary"));
    bad[1] = -1;
    TD_CHECK_EQ_INT(td_tok_decode(tok, bad, 2, 0, &back, NULL, 0), TD_ERANGE);

    /* Lookups. */
    int32_t id;
    const char *piece;
    size_t len;
    TD_CHECK_EQ_INT(td_tok_token_to_id(tok, "no such token", 13, &id),
                    TD_ENOENT);
    TD_CHECK_EQ_INT(td_tok_token_to_id(tok, "\xc4\xa0t", 3, &id), TD_OK);
    TD_CHECK_EQ_INT(td_tok_id_to_piece(tok, id, &piece, &len), TD_OK);
    TD_CHECK(len == 2 && !memcmp(piece, " t", 2));
    TD_CHECK_EQ_INT(td_tok_id_to_piece(tok, -1, &piece, &len), TD_ERANGE);
    TD_CHECK_EQ_INT(td_tok_id_to_piece(tok, td_tok_vocab_size(tok), &piece,
                                       &len), TD_ERANGE);
    TD_CHECK(td_tok_is_special(tok, 0) && td_tok_is_added(tok, 0));
    TD_CHECK(td_tok_is_added(tok, user) && !td_tok_is_special(tok, user));
    TD_CHECK(!td_tok_is_added(tok, id) && !td_tok_is_special(tok, -5));
    TD_CHECK_EQ_INT(td_tok_vocab_size(tok), 512);

    /* skip_special drops BOS/EOS but keeps chat markers. */
    int32_t seq[] = {0, user, id, 1};
    back.len = 0;
    TD_CHECK_EQ_INT(td_tok_decode(tok, seq, 4, TD_TOK_SKIP_SPECIAL, &back,
                                  NULL, 0), TD_OK);
    TD_CHECK_STR(back.data, "<｜User｜> t");
    td_tok_bytes_free(&back);
    td_tok_ids_free(&ids);
    td_tok_destroy(tok);
}

/* ---- streaming --------------------------------------------------------- */

static int32_t byte_id(const td_tok *tok, uint8_t b)
{
    return tok->byte_id[b];
}

typedef struct {
    td_tok_stream s;
    char all[256];
    size_t len;
} streamer;

static void push(streamer *st, int32_t id, const char *want)
{
    const char *text;
    size_t len;
    TD_CHECK_EQ_INT(td_tok_stream_push(&st->s, id, &text, &len, NULL, 0),
                    TD_OK);
    TD_CHECK(len == strlen(want) && !memcmp(text, want, len));
}

static void test_stream(void)
{
    td_tok *tok = load(TINY_TOK);
    TD_CHECK(tok != NULL);
    if (!tok)
        return;
    streamer st;
    td_tok_stream_init(&st.s, tok, 0);
    /* "é" = C3 A9 and "😀" = F0 9F 98 80, one byte per id. */
    push(&st, byte_id(tok, 'a'), "a");
    push(&st, byte_id(tok, 0xc3), "");
    push(&st, byte_id(tok, 0xa9), "\xc3\xa9");
    push(&st, byte_id(tok, 0xf0), "");
    push(&st, byte_id(tok, 0x9f), "");
    push(&st, byte_id(tok, 0x98), "");
    push(&st, byte_id(tok, 0x80), "\xf0\x9f\x98\x80");
    /* A sequence broken by a new lead byte: U+FFFD for the broken part. */
    push(&st, byte_id(tok, 0xe4), "");
    push(&st, byte_id(tok, 0xb8), "");
    push(&st, byte_id(tok, 0xc3), "\xef\xbf\xbd");
    push(&st, byte_id(tok, 'x'), "\xef\xbf\xbdx");
    /* Stray continuation bytes and never-valid bytes. */
    push(&st, byte_id(tok, 0x80), "\xef\xbf\xbd");
    push(&st, byte_id(tok, 0xff), "\xef\xbf\xbd");
    push(&st, byte_id(tok, 0xe0), "");
    push(&st, byte_id(tok, 0x80), "\xef\xbf\xbd\xef\xbf\xbd"); /* overlong */
    /* Incomplete at the end: flush gives one U+FFFD and resets. */
    push(&st, byte_id(tok, 0xf0), "");
    push(&st, byte_id(tok, 0x9f), "");
    const char *text;
    size_t len;
    td_tok_stream_flush(&st.s, &text, &len);
    TD_CHECK(len == 3 && !memcmp(text, "\xef\xbf\xbd", 3));
    td_tok_stream_flush(&st.s, &text, &len);
    TD_CHECK_EQ_INT(len, 0);
    /* Bad ids are errors that leave the stream usable. */
    char err[128] = "";
    TD_CHECK_EQ_INT(td_tok_stream_push(&st.s, 1 << 20, &text, &len, err,
                                       sizeof err), TD_ERANGE);
    TD_CHECK(err[0] != '\0' && len == 0);
    push(&st, byte_id(tok, 'b'), "b");
    td_tok_stream_free(&st.s);

    /* SKIP_SPECIAL drops BOS; multi-byte pieces split mid-character. */
    td_tok_stream_init(&st.s, tok, TD_TOK_SKIP_SPECIAL);
    push(&st, 0, "");
    td_tok_ids ids = {0};
    const char *cjk = "中文字";
    TD_CHECK_EQ_INT(td_tok_encode(tok, cjk, strlen(cjk), 0, &ids, NULL, 0),
                    TD_OK);
    size_t got = 0;
    char out[64];
    for (size_t i = 0; i < ids.len; i++) {
        TD_CHECK_EQ_INT(td_tok_stream_push(&st.s, ids.ids[i], &text, &len,
                                           NULL, 0), TD_OK);
        memcpy(out + got, text, len);
        got += len;
    }
    out[got] = '\0';
    TD_CHECK_STR(out, cjk);
    td_tok_ids_free(&ids);
    td_tok_stream_free(&st.s);
    td_tok_destroy(tok);
}

/* ---- concurrency ------------------------------------------------------- */

typedef struct {
    const td_tok *tok;
    const char *text;
    size_t len;
    td_tok_ids ids;
} job;

static void *encode_job(void *arg)
{
    job *j = arg;
    for (int k = 0; k < 20; k++) {
        j->ids.len = 0;
        td_tok_encode(j->tok, j->text, j->len, 0, &j->ids, NULL, 0);
    }
    return NULL;
}

/* A shared td_tok serves several threads at once. */
static void test_threads(void)
{
    td_tok *tok = load(TINY_TOK);
    TD_CHECK(tok != NULL);
    if (!tok)
        return;
    const char *text = "<｜User｜>The quick brown fox, 12345 — 中文 テスト!\n\n"
                       "  jumps over the lazy dog.<｜Assistant｜>";
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){tok, text, strlen(text), {0}};
        TD_CHECK_EQ_INT(pthread_create(&th[i], NULL, encode_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 1; i < 4; i++)
        TD_CHECK(jobs[i].ids.len == jobs[0].ids.len && jobs[0].ids.len > 0 &&
                 !memcmp(jobs[i].ids.ids, jobs[0].ids.ids,
                         jobs[0].ids.len * sizeof(int32_t)));
    for (int i = 0; i < 4; i++)
        td_tok_ids_free(&jobs[i].ids);
    td_tok_destroy(tok);
}

TD_TEST_MAIN({"pretokenizer", test_pretokenizer},
             {"char_classes", test_char_classes},
             {"bpe_paths_agree", test_bpe_paths_agree},
             {"long_runs", test_long_runs},
             {"invalid_utf8", test_invalid_utf8},
             {"plain_text_and_append", test_plain_text_and_append},
             {"stream", test_stream},
             {"threads", test_threads})
