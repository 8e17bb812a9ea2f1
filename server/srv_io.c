/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridexd's I/O thread: TLS 1.3 connections on libevent, framing with input
 * caps, decoding, per-connection limits and backpressure, delivery of
 * replies and reports to the sessions of an account, market-data fan-out,
 * the Prometheus endpoint, signals and the drain at shutdown.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "gridex.pb-c.h"
#include "srv_addr.h"
#include "srv_bucket.h"
#include "srv_frames.h"
#include "srv_hook.h"
#include "srv_log.h"
#include "srv_map.h"
#include "srv_server.h"
#include "wire.h"

#define NONE	  UINT32_MAX
#define KEY_BYTES SRV_MAP_KEY_BYTES
#define OUT_BATCH 256
/* Plaintext per SSL_write (one TLS record) and per SSL_read; what one readable
 * event may take from a connection before the others get their turn. */
#define IO_CHUNK    16384
#define READ_BUDGET 65536

/* ---------- state ---------- */

/*
 * A client connection: TLS on a non-blocking socket, driven by two events of
 * the I/O thread's base. ev_rd is added while frames are read (with the idle
 * timeout once the handshake is done); ev_wr only while something waits for
 * the socket to take more: a blocked write (with write_timeout_ms: the socket
 * must take some of it in that time), or a read or handshake that must write
 * first. Replies are queued in out and written once per loop turn
 * (flush_cb), so a burst of answers to one client is one SSL_write, and a
 * socket that takes them costs no epoll_ctl.
 */
struct srv_conn {
	struct srv *s;
	evutil_socket_t fd;
	SSL *ssl;
	struct event *ev_rd, *ev_wr;
	struct evbuffer *in, *out;
	struct event *timer; /* handshake, then partial-frame deadline, then closing */
	uint32_t slot, gen;
	uint32_t dirty_pos; /* in s->dirty, when dirty */
	bool used, tls_up, closing, paused_out, paused_inflight, authed, unauth_counted;
	bool timer_armed;
	bool reading;		/* ev_rd added */
	bool idle;		/* reading carries the idle timeout */
	bool dirty;		/* output waits for this loop turn's flush */
	bool wr_added;		/* ev_wr added */
	bool wr_timed;		/* ev_wr carries write_timeout_ms */
	bool wr_blocked;	/* SSL_write waits for the socket */
	bool rd_wants_wr;	/* SSL_read (or the handshake) must write first */
	char ip[KEY_BYTES];	/* the peer's address, for the log */
	char ip_key[KEY_BYTES]; /* what the per-address limits count: srv_addr_key() */
	uint32_t account;	/* claimed by its first request; 0: none yet */
	uint32_t inflight;
	uint32_t acct_prev, acct_next; /* sessions of the account (authed only) */
	uint32_t *subs, n_subs;	       /* subscription nodes */
	uint32_t sub_jobs;	       /* its Subscribes and Unsubscribes at the core */
	uint32_t subs_pending;	       /* its Subscribes among them */
};

struct sub {
	uint32_t conn, topic, prev, next; /* topic list */
	bool trades;
};

struct topic {
	char name[KEY_BYTES];
	uint32_t head;
};

struct srv_topics {
	struct srv_map by_name;
	struct topic *t;
	uint32_t *free_t, n_free_t;
	struct sub *subs;
	uint32_t *free_s, n_free_s;
};

struct srv_iptable {
	struct srv_map m; /* ip -> unauthenticated connections */
};

struct srv_acctable {
	struct srv_map m; /* account -> first session's slot */
};

/*
 * Failed verifications of connections that no request has been accepted on yet,
 * each table a token bucket per key (srv_bucket.h), in thousandths of a request:
 * s->fails by IP address, s->known by known (address, account) pair, "ip|account",
 * an account that has had a request accepted from that address (mark_ms: when it
 * last had, or last closed such a session there).
 */

static uint64_t conn_id(const struct srv_conn *c)
{
	return (uint64_t)c->gen << 32 | c->slot;
}

static struct srv_conn *conn_of(struct srv *s, uint64_t id)
{
	uint32_t slot = (uint32_t)id;
	if (slot >= (uint32_t)s->cfg.max_connections)
		return NULL;
	struct srv_conn *c = &s->conns[slot];
	return c->used && c->gen == (uint32_t)(id >> 32) ? c : NULL;
}

static void account_key(uint32_t account, char key[KEY_BYTES])
{
	snprintf(key, KEY_BYTES, "%u", account);
}

/* ---------- sending ---------- */

static void conn_close(struct srv_conn *c, const char *why);
static void conn_free(struct srv_conn *c);
static void resume_if_possible(struct srv_conn *c);

/* Reading frames on or off (flow control, closing, draining). */
static void conn_reading(struct srv_conn *c, bool on)
{
	if (on == c->reading)
		return;
	c->reading = on;
	if (!on) {
		event_del(c->ev_rd);
		/* The server holds off: the partial-frame deadline stops (conn_frames sets
		 * it again once reading resumes with a frame still incomplete). */
		if (c->tls_up && !c->closing && c->timer_armed) {
			evtimer_del(c->timer);
			c->timer_armed = false;
		}
		return;
	}
	int64_t ms = c->s->cfg.idle_timeout_ms;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	event_add(c->ev_rd, c->idle ? &tv : NULL);
}

/*
 * ev_wr is added exactly while something waits for the socket to take more.
 * A blocked write carries write_timeout_ms: the event is persistent, so each
 * time the socket takes more the deadline starts again, and it passes only
 * when the client has read nothing for that long.
 */
static void conn_want_write(struct srv_conn *c)
{
	bool want = c->wr_blocked || c->rd_wants_wr;
	bool timed = want && c->wr_blocked && c->s->cfg.write_timeout_ms > 0;
	if (want == c->wr_added && timed == c->wr_timed)
		return;
	/* Deleted first: event_add with no timeout keeps one already set. */
	if (c->wr_added)
		event_del(c->ev_wr);
	c->wr_added = want;
	c->wr_timed = timed;
	if (!want)
		return;
	int64_t ms = c->s->cfg.write_timeout_ms;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	event_add(c->ev_wr, timed ? &tv : NULL);
}

/* A TLS or socket failure: the connection goes, the reason to the debug log. */
static void conn_error(struct srv_conn *c)
{
	int err = errno;
	unsigned long e = ERR_get_error();
	char buf[256] = "connection closed by the peer";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	else if (err)
		snprintf(buf, sizeof(buf), "%s", strerror(err));
	ERR_clear_error();
	conn_free(c);
	srv_log(SRV_LOG_DEBUG, "connection error", "reason=\"%s\"", buf);
}

/* Writes what is queued until the socket takes no more (then ev_wr resumes it). */
static void conn_write(struct srv_conn *c)
{
	struct srv *s = c->s;
	if (!c->tls_up)
		return;
	size_t queued;
	while ((queued = evbuffer_get_length(c->out)) > 0) {
		size_t n = queued < IO_CHUNK ? queued : IO_CHUNK;
		/* A retry after WANT_WRITE starts with the same bytes and is no shorter:
		 * what OpenSSL needs, with SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. */
		const unsigned char *p = evbuffer_pullup(c->out, (ev_ssize_t)n);
		if (p == NULL) {
			conn_close(c, "out of memory");
			return;
		}
		ERR_clear_error();
		errno = 0;
		int r = SSL_write(c->ssl, p, (int)n);
		if (r > 0) {
			evbuffer_drain(c->out, (size_t)r);
			continue;
		}
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE) {
			c->wr_blocked = true;
			conn_want_write(c);
			break;
		}
		if (e == SSL_ERROR_WANT_READ) {
			conn_close(c, "TLS wants to read before it can write (renegotiation?)");
			return;
		}
		conn_error(c);
		return;
	}
	if (queued == 0) {
		c->wr_blocked = false;
		conn_want_write(c);
		if (c->closing) {
			conn_free(c);
			return;
		}
	}
	if (c->paused_out && queued <= (size_t)s->cfg.out_buffer_soft_bytes / 2) {
		c->paused_out = false;
		resume_if_possible(c);
	}
}

/* Queues the connection for this loop turn's flush (flush_cb). */
static void conn_mark_dirty(struct srv_conn *c)
{
	struct srv *s = c->s;
	if (c->dirty || c->wr_blocked)
		return; /* queued already, or written when the socket takes more */
	c->dirty = true;
	c->dirty_pos = s->n_dirty;
	s->dirty[s->n_dirty++] = c->slot;
	if (s->n_dirty == 1)
		event_active(s->flush_ev, EV_WRITE, 0);
}

static void conn_unmark_dirty(struct srv_conn *c)
{
	struct srv *s = c->s;
	if (!c->dirty)
		return;
	c->dirty = false;
	uint32_t last = s->dirty[--s->n_dirty];
	s->dirty[c->dirty_pos] = last;
	s->conns[last].dirty_pos = c->dirty_pos;
}

