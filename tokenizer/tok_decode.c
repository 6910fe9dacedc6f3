/* Decoding: ids -> bytes (each id's bytes were worked out at load time),
 * the streaming decoder, and the small lookups of the public API. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static bool id_valid(const td_tok *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids && (tok->id_flags[id] & TOK_ID_VALID);
}

static bool skipped(const td_tok *tok, int32_t id, unsigned flags)
{
    return (flags & TD_TOK_SKIP_SPECIAL) &&
           (tok->id_flags[id] & TOK_ID_SPECIAL);
}

td_err tok_bytes_append(td_tok_bytes *b, const void *p, size_t n)
{
    if (b->cap - b->len <= n || !b->data) {
        if (n > SIZE_MAX / 2 - b->len)
            return TD_ENOMEM;
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len <= n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return TD_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (p && n) /* p == NULL: just make room for n bytes */
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return TD_OK;
}

void td_tok_bytes_free(td_tok_bytes *b)
{
    if (!b)
        return;
    free(b->data);
    *b = (td_tok_bytes){0};
}

td_err td_tok_decode(const td_tok *tok, const int32_t *ids, size_t n,
                     unsigned flags, td_tok_bytes *out, char *err,
                     size_t errlen)
{
    if (!tok || !out || (!ids && n))
        return td_errf(err, errlen, TD_EINVAL,
                       "td_tok_decode: NULL tokenizer, ids or output");
    /* Check every id and size the result first so a bad id leaves out
     * untouched and the copy needs a single allocation. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!id_valid(tok, ids[i]))
            return td_errf(err, errlen, TD_ERANGE,
                           "tokenizer: id %d (position %zu) is not in the "
                           "vocabulary (%d ids)", ids[i], i, tok->n_ids);
        if (!skipped(tok, ids[i], flags))
            total += tok->piece_off[ids[i] + 1] - tok->piece_off[ids[i]];
    }
    size_t before = out->len;
    if (tok_bytes_append(out, NULL, total))
        return td_errf(err, errlen, TD_ENOMEM,
                       "tokenizer: decoding %zu ids: out of memory", n);
    char *dst = out->data + before;
    for (size_t i = 0; i < n; i++) {
        if (skipped(tok, ids[i], flags))
            continue;
        size_t off = tok->piece_off[ids[i]];
        size_t len = tok->piece_off[ids[i] + 1] - off;
        memcpy(dst, tok->piece_data + off, len);
        dst += len;
    }
    return TD_OK;
}

int32_t td_tok_vocab_size(const td_tok *tok)
{
    return tok->n_ids;
}

td_err td_tok_token_to_id(const td_tok *tok, const char *str, size_t len,
                          int32_t *id)
{
    if (tok_strmap_get(&tok->added, str, len, id) ||
        tok_strmap_get(&tok->vocab, str, len, id))
        return TD_OK;
    return TD_ENOENT;
}

td_err td_tok_id_to_piece(const td_tok *tok, int32_t id, const char **piece,
                          size_t *len)
{
    if (!id_valid(tok, id))
        return TD_ERANGE;
    *piece = tok->piece_data + tok->piece_off[id];
    *len = tok->piece_off[id + 1] - tok->piece_off[id];
    return TD_OK;
}

bool td_tok_is_added(const td_tok *tok, int32_t id)
{
    return id_valid(tok, id) && (tok->id_flags[id] & TOK_ID_ADDED);
}

bool td_tok_is_special(const td_tok *tok, int32_t id)
{
    return id_valid(tok, id) && (tok->id_flags[id] & TOK_ID_SPECIAL);
}

/* ---- streaming --------------------------------------------------------- */

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Length of the UTF-8 sequence a lead byte starts (0: never a lead). */
static size_t seq_len(uint8_t b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf)
        return 2;
    if (b >= 0xe0 && b <= 0xef)
        return 3;
    if (b >= 0xf0 && b <= 0xf4)
        return 4;
    return 0;
}

/* Whether c may follow the lead byte `lead` as continuation byte k (k >= 1);
 * the second byte's range excludes overlongs, surrogates and > U+10FFFF. */
static bool cont_ok(uint8_t lead, size_t k, uint8_t c)
{
    uint8_t lo = 0x80, hi = 0xbf;
    if (k == 1) {
        if (lead == 0xe0)
            lo = 0xa0;
        else if (lead == 0xed)
            hi = 0x9f;
        else if (lead == 0xf0)
            lo = 0x90;
        else if (lead == 0xf4)
            hi = 0x8f;
    }
    return c >= lo && c <= hi;
}

