/* The step function: one symbol through the matcher's stack of frames.
 *
 * Each frame is a node of the compiled grammar plus its small state (a, b,
 * c). The top frame takes the symbol, and says what happened: consumed it
 * (R_OK), consumed it and ended (R_DONE), ended without it so the frame
 * below must take it (R_POP), became another node (R_AGAIN, anyOf picking
 * an alternative by the first byte), or pushed a child that must take it
 * (R_PUSH). Nothing allocates; the stack is bounded by CONS_MAX_FRAMES.
 */
#include <string.h>

#include "constrain/cons_int.h"

enum { R_REJ, R_OK, R_DONE, R_POP, R_AGAIN, R_PUSH };

/* Object and array phases (low byte of c; the whitespace run above it). */
enum { P_OPEN, P_FIRST, P_KEY, P_COLON, P_VALUE, P_AFTER, P_NEXT, P_ELEM };
/* Number phases */
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
/* DSML block phases */
enum { B_OPEN, B_INV, B_NAME, B_PFIRST, B_PNAME, B_ATTR, B_VAL_RAW, B_VAL_JSON,
       B_PCLOSE, B_PCLOSE_RAW, B_PNEXT, B_AFTER_INV };

static bool is_ws(int c) { return c == ' ' || c == '\n' || c == '\t'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_esc(int c) { return c && strchr("\"\\/bfnrt", c) != NULL; }

static int push(cons_state *s, int32_t node)
{
    if (s->depth >= CONS_MAX_FRAMES)
        return R_REJ;
    s->f[s->depth++] = (cons_frame){node, 0, 0, 0};
    return R_PUSH;
}

/* The child of trie node cur on sym that leads to a string in `viable`. */
static int32_t trie_child(const td_cons_grammar *g, int32_t cur, int sym, uint64_t viable)
{
    for (int32_t c = g->tn[cur].child; c > 0; c = g->tn[c].next)
        if (g->tn[c].sym == sym)
            return (g->tn[c].sub & viable) ? c : -1;
    return -1;
}

/* Properties from cursor a that may come next: up to the first required. */
static uint64_t range_from(uint32_t a, uint32_t count, uint64_t req)
{
    if (a >= count)
        return 0;
    uint64_t from = ~0ull << a;
    uint64_t r = req & from;
    uint64_t upto = r ? (r & -r) : (count >= 64 ? ~0ull : ((1ull << count) - 1));
    if (r)
        upto = upto | (upto - 1);
    return from & upto;
}

static bool req_left(uint32_t a, uint64_t req) { return a < 64 && (req >> a) != 0; }

/* ---- UTF-8 and the ｜DSML｜ text check, shared by strings --------------- */

/* b: bits 0-1 continuation bytes still due, bits 2-4 the range of the next
 * one, bits 8-15 the ｜DSML｜ DFA state. Returns false on a bad byte. */
static bool text_byte(const uint8_t (*kmp)[256], bool dsml, uint32_t *b, int c)
{
    uint32_t due = *b & 3, rng = (*b >> 2) & 7, k = (*b >> 8) & 0xff;
    if (due) {
        static const uint8_t lo[5] = {0x80, 0xA0, 0x80, 0x90, 0x80};
        static const uint8_t hi[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
        if (c < lo[rng] || c > hi[rng])
            return false;
        due--;
        rng = 0;
    } else if (c >= 0x80) {
        if (c >= 0xC2 && c <= 0xDF) due = 1;
        else if (c == 0xE0) { due = 2; rng = 1; }
        else if (c == 0xED) { due = 2; rng = 2; }
        else if (c >= 0xE1 && c <= 0xEF) due = 2;
        else if (c == 0xF0) { due = 3; rng = 3; }
        else if (c == 0xF4) { due = 3; rng = 4; }
        else if (c >= 0xF1 && c <= 0xF3) due = 3;
        else return false;
    }
    if (dsml) {
        k = kmp[k][c];
        if (k >= 10)
            return false;
    }
    *b = due | rng << 2 | k << 8;
    return true;
}

static int st_string(const uint8_t (*kmp)[256], bool dsml, cons_frame *f, int c)
{
    if (c > 255)
        return R_REJ;
    switch (f->c) {
    case S_OPEN:
        if (c != '"')
            return R_REJ;
        f->c = S_BODY;
        return R_OK;
    case S_BODY:
        if ((f->b & 3) == 0) {
            if (c == '"')
                return R_DONE;
            if (c < 0x20)
                return R_REJ;
            if (c == '\\')
                f->c = S_ESC;
        }
        return text_byte(kmp, dsml, &f->b, c) ? R_OK : R_REJ;
    case S_ESC:
        if (c == 'u') {
            f->c = S_HEX;
            f->a = 0;
        } else if (!is_esc(c)) {
            return R_REJ;
        } else {
            f->c = S_BODY;
        }
        return text_byte(kmp, dsml, &f->b, c) ? R_OK : R_REJ;
    default: {  /* S_HEX: a = digits so far | 8 nonzero seen | 16 first was d */
        if (!is_hex(c))
            return R_REJ;
        uint32_t k = f->a & 7;
        bool d = c == 'd' || c == 'D';
        if (k == 0 && d)
            f->a |= 16;
        if (k == 1 && (f->a & 16) && c >= '8')
            return R_REJ;  /* a surrogate half: jansson refuses a lone one */
        if (c != '0')
            f->a |= 8;
        if (k == 3 && !(f->a & 8))
            return R_REJ;  /* \u0000 */
        f->a = (f->a & ~7u) | (k + 1);
        if (k == 3)
            f->c = S_BODY;
        return text_byte(kmp, dsml, &f->b, c) ? R_OK : R_REJ;
    }
    }
}

static int st_rawstr(const uint8_t (*kmp)[256], cons_frame *f, int c)
{
    /* a: 1 after '<', 2 after "</": ｜DSML｜ then closes the parameter. */
    if (c == SYM_DSML)
        return f->a == 2 ? R_POP : R_REJ;
    if (c > 255 || c == 0)
        return R_REJ;
    if (!text_byte(kmp, true, &f->b, c))
        return R_REJ;
    f->a = c == '<' ? 1 : (c == '/' && f->a == 1) ? 2 : 0;
    return R_OK;
}

static int st_number(cons_frame *f, int c, bool integer)
{
    bool dig = is_digit(c);
    switch (f->c) {
    case N_START:
        if (c == '-') { f->c = N_MINUS; return R_OK; }
        /* fall through */
    case N_MINUS:
        if (c == '0') { f->c = N_ZERO; return R_OK; }
        if (dig) { f->c = N_INT; f->b = 1; return R_OK; }
        return R_REJ;
    case N_INT:
        if (dig && f->b < CONS_INT_DIGITS) { f->b++; return R_OK; }
        /* fall through */
    case N_ZERO:
        if (!integer && c == '.') { f->c = N_DOT; return R_OK; }
        if (!integer && (c == 'e' || c == 'E')) { f->c = N_E; return R_OK; }
        return R_POP;
    case N_DOT:
        if (dig) { f->c = N_FRAC; f->b = 1; return R_OK; }
        return R_REJ;
    case N_FRAC:
        if (dig && f->b < CONS_INT_DIGITS) { f->b++; return R_OK; }
        if (c == 'e' || c == 'E') { f->c = N_E; return R_OK; }
        return R_POP;
    case N_E:
        if (c == '+' || c == '-') { f->c = N_ESIGN; return R_OK; }
        /* fall through */
    case N_ESIGN:
        if (dig) { f->c = N_EXP; f->b = 1; return R_OK; }
        return R_REJ;
    default:  /* N_EXP */
        if (dig && f->b < CONS_EXP_DIGITS) { f->b++; return R_OK; }
        return R_POP;
    }
}

static int st_lit(const td_cons_grammar *g, const cons_node *n, cons_frame *f, int c)
{
    int32_t cur = f->a ? (int32_t)f->a : n->trie;
    int32_t ch = trie_child(g, cur, c, ~0ull);
    if (ch < 0)
        return g->tn[cur].term >= 0 ? R_POP : R_REJ;
    f->a = (uint32_t)ch;
    return g->tn[ch].term >= 0 && g->tn[ch].child <= 0 ? R_DONE : R_OK;
}

static int st_anyof(const td_cons_grammar *g, const cons_node *n, cons_state *s,
                    cons_frame *f, int c)
{
    if (c > 255)
        return R_REJ;
    for (int32_t i = 0; i < n->count; i++) {
        int32_t alt = g->alts[n->first + i];
        const cons_node *an = &g->nodes[alt];
        if (!((an->fs[c >> 6] >> (c & 63)) & 1))
            continue;
        /* A container needs room for a child below it. */
        if ((an->kind == K_OBJECT || an->kind == K_ARRAY) && s->depth >= CONS_MAX_FRAMES)
            return R_REJ;
        *f = (cons_frame){alt, 0, 0, 0};
        return R_AGAIN;
    }
    return R_REJ;
}

static int st_object(const td_cons_grammar *g, const cons_node *n, cons_state *s,
                     cons_frame *f, int c)
{
    uint32_t ph = f->c & 0xff, ws = f->c >> 8;
    if (is_ws(c) && ph != P_OPEN && ph != P_KEY) {
        if (ws >= CONS_WS_MAX)
            return R_REJ;
        f->c += 256;
        return R_OK;
    }
    f->c = ph;
    uint64_t more = n->additional ? 1 : range_from(f->a, (uint32_t)n->count, n->req);
    bool can_close = n->additional || !req_left(f->a, n->req);
    switch (ph) {
    case P_OPEN:
        if (c != '{')
            return R_REJ;
        f->c = P_FIRST;
        return R_OK;
    case P_FIRST:
    case P_NEXT:
        if (c == '}' && ph == P_FIRST && can_close)
            return R_DONE;
        if (c != '"' || !more)
            return R_REJ;
        if (n->additional) {
            f->c = P_COLON;
            return push(s, n->first);   /* the key: a string node */
        }
        f->c = P_KEY;
        f->b = 0;
        /* fall through */
    case P_KEY: {
        int32_t ch = trie_child(g, f->b ? (int32_t)f->b : n->trie, c, more);
        if (ch < 0)
            return R_REJ;
        f->b = (uint32_t)ch;
        if (g->tn[ch].term >= 0) {
            f->b = (uint32_t)g->tn[ch].term;
            f->a = f->b + 1;
            f->c = P_COLON;
        }
        return R_OK;
    }
    case P_COLON:
        if (c != ':')
            return R_REJ;
        f->c = P_VALUE;
        return R_OK;
    case P_VALUE:
        f->c = P_AFTER;
        return push(s, n->additional ? n->items : g->props[n->first + (int32_t)f->b].node);
    default:  /* P_AFTER */
        if (c == '}' && can_close)
            return R_DONE;
        if (c == ',' && more) {
            f->c = P_NEXT;
            return R_OK;
        }
        return R_REJ;
    }
}

static int st_array(const cons_node *n, cons_state *s, cons_frame *f, int c)
{
    uint32_t ph = f->c & 0xff, ws = f->c >> 8;
    if (is_ws(c) && ph != P_OPEN) {
        if (ws >= CONS_WS_MAX)
            return R_REJ;
        f->c += 256;
        return R_OK;
    }
    f->c = ph;
    switch (ph) {
    case P_OPEN:
        if (c != '[')
            return R_REJ;
        f->c = P_FIRST;
        return R_OK;
    case P_FIRST:
        if (c == ']')
            return R_DONE;
        /* fall through */
    case P_ELEM:
        f->c = P_AFTER;
        return push(s, n->items);
    default:  /* P_AFTER */
        if (c == ']')
            return R_DONE;
        if (c != ',')
            return R_REJ;
        f->c = P_ELEM;
        return R_OK;
    }
}

/* A step through one of the block's fixed tries; *term gets the string's
 * index when it ends. */
static int block_trie(const td_cons_grammar *g, cons_frame *f, int32_t root, int c,
                      uint64_t viable, int32_t *term)
{
    int32_t ch = trie_child(g, f->b ? (int32_t)f->b : root, c, viable);
    if (ch < 0)
        return R_REJ;
    *term = g->tn[ch].term;
    f->b = *term >= 0 ? 0 : (uint32_t)ch;
    return R_OK;
}

static int st_block(const td_cons_grammar *g, const cons_node *n, cons_state *s,
                    cons_frame *f, int c)
{
    /* a: tool << 16 | parameter cursor; b: trie node; c: phase | invokes << 8 */
    uint32_t ph = f->c & 0xff, inv = f->c >> 8;
    uint32_t tool = f->a >> 16, cur = f->a & 0xffff;
    const cons_tool *t = &g->tools[n->first + (int32_t)tool];
    int32_t term = -1;
    int r;
    uint64_t pviable = (cur < (uint32_t)t->count ? 1 : 0) | (req_left(cur, t->req) ? 0 : 2);
    switch (ph) {
    case B_OPEN:
        r = block_trie(g, f, g->t_open, c, ~0ull, &term);
        if (term >= 0)
            f->c = B_INV | inv << 8;
        return r;
    case B_INV:
        r = block_trie(g, f, g->t_inv, c, ~0ull, &term);
        if (term >= 0)
            f->c = B_NAME | inv << 8;
        return r;
    case B_NAME:
        r = block_trie(g, f, n->trie, c, ~0ull, &term);
        if (term >= 0) {
            f->a = (uint32_t)term << 16;
            f->c = B_PFIRST | inv << 8;
        }
        return r;
    case B_PFIRST:
    case B_PNEXT:
        r = block_trie(g, f, ph == B_PFIRST ? g->t_pfirst : g->t_pnext, c, pviable, &term);
        if (term == 0)
            f->c = B_PNAME | inv << 8;
        else if (term == 1)
            f->c = B_AFTER_INV | (inv + 1) << 8;
        return r;
    case B_PNAME:
        r = block_trie(g, f, t->names, c, range_from(cur, (uint32_t)t->count, t->req), &term);
        if (term >= 0) {
            f->a = tool << 16 | (uint32_t)(term + 1);
            f->c = B_ATTR | inv << 8;
        }
        return r;
    case B_ATTR: {
        const cons_prop *p = &g->props[t->first + (int32_t)cur - 1];
        r = block_trie(g, f, g->t_attr, c, (p->raw >= 0 ? 1 : 0) | (p->node >= 0 ? 2 : 0), &term);
        if (term >= 0)
            f->c = (term == 0 ? B_VAL_RAW : B_VAL_JSON) | inv << 8;
        return r;
    }
    case B_VAL_RAW:
    case B_VAL_JSON: {
        const cons_prop *p = &g->props[t->first + (int32_t)cur - 1];
        int32_t v = ph == B_VAL_RAW ? p->raw : p->node;
        if (g->nodes[v].kind == K_RAWSTR) {
            f->c = B_PCLOSE_RAW | inv << 8;
            f->b = (uint32_t)g->t_pclose_mid;
        } else {
            f->c = B_PCLOSE | inv << 8;
        }
        return push(s, v);
    }
    case B_PCLOSE:
    case B_PCLOSE_RAW:
        r = block_trie(g, f, g->t_pclose, c, ~0ull, &term);
        if (term >= 0)
            f->c = B_PNEXT | inv << 8;
        return r;
    default:  /* B_AFTER_INV */
        r = block_trie(g, f, g->t_ainv, c, (g->single ? 0 : 1) | 2, &term);
        if (term == 0)
            f->c = B_NAME | inv << 8;
        return term == 1 ? R_DONE : r;
    }
}

static int st_root(const cons_node *n, cons_state *s, cons_frame *f, int c)
{
    switch (f->c) {
    case RT_THINK:
        if (c == SYM_THINK_END)
            f->c = RT_START;
        return c < 256 || c == SYM_THINK_END ? R_OK : R_REJ;
    case RT_START:
        f->c = RT_END;
        return push(s, n->items);
    case RT_END:
        if (c != SYM_EOS)
            return R_REJ;
        f->c = RT_FIN;
        return R_OK;
    default:
        return R_REJ;
    }
}

void cons_state_init(const td_cons_grammar *g, cons_state *s, bool thinking)
{
    s->depth = 1;
    s->f[0] = (cons_frame){g->root, 0, 0, thinking ? RT_THINK : RT_START};
}

bool cons_step(const td_cons_grammar *g, cons_state *s, int sym)
{
    while (s->depth) {
        cons_frame *f = &s->f[s->depth - 1];
        const cons_node *n = &g->nodes[f->node];
        int r;
        switch ((cons_kind)n->kind) {
        case K_ROOT: r = st_root(n, s, f, sym); break;
        case K_ANYOF: r = st_anyof(g, n, s, f, sym); break;
        case K_OBJECT: r = sym > 255 ? R_REJ : st_object(g, n, s, f, sym); break;
        case K_ARRAY: r = sym > 255 ? R_REJ : st_array(n, s, f, sym); break;
        case K_STRING: r = st_string(g->kmp, n->dsml, f, sym); break;
        case K_NUMBER:
        case K_INTEGER: r = st_number(f, sym, n->kind == K_INTEGER); break;
        case K_LIT: r = st_lit(g, n, f, sym); break;
        case K_RAWSTR: r = st_rawstr(g->kmp, f, sym); break;
        case K_BLOCK: r = st_block(g, n, s, f, sym); break;
        default: r = R_REJ; break;
        }
        switch (r) {
        case R_OK: return true;
        case R_DONE: s->depth--; return true;
        case R_POP: s->depth--; break;
        case R_AGAIN:
        case R_PUSH: break;
        default: return false;
        }
    }
    return false;
}

int cons_utf8_slot(uint32_t b)
{
    /* b & 31 = due | range << 2: nothing due, or one of the 7 ways to be
     * inside a character */
    static const int8_t slot[32] = {
        [0] = 0, [1] = 1, [2] = 2, [6] = 3, [10] = 4, [3] = 5, [15] = 6, [19] = 7,
        [4] = -1, [5] = -1, [7] = -1, [8] = -1, [9] = -1, [11] = -1, [12] = -1, [13] = -1,
        [14] = -1, [16] = -1, [17] = -1, [18] = -1, [20] = -1, [21] = -1, [22] = -1,
        [23] = -1, [24] = -1, [25] = -1, [26] = -1, [27] = -1, [28] = -1, [29] = -1,
        [30] = -1, [31] = -1,
    };
    return (b >> 8) ? -1 : slot[b & 31];
}

bool cons_text_inside(const uint8_t (*kmp)[256], int what, int slot, const uint8_t *s, size_t n)
{
    static const uint32_t b0[CONS_UTF8_SLOTS] = {0, 1, 2, 6, 10, 3, 15, 19};
    cons_frame f = {0, 0, b0[slot], S_BODY};
    for (size_t i = 0; i < n; i++) {
        int r = what == 2 ? st_rawstr(kmp, &f, s[i]) : st_string(kmp, what == 1, &f, s[i]);
        if (r != R_OK)
            return false;
    }
    return true;
}

void cons_kmp_init(uint8_t kmp[10][256])
{
    /* The DFA of the text ｜DSML｜ (KMP): state j = bytes matched. */
    static const uint8_t pat[10] = {0xEF, 0xBD, 0x9C, 'D', 'S', 'M', 'L', 0xEF, 0xBD, 0x9C};
    memset(kmp, 0, 10 * 256);
    kmp[0][pat[0]] = 1;
    for (int j = 1, x = 0; j < 10; j++) {
        for (int c = 0; c < 256; c++)
            kmp[j][c] = kmp[x][c];
        kmp[j][pat[j]] = (uint8_t)(j + 1);
        x = kmp[x][pat[j]];
    }
}
