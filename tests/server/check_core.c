/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of the exchange core: a bid and an offer cross and both sides get
 * FIX-style reports with cumulative and leaves quantities and fees, and the
 * fill goes to settlement; every rejection the core decides (replayed nonce,
 * expiry, unknown account, funds, capacity, duplicate client order id,
 * someone else's order, halted and closed products, bad amounts); cancels,
 * cancel-all, modifies and expiries; full order pools and the reuse of their
 * slots, across a snapshot too; and one request all the way from signed
 * protobuf bytes through decoding and verification.
 */
#include <string.h>

#include <check.h>
#include <sodium.h>

#include "gridex.pb-c.h"
#include "srv_core.h"
#include "srv_snapshot.h"
#include "tap.h"

#define H19    "H100-80G/2026-11-22T19"
#define GATE19 (1795374000000LL - 300000)
#define NOW    1795366800000LL /* 17:00Z */

static struct srv_core *core;
static struct srv_core_out out;
static uint8_t pk[32], sk[64];
static uint64_t nonce = 1;
static int64_t retain_ms;	/* book_retain_ms of the next core; 0: never */
static int64_t horizon_ms;	/* product_horizon_ms of the next core; 0: none */
static const char *classes_cfg; /* classes of the next core; NULL: any */
static uint32_t rows_max;	/* query_rows_max of the next core; 0: the default */
static uint32_t queries_rate;	/* queries_per_second (burst 2) of the next; 0: default */
static uint32_t fills_kept;	/* fills_recent_max of the next core; 0: the default */
static bool queries_free;	/* no query limit (per account or shared) in the next core */
static uint32_t qrows_rate;	/* query_rows_per_second of the next; 0: default */
static uint32_t qrows_burst;	/* and its burst */
static bool leases_on;		/* the next core has leases (a small lease book) */
static uint32_t lease_rate;	/* lease_requests_per_second of the next; 0: default */
static uint32_t lease_burst;	/* and its burst */

/* A core for at most `orders` orders, with the operator (account 3) registered. */
static struct srv_core *sized_core(uint32_t orders)
{
	struct srv_core_config cfg;
	srv_core_config_default(&cfg);
	cfg.matching.orders_max = orders;
	cfg.matching.levels_max = orders;
	cfg.matching.books_max = 8;
	cfg.risk.accounts_max = 8;
	cfg.risk.orders_max = orders;
	cfg.risk.positions_max = 64;
	cfg.risk.capacities_max = 16;
	cfg.risk.maker_bps = 10;
	cfg.risk.taker_bps = 25;
	cfg.accounts_max = 8;
	cfg.client_ids_max = orders;
	cfg.operator_account = 3;
	cfg.book_retain_ms = retain_ms;
	cfg.product_horizon_ms = horizon_ms;
	cfg.classes = classes_cfg;
	if (rows_max)
		cfg.query_rows_max = rows_max;
	if (fills_kept)
		cfg.fills_recent_max = fills_kept;
	if (queries_rate) {
		cfg.queries_per_second = queries_rate;
		cfg.queries_burst = 2;
	}
	if (queries_free)
		cfg.queries_per_second = cfg.query_rows_per_second = 0;
	if (qrows_rate) {
		cfg.query_rows_per_second = qrows_rate;
		cfg.query_rows_burst = qrows_burst;
	}
	cfg.leases = leases_on;
	cfg.lease.hosts_max = 16;
	cfg.lease.leases_max = 64;
	cfg.lease.leases_kept = 64;
	if (lease_rate) {
		cfg.lease_requests_per_second = lease_rate;
		cfg.lease_requests_burst = lease_burst;
	}
	struct srv_core *c;
	ck_assert_int_eq(srv_core_create(&cfg, &c), SRV_CORE_OK);
	ck_assert_int_eq(srv_core_register(c, 3, pk), SRV_CORE_OK);
	return c;
}

static void setup_sized(uint32_t orders)
{
	ck_assert_int_ge(sodium_init(), 0);
	crypto_sign_keypair(pk, sk);
	core = sized_core(orders);
	ck_assert_int_eq(srv_core_out_alloc(core, &out), SRV_CORE_OK);
	for (uint32_t a = 1; a <= 3; a++) {
		if (a != 3) /* the operator is registered already */
			ck_assert_int_eq(srv_core_register(core, a, pk), SRV_CORE_OK);
		ck_assert_int_eq(srv_risk_add_cash(srv_core_risk(core), a, 100000000), SRV_RISK_OK);
	}
	uint32_t cls;
	ck_assert_int_eq(srv_core_class_id(core, "H100-80G", &cls), SRV_CORE_OK);
	ck_assert_int_eq(srv_risk_set_capacity(srv_core_risk(core), 2, cls, 16), SRV_RISK_OK);
	nonce = 1;
}

static void setup(void)
{
	setup_sized(256);
}

/* core through a snapshot into a new core for `orders` orders (made under the settings of
 * the next core), which takes its place. */
static void reload_core(uint32_t orders)
{
	struct srv_snap_w w = {0};
	srv_core_save(core, &w);
	ck_assert(!w.failed);
	struct srv_core *loaded = sized_core(orders);
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_msg(srv_core_load(loaded, &in) == 0, "%s", in.error);
	srv_snap_w_free(&w);
	srv_core_destroy(core);
	core = loaded;
}

static void teardown(void)
{
	srv_core_destroy(core);
	srv_core_out_free(&out);
	retain_ms = horizon_ms = 0;
	classes_cfg = NULL;
	rows_max = queries_rate = fills_kept = 0;
	queries_free = leases_on = false;
	lease_rate = lease_burst = qrows_rate = qrows_burst = 0;
}

static struct srv_request order(uint32_t account, uint64_t coid, int side, int64_t price,
				int64_t qty)
{
	struct srv_request r = {.account = account,
				.nonce = nonce++,
				.expires_at_ms = NOW + 1000,
				.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER,
				.client_order_id = coid,
				.side = (uint32_t)side,
				.time_in_force = GRIDEX__V1__TIME_IN_FORCE__GTC,
				.price = price,
				.quantity = qty};
	strcpy(r.product, H19);
	return r;
}

static struct srv_request cancel_of(uint32_t account, uint64_t coid)
{
	return (struct srv_request){.account = account,
				    .nonce = nonce++,
				    .expires_at_ms = NOW + 1000,
				    .type = GRIDEX__V1__REQUEST_TYPE__CANCEL,
				    .target_client_order_id = coid};
}

static struct srv_request modify_of(uint32_t account, uint64_t coid, int64_t price, int64_t qty)
{
	return (struct srv_request){.account = account,
				    .nonce = nonce++,
				    .expires_at_ms = NOW + 1000,
				    .type = GRIDEX__V1__REQUEST_TYPE__MODIFY,
				    .target_client_order_id = coid,
				    .price = price,
				    .quantity = qty};
}

static void handle(const struct srv_request *r)
{
	ck_assert_int_eq(srv_core_handle(core, r, NOW, &out), SRV_CORE_OK);
}

/* The reject reason of a request that must be refused. */
static int refused(const struct srv_request *r)
{
	handle(r);
	ck_assert_msg(out.n_reports == 1 && out.reports[0].kind == SRV_REPORT_REJECT,
		      "client order %llu: %zu reports, the first of kind %d",
		      (unsigned long long)r->client_order_id, out.n_reports, out.reports[0].kind);
	ck_assert_uint_eq(out.reports[0].nonce, r->nonce);
	return out.reports[0].reason;
}

START_TEST(bid_and_offer_cross)
{
	struct srv_request ask = order(2, 70, GRIDEX__V1__SIDE__SELL, 2450000, 8);
	handle(&ask);
	ck_assert_uint_eq(out.n_reports, 2);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	ck_assert_int_eq(out.reports[1].leaves_quantity, 8);
	struct srv_request bid = order(1, 10, GRIDEX__V1__SIDE__BUY, 2500000, 10);
	handle(&bid);
	/* Buyer: ACK, NEW, PARTIAL_FILL; seller: FILL. */
	ck_assert_uint_eq(out.n_reports, 4);
	const struct srv_report *r = out.reports;
	ck_assert_int_eq(r[0].kind, SRV_REPORT_ACK);
	ck_assert_int_eq(r[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	ck_assert_int_eq(r[1].leaves_quantity, 10);
	ck_assert_uint_eq(r[2].account, 1);
	ck_assert_int_eq(r[2].exec_type, GRIDEX__V1__EXEC_TYPE__PARTIAL_FILL);
	ck_assert_int_eq(r[2].last_price, 2450000);
	ck_assert_int_eq(r[2].last_quantity, 8);
	ck_assert_int_eq(r[2].cumulative_quantity, 8);
	ck_assert_int_eq(r[2].leaves_quantity, 2);
	ck_assert_int_eq(r[2].fee, 49000); /* 25 bps of 19,600,000 */
	ck_assert_uint_eq(r[2].client_order_id, 10);
	ck_assert_uint_eq(r[3].account, 2);
	ck_assert_int_eq(r[3].exec_type, GRIDEX__V1__EXEC_TYPE__FILL);
	ck_assert_int_eq(r[3].cumulative_quantity, 8);
	ck_assert_int_eq(r[3].leaves_quantity, 0);
	ck_assert_int_eq(r[3].fee, 19600); /* 10 bps, the maker */
	ck_assert_uint_eq(r[3].client_order_id, 70);
	ck_assert_uint_eq(r[2].fill_id, r[3].fill_id);
	/* One fill for settlement, the buyer as taker. */
	ck_assert_uint_eq(out.n_fills, 1);
	ck_assert_uint_eq(out.fills[0].fill.buyer, 1);
	ck_assert_uint_eq(out.fills[0].fill.seller, 2);
	ck_assert(out.fills[0].fill.buyer_is_taker);
	ck_assert_int_eq(out.fills[0].fill.price, 2450000);
	ck_assert_int_eq(out.fills[0].fill.qty, 8);
	/* What ledger.fills records beside the money: the book's product, the input's time. */
	ck_assert_str_eq(out.fills[0].product, H19);
	ck_assert_int_eq(out.fills[0].time_ms, NOW);
	struct srv_risk_account a;
	ck_assert_int_eq(srv_risk_account(srv_core_risk(core), 1, &a), SRV_RISK_OK);
	ck_assert_int_eq(a.cash, 100000000 - 19600000 - 49000);
	ck_assert_int_eq(a.reserved, 2 * (2500000 + 6250));
}
END_TEST

START_TEST(rejections)
{
	struct srv_request r = order(1, 10, GRIDEX__V1__SIDE__BUY, 2500000, 10);
	handle(&r);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__STALE_NONCE); /* replayed */
	r = order(1, 11, GRIDEX__V1__SIDE__BUY, 2500000, 1);
	r.expires_at_ms = NOW;
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__EXPIRED);
	r = order(1, 11, GRIDEX__V1__SIDE__BUY, 2500000, 1);
	r.expires_at_ms = NOW + 3600000;
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__EXPIRY_TOO_FAR);
	r = order(9, 11, GRIDEX__V1__SIDE__BUY, 2500000, 1);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT);
	r = order(1, 10, GRIDEX__V1__SIDE__BUY, 2500000, 1);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__DUPLICATE_ORDER);
	r = order(1, 12, GRIDEX__V1__SIDE__BUY, 2500000, 1000);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__INSUFFICIENT_FUNDS);
	r = order(3, 12, GRIDEX__V1__SIDE__SELL, 2500000, 1); /* no capacity */
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__INSUFFICIENT_CAPACITY);
	r = order(2, 12, GRIDEX__V1__SIDE__SELL, 2500000, 17); /* 16 registered */
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__INSUFFICIENT_CAPACITY);
	r = order(1, 12, GRIDEX__V1__SIDE__BUY, 0, 1);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__BAD_PRICE);
	r = order(1, 12, GRIDEX__V1__SIDE__BUY, 1, 0);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__BAD_QUANTITY);
	r = order(1, 12, GRIDEX__V1__SIDE__BUY, 1, 1);
	strcpy(r.product, "H100/2026-13-01T00");
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	/* The engine's own checks come back as reasons too (post-only crossing). */
	struct srv_request ask = order(2, 70, GRIDEX__V1__SIDE__SELL, 2600000, 1);
	handle(&ask);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	r = order(1, 12, GRIDEX__V1__SIDE__BUY, 2600000, 1);
	r.time_in_force = GRIDEX__V1__TIME_IN_FORCE__POST_ONLY;
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__WOULD_CROSS);
	/* Someone else's order is simply not found among one's own. */
	struct srv_request c = {.account = 1,
				.nonce = nonce++,
				.expires_at_ms = NOW + 1000,
				.type = GRIDEX__V1__REQUEST_TYPE__CANCEL,
				.target_client_order_id = 70};
	ck_assert_int_eq(refused(&c), GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
	/* Halted products refuse orders, resumed ones take them again. */
	ck_assert_int_eq(srv_core_halt(core, H19, true), SRV_CORE_OK);
	r = order(1, 12, GRIDEX__V1__SIDE__BUY, 1000, 1);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__PRODUCT_HALTED);
	ck_assert_int_eq(srv_core_halt(core, H19, false), SRV_CORE_OK);
	r = order(1, 12, GRIDEX__V1__SIDE__BUY, 1000, 1);
	handle(&r);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	/* Leases are off without a hook: their query is refused, not answered empty. */
	r = (struct srv_request){.account = 1,
				 .nonce = nonce++,
				 .expires_at_ms = NOW + 1000,
				 .type = GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES};
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__LEASES_OFF);
}
END_TEST

