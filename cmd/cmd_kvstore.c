/* tandem kvstore stat|verify|gc|dump DIR ...
 *
 * Inspection and maintenance of an on-disk KV store (docs/kvstore.md).
 * stat and dump open the store read-only (a shared lock: they refuse to run
 * while a worker holds it); verify --repair and gc need it to themselves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "kvstore/kvstore.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tandem kvstore stat DIR [--metrics]\n"
            "       tandem kvstore verify DIR [--repair]\n"
            "       tandem kvstore gc DIR\n"
            "       tandem kvstore dump DIR [KEY [SECTION]] [-o FILE]\n"
            "\n"
            "  stat    geometry, space, entries and what recovery found; --metrics\n"
            "          prints the counters in the Prometheus text format\n"
            "  verify  read every block and check its checksum and header; --repair\n"
            "          drops the entries that fail (exit status 1 if any failed)\n"
            "  gc      write a checkpoint, empty the log, delete segment files that\n"
            "          hold no live block\n"
            "  dump    without KEY, list the entries (least recently used first);\n"
            "          with KEY (32 hex digits) and SECTION (default 0), print the\n"
            "          entry and, with -o FILE, write its verified bytes to FILE\n");
}

static int open_store(const char *dir, int read_only, td_kv **kv)
{
    char err[512];
    td_kv_opts o = {.dir = dir, .read_only = read_only};
    td_err r = td_kv_open(kv, &o, err, sizeof(err));
    if (r == TD_EBUSY && read_only) {
        /* A running worker holds it: look at it as a peer does, without the
         * lock, as of now (a value the worker rewrites meanwhile fails its
         * checks rather than show other bytes). */
        o.peer = 1;
        fprintf(stderr, "tandem kvstore: %s is in use by a running process: reading it as "
                "of now\n", dir);
        r = td_kv_open(kv, &o, err, sizeof(err));
    }
    if (r) {
        fprintf(stderr, "tandem kvstore: %s (%s)\n", err, td_strerror(r));
        return 1;
    }
    return 0;
}

static void print_entry(const td_kv_entry_info *i)
{
    char hex[33];
    td_kv_key_hex(i->key, hex);
    printf("%s  section %-4u tokens %-9llu bytes %-12llu blocks %-7u seq %llu%s\n", hex,
           i->section, (unsigned long long)i->tokens, (unsigned long long)i->value_bytes,
           i->blocks, (unsigned long long)i->seq, i->pinned ? "  pinned" : "");
}

static int list_one(const td_kv_entry_info *i, void *arg)
{
    (void)arg;
    print_entry(i);
    return 0;
}

static int do_stat(td_kv *kv, int metrics)
{
    td_kv_stats s;
    td_kv_stats_get(kv, &s);
    if (metrics) {
        td_prom_buf b = {0};
        td_kv_metrics(&s, &b);
        if (b.p)
            fputs(b.p, stdout);
        free(b.p);
        return b.oom ? 1 : 0;
    }
    printf("fingerprint     %016llx\n", (unsigned long long)s.fingerprint);
    printf("block_tokens    %u\n", s.block_tokens);
    printf("block_bytes     %u\n", s.block_bytes);
    printf("segment_bytes   %llu\n", (unsigned long long)s.segment_bytes);
    printf("capacity_bytes  %llu\n", (unsigned long long)s.capacity_bytes);
    printf("bytes_used      %llu\n", (unsigned long long)s.bytes_used);
    printf("bytes_free      %llu\n", (unsigned long long)s.bytes_free);
    printf("segments        %llu\n", (unsigned long long)s.segments);
    printf("entries         %llu\n", (unsigned long long)s.entries);
    printf("pinned          %llu\n", (unsigned long long)s.pinned);
    /* As the checkpoint records the owner's choice (the cost model's knee
     * is per open, not stored). */
    printf("eviction        %s\n", s.eviction == TD_KV_EVICT_LRU ? "lru" : "cost");
    printf("log_records     %llu (replayed at open)\n", (unsigned long long)s.recovered_records);
    printf("torn_log_bytes  %llu\n", (unsigned long long)s.torn_bytes);
    printf("dropped_records %llu\n", (unsigned long long)s.dropped_records);
    printf("direct_io       %s\n", s.direct_io ? "yes" : "no (file system refused O_DIRECT)");
    return 0;
}

