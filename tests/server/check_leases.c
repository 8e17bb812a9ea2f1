/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leases end to end (docs/provisioning.md): a real gridexd with the reference
 * agent gridex-provider as its hook (a fixture inventory, a fake nvidia-smi,
 * process pinning), a real PostgreSQL, real TLS clients. A seller registers a
 * host, a buyer its workload; a fill becomes a lease on the host's first
 * device; at the window's start the hook starts a stand-in workload that
 * records its environment: it sees exactly the leased UUID; it runs, the
 * window ends, it is stopped, the seller is paid for the time it ran and the
 * buyer gets the rest back, in the ledger (audited) and in the server. A
 * workload that cannot start ends in failed delivery and a full refund; a
 * seller without a free device gives a cancelled lease and a refund at once.
 * Hook calls for different hosts run at once, one host's one after another.
 * Windows last seconds here (delivery_period_ms, delivery_shift_ms).
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "pgtest.h"
#include "tap.h"
#include "tclient.h"
#include "tfile.h"

#define BUYER  1
#define SELLER 2
#define CASH   100000000
#define PRICE  3000000 /* per GPU-hour */
#define PERIOD 4000    /* ms: the delivery window of a product hour here */

/* What a test case runs with: the hook (file in dir), the window, the deadline. */
static const char *hook_file = "hook";
static int period = PERIOD, deadline_ms = 3000, lead_ms = 5000, hosts_max = 2;
static char arg_hook[160], arg_shift[64], arg_period[64], arg_deadline[64], arg_hosts[64];
static const char *server_args[] = {arg_hook,
				    arg_shift,
				    arg_period,
				    arg_deadline,
				    arg_hosts,
				    "--hook-status-every-ms=300",
				    "--classes=A100-40G, H200",
				    "--hook-retry-ms-min=100",
				    "--hook-retry-ms-max=400",
				    "--hook-timeout-ms=3000",
				    "--hook-kill-grace-ms=200",
				    NULL};

static struct tserver srv;
static struct tclient op, buyer, seller;
static char dir[64], product[64];

static void write_file(const char *name, const char *text, mode_t mode)
{
	tfile_write(dir, name, text, mode);
}

static char *read_file(const char *name)
{
	return tfile_read(dir, name);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t sql_int(const char *sql)
{
	PGconn *c = pgtest_connect(pgt.owner_url);
	int64_t v = pgtest_sql_int(c, sql);
	PQfinish(c);
	return v;
}

static int64_t ledger_balance(uint32_t participant)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "select balance from ledger.accounts where participant = %u and kind = "
		 "'AVAILABLE'",
		 participant);
	return sql_int(sql);
}

/* The agent's files, the hook, and gridexd with windows that start a few seconds
 * after the fills (the product is 3 hours ahead; its window is shifted back). */
