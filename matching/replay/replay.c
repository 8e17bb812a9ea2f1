/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridex-replay: drives the matching engine from a command file and prints
 * its events. The grammar is a public interface; see docs/replay.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "matching.h"
#include "replay_parse.h"

#define EXIT_INPUT 2 /* bad input file or usage */

static const char usage_text[] =
	"usage: gridex-replay [options] [FILE]\n"
	"Reads matching commands from FILE (or stdin, or '-') and prints engine events.\n"
	"\n"
	"  --self-trade=MODE  default self-trade prevention: cancel-newest (default),\n"
	"                     cancel-oldest, cancel-both or allow\n"
	"  --bbo              after each command, per product it touched:\n"
	"                     Q,<product>,<bid_px>,<bid_qty>,<ask_px>,<ask_qty>\n"
	"  --echo             print each input line, prefixed by '> ', before its events\n"
	"                     (comment lines as they are)\n"
	"  --bench=R          parse everything, run it R times without output,\n"
	"                     print ops_per_sec=<n> last\n"
	"  --gate-lead=MS     gate closure before a product's delivery period (default 300000)\n"
	"  --orders=N         resting order capacity (default 1048576)\n"
	"  --levels=N         price level capacity (default 1048576)\n"
	"  --books=N          product capacity (default 1024)\n"
	"  --help             this text\n"
	"\n"
	"Exit status: 0 success, 1 out of memory, 2 bad input or usage.\n"
	"Grammar and events: docs/replay.md.\n";

/* One parsed command with names resolved to tool-level numbers. */
struct op {
	uint8_t kind, side, tif, stp;
	uint32_t account;
	uint32_t product; /* product table index; first leg for K */
	uint32_t hours;
	uint32_t legs; /* K: index of its first leg in tool.legs */
	uint64_t order_id;
	int64_t price, qty, expire_ms, time_ms;
	uint64_t line;
};

struct product {
	struct matching_product spec;
	bool valid;   /* spec parsed; otherwise orders get bad_product */
	bool created; /* book created (or creation failed) in this run */
	int create_rc;
	uint32_t book;
};

struct names {
	char (*keys)[MATCHING_PRODUCT_NAME_MAX + 1];
	uint32_t *slots; /* key index + 1, 0 = empty */
	size_t n, cap;	 /* cap is a power of two, load kept below 1/2 */
};

struct out {
	char buf[1 << 16];
	size_t n;
	bool on;
};

struct tool {
	struct matching_config cfg;
	struct matching_engine *eng;
	struct matching_batch batch;
	int64_t gate_lead_ms;
	bool bbo, echo;
	const char *input_name;
	struct names account_names, product_names;
	struct product *products;
	size_t products_cap;
	uint32_t *legs;
	size_t nlegs, legs_cap;
	uint32_t *touched; /* books a command touched, for --bbo */
	uint64_t *mark;	   /* per book: the command number that last touched it */
	uint64_t cmd_no;
	struct out out;
};

static _Noreturn void die_nomem(void)
{
	fputs("gridex-replay: out of memory\n", stderr);
	exit(EXIT_FAILURE);
}

static void *grow(void *p, size_t *cap, size_t elem, size_t need)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(p, n * elem);
	if (!q)
		die_nomem();
	*cap = n;
	return q;
}

/* ---------- output ---------- */

static void out_flush(struct out *o)
{
	if (o->n && fwrite(o->buf, 1, o->n, stdout) != o->n) {
		fprintf(stderr, "gridex-replay: write error: %s\n", strerror(errno));
		exit(EXIT_FAILURE);
	}
	o->n = 0;
}

static void out_str(struct out *o, const char *s)
{
	size_t n = strlen(s);
	if (o->n + n > sizeof(o->buf))
		out_flush(o);
	memcpy(o->buf + o->n, s, n);
	o->n += n;
}

