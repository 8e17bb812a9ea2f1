/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridex matching engine: price-time priority books for GPU-hour products.
 *
 * Pure and deterministic: no I/O, no clock reads, no allocation after
 * matching_create(). Time, order ids and accounts come in as arguments;
 * results come out as events into a caller-supplied batch. The same command
 * sequence gives the same events, byte for byte.
 *
 * Not thread-safe: one engine belongs to one thread.
 *
 * Units: prices are int64 micro-currency per GPU-hour, quantities are GPUs,
 * times are int64 milliseconds on the caller's clock (the server uses Unix
 * time). Every price * quantity product and every sum is overflow-checked.
 */
#ifndef GRIDEX_MATCHING_H
#define GRIDEX_MATCHING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "matching_limits.h"

#define MATCHING_MUST_USE __attribute__((warn_unused_result))

/* Status of an engine call. Order-level rejections are events, not statuses. */
enum matching_status {
	MATCHING_OK = 0,
	MATCHING_ERR_CONFIG,	   /* configuration out of range */
	MATCHING_ERR_NOMEM,	   /* allocation in matching_create() failed */
	MATCHING_ERR_EVENT_BUFFER, /* batch capacity below matching_events_max() */
	MATCHING_ERR_CLOCK,	   /* matching_advance() to an earlier time */
	MATCHING_ERR_PRODUCT,	   /* product definition invalid */
	MATCHING_ERR_EXISTS,	   /* product name already has a book */
	MATCHING_ERR_BOOKS_FULL,   /* books_max reached */
	MATCHING_ERR_NOT_FOUND,	   /* no such product or order */
	MATCHING_ERR_OPEN,	   /* the book has not reached its gate */
};

enum matching_side {
	MATCHING_BUY = 0,
	MATCHING_SELL = 1,
};

enum matching_tif {
	MATCHING_GTC = 0, /* rests until cancelled or gate closure */
	MATCHING_GTD,	  /* rests until expire_ms */
	MATCHING_IOC,	  /* trades what it can, the rest is removed */
	MATCHING_FOK,	  /* trades all at once or nothing */
	MATCHING_POST,	  /* rests; rejected if it would trade on entry */
};

/* Self-trade prevention, decided by the incoming (taker) order's mode. */
enum matching_stp {
	MATCHING_STP_DEFAULT = 0, /* the engine's configured default */
	MATCHING_STP_CANCEL_NEWEST,
	MATCHING_STP_CANCEL_OLDEST,
	MATCHING_STP_CANCEL_BOTH,
	MATCHING_STP_ALLOW,
};

enum matching_event_type {
	MATCHING_EV_FILL = 1, /* order_id (taker) traded qty at price with maker_id */
	MATCHING_EV_RESTING,  /* order_id rests with qty open at price */
	MATCHING_EV_DONE,     /* order_id is completely filled */
	MATCHING_EV_REMOVED,  /* qty of order_id removed without trading; see reason */
	MATCHING_EV_REJECTED, /* order_id (or a command on it) rejected; see reason */
};

/* Why an order was removed (REMOVED) or a command rejected (REJECTED). */
enum matching_reason {
	MATCHING_R_NONE = 0,
	/* REMOVED */
	MATCHING_R_CANCELLED,
	MATCHING_R_IOC_REMAINDER,
	MATCHING_R_FOK_KILLED,
	MATCHING_R_SELF_TRADE,
	MATCHING_R_EXPIRED,
	MATCHING_R_GATE_CLOSED,
	/* REJECTED */
	MATCHING_R_UNKNOWN_ORDER,
	MATCHING_R_DUPLICATE_ORDER,
	MATCHING_R_BAD_PRICE,
	MATCHING_R_BAD_QTY,
	MATCHING_R_WOULD_CROSS,
	MATCHING_R_OVERFLOW,
	MATCHING_R_BOOK_FULL,
	MATCHING_R_CLOSED,
	MATCHING_R_BAD_EXPIRY,
	MATCHING_R_BAD_ORDER,
	MATCHING_R_UNKNOWN_PRODUCT,
	MATCHING_R_BAD_BASKET,
	MATCHING_R_COUNT_,
};