static void setup_agent(void)
{
	signal(SIGPIPE, SIG_IGN);
	tfile_mkdtemp(dir, sizeof(dir), "gridex-leases");
	char path[256], text[2048];
	snprintf(path, sizeof(path), "%s/state", dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	write_file("inventory.json",
		   "[{\"uuid\": \"GPU-aaaa\", \"name\": \"A100\", \"node\": \"/dev/nvidia0\"},\n"
		   " {\"uuid\": \"GPU-bbbb\", \"name\": \"A100\", \"node\": \"/dev/nvidia1\"}]\n",
		   0644);
	write_file("nvidia-smi", "#!/bin/sh\nexit 0\n", 0755);
	snprintf(text, sizeof(text),
		 "{\"state_dir\": \"%s/state\", \"inventory_file\": \"%s/inventory.json\",\n"
		 " \"nvidia_smi\": \"%s/nvidia-smi\", \"pinning\": \"process\", "
		 "\"start_wait_ms\": 200}\n",
		 dir, dir, dir);
	write_file("config.json", text, 0644);
	snprintf(text, sizeof(text),
		 "#!/bin/sh\nenv | sort > %s/env.$GRIDEX_LEASE_ID\necho $$ > "
		 "%s/pid.$GRIDEX_LEASE_ID\n"
		 "exec sleep 60\n",
		 dir, dir);
	write_file("workload", text, 0755);
	snprintf(text, sizeof(text),
		 "#!/bin/sh\necho \"$1\" >> %s/calls\nexec %s --config=%s/config.json \"$@\"\n",
		 dir, GRIDEX_TEST_PROVIDER, dir);
	write_file("hook", text, 0755);
	/* A hook that misbehaves as the file "mode" says (ok, garbage, crash, hang, forge: a
	 * failure whose message holds a quote and a line of its own), keeps its last request of
	 * each op and lease (req.OP.LEASE), logs each call with its lease and attempt (once it
	 * has read its mode: a test that sees the line and then changes the mode changes only
	 * the calls after it), and answers status from "status". */
	snprintf(text, sizeof(text),
		 "#!/bin/sh\nreq=$(cat)\nid=$(echo \"$req\" | sed -n "
		 "'s/.*\"lease_id\":\"\\([^\"]*\\)\".*/\\1/p')\n"
		 "at=$(echo \"$req\" | sed -n 's/.*\"attempt\":\\([0-9]*\\).*/\\1/p')\n"
		 "mode=$(cat %s/mode 2>/dev/null || echo ok)\nprintf '%%s' \"$req\" > "
		 "%s/req.$1.$id\n"
		 "echo \"$1 $id $at\" >> %s/calls\n"
		 "if [ \"$1\" = start ]; then case $mode in\n"
		 " garbage) echo 'not json'; exit 0;;\n crash) kill -9 $$;;\n"
		 " forge) echo hook-stderr >&2; printf '%%s' '{\"version\":1,\"ok\":false,"
		 "\"error\":{\"code\":\"x\","
		 "\"message\":\"a\\\"b\\nts=forged\",\"retryable\":true}}'; exit 1;;\n"
		 " hang) exec sleep 8;;\n esac; fi\n"
		 "st=running; [ \"$1\" = status ] && st=$(cat %s/status 2>/dev/null || echo "
		 "running)\n"
		 "printf '{\"version\":1,\"ok\":true,\"lease_id\":\"%%s\",\"state\":\"%%s\"}' "
		 "\"$id\" \"$st\"\n",
		 dir, dir, dir, dir);
	write_file("badhook", text, 0755);
	/* A hook whose starts take their time: each marks its host busy (a second call for
	 * the same host at once is logged "overlap"), logs "begin", and waits for a second
	 * start to have begun (a call that waits 2 s in vain is logged "alone"); host-a's
	 * then take longer than host-b's, so that host-b's ends while host-a's runs. A
	 * status call marks its host busy too, logs "status", and takes 50 ms. */
	snprintf(text, sizeof(text),
		 "#!/bin/sh\nreq=$(cat)\nd=%s\n"
		 "id=$(echo \"$req\" | sed -n 's/.*\"lease_id\":\"\\([^\"]*\\)\".*/\\1/p')\n"
		 "host=$(echo \"$req\" | sed -n 's/.*\"host\":\"\\([^\"]*\\)\".*/\\1/p')\n"
		 "if [ \"$1\" = start ]; then\n"
		 " mkdir $d/busy.$host 2>/dev/null || echo \"overlap $host\" >> $d/calls\n"
		 " echo \"begin $id $host\" >> $d/calls\n"
		 " n=0; while [ $(grep -c '^begin' $d/calls) -lt 2 ]; do\n"
		 "  n=$((n+1)); [ $n -gt 40 ] && { echo \"alone $id\" >> $d/calls; break; }\n"
		 "  sleep 0.05; done\n"
		 " if [ $host = host-a ]; then sleep 0.6; else sleep 0.1; fi\n"
		 " echo \"start $id $host\" >> $d/calls; rmdir $d/busy.$host\n"
		 "elif [ \"$1\" = status ]; then\n"
		 " mkdir $d/busy.$host 2>/dev/null || echo \"overlap $host\" >> $d/calls\n"
		 " echo \"status $id $host\" >> $d/calls; sleep 0.05; rmdir $d/busy.$host\n"
		 "fi\n"
		 "printf '{\"version\":1,\"ok\":true,\"lease_id\":\"%%s\",\"state\":\"running\"}' "
		 "\"$id\"\n",
		 dir);
	write_file("slowhook", text, 0755);
	snprintf(arg_hook, sizeof(arg_hook), "--hook=%s/%s", dir, hook_file);

	int64_t hour_ms;
	do { /* the product's hour and its start in ms from the same clock reading */
		hour_ms = ((int64_t)(time(NULL) + 3 * 3600) / 3600) * 3600000;
		tproduct(product, sizeof(product), "A100-40G", 3);
	} while (hour_ms != ((int64_t)(time(NULL) + 3 * 3600) / 3600) * 3600000);
	snprintf(arg_shift, sizeof(arg_shift), "--delivery-shift-ms=%lld",
		 (long long)(now_ms() + lead_ms - hour_ms));
	snprintf(arg_period, sizeof(arg_period), "--delivery-period-ms=%d", period);
	snprintf(arg_deadline, sizeof(arg_deadline), "--lease-start-deadline-ms=%d", deadline_ms);
	snprintf(arg_hosts, sizeof(arg_hosts), "--hosts-max=%d", hosts_max);
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	tserver_start(&srv, server_args);

	tclient_market(&srv, &op, &buyer, BUYER, CASH, &seller, SELLER, "A100-40G", 8);
}

static void teardown(void)
{
	tclient_close(&op);
	tclient_close(&buyer);
	tclient_close(&seller);
	int status = tserver_stop(&srv);
	ck_assert_msg(status == 0, "gridexd exit status %d: %s", status, tserver_log(&srv));
	pgtest_teardown();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	hosts_max = 2;
}

static int request(struct tclient *c, Gridex__V1__Request *q)
{
	return tclient_answer(c, tclient_send(c, q, c->sk));
}

/* REGISTER_HOST of a host in class cls. */
static int register_host_in(const char *cls, const char *name, const char *const *devices, size_t n)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	ProtobufCBinaryData d[8];
	for (size_t i = 0; i < n; i++)
		d[i] = (ProtobufCBinaryData){.len = strlen(devices[i]),
					     .data = (uint8_t *)devices[i]};
	q.type = GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST;
	q.name = (ProtobufCBinaryData){.len = strlen(name), .data = (uint8_t *)name};
	q.product = (ProtobufCBinaryData){.len = strlen(cls), .data = (uint8_t *)cls};
	q.vendor = (ProtobufCBinaryData){.len = 6, .data = (uint8_t *)"nvidia"};
	q.n_devices = n;
	q.devices = d;
	return request(&seller, &q);
}

