/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "srv_core.h"
#include "srv_cpus.h"
#include "srv_journal.h"

struct key {
	const char *name;
	size_t offset;
	bool text;
	int64_t def, min, max; /* integers */
	const char *text_def;  /* text */
	const char *help;
};

#define INT(f, d, lo, hi, h)                                                                       \
	{                                                                                          \
#f, offsetof(struct srv_config, f), false, d, lo, hi, NULL, h                      \
	}
#define TEXT(f, d, h)                                                                              \
	{                                                                                          \
#f, offsetof(struct srv_config, f), true, 0, 0, 0, d, h                            \
	}

static const struct key keys[] = {
	TEXT(listen, "0.0.0.0:7400", "address:port of the TLS 1.3 order and market-data port"),
	TEXT(metrics_listen, "127.0.0.1:7401",
	     "address:port of the Prometheus /metrics endpoint (plain HTTP unless "
	     "metrics_tls); empty: off"),
	TEXT(metrics_token, "",
	     "bearer token /metrics requires (16+ token characters); empty: none, keep "
	     "metrics_listen private"),
	INT(metrics_tls, 0, 0, 1,
	    "1: /metrics over TLS 1.3 with tls_cert and tls_key; 0: plain HTTP"),
	TEXT(tls_cert, "", "PEM certificate chain of the server (required)"),
	TEXT(tls_key, "", "PEM private key of the server (required)"),
	INT(max_connections, 10000, 1, 1000000, "open client connections; more are refused"),
	INT(max_unauth_per_ip, 64, 1, 1000000,
	    "connections per IP address (IPv6: per /64) that have not yet had a signed request "
	    "accepted"),
	INT(frame_bytes_max, 4096, 64, 1048576,
	    "largest client frame body; a larger length prefix closes the connection"),
	INT(body_bytes_max, 1024, 32, 1024, "largest signed request body"),
	INT(out_buffer_soft_bytes, 1048576, 4096, INT64_C(1) << 32,
	    "stop reading from a client whose unread replies exceed this"),
	INT(out_buffer_hard_bytes, 8388608, 4096, INT64_C(1) << 34,
	    "drop a client whose unread replies exceed this"),
	INT(sndbuf_bytes, 262144, 0, INT64_C(1) << 30,
	    "kernel send buffer per client socket (SO_SNDBUF); 0: the system's autotuning"),
	INT(handshake_timeout_ms, 5000, 10, 600000, "time to complete the TLS handshake"),
	INT(idle_timeout_ms, 300000, 0, 86400000,
	    "close a connection without subscriptions that sends nothing this long; 0: never"),
	INT(partial_frame_ms, 5000, 10, 600000, "time to complete a frame once it has started"),
	INT(write_timeout_ms, 60000, 0, 86400000,
	    "close a connection whose queued replies the socket takes none of for this long "
	    "(a client that stopped reading); 0: never"),
	INT(accept_retry_ms, 100, 1, 60000,
	    "after accept() fails (file descriptors or memory used up), how long a port waits "
	    "before accepting again"),
	INT(unauth_inflight_max, 16, 1, 1024,
	    "requests a connection may have in flight until one is accepted; it is not read "
	    "beyond them"),
	INT(verify_failures_per_ip_per_second, 10, 0, 1000000,
	    "requests of not yet accepted connections that may fail verification (bad signature, "
	    "unknown account) per IP address (IPv6: per /64) and second; beyond it, and the "
	    "burst, they are "
	    "refused OVERLOADED unverified; 0: no limit"),
	INT(verify_failures_per_ip_burst, 100, 1, 1000000, "burst of that rate"),
	INT(verify_failure_ips_max, 65536, 1, 16777216,
	    "IP addresses whose failed verifications are counted at once; more go uncounted"),
	INT(verify_known_pairs_max, 65536, 0, 16777216,
	    "(address, account) pairs remembered as known: an account that had a request accepted "
	    "from an address is still verified from there, with an allowance of its own, while "
	    "the address's is used up; more are not remembered; 0: none"),
	INT(verify_known_pair_ms, 86400000, 1000, INT64_C(2592000000),
	    "how long a pair stays known after its account last had a request accepted, or a "
	    "session closed, at that address; while a session of it is open there it stays "
	    "known"),
	INT(subscriptions_per_conn_max, 64, 1, 4096, "market-data subscriptions per connection"),
	INT(topics_max, 65536, 1, 1048576, "distinct products and classes subscribed to"),
	INT(snapshot_levels_max, 100, 1, 10000, "price levels per side in a book snapshot"),
	INT(verifier_threads, 2, 1, 64, "signature verification threads"),
	TEXT(verifier_cpus, "off",
	     "CPUs the verifier threads are pinned to, one each in turn: auto (the last "
	     "verifier_threads of the CPUs gridexd may run on, or none when there are fewer), off, "
	     "or a list such as 2,3 or 4-7"),
	INT(verify_queue_max, 65536, 16, 16777216,
	    "requests waiting for verification, split evenly over the verifiers; beyond it "
	    "requests get OVERLOADED"),
	INT(core_queue_max, 65536, 16, 16777216,
	    "verified requests waiting for the journal (split over the verifiers), and for the "
	    "core"),
	INT(out_queue_max, 262144, 16, 16777216, "replies and market data waiting for the I/O"),
	INT(writer_queue_max, 1048576, 16, 16777216, "fills and operator actions for the ledger"),
	INT(tick_ms, 100, 1, 60000, "how often the clock expires GTD orders and closes gates"),
	INT(drain_timeout_ms, 5000, 0, 600000, "on SIGTERM, time given to flush replies"),
	INT(operator_account, 0, 0, UINT32_MAX,
	    "the account that may send operator requests; 0: none"),
	TEXT(operator_key, "", "the operator's Ed25519 public key, 64 hex digits"),
	INT(accounts_max, 65536, 1, 16777216, "registered accounts"),
	INT(orders_per_second, 1000, 0, 1000000,
	    "order-changing requests per account and second; 0: unlimited"),
	INT(orders_burst, 2000, 1, 1000000, "burst of that rate"),
	INT(queries_per_second, 20, 0, 1000000,
	    "queries per participant account and second (the operator's are not limited); 0: "
	    "unlimited"),
	INT(queries_burst, 40, 1, 1000000, "burst of that rate"),
	INT(query_rows_per_second, 100000, 0, 100000000,
	    "rows of query answers per second, all participants together, a query counting "
	    "as 32 rows more; 0: unlimited"),
	INT(query_rows_burst, 100000, 32, 100000000, "burst of that rate"),
	INT(open_orders_per_account_max, 10000, 1, 16777216, "resting orders per account"),
	INT(maker_bps, 0, 0, 10000, "fee of the resting side, basis points of the notional"),
	INT(taker_bps, 0, 0, 10000, "fee of the incoming side"),
	INT(expiry_ahead_ms_max, 60000, 1000, 86400000,
	    "how far in the future a signed request may expire"),
	INT(orders_max, 1048576, 1, 268435456, "resting orders, all books"),
	INT(levels_max, 1048576, 1, 268435456, "price levels, all books"),
	INT(books_max, 1024, 1, 65536, "products (books) live at once; ~32 KiB each"),
	INT(price_max, 1000000000000, 1, INT64_C(1) << 62, "highest price, micro-units"),
	INT(qty_max, 1000000, 1, INT64_C(1) << 40, "largest quantity, GPUs"),
	INT(gate_lead_ms, 300000, 0, 86400000, "trading closes this long before delivery"),
	INT(book_retain_ms, 86400000, 0, INT64_C(315360000000),
	    "a product's book is retired this long after its delivery hour ends; 0: never"),
	INT(product_horizon_ms, 2678400000, 0, INT64_C(315360000000),
	    "orders make no book for a delivery hour starting further ahead than this; 0: no "
	    "limit"),
	TEXT(classes, "",
	     "comma-separated accelerator classes participants may trade and register hosts "
	     "in; empty: any"),
	INT(fills_recent_max, 65536, 1, 16777216, "fills kept for fill queries"),
	INT(query_rows_max, 1000, 1, 100000, "rows in one query answer"),
	INT(query_bytes_max, 4194304, 65536, 16777216,
	    "bytes of one query answer (and at most out_buffer_hard_bytes); its rows are cut to "
	    "fit, and it says so"),
	TEXT(journal_dir, "",
	     "directory of the journal, the durable record of every input (required)"),
	INT(journal_segment_bytes, 268435456, 4096, INT64_C(1) << 40,
	    "a new journal segment starts when the current one passes this size"),
	INT(snapshot_every_records, 1000000, 0, INT64_C(1) << 40,
	    "snapshot the core after this many journal records; 0: not by count"),
	INT(snapshot_every_ms, 600000, 0, INT64_C(1) << 40,
	    "snapshot the core this often if anything happened; 0: not by time"),
	INT(snapshots_kept, 2, 1, 1000,
	    "newest snapshots kept; journal segments before the newest move to archive/"),
	TEXT(database_url, "",
	     "libpq URL of the ledger as gridex_app (default $GRIDEX_DATABASE_URL)"),
	TEXT(currency, "USD", "ledger currency"),
	INT(batch_fills_max, 5000, 1, 500000,
	    "fills per settlement batch; one input's fills are never split, so a batch can hold "
	    "more"),
	INT(batch_ms_max, 50, 1, 60000, "age of the oldest fill that forces a batch"),
	TEXT(hook, "",
	     "the provisioning hook (docs/provisioning.md); empty: leases off (no hosts, "
	     "workloads or leases; fills stay in escrow)"),
	INT(hook_timeout_ms, 30000, 100, 3600000, "one hook call, from spawn to exit"),
	INT(hook_kill_grace_ms, 2000, 10, 600000, "between SIGTERM and SIGKILL of a hook past it"),
	INT(hook_retry_ms_min, 1000, 10, 3600000,
	    "first retry of a failed hook call; doubles up to hook_retry_ms_max"),
	INT(hook_retry_ms_max, 60000, 10, 3600000, "longest pause between retries"),
	INT(hook_status_every_ms, 60000, 100, 86400000,
	    "how often a running lease's status is asked (one that ended early is refunded)"),
	INT(hook_calls_max, 16, 1, 256,
	    "hook calls at once, for different hosts (one host's run one at a time)"),
	INT(hosts_max, 4096, 1, 1000000, "registered hosts, all sellers"),
	INT(hosts_per_seller_max, 1024, 0, 1000000,
	    "registered hosts of one seller, withdrawn ones included; 0: no limit but hosts_max"),
	INT(lease_requests_per_second, 10, 0, 1000000,
	    "REGISTER_HOST, WITHDRAW_HOST and SET_WORKLOAD per participant account and second (the "
	    "operator's are not limited); 0: unlimited"),
	INT(lease_requests_burst, 1024, 1, 1000000, "burst of that rate"),
	INT(leases_max, 100000, 1, 10000000,
	    "live leases; GPUs of a fill beyond it are refunded at once (lease_table_full)"),
	INT(leases_kept, 65536, 1, 10000000, "ended leases kept for lease queries"),
	INT(lease_start_lead_ms, 0, 0, 3600000, "call start this long before a window begins"),
	INT(lease_start_deadline_ms, 300000, 0, 86400000,
	    "a lease not running this long after its window began fails and is refunded"),
	INT(lease_grace_ms, 30000, 0, 3600000,
	    "grace_ms of the hook's requests: SIGTERM to SIGKILL of a workload"),
	INT(delivery_period_ms, 3600000, 1000, 86400000,
	    "the delivery window of one product hour; shorter only for tests and demonstrations"),
	INT(delivery_shift_ms, 0, -31622400000, 31622400000,
	    "added to every delivery window's start; non-zero only for tests and demonstrations"),
	TEXT(http_listen, "",
	     "address:port of the read-only HTTP API (docs/http-api.md; plain HTTP); empty: off"),
	INT(http_trades_kept, 100000, 1, 67108864,
	    "trades the HTTP API keeps for trades and candles (since the server started)"),
	INT(http_tls, 0, 0, 1,
	    "1: the HTTP API and console over TLS 1.3 with tls_cert and tls_key; 0: plain HTTP"),
	TEXT(http_console_dir, "",
	     "directory of the web console's files, served on http_listen at /; empty: none"),
	TEXT(http_operator_token, "",
	     "bearer token of the HTTP API's operator endpoints (16+ characters); empty: off"),
	TEXT(http_auditor_database_url, "",
	     "libpq URL of the ledger as gridex_auditor, for the operator's trial balance"),
	INT(http_ledger_refresh_ms, 5000, 500, 3600000,
	    "how often the trial balance is read from the ledger"),
	TEXT(http_history_database_url, "",
	     "libpq URL of the ledger (gridex_auditor, or a replica) for the HTTP API's price "
	     "history (/api/v1/history); empty: off"),
	INT(http_history_timeout_ms, 3000, 100, 600000,
	    "longest a price history query may run on the ledger; beyond, 503"),
	INT(http_history_queue_max, 32, 1, 4096,
	    "different price history queries waiting for the ledger or running; beyond, 503"),
	INT(http_history_per_ip_max, 4, 1, 4096,
	    "price history requests of one address waiting for their answer; beyond, 429"),
	INT(http_headers_bytes_max, 8192, 1024, 1048576,
	    "largest request line and headers of a request to the HTTP API or /metrics; larger "
	    "ones are refused"),
	INT(http_timeout_ms, 10000, 100, 600000,
	    "time an HTTP API or /metrics connection has to send its request (and to take the "
	    "answer); an idle one is closed after it"),
	INT(http_connections_max, 512, 1, 65536,
	    "most connections open at once on the HTTP API's port, and on /metrics' (each); "
	    "at it, the port stops accepting until one closes"),
	INT(http_connections_per_ip_max, 64, 1, 65536,
	    "most connections open at once from one address on the HTTP API's port, and on "
	    "/metrics' (each); more are closed unserved"),
	INT(http_evict_after_ms, 1000, 0, 3600000,
	    "with an HTTP port full and a connection waiting, its oldest connection is closed "
	    "once open this long, to make room; 0: never"),
	INT(http_requests_per_ip_per_second, 20, 0, 1000000,
	    "requests one address may make of the HTTP API a second (answers take CPU time "
	    "the orders share); beyond it and the burst, 429; 0: no limit"),
	INT(http_requests_per_ip_burst, 100, 1, 1000000,
	    "burst of http_requests_per_ip_per_second"),
	INT(http_market_queue_max, 65536, 16, 16777216,
	    "market data waiting for the HTTP API's thread"),
	INT(http_thread_nice, 10, 0, 19,
	    "the HTTP API's thread runs this much nicer than the rest (orders first)"),
	TEXT(log_file, "", "log file (reopened on SIGHUP); empty: stderr"),
	TEXT(log_level, "info", "debug, info, warn or error"),
	TEXT(ready_file, "",
	     "written once listening: the bound addresses (listen=, metrics=, http=); for scripts"),
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key *find(const char *name)
{
	char norm[64];
	size_t n = strlen(name);
	if (n >= sizeof(norm))
		return NULL;
	for (size_t i = 0; i <= n; i++)
		norm[i] = name[i] == '-' ? '_' : name[i];
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, norm) == 0)
			return &keys[i];
	return NULL;
}

