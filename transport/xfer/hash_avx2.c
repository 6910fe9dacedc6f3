/* xfer_hash_avx2: the system's xxhash.h compiled inline for AVX2 (this
 * file alone gets -mavx2; hash.c calls it only where the CPU has AVX2). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "transport/xfer/hash.h"

#if !defined(__AVX2__)
#error "hash_avx2.c must be built with -mavx2"
#endif

static void *create(void) { return XXH3_createState(); }
static void destroy(void *st) { XXH3_freeState(st); }
static void reset(void *st) { XXH3_64bits_reset(st); }
static void update(void *st, const void *p, size_t n) { XXH3_64bits_update(st, p, n); }
static uint64_t digest(const void *st) { return XXH3_64bits_digest(st); }
static uint64_t hash(const void *p, size_t n) { return XXH3_64bits(p, n); }

const xfer_hash_impl xfer_hash_avx2 = {
    .name = "avx2", .create = create, .destroy = destroy, .reset = reset,
    .update = update, .digest = digest, .hash = hash,
};
