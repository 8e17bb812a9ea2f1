/* SPDX-License-Identifier: Apache-2.0 */
/* libgridex: connection, signing, requests and events (include/gridex/gridex.h). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "gridex.pb-c.h"
#include "gridex/gridex.h"
#include "gridex_internal.h"

#define DOMAIN	     "gridex/v1/request"
#define DOMAIN_BYTES 18 /* with its NUL */
#define BODY_MAX     1024
#define FRAME_MAX    (16u << 20) /* what the client accepts from the server */
#define READ_CHUNK   16384

struct topic {
	char name[GRIDEX_PRODUCT_MAX + 1];
	bool trades;
};

struct gridex_client {
	char *host, *ca_file, *server_name;
	uint16_t port;
	uint32_t account;
	int64_t expiry_ms;
	int timeout_ms;
	bool has_key;
	uint8_t pk[32], sk[64];
	uint64_t last_nonce;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	uint8_t *in; /* bytes received, not yet parsed */
	size_t in_len, in_cap;
	struct topic topics[GRIDEX_TOPICS_MAX];
	size_t n_topics;
	struct gridex_frames *capture; /* set: requests are appended here, not sent */
	char err[256];
};

static int fail(gridex_client *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(gridex_client *c, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return status;
}

static int64_t now_ms(int clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gridex_options_default(struct gridex_options *o)
{
	*o = (struct gridex_options){
		.host = "localhost", .port = 7400, .expiry_ms = 30000, .timeout_ms = 10000};
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int gridex_client_new(const struct gridex_options *o, gridex_client **out)
{
	*out = NULL;
	if (o == NULL || o->host == NULL || o->port == 0 || o->expiry_ms < 1 || o->timeout_ms < 1 ||
	    (o->account != 0) != (o->key_file != NULL))
		return GRIDEX_ERR_ARGS;
	if (sodium_init() < 0)
		return GRIDEX_ERR_NOMEM;
	gridex_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return GRIDEX_ERR_NOMEM;
	c->fd = -1;
	c->host = strdup(o->host);
	c->ca_file = dup_or_null(o->ca_file);
	c->server_name = strdup(o->server_name ? o->server_name : o->host);
	c->port = o->port;
	c->account = o->account;
	c->expiry_ms = o->expiry_ms;
	c->timeout_ms = o->timeout_ms;
	if (!c->host || !c->server_name || (o->ca_file && !c->ca_file)) {
		gridex_client_free(c);
		return GRIDEX_ERR_NOMEM;
	}
	*out = c;
	if (o->key_file) {
		uint8_t seed[32];
		int rc = gridex_key_seed(o->key_file, seed, c->err, sizeof(c->err));
		if (rc)
			return rc;
		crypto_sign_seed_keypair(c->pk, c->sk, seed);
		sodium_memzero(seed, sizeof(seed));
		c->has_key = true;
	}
	return GRIDEX_OK;
}

void gridex_close(gridex_client *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->ctx) {
		SSL_CTX_free(c->ctx);
		c->ctx = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->in_len = 0;
}

void gridex_client_free(gridex_client *c)
{
	if (c == NULL)
		return;
	gridex_close(c);
	sodium_memzero(c->sk, sizeof(c->sk));
	free(c->host);
	free(c->ca_file);
	free(c->server_name);
	free(c->in);
	free(c);
}

const char *gridex_client_error(const gridex_client *c)
{
	return c ? c->err : "no handle";
}

bool gridex_connected(const gridex_client *c)
{
	return c->ssl != NULL;
}

int gridex_fd(const gridex_client *c)
{
	return c->ssl ? c->fd : -1;
}

int gridex_public_key(const gridex_client *c, uint8_t out[32])
{
	if (!c->has_key)
		return GRIDEX_ERR_ARGS;
	memcpy(out, c->pk, 32);
	return GRIDEX_OK;
}

/* Waits for fd to become readable or writable until the monotonic deadline. */
static int wait_fd(int fd, bool write, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline < 0 ? -1 : deadline - now_ms(CLOCK_MONOTONIC);
		if (deadline >= 0 && left <= 0)
			return GRIDEX_ERR_TIMEOUT;
		struct pollfd p = {.fd = fd, .events = write ? POLLOUT : POLLIN};
		int r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (r > 0)
			return GRIDEX_OK;
		if (r == 0)
			return GRIDEX_ERR_TIMEOUT;
		if (errno != EINTR)
			return GRIDEX_ERR_IO;
	}
}

static int tcp_connect(gridex_client *c, int64_t deadline)
{
	char port[8];
	snprintf(port, sizeof(port), "%u", c->port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	int g = getaddrinfo(c->host, port, &hints, &ai);
	if (g != 0)
		return fail(c, GRIDEX_ERR_CONNECT, "%s: %s", c->host, gai_strerror(g));
	int rc = GRIDEX_ERR_CONNECT;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				a->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EINPROGRESS &&
		    wait_fd(fd, true, deadline) == GRIDEX_OK) {
			int e = 0;
			socklen_t el = sizeof(e);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
			errno = e;
		}
		int e = errno;
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			c->fd = fd;
			rc = GRIDEX_OK;
			break;
		}
		close(fd);
		fail(c, GRIDEX_ERR_CONNECT, "%s:%u: %s", c->host, c->port,
		     strerror(e ? e : ETIMEDOUT));
	}
	freeaddrinfo(ai);
	return rc;
}

