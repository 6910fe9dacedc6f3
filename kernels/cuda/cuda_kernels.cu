// CUDA kernels, built into a loadable module (libtd_cuda.so) only when nvcc
// works; the rest of tandem dlopen()s it (kernels/cuda_loader.c), so a
// `tandem router` never maps libcudart. The forward pass moves here in a
// later issue; for now: device discovery and the FP8 KV simulation, checked
// bit for bit against the CPU reference on machines with a GPU.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

// e4m3fn round-to-nearest-even of |v| <= 448 (same rule as kernels/cpu/generic).
__device__ static uint8_t to_e4m3(float v)
{
    uint32_t u = __float_as_uint(v);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    float a = fabsf(v);
    if (a < 0x1p-10f)           // rounds to zero (half of the smallest subnormal 2^-9)
        return sign;
    int e;
    frexpf(a, &e);              // a = m * 2^e, m in [0.5, 1)
    int exp = e - 1;            // a = 1.f * 2^exp
    if (exp < -6)
        exp = -6;               // subnormal range: quantum 2^-9
    float q = ldexpf(1.0f, exp - 3);
    float r = rintf(a / q) * q; // nearest even multiple of the quantum
    if (r > 448.0f)
        r = 448.0f;
    frexpf(r, &e);
    int rexp = e - 1;
    if (r < 0x1p-6f) {          // subnormal: m * 2^-9
        return (uint8_t)(sign | (uint8_t)(r / 0x1p-9f));
    }
    uint32_t mant = (uint32_t)((r / ldexpf(1.0f, rexp) - 1.0f) * 8.0f);
    return (uint8_t)(sign | (uint8_t)((rexp + 7) << 3) | mant);
}

__device__ static float from_e4m3(uint8_t b)
{
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v = e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf((float)m, -9);
    return s ? -v : v;
}

// One block of 64 values per thread block row: x <- bf16(e4m3(x / s) * s),
// s the power-of-two scale of the block's absolute maximum.
__global__ static void fake_fp8_kernel(float *x, int nblocks)
{
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nblocks)
        return;
    float *v = x + (size_t)b * 64;
    float amax = 0.0f;
    for (int i = 0; i < 64; i++)
        amax = fmaxf(amax, fabsf(v[i]));
    amax = fmaxf(amax, 1e-4f);
    float y = amax * __uint_as_float(0x3B124925u);   // fp32(1/448)
    uint32_t yb = __float_as_uint(y);
    int e = (int)((yb >> 23) & 0xff) - 127 + ((yb & 0x7fffff) != 0);
    float s = ldexpf(1.0f, e), inv = ldexpf(1.0f, -e);
    for (int i = 0; i < 64; i++) {
        float q = fminf(fmaxf(v[i] * inv, -448.0f), 448.0f);
        float r = from_e4m3(to_e4m3(q)) * s;
        uint32_t u = __float_as_uint(r);           // bf16 round to nearest even
        u += 0x7fffu + ((u >> 16) & 1u);
        v[i] = __uint_as_float(u & 0xffff0000u);
    }
}

extern "C" int td_cuda_device_count(int *count, char *err, size_t errlen)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    *count = 0;
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
        return 0;                       // a machine without a GPU: not an error
    if (e != cudaSuccess) {
        snprintf(err, errlen, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        return -1;
    }
    *count = n;
    return 0;
}

// x[n] (n % 64 == 0) in host memory, simulated in place on device 0.
extern "C" int td_cuda_fake_fp8(float *x, int n, char *err, size_t errlen)
{
    float *d = NULL;
    size_t bytes = sizeof(float) * (size_t)n;
    cudaError_t e = cudaMalloc(&d, bytes);
    if (e == cudaSuccess)
        e = cudaMemcpy(d, x, bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        int nb = n / 64;
        fake_fp8_kernel<<<(nb + 127) / 128, 128>>>(d, nb);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess)
        e = cudaMemcpy(x, d, bytes, cudaMemcpyDeviceToHost);
    cudaFree(d);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "cuda: %s", cudaGetErrorString(e));
        return -1;
    }
    return 0;
}
