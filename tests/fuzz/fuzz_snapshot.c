/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The snapshot loader on arbitrary bodies (what follows a snapshot's header
 * once its hash matched: a bug or a forged file): it refuses with a reason,
 * or the core it filled keeps every invariant of the engine and of risk. The
 * same bytes as settlement items (of either format): each loads as an item
 * the ledger would take, or is refused with a reason.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "srv_core.h"
#include "srv_snapshot.h"
#include "srv_wjob.h"

static void settlement_items(const uint8_t *data, size_t size, uint8_t format)
{
	struct srv_snap_r r = {.p = data, .len = size};
	struct srv_wjob j;
	while (r.off < r.len && srv_wjob_load(&r, &j, format) == 0) {
		const struct ledger_fill *f = j.kind == SRV_W_FILL     ? &j.u.trade.fill
					      : j.kind == SRV_W_SETTLE ? &j.u.settle.fill
								       : NULL;
		if (j.seq < 1 || (f && (f->fill_id < 1 || f->price < 1 || f->qty < 1)))
			abort();
		if (j.kind == SRV_W_FILL && (format < 2 || j.u.trade.time_ms < 0 ||
					     !ledger_product_valid(j.u.trade.product)))
			abort();
		if (j.kind == SRV_W_SETTLE && (j.u.settle.total < 1 || j.u.settle.used < 0 ||
					       j.u.settle.used > j.u.settle.total))
			abort();
	}
	if (r.off < r.len && r.error == NULL)
		abort(); /* a refusal always says why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (sodium_init() < 0)
		abort();
	struct srv_core_config cfg;
	srv_core_config_default(&cfg);
	cfg.matching.orders_max = 64;
	cfg.matching.levels_max = 64;
	cfg.matching.books_max = 4;
	cfg.matching.start_ms = 1795366800000;
	cfg.risk.accounts_max = 8;
	cfg.risk.orders_max = 64;
	cfg.risk.positions_max = 16;
	cfg.risk.capacities_max = 8;
	cfg.accounts_max = 8;
	cfg.client_ids_max = 64;
	cfg.fills_recent_max = 4;
	cfg.operator_account = 7;
	struct srv_core *c;
	if (srv_core_create(&cfg, &c) != SRV_CORE_OK)
		abort();
	uint8_t pk[32], sk[64], seed[32] = {7};
	crypto_sign_seed_keypair(pk, sk, seed);
	if (srv_core_register(c, 7, pk) != SRV_CORE_OK)
		abort();
	struct srv_snap_r r = {.p = data, .len = size};
	if (srv_core_load(c, &r) != 0) {
		if (r.error == NULL)
			abort(); /* a refusal always says why */
	} else if (matching_check_invariants(srv_core_engine(c)) != NULL ||
		   srv_risk_check_invariants(srv_core_risk(c)) != NULL) {
		abort();
	}
	srv_core_destroy(c);
	settlement_items(data, size, 1);
	settlement_items(data, size, 2);
	return 0;
}
