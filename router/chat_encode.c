/* The V4 prompt encoder (router/chat_encode.h). It follows the official
 * encoding_dsv4.py step by step: merge tool messages into user turns, sort
 * tool results by call order, drop earlier reasoning (and earlier developer
 * turns) when thinking without tools, then render message by message with
 * the transition to the assistant's turn. The fixed strings below are what
 * the model was trained on and must stay byte-identical to the script's. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "router/chat_encode.h"

/* ---- markers --------------------------------------------------------------- */

typedef enum {
    M_BOS, M_EOS, M_USER, M_ASSISTANT, M_THINK, M_THINK_END, M_DSML, M_REMINDER,
    M_ACTION, M_QUERY, M_AUTHORITY, M_DOMAIN, M_TITLE, M_READ_URL, M_COUNT
} marker;

static const struct {
    const char *s;
    size_t off;
} markers[M_COUNT] = {
    [M_BOS] = {"<｜begin▁of▁sentence｜>", offsetof(td_chat_markers, bos)},
    [M_EOS] = {"<｜end▁of▁sentence｜>", offsetof(td_chat_markers, eos)},
    [M_USER] = {"<｜User｜>", offsetof(td_chat_markers, user)},
    [M_ASSISTANT] = {"<｜Assistant｜>", offsetof(td_chat_markers, assistant)},
    [M_THINK] = {"<think>", offsetof(td_chat_markers, think)},
    [M_THINK_END] = {"</think>", offsetof(td_chat_markers, think_end)},
    [M_DSML] = {"｜DSML｜", offsetof(td_chat_markers, dsml)},
    [M_REMINDER] = {"<｜latest_reminder｜>", offsetof(td_chat_markers, latest_reminder)},
    [M_ACTION] = {"<｜action｜>", offsetof(td_chat_markers, action)},
    [M_QUERY] = {"<｜query｜>", offsetof(td_chat_markers, query)},
    [M_AUTHORITY] = {"<｜authority｜>", offsetof(td_chat_markers, authority)},
    [M_DOMAIN] = {"<｜domain｜>", offsetof(td_chat_markers, domain)},
    [M_TITLE] = {"<｜title｜>", offsetof(td_chat_markers, title)},
    [M_READ_URL] = {"<｜read_url｜>", offsetof(td_chat_markers, read_url)},
};

static int32_t *marker_slot(td_chat_markers *m, marker k)
{
    return (int32_t *)((char *)m + markers[k].off);
}

td_err td_chat_markers_load(const td_tok *tok, td_chat_markers *m, char *err, size_t errlen)
{
    for (int k = 0; k < M_COUNT; k++) {
        int32_t *slot = marker_slot(m, (marker)k);
        if (td_tok_token_to_id(tok, markers[k].s, strlen(markers[k].s), slot))
            *slot = -1;
    }
    static const marker needed[] = {M_BOS, M_EOS, M_USER, M_ASSISTANT, M_THINK_END};
    for (size_t i = 0; i < sizeof needed / sizeof *needed; i++)
        if (*marker_slot(m, needed[i]) < 0)
            return td_errf(err, errlen, TD_ENOENT, "the tokenizer has no %s token",
                           markers[needed[i]].s);
    return TD_OK;
}

/* ---- the fixed text of the format -------------------------------------------- */

static const char effort_max[] =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem "
    "to resolve the root cause, rigorously stress-testing your logic against all potential "
    "paths, edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate "
    "step, considered alternative, and rejected hypothesis to ensure absolutely no "
    "assumption is left unchecked.\n\n";

static const char tools_head[] =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke "
    "tools by writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE"
    "</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other "
    "types (numbers, booleans, arrays, objects), pass the value in JSON format and set "
    "`string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete "
    "reasoning inside <think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";

static const char tools_tail[] =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to "
    "invoke tool calls.\n";

static const char response_format_head[] =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

/* ---- output: a string, or ids --------------------------------------------------- */

/* Text is collected into runs that end at a marker; in id mode each run is
 * encoded as one piece, exactly as the official tokeniser would see the
 * text between two added tokens. Errors are sticky so the renderer reads
 * straight through. */
typedef struct {
    td_tok_bytes *str;          /* string mode */
    const td_tok *tok;          /* id mode */
    const td_chat_markers *mk;
    td_tok_ids *ids;
    td_tok_bytes run;
    td_err e;
    char *err;
    size_t errlen;
} sink;

static void text(sink *k, const char *s, size_t n)
{
    if (k->e || !n)
        return;
    if (td_conv_bytes_append(k->str ? k->str : &k->run, s, n))
        k->e = td_errf(k->err, k->errlen, TD_ENOMEM, "out of memory");
}

