/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libgridex: the C client library of the gridex exchange (docs/client.md).
 *
 * One handle is one TLS 1.3 connection to gridexd, optionally with an account
 * and its Ed25519 key: requests are encoded, signed (nonce and expiry chosen
 * for the caller) and sent; answers, execution reports and market data come
 * back as events, read with gridex_next_event(), which fits a caller's own
 * event loop through gridex_fd(). A local order book (gridex_book) is kept
 * from a snapshot plus updates, with gap detection.
 *
 * Conventions: functions return enum gridex_status (0 = OK) and never abort
 * on bad input; gridex_client_error() tells the details of the last failure.
 * Prices are int64 micro-currency per GPU-hour, quantities GPUs. A handle is
 * not thread-safe: use it from one thread at a time. There is no global state
 * (OpenSSL and libsodium initialise themselves once).
 */
#ifndef GRIDEX_GRIDEX_H
#define GRIDEX_GRIDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRIDEX_MUST_USE __attribute__((warn_unused_result))

enum gridex_status {
	GRIDEX_OK = 0,
	GRIDEX_AGAIN,	 /* no event within the timeout */
	GRIDEX_ERR_ARGS, /* invalid argument, or a request the client cannot encode */
	GRIDEX_ERR_NOMEM,
	GRIDEX_ERR_KEY,	     /* key file missing, unreadable or not an Ed25519 private key */
	GRIDEX_ERR_CONNECT,  /* cannot reach the server */
	GRIDEX_ERR_TLS,	     /* handshake or certificate verification failed */
	GRIDEX_ERR_CLOSED,   /* not connected, or the server closed the connection */
	GRIDEX_ERR_IO,	     /* a read or write failed */
	GRIDEX_ERR_PROTOCOL, /* the server sent something this version cannot read */
	GRIDEX_ERR_TIMEOUT,  /* a send or the handshake did not finish in time */
	GRIDEX_ERR_GAP,	     /* book: an update was missed; subscribe again */
};

enum gridex_side { GRIDEX_BUY = 1, GRIDEX_SELL = 2 };
enum gridex_tif { GRIDEX_GTC = 1, GRIDEX_GTD, GRIDEX_IOC, GRIDEX_FOK, GRIDEX_POST_ONLY };
/* Execution report types, as in docs/protocol.md. */
enum gridex_exec {
	GRIDEX_EXEC_NEW = 1,
	GRIDEX_EXEC_PARTIAL_FILL,
	GRIDEX_EXEC_FILL,
	GRIDEX_EXEC_CANCELED,
	GRIDEX_EXEC_EXPIRED,
	GRIDEX_EXEC_REPLACED,
};

#define GRIDEX_PRODUCT_MAX 63 /* bytes of a product or class name */
#define GRIDEX_TOPICS_MAX  64 /* subscriptions remembered for reconnects */

struct gridex_options {
	const char *host;	 /* default "localhost" */
	uint16_t port;		 /* default 7400 */
	const char *ca_file;	 /* PEM CA bundle; NULL: the system's store */
	const char *server_name; /* name the certificate must carry; default host */
	uint32_t account;	 /* 0: no account (market data only) */
	const char *key_file;	 /* PEM Ed25519 private key (PKCS#8), with account */
	int64_t expiry_ms;	 /* requests expire this long after signing; default 30000 */
	int timeout_ms;		 /* connect, handshake, and each send; default 10000 */
};

typedef struct gridex_client gridex_client;

void gridex_options_default(struct gridex_options *o);

/*
 * Creates a handle (not connected) and loads the key. The strings of o are
 * copied. Errors: ARGS, NOMEM, KEY (with the reason in *out's error when
 * *out could be created; otherwise *out is NULL).
 */
GRIDEX_MUST_USE int gridex_client_new(const struct gridex_options *o, gridex_client **out);
void gridex_client_free(gridex_client *c);		 /* closes; NULL is fine */
const char *gridex_client_error(const gridex_client *c); /* never NULL */

/*
 * Connects (or reconnects: an open connection is closed first) and completes
 * the TLS 1.3 handshake, verifying the certificate against ca_file and
 * server_name; then subscribes again to every topic the handle had.
 * Errors: CONNECT, TLS, TIMEOUT, IO, NOMEM.
 */
