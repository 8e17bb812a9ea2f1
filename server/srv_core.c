/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_core.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "gridex.pb-c.h"
#include "srv_region.h"
#include "srv_snapshot.h"

#define NONE	    UINT32_MAX
#define CLASSES_MAX 256 /* accelerator classes: a few dozen exist */

/* A live order as its owner knows it. */
struct corder {
	uint64_t oid, coid; /* oid 0: free slot */
	uint32_t account, book;
	uint32_t acct_prev, acct_next; /* the account's live orders */
	uint8_t side;
	int64_t limit, orig, cum;
};

struct srv_core {
	struct srv_core_config cfg;
	struct matching_engine *eng;
	struct srv_risk *risk;
	struct srv_keys *keys;
	struct matching_batch batch;
	uint64_t next_oid;
	/* Live orders in a pool of stable slots, indexed by engine id and by
	 * (account, client order id); both indices hold pool slots, NONE = empty. */
	struct corder *pool;
	/* Free pool slots: those given back (free_slots, a stack of nreleased)
	 * and those never used (from fresh on, their pages not yet mapped);
	 * nfree counts both. */
	uint32_t *free_slots, nfree, nreleased, fresh;
	uint32_t *by_oid, *by_client;
	uint32_t mask;
	/* Each registered account's first live order (pool slot or NONE), its
	 * name, its order-rate bucket (milli-tokens, refilled from last_ms) and its
	 * query-rate bucket (the same; not in snapshots: queries change nothing else,
	 * so replaying them answered or refused leaves the same core). */
	uint32_t *acct_keys, *acct_head; /* key 0 = empty */
	char (*acct_name)[SRV_ACCOUNT_NAME_BYTES_MAX + 1];
	int64_t *acct_tokens, *acct_last_ms;
	int64_t *acct_qtokens, *acct_qlast_ms;
	int64_t *acct_ltokens, *acct_llast_ms; /* lease_requests_per_second's buckets */
	uint32_t acct_mask;
	/* query_rows_per_second's bucket, shared by all participants (milli-rows; not in
	 * snapshots either) */
	int64_t qrows_tokens, qrows_last_ms;
	/* Market data: sequences per book, and the levels the current call touched. */
	uint64_t *level_seq, *trade_seq;
	struct touched {
		uint32_t book;
		uint8_t side;
		int64_t price;
	} * touched;
	size_t n_touched, touched_cap;
	int64_t now_ms; /* of the current call, for trade times */
	/* The most recent fills as their reports (both sides), a ring for QUERY_FILLS.
	 * Each account's are linked newest first: acct_recent (per account) and
	 * recent_prev (per slot) hold a report's number (its n_recent then) + 1, 0 for
	 * none; a number that has left the ring ends the list. */
	struct srv_report *recent;
	uint64_t n_recent; /* ever added; the ring holds the last fills_recent_max */
	uint64_t *recent_prev, *acct_recent;
	bool *halted;	    /* per book */
	uint32_t *class_of; /* per book */
	/* Retirement (book_retain_ms): when each book goes (INT64_MAX: never), the
	 * earliest of those, and a number per book that a retirement changes, so that
	 * the recent fills of a retired book (recent_gen) are told from a new one's. */
	int64_t *retire_at, next_retire;
	uint32_t *book_gen, *recent_gen;
	char classes[CLASSES_MAX][MATCHING_CLASS_NAME_MAX + 1];
	uint32_t nclasses;
	uint32_t class_books[CLASSES_MAX]; /* live books of each class */
	/* The classes setting: those participants may trade (none listed: any). */
	char (*listed)[MATCHING_CLASS_NAME_MAX + 1];
	uint32_t nlisted;
	struct srv_leases *leases; /* NULL: leases off */
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

void srv_core_config_default(struct srv_core_config *cfg)
{
	*cfg = (struct srv_core_config){.accounts_max = 65536,
					.client_ids_max = 1u << 20,
					.gate_lead_ms = 300000,
					.expiry_ahead_ms_max = 60000,
					.orders_per_second = 1000,
					.orders_burst = 2000,
					.queries_per_second = 20,
					.queries_burst = 40,
					.query_rows_per_second = 100000,
					.query_rows_burst = 100000,
					.lease_requests_per_second = 10,
					.lease_requests_burst = 1024,
					.fills_recent_max = 65536,
					.query_rows_max = 1000};
	matching_config_default(&cfg->matching);
	srv_lease_config_default(&cfg->lease);
	srv_risk_config_default(&cfg->risk);
}

void srv_core_destroy(struct srv_core *c)
{
	if (!c)
		return;
	matching_destroy(c->eng);
	srv_leases_destroy(c->leases);
	srv_risk_destroy(c->risk);
	srv_keys_destroy(c->keys);
	free(c->batch.events);
	free(c->pool);
	free(c->free_slots);
	free(c->by_oid);
	free(c->by_client);
	free(c->acct_keys);
	free(c->acct_head);
	free(c->acct_name);
	free(c->acct_tokens);
	free(c->acct_last_ms);
	free(c->acct_qtokens);
	free(c->acct_ltokens);
	free(c->acct_llast_ms);
	free(c->acct_qlast_ms);
	free(c->level_seq);
	free(c->trade_seq);
	free(c->touched);
	free(c->recent);
	free(c->recent_prev);
	free(c->acct_recent);
	free(c->halted);
	free(c->class_of);
	free(c->retire_at);
	free(c->book_gen);
	free(c->recent_gen);
	free(c->listed);
	free(c);
}

/*
 * Splits a classes setting into out (max names, NULL: only checks it); the
 * number of names, or -1 when the list is not valid.
 */
static int classes_parse(const char *list, char (*out)[MATCHING_CLASS_NAME_MAX + 1], int max)
{
	int n = 0;
	const char *s = list ? list : "";
	while (*s == ' ')
		s++;
	if (*s == '\0')
		return 0;
	for (;;) {
		size_t len = strcspn(s, ",");
		size_t end = len;
		while (end > 0 && s[end - 1] == ' ')
			end--;
		struct matching_product p;
		if (n == max || matching_product_parse(s, end, 0, &p) != MATCHING_OK ||
		    p.period_start_ms != MATCHING_NO_PERIOD)
			return -1;
		for (int i = 0; out && i < n; i++)
			if (strcmp(out[i], p.class_name) == 0)
				return -1;
		if (out)
			memcpy(out[n], p.class_name, sizeof(out[n]));
		n++;
		if (s[len] == '\0')
			return n;
		s += len + 1;
		while (*s == ' ')
			s++;
	}
}

int srv_core_classes_count(const char *list)
{
	char(*names)[MATCHING_CLASS_NAME_MAX + 1] = calloc(CLASSES_MAX, sizeof(*names));
	int n = names ? classes_parse(list, names, CLASSES_MAX) : -1;
	free(names);
	return n;
}

static uint32_t pow2_twice(uint32_t n)
{
	uint32_t cap = 1;
	while (cap < 2 * n)
		cap <<= 1;
	return cap;
}

int srv_core_create(const struct srv_core_config *cfg, struct srv_core **out)
{
	if (cfg->client_ids_max < 1 || cfg->client_ids_max > (1u << 28) ||
	    cfg->client_ids_max < cfg->matching.orders_max || cfg->gate_lead_ms < 0 ||
	    cfg->expiry_ahead_ms_max < 1 || cfg->fills_recent_max < 1 ||
	    cfg->fills_recent_max > (1u << 24) || cfg->query_rows_max < 1 ||
	    cfg->query_rows_max > 100000 || (cfg->orders_per_second > 0 && cfg->orders_burst < 1) ||
	    cfg->orders_burst > 1000000 ||
	    (cfg->queries_per_second > 0 && cfg->queries_burst < 1) ||
	    cfg->queries_burst > 1000000 || cfg->query_rows_per_second > 100000000 ||
	    (cfg->query_rows_per_second > 0 && cfg->query_rows_burst < SRV_QUERY_ROWS_BASE) ||
	    cfg->query_rows_burst > 100000000 ||
	    (cfg->lease_requests_per_second > 0 && cfg->lease_requests_burst < 1) ||
	    cfg->lease_requests_burst > 1000000 || cfg->book_retain_ms < 0 ||
	    cfg->product_horizon_ms < 0)
		return SRV_CORE_ARGS;
	struct srv_core *c = calloc(1, sizeof(*c));
	if (!c)
		return SRV_CORE_NOMEM;
	c->cfg = *cfg;
	c->next_oid = 1;
	c->next_retire = INT64_MAX;
	c->cfg.classes = NULL; /* copied into listed */
	int rc = SRV_CORE_NOMEM;
	struct srv_risk_config risk = cfg->risk;
	risk.books_max = cfg->matching.books_max; /* risk keys positions by book */
	risk.classes_max = CLASSES_MAX;		  /* and capacities by class */
	if (matching_create(&cfg->matching, &c->eng) != MATCHING_OK ||
	    srv_risk_create(&risk, &c->risk) != SRV_RISK_OK ||
	    srv_keys_create(cfg->accounts_max, &c->keys) != SRV_AUTH_OK ||
	    (cfg->leases && srv_leases_create(&cfg->lease, &c->leases) != SRV_LEASE_OK)) {
		rc = SRV_CORE_ARGS;
		goto fail;
	}
	uint32_t cap = pow2_twice(cfg->client_ids_max);
	c->batch.cap = matching_events_max(c->eng);
	c->batch.events = calloc(c->batch.cap, sizeof(*c->batch.events));
	c->pool = calloc(cfg->client_ids_max, sizeof(*c->pool));
	c->free_slots = malloc(cfg->client_ids_max * sizeof(*c->free_slots));
	c->by_oid = malloc((size_t)cap * sizeof(*c->by_oid));
	c->by_client = malloc((size_t)cap * sizeof(*c->by_client));
	c->halted = calloc(cfg->matching.books_max, sizeof(*c->halted));
	c->class_of = calloc(cfg->matching.books_max, sizeof(*c->class_of));
	uint32_t acap = pow2_twice(cfg->accounts_max);
	c->acct_keys = calloc(acap, sizeof(*c->acct_keys));
	c->acct_head = calloc(acap, sizeof(*c->acct_head));
	c->acct_name = calloc(acap, sizeof(*c->acct_name));
	c->acct_tokens = calloc(acap, sizeof(*c->acct_tokens));
	c->acct_last_ms = calloc(acap, sizeof(*c->acct_last_ms));
	c->acct_qtokens = calloc(acap, sizeof(*c->acct_qtokens));
	c->acct_qlast_ms = calloc(acap, sizeof(*c->acct_qlast_ms));
	c->acct_ltokens = calloc(acap, sizeof(*c->acct_ltokens));
	c->acct_llast_ms = calloc(acap, sizeof(*c->acct_llast_ms));
	c->level_seq = calloc(cfg->matching.books_max, sizeof(*c->level_seq));
	c->trade_seq = calloc(cfg->matching.books_max, sizeof(*c->trade_seq));
	c->retire_at = malloc(cfg->matching.books_max * sizeof(*c->retire_at));
	c->book_gen = calloc(cfg->matching.books_max, sizeof(*c->book_gen));
	c->recent_gen = calloc(2 * (size_t)cfg->fills_recent_max, sizeof(*c->recent_gen));
	/* A level per event at most, plus a modify's old level and a basket's legs. */
	c->touched_cap = c->batch.cap + 2 + MATCHING_BASKET_LEGS_MAX;
	c->touched = calloc(c->touched_cap, sizeof(*c->touched));
	c->recent = calloc(2 * (size_t)cfg->fills_recent_max, sizeof(*c->recent));
	c->recent_prev = calloc(2 * (size_t)cfg->fills_recent_max, sizeof(*c->recent_prev));
	c->acct_recent = calloc(acap, sizeof(*c->acct_recent));
	if (!c->batch.events || !c->pool || !c->free_slots || !c->by_oid || !c->by_client ||
	    !c->halted || !c->class_of || !c->acct_keys || !c->acct_head || !c->acct_name ||
	    !c->acct_tokens || !c->acct_last_ms || !c->acct_qtokens || !c->acct_qlast_ms ||
	    !c->acct_ltokens || !c->acct_llast_ms || !c->level_seq || !c->trade_seq ||
	    !c->touched || !c->recent || !c->retire_at || !c->book_gen || !c->recent_gen ||
	    !c->recent_prev || !c->acct_recent)
		goto fail;
	for (uint32_t b = 0; b < cfg->matching.books_max; b++)
		c->retire_at[b] = INT64_MAX;
	int nlisted = classes_parse(cfg->classes, NULL, CLASSES_MAX);
	if (nlisted < 0) {
		rc = SRV_CORE_ARGS;
		goto fail;
	}
	if (nlisted > 0) {
		c->listed = calloc((size_t)nlisted, sizeof(*c->listed));
		if (!c->listed || classes_parse(cfg->classes, c->listed, nlisted) != nlisted) {
			rc = c->listed ? SRV_CORE_ARGS : SRV_CORE_NOMEM;
			goto fail;
		}
		c->nlisted = (uint32_t)nlisted;
	}
	c->acct_mask = acap - 1;
	/* Written in full, like the engine's id index (see matching_create). */
	memset(c->by_oid, 0xff, (size_t)cap * sizeof(*c->by_oid));
	memset(c->by_client, 0xff, (size_t)cap * sizeof(*c->by_client));
	c->nfree = cfg->client_ids_max;
	c->mask = cap - 1;
	*out = c;
	return SRV_CORE_OK;
fail:
	srv_core_destroy(c);
	return rc;
}

void srv_core_out_caps(const struct srv_core *c, size_t *reports, size_t *fills)
{
	/* Two reports per event at most (both sides of a fill), plus ACK and a NEW per leg. */
	*reports = 2 * c->batch.cap + 2 + MATCHING_BASKET_LEGS_MAX;
	*fills = c->batch.cap;
}

void srv_core_out_caps_md(const struct srv_core *c, size_t *md, size_t *rows)
{
	/* A trade per fill plus a level per touched level. */
	*md = c->batch.cap + c->touched_cap;
	/* One row more than an answer holds tells that there are more. */
	*rows = (size_t)c->cfg.query_rows_max + 1;
}

/* A query's n rows, cut to query_rows_max (and said so) when its one row more was found. */
static size_t rows_kept(struct srv_core_out *out, size_t n)
{
	if (n < out->rows_cap)
		return n;
	out->rows_cut = true;
	return out->rows_cap - 1;
}

int srv_core_out_alloc(const struct srv_core *c, struct srv_core_out *out)
{
	*out = (struct srv_core_out){0};
	srv_core_out_caps(c, &out->reports_cap, &out->fills_cap);
	srv_core_out_caps_md(c, &out->md_cap, &out->rows_cap);
	out->reports = srv_region_alloc(out->reports_cap, sizeof(*out->reports));
	out->fills = srv_region_alloc(out->fills_cap, sizeof(*out->fills));
	out->md = srv_region_alloc(out->md_cap, sizeof(*out->md));
	out->rows = srv_region_alloc(out->rows_cap, sizeof(*out->rows));
	out->lease_rows = srv_region_alloc(out->rows_cap, sizeof(*out->lease_rows));
	out->host_rows = srv_region_alloc(out->rows_cap, sizeof(*out->host_rows));
	out->cursors = srv_region_alloc(out->rows_cap, sizeof(*out->cursors));
	if (!out->reports || !out->fills || !out->md || !out->rows || !out->lease_rows ||
	    !out->host_rows || !out->cursors) {
		srv_core_out_free(out);
		return SRV_CORE_NOMEM;
	}
	return SRV_CORE_OK;
}

void srv_core_out_free(struct srv_core_out *out)
{
	if (!out)
		return;
	srv_region_free(out->reports, out->reports_cap, sizeof(*out->reports));
	srv_region_free(out->fills, out->fills_cap, sizeof(*out->fills));
	srv_region_free(out->md, out->md_cap, sizeof(*out->md));
	srv_region_free(out->rows, out->rows_cap, sizeof(*out->rows));
	srv_region_free(out->lease_rows, out->rows_cap, sizeof(*out->lease_rows));
	srv_region_free(out->host_rows, out->rows_cap, sizeof(*out->host_rows));
	srv_region_free(out->cursors, out->rows_cap, sizeof(*out->cursors));
	*out = (struct srv_core_out){0};
}

/* The account's slot in acct_keys: its own, or the empty one where it would go. */
static uint32_t acct_slot(const struct srv_core *c, uint32_t account)
{
	uint32_t h = (uint32_t)mix(account) & c->acct_mask;
	while (c->acct_keys[h] != 0 && c->acct_keys[h] != account)
		h = (h + 1) & c->acct_mask;
	return h;
}

int srv_core_register(struct srv_core *c, uint32_t account,
		      const uint8_t public_key[SRV_PUBLIC_KEY_BYTES])
{
	int rc = srv_keys_register(c->keys, account, public_key);
	if (rc)
		return rc;
	/* srv_keys bounds accounts at accounts_max: the table, twice that, has room. */
	uint32_t h = acct_slot(c, account);
	if (c->acct_keys[h] == 0) {
		c->acct_keys[h] = account;
		c->acct_head[h] = NONE;
	}
	return srv_risk_add_cash(c->risk, account, 0); /* the account exists for risk too */
}

int srv_core_set_name(struct srv_core *c, uint32_t account, const char *name)
{
	uint32_t h = acct_slot(c, account);
	size_t len = strlen(name);
	if (account == 0 || c->acct_keys[h] != account || len > SRV_ACCOUNT_NAME_BYTES_MAX)
		return SRV_CORE_ARGS;
	for (uint32_t i = 0; len > 0 && i <= c->acct_mask; i++)
		if (i != h && c->acct_keys[i] != 0 && strcmp(c->acct_name[i], name) == 0)
			return SRV_CORE_EXISTS;
	memcpy(c->acct_name[h], name, len + 1);
	return SRV_CORE_OK;
}

const char *srv_core_name(const struct srv_core *c, uint32_t account)
{
	uint32_t h = acct_slot(c, account);
	return account != 0 && c->acct_keys[h] == account ? c->acct_name[h] : "";
}

const uint8_t *srv_core_key(const struct srv_core *c, uint32_t account)
{
	return srv_keys_lookup(c->keys, account);
}

struct srv_risk *srv_core_risk(struct srv_core *c)
{
	return c->risk;
}

struct matching_engine *srv_core_engine(struct srv_core *c)
{
	return c->eng;
}

/* The number of a known accelerator class, or NONE. */
static uint32_t class_find(const struct srv_core *c, const char *class_name)
{
	for (uint32_t i = 0; i < c->nclasses; i++)
		if (strcmp(c->classes[i], class_name) == 0)
			return i;
	return NONE;
}

/*
 * The lowest class number nothing uses any more, or NONE: no book of the class lives,
 * and no account has a capacity entry for it. Hosts, leases and sales all come with a
 * capacity entry (a host adds its devices to one; selling needs capacity), and entries
 * stay, so a class that ever had any of them is never given back. What is left are the
 * classes orders alone made, once their books are retired.
 */
static uint32_t class_unused(const struct srv_core *c)
{
	for (uint32_t k = 0; k < c->nclasses; k++)
		if (c->class_books[k] == 0 && !srv_risk_class_has_capacity(c->risk, k))
			return k;
	return NONE;
}

int srv_core_class_id(struct srv_core *c, const char *class_name, uint32_t *id)
{
	*id = class_find(c, class_name);
	if (*id != NONE)
		return SRV_CORE_OK;
	size_t len = strlen(class_name);
	if (len == 0 || len > MATCHING_CLASS_NAME_MAX)
		return SRV_CORE_FULL;
	if (c->nclasses < CLASSES_MAX)
		*id = c->nclasses++;
	else if ((*id = class_unused(c)) == NONE)
		return SRV_CORE_FULL;
	memcpy(c->classes[*id], class_name, len + 1);
	return SRV_CORE_OK;
}

/* Sets when a new book is retired: book_retain_ms after its delivery period ends. */
static void retire_plan(struct srv_core *c, uint32_t book)
{
	const struct matching_product *p = matching_book_product(c->eng, book);
	int64_t at = INT64_MAX;
	if (c->cfg.book_retain_ms > 0 && p->period_start_ms != MATCHING_NO_PERIOD &&
	    (__builtin_add_overflow(p->period_start_ms, p->period_ms, &at) ||
	     __builtin_add_overflow(at, c->cfg.book_retain_ms, &at)))
		at = INT64_MAX;
	c->retire_at[book] = at;
	if (at < c->next_retire)
		c->next_retire = at;
}

/* Whether participants may trade a class (and register hosts in it). */
static bool class_listed(const struct srv_core *c, const char *class_name)
{
	for (uint32_t i = 0; i < c->nlisted; i++)
		if (strcmp(c->listed[i], class_name) == 0)
			return true;
	return c->nlisted == 0;
}

/* The book of a product name, created on first use; false if the name is no product. */
static bool book_of(struct srv_core *c, const char *name, uint32_t *book)
{
	size_t len = strlen(name);
	if (matching_book_find(c->eng, name, len, book) == MATCHING_OK)
		return true;
	struct matching_product p;
	uint32_t cls;
	if (matching_product_parse(name, len, c->cfg.gate_lead_ms, &p) != MATCHING_OK ||
	    srv_core_class_id(c, p.class_name, &cls) != SRV_CORE_OK ||
	    matching_book_create(c->eng, &p, book) != MATCHING_OK)
		return false;
	c->class_of[*book] = cls;
	c->class_books[cls]++;
	retire_plan(c, *book);
	return true;
}

/*
 * Retires the books whose time has come and that closed in an earlier call
 * (this call's reports and market data may still name the books it closes), at
 * most SRV_CORE_RETIRED_MAX per call: the rest wait for the next.
 */
static void retire_books(struct srv_core *c, int64_t now_ms, struct srv_core_out *out)
{
	if (now_ms < c->next_retire)
		return;
	uint32_t n = matching_book_count(c->eng);
	c->next_retire = INT64_MAX;
	for (uint32_t b = 0; b < n; b++) {
		int64_t at = c->retire_at[b];
		if (at <= now_ms && out->n_retired < SRV_CORE_RETIRED_MAX &&
		    matching_book_closed(c->eng, b)) {
			const char *name = matching_book_product(c->eng, b)->name;
			memcpy(out->retired[out->n_retired++], name, strlen(name) + 1);
			int rc = matching_book_retire(c->eng, b);
			assert(rc == MATCHING_OK); /* closed books hold no orders */
			rc = srv_risk_forget_book(c->risk, b);
			assert(rc == SRV_RISK_OK);
			(void)rc;
			c->retire_at[b] = INT64_MAX;
			c->halted[b] = false;
			c->class_books[c->class_of[b]]--;
			c->class_of[b] = 0;
			c->level_seq[b] = c->trade_seq[b] = 0;
			c->book_gen[b]++;
			continue;
		}
		if (at < c->next_retire)
			c->next_retire = at;
	}
}

/* Whether the listing rules below apply: off, orders make books as they always did. */
static bool listing_on(const struct srv_core *c)
{
	return c->nlisted > 0 || c->cfg.product_horizon_ms > 0;
}

/*
 * Whether a participant's order may name a product (with listing on): it has
 * a book, or its class is in classes, its hour starts within
 * product_horizon_ms and its gate has not passed (no book is made then). 0, or
 * the reject reason.
 */
static uint8_t unlisted(const struct srv_core *c, const char *name)
{
	size_t len = strlen(name);
	uint32_t book;
	if (!listing_on(c) || matching_book_find(c->eng, name, len, &book) == MATCHING_OK)
		return 0;
	struct matching_product p;
	int64_t now = matching_now(c->eng), until;
	if (matching_product_parse(name, len, c->cfg.gate_lead_ms, &p) != MATCHING_OK ||
	    !class_listed(c, p.class_name))
		return GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT;
	if (p.period_start_ms != MATCHING_NO_PERIOD && p.gate_ms <= now)
		return GRIDEX__V1__REJECT_REASON__PRODUCT_CLOSED;
	if (c->cfg.product_horizon_ms > 0 && p.period_start_ms != MATCHING_NO_PERIOD &&
	    !__builtin_add_overflow(now, c->cfg.product_horizon_ms, &until) &&
	    p.period_start_ms > until)
		return GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT;
	return 0;
}

/* The book a participant's order names, made if it may be (see unlisted()). */
static uint8_t book_to_trade(struct srv_core *c, const char *name, uint32_t *book)
{
	uint8_t why = unlisted(c, name);
	if (why)
		return why;
	return book_of(c, name, book) ? 0 : GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT;
}

int srv_core_halt(struct srv_core *c, const char *product, bool halted)
{
	uint32_t book;
	if (!book_of(c, product, &book))
		return SRV_CORE_ARGS;
	c->halted[book] = halted;
	return SRV_CORE_OK;
}

/* ---------- order tables ---------- */

static uint32_t home_oid(const struct srv_core *c, const struct corder *o)
{
	return (uint32_t)mix(o->oid) & c->mask;
}

static uint32_t home_client(const struct srv_core *c, const struct corder *o)
{
	return (uint32_t)mix(o->coid * 0x9e3779b97f4a7c15ULL ^ o->account) & c->mask;
}

/* The index position holding an order equal to `key` (by `same`), or the empty one. */
static uint32_t probe(const struct srv_core *c, const uint32_t *index, uint32_t h,
		      const struct corder *key, bool by_client)
{
	for (;; h = (h + 1) & c->mask) {
		uint32_t i = index[h];
		if (i == NONE)
			return h;
		const struct corder *o = &c->pool[i];
		if (by_client ? (o->account == key->account && o->coid == key->coid)
			      : o->oid == key->oid)
			return h;
	}
}

static struct corder *find_oid(struct srv_core *c, uint64_t oid)
{
	struct corder key = {.oid = oid};
	uint32_t i = c->by_oid[probe(c, c->by_oid, home_oid(c, &key), &key, false)];
	return i == NONE ? NULL : &c->pool[i];
}

static struct corder *find_client(struct srv_core *c, uint32_t account, uint64_t coid)
{
	struct corder key = {.account = account, .coid = coid};
	uint32_t i = c->by_client[probe(c, c->by_client, home_client(c, &key), &key, true)];
	return i == NONE ? NULL : &c->pool[i];
}

/* Removes pool slot `slot` from one index, by backward shift. */
static void index_del(struct srv_core *c, uint32_t *index, uint32_t slot, bool by_client)
{
	const struct corder *o = &c->pool[slot];
	uint32_t i = probe(c, index, by_client ? home_client(c, o) : home_oid(c, o), o, by_client);
	assert(index[i] == slot);
	for (uint32_t j = i;;) {
		j = (j + 1) & c->mask;
		if (index[j] == NONE)
			break;
		const struct corder *m = &c->pool[index[j]];
		uint32_t k = by_client ? home_client(c, m) : home_oid(c, m);
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			index[i] = index[j];
			i = j;
		}
	}
	index[i] = NONE;
}

