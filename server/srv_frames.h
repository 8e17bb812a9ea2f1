/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The frames gridexd exchanges with clients, as pure functions: splitting a
 * ClientFrame into its one field without unpacking what is signed, and
 * encoding every ServerFrame (4-byte length prefix included) into a
 * caller's buffer. No allocation except the query answers and lease frames,
 * no I/O.
 */
#ifndef GRIDEX_SRV_FRAMES_H
#define GRIDEX_SRV_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "matching.h"
#include "srv_core.h"
#include "srv_lease.h"

/* ClientFrame field numbers (proto/gridex.proto). */
enum srv_client_field {
	SRV_CF_REQUEST = 1,
	SRV_CF_SUBSCRIBE = 2,
	SRV_CF_UNSUBSCRIBE = 3,
};

/* A report, an update or a trade fits in this (with its header). */
#define SRV_FRAME_SMALL_MAX 512

/*
 * A ClientFrame must hold exactly one field, once: one tag byte, a varint
 * length, and exactly that many bytes. On success sets *field and the inner
 * bytes (pointing into buf) and returns 0; returns -1 for anything else.
 */
__attribute__((warn_unused_result)) int srv_client_frame_split(const uint8_t *buf, size_t len,
							       int *field, const uint8_t **inner,
							       size_t *inner_len);

/* Each returns the frame's total length (header included), or 0 if it does not fit in cap. */
size_t srv_frame_ack(uint8_t *buf, size_t cap, uint32_t account, uint64_t nonce, uint64_t sequence);
size_t srv_frame_reject(uint8_t *buf, size_t cap, uint32_t account, uint64_t nonce, uint32_t reason,
			const char *detail);
size_t srv_frame_report(uint8_t *buf, size_t cap, const struct srv_report *r, const char *product,
			uint64_t sequence, int64_t time_ms);
size_t srv_frame_md(uint8_t *buf, size_t cap, const struct srv_md *m, const char *product);
size_t srv_frame_snapshot(uint8_t *buf, size_t cap, const char *product, uint64_t sequence,
			  const struct matching_level_view *bids, size_t n_bids,
			  const struct matching_level_view *asks, size_t n_asks);

/* The most bytes srv_frame_snapshot() needs for n levels in all. */
size_t srv_frame_snapshot_bound(const char *product, size_t n_levels);

/*
 * Who a query answer (a QueryResult) goes to, and how it is cut: its rows are
 * the first ones that fit in a frame body of bytes_max, and it is marked
 * truncated when that left any out, or when cut (the core found more rows
 * than query_rows_max). A truncated answer's next is the cursor of its last
 * row (cursors: one per row, NULL when the query has no rows).
 */
struct srv_answer {
	uint32_t account;
	uint64_t nonce;
	bool cut;
	size_t bytes_max; /* at most WIRE_FRAME_BYTES_CEILING */
	const uint64_t *cursors;
};

/*
 * A query's answer: rows (orders or fills) as execution reports named by
 * product(book, ctx), and for balance queries one Balance. Returns a
 * malloc'ed frame (header included) and its length in *len, or NULL when out
 * of memory.
 */
uint8_t *srv_frame_result(const struct srv_answer *a, uint32_t query_type,
			  const struct srv_report *rows, size_t n_rows, int64_t available,
			  int64_t reserved, const char *currency,
			  const char *(*product)(uint32_t book, void *ctx), void *ctx, size_t *len);

/* The names of a lease's host, class, vendor and devices (strings of the caller). */
struct srv_lease_names {
	const char *host, *accelerator, *vendor;
	const char *devices[SRV_HOST_DEVICES_MAX];
	size_t n_devices;
};

/*
 * Leases as ServerFrames: with an answer a, one QueryResult holding views[0..n)
 * (cut as a says); without (NULL), one frame per view with its Lease, back to
 * back. names() resolves each view. Returns a malloc'ed buffer (headers included) and its
 * length in *len, or NULL when out of memory.
 */
uint8_t *srv_frame_leases(const struct srv_answer *a, const struct srv_lease_view *views, size_t n,
			  void (*names)(const struct srv_lease_view *v, struct srv_lease_names *out,
					void *ctx),
			  void *ctx, size_t *len);

/* One host of a QUERY_HOSTS answer: the lease book's view, its class's name, and how
 * many live leases it has. */
struct srv_host_row {
	const struct srv_host_view *host;
	const char *accelerator;
	uint32_t live_leases;
};

/* A QUERY_HOSTS answer holding rows[0..n) (cut as a says). Returns a malloc'ed buffer
 * (header included) and its length in *len, or NULL when out of memory. */
uint8_t *srv_frame_hosts(const struct srv_answer *a, const struct srv_host_row *rows, size_t n,
			 size_t *len);

#endif