START_TEST(gate_closure_expires_and_closes)
{
	struct srv_request r = order(1, 10, GRIDEX__V1__SIDE__BUY, 1000, 2);
	handle(&r);
	ck_assert_int_eq(srv_core_tick(core, GATE19, &out), SRV_CORE_OK);
	ck_assert_uint_eq(out.n_reports, 1);
	ck_assert_int_eq(out.reports[0].exec_type, GRIDEX__V1__EXEC_TYPE__EXPIRED_ORDER);
	ck_assert_int_eq(out.reports[0].leaves_quantity, 0);
	ck_assert_int_eq(out.reports[0].cumulative_quantity, 0);
	struct srv_risk_account a;
	ck_assert_int_eq(srv_risk_account(srv_core_risk(core), 1, &a), SRV_RISK_OK);
	ck_assert_int_eq(a.reserved, 0);
	r = order(1, 11, GRIDEX__V1__SIDE__BUY, 1000, 2);
	r.expires_at_ms = GATE19 + 1000;
	ck_assert_int_eq(srv_core_handle(core, &r, GATE19, &out), SRV_CORE_OK);
	ck_assert_int_eq(out.reports[0].reason, GRIDEX__V1__REJECT_REASON__PRODUCT_CLOSED);
}
END_TEST

START_TEST(cancels_and_modifies)
{
	struct srv_request b1 = order(1, 10, GRIDEX__V1__SIDE__BUY, 1000000, 5);
	struct srv_request b2 = order(1, 11, GRIDEX__V1__SIDE__BUY, 900000, 5);
	handle(&b1);
	handle(&b2);
	/* Modify b2 up to 1,000,000 x 3: ACK, REPLACED. */
	struct srv_request m = modify_of(1, 11, 1000000, 3);
	handle(&m);
	ck_assert_uint_eq(out.n_reports, 2);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__REPLACED);
	ck_assert_int_eq(out.reports[1].price, 1000000);
	ck_assert_int_eq(out.reports[1].leaves_quantity, 3);
	/* A seller takes 6: b1 (first in time) fills 5, b2 gets 1 of its 3. */
	struct srv_request ask = order(2, 70, GRIDEX__V1__SIDE__SELL, 1000000, 6);
	handle(&ask);
	ck_assert_int_eq(out.reports[out.n_reports - 1].account, 1);
	ck_assert_int_eq(out.reports[out.n_reports - 1].client_order_id, 11);
	ck_assert_int_eq(out.reports[out.n_reports - 1].cumulative_quantity, 1);
	ck_assert_int_eq(out.reports[out.n_reports - 1].leaves_quantity, 2);
	/* Modify b2 again: the new quantity is what stays open; cum carries over. */
	m.nonce = nonce++;
	m.quantity = 4;
	handle(&m);
	ck_assert_int_eq(out.reports[1].cumulative_quantity, 1);
	ck_assert_int_eq(out.reports[1].leaves_quantity, 4);
	/* Cancel-all by class (every hour of H100-80G), then for everything left. */
	struct srv_request b3 = order(1, 12, GRIDEX__V1__SIDE__BUY, 800000, 1);
	handle(&b3);
	struct srv_request b4 = order(1, 13, GRIDEX__V1__SIDE__BUY, 800000, 1);
	strcpy(b4.product, "A100/2026-11-22T19");
	handle(&b4);
	struct srv_request all = {.account = 1,
				  .nonce = nonce++,
				  .expires_at_ms = NOW + 1000,
				  .type = GRIDEX__V1__REQUEST_TYPE__CANCEL_ALL};
	strcpy(all.product, "MI300X");
	ck_assert_int_eq(refused(&all), GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	all.nonce = nonce++;
	strcpy(all.product, "H100-80G");
	handle(&all);
	ck_assert_uint_eq(out.n_reports, 3); /* ACK and two cancels: b2 and b3 */
	for (int i = 1; i < 3; i++) {
		ck_assert_int_eq(out.reports[i].exec_type, GRIDEX__V1__EXEC_TYPE__CANCELED);
		ck_assert_int_eq(out.reports[i].leaves_quantity, 0);
	}
	all.nonce = nonce++;
	all.product[0] = '\0';
	handle(&all);
	ck_assert_uint_eq(out.n_reports, 2);
	ck_assert_uint_eq(out.reports[1].client_order_id, 13);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__CANCELED);
	all.nonce = nonce++;
	handle(&all);
	ck_assert_uint_eq(out.n_reports, 1); /* nothing left: just the ACK */
	/* Another account's order survives account 1's cancel-all. */
	struct srv_request other = order(2, 80, GRIDEX__V1__SIDE__SELL, 3000000, 1);
	handle(&other);
	all.nonce = nonce++;
	handle(&all);
	ck_assert_uint_eq(out.n_reports, 1);
	ck_assert_uint_eq(matching_order_count(srv_core_engine(core)), 1);
	struct srv_request c2 = {.account = 2,
				 .nonce = nonce++,
				 .expires_at_ms = NOW + 1000,
				 .type = GRIDEX__V1__REQUEST_TYPE__CANCEL,
				 .target_client_order_id = 80};
	handle(&c2);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__CANCELED);
	struct srv_risk_account a;
	ck_assert_int_eq(srv_risk_account(srv_core_risk(core), 1, &a), SRV_RISK_OK);
	ck_assert_int_eq(a.reserved, 0);
	ck_assert_uint_eq(a.open_orders, 0);
	ck_assert_uint_eq(matching_order_count(srv_core_engine(core)), 0);
	/* Cancelled ids are free to use again. */
	struct srv_request again = order(1, 11, GRIDEX__V1__SIDE__BUY, 800000, 1);
	handle(&again);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	struct srv_request c = {.account = 1,
				.nonce = nonce++,
				.expires_at_ms = NOW + 1000,
				.type = GRIDEX__V1__REQUEST_TYPE__CANCEL,
				.target_client_order_id = 11};
	handle(&c);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__CANCELED);
	ck_assert_int_eq(refused(&c), GRIDEX__V1__REJECT_REASON__STALE_NONCE);
	c.nonce = nonce++;
	ck_assert_int_eq(refused(&c), GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
}
END_TEST

