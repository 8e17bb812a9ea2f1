/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load generator for gridexd, written with libgridex (docs/performance.md).
 *
 * Registers and funds --accounts accounts through the operator, opens one TLS
 * connection per account, signs every request of a phase before the phase's
 * clock starts (gridex_capture), then sends them: closed loop (--window
 * requests in flight per connection: the maximum) or open loop at a fixed
 * offered rate (each request has a planned send time; latency counts from
 * it, so a server that falls behind cannot hide its queue). The mix per
 * connection: new resting orders, modifies and cancels of its own orders
 * (at most 64 rest per connection, so the book stays the same size), and
 * --cross-pct percent IOC orders that cross the other side. --server-pid
 * samples the server's resident size.
 *
 * Prints offered and achieved requests/s, acknowledgement latency
 * (p50/p99/p99.9/max from a log-linear histogram), rejects by reason, fills/s
 * and settlement lag, the server's p50/p99 per pipeline stage (all read from
 * gridexd's metrics endpoint, gridex_request_stage_seconds), and first the
 * machine's ceiling: one core's crypto_sign_verify_detached per second for
 * a message of the orders' size (its best 100 ms of 2 s).
 *
 *   loadgen --port=P --ca=CERT --operator-account=N --operator-key=PEM
 *           [--metrics=HOST:PORT] [--accounts=32] [--seconds=10] [--window=64]
 *           [--rate=R | --rate=0 (closed loop) | --phases] [--cross-pct=3]
 *           [--keys=DIR] [--first-account=100] [--server-pid=PID]
 * --phases runs the closed loop, then the open loop at half its rate (and at
 * each of --also-rates=R1,R2,...), and ends with
 * ratio_to_verify_ceiling=<achieved closed-loop rate / ceiling>.
 */
#define _GNU_SOURCE /* epoll_pwait2 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "clock.h"
#include "gridex/gridex.h"
#include "rss.h"

#define BUY_LOW	  1000000 /* bids rest at 1.00 .. 1.99, asks at 3.00 .. 3.99 */
#define SELL_LOW  3000000
#define BAND	  1000000
#define OWN_MAX	  64 /* resting orders a connection keeps track of */
#define HIST_SUBS 64

static struct {
	const char *host, *ca, *op_key, *keys, *metrics;
	uint16_t port;
	uint32_t op_account, first_account, accounts, window, cross_pct;
	double rate, seconds;
	bool phases;
	const char *also; /* more open-loop rates after the phases, comma-separated */
	int server_pid;	  /* > 0: its resident size is sampled */
} opt = {.host = "127.0.0.1",
	 .port = 7400,
	 .keys = "/tmp/gridex-loadgen-keys",
	 .first_account = 100,
	 .accounts = 32,
	 .window = 64,
	 .cross_pct = 3,
	 .rate = 0,
	 .seconds = 10};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* ---------- latency histogram: log-linear, 64 steps per power of two ---------- */

struct hist {
	uint64_t n[64 * HIST_SUBS];
	uint64_t count;
	int64_t max;
};

static void hist_add(struct hist *h, int64_t v)
{
	if (v < 1)
		v = 1;
	uint64_t u = (uint64_t)v;
	int msb = 63 - __builtin_clzll(u);
	size_t i = msb < 6 ? (size_t)u : (size_t)(msb - 5) * HIST_SUBS + ((u >> (msb - 6)) & 63);
	h->n[i]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

/* The upper end of the bucket holding quantile q. */
static int64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t want = (uint64_t)(q * (double)h->count), seen = 0;
	for (size_t i = 0; i < sizeof(h->n) / sizeof(h->n[0]); i++) {
		seen += h->n[i];
		if (seen > want && h->n[i] > 0) {
			if (i < HIST_SUBS)
				return (int64_t)i;
			int msb = (int)(i / HIST_SUBS) + 5;
			uint64_t low = ((uint64_t)(64 + i % HIST_SUBS)) << (msb - 6);
			return (int64_t)(low + (1ULL << (msb - 6)) - 1);
		}
	}
	return h->max;
}

/* ---------- connections ---------- */

struct request {
	uint64_t nonce;
	uint32_t off, len; /* in the connection's frames */
	int64_t planned;   /* open loop: when it is due (ns from the phase start) */
};

struct conn {
	gridex_client *c;
	uint32_t account;
	bool buyer;
	struct gridex_frames frames;
	struct request *req;
	size_t n_req, next; /* signed; sent */
	uint64_t *sent_ns;  /* per request, when it went out */
	size_t answered;
	uint64_t next_coid;
	uint64_t own[OWN_MAX]; /* client order ids believed resting, a ring */
	size_t own_head, own_n;
};

static struct conn *conns;
static struct hist hist;
static uint64_t rejects[64], answers;

