/* See blockhash.h. tandem builds for little-endian hosts only, so the
 * tokens' in-memory bytes are the documented ones. */
#include <xxhash.h>

#include "proto/blockhash.h"

size_t td_block_chain(const int32_t *tokens, size_t n, uint32_t block, uint64_t *out)
{
    size_t k = block ? n / block : 0;
    uint64_t h = TD_BLOCKHASH_SEED;
    for (size_t i = 0; i < k; i++) {
        h = XXH3_64bits_withSeed(tokens + i * block, block * sizeof *tokens, h);
        out[i] = h;
    }
    return k;
}