GRIDEX_MUST_USE int gridex_connect(gridex_client *c);
void gridex_close(gridex_client *c);
bool gridex_connected(const gridex_client *c);
/* The socket, for poll()/epoll in the caller's loop; -1 when not connected.
 * When it is readable, call gridex_next_event with timeout 0 until it returns
 * GRIDEX_AGAIN: events already read from the socket (the library reads several
 * TLS records at a time) raise no new readiness. */
int gridex_fd(const gridex_client *c);
/* The handle's Ed25519 public key (32 bytes); ARGS without a key. */
GRIDEX_MUST_USE int gridex_public_key(const gridex_client *c, uint8_t out[32]);

/* ---------- requests: each is signed and sent; *nonce (may be NULL) identifies its answer
 * ---------- */

struct gridex_order {
	uint64_t client_order_id; /* not 0; unique among the account's live orders */
	const char *product;	  /* "H100-80G/2026-11-22T19" */
	enum gridex_side side;
	enum gridex_tif tif; /* 0 means GTC */
	int64_t price;	     /* micro-currency per GPU-hour */
	int64_t quantity;    /* GPUs */
	int64_t expire_ms;   /* GTD only: Unix ms */
	uint32_t hours;	     /* > 0: a FOK basket of this many hours from product */
	int self_trade;	     /* 0 default, 1 cancel newest, 2 oldest, 3 both, 4 allow */
};

/* Nonces are max(previous + 1, the clock in microseconds): they increase across
 * processes of the same account as long as the clock does. Errors: ARGS (no
 * account or key, a field out of range), CLOSED, IO, TIMEOUT. */
GRIDEX_MUST_USE int gridex_new_order(gridex_client *c, const struct gridex_order *o,
				     uint64_t *nonce);
GRIDEX_MUST_USE int gridex_cancel(gridex_client *c, uint64_t client_order_id, uint64_t *nonce);
/* scope: a product, an accelerator class, or NULL for every order. */
GRIDEX_MUST_USE int gridex_cancel_all(gridex_client *c, const char *scope, uint64_t *nonce);
GRIDEX_MUST_USE int gridex_modify(gridex_client *c, uint64_t client_order_id, int64_t price,
				  int64_t quantity, uint64_t *nonce);

enum gridex_query {
	GRIDEX_Q_ORDERS = 6,
	GRIDEX_Q_BALANCE = 7,
	GRIDEX_Q_FILLS = 8,
	GRIDEX_Q_LEASES = 9,
	GRIDEX_Q_HOSTS = 19 /* the account's hosts (the operator: every host) */
};
/* The answer is an ACK, then a RESULT event with the same nonce. */
GRIDEX_MUST_USE int gridex_query(gridex_client *c, enum gridex_query q, const char *scope,
				 uint64_t *nonce);
/*
 * The page of an answer after the one whose RESULT had truncated set: cursor is that
 * RESULT's next (0 asks for the first page, as gridex_query() does). Orders, fills,
 * leases and hosts come in pages; a balance does not.
 */
GRIDEX_MUST_USE int gridex_query_page(gridex_client *c, enum gridex_query q, const char *scope,
				      uint64_t cursor, uint64_t *nonce);

enum gridex_op {
	GRIDEX_OP_REGISTER = 10, /* account, name, public_key */
	GRIDEX_OP_DEPOSIT,	 /* account, amount */
	GRIDEX_OP_WITHDRAW,	 /* account, amount */
	GRIDEX_OP_CAPACITY,	 /* account, product (a class), quantity */
	GRIDEX_OP_HALT,		 /* product */
	GRIDEX_OP_RESUME,	 /* product */
};
struct gridex_operator_request {
	enum gridex_op op;
	uint32_t account;
	const char *name;
	const uint8_t *public_key; /* 32 bytes */
	int64_t amount;
	const char *product;
	int64_t quantity;
};
/* Leases (docs/provisioning.md), on a server with a provisioning hook. A seller registers a
 * host: its name, accelerator class, vendor ("nvidia", "amd", "ascend", "cambricon") and
 * device UUIDs (1-16). A buyer sets the workload its leases run: a JSON object
 * {"command": [...], "env": {...}} of at most 768 bytes. Errors: ARGS, CLOSED, IO,
 * TIMEOUT. */
GRIDEX_MUST_USE int gridex_register_host(gridex_client *c, const char *name,
					 const char *accelerator, const char *vendor,
					 const char *const *devices, size_t n_devices,
					 uint64_t *nonce);
GRIDEX_MUST_USE int gridex_set_workload(gridex_client *c, const char *workload_json,
					uint64_t *nonce);
