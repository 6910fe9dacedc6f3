/* Compiling JSON Schema (the subset in docs/constrain.md) into grammar
 * nodes. Every keyword outside the subset is refused by name, so a request
 * never gets output that only looks constrained. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/cons_int.h"

/* Room for one more element at arr[n]; false if it cannot be had. */
bool cons_grow(void *arrp, int32_t n, int32_t *cap, size_t elem)
{
    void **arr = arrp;
    if (n < *cap)
        return true;
    int32_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = nc;
    return true;
}

#define GROW(arr, n, cap, failv)                                             \
    do {                                                                     \
        if (!cons_grow(&(arr), (n), &(cap), sizeof *(arr)))                  \
            return (failv);                                                  \
    } while (0)

static const char *const ANNOTATIONS[] = {
    "description", "title", "default", "examples", "$schema", "$id", "$comment", "$defs",
    "definitions", NULL,
};
static const char *const KEYWORDS[] = {
    "type", "properties", "required", "additionalProperties", "items", "enum",
    "const", "anyOf", "$ref", NULL,
};

static bool in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k))
            return true;
    return false;
}

td_err cons_grammar_new(td_cons_grammar **out)
{
    td_cons_grammar *g = calloc(1, sizeof *g);
    if (!g)
        return TD_ENOMEM;
    g->ctn = 64;
    g->tn = calloc((size_t)g->ctn, sizeof *g->tn);
    if (!g->tn) {
        free(g);
        return TD_ENOMEM;
    }
    g->ntn = 1;  /* node 0: a dummy, so a frame's 0 means "at the root" */
    g->tn[0] = (cons_tnode){-1, 0, 0, -1, 0};
    cons_kmp_init(g->kmp);
    *out = g;
    return TD_OK;
}

void td_cons_grammar_destroy(td_cons_grammar *g)
{
    if (!g)
        return;
    free(g->nodes);
    free(g->tn);
    free(g->props);
    free(g->alts);
    free(g->tools);
    free(g);
}

int32_t cons_node_new(cons_cc *x, cons_kind kind)
{
    td_cons_grammar *g = x->g;
    GROW(g->nodes, g->nnodes, g->cnodes, -1);
    g->nodes[g->nnodes] = (cons_node){.kind = (uint8_t)kind, .trie = 0, .items = -1,
                                      .first = 0, .count = 0};
    return g->nnodes++;
}

static int32_t tnode_new(td_cons_grammar *g, int sym)
{
    GROW(g->tn, g->ntn, g->ctn, -1);
    g->tn[g->ntn] = (cons_tnode){(int16_t)sym, 0, 0, -1, 0};
    return g->ntn++;
}

int32_t cons_trie_new(cons_cc *x) { return tnode_new(x->g, -1); }

td_err cons_trie_add(cons_cc *x, int32_t root, const char *s, size_t n, int32_t term)
{
    td_cons_grammar *g = x->g;
    uint64_t bit = 1ull << (term < 63 ? term : 63);
    int32_t cur = root;
    g->tn[cur].sub |= bit;
    for (size_t i = 0; i < n; i++) {
        int sym = (unsigned char)s[i] == 1 ? SYM_DSML : (unsigned char)s[i];
        int32_t c = g->tn[cur].child, last = 0;
        while (c > 0 && g->tn[c].sym != sym) {
            last = c;
            c = g->tn[c].next;
        }
        if (c <= 0) {
            c = tnode_new(g, sym);
            if (c < 0)
                return TD_ENOMEM;
            if (last)
                g->tn[last].next = c;
            else
                g->tn[cur].child = c;
        }
        cur = c;
        g->tn[cur].sub |= bit;
    }
    if (g->tn[cur].term < 0)
        g->tn[cur].term = term;
    return TD_OK;
}

/* ---- first sets ------------------------------------------------------------- */

static void fs_add(uint64_t *fs, int c) { fs[c >> 6] |= 1ull << (c & 63); }

