/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridexd's moving parts and the messages between them (internal to
 * server/). One direction, bounded queues:
 *
 *   I/O thread (libevent: TLS, framing, decoding, limits, fan-out)
 *     --vin[i]-->   verifier thread i (Ed25519), each request to the least busy lane
 *     --vout[i]-->  journal thread (arrival order, sequence numbers, append,
 *                   group fdatasync)
 *     --core_q-->   core thread (srv_core: risk + matching, in sequence)
 *     --out_q-->    back to the I/O thread (replies, reports, market data)
 *     --writer_q--> ledger thread (settlement batches, operator actions)
 *   I/O thread --api_feed--> HTTP API thread (market data for its copy)
 *
 * The I/O thread owns connections and subscriptions; the core thread owns
 * srv_core; the ledger thread owns the database connection; the HTTP API's
 * thread owns its connections and its copy of the market. Account keys
 * are read by verifiers and written by the core under keys_lock.
 */
#ifndef GRIDEX_SRV_SERVER_H
#define GRIDEX_SRV_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "matching.h"
#include "srv_auth.h"
#include "srv_config.h"
#include "srv_core.h"
#include "srv_cpus.h"
#include "srv_queue.h"
#include "srv_wjob.h"

#define SRV_REQUEST_TYPES 20 /* RequestType values 0 .. 19 */
#define SRV_REASONS	  34 /* RejectReason values; 0 counts accepted requests */

/* I/O -> verifier -> core. */
enum srv_job_kind {
	SRV_JOB_REQUEST = 1,
	SRV_JOB_SUBSCRIBE,
	SRV_JOB_TICK,  /* the journal's clock tick */
	SRV_JOB_SKIP,  /* a request the verifier refused: keeps the lanes in step */
	SRV_JOB_LEASE, /* the outcome of a hook call, journaled */
};

/* dispatcher -> journal: what a hook call said about a lease. */
struct srv_lease_event {
	uint64_t lease_id;
	uint8_t kind; /* enum srv_lease_event_kind */
	char code[32];
};

/* When a request passed each stage (monotonic ns; 0: not reached), for the latency
 * histograms by stage (gridex_request_stage_seconds). */
struct srv_stamps {
	int64_t in;	   /* its frame decoded by the I/O thread */
	int64_t verified;  /* its verifier's batch done */
	int64_t journaled; /* the fdatasync covering it returned */
	int64_t core;	   /* the core answered it */
};

enum srv_stage {
	SRV_STAGE_VERIFY,  /* in -> verified: waiting for a verifier, verification */
	SRV_STAGE_JOURNAL, /* verified -> journaled: its turn, append, group fdatasync */
	SRV_STAGE_CORE,	   /* journaled -> core: the core's queue, risk and matching */
	SRV_STAGE_DELIVER, /* core -> written: the I/O thread's queue, encoding, TLS */
	SRV_STAGE_TOTAL,   /* in -> written */
	SRV_STAGE_SYNC,	   /* not a request's stage: each journal write + fdatasync */
	SRV_STAGES
};
#define SRV_STAGE_BUCKETS 14 /* bounds in srv_stage_bounds_ns, then +Inf */
extern const int64_t srv_stage_bounds_ns[SRV_STAGE_BUCKETS - 1];
#define SRV_SETTLE_BUCKETS 13 /* bounds in srv_settle_bounds_ns, then +Inf */
extern const int64_t srv_settle_bounds_ns[SRV_SETTLE_BUCKETS - 1];

struct srv_job {
	uint8_t kind;
	bool trades;	  /* SUBSCRIBE: the trade tape too */
	bool unsubscribe; /* SUBSCRIBE: an Unsubscribe, kept in order with the others */
	uint64_t conn;
	uint64_t seq;			       /* REQUEST, TICK: set by the journal thread */
	int64_t time_ms;		       /* REQUEST, TICK: the journaled time */
	struct srv_stamps t;		       /* REQUEST */
	char topic[SRV_PRODUCT_BYTES_MAX + 1]; /* SUBSCRIBE */
	struct srv_lease_event lease;	       /* LEASE */
	struct srv_request req;		       /* REQUEST */
};