static int tls_error(gridex_client *c, int status, const char *what)
{
	char buf[200] = "";
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
	if (v != X509_V_OK)
		snprintf(buf, sizeof(buf), "certificate: %s", X509_verify_cert_error_string(v));
	ERR_clear_error();
	return fail(c, status, "%s: %s", what, buf[0] ? buf : "failed");
}

static int resubscribe(gridex_client *c);

int gridex_connect(gridex_client *c)
{
	gridex_close(c);
	int64_t deadline = now_ms(CLOCK_MONOTONIC) + c->timeout_ms;
	int rc = tcp_connect(c, deadline);
	if (rc)
		return rc;
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL)
		return fail(c, GRIDEX_ERR_NOMEM, "TLS context");
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	/* One read() takes whatever records have arrived, not a record header and then
	 * its body; gridex_next_event reads until OpenSSL wants more from the socket,
	 * so nothing it has buffered waits for readiness that will not come. */
	SSL_CTX_set_read_ahead(c->ctx, 1);
	if ((c->ca_file ? SSL_CTX_load_verify_locations(c->ctx, c->ca_file, NULL)
			: SSL_CTX_set_default_verify_paths(c->ctx)) != 1) {
		rc = tls_error(c, GRIDEX_ERR_TLS, c->ca_file ? c->ca_file : "system CA store");
		gridex_close(c);
		return rc;
	}
	c->ssl = SSL_new(c->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    SSL_set_tlsext_host_name(c->ssl, c->server_name) != 1 ||
	    SSL_set1_host(c->ssl, c->server_name) != 1) {
		gridex_close(c);
		return fail(c, GRIDEX_ERR_NOMEM, "TLS session");
	}
	for (;;) {
		int r = SSL_connect(c->ssl);
		if (r == 1)
			break;
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			rc = wait_fd(c->fd, e == SSL_ERROR_WANT_WRITE, deadline);
			if (rc == GRIDEX_OK)
				continue;
			gridex_close(c);
			return fail(c, rc, "TLS handshake with %s:%u: %s", c->host, c->port,
				    gridex_status_name(rc));
		}
		rc = tls_error(c, GRIDEX_ERR_TLS, "TLS handshake");
		gridex_close(c);
		return rc;
	}
	return resubscribe(c);
}

/* ---------- sending ---------- */

static int send_all(gridex_client *c, const uint8_t *buf, size_t len)
{
	if (c->ssl == NULL)
		return fail(c, GRIDEX_ERR_CLOSED, "not connected");
	int64_t deadline = now_ms(CLOCK_MONOTONIC) + c->timeout_ms;
	while (len > 0) {
		int n = SSL_write(c->ssl, buf, (int)len);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
			int rc = wait_fd(c->fd, e == SSL_ERROR_WANT_WRITE, deadline);
			if (rc == GRIDEX_OK)
				continue;
			return fail(c, rc, "sending: %s", gridex_status_name(rc));
		}
		gridex_close(c);
		return fail(c, GRIDEX_ERR_CLOSED, "the connection is closed");
	}
	return GRIDEX_OK;
}

/* Room for len more bytes in f. */
static bool frames_reserve(struct gridex_frames *f, size_t len)
{
	if (len <= f->cap - f->len)
		return true;
	size_t cap = f->cap ? f->cap : 4096;
	while (cap - f->len < len) {
		if (cap > SIZE_MAX / 2)
			return false;
		cap *= 2;
	}
	uint8_t *p = realloc(f->data, cap);
	if (p == NULL)
		return false;
	f->data = p;
	f->cap = cap;
	return true;
}

