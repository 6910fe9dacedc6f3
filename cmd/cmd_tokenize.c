/* tandem tokenize: text -> token ids, or ids -> text with --decode. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/args.h"
#include "cmd/cmd.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: tandem tokenize --tokenizer FILE [--plain] TEXT\n"
        "       tandem tokenize --tokenizer FILE --decode [--skip-special] IDS\n"
        "\n"
        "Prints the token ids of TEXT as a JSON array, e.g. [19923, 14, 2058, 3].\n"
        "With --decode, IDS is a JSON array of ids and the decoded text is\n"
        "printed, followed by a newline. TEXT or IDS \"-\" reads standard input.\n"
        "\n"
        "  --tokenizer FILE  a Hugging Face tokenizer.json (DeepSeek-V4 format)\n"
        "  --plain           take added-token strings such as <｜User｜> in TEXT\n"
        "                    as plain text instead of matching them\n"
        "  --decode          decode IDS instead of encoding TEXT\n"
        "  --skip-special    with --decode, drop tokens flagged special (BOS...)\n");
}

/* Reads all of stdin into a heap buffer. */
static char *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (n < cap) {
            if (ferror(stdin))
                break;
            buf[n] = '\0';
            *len = n;
            return buf;
        }
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb)
            break;
        buf = nb;
        cap *= 2;
    }
    free(buf);
    return NULL;
}

static int encode(const td_tok *tok, const char *text, size_t len,
                  unsigned flags)
{
    td_tok_ids ids = {0};
    char err[256];
    if (td_tok_encode(tok, text, len, flags, &ids, err, sizeof err)) {
        fprintf(stderr, "tandem tokenize: %s\n", err);
        return 1;
    }
    putchar('[');
    for (size_t i = 0; i < ids.len; i++)
        printf(i ? ", %d" : "%d", ids.ids[i]);
    printf("]\n");
    td_tok_ids_free(&ids);
    return 0;
}

static int decode(const td_tok *tok, const char *arg, size_t len,
                  unsigned flags)
{
    json_error_t jerr;
    json_t *arr = json_loadb(arg, len, 0, &jerr);
    /* Any 32-bit id: the tokenizer says which it knows. */
    td_arg_ids_opts o = {.min_id = INT32_MIN, .allow_empty = true};
    int32_t *ids;
    size_t n, bad;
    td_err e = td_arg_ids(arr, &o, &ids, &n, &bad);
    json_decref(arr);
    if (e == TD_EINVAL && bad == SIZE_MAX) {
        fprintf(stderr, "tandem tokenize: --decode wants a JSON array of ids, "
                "e.g. [19923, 14]\n");
        return 2;
    }
    if (e == TD_EINVAL)
        fprintf(stderr, "tandem tokenize: element %zu of the id array is "
                "not a 32-bit integer\n", bad);
    int rc = e == TD_EINVAL ? 2 : e ? 1 : 0;
    td_tok_bytes text = {0};
    char err[256];
    if (!rc && td_tok_decode(tok, ids, n, flags, &text, err, sizeof err)) {
        fprintf(stderr, "tandem tokenize: %s\n", err);
        rc = 1;
    }
    if (!rc) {
        fwrite(text.data ? text.data : "", 1, text.len, stdout);
        putchar('\n');
    }
    td_tok_bytes_free(&text);
    free(ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL, *arg = NULL;
    bool do_decode = false;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--decode")) {
            do_decode = true;
        } else if (!strcmp(argv[i], "--plain")) {
            flags |= TD_TOK_PLAIN_TEXT;
        } else if (!strcmp(argv[i], "--skip-special")) {
            flags |= TD_TOK_SKIP_SPECIAL;
        } else if (!strcmp(argv[i], "--") && i + 2 == argc) {
            arg = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] && !arg) {
            fprintf(stderr, "tandem tokenize: unknown option %s\n\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!arg) {
            arg = argv[i];
        } else {
            fprintf(stderr, "tandem tokenize: one TEXT argument only\n\n");
            usage(stderr);
            return 2;
        }
    }
    if (!path || !arg) {
        fprintf(stderr, "tandem tokenize: %s is required\n\n",
                path ? "TEXT" : "--tokenizer FILE");
        usage(stderr);
        return 2;
    }

    char *input = NULL;
    size_t len = strlen(arg);
    if (!strcmp(arg, "-")) {
        if (!(input = read_stdin(&len))) {
            fprintf(stderr, "tandem tokenize: cannot read standard input\n");
            return 1;
        }
        arg = input;
    }
    td_tok *tok;
    char err[512];
    int rc;
    if (td_tok_load(&tok, path, err, sizeof err)) {
        fprintf(stderr, "tandem tokenize: %s\n", err);
        rc = 1;
    } else {
        rc = do_decode ? decode(tok, arg, len, flags)
                       : encode(tok, arg, len, flags);
        td_tok_destroy(tok);
    }
    free(input);
    return rc;
}
