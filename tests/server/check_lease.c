/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lease book alone (server/srv_lease.c), driven as the core drives it:
 * fills get the seller's free devices (first host first, one lease per host),
 * the buyer's scheduled lease of the hour before is extended, GPUs without a
 * device become a cancelled lease refunded at once; the clock starts leases,
 * fails those not running in time and completes the others at the window's
 * end; hook outcomes move them; every fill settles exactly once with the part
 * of it that was delivered; snapshots reload to the same book and refuse
 * what does not fit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "srv_lease.h"
#include "srv_snapshot.h"
#include "tap.h"

#define H      INT64_C(3600000)
#define HOUR0  (INT64_C(1795366800000)) /* 2026-11-23T08:00Z, a product hour */
#define SELLER 7
#define BUYER  9
#define CLS    0

static struct srv_leases *l;
static uint32_t per_seller; /* hosts_per_seller_max of the next books; 0: the default */

/* Small tables: the snapshot tests make thousands of books. */
static struct srv_leases *book(void)
{
	struct srv_lease_config cfg;
	srv_lease_config_default(&cfg);
	cfg.start_deadline_ms = 60000;
	cfg.hosts_max = 16;
	if (per_seller)
		cfg.hosts_per_seller_max = per_seller;
	cfg.leases_max = 64;
	cfg.leases_kept = 64;
	struct srv_leases *b;
	ck_assert_int_eq(srv_leases_create(&cfg, &b), SRV_LEASE_OK);
	return b;
}

static void setup(void)
{
	l = book();
}

static void teardown(void)
{
	per_seller = 0;
	srv_leases_destroy(l);
}

static struct srv_host_spec spec_of(const char *prefix, uint32_t n)
{
	struct srv_host_spec s = {.vendor = "nvidia", .n_devices = n};
	for (uint32_t i = 0; i < n; i++)
		snprintf(s.devices[i], sizeof(s.devices[i]), "GPU-%s-%u", prefix, i);
	return s;
}

static int add_host(struct srv_leases *b, uint32_t seller, uint32_t cls, const char *name,
		    const struct srv_host_spec *spec)
{
	uint32_t h;
	bool added;
	return srv_leases_add_host(b, seller, cls, name, spec, &h, &added);
}

static struct ledger_fill fill(int64_t id, int64_t qty)
{
	return (struct ledger_fill){.fill_id = id,
				    .buyer = BUYER,
				    .seller = SELLER,
				    .buyer_is_taker = true,
				    .taker_order_id = 100 + id,
				    .maker_order_id = 200 + id,
				    .price = 2000000,
				    .qty = qty};
}

static const struct srv_lease_out *O(void)
{
	return srv_leases_out(l);
}

/* The one settlement of the last call, for fill_id. */
static const struct srv_settlement *settled(int64_t fill_id)
{
	const struct srv_settlement *got = NULL;
	for (size_t i = 0; i < O()->n_settles; i++)
		if (O()->settles[i].fill.fill_id == fill_id) {
			ck_assert_ptr_null(got);
			got = &O()->settles[i];
		}
	return got;
}

START_TEST(hosts_are_checked)
{
	struct srv_host_spec a = spec_of("a", 4), b = spec_of("b", 2);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	/* the same name with other devices, or by another seller */
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &b), SRV_LEASE_EXISTS);
	ck_assert_int_eq(add_host(l, 8, CLS, "host-a", &a), SRV_LEASE_EXISTS);
	/* one device twice */
	struct srv_host_spec twice = spec_of("t", 2);
	snprintf(twice.devices[1], sizeof(twice.devices[1]), "GPU-t-0");
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-t", &twice), SRV_LEASE_ARGS);
	/* a device another host has */
	struct srv_host_spec c = spec_of("b", 2);
	snprintf(c.devices[1], sizeof(c.devices[1]), "GPU-a-3");
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-c", &c), SRV_LEASE_EXISTS);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-b", &b), SRV_LEASE_OK);
	ck_assert_uint_eq(srv_leases_host_count(l), 2);
	ck_assert_int_eq(srv_leases_set_workload(l, BUYER, "{\"command\":[\"x\"]}"), SRV_LEASE_OK);
	ck_assert_str_eq(srv_leases_workload(l, BUYER), "{\"command\":[\"x\"]}");
	ck_assert_ptr_null(srv_leases_workload(l, SELLER));
}
END_TEST

START_TEST(fill_to_completed_lease_pays_the_seller)
{
	struct srv_host_spec a = spec_of("a", 4), b = spec_of("b", 2);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-b", &b), SRV_LEASE_OK);
	srv_leases_set_seq(l, 10);
	srv_leases_out_reset(l);
	struct ledger_fill f = fill(1, 5);
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	/* 4 devices of host-a, 1 of host-b: two scheduled leases, nothing settled yet */
	ck_assert_uint_eq(O()->n_updates, 2);
	ck_assert_uint_eq(O()->n_settles, 0);
	ck_assert_uint_eq(O()->n_cmds, 0);
	const struct srv_lease_view *va = &O()->updates[0], *vb = &O()->updates[1];
	ck_assert_uint_eq(va->host, 0);
	ck_assert_uint_eq(va->devmask, 0xf);
	ck_assert_int_eq(va->quantity, 4);
	ck_assert_uint_eq(vb->host, 1);
	ck_assert_uint_eq(vb->devmask, 0x1);
	ck_assert_int_eq(va->start_ms, HOUR0);
	ck_assert_int_eq(va->end_ms, HOUR0 + H);
	ck_assert_uint_eq(va->state, SRV_LEASE_SCHEDULED);
	ck_assert_uint_eq(va->seq, 10);
	ck_assert_uint_eq(va->n_fills, 1);
	ck_assert_uint_eq(va->fill_ids[0], 1);
	uint64_t ida = va->id, idb = vb->id;
	/* the window begins: both start */
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0 - 1);
	ck_assert_uint_eq(O()->n_cmds, 0);
	srv_leases_tick(l, HOUR0);
	ck_assert_uint_eq(O()->n_cmds, 2);
	ck_assert_uint_eq(O()->cmds[0].kind, SRV_HCMD_START);
	ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_STARTING);
	srv_leases_out_reset(l);
	srv_leases_event(l, ida, SRV_LEV_STARTED, "", HOUR0 + 1000);
	srv_leases_event(l, idb, SRV_LEV_STARTED, "", HOUR0 + 1000);
	ck_assert_uint_eq(O()->n_updates, 2);
	ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_RUNNING);
	ck_assert_int_eq(O()->updates[0].running_ms, HOUR0 + 1000);
	/* the deadline passes: running leases stay */
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0 + 120000);
	ck_assert_uint_eq(O()->n_updates, 0);
	/* the window ends: completed, stopped, and the fill settles once for both leases */
	srv_leases_tick(l, HOUR0 + H + 5);
	ck_assert_uint_eq(O()->n_updates, 2);
	ck_assert_uint_eq(O()->updates[1].state, SRV_LEASE_COMPLETED);
	ck_assert_int_eq(O()->updates[1].ended_ms, HOUR0 + H);
	ck_assert_uint_eq(O()->n_cmds, 2);
	ck_assert_uint_eq(O()->cmds[1].kind, SRV_HCMD_STOP);
	const struct srv_settlement *s = settled(1);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(s->total, 5 * H);
	/* it ran from 1 s into the window: 5 GPUs x (1 h - 1 s) delivered */
	ck_assert_int_eq(s->used, 5 * (H - 1000));
	ck_assert_uint_eq(O()->n_settles, 1);
	/* both are in the account's leases, newest first, ended */
	struct srv_lease_view rows[8];
	uint64_t cursors[8];
	ck_assert_uint_eq(srv_leases_of(l, BUYER, 0, rows, cursors, 8), 2);
	ck_assert_uint_eq(rows[0].id, idb);
	ck_assert_uint_eq(srv_leases_of(l, SELLER, 0, rows, cursors, 8), 2);
	ck_assert_uint_eq(srv_leases_of(l, 3, 0, rows, cursors, 8), 0);
	/* late outcomes change nothing */
	srv_leases_out_reset(l);
	srv_leases_event(l, ida, SRV_LEV_STOPPED, "x", HOUR0 + H + 10);
	ck_assert_uint_eq(O()->n_updates + O()->n_settles, 0);
}
END_TEST