/* core or verifier -> I/O. */
enum srv_out_kind {
	SRV_OUT_REPLY = 1,  /* report: ACK or REJECT, to conn */
	SRV_OUT_EXEC,	    /* report: to every session of report.account */
	SRV_OUT_MD,	    /* md: to the product's and its class's subscribers */
	SRV_OUT_BLOB,	    /* encoded frames to conn (query results) */
	SRV_OUT_SUBSCRIBED, /* encoded snapshots to conn, then it joins topic (or leaves it) */
	SRV_OUT_ACCT_BLOB,  /* encoded frames to every session of u.report.account */
	SRV_OUT_HALT,	    /* product halted (halted) or resumed: the HTTP API's copy */
	SRV_OUT_RETIRED,    /* product's book retired: the HTTP API's copy forgets it */
};

struct srv_out {
	uint8_t kind;
	bool trades;
	bool unsubscribe;      /* SUBSCRIBED: conn leaves the topic */
	bool halted;	       /* HALT */
	uint32_t request_type; /* REPLY: for metrics */
	uint64_t conn;
	uint64_t sequence; /* REPLY, EXEC: the request's sequence number */
	int64_t time_ms;
	struct srv_stamps t; /* REPLY */
	union {
		struct srv_report report;
		struct srv_md md;
	} u;
	char product[MATCHING_PRODUCT_NAME_MAX + 1]; /* EXEC, MD; SUBSCRIBED: the topic */
	uint8_t *blob;				     /* BLOB, SUBSCRIBED; freed by the I/O */
	size_t blob_len;
};

/* core -> dispatcher: one hook call to make (and retry) for a lease. */
enum srv_hookjob_kind {
	SRV_HJ_START = 1,
	SRV_HJ_STOP,
	SRV_HJ_RECONCILE, /* leases: every lease that should run, each as a START */
};

struct srv_hookjob {
	uint8_t kind;
	uint64_t lease_id;
	int64_t start_ms, end_ms;
	char host[SRV_ACCOUNT_NAME_BYTES_MAX + 1];
	char accelerator[MATCHING_CLASS_NAME_MAX + 1];
	char vendor[SRV_VENDOR_BYTES_MAX + 1];
	uint32_t n_devices;
	char devices[SRV_HOST_DEVICES_MAX][SRV_DEVICE_BYTES_MAX + 1];
	char workload[SRV_WORKLOAD_BYTES_MAX + 1]; /* "" when the buyer set none */
	struct srv_hookjob *leases;		   /* RECONCILE (malloc'ed) */
	size_t n_leases;
};

struct srv_metrics {
	atomic_uint_fast64_t connections_open, connections_accepted;
	atomic_uint_fast64_t refused_full, refused_per_ip, refused_draining;
	atomic_uint_fast64_t closed_protocol, closed_slow, closed_timeout;
	atomic_uint_fast64_t accept_errors; /* accept() failed: descriptors or memory used up */
	atomic_uint_fast64_t refused_unverified; /* verify_failures_per_ip_* used up */
	atomic_uint_fast64_t verified_known;	 /* verified as a known pair only */
	atomic_uint_fast64_t frames_in, frames_out, bytes_in, bytes_out;
	atomic_uint_fast64_t requests[SRV_REQUEST_TYPES][SRV_REASONS];
	atomic_uint_fast64_t subscriptions;
	atomic_uint_fast64_t orders_resting, books, fills, sequence;
	atomic_uint_fast64_t batches, batch_fills_last, batch_fills_total, settlement_lag_ms;
	atomic_uint_fast64_t settlement_retries, settlement_errors, settlement_pending;
	/* The ledger refused an item or a batch: new orders, baskets and modifies are
	 * refused SETTLEMENT_HALTED until it takes it (the ledger thread sets it). */
	atomic_bool settlement_halted;
	atomic_uint_fast64_t journal_syncs, journal_records, journal_sync_ms_last;
	atomic_uint_fast64_t snapshots, snapshot_pause_ms_last;
	atomic_uint_fast64_t hook_calls[6];  /* by enum srv_hook_outcome */
	atomic_uint_fast64_t leases[7];	     /* live, by enum srv_lease_state */
	atomic_uint_fast64_t hosts[2];	     /* in service, withdrawn */
	atomic_uint_fast64_t hook_pending;   /* jobs waiting or to retry, not in flight */
	atomic_uint_fast64_t hook_in_flight; /* hook calls being made */
	/* Answers by stage and duration (the I/O thread; SYNC: the journal thread). */
	atomic_uint_fast64_t stage_count[SRV_STAGES][SRV_STAGE_BUCKETS];
	atomic_uint_fast64_t stage_sum_ns[SRV_STAGES];
	/* Settlement batches by the age of their oldest item at commit (the ledger thread). */
	atomic_uint_fast64_t settle_count[SRV_SETTLE_BUCKETS];
	atomic_uint_fast64_t settle_sum_ns;
};

