/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Settlement items: what the core thread hands the ledger thread (fills, the
 * ends of fills' escrow, operator actions), in sequence, and how a snapshot
 * keeps those the ledger has not confirmed. No I/O: the unit tests link it.
 */
#ifndef GRIDEX_SRV_WJOB_H
#define GRIDEX_SRV_WJOB_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger.h"
#include "srv_core.h"
#include "srv_lease.h"
#include "srv_snapshot.h"

/* core -> ledger. */
enum srv_wjob_kind {
	SRV_W_FILL = 1,
	SRV_W_OP,
	SRV_W_SETTLE, /* the end of a fill's escrow, from its leases */
};

struct srv_wjob {
	uint8_t kind;
	bool seq_end; /* the last item of its input: a batch may end after it */
	int64_t seq;
	int64_t mono_ms; /* when the core produced it: settlement lag */
	union {
		struct ledger_trade trade; /* SRV_W_FILL */
		struct srv_ledger_op op;
		struct srv_settlement settle;
	} u;
};

/* The settlement items of one input's results, in the order the ledger takes them
 * (fills, settlements, the operator's action), the last one marked seq_end; calls
 * each() for every one and stops at its first non-zero return, which it returns. */
int srv_wjobs_of(const struct srv_core_out *out, int64_t seq, int64_t mono_ms,
		 int (*each)(const struct srv_wjob *w, void *ctx), void *ctx);

/* Settlement items in snapshots (srv_wjob_load: -1 with the reason in in->error). A
 * snapshot of format 1 has fills without their product and time: one that holds any
 * is refused (the start then goes on from an older snapshot or the journal). */
void srv_wjob_save(struct srv_snap_w *w, const struct srv_wjob *j);
int srv_wjob_load(struct srv_snap_r *in, struct srv_wjob *j, uint8_t format);

#endif
