/* The JSON text the official encoder writes (router/conv.h): Python's
 * json.dumps with ensure_ascii=False and the default separators ", " and
 * ": ", floats in repr() form. Tool schemas and call arguments in the V4
 * prompt are this text, so the prompt's bytes (and its tokens) depend on
 * it exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/conv.h"

int td_conv_bytes_append(td_tok_bytes *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 128;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *nd = realloc(b->data, nc);
        if (!nd)
            return -1;
        b->data = nd;
        b->cap = nc;
    }
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int puts_(td_tok_bytes *b, const char *s) { return td_conv_bytes_append(b, s, strlen(s)); }

int td_conv_json_string(td_tok_bytes *b, const char *s, size_t n)
{
    if (puts_(b, "\""))
        return -1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        if (td_conv_bytes_append(b, s + run, i - run))
            return -1;
        char esc[8];
        switch (ch) {
        case '"': strcpy(esc, "\\\""); break;
        case '\\': strcpy(esc, "\\\\"); break;
        case '\n': strcpy(esc, "\\n"); break;
        case '\r': strcpy(esc, "\\r"); break;
        case '\t': strcpy(esc, "\\t"); break;
        case '\b': strcpy(esc, "\\b"); break;
        case '\f': strcpy(esc, "\\f"); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", ch); break;
        }
        if (puts_(b, esc))
            return -1;
        run = i + 1;
    }
    if (td_conv_bytes_append(b, s + run, n - run))
        return -1;
    return puts_(b, "\"");
}

/* Python's repr(float): the shortest digits that read back to the same
 * double, in fixed notation when the decimal exponent is in [-4, 16),
 * otherwise as d.ddde±XX. */
static int py_float(td_tok_bytes *b, double d)
{
    char buf[64];
    if (d == 0)
        return puts_(b, signbit(d) ? "-0.0" : "0.0");
    int prec;
    for (prec = 1; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
    char digits[32];
    int nd = 0;
    const char *p = buf;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int decpt = exp10 + 1;  /* value = 0.DIGITS x 10^decpt */
    char out[80];
    int o = 0;
    if (neg)
        out[o++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -decpt; i++)
                out[o++] = '0';
            for (int i = 0; i < nd; i++)
                out[o++] = digits[i];
        } else if (decpt >= nd) {
            for (int i = 0; i < nd; i++)
                out[o++] = digits[i];
            for (int i = nd; i < decpt; i++)
                out[o++] = '0';
            out[o++] = '.';
            out[o++] = '0';
        } else {
            for (int i = 0; i < nd; i++) {
                if (i == decpt)
                    out[o++] = '.';
                out[o++] = digits[i];
            }
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++)
                out[o++] = digits[i];
        }
        snprintf(out + o, sizeof out - (size_t)o, "e%c%02d", exp10 < 0 ? '-' : '+',
                 exp10 < 0 ? -exp10 : exp10);
    }
    return puts_(b, out);
}

int td_conv_json_dump(td_tok_bytes *b, const json_t *v)
{
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        bool first = true;
        if (puts_(b, "{"))
            return -1;
        /* jansson keeps insertion order, as Python dicts do. */
        json_object_foreach((json_t *)v, k, x) {
            if ((!first && puts_(b, ", ")) || td_conv_json_string(b, k, strlen(k)) ||
                puts_(b, ": ") || td_conv_json_dump(b, x))
                return -1;
            first = false;
        }
        return puts_(b, "}");
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        if (puts_(b, "["))
            return -1;
        json_array_foreach(v, i, x)
            if ((i && puts_(b, ", ")) || td_conv_json_dump(b, x))
                return -1;
        return puts_(b, "]");
    }
    case JSON_STRING:
        return td_conv_json_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return puts_(b, num);
    case JSON_REAL:
        return py_float(b, json_real_value(v));
    case JSON_TRUE:
        return puts_(b, "true");
    case JSON_FALSE:
        return puts_(b, "false");
    case JSON_NULL:
    default:
        return puts_(b, "null");
    }
}