/* Sends a ClientFrame with its 4-byte length (or captures it). */
static int send_frame(gridex_client *c, const Gridex__V1__ClientFrame *f)
{
	size_t n = gridex__v1__client_frame__get_packed_size(f);
	if (c->capture) {
		if (!frames_reserve(c->capture, n + 4))
			return fail(c, GRIDEX_ERR_NOMEM, "out of memory");
		uint8_t *p = c->capture->data + c->capture->len;
		p[0] = (uint8_t)(n >> 24);
		p[1] = (uint8_t)(n >> 16);
		p[2] = (uint8_t)(n >> 8);
		p[3] = (uint8_t)n;
		gridex__v1__client_frame__pack(f, p + 4);
		c->capture->len += n + 4;
		return GRIDEX_OK;
	}
	uint8_t stack[2048], *buf = n + 4 <= sizeof(stack) ? stack : malloc(n + 4);
	if (buf == NULL)
		return fail(c, GRIDEX_ERR_NOMEM, "out of memory");
	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	gridex__v1__client_frame__pack(f, buf + 4);
	int rc = send_all(c, buf, n + 4);
	if (buf != stack)
		free(buf);
	return rc;
}

void gridex_capture(gridex_client *c, struct gridex_frames *out)
{
	c->capture = out;
}

int gridex_send_raw(gridex_client *c, const uint8_t *frames, size_t len)
{
	if (frames == NULL && len > 0)
		return fail(c, GRIDEX_ERR_ARGS, "no frames");
	return send_all(c, frames, len);
}

void gridex_frames_free(struct gridex_frames *f)
{
	if (f == NULL)
		return;
	free(f->data);
	*f = (struct gridex_frames){0};
}

static uint64_t next_nonce(gridex_client *c)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	c->last_nonce = us > c->last_nonce ? us : c->last_nonce + 1;
	return c->last_nonce;
}

static ProtobufCBinaryData text(const char *s)
{
	return (ProtobufCBinaryData){.len = s ? strlen(s) : 0, .data = (uint8_t *)s};
}

/* Fills account, nonce and expiry, signs the body and sends it. */
static int send_request(gridex_client *c, Gridex__V1__Request *q, uint64_t *nonce)
{
	if (!c->has_key)
		return fail(c, GRIDEX_ERR_ARGS, "this handle has no account and key");
	if (q->product.len > GRIDEX_PRODUCT_MAX)
		return fail(c, GRIDEX_ERR_ARGS, "product or class name longer than %d bytes",
			    GRIDEX_PRODUCT_MAX);
	q->account = c->account;
	q->nonce = next_nonce(c);
	q->expires_at_ms = now_ms(CLOCK_REALTIME) + c->expiry_ms;
	uint8_t msg[DOMAIN_BYTES + BODY_MAX];
	size_t body = gridex__v1__request__get_packed_size(q);
	if (body > BODY_MAX)
		return fail(c, GRIDEX_ERR_ARGS, "request too large");
	memcpy(msg, DOMAIN, DOMAIN_BYTES);
	gridex__v1__request__pack(q, msg + DOMAIN_BYTES);
	uint8_t sig[64];
	crypto_sign_detached(sig, NULL, msg, DOMAIN_BYTES + body, c->sk);
	Gridex__V1__SignedRequest sr = GRIDEX__V1__SIGNED_REQUEST__INIT;
	sr.body.data = msg + DOMAIN_BYTES;
	sr.body.len = body;
	sr.signature.data = sig;
	sr.signature.len = sizeof(sig);
	Gridex__V1__ClientFrame f = GRIDEX__V1__CLIENT_FRAME__INIT;
	f.request = &sr;
	int rc = send_frame(c, &f);
	if (rc == GRIDEX_OK && nonce)
		*nonce = q->nonce;
	return rc;
}

int gridex_new_order(gridex_client *c, const struct gridex_order *o, uint64_t *nonce)
{
	if (o == NULL || o->product == NULL || o->client_order_id == 0 ||
	    (o->side != GRIDEX_BUY && o->side != GRIDEX_SELL) || o->tif > GRIDEX_POST_ONLY ||
	    o->self_trade < 0 || o->self_trade > 4 || o->price < 1 || o->quantity < 1 ||
	    o->hours > 48 || (o->hours > 0 && o->tif != 0 && o->tif != GRIDEX_FOK))
		return fail(c, GRIDEX_ERR_ARGS,
			    "an order needs a client order id, a product, a side, a price and a "
			    "quantity above 0 (baskets: 1-48 hours, FOK)");
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.client_order_id = o->client_order_id;
	q.product = text(o->product);
	q.side = (Gridex__V1__Side)o->side;
	q.self_trade = (Gridex__V1__SelfTradePrevention)o->self_trade;
	q.price = o->price;
	q.quantity = o->quantity;
	if (o->hours > 0) {
		q.type = GRIDEX__V1__REQUEST_TYPE__NEW_BASKET;
		q.hours = o->hours;
		q.time_in_force = GRIDEX__V1__TIME_IN_FORCE__FOK;
	} else {
		q.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER;
		q.time_in_force = (Gridex__V1__TimeInForce)(o->tif ? o->tif : GRIDEX_GTC);
		if (q.time_in_force == GRIDEX__V1__TIME_IN_FORCE__GTD)
			q.expire_ms = o->expire_ms;
	}
	return send_request(c, &q, nonce);
}