void srv_config_default(struct srv_config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++) {
		char *field = (char *)c + keys[i].offset;
		if (keys[i].text)
			snprintf(field, SRV_CONFIG_TEXT_MAX, "%s", keys[i].text_def);
		else
			memcpy(field, &keys[i].def, sizeof(int64_t));
	}
	const char *url = getenv("GRIDEX_DATABASE_URL");
	if (url)
		snprintf(c->database_url, sizeof(c->database_url), "%s", url);
}

bool srv_config_set(struct srv_config *c, const char *key, const char *value, char *err,
		    size_t err_len)
{
	const struct key *k = find(key);
	if (k == NULL) {
		snprintf(err, err_len, "unknown setting '%s' (gridexd --help lists them)", key);
		return false;
	}
	char *field = (char *)c + k->offset;
	if (k->text) {
		if (strlen(value) >= SRV_CONFIG_TEXT_MAX) {
			snprintf(err, err_len, "%s: longer than %d bytes", k->name,
				 SRV_CONFIG_TEXT_MAX - 1);
			return false;
		}
		snprintf(field, SRV_CONFIG_TEXT_MAX, "%s", value);
		return true;
	}
	char *end;
	errno = 0;
	long long v = strtoll(value, &end, 10);
	if (errno || end == value || *end != '\0' || v < k->min || v > k->max) {
		snprintf(err, err_len, "%s: '%s' is not an integer in %lld .. %lld", k->name, value,
			 (long long)k->min, (long long)k->max);
		return false;
	}
	int64_t v64 = v;
	memcpy(field, &v64, sizeof(v64));
	return true;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 &&
	       (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

bool srv_config_load(struct srv_config *c, const char *path, char *err, size_t err_len)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return false;
	}
	char line[1024], why[512];
	int lineno = 0;
	bool ok = true;
	while (ok && fgets(line, sizeof(line), f)) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, err_len, "%s:%d: line too long", path, lineno);
			ok = false;
			break;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *s = trim(line);
		if (*s == '\0')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, err_len, "%s:%d: expected key = value", path, lineno);
			ok = false;
			break;
		}
		*eq = '\0';
		if (!srv_config_set(c, trim(s), trim(eq + 1), why, sizeof(why))) {
			snprintf(err, err_len, "%s:%d: %s", path, lineno, why);
			ok = false;
		}
	}
	fclose(f);
	return ok;
}

