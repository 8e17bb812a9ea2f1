/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The journal: CRC32C against its reference value; records written and read
 * back field by field; a torn tail (every cut inside the last record) and a
 * corrupt byte end the scan at the last good record, and reopening cuts the
 * rest; a file that is not a journal and sequences that go back are refused;
 * replaying a journal of 3,000 random requests into a fresh core rebuilds
 * exactly the live core's books, balances and nonces. A snapshot taken in
 * the middle of 3,000 random requests, loaded into a fresh core, answers
 * the second half exactly as the live core does; damaged snapshots are
 * refused, and none of 2,000 re-hashed mutations crashes or loads a state
 * that breaks an invariant.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <sodium.h>

#include "gridex.pb-c.h"
#include "srv_config.h"
#include "srv_core.h"
#include "srv_journal.h"
#include "srv_server.h"
#include "srv_snapshot.h"
#include "tap.h"

static char path[64];

static void setup(void)
{
	snprintf(path, sizeof(path), "/tmp/gridex-journal-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
}

static void teardown(void)
{
	unlink(path);
}

START_TEST(crc32c_reference)
{
	ck_assert_uint_eq(srv_crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(srv_crc32c(0, "", 0), 0);
	/* Incremental equals one pass. */
	ck_assert_uint_eq(srv_crc32c(srv_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}
END_TEST

static struct srv_jrec *request(uint64_t seq, uint8_t fill)
{
	static struct srv_jrec r;
	memset(&r, 0, sizeof(r));
	r.kind = SRV_J_REQUEST;
	r.seq = seq;
	r.time_ms = 1000 + (int64_t)seq;
	r.body_len = (uint16_t)(10 + seq % 50);
	memset(r.body, fill, r.body_len);
	memset(r.signature, fill ^ 0xff, sizeof(r.signature));
	return &r;
}

struct seen {
	uint64_t n, last_seq;
	bool bodies_ok;
	uint32_t genesis_participants;
};

static int collect(const struct srv_jrec *r, void *ctx)
{
	struct seen *s = ctx;
	if (r->kind == SRV_J_REQUEST)
		s->bodies_ok = s->bodies_ok && r->body_len == 10 + r->seq % 50 &&
			       r->body[r->body_len - 1] == (uint8_t)r->seq &&
			       r->signature[63] == (uint8_t)(r->seq ^ 0xff);
	if (r->kind == SRV_J_GENESIS) {
		s->genesis_participants = r->n_participants;
		s->bodies_ok = s->bodies_ok && r->seq_base == 41 &&
			       strcmp(r->participants[1].name, "bob") == 0 &&
			       r->participants[1].balance == -7 &&
			       r->participants[0].public_key[31] == 9;
	}
	s->n++;
	s->last_seq = r->seq;
	return 0;
}

/* A journal of a genesis, 100 requests and a tick; returns its length. */
static off_t write_sample(void)
{
	struct srv_journal *j;
	ck_assert_int_eq(srv_journal_open(path, 0, &j), SRV_JOURNAL_OK);
	struct srv_journal_participant p[2] = {{.id = 1, .name = "alice", .balance = 5},
					       {.id = 2, .name = "bob", .balance = -7}};
	p[0].public_key[31] = 9;
	struct srv_jrec g = {.kind = SRV_J_GENESIS,
			     .seq = 41,
			     .seq_base = 41,
			     .participants = p,
			     .n_participants = 2};
	ck_assert_int_eq(srv_journal_append(j, &g), SRV_JOURNAL_OK);
	for (uint64_t s = 42; s < 142; s++) {
		ck_assert_int_eq(srv_journal_append(j, request(s, (uint8_t)s)), SRV_JOURNAL_OK);
		if (s % 10 == 0)
			ck_assert_int_eq(srv_journal_sync(j), SRV_JOURNAL_OK);
	}
	struct srv_jrec t = {.kind = SRV_J_TICK, .seq = 142, .time_ms = 5000};
	ck_assert_int_eq(srv_journal_append(j, &t), SRV_JOURNAL_OK);
	ck_assert_int_eq(srv_journal_sync(j), SRV_JOURNAL_OK);
	srv_journal_close(j);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_size;
}

START_TEST(records_round_trip)
{
	off_t size = write_sample();
	struct seen s = {.bodies_ok = true};
	struct srv_journal_stats st;
	ck_assert_int_eq(srv_journal_scan(path, collect, &s, &st), SRV_JOURNAL_OK);
	ck_assert(s.bodies_ok);
	ck_assert_uint_eq(s.n, 102);
	ck_assert_uint_eq(s.genesis_participants, 2);
	ck_assert_uint_eq(st.first_seq, 41);
	ck_assert_uint_eq(st.last_seq, 142);
	ck_assert_uint_eq(st.requests, 100);
	ck_assert_uint_eq(st.ticks, 1);
	ck_assert_int_eq(st.last_ms, 5000);
	ck_assert_uint_eq(st.valid_bytes, (uint64_t)size);
	ck_assert_uint_eq(st.torn_bytes, 0);
	/* Appending after reopening continues the same file. */
	struct srv_journal *j;
	ck_assert_int_eq(srv_journal_open(path, st.valid_bytes, &j), SRV_JOURNAL_OK);
	ck_assert_int_eq(srv_journal_append(j, request(143, 143)), SRV_JOURNAL_OK);
	ck_assert_int_eq(srv_journal_sync(j), SRV_JOURNAL_OK);
	srv_journal_close(j);
	ck_assert_int_eq(srv_journal_scan(path, NULL, NULL, &st), SRV_JOURNAL_OK);
	ck_assert_uint_eq(st.last_seq, 143);
	ck_assert_uint_eq(st.records, 103);
	/* A missing file, an empty one. */
	unlink(path);
	ck_assert_int_eq(srv_journal_scan(path, NULL, NULL, &st), SRV_JOURNAL_MISSING);
}
END_TEST

START_TEST(torn_and_corrupt_tails)
{
	off_t size = write_sample();
	struct srv_journal_stats full;
	ck_assert_int_eq(srv_journal_scan(path, NULL, NULL, &full), SRV_JOURNAL_OK);
	/* Every cut inside the last record (the tick: 8 + 17 bytes) leaves 101 records. */
	for (off_t cut = size - 1; cut > size - 25; cut--) {
		ck_assert_int_eq(truncate(path, cut), 0);
		struct srv_journal_stats st;
		ck_assert_int_eq(srv_journal_scan(path, NULL, NULL, &st), SRV_JOURNAL_OK);
		ck_assert_uint_eq(st.records, 101);
		ck_assert_uint_eq(st.last_seq, 141);
		ck_assert_uint_eq(st.torn_bytes, (uint64_t)(cut - (size - 25)));
		ck_assert_msg(st.torn_bytes == 0 || st.torn_reason[0] != '\0', "no reason");
	}
	/* A flipped byte in record 50's payload: the scan stops before it. */
	write_sample();
	struct srv_journal_stats st;
	int fd = open(path, O_RDWR);
	off_t at = 8;
	for (int i = 0; i < 50; i++) { /* walk the length fields to record 50 */
		uint8_t h[4];
		ck_assert_int_eq(pread(fd, h, 4, at), 4);
		at += 8 + (off_t)(h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24);
	}
	uint8_t b;
	ck_assert_int_eq(pread(fd, &b, 1, at + 20), 1);
	b ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &b, 1, at + 20), 1);
	close(fd);
	ck_assert_int_eq(srv_journal_scan(path, NULL, NULL, &st), SRV_JOURNAL_OK);
	ck_assert_uint_eq(st.records, 50);
	ck_assert_msg(strstr(st.torn_reason, "CRC") != NULL, "%s", st.torn_reason);
	/* Reopening for append cuts everything after the last good record. */
	struct srv_journal *j;
	ck_assert_int_eq(srv_journal_open(path, st.valid_bytes, &j), SRV_JOURNAL_OK);
	srv_journal_close(j);
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_uint_eq((uint64_t)sb.st_size, st.valid_bytes);
	/* A header that claims an impossible length (found by fuzz-journal, which caught a
	 * read past the buffer when the length exceeded it). */
	FILE *a = fopen(path, "ab");
	const uint8_t bogus[8] = {0xf0, 0xff, 0xff, 0xff, 0, 0, 0, 0};
	fwrite(bogus, 1, sizeof(bogus), a);
	fwrite(bogus, 1, sizeof(bogus), a);
	fclose(a);
	ck_assert_int_eq(srv_journal_scan(path, NULL, NULL, &st), SRV_JOURNAL_OK);
	ck_assert_uint_eq(st.records, 50);
	ck_assert_msg(strstr(st.torn_reason, "impossible") != NULL, "%s", st.torn_reason);
	ck_assert_uint_eq(st.torn_bytes, 16);
	/* Not a journal at all; sequences that go back. */
	FILE *f = fopen(path, "w");
	fputs("GRIDEXJ0 this is not a journal", f);
	fclose(f);
	ck_assert_int_eq(srv_journal_scan(path, NULL, NULL, &st), SRV_JOURNAL_BAD);
	unlink(path);
	ck_assert_int_eq(srv_journal_open(path, 0, &j), SRV_JOURNAL_OK);
	ck_assert_int_eq(srv_journal_append(j, request(10, 1)), SRV_JOURNAL_OK);
	ck_assert_int_eq(srv_journal_append(j, request(9, 2)), SRV_JOURNAL_OK);
	ck_assert_int_eq(srv_journal_sync(j), SRV_JOURNAL_OK);
	srv_journal_close(j);
	ck_assert_int_eq(srv_journal_scan(path, NULL, NULL, &st), SRV_JOURNAL_BAD);
}
END_TEST

/* ---------- replay rebuilds the live state ---------- */

#define NOW 1795366800000LL

static struct srv_core *new_core(void)
{
	struct srv_core_config cfg;
	srv_core_config_default(&cfg);
	cfg.matching.orders_max = 512;
	cfg.matching.levels_max = 512;
	cfg.matching.books_max = 8;
	cfg.matching.start_ms = NOW;
	cfg.risk.accounts_max = 8;
	cfg.risk.orders_max = 512;
	cfg.risk.positions_max = 64;
	cfg.risk.capacities_max = 16;
	cfg.risk.maker_bps = 5;
	cfg.risk.taker_bps = 15;
	cfg.accounts_max = 8;
	cfg.client_ids_max = 512;
	cfg.operator_account = 7;
	cfg.fills_recent_max = 64; /* the ring of recent fills wraps */
	/* Query-rate buckets are not in snapshots: a restored core starts them full. */
	cfg.queries_per_second = cfg.query_rows_per_second = 0;
	struct srv_core *c;
	ck_assert_int_eq(srv_core_create(&cfg, &c), SRV_CORE_OK);
	return c;
}

static uint64_t rng = 99;
static uint32_t rnd(uint32_t n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(rng >> 33) % n;
}

/* A random signed-request body (the signature is not checked by the core). */
static size_t random_body(uint8_t *out, uint64_t nonce, int64_t now, const char *product)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.account = 1 + rnd(3);
	q.nonce = nonce;
	q.expires_at_ms = now + 1000;
	uint32_t k = rnd(10);
	if (k < 6) {
		q.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER;
		q.client_order_id = 1 + rnd(60);
		q.product.data = (uint8_t *)product;
		q.product.len = strlen(product);
		q.side = q.account == 1 ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL;
		q.time_in_force =
			rnd(4) ? GRIDEX__V1__TIME_IN_FORCE__GTC : GRIDEX__V1__TIME_IN_FORCE__IOC;
		q.price = (int64_t)(20 + rnd(10)) * 100000;
		q.quantity = 1 + rnd(4);
	} else if (k < 8) {
		q.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
		q.target_client_order_id = 1 + rnd(60);
	} else {
		q.type = GRIDEX__V1__REQUEST_TYPE__MODIFY;
		q.target_client_order_id = 1 + rnd(60);
		q.price = (int64_t)(20 + rnd(10)) * 100000;
		q.quantity = 1 + rnd(4);
	}
	return gridex__v1__request__pack(&q, out);
}

static void setup_accounts(struct srv_core *c)
{
	uint8_t pk[32], sk[64], seed[32] = {3};
	crypto_sign_seed_keypair(pk, sk, seed);
	uint32_t cls;
	ck_assert_int_eq(srv_core_class_id(c, "H100-80G", &cls), SRV_CORE_OK);
	for (uint32_t a = 1; a <= 3; a++) {
		ck_assert_int_eq(srv_core_register(c, a, pk), SRV_CORE_OK);
		ck_assert_int_eq(srv_risk_add_cash(srv_core_risk(c), a, 100000000000), SRV_RISK_OK);
		ck_assert_int_eq(srv_risk_set_capacity(srv_core_risk(c), a, cls, 500), SRV_RISK_OK);
	}
}

static struct srv_core *replayed;
static struct srv_core_out rout;

static int replay(const struct srv_jrec *r, void *ctx)
{
	(void)ctx;
	if (r->kind == SRV_J_TICK)
		return srv_core_tick(replayed, r->time_ms, &rout);
	static struct srv_request req;
	ck_assert_int_eq(srv_request_from_body(r->body, r->body_len, r->signature, &req), 0);
	return srv_core_handle(replayed, &req, r->time_ms, &rout);
}

START_TEST(replay_rebuilds_the_live_core)
{
	ck_assert_int_ge(sodium_init(), 0);
	struct srv_core *live = new_core();
	setup_accounts(live);
	struct srv_core_out out;
	ck_assert_int_eq(srv_core_out_alloc(live, &out), SRV_CORE_OK);
	struct srv_journal *j;
	ck_assert_int_eq(srv_journal_open(path, 0, &j), SRV_JOURNAL_OK);
	int64_t now = NOW;
	uint64_t fills = 0, last_nonce = 0;
	uint32_t last_account = 0;
	for (uint64_t seq = 1; seq <= 3000; seq++) {
		now += rnd(50);
		struct srv_jrec rec = {.seq = seq, .time_ms = now};
		if (rnd(20) == 0) {
			rec.kind = SRV_J_TICK;
			ck_assert_int_eq(srv_core_tick(live, now, &out), SRV_CORE_OK);
		} else {
			rec.kind = SRV_J_REQUEST;
			rec.body_len =
				(uint16_t)random_body(rec.body, seq, now, "H100-80G/2026-11-22T19");
			struct srv_request req;
			ck_assert_int_eq(
				srv_request_from_body(rec.body, rec.body_len, rec.signature, &req),
				0);
			ck_assert_int_eq(srv_core_handle(live, &req, now, &out), SRV_CORE_OK);
			fills += out.n_fills;
			last_nonce = req.nonce;
			last_account = req.account;
		}
		ck_assert_int_eq(srv_journal_append(j, &rec), SRV_JOURNAL_OK);
	}
	ck_assert_int_eq(srv_journal_sync(j), SRV_JOURNAL_OK);
	srv_journal_close(j);
	ck_assert_uint_gt(fills, 100);
	replayed = new_core();
	setup_accounts(replayed);
	ck_assert_int_eq(srv_core_out_alloc(replayed, &rout), SRV_CORE_OK);
	struct srv_journal_stats st;
	ck_assert_int_eq(srv_journal_scan(path, replay, NULL, &st), SRV_JOURNAL_OK);
	ck_assert_uint_eq(st.records, 3000);
	/* Same books, balances, reservations. */
	struct matching_engine *a = srv_core_engine(live), *b = srv_core_engine(replayed);
	ck_assert_uint_eq(matching_order_count(a), matching_order_count(b));
	ck_assert_uint_gt(matching_order_count(a), 0);
	for (int side = 0; side < 2; side++) {
		struct matching_level_view la[64], lb[64];
		size_t na = matching_book_depth(a, 0, (enum matching_side)side, la, 64);
		size_t nb = matching_book_depth(b, 0, (enum matching_side)side, lb, 64);
		ck_assert_uint_eq(na, nb);
		for (size_t i = 0; i < na; i++)
			ck_assert(la[i].price == lb[i].price && la[i].qty == lb[i].qty &&
				  la[i].orders == lb[i].orders);
	}
	for (uint32_t acct = 1; acct <= 3; acct++) {
		struct srv_risk_account ra, rb;
		ck_assert_int_eq(srv_risk_account(srv_core_risk(live), acct, &ra), SRV_RISK_OK);
		ck_assert_int_eq(srv_risk_account(srv_core_risk(replayed), acct, &rb), SRV_RISK_OK);
		ck_assert_int_eq(ra.cash, rb.cash);
		ck_assert_int_eq(ra.reserved, rb.reserved);
		ck_assert_uint_eq(ra.open_orders, rb.open_orders);
	}
	/* Nonces too: the last request's nonce is spent in the replayed core. */
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE;
	q.account = last_account;
	q.nonce = last_nonce;
	q.expires_at_ms = now + 1000;
	uint8_t body[64], sig[64] = {0};
	size_t n = gridex__v1__request__pack(&q, body);
	struct srv_request req;
	ck_assert_int_eq(srv_request_from_body(body, n, sig, &req), 0);
	ck_assert_int_eq(srv_core_handle(replayed, &req, now, &rout), SRV_CORE_OK);
	ck_assert_int_eq(rout.reports[0].kind, SRV_REPORT_REJECT);
	ck_assert_int_eq(rout.reports[0].reason, GRIDEX__V1__REJECT_REASON__STALE_NONCE);
	srv_core_out_free(&out);
	srv_core_out_free(&rout);
	srv_core_destroy(live);
	srv_core_destroy(replayed);
}
END_TEST

/* ---------- snapshots ---------- */

static void random_record(struct srv_jrec *rec, uint64_t seq, int64_t now)
{
	static const char *const products[] = {"H100-80G/2026-11-22T19", "H100-80G/2026-11-22T20"};
	*rec = (struct srv_jrec){.seq = seq, .time_ms = now};
	if (rnd(20) == 0) {
		rec->kind = SRV_J_TICK;
		return;
	}
	rec->kind = SRV_J_REQUEST;
	if (rnd(8) == 0) { /* queries read the account lists and the recent fills */
		Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
		q.type = rnd(2) ? GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS
				: GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS;
		q.account = 1 + rnd(3);
		q.nonce = seq;
		q.expires_at_ms = now + 1000;
		rec->body_len = (uint16_t)gridex__v1__request__pack(&q, rec->body);
		return;
	}
	rec->body_len = (uint16_t)random_body(rec->body, seq, now, products[rnd(2)]);
}

static void apply(struct srv_core *c, const struct srv_jrec *rec, struct srv_core_out *out)
{
	if (rec->kind == SRV_J_TICK) {
		ck_assert_int_eq(srv_core_tick(c, rec->time_ms, out), SRV_CORE_OK);
		return;
	}
	struct srv_request req;
	ck_assert_int_eq(srv_request_from_body(rec->body, rec->body_len, rec->signature, &req), 0);
	ck_assert_int_eq(srv_core_handle(c, &req, rec->time_ms, out), SRV_CORE_OK);
}

static void same_report(const struct srv_report *a, const struct srv_report *b)
{
	ck_assert(a->kind == b->kind && a->reason == b->reason && a->exec_type == b->exec_type &&
		  a->side == b->side && a->account == b->account && a->nonce == b->nonce &&
		  a->client_order_id == b->client_order_id && a->order_id == b->order_id &&
		  a->book == b->book && a->price == b->price && a->last_price == b->last_price &&
		  a->last_quantity == b->last_quantity &&
		  a->cumulative_quantity == b->cumulative_quantity &&
		  a->leaves_quantity == b->leaves_quantity && a->fill_id == b->fill_id &&
		  a->fee == b->fee);
}

static void same_out(const struct srv_core_out *a, const struct srv_core_out *b)
{
	ck_assert_uint_eq(a->n_reports, b->n_reports);
	ck_assert_uint_eq(a->n_fills, b->n_fills);
	ck_assert_uint_eq(a->n_md, b->n_md);
	ck_assert_uint_eq(a->n_rows, b->n_rows);
	for (size_t i = 0; i < a->n_reports; i++)
		same_report(&a->reports[i], &b->reports[i]);
	for (size_t i = 0; i < a->n_rows; i++)
		same_report(&a->rows[i], &b->rows[i]);
	for (size_t i = 0; i < a->n_fills; i++)
		ck_assert(a->fills[i].fill.fill_id == b->fills[i].fill.fill_id &&
			  a->fills[i].fill.price == b->fills[i].fill.price &&
			  a->fills[i].fill.qty == b->fills[i].fill.qty &&
			  a->fills[i].fill.buyer == b->fills[i].fill.buyer &&
			  a->fills[i].time_ms == b->fills[i].time_ms &&
			  strcmp(a->fills[i].product, b->fills[i].product) == 0);
	for (size_t i = 0; i < a->n_md; i++)
		ck_assert(
			a->md[i].kind == b->md[i].kind && a->md[i].sequence == b->md[i].sequence &&
			a->md[i].price == b->md[i].price && a->md[i].qty == b->md[i].qty &&
			a->md[i].orders == b->md[i].orders && a->md[i].time_ms == b->md[i].time_ms);
}

/* A core registered like new_core()'s callers, with the operator: what gridexd makes. */
static struct srv_core *bare_core(void)
{
	struct srv_core *c = new_core();
	uint8_t pk[32], sk[64], seed[32] = {7};
	crypto_sign_seed_keypair(pk, sk, seed);
	ck_assert_int_eq(srv_core_register(c, 7, pk), SRV_CORE_OK);
	return c;
}

/* Saves c as a snapshot file at path; returns its length. */
static size_t save_file(const struct srv_core *c, uint64_t seq, int64_t now)
{
	struct srv_snap_w w = {0};
	struct srv_snapshot_info info = {.seq = seq, .time_ms = now};
	srv_snapshot_begin(&w, &info);
	srv_core_save(c, &w);
	srv_snapshot_finish(&w);
	ck_assert(!w.failed);
	char dir[80];
	snprintf(dir, sizeof(dir), "%s.d", path);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(srv_snapshot_write(dir, seq, &w), 0);
	char file[160];
	snprintf(file, sizeof(file), "%s/snapshot-%020llu", dir, (unsigned long long)seq);
	ck_assert_int_eq(rename(file, path), 0);
	ck_assert_int_eq(rmdir(dir), 0);
	size_t len = w.len;
	srv_snap_w_free(&w);
	return len;
}

START_TEST(snapshot_continues_like_the_live_core)
{
	ck_assert_int_ge(sodium_init(), 0);
	struct srv_core *live = bare_core();
	setup_accounts(live);
	ck_assert_int_eq(srv_core_set_name(live, 2, "seller-two"), SRV_CORE_OK);
	struct srv_core_out out, rout2;
	ck_assert_int_eq(srv_core_out_alloc(live, &out), SRV_CORE_OK);
	int64_t now = NOW;
	uint64_t fills = 0;
	static struct srv_jrec rec;
	for (uint64_t seq = 1; seq <= 1500; seq++) {
		now += rnd(50);
		random_record(&rec, seq, now);
		apply(live, &rec, &out);
		fills += out.n_fills;
	}
	ck_assert_uint_gt(matching_order_count(srv_core_engine(live)), 20);
	save_file(live, 1500, now);

	uint8_t *data;
	struct srv_snapshot_info info;
	struct srv_snap_r body;
	const char *error = NULL;
	ck_assert_int_eq(srv_snapshot_read(path, &data, &info, &body, &error), 0);
	ck_assert_uint_eq(info.seq, 1500);
	ck_assert_int_eq(info.time_ms, now);
	struct srv_core *restored = bare_core();
	ck_assert_msg(srv_core_load(restored, &body) == 0, "%s", body.error);
	ck_assert_uint_eq(body.off, body.len);
	free(data);
	ck_assert_ptr_null(matching_check_invariants(srv_core_engine(restored)));
	ck_assert_ptr_null(srv_risk_check_invariants(srv_core_risk(restored)));
	ck_assert_str_eq(srv_core_name(restored, 2), "seller-two");
	ck_assert_int_eq(srv_core_out_alloc(restored, &rout2), SRV_CORE_OK);
	/* The second half: every answer, report, fill and market-data update equal. */
	for (uint64_t seq = 1501; seq <= 3000; seq++) {
		now += rnd(50);
		random_record(&rec, seq, now);
		apply(live, &rec, &out);
		apply(restored, &rec, &rout2);
		same_out(&out, &rout2);
		fills += out.n_fills;
	}
	ck_assert_uint_gt(fills, 100);
	/* Replayed nonces stay spent: the first half's last request again is stale. */
	apply(restored, &rec, &rout2);
	if (rec.kind == SRV_J_REQUEST)
		ck_assert_int_eq(rout2.reports[0].reason, GRIDEX__V1__REJECT_REASON__STALE_NONCE);
	srv_core_out_free(&out);
	srv_core_out_free(&rout2);
	srv_core_destroy(live);
	srv_core_destroy(restored);
}
END_TEST

START_TEST(snapshot_refuses_damage)
{
	ck_assert_int_ge(sodium_init(), 0);
	struct srv_core *live = bare_core();
	setup_accounts(live);
	struct srv_core_out out;
	ck_assert_int_eq(srv_core_out_alloc(live, &out), SRV_CORE_OK);
	int64_t now = NOW;
	static struct srv_jrec rec;
	for (uint64_t seq = 1; seq <= 600; seq++) {
		now += rnd(50);
		random_record(&rec, seq, now);
		apply(live, &rec, &out);
	}
	size_t len = save_file(live, 600, now);
	uint8_t *good = malloc(len), *data;
	FILE *f = fopen(path, "rb");
	ck_assert(f && fread(good, 1, len, f) == len);
	fclose(f);
	struct srv_snapshot_info info;
	struct srv_snap_r body;
	const char *error = NULL;
	/* A flipped byte anywhere, a cut anywhere: the hash or the length refuses it. */
	for (size_t at = 0; at < len; at += 1 + len / 97) {
		for (int cut = 0; cut < 2; cut++) {
			f = fopen(path, "wb");
			good[at] ^= cut ? 0 : 0x20;
			ck_assert_uint_eq(fwrite(good, 1, cut ? at : len, f), cut ? at : len);
			good[at] ^= cut ? 0 : 0x20;
			fclose(f);
			error = NULL;
			ck_assert_int_eq(srv_snapshot_read(path, &data, &info, &body, &error), -1);
			ck_assert_ptr_nonnull(error);
		}
	}
	/* A snapshot of format 1 (an older gridexd's), whole and hashed: read, and said so;
	 * its core loads as format 2's does (only unsettled fills differ). */
	memcpy(good, SRV_SNAPSHOT_MAGIC_1, SRV_SNAPSHOT_MAGIC_BYTES);
	ck_assert_int_eq(crypto_generichash(good + len - SRV_SNAPSHOT_HASH_BYTES,
					    SRV_SNAPSHOT_HASH_BYTES, good,
					    len - SRV_SNAPSHOT_HASH_BYTES, NULL, 0),
			 0);
	f = fopen(path, "wb");
	ck_assert_uint_eq(fwrite(good, 1, len, f), len);
	fclose(f);
	error = NULL;
	ck_assert_msg(srv_snapshot_read(path, &data, &info, &body, &error) == 0, "%s", error);
	ck_assert_uint_eq(info.format, 1);
	struct srv_core *old = bare_core();
	ck_assert_msg(srv_core_load(old, &body) == 0, "%s", body.error);
	srv_core_destroy(old);
	free(data);
	/* Another magic: refused. */
	memcpy(good, "GRIDEXS3", SRV_SNAPSHOT_MAGIC_BYTES);
	f = fopen(path, "wb");
	ck_assert_uint_eq(fwrite(good, 1, len, f), len);
	fclose(f);
	ck_assert_int_eq(srv_snapshot_read(path, &data, &info, &body, &error), -1);
	ck_assert_msg(strstr(error, "magic") != NULL, "%s", error);
	memcpy(good, SRV_SNAPSHOT_MAGIC, SRV_SNAPSHOT_MAGIC_BYTES);
	/* Mutations with a correct hash (a bug or a forged file): refused or consistent. */
	size_t hdr = SRV_SNAPSHOT_HEADER_BYTES, blen = len - hdr - SRV_SNAPSHOT_HASH_BYTES;
	uint8_t *mut = malloc(blen);
	int refused = 0;
	for (int round = 0; round < 2000; round++) {
		memcpy(mut, good + hdr, blen);
		for (int k = 0; k < 1 + (int)rnd(3); k++)
			mut[rnd((uint32_t)blen)] ^= (uint8_t)(1u << rnd(8));
		struct srv_snap_r r = {.p = mut, .len = blen};
		struct srv_core *c = bare_core();
		if (srv_core_load(c, &r) != 0) {
			ck_assert_ptr_nonnull(r.error);
			refused++;
		} else {
			ck_assert_ptr_null(matching_check_invariants(srv_core_engine(c)));
			ck_assert_ptr_null(srv_risk_check_invariants(srv_core_risk(c)));
		}
		srv_core_destroy(c);
	}
	ck_assert_int_gt(refused, 200); /* many fields are free (names, times, recent fills) */
	free(mut);
	free(good);
	srv_core_out_free(&out);
	srv_core_destroy(live);
}
END_TEST

/* Whether two settings replay the same journal. */
static bool same_fingerprint(const struct srv_config *a, const struct srv_config *b)
{
	uint8_t fa[SRV_JOURNAL_SETTINGS_BYTES], fb[SRV_JOURNAL_SETTINGS_BYTES];
	srv_settings_fingerprint(a, fa);
	srv_settings_fingerprint(b, fb);
	return memcmp(fa, fb, sizeof(fa)) == 0;
}

/* hosts_per_seller_max decides what REGISTER_HOST does, so with leases on it is in the
 * fingerprint; 0 (no limit) leaves the fingerprint a journal had before it existed, and
 * without leases it is not there at all. lease_requests_per_second likewise. */
START_TEST(lease_rules_are_in_the_fingerprint)
{
	struct srv_config a, b;
	srv_config_default(&a);
	srv_config_default(&b);
	ck_assert_int_eq(a.hosts_per_seller_max, 1024);
	b.hosts_per_seller_max = 7;
	ck_assert(same_fingerprint(&a, &b));
	snprintf(a.hook, sizeof(a.hook), "/bin/true");
	snprintf(b.hook, sizeof(b.hook), "/bin/true");
	ck_assert(!same_fingerprint(&a, &b));
	b.hosts_per_seller_max = 1024;
	ck_assert(same_fingerprint(&a, &b));
	b.hosts_per_seller_max = 0;
	ck_assert(!same_fingerprint(&a, &b));
	/* 0 is the fingerprint of the same settings before the limit existed: hosts_max
	 * still counts (it is in it), the limit is not. */
	a.hosts_per_seller_max = 0;
	ck_assert(same_fingerprint(&a, &b));
	b.hosts_max = 8;
	ck_assert(!same_fingerprint(&a, &b));

	/* So is lease_requests_per_second with its burst, the same way. */
	srv_config_default(&a);
	srv_config_default(&b);
	ck_assert_int_eq(a.lease_requests_per_second, 10);
	b.lease_requests_per_second = 3;
	b.lease_requests_burst = 3;
	ck_assert(same_fingerprint(&a, &b)); /* no hook */
	snprintf(a.hook, sizeof(a.hook), "/bin/true");
	snprintf(b.hook, sizeof(b.hook), "/bin/true");
	ck_assert(!same_fingerprint(&a, &b));
	b.lease_requests_per_second = a.lease_requests_per_second;
	ck_assert(!same_fingerprint(&a, &b)); /* the burst */
	b.lease_requests_burst = a.lease_requests_burst;
	ck_assert(same_fingerprint(&a, &b));
	/* 0: as before the limit existed, whatever the burst. */
	a.lease_requests_per_second = b.lease_requests_per_second = 0;
	b.lease_requests_burst = 3;
	ck_assert(same_fingerprint(&a, &b));
	b.lease_requests_per_second = 10;
	ck_assert(!same_fingerprint(&a, &b));
}
END_TEST

/* The settlement items a snapshot carries: a fill keeps its product and time for
 * ledger.fills; what the ledger would refuse is refused when the snapshot loads. */
START_TEST(settlement_items_round_trip)
{
	struct srv_wjob items[3] = {
		{.kind = SRV_W_FILL,
		 .seq = 7,
		 .u.trade = {.fill = {.fill_id = 3,
				      .buyer = 1,
				      .seller = 2,
				      .buyer_is_taker = true,
				      .taker_order_id = 11,
				      .maker_order_id = 12,
				      .price = 2450000,
				      .qty = 8},
			     .product = "H100-80G/2026-12-08T10",
			     .time_ms = 1796724000123}},
		{.kind = SRV_W_SETTLE,
		 .seq = 8,
		 .u.settle = {.fill = {.fill_id = 2, .buyer = 1, .seller = 2, .price = 5, .qty = 1},
			      .used = 30,
			      .total = 60,
			      .lease_id = 4}},
		{.kind = SRV_W_OP,
		 .seq = 9,
		 .u.op = {.kind = SRV_OP_DEPOSIT, .account = 1, .amount = 100, .name = "alice"}},
	};
	struct srv_snap_w w = {0};
	for (int i = 0; i < 3; i++)
		srv_wjob_save(&w, &items[i]);
	ck_assert(!w.failed);
	struct srv_snap_r r = {.p = w.p, .len = w.len};
	struct srv_wjob got;
	ck_assert_int_eq(srv_wjob_load(&r, &got, 2), 0);
	ck_assert_int_eq(got.kind, SRV_W_FILL);
	ck_assert_mem_eq(&got.u.trade.fill, &items[0].u.trade.fill, sizeof(struct ledger_fill));
	ck_assert_str_eq(got.u.trade.product, "H100-80G/2026-12-08T10");
	ck_assert_int_eq(got.u.trade.time_ms, 1796724000123);
	ck_assert_int_eq(srv_wjob_load(&r, &got, 2), 0);
	ck_assert_int_eq(got.kind, SRV_W_SETTLE);
	ck_assert_mem_eq(&got.u.settle, &items[1].u.settle, sizeof(got.u.settle));
	ck_assert_int_eq(srv_wjob_load(&r, &got, 2), 0);
	ck_assert_int_eq(got.kind, SRV_W_OP);
	ck_assert_str_eq(got.u.op.name, "alice");
	ck_assert_uint_eq(r.off, r.len);
	/* In a snapshot of format 1, settlements and operator actions read the same; a
	 * fill, which lacks its product and time there, is refused. */
	r = (struct srv_snap_r){.p = w.p, .len = w.len};
	ck_assert_int_eq(srv_wjob_load(&r, &got, 1), -1);
	ck_assert_msg(strstr(r.error, "format 1") != NULL, "%s", r.error);
	r = (struct srv_snap_r){.p = w.p, .len = w.len};
	ck_assert_int_eq(srv_wjob_load(&r, &got, 2), 0);
	size_t settle_at = r.off; /* where the fill ends */
	r = (struct srv_snap_r){.p = w.p + settle_at, .len = w.len - settle_at};
	ck_assert_msg(srv_wjob_load(&r, &got, 1) == 0, "%s", r.error);
	ck_assert_mem_eq(&got.u.settle, &items[1].u.settle, sizeof(got.u.settle));
	ck_assert_msg(srv_wjob_load(&r, &got, 1) == 0, "%s", r.error);
	ck_assert_int_eq(got.kind, SRV_W_OP);
	srv_snap_w_free(&w);
	/* A fill the ledger would refuse: a product out of its alphabet, empty or too
	 * long, a time before 1970; and a cut anywhere. */
	static const struct {
		const char *product;
		int64_t time_ms;
	} bad[] = {{"H100 80G", 1}, {"", 1}, {"H100-80G", -1}, {NULL, 1}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct srv_wjob j = items[0];
		j.u.trade.time_ms = bad[i].time_ms;
		if (bad[i].product)
			snprintf(j.u.trade.product, sizeof(j.u.trade.product), "%s",
				 bad[i].product);
		w = (struct srv_snap_w){0};
		srv_wjob_save(&w, &j);
		if (bad[i].product == NULL) /* a length byte of 64: one more than a name holds */
			w.p[w.len - strlen(j.u.trade.product) - 1] = LEDGER_PRODUCT_MAX + 1;
		r = (struct srv_snap_r){.p = w.p, .len = w.len};
		ck_assert_msg(srv_wjob_load(&r, &got, 2) == -1 && r.error, "bad fill %zu loaded",
			      i);
		srv_snap_w_free(&w);
	}
	srv_wjob_save(&w, &items[0]);
	for (size_t cut = 0; cut < w.len; cut++) {
		r = (struct srv_snap_r){.p = w.p, .len = cut};
		ck_assert_msg(srv_wjob_load(&r, &got, 2) == -1, "cut at %zu loaded", cut);
	}
	srv_snap_w_free(&w);
}
END_TEST

static Suite *journal_suite(void)
{
	Suite *s = suite_create("server-journal");
	TCase *tc = tcase_create("journal");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, crc32c_reference);
	tcase_add_test(tc, records_round_trip);
	tcase_add_test(tc, torn_and_corrupt_tails);
	tcase_add_test(tc, replay_rebuilds_the_live_core);
	tcase_add_test(tc, snapshot_continues_like_the_live_core);
	tcase_add_test(tc, snapshot_refuses_damage);
	tcase_add_test(tc, settlement_items_round_trip);
	tcase_add_test(tc, lease_rules_are_in_the_fingerprint);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(journal_suite());
}