static void texts(sink *k, const char *s) { text(k, s, strlen(s)); }

static void flush_run(sink *k)
{
    if (k->e || k->str || !k->run.len)
        return;
    k->e = td_tok_encode(k->tok, k->run.data, k->run.len, TD_TOK_PLAIN_TEXT, k->ids,
                         k->err, k->errlen);
    k->run.len = 0;
}

static void push_id(sink *k, int32_t id)
{
    td_tok_ids *v = k->ids;
    if (v->len == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 256;
        int32_t *n = realloc(v->ids, nc * sizeof *n);
        if (!n) {
            k->e = td_errf(k->err, k->errlen, TD_ENOMEM, "out of memory");
            return;
        }
        v->ids = n;
        v->cap = nc;
    }
    v->ids[v->len++] = id;
}

static void mark(sink *k, marker m)
{
    if (k->e)
        return;
    if (k->str) {
        texts(k, markers[m].s);
        return;
    }
    flush_run(k);
    int32_t id = *(const int32_t *)((const char *)k->mk + markers[m].off);
    if (id < 0)
        k->e = td_errf(k->err, k->errlen, TD_ENOENT, "the tokenizer has no %s token",
                       markers[m].s);
    else if (!k->e)
        push_id(k, id);
}

/* Template text (ours, trusted) with markers inside it, e.g. the tools
 * preamble: its marker strings become marker ids, as the official
 * tokeniser makes them. */
static void fixed(sink *k, const char *s)
{
    const char *run = s;
    for (const char *p = s; *p;) {
        int hit = -1;
        if (*p == '<' || *p == '\xef')
            for (int m = 0; m < M_COUNT && hit < 0; m++)
                if (!strncmp(p, markers[m].s, strlen(markers[m].s)))
                    hit = m;
        if (hit < 0) {
            p++;
            continue;
        }
        text(k, run, (size_t)(p - run));
        mark(k, (marker)hit);
        p += strlen(markers[hit].s);
        run = p;
    }
    texts(k, run);
}

/* ---- preprocessing: the encoder's view of the messages ----------------------- */

typedef struct {
    bool tool;                  /* a tool result, else text */
    const char *s;
    size_t n;
    const char *id;             /* tool: tool_call_id */
} block;

typedef struct {
    td_conv_role role;          /* tool messages have become user messages */
    const td_conv_msg *m;       /* the message (for a user turn: its first) */
    block *blocks;              /* user turns: text and tool results */
    size_t nblocks;
    td_conv_task task;
} vmsg;

typedef struct {
    vmsg *v;
    size_t n;
    bool thinking, drop, max;
    size_t last_user;           /* SIZE_MAX: none */
} view;

static void view_free(view *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->v[i].blocks);
    free(w->v);
}

static int add_block(vmsg *u, block b)
{
    block *nb = realloc(u->blocks, (u->nblocks + 1) * sizeof *nb);
    if (!nb)
        return -1;
    nb[u->nblocks++] = b;
    u->blocks = nb;
    return 0;
}

/* merge_tool_messages: a tool result joins the user turn before it (or
 * starts one); a user message joins a user turn before it unless that one
 * carries a task. */
static td_err merge(const td_conv *c, view *w)
{
    size_t n = td_conv_len(c);
    w->v = calloc(n ? n : 1, sizeof *w->v);
    if (!w->v)
        return TD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const td_conv_msg *m = td_conv_msg_at(c, i);
        vmsg *last = w->n ? &w->v[w->n - 1] : NULL;
        bool tool = m->role == TD_CONV_TOOL;
        if (tool || m->role == TD_CONV_USER) {
            block b = {tool, m->content.s ? m->content.s : "", m->content.len, m->tool_call_id};
            bool join = last && last->role == TD_CONV_USER &&
                        (tool || last->task == TD_CONV_TASK_NONE);
            if (!join) {
                last = &w->v[w->n++];
                last->role = TD_CONV_USER;
                last->m = m;
                last->task = tool ? TD_CONV_TASK_NONE : m->task;
            }
            if (add_block(last, b))
                return TD_ENOMEM;
            continue;
        }
        vmsg *x = &w->v[w->n++];
        x->role = m->role;
        x->m = m;
        x->task = m->task;
    }
    return TD_OK;
}

/* sort_tool_results_by_call_order: within a user turn, tool results follow
 * the order of the ids in the latest assistant tool calls (a stable sort;
 * unknown ids sort as position 0; a repeated id takes its last position). */
