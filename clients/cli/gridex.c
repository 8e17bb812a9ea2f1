/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridex: the command-line client of the exchange (docs/cli.md), on libgridex.
 * Settings: flags, then the environment, then the config file
 * (~/.config/gridex/config), first found wins. Human tables by default,
 * --json for scripts. Exit status: 0 done, 1 refused or failed, 2 usage.
 */
#include "gridex/gridex.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#define ARGS_MAX 24 /* host NAME CLASS VENDOR and 16 devices, and room */

struct cli {
	/* settings */
	char server[256], ca[512], key[512], config[512];
	uint32_t account;
	bool json;
	int timeout_ms;
	/* the command line */
	const char *cmd;
	const char *args[ARGS_MAX];
	int nargs;
	const char *opt_tif, *opt_expire, *opt_hours, *opt_id, *opt_stp, *opt_wait, *opt_depth,
		*opt_count, *opt_seconds;
	bool opt_all;
	gridex_client *c;
	int refused;	    /* the reason of the last request the server refused */
	bool quiet_limited; /* answer() leaves RATE_LIMITED to the caller, unprinted */
};

static const char usage_text[] =
	"usage: gridex [--server=HOST:PORT] [--ca=FILE] [--account=N] [--key=FILE] [--json]\n"
	"              [--timeout=MS] [--config=FILE] COMMAND [ARGS] [--help]\n"
	"\n"
	"keys        keygen [FILE]                 new Ed25519 key (PEM, mode 600); prints its "
	"public key\n"
	"            pubkey                        the public key of --key\n"
	"trading     bid PRODUCT QTY PRICE         buy QTY GPUs of PRODUCT at PRICE or better\n"
	"            offer PRODUCT QTY PRICE       sell (needs capacity registered by the "
	"operator)\n"
	"                [--tif=gtc|gtd|ioc|fok|post] [--expire=UNIX_MS] [--hours=N (FOK basket)]\n"
	"                [--id=CLIENT_ORDER_ID] [--stp=newest|oldest|both|allow] [--wait=MS]\n"
	"            cancel ID | cancel --all [PRODUCT|CLASS]\n"
	"            modify ID PRICE QTY           new limit and open quantity\n"
	"            account                       balance and money held for open bids\n"
	"            orders [PRODUCT|CLASS]        live orders\n"
	"            fills [PRODUCT|CLASS]         recent fills\n"
	"            leases                        the account's leases, as buyer or seller\n"
	"leases      host NAME CLASS VENDOR UUID...  register a host and its devices (sellers)\n"
	"            withdraw-host NAME            no new leases on it (its seller, the operator)\n"
	"            hosts                         the account's hosts (the operator: all)\n"
	"            workload JSON|@FILE           what runs on the GPUs you buy (buyers)\n"
	"market      book PRODUCT [--depth=N]      depth by price level\n"
	"            trades PRODUCT|CLASS [--count=N] [--seconds=S]   the trade tape, live\n"
	"            watch PRODUCT [--seconds=S]   live book and trades\n"
	"operator    register ID NAME PUBKEY       PUBKEY: 64 hex digits or a key file\n"
	"            deposit ID AMOUNT | withdraw ID AMOUNT\n"
	"            capacity ID CLASS GPUS        GPUs per delivery hour the seller may offer\n"
	"            halt PRODUCT | resume PRODUCT\n"
	"\n"
	"PRODUCT is CLASS/YYYY-MM-DDTHH (UTC), e.g. H100-80G/2026-11-22T19; prices and amounts\n"
	"are currency units per GPU-hour with up to 6 decimals (2.45). Settings come from the\n"
	"flags, then GRIDEX_SERVER, GRIDEX_CA, GRIDEX_ACCOUNT, GRIDEX_KEY, then the file\n"
	"~/.config/gridex/config (lines key = value: server, ca, account, key).\n"
	"Exit status: 0 done, 1 refused or failed, 2 usage. More: docs/cli.md.\n";

static _Noreturn void usage(const char *why)
{
	fprintf(stderr, "gridex: %s\n\n%s", why, usage_text);
	exit(2);
}

