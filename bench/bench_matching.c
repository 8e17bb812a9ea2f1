/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Matching engine benchmark (docs/performance.md).
 *
 * Workload, generated from a seed before any timing:
 *   - `books` products, each warmed up with `resting` orders placed up to
 *     `span` ticks behind the touch on either side (denser near it, a
 *     triangular distribution), tick 100: about 770 levels per book.
 *   - then `commands` operations drawn per book: modify 50% (two thirds of
 *     them a reduction at the same price, which keeps priority, one third a
 *     move of a few ticks, which loses it), cancel 22%, new passive order 25%,
 *     aggressive order 3% (IOC or GTC through one to three levels). Cancels
 *     and new orders trade places when a book drifts 10% from its target
 *     size, so the book keeps its shape for the whole run.
 * The generator drives its own engine to know which orders are alive; the
 * recorded commands are then replayed on fresh engines: `runs` times
 * untimed per command for throughput (best run reported), and once with a
 * timestamp around every command for the latency histogram.
 *
 * --write=FILE also writes the workload in the gridex-replay grammar, so
 * `gridex-replay --bench=R FILE` measures the same commands through the tool.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "matching.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#define HAVE_RDTSC 1
#endif

enum op_kind { OP_NEW, OP_CANCEL, OP_MODIFY };

struct op {
	uint8_t kind, side, tif;
	uint32_t book, account;
	uint64_t id;
	int64_t price, qty;
};

struct opts {
	uint32_t books, resting, span, runs;
	uint64_t commands, seed;
	const char *write_path;
};

/* ---------- the generator ---------- */

static uint64_t rng;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
	return rnd() % n;
}

#define TICK 100
#define MID  2000000 /* 2.00 currency units per GPU-hour */

struct live {
	uint64_t *ids; /* live order ids of one book */
	uint32_t n;
};

struct gen {
	struct matching_engine *eng;
	struct matching_batch batch;
	struct live *books;
	uint32_t *pos; /* index of an order id in its book's live array */
	uint8_t *side; /* by order id */
	int64_t *price;
	int64_t *qty;
	uint64_t next_id, ids_max;
	struct op *ops;
	uint64_t nops, ops_cap;
	uint64_t mix[4];
};

static void live_add(struct gen *g, uint32_t book, uint64_t id)
{
	struct live *l = &g->books[book];
	g->pos[id] = l->n;
	l->ids[l->n++] = id;
}

static void live_del(struct gen *g, uint32_t book, uint64_t id)
{
	struct live *l = &g->books[book];
	uint32_t i = g->pos[id];
	l->ids[i] = l->ids[--l->n];
	g->pos[l->ids[i]] = i;
}

static void die(const char *msg)
{
	fprintf(stderr, "bench-matching: %s\n", msg);
	exit(1);
}

/* Runs one recorded command on an engine. */
static int run_op(struct matching_engine *e, const struct op *op, struct matching_batch *b)
{
	if (op->kind == OP_NEW) {
		struct matching_order o = {.order_id = op->id,
					   .account = op->account,
					   .book = op->book,
					   .side = op->side,
					   .tif = op->tif,
					   .price = op->price,
					   .qty = op->qty};
		return matching_submit(e, &o, b);
	}
	if (op->kind == OP_CANCEL)
		return matching_cancel(e, op->id, b);
	return matching_modify(e, op->id, op->price, op->qty, b);
}

