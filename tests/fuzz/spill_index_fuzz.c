/* libFuzzer target for the disk tier's index record (engine/spill_index.h):
 * what a lookup reads from a store a crash, a bad disk or another build may
 * have left. Any input must parse or be refused, never crash or read past
 * the buffer; what parses must write back to exactly the same bytes (the
 * record has one form), and every entry must keep within the record. The
 * first byte picks the store's block_tokens (1..128). Seeds:
 * tests/fuzz/corpus/spill. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/spill_index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t bt = 1 + data[0] % 128;
    const uint8_t *rec = data + 1;
    size_t len = size - 1;
    /* a copy of exactly len bytes, so ASan sees any read past it */
    uint8_t *buf = malloc(len ? len : 1);
    memcpy(buf, rec, len);
    td_spill_index_entry ents[TD_SPILL_IDX_MAX_STATES];
    size_t n = 0;
    if (td_spill_index_parse(buf, len, bt, ents, &n) == TD_OK) {
        if (n > TD_SPILL_IDX_MAX_STATES || len > TD_SPILL_IDX_CAP)
            abort();
        uint8_t *out = malloc(TD_SPILL_IDX_CAP);
        size_t off = TD_SPILL_IDX_HEADER;
        td_spill_index_header_write(out, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            if (ents[i].ntail >= bt || ents[i].tail < buf || ents[i].tail > buf + len)
                abort();
            off += td_spill_index_entry_write(out + off, &ents[i]);
        }
        /* the header's last word is not read: compare around it */
        if (off != len || memcmp(out, buf, 12) || memcmp(out + 16, buf + 16, len - 16))
            abort();
        free(out);
    }
    free(buf);
    return 0;
}