/* Runs once per loop turn after the callbacks that queued output. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct srv *s = arg;
	while (s->n_dirty > 0) {
		struct srv_conn *c = &s->conns[s->dirty[--s->n_dirty]];
		c->dirty = false;
		conn_write(c);
	}
}

static void conn_send(struct srv_conn *c, const uint8_t *frame, size_t len)
{
	struct srv *s = c->s;
	if (c->closing || len == 0)
		return;
	if (evbuffer_add(c->out, frame, len) != 0) {
		conn_close(c, "out of memory");
		return;
	}
	atomic_fetch_add_explicit(&s->m.frames_out, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->m.bytes_out, len, memory_order_relaxed);
	size_t queued = evbuffer_get_length(c->out);
	if (queued > (size_t)s->cfg.out_buffer_hard_bytes) {
		atomic_fetch_add(&s->m.closed_slow, 1);
		conn_close(c, "client does not read its replies (out_buffer_hard_bytes)");
		return;
	}
	if (queued > (size_t)s->cfg.out_buffer_soft_bytes && !c->paused_out) {
		c->paused_out = true;
		conn_reading(c, false);
		srv_log(SRV_LOG_DEBUG, "not reading from a slow client", "ip=%s queued=%zu", c->ip,
			queued);
	}
	conn_mark_dirty(c);
}

/* A framing error: say why, then close once the reply is out. */
static void protocol_error(struct srv_conn *c, const char *detail)
{
	uint8_t buf[SRV_FRAME_SMALL_MAX];
	size_t n = srv_frame_reject(buf, sizeof(buf), c->account, 0,
				    GRIDEX__V1__REJECT_REASON__PROTOCOL, detail);
	conn_send(c, buf, n);
	atomic_fetch_add(&c->s->m.closed_protocol, 1);
	srv_log(SRV_LOG_INFO, "protocol error", "ip=%s reason=\"%s\"", c->ip, detail);
	conn_close(c, NULL);
}

static void reply_reject(struct srv_conn *c, uint32_t account, uint64_t nonce, uint32_t reason,
			 const char *detail)
{
	uint8_t buf[SRV_FRAME_SMALL_MAX];
	conn_send(c, buf, srv_frame_reject(buf, sizeof(buf), account, nonce, reason, detail));
}

/* ---------- connection lifecycle ---------- */

static void unauth_release(struct srv_conn *c)
{
	if (!c->unauth_counted)
		return;
	c->unauth_counted = false;
	uint32_t *n = srv_map_get(&c->s->ips->m, c->ip_key);
	if (n && --*n == 0)
		srv_map_del(&c->s->ips->m, c->ip_key);
}

static void pair_known(struct srv_conn *c);

static void session_unlink(struct srv_conn *c)
{
	struct srv *s = c->s;
	if (!c->authed)
		return;
	pair_known(c); /* known for verify_known_pair_ms from its last session's end */
	char key[KEY_BYTES];
	account_key(c->account, key);
	if (c->acct_prev != NONE)
		s->conns[c->acct_prev].acct_next = c->acct_next;
	else if (c->acct_next != NONE) {
		uint32_t *head = srv_map_get(&s->accts->m, key);
		if (head) /* always: an authed session's account is in the map */
			*head = c->acct_next;
	} else {
		srv_map_del(&s->accts->m, key);
	}
	if (c->acct_next != NONE)
		s->conns[c->acct_next].acct_prev = c->acct_prev;
	c->authed = false;
}

static void session_link(struct srv_conn *c)
{
	struct srv *s = c->s;
	char key[KEY_BYTES];
	account_key(c->account, key);
	uint32_t *head = srv_map_get(&s->accts->m, key);
	c->acct_prev = NONE;
	c->acct_next = head ? *head : NONE;
	if (head) {
		s->conns[*head].acct_prev = c->slot;
		*head = c->slot;
	} else if (!srv_map_put(&s->accts->m, key, c->slot)) {
		return; /* cannot happen: the map holds max_connections accounts */
	}
	c->authed = true;
	unauth_release(c);
	pair_known(c);
}

static void unsubscribe_node(struct srv *s, uint32_t node)
{
	struct srv_topics *T = s->topics;
	struct sub *n = &T->subs[node];
	struct topic *t = &T->t[n->topic];
	if (n->prev != NONE)
		T->subs[n->prev].next = n->next;
	else
		t->head = n->next;
	if (n->next != NONE)
		T->subs[n->next].prev = n->prev;
	if (t->head == NONE) {
		srv_map_del(&T->by_name, t->name);
		T->free_t[T->n_free_t++] = n->topic;
	}
	T->free_s[T->n_free_s++] = node;
	atomic_fetch_sub(&s->m.subscriptions, 1);
}

/* The index in c->subs of c's subscription to topic, or -1. */
static int sub_find(const struct srv *s, const struct srv_conn *c, const char *topic)
{
	const struct srv_topics *T = s->topics;
	for (uint32_t i = 0; i < c->n_subs; i++)
		if (strcmp(T->t[T->subs[c->subs[i]].topic].name, topic) == 0)
			return (int)i;
	return -1;
}

/* Ends c's i-th subscription (the last takes its place). */
static void sub_drop(struct srv *s, struct srv_conn *c, uint32_t i)
{
	unsubscribe_node(s, c->subs[i]);
	c->subs[i] = c->subs[--c->n_subs];
}

/* Frees the TLS session, events, socket and buffers of a connection. The events go
 * before the socket: deleting an event of a closed descriptor fails (libevent warns
 * "Bad file descriptor"), and another thread may have been given that number meanwhile. */
static void conn_release(struct srv_conn *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->ev_rd)
		event_free(c->ev_rd);
	if (c->ev_wr)
		event_free(c->ev_wr);
	if (c->fd >= 0)
		evutil_closesocket(c->fd);
	if (c->in)
		evbuffer_free(c->in);
	if (c->out)
		evbuffer_free(c->out);
	c->ssl = NULL;
	c->fd = -1;
	c->ev_rd = c->ev_wr = NULL;
	c->in = c->out = NULL;
	c->reading = c->wr_added = c->wr_timed = false;
}

static void verify_failed(struct srv_conn *c, uint32_t n);

static void conn_free(struct srv_conn *c)
{
	struct srv *s = c->s;
	/* Gone before any request was accepted, with requests still being verified:
	 * their answers will find no connection, so they count as failed now (else a
	 * client could send and close, again and again, uncounted). */
	if (!c->authed && c->inflight > 0)
		verify_failed(c, c->inflight);
	c->inflight = 0;
	session_unlink(c);
	unauth_release(c);
	for (uint32_t i = 0; i < c->n_subs; i++)
		unsubscribe_node(s, c->subs[i]);
	c->n_subs = 0;
	conn_unmark_dirty(c);
	conn_release(c);
	evtimer_del(c->timer);
	c->used = false;
	c->gen++;
	s->free_conns[s->n_free++] = c->slot;
	atomic_fetch_sub(&s->m.connections_open, 1);
}

/* Closes now, or (why == NULL) once what is queued for the client is written. */
static void conn_close(struct srv_conn *c, const char *why)
{
	if (why)
		srv_log(SRV_LOG_INFO, "connection closed", "ip=%s account=%u reason=\"%s\"", c->ip,
			c->account, why);
	if (why || evbuffer_get_length(c->out) == 0 || !c->tls_up) {
		conn_free(c);
		return;
	}
	/* Linger: conn_write frees it when drained; the timer bounds the wait. */
	c->closing = true;
	conn_reading(c, false);
	struct timeval tv = {.tv_sec = 2};
	evtimer_add(c->timer, &tv);
}

static void arm_timer(struct srv_conn *c, int64_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
	c->timer_armed = true;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct srv_conn *c = arg;
	c->timer_armed = false;
	if (c->closing) {
		conn_free(c);
		return;
	}
	atomic_fetch_add(&c->s->m.closed_timeout, 1);
	conn_close(c, c->tls_up ? "partial frame not completed in time (partial_frame_ms)"
				: "TLS handshake not completed in time (handshake_timeout_ms)");
}

/* ---------- reading ---------- */

static void resume_if_possible(struct srv_conn *c)
{
	if (c->closing || c->paused_out || c->paused_inflight || c->s->draining)
		return;
	conn_reading(c, true);
	/* Frames already buffered, or records OpenSSL has read ahead, raise no new
	 * read event: ask for one, deferred so that the caller's connection stays valid. */
	if (evbuffer_get_length(c->in) > 0 || SSL_has_pending(c->ssl))
		event_active(c->ev_rd, EV_READ, 0);
}

/* Requests in flight beyond which a connection is not read: fewer until one of its
 * requests has been accepted (each may cost a verification). */
static uint32_t inflight_max(const struct srv_conn *c)
{
	return c->authed ? 1024 : (uint32_t)c->s->cfg.unauth_inflight_max;
}

/* key's bucket in F, refilled to now; created (full) when asked and there is room,
 * else NULL. */
static struct srv_bucket *fail_bucket(struct srv_buckets *F, const char *key, bool create)
{
	return srv_buckets_get(F, key, create, srv_mono_ms());
}

/* The key of c's (address, account) pair; false when the pair is not counted. */
static bool pair_key(const struct srv_conn *c, char key[KEY_BYTES])
{
	if (c->s->cfg.verify_known_pairs_max == 0 || c->account == 0)
		return false;
	int n = snprintf(key, KEY_BYTES, "%s|%u", c->ip_key, c->account);
	return n > 0 && n < KEY_BYTES;
}