/* A bearer token setting: empty, or 16 or more token characters. */
static bool token_ok(const char *t)
{
	size_t n = strlen(t);
	return n == 0 ||
	       (n >= 16 && strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				     "0123456789-._~+/=") == n);
}

char *srv_conninfo_with_timeout(const char *url, int seconds, char *err, size_t err_len)
{
	char *why = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &why);
	if (opts == NULL) {
		snprintf(err, err_len, "%s", why ? why : "out of memory");
		err[strcspn(err, "\n")] = '\0';
		PQfreemem(why);
		return NULL;
	}
	/* Each value quoted, its quotes and backslashes escaped (libpq's key=value rules). */
	size_t cap = 64;
	bool has_timeout = false;
	for (const PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val) {
			cap += strlen(o->keyword) + 2 * strlen(o->val) + 4;
			has_timeout |= strcmp(o->keyword, "connect_timeout") == 0;
		}
	char *out = malloc(cap), *w = out;
	for (const PQconninfoOption *o = opts; out && o->keyword; o++) {
		if (o->val == NULL)
			continue;
		w += snprintf(w, cap - (size_t)(w - out), "%s%s='", w == out ? "" : " ",
			      o->keyword);
		for (const char *v = o->val; *v; v++) {
			if (*v == '\'' || *v == '\\')
				*w++ = '\\';
			*w++ = *v;
		}
		*w++ = '\'';
		*w = '\0';
	}
	if (out && !has_timeout)
		snprintf(w, cap - (size_t)(w - out), "%sconnect_timeout='%d'", w == out ? "" : " ",
			 seconds);
	PQconninfoFree(opts);
	if (out == NULL)
		snprintf(err, err_len, "out of memory");
	return out;
}

