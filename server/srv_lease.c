/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_lease.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_dues.h"
#include "srv_idmap.h"
#include "srv_snapshot.h"
#include "srv_tindex.h"

#define HOUR_MS	 INT64_C(3600000)
#define NO_HOST	 UINT32_MAX
#define NONE_DUE INT64_MAX
/* In a snapshot's host record, the class's top bit: the host is withdrawn (older
 * snapshots never set it: class numbers are small). */
#define HOST_WITHDRAWN UINT32_C(0x80000000)
/* The most hours one lease covers: a fill of the hour after its last starts a new lease
 * then (and snapshots refuse a lease of more). */
#define PARTS_MAX (24u * 366u)

/* A fill some lease still delivers: what its leases delivered so far. */
struct ofill {
	struct ledger_fill f;
	int64_t used;	/* GPU-ms delivered */
	uint32_t open;	/* parts not ended */
	uint64_t lease; /* the last lease that ended a part of it */
	size_t slot;	/* in fills[] */
};

/* One product hour of a lease: its share of one fill. */
struct part {
	struct ofill *fill;
	int64_t ws, we; /* the hour's delivery window */
};

struct lease {
	struct srv_lease_view v;       /* v.n_fills and v.fill_ids are filled when viewed */
	int64_t first_hour, last_hour; /* product hours (period starts) it covers */
	struct part *parts;
	uint32_t n_parts, cap_parts;
	uint32_t host_slot;	       /* in its host's list */
	struct lease *b_prev, *b_next; /* in by_buyer: see hour_entry */
	/* In its buyer's [0] and its seller's [1] list of live leases (struct acct); a
	 * lease of an account with itself is in the first only. */
	struct lease *a_prev[2], *a_next[2];
	bool listed; /* in by_buyer */
	bool gone;   /* ended: freed when live[] is compacted */
};

/*
 * In the hours index, one host in one product hour that live leases cover: the
 * devices they hold then (what a fill looks up instead of every lease of a host).
 * In by_buyer, one buyer's leases of one class with one seller whose last hour is
 * one hour, from first to last through b_next: every such lease that is scheduled
 * (those a fill of the next hour may extend), and those that started since (the
 * clock leaves them there at an hour's start, where time counts most; the next fill
 * that reads the list takes them out). They are in id order, the order fills extend
 * in, unless one older than the last joined (an extended lease): then the next fill
 * that reads them sorts them first.
 */
struct hour_entry {
	int64_t hour;
	uint32_t host; /* NO_HOST: an empty slot; in by_buyer, the buyer */
	union {
		uint32_t taken;		   /* hours: the devices taken */
		struct {		   /* by_buyer (0 and 0 when the list is empty) */
			uint16_t unsorted; /* the list may be out of id order */
			uint16_t fewest;   /* no lease listed has fewer GPUs */
		};
	};
	struct lease *first, *last; /* by_buyer */
};

/* A table of hour entries: open addressing with linear probing, at most half full; an
 * entry is removed (the run after it shifted back) once it holds nothing. */
struct hour_table {
	struct hour_entry *e;
	size_t mask, n;
};

/* The live leases of one host (any order): whether a withdrawn host still holds its
 * devices, and what a host's checks read. */
struct host_leases {
	struct lease **l;
	uint32_t n, cap;
};

struct workload {
	uint32_t account;
	char *text;
};

/* What a lease query of one account reads instead of every lease: the account's live
 * leases, newest first (ids only grow, so a new lease goes first), and the number + 1
 * of its newest lease in the ring of ended ones (0: none), whose slot's ended_prev
 * holds the account's one before; a number that has left the ring ends that list. */
struct acct {
	uint32_t account; /* 0: an empty slot */
	struct lease *live;
	uint64_t ended;
};

/*
 * Live leases are individually allocated; live[] holds them in creation (= id)
 * order, ended ones marked gone until live[] is compacted (when they are
 * many): lookups by id are binary searches and nothing moves a lease. Open fills likewise, in
 * fills[] in fill-id order. The clock finds the leases due (to start, to be running
 * by their deadline, to end) in a heap of due times, not by a scan.
 */
struct srv_leases {
	struct srv_lease_config cfg;
	struct srv_host_view *hosts;
	struct host_leases *on_host;
	uint32_t *named; /* per host: ended leases in the ring that name it */
	uint32_t n_hosts, n_withdrawn;
	/* Every host, ordered by seller, then by place: a seller's hosts in the order
	 * fills use them, found without looking at the other sellers'. */
	uint32_t *by_seller;
	struct srv_tindex names;   /* host name -> host */
	struct srv_tindex devices; /* UUID -> host << 4 | device, of hosts that hold theirs */
	struct lease **live;
	size_t n_live, cap_live; /* slots, gone ones included */
	uint32_t n_active;	 /* live leases */
	struct ofill **fills;
	size_t n_fills, cap_fills, n_open;
	struct srv_lease_view *ended; /* ring of the last leases_kept */
	uint64_t n_ended;
	uint64_t (*ended_prev)[2]; /* per slot: its buyer's [0] and seller's [1] one before */
	/* Every account that had a lease since the book began (or loaded), by account:
	 * open addressing, at most half full. */
	struct acct *accts;
	size_t acct_mask, n_accts;
	/* Workloads in the order they were first set (snapshots keep it), and an index
	 * by account: wl_slots holds a workload's index + 1, 0 when empty, and is at
	 * most half full. Every buy order and every lease start looks one up. */
	struct workload *workloads;
	size_t n_workloads, cap_workloads;
	uint32_t *wl_slots;
	size_t wl_mask;
	uint64_t next_id;
	uint64_t seq; /* of the input being handled: stamped on every change */
	/* Min-heap of (due time, lease id): every live lease with a due time has an entry
	 * at the time due_of() gives now; entries of ended leases, and of times a lease
	 * has left behind, are dropped when they come to the top, and those of ended
	 * leases before live[] is compacted (which frees them). */
	struct srv_dues dues; /* key: the lease id; of.ptr: the lease */
	uint64_t counts[7];   /* live leases by state */
	uint32_t *occ;	      /* per host: devices taken in the hour being filled */
	uint64_t *occ_fill;   /* per host: the fill (fill_no) occ was read for */
	uint64_t fill_no;
	/* The hours index: open addressing with linear probing, at most half full;
	 * an entry is removed (the run after it shifted back) once it holds nothing. */
	struct hour_table hours;
	/* What spares a fill a look at every host of its seller, and at its buyer's leases
	 * that it cannot extend. by_buyer: the same table keyed by buyer and (seller,
	 * class, hour), each entry the buyer's scheduled leases of that class with that
	 * seller whose last hour it is (the leases a fill of the next hour may extend; see
	 * hour_entry). free_from: by (seller, class, hour), how many of the seller's first
	 * hosts (by_seller) have no free device of that class in that hour (another class,
	 * withdrawn, or all devices taken); a fill starts looking after them. Devices only
	 * get taken between two fills, except when a lease ends or a host comes (back):
	 * then free_stale is set, and the next fill forgets free_from first. */
	struct hour_table by_buyer;
	struct srv_idmap free_from;
	bool free_stale;
	struct lease **cand;
	size_t cap_cand;
	/* results of the current call */
	struct srv_lease_out out;
	size_t cap_updates, cap_cmds, cap_settles;
};

/* ---------- the host table's indexes ---------- */

static const char *name_text(const void *ctx, uint32_t host)
{
	const struct srv_leases *l = ctx;
	return l->hosts[host].name;
}

_Static_assert(SRV_HOST_DEVICES_MAX == 16, "device entries are host << 4 | device");

static const char *device_text(const void *ctx, uint32_t v)
{
	const struct srv_leases *l = ctx;
	return l->hosts[v >> 4].spec.devices[v & 15];
}

/* The first position in by_seller[0..n) of a host at or after (seller, host). */
static uint32_t seller_at(const struct srv_leases *l, uint32_t n, uint32_t seller, uint32_t host)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2, m = l->by_seller[mid];
		uint32_t s = l->hosts[m].seller;
		if (s < seller || (s == seller && m < host))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Adds host (its seller set) to by_seller, which holds n hosts. */
static void seller_add(struct srv_leases *l, uint32_t n, uint32_t host)
{
	uint32_t at = seller_at(l, n, l->hosts[host].seller, host);
	memmove(l->by_seller + at + 1, l->by_seller + at, (n - at) * sizeof(*l->by_seller));
	l->by_seller[at] = host;
}

/* Removes host (its seller still set) from by_seller, which holds n hosts. */
static void seller_remove(struct srv_leases *l, uint32_t n, uint32_t host)
{
	uint32_t at = seller_at(l, n, l->hosts[host].seller, host);
	assert(at < n && l->by_seller[at] == host);
	memmove(l->by_seller + at, l->by_seller + at + 1, (n - at - 1) * sizeof(*l->by_seller));
}

/* The positions [*first, return) of by_seller holding seller's hosts (two binary
 * searches: host indices are below NO_HOST). */
static uint32_t seller_range(const struct srv_leases *l, uint32_t seller, uint32_t *first)
{
	*first = seller_at(l, l->n_hosts, seller, 0);
	return seller_at(l, l->n_hosts, seller, NO_HOST);
}

void srv_lease_config_default(struct srv_lease_config *cfg)
{
	*cfg = (struct srv_lease_config){.hosts_max = 4096,
					 .hosts_per_seller_max = 1024,
					 .leases_max = 100000,
					 .leases_kept = 65536,
					 .start_lead_ms = 0,
					 .start_deadline_ms = 300000,
					 .period_ms = HOUR_MS,
					 .shift_ms = 0};
}

int srv_leases_create(const struct srv_lease_config *cfg, struct srv_leases **out)
{
	if (cfg->hosts_max == 0 || cfg->hosts_max > 1000000 ||
	    cfg->hosts_per_seller_max > 1000000 || cfg->leases_max == 0 ||
	    cfg->leases_max > 10000000 || cfg->leases_kept == 0 || cfg->leases_kept > 10000000 ||
	    cfg->start_lead_ms < 0 || cfg->start_deadline_ms < 0 || cfg->period_ms < 1 ||
	    cfg->period_ms > HOUR_MS * 24 || cfg->shift_ms < -HOUR_MS * 24 * 366 ||
	    cfg->shift_ms > HOUR_MS * 24 * 366)
		return SRV_LEASE_ARGS;
	struct srv_leases *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return SRV_LEASE_NOMEM;
	l->cfg = *cfg;
	l->hosts = calloc(cfg->hosts_max, sizeof(*l->hosts));
	l->on_host = calloc(cfg->hosts_max, sizeof(*l->on_host));
	l->occ = calloc(cfg->hosts_max, sizeof(*l->occ));
	l->occ_fill = calloc(cfg->hosts_max, sizeof(*l->occ_fill));
	l->named = calloc(cfg->hosts_max, sizeof(*l->named));
	l->by_seller = calloc(cfg->hosts_max, sizeof(*l->by_seller));
	l->ended = calloc(cfg->leases_kept, sizeof(*l->ended));
	l->ended_prev = calloc(cfg->leases_kept, sizeof(*l->ended_prev));
	l->next_id = 1;
	bool indexed = srv_tindex_init(&l->names, cfg->hosts_max, name_text, l) &&
		       srv_tindex_init(&l->devices, (uint64_t)cfg->hosts_max * SRV_HOST_DEVICES_MAX,
				       device_text, l);
	if (!l->hosts || !l->on_host || !l->occ || !l->occ_fill || !l->named || !l->by_seller ||
	    !l->ended || !l->ended_prev || !indexed) {
		srv_leases_destroy(l);
		return SRV_LEASE_NOMEM;
	}
	*out = l;
	return SRV_LEASE_OK;
}