/* c's account has had a request accepted from c's address, or a session of it there
 * closes: the pair is known from now on, for verify_known_pair_ms. */
static void pair_known(struct srv_conn *c)
{
	char key[KEY_BYTES];
	if (!pair_key(c, key))
		return;
	struct srv_bucket *b = fail_bucket(c->s->known, key, true);
	if (b != NULL)
		b->mark_ms = srv_mono_ms();
}

/* The bucket of c's pair when it is known, else NULL. */
static struct srv_bucket *pair_bucket(struct srv_conn *c)
{
	char key[KEY_BYTES];
	return pair_key(c, key) ? fail_bucket(c->s->known, key, false) : NULL;
}

/*
 * Whether a request of c, a connection not yet accepted, may be verified: while
 * its address has allowance left, or else while the pair of its address and the
 * account it claims is known and has allowance left.
 */
static bool verify_allowed(struct srv_conn *c)
{
	struct srv *s = c->s;
	if (s->cfg.verify_failures_per_ip_per_second == 0)
		return true;
	struct srv_bucket *b = fail_bucket(s->fails, c->ip_key, false);
	if (b == NULL || b->milli >= 1000)
		return true;
	struct srv_bucket *p = pair_bucket(c);
	if (p == NULL || p->milli < 1000)
		return false;
	atomic_fetch_add(&s->m.verified_known, 1);
	return true;
}

static void fail_charge(struct srv_bucket *b, uint32_t n)
{
	int64_t cost = (int64_t)n * 1000;
	if (b != NULL)
		b->milli = b->milli >= cost ? b->milli - cost : 0;
}

/* n requests of c, a connection not yet accepted, failed verification: they count
 * against its address, and against its pair when that is known. */
static void verify_failed(struct srv_conn *c, uint32_t n)
{
	struct srv *s = c->s;
	if (s->cfg.verify_failures_per_ip_per_second == 0)
		return;
	fail_charge(fail_bucket(s->fails, c->ip_key, true), n);
	fail_charge(pair_bucket(c), n);
}

/* Whether one of the sessions open of b's account is from b's address (b a pair). */
static bool pair_in_session(struct srv *s, const struct srv_bucket *b)
{
	const char *bar = strrchr(b->key, '|');
	char key[KEY_BYTES];
	if (bar == NULL)
		return false;
	snprintf(key, KEY_BYTES, "%s", bar + 1);
	uint32_t *head = srv_map_get(&s->accts->m, key);
	for (uint32_t i = head ? *head : NONE; i != NONE; i = s->conns[i].acct_next) {
		if (pair_key(&s->conns[i], key) && strcmp(key, b->key) == 0)
			return true;
	}
	return false;
}

/* Every second: addresses whose allowance is whole again are forgotten, and pairs
 * known for longer than verify_known_pair_ms with no session open (a pair with one
 * is known from now on). */
static void fails_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct srv *s = arg;
	struct srv_buckets *K = s->known;
	int64_t now = srv_mono_ms();
	srv_buckets_forget_full(s->fails, now);
	for (uint32_t i = 0; i < K->n;) {
		if (now - K->b[i].mark_ms <= s->cfg.verify_known_pair_ms)
			i++;
		else if (pair_in_session(s, &K->b[i]))
			K->b[i++].mark_ms = now;
		else
			srv_buckets_forget(K, i);
	}
}

/* A request refused OVERLOADED before verification: counted and answered. */
static void refuse_overloaded(struct srv_conn *c, const struct srv_request *r, const char *detail)
{
	atomic_fetch_add(&c->s->m.requests[r->type < SRV_REQUEST_TYPES ? r->type : 0]
					  [GRIDEX__V1__REJECT_REASON__OVERLOADED],
			 1);
	reply_reject(c, r->account, r->nonce, GRIDEX__V1__REJECT_REASON__OVERLOADED, detail);
}

/* Whether a request of this type can make fills. */
static bool trades(uint32_t type)
{
	return type == GRIDEX__V1__REQUEST_TYPE__NEW_ORDER ||
	       type == GRIDEX__V1__REQUEST_TYPE__NEW_BASKET ||
	       type == GRIDEX__V1__REQUEST_TYPE__MODIFY;
}

static void handle_request(struct srv_conn *c, const uint8_t *body, size_t len)
{
	struct srv *s = c->s;
	struct srv_job job = {.kind = SRV_JOB_REQUEST, .conn = conn_id(c), .t.in = srv_mono_ns()};
	int rc = srv_request_decode(body, len, (size_t)s->cfg.body_bytes_max, &job.req);
	if (rc != SRV_AUTH_OK) {
		atomic_fetch_add(&s->m.requests[0][GRIDEX__V1__REJECT_REASON__MALFORMED], 1);
		/* The account only names the request: nothing was verified. */
		reply_reject(c, job.req.account, job.req.nonce,
			     GRIDEX__V1__REJECT_REASON__MALFORMED,
			     rc == SRV_AUTH_TOO_BIG ? "request body above body_bytes_max"
						    : "malformed request (docs/protocol.md)");
		return;
	}
	if (c->account != 0 && job.req.account != c->account) {
		reply_reject(c, job.req.account, job.req.nonce,
			     GRIDEX__V1__REJECT_REASON__MALFORMED, "one account per connection");
		return;
	}
	c->account = job.req.account;
	if (atomic_load_explicit(&s->m.settlement_halted, memory_order_relaxed) &&
	    trades(job.req.type)) {
		/* Nothing that could trade while the ledger cannot take what trades. */
		atomic_fetch_add(
			&s->m.requests[job.req.type][GRIDEX__V1__REJECT_REASON__SETTLEMENT_HALTED],
			1);
		reply_reject(c, job.req.account, job.req.nonce,
			     GRIDEX__V1__REJECT_REASON__SETTLEMENT_HALTED,
			     "settlement is halted: the ledger refused settlement (see the server "
			     "log); cancels still work");
		return;
	}
	if (!c->authed && !verify_allowed(c)) {
		atomic_fetch_add(&s->m.refused_unverified, 1);
		refuse_overloaded(c, &job.req,
				  "too many requests from this address failed verification "
				  "(verify_failures_per_ip_per_second); not verified");
		return;
	}
	if (!srv_verify_push(s, &job)) {
		refuse_overloaded(c, &job.req, "server busy; retry with a new nonce");
		return;
	}
	if (++c->inflight >= inflight_max(c) && !c->paused_inflight) {
		/* Many requests in the pipeline: wait for their answers before reading more. */
		c->paused_inflight = true;
		conn_reading(c, false);
	}
}

static void handle_subscribe(struct srv_conn *c, const uint8_t *body, size_t len, bool subscribe)
{
	struct srv *s = c->s;
	Gridex__V1__Subscribe *m = NULL;
	Gridex__V1__Unsubscribe *u = NULL;
	ProtobufCBinaryData product;
	bool trades = false;
	if (subscribe) {
		m = gridex__v1__subscribe__unpack(NULL, len, body);
		if (m == NULL || m->base.n_unknown_fields) {
			if (m)
				gridex__v1__subscribe__free_unpacked(m, NULL);
			protocol_error(c, "malformed Subscribe");
			return;
		}
		product = m->product;
		trades = m->trades;
	} else {
		u = gridex__v1__unsubscribe__unpack(NULL, len, body);
		if (u == NULL || u->base.n_unknown_fields) {
			if (u)
				gridex__v1__unsubscribe__free_unpacked(u, NULL);
			protocol_error(c, "malformed Unsubscribe");
			return;
		}
		product = u->product;
	}
	char topic[SRV_PRODUCT_BYTES_MAX + 1] = "";
	bool ok = srv_product_token_ok(product.data, product.len);
	if (ok)
		memcpy(topic, product.data, product.len);
	if (m)
		gridex__v1__subscribe__free_unpacked(m, NULL);
	if (u)
		gridex__v1__unsubscribe__free_unpacked(u, NULL);
	if (!ok) {
		reply_reject(c, 0, 0, GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT,
			     "a product or accelerator class: 1-63 bytes of [A-Za-z0-9._/:-]");
		return;
	}
	int held = sub_find(s, c, topic);
	if (!subscribe && c->sub_jobs == 0) {
		/* Nothing of this connection's at the core to overtake: it stops now. */
		if (held >= 0)
			sub_drop(s, c, (uint32_t)held);
		return;
	}
	/* What the core will answer counts now: a burst of Subscribes cannot pass the
	 * limit (a re-subscribe replaces the one held). */
	if (subscribe && c->n_subs + c->subs_pending - (held >= 0 ? 1 : 0) >=
				 (uint32_t)s->cfg.subscriptions_per_conn_max) {
		reply_reject(c, 0, 0, GRIDEX__V1__REJECT_REASON__OVERLOADED,
			     "too many subscriptions (subscriptions_per_conn_max)");
		return;
	}
	struct srv_job job = {.kind = SRV_JOB_SUBSCRIBE,
			      .conn = conn_id(c),
			      .trades = trades,
			      .unsubscribe = !subscribe};
	memcpy(job.topic, topic, sizeof(topic));
	/* Straight to the core: snapshots must be taken in sequence with the updates, and
	 * an Unsubscribe after a Subscribe still there must not overtake it. */
	if (srv_queue_push(&s->core_q, &job, 1, false, NULL) != 1) {
		reply_reject(c, 0, 0, GRIDEX__V1__REJECT_REASON__OVERLOADED, "server busy; retry");
		return;
	}
	c->sub_jobs++;
	if (subscribe)
		c->subs_pending++;
}