bool srv_config_check(const struct srv_config *c, char *err, size_t err_len)
{
	const char *why = NULL;
	if (c->tls_cert[0] == '\0' || c->tls_key[0] == '\0')
		why = "tls_cert and tls_key are required";
	else if (c->journal_dir[0] == '\0')
		why = "journal_dir is required";
	else if (c->database_url[0] == '\0')
		why = "database_url is required (or set GRIDEX_DATABASE_URL)";
	else if (c->out_buffer_hard_bytes < c->out_buffer_soft_bytes)
		why = "out_buffer_hard_bytes must be at least out_buffer_soft_bytes";
	else if (c->frame_bytes_max < c->body_bytes_max + 128)
		why = "frame_bytes_max must leave room for a body of body_bytes_max and its "
		      "envelope";
	else if ((c->operator_account == 0) != (c->operator_key[0] == '\0'))
		why = "operator_account and operator_key go together";
	else if (strcmp(c->log_level, "debug") && strcmp(c->log_level, "info") &&
		 strcmp(c->log_level, "warn") && strcmp(c->log_level, "error"))
		why = "log_level must be debug, info, warn or error";
	else if (!token_ok(c->http_operator_token))
		why = "http_operator_token must be 16 or more token characters "
		      "([A-Za-z0-9-._~+/=])";
	else if (!token_ok(c->metrics_token))
		why = "metrics_token must be 16 or more token characters ([A-Za-z0-9-._~+/=])";
	else if (c->hook_retry_ms_max < c->hook_retry_ms_min)
		why = "hook_retry_ms_max must be at least hook_retry_ms_min";
	else if (c->hook[0] != '\0' && (c->hook[0] != '/' || access(c->hook, X_OK) != 0))
		why = "hook must be the absolute path of an executable";
	else if (srv_core_classes_count(c->classes) < 0)
		why = "classes must be accelerator class names (1-31 of [A-Za-z0-9._-]) separated "
		      "by commas, each once, 256 at most";
	if (why) {
		snprintf(err, err_len, "%s", why);
		return false;
	}
	if (c->http_history_database_url[0] != '\0') {
		char pq[160];
		char *ok =
			srv_conninfo_with_timeout(c->http_history_database_url, 5, pq, sizeof(pq));
		free(ok);
		if (ok == NULL) {
			snprintf(err, err_len,
				 "http_history_database_url is not a libpq URL or key=value "
				 "string: %s",
				 pq);
			return false;
		}
	}
	/* The form only: whether gridexd may run on those CPUs is known at start. */
	struct srv_cpus plan;
	return srv_cpus_plan(c->verifier_cpus, (int)c->verifier_threads, NULL, 0, &plan, err,
			     err_len);
}

