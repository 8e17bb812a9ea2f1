/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridexd: the exchange server (docs/operations.md, docs/protocol.md).
 * Reads its settings, loads participants, keys and balances from the ledger,
 * starts the pipeline threads and runs the I/O loop until SIGTERM drains it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <sodium.h>

#include "gridex.pb-c.h"
#include "srv_journal.h"
#include "srv_log.h"
#include "srv_server.h"
#include "srv_snapshot.h"

static void usage(FILE *out)
{
	fputs("usage: gridexd [--config=FILE] [--KEY=VALUE ...]\n"
	      "       gridexd --help | --print-config [...]\n"
	      "       gridexd --journal-verify=DIR | --journal-replay=DIR [settings...]\n\n"
	      "Settings (file lines `key = value`; command-line options override the file):\n",
	      out);
	srv_config_print(out, NULL);
}

/* Defaults, then --config=FILE, then every --key=value: later wins. */
static const char *journal_verify, *journal_replay;

static int parse_args(int argc, char **argv, struct srv_config *cfg, bool *print)
{
	char err[1024];
	srv_config_default(cfg);
	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], "--config=", 9) == 0 &&
		    !srv_config_load(cfg, argv[i] + 9, err, sizeof(err))) {
			fprintf(stderr, "gridexd: %s\n", err);
			return 2;
		}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strncmp(a, "--journal-verify=", 17) == 0) {
			journal_verify = a + 17;
			continue;
		}
		if (strncmp(a, "--journal-replay=", 17) == 0) {
			journal_replay = a + 17;
			continue;
		}
		if (strcmp(a, "--print-config") == 0) {
			*print = true;
			continue;
		}
		if (strncmp(a, "--config=", 9) == 0)
			continue;
		const char *eq = strchr(a, '=');
		if (strncmp(a, "--", 2) != 0 || eq == NULL || eq - a - 2 >= 64) {
			fprintf(stderr,
				"gridexd: unexpected argument '%s' (options are --key=value)\n", a);
			return 2;
		}
		char key[64];
		memcpy(key, a + 2, (size_t)(eq - a - 2));
		key[eq - a - 2] = '\0';
		if (!srv_config_set(cfg, key, eq + 1, err, sizeof(err))) {
			fprintf(stderr, "gridexd: %s\n", err);
			return 2;
		}
	}
	return 0;
}

