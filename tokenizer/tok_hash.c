/* Open-addressing hash tables: byte strings -> int32 for the vocabularies,
 * uint64 -> int32 pair for merges and the added-token trie. Linear probing,
 * load factor at most 1/2, power-of-two sizes. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

uint64_t tok_hash_bytes(const void *p, size_t len)
{
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (len * 0x2545f4914f6cdd1dULL);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ tok_mix64(w)) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, len);
    h = (h ^ tok_mix64(w ^ len)) * 0x9e3779b97f4a7c15ULL;
    return tok_mix64(h);
}

/* ---- strings ----------------------------------------------------------- */

static int strmap_rehash(tok_strmap *m, size_t nslots)
{
    int32_t *slots = malloc(nslots * sizeof *slots);
    if (!slots)
        return -1;
    memset(slots, 0xff, nslots * sizeof *slots);
    size_t mask = nslots - 1;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = m->ents[i].hash & mask;
        while (slots[j] >= 0)
            j = (j + 1) & mask;
        slots[j] = (int32_t)i;
    }
    free(m->slots);
    m->slots = slots;
    m->mask = mask;
    return 0;
}

static bool strmap_find(const tok_strmap *m, const void *key, size_t len,
                        uint32_t hash, size_t *slot)
{
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        int32_t e = m->slots[i];
        if (e < 0) {
            *slot = i;
            return false;
        }
        const struct tok_strent *ent = &m->ents[e];
        if (ent->hash == hash && ent->len == len &&
            memcmp(m->keys + ent->off, key, len) == 0) {
            *slot = i;
            return true;
        }
    }
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

int tok_strmap_put(tok_strmap *m, const void *key, size_t len, int32_t val,
                   int32_t *old)
{
    if (len > UINT32_MAX)
        return -1;
    if (!m->slots && strmap_rehash(m, 64) < 0)
        return -1;
    if (2 * (m->n + 1) > m->mask + 1 && strmap_rehash(m, 2 * (m->mask + 1)) < 0)
        return -1;
    uint32_t hash = (uint32_t)tok_hash_bytes(key, len);
    size_t slot;
    if (strmap_find(m, key, len, hash, &slot)) {
        struct tok_strent *e = &m->ents[m->slots[slot]];
        if (old)
            *old = e->val;
        e->val = val;
        return 1;
    }
    if (m->n >= INT32_MAX - 1 ||
        grow((void **)&m->ents, &m->ents_cap, m->n + 1, sizeof *m->ents) < 0 ||
        grow((void **)&m->keys, &m->keys_cap, m->keys_len + len + 1, 1) < 0)
        return -1;
    struct tok_strent *e = &m->ents[m->n];
    e->off = m->keys_len;
    e->len = (uint32_t)len;
    e->hash = hash;
    e->val = val;
    if (len)
        memcpy(m->keys + m->keys_len, key, len);
    m->keys_len += len;
    m->slots[slot] = (int32_t)m->n++;
    return 0;
}

bool tok_strmap_get(const tok_strmap *m, const void *key, size_t len,
                    int32_t *val)
{
    if (!m->slots)
        return false;
    size_t slot;
    if (!strmap_find(m, key, len, (uint32_t)tok_hash_bytes(key, len), &slot))
        return false;
    *val = m->ents[m->slots[slot]].val;
    return true;
}

void tok_strmap_clear(tok_strmap *m)
{
    if (m->slots)
        memset(m->slots, 0xff, (m->mask + 1) * sizeof *m->slots);
    m->n = 0;
    m->keys_len = 0;
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->keys);
    free(m->ents);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- uint64 keys ------------------------------------------------------- */

static int pairmap_rehash(tok_pairmap *m, size_t nslots)
{
    struct tok_pairent *slots = malloc(nslots * sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < nslots; i++)
        slots[i].key = UINT64_MAX;
    size_t mask = nslots - 1;
    if (m->slots) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->slots[i].key == UINT64_MAX)
                continue;
            size_t j = tok_mix64(m->slots[i].key) & mask;
            while (slots[j].key != UINT64_MAX)
                j = (j + 1) & mask;
            slots[j] = m->slots[i];
        }
    }
    free(m->slots);
    m->slots = slots;
    m->mask = mask;
    return 0;
}

int tok_pairmap_put(tok_pairmap *m, uint64_t key, int32_t a, int32_t b)
{
    if (key == UINT64_MAX)
        return -1;
    if (!m->slots && pairmap_rehash(m, 64) < 0)
        return -1;
    if (2 * (m->n + 1) > m->mask + 1 &&
        pairmap_rehash(m, 2 * (m->mask + 1)) < 0)
        return -1;
    size_t i = tok_mix64(key) & m->mask;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (m->slots[i].key == UINT64_MAX)
        m->n++;
    m->slots[i].key = key;
    m->slots[i].a = a;
    m->slots[i].b = b;
    return 0;
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}
