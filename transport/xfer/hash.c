/* See hash.h: the packaged libxxhash, or its AVX2 build where the CPU
 * has AVX2. */
#include <xxhash.h>

#include "transport/xfer/hash.h"

#define XFER_HASH_IMPL xfer_hash_lib
#define XFER_HASH_NAME "libxxhash"
#include "transport/xfer/hash_fns.h"

/* Cheap enough to ask each time (a load of what the CPU reported at
 * start); contexts keep the answer. */
const xfer_hash_impl *xfer_hash(void)
{
#ifdef TD_XFER_HAVE_AVX2
    if (__builtin_cpu_supports("avx2"))
        return &xfer_hash_avx2;
#endif
    return &xfer_hash_lib;
}