/* Applies op to the generator's engine and tracks which orders stay alive. */
static void gen_apply(struct gen *g, const struct op *op)
{
	int rc = run_op(g->eng, op, &g->batch);
	if (rc)
		die("engine error while generating");
	for (size_t i = 0; i < g->batch.n; i++) {
		const struct matching_event *ev = &g->batch.events[i];
		uint64_t id = ev->order_id;
		bool known = id < g->next_id && g->pos[id] != UINT32_MAX;
		switch (ev->type) {
		case MATCHING_EV_RESTING:
			if (!known)
				live_add(g, ev->book, id);
			g->price[id] = ev->price;
			g->qty[id] = ev->qty;
			break;
		case MATCHING_EV_FILL:
			g->qty[ev->maker_id] = ev->maker_left;
			break;
		case MATCHING_EV_DONE:
		case MATCHING_EV_REMOVED:
			if (known) {
				live_del(g, ev->book, id);
				g->pos[id] = UINT32_MAX;
			}
			break;
		default:
			die("unexpected reject while generating");
		}
	}
	if (g->nops == g->ops_cap) {
		g->ops_cap = g->ops_cap ? g->ops_cap * 2 : 1 << 20;
		g->ops = realloc(g->ops, g->ops_cap * sizeof(*g->ops));
		if (!g->ops)
			die("out of memory");
	}
	g->ops[g->nops++] = *op;
}

static void best_prices(struct gen *g, uint32_t book, int64_t *bid, int64_t *ask)
{
	struct matching_level_view v;
	*bid = matching_book_depth(g->eng, book, MATCHING_BUY, &v, 1) ? v.price : MID - TICK;
	*ask = matching_book_depth(g->eng, book, MATCHING_SELL, &v, 1) ? v.price : MID + TICK;
}

/* A passive price up to `span` ticks behind the touch, denser near it. */
static int64_t passive_price(struct gen *g, uint32_t book, int side, uint32_t span)
{
	int64_t bid, ask;
	best_prices(g, book, &bid, &ask);
	uint64_t a = below(span), b = below(span);
	int64_t depth = (int64_t)(a < b ? a : b); /* triangular: more near the touch */
	int64_t px =
		side == MATCHING_BUY ? (ask - TICK - depth * TICK) : (bid + TICK + depth * TICK);
	return px < TICK ? TICK : px;
}

static struct op new_order(struct gen *g, uint32_t book, int side, int64_t price, int64_t qty,
			   int tif)
{
	if (g->next_id >= g->ids_max)
		die("order id space exhausted; lower --commands");
	return (struct op){.kind = OP_NEW,
			   .side = (uint8_t)side,
			   .tif = (uint8_t)tif,
			   .book = book,
			   .account = 1 + (uint32_t)below(200),
			   .id = g->next_id++,
			   .price = price,
			   .qty = qty};
}

static void gen_command(struct gen *g, const struct opts *o, uint32_t book)
{
	struct live *l = &g->books[book];
	uint64_t k = below(100);
	int kind = k < 50 ? 0 : k < 72 ? 1 : k < 97 ? 2 : 3; /* modify, cancel, new, aggressive */
	if (kind == 1 && l->n < o->resting * 9 / 10)
		kind = 2;
	else if (kind == 2 && l->n > o->resting * 11 / 10)
		kind = 1;
	if (l->n == 0 && kind < 2)
		kind = 2;
	g->mix[kind]++;
	if (kind == 0) {
		uint64_t id = l->ids[below(l->n)];
		struct op op = {.kind = OP_MODIFY, .book = book, .id = id, .price = g->price[id]};
		if (g->qty[id] > 1 && below(3) < 2) {
			op.qty = 1 + (int64_t)below((uint64_t)g->qty[id] - 1);
		} else {
			int side = g->side[id];
			op.price = passive_price(g, book, side, o->span);
			op.qty = g->qty[id];
		}
		gen_apply(g, &op);
	} else if (kind == 1) {
		struct op op = {.kind = OP_CANCEL, .book = book, .id = l->ids[below(l->n)]};
		gen_apply(g, &op);
	} else if (kind == 2) {
		int side = (int)below(2);
		struct op op = new_order(g, book, side, passive_price(g, book, side, o->span),
					 1 + (int64_t)below(16), MATCHING_GTC);
		g->side[op.id] = (uint8_t)side;
		gen_apply(g, &op);
	} else {
		int side = (int)below(2);
		int64_t bid, ask;
		best_prices(g, book, &bid, &ask);
		int64_t through = (int64_t)below(3) * TICK;
		int64_t px = side == MATCHING_BUY ? ask + through : bid - through;
		struct op op =
			new_order(g, book, side, px < TICK ? TICK : px, 1 + (int64_t)below(24),
				  below(2) ? MATCHING_IOC : MATCHING_GTC);
		g->side[op.id] = (uint8_t)side;
		gen_apply(g, &op);
	}
}

