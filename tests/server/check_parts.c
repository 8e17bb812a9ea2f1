/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridexd's smaller parts: the settings table (values, bounds, files,
 * relations), what the per-address limits count an address as, splitting a ClientFrame without
 * unpacking what is signed, the encoded server frames, and the bounded queue between threads
 * (batches, wrap-around, blocking producers, close and drain).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <libpq-fe.h>

#include "gridex.pb-c.h"
#include "srv_addr.h"
#include "srv_config.h"
#include "srv_cpus.h"
#include "srv_dues.h"
#include "srv_frames.h"
#include "srv_idmap.h"
#include "srv_log.h"
#include "srv_queue.h"
#include "tap.h"

static char err[512];

START_TEST(settings_have_bounds)
{
	struct srv_config c;
	srv_config_default(&c);
	ck_assert_int_eq(c.frame_bytes_max, 4096);
	ck_assert(srv_config_set(&c, "frame-bytes-max", "8192", err, sizeof(err)));
	ck_assert_int_eq(c.frame_bytes_max, 8192);
	ck_assert(srv_config_set(&c, "frame_bytes_max", "2048", err, sizeof(err)));
	ck_assert_int_eq(c.frame_bytes_max, 2048);
	ck_assert(!srv_config_set(&c, "frame_bytes_max", "10", err, sizeof(err)));
	ck_assert_msg(strstr(err, "64 .. 1048576") != NULL, "%s", err);
	ck_assert(!srv_config_set(&c, "frame_bytes_max", "12x", err, sizeof(err)));
	ck_assert(!srv_config_set(&c, "frame_bytes_max", "", err, sizeof(err)));
	ck_assert(!srv_config_set(&c, "frame_bytes_max", "99999999999999999999", err, sizeof(err)));
	ck_assert(!srv_config_set(&c, "no_such_key", "1", err, sizeof(err)));
	ck_assert_msg(strstr(err, "unknown setting") != NULL, "%s", err);
	ck_assert_int_eq(c.frame_bytes_max, 2048); /* failures change nothing */
	/* Relations between settings. */
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "tls_cert") != NULL, "%s", err);
	ck_assert(srv_config_set(&c, "tls_cert", "c.pem", err, sizeof(err)));
	ck_assert(srv_config_set(&c, "tls_key", "k.pem", err, sizeof(err)));
	ck_assert(srv_config_set(&c, "database_url", "postgresql:///x", err, sizeof(err)));
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "journal_dir") != NULL, "%s", err);
	ck_assert(srv_config_set(&c, "journal_dir", "/var/lib/gridex", err, sizeof(err)));
	ck_assert(srv_config_check(&c, err, sizeof(err)));
	ck_assert(srv_config_set(&c, "out_buffer_hard_bytes", "4096", err, sizeof(err)));
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert(srv_config_set(&c, "out_buffer_hard_bytes", "8388608", err, sizeof(err)));
	ck_assert(!srv_config_set(&c, "query_bytes_max", "16777217", err, sizeof(err)));
	ck_assert(!srv_config_set(&c, "query_bytes_max", "65535", err, sizeof(err)));
	/* Bearer tokens: 16 or more token characters. */
	ck_assert(srv_config_set(&c, "metrics_token", "short", err, sizeof(err)));
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "metrics_token") != NULL, "%s", err);
	ck_assert(srv_config_set(&c, "metrics_token", "sixteen chars!!!", err, sizeof(err)));
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert(srv_config_set(&c, "metrics_token", "0123456789abcdef", err, sizeof(err)));
	ck_assert(srv_config_check(&c, err, sizeof(err)));
	ck_assert(srv_config_set(&c, "operator_account", "9", err, sizeof(err)));
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "operator_key") != NULL, "%s", err);
	ck_assert(srv_config_set(&c, "operator_account", "0", err, sizeof(err)));
	/* verifier_cpus: its form is checked here, the CPUs at start. */
	ck_assert(srv_config_check(&c, err, sizeof(err)));
	ck_assert(srv_config_set(&c, "verifier_cpus", "4-7,900", err, sizeof(err)));
	ck_assert(srv_config_check(&c, err, sizeof(err)));
	ck_assert(srv_config_set(&c, "verifier_cpus", "two", err, sizeof(err)));
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "verifier_cpus") != NULL, "%s", err);
	ck_assert(srv_config_set(&c, "verifier_cpus", "off", err, sizeof(err)));
	/* The price history's database: a URL or key=value string libpq reads. */
	ck_assert(srv_config_set(&c, "http_history_database_url", "postgresql://h:5432/db?x=1", err,
				 sizeof(err)));
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "http_history_database_url") != NULL &&
			      strstr(err, "invalid URI query parameter") != NULL,
		      "%s", err);
	ck_assert(srv_config_set(&c, "http_history_database_url", "host='unclosed", err,
				 sizeof(err)));
	ck_assert(!srv_config_check(&c, err, sizeof(err)));
	ck_assert(srv_config_set(&c, "http_history_database_url",
				 "postgresql://gridex_auditor@db.example:5433/gridex", err,
				 sizeof(err)));
	ck_assert_msg(srv_config_check(&c, err, sizeof(err)), "%s", err);
}
END_TEST

/* A URL without connect_timeout gets one, one with it keeps its own, and every value
 * comes back from libpq as it was (quotes and backslashes escaped). */
