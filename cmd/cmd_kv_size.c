#include <stdio.h>
#include "cmd/cmd.h"

int cmd_kv_size(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "tandem kv-size: not implemented yet\n");
    return 2;
}