static _Noreturn void die(struct cli *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static _Noreturn void die(struct cli *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("gridex: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	gridex_client_free(x->c);
	exit(1);
}

/* ---------- settings ---------- */

static void set_text(char *dst, size_t cap, const char *v)
{
	if (dst[0] == '\0' && v && v[0])
		snprintf(dst, cap, "%s", v);
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static void set_account(struct cli *x, const char *v, const char *from)
{
	uint64_t a;
	if (x->account != 0 || v == NULL || v[0] == '\0')
		return;
	if (!parse_u64(v, &a) || a == 0 || a > UINT32_MAX) {
		fprintf(stderr, "gridex: account from %s must be 1 .. 4294967295\n", from);
		exit(2);
	}
	x->account = (uint32_t)a;
}

static void config_path(struct cli *x, char *out, size_t cap)
{
	if (x->config[0]) {
		snprintf(out, cap, "%s", x->config);
		return;
	}
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	if (xdg && xdg[0])
		snprintf(out, cap, "%s/gridex/config", xdg);
	else
		snprintf(out, cap, "%s/.config/gridex/config", home ? home : ".");
}

/* The config file fills what flags and environment left empty. */
static void load_config(struct cli *x)
{
	char path[600];
	config_path(x, path, sizeof(path));
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		if (x->config[0])
			usage("cannot read the --config file");
		return;
	}
	char line[1024];
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		n++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *k = line + strspn(line, " \t");
		if (*k == '\0' || *k == '\n')
			continue;
		char *eq = strchr(k, '=');
		if (eq == NULL) {
			fprintf(stderr, "gridex: %s:%d: expected key = value\n", path, n);
			exit(2);
		}
		*eq = '\0';
		char *v = eq + 1 + strspn(eq + 1, " \t");
		for (char *e = k + strlen(k); e > k && (e[-1] == ' ' || e[-1] == '\t'); *--e = '\0')
			;
		for (char *e = v + strlen(v); e > v && strchr(" \t\r\n", e[-1]); *--e = '\0')
			;
		if (strcmp(k, "server") == 0)
			set_text(x->server, sizeof(x->server), v);
		else if (strcmp(k, "ca") == 0)
			set_text(x->ca, sizeof(x->ca), v);
		else if (strcmp(k, "key") == 0)
			set_text(x->key, sizeof(x->key), v);
		else if (strcmp(k, "account") == 0)
			set_account(x, v, path);
		else {
			fprintf(stderr, "gridex: %s:%d: unknown setting '%s'\n", path, n, k);
			exit(2);
		}
	}
	fclose(f);
}

static void parse_command_line(struct cli *x, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = strchr(a, '=');
		v = v ? v + 1 : NULL;
#define OPT(name) (strncmp(a, "--" name "=", sizeof(name) + 2) == 0)
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage_text, stdout);
			exit(0);
		} else if (strcmp(a, "--json") == 0) {
			x->json = true;
		} else if (strcmp(a, "--all") == 0) {
			x->opt_all = true;
		} else if (OPT("server")) {
			snprintf(x->server, sizeof(x->server), "%s", v);
		} else if (OPT("ca")) {
			snprintf(x->ca, sizeof(x->ca), "%s", v);
		} else if (OPT("key")) {
			snprintf(x->key, sizeof(x->key), "%s", v);
		} else if (OPT("config")) {
			snprintf(x->config, sizeof(x->config), "%s", v);
		} else if (OPT("account")) {
			set_account(x, v, "--account");
		} else if (OPT("timeout")) {
			uint64_t t;
			if (!parse_u64(v, &t) || t < 1 || t > 3600000)
				usage("--timeout is milliseconds, 1 .. 3600000");
			x->timeout_ms = (int)t;
		} else if (OPT("tif")) {
			x->opt_tif = v;
		} else if (OPT("expire")) {
			x->opt_expire = v;
		} else if (OPT("hours")) {
			x->opt_hours = v;
		} else if (OPT("id")) {
			x->opt_id = v;
		} else if (OPT("stp")) {
			x->opt_stp = v;
		} else if (OPT("wait")) {
			x->opt_wait = v;
		} else if (OPT("depth")) {
			x->opt_depth = v;
		} else if (OPT("count")) {
			x->opt_count = v;
		} else if (OPT("seconds")) {
			x->opt_seconds = v;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "gridex: unknown option '%s'\n\n%s", a, usage_text);
			exit(2);
		} else if (x->cmd == NULL) {
			x->cmd = a;
		} else if (x->nargs < ARGS_MAX) {
			x->args[x->nargs++] = a;
		} else {
			usage("too many arguments");
		}
#undef OPT
	}
	set_text(x->server, sizeof(x->server), getenv("GRIDEX_SERVER"));
	set_text(x->ca, sizeof(x->ca), getenv("GRIDEX_CA"));
	set_text(x->key, sizeof(x->key), getenv("GRIDEX_KEY"));
	set_account(x, getenv("GRIDEX_ACCOUNT"), "GRIDEX_ACCOUNT");
	load_config(x);
	set_text(x->server, sizeof(x->server), "localhost:7400");
	if (x->timeout_ms == 0)
		x->timeout_ms = 10000;
}

static uint64_t opt_u64(const char *v, const char *name, uint64_t min, uint64_t max)
{
	uint64_t n;
	if (!parse_u64(v, &n) || n < min || n > max) {
		fprintf(stderr, "gridex: --%s must be %" PRIu64 " .. %" PRIu64 "\n", name, min,
			max);
		exit(2);
	}
	return n;
}

/* ---------- connection and answers ---------- */

static void connect_server(struct cli *x, bool signed_requests)
{
	struct gridex_options o;
	gridex_options_default(&o);
	static char host[256];
	snprintf(host, sizeof(host), "%s", x->server);
	char *colon = strrchr(host, ':');
	if (colon) {
		*colon = '\0';
		o.port = (uint16_t)opt_u64(colon + 1, "server port", 1, 65535);
	}
	o.host = host;
	o.ca_file = x->ca[0] ? x->ca : NULL;
	o.timeout_ms = x->timeout_ms;
	if (signed_requests) {
		if (x->account == 0 || x->key[0] == '\0')
			usage("this command signs requests: give --account and --key (or set them "
			      "in "
			      "the environment or ~/.config/gridex/config)");
		o.account = x->account;
		o.key_file = x->key;
	}
	int rc = gridex_client_new(&o, &x->c);
	if (rc)
		die(x, "%s", x->c ? gridex_client_error(x->c) : gridex_status_name(rc));
	rc = gridex_connect(x->c);
	if (rc)
		die(x, "%s (is gridexd running at %s? is --ca its certificate?)",
		    gridex_client_error(x->c), x->server);
}