START_TEST(no_devices_refunds_at_once)
{
	struct srv_host_spec a = spec_of("a", 2);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	srv_leases_out_reset(l);
	struct ledger_fill f = fill(3, 3);
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	/* 2 GPUs leased, 1 without a device: a cancelled lease now, the fill settles later */
	ck_assert_uint_eq(O()->n_updates, 2);
	ck_assert_uint_eq(O()->updates[1].state, SRV_LEASE_CANCELLED);
	ck_assert_str_eq(O()->updates[1].reason, "not_enough_devices");
	ck_assert_int_eq(O()->updates[1].quantity, 1);
	ck_assert_uint_eq(O()->n_settles, 0);
	/* another class, or a seller without hosts: refunded in the same call */
	srv_leases_out_reset(l);
	struct ledger_fill g = fill(4, 2);
	srv_leases_fill(l, &g, CLS + 1, HOUR0, HOUR0 - H);
	ck_assert_uint_eq(O()->n_updates, 1);
	const struct srv_settlement *s = settled(4);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(s->used, 0);
	ck_assert_int_eq(s->total, 2 * H);
	/* the same hour again: host-a's two devices are taken */
	srv_leases_out_reset(l);
	struct ledger_fill h = fill(5, 1);
	srv_leases_fill(l, &h, CLS, HOUR0, HOUR0 - H);
	ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_CANCELLED);
	ck_assert_int_eq(settled(5)->used, 0);
	/* the next hour is free again, and a scheduled lease of the buyer is extended */
	srv_leases_out_reset(l);
	struct ledger_fill k = fill(6, 2);
	srv_leases_fill(l, &k, CLS, HOUR0 + H, HOUR0 - H);
	ck_assert_uint_eq(O()->n_updates, 1);
	ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_SCHEDULED);
	ck_assert_int_eq(O()->updates[0].start_ms, HOUR0);
	ck_assert_int_eq(O()->updates[0].end_ms, HOUR0 + 2 * H);
	ck_assert_uint_eq(O()->updates[0].n_fills, 2);
	/* never started: failed at the deadline, both fills refunded (fill 3 in full: its
	 * cancelled GPU and its leased ones) */
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0);
	ck_assert_uint_eq(O()->n_cmds, 1);
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0 + 60000);
	ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_FAILED);
	ck_assert_str_eq(O()->updates[0].reason, "not_running_in_time");
	ck_assert_uint_eq(O()->cmds[0].kind, SRV_HCMD_STOP);
	ck_assert_int_eq(settled(3)->used, 0);
	ck_assert_int_eq(settled(6)->used, 0);
	ck_assert_uint_eq(O()->n_settles, 2);
}
END_TEST

START_TEST(failures_refund_what_was_not_delivered)
{
	struct srv_host_spec a = spec_of("a", 4);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	struct ledger_fill f1 = fill(1, 1), f2 = fill(2, 1);
	srv_leases_fill(l, &f1, CLS, HOUR0, HOUR0 - H);
	uint64_t id1 = O()->updates[0].id;
	srv_leases_out_reset(l);
	srv_leases_fill(l, &f2, CLS, HOUR0, HOUR0 - H);
	uint64_t id2 = O()->updates[0].id;
	ck_assert_uint_ne(id1, id2);
	ck_assert_uint_eq(O()->updates[0].devmask, 0x2); /* the next free device */
	srv_leases_tick(l, HOUR0);
	/* the hook refuses one for good, the other ends a quarter into its window */
	srv_leases_out_reset(l);
	srv_leases_event(l, id1, SRV_LEV_FAILED, "device_unhealthy", HOUR0 + 10);
	ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_FAILED);
	ck_assert_str_eq(O()->updates[0].reason, "device_unhealthy");
	ck_assert_int_eq(settled(1)->used, 0);
	ck_assert_uint_eq(O()->n_cmds, 1); /* a stop, to clean up */
	srv_leases_event(l, id2, SRV_LEV_STARTED, "", HOUR0);
	srv_leases_out_reset(l);
	srv_leases_event(l, id2, SRV_LEV_STOPPED, "ended_failed", HOUR0 + H / 4);
	ck_assert_str_eq(O()->updates[0].reason, "ended_failed");
	ck_assert_int_eq(settled(2)->used, H / 4);
	ck_assert_int_eq(settled(2)->total, H);
	ck_assert_int_eq(settled(2)->lease_id, (int64_t)id2);
	/* a window that began before the fill starts at once */
	srv_leases_out_reset(l);
	struct ledger_fill f3 = fill(3, 1);
	srv_leases_fill(l, &f3, CLS, HOUR0, HOUR0 + 5000);
	ck_assert_uint_eq(O()->n_cmds, 1);
	ck_assert_uint_eq(O()->cmds[0].kind, SRV_HCMD_START);
}
END_TEST

/* Saves l, loads it into a new book, saves that: the same bytes. */
static struct srv_leases *reload(struct srv_snap_w *w)
{
	srv_leases_save(l, w);
	struct srv_leases *m = book();
	struct srv_snap_r in = {.p = w->p, .len = w->len};
	ck_assert_msg(srv_leases_load(m, &in) == 0, "%s", in.error ? in.error : "");
	ck_assert_uint_eq(in.off, in.len);
	struct srv_snap_w w2 = {0};
	srv_leases_save(m, &w2);
	ck_assert_uint_eq(w2.len, w->len);
	ck_assert_mem_eq(w2.p, w->p, w->len);
	srv_snap_w_free(&w2);
	return m;
}

START_TEST(snapshots_reload_the_same_book)
{
	struct srv_host_spec a = spec_of("a", 4), b = spec_of("b", 3);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-b", &b), SRV_LEASE_OK);
	ck_assert_int_eq(srv_leases_set_workload(l, BUYER, "{\"command\":[\"run\"]}"),
			 SRV_LEASE_OK);
	for (int64_t i = 1; i <= 6; i++) {
		struct ledger_fill f = fill(i, i % 3 + 1);
		srv_leases_fill(l, &f, CLS, HOUR0 + (i % 2) * H, HOUR0 - H);
	}
	srv_leases_tick(l, HOUR0);
	srv_leases_event(l, 1, SRV_LEV_STARTED, "", HOUR0 + 5);
	srv_leases_tick(l, HOUR0 + 60000); /* fails the others, keeps lease 1 */
	uint32_t h;
	bool now;
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-b", &h, &now), SRV_LEASE_OK);
	struct srv_snap_w w = {0};
	struct srv_leases *m = reload(&w);
	/* the reloaded book goes on exactly as the first */
	srv_leases_out_reset(l);
	srv_leases_out_reset(m);
	srv_leases_tick(l, HOUR0 + 3 * H);
	srv_leases_tick(m, HOUR0 + 3 * H);
	ck_assert_uint_eq(O()->n_settles, srv_leases_out(m)->n_settles);
	for (size_t i = 0; i < O()->n_settles; i++)
		ck_assert_mem_eq(&O()->settles[i], &srv_leases_out(m)->settles[i],
				 sizeof(struct srv_settlement));
	srv_leases_destroy(m);
	/* every cut of the snapshot is refused, never a crash */
	for (size_t cut = 0; cut < w.len; cut += 7) {
		m = book();
		struct srv_snap_r in = {.p = w.p, .len = cut};
		ck_assert_int_eq(srv_leases_load(m, &in), -1);
		srv_leases_destroy(m);
	}
	/* flipped bytes: refused or loaded consistent */
	for (size_t i = 0; i < w.len; i += 3) {
		m = book();
		w.p[i] ^= 0x5a;
		struct srv_snap_r in = {.p = w.p, .len = w.len};
		if (srv_leases_load(m, &in) == 0) {
			ck_assert_ptr_null(srv_leases_check_hosts(m));
			srv_leases_out_reset(m);
			srv_leases_tick(m, HOUR0 + 400 * H);
			ck_assert_ptr_null(srv_leases_check_hosts(m));
		}
		w.p[i] ^= 0x5a;
		srv_leases_destroy(m);
	}
	srv_snap_w_free(&w);
}
END_TEST

