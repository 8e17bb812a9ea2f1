/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leases (docs/provisioning.md): the hosts sellers registered, the devices
 * every fill is delivered on, and each lease's life from SCHEDULED to
 * COMPLETED or FAILED_DELIVERY, with the money that follows: the part of a
 * fill's notional that was delivered goes to the seller, the rest back to
 * the buyer.
 *
 * Owned by the core thread and as deterministic as the core: no I/O, no
 * clock, no threads. Its inputs are the core's fills, the journaled clock and
 * the journaled outcomes of hook calls; its outputs are lease updates (for
 * buyer and seller), hook commands (for the dispatcher thread) and
 * settlements (for the ledger thread).
 */
#ifndef GRIDEX_SRV_LEASE_H
#define GRIDEX_SRV_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"
#include "srv_auth.h"

#define SRV_LEASE_REASON_BYTES 32
#define SRV_LEASE_VIEW_FILLS   48 /* fills named in one update (a lease may deliver more) */

/* Values of proto LeaseState. */
enum srv_lease_state {
	SRV_LEASE_SCHEDULED = 1,
	SRV_LEASE_STARTING,
	SRV_LEASE_RUNNING,
	SRV_LEASE_COMPLETED,
	SRV_LEASE_FAILED,
	SRV_LEASE_CANCELLED,
};

/* What the dispatcher reports about a lease, through the journal. */
enum srv_lease_event_kind {
	SRV_LEV_STARTED = 1, /* start answered ok: the workload runs */
	SRV_LEV_FAILED,	     /* start failed for good (a final code) */
	SRV_LEV_STOPPED,     /* status: the workload ended before the window did */
};

enum srv_hook_cmd_kind {
	SRV_HCMD_START = 1,
	SRV_HCMD_STOP,
};

struct srv_lease_config {
	uint32_t hosts_max;	       /* registered hosts, all sellers */
	uint32_t hosts_per_seller_max; /* registered hosts of one seller; 0: no limit */
	uint32_t leases_max;	       /* live leases (not ended) */
	uint32_t leases_kept;	       /* ended leases kept for QUERY_LEASES */
	int64_t start_lead_ms;	       /* start is called this long before the window */
	int64_t start_deadline_ms;     /* not running this long after the window starts: failed */
	int64_t period_ms;	       /* the delivery window of one product hour */
	int64_t shift_ms;	       /* added to every window's start (tests, demonstrations) */
};

/* A lease as buyer, seller and operators see it (a copy). */
struct srv_lease_view {
	uint64_t id;
	uint32_t buyer, seller;
	uint32_t host;	  /* index in the host table; UINT32_MAX: none (CANCELLED) */
	uint32_t cls;	  /* accelerator class number of the core */
	uint32_t devmask; /* bit i: the host's device i */
	int64_t quantity; /* GPUs */
	int64_t start_ms, end_ms;
	uint8_t state; /* enum srv_lease_state */
	char reason[SRV_LEASE_REASON_BYTES];
	int64_t running_ms, ended_ms;
	uint64_t seq;
	uint32_t n_fills; /* up to SRV_LEASE_VIEW_FILLS of them in fill_ids */
	uint64_t fill_ids[SRV_LEASE_VIEW_FILLS];
};

struct srv_hook_cmd {
	uint8_t kind; /* enum srv_hook_cmd_kind */
	struct srv_lease_view lease;
};

/* The end of a fill's escrow: used of total (GPU-milliseconds) was delivered. */
struct srv_settlement {
	struct ledger_fill fill;
	int64_t used, total;
	int64_t lease_id;
};

struct srv_host_view {
	uint32_t seller, cls;
	char name[SRV_ACCOUNT_NAME_BYTES_MAX + 1];
	struct srv_host_spec spec;
	bool withdrawn; /* out of service: no new leases (its live ones go on) */
};

/* One call's results; the arrays belong to the lease book and last until its next call. */
struct srv_lease_out {
	struct srv_lease_view *updates;
	size_t n_updates;
	struct srv_hook_cmd *cmds;
	size_t n_cmds;
	struct srv_settlement *settles;
	size_t n_settles;
};

enum srv_lease_status {
	SRV_LEASE_OK = 0,
	SRV_LEASE_ARGS,
	SRV_LEASE_NOMEM,
	SRV_LEASE_FULL,	       /* hosts_max hosts */
	SRV_LEASE_SELLER_FULL, /* hosts_per_seller_max hosts of the seller */
	SRV_LEASE_EXISTS,      /* a host of that name that differs, or a device another host has */
};

struct srv_leases;

void srv_lease_config_default(struct srv_lease_config *cfg);
__attribute__((warn_unused_result)) int srv_leases_create(const struct srv_lease_config *cfg,
							  struct srv_leases **out);
void srv_leases_destroy(struct srv_leases *l);

/* The sequence number of the input being handled, stamped on the changes it makes. */
void srv_leases_set_seq(struct srv_leases *l, uint64_t seq);
/* Clears the previous call's results (every call below adds to them). */
void srv_leases_out_reset(struct srv_leases *l);
const struct srv_lease_out *srv_leases_out(const struct srv_leases *l);

