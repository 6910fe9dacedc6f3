#include <stdio.h>
#include "cmd/cmd.h"

int cmd_generate(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "tandem generate: not implemented yet\n");
    return 2;
}

int cmd_logits(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "tandem logits: not implemented yet\n");
    return 2;
}
