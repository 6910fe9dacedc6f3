/* The V4 pre-tokenizer, hand-written for exactly its three Split regexes
 * (tok_load.c checks that the file holds these and no others):
 *
 *   1. \p{N}{1,3}
 *   2. [一-龥぀-ゟ゠-ヿ]+
 *   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
 *      | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *      | ?[\p{P}\p{S}]+[\r\n]*
 *      | \s*[\r\n]+
 *      | \s+(?!\S)
 *      | \s+
 *
 * Each Split is "Isolated": a match becomes a piece, the text between
 * matches stays as pieces, and each step runs on every piece of the step
 * before. The regex engine (Oniguruma in HF) searches leftmost-first and
 * backtracks; the matcher below reproduces what that backtracking settles
 * on, alternative by alternative, without ever scanning a stretch of text
 * more than a constant number of times, so pathological inputs (100 KB of
 * spaces) stay linear.
 */
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

uint32_t tok_byte_to_cp(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)
        return b;
    /* The 68 other bytes take U+0100, U+0101, ... in ascending order. */
    if (b <= 0x20)
        return 256u + b;
    if (b <= 0xa0)
        return 256u + 33 + (b - 0x7fu);
    return 256u + 67; /* 0xad */
}

size_t tok_utf8_next(const uint8_t *s, size_t n, int32_t *cp)
{
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if (b >= 0xc2 && b <= 0xdf) {
        len = 2, c = b & 0x1f, min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
        len = 3, c = b & 0x0f, min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4, c = b & 0x07, min = 0x10000;
    } else {
        goto bad;
    }
    if (n < len)
        goto bad;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            goto bad;
        c = c << 6 | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        goto bad;
    *cp = (int32_t)c;
    return len;
bad:
    *cp = -1;
    return 1;
}

/* Oniguruma's \s in Unicode mode is the White_Space property. */
static bool is_white_space(int32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 ||
           cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* Characters assigned in Unicode 15.1 and 16.0, which HF's Oniguruma knows
 * and libutf8proc 2.x (Unicode 15.0) reports as unassigned. Found by
 * running HF's V4 pre-tokenizer on every code point ("a" c "a" and cccc
 * tell L/M, N and P/S apart; the matcher never needs L vs M or P vs S)
 * and diffing with tok_char_class. Only consulted for unassigned code
 * points, so a newer libutf8proc takes over by itself. */
static const struct {
    uint32_t lo, hi;
    uint16_t cls;
} newer_chars[] = {
    {0x897, 0x897, TOK_C_L}, {0x1B4E, 0x1B4F, TOK_C_P},
    {0x1B7F, 0x1B7F, TOK_C_P}, {0x1C89, 0x1C8A, TOK_C_L},
    {0x2427, 0x2429, TOK_C_P}, {0x2FFC, 0x2FFF, TOK_C_P},
    {0x31E4, 0x31E5, TOK_C_P}, {0x31EF, 0x31EF, TOK_C_P},
    {0xA7CB, 0xA7CD, TOK_C_L}, {0xA7DA, 0xA7DC, TOK_C_L},
    {0x105C0, 0x105F3, TOK_C_L}, {0x10D40, 0x10D49, TOK_C_N},
    {0x10D4A, 0x10D65, TOK_C_L}, {0x10D69, 0x10D6D, TOK_C_L},
    {0x10D6E, 0x10D6E, TOK_C_P}, {0x10D6F, 0x10D85, TOK_C_L},
    {0x10D8E, 0x10D8F, TOK_C_P}, {0x10EC2, 0x10EC4, TOK_C_L},
    {0x10EFC, 0x10EFC, TOK_C_L}, {0x11380, 0x11389, TOK_C_L},
    {0x1138B, 0x1138B, TOK_C_L}, {0x1138E, 0x1138E, TOK_C_L},
    {0x11390, 0x113B5, TOK_C_L}, {0x113B7, 0x113C0, TOK_C_L},
    {0x113C2, 0x113C2, TOK_C_L}, {0x113C5, 0x113C5, TOK_C_L},
    {0x113C7, 0x113CA, TOK_C_L}, {0x113CC, 0x113D3, TOK_C_L},
    {0x113D4, 0x113D5, TOK_C_P}, {0x113D7, 0x113D8, TOK_C_P},
    {0x113E1, 0x113E2, TOK_C_L}, {0x116D0, 0x116E3, TOK_C_N},
    {0x11BC0, 0x11BE0, TOK_C_L}, {0x11BE1, 0x11BE1, TOK_C_P},
    {0x11BF0, 0x11BF9, TOK_C_N}, {0x11F5A, 0x11F5A, TOK_C_L},
    {0x13460, 0x143FA, TOK_C_L}, {0x16100, 0x1612F, TOK_C_L},
    {0x16130, 0x16139, TOK_C_N}, {0x16D40, 0x16D6C, TOK_C_L},
    {0x16D6D, 0x16D6F, TOK_C_P}, {0x16D70, 0x16D79, TOK_C_N},
    {0x18CFF, 0x18CFF, TOK_C_L}, {0x1CC00, 0x1CCEF, TOK_C_P},
    {0x1CCF0, 0x1CCF9, TOK_C_N}, {0x1CD00, 0x1CEB3, TOK_C_P},
    {0x1E5D0, 0x1E5F0, TOK_C_L}, {0x1E5F1, 0x1E5FA, TOK_C_N},
    {0x1E5FF, 0x1E5FF, TOK_C_P}, {0x1F8B2, 0x1F8BB, TOK_C_P},
    {0x1F8C0, 0x1F8C1, TOK_C_P}, {0x1FA89, 0x1FA89, TOK_C_P},
    {0x1FA8F, 0x1FA8F, TOK_C_P}, {0x1FABE, 0x1FABE, TOK_C_P},
    {0x1FAC6, 0x1FAC6, TOK_C_P}, {0x1FADC, 0x1FADC, TOK_C_P},
    {0x1FADF, 0x1FADF, TOK_C_P}, {0x1FAE9, 0x1FAE9, TOK_C_P},
    {0x1FBCB, 0x1FBEF, TOK_C_P}, {0x2EBF0, 0x2EE5D, TOK_C_L},
};

