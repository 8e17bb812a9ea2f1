/* SPDX-License-Identifier: Apache-2.0 */
#include "tclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <sodium.h>

#include "pgtest.h"
#include "tfile.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

const char *thttp_get(int port, const char *path, int *status)
{
	return thttp_get_with(port, path, NULL, status);
}

/* The request line and headers of a GET (and its length). */
static int http_request(char *req, size_t cap, const char *path, const char *header)
{
	return snprintf(req, cap, "GET %s HTTP/1.0\r\n%s%s\r\n", path, header ? header : "",
			header ? "\r\n" : "");
}

/* The status code of the response in buf (fails the test when there is none). */
static const char *http_status(const char *buf, int *status)
{
	*status = 0;
	ck_assert_msg(sscanf(buf, "HTTP/1.%*d %d", status) == 1, "no HTTP status: %s", buf);
	return buf;
}

const char *thttp_get_with(int port, const char *path, const char *header, int *status)
{
	static char buf[1 << 20];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	char req[8192];
	int n = http_request(req, sizeof(req), path, header);
	ck_assert_int_lt(n, (int)sizeof(req));
	ck_assert_int_eq(write(fd, req, (size_t)n), n);
	size_t got = 0;
	ssize_t r;
	while ((r = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)r;
	buf[got] = '\0';
	close(fd);
	return http_status(buf, status);
}

const char *thttps_get(const struct tserver *t, int port, const char *path, const char *header,
		       int *status)
{
	static char buf[1 << 20];
	struct tclient c = {.fd = -1};
	struct tserver at = *t;
	at.port = port; /* tclient_connect's handshake, to that port */
	tclient_connect(&c, &at);
	char req[8192];
	int n = http_request(req, sizeof(req), path, header);
	ck_assert_int_lt(n, (int)sizeof(req));
	ck_assert(tclient_write(&c, req, (size_t)n));
	size_t got = 0;
	int r;
	while ((r = SSL_read(c.ssl, buf + got, (int)(sizeof(buf) - 1 - got))) > 0)
		got += (size_t)r;
	buf[got] = '\0';
	tclient_close(&c);
	return http_status(buf, status);
}

const char *thttp_body(const char *response)
{
	const char *b = strstr(response, "\r\n\r\n");
	return b ? b + 4 : "";
}

double tmetric(const char *page, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = page; (p = strstr(p, name)) != NULL; p += n)
		if ((p == page || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

void tserver_start(struct tserver *t, const char *const *extra)
{
	ck_assert_int_ge(sodium_init(), 0);
	signal(SIGPIPE, SIG_IGN); /* writes to connections the server closed fail instead */
	if (t->dir[0] == '\0') {
		tfile_mkdtemp(t->dir, sizeof(t->dir), "gridexd-test");
		char cmd[512];
		snprintf(cmd, sizeof(cmd),
			 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
			 "-keyout %s/key.pem -out %s/cert.pem -days 2 -subj /CN=localhost "
			 "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null",
			 t->dir, t->dir);
		ck_assert_msg(system(cmd) == 0, "openssl req failed");
		if (!t->op_preset) {
			crypto_sign_keypair(t->op_pk, t->op_sk);
			t->op_account = 1000000;
		}
	}
	char ready[128], log[128];
	snprintf(ready, sizeof(ready), "%s/ready", t->dir);
	snprintf(log, sizeof(log), "%s/log", t->dir);
	unlink(ready);
	char a_cert[160], a_key[160], a_db[1100], a_ready[160], a_log[160], a_op[64], a_opk[80],
		a_journal[160];
	char hex[65];
	sodium_bin2hex(hex, sizeof(hex), t->op_pk, 32);
	snprintf(a_cert, sizeof(a_cert), "--tls-cert=%s/cert.pem", t->dir);
	snprintf(a_key, sizeof(a_key), "--tls-key=%s/key.pem", t->dir);
	snprintf(a_db, sizeof(a_db), "--database-url=%s", pgt.app_url);
	snprintf(a_ready, sizeof(a_ready), "--ready-file=%s", ready);
	snprintf(a_log, sizeof(a_log), "--log-file=%s", log);
	snprintf(a_journal, sizeof(a_journal), "--journal-dir=%s/journal", t->dir);
	snprintf(a_op, sizeof(a_op), "--operator-account=%u", t->op_account);
	snprintf(a_opk, sizeof(a_opk), "--operator-key=%s", hex);
	/* GRIDEX_TEST_WRAPPER (e.g. "valgrind --error-exitcode=99 ...") runs the server under
	 * a tool: words separated by spaces, put before the server's path. */
	const char *argv[64];
	int n = 0;
	static char wrapper[512];
	const char *w = getenv("GRIDEX_TEST_WRAPPER");
	snprintf(wrapper, sizeof(wrapper), "%s", w ? w : "");
	for (char *save = NULL, *tok = strtok_r(wrapper, " ", &save); tok && n < 16;
	     tok = strtok_r(NULL, " ", &save))
		argv[n++] = tok;
	const char *base[] = {GRIDEX_TEST_GRIDEXD,
			      a_cert,
			      a_key,
			      a_db,
			      a_ready,
			      a_log,
			      a_op,
			      a_opk,
			      a_journal,
			      "--listen=127.0.0.1:0",
			      "--metrics-listen=127.0.0.1:0",
			      "--verifier-threads=2",
			      "--max-connections=256",
			      "--batch-ms-max=5"};
	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		argv[n++] = base[i];
	for (int i = 0; extra && extra[i] && n < 63; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	t->pid = fork();
	ck_assert_int_ge(t->pid, 0);
	if (t->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that dies takes its server along */
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 6000; i++) { /* a minute: valgrind starts slowly */
		FILE *f = fopen(ready, "r");
		if (f) {
			char line[256];
			while (fgets(line, sizeof(line), f)) {
				char *colon = strrchr(line, ':');
				if (strncmp(line, "listen=", 7) == 0 && colon)
					t->port = atoi(colon + 1);
				if (strncmp(line, "metrics=", 8) == 0 && colon)
					t->metrics_port = atoi(colon + 1);
				if (strncmp(line, "http=", 5) == 0 && colon)
					t->http_port = atoi(colon + 1);
			}
			fclose(f);
			return;
		}
		int status;
		ck_assert_msg(waitpid(t->pid, &status, WNOHANG) == 0, "gridexd exited: %s",
			      tserver_log(t));
		sleep_ms(10);
	}
	ck_abort_msg("gridexd did not become ready: %s", tserver_log(t));
}

int tserver_stop(struct tserver *t)
{
	if (t->pid <= 0)
		return -1;
	kill(t->pid, SIGTERM);
	int status = 0;
	ck_assert_int_eq(waitpid(t->pid, &status, 0), t->pid);
	t->pid = 0;
	/* Whatever the test did, libevent had nothing to complain of (an event of a closed
	 * socket, say). */
	const char *warned = tserver_log_line(t, "msg=\"libevent\"");
	ck_assert_msg(warned == NULL, "%s", warned);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void tserver_forget_journal(struct tserver *t)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s/journal", t->dir);
	ck_assert_int_eq(system(cmd), 0);
}

const char *tserver_log(const struct tserver *t)
{
	static char buf[8192];
	char path[128];
	snprintf(path, sizeof(path), "%s/log", t->dir);
	FILE *f = fopen(path, "r");
	size_t n = 0;
	if (f) {
		/* The tail matters most. */
		fseek(f, 0, SEEK_END);
		long size = ftell(f);
		fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

const char *tserver_log_line(const struct tserver *t, const char *text)
{
	static char line[256];
	char path[128];
	snprintf(path, sizeof(path), "%s/log", t->dir);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "no log at %s", path);
	char *buf = NULL;
	size_t cap = 0;
	const char *found = NULL;
	while (found == NULL && getline(&buf, &cap, f) > 0)
		if (strstr(buf, text) != NULL) {
			snprintf(line, sizeof(line), "%s", buf);
			found = line;
		}
	free(buf);
	fclose(f);
	return found;
}

void tclient_keys(struct tclient *c, uint32_t account)
{
	c->account = account;
	crypto_sign_keypair(c->pk, c->sk);
}

void tclient_connect(struct tclient *c, const struct tserver *t)
{
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(c->fd, 0);
	if (c->rcvbuf > 0)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf, sizeof(c->rcvbuf));
	if (c->from > 0) {
		struct sockaddr_in b = {.sin_family = AF_INET};
		b.sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + c->from);
		ck_assert_int_eq(bind(c->fd, (struct sockaddr *)&b, sizeof(b)), 0);
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ctx = SSL_CTX_new(TLS_client_method());
	ck_assert_ptr_nonnull(c->ctx);
	char ca[128];
	snprintf(ca, sizeof(ca), "%s/cert.pem", t->dir);
	ck_assert_int_eq(SSL_CTX_load_verify_locations(c->ctx, ca, NULL), 1);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION);
	c->ssl = SSL_new(c->ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set1_host(c->ssl, "localhost");
	ck_assert_msg(SSL_connect(c->ssl) == 1, "TLS handshake failed");
	ck_assert_int_eq(SSL_version(c->ssl), TLS1_3_VERSION);
	if (c->nonce == 0) { /* like libgridex: the clock in microseconds, across restarts */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		c->nonce = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	}
}

void tclient_close(struct tclient *c)
{
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	c->ssl = NULL;
	c->ctx = NULL;
	c->fd = -1;
}

bool tclient_write(struct tclient *c, const void *buf, size_t len)
{
	return len == 0 || SSL_write(c->ssl, buf, (int)len) == (int)len;
}

bool tclient_send_frame(struct tclient *c, const uint8_t *body, size_t len)
{
	uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			  (uint8_t)len};
	return tclient_write(c, hdr, 4) && tclient_write(c, body, len);
}

size_t tclient_pack(struct tclient *c, Gridex__V1__Request *q, const uint8_t sk[64], uint8_t *out,
		    size_t cap)
{
	if (q->account == 0)
		q->account = c->account;
	if (q->nonce == 0)
		q->nonce = c->nonce++;
	if (q->expires_at_ms == 0)
		q->expires_at_ms = now_ms() + 30000;
	uint8_t msg[18 + 1024];
	memcpy(msg, "gridex/v1/request", 18);
	size_t body = gridex__v1__request__pack(q, msg + 18);
	ck_assert_uint_le(body, 1024);
	uint8_t sig[64];
	crypto_sign_detached(sig, NULL, msg, 18 + body, sk);
	Gridex__V1__SignedRequest sr = GRIDEX__V1__SIGNED_REQUEST__INIT;
	sr.body.data = msg + 18;
	sr.body.len = body;
	sr.signature.data = sig;
	sr.signature.len = 64;
	Gridex__V1__ClientFrame cf = GRIDEX__V1__CLIENT_FRAME__INIT;
	cf.request = &sr;
	size_t n = gridex__v1__client_frame__get_packed_size(&cf);
	ck_assert_uint_le(n, cap);
	return gridex__v1__client_frame__pack(&cf, out);
}

uint64_t tclient_send(struct tclient *c, Gridex__V1__Request *q, const uint8_t sk[64])
{
	uint8_t frame[2048];
	size_t n = tclient_pack(c, q, sk, frame, sizeof(frame));
	ck_assert(tclient_send_frame(c, frame, n));
	return q->nonce;
}

void tclient_subscribe(struct tclient *c, const char *topic, bool trades)
{
	Gridex__V1__Subscribe s = GRIDEX__V1__SUBSCRIBE__INIT;
	s.product.data = (uint8_t *)topic;
	s.product.len = strlen(topic);
	s.trades = trades;
	Gridex__V1__ClientFrame cf = GRIDEX__V1__CLIENT_FRAME__INIT;
	cf.subscribe = &s;
	uint8_t buf[256];
	size_t n = gridex__v1__client_frame__pack(&cf, buf);
	ck_assert(tclient_send_frame(c, buf, n));
}

/* Reads exactly len bytes within the deadline; 1 done, 0 timeout, -1 closed. */
static int read_full(struct tclient *c, uint8_t *buf, size_t len, int64_t deadline)
{
	size_t got = 0;
	while (got < len) {
		if (SSL_pending(c->ssl) == 0) {
			/* Past the deadline, still take what the socket already holds. */
			int64_t left = deadline - now_ms();
			struct pollfd p = {.fd = c->fd, .events = POLLIN};
			int r = poll(&p, 1, left > 0 ? (int)left : 0);
			if (r == 0)
				return 0;
			if (r < 0 && errno != EINTR)
				return -1;
		}
		int n = SSL_read(c->ssl, buf + got, (int)(len - got));
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_WANT_READ)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	return 1;
}

Gridex__V1__ServerFrame *tclient_recv(struct tclient *c, int timeout_ms, bool *closed)
{
	int64_t deadline = now_ms() + timeout_ms;
	uint8_t hdr[4];
	*closed = false;
	/* Wait for the first byte only: once a frame has started, it is read whole (a
	 * timeout in the middle would lose our place in the stream). */
	int r = read_full(c, hdr, 1, deadline);
	if (r == 1)
		r = read_full(c, hdr + 1, 3, now_ms() + 10000) == 1 ? 1 : -1;
	if (r <= 0) {
		*closed = r < 0;
		return NULL;
	}
	uint32_t len =
		(uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	ck_assert_uint_gt(len, 0);
	ck_assert_uint_le(len, 16u << 20);
	uint8_t *body = malloc(len);
	ck_assert_ptr_nonnull(body);
	/* A frame once started arrives whole, unless the server dies (crash tests). */
	r = read_full(c, body, len, now_ms() + 10000);
	if (r != 1) {
		free(body);
		*closed = true;
		return NULL;
	}
	Gridex__V1__ServerFrame *f = gridex__v1__server_frame__unpack(NULL, len, body);
	free(body);
	ck_assert_ptr_nonnull(f);
	return f;
}

struct nonce_ctx {
	uint64_t nonce;
};

static bool is_answer(const Gridex__V1__ServerFrame *f, void *ctx)
{
	uint64_t nonce = ((struct nonce_ctx *)ctx)->nonce;
	return (f->ack && f->ack->nonce == nonce) || (f->reject && f->reject->nonce == nonce);
}

Gridex__V1__ServerFrame *tclient_until(struct tclient *c,
				       bool (*pred)(const Gridex__V1__ServerFrame *f, void *ctx),
				       void *ctx)
{
	for (;;) {
		bool closed;
		Gridex__V1__ServerFrame *f = tclient_recv(c, 10000, &closed);
		ck_assert_msg(f != NULL, "no matching frame: %s", closed ? "closed" : "timeout");
		if (pred(f, ctx))
			return f;
		gridex__v1__server_frame__free_unpacked(f, NULL);
	}
}

int tclient_answer(struct tclient *c, uint64_t nonce)
{
	struct nonce_ctx x = {.nonce = nonce};
	Gridex__V1__ServerFrame *f = tclient_until(c, is_answer, &x);
	int reason = f->reject ? (int)f->reject->reason : 0;
	gridex__v1__server_frame__free_unpacked(f, NULL);
	return reason;
}

int tclient_operator(struct tclient *op, uint32_t type, uint32_t target, const char *product,
		     int64_t amount_or_qty, const uint8_t *public_key, const char *name)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = (Gridex__V1__RequestType)type;
	q.target_account = target;
	if (product) {
		q.product.data = (uint8_t *)product;
		q.product.len = strlen(product);
	}
	if (type == GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY)
		q.quantity = amount_or_qty;
	else
		q.amount = amount_or_qty;
	if (public_key) {
		q.public_key.data = (uint8_t *)public_key;
		q.public_key.len = 32;
	}
	if (name) {
		q.name.data = (uint8_t *)name;
		q.name.len = strlen(name);
	}
	return tclient_answer(op, tclient_send(op, &q, op->sk));
}

Gridex__V1__Request tclient_order_req(uint64_t coid, const char *product, int side, int64_t price,
				      int64_t qty)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER;
	q.client_order_id = coid;
	q.product.data = (uint8_t *)product;
	q.product.len = strlen(product);
	q.side = (Gridex__V1__Side)side;
	q.time_in_force = GRIDEX__V1__TIME_IN_FORCE__GTC;
	q.price = price;
	q.quantity = qty;
	return q;
}

uint64_t tclient_order(struct tclient *c, uint64_t coid, const char *product, int side,
		       int64_t price, int64_t qty)
{
	Gridex__V1__Request q = tclient_order_req(coid, product, side, price, qty);
	return tclient_send(c, &q, c->sk);
}

struct result_ctx {
	uint64_t nonce;
};

static bool is_result(const Gridex__V1__ServerFrame *f, void *ctx)
{
	return f->result && f->result->nonce == ((struct result_ctx *)ctx)->nonce;
}

Gridex__V1__QueryResult *tclient_query(struct tclient *c, uint32_t type)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = (Gridex__V1__RequestType)type;
	struct result_ctx x = {.nonce = tclient_send(c, &q, c->sk)};
	ck_assert_int_eq(tclient_answer(c, x.nonce), 0);
	Gridex__V1__ServerFrame *f = tclient_until(c, is_result, &x);
	Gridex__V1__QueryResult *r = f->result;
	f->result = NULL;
	gridex__v1__server_frame__free_unpacked(f, NULL);
	return r;
}

void tproduct(char *out, size_t len, const char *cls, int hours_ahead)
{
	time_t t = time(NULL) + hours_ahead * 3600;
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, len, "%s/%04d-%02d-%02dT%02d", cls, tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour);
}