/* A lease ended early frees its devices in every hour it covered; one of more than a
 * year of hours is not extended further (a snapshot could not hold it). */
START_TEST(hours_of_a_lease_are_taken_and_given_back)
{
	struct srv_host_spec a = spec_of("a", 1);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	for (int64_t i = 0; i < 3; i++) {
		struct ledger_fill f = fill(1 + i, 1);
		srv_leases_out_reset(l);
		srv_leases_fill(l, &f, CLS, HOUR0 + i * H, HOUR0 - H);
		ck_assert_uint_eq(O()->updates[0].id, 1); /* extended */
	}
	struct ledger_fill other = fill(4, 1);
	other.buyer = BUYER + 1;
	srv_leases_out_reset(l);
	srv_leases_fill(l, &other, CLS, HOUR0 + H, HOUR0 - H);
	ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_CANCELLED);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	srv_leases_tick(l, HOUR0);
	srv_leases_event(l, 1, SRV_LEV_FAILED, "device_unhealthy", HOUR0 + 10);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	/* its later hours are free again: the device, not a refund */
	for (int64_t i = 1; i < 3; i++) {
		other.fill_id = 4 + i;
		srv_leases_out_reset(l);
		srv_leases_fill(l, &other, CLS, HOUR0 + i * H, HOUR0 + 20);
		ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_SCHEDULED);
		ck_assert_uint_eq(O()->updates[0].devmask, 1);
		ck_assert_int_eq(O()->updates[0].start_ms, HOUR0 + H);
	}
	srv_leases_destroy(l);

	/* 24 * 366 hours in one lease, then a new one on the same device */
	l = book();
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	int64_t year = 24 * 366;
	for (int64_t i = 0; i <= year; i++) {
		struct ledger_fill f = fill(1 + i, 1);
		srv_leases_out_reset(l);
		srv_leases_fill(l, &f, CLS, HOUR0 + i * H, HOUR0 - H);
		ck_assert_uint_eq(O()->n_updates, 1);
		ck_assert_uint_eq(O()->updates[0].id, i < year ? 1 : 2);
	}
	ck_assert_int_eq(O()->updates[0].start_ms, HOUR0 + year * H);
	ck_assert_uint_eq(O()->updates[0].devmask, 1);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	struct srv_snap_w w = {0};
	struct srv_leases *m = reload(&w);
	ck_assert_ptr_null(srv_leases_check_hosts(m));
	/* the reloaded book extends the second lease, as the first would */
	struct ledger_fill f = fill(year + 2, 1);
	srv_leases_out_reset(m);
	srv_leases_fill(m, &f, CLS, HOUR0 + (year + 1) * H, HOUR0 - H);
	ck_assert_uint_eq(srv_leases_out(m)->updates[0].id, 2);
	srv_leases_destroy(m);
	srv_snap_w_free(&w);
}
END_TEST

/* b's lease query of account from cursor, page by page (per rows a page), against the
 * operator's answer (every lease) filtered as the query reads it: the account's live
 * leases below a live cursor then its ended ones, or its ended ones below an ended
 * cursor. */
static void account_query_agrees(struct srv_leases *b, uint32_t account, uint64_t cursor,
				 size_t per)
{
	enum { ALL = 512 };
	static struct srv_lease_view rows[ALL];
	static uint64_t cur[ALL], want[ALL], got[ALL];
	size_t n = srv_leases_of(b, 0, 0, rows, cur, ALL), n_want = 0, n_got = 0;
	ck_assert_uint_lt(n, ALL);
	for (size_t i = 0; i < n; i++) {
		bool ended = (cur[i] & SRV_LEASE_CURSOR_ENDED) != 0;
		bool below = (cursor & SRV_LEASE_CURSOR_ENDED) ? ended && cur[i] < cursor
							       : ended || cur[i] < cursor;
		if ((rows[i].buyer == account || rows[i].seller == account) &&
		    (cursor == 0 || below))
			want[n_want++] = cur[i];
	}
	for (;;) {
		ck_assert_uint_le(n_got + per, ALL);
		size_t k = srv_leases_of(b, account, cursor, rows, got + n_got, per);
		for (size_t i = 0; i < k; i++) { /* a row is the lease its cursor names */
			if (got[n_got + i] & SRV_LEASE_CURSOR_ENDED)
				ck_assert_uint_ge(rows[i].state, SRV_LEASE_COMPLETED);
			else
				ck_assert_uint_eq(rows[i].id, got[n_got + i]);
		}
		n_got += k;
		ck_assert_uint_le(n_got, n_want);
		if (k < per)
			break;
		cursor = got[n_got - 1];
	}
	ck_assert_uint_eq(n_got, n_want);
	for (size_t i = 0; i < n_got; i++)
		ck_assert_uint_eq(got[i], want[i]);
}

/* Lease queries of the walk's accounts (and of one without leases) from the first page
 * and from a cursor of anyone's, in pages of 1-4. */
static void account_queries_agree(struct srv_leases *b)
{
	static const uint32_t accounts[] = {BUYER, BUYER + 1, SELLER, 12345};
	struct srv_lease_view rows[128];
	uint64_t cur[128];
	size_t n = srv_leases_of(b, 0, 0, rows, cur, 128);
	for (size_t i = 0; i < sizeof(accounts) / sizeof(accounts[0]); i++) {
		account_query_agrees(b, accounts[i], 0, 1 + (size_t)rand() % 4);
		if (n > 0)
			account_query_agrees(b, accounts[i], cur[(size_t)rand() % n],
					     1 + (size_t)rand() % 4);
	}
}

/* Fills, clock and hook outcomes at random over few devices and hours: after each, the
 * hours index holds exactly what the live leases take (srv_leases_check_hosts), and a
 * snapshot reloads to the same book; every 50 steps, each account's lease queries
 * answer what the operator's answer holds of its leases (in the reloaded book too). */
START_TEST(hours_index_follows_random_leases)
{
	struct srv_host_spec a = spec_of("a", 4), b = spec_of("b", 2), c = spec_of("c", 3);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-b", &b), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS + 1, "host-c", &c), SRV_LEASE_OK);
	srand(20261207);
	int64_t now = HOUR0 - 2 * H, id = 1;
	uint64_t extended = 0, freed = 0, started[64], last_id = 0;
	size_t n_started = 0;
	for (int step = 0; step < 4000; step++) {
		srv_leases_out_reset(l);
		int what = rand() % 10;
		if (what < 6) {
			struct ledger_fill f = fill(id++, 1 + rand() % 4);
			f.buyer = BUYER + (uint32_t)(rand() % 2);
			int64_t hour = HOUR0 + (now - HOUR0) / H * H + (rand() % 4) * H;
			srv_leases_fill(l, &f, (uint32_t)(rand() % 4 == 0), hour, now);
			uint64_t seen = last_id; /* a lease seen before the fill: extended */
			for (size_t i = 0; i < O()->n_updates; i++) {
				const struct srv_lease_view *v = &O()->updates[i];
				extended += v->id <= seen && v->state == SRV_LEASE_SCHEDULED;
				last_id = v->id > last_id ? v->id : last_id;
			}
		} else if (what < 8) {
			now += rand() % (20 * 60000);
			srv_leases_tick(l, now);
			/* the hook answers most starts at once: started, or failed */
			size_t n_cmds = O()->n_cmds;
			for (size_t i = 0; i < n_cmds; i++) {
				const struct srv_hook_cmd *cmd = &O()->cmds[i];
				if (cmd->kind != SRV_HCMD_START || rand() % 4 == 0)
					continue;
				bool ok = rand() % 3 != 0;
				srv_leases_event(l, cmd->lease.id,
						 ok ? SRV_LEV_STARTED : SRV_LEV_FAILED, "", now);
				freed += !ok;
				if (ok)
					started[n_started++ % 64] = cmd->lease.id;
			}
		} else if (n_started > 0) {
			/* a workload that stops before its window's end */
			uint64_t counts[7], after[7];
			srv_leases_counts(l, counts);
			uint64_t lease =
				started[(size_t)rand() % (n_started < 64 ? n_started : 64)];
			srv_leases_event(l, lease, SRV_LEV_STOPPED, "", now);
			srv_leases_counts(l, after);
			freed += after[SRV_LEASE_RUNNING] < counts[SRV_LEASE_RUNNING];
		}
		const char *why = srv_leases_check_hosts(l);
		ck_assert_msg(why == NULL, "step %d: %s", step, why);
		if (step % 50 == 49)
			account_queries_agree(l);
		if (step % 500 == 499) {
			struct srv_snap_w w = {0};
			struct srv_leases *m = reload(&w);
			ck_assert_ptr_null(srv_leases_check_hosts(m));
			account_queries_agree(m);
			srv_leases_destroy(m);
			srv_snap_w_free(&w);
		}
	}
	/* the walk took every path: extensions, and leases ended early */
	ck_assert_uint_gt(freed, 100);
	ck_assert_uint_gt(extended, 100);
}
END_TEST