/* The core, with the operator's key (srv_recover.c calls it with the genesis time). */
int srv_core_make(struct srv *s, int64_t start_ms)
{
	const struct srv_config *c = &s->cfg;
	struct srv_core_config cc;
	srv_core_config_default(&cc);
	cc.matching.orders_max = (uint32_t)c->orders_max;
	cc.matching.levels_max = (uint32_t)c->levels_max;
	cc.matching.books_max = (uint32_t)c->books_max;
	cc.matching.price_max = c->price_max;
	cc.matching.qty_max = c->qty_max;
	cc.matching.start_ms = start_ms; /* the journal's genesis: replays see the same clock */
	cc.risk.accounts_max = (uint32_t)c->accounts_max;
	cc.risk.orders_max = (uint32_t)c->orders_max;
	cc.risk.positions_max = (uint32_t)c->orders_max;
	cc.risk.capacities_max = (uint32_t)c->accounts_max;
	cc.risk.open_orders_per_account_max = (uint32_t)c->open_orders_per_account_max;
	cc.risk.maker_bps = (uint32_t)c->maker_bps;
	cc.risk.taker_bps = (uint32_t)c->taker_bps;
	cc.accounts_max = (uint32_t)c->accounts_max;
	cc.client_ids_max = (uint32_t)c->orders_max;
	cc.gate_lead_ms = c->gate_lead_ms;
	cc.book_retain_ms = c->book_retain_ms;
	cc.product_horizon_ms = c->product_horizon_ms;
	cc.classes = c->classes;
	cc.expiry_ahead_ms_max = c->expiry_ahead_ms_max;
	cc.operator_account = (uint32_t)c->operator_account;
	cc.orders_per_second = (uint32_t)c->orders_per_second;
	cc.orders_burst = (uint32_t)c->orders_burst;
	cc.queries_per_second = (uint32_t)c->queries_per_second;
	cc.queries_burst = (uint32_t)c->queries_burst;
	cc.query_rows_per_second = (uint32_t)c->query_rows_per_second;
	cc.query_rows_burst = (uint32_t)c->query_rows_burst;
	cc.lease_requests_per_second = (uint32_t)c->lease_requests_per_second;
	cc.lease_requests_burst = (uint32_t)c->lease_requests_burst;
	cc.fills_recent_max = (uint32_t)c->fills_recent_max;
	cc.query_rows_max = (uint32_t)c->query_rows_max;
	cc.leases = c->hook[0] != '\0';
	cc.lease.hosts_max = (uint32_t)c->hosts_max;
	cc.lease.hosts_per_seller_max = (uint32_t)c->hosts_per_seller_max;
	cc.lease.leases_max = (uint32_t)c->leases_max;
	cc.lease.leases_kept = (uint32_t)c->leases_kept;
	cc.lease.start_lead_ms = c->lease_start_lead_ms;
	cc.lease.start_deadline_ms = c->lease_start_deadline_ms;
	cc.lease.period_ms = c->delivery_period_ms;
	cc.lease.shift_ms = c->delivery_shift_ms;
	if (srv_core_create(&cc, &s->core) != SRV_CORE_OK) {
		srv_log(SRV_LOG_ERROR, "engine settings refused or out of memory",
			"orders_max=%lld levels_max=%lld books_max=%lld", (long long)c->orders_max,
			(long long)c->levels_max, (long long)c->books_max);
		return -1;
	}
	/* The books the listed classes can hold at once: their hours from book_retain_ms
	 * ago (plus the hour being delivered) to the horizon. */
	int nclasses = srv_core_classes_count(c->classes);
	int64_t hours = (c->book_retain_ms + c->product_horizon_ms) / 3600000 + 2;
	if (nclasses > 0 && c->product_horizon_ms > 0 && c->book_retain_ms > 0 &&
	    (int64_t)nclasses * hours > c->books_max)
		srv_log(SRV_LOG_WARN, "books_max is below what the listed classes can hold",
			"classes=%d hours=%lld books_max=%lld", nclasses, (long long)hours,
			(long long)c->books_max);
	if (c->operator_account != 0) {
		uint8_t key[SRV_PUBLIC_KEY_BYTES];
		size_t len = 0;
		if (sodium_hex2bin(key, sizeof(key), c->operator_key, strlen(c->operator_key), NULL,
				   &len, NULL) != 0 ||
		    len != sizeof(key) || strlen(c->operator_key) != 64 ||
		    srv_core_register(s->core, (uint32_t)c->operator_account, key) != SRV_CORE_OK) {
			srv_log(SRV_LOG_ERROR, "operator_key is not a valid Ed25519 public key",
				NULL);
			return -1;
		}
	}
	return 0;
}

/* libevent's own warnings and errors, as lines of gridexd's log (they went to stderr
 * in a format of their own). The text is libevent's: quotes and control characters
 * in it are replaced so that the line stays one logfmt line. */
static void libevent_log(int severity, const char *text)
{
	char detail[256];
	srv_log_value(detail, sizeof(detail), text);
	enum srv_log_level level = severity == EVENT_LOG_ERR	? SRV_LOG_ERROR
				   : severity == EVENT_LOG_WARN ? SRV_LOG_WARN
				   : severity == EVENT_LOG_MSG	? SRV_LOG_INFO
								: SRV_LOG_DEBUG;
	srv_log(level, "libevent", "detail=\"%s\"", detail);
}

static void raise_fd_limit(int64_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= (rlim_t)want)
		return;
	rl.rlim_cur = (rlim_t)want < rl.rlim_max ? (rlim_t)want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < (rlim_t)want)
		srv_log(SRV_LOG_WARN,
			"file descriptor limit below max_connections + 2 * http_connections_max",
			"limit=%llu wanted=%lld", (unsigned long long)rl.rlim_cur, (long long)want);
}

static void addr_text(evutil_socket_t fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[128] = "?";
	int port = 0;
	if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			evutil_inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
			port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			evutil_inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
			port = ntohs(a->sin6_port);
		}
	}
	snprintf(out, len, "%s:%d", host, port);
}