int gridex_cancel(gridex_client *c, uint64_t client_order_id, uint64_t *nonce)
{
	if (client_order_id == 0)
		return fail(c, GRIDEX_ERR_ARGS, "client order id 0");
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
	q.target_client_order_id = client_order_id;
	return send_request(c, &q, nonce);
}

int gridex_cancel_all(gridex_client *c, const char *scope, uint64_t *nonce)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__CANCEL_ALL;
	q.product = text(scope);
	return send_request(c, &q, nonce);
}

int gridex_modify(gridex_client *c, uint64_t client_order_id, int64_t price, int64_t quantity,
		  uint64_t *nonce)
{
	if (client_order_id == 0 || price < 1 || quantity < 1)
		return fail(c, GRIDEX_ERR_ARGS,
			    "a modify needs an order id, a price and a quantity");
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__MODIFY;
	q.target_client_order_id = client_order_id;
	q.price = price;
	q.quantity = quantity;
	return send_request(c, &q, nonce);
}

int gridex_query_page(gridex_client *c, enum gridex_query which, const char *scope, uint64_t cursor,
		      uint64_t *nonce)
{
	if (((which < GRIDEX_Q_ORDERS || which > GRIDEX_Q_LEASES) && which != GRIDEX_Q_HOSTS) ||
	    (scope &&
	     (which == GRIDEX_Q_BALANCE || which == GRIDEX_Q_LEASES || which == GRIDEX_Q_HOSTS)))
		return fail(c, GRIDEX_ERR_ARGS, "unknown query, or a scope where none is taken");
	if (cursor != 0 && which == GRIDEX_Q_BALANCE)
		return fail(c, GRIDEX_ERR_ARGS, "a balance does not come in pages");
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = (Gridex__V1__RequestType)which;
	q.product = text(scope);
	q.cursor = cursor;
	return send_request(c, &q, nonce);
}

int gridex_query(gridex_client *c, enum gridex_query which, const char *scope, uint64_t *nonce)
{
	return gridex_query_page(c, which, scope, 0, nonce);
}

int gridex_register_host(gridex_client *c, const char *name, const char *accelerator,
			 const char *vendor, const char *const *devices, size_t n_devices,
			 uint64_t *nonce)
{
	if (name == NULL || accelerator == NULL || vendor == NULL || devices == NULL ||
	    n_devices == 0 || n_devices > GRIDEX_LEASE_DEVICES_MAX)
		return fail(c, GRIDEX_ERR_ARGS,
			    "a host needs a name, an accelerator class, a vendor and 1-%d devices",
			    GRIDEX_LEASE_DEVICES_MAX);
	ProtobufCBinaryData d[GRIDEX_LEASE_DEVICES_MAX];
	for (size_t i = 0; i < n_devices; i++) {
		if (devices[i] == NULL)
			return fail(c, GRIDEX_ERR_ARGS, "a device UUID is missing");
		d[i] = text(devices[i]);
	}
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST;
	q.name = text(name);
	q.product = text(accelerator);
	q.vendor = text(vendor);
	q.n_devices = n_devices;
	q.devices = d;
	return send_request(c, &q, nonce);
}

int gridex_withdraw_host(gridex_client *c, const char *name, uint64_t *nonce)
{
	if (name == NULL || name[0] == '\0')
		return fail(c, GRIDEX_ERR_ARGS, "a host needs a name");
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST;
	q.name = text(name);
	return send_request(c, &q, nonce);
}

int gridex_set_workload(gridex_client *c, const char *workload_json, uint64_t *nonce)
{
	if (workload_json == NULL || workload_json[0] == '\0')
		return fail(c, GRIDEX_ERR_ARGS, "a workload is a JSON object");
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__SET_WORKLOAD;
	q.workload = text(workload_json);
	return send_request(c, &q, nonce);
}

