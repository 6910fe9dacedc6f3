/* The request API of td_http (router/http.h): what a handler reads from a
 * parsed request (method, path, query parameters, headers, body, the
 * parser's verdict) and the per-request callbacks. http_conn.c fills the
 * request as llhttp parses it; these only read it (td_http_req_path cuts
 * the URL at '?' in place). */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "router/http_internal.h"

const char *td_http_req_method(const td_http_req *r) { return r->method; }

const char *td_http_req_path(const td_http_req *r)
{
    /* Cut at '?' in place: the URL is not used whole anywhere. */
    ((td_http_req *)r)->hbuf[r->path_len] = '\0';
    return r->hbuf;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bool td_http_req_query(const td_http_req *r, const char *name, char *buf, size_t cap)
{
    if (!r->has_query || !cap)
        return false;
    size_t nlen = strlen(name);
    for (const char *p = r->hbuf + r->path_len + 1; *p && *p != '#';) {
        size_t n = strcspn(p, "&#");
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        if (klen == nlen && !memcmp(p, name, nlen)) {
            size_t o = 0;
            for (const char *v = eq ? eq + 1 : p + n; v < p + n && o + 1 < cap; v++) {
                int hi, lo;
                if (*v == '%' && v + 2 < p + n && (hi = hex_digit(v[1])) >= 0 &&
                    (lo = hex_digit(v[2])) >= 0) {
                    buf[o++] = (char)(hi * 16 + lo);
                    v += 2;
                } else {
                    buf[o++] = *v == '+' ? ' ' : *v;
                }
            }
            buf[o] = '\0';
            return true;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    return false;
}

const char *td_http_req_header(const td_http_req *r, const char *name)
{
    for (int i = 0; i < r->nhdrs; i++)
        if (!strcasecmp(r->hbuf + r->hdrs[i].name, name))
            return r->hbuf + r->hdrs[i].value;
    return NULL;
}

const char *td_http_req_body(const td_http_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}

void td_http_req_set_handlers(td_http_req *r, void (*on_abort)(void *arg),
                              void (*on_drain)(void *arg), void *arg)
{
    r->on_abort = on_abort;
    r->on_drain = on_drain;
    r->cb_arg = arg;
}

bool td_http_req_aborted(const td_http_req *r) { return r->aborted || !r->conn; }

bool td_http_req_congested(const td_http_req *r)
{
    return r->conn && r->conn->congested;
}

int td_http_req_error(const td_http_req *r, const char **text)
{
    if (text)
        *text = r->err_text ? r->err_text : "";
    return r->err_status;
}
