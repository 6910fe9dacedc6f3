#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Opens a regular file for reading; on success *fd and *st are set. */
static td_err open_regular(const char *path, int *fd, struct stat *st,
                           char *errbuf, size_t errlen)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return td_errf(errbuf, errlen, errno == ENOENT ? TD_ENOENT : TD_EIO,
                       "%s: %s", path, strerror(errno));
    if (fstat(*fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(*fd);
        return td_errf(errbuf, errlen, TD_EIO, "%s: not a regular file", path);
    }
    return TD_OK;
}

td_err td_file_read(const char *path, char **out, size_t *len,
                    char *errbuf, size_t errlen)
{
    int fd;
    struct stat st;
    td_err e = open_regular(path, &fd, &st, errbuf, errlen);
    if (e)
        return e;
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return td_errf(errbuf, errlen, TD_ENOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf);
            close(fd);
            return td_errf(errbuf, errlen, TD_EIO, "%s: short read", path);
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return TD_OK;
}

td_err td_map_open(td_map *map, const char *path, char *errbuf, size_t errlen)
{
    map->data = NULL;
    map->size = 0;
    int fd;
    struct stat st;
    td_err e = open_regular(path, &fd, &st, errbuf, errlen);
    if (e)
        return e;
    if (st.st_size == 0) {
        close(fd);
        return td_errf(errbuf, errlen, TD_ECORRUPT, "%s: empty file", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return td_errf(errbuf, errlen, TD_EIO, "%s: mmap: %s", path, strerror(errno));
    map->data = p;
    map->size = (size_t)st.st_size;
    return TD_OK;
}

void td_map_close(td_map *map)
{
    if (map->data)
        munmap(map->data, map->size);
    map->data = NULL;
    map->size = 0;
}