/* Tracks a new order; the caller checked that a slot is free. */
static struct corder *order_add(struct srv_core *c, const struct corder *o)
{
	assert(c->nfree > 0);
	c->nfree--;
	uint32_t slot = c->nreleased > 0 ? c->free_slots[--c->nreleased] : c->fresh++;
	c->pool[slot] = *o;
	c->by_oid[probe(c, c->by_oid, home_oid(c, o), o, false)] = slot;
	c->by_client[probe(c, c->by_client, home_client(c, o), o, true)] = slot;
	uint32_t h = acct_slot(c, o->account);
	assert(c->acct_keys[h] == o->account); /* requests come from registered accounts */
	c->pool[slot].acct_prev = NONE;
	c->pool[slot].acct_next = c->acct_head[h];
	if (c->acct_head[h] != NONE)
		c->pool[c->acct_head[h]].acct_prev = slot;
	c->acct_head[h] = slot;
	return &c->pool[slot];
}

static void order_del(struct srv_core *c, struct corder *o)
{
	uint32_t slot = (uint32_t)(o - c->pool);
	index_del(c, c->by_oid, slot, false);
	index_del(c, c->by_client, slot, true);
	if (o->acct_prev != NONE)
		c->pool[o->acct_prev].acct_next = o->acct_next;
	else
		c->acct_head[acct_slot(c, o->account)] = o->acct_next;
	if (o->acct_next != NONE)
		c->pool[o->acct_next].acct_prev = o->acct_prev;
	c->pool[slot].oid = 0; /* engine ids start at 1: 0 marks a free slot */
	c->free_slots[c->nreleased++] = slot;
	c->nfree++;
}

