/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The snapshot loader on arbitrary bodies (what follows a snapshot's header
 * once its hash matched: a bug or a forged file): it refuses with a reason,
 * or the core it filled keeps every invariant of the engine and of risk.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "srv_core.h"
#include "srv_snapshot.h"

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
	return 0;
}