static struct matching_engine *engine_new(const struct opts *o, struct matching_batch *batch)
{
	struct matching_config cfg;
	matching_config_default(&cfg);
	cfg.orders_max = o->books * o->resting * 2 + 1024;
	cfg.levels_max = o->books * o->span * 4 + 1024;
	cfg.books_max = o->books;
	struct matching_engine *e;
	if (matching_create(&cfg, &e))
		die("cannot create engine");
	for (uint32_t b = 0; b < o->books; b++) {
		struct matching_product p;
		char name[MATCHING_PRODUCT_NAME_MAX + 1];
		snprintf(name, sizeof(name), "H100/2030-01-01T%02u", b % 24);
		if (b >= 24)
			snprintf(name, sizeof(name), "C%u/2030-01-01T%02u", b / 24, b % 24);
		uint32_t id;
		if (matching_product_parse(name, strlen(name), 0, &p))
			die("bad product name");
		p.tick = TICK;
		if (matching_book_create(e, &p, &id))
			die("cannot create book");
	}
	if (batch->events == NULL) {
		batch->cap = matching_events_max(e);
		batch->events = calloc(batch->cap, sizeof(*batch->events));
		if (!batch->events)
			die("out of memory");
	}
	return e;
}

/* ---------- timing ---------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline uint64_t ticks(void)
{
#ifdef HAVE_RDTSC
	unsigned aux;
	return __rdtscp(&aux);
#else
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

/* Log-linear histogram of nanoseconds: 32 sub-buckets per power of two (~3%). */
#define SUB 32
#define POW 40
static uint64_t hist[POW * SUB];

static unsigned bucket_of(uint64_t ns)
{
	if (ns < SUB)
		return (unsigned)ns;
	unsigned p = 63 - (unsigned)__builtin_clzll(ns); /* >= 5 */
	unsigned sub = (unsigned)(ns >> (p - 5)) & (SUB - 1);
	unsigned b = (p - 4) * SUB + sub;
	return b < POW * SUB ? b : POW * SUB - 1;
}

static uint64_t bucket_ns(unsigned b)
{
	if (b < SUB)
		return b;
	unsigned p = b / SUB + 4, sub = b % SUB;
	return ((uint64_t)(SUB + sub) << (p - 5)) + ((1ULL << (p - 5)) - 1); /* upper edge */
}

static uint64_t percentile(uint64_t total, double q)
{
	uint64_t want = (uint64_t)((double)total * q), seen = 0;
	for (unsigned b = 0; b < POW * SUB; b++) {
		seen += hist[b];
		if (seen > want)
			return bucket_ns(b);
	}
	return bucket_ns(POW * SUB - 1);
}

/* ---------- replay-format output ---------- */

static void write_replay(const char *path, const struct gen *g, uint64_t warm)
{
	FILE *f = fopen(path, "w");
	if (!f)
		die("cannot open --write file");
	fprintf(f,
		"# bench-matching workload: %" PRIu64 " warm-up and %" PRIu64
		" measured commands\n",
		warm, g->nops - warm);
	for (uint32_t b = 0; b < matching_book_count(g->eng); b++)
		fprintf(f, "P,%s,never,tick=%d\n", matching_book_product(g->eng, b)->name, TICK);
	for (uint64_t i = 0; i < g->nops; i++) {
		const struct op *op = &g->ops[i];
		if (op->kind == OP_NEW)
			fprintf(f, "N,%" PRIu64 ",a%u,%s,%c,%s,%" PRId64 ",%" PRId64 "\n", op->id,
				op->account, matching_book_product(g->eng, op->book)->name,
				op->side == MATCHING_BUY ? 'B' : 'S',
				op->tif == MATCHING_IOC ? "IOC" : "GTC", op->price, op->qty);
		else if (op->kind == OP_CANCEL)
			fprintf(f, "C,%" PRIu64 "\n", op->id);
		else
			fprintf(f, "M,%" PRIu64 ",%" PRId64 ",%" PRId64 "\n", op->id, op->price,
				op->qty);
	}
	if (fclose(f))
		die("cannot write --write file");
}