static gridex_client *client(uint32_t account, const char *key)
{
	struct gridex_options o;
	gridex_options_default(&o);
	o.host = opt.host;
	o.port = opt.port;
	o.ca_file = opt.ca;
	o.account = account;
	o.key_file = key;
	/* Requests are signed up to a phase ahead: the server's expiry_ahead_ms_max
	 * must allow this (bench/run-e2e sets it). */
	o.expiry_ms = (int64_t)(opt.seconds * 1000) + 60000;
	gridex_client *c = NULL;
	if (gridex_client_new(&o, &c) != GRIDEX_OK || gridex_connect(c) != GRIDEX_OK)
		die("account %u: %s", account, c ? gridex_client_error(c) : "out of memory");
	return c;
}

/* Waits for the answer to nonce; returns 0 (ACK) or the reject reason. */
static int answer(gridex_client *c, uint64_t nonce)
{
	for (;;) {
		struct gridex_event ev;
		if (gridex_next_event(c, 10000, &ev) != GRIDEX_OK)
			die("no answer: %s", gridex_client_error(c));
		int kind = ev.kind, reason = ev.reason;
		uint64_t n = ev.nonce;
		gridex_event_free(&ev);
		if ((kind == GRIDEX_EV_ACK || kind == GRIDEX_EV_REJECT) && n == nonce)
			return kind == GRIDEX_EV_ACK ? 0 : reason;
	}
}

static void operator_do(gridex_client *op, struct gridex_operator_request r, bool may_exist)
{
	uint64_t n;
	if (gridex_operator(op, &r, &n) != GRIDEX_OK)
		die("operator: %s", gridex_client_error(op));
	int reason = answer(op, n);
	if (reason != 0 && !(may_exist && reason == 26 /* ACCOUNT_EXISTS */))
		die("operator request %d for account %u refused: %s", r.op, r.account,
		    gridex_reject_name(reason));
}

static void product_name(char *out, size_t len)
{
	time_t t = time(NULL) + 3 * 3600;
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, len, "H100-80G/%04d-%02d-%02dT%02d", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour);
}

static char product[64];

