/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridex ledger: the only code that talks to PostgreSQL (libpq).
 *
 * Two layers:
 *   - pure money arithmetic (fees, fill and delivery transfers, amounts),
 *     which needs no database;
 *   - a connection (struct ledger) that migrates the schema, opens accounts
 *     and posts batches of transfers atomically into the hash-chained ledger,
 *     and a settlement writer (struct ledger_writer) on top of it that groups
 *     fills into batches, retries through outages and never applies a batch
 *     twice.
 * Not thread-safe: one connection or writer per thread. Libraries do not log:
 * every failure returns a status and ledger_error() tells the details.
 * Schema, money flows and ids: docs/ledger.md.
 */
#ifndef GRIDEX_LEDGER_H
#define GRIDEX_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_MUST_USE __attribute__((warn_unused_result))

enum ledger_status {
	LEDGER_OK = 0,
	LEDGER_ERR_ARGS, /* invalid argument (caller error) */
	LEDGER_ERR_NOMEM,
	LEDGER_ERR_OVERFLOW,	/* an amount does not fit in int64 */
	LEDGER_ERR_UNAVAILABLE, /* the database cannot be reached, or said "not now" (a
				 * timeout, a deadlock, resources); try again later */
	LEDGER_ERR_REFUSED,	/* the database refused the data (overdraft, constraint) */
	LEDGER_ERR_DUPLICATE,	/* this batch is already in the ledger, identical */
	LEDGER_ERR_CONFLICT,	/* a different batch already has this id */
	LEDGER_ERR_NOT_FOUND,	/* no such participant or account */
	LEDGER_ERR_MIGRATION,	/* a migration failed or an applied one changed */
	LEDGER_ERR_SCHEMA,	/* the database lacks the ledger schema (run migrate) */
};

enum ledger_code {
	LEDGER_DEPOSIT = 1,
	LEDGER_WITHDRAWAL,
	LEDGER_TRADE,
	LEDGER_FEE,
	LEDGER_ESCROW_RELEASE,
	LEDGER_REFUND,
};

/* Limits, each with its reason. */
#define LEDGER_BPS_MAX		   10000		    /* fees above 100% make no sense */
#define LEDGER_FILL_ID_MAX	   ((INT64_C(1) << 59) - 1) /* fill id << 3 stays below operator ids */
#define LEDGER_ACTION_ID_MAX	   ((INT64_C(1) << 62) - 1)
#define LEDGER_OPERATOR_ID_BASE	   (INT64_C(1) << 62) /* transfer ids of operator actions */
#define LEDGER_BATCH_TRANSFERS_MAX 1000000	      /* one COPY; bounds the writer's memory */
#define LEDGER_HASH_BYTES	   32
#define LEDGER_PRODUCT_MAX	   63 /* bytes of a product's name, as the protocol's */
#define LEDGER_FORMAT		   2  /* what ledger_post writes: batches with their trades */
#define LEDGER_CLASS_MAX	   31 /* bytes of an accelerator class's name, as the engine's */
#define LEDGER_TIME_MS_MAX	   INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */

/* One row of ledger.transfers. Reference ids are 0 when absent. */
struct ledger_transfer {
	int64_t id;
	int64_t debit_account;
	int64_t credit_account;
	int64_t amount; /* > 0, micro-units */
	uint8_t code;	/* enum ledger_code */
	int64_t fill_id, taker_order_id, maker_order_id, lease_id;
};

/* A trade as the engine reported it, with both sides' participants. */
struct ledger_fill {
	int64_t fill_id; /* 1 .. LEDGER_FILL_ID_MAX */
	uint32_t buyer, seller;
	bool buyer_is_taker;
	int64_t taker_order_id, maker_order_id;
	int64_t price; /* micro-units per GPU-hour */
	int64_t qty;   /* GPUs */
};

/* A fill as ledger.fills records it beside its money: what was traded, when. */
struct ledger_trade {
	struct ledger_fill fill;
	char product[LEDGER_PRODUCT_MAX + 1]; /* 1-63 bytes of [A-Za-z0-9._/:-], NUL-ended */
	int64_t time_ms; /* when it traded: the engine's clock, ms since 1970 (UTC), >= 0 */
};

