#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "cmd/cmd.h"

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "decode"))
        return td_bench_decode(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "kvstore"))
        return td_bench_kvstore(argc - 1, argv + 1);
    fprintf(stderr, "usage: tandem bench decode|kvstore [options]   (see docs/benchmarks.md)\n");
    return 2;
}