static void setup(void)
{
	if (mkdir(opt.keys, 0700) != 0 && errno != EEXIST)
		die("%s: %s", opt.keys, strerror(errno));
	gridex_client *op = client(opt.op_account, opt.op_key);
	conns = calloc(opt.accounts, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	for (uint32_t i = 0; i < opt.accounts; i++) {
		struct conn *x = &conns[i];
		x->account = opt.first_account + i;
		x->buyer = i % 2 == 0;
		char path[512], name[32];
		snprintf(path, sizeof(path), "%s/%u.pem", opt.keys, x->account);
		snprintf(name, sizeof(name), "load%u", x->account);
		uint8_t pub[32];
		if (gridex_key_public(path, pub) != GRIDEX_OK &&
		    gridex_keygen(path, pub) != GRIDEX_OK)
			die("cannot make a key in %s", path);
		operator_do(op,
			    (struct gridex_operator_request){.op = GRIDEX_OP_REGISTER,
							     .account = x->account,
							     .name = name,
							     .public_key = pub},
			    true);
		operator_do(op,
			    (struct gridex_operator_request){.op = GRIDEX_OP_DEPOSIT,
							     .account = x->account,
							     .amount = INT64_C(1) << 50},
			    false);
		operator_do(op,
			    (struct gridex_operator_request){.op = GRIDEX_OP_CAPACITY,
							     .account = x->account,
							     .product = "H100-80G",
							     .quantity = INT64_C(1) << 40},
			    false);
		x->c = client(x->account, path);
		x->next_coid = (uint64_t)time(NULL) * 1000000;
	}
	gridex_client_free(op);
	product_name(product, sizeof(product));
}

/* ---------- signing a phase ahead ---------- */

static uint64_t rng = 88172645463325252ULL;
static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* One request of the mix, signed into x->frames. */
static void sign_one(struct conn *x, struct request *r)
{
	uint32_t roll = rnd(100);
	size_t before = x->frames.len;
	int rc;
	if (roll < opt.cross_pct) { /* crosses: takes what rests on the other side */
		struct gridex_order o = {.client_order_id = x->next_coid++,
					 .product = product,
					 .side = x->buyer ? GRIDEX_BUY : GRIDEX_SELL,
					 .tif = GRIDEX_IOC,
					 .price = x->buyer ? SELL_LOW + BAND - 1 : BUY_LOW,
					 .quantity = 1};
		rc = gridex_new_order(x->c, &o, &r->nonce);
	} else if (x->own_n < OWN_MAX && (x->own_n < 8 || roll < 50)) {
		struct gridex_order o = {.client_order_id = x->next_coid++,
					 .product = product,
					 .side = x->buyer ? GRIDEX_BUY : GRIDEX_SELL,
					 .price = (x->buyer ? BUY_LOW : SELL_LOW) +
						  (int64_t)rnd(BAND / 10000) * 10000,
					 .quantity = 1 + rnd(4)};
		rc = gridex_new_order(x->c, &o, &r->nonce);
		x->own[(x->own_head + x->own_n++) % OWN_MAX] = o.client_order_id;
	} else if (roll < 70 && x->own_n < OWN_MAX) {
		uint64_t coid = x->own[(x->own_head + rnd((uint32_t)x->own_n)) % OWN_MAX];
		int64_t price =
			(x->buyer ? BUY_LOW : SELL_LOW) + (int64_t)rnd(BAND / 10000) * 10000;
		rc = gridex_modify(x->c, coid, price, 1 + rnd(4), &r->nonce);
	} else { /* and always once OWN_MAX rest: the book stays the same size */
		uint64_t coid = x->own[x->own_head];
		x->own_head = (x->own_head + 1) % OWN_MAX;
		x->own_n--;
		rc = gridex_cancel(x->c, coid, &r->nonce);
	}
	if (rc != GRIDEX_OK)
		die("signing: %s", gridex_client_error(x->c));
	r->off = (uint32_t)before;
	r->len = (uint32_t)(x->frames.len - before);
}

static void sign_phase(size_t per_conn, double rate)
{
	for (uint32_t i = 0; i < opt.accounts; i++) {
		struct conn *x = &conns[i];
		gridex_frames_free(&x->frames);
		free(x->req);
		free(x->sent_ns);
		x->req = calloc(per_conn, sizeof(*x->req));
		x->sent_ns = calloc(per_conn, sizeof(*x->sent_ns));
		if (x->req == NULL || x->sent_ns == NULL)
			die("out of memory");
		gridex_capture(x->c, &x->frames);
		/* Open loop: connection i sends every accounts/rate seconds, staggered. */
		double gap = rate > 0 ? 1e9 * opt.accounts / rate : 0;
		for (size_t k = 0; k < per_conn; k++) {
			sign_one(x, &x->req[k]);
			x->req[k].planned = (int64_t)(gap * ((double)k + (double)i / opt.accounts));
		}
		gridex_capture(x->c, NULL);
		x->n_req = per_conn;
		x->next = x->answered = 0;
	}
}

/* ---------- the machine's ceiling ---------- */

/*
 * One core's rate over 2 s, in slices of 100 ms: the best slice is the ceiling
 * (a VM's host takes cores away for a while now and then; a slice it took from
 * would understate what the core can do and flatter the ratio), the mean over
 * all of them is printed beside it.
 */
static double verify_ceiling(size_t msg_len, double *mean)
{
	uint8_t pk[32], sk[64], msg[1024], sig[64];
	crypto_sign_keypair(pk, sk);
	randombytes_buf(msg, sizeof(msg));
	if (msg_len > sizeof(msg))
		msg_len = sizeof(msg);
	crypto_sign_detached(sig, NULL, msg, msg_len, sk);
	long n = 0;
	double best = 0;
	int64_t t0 = bench_now_ns(), t = t0;
	while (t - t0 < 2000000000) {
		long k = 0;
		int64_t s0 = t;
		do {
			for (int i = 0; i < 100; i++)
				if (crypto_sign_verify_detached(sig, msg, msg_len, pk) != 0)
					die("verification failed");
			k += 100;
			t = bench_now_ns();
		} while (t - s0 < 100000000);
		double rate = (double)k / ((double)(t - s0) / 1e9);
		if (rate > best)
			best = rate;
		n += k;
	}
	*mean = (double)n / ((double)(t - t0) / 1e9);
	return best;
}

/* ---------- metrics ---------- */

/* The server's histogram of answered requests by pipeline stage
 * (gridex_request_stage_seconds, docs/operations.md). */
#define STAGES	      6
#define STAGE_BUCKETS 14
static const char *const stage_names[STAGES] = {"verify",  "journal", "core",
						"deliver", "total",   "sync"};

#define SETTLE_BUCKETS 13

struct gauges {
	double fills, lag_ms, pending;
	double settle[SETTLE_BUCKETS];	  /* batches by oldest item's age, cumulative */
	double settle_le[SETTLE_BUCKETS]; /* bucket bounds, seconds (last: +Inf) */
	bool settle_ok;
	double stage[STAGES][STAGE_BUCKETS]; /* cumulative counts, by bucket */
	double stage_le[STAGE_BUCKETS];	     /* bucket bounds, seconds (last: +Inf) */
	bool ok;
};

/* The slot of bucket bound `le` (seconds, "+Inf") in les[n]: its own, or the first free. */
static int bucket_slot(double *les, int n, const char *le)
{
	double bound = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, NULL);
	int k = 0;
	while (k < n - 1 && les[k] != 0 && les[k] != bound)
		k++;
	les[k] = bound;
	return k;
}

