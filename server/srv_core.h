/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exchange core of gridexd: what the single core thread does with a
 * request after its signature was verified. In sequence order it checks the
 * nonce and expiry, resolves the product (a book is created on first use),
 * maps the account's client order ids to engine order ids, applies
 * pre-trade risk, runs the matching engine and turns its events into
 * FIX-style execution reports for the accounts concerned and into fills for
 * settlement. No I/O, no clock reads, no threads: the caller passes the time.
 */
#ifndef GRIDEX_SRV_CORE_H
#define GRIDEX_SRV_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"
#include "matching.h"
#include "srv_auth.h"
#include "srv_risk.h"

#define SRV_CORE_MUST_USE __attribute__((warn_unused_result))

enum srv_core_status {
	SRV_CORE_OK = 0,
	SRV_CORE_ARGS,
	SRV_CORE_NOMEM,
	SRV_CORE_FULL,
};

enum srv_report_kind {
	SRV_REPORT_ACK = 1,
	SRV_REPORT_REJECT,
	SRV_REPORT_EXEC,
};

/* One message for one account; field meanings follow proto/gridex.proto. */
struct srv_report {
	uint8_t kind;	   /* enum srv_report_kind */
	uint8_t reason;	   /* REJECT: Gridex__V1__RejectReason */
	uint8_t exec_type; /* EXEC: Gridex__V1__ExecType */
	uint8_t side;	   /* enum matching_side */
	uint32_t account;
	uint64_t nonce; /* ACK, REJECT */
	uint64_t client_order_id;
	uint64_t order_id;
	uint32_t book;
	int64_t price; /* limit */
	int64_t last_price, last_quantity;
	int64_t cumulative_quantity, leaves_quantity;
	uint64_t fill_id;
	int64_t fee;
};

/* Where a call's results go; the caller owns the arrays (see srv_core_out_caps). */
struct srv_core_out {
	struct srv_report *reports;
	size_t n_reports, reports_cap;
	struct ledger_fill *fills;
	size_t n_fills, fills_cap;
};

struct srv_core_config {
	struct matching_config matching;
	struct srv_risk_config risk;
	uint32_t accounts_max;	     /* registered keys */
	uint32_t client_ids_max;     /* live (account, client order id) pairs */
	int64_t gate_lead_ms;	     /* gate before each delivery hour */
	int64_t expiry_ahead_ms_max; /* how far ahead a request may expire */
};

struct srv_core;

void srv_core_config_default(struct srv_core_config *cfg);
SRV_CORE_MUST_USE int srv_core_create(const struct srv_core_config *cfg, struct srv_core **out);
void srv_core_destroy(struct srv_core *c);

/* Capacities an out must have for any single call. */
void srv_core_out_caps(const struct srv_core *c, size_t *reports, size_t *fills);

/* Operator set-up: keys, money and capacity (see srv_keys_register and srv_risk). */
SRV_CORE_MUST_USE int srv_core_register(struct srv_core *c, uint32_t account,
					const uint8_t public_key[SRV_PUBLIC_KEY_BYTES]);
struct srv_risk *srv_core_risk(struct srv_core *c);
struct matching_engine *srv_core_engine(struct srv_core *c);

/* The accelerator class number of a product's class (creating it), for capacities. */
SRV_CORE_MUST_USE int srv_core_class_id(struct srv_core *c, const char *class_name, uint32_t *id);

/* Halts or resumes a product (by name, its book created if new): halted books refuse new
 * orders and modifies with PRODUCT_HALTED; cancels still work. */
SRV_CORE_MUST_USE int srv_core_halt(struct srv_core *c, const char *product, bool halted);

/*
 * Handles one verified request at time now_ms: exactly one ACK or REJECT for
 * its sender, then execution reports (to the sender and to counterparties),
 * and fills for settlement. Errors: ARGS (out too small; nothing happened).
 */
SRV_CORE_MUST_USE int srv_core_handle(struct srv_core *c, const struct srv_request *req,
				      int64_t now_ms, struct srv_core_out *out);

/* Moves the clock: GTD expiries and gate closures, reported as EXPIRED_ORDER. */
SRV_CORE_MUST_USE int srv_core_tick(struct srv_core *c, int64_t now_ms, struct srv_core_out *out);

#endif