/* Fee rates in basis points of the notional, per role. */
struct ledger_fees {
	uint32_t maker_bps, taker_bps; /* 0 .. LEDGER_BPS_MAX */
};

/* The exchange's accounts in one currency, and the participant accounts. */
struct ledger_accounts {
	int64_t fees, escrow, bank;
	int64_t buyer, seller; /* AVAILABLE accounts of the fill's participants */
};

/* ---------- pure arithmetic ---------- */

/*
 * Fee on a notional, rounded up: the exchange's favour by less than one
 * micro-unit. Exact for every notional (no intermediate overflow).
 * Errors: ARGS (negative notional, bps above LEDGER_BPS_MAX).
 */
LEDGER_MUST_USE int ledger_fee(int64_t notional, uint32_t bps, int64_t *fee_out);

/*
 * The transfers of a fill: [0] buyer AVAILABLE -> ESCROW, the notional
 * (leg 0, code trade); [1] buyer AVAILABLE -> FEES, the buyer's fee (leg 1,
 * code fee), omitted when zero. Returns the number written (1 or 2) in *n.
 * Errors: ARGS (fill id out of range, price or qty < 1), OVERFLOW.
 */
LEDGER_MUST_USE int ledger_fill_transfers(const struct ledger_fill *f,
					  const struct ledger_fees *fees,
					  const struct ledger_accounts *acc,
					  struct ledger_transfer out[2], size_t *n);

/*
 * The transfers that end a fill's escrow. Delivered: ESCROW -> seller
 * AVAILABLE, the notional (leg 2, escrow_release), and seller AVAILABLE ->
 * FEES, the seller's fee (leg 3), omitted when zero. Not delivered:
 * ESCROW -> buyer AVAILABLE, the notional (leg 4, refund), and FEES -> buyer
 * AVAILABLE, the buyer's fee back (leg 5, refund), omitted when zero.
 * Errors as ledger_fill_transfers().
 */
LEDGER_MUST_USE int ledger_settle_transfers(const struct ledger_fill *f,
					    const struct ledger_fees *fees,
					    const struct ledger_accounts *acc, bool delivered,
					    int64_t lease_id, struct ledger_transfer out[2],
					    size_t *n);

/*
 * The transfers that end a fill's escrow when its lease delivered `used` of
 * `total` (minutes of the window, GPU-minutes: any unit; 0 <= used <= total):
 * the seller gets floor(notional * used / total) out of escrow (leg 2) and
 * pays its fee on that (leg 3); the buyer gets the rest back (leg 4) and the
 * part of its fee that was not for delivered time (leg 5: its fee on the
 * notional less its fee on the delivered share). Legs of zero are omitted;
 * 1 to 4 are written. used == total is ledger_settle_transfers(delivered),
 * used == 0 is the full refund. Errors as ledger_fill_transfers(), and ARGS
 * for used or total out of range.
 */
LEDGER_MUST_USE int ledger_settle_part_transfers(const struct ledger_fill *f,
						 const struct ledger_fees *fees,
						 const struct ledger_accounts *acc, int64_t used,
						 int64_t total, int64_t lease_id,
						 struct ledger_transfer out[4], size_t *n);

/*
 * Parses an amount of currency into micro-units: "12", "12.5", "0.000001".
 * At most 6 decimals, no sign, no exponent; must be > 0 and fit int64.
 * Errors: ARGS, OVERFLOW. *micros is untouched on failure.
 */
LEDGER_MUST_USE int ledger_parse_amount(const char *s, int64_t *micros);

/*
 * SHA-256 of a batch of format 1: prev_hash || be64(batch id) || be64(n) ||
 * each transfer in ascending id order (be64 id, debit, credit, amount, one
 * byte code, be64 fill, taker, maker, lease ids, and the 8-byte zero-padded
 * currency code). The transfers must be sorted by id.
 */
void ledger_batch_hash(const uint8_t prev_hash[LEDGER_HASH_BYTES], int64_t batch_id,
		       const char *currency, const struct ledger_transfer *t, size_t n,
		       uint8_t out[LEDGER_HASH_BYTES]);

