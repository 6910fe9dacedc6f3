/* The incremental output parser (router/dsml.h).
 *
 * Input accumulates in `buf`; a state machine takes from its front whatever
 * is decided and leaves the rest (a possible marker prefix, a partial
 * header) for the next piece. The grammar, as the model writes it and the
 * official parser reads it (whitespace between elements is allowed here):
 *
 *   {reasoning}</think>{content}\n\n<｜DSML｜tool_calls>
 *   <｜DSML｜invoke name="NAME">
 *   <｜DSML｜parameter name="K" string="true|false">V</｜DSML｜parameter>
 *   </｜DSML｜invoke>
 *   </｜DSML｜tool_calls>
 *
 * Inside a block every consumed byte is also kept in `raw`, so a block that
 * goes wrong can be given back as the text it was.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "router/conv.h"
#include "router/dsml.h"

#define NAME_MAX_BYTES 1024          /* a function or parameter name */
#define JSON_MAX_BYTES (4u << 20)    /* one string="false" value */

static const char THINK_END[] = "</think>";
static const char TC_OPEN[] = "<｜DSML｜tool_calls>";
static const char TC_OPEN_NL[] = "\n<｜DSML｜tool_calls>";
static const char TC_OPEN_NL2[] = "\n\n<｜DSML｜tool_calls>";
static const char TC_CLOSE[] = "</｜DSML｜tool_calls>";
static const char INV_OPEN[] = "<｜DSML｜invoke name=\"";
static const char INV_CLOSE[] = "</｜DSML｜invoke>";
static const char PAR_OPEN[] = "<｜DSML｜parameter name=\"";
static const char PAR_CLOSE[] = "</｜DSML｜parameter>";
static const char ATTR_TRUE[] = "\" string=\"true\">";
static const char ATTR_FALSE[] = "\" string=\"false\">";

typedef enum {
    S_REASON, S_CONTENT, S_PLAIN, S_AFTER,
    S_BLOCK, S_INV_NAME, S_INV_BODY, S_PARAM_NAME, S_PARAM_STR, S_PARAM_JSON,
    S_DONE,
} state;

struct td_dsml {
    td_dsml_opts o;
    td_dsml_cb cb;
    void *arg;
    state st;
    td_tok_bytes buf;            /* input not decided yet */
    td_tok_bytes raw;            /* the current block's consumed text */
    size_t raw_call;             /* where in raw the current invoke began */
    td_tok_bytes val;            /* a JSON value being collected */
    td_tok_bytes frag;           /* scratch for argument fragments */
    char **pnames;               /* the current invoke's parameter names */
    size_t npnames;
    int index;                   /* the current / next call's index */
    bool in_call;                /* CALL_BEGIN reported for `index` */
    td_err err;                  /* sticky allocation failure */
    td_dsml_result r;
};

/* ---- small helpers ----------------------------------------------------------- */

typedef enum { NO, PARTIAL, MATCH } prefix;

/* Whether s starts with lit, or is a proper prefix of it. */
static prefix starts(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    if (n >= l)
        return memcmp(s, lit, l) ? NO : MATCH;
    return memcmp(s, lit, n) ? NO : PARTIAL;
}

/* Length of the longest proper prefix of lit that s ends with. */
static size_t held(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    for (size_t k = l - 1 < n ? l - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, lit, k))
            return k;
    return 0;
}

static const char *find(const char *s, size_t n, const char *lit)
{
    return memmem(s, n, lit, strlen(lit));
}

/* The longest prefix of s[0..n) that does not end inside a UTF-8
 * character that more bytes could complete. */
static size_t utf8_cut(const char *s, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80)
            continue;                /* a continuation byte: look further */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back && c < 0xF8 ? n - back : n;
    }
    return n;
}

static bool is_ws(char c) { return c == '\n' || c == ' ' || c == '\r' || c == '\t'; }

static bool in_block(state st) { return st >= S_BLOCK && st <= S_PARAM_JSON; }

static void emit(td_dsml *p, td_dsml_kind k, const char *s, size_t n)
{
    if (n == 0 && (k == TD_DSML_REASONING || k == TD_DSML_CONTENT || k == TD_DSML_CALL_ARGS))
        return;
    td_dsml_event ev = {k, p->index, s, n};
    p->cb(p->arg, &ev);
}

static void append(td_dsml *p, td_tok_bytes *b, const char *s, size_t n)
{
    if (!p->err && td_conv_bytes_append(b, s, n))
        p->err = TD_ENOMEM;
}

