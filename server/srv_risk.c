/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_risk.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "srv_snapshot.h"

#define EMPTY UINT64_MAX
#define NONE  UINT32_MAX

/* Open addressing from a u64 key to a u32 slot of a payload array. */
struct table {
	uint64_t *keys;
	uint32_t *vals;
	uint32_t mask, count, max;
	uint64_t empty; /* the key of a free slot: EMPTY, or 0 in a lazy table */
};

struct rorder {
	uint64_t id;
	uint32_t account, book, class_id;
	uint8_t side;
	int64_t limit, open;
	int64_t unit; /* bids: money reserved per open GPU; offers: 0 */
};

struct racct {
	int64_t cash, reserved;
	uint32_t open_orders;
};

struct rpos {
	int64_t offered, sold;
	uint32_t account;
	uint32_t next; /* the book's next position, or the next free one */
};

struct srv_risk {
	struct srv_risk_config cfg;
	uint32_t max_bps;
	struct table accounts, capacities, positions, orders;
	struct racct *acct;
	int64_t *cap;
	struct rpos *pos;
	uint32_t *book_pos;	      /* each book's first position, NONE when none */
	uint32_t pos_free, pos_fresh; /* positions given back (a list), never used from */
	struct rorder *ord;
	/* Free order slots: given back (a stack of nreleased) or never used
	 * (from fresh on, their pages not yet mapped); nfree counts both. */
	uint32_t *free_orders, nfree, nreleased, fresh;
	uint32_t *class_entries; /* capacity entries per class (classes_max) */
	/* A modify between begin and end: the order and its state before. */
	uint64_t modifying;
	struct rorder saved;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

/*
 * A lazy table marks free slots 0 and takes its keys from calloc, so its pages are
 * mapped as keys land in them: for a table filled seldom (positions: one per account
 * and book it offers in), where writing EMPTY into every slot at start cost 16 MiB
 * resident at the defaults. Its keys must never be 0. The others are written in full at
 * start: the orders' ids land all over their table within seconds of trading, and
 * taking those page faults then, on the core thread, cost more than it saved
 * (docs/performance.md, "start-up tables").
 */
static int table_init(struct table *t, uint32_t max, bool lazy)
{
	uint32_t cap = 1;
	while (cap < 2 * max)
		cap <<= 1;
	t->keys = lazy ? calloc(cap, sizeof(*t->keys)) : malloc((size_t)cap * sizeof(*t->keys));
	t->vals = malloc((size_t)cap * sizeof(*t->vals));
	if (!t->keys || !t->vals)
		return SRV_RISK_NOMEM;
	t->empty = lazy ? 0 : EMPTY;
	if (!lazy)
		memset(t->keys, 0xff, (size_t)cap * sizeof(*t->keys));
	t->mask = cap - 1;
	t->max = max;
	return SRV_RISK_OK;
}

static void table_free(struct table *t)
{
	free(t->keys);
	free(t->vals);
}

static bool slot_used(const struct table *t, uint32_t h)
{
	return t->keys[h] != t->empty;
}

static uint32_t table_pos(const struct table *t, uint64_t key)
{
	uint32_t h = (uint32_t)mix(key) & t->mask;
	while (slot_used(t, h) && t->keys[h] != key)
		h = (h + 1) & t->mask;
	return h;
}

static uint32_t table_get(const struct table *t, uint64_t key)
{
	if (key == t->empty)
		return NONE; /* never a key: a free slot would match it */
	uint32_t h = table_pos(t, key);
	return t->keys[h] == key ? t->vals[h] : NONE;
}

/* Inserts a new key; the caller checked that there is room. */
static void table_put(struct table *t, uint64_t key, uint32_t val)
{
	uint32_t h = table_pos(t, key);
	assert(key != t->empty && !slot_used(t, h) && t->count < t->max);
	t->keys[h] = key;
	t->vals[h] = val;
	t->count++;
}

/* Deletes by backward shift, keeping probe chains whole. */
static void table_del(struct table *t, uint64_t key)
{
	uint32_t i = table_pos(t, key);
	assert(t->keys[i] == key);
	for (uint32_t j = i;;) {
		j = (j + 1) & t->mask;
		if (!slot_used(t, j))
			break;
		uint32_t k = (uint32_t)mix(t->keys[j]) & t->mask;
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			t->keys[i] = t->keys[j];
			t->vals[i] = t->vals[j];
			i = j;
		}
	}
	t->keys[i] = t->empty;
	t->count--;
}