START_TEST(signed_bytes_all_the_way)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.account = 1;
	q.nonce = 500;
	q.expires_at_ms = NOW + 500;
	q.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER;
	q.client_order_id = 42;
	q.product.data = (uint8_t *)H19;
	q.product.len = strlen(H19);
	q.side = GRIDEX__V1__SIDE__BUY;
	q.time_in_force = GRIDEX__V1__TIME_IN_FORCE__GTC;
	q.price = 2000000;
	q.quantity = 4;
	uint8_t body[256], msg[300], sig[64], frame[512];
	size_t bn = gridex__v1__request__pack(&q, body);
	memcpy(msg, SRV_SIGN_DOMAIN, SRV_SIGN_DOMAIN_BYTES);
	memcpy(msg + SRV_SIGN_DOMAIN_BYTES, body, bn);
	crypto_sign_detached(sig, NULL, msg, SRV_SIGN_DOMAIN_BYTES + bn, sk);
	Gridex__V1__SignedRequest sr = GRIDEX__V1__SIGNED_REQUEST__INIT;
	sr.body.data = body;
	sr.body.len = bn;
	sr.signature.data = sig;
	sr.signature.len = 64;
	size_t n = gridex__v1__signed_request__pack(&sr, frame);
	static struct srv_request r;
	ck_assert_int_eq(srv_request_decode(frame, n, 256, &r), SRV_AUTH_OK);
	ck_assert_int_eq(srv_request_verify(&r, pk), SRV_AUTH_OK);
	handle(&r);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	ck_assert_uint_eq(out.reports[0].nonce, 500);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	ck_assert_uint_eq(out.reports[1].client_order_id, 42);
	/* The same bytes again, on any connection: a replay. */
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__STALE_NONCE);
}
END_TEST

static struct srv_request basket_of(uint32_t account, uint64_t coid, int64_t price, int64_t qty,
				    uint32_t hours)
{
	struct srv_request r = order(account, coid, GRIDEX__V1__SIDE__BUY, price, qty);
	r.type = GRIDEX__V1__REQUEST_TYPE__NEW_BASKET;
	r.time_in_force = GRIDEX__V1__TIME_IN_FORCE__FOK;
	r.hours = hours;
	strcpy(r.product, "H100-80G/2026-11-22T19");
	return r;
}

START_TEST(baskets_fill_every_hour_or_nothing)
{
	/* The seller offers 8 in 19:00 and 20:00, only 4 in 21:00. */
	static const char *const hours[] = {"H100-80G/2026-11-22T19", "H100-80G/2026-11-22T20",
					    "H100-80G/2026-11-22T21"};
	for (int i = 0; i < 3; i++) {
		struct srv_request a =
			order(2, 70 + (uint64_t)i, GRIDEX__V1__SIDE__SELL, 2000000, i == 2 ? 4 : 8);
		strcpy(a.product, hours[i]);
		handle(&a);
		ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	}
	/* Three hours of 8: the last cannot fill, so nothing trades. */
	struct srv_request k = basket_of(1, 100, 2100000, 8, 3);
	handle(&k);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	ck_assert_uint_eq(out.n_fills, 0);
	ck_assert_uint_eq(out.n_reports, 1 + 3 + 3); /* ACK, three NEW, three CANCELED */
	for (int i = 4; i < 7; i++)
		ck_assert_int_eq(out.reports[i].exec_type, GRIDEX__V1__EXEC_TYPE__CANCELED);
	struct srv_risk_account a;
	ck_assert_int_eq(srv_risk_account(srv_core_risk(core), 1, &a), SRV_RISK_OK);
	ck_assert_int_eq(a.reserved, 0);
	ck_assert_uint_eq(a.open_orders, 0);
	/* Two hours of 8 fill, leg ids 100 and 101. */
	k = basket_of(1, 100, 2100000, 8, 2);
	handle(&k);
	ck_assert_uint_eq(out.n_fills, 2);
	ck_assert_uint_eq(out.reports[1].client_order_id, 100);
	ck_assert_uint_eq(out.reports[2].client_order_id, 101);
	ck_assert_int_eq(out.reports[3].exec_type, GRIDEX__V1__EXEC_TYPE__FILL);
	ck_assert_int_eq(srv_risk_account(srv_core_risk(core), 1, &a), SRV_RISK_OK);
	ck_assert_int_eq(a.cash, 100000000 - 2 * (16000000 + 40000));
	ck_assert_int_eq(a.reserved, 0);
	/* A basket the buyer cannot pay for is refused whole, with nothing held. */
	k = basket_of(1, 200, 2100000, 40, 2);
	ck_assert_int_eq(refused(&k), GRIDEX__V1__REJECT_REASON__INSUFFICIENT_FUNDS);
	ck_assert_int_eq(srv_risk_account(srv_core_risk(core), 1, &a), SRV_RISK_OK);
	ck_assert_int_eq(a.reserved, 0);
	/* A live client order id among the legs' ids is a duplicate. */
	struct srv_request live = order(1, 301, GRIDEX__V1__SIDE__BUY, 1000, 1);
	handle(&live);
	k = basket_of(1, 300, 1000, 1, 2);
	ck_assert_int_eq(refused(&k), GRIDEX__V1__REJECT_REASON__DUPLICATE_ORDER);
	k = basket_of(1, 400, 1000, 1, 2);
	strcpy(k.product, "A100");
	ck_assert_int_eq(refused(&k), GRIDEX__V1__REJECT_REASON__BAD_BASKET);
}
END_TEST

START_TEST(small_out_is_refused)
{
	struct srv_core_out small = out;
	small.reports_cap = 3;
	struct srv_request r = order(1, 10, GRIDEX__V1__SIDE__BUY, 1000, 1);
	ck_assert_int_eq(srv_core_handle(core, &r, NOW, &small), SRV_CORE_ARGS);
	handle(&r); /* nothing happened: the nonce is still fresh */
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
}
END_TEST

static struct srv_request plain(uint32_t account, uint32_t type)
{
	return (struct srv_request){
		.account = account, .nonce = nonce++, .expires_at_ms = NOW + 1000, .type = type};
}