/* Handles the complete frames in c->in while reading is on. */
static void conn_frames(struct srv_conn *c)
{
	struct srv *s = c->s;
	struct evbuffer *in = c->in;
	while (!c->closing && c->reading) {
		size_t have = evbuffer_get_length(in);
		uint8_t header[WIRE_HEADER_BYTES];
		if (have < WIRE_HEADER_BYTES)
			break;
		evbuffer_copyout(in, header, sizeof(header));
		uint32_t body_len = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 |
				    (uint32_t)header[2] << 8 | header[3];
		if (body_len == 0 || body_len > (uint32_t)s->cfg.frame_bytes_max) {
			protocol_error(c, body_len == 0 ? "frame length 0"
							: "frame length above frame_bytes_max");
			return;
		}
		if (have < WIRE_HEADER_BYTES + (size_t)body_len)
			break;
		const uint8_t *frame = evbuffer_pullup(in, WIRE_HEADER_BYTES + body_len);
		const uint8_t *body;
		size_t body_bytes, frame_bytes;
		if (frame == NULL || wire_frame_decode(frame, WIRE_HEADER_BYTES + body_len,
						       (uint32_t)s->cfg.frame_bytes_max, &body,
						       &body_bytes, &frame_bytes) != WIRE_OK) {
			conn_close(c, "out of memory");
			return;
		}
		atomic_fetch_add_explicit(&s->m.frames_in, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->m.bytes_in, frame_bytes, memory_order_relaxed);
		int field;
		const uint8_t *inner;
		size_t inner_len;
		if (srv_client_frame_split(body, body_bytes, &field, &inner, &inner_len) != 0) {
			protocol_error(c, "a ClientFrame must carry exactly one field");
			return;
		}
		if (field == SRV_CF_REQUEST)
			handle_request(c, inner, inner_len);
		else
			handle_subscribe(c, inner, inner_len, field == SRV_CF_SUBSCRIBE);
		if (c->closing || !c->used)
			return;
		evbuffer_drain(in, frame_bytes);
	}
	/* A started frame must complete within partial_frame_ms, while the server reads:
	 * what waits while it holds off (conn_reading) is not the client's delay. */
	if (c->used && !c->closing) {
		bool started = c->reading && evbuffer_get_length(in) > 0;
		if (started && !c->timer_armed)
			arm_timer(c, s->cfg.partial_frame_ms);
		else if (!started && c->timer_armed) {
			evtimer_del(c->timer);
			c->timer_armed = false;
		}
	}
}

/* Reads until OpenSSL wants more from the socket, handling frames as they come. */
static void conn_read(struct srv_conn *c)
{
	conn_frames(c); /* what was left while reading was off */
	size_t got = 0;
	while (c->used && c->reading && !c->closing) {
		struct evbuffer_iovec v;
		if (evbuffer_reserve_space(c->in, IO_CHUNK, &v, 1) < 1) {
			conn_close(c, "out of memory");
			return;
		}
		size_t room = v.iov_len < IO_CHUNK ? v.iov_len : IO_CHUNK;
		ERR_clear_error();
		errno = 0;
		int r = SSL_read(c->ssl, v.iov_base, (int)room);
		if (r <= 0) {
			evbuffer_commit_space(c->in, &v, 0);
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				return;
			if (e == SSL_ERROR_WANT_WRITE) {
				c->rd_wants_wr = true;
				conn_want_write(c);
				return;
			}
			if (e == SSL_ERROR_ZERO_RETURN) {
				conn_free(c); /* the client said goodbye */
				return;
			}
			conn_error(c);
			return;
		}
		v.iov_len = (size_t)r;
		evbuffer_commit_space(c->in, &v, 1);
		conn_frames(c);
		got += (size_t)r;
		if (!c->used || !c->reading || c->closing)
			return;
		/* Nothing read ahead: what else the socket holds raises the (level-
		 * triggered) read event again, so no read() is spent learning it is empty. */
		if (!SSL_has_pending(c->ssl))
			return;
		if (got >= READ_BUDGET) {
			event_active(c->ev_rd, EV_READ, 0); /* the rest after the others */
			return;
		}
	}
}

static void idle_timeouts(struct srv_conn *c)
{
	c->idle = c->s->cfg.idle_timeout_ms > 0 && c->n_subs == 0;
	if (c->reading) {
		/* Deleted and added again: event_add with no timeout keeps one already
		 * set. (Not through conn_reading, which would stop a partial-frame
		 * deadline.) */
		event_del(c->ev_rd);
		c->reading = false;
		conn_reading(c, true);
	}
}

static void conn_handshake(struct srv_conn *c)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls_up = true;
		c->rd_wants_wr = false;
		conn_want_write(c);
		evtimer_del(c->timer);
		c->timer_armed = false;
		idle_timeouts(c);
		conn_read(c); /* a request may have come with the client's last flight */
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		c->rd_wants_wr = e == SSL_ERROR_WANT_WRITE;
		conn_want_write(c);
		return;
	}
	conn_error(c);
}

/*
 * Whether the socket is readable (POLLIN) or writable (POLLOUT) now. A deadline
 * that passed while the loop was late (a busy thread, a loaded host) may come
 * with the socket ready all the same: libevent then reports the timeout alone,
 * and the client, which did send or read, is not closed for it.
 */
static bool socket_ready(evutil_socket_t fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	return poll(&p, 1, 0) == 1 && (p.revents & events) != 0;
}

/* ev_rd: frames to read, or the idle timeout. */
static void conn_rd_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct srv_conn *c = arg;
	if ((what & EV_TIMEOUT) && !socket_ready(c->fd, POLLIN)) {
		atomic_fetch_add(&c->s->m.closed_timeout, 1);
		conn_close(c, "idle (idle_timeout_ms)");
		return;
	}
	if (!c->tls_up) {
		conn_handshake(c);
		return;
	}
	conn_read(c);
}

/* ev_wr: the socket takes more, or a blocked write's deadline passed. */
static void conn_wr_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct srv_conn *c = arg;
	if ((what & EV_TIMEOUT) && !socket_ready(c->fd, POLLOUT)) {
		atomic_fetch_add(&c->s->m.closed_slow, 1);
		conn_close(c, "client takes none of its replies (write_timeout_ms)");
		return;
	}
	if (!c->tls_up) {
		conn_handshake(c);
		return;
	}
	if (c->rd_wants_wr) {
		c->rd_wants_wr = false;
		conn_want_write(c);
		conn_read(c);
		if (!c->used)
			return;
	}
	if (c->wr_blocked)
		conn_write(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
		      int socklen, void *arg)
{
	(void)l;
	(void)socklen;
	struct srv *s = arg;
	char ip[KEY_BYTES], key[KEY_BYTES];
	srv_addr_key(addr, ip, key, KEY_BYTES);
	if (s->n_free == 0) {
		atomic_fetch_add(&s->m.refused_full, 1);
		srv_log(SRV_LOG_WARN, "connection refused", "ip=%s reason=max_connections", ip);
		evutil_closesocket(fd);
		return;
	}
	uint32_t *per_ip = srv_map_get(&s->ips->m, key);
	if (per_ip == NULL)
		per_ip = srv_map_put(&s->ips->m, key, 0);
	if (per_ip == NULL || *per_ip >= (uint32_t)s->cfg.max_unauth_per_ip) {
		atomic_fetch_add(&s->m.refused_per_ip, 1);
		srv_log(SRV_LOG_WARN, "connection refused", "ip=%s reason=max_unauth_per_ip", ip);
		evutil_closesocket(fd);
		return;
	}
	/* Bound what the kernel holds for a client that does not read, so that the
	 * output-buffer limits see it; autotuning would take megabytes. */
	if (s->cfg.sndbuf_bytes > 0) {
		int sndbuf = (int)s->cfg.sndbuf_bytes;
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	}
	/* Replies are small and latency matters: no Nagle delay behind an unacknowledged
	 * segment (with pipelined requests it held answers for a delayed ACK, ~40 ms). */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* The listener made the socket non-blocking. */
	struct srv_conn *c = &s->conns[s->free_conns[s->n_free - 1]];
	uint32_t slot = c->slot, gen = c->gen;
	uint32_t *subs = c->subs;
	struct event *timer = c->timer;
	*c = (struct srv_conn){.s = s,
			       .fd = fd,
			       .ssl = SSL_new(s->tls),
			       .ev_rd = event_new(s->base, fd, EV_READ | EV_PERSIST, conn_rd_cb, c),
			       .ev_wr =
				       event_new(s->base, fd, EV_WRITE | EV_PERSIST, conn_wr_cb, c),
			       .in = evbuffer_new(),
			       .out = evbuffer_new(),
			       .timer = timer,
			       .slot = slot,
			       .gen = gen,
			       .acct_prev = NONE,
			       .acct_next = NONE,
			       .subs = subs};
	if (!c->ssl || !c->ev_rd || !c->ev_wr || !c->in || !c->out || SSL_set_fd(c->ssl, fd) != 1) {
		conn_release(c);  /* closes fd; the slot stays free */
		if (*per_ip == 0) /* the entry made for this connection */
			srv_map_del(&s->ips->m, key);
		srv_log(SRV_LOG_ERROR, "connection refused", "ip=%s reason=out_of_memory", ip);
		return;
	}
	SSL_set_accept_state(c->ssl);
	/* conn_write retries from an evbuffer that may move, and takes partial writes;
	 * conn_read reads until OpenSSL wants the socket, so reading ahead (whatever
	 * records have arrived, in one read()) leaves nothing behind unnoticed. Set
	 * here, not on the context: the HTTP API shares it through libevent's
	 * bufferevent_openssl, which handles neither. */
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_read_ahead(c->ssl, 1);
	s->n_free--;
	(*per_ip)++;
	c->used = true;
	c->unauth_counted = true;
	memcpy(c->ip, ip, sizeof(ip));
	memcpy(c->ip_key, key, sizeof(key));
	conn_reading(c, true);
	arm_timer(c, s->cfg.handshake_timeout_ms);
	atomic_fetch_add(&s->m.connections_open, 1);
	atomic_fetch_add(&s->m.connections_accepted, 1);
}