void srv_leases_destroy(struct srv_leases *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n_live; i++) {
		free(l->live[i]->parts);
		free(l->live[i]);
	}
	for (size_t i = 0; i < l->n_fills; i++)
		free(l->fills[i]);
	for (uint32_t h = 0; l->on_host && h < l->cfg.hosts_max; h++)
		free(l->on_host[h].l);
	for (size_t i = 0; i < l->n_workloads; i++)
		free(l->workloads[i].text);
	free(l->workloads);
	free(l->wl_slots);
	free(l->hosts);
	free(l->on_host);
	free(l->occ);
	free(l->hours.e);
	free(l->by_buyer.e);
	srv_idmap_free(&l->free_from);
	free(l->occ_fill);
	srv_dues_free(&l->dues);
	free(l->named);
	free(l->by_seller);
	srv_tindex_free(&l->names);
	srv_tindex_free(&l->devices);
	free(l->cand);
	free(l->live);
	free(l->fills);
	free(l->ended);
	free(l->ended_prev);
	free(l->accts);
	free(l->out.updates);
	free(l->out.cmds);
	free(l->out.settles);
	free(l);
}

/* The core thread cannot go on without room for its results (as with every other
 * allocation of the core after start-up). */
static void *grow(void *p, size_t *cap, size_t need, size_t item)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap * 2 : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(p, n * item);
	if (q == NULL) {
		fputs("gridexd: the lease book is out of memory\n", stderr);
		abort();
	}
	*cap = n;
	return q;
}

/* ---------- the hours index ---------- */

static size_t hour_hash(uint32_t host, int64_t hour)
{
	uint64_t k = (uint64_t)hour ^ (uint64_t)host * UINT64_C(0x9e3779b97f4a7c15);
	k ^= k >> 31;
	k *= UINT64_C(0xbf58476d1ce4e5b9);
	k ^= k >> 29;
	return (size_t)k;
}

static struct hour_entry *hour_find(const struct hour_table *t, uint32_t host, int64_t hour)
{
	if (t->e == NULL)
		return NULL;
	for (size_t i = hour_hash(host, hour) & t->mask;; i = (i + 1) & t->mask) {
		struct hour_entry *e = &t->e[i];
		if (e->host == NO_HOST)
			return NULL;
		if (e->host == host && e->hour == hour)
			return e;
	}
}

static struct hour_entry *hour_place(struct hour_entry *t, size_t mask, const struct hour_entry *e)
{
	size_t i = hour_hash(e->host, e->hour) & mask;
	while (t[i].host != NO_HOST)
		i = (i + 1) & mask;
	t[i] = *e;
	return &t[i];
}

/* The entry of host in hour, made empty when there is none (never NULL). */
static struct hour_entry *hour_get(struct hour_table *ht, uint32_t host, int64_t hour)
{
	struct hour_entry *e = hour_find(ht, host, hour);
	if (e != NULL)
		return e;
	size_t cap = ht->e ? ht->mask + 1 : 0;
	if (2 * (ht->n + 1) > cap) {
		size_t n = cap ? cap * 2 : 256;
		struct hour_entry *t = malloc(n * sizeof(*t));
		if (t == NULL) {
			fputs("gridexd: the lease book is out of memory\n", stderr);
			abort();
		}
		for (size_t i = 0; i < n; i++)
			t[i].host = NO_HOST;
		for (size_t i = 0; i < cap; i++)
			if (ht->e[i].host != NO_HOST)
				hour_place(t, n - 1, &ht->e[i]);
		free(ht->e);
		ht->e = t;
		ht->mask = n - 1;
	}
	struct hour_entry fresh = {.hour = hour, .host = host};
	ht->n++;
	return hour_place(ht->e, ht->mask, &fresh);
}

/* Removes e when it holds nothing: the entries of its run that hash at or before the
 * gap move back into it, so that no lookup stops short of them. */
static void hour_drop_if_empty(struct hour_table *t, struct hour_entry *e)
{
	if (e->taken != 0 || e->first != NULL)
		return;
	size_t mask = t->mask, gap = (size_t)(e - t->e);
	t->e[gap].host = NO_HOST;
	t->n--;
	for (size_t j = (gap + 1) & mask; t->e[j].host != NO_HOST; j = (j + 1) & mask) {
		size_t home = hour_hash(t->e[j].host, t->e[j].hour) & mask;
		/* j's entry stays when its home lies after the gap (cyclically): nearer j */
		if (((j - home) & mask) < ((j - gap) & mask))
			continue;
		t->e[gap] = t->e[j];
		t->e[j].host = NO_HOST;
		gap = j;
	}
}

/* The product hours x covers (at most PARTS_MAX: extensions stop there, loads check it). */
static int64_t hours_covered(const struct lease *x)
{
	return (x->last_hour - x->first_hour) / HOUR_MS + 1;
}

/* by_buyer's hour of a lease on a host of seller and class cls whose last hour is hour:
 * its number of hours (below 2^27 for every product hour, 1970 to 9999), the class
 * above that and the seller above both, so one entry per buyer, seller, class and
 * hour for classes below 32. Others may share an entry (a class's bits reach the
 * seller's): those who read one check the seller, class and hour. */
static int64_t buyer_hour(uint32_t seller, uint32_t cls, int64_t hour)
{
	return (int64_t)(((uint64_t)seller << 32) ^ ((uint64_t)cls << 27) ^
			 (uint64_t)(hour / HOUR_MS));
}

static int by_id(const void *pa, const void *pb)
{
	uint64_t a = (*(struct lease *const *)pa)->v.id, b = (*(struct lease *const *)pb)->v.id;
	return a < b ? -1 : a > b;
}

static struct hour_entry *buyer_entry(struct srv_leases *l, const struct lease *x)
{
	const struct srv_host_view *h = &l->hosts[x->v.host];
	return hour_get(&l->by_buyer, x->v.buyer, buyer_hour(h->seller, h->cls, x->last_hour));
}

/* x, scheduled, joins the end of by_buyer's list for its last hour. */
static void buyer_add(struct srv_leases *l, struct lease *x)
{
	struct hour_entry *b = buyer_entry(l, x);
	x->b_prev = b->last;
	x->b_next = NULL;
	if (b->last == NULL)
		b->first = x;
	else
		b->last->b_next = x;
	if (b->last != NULL && b->last->v.id > x->v.id)
		b->unsorted = 1;
	if (b->last == NULL || x->v.quantity < b->fewest)
		b->fewest = (uint16_t)x->v.quantity; /* SRV_HOST_DEVICES_MAX at most */
	b->last = x;
	x->listed = true;
}

/* x leaves by_buyer (if listed: see hour_entry). */
static void buyer_remove(struct srv_leases *l, struct lease *x)
{
	if (!x->listed)
		return;
	struct hour_entry *b = x->b_prev == NULL || x->b_next == NULL ? buyer_entry(l, x) : NULL;
	if (x->b_prev != NULL)
		x->b_prev->b_next = x->b_next;
	else if (b != NULL)
		b->first = x->b_next;
	if (x->b_next != NULL)
		x->b_next->b_prev = x->b_prev;
	else if (b != NULL)
		b->last = x->b_prev;
	x->b_prev = x->b_next = NULL;
	x->listed = false;
	if (b != NULL && b->first == NULL) {
		b->unsorted = b->fewest = 0; /* an entry that holds nothing */
		hour_drop_if_empty(&l->by_buyer, b);
	}
}

/* b's list in id order again. */
static void buyer_sort(struct srv_leases *l, struct hour_entry *b)
{
	size_t n = 0;
	for (struct lease *x = b->first; x != NULL; x = x->b_next) {
		l->cand = grow(l->cand, &l->cap_cand, n + 1, sizeof(*l->cand));
		l->cand[n++] = x;
	}
	qsort(l->cand, n, sizeof(*l->cand), by_id);
	for (size_t k = 0; k < n; k++) {
		l->cand[k]->b_prev = k > 0 ? l->cand[k - 1] : NULL;
		l->cand[k]->b_next = k + 1 < n ? l->cand[k + 1] : NULL;
	}
	b->first = n > 0 ? l->cand[0] : NULL;
	b->last = n > 0 ? l->cand[n - 1] : NULL;
	b->unsorted = 0;
}

/* x's devices are taken in its last hour, which it ends with; a scheduled x is listed
 * in by_buyer under that hour. */
static void hours_add_last(struct srv_leases *l, struct lease *x)
{
	struct hour_entry *e = hour_get(&l->hours, x->v.host, x->last_hour);
	e->taken |= x->v.devmask;
	if (x->v.state == SRV_LEASE_SCHEDULED)
		buyer_add(l, x);
}

/* x's devices are free again in every hour it covered. */
static void hours_remove(struct srv_leases *l, struct lease *x)
{
	l->free_stale = true;
	buyer_remove(l, x);
	int64_t n = hours_covered(x);
	for (int64_t k = 0; k < n; k++) {
		struct hour_entry *e = hour_get(&l->hours, x->v.host, x->first_hour + k * HOUR_MS);
		e->taken &= ~x->v.devmask;
		hour_drop_if_empty(&l->hours, e);
	}
}

/* While loading: x's devices taken in every hour it covers, or false when another lease
 * holds one of them in one of those hours. */
static bool hours_load(struct srv_leases *l, struct lease *x)
{
	int64_t n = hours_covered(x);
	for (int64_t k = 0; k < n; k++) {
		struct hour_entry *e = hour_get(&l->hours, x->v.host, x->first_hour + k * HOUR_MS);
		if ((e->taken & x->v.devmask) != 0)
			return false;
		if (k + 1 < n)
			e->taken |= x->v.devmask;
	}
	hours_add_last(l, x);
	return true;
}

void srv_leases_set_seq(struct srv_leases *l, uint64_t seq)
{
	l->seq = seq;
}

void srv_leases_out_reset(struct srv_leases *l)
{
	l->out.n_updates = l->out.n_cmds = l->out.n_settles = 0;
}

const struct srv_lease_out *srv_leases_out(const struct srv_leases *l)
{
	return &l->out;
}