static int register_host(const char *name, const char *const *devices, size_t n)
{
	return register_host_in("A100-40G", name, devices, n);
}

/* WITHDRAW_HOST of host name, sent by c. */
static int withdraw_host(struct tclient *c, const char *name)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST;
	q.name = (ProtobufCBinaryData){.len = strlen(name), .data = (uint8_t *)name};
	return request(c, &q);
}

static int set_workload(const char *json)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__SET_WORKLOAD;
	q.workload = (ProtobufCBinaryData){.len = strlen(json), .data = (uint8_t *)json};
	return request(&buyer, &q);
}

/* The next Lease frame of c about lease id (0: any) in state; other frames are skipped. */
static Gridex__V1__Lease *wait_lease(struct tclient *c, uint64_t id, int state)
{
	for (;;) {
		bool closed;
		Gridex__V1__ServerFrame *f = tclient_recv(c, 15000, &closed);
		ck_assert_msg(f != NULL, "no lease %llu in state %d for account %u (%s): %s",
			      (unsigned long long)id, state, c->account,
			      closed ? "closed" : "timeout", tserver_log(&srv));
		Gridex__V1__Lease *l = f->lease;
		if (l && (id == 0 || l->lease_id == id) && (int)l->state == state) {
			f->lease = NULL;
			gridex__v1__server_frame__free_unpacked(f, NULL);
			return l;
		}
		gridex__v1__server_frame__free_unpacked(f, NULL);
	}
}

static void trade(uint64_t coid, int64_t qty)
{
	ck_assert_int_eq(tclient_answer(&seller, tclient_order(&seller, coid, product,
							       GRIDEX__V1__SIDE__SELL, PRICE, qty)),
			 0);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_order(&buyer, coid, product,
							      GRIDEX__V1__SIDE__BUY, PRICE, qty)),
			 0);
}

static void wait_settled(int64_t transfers)
{
	for (int i = 0; i < 1000; i++) {
		if (sql_int("select count(*) from ledger.transfers where lease_id is not null") >=
		    transfers)
			return;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_abort_msg("escrow not settled: %s", tserver_log(&srv));
}

START_TEST(fill_to_workload_on_the_leased_gpu_and_paid)
{
	/* a host's devices are what its seller may offer */
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY, SELLER,
					  "A100-40G", 0, NULL, NULL),
			 0);
	const char *const devs[] = {"GPU-aaaa", "GPU-bbbb"};
	ck_assert_int_eq(register_host("host-a", devs, 2), 0);
	ck_assert_int_eq(register_host("host-a", devs, 2), 0); /* again: nothing more */
	/* only the classes listed (A100-40G and H200 here) take hosts; two classes can hold
	 * 2 x (24 + 744 + 2) books, more than books_max (1024), and the log says so */
	const char *const other[] = {"GPU-cccc"};
	ck_assert_int_eq(register_host_in("B200", "host-b", other, 1),
			 GRIDEX__V1__REJECT_REASON__BAD_HOST);
	const char *log = tserver_log(&srv);
	ck_assert_msg(strstr(log, "books_max is below what the listed classes can hold") &&
			      strstr(log, "classes=2 hours=770 books_max=1024"),
		      "%s", log);
	ck_assert_int_eq(tclient_answer(&seller, tclient_order(&seller, 9, product,
							       GRIDEX__V1__SIDE__SELL, PRICE, 3)),
			 GRIDEX__V1__REJECT_REASON__INSUFFICIENT_CAPACITY);
	/* the buyer must say what runs before it bids */
	ck_assert_int_eq(tclient_answer(&buyer, tclient_order(&buyer, 1, product,
							      GRIDEX__V1__SIDE__BUY, PRICE, 1)),
			 GRIDEX__V1__REJECT_REASON__BAD_WORKLOAD);
	char json[512];
	snprintf(json, sizeof(json), "{\"command\": [\"%s/workload\"], \"env\": {\"JOB\": \"x\"}}",
		 dir);
	ck_assert_int_eq(set_workload(json), 0);
	trade(2, 1);
	/* both sides hear of the lease: the first device of the host */
	Gridex__V1__Lease *l = wait_lease(&seller, 0, GRIDEX__V1__LEASE_STATE__SCHEDULED);
	ck_assert_uint_eq(l->buyer, BUYER);
	ck_assert_uint_eq(l->seller, SELLER);
	ck_assert_uint_eq(l->n_devices, 1);
	ck_assert_int_eq((int)l->devices[0].len, 8);
	ck_assert_mem_eq(l->devices[0].data, "GPU-aaaa", 8);
	ck_assert_mem_eq(l->host.data, "host-a", 6);
	ck_assert_int_eq(l->end_ms - l->start_ms, PERIOD);
	uint64_t id = l->lease_id;
	gridex__v1__lease__free_unpacked(l, NULL);
	l = wait_lease(&buyer, id, GRIDEX__V1__LEASE_STATE__RUNNING);
	int64_t start_ms = l->start_ms, end_ms = l->end_ms, running_ms = l->running_ms;
	ck_assert_int_ge(running_ms, start_ms);
	gridex__v1__lease__free_unpacked(l, NULL);
	/* the workload saw exactly the leased device, and its own environment */
	char name[64];
	snprintf(name, sizeof(name), "env.L-%012llu", (unsigned long long)id);
	char *env = read_file(name);
	ck_assert_ptr_nonnull(env);
	ck_assert_ptr_nonnull(strstr(env, "CUDA_VISIBLE_DEVICES=GPU-aaaa\n"));
	ck_assert_ptr_null(strstr(env, "GPU-bbbb"));
	ck_assert_ptr_nonnull(strstr(env, "JOB=x\n"));
	snprintf(name, sizeof(name), "pid.L-%012llu", (unsigned long long)id);
	pid_t pid = (pid_t)atoi(read_file(name));
	ck_assert_int_gt(pid, 0);
	/* the window ends: completed, and the workload is gone */
	l = wait_lease(&buyer, id, GRIDEX__V1__LEASE_STATE__COMPLETED);
	ck_assert_int_eq(l->ended_ms, end_ms);
	gridex__v1__lease__free_unpacked(l, NULL);
	for (int i = 0; i < 300 && kill(pid, 0) == 0; i++) {
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_int_ne(kill(pid, 0), 0);
	/* money: the seller gets the share of the window the workload ran, the buyer the rest */
	wait_settled(1);
	int64_t used = end_ms - running_ms, notional = PRICE;
	int64_t paid = notional * used / PERIOD; /* 3e6 x 4e3: no overflow */
	ck_assert_int_eq(ledger_balance(SELLER), paid);
	ck_assert_int_eq(ledger_balance(BUYER), CASH - paid);
	ck_assert_int_eq(sql_int("select balance from ledger.accounts where kind = 'ESCROW'"), 0);
	Gridex__V1__QueryResult *b =
		tclient_query(&seller, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	ck_assert_int_eq(b->balances[0]->available, paid);
	gridex__v1__query_result__free_unpacked(b, NULL);
	b = tclient_query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	ck_assert_int_eq(b->balances[0]->available, CASH - paid);
	gridex__v1__query_result__free_unpacked(b, NULL);
	/* the lease query tells the same story */
	Gridex__V1__QueryResult *q = tclient_query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES);
	ck_assert_uint_eq(q->n_leases, 1);
	ck_assert_int_eq(q->leases[0]->state, GRIDEX__V1__LEASE_STATE__COMPLETED);
	ck_assert_uint_eq(q->leases[0]->n_fill_ids, 1);
	gridex__v1__query_result__free_unpacked(q, NULL);
	ck_assert_int_eq(pgtest_audit(), 0);
	/* one command at a time: no step of the core is worth a line */
	ck_assert_ptr_null(tserver_log_line(&srv, "msg=\"lease commands\""));
}
END_TEST

