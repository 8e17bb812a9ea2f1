/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_wjob.h"

#include <string.h>

int srv_wjobs_of(const struct srv_core_out *out, int64_t seq, int64_t mono_ms,
		 int (*each)(const struct srv_wjob *w, void *ctx), void *ctx)
{
	size_t n_settles = out->leases ? out->leases->n_settles : 0;
	size_t total = out->n_fills + n_settles + (out->has_op ? 1 : 0), k = 0;
	int rc = 0;
	for (size_t i = 0; i < out->n_fills && rc == 0; i++) {
		struct srv_wjob w = {.kind = SRV_W_FILL, .seq = seq, .mono_ms = mono_ms};
		w.seq_end = ++k == total;
		w.u.trade = out->fills[i];
		rc = each(&w, ctx);
	}
	for (size_t i = 0; i < n_settles && rc == 0; i++) {
		struct srv_wjob w = {.kind = SRV_W_SETTLE, .seq = seq, .mono_ms = mono_ms};
		w.seq_end = ++k == total;
		w.u.settle = out->leases->settles[i];
		rc = each(&w, ctx);
	}
	if (out->has_op && rc == 0) {
		struct srv_wjob w = {
			.kind = SRV_W_OP, .seq_end = true, .seq = seq, .mono_ms = mono_ms};
		w.u.op = out->op;
		rc = each(&w, ctx);
	}
	return rc;
}

/* ---------- settlement items in snapshots ---------- */

static void save_fill(struct srv_snap_w *w, const struct ledger_fill *f)
{
	srv_snap_i64(w, f->fill_id);
	srv_snap_u32(w, f->buyer);
	srv_snap_u32(w, f->seller);
	srv_snap_u8(w, f->buyer_is_taker);
	srv_snap_i64(w, f->taker_order_id);
	srv_snap_i64(w, f->maker_order_id);
	srv_snap_i64(w, f->price);
	srv_snap_i64(w, f->qty);
}

static void load_fill(struct srv_snap_r *in, struct ledger_fill *f)
{
	f->fill_id = srv_snap_get_i64(in); /* in order: initializers are not sequenced */
	f->buyer = srv_snap_get_u32(in);
	f->seller = srv_snap_get_u32(in);
	f->buyer_is_taker = srv_snap_get_u8(in) != 0;
	f->taker_order_id = srv_snap_get_i64(in);
	f->maker_order_id = srv_snap_get_i64(in);
	f->price = srv_snap_get_i64(in);
	f->qty = srv_snap_get_i64(in);
	if (f->fill_id < 1 || f->price < 1 || f->qty < 1)
		srv_snap_fail(in, "settlement: a fill is out of range");
}

/* A fill: kind, seq, the fill, its time, its product (u8 length, bytes). An escrow
 * settlement: kind, seq, then its fill as a fill item without time and product
 * (kind FILL, seq, the fill), used, total, lease id. */
void srv_wjob_save(struct srv_snap_w *w, const struct srv_wjob *j)
{
	srv_snap_u8(w, j->kind);
	srv_snap_i64(w, j->seq);
	if (j->kind == SRV_W_FILL) {
		const struct ledger_trade *tr = &j->u.trade;
		save_fill(w, &tr->fill);
		srv_snap_i64(w, tr->time_ms);
		size_t len = strnlen(tr->product, sizeof(tr->product) - 1);
		srv_snap_u8(w, (uint8_t)len);
		srv_snap_put(w, tr->product, len);
	} else if (j->kind == SRV_W_SETTLE) {
		const struct srv_settlement *t = &j->u.settle;
		srv_snap_u8(w, SRV_W_FILL);
		srv_snap_i64(w, j->seq);
		save_fill(w, &t->fill);
		srv_snap_i64(w, t->used);
		srv_snap_i64(w, t->total);
		srv_snap_i64(w, t->lease_id);
	} else {
		const struct srv_ledger_op *op = &j->u.op;
		srv_snap_u8(w, op->kind);
		srv_snap_u32(w, op->account);
		srv_snap_i64(w, op->amount);
		srv_snap_u8(w, (uint8_t)strlen(op->name));
		srv_snap_put(w, op->name, strlen(op->name));
		srv_snap_put(w, op->public_key, sizeof(op->public_key));
	}
}

int srv_wjob_load(struct srv_snap_r *in, struct srv_wjob *j, uint8_t format)
{
	*j = (struct srv_wjob){0};
	j->kind = srv_snap_get_u8(in); /* in order: initializers are not sequenced */
	j->seq = srv_snap_get_i64(in);
	if (j->kind == SRV_W_FILL && format < 2) {
		srv_snap_fail(in, "a snapshot of format 1 (an older gridexd's) with unsettled "
				  "fills, which lack the product and time ledger.fills needs: "
				  "the start goes on from an older snapshot or the journal");
	} else if (j->kind == SRV_W_FILL) {
		struct ledger_trade *tr = &j->u.trade;
		load_fill(in, &tr->fill);
		tr->time_ms = srv_snap_get_i64(in);
		uint8_t len = srv_snap_get_u8(in);
		if (len >= sizeof(tr->product))
			srv_snap_fail(in, "settlement: a fill's product is too long");
		else
			srv_snap_get(in, tr->product, len);
		if (!in->error && (tr->time_ms < 0 || !ledger_product_valid(tr->product)))
			srv_snap_fail(in, "settlement: a fill's time or product is invalid");
	} else if (j->kind == SRV_W_SETTLE) {
		uint8_t kind = srv_snap_get_u8(in);
		int64_t seq = srv_snap_get_i64(in);
		if (kind != SRV_W_FILL || seq != j->seq) {
			srv_snap_fail(in, "settlement: an escrow settlement without its fill");
		} else {
			struct srv_settlement *t = &j->u.settle;
			load_fill(in, &t->fill);
			t->used = srv_snap_get_i64(in);
			t->total = srv_snap_get_i64(in);
			t->lease_id = srv_snap_get_i64(in);
			if (t->total < 1 || t->used < 0 || t->used > t->total || t->lease_id < 0)
				srv_snap_fail(in, "settlement: a delivered share out of range");
		}
	} else if (j->kind == SRV_W_OP) {
		struct srv_ledger_op *op = &j->u.op;
		op->kind = srv_snap_get_u8(in);
		op->account = srv_snap_get_u32(in);
		op->amount = srv_snap_get_i64(in);
		size_t len = srv_snap_get_u8(in);
		if (len > SRV_ACCOUNT_NAME_BYTES_MAX)
			srv_snap_fail(in, "settlement: a name is too long");
		else
			srv_snap_get(in, op->name, len);
		srv_snap_get(in, op->public_key, sizeof(op->public_key));
		if (op->kind < SRV_OP_REGISTER || op->kind > SRV_OP_WITHDRAW)
			srv_snap_fail(in, "settlement: an operator action of no known kind");
	} else {
		srv_snap_fail(in, "settlement: an item of no known kind");
	}
	if (j->seq < 1)
		srv_snap_fail(in, "settlement: a sequence number out of range");
	return in->error ? -1 : 0;
}
