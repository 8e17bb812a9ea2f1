/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lease book's cost per fill (server/srv_lease.c, run by the core thread
 * for every fill with leases on): with L live leases already booked, M more
 * fills of one GPU each get their device and lease. Prints fills/s and the
 * latency of one fill (p50, p99, max) for each L, then what the clock costs at
 * the first booked hour's start (its leases start) and right after (nothing
 * due); and, first, what one REGISTER_HOST costs the core with every host of
 * the table registered (16 devices each): a new host (refused: the table is
 * full) and one registered again.
 * With --workloads=N instead: N accounts' workloads set, then the lookup every
 * buy order and lease start makes (an account with one, and one without).
 * With --extend=N: one buyer's N leases with one seller, and what each of N
 * fills of the next hour costs while they are scheduled (extended), once they
 * started, when the fills are of another class, and when the leases are larger.
 * With --starts=N: N leases in each of two hours, and what the clock's step
 * costs at the start of each (the second also ends the first hour's leases).
 * With --queries=N: N live leases and a full ring of ended ones, and what a
 * lease query's first page costs.
 * Usage: bench-leases [--sellers=N] [--hosts=N (per seller)] [--fills=M]
 *                     [--live=L1,L2,...]
 *        bench-leases --workloads=N | --extend=N | --starts=N | --queries=N
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "srv_lease.h"

#define HOUR INT64_C(3600000)

/* REGISTER_HOST against a full table of n hosts, every seller at hosts_per_seller_max:
 * a new host of a seller with none (the table is full), of seller 100 (at its limit),
 * and host 0 again. */
static void registrations(struct srv_leases *l, uint32_t n)
{
	struct srv_host_spec fresh = {.vendor = "nvidia", .n_devices = 16};
	for (uint32_t d = 0; d < 16; d++)
		snprintf(fresh.devices[d], sizeof(fresh.devices[d]), "GPU-new-%u", d);
	const struct srv_host_view *h0 = srv_leases_host(l, 0);
	enum { TRIES = 1000 };
	static const int want[3] = {SRV_LEASE_FULL, SRV_LEASE_SELLER_FULL, SRV_LEASE_OK};
	int64_t t[3];
	for (int k = 0; k < 3; k++) {
		int64_t a = bench_now_ns();
		for (int i = 0; i < TRIES; i++) {
			uint32_t at;
			bool added;
			int rc = k < 2 ? srv_leases_add_host(l, k == 0 ? 99 : 100, 0, "new", &fresh,
							     &at, &added)
				       : srv_leases_add_host(l, h0->seller, h0->cls, h0->name,
							     &h0->spec, &at, &added);
			if (rc != want[k]) {
				fprintf(stderr, "bench-leases: registration %d answered %d\n", k,
					rc);
				exit(1);
			}
		}
		t[k] = bench_now_ns() - a;
	}
	printf("hosts=%u register_new_full_us=%.2f register_new_seller_full_us=%.2f "
	       "register_again_us=%.2f\n",
	       n, (double)t[0] / TRIES / 1e3, (double)t[1] / TRIES / 1e3,
	       (double)t[2] / TRIES / 1e3);
}

/* Workloads of accounts 1 .. n: each set once, then the lookup every buy order and every
 * lease start makes, of the last account set and of one without a workload. */
static void workloads(uint32_t n)
{
	struct srv_lease_config cfg;
	srv_lease_config_default(&cfg);
	struct srv_leases *l;
	if (srv_leases_create(&cfg, &l) != SRV_LEASE_OK)
		exit(1);
	int64_t a = bench_now_ns();
	for (uint32_t i = 1; i <= n; i++)
		if (srv_leases_set_workload(l, i, "{\"command\": [\"/opt/job\"]}") !=
		    SRV_LEASE_OK) {
			fprintf(stderr, "bench-leases: workload %u not set\n", i);
			exit(1);
		}
	int64_t set = bench_now_ns() - a;
	enum { TRIES = 20000 };
	int64_t t[2];
	for (int k = 0; k < 2; k++) {
		a = bench_now_ns();
		for (int i = 0; i < TRIES; i++)
			if ((srv_leases_workload(l, k == 0 ? n : n + 1) != NULL) != (k == 0))
				exit(1);
		t[k] = bench_now_ns() - a;
	}
	printf("workloads=%u set_us=%.3f lookup_us=%.3f missing_us=%.3f\n", n,
	       (double)set / n / 1e3, (double)t[0] / TRIES / 1e3, (double)t[1] / TRIES / 1e3);
	srv_leases_destroy(l);
}

/* A lease book of the default settings but for these limits. */
static struct srv_leases *book_of(uint32_t hosts_max, uint32_t per_seller, uint32_t leases_max)
{
	struct srv_lease_config cfg;
	srv_lease_config_default(&cfg);
	cfg.hosts_max = hosts_max;
	cfg.hosts_per_seller_max = per_seller;
	cfg.leases_max = leases_max;
	struct srv_leases *l;
	if (srv_leases_create(&cfg, &l) != SRV_LEASE_OK) {
		fprintf(stderr, "bench-leases: cannot create the lease book\n");
		exit(1);
	}
	return l;
}

/* Fill number i (from 0) of qty GPUs between buyer and seller. */
static struct ledger_fill fill_of(int64_t i, uint32_t buyer, uint32_t seller, int64_t qty)
{
	return (struct ledger_fill){.fill_id = i + 1,
				    .buyer = buyer,
				    .seller = seller,
				    .buyer_is_taker = true,
				    .taker_order_id = 2 * i + 1,
				    .maker_order_id = 2 * i + 2,
				    .price = 2500000,
				    .qty = qty};
}

/* hosts hosts of 16 devices for seller, of class cls. */
static void add_hosts(struct srv_leases *l, uint32_t seller, uint32_t cls, uint32_t hosts)
{
	for (uint32_t h = 0; h < hosts; h++) {
		struct srv_host_spec spec = {.vendor = "nvidia", .n_devices = 16};
		for (uint32_t d = 0; d < 16; d++)
			snprintf(spec.devices[d], sizeof(spec.devices[d]), "GPU-%u-%u-%u-%u",
				 seller, cls, h, d);
		char name[32];
		snprintf(name, sizeof(name), "s%u-c%u-h%u", seller, cls, h);
		uint32_t at;
		bool added;
		if (srv_leases_add_host(l, seller, cls, name, &spec, &at, &added) != SRV_LEASE_OK) {
			fprintf(stderr, "bench-leases: host %s not registered\n", name);
			exit(1);
		}
	}
}

/* One buyer's n one-GPU leases with one seller in one hour (hosts of 16 devices), then
 * n one-GPU fills of the next hour, each timed: while those leases are scheduled (each
 * fill extends one of them); in a second book, after they started (a started lease is
 * not extended: each fill makes a new lease); in a third, while they are scheduled but
 * the fills are of another class (of the seller's other hosts: new leases too); in a
 * fourth, the first hour's leases are of two GPUs (more than a fill: new leases). */
static void extensions(uint32_t n)
{
	static const char *const how[4] = {"scheduled", "started", "other_class", "larger"};
	for (int k = 0; k < 4; k++) {
		bool started = k == 1;
		uint32_t cls = k == 2; /* of the next hour's fills */
		int64_t first_qty = k == 3 ? 2 : 1;
		uint32_t hosts = (n * (uint32_t)first_qty + 15) / 16;
		struct srv_leases *l = book_of(2 * hosts, 2 * hosts, 2 * n + 16);
		add_hosts(l, 100, 0, hosts);
		add_hosts(l, 100, 1, hosts);
		int64_t t0 = INT64_C(1795366800000), hour = t0 + HOUR;
		int64_t *lat = malloc((size_t)n * sizeof(*lat));
		for (uint32_t i = 0; i < 2 * n; i++) {
			struct ledger_fill f = fill_of(i, 1, 100, i < n ? first_qty : 1);
			if (i == n && started) /* the first hour's leases start */
				srv_leases_tick(l, hour);
			srv_leases_out_reset(l);
			int64_t a = bench_now_ns();
			srv_leases_fill(l, &f, i < n ? 0 : cls, i < n ? hour : hour + HOUR, t0);
			if (i >= n)
				lat[i - n] = bench_now_ns() - a;
		}
		int64_t sum = 0;
		for (uint32_t i = 0; i < n; i++)
			sum += lat[i];
		qsort(lat, n, sizeof(*lat), bench_cmp_i64);
		uint64_t counts[7];
		srv_leases_counts(l, counts);
		printf("buyer_leases=%u next_hour_fills=%u leases_%s live=%llu mean_us=%.2f "
		       "p50_us=%.2f p99_us=%.2f max_us=%.1f\n",
		       n, n, how[k],
		       (unsigned long long)(counts[SRV_LEASE_SCHEDULED] +
					    counts[SRV_LEASE_STARTING]),
		       (double)sum / n / 1e3, lat[n / 2] / 1e3, lat[n * 99 / 100] / 1e3,
		       lat[n - 1] / 1e3);
		free(lat);
		srv_leases_destroy(l);
	}
}

/* n one-GPU leases in each of two hours (hosts of 16 devices, one seller, 64 buyers in
 * turn in each hour), then the clock at the first hour's start, which starts n leases; the hook
 * answers that all run; then the clock at the second hour's start, which ends those
 * and starts n more. What one step of the core costs per lease at an hour's start (the
 * frames and hook jobs made from its results aside): the first step writes its results
 * into memory the process never touched, as at the largest start since gridexd began;
 * the second into memory the first used. Five books; the fastest and the median. */
static void starts(uint32_t n)
{
	enum { ROUNDS = 5 };
	int64_t took[2][ROUNDS];
	for (int r = 0; r < ROUNDS; r++) {
		uint32_t hosts = (n + 15) / 16;
		struct srv_leases *l = book_of(hosts, hosts, 2 * n + 16);
		add_hosts(l, 100, 0, hosts);
		int64_t t0 = INT64_C(1795366800000), hour = t0 + HOUR;
		for (uint32_t i = 0; i < 2 * n; i++) {
			/* other buyers in the second hour: new leases */
			struct ledger_fill f = fill_of(i, 1 + i % 64 + (i < n ? 0 : 64), 100, 1);
			srv_leases_out_reset(l);
			srv_leases_fill(l, &f, 0, i < n ? hour : hour + HOUR, t0);
		}
		for (int k = 0; k < 2; k++) {
			if (k == 1) /* the first hour's leases run */
				for (uint64_t id = 1; id <= n; id++)
					srv_leases_event(l, id, SRV_LEV_STARTED, "", hour);
			srv_leases_out_reset(l);
			int64_t a = bench_now_ns();
			srv_leases_tick(l, hour + k * HOUR);
			took[k][r] = bench_now_ns() - a;
			if (srv_leases_out(l)->n_cmds != (k + 1) * (size_t)n) {
				fprintf(stderr, "bench-leases: %zu commands, not %u\n",
					srv_leases_out(l)->n_cmds, (k + 1) * n);
				exit(1);
			}
		}
		srv_leases_destroy(l);
	}
	for (int k = 0; k < 2; k++) {
		qsort(took[k], ROUNDS, sizeof(*took[k]), bench_cmp_i64);
		printf("%s leases_starting=%u leases_ending=%u step_ms_min=%.2f "
		       "step_ms_median=%.2f per_lease_us=%.3f\n",
		       k == 0 ? "first_start" : "next_hour", n, k == 0 ? 0 : n, took[k][0] / 1e6,
		       took[k][ROUNDS / 2] / 1e6, (double)took[k][0] / n / 1e3);
	}
}

/* QUERY_LEASES on the core (srv_leases_of): `live` one-GPU leases of 64 buyers with one
 * seller, and the ring of ended leases full (leases_kept of them, cancelled: fills for
 * which the seller has no host); then the first page (query_rows_max, 1,000 rows) for
 * an account with no leases, for one of the 64 buyers, and for the operator (every
 * lease), each timed 20 times: the fastest and the median. */
static void lease_queries(uint32_t live)
{
	struct srv_lease_config cfg; /* for leases_kept */
	srv_lease_config_default(&cfg);
	uint32_t hosts = (live + 15) / 16;
	struct srv_leases *l = book_of(hosts, hosts, live + 16);
	add_hosts(l, 100, 0, hosts);
	int64_t t0 = INT64_C(1795366800000), hour = t0 + HOUR;
	for (uint32_t i = 0; i < live + cfg.leases_kept; i++) {
		bool ended = i >= live; /* seller 101 has no host: a cancelled lease */
		struct ledger_fill f = fill_of(i, 1 + i % 64, ended ? 101 : 100, 1);
		srv_leases_out_reset(l);
		srv_leases_fill(l, &f, 0, hour, t0);
	}
	enum { ROWS = 1000, TRIES = 20 };
	struct srv_lease_view *out = malloc(ROWS * sizeof(*out));
	uint64_t *cursors = malloc(ROWS * sizeof(*cursors));
	static const char *const who[3] = {"no_leases", "a_buyer", "operator"};
	static const uint32_t account[3] = {65, 1, 0};
	printf("live=%u ended=%u", live, cfg.leases_kept);
	for (int k = 0; k < 3; k++) {
		int64_t t[TRIES];
		size_t n = 0;
		for (int r = 0; r < TRIES; r++) {
			int64_t a = bench_now_ns();
			n = srv_leases_of(l, account[k], 0, out, cursors, ROWS);
			t[r] = bench_now_ns() - a;
		}
		qsort(t, TRIES, sizeof(*t), bench_cmp_i64);
		printf(" %s_rows=%zu %s_us_min=%.2f %s_us_median=%.2f", who[k], n, who[k],
		       t[0] / 1e3, who[k], t[TRIES / 2] / 1e3);
	}
	printf("\n");
	free(out);
	free(cursors);
	srv_leases_destroy(l);
}

static void run(uint32_t sellers, uint32_t hosts, long live, long fills)
{
	struct srv_leases *l = book_of(sellers * hosts, hosts, (uint32_t)(live + fills + 16));
	for (uint32_t s = 0; s < sellers; s++)
		add_hosts(l, 100 + s, 0, hosts);
	if (live == 0)
		registrations(l, sellers * hosts);
	/* One GPU per fill, sellers in turn, hours filling up one after the other. */
	long per_hour = (long)sellers * hosts * 16;
	int64_t t0 = INT64_C(1795366800000);
	int64_t *lat = malloc((size_t)fills * sizeof(*lat));
	int64_t start = 0;
	for (long i = 0; i < live + fills; i++) {
		/* a buyer of its own each: no extensions, one lease per fill */
		struct ledger_fill f =
			fill_of(i, 1 + (uint32_t)i, 100 + (uint32_t)(i % sellers), 1);
		int64_t hour = t0 + HOUR * (1 + i / per_hour);
		srv_leases_out_reset(l);
		int64_t a = bench_now_ns();
		srv_leases_fill(l, &f, 0, hour, t0);
		if (i >= live) {
			lat[i - live] = bench_now_ns() - a;
			if (i == live)
				start = a;
		}
	}
	double secs = (double)(bench_now_ns() - start) / 1e9;
	/* The clock at the first hour's start: a scan of every live lease for those due. */
	srv_leases_out_reset(l);
	int64_t ta = bench_now_ns();
	srv_leases_tick(l, t0 + HOUR);
	int64_t tick_ns = bench_now_ns() - ta;
	size_t started = srv_leases_out(l)->n_cmds;
	srv_leases_out_reset(l);
	ta = bench_now_ns();
	srv_leases_tick(l, t0 + HOUR + 1000);
	int64_t tick2_ns = bench_now_ns() - ta;
	qsort(lat, (size_t)fills, sizeof(*lat), bench_cmp_i64);
	uint64_t counts[7];
	srv_leases_counts(l, counts);
	printf("live=%ld hosts=%u fills=%ld fills_per_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f "
	       "scheduled=%llu tick_starting_%zu_us=%.1f tick_none_due_us=%.1f\n",
	       live, sellers * hosts, fills, (double)fills / secs, lat[fills / 2] / 1e3,
	       lat[fills * 99 / 100] / 1e3, lat[fills - 1] / 1e3,
	       (unsigned long long)counts[SRV_LEASE_SCHEDULED], started, tick_ns / 1e3,
	       tick2_ns / 1e3);
	free(lat);
	srv_leases_destroy(l);
}

/* The modes that run instead of the fills' table: a flag, its largest N, what it runs. */
static const struct mode {
	const char *flag;
	long max;
	void (*run)(uint32_t n);
} modes[] = {{"--workloads=", 10000000, workloads},
	     {"--extend=", 1000000, extensions},
	     {"--starts=", 1000000, starts},
	     {"--queries=", 1000000, lease_queries}};

int main(int argc, char **argv)
{
	uint32_t sellers = 10, hosts = 10;
	long fills = 20000;
	const char *lives = "0,1000,10000,100000";
	const struct mode *mode = NULL;
	long n = 0;
	for (int i = 1; i < argc; i++) {
		size_t m = 0, count = sizeof(modes) / sizeof(modes[0]);
		while (m < count && strncmp(argv[i], modes[m].flag, strlen(modes[m].flag)) != 0)
			m++;
		if (m < count) {
			mode = &modes[m];
			n = atol(argv[i] + strlen(mode->flag));
		} else if (strncmp(argv[i], "--sellers=", 10) == 0) {
			sellers = (uint32_t)atol(argv[i] + 10);
		} else if (strncmp(argv[i], "--hosts=", 8) == 0) {
			hosts = (uint32_t)atol(argv[i] + 8);
		} else if (strncmp(argv[i], "--fills=", 8) == 0) {
			fills = atol(argv[i] + 8);
		} else if (strncmp(argv[i], "--live=", 7) == 0) {
			lives = argv[i] + 7;
		} else {
			fprintf(stderr,
				"usage: bench-leases [--sellers=N] [--hosts=N] [--fills=M] "
				"[--live=L1,L2,...] [--workloads=N] [--extend=N] [--starts=N] "
				"[--queries=N]\n");
			return 2;
		}
	}
	if (mode != NULL && (n < 1 || n > mode->max)) {
		fprintf(stderr, "bench-leases: %sN is 1 to %ld\n", mode->flag, mode->max);
		return 2;
	}
	if (mode != NULL) {
		mode->run((uint32_t)n);
		return 0;
	}
	if (sellers < 1 || hosts < 1 || fills < 1 || sellers * hosts > 100000) {
		fprintf(stderr, "bench-leases: sellers, hosts and fills must be at least 1\n");
		return 2;
	}
	for (const char *p = lives; *p;) {
		run(sellers, hosts, atol(p), fills);
		p = strchr(p, ',');
		if (p == NULL)
			break;
		p++;
	}
	return 0;
}
