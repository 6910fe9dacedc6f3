/* See hash.h: the packaged libxxhash, or its AVX2 build where the CPU
 * has AVX2. */
#include <xxhash.h>

#include "transport/xfer/hash.h"

static void *create(void) { return XXH3_createState(); }
static void destroy(void *st) { XXH3_freeState(st); }
static void reset(void *st) { XXH3_64bits_reset(st); }
static void update(void *st, const void *p, size_t n) { XXH3_64bits_update(st, p, n); }
static uint64_t digest(const void *st) { return XXH3_64bits_digest(st); }
static uint64_t hash(const void *p, size_t n) { return XXH3_64bits(p, n); }

static const xfer_hash_impl lib = {
    .name = "libxxhash", .create = create, .destroy = destroy, .reset = reset,
    .update = update, .digest = digest, .hash = hash,
};

/* Cheap enough to ask each time (a load of what the CPU reported at
 * start); contexts keep the answer. */
const xfer_hash_impl *xfer_hash(void)
{
#ifdef TD_XFER_HAVE_AVX2
    if (__builtin_cpu_supports("avx2"))
        return &xfer_hash_avx2;
#endif
    return &lib;
}