static void fs_of(td_cons_grammar *g, int32_t i, int guard)
{
    cons_node *n = &g->nodes[i];
    memset(n->fs, 0, sizeof n->fs);
    switch ((cons_kind)n->kind) {
    case K_OBJECT: fs_add(n->fs, '{'); break;
    case K_ARRAY: fs_add(n->fs, '['); break;
    case K_STRING: fs_add(n->fs, '"'); break;
    case K_NUMBER:
    case K_INTEGER:
        fs_add(n->fs, '-');
        for (int c = '0'; c <= '9'; c++)
            fs_add(n->fs, c);
        break;
    case K_LIT:
        for (int32_t c = g->tn[n->trie].child; c > 0; c = g->tn[c].next)
            if (g->tn[c].sym < 256)
                fs_add(n->fs, g->tn[c].sym);
        break;
    case K_ANYOF:
        for (int32_t k = 0; k < n->count && guard < 64; k++) {
            int32_t a = g->alts[n->first + k];
            fs_of(g, a, guard + 1);
            for (int w = 0; w < 4; w++)
                g->nodes[i].fs[w] |= g->nodes[a].fs[w];
        }
        break;
    case K_RAWSTR:
        for (int c = 1; c < 256; c++)
            fs_add(n->fs, c);
        break;
    default:
        break;
    }
}

void cons_first_sets(td_cons_grammar *g)
{
    for (int32_t i = 0; i < g->nnodes; i++)
        fs_of(g, i, 0);
}

/* ---- compiling -------------------------------------------------------------- */

/* Fills the error buffer with a message saying where in the schema. */
#define FAIL(x, e, ...) td_errf((x)->err, (x)->errlen, (e), __VA_ARGS__)

static int32_t lit_node(cons_cc *x, int32_t *trie)
{
    int32_t n = cons_node_new(x, K_LIT);
    int32_t t = cons_trie_new(x);
    if (n < 0 || t < 0)
        return -1;
    x->g->nodes[n].trie = t;
    *trie = t;
    return n;
}

/* The node of any JSON value: anyOf(object, array, string, number, literal). */
static int32_t any_node(cons_cc *x, bool dsml)
{
    if (x->any[dsml] >= 0)
        return x->any[dsml];
    td_cons_grammar *g = x->g;
    int32_t any = cons_node_new(x, K_ANYOF);
    int32_t obj = cons_node_new(x, K_OBJECT);
    int32_t arr = cons_node_new(x, K_ARRAY);
    int32_t str = cons_node_new(x, K_STRING);
    int32_t num = cons_node_new(x, K_NUMBER);
    int32_t t = 0, lit = lit_node(x, &t);
    if (any < 0 || obj < 0 || arr < 0 || str < 0 || num < 0 || lit < 0 ||
        cons_trie_add(x, t, "true", 4, 0) || cons_trie_add(x, t, "false", 5, 1) ||
        cons_trie_add(x, t, "null", 4, 2))
        return -1;
    g->nodes[str].dsml = dsml;
    g->nodes[obj].additional = true;
    g->nodes[obj].first = str;
    g->nodes[obj].items = any;
    g->nodes[arr].items = any;
    int32_t alts[5] = {obj, arr, str, num, lit};
    g->nodes[any].first = g->nalts;
    g->nodes[any].count = 5;
    for (int i = 0; i < 5; i++) {
        GROW(g->alts, g->nalts, g->calts, -1);
        g->alts[g->nalts++] = alts[i];
    }
    x->any[dsml] = any;
    return any;
}

/* Makes an anyOf of alts[0..n) (n > 1), refusing alternatives that can
 * start with the same byte: the matcher picks one by its first byte. */
