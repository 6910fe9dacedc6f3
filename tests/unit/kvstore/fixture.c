/* Makes a small store for the CLI test: three entries keyed by the chain
 * of a token sequence (state at 16, 32 and 48 tokens), the last pinned.
 * Prints the 48-token key and writes that entry's bytes to OUT.
 * Usage: kvstore_fixture DIR OUT */
#include "tests/unit/kvstore/kvtest.h"

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    td_kv_opts o = kvt_opts(argv[1]);
    td_kv *kv;
    char err[512];
    if (td_kv_open(&kv, &o, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int32_t tokens[48];
    for (int i = 0; i < 48; i++)
        tokens[i] = 1000 + i;
    td_kv_key keys[3];
    td_kv_chain(KVT_FP, 16, tokens, 48, keys, 3);
    static uint8_t v[70000];
    for (uint64_t b = 0; b < 3; b++) {
        kvt_fill(v, sizeof(v) - b * 1000, b);
        if (td_kv_put(kv, keys[b], 0, 16 * (b + 1), v, sizeof(v) - b * 1000, err, sizeof(err))) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }
    td_kv_pin(kv, keys[2], 0, 1, NULL, 0);
    td_kv_close(kv);
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(v, 1, sizeof(v) - 2000, f) != sizeof(v) - 2000 || fclose(f))
        return 1;
    char hex[33];
    td_kv_key_hex(keys[2], hex);
    printf("%s\n", hex);
    return 0;
}