/* Reads one stage-histogram bucket line into g. */
static void stage_line(struct gauges *g, const char *line)
{
	char name[16], le[24];
	double v;
	if (sscanf(line,
		   "gridex_request_stage_seconds_bucket{stage=\"%15[a-z]\",le=\"%23[^\"]\"} %lf",
		   name, le, &v) != 3)
		return;
	for (int st = 0; st < STAGES; st++)
		if (strcmp(name, stage_names[st]) == 0)
			g->stage[st][bucket_slot(g->stage_le, STAGE_BUCKETS, le)] = v;
}

/* Reads one bucket line of gridex_settlement_lag_seconds into g. */
static void settle_line(struct gauges *g, const char *line)
{
	char le[24];
	double v;
	if (sscanf(line, "gridex_settlement_lag_seconds_bucket{le=\"%23[^\"]\"} %lf", le, &v) != 2)
		return;
	g->settle[bucket_slot(g->settle_le, SETTLE_BUCKETS, le)] = v;
	g->settle_ok = true;
}

/* The bucket bound (ms) under which fraction q of what a histogram counted between
 * two scrapes (cumulative counts a[n], b[n]; bounds le[n], seconds) falls. */
static double bucket_quantile(const double *a, const double *b, const double *le, int n, double q)
{
	double total = b[n - 1] - a[n - 1];
	if (total <= 0)
		return NAN;
	for (int k = 0; k < n; k++)
		if (b[k] - a[k] >= q * total)
			return le[k] * 1e3;
	return INFINITY;
}

/* The bucket bound (ms) under which fraction q of the phase's answers passed stage st. */
static double stage_quantile(const struct gauges *a, const struct gauges *b, int st, double q)
{
	return bucket_quantile(a->stage[st], b->stage[st], b->stage_le, STAGE_BUCKETS, q);
}

static struct gauges scrape(void)
{
	struct gauges g = {0};
	if (opt.metrics == NULL)
		return g;
	char host[128];
	snprintf(host, sizeof(host), "%s", opt.metrics);
	char *colon = strrchr(host, ':');
	if (colon == NULL)
		return g;
	*colon = '\0';
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
		return g;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return g;
	}
	freeaddrinfo(ai);
	static const char get[] = "GET /metrics HTTP/1.0\r\n\r\n";
	if (write(fd, get, sizeof(get) - 1) != (ssize_t)sizeof(get) - 1) {
		close(fd);
		return g;
	}
	static char buf[1 << 17];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof(buf) - 1 && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = '\0';
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		double v;
		if (sscanf(line, "gridex_fills_total %lf", &v) == 1) {
			g.fills = v;
			g.ok = true;
		} else if (sscanf(line, "gridex_settlement_lag_ms %lf", &v) == 1) {
			g.lag_ms = v;
		} else if (sscanf(line, "gridex_settlement_queue_depth %lf", &v) == 1) {
			g.pending = v;
		} else if (strncmp(line, "gridex_settlement_lag_seconds_bucket", 36) == 0) {
			settle_line(&g, line);
		} else {
			stage_line(&g, line);
		}
	}
	return g;
}

/* During a phase, a thread of its own reads the settlement lag every 250 ms: a
 * scrape is a round trip to the server, which the sending thread must not wait
 * for (its requests would go out late). scrape() is used by one thread at a time. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	double lag_max;
} watch = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void *watcher(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&watch.lock);
	while (!watch.stop) {
		pthread_mutex_unlock(&watch.lock);
		struct gauges g = scrape();
		pthread_mutex_lock(&watch.lock);
		if (g.ok && g.lag_ms > watch.lag_max)
			watch.lag_max = g.lag_ms;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 250000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		if (!watch.stop)
			pthread_cond_timedwait(&watch.cond, &watch.lock, &until);
	}
	pthread_mutex_unlock(&watch.lock);
	return NULL;
}

/* The server's resident size in MiB (0 when unknown). */
static double server_rss(void)
{
	if (opt.server_pid <= 0)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", opt.server_pid);
	return rss_mib(path);
}

/* ---------- CPU by thread ---------- */

/* gridexd's threads by the names it gives them (docs/operations.md), then loadgen's own. */
enum { CPU_IO, CPU_VERIFY, CPU_JOURNAL, CPU_CORE, CPU_LEDGER, CPU_OTHER, CPU_LOADGEN, CPU_ROLES };
static const char *const cpu_role_names[CPU_ROLES] = {"io",	"verify", "journal", "core",
						      "ledger", "other",  "loadgen"};