static td_err anyof_node(cons_cc *x, const int32_t *alts, int32_t n, const char *path,
                         int32_t *out)
{
    td_cons_grammar *g = x->g;
    uint64_t seen[4] = {0};
    for (int32_t i = 0; i < n; i++) {
        fs_of(g, alts[i], 0);
        for (int w = 0; w < 4; w++) {
            uint64_t both = seen[w] & g->nodes[alts[i]].fs[w];
            if (both) {
                char c[8];
                int b = w * 64 + __builtin_ctzll(both);
                snprintf(c, sizeof c, b >= 0x20 && b < 0x7f ? "'%c'" : "0x%02x", b);
                return FAIL(x, TD_ENOTSUP,
                            "schema at %s: alternatives that can both start with %s "
                            "(anyOf / type lists must differ in type)", path, c);
            }
            seen[w] |= g->nodes[alts[i]].fs[w];
        }
    }
    int32_t a = cons_node_new(x, K_ANYOF);
    if (a < 0)
        return TD_ENOMEM;
    g->nodes[a].first = g->nalts;
    g->nodes[a].count = n;
    for (int32_t i = 0; i < n; i++) {
        GROW(g->alts, g->nalts, g->calts, TD_ENOMEM);
        g->alts[g->nalts++] = alts[i];
    }
    *out = a;
    return TD_OK;
}

static td_err enum_node(cons_cc *x, json_t *vals, int mode, const char *path, int32_t *out)
{
    int32_t t = 0, n = -1;
    size_t i, kept = 0;
    json_t *v;
    json_array_foreach(vals, i, v) {
        bool str = json_is_string(v);
        if ((mode == MODE_RAW && !str) || (mode == MODE_NOSTR && str))
            continue;
        if (n < 0 && (n = lit_node(x, &t)) < 0)
            return TD_ENOMEM;
        td_err e;
        if (mode == MODE_RAW) {
            e = cons_trie_add(x, t, json_string_value(v), json_string_length(v), (int32_t)kept);
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!s)
                return TD_ENOMEM;
            e = cons_trie_add(x, t, s, strlen(s), (int32_t)kept);
            free(s);
        }
        if (e)
            return e;
        kept++;
    }
    if (!kept && mode == MODE_JSON)
        return FAIL(x, TD_EINVAL, "schema at %s: enum is empty", path);
    *out = n;
    return TD_OK;
}

static td_err object_node(cons_cc *x, json_t *s, bool dsml, int depth, const char *path,
                          int32_t *out)
{
    td_cons_grammar *g = x->g;
    json_t *props = json_object_get(s, "properties");
    json_t *req = json_object_get(s, "required");
    json_t *add = json_object_get(s, "additionalProperties");
    char sub[512];
    if (props && !json_is_object(props))
        return FAIL(x, TD_EINVAL, "schema at %s: properties is not an object", path);
    if (req && !json_is_array(req))
        return FAIL(x, TD_EINVAL, "schema at %s: required is not an array", path);
    size_t np = props ? json_object_size(props) : 0;
    if (np > CONS_MAX_PROPS)
        return FAIL(x, TD_ENOTSUP, "schema at %s: more than %d properties", path,
                    CONS_MAX_PROPS);
    int32_t o = cons_node_new(x, K_OBJECT);
    if (o < 0)
        return TD_ENOMEM;
    if (np == 0 && !json_is_false(add)) {
        /* Any keys: additionalProperties absent, true, or a schema. */
        int32_t key = cons_node_new(x, K_STRING), val;
        if (key < 0)
            return TD_ENOMEM;
        g->nodes[key].dsml = dsml;
        if (add && !json_is_true(add)) {
            snprintf(sub, sizeof sub, "%s/additionalProperties", path);
            td_err e = cons_compile(x, add, MODE_JSON, dsml, depth + 1, sub, &val);
            if (e)
                return e;
        } else if ((val = any_node(x, dsml)) < 0) {
            return TD_ENOMEM;
        }
        g->nodes[o].additional = true;
        g->nodes[o].first = key;
        g->nodes[o].items = val;
        *out = o;
        return TD_OK;
    }
    if (add && !json_is_false(add))
        return FAIL(x, TD_ENOTSUP, "schema at %s: additionalProperties "
                    "must be false when properties are given", path);
    int32_t t = cons_trie_new(x);
    if (t < 0)
        return TD_ENOMEM;
    g->nodes[o].trie = t;
    g->nodes[o].first = g->nprops;
    g->nodes[o].count = (int32_t)np;
    for (size_t k = 0; k < np; k++) {
        GROW(g->props, g->nprops, g->cprops, TD_ENOMEM);
        g->props[g->nprops++] = (cons_prop){-1, -1};
    }
    const char *key;
    json_t *ps;
    int32_t k = 0;
    json_object_foreach(props, key, ps) {
        json_t *js = json_string(key);
        char *q = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        if (!q)
            return TD_ENOMEM;
        td_err e = cons_trie_add(x, t, q, strlen(q), k);
        free(q);
        if (e)
            return e;
        snprintf(sub, sizeof sub, "%s/properties/%s", path, key);
        int32_t v;
        if ((e = cons_compile(x, ps, MODE_JSON, dsml, depth + 1, sub, &v)))
            return e;
        g->props[g->nodes[o].first + k].node = v;
        k++;
    }
    td_err e = cons_required(x, props, req, path, &g->nodes[o].req);
    if (e)
        return e;
    *out = o;
    return TD_OK;
}

