/* Helpers shared by the kvstore tests: scratch directories, deterministic
 * values, small-geometry options. */
#ifndef TD_TESTS_KVTEST_H
#define TD_TESTS_KVTEST_H

#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvstore/kvstore.h"

#define KVT_FP 0x1234abcd5678ef01ull

static inline int kvt_rm_one(const char *p, const struct stat *s, int flag, struct FTW *f)
{
    (void)s;
    (void)flag;
    (void)f;
    return remove(p);
}

static inline void kvt_rmrf(const char *dir)
{
    nftw(dir, kvt_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory path (not created: td_kv_open creates it). */
static inline void kvt_dir(char *buf, size_t len, const char *tag)
{
    char tmpl[] = "/tmp/td-kvtest-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(buf, len, "%s/%s", d, tag);
}

static inline void kvt_cleanup(const char *dir)
{
    char parent[512];
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    kvt_rmrf(parent);
}

/* Small blocks and segments so tests cross many blocks and segments fast.
 * LRU: the tests written before the cost policy name their victims by
 * recency (evict_test.c sets COST). */
static inline td_kv_opts kvt_opts(const char *dir)
{
    return (td_kv_opts){.dir = dir, .fingerprint = KVT_FP, .create = 1,
                        .block_tokens = 16, .block_bytes = 16384,
                        .segment_bytes = 1u << 20, .capacity_bytes = 8u << 20,
                        .queue_depth = 8, .eviction = TD_KV_EVICT_LRU};
}

/* Damages one byte of a store file (dir/file at off); -1 if it cannot. */
static inline int kvt_flip_byte(const char *dir, const char *file, off_t off)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -1;
    uint8_t c = 0;
    int ok = pread(fd, &c, 1, off) == 1;
    c ^= 0x40;
    ok = ok && pwrite(fd, &c, 1, off) == 1;
    close(fd);
    return ok ? 0 : -1;
}

static inline uint64_t kvt_rng(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Value number `id`, `len` bytes: the first 8 bytes are id (when len >= 8),
 * the rest a stream seeded by id. */
static inline void kvt_fill(uint8_t *buf, size_t len, uint64_t id)
{
    uint64_t s = id * 0x2545f4914f6cdd1dull + 1;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(kvt_rng(&s) >> 56);
    if (len >= 8)
        memcpy(buf, &id, 8);
}

static inline td_kv_key kvt_key(uint64_t n)
{
    uint64_t s = n;
    td_kv_key k = {kvt_rng(&s), kvt_rng(&s)};
    return k;
}

/* Puts value `id` (len bytes of kvt_fill) under kvt_key(id), section 0, as
 * the state after `tokens`; says why on stderr if it fails. */
static inline td_err kvt_put(td_kv *kv, uint64_t id, uint64_t tokens, size_t len)
{
    uint8_t *v = malloc(len ? len : 1);
    kvt_fill(v, len, id);
    char err[512] = "";
    td_err r = td_kv_put(kv, kvt_key(id), 0, tokens, v, len, err, sizeof(err));
    if (r)
        fprintf(stderr, "put %llu: %s\n", (unsigned long long)id, err);
    free(v);
    return r;
}

#endif
