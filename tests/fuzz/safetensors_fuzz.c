/* libFuzzer target for the safetensors header parser (td_st_open_memory):
 * any input must yield TD_OK or an error with a message, never a crash,
 * a leak or an out-of-bounds read; on success every tensor's bytes must
 * lie inside the input.
 *
 * Build (not wired into meson; from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     tests/fuzz/safetensors_fuzz.c model/safetensors.c common/err.c common/fileio.c \
 *     -ljansson -o safetensors_fuzz
 *   ./safetensors_fuzz -max_len=65536 corpus/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so reads past the end are caught by ASan even when
     * libFuzzer's buffer happens to have slack after it. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    td_safetensors *st = NULL;
    char err[256];
    err[0] = '\0';
    td_err rc = td_st_open_memory(&st, buf, size, "fuzz", err, sizeof(err));
    if (rc == TD_OK) {
        for (size_t i = 0; i < td_st_count(st); i++) {
            const td_st_tensor *t = td_st_at(st, i);
            const uint8_t *p = t->data;
            if (p < buf || p + t->nbytes > buf + size || td_st_find(st, t->name) != t)
                abort();
            volatile uint8_t sink = 0;
            if (t->nbytes)
                sink ^= p[0] ^ p[t->nbytes - 1];
            (void)sink;
        }
    } else if (!err[0]) {
        abort();                 /* every failure must say why */
    }
    td_st_close(st);
    free(buf);
    return 0;
}
