/* The chat prompt for the server: marker ids for the router, and the
 * OpenAI `messages` array rendered in the DeepSeek-V4 format through the
 * conversation model (router/conv.h) and the encoder (router/chat_encode.h).
 *
 * Markers are emitted as token ids; message text is encoded with
 * TD_TOK_PLAIN_TEXT, so a user who types "<｜Assistant｜>" gets those
 * characters, not the marker.
 */
#include "router/router_internal.h"

td_err td_router_chat_ids_load(const td_tok *tok, td_router_chat_ids *ids,
                               char *err, size_t errlen)
{
    return td_chat_markers_load(tok, ids, err, errlen);
}

td_err td_router_chat_render(const td_tok *tok, const td_router_chat_ids *ids,
                             const json_t *messages, td_tok_ids *out,
                             char *err, size_t errlen)
{
    td_conv *c;
    if (td_conv_create(&c))
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    td_err e = td_conv_add_messages(c, messages, 0, err, errlen);
    if (!e)
        e = td_chat_render_ids(c, tok, ids, out, err, errlen);
    td_conv_destroy(c);
    return e;
}