/* ---------- accept failures ---------- */

/*
 * accept() fails when the process or the system is out of file descriptors
 * (EMFILE, ENFILE) or memory. The connection stays in the kernel's backlog,
 * so the listening socket stays readable: retried at once, the I/O thread
 * would spin at full speed (and libevent would log every attempt) while the
 * clients it serves wait. The port stops accepting for accept_retry_ms
 * instead; connections that arrive meanwhile wait in the backlog.
 *
 * An error callback gets the listener's own argument, which for evhttp's
 * listeners is the evhttp: the port is found from the listener, among the
 * ports of the one server of the process.
 */
static struct srv *guarded;

static void port_error_cb(struct evconnlistener *l, void *arg)
{
	(void)arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct srv *s = guarded;
	struct srv_port *p = NULL;
	for (size_t i = 0; s && i < s->n_ports; i++)
		if (s->ports[i].l == l)
			p = &s->ports[i];
	if (p == NULL) {
		/* Cannot happen: only guarded ports have this callback. */
		evconnlistener_disable(l);
		return;
	}
	atomic_fetch_add(&s->m.accept_errors, 1);
	p->failures++;
	srv_port_pause(p);
	int64_t ms = s->cfg.accept_retry_ms;
	int64_t now = srv_mono_ms();
	if (srv_log_due(&p->logged_ms, now)) {
		srv_log(SRV_LOG_WARN, "cannot accept connections; retrying",
			"port=%s error=\"%s\" failures=%llu retry_ms=%lld", p->name,
			evutil_socket_error_to_string(err), (unsigned long long)p->failures,
			(long long)ms);
		p->failures = 0;
	}
}

static void port_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct srv_port *p = arg;
	if (p->l == p->s->listener && p->s->draining)
		return; /* the order port stays closed once draining */
	if (!srv_http_room(p)) {
		srv_http_make_room(p); /* for the next look, when one waits */
		srv_port_pause(p);     /* still http_connections_max open */
		return;
	}
	evconnlistener_enable(p->l);
}

void srv_port_pause(struct srv_port *p)
{
	evconnlistener_disable(p->l);
	int64_t ms = p->s->cfg.accept_retry_ms;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	evtimer_add(p->retry, &tv);
}

int srv_port_guard(struct srv *s, struct evconnlistener *l, const char *name)
{
	if (l == NULL || s->n_ports == SRV_PORTS || (guarded != NULL && guarded != s))
		return -1;
	guarded = s;
	struct srv_port *p = &s->ports[s->n_ports];
	*p = (struct srv_port){.s = s, .l = l, .name = name};
	p->retry = evtimer_new(evconnlistener_get_base(l), port_retry_cb, p);
	if (p->retry == NULL)
		return -1;
	s->n_ports++;
	evconnlistener_set_error_cb(l, port_error_cb);
	return 0;
}

/* ---------- output from the pipeline ---------- */

/* A journaled request's answer: how long each stage took. */
static void count_stages(struct srv *s, const struct srv_stamps *t)
{
	if (t->in == 0 || t->core == 0)
		return; /* refused before the journal: no stages to tell */
	int64_t now = srv_mono_ns();
	const int64_t d[SRV_STAGE_TOTAL + 1] = {
		[SRV_STAGE_VERIFY] = t->verified - t->in,
		[SRV_STAGE_JOURNAL] = t->journaled - t->verified,
		[SRV_STAGE_CORE] = t->core - t->journaled,
		[SRV_STAGE_DELIVER] = now - t->core,
		[SRV_STAGE_TOTAL] = now - t->in,
	};
	for (int st = 0; st <= SRV_STAGE_TOTAL; st++)
		srv_stage_count(&s->m, st, d[st]);
}

/* Whether a reject shows that its request's signature verified under the account's key
 * with a fresh nonce, as an ACK does: true of every reason the core decides after it
 * accepted the nonce (srv_core_handle), false of those of verification, of the nonce
 * check and of this thread. */
static bool reject_proves_key(uint8_t reason)
{
	switch (reason) {
	case GRIDEX__V1__REJECT_REASON__REJECT_REASON_UNSPECIFIED:
	case GRIDEX__V1__REJECT_REASON__BAD_SIGNATURE:
	case GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT:
	case GRIDEX__V1__REJECT_REASON__STALE_NONCE:
	case GRIDEX__V1__REJECT_REASON__EXPIRED:
	case GRIDEX__V1__REJECT_REASON__EXPIRY_TOO_FAR:
	case GRIDEX__V1__REJECT_REASON__MALFORMED:
	case GRIDEX__V1__REJECT_REASON__OVERLOADED:
	case GRIDEX__V1__REJECT_REASON__PROTOCOL:
		return false;
	default:
		return true;
	}
}

static void deliver_reply(struct srv *s, const struct srv_out *o)
{
	struct srv_conn *c = conn_of(s, o->conn);
	if (c == NULL)
		return; /* gone: the client reconnects and queries */
	const struct srv_report *r = &o->u.report;
	uint8_t buf[SRV_FRAME_SMALL_MAX];
	size_t n;
	if (r->kind == SRV_REPORT_ACK) {
		if (!c->authed && c->account == r->account)
			session_link(c); /* a fresh nonce under the account's key: a session */
		n = srv_frame_ack(buf, sizeof(buf), r->account, r->nonce, o->sequence);
	} else {
		if (!c->authed && (r->reason == GRIDEX__V1__REJECT_REASON__BAD_SIGNATURE ||
				   r->reason == GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT))
			verify_failed(c, 1);
		else if (!c->authed && c->account == r->account && reject_proves_key(r->reason))
			session_link(c); /* refused for what it asked, not for who asked */
		n = srv_frame_reject(buf, sizeof(buf), r->account, r->nonce, r->reason, NULL);
	}
	if (c->inflight > 0 && --c->inflight < (inflight_max(c) + 1) / 2 && c->paused_inflight) {
		c->paused_inflight = false;
		resume_if_possible(c);
	}
	conn_send(c, buf, n);
	count_stages(s, &o->t);
}

static void deliver_exec(struct srv *s, const struct srv_out *o)
{
	char key[KEY_BYTES];
	account_key(o->u.report.account, key);
	uint32_t *head = srv_map_get(&s->accts->m, key);
	if (head == NULL)
		return; /* nobody connected: the report is in queries */
	uint8_t buf[SRV_FRAME_SMALL_MAX];
	size_t n = srv_frame_report(buf, sizeof(buf), &o->u.report, o->product, o->sequence,
				    o->time_ms);
	for (uint32_t i = *head; i != NONE;) {
		struct srv_conn *c = &s->conns[i];
		i = c->acct_next; /* conn_send may close c */
		conn_send(c, buf, n);
	}
}

/* Frames for an account: to each of its sessions. */
static void deliver_acct_blob(struct srv *s, const struct srv_out *o)
{
	char key[KEY_BYTES];
	account_key(o->u.report.account, key);
	uint32_t *head = srv_map_get(&s->accts->m, key);
	for (uint32_t i = head ? *head : NONE; i != NONE;) {
		struct srv_conn *c = &s->conns[i];
		i = c->acct_next; /* conn_send may close c */
		conn_send(c, o->blob, o->blob_len);
	}
}

static void fan_out(struct srv *s, const char *topic, const struct srv_md *m, const uint8_t *buf,
		    size_t n)
{
	uint32_t *t = srv_map_get(&s->topics->by_name, topic);
	if (t == NULL)
		return;
	struct srv_topics *T = s->topics;
	for (uint32_t i = T->t[*t].head; i != NONE;) {
		const struct sub *sub = &T->subs[i];
		i = sub->next; /* conn_send may close the connection and free the node */
		if (m->kind == SRV_MD_LEVEL || sub->trades)
			conn_send(&s->conns[sub->conn], buf, n);
	}
}

/* Whether anyone subscribed to the topic (the product or its class). */
static bool has_subscribers(struct srv *s, const char *topic)
{
	uint32_t *t = srv_map_get(&s->topics->by_name, topic);
	return t != NULL && s->topics->t[*t].head != NONE;
}