START_TEST(failed_start_and_missing_devices_are_refunded)
{
	const char *const devs[] = {"GPU-aaaa"};
	ck_assert_int_eq(register_host("host-a", devs, 1), 0);
	/* a workload the agent cannot launch */
	ck_assert_int_eq(set_workload("{\"command\": [\"/nonexistent/job\"]}"), 0);
	trade(1, 2); /* one GPU leased, one without a device */
	Gridex__V1__Lease *l = wait_lease(&buyer, 0, GRIDEX__V1__LEASE_STATE__CANCELLED);
	ck_assert_mem_eq(l->reason.data, "not_enough_devices", 18);
	ck_assert_int_eq(l->quantity, 1);
	gridex__v1__lease__free_unpacked(l, NULL);
	l = wait_lease(&buyer, 0, GRIDEX__V1__LEASE_STATE__FAILED_DELIVERY);
	ck_assert_mem_eq(l->reason.data, "workload_failed", 15);
	gridex__v1__lease__free_unpacked(l, NULL);
	wait_settled(1); /* the escrow back (no fees here: no fee to return) */
	ck_assert_int_eq(ledger_balance(BUYER), CASH);
	ck_assert_int_eq(ledger_balance(SELLER), 0);
	Gridex__V1__QueryResult *b = tclient_query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	ck_assert_int_eq(b->balances[0]->available, CASH);
	gridex__v1__query_result__free_unpacked(b, NULL);
	ck_assert_int_eq(pgtest_audit(), 0);
}
END_TEST

/* gridex_hosts{state="in_service"} and {state="withdrawn"} are in and out. */
static void hosts_are(double in, double out)
{
	int status;
	const char *page = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_int_eq(status, 200);
	double got_in = tmetric(page, "gridex_hosts{state=\"in_service\"}"),
	       got_out = tmetric(page, "gridex_hosts{state=\"withdrawn\"}");
	ck_assert_msg(got_in == in && got_out == out, "gridex_hosts %g and %g, not %g and %g",
		      got_in, got_out, in, out);
}

