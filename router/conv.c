/* The conversation model (router/conv.h): storage, building, and the two
 * JSON shapes it is read from (OpenAI requests and the official encoder's
 * message lists). The Python-style JSON writer is in conv_json.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/constrain.h"
#include "router/conv.h"

struct td_conv {
    td_conv_msg *msgs;
    size_t n, cap;
    td_conv_think think;
    td_conv_tool_choice choice;
    bool parallel;
};

/* ---- storage --------------------------------------------------------------- */

td_err td_conv_create(td_conv **out)
{
    td_conv *c = calloc(1, sizeof *c);
    if (!c)
        return TD_ENOMEM;
    c->parallel = true;
    *out = c;
    return TD_OK;
}

static void msg_free(td_conv_msg *m)
{
    free(m->content.s);
    free(m->reasoning.s);
    for (size_t i = 0; i < m->ncalls; i++) {
        free(m->calls[i].id);
        free(m->calls[i].name);
        free(m->calls[i].arguments.s);
    }
    free(m->calls);
    free(m->tool_call_id);
    for (size_t i = 0; i < m->ntools; i++) {
        free(m->tools[i].name);
        free(m->tools[i].description);
        free(m->tools[i].parameters);
        free(m->tools[i].schema);
    }
    free(m->tools);
    free(m->response_format);
}

void td_conv_destroy(td_conv *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        msg_free(&c->msgs[i]);
    free(c->msgs);
    free(c);
}

size_t td_conv_len(const td_conv *c) { return c->n; }
const td_conv_msg *td_conv_msg_at(const td_conv *c, size_t i) { return i < c->n ? &c->msgs[i] : NULL; }

bool td_conv_continue_last(td_conv *c)
{
    if (c->n == 0 || c->msgs[c->n - 1].role != TD_CONV_ASSISTANT)
        return false;
    c->msgs[c->n - 1].wo_eos = true;
    return true;
}
td_conv_think td_conv_get_think(const td_conv *c) { return c->think; }
void td_conv_set_think(td_conv *c, td_conv_think t) { c->think = t; }
td_conv_tool_choice td_conv_get_tool_choice(const td_conv *c) { return c->choice; }
bool td_conv_parallel_tool_calls(const td_conv *c) { return c->parallel; }

bool td_conv_has_tools(const td_conv *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->msgs[i].ntools)
            return true;
    return false;
}

td_err td_conv_insert(td_conv *c, size_t i, td_conv_role role, td_conv_msg **msg)
{
    if (i > c->n)
        return TD_EINVAL;
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 8;
        td_conv_msg *nm = realloc(c->msgs, nc * sizeof *nm);
        if (!nm)
            return TD_ENOMEM;
        c->msgs = nm;
        c->cap = nc;
    }
    memmove(&c->msgs[i + 1], &c->msgs[i], (c->n - i) * sizeof *c->msgs);
    c->n++;
    td_conv_msg *m = &c->msgs[i];
    memset(m, 0, sizeof *m);
    m->role = role;
    if (msg)
        *msg = m;
    return TD_OK;
}