static void deliver_md(struct srv *s, const struct srv_out *o)
{
	char cls[KEY_BYTES];
	snprintf(cls, sizeof(cls), "%s", o->product);
	char *slash = strchr(cls, '/');
	if (slash)
		*slash = '\0';
	/* Most book changes of a busy exchange have nobody watching that product:
	 * encode only for someone. */
	bool product = has_subscribers(s, o->product), cls_subs = slash && has_subscribers(s, cls);
	if (!product && !cls_subs)
		return;
	uint8_t buf[SRV_FRAME_SMALL_MAX];
	size_t n = srv_frame_md(buf, sizeof(buf), &o->u.md, o->product);
	if (product)
		fan_out(s, o->product, &o->u.md, buf, n);
	if (cls_subs)
		fan_out(s, cls, &o->u.md, buf, n);
}

/* The core's answer to a Subscribe (or an Unsubscribe) of o->conn: the subscription
 * held to the topic, if any, ends; a Subscribe's takes its place. */
static void deliver_subscribed(struct srv *s, const struct srv_out *o)
{
	struct srv_conn *c = conn_of(s, o->conn);
	if (c == NULL || c->closing)
		return;
	c->sub_jobs--;
	if (!o->unsubscribe)
		c->subs_pending--;
	int held = sub_find(s, c, o->product);
	if (held >= 0)
		sub_drop(s, c, (uint32_t)held);
	if (o->unsubscribe)
		return;
	struct srv_topics *T = s->topics;
	/* Room is checked before a topic is made: one made for nobody would never be
	 * given back. */
	if (T->n_free_s == 0 || c->n_subs == (uint32_t)s->cfg.subscriptions_per_conn_max) {
		reply_reject(c, 0, 0, GRIDEX__V1__REJECT_REASON__OVERLOADED,
			     "subscription tables full");
		return;
	}
	uint32_t *t = srv_map_get(&T->by_name, o->product);
	if (t == NULL) {
		if (T->n_free_t == 0) {
			reply_reject(c, 0, 0, GRIDEX__V1__REJECT_REASON__OVERLOADED,
				     "subscription tables full (topics_max)");
			return;
		}
		uint32_t idx = T->free_t[--T->n_free_t];
		snprintf(T->t[idx].name, KEY_BYTES, "%s", o->product);
		T->t[idx].head = NONE;
		t = srv_map_put(&T->by_name, o->product, idx);
	}
	uint32_t node = T->free_s[--T->n_free_s];
	T->subs[node] = (struct sub){.conn = c->slot,
				     .topic = *t,
				     .prev = NONE,
				     .next = T->t[*t].head,
				     .trades = o->trades};
	if (T->t[*t].head != NONE)
		T->subs[T->t[*t].head].prev = node;
	T->t[*t].head = node;
	c->subs[c->n_subs++] = node;
	atomic_fetch_add(&s->m.subscriptions, 1);
	idle_timeouts(c);
	conn_send(c, o->blob, o->blob_len);
}

static void drain_out(struct srv *s)
{
	struct srv_out items[OUT_BATCH];
	size_t n;
	/* Bounded per wake-up so that reading clients is not starved. */
	for (int rounds = 0; rounds < 64 && (n = srv_queue_pop(&s->out_q, items, OUT_BATCH, 0));
	     rounds++) {
		for (size_t i = 0; i < n; i++) {
			const struct srv_out *o = &items[i];
			switch (o->kind) {
			case SRV_OUT_REPLY:
				deliver_reply(s, o);
				break;
			case SRV_OUT_EXEC:
				deliver_exec(s, o);
				break;
			case SRV_OUT_MD:
				deliver_md(s, o);
				srv_http_market(s, o);
				break;
			case SRV_OUT_HALT:
			case SRV_OUT_RETIRED:
				srv_http_market(s, o);
				break;
			case SRV_OUT_BLOB: {
				struct srv_conn *c = conn_of(s, o->conn);
				if (c)
					conn_send(c, o->blob, o->blob_len);
				break;
			}
			case SRV_OUT_SUBSCRIBED:
				deliver_subscribed(s, o);
				break;
			case SRV_OUT_ACCT_BLOB:
				deliver_acct_blob(s, o);
				break;
			}
			free(o->blob);
		}
		/* The API's thread has this batch's market data before its replies are sent. */
		srv_http_market_flush(s);
	}
	if (srv_queue_depth(&s->out_q) > 0)
		event_active(s->notify, EV_READ, 0); /* more: come back after other events */
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_out(arg);
}

void srv_io_notify(struct srv *s)
{
	event_active(s->notify, EV_READ, 0);
}

/* ---------- shutdown ---------- */

static bool outputs_flushed(struct srv *s)
{
	for (uint32_t i = 0; i < (uint32_t)s->cfg.max_connections; i++) {
		struct srv_conn *c = &s->conns[i];
		if (c->used && c->tls_up && evbuffer_get_length(c->out) > 0)
			return false;
	}
	return true;
}

/* Runs every 10 ms while draining: closes each queue once the stage before it is done. */
static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct srv *s = arg;
	drain_out(s);
	if (atomic_load(&s->verifiers_alive) == 0 && !srv_verified_drained(s))
		srv_verified_close(s); /* the journal thread closes core_q when done */
	bool done = atomic_load(&s->core_done) && atomic_load(&s->writer_done) &&
		    srv_queue_depth(&s->out_q) == 0;
	if (done && (outputs_flushed(s) || srv_mono_ms() > s->drain_deadline_ms)) {
		srv_log(SRV_LOG_INFO, "stopped", "sequence=%llu",
			(unsigned long long)atomic_load(&s->m.sequence));
		event_base_loopexit(s->base, NULL);
		return;
	}
	struct timeval tv = {.tv_usec = 10000};
	evtimer_add(s->drain_timer, &tv);
}