int gridex_operator(gridex_client *c, const struct gridex_operator_request *r, uint64_t *nonce)
{
	if (r == NULL || r->op < GRIDEX_OP_REGISTER || r->op > GRIDEX_OP_RESUME)
		return fail(c, GRIDEX_ERR_ARGS, "unknown operator request");
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = (Gridex__V1__RequestType)r->op;
	switch (r->op) {
	case GRIDEX_OP_REGISTER:
		if (r->account == 0 || r->name == NULL || r->public_key == NULL)
			return fail(c, GRIDEX_ERR_ARGS,
				    "register needs an account, a name and a key");
		q.target_account = r->account;
		q.name = text(r->name);
		q.public_key.data = (uint8_t *)r->public_key;
		q.public_key.len = 32;
		break;
	case GRIDEX_OP_DEPOSIT:
	case GRIDEX_OP_WITHDRAW:
		if (r->account == 0 || r->amount < 1)
			return fail(c, GRIDEX_ERR_ARGS, "an account and an amount above 0");
		q.target_account = r->account;
		q.amount = r->amount;
		break;
	case GRIDEX_OP_CAPACITY:
		if (r->account == 0 || r->product == NULL || r->quantity < 0)
			return fail(c, GRIDEX_ERR_ARGS, "an account, a class and GPUs (0 or more)");
		q.target_account = r->account;
		q.product = text(r->product);
		q.quantity = r->quantity;
		break;
	default:
		if (r->product == NULL)
			return fail(c, GRIDEX_ERR_ARGS, "halt and resume need a product");
		q.product = text(r->product);
		break;
	}
	return send_request(c, &q, nonce);
}

static int send_subscribe(gridex_client *c, const char *topic, bool trades, bool subscribe)
{
	Gridex__V1__ClientFrame f = GRIDEX__V1__CLIENT_FRAME__INIT;
	Gridex__V1__Subscribe s = GRIDEX__V1__SUBSCRIBE__INIT;
	Gridex__V1__Unsubscribe u = GRIDEX__V1__UNSUBSCRIBE__INIT;
	if (subscribe) {
		s.product = text(topic);
		s.trades = trades;
		f.subscribe = &s;
	} else {
		u.product = text(topic);
		f.unsubscribe = &u;
	}
	struct gridex_frames *capture = c->capture; /* subscriptions always go out */
	c->capture = NULL;
	int rc = send_frame(c, &f);
	c->capture = capture;
	return rc;
}

static int resubscribe(gridex_client *c)
{
	for (size_t i = 0; i < c->n_topics; i++) {
		int rc = send_subscribe(c, c->topics[i].name, c->topics[i].trades, true);
		if (rc)
			return rc;
	}
	return GRIDEX_OK;
}

int gridex_subscribe(gridex_client *c, const char *topic, bool trades)
{
	if (topic == NULL || topic[0] == '\0' || strlen(topic) > GRIDEX_PRODUCT_MAX)
		return fail(c, GRIDEX_ERR_ARGS, "a product or class of 1-%d bytes",
			    GRIDEX_PRODUCT_MAX);
	size_t i = 0;
	while (i < c->n_topics && strcmp(c->topics[i].name, topic) != 0)
		i++;
	if (i == c->n_topics) {
		if (c->n_topics == GRIDEX_TOPICS_MAX)
			return fail(c, GRIDEX_ERR_ARGS, "at most %d subscriptions",
				    GRIDEX_TOPICS_MAX);
		snprintf(c->topics[c->n_topics++].name, GRIDEX_PRODUCT_MAX + 1, "%s", topic);
	}
	c->topics[i].trades = trades;
	return send_subscribe(c, topic, trades, true);
}

int gridex_unsubscribe(gridex_client *c, const char *topic)
{
	for (size_t i = 0; topic && i < c->n_topics; i++)
		if (strcmp(c->topics[i].name, topic) == 0) {
			c->topics[i] = c->topics[--c->n_topics];
			break;
		}
	if (topic == NULL || topic[0] == '\0' || strlen(topic) > GRIDEX_PRODUCT_MAX)
		return fail(c, GRIDEX_ERR_ARGS, "a product or class of 1-%d bytes",
			    GRIDEX_PRODUCT_MAX);
	return send_subscribe(c, topic, false, false);
}

/* ---------- receiving ---------- */

static void copy_bytes(char *dst, size_t cap, const ProtobufCBinaryData *b)
{
	size_t n = b->len < cap - 1 ? b->len : cap - 1;
	for (size_t i = 0; i < n; i++) /* printable ASCII only: the server's text is data */
		dst[i] = b->data[i] >= 0x20 && b->data[i] < 0x7f ? (char)b->data[i] : '?';
	dst[n] = '\0';
}

static enum gridex_side side_of(Gridex__V1__Side s)
{
	return s == GRIDEX__V1__SIDE__SELL ? GRIDEX_SELL : GRIDEX_BUY;
}