td_err td_conv_add(td_conv *c, td_conv_role role, td_conv_msg **msg)
{
    return td_conv_insert(c, c->n, role, msg);
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static td_err set_str(td_conv_str *dst, const char *s, size_t n)
{
    char *d = dupn(s ? s : "", s ? n : 0);
    if (!d)
        return TD_ENOMEM;
    free(dst->s);
    dst->s = d;
    dst->len = s ? n : 0;
    return TD_OK;
}

td_err td_conv_set_content(td_conv_msg *m, const char *s, size_t n) { return set_str(&m->content, s, n); }
td_err td_conv_set_reasoning(td_conv_msg *m, const char *s, size_t n) { return set_str(&m->reasoning, s, n); }

td_err td_conv_add_call(td_conv_msg *m, const char *id, const char *name,
                        const char *args, size_t args_len)
{
    td_conv_call *nc = realloc(m->calls, (m->ncalls + 1) * sizeof *nc);
    if (!nc)
        return TD_ENOMEM;
    m->calls = nc;
    td_conv_call *c = &nc[m->ncalls];
    memset(c, 0, sizeof *c);
    c->id = dupn(id ? id : "", id ? strlen(id) : 0);
    c->name = dupn(name, strlen(name));
    td_err e = set_str(&c->arguments, args, args_len);
    m->ncalls++;  /* counted even when partly built, so msg_free frees it */
    return !c->id || !c->name ? TD_ENOMEM : e;
}

td_err td_conv_add_tool(td_conv_msg *m, const json_t *function, char *err, size_t errlen)
{
    const json_t *name = json_object_get(function, "name");
    const json_t *desc = json_object_get(function, "description");
    const json_t *params = json_object_get(function, "parameters");
    if (!json_is_object(function) || !json_is_string(name))
        return td_errf(err, errlen, TD_EINVAL, "a function must be an object with a "
                       "string name");
    if (desc && !json_is_string(desc) && !json_is_null(desc))
        return td_errf(err, errlen, TD_EINVAL, "function.description must be a string");
    if (params && !json_is_object(params) && !json_is_null(params))
        return td_errf(err, errlen, TD_EINVAL, "function.parameters must be an object");
    td_conv_tool *nt = realloc(m->tools, (m->ntools + 1) * sizeof *nt);
    if (!nt)
        return TD_ENOMEM;
    m->tools = nt;
    td_conv_tool *t = &nt[m->ntools++];
    memset(t, 0, sizeof *t);
    td_tok_bytes b = {0};
    t->name = dupn(json_string_value(name), json_string_length(name));
    if (json_is_string(desc))
        t->description = dupn(json_string_value(desc), json_string_length(desc));
    if (json_is_object(params) && td_conv_json_dump(&b, params) == 0) {
        t->parameters = b.data;
        b = (td_tok_bytes){0};
    }
    if (td_conv_json_dump(&b, function) == 0)
        t->schema = b.data;
    else
        td_tok_bytes_free(&b);
    if (!t->name || !t->schema || (json_is_string(desc) && !t->description) ||
        (json_is_object(params) && !t->parameters))
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    return TD_OK;
}

static int puts_(td_tok_bytes *b, const char *s) { return td_conv_bytes_append(b, s, strlen(s)); }

/* ---- messages from JSON ---------------------------------------------------- */

#define BAD(...) td_errf(err, errlen, TD_EINVAL, __VA_ARGS__)

/* A message's content as text. Parts are joined by "\n\n", the way the
 * encoder joins content blocks. Only text parts carry meaning to this
 * model; a tool result may hold others, which the encoder writes as
 * "[Unsupported {type}]", while elsewhere they are refused. */
static td_err flatten(const json_t *c, bool tool, int i, td_tok_bytes *out,
                      char *err, size_t errlen)
{
    if (json_is_string(c))
        return td_conv_bytes_append(out, json_string_value(c), json_string_length(c))
                   ? TD_ENOMEM : TD_OK;
    if (!json_is_array(c))
        return BAD("messages[%d].content must be a string or an array of content parts", i);
    size_t k;
    const json_t *part;
    json_array_foreach(c, k, part) {
        const json_t *type = json_object_get(part, "type");
        const json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type))
            return BAD("messages[%d].content[%zu] must be an object with a type", i, k);
        bool is_text = !strcmp(json_string_value(type), "text");
        if (is_text && !json_is_string(t))
            return BAD("messages[%d].content[%zu].text must be a string", i, k);
        if (!is_text && !tool)
            return BAD("messages[%d].content[%zu]: only text parts are supported "
                       "(type \"text\" with a string \"text\")", i, k);
        if (k > 0 && puts_(out, "\n\n"))
            return TD_ENOMEM;
        int rc = is_text ? td_conv_bytes_append(out, json_string_value(t), json_string_length(t))
                         : (puts_(out, "[Unsupported ") || puts_(out, json_string_value(type)) ||
                            puts_(out, "]"));
        if (rc)
            return TD_ENOMEM;
    }
    return TD_OK;
}