/* Takes a host out of service (its seller, or the operator): no new leases go to it, its
 * devices leave the seller's capacity, its live leases run to their end. Registering it
 * again (the same class, vendor and devices) puts it back. Errors: ARGS, CLOSED, IO,
 * TIMEOUT. */
GRIDEX_MUST_USE int gridex_withdraw_host(gridex_client *c, const char *name, uint64_t *nonce);

/* Only the exchange's operator account may send these. */
GRIDEX_MUST_USE int gridex_operator(gridex_client *c, const struct gridex_operator_request *r,
				    uint64_t *nonce);

/*
 * Pre-signed requests (load generators, batch submitters): while capture is
 * set to out, the request functions above sign their request and append its
 * frame (4-byte length, ClientFrame) to out instead of sending it, with the
 * nonce and expiry of that moment (it expires expiry_ms later);
 * gridex_capture(c, NULL) sends again. gridex_send_raw() sends captured bytes
 * as they are, whole frames at a time. Subscriptions are never captured.
 */
struct gridex_frames {
	uint8_t *data;
	size_t len, cap;
};
void gridex_capture(gridex_client *c, struct gridex_frames *out);
/* Errors: ARGS, CLOSED, IO, TIMEOUT. */
GRIDEX_MUST_USE int gridex_send_raw(gridex_client *c, const uint8_t *frames, size_t len);
void gridex_frames_free(struct gridex_frames *f);

/* Public market data: a product or an accelerator class; remembered for reconnects. */
GRIDEX_MUST_USE int gridex_subscribe(gridex_client *c, const char *topic, bool trades);
GRIDEX_MUST_USE int gridex_unsubscribe(gridex_client *c, const char *topic);

/* ---------- events ---------- */

enum gridex_event_kind {
	GRIDEX_EV_ACK = 1,
	GRIDEX_EV_REJECT,
	GRIDEX_EV_REPORT,
	GRIDEX_EV_SNAPSHOT,
	GRIDEX_EV_UPDATE,
	GRIDEX_EV_TRADE,
	GRIDEX_EV_RESULT,
	GRIDEX_EV_LEASE, /* a lease of the account changed */
};

#define GRIDEX_LEASE_DEVICES_MAX 16
#define GRIDEX_LEASE_FILLS_MAX	 48

enum gridex_lease_state {
	GRIDEX_LEASE_SCHEDULED = 1,
	GRIDEX_LEASE_STARTING,
	GRIDEX_LEASE_RUNNING,
	GRIDEX_LEASE_COMPLETED,
	GRIDEX_LEASE_FAILED_DELIVERY,
	GRIDEX_LEASE_CANCELLED,
};

struct gridex_lease {
	uint64_t lease_id;
	uint32_t buyer, seller;
	char host[32], accelerator[32], vendor[16];
	char devices[GRIDEX_LEASE_DEVICES_MAX][64];
	size_t n_devices;
	int64_t quantity; /* GPUs */
	int64_t start_ms, end_ms;
	enum gridex_lease_state state;
	char reason[32];	      /* FAILED_DELIVERY, CANCELLED: why */
	int64_t running_ms, ended_ms; /* 0: not yet */
	uint64_t fill_ids[GRIDEX_LEASE_FILLS_MAX];
	size_t n_fills;
	uint64_t sequence;
};

/* A registered host, in the RESULT of GRIDEX_Q_HOSTS. */
struct gridex_host {
	char name[32];
	uint32_t seller;
	char accelerator[32], vendor[16];
	char devices[GRIDEX_LEASE_DEVICES_MAX][64];
	size_t n_devices;
	bool withdrawn;	      /* out of service: no new leases */
	uint32_t live_leases; /* leases on it that have not ended */
};

struct gridex_report {
	uint32_t account;
	uint64_t client_order_id, order_id;
	char product[GRIDEX_PRODUCT_MAX + 1];
	enum gridex_side side;
	enum gridex_exec exec_type;
	int64_t price; /* limit */
	int64_t last_price, last_quantity;
	int64_t cumulative_quantity, leaves_quantity;
	uint64_t fill_id;
	int64_t fee;
	uint64_t sequence;
	int64_t time_ms;
};

struct gridex_level {
	int64_t price, quantity;
	uint32_t orders;
};