START_TEST(conninfo_gets_a_connect_timeout)
{
	char *s = srv_conninfo_with_timeout("postgresql://u@h:5433/d?application_name=a'b%5Cc", 5,
					    err, sizeof(err));
	ck_assert_ptr_nonnull(s);
	char *why = NULL;
	PQconninfoOption *o = PQconninfoParse(s, &why);
	ck_assert_msg(o != NULL, "%s: %s", s, why);
	int seen = 0;
	for (const PQconninfoOption *k = o; k->keyword; k++) {
		const char *want = strcmp(k->keyword, "user") == 0		 ? "u"
				   : strcmp(k->keyword, "host") == 0		 ? "h"
				   : strcmp(k->keyword, "port") == 0		 ? "5433"
				   : strcmp(k->keyword, "dbname") == 0		 ? "d"
				   : strcmp(k->keyword, "application_name") == 0 ? "a'b\\c"
				   : strcmp(k->keyword, "connect_timeout") == 0	 ? "5"
										 : NULL;
		ck_assert_msg((want == NULL) == (k->val == NULL), "%s: %s", k->keyword,
			      k->val ? k->val : "(none)");
		if (want) {
			ck_assert_str_eq(k->val, want);
			seen++;
		}
	}
	ck_assert_int_eq(seen, 6);
	PQconninfoFree(o);
	free(s);
	s = srv_conninfo_with_timeout("host=/tmp/sock port=5433 connect_timeout=2", 5, err,
				      sizeof(err));
	ck_assert_msg(s && strstr(s, "connect_timeout='2'") && !strstr(s, "'5'"), "%s", s);
	free(s);
	ck_assert_ptr_null(srv_conninfo_with_timeout("nonsense", 5, err, sizeof(err)));
	ck_assert_msg(err[0] != '\0', "a reason");
}
END_TEST

/* The plan of verifier_cpus = text for v verifiers on the CPUs of allowed (n of them),
 * as text, or "error: <reason>". */
static const char *cpu_plan(const char *text, int v, const int *allowed, int n)
{
	static char out[600];
	static struct srv_cpus p;
	p.n = -1;
	if (!srv_cpus_plan(text, v, allowed, n, &p, err, sizeof(err))) {
		ck_assert_int_eq(p.n, 0);
		snprintf(out, sizeof(out), "error: %s", err);
		return out;
	}
	srv_cpus_text(&p, v, out, sizeof(out));
	return out;
}

START_TEST(verifier_cpus_are_planned)
{
	const int two[] = {0, 1}, eight[] = {0, 1, 2, 3, 4, 5, 6, 7}, odd[] = {1, 3, 5, 9};
	/* auto: the last CPUs, one per verifier, when there are enough. */
	ck_assert_str_eq(cpu_plan("auto", 2, two, 2), "0,1");
	ck_assert_str_eq(cpu_plan("auto", 2, eight, 8), "6,7");
	ck_assert_str_eq(cpu_plan("auto", 3, odd, 4), "3,5,9");
	ck_assert_str_eq(cpu_plan("auto", 3, two, 2), "none");
	ck_assert_str_eq(cpu_plan("auto", 1, two, 2), "1");
	ck_assert_str_eq(cpu_plan("off", 2, eight, 8), "none");
	/* Lists and ranges, in the order given; each CPU must be allowed. */
	ck_assert_str_eq(cpu_plan("1", 2, two, 2), "1,1");
	ck_assert_str_eq(cpu_plan("5,2-4,0", 5, eight, 8), "5,2,3,4,0");
	ck_assert_str_eq(cpu_plan("5,2-4,0", 2, eight, 8), "5,2");   /* the rest unused */
	ck_assert_str_eq(cpu_plan("3-4", 5, eight, 8), "3,4,3,4,3"); /* in turn */
	/* Any CPU below 1024 when only the form is checked. */
	ck_assert_str_eq(cpu_plan("0-1023", 4, NULL, 0), "0,1,2,3");
	ck_assert_str_eq(cpu_plan("1023", 1, NULL, 0), "1023");
	ck_assert_str_eq(cpu_plan("2", 2, two, 2),
			 "error: verifier_cpus: CPU 2 is not one gridexd may run on");
	ck_assert_str_eq(cpu_plan("1,3-4", 2, odd, 4),
			 "error: verifier_cpus: CPU 4 is not one gridexd may run on");
	const char *bad[] = {"",     "x",    "1-",	    "-1",   "3-1",   "1,,2", "1,", ",1",
			     "1 ,2", "1024", "99999999999", "Auto", "1-2-3", "0x1",  "+1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *got = cpu_plan(bad[i], 2, eight, 8);
		ck_assert_msg(strstr(got, "is not auto, off or a list") != NULL, "%s: %s", bad[i],
			      got);
	}
}
END_TEST

/* The address key of text address a (IPv4 or IPv6); checks the text form too. */
static void addr_key(const char *a, const char *want_ip, const char *want_key)
{
	struct sockaddr_storage ss = {0};
	if (strchr(a, ':')) {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
		v6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, a, &v6->sin6_addr), 1);
	} else {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
		v4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, a, &v4->sin_addr), 1);
	}
	char ip[64], key[64];
	srv_addr_key((const struct sockaddr *)&ss, ip, key, sizeof(ip));
	ck_assert_str_eq(ip, want_ip);
	ck_assert_str_eq(key, want_key);
}

START_TEST(per_address_limits_count_ipv6_by_its_64)
{
	addr_key("192.0.2.7", "192.0.2.7", "192.0.2.7");
	addr_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
		 "2001:db8:1:2::/64");
	addr_key("2001:db8:1:2::9", "2001:db8:1:2::9", "2001:db8:1:2::/64");
	addr_key("2001:db8:1:3::9", "2001:db8:1:3::9", "2001:db8:1:3::/64");
	addr_key("::1", "::1", "::/64");
	addr_key("::ffff:192.0.2.7", "192.0.2.7", "192.0.2.7");
}
END_TEST