static int write_ready(const struct srv *s, const char *listen, const char *metrics,
		       const char *http)
{
	if (s->cfg.ready_file[0] == '\0')
		return 0;
	char tmp[SRV_CONFIG_TEXT_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", s->cfg.ready_file);
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "listen=%s\nmetrics=%s\nhttp=%s\n", listen, metrics, http);
	if (fclose(f) != 0 || rename(tmp, s->cfg.ready_file) != 0)
		return -1;
	return 0;
}

/* ---------- offline journal tools ---------- */

static struct srv_core_out tool_out;

static int print_record(const struct srv_jrec *r, void *ctx)
{
	struct srv *s = ctx;
	struct srv_core_out out = tool_out;
	const char *error = NULL;
	if (r->kind == SRV_J_GENESIS) {
		printf("G,%llu,%lld,participants=%u\n", (unsigned long long)r->seq,
		       (long long)r->time_ms, r->n_participants);
		if (srv_genesis_load(s, r, &error) != 0 ||
		    srv_core_out_alloc(s->core, &tool_out) != 0)
			return -1;
		for (uint32_t i = 0; i < r->n_participants; i++)
			printf("P,%u,%s,%lld\n", r->participants[i].id, r->participants[i].name,
			       (long long)r->participants[i].balance);
		return 0;
	}
	if (s->core == NULL)
		return -1;
	static struct srv_request req;
	if (srv_replay_apply(s->core, r, &req, &out, &error) != 0)
		return -1;
	if (r->kind == SRV_J_TICK) {
		if (out.n_reports)
			printf("> %llu,%lld,tick\n", (unsigned long long)r->seq,
			       (long long)r->time_ms);
	} else if (r->kind == SRV_J_LEASE) {
		printf("> %llu,%lld,lease,id=%llu,event=%u,code=%s\n", (unsigned long long)r->seq,
		       (long long)r->time_ms, (unsigned long long)r->lease_id, r->lease_event,
		       r->lease_code);
	} else {
		const ProtobufCEnumValue *t = protobuf_c_enum_descriptor_get_value(
			&gridex__v1__request_type__descriptor, (int)req.type);
		printf("> %llu,%lld,%s,account=%u,nonce=%llu\n", (unsigned long long)r->seq,
		       (long long)r->time_ms, t ? t->name : "?", req.account,
		       (unsigned long long)req.nonce);
	}
	for (size_t i = 0; i < out.n_reports; i++) {
		const struct srv_report *x = &out.reports[i];
		const char *product = srv_core_book_name(s->core, x->book);
		if (x->kind == SRV_REPORT_ACK)
			printf("A,%u\n", x->account);
		else if (x->kind == SRV_REPORT_REJECT)
			printf("R,%u,%s\n", x->account,
			       protobuf_c_enum_descriptor_get_value(
				       &gridex__v1__reject_reason__descriptor, x->reason)
				       ->name);
		else if (x->kind == SRV_REPORT_EXEC)
			printf("E,%u,%llu,%s,%s,%lld,%lld,%lld,%lld,%llu\n", x->account,
			       (unsigned long long)x->client_order_id,
			       protobuf_c_enum_descriptor_get_value(
				       &gridex__v1__exec_type__descriptor, x->exec_type)
				       ->name,
			       product ? product : "", (long long)x->last_price,
			       (long long)x->last_quantity, (long long)x->cumulative_quantity,
			       (long long)x->leaves_quantity, (unsigned long long)x->fill_id);
	}
	return 0;
}

