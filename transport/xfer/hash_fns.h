/* The body of an xfer_hash_impl, over whichever XXH3 its includer compiled
 * in: hash.c (the packaged libxxhash) and hash_avx2.c (xxhash.h inline,
 * built with -mavx2) include it after <xxhash.h>, with XFER_HASH_IMPL the
 * table's name and XFER_HASH_NAME its name. One body, two builds. */
#ifndef XFER_HASH_IMPL
#error "define XFER_HASH_IMPL before including hash_fns.h"
#endif

static void *create(void) { return XXH3_createState(); }
static void destroy(void *st) { XXH3_freeState(st); }
static void reset(void *st) { XXH3_64bits_reset(st); }
static void update(void *st, const void *p, size_t n) { XXH3_64bits_update(st, p, n); }
static uint64_t digest(const void *st) { return XXH3_64bits_digest(st); }
static uint64_t hash(const void *p, size_t n) { return XXH3_64bits(p, n); }

const xfer_hash_impl XFER_HASH_IMPL = {
    .name = XFER_HASH_NAME, .create = create, .destroy = destroy, .reset = reset,
    .update = update, .digest = digest, .hash = hash,
};