START_TEST(settings_files)
{
	char path[] = "/tmp/gridexd-config-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	const char good[] = "# comment\n\n  listen = 127.0.0.1:9000  # trailing comment\n"
			    "max-connections=12\nlog_level = debug\n";
	ck_assert_int_eq(write(fd, good, sizeof(good) - 1), (ssize_t)sizeof(good) - 1);
	close(fd);
	struct srv_config c;
	srv_config_default(&c);
	ck_assert_msg(srv_config_load(&c, path, err, sizeof(err)), "%s", err);
	ck_assert_str_eq(c.listen, "127.0.0.1:9000");
	ck_assert_int_eq(c.max_connections, 12);
	ck_assert_str_eq(c.log_level, "debug");
	FILE *f = fopen(path, "w");
	fputs("listen = x\nmax_connections = 0\n", f);
	fclose(f);
	ck_assert(!srv_config_load(&c, path, err, sizeof(err)));
	ck_assert_msg(strstr(err, ":2: max_connections") != NULL, "%s", err);
	f = fopen(path, "w");
	fputs("just words\n", f);
	fclose(f);
	ck_assert(!srv_config_load(&c, path, err, sizeof(err)));
	ck_assert_msg(strstr(err, ":1: expected key = value") != NULL, "%s", err);
	unlink(path);
	ck_assert(!srv_config_load(&c, path, err, sizeof(err)));
}
END_TEST

