/* td_cons: grammar-constrained sampling masks.
 *
 * A request that must produce a tool call (tool_choice "required" or a named
 * function) or JSON (response_format json_object / json_schema) is decoded
 * with a matcher: before each sampling step the engine asks for the mask of
 * token ids the grammar allows next, sets the logits of every other id to
 * -inf, samples, and advances the matcher with the picked id.
 *
 *   td_cons_vocab    built once per tokenizer: every token's bytes in a trie,
 *                    and the ids of the few added tokens a grammar names
 *                    (EOS, ｜DSML｜, </think>). Immutable, shareable.
 *   td_cons_grammar  compiled once per request shape (a JSON schema, or a
 *                    tool list): immutable, independent of the vocabulary.
 *   td_cons_matcher  per request: a bounded pushdown state. mask/advance
 *                    allocate nothing.
 *
 * The alphabet is bytes plus added tokens as atomic symbols: an added token
 * is allowed only where the grammar names it (the ｜DSML｜ marker, EOS at
 * the end), never as the bytes of its text, and no ordinary token may spell
 * one of those markers instead. docs/constrain.md has the design and the
 * JSON Schema subset.
 */
#ifndef TD_CONSTRAIN_H
#define TD_CONSTRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "tokenizer/tokenizer.h"

typedef struct td_cons_vocab td_cons_vocab;
typedef struct td_cons_grammar td_cons_grammar;
typedef struct td_cons_matcher td_cons_matcher;

/* ---- vocabulary ---------------------------------------------------------- */

/* Builds the token trie of tok (borrowed only during the call). */
td_err td_cons_vocab_create(td_cons_vocab **out, const td_tok *tok, char *err, size_t errlen);
void td_cons_vocab_destroy(td_cons_vocab *v);
/* Bits in a mask: the tokenizer's vocabulary size (129,280 for V4). */
int32_t td_cons_vocab_size(const td_cons_vocab *v);
/* uint64_t words a mask needs: (size + 63) / 64. Bit i of word i / 64 is
 * token id i. */
size_t td_cons_mask_words(const td_cons_vocab *v);

/* ---- grammars ------------------------------------------------------------ */

/* JSON output: schema[0..len) is a JSON Schema (the subset in
 * docs/constrain.md), or schema NULL for json_object (any JSON object).
 * The value is followed by EOS. An unsupported keyword is refused with
 * TD_ENOTSUP and a message naming it and where it is; malformed input with
 * TD_EINVAL. */
td_err td_cons_grammar_json(td_cons_grammar **out, const char *schema, size_t len,
                            char *err, size_t errlen);

typedef struct {
    const char *force_name;  /* only this function may be called; NULL: any */
    bool single;             /* one invoke per block (parallel_tool_calls false) */
} td_cons_tools_opts;

/* A DeepSeek-V4 DSML tool-call block (spec v4-architecture.md §6.2, §6.5),
 * written exactly as the chat encoder renders one, then EOS. tools[0..len)
 * is an OpenAI tools array: [{"type":"function","function":{"name":...,
 * "parameters":{JSON Schema of an object}}}] (the flat Responses shape,
 * {"type":"function","name":...,"parameters":...}, is taken too). Each
 * invoke names one tool; its parameters come in the schema's property order,
 * every required one present; a string value is written raw
 * (string="true"), any other as JSON (string="false"). */
td_err td_cons_grammar_tools(td_cons_grammar **out, const char *tools, size_t len,
                             const td_cons_tools_opts *opts, char *err, size_t errlen);
void td_cons_grammar_destroy(td_cons_grammar *g);

/* ---- matchers ------------------------------------------------------------ */

typedef struct {
    /* The prompt ended with <think>: free reasoning (any ordinary token)
     * comes first, up to the </think> token; the grammar starts after it. */
    bool thinking;
} td_cons_matcher_opts;

/* g and v are borrowed and must outlive the matcher. opts may be NULL.
 * TD_ENOENT if the grammar names a token v lacks (EOS, ｜DSML｜, </think>). */
td_err td_cons_matcher_create(td_cons_matcher **out, const td_cons_grammar *g,
                              const td_cons_vocab *v, const td_cons_matcher_opts *opts,
                              char *err, size_t errlen);
void td_cons_matcher_destroy(td_cons_matcher *m);
/* Back to the start, as just created. */
void td_cons_matcher_reset(td_cons_matcher *m);

/* Fills mask (td_cons_mask_words words) with the ids allowed next. Every
 * allowed id leads to a state from which the grammar can still complete.
 * All zero once EOS was taken. */
void td_cons_mask(td_cons_matcher *m, uint64_t *mask);
/* Sets logits[i] to -INFINITY for every id i < n the mask does not allow
 * (n: the logits row, which may be longer or shorter than the vocabulary;
 * ids past the vocabulary are never allowed). */
void td_cons_mask_logits(const uint64_t *mask, const td_cons_vocab *v, float *logits, int32_t n);
/* Takes one generated id. TD_EINVAL (state unchanged) if the mask would not
 * allow it, TD_ERANGE for an id outside the vocabulary. */
td_err td_cons_advance(td_cons_matcher *m, int32_t token);
/* Whether the output may end here: EOS is allowed, or was taken. */
bool td_cons_done(const td_cons_matcher *m);

#endif