/* One event. Arrays belong to the event: release them with gridex_event_free(). */
struct gridex_event {
	enum gridex_event_kind kind;
	uint32_t account;  /* ACK, REJECT, RESULT */
	uint64_t nonce;	   /* ACK, REJECT, RESULT */
	uint64_t sequence; /* ACK: the request's; SNAPSHOT, UPDATE, TRADE: the product's */
	int reason;	   /* REJECT: a RejectReason (gridex_reject_name) */
	char detail[128];  /* REJECT: the server's explanation, may be empty */
	struct gridex_report report;	      /* REPORT */
	char product[GRIDEX_PRODUCT_MAX + 1]; /* SNAPSHOT, UPDATE, TRADE */
	struct gridex_level *bids, *asks;     /* SNAPSHOT, best first */
	size_t n_bids, n_asks;		      /* SNAPSHOT */
	enum gridex_side side;		      /* UPDATE; TRADE: the aggressor */
	int64_t price, quantity, time_ms;     /* UPDATE (quantity 0: level gone), TRADE */
	uint32_t orders;		      /* UPDATE */
	struct gridex_report *rows;	      /* RESULT: orders or fills */
	size_t n_rows;			      /* RESULT */
	struct gridex_lease lease;	      /* LEASE */
	struct gridex_lease *leases;	      /* RESULT of a lease query */
	size_t n_leases;
	struct gridex_host *hosts; /* RESULT of a host query */
	size_t n_hosts;
	/* RESULT: the rows are the first ones only (the server's query_rows_max or
	 * query_bytes_max left the others out); next is the cursor that asks for the rest
	 * (gridex_query_page()), 0 when there is none to ask for. */
	bool truncated;
	uint64_t next;
	bool has_balance;	     /* RESULT of a balance query */
	int64_t available, reserved; /* RESULT */
};

/*
 * Waits up to timeout_ms (0: do not wait; -1: forever) for the next event.
 * OK: *ev is filled (free it with gridex_event_free). AGAIN: nothing yet.
 * Errors: CLOSED (the server closed; reconnect with gridex_connect), IO,
 * PROTOCOL (the connection is closed).
 */
GRIDEX_MUST_USE int gridex_next_event(gridex_client *c, int timeout_ms, struct gridex_event *ev);
void gridex_event_free(struct gridex_event *ev);

/* ---------- a local order book from market data ---------- */

typedef struct gridex_book gridex_book;

GRIDEX_MUST_USE int gridex_book_new(const char *product, gridex_book **out);
void gridex_book_free(gridex_book *b);
/*
 * Applies a SNAPSHOT (replaces the book) or UPDATE of the book's product;
 * other events and products are ignored (OK). GAP: an update's sequence is
 * not the next one; the book is marked stale until the next snapshot
 * (subscribe again). PROTOCOL: levels out of order, duplicated or not
 * positive (the book is stale; the server is not to be trusted). Errors:
 * NOMEM, GAP, PROTOCOL.
 */
GRIDEX_MUST_USE int gridex_book_apply(gridex_book *b, const struct gridex_event *ev);
/* Levels of a side, best first; returns how many were written (at most max). */
size_t gridex_book_levels(const gridex_book *b, enum gridex_side side, struct gridex_level *out,
			  size_t max);
uint64_t gridex_book_sequence(const gridex_book *b);
bool gridex_book_ready(const gridex_book *b); /* has a snapshot and no gap since */

/* ---------- helpers ---------- */

/* Writes a new Ed25519 private key as PEM (PKCS#8, mode 0600; refuses to
 * overwrite) and its public key to pub. Errors: ARGS, KEY (cannot write). */
GRIDEX_MUST_USE int gridex_keygen(const char *path, uint8_t pub[32]);
/* The public key of a PEM private key file. Errors: KEY. */
GRIDEX_MUST_USE int gridex_key_public(const char *path, uint8_t pub[32]);

/* "2.45" -> 2450000; at most 6 decimals, > 0. Errors: ARGS. */
GRIDEX_MUST_USE int gridex_parse_price(const char *s, int64_t *micros);
/* 2450000 -> "2.45"; buf of at least 24 bytes. */
void gridex_format_price(int64_t micros, char *buf, size_t len);

const char *gridex_status_name(int status);
const char *gridex_reject_name(int reason); /* "INSUFFICIENT_FUNDS" ... */
const char *gridex_exec_name(int exec_type);
const char *gridex_lease_state_name(int state); /* "RUNNING" ... */

#ifdef __cplusplus
}
#endif

#endif