struct matching_event {
	uint8_t type;	/* enum matching_event_type */
	uint8_t reason; /* enum matching_reason; NONE for FILL, RESTING, DONE */
	uint8_t side;	/* side of order_id */
	uint32_t book;
	uint64_t order_id;
	uint32_t account;	/* of order_id; 0 for REJECTED of an unknown order */
	uint32_t maker_account; /* FILL only */
	uint64_t maker_id;	/* FILL only */
	uint64_t fill_id;	/* FILL only: 1, 2, 3 ... in engine order */
	int64_t price;		/* FILL: trade price (maker's); RESTING: limit */
	int64_t qty;		/* FILL: traded; RESTING: open; REMOVED: removed */
	int64_t taker_left;	/* FILL only: taker's open quantity after it */
	int64_t maker_left;	/* FILL only: maker's open quantity after it */
};

/* Caller-owned event storage; every command call resets n to 0 and appends. */
struct matching_batch {
	struct matching_event *events;
	size_t cap; /* must be >= matching_events_max() */
	size_t n;
};

struct matching_config {
	uint32_t orders_max; /* resting orders in all books */
	uint32_t levels_max; /* price levels in all books and sides */
	uint32_t books_max;  /* products */
	int64_t price_max;   /* highest accepted price, micros; <= MATCHING_PRICE_CEILING */
	int64_t qty_max;     /* highest accepted quantity, GPUs */
	int64_t start_ms;    /* initial clock */
	uint64_t seed;	     /* deterministic seed of the far-level tree's priorities */
	uint8_t stp_default; /* enum matching_stp, not DEFAULT */
};

/* A product definition: one accelerator class and one delivery period. */
struct matching_product {
	char name[MATCHING_PRODUCT_NAME_MAX + 1];     /* NUL-terminated */
	char class_name[MATCHING_CLASS_NAME_MAX + 1]; /* NUL-terminated */
	int64_t period_start_ms;		      /* MATCHING_NO_PERIOD when it has none */
	int64_t period_ms; /* length of the delivery period, > 0 with a period */
	int64_t gate_ms;   /* closes when the clock reaches it; INT64_MAX: never */
	int64_t tick;	   /* price tick in micros, >= 1 */
};

#define MATCHING_NO_PERIOD INT64_MIN
#define MATCHING_NO_GATE   INT64_MAX

struct matching_order {
	uint64_t order_id; /* unique among live orders */
	uint32_t account;
	uint32_t book;
	uint8_t side; /* enum matching_side */
	uint8_t tif;  /* enum matching_tif */
	uint8_t stp;  /* enum matching_stp */
	int64_t price;
	int64_t qty;
	int64_t expire_ms; /* GTD only: expires when the clock reaches it */
};

/*
 * FOK basket: the same side, limit price and quantity in each of n_legs books
 * that are consecutive delivery periods of one accelerator class, in period
 * order. Executes fully in every leg or not at all.
 */
struct matching_basket {
	uint32_t account;
	uint8_t side;
	uint8_t stp;
	int64_t price;
	int64_t qty;
	uint32_t n_legs;
	uint64_t order_ids[MATCHING_BASKET_LEGS_MAX];
	uint32_t books[MATCHING_BASKET_LEGS_MAX];
};

struct matching_level_view {
	int64_t price;
	int64_t qty;
	uint32_t orders;
};

struct matching_order_view {
	uint64_t order_id;
	uint32_t account;
	uint32_t book;
	uint8_t side;
	uint8_t tif;
	uint8_t stp; /* resolved: never MATCHING_STP_DEFAULT */
	int64_t price;
	int64_t qty;
	int64_t expire_ms;
};

struct matching_engine;

/* Fills cfg with the documented defaults (docs/matching.md). */
void matching_config_default(struct matching_config *cfg);

