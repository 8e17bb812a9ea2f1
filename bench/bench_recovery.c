/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery time: a journal of N new orders that all rest (bids below asks,
 * 100 accounts, 24 hourly products), replayed from the file through the
 * same decode + srv_core_handle() path gridexd's start-up uses; then a
 * snapshot of the resulting core written (temporary file, fsync, rename),
 * read back (hash checked) and loaded into a fresh core. Prints each step's
 * time and rate. What it leaves out of a real restart: connecting to
 * PostgreSQL and allocating the queues (milliseconds).
 *
 * Usage: bench-recovery [--dir=DIR] [--orders=N]   (default /tmp, 1000000)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "clock.h"
#include "gridex.pb-c.h"
#include "rss.h"
#include "srv_core.h"
#include "srv_journal.h"
#include "srv_snapshot.h"

#define ACCOUNTS 100
#define PRODUCTS 24
#define START_MS INT64_C(1795366800000) /* 2026-11-22T17:00Z */

static struct srv_core *make_core(uint32_t orders)
{
	struct srv_core_config cfg;
	srv_core_config_default(&cfg);
	cfg.matching.orders_max = orders;
	cfg.matching.levels_max = orders;
	cfg.matching.books_max = 64;
	cfg.matching.start_ms = START_MS;
	cfg.risk.orders_max = orders;
	cfg.risk.positions_max = orders;
	cfg.risk.open_orders_per_account_max = orders;
	cfg.client_ids_max = orders;
	cfg.orders_per_second = 0;
	cfg.gate_lead_ms = 0;
	struct srv_core *c;
	if (srv_core_create(&cfg, &c) != SRV_CORE_OK) {
		fprintf(stderr, "bench-recovery: cannot create a core for %u orders\n", orders);
		exit(1);
	}
	return c;
}

struct replay {
	struct srv_core *c;
	struct srv_core_out *out;
	long refused;
};

/* What gridexd's start-up does with a REQUEST record (srv_replay_apply). */
static int replay_one(const struct srv_jrec *r, void *ctx)
{
	struct replay *x = ctx;
	static struct srv_request req;
	if (srv_request_from_body(r->body, r->body_len, r->signature, &req) != 0 ||
	    srv_core_handle(x->c, &req, r->time_ms, x->out) != SRV_CORE_OK)
		return -1;
	x->refused += x->out->n_reports > 0 && x->out->reports[0].kind == SRV_REPORT_REJECT;
	return 0;
}

static void accounts(struct srv_core *c)
{
	uint8_t pk[32], sk[64], seed[32] = {1};
	crypto_sign_seed_keypair(pk, sk, seed);
	uint32_t cls;
	if (srv_core_class_id(c, "H100-80G", &cls) != SRV_CORE_OK)
		exit(1);
	for (uint32_t a = 1; a <= ACCOUNTS; a++)
		if (srv_core_register(c, a, pk) != SRV_CORE_OK ||
		    srv_risk_add_cash(srv_core_risk(c), a, INT64_C(1) << 60) != SRV_RISK_OK ||
		    srv_risk_set_capacity(srv_core_risk(c), a, cls, INT64_C(1) << 40) !=
			    SRV_RISK_OK)
			exit(1);
}

