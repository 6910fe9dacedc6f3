/* The streamed loader of model/state.c on the tiny model: fed in random
 * increments it gives exactly td_v4_seq_load's sequence (the same bytes
 * saved back, the same logits decoded after); a damaged section, a wrong
 * header, a short feed and an abort all leave the sequence empty.
 * argv[1] is the model directory (tests/unit/model/meson.build). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"
#include "tests/td_test.h"

#define NTOK 120
#define GEN 4

static td_v4_weights *W;
static td_v4_model *M;
static int32_t tokens[NTOK + GEN];

static int V(void) { return W->cfg.vocab_size; }

static td_v4_seq *new_seq(void)
{
    td_v4_seq *s = NULL;
    char err[256];
    if (td_v4_seq_create(&s, M, NTOK + GEN, err, sizeof err)) {
        fprintf(stderr, "seq: %s\n", err);
        exit(1);
    }
    return s;
}

static void forward(td_v4_seq *s, const int32_t *t, int n, float *logits)
{
    char err[256];
    td_v4_step st = {.seq = s, .tokens = t, .n = n, .logits = logits};
    if (td_v4_forward(M, &st, 1, err, sizeof err)) {
        fprintf(stderr, "forward: %s\n", err);
        exit(1);
    }
}

/* The state after `cut` tokens; *len gets its size. */
static uint8_t *state_at(int cut, size_t *len)
{
    td_v4_seq *s = new_seq();
    forward(s, tokens, cut, NULL);
    *len = td_v4_seq_state_size(s);
    uint8_t *buf = malloc(*len);
    size_t w = 0;
    TD_CHECK(td_v4_seq_save(s, buf, *len, &w) == TD_OK && w == *len);
    td_v4_seq_destroy(s);
    return buf;
}