static uint64_t pair(uint32_t a, uint32_t b)
{
	return (uint64_t)a << 32 | b;
}

void srv_risk_config_default(struct srv_risk_config *cfg)
{
	*cfg = (struct srv_risk_config){
		.accounts_max = 65536,
		.orders_max = 1u << 20,
		.positions_max = 1u << 20,
		.capacities_max = 65536,
		.books_max = 1024,
		.classes_max = 256,
		.open_orders_per_account_max = 10000,
		.maker_bps = 0,
		.taker_bps = 0,
	};
}

void srv_risk_destroy(struct srv_risk *r)
{
	if (!r)
		return;
	table_free(&r->accounts);
	table_free(&r->capacities);
	table_free(&r->positions);
	table_free(&r->orders);
	free(r->acct);
	free(r->cap);
	free(r->pos);
	free(r->book_pos);
	free(r->ord);
	free(r->free_orders);
	free(r->class_entries);
	free(r);
}

int srv_risk_create(const struct srv_risk_config *cfg, struct srv_risk **out)
{
	if (cfg->accounts_max < 1 || cfg->orders_max < 1 || cfg->positions_max < 1 ||
	    cfg->capacities_max < 1 || cfg->accounts_max > (1u << 30) ||
	    cfg->orders_max > (1u << 30) || cfg->positions_max > (1u << 30) ||
	    cfg->capacities_max > (1u << 30) || cfg->books_max < 1 || cfg->books_max > (1u << 24) ||
	    cfg->classes_max < 1 || cfg->classes_max > (1u << 24) ||
	    cfg->open_orders_per_account_max < 1 || cfg->maker_bps > LEDGER_BPS_MAX ||
	    cfg->taker_bps > LEDGER_BPS_MAX)
		return SRV_RISK_ARGS;
	struct srv_risk *r = calloc(1, sizeof(*r));
	if (!r)
		return SRV_RISK_NOMEM;
	r->cfg = *cfg;
	r->max_bps = cfg->maker_bps > cfg->taker_bps ? cfg->maker_bps : cfg->taker_bps;
	r->modifying = EMPTY;
	r->acct = calloc(cfg->accounts_max, sizeof(*r->acct));
	r->cap = calloc(cfg->capacities_max, sizeof(*r->cap));
	r->pos = calloc(cfg->positions_max, sizeof(*r->pos));
	r->book_pos = malloc(cfg->books_max * sizeof(*r->book_pos));
	r->ord = calloc(cfg->orders_max, sizeof(*r->ord));
	r->free_orders = malloc(cfg->orders_max * sizeof(*r->free_orders));
	r->class_entries = calloc(cfg->classes_max, sizeof(*r->class_entries));
	if (!r->acct || !r->cap || !r->pos || !r->book_pos || !r->ord || !r->free_orders ||
	    !r->class_entries || table_init(&r->accounts, cfg->accounts_max, false) ||
	    table_init(&r->capacities, cfg->capacities_max, false) ||
	    table_init(&r->positions, cfg->positions_max, true) ||
	    table_init(&r->orders, cfg->orders_max, false)) {
		srv_risk_destroy(r);
		return SRV_RISK_NOMEM;
	}
	r->nfree = cfg->orders_max;
	memset(r->book_pos, 0xff, cfg->books_max * sizeof(*r->book_pos));
	r->pos_free = NONE;
	*out = r;
	return SRV_RISK_OK;
}

static struct racct *acct_of(const struct srv_risk *r, uint32_t account)
{
	uint32_t i = table_get(&r->accounts, account);
	return i == NONE ? NULL : &r->acct[i];
}

/* The account or position of a tracked order: created when it entered. */
static struct racct *acct_known(const struct srv_risk *r, uint32_t account)
{
	struct racct *a = acct_of(r, account);
	assert(a != NULL);
	return a;
}

int srv_risk_add_cash(struct srv_risk *r, uint32_t account, int64_t delta)
{
	struct racct *a = acct_of(r, account);
	if (a == NULL) {
		if (r->accounts.count == r->accounts.max)
			return SRV_RISK_FULL;
		uint32_t i = r->accounts.count;
		table_put(&r->accounts, account, i);
		a = &r->acct[i];
	}
	int64_t cash;
	if (__builtin_add_overflow(a->cash, delta, &cash))
		return SRV_RISK_OVERFLOW;
	a->cash = cash;
	return SRV_RISK_OK;
}

