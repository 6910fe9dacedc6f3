#include <stdio.h>
#include "cmd/cmd.h"

int cmd_serve(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "tandem serve: not implemented yet\n");
    return 2;
}