/* Moves the complete text of buf[0..n) to s->out, replacing each maximal
 * invalid subpart by U+FFFD (the rule of Rust's from_utf8_lossy), and keeps
 * a trailing incomplete-but-valid prefix in s->pending. */
static td_err stream_emit(td_tok_stream *s, const uint8_t *buf, size_t n)
{
    size_t i = 0, run = 0; /* run: start of valid text not yet copied */
    while (i < n) {
        size_t need = seq_len(buf[i]), k = 1;
        if (need == 1) {
            i++;
            continue;
        }
        while (need && k < need && i + k < n && cont_ok(buf[i], k, buf[i + k]))
            k++;
        if (need && k == need) {
            i += k;
            continue;
        }
        td_err err = tok_bytes_append(&s->out, buf + run, i - run);
        if (err)
            return err;
        if (need && i + k == n) {
            /* Valid so far and cut off by the end: wait for more. */
            memcpy(s->pending, buf + i, k);
            s->npending = k;
            return TD_OK;
        }
        if ((err = tok_bytes_append(&s->out, replacement, 3)))
            return err;
        i += k; /* k >= 1 */
        run = i;
    }
    s->npending = 0;
    return tok_bytes_append(&s->out, buf + run, n - run);
}

void td_tok_stream_init(td_tok_stream *s, const td_tok *tok, unsigned flags)
{
    *s = (td_tok_stream){.tok = tok, .flags = flags};
}

td_err td_tok_stream_push(td_tok_stream *s, int32_t id, const char **text,
                          size_t *len, char *err, size_t errlen)
{
    const td_tok *tok = s->tok;
    s->out.len = 0;
    *text = "";
    *len = 0;
    if (!tok)
        return td_errf(err, errlen, TD_EINVAL,
                       "td_tok_stream_push: stream not initialised");
    if (!id_valid(tok, id))
        return td_errf(err, errlen, TD_ERANGE,
                       "tokenizer: id %d is not in the vocabulary (%d ids)",
                       id, tok->n_ids);
    if (skipped(tok, id, s->flags))
        return TD_OK;
    const uint8_t *piece = (const uint8_t *)tok->piece_data + tok->piece_off[id];
    size_t plen = tok->piece_off[id + 1] - tok->piece_off[id];
    td_err rc;
    if (s->npending) {
        /* Join the held bytes with the new piece. The held sequence needs
         * at most 3 more bytes, so only the head of the piece is copied;
         * the rest is processed in place once the head is resolved. */
        uint8_t head[8];
        size_t take = plen < 4 ? plen : 4;
        size_t held = s->npending;
        memcpy(head, s->pending, held);
        memcpy(head + held, piece, take);
        size_t need = seq_len(head[0]), k = 1;
        while (k < need && k < held + take && cont_ok(head[0], k, head[k]))
            k++;
        if (k == need) {
            rc = tok_bytes_append(&s->out, head, k);
        } else if (k == held + take) {
            rc = stream_emit(s, head, k); /* still incomplete: holds it */
            goto done;
        } else {
            rc = tok_bytes_append(&s->out, replacement, 3);
        }
        if (rc)
            goto done;
        /* Bytes of the piece used by the held sequence (k - held may be
         * <= 0 when it was cut short by an invalid byte). */
        size_t used = k > held ? k - held : 0;
        s->npending = 0;
        rc = stream_emit(s, piece + used, plen - used);
    } else {
        rc = stream_emit(s, piece, plen);
    }
done:
    if (rc)
        return td_errf(err, errlen, rc, "tokenizer: stream decode: %s",
                       td_strerror(rc));
    *text = s->out.data ? s->out.data : "";
    *len = s->out.len;
    return TD_OK;
}

void td_tok_stream_flush(td_tok_stream *s, const char **text, size_t *len)
{
    s->out.len = 0;
    *text = "";
    *len = 0;
    if (s->npending && !tok_bytes_append(&s->out, replacement, 3)) {
        *text = s->out.data;
        *len = s->out.len;
    }
    s->npending = 0;
}

void td_tok_stream_free(td_tok_stream *s)
{
    td_tok_bytes_free(&s->out);
    s->npending = 0;
}