static void begin_drain(struct srv *s, const char *why)
{
	if (s->draining)
		return;
	s->draining = true;
	s->drain_deadline_ms = srv_mono_ms() + s->cfg.drain_timeout_ms;
	srv_log(SRV_LOG_INFO, "draining", "reason=%s", why);
	if (s->listener)
		evconnlistener_disable(s->listener);
	for (uint32_t i = 0; i < (uint32_t)s->cfg.max_connections; i++)
		if (s->conns[i].used)
			conn_reading(&s->conns[i], false);
	srv_verify_close(s);
	struct timeval tv = {.tv_usec = 10000};
	evtimer_add(s->drain_timer, &tv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct srv *s = arg;
	if (sig == SIGHUP) {
		bool ok = srv_log_reopen();
		srv_log(ok ? SRV_LOG_INFO : SRV_LOG_ERROR, "log reopened", "ok=%d", ok);
		return;
	}
	begin_drain(s, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---------- metrics ---------- */

static void metric(struct evbuffer *b, const char *name, const char *help, const char *type,
		   uint64_t v)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type,
			    name, (unsigned long long)v);
}

/* One series of a Prometheus histogram: cumulative buckets up to +Inf, sum, count.
 * label: empty, or one `key="value"` pair. */
static void histogram_series(struct evbuffer *b, const char *name, const char *label,
			     const int64_t *bounds_ns, int n_buckets, atomic_uint_fast64_t *counts,
			     uint64_t sum_ns)
{
	const char *sep = label[0] ? "," : "", *open = label[0] ? "{" : "",
		   *close = label[0] ? "}" : "";
	uint64_t cum = 0;
	for (int k = 0; k < n_buckets; k++) {
		cum += atomic_load_explicit(&counts[k], memory_order_relaxed);
		char le[24];
		if (k < n_buckets - 1)
			snprintf(le, sizeof(le), "%g", (double)bounds_ns[k] / 1e9);
		else
			snprintf(le, sizeof(le), "+Inf");
		evbuffer_add_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, label, sep, le,
				    (unsigned long long)cum);
	}
	evbuffer_add_printf(b, "%s_sum%s%s%s %.9f\n", name, open, label, close,
			    (double)sum_ns / 1e9);
	evbuffer_add_printf(b, "%s_count%s%s%s %llu\n", name, open, label, close,
			    (unsigned long long)cum);
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
	struct srv *s = arg;
	struct srv_metrics *m = &s->m;
	if (s->cfg.metrics_token[0] != '\0' && !srv_http_bearer_ok(req, s->cfg.metrics_token)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Bearer");
		evhttp_send_error(req, 401, "metrics_token required");
		return;
	}
	struct evbuffer *b = evbuffer_new();
	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	metric(b, "gridex_connections", "Open client connections.", "gauge",
	       atomic_load(&m->connections_open));
	metric(b, "gridex_connections_accepted_total", "Accepted connections.", "counter",
	       atomic_load(&m->connections_accepted));
	evbuffer_add_printf(b, "# HELP gridex_connections_refused_total Refused connections.\n"
			       "# TYPE gridex_connections_refused_total counter\n");
	evbuffer_add_printf(b,
			    "gridex_connections_refused_total{reason=\"max_connections\"} %llu\n",
			    (unsigned long long)atomic_load(&m->refused_full));
	evbuffer_add_printf(b,
			    "gridex_connections_refused_total{reason=\"max_unauth_per_ip\"} %llu\n",
			    (unsigned long long)atomic_load(&m->refused_per_ip));
	evbuffer_add_printf(b, "# HELP gridex_connections_closed_total Connections closed by the "
			       "server.\n# TYPE gridex_connections_closed_total counter\n");
	evbuffer_add_printf(b, "gridex_connections_closed_total{reason=\"protocol\"} %llu\n",
			    (unsigned long long)atomic_load(&m->closed_protocol));
	evbuffer_add_printf(b, "gridex_connections_closed_total{reason=\"slow_reader\"} %llu\n",
			    (unsigned long long)atomic_load(&m->closed_slow));
	evbuffer_add_printf(b, "gridex_connections_closed_total{reason=\"timeout\"} %llu\n",
			    (unsigned long long)atomic_load(&m->closed_timeout));
	metric(b, "gridex_requests_refused_unverified_total",
	       "Requests of connections not yet accepted, refused OVERLOADED without verification: "
	       "their address had used up verify_failures_per_ip_burst.",
	       "counter", atomic_load(&m->refused_unverified));
	metric(b, "gridex_verify_failure_ips",
	       "Addresses whose failed verifications are being counted (at most "
	       "verify_failure_ips_max); each is forgotten once its allowance is whole again.",
	       "gauge", s->fails->n);
	metric(b, "gridex_verify_known_pairs",
	       "(address, account) pairs known: the account had a request accepted from the "
	       "address within verify_known_pair_ms (at most verify_known_pairs_max).",
	       "gauge", s->known->n);
	metric(b, "gridex_requests_verified_known_pair_total",
	       "Requests of connections not yet accepted, verified although their address had used "
	       "up its allowance, because their (address, account) pair is known.",
	       "counter", atomic_load(&m->verified_known));
	metric(b, "gridex_accept_errors_total",
	       "Failed accept() calls (file descriptors or memory used up); each pauses its port "
	       "for accept_retry_ms.",
	       "counter", atomic_load(&m->accept_errors));
	srv_http_port_metrics(s, b);
	metric(b, "gridex_frames_in_total", "Frames received.", "counter",
	       atomic_load(&m->frames_in));
	metric(b, "gridex_frames_out_total", "Frames sent.", "counter",
	       atomic_load(&m->frames_out));
	evbuffer_add_printf(b, "# HELP gridex_requests_total Signed requests by type and result.\n"
			       "# TYPE gridex_requests_total counter\n");
	for (int t = 0; t < SRV_REQUEST_TYPES; t++)
		for (int r = 0; r < SRV_REASONS; r++) {
			uint64_t v = atomic_load(&m->requests[t][r]);
			if (v == 0)
				continue;
			const ProtobufCEnumValue *tv = protobuf_c_enum_descriptor_get_value(
				&gridex__v1__request_type__descriptor, t);
			const ProtobufCEnumValue *rv = protobuf_c_enum_descriptor_get_value(
				&gridex__v1__reject_reason__descriptor, r);
			evbuffer_add_printf(
				b, "gridex_requests_total{type=\"%s\",result=\"%s\"} %llu\n",
				tv && t ? tv->name : "unknown",
				r == 0 ? "accepted" : (rv ? rv->name : "other"),
				(unsigned long long)v);
		}
	metric(b, "gridex_subscriptions", "Market-data subscriptions.", "gauge",
	       atomic_load(&m->subscriptions));
	metric(b, "gridex_subscription_topics",
	       "Products and classes with a subscriber (at most topics_max).", "gauge",
	       (uint64_t)s->cfg.topics_max - s->topics->n_free_t);
	metric(b, "gridex_orders_resting", "Orders resting in all books.", "gauge",
	       atomic_load(&m->orders_resting));
	metric(b, "gridex_books",
	       "Products with a book (at most books_max; a book is retired book_retain_ms after "
	       "its delivery hour: see docs/operations.md, Books).",
	       "gauge", atomic_load(&m->books));
	metric(b, "gridex_fills_total", "Fills.", "counter", atomic_load(&m->fills));
	metric(b, "gridex_sequence", "Last sequence number.", "gauge", atomic_load(&m->sequence));
	metric(b, "gridex_verify_queue_depth", "Requests waiting for signature verification.",
	       "gauge", srv_verify_depth(s));
	metric(b, "gridex_core_queue_depth", "Verified requests waiting for the core.", "gauge",
	       srv_queue_depth(&s->core_q));
	metric(b, "gridex_journal_queue_depth", "Verified requests waiting for the journal.",
	       "gauge", srv_verified_depth(s));
	metric(b, "gridex_journal_syncs_total", "fdatasync calls of the journal (group commits).",
	       "counter", atomic_load(&m->journal_syncs));
	metric(b, "gridex_journal_records_total", "Records journaled.", "counter",
	       atomic_load(&m->journal_records));
	metric(b, "gridex_journal_sync_ms_last", "Duration of the last write and fdatasync.",
	       "gauge", atomic_load(&m->journal_sync_ms_last));
	static const char *const stage_names[SRV_STAGES] = {"verify",  "journal", "core",
							    "deliver", "total",	  "sync"};
	evbuffer_add_printf(b, "# HELP gridex_request_stage_seconds Time of answered requests "
			       "in each stage of the pipeline (sync: each journal fdatasync).\n"
			       "# TYPE gridex_request_stage_seconds histogram\n");
	for (int st = 0; st < SRV_STAGES; st++) {
		char label[32];
		snprintf(label, sizeof(label), "stage=\"%s\"", stage_names[st]);
		histogram_series(b, "gridex_request_stage_seconds", label, srv_stage_bounds_ns,
				 SRV_STAGE_BUCKETS, m->stage_count[st],
				 atomic_load_explicit(&m->stage_sum_ns[st], memory_order_relaxed));
	}
	metric(b, "gridex_snapshots_total", "Snapshots of the core written.", "counter",
	       atomic_load(&m->snapshots));
	if (s->cfg.hook[0] != '\0') {
		evbuffer_add_printf(b, "# HELP gridex_leases Live leases by state.\n"
				       "# TYPE gridex_leases gauge\n");
		for (uint8_t st = SRV_LEASE_SCHEDULED; st <= SRV_LEASE_RUNNING; st++)
			evbuffer_add_printf(b, "gridex_leases{state=\"%s\"} %llu\n",
					    srv_lease_state_name(st),
					    (unsigned long long)atomic_load(&m->leases[st]));
		evbuffer_add_printf(
			b,
			"# HELP gridex_hosts Registered hosts (hosts_max counts both).\n"
			"# TYPE gridex_hosts gauge\n"
			"gridex_hosts{state=\"in_service\"} %llu\n"
			"gridex_hosts{state=\"withdrawn\"} %llu\n",
			(unsigned long long)atomic_load(&m->hosts[0]),
			(unsigned long long)atomic_load(&m->hosts[1]));
		evbuffer_add_printf(b, "# HELP gridex_hook_calls_total Provisioning hook calls by "
				       "outcome.\n# TYPE gridex_hook_calls_total counter\n");
		for (int o = SRV_HOOK_OK; o <= SRV_HOOK_SPAWN; o++)
			evbuffer_add_printf(b, "gridex_hook_calls_total{outcome=\"%s\"} %llu\n",
					    srv_hook_outcome_name(o),
					    (unsigned long long)atomic_load(&m->hook_calls[o]));
		metric(b, "gridex_hook_jobs_pending", "Hook calls waiting (due or to retry).",
		       "gauge", atomic_load(&m->hook_pending));
		metric(b, "gridex_hook_calls_in_flight", "Hook calls being made.", "gauge",
		       atomic_load(&m->hook_in_flight));
	}
	metric(b, "gridex_snapshot_pause_ms_last",
	       "How long the core paused to serialize the last snapshot.", "gauge",
	       atomic_load(&m->snapshot_pause_ms_last));
	metric(b, "gridex_settlement_queue_depth", "Fills and actions waiting for the ledger.",
	       "gauge", srv_queue_depth(&s->writer_q) + atomic_load(&m->settlement_pending));
	metric(b, "gridex_settlement_batches_total", "Settlement batches committed.", "counter",
	       atomic_load(&m->batches));
	metric(b, "gridex_settlement_batch_items_last", "Items in the last batch.", "gauge",
	       atomic_load(&m->batch_fills_last));
	metric(b, "gridex_settlement_items_total", "Fills and actions settled.", "counter",
	       atomic_load(&m->batch_fills_total));
	metric(b, "gridex_settlement_lag_ms",
	       "Age of the oldest item of the last batch when it committed.", "gauge",
	       atomic_load(&m->settlement_lag_ms));
	evbuffer_add_printf(b, "# HELP gridex_settlement_lag_seconds Settlement batches by the "
			       "age of their oldest item when they committed.\n"
			       "# TYPE gridex_settlement_lag_seconds histogram\n");
	histogram_series(b, "gridex_settlement_lag_seconds", "", srv_settle_bounds_ns,
			 SRV_SETTLE_BUCKETS, m->settle_count,
			 atomic_load_explicit(&m->settle_sum_ns, memory_order_relaxed));
	metric(b, "gridex_settlement_retries_total", "Failed ledger attempts retried.", "counter",
	       atomic_load(&m->settlement_retries));
	metric(b, "gridex_settlement_errors_total", "Batches that failed a flush.", "counter",
	       atomic_load(&m->settlement_errors));
	metric(b, "gridex_settlement_halted",
	       "1 while the ledger refuses settlement (new orders are refused).", "gauge",
	       atomic_load(&m->settlement_halted));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

/* ---------- set-up ---------- */

static SSL_CTX *tls_context(const struct srv_config *cfg)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return NULL;
	/* TLS 1.3 only; no 0-RTT (early data can be replayed); no tickets to keep. */
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_early_data(ctx, 0) ||
	    SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* No resumption: TLS 1.3 would otherwise send tickets (SSL_OP_NO_TICKET alone
	 * only makes them stateful). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

/* "host:port" or "[v6 host]:port"; the port may be 0 (any free port). */
bool srv_split_host_port(const char *addr, char *host, size_t host_len, uint16_t *port)
{
	const char *colon = strrchr(addr, ':');
	if (colon == NULL || (size_t)(colon - addr) >= host_len)
		return false;
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || p > 65535 || colon[1] == '\0')
		return false;
	const char *h = addr;
	size_t n = (size_t)(colon - addr);
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (uint16_t)p;
	return true;
}

