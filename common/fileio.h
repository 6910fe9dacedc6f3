/* Whole-file reads and read-only mappings of outside input. */
#ifndef TD_COMMON_FILEIO_H
#define TD_COMMON_FILEIO_H

#include <stddef.h>
#include "common/err.h"

/* Reads the whole file into a NUL-terminated heap buffer (*out, caller
 * frees with free()). *len excludes the terminator. */
td_err td_file_read(const char *path, char **out, size_t *len,
                    char *errbuf, size_t errlen);

/* A read-only private mapping of a whole file. */
typedef struct {
    void *data;
    size_t size;
} td_map;

td_err td_map_open(td_map *map, const char *path, char *errbuf, size_t errlen);
void td_map_close(td_map *map);

#endif