START_TEST(queries_answer_from_the_core)
{
	struct srv_request r = order(1, 10, GRIDEX__V1__SIDE__BUY, 2500000, 3);
	handle(&r);
	struct srv_request ask = order(2, 70, GRIDEX__V1__SIDE__SELL, 2500000, 1);
	handle(&ask);
	struct srv_request q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	handle(&q);
	ck_assert_uint_eq(out.n_reports, 2);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	ck_assert_int_eq(out.reports[1].kind, SRV_REPORT_RESULT);
	ck_assert_uint_eq(out.reports[1].nonce, q.nonce);
	ck_assert_uint_eq(out.n_rows, 1);
	ck_assert_uint_eq(out.rows[0].client_order_id, 10);
	ck_assert_int_eq(out.rows[0].exec_type, GRIDEX__V1__EXEC_TYPE__PARTIAL_FILL);
	ck_assert_int_eq(out.rows[0].cumulative_quantity, 1);
	ck_assert_int_eq(out.rows[0].leaves_quantity, 2);
	/* Another account sees none of them. */
	q = plain(3, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	handle(&q);
	ck_assert_uint_eq(out.n_rows, 0);
	/* Fills, newest first, each account its own side. */
	q = plain(2, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	handle(&q);
	ck_assert_uint_eq(out.n_rows, 1);
	ck_assert_int_eq(out.rows[0].side, MATCHING_SELL);
	ck_assert_int_eq(out.rows[0].last_price, 2500000);
	ck_assert_int_eq(out.rows[0].fee, 6250); /* the ask took: taker 25 bps of 2.5 */
	q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	strcpy(q.product, "A100-40G");
	ck_assert_int_eq(refused(&q), GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	strcpy(q.product, "H100-80G");
	handle(&q);
	ck_assert_uint_eq(out.n_rows, 1);
	ck_assert_int_eq(out.rows[0].fee, 2500); /* the bid rested: maker 10 bps */
	/* Balance: cash after the fill, the rest of the bid still held. */
	q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	handle(&q);
	ck_assert_int_eq(out.balance_available, 100000000 - 2500000 - 2500);
	struct srv_risk_account a;
	ck_assert_int_eq(srv_risk_account(srv_core_risk(core), 1, &a), SRV_RISK_OK);
	ck_assert_int_eq(out.balance_reserved, a.reserved);
	ck_assert_int_gt(a.reserved, 2 * 2500000);
}
END_TEST

/* More rows than query_rows_max: the first ones, and the answer says it is cut. */
START_TEST(queries_say_when_they_are_cut)
{
	teardown();
	rows_max = 2;
	setup();
	for (uint64_t id = 1; id <= 3; id++) {
		struct srv_request r = order(1, id, GRIDEX__V1__SIDE__BUY, 1000000, 1);
		handle(&r);
		struct srv_request q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
		handle(&q);
		ck_assert_uint_eq(out.n_rows, id < 2 ? id : 2);
		ck_assert(out.rows_cut == (id > 2));
	}
	/* The next answer starts uncut. */
	struct srv_request q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	handle(&q);
	ck_assert(!out.rows_cut);
	/* Fills, newest first: two of three. */
	struct srv_request ask = order(2, 70, GRIDEX__V1__SIDE__SELL, 1000000, 3);
	handle(&ask);
	ck_assert_uint_eq(out.n_fills, 3);
	q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	handle(&q);
	ck_assert_uint_eq(out.n_rows, 2);
	ck_assert(out.rows_cut);
	ck_assert_uint_eq(out.rows[0].client_order_id, 3);
	ck_assert_uint_eq(out.rows[1].client_order_id, 2);
	q = plain(2, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	handle(&q);
	ck_assert_uint_eq(out.n_rows, 0);
	ck_assert(!out.rows_cut);
}
END_TEST

/* Every row of a query of account (scope: a product, a class or ""), page after page,
 * each asked with the cursor of the last row of the one before, into rows (up to max).
 * Returns how many rows; *pages: how many answers. */
static size_t all_pages(uint32_t account, uint32_t type, const char *scope, struct srv_report *rows,
			size_t max, size_t *pages)
{
	uint64_t cursor = 0;
	size_t n = 0;
	for (*pages = 1;; ++*pages) {
		struct srv_request q = plain(account, type);
		strcpy(q.product, scope);
		q.cursor = cursor;
		handle(&q);
		ck_assert_msg(out.reports[0].kind == SRV_REPORT_ACK, "page %zu refused: %d", *pages,
			      out.reports[0].reason);
		for (size_t i = 0; i < out.n_rows; i++) {
			ck_assert_uint_lt(n, max);
			rows[n++] = out.rows[i];
		}
		if (!out.rows_cut)
			return n;
		ck_assert_uint_gt(out.n_rows, 0);
		cursor = out.cursors[out.n_rows - 1];
	}
}

/* The client order ids of rows, written "id,id,...". */
static const char *coids_of(const struct srv_report *rows, size_t n)
{
	static char text[256];
	size_t at = 0;
	text[0] = '\0';
	for (size_t i = 0; i < n; i++)
		at += (size_t)snprintf(text + at, sizeof(text) - at, "%s%llu", i ? "," : "",
				       (unsigned long long)rows[i].client_order_id);
	return text;
}

/* The client order ids of a query's answer, asked with cursor. */
static const char *page_of(uint32_t account, uint32_t type, uint64_t cursor)
{
	struct srv_request q = plain(account, type);
	q.cursor = cursor;
	handle(&q);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	return coids_of(out.rows, out.n_rows);
}

/* A cut answer's last row gives the cursor of the next page: orders resume below the
 * last one's id, also when it has gone; fills below the last one's report, and a
 * cursor of another account's fills is refused. */
START_TEST(queries_come_in_pages)
{
	teardown();
	rows_max = 2;
	setup();
	const uint32_t orders = GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS;
	for (uint64_t id = 1; id <= 5; id++) {
		struct srv_request r =
			order(1, id, GRIDEX__V1__SIDE__BUY, 1000000 + (int64_t)id, 1);
		handle(&r);
	}
	struct srv_report rows[16];
	size_t pages;
	size_t n = all_pages(1, orders, "", rows, 16, &pages);
	ck_assert_str_eq(coids_of(rows, n), "5,4,3,2,1");
	ck_assert_uint_eq(pages, 3);
	ck_assert_str_eq(page_of(1, orders, 0), "5,4");
	uint64_t cursor = out.cursors[1];
	ck_assert_uint_eq(cursor, out.rows[1].order_id);
	/* Between pages: the cursor's order cancelled, another modified, a new one. */
	struct srv_request r = cancel_of(1, 4);
	handle(&r);
	r = order(1, 6, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	handle(&r);
	r = modify_of(1, 3, 900000, 2);
	handle(&r);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	ck_assert_str_eq(page_of(1, orders, cursor), "3,2");
	ck_assert(out.rows_cut);
	ck_assert_str_eq(page_of(1, orders, out.cursors[1]), "1");
	ck_assert(!out.rows_cut);
	/* Another account's cursor reads only its own orders. */
	r = order(2, 70, GRIDEX__V1__SIDE__SELL, 5000000, 1);
	handle(&r);
	ck_assert_str_eq(page_of(2, orders, cursor), "");
	ck_assert_str_eq(page_of(2, orders, UINT64_MAX), "70");
	/* Fills: account 2 sells into bids 5, 2 and 1 (the best three). */
	r = order(2, 71, GRIDEX__V1__SIDE__SELL, 900000, 3);
	handle(&r);
	ck_assert_uint_eq(out.n_fills, 3);
	const uint32_t fills = GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS;
	n = all_pages(1, fills, "", rows, 16, &pages);
	ck_assert_str_eq(coids_of(rows, n), "1,2,5");
	ck_assert_uint_eq(pages, 2);
	ck_assert_str_eq(page_of(1, fills, 0), "1,2");
	uint64_t fill_cursor = out.cursors[1];
	ck_assert_str_eq(page_of(1, fills, fill_cursor), "5");
	/* Account 2's own fills are the other side of the same three: its cursor is of
	 * its own reports, and account 1's is refused. */
	n = all_pages(2, fills, "", rows, 16, &pages);
	ck_assert_str_eq(coids_of(rows, n), "71,71,71");
	struct srv_request q = plain(2, fills);
	q.cursor = fill_cursor;
	ck_assert_int_eq(refused(&q), GRIDEX__V1__REJECT_REASON__BAD_CURSOR);
	q = plain(1, fills);
	q.cursor = 1000; /* no report has that number yet */
	ck_assert_int_eq(refused(&q), GRIDEX__V1__REJECT_REASON__BAD_CURSOR);
}
END_TEST

/* The reject reason of a request of account at time t; 0: acknowledged. */
static int reason_at(uint32_t account, uint32_t type, int64_t t)
{
	struct srv_request q = plain(account, type);
	q.expires_at_ms = t + 1000;
	ck_assert_int_eq(srv_core_handle(core, &q, t, &out), SRV_CORE_OK);
	ck_assert_uint_ge(out.n_reports, 1);
	return out.reports[0].kind == SRV_REPORT_ACK ? 0 : out.reports[0].reason;
}

/* queries_per_second: a bucket per participant, apart from the order bucket; the
 * operator's queries are not counted. */
START_TEST(queries_are_rate_limited)
{
	teardown();
	queries_rate = 1;
	setup();
	static const uint32_t types[] = {
		GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE,
		GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS, GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES,
		GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		/* A burst of 2, then one a second (leases are off: answered LEASES_OFF). */
		int64_t t = NOW + 10000 * (int64_t)i;
		ck_assert_int_ne(reason_at(1, types[i], t),
				 GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
		ck_assert_int_ne(reason_at(1, types[i], t),
				 GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
		ck_assert_int_eq(reason_at(1, types[i], t),
				 GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	}
	int64_t t = NOW + 40000;
	/* Orders have their own bucket; so does every other account. */
	struct srv_request r = order(1, 10, GRIDEX__V1__SIDE__BUY, 1000, 1);
	r.expires_at_ms = t + 1000;
	ck_assert_int_eq(srv_core_handle(core, &r, t, &out), SRV_CORE_OK);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	ck_assert_int_eq(reason_at(2, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, t), 0);
	/* Account 1's bucket, emptied at t (the last burst), has one more a second later. */
	ck_assert_int_eq(reason_at(1, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, t + 999),
			 GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	ck_assert_int_eq(reason_at(1, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, t + 1000), 0);
	ck_assert_int_eq(reason_at(1, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, t + 1000),
			 GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	/* The operator's are not limited. */
	for (int k = 0; k < 10; k++)
		ck_assert_int_eq(reason_at(3, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE, t), 0);
}
END_TEST

/* query_rows_per_second: one bucket of rows for all participants' queries; a query is
 * answered while it holds SRV_QUERY_ROWS_BASE rows, and then costs that many more than
 * the rows it answered, going below empty if need be. The operator's are not counted,
 * orders never. */
START_TEST(query_rows_are_shared)
{
	teardown();
	qrows_rate = 1000;
	qrows_burst = 100;
	setup();
	ck_assert_int_eq(SRV_QUERY_ROWS_BASE, 32);
	const uint32_t orders = GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS,
		       balance = GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE;
	for (uint64_t id = 1; id <= 10; id++) {
		struct srv_request r =
			order(1, id, GRIDEX__V1__SIDE__BUY, 1000000 + (int64_t)id, 1);
		handle(&r);
		ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	}
	int64_t t = NOW + 1000;			      /* full: 100 rows */
	ck_assert_int_eq(reason_at(1, orders, t), 0); /* 10 rows: 100 - 42 = 58 */
	ck_assert_uint_eq(out.n_rows, 10);
	ck_assert_int_eq(reason_at(2, orders, t), 0); /* no rows: 26 */
	ck_assert_uint_eq(out.n_rows, 0);
	ck_assert_int_eq(reason_at(2, orders, t), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	ck_assert_int_eq(reason_at(1, balance, t), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	/* not the operator's queries, nor orders */
	for (int k = 0; k < 10; k++)
		ck_assert_int_eq(reason_at(3, orders, t), 0);
	struct srv_request r = order(1, 11, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	r.expires_at_ms = t + 1000;
	ck_assert_int_eq(srv_core_handle(core, &r, t, &out), SRV_CORE_OK);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	/* a row a millisecond: 31 rows at t + 5, 32 at t + 6 */
	ck_assert_int_eq(reason_at(2, orders, t + 5), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	ck_assert_int_eq(reason_at(2, orders, t + 6), 0); /* 0 */
	/* a query with more rows than are left is answered, and the bucket owes them */
	ck_assert_int_eq(reason_at(1, orders, t + 38), 0); /* 11 rows: 32 - 43 = -11 */
	ck_assert_uint_eq(out.n_rows, 11);
	ck_assert_int_eq(reason_at(2, orders, t + 80), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	ck_assert_int_eq(reason_at(2, orders, t + 81), 0);
	/* idle, it fills up to its burst and no further: 100 rows, two queries of 11 */
	ck_assert_int_eq(reason_at(1, orders, t + 60000), 0);
	ck_assert_int_eq(reason_at(1, orders, t + 60000), 0);
	ck_assert_int_eq(reason_at(2, orders, t + 60000), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
}
END_TEST

/* lease_requests_per_second: REGISTER_HOST, WITHDRAW_HOST and SET_WORKLOAD share a bucket
 * per participant, apart from orders and queries; the operator's are not counted; the
 * bucket goes through a snapshot, and a snapshot's bucket fuller than the burst is refused. */
START_TEST(lease_requests_are_rate_limited)
{
	teardown();
	leases_on = true;
	lease_rate = 1;
	lease_burst = 2;
	setup();
	const uint32_t reg = GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST,
		       wd = GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST,
		       wl = GRIDEX__V1__REQUEST_TYPE__SET_WORKLOAD;
	/* A burst of 2 whatever the type (these carry no host or workload: refused for
	 * that, but counted), then none. */
	int64_t t = NOW;
	ck_assert_int_eq(reason_at(1, reg, t), GRIDEX__V1__REJECT_REASON__BAD_HOST);
	ck_assert_int_ne(reason_at(1, wd, t), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	ck_assert_int_eq(reason_at(1, wl, t), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	ck_assert_int_eq(reason_at(1, reg, t), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	/* Orders, queries, other accounts and the operator are not held back by it. */
	ck_assert_int_eq(reason_at(1, GRIDEX__V1__REQUEST_TYPE__CANCEL, t),
			 GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
	ck_assert_int_eq(reason_at(1, GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS, t), 0);
	ck_assert_int_eq(reason_at(2, wl, t), GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
	for (int k = 0; k < 10; k++)
		ck_assert_int_ne(reason_at(3, wd, t), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	/* One token a second. */
	ck_assert_int_eq(reason_at(1, wl, t + 999), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	ck_assert_int_eq(reason_at(1, wl, t + 1000), GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
	ck_assert_int_eq(reason_at(1, wl, t + 1000), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);

	/* Through a snapshot: still empty at t + 1000, one token at t + 2000. */
	reload_core(256);
	ck_assert_int_eq(reason_at(1, wl, t + 1500), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	ck_assert_int_eq(reason_at(1, wl, t + 2000), GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
	/* Account 2 kept one token at t; 1.5 s later it has two (the burst), not 1.5. */
	ck_assert_int_eq(reason_at(2, wl, t + 1500), GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
	ck_assert_int_eq(reason_at(2, wl, t + 1500), GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
	ck_assert_int_eq(reason_at(2, wl, t + 1500), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);

	/* A bucket of 4 with 3 tokens left does not load into a core whose burst is 2. */
	teardown();
	leases_on = true;
	lease_rate = 1;
	lease_burst = 4;
	setup();
	ck_assert_int_eq(reason_at(1, wl, t), GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
	struct srv_snap_w w = {0};
	srv_core_save(core, &w);
	ck_assert(!w.failed);
	lease_burst = 2;
	struct srv_core *loaded = sized_core(256);
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_int_ne(srv_core_load(loaded, &in), 0);
	ck_assert_str_eq(in.error, "core: a lease-request bucket is of an unknown or repeated "
				   "account, or out of range");
	srv_core_destroy(loaded);
	srv_snap_w_free(&w);
}
END_TEST

/* Without leases, lease requests are refused LEASES_OFF and take no token. */
START_TEST(lease_requests_without_leases_take_no_token)
{
	teardown();
	lease_rate = 1;
	lease_burst = 1;
	setup();
	for (int k = 0; k < 5; k++)
		ck_assert_int_eq(reason_at(1, GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST, NOW),
				 GRIDEX__V1__REJECT_REASON__LEASES_OFF);
}
END_TEST

static struct srv_request operator_req(uint32_t type, uint32_t target)
{
	struct srv_request r = plain(3, type);
	r.target_account = target;
	return r;
}

START_TEST(operator_requests)
{
	/* Only the configured operator (account 3 here) may send them. */
	struct srv_request r = plain(1, GRIDEX__V1__REQUEST_TYPE__DEPOSIT);
	r.target_account = 1;
	r.amount = 5;
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__NOT_AUTHORIZED);
	uint8_t pk4[32], sk4[64];
	crypto_sign_keypair(pk4, sk4);
	r = operator_req(GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT, 4);
	memcpy(r.public_key, pk4, 32);
	strcpy(r.name, "acme");
	handle(&r);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	ck_assert(out.has_op);
	ck_assert_int_eq(out.op.kind, SRV_OP_REGISTER);
	ck_assert_str_eq(out.op.name, "acme");
	ck_assert_mem_eq(srv_core_key(core, 4), pk4, 32);
	/* Again, identical: fine. Another key, another name, a taken name: refused. */
	r.nonce = nonce++;
	handle(&r);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	r.nonce = nonce++;
	strcpy(r.name, "other");
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__ACCOUNT_EXISTS);
	r = operator_req(GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT, 5);
	memcpy(r.public_key, pk4, 32);
	strcpy(r.name, "acme");
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__ACCOUNT_EXISTS);
	r.nonce = nonce++;
	strcpy(r.name, "beta");
	memset(r.public_key, 0, 32); /* small order */
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__BAD_KEY);
	/* Deposits and withdrawals move cash; a withdrawal never touches held money. */
	r = operator_req(GRIDEX__V1__REQUEST_TYPE__DEPOSIT, 4);
	r.amount = 3000000;
	handle(&r);
	ck_assert_int_eq(out.op.kind, SRV_OP_DEPOSIT);
	ck_assert_int_eq(out.op.amount, 3000000);
	struct srv_request bid = order(4, 1, GRIDEX__V1__SIDE__BUY, 2000000, 1);
	handle(&bid);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	r = operator_req(GRIDEX__V1__REQUEST_TYPE__WITHDRAW, 4);
	r.amount = 1000000;
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__INSUFFICIENT_FUNDS);
	r.nonce = nonce++;
	r.amount = 900000;
	handle(&r);
	ck_assert_int_eq(out.op.kind, SRV_OP_WITHDRAW);
	r = operator_req(GRIDEX__V1__REQUEST_TYPE__DEPOSIT, 9);
	r.amount = 1;
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT);
	/* Capacity by class; halts by product. */
	r = operator_req(GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY, 4);
	strcpy(r.product, "MI300X");
	r.quantity = 2;
	handle(&r);
	struct srv_request ask = order(4, 2, GRIDEX__V1__SIDE__SELL, 9000000, 2);
	strcpy(ask.product, "MI300X/2026-11-22T19");
	handle(&ask);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	r = operator_req(GRIDEX__V1__REQUEST_TYPE__HALT, 0);
	strcpy(r.product, "MI300X/2026-11-22T19");
	handle(&r);
	ask = order(4, 3, GRIDEX__V1__SIDE__SELL, 9000000, 1);
	strcpy(ask.product, "MI300X/2026-11-22T19");
	ck_assert_int_eq(refused(&ask), GRIDEX__V1__REJECT_REASON__PRODUCT_HALTED);
	r = operator_req(GRIDEX__V1__REQUEST_TYPE__RESUME, 0);
	strcpy(r.product, "MI300X/2026-11-22T19");
	handle(&r);
	ck_assert(!out.has_op);
	ask.nonce = nonce++;
	ck_assert_int_eq(refused(&ask), GRIDEX__V1__REJECT_REASON__INSUFFICIENT_CAPACITY);
}
END_TEST

START_TEST(order_rate_is_limited_per_account)
{
	srv_core_destroy(core);
	srv_core_out_free(&out);
	struct srv_core_config cfg;
	srv_core_config_default(&cfg);
	cfg.matching.books_max = 8;
	cfg.accounts_max = 8;
	cfg.risk.accounts_max = 8;
	cfg.orders_per_second = 10;
	cfg.orders_burst = 3;
	ck_assert_int_eq(srv_core_create(&cfg, &core), SRV_CORE_OK);
	ck_assert_int_eq(srv_core_out_alloc(core, &out), SRV_CORE_OK);
	ck_assert_int_eq(srv_core_register(core, 1, pk), SRV_CORE_OK);
	ck_assert_int_eq(srv_core_register(core, 2, pk), SRV_CORE_OK);
	struct srv_request c = plain(1, GRIDEX__V1__REQUEST_TYPE__CANCEL);
	c.target_client_order_id = 5;
	for (int i = 0; i < 3; i++) { /* the burst */
		c.nonce = nonce++;
		ck_assert_int_eq(refused(&c), GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
	}
	c.nonce = nonce++;
	ck_assert_int_eq(refused(&c), GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	/* Queries do not count; another account has its own bucket. */
	struct srv_request q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	handle(&q);
	ck_assert_int_eq(out.reports[0].kind, SRV_REPORT_ACK);
	struct srv_request c2 = c;
	c2.account = 2;
	c2.nonce = nonce++;
	ck_assert_int_eq(refused(&c2), GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
	/* 100 ms later one token is back (10 per second), then none again. */
	c.nonce = nonce++;
	ck_assert_int_eq(srv_core_handle(core, &c, NOW + 100, &out), SRV_CORE_OK);
	ck_assert_int_eq(out.reports[0].reason, GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
	c.nonce = nonce++;
	ck_assert_int_eq(srv_core_handle(core, &c, NOW + 100, &out), SRV_CORE_OK);
	ck_assert_int_eq(out.reports[0].reason, GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
}
END_TEST

/* Applies market data to a model book, as a subscriber would. */
struct model_level {
	int64_t qty;
	uint32_t orders;
};

/* Whether c, its engine and its risk agree with themselves. */
static void consistent(struct srv_core *c)
{
	ck_assert_ptr_null(matching_check_invariants(srv_core_engine(c)));
	ck_assert_ptr_null(srv_risk_check_invariants(srv_core_risk(c)));
}

/* The pools hand out slots as they are first needed, and reuse those given back. */
START_TEST(full_pools_refuse_then_reuse_slots)
{
	teardown();
	setup_sized(4);
	for (uint64_t coid = 10; coid < 14; coid++) {
		struct srv_request r = order(1, coid, GRIDEX__V1__SIDE__BUY,
					     1000000 - 100000 * (int64_t)(coid - 10), 1);
		handle(&r);
		ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	}
	struct srv_request r = order(1, 14, GRIDEX__V1__SIDE__BUY, 500000, 1);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__TOO_MANY_ORDERS);
	struct srv_request c = cancel_of(1, 11);
	handle(&c);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__CANCELED);
	r = order(1, 14, GRIDEX__V1__SIDE__BUY, 500000, 1);
	handle(&r);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	r = order(1, 15, GRIDEX__V1__SIDE__BUY, 400000, 1);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__TOO_MANY_ORDERS);
	consistent(core);

	/* A snapshot into a new core of the same size: full, then a slot again. */
	reload_core(4);
	consistent(core);
	r = order(1, 15, GRIDEX__V1__SIDE__BUY, 400000, 1);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__TOO_MANY_ORDERS);
	for (uint64_t coid = 14; coid >= 12; coid -= 2) {
		c = cancel_of(1, coid);
		handle(&c);
		ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__CANCELED);
		ck_assert_uint_eq(out.reports[1].client_order_id, coid);
	}
	for (uint64_t coid = 15; coid <= 16; coid++) {
		r = order(1, coid, GRIDEX__V1__SIDE__BUY, 400000, 1);
		handle(&r);
		ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	}
	r = order(1, 17, GRIDEX__V1__SIDE__BUY, 400000, 1);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__TOO_MANY_ORDERS);
	/* Every live order is found by its client order id. */
	const uint64_t live[] = {10, 13, 15, 16};
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
		c = cancel_of(1, live[i]);
		handle(&c);
		ck_assert_uint_eq(out.reports[1].client_order_id, live[i]);
	}
	ck_assert_uint_eq(matching_order_count(srv_core_engine(core)), 0);
	consistent(core);
}
END_TEST

/* A request handled at time t (it expires a second later). */
static void handle_at(struct srv_request *r, int64_t t)
{
	r->expires_at_ms = t + 1000;
	ck_assert_int_eq(srv_core_handle(core, r, t, &out), SRV_CORE_OK);
}

static struct srv_request order_in(const char *product, uint32_t account, uint64_t coid, int side,
				   int64_t price)
{
	struct srv_request r = order(account, coid, side, price, 1);
	strcpy(r.product, product);
	return r;
}

/* The fill reports the core keeps, in order, as a model of its ring. */
static struct srv_report kept_model[64];
static size_t n_kept_model;

/* Handles r and adds the fill reports it made to the model. */
static void handle_kept(struct srv_request r)
{
	handle(&r);
	for (size_t i = 0; i < out.n_reports; i++)
		if (out.reports[i].kind == SRV_REPORT_EXEC && out.reports[i].fill_id != 0) {
			ck_assert_uint_lt(n_kept_model, 64);
			kept_model[n_kept_model++] = out.reports[i];
		}
}

/* QUERY_FILLS of account (scope: a product or ""), against the model: the account's
 * reports among the last ring of them, newest first. */
static void fills_as_modelled(uint32_t account, const char *scope, size_t ring)
{
	struct srv_report rows[64];
	size_t pages, got = all_pages(account, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS, scope, rows,
				      64, &pages);
	size_t n = 0;
	for (size_t k = n_kept_model; k > 0 && k + ring > n_kept_model; k--) {
		const struct srv_report *m = &kept_model[k - 1];
		if (m->account != account ||
		    (scope[0] && strcmp(srv_core_book_name(core, m->book), scope) != 0))
			continue;
		ck_assert_uint_lt(n, got);
		ck_assert_uint_eq(rows[n].fill_id, m->fill_id);
		ck_assert_uint_eq(rows[n].client_order_id, m->client_order_id);
		ck_assert_int_eq(rows[n].side, m->side);
		n++;
	}
	ck_assert_uint_eq(got, n);
}

/* Each account's recent fills are linked: a query reads its own, newest first, as far
 * as the ring (2 x fills_recent_max reports) still holds them, and after a snapshot;
 * in pages of two, and a cursor whose report left the ring has nothing after it. */
START_TEST(fills_query_reads_the_accounts_own)
{
	teardown();
	fills_kept = 3;
	rows_max = 2;
	queries_free = true;
	setup();
	static const char *const products[] = {"H100-80G/2026-11-22T19", "H100-80G/2026-11-22T20",
					       "H100-80G/2026-11-22T21"};
	n_kept_model = 0;
	uint64_t coid = 100;
	for (int i = 0; i < 12; i++) {
		const char *p = products[i % 3];
		/* Who rests and who takes alternates; account 3 never trades. */
		for (int k = 0; k < 2; k++) {
			bool buy = (k == 0) == (i % 2 == 0); /* account 1 buys, 2 sells */
			handle_kept(order_in(p, buy ? 1 : 2, coid++,
					     buy ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL,
					     1000000 + 1000 * i));
		}
		for (uint32_t a = 1; a <= 3; a++)
			fills_as_modelled(a, "", 6);
		if (i > 0) /* its book is made by the second pair */
			fills_as_modelled(1, products[1], 6);
	}
	ck_assert_uint_eq(n_kept_model, 24);
	struct srv_request q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	handle(&q);
	ck_assert(out.rows_cut);
	uint64_t cursor = out.cursors[1];
	for (int k = 0; k < 3; k++) { /* three fills: six reports, a whole ring */
		handle_kept(order_in(products[0], 1, coid++, GRIDEX__V1__SIDE__BUY, 900000));
		handle_kept(order_in(products[0], 2, coid++, GRIDEX__V1__SIDE__SELL, 900000));
	}
	ck_assert_uint_eq(n_kept_model, 30);
	q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	q.cursor = cursor;
	handle(&q);
	ck_assert_msg(out.reports[0].kind == SRV_REPORT_ACK, "refused: %d", out.reports[0].reason);
	ck_assert_uint_eq(out.n_rows, 0);
	ck_assert(!out.rows_cut);
	/* After a snapshot, into a core keeping fewer: the newest that fit. */
	fills_kept = 2;
	reload_core(256);
	for (uint32_t a = 1; a <= 3; a++)
		fills_as_modelled(a, "", 4);
	/* And on from there: new fills first, the loaded ones after, while they fit. */
	handle_kept(order_in(products[0], 1, coid++, GRIDEX__V1__SIDE__BUY, 1500000));
	handle_kept(order_in(products[0], 2, coid++, GRIDEX__V1__SIDE__SELL, 1500000));
	ck_assert_uint_eq(n_kept_model, 32);
	for (uint32_t a = 1; a <= 3; a++)
		fills_as_modelled(a, "", 4);
}
END_TEST

#define END19 1795377600000LL /* 20:00Z: H19's delivery hour is over */

/* Books are retired book_retain_ms after their delivery hour, and their numbers reused. */
START_TEST(books_are_retired_after_delivery)
{
	static const char *const later[] = {"H100-80G/2026-11-22T20", "H100-80G/2026-11-22T21",
					    "H100-80G/2026-11-22T22", "H100-80G/2026-11-22T23",
					    "H100-80G/2026-11-23T00", "H100-80G/2026-11-23T01",
					    "H100-80G/2026-11-23T02"};
	teardown();
	retain_ms = 1000;
	setup();
	/* A fill in H19 (book 0) and one in T21 (book 2); books_max (8) is then full. */
	struct srv_request r = order(1, 10, GRIDEX__V1__SIDE__BUY, 2000000, 2);
	handle(&r);
	r = order(2, 70, GRIDEX__V1__SIDE__SELL, 2000000, 1);
	handle(&r);
	ck_assert_uint_eq(out.n_fills, 1);
	for (uint64_t i = 0; i < 7; i++) {
		r = order_in(later[i], 1, 11 + i, GRIDEX__V1__SIDE__BUY, 1000000);
		handle(&r);
		ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	}
	r = order_in(later[1], 2, 71, GRIDEX__V1__SIDE__SELL, 1000000);
	handle(&r);
	ck_assert_uint_eq(out.n_fills, 1);
	r = order_in("H100-80G/2026-11-23T03", 1, 20, GRIDEX__V1__SIDE__BUY, 1000000);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	int64_t offered, sold;
	srv_risk_position(srv_core_risk(core), 2, 0, &offered, &sold);
	ck_assert_int_eq(offered + sold, 1);

	/* H19 closes at its gate and goes book_retain_ms after its hour, not before. */
	ck_assert_int_eq(srv_core_tick(core, GATE19, &out), SRV_CORE_OK);
	ck_assert_uint_eq(out.n_retired, 0);
	ck_assert_int_eq(srv_core_tick(core, END19 + 999, &out), SRV_CORE_OK);
	ck_assert_uint_eq(out.n_retired, 0);
	ck_assert_str_eq(srv_core_book_name(core, 0), H19);
	ck_assert_int_eq(srv_core_tick(core, END19 + 1000, &out), SRV_CORE_OK);
	ck_assert_uint_eq(out.n_retired, 1);
	ck_assert_str_eq(out.retired[0], H19);
	ck_assert_ptr_null(srv_core_book_name(core, 0));
	ck_assert_uint_eq(matching_book_live(srv_core_engine(core)), 7);
	consistent(core);
	srv_risk_position(srv_core_risk(core), 2, 0, &offered, &sold);
	ck_assert_int_eq(offered + sold, 0);
	/* Its fills are no longer answered; T21's still are. */
	struct srv_request q = plain(2, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	handle_at(&q, END19 + 1000);
	ck_assert_uint_eq(out.n_rows, 1);
	ck_assert_str_eq(srv_core_book_name(core, out.rows[0].book), later[1]);
	/* The next hour gets the number H19 had, with nothing of H19's. */
	r = order_in("H100-80G/2026-11-23T03", 2, 72, GRIDEX__V1__SIDE__SELL, 3000000);
	handle_at(&r, END19 + 1000);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	ck_assert_uint_eq(out.reports[1].book, 0);
	srv_risk_position(srv_core_risk(core), 2, 0, &offered, &sold);
	ck_assert_int_eq(offered, 1);
	ck_assert_int_eq(sold, 0);
	q = plain(2, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	handle_at(&q, END19 + 1000);
	ck_assert_uint_eq(out.n_rows, 1);

	/* T20 (book 1) goes too; a snapshot keeps the hole, and saves the same bytes again. */
	ck_assert_int_eq(srv_core_tick(core, END19 + 3600000 + 1000, &out), SRV_CORE_OK);
	ck_assert_uint_eq(out.n_retired, 1);
	ck_assert_str_eq(out.retired[0], later[0]);
	struct srv_snap_w w = {0}, again = {0};
	srv_core_save(core, &w);
	ck_assert(!w.failed);
	srv_core_destroy(core);
	core = sized_core(256);
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_msg(srv_core_load(core, &in) == 0, "%s", in.error);
	consistent(core);
	srv_core_save(core, &again);
	ck_assert_uint_eq(again.len, w.len);
	ck_assert(memcmp(again.p, w.p, w.len) == 0);
	srv_snap_w_free(&w);
	srv_snap_w_free(&again);
	ck_assert_ptr_null(srv_core_book_name(core, 1));
	ck_assert_str_eq(srv_core_book_name(core, 0), "H100-80G/2026-11-23T03");
	q = plain(2, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	handle_at(&q, END19 + 3600000 + 1000);
	ck_assert_uint_eq(out.n_rows, 1);
	r = order_in("H100-80G/2026-11-23T04", 1, 21, GRIDEX__V1__SIDE__BUY, 1000000);
	handle_at(&r, END19 + 3600000 + 1000);
	ck_assert_uint_eq(out.reports[1].book, 1);
	/* T21 goes on time after the load too. */
	ck_assert_int_eq(srv_core_tick(core, END19 + 2 * 3600000 + 1000, &out), SRV_CORE_OK);
	ck_assert_uint_eq(out.n_retired, 1);
	ck_assert_str_eq(out.retired[0], later[1]);
	q = plain(2, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	handle_at(&q, END19 + 2 * 3600000 + 1000);
	ck_assert_uint_eq(out.n_rows, 0);
	consistent(core);
}
END_TEST

/* A snapshot whose risk holds a seller's position in a book no product has is refused. */
START_TEST(a_snapshot_position_needs_its_book)
{
	uint32_t cls;
	ck_assert_int_eq(srv_core_class_id(core, "H100-80G", &cls), SRV_CORE_OK);
	struct srv_risk_order o = {.order_id = 999,
				   .account = 2,
				   .book = 5,
				   .class_id = cls,
				   .side = MATCHING_SELL,
				   .price = 1,
				   .qty = 1};
	ck_assert_int_eq(srv_risk_enter(srv_core_risk(core), &o), SRV_RISK_OK);
	struct matching_event gone = {.type = MATCHING_EV_REMOVED,
				      .reason = MATCHING_R_CANCELLED,
				      .side = MATCHING_SELL,
				      .book = 5,
				      .order_id = 999,
				      .account = 2,
				      .qty = 1};
	srv_risk_apply(srv_core_risk(core), &gone);
	ck_assert_uint_eq(srv_risk_order_count(srv_core_risk(core)), 0);
	struct srv_snap_w w = {0};
	srv_core_save(core, &w);
	struct srv_core *loaded = sized_core(256);
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_int_ne(srv_core_load(loaded, &in), 0);
	ck_assert_str_eq(in.error, "core: a seller's position is in no book");
	srv_core_destroy(loaded);
	srv_snap_w_free(&w);
}
END_TEST

/* Participants make books only for listed classes, within the horizon, before the gate. */
START_TEST(listing_limits_the_books_participants_make)
{
	teardown();
	classes_cfg = " H100-80G ,A100-40G";
	horizon_ms = 48 * 3600000LL;
	setup();
	struct matching_engine *eng = srv_core_engine(core);
	struct srv_request r = order_in("B200/2026-11-22T19", 1, 10, GRIDEX__V1__SIDE__BUY, 100);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	r = order_in("H100-80G/2026-11-22T17", 1, 11, GRIDEX__V1__SIDE__BUY, 100);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__PRODUCT_CLOSED);
	/* NOW is 2026-11-22T17:00Z: the hour starting 49 hours ahead is too far, 48 is not. */
	r = order_in("H100-80G/2026-11-24T18", 1, 12, GRIDEX__V1__SIDE__BUY, 100);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	struct srv_request b = basket_of(1, 20, 100, 1, 3);
	strcpy(b.product, "H100-80G/2026-11-24T16");
	ck_assert_int_eq(refused(&b), GRIDEX__V1__REJECT_REASON__BAD_BASKET);
	b = basket_of(1, 30, 100, 1, 2);
	strcpy(b.product, "H100-80G/2026-11-22T17");
	ck_assert_int_eq(refused(&b), GRIDEX__V1__REJECT_REASON__PRODUCT_CLOSED);
	ck_assert_uint_eq(matching_book_live(eng), 0);
	r = order_in("H100-80G/2026-11-24T17", 1, 13, GRIDEX__V1__SIDE__BUY, 100);
	handle(&r);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	r = order_in("A100-40G/2026-11-22T19", 1, 14, GRIDEX__V1__SIDE__BUY, 100);
	handle(&r);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	ck_assert_uint_eq(matching_book_live(eng), 2);
	/* The operator is not limited. */
	ck_assert_int_eq(srv_core_halt(core, "B200/2026-11-22T19", true), SRV_CORE_OK);
	ck_assert_uint_eq(matching_book_live(eng), 3);
	/* What a classes setting may be. */
	ck_assert_int_eq(srv_core_classes_count(""), 0);
	ck_assert_int_eq(srv_core_classes_count(" A100 , H100-80G.sxm_5 "), 2);
	ck_assert_int_eq(srv_core_classes_count("A100,,H100"), -1);
	ck_assert_int_eq(srv_core_classes_count("A100, A100"), -1);
	ck_assert_int_eq(srv_core_classes_count("A100/2026-11-22T19"), -1);
	ck_assert_int_eq(srv_core_classes_count("A 100"), -1);
	ck_assert_int_eq(srv_core_classes_count("A100,"), -1);
	char many[256 * 5 + 8] = "";
	for (int i = 0; i < 257; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sC%d", i ? "," : "",
			 i);
	ck_assert_int_eq(srv_core_classes_count(many), -1);
	*strrchr(many, ',') = '\0';
	ck_assert_int_eq(srv_core_classes_count(many), 256);
}
END_TEST

/* The class names of a core, 0 .. 255, written "name,name,...". */
static const char *class_names(struct srv_core *c)
{
	static char text[256 * 12];
	size_t at = 0;
	for (uint32_t k = 0; k < 256; k++)
		at += (size_t)snprintf(text + at, sizeof(text) - at, "%s,",
				       srv_core_class_name(c, k));
	return text;
}

/* When all 256 class numbers are taken, a new class takes the lowest one nothing uses
 * any more: no book of it lives and nobody has capacity in it (orders alone made it).
 * Classes with live books or capacity keep theirs; retired books free theirs; a
 * snapshot carries the names, and the loaded core gives the next one the same number. */
START_TEST(unused_classes_are_given_back)
{
	teardown();
	retain_ms = 1000;
	setup();
	struct matching_engine *eng = srv_core_engine(core);
	/* Class 0 is H100-80G (account 2 has capacity in it), then K1 .. K255: books for
	 * the first 8 classes (books_max), the others made by refused orders. */
	struct srv_request r = order(1, 1, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	handle(&r);
	char name[64];
	for (int k = 1; k < 256; k++) {
		snprintf(name, sizeof(name), "K%d/2026-11-22T19", k);
		r = order_in(name, 1, 100 + (uint64_t)k, GRIDEX__V1__SIDE__BUY, 1000000);
		handle(&r);
		ck_assert_int_eq(out.reports[0].kind, k < 8 ? SRV_REPORT_ACK : SRV_REPORT_REJECT);
		snprintf(name, sizeof(name), "K%d", k);
		ck_assert_str_eq(srv_core_class_name(core, (uint32_t)k), name);
	}
	ck_assert_uint_eq(matching_book_live(eng), 8);
	/* K9 gets a capacity entry (even 0: a seller registered in it). */
	uint32_t cls;
	ck_assert_int_eq(srv_core_class_id(core, "K9", &cls), SRV_CORE_OK);
	ck_assert_uint_eq(cls, 9);
	ck_assert_int_eq(srv_risk_set_capacity(srv_core_risk(core), 2, 9, 0), SRV_RISK_OK);
	/* Full: NEW1 takes 8, the lowest without a book or capacity; K8 is gone. */
	r = order_in("NEW1/2026-11-22T19", 1, 500, GRIDEX__V1__SIDE__BUY, 1000000);
	ck_assert_int_eq(refused(&r), GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	ck_assert_str_eq(srv_core_class_name(core, 8), "NEW1");
	struct srv_request q = plain(1, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	strcpy(q.product, "K8");
	ck_assert_int_eq(refused(&q), GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	ck_assert_str_eq(srv_core_class_name(core, 1), "K1");
	ck_assert_str_eq(srv_core_class_name(core, 9), "K9");
	/* The H19 books close and retire: K1 .. K7 have no book now; H100-80G keeps its
	 * number (capacity), and so does K9. NEW2 takes 1. */
	ck_assert_int_eq(srv_core_tick(core, GATE19, &out), SRV_CORE_OK);
	ck_assert_int_eq(srv_core_tick(core, END19 + 1000, &out), SRV_CORE_OK);
	ck_assert_uint_eq(out.n_retired, 8);
	r = order_in("NEW2/2026-11-23T10", 1, 501, GRIDEX__V1__SIDE__BUY, 1000000);
	handle_at(&r, END19 + 1000);
	ck_assert_int_eq(out.reports[1].exec_type, GRIDEX__V1__EXEC_TYPE__NEW);
	ck_assert_str_eq(srv_core_class_name(core, 0), "H100-80G");
	ck_assert_str_eq(srv_core_class_name(core, 1), "NEW2");
	ck_assert_str_eq(srv_core_class_name(core, 9), "K9");
	/* NEW2's book keeps 1: NEW3 takes 2. */
	ck_assert_int_eq(srv_core_class_id(core, "NEW3", &cls), SRV_CORE_OK);
	ck_assert_uint_eq(cls, 2);
	consistent(core);
	/* Through a snapshot: the same names, and the same number for the next class. */
	struct srv_snap_w w = {0};
	srv_core_save(core, &w);
	ck_assert(!w.failed);
	struct srv_core *loaded = sized_core(256);
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_msg(srv_core_load(loaded, &in) == 0, "%s", in.error);
	srv_snap_w_free(&w);
	char names[256 * 12];
	snprintf(names, sizeof(names), "%s", class_names(core));
	ck_assert_str_eq(class_names(loaded), names);
	uint32_t cls2;
	ck_assert_int_eq(srv_core_class_id(core, "NEW4", &cls), SRV_CORE_OK);
	ck_assert_int_eq(srv_core_class_id(loaded, "NEW4", &cls2), SRV_CORE_OK);
	/* (NEW3 got no book: its number is the lowest unused again.) */
	ck_assert_uint_eq(cls, 2);
	ck_assert_uint_eq(cls2, 2);
	snprintf(names, sizeof(names), "%s", class_names(core));
	ck_assert_str_eq(class_names(loaded), names);
	srv_core_destroy(loaded);
}
END_TEST

START_TEST(market_data_rebuilds_the_book)
{
	struct model_level model[2][64] = {0}; /* side, price / 100000 */
	uint64_t seq = 0, trades = 0;
	uint64_t rng = 7;
	uint32_t cls;
	ck_assert_int_eq(srv_core_class_id(core, "H100-80G", &cls), SRV_CORE_OK);
	ck_assert_int_eq(srv_risk_set_capacity(srv_core_risk(core), 2, cls, 1000000), SRV_RISK_OK);
	ck_assert_int_eq(srv_risk_add_cash(srv_core_risk(core), 1, 1000000000000), SRV_RISK_OK);
	for (int i = 0; i < 3000; i++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		uint32_t r = (uint32_t)(rng >> 33);
		struct srv_request req;
		uint32_t acct = 1 + r % 2;
		if (r % 5 == 0) {
			req = plain(acct, GRIDEX__V1__REQUEST_TYPE__CANCEL);
			req.target_client_order_id = 1 + (r >> 8) % 200;
		} else if (r % 7 == 0) {
			req = plain(acct, GRIDEX__V1__REQUEST_TYPE__MODIFY);
			req.target_client_order_id = 1 + (r >> 8) % 200;
			req.price = (int64_t)(10 + (r >> 3) % 40) * 100000;
			req.quantity = 1 + (r >> 12) % 3;
		} else {
			int side = acct == 1 ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL;
			req = order(acct, 1 + (r >> 8) % 200, side,
				    (int64_t)(10 + (r >> 3) % 40) * 100000, 1 + (r >> 12) % 3);
		}
		ck_assert_int_eq(srv_core_handle(core, &req, NOW, &out), SRV_CORE_OK);
		for (size_t k = 0; k < out.n_md; k++) {
			const struct srv_md *m = &out.md[k];
			ck_assert_uint_eq(m->book, 0);
			if (m->kind == SRV_MD_TRADE) {
				ck_assert_uint_eq(m->sequence, ++trades);
				continue;
			}
			ck_assert_uint_eq(m->sequence, ++seq);
			model[m->side][m->price / 100000] =
				(struct model_level){.qty = m->qty, .orders = m->orders};
		}
	}
	ck_assert_uint_gt(trades, 100);
	struct matching_level_view bids[64], asks[64];
	size_t nb, na;
	uint64_t ls, ts;
	ck_assert(srv_core_snapshot(core, 0, bids, &nb, asks, &na, 64, &ls, &ts));
	ck_assert_uint_eq(ls, seq);
	ck_assert_uint_eq(ts, trades);
	size_t mb = 0, ma = 0;
	for (int p = 63; p >= 0; p--)
		if (model[MATCHING_BUY][p].qty) {
			ck_assert_int_eq(bids[mb].price, p * 100000);
			ck_assert_int_eq(bids[mb].qty, model[MATCHING_BUY][p].qty);
			ck_assert_uint_eq(bids[mb].orders, model[MATCHING_BUY][p].orders);
			mb++;
		}
	for (int p = 0; p < 64; p++)
		if (model[MATCHING_SELL][p].qty) {
			ck_assert_int_eq(asks[ma].price, p * 100000);
			ck_assert_int_eq(asks[ma].qty, model[MATCHING_SELL][p].qty);
			ma++;
		}
	ck_assert_uint_eq(mb, nb);
	ck_assert_uint_eq(ma, na);
	ck_assert_uint_gt(nb + na, 5);
	uint32_t books[4];
	ck_assert_uint_eq(srv_core_topic_books(core, "H100-80G", books, 4), 1);
	ck_assert_uint_eq(srv_core_topic_books(core, H19, books, 4), 1);
	ck_assert_uint_eq(srv_core_topic_books(core, "A100-40G", books, 4), 0);
	ck_assert_str_eq(srv_core_book_name(core, 0), H19);
}
END_TEST

static Suite *core_suite(void)
{
	Suite *s = suite_create("server-core");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, bid_and_offer_cross);
	tcase_add_test(tc, rejections);
	tcase_add_test(tc, gate_closure_expires_and_closes);
	tcase_add_test(tc, cancels_and_modifies);
	tcase_add_test(tc, signed_bytes_all_the_way);
	tcase_add_test(tc, baskets_fill_every_hour_or_nothing);
	tcase_add_test(tc, small_out_is_refused);
	tcase_add_test(tc, queries_answer_from_the_core);
	tcase_add_test(tc, queries_say_when_they_are_cut);
	tcase_add_test(tc, queries_come_in_pages);
	tcase_add_test(tc, queries_are_rate_limited);
	tcase_add_test(tc, query_rows_are_shared);
	tcase_add_test(tc, lease_requests_are_rate_limited);
	tcase_add_test(tc, lease_requests_without_leases_take_no_token);
	tcase_add_test(tc, fills_query_reads_the_accounts_own);
	tcase_add_test(tc, operator_requests);
	tcase_add_test(tc, order_rate_is_limited_per_account);
	tcase_add_test(tc, market_data_rebuilds_the_book);
	tcase_add_test(tc, full_pools_refuse_then_reuse_slots);
	tcase_add_test(tc, books_are_retired_after_delivery);
	tcase_add_test(tc, a_snapshot_position_needs_its_book);
	tcase_add_test(tc, listing_limits_the_books_participants_make);
	tcase_add_test(tc, unused_classes_are_given_back);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(core_suite());
}