static void out_i64(struct out *o, int64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	tmp[--i] = '\0';
	do {
		tmp[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		tmp[--i] = '-';
	out_str(o, tmp + i);
}

static void out_u64(struct out *o, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	tmp[--i] = '\0';
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	out_str(o, tmp + i);
}

/* Stops on bad input, after printing the events of the lines before it. */
static _Noreturn void die_input(struct tool *t, uint64_t line, const char *msg)
{
	if (t->out.on)
		out_flush(&t->out);
	fflush(stdout);
	fprintf(stderr, "gridex-replay: %s:%" PRIu64 ": %s\n", t->input_name, line, msg);
	exit(EXIT_INPUT);
}

/* ---------- names ---------- */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h;
}

/* Index of name, added when missing (*added tells). Names are NUL-terminated, <= 63 bytes. */
static uint32_t names_get(struct names *t, const char *name, bool *added)
{
	if (2 * (t->n + 1) > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		uint32_t *slots = calloc(cap, sizeof(*slots));
		if (!slots)
			die_nomem();
		for (size_t i = 0; i < t->cap; i++) {
			if (!t->slots[i])
				continue;
			size_t h = fnv1a(t->keys[t->slots[i] - 1]) & (cap - 1);
			while (slots[h])
				h = (h + 1) & (cap - 1);
			slots[h] = t->slots[i];
		}
		free(t->slots);
		t->slots = slots;
		t->cap = cap;
		t->keys = realloc(t->keys, cap * sizeof(*t->keys));
		if (!t->keys)
			die_nomem();
	}
	size_t h = fnv1a(name) & (t->cap - 1);
	for (; t->slots[h]; h = (h + 1) & (t->cap - 1))
		if (strcmp(t->keys[t->slots[h] - 1], name) == 0) {
			*added = false;
			return t->slots[h] - 1;
		}
	if (t->n >= UINT32_MAX - 1)
		die_nomem();
	memcpy(t->keys[t->n], name, strlen(name) + 1); /* length checked by the parser */
	t->slots[h] = (uint32_t)++t->n;
	*added = true;
	return (uint32_t)(t->n - 1);
}

static uint32_t product_get(struct tool *t, const char *name, bool *added)
{
	uint32_t i = names_get(&t->product_names, name, added);
	if (*added) {
		t->products = grow(t->products, &t->products_cap, sizeof(*t->products), i + 1);
		struct product *p = &t->products[i];
		memset(p, 0, sizeof(*p));
		p->valid = matching_product_parse(name, strlen(name), t->gate_lead_ms, &p->spec) ==
			   MATCHING_OK;
	}
	return i;
}

/* ---------- resolving parsed commands ---------- */

static void resolve(struct tool *t, const struct replay_cmd *c, uint64_t line, struct op *op)
{
	bool added;
	*op = (struct op){
		.kind = c->kind,
		.side = c->side,
		.tif = c->tif,
		.stp = c->stp,
		.order_id = c->order_id,
		.price = c->price,
		.qty = c->qty,
		.expire_ms = c->expire_ms,
		.time_ms = c->time_ms,
		.hours = c->hours,
		.line = line,
	};
	if (c->kind == REPLAY_NEW || c->kind == REPLAY_BASKET) {
		op->account = names_get(&t->account_names, c->account, &added) + 1;
		op->product = product_get(t, c->product, &added);
	}
	if (c->kind == REPLAY_PRODUCT) {
		op->product = product_get(t, c->product, &added);
		struct product *p = &t->products[op->product];
		if (!added)
			die_input(t, line, "P must come before the product's first use");
		if (!p->valid)
			die_input(t, line, "P needs a product named CLASS or CLASS/YYYY-MM-DDTHH");
		p->spec.gate_ms = c->gate_ms;
		p->spec.tick = c->tick;
	}
	if (c->kind == REPLAY_BASKET) {
		struct product *first = &t->products[op->product];
		if (!first->valid || first->spec.period_start_ms == MATCHING_NO_PERIOD)
			die_input(t, line, "K needs a first product named CLASS/YYYY-MM-DDTHH");
		struct matching_product spec0 = first->spec;
		t->legs = grow(t->legs, &t->legs_cap, sizeof(*t->legs), t->nlegs + c->hours);
		op->legs = (uint32_t)t->nlegs;
		for (uint32_t i = 0; i < c->hours; i++) {
			char name[MATCHING_PRODUCT_NAME_MAX + 1];
			if (matching_product_hour_name(&spec0, i, name) != MATCHING_OK)
				die_input(t, line, "basket period out of range");
			t->legs[t->nlegs++] = product_get(t, name, &added);
		}
	}
}

/* ---------- execution ---------- */

/* The book of a product, created on first use in this run; 0 or a reason. */
static int book_of(struct tool *t, uint32_t pi, uint32_t *book)
{
	struct product *p = &t->products[pi];
	if (!p->created) {
		p->created = true;
		p->create_rc = p->valid ? matching_book_create(t->eng, &p->spec, &p->book)
					: MATCHING_ERR_PRODUCT;
	}
	*book = p->book;
	return p->create_rc;
}

static const char *product_reason(int rc)
{
	return rc == MATCHING_ERR_BOOKS_FULL ? "too_many_products" : "bad_product";
}

static void print_reject(struct tool *t, uint64_t id, const char *reason)
{
	if (!t->out.on)
		return;
	out_str(&t->out, "R,");
	out_u64(&t->out, id);
	out_str(&t->out, ",");
	out_str(&t->out, reason);
	out_str(&t->out, "\n");
}

static void print_events(struct tool *t)
{
	struct out *o = &t->out;
	for (size_t i = 0; i < t->batch.n; i++) {
		const struct matching_event *ev = &t->batch.events[i];
		switch (ev->type) {
		case MATCHING_EV_FILL:
			out_str(o, "F,");
			out_u64(o, ev->order_id);
			out_str(o, ",");
			out_u64(o, ev->maker_id);
			out_str(o, ",");
			out_i64(o, ev->price);
			out_str(o, ",");
			out_i64(o, ev->qty);
			break;
		case MATCHING_EV_RESTING:
			out_str(o, "A,");
			out_u64(o, ev->order_id);
			out_str(o, ",");
			out_i64(o, ev->qty);
			break;
		case MATCHING_EV_DONE:
			out_str(o, "D,");
			out_u64(o, ev->order_id);
			break;
		case MATCHING_EV_REMOVED:
			out_str(o, "X,");
			out_u64(o, ev->order_id);
			out_str(o, ",");
			out_i64(o, ev->qty);
			break;
		default:
			out_str(o, "R,");
			out_u64(o, ev->order_id);
			out_str(o, ",");
			out_str(o, matching_reason_name(ev->reason));
			break;
		}
		out_str(o, "\n");
	}
}

static void print_bbo(struct tool *t, uint32_t book)
{
	struct matching_level_view bid = {0}, ask = {0};
	(void)matching_book_depth(t->eng, book, MATCHING_BUY, &bid, 1);
	(void)matching_book_depth(t->eng, book, MATCHING_SELL, &ask, 1);
	struct out *o = &t->out;
	out_str(o, "Q,");
	out_str(o, matching_book_product(t->eng, book)->name);
	int64_t v[4] = {bid.price, bid.qty, ask.price, ask.qty};
	for (int i = 0; i < 4; i++) {
		out_str(o, ",");
		out_i64(o, v[i]);
	}
	out_str(o, "\n");
}

static void check_rc(struct tool *t, const struct op *op, int rc)
{
	if (rc == MATCHING_ERR_CLOCK)
		die_input(t, op->line, "T goes back in time");
	if (rc != MATCHING_OK) {
		fprintf(stderr, "gridex-replay: engine error %d\n", rc);
		exit(EXIT_FAILURE);
	}
}

/* Adds book to the command's touched list once; returns the new length. */
static size_t touch(struct tool *t, size_t n, uint32_t book)
{
	if (t->mark[book] == t->cmd_no)
		return n;
	t->mark[book] = t->cmd_no;
	t->touched[n] = book;
	return n + 1;
}

static size_t run_order(struct tool *t, const struct op *op)
{
	uint32_t book;
	int rc = book_of(t, op->product, &book);
	if (rc) {
		print_reject(t, op->order_id, product_reason(rc));
		return 0;
	}
	struct matching_order o = {
		.order_id = op->order_id,
		.account = op->account,
		.book = book,
		.side = op->side,
		.tif = op->tif,
		.stp = op->stp,
		.price = op->price,
		.qty = op->qty,
		.expire_ms = op->expire_ms,
	};
	check_rc(t, op, matching_submit(t->eng, &o, &t->batch));
	return touch(t, 0, book);
}

static size_t run_basket(struct tool *t, const struct op *op)
{
	struct matching_basket b = {
		.account = op->account,
		.side = op->side,
		.stp = op->stp,
		.price = op->price,
		.qty = op->qty,
		.n_legs = op->hours,
	};
	for (uint32_t i = 0; i < op->hours; i++) {
		int rc = book_of(t, t->legs[op->legs + i], &b.books[i]);
		if (rc) {
			for (uint32_t k = 0; k < op->hours; k++)
				print_reject(t, op->order_id + k, product_reason(rc));
			return 0;
		}
		b.order_ids[i] = op->order_id + i;
	}
	check_rc(t, op, matching_submit_basket(t->eng, &b, &t->batch));
	size_t n = 0;
	for (uint32_t i = 0; i < op->hours; i++)
		n = touch(t, n, b.books[i]);
	return n;
}

/* Runs one command; prints its events (and BBO lines) when output is on. */
static void run_op(struct tool *t, const struct op *op)
{
	size_t ntouched = 0;
	struct matching_order_view v;
	uint32_t book;
	t->batch.n = 0;
	t->cmd_no++;
	switch (op->kind) {
	case REPLAY_NEW:
		ntouched = run_order(t, op);
		break;
	case REPLAY_BASKET:
		ntouched = run_basket(t, op);
		break;
	case REPLAY_CANCEL:
	case REPLAY_MODIFY:
		if (t->bbo && matching_order_get(t->eng, op->order_id, &v) == MATCHING_OK)
			ntouched = touch(t, 0, v.book);
		check_rc(t, op,
			 op->kind == REPLAY_CANCEL
				 ? matching_cancel(t->eng, op->order_id, &t->batch)
				 : matching_modify(t->eng, op->order_id, op->price, op->qty,
						   &t->batch));
		break;
	case REPLAY_TIME:
		check_rc(t, op, matching_advance(t->eng, op->time_ms, &t->batch));
		for (size_t i = 0; i < t->batch.n; i++)
			ntouched = touch(t, ntouched, t->batch.events[i].book);
		break;
	case REPLAY_PRODUCT:
		if (book_of(t, op->product, &book) != MATCHING_OK)
			die_input(t, op->line, "P: too many products (raise --books)");
		ntouched = touch(t, 0, book);
		break;
	}
	if (!t->out.on)
		return;
	print_events(t);
	if (t->bbo)
		for (size_t i = 0; i < ntouched; i++)
			print_bbo(t, t->touched[i]);
}

/* ---------- input ---------- */

/*
 * Reads one line of at most REPLAY_LINE_MAX bytes (plus '\r') into buf.
 * Returns its length, -1 at end of input, -2 for an overlong line.
 */
static long read_line(FILE *f, char *buf, size_t cap)
{
	size_t n = 0;
	int c;
	bool overlong = false;
	while ((c = getc_unlocked(f)) != EOF && c != '\n') {
		if (n < cap)
			buf[n++] = (char)c;
		else
			overlong = true;
	}
	if (c == EOF && n == 0 && !overlong)
		return -1;
	return overlong ? -2 : (long)n;
}

static bool parse_next(struct tool *t, FILE *f, uint64_t *line, struct op *op)
{
	char buf[REPLAY_LINE_MAX + 2];
	for (;;) {
		long n = read_line(f, buf, sizeof(buf));
		if (n == -1)
			return false;
		++*line;
		if (n == -2)
			die_input(t, *line, "line longer than 1024 bytes");
		struct replay_cmd c;
		const char *err = NULL;
		if (replay_parse_line(buf, (size_t)n, &c, &err) != 0)
			die_input(t, *line, err);
		if (t->echo && t->out.on && n > 0) {
			buf[n] = '\0';
			out_str(&t->out, buf[0] == '#' ? "" : "> ");
			out_str(&t->out, buf);
			out_str(&t->out, "\n");
		}
		if (c.kind == REPLAY_SKIP)
			continue;
		resolve(t, &c, *line, op);
		return true;
	}
}

static void engine_fresh(struct tool *t)
{
	matching_destroy(t->eng);
	t->eng = NULL;
	int rc = matching_create(&t->cfg, &t->eng);
	if (rc == MATCHING_ERR_NOMEM)
		die_nomem();
	if (rc) {
		fputs("gridex-replay: capacities out of range\n", stderr);
		exit(EXIT_INPUT);
	}
	for (size_t i = 0; i < t->product_names.n; i++)
		t->products[i].created = false;
}

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_bench(struct tool *t, FILE *f, uint64_t runs)
{
	struct op *ops = NULL;
	size_t n = 0, cap = 0;
	uint64_t line = 0;
	struct op op;
	while (parse_next(t, f, &line, &op)) {
		ops = grow(ops, &cap, sizeof(*ops), n + 1);
		ops[n++] = op;
	}
	t->out.on = false;
	double best = 0;
	for (uint64_t r = 0; r < runs; r++) {
		engine_fresh(t);
		double t0 = seconds_now();
		for (size_t i = 0; i < n; i++)
			run_op(t, &ops[i]);
		double dt = seconds_now() - t0;
		if (r == 0 || dt < best)
			best = dt;
	}
	free(ops);
	printf("commands=%zu\nruns=%" PRIu64 "\nbest_ns_per_op=%.1f\n", n, runs,
	       n ? best * 1e9 / (double)n : 0.0);
	printf("ops_per_sec=%.0f\n", best > 0 ? (double)n / best : 0.0);
	return 0;
}

/* ---------- options ---------- */

static bool opt_u64(const char *arg, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
	size_t k = strlen(name);
	if (strncmp(arg, name, k) != 0 || arg[k] != '=')
		return false;
	const char *v = arg + k + 1;
	uint64_t x = 0;
	bool ok = *v != '\0' && strlen(v) <= 20;
	for (const char *p = v; ok && *p; p++)
		ok = *p >= '0' && *p <= '9' && !__builtin_mul_overflow(x, 10, &x) &&
		     !__builtin_add_overflow(x, (uint64_t)(*p - '0'), &x);
	if (!ok || x < min || x > max) {
		fprintf(stderr,
			"gridex-replay: %s needs an integer from %" PRIu64 " to %" PRIu64 "\n",
			name, min, max);
		exit(EXIT_INPUT);
	}
	*out = x;
	return true;
}

static void parse_args(struct tool *t, int argc, char **argv, uint64_t *bench_runs,
		       const char **path)
{
	uint64_t v;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage_text, stdout);
			exit(0);
		} else if (strcmp(a, "--bbo") == 0) {
			t->bbo = true;
		} else if (strcmp(a, "--echo") == 0) {
			t->echo = true;
		} else if (strncmp(a, "--self-trade=", 13) == 0) {
			const char *m = a + 13;
			if (strcmp(m, "allow") == 0)
				t->cfg.stp_default = MATCHING_STP_ALLOW;
			else if (strcmp(m, "cancel-newest") == 0)
				t->cfg.stp_default = MATCHING_STP_CANCEL_NEWEST;
			else if (strcmp(m, "cancel-oldest") == 0)
				t->cfg.stp_default = MATCHING_STP_CANCEL_OLDEST;
			else if (strcmp(m, "cancel-both") == 0)
				t->cfg.stp_default = MATCHING_STP_CANCEL_BOTH;
			else {
				fprintf(stderr, "gridex-replay: unknown --self-trade mode '%s'\n",
					m);
				exit(EXIT_INPUT);
			}
		} else if (opt_u64(a, "--bench", 1, 1000000, &v)) {
			*bench_runs = v;
		} else if (opt_u64(a, "--gate-lead", 0, INT64_MAX / 2, &v)) {
			t->gate_lead_ms = (int64_t)v;
		} else if (opt_u64(a, "--orders", 1, MATCHING_ORDERS_CEILING, &v)) {
			t->cfg.orders_max = (uint32_t)v;
		} else if (opt_u64(a, "--levels", 1, MATCHING_LEVELS_CEILING, &v)) {
			t->cfg.levels_max = (uint32_t)v;
		} else if (opt_u64(a, "--books", 1, MATCHING_BOOKS_CEILING, &v)) {
			t->cfg.books_max = (uint32_t)v;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "gridex-replay: unknown option '%s' (see --help)\n", a);
			exit(EXIT_INPUT);
		} else if (*path) {
			fputs("gridex-replay: more than one input file\n", stderr);
			exit(EXIT_INPUT);
		} else {
			*path = a;
		}
	}
}