/* ---------- hosts and workloads ---------- */

static bool same_spec(const struct srv_host_spec *a, const struct srv_host_spec *b)
{
	if (strcmp(a->vendor, b->vendor) != 0 || a->n_devices != b->n_devices)
		return false;
	for (uint32_t i = 0; i < a->n_devices; i++)
		if (strcmp(a->devices[i], b->devices[i]) != 0)
			return false;
	return true;
}

uint32_t srv_leases_host_named(const struct srv_leases *l, const char *name)
{
	return srv_tindex_get(&l->names, name);
}

/* A host holds its devices while it is in service, and while it is withdrawn but live
 * leases still run on them; the device index has exactly the held devices. */
static bool holds(const struct srv_leases *l, uint32_t h)
{
	return !l->hosts[h].withdrawn || l->on_host[h].n > 0;
}

/* Whether a device of spec is held by a host other than self. */
static bool devices_taken(const struct srv_leases *l, const struct srv_host_spec *spec,
			  uint32_t self)
{
	for (uint32_t i = 0; i < spec->n_devices; i++) {
		uint32_t v = srv_tindex_get(&l->devices, spec->devices[i]);
		if (v != NO_HOST && v >> 4 != self)
			return true;
	}
	return false;
}

static void hold_devices(struct srv_leases *l, uint32_t h)
{
	for (uint32_t d = 0; d < l->hosts[h].spec.n_devices; d++)
		srv_tindex_put(&l->devices, h << 4 | d);
}

static void release_devices(struct srv_leases *l, uint32_t h)
{
	for (uint32_t d = 0; d < l->hosts[h].spec.n_devices; d++)
		srv_tindex_del(&l->devices, l->hosts[h].spec.devices[d]);
}

static bool can_forget(const struct srv_leases *l, uint32_t h)
{
	return l->hosts[h].withdrawn && l->on_host[h].n == 0 && l->named[h] == 0;
}

/* The lowest withdrawn host that nothing names any more, or NO_HOST. */
static uint32_t forgettable(const struct srv_leases *l)
{
	for (uint32_t h = 0; h < l->n_hosts; h++)
		if (can_forget(l, h))
			return h;
	return NO_HOST;
}

/* The place of a new host of seller, when the seller already has hosts_per_seller_max:
 * the lowest of its own withdrawn hosts that nothing names any more, or NO_HOST. */
static uint32_t sellers_forgettable(const struct srv_leases *l, uint32_t seller, bool *at_limit)
{
	uint32_t i, end = seller_range(l, seller, &i);
	*at_limit = l->cfg.hosts_per_seller_max != 0 && end - i >= l->cfg.hosts_per_seller_max;
	for (; *at_limit && i < end; i++) /* in index order */
		if (can_forget(l, l->by_seller[i]))
			return l->by_seller[i];
	return NO_HOST;
}

/* Registers a host, or (withdrawn: a snapshot's withdrawn host) adds it out of service. */
static int host_put(struct srv_leases *l, uint32_t seller, uint32_t cls, const char *name,
		    const struct srv_host_spec *spec, bool withdrawn, uint32_t *host, bool *added)
{
	*added = false;
	l->free_stale = true; /* hosts may come, come back or move in by_seller */
	if (seller == 0 || name[0] == '\0' || strlen(name) > SRV_ACCOUNT_NAME_BYTES_MAX ||
	    spec->n_devices == 0 || spec->n_devices > SRV_HOST_DEVICES_MAX)
		return SRV_LEASE_ARGS;
	for (uint32_t i = 0; i < spec->n_devices; i++) /* requests are checked; snapshots too */
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(spec->devices[i], spec->devices[j]) == 0)
				return SRV_LEASE_ARGS;
	uint32_t h = srv_leases_host_named(l, name);
	if (h != NO_HOST) {
		struct srv_host_view *x = &l->hosts[h];
		if (withdrawn || x->seller != seller || x->cls != cls || !same_spec(&x->spec, spec))
			return SRV_LEASE_EXISTS;
		*host = h;
		if (!x->withdrawn)
			return SRV_LEASE_OK;
		if (devices_taken(l, spec, h))
			return SRV_LEASE_EXISTS;
		x->withdrawn = false; /* back in service */
		l->n_withdrawn--;
		hold_devices(l, h);
		*added = true;
		return SRV_LEASE_OK;
	}
	if (!withdrawn && devices_taken(l, spec, NO_HOST))
		return SRV_LEASE_EXISTS;
	/* A seller at hosts_per_seller_max takes the place of one of its own withdrawn
	 * hosts; others take the next place, or any withdrawn host's when the table is
	 * full. */
	bool at_limit, fresh = false;
	h = sellers_forgettable(l, seller, &at_limit);
	if (at_limit && (withdrawn || h == NO_HOST))
		return SRV_LEASE_SELLER_FULL;
	if (!at_limit && l->n_hosts < l->cfg.hosts_max) {
		h = l->n_hosts++;
		fresh = true;
	} else if (!at_limit && (withdrawn || (h = forgettable(l)) == NO_HOST)) {
		return SRV_LEASE_FULL;
	}
	if (!fresh) {
		l->n_withdrawn--; /* the withdrawn host whose place it takes (holding nothing) */
		srv_tindex_del(&l->names, l->hosts[h].name);
		seller_remove(l, l->n_hosts, h);
	}
	*host = h;
	struct srv_host_view *x = &l->hosts[h];
	x->seller = seller;
	seller_add(l, l->n_hosts - 1, h);
	x->cls = cls;
	snprintf(x->name, sizeof(x->name), "%s", name);
	x->spec = *spec;
	x->withdrawn = withdrawn;
	l->n_withdrawn += withdrawn;
	srv_tindex_put(&l->names, h);
	if (!withdrawn)
		hold_devices(l, h);
	*added = !withdrawn;
	return SRV_LEASE_OK;
}

int srv_leases_add_host(struct srv_leases *l, uint32_t seller, uint32_t cls, const char *name,
			const struct srv_host_spec *spec, uint32_t *host, bool *added)
{
	return host_put(l, seller, cls, name, spec, false, host, added);
}

int srv_leases_withdraw_host(struct srv_leases *l, uint32_t by, const char *name, uint32_t *host,
			     bool *withdrawn)
{
	*withdrawn = false;
	uint32_t h = srv_leases_host_named(l, name);
	if (h == NO_HOST || (by != 0 && l->hosts[h].seller != by))
		return SRV_LEASE_ARGS;
	*host = h;
	*withdrawn = !l->hosts[h].withdrawn;
	l->n_withdrawn += *withdrawn;
	l->hosts[h].withdrawn = true;
	if (*withdrawn && !holds(l, h))
		release_devices(l, h);
	return SRV_LEASE_OK;
}

const struct srv_host_view *srv_leases_host(const struct srv_leases *l, uint32_t host)
{
	return host < l->n_hosts ? &l->hosts[host] : NULL;
}

uint32_t srv_leases_host_count(const struct srv_leases *l)
{
	return l->n_hosts;
}

size_t srv_leases_hosts_of(const struct srv_leases *l, uint32_t seller, uint64_t cursor,
			   uint32_t *out, uint64_t *cursors, size_t max)
{
	/* A host's cursor is its index + 1: the rows after it are those at higher indices. */
	uint32_t from = cursor < l->n_hosts ? (uint32_t)cursor : l->n_hosts;
	size_t n = 0;
	if (seller == 0) {
		for (uint32_t h = from; h < l->n_hosts && n < max; h++) {
			cursors[n] = (uint64_t)h + 1;
			out[n++] = h;
		}
		return n;
	}
	uint32_t end = seller_at(l, l->n_hosts, seller, NO_HOST);
	for (uint32_t i = seller_at(l, end, seller, from); i < end && n < max; i++) {
		cursors[n] = (uint64_t)l->by_seller[i] + 1;
		out[n++] = l->by_seller[i];
	}
	return n;
}

uint32_t srv_leases_host_live(const struct srv_leases *l, uint32_t host)
{
	return host < l->n_hosts ? l->on_host[host].n : 0;
}

uint32_t srv_leases_withdrawn_count(const struct srv_leases *l)
{
	return l->n_withdrawn;
}

/* ---------- results ---------- */

static void view_of(const struct lease *x, struct srv_lease_view *v)
{
	*v = x->v;
	v->n_fills = 0;
	for (uint32_t i = 0; i < x->n_parts && v->n_fills < SRV_LEASE_VIEW_FILLS; i++) {
		uint64_t id = (uint64_t)x->parts[i].fill->f.fill_id;
		if (v->n_fills == 0 || v->fill_ids[v->n_fills - 1] != id)
			v->fill_ids[v->n_fills++] = id;
	}
}

static void update(struct srv_leases *l, const struct srv_lease_view *v)
{
	l->out.updates = grow(l->out.updates, &l->cap_updates, l->out.n_updates + 1,
			      sizeof(*l->out.updates));
	l->out.updates[l->out.n_updates++] = *v;
}

static void command(struct srv_leases *l, uint8_t kind, const struct srv_lease_view *v)
{
	l->out.cmds = grow(l->out.cmds, &l->cap_cmds, l->out.n_cmds + 1, sizeof(*l->out.cmds));
	l->out.cmds[l->out.n_cmds++] = (struct srv_hook_cmd){.kind = kind, .lease = *v};
}

/* The whole of a fill in GPU-ms (checked: seconds when ms would overflow). */
static void fill_total(const struct srv_leases *l, const struct ofill *o, int64_t *used,
		       int64_t *total)
{
	if (__builtin_mul_overflow(o->f.qty, l->cfg.period_ms, total)) {
		*total = o->f.qty * (l->cfg.period_ms / 1000 > 0 ? l->cfg.period_ms / 1000 : 1);
		*used = o->used / 1000;
	} else {
		*used = o->used;
	}
	if (*used > *total)
		*used = *total;
}

/* Drops the holes (settled fills) of fills[], keeping the order. */
static void compact_fills(struct srv_leases *l)
{
	size_t k = 0;
	for (size_t i = 0; i < l->n_fills; i++)
		if (l->fills[i]) {
			l->fills[k] = l->fills[i];
			l->fills[k]->slot = k;
			k++;
		}
	l->n_fills = k;
}

static struct ofill *fill_new(struct srv_leases *l, const struct ledger_fill *f)
{
	struct ofill *o = calloc(1, sizeof(*o));
	if (o == NULL) {
		fputs("gridexd: the lease book is out of memory\n", stderr);
		abort();
	}
	if (l->n_fills == l->cap_fills && l->n_fills > 2 * l->n_open)
		compact_fills(l);
	l->fills = grow(l->fills, &l->cap_fills, l->n_fills + 1, sizeof(*l->fills));
	*o = (struct ofill){.f = *f, .slot = l->n_fills};
	l->fills[l->n_fills++] = o;
	l->n_open++;
	return o;
}