static void next(struct cli *x, int timeout_ms, struct gridex_event *ev, int *rc)
{
	*rc = gridex_next_event(x->c, timeout_ms, ev);
	if (*rc != GRIDEX_OK && *rc != GRIDEX_AGAIN)
		die(x, "%s", gridex_client_error(x->c));
}

static json_t *report_json(const struct gridex_report *r)
{
	char price[32], last[32], fee[32];
	gridex_format_price(r->price, price, sizeof(price));
	gridex_format_price(r->last_price, last, sizeof(last));
	gridex_format_price(r->fee, fee, sizeof(fee));
	json_t *j = json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:I, s:I, s:I}", "event",
			      gridex_exec_name(r->exec_type), "client_order_id",
			      (json_int_t)r->client_order_id, "order_id", (json_int_t)r->order_id,
			      "product", r->product, "side", r->side == GRIDEX_BUY ? "buy" : "sell",
			      "price", price, "cumulative_quantity",
			      (json_int_t)r->cumulative_quantity, "leaves_quantity",
			      (json_int_t)r->leaves_quantity, "sequence", (json_int_t)r->sequence);
	if (j && r->fill_id) {
		json_object_set_new(j, "fill_id", json_integer((json_int_t)r->fill_id));
		json_object_set_new(j, "last_price", json_string(last));
		json_object_set_new(j, "last_quantity", json_integer(r->last_quantity));
		json_object_set_new(j, "fee", json_string(fee));
	}
	return j;
}

static void print_json(json_t *j)
{
	if (j == NULL) {
		fputs("gridex: out of memory\n", stderr);
		exit(1);
	}
	json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
	fputc('\n', stdout);
	json_decref(j);
}

static void print_report(struct cli *x, const struct gridex_report *r)
{
	if (x->json) {
		print_json(report_json(r));
		return;
	}
	char price[32], last[32], fee[32];
	gridex_format_price(r->price, price, sizeof(price));
	printf("%-13s id %-8" PRIu64 " %-4s %-24s limit %-10s filled %" PRId64 " open %" PRId64,
	       gridex_exec_name(r->exec_type), r->client_order_id,
	       r->side == GRIDEX_BUY ? "buy" : "sell", r->product, price, r->cumulative_quantity,
	       r->leaves_quantity);
	if (r->fill_id) {
		gridex_format_price(r->last_price, last, sizeof(last));
		gridex_format_price(r->fee, fee, sizeof(fee));
		printf("  last %" PRId64 " @ %s fee %s", r->last_quantity, last, fee);
	}
	putchar('\n');
}

/* Waits for the answer to nonce, printing reports that arrive meanwhile; then,
 * for orders, prints further reports until wait_ms pass without one.
 * Returns 0 (accepted) or 1 (refused). *result receives a RESULT event when wanted. */
static int answer(struct cli *x, uint64_t nonce, int wait_ms, struct gridex_event *result)
{
	int64_t deadline = (int64_t)time(NULL) + x->timeout_ms / 1000 + 1;
	bool acked = false;
	for (;;) {
		struct gridex_event ev;
		int rc;
		next(x, acked && !result ? wait_ms : 1000, &ev, &rc);
		if (rc == GRIDEX_AGAIN) {
			if (acked && !result)
				return 0;
			if ((int64_t)time(NULL) > deadline)
				die(x, "no answer from the server within %d ms", x->timeout_ms);
			continue;
		}
		if (ev.kind == GRIDEX_EV_REJECT && ev.nonce == nonce) {
			x->refused = ev.reason;
			if (x->quiet_limited &&
			    strcmp(gridex_reject_name(ev.reason), "RATE_LIMITED") == 0) {
				gridex_event_free(&ev);
				return 1;
			}
			if (x->json)
				print_json(json_pack("{s:s, s:s, s:s}", "event", "REJECTED",
						     "reason", gridex_reject_name(ev.reason),
						     "detail", ev.detail));
			else
				fprintf(stderr, "gridex: refused: %s%s%s\n",
					gridex_reject_name(ev.reason), ev.detail[0] ? ": " : "",
					ev.detail);
			gridex_event_free(&ev);
			return 1;
		}
		if (ev.kind == GRIDEX_EV_ACK && ev.nonce == nonce) {
			acked = true;
			if (!result && !x->json && wait_ms == 0)
				printf("accepted (sequence %" PRIu64 ")\n", ev.sequence);
			if (!result && wait_ms == 0)
				return 0;
		} else if (ev.kind == GRIDEX_EV_RESULT && ev.nonce == nonce && result) {
			*result = ev;
			return 0;
		} else if (ev.kind == GRIDEX_EV_REPORT) {
			print_report(x, &ev.report);
		}
		gridex_event_free(&ev);
	}
}

/* ---------- commands ---------- */

static void need_args(struct cli *x, int n, const char *what)
{
	if (x->nargs != n) {
		fprintf(stderr, "gridex %s: expected %s\n\n%s", x->cmd, what, usage_text);
		exit(2);
	}
}