/* Drops n bytes from the front of buf (keeping them in raw inside a block). */
static void consume(td_dsml *p, size_t n)
{
    if (!n)
        return;
    if (in_block(p->st))
        append(p, &p->raw, p->buf.data, n);
    memmove(p->buf.data, p->buf.data + n, p->buf.len - n);
    p->buf.len -= n;
    p->buf.data[p->buf.len] = '\0';
}

static size_t skip_ws(td_dsml *p)
{
    size_t k = 0;
    while (k < p->buf.len && is_ws(p->buf.data[k]))
        k++;
    consume(p, k);
    return k;
}

static void clear_names(td_dsml *p)
{
    for (size_t i = 0; i < p->npnames; i++)
        free(p->pnames[i]);
    p->npnames = 0;
}

/* The block went wrong: abort the call in progress and give the raw text
 * (from the bad call on) back as content, with everything after it. */
static void malformed(td_dsml *p)
{
    if (p->in_call) {
        emit(p, TD_DSML_CALL_ABORT, NULL, 0);
        p->in_call = false;
        p->r.aborted++;
    }
    p->r.malformed = true;
    td_tok_bytes t = {0};
    append(p, &t, p->raw.data + p->raw_call, p->raw.len - p->raw_call);
    append(p, &t, p->buf.data, p->buf.len);
    p->buf.len = 0;
    append(p, &p->buf, t.data, t.len);
    td_tok_bytes_free(&t);
    p->raw.len = 0;
    clear_names(p);
    p->st = S_PLAIN;
}

/* ---- states: each returns true if it made progress ------------------------------ */

static bool st_text(td_dsml *p, td_dsml_kind k, size_t keep)
{
    size_t m = utf8_cut(p->buf.data, p->buf.len - keep);
    emit(p, k, p->buf.data, m);
    consume(p, m);
    return m > 0;
}

static bool st_reason(td_dsml *p)
{
    const char *e = find(p->buf.data, p->buf.len, THINK_END);
    if (!e)
        return st_text(p, TD_DSML_REASONING, held(p->buf.data, p->buf.len, THINK_END));
    size_t at = (size_t)(e - p->buf.data);
    emit(p, TD_DSML_REASONING, p->buf.data, at);
    consume(p, at + strlen(THINK_END));
    p->st = S_CONTENT;
    return true;
}

static bool st_content(td_dsml *p)
{
    if (!p->o.tools)
        return st_text(p, TD_DSML_CONTENT, 0);
    const char *s = p->buf.data;
    size_t n = p->buf.len;
    const char *e = find(s, n, TC_OPEN);
    if (!e) {
        size_t k1 = held(s, n, TC_OPEN), k2 = held(s, n, TC_OPEN_NL),
               k3 = held(s, n, TC_OPEN_NL2);
        size_t keep = k1 > k2 ? k1 : k2;
        return st_text(p, TD_DSML_CONTENT, keep > k3 ? keep : k3);
    }
    /* The "\n\n" the format puts before the block is not content. */
    size_t at = (size_t)(e - s), q = at;
    if (q >= 2 && s[q - 1] == '\n' && s[q - 2] == '\n')
        q -= 2;
    else if (q >= 1 && s[q - 1] == '\n')
        q -= 1;
    emit(p, TD_DSML_CONTENT, s, q);
    consume(p, q);
    p->st = S_BLOCK;
    p->raw.len = 0;
    p->raw_call = 0;
    consume(p, at - q + strlen(TC_OPEN));
    return true;
}

static bool st_after(td_dsml *p)
{
    skip_ws(p);
    if (!p->buf.len)
        return false;
    p->st = S_CONTENT;  /* more text (or another block) after a block */
    return true;
}

static bool st_block(td_dsml *p)
{
    bool moved = skip_ws(p) > 0;
    prefix a = starts(p->buf.data, p->buf.len, INV_OPEN);
    prefix b = starts(p->buf.data, p->buf.len, TC_CLOSE);
    if (a == MATCH) {
        consume(p, strlen(INV_OPEN));
        p->st = S_INV_NAME;
        return true;
    }
    if (b == MATCH) {
        consume(p, strlen(TC_CLOSE));
        p->raw.len = 0;
        p->st = S_AFTER;
        return true;
    }
    if (p->buf.len && a == NO && b == NO) {
        malformed(p);
        return true;
    }
    return moved;
}

