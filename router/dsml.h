/* td_dsml: an incremental parser of DeepSeek-V4 model output.
 *
 * Fed decoded text in pieces of any size (split anywhere: inside a marker,
 * inside a UTF-8 character), it reports what the output means as it goes:
 * reasoning (before </think> in thinking mode), content, and tool calls from
 * <｜DSML｜tool_calls> blocks (spec v4-architecture.md §6.5). A tool call
 * is reported as it completes: its start (index and name) once the invoke
 * header is read, its arguments as JSON fragments (a string parameter's
 * value streams as it arrives, escaped; a JSON parameter comes whole once
 * validated), then its end. The fragments of one call concatenate to
 * {"k": v, ...} with the official parser's ", " / ": " separators.
 *
 * Text that might be the start of a marker is held back until it is decided
 * (at most a marker's length, plus an unfinished UTF-8 character), so what
 * is reported never has to be taken back, with one exception: a block that
 * turns out malformed (or ends early) after a call was started reports
 * TD_DSML_CALL_ABORT for that call. The raw text from the start of the bad
 * call (or of the block, if no call in it completed) is then reported as
 * content, and everything after it is content too. Nothing here can fail
 * on bad input; only allocation can.
 */
#ifndef TD_ROUTER_DSML_H
#define TD_ROUTER_DSML_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

typedef enum {
    TD_DSML_REASONING,   /* text: a piece of reasoning */
    TD_DSML_CONTENT,     /* text: a piece of the answer */
    TD_DSML_CALL_BEGIN,  /* index; text: the function name */
    TD_DSML_CALL_ARGS,   /* index; text: the next fragment of the arguments JSON */
    TD_DSML_CALL_END,    /* index: the call is complete and valid */
    TD_DSML_CALL_ABORT,  /* index: the call turned out malformed; disregard it */
} td_dsml_kind;

typedef struct {
    td_dsml_kind kind;
    int index;           /* tool calls: 0, 1, ... in order over the output */
    const char *text;    /* valid during the callback; not NUL-terminated */
    size_t len;
} td_dsml_event;

typedef void (*td_dsml_cb)(void *arg, const td_dsml_event *ev);

typedef struct {
    bool thinking;       /* the prompt ended with <think>: reasoning comes first */
    bool tools;          /* parse tool-call blocks (else they are content) */
} td_dsml_opts;

typedef struct {
    int calls;           /* tool calls completed (CALL_END) */
    int aborted;         /* tool calls started and then aborted */
    bool malformed;      /* a block was malformed and became content */
    bool truncated;      /* the output ended inside a block */
    bool in_reasoning;   /* the output ended before </think> */
} td_dsml_result;

typedef struct td_dsml td_dsml;

td_err td_dsml_create(td_dsml **out, const td_dsml_opts *opts, td_dsml_cb cb, void *arg);
void td_dsml_destroy(td_dsml *p);
/* Parses s[0..n); events are reported from inside the call. */
td_err td_dsml_feed(td_dsml *p, const char *s, size_t n);
/* The output is over (EOS, a length limit or a stop string): reports what
 * was held back (an unfinished block becomes content, an unfinished UTF-8
 * character U+FFFD) and fills *r. Feeding after this is a no-op. */
td_err td_dsml_finish(td_dsml *p, td_dsml_result *r);

#endif