START_TEST(withdrawn_host_gets_no_leases)
{
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY, SELLER,
					  "A100-40G", 0, NULL, NULL),
			 0);
	const char *const a[] = {"GPU-aaaa"}, *const b[] = {"GPU-bbbb"};
	ck_assert_int_eq(register_host("host-a", a, 1), 0);
	ck_assert_int_eq(register_host("host-b", b, 1), 0);
	/* only the host's seller (or the operator) takes it out of service */
	ck_assert_int_eq(withdraw_host(&buyer, "host-a"), GRIDEX__V1__REJECT_REASON__BAD_HOST);
	ck_assert_int_eq(withdraw_host(&seller, "host-z"), GRIDEX__V1__REJECT_REASON__BAD_HOST);
	ck_assert_int_eq(withdraw_host(&seller, "host-a"), 0);
	ck_assert_int_eq(withdraw_host(&seller, "host-a"), 0); /* again: nothing more */
	hosts_are(1, 1);
	/* its device no longer counts: 1 GPU of capacity, across a restart too */
	ck_assert_int_eq(tserver_stop(&srv), 0);
	tclient_close(&op);
	tclient_close(&buyer);
	tclient_close(&seller);
	tserver_start(&srv, server_args);
	tclient_reconnect(&srv, &op, &buyer, &seller);
	ck_assert_int_eq(tclient_answer(&seller, tclient_order(&seller, 9, product,
							       GRIDEX__V1__SIDE__SELL, PRICE, 2)),
			 GRIDEX__V1__REJECT_REASON__INSUFFICIENT_CAPACITY);
	/* (a workload that fails at once: no process outlives the test) */
	ck_assert_int_eq(set_workload("{\"command\": [\"/nonexistent/job\"]}"), 0);
	hosts_are(1, 1);
	/* the fill goes to host-b, though host-a was registered first */
	trade(1, 1);
	Gridex__V1__Lease *l = wait_lease(&seller, 0, GRIDEX__V1__LEASE_STATE__SCHEDULED);
	ck_assert_int_eq((int)l->host.len, 6);
	ck_assert_mem_eq(l->host.data, "host-b", 6);
	ck_assert_mem_eq(l->devices[0].data, "GPU-bbbb", 8);
	gridex__v1__lease__free_unpacked(l, NULL);
	/* registered again: back in service, its GPU offered once more */
	ck_assert_int_eq(register_host("host-a", a, 1), 0);
	hosts_are(2, 0);
	ck_assert_int_eq(tclient_answer(&seller, tclient_order(&seller, 2, product,
							       GRIDEX__V1__SIDE__SELL, PRICE, 1)),
			 0);
	/* the operator withdraws it: the resting offer stays, no more may be offered */
	ck_assert_int_eq(withdraw_host(&op, "host-a"), 0);
	ck_assert_int_eq(tclient_answer(&seller, tclient_order(&seller, 3, product,
							       GRIDEX__V1__SIDE__SELL, PRICE, 1)),
			 GRIDEX__V1__REJECT_REASON__INSUFFICIENT_CAPACITY);
	/* what that offer sells has no device: host-a is out, host-b's is taken */
	ck_assert_int_eq(tclient_answer(&buyer, tclient_order(&buyer, 2, product,
							      GRIDEX__V1__SIDE__BUY, PRICE, 1)),
			 0);
	l = wait_lease(&buyer, 0, GRIDEX__V1__LEASE_STATE__CANCELLED);
	ck_assert_mem_eq(l->reason.data, "not_enough_devices", 18);
	gridex__v1__lease__free_unpacked(l, NULL);
	wait_settled(1);
	ck_assert_int_eq(pgtest_audit(), 0);
	/* Both places of hosts_max (2) are taken. host-a, which no lease names, makes room
	 * for a new host (and is forgotten: its name is free); host-b, which a lease names,
	 * does not. */
	const char *const c[] = {"GPU-cccc"}, *const d[] = {"GPU-dddd"};
	ck_assert_int_eq(register_host("host-c", c, 1), 0);
	hosts_are(2, 0);
	ck_assert_int_eq(withdraw_host(&seller, "host-a"), GRIDEX__V1__REJECT_REASON__BAD_HOST);
	ck_assert_int_eq(withdraw_host(&seller, "host-b"), 0);
	ck_assert_int_eq(register_host("host-d", d, 1), GRIDEX__V1__REJECT_REASON__REGISTRY_FULL);
	hosts_are(1, 1);
	/* QUERY_HOSTS: host-c in host-a's place, first */
	Gridex__V1__QueryResult *q = tclient_query(&seller, GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS);
	ck_assert_uint_eq(q->n_hosts, 2);
	ck_assert_int_eq((int)q->hosts[0]->name.len, 6);
	ck_assert_mem_eq(q->hosts[0]->name.data, "host-c", 6);
	ck_assert_mem_eq(q->hosts[0]->accelerator.data, "A100-40G", 8);
	ck_assert_uint_eq(q->hosts[0]->n_devices, 1);
	ck_assert_mem_eq(q->hosts[0]->devices[0].data, "GPU-cccc", 8);
	ck_assert(!q->hosts[0]->withdrawn);
	ck_assert_uint_eq(q->hosts[0]->seller, SELLER);
	ck_assert_mem_eq(q->hosts[1]->name.data, "host-b", 6);
	ck_assert(q->hosts[1]->withdrawn);
	gridex__v1__query_result__free_unpacked(q, NULL);
	q = tclient_query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS);
	ck_assert_uint_eq(q->n_hosts, 0);
	gridex__v1__query_result__free_unpacked(q, NULL);
	q = tclient_query(&op, GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS);
	ck_assert_uint_eq(q->n_hosts, 2);
	gridex__v1__query_result__free_unpacked(q, NULL);
}
END_TEST

/* How many lines of the hook's call log start with prefix. */
static int calls(const char *prefix)
{
	char *text = read_file("calls");
	int n = 0;
	for (char *line = text; line && *line;) {
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			n++;
		char *nl = strchr(line, '\n');
		line = nl ? nl + 1 : NULL;
	}
	return n;
}