td_err cons_required(cons_cc *x, json_t *props, json_t *req, const char *path, uint64_t *mask)
{
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) {
        const char *name = json_string_value(r), *k;
        json_t *ignored;
        int32_t idx = 0;
        bool found = false;
        json_object_foreach(props, k, ignored) {
            if (name && !strcmp(k, name)) {
                found = true;
                break;
            }
            idx++;
        }
        if (!found)
            return FAIL(x, TD_EINVAL, "schema at %s: required names \"%s\", which is not "
                        "in properties", path, name ? name : "(not a string)");
        *mask |= 1ull << idx;
    }
    return TD_OK;
}

static td_err typed_node(cons_cc *x, json_t *s, const char *type, int mode, bool dsml,
                         int depth, const char *path, int32_t *out)
{
    td_cons_grammar *g = x->g;
    *out = -1;
    bool str = !strcmp(type, "string");
    if ((mode == MODE_RAW && !str) || (mode == MODE_NOSTR && str))
        return TD_OK;
    int32_t n, t;
    if (str) {
        if ((n = cons_node_new(x, mode == MODE_RAW ? K_RAWSTR : K_STRING)) < 0)
            return TD_ENOMEM;
        g->nodes[n].dsml = dsml;
    } else if (!strcmp(type, "number") || !strcmp(type, "integer")) {
        if ((n = cons_node_new(x, type[1] == 'u' ? K_NUMBER : K_INTEGER)) < 0)
            return TD_ENOMEM;
    } else if (!strcmp(type, "boolean")) {
        if ((n = lit_node(x, &t)) < 0 || cons_trie_add(x, t, "true", 4, 0) ||
            cons_trie_add(x, t, "false", 5, 1))
            return TD_ENOMEM;
    } else if (!strcmp(type, "null")) {
        if ((n = lit_node(x, &t)) < 0 || cons_trie_add(x, t, "null", 4, 0))
            return TD_ENOMEM;
    } else if (!strcmp(type, "object")) {
        return object_node(x, s, dsml, depth, path, out);
    } else if (!strcmp(type, "array")) {
        json_t *items = json_object_get(s, "items");
        int32_t it;
        char sub[512];
        snprintf(sub, sizeof sub, "%s/items", path);
        if (items && !json_is_object(items))
            return FAIL(x, TD_ENOTSUP, "schema at %s: items must be one schema (tuple "
                        "or boolean items are not supported)", path);
        if (items) {
            td_err e = cons_compile(x, items, MODE_JSON, dsml, depth + 1, sub, &it);
            if (e)
                return e;
        } else if ((it = any_node(x, dsml)) < 0) {
            return TD_ENOMEM;
        }
        if ((n = cons_node_new(x, K_ARRAY)) < 0)
            return TD_ENOMEM;
        g->nodes[n].items = it;
    } else {
        return FAIL(x, TD_EINVAL, "schema at %s: unknown type \"%s\"", path, type);
    }
    *out = n;
    return TD_OK;
}