static void report_of(struct gridex_report *r, const Gridex__V1__ExecutionReport *e)
{
	*r = (struct gridex_report){.account = e->account,
				    .client_order_id = e->client_order_id,
				    .order_id = e->order_id,
				    .side = side_of(e->side),
				    .exec_type = (enum gridex_exec)e->exec_type,
				    .price = e->price,
				    .last_price = e->last_price,
				    .last_quantity = e->last_quantity,
				    .cumulative_quantity = e->cumulative_quantity,
				    .leaves_quantity = e->leaves_quantity,
				    .fill_id = e->fill_id,
				    .fee = e->fee,
				    .sequence = e->sequence,
				    .time_ms = e->time_ms};
	copy_bytes(r->product, sizeof(r->product), &e->product);
}

static int levels_of(struct gridex_level **out, Gridex__V1__PriceLevel **in, size_t n)
{
	*out = calloc(n ? n : 1, sizeof(**out));
	if (*out == NULL)
		return GRIDEX_ERR_NOMEM;
	for (size_t i = 0; i < n; i++)
		(*out)[i] = (struct gridex_level){.price = in[i]->price,
						  .quantity = in[i]->quantity,
						  .orders = in[i]->orders};
	return GRIDEX_OK;
}

static int rows_of(struct gridex_event *ev, Gridex__V1__ExecutionReport **in, size_t n)
{
	ev->rows = calloc(n ? n : 1, sizeof(*ev->rows));
	if (ev->rows == NULL)
		return GRIDEX_ERR_NOMEM;
	for (size_t i = 0; i < n; i++)
		report_of(&ev->rows[i], in[i]);
	ev->n_rows = n;
	return GRIDEX_OK;
}

static void lease_of(struct gridex_lease *l, const Gridex__V1__Lease *m)
{
	*l = (struct gridex_lease){.lease_id = m->lease_id,
				   .buyer = m->buyer,
				   .seller = m->seller,
				   .quantity = m->quantity,
				   .start_ms = m->start_ms,
				   .end_ms = m->end_ms,
				   .state = (enum gridex_lease_state)m->state,
				   .running_ms = m->running_ms,
				   .ended_ms = m->ended_ms,
				   .sequence = m->sequence};
	copy_bytes(l->host, sizeof(l->host), &m->host);
	copy_bytes(l->accelerator, sizeof(l->accelerator), &m->accelerator);
	copy_bytes(l->vendor, sizeof(l->vendor), &m->vendor);
	copy_bytes(l->reason, sizeof(l->reason), &m->reason);
	/* More than the protocol allows is the server's error: the rest is dropped. */
	l->n_devices =
		m->n_devices < GRIDEX_LEASE_DEVICES_MAX ? m->n_devices : GRIDEX_LEASE_DEVICES_MAX;
	for (size_t i = 0; i < l->n_devices; i++)
		copy_bytes(l->devices[i], sizeof(l->devices[i]), &m->devices[i]);
	l->n_fills =
		m->n_fill_ids < GRIDEX_LEASE_FILLS_MAX ? m->n_fill_ids : GRIDEX_LEASE_FILLS_MAX;
	if (l->n_fills > 0)
		memcpy(l->fill_ids, m->fill_ids, l->n_fills * sizeof(*l->fill_ids));
}

static void host_of(struct gridex_host *h, const Gridex__V1__Host *m)
{
	*h = (struct gridex_host){
		.seller = m->seller, .withdrawn = m->withdrawn, .live_leases = m->live_leases};
	copy_bytes(h->name, sizeof(h->name), &m->name);
	copy_bytes(h->accelerator, sizeof(h->accelerator), &m->accelerator);
	copy_bytes(h->vendor, sizeof(h->vendor), &m->vendor);
	h->n_devices =
		m->n_devices < GRIDEX_LEASE_DEVICES_MAX ? m->n_devices : GRIDEX_LEASE_DEVICES_MAX;
	for (size_t i = 0; i < h->n_devices; i++)
		copy_bytes(h->devices[i], sizeof(h->devices[i]), &m->devices[i]);
}

