#include "kernels/cuda_loader.h"

#include <dlfcn.h>
#include <stdlib.h>

struct td_cuda {
    void *lib;
    int (*device_count)(int *count, char *err, size_t errlen);
    int (*fake_fp8)(float *x, int n, char *err, size_t errlen);
};

td_err td_cuda_open(td_cuda **out, const char *path, char *err, size_t errlen)
{
    *out = NULL;
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return td_errf(err, errlen, TD_ENOENT, "cuda module %s: %s", path, dlerror());
    td_cuda *c = calloc(1, sizeof *c);
    if (!c) {
        dlclose(lib);
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    }
    c->lib = lib;
    *(void **)&c->device_count = dlsym(lib, "td_cuda_device_count");
    *(void **)&c->fake_fp8 = dlsym(lib, "td_cuda_fake_fp8");
    if (!c->device_count || !c->fake_fp8) {
        td_cuda_close(c);
        return td_errf(err, errlen, TD_EFORMAT, "cuda module %s: missing symbols", path);
    }
    *out = c;
    return TD_OK;
}

void td_cuda_close(td_cuda *c)
{
    if (!c)
        return;
    dlclose(c->lib);
    free(c);
}

td_err td_cuda_device_count(td_cuda *c, int *count, char *err, size_t errlen)
{
    return c->device_count(count, err, errlen) ? TD_EIO : TD_OK;
}

td_err td_cuda_fake_fp8(td_cuda *c, float *x, int n, char *err, size_t errlen)
{
    if (n % 64)
        return td_errf(err, errlen, TD_EINVAL, "n %% 64 != 0");
    return c->fake_fp8(x, n, err, errlen) ? TD_EIO : TD_OK;
}
