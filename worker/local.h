/* td_wk_local: colocated generation on a worker. A PrefillRequest without
 * a KV ticket asks this worker for the whole answer (prefill and decode in
 * its own engine), streamed to the router as TokenChunks from index 0: what
 * the router does when only one kind of worker is there, or when one token
 * is all that is asked. Both roles serve it. Loop thread only. */
#ifndef TD_WORKER_LOCAL_H
#define TD_WORKER_LOCAL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/engine.h"
#include "proto/ctl.h"
#include "worker/worker.h"

typedef struct td_wk_local td_wk_local;

td_err td_wk_local_create(td_wk_local **out, td_wk *wk, td_engine *e);
/* Sends nothing more (the worker is going away); requests still in the
 * engine finish silently. Call before td_wk_destroy. */
void td_wk_local_detach(td_wk_local *l);
/* After the engine is gone (no callbacks can come). */
void td_wk_local_destroy(td_wk_local *l);

void td_wk_local_start(td_wk_local *l, const Tandem__Ctl__PrefillRequest *m);
/* False if rid is not a local request here. */
bool td_wk_local_cancel(td_wk_local *l, uint64_t rid);
bool td_wk_local_pause(td_wk_local *l, uint64_t rid, bool paused);
int td_wk_local_running(const td_wk_local *l);

#endif