int srv_risk_set_capacity(struct srv_risk *r, uint32_t account, uint32_t class_id, int64_t gpus)
{
	if (gpus < 0 || class_id >= r->cfg.classes_max)
		return SRV_RISK_ARGS;
	uint32_t i = table_get(&r->capacities, pair(account, class_id));
	if (i == NONE) {
		if (r->capacities.count == r->capacities.max)
			return SRV_RISK_FULL;
		i = r->capacities.count;
		table_put(&r->capacities, pair(account, class_id), i);
		r->class_entries[class_id]++;
	}
	r->cap[i] = gpus;
	return SRV_RISK_OK;
}

bool srv_risk_capacity_room(const struct srv_risk *r, uint32_t account, uint32_t class_id)
{
	return r->capacities.count < r->capacities.max ||
	       table_get(&r->capacities, pair(account, class_id)) != NONE;
}

bool srv_risk_class_has_capacity(const struct srv_risk *r, uint32_t class_id)
{
	return class_id < r->cfg.classes_max && r->class_entries[class_id] > 0;
}

int64_t srv_risk_capacity(const struct srv_risk *r, uint32_t account, uint32_t class_id)
{
	uint32_t i = table_get(&r->capacities, pair(account, class_id));
	return i == NONE ? 0 : r->cap[i];
}

int srv_risk_account(const struct srv_risk *r, uint32_t account, struct srv_risk_account *out)
{
	const struct racct *a = acct_of(r, account);
	if (a == NULL)
		return SRV_RISK_UNKNOWN_ACCOUNT;
	*out = (struct srv_risk_account){
		.cash = a->cash, .reserved = a->reserved, .open_orders = a->open_orders};
	return SRV_RISK_OK;
}

static struct rpos *pos_of(const struct srv_risk *r, uint32_t account, uint32_t book)
{
	uint32_t i = table_get(&r->positions, pair(account, book));
	return i == NONE ? NULL : &r->pos[i];
}

void srv_risk_position(const struct srv_risk *r, uint32_t account, uint32_t book, int64_t *offered,
		       int64_t *sold)
{
	const struct rpos *p = pos_of(r, account, book);
	*offered = p ? p->offered : 0;
	*sold = p ? p->sold : 0;
}

/* Money a bid reserves per GPU: its limit plus the highest fee on it, rounded up. */
static int unit_of(const struct srv_risk *r, int64_t price, int64_t *unit)
{
	int64_t fee;
	if (ledger_fee(price, r->max_bps, &fee) != LEDGER_OK ||
	    __builtin_add_overflow(price, fee, unit))
		return SRV_RISK_OVERFLOW;
	return SRV_RISK_OK;
}

/*
 * Whether the account can move from holding `held` to `need` for one order:
 * only an increase needs free cash.
 */
static int funds_for(const struct racct *a, int64_t held, int64_t need)
{
	int64_t free_cash = a->cash - a->reserved; /* reserved <= cash: no overflow */
	return need - held <= free_cash ? SRV_RISK_OK : SRV_RISK_INSUFFICIENT_FUNDS;
}

/* Whether an offer may go from `held` GPUs open to `want` in this book. */
static int capacity_for(const struct srv_risk *r, uint32_t account, uint32_t class_id,
			uint32_t book, int64_t held, int64_t want)
{
	uint32_t ci = table_get(&r->capacities, pair(account, class_id));
	int64_t cap = ci == NONE ? 0 : r->cap[ci];
	const struct rpos *p = pos_of(r, account, book);
	int64_t used = p ? p->offered + p->sold - held : 0;
	if (want > cap - used)
		return SRV_RISK_INSUFFICIENT_CAPACITY;
	if (p == NULL && r->positions.count == r->positions.max)
		return SRV_RISK_FULL;
	return SRV_RISK_OK;
}

static struct rpos *pos_known(const struct srv_risk *r, uint32_t account, uint32_t book)
{
	struct rpos *p = pos_of(r, account, book);
	assert(p != NULL);
	return p;
}

