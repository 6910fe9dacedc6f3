/* XXH3-64 for td_xfer, in the fastest build this CPU runs: the packaged
 * libxxhash is compiled for baseline x86-64 (SSE2), which on the dev VM
 * hashes 8 GB/s from DRAM against 14 GB/s for the same code built for
 * AVX2, and the sender hashes every byte it puts. Results are identical
 * whichever build runs (XXH3's definition does not depend on the ISA).
 * Each context asks once (td_xfer_ctx_create). Internal to transport/xfer. */
#ifndef TD_TRANSPORT_XFER_HASH_H
#define TD_TRANSPORT_XFER_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;                       /* "avx2", "libxxhash" */
    void *(*create)(void);                  /* a streaming state; NULL: out of memory */
    void (*destroy)(void *st);
    void (*reset)(void *st);
    void (*update)(void *st, const void *p, size_t n);
    uint64_t (*digest)(const void *st);
    uint64_t (*hash)(const void *p, size_t n);
} xfer_hash_impl;

const xfer_hash_impl *xfer_hash(void);

/* hash.c: the packaged libxxhash; hash_avx2.c, built with -mavx2 on
 * x86-64 only: the same code inline for AVX2. */
extern const xfer_hash_impl xfer_hash_lib;
extern const xfer_hash_impl xfer_hash_avx2;

#endif
