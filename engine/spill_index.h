/* The disk tier's index record (docs/kvstore.md, "The disk tier"): at the
 * store key of a block prefix, the states that extend that block by
 * 0..block_tokens-1 tokens, most recent first. For each: its tokens, the
 * tail tokens past the block, how it is filed (whole, or in token ranges of
 * `range` tokens), the state's length and own checksum, and the key it is
 * filed under. Several per block, because a prompt's end and the same
 * turn's finish usually fall in one block and the next turn may need
 * either. The record comes from disk, so parsing it is a parser of outside
 * input (tests/fuzz/spill_index_fuzz.c). Little-endian:
 *
 *   header   magic "TTIX", version 1, count, zero            (16 bytes)
 *   entry    tokens u64, tail count u32, range tokens u32,
 *            state bytes u64, checksum u64, key lo u64, hi u64 (48 bytes)
 *            then the tail's token ids, int32 each */
#ifndef TD_ENGINE_SPILL_INDEX_H
#define TD_ENGINE_SPILL_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "kvstore/kvstore.h"

enum {
    TD_SPILL_IDX_MAGIC = 0x58495454u,    /* "TTIX" */
    TD_SPILL_IDX_VERSION = 1,
    TD_SPILL_IDX_HEADER = 16,
    TD_SPILL_IDX_ENTRY = 48,
    TD_SPILL_IDX_MAX_STATES = 8,         /* per block; older ones are deleted */
    TD_SPILL_IDX_MAX_TAIL = 128,         /* the store's block_tokens at most */
    TD_SPILL_IDX_CAP = TD_SPILL_IDX_HEADER +
                       TD_SPILL_IDX_MAX_STATES * (TD_SPILL_IDX_ENTRY + TD_SPILL_IDX_MAX_TAIL * 4),
};

typedef struct {
    uint64_t tokens, state_len, sum;
    uint32_t ntail;
    uint32_t range;              /* filed in token ranges of this many (0: whole, section 0) */
    td_kv_key key;
    const uint8_t *tail;         /* ntail int32, inside the record */
} td_spill_index_entry;

/* Parses rec[0..len) of a store with blocks of bt tokens into ents (at
 * most TD_SPILL_IDX_MAX_STATES; tails point into rec); *n their count.
 * TD_ECORRUPT for anything but an exact, well-formed record. */
td_err td_spill_index_parse(const uint8_t *rec, size_t len, uint32_t bt,
                            td_spill_index_entry *ents, size_t *n);
/* Writes the header of a record of count entries at rec. */
void td_spill_index_header_write(uint8_t *rec, uint32_t count);
/* Writes one entry at p; the bytes written. */
size_t td_spill_index_entry_write(uint8_t *p, const td_spill_index_entry *x);

#endif