/*
 * Allocates every pool the engine will ever use. On success *out owns the
 * engine (free with matching_destroy); on failure *out is untouched.
 * Errors: CONFIG (a capacity of 0 or above its ceiling, bad limits), NOMEM.
 */
MATCHING_MUST_USE int matching_create(const struct matching_config *cfg,
				      struct matching_engine **out);

/* Frees the engine; NULL is accepted. */
void matching_destroy(struct matching_engine *eng);

/* Capacity every batch passed to a command must have. */
size_t matching_events_max(const struct matching_engine *eng);

/* Current engine clock. */
int64_t matching_now(const struct matching_engine *eng);

/*
 * Parses "CLASS" or "CLASS/YYYY-MM-DDTHH" (an hourly UTC delivery period) into
 * out with tick 1 and gate = max(0, period start - gate_lead_ms), or no gate
 * without a period. CLASS is 1..31 bytes of [A-Za-z0-9._-]; the whole name is
 * at most 63 bytes. Pure; errors: PRODUCT. out is untouched on failure.
 */
MATCHING_MUST_USE int matching_product_parse(const char *name, size_t len, int64_t gate_lead_ms,
					     struct matching_product *out);

/*
 * The name of the product `hours` delivery hours after p (which must have an
 * hourly period): same class, "CLASS/YYYY-MM-DDTHH". Pure. Errors: PRODUCT
 * (no period, or beyond year 9999). out is untouched on failure.
 */
MATCHING_MUST_USE int matching_product_hour_name(const struct matching_product *p, uint32_t hours,
						 char out[MATCHING_PRODUCT_NAME_MAX + 1]);

/*
 * Creates the book of a product, numbered with the lowest retired number or
 * else the next new one. A book whose gate time has already been reached is
 * created closed. Errors: PRODUCT, EXISTS, BOOKS_FULL (books_max books live).
 */
MATCHING_MUST_USE int matching_book_create(struct matching_engine *eng,
					   const struct matching_product *product,
					   uint32_t *book_out);

/*
 * Snapshots: creates the book of a product with number `book`, which must be
 * retired or new; new numbers below it become retired. Errors: PRODUCT,
 * EXISTS (the number or the name is live), BOOKS_FULL (book >= books_max).
 */
MATCHING_MUST_USE int matching_book_create_at(struct matching_engine *eng,
					      const struct matching_product *product,
					      uint32_t book);

/*
 * Retires a closed book (closed books hold no orders): its name is forgotten,
 * so a later order naming the product is UNKNOWN_PRODUCT until the product is
 * created again, and its number is free for the next book created. Errors:
 * NOT_FOUND (no live book of that number), OPEN (its gate is not reached).
 */
MATCHING_MUST_USE int matching_book_retire(struct matching_engine *eng, uint32_t book);

/* Looks a product up by name. Errors: NOT_FOUND. */
MATCHING_MUST_USE int matching_book_find(const struct matching_engine *eng, const char *name,
					 size_t len, uint32_t *book_out);

/* The product of a book, or NULL for an unknown or retired book. */
const struct matching_product *matching_book_product(const struct matching_engine *eng,
						     uint32_t book);

/* Whether the book has reached its gate closure (unknown and retired books are closed). */
bool matching_book_closed(const struct matching_engine *eng, uint32_t book);

/*
 * Books are numbered below this; the highest number is a live book's. Numbers
 * below it may be retired (matching_book_product() gives NULL for them).
 */
uint32_t matching_book_count(const struct matching_engine *eng);

/* Live (not retired) books: at most books_max. */
uint32_t matching_book_live(const struct matching_engine *eng);

/*
 * Copies up to max levels of one side, best first, into out and returns how
 * many were copied. Unknown books have no levels.
 */
size_t matching_book_depth(const struct matching_engine *eng, uint32_t book,
			   enum matching_side side, struct matching_level_view *out, size_t max);