START_TEST(client_frames_split_strictly)
{
	int field;
	const uint8_t *inner;
	size_t len;
	const uint8_t ok[] = {0x0a, 0x03, 1, 2, 3};
	ck_assert_int_eq(srv_client_frame_split(ok, sizeof(ok), &field, &inner, &len), 0);
	ck_assert_int_eq(field, SRV_CF_REQUEST);
	ck_assert_uint_eq(len, 3);
	ck_assert_ptr_eq(inner, ok + 2);
	const uint8_t sub[] = {0x12, 0x00};
	ck_assert_int_eq(srv_client_frame_split(sub, sizeof(sub), &field, &inner, &len), 0);
	ck_assert_int_eq(field, SRV_CF_SUBSCRIBE);
	const uint8_t trailing[] = {0x0a, 0x01, 1, 0x12, 0x00};
	const uint8_t repeated[] = {0x0a, 0x01, 1, 0x0a, 0x01, 1};
	const uint8_t short_len[] = {0x0a, 0x05, 1};
	const uint8_t wire_type0[] = {0x08, 0x01};
	const uint8_t field4[] = {0x22, 0x00};
	const uint8_t endless[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff,
				   0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	const uint8_t *bad[] = {trailing, repeated, short_len, wire_type0, field4, endless};
	const size_t bad_len[] = {sizeof(trailing),   sizeof(repeated), sizeof(short_len),
				  sizeof(wire_type0), sizeof(field4),	sizeof(endless)};
	for (size_t i = 0; i < 6; i++)
		ck_assert_msg(srv_client_frame_split(bad[i], bad_len[i], &field, &inner, &len) ==
				      -1,
			      "case %zu accepted", i);
	ck_assert_int_eq(srv_client_frame_split(ok, 1, &field, &inner, &len), -1);
	ck_assert_int_eq(srv_client_frame_split(ok, 0, &field, &inner, &len), -1);
}
END_TEST

START_TEST(server_frames_decode)
{
	uint8_t buf[SRV_FRAME_SMALL_MAX];
	size_t n = srv_frame_reject(buf, sizeof(buf), 7, 9, GRIDEX__V1__REJECT_REASON__EXPIRED,
				    "too late");
	ck_assert_uint_gt(n, 4);
	ck_assert_uint_eq((size_t)buf[3] + 4, n);
	Gridex__V1__ServerFrame *f = gridex__v1__server_frame__unpack(NULL, n - 4, buf + 4);
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(f->reject);
	ck_assert_uint_eq(f->reject->nonce, 9);
	ck_assert_int_eq(f->reject->reason, GRIDEX__V1__REJECT_REASON__EXPIRED);
	ck_assert_int_eq((int)f->reject->detail.len, 8);
	gridex__v1__server_frame__free_unpacked(f, NULL);
	ck_assert_uint_eq(srv_frame_ack(buf, 5, 1, 2, 3), 0); /* does not fit */
	struct matching_level_view bids[3] = {{300, 1, 1}, {200, 2, 1}, {100, 3, 2}};
	struct matching_level_view asks[1] = {{400, 5, 1}};
	size_t bound = srv_frame_snapshot_bound("H100/2026-01-01T00", 4);
	uint8_t *big = malloc(bound);
	n = srv_frame_snapshot(big, bound, "H100/2026-01-01T00", 42, bids, 3, asks, 1);
	ck_assert_uint_gt(n, 0);
	f = gridex__v1__server_frame__unpack(NULL, n - 4, big + 4);
	ck_assert_ptr_nonnull(f->snapshot);
	ck_assert_uint_eq(f->snapshot->sequence, 42);
	ck_assert_uint_eq(f->snapshot->n_bids, 3);
	ck_assert_int_eq(f->snapshot->bids[2]->quantity, 3);
	ck_assert_uint_eq(f->snapshot->asks[0]->orders, 1);
	gridex__v1__server_frame__free_unpacked(f, NULL);
	free(big);
}
END_TEST

/* ---------- query answers cut to fit ---------- */

static const char *product_of(uint32_t book, void *ctx)
{
	(void)book;
	(void)ctx;
	return "H100-80G/2026-01-01T00";
}

/* A query answer's frame: its length fits max (header aside), and it decodes. */
static Gridex__V1__QueryResult *answer_in(const uint8_t *buf, size_t len, size_t max)
{
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_le(len, 4 + max);
	ck_assert_uint_eq(
		((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3]) + 4,
		len);
	Gridex__V1__ServerFrame *f = gridex__v1__server_frame__unpack(NULL, len - 4, buf + 4);
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(f->result);
	Gridex__V1__QueryResult *q = f->result;
	f->result = NULL;
	gridex__v1__server_frame__free_unpacked(f, NULL);
	return q;
}

/* Order rows: the first ones that fit in bytes_max, and not one more. Each row's cursor
 * is its order id; a truncated answer's next is its last row's. */
static size_t orders_fitting(struct srv_report *rows, size_t n, size_t max, bool cut,
			     bool *truncated)
{
	static uint64_t cursors[3000];
	for (size_t i = 0; i < n; i++)
		cursors[i] = rows[i].order_id;
	struct srv_answer a = {
		.account = 7, .nonce = 99, .cut = cut, .bytes_max = max, .cursors = cursors};
	size_t len;
	uint8_t *b = srv_frame_result(&a, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, rows, n, 0, 0,
				      "USD", product_of, NULL, &len);
	Gridex__V1__QueryResult *q = answer_in(b, len, max);
	ck_assert_uint_eq(q->nonce, 99);
	ck_assert_uint_eq(q->account, 7);
	size_t k = q->n_orders;
	for (size_t i = 0; i < k; i++)
		ck_assert_uint_eq(q->orders[i]->client_order_id, rows[i].client_order_id);
	*truncated = q->truncated;
	ck_assert_uint_eq(q->next, q->truncated ? rows[k - 1].order_id : 0);
	gridex__v1__query_result__free_unpacked(q, NULL);
	free(b);
	return k;
}

START_TEST(query_answers_are_cut_to_fit)
{
	enum { N = 3000 };
	static struct srv_report rows[N];
	for (size_t i = 0; i < N; i++)
		rows[i] = (struct srv_report){.kind = SRV_REPORT_EXEC,
					      .account = 7,
					      .client_order_id = 1000000 + i,
					      .order_id = 5000000 + i,
					      .price = 2500000,
					      .leaves_quantity = 8};
	bool t;
	/* All fit: not truncated, unless the core found more than query_rows_max. */
	ck_assert_uint_eq(orders_fitting(rows, 10, 65536, false, &t), 10);
	ck_assert(!t);
	ck_assert_uint_eq(orders_fitting(rows, 10, 65536, true, &t), 10);
	ck_assert(t);
	/* Cut by bytes: the first k rows, and k + 1 would not have fitted. */
	size_t k = orders_fitting(rows, N, 65536, false, &t);
	ck_assert(t);
	ck_assert_uint_gt(k, 500);
	ck_assert_uint_lt(k, N);
	struct srv_answer all = {.account = 7, .nonce = 99, .bytes_max = 16u << 20};
	size_t len;
	uint8_t *b = srv_frame_result(&all, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, rows, k + 1, 0,
				      0, "USD", product_of, NULL, &len);
	ck_assert_uint_gt(len - 4, 65536);
	free(b);
	/* The limit is exact: k rows, the truncated flag (2 bytes) and next (a tag and the
	 * 4-byte varint of order id 5,000,000 + k - 1) in k's size + 7, not in one byte
	 * less. */
	b = srv_frame_result(&all, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, rows, k, 0, 0, "USD",
			     product_of, NULL, &len);
	size_t exact = len - 4;
	free(b);
	ck_assert_uint_eq(orders_fitting(rows, N, exact + 7, false, &t), k);
	ck_assert_uint_eq(orders_fitting(rows, N, exact + 6, false, &t), k - 1);
	/* A balance has no rows to cut. */
	struct srv_answer a = {.account = 7, .nonce = 1, .bytes_max = 65536};
	b = srv_frame_result(&a, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE, rows, N, 123, 45, "USD",
			     product_of, NULL, &len);
	Gridex__V1__QueryResult *q = answer_in(b, len, 65536);
	ck_assert_uint_eq(q->n_balances, 1);
	ck_assert_int_eq(q->balances[0]->available, 123);
	ck_assert_uint_eq(q->n_orders, 0);
	ck_assert(!q->truncated);
	gridex__v1__query_result__free_unpacked(q, NULL);
	free(b);
}
END_TEST

static void names_of(const struct srv_lease_view *v, struct srv_lease_names *out, void *ctx)
{
	(void)v;
	(void)ctx;
	static const char *dev = "GPU-00000000-1111-2222-3333-444444444444";
	*out = (struct srv_lease_names){.host = "node-1",
					.accelerator = "H100-80G",
					.vendor = "nvidia",
					.n_devices = SRV_HOST_DEVICES_MAX};
	for (size_t d = 0; d < SRV_HOST_DEVICES_MAX; d++)
		out->devices[d] = dev;
}

START_TEST(lease_and_host_answers_are_cut_to_fit)
{
	enum { N = 200 };
	static struct srv_lease_view views[N];
	for (size_t i = 0; i < N; i++) {
		views[i] = (struct srv_lease_view){
			.id = i + 1, .buyer = 1, .seller = 2, .n_fills = SRV_LEASE_VIEW_FILLS};
		for (size_t f = 0; f < SRV_LEASE_VIEW_FILLS; f++)
			views[i].fill_ids[f] = UINT64_MAX - f;
	}
	/* Row i's cursor is i + 1 here (the core's are its lease id, or its host's index
	 * + 1). */
	static uint64_t cursors[400];
	for (size_t i = 0; i < 400; i++)
		cursors[i] = i + 1;
	struct srv_answer a = {.account = 7, .nonce = 3, .bytes_max = 65536, .cursors = cursors};
	size_t len;
	uint8_t *b = srv_frame_leases(&a, views, N, names_of, NULL, &len);
	Gridex__V1__QueryResult *q = answer_in(b, len, 65536);
	ck_assert(q->truncated);
	ck_assert_uint_gt(q->n_leases, 10);
	ck_assert_uint_lt(q->n_leases, N);
	for (size_t i = 0; i < q->n_leases; i++)
		ck_assert_uint_eq(q->leases[i]->lease_id, i + 1);
	ck_assert_uint_eq(q->next, q->n_leases);
	gridex__v1__query_result__free_unpacked(q, NULL);
	free(b);
	/* Without an answer: one Lease frame per view, none cut. */
	b = srv_frame_leases(NULL, views, 3, names_of, NULL, &len);
	ck_assert_ptr_nonnull(b);
	size_t at = 0;
	for (int i = 0; i < 3; i++) {
		size_t body = (size_t)b[at] << 24 | (size_t)b[at + 1] << 16 |
			      (size_t)b[at + 2] << 8 | b[at + 3];
		Gridex__V1__ServerFrame *f =
			gridex__v1__server_frame__unpack(NULL, body, b + at + 4);
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(f->lease->lease_id, (uint64_t)i + 1);
		gridex__v1__server_frame__free_unpacked(f, NULL);
		at += 4 + body;
	}
	ck_assert_uint_eq(at, len);
	free(b);
	/* Hosts, cut the same way. */
	enum { H = 400 };
	static struct srv_host_view hosts[H];
	static struct srv_host_row hrows[H];
	for (size_t i = 0; i < H; i++) {
		hosts[i] = (struct srv_host_view){.seller = 2};
		snprintf(hosts[i].name, sizeof(hosts[i].name), "node-%zu", i);
		strcpy(hosts[i].spec.vendor, "nvidia");
		hosts[i].spec.n_devices = SRV_HOST_DEVICES_MAX;
		for (size_t d = 0; d < SRV_HOST_DEVICES_MAX; d++)
			snprintf(hosts[i].spec.devices[d], sizeof(hosts[i].spec.devices[d]),
				 "GPU-%08zu-1111-2222-3333-%012zu", i, d);
		hrows[i] = (struct srv_host_row){.host = &hosts[i], .accelerator = "H100-80G"};
	}
	b = srv_frame_hosts(&a, hrows, H, &len);
	q = answer_in(b, len, 65536);
	ck_assert(q->truncated);
	ck_assert_uint_gt(q->n_hosts, 10);
	ck_assert_uint_lt(q->n_hosts, H);
	char last[32];
	snprintf(last, sizeof(last), "node-%zu", q->n_hosts - 1);
	ck_assert_uint_eq(q->hosts[q->n_hosts - 1]->name.len, strlen(last));
	ck_assert(memcmp(q->hosts[q->n_hosts - 1]->name.data, last, strlen(last)) == 0);
	ck_assert_uint_eq(q->hosts[0]->n_devices, SRV_HOST_DEVICES_MAX);
	ck_assert_uint_eq(q->next, q->n_hosts);
	gridex__v1__query_result__free_unpacked(q, NULL);
	free(b);
	a.cut = true;
	b = srv_frame_hosts(&a, hrows, 2, &len);
	q = answer_in(b, len, 65536);
	ck_assert(q->truncated);
	ck_assert_uint_eq(q->n_hosts, 2);
	ck_assert_uint_eq(q->next, 2);
	gridex__v1__query_result__free_unpacked(q, NULL);
	free(b);
}
END_TEST

/* ---------- the queue ---------- */

static struct srv_queue q;

static void *producer(void *arg)
{
	uint64_t base = (uint64_t)(uintptr_t)arg;
	for (uint64_t i = 0; i < 100000; i += 10) {
		uint64_t batch[10];
		for (int k = 0; k < 10; k++)
			batch[k] = base + i + (uint64_t)k;
		ck_assert_uint_eq(srv_queue_push(&q, batch, 10, true, NULL), 10);
	}
	return NULL;
}

static bool woken_push; /* was_empty of the push below */

static void *push_when_full(void *arg)
{
	(void)arg;
	uint64_t more[10] = {0};
	ck_assert_uint_eq(srv_queue_push(&q, more, 10, true, &woken_push), 10);
	return NULL;
}

/* A push that waited for room into a queue its consumer has emptied meanwhile says
 * was_empty: a consumer that pops until empty and then sleeps until woken must be
 * woken. (It once said only whether the queue was empty when the push began, and the
 * consumers of the out and market queues slept with items waiting.) */
START_TEST(a_push_that_waited_into_an_emptied_queue_wakes_its_consumer)
{
	ck_assert_int_eq(srv_queue_init(&q, sizeof(uint64_t), 16), 0);
	uint64_t full[16] = {0}, out[16];
	bool was_empty = false;
	ck_assert_uint_eq(srv_queue_push(&q, full, 16, true, &was_empty), 16);
	ck_assert(was_empty);
	ck_assert_uint_eq(srv_queue_push(&q, full, 1, false, &was_empty), 0);
	ck_assert(!was_empty);
	pthread_t t;
	pthread_create(&t, NULL, push_when_full, NULL);
	struct timespec ts = {.tv_nsec = 200000000}; /* for it to find the queue full */
	nanosleep(&ts, NULL);
	ck_assert_uint_eq(srv_queue_pop(&q, out, 16, 0), 16); /* emptied */
	pthread_join(t, NULL);
	ck_assert(woken_push);
	ck_assert_uint_eq(srv_queue_pop(&q, out, 16, 0), 10);
	srv_queue_destroy(&q);
}
END_TEST

/* A consumer as the I/O and API threads are: it pops until the queue is empty, then
 * sleeps until woken (or 5 s: then it gives up). */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static bool wake_due;
static uint64_t consumed;

static void wake_consumer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wake_lock);
	wake_due = true;
	pthread_cond_signal(&wake_cond);
	pthread_mutex_unlock(&wake_lock);
}

