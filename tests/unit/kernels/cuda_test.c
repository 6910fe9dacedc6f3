/* The CUDA module against the CPU reference. Skips (77) where the module
 * was not built or no GPU is present, as on CI and the 2-core dev machines.
 * argv[1]: path of libtd_cuda.so, or "none". */
#include <stdint.h>
#include <string.h>

#include "kernels/cuda_loader.h"
#include "kernels/kernels.h"
#include "tests/td_test.h"

static const char *module_path;

static void fake_fp8_matches_cpu(void)
{
    char err[256];
    td_cuda *c = NULL;
    if (!strcmp(module_path, "none") || td_cuda_open(&c, module_path, err, sizeof err))
        TD_SKIP("no CUDA module (nvcc absent at build time)");
    int n = 0;
    if (td_cuda_device_count(c, &n, err, sizeof err) || n == 0) {
        td_cuda_close(c);
        TD_SKIP("no GPU");
    }
    enum { N = 64 * 256 };
    static float a[N], b[N];
    uint32_t x = 1;
    for (int i = 0; i < N; i++) {
        x = x * 1664525u + 1013904223u;
        /* bf16 values over a wide range, including tiny and zero blocks */
        float v = ((int)(x >> 9) % 20001 - 10000) * 1e-3f;
        v = ldexpf(v, (int)((i / 64) % 40) - 20);
        a[i] = b[i] = td_bf16_round(v);
    }
    td_fake_fp8(a, N, 64);
    TD_CHECK(td_cuda_fake_fp8(c, b, N, err, sizeof err) == TD_OK);
    TD_CHECK(memcmp(a, b, sizeof a) == 0);
    td_cuda_close(c);
}

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"fake_fp8_matches_cpu", fake_fp8_matches_cpu}, {NULL, NULL}};
    module_path = argc > 1 ? argv[1] : "none";
    return td_test_run(cases, 1, argv);
}
