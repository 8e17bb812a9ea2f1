/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pre-trade risk for gridexd: a buyer never bids for more than it can pay, a
 * seller never offers more GPUs for a delivery period than it registered for
 * the accelerator class and has not already offered or sold.
 *
 * Pure bookkeeping on the core thread, driven by the matching engine's
 * events: srv_risk_enter() before a new order reaches the engine (reserves),
 * srv_risk_apply() for every event it produced (fills move money, terminal
 * events release what is left). Fixed capacities, allocated at creation.
 *
 * A bid reserves qty * (limit + ceil(limit * max_bps / 10000)): the fee is
 * reserved per GPU, so that what a fill releases always covers what it costs
 * (a fee rounded up on the whole notional could fall one micro-unit short).
 */
#ifndef GRIDEX_SRV_RISK_H
#define GRIDEX_SRV_RISK_H

#include <stdbool.h>
#include <stdint.h>

#include "matching.h"

#define SRV_RISK_MUST_USE __attribute__((warn_unused_result))

enum srv_risk_status {
	SRV_RISK_OK = 0,
	SRV_RISK_INSUFFICIENT_FUNDS,
	SRV_RISK_INSUFFICIENT_CAPACITY,
	SRV_RISK_TOO_MANY_ORDERS, /* the account's open order limit */
	SRV_RISK_OVERFLOW,
	SRV_RISK_UNKNOWN_ACCOUNT,
	SRV_RISK_FULL,	    /* a table of the configured size is full */
	SRV_RISK_DUPLICATE, /* the order id is already tracked */
	SRV_RISK_ARGS,
	SRV_RISK_NOMEM,
};

struct srv_risk_config {
	uint32_t accounts_max;
	uint32_t orders_max;	 /* open orders tracked, all accounts */
	uint32_t positions_max;	 /* (account, product) pairs with offers or sales */
	uint32_t capacities_max; /* (account, accelerator class) registrations */
	uint32_t books_max;	 /* book numbers are below it (the engine's books_max) */
	uint32_t classes_max;	 /* class numbers are below it (the server's) */
	uint32_t open_orders_per_account_max;
	uint32_t maker_bps, taker_bps; /* as the ledger charges them */
};

/* A new order as the server is about to submit it to the engine. */
struct srv_risk_order {
	uint64_t order_id; /* the engine's id */
	uint32_t account;
	uint32_t book;	   /* the engine's book: one delivery period */
	uint32_t class_id; /* the book's accelerator class, numbered by the server */
	uint8_t side;	   /* enum matching_side */
	int64_t price;
	int64_t qty;
};

struct srv_risk_account {
	int64_t cash;	  /* available money: the ledger's balance minus fill costs since */
	int64_t reserved; /* held for open bids */
	uint32_t open_orders;
};

struct srv_risk;

void srv_risk_config_default(struct srv_risk_config *cfg);
SRV_RISK_MUST_USE int srv_risk_create(const struct srv_risk_config *cfg, struct srv_risk **out);
void srv_risk_destroy(struct srv_risk *r);

/* Adds (or changes, by delta) an account's cash, e.g. a deposit. Errors: FULL, OVERFLOW. */
SRV_RISK_MUST_USE int srv_risk_add_cash(struct srv_risk *r, uint32_t account, int64_t delta);

/* Registers how many GPUs of a class the account sells per delivery period. */
SRV_RISK_MUST_USE int srv_risk_set_capacity(struct srv_risk *r, uint32_t account, uint32_t class_id,
					    int64_t gpus);

/* Whether srv_risk_set_capacity of (account, class_id) can succeed: it has an entry, or
 * the table has room for one. */
bool srv_risk_capacity_room(const struct srv_risk *r, uint32_t account, uint32_t class_id);

/* GPUs of a class the account may sell per delivery period (0 when none was set). */
int64_t srv_risk_capacity(const struct srv_risk *r, uint32_t account, uint32_t class_id);

/* Whether any account has a capacity entry for the class (entries, once made, stay: a
 * capacity set to 0 keeps its entry). */
bool srv_risk_class_has_capacity(const struct srv_risk *r, uint32_t class_id);

/* The account's state. Errors: UNKNOWN_ACCOUNT. */
SRV_RISK_MUST_USE int srv_risk_account(const struct srv_risk *r, uint32_t account,
				       struct srv_risk_account *out);

/* GPUs the account offers (open sells) and has sold in a book. */
void srv_risk_position(const struct srv_risk *r, uint32_t account, uint32_t book, int64_t *offered,
		       int64_t *sold);

/*
 * Checks and reserves for a new order: bids need cash - reserved >= the
 * reservation; offers need offered + sold + qty <= the class capacity. On OK
 * the order is tracked until its terminal event. Nothing changes on failure.
 * Errors: INSUFFICIENT_FUNDS, INSUFFICIENT_CAPACITY, TOO_MANY_ORDERS,
 * OVERFLOW, UNKNOWN_ACCOUNT, FULL, DUPLICATE, ARGS.
 */
SRV_RISK_MUST_USE int srv_risk_enter(struct srv_risk *r, const struct srv_risk_order *o);

/*
 * Checks a modify to (price, qty) of a tracked order and, on OK, applies it
 * at once (the order re-enters the engine with these), remembering the old
 * state until srv_risk_modify_end(). Errors: as srv_risk_enter() and
 * SRV_RISK_ARGS for an untracked order.
 */
SRV_RISK_MUST_USE int srv_risk_modify_begin(struct srv_risk *r, uint64_t order_id, int64_t price,
					    int64_t qty);

/* Ends a modify: `rejected` restores the state before srv_risk_modify_begin(). */
void srv_risk_modify_end(struct srv_risk *r, bool rejected);

/*
 * Applies one engine event: FILL moves the buyer's cost out of its cash and
 * its reservation, and the seller's GPUs from offered to sold; RESTING
 * updates the order's open quantity; DONE, REMOVED and REJECTED end the order
 * and release what it still held. Events of untracked orders are ignored.
 */
void srv_risk_apply(struct srv_risk *r, const struct matching_event *ev);

/*
 * Forgets the positions of a book the engine retired, so that its number can
 * serve another product. Errors: ARGS (a number not below books_max, or
 * offers still open in the book; nothing changes then).
 */
SRV_RISK_MUST_USE int srv_risk_forget_book(struct srv_risk *r, uint32_t book);

/* Tracked orders: how many, and one (price: its limit, qty: open) by id. */
uint32_t srv_risk_order_count(const struct srv_risk *r);
bool srv_risk_order(const struct srv_risk *r, uint64_t order_id, struct srv_risk_order *out);

/*
 * Snapshots: save writes the state (between calls); load fills a new, empty
 * risk from what save wrote, refusing (-1, the reason in in->error) anything
 * inconsistent. What open orders hold is recomputed from them.
 */
struct srv_snap_w;
struct srv_snap_r;
void srv_risk_save(const struct srv_risk *r, struct srv_snap_w *w);
SRV_RISK_MUST_USE int srv_risk_load(struct srv_risk *r, struct srv_snap_r *in);

/* Whether every position is in a book that live(book, ctx) says exists (a snapshot's check). */
bool srv_risk_positions_in(const struct srv_risk *r, bool (*live)(uint32_t book, void *ctx),
			   void *ctx);

/* Consistency of totals with the tracked orders (for tests); NULL when fine. */
const char *srv_risk_check_invariants(const struct srv_risk *r);

const char *srv_risk_status_name(int status);

#endif