/*
 * SHA-256 of a batch of format 2 (LEDGER_FORMAT): what format 1 hashes, then
 * be64(n_trades) and each trade in ascending fill id order (be64 fill id,
 * price, quantity, buyer, seller, one byte 1 when the buyer was the taker,
 * be64 taker and maker order ids, time_ms, one byte the product's length and
 * the product). Both lists must be sorted by id.
 */
void ledger_batch_hash_trades(const uint8_t prev_hash[LEDGER_HASH_BYTES], int64_t batch_id,
			      const char *currency, const struct ledger_transfer *t, size_t n,
			      const struct ledger_trade *tr, size_t n_trades,
			      uint8_t out[LEDGER_HASH_BYTES]);

/* Whether a product's name is 1-63 bytes of [A-Za-z0-9._/:-]. */
bool ledger_product_valid(const char *product);

const char *ledger_code_name(uint8_t code);
const char *ledger_status_name(int status);

/* ---------- connection ---------- */

struct ledger;

/*
 * Connects (conninfo: a libpq URL or key=value string) and loads the
 * exchange accounts of `currency` and the last batch hash. On success *out
 * owns the connection. Errors: UNAVAILABLE (cannot connect: *out is still set
 * so that ledger_error() can tell why; close it), SCHEMA, NOT_FOUND (unknown
 * currency), NOMEM.
 */
LEDGER_MUST_USE int ledger_open(const char *conninfo, const char *currency, struct ledger **out);

/* Closes the connection; NULL is accepted. */
void ledger_close(struct ledger *l);

/* The last error's message (never NULL; empty when none). */
const char *ledger_error(const struct ledger *l);

/*
 * Applies the pending migrations of dir (files NNNN_name.sql, in order), each
 * in its own transaction with its version recorded in schema_migrations;
 * applied ones are skipped (their SHA-256 must not have changed). Calls
 * report(version, name, applied, ctx) for each file. A failing migration is
 * rolled back and stops the run. Errors: UNAVAILABLE, MIGRATION, ARGS.
 * Needs only a connection: call it before ledger_open() on a fresh database.
 */
LEDGER_MUST_USE int ledger_migrate(const char *conninfo, const char *dir,
				   void (*report)(int version, const char *name, bool applied,
						  void *ctx),
				   void *ctx, char *err, size_t err_len);

/* Opens a participant (engine account number id, name) with an AVAILABLE
 * account; idempotent for the same id and name. Errors: REFUSED (the id or
 * name is taken by another), UNAVAILABLE. */
LEDGER_MUST_USE int ledger_add_participant(struct ledger *l, uint32_t id, const char *name);

/* Records a participant's Ed25519 public key (32 bytes); idempotent for the
 * same key. Errors: REFUSED (another key is recorded, or no such
 * participant), UNAVAILABLE. */
LEDGER_MUST_USE int ledger_register_key(struct ledger *l, uint32_t id, const uint8_t key[32]);

/* One participant as gridexd loads it at start-up. */
struct ledger_participant {
	uint32_t id;
	char name[32];
	bool has_key;
	uint8_t public_key[32];
	int64_t available; /* balance of its AVAILABLE account in the connection's currency */
};

/*
 * Calls each(p, ctx) for every participant, in id order, inside one
 * read-only snapshot; stops at the first non-zero return of each and
 * returns it. Errors: UNAVAILABLE, NOMEM.
 */
LEDGER_MUST_USE int
ledger_load_participants(struct ledger *l,
			 int (*each)(const struct ledger_participant *p, void *ctx), void *ctx);

/*
 * Takes the ledger's writer lock (a session-level advisory lock) for as long
 * as this connection lives: the one process that writes batches holds it
 * (gridexd while it runs, gridex-admin for one operator action). *got is
 * false when another session holds it. Errors: UNAVAILABLE. Once got, l
 * keeps it across reconnections: a new session takes it again before
 * anything else, and while another holds it the reconnection fails
 * (UNAVAILABLE, ledger_error() says why), so nothing is written without it.
 */
LEDGER_MUST_USE int ledger_try_lock(struct ledger *l, bool *got);

