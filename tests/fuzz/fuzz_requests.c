/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every request handler up to the engine: the input is a sequence of
 * SignedRequest envelopes (two length bytes each), decoded as gridexd does and
 * handed to srv_core_handle() on a core with four accounts (the fourth is the
 * operator). The signature check is the only step skipped, in this harness
 * only: it would stop the fuzzer at the first byte it changes. A length with
 * the top bit set keeps the nonce and expiry as sent; otherwise they are made
 * valid so that the fuzzer reaches risk and matching. After every request the
 * engine's and risk's invariants must hold and the reports must fit.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "gridex.pb-c.h"
#include "srv_auth.h"
#include "srv_core.h"
#include "srv_risk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1795366800000LL /* 2026-11-22T17:00Z */

static struct srv_core *make_core(void)
{
	struct srv_core_config cfg;
	srv_core_config_default(&cfg);
	cfg.matching.orders_max = 256;
	cfg.matching.levels_max = 256;
	cfg.matching.books_max = 16;
	cfg.matching.start_ms = NOW - 1000;
	cfg.risk.accounts_max = 16;
	cfg.risk.orders_max = 256;
	cfg.risk.positions_max = 256;
	cfg.risk.capacities_max = 64;
	cfg.risk.maker_bps = 7;
	cfg.risk.taker_bps = 23;
	cfg.accounts_max = 16;
	cfg.client_ids_max = 256;
	cfg.operator_account = 4;
	cfg.orders_per_second = 50;
	cfg.orders_burst = 100;
	cfg.lease_requests_per_second = 5; /* reachable in a run */
	cfg.lease_requests_burst = 20;
	cfg.query_rows_per_second = 200; /* the shared bucket owes rows, and refuses */
	cfg.query_rows_burst = 100;
	cfg.fills_recent_max = 64;
	cfg.query_rows_max = 32;
	/* Leases on, with windows of 2 s that begin 5 s after the start (products are
	 * 2 hours ahead): fills become leases that start, fail and are refunded. */
	cfg.leases = true;
	cfg.lease.hosts_max = 8;
	cfg.lease.hosts_per_seller_max = 3;
	cfg.lease.leases_max = 64;
	cfg.lease.leases_kept = 64;
	cfg.lease.start_deadline_ms = 500;
	cfg.lease.period_ms = 2000;
	cfg.lease.shift_ms = -2 * 3600000 + 5000;
	struct srv_core *c;
	if (srv_core_create(&cfg, &c) != SRV_CORE_OK)
		abort();
	uint8_t pk[32], sk[64], seed[32] = {1};
	crypto_sign_seed_keypair(pk, sk, seed);
	uint32_t cls;
	if (srv_core_class_id(c, "H100-80G", &cls) != SRV_CORE_OK)
		abort();
	for (uint32_t a = 1; a <= 4; a++)
		if (srv_core_register(c, a, pk) != SRV_CORE_OK ||
		    srv_risk_add_cash(srv_core_risk(c), a, 1000000000) != SRV_RISK_OK ||
		    srv_risk_set_capacity(srv_core_risk(c), a, cls, 40) != SRV_RISK_OK)
			abort();
	return c;
}

/* Whether an answer's rows come in the order their cursors resume: orders and fills in
 * falling cursors, leases live ones (ids) then ended ones (SRV_LEASE_CURSOR_ENDED | their
 * ending) each falling, hosts in rising ones. */
static bool cursors_ordered(const struct srv_core_out *out, uint32_t type)
{
	size_t n = out->n_rows + out->n_lease_rows + out->n_host_rows;
	for (size_t i = 0; i < n; i++) {
		uint64_t c = out->cursors[i], before = i ? out->cursors[i - 1] : 0;
		if (type == GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS && c != out->rows[i].order_id)
			return false;
		if (type == GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS
			    ? c != (uint64_t)out->host_rows[i] + 1 || (i && c <= before)
			    : c == 0 || (i && c >= before && (c ^ before) >> 63 == 0))
			return false;
		if (type == GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES && i &&
		    (before & SRV_LEASE_CURSOR_ENDED) && !(c & SRV_LEASE_CURSOR_ENDED))
			return false;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init && sodium_init() < 0)
		abort();
	init = true;
	struct srv_core *c = make_core();
	struct srv_core_out out;
	if (srv_core_out_alloc(c, &out) != SRV_CORE_OK)
		abort();
	static struct srv_request r;
	uint64_t nonce = 1;
	int64_t now = NOW;
	for (size_t at = 0; at + 2 <= size;) {
		size_t len = (size_t)(data[at] & 0x7f) << 8 | data[at + 1];
		bool raw = data[at] & 0x80;
		at += 2;
		if (len > size - at)
			len = size - at;
		now += data[at - 1] & 0x3f; /* time moves: expiries and gates */
		if (srv_request_decode(data + at, len, 1024, &r) == SRV_AUTH_OK) {
			if (!raw) {
				r.nonce = nonce++;
				r.expires_at_ms = now + 1000;
			}
			if (srv_core_handle(c, &r, now, &out) != SRV_CORE_OK)
				abort();
			if (out.n_reports == 0 || out.n_reports > out.reports_cap ||
			    out.n_fills > out.fills_cap || out.n_md > out.md_cap ||
			    out.n_rows > 32 || out.n_lease_rows > 32 || out.n_host_rows > 32 ||
			    (out.rows_cut && out.n_rows + out.n_lease_rows + out.n_host_rows != 32))
				abort(); /* at most query_rows_max rows, all of them when cut */
			if (!cursors_ordered(&out, r.type))
				abort();
			/* Every settlement delivers a share of its fill, no more. */
			for (size_t i = 0; out.leases && i < out.leases->n_settles; i++) {
				const struct srv_settlement *st = &out.leases->settles[i];
				if (st->used < 0 || st->total < 1 || st->used > st->total)
					abort();
			}
			const char *why = matching_check_invariants(srv_core_engine(c));
			if (why == NULL)
				why = srv_risk_check_invariants(srv_core_risk(c));
			if (why == NULL)
				why = srv_leases_check_hosts(srv_core_leases(c));
			if (why) {
				fprintf(stderr, "invariant: %s\n", why);
				abort();
			}
		}
		at += len;
	}
	srv_core_out_free(&out);
	srv_core_destroy(c);
	return 0;
}