/* Thousands of leases over a hundred hours, then the clock ends them hour by hour:
 * the index grows several times and most of its entries are removed again. */
START_TEST(hours_index_grows_and_empties)
{
	struct srv_lease_config cfg;
	srv_lease_config_default(&cfg);
	cfg.hosts_max = 16;
	cfg.leases_max = 20000;
	cfg.leases_kept = 64;
	struct srv_leases *b;
	ck_assert_int_eq(srv_leases_create(&cfg, &b), SRV_LEASE_OK);
	for (int h = 0; h < 16; h++) {
		char name[16];
		snprintf(name, sizeof(name), "h%d", h);
		struct srv_host_spec s = spec_of(name, 4);
		ck_assert_int_eq(add_host(b, SELLER, CLS, name, &s), SRV_LEASE_OK);
	}
	srand(7);
	for (int64_t i = 1; i <= 6000; i++) {
		struct ledger_fill f = fill(i, 1 + rand() % 8);
		f.buyer = BUYER + (uint32_t)(rand() % 4);
		srv_leases_out_reset(b);
		srv_leases_fill(b, &f, CLS, HOUR0 + (rand() % 125) * H, HOUR0 - H);
		if (i % 500 == 0)
			ck_assert_ptr_null(srv_leases_check_hosts(b));
	}
	uint64_t counts[7];
	srv_leases_counts(b, counts);
	ck_assert_uint_gt(counts[SRV_LEASE_SCHEDULED], 2000);
	for (int64_t t = HOUR0; t <= HOUR0 + 126 * H; t += H / 2) {
		srv_leases_out_reset(b);
		srv_leases_tick(b, t);
		const char *why = srv_leases_check_hosts(b);
		ck_assert_msg(why == NULL, "at %lld: %s", (long long)t, why);
	}
	srv_leases_counts(b, counts);
	ck_assert_uint_eq(counts[SRV_LEASE_SCHEDULED] + counts[SRV_LEASE_STARTING] +
				  counts[SRV_LEASE_RUNNING],
			  0);
	srv_leases_destroy(b);
}
END_TEST

/* A start deadline as long as the window: a running lease is due at its end twice over
 * (its deadline's time and its end's), and ends once. */
/* A step of the clock that comes late, after leases came due at several times, starts
 * them in id order all the same (the order their updates and commands go out in). */
START_TEST(a_late_step_goes_in_id_order)
{
	struct srv_host_spec a = spec_of("a", 2);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	struct ledger_fill f = fill(1, 1);
	srv_leases_fill(l, &f, CLS, HOUR0 + H, HOUR0 - H); /* lease 1, due second */
	f = fill(2, 1);
	f.buyer = BUYER + 1;
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H); /* lease 2, due first */
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0 + H + 1000);
	ck_assert_uint_eq(O()->n_cmds, 2);
	ck_assert_uint_eq(O()->cmds[0].lease.id, 1);
	ck_assert_uint_eq(O()->cmds[1].lease.id, 2);
	ck_assert_uint_eq(O()->n_updates, 2);
	ck_assert_uint_eq(O()->updates[0].id, 1);
	ck_assert_uint_eq(O()->updates[1].id, 2);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
}
END_TEST

START_TEST(a_lease_due_twice_at_once_ends_once)
{
	srv_leases_destroy(l);
	struct srv_lease_config cfg;
	srv_lease_config_default(&cfg);
	cfg.hosts_max = 16;
	cfg.start_deadline_ms = H;
	ck_assert_int_eq(srv_leases_create(&cfg, &l), SRV_LEASE_OK);
	struct srv_host_spec a = spec_of("a", 2);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	struct ledger_fill f = fill(1, 1);
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	srv_leases_tick(l, HOUR0);
	srv_leases_event(l, 1, SRV_LEV_STARTED, "", HOUR0 + 5);
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0 + H);
	ck_assert_uint_eq(O()->n_updates, 1);
	ck_assert_uint_eq(O()->updates[0].state, SRV_LEASE_COMPLETED);
	ck_assert_uint_eq(O()->n_settles, 1);
	ck_assert_int_eq(settled(1)->used, H - 5);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
}
END_TEST

START_TEST(withdrawn_hosts_get_no_new_leases)
{
	struct srv_host_spec a = spec_of("a", 4), b = spec_of("b", 2);
	uint32_t h;
	bool added, now;
	ck_assert_int_eq(srv_leases_add_host(l, SELLER, CLS, "host-a", &a, &h, &added),
			 SRV_LEASE_OK);
	ck_assert(added);
	ck_assert_int_eq(srv_leases_add_host(l, SELLER, CLS, "host-b", &b, &h, &added),
			 SRV_LEASE_OK);
	ck_assert(added && h == 1);
	ck_assert_int_eq(srv_leases_add_host(l, SELLER, CLS, "host-b", &b, &h, &added),
			 SRV_LEASE_OK);
	ck_assert(!added); /* registered again: nothing new */
	struct ledger_fill f1 = fill(1, 2);
	srv_leases_fill(l, &f1, CLS, HOUR0, HOUR0 - H);
	ck_assert_uint_eq(O()->updates[0].host, 0);
	uint64_t id1 = O()->updates[0].id;
	/* only its seller, or 0 (the operator), withdraws it */
	ck_assert_int_eq(srv_leases_withdraw_host(l, 8, "host-a", &h, &now), SRV_LEASE_ARGS);
	ck_assert_int_eq(srv_leases_withdraw_host(l, 0, "host-z", &h, &now), SRV_LEASE_ARGS);
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-a", &h, &now), SRV_LEASE_OK);
	ck_assert(now && h == 0 && srv_leases_host(l, 0)->withdrawn);
	ck_assert_int_eq(srv_leases_withdraw_host(l, 0, "host-a", &h, &now), SRV_LEASE_OK);
	ck_assert(!now);
	ck_assert_uint_eq(srv_leases_withdrawn_count(l), 1);
	/* The buyer's next hour: not an extension of lease 1 on host-a, but host-b's two
	 * devices, and one GPU without a device. */
	srv_leases_out_reset(l);
	struct ledger_fill f2 = fill(2, 3);
	srv_leases_fill(l, &f2, CLS, HOUR0 + H, HOUR0 - H);
	ck_assert_uint_eq(O()->n_updates, 2);
	ck_assert_uint_ne(O()->updates[0].id, id1);
	ck_assert_uint_eq(O()->updates[0].host, 1);
	ck_assert_int_eq(O()->updates[0].quantity, 2);
	ck_assert_uint_eq(O()->updates[1].state, SRV_LEASE_CANCELLED);
	ck_assert_str_eq(O()->updates[1].reason, "not_enough_devices");
	ck_assert_int_eq(O()->updates[1].quantity, 1);
	/* Its devices stay its own while lease 1 lives; the name always does. */
	struct srv_host_spec c = spec_of("c", 2);
	snprintf(c.devices[1], sizeof(c.devices[1]), "GPU-a-0");
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-c", &c), SRV_LEASE_EXISTS);
	ck_assert_int_eq(add_host(l, 8, CLS, "host-a", &a), SRV_LEASE_EXISTS);
	/* Lease 1 runs on: it starts and is paid as any other. */
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0);
	ck_assert_uint_eq(O()->n_cmds, 1);
	ck_assert_uint_eq(O()->cmds[0].lease.id, id1);
	srv_leases_event(l, id1, SRV_LEV_STARTED, "", HOUR0);
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0 + H);
	ck_assert_int_eq(settled(1)->used, 2 * H);
	/* Ended: its devices are free for another host, which then holds them. */
	ck_assert_int_eq(srv_leases_add_host(l, SELLER, CLS, "host-c", &c, &h, &added),
			 SRV_LEASE_OK);
	ck_assert(added && h == 2);
	ck_assert_int_eq(srv_leases_add_host(l, SELLER, CLS, "host-a", &a, &h, &added),
			 SRV_LEASE_EXISTS);
	/* host-b withdrawn and registered again: back in service, its devices again new */
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-b", &h, &now), SRV_LEASE_OK);
	ck_assert_int_eq(srv_leases_add_host(l, SELLER, CLS, "host-b", &b, &h, &added),
			 SRV_LEASE_OK);
	ck_assert(added && h == 1 && !srv_leases_host(l, 1)->withdrawn);
	ck_assert_uint_eq(srv_leases_host_count(l), 3);
	ck_assert_uint_eq(srv_leases_withdrawn_count(l), 1);
	/* A snapshot keeps host-a withdrawn. */
	struct srv_snap_w w = {0};
	struct srv_leases *m = reload(&w);
	srv_snap_w_free(&w);
	ck_assert(srv_leases_host(m, 0)->withdrawn);
	ck_assert_uint_eq(srv_leases_withdrawn_count(m), 1);
	ck_assert(!srv_leases_host(m, 1)->withdrawn && !srv_leases_host(m, 2)->withdrawn);
	srv_leases_out_reset(m);
	struct ledger_fill f3 = fill(3, 4);
	srv_leases_fill(m, &f3, CLS, HOUR0 + 5 * H, HOUR0 + H);
	const struct srv_lease_out *o = srv_leases_out(m);
	ck_assert_uint_eq(o->n_updates, 2); /* host-b's 2, host-c's 2; none on host-a */
	ck_assert_uint_eq(o->updates[0].host, 1);
	ck_assert_uint_eq(o->updates[1].host, 2);
	ck_assert_ptr_null(srv_leases_check_hosts(m));
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	srv_leases_destroy(m);
}
END_TEST