td_err cons_check_keywords(cons_cc *x, json_t *s, const char *path)
{
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (!in_list(KEYWORDS, k) && !in_list(ANNOTATIONS, k))
            return FAIL(x, TD_ENOTSUP, "schema at %s: unsupported keyword \"%s\"", path, k);
    }
    return TD_OK;
}

/* A local $ref ("#", "#/$defs/NAME", "#/definitions/NAME"): the schema it
 * names, compiled once per mode (a node serves any number of places). A
 * recursive one nests until CONS_MAX_NEST and is refused there. */
static td_err ref_node(cons_cc *x, json_t *s, int mode, bool dsml, int depth, const char *path,
                       int32_t *out)
{
    const char *k, *ref = json_string_value(json_object_get(s, "$ref"));
    json_t *v, *t = NULL;
    json_object_foreach(s, k, v) {
        if (strcmp(k, "$ref") && !in_list(ANNOTATIONS, k))
            return FAIL(x, TD_ENOTSUP, "schema at %s: \"%s\" beside $ref is not supported",
                        path, k);
    }
    if (!ref)
        return FAIL(x, TD_EINVAL, "schema at %s: $ref is not a string", path);
    if (!strcmp(ref, "#"))
        t = x->root;
    else if (!strncmp(ref, "#/$defs/", 8) && !strpbrk(ref + 8, "/~"))
        t = json_object_get(json_object_get(x->root, "$defs"), ref + 8);
    else if (!strncmp(ref, "#/definitions/", 14) && !strpbrk(ref + 14, "/~"))
        t = json_object_get(json_object_get(x->root, "definitions"), ref + 14);
    else
        return FAIL(x, TD_ENOTSUP, "schema at %s: $ref \"%s\": only \"#/$defs/NAME\" and "
                    "\"#/definitions/NAME\" are supported", path, ref);
    if (!t)
        return FAIL(x, TD_EINVAL, "schema at %s: $ref \"%s\" names nothing", path, ref);
    cons_ref *r = NULL;
    for (int i = 0; i < x->nrefs && !r; i++)
        if (x->refs[i].s == t && x->refs[i].mode == mode && x->refs[i].dsml == dsml)
            r = &x->refs[i];
    if (r && depth <= r->depth) {
        *out = r->node;
        return TD_OK;
    }
    char sub[512];
    snprintf(sub, sizeof sub, "%s", ref);
    td_err e = cons_compile(x, t, mode, dsml, depth + 1, sub, out);
    if (!e && !r && x->nrefs < (int)(sizeof x->refs / sizeof *x->refs))
        r = &x->refs[x->nrefs++];
    if (!e && r)
        *r = (cons_ref){t, mode, dsml, depth, *out};
    return e;
}

