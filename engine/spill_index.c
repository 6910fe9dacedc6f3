/* The index record's layout: spill_index.h. */
#include <string.h>

#include "engine/spill_index.h"

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }  /* little-endian hosts */
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

td_err td_spill_index_parse(const uint8_t *rec, size_t len, uint32_t bt,
                            td_spill_index_entry *ents, size_t *n)
{
    *n = 0;
    if (len < TD_SPILL_IDX_HEADER || get32(rec) != TD_SPILL_IDX_MAGIC ||
        get32(rec + 4) != TD_SPILL_IDX_VERSION || get32(rec + 8) > TD_SPILL_IDX_MAX_STATES)
        return TD_ECORRUPT;
    uint32_t count = get32(rec + 8);
    size_t off = TD_SPILL_IDX_HEADER;
    for (uint32_t i = 0; i < count; i++) {
        if (len - off < TD_SPILL_IDX_ENTRY)
            return TD_ECORRUPT;
        td_spill_index_entry *x = &ents[i];
        const uint8_t *p = rec + off;
        x->tokens = get64(p);
        x->ntail = get32(p + 8);
        x->range = get32(p + 12);
        x->state_len = get64(p + 16);
        x->sum = get64(p + 24);
        x->key.lo = get64(p + 32);
        x->key.hi = get64(p + 40);
        x->tail = p + TD_SPILL_IDX_ENTRY;
        off += TD_SPILL_IDX_ENTRY;
        if (x->ntail >= bt || x->ntail > TD_SPILL_IDX_MAX_TAIL ||
            len - off < (size_t)x->ntail * 4)
            return TD_ECORRUPT;
        off += (size_t)x->ntail * 4;
    }
    if (off != len)
        return TD_ECORRUPT;
    *n = count;
    return TD_OK;
}

void td_spill_index_header_write(uint8_t *rec, uint32_t count)
{
    put32(rec, TD_SPILL_IDX_MAGIC);
    put32(rec + 4, TD_SPILL_IDX_VERSION);
    put32(rec + 8, count);
    put32(rec + 12, 0);
}

size_t td_spill_index_entry_write(uint8_t *p, const td_spill_index_entry *x)
{
    put64(p, x->tokens);
    put32(p + 8, x->ntail);
    put32(p + 12, x->range);
    put64(p + 16, x->state_len);
    put64(p + 24, x->sum);
    put64(p + 32, x->key.lo);
    put64(p + 40, x->key.hi);
    memcpy(p + TD_SPILL_IDX_ENTRY, x->tail, (size_t)x->ntail * 4);
    return TD_SPILL_IDX_ENTRY + (size_t)x->ntail * 4;
}