/* A fill skips the seller's first hosts once they are full in its hour (free_from), and
 * only those: a host back in service, a lease ended, another class or hour are not
 * skipped; it extends only the buyer's leases with that seller (by_buyer). */
START_TEST(fills_skip_only_full_hosts)
{
	struct srv_host_spec a = spec_of("a", 1), x = spec_of("x", 1), b = spec_of("b", 1),
			     c = spec_of("c", 1);
	uint32_t h;
	bool now;
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS + 1, "host-x", &x), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-b", &b), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER + 1, CLS, "host-c", &c), SRV_LEASE_OK);
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-b", &h, &now), SRV_LEASE_OK);
	/* host-a taken, host-x another class, host-b withdrawn: one GPU without a device */
	struct ledger_fill f = fill(1, 2);
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	ck_assert_uint_eq(O()->n_updates, 2);
	ck_assert_uint_eq(O()->updates[0].host, 0);
	ck_assert_str_eq(O()->updates[1].reason, "not_enough_devices");
	uint64_t on_a = O()->updates[0].id;
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	/* host-b back in service: the next fill of that hour finds it */
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-b", &b), SRV_LEASE_OK);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	srv_leases_out_reset(l);
	f = fill(2, 1);
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	ck_assert_uint_eq(O()->n_updates, 1);
	ck_assert_uint_eq(O()->updates[0].host, 2);
	/* the class of host-x and another hour are not held back by the first */
	srv_leases_out_reset(l);
	f = fill(3, 1);
	srv_leases_fill(l, &f, CLS + 1, HOUR0, HOUR0 - H);
	ck_assert_uint_eq(O()->updates[0].host, 1);
	srv_leases_out_reset(l);
	f = fill(4, 1);
	srv_leases_fill(l, &f, CLS, HOUR0 + 2 * H, HOUR0 - H);
	ck_assert_uint_eq(O()->updates[0].host, 0);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	/* the buyer's lease with the other seller in that hour is not extended by a fill of
	 * this seller's next hour, its lease on host-a is */
	srv_leases_out_reset(l);
	f = fill(5, 1);
	f.seller = SELLER + 1;
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	ck_assert_uint_eq(O()->updates[0].host, 3);
	uint64_t on_c = O()->updates[0].id;
	srv_leases_out_reset(l);
	f = fill(6, 3);
	srv_leases_fill(l, &f, CLS, HOUR0 + H, HOUR0 - H);
	ck_assert_uint_eq(O()->n_updates, 3);
	ck_assert_uint_eq(O()->updates[0].id, on_a);
	ck_assert_int_eq(O()->updates[0].end_ms, HOUR0 + 2 * H);
	ck_assert_uint_eq(O()->updates[1].host, 2); /* fill 2's, extended */
	ck_assert_int_eq(O()->updates[1].end_ms, HOUR0 + 2 * H);
	ck_assert_uint_eq(O()->updates[2].state, SRV_LEASE_CANCELLED);
	srv_leases_out_reset(l);
	f = fill(7, 1);
	f.seller = SELLER + 1;
	srv_leases_fill(l, &f, CLS, HOUR0 + H, HOUR0 - H);
	ck_assert_uint_eq(O()->updates[0].id, on_c);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	/* a lease that ends gives its hours back: a fill of such an hour finds its device */
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0);
	for (size_t i = 0; i < O()->n_cmds; i++)
		srv_leases_event(l, O()->cmds[i].lease.id, SRV_LEV_FAILED, "no_device", HOUR0);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	srv_leases_out_reset(l);
	f = fill(8, 2);
	srv_leases_fill(l, &f, CLS, HOUR0 + H, HOUR0);
	ck_assert_uint_eq(O()->n_updates, 2);
	ck_assert_uint_eq(O()->updates[0].host, 0);
	ck_assert_uint_eq(O()->updates[1].host, 2);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	/* the skips kept are bounded: one per seller, class and hour filled since a lease
	 * last ended, and forgotten past 65,536 */
	for (int64_t i = 0; i < 70000; i++) {
		srv_leases_out_reset(l);
		f = fill(100 + i, 1);
		srv_leases_fill(l, &f, CLS, HOUR0 + (10 + i) * H, HOUR0);
		ck_assert_uint_eq(O()->updates[0].host, 0);
	}
	ck_assert_ptr_null(srv_leases_check_hosts(l));
}
END_TEST

/* Host i of test_full_table: one device, GPU-<i>-0. */
/* Each account's workload, among many: set, replaced, looked up (every buy order does),
 * and through a snapshot in the order they were first set. */
/* A fill extends its buyer's scheduled leases oldest first, also when they came to end
 * with the hour before in another order (here the younger one was extended first), and
 * a snapshot reloads that choice; leases that started are not extended. */
