/* safetensors reader: 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the
 * data section. The input is outside data (a download, a copy gone wrong),
 * so nothing in the header is trusted until checked: a bad file must give
 * a message that names the file and tensor, never a crash. */
#include "model/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"

/* The reference implementation refuses headers above 100 MB; so do we,
 * which also bounds what a corrupt length can make us parse. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef struct {
    char *path;          /* owned; the label for in-memory images */
    const char *base;    /* file name inside the directory (points into path) */
    td_map map;          /* zero for in-memory images */
} st_file;

struct td_safetensors {
    st_file *files;
    int nfiles;
    td_st_tensor *tensors;
    size_t ntensors, captensors;
    uint32_t *slots;     /* open addressing: tensor index + 1, 0 = empty */
    size_t nslots;       /* power of two */
};

static const struct {
    const char *name;
    size_t size;
} dtypes[TD_ST_DTYPE_COUNT] = {
    [TD_ST_BOOL] = {"BOOL", 1},       [TD_ST_U8] = {"U8", 1},
    [TD_ST_I8] = {"I8", 1},           [TD_ST_F8_E4M3] = {"F8_E4M3", 1},
    [TD_ST_F8_E5M2] = {"F8_E5M2", 1}, [TD_ST_F8_E8M0] = {"F8_E8M0", 1},
    [TD_ST_I16] = {"I16", 2},         [TD_ST_U16] = {"U16", 2},
    [TD_ST_F16] = {"F16", 2},         [TD_ST_BF16] = {"BF16", 2},
    [TD_ST_I32] = {"I32", 4},         [TD_ST_U32] = {"U32", 4},
    [TD_ST_F32] = {"F32", 4},         [TD_ST_I64] = {"I64", 8},
    [TD_ST_U64] = {"U64", 8},         [TD_ST_F64] = {"F64", 8},
};

const char *td_st_dtype_name(td_st_dtype dt)
{
    return (unsigned)dt < TD_ST_DTYPE_COUNT ? dtypes[dt].name : "?";
}

size_t td_st_dtype_size(td_st_dtype dt)
{
    return (unsigned)dt < TD_ST_DTYPE_COUNT ? dtypes[dt].size : 0;
}

int td_st_dtype_parse(const char *name, td_st_dtype *dt)
{
    for (int i = 0; i < TD_ST_DTYPE_COUNT; i++)
        if (!strcmp(name, dtypes[i].name)) {
            *dt = (td_st_dtype)i;
            return 0;
        }
    return -1;
}

/* ---- lookup ------------------------------------------------------------ */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

const td_st_tensor *td_st_find(const td_safetensors *st, const char *name)
{
    if (!st || !st->nslots)
        return NULL;
    size_t mask = st->nslots - 1;
    for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        uint32_t s = st->slots[i];
        if (!s)
            return NULL;
        if (!strcmp(st->tensors[s - 1].name, name))
            return &st->tensors[s - 1];
    }
}

/* Builds the table once every file is parsed; a name in two files is an
 * error because lookups would otherwise depend on shard order. */
static td_err build_index(td_safetensors *st, char *err, size_t errlen)
{
    if (st->ntensors >= UINT32_MAX / 2)
        return td_errf(err, errlen, TD_ERANGE, "too many tensors (%zu)", st->ntensors);
    size_t n = 16;
    while (n < 2 * st->ntensors)
        n *= 2;
    st->slots = calloc(n, sizeof(*st->slots));
    if (!st->slots)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory (tensor index)");
    st->nslots = n;
    for (size_t t = 0; t < st->ntensors; t++) {
        const char *name = st->tensors[t].name;
        size_t i = hash_name(name) & (n - 1);
        for (; st->slots[i]; i = (i + 1) & (n - 1)) {
            const td_st_tensor *o = &st->tensors[st->slots[i] - 1];
            if (!strcmp(o->name, name))
                return td_errf(err, errlen, TD_ECORRUPT,
                               "tensor \"%s\" appears in both %s and %s", name,
                               st->files[o->file].path,
                               st->files[st->tensors[t].file].path);
        }
        st->slots[i] = (uint32_t)(t + 1);
    }
    return TD_OK;
}

size_t td_st_count(const td_safetensors *st) { return st->ntensors; }