static td_err set_content(td_conv_msg *m, const json_t *c, bool tool, int i,
                          char *err, size_t errlen)
{
    td_tok_bytes b = {0};
    td_err e = flatten(c, tool, i, &b, err, errlen);
    if (!e)
        e = set_str(&m->content, b.data ? b.data : "", b.len);
    td_tok_bytes_free(&b);
    return e;
}

static td_err add_tools(td_conv_msg *m, const json_t *tools, const char *where,
                        const char *only, char *err, size_t errlen)
{
    if (!json_is_array(tools))
        return BAD("%s must be an array of tools", where);
    size_t k;
    const json_t *t;
    json_array_foreach(tools, k, t) {
        const json_t *type = json_object_get(t, "type");
        const json_t *fn = json_object_get(t, "function");
        if (!json_is_object(t) || (type && !(json_is_string(type) &&
                                            !strcmp(json_string_value(type), "function"))))
            return BAD("%s[%zu] must be an object with type \"function\"", where, k);
        if (!json_is_object(fn))
            return BAD("%s[%zu].function must be an object", where, k);
        const json_t *name = json_object_get(fn, "name");
        if (only && json_is_string(name) && strcmp(json_string_value(name), only))
            continue;
        char why[160];
        td_err e = td_conv_add_tool(m, fn, why, sizeof why);
        if (e)
            return td_errf(err, errlen, e, "%s[%zu]: %s", where, k, why);
    }
    return TD_OK;
}

static td_err add_calls(td_conv_msg *m, const json_t *calls, bool native, int i,
                        char *err, size_t errlen)
{
    if (!calls || json_is_null(calls))
        return TD_OK;
    if (!json_is_array(calls))
        return BAD("messages[%d].tool_calls must be an array", i);
    size_t k;
    const json_t *tc;
    json_array_foreach(calls, k, tc) {
        const json_t *fn = json_object_get(tc, "function");
        const json_t *name = json_object_get(fn, "name");
        const json_t *args = json_object_get(fn, "arguments");
        const json_t *id = json_object_get(tc, "id");
        if (native && !json_is_string(id))
            id = json_object_get(fn, "id");
        if (!json_is_object(tc) || !json_is_object(fn) || !json_is_string(name))
            return BAD("messages[%d].tool_calls[%zu] must be {\"type\": \"function\", "
                       "\"function\": {\"name\": ..., \"arguments\": ...}}", i, k);
        if (id && !json_is_string(id) && !json_is_null(id))
            return BAD("messages[%d].tool_calls[%zu].id must be a string", i, k);
        /* Arguments are a JSON string in OpenAI's format; an object (what
         * some clients send) is taken as that object. */
        td_tok_bytes b = {0};
        const char *a = "{}";
        size_t an = 2;
        if (json_is_string(args)) {
            a = json_string_value(args);
            an = json_string_length(args);
        } else if (json_is_object(args)) {
            if (td_conv_json_dump(&b, args))
                return TD_ENOMEM;
            a = b.data;
            an = b.len;
        } else if (args && !json_is_null(args)) {
            return BAD("messages[%d].tool_calls[%zu].function.arguments must be a "
                       "string", i, k);
        }
        td_err e = td_conv_add_call(m, json_is_string(id) ? json_string_value(id) : "",
                                    json_string_value(name), a, an);
        td_tok_bytes_free(&b);
        if (e)
            return e;
    }
    return TD_OK;
}

static const char *const task_names[] = {
    [TD_CONV_TASK_ACTION] = "action", [TD_CONV_TASK_QUERY] = "query",
    [TD_CONV_TASK_AUTHORITY] = "authority", [TD_CONV_TASK_DOMAIN] = "domain",
    [TD_CONV_TASK_TITLE] = "title", [TD_CONV_TASK_READ_URL] = "read_url",
};

