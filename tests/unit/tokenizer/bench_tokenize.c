/* Encode speed on a file: tokenizer_bench TOKENIZER_JSON TEXT_FILE [--plain]
 * Prints bytes, tokens, seconds and MB/s of one td_tok_encode call over the
 * whole file (load time excluded), then checks that decoding gives the file
 * back. Not a test; docs/tokenizer.md quotes its numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/fileio.h"
#include "tokenizer/tokenizer.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_JSON TEXT_FILE [--plain]\n",
                argv[0]);
        return 2;
    }
    unsigned flags = argc > 3 && !strcmp(argv[3], "--plain")
                         ? TD_TOK_PLAIN_TEXT : 0;
    char err[512], *text;
    size_t len;
    td_tok *tok;
    double t0 = now();
    if (td_tok_load(&tok, argv[1], err, sizeof err) ||
        td_file_read(argv[2], &text, &len, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double t1 = now();
    td_tok_ids ids = {0};
    if (td_tok_encode(tok, text, len, flags, &ids, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double t2 = now();
    td_tok_bytes back = {0};
    if (td_tok_decode(tok, ids.ids, ids.len, 0, &back, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double t3 = now();
    bool same = back.len == len && !memcmp(back.data, text, len);
    printf("load %.3f s; encode %zu bytes -> %zu tokens in %.3f s = %.1f MB/s;"
           " decode %.3f s; round trip %s\n", t1 - t0, len, ids.len, t2 - t1,
           len / 1e6 / (t2 - t1), t3 - t2, same ? "ok" : "MISMATCH");
    td_tok_bytes_free(&back);
    td_tok_ids_free(&ids);
    free(text);
    td_tok_destroy(tok);
    return same ? 0 : 1;
}