START_TEST(extensions_take_the_oldest_first)
{
	struct srv_host_spec a = spec_of("a", 4);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	uint64_t id[2];
	for (int i = 0; i < 2; i++) { /* two GPUs, then one */
		srv_leases_out_reset(l);
		struct ledger_fill f = fill(1 + i, 2 - i);
		srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
		ck_assert_uint_eq(O()->n_updates, 1);
		id[i] = O()->updates[0].id;
	}
	/* the next hour in a fill of one GPU (the one-GPU lease), then one of two */
	for (int i = 0; i < 2; i++) {
		srv_leases_out_reset(l);
		struct ledger_fill f = fill(3 + i, 1 + i);
		srv_leases_fill(l, &f, CLS, HOUR0 + H, HOUR0 - H);
		ck_assert_uint_eq(O()->n_updates, 1);
		ck_assert_uint_eq(O()->updates[0].id, id[1 - i]);
		ck_assert_int_eq(O()->updates[0].end_ms, HOUR0 + 2 * H);
		ck_assert_ptr_null(srv_leases_check_hosts(l));
	}
	/* a fill of two GPUs for the hour after: the older lease, which has two */
	struct srv_snap_w w = {0};
	struct srv_leases *m = reload(&w);
	for (int k = 0; k < 2; k++) {
		struct srv_leases *b = k == 0 ? l : m;
		srv_leases_out_reset(b);
		struct ledger_fill f = fill(5, 2);
		srv_leases_fill(b, &f, CLS, HOUR0 + 2 * H, HOUR0 - H);
		const struct srv_lease_out *o = srv_leases_out(b);
		ck_assert_uint_eq(o->n_updates, 1);
		ck_assert_uint_eq(o->updates[0].id, id[0]);
		ck_assert_int_eq(o->updates[0].end_ms, HOUR0 + 3 * H);
		ck_assert_ptr_null(srv_leases_check_hosts(b));
	}
	srv_leases_destroy(m);
	srv_snap_w_free(&w);
	/* both start; a fill of the hour after the older one's last makes a new lease */
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0);
	ck_assert_uint_eq(O()->n_cmds, 2);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	srv_leases_out_reset(l);
	struct ledger_fill f = fill(6, 2);
	srv_leases_fill(l, &f, CLS, HOUR0 + 3 * H, HOUR0);
	ck_assert_uint_eq(O()->n_updates, 1);
	ck_assert_uint_gt(O()->updates[0].id, id[1]);
	ck_assert_int_eq(O()->updates[0].start_ms, HOUR0 + 3 * H);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
}
END_TEST

/* A fill of one class extends its buyer's lease of that class with the seller, not
 * the buyer's lease of another class there that ends with the same hour. */
START_TEST(extensions_keep_to_their_class)
{
	struct srv_host_spec a = spec_of("a", 2), x = spec_of("x", 2);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS + 1, "host-x", &x), SRV_LEASE_OK);
	uint64_t id[2];
	for (uint32_t c = 0; c < 2; c++) {
		srv_leases_out_reset(l);
		struct ledger_fill f = fill(1 + c, 1);
		srv_leases_fill(l, &f, CLS + c, HOUR0, HOUR0 - H);
		ck_assert_uint_eq(O()->n_updates, 1);
		ck_assert_uint_eq(O()->updates[0].host, c);
		id[c] = O()->updates[0].id;
	}
	for (uint32_t c = 2; c-- > 0;) { /* the other class first */
		srv_leases_out_reset(l);
		struct ledger_fill f = fill(3 + c, 1);
		srv_leases_fill(l, &f, CLS + c, HOUR0 + H, HOUR0 - H);
		ck_assert_uint_eq(O()->n_updates, 1);
		ck_assert_uint_eq(O()->updates[0].id, id[c]);
		ck_assert_int_eq(O()->updates[0].end_ms, HOUR0 + 2 * H);
		ck_assert_ptr_null(srv_leases_check_hosts(l));
	}
}
END_TEST

START_TEST(workloads_of_many_accounts)
{
	char text[64];
	/* Accounts spread and in clusters (ids that differ only in high bits). */
	for (uint32_t i = 1; i <= 3000; i++) {
		uint32_t account = i % 2 ? i : i << 20;
		snprintf(text, sizeof(text), "{\"command\":[\"job-%u\"]}", i);
		ck_assert_int_eq(srv_leases_set_workload(l, account, text), SRV_LEASE_OK);
	}
	ck_assert_int_eq(srv_leases_set_workload(l, 2u << 20, "{\"command\":[\"again\"]}"),
			 SRV_LEASE_OK);
	ck_assert_int_eq(srv_leases_set_workload(l, 0, "{\"command\":[\"x\"]}"), SRV_LEASE_ARGS);
	struct srv_snap_w w = {0};
	struct srv_leases *m = reload(&w);
	srv_snap_w_free(&w);
	for (uint32_t i = 1; i <= 3000; i++) {
		uint32_t account = i % 2 ? i : i << 20;
		snprintf(text, sizeof(text), "{\"command\":[\"job-%u\"]}", i);
		if (i == 2)
			snprintf(text, sizeof(text), "{\"command\":[\"again\"]}");
		ck_assert_str_eq(srv_leases_workload(l, account), text);
		ck_assert_str_eq(srv_leases_workload(m, account), text);
		ck_assert_ptr_null(srv_leases_workload(l, i % 2 ? i << 20 : i));
	}
	srv_leases_destroy(m);
}
END_TEST

static int add_nth(struct srv_leases *b, int i, uint32_t *h)
{
	char name[24], prefix[16];
	snprintf(name, sizeof(name), "host-%d", i);
	snprintf(prefix, sizeof(prefix), "%d", i);
	struct srv_host_spec s = spec_of(prefix, 1);
	bool added;
	return srv_leases_add_host(b, SELLER, CLS, name, &s, h, &added);
}

START_TEST(full_table_reuses_a_forgotten_host)
{
	uint32_t h;
	bool now;
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(add_nth(l, i, &h), SRV_LEASE_OK);
	ck_assert_int_eq(add_nth(l, 16, &h), SRV_LEASE_FULL);
	/* A withdrawn host that nothing names: forgotten, its place taken. */
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-3", &h, &now), SRV_LEASE_OK);
	ck_assert_int_eq(add_nth(l, 16, &h), SRV_LEASE_OK);
	ck_assert_uint_eq(h, 3);
	ck_assert_str_eq(srv_leases_host(l, 3)->name, "host-16");
	ck_assert_uint_eq(srv_leases_host_named(l, "host-3"), UINT32_MAX);
	ck_assert_uint_eq(srv_leases_withdrawn_count(l), 0);
	ck_assert_int_eq(add_nth(l, 3, &h), SRV_LEASE_FULL);
	/* One that a live lease names keeps its place, and so does one that an ended lease
	 * kept for queries names, until the ring has moved past it. */
	struct ledger_fill f = fill(1, 1);
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	ck_assert_uint_eq(O()->updates[0].host, 0);
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-0", &h, &now), SRV_LEASE_OK);
	ck_assert_int_eq(add_nth(l, 17, &h), SRV_LEASE_FULL);
	srv_leases_tick(l, HOUR0);
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0 + 60000); /* not running in time: ended */
	ck_assert_int_eq(settled(1)->used, 0);
	ck_assert_int_eq(add_nth(l, 17, &h), SRV_LEASE_FULL);
	struct srv_snap_w w = {0};
	struct srv_leases *m = reload(&w);
	srv_snap_w_free(&w);
	ck_assert_int_eq(add_nth(m, 17, &h), SRV_LEASE_FULL);
	srv_leases_destroy(m);
	/* 64 more ended leases (a seller without hosts: cancelled) fill the ring */
	for (int64_t i = 2; i < 2 + 64; i++) {
		struct ledger_fill g = fill(i, 1);
		g.seller = SELLER + 1;
		srv_leases_fill(l, &g, CLS, HOUR0 + H, HOUR0);
	}
	ck_assert_int_eq(add_nth(l, 17, &h), SRV_LEASE_OK);
	ck_assert_uint_eq(h, 0);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	/* the same after a reload (the names of the ring are counted again) */
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-17", &h, &now), SRV_LEASE_OK);
	m = reload(&w);
	srv_snap_w_free(&w);
	ck_assert_int_eq(add_nth(m, 18, &h), SRV_LEASE_OK);
	ck_assert_uint_eq(h, 0);
	srv_leases_destroy(m);
}
END_TEST

/* The hosts of seller, as srv_leases_hosts_of() lists them in pages of two, written
 * "h,h,...". */
static const char *hosts_of(struct srv_leases *b, uint32_t seller)
{
	static char text[128];
	uint32_t hs[2];
	uint64_t cursors[2], cursor = 0;
	size_t at = 0;
	text[0] = '\0';
	for (;;) {
		size_t n = srv_leases_hosts_of(b, seller, cursor, hs, cursors, 2);
		for (size_t i = 0; i < n; i++) {
			ck_assert_uint_eq(cursors[i], (uint64_t)hs[i] + 1);
			at += (size_t)snprintf(text + at, sizeof(text) - at, "%s%u", at ? "," : "",
					       hs[i]);
		}
		if (n < 2)
			return text;
		cursor = cursors[n - 1];
	}
}

/* The leases of account, as srv_leases_of() lists them in pages of per rows from
 * cursor, written "id,id,...". */