static struct rpos *pos_get_or_add(struct srv_risk *r, uint32_t account, uint32_t book)
{
	struct rpos *p = pos_of(r, account, book);
	if (p)
		return p;
	uint32_t i = r->pos_free;
	if (i != NONE)
		r->pos_free = r->pos[i].next;
	else
		i = r->pos_fresh++;
	table_put(&r->positions, pair(account, book), i);
	r->pos[i] = (struct rpos){.account = account, .next = r->book_pos[book]};
	r->book_pos[book] = i;
	return &r->pos[i];
}

int srv_risk_forget_book(struct srv_risk *r, uint32_t book)
{
	if (book >= r->cfg.books_max)
		return SRV_RISK_ARGS;
	for (uint32_t i = r->book_pos[book]; i != NONE; i = r->pos[i].next)
		if (r->pos[i].offered != 0)
			return SRV_RISK_ARGS;
	for (uint32_t i = r->book_pos[book], next; i != NONE; i = next) {
		next = r->pos[i].next;
		table_del(&r->positions, pair(r->pos[i].account, book));
		r->pos[i].next = r->pos_free;
		r->pos_free = i;
	}
	r->book_pos[book] = NONE;
	return SRV_RISK_OK;
}

/* A free order slot; the caller checked that there is one. */
static uint32_t slot_take(struct srv_risk *r)
{
	assert(r->nfree > 0);
	r->nfree--;
	return r->nreleased > 0 ? r->free_orders[--r->nreleased] : r->fresh++;
}

int srv_risk_enter(struct srv_risk *r, const struct srv_risk_order *o)
{
	if (o->order_id == EMPTY || o->price < 1 || o->qty < 1 || o->book >= r->cfg.books_max ||
	    (o->side != MATCHING_BUY && o->side != MATCHING_SELL))
		return SRV_RISK_ARGS;
	struct racct *a = acct_of(r, o->account);
	if (a == NULL)
		return SRV_RISK_UNKNOWN_ACCOUNT;
	if (a->open_orders >= r->cfg.open_orders_per_account_max)
		return SRV_RISK_TOO_MANY_ORDERS;
	if (table_get(&r->orders, o->order_id) != NONE)
		return SRV_RISK_DUPLICATE;
	if (r->nfree == 0)
		return SRV_RISK_FULL;
	int64_t unit = 0, need = 0;
	int rc;
	if (o->side == MATCHING_BUY) {
		if ((rc = unit_of(r, o->price, &unit)) != 0)
			return rc;
		if (__builtin_mul_overflow(o->qty, unit, &need))
			return SRV_RISK_OVERFLOW;
		if ((rc = funds_for(a, 0, need)) != 0)
			return rc;
		a->reserved += need;
	} else {
		if ((rc = capacity_for(r, o->account, o->class_id, o->book, 0, o->qty)) != 0)
			return rc;
		pos_get_or_add(r, o->account, o->book)->offered += o->qty;
	}
	uint32_t i = slot_take(r);
	r->ord[i] = (struct rorder){.id = o->order_id,
				    .account = o->account,
				    .book = o->book,
				    .class_id = o->class_id,
				    .side = o->side,
				    .limit = o->price,
				    .open = o->qty,
				    .unit = unit};
	table_put(&r->orders, o->order_id, i);
	a->open_orders++;
	return SRV_RISK_OK;
}

static struct rorder *order_of(const struct srv_risk *r, uint64_t id)
{
	uint32_t i = id == EMPTY ? NONE : table_get(&r->orders, id);
	return i == NONE ? NULL : &r->ord[i];
}

/* Sets an order's open quantity (and limit), keeping the totals in step. */
static void set_open(struct srv_risk *r, struct rorder *o, int64_t limit, int64_t unit,
		     int64_t open)
{
	if (o->side == MATCHING_BUY)
		acct_known(r, o->account)->reserved += open * unit - o->open * o->unit;
	else
		pos_known(r, o->account, o->book)->offered += open - o->open;
	o->limit = limit;
	o->unit = unit;
	o->open = open;
}

int srv_risk_modify_begin(struct srv_risk *r, uint64_t order_id, int64_t price, int64_t qty)
{
	struct rorder *o = order_of(r, order_id);
	if (o == NULL || price < 1 || qty < 1 || r->modifying != EMPTY)
		return SRV_RISK_ARGS;
	int64_t unit = 0, need;
	int rc;
	if (o->side == MATCHING_BUY) {
		if ((rc = unit_of(r, price, &unit)) != 0)
			return rc;
		if (__builtin_mul_overflow(qty, unit, &need))
			return SRV_RISK_OVERFLOW;
		if ((rc = funds_for(acct_known(r, o->account), o->open * o->unit, need)) != 0)
			return rc;
	} else if ((rc = capacity_for(r, o->account, o->class_id, o->book, o->open, qty)) != 0) {
		return rc;
	}
	r->saved = *o;
	r->modifying = order_id;
	set_open(r, o, price, unit, qty);
	return SRV_RISK_OK;
}

