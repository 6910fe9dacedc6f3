/* Internals shared by the constrain/ files: the compiled grammar (nodes and
 * literal tries), the matcher state and the step function. */
#ifndef TD_CONSTRAIN_CONS_INT_H
#define TD_CONSTRAIN_CONS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "constrain/constrain.h"

/* Symbols: bytes 0..255, then the added tokens a grammar may name. */
enum { SYM_EOS = 256, SYM_DSML = 257, SYM_THINK_END = 258, SYM_COUNT = 259 };

#define CONS_MAX_FRAMES 32   /* matcher stack: root, block, values */
#define CONS_MAX_NEST 24     /* schema nesting refused past this */
#define CONS_MAX_PROPS 64    /* properties of one object / parameters of one tool */
#define CONS_WS_MAX 16       /* whitespace bytes in a row between JSON tokens */
#define CONS_INT_DIGITS 15   /* digits before the point, after it */
#define CONS_EXP_DIGITS 2    /* digits of an exponent */

typedef enum {
    K_ROOT, K_ANYOF, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER,
    K_LIT, K_RAWSTR, K_BLOCK,
} cons_kind;

/* A literal trie node (g->tn; index 0 is a dummy, so 0 can mean "at the
 * root" in a frame). Children are a sibling list. `sub` has bit t set when
 * a string with terminal index t (< 64; more share bit 63) ends below. */
typedef struct {
    int16_t sym;
    int32_t child, next;
    int32_t term;            /* index of the string ending here, or -1 */
    uint64_t sub;
} cons_tnode;

typedef struct {
    uint8_t kind;
    bool dsml;               /* inside a DSML value: strings may not spell ｜DSML｜ */
    int32_t trie;            /* K_LIT: literals; K_OBJECT: keys; K_BLOCK: tool names */
    int32_t items;           /* K_ARRAY: elements; K_OBJECT (additional): values; K_ROOT: main */
    int32_t first, count;    /* K_OBJECT: g->props; K_ANYOF: g->alts; K_BLOCK: g->tools */
    bool additional;         /* K_OBJECT: any string keys, values `items` */
    uint64_t req;            /* K_OBJECT: required properties */
    uint64_t fs[4];          /* bytes that can start it */
} cons_node;

typedef struct {
    int32_t node;            /* JSON value (string="false" for DSML), or -1 */
    int32_t raw;             /* DSML string="true" value, or -1 */
} cons_prop;

typedef struct {
    int32_t first, count;    /* g->props */
    int32_t names;           /* trie of `NAME" string="` */
    uint64_t req;
} cons_tool;

struct td_cons_grammar {
    cons_node *nodes; int32_t nnodes, cnodes;
    cons_tnode *tn; int32_t ntn, ctn;
    cons_prop *props; int32_t nprops, cprops;
    int32_t *alts; int32_t nalts, calts;
    cons_tool *tools; int32_t ntools, ctools;
    int32_t root;
    bool tools_mode, single;
    /* DSML block tries */
    int32_t t_open, t_inv, t_pfirst, t_pnext, t_attr, t_pclose, t_pclose_mid, t_ainv;
    uint8_t kmp[10][256];    /* DFA of the byte text of ｜DSML｜; state 10 = found */
};

typedef struct {
    int32_t node;
    uint32_t a, b, c;
} cons_frame;

typedef struct {
    uint32_t depth;
    cons_frame f[CONS_MAX_FRAMES];
} cons_state;

static inline void cons_state_copy(cons_state *dst, const cons_state *src)
{
    dst->depth = src->depth;
    for (uint32_t i = 0; i < src->depth; i++)
        dst->f[i] = src->f[i];
}

/* String phases (K_STRING's c) */
enum { S_OPEN, S_BODY, S_ESC, S_HEX };
/* Root frame phases */
enum { RT_THINK, RT_START, RT_END, RT_FIN };

void cons_state_init(const td_cons_grammar *g, cons_state *s, bool thinking);
/* Consumes one symbol; false (s then undefined) if the grammar refuses it. */
bool cons_step(const td_cons_grammar *g, cons_state *s, int sym);
void cons_kmp_init(uint8_t kmp[10][256]);
#define CONS_UTF8_SLOTS 8
/* A string frame's b as one of CONS_UTF8_SLOTS: where it is in a UTF-8
 * character; -1 if a partial ｜DSML｜ is pending too. */
int cons_utf8_slot(uint32_t b);
/* Whether s[0..n) is taken whole by a string frame in its body at UTF-8
 * slot `slot` (what: 0 a JSON string, 1 one in a DSML value, 2 a DSML raw
 * value), never leaving it. */
bool cons_text_inside(const uint8_t (*kmp)[256], int what, int slot, const uint8_t *s,
                      size_t n);

#endif

/* ---- compiling (cons_schema.c) ---------------------------------------------- */

#include <jansson.h>

/* A $ref target compiled in one mode, at nesting depth `depth`: it serves
 * any place no deeper (the nesting limit was checked for that depth). */
typedef struct {
    json_t *s;
    int mode;
    bool dsml;
    int depth;
    int32_t node;
} cons_ref;

/* A compile in progress: the grammar being built and the error buffer. */
typedef struct {
    td_cons_grammar *g;
    char *err;
    size_t errlen;
    int32_t any[2];          /* the any-value node, plain and DSML (-1 until made) */
    json_t *root;            /* the schema "#" of $ref names (borrowed) */
    cons_ref refs[32];       /* compiled $ref targets */
    int nrefs;
} cons_cc;

/* Modes of a value's compile: a DSML parameter is split into what is written
 * raw (string="true": its string values) and what as JSON (the rest). */
enum { MODE_JSON, MODE_NOSTR, MODE_RAW };

td_err cons_grammar_new(td_cons_grammar **out);
int32_t cons_node_new(cons_cc *x, cons_kind kind);
int32_t cons_trie_new(cons_cc *x);
/* Adds s[0..n) (byte 0x01 stands for the ｜DSML｜ symbol) with index term. */
td_err cons_trie_add(cons_cc *x, int32_t root, const char *s, size_t n, int32_t term);
/* Compiles a schema into *out (-1: nothing of that mode, for MODE_NOSTR /
 * MODE_RAW). On error the message is in x->err. */
td_err cons_compile(cons_cc *x, json_t *s, int mode, bool dsml, int depth,
                    const char *path, int32_t *out);
/* Checks the keywords of an object schema used as tool parameters. */
td_err cons_check_keywords(cons_cc *x, json_t *s, const char *path);
void cons_first_sets(td_cons_grammar *g);
/* Room for one more element in *arrp (an array of n, capacity *cap). */
bool cons_grow(void *arrp, int32_t n, int32_t *cap, size_t elem);
/* Sets in *mask the bit of each property `required` names (by its index in
 * properties); TD_EINVAL for a name not there. */
td_err cons_required(cons_cc *x, json_t *props, json_t *req, const char *path, uint64_t *mask);