/* ---------- reports ---------- */

static struct srv_report *report(struct srv_core_out *out, uint8_t kind, uint32_t account)
{
	assert(out->n_reports < out->reports_cap);
	struct srv_report *r = &out->reports[out->n_reports++];
	*r = (struct srv_report){.kind = kind, .account = account};
	return r;
}

static void reject(struct srv_core_out *out, const struct srv_request *req, uint8_t reason)
{
	struct srv_report *r = report(out, SRV_REPORT_REJECT, req->account);
	r->nonce = req->nonce;
	r->reason = reason;
	r->client_order_id =
		req->client_order_id ? req->client_order_id : req->target_client_order_id;
}

static void ack(struct srv_core_out *out, const struct srv_request *req)
{
	struct srv_report *r = report(out, SRV_REPORT_ACK, req->account);
	r->nonce = req->nonce;
}

static void exec(struct srv_core_out *out, const struct corder *o, uint8_t type)
{
	struct srv_report *r = report(out, SRV_REPORT_EXEC, o->account);
	r->exec_type = type;
	r->side = o->side;
	r->client_order_id = o->coid;
	r->order_id = o->oid;
	r->book = o->book;
	r->price = o->limit;
	r->cumulative_quantity = o->cum;
	r->leaves_quantity = o->orig - o->cum;
}

static uint8_t reason_of_engine(uint8_t r)
{
	switch (r) {
	case MATCHING_R_BAD_PRICE:
		return GRIDEX__V1__REJECT_REASON__BAD_PRICE;
	case MATCHING_R_BAD_QTY:
		return GRIDEX__V1__REJECT_REASON__BAD_QUANTITY;
	case MATCHING_R_OVERFLOW:
		return GRIDEX__V1__REJECT_REASON__OVERFLOW;
	case MATCHING_R_DUPLICATE_ORDER:
		return GRIDEX__V1__REJECT_REASON__DUPLICATE_ORDER;
	case MATCHING_R_UNKNOWN_ORDER:
		return GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER;
	case MATCHING_R_WOULD_CROSS:
		return GRIDEX__V1__REJECT_REASON__WOULD_CROSS;
	case MATCHING_R_BOOK_FULL:
		return GRIDEX__V1__REJECT_REASON__BOOK_FULL;
	case MATCHING_R_CLOSED:
		return GRIDEX__V1__REJECT_REASON__PRODUCT_CLOSED;
	case MATCHING_R_BAD_EXPIRY:
		return GRIDEX__V1__REJECT_REASON__BAD_EXPIRY;
	case MATCHING_R_BAD_BASKET:
		return GRIDEX__V1__REJECT_REASON__BAD_BASKET;
	case MATCHING_R_UNKNOWN_PRODUCT:
		return GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT;
	default:
		return GRIDEX__V1__REJECT_REASON__MALFORMED;
	}
}

static uint8_t reason_of_risk(int rc)
{
	switch (rc) {
	case SRV_RISK_INSUFFICIENT_FUNDS:
		return GRIDEX__V1__REJECT_REASON__INSUFFICIENT_FUNDS;
	case SRV_RISK_INSUFFICIENT_CAPACITY:
		return GRIDEX__V1__REJECT_REASON__INSUFFICIENT_CAPACITY;
	case SRV_RISK_TOO_MANY_ORDERS:
	case SRV_RISK_FULL:
		return GRIDEX__V1__REJECT_REASON__TOO_MANY_ORDERS;
	case SRV_RISK_OVERFLOW:
		return GRIDEX__V1__REJECT_REASON__OVERFLOW;
	default:
		return GRIDEX__V1__REJECT_REASON__MALFORMED;
	}
}

static uint8_t reason_of_auth(int rc)
{
	switch (rc) {
	case SRV_AUTH_UNKNOWN_ACCOUNT:
		return GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT;
	case SRV_AUTH_STALE_NONCE:
		return GRIDEX__V1__REJECT_REASON__STALE_NONCE;
	case SRV_AUTH_EXPIRED:
		return GRIDEX__V1__REJECT_REASON__EXPIRED;
	case SRV_AUTH_EXPIRY_TOO_FAR:
		return GRIDEX__V1__REJECT_REASON__EXPIRY_TOO_FAR;
	default:
		return GRIDEX__V1__REJECT_REASON__MALFORMED;
	}
}

/* ---------- market data ---------- */

static void touch(struct srv_core *c, uint32_t book, uint8_t side, int64_t price)
{
	assert(c->n_touched < c->touched_cap);
	c->touched[c->n_touched++] = (struct touched){.book = book, .side = side, .price = price};
}

static int touched_cmp(const void *pa, const void *pb)
{
	const struct touched *a = pa, *b = pb;
	if (a->book != b->book)
		return a->book < b->book ? -1 : 1;
	if (a->side != b->side)
		return a->side < b->side ? -1 : 1;
	return a->price < b->price ? -1 : a->price > b->price;
}

/* One LEVEL update per distinct level the call touched, with its new total. */
static void flush_levels(struct srv_core *c, struct srv_core_out *out)
{
	qsort(c->touched, c->n_touched, sizeof(*c->touched), touched_cmp);
	for (size_t i = 0; i < c->n_touched; i++) {
		const struct touched *t = &c->touched[i];
		if (i > 0 && touched_cmp(t, &c->touched[i - 1]) == 0)
			continue;
		struct matching_level_view v;
		matching_level_get(c->eng, t->book, t->side, t->price, &v);
		assert(out->n_md < out->md_cap);
		out->md[out->n_md++] = (struct srv_md){.kind = SRV_MD_LEVEL,
						       .side = t->side,
						       .book = t->book,
						       .sequence = ++c->level_seq[t->book],
						       .price = t->price,
						       .qty = v.qty,
						       .orders = v.orders,
						       .time_ms = c->now_ms};
	}
	c->n_touched = 0;
}

static void trade(struct srv_core *c, struct srv_core_out *out, const struct matching_event *ev)
{
	assert(out->n_md < out->md_cap);
	out->md[out->n_md++] = (struct srv_md){.kind = SRV_MD_TRADE,
					       .side = ev->side,
					       .book = ev->book,
					       .sequence = ++c->trade_seq[ev->book],
					       .price = ev->price,
					       .qty = ev->qty,
					       .time_ms = c->now_ms};
}

static uint8_t other_side(uint8_t side)
{
	return side == MATCHING_BUY ? MATCHING_SELL : MATCHING_BUY;
}

/* Links the report in slot at, number n, first in its account's list. */
static void link_recent(struct srv_core *c, uint64_t at, uint64_t n)
{
	uint32_t h = acct_slot(c, c->recent[at].account);
	assert(c->acct_keys[h] == c->recent[at].account); /* fills are of registered accounts */
	c->recent_prev[at] = c->acct_recent[h];
	c->acct_recent[h] = n + 1;
}

/* Slots of the recent-fills ring: each fill is kept for both sides. */
static uint64_t recent_slots(const struct srv_core *c)
{
	return 2 * (uint64_t)c->cfg.fills_recent_max;
}

/* The number of the newest report that has left the ring, 0 when none has (report
 * numbers n start at 1; report n is in slot (n - 1) % recent_slots()). */
static uint64_t recent_left(const struct srv_core *c)
{
	uint64_t ring = recent_slots(c);
	return c->n_recent > ring ? c->n_recent - ring : 0;
}

