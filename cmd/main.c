/* tandem: one binary, one subcommand per role or tool. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} subcommand;

int cmd_render_chat(int argc, char **argv);  /* cmd_render_chat.c */
int cmd_kvstore(int argc, char **argv);      /* cmd_kvstore.c */

static const subcommand subcommands[] = {
    {"serve",    cmd_serve,    "router + prefill + decode on this machine (embedded default)"},
    {"router",   cmd_router,   "HTTP front door; prefill/decode workers register with it"},
    {"prefill",  cmd_prefill,  "prefill worker (registers with a router)"},
    {"decode",   cmd_decode,   "decode worker (registers with a router)"},
    {"generate", cmd_generate, "generate text from a prompt, streamed to stdout"},
    {"logits",   cmd_logits,   "write float32 logits for every position of a prompt"},
    {"tokenize", cmd_tokenize, "print token ids of a text (or --decode ids)"},
    {"render-chat", cmd_render_chat, "print the exact V4 prompt of a chat request (or --ids)"},
    {"kv-size",  cmd_kv_size,  "KV state bytes per layer kind for a config and length"},
    {"kvstore",  cmd_kvstore,  "inspect the on-disk KV store (stat, verify, gc, dump)"},
    {"bench",    cmd_bench,    "benchmarks (bench decode, bench kvstore)"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tandem <command> [options]\n\ncommands:\n");
    for (const subcommand *s = subcommands; s->name; s++)
        fprintf(f, "  %-10s %s\n", s->name, s->help);
    fprintf(f, "\n`tandem <command> --help` describes each command's options.\n");
}

int cmd_not_yet(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "tandem %s: not implemented yet\n", argv[0]);
    return 2;
}

int main(int argc, char **argv)
{
    /* A client that goes away mid-stream must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const subcommand *s = subcommands; s->name; s++)
        if (!strcmp(argv[1], s->name))
            return s->run(argc - 1, argv + 1);
    fprintf(stderr, "tandem: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
