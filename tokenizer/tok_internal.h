/* Internals of the tokenizer, shared by its source files and unit tests. */
#ifndef TD_TOKENIZER_INTERNAL_H
#define TD_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* ---- hash tables (tok_hash.c) ------------------------------------------ */

/* Byte string -> int32. Keys are copied into the map's own arena. */
typedef struct {
    char *keys;              /* arena of key bytes */
    size_t keys_len, keys_cap;
    struct tok_strent {
        uint64_t off;        /* key offset in `keys` */
        uint32_t len;
        uint32_t hash;
        int32_t val;
    } *ents;
    size_t n, ents_cap;
    int32_t *slots;          /* entry index, -1 = empty; power-of-two size */
    size_t mask;
} tok_strmap;

/* Returns 0 when inserted, 1 when the key was there (its value is then
 * replaced and the old one stored in *old if non-NULL), -1 on ENOMEM. */
int tok_strmap_put(tok_strmap *m, const void *key, size_t len, int32_t val,
                   int32_t *old);
bool tok_strmap_get(const tok_strmap *m, const void *key, size_t len,
                    int32_t *val);
void tok_strmap_clear(tok_strmap *m); /* empties it, keeps the memory */
void tok_strmap_free(tok_strmap *m);
uint64_t tok_hash_bytes(const void *p, size_t len);

/* uint64 -> (int32 a, int32 b). The key UINT64_MAX is reserved. */
typedef struct {
    struct tok_pairent {
        uint64_t key;
        int32_t a, b;
    } *slots;
    size_t n, mask;
} tok_pairmap;

int tok_pairmap_put(tok_pairmap *m, uint64_t key, int32_t a, int32_t b);

static inline uint64_t tok_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Inline because BPE calls it for every adjacent pair it looks at. */
static inline const struct tok_pairent *tok_pairmap_get(const tok_pairmap *m,
                                                        uint64_t key)
{
    if (!m->slots)
        return NULL;
    for (size_t i = tok_mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        const struct tok_pairent *e = &m->slots[i];
        if (e->key == key)
            return e;
        if (e->key == UINT64_MAX)
            return NULL;
    }
}
void tok_pairmap_free(tok_pairmap *m);

/* ---- character classes (tok_pretok.c) ---------------------------------- */

enum {
    TOK_C_L      = 1 << 0,  /* \p{L} */
    TOK_C_M      = 1 << 1,  /* \p{M} */
    TOK_C_N      = 1 << 2,  /* \p{N} */
    TOK_C_P      = 1 << 3,  /* \p{P} */
    TOK_C_S      = 1 << 4,  /* \p{S} */
    TOK_C_WS     = 1 << 5,  /* \s: Unicode White_Space */
    TOK_C_CRLF   = 1 << 6,  /* \r or \n */
    TOK_C_CJK    = 1 << 7,  /* [一-龥぀-ゟ゠-ヿ] */
    TOK_C_APUNCT = 1 << 8,  /* the ASCII punctuation class of alternative 1 */
    TOK_C_ALPHA  = 1 << 9,  /* [A-Za-z] */
    TOK_C_SPACE  = 1 << 10, /* U+0020 */
};

/* Class bits of a code point (-1 = a byte that is not valid UTF-8). */
unsigned tok_char_class(int32_t cp);

/* Decodes one UTF-8 character strictly (no overlongs, surrogates or values
 * past U+10FFFF). Returns its length; on invalid input returns 1 and sets
 * *cp = -1 so that the byte is treated as a character of its own. */
size_t tok_utf8_next(const uint8_t *s, size_t n, int32_t *cp);

/* ---- the tokenizer ----------------------------------------------------- */

/* Byte trie of added-token strings. */
typedef struct {
    tok_pairmap edges;       /* (node << 8 | byte) -> (child node, 0) */
    int32_t *term;           /* node -> token id ending here, or -1 */
    size_t nnodes, cap;
    bool first[256];         /* bytes that start some token */
} tok_trie;

enum {
    TOK_ID_VALID   = 1 << 0,
    TOK_ID_ADDED   = 1 << 1,
    TOK_ID_SPECIAL = 1 << 2,
};

struct td_tok {
    int32_t n_ids;           /* one past the largest id */
    uint8_t *id_flags;       /* TOK_ID_* per id */
    uint64_t *piece_off;     /* n_ids + 1 offsets into piece_data */
    char *piece_data;        /* decoded bytes of every id */

    tok_strmap vocab;        /* model vocab spelling ("Ġthe") -> id */
    tok_strmap added;        /* added-token content -> id */
    tok_strmap raw_vocab;    /* decoded bytes -> id, only for ignore_merges */

    int32_t byte_id[256];    /* id of each single-byte symbol, -1 if none */
    tok_pairmap merges;      /* (left << 32 | right) -> (rank, merged id) */
    bool ignore_merges;

    /* Non-normalised added tokens are matched first over the whole text,
     * then normalised ones in what is left, as HF does (two passes). */
    tok_trie trie[2];
    uint16_t ascii_class[128];
};

/* The GPT-2 byte <-> code point table of the ByteLevel steps. */
uint32_t tok_byte_to_cp(uint8_t b);

/* Splits one stretch of text (between added tokens) into the pieces of the
 * V4 pre-tokenizer, calling fn for each, left to right. Stops early when fn
 * returns nonzero and returns that value. */
typedef int (*tok_piece_fn)(void *ctx, const uint8_t *s, size_t n);
int tok_pretokenize(const td_tok *tok, const uint8_t *s, size_t n,
                    tok_piece_fn fn, void *ctx);

/* BPE of one piece; appends its ids to out. Scratch memory is the caller's
 * (grown as needed, freed with tok_bpe_scratch_free). */
typedef struct {
    int32_t *sym;            /* symbol ids */
    int32_t *rank;           /* rank of the pair starting at each symbol */
    int32_t *prev, *next;    /* linked list (large pieces) */
    uint64_t *heap;          /* (rank << 32 | pos) min-heap (large pieces) */
    size_t cap, heap_cap;
} tok_bpe_scratch;

enum { TOK_BPE_AUTO, TOK_BPE_SMALL, TOK_BPE_HEAP };
td_err tok_bpe(const td_tok *tok, const uint8_t *s, size_t n, int mode,
               tok_bpe_scratch *sc, td_tok_ids *out);
void tok_bpe_scratch_free(tok_bpe_scratch *sc);

td_err tok_ids_reserve(td_tok_ids *v, size_t extra);
/* Appends n bytes (or, with p NULL, makes room for n bytes and counts them
 * as written) and keeps the buffer NUL-terminated. */
td_err tok_bytes_append(td_tok_bytes *b, const void *p, size_t n);

/* Trie helpers (tok_encode.c), used by the loader. */
td_err tok_trie_add(tok_trie *t, const uint8_t *s, size_t n, int32_t id);
void tok_trie_free(tok_trie *t);

#endif
