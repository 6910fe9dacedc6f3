/* Save and restore a sequence's decode state in the versioned byte layout
 * of docs/kv-layout.md: the bytes prefill ships to decode and the kvstore
 * writes. */
#ifndef TD_MODEL_STATE_H
#define TD_MODEL_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* The layout version td_v4_seq_save writes (docs/kv-layout.md). */
#define TD_V4_STATE_LAYOUT 1u

/* A hash of the model geometry the layout depends on. */
uint64_t td_v4_layout_fingerprint(const td_v4_config *c);

/* Bytes td_v4_seq_save writes for the sequence as it is now. */
size_t td_v4_seq_state_size(const td_v4_seq *s);
/* What td_v4_seq_state_size gives for a sequence of the model that has
 * processed pos tokens (its MTP block mtp_pos): a receiver sizes its buffer
 * with it before the state exists. */
size_t td_v4_state_size_at(const td_v4_model *m, int64_t pos, int64_t mtp_pos);
/* Section offsets of that state: offs[l] for each layer l (main layers,
 * then MTP), offs[nlayers] where the checksum goes; offs has nlayers + 1
 * entries. */
void td_v4_state_offsets(const td_v4_model *m, int64_t pos, int64_t mtp_pos, size_t *offs);
/* A byte range of a serialized state. */
typedef struct {
    size_t off, len;
} td_v4_span;

/* Where the records pooled from tokens [t0, t1) lie in a state of pos
 * tokens (its MTP block mtp_pos): for each main layer with compressed
 * entries, in file order, the span of those entries and, for a CSA layer,
 * then the span of its indexer keys. Those bytes depend on tokens [0, t1)
 * alone, so every state of at least t1 tokens that begins with the same
 * tokens holds the same bytes there: the disk tier stores them once per
 * token range (docs/kv-layout.md, "Token ranges"). t0 and t1 must be
 * multiples of every compress ratio with 0 <= t0 < t1 <= pos; then every
 * span is non-empty and their count (at most 2 x n_layers) does not depend
 * on the range. Returns the count, or -1 for a range not so aligned. */
int td_v4_state_range_spans(const td_v4_model *m, int64_t pos, int64_t mtp_pos, int64_t t0,
                            int64_t t1, td_v4_span *out);

/* Layer-by-layer saving, so a sender can ship a layer while the forward
 * pass computes the next ones: writes layer l's section, as of `pos`
 * tokens, at its place in buf (a whole state's buffer, cap bytes). Valid
 * once the layer has processed tokens [0, pos): from a td_v4_step on_layer
 * hook, the sequence's own length still lags (it advances when the call
 * ends), hence pos. */
td_err td_v4_seq_save_layer(const td_v4_seq *s, int l, int64_t pos, void *buf, size_t cap);
/* Completes a buffer whose main-layer sections td_v4_seq_save_layer wrote
 * (at the sequence's length now): header, MTP sections, checksum. The
 * result equals td_v4_seq_save's. */
td_err td_v4_seq_seal(const td_v4_seq *s, void *buf, size_t cap, size_t *written);
/* TD_ERANGE if cap is too small. */
td_err td_v4_seq_save(const td_v4_seq *s, void *buf, size_t cap, size_t *written);
/* Checks magic, version, geometry, length and checksum before touching s:
 * on error s is unchanged. */
td_err td_v4_seq_load(td_v4_seq *s, const void *buf, size_t len, char *err, size_t errlen);

/* Incremental load, for a state still arriving (a kvstore read in flight,
 * docs/kvstore.md "Streamed resume"): sections are copied into the
 * sequence as soon as they are wholly present, so loading overlaps the
 * reading instead of following it. The result equals td_v4_seq_load's of
 * the same bytes. Unlike td_v4_seq_load it cannot check the checksum before
 * touching s: any error leaves s reset (empty), and s must not be used
 * until td_v4_seq_load_end returns TD_OK. */
typedef struct td_v4_seq_loader td_v4_seq_loader;
/* Starts loading a state of len bytes into s (borrowed until end or
 * abort). Checks nothing yet and leaves s alone until the header arrives;
 * TD_ENOMEM only. */
td_err td_v4_seq_load_begin(td_v4_seq_loader **out, td_v4_seq *s, size_t len);
/* buf[0..avail) are the first avail bytes of the state; avail only grows
 * between calls (the bytes before it must not change; buf may move, say
 * to the same bytes elsewhere). At the first call that covers the header,
 * checks magic, version, geometry and length and resets s; then loads what
 * avail newly covers, in file order, folding it into the running checksum:
 * the record arrays (compressed entries, indexer keys: the bulk of a state)
 * byte by byte as far as avail goes, a window or a compressor tail once it
 * is wholly present. An error resets s and is final: later feeds and the
 * end return it again. */
td_err td_v4_seq_load_feed(td_v4_seq_loader *ld, const void *buf, size_t avail, char *err,
                           size_t errlen);
/* After a feed of all len bytes: verifies the checksum and sets the
 * sequence's length (td_v4_seq_len); on any failure s is reset. Frees ld
 * either way. */
td_err td_v4_seq_load_end(td_v4_seq_loader *ld, char *err, size_t errlen);
/* Gives up: resets s and frees ld. NULL is a no-op. */
void td_v4_seq_load_abort(td_v4_seq_loader *ld);

/* Benchmarks only: resets s and fills it as if `pos` tokens had been
 * processed, with valid random records (decode cost depends on the amount
 * of state, not its values). Compressor tails stay empty. Each record is a
 * function of (seed, layer, index): fills of one seed at different lengths
 * agree on the records they share, as a real session's states do. */
void td_v4_seq_fill_synthetic(td_v4_seq *s, int64_t pos, uint64_t seed);

#endif