static unsigned newer_class(int32_t cp)
{
    size_t lo = 0, hi = sizeof newer_chars / sizeof *newer_chars;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)cp < newer_chars[mid].lo)
            hi = mid;
        else if ((uint32_t)cp > newer_chars[mid].hi)
            lo = mid + 1;
        else
            return newer_chars[mid].cls;
    }
    return 0;
}

unsigned tok_char_class(int32_t cp)
{
    if (cp < 0)
        return 0; /* an invalid byte: no class, like an unassigned char */
    unsigned c = 0;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        c |= TOK_C_L;
        break;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        c |= TOK_C_M;
        break;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        c |= TOK_C_N;
        break;
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        c |= TOK_C_P;
        break;
    case UTF8PROC_CATEGORY_SM: case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK: case UTF8PROC_CATEGORY_SO:
        c |= TOK_C_S;
        break;
    case UTF8PROC_CATEGORY_CN:
        c |= newer_class(cp);
        break;
    default:
        break;
    }
    if (is_white_space(cp))
        c |= TOK_C_WS;
    if (cp == '\r' || cp == '\n')
        c |= TOK_C_CRLF;
    if ((cp >= 0x4e00 && cp <= 0x9fa5) || (cp >= 0x3040 && cp <= 0x30ff))
        c |= TOK_C_CJK;
    if ((cp >= 0x21 && cp <= 0x2f) || (cp >= 0x3a && cp <= 0x40) ||
        (cp >= 0x5b && cp <= 0x60) || (cp >= 0x7b && cp <= 0x7e))
        c |= TOK_C_APUNCT;
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z'))
        c |= TOK_C_ALPHA;
    if (cp == ' ')
        c |= TOK_C_SPACE;
    return c;
}

/* One piece of text being split. */
typedef struct {
    const td_tok *tok;
    const uint8_t *s;
    size_t n;
} span;

/* Class and byte length of the character at i (i < n). */
static inline size_t char_at(const span *t, size_t i, unsigned *cls)
{
    if (t->s[i] < 0x80) {
        *cls = t->tok->ascii_class[t->s[i]];
        return 1;
    }
    int32_t cp;
    size_t len = tok_utf8_next(t->s + i, t->n - i, &cp);
    *cls = tok_char_class(cp);
    return len;
}

/* End of the run of characters with any of `mask`'s classes from i. */
static size_t run_end(const span *t, size_t i, unsigned mask)
{
    while (i < t->n) {
        unsigned c;
        size_t len = char_at(t, i, &c);
        if (!(c & mask))
            break;
        i += len;
    }
    return i;
}

