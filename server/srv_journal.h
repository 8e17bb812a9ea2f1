/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The journal: append-only files of every sequenced input of gridexd, the
 * source of truth from which a restart rebuilds the books, risk, nonces and
 * balances by replaying through the same deterministic core
 * (docs/durability.md).
 *
 * The journal is a series of segments in journal_dir, each named
 * journal-<its first sequence, 20 digits>; a new one starts when the current
 * one passes journal_segment_bytes. Segment: the 8-byte magic "GRIDEXJ1",
 * then records:
 *   u32 payload length | u32 CRC32C(payload) | payload
 *   payload = u64 seq | i64 time_ms | u8 kind | body
 * all little-endian. Bodies: GENESIS: u64 sequence base, u32 count, then per
 * participant u32 id, u8 name length, name, 32-byte key, i64 balance, then
 * the 16-byte fingerprint of the settings that decide what the core does;
 * REQUEST: u16 length, the signed request body exactly as received, its
 * 64-byte signature; TICK: nothing (the clock moved to time_ms); LEASE: u64
 * lease id, u8 event (enum srv_lease_event_kind), u8 code length (0 .. 31),
 * the hook's error code.
 * Reading stops at the first record that is short or fails its CRC: a torn
 * tail from a crash (opening for append truncates it).
 */
#ifndef GRIDEX_SRV_JOURNAL_H
#define GRIDEX_SRV_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srv_auth.h"

#define SRV_JOURNAL_MAGIC	     "GRIDEXJ1"
#define SRV_JOURNAL_MAGIC_BYTES	     8
#define SRV_JOURNAL_PAYLOAD_MAX	     (16u << 20) /* a genesis of ~250k participants */
#define SRV_JOURNAL_PARTICIPANTS_MAX 200000

#define SRV_JOURNAL_SETTINGS_BYTES 16

enum srv_journal_kind {
	SRV_J_GENESIS = 1,
	SRV_J_REQUEST,
	SRV_J_TICK,
	SRV_J_LEASE, /* the outcome of a provisioning hook call */
};

struct srv_journal_participant {
	uint32_t id;
	char name[SRV_ACCOUNT_NAME_BYTES_MAX + 1];
	uint8_t public_key[SRV_PUBLIC_KEY_BYTES];
	int64_t balance;
};

/* One record as read or to be written. */
struct srv_jrec {
	uint8_t kind;
	uint64_t seq;
	int64_t time_ms;
	/* REQUEST */
	uint16_t body_len;
	uint8_t body[SRV_BODY_BYTES_CEILING];
	uint8_t signature[SRV_SIGNATURE_BYTES];
	/* LEASE */
	uint64_t lease_id;
	uint8_t lease_event;
	char lease_code[32];
	/* GENESIS: participants (owned by the reader or the caller) */
	uint64_t seq_base;
	uint8_t settings[SRV_JOURNAL_SETTINGS_BYTES];
	struct srv_journal_participant *participants;
	uint32_t n_participants;
};

struct srv_journal_stats {
	uint64_t records, first_seq, last_seq;
	int64_t first_ms, last_ms;
	uint64_t requests, ticks, genesis;
	uint64_t valid_bytes; /* the file's length up to the last good record */
	uint64_t torn_bytes;  /* bytes after it (a torn or corrupt tail) */
	char torn_reason[96];
};

enum srv_journal_status {
	SRV_JOURNAL_OK = 0,
	SRV_JOURNAL_IO,	 /* errno tells */
	SRV_JOURNAL_BAD, /* not a journal (magic), or a record that decodes to nonsense */
	SRV_JOURNAL_NOMEM,
	SRV_JOURNAL_MISSING, /* no file (scan only) */
};

/* CRC32C (Castagnoli), as iSCSI and ext4 use it. */
uint32_t srv_crc32c(uint32_t crc, const void *data, size_t len);

/*
 * Reads every good record of path in order, calling each(rec, ctx) (stop with
 * a non-zero return, which scan returns). A short or corrupt tail ends the
 * scan (stats->torn_bytes, torn_reason); records out of sequence (seq not
 * increasing) are BAD. Errors: MISSING, IO, BAD, NOMEM.
 */
__attribute__((warn_unused_result)) int
srv_journal_scan(const char *path, int (*each)(const struct srv_jrec *r, void *ctx), void *ctx,
		 struct srv_journal_stats *stats);

struct srv_journal;

/* Opens path for appending after valid_bytes (a torn tail is cut off; 0 or a
 * missing file: a new journal with its magic). Errors: IO, NOMEM. */
__attribute__((warn_unused_result)) int srv_journal_open(const char *path, uint64_t valid_bytes,
							 struct srv_journal **out);
void srv_journal_close(struct srv_journal *j);

/* Buffers one record (written at the next sync). Errors: NOMEM, BAD (too big). */
__attribute__((warn_unused_result)) int srv_journal_append(struct srv_journal *j,
							   const struct srv_jrec *r);

/* Writes what is buffered and fdatasync()s: one sync covers every record appended
 * since the last. Errors: IO (the journal can no longer be trusted: stop). */
__attribute__((warn_unused_result)) int srv_journal_sync(struct srv_journal *j);

/* The file's length as of the last sync. */
uint64_t srv_journal_size(const struct srv_journal *j);

/*
 * The numbers N of dir's files named prefix followed by N in 20 digits (a
 * journal segment's first sequence, a snapshot's last), ascending, in *nums
 * (free it). A missing dir has none. Errors: IO, NOMEM.
 */
__attribute__((warn_unused_result)) int srv_journal_list(const char *dir, const char *prefix,
							 uint64_t **nums, size_t *n);

/* fsync() of a directory: a file created or renamed in it survives a crash. Errors: IO. */
__attribute__((warn_unused_result)) int srv_journal_sync_dir(const char *dir);

#endif