struct srv_provision;
struct srv_http_conns;

/* A listening port: when accept() fails (file descriptors or memory used up) it
 * stops accepting for accept_retry_ms instead of retrying at once (srv_io.c); an
 * HTTP port also while http_connections_max of its connections are open
 * (srv_http.c). */
struct srv_port {
	struct srv *s;
	struct evconnlistener *l;
	struct event *retry;
	const char *name;
	int64_t logged_ms;	     /* the last warning; one per 10 s */
	uint64_t failures;	     /* since then */
	struct srv_http_conns *http; /* an HTTP port's open connections; NULL: the order port */
};
#define SRV_PORTS 3 /* orders, metrics, HTTP API */

struct srv_conn;
struct srv_topic;
struct srv_buckets;
struct srv_api_feed;
struct srv_history;

struct srv {
	struct srv_config cfg;
	struct srv_metrics m;
	struct srv_cpus verifier_cpus; /* verifier_cpus, planned at start */
	/* threads and queues */
	/* Verification keeps arrival order: each request goes to one lane (vin), its
	 * verifier passes it on in that lane (vout), and the journal thread takes them in
	 * arrival order, reading which lane holds the next one from `order`. A slow
	 * verifier delays the others' results but never lets a later request overtake
	 * an earlier one (time priority, and the nonce window of an account with many
	 * requests in flight). */
	struct srv_queue *vin, *vout;
	/* The lane of each request in arrival order, for the journal thread: the I/O
	 * thread gives a request to the least busy lane (the first of equals), so a
	 * light load wakes one verifier, not all of them. */
	pthread_mutex_t order_lock;
	pthread_cond_t order_cond;
	uint8_t *order;
	uint64_t order_cap, order_head, order_tail;
	bool order_waiting, order_closed;
	struct srv_queue core_q, out_q, writer_q;
	pthread_t *verifiers, journal_thread, core_thread, writer_thread;
	void *lane_args;	     /* each verifier's lane */
	struct srv_journal *journal; /* the journal thread appends; start-up replays */
	int64_t journal_last_ms;     /* time of the last journaled record */
	atomic_int verifiers_alive;
	atomic_bool core_done, writer_done;
	pthread_rwlock_t keys_lock;
	struct srv_core *core; /* owned by the core thread once it runs */
	int64_t seq_base;      /* sequence numbers continue above the ledger's */
	/* Every settlement item below it is in the ledger (the ledger thread moves it). */
	atomic_int_fast64_t settled_seq;
	/* The id of the last batch the ledger thread committed (at start, the ledger's
	 * last): stored before settled_seq, so whoever reads settled_seq and then this
	 * sees the batch that holds the items below it. Snapshots keep it. */
	atomic_int_fast64_t settled_batch;
	/* Start-up waits until the journal and core threads have allocated their
	 * buffers (hundreds of MiB for the configured maxima): ready means ready. */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	int start_pending;
	/* Snapshots: the core thread fills buf and sets busy; the snapshot thread writes
	 * it, prunes old snapshots, archives covered segments and clears busy. */
	pthread_t snap_thread;
	pthread_mutex_t snap_lock;
	pthread_cond_t snap_cond;
	struct srv_snap_w *snap_buf;
	uint64_t snap_seq;
	bool snap_busy, snap_stop;
	struct srv_wjob *resent; /* start-up's items for the ledger, for the core's list */
	size_t n_resent;
	struct ledger *lock;	    /* holds the writer lock until the writer adopts it */
	struct srv_provision *prov; /* the hook dispatcher; NULL with leases off */
	/* The HTTP API, served by a thread of its own (srv_http.c) from its copy of the
	 * market, which the I/O thread feeds. */
	struct srv_market *market;	     /* the API's copy of the market (API thread) */
	struct evhttp *api;		     /* the HTTP API; NULL when http_listen is empty */
	struct event_base *api_base;	     /* the API thread's loop */
	struct srv_api_feed *api_feed;	     /* market data from the I/O thread, and the thread */
	struct srv_ledger_view *ledger_view; /* the operator's trial balance, refreshed */
	struct srv_http_limit *api_limit;    /* requests per address (API thread) */
	struct srv_history *history;	     /* /history's queries; NULL: off (srv_history.h) */
	evutil_socket_t api_fd;
	/* I/O */
	struct event_base *base;
	struct event *notify, *sig_term, *sig_int, *sig_hup, *drain_timer;
	struct evconnlistener *listener;
	struct srv_port ports[SRV_PORTS];
	size_t n_ports;
	struct evhttp *http;
	evutil_socket_t metrics_fd;
	SSL_CTX *tls;
	struct srv_conn *conns;
	uint32_t *free_conns, n_free;
	uint32_t *dirty, n_dirty; /* connections with output for this loop turn */
	struct event *flush_ev;	  /* writes them, after the callbacks of the turn */
	struct srv_iptable *ips;
	struct srv_buckets *fails; /* failed verifications by IP address */
	struct srv_buckets *known; /* and by known (address, account) pair */
	struct event *fails_sweep; /* forgets addresses whose allowance is whole again */
	struct srv_acctable *accts;
	struct srv_topics *topics;
	bool draining;
	int64_t drain_deadline_ms;
	int exit_code;
};