struct cpu_sample {
	double ns[CPU_ROLES];		/* time on a CPU, summed over the role's threads */
	unsigned long long busy, total; /* the machine's, from /proc/stat */
	bool ok;
};

static int cpu_role(const char *comm)
{
	if (strcmp(comm, "gridexd") == 0)
		return CPU_IO;
	if (strncmp(comm, "gx-verify-", 10) == 0)
		return CPU_VERIFY;
	if (strcmp(comm, "gx-journal") == 0)
		return CPU_JOURNAL;
	if (strcmp(comm, "gx-core") == 0)
		return CPU_CORE;
	if (strcmp(comm, "gx-ledger") == 0)
		return CPU_LEDGER;
	return CPU_OTHER;
}

/* A thread's time on a CPU in ns: schedstat's first field, or utime + stime from stat. */
static double thread_cpu_ns(const char task[320])
{
	char path[352], line[1024];
	double ns = -1;
	snprintf(path, sizeof(path), "%s/schedstat", task);
	FILE *f = fopen(path, "r");
	if (f && fgets(line, sizeof(line), f))
		ns = strtod(line, NULL);
	if (f)
		fclose(f);
	if (ns >= 0)
		return ns;
	snprintf(path, sizeof(path), "%s/stat", task);
	f = fopen(path, "r");
	if (f && fgets(line, sizeof(line), f)) {
		/* Fields after the command's closing parenthesis: state is the 3rd, utime the
		 * 14th, stime the 15th. */
		const char *p = strrchr(line, ')');
		unsigned long long ut = 0, st = 0;
		if (p && sscanf(p + 2, "%*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &ut,
				&st) == 2)
			ns = (double)(ut + st) * 1e9 / (double)sysconf(_SC_CLK_TCK);
	}
	if (f)
		fclose(f);
	return ns < 0 ? 0 : ns;
}

static bool add_threads(int pid, bool server, double ns[CPU_ROLES])
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
	DIR *d = opendir(dir);
	if (d == NULL)
		return false;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_name[0] == '.')
			continue;
		char task[320], path[352], comm[32] = "";
		snprintf(task, sizeof(task), "%s/%s", dir, e->d_name);
		snprintf(path, sizeof(path), "%s/comm", task);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue; /* it has just ended */
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
		ns[server ? cpu_role(comm) : CPU_LOADGEN] += thread_cpu_ns(task);
	}
	closedir(d);
	return true;
}

static struct cpu_sample cpu_sample(void)
{
	struct cpu_sample c = {0};
	if (opt.server_pid <= 0 || !add_threads(opt.server_pid, true, c.ns) ||
	    !add_threads((int)getpid(), false, c.ns))
		return c;
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[8] = {0};
	if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			&v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
		c.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* all but idle and iowait */
		c.total = c.busy + v[3] + v[4];
		c.ok = true;
	}
	if (f)
		fclose(f);
	return c;
}

/* ---------- a phase ---------- */

static int64_t phase_t0;

/* Reads every event waiting on x; the answer to a request is its latency sample. */
static bool drain(struct conn *x)
{
	struct gridex_event ev;
	int rc;
	while ((rc = gridex_next_event(x->c, 0, &ev)) == GRIDEX_OK) {
		if (ev.kind == GRIDEX_EV_ACK || ev.kind == GRIDEX_EV_REJECT) {
			/* Answers mostly come in order; search back from the newest sent. */
			size_t lo = 0, hi = x->next;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (x->req[mid].nonce < ev.nonce)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < x->next && x->req[lo].nonce == ev.nonce) {
				int64_t from = opt.rate > 0 ? phase_t0 + x->req[lo].planned
							    : (int64_t)x->sent_ns[lo];
				hist_add(&hist, bench_now_ns() - from);
				x->answered++;
				answers++;
				if (ev.kind == GRIDEX_EV_REJECT && ev.reason >= 0 && ev.reason < 64)
					rejects[ev.reason]++;
			}
		}
		gridex_event_free(&ev);
	}
	return rc == GRIDEX_AGAIN;
}

/* Sends x's requests from x->next up to `upto` (exclusive) in one write. */
static void send_upto(struct conn *x, size_t upto)
{
	if (upto <= x->next)
		return;
	const struct request *a = &x->req[x->next], *b = &x->req[upto - 1];
	if (gridex_send_raw(x->c, x->frames.data + a->off, b->off + b->len - a->off) != GRIDEX_OK)
		die("account %u: %s", x->account, gridex_client_error(x->c));
	uint64_t t = (uint64_t)bench_now_ns();
	for (size_t k = x->next; k < upto; k++)
		x->sent_ns[k] = t;
	x->next = upto;
}