static void *sleepy_consumer(void *arg)
{
	(void)arg;
	while (consumed < 1000) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		pthread_mutex_lock(&wake_lock);
		while (!wake_due)
			if (pthread_cond_timedwait(&wake_cond, &wake_lock, &until) != 0) {
				pthread_mutex_unlock(&wake_lock);
				return NULL; /* never woken: the items left wait for ever */
			}
		wake_due = false;
		pthread_mutex_unlock(&wake_lock);
		uint64_t items[8];
		size_t n;
		while ((n = srv_queue_pop(&q, items, 8, 0)) > 0)
			for (size_t i = 0; i < n; i++)
				ck_assert_uint_eq(items[i], consumed++);
	}
	return NULL;
}

static void *woken_producer(void *arg)
{
	(void)arg;
	for (uint64_t i = 0; i < 1000; i += 40) {
		uint64_t batch[40];
		for (uint64_t k = 0; k < 40; k++)
			batch[k] = i + k;
		srv_queue_push_woken(&q, batch, 40, wake_consumer, NULL);
	}
	return NULL;
}

/* Batches larger than the queue, into a consumer that sleeps until woken: every item
 * arrives, in order. (A batch once went in with one push, which waited for room while
 * the consumer slept, owed a wake it would send only once done.) */
START_TEST(pushes_wake_a_sleeping_consumer_however_large)
{
	ck_assert_int_eq(srv_queue_init(&q, sizeof(uint64_t), 16), 0);
	pthread_t c, p;
	pthread_create(&c, NULL, sleepy_consumer, NULL);
	pthread_create(&p, NULL, woken_producer, NULL);
	pthread_join(c, NULL);
	ck_assert_uint_eq(consumed, 1000);
	pthread_join(p, NULL);
	srv_queue_destroy(&q);
}
END_TEST

