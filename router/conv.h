/* td_conv: a chat conversation as the DeepSeek-V4 encoder sees it.
 *
 * The router turns an OpenAI request body (or a message list in the
 * official encoder's own shape) into a td_conv; router/chat_encode.h renders
 * it to the exact V4 prompt. Keeping this model separate from JSON lets the
 * renderer, the CLI (`tandem render-chat`) and the tests share one
 * definition of what a message is.
 *
 * A td_conv owns every string in it (NUL-terminated copies; lengths are kept
 * because content may legitimately be long). Messages are plain data read
 * through td_conv_msg_at(); they are built only through the functions here.
 */
#ifndef TD_ROUTER_CONV_H
#define TD_ROUTER_CONV_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "tokenizer/tokenizer.h"

typedef enum {
    TD_CONV_SYSTEM,
    TD_CONV_DEVELOPER,        /* the encoder's search-agent role: a user turn */
    TD_CONV_USER,
    TD_CONV_ASSISTANT,
    TD_CONV_TOOL,             /* a tool result; merged into a user turn */
    TD_CONV_LATEST_REMINDER,  /* <｜latest_reminder｜>{content} */
} td_conv_role;

/* The three reasoning modes (spec v4-architecture.md §6.3). */
typedef enum {
    TD_CONV_THINK_NONE,       /* "chat": the prompt ends with </think> */
    TD_CONV_THINK_HIGH,       /* "thinking" */
    TD_CONV_THINK_MAX,        /* "thinking" + the Absolute-maximum paragraph */
} td_conv_think;

typedef enum {
    TD_CONV_CHOICE_AUTO,
    TD_CONV_CHOICE_NONE,      /* tools are left out of the prompt */
    TD_CONV_CHOICE_REQUIRED,
    TD_CONV_CHOICE_NAMED,     /* only the named function is in the prompt */
} td_conv_tool_choice;

/* Quick-instruction tasks of the encoder (internal classification turns). */
typedef enum {
    TD_CONV_TASK_NONE,
    TD_CONV_TASK_ACTION,
    TD_CONV_TASK_QUERY,
    TD_CONV_TASK_AUTHORITY,
    TD_CONV_TASK_DOMAIN,
    TD_CONV_TASK_TITLE,
    TD_CONV_TASK_READ_URL,
} td_conv_task;

/* A string that may be absent (s == NULL) or empty. */
typedef struct {
    char *s;
    size_t len;
} td_conv_str;

typedef struct {
    char *id;                 /* "" when the caller gave none */
    char *name;
    td_conv_str arguments;    /* the arguments JSON text as given */
} td_conv_call;

typedef struct {
    char *name;
    char *description;        /* NULL if none */
    char *parameters;         /* JSON text of the schema, NULL if none */
    /* The whole function object as the encoder prints it in the tools block
     * (Python json.dumps style, keys in the caller's order). */
    char *schema;
} td_conv_tool;

typedef struct {
    td_conv_role role;
    td_conv_str content;      /* text; content parts are already joined */
    td_conv_str reasoning;    /* assistant: reasoning_content */
    td_conv_call *calls;      /* assistant: tool calls */
    size_t ncalls;
    char *tool_call_id;       /* tool: which call this answers ("" if none) */
    td_conv_tool *tools;      /* tools declared on this (system/developer) message */
    size_t ntools;
    char *response_format;    /* system/developer: JSON text, or NULL */
    td_conv_task task;
    bool wo_eos;              /* assistant: no EOS after it (a prefill) */
} td_conv_msg;

typedef struct td_conv td_conv;

td_err td_conv_create(td_conv **out);
void td_conv_destroy(td_conv *c);

size_t td_conv_len(const td_conv *c);
const td_conv_msg *td_conv_msg_at(const td_conv *c, size_t i);
/* Makes a last assistant turn a prefill: the answer continues it (no EOS
 * after it). Returns true if the last message is an assistant turn. */
bool td_conv_continue_last(td_conv *c);

