/* The DeepSeek-V4 chat format, non-thinking ("chat") mode, for the message
 * subset the API accepts now: system, user and assistant messages with text
 * content (spec v4-architecture.md §6.2).
 *
 * Markers are emitted as token ids; message text is encoded with
 * TD_TOK_PLAIN_TEXT, so a user who types "<｜Assistant｜>" gets those
 * characters, not the marker. Encoding each piece on its own gives the same
 * ids as encoding the rendered string, because the tokenizer splits text at
 * added tokens before anything else.
 */
#include <stdlib.h>
#include <string.h>

#include "router/router_internal.h"

static td_err marker(const td_tok *tok, const char *s, int32_t *id, char *err, size_t errlen)
{
    if (td_tok_token_to_id(tok, s, strlen(s), id))
        return td_errf(err, errlen, TD_ENOENT, "the tokenizer has no %s token", s);
    return TD_OK;
}

td_err td_router_chat_ids_load(const td_tok *tok, td_router_chat_ids *ids,
                               char *err, size_t errlen)
{
    td_err e;
    if ((e = marker(tok, "<｜begin▁of▁sentence｜>", &ids->bos, err, errlen)) ||
        (e = marker(tok, "<｜end▁of▁sentence｜>", &ids->eos, err, errlen)) ||
        (e = marker(tok, "<｜User｜>", &ids->user, err, errlen)) ||
        (e = marker(tok, "<｜Assistant｜>", &ids->assistant, err, errlen)) ||
        (e = marker(tok, "</think>", &ids->think_end, err, errlen)))
        return e;
    return TD_OK;
}

static td_err push(td_tok_ids *out, int32_t id)
{
    if (out->len == out->cap) {
        size_t nc = out->cap ? 2 * out->cap : 64;
        int32_t *n = realloc(out->ids, nc * sizeof *n);
        if (!n)
            return TD_ENOMEM;
        out->ids = n;
        out->cap = nc;
    }
    out->ids[out->len++] = id;
    return TD_OK;
}

static td_err text(const td_tok *tok, const char *s, size_t n, td_tok_ids *out,
                   char *err, size_t errlen)
{
    return n ? td_tok_encode(tok, s, n, TD_TOK_PLAIN_TEXT, out, err, errlen) : TD_OK;
}

/* A message's content: a string, null (an assistant turn without text), or
 * an array of {"type": "text", "text": ...} parts joined by "\n\n" (how the
 * encoder joins content blocks). */
static td_err content(const td_tok *tok, const json_t *c, int i, td_tok_ids *out,
                      char *err, size_t errlen)
{
    if (json_is_null(c))
        return TD_OK;
    if (json_is_string(c))
        return text(tok, json_string_value(c), json_string_length(c), out, err, errlen);
    if (!json_is_array(c))
        return td_errf(err, errlen, TD_EINVAL,
                       "messages[%d].content must be a string or an array of content parts", i);
    size_t k;
    const json_t *part;
    json_array_foreach(c, k, part) {
        const json_t *type = json_object_get(part, "type");
        const json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type))
            return td_errf(err, errlen, TD_EINVAL,
                           "messages[%d].content[%zu] must be an object with a type", i, k);
        if (strcmp(json_string_value(type), "text") || !json_is_string(t))
            return td_errf(err, errlen, TD_EINVAL,
                           "messages[%d].content[%zu]: only text parts are supported "
                           "(type \"text\" with a string \"text\")", i, k);
        td_err e;
        if (k > 0 && (e = text(tok, "\n\n", 2, out, err, errlen)))
            return e;
        if ((e = text(tok, json_string_value(t), json_string_length(t), out, err, errlen)))
            return e;
    }
    return TD_OK;
}

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;

static td_err role_of(const json_t *m, int i, role *r, char *err, size_t errlen)
{
    const json_t *v = json_is_object(m) ? json_object_get(m, "role") : NULL;
    if (!json_is_string(v))
        return td_errf(err, errlen, TD_EINVAL, "messages[%d] must be an object with a "
                       "string role", i);
    const char *s = json_string_value(v);
    if (!strcmp(s, "system"))
        *r = ROLE_SYSTEM;
    else if (!strcmp(s, "user"))
        *r = ROLE_USER;
    else if (!strcmp(s, "assistant"))
        *r = ROLE_ASSISTANT;
    else
        return td_errf(err, errlen, TD_EINVAL, "messages[%d].role '%s' is not supported "
                       "(system, user, assistant)", i, s);
    return TD_OK;
}

td_err td_router_chat_render(const td_tok *tok, const td_router_chat_ids *ids,
                             const json_t *messages, td_tok_ids *out,
                             char *err, size_t errlen)
{
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return td_errf(err, errlen, TD_EINVAL, "messages must be a non-empty array");
    int n = (int)json_array_size(messages);
    td_err e = push(out, ids->bos);
    for (int i = 0; !e && i < n; i++) {
        const json_t *m = json_array_get(messages, (size_t)i);
        role r;
        if ((e = role_of(m, i, &r, err, errlen)))
            break;
        const json_t *c = json_object_get(m, "content");
        if (!c || (json_is_null(c) && r != ROLE_ASSISTANT)) {
            e = td_errf(err, errlen, TD_EINVAL, "messages[%d].content is required", i);
            break;
        }
        if (r == ROLE_USER)
            e = push(out, ids->user);
        if (!e)
            e = content(tok, c, i, out, err, errlen);
        if (!e && r == ROLE_ASSISTANT)
            e = push(out, ids->eos);
        /* The transition to the assistant's turn: after a user message
         * that is last or directly followed by an assistant message. */
        if (!e && r == ROLE_USER) {
            role next = ROLE_USER;
            bool last = i + 1 == n;
            if (!last && (e = role_of(json_array_get(messages, (size_t)i + 1), i + 1,
                                      &next, err, errlen)))
                break;
            if (last || next == ROLE_ASSISTANT) {
                e = push(out, ids->assistant);
                if (!e)
                    e = push(out, ids->think_end);
            }
        }
    }
    if (e == TD_ENOMEM)
        td_errf(err, errlen, e, "out of memory");
    return e;
}
