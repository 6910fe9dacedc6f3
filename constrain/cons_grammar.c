/* The two kinds of grammar a request can ask for: a JSON value (json_object,
 * json_schema) and a DSML tool-call block (tool_choice required / named). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/cons_int.h"

#define NAME_MAX_BYTES 1024

static td_err finish(cons_cc *x, int32_t main, td_cons_grammar **out)
{
    int32_t r = cons_node_new(x, K_ROOT);
    if (r < 0)
        return TD_ENOMEM;
    x->g->nodes[r].items = main;
    x->g->root = r;
    cons_first_sets(x->g);
    *out = x->g;
    return TD_OK;
}

td_err td_cons_grammar_json(td_cons_grammar **out, const char *schema, size_t len,
                            char *err, size_t errlen)
{
    cons_cc x = {.err = err, .errlen = errlen, .any = {-1, -1}};
    td_err e = cons_grammar_new(&x.g);
    if (e)
        return e;
    json_t *s;
    json_error_t je;
    if (schema)
        s = json_loadb(schema, len, JSON_REJECT_DUPLICATES, &je);
    else
        s = json_pack("{ss}", "type", "object");
    if (!s) {
        td_cons_grammar_destroy(x.g);
        return schema ? td_errf(err, errlen, TD_EINVAL, "schema: %s (at %d:%d)", je.text,
                                je.line, je.column)
                      : TD_ENOMEM;
    }
    int32_t main = -1;
    x.root = s;
    e = cons_compile(&x, s, MODE_JSON, false, 0, "#", &main);
    json_decref(s);
    if (!e)
        e = finish(&x, main, out);
    if (e)
        td_cons_grammar_destroy(x.g);
    return e;
}

/* Names the model writes between quotes in a DSML header. */
static td_err check_name(cons_cc *x, const char *what, const char *name, size_t n)
{
    bool bad = n == 0 || n > NAME_MAX_BYTES;
    for (size_t i = 0; i < n && !bad; i++)
        bad = name[i] == '"' || name[i] == '<' || (unsigned char)name[i] < 0x20;
    if (bad)
        return td_errf(x->err, x->errlen, TD_EINVAL, "tools: %s \"%.*s\" is empty, too long, "
                       "or holds '\"', '<' or a control character", what, (int)(n > 64 ? 64 : n),
                       name);
    return TD_OK;
}

static td_err block_tries(cons_cc *x)
{
    td_cons_grammar *g = x->g;
    static const char PAR[] = "<\x01parameter name=\"", INV_END[] = "\n</\x01invoke>";
    int32_t t[7];
    for (int i = 0; i < 7; i++)
        if ((t[i] = cons_trie_new(x)) < 0)
            return TD_ENOMEM;
    g->t_open = t[0]; g->t_inv = t[1]; g->t_pfirst = t[2]; g->t_pnext = t[3];
    g->t_attr = t[4]; g->t_pclose = t[5]; g->t_ainv = t[6];
#define ADD(tr, s, k) if (cons_trie_add(x, tr, s, strlen(s), k)) return TD_ENOMEM
    ADD(g->t_open, "\n\n<\x01tool_calls>\n", 0);
    ADD(g->t_inv, "<\x01invoke name=\"", 0);
    ADD(g->t_pfirst, PAR, 0);
    ADD(g->t_pfirst, INV_END, 1);
    ADD(g->t_pnext, "\n<\x01parameter name=\"", 0);
    ADD(g->t_pnext, INV_END, 1);
    ADD(g->t_attr, "true\">", 0);
    ADD(g->t_attr, "false\">", 1);
    ADD(g->t_pclose, "</\x01parameter>", 0);
    ADD(g->t_ainv, "\n<\x01invoke name=\"", 0);
    ADD(g->t_ainv, "\n</\x01tool_calls>", 1);
#undef ADD
    /* After "</": a raw string value gives back its "</" when ｜DSML｜ comes. */
    int32_t c = g->tn[g->t_pclose].child;
    g->t_pclose_mid = g->tn[c].child;
    return TD_OK;
}