/*
 * Registers a seller's host: its name (unique among all hosts, withdrawn ones
 * included), class and devices (none held by another host: one in service, or
 * a withdrawn one with live leases). Registering the same host again is OK; a
 * withdrawn host registered again with the same seller, class and devices is
 * back in service. A new host takes the next index; when hosts_max hosts are
 * registered, the lowest index of a withdrawn host that no live lease and no
 * kept ended lease names (that host is then forgotten). *host is its index;
 * *added is true when its devices became available (a new host, or one back
 * in service): the caller adds them to the seller's capacity.
 * Errors: EXISTS, FULL, ARGS.
 */
__attribute__((warn_unused_result)) int srv_leases_add_host(struct srv_leases *l, uint32_t seller,
							    uint32_t cls, const char *name,
							    const struct srv_host_spec *spec,
							    uint32_t *host, bool *added);
/*
 * Takes a host out of service: no new lease (nor the extension of one) goes
 * to it; its live leases run to their end. by: the host's seller, or 0 (any
 * host). It keeps its index, name and devices while leases name them, and
 * counts towards hosts_max until a new host takes its place. *withdrawn is
 * true when it was in service until now. Errors: ARGS (no host of that name,
 * or another seller's).
 */
__attribute__((warn_unused_result)) int srv_leases_withdraw_host(struct srv_leases *l, uint32_t by,
								 const char *name, uint32_t *host,
								 bool *withdrawn);
const struct srv_host_view *srv_leases_host(const struct srv_leases *l, uint32_t host);
/* The hosts of a seller (0: every host) in index order, up to max, from the one after
 * cursor (0: from the first); returns how many indices were written to out, and each
 * one's cursor to cursors. */
size_t srv_leases_hosts_of(const struct srv_leases *l, uint32_t seller, uint64_t cursor,
			   uint32_t *out, uint64_t *cursors, size_t max);
/* Live leases on a host. */
uint32_t srv_leases_host_live(const struct srv_leases *l, uint32_t host);
/* The index of the host of that name, or UINT32_MAX. */
uint32_t srv_leases_host_named(const struct srv_leases *l, const char *name);
/* Hosts registered (withdrawn ones included), and those withdrawn. */
uint32_t srv_leases_host_count(const struct srv_leases *l);
uint32_t srv_leases_withdrawn_count(const struct srv_leases *l);

/*
 * Delivers a fill of class cls whose product hour starts at hour_ms: devices
 * of the seller's hosts of that class free in that hour, first by extending
 * the buyer's SCHEDULED leases of the hour before on the same devices, then
 * by new leases, one per host, in registration order. GPUs left without a
 * device (or a lease, past leases_max) become a CANCELLED lease, refunded at
 * once.
 */
void srv_leases_fill(struct srv_leases *l, const struct ledger_fill *f, uint32_t cls,
		     int64_t hour_ms, int64_t now_ms);

/* Moves the clock: starts due, deadlines passed, windows ended. */
void srv_leases_tick(struct srv_leases *l, int64_t now_ms);

/*
 * A journaled outcome of a hook call for lease id (code: the hook's error code, or
 * ""). Outcomes that no longer apply (a lease that ended meanwhile) are ignored.
 */
void srv_leases_event(struct srv_leases *l, uint64_t id, uint8_t kind, const char *code,
		      int64_t now_ms);

/* A buyer's workload (a JSON text srv_workload_ok() accepted); replaces the previous one.
 * Errors: ARGS, NOMEM. */
__attribute__((warn_unused_result)) int srv_leases_set_workload(struct srv_leases *l,
								uint32_t account, const char *text);
/* The account's workload, or NULL. Valid until the next set. */
const char *srv_leases_workload(const struct srv_leases *l, uint32_t account);

/* Start commands for every lease that is STARTING or RUNNING (after a restart). */
void srv_leases_resume(struct srv_leases *l);

/* The leases of an account as buyer or seller (account 0: every lease), live ones first
 * (newest first), then ended ones newest first; up to max, from the one after cursor (0:
 * from the first). Returns how many were written to out, and each one's cursor to
 * cursors: a live lease's is its id, an ended one's SRV_LEASE_CURSOR_ENDED | the number
 * of its ending (0 for the first lease that ended). */
#define SRV_LEASE_CURSOR_ENDED (UINT64_C(1) << 63)
size_t srv_leases_of(const struct srv_leases *l, uint32_t account, uint64_t cursor,
		     struct srv_lease_view *out, uint64_t *cursors, size_t max);

/* Checks the host table's invariants (tests, fuzzing): NULL, or what is wrong. */
const char *srv_leases_check_hosts(const struct srv_leases *l);

/* Live leases by state (index: enum srv_lease_state; 0 unused), for metrics. */
void srv_leases_counts(const struct srv_leases *l, uint64_t counts[7]);

/* Snapshots. load fills a new, empty lease book (-1 with the reason in in->error). */
struct srv_snap_w;
struct srv_snap_r;
void srv_leases_save(const struct srv_leases *l, struct srv_snap_w *w);
__attribute__((warn_unused_result)) int srv_leases_load(struct srv_leases *l,
							struct srv_snap_r *in);

const char *srv_lease_state_name(uint8_t state);

#endif