/* The last 1,500 bytes of the server's log: what a failure message has room for. */
static const char *log_tail(void)
{
	const char *log = tserver_log(&srv);
	size_t len = strlen(log);
	return log + (len > 1500 ? len - 1500 : 0);
}

static void wait_calls(const char *prefix, int n)
{
	for (int i = 0; i < 2000 && calls(prefix) < n; i++) {
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_msg(calls(prefix) >= n, "%d calls \"%s\": ...%s", calls(prefix), prefix,
		      log_tail());
}

static void one_host_and_trade(void)
{
	const char *const devs[] = {"GPU-aaaa"};
	ck_assert_int_eq(register_host("host-a", devs, 1), 0);
	ck_assert_int_eq(set_workload("{\"command\": [\"/bin/true\"]}"), 0);
	trade(1, 1);
}

START_TEST(misbehaving_hook_is_retried_then_refunded)
{
	write_file("mode", "forge\n", 0644);
	one_host_and_trade();
	/* a failure, garbage, then crashes: each retried under the same lease id, attempts
	 * counting up */
	wait_calls("start L-000000000001 2", 1);
	write_file("mode", "garbage\n", 0644);
	wait_calls("start L-000000000001 3", 1);
	write_file("mode", "crash\n", 0644);
	wait_calls("start L-000000000001", 5);
	Gridex__V1__Lease *l = wait_lease(&buyer, 1, GRIDEX__V1__LEASE_STATE__FAILED_DELIVERY);
	ck_assert_int_eq((int)l->reason.len, 19);
	ck_assert_mem_eq(l->reason.data, "not_running_in_time", 19);
	ck_assert_int_eq(l->running_ms, 0);
	gridex__v1__lease__free_unpacked(l, NULL);
	/* (the whole log: retries may have pushed these out of tserver_log's tail) */
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "outcome=bad_output"));
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "outcome=crashed"));
	/* the hook's message is a quoted value of one line: its quote and its line break
	 * are replaced, so it cannot end the value or add a line of its own */
	const char *line = tserver_log_line(&srv, "code=x ");
	ck_assert_ptr_nonnull(line);
	ck_assert_ptr_nonnull(strstr(line, "level=warn msg=\"hook call failed\" op=start"));
	ck_assert_ptr_nonnull(strstr(line, " message=\"a'b'ts=forged\"\n"));
	/* what it wrote to stderr is shown the same way */
	line = tserver_log_line(&srv, "msg=\"hook log\"");
	ck_assert_ptr_nonnull(line);
	ck_assert_ptr_nonnull(strstr(
		line, " op=start lease=L-000000000001 bytes=12 dropped=0 text=\"hook-stderr'\"\n"));
	wait_calls("stop L-000000000001", 1); /* cleaned up on the hook's side */
	wait_settled(1);
	ck_assert_int_eq(ledger_balance(BUYER), CASH);
	ck_assert_int_eq(ledger_balance(SELLER), 0);
	ck_assert_int_eq(pgtest_audit(), 0);
}
END_TEST

START_TEST(restart_between_recorded_and_called_calls_again)
{
	write_file("mode", "hang\n", 0644);
	one_host_and_trade();
	/* the lease is STARTING (journaled) and its start call hangs: the server dies */
	wait_calls("start L-000000000001 1", 1);
	kill(srv.pid, SIGKILL);
	int status;
	waitpid(srv.pid, &status, 0);
	tclient_close(&op);
	tclient_close(&buyer);
	tclient_close(&seller);
	write_file("mode", "ok\n", 0644);
	tserver_start(&srv, server_args);
	tclient_reconnect(&srv, &op, &buyer, &seller);
	Gridex__V1__QueryResult *q = tclient_query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES);
	ck_assert_uint_eq(q->n_leases, 1); /* rebuilt from the journal */
	gridex__v1__query_result__free_unpacked(q, NULL);
	/* a reconcile with the lease that should run, then its start again */
	wait_calls("reconcile", 1);
	wait_calls("start L-000000000001", 2);
	Gridex__V1__Lease *l = wait_lease(&buyer, 1, GRIDEX__V1__LEASE_STATE__RUNNING);
	gridex__v1__lease__free_unpacked(l, NULL);
	l = wait_lease(&buyer, 1, GRIDEX__V1__LEASE_STATE__COMPLETED);
	int64_t used = l->end_ms - l->running_ms;
	gridex__v1__lease__free_unpacked(l, NULL);
	wait_settled(1);
	int64_t paid = (int64_t)PRICE * used / period;
	ck_assert_int_gt(paid, 0);
	ck_assert_int_eq(ledger_balance(SELLER), paid);
	ck_assert_int_eq(ledger_balance(BUYER), CASH - paid);
	ck_assert_int_eq(pgtest_audit(), 0);
}
END_TEST

/* A request the hook kept (req.OP.LEASE), parsed. */
static json_t *load_request(const char *name)
{
	const char *text = read_file(name);
	ck_assert_msg(text != NULL, "no %s", name);
	json_error_t e;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);
	ck_assert_msg(j != NULL, "%s: %s", name, e.text);
	return j;
}