/* Records that gridexd's journal begins at seq_base (idempotent). Errors: UNAVAILABLE. */
LEDGER_MUST_USE int ledger_mark_journal(struct ledger *l, int64_t seq_base);
/* Whether a journal owns the ledger (ledger_mark_journal was called). Errors: UNAVAILABLE. */
LEDGER_MUST_USE int ledger_journal_started(struct ledger *l, bool *started);

/* Highest operator action number used (0 when none). Errors: UNAVAILABLE. */
LEDGER_MUST_USE int ledger_last_action(struct ledger *l, int64_t *action);

/* AVAILABLE account of a participant (cached). Errors: NOT_FOUND, UNAVAILABLE. */
LEDGER_MUST_USE int ledger_participant_account(struct ledger *l, uint32_t participant,
					       int64_t *account);

/* Exchange accounts of the connection's currency (buyer/seller left 0). */
void ledger_exchange_accounts(const struct ledger *l, struct ledger_accounts *acc);

/* Balance of an account. Errors: NOT_FOUND, UNAVAILABLE. */
LEDGER_MUST_USE int ledger_balance(struct ledger *l, int64_t account, int64_t *balance);

/*
 * Posts transfers (1 .. LEDGER_BATCH_TRANSFERS_MAX; sorted in place by id)
 * as batch batch_id in one transaction: the batch row extending the hash
 * chain (format 2), one COPY of the transfers, COMMIT with synchronous_commit
 * on. When the connection is lost with the outcome unknown, it reconnects once and
 * checks whether the batch is in. Errors: DUPLICATE (already in, identical:
 * nothing to do), CONFLICT, REFUSED (the database refused it: nothing
 * applied), UNAVAILABLE (not applied, or unknown if it cannot reconnect:
 * post the same batch again later), ARGS.
 */
LEDGER_MUST_USE int ledger_post(struct ledger *l, int64_t batch_id, struct ledger_transfer *t,
				size_t n);

/*
 * ledger_post() with the batch's trades (0 .. n; sorted in place by fill id;
 * each fill once, with a valid product and a time >= 0), written to
 * ledger.fills by a second COPY in the same transaction and covered by the
 * batch's hash (format 2). The batch's trade transfers (leg 0) and its trades
 * must name the same fills, else ARGS: ledger_post() is for batches without
 * trade transfers (deposits, withdrawals, escrow settlements).
 */
LEDGER_MUST_USE int ledger_post_trades(struct ledger *l, int64_t batch_id,
				       struct ledger_transfer *t, size_t n, struct ledger_trade *tr,
				       size_t n_trades);

/* The next unused operator action number (1 when none was used). */
LEDGER_MUST_USE int ledger_next_action(struct ledger *l, int64_t *action);

/*
 * The newest `max` fills of ledger.fills (fewer when it holds fewer), newest first,
 * each handed to fn as it arrives (rows are streamed, not held). Every row is checked
 * as ledger_post_trades() checks a fill it writes (its values, a 1-63 byte product of
 * [A-Za-z0-9._/:-], participants of 32 bits, a whole millisecond); the first that fails
 * ends the call with REFUSED and its id in ledger_error(), after the rows before it
 * were handed on. Errors: UNAVAILABLE, REFUSED.
 */
typedef void ledger_trade_fn(const struct ledger_trade *t, void *ctx);
LEDGER_MUST_USE int ledger_recent_trades(struct ledger *l, size_t max, ledger_trade_fn *fn,
					 void *ctx);

/* What ledger_candles() reads: a product's fills, or a class's (is_class: the
 * product named `name`, and every product named name/...), traded in [from_ms,
 * to_ms), per interval of interval_ms. */
struct ledger_candle_query {
	const char *name; /* a product (1-63 bytes) or a class (1-31, no '/') */
	bool is_class;
	int64_t from_ms, to_ms, interval_ms; /* from_ms and to_ms multiples of interval_ms */
};

/* One interval's fills: prices in micro-units per GPU-hour, volume in GPUs. */
struct ledger_candle {
	int64_t start_ms;    /* a multiple of the interval since 1970 (UTC) */
	int64_t open, close; /* the first and last fill's price, in fill id order */
	int64_t high, low;
	int64_t volume;
	int64_t vwap; /* sum of price x quantity over the volume, rounded down (exact) */
};