int srv_io_init(struct srv *s)
{
	const struct srv_config *cfg = &s->cfg;
	uint32_t nconn = (uint32_t)cfg->max_connections;
	s->base = event_base_new();
	s->tls = tls_context(cfg);
	if (s->base == NULL || s->tls == NULL) {
		char err[256] = "";
		ERR_error_string_n(ERR_get_error(), err, sizeof(err));
		srv_log(SRV_LOG_ERROR, "TLS set-up failed", "cert=\"%s\" key=\"%s\" error=\"%s\"",
			cfg->tls_cert, cfg->tls_key, err);
		return -1;
	}
	s->conns = calloc(nconn, sizeof(*s->conns));
	s->free_conns = calloc(nconn, sizeof(*s->free_conns));
	s->dirty = calloc(nconn, sizeof(*s->dirty));
	s->ips = calloc(1, sizeof(*s->ips));
	s->accts = calloc(1, sizeof(*s->accts));
	s->topics = calloc(1, sizeof(*s->topics));
	s->fails = calloc(1, sizeof(*s->fails));
	s->known = calloc(1, sizeof(*s->known));
	uint32_t nfails = (uint32_t)cfg->verify_failure_ips_max;
	/* With no pairs kept, a table of one that is never written. */
	uint32_t nknown =
		cfg->verify_known_pairs_max > 0 ? (uint32_t)cfg->verify_known_pairs_max : 1;
	if (!s->conns || !s->free_conns || !s->dirty || !s->ips || !s->accts || !s->topics ||
	    !s->fails || !s->known || !srv_map_init(&s->ips->m, nconn) ||
	    !srv_map_init(&s->accts->m, nconn) ||
	    !srv_map_init(&s->topics->by_name, (uint32_t)cfg->topics_max) ||
	    !srv_buckets_init(s->fails, nfails, cfg->verify_failures_per_ip_per_second,
			      cfg->verify_failures_per_ip_burst) ||
	    !srv_buckets_init(s->known, nknown, cfg->verify_failures_per_ip_per_second,
			      cfg->verify_failures_per_ip_burst))
		return -1;
	s->metrics_fd = -1;
	struct srv_topics *T = s->topics;
	uint32_t ntopics = (uint32_t)cfg->topics_max;
	uint64_t nsubs64 = (uint64_t)nconn * (uint64_t)cfg->subscriptions_per_conn_max;
	uint32_t nsubs = nsubs64 > (1u << 24) ? (1u << 24) : (uint32_t)nsubs64;
	T->t = calloc(ntopics, sizeof(*T->t));
	T->free_t = calloc(ntopics, sizeof(*T->free_t));
	T->subs = calloc(nsubs, sizeof(*T->subs));
	T->free_s = calloc(nsubs, sizeof(*T->free_s));
	if (!T->t || !T->free_t || !T->subs || !T->free_s)
		return -1;
	for (uint32_t i = 0; i < ntopics; i++)
		T->free_t[T->n_free_t++] = ntopics - 1 - i;
	for (uint32_t i = 0; i < nsubs; i++)
		T->free_s[T->n_free_s++] = nsubs - 1 - i;
	for (uint32_t i = 0; i < nconn; i++) {
		struct srv_conn *c = &s->conns[i];
		c->s = s;
		c->slot = i;
		c->fd = -1;
		c->subs = calloc((size_t)cfg->subscriptions_per_conn_max, sizeof(*c->subs));
		c->timer = evtimer_new(s->base, timer_cb, c);
		if (!c->subs || !c->timer)
			return -1;
		s->free_conns[s->n_free++] = nconn - 1 - i;
	}
	s->notify = event_new(s->base, -1, EV_PERSIST, notify_cb, s);
	s->flush_ev = event_new(s->base, -1, 0, flush_cb, s);
	s->drain_timer = evtimer_new(s->base, drain_cb, s);
	s->fails_sweep = event_new(s->base, -1, EV_PERSIST, fails_sweep_cb, s);
	struct timeval second = {.tv_sec = 1};
	if (s->fails_sweep == NULL || event_add(s->fails_sweep, &second) != 0)
		return -1;
	s->sig_term = evsignal_new(s->base, SIGTERM, signal_cb, s);
	s->sig_int = evsignal_new(s->base, SIGINT, signal_cb, s);
	s->sig_hup = evsignal_new(s->base, SIGHUP, signal_cb, s);
	if (!s->notify || !s->flush_ev || !s->drain_timer || !s->sig_term || !s->sig_int ||
	    !s->sig_hup || event_add(s->sig_term, NULL) || event_add(s->sig_int, NULL) ||
	    event_add(s->sig_hup, NULL))
		return -1;
	char host[256], port_text[8];
	uint16_t port;
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				 .ai_socktype = SOCK_STREAM},
			*ai = NULL;
	if (!srv_split_host_port(cfg->listen, host, sizeof(host), &port) ||
	    (snprintf(port_text, sizeof(port_text), "%u", port),
	     getaddrinfo(host[0] ? host : NULL, port_text, &hints, &ai) != 0)) {
		srv_log(SRV_LOG_ERROR, "bad listen address (numeric host:port)", "listen=\"%s\"",
			cfg->listen);
		return -1;
	}
	s->listener = evconnlistener_new_bind(s->base, accept_cb, s,
					      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						      LEV_OPT_CLOSE_ON_EXEC,
					      1024, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (s->listener == NULL) {
		srv_log(SRV_LOG_ERROR, "cannot listen", "listen=\"%s\" error=\"%s\"", cfg->listen,
			strerror(errno));
		return -1;
	}
	if (srv_port_guard(s, s->listener, "listen") != 0)
		return -1;
	if (cfg->metrics_listen[0] != '\0') {
		struct evhttp_bound_socket *bound = NULL;
		s->http = evhttp_new(s->base);
		if (!srv_split_host_port(cfg->metrics_listen, host, sizeof(host), &port) ||
		    s->http == NULL ||
		    (bound = evhttp_bind_socket_with_handle(s->http, host, port)) == NULL) {
			srv_log(SRV_LOG_ERROR, "cannot serve metrics", "metrics_listen=\"%s\"",
				cfg->metrics_listen);
			return -1;
		}
		s->metrics_fd = evhttp_bound_socket_get_fd(bound);
		if (srv_http_port(s, s->http, bound, "metrics_listen", s->cfg.metrics_tls) != 0)
			return -1;
		evhttp_set_cb(s->http, "/metrics", metrics_cb, s);
	}
	return srv_http_init(s);
}

void srv_io_free(struct srv *s)
{
	srv_http_free(s);
	if (s->conns) {
		for (uint32_t i = 0; i < (uint32_t)s->cfg.max_connections; i++) {
			struct srv_conn *c = &s->conns[i];
			if (c->used)
				conn_release(c);
			if (c->timer)
				event_free(c->timer);
			free(c->subs);
		}
	}
	free(s->conns);
	free(s->free_conns);
	free(s->dirty);
	if (s->ips)
		free(s->ips->m.e);
	if (s->accts)
		free(s->accts->m.e);
	if (s->topics) {
		free(s->topics->by_name.e);
		free(s->topics->t);
		free(s->topics->free_t);
		free(s->topics->subs);
		free(s->topics->free_s);
	}
	struct srv_buckets *tables[] = {s->fails, s->known};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		if (tables[i])
			srv_buckets_free(tables[i]);
		free(tables[i]);
	}
	free(s->ips);
	free(s->accts);
	free(s->topics);
	if (s->http)
		evhttp_free(s->http);
	if (s->listener)
		evconnlistener_free(s->listener);
	for (size_t i = 0; i < s->n_ports; i++) {
		srv_http_port_free(&s->ports[i]);
		event_free(s->ports[i].retry);
	}
	s->n_ports = 0;
	if (guarded == s)
		guarded = NULL;
	struct event *evs[] = {s->notify,   s->flush_ev, s->drain_timer, s->fails_sweep,
			       s->sig_term, s->sig_int,	 s->sig_hup};
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	if (s->tls)
		SSL_CTX_free(s->tls);
	if (s->api_base) /* after the ports: the API's has events on it */
		event_base_free(s->api_base);
	s->api_base = NULL;
	if (s->base)
		event_base_free(s->base);
}