/* ---------- main ---------- */

static bool arg_u64(const char *a, const char *name, uint64_t *out)
{
	size_t k = strlen(name);
	if (strncmp(a, name, k) || a[k] != '=')
		return false;
	char *end;
	unsigned long long v = strtoull(a + k + 1, &end, 10);
	if (*end || end == a + k + 1 || v == 0 || a[k + 1] == '-') {
		fprintf(stderr, "bench-matching: %s needs a positive integer\n", name);
		exit(2);
	}
	*out = v;
	return true;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){.books = 8,
			   .resting = 1000,
			   .span = 1000,
			   .runs = 5,
			   .commands = 4000000,
			   .seed = 1};
	for (int i = 1; i < argc; i++) {
		uint64_t v;
		if (arg_u64(argv[i], "--books", &v) && v <= 1000)
			o->books = (uint32_t)v;
		else if (arg_u64(argv[i], "--resting", &v) && v <= 100000)
			o->resting = (uint32_t)v;
		else if (arg_u64(argv[i], "--span", &v) && v >= 2 && v <= 4000)
			o->span = (uint32_t)v;
		else if (arg_u64(argv[i], "--runs", &v) && v <= 100)
			o->runs = (uint32_t)v;
		else if (arg_u64(argv[i], "--commands", &v) && v <= 100000000)
			o->commands = v;
		else if (arg_u64(argv[i], "--seed", &v))
			o->seed = v;
		else if (strncmp(argv[i], "--write=", 8) == 0)
			o->write_path = argv[i] + 8;
		else {
			fprintf(stderr,
				"usage: bench-matching [--books=8] [--resting=1000] "
				"[--span=1000]\n"
				"       [--commands=4000000] [--runs=5] [--seed=1] [--write=FILE]\n"
				"(bad or out-of-range option: %s)\n",
				argv[i]);
			exit(2);
		}
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	parse_args(argc, argv, &o);
	rng = o.seed;

	struct gen g = {0};
	g.eng = engine_new(&o, &g.batch);
	g.books = calloc(o.books, sizeof(*g.books));
	g.ids_max = o.commands + (uint64_t)o.books * o.resting + 16;
	g.pos = malloc(g.ids_max * sizeof(*g.pos));
	g.side = calloc(g.ids_max, 1);
	g.price = calloc(g.ids_max, sizeof(*g.price));
	g.qty = calloc(g.ids_max, sizeof(*g.qty));
	if (!g.books || !g.pos || !g.side || !g.price || !g.qty)
		die("out of memory");
	memset(g.pos, 0xff, g.ids_max * sizeof(*g.pos));
	g.next_id = 1;
	for (uint32_t b = 0; b < o.books; b++) {
		g.books[b].ids = malloc(((size_t)o.resting * 2 + 64) * sizeof(uint64_t));
		if (!g.books[b].ids)
			die("out of memory");
	}
	/* Warm-up: each book filled to its target size, alternating sides. */
	for (uint32_t b = 0; b < o.books; b++)
		for (uint32_t i = 0; i < o.resting; i++) {
			int side = (int)(i % 2);
			struct op op = new_order(&g, b, side, passive_price(&g, b, side, o.span),
						 1 + (int64_t)below(16), MATCHING_GTC);
			g.side[op.id] = (uint8_t)side;
			gen_apply(&g, &op);
		}
	uint64_t warm = g.nops;
	memset(g.mix, 0, sizeof(g.mix));
	for (uint64_t i = 0; i < o.commands; i++)
		gen_command(&g, &o, (uint32_t)below(o.books));
	uint64_t levels_seen = 0, orders_seen = 0;
	for (uint32_t b = 0; b < o.books; b++) {
		struct matching_level_view v[8192];
		size_t nb = matching_book_depth(g.eng, b, MATCHING_BUY, v, 8192);
		size_t na = matching_book_depth(g.eng, b, MATCHING_SELL, v, 8192);
		levels_seen += nb + na;
		orders_seen += g.books[b].n;
	}
	if (o.write_path)
		write_replay(o.write_path, &g, warm);

	uint64_t n = o.commands;
	printf("workload: seed=%" PRIu64 " books=%u commands=%" PRIu64 " resting/book=%" PRIu64
	       " levels/book=%" PRIu64 " (at the end)\n",
	       o.seed, o.books, n, orders_seen / o.books, levels_seen / o.books);
	printf("mix: modify %.1f%% cancel %.1f%% new %.1f%% aggressive %.1f%%\n",
	       100.0 * (double)g.mix[0] / (double)n, 100.0 * (double)g.mix[1] / (double)n,
	       100.0 * (double)g.mix[2] / (double)n, 100.0 * (double)g.mix[3] / (double)n);

	struct matching_batch b = {0};
	double best = 1e30;
	for (uint32_t r = 0; r < o.runs; r++) {
		struct matching_engine *e = engine_new(&o, &b);
		for (uint64_t i = 0; i < warm; i++)
			if (run_op(e, &g.ops[i], &b))
				die("engine error");
		double t0 = now_s();
		for (uint64_t i = warm; i < g.nops; i++)
			if (run_op(e, &g.ops[i], &b))
				die("engine error");
		double dt = now_s() - t0;
		best = dt < best ? dt : best;
		matching_destroy(e);
	}
	printf("throughput: %.0f ops/s (%.1f ns/op), best of %u runs\n", (double)n / best,
	       best * 1e9 / (double)n, o.runs);

	/* Latency: a timestamp pair around every command; ticks calibrated to ns. */
	struct matching_engine *e = engine_new(&o, &b);
	for (uint64_t i = 0; i < warm; i++)
		if (run_op(e, &g.ops[i], &b))
			die("engine error");
	double t0 = now_s();
	uint64_t c0 = ticks(), overhead = UINT64_MAX;
	for (int i = 0; i < 1000; i++) {
		uint64_t a = ticks(), z = ticks();
		overhead = z - a < overhead ? z - a : overhead;
	}
	uint64_t *lat = malloc(n * sizeof(*lat));
	if (!lat)
		die("out of memory");
	for (uint64_t i = warm; i < g.nops; i++) {
		uint64_t a = ticks();
		if (run_op(e, &g.ops[i], &b))
			die("engine error");
		lat[i - warm] = ticks() - a;
	}
	double ns_per_tick = (now_s() - t0) * 1e9 / (double)(ticks() - c0);
	uint64_t max_ns = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t ns = (uint64_t)((double)lat[i] * ns_per_tick);
		hist[bucket_of(ns)]++;
		max_ns = ns > max_ns ? ns : max_ns;
	}
	printf("latency per command (timer overhead %.0f ns included): p50 %" PRIu64
	       " ns, p99 %" PRIu64 " ns, p99.9 %" PRIu64 " ns, max %" PRIu64 " ns\n",
	       (double)overhead * ns_per_tick, percentile(n, 0.50), percentile(n, 0.99),
	       percentile(n, 0.999), max_ns);
	const char *why = matching_check_invariants(e);
	if (why)
		die(why);
	matching_destroy(e);
	matching_destroy(g.eng);
	free(lat);
	free(b.events);
	free(g.batch.events);
	free(g.ops);
	for (uint32_t i = 0; i < o.books; i++)
		free(g.books[i].ids);
	free(g.books);
	free(g.pos);
	free(g.side);
	free(g.price);
	free(g.qty);
	return 0;
}