/* The id map against a model through random puts and deletes of few ids (long runs,
 * runs that wrap past the table's end, growth), then emptied. */
START_TEST(idmap_follows_a_model)
{
	enum { IDS = 400 };
	static uint32_t model[IDS + 1];	 /* UINT32_MAX: absent */
	uint64_t big = UINT64_MAX - IDS; /* and ids far from the small ones */
	struct srv_idmap m = {0};
	for (int i = 0; i <= IDS; i++)
		model[i] = UINT32_MAX;
	ck_assert_uint_eq(srv_idmap_get(&m, 5), UINT32_MAX);
	ck_assert(!srv_idmap_del(&m, 5));
	srand(7);
	size_t n = 0;
	for (int step = 0; step < 200000; step++) {
		int k = 1 + rand() % IDS;
		uint64_t id = k % 2 ? (uint64_t)k : big + (uint64_t)k;
		/* more puts than deletes for the first half, then fewer: the map grows and
		 * empties */
		bool put = rand() % 100 < (step < 100000 ? 60 : 35);
		if (put) {
			uint32_t v = (uint32_t)rand();
			ck_assert(srv_idmap_put(&m, id, v));
			n += model[k] == UINT32_MAX;
			model[k] = v;
		} else {
			ck_assert(srv_idmap_del(&m, id) == (model[k] != UINT32_MAX));
			n -= model[k] != UINT32_MAX;
			model[k] = UINT32_MAX;
		}
		ck_assert_uint_eq(m.n, n);
		ck_assert_uint_le(2 * m.n, m.cap);
		if (step % 997 == 0)
			for (int j = 1; j <= IDS; j++)
				ck_assert_uint_eq(
					srv_idmap_get(&m, j % 2 ? (uint64_t)j : big + (uint64_t)j),
					model[j]);
	}
	for (int j = 1; j <= IDS; j++) {
		uint64_t id = j % 2 ? (uint64_t)j : big + (uint64_t)j;
		ck_assert(srv_idmap_del(&m, id) == (model[j] != UINT32_MAX));
		for (int k = j + 1; k <= IDS; k += 37)
			ck_assert_uint_eq(
				srv_idmap_get(&m, k % 2 ? (uint64_t)k : big + (uint64_t)k),
				model[k]);
	}
	ck_assert_uint_eq(m.n, 0);
	ck_assert(!srv_idmap_put(&m, 0, 1)); /* 0 marks an empty place */
	ck_assert_uint_eq(m.n, 0);
	ck_assert_uint_eq(srv_idmap_get(&m, 0), UINT32_MAX);
	srv_idmap_free(&m);
}
END_TEST

/* The due-times heap: entries come out by time, equal times by key, through random
 * pushes and pops, and after entries are removed in place and the heap is made again. */