/* Keeps a fill's report for QUERY_FILLS (the ring forgets the oldest). */
static void remember_fill(struct srv_core *c, const struct srv_report *r)
{
	uint64_t at = c->n_recent % recent_slots(c);
	c->recent[at] = *r;
	c->recent_gen[at] = c->book_gen[r->book];
	link_recent(c, at, c->n_recent);
	c->n_recent++;
}

/* Whether a slot of the ring holds a fill (a loaded snapshot may have left it empty, account
 * 0) of its book's product still (not of a retired one). */
static bool recent_live(const struct srv_core *c, uint64_t at)
{
	return c->recent[at].account != 0 && c->recent_gen[at] == c->book_gen[c->recent[at].book];
}

/* One side of a fill: its report, and the buyer's or seller's role for the fee. */
static void fill_side(struct srv_core *c, struct srv_core_out *out, struct corder *o,
		      const struct matching_event *ev, bool taker)
{
	o->cum += ev->qty;
	int64_t fee = 0;
	const struct srv_risk_config *rc = &c->cfg.risk;
	int frc = ledger_fee(ev->price * ev->qty, taker ? rc->taker_bps : rc->maker_bps, &fee);
	assert(frc == LEDGER_OK); /* the notional was checked at entry */
	(void)frc;
	exec(out, o,
	     o->cum == o->orig ? GRIDEX__V1__EXEC_TYPE__FILL : GRIDEX__V1__EXEC_TYPE__PARTIAL_FILL);
	struct srv_report *r = &out->reports[out->n_reports - 1];
	r->last_price = ev->price;
	r->last_quantity = ev->qty;
	r->fill_id = ev->fill_id;
	r->fee = fee;
	remember_fill(c, r);
}

/* Risk, reports and settlement for the events of one command (REJECTED excluded). */
static void apply_events(struct srv_core *c, struct srv_core_out *out, size_t from)
{
	for (size_t i = from; i < c->batch.n; i++) {
		const struct matching_event *ev = &c->batch.events[i];
		srv_risk_apply(c->risk, ev);
		struct corder *o = find_oid(c, ev->order_id);
		switch (ev->type) {
		case MATCHING_EV_FILL: {
			struct corder *m = find_oid(c, ev->maker_id);
			assert(o && m);
			fill_side(c, out, o, ev, true);
			fill_side(c, out, m, ev, false);
			trade(c, out, ev);
			touch(c, ev->book, other_side(ev->side), ev->price);
			bool buyer_taker = ev->side == MATCHING_BUY;
			assert(out->n_fills < out->fills_cap);
			const struct matching_product *p = matching_book_product(c->eng, ev->book);
			struct ledger_trade *tr = &out->fills[out->n_fills++];
			tr->fill = (struct ledger_fill){
				.fill_id = (int64_t)ev->fill_id,
				.buyer = buyer_taker ? ev->account : ev->maker_account,
				.seller = buyer_taker ? ev->maker_account : ev->account,
				.buyer_is_taker = buyer_taker,
				.taker_order_id = (int64_t)ev->order_id,
				.maker_order_id = (int64_t)ev->maker_id,
				.price = ev->price,
				.qty = ev->qty,
			};
			_Static_assert(sizeof(tr->product) >= sizeof(p->name),
				       "a product's name fits the ledger's");
			memcpy(tr->product, p->name, sizeof(p->name));
			tr->time_ms = c->now_ms;
			if (c->leases)
				srv_leases_fill(c->leases, &tr->fill, c->class_of[ev->book],
						p->period_start_ms, c->now_ms);
			break;
		}
		case MATCHING_EV_DONE:
			if (o)
				order_del(c, o);
			break;
		case MATCHING_EV_REMOVED:
			if (o) {
				touch(c, o->book, o->side, o->limit);
				bool expired = ev->reason == MATCHING_R_EXPIRED ||
					       ev->reason == MATCHING_R_GATE_CLOSED;
				o->orig = o->cum; /* nothing leaves */
				exec(out, o,
				     expired ? GRIDEX__V1__EXEC_TYPE__EXPIRED_ORDER
					     : GRIDEX__V1__EXEC_TYPE__CANCELED);
				order_del(c, o);
			}
			break;
		case MATCHING_EV_RESTING: /* already reported as NEW or REPLACED */
			touch(c, ev->book, ev->side, ev->price);
			break;
		default:
			break;
		}
	}
}

/* ---------- requests ---------- */

/* Price and quantity must be positive before risk can reserve for them. */
static uint8_t amounts_bad(const struct srv_request *req)
{
	if (req->price < 1)
		return GRIDEX__V1__REJECT_REASON__BAD_PRICE;
	if (req->quantity < 1)
		return GRIDEX__V1__REJECT_REASON__BAD_QUANTITY;
	return 0;
}

/* With leases, a buyer says what runs on what it buys before it bids. */
static bool workload_ready(const struct srv_core *c, const struct srv_request *req)
{
	return c->leases == NULL || req->side != GRIDEX__V1__SIDE__BUY ||
	       srv_leases_workload(c->leases, req->account) != NULL;
}

static void new_order(struct srv_core *c, const struct srv_request *req, struct srv_core_out *out)
{
	uint32_t book;
	uint8_t unlisted = book_to_trade(c, req->product, &book);
	if (unlisted) {
		reject(out, req, unlisted);
		return;
	}
	if (c->halted[book]) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__PRODUCT_HALTED);
		return;
	}
	if (c->leases &&
	    matching_book_product(c->eng, book)->period_start_ms == MATCHING_NO_PERIOD) {
		/* Nothing could be delivered: with leases every product is a delivery hour. */
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
		return;
	}
	if (find_client(c, req->account, req->client_order_id)) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__DUPLICATE_ORDER);
		return;
	}
	if (!workload_ready(c, req)) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
		return;
	}
	if (c->nfree == 0) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__TOO_MANY_ORDERS);
		return;
	}
	uint8_t bad = amounts_bad(req);
	if (bad) {
		reject(out, req, bad);
		return;
	}
	uint8_t side = req->side == GRIDEX__V1__SIDE__BUY ? MATCHING_BUY : MATCHING_SELL;
	struct srv_risk_order ro = {.order_id = c->next_oid,
				    .account = req->account,
				    .book = book,
				    .class_id = c->class_of[book],
				    .side = side,
				    .price = req->price,
				    .qty = req->quantity};
	int rc = srv_risk_enter(c->risk, &ro);
	if (rc) {
		reject(out, req, reason_of_risk(rc));
		return;
	}
	static const uint8_t tifs[] = {
		[GRIDEX__V1__TIME_IN_FORCE__GTC] = MATCHING_GTC,
		[GRIDEX__V1__TIME_IN_FORCE__GTD] = MATCHING_GTD,
		[GRIDEX__V1__TIME_IN_FORCE__IOC] = MATCHING_IOC,
		[GRIDEX__V1__TIME_IN_FORCE__FOK] = MATCHING_FOK,
		[GRIDEX__V1__TIME_IN_FORCE__POST_ONLY] = MATCHING_POST,
	};
	struct matching_order mo = {.order_id = c->next_oid++,
				    .account = req->account,
				    .book = book,
				    .side = side,
				    .tif = tifs[req->time_in_force], /* range checked by decoding */
				    .stp = (uint8_t)req->self_trade, /* same numbering */
				    .price = req->price,
				    .qty = req->quantity,
				    .expire_ms = req->expire_ms};
	int mrc = matching_submit(c->eng, &mo, &c->batch);
	assert(mrc == MATCHING_OK);
	(void)mrc;
	const struct matching_event *first = &c->batch.events[0];
	if (first->type == MATCHING_EV_REJECTED) {
		srv_risk_apply(c->risk, first);
		reject(out, req, reason_of_engine(first->reason));
		return;
	}
	ack(out, req);
	struct corder o = {.oid = mo.order_id,
			   .coid = req->client_order_id,
			   .account = req->account,
			   .book = book,
			   .side = side,
			   .limit = req->price,
			   .orig = req->quantity};
	exec(out, order_add(c, &o), GRIDEX__V1__EXEC_TYPE__NEW);
	apply_events(c, out, 0);
}

/* Releases risk's hold on the first n orders from first_oid, as if the engine refused them. */
static void risk_release(struct srv_core *c, uint64_t first_oid, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct matching_event ev = {.type = MATCHING_EV_REJECTED,
					    .order_id = first_oid + i};
		srv_risk_apply(c->risk, &ev);
	}
}

/* Checks a basket's legs and fills b with their books; 0 or a reject reason. */
static uint8_t basket_legs(struct srv_core *c, const struct srv_request *req,
			   struct matching_basket *b)
{
	/* With listing on, every leg is checked before any book is made. */
	struct matching_product parsed;
	uint8_t why = unlisted(c, req->product);
	if (why)
		return why;
	if (listing_on(c) && matching_product_parse(req->product, strlen(req->product),
						    c->cfg.gate_lead_ms, &parsed) == MATCHING_OK)
		for (uint32_t i = 1; i < req->hours; i++) {
			char name[MATCHING_PRODUCT_NAME_MAX + 1];
			if (matching_product_hour_name(&parsed, i, name) != MATCHING_OK)
				return GRIDEX__V1__REJECT_REASON__BAD_BASKET;
			why = unlisted(c, name);
			if (why)
				return why == GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT
					       ? GRIDEX__V1__REJECT_REASON__BAD_BASKET
					       : why;
		}
	uint32_t book0;
	if (!book_of(c, req->product, &book0))
		return GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT;
	const struct matching_product *p0 = matching_book_product(c->eng, book0);
	if (req->client_order_id > UINT64_MAX - req->hours)
		return GRIDEX__V1__REJECT_REASON__MALFORMED;
	if (c->nfree < req->hours)
		return GRIDEX__V1__REJECT_REASON__TOO_MANY_ORDERS;
	for (uint32_t i = 0; i < req->hours; i++) {
		char name[MATCHING_PRODUCT_NAME_MAX + 1];
		if (matching_product_hour_name(p0, i, name) != MATCHING_OK ||
		    !book_of(c, name, &b->books[i]))
			return GRIDEX__V1__REJECT_REASON__BAD_BASKET;
		if (c->halted[b->books[i]])
			return GRIDEX__V1__REJECT_REASON__PRODUCT_HALTED;
		if (find_client(c, req->account, req->client_order_id + i))
			return GRIDEX__V1__REJECT_REASON__DUPLICATE_ORDER;
	}
	return amounts_bad(req);
}

/* A FOK basket: `hours` legs with client order ids client_order_id + i. */
static void basket(struct srv_core *c, const struct srv_request *req, struct srv_core_out *out)
{
	uint8_t side = req->side == GRIDEX__V1__SIDE__BUY ? MATCHING_BUY : MATCHING_SELL;
	struct matching_basket b = {.account = req->account,
				    .side = side,
				    .stp = (uint8_t)req->self_trade,
				    .price = req->price,
				    .qty = req->quantity,
				    .n_legs = req->hours};
	uint8_t bad = basket_legs(c, req, &b);
	if (!bad && !workload_ready(c, req))
		bad = GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD;
	if (bad) {
		reject(out, req, bad);
		return;
	}
	uint64_t first = c->next_oid;
	for (uint32_t i = 0; i < b.n_legs; i++) {
		b.order_ids[i] = first + i;
		struct srv_risk_order ro = {.order_id = first + i,
					    .account = req->account,
					    .book = b.books[i],
					    .class_id = c->class_of[b.books[i]],
					    .side = side,
					    .price = req->price,
					    .qty = req->quantity};
		int rc = srv_risk_enter(c->risk, &ro);
		if (rc) {
			risk_release(c, first, i);
			reject(out, req, reason_of_risk(rc));
			return;
		}
	}
	c->next_oid += b.n_legs;
	int mrc = matching_submit_basket(c->eng, &b, &c->batch);
	assert(mrc == MATCHING_OK);
	(void)mrc;
	const struct matching_event *first_ev = &c->batch.events[0];
	if (first_ev->type == MATCHING_EV_REJECTED) {
		risk_release(c, first, b.n_legs);
		reject(out, req, reason_of_engine(first_ev->reason));
		return;
	}
	ack(out, req);
	for (uint32_t i = 0; i < b.n_legs; i++) {
		struct corder o = {.oid = first + i,
				   .coid = req->client_order_id + i,
				   .account = req->account,
				   .book = b.books[i],
				   .side = side,
				   .limit = req->price,
				   .orig = req->quantity};
		exec(out, order_add(c, &o), GRIDEX__V1__EXEC_TYPE__NEW);
	}
	apply_events(c, out, 0);
}