/* Fields only the encoder's own message shape carries. */
static td_err native_fields(td_conv_msg *m, const json_t *j, int i, char *err, size_t errlen)
{
    const json_t *task = json_object_get(j, "task");
    if (task && !json_is_null(task)) {
        for (int t = TD_CONV_TASK_ACTION; t <= TD_CONV_TASK_READ_URL; t++)
            if (json_is_string(task) && !strcmp(json_string_value(task), task_names[t]))
                m->task = (td_conv_task)t;
        if (m->task == TD_CONV_TASK_NONE)
            return BAD("messages[%d].task is not one of action, query, authority, "
                       "domain, title, read_url", i);
    }
    m->wo_eos = json_is_true(json_object_get(j, "wo_eos"));
    const json_t *tools = json_object_get(j, "tools");
    if (tools && !json_is_null(tools)) {
        char where[48];
        snprintf(where, sizeof where, "messages[%d].tools", i);
        td_err e = add_tools(m, tools, where, NULL, err, errlen);
        if (e)
            return e;
    }
    const json_t *rf = json_object_get(j, "response_format");
    if (rf && !json_is_null(rf)) {
        td_tok_bytes b = {0};
        if (td_conv_json_dump(&b, rf))
            return TD_ENOMEM;
        m->response_format = b.data;
    }
    return TD_OK;
}

static td_err add_message(td_conv *c, const json_t *j, int i, unsigned flags,
                          char *err, size_t errlen)
{
    bool native = flags & TD_CONV_NATIVE;
    const json_t *rv = json_is_object(j) ? json_object_get(j, "role") : NULL;
    if (!json_is_string(rv))
        return BAD("messages[%d] must be an object with a string role", i);
    const char *rs = json_string_value(rv);
    td_conv_role role;
    if (!strcmp(rs, "system"))
        role = TD_CONV_SYSTEM;
    else if (!strcmp(rs, "developer"))
        role = native ? TD_CONV_DEVELOPER : TD_CONV_SYSTEM;
    else if (!strcmp(rs, "user"))
        role = TD_CONV_USER;
    else if (!strcmp(rs, "assistant"))
        role = TD_CONV_ASSISTANT;
    else if (!strcmp(rs, "tool"))
        role = TD_CONV_TOOL;
    else if (native && !strcmp(rs, "latest_reminder"))
        role = TD_CONV_LATEST_REMINDER;
    else
        return BAD("messages[%d].role '%s' is not supported (system, developer, user, "
                   "assistant, tool)", i, rs);

    const json_t *content = json_object_get(j, "content");
    bool has_content = content && !json_is_null(content);
    /* The encoder requires text for these roles (it asserts, or would write
     * "None"); system and assistant content may be missing. */
    if (!has_content && (role == TD_CONV_USER || role == TD_CONV_DEVELOPER ||
                         role == TD_CONV_LATEST_REMINDER))
        return BAD("messages[%d].content is required", i);
    td_conv_msg *m;
    td_err e = td_conv_add(c, role, &m);
    if (e)
        return e;
    if (has_content && (e = set_content(m, content, role == TD_CONV_TOOL, i, err, errlen)))
        return e;
    if (role == TD_CONV_DEVELOPER && m->content.len == 0)
        return BAD("messages[%d].content must not be empty", i);
    if (role == TD_CONV_ASSISTANT) {
        const json_t *r = json_object_get(j, "reasoning_content");
        if (r && !json_is_null(r) && !json_is_string(r))
            return BAD("messages[%d].reasoning_content must be a string", i);
        if (json_is_string(r) &&
            (e = set_str(&m->reasoning, json_string_value(r), json_string_length(r))))
            return e;
        if ((e = add_calls(m, json_object_get(j, "tool_calls"), native, i, err, errlen)))
            return e;
    }
    if (role == TD_CONV_TOOL) {
        const json_t *id = json_object_get(j, "tool_call_id");
        if (id && !json_is_null(id) && !json_is_string(id))
            return BAD("messages[%d].tool_call_id must be a string", i);
        m->tool_call_id = dupn(json_is_string(id) ? json_string_value(id) : "",
                               json_is_string(id) ? json_string_length(id) : 0);
        if (!m->tool_call_id)
            return TD_ENOMEM;
    }
    return native ? native_fields(m, j, i, err, errlen) : TD_OK;
}

td_err td_conv_add_messages(td_conv *c, const json_t *messages, unsigned flags,
                            char *err, size_t errlen)
{
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return BAD("messages must be a non-empty array");
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        td_err e = add_message(c, m, (int)i, flags, err, errlen);
        if (e == TD_ENOMEM)
            return td_errf(err, errlen, e, "out of memory");
        if (e)
            return e;
    }
    return TD_OK;
}