/*
 * The candles of ledger.fills for q: only intervals with fills, oldest first, into
 * out (room for max; the range may hold at most max intervals, else ARGS, as are an
 * invalid name, a range not of whole intervals, or a time beyond LEDGER_TIME_MS_MAX).
 * One query, run with statement_timeout timeout_ms (0: none) in the connection's
 * session, which may be read-only (gridex_auditor) or a replica's. The rows are
 * checked to be candles of the range (in order, every price between low and high,
 * whole 64-bit numbers); one that is not ends the call with REFUSED and nothing in out.
 * Errors: ARGS, UNAVAILABLE (down, or said "not now": the timeout's cancellation too),
 * REFUSED.
 */
LEDGER_MUST_USE int ledger_candles(struct ledger *l, const struct ledger_candle_query *q,
				   int64_t timeout_ms, struct ledger_candle *out, size_t max,
				   size_t *n);

/* What ledger_trades_between() reads: a product's fills, or a class's (as
 * ledger_candle_query), traded in [from_ms, to_ms), after the fill after_id. */
struct ledger_trade_query {
	const char *name;
	bool is_class;
	int64_t from_ms, to_ms;
	int64_t after_id; /* the last fill of the page before; 0: from the range's start */
};

/*
 * A page of the fills of ledger.fills for q, in the order (time, fill id), at most max,
 * into out: those of an id above after_id. Journaled times never go back, so the order
 * is the fills' own (by id). Each row is checked as ledger_recent_trades() checks them,
 * and to be of q (its product or class, its range, after the one before); one that is
 * not ends the call with REFUSED, naming its id. Runs as ledger_candles() does
 * (statement_timeout timeout_ms): with after_id a fill of the range, the primary key
 * from it, so a page costs its own fills and the others' between them; else the range
 * by the BRIN index on traded_at (a page costs the range). Errors: ARGS (an invalid
 * name or range, max 0), UNAVAILABLE, REFUSED.
 */
LEDGER_MUST_USE int ledger_trades_between(struct ledger *l, const struct ledger_trade_query *q,
					  int64_t timeout_ms, struct ledger_trade *out, size_t max,
					  size_t *n);

/*
 * Cancelling l's query from another thread (libpq's PQcancel): made by the thread that
 * uses l, while connected (NULL otherwise, or out of memory), and good until l
 * reconnects or closes. ledger_cancel_send() may be called from any thread, while l
 * runs a query or not; the query, if any, ends with UNAVAILABLE.
 */
struct ledger_cancel;
struct ledger_cancel *ledger_cancel_new(struct ledger *l);
void ledger_cancel_send(struct ledger_cancel *c);
void ledger_cancel_free(struct ledger_cancel *c); /* NULL is accepted */

/* Highest batch id in the ledger (0 when empty). Errors: UNAVAILABLE. */
LEDGER_MUST_USE int ledger_last_batch(struct ledger *l, int64_t *batch_id);

/* Test hook: drop the connection right after the next COMMIT succeeds, as if
 * its answer were lost. */
void ledger_fault_lose_next_commit(struct ledger *l);

/*
 * Audits the ledger as the connecting role (use gridex_auditor), inside one
 * read-only transaction so every check sees the same snapshot: debits equal
 * credits and balances sum to zero per currency; every balance equals the sum
 * of its transfers; no AVAILABLE, FEES or ESCROW balance below zero; the
 * batch hash chain recomputes (by each batch's format, its fills included)
 * and links; ESCROW equals the trades not yet released or refunded; every
 * fill agrees with its trade transfer and every trade transfer of format 2
 * has its fill. Calls line(ok, check, detail, ctx) once per check and sets
 * *failed to the number of failed checks. Errors: UNAVAILABLE, SCHEMA (no
 * ledger schema, or one without ledger.fills, migration 0004), NOMEM (the
 * audit could not run; *failed is then meaningless).
 */
LEDGER_MUST_USE int ledger_audit(const char *conninfo,
				 void (*line)(bool ok, const char *check, const char *detail,
					      void *ctx),
				 void *ctx, int *failed, char *err, size_t err_len);

/* ---------- settlement writer ---------- */