static void cancel_one(struct srv_core *c, struct corder *o, struct srv_core_out *out)
{
	int rc = matching_cancel(c->eng, o->oid, &c->batch);
	assert(rc == MATCHING_OK && c->batch.n == 1);
	(void)rc;
	apply_events(c, out, 0);
}

static void cancel(struct srv_core *c, const struct srv_request *req, struct srv_core_out *out)
{
	/* Client order ids are per account: another account's order is not found. */
	struct corder *o = find_client(c, req->account, req->target_client_order_id);
	if (o == NULL) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
		return;
	}
	ack(out, req);
	cancel_one(c, o, out);
}

static void cancel_all(struct srv_core *c, const struct srv_request *req, struct srv_core_out *out)
{
	/* A product, an accelerator class (all its hours), or everything. */
	uint32_t book = NONE, cls = NONE;
	if (req->product[0] != '\0' &&
	    matching_book_find(c->eng, req->product, strlen(req->product), &book) != MATCHING_OK &&
	    (cls = class_find(c, req->product)) == NONE) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
		return;
	}
	ack(out, req);
	/* The account's own orders only; a cancel removes just the order it names. */
	uint32_t h = acct_slot(c, req->account);
	for (uint32_t s = c->acct_keys[h] == req->account ? c->acct_head[h] : NONE; s != NONE;) {
		struct corder *o = &c->pool[s];
		s = o->acct_next;
		if ((book == NONE || o->book == book) &&
		    (cls == NONE || c->class_of[o->book] == cls))
			cancel_one(c, o, out);
	}
}

static void modify(struct srv_core *c, const struct srv_request *req, struct srv_core_out *out)
{
	struct corder *o = find_client(c, req->account, req->target_client_order_id);
	if (o == NULL) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
		return;
	}
	if (c->halted[o->book]) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__PRODUCT_HALTED);
		return;
	}
	uint8_t bad = amounts_bad(req);
	if (bad) {
		reject(out, req, bad);
		return;
	}
	int rc = srv_risk_modify_begin(c->risk, o->oid, req->price, req->quantity);
	if (rc) {
		reject(out, req, reason_of_risk(rc));
		return;
	}
	rc = matching_modify(c->eng, o->oid, req->price, req->quantity, &c->batch);
	assert(rc == MATCHING_OK);
	const struct matching_event *first = &c->batch.events[0];
	if (first->type == MATCHING_EV_REJECTED) {
		srv_risk_modify_end(c->risk, true);
		reject(out, req, reason_of_engine(first->reason));
		return;
	}
	/* Replaced first, then what re-entering did: the new total counts from cum. */
	ack(out, req);
	touch(c, o->book, o->side, o->limit); /* the level it left */
	o->limit = req->price;
	o->orig = o->cum + req->quantity;
	exec(out, o, GRIDEX__V1__EXEC_TYPE__REPLACED);
	apply_events(c, out, 0);
	srv_risk_modify_end(c->risk, false);
}

/* ---------- operator requests ---------- */

static void register_account(struct srv_core *c, const struct srv_request *req,
			     struct srv_core_out *out)
{
	const uint8_t *have = srv_keys_lookup(c->keys, req->target_account);
	const char *name = srv_core_name(c, req->target_account);
	if (req->target_account == c->cfg.operator_account ||
	    (have && (memcmp(have, req->public_key, SRV_PUBLIC_KEY_BYTES) != 0 ||
		      strcmp(name, req->name) != 0))) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__ACCOUNT_EXISTS);
		return;
	}
	for (uint32_t i = 0; !have && i <= c->acct_mask; i++)
		if (c->acct_keys[i] != 0 && strcmp(c->acct_name[i], req->name) == 0) {
			reject(out, req, GRIDEX__V1__REJECT_REASON__ACCOUNT_EXISTS);
			return;
		}
	int rc = srv_core_register(c, req->target_account, req->public_key);
	if (rc) {
		reject(out, req,
		       rc == SRV_AUTH_BAD_KEY ? GRIDEX__V1__REJECT_REASON__BAD_KEY
					      : GRIDEX__V1__REJECT_REASON__REGISTRY_FULL);
		return;
	}
	rc = srv_core_set_name(c, req->target_account, req->name);
	assert(rc == SRV_CORE_OK); /* registered just now, the name checked free */
	ack(out, req);
	out->has_op = true;
	out->op = (struct srv_ledger_op){.kind = SRV_OP_REGISTER, .account = req->target_account};
	memcpy(out->op.name, req->name, sizeof(out->op.name));
	memcpy(out->op.public_key, req->public_key, SRV_PUBLIC_KEY_BYTES);
}

static void move_cash(struct srv_core *c, const struct srv_request *req, struct srv_core_out *out)
{
	bool deposit = req->type == GRIDEX__V1__REQUEST_TYPE__DEPOSIT;
	struct srv_risk_account a;
	if (req->target_account == c->cfg.operator_account ||
	    srv_keys_lookup(c->keys, req->target_account) == NULL ||
	    srv_risk_account(c->risk, req->target_account, &a) != SRV_RISK_OK) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT);
		return;
	}
	/* A withdrawal may not touch money held for open bids. */
	if (!deposit && (a.cash - a.reserved < req->amount)) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__INSUFFICIENT_FUNDS);
		return;
	}
	if (srv_risk_add_cash(c->risk, req->target_account, deposit ? req->amount : -req->amount) !=
	    SRV_RISK_OK) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__OVERFLOW);
		return;
	}
	ack(out, req);
	out->has_op = true;
	out->op = (struct srv_ledger_op){.kind = deposit ? SRV_OP_DEPOSIT : SRV_OP_WITHDRAW,
					 .account = req->target_account,
					 .amount = req->amount};
}

static void set_capacity(struct srv_core *c, const struct srv_request *req,
			 struct srv_core_out *out)
{
	uint32_t cls;
	if (srv_keys_lookup(c->keys, req->target_account) == NULL ||
	    req->target_account == c->cfg.operator_account) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT);
		return;
	}
	if (strchr(req->product, '/') != NULL ||
	    srv_core_class_id(c, req->product, &cls) != SRV_CORE_OK) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
		return;
	}
	int rc = srv_risk_set_capacity(c->risk, req->target_account, cls, req->quantity);
	if (rc) {
		reject(out, req, reason_of_risk(rc));
		return;
	}
	ack(out, req);
}

static void halt(struct srv_core *c, const struct srv_request *req, struct srv_core_out *out)
{
	if (srv_core_halt(c, req->product, req->type == GRIDEX__V1__REQUEST_TYPE__HALT)) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
		return;
	}
	ack(out, req);
}

/* ---------- queries ---------- */

/* A book or an accelerator class named by a request's product field; false if unknown. */
static bool scope_of(const struct srv_core *c, const char *product, uint32_t *book, uint32_t *cls)
{
	*book = *cls = NONE;
	if (product[0] == '\0')
		return true;
	return matching_book_find(c->eng, product, strlen(product), book) == MATCHING_OK ||
	       (*cls = class_find(c, product)) != NONE;
}

static bool in_scope(const struct srv_core *c, uint32_t b, uint32_t book, uint32_t cls)
{
	return (book == NONE || b == book) && (cls == NONE || c->class_of[b] == cls);
}

/* Where a page of an account's orders resumes (the list is newest first, so in falling
 * ids): after the order with id cursor, or when that one has gone, at the first with a
 * lower id. */
static uint32_t orders_after(struct srv_core *c, uint32_t account, uint32_t head, uint64_t cursor)
{
	const struct corder *o = find_oid(c, cursor);
	if (o != NULL && o->account == account)
		return o->acct_next;
	while (head != NONE && c->pool[head].oid >= cursor)
		head = c->pool[head].acct_next;
	return head;
}

/* Where a page of an account's fills resumes: the report its list has after report
 * number cursor (0: none, the rest left the ring). False when cursor names no report of
 * the account's: one not made yet, or another account's, which would walk that
 * account's list. */
static bool fills_after(const struct srv_core *c, uint32_t account, uint64_t cursor, uint64_t *n)
{
	*n = 0;
	if (cursor > c->n_recent)
		return false;
	if (cursor <= recent_left(c))
		return true;
	uint64_t at = (cursor - 1) % recent_slots(c);
	if (c->recent[at].account != account)
		return false;
	*n = c->recent_prev[at];
	return true;
}

static void query(struct srv_core *c, const struct srv_request *req, struct srv_core_out *out)
{
	uint32_t book, cls;
	if (!scope_of(c, req->product, &book, &cls)) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
		return;
	}
	uint32_t h = acct_slot(c, req->account);
	bool known = c->acct_keys[h] == req->account;
	uint64_t fill = known ? c->acct_recent[h] : 0; /* the newest report of the account's */
	if (req->type == GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS && req->cursor != 0 &&
	    !fills_after(c, req->account, req->cursor, &fill)) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__BAD_CURSOR);
		return;
	}
	ack(out, req);
	struct srv_report *r = report(out, SRV_REPORT_RESULT, req->account);
	r->nonce = req->nonce;
	struct srv_risk_account a = {0};
	switch (req->type) {
	case GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE:
		if (srv_risk_account(c->risk, req->account, &a) == SRV_RISK_OK) {
			out->balance_available = a.cash;
			out->balance_reserved = a.reserved;
		}
		break;
	case GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS: {
		uint32_t s = known ? c->acct_head[h] : NONE;
		if (req->cursor != 0)
			s = orders_after(c, req->account, s, req->cursor);
		for (; s != NONE && out->n_rows < out->rows_cap; s = c->pool[s].acct_next) {
			const struct corder *o = &c->pool[s];
			if (!in_scope(c, o->book, book, cls))
				continue;
			out->cursors[out->n_rows] = o->oid;
			struct srv_report *row = &out->rows[out->n_rows++];
			*row = (struct srv_report){
				.kind = SRV_REPORT_EXEC,
				.exec_type = o->cum ? GRIDEX__V1__EXEC_TYPE__PARTIAL_FILL
						    : GRIDEX__V1__EXEC_TYPE__NEW,
				.side = o->side,
				.account = o->account,
				.client_order_id = o->coid,
				.order_id = o->oid,
				.book = o->book,
				.price = o->limit,
				.cumulative_quantity = o->cum,
				.leaves_quantity = o->orig - o->cum};
		}
		break;
	}
	default: { /* QUERY_FILLS, newest first: the account's list, while in the ring */
		uint64_t ring = recent_slots(c), oldest = recent_left(c);
		for (uint64_t n = fill; n > oldest && out->n_rows < out->rows_cap;
		     n = c->recent_prev[(n - 1) % ring]) {
			uint64_t at = (n - 1) % ring;
			const struct srv_report *f = &c->recent[at];
			if (recent_live(c, at) && in_scope(c, f->book, book, cls)) {
				out->cursors[out->n_rows] = n;
				out->rows[out->n_rows++] = *f;
			}
		}
		break;
	}
	}
	out->n_rows = rows_kept(out, out->n_rows);
}

/* Whose leases and hosts an account's lease requests reach: its own, or (0) every one's
 * for the operator. */
static uint32_t own_or_every(const struct srv_core *c, uint32_t account)
{
	return account == c->cfg.operator_account ? 0 : account;
}

/* WITHDRAW_HOST: by the host's seller, or the operator. Its devices no longer count in
 * the seller's capacity (which stays at least 0; offers resting above it stay, and
 * what they sell without devices is refunded as not_enough_devices). */
