/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshots of the core's state (docs/durability.md): what a restart loads
 * instead of replaying the journal from its beginning.
 *
 * File: the 8-byte magic "GRIDEXS2" (the last byte is the format's version), then
 *   u64 seq | i64 time_ms | 16-byte settings fingerprint | u64 body length |
 *   body | 32-byte BLAKE2b-256 of everything before it
 * all little-endian. seq is the last journal record the state includes and
 * time_ms that record's time. The body is the core's state (srv_core_save)
 * followed by the settlement items the ledger had not confirmed when the
 * snapshot was taken (srv_wjob.h) and, in format 2, the id of the last batch
 * it had. A file whose hash does not match is not read at all.
 *
 * The writer appends to a growing memory buffer; the reader checks every
 * length against what is left and, once anything is short or out of range,
 * fails for good (every later read returns zero), so the loaders check once
 * at the end. Nothing read from a file is trusted before it is checked.
 */
#ifndef GRIDEX_SRV_SNAPSHOT_H
#define GRIDEX_SRV_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_SNAPSHOT_MAGIC "GRIDEXS2"
/* Format 1, before unsettled fills kept their product and time (ledger.fills): the
 * same but for those items, so it is read when it holds none (srv_wjob_load). */
#define SRV_SNAPSHOT_MAGIC_1	  "GRIDEXS1"
#define SRV_SNAPSHOT_MAGIC_BYTES  8
#define SRV_SNAPSHOT_HASH_BYTES	  32
#define SRV_SNAPSHOT_HEADER_BYTES (SRV_SNAPSHOT_MAGIC_BYTES + 8 + 8 + 16 + 8)

struct srv_snap_w {
	uint8_t *p;
	size_t len, cap;
	bool failed; /* out of memory */
};

struct srv_snap_r {
	const uint8_t *p;
	size_t len, off;
	const char *error; /* the first problem; NULL while fine */
};

void srv_snap_put(struct srv_snap_w *w, const void *data, size_t len);
void srv_snap_u8(struct srv_snap_w *w, uint8_t v);
void srv_snap_u32(struct srv_snap_w *w, uint32_t v);
void srv_snap_u64(struct srv_snap_w *w, uint64_t v);
void srv_snap_i64(struct srv_snap_w *w, int64_t v);
void srv_snap_w_free(struct srv_snap_w *w);

/* Reads (zero once r->error is set). */
void srv_snap_get(struct srv_snap_r *r, void *out, size_t len);
uint8_t srv_snap_get_u8(struct srv_snap_r *r);
uint32_t srv_snap_get_u32(struct srv_snap_r *r);
uint64_t srv_snap_get_u64(struct srv_snap_r *r);
int64_t srv_snap_get_i64(struct srv_snap_r *r);
/* A count of items of at least item_bytes each that must not exceed max. */
uint32_t srv_snap_get_count(struct srv_snap_r *r, size_t item_bytes, uint32_t max);
/* Records why the snapshot is refused (the first reason wins). */
void srv_snap_fail(struct srv_snap_r *r, const char *why);

struct srv_snapshot_info {
	uint64_t seq;
	int64_t time_ms;
	uint8_t settings[16];
	uint8_t format; /* 1 or 2: the magic's last digit (srv_snapshot_read) */
};

/*
 * Begins a snapshot in w: the header of seq, time and settings, with the
 * body's length filled in by srv_snapshot_finish(), which also appends the
 * hash. Between them the caller appends the body.
 */
void srv_snapshot_begin(struct srv_snap_w *w, const struct srv_snapshot_info *info);
void srv_snapshot_finish(struct srv_snap_w *w);

/*
 * Writes a finished snapshot as dir/snapshot-<seq>: a temporary file,
 * fsync, rename into place, fsync of the directory. 0, or -1 with errno.
 */
int srv_snapshot_write(const char *dir, uint64_t seq, const struct srv_snap_w *w);

/*
 * Reads a snapshot file whole and checks its magic (format 1 or 2), length and
 * hash. On success *data (free it) holds the file, info its header and body a
 * reader over its body. -1 with the reason in *error otherwise.
 */
int srv_snapshot_read(const char *path, uint8_t **data, struct srv_snapshot_info *info,
		      struct srv_snap_r *body, const char **error);

#endif