static int64_t price_arg(const char *s, const char *what)
{
	int64_t v;
	if (gridex_parse_price(s, &v) != GRIDEX_OK) {
		fprintf(stderr,
			"gridex: %s '%s' must be a positive number with at most 6 decimals\n", what,
			s);
		exit(2);
	}
	return v;
}

static int cmd_keygen(struct cli *x)
{
	char path[640];
	if (x->nargs == 1) {
		snprintf(path, sizeof(path), "%s", x->args[0]);
	} else if (x->nargs == 0) {
		char cfg[600];
		config_path(x, cfg, sizeof(cfg));
		char *slash = strrchr(cfg, '/');
		*slash = '\0';
		char *parent = strrchr(cfg, '/');
		if (parent) {
			*parent = '\0';
			mkdir(cfg, 0700);
			*parent = '/';
		}
		mkdir(cfg, 0700);
		snprintf(path, sizeof(path), "%s/key.pem", cfg);
	} else {
		usage("keygen takes at most a file name");
	}
	uint8_t pub[32];
	char hex[65];
	if (gridex_keygen(path, pub) != GRIDEX_OK)
		die(x, "cannot write %s (it must not exist yet): %s", path, strerror(errno));
	sodium_bin2hex(hex, sizeof(hex), pub, 32);
	if (x->json)
		print_json(json_pack("{s:s, s:s}", "key_file", path, "public_key", hex));
	else
		printf("wrote %s\npublic key %s\n(give the public key to the exchange operator)\n",
		       path, hex);
	return 0;
}

static int cmd_pubkey(struct cli *x)
{
	uint8_t pub[32];
	char hex[65];
	if (x->key[0] == '\0')
		usage("pubkey needs --key (or GRIDEX_KEY, or key in the config file)");
	if (gridex_key_public(x->key, pub) != GRIDEX_OK)
		die(x, "%s is not a PEM Ed25519 private key", x->key);
	sodium_bin2hex(hex, sizeof(hex), pub, 32);
	if (x->json)
		print_json(json_pack("{s:s}", "public_key", hex));
	else
		printf("%s\n", hex);
	return 0;
}

static int cmd_order(struct cli *x, enum gridex_side side)
{
	need_args(x, 3, "PRODUCT QTY PRICE");
	struct gridex_order o = {.product = x->args[0], .side = side};
	o.quantity = (int64_t)opt_u64(x->args[1], "QTY", 1, INT64_MAX);
	o.price = price_arg(x->args[2], "PRICE");
	static const char *const tifs[] = {"", "gtc", "gtd", "ioc", "fok", "post"};
	for (int i = 1; x->opt_tif && i <= 5; i++)
		if (strcmp(x->opt_tif, tifs[i]) == 0)
			o.tif = (enum gridex_tif)i;
	if (x->opt_tif && o.tif == 0)
		usage("--tif is gtc, gtd, ioc, fok or post");
	if (o.tif == GRIDEX_GTD)
		o.expire_ms = (int64_t)opt_u64(x->opt_expire, "expire (Unix ms)", 1, INT64_MAX);
	else if (x->opt_expire)
		usage("--expire goes with --tif=gtd");
	if (x->opt_hours)
		o.hours = (uint32_t)opt_u64(x->opt_hours, "hours", 1, 48);
	static const char *const stps[] = {"", "newest", "oldest", "both", "allow"};
	for (int i = 1; x->opt_stp && i <= 4; i++)
		if (strcmp(x->opt_stp, stps[i]) == 0)
			o.self_trade = i;
	if (x->opt_stp && o.self_trade == 0)
		usage("--stp is newest, oldest, both or allow");
	if (x->opt_id) {
		o.client_order_id = opt_u64(x->opt_id, "id", 1, UINT64_MAX - 48);
	} else { /* unique enough for a person typing: the clock in microseconds */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		o.client_order_id = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	}
	int wait = x->opt_wait ? (int)opt_u64(x->opt_wait, "wait", 0, 600000) : 300;
	connect_server(x, true);
	uint64_t nonce;
	if (gridex_new_order(x->c, &o, &nonce))
		die(x, "%s", gridex_client_error(x->c));
	return answer(x, nonce, wait > 0 ? wait : 1, NULL);
}

static int cmd_cancel(struct cli *x)
{
	uint64_t nonce;
	connect_server(x, true);
	int rc;
	if (x->opt_all) {
		if (x->nargs > 1)
			usage("cancel --all takes at most a product or class");
		rc = gridex_cancel_all(x->c, x->nargs ? x->args[0] : NULL, &nonce);
	} else {
		need_args(x, 1, "a client order id (or --all)");
		rc = gridex_cancel(x->c, opt_u64(x->args[0], "ID", 1, UINT64_MAX), &nonce);
	}
	if (rc)
		die(x, "%s", gridex_client_error(x->c));
	return answer(x, nonce, 300, NULL);
}

static int cmd_modify(struct cli *x)
{
	need_args(x, 3, "ID PRICE QTY");
	uint64_t id = opt_u64(x->args[0], "ID", 1, UINT64_MAX);
	int64_t price = price_arg(x->args[1], "PRICE");
	int64_t qty = (int64_t)opt_u64(x->args[2], "QTY", 1, INT64_MAX);
	connect_server(x, true);
	uint64_t nonce;
	if (gridex_modify(x->c, id, price, qty, &nonce))
		die(x, "%s", gridex_client_error(x->c));
	return answer(x, nonce, 300, NULL);
}