static void withdraw_host(struct srv_core *c, const struct srv_request *req,
			  struct srv_core_out *out)
{
	uint32_t by = own_or_every(c, req->account), h;
	bool now;
	if (srv_leases_withdraw_host(c->leases, by, req->name, &h, &now) != SRV_LEASE_OK) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__BAD_HOST);
		return;
	}
	if (now) {
		const struct srv_host_view *x = srv_leases_host(c->leases, h);
		int64_t cap = srv_risk_capacity(c->risk, x->seller, x->cls);
		int64_t left = cap > x->spec.n_devices ? cap - x->spec.n_devices : 0;
		/* The seller has a capacity entry for the class unless the operator set it
		 * to 0 (then it stays 0). */
		int rc = cap > 0 ? srv_risk_set_capacity(c->risk, x->seller, x->cls, left)
				 : SRV_RISK_OK;
		assert(rc == SRV_RISK_OK); /* an existing entry is always set */
		(void)rc;
	}
	ack(out, req);
}

/* REGISTER_HOST, WITHDRAW_HOST, SET_WORKLOAD, QUERY_LEASES and QUERY_HOSTS. */
static void lease_request(struct srv_core *c, const struct srv_request *req,
			  struct srv_core_out *out)
{
	if (c->leases == NULL) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__LEASES_OFF);
		return;
	}
	if (req->type == GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES ||
	    req->type == GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS) {
		ack(out, req);
		struct srv_report *r = report(out, SRV_REPORT_RESULT, req->account);
		r->nonce = req->nonce;
		uint32_t whose = own_or_every(c, req->account);
		if (req->type == GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES)
			out->n_lease_rows = rows_kept(
				out, srv_leases_of(c->leases, whose, req->cursor, out->lease_rows,
						   out->cursors, out->rows_cap));
		else
			out->n_host_rows =
				rows_kept(out, srv_leases_hosts_of(c->leases, whose, req->cursor,
								   out->host_rows, out->cursors,
								   out->rows_cap));
		return;
	}
	if (req->type == GRIDEX__V1__REQUEST_TYPE__SET_WORKLOAD) {
		char text[SRV_WORKLOAD_BYTES_MAX + 1];
		if (srv_request_workload(req, text) != SRV_AUTH_OK ||
		    srv_leases_set_workload(c->leases, req->account, text) != SRV_LEASE_OK) {
			reject(out, req, GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
			return;
		}
		ack(out, req);
		return;
	}
	if (req->type == GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST) {
		withdraw_host(c, req, out);
		return;
	}
	struct srv_host_spec spec;
	uint32_t cls;
	if (srv_request_host(req, &spec) != SRV_AUTH_OK || !class_listed(c, req->product) ||
	    srv_core_class_id(c, req->product, &cls) != SRV_CORE_OK) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__BAD_HOST);
		return;
	}
	/* A new host's devices (or those of a host back in service) are capacity the seller
	 * may offer (a host registered again adds nothing); SET_CAPACITY can still change
	 * it. */
	int64_t cap = srv_risk_capacity(c->risk, req->account, cls);
	uint32_t h = srv_leases_host_named(c->leases, req->name);
	bool added, in_service = h != UINT32_MAX && !srv_leases_host(c->leases, h)->withdrawn;
	int rc = !in_service && (cap > INT64_MAX - SRV_HOST_DEVICES_MAX ||
				 !srv_risk_capacity_room(c->risk, req->account, cls))
			 ? SRV_LEASE_FULL
			 : srv_leases_add_host(c->leases, req->account, cls, req->name, &spec, &h,
					       &added);
	if (rc == SRV_LEASE_OK && added) {
		int set = srv_risk_set_capacity(c->risk, req->account, cls, cap + spec.n_devices);
		assert(set == SRV_RISK_OK); /* room was checked */
		(void)set;
	}
	if (rc != SRV_LEASE_OK) {
		reject(out, req,
		       rc == SRV_LEASE_FULL || rc == SRV_LEASE_SELLER_FULL
			       ? GRIDEX__V1__REJECT_REASON__REGISTRY_FULL
			       : GRIDEX__V1__REJECT_REASON__BAD_HOST);
		return;
	}
	ack(out, req);
}

/* ---------- entry points ---------- */

/* The call's escrow settlements reach risk's cash as they reach the ledger: the seller
 * gains the delivered share less its fee, the buyer the rest and the fee on it back. */
static void settle_cash(struct srv_core *c, const struct srv_core_out *out)
{
	if (out->leases == NULL)
		return;
	const struct ledger_fees fees = {.maker_bps = c->cfg.risk.maker_bps,
					 .taker_bps = c->cfg.risk.taker_bps};
	const struct ledger_accounts acc = {
		.fees = 1, .escrow = 2, .bank = 3, .buyer = 4, .seller = 5};
	for (size_t i = 0; i < out->leases->n_settles; i++) {
		const struct srv_settlement *st = &out->leases->settles[i];
		struct ledger_transfer t[4];
		size_t n = 0;
		int rc = ledger_settle_part_transfers(&st->fill, &fees, &acc, st->used, st->total,
						      st->lease_id, t, &n);
		assert(rc == LEDGER_OK); /* the notional was checked at entry */
		(void)rc;
		for (size_t k = 0; k < n; k++) {
			int64_t a = t[k].amount;
			if (t[k].credit_account == acc.buyer || t[k].debit_account == acc.buyer)
				rc |= srv_risk_add_cash(c->risk, st->fill.buyer,
							t[k].credit_account == acc.buyer ? a : -a);
			if (t[k].credit_account == acc.seller || t[k].debit_account == acc.seller)
				rc |= srv_risk_add_cash(c->risk, st->fill.seller,
							t[k].credit_account == acc.seller ? a : -a);
		}
		assert(rc == SRV_RISK_OK); /* never more than the fill took out of cash */
	}
}

static void out_reset(struct srv_core *c, struct srv_core_out *out)
{
	out->n_reports = out->n_fills = out->n_md = out->n_rows = out->n_lease_rows =
		out->n_host_rows = 0;
	out->rows_cut = false;
	out->n_retired = 0;
	out->balance_available = out->balance_reserved = 0;
	out->has_op = false;
	out->leases = NULL;
	if (c->leases) {
		srv_leases_out_reset(c->leases);
		out->leases = srv_leases_out(c->leases);
	}
}

static int out_check(const struct srv_core *c, const struct srv_core_out *out)
{
	size_t nr, nf, nm, nq;
	srv_core_out_caps(c, &nr, &nf);
	srv_core_out_caps_md(c, &nm, &nq);
	if (out->reports_cap < nr || out->fills_cap < nf || out->md_cap < nm ||
	    out->rows_cap < nq || !out->reports || !out->fills || !out->md || !out->rows ||
	    !out->lease_rows || !out->host_rows || !out->cursors)
		return SRV_CORE_ARGS;
	return SRV_CORE_OK;
}

/* GTD expiries and gate closures up to now_ms. */
static void advance(struct srv_core *c, int64_t now_ms, struct srv_core_out *out)
{
	c->now_ms = now_ms;
	if (now_ms <= matching_now(c->eng))
		return;
	retire_books(c, now_ms, out);
	int rc = matching_advance(c->eng, now_ms, &c->batch);
	assert(rc == MATCHING_OK);
	(void)rc;
	apply_events(c, out, 0);
	if (c->leases)
		srv_leases_tick(c->leases, now_ms);
}

int srv_core_tick(struct srv_core *c, int64_t now_ms, struct srv_core_out *out)
{
	int rc = out_check(c, out);
	if (rc)
		return rc;
	out_reset(c, out);
	advance(c, now_ms, out);
	settle_cash(c, out);
	flush_levels(c, out);
	return SRV_CORE_OK;
}

/* Refills a bucket of burst tokens at rate a second (in milli-tokens, from *last_ms). */
static void refill(int64_t *tokens, int64_t *last_ms, uint32_t rate, uint32_t burst, int64_t now_ms)
{
	int64_t full = (int64_t)burst * 1000;
	int64_t elapsed = now_ms - *last_ms;
	if (*last_ms == 0 || elapsed > full) /* first use, or long idle: full */
		*tokens = full;
	else if (elapsed > 0)
		*tokens += elapsed * rate;
	if (*tokens > full)
		*tokens = full;
	if (elapsed > 0 || *last_ms == 0)
		*last_ms = now_ms;
}

/* Takes one token of such a bucket; false when it is empty. */
static bool take_token(int64_t *tokens, int64_t *last_ms, uint32_t rate, uint32_t burst,
		       int64_t now_ms)
{
	refill(tokens, last_ms, rate, burst, now_ms);
	if (*tokens < 1000)
		return false;
	*tokens -= 1000;
	return true;
}

/* Takes one token of the account's order-rate bucket; false when it is empty. */
static bool rate_ok(struct srv_core *c, uint32_t account, int64_t now_ms)
{
	if (c->cfg.orders_per_second == 0)
		return true;
	uint32_t h = acct_slot(c, account);
	assert(c->acct_keys[h] == account);
	return take_token(&c->acct_tokens[h], &c->acct_last_ms[h], c->cfg.orders_per_second,
			  c->cfg.orders_burst, now_ms);
}

static bool is_query(uint32_t type)
{
	return (type >= GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS &&
		type <= GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES) ||
	       type == GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS;
}

/* The same for queries of a participant (the operator's are not limited). */
static bool query_rate_ok(struct srv_core *c, uint32_t account, int64_t now_ms)
{
	if (c->cfg.queries_per_second == 0 || account == c->cfg.operator_account)
		return true;
	uint32_t h = acct_slot(c, account);
	assert(c->acct_keys[h] == account);
	return take_token(&c->acct_qtokens[h], &c->acct_qlast_ms[h], c->cfg.queries_per_second,
			  c->cfg.queries_burst, now_ms);
}

/* Whether a participant's query comes under query_rows_per_second. */
static bool rows_limited(const struct srv_core *c, const struct srv_request *req)
{
	return c->cfg.query_rows_per_second != 0 && is_query(req->type) &&
	       req->account != c->cfg.operator_account;
}

/* Whether the shared bucket holds a query's base cost; it is charged once the query is
 * answered (query_rows_charge), and may then go below empty: the next queries wait. */
static bool query_rows_ok(struct srv_core *c, int64_t now_ms)
{
	refill(&c->qrows_tokens, &c->qrows_last_ms, c->cfg.query_rows_per_second,
	       c->cfg.query_rows_burst, now_ms);
	return c->qrows_tokens >= (int64_t)SRV_QUERY_ROWS_BASE * 1000;
}

static void query_rows_charge(struct srv_core *c, const struct srv_core_out *out)
{
	size_t rows = out->n_rows + out->n_lease_rows + out->n_host_rows;
	c->qrows_tokens -= ((int64_t)SRV_QUERY_ROWS_BASE + (int64_t)rows) * 1000;
}

/* REGISTER_HOST, WITHDRAW_HOST and SET_WORKLOAD: the requests that change the lease book. */
static bool is_lease_change(uint32_t type)
{
	return type == GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST ||
	       type == GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST ||
	       type == GRIDEX__V1__REQUEST_TYPE__SET_WORKLOAD;
}

/* Whether lease_requests_per_second applies: leases on and the limit set. */
static bool lease_limited(const struct srv_core *c)
{
	return c->leases != NULL && c->cfg.lease_requests_per_second != 0;
}

/* The same for those, with leases on (the operator's are not limited). Their bucket is in
 * snapshots, as the order bucket is: what it refuses changes what replay does. */
static bool lease_rate_ok(struct srv_core *c, uint32_t account, int64_t now_ms)
{
	if (!lease_limited(c) || account == c->cfg.operator_account)
		return true;
	uint32_t h = acct_slot(c, account);
	assert(c->acct_keys[h] == account);
	return take_token(&c->acct_ltokens[h], &c->acct_llast_ms[h],
			  c->cfg.lease_requests_per_second, c->cfg.lease_requests_burst, now_ms);
}

static bool is_operator_request(uint32_t type)
{
	return type >= GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT &&
	       type <= GRIDEX__V1__REQUEST_TYPE__RESUME;
}

