/* Content addressing: a hash chain over token ids (docs/kvstore.md).
 *
 *   k(-1) = XXH3-128("tandem-kv-chain-v1" | fingerprint | block_tokens)
 *   k(i)  = XXH3-128(k(i-1) | tokens of block i as int32 little-endian)
 *
 * k(i) names the prefix of (i+1) whole blocks: two sequences get the same
 * k(i) exactly when they share that prefix (up to 128-bit collisions), on
 * the same model geometry and block size. */
#include <stdio.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY  /* XXH3_state_t on the stack: no allocation per block */
#include <xxhash.h>

#include "kvstore/kvstore.h"

static void put_key(uint8_t *p, td_kv_key k)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(k.lo >> (8 * i));
        p[8 + i] = (uint8_t)(k.hi >> (8 * i));
    }
}

size_t td_kv_chain(uint64_t fingerprint, uint32_t block_tokens, const int32_t *tokens,
                   size_t n, td_kv_key *keys, size_t cap)
{
    if (block_tokens == 0)
        return 0;
    uint8_t seed[18 + 8 + 4];
    memcpy(seed, "tandem-kv-chain-v1", 18);
    for (int i = 0; i < 8; i++)
        seed[18 + i] = (uint8_t)(fingerprint >> (8 * i));
    for (int i = 0; i < 4; i++)
        seed[26 + i] = (uint8_t)(block_tokens >> (8 * i));
    XXH128_hash_t h = XXH3_128bits(seed, sizeof(seed));
    td_kv_key k = {h.low64, h.high64};
    size_t blocks = n / block_tokens;
    XXH3_state_t st;
    uint8_t buf[256];
    for (size_t b = 0; b < blocks && b < cap; b++) {
        XXH3_128bits_reset(&st);
        put_key(buf, k);
        XXH3_128bits_update(&st, buf, 16);
        const int32_t *t = tokens + b * block_tokens;
        /* Hash as little-endian bytes in batches so the key does not depend
         * on the host's byte order. */
        for (uint32_t i = 0; i < block_tokens;) {
            size_t m = 0;
            for (; i < block_tokens && m + 4 <= sizeof(buf); i++, m += 4) {
                uint32_t v = (uint32_t)t[i];
                buf[m] = (uint8_t)v;
                buf[m + 1] = (uint8_t)(v >> 8);
                buf[m + 2] = (uint8_t)(v >> 16);
                buf[m + 3] = (uint8_t)(v >> 24);
            }
            XXH3_128bits_update(&st, buf, m);
        }
        h = XXH3_128bits_digest(&st);
        k = (td_kv_key){h.low64, h.high64};
        keys[b] = k;
    }
    return blocks;
}

void td_kv_key_hex(td_kv_key key, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)key.hi, (unsigned long long)key.lo);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

td_err td_kv_key_parse(const char *hex, td_kv_key *key)
{
    if (strlen(hex) != 32)
        return TD_EINVAL;
    uint64_t v[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        int d = hexval(hex[i]);
        if (d < 0)
            return TD_EINVAL;
        v[i / 16] = (v[i / 16] << 4) | (uint64_t)d;
    }
    key->hi = v[0];
    key->lo = v[1];
    return TD_OK;
}