td_err cons_compile(cons_cc *x, json_t *s, int mode, bool dsml, int depth, const char *path,
                    int32_t *out)
{
    td_cons_grammar *g = x->g;
    td_err e;
    *out = -1;
    if (depth > CONS_MAX_NEST)
        return FAIL(x, TD_ENOTSUP, "schema at %s: nests deeper than %d levels (a recursive "
                    "$ref cannot be compiled)", path,
                    CONS_MAX_NEST);
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0))
        s = NULL;  /* any value */
    else if (!json_is_object(s))
        return FAIL(x, TD_EINVAL, "schema at %s: not an object", path);
    if (s && (e = cons_check_keywords(x, s, path)))
        return e;
    if (s && json_object_get(s, "$ref"))
        return ref_node(x, s, mode, dsml, depth, path, out);
    json_t *en = s ? json_object_get(s, "enum") : NULL;
    json_t *cn = s ? json_object_get(s, "const") : NULL;
    json_t *any = s ? json_object_get(s, "anyOf") : NULL;
    json_t *type = s ? json_object_get(s, "type") : NULL;
    if (en || cn) {
        if (en && !json_is_array(en))
            return FAIL(x, TD_EINVAL, "schema at %s: enum is not an array", path);
        json_t *vals = en ? json_incref(en) : json_pack("[O]", cn);
        if (!vals)
            return TD_ENOMEM;
        e = enum_node(x, vals, mode, path, out);
        json_decref(vals);
        return e;
    }
    int32_t alts[64];
    int32_t n = 0;
    char sub[512];
    if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0)
            return FAIL(x, TD_EINVAL, "schema at %s: anyOf is not a non-empty array", path);
        if (type || json_object_get(s, "properties") || json_object_get(s, "items"))
            return FAIL(x, TD_ENOTSUP, "schema at %s: anyOf beside type, properties or "
                        "items is not supported", path);
        size_t i;
        json_t *a;
        json_array_foreach(any, i, a) {
            int32_t v;
            snprintf(sub, sizeof sub, "%s/anyOf/%zu", path, i);
            if ((e = cons_compile(x, a, mode, dsml, depth + 1, sub, &v)))
                return e;
            if (v < 0)
                continue;
            if (mode == MODE_RAW && g->nodes[v].kind == K_RAWSTR) {
                *out = v;  /* any raw string: a superset of the others */
                return TD_OK;
            }
            if (g->nodes[v].kind == K_ANYOF) {
                for (int32_t k = 0; k < g->nodes[v].count && n < 64; k++)
                    alts[n++] = g->alts[g->nodes[v].first + k];
            } else if (n < 64) {
                alts[n++] = v;
            }
        }
    } else {
        const char *types[8];
        int nt = 0;
        if (json_is_string(type)) {
            types[nt++] = json_string_value(type);
        } else if (json_is_array(type)) {
            size_t i;
            json_t *t;
            json_array_foreach(type, i, t) {
                if (!json_is_string(t) || nt == 8)
                    return FAIL(x, TD_EINVAL, "schema at %s: bad type list", path);
                types[nt++] = json_string_value(t);
            }
        } else if (type) {
            return FAIL(x, TD_EINVAL, "schema at %s: type is not a string or list", path);
        } else if (s && json_object_get(s, "properties")) {
            types[nt++] = "object";
        } else if (s && json_object_get(s, "items")) {
            types[nt++] = "array";
        } else {
            int32_t a = any_node(x, dsml);
            if (a < 0)
                return TD_ENOMEM;
            if (mode == MODE_JSON) {
                *out = a;
                return TD_OK;
            }
            if (mode == MODE_RAW)
                return typed_node(x, s, "string", mode, dsml, depth, path, out);
            for (int32_t k = 0; k < 5; k++) {
                int32_t v = g->alts[g->nodes[a].first + k];
                if (g->nodes[v].kind != K_STRING)
                    alts[n++] = v;
            }
        }
        bool has_number = false;
        for (int i = 0; i < nt; i++)
            has_number |= !strcmp(types[i], "number");
        for (int i = 0; i < nt; i++) {
            int32_t v;
            if (has_number && !strcmp(types[i], "integer"))
                continue;  /* number takes integers */
            if ((e = typed_node(x, s, types[i], mode, dsml, depth, path, &v)))
                return e;
            if (v >= 0)
                alts[n++] = v;
        }
    }
    if (n == 0) {
        if (mode == MODE_JSON)
            return FAIL(x, TD_EINVAL, "schema at %s: admits no value", path);
        return TD_OK;
    }
    if (n == 1) {
        *out = alts[0];
        return TD_OK;
    }
    return anyof_node(x, alts, n, path, out);
}
