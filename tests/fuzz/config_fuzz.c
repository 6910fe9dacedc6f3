/* libFuzzer target for the config.json parser (td_v4_config_parse): any
 * input must parse or fail with a message; a config that parses must
 * satisfy the invariants the forward pass and kv-size rely on.
 *
 * Build (not wired into meson; from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     tests/fuzz/config_fuzz.c model/config.c model/kvsize.c common/err.c common/fileio.c \
 *     -ljansson -o config_fuzz
 *   ./config_fuzz -max_len=8192 -dict=... corpus/   # seed: tests/data/configs/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/kvsize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    td_v4_config c;
    char err[256];
    err[0] = '\0';
    td_err rc = td_v4_config_parse(&c, buf, size, err, sizeof(err));
    if (rc == TD_OK) {
        if (c.head_dim <= c.rope_dim || (c.head_dim - c.rope_dim) % 64 ||
            c.n_ratios != c.n_layers + c.n_mtp_layers || c.n_ratios > TD_V4_MAX_LAYERS ||
            c.n_shared_experts != 1 || c.hc_mult < 1 ||
            c.n_activated_experts > c.n_routed_experts)
            abort();
        td_v4_kv_bytes kv;
        rc = td_v4_kv_size(&c, TD_V4_KV_MAX_TOKENS, &kv);   /* may be TD_ERANGE */
        if ((rc == TD_OK && kv.kv_bytes < 0) || (rc && rc != TD_ERANGE))
            abort();
        if (td_v4_kv_size(&c, 1 << 20, &kv) != TD_OK || kv.kv_bytes < 0)
            abort();
    } else if (!err[0]) {
        abort();
    }
    free(buf);
    return 0;
}