/* Reads NAME" from the front of buf into *name_len; false if not complete
 * yet. Sets *bad for names that are empty, too long, or hold '<' or a
 * control character (a line break, a NUL). */
static bool read_name(td_dsml *p, size_t *name_len, bool *bad)
{
    const char *q = memchr(p->buf.data, '"', p->buf.len);
    size_t upto = q ? (size_t)(q - p->buf.data) : p->buf.len;
    *bad = upto > NAME_MAX_BYTES || memchr(p->buf.data, '<', upto) || (q && upto == 0);
    for (size_t i = 0; i < upto && !*bad; i++)
        *bad = (unsigned char)p->buf.data[i] < 0x20;
    *name_len = upto;
    return q != NULL;
}

static bool st_inv_name(td_dsml *p)
{
    size_t n;
    bool bad;
    bool done = read_name(p, &n, &bad);
    if (!bad && done && n + 1 < p->buf.len && p->buf.data[n + 1] != '>')
        bad = true;
    if (bad) {
        malformed(p);
        return true;
    }
    if (!done || n + 1 >= p->buf.len)
        return false;
    p->in_call = true;
    emit(p, TD_DSML_CALL_BEGIN, p->buf.data, n);
    consume(p, n + 2);
    clear_names(p);
    p->st = S_INV_BODY;
    return true;
}

static bool st_inv_body(td_dsml *p)
{
    bool moved = skip_ws(p) > 0;
    prefix a = starts(p->buf.data, p->buf.len, PAR_OPEN);
    prefix b = starts(p->buf.data, p->buf.len, INV_CLOSE);
    if (a == MATCH) {
        consume(p, strlen(PAR_OPEN));
        p->st = S_PARAM_NAME;
        return true;
    }
    if (b == MATCH) {
        consume(p, strlen(INV_CLOSE));
        emit(p, TD_DSML_CALL_ARGS, p->npnames ? "}" : "{}", p->npnames ? 1 : 2);
        emit(p, TD_DSML_CALL_END, NULL, 0);
        p->in_call = false;
        p->index++;
        p->r.calls++;
        p->raw_call = p->raw.len;
        clear_names(p);
        p->st = S_BLOCK;
        return true;
    }
    if (p->buf.len && a == NO && b == NO) {
        malformed(p);
        return true;
    }
    return moved;
}

static bool st_param_name(td_dsml *p)
{
    size_t n;
    bool bad;
    bool done = read_name(p, &n, &bad);
    prefix t = NO, f = NO;
    if (!bad && done) {
        t = starts(p->buf.data + n, p->buf.len - n, ATTR_TRUE);
        f = starts(p->buf.data + n, p->buf.len - n, ATTR_FALSE);
        bad = t == NO && f == NO;
        for (size_t i = 0; !bad && i < p->npnames; i++)
            bad = strlen(p->pnames[i]) == n && !memcmp(p->pnames[i], p->buf.data, n);
    }
    if (bad) {
        malformed(p);  /* includes a repeated name, which the official parser refuses */
        return true;
    }
    if (!done || (t != MATCH && f != MATCH))
        return false;
    char **nn = realloc(p->pnames, (p->npnames + 1) * sizeof *nn);
    char *name = malloc(n + 1);
    if (nn)
        p->pnames = nn;
    if (!nn || !name) {
        free(name);
        p->err = TD_ENOMEM;
        return false;
    }
    memcpy(name, p->buf.data, n);
    name[n] = '\0';
    p->pnames[p->npnames++] = name;
    p->frag.len = 0;
    append(p, &p->frag, p->npnames > 1 ? ", " : "{", p->npnames > 1 ? 2 : 1);
    if (!p->err && td_conv_json_string(&p->frag, name, n))
        p->err = TD_ENOMEM;
    append(p, &p->frag, t == MATCH ? ": \"" : ": ", t == MATCH ? 3 : 2);
    if (!p->err)
        emit(p, TD_DSML_CALL_ARGS, p->frag.data, p->frag.len);
    consume(p, n + strlen(t == MATCH ? ATTR_TRUE : ATTR_FALSE));
    p->val.len = 0;
    p->st = t == MATCH ? S_PARAM_STR : S_PARAM_JSON;
    return true;
}

/* Emits s[0..n) as the inside of a JSON string. */
static void emit_escaped(td_dsml *p, const char *s, size_t n)
{
    if (!n)
        return;
    p->frag.len = 0;
    if (td_conv_json_string(&p->frag, s, n)) {
        p->err = TD_ENOMEM;
        return;
    }
    emit(p, TD_DSML_CALL_ARGS, p->frag.data + 1, p->frag.len - 2);
}