static void sort_results(view *w)
{
    const td_conv_msg *calls = NULL;
    for (size_t i = 0; i < w->n; i++) {
        vmsg *x = &w->v[i];
        if (x->role == TD_CONV_ASSISTANT && x->m->ncalls) {
            calls = x->m;
            bool any = false;
            for (size_t k = 0; k < calls->ncalls; k++)
                any |= calls->calls[k].id[0] != '\0';
            if (!any)
                calls = NULL;
            continue;
        }
        if (x->role != TD_CONV_USER || !calls)
            continue;
        size_t nt = 0;
        for (size_t b = 0; b < x->nblocks; b++)
            nt += x->blocks[b].tool;
        if (nt < 2)
            continue;
        /* Insertion sort over the tool blocks in place, skipping text blocks. */
        for (size_t b = 0; b < x->nblocks; b++) {
            if (!x->blocks[b].tool)
                continue;
            for (size_t j = b; j > 0;) {
                size_t p = j;
                do
                    p--;
                while (p > 0 && !x->blocks[p].tool);
                if (!x->blocks[p].tool)
                    break;
                size_t kp = 0, kj = 0;
                for (size_t k = 0; k < calls->ncalls; k++) {
                    const char *id = calls->calls[k].id;
                    if (id[0] && !strcmp(id, x->blocks[p].id))
                        kp = k;
                    if (id[0] && !strcmp(id, x->blocks[j].id))
                        kj = k;
                }
                if (kp <= kj)
                    break;
                block t = x->blocks[p];
                x->blocks[p] = x->blocks[j];
                x->blocks[j] = t;
                j = p;
            }
        }
    }
}

static size_t find_last_user(const view *w)
{
    for (size_t i = w->n; i-- > 0;)
        if (w->v[i].role == TD_CONV_USER || w->v[i].role == TD_CONV_DEVELOPER)
            return i;
    return SIZE_MAX;
}

/* _drop_thinking_messages: before the last user turn, developer turns go
 * (and assistant reasoning, which render() leaves out there anyway). */
static void drop_developers(view *w)
{
    size_t last = find_last_user(w), o = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (w->v[i].role == TD_CONV_DEVELOPER && last != SIZE_MAX && i < last) {
            free(w->v[i].blocks);
            continue;
        }
        w->v[o++] = w->v[i];
    }
    w->n = o;
}

/* ---- rendering ------------------------------------------------------------------- */

static void tools_block(sink *k, const td_conv_msg *m)
{
    fixed(k, tools_head);
    for (size_t i = 0; i < m->ntools; i++) {
        if (i)
            texts(k, "\n");
        texts(k, m->tools[i].schema);
    }
    fixed(k, tools_tail);
}

static void suffixes(sink *k, const td_conv_msg *m)
{
    if (m->ntools) {
        texts(k, "\n\n");
        tools_block(k, m);
    }
    if (m->response_format) {
        texts(k, "\n\n");
        texts(k, response_format_head);
        texts(k, m->response_format);
    }
}

/* encode_arguments_to_dsml: one parameter per key of the arguments object;
 * strings raw with string="true", anything else as JSON. Arguments that are
 * not a JSON object become one parameter "arguments" with the raw text. */
static void call_params(sink *k, const td_conv_call *c)
{
    json_t *args = json_loadb(c->arguments.s, c->arguments.len,
                              JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!json_is_object(args)) {
        fixed(k, "<｜DSML｜parameter name=\"arguments\" string=\"true\">");
        text(k, c->arguments.s, c->arguments.len);
        fixed(k, "</｜DSML｜parameter>");
        json_decref(args);
        return;
    }
    const char *key;
    json_t *v;
    bool first = true;
    json_object_foreach(args, key, v) {
        if (!first)
            texts(k, "\n");
        first = false;
        fixed(k, "<｜DSML｜parameter name=\"");
        texts(k, key);
        texts(k, json_is_string(v) ? "\" string=\"true\">" : "\" string=\"false\">");
        if (json_is_string(v)) {
            text(k, json_string_value(v), json_string_length(v));
        } else {
            td_tok_bytes b = {0};
            if (td_conv_json_dump(&b, v))
                k->e = td_errf(k->err, k->errlen, TD_ENOMEM, "out of memory");
            text(k, b.data, b.len);
            td_tok_bytes_free(&b);
        }
        fixed(k, "</｜DSML｜parameter>");
    }
    json_decref(args);
}