static const char *leases_paged(uint32_t account, uint64_t cursor, size_t per)
{
	static char text[256];
	struct srv_lease_view rows[16];
	uint64_t cursors[16];
	size_t at = 0;
	text[0] = '\0';
	for (;;) {
		size_t n = srv_leases_of(l, account, cursor, rows, cursors, per);
		for (size_t i = 0; i < n; i++)
			at += (size_t)snprintf(text + at, sizeof(text) - at, "%s%llu",
					       at ? "," : "", (unsigned long long)rows[i].id);
		if (n < per)
			return text;
		cursor = cursors[n - 1];
	}
}

/* Leases come page by page: live ones newest first, then ended ones; a page resumes
 * after the last row of the one before, also when leases ended in between. */
START_TEST(leases_in_pages)
{
	struct srv_host_spec a = spec_of("a", 3);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	/* Leases 1-3 live; 4 (the second GPU of fill 3) and 5 without a device, ended. */
	for (int64_t id = 1; id <= 4; id++) {
		struct ledger_fill f = fill(id, id == 3 ? 2 : 1);
		srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	}
	ck_assert_str_eq(leases_paged(BUYER, 0, 16), "3,2,1,5,4");
	for (size_t per = 1; per <= 5; per++) {
		ck_assert_str_eq(leases_paged(BUYER, 0, per), "3,2,1,5,4");
		ck_assert_str_eq(leases_paged(SELLER, 0, per), "3,2,1,5,4");
		ck_assert_str_eq(leases_paged(0, 0, per), "3,2,1,5,4");
		ck_assert_str_eq(leases_paged(3, 0, per), "");
	}
	struct srv_lease_view rows[2];
	uint64_t cursors[2];
	ck_assert_uint_eq(srv_leases_of(l, BUYER, 0, rows, cursors, 2), 2);
	ck_assert_uint_eq(cursors[1], 2);
	/* Ended cursors count endings; one past the last is the same as the last. */
	ck_assert_str_eq(leases_paged(BUYER, SRV_LEASE_CURSOR_ENDED | 1000, 16), "5,4");
	ck_assert_str_eq(leases_paged(BUYER, SRV_LEASE_CURSOR_ENDED | 1, 16), "4");
	ck_assert_str_eq(leases_paged(BUYER, SRV_LEASE_CURSOR_ENDED | 0, 16), "");
	/* Leases 1-3 end (started, never running) before the next page: it holds the ended
	 * ones, lease 3 again (it ended after the first page showed it). */
	srv_leases_out_reset(l);
	srv_leases_tick(l, HOUR0 + H + 5);
	ck_assert_str_eq(leases_paged(BUYER, cursors[1], 1), "1,5,4");
	srv_leases_tick(l, HOUR0 + H + 60005); /* the start deadline passes */
	const char *now = leases_paged(BUYER, SRV_LEASE_CURSOR_ENDED | 1000, 16);
	ck_assert_uint_eq(strlen(now), strlen("3,2,1,5,4"));
	char all[32];
	snprintf(all, sizeof(all), "%s", now);
	ck_assert_str_eq(leases_paged(BUYER, cursors[1], 1), all);
}
END_TEST

/* The hosts the leases of the last call are on, written "h,h,...". */
static const char *hosts_leased(void)
{
	static char text[128];
	size_t at = 0;
	text[0] = '\0';
	for (size_t i = 0; i < O()->n_updates; i++)
		at += (size_t)snprintf(text + at, sizeof(text) - at, "%s%u", i ? "," : "",
				       O()->updates[i].host);
	return text;
}

static void fill_of(uint32_t seller, int64_t id, int64_t qty)
{
	struct ledger_fill f = fill(id, qty);
	f.seller = seller;
	srv_leases_out_reset(l);
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
}

/* Each seller's hosts are found apart from the others', in the order of the table, also
 * when a host of another seller takes a forgotten host's place, and after a reload. */
START_TEST(sellers_hosts_in_table_order)
{
	static const struct {
		uint32_t seller;
		const char *name;
		uint32_t devices;
	} hs[] = {{7, "a0", 2}, {8, "b0", 2}, {5, "c0", 1}, {7, "a1", 2}, {8, "b1", 2}};
	for (size_t i = 0; i < 5; i++) {
		struct srv_host_spec s = spec_of(hs[i].name, hs[i].devices);
		ck_assert_int_eq(add_host(l, hs[i].seller, CLS, hs[i].name, &s), SRV_LEASE_OK);
		ck_assert_ptr_null(srv_leases_check_hosts(l));
	}
	ck_assert_str_eq(hosts_of(l, 7), "0,3");
	ck_assert_str_eq(hosts_of(l, 8), "1,4");
	ck_assert_str_eq(hosts_of(l, 5), "2");
	ck_assert_str_eq(hosts_of(l, 6), "");
	ck_assert_str_eq(hosts_of(l, 0), "0,1,2,3,4");
	fill_of(7, 1, 4);
	ck_assert_str_eq(hosts_leased(), "0,3");
	fill_of(8, 2, 3);
	ck_assert_str_eq(hosts_leased(), "1,4");
	/* A full table: seller 9's host takes the place of seller 5's, withdrawn. */
	uint32_t h;
	for (int i = 5; i < 16; i++)
		ck_assert_int_eq(add_nth(l, i, &h), SRV_LEASE_OK);
	bool now;
	ck_assert_int_eq(srv_leases_withdraw_host(l, 5, "c0", &h, &now), SRV_LEASE_OK);
	struct srv_host_spec d = spec_of("d0", 1);
	ck_assert_int_eq(add_host(l, 9, CLS, "d0", &d), SRV_LEASE_OK);
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	ck_assert_str_eq(hosts_of(l, 5), "");
	ck_assert_str_eq(hosts_of(l, 9), "2");
	ck_assert_str_eq(hosts_of(l, 7), "0,3,5,6,7,8,9,10,11,12,13,14,15");
	fill_of(9, 3, 1);
	ck_assert_str_eq(hosts_leased(), "2");
	struct srv_snap_w w = {0};
	struct srv_leases *m = reload(&w);
	srv_snap_w_free(&w);
	ck_assert_ptr_null(srv_leases_check_hosts(m));
	ck_assert_str_eq(hosts_of(m, 9), "2");
	ck_assert_str_eq(hosts_of(m, 8), "1,4");
	srv_leases_destroy(m);
}
END_TEST

/* hosts_per_seller_max: a seller at its limit registers a new host only in the place of
 * one of its own withdrawn hosts that nothing names any more; other sellers are not
 * held back; a host back in service is not a new one. */
START_TEST(a_seller_has_at_most_its_share)
{
	srv_leases_destroy(l);
	per_seller = 3;
	l = book();
	uint32_t h;
	bool now;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(add_nth(l, i, &h), SRV_LEASE_OK);
	ck_assert_int_eq(add_nth(l, 3, &h), SRV_LEASE_SELLER_FULL);
	struct srv_host_spec b = spec_of("b", 1);
	ck_assert_int_eq(add_host(l, 8, CLS, "b0", &b), SRV_LEASE_OK);
	ck_assert_str_eq(hosts_of(l, 8), "3");
	/* host-1, withdrawn and named by nothing, makes room: host-3 takes its place. */
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-1", &h, &now), SRV_LEASE_OK);
	ck_assert_int_eq(add_nth(l, 3, &h), SRV_LEASE_OK);
	ck_assert_uint_eq(h, 1);
	ck_assert_uint_eq(srv_leases_host_named(l, "host-1"), UINT32_MAX);
	ck_assert_str_eq(hosts_of(l, SELLER), "0,1,2");
	ck_assert_ptr_null(srv_leases_check_hosts(l));
	/* host-0 is leased, then withdrawn: a lease names it, so it makes no room. */
	fill_of(SELLER, 1, 1);
	ck_assert_str_eq(hosts_leased(), "0");
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-0", &h, &now), SRV_LEASE_OK);
	ck_assert_int_eq(add_nth(l, 4, &h), SRV_LEASE_SELLER_FULL);
	/* Back in service: not a new host. */
	ck_assert_int_eq(add_nth(l, 0, &h), SRV_LEASE_OK);
	ck_assert_uint_eq(h, 0);
	/* The same after a reload; without a limit (0), up to hosts_max. */
	struct srv_snap_w w = {0};
	struct srv_leases *m = reload(&w);
	ck_assert_int_eq(add_nth(m, 4, &h), SRV_LEASE_SELLER_FULL);
	srv_leases_destroy(m);
	struct srv_lease_config cfg;
	srv_lease_config_default(&cfg);
	cfg.hosts_max = 16;
	cfg.hosts_per_seller_max = 0;
	ck_assert_int_eq(srv_leases_create(&cfg, &m), SRV_LEASE_OK);
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_int_eq(srv_leases_load(m, &in), 0);
	for (int i = 4; i < 16; i++)
		ck_assert_int_eq(add_nth(m, i, &h), SRV_LEASE_OK);
	ck_assert_int_eq(add_nth(m, 16, &h), SRV_LEASE_FULL);
	srv_leases_destroy(m);
	srv_snap_w_free(&w);
}
END_TEST

