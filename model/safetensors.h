/* Read-only access to safetensors checkpoints: one `model.safetensors` or a
 * set of shards listed in `model.safetensors.index.json`.
 *
 * Files are mmap'd; tensor data pointers borrow from the mappings and stay
 * valid until td_st_close(). Every header is validated before anything is
 * handed out (header length inside the file, offsets inside the data
 * section and consistent with dtype x shape, no two tensors overlapping,
 * known dtypes), so callers may trust data/nbytes.
 */
#ifndef TD_MODEL_SAFETENSORS_H
#define TD_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TD_ST_MAX_DIMS 8

/* Safetensors dtype codes (the strings in the header). */
typedef enum {
    TD_ST_BOOL,
    TD_ST_U8,
    TD_ST_I8,
    TD_ST_F8_E4M3,
    TD_ST_F8_E5M2,
    TD_ST_F8_E8M0,
    TD_ST_I16,
    TD_ST_U16,
    TD_ST_F16,
    TD_ST_BF16,
    TD_ST_I32,
    TD_ST_U32,
    TD_ST_F32,
    TD_ST_I64,
    TD_ST_U64,
    TD_ST_F64,
    TD_ST_DTYPE_COUNT
} td_st_dtype;

typedef struct {
    const char *name;
    td_st_dtype dtype;
    int ndim;
    int64_t shape[TD_ST_MAX_DIMS];
    const void *data;      /* borrowed from the mapping */
    size_t nbytes;         /* = element size x product(shape) */
    int file;              /* index of the file (shard) holding it */
} td_st_tensor;

typedef struct td_safetensors td_safetensors;

/* Opens a model directory: `model.safetensors` if present, otherwise the
 * shards named by `model.safetensors.index.json` (every weight_map entry
 * must be found in the shard it names). */
td_err td_st_open_dir(td_safetensors **out, const char *dir, char *err, size_t errlen);

/* Opens one .safetensors file. */
td_err td_st_open_file(td_safetensors **out, const char *path, char *err, size_t errlen);

/* Parses a safetensors image already in memory (buf[0..len) = the whole
 * file). Borrows buf: it must outlive the returned object. `label` names
 * the input in error messages. Used by tests and the fuzz target. */
td_err td_st_open_memory(td_safetensors **out, const void *buf, size_t len,
                         const char *label, char *err, size_t errlen);

void td_st_close(td_safetensors *st);

/* NULL when absent. */
const td_st_tensor *td_st_find(const td_safetensors *st, const char *name);

/* All tensors, in header order of each file, files in open order;
 * td_st_at(st, i) for i < td_st_count(st). Pointers are stable, so
 * `t - td_st_at(st, 0)` is a tensor's index. */
size_t td_st_count(const td_safetensors *st);
const td_st_tensor *td_st_at(const td_safetensors *st, size_t i);

/* The path (or label) of file index i, for messages. */
const char *td_st_file_name(const td_safetensors *st, int i);

const char *td_st_dtype_name(td_st_dtype dt);    /* "BF16" */
size_t      td_st_dtype_size(td_st_dtype dt);    /* bytes per element */
/* Returns 0 and sets *dt if name is a known dtype code, -1 otherwise. */
int         td_st_dtype_parse(const char *name, td_st_dtype *dt);

#endif