void srv_config_print(FILE *out, const struct srv_config *c)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const char *field = c ? (const char *)c + k->offset : NULL;
		if (k->text) {
			fprintf(out, "  %-28s %s\n", k->name, k->help);
			if (c)
				fprintf(out, "  %-28s = \"%s\"\n", "", field);
			else
				fprintf(out, "  %-28s default \"%s\"\n", "", k->text_def);
		} else {
			int64_t v;
			memcpy(&v, field ? field : (const char *)&k->def, sizeof(v));
			fprintf(out, "  %-28s %s\n  %-28s %s %lld (%lld .. %lld)\n", k->name,
				k->help, "", c ? "=" : "default", (long long)v, (long long)k->min,
				(long long)k->max);
		}
	}
}

/* Appends to text (cap bytes, *n of them written so far) while it has room. */
__attribute__((format(printf, 4, 5))) static void text_append(char *text, size_t cap, int *n,
							      const char *fmt, ...)
{
	if (*n <= 0 || (size_t)*n >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(text + *n, cap - (size_t)*n, fmt, ap);
	va_end(ap);
	*n = k < 0 ? -1 : *n + k;
}

/* The settings that decide what the core does with an input: a journal replays
 * right only under the ones it was written with. */
void srv_settings_fingerprint(const struct srv_config *c, uint8_t out[SRV_JOURNAL_SETTINGS_BYTES])
{
	char text[2048]; /* every text setting in it is below 512 bytes */
	int n = snprintf(
		text, sizeof(text),
		"orders_max=%lld levels_max=%lld books_max=%lld price_max=%lld qty_max=%lld "
		"accounts_max=%lld open_orders_per_account_max=%lld maker_bps=%lld "
		"taker_bps=%lld gate_lead_ms=%lld expiry_ahead_ms_max=%lld "
		"operator_account=%lld orders_per_second=%lld orders_burst=%lld currency=%s",
		(long long)c->orders_max, (long long)c->levels_max, (long long)c->books_max,
		(long long)c->price_max, (long long)c->qty_max, (long long)c->accounts_max,
		(long long)c->open_orders_per_account_max, (long long)c->maker_bps,
		(long long)c->taker_bps, (long long)c->gate_lead_ms,
		(long long)c->expiry_ahead_ms_max, (long long)c->operator_account,
		(long long)c->orders_per_second, (long long)c->orders_burst, c->currency);
	/* Each only when set: journals written before they existed keep their fingerprint. */
	if (c->book_retain_ms != 0)
		text_append(text, sizeof(text), &n, " book_retain_ms=%lld",
			    (long long)c->book_retain_ms);
	if (c->product_horizon_ms != 0)
		text_append(text, sizeof(text), &n, " product_horizon_ms=%lld",
			    (long long)c->product_horizon_ms);
	if (c->classes[0] != '\0')
		text_append(text, sizeof(text), &n, " classes=%s", c->classes);
	/* Only with leases on: journals written with them off keep their fingerprint. */
	if (c->hook[0] != '\0')
		text_append(text, sizeof(text), &n,
			    " leases=1 hosts_max=%lld leases_max=%lld leases_kept=%lld "
			    "lease_start_lead_ms=%lld lease_start_deadline_ms=%lld "
			    "delivery_period_ms=%lld delivery_shift_ms=%lld",
			    (long long)c->hosts_max, (long long)c->leases_max,
			    (long long)c->leases_kept, (long long)c->lease_start_lead_ms,
			    (long long)c->lease_start_deadline_ms, (long long)c->delivery_period_ms,
			    (long long)c->delivery_shift_ms);
	/* Only when set: journals written before it existed keep their fingerprint. */
	if (c->hook[0] != '\0' && c->hosts_per_seller_max != 0)
		text_append(text, sizeof(text), &n, " hosts_per_seller_max=%lld",
			    (long long)c->hosts_per_seller_max);
	if (c->hook[0] != '\0' && c->lease_requests_per_second != 0)
		text_append(text, sizeof(text), &n,
			    " lease_requests_per_second=%lld lease_requests_burst=%lld",
			    (long long)c->lease_requests_per_second,
			    (long long)c->lease_requests_burst);
	crypto_generichash(out, SRV_JOURNAL_SETTINGS_BYTES, (const uint8_t *)text, strlen(text),
			   NULL, 0);
}