struct ledger_writer_config {
	const char *conninfo;
	const char *currency;
	struct ledger_fees fees;
	uint32_t batch_fills_max; /* flush at this many fills (1 .. 500000) */
	uint32_t batch_ms_max;	  /* or when the oldest pending fill is this old */
	uint32_t retry_ms_min;	  /* first retry delay; doubles up to retry_ms_max */
	uint32_t retry_ms_max;
	uint32_t retry_total_ms_max; /* one flush gives up (UNAVAILABLE) after this */
};

struct ledger_writer;

void ledger_writer_config_default(struct ledger_writer_config *cfg);

/* Creates a writer; connects lazily. Errors: ARGS, NOMEM. */
LEDGER_MUST_USE int ledger_writer_create(const struct ledger_writer_config *cfg,
					 struct ledger_writer **out);
/* Gives the writer l as its connection (one that holds the writer lock, say);
 * the writer owns it from then on and closes it. */
void ledger_writer_adopt(struct ledger_writer *w, struct ledger *l);
void ledger_writer_destroy(struct ledger_writer *w);
const char *ledger_writer_error(const struct ledger_writer *w);

/*
 * Adds a fill to the pending batch: its money (ledger_fill_transfers) and its
 * row in ledger.fills. seq is the engine sequence number of the
 * input that caused it (non-decreasing); the batch's id is the seq of its
 * last fill. A batch holding batch_fills_max fills takes more only of its
 * last sequence (it grows, up to LEDGER_BATCH_TRANSFERS_MAX / 5 items):
 * flush only after an input's last item, and no input's items span two
 * batches. Errors: ARGS (seq decreasing, or a full batch: flush first),
 * OVERFLOW, NOT_FOUND (a participant without an account), UNAVAILABLE.
 */
LEDGER_MUST_USE int ledger_writer_add_fill(struct ledger_writer *w, const struct ledger_trade *f,
					   int64_t seq, int64_t now_ms);

/*
 * Adds the end of a fill's escrow (ledger_settle_part_transfers: used of total
 * delivered, by lease lease_id) to the pending batch, as
 * ledger_writer_add_fill() adds a fill (one item; the fill must be in the
 * ledger by then, in this batch or an earlier one). Errors as
 * ledger_writer_add_fill().
 */
LEDGER_MUST_USE int ledger_writer_add_settle(struct ledger_writer *w, const struct ledger_fill *f,
					     int64_t used, int64_t total, int64_t lease_id,
					     int64_t seq, int64_t now_ms);

/*
 * Adds an operator's deposit (BANK -> AVAILABLE) or withdrawal (AVAILABLE ->
 * BANK) of amount micro-units to the pending batch, as transfer
 * LEDGER_OPERATOR_ID_BASE + seq. Errors as ledger_writer_add_fill().
 */
LEDGER_MUST_USE int ledger_writer_add_action(struct ledger_writer *w, uint32_t participant,
					     int64_t amount, bool deposit, int64_t seq,
					     int64_t now_ms);

/*
 * Opens participant id with its name and key in the ledger (outside any
 * batch), retrying through outages like a flush. Errors: REFUSED (the id,
 * name or key belongs to another), UNAVAILABLE (gave up; call again).
 */
LEDGER_MUST_USE int ledger_writer_register(struct ledger_writer *w, uint32_t id, const char *name,
					   const uint8_t key[32]);

/* Whether the pending batch should be flushed now. */
bool ledger_writer_due(const struct ledger_writer *w, int64_t now_ms);

/* Number of fills waiting in the pending batch. */
size_t ledger_writer_pending(const struct ledger_writer *w);

/*
 * Writes the pending batch, retrying with backoff through outages for up to
 * retry_total_ms_max. OK: committed now or found committed before (a retry
 * after a lost answer); the batch is cleared. UNAVAILABLE: still pending, call
 * again later. REFUSED or CONFLICT: the database will never take this batch;
 * it stays pending for the operator to inspect.
 */
LEDGER_MUST_USE int ledger_writer_flush(struct ledger_writer *w);

/* Failed attempts so far (each followed by a backoff and a retry). */
uint64_t ledger_writer_retries(const struct ledger_writer *w);

#endif
