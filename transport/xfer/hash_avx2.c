/* xfer_hash_avx2: the system's xxhash.h compiled inline for AVX2 (this
 * file alone gets -mavx2; hash.c calls it only where the CPU has AVX2). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "transport/xfer/hash.h"

#if !defined(__AVX2__)
#error "hash_avx2.c must be built with -mavx2"
#endif

#define XFER_HASH_IMPL xfer_hash_avx2
#define XFER_HASH_NAME "avx2"
#include "transport/xfer/hash_fns.h"