static void dispatch(struct srv_core *c, const struct srv_request *req, int64_t now_ms,
		     struct srv_core_out *out)
{
	if (is_operator_request(req->type) &&
	    (c->cfg.operator_account == 0 || req->account != c->cfg.operator_account)) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__NOT_AUTHORIZED);
		return;
	}
	if ((req->type <= GRIDEX__V1__REQUEST_TYPE__NEW_BASKET &&
	     !rate_ok(c, req->account, now_ms)) ||
	    (is_query(req->type) && !query_rate_ok(c, req->account, now_ms)) ||
	    (rows_limited(c, req) && !query_rows_ok(c, now_ms)) ||
	    (is_lease_change(req->type) && !lease_rate_ok(c, req->account, now_ms))) {
		reject(out, req, GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
		return;
	}
	switch (req->type) {
	case GRIDEX__V1__REQUEST_TYPE__NEW_ORDER:
		new_order(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__CANCEL:
		cancel(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__CANCEL_ALL:
		cancel_all(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__MODIFY:
		modify(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__NEW_BASKET:
		basket(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS:
	case GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE:
	case GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS:
		query(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT:
		register_account(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__DEPOSIT:
	case GRIDEX__V1__REQUEST_TYPE__WITHDRAW:
		move_cash(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY:
		set_capacity(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__HALT:
	case GRIDEX__V1__REQUEST_TYPE__RESUME:
		halt(c, req, out);
		break;
	case GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST:
	case GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST:
	case GRIDEX__V1__REQUEST_TYPE__SET_WORKLOAD:
	case GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES:
	case GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS:
		lease_request(c, req, out);
		break;
	default:
		reject(out, req, GRIDEX__V1__REJECT_REASON__MALFORMED);
		break;
	}
	if (rows_limited(c, req))
		query_rows_charge(c, out);
}

int srv_core_lease_event(struct srv_core *c, uint64_t lease_id, uint8_t kind, const char *code,
			 int64_t now_ms, struct srv_core_out *out)
{
	int rc = out_check(c, out);
	if (rc)
		return rc;
	out_reset(c, out);
	advance(c, now_ms, out);
	if (c->leases)
		srv_leases_event(c->leases, lease_id, kind, code, now_ms);
	settle_cash(c, out);
	flush_levels(c, out);
	return SRV_CORE_OK;
}

void srv_core_lease_resume(struct srv_core *c, struct srv_core_out *out)
{
	out_reset(c, out);
	if (c->leases)
		srv_leases_resume(c->leases);
}

struct srv_leases *srv_core_leases(struct srv_core *c)
{
	return c->leases;
}

const char *srv_core_class_name(const struct srv_core *c, uint32_t cls)
{
	return cls < c->nclasses ? c->classes[cls] : "";
}

int srv_core_handle(struct srv_core *c, const struct srv_request *req, int64_t now_ms,
		    struct srv_core_out *out)
{
	int rc = out_check(c, out);
	if (rc)
		return rc;
	out_reset(c, out);
	/* Expiry reports of the clock come first; this request's follow. */
	advance(c, now_ms, out);
	rc = srv_nonce_accept(c->keys, req->account, req->nonce, req->expires_at_ms, now_ms,
			      c->cfg.expiry_ahead_ms_max);
	if (rc)
		reject(out, req, reason_of_auth(rc));
	else
		dispatch(c, req, now_ms, out);
	settle_cash(c, out);
	flush_levels(c, out);
	return SRV_CORE_OK;
}

bool srv_core_halted(const struct srv_core *c, uint32_t book)
{
	return book < matching_book_count(c->eng) && c->halted[book];
}

uint32_t srv_core_book_count(const struct srv_core *c)
{
	return matching_book_count(c->eng);
}

const char *srv_core_book_name(const struct srv_core *c, uint32_t book)
{
	const struct matching_product *p = matching_book_product(c->eng, book);
	return p ? p->name : NULL;
}

size_t srv_core_topic_books(const struct srv_core *c, const char *topic, uint32_t *books,
			    size_t max)
{
	uint32_t book;
	if (max == 0)
		return 0;
	if (matching_book_find(c->eng, topic, strlen(topic), &book) == MATCHING_OK) {
		books[0] = book;
		return 1;
	}
	uint32_t cls = class_find(c, topic);
	size_t n = 0;
	for (uint32_t b = 0; cls != NONE && b < matching_book_count(c->eng) && n < max; b++)
		if (c->class_of[b] == cls && !matching_book_closed(c->eng, b))
			books[n++] = b;
	return n;
}

bool srv_core_snapshot(const struct srv_core *c, uint32_t book, struct matching_level_view *bids,
		       size_t *n_bids, struct matching_level_view *asks, size_t *n_asks, size_t max,
		       uint64_t *level_seq, uint64_t *trade_seq)
{
	if (matching_book_product(c->eng, book) == NULL)
		return false;
	*n_bids = matching_book_depth(c->eng, book, MATCHING_BUY, bids, max);
	*n_asks = matching_book_depth(c->eng, book, MATCHING_SELL, asks, max);
	*level_seq = c->level_seq[book];
	*trade_seq = c->trade_seq[book];
	return true;
}

/* ---------- snapshots ---------- */

static void put_text(struct srv_snap_w *w, const char *s)
{
	size_t len = strlen(s);
	srv_snap_u8(w, (uint8_t)len);
	srv_snap_put(w, s, len);
}

/* A NUL-terminated text of at most max bytes. */
static void get_text(struct srv_snap_r *in, char *out, size_t max)
{
	size_t len = srv_snap_get_u8(in);
	if (len > max) {
		srv_snap_fail(in, "a name in the snapshot is too long");
		len = 0;
	}
	srv_snap_get(in, out, len);
	out[len] = '\0';
	if (memchr(out, '\0', len) != NULL)
		srv_snap_fail(in, "a name in the snapshot holds a NUL byte");
}

/* A count written after the items it counts: its place, then its value. */
static size_t count_begin(struct srv_snap_w *w)
{
	srv_snap_u32(w, 0);
	return w->len - 4;
}

static void count_end(struct srv_snap_w *w, size_t at, uint32_t n)
{
	for (int i = 0; !w->failed && i < 4; i++)
		w->p[at + (size_t)i] = (uint8_t)(n >> (8 * i));
}

struct save_orders {
	struct srv_snap_w *w;
	uint32_t n;
};

static int save_order(const struct matching_order_view *o, void *ctx)
{
	struct save_orders *x = ctx;
	srv_snap_u64(x->w, o->order_id);
	srv_snap_u32(x->w, o->account);
	srv_snap_u8(x->w, o->tif);
	srv_snap_u8(x->w, o->stp);
	srv_snap_i64(x->w, o->price);
	srv_snap_i64(x->w, o->qty);
	srv_snap_i64(x->w, o->expire_ms);
	x->n++;
	return 0;
}

static void save_report(struct srv_snap_w *w, const struct srv_report *r)
{
	srv_snap_u8(w, r->kind);
	srv_snap_u8(w, r->reason);
	srv_snap_u8(w, r->exec_type);
	srv_snap_u8(w, r->side);
	srv_snap_u32(w, r->account);
	srv_snap_u64(w, r->nonce);
	srv_snap_u64(w, r->client_order_id);
	srv_snap_u64(w, r->order_id);
	srv_snap_u32(w, r->book);
	srv_snap_i64(w, r->price);
	srv_snap_i64(w, r->last_price);
	srv_snap_i64(w, r->last_quantity);
	srv_snap_i64(w, r->cumulative_quantity);
	srv_snap_i64(w, r->leaves_quantity);
	srv_snap_u64(w, r->fill_id);
	srv_snap_i64(w, r->fee);
}

#define REPORT_BYTES 92 /* as save_report writes it */

static void load_report(struct srv_snap_r *in, struct srv_report *r)
{
	r->kind = srv_snap_get_u8(in);
	r->reason = srv_snap_get_u8(in);
	r->exec_type = srv_snap_get_u8(in);
	r->side = srv_snap_get_u8(in);
	r->account = srv_snap_get_u32(in);
	r->nonce = srv_snap_get_u64(in);
	r->client_order_id = srv_snap_get_u64(in);
	r->order_id = srv_snap_get_u64(in);
	r->book = srv_snap_get_u32(in);
	r->price = srv_snap_get_i64(in);
	r->last_price = srv_snap_get_i64(in);
	r->last_quantity = srv_snap_get_i64(in);
	r->cumulative_quantity = srv_snap_get_i64(in);
	r->leaves_quantity = srv_snap_get_i64(in);
	r->fill_id = srv_snap_get_u64(in);
	r->fee = srv_snap_get_i64(in);
}

void srv_core_save(const struct srv_core *c, struct srv_snap_w *w)
{
	srv_snap_u64(w, c->next_oid);
	srv_snap_i64(w, matching_now(c->eng));
	srv_snap_u64(w, matching_fill_seq(c->eng));
	srv_snap_u32(w, c->nclasses);
	for (uint32_t i = 0; i < c->nclasses; i++)
		put_text(w, c->classes[i]);
	uint32_t nbooks = matching_book_count(c->eng);
	srv_snap_u32(w, nbooks);
	for (uint32_t b = 0; b < nbooks; b++) {
		const struct matching_product *p = matching_book_product(c->eng, b);
		if (p == NULL) { /* a retired number: an empty name and nothing else */
			put_text(w, "");
			continue;
		}
		put_text(w, p->name);
		put_text(w, p->class_name);
		srv_snap_i64(w, p->period_start_ms);
		srv_snap_i64(w, p->period_ms);
		srv_snap_i64(w, p->gate_ms);
		srv_snap_i64(w, p->tick);
		srv_snap_u8(w, c->halted[b]);
		srv_snap_u32(w, c->class_of[b]);
		srv_snap_u64(w, c->level_seq[b]);
		srv_snap_u64(w, c->trade_seq[b]);
		for (int side = MATCHING_BUY; side <= MATCHING_SELL; side++) {
			struct save_orders x = {.w = w};
			size_t at = count_begin(w);
			int rc = matching_book_orders(c->eng, b, side, save_order, &x);
			assert(rc == 0);
			(void)rc;
			count_end(w, at, x.n);
		}
	}
	srv_keys_save(c->keys, w);
	/* Accounts, each with its live orders from the oldest: loading adds them in
	 * that order, newest at the head, as they were. */
	size_t at = count_begin(w);
	uint32_t naccts = 0;
	for (uint32_t h = 0; h <= c->acct_mask; h++) {
		if (c->acct_keys[h] == 0)
			continue;
		naccts++;
		srv_snap_u32(w, c->acct_keys[h]);
		put_text(w, c->acct_name[h]);
		srv_snap_i64(w, c->acct_tokens[h]);
		srv_snap_i64(w, c->acct_last_ms[h]);
		uint32_t last = NONE, n = 0;
		for (uint32_t s = c->acct_head[h]; s != NONE; s = c->pool[s].acct_next, n++)
			last = s;
		srv_snap_u32(w, n);
		for (uint32_t s = last; s != NONE; s = c->pool[s].acct_prev) {
			const struct corder *o = &c->pool[s];
			srv_snap_u64(w, o->oid);
			srv_snap_u64(w, o->coid);
			srv_snap_u32(w, o->book);
			srv_snap_u8(w, o->side);
			srv_snap_i64(w, o->limit);
			srv_snap_i64(w, o->orig);
			srv_snap_i64(w, o->cum);
		}
	}
	count_end(w, at, naccts);
	srv_risk_save(c->risk, w);
	uint64_t ring = recent_slots(c);
	uint64_t kept = c->n_recent < ring ? c->n_recent : ring;
	uint32_t live = 0;
	srv_snap_u64(w, c->n_recent);
	at = count_begin(w); /* the fills of retired books are left out */
	for (uint64_t i = 0; i < kept; i++) {
		uint64_t slot = (c->n_recent - kept + i) % ring;
		if (recent_live(c, slot)) {
			save_report(w, &c->recent[slot]);
			live++;
		}
	}
	count_end(w, at, live);
	srv_snap_u8(w, c->leases != NULL);
	if (c->leases)
		srv_leases_save(c->leases, w);
	/* The lease-request buckets in use, last: a snapshot written before they existed
	 * (or with the limit off) has none, and loads unchanged; the limit is in the
	 * settings fingerprint, so a snapshot is loaded only under the one it was written
	 * with. */
	if (lease_limited(c)) {
		at = count_begin(w);
		uint32_t used = 0;
		for (uint32_t h = 0; h <= c->acct_mask; h++)
			if (c->acct_keys[h] != 0 && c->acct_llast_ms[h] != 0) {
				srv_snap_u32(w, c->acct_keys[h]);
				srv_snap_i64(w, c->acct_ltokens[h]);
				srv_snap_i64(w, c->acct_llast_ms[h]);
				used++;
			}
		count_end(w, at, used);
	}
}

/* The buckets srv_core_save wrote last: each of a known account, once, in range. */
static void load_lease_buckets(struct srv_core *c, struct srv_snap_r *in)
{
	uint32_t n = srv_snap_get_count(in, 20, c->cfg.accounts_max);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		uint32_t account = srv_snap_get_u32(in);
		int64_t tokens = srv_snap_get_i64(in), last_ms = srv_snap_get_i64(in);
		if (in->error)
			return;
		uint32_t h = acct_slot(c, account);
		if (account == 0 || c->acct_keys[h] != account || c->acct_llast_ms[h] != 0 ||
		    tokens < 0 || tokens > (int64_t)c->cfg.lease_requests_burst * 1000 ||
		    last_ms <= 0) {
			srv_snap_fail(in,
				      "core: a lease-request bucket is of an unknown or repeated "
				      "account, or out of range");
			return;
		}
		c->acct_ltokens[h] = tokens;
		c->acct_llast_ms[h] = last_ms;
	}
}

static void load_books(struct srv_core *c, struct srv_snap_r *in)
{
	c->nclasses = srv_snap_get_count(in, 1, CLASSES_MAX);
	for (uint32_t i = 0; i < c->nclasses && !in->error; i++) {
		get_text(in, c->classes[i], MATCHING_CLASS_NAME_MAX);
		if (c->classes[i][0] == '\0' || class_find(c, c->classes[i]) != i)
			srv_snap_fail(in, "core: an accelerator class is empty or repeated");
	}
	/* A retired number is one byte (an empty name). */
	uint32_t nbooks = srv_snap_get_count(in, 1, c->cfg.matching.books_max);
	for (uint32_t b = 0; b < nbooks && !in->error; b++) {
		struct matching_product p = {0};
		get_text(in, p.name, MATCHING_PRODUCT_NAME_MAX);
		if (p.name[0] == '\0')
			continue; /* a retired number */
		get_text(in, p.class_name, MATCHING_CLASS_NAME_MAX);
		p.period_start_ms = srv_snap_get_i64(in);
		p.period_ms = srv_snap_get_i64(in);
		p.gate_ms = srv_snap_get_i64(in);
		p.tick = srv_snap_get_i64(in);
		uint8_t halted = srv_snap_get_u8(in);
		uint32_t cls = srv_snap_get_u32(in);
		c->level_seq[b] = srv_snap_get_u64(in);
		c->trade_seq[b] = srv_snap_get_u64(in);
		if (in->error)
			return;
		if (halted > 1 || cls >= c->nclasses ||
		    strcmp(c->classes[cls], p.class_name) != 0 ||
		    matching_book_create_at(c->eng, &p, b) != MATCHING_OK) {
			srv_snap_fail(in, "core: a product is invalid or repeated");
			return;
		}
		c->halted[b] = halted;
		c->class_of[b] = cls;
		c->class_books[cls]++;
		retire_plan(c, b);
		for (uint8_t side = MATCHING_BUY; side <= MATCHING_SELL && !in->error; side++) {
			uint32_t n = srv_snap_get_count(in, 38, c->cfg.matching.orders_max);
			for (uint32_t i = 0; i < n && !in->error; i++) {
				struct matching_order o = {.book = b, .side = side};
				o.order_id = srv_snap_get_u64(in);
				o.account = srv_snap_get_u32(in);
				o.tif = srv_snap_get_u8(in);
				o.stp = srv_snap_get_u8(in);
				o.price = srv_snap_get_i64(in);
				o.qty = srv_snap_get_i64(in);
				o.expire_ms = srv_snap_get_i64(in);
				if (!in->error && (o.order_id == 0 || o.order_id >= c->next_oid ||
						   matching_restore_order(c->eng, &o) != 0))
					srv_snap_fail(
						in, "core: a resting order does not fit its book");
			}
		}
	}
}

static bool book_live(uint32_t book, void *eng)
{
	return matching_book_product(eng, book) != NULL;
}

static void load_accounts(struct srv_core *c, struct srv_snap_r *in)
{
	uint32_t naccts = srv_snap_get_count(in, 25, c->cfg.accounts_max);
	for (uint32_t a = 0; a < naccts && !in->error; a++) {
		uint32_t account = srv_snap_get_u32(in);
		char name[SRV_ACCOUNT_NAME_BYTES_MAX + 1];
		get_text(in, name, SRV_ACCOUNT_NAME_BYTES_MAX);
		int64_t tokens = srv_snap_get_i64(in), last_ms = srv_snap_get_i64(in);
		uint32_t n = srv_snap_get_count(in, 45, c->cfg.client_ids_max);
		if (in->error)
			return;
		uint32_t h = acct_slot(c, account);
		bool fresh = c->acct_keys[h] != account ||
			     (c->acct_head[h] == NONE && c->acct_name[h][0] == '\0' &&
			      c->acct_last_ms[h] == 0); /* the operator's, registered already */
		if (srv_keys_lookup(c->keys, account) == NULL || !fresh || tokens < 0 ||
		    tokens > (int64_t)c->cfg.orders_burst * 1000 || last_ms < 0) {
			srv_snap_fail(in, "core: an account is unknown, repeated or out of range");
			return;
		}
		c->acct_keys[h] = account;
		c->acct_head[h] = NONE;
		c->acct_tokens[h] = tokens;
		c->acct_last_ms[h] = last_ms;
		/* Names are checked for repeats once all are in (srv_core_set_name scans every
		 * account: quadratic over a registry). */
		memcpy(c->acct_name[h], name, strlen(name) + 1);
		for (uint32_t i = 0; i < n && !in->error; i++) {
			struct corder o = {.account = account};
			o.oid = srv_snap_get_u64(in);
			o.coid = srv_snap_get_u64(in);
			o.book = srv_snap_get_u32(in);
			o.side = srv_snap_get_u8(in);
			o.limit = srv_snap_get_i64(in);
			o.orig = srv_snap_get_i64(in);
			o.cum = srv_snap_get_i64(in);
			struct matching_order_view v;
			if (in->error)
				return;
			/* Each live order rests in the engine with what its owner was told. */
			if (c->nfree == 0 || find_oid(c, o.oid) != NULL ||
			    find_client(c, account, o.coid) != NULL || o.cum < 0 ||
			    o.orig <= o.cum ||
			    matching_order_get(c->eng, o.oid, &v) != MATCHING_OK ||
			    v.account != account || v.book != o.book || v.side != o.side ||
			    v.price != o.limit || v.qty != o.orig - o.cum) {
				srv_snap_fail(in, "core: a live order differs from the book");
				return;
			}
			order_add(c, &o);
		}
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether two accounts share a name ("" is no name). */
static bool names_repeat(const struct srv_core *c, const char **names)
{
	size_t n = 0;
	for (uint32_t h = 0; h <= c->acct_mask; h++)
		if (c->acct_keys[h] != 0 && c->acct_name[h][0] != '\0')
			names[n++] = c->acct_name[h];
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 1; i < n; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			return true;
	return false;
}

int srv_core_load(struct srv_core *c, struct srv_snap_r *in)
{
	if (matching_book_count(c->eng) != 0 || c->nfree != c->cfg.client_ids_max) {
		srv_snap_fail(in, "core: not a new core");
		return -1;
	}
	c->next_oid = srv_snap_get_u64(in);
	int64_t now = srv_snap_get_i64(in);
	uint64_t next_fill = srv_snap_get_u64(in);
	if (!in->error && (c->next_oid < 1 || next_fill < 1 || now < matching_now(c->eng) ||
			   matching_advance(c->eng, now, &c->batch) != MATCHING_OK))
		srv_snap_fail(in, "core: clock or counters out of range");
	matching_restore_fill_seq(c->eng, next_fill);
	load_books(c, in);
	/* The operator's account is in the registry already, with its configured key. */
	if (!in->error && srv_keys_load(c->keys, in) != 0)
		return -1;
	load_accounts(c, in);
	const char **names = in->error ? NULL : malloc((c->acct_mask + 1) * sizeof(*names));
	if (!in->error && (names == NULL || names_repeat(c, names)))
		srv_snap_fail(in, names ? "core: two accounts share a name" : "out of memory");
	free(names);
	if (!in->error && srv_risk_load(c->risk, in) != 0)
		return -1;
	if (!in->error && !srv_risk_positions_in(c->risk, book_live, c->eng))
		srv_snap_fail(in, "core: a seller's position is in no book");
	uint64_t ring = recent_slots(c);
	/* fills_recent_max may have changed: the newest that fit are kept. */
	c->n_recent = srv_snap_get_u64(in);
	uint32_t saved = srv_snap_get_count(in, REPORT_BYTES, UINT32_MAX);
	if (saved > c->n_recent)
		srv_snap_fail(in, "core: more recent fills than were ever made");
	uint64_t kept = saved < ring ? saved : ring;
	for (uint64_t i = 0; i < saved && !in->error; i++) {
		struct srv_report r;
		load_report(in, &r);
		if (!in->error && matching_book_product(c->eng, r.book) == NULL)
			srv_snap_fail(in, "core: a recent fill names no product");
		if (!in->error && i >= saved - kept) {
			uint64_t n = c->n_recent - saved + i, at = n % ring;
			c->recent[at] = r;
			uint32_t h = acct_slot(c, r.account);
			if (r.account == 0 || c->acct_keys[h] != r.account)
				srv_snap_fail(in, "core: a recent fill of an unknown account");
			else
				link_recent(c, at, n);
		}
	}
	if ((srv_snap_get_u8(in) != 0) != (c->leases != NULL))
		srv_snap_fail(in, "core: the snapshot was taken with leases on and this core has "
				  "them off, or the reverse");
	if (!in->error && c->leases && srv_leases_load(c->leases, in) != 0)
		return -1;
	if (!in->error && lease_limited(c))
		load_lease_buckets(c, in);
	if (in->error)
		return -1;
	/* The three views of the open orders agree. */
	uint32_t live = c->cfg.client_ids_max - c->nfree;
	struct srv_risk_account ra;
	for (uint32_t h = 0; h <= c->acct_mask; h++)
		if (c->acct_keys[h] != 0 &&
		    srv_risk_account(c->risk, c->acct_keys[h], &ra) != SRV_RISK_OK) {
			srv_snap_fail(in, "core: an account has no risk state");
			return -1;
		}
	if (live != matching_order_count(c->eng)) {
		srv_snap_fail(in, "core: live orders and resting orders differ");
		return -1;
	}
	if (live != srv_risk_order_count(c->risk)) {
		srv_snap_fail(in, "core: live orders and risk's orders differ");
		return -1;
	}
	for (uint32_t i = 0; i < c->fresh; i++) {
		const struct corder *o = &c->pool[i];
		struct srv_risk_order r;
		if (o->oid == 0)
			continue;
		if (!srv_risk_order(c->risk, o->oid, &r) || r.account != o->account ||
		    r.book != o->book || r.class_id != c->class_of[o->book] || r.side != o->side ||
		    r.price != o->limit || r.qty != o->orig - o->cum) {
			srv_snap_fail(in, "core: a live order differs from risk's");
			return -1;
		}
	}
	return 0;
}
