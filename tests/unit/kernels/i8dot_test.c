/* td_i8_dot32 (the lightning indexer's integer block dots): the chosen ISA
 * path equals a plain formula, extremes included. */
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "tests/td_test.h"

static void matches_formula(void)
{
    td_kernels_init(-1);
    enum { NQ = 64, D = 128 };
    static int8_t q[NQ * D], k[D];
    static int32_t got[NQ * D / 32], ref[NQ * D / 32];
    uint32_t x = 7;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < NQ * D; i++) {
            x = x * 1664525u + 1013904223u;
            q[i] = (int8_t)((int)(x >> 24) % 255 - 127);   /* [-127, 127] */
        }
        for (int i = 0; i < D; i++) {
            x = x * 1664525u + 1013904223u;
            k[i] = round == 0 ? (int8_t)(i % 2 ? 127 : -127) : (int8_t)((int)(x >> 24) % 255 - 127);
        }
        if (round == 0)
            for (int i = 0; i < NQ * D; i++)
                q[i] = (int8_t)(i % 3 ? -127 : 127);
        td_i8_dot32(q, NQ, k, D, got);
        for (int h = 0; h < NQ; h++)
            for (int b = 0; b < D / 32; b++) {
                int32_t s = 0;
                for (int i = 0; i < 32; i++)
                    s += q[h * D + b * 32 + i] * k[b * 32 + i];
                ref[h * (D / 32) + b] = s;
            }
        TD_CHECK(memcmp(got, ref, sizeof got) == 0);
        td_i8_dot32_generic(q, NQ, k, D, got);
        TD_CHECK(memcmp(got, ref, sizeof got) == 0);
    }
}

TD_TEST_MAIN({"matches_formula", matches_formula})
