/* What the API encoders share (gen.h): appending to the output with the
 * out-of-memory flag, server-sent event framing, and the parts (blocks,
 * items) the parser's events open, grow and close. */
#include <stdlib.h>
#include <string.h>

#include "router/conv.h"
#include "router/gen.h"

void td_gen_put(td_gen_enc *enc, const char *s, size_t n)
{
    if (td_conv_bytes_append(&enc->out, s, n))
        enc->oom = true;
}

void td_gen_puts(td_gen_enc *enc, const char *s) { td_gen_put(enc, s, strlen(s)); }

void td_gen_put_jstring(td_gen_enc *enc, const char *s, size_t n)
{
    if (td_conv_json_string(&enc->out, s, n))
        enc->oom = true;
}

/* v (taken) as compact JSON text, or NULL (oom set). */
static char *dump(td_gen_enc *enc, json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s)
        enc->oom = true;
    return s;
}

void td_gen_put_json(td_gen_enc *enc, json_t *v)
{
    char *s = dump(enc, v);
    if (s)
        td_gen_puts(enc, s);
    free(s);
}

void td_gen_sse_begin(td_gen_enc *enc, const char *name)
{
    td_gen_puts(enc, "event: ");
    td_gen_puts(enc, name);
    td_gen_puts(enc, "\ndata: ");
}

void td_gen_sse_end(td_gen_enc *enc) { td_gen_put(enc, "\n\n", 2); }

void td_gen_sse_json(td_gen_enc *enc, const char *name, json_t *v)
{
    char *s = dump(enc, v);
    if (!s)
        return;
    td_gen_sse_begin(enc, name);
    td_gen_puts(enc, s);
    td_gen_sse_end(enc);
    free(s);
}

/* ---- parts ------------------------------------------------------------------- */

void td_gen_parts_init(td_gen_parts *p)
{
    memset(p, 0, sizeof *p);
    p->open_call = -1;
}

static void part_close(td_gen_parts *p, const td_gen_parts_ops *ops, td_gen_enc *enc,
                       bool keep)
{
    if (p->open == TD_GEN_PART_NONE)
        return;
    ops->close(enc, keep);
    p->open = TD_GEN_PART_NONE;
    p->open_call = -1;
}

static void part_open(td_gen_parts *p, const td_gen_parts_ops *ops, td_gen_enc *enc,
                      td_gen_part kind, int call, const char *name, size_t name_len)
{
    part_close(p, ops, enc, true);
    p->open = kind;
    p->open_call = call;
    ops->open(enc, kind, name, name_len);
}

void td_gen_parts_event(td_gen_parts *p, const td_gen_parts_ops *ops, td_gen_enc *enc,
                        bool parallel, const td_dsml_event *ev)
{
    bool in_call = p->open == TD_GEN_PART_CALL && p->open_call == ev->index;
    switch (ev->kind) {
    case TD_DSML_REASONING:
    case TD_DSML_CONTENT: {
        if (ev->len == 0)
            break;
        td_gen_part kind = ev->kind == TD_DSML_REASONING ? TD_GEN_PART_REASONING
                                                         : TD_GEN_PART_TEXT;
        if (p->open != kind)
            part_open(p, ops, enc, kind, -1, NULL, 0);
        ops->delta(enc, ev->text, ev->len);
        break;
    }
    case TD_DSML_CALL_BEGIN:
        if (parallel || ev->index == 0)
            part_open(p, ops, enc, TD_GEN_PART_CALL, ev->index, ev->text, ev->len);
        break;
    case TD_DSML_CALL_ARGS:
        if (in_call)
            ops->delta(enc, ev->text, ev->len);
        break;
    case TD_DSML_CALL_END:
    case TD_DSML_CALL_ABORT:
        if (!in_call)
            break;
        if (ev->kind == TD_DSML_CALL_END)
            p->calls_ok++;
        else
            p->calls_aborted++;
        part_close(p, ops, enc, ev->kind == TD_DSML_CALL_END);
        break;
    }
}

void td_gen_parts_finish(td_gen_parts *p, const td_gen_parts_ops *ops, td_gen_enc *enc)
{
    if (p->open == TD_GEN_PART_CALL) {
        p->calls_aborted++;
        part_close(p, ops, enc, false);
    }
    part_close(p, ops, enc, true);
}