static int journal_tool(struct srv *s)
{
	/* Offline nothing is verified: the operator's account needs registering for its
	 * nonces, not its real key. */
	if (s->cfg.operator_account != 0 && s->cfg.operator_key[0] == '\0') {
		uint8_t pk[32], sk[64], seed[32] = {0};
		crypto_sign_seed_keypair(pk, sk, seed);
		sodium_bin2hex(s->cfg.operator_key, sizeof(s->cfg.operator_key), pk, sizeof(pk));
	}
	const char *dir = journal_verify ? journal_verify : journal_replay;
	FILE *out = journal_replay ? stderr : stdout;
	struct srv_segment *segs = NULL;
	size_t n = 0, archived = 0;
	if (srv_segments_list(dir, &segs, &n) != 0 || n == 0) {
		fprintf(stderr, "gridexd: %s: %s\n", dir, n == 0 ? "no journal" : strerror(errno));
		free(segs);
		return 1;
	}
	struct srv_journal_stats st, all = {0};
	int rc = SRV_JOURNAL_OK;
	for (size_t i = 0; i < n && rc == SRV_JOURNAL_OK; i++) {
		archived += segs[i].archived;
		rc = srv_journal_scan(segs[i].path, journal_replay ? print_record : NULL, s, &st);
		if (rc == SRV_JOURNAL_OK && st.records > 0 && all.records > 0 &&
		    st.first_seq != all.last_seq + 1) {
			fprintf(stderr,
				"gridexd: %s: sequence %llu follows %llu: a segment is missing\n",
				segs[i].path, (unsigned long long)st.first_seq,
				(unsigned long long)all.last_seq);
			rc = SRV_JOURNAL_BAD;
			break;
		}
		if (rc == SRV_JOURNAL_OK && st.torn_bytes > 0 && i + 1 < n) {
			fprintf(stderr,
				"gridexd: %s: torn or corrupt (%s), and not the last segment\n",
				segs[i].path, st.torn_reason);
			rc = SRV_JOURNAL_BAD;
			break;
		}
		if (rc != SRV_JOURNAL_OK) {
			fprintf(stderr, "gridexd: %s: %s%s%s\n", segs[i].path,
				rc == SRV_JOURNAL_BAD	    ? "not a valid journal"
				: rc < 0 && s->core == NULL ? "replay needs the first segment "
							      "(GENESIS): restore it from "
							      "archive/ or a copy"
				: rc < 0		    ? "a record could not be replayed"
							    : strerror(errno),
				st.torn_reason[0] ? ": " : "", st.torn_reason);
			break;
		}
		if (journal_verify)
			printf("segment %s: records %llu, sequence %llu .. %llu\n", segs[i].path,
			       (unsigned long long)st.records, (unsigned long long)st.first_seq,
			       (unsigned long long)st.last_seq);
		if (st.records > 0 && all.records == 0) {
			all.first_seq = st.first_seq;
			all.first_ms = st.first_ms;
		}
		if (st.records > 0) {
			all.last_seq = st.last_seq;
			all.last_ms = st.last_ms;
		}
		all.records += st.records;
		all.genesis += st.genesis;
		all.requests += st.requests;
		all.ticks += st.ticks;
		all.valid_bytes += st.valid_bytes;
		all.torn_bytes = st.torn_bytes;
		memcpy(all.torn_reason, st.torn_reason, sizeof(all.torn_reason));
	}
	srv_core_out_free(&tool_out);
	free(segs);
	if (rc != SRV_JOURNAL_OK)
		return 1;
	uint64_t *snaps = NULL;
	size_t n_snaps = 0;
	if (srv_journal_list(dir, "snapshot-", &snaps, &n_snaps) != SRV_JOURNAL_OK)
		n_snaps = 0;
	fprintf(out,
		"segments %zu (archived %zu)\n"
		"records %llu (genesis %llu, requests %llu, ticks %llu)\n"
		"sequence %llu .. %llu\ntime %lld .. %lld (Unix ms)\n",
		n, archived, (unsigned long long)all.records, (unsigned long long)all.genesis,
		(unsigned long long)all.requests, (unsigned long long)all.ticks,
		(unsigned long long)all.first_seq, (unsigned long long)all.last_seq,
		(long long)all.first_ms, (long long)all.last_ms);
	if (n_snaps > 0)
		fprintf(out, "snapshots %zu, newest at sequence %llu\n", n_snaps,
			(unsigned long long)snaps[n_snaps - 1]);
	else
		fputs("snapshots 0\n", out);
	free(snaps);
	fprintf(out, "bytes %llu valid", (unsigned long long)all.valid_bytes);
	if (all.torn_bytes)
		fprintf(out, ", %llu torn (%s): a restart cuts them off\n",
			(unsigned long long)all.torn_bytes, all.torn_reason);
	else
		fputs(", no torn tail\n", out);
	return 0;
}

