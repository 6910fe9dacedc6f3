/* td_chat: the DeepSeek-V4 prompt encoding (spec v4-architecture.md §6).
 *
 * Renders a td_conv to exactly the string the official encoder
 * (encoding_dsv4.py, encode_messages with drop_thinking=True and BOS) writes:
 * tool messages merged into user turns as <tool_result> blocks and ordered
 * by the preceding tool calls, tool schemas after the system (or developer)
 * text, assistant tool calls as <｜DSML｜tool_calls> blocks, the thinking
 * markers and the three reasoning modes, earlier reasoning kept only when
 * the conversation declares tools, EOS after assistant turns, and the
 * generation prompt at the end.
 *
 * The token-id form is what the server feeds the model: every marker is its
 * special-token id, and the text between two markers (template text and
 * caller text together, as the official tokeniser sees it) is encoded with
 * TD_TOK_PLAIN_TEXT, so marker strings typed by a user stay text. For text
 * without marker strings in it the ids equal td_tok_encode(render_text).
 */
#ifndef TD_ROUTER_CHAT_ENCODE_H
#define TD_ROUTER_CHAT_ENCODE_H

#include <stdint.h>

#include "common/err.h"
#include "router/conv.h"
#include "tokenizer/tokenizer.h"

/* Ids of the chat markers, looked up once per tokenizer. -1 when the
 * tokenizer lacks one; rendering fails only if a prompt needs it. */
typedef struct {
    int32_t bos, eos, user, assistant, think, think_end, dsml, latest_reminder;
    int32_t action, query, authority, domain, title, read_url;
} td_chat_markers;

/* Fails (TD_ENOENT) only if BOS, EOS, <｜User｜>, <｜Assistant｜> or
 * </think> is missing: a tokenizer without them cannot do chat at all. */
td_err td_chat_markers_load(const td_tok *tok, td_chat_markers *m, char *err, size_t errlen);

/* Appends the prompt string to out. */
td_err td_chat_render_text(const td_conv *c, td_tok_bytes *out, char *err, size_t errlen);

/* Appends the prompt's token ids to out. */
td_err td_chat_render_ids(const td_conv *c, const td_tok *tok, const td_chat_markers *m,
                          td_tok_ids *out, char *err, size_t errlen);

#endif