/* ---- an OpenAI request ------------------------------------------------------ */

static const json_t *field(const json_t *root, const char *name)
{
    const json_t *v = json_object_get(root, name);
    return json_is_null(v) ? NULL : v;
}

/* reasoning_effort → mode: "none"/"minimal" mean no reasoning; the preview
 * models have one ordinary level (Think High) and one maximal one (spec
 * §6.3), so OpenAI's low/medium/high map to High and max/xhigh to Max. */
static td_err parse_think(td_conv *c, const json_t *body, const char **param,
                          char *err, size_t errlen)
{
    const json_t *th = field(body, "thinking");
    const json_t *re = field(body, "reasoning_effort");
    c->think = TD_CONV_THINK_NONE;
    bool disabled = false;
    if (th) {
        const json_t *type = json_object_get(th, "type");
        const char *t = json_string_value(type);
        *param = "thinking";
        if (!json_is_object(th) || !t || (strcmp(t, "enabled") && strcmp(t, "disabled")))
            return BAD("thinking must be {\"type\": \"enabled\"} or {\"type\": \"disabled\"}");
        disabled = !strcmp(t, "disabled");
        if (!disabled)
            c->think = TD_CONV_THINK_HIGH;
    }
    if (re) {
        const char *s = json_string_value(re);
        *param = "reasoning_effort";
        if (!s)
            return BAD("reasoning_effort must be a string");
        if (!strcmp(s, "none") || !strcmp(s, "minimal"))
            c->think = TD_CONV_THINK_NONE;
        else if (!strcmp(s, "low") || !strcmp(s, "medium") || !strcmp(s, "high"))
            c->think = TD_CONV_THINK_HIGH;
        else if (!strcmp(s, "max") || !strcmp(s, "xhigh"))
            c->think = TD_CONV_THINK_MAX;
        else
            return BAD("reasoning_effort must be one of none, minimal, low, medium, high, "
                       "xhigh, max");
    }
    if (disabled)
        c->think = TD_CONV_THINK_NONE;
    return TD_OK;
}

/* Which tools reach the prompt, per tool_choice. Returns the named
 * function's name for a named choice (borrowed from body). */