/* One tool: its name into the block's name trie, its parameters into g. */
static td_err add_tool(cons_cc *x, int32_t names, json_t *fn, const char *name)
{
    td_cons_grammar *g = x->g;
    char path[512], buf[NAME_MAX_BYTES + 16];
    td_err e;
    snprintf(buf, sizeof buf, "%s\">\n", name);
    if ((e = cons_trie_add(x, names, buf, strlen(buf), g->ntools)))
        return e;
    if (!cons_grow(&g->tools, g->ntools, &g->ctools, sizeof *g->tools))
        return TD_ENOMEM;
    cons_tool *t = &g->tools[g->ntools++];
    *t = (cons_tool){.first = g->nprops, .count = 0, .names = cons_trie_new(x), .req = 0};
    if (t->names < 0)
        return TD_ENOMEM;
    int32_t ti = g->ntools - 1;
    json_t *ps = json_object_get(fn, "parameters");
    if (!ps || json_is_null(ps))
        return TD_OK;
    snprintf(path, sizeof path, "tools/%s/parameters", name);
    if (!json_is_object(ps))
        return td_errf(x->err, x->errlen, TD_EINVAL, "schema at %s: not an object", path);
    if ((e = cons_check_keywords(x, ps, path)))
        return e;
    x->root = ps;
    x->nrefs = 0;
    json_t *type = json_object_get(ps, "type");
    json_t *props = json_object_get(ps, "properties");
    json_t *req = json_object_get(ps, "required");
    if ((type && !(json_is_string(type) && !strcmp(json_string_value(type), "object"))) ||
        json_object_get(ps, "anyOf") || json_object_get(ps, "$ref") || json_object_get(ps, "enum") ||
        json_object_get(ps, "const") || json_object_get(ps, "items"))
        return td_errf(x->err, x->errlen, TD_ENOTSUP, "schema at %s: parameters must be "
                       "an object schema with properties", path);
    if (props && !json_is_object(props))
        return td_errf(x->err, x->errlen, TD_EINVAL, "schema at %s: properties is not "
                       "an object", path);
    if (json_object_size(props) > CONS_MAX_PROPS)
        return td_errf(x->err, x->errlen, TD_ENOTSUP, "schema at %s: more than %d "
                       "parameters", path, CONS_MAX_PROPS);
    const char *key;
    json_t *s;
    int32_t k = 0;
    json_object_foreach(props, key, s) {
        if ((e = check_name(x, "parameter name", key, strlen(key))))
            return e;
        snprintf(buf, sizeof buf, "%s\" string=\"", key);
        if ((e = cons_trie_add(x, g->tools[ti].names, buf, strlen(buf), k)))
            return e;
        cons_prop p;
        char sub[700];
        snprintf(sub, sizeof sub, "%s/properties/%s", path, key);
        if ((e = cons_compile(x, s, MODE_NOSTR, true, 2, sub, &p.node)) ||
            (e = cons_compile(x, s, MODE_RAW, true, 2, sub, &p.raw)))
            return e;
        if (p.node < 0 && p.raw < 0)
            return td_errf(x->err, x->errlen, TD_EINVAL, "schema at %s: admits no value", sub);
        if (!cons_grow(&g->props, g->nprops, &g->cprops, sizeof *g->props))
            return TD_ENOMEM;
        g->props[g->nprops++] = p;
        g->tools[ti].count++;
        k++;
    }
    return cons_required(x, props, req, path, &g->tools[ti].req);
}

static td_err tools_compile(cons_cc *x, json_t *tools, const td_cons_tools_opts *o)
{
    td_cons_grammar *g = x->g;
    td_err e;
    if (!json_is_array(tools) || json_array_size(tools) == 0)
        return td_errf(x->err, x->errlen, TD_EINVAL, "tools: not a non-empty array");
    int32_t blk = cons_node_new(x, K_BLOCK), names = cons_trie_new(x);
    if (blk < 0 || names < 0 || (e = block_tries(x)))
        return TD_ENOMEM;
    g->nodes[blk].trie = names;
    g->nodes[blk].first = 0;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        if (!json_is_object(fn))
            fn = t;
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name)
            return td_errf(x->err, x->errlen, TD_EINVAL, "tools[%zu]: no function name", i);
        if ((e = check_name(x, "function name", name, strlen(name))))
            return e;
        for (size_t j = 0; j < i; j++) {
            json_t *f2 = json_object_get(json_array_get(tools, j), "function");
            if (!json_is_object(f2))
                f2 = json_array_get(tools, j);
            const char *n2 = json_string_value(json_object_get(f2, "name"));
            if (n2 && !strcmp(n2, name))
                return td_errf(x->err, x->errlen, TD_EINVAL, "tools: \"%s\" is defined "
                               "twice", name);
        }
        if (o && o->force_name && strcmp(o->force_name, name))
            continue;
        if ((e = add_tool(x, names, fn, name)))
            return e;
    }
    if (g->ntools == 0)
        return td_errf(x->err, x->errlen, TD_EINVAL, "tools: no function named \"%s\"",
                       o && o->force_name ? o->force_name : "");
    g->nodes[blk].count = g->ntools;
    g->tools_mode = true;
    g->single = o && o->single;
    return finish(x, blk, &x->g);
}

td_err td_cons_grammar_tools(td_cons_grammar **out, const char *tools, size_t len,
                             const td_cons_tools_opts *opts, char *err, size_t errlen)
{
    cons_cc x = {.err = err, .errlen = errlen, .any = {-1, -1}};
    td_err e = cons_grammar_new(&x.g);
    if (e)
        return e;
    json_error_t je;
    json_t *t = json_loadb(tools, len, 0, &je);
    if (!t)
        e = td_errf(err, errlen, TD_EINVAL, "tools: %s (at %d:%d)", je.text, je.line,
                    je.column);
    else
        e = tools_compile(&x, t, opts);
    json_decref(t);
    if (e) {
        td_cons_grammar_destroy(x.g);
        return e;
    }
    *out = x.g;
    return TD_OK;
}