td_conv_think td_conv_get_think(const td_conv *c);
void td_conv_set_think(td_conv *c, td_conv_think t);
td_conv_tool_choice td_conv_get_tool_choice(const td_conv *c);
bool td_conv_parallel_tool_calls(const td_conv *c);
/* Whether any message declares a non-empty tools list (what the encoder
 * looks at to keep earlier reasoning). */
bool td_conv_has_tools(const td_conv *c);

/* ---- building ------------------------------------------------------------ */

/* Appends an empty message of the role; *msg stays valid until the next
 * td_conv_add or td_conv_insert on c. */
td_err td_conv_add(td_conv *c, td_conv_role role, td_conv_msg **msg);
/* Inserts an empty message at index i (0 <= i <= len). */
td_err td_conv_insert(td_conv *c, size_t i, td_conv_role role, td_conv_msg **msg);
td_err td_conv_set_content(td_conv_msg *m, const char *s, size_t n);
td_err td_conv_set_reasoning(td_conv_msg *m, const char *s, size_t n);
td_err td_conv_add_call(td_conv_msg *m, const char *id, const char *name,
                        const char *args, size_t args_len);
/* Declares a tool on m from an OpenAI function object {"name", "description",
 * "parameters", ...}. TD_EINVAL (err says why) if it has no string name. */
td_err td_conv_add_tool(td_conv_msg *m, const json_t *function, char *err, size_t errlen);

/* ---- from JSON ----------------------------------------------------------- */

enum {
    /* The official encoder's own message shape (its gold tests): roles
     * developer and latest_reminder as the encoder means them, per-message
     * `tools`, `task`, `wo_eos`, `response_format`. Without it, messages
     * are OpenAI's: "developer" is OpenAI's new name for "system". */
    TD_CONV_NATIVE = 1u << 0,
};

/* Appends a JSON array of messages to c. On TD_EINVAL err names the field
 * ("messages[2].tool_calls[0].function.name ..."). */
td_err td_conv_add_messages(td_conv *c, const json_t *messages, unsigned flags,
                            char *err, size_t errlen);

/* Builds a conversation from an OpenAI chat-completions body: messages,
 * tools, tool_choice, parallel_tool_calls, reasoning_effort and DeepSeek's
 * `thinking` {"type": "enabled"|"disabled"}. Tools go on the first system
 * message, or on an empty system message put first (what the official
 * encoder expects; see docs/serve.md). On TD_EINVAL *param names the
 * top-level field at fault and err says why. */
td_err td_conv_from_request(td_conv **out, const json_t *body, const char **param,
                            char *err, size_t errlen);

/* What an answer must be, from the conversation: a tool call when
 * tool_choice is "required" or names a function. The strings are the
 * caller's (td_conv_constraint_fini). */
typedef struct {
    char *tools;                 /* the tools array text, or NULL: no tool constraint */
    char *force_name;
    bool single, thinking;
} td_conv_constraint;

/* Fills *out (zeroed when nothing is forced) and checks that the grammar
 * compiles: TD_ENOTSUP/TD_EINVAL with err saying why (a 400). */
td_err td_conv_constraint_get(const td_conv *c, td_conv_constraint *out, char *err,
                              size_t errlen);
void td_conv_constraint_fini(td_conv_constraint *c);

/* ---- JSON text the way the encoder writes it ----------------------------- */

/* Appends v as Python's json.dumps(v, ensure_ascii=False) prints it: ", "
 * and ": " separators, keys in order, non-ASCII as is, floats in Python's
 * shortest repr. Returns -1 on allocation failure. */
int td_conv_json_dump(td_tok_bytes *out, const json_t *v);
/* Appends s[0..n) as a quoted JSON string, escaped as Python does. */
int td_conv_json_string(td_tok_bytes *out, const char *s, size_t n);
/* Appends n bytes (growing out); -1 on allocation failure. */
int td_conv_bytes_append(td_tok_bytes *out, const char *s, size_t n);

#endif