/* The fill's escrow ends: its settlement, and it leaves the table. */
static void settle(struct srv_leases *l, struct ofill *o)
{
	struct srv_settlement s = {.fill = o->f, .lease_id = (int64_t)o->lease};
	fill_total(l, o, &s.used, &s.total);
	l->out.settles = grow(l->out.settles, &l->cap_settles, l->out.n_settles + 1,
			      sizeof(*l->out.settles));
	l->out.settles[l->out.n_settles++] = s;
	l->fills[o->slot] = NULL;
	l->n_open--;
	free(o);
}

/* ---------- lifecycle ---------- */

static int64_t due_of(const struct srv_leases *l, const struct lease *x)
{
	switch (x->v.state) {
	case SRV_LEASE_SCHEDULED:
		return x->v.start_ms - l->cfg.start_lead_ms;
	case SRV_LEASE_STARTING:
		return x->v.start_ms > INT64_MAX - l->cfg.start_deadline_ms
			       ? INT64_MAX
			       : x->v.start_ms + l->cfg.start_deadline_ms;
	case SRV_LEASE_RUNNING:
		return x->v.end_ms;
	default:
		return NONE_DUE;
	}
}

/* x is due at due_of(x) (called whenever that changes). */
static void due_push(struct srv_leases *l, const struct lease *x)
{
	struct srv_due d = {.at = due_of(l, x), .key = x->v.id, .of.ptr = (struct lease *)x};
	if (d.at != NONE_DUE && !srv_dues_push(&l->dues, d)) {
		fputs("gridexd: the lease book is out of memory\n", stderr);
		abort();
	}
}

static void set_state(struct srv_leases *l, struct lease *x, uint8_t state)
{
	l->counts[x->v.state]--;
	x->v.state = state;
	l->counts[state]++;
}

/* ---------- leases by account ---------- */