static void assistant(sink *k, const view *w, size_t i)
{
    const td_conv_msg *m = w->v[i].m;
    bool prev_task = i > 0 && w->v[i - 1].task != TD_CONV_TASK_NONE;
    if (w->thinking && !prev_task &&
        (!w->drop || w->last_user == SIZE_MAX || i > w->last_user)) {
        text(k, m->reasoning.s, m->reasoning.len);
        mark(k, M_THINK_END);
    }
    text(k, m->content.s, m->content.len);
    if (m->ncalls) {
        fixed(k, "\n\n<｜DSML｜tool_calls>\n");
        for (size_t c = 0; c < m->ncalls; c++) {
            if (c)
                texts(k, "\n");
            fixed(k, "<｜DSML｜invoke name=\"");
            texts(k, m->calls[c].name);
            texts(k, "\">\n");
            call_params(k, &m->calls[c]);
            fixed(k, "\n</｜DSML｜invoke>");
        }
        fixed(k, "\n</｜DSML｜tool_calls>");
    }
    if (!m->wo_eos)
        mark(k, M_EOS);
}

static void render_one(sink *k, const view *w, size_t i)
{
    const vmsg *x = &w->v[i];
    const td_conv_msg *m = x->m;
    if (i == 0 && w->thinking && w->max)
        texts(k, effort_max);
    switch (x->role) {
    case TD_CONV_SYSTEM:
        text(k, m->content.s, m->content.len);
        suffixes(k, m);
        break;
    case TD_CONV_DEVELOPER:
        mark(k, M_USER);
        text(k, m->content.s, m->content.len);
        suffixes(k, m);
        break;
    case TD_CONV_USER:
        mark(k, M_USER);
        for (size_t b = 0; b < x->nblocks; b++) {
            if (b)
                texts(k, "\n\n");
            if (x->blocks[b].tool)
                texts(k, "<tool_result>");
            text(k, x->blocks[b].s, x->blocks[b].n);
            if (x->blocks[b].tool)
                texts(k, "</tool_result>");
        }
        break;
    case TD_CONV_LATEST_REMINDER:
        mark(k, M_REMINDER);
        text(k, m->content.s, m->content.len);
        break;
    case TD_CONV_ASSISTANT:
        assistant(k, w, i);
        break;
    case TD_CONV_TOOL:
        break;  /* merged away */
    }

    /* The transition to the assistant's turn, when one follows or this is
     * the end of the prompt. */
    if (i + 1 < w->n && w->v[i + 1].role != TD_CONV_ASSISTANT &&
        w->v[i + 1].role != TD_CONV_LATEST_REMINDER)
        return;
    if (x->task != TD_CONV_TASK_NONE) {
        if (x->task == TD_CONV_TASK_ACTION) {
            mark(k, M_ASSISTANT);
            mark(k, w->thinking ? M_THINK : M_THINK_END);
            mark(k, M_ACTION);
        } else {
            mark(k, (marker)(M_ACTION + (x->task - TD_CONV_TASK_ACTION)));
        }
    } else if (x->role == TD_CONV_USER || x->role == TD_CONV_DEVELOPER) {
        mark(k, M_ASSISTANT);
        bool think = w->thinking && (!w->drop || i >= w->last_user);
        mark(k, think ? M_THINK : M_THINK_END);
    }
}

static td_err render(const td_conv *c, sink *k)
{
    view w = {0};
    td_conv_think t = td_conv_get_think(c);
    w.thinking = t != TD_CONV_THINK_NONE;
    w.max = t == TD_CONV_THINK_MAX;
    /* Declared tools keep all earlier reasoning (effective_drop_thinking). */
    w.drop = !td_conv_has_tools(c);
    if (td_conv_len(c) == 0)
        return td_errf(k->err, k->errlen, TD_EINVAL, "the conversation has no messages");
    if (merge(c, &w)) {
        view_free(&w);
        return td_errf(k->err, k->errlen, TD_ENOMEM, "out of memory");
    }
    sort_results(&w);
    if (w.thinking && w.drop)
        drop_developers(&w);
    w.last_user = find_last_user(&w);
    mark(k, M_BOS);
    for (size_t i = 0; i < w.n && !k->e; i++)
        render_one(k, &w, i);
    flush_run(k);
    view_free(&w);
    return k->e;
}

td_err td_chat_render_text(const td_conv *c, td_tok_bytes *out, char *err, size_t errlen)
{
    sink k = {.str = out, .err = err, .errlen = errlen};
    return render(c, &k);
}

td_err td_chat_render_ids(const td_conv *c, const td_tok *tok, const td_chat_markers *m,
                          td_tok_ids *out, char *err, size_t errlen)
{
    sink k = {.tok = tok, .mk = m, .ids = out, .err = err, .errlen = errlen};
    td_err e = render(c, &k);
    td_tok_bytes_free(&k.run);
    return e;
}