/* A snapshot in which a withdrawn host with a live lease shares a device with another
 * host (which registration never allows) is refused. */
START_TEST(snapshot_refuses_a_device_on_two_hosts)
{
	struct srv_host_spec a = spec_of("a", 1), x = spec_of("x", 1);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-x", &x), SRV_LEASE_OK);
	struct ledger_fill f = fill(1, 1);
	srv_leases_fill(l, &f, CLS, HOUR0, HOUR0 - H);
	uint32_t h;
	bool now;
	ck_assert_int_eq(srv_leases_withdraw_host(l, SELLER, "host-a", &h, &now), SRV_LEASE_OK);
	struct srv_snap_w w = {0};
	srv_leases_save(l, &w);
	size_t at = 0;
	while (at + 7 <= w.len && memcmp(w.p + at, "GPU-x-0", 7) != 0)
		at++;
	ck_assert_uint_lt(at + 7, w.len + 1);
	memcpy(w.p + at, "GPU-a-0", 7);
	struct srv_leases *m = book();
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_int_eq(srv_leases_load(m, &in), -1);
	ck_assert_str_eq(in.error, "a device in the snapshot is on two hosts at once");
	srv_leases_destroy(m);
	srv_snap_w_free(&w);
}
END_TEST

/* Refused: two live leases of one device in one hour, and a lease covering more hours
 * than it has parts. */
START_TEST(snapshot_refuses_a_device_leased_twice)
{
	struct srv_host_spec a = spec_of("a", 2);
	ck_assert_int_eq(add_host(l, SELLER, CLS, "host-a", &a), SRV_LEASE_OK);
	struct ledger_fill f1 = fill(1, 1), f2 = fill(2, 1);
	f2.buyer = BUYER + 1;
	srv_leases_fill(l, &f1, CLS, HOUR0, HOUR0 - H);
	srv_leases_fill(l, &f2, CLS, HOUR0, HOUR0 - H);
	struct srv_snap_w w = {0};
	srv_leases_save(l, &w);
	/* lease 2: id, buyer, seller, host 0, class 0, devices 0x2 (little-endian) */
	uint8_t want[28] = {2};
	want[8] = BUYER + 1;
	want[12] = SELLER;
	want[24] = 2;
	size_t at = 0;
	while (at + sizeof(want) <= w.len && memcmp(w.p + at, want, sizeof(want)) != 0)
		at++;
	ck_assert_uint_le(at + sizeof(want), w.len);
	struct srv_leases *m = book();
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_int_eq(srv_leases_load(m, &in), 0); /* as saved */
	srv_leases_destroy(m);
	w.p[at + 24] = 1;
	m = book();
	in = (struct srv_snap_r){.p = w.p, .len = w.len};
	ck_assert_int_eq(srv_leases_load(m, &in), -1);
	ck_assert_str_eq(in.error, "two live leases in the snapshot hold one device in one hour");
	srv_leases_destroy(m);
	w.p[at + 24] = 2;
	/* lease 2 covering the hour before too, with the one part of one hour */
	uint8_t hours[16];
	for (int i = 0; i < 16; i++)
		hours[i] = (uint8_t)((uint64_t)HOUR0 >> (8 * (i % 8)));
	while (at + 16 <= w.len && memcmp(w.p + at, hours, 16) != 0)
		at++;
	ck_assert_uint_le(at + 16, w.len);
	for (int i = 0; i < 8; i++)
		w.p[at + (size_t)i] = (uint8_t)((uint64_t)(HOUR0 - H) >> (8 * i));
	m = book();
	in = (struct srv_snap_r){.p = w.p, .len = w.len};
	ck_assert_int_eq(srv_leases_load(m, &in), -1);
	ck_assert_str_eq(in.error, "a live lease in the snapshot is invalid");
	srv_leases_destroy(m);
	srv_snap_w_free(&w);
}
END_TEST

START_TEST(workloads_and_vendors_are_checked)
{
	static const char *const good[] = {
		"{\"command\": [\"/bin/job\", \"--epochs\", \"3\"]}",
		"{\"command\": [\"x\"], \"env\": {\"A\": \"1\", \"B\": \"\"}}",
	};
	static const char *const bad[] = {
		"",
		"[]",
		"{}",
		"{\"command\": []}",
		"{\"command\": \"x\"}",
		"{\"command\": [1]}",
		"{\"command\": [\"x\"], \"env\": {\"A\": 1}}",
		"{\"command\": [\"x\"], \"env\": {\"\": \"1\"}}",
		"{\"command\": [\"x\"], \"image\": \"y\"}",
		"{\"command\": [\"x\"], \"command\": [\"y\"]}",
		"{\"command\": [\"x\"]} x",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(srv_workload_ok((const uint8_t *)good[i], strlen(good[i])), "%s",
			      good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!srv_workload_ok((const uint8_t *)bad[i], strlen(bad[i])), "%s",
			      bad[i]);
	char big[SRV_WORKLOAD_BYTES_MAX + 32];
	int n = snprintf(big, sizeof(big), "{\"command\": [\"%0*d\"]}", SRV_WORKLOAD_BYTES_MAX - 16,
			 0);
	ck_assert(!srv_workload_ok((const uint8_t *)big, (size_t)n));
	ck_assert(srv_vendor_ok("nvidia") && srv_vendor_ok("amd") && srv_vendor_ok("ascend") &&
		  srv_vendor_ok("cambricon"));
	ck_assert(!srv_vendor_ok("NVIDIA") && !srv_vendor_ok(""));
}
END_TEST

static Suite *lease_suite(void)
{
	Suite *s = suite_create("server-lease");
	TCase *tc = tcase_create("lease");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, hosts_are_checked);
	tcase_add_test(tc, workloads_and_vendors_are_checked);
	tcase_add_test(tc, fill_to_completed_lease_pays_the_seller);
	tcase_add_test(tc, no_devices_refunds_at_once);
	tcase_add_test(tc, failures_refund_what_was_not_delivered);
	tcase_add_test(tc, snapshots_reload_the_same_book);
	tcase_add_test(tc, withdrawn_hosts_get_no_new_leases);
	tcase_add_test(tc, fills_skip_only_full_hosts);
	tcase_add_test(tc, extensions_take_the_oldest_first);
	tcase_add_test(tc, extensions_keep_to_their_class);
	tcase_add_test(tc, hours_of_a_lease_are_taken_and_given_back);
	tcase_add_test(tc, hours_index_follows_random_leases);
	tcase_add_test(tc, hours_index_grows_and_empties);
	tcase_add_test(tc, a_lease_due_twice_at_once_ends_once);
	tcase_add_test(tc, a_late_step_goes_in_id_order);
	tcase_add_test(tc, full_table_reuses_a_forgotten_host);
	tcase_add_test(tc, sellers_hosts_in_table_order);
	tcase_add_test(tc, leases_in_pages);
	tcase_add_test(tc, a_seller_has_at_most_its_share);
	tcase_add_test(tc, workloads_of_many_accounts);
	tcase_add_test(tc, snapshot_refuses_a_device_on_two_hosts);
	tcase_add_test(tc, snapshot_refuses_a_device_leased_twice);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(lease_suite());
}