void srv_risk_modify_end(struct srv_risk *r, bool rejected)
{
	struct rorder *o = order_of(r, r->modifying);
	if (rejected && o != NULL)
		set_open(r, o, r->saved.limit, r->saved.unit, r->saved.open);
	r->modifying = EMPTY;
}

static void order_end(struct srv_risk *r, struct rorder *o)
{
	set_open(r, o, o->limit, o->unit, 0);
	acct_known(r, o->account)->open_orders--;
	uint32_t i = (uint32_t)(o - r->ord);
	table_del(&r->orders, o->id);
	r->free_orders[r->nreleased++] = i;
	r->nfree++;
}

/* A fill of q at price on order o, which was the taker or the maker. */
static void fill(struct srv_risk *r, struct rorder *o, int64_t price, int64_t q, bool taker)
{
	assert(q >= 1 && q <= o->open);
	struct racct *a = acct_known(r, o->account);
	if (o->side == MATCHING_BUY) {
		int64_t notional = price * q, fee = 0; /* price <= limit: fits */
		int rc = ledger_fee(notional, taker ? r->cfg.taker_bps : r->cfg.maker_bps, &fee);
		assert(rc == LEDGER_OK);
		(void)rc;
		int64_t cost = notional + fee, release = q * o->unit;
		assert(cost <= release); /* the per-GPU fee reservation guarantees it */
		a->cash -= cost;
		a->reserved -= release;
	} else {
		struct rpos *p = pos_known(r, o->account, o->book);
		p->offered -= q;
		p->sold += q;
	}
	o->open -= q;
}

void srv_risk_apply(struct srv_risk *r, const struct matching_event *ev)
{
	struct rorder *o = order_of(r, ev->order_id);
	switch (ev->type) {
	case MATCHING_EV_FILL: {
		struct rorder *m = order_of(r, ev->maker_id);
		if (o)
			fill(r, o, ev->price, ev->qty, true);
		if (m)
			fill(r, m, ev->price, ev->qty, false);
		break;
	}
	case MATCHING_EV_RESTING:
		if (o)
			set_open(r, o, o->limit, o->unit, ev->qty);
		break;
	case MATCHING_EV_REJECTED:
		/* A rejected modify is undone by srv_risk_modify_end(), not here. */
		if (o && ev->order_id != r->modifying)
			order_end(r, o);
		break;
	default: /* DONE, REMOVED */
		if (o)
			order_end(r, o);
		break;
	}
}

uint32_t srv_risk_order_count(const struct srv_risk *r)
{
	return r->orders.count;
}

bool srv_risk_order(const struct srv_risk *r, uint64_t order_id, struct srv_risk_order *out)
{
	const struct rorder *o = order_of(r, order_id);
	if (o == NULL)
		return false;
	*out = (struct srv_risk_order){.order_id = o->id,
				       .account = o->account,
				       .book = o->book,
				       .class_id = o->class_id,
				       .side = o->side,
				       .price = o->limit,
				       .qty = o->open};
	return true;
}

/* ---------- snapshots ---------- */

void srv_risk_save(const struct srv_risk *r, struct srv_snap_w *w)
{
	srv_snap_u32(w, r->accounts.count);
	for (uint32_t h = 0; h <= r->accounts.mask; h++)
		if (slot_used(&r->accounts, h)) {
			srv_snap_u32(w, (uint32_t)r->accounts.keys[h]);
			srv_snap_i64(w, r->acct[r->accounts.vals[h]].cash);
		}
	srv_snap_u32(w, r->capacities.count);
	for (uint32_t h = 0; h <= r->capacities.mask; h++)
		if (slot_used(&r->capacities, h)) {
			srv_snap_u64(w, r->capacities.keys[h]);
			srv_snap_i64(w, r->cap[r->capacities.vals[h]]);
		}
	srv_snap_u32(w, r->positions.count);
	for (uint32_t h = 0; h <= r->positions.mask; h++)
		if (slot_used(&r->positions, h)) {
			srv_snap_u64(w, r->positions.keys[h]);
			srv_snap_i64(w, r->pos[r->positions.vals[h]].sold);
		}
	srv_snap_u32(w, r->orders.count);
	for (uint32_t h = 0; h <= r->orders.mask; h++)
		if (slot_used(&r->orders, h)) {
			const struct rorder *o = &r->ord[r->orders.vals[h]];
			srv_snap_u64(w, o->id);
			srv_snap_u32(w, o->account);
			srv_snap_u32(w, o->book);
			srv_snap_u32(w, o->class_id);
			srv_snap_u8(w, o->side);
			srv_snap_i64(w, o->limit);
			srv_snap_i64(w, o->open);
		}
}

