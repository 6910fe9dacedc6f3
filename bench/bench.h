/* Benchmarks run by `tandem bench <name>`; each prints a table. */
#ifndef TD_BENCH_H
#define TD_BENCH_H

int td_bench_decode(int argc, char **argv);
int td_bench_kvstore(int argc, char **argv);

#endif