int main(int argc, char **argv)
{
	const char *dir = "/tmp";
	long orders = 1000000;
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--dir=", 6) == 0)
			dir = argv[i] + 6;
		else if (strncmp(argv[i], "--orders=", 9) == 0)
			orders = atol(argv[i] + 9);
		else {
			fprintf(stderr, "usage: bench-recovery [--dir=DIR] [--orders=N]\n");
			return 2;
		}
	}
	if (sodium_init() < 0 || orders < 1000 || orders > 50000000)
		return 2;
	char path[512], snapdir[512];
	snprintf(path, sizeof(path), "%s/bench-recovery-%d", dir, (int)getpid());
	snprintf(snapdir, sizeof(snapdir), "%s/bench-recovery-%d.d", dir, (int)getpid());
	uint32_t cap = (uint32_t)orders + 1024;

	/* The journal: N signed-request bodies (signatures are not checked on replay). */
	struct srv_journal *j;
	if (srv_journal_open(path, 0, &j) != SRV_JOURNAL_OK) {
		perror(path);
		return 1;
	}
	char products[PRODUCTS][40];
	for (int p = 0; p < PRODUCTS; p++)
		snprintf(products[p], sizeof(products[p]), "H100-80G/2026-11-23T%02d", p);
	static struct srv_jrec rec = {.kind = SRV_J_REQUEST};
	uint64_t nonce[ACCOUNTS + 1] = {0};
	int64_t t0 = bench_now_us();
	for (long i = 0; i < orders; i++) {
		uint32_t account = 1 + (uint32_t)(i % ACCOUNTS);
		bool buy = account <= ACCOUNTS / 2;
		Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
		q.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER;
		q.account = account;
		q.nonce = ++nonce[account];
		q.expires_at_ms = START_MS + 30000;
		q.client_order_id = (uint64_t)i + 1;
		const char *product = products[(i / ACCOUNTS) % PRODUCTS];
		q.product.data = (uint8_t *)product;
		q.product.len = strlen(product);
		q.side = buy ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL;
		q.time_in_force = GRIDEX__V1__TIME_IN_FORCE__GTC;
		/* 2,000 levels a side, bids 1.00-2.99, asks 3.00-4.99: nothing crosses. */
		q.price = (buy ? 1000000 : 3000000) + (int64_t)((i * 7919) % 2000) * 1000;
		q.quantity = 1 + i % 8;
		rec.seq = (uint64_t)i + 1;
		rec.time_ms = START_MS + i / 1000;
		rec.body_len = (uint16_t)gridex__v1__request__pack(&q, rec.body);
		if (srv_journal_append(j, &rec) != SRV_JOURNAL_OK ||
		    (i % 10000 == 9999 && srv_journal_sync(j) != SRV_JOURNAL_OK))
			return 1;
	}
	if (srv_journal_sync(j) != SRV_JOURNAL_OK)
		return 1;
	uint64_t bytes = srv_journal_size(j);
	srv_journal_close(j);
	printf("journal: %ld new orders, %.1f MiB, written in %.2f s\n", orders,
	       (double)bytes / 1048576, (double)(bench_now_us() - t0) / 1e6);

	/* Without a snapshot: read, check and replay every record. */
	double rss0 = rss_mib("/proc/self/status");
	struct srv_core *c = make_core(cap);
	accounts(c);
	struct srv_core_out out;
	if (srv_core_out_alloc(c, &out) != SRV_CORE_OK)
		return 1;
	struct replay x = {c, &out, 0};
	struct srv_journal_stats st;
	t0 = bench_now_us();
	if (srv_journal_scan(path, replay_one, &x, &st) != SRV_JOURNAL_OK)
		return 1;
	double replay_s = (double)(bench_now_us() - t0) / 1e6;
	uint32_t resting = matching_order_count(srv_core_engine(c));
	printf("replay without a snapshot: %llu records in %.2f s = %.0f records/s; "
	       "%u orders resting, %ld refused\n",
	       (unsigned long long)st.records, replay_s, (double)st.records / replay_s, resting,
	       x.refused);
	double core_mib = rss_mib("/proc/self/status") - rss0;
	printf("memory: the core with room for %u orders holds %.0f MiB resident with them all "
	       "resting (%.0f bytes per order)\n",
	       cap, core_mib, core_mib * 1048576 / resting);

	/* A snapshot of that state, then a restart from it. */
	struct srv_snap_w w = {0};
	struct srv_snapshot_info info = {.seq = st.last_seq, .time_ms = st.last_ms};
	t0 = bench_now_us();
	srv_snapshot_begin(&w, &info);
	srv_core_save(c, &w);
	srv_snap_i64(&w, 0); /* gridexd's settlement items: none here */
	srv_snap_u32(&w, 0);
	srv_snapshot_finish(&w);
	double save_s = (double)(bench_now_us() - t0) / 1e6;
	if (mkdir(snapdir, 0700) != 0) {
		perror(snapdir);
		return 1;
	}
	t0 = bench_now_us();
	if (srv_snapshot_write(snapdir, info.seq, &w) != 0) {
		perror("snapshot");
		return 1;
	}
	double write_s = (double)(bench_now_us() - t0) / 1e6;
	printf("snapshot: %.1f MiB, serialized in %.3f s (the core's pause), written and "
	       "synced in %.3f s\n",
	       (double)w.len / 1048576, save_s, write_s);
	srv_core_out_free(&out);
	srv_core_destroy(c);

	char file[640];
	snprintf(file, sizeof(file), "%s/snapshot-%020llu", snapdir, (unsigned long long)info.seq);
	t0 = bench_now_us();
	struct srv_core *r = make_core(cap);
	double create_s = (double)(bench_now_us() - t0) / 1e6;
	uint8_t *data;
	struct srv_snap_r body;
	const char *error = NULL;
	int64_t t1 = bench_now_us();
	if (srv_snapshot_read(file, &data, &info, &body, &error) != 0) {
		fprintf(stderr, "bench-recovery: %s\n", error);
		return 1;
	}
	double read_s = (double)(bench_now_us() - t1) / 1e6;
	t1 = bench_now_us();
	if (srv_core_load(r, &body) != 0) {
		fprintf(stderr, "bench-recovery: %s\n", body.error);
		return 1;
	}
	double load_s = (double)(bench_now_us() - t1) / 1e6;
	double total_s = (double)(bench_now_us() - t0) / 1e6;
	free(data);
	if (matching_order_count(srv_core_engine(r)) != resting) {
		fprintf(stderr, "bench-recovery: the snapshot lost orders\n");
		return 1;
	}
	printf("restart from the snapshot: %u resting orders in %.2f s (core allocation %.2f s, "
	       "read and hash %.2f s, load and checks %.2f s)\n",
	       resting, total_s, create_s, read_s, load_s);
	srv_core_destroy(r);
	srv_snap_w_free(&w);
	unlink(file);
	rmdir(snapdir);
	unlink(path);
	return 0;
}