/* Turns one ServerFrame into an event. */
static int event_of(const Gridex__V1__ServerFrame *f, struct gridex_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (f->ack) {
		ev->kind = GRIDEX_EV_ACK;
		ev->account = f->ack->account;
		ev->nonce = f->ack->nonce;
		ev->sequence = f->ack->sequence;
	} else if (f->reject) {
		ev->kind = GRIDEX_EV_REJECT;
		ev->account = f->reject->account;
		ev->nonce = f->reject->nonce;
		ev->reason = (int)f->reject->reason;
		copy_bytes(ev->detail, sizeof(ev->detail), &f->reject->detail);
	} else if (f->report) {
		ev->kind = GRIDEX_EV_REPORT;
		report_of(&ev->report, f->report);
	} else if (f->snapshot) {
		ev->kind = GRIDEX_EV_SNAPSHOT;
		copy_bytes(ev->product, sizeof(ev->product), &f->snapshot->product);
		ev->sequence = f->snapshot->sequence;
		ev->n_bids = f->snapshot->n_bids;
		ev->n_asks = f->snapshot->n_asks;
		if (levels_of(&ev->bids, f->snapshot->bids, ev->n_bids) ||
		    levels_of(&ev->asks, f->snapshot->asks, ev->n_asks))
			return GRIDEX_ERR_NOMEM;
	} else if (f->update) {
		ev->kind = GRIDEX_EV_UPDATE;
		copy_bytes(ev->product, sizeof(ev->product), &f->update->product);
		ev->sequence = f->update->sequence;
		ev->side = side_of(f->update->side);
		ev->price = f->update->price;
		ev->quantity = f->update->quantity;
		ev->orders = f->update->orders;
	} else if (f->trade) {
		ev->kind = GRIDEX_EV_TRADE;
		copy_bytes(ev->product, sizeof(ev->product), &f->trade->product);
		ev->sequence = f->trade->sequence;
		ev->side = side_of(f->trade->aggressor);
		ev->price = f->trade->price;
		ev->quantity = f->trade->quantity;
		ev->time_ms = f->trade->time_ms;
	} else if (f->result) {
		const Gridex__V1__QueryResult *r = f->result;
		ev->kind = GRIDEX_EV_RESULT;
		ev->account = r->account;
		ev->nonce = r->nonce;
		ev->truncated = r->truncated;
		ev->next = r->next;
		if (r->n_balances > 0) {
			ev->has_balance = true;
			ev->available = r->balances[0]->available;
			ev->reserved = r->balances[0]->reserved;
		}
		int rc = r->n_fills > 0 ? rows_of(ev, r->fills, r->n_fills)
					: rows_of(ev, r->orders, r->n_orders);
		if (rc)
			return rc;
		ev->leases = calloc(r->n_leases ? r->n_leases : 1, sizeof(*ev->leases));
		if (ev->leases == NULL)
			return GRIDEX_ERR_NOMEM;
		for (size_t i = 0; i < r->n_leases; i++)
			lease_of(&ev->leases[i], r->leases[i]);
		ev->n_leases = r->n_leases;
		ev->hosts = calloc(r->n_hosts ? r->n_hosts : 1, sizeof(*ev->hosts));
		if (ev->hosts == NULL)
			return GRIDEX_ERR_NOMEM;
		for (size_t i = 0; i < r->n_hosts; i++)
			host_of(&ev->hosts[i], r->hosts[i]);
		ev->n_hosts = r->n_hosts;
	} else if (f->lease) {
		ev->kind = GRIDEX_EV_LEASE;
		lease_of(&ev->lease, f->lease);
	} else {
		return GRIDEX_ERR_PROTOCOL;
	}
	return GRIDEX_OK;
}

void gridex_event_free(struct gridex_event *ev)
{
	if (ev == NULL)
		return;
	free(ev->bids);
	free(ev->asks);
	free(ev->rows);
	free(ev->leases);
	free(ev->hosts);
	ev->bids = ev->asks = NULL;
	ev->rows = NULL;
	ev->leases = NULL;
	ev->hosts = NULL;
	ev->n_bids = ev->n_asks = ev->n_rows = ev->n_leases = ev->n_hosts = 0;
}

int gridex_event_decode(const uint8_t *body, size_t len, struct gridex_event *ev)
{
	Gridex__V1__ServerFrame *f = gridex__v1__server_frame__unpack(NULL, len, body);
	if (f == NULL) {
		memset(ev, 0, sizeof(*ev));
		return GRIDEX_ERR_PROTOCOL;
	}
	int rc = event_of(f, ev);
	gridex__v1__server_frame__free_unpacked(f, NULL);
	if (rc)
		gridex_event_free(ev);
	return rc;
}