/* The whitespace alternatives, at p whose character is \s. */
static size_t match_space(const span *t, size_t p)
{
    size_t e = p, last = p, after_crlf = 0;
    while (e < t->n) {
        unsigned c;
        size_t len = char_at(t, e, &c);
        if (!(c & TOK_C_WS))
            break;
        if (c & TOK_C_CRLF)
            after_crlf = e + len;
        last = e;
        e += len;
    }
    /* \s*[\r\n]+ : \s* gives back characters until a CR or LF follows,
     * so the match ends after the run's last CR/LF. */
    if (after_crlf)
        return after_crlf - p;
    /* \s+(?!\S) : at the end of the piece the whole run; before a non-space
     * all but the run's last character, which needs two or more. */
    if (e == t->n || last == p)
        return e - p; /* the whole run; for one character this is \s+ */
    return last - p;
}

/* Length of the step-3 match at p, or 0 when no alternative matches. */
static size_t match_at(const span *t, size_t p)
{
    unsigned c0, c1 = 0;
    size_t q = p + char_at(t, p, &c0);
    if (q < t->n)
        char_at(t, q, &c1);

    /* [ASCII punct][A-Za-z]+ */
    if ((c0 & TOK_C_APUNCT) && (c1 & TOK_C_ALPHA))
        return run_end(t, q, TOK_C_ALPHA) - p;

    /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ : a letter starts the run
     * itself; another allowed character prefixes a following run; a lone
     * mark is matched by the run when the optional prefix backtracks. */
    if (c0 & TOK_C_L)
        return run_end(t, q, TOK_C_L | TOK_C_M) - p;
    if (!(c0 & (TOK_C_CRLF | TOK_C_P | TOK_C_S))) {
        if (c1 & (TOK_C_L | TOK_C_M))
            return run_end(t, q, TOK_C_L | TOK_C_M) - p;
        if (c0 & TOK_C_M)
            return q - p;
    }

    /*  ?[\p{P}\p{S}]+[\r\n]* */
    size_t r = p;
    unsigned cr = c0;
    if (c0 & TOK_C_SPACE)
        r = q, cr = c1;
    if (r < t->n && (cr & (TOK_C_P | TOK_C_S))) {
        size_t e = run_end(t, r, TOK_C_P | TOK_C_S);
        return run_end(t, e, TOK_C_CRLF) - p;
    }

    if (c0 & TOK_C_WS)
        return match_space(t, p);
    return 0;
}

/* Step 3 over one piece of steps 1-2. */
static int split_words(const span *t, tok_piece_fn fn, void *ctx)
{
    size_t p = 0, gap = 0;
    int rc;
    while (p < t->n) {
        size_t m = match_at(t, p);
        if (!m) {
            unsigned c;
            p += char_at(t, p, &c);
            continue;
        }
        if (gap < p && (rc = fn(ctx, t->s + gap, p - gap)))
            return rc;
        if ((rc = fn(ctx, t->s + p, m)))
            return rc;
        p += m;
        gap = p;
    }
    if (gap < t->n)
        return fn(ctx, t->s + gap, t->n - gap);
    return 0;
}

int tok_pretokenize(const td_tok *tok, const uint8_t *s, size_t n,
                    tok_piece_fn fn, void *ctx)
{
    /* Steps 1 and 2 in one scan: \p{N} and the CJK ranges are disjoint, so
     * the pieces are runs of up to three numbers, runs of CJK, and runs of
     * everything else. */
    const span all = {tok, s, n};
    size_t i = 0;
    int rc;
    while (i < n) {
        unsigned c;
        size_t start = i;
        i += char_at(&all, i, &c);
        if (c & TOK_C_N) {
            for (int k = 1; k < 3 && i < n; k++) {
                size_t len = char_at(&all, i, &c);
                if (!(c & TOK_C_N))
                    break;
                i += len;
            }
            /* Step 3 matches nothing in a piece of numbers: it stays whole. */
            if ((rc = fn(ctx, s + start, i - start)))
                return rc;
            continue;
        }
        unsigned kind = c & TOK_C_CJK;
        while (i < n) {
            size_t len = char_at(&all, i, &c);
            if ((c & TOK_C_N) || (c & TOK_C_CJK) != kind)
                break;
            i += len;
        }
        const span piece = {tok, s + start, i - start};
        if ((rc = split_words(&piece, fn, ctx)))
            return rc;
    }
    return 0;
}