START_TEST(dues_come_out_in_order)
{
	struct srv_dues h = {0};
	srand(11);
	uint64_t key = 1;
	int64_t last_at = INT64_MIN;
	uint64_t last_key = 0;
	for (int step = 0; step < 100000; step++) {
		if (h.n == 0 || rand() % 100 < 55) {
			/* few distinct times: many ties */
			struct srv_due d = {.at = last_at == INT64_MIN ? rand() % 50
								       : last_at + rand() % 50,
					    .key = key++};
			d.of.slot = (uint32_t)d.key;
			ck_assert(srv_dues_push(&h, d));
			continue;
		}
		struct srv_due d = srv_dues_pop(&h);
		ck_assert_uint_eq(d.of.slot, (uint32_t)d.key);
		/* pushes are never due before the last one out, so what comes out is in order */
		ck_assert(d.at > last_at || (d.at == last_at && d.key > last_key));
		last_at = d.at;
		last_key = d.key;
		ck_assert(srv_dues_ordered(&h));
	}
	/* Every other entry removed in place, the heap made again: the rest come out in
	 * order. */
	size_t k = 0;
	for (size_t i = 0; i < h.n; i++)
		if (h.e[i].key % 2 == 0)
			h.e[k++] = h.e[i];
	h.n = k;
	srv_dues_heapify(&h);
	ck_assert(srv_dues_ordered(&h));
	struct srv_due prev = {.at = INT64_MIN};
	while (h.n > 0) {
		struct srv_due d = srv_dues_pop(&h);
		ck_assert_uint_eq(d.key % 2, 0);
		ck_assert(d.at > prev.at || (d.at == prev.at && d.key > prev.key));
		prev = d;
	}
	srv_dues_free(&h);
}
END_TEST

START_TEST(queue_moves_everything_once_in_order)
{
	ck_assert_int_eq(srv_queue_init(&q, sizeof(uint64_t), 37), 0); /* odd size: wraps */
	pthread_t a, b;
	pthread_create(&a, NULL, producer, (void *)(uintptr_t)0);
	pthread_create(&b, NULL, producer, (void *)(uintptr_t)1000000);
	uint64_t next_a = 0, next_b = 1000000, got = 0;
	while (got < 200000) {
		uint64_t items[16];
		size_t n = srv_queue_pop(&q, items, 16, 1000);
		ck_assert_uint_gt(n, 0);
		for (size_t i = 0; i < n; i++) {
			/* Each producer's items arrive in its order. */
			if (items[i] < 1000000)
				ck_assert_uint_eq(items[i], next_a++);
			else
				ck_assert_uint_eq(items[i], next_b++);
		}
		got += n;
	}
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	ck_assert_uint_le(q.high_water, 37);
	/* Non-blocking pushes stop when full; close refuses more and drains. */
	uint64_t many[50] = {0};
	ck_assert_uint_eq(srv_queue_push(&q, many, 50, false, NULL), 37);
	ck_assert_uint_eq(srv_queue_depth(&q), 37);
	srv_queue_close(&q);
	ck_assert_uint_eq(srv_queue_push(&q, many, 1, true, NULL), 0);
	ck_assert(!srv_queue_drained(&q));
	uint64_t out[64];
	ck_assert_uint_eq(srv_queue_pop(&q, out, 64, -1), 37);
	ck_assert(srv_queue_drained(&q));
	ck_assert_uint_eq(srv_queue_pop(&q, out, 64, -1), 0); /* closed and empty: no wait */
	srv_queue_destroy(&q);
	ck_assert_int_eq(srv_queue_init(&q, 0, 10), -1);
}
END_TEST

START_TEST(queue_emptied_starts_at_its_first_slot)
{
	ck_assert_int_eq(srv_queue_init(&q, sizeof(uint64_t), 8), 0);
	uint64_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
	/* Light traffic: each push is taken before the next, so the ring never leaves
	 * its first slot (a large ring is never walked, never faulted in). */
	for (uint64_t k = 0; k < 20; k++) {
		ck_assert_uint_eq(srv_queue_push(&q, &in[k % 8], 1, false, NULL), 1);
		ck_assert_uint_eq(q.head, 0);
		ck_assert_uint_eq(srv_queue_pop(&q, out, 8, 0), 1);
		ck_assert_uint_eq(out[0], in[k % 8]);
		ck_assert_uint_eq(q.head, 0);
	}
	/* A partial pop leaves the rest where it is; order holds across the wrap. */
	ck_assert_uint_eq(srv_queue_push(&q, in, 6, false, NULL), 6);
	ck_assert_uint_eq(srv_queue_pop(&q, out, 4, 0), 4);
	ck_assert_uint_eq(q.head, 4);
	ck_assert_uint_eq(srv_queue_push(&q, in, 6, false, NULL), 6); /* slots 6, 7, 0 .. 3 */
	ck_assert_uint_eq(srv_queue_pop(&q, out, 8, 0), 8);
	const uint64_t want[8] = {5, 6, 1, 2, 3, 4, 5, 6};
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(out[i], want[i]);
	ck_assert_uint_eq(srv_queue_depth(&q), 0);
	ck_assert_uint_eq(q.head, 0);
	srv_queue_destroy(&q);
}
END_TEST