/* A complete frame at the start of the input buffer becomes an event. */
static int parse_one(gridex_client *c, struct gridex_event *ev)
{
	if (c->in_len < 4)
		return GRIDEX_AGAIN;
	uint32_t len = (uint32_t)c->in[0] << 24 | (uint32_t)c->in[1] << 16 |
		       (uint32_t)c->in[2] << 8 | c->in[3];
	if (len == 0 || len > FRAME_MAX) {
		gridex_close(c);
		return fail(c, GRIDEX_ERR_PROTOCOL, "frame length %u from the server", len);
	}
	if (c->in_len < 4 + (size_t)len)
		return GRIDEX_AGAIN;
	int rc = gridex_event_decode(c->in + 4, len, ev);
	memmove(c->in, c->in + 4 + len, c->in_len - 4 - len);
	c->in_len -= 4 + len;
	if (rc) {
		if (rc == GRIDEX_ERR_PROTOCOL)
			gridex_close(c);
		return fail(c, rc, "%s",
			    rc == GRIDEX_ERR_PROTOCOL ? "unreadable frame from the server"
						      : "out of memory");
	}
	return GRIDEX_OK;
}

int gridex_next_event(gridex_client *c, int timeout_ms, struct gridex_event *ev)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms(CLOCK_MONOTONIC) + timeout_ms;
	for (;;) {
		int rc = parse_one(c, ev);
		if (rc != GRIDEX_AGAIN)
			return rc;
		if (c->ssl == NULL)
			return fail(c, GRIDEX_ERR_CLOSED, "not connected");
		if (c->in_cap - c->in_len < READ_CHUNK) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 4 * READ_CHUNK;
			if (cap > FRAME_MAX + 4 + READ_CHUNK)
				cap = FRAME_MAX + 4 + READ_CHUNK;
			uint8_t *in = cap > c->in_cap ? realloc(c->in, cap) : c->in;
			if (in == NULL)
				return fail(c, GRIDEX_ERR_NOMEM, "out of memory");
			c->in = in;
			c->in_cap = cap;
		}
		int n = SSL_read(c->ssl, c->in + c->in_len, (int)(c->in_cap - c->in_len));
		if (n > 0) {
			c->in_len += (size_t)n;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (timeout_ms == 0)
				return GRIDEX_AGAIN;
			rc = wait_fd(c->fd, e == SSL_ERROR_WANT_WRITE, deadline);
			if (rc == GRIDEX_ERR_TIMEOUT)
				return GRIDEX_AGAIN;
			if (rc)
				return fail(c, rc, "waiting for the server");
			continue;
		}
		gridex_close(c);
		return fail(c, GRIDEX_ERR_CLOSED, "the server closed the connection");
	}
}

/* ---------- names and prices ---------- */

const char *gridex_status_name(int s)
{
	static const char *const names[] = {
		"ok",	     "no event yet",   "invalid argument", "out of memory",
		"bad key",   "cannot connect", "TLS failure",	   "connection closed",
		"I/O error", "protocol error", "timeout",	   "sequence gap",
	};
	return s >= 0 && s <= GRIDEX_ERR_GAP ? names[s] : "unknown status";
}

const char *gridex_reject_name(int reason)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
		&gridex__v1__reject_reason__descriptor, reason);
	return v ? v->name : "UNKNOWN_REASON";
}

const char *gridex_exec_name(int exec_type)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&gridex__v1__exec_type__descriptor, exec_type);
	return v ? v->name : "UNKNOWN";
}

const char *gridex_lease_state_name(int state)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&gridex__v1__lease_state__descriptor, state);
	return v ? v->name : "UNKNOWN";
}

int gridex_parse_price(const char *s, int64_t *micros)
{
	if (s == NULL || *s < '0' || *s > '9')
		return GRIDEX_ERR_ARGS;
	int64_t v = 0;
	int decimals = -1;
	for (; *s; s++) {
		if (*s == '.' && decimals < 0) {
			decimals = 0;
			continue;
		}
		if (*s < '0' || *s > '9' || decimals == 6)
			return GRIDEX_ERR_ARGS;
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
			return GRIDEX_ERR_ARGS;
		if (decimals >= 0)
			decimals++;
	}
	for (int d = decimals < 0 ? 0 : decimals; d < 6; d++)
		if (__builtin_mul_overflow(v, 10, &v))
			return GRIDEX_ERR_ARGS;
	if (v < 1)
		return GRIDEX_ERR_ARGS;
	*micros = v;
	return GRIDEX_OK;
}

void gridex_format_price(int64_t micros, char *buf, size_t len)
{
	bool neg = micros < 0;
	uint64_t u = neg ? (uint64_t)0 - (uint64_t)micros : (uint64_t)micros;
	char frac[8];
	snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(u % 1000000));
	int keep = 6;
	while (keep > 2 && frac[keep - 1] == '0')
		keep--;
	frac[keep] = '\0';
	snprintf(buf, len, "%s%llu.%s", neg ? "-" : "", (unsigned long long)(u / 1000000), frac);
}