/* srv_pipeline.c: the verification lanes (I/O thread: push, close; depths: any thread). */
__attribute__((warn_unused_result)) int srv_lanes_init(struct srv *s);
void srv_lanes_destroy(struct srv *s);
bool srv_verify_push(struct srv *s, const struct srv_job *job); /* false: full */
void srv_verify_close(struct srv *s);
size_t srv_verify_depth(struct srv *s);
size_t srv_verified_depth(struct srv *s);
/* Once every verifier is done: lets the journal thread finish. */
void srv_verified_close(struct srv *s);
bool srv_verified_drained(struct srv *s);

/* srv_pipeline.c: the worker threads. */
/* Plans s->verifier_cpus from the setting and the CPUs gridexd may run on; false with
 * the reason in err when a CPU named is not one of them. */
bool srv_verifier_cpus(struct srv *s, char *err, size_t err_len);
__attribute__((warn_unused_result)) int srv_pipeline_start(struct srv *s);
void srv_pipeline_join(struct srv *s);
int64_t srv_now_ms(void);  /* wall clock, Unix ms */
int64_t srv_mono_ms(void); /* monotonic */
int64_t srv_mono_ns(void);
/* Names the calling thread (at most 15 bytes; `top -H`, `ps -L`, /proc/PID/task/TID/comm):
 * gx-verify-N, gx-journal, gx-core, gx-ledger, gx-snapshot, gx-hooks, gx-ledger-view;
 * the I/O thread keeps the process's name. */
void srv_thread_name(const char *name);
/* Counts one duration into the stage histogram (any thread). */
void srv_stage_count(struct srv_metrics *m, enum srv_stage st, int64_t ns);

/* gridexd.c: the core with the operator's key, its engine clock starting at start_ms. */
int srv_core_make(struct srv *s, int64_t start_ms);
/* srv_recover.c: the writer lock, then a new journal, or the newest usable snapshot and
 * the replay of the journal after it. */
__attribute__((warn_unused_result)) int srv_recover(struct srv *s);
struct srv_jrec;
/* A journal's GENESIS record: the core (clock at its time) with its participants.
 * -1 with the reason in *error. Also used by the offline journal tools. */
int srv_genesis_load(struct srv *s, const struct srv_jrec *genesis, const char **error);
/* Applies a TICK or REQUEST record to the core, as the live core did (req receives the
 * decoded request). -1 with the reason in *error. */
int srv_replay_apply(struct srv_core *c, const struct srv_jrec *rec, struct srv_request *req,
		     struct srv_core_out *out, const char **error);