struct result {
	double achieved, fills_per_s, lag_max_ms;
	uint64_t answered, sent;
	int64_t p50, p99, p999, max;
};

static struct result run_phase(const char *name, double rate)
{
	opt.rate = rate;
	size_t per_conn = rate > 0 ? (size_t)(rate * opt.seconds / opt.accounts) + 1
				   : (size_t)(50000.0 * opt.seconds / opt.accounts) + opt.window;
	int64_t ts = bench_now_ns();
	sign_phase(per_conn, rate);
	fprintf(stderr, "loadgen: %s: %zu requests signed in %.1f s\n", name,
		per_conn * opt.accounts, (double)(bench_now_ns() - ts) / 1e9);
	memset(&hist, 0, sizeof(hist));
	memset(rejects, 0, sizeof(rejects));
	answers = 0;
	struct gauges g0 = scrape(), g;
	double lag_max = 0, rss0 = server_rss(), rss_mid = 0, rss_tenth[10] = {0};
	/* epoll, not poll: a wait costs the same whatever the number of connections. */
	struct epoll_event *ready = calloc(opt.accounts, sizeof(*ready));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ready == NULL || ep < 0)
		die("epoll: %s", strerror(errno));
	for (uint32_t i = 0; i < opt.accounts; i++) {
		struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, gridex_fd(conns[i].c), &e) != 0)
			die("epoll: %s", strerror(errno));
	}
	struct cpu_sample cpu0 = cpu_sample(), cpu1;
	phase_t0 = bench_now_ns();
	int64_t end = phase_t0 + (int64_t)(opt.seconds * 1e9);
	watch.stop = false;
	watch.lag_max = 0;
	pthread_t watch_thread;
	if (pthread_create(&watch_thread, NULL, watcher, NULL) != 0)
		die("cannot start the metrics thread");
	for (int64_t t = phase_t0; t < end; t = bench_now_ns()) {
		int64_t due = t - phase_t0, wake = end;
		for (uint32_t i = 0; i < opt.accounts; i++) {
			struct conn *x = &conns[i];
			size_t upto = x->next;
			if (rate > 0) {
				while (upto < x->n_req && x->req[upto].planned <= due)
					upto++;
				if (upto < x->n_req && phase_t0 + x->req[upto].planned < wake)
					wake = phase_t0 + x->req[upto].planned;
			} else {
				upto = x->answered + opt.window;
				if (upto > x->n_req)
					upto = x->n_req;
			}
			send_upto(x, upto);
		}
		/* Sleep until the next planned send (to the nanosecond: a millisecond poll
		 * would spin for the last one and take a core from the server) or an
		 * answer; then read only the connections that have one (the library reads
		 * until the socket is empty, so none is left waiting in TLS). */
		int64_t left = rate > 0 ? wake - bench_now_ns() : 5000000;
		if (left < 0)
			left = 0;
		if (left > 5000000)
			left = 5000000;
		struct timespec nap = {.tv_sec = 0, .tv_nsec = (long)left};
		int k = epoll_pwait2(ep, ready, (int)opt.accounts, &nap, NULL);
		if (k < 0 && errno != EINTR)
			die("epoll: %s", strerror(errno));
		for (int j = 0; j < k; j++) {
			struct conn *x = &conns[ready[j].data.u32];
			if (!drain(x))
				die("account %u: %s", x->account, gridex_client_error(x->c));
		}
		if (rss_mid == 0 && t - phase_t0 >= (end - phase_t0) / 2)
			rss_mid = server_rss();
		int tenth = (int)((t - phase_t0) * 10 / (end - phase_t0));
		if (opt.server_pid > 0 && tenth >= 0 && tenth < 10 && rss_tenth[tenth] == 0)
			rss_tenth[tenth] = server_rss();
	}
	double secs = (double)(bench_now_ns() - phase_t0) / 1e9;
	cpu1 = cpu_sample();
	pthread_mutex_lock(&watch.lock);
	watch.stop = true;
	pthread_cond_signal(&watch.cond);
	pthread_mutex_unlock(&watch.lock);
	pthread_join(watch_thread, NULL);
	lag_max = watch.lag_max;
	uint64_t in_phase = answers, sent = 0;
	bool ran_out = false;
	for (uint32_t i = 0; i < opt.accounts; i++) {
		sent += conns[i].next;
		ran_out |= conns[i].next == conns[i].n_req;
	}
	if (ran_out && rate == 0)
		fprintf(stderr,
			"loadgen: %s: a connection sent every request signed for it; "
			"the achieved rate is a lower bound\n",
			name);
	/* What is still in flight is answered before the next phase (not counted). */
	for (int wait = 0; wait < 400; wait++) {
		bool all = true;
		for (uint32_t i = 0; i < opt.accounts; i++) {
			drain(&conns[i]);
			all = all && conns[i].answered == conns[i].next;
		}
		if (all)
			break;
		struct timespec pause = {.tv_nsec = 25000000};
		nanosleep(&pause, NULL);
	}
	g = scrape();
	if (g.lag_ms > lag_max)
		lag_max = g.lag_ms;
	/* Settlement keeps up when what the phase left unsettled goes soon after. */
	struct gauges gs = g;
	int64_t settling = bench_now_ns();
	while (gs.ok && gs.pending > 0 && bench_now_ns() - settling < 10000000000) {
		struct timespec pause = {.tv_nsec = 25000000};
		nanosleep(&pause, NULL);
		gs = scrape();
	}
	double settled_ms = (double)(bench_now_ns() - settling) / 1e6;
	close(ep);
	free(ready);
	struct result r = {.achieved = (double)in_phase / secs,
			   .fills_per_s = g.ok ? (g.fills - g0.fills) / secs : -1,
			   .lag_max_ms = g.ok ? lag_max : -1,
			   .answered = in_phase,
			   .sent = sent,
			   .p50 = hist_quantile(&hist, 0.50),
			   .p99 = hist_quantile(&hist, 0.99),
			   .p999 = hist_quantile(&hist, 0.999),
			   .max = hist.max};
	printf("%s: %s, %.0f s, %u connections\n", name, rate > 0 ? "open loop" : "closed loop",
	       opt.seconds, opt.accounts);
	if (rate > 0)
		printf("  offered %.0f requests/s\n", rate);
	else
		printf("  window %u requests in flight per connection\n", opt.window);
	printf("  achieved %.0f requests/s (%llu answered)\n", r.achieved,
	       (unsigned long long)in_phase);
	printf("  ack latency p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
	       (double)r.p50 / 1e6, (double)r.p99 / 1e6, (double)r.p999 / 1e6, (double)r.max / 1e6);
	printf("  rejects:");
	bool any = false;
	for (int k = 1; k < 64; k++)
		if (rejects[k]) {
			printf(" %s %llu", gridex_reject_name(k), (unsigned long long)rejects[k]);
			any = true;
		}
	printf("%s\n",
	       any ? " (orders filled or cancelled before their modify or cancel)" : " none");
	if (g.ok) {
		printf("  fills %.0f/s, settlement lag max %.0f ms (the last batch's, read every "
		       "250 ms)\n",
		       r.fills_per_s, r.lag_max_ms);
		if (gs.settle_ok && g0.settle_ok) {
			/* Every batch of the phase, from the histogram's change over it. */
			double n = gs.settle[SETTLE_BUCKETS - 1] - g0.settle[SETTLE_BUCKETS - 1];
			double over = 0;
			for (int k = 0; k < SETTLE_BUCKETS; k++)
				if (gs.settle_le[k] == 1.0)
					over = n - (gs.settle[k] - g0.settle[k]);
			double at_most = bucket_quantile(g0.settle, gs.settle, gs.settle_le,
							 SETTLE_BUCKETS, 1.0);
			if (n > 0)
				printf("  settlement batches %.0f: lag at most %g ms (histogram "
				       "bound), %.0f over 1 s\n",
				       n, at_most, over);
			else
				printf("  settlement batches 0\n");
		}
		printf("  unsettled when the last answer came: %.0f items, %s %.0f ms later\n",
		       g.pending, gs.pending > 0 ? "still some" : "all settled", settled_ms);
		printf("  server stages, p50/p99 at most (ms, histogram bounds):");
		for (int st = 0; st < STAGES; st++)
			printf(" %s %g/%g", stage_names[st], stage_quantile(&g0, &g, st, 0.50),
			       stage_quantile(&g0, &g, st, 0.99));
		printf("\n");
	}
	if (cpu0.ok && cpu1.ok && in_phase > 0) {
		double total = 0;
		printf("  CPU per answered request (us; time on a CPU by thread, /proc):");
		for (int k = 0; k < CPU_ROLES; k++) {
			double us = (cpu1.ns[k] - cpu0.ns[k]) / 1e3 / (double)in_phase;
			if (k == CPU_LOADGEN)
				printf(" = gridexd %.1f;", total);
			printf(" %s %.1f", cpu_role_names[k], us);
			total += k == CPU_LOADGEN ? 0 : us;
		}
		printf("; machine busy %.0f%% of %ld cores\n",
		       100.0 * (double)(cpu1.busy - cpu0.busy) /
			       (double)(cpu1.total - cpu0.total + (cpu1.total == cpu0.total)),
		       sysconf(_SC_NPROCESSORS_ONLN));
	}
	if (opt.server_pid > 0) {
		printf("  server resident: %.0f MiB at the start, %.0f MiB half way, %.0f MiB at "
		       "the end\n  server resident at each tenth of the run (MiB):",
		       rss0, rss_mid, server_rss());
		for (int k = 0; k < 10; k++)
			printf(" %.0f", rss_tenth[k]);
		printf("\n");
	}
	fflush(stdout);
	return r;
}