static int do_verify(td_kv *kv)
{
    uint64_t ok = 0, bad = 0;
    char err[512] = "";
    td_err r = td_kv_verify(kv, &ok, &bad, err, sizeof(err));
    if (r && r != TD_ECORRUPT) {
        fprintf(stderr, "tandem kvstore verify: %s\n", err);
        return 1;
    }
    if (bad)
        fprintf(stderr, "first failure: %s\n", err);
    printf("%llu entries ok, %llu failed\n", (unsigned long long)ok, (unsigned long long)bad);
    return bad ? 1 : 0;
}

static int do_dump(td_kv *kv, int argc, char **argv, const char *out)
{
    if (argc == 0) {
        td_kv_foreach(kv, list_one, NULL);
        return 0;
    }
    td_kv_key key;
    if (td_kv_key_parse(argv[0], &key)) {
        fprintf(stderr, "tandem kvstore dump: KEY '%s' is not 32 hex digits\n", argv[0]);
        return 2;
    }
    char *end = NULL;
    unsigned long section = argc > 1 ? strtoul(argv[1], &end, 10) : 0;
    if (argc > 1 && (*end || section > UINT32_MAX)) {
        fprintf(stderr, "tandem kvstore dump: SECTION '%s' is not a number\n", argv[1]);
        return 2;
    }
    td_kv_entry_info info;
    if (td_kv_stat_entry(kv, key, (uint32_t)section, &info)) {
        fprintf(stderr, "tandem kvstore dump: no entry %s section %lu\n", argv[0], section);
        return 1;
    }
    print_entry(&info);
    if (!out)
        return 0;
    void *buf = malloc(info.value_bytes ? info.value_bytes : 1);
    if (!buf) {
        fprintf(stderr, "tandem kvstore dump: out of memory for %llu bytes\n",
                (unsigned long long)info.value_bytes);
        return 1;
    }
    size_t len = 0;
    char err[512];
    td_err r = td_kv_get(kv, key, (uint32_t)section, buf, info.value_bytes, &len, err, sizeof(err));
    int rc = 0;
    if (r) {
        fprintf(stderr, "tandem kvstore dump: %s\n", err);
        rc = 1;
    } else {
        FILE *f = fopen(out, "wb");
        if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "tandem kvstore dump: %s: %s\n", out, strerror(errno));
            rc = 1;
        } else {
            printf("wrote %zu verified bytes to %s\n", len, out);
        }
    }
    free(buf);
    return rc;
}

int cmd_kvstore(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1], *out = NULL;
    int repair = 0, metrics = 0, nargs = 0;
    char *args[4];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--repair")) {
            repair = 1;
        } else if (!strcmp(argv[i], "--metrics")) {
            metrics = 1;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' || nargs == 4) {
            fprintf(stderr, "tandem kvstore: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            args[nargs++] = argv[i];
        }
    }
    if (nargs < 1) {
        usage(stderr);
        return 2;
    }
    int is_stat = !strcmp(verb, "stat"), is_verify = !strcmp(verb, "verify");
    int is_gc = !strcmp(verb, "gc"), is_dump = !strcmp(verb, "dump");
    if (!is_stat && !is_verify && !is_gc && !is_dump) {
        fprintf(stderr, "tandem kvstore: unknown command '%s'\n\n", verb);
        usage(stderr);
        return 2;
    }
    if ((!is_dump && nargs != 1) || (is_dump && nargs > 3)) {
        usage(stderr);
        return 2;
    }
    td_kv *kv;
    if (open_store(args[0], !(is_gc || (is_verify && repair)), &kv))
        return 1;
    int rc;
    if (is_stat) {
        rc = do_stat(kv, metrics);
    } else if (is_verify) {
        rc = do_verify(kv);
    } else if (is_gc) {
        char err[512];
        td_kv_stats a, b;
        td_kv_stats_get(kv, &a);
        td_err r = td_kv_gc(kv, err, sizeof(err));
        td_kv_stats_get(kv, &b);
        if (r)
            fprintf(stderr, "tandem kvstore gc: %s\n", err);
        else
            printf("checkpoint written, log emptied, %llu of %llu segment files kept\n",
                   (unsigned long long)b.segments, (unsigned long long)a.segments);
        rc = r ? 1 : 0;
    } else {
        rc = do_dump(kv, nargs - 1, args + 1, out);
    }
    td_kv_close(kv);
    return rc;
}
