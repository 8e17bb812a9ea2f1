/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_lease.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_snapshot.h"

#define HOUR_MS	 INT64_C(3600000)
#define NO_HOST	 UINT32_MAX
#define NONE_DUE INT64_MAX

/* One product hour of a lease: its share of one fill. */
struct part {
	uint64_t fill_id;
	int64_t ws, we; /* the hour's delivery window */
};

struct lease {
	struct srv_lease_view v;       /* v.n_fills and v.fill_ids are filled when viewed */
	int64_t first_hour, last_hour; /* product hours (period starts) it covers */
	struct part *parts;
	uint32_t n_parts, cap_parts;
};

/* A fill some lease still delivers: what its leases delivered so far. */
struct ofill {
	struct ledger_fill f;
	int64_t used;	/* GPU-ms delivered */
	uint32_t open;	/* parts not ended */
	uint64_t lease; /* the last lease that ended a part of it */
};

struct workload {
	uint32_t account;
	char *text;
};

struct srv_leases {
	struct srv_lease_config cfg;
	struct srv_host_view *hosts;
	uint32_t n_hosts;
	struct lease *live; /* in creation order */
	uint32_t n_live;
	struct ofill *fills;
	size_t n_fills, cap_fills;
	struct srv_lease_view *ended; /* ring of the last leases_kept */
	uint64_t n_ended;
	struct workload *workloads;
	size_t n_workloads;
	uint64_t next_id;
	uint64_t seq; /* of the input being handled: stamped on every change */
	int64_t next_due;
	uint32_t *occ; /* per host: devices taken in the hour being filled */
	/* results of the current call */
	struct srv_lease_out out;
	size_t cap_updates, cap_cmds, cap_settles;
};

void srv_lease_config_default(struct srv_lease_config *cfg)
{
	*cfg = (struct srv_lease_config){.hosts_max = 4096,
					 .leases_max = 100000,
					 .leases_kept = 65536,
					 .start_lead_ms = 0,
					 .start_deadline_ms = 300000,
					 .period_ms = HOUR_MS,
					 .shift_ms = 0};
}