static void usage(void)
{
	fputs("usage: loadgen --port=P --ca=CERT --operator-account=N --operator-key=PEM\n"
	      "               [--host=H] [--metrics=HOST:PORT] [--accounts=32] [--seconds=10]\n"
	      "               [--window=64] [--rate=R | --phases] [--cross-pct=3] [--keys=DIR]\n"
	      "               [--first-account=100] [--also-rates=R1,R2,...]\n"
	      "               [--server-pid=PID]\n",
	      stderr);
	exit(2);
}

static double num(const char *s, double lo, double hi)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || v < lo || v > hi)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = strchr(a, '=');
		v = v ? v + 1 : "";
		if (strncmp(a, "--host=", 7) == 0)
			opt.host = v;
		else if (strncmp(a, "--port=", 7) == 0)
			opt.port = (uint16_t)num(v, 1, 65535);
		else if (strncmp(a, "--ca=", 5) == 0)
			opt.ca = v;
		else if (strncmp(a, "--operator-account=", 19) == 0)
			opt.op_account = (uint32_t)num(v, 1, UINT32_MAX);
		else if (strncmp(a, "--operator-key=", 15) == 0)
			opt.op_key = v;
		else if (strncmp(a, "--metrics=", 10) == 0)
			opt.metrics = v;
		else if (strncmp(a, "--accounts=", 11) == 0)
			opt.accounts = (uint32_t)num(v, 2, 4096);
		else if (strncmp(a, "--seconds=", 10) == 0)
			opt.seconds = num(v, 1, 3600);
		else if (strncmp(a, "--window=", 9) == 0)
			opt.window = (uint32_t)num(v, 1, 100000);
		else if (strncmp(a, "--rate=", 7) == 0)
			opt.rate = num(v, 0, 10000000);
		else if (strcmp(a, "--phases") == 0)
			opt.phases = true;
		else if (strncmp(a, "--also-rates=", 13) == 0)
			opt.also = v;
		else if (strncmp(a, "--server-pid=", 13) == 0)
			opt.server_pid = (int)num(v, 1, 1 << 30);
		else if (strncmp(a, "--cross-pct=", 12) == 0)
			opt.cross_pct = (uint32_t)num(v, 0, 100);
		else if (strncmp(a, "--keys=", 7) == 0)
			opt.keys = v;
		else if (strncmp(a, "--first-account=", 16) == 0)
			opt.first_account = (uint32_t)num(v, 1, UINT32_MAX - 5000);
		else
			usage();
	}
	if (opt.ca == NULL || opt.op_key == NULL || opt.op_account == 0)
		usage();
	if (sodium_init() < 0)
		die("libsodium");
	setup();
	/* The ceiling, with the message size of a signed order. */
	struct gridex_frames one = {0};
	uint64_t n;
	gridex_capture(conns[0].c, &one);
	struct gridex_order o = {.client_order_id = 1,
				 .product = product,
				 .side = GRIDEX_BUY,
				 .price = 1,
				 .quantity = 1};
	if (gridex_new_order(conns[0].c, &o, &n) != GRIDEX_OK)
		die("signing");
	gridex_capture(conns[0].c, NULL);
	/* The signed message: the body (the frame less its length prefix, two field headers
	 * and the 64-byte signature with its header) and the 18-byte domain. */
	size_t msg = one.len - 4 - 3 - 2 - 66 + 18;
	gridex_frames_free(&one);
	double mean, ceiling = verify_ceiling(msg, &mean);
	printf("verify ceiling: %.0f signatures/s on one core (crypto_sign_verify_detached, "
	       "%zu-byte messages; best 100 ms of 2 s, mean %.0f)\n",
	       ceiling, msg, mean);
	fflush(stdout);
	if (!opt.phases) {
		run_phase("run", opt.rate);
		return 0;
	}
	struct result max = run_phase("maximum", 0);
	run_phase("half of the maximum", max.achieved / 2);
	for (const char *p = opt.also; p && *p;) {
		char *end;
		double rate = strtod(p, &end);
		if (end == p || rate < 1)
			usage();
		char name[64];
		snprintf(name, sizeof(name), "at %.0f requests/s", rate);
		run_phase(name, rate);
		p = *end == ',' ? end + 1 : end;
	}
	printf("ratio_to_verify_ceiling=%.2f\n", max.achieved / ceiling);
	return 0;
}
