/* The hash chain that names a token prefix across processes (KvEvents,
 * docs/disaggregation.md): the prompt is cut into blocks of B tokens;
 *
 *     h[0] = XXH3_64(tokens[0..B), seed = TD_BLOCKHASH_SEED)
 *     h[i] = XXH3_64(tokens[iB..(i+1)B), seed = h[i-1])
 *
 * with tokens as little-endian int32. h[i] names the whole prefix of
 * (i+1)B tokens, so two prompts share a prefix of k full blocks exactly
 * when their first k hashes agree (up to 64-bit collisions). A trailing
 * partial block has no hash. */
#ifndef TD_PROTO_BLOCKHASH_H
#define TD_PROTO_BLOCKHASH_H

#include <stddef.h>
#include <stdint.h>

#define TD_BLOCKHASH_SEED 0x7464626c6b763401ull  /* "tdblkv4" + version 1 */
#define TD_BLOCKHASH_TOKENS 64u                  /* B: tokens per block */

/* Writes the hashes of the n / block full blocks to out (room for that
 * many); returns how many. */
size_t td_block_chain(const int32_t *tokens, size_t n, uint32_t block, uint64_t *out);

#endif