/* Loads into a new, empty risk: cash, capacities and sales as saved; what the open
 * orders hold (reservations, open counts, offered GPUs) is summed from them again. */
int srv_risk_load(struct srv_risk *r, struct srv_snap_r *in)
{
	uint32_t n = srv_snap_get_count(in, 12, r->cfg.accounts_max);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		uint32_t account = srv_snap_get_u32(in);
		int64_t cash = srv_snap_get_i64(in);
		const struct racct *had = acct_of(r, account); /* the operator's, made empty */
		if (account == 0 || cash < 0 || (had && (had->cash || had->open_orders)))
			srv_snap_fail(in, "risk: an account is zero, negative or repeated");
		else if (srv_risk_add_cash(r, account, cash) != SRV_RISK_OK)
			srv_snap_fail(in, "risk: accounts do not fit");
	}
	n = srv_snap_get_count(in, 16, r->cfg.capacities_max);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		uint64_t key = srv_snap_get_u64(in);
		int64_t gpus = srv_snap_get_i64(in);
		if (key == EMPTY || gpus < 0 || table_get(&r->capacities, key) != NONE)
			srv_snap_fail(in, "risk: a capacity is negative or repeated");
		else if (srv_risk_set_capacity(r, (uint32_t)(key >> 32), (uint32_t)key, gpus) !=
			 SRV_RISK_OK)
			srv_snap_fail(in, "risk: capacities do not fit");
	}
	n = srv_snap_get_count(in, 16, r->cfg.positions_max);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		uint64_t key = srv_snap_get_u64(in);
		int64_t sold = srv_snap_get_i64(in);
		if (key == EMPTY || key >> 32 == 0 || sold < 0 ||
		    (uint32_t)key >= r->cfg.books_max ||
		    pos_of(r, (uint32_t)(key >> 32), (uint32_t)key))
			srv_snap_fail(in, "risk: a position is negative, repeated or of account 0");
		else
			pos_get_or_add(r, (uint32_t)(key >> 32), (uint32_t)key)->sold = sold;
	}
	n = srv_snap_get_count(in, 37, r->cfg.orders_max);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		struct rorder o = {.id = srv_snap_get_u64(in)};
		o.account = srv_snap_get_u32(in);
		o.book = srv_snap_get_u32(in);
		o.class_id = srv_snap_get_u32(in);
		o.side = srv_snap_get_u8(in);
		o.limit = srv_snap_get_i64(in);
		o.open = srv_snap_get_i64(in);
		struct racct *a = acct_of(r, o.account);
		struct rpos *p = pos_of(r, o.account, o.book);
		int64_t held = 0;
		if (in->error)
			break;
		if (o.id == EMPTY || table_get(&r->orders, o.id) != NONE || a == NULL ||
		    o.book >= r->cfg.books_max ||
		    (o.side != MATCHING_BUY && o.side != MATCHING_SELL) || o.limit < 1 ||
		    o.open < 1) {
			srv_snap_fail(in, "risk: an order is repeated, unknown or out of range");
			break;
		}
		if (o.side == MATCHING_BUY &&
		    (unit_of(r, o.limit, &o.unit) != SRV_RISK_OK ||
		     __builtin_mul_overflow(o.open, o.unit, &held) ||
		     __builtin_add_overflow(a->reserved, held, &a->reserved))) {
			srv_snap_fail(in, "risk: a bid's reservation overflows");
			break;
		}
		if (o.side == MATCHING_SELL) {
			if (p == NULL && r->positions.count == r->positions.max) {
				srv_snap_fail(in, "risk: positions do not fit");
				break;
			}
			p = pos_get_or_add(r, o.account, o.book);
			if (__builtin_add_overflow(p->offered, o.open, &p->offered)) {
				srv_snap_fail(in, "risk: offered GPUs overflow");
				break;
			}
		}
		a->open_orders++;
		uint32_t slot = slot_take(r);
		r->ord[slot] = o;
		table_put(&r->orders, o.id, slot);
	}
	for (uint32_t h = 0; h <= r->accounts.mask && !in->error; h++)
		if (slot_used(&r->accounts, h)) {
			const struct racct *a = &r->acct[r->accounts.vals[h]];
			if (a->reserved > a->cash)
				srv_snap_fail(in, "risk: an account holds more than its cash");
		}
	return in->error ? -1 : 0;
}