static size_t acct_home(const struct srv_leases *l, uint32_t account)
{
	return (size_t)((account * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & l->acct_mask;
}

static const struct acct *acct_find(const struct srv_leases *l, uint32_t account)
{
	if (l->accts == NULL || account == 0)
		return NULL;
	for (size_t i = acct_home(l, account);; i = (i + 1) & l->acct_mask) {
		if (l->accts[i].account == account)
			return &l->accts[i];
		if (l->accts[i].account == 0)
			return NULL;
	}
}

/* account's entry, made empty when it has none (account > 0). */
static struct acct *acct_get(struct srv_leases *l, uint32_t account)
{
	const struct acct *found = acct_find(l, account);
	if (found != NULL)
		return (struct acct *)found;
	size_t cap = l->accts ? l->acct_mask + 1 : 0;
	if (2 * (l->n_accts + 1) > cap) {
		size_t n = cap ? 2 * cap : 256;
		struct acct *old = l->accts, *t = calloc(n, sizeof(*t));
		if (t == NULL) {
			fputs("gridexd: the lease book is out of memory\n", stderr);
			abort();
		}
		l->accts = t;
		l->acct_mask = n - 1;
		for (size_t i = 0; i < cap; i++)
			if (old[i].account != 0) {
				size_t j = acct_home(l, old[i].account);
				while (t[j].account != 0)
					j = (j + 1) & l->acct_mask;
				t[j] = old[i];
			}
		free(old);
	}
	size_t j = acct_home(l, account);
	while (l->accts[j].account != 0)
		j = (j + 1) & l->acct_mask;
	l->accts[j] = (struct acct){.account = account};
	l->n_accts++;
	return &l->accts[j];
}

/* Which of a lease's lists is account's: 0 as its buyer, 1 as its seller. */
static int role_of_view(const struct srv_lease_view *v, uint32_t account)
{
	return v->buyer == account ? 0 : 1;
}

static int role_of(const struct lease *x, uint32_t account)
{
	return role_of_view(&x->v, account);
}

/* Whether account has its own list of a lease's (role r's: see struct lease): not a
 * seller's who is also the buyer, nor account 0 (which fills and snapshots never
 * name: 0 marks an empty slot). */
static bool listed_for(const struct srv_lease_view *v, int r)
{
	uint32_t account = r ? v->seller : v->buyer;
	return account != 0 && (r == 0 || v->seller != v->buyer);
}

/* x, the newest lease, goes first in its buyer's and its seller's lists. */
static void acct_add_live(struct srv_leases *l, struct lease *x)
{
	for (int r = 0; r < 2; r++) {
		if (!listed_for(&x->v, r))
			continue;
		struct acct *a = acct_get(l, r ? x->v.seller : x->v.buyer);
		x->a_prev[r] = NULL;
		x->a_next[r] = a->live;
		if (a->live != NULL)
			a->live->a_prev[role_of(a->live, a->account)] = x;
		a->live = x;
	}
}

/* x, ended, leaves its buyer's and its seller's lists. */
static void acct_remove_live(struct srv_leases *l, struct lease *x)
{
	for (int r = 0; r < 2; r++) {
		if (!listed_for(&x->v, r))
			continue;
		uint32_t account = r ? x->v.seller : x->v.buyer;
		struct lease *prev = x->a_prev[r], *next = x->a_next[r];
		if (prev != NULL)
			prev->a_next[role_of(prev, account)] = next;
		else
			acct_get(l, account)->live = next;
		if (next != NULL)
			next->a_prev[role_of(next, account)] = prev;
		x->a_prev[r] = x->a_next[r] = NULL;
	}
}

/* The ended lease numbered number (in the ring) goes first in its buyer's and its
 * seller's lists of ended leases. */
static void acct_add_ended(struct srv_leases *l, uint64_t number)
{
	const struct srv_lease_view *v = &l->ended[number % l->cfg.leases_kept];
	uint64_t *prev = l->ended_prev[number % l->cfg.leases_kept];
	prev[0] = prev[1] = 0;
	for (int r = 0; r < 2; r++) {
		if (!listed_for(v, r))
			continue;
		struct acct *a = acct_get(l, r ? v->seller : v->buyer);
		prev[r] = a->ended;
		a->ended = number + 1;
	}
}

/* The ring of ended leases that queries show. */
static void keep_ended(struct srv_leases *l, const struct srv_lease_view *v)
{
	struct srv_lease_view *slot = &l->ended[l->n_ended % l->cfg.leases_kept];
	if (l->n_ended >= l->cfg.leases_kept && slot->host != NO_HOST)
		l->named[slot->host]--;
	*slot = *v;
	if (v->host != NO_HOST)
		l->named[v->host]++;
	acct_add_ended(l, l->n_ended);
	l->n_ended++;
}

static void host_add(struct srv_leases *l, struct lease *x)
{
	struct host_leases *h = &l->on_host[x->v.host];
	size_t cap = h->cap;
	h->l = grow(h->l, &cap, (size_t)h->n + 1, sizeof(*h->l));
	h->cap = (uint32_t)cap;
	x->host_slot = h->n;
	h->l[h->n++] = x;
}

static void host_del(struct srv_leases *l, struct lease *x)
{
	struct host_leases *h = &l->on_host[x->v.host];
	h->l[x->host_slot] = h->l[--h->n];
	h->l[x->host_slot]->host_slot = x->host_slot;
	if (!holds(l, x->v.host)) /* a withdrawn host's last lease: its devices are free */
		release_devices(l, x->v.host);
}

/* The index of live lease id, or SIZE_MAX (live[] is in id order). */
static size_t live_find(const struct srv_leases *l, uint64_t id)
{
	size_t lo = 0, hi = l->n_live;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t at = l->live[mid]->v.id;
		if (at == id)
			return l->live[mid]->gone ? SIZE_MAX : mid;
		if (at < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SIZE_MAX;
}

/*
 * Ends live lease i at now_ms in state `state`: each of its hours is delivered
 * for the time it ran within that hour's window, its fills settle once none of
 * their parts is open, the hook is told to stop (unless it never started), and
 * the lease leaves the live table.
 */
static void end_lease(struct srv_leases *l, struct lease *x, uint8_t state, const char *reason,
		      int64_t now_ms)
{
	bool started = x->v.state != SRV_LEASE_SCHEDULED;
	l->counts[x->v.state]--; /* counts hold live leases only */
	x->v.state = state;
	snprintf(x->v.reason, sizeof(x->v.reason), "%s", reason);
	x->v.ended_ms = now_ms;
	x->v.seq = l->seq;
	struct srv_lease_view v;
	view_of(x, &v); /* before its fills may settle and go */
	int64_t r0 = x->v.running_ms, r1 = now_ms;
	int64_t ndev = x->v.quantity;
	for (uint32_t p = 0; p < x->n_parts; p++) {
		const struct part *pt = &x->parts[p];
		struct ofill *o = pt->fill;
		int64_t from = r0 > pt->ws ? r0 : pt->ws, to = r1 < pt->we ? r1 : pt->we;
		if (r0 != 0 && to > from)
			o->used += (to - from) * ndev;
		o->lease = x->v.id;
		if (--o->open == 0)
			settle(l, o);
	}
	update(l, &v);
	if (started)
		command(l, SRV_HCMD_STOP, &v);
	keep_ended(l, &v);
	hours_remove(l, x);
	host_del(l, x);
	acct_remove_live(l, x);
	free(x->parts);
	x->parts = NULL;
	x->n_parts = x->cap_parts = 0;
	x->gone = true;
	l->n_active--;
}

/* Frees the gone leases once they are half of live[] (amortized: each is moved once). */
static void compact_live(struct srv_leases *l)
{
	if (l->n_live <= 64 || l->n_live <= 2 * (size_t)l->n_active)
		return;
	/* First the heap loses its entries of ended leases (they point to them), and is
	 * made a heap again from the bottom up. */
	size_t k = 0;
	for (size_t i = 0; i < l->dues.n; i++)
		if (!((struct lease *)l->dues.e[i].of.ptr)->gone)
			l->dues.e[k++] = l->dues.e[i];
	l->dues.n = k;
	srv_dues_heapify(&l->dues);
	k = 0;
	for (size_t i = 0; i < l->n_live; i++) {
		if (l->live[i]->gone)
			free(l->live[i]);
		else
			l->live[k++] = l->live[i];
	}
	l->n_live = k;
}

void srv_leases_tick(struct srv_leases *l, int64_t now_ms)
{
	if (l->dues.n == 0 || l->dues.e[0].at > now_ms)
		return;
	/* The leases due, in id order (as their updates and commands go out). The heap
	 * gives those due at one time in id order (its key), so a step sorts them only
	 * when they were due at several times (a late step). */
	size_t n = 0;
	bool in_order = true;
	while (l->dues.n > 0 && l->dues.e[0].at <= now_ms) {
		struct srv_due d = srv_dues_pop(&l->dues);
		struct lease *x = d.of.ptr;
		if (x->gone || due_of(l, x) != d.at)
			continue; /* ended, or due at another time now */
		l->cand = grow(l->cand, &l->cap_cand, n + 1, sizeof(*l->cand));
		in_order = in_order && (n == 0 || l->cand[n - 1]->v.id < x->v.id);
		l->cand[n++] = x;
	}
	if (!in_order)
		qsort(l->cand, n, sizeof(*l->cand), by_id);
	for (size_t k = 0; k < n; k++) {
		struct lease *x = l->cand[k];
		struct srv_lease_view v;
		switch (x->v.state) {
		case SRV_LEASE_SCHEDULED:
			set_state(l, x, SRV_LEASE_STARTING);
			x->v.seq = l->seq;
			view_of(x, &v);
			update(l, &v);
			command(l, SRV_HCMD_START, &v);
			due_push(l, x); /* its deadline, checked on a later tick */
			break;
		case SRV_LEASE_STARTING:
			end_lease(l, x, SRV_LEASE_FAILED, "not_running_in_time", now_ms);
			break;
		case SRV_LEASE_RUNNING:
			end_lease(l, x, SRV_LEASE_COMPLETED, "", x->v.end_ms);
			break;
		default: /* ended already: due twice at this time (a deadline's stale entry) */
			break;
		}
	}
	compact_live(l);
}

void srv_leases_event(struct srv_leases *l, uint64_t id, uint8_t kind, const char *code,
		      int64_t now_ms)
{
	size_t i = live_find(l, id);
	if (i == SIZE_MAX)
		return;
	struct lease *x = l->live[i];
	if (kind == SRV_LEV_STARTED && x->v.state == SRV_LEASE_STARTING) {
		set_state(l, x, SRV_LEASE_RUNNING);
		x->v.running_ms = now_ms;
		x->v.seq = l->seq;
		struct srv_lease_view v;
		view_of(x, &v);
		update(l, &v);
		due_push(l, x);
	} else if (kind == SRV_LEV_FAILED && x->v.state == SRV_LEASE_STARTING) {
		end_lease(l, x, SRV_LEASE_FAILED, code[0] ? code : "start_failed", now_ms);
	} else if (kind == SRV_LEV_STOPPED && x->v.state == SRV_LEASE_RUNNING &&
		   now_ms < x->v.end_ms) {
		end_lease(l, x, SRV_LEASE_FAILED, code[0] ? code : "stopped_early", now_ms);
	}
	compact_live(l);
}

void srv_leases_resume(struct srv_leases *l)
{
	for (size_t i = 0; i < l->n_live; i++) {
		const struct lease *x = l->live[i];
		if (!x->gone &&
		    (x->v.state == SRV_LEASE_STARTING || x->v.state == SRV_LEASE_RUNNING)) {
			struct srv_lease_view v;
			view_of(x, &v);
			command(l, SRV_HCMD_START, &v);
		}
	}
}

/* ---------- fills ---------- */

static void add_part(struct lease *x, struct ofill *o, int64_t ws, int64_t we)
{
	size_t cap = x->cap_parts;
	x->parts = grow(x->parts, &cap, (size_t)x->n_parts + 1, sizeof(*x->parts));
	x->cap_parts = (uint32_t)cap;
	x->parts[x->n_parts++] = (struct part){.fill = o, .ws = ws, .we = we};
	o->open++;
}

static uint32_t lowest_free(uint32_t n_devices, uint32_t taken, uint32_t want, uint32_t *mask)
{
	uint32_t got = 0;
	*mask = 0;
	for (uint32_t d = 0; d < n_devices && got < want; d++)
		if (!(taken & (UINT32_C(1) << d))) {
			*mask |= UINT32_C(1) << d;
			got++;
		}
	return got;
}

/* A new lease of the fill's parties: qty GPUs of class cls for the window [ws, we). */
static struct srv_lease_view new_view(struct srv_leases *l, const struct ledger_fill *f,
				      uint32_t cls, int64_t qty, int64_t ws, int64_t we,
				      uint8_t state)
{
	return (struct srv_lease_view){.id = l->next_id++,
				       .buyer = f->buyer,
				       .seller = f->seller,
				       .host = NO_HOST,
				       .cls = cls,
				       .quantity = qty,
				       .start_ms = ws,
				       .end_ms = we,
				       .state = state,
				       .seq = l->seq};
}

static struct lease *lease_new(struct srv_leases *l)
{
	struct lease *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		fputs("gridexd: the lease book is out of memory\n", stderr);
		abort();
	}
	if (l->n_live == l->cap_live)
		compact_live(l);
	l->live = grow(l->live, &l->cap_live, l->n_live + 1, sizeof(*l->live));
	l->live[l->n_live++] = x;
	l->n_active++;
	return x;
}

/* The devices of host taken in the hour of the fill being made (fill_no). */
static uint32_t *occ_of(struct srv_leases *l, uint32_t host, int64_t hour_ms)
{
	if (l->occ_fill[host] != l->fill_no) {
		const struct hour_entry *e = hour_find(&l->hours, host, hour_ms);
		l->occ[host] = e ? e->taken : 0;
		l->occ_fill[host] = l->fill_no;
	}
	return &l->occ[host];
}

#define FREE_FROM_MAX 65536 /* entries of free_from (about 2 MB at most) */

/* free_from's key of (seller, cls, hour), or 0 when they do not fit one. */
static uint64_t free_key(uint32_t seller, uint32_t cls, int64_t hour_ms)
{
	int64_t n = hour_ms / HOUR_MS;
	if (cls > 0xff || n <= 0 || n > 0xffffff || hour_ms % HOUR_MS != 0)
		return 0;
	return (uint64_t)seller << 32 | (uint64_t)cls << 24 | (uint64_t)n;
}

/* Whether host has no device free for a lease of class cls in the hour being filled. */
static bool host_full(struct srv_leases *l, uint32_t host, uint32_t cls, int64_t hour_ms)
{
	const struct srv_host_view *v = &l->hosts[host];
	if (v->cls != cls || v->withdrawn)
		return true;
	uint32_t all = (UINT32_C(1) << v->spec.n_devices) - 1;
	return (*occ_of(l, host, hour_ms) & all) == all;
}

void srv_leases_fill(struct srv_leases *l, const struct ledger_fill *f, uint32_t cls,
		     int64_t hour_ms, int64_t now_ms)
{
	int64_t ws = hour_ms + l->cfg.shift_ms, we = ws + l->cfg.period_ms;
	struct ofill *o = fill_new(l, f);
	int64_t left = f->qty;
	l->fill_no++;
	if (l->free_stale) {
		srv_idmap_free(&l->free_from);
		l->free_stale = false;
	}
	/* The buyer's scheduled leases on the seller's hosts of this class that end with
	 * the hour before (a host's class does not change while it has leases), oldest
	 * first, extended while the fill has GPUs left (unless one already covers
	 * PARTS_MAX hours). The walk stops with the fill: a lease it extends moves to the
	 * list of this hour (or, were the two hours to share an entry, to its end, where
	 * the check of last_hour passes over it). */
	int64_t before = buyer_hour(f->seller, cls, hour_ms - HOUR_MS);
	struct hour_entry *be = hour_find(&l->by_buyer, f->buyer, before);
	if (be != NULL && left < be->fewest)
		be = NULL; /* each lease listed has more GPUs than the fill */
	if (be != NULL && be->unsorted)
		buyer_sort(l, be);
	struct lease *c = be ? be->first : NULL, *next;
	int64_t fewest = INT64_MAX; /* of the leases read (those extended included) */
	for (; c != NULL && left > 0; c = next) {
		next = c->b_next; /* be is not read again: extending c may move entries */
		if (c->v.state != SRV_LEASE_SCHEDULED) {
			buyer_remove(l, c); /* started since it was listed */
			continue;
		}
		fewest = c->v.quantity < fewest ? c->v.quantity : fewest;
		const struct srv_host_view *h = &l->hosts[c->v.host];
		if (c->last_hour != hour_ms - HOUR_MS || h->seller != f->seller || h->cls != cls ||
		    h->withdrawn || c->n_parts >= PARTS_MAX)
			continue;
		uint32_t *occ = occ_of(l, c->v.host, hour_ms);
		if (c->v.quantity > left || (*occ & c->v.devmask) != 0)
			continue;
		*occ |= c->v.devmask;
		buyer_remove(l, c);
		c->last_hour = hour_ms;
		hours_add_last(l, c);
		c->v.end_ms = we;
		c->v.seq = l->seq;
		add_part(c, o, ws, we);
		left -= c->v.quantity;
		struct srv_lease_view v;
		view_of(c, &v);
		update(l, &v);
	}
	/* A walk to the end read every lease still listed, so the next fills of fewer GPUs
	 * than any of them need not. */
	if (c == NULL && fewest <= SRV_HOST_DEVICES_MAX &&
	    (be = hour_find(&l->by_buyer, f->buyer, before)) != NULL)
		be->fewest = (uint16_t)fewest;
	/* New leases, one per host with free devices, in the order of the table, after the
	 * hosts free_from says are full (and so are they still: devices were only taken
	 * since). */
	uint32_t first, end = seller_range(l, f->seller, &first);
	uint64_t key = free_key(f->seller, cls, hour_ms);
	uint32_t skip = key ? srv_idmap_get(&l->free_from, key) : UINT32_MAX;
	if (skip == UINT32_MAX || skip > end - first)
		skip = 0;
	bool full_so_far = true;
	for (uint32_t i = first + skip; i < end && left > 0 && l->n_active < l->cfg.leases_max;
	     i++) {
		uint32_t h = l->by_seller[i];
		const struct srv_host_view *host = &l->hosts[h];
		uint32_t mask = 0, got = 0;
		if (host->cls == cls && !host->withdrawn) {
			uint32_t want =
				left > SRV_HOST_DEVICES_MAX ? SRV_HOST_DEVICES_MAX : (uint32_t)left;
			got = lowest_free(host->spec.n_devices, *occ_of(l, h, hour_ms), want,
					  &mask);
		}
		if (got > 0) {
			l->occ[h] |= mask;
			struct lease *x = lease_new(l);
			x->first_hour = x->last_hour = hour_ms;
			x->v = new_view(l, f, cls, got, ws, we, SRV_LEASE_SCHEDULED);
			x->v.host = h;
			x->v.devmask = mask;
			acct_add_live(l, x);
			l->counts[SRV_LEASE_SCHEDULED]++;
			host_add(l, x);
			hours_add_last(l, x);
			add_part(x, o, ws, we);
			left -= got;
			struct srv_lease_view v;
			view_of(x, &v);
			update(l, &v);
			due_push(l, x);
		}
		full_so_far = full_so_far && host_full(l, h, cls, hour_ms);
		if (full_so_far)
			skip = i + 1 - first;
	}
	/* The map is kept to FREE_FROM_MAX entries (one per seller, class and hour filled
	 * since it was last forgotten); one out of memory only costs the next fills their
	 * look at these hosts. */
	if (key != 0 && l->free_from.n >= FREE_FROM_MAX &&
	    srv_idmap_get(&l->free_from, key) == UINT32_MAX)
		srv_idmap_free(&l->free_from);
	if (key != 0 && !srv_idmap_put(&l->free_from, key, skip))
		srv_idmap_del(&l->free_from, key);
	if (left > 0) {
		/* No devices for these GPUs: a lease that ends before it begins. */
		struct srv_lease_view v = new_view(l, f, cls, left, ws, we, SRV_LEASE_CANCELLED);
		v.ended_ms = now_ms;
		v.n_fills = 1;
		v.fill_ids[0] = (uint64_t)f->fill_id;
		snprintf(v.reason, sizeof(v.reason), "%s",
			 l->n_active == l->cfg.leases_max ? "lease_table_full"
							  : "not_enough_devices");
		update(l, &v);
		keep_ended(l, &v);
		o->lease = v.id;
	}
	if (o->open == 0)
		settle(l, o);
	/* A window that began already (a late fill) starts at once. */
	srv_leases_tick(l, now_ms);
}

/* ---------- queries ---------- */

/* The number of entries of live[] with an id below id (live[] is in id order). */
static size_t live_below(const struct srv_leases *l, uint64_t id)
{
	size_t lo = 0, hi = l->n_live;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->live[mid]->v.id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* An account's leases (not the operator's every one): its own lists. A cursor is the
 * client's, so a list is entered at the cursor's lease only when that lease is the
 * account's (and, for an ended one, still in the ring); otherwise the walk starts at
 * the list's head and passes over what is not below the cursor. */
static size_t leases_of_account(const struct srv_leases *l, uint32_t account, uint64_t cursor,
				struct srv_lease_view *out, uint64_t *cursors, size_t max)
{
	const struct acct *a = acct_find(l, account);
	size_t n = 0;
	if (a == NULL)
		return 0;
	uint64_t first = l->n_ended > l->cfg.leases_kept ? l->n_ended - l->cfg.leases_kept : 0;
	uint64_t e = a->ended; /* number + 1 of the next ended one to read */
	if (cursor & SRV_LEASE_CURSOR_ENDED) {
		uint64_t below = cursor & ~SRV_LEASE_CURSOR_ENDED;
		const struct srv_lease_view *v = &l->ended[below % l->cfg.leases_kept];
		if (below >= first && below < l->n_ended &&
		    (v->buyer == account || v->seller == account))
			e = l->ended_prev[below % l->cfg.leases_kept][role_of_view(v, account)];
		else
			while (e > first && e - 1 >= below)
				e = l->ended_prev[(e - 1) % l->cfg.leases_kept][role_of_view(
					&l->ended[(e - 1) % l->cfg.leases_kept], account)];
	} else {
		const struct lease *x = a->live;
		if (cursor != 0) {
			size_t i = live_find(l, cursor);
			const struct lease *c = i == SIZE_MAX ? NULL : l->live[i];
			if (c != NULL && (c->v.buyer == account || c->v.seller == account))
				x = c->a_next[role_of(c, account)];
			else
				while (x != NULL && x->v.id >= cursor)
					x = x->a_next[role_of(x, account)];
		}
		for (; x != NULL && n < max; x = x->a_next[role_of(x, account)]) {
			cursors[n] = x->v.id;
			view_of(x, &out[n++]);
		}
	}
	for (; e > first && n < max;) {
		const struct srv_lease_view *v = &l->ended[(e - 1) % l->cfg.leases_kept];
		cursors[n] = SRV_LEASE_CURSOR_ENDED | (e - 1);
		out[n++] = *v;
		e = l->ended_prev[(e - 1) % l->cfg.leases_kept][role_of_view(v, account)];
	}
	return n;
}

size_t srv_leases_of(const struct srv_leases *l, uint32_t account, uint64_t cursor,
		     struct srv_lease_view *out, uint64_t *cursors, size_t max)
{
	if (account != 0)
		return leases_of_account(l, account, cursor, out, cursors, max);
	size_t n = 0;
	/* Ended leases are walked down from number end - 1 (ended[number % leases_kept]). */
	uint64_t end = l->n_ended;
	if (cursor & SRV_LEASE_CURSOR_ENDED) {
		if ((cursor & ~SRV_LEASE_CURSOR_ENDED) < end)
			end = cursor & ~SRV_LEASE_CURSOR_ENDED;
	} else {
		for (size_t i = cursor ? live_below(l, cursor) : l->n_live; i-- > 0 && n < max;) {
			const struct lease *x = l->live[i];
			if (x->gone)
				continue;
			cursors[n] = x->v.id;
			view_of(x, &out[n++]);
		}
	}
	uint64_t first = l->n_ended > l->cfg.leases_kept ? l->n_ended - l->cfg.leases_kept : 0;
	for (uint64_t e = end; e > first && n < max; e--) {
		const struct srv_lease_view *v = &l->ended[(e - 1) % l->cfg.leases_kept];
		cursors[n] = SRV_LEASE_CURSOR_ENDED | (e - 1);
		out[n++] = *v;
	}
	return n;
}

void srv_leases_counts(const struct srv_leases *l, uint64_t counts[7])
{
	memcpy(counts, l->counts, sizeof(l->counts));
}

const char *srv_lease_state_name(uint8_t state)
{
	static const char *const names[] = {"unspecified", "scheduled",	      "starting", "running",
					    "completed",   "failed_delivery", "cancelled"};
	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "unknown";
}

/* ---------- workloads ---------- */

/* The slot of account's workload in wl_slots, or the empty one where it would go. Account
 * ids are the operator's, not chosen by participants: a multiplicative hash does. */
static size_t workload_slot(const struct srv_leases *l, uint32_t account)
{
	size_t h = (size_t)((account * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & l->wl_mask;
	while (l->wl_slots[h] != 0 && l->workloads[l->wl_slots[h] - 1].account != account)
		h = (h + 1) & l->wl_mask;
	return h;
}

/* Room for one more workload: in the array, and in the index (which doubles before it
 * is half full). */
static bool workload_room(struct srv_leases *l)
{
	if (l->n_workloads == l->cap_workloads) {
		size_t cap = l->cap_workloads ? 2 * l->cap_workloads : 64;
		struct workload *w = realloc(l->workloads, cap * sizeof(*w));
		if (w == NULL)
			return false;
		l->workloads = w;
		l->cap_workloads = cap;
	}
	size_t size = l->wl_slots ? l->wl_mask + 1 : 0;
	if (2 * (l->n_workloads + 1) <= size)
		return true;
	size = size ? 2 * size : 128;
	uint32_t *slots = calloc(size, sizeof(*slots));
	if (slots == NULL)
		return false;
	free(l->wl_slots);
	l->wl_slots = slots;
	l->wl_mask = size - 1;
	for (size_t i = 0; i < l->n_workloads; i++)
		l->wl_slots[workload_slot(l, l->workloads[i].account)] = (uint32_t)i + 1;
	return true;
}

int srv_leases_set_workload(struct srv_leases *l, uint32_t account, const char *text)
{
	size_t len = strlen(text);
	if (account == 0 || len == 0 || len > SRV_WORKLOAD_BYTES_MAX)
		return SRV_LEASE_ARGS;
	char *copy = strdup(text);
	if (copy == NULL)
		return SRV_LEASE_NOMEM;
	uint32_t at = l->wl_slots ? l->wl_slots[workload_slot(l, account)] : 0;
	if (at != 0) {
		free(l->workloads[at - 1].text);
		l->workloads[at - 1].text = copy;
		return SRV_LEASE_OK;
	}
	if (l->n_workloads >= UINT32_MAX - 1 || !workload_room(l)) {
		free(copy);
		return SRV_LEASE_NOMEM;
	}
	l->workloads[l->n_workloads] = (struct workload){.account = account, .text = copy};
	l->wl_slots[workload_slot(l, account)] = (uint32_t)++l->n_workloads;
	return SRV_LEASE_OK;
}

const char *srv_leases_workload(const struct srv_leases *l, uint32_t account)
{
	uint32_t at = l->wl_slots ? l->wl_slots[workload_slot(l, account)] : 0;
	return at ? l->workloads[at - 1].text : NULL;
}

/* ---------- snapshots ---------- */

static void put_str(struct srv_snap_w *w, const char *s)
{
	size_t len = strlen(s);
	srv_snap_u32(w, (uint32_t)len);
	srv_snap_put(w, s, len);
}

static void get_str(struct srv_snap_r *in, char *out, size_t max)
{
	uint32_t len = srv_snap_get_u32(in);
	if (len > max) {
		srv_snap_fail(in, "a text of the lease book is too long");
		len = 0;
	}
	srv_snap_get(in, out, len);
	out[len] = '\0';
	if (memchr(out, '\0', len) != NULL)
		srv_snap_fail(in, "a text of the lease book holds a NUL byte");
}

static void save_view(struct srv_snap_w *w, const struct srv_lease_view *v)
{
	srv_snap_u64(w, v->id);
	srv_snap_u32(w, v->buyer);
	srv_snap_u32(w, v->seller);
	srv_snap_u32(w, v->host);
	srv_snap_u32(w, v->cls);
	srv_snap_u32(w, v->devmask);
	srv_snap_i64(w, v->quantity);
	srv_snap_i64(w, v->start_ms);
	srv_snap_i64(w, v->end_ms);
	srv_snap_u8(w, v->state);
	put_str(w, v->reason);
	srv_snap_i64(w, v->running_ms);
	srv_snap_i64(w, v->ended_ms);
	srv_snap_u64(w, v->seq);
	srv_snap_u32(w, v->n_fills);
	for (uint32_t i = 0; i < v->n_fills; i++)
		srv_snap_u64(w, v->fill_ids[i]);
}

static void load_view(struct srv_snap_r *in, const struct srv_leases *l, struct srv_lease_view *v)
{
	memset(v, 0, sizeof(*v));
	v->id = srv_snap_get_u64(in);
	v->buyer = srv_snap_get_u32(in);
	v->seller = srv_snap_get_u32(in);
	v->host = srv_snap_get_u32(in);
	v->cls = srv_snap_get_u32(in);
	v->devmask = srv_snap_get_u32(in);
	v->quantity = srv_snap_get_i64(in);
	v->start_ms = srv_snap_get_i64(in);
	v->end_ms = srv_snap_get_i64(in);
	v->state = srv_snap_get_u8(in);
	get_str(in, v->reason, SRV_LEASE_REASON_BYTES - 1);
	v->running_ms = srv_snap_get_i64(in);
	v->ended_ms = srv_snap_get_i64(in);
	v->seq = srv_snap_get_u64(in);
	v->n_fills = srv_snap_get_count(in, 8, SRV_LEASE_VIEW_FILLS);
	for (uint32_t i = 0; i < v->n_fills; i++)
		v->fill_ids[i] = srv_snap_get_u64(in);
	if (in->error)
		return;
	bool hosted = v->host < l->n_hosts;
	uint32_t ndev = hosted ? l->hosts[v->host].spec.n_devices : 0;
	uint32_t all = ndev >= 32 ? UINT32_MAX : (UINT32_C(1) << ndev) - 1;
	if (v->id == 0 || v->id >= l->next_id || v->buyer == 0 || v->seller == 0 ||
	    v->state < SRV_LEASE_SCHEDULED || v->state > SRV_LEASE_CANCELLED || v->quantity < 1 ||
	    v->end_ms <= v->start_ms ||
	    (v->state == SRV_LEASE_CANCELLED
		     ? v->host != NO_HOST || v->devmask != 0
		     : !hosted || (v->devmask & ~all) != 0 ||
			       v->quantity != __builtin_popcount(v->devmask) ||
			       l->hosts[v->host].seller != v->seller ||
			       l->hosts[v->host].cls != v->cls))
		srv_snap_fail(in, "a lease in the snapshot does not agree with its host");
}

void srv_leases_save(const struct srv_leases *l, struct srv_snap_w *w)
{
	srv_snap_u64(w, l->next_id);
	srv_snap_u32(w, l->n_hosts);
	for (uint32_t h = 0; h < l->n_hosts; h++) {
		const struct srv_host_view *x = &l->hosts[h];
		srv_snap_u32(w, x->seller);
		srv_snap_u32(w, x->cls | (x->withdrawn ? HOST_WITHDRAWN : 0));
		put_str(w, x->name);
		put_str(w, x->spec.vendor);
		srv_snap_u32(w, x->spec.n_devices);
		for (uint32_t i = 0; i < x->spec.n_devices; i++)
			put_str(w, x->spec.devices[i]);
	}
	srv_snap_u32(w, (uint32_t)l->n_workloads);
	for (size_t i = 0; i < l->n_workloads; i++) {
		srv_snap_u32(w, l->workloads[i].account);
		put_str(w, l->workloads[i].text);
	}
	srv_snap_u32(w, (uint32_t)l->n_open);
	for (size_t i = 0; i < l->n_fills; i++) {
		const struct ofill *o = l->fills[i];
		if (o == NULL)
			continue;
		srv_snap_i64(w, o->f.fill_id);
		srv_snap_u32(w, o->f.buyer);
		srv_snap_u32(w, o->f.seller);
		srv_snap_u8(w, o->f.buyer_is_taker);
		srv_snap_i64(w, o->f.taker_order_id);
		srv_snap_i64(w, o->f.maker_order_id);
		srv_snap_i64(w, o->f.price);
		srv_snap_i64(w, o->f.qty);
		srv_snap_i64(w, o->used);
		srv_snap_u32(w, o->open);
		srv_snap_u64(w, o->lease);
	}
	srv_snap_u32(w, l->n_active);
	for (size_t i = 0; i < l->n_live; i++) {
		const struct lease *x = l->live[i];
		if (x->gone)
			continue;
		struct srv_lease_view v = x->v;
		v.n_fills = 0;
		save_view(w, &v);
		srv_snap_i64(w, x->first_hour);
		srv_snap_i64(w, x->last_hour);
		srv_snap_u32(w, x->n_parts);
		for (uint32_t p = 0; p < x->n_parts; p++) {
			srv_snap_u64(w, (uint64_t)x->parts[p].fill->f.fill_id);
			srv_snap_i64(w, x->parts[p].ws);
			srv_snap_i64(w, x->parts[p].we);
		}
	}
	uint64_t kept = l->n_ended < l->cfg.leases_kept ? l->n_ended : l->cfg.leases_kept;
	srv_snap_u64(w, l->n_ended);
	for (uint64_t i = l->n_ended - kept; i < l->n_ended; i++)
		save_view(w, &l->ended[i % l->cfg.leases_kept]);
}

/* An open fill by id, while loading (fills[] has no holes then, in id order). */
static struct ofill *fill_by_id(const struct srv_leases *l, uint64_t id)
{
	size_t lo = 0, hi = l->n_fills;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t at = (uint64_t)l->fills[mid]->f.fill_id;
		if (at == id)
			return l->fills[mid];
		if (at < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int srv_leases_load(struct srv_leases *l, struct srv_snap_r *in)
{
	l->next_id = srv_snap_get_u64(in);
	if (l->next_id == 0)
		srv_snap_fail(in, "the lease book's next id is 0");
	uint32_t n = srv_snap_get_count(in, 16, l->cfg.hosts_max);
	for (uint32_t h = 0; h < n && !in->error; h++) {
		struct srv_host_spec spec = {0};
		char name[SRV_ACCOUNT_NAME_BYTES_MAX + 1];
		uint32_t seller = srv_snap_get_u32(in), cls = srv_snap_get_u32(in);
		bool withdrawn = (cls & HOST_WITHDRAWN) != 0, added;
		uint32_t at;
		get_str(in, name, SRV_ACCOUNT_NAME_BYTES_MAX);
		get_str(in, spec.vendor, SRV_VENDOR_BYTES_MAX);
		spec.n_devices = srv_snap_get_count(in, 4, SRV_HOST_DEVICES_MAX);
		for (uint32_t i = 0; i < spec.n_devices; i++)
			get_str(in, spec.devices[i], SRV_DEVICE_BYTES_MAX);
		if (!in->error && (!srv_vendor_ok(spec.vendor) ||
				   host_put(l, seller, cls & ~HOST_WITHDRAWN, name, &spec,
					    withdrawn, &at, &added) != SRV_LEASE_OK ||
				   l->n_hosts != h + 1))
			srv_snap_fail(in, "a host in the snapshot is invalid or repeated");
	}
	n = srv_snap_get_count(in, 8, UINT32_MAX);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		char text[SRV_WORKLOAD_BYTES_MAX + 1];
		uint32_t account = srv_snap_get_u32(in);
		get_str(in, text, SRV_WORKLOAD_BYTES_MAX);
		if (in->error)
			break;
		if (!srv_workload_ok((const uint8_t *)text, strlen(text)) ||
		    srv_leases_workload(l, account) != NULL ||
		    srv_leases_set_workload(l, account, text) != SRV_LEASE_OK)
			srv_snap_fail(in, "a workload in the snapshot is invalid or repeated");
	}
	n = srv_snap_get_count(in, 69, UINT32_MAX);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		struct ofill o = {0};
		o.f.fill_id = srv_snap_get_i64(in);
		o.f.buyer = srv_snap_get_u32(in);
		o.f.seller = srv_snap_get_u32(in);
		o.f.buyer_is_taker = srv_snap_get_u8(in) != 0;
		o.f.taker_order_id = srv_snap_get_i64(in);
		o.f.maker_order_id = srv_snap_get_i64(in);
		o.f.price = srv_snap_get_i64(in);
		o.f.qty = srv_snap_get_i64(in);
		o.used = srv_snap_get_i64(in);
		o.open = srv_snap_get_u32(in);
		o.lease = srv_snap_get_u64(in);
		/* In fill-id order (that is how they were made), which the parts' lookups use. */
		if (o.f.fill_id < 1 || o.f.price < 1 || o.f.qty < 1 || o.used < 0 || o.open == 0 ||
		    (l->n_fills > 0 && o.f.fill_id <= l->fills[l->n_fills - 1]->f.fill_id)) {
			srv_snap_fail(in,
				      "an open fill in the snapshot is invalid or out of order");
			break;
		}
		uint32_t open = o.open;
		struct ofill *x = fill_new(l, &o.f);
		x->used = o.used;
		x->lease = o.lease;
		x->open = open; /* counted down by the parts below, which must use it up */
	}
	n = srv_snap_get_count(in, 100, l->cfg.leases_max);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		struct srv_lease_view v;
		load_view(in, l, &v);
		int64_t first = srv_snap_get_i64(in), last = srv_snap_get_i64(in);
		uint32_t np = srv_snap_get_count(in, 24, PARTS_MAX);
		if (in->error)
			break;
		/* One part per hour it covers (each fill of the lease adds one hour). */
		int64_t span;
		if (v.state > SRV_LEASE_RUNNING || np == 0 || v.n_fills != 0 || first > last ||
		    __builtin_sub_overflow(last, first, &span) || span % HOUR_MS != 0 ||
		    span / HOUR_MS + 1 != np ||
		    (l->n_live > 0 && v.id <= l->live[l->n_live - 1]->v.id)) {
			srv_snap_fail(in, "a live lease in the snapshot is invalid");
			break;
		}
		struct lease *x = lease_new(l); /* owned by the book from here, for destroy */
		x->v = v;
		acct_add_live(l, x);
		x->first_hour = first;
		x->last_hour = last;
		l->counts[v.state]++;
		host_add(l, x);
		if (!hours_load(l, x)) {
			srv_snap_fail(
				in, "two live leases in the snapshot hold one device in one hour");
			break;
		}
		for (uint32_t p = 0; p < np && !in->error; p++) {
			uint64_t fid = srv_snap_get_u64(in);
			int64_t ws = srv_snap_get_i64(in), we = srv_snap_get_i64(in);
			struct ofill *o = fill_by_id(l, fid);
			if (in->error || o == NULL || we <= ws || o->open == 0) {
				srv_snap_fail(in,
					      "a lease part in the snapshot names no open fill");
				break;
			}
			o->open--;		/* the saved count, used up by its parts */
			add_part(x, o, ws, we); /* counts it up again */
			o->open--;
		}
	}
	for (size_t i = 0; i < l->n_fills && !in->error; i++)
		if (l->fills[i]->open != 0)
			srv_snap_fail(in, "an open fill in the snapshot has parts missing");
	/* A withdrawn host's devices are another host's only once its leases have ended. */
	for (uint32_t h = 0; h < l->n_hosts && !in->error; h++) {
		if (!l->hosts[h].withdrawn || l->on_host[h].n == 0)
			continue;
		if (devices_taken(l, &l->hosts[h].spec, h))
			srv_snap_fail(in, "a device in the snapshot is on two hosts at once");
		else
			hold_devices(l, h);
	}
	/* Both counts were taken down to zero: count the parts again. */
	for (size_t i = 0; i < l->n_live && !in->error; i++)
		for (uint32_t p = 0; p < l->live[i]->n_parts; p++)
			l->live[i]->parts[p].fill->open++;
	l->n_ended = srv_snap_get_u64(in);
	uint64_t kept = l->n_ended < l->cfg.leases_kept ? l->n_ended : l->cfg.leases_kept;
	if (!in->error && kept > (in->len - in->off) / 60)
		srv_snap_fail(in, "the ended leases exceed the snapshot");
	for (uint64_t i = l->n_ended - kept; i < l->n_ended && !in->error; i++) {
		struct srv_lease_view *v = &l->ended[i % l->cfg.leases_kept];
		load_view(in, l, v);
		if (!in->error && v->state < SRV_LEASE_COMPLETED)
			srv_snap_fail(in, "an ended lease in the snapshot is still live");
		if (!in->error && v->host != NO_HOST)
			l->named[v->host]++;
		if (!in->error)
			acct_add_ended(l, i);
	}
	if (in->error)
		return -1;
	for (size_t i = 0; i < l->n_live; i++)
		due_push(l, l->live[i]);
	return 0;
}

/* ---------- checks (tests, fuzzing) ---------- */

/* by_buyer lists every scheduled lease once, and other live leases at most once, by
 * buyer and last hour, in id order where not marked otherwise; each host that free_from
 * has a fill skip has no device free in that hour for that class. */
static const char *check_fill_indexes(const struct srv_leases *l)
{
	uint64_t listed = 0, used = 0, flagged = 0;
	for (size_t i = 0; l->by_buyer.e != NULL && i <= l->by_buyer.mask; i++) {
		const struct hour_entry *e = &l->by_buyer.e[i];
		if (e->host == NO_HOST)
			continue;
		used++;
		if (hour_find(&l->by_buyer, e->host, e->hour) != e || e->first == NULL ||
		    e->unsorted > 1)
			return "an entry of the buyers' index is empty or not found by its key";
		const struct lease *prev = NULL;
		for (const struct lease *x = e->first; x != NULL && listed <= l->n_active;
		     prev = x, x = x->b_next, listed++) {
			if (x->gone || !x->listed || x->v.buyer != e->host ||
			    buyer_hour(l->hosts[x->v.host].seller, l->hosts[x->v.host].cls,
				       x->last_hour) != e->hour ||
			    x->b_prev != prev)
				return "the buyers' index lists a lease where it does not belong";
			if (!e->unsorted && prev != NULL && prev->v.id > x->v.id)
				return "the buyers' index is out of id order where it says not";
			if (x->v.quantity < e->fewest)
				return "the buyers' index lists a lease of fewer GPUs than it says";
		}
		if (e->last != prev)
			return "an entry of the buyers' index does not end with its last lease";
	}
	for (size_t i = 0; i < l->n_live; i++) {
		const struct lease *x = l->live[i];
		if (!x->gone && !x->listed && x->v.state == SRV_LEASE_SCHEDULED)
			return "a scheduled lease is not in the buyers' index";
		flagged += !x->gone && x->listed;
	}
	if (used != l->by_buyer.n || listed != flagged)
		return "the buyers' index does not list its leases once";
	if (l->free_from.n > FREE_FROM_MAX)
		return "the fills' skips of sellers' hosts are more than FREE_FROM_MAX";
	for (size_t i = 0; !l->free_stale && i < l->free_from.cap; i++) {
		uint64_t key = l->free_from.e[i].id;
		if (key == 0)
			continue;
		uint32_t seller = (uint32_t)(key >> 32), cls = (uint32_t)(key >> 24) & 0xff;
		int64_t hour = (int64_t)(key & 0xffffff) * HOUR_MS;
		uint32_t first, end = seller_range(l, seller, &first);
		if (l->free_from.e[i].val > end - first)
			return "the fills' skip of a seller's hosts is longer than its hosts";
		for (uint32_t at = first; at < first + l->free_from.e[i].val; at++) {
			const struct srv_host_view *h = &l->hosts[l->by_seller[at]];
			const struct hour_entry *e = hour_find(&l->hours, l->by_seller[at], hour);
			uint32_t all = (UINT32_C(1) << h->spec.n_devices) - 1;
			if (h->cls == cls && !h->withdrawn &&
			    (e == NULL || (e->taken & all) != all))
				return "a fill would skip a host with a device free";
		}
	}
	return NULL;
}

/* Each account's lists hold exactly its live leases, newest first, and its ended ones in
 * the ring, newest first; every account is found by its key. */
static const char *check_accounts(const struct srv_leases *l)
{
	uint64_t want_live = 0, want_ended = 0, live = 0, ended = 0, used = 0;
	uint64_t kept = l->n_ended < l->cfg.leases_kept ? l->n_ended : l->cfg.leases_kept;
	uint64_t first = l->n_ended - kept;
	for (size_t i = 0; i < l->n_live; i++)
		if (!l->live[i]->gone)
			want_live += l->live[i]->v.buyer != l->live[i]->v.seller ? 2 : 1;
	for (uint64_t e = first; e < l->n_ended; e++) {
		const struct srv_lease_view *v = &l->ended[e % l->cfg.leases_kept];
		want_ended += v->buyer != v->seller ? 2 : 1;
	}
	for (size_t i = 0; l->accts != NULL && i <= l->acct_mask; i++) {
		const struct acct *a = &l->accts[i];
		if (a->account == 0)
			continue;
		used++;
		if (acct_find(l, a->account) != a)
			return "an account of the lease lists is not found by its key";
		const struct lease *prev = NULL;
		for (const struct lease *x = a->live; x != NULL && live <= want_live;
		     prev = x, x = x->a_next[role_of(x, a->account)], live++)
			if (x->gone || (x->v.buyer != a->account && x->v.seller != a->account) ||
			    x->a_prev[role_of(x, a->account)] != prev ||
			    (prev != NULL && prev->v.id <= x->v.id))
				return "an account's list of live leases is wrong";
		uint64_t last = UINT64_MAX;
		for (uint64_t e = a->ended; e > first && ended <= want_ended; ended++) {
			const struct srv_lease_view *v = &l->ended[(e - 1) % l->cfg.leases_kept];
			if (e - 1 >= last || e > l->n_ended ||
			    (v->buyer != a->account && v->seller != a->account))
				return "an account's list of ended leases is wrong";
			last = e - 1;
			e = l->ended_prev[(e - 1) % l->cfg.leases_kept]
					 [role_of_view(v, a->account)];
		}
	}
	if (used != l->n_accts || live != want_live || ended != want_ended)
		return "the accounts' lists do not hold every lease once";
	return NULL;
}

/* The hours index holds exactly the devices and last hours of the live leases. */
static const char *check_hours(const struct srv_leases *l)
{
	uint64_t bits = 0, used = 0, want_bits = 0, live = 0;
	for (size_t i = 0; l->hours.e != NULL && i <= l->hours.mask; i++) {
		const struct hour_entry *e = &l->hours.e[i];
		if (e->host == NO_HOST)
			continue;
		used++;
		if (hour_find(&l->hours, e->host, e->hour) != e || e->taken == 0 ||
		    e->first != NULL)
			return "an entry of the hours index is empty or not found by its key";
		bits += (uint64_t)__builtin_popcount(e->taken);
	}
	if (used != l->hours.n)
		return "the hours index's count of entries is wrong";
	for (size_t i = 0; i < l->n_live; i++) {
		const struct lease *x = l->live[i];
		if (x->gone)
			continue;
		live++;
		int64_t n = hours_covered(x);
		if (n != x->n_parts)
			return "a live lease does not have one part per hour it covers";
		for (int64_t k = 0; k < n; k++) {
			const struct hour_entry *e =
				hour_find(&l->hours, x->v.host, x->first_hour + k * HOUR_MS);
			if (e == NULL || (e->taken & x->v.devmask) != x->v.devmask)
				return "a live lease's devices are not taken in an hour it covers";
		}
		want_bits += (uint64_t)__builtin_popcount(x->v.devmask) * (uint64_t)n;
	}
	if (bits != want_bits || live != l->n_active)
		return "the hours index holds devices that no live lease has";
	const char *why = check_fill_indexes(l);
	return why ? why : check_accounts(l);
}

static int due_cmp(const void *pa, const void *pb)
{
	const struct srv_due *a = pa, *b = pb;
	if (a->key != b->key)
		return a->key < b->key ? -1 : 1;
	return a->at < b->at ? -1 : a->at > b->at;
}

/* The due times are a heap, and every live lease due at some time has its entry. */
static const char *check_dues(const struct srv_leases *l)
{
	if (!srv_dues_ordered(&l->dues))
		return "the heap of due times is out of order";
	struct srv_due *sorted = malloc((l->dues.n + 1) * sizeof(*sorted));
	if (sorted == NULL)
		return "out of memory checking the due times";
	if (l->dues.n > 0)
		memcpy(sorted, l->dues.e, l->dues.n * sizeof(*sorted));
	qsort(sorted, l->dues.n, sizeof(*sorted), due_cmp);
	const char *why = NULL;
	for (size_t i = 0; i < l->n_live && why == NULL; i++) {
		const struct lease *x = l->live[i];
		struct srv_due d = {.at = x->gone ? NONE_DUE : due_of(l, x), .key = x->v.id};
		if (d.at != NONE_DUE && !bsearch(&d, sorted, l->dues.n, sizeof(*sorted), due_cmp))
			why = "a live lease is not in the heap of due times at its due time";
	}
	free(sorted);
	return why;
}

const char *srv_leases_check_hosts(const struct srv_leases *l)
{
	uint32_t withdrawn = 0, run = 0;
	uint64_t kept = l->n_ended < l->cfg.leases_kept ? l->n_ended : l->cfg.leases_kept;
	for (uint32_t i = 0; i < l->n_hosts; i++) {
		uint32_t h = l->by_seller[i], prev = i ? l->by_seller[i - 1] : 0;
		if (h >= l->n_hosts ||
		    (i > 0 && (l->hosts[prev].seller > l->hosts[h].seller ||
			       (l->hosts[prev].seller == l->hosts[h].seller && prev >= h))))
			return "the hosts by seller are not every host once, by seller and place";
		run = i > 0 && l->hosts[prev].seller == l->hosts[h].seller ? run + 1 : 1;
		if (l->cfg.hosts_per_seller_max != 0 && run > l->cfg.hosts_per_seller_max)
			return "a seller has more than hosts_per_seller_max hosts";
	}
	for (uint32_t h = 0; h < l->n_hosts; h++) {
		const struct srv_host_view *x = &l->hosts[h];
		withdrawn += x->withdrawn;
		if (srv_leases_host_named(l, x->name) != h)
			return "a host is not found by its name (or two hosts have one)";
		for (uint32_t d = 0; d < x->spec.n_devices; d++) {
			uint32_t v = srv_tindex_get(&l->devices, x->spec.devices[d]);
			if (holds(l, h) ? v != (h << 4 | d) : v >> 4 == h)
				return "the device index does not say which host holds a device";
		}
		uint32_t named = 0;
		for (uint64_t i = 0; i < kept; i++)
			named += l->ended[(l->n_ended - 1 - i) % l->cfg.leases_kept].host == h;
		if (named != l->named[h])
			return "a host's count of the ended leases that name it is wrong";
		for (uint32_t k = 0; k < l->on_host[h].n; k++)
			if (l->on_host[h].l[k]->v.host != h)
				return "a host lists a lease of another host";
	}
	if (withdrawn != l->n_withdrawn)
		return "the count of withdrawn hosts is wrong";
	const char *why = check_hours(l);
	return why ? why : check_dues(l);
}