static bool st_param_str(td_dsml *p)
{
    const char *e = find(p->buf.data, p->buf.len, PAR_CLOSE);
    if (!e) {
        size_t m = utf8_cut(p->buf.data, p->buf.len - held(p->buf.data, p->buf.len, PAR_CLOSE));
        emit_escaped(p, p->buf.data, m);
        consume(p, m);
        return m > 0;
    }
    size_t at = (size_t)(e - p->buf.data);
    emit_escaped(p, p->buf.data, at);
    emit(p, TD_DSML_CALL_ARGS, "\"", 1);
    consume(p, at + strlen(PAR_CLOSE));
    p->st = S_INV_BODY;
    return true;
}

static bool st_param_json(td_dsml *p)
{
    const char *e = find(p->buf.data, p->buf.len, PAR_CLOSE);
    size_t take = e ? (size_t)(e - p->buf.data)
                    : p->buf.len - held(p->buf.data, p->buf.len, PAR_CLOSE);
    append(p, &p->val, p->buf.data, take);
    consume(p, take);
    if (p->val.len > JSON_MAX_BYTES) {
        malformed(p);
        return true;
    }
    if (!e)
        return take > 0;
    json_t *v = json_loadb(p->val.data ? p->val.data : "", p->val.len,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!v) {
        malformed(p);
        return true;
    }
    json_decref(v);
    /* The value goes in as written, as the official parser inserts it. */
    emit(p, TD_DSML_CALL_ARGS, p->val.data, p->val.len);
    consume(p, strlen(PAR_CLOSE));
    p->st = S_INV_BODY;
    return true;
}

static bool step(td_dsml *p)
{
    if (p->err || !p->buf.len)
        return false;
    switch (p->st) {
    case S_REASON: return st_reason(p);
    case S_CONTENT: return st_content(p);
    case S_PLAIN: return st_text(p, TD_DSML_CONTENT, 0);
    case S_AFTER: return st_after(p);
    case S_BLOCK: return st_block(p);
    case S_INV_NAME: return st_inv_name(p);
    case S_INV_BODY: return st_inv_body(p);
    case S_PARAM_NAME: return st_param_name(p);
    case S_PARAM_STR: return st_param_str(p);
    case S_PARAM_JSON: return st_param_json(p);
    case S_DONE: return false;
    }
    return false;
}

/* ---- API ----------------------------------------------------------------------------- */

td_err td_dsml_create(td_dsml **out, const td_dsml_opts *opts, td_dsml_cb cb, void *arg)
{
    td_dsml *p = calloc(1, sizeof *p);
    if (!p)
        return TD_ENOMEM;
    p->o = *opts;
    p->cb = cb;
    p->arg = arg;
    p->st = opts->thinking ? S_REASON : S_CONTENT;
    *out = p;
    return TD_OK;
}

void td_dsml_destroy(td_dsml *p)
{
    if (!p)
        return;
    clear_names(p);
    free(p->pnames);
    td_tok_bytes_free(&p->buf);
    td_tok_bytes_free(&p->raw);
    td_tok_bytes_free(&p->val);
    td_tok_bytes_free(&p->frag);
    free(p);
}

td_err td_dsml_feed(td_dsml *p, const char *s, size_t n)
{
    if (p->st == S_DONE || p->err)
        return p->err;
    append(p, &p->buf, s, n);
    while (step(p))
        ;
    return p->err;
}

td_err td_dsml_finish(td_dsml *p, td_dsml_result *r)
{
    if (p->st != S_DONE && !p->err) {
        while (step(p))
            ;
        p->r.in_reasoning = p->st == S_REASON;
        if (in_block(p->st)) {
            p->r.truncated = true;
            malformed(p);
        }
        td_dsml_kind k = p->st == S_REASON ? TD_DSML_REASONING : TD_DSML_CONTENT;
        if (p->st != S_AFTER) {
            size_t m = utf8_cut(p->buf.data, p->buf.len);
            emit(p, k, p->buf.data, m);
            if (m < p->buf.len)
                emit(p, k, "\xEF\xBF\xBD", 3);  /* U+FFFD: a character cut short */
        }
        p->buf.len = 0;
        p->st = S_DONE;
    }
    if (r)
        *r = p->r;
    return p->err;
}
