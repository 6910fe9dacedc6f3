/* Byte-level BPE tokenizer for DeepSeek-V4 `tokenizer.json` files.
 *
 * Loading reads a Hugging Face `tokenizer.json` of the V4 shape (empty
 * normalizer, the three Split regexes + ByteLevel pre-tokenizer, a BPE
 * model, ByteLevel decoder) and refuses any other shape with a message that
 * names the field, rather than tokenising differently from the reference.
 *
 * A loaded td_tok is immutable: any number of threads may encode and decode
 * with the same one at once. Scratch memory lives in each call, and results
 * go into caller-owned growable buffers (td_tok_ids, td_tok_bytes) that the
 * functions append to, so a prompt can be built from several segments.
 */
#ifndef TD_TOKENIZER_H
#define TD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct td_tok td_tok;

/* A growable array of token ids. Zero-initialise it; free with
 * td_tok_ids_free. Encoding appends at `len`. */
typedef struct {
    int32_t *ids;
    size_t len;
    size_t cap;
} td_tok_ids;

/* A growable byte buffer, always NUL-terminated when data is non-NULL (the
 * terminator is not counted in len; the bytes themselves may contain NULs).
 * Zero-initialise it; free with td_tok_bytes_free. Decoding appends. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} td_tok_bytes;

void td_tok_ids_free(td_tok_ids *v);
void td_tok_bytes_free(td_tok_bytes *b);

enum {
    /* encode: take added-token strings ("<｜User｜>", "<think>"...) in the
     * text as ordinary text instead of emitting their ids. The default
     * (flag clear) matches them, as Hugging Face does; a server uses this
     * flag for untrusted user content. */
    TD_TOK_PLAIN_TEXT = 1u << 0,
    /* decode: drop added tokens flagged "special" (BOS, EOS, placeholders),
     * like HF's skip_special_tokens. Chat markers such as <｜User｜> are not
     * special in V4 and are kept. */
    TD_TOK_SKIP_SPECIAL = 1u << 1,
};

td_err td_tok_load(td_tok **out, const char *path, char *err, size_t errlen);
/* Same, from a tokenizer.json already in memory (len bytes, no NUL needed). */
td_err td_tok_load_buffer(td_tok **out, const char *json, size_t len,
                          char *err, size_t errlen);
void td_tok_destroy(td_tok *tok);

/* Appends the ids of text[0..len) to out. Any bytes are accepted: invalid
 * UTF-8 is tokenised byte by byte, so decode(encode(x)) == x whenever the
 * vocabulary holds all 256 byte symbols (it does for V4). */
td_err td_tok_encode(const td_tok *tok, const char *text, size_t len,
                     unsigned flags, td_tok_ids *out, char *err, size_t errlen);

/* Appends the bytes of ids[0..n) to out. The result is the exact byte
 * string (it may be invalid UTF-8 if the ids split a character); an id
 * outside the vocabulary is an error (TD_ERANGE) and out is left as it was. */
td_err td_tok_decode(const td_tok *tok, const int32_t *ids, size_t n,
                     unsigned flags, td_tok_bytes *out, char *err,
                     size_t errlen);

/* Number of id slots: one more than the largest id (129,280 for V4, the
 * embedding rows), counting model vocab and added tokens. */
int32_t td_tok_vocab_size(const td_tok *tok);

/* Id of a token string: an added token's content ("<｜User｜>") or a model
 * vocab entry in its tokenizer.json spelling ("Ġthe"). TD_ENOENT if none. */
td_err td_tok_token_to_id(const td_tok *tok, const char *str, size_t len,
                          int32_t *id);

/* The bytes an id decodes to (" the" for "Ġthe"; an added token's content
 * as is). *piece points into tok and lives as long as it. TD_ERANGE if the
 * id is not in the vocabulary. */
td_err td_tok_id_to_piece(const td_tok *tok, int32_t id, const char **piece,
                          size_t *len);

/* Whether an id is an added token (matched before pre-tokenisation), and
 * whether it is flagged special. False for ids not in the vocabulary. */
bool td_tok_is_added(const td_tok *tok, int32_t id);
bool td_tok_is_special(const td_tok *tok, int32_t id);

/* Streaming decoder: feed ids one at a time as they are generated and get
 * back only complete UTF-8 text. Bytes of a character split across tokens
 * are held until the character is complete; bytes that can never form a
 * valid character come out as U+FFFD (as HF's lossy decode does). The
 * struct is plain data: declare one, td_tok_stream_init it, and
 * td_tok_stream_free it. */
typedef struct {
    const td_tok *tok;
    unsigned flags;        /* TD_TOK_SKIP_SPECIAL or 0 */
    uint8_t pending[4];    /* start of an incomplete UTF-8 sequence */
    size_t npending;
    td_tok_bytes out;      /* text of the last call */
} td_tok_stream;

void td_tok_stream_init(td_tok_stream *s, const td_tok *tok, unsigned flags);
/* Decodes one more id. *text and *len give the newly completed text (maybe
 * empty); it stays valid until the next call on s. */
td_err td_tok_stream_push(td_tok_stream *s, int32_t id, const char **text,
                          size_t *len, char *err, size_t errlen);
/* Ends the stream: returns what is still held back (as U+FFFD, since it
 * never completed) and resets s for reuse. */
void td_tok_stream_flush(td_tok_stream *s, const char **text, size_t *len);
void td_tok_stream_free(td_tok_stream *s);

#endif