void tclient_reconnect(const struct tserver *t, struct tclient *op, struct tclient *buyer,
		       struct tclient *seller)
{
	op->account = t->op_account;
	memcpy(op->pk, t->op_pk, 32);
	memcpy(op->sk, t->op_sk, 64);
	tclient_connect(op, t);
	tclient_connect(buyer, t);
	tclient_connect(seller, t);
}

void tclient_market(const struct tserver *t, struct tclient *op, struct tclient *buyer, uint32_t b,
		    int64_t cash, struct tclient *seller, uint32_t s, const char *cls,
		    int64_t capacity)
{
	memset(op, 0, sizeof(*op));
	memset(buyer, 0, sizeof(*buyer));
	memset(seller, 0, sizeof(*seller));
	tclient_keys(buyer, b);
	tclient_keys(seller, s);
	tclient_reconnect(t, op, buyer, seller);
	ck_assert_int_eq(tclient_operator(op, GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT, b, NULL,
					  0, buyer->pk, "buyer"),
			 0);
	ck_assert_int_eq(tclient_operator(op, GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT, s, NULL,
					  0, seller->pk, "seller"),
			 0);
	ck_assert_int_eq(
		tclient_operator(op, GRIDEX__V1__REQUEST_TYPE__DEPOSIT, b, NULL, cash, NULL, NULL),
		0);
	ck_assert_int_eq(tclient_operator(op, GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY, s, cls,
					  capacity, NULL, NULL),
			 0);
}