bool srv_risk_positions_in(const struct srv_risk *r, bool (*live)(uint32_t book, void *ctx),
			   void *ctx)
{
	for (uint32_t b = 0; b < r->cfg.books_max; b++)
		if (r->book_pos[b] != NONE && !live(b, ctx))
			return false;
	return true;
}

const char *srv_risk_check_invariants(const struct srv_risk *r)
{
	uint32_t tracked = 0;
	for (uint32_t h = 0; h <= r->accounts.mask; h++) {
		if (!slot_used(&r->accounts, h))
			continue;
		const struct racct *a = &r->acct[r->accounts.vals[h]];
		uint32_t account = (uint32_t)r->accounts.keys[h], n = 0;
		int64_t reserved = 0;
		for (uint32_t k = 0; k <= r->orders.mask; k++) {
			if (!slot_used(&r->orders, k))
				continue;
			const struct rorder *o = &r->ord[r->orders.vals[k]];
			if (o->account != account)
				continue;
			n++;
			if (o->side == MATCHING_BUY)
				reserved += o->open * o->unit;
		}
		if (reserved != a->reserved || n != a->open_orders)
			return "account totals differ from its orders";
		if (a->reserved > a->cash)
			return "reservations exceed cash";
		tracked += n;
	}
	if (tracked != r->orders.count || r->nfree + r->orders.count != r->cfg.orders_max ||
	    r->nreleased + r->orders.count != r->fresh)
		return "order counts differ";
	for (uint32_t h = 0; h <= r->positions.mask; h++) {
		if (!slot_used(&r->positions, h))
			continue;
		const struct rpos *p = &r->pos[r->positions.vals[h]];
		uint32_t account = (uint32_t)(r->positions.keys[h] >> 32);
		uint32_t book = (uint32_t)r->positions.keys[h];
		int64_t offered = 0;
		for (uint32_t k = 0; k <= r->orders.mask; k++) {
			if (!slot_used(&r->orders, k))
				continue;
			const struct rorder *o = &r->ord[r->orders.vals[k]];
			if (o->account == account && o->book == book && o->side == MATCHING_SELL)
				offered += o->open;
		}
		if (offered != p->offered || p->sold < 0)
			return "offered GPUs differ from open offers";
	}
	uint32_t chained = 0;
	for (uint32_t b = 0; b < r->cfg.books_max; b++)
		for (uint32_t i = r->book_pos[b]; i != NONE && chained <= r->positions.count;
		     i = r->pos[i].next, chained++)
			if (pos_of(r, r->pos[i].account, b) != &r->pos[i])
				return "a book's position list holds another position";
	if (chained != r->positions.count)
		return "positions missing from their books' lists";
	return NULL;
}

const char *srv_risk_status_name(int status)
{
	static const char *const names[] = {
		[SRV_RISK_OK] = "ok",
		[SRV_RISK_INSUFFICIENT_FUNDS] = "insufficient funds",
		[SRV_RISK_INSUFFICIENT_CAPACITY] = "insufficient capacity",
		[SRV_RISK_TOO_MANY_ORDERS] = "too many open orders",
		[SRV_RISK_OVERFLOW] = "amount overflow",
		[SRV_RISK_UNKNOWN_ACCOUNT] = "unknown account",
		[SRV_RISK_FULL] = "risk table full",
		[SRV_RISK_DUPLICATE] = "order already tracked",
		[SRV_RISK_ARGS] = "invalid argument",
		[SRV_RISK_NOMEM] = "out of memory",
	};
	return status >= 0 && status <= SRV_RISK_NOMEM ? names[status] : "unknown status";
}