const td_st_tensor *td_st_at(const td_safetensors *st, size_t i)
{
    return i < st->ntensors ? &st->tensors[i] : NULL;
}

const char *td_st_file_name(const td_safetensors *st, int i)
{
    return i >= 0 && i < st->nfiles ? st->files[i].path : "?";
}

/* ---- header parsing ---------------------------------------------------- */

static int add_file(td_safetensors *st, const char *path, size_t base_off)
{
    st_file *f = realloc(st->files, (size_t)(st->nfiles + 1) * sizeof(*f));
    if (!f)
        return -1;
    st->files = f;
    f = &st->files[st->nfiles];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (!f->path)
        return -1;
    f->base = f->path + base_off;
    st->nfiles++;
    return 0;
}

static td_st_tensor *add_tensor(td_safetensors *st)
{
    if (st->ntensors == st->captensors) {
        size_t cap = st->captensors ? 2 * st->captensors : 64;
        td_st_tensor *t = realloc(st->tensors, cap * sizeof(*t));
        if (!t)
            return NULL;
        st->tensors = t;
        st->captensors = cap;
    }
    td_st_tensor *t = &st->tensors[st->ntensors++];
    memset(t, 0, sizeof(*t));
    return t;
}

typedef struct {
    uint64_t begin, end;
    size_t idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static void fmt_shape(char *buf, size_t len, const td_st_tensor *t)
{
    size_t off = 0;
    off += (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < t->ndim && off < len; d++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", d ? ", " : "",
                                (long long)t->shape[d]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

/* Parses one tensor entry of the header and appends it. */
static td_err parse_entry(td_safetensors *st, int file, const char *label,
                          const char *name, json_t *v, const uint8_t *data,
                          uint64_t data_size, uint64_t offs[2],
                          char *err, size_t errlen)
{
    if (!json_is_object(v))
        return td_errf(err, errlen, TD_ECORRUPT,
                       "%s: tensor \"%s\": header entry is not an object", label, name);
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return td_errf(err, errlen, TD_ECORRUPT,
                       "%s: tensor \"%s\": header entry needs dtype (string), "
                       "shape (array) and data_offsets (array)", label, name);
    td_st_dtype dt;
    if (td_st_dtype_parse(json_string_value(jd), &dt) != 0)
        return td_errf(err, errlen, TD_EFORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"",
                       label, name, json_string_value(jd));
    size_t ndim = json_array_size(js);
    if (ndim > TD_ST_MAX_DIMS)
        return td_errf(err, errlen, TD_EFORMAT, "%s: tensor \"%s\": %zu dimensions (max %d)",
                       label, name, ndim, TD_ST_MAX_DIMS);
    if (json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return td_errf(err, errlen, TD_ECORRUPT,
                       "%s: tensor \"%s\": data_offsets must be two integers", label, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return td_errf(err, errlen, TD_ECORRUPT,
                       "%s: tensor \"%s\": data_offsets [%lld, %lld] are not an interval",
                       label, name, (long long)b, (long long)e);
    if ((uint64_t)e > data_size)
        return td_errf(err, errlen, TD_ECORRUPT,
                       "%s: tensor \"%s\": data_offsets [%lld, %lld] beyond the data "
                       "section (%llu bytes; file truncated?)", label, name,
                       (long long)b, (long long)e, (unsigned long long)data_size);

    td_st_tensor *t = add_tensor(st);
    if (!t)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    t->name = strdup(name);
    if (!t->name)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    t->dtype = dt;
    t->ndim = (int)ndim;
    t->file = file;
    uint64_t nbytes = td_st_dtype_size(dt);
    int overflow = 0;
    for (size_t d = 0; d < ndim; d++) {
        json_t *jx = json_array_get(js, d);
        if (!json_is_integer(jx) || json_integer_value(jx) < 0)
            return td_errf(err, errlen, TD_ECORRUPT,
                           "%s: tensor \"%s\": shape entries must be non-negative integers",
                           label, name);
        uint64_t x = (uint64_t)json_integer_value(jx);
        t->shape[d] = (int64_t)x;
        if (x && nbytes > UINT64_MAX / x)
            overflow = 1;
        else
            nbytes *= x;
    }
    char sh[128];
    fmt_shape(sh, sizeof(sh), t);
    if (overflow || nbytes != (uint64_t)(e - b))
        return td_errf(err, errlen, TD_ECORRUPT,
                       "%s: tensor \"%s\": data_offsets [%lld, %lld] hold %llu bytes, "
                       "but %s %s needs %s%llu", label, name, (long long)b, (long long)e,
                       (unsigned long long)(e - b), td_st_dtype_name(dt), sh,
                       overflow ? "more than " : "",
                       overflow ? (unsigned long long)UINT64_MAX : (unsigned long long)nbytes);
    t->nbytes = (size_t)nbytes;
    t->data = data + b;
    offs[0] = (uint64_t)b;
    offs[1] = (uint64_t)e;
    return TD_OK;
}

/* Parses the image buf[0..len) of file index `file`, appending tensors. */
static td_err parse_image(td_safetensors *st, int file, const uint8_t *buf, size_t len,
                          char *err, size_t errlen)
{
    const char *label = st->files[file].path;
    if (len < 8)
        return td_errf(err, errlen, TD_ECORRUPT,
                       "%s: truncated file (%zu bytes, no room for the header length)",
                       label, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > len - 8)
        return td_errf(err, errlen, TD_ECORRUPT,
                       "%s: header length %llu beyond the end of the file (%zu bytes)",
                       label, (unsigned long long)hlen, len);
    if (hlen > ST_MAX_HEADER)
        return td_errf(err, errlen, TD_ECORRUPT, "%s: header length %llu above the %llu limit",
                       label, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_size = (uint64_t)len - 8 - hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return td_errf(err, errlen, TD_ECORRUPT, "%s: header is not valid JSON: %s (at byte %d)",
                       label, jerr.text, jerr.position);
    td_err rc = TD_OK;
    span *spans = NULL;
    size_t nspans = 0;
    if (!json_is_object(root)) {
        rc = td_errf(err, errlen, TD_ECORRUPT, "%s: header is not a JSON object", label);
        goto out;
    }
    spans = malloc((json_object_size(root) + 1) * sizeof(*spans));
    if (!spans) {
        rc = td_errf(err, errlen, TD_ENOMEM, "out of memory");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) {
                rc = td_errf(err, errlen, TD_ECORRUPT, "%s: __metadata__ is not an object", label);
                goto out;
            }
            continue;
        }
        uint64_t offs[2] = {0, 0};
        rc = parse_entry(st, file, label, key, v, data, data_size, offs, err, errlen);
        if (rc)
            goto out;
        if (offs[1] > offs[0])
            spans[nspans++] = (span){offs[0], offs[1], st->ntensors - 1};
    }
    /* Overlapping tensors would alias: writing tools never produce them,
     * so they mean a corrupt or hand-crafted file. */
    qsort(spans, nspans, sizeof(*spans), span_cmp);
    for (size_t i = 1; i < nspans; i++)
        if (spans[i].begin < spans[i - 1].end) {
            rc = td_errf(err, errlen, TD_ECORRUPT, "%s: tensors \"%s\" and \"%s\" overlap",
                         label, st->tensors[spans[i - 1].idx].name,
                         st->tensors[spans[i].idx].name);
            goto out;
        }
out:
    free(spans);
    json_decref(root);
    return rc;
}

/* ---- opening ----------------------------------------------------------- */

static td_safetensors *st_new(void)
{
    return calloc(1, sizeof(td_safetensors));
}

void td_st_close(td_safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->nfiles; i++) {
        td_map_close(&st->files[i].map);
        free(st->files[i].path);
    }
    for (size_t t = 0; t < st->ntensors; t++)
        free((char *)st->tensors[t].name);
    free(st->files);
    free(st->tensors);
    free(st->slots);
    free(st);
}

td_err td_st_open_memory(td_safetensors **out, const void *buf, size_t len,
                         const char *label, char *err, size_t errlen)
{
    *out = NULL;
    td_safetensors *st = st_new();
    if (!st || add_file(st, label ? label : "(memory)", 0)) {
        td_st_close(st);
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    }
    td_err rc = parse_image(st, 0, buf, len, err, errlen);
    if (!rc)
        rc = build_index(st, err, errlen);
    if (rc) {
        td_st_close(st);
        return rc;
    }
    *out = st;
    return TD_OK;
}

/* Maps path as file index st->nfiles and parses it. */
static td_err open_one(td_safetensors *st, const char *path, size_t base_off,
                       char *err, size_t errlen)
{
    if (add_file(st, path, base_off))
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    st_file *f = &st->files[st->nfiles - 1];
    td_err rc = td_map_open(&f->map, path, err, errlen);
    if (rc)
        return rc;
    return parse_image(st, st->nfiles - 1, f->map.data, f->map.size, err, errlen);
}

td_err td_st_open_file(td_safetensors **out, const char *path, char *err, size_t errlen)
{
    *out = NULL;
    td_safetensors *st = st_new();
    if (!st)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    const char *slash = strrchr(path, '/');
    td_err rc = open_one(st, path, slash ? (size_t)(slash + 1 - path) : 0, err, errlen);
    if (!rc)
        rc = build_index(st, err, errlen);
    if (rc) {
        td_st_close(st);
        return rc;
    }
    *out = st;
    return TD_OK;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A shard name from the index must stay inside the model directory. */
static int safe_shard_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static td_err open_sharded(td_safetensors *st, const char *dir, const char *index_path,
                           char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    td_err rc = td_file_read(index_path, &text, &len, err, errlen);
    if (rc)
        return rc;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return td_errf(err, errlen, TD_ECORRUPT, "%s: not valid JSON: %s (line %d)",
                       index_path, jerr.text, jerr.line);
    json_t *map = json_object_get(root, "weight_map");
    const char *name;
    json_t *v;
    char path[4096];
    if (!json_is_object(map)) {
        rc = td_errf(err, errlen, TD_ECORRUPT, "%s: no \"weight_map\" object", index_path);
        goto out;
    }
    /* Open every shard named, once, in order of first mention. */
    json_object_foreach(map, name, v) {
        const char *shard = json_string_value(v);
        if (!shard || !safe_shard_name(shard)) {
            rc = td_errf(err, errlen, TD_ECORRUPT,
                         "%s: weight_map[\"%s\"] must be a file name in the model directory",
                         index_path, name);
            goto out;
        }
        int seen = 0;
        for (int i = 0; i < st->nfiles && !seen; i++)
            seen = !strcmp(st->files[i].base, shard);
        if (seen)
            continue;
        int n = snprintf(path, sizeof(path), "%s/%s", dir, shard);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            rc = td_errf(err, errlen, TD_ERANGE, "%s/%s: path too long", dir, shard);
            goto out;
        }
        rc = open_one(st, path, strlen(dir) + 1, err, errlen);
        if (rc)
            goto out;
    }
    rc = build_index(st, err, errlen);
    if (rc)
        goto out;
    json_object_foreach(map, name, v) {
        const td_st_tensor *t = td_st_find(st, name);
        if (!t || strcmp(st->files[t->file].base, json_string_value(v))) {
            rc = td_errf(err, errlen, TD_ECORRUPT, "%s: tensor \"%s\" is listed in %s but not there",
                         index_path, name, json_string_value(v));
            goto out;
        }
    }
out:
    json_decref(root);
    return rc;
}

td_err td_st_open_dir(td_safetensors **out, const char *dir, char *err, size_t errlen)
{
    *out = NULL;
    char single[4096], index[4096];
    int n1 = snprintf(single, sizeof(single), "%s/model.safetensors", dir);
    int n2 = snprintf(index, sizeof(index), "%s/model.safetensors.index.json", dir);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(single) || (size_t)n2 >= sizeof(index))
        return td_errf(err, errlen, TD_ERANGE, "%s: path too long", dir);
    if (file_exists(single))
        return td_st_open_file(out, single, err, errlen);
    if (!file_exists(index))
        return td_errf(err, errlen, TD_ENOENT,
                       "%s: neither model.safetensors nor model.safetensors.index.json", dir);
    td_safetensors *st = st_new();
    if (!st)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    td_err rc = open_sharded(st, dir, index, err, errlen);
    if (rc) {
        td_st_close(st);
        return rc;
    }
    *out = st;
    return TD_OK;
}