static td_err parse_choice(td_conv *c, const json_t *body, const json_t *tools,
                           const char **named, char *err, size_t errlen)
{
    const json_t *tc = field(body, "tool_choice");
    *named = NULL;
    c->choice = TD_CONV_CHOICE_AUTO;
    if (!tc)
        return TD_OK;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "auto"))
            return TD_OK;
        if (!strcmp(s, "none")) {
            c->choice = TD_CONV_CHOICE_NONE;
            return TD_OK;
        }
        if (!strcmp(s, "required")) {
            c->choice = TD_CONV_CHOICE_REQUIRED;
            if (!tools)
                return BAD("tool_choice \"required\" needs tools");
            return TD_OK;
        }
        return BAD("tool_choice must be \"auto\", \"none\", \"required\" or "
                   "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    const json_t *name = json_object_get(json_object_get(tc, "function"), "name");
    if (!json_is_object(tc) || !json_is_string(name))
        return BAD("tool_choice must be \"auto\", \"none\", \"required\" or "
                   "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    size_t k;
    const json_t *t;
    json_array_foreach(tools, k, t) {
        const json_t *n = json_object_get(json_object_get(t, "function"), "name");
        if (json_is_string(n) && !strcmp(json_string_value(n), json_string_value(name))) {
            c->choice = TD_CONV_CHOICE_NAMED;
            *named = json_string_value(name);
            return TD_OK;
        }
    }
    return BAD("tool_choice names function '%s', which is not in tools",
               json_string_value(name));
}

td_err td_conv_from_request(td_conv **out, const json_t *body, const char **param,
                            char *err, size_t errlen)
{
    static const char *none = NULL;
    if (!param)
        param = &none;
    *param = NULL;
    td_conv *c;
    if (td_conv_create(&c))
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    td_err e;
    *param = "messages";
    if ((e = td_conv_add_messages(c, json_object_get(body, "messages"), 0, err, errlen)))
        goto fail;
    if ((e = parse_think(c, body, param, err, errlen)))
        goto fail;
    const json_t *ptc = field(body, "parallel_tool_calls");
    *param = "parallel_tool_calls";
    if (ptc && !json_is_boolean(ptc)) {
        e = BAD("parallel_tool_calls must be a boolean");
        goto fail;
    }
    c->parallel = !json_is_false(ptc);
    const json_t *tools = field(body, "tools");
    if (tools && json_is_array(tools) && json_array_size(tools) == 0)
        tools = NULL;  /* an empty list means no tools, as in the encoder */
    const char *named;
    *param = "tool_choice";
    if ((e = parse_choice(c, body, tools, &named, err, errlen)))
        goto fail;
    *param = "tools";
    if (tools && c->choice != TD_CONV_CHOICE_NONE) {
        /* The encoder reads tools off a message: the first system message,
         * else a new empty one in front (as vLLM and SGLang do for V4). */
        td_conv_msg *sys = NULL;
        for (size_t i = 0; i < c->n && !sys; i++)
            if (c->msgs[i].role == TD_CONV_SYSTEM)
                sys = &c->msgs[i];
        if (!sys && (e = td_conv_insert(c, 0, TD_CONV_SYSTEM, &sys)))
            goto fail;
        if ((e = add_tools(sys, tools, "tools", named, err, errlen)))
            goto fail;
    } else if (tools && !json_is_array(tools)) {
        e = BAD("tools must be an array of tools");
        goto fail;
    }
    *param = NULL;
    *out = c;
    return TD_OK;
fail:
    if (e == TD_ENOMEM)
        td_errf(err, errlen, e, "out of memory");
    td_conv_destroy(c);
    return e;
}

/* ---- constraints ---------------------------------------------------------- */

void td_conv_constraint_fini(td_conv_constraint *k)
{
    free(k->tools);
    free(k->force_name);
    memset(k, 0, sizeof *k);
}

td_err td_conv_constraint_get(const td_conv *c, td_conv_constraint *out, char *err,
                              size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (c->choice != TD_CONV_CHOICE_REQUIRED && c->choice != TD_CONV_CHOICE_NAMED)
        return TD_OK;
    /* The tools that reach the prompt (a named choice keeps only that one),
     * as an OpenAI tools array around the function objects. */
    td_tok_bytes b = {0};
    int bad = td_conv_bytes_append(&b, "[", 1);
    size_t n = 0;
    const char *name = NULL;
    for (size_t i = 0; i < c->n; i++)
        for (size_t t = 0; t < c->msgs[i].ntools; t++) {
            const td_conv_tool *tool = &c->msgs[i].tools[t];
            if (n++)
                bad |= td_conv_bytes_append(&b, ",", 1);
            static const char head[] = "{\"type\":\"function\",\"function\":";
            bad |= td_conv_bytes_append(&b, head, sizeof head - 1);
            bad |= td_conv_bytes_append(&b, tool->schema, strlen(tool->schema));
            bad |= td_conv_bytes_append(&b, "}", 1);
            name = tool->name;
        }
    bad |= td_conv_bytes_append(&b, "]", 1);  /* NUL-terminated (td_tok_bytes) */
    if (bad) {
        td_tok_bytes_free(&b);
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    }
    out->tools = b.data;
    out->single = !c->parallel;
    out->thinking = c->think != TD_CONV_THINK_NONE;
    if (c->choice == TD_CONV_CHOICE_NAMED && name && !(out->force_name = strdup(name))) {
        td_conv_constraint_fini(out);
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    }
    td_cons_grammar *g;
    td_cons_tools_opts o = {.force_name = out->force_name, .single = out->single};
    td_err e = td_cons_grammar_tools(&g, out->tools, strlen(out->tools), &o, err, errlen);
    if (e) {
        td_conv_constraint_fini(out);
        return e;
    }
    td_cons_grammar_destroy(g);
    return TD_OK;
}
