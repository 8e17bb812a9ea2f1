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
#include "srv_lease.h"
#include "srv_risk.h"

#define SRV_CORE_MUST_USE __attribute__((warn_unused_result))

#define SRV_CORE_RETIRED_MAX 16 /* books one call retires at most */

enum srv_core_status {
	SRV_CORE_OK = 0,
	SRV_CORE_ARGS,
	SRV_CORE_NOMEM,
	SRV_CORE_FULL,
	SRV_CORE_EXISTS, /* a name taken by another account */
};

enum srv_report_kind {
	SRV_REPORT_ACK = 1,
	SRV_REPORT_REJECT,
	SRV_REPORT_EXEC,
	SRV_REPORT_RESULT, /* a query's answer: out->rows and out->balance */
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

enum srv_md_kind {
	SRV_MD_LEVEL = 1, /* a price level's new total (0: gone) */
	SRV_MD_TRADE,
};

/* Public market data: one change of one product. Sequences are per product and
 * kind, consecutive from 1 (0 is the state before the first change). */
struct srv_md {
	uint8_t kind; /* enum srv_md_kind */
	uint8_t side; /* LEVEL: the level's side; TRADE: the aggressor's */
	uint32_t book;
	uint64_t sequence;
	int64_t price, qty;
	uint32_t orders;
	int64_t time_ms;
};

enum srv_ledger_op_kind {
	SRV_OP_REGISTER = 1, /* open the participant with its key */
	SRV_OP_DEPOSIT,
	SRV_OP_WITHDRAW,
};

/* An operator action the ledger must record, in sequence with the fills. */
struct srv_ledger_op {
	uint8_t kind; /* enum srv_ledger_op_kind */
	uint32_t account;
	int64_t amount;
	char name[SRV_ACCOUNT_NAME_BYTES_MAX + 1];
	uint8_t public_key[SRV_PUBLIC_KEY_BYTES];
};

/* Where a call's results go; the caller owns the arrays (see srv_core_out_caps). */
struct srv_core_out {
	struct srv_report *reports;
	size_t n_reports, reports_cap;
	struct ledger_trade *fills; /* each fill with its product and time */
	size_t n_fills, fills_cap;
	struct srv_md *md;
	size_t n_md, md_cap;
	/* A query's rows (orders or fills, as execution reports) and balance. */
	struct srv_report *rows;
	size_t n_rows, rows_cap;
	/* More rows (of any query) matched than query_rows_max: the answer says it is cut. */
	bool rows_cut;
	/* Each row's cursor (rows_cap of them): the Request.cursor that asks for the rows
	 * after it. */
	uint64_t *cursors;
	int64_t balance_available, balance_reserved;
	struct srv_ledger_op op; /* valid when has_op */
	bool has_op;
	/* QUERY_LEASES: its rows (rows_cap of them at most). */
	struct srv_lease_view *lease_rows;
	size_t n_lease_rows;
	/* QUERY_HOSTS: its rows, host indices of the lease book (rows_cap at most). */
	uint32_t *host_rows;
	size_t n_host_rows;
	/* Leases on: what the call changed (updates, hook commands, settlements). */
	const struct srv_lease_out *leases;
	/* The products whose books the call retired (book_retain_ms). */
	char retired[SRV_CORE_RETIRED_MAX][MATCHING_PRODUCT_NAME_MAX + 1];
	size_t n_retired;
};

/* What one query counts as under query_rows_per_second beyond the rows it answers: about
 * what its request, nonce and frame cost the core next to packing one row. */
#define SRV_QUERY_ROWS_BASE 32

struct srv_core_config {
	struct matching_config matching;
	struct srv_risk_config risk;
	uint32_t accounts_max;	     /* registered keys */
	uint32_t client_ids_max;     /* live (account, client order id) pairs */
	int64_t gate_lead_ms;	     /* gate before each delivery hour */
	int64_t expiry_ahead_ms_max; /* how far ahead a request may expire */
	uint32_t operator_account;   /* may send operator requests; 0: nobody */
	uint32_t orders_per_second;  /* per account, requests that change orders */
	uint32_t orders_burst;	     /* tokens of that bucket */
	uint32_t queries_per_second; /* per participant account, QUERY_* requests */
	uint32_t queries_burst;	     /* tokens of that bucket */
	/* All participants' queries together, in rows answered per second (a query counts
	 * as SRV_QUERY_ROWS_BASE rows more): what queries may take of the core thread. */
	uint32_t query_rows_per_second; /* 0: unlimited */
	uint32_t query_rows_burst;
	uint32_t fills_recent_max;  /* fills kept for QUERY_FILLS, all accounts */
	uint32_t query_rows_max;    /* rows in one query answer */
	int64_t book_retain_ms;	    /* a book is retired this long after its delivery
				     * period ends; 0: never */
	int64_t product_horizon_ms; /* participants make no book for an hour starting
				     * later than this ahead; 0: no limit */
	const char *classes;	    /* comma-separated classes participants may trade and
				     * register hosts in; NULL or "": any (copied) */
	bool leases;		    /* hosts, workloads and leases (a hook is configured) */
	struct srv_lease_config lease;
	/* Per participant account, REGISTER_HOST, WITHDRAW_HOST and SET_WORKLOAD; 0: none. */
	uint32_t lease_requests_per_second;
	uint32_t lease_requests_burst; /* tokens of that bucket */
};

struct srv_core;

void srv_core_config_default(struct srv_core_config *cfg);
SRV_CORE_MUST_USE int srv_core_create(const struct srv_core_config *cfg, struct srv_core **out);
void srv_core_destroy(struct srv_core *c);

/* Capacities an out must have for any single call. */
void srv_core_out_caps(const struct srv_core *c, size_t *reports, size_t *fills);
void srv_core_out_caps_md(const struct srv_core *c, size_t *md, size_t *rows);

/*
 * Allocates the arrays of out with the capacities above (free with
 * srv_core_out_free). Errors: NOMEM.
 */
SRV_CORE_MUST_USE int srv_core_out_alloc(const struct srv_core *c, struct srv_core_out *out);
void srv_core_out_free(struct srv_core_out *out);

/*
 * The number of classes of a `classes` setting, or -1 when it is not valid:
 * empty (0), or up to 256 accelerator class names separated by commas (spaces
 * around them ignored), none twice.
 */
int srv_core_classes_count(const char *list);

/* Operator set-up: keys, money and capacity (see srv_keys_register and srv_risk). */
SRV_CORE_MUST_USE int srv_core_register(struct srv_core *c, uint32_t account,
					const uint8_t public_key[SRV_PUBLIC_KEY_BYTES]);
/* Names an account (the ledger's participant name, 1 .. 31 token bytes); "" reads as none. */
SRV_CORE_MUST_USE int srv_core_set_name(struct srv_core *c, uint32_t account, const char *name);
const char *srv_core_name(const struct srv_core *c, uint32_t account);
/* The registered key of an account, or NULL. Stays valid until destroy. */
const uint8_t *srv_core_key(const struct srv_core *c, uint32_t account);
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

/* Whether a book is halted (false for an unknown book). */
bool srv_core_halted(const struct srv_core *c, uint32_t book);
/* Book numbers are below this; a retired number has no name (NULL below). */
uint32_t srv_core_book_count(const struct srv_core *c);

/* The name of a book (for market data), or NULL. */
const char *srv_core_book_name(const struct srv_core *c, uint32_t book);

/*
 * The existing books a market-data topic covers: a product name (its book)
 * or an accelerator class (every book of it not yet closed, oldest first: a
 * closed book is empty and changes no more). Never creates a book. Returns
 * how many were written to books[0..max).
 */
size_t srv_core_topic_books(const struct srv_core *c, const char *topic, uint32_t *books,
			    size_t max);

/*
 * A book's depth (best first, up to max levels per side) and the market-data
 * sequences it reflects: updates continue from *level_seq + 1 and trades from
 * *trade_seq + 1. Returns false for an unknown book.
 */
bool srv_core_snapshot(const struct srv_core *c, uint32_t book, struct matching_level_view *bids,
		       size_t *n_bids, struct matching_level_view *asks, size_t *n_asks, size_t max,
		       uint64_t *level_seq, uint64_t *trade_seq);

/*
 * Snapshots (docs/durability.md): save writes everything a later call can
 * depend on (books and their queues, classes, halts, market-data sequences,
 * keys and nonce windows, names, rate buckets, live orders, risk, recent
 * fills), between calls. load fills a core just made by srv_core_create()
 * (with the operator registered, nothing else) and refuses (-1, the reason in
 * in->error) anything that does not fit or does not agree with itself; the
 * core must then be destroyed.
 */
struct srv_snap_w;
struct srv_snap_r;
void srv_core_save(const struct srv_core *c, struct srv_snap_w *w);
SRV_CORE_MUST_USE int srv_core_load(struct srv_core *c, struct srv_snap_r *in);

/*
 * The journaled outcome of a hook call (enum srv_lease_event_kind, the hook's
 * error code or "") for a lease, at now_ms: moves the clock as a tick does,
 * then the lease. Errors: ARGS (out too small).
 */
SRV_CORE_MUST_USE int srv_core_lease_event(struct srv_core *c, uint64_t lease_id, uint8_t kind,
					   const char *code, int64_t now_ms,
					   struct srv_core_out *out);
/* After start-up: start commands for the leases that should run (out->leases). */
void srv_core_lease_resume(struct srv_core *c, struct srv_core_out *out);
/* The lease book, or NULL when leases are off. */
struct srv_leases *srv_core_leases(struct srv_core *c);
/* The name of an accelerator class number ("" if none). */
const char *srv_core_class_name(const struct srv_core *c, uint32_t cls);

/* Moves the clock: GTD expiries and gate closures, reported as EXPIRED_ORDER. */
SRV_CORE_MUST_USE int srv_core_tick(struct srv_core *c, int64_t now_ms, struct srv_core_out *out);

#endif