int main(int argc, char **argv)
{
	static struct tool t;
	uint64_t bench_runs = 0;
	const char *path = NULL;
	matching_config_default(&t.cfg);
	t.gate_lead_ms = 300000;
	parse_args(&t, argc, argv, &bench_runs, &path);

	FILE *f = stdin;
	t.input_name = "<stdin>";
	if (path && strcmp(path, "-") != 0) {
		f = fopen(path, "r");
		if (!f) {
			fprintf(stderr, "gridex-replay: cannot open %s: %s\n", path,
				strerror(errno));
			return EXIT_INPUT;
		}
		t.input_name = path;
	}
	engine_fresh(&t);
	t.batch.cap = matching_events_max(t.eng);
	t.batch.events = calloc(t.batch.cap, sizeof(*t.batch.events));
	t.touched = calloc(t.cfg.books_max, sizeof(*t.touched));
	t.mark = calloc(t.cfg.books_max, sizeof(*t.mark));
	if (!t.batch.events || !t.touched || !t.mark)
		die_nomem();

	int rc = 0;
	if (bench_runs) {
		rc = run_bench(&t, f, bench_runs);
	} else {
		t.out.on = true;
		uint64_t line = 0;
		struct op op;
		while (parse_next(&t, f, &line, &op))
			run_op(&t, &op);
		out_flush(&t.out);
	}
	if (ferror(f)) {
		fprintf(stderr, "gridex-replay: read error on %s\n", t.input_name);
		rc = EXIT_INPUT;
	}
	if (f != stdin)
		fclose(f);
	matching_destroy(t.eng);
	free(t.batch.events);
	free(t.touched);
	free(t.mark);
	free(t.products);
	free(t.legs);
	free(t.account_names.keys);
	free(t.account_names.slots);
	free(t.product_names.keys);
	free(t.product_names.slots);
	return rc;
}
