/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridexd's settings: one table of every key with its default, bounds and
 * meaning (printed by `gridexd --help`, documented in docs/operations.md).
 * Sources, later ones winning: the defaults, the file named by --config,
 * then --key=value options on the command line.
 */
#ifndef GRIDEX_SRV_CONFIG_H
#define GRIDEX_SRV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_CONFIG_TEXT_MAX 512

struct srv_config {
	/* network */
	char listen[SRV_CONFIG_TEXT_MAX];
	char metrics_listen[SRV_CONFIG_TEXT_MAX];
	char metrics_token[SRV_CONFIG_TEXT_MAX];
	int64_t metrics_tls;
	char tls_cert[SRV_CONFIG_TEXT_MAX];
	char tls_key[SRV_CONFIG_TEXT_MAX];
	int64_t max_connections;
	int64_t max_unauth_per_ip;
	int64_t frame_bytes_max;
	int64_t body_bytes_max;
	int64_t out_buffer_soft_bytes;
	int64_t out_buffer_hard_bytes;
	int64_t sndbuf_bytes;
	int64_t handshake_timeout_ms;
	int64_t idle_timeout_ms;
	int64_t partial_frame_ms;
	int64_t write_timeout_ms;
	int64_t accept_retry_ms;
	int64_t unauth_inflight_max;
	int64_t verify_failures_per_ip_per_second;
	int64_t verify_failures_per_ip_burst;
	int64_t verify_failure_ips_max;
	int64_t verify_known_pairs_max;
	int64_t verify_known_pair_ms;
	int64_t subscriptions_per_conn_max;
	int64_t topics_max;
	int64_t snapshot_levels_max;
	/* pipeline */
	int64_t verifier_threads;
	char verifier_cpus[SRV_CONFIG_TEXT_MAX];
	int64_t verify_queue_max;
	int64_t core_queue_max;
	int64_t out_queue_max;
	int64_t writer_queue_max;
	int64_t tick_ms;
	int64_t drain_timeout_ms;
	/* accounts and risk */
	int64_t operator_account;
	char operator_key[SRV_CONFIG_TEXT_MAX];
	int64_t accounts_max;
	int64_t orders_per_second;
	int64_t orders_burst;
	int64_t open_orders_per_account_max;
	int64_t maker_bps;
	int64_t taker_bps;
	int64_t expiry_ahead_ms_max;
	/* engine */
	int64_t orders_max;
	int64_t levels_max;
	int64_t books_max;
	int64_t price_max;
	int64_t qty_max;
	int64_t gate_lead_ms;
	int64_t book_retain_ms;
	int64_t product_horizon_ms;
	char classes[SRV_CONFIG_TEXT_MAX];
	int64_t fills_recent_max;
	int64_t query_rows_max;
	int64_t queries_per_second;
	int64_t queries_burst;
	int64_t query_rows_per_second;
	int64_t query_rows_burst;
	int64_t query_bytes_max;
	/* journal and ledger */
	char journal_dir[SRV_CONFIG_TEXT_MAX];
	int64_t journal_segment_bytes;
	int64_t snapshot_every_records;
	int64_t snapshot_every_ms;
	int64_t snapshots_kept;
	char database_url[SRV_CONFIG_TEXT_MAX];
	char currency[SRV_CONFIG_TEXT_MAX];
	int64_t batch_fills_max;
	int64_t batch_ms_max;
	/* leases and the provisioning hook */
	char hook[SRV_CONFIG_TEXT_MAX];
	int64_t hook_timeout_ms;
	int64_t hook_kill_grace_ms;
	int64_t hook_retry_ms_min;
	int64_t hook_retry_ms_max;
	int64_t hook_status_every_ms;
	int64_t hook_calls_max;
	int64_t hosts_max;
	int64_t hosts_per_seller_max;
	int64_t lease_requests_per_second;
	int64_t lease_requests_burst;
	int64_t leases_max;
	int64_t leases_kept;
	int64_t lease_start_lead_ms;
	int64_t lease_start_deadline_ms;
	int64_t lease_grace_ms;
	int64_t delivery_period_ms;
	int64_t delivery_shift_ms;
	/* HTTP API */
	char http_listen[SRV_CONFIG_TEXT_MAX];
	int64_t http_trades_kept;
	char http_console_dir[SRV_CONFIG_TEXT_MAX];
	int64_t http_tls;
	char http_operator_token[SRV_CONFIG_TEXT_MAX];
	char http_auditor_database_url[SRV_CONFIG_TEXT_MAX];
	int64_t http_ledger_refresh_ms;
	char http_history_database_url[SRV_CONFIG_TEXT_MAX];
	int64_t http_history_timeout_ms;
	int64_t http_history_queue_max;
	int64_t http_history_per_ip_max;
	int64_t http_headers_bytes_max;
	int64_t http_timeout_ms;
	int64_t http_connections_max;
	int64_t http_connections_per_ip_max;
	int64_t http_evict_after_ms;
	int64_t http_requests_per_ip_per_second;
	int64_t http_requests_per_ip_burst;
	int64_t http_market_queue_max;
	int64_t http_thread_nice;
	/* logs */
	char log_file[SRV_CONFIG_TEXT_MAX];
	char log_level[SRV_CONFIG_TEXT_MAX];
	char ready_file[SRV_CONFIG_TEXT_MAX];
};

void srv_config_default(struct srv_config *c);

/* Sets key (dashes and underscores alike) to a value. Returns false and writes
 * a reason to err when the key is unknown or the value invalid. */
bool srv_config_set(struct srv_config *c, const char *key, const char *value, char *err,
		    size_t err_len);

/* Reads `key = value` lines ('#' starts a comment). false with a reason in err. */
bool srv_config_load(struct srv_config *c, const char *path, char *err, size_t err_len);

/* Checks the relations between settings; false with a reason in err. */
bool srv_config_check(const struct srv_config *c, char *err, size_t err_len);

/*
 * A libpq connection string or URL, in key=value form with connect_timeout=seconds
 * added unless it names one (so that a host that does not answer costs that long, not
 * the system's TCP timeout); malloc'd. NULL when url does not parse (the reason in
 * err) or out of memory.
 */
char *srv_conninfo_with_timeout(const char *url, int seconds, char *err, size_t err_len);

/* Every key with its bounds and meaning; with values when c is not NULL. */
void srv_config_print(FILE *out, const struct srv_config *c);

/* The settings a journal and its snapshots must be replayed under (BLAKE2b, 16 bytes:
 * SRV_JOURNAL_SETTINGS_BYTES). */
void srv_settings_fingerprint(const struct srv_config *c, uint8_t out[16]);

#endif