START_TEST(ended_early_is_refunded_for_the_rest)
{
	write_file("mode", "ok\n", 0644);
	one_host_and_trade();
	Gridex__V1__Lease *l = wait_lease(&buyer, 1, GRIDEX__V1__LEASE_STATE__RUNNING);
	gridex__v1__lease__free_unpacked(l, NULL);
	write_file("status", "failed\n", 0644); /* the workload died */
	l = wait_lease(&buyer, 1, GRIDEX__V1__LEASE_STATE__FAILED_DELIVERY);
	/* status calls answered "running" were logged at debug; the one that told of the end
	 * at info */
	const char *line = tserver_log_line(&srv, "op=status");
	ck_assert_msg(line && strstr(line, "level=info") && strstr(line, " state=\"failed\"\n"),
		      "status line: %s", line ? line : "none");
	ck_assert_int_eq((int)l->reason.len, 12);
	ck_assert_mem_eq(l->reason.data, "ended_failed", 12);
	ck_assert_int_lt(l->ended_ms, l->end_ms);
	/* a status request is the lease's start request but for its op and attempt: the
	 * host's devices and the buyer's workload included */
	json_t *start = load_request("req.start.L-000000000001");
	json_t *status = load_request("req.status.L-000000000001");
	ck_assert_str_eq(json_string_value(json_object_get(status, "op")), "status");
	ck_assert_int_eq(json_integer_value(json_object_get(status, "attempt")), 1);
	json_t *want = json_pack("{s:[s], s:{s:[s]}}", "devices", "GPU-aaaa", "workload", "command",
				 "/bin/true");
	ck_assert(json_equal(json_object_get(status, "devices"), json_object_get(want, "devices")));
	ck_assert(
		json_equal(json_object_get(status, "workload"), json_object_get(want, "workload")));
	json_object_set_new(start, "op", json_string("status"));
	json_object_set_new(start, "attempt", json_integer(1));
	char *text = json_dumps(status, JSON_COMPACT);
	ck_assert_msg(json_equal(start, status), "status request %s", text);
	free(text);
	json_decref(want);
	json_decref(start);
	json_decref(status);
	int64_t used = l->ended_ms - l->running_ms;
	gridex__v1__lease__free_unpacked(l, NULL);
	wait_settled(1);
	int64_t paid = (int64_t)PRICE * used / period;
	ck_assert_int_eq(ledger_balance(SELLER), paid);
	ck_assert_int_eq(ledger_balance(BUYER), CASH - paid);
	ck_assert_int_lt(paid, PRICE);
	ck_assert_int_eq(pgtest_audit(), 0);
}
END_TEST

/* The line number of the first line of the hook's call log that starts with prefix, or 0. */
static int line_of(const char *prefix)
{
	char *text = read_file("calls");
	int n = 1;
	for (char *line = text; line && *line; n++) {
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			return n;
		char *nl = strchr(line, '\n');
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

/* Three leases start at once, two on host-a and one on host-b: host-b's start runs
 * beside host-a's first, host-a's second waits for its first. */
START_TEST(hook_calls_run_at_once_one_per_host)
{
	const char *const a[] = {"GPU-aaaa", "GPU-bbbb"}, *const b[] = {"GPU-cccc"};
	ck_assert_int_eq(register_host("host-a", a, 2), 0);
	ck_assert_int_eq(register_host("host-b", b, 1), 0);
	ck_assert_int_eq(set_workload("{\"command\": [\"/bin/true\"]}"), 0);
	for (uint64_t i = 1; i <= 3; i++)
		trade(i, 1); /* leases 1 and 2 on host-a's two devices, 3 on host-b */
	/* the metrics see two calls in flight, never more (host-a's second waits) */
	double most = 0;
	for (int i = 0; i < 1000 && calls("start L-") < 3; i++) {
		int status;
		const char *page = thttp_get(srv.metrics_port, "/metrics", &status);
		double n = tmetric(page, "gridex_hook_calls_in_flight");
		most = n > most ? n : most;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_msg(most == 2, "at most %.0f hook calls in flight", most);
	Gridex__V1__Lease *l = wait_lease(&buyer, 2, GRIDEX__V1__LEASE_STATE__RUNNING);
	gridex__v1__lease__free_unpacked(l, NULL);
	wait_calls("start L-", 3);
	ck_assert_msg(calls("overlap") == 0, "two calls for one host at once: %s",
		      read_file("calls"));
	ck_assert_msg(calls("alone") == 0, "a call ran alone: %s", read_file("calls"));
	ck_assert_int_gt(line_of("begin L-000000000002"), line_of("start L-000000000001"));
	ck_assert_int_lt(line_of("begin L-000000000003"), line_of("start L-000000000001"));
	Gridex__V1__QueryResult *q = tclient_query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES);
	ck_assert_uint_eq(q->n_leases, 3);
	for (size_t i = 0; i < q->n_leases; i++)
		ck_assert_int_eq(q->leases[i]->state, GRIDEX__V1__LEASE_STATE__RUNNING);
	gridex__v1__query_result__free_unpacked(q, NULL);
	/* Every running lease's status is asked again and again (every 300 ms), host-a's
	 * two one after the other. */
	wait_calls("status L-000000000001", 3);
	wait_calls("status L-000000000002", 3);
	wait_calls("status L-000000000003", 3);
	ck_assert_msg(calls("overlap") == 0, "two calls for one host at once: %s",
		      read_file("calls"));
	/* each answered "running": logged at debug, below the log's level */
	ck_assert_ptr_null(tserver_log_line(&srv, "op=status"));
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "msg=\"hook call done\" op=start"));
}
END_TEST