/* The level at price on a side of a book; qty and orders 0 when there is none. */
void matching_level_get(const struct matching_engine *eng, uint32_t book, enum matching_side side,
			int64_t price, struct matching_level_view *out);

/* Looks a live order up. Errors: NOT_FOUND. out is untouched on failure. */
MATCHING_MUST_USE int matching_order_get(const struct matching_engine *eng, uint64_t order_id,
					 struct matching_order_view *out);

/* Number of resting orders in all books. */
uint32_t matching_order_count(const struct matching_engine *eng);

/*
 * Commands. Each resets out->n and appends the command's events; rejections
 * of the order are REJECTED events and the call still returns OK. The only
 * error is EVENT_BUFFER (out->cap too small; nothing happened), and CLOCK for
 * matching_advance().
 *
 * submit: a new order. Ends with exactly one RESTING, DONE, REMOVED or
 * REJECTED event for order_id, after its fills.
 */
MATCHING_MUST_USE int matching_submit(struct matching_engine *eng, const struct matching_order *o,
				      struct matching_batch *out);

/* cancel: REMOVED with the open quantity, or REJECTED unknown_order. */
MATCHING_MUST_USE int matching_cancel(struct matching_engine *eng, uint64_t order_id,
				      struct matching_batch *out);

/*
 * modify: new limit price and new open quantity. The same price with a
 * quantity not above the open quantity keeps queue position (RESTING with the
 * new quantity); anything else re-enters the order at the back of its new
 * level with its time in force, and it may trade at once. A rejected modify
 * leaves the order as it was.
 */
MATCHING_MUST_USE int matching_modify(struct matching_engine *eng, uint64_t order_id, int64_t price,
				      int64_t qty, struct matching_batch *out);

/* basket: see struct matching_basket. Every leg ends with DONE, REMOVED or REJECTED. */
MATCHING_MUST_USE int matching_submit_basket(struct matching_engine *eng,
					     const struct matching_basket *b,
					     struct matching_batch *out);

/*
 * advance: moves the clock to now_ms (not backwards). GTD orders whose expiry
 * is reached are removed in (expiry, entry) order, then books whose gate is
 * reached close in (gate, book) order, each removing its bids best first, then
 * its asks best first, in time priority within a level.
 */
MATCHING_MUST_USE int matching_advance(struct matching_engine *eng, int64_t now_ms,
				       struct matching_batch *out);

/*
 * Snapshots (docs/durability.md). matching_book_orders() calls each(view, ctx)
 * for every resting order of one side of a book, best level first and in time
 * priority within a level, until each returns non-zero (which it returns).
 * matching_restore_order() puts an order back at the tail of its level
 * without matching, so restoring a side's orders in that order rebuilds its
 * queues exactly; it refuses (REJECTED's reasons as the return value, 0 when
 * restored) what a live book could not hold: an unknown or closed book, a bad
 * price, quantity, side, time in force (IOC and FOK never rest), resolved STP
 * mode or expiry, a duplicate id, no room, or a price that crosses the other
 * side. matching_fill_seq() is the id the next fill gets;
 * matching_restore_fill_seq() sets it (not below 1).
 */
MATCHING_MUST_USE int
matching_book_orders(const struct matching_engine *eng, uint32_t book, enum matching_side side,
		     int (*each)(const struct matching_order_view *o, void *ctx), void *ctx);
MATCHING_MUST_USE uint8_t matching_restore_order(struct matching_engine *eng,
						 const struct matching_order *o);
uint64_t matching_fill_seq(const struct matching_engine *eng);
void matching_restore_fill_seq(struct matching_engine *eng, uint64_t next_fill);

/*
 * Checks every structural invariant (links, totals, index, window, tree,
 * expiry heap, uncrossed books). Returns NULL when they hold, else a static
 * description of the first violation. O(everything): for tests.
 */
const char *matching_check_invariants(const struct matching_engine *eng);

/* Lowercase token of a reason, e.g. "unknown_order"; "none" for NONE. */
const char *matching_reason_name(enum matching_reason reason);

#endif