/* Leases as text, or (json set) as objects appended to json. */
static void print_leases(json_t *json, const struct gridex_lease *l, size_t n)
{
	if (json) {
		json_t *a = json;
		for (size_t i = 0; i < n; i++) {
			json_t *devs = json_array(), *fills = json_array();
			for (size_t d = 0; devs && d < l[i].n_devices; d++)
				json_array_append_new(devs, json_string(l[i].devices[d]));
			for (size_t f = 0; fills && f < l[i].n_fills; f++)
				json_array_append_new(fills,
						      json_integer((json_int_t)l[i].fill_ids[f]));
			json_array_append_new(
				a,
				json_pack("{s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:o, s:I, s:I, s:I, "
					  "s:s, s:I, s:I, s:o}",
					  "lease_id", (json_int_t)l[i].lease_id, "state",
					  gridex_lease_state_name(l[i].state), "buyer",
					  (json_int_t)l[i].buyer, "seller", (json_int_t)l[i].seller,
					  "host", l[i].host, "accelerator", l[i].accelerator,
					  "vendor", l[i].vendor, "devices", devs, "quantity",
					  (json_int_t)l[i].quantity, "start_ms",
					  (json_int_t)l[i].start_ms, "end_ms",
					  (json_int_t)l[i].end_ms, "reason", l[i].reason,
					  "running_ms", (json_int_t)l[i].running_ms, "ended_ms",
					  (json_int_t)l[i].ended_ms, "fill_ids", fills));
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		printf("lease %" PRIu64 "  %s%s%s  buyer %u seller %u  %s %" PRId64 " GPU(s)",
		       l[i].lease_id, gridex_lease_state_name(l[i].state),
		       l[i].reason[0] ? " " : "", l[i].reason, l[i].buyer, l[i].seller,
		       l[i].accelerator, l[i].quantity);
		if (l[i].host[0])
			printf(" on %s", l[i].host);
		for (size_t d = 0; d < l[i].n_devices; d++)
			printf("%s%s", d ? "," : " ", l[i].devices[d]);
		printf("  window %" PRId64 "-%" PRId64 "\n", l[i].start_ms, l[i].end_ms);
	}
}

/* Hosts as text, or (json set) as objects appended to json. */
static void print_hosts(json_t *json, const struct gridex_host *h, size_t n)
{
	if (json) {
		json_t *a = json;
		for (size_t i = 0; i < n; i++) {
			json_t *devs = json_array();
			for (size_t d = 0; devs && d < h[i].n_devices; d++)
				json_array_append_new(devs, json_string(h[i].devices[d]));
			json_array_append_new(
				a, json_pack("{s:s, s:I, s:s, s:s, s:o, s:b, s:I}", "name",
					     h[i].name, "seller", (json_int_t)h[i].seller,
					     "accelerator", h[i].accelerator, "vendor", h[i].vendor,
					     "devices", devs, "withdrawn", (int)h[i].withdrawn,
					     "live_leases", (json_int_t)h[i].live_leases));
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		printf("host %s  %s %s  seller %u  %s  %u live lease(s)", h[i].name,
		       h[i].accelerator, h[i].vendor, h[i].seller,
		       h[i].withdrawn ? "WITHDRAWN" : "IN SERVICE", h[i].live_leases);
		for (size_t d = 0; d < h[i].n_devices; d++)
			printf("%s%s", d ? "," : " ", h[i].devices[d]);
		printf("\n");
	}
}

static int cmd_host(struct cli *x)
{
	if (x->nargs < 4)
		usage("host NAME CLASS VENDOR UUID... (1-16 devices)");
	connect_server(x, true);
	uint64_t nonce;
	if (gridex_register_host(x->c, x->args[0], x->args[1], x->args[2], &x->args[3],
				 (size_t)x->nargs - 3, &nonce))
		die(x, "%s", gridex_client_error(x->c));
	return answer(x, nonce, 0, NULL);
}

static int cmd_withdraw_host(struct cli *x)
{
	need_args(x, 1, "NAME");
	connect_server(x, true);
	uint64_t nonce;
	if (gridex_withdraw_host(x->c, x->args[0], &nonce))
		die(x, "%s", gridex_client_error(x->c));
	return answer(x, nonce, 0, NULL);
}

static int cmd_workload(struct cli *x)
{
	need_args(x, 1, "JSON or @FILE");
	const char *arg = x->args[0];
	char buf[1024];
	if (arg[0] == '@') {
		FILE *f = fopen(arg + 1, "r");
		if (f == NULL)
			die(x, "cannot open %s: %s", arg + 1, strerror(errno));
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		bool more = fgetc(f) != EOF;
		fclose(f);
		if (more)
			die(x, "%s: a workload is at most 768 bytes", arg + 1);
		buf[n] = '\0';
		arg = buf;
	}
	connect_server(x, true);
	uint64_t nonce;
	if (gridex_set_workload(x->c, arg, &nonce))
		die(x, "%s", gridex_client_error(x->c));
	return answer(x, nonce, 0, NULL);
}

/* One page of a query's answer into *r. For a page after the first, while the server
 * says RATE_LIMITED (the pages before used up the account's queries), asks again every
 * 100 ms until the timeout. Non-zero: refused (printed), x->refused says why. */
static int query_page(struct cli *x, enum gridex_query q, const char *scope, uint64_t cursor,
		      struct gridex_event *r)
{
	int64_t waited_ms = 0;
	for (;;) {
		uint64_t nonce;
		if (gridex_query_page(x->c, q, scope, cursor, &nonce))
			die(x, "%s", gridex_client_error(x->c));
		x->quiet_limited = cursor != 0 && waited_ms < x->timeout_ms;
		int rc = answer(x, nonce, 0, r);
		x->quiet_limited = false;
		if (rc == 0 || cursor == 0 ||
		    strcmp(gridex_reject_name(x->refused), "RATE_LIMITED") != 0 ||
		    waited_ms >= x->timeout_ms)
			return rc;
		struct timespec pause = {.tv_nsec = 100 * 1000000L};
		nanosleep(&pause, NULL);
		waited_ms += 100;
	}
}

static int cmd_query(struct cli *x, enum gridex_query q)
{
	if (x->nargs >
	    (q == GRIDEX_Q_BALANCE || q == GRIDEX_Q_LEASES || q == GRIDEX_Q_HOSTS ? 0 : 1))
		usage("too many arguments");
	connect_server(x, true);
	const char *scope = x->nargs ? x->args[0] : NULL;
	if (q == GRIDEX_Q_BALANCE) {
		uint64_t nonce;
		struct gridex_event r;
		if (gridex_query(x->c, q, NULL, &nonce))
			die(x, "%s", gridex_client_error(x->c));
		if (answer(x, nonce, 0, &r))
			return 1;
		char avail[32], held[32];
		gridex_format_price(r.available, avail, sizeof(avail));
		gridex_format_price(r.reserved, held, sizeof(held));
		if (x->json)
			print_json(json_pack("{s:I, s:s, s:s}", "account", (json_int_t)r.account,
					     "available", avail, "held_for_bids", held));
		else
			printf("account %u\navailable      %s\nheld for bids  %s\n", r.account,
			       avail, held);
		gridex_event_free(&r);
		return 0;
	}
	/* Every page, each asked with the cursor the one before gave; JSON as one list. */
	json_t *all = x->json ? json_array() : NULL;
	size_t shown = 0;
	uint64_t cursor = 0;
	bool more = true, cut = false;
	while (more) {
		struct gridex_event r;
		if (query_page(x, q, scope, cursor, &r)) {
			if (cursor == 0 && (q == GRIDEX_Q_LEASES || q == GRIDEX_Q_HOSTS) &&
			    strcmp(gridex_reject_name(x->refused), "LEASES_OFF") == 0)
				fprintf(stderr,
					"gridex: the server refused the %s query (LEASES_OFF: no "
					"provisioning hook)%s\n",
					q == GRIDEX_Q_LEASES ? "lease" : "host",
					q == GRIDEX_Q_LEASES ? "; fills are in `gridex fills`"
							     : "");
			else if (cursor != 0)
				fprintf(stderr, "gridex: stopped after %zu rows\n", shown);
			json_decref(all);
			return 1;
		}
		if (q == GRIDEX_Q_LEASES) {
			print_leases(all, r.leases, r.n_leases);
			shown += r.n_leases;
		} else if (q == GRIDEX_Q_HOSTS) {
			print_hosts(all, r.hosts, r.n_hosts);
			shown += r.n_hosts;
		} else {
			for (size_t i = 0; i < r.n_rows; i++) {
				if (all)
					json_array_append_new(all, report_json(&r.rows[i]));
				else
					print_report(x, &r.rows[i]);
			}
			shown += r.n_rows;
		}
		more = r.truncated && r.next != 0;
		cut = r.truncated && r.next == 0;
		bool again = more && r.next == cursor;
		cursor = r.next;
		gridex_event_free(&r);
		if (again) {
			json_decref(all);
			die(x, "the server sent the same page cursor twice (%" PRIu64 ")", cursor);
		}
	}
	if (all)
		print_json(all);
	else if (shown == 0)
		printf("(none)\n");
	/* On stderr, so that the JSON on stdout stays the list it always is. */
	if (cut)
		fprintf(stderr,
			"gridex: the server sent the first %zu rows only (a row did not fit in "
			"its query_bytes_max)\n",
			shown);
	return 0;
}

static void print_levels(const char *title, const struct gridex_level *l, size_t n)
{
	printf("%s\n", title);
	if (n == 0)
		printf("  (empty)\n");
	for (size_t i = 0; i < n; i++) {
		char p[32];
		gridex_format_price(l[i].price, p, sizeof(p));
		printf("  %12s  %8" PRId64 " GPUs  %4u orders\n", p, l[i].quantity, l[i].orders);
	}
}

static json_t *levels_json(const struct gridex_level *l, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		char p[32];
		gridex_format_price(l[i].price, p, sizeof(p));
		json_array_append_new(a, json_pack("{s:s, s:I, s:i}", "price", p, "quantity",
						   (json_int_t)l[i].quantity, "orders",
						   (int)l[i].orders));
	}
	return a;
}

static int cmd_book(struct cli *x)
{
	need_args(x, 1, "PRODUCT");
	size_t depth = x->opt_depth ? opt_u64(x->opt_depth, "depth", 1, 10000) : 10;
	connect_server(x, false);
	if (gridex_subscribe(x->c, x->args[0], false))
		die(x, "%s", gridex_client_error(x->c));
	for (;;) {
		struct gridex_event ev;
		int rc;
		next(x, x->timeout_ms, &ev, &rc);
		if (rc == GRIDEX_AGAIN)
			die(x, "no snapshot within %d ms", x->timeout_ms);
		if (ev.kind == GRIDEX_EV_REJECT)
			die(x, "refused: %s: %s", gridex_reject_name(ev.reason), ev.detail);
		if (ev.kind != GRIDEX_EV_SNAPSHOT) {
			gridex_event_free(&ev);
			continue;
		}
		size_t nb = ev.n_bids < depth ? ev.n_bids : depth;
		size_t na = ev.n_asks < depth ? ev.n_asks : depth;
		if (x->json) {
			print_json(json_pack("{s:s, s:I, s:o, s:o}", "product", ev.product,
					     "sequence", (json_int_t)ev.sequence, "bids",
					     levels_json(ev.bids, nb), "asks",
					     levels_json(ev.asks, na)));
		} else {
			printf("%s (sequence %" PRIu64 ")\n", ev.product, ev.sequence);
			print_levels("asks (best first)", ev.asks, na);
			print_levels("bids (best first)", ev.bids, nb);
		}
		gridex_event_free(&ev);
		return 0;
	}
}

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void print_trade(struct cli *x, const struct gridex_event *ev)
{
	char p[32];
	gridex_format_price(ev->price, p, sizeof(p));
	if (x->json) {
		print_json(json_pack("{s:s, s:s, s:I, s:s, s:I, s:I}", "event", "TRADE", "product",
				     ev->product, "sequence", (json_int_t)ev->sequence, "price", p,
				     "quantity", (json_int_t)ev->quantity, "time_ms",
				     (json_int_t)ev->time_ms));
		return;
	}
	time_t t = (time_t)(ev->time_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	printf("%02d:%02d:%02d.%03d  %-24s %8" PRId64 " GPUs @ %-10s %s took\n", tm.tm_hour,
	       tm.tm_min, tm.tm_sec, (int)(ev->time_ms % 1000), ev->product, ev->quantity, p,
	       ev->side == GRIDEX_BUY ? "buyer" : "seller");
}

/* trades and watch: stream until --count, --seconds or Ctrl-C. */
static int cmd_stream(struct cli *x, bool watch)
{
	need_args(x, 1, watch ? "PRODUCT" : "PRODUCT or CLASS");
	uint64_t count = x->opt_count ? opt_u64(x->opt_count, "count", 1, UINT64_MAX) : 0;
	int64_t until = x->opt_seconds
				? (int64_t)time(NULL) + (int64_t)opt_u64(x->opt_seconds, "seconds",
									 1, 86400 * 365)
				: 0;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	connect_server(x, false);
	gridex_book *book = NULL;
	if (watch && gridex_book_new(x->args[0], &book))
		die(x, "out of memory");
	if (gridex_subscribe(x->c, x->args[0], true))
		die(x, "%s", gridex_client_error(x->c));
	uint64_t seen = 0;
	char last_trade[160] = "";
	while (!stop && (count == 0 || seen < count) && (until == 0 || time(NULL) < until)) {
		struct gridex_event ev;
		int rc = gridex_next_event(x->c, 200, &ev);
		if (rc == GRIDEX_AGAIN)
			continue;
		if (rc == GRIDEX_ERR_CLOSED) { /* reconnect: the handle subscribes again */
			fprintf(stderr, "gridex: connection lost; reconnecting\n");
			while (!stop && gridex_connect(x->c) != GRIDEX_OK) {
				struct timespec ts = {.tv_sec = 1};
				nanosleep(&ts, NULL);
			}
			continue;
		}
		if (rc)
			die(x, "%s", gridex_client_error(x->c));
		if (ev.kind == GRIDEX_EV_TRADE) {
			seen++;
			if (!watch)
				print_trade(x, &ev);
			else {
				char p[32];
				gridex_format_price(ev.price, p, sizeof(p));
				snprintf(last_trade, sizeof(last_trade),
					 "last trade %" PRId64 " GPUs @ %s", ev.quantity, p);
			}
		}
		if (watch && gridex_book_apply(book, &ev) == GRIDEX_ERR_GAP) {
			/* Missed an update: take a fresh snapshot. */
			if (gridex_subscribe(x->c, x->args[0], true))
				die(x, "%s", gridex_client_error(x->c));
		}
		if (watch && gridex_book_ready(book) && !x->json &&
		    (ev.kind == GRIDEX_EV_SNAPSHOT || ev.kind == GRIDEX_EV_UPDATE ||
		     ev.kind == GRIDEX_EV_TRADE)) {
			struct gridex_level bids[15], asks[15];
			size_t nb = gridex_book_levels(book, GRIDEX_BUY, bids, 15);
			size_t na = gridex_book_levels(book, GRIDEX_SELL, asks, 15);
			printf("\033[H\033[2J%s  sequence %" PRIu64 "  %s\n\n", x->args[0],
			       gridex_book_sequence(book), last_trade);
			print_levels("asks", asks, na);
			print_levels("bids", bids, nb);
			fflush(stdout);
		} else if (watch && x->json && ev.kind == GRIDEX_EV_UPDATE) {
			char p[32];
			gridex_format_price(ev.price, p, sizeof(p));
			print_json(json_pack("{s:s, s:I, s:s, s:s, s:I, s:i}", "event", "UPDATE",
					     "sequence", (json_int_t)ev.sequence, "side",
					     ev.side == GRIDEX_BUY ? "bid" : "ask", "price", p,
					     "quantity", (json_int_t)ev.quantity, "orders",
					     (int)ev.orders));
		} else if (watch && x->json && ev.kind == GRIDEX_EV_TRADE) {
			print_trade(x, &ev);
		}
		fflush(stdout);
		gridex_event_free(&ev);
	}
	gridex_book_free(book);
	return 0;
}

static int cmd_operator(struct cli *x)
{
	struct gridex_operator_request r = {0};
	uint8_t key[32];
	const char *cmd = x->cmd;
	if (strcmp(cmd, "register") == 0) {
		need_args(x, 3, "ID NAME PUBKEY");
		r.op = GRIDEX_OP_REGISTER;
		r.name = x->args[1];
		size_t len = 0;
		const char *k = x->args[2];
		if (strlen(k) == 64 && sodium_hex2bin(key, 32, k, 64, NULL, &len, NULL) == 0 &&
		    len == 32) {
			r.public_key = key;
		} else if (gridex_key_public(k, key) == GRIDEX_OK) {
			r.public_key = key;
		} else {
			usage("PUBKEY must be 64 hex digits or a PEM Ed25519 key file");
		}
	} else if (strcmp(cmd, "deposit") == 0 || strcmp(cmd, "withdraw") == 0) {
		need_args(x, 2, "ID AMOUNT");
		r.op = cmd[0] == 'd' ? GRIDEX_OP_DEPOSIT : GRIDEX_OP_WITHDRAW;
		r.amount = price_arg(x->args[1], "AMOUNT");
	} else if (strcmp(cmd, "capacity") == 0) {
		need_args(x, 3, "ID CLASS GPUS");
		r.op = GRIDEX_OP_CAPACITY;
		r.product = x->args[1];
		r.quantity = (int64_t)opt_u64(x->args[2], "GPUS", 0, INT64_MAX);
	} else {
		need_args(x, 1, "PRODUCT");
		r.op = cmd[0] == 'h' ? GRIDEX_OP_HALT : GRIDEX_OP_RESUME;
		r.product = x->args[0];
	}
	if (r.op != GRIDEX_OP_HALT && r.op != GRIDEX_OP_RESUME)
		r.account = (uint32_t)opt_u64(x->args[0], "ID", 1, UINT32_MAX);
	connect_server(x, true);
	uint64_t nonce;
	if (gridex_operator(x->c, &r, &nonce))
		die(x, "%s", gridex_client_error(x->c));
	int rc = answer(x, nonce, 0, NULL);
	if (rc == 0 && x->json)
		print_json(json_pack("{s:s, s:s}", "event", "ACCEPTED", "command", cmd));
	return rc;
}

int main(int argc, char **argv)
{
	struct cli x = {0};
	parse_command_line(&x, argc, argv);
	if (x.cmd == NULL)
		usage("no command");
	const char *cmd = x.cmd;
	int rc;
	if (strcmp(cmd, "keygen") == 0)
		rc = cmd_keygen(&x);
	else if (strcmp(cmd, "pubkey") == 0)
		rc = cmd_pubkey(&x);
	else if (strcmp(cmd, "bid") == 0)
		rc = cmd_order(&x, GRIDEX_BUY);
	else if (strcmp(cmd, "offer") == 0)
		rc = cmd_order(&x, GRIDEX_SELL);
	else if (strcmp(cmd, "cancel") == 0)
		rc = cmd_cancel(&x);
	else if (strcmp(cmd, "modify") == 0)
		rc = cmd_modify(&x);
	else if (strcmp(cmd, "account") == 0)
		rc = cmd_query(&x, GRIDEX_Q_BALANCE);
	else if (strcmp(cmd, "orders") == 0)
		rc = cmd_query(&x, GRIDEX_Q_ORDERS);
	else if (strcmp(cmd, "fills") == 0)
		rc = cmd_query(&x, GRIDEX_Q_FILLS);
	else if (strcmp(cmd, "leases") == 0)
		rc = cmd_query(&x, GRIDEX_Q_LEASES);
	else if (strcmp(cmd, "host") == 0)
		rc = cmd_host(&x);
	else if (strcmp(cmd, "hosts") == 0)
		rc = cmd_query(&x, GRIDEX_Q_HOSTS);
	else if (strcmp(cmd, "withdraw-host") == 0)
		rc = cmd_withdraw_host(&x);
	else if (strcmp(cmd, "workload") == 0)
		rc = cmd_workload(&x);
	else if (strcmp(cmd, "book") == 0)
		rc = cmd_book(&x);
	else if (strcmp(cmd, "trades") == 0)
		rc = cmd_stream(&x, false);
	else if (strcmp(cmd, "watch") == 0)
		rc = cmd_stream(&x, true);
	else if (strcmp(cmd, "register") == 0 || strcmp(cmd, "deposit") == 0 ||
		 strcmp(cmd, "withdraw") == 0 || strcmp(cmd, "capacity") == 0 ||
		 strcmp(cmd, "halt") == 0 || strcmp(cmd, "resume") == 0)
		rc = cmd_operator(&x);
	else
		usage("unknown command");
	gridex_client_free(x.c);
	return rc;
}