int srv_leases_create(const struct srv_lease_config *cfg, struct srv_leases **out)
{
	if (cfg->hosts_max == 0 || cfg->hosts_max > 1000000 || cfg->leases_max == 0 ||
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
	l->occ = calloc(cfg->hosts_max, sizeof(*l->occ));
	l->live = calloc(cfg->leases_max, sizeof(*l->live));
	l->ended = calloc(cfg->leases_kept, sizeof(*l->ended));
	l->next_id = 1;
	l->next_due = NONE_DUE;
	if (!l->hosts || !l->occ || !l->live || !l->ended) {
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
	for (uint32_t i = 0; l->live && i < l->n_live; i++)
		free(l->live[i].parts);
	for (size_t i = 0; i < l->n_workloads; i++)
		free(l->workloads[i].text);
	free(l->workloads);
	free(l->hosts);
	free(l->occ);
	free(l->live);
	free(l->fills);
	free(l->ended);
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

int srv_leases_add_host(struct srv_leases *l, uint32_t seller, uint32_t cls, const char *name,
			const struct srv_host_spec *spec)
{
	if (seller == 0 || name[0] == '\0' || strlen(name) > SRV_ACCOUNT_NAME_BYTES_MAX ||
	    spec->n_devices == 0 || spec->n_devices > SRV_HOST_DEVICES_MAX)
		return SRV_LEASE_ARGS;
	for (uint32_t h = 0; h < l->n_hosts; h++) {
		const struct srv_host_view *x = &l->hosts[h];
		if (strcmp(x->name, name) == 0)
			return x->seller == seller && x->cls == cls && same_spec(&x->spec, spec)
				       ? SRV_LEASE_OK
				       : SRV_LEASE_EXISTS;
		for (uint32_t i = 0; i < x->spec.n_devices; i++)
			for (uint32_t j = 0; j < spec->n_devices; j++)
				if (strcmp(x->spec.devices[i], spec->devices[j]) == 0)
					return SRV_LEASE_EXISTS;
	}
	if (l->n_hosts == l->cfg.hosts_max)
		return SRV_LEASE_FULL;
	struct srv_host_view *x = &l->hosts[l->n_hosts++];
	x->seller = seller;
	x->cls = cls;
	snprintf(x->name, sizeof(x->name), "%s", name);
	x->spec = *spec;
	return SRV_LEASE_OK;
}

void srv_leases_remove_last_host(struct srv_leases *l)
{
	if (l->n_hosts > 0)
		memset(&l->hosts[--l->n_hosts], 0, sizeof(*l->hosts));
}

const struct srv_host_view *srv_leases_host(const struct srv_leases *l, uint32_t host)
{
	return host < l->n_hosts ? &l->hosts[host] : NULL;
}

uint32_t srv_leases_host_count(const struct srv_leases *l)
{
	return l->n_hosts;
}

/* ---------- results ---------- */

static void view_of(const struct lease *x, struct srv_lease_view *v)
{
	*v = x->v;
	v->n_fills = 0;
	for (uint32_t i = 0; i < x->n_parts && v->n_fills < SRV_LEASE_VIEW_FILLS; i++)
		if (v->n_fills == 0 || v->fill_ids[v->n_fills - 1] != x->parts[i].fill_id)
			v->fill_ids[v->n_fills++] = x->parts[i].fill_id;
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

static void settle(struct srv_leases *l, size_t i)
{
	struct ofill *o = &l->fills[i];
	struct srv_settlement s = {.fill = o->f, .lease_id = (int64_t)o->lease};
	fill_total(l, o, &s.used, &s.total);
	l->out.settles = grow(l->out.settles, &l->cap_settles, l->out.n_settles + 1,
			      sizeof(*l->out.settles));
	l->out.settles[l->out.n_settles++] = s;
	l->fills[i] = l->fills[--l->n_fills];
}

static size_t fill_find(const struct srv_leases *l, uint64_t fill_id)
{
	for (size_t i = 0; i < l->n_fills; i++)
		if ((uint64_t)l->fills[i].f.fill_id == fill_id)
			return i;
	return SIZE_MAX;
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

static void keep_ended(struct srv_leases *l, const struct lease *x)
{
	view_of(x, &l->ended[l->n_ended % l->cfg.leases_kept]);
	l->n_ended++;
}

/*
 * Ends lease i at now_ms in state `state`: each of its hours is delivered for
 * the time it ran within that hour's window, its fills settle once none of
 * their parts is open, the hook is told to stop (unless it never started), and
 * the lease leaves the live table.
 */
static void end_lease(struct srv_leases *l, uint32_t i, uint8_t state, const char *reason,
		      int64_t now_ms)
{
	struct lease *x = &l->live[i];
	bool started = x->v.state != SRV_LEASE_SCHEDULED;
	int64_t r0 = x->v.running_ms, r1 = now_ms;
	int64_t ndev = x->v.quantity;
	for (uint32_t p = 0; p < x->n_parts; p++) {
		const struct part *pt = &x->parts[p];
		int64_t from = r0 > pt->ws ? r0 : pt->ws, to = r1 < pt->we ? r1 : pt->we;
		size_t f = fill_find(l, pt->fill_id);
		if (f == SIZE_MAX)
			continue; /* cannot happen: a part's fill stays until its last part ends */
		if (x->v.running_ms != 0 && to > from)
			l->fills[f].used += (to - from) * ndev;
		l->fills[f].lease = x->v.id;
		if (--l->fills[f].open == 0)
			settle(l, f);
	}
	x->v.state = state;
	snprintf(x->v.reason, sizeof(x->v.reason), "%s", reason);
	x->v.ended_ms = now_ms;
	x->v.seq = l->seq;
	struct srv_lease_view v;
	view_of(x, &v);
	update(l, &v);
	if (started)
		command(l, SRV_HCMD_STOP, &v);
	keep_ended(l, x);
	free(x->parts);
	/* Keep creation order: the live table is walked in it. */
	memmove(&l->live[i], &l->live[i + 1], (l->n_live - i - 1) * sizeof(*l->live));
	l->n_live--;
}

static void recompute_due(struct srv_leases *l)
{
	l->next_due = NONE_DUE;
	for (uint32_t i = 0; i < l->n_live; i++) {
		int64_t d = due_of(l, &l->live[i]);
		if (d < l->next_due)
			l->next_due = d;
	}
}

void srv_leases_tick(struct srv_leases *l, int64_t now_ms)
{
	if (now_ms < l->next_due)
		return;
	for (uint32_t i = 0; i < l->n_live;) {
		struct lease *x = &l->live[i];
		if (now_ms < due_of(l, x)) {
			i++;
			continue;
		}
		struct srv_lease_view v;
		switch (x->v.state) {
		case SRV_LEASE_SCHEDULED:
			x->v.state = SRV_LEASE_STARTING;
			x->v.seq = l->seq;
			view_of(x, &v);
			update(l, &v);
			command(l, SRV_HCMD_START, &v);
			i++;
			continue; /* its deadline is checked on a later tick */
		case SRV_LEASE_STARTING:
			end_lease(l, i, SRV_LEASE_FAILED, "not_running_in_time", now_ms);
			continue;
		case SRV_LEASE_RUNNING:
			end_lease(l, i, SRV_LEASE_COMPLETED, "", x->v.end_ms);
			continue;
		default:
			i++;
		}
	}
	recompute_due(l);
}

static uint32_t live_find(const struct srv_leases *l, uint64_t id)
{
	for (uint32_t i = 0; i < l->n_live; i++)
		if (l->live[i].v.id == id)
			return i;
	return UINT32_MAX;
}

void srv_leases_event(struct srv_leases *l, uint64_t id, uint8_t kind, const char *code,
		      int64_t now_ms)
{
	uint32_t i = live_find(l, id);
	if (i == UINT32_MAX)
		return;
	struct lease *x = &l->live[i];
	if (kind == SRV_LEV_STARTED && x->v.state == SRV_LEASE_STARTING) {
		x->v.state = SRV_LEASE_RUNNING;
		x->v.running_ms = now_ms;
		x->v.seq = l->seq;
		struct srv_lease_view v;
		view_of(x, &v);
		update(l, &v);
	} else if (kind == SRV_LEV_FAILED && x->v.state == SRV_LEASE_STARTING) {
		end_lease(l, i, SRV_LEASE_FAILED, code[0] ? code : "start_failed", now_ms);
	} else if (kind == SRV_LEV_STOPPED && x->v.state == SRV_LEASE_RUNNING &&
		   now_ms < x->v.end_ms) {
		end_lease(l, i, SRV_LEASE_FAILED, code[0] ? code : "stopped_early", now_ms);
	}
	recompute_due(l);
}

void srv_leases_resume(struct srv_leases *l)
{
	for (uint32_t i = 0; i < l->n_live; i++) {
		const struct lease *x = &l->live[i];
		if (x->v.state == SRV_LEASE_STARTING || x->v.state == SRV_LEASE_RUNNING) {
			struct srv_lease_view v;
			view_of(x, &v);
			command(l, SRV_HCMD_START, &v);
		}
	}
}

/* ---------- fills ---------- */

static void add_part(struct lease *x, uint64_t fill_id, int64_t ws, int64_t we)
{
	size_t cap = x->cap_parts;
	x->parts = grow(x->parts, &cap, (size_t)x->n_parts + 1, sizeof(*x->parts));
	x->cap_parts = (uint32_t)cap;
	x->parts[x->n_parts++] = (struct part){.fill_id = fill_id, .ws = ws, .we = we};
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

void srv_leases_fill(struct srv_leases *l, const struct ledger_fill *f, uint32_t cls,
		     int64_t hour_ms, int64_t now_ms)
{
	int64_t ws = hour_ms + l->cfg.shift_ms, we = ws + l->cfg.period_ms;
	l->fills = grow(l->fills, &l->cap_fills, l->n_fills + 1, sizeof(*l->fills));
	size_t fi = l->n_fills++;
	l->fills[fi] = (struct ofill){.f = *f};
	int64_t left = f->qty;
	/* Devices of the seller's hosts of this class taken in this hour. */
	for (uint32_t h = 0; h < l->n_hosts; h++)
		l->occ[h] = 0;
	for (uint32_t i = 0; i < l->n_live; i++) {
		const struct lease *x = &l->live[i];
		if (x->v.seller == f->seller && x->v.cls == cls && x->first_hour <= hour_ms &&
		    hour_ms <= x->last_hour)
			l->occ[x->v.host] |= x->v.devmask;
	}
	/* The buyer's scheduled leases of the hour before, on devices still free: longer. */
	for (uint32_t i = 0; i < l->n_live && left > 0; i++) {
		struct lease *x = &l->live[i];
		if (x->v.buyer != f->buyer || x->v.seller != f->seller || x->v.cls != cls ||
		    x->v.state != SRV_LEASE_SCHEDULED || x->last_hour != hour_ms - HOUR_MS ||
		    x->v.quantity > left || (l->occ[x->v.host] & x->v.devmask) != 0)
			continue;
		l->occ[x->v.host] |= x->v.devmask;
		x->last_hour = hour_ms;
		x->v.end_ms = we;
		x->v.seq = l->seq;
		add_part(x, (uint64_t)f->fill_id, ws, we);
		l->fills[fi].open++;
		left -= x->v.quantity;
		struct srv_lease_view v;
		view_of(x, &v);
		update(l, &v);
	}
	/* New leases, one per host with free devices. */
	for (uint32_t h = 0; h < l->n_hosts && left > 0 && l->n_live < l->cfg.leases_max; h++) {
		const struct srv_host_view *host = &l->hosts[h];
		if (host->seller != f->seller || host->cls != cls)
			continue;
		uint32_t mask;
		uint32_t want = left > SRV_HOST_DEVICES_MAX ? SRV_HOST_DEVICES_MAX : (uint32_t)left;
		uint32_t got = lowest_free(host->spec.n_devices, l->occ[h], want, &mask);
		if (got == 0)
			continue;
		l->occ[h] |= mask;
		struct lease *x = &l->live[l->n_live++];
		*x = (struct lease){.first_hour = hour_ms, .last_hour = hour_ms};
		x->v = new_view(l, f, cls, got, ws, we, SRV_LEASE_SCHEDULED);
		x->v.host = h;
		x->v.devmask = mask;
		add_part(x, (uint64_t)f->fill_id, ws, we);
		l->fills[fi].open++;
		left -= got;
		struct srv_lease_view v;
		view_of(x, &v);
		update(l, &v);
	}
	if (left > 0) {
		/* No devices for these GPUs: a lease that ends before it begins. */
		struct srv_lease_view v = new_view(l, f, cls, left, ws, we, SRV_LEASE_CANCELLED);
		v.ended_ms = now_ms;
		v.n_fills = 1;
		v.fill_ids[0] = (uint64_t)f->fill_id;
		snprintf(v.reason, sizeof(v.reason), "%s",
			 l->n_live == l->cfg.leases_max ? "lease_table_full"
							: "not_enough_devices");
		update(l, &v);
		l->ended[l->n_ended % l->cfg.leases_kept] = v;
		l->n_ended++;
		l->fills[fi].lease = v.id;
	}
	if (l->fills[fi].open == 0)
		settle(l, fi);
	recompute_due(l);
	/* A window that began already (a late fill) starts at once. */
	srv_leases_tick(l, now_ms);
}

/* ---------- queries ---------- */

size_t srv_leases_of(const struct srv_leases *l, uint32_t account, struct srv_lease_view *out,
		     size_t max)
{
	size_t n = 0;
	for (uint32_t i = l->n_live; i-- > 0 && n < max;) {
		const struct lease *x = &l->live[i];
		if (account == 0 || x->v.buyer == account || x->v.seller == account)
			view_of(x, &out[n++]);
	}
	uint64_t kept = l->n_ended < l->cfg.leases_kept ? l->n_ended : l->cfg.leases_kept;
	for (uint64_t i = 0; i < kept && n < max; i++) {
		const struct srv_lease_view *v =
			&l->ended[(l->n_ended - 1 - i) % l->cfg.leases_kept];
		if (account == 0 || v->buyer == account || v->seller == account)
			out[n++] = *v;
	}
	return n;
}

void srv_leases_counts(const struct srv_leases *l, uint64_t counts[7])
{
	memset(counts, 0, 7 * sizeof(*counts));
	for (uint32_t i = 0; i < l->n_live; i++)
		counts[l->live[i].v.state]++;
}

const char *srv_lease_state_name(uint8_t state)
{
	static const char *const names[] = {"unspecified", "scheduled",	      "starting", "running",
					    "completed",   "failed_delivery", "cancelled"};
	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "unknown";
}

/* ---------- workloads ---------- */

int srv_leases_set_workload(struct srv_leases *l, uint32_t account, const char *text)
{
	size_t len = strlen(text);
	if (account == 0 || len == 0 || len > SRV_WORKLOAD_BYTES_MAX)
		return SRV_LEASE_ARGS;
	char *copy = strdup(text);
	if (copy == NULL)
		return SRV_LEASE_NOMEM;
	for (size_t i = 0; i < l->n_workloads; i++)
		if (l->workloads[i].account == account) {
			free(l->workloads[i].text);
			l->workloads[i].text = copy;
			return SRV_LEASE_OK;
		}
	struct workload *w = realloc(l->workloads, (l->n_workloads + 1) * sizeof(*w));
	if (w == NULL) {
		free(copy);
		return SRV_LEASE_NOMEM;
	}
	l->workloads = w;
	l->workloads[l->n_workloads++] = (struct workload){.account = account, .text = copy};
	return SRV_LEASE_OK;
}

const char *srv_leases_workload(const struct srv_leases *l, uint32_t account)
{
	for (size_t i = 0; i < l->n_workloads; i++)
		if (l->workloads[i].account == account)
			return l->workloads[i].text;
	return NULL;
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
		srv_snap_u32(w, x->cls);
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
	srv_snap_u32(w, (uint32_t)l->n_fills);
	for (size_t i = 0; i < l->n_fills; i++) {
		const struct ofill *o = &l->fills[i];
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
	srv_snap_u32(w, l->n_live);
	for (uint32_t i = 0; i < l->n_live; i++) {
		const struct lease *x = &l->live[i];
		struct srv_lease_view v = x->v;
		v.n_fills = 0;
		save_view(w, &v);
		srv_snap_i64(w, x->first_hour);
		srv_snap_i64(w, x->last_hour);
		srv_snap_u32(w, x->n_parts);
		for (uint32_t p = 0; p < x->n_parts; p++) {
			srv_snap_u64(w, x->parts[p].fill_id);
			srv_snap_i64(w, x->parts[p].ws);
			srv_snap_i64(w, x->parts[p].we);
		}
	}
	uint64_t kept = l->n_ended < l->cfg.leases_kept ? l->n_ended : l->cfg.leases_kept;
	srv_snap_u64(w, l->n_ended);
	for (uint64_t i = l->n_ended - kept; i < l->n_ended; i++)
		save_view(w, &l->ended[i % l->cfg.leases_kept]);
}

#define PARTS_MAX (24u * 366u) /* a year of hours in one lease */

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
		get_str(in, name, SRV_ACCOUNT_NAME_BYTES_MAX);
		get_str(in, spec.vendor, SRV_VENDOR_BYTES_MAX);
		spec.n_devices = srv_snap_get_count(in, 4, SRV_HOST_DEVICES_MAX);
		for (uint32_t i = 0; i < spec.n_devices; i++)
			get_str(in, spec.devices[i], SRV_DEVICE_BYTES_MAX);
		if (!in->error &&
		    (!srv_vendor_ok(spec.vendor) ||
		     srv_leases_add_host(l, seller, cls, name, &spec) != SRV_LEASE_OK ||
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
		if (o.f.fill_id < 1 || o.f.price < 1 || o.f.qty < 1 || o.used < 0 || o.open == 0 ||
		    fill_find(l, (uint64_t)o.f.fill_id) != SIZE_MAX) {
			srv_snap_fail(in, "an open fill in the snapshot is invalid or repeated");
			break;
		}
		l->fills = grow(l->fills, &l->cap_fills, l->n_fills + 1, sizeof(*l->fills));
		l->fills[l->n_fills++] = o;
	}
	n = srv_snap_get_count(in, 100, l->cfg.leases_max);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		struct lease *x = &l->live[l->n_live];
		*x = (struct lease){0};
		load_view(in, l, &x->v);
		x->first_hour = srv_snap_get_i64(in);
		x->last_hour = srv_snap_get_i64(in);
		uint32_t np = srv_snap_get_count(in, 24, PARTS_MAX);
		if (in->error)
			break;
		l->n_live++; /* owns its parts from here, for destroy */
		if (x->v.state > SRV_LEASE_RUNNING || np == 0 || x->v.n_fills != 0 ||
		    x->first_hour > x->last_hour || (i > 0 && x->v.id <= l->live[i - 1].v.id)) {
			srv_snap_fail(in, "a live lease in the snapshot is invalid");
			break;
		}
		for (uint32_t p = 0; p < np && !in->error; p++) {
			uint64_t fid = srv_snap_get_u64(in);
			int64_t ws = srv_snap_get_i64(in), we = srv_snap_get_i64(in);
			size_t f = fill_find(l, fid);
			if (in->error || f == SIZE_MAX || we <= ws || l->fills[f].open == 0) {
				srv_snap_fail(in,
					      "a lease part in the snapshot names no open fill");
				break;
			}
			l->fills[f].open--; /* counted down here, checked to reach 0 below */
			add_part(x, fid, ws, we);
		}
	}
	for (size_t i = 0; i < l->n_fills && !in->error; i++) {
		if (l->fills[i].open != 0)
			srv_snap_fail(in, "an open fill in the snapshot has parts missing");
	}
	/* Each fill's open count was used up above: count the parts again. */
	for (uint32_t i = 0; i < l->n_live && !in->error; i++)
		for (uint32_t p = 0; p < l->live[i].n_parts; p++)
			l->fills[fill_find(l, l->live[i].parts[p].fill_id)].open++;
	l->n_ended = srv_snap_get_u64(in);
	uint64_t kept = l->n_ended < l->cfg.leases_kept ? l->n_ended : l->cfg.leases_kept;
	if (!in->error && kept > (in->len - in->off) / 60)
		srv_snap_fail(in, "the ended leases exceed the snapshot");
	for (uint64_t i = l->n_ended - kept; i < l->n_ended && !in->error; i++) {
		struct srv_lease_view *v = &l->ended[i % l->cfg.leases_kept];
		load_view(in, l, v);
		if (!in->error && v->state < SRV_LEASE_COMPLETED)
			srv_snap_fail(in, "an ended lease in the snapshot is still live");
	}
	if (in->error)
		return -1;
	recompute_due(l);
	return 0;
}