START_TEST(queue_ring_grows_only_as_deep_as_the_backlog)
{
	/* Room for a million items; a backlog of 100 that never empties. */
	ck_assert_int_eq(srv_queue_init(&q, sizeof(uint64_t), 1u << 20), 0);
	ck_assert_uint_eq(q.ring, SRV_QUEUE_RING_FIRST);
	uint64_t next_in = 0, next_out = 0, buf[8];
	for (; next_in < 100; next_in++)
		ck_assert_uint_eq(srv_queue_push(&q, &next_in, 1, false, NULL), 1);
	for (int round = 0; round < 100000; round++) {
		for (int k = 0; k < 8; k++)
			buf[k] = next_in++;
		ck_assert_uint_eq(srv_queue_push(&q, buf, 8, false, NULL), 8);
		ck_assert_uint_eq(srv_queue_pop(&q, buf, 8, 0), 8);
		for (int k = 0; k < 8; k++)
			ck_assert_uint_eq(buf[k], next_out++);
	}
	/* 800,000 items went through slots 0 .. 127 only (the old ring walked them all). */
	ck_assert_uint_eq(q.ring, 2 * SRV_QUEUE_RING_FIRST);
	ck_assert_uint_eq(q.high_water, 108);
	srv_queue_destroy(&q);

	/* Growing a wrapped ring keeps the order: 64 slots, head at 30, full. */
	ck_assert_int_eq(srv_queue_init(&q, sizeof(uint64_t), 100), 0);
	next_in = next_out = 0;
	for (int k = 0; k < 40; k++, next_in++)
		ck_assert_uint_eq(srv_queue_push(&q, &next_in, 1, false, NULL), 1);
	for (int k = 0; k < 30; k++, next_out++)
		ck_assert_uint_eq(srv_queue_pop(&q, buf, 1, 0), 1);
	for (; q.count < q.ring; next_in++)
		ck_assert_uint_eq(srv_queue_push(&q, &next_in, 1, false, NULL), 1);
	ck_assert_uint_eq(q.head, 30);
	ck_assert_uint_eq(q.ring, SRV_QUEUE_RING_FIRST);
	/* Full at 64: the next push doubles it, but cap 100 bounds the double. */
	while (srv_queue_push(&q, &next_in, 1, false, NULL) == 1)
		next_in++;
	ck_assert_uint_eq(q.ring, 100);
	ck_assert_uint_eq(q.count, 100);
	while (srv_queue_pop(&q, buf, 1, 0) == 1)
		ck_assert_uint_eq(buf[0], next_out++);
	ck_assert_uint_eq(next_out, next_in);
	ck_assert_uint_eq(next_in, 130);
	srv_queue_destroy(&q);
}
END_TEST

START_TEST(queue_pop_times_out)
{
	ck_assert_int_eq(srv_queue_init(&q, 8, 4), 0);
	uint64_t x;
	ck_assert_uint_eq(srv_queue_pop(&q, &x, 1, 0), 0);
	ck_assert_uint_eq(srv_queue_pop(&q, &x, 1, 20), 0);
	bool was_empty = false;
	x = 5;
	ck_assert_uint_eq(srv_queue_push(&q, &x, 1, false, &was_empty), 1);
	ck_assert(was_empty);
	ck_assert_uint_eq(srv_queue_push(&q, &x, 1, false, &was_empty), 1);
	ck_assert(!was_empty);
	srv_queue_destroy(&q);
}
END_TEST

/* Whatever a value holds, a log line is one line; a quoted value from outside keeps its
 * quotes. */
START_TEST(log_lines_stay_lines)
{
	char path[] = "/tmp/gridex-log-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert(srv_log_open(path, "info"));
	srv_log(SRV_LOG_INFO, "raw", "v=\"%s\"", "a\nts=forged\x7f\tb");
	char v[16];
	srv_log(SRV_LOG_INFO, "quoted", "v=\"%s\" n=%d",
		srv_log_value(v, sizeof(v), "q\"b\\c\nd\x01 and more than fits"), 7);
	srv_log(SRV_LOG_INFO, "none", "v=\"%s\"", srv_log_value(v, sizeof(v), NULL));
	srv_log(SRV_LOG_DEBUG, "below the level", NULL);
	srv_log_close();
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char lines[4][256];
	int n = 0;
	while (n < 4 && fgets(lines[n], sizeof(lines[n]), f))
		n++;
	fclose(f);
	unlink(path);
	ck_assert_int_eq(n, 3);
	ck_assert_ptr_nonnull(strstr(lines[0], "level=info msg=\"raw\" v=\"a?ts=forged??b\"\n"));
	ck_assert_ptr_nonnull(strstr(lines[1], "msg=\"quoted\" v=\"q'b'c'd' and mo\" n=7\n"));
	ck_assert_ptr_nonnull(strstr(lines[2], "msg=\"none\" v=\"\"\n"));
}
END_TEST

static Suite *parts_suite(void)
{
	Suite *s = suite_create("server-parts");
	TCase *tc = tcase_create("parts");
	tcase_add_test(tc, settings_have_bounds);
	tcase_add_test(tc, conninfo_gets_a_connect_timeout);
	tcase_add_test(tc, settings_files);
	tcase_add_test(tc, verifier_cpus_are_planned);
	tcase_add_test(tc, per_address_limits_count_ipv6_by_its_64);
	tcase_add_test(tc, client_frames_split_strictly);
	tcase_add_test(tc, server_frames_decode);
	tcase_add_test(tc, query_answers_are_cut_to_fit);
	tcase_add_test(tc, lease_and_host_answers_are_cut_to_fit);
	tcase_add_test(tc, idmap_follows_a_model);
	tcase_add_test(tc, dues_come_out_in_order);
	tcase_add_test(tc, queue_moves_everything_once_in_order);
	tcase_add_test(tc, a_push_that_waited_into_an_emptied_queue_wakes_its_consumer);
	tcase_add_test(tc, pushes_wake_a_sleeping_consumer_however_large);
	tcase_add_test(tc, queue_emptied_starts_at_its_first_slot);
	tcase_add_test(tc, queue_ring_grows_only_as_deep_as_the_backlog);
	tcase_add_test(tc, queue_pop_times_out);
	tcase_add_test(tc, log_lines_stay_lines);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(parts_suite());
}