static uint64_t rng(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Feeds buf[0..len) in random increments (empty ones, single bytes, whole
 * sections and more), then ends; returns the first error. */
static td_err stream(td_v4_seq *s, const uint8_t *buf, size_t len, size_t feed_len,
                     uint64_t seed, char *err, size_t errlen)
{
    td_v4_seq_loader *ld = NULL;
    td_err r = td_v4_seq_load_begin(&ld, s, len);
    if (r)
        return r;
    size_t avail = 0;
    uint64_t x = seed | 1;
    while (avail < feed_len) {
        uint64_t c = rng(&x);
        size_t step = c % 4 == 0 ? 0 : c % 4 == 1 ? 1 : (size_t)(c >> 8) % (len / 3 + 1);
        avail = avail + step < feed_len ? avail + step : feed_len;
        r = td_v4_seq_load_feed(ld, buf, avail, err, errlen);
        if (r) {
            td_v4_seq_load_end(ld, NULL, 0);
            return r;
        }
    }
    return td_v4_seq_load_end(ld, err, errlen);
}

/* Logits of GEN more tokens. */
static float *decode(td_v4_seq *s, int from)
{
    float *l = malloc(sizeof(float) * GEN * (size_t)V());
    for (int g = 0; g < GEN; g++)
        forward(s, tokens + from + g, 1, l + (size_t)g * V());
    return l;
}

static void streamed_equals_load(void)
{
    /* Cuts inside and at the ends of compression blocks, and one beyond
     * the window. */
    int cuts[] = {1, 5, 64, 117};
    for (size_t ci = 0; ci < sizeof cuts / sizeof cuts[0]; ci++) {
        int cut = cuts[ci];
        size_t len;
        uint8_t *buf = state_at(cut, &len);
        char err[256] = "";
        td_v4_seq *ref = new_seq();
        TD_CHECK(td_v4_seq_load(ref, buf, len, err, sizeof err) == TD_OK);
        float *want = decode(ref, cut);
        for (uint64_t seed = 1; seed <= 6; seed++) {
            /* A sequence with other contents: the load must replace them. */
            td_v4_seq *s = new_seq();
            forward(s, tokens + 3, 50, NULL);
            td_err r = stream(s, buf, len, len, seed * 7919, err, sizeof err);
            if (r)
                fprintf(stderr, "cut %d seed %llu: %s\n", cut, (unsigned long long)seed, err);
            TD_CHECK_EQ_INT(r, TD_OK);
            TD_CHECK_EQ_INT(td_v4_seq_len(s), cut);
            TD_CHECK_EQ_INT(td_v4_seq_mtp_len(s), td_v4_seq_mtp_len(ref));
            uint8_t *back = malloc(len);
            size_t w = 0;
            TD_CHECK(td_v4_seq_save(s, back, len, &w) == TD_OK && w == len);
            TD_CHECK(memcmp(back, buf, len) == 0);
            float *got = decode(s, cut);
            TD_CHECK(memcmp(got, want, sizeof(float) * GEN * (size_t)V()) == 0);
            free(got);
            free(back);
            td_v4_seq_destroy(s);
        }
        free(want);
        td_v4_seq_destroy(ref);
        free(buf);
    }
}

/* A flipped byte in a middle layer's section: every feed succeeds (the
 * section is loaded before the checksum can be known), the end fails and
 * the sequence is empty. td_v4_seq_load of the same bytes leaves its
 * sequence as it was. */
static void corrupt_section_fails(void)
{
    size_t len;
    uint8_t *buf = state_at(117, &len);
    size_t offs[TD_V4_MAX_LAYERS + 1];
    int64_t mtp;
    memcpy(&mtp, buf + 56, 8);   /* the header's mtp_pos (little-endian host) */
    td_v4_state_offsets(M, 117, mtp, offs);
    size_t at = (offs[1] + offs[2]) / 2;   /* inside layer 1 */
    buf[at] ^= 0x10;
    char err[256] = "";
    td_v4_seq *s = new_seq();
    forward(s, tokens, 9, NULL);
    TD_CHECK_EQ_INT(stream(s, buf, len, len, 42, err, sizeof err), TD_ECORRUPT);
    TD_CHECK(strstr(err, "checksum") != NULL);
    TD_CHECK_EQ_INT(td_v4_seq_len(s), 0);
    forward(s, tokens, 9, NULL);
    TD_CHECK_EQ_INT(td_v4_seq_load(s, buf, len, err, sizeof err), TD_ECORRUPT);
    TD_CHECK_EQ_INT(td_v4_seq_len(s), 9);
    td_v4_seq_destroy(s);
    free(buf);
}

/* Feeds buf in two steps, 63 then 64 bytes: the first cannot judge the
 * header, the second must. Returns the second feed's error. */
static td_err header_feed(td_v4_seq *s, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    td_v4_seq_loader *ld = NULL;
    TD_CHECK(td_v4_seq_load_begin(&ld, s, len) == TD_OK);
    TD_CHECK_EQ_INT(td_v4_seq_load_feed(ld, buf, 63, err, errlen), TD_OK);
    TD_CHECK_EQ_INT(td_v4_seq_len(s), 9);   /* not touched yet */
    td_err r = td_v4_seq_load_feed(ld, buf, 64, err, errlen);
    /* Final: the next feed and the end say so again. */
    if (r) {
        TD_CHECK_EQ_INT(td_v4_seq_load_feed(ld, buf, len, NULL, 0), r);
        TD_CHECK_EQ_INT(td_v4_seq_load_end(ld, NULL, 0), r);
    } else {
        td_v4_seq_load_abort(ld);
    }
    return r;
}

static void bad_header_fails(void)
{
    size_t len;
    uint8_t *buf = state_at(37, &len);
    char err[256] = "";
    td_v4_seq *s = new_seq();
    struct {
        size_t at;       /* byte flipped, or SIZE_MAX: announce one byte less */
        td_err want;
    } cases[] = {
        {0, TD_EFORMAT},          /* magic */
        {4, TD_EFORMAT},          /* version */
        {16, TD_EFORMAT},         /* fingerprint */
        {24, TD_ECORRUPT},        /* pos: the length no longer matches */
        {32, TD_ECORRUPT},        /* total bytes */
        {SIZE_MAX, TD_ECORRUPT},  /* the caller's length */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        forward(s, tokens, 9, NULL);
        size_t n = len;
        if (cases[i].at == SIZE_MAX)
            n--;
        else
            buf[cases[i].at] ^= 1;
        TD_CHECK_EQ_INT(header_feed(s, buf, n, err, sizeof err), cases[i].want);
        TD_CHECK_EQ_INT(td_v4_seq_len(s), 0);
        if (cases[i].at != SIZE_MAX)
            buf[cases[i].at] ^= 1;
    }
    /* Intact, the same two feeds pass. */
    forward(s, tokens, 9, NULL);
    TD_CHECK_EQ_INT(header_feed(s, buf, len, err, sizeof err), TD_OK);
    /* Shorter than a header: the first feed fails, whatever it covers. */
    td_v4_seq_loader *ld = NULL;
    TD_CHECK(td_v4_seq_load_begin(&ld, s, 40) == TD_OK);
    TD_CHECK_EQ_INT(td_v4_seq_load_feed(ld, buf, 0, err, sizeof err), TD_ECORRUPT);
    TD_CHECK_EQ_INT(td_v4_seq_load_end(ld, err, sizeof err), TD_ECORRUPT);
    td_v4_seq_destroy(s);
    free(buf);
}

/* An abort halfway, an end before the last bytes came, and a feed that
 * goes backwards: each leaves the sequence empty. */
static void abort_resets(void)
{
    size_t len;
    uint8_t *buf = state_at(64, &len);
    char err[256] = "";
    td_v4_seq *s = new_seq();
    forward(s, tokens, 9, NULL);
    td_v4_seq_loader *ld = NULL;
    TD_CHECK(td_v4_seq_load_begin(&ld, s, len) == TD_OK);
    TD_CHECK_EQ_INT(td_v4_seq_load_feed(ld, buf, len / 2, err, sizeof err), TD_OK);
    td_v4_seq_load_abort(ld);
    TD_CHECK_EQ_INT(td_v4_seq_len(s), 0);
    td_v4_seq_load_abort(NULL);

    forward(s, tokens, 9, NULL);
    TD_CHECK_EQ_INT(stream(s, buf, len, len - 1, 5, err, sizeof err), TD_ECORRUPT);
    TD_CHECK_EQ_INT(td_v4_seq_len(s), 0);

    forward(s, tokens, 9, NULL);
    TD_CHECK(td_v4_seq_load_begin(&ld, s, len) == TD_OK);
    TD_CHECK_EQ_INT(td_v4_seq_load_feed(ld, buf, len / 2, err, sizeof err), TD_OK);
    TD_CHECK_EQ_INT(td_v4_seq_load_feed(ld, buf, len / 3, err, sizeof err), TD_EINVAL);
    TD_CHECK_EQ_INT(td_v4_seq_len(s), 0);
    TD_CHECK_EQ_INT(td_v4_seq_load_end(ld, err, sizeof err), TD_EINVAL);

    /* After all that, a whole load still works. */
    TD_CHECK_EQ_INT(stream(s, buf, len, len, 9, err, sizeof err), TD_OK);
    TD_CHECK_EQ_INT(td_v4_seq_len(s), 64);
    td_v4_seq_destroy(s);
    free(buf);
}

/* Token ranges (td_v4_state_range_spans): the records of tokens [t0, t1)
 * are the same bytes in a state of 48 tokens and in one of 120 (what lets
 * the disk tier store them once); the spans are in file order, disjoint,
 * inside the layer sections, their count fixed; unaligned ranges refused. */
static void range_spans_shared(void)
{
    size_t la, lb;
    uint8_t *a = state_at(48, &la), *b = state_at(NTOK, &lb);
    td_v4_span sa[2 * TD_V4_MAX_LAYERS], sb[2 * TD_V4_MAX_LAYERS];
    int64_t ma, mb;   /* the MTP block's tokens, from the headers */
    memcpy(&ma, a + 56, 8);
    memcpy(&mb, b + 56, 8);
    int n0 = -1;
    static const int64_t cuts[][2] = {{0, 16}, {16, 48}, {0, 48}, {32, 48}};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        int na = td_v4_state_range_spans(M, 48, ma, cuts[c][0], cuts[c][1], sa);
        int nb = td_v4_state_range_spans(M, NTOK, mb, cuts[c][0], cuts[c][1], sb);
        TD_CHECK(na > 0 && na == nb);
        if (n0 < 0)
            n0 = na;
        TD_CHECK_EQ_INT(na, n0);
        size_t end = 64;
        for (int i = 0; i < na && i < nb; i++) {
            TD_CHECK(sa[i].len > 0 && sa[i].len == sb[i].len);
            TD_CHECK(sa[i].off >= end && sa[i].off + sa[i].len <= la - 8);
            TD_CHECK(sb[i].off + sb[i].len <= lb - 8);
            end = sa[i].off + sa[i].len;
            TD_CHECK(!memcmp(a + sa[i].off, b + sb[i].off, sa[i].len));
        }
    }
    /* The tiny model: CSA, HCA (16), CSA: comp + keys, comp, comp + keys. */
    TD_CHECK_EQ_INT(n0, 5);
    TD_CHECK_EQ_INT(td_v4_state_range_spans(M, 48, ma, 0, 8, sa), -1);   /* not a multiple of 16 */
    TD_CHECK_EQ_INT(td_v4_state_range_spans(M, 48, ma, 0, 64, sa), -1);  /* past the state */
    TD_CHECK_EQ_INT(td_v4_state_range_spans(M, 48, ma, 16, 16, sa), -1); /* empty */
    /* Different tokens before t1: different bytes. */
    tokens[5] ^= 1;
    size_t lc;
    uint8_t *c = state_at(48, &lc);
    tokens[5] ^= 1;
    td_v4_state_range_spans(M, 48, ma, 0, 16, sa);
    TD_CHECK(memcmp(a + sa[0].off, c + sa[0].off, sa[0].len) != 0);
    free(a);
    free(b);
    free(c);
}

int main(int argc, char **argv)
{
    const char *model_dir = argc > 2 ? argv[2] : "models/tiny-v4";
    char err[512];
    if (td_v4_weights_load(&W, model_dir, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    td_kernels_init(-1);
    td_v4_model_opts mo = {.max_rows = 128, .nthreads = 2};
    if (td_v4_model_create(&M, W, &mo, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        return 1;
    }
    uint32_t x = 4242;
    for (int i = 0; i < NTOK + GEN; i++) {
        x = x * 1103515245u + 12345u;
        tokens[i] = (int32_t)((x >> 8) % (uint32_t)V());
    }
    static const td_test_case cases[] = {
        {"streamed_equals_load", streamed_equals_load},
        {"corrupt_section_fails", corrupt_section_fails},
        {"bad_header_fails", bad_header_fails},
        {"abort_resets", abort_resets},
        {"range_spans_shared", range_spans_shared},
        {NULL, NULL},
    };
    int rc = td_test_run(cases, argc > 1 && strcmp(argv[1], "all") ? 2 : 1, argv);
    td_v4_model_destroy(M);
    td_v4_weights_destroy(W);
    return rc;
}