/* 96 leases of one GPU on 12 hosts start at once, one host's after another: the
 * dispatcher's list of jobs gets gaps where other hosts' starts are done while the first
 * hosts' wait, and is compacted while calls are in flight (a call must still find its
 * job). Every lease runs, its start called once. */
START_TEST(many_starts_each_called_once)
{
	enum { HOSTS = 12, GPUS = 8 };
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__DEPOSIT, BUYER, NULL,
					  (int64_t)HOSTS * GPUS * PRICE, NULL, NULL),
			 0);
	char names[HOSTS * GPUS][16];
	const char *devs[GPUS];
	for (int h = 0; h < HOSTS; h++) {
		for (int g = 0; g < GPUS; g++) {
			snprintf(names[h * GPUS + g], sizeof(names[0]), "GPU-%02d-%d", h, g);
			devs[g] = names[h * GPUS + g];
		}
		char host[16];
		snprintf(host, sizeof(host), "host-%02d", h);
		ck_assert_int_eq(register_host(host, devs, GPUS), 0);
	}
	ck_assert_int_eq(set_workload("{\"command\": [\"/bin/true\"]}"), 0);
	for (uint64_t i = 1; i <= HOSTS * GPUS; i++)
		trade(i, 1);
	int running = 0;
	for (int t = 0; t < 300 && running < HOSTS * GPUS; t++) { /* within queries_per_second */
		Gridex__V1__QueryResult *q =
			tclient_query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES);
		ck_assert_uint_eq(q->n_leases, HOSTS * GPUS);
		running = 0;
		for (size_t i = 0; i < q->n_leases; i++)
			running += q->leases[i]->state == GRIDEX__V1__LEASE_STATE__RUNNING;
		gridex__v1__query_result__free_unpacked(q, NULL);
		struct timespec ts = {.tv_nsec = 100000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_msg(running == HOSTS * GPUS, "%d of %d leases running: ...%s", running,
		      HOSTS * GPUS, log_tail());
	ck_assert_int_eq(calls("start "), HOSTS * GPUS);
	for (int i = 1; i <= HOSTS * GPUS; i++) {
		char line[40];
		snprintf(line, sizeof(line), "start L-%012d 1", i);
		ck_assert_int_eq(calls(line), 1);
	}
	/* The window's opening started them in one step of the core (the trades were made
	 * before it), and the log says so, with the core's time for it. */
	const char *line = tserver_log_line(&srv, "msg=\"lease commands\" ");
	const char *at = line ? strstr(line, "msg=") : NULL;
	int starts = 0, stops = -1, updates = 0;
	double core_ms = -1;
	ck_assert_msg(
		at && sscanf(at, "msg=\"lease commands\" starts=%d stops=%d updates=%d core_ms=%lf",
			     &starts, &stops, &updates, &core_ms) == 4,
		"no lease commands line: ...%s", log_tail());
	ck_assert_int_eq(starts, HOSTS * GPUS);
	ck_assert_int_eq(stops, 0);
	ck_assert_int_eq(updates, HOSTS * GPUS);
	ck_assert(core_ms >= 0);
}
END_TEST

/* A server with hook file `hook`: windows of window_ms starting lead ms after set-up,
 * deadline ms to get running. */
static void setup_with(const char *hook, int window_ms, int deadline, int lead)
{
	hook_file = hook;
	period = window_ms;
	deadline_ms = deadline;
	lead_ms = lead;
	setup_agent();
}

/* The slow hook, windows of 6 s starting 3 s after set-up, 5 s to get running. */
static void setup_slow(void)
{
	setup_with("slowhook", 6000, 5000, 3000);
}

/* The misbehaving hook, with the same windows, and room for 16 hosts. */
static void setup_many(void)
{
	hosts_max = 16;
	setup_with("badhook", 6000, 5000, 3000);
}

/* The misbehaving hook, with the same windows. */
static void setup_hooks(void)
{
	setup_with("badhook", 6000, 5000, 3000);
}

static void setup(void)
{
	setup_with("hook", PERIOD, 3000, 5000);
}

/* A case of s whose tests run between fixture (a server) and teardown, 120 s each. */
static TCase *case_of(Suite *s, const char *name, void (*fixture)(void))
{
	TCase *tc = tcase_create(name);
	tcase_add_checked_fixture(tc, fixture, teardown);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *leases_suite(void)
{
	Suite *s = suite_create("leases");
	TCase *tc = case_of(s, "leases", setup);
	tcase_add_test(tc, fill_to_workload_on_the_leased_gpu_and_paid);
	tcase_add_test(tc, failed_start_and_missing_devices_are_refunded);
	tcase_add_test(tc, withdrawn_host_gets_no_leases);
	tc = case_of(s, "hooks", setup_hooks);
	tcase_add_test(tc, misbehaving_hook_is_retried_then_refunded);
	tcase_add_test(tc, restart_between_recorded_and_called_calls_again);
	tcase_add_test(tc, ended_early_is_refunded_for_the_rest);
	tc = case_of(s, "calls", setup_slow);
	tcase_add_test(tc, hook_calls_run_at_once_one_per_host);
	tc = case_of(s, "many", setup_many);
	tcase_add_test(tc, many_starts_each_called_once);
	return s;
}

int main(void)
{
	int skip = pgtest_skip_without_database();
	if (skip)
		return skip;
	return tap_run(leases_suite());
}