/* A journal segment: journal_dir/journal-<first> or journal_dir/archive/journal-<first>. */
struct srv_segment {
	uint64_t first;
	bool archived;
	char path[SRV_CONFIG_TEXT_MAX + 48];
};
/* Every segment of dir (live and archived), by first sequence. -1 with errno. */
int srv_segments_list(const char *dir, struct srv_segment **out, size_t *n);

/* srv_provision.c: the hook dispatcher thread (leases on). */
__attribute__((warn_unused_result)) int srv_provision_start(struct srv *s);
/* The core thread's hook jobs: srv_provision_job() gives the next place to fill (NULL
 * without a hook), in a block of the core's own; srv_provision_flush() hands the jobs
 * filled to the dispatcher, which owns RECONCILE lists from there. */
struct srv_hookjob *srv_provision_job(struct srv *s);
void srv_provision_flush(struct srv *s);
/* Outcomes for the journal, oldest first, up to max; 0 when none (the journal thread). */
size_t srv_provision_events(struct srv *s, struct srv_lease_event *out, size_t max);
/* Stops the dispatcher (calls in progress finish) and frees it. */
void srv_provision_stop(struct srv *s);

/* srv_io.c: "host:port" (port 0: any) into its parts; false when it is not one. */
bool srv_split_host_port(const char *addr, char *host, size_t host_len, uint16_t *port);
/* Pauses listener l (named in the log) for accept_retry_ms when accept() fails, on the
 * loop of l's thread; -1 when out of memory or ports. */
__attribute__((warn_unused_result)) int srv_port_guard(struct srv *s, struct evconnlistener *l,
						       const char *name);
/* Stops p accepting; it looks again after accept_retry_ms. */
void srv_port_pause(struct srv_port *p);

/* srv_http.c: the HTTP API, on a thread of its own. init runs at start-up before the
 * core thread does: it copies the recovered books from s->core, then starts the API's
 * thread. free stops it; its loop (s->api_base) is freed after the ports. */
__attribute__((warn_unused_result)) int srv_http_init(struct srv *s);
void srv_http_free(struct srv *s);
/* I/O thread: market data (MD, HALT and RETIRED items) for the API's copy of the market,
 * staged; flush passes what is staged to the API's thread (waiting, when
 * http_market_queue_max items wait there already, until it has taken some). */
void srv_http_market(struct srv *s, const struct srv_out *o);
void srv_http_market_flush(struct srv *s);
/* Whether req carries "Authorization: Bearer <token>" (token not empty; compared in
 * constant time). */
bool srv_http_bearer_ok(struct evhttp_request *req, const char *token);
/* Answers req with code and reason and the JSON text (a line; NULL: 500 without a body),
 * with the API's headers (no caching, application/json). API thread. */
void srv_http_reply_text(struct evhttp_request *req, int code, const char *reason,
			 const char *text);
/* Makes bound, evhttp http's socket, an HTTP port of gridexd (the API's or /metrics',
 * named in the log by name): guarded as srv_port_guard does; GET only, no body, headers
 * up to http_headers_bytes_max, http_timeout_ms; at most http_connections_max
 * connections open; with tls, TLS 1.3 with the server's certificate. -1 when out of
 * memory or ports. */
__attribute__((warn_unused_result)) int srv_http_port(struct srv *s, struct evhttp *http,
						      struct evhttp_bound_socket *bound,
						      const char *name, bool tls);
/* Whether HTTP port p may accept another connection: fewer than http_connections_max
 * open (the closed ones found first). */
bool srv_http_room(struct srv_port *p);
/* With HTTP port p full and a connection waiting in its backlog: shuts down its oldest
 * connection when that is http_evict_after_ms old (0: never), so that the next look
 * finds room. */
void srv_http_make_room(struct srv_port *p);
/* The HTTP ports' metrics (any thread): open connections, as each port's thread last
 * looked (every second at least); those refused and evicted; times full; the API's. */
void srv_http_port_metrics(struct srv *s, struct evbuffer *b);
/* Frees what srv_http_port gave p (after its evhttp is freed). */
void srv_http_port_free(struct srv_port *p);

/* srv_io.c: the I/O thread. */
__attribute__((warn_unused_result)) int srv_io_init(struct srv *s);
void srv_io_free(struct srv *s);
/* Wakes the I/O thread: out_q has items. Any thread. */
void srv_io_notify(struct srv *s);

#endif