int main(int argc, char **argv)
{
	static struct srv s; /* large: metrics and queues */
	bool print = false;
	int rc = parse_args(argc, argv, &s.cfg, &print);
	if (rc)
		return rc;
	char err[512];
	if (print) {
		srv_config_print(stdout, &s.cfg);
		return 0;
	}
	if (journal_verify || journal_replay) {
		if (sodium_init() < 0)
			return 1;
		rc = journal_tool(&s);
		srv_core_destroy(s.core);
		return rc;
	}
	if (!srv_config_check(&s.cfg, err, sizeof(err)) ||
	    !srv_verifier_cpus(&s, err, sizeof(err))) {
		fprintf(stderr, "gridexd: %s\n", err);
		return 2;
	}
	if (!srv_log_open(s.cfg.log_file, s.cfg.log_level)) {
		fprintf(stderr, "gridexd: log_file %s: %s\n", s.cfg.log_file, strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	event_set_log_callback(libevent_log);
	/* the order port's connections, the HTTP ports' (API and /metrics), and the rest:
	 * journal, snapshots, the ledger's connections, listeners, the log */
	raise_fd_limit(s.cfg.max_connections + 2 * s.cfg.http_connections_max + 64);
	static struct srv_snap_w snap_buf;
	s.snap_buf = &snap_buf;
	if (sodium_init() < 0 || evthread_use_pthreads() != 0 ||
	    pthread_rwlock_init(&s.keys_lock, NULL) != 0 ||
	    pthread_mutex_init(&s.snap_lock, NULL) != 0 ||
	    pthread_cond_init(&s.snap_cond, NULL) != 0) {
		srv_log(SRV_LOG_ERROR, "initialisation failed", NULL);
		return 1;
	}
	rc = 1;
	if (srv_lanes_init(&s) != 0 ||
	    srv_queue_init(&s.core_q, sizeof(struct srv_job), (size_t)s.cfg.core_queue_max) ||
	    srv_queue_init(&s.out_q, sizeof(struct srv_out), (size_t)s.cfg.out_queue_max) ||
	    srv_queue_init(&s.writer_q, sizeof(struct srv_wjob), (size_t)s.cfg.writer_queue_max)) {
		srv_log(SRV_LOG_ERROR, "queues: out of memory", NULL);
		goto out;
	}
	if (srv_recover(&s) != 0)
		goto out;
	if (srv_io_init(&s) != 0)
		goto out;
	char listen[160], metrics[SRV_CONFIG_TEXT_MAX] = "off", http[SRV_CONFIG_TEXT_MAX] = "off";
	addr_text(evconnlistener_get_fd(s.listener), listen, sizeof(listen));
	if (s.http)
		addr_text(s.metrics_fd, metrics, sizeof(metrics));
	if (s.api)
		addr_text(s.api_fd, http, sizeof(http));
	if (srv_pipeline_start(&s) != 0) {
		srv_log(SRV_LOG_ERROR, "cannot start threads", NULL);
		abort(); /* threads may be running: no orderly way back */
	}
	char cpus[512]; /* 64 verifiers of up to 4 digits and a comma each */
	srv_cpus_text(&s.verifier_cpus, (int)s.cfg.verifier_threads, cpus, sizeof(cpus));
	srv_log(SRV_LOG_INFO, "listening",
		"listen=%s metrics=%s http=%s sequence=%lld verifiers=%lld verifier_cpus=%s "
		"operator=%lld",
		listen, metrics, http, (long long)s.seq_base, (long long)s.cfg.verifier_threads,
		cpus, (long long)s.cfg.operator_account);
	if (write_ready(&s, listen, metrics, http) != 0)
		srv_log(SRV_LOG_WARN, "cannot write ready_file", "path=\"%s\"", s.cfg.ready_file);
	event_base_dispatch(s.base);
	srv_pipeline_join(&s);
	rc = 0;
out:
	srv_io_free(&s);
	srv_lanes_destroy(&s);
	srv_queue_destroy(&s.core_q);
	srv_queue_destroy(&s.out_q);
	srv_queue_destroy(&s.writer_q);
	srv_core_destroy(s.core);
	srv_journal_close(s.journal);
	ledger_close(s.lock);
	srv_snap_w_free(&snap_buf);
	free(s.resent);
	pthread_rwlock_destroy(&s.keys_lock);
	srv_log_close();
	return rc;
}
