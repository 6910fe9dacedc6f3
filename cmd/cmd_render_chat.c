/* tandem render-chat: the exact DeepSeek-V4 prompt a chat request encodes to
 * (router/chat_encode.h), as text or as token ids. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/chat_encode.h"
#include "router/conv.h"
#include "tokenizer/tokenizer.h"

int cmd_render_chat(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
        "usage: tandem render-chat [--model DIR] [--ids] [--think none|high|max] FILE.json\n"
        "\n"
        "Prints the prompt a chat request encodes to, exactly as the server feeds it\n"
        "to the model (no newline is added). FILE (\"-\" = standard input) is either an\n"
        "OpenAI chat-completions body ({\"messages\", \"tools\", \"tool_choice\",\n"
        "\"reasoning_effort\", ...}) or a bare message array in the official encoder's\n"
        "own shape (developer / latest_reminder roles, per-message tools, task).\n"
        "\n"
        "  --model DIR   model directory with tokenizer.json (default models/tiny-v4);\n"
        "                needed only for --ids\n"
        "  --ids         print the token ids as a JSON array instead of the text\n"
        "  --think MODE  override the reasoning mode (a bare array defaults to none)\n");
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *nb = realloc(buf, 2 * cap);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int cmd_render_chat(int argc, char **argv)
{
    const char *model = "models/tiny-v4", *file = NULL, *think = NULL;
    bool ids = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(argv[i], "--think") && i + 1 < argc) {
            think = argv[++i];
        } else if (!strcmp(argv[i], "--ids")) {
            ids = true;
        } else if (!file && (argv[i][0] != '-' || !strcmp(argv[i], "-"))) {
            file = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    td_conv_think mode = TD_CONV_THINK_NONE;
    if (!file || (think && strcmp(think, "none") && strcmp(think, "high") && strcmp(think, "max"))) {
        usage(stderr);
        return 2;
    }
    if (think)
        mode = !strcmp(think, "max") ? TD_CONV_THINK_MAX
             : !strcmp(think, "high") ? TD_CONV_THINK_HIGH : TD_CONV_THINK_NONE;

    size_t len;
    char *body = read_all(file, &len);
    if (!body) {
        fprintf(stderr, "tandem render-chat: cannot read %s\n", file);
        return 1;
    }
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    free(body);
    if (!root) {
        fprintf(stderr, "tandem render-chat: %s: not JSON: %s (line %d)\n", file, je.text, je.line);
        return 1;
    }
    char err[512];
    const char *param = NULL;
    td_conv *c = NULL;
    td_err e;
    if (json_is_array(root)) {
        e = td_conv_create(&c);
        if (!e)
            e = td_conv_add_messages(c, root, TD_CONV_NATIVE, err, sizeof err);
    } else {
        e = td_conv_from_request(&c, root, &param, err, sizeof err);
    }
    json_decref(root);
    if (!e && think)
        td_conv_set_think(c, mode);
    int rc = 0;
    td_tok *tok = NULL;
    if (e) {
        fprintf(stderr, "tandem render-chat: %s%s%s\n", param ? param : "", param ? ": " : "",
                e == TD_ENOMEM ? "out of memory" : err);
        rc = 1;
    } else if (!ids) {
        td_tok_bytes out = {0};
        if (td_chat_render_text(c, &out, err, sizeof err)) {
            fprintf(stderr, "tandem render-chat: %s\n", err);
            rc = 1;
        } else {
            fwrite(out.data, 1, out.len, stdout);
        }
        td_tok_bytes_free(&out);
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", model);
        td_chat_markers mk;
        td_tok_ids out = {0};
        if (td_tok_load(&tok, path, err, sizeof err) ||
            td_chat_markers_load(tok, &mk, err, sizeof err) ||
            td_chat_render_ids(c, tok, &mk, &out, err, sizeof err)) {
            fprintf(stderr, "tandem render-chat: %s\n", err);
            rc = 1;
        } else {
            putchar('[');
            for (size_t i = 0; i < out.len; i++)
                printf(i ? ", %d" : "%d", out.ids[i]);
            printf("]\n");
        }
        td_tok_ids_free(&out);
    }
    if (tok)
        td_tok_destroy(tok);
    td_conv_destroy(c);
    return rc;
}
