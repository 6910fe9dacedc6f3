/* Optional CUDA kernels, loaded at run time from libtd_cuda.so (built only
 * where nvcc works). A process that never asks for them never maps
 * libcudart. Every function fails cleanly when the module or a GPU is absent. */
#ifndef TD_KERNELS_CUDA_LOADER_H
#define TD_KERNELS_CUDA_LOADER_H

#include <stddef.h>

#include "common/err.h"

typedef struct td_cuda td_cuda;

/* path: the module file. TD_ENOENT when it cannot be loaded. */
td_err td_cuda_open(td_cuda **out, const char *path, char *err, size_t errlen);
void   td_cuda_close(td_cuda *c);
/* Number of usable GPUs (0 on a machine without one: not an error). */
td_err td_cuda_device_count(td_cuda *c, int *count, char *err, size_t errlen);
/* FP8 KV simulation (docs/numerics.md, block 64) of x[n] on GPU 0. */
td_err td_cuda_fake_fp8(td_cuda *c, float *x, int n, char *err, size_t errlen);

#endif
