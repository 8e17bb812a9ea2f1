/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helpers for gridexd end to end: a throwaway TLS certificate, gridexd
 * as a real child process on a fresh database, and a blocking TLS client that
 * signs requests and reads ServerFrames. Failures are Check assertions.
 */
#ifndef GRIDEX_TESTS_TCLIENT_H
#define GRIDEX_TESTS_TCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "gridex.pb-c.h"

struct tserver {
	pid_t pid;
	char dir[64];			   /* certificate, key, ready file, log */
	int port, metrics_port, http_port; /* http_port: with --http-listen */
	uint8_t op_pk[32], op_sk[64];
	uint32_t op_account;
	bool op_preset; /* op_pk and op_account set by the caller (op_sk unused) */
};

/* GET path from 127.0.0.1:port over plain HTTP/1.0: the whole response (status line,
 * headers, body) in a static buffer; *status gets the status code. */
const char *thttp_get(int port, const char *path, int *status);
/* The same with one more header line ("Name: value"; NULL: none). */
const char *thttp_get_with(int port, const char *path, const char *header, int *status);
/* thttp_get_with over TLS 1.3 to t's port `port`, the server's certificate
 * (t->dir/cert.pem) verified. */
const char *thttps_get(const struct tserver *t, int port, const char *path, const char *header,
		       int *status);
/* The body of such a response (after the blank line). */
const char *thttp_body(const char *response);
/* In a metrics page: the value on the line that starts with name (labels included) and a
 * space; -1 without one. */
double tmetric(const char *page, const char *name);

/* Starts gridexd (path GRIDEX_TEST_GRIDEXD) on pgt's database with extra --key=value args. */
void tserver_start(struct tserver *t, const char *const *extra);
/* SIGTERM and wait; returns the exit status. Fails the test when the server's log has a
 * libevent warning or error. */
int tserver_stop(struct tserver *t);
/* Removes the stopped server's journal: the next start begins a new one from the
 * ledger (what a restart under other core settings needs). */
void tserver_forget_journal(struct tserver *t);
/* The server's log (for failure messages); static buffer. */
const char *tserver_log(const struct tserver *t);
/* The first line of the server's whole log that contains text (cut to 255 bytes), or
 * NULL. */
const char *tserver_log_line(const struct tserver *t, const char *text);

struct tclient {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	uint32_t account;
	uint8_t pk[32], sk[64];
	uint64_t nonce;
	int rcvbuf;   /* SO_RCVBUF set before connecting when > 0 */
	uint8_t from; /* > 0: connect from 127.0.0.<from> (another address to the server) */
};

void tclient_connect(struct tclient *c, const struct tserver *t);
void tclient_close(struct tclient *c);
void tclient_keys(struct tclient *c, uint32_t account); /* fresh Ed25519 key pair */

/* Sends raw bytes; false when the connection is gone. */
bool tclient_write(struct tclient *c, const void *buf, size_t len);
/* Sends a frame with this body. */
bool tclient_send_frame(struct tclient *c, const uint8_t *body, size_t len);
/* Signs q (filling account, nonce and expiry when 0) with sk and sends it; returns its nonce. */
uint64_t tclient_send(struct tclient *c, Gridex__V1__Request *q, const uint8_t sk[64]);
/* The packed ClientFrame of a signed q (for replays); returns its length. */
size_t tclient_pack(struct tclient *c, Gridex__V1__Request *q, const uint8_t sk[64], uint8_t *out,
		    size_t cap);
void tclient_subscribe(struct tclient *c, const char *topic, bool trades);

/* Next frame within timeout_ms, or NULL (timeout or closed: *closed says which). */
Gridex__V1__ServerFrame *tclient_recv(struct tclient *c, int timeout_ms, bool *closed);
/* Waits for the ACK or REJECT of nonce, skipping (and freeing) other frames; returns the
 * reject reason, or 0 for an ACK. */
int tclient_answer(struct tclient *c, uint64_t nonce);
/* Skips frames until one matches pred; returns it (caller frees) or fails the test. */
Gridex__V1__ServerFrame *tclient_until(struct tclient *c,
				       bool (*pred)(const Gridex__V1__ServerFrame *f, void *ctx),
				       void *ctx);

/* "CLS/YYYY-MM-DDTHH": the UTC hour hours_ahead from now. */
void tproduct(char *out, size_t len, const char *cls, int hours_ahead);

/*
 * A two-sided market on t: op connected with t's operator key; buyer (account
 * b, fresh keys) registered as "buyer" and given cash; seller (account s)
 * registered as "seller" with capacity GPUs of class cls. All three connected.
 */
void tclient_market(const struct tserver *t, struct tclient *op, struct tclient *buyer, uint32_t b,
		    int64_t cash, struct tclient *seller, uint32_t s, const char *cls,
		    int64_t capacity);
/* Connects op (with t's operator key), buyer and seller again (after a restart). */
void tclient_reconnect(const struct tserver *t, struct tclient *op, struct tclient *buyer,
		       struct tclient *seller);

/* Operator requests from t's operator key over c (which must use it). */
int tclient_operator(struct tclient *op, uint32_t type, uint32_t target, const char *product,
		     int64_t amount_or_qty, const uint8_t *public_key, const char *name);

/* A GTC limit order on product (product must outlive the request). */
Gridex__V1__Request tclient_order_req(uint64_t coid, const char *product, int side, int64_t price,
				      int64_t qty);
/* Sends tclient_order_req(...) signed with c's key; returns its nonce. */
uint64_t tclient_order(struct tclient *c, uint64_t coid, const char *product, int side,
		       int64_t price, int64_t qty);
/* Sends a query of type, checks its ACK, returns its QueryResult (caller frees). */
Gridex__V1__QueryResult *tclient_query(struct tclient *c, uint32_t type);

#endif
