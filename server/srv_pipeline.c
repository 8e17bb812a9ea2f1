/* SPDX-License-Identifier: Apache-2.0 */
/* gridexd's worker threads: verifiers, the core, the ledger writer. */
#define _GNU_SOURCE /* sched_getaffinity, pthread_setaffinity_np */
#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gridex.pb-c.h"
#include "srv_frames.h"
#include "srv_journal.h"
#include "srv_log.h"
#include "srv_server.h"
#include "srv_snapshot.h"
#include "wire.h"

#define BATCH 64 /* items moved per queue lock */
/* A verifier passes on what it verified after at most this many requests: a request
 * waits for the verification of the others taken with it (46 us each here). */
#define VERIFY_BATCH 4
/* Requests per journal write and fdatasync at most: one sync covers what came during
 * the one before, and a slow sync (milliseconds, on a busy disk) must not leave more
 * behind than the next one can take. */
#define JOURNAL_BATCH 1024
/* A core step that sends at least this many hook commands (an hour's start, mostly)
 * says so in the log, with the time the core took for it. */
#define LEASE_COMMANDS_LOGGED 16

int64_t srv_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void srv_thread_name(const char *name)
{
	/* Only a label for operators' tools: a kernel that refuses it changes nothing. */
	(void)prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

const int64_t srv_stage_bounds_ns[SRV_STAGE_BUCKETS - 1] = {
	50000,	  100000,   250000,   500000,	 1000000,   2000000,	5000000,
	10000000, 25000000, 50000000, 100000000, 250000000, 1000000000,
};

/* Counts ns into the histogram whose bucket bounds are bounds_ns[n_buckets - 1], +Inf. */
static void histogram_add(atomic_uint_fast64_t *counts, atomic_uint_fast64_t *sum_ns,
			  const int64_t *bounds_ns, int n_buckets, int64_t ns)
{
	int64_t v = ns < 0 ? 0 : ns;
	int b = 0;
	while (b < n_buckets - 1 && v > bounds_ns[b])
		b++;
	atomic_fetch_add_explicit(&counts[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(sum_ns, (uint64_t)v, memory_order_relaxed);
}

void srv_stage_count(struct srv_metrics *m, enum srv_stage st, int64_t ns)
{
	histogram_add(m->stage_count[st], &m->stage_sum_ns[st], srv_stage_bounds_ns,
		      SRV_STAGE_BUCKETS, ns);
}

const int64_t srv_settle_bounds_ns[SRV_SETTLE_BUCKETS - 1] = {
	10000000,  25000000,   50000000,   100000000,  250000000,   500000000,
	750000000, 1000000000, 2000000000, 5000000000, 10000000000, 30000000000};

_Static_assert(GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS == SRV_REQUEST_TYPES - 1,
	       "SRV_REQUEST_TYPES counts every RequestType");
_Static_assert(GRIDEX__V1__REJECT_REASON__SETTLEMENT_HALTED == SRV_REASONS - 1,
	       "SRV_REASONS counts every RejectReason");

static void count_request(struct srv *s, uint32_t type, uint32_t reason)
{
	if (type < SRV_REQUEST_TYPES && reason < SRV_REASONS)
		atomic_fetch_add_explicit(&s->m.requests[type][reason], 1, memory_order_relaxed);
}

static void io_wake(void *s)
{
	srv_io_notify(s);
}

/* Pushes out items and wakes the I/O thread when it may be sleeping. */
static void out_push(struct srv *s, const struct srv_out *items, size_t n)
{
	srv_queue_push_woken(&s->out_q, items, n, io_wake, s);
}

/* A worker thread has its buffers: srv_pipeline_start may stop waiting for it. */
static void thread_started(struct srv *s)
{
	pthread_mutex_lock(&s->start_lock);
	s->start_pending--;
	pthread_cond_broadcast(&s->start_cond);
	pthread_mutex_unlock(&s->start_lock);
}

/* ---------- verification lanes ---------- */

static size_t lanes(const struct srv *s)
{
	return (size_t)s->cfg.verifier_threads;
}

int srv_lanes_init(struct srv *s)
{
	size_t n = lanes(s);
	size_t in = (size_t)s->cfg.verify_queue_max / n, out = (size_t)s->cfg.core_queue_max / n;
	if (in < 16)
		in = 16;
	if (out < 16)
		out = 16;
	s->vin = calloc(n, sizeof(*s->vin));
	s->vout = calloc(n, sizeof(*s->vout));
	/* Every request between the I/O thread and the journal has an entry: in the
	 * lanes, in a verifier's hands, or in the journal thread's buffers. */
	s->order_cap = n * (in + out + 2 * BATCH);
	s->order = malloc(s->order_cap);
	if (!s->vin || !s->vout || !s->order || pthread_mutex_init(&s->order_lock, NULL) != 0 ||
	    pthread_cond_init(&s->order_cond, NULL) != 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (srv_queue_init(&s->vin[i], sizeof(struct srv_job), in) ||
		    srv_queue_init(&s->vout[i], sizeof(struct srv_job), out))
			return -1;
	return 0;
}

void srv_lanes_destroy(struct srv *s)
{
	for (size_t i = 0; s->vin && s->vout && i < lanes(s); i++) {
		srv_queue_destroy(&s->vin[i]);
		srv_queue_destroy(&s->vout[i]);
	}
	free(s->vin);
	free(s->vout);
	free(s->order);
	s->vin = s->vout = NULL;
	s->order = NULL;
}

bool srv_verify_push(struct srv *s, const struct srv_job *job)
{
	/* The least busy lane, the first of equals: under a light load one verifier
	 * does the work and the others sleep. */
	size_t best = 0, depth = SIZE_MAX;
	for (size_t i = 0; i < lanes(s) && depth > 0; i++) {
		size_t d = srv_queue_depth(&s->vin[i]);
		if (d < depth) {
			best = i;
			depth = d;
		}
	}
	pthread_mutex_lock(&s->order_lock);
	bool room = s->order_head - s->order_tail < s->order_cap &&
		    srv_queue_push(&s->vin[best], job, 1, false, NULL) == 1;
	if (room)
		s->order[s->order_head++ % s->order_cap] = (uint8_t)best;
	/* No wake-up for the journal thread: it could only wait for the verifier. The
	 * verifier wakes it when the request is verified (verifier_main). */
	pthread_mutex_unlock(&s->order_lock);
	return room;
}

void srv_verify_close(struct srv *s)
{
	for (size_t i = 0; i < lanes(s); i++)
		srv_queue_close(&s->vin[i]);
	pthread_mutex_lock(&s->order_lock);
	s->order_closed = true;
	pthread_cond_broadcast(&s->order_cond);
	pthread_mutex_unlock(&s->order_lock);
}

size_t srv_verify_depth(struct srv *s)
{
	size_t n = 0;
	for (size_t i = 0; i < lanes(s); i++)
		n += srv_queue_depth(&s->vin[i]);
	return n;
}

size_t srv_verified_depth(struct srv *s)
{
	size_t n = 0;
	for (size_t i = 0; i < lanes(s); i++)
		n += srv_queue_depth(&s->vout[i]);
	return n;
}

void srv_verified_close(struct srv *s)
{
	for (size_t i = 0; i < lanes(s); i++)
		srv_queue_close(&s->vout[i]);
}

bool srv_verified_drained(struct srv *s)
{
	for (size_t i = 0; i < lanes(s); i++)
		if (!srv_queue_drained(&s->vout[i]))
			return false;
	return true;
}

/* ---------- verifiers ---------- */

struct lane_arg {
	struct srv *s;
	size_t lane;
};

static void *verifier_main(void *arg)
{
	struct srv *s = ((struct lane_arg *)arg)->s;
	size_t lane = ((struct lane_arg *)arg)->lane;
	char name[16];
	snprintf(name, sizeof(name), "gx-verify-%zu", lane);
	srv_thread_name(name);
	struct srv_job *jobs = malloc(BATCH * sizeof(*jobs));
	struct srv_out *rejects = calloc(BATCH, sizeof(*rejects));
	if (!jobs || !rejects) {
		srv_log(SRV_LOG_ERROR, "verifier out of memory", NULL);
		abort();
	}
	thread_started(s); /* named: tools that look at the threads once gridexd is ready see it */
	size_t n;
	while ((n = srv_queue_pop(&s->vin[lane], jobs, VERIFY_BATCH, -1)) > 0) {
		size_t n_rej = 0;
		for (size_t i = 0; i < n; i++) {
			const struct srv_request *r = &jobs[i].req;
			uint8_t key[SRV_PUBLIC_KEY_BYTES];
			pthread_rwlock_rdlock(&s->keys_lock);
			const uint8_t *k = srv_core_key(s->core, r->account);
			if (k)
				memcpy(key, k, sizeof(key));
			pthread_rwlock_unlock(&s->keys_lock);
			uint32_t reason = 0;
			if (k == NULL)
				reason = GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT;
			else if (srv_request_verify(r, key) != SRV_AUTH_OK)
				reason = GRIDEX__V1__REJECT_REASON__BAD_SIGNATURE;
			if (reason == 0)
				continue;
			jobs[i].kind = SRV_JOB_SKIP; /* stays in the lane, in its place */
			count_request(s, r->type, reason);
			struct srv_out *o = &rejects[n_rej++];
			*o = (struct srv_out){.kind = SRV_OUT_REPLY,
					      .conn = jobs[i].conn,
					      .request_type = r->type};
			o->u.report = (struct srv_report){.kind = SRV_REPORT_REJECT,
							  .reason = (uint8_t)reason,
							  .account = r->account,
							  .nonce = r->nonce};
		}
		int64_t done = srv_mono_ns();
		for (size_t i = 0; i < n; i++)
			jobs[i].t.verified = done;
		srv_queue_push(&s->vout[lane], jobs, n, true, NULL);
		/* The order entries of these requests were written before they reached the
		 * lane (srv_verify_push): a journal thread waiting for one can go on. */
		pthread_mutex_lock(&s->order_lock);
		if (s->order_waiting)
			pthread_cond_signal(&s->order_cond);
		pthread_mutex_unlock(&s->order_lock);
		out_push(s, rejects, n_rej);
	}
	free(jobs);
	free(rejects);
	atomic_fetch_sub(&s->verifiers_alive, 1);
	return NULL;
}

/*
 * The journal thread's reader of the lanes: the next up to max verified requests in
 * arrival order, waiting up to timeout_ms for the first. Returns 0 on timeout, or when
 * no request will come any more (*done).
 */
struct lanes_reader {
	struct srv_job *buf; /* per lane, BATCH jobs popped and not yet taken */
	size_t *head, *count;
};

/* How far the order ring is written: waits up to timeout_ms (> 0) while it holds
 * nothing past `from`. The verifiers wake the waiter when they pass requests on. */
static uint64_t order_end(struct srv *s, uint64_t from, int timeout_ms, bool *closed)
{
	pthread_mutex_lock(&s->order_lock);
	if (s->order_head == from && timeout_ms > 0 && !s->order_closed) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		s->order_waiting = true;
		while (s->order_head == from && !s->order_closed &&
		       pthread_cond_timedwait(&s->order_cond, &s->order_lock, &until) == 0)
			;
		s->order_waiting = false;
	}
	uint64_t end = s->order_head;
	*closed = s->order_closed;
	pthread_mutex_unlock(&s->order_lock);
	return end;
}

static size_t lanes_take(struct srv *s, struct lanes_reader *lr, struct srv_job *out, size_t max,
			 int timeout_ms, bool *done)
{
	size_t n = 0;
	bool closed;
	*done = false;
	/* The entries below order_head are written and stay until order_tail passes
	 * them: read without the lock, which is taken once per refill, not per request.
	 * order_tail itself is written by this thread only (under the lock, for the I/O
	 * thread's reads), so this thread reads it without. */
	uint64_t first = s->order_tail, cur = first;
	uint64_t end = order_end(s, cur, timeout_ms, &closed);
	while (n < max) {
		if (cur == end && (end = order_end(s, cur, 0, &closed)) == cur) {
			*done = cur == first && closed;
			break;
		}
		size_t l = s->order[cur % s->order_cap];
		if (lr->count[l] == 0) {
			/* Its verifier has it or will soon: wait for it only for the first. */
			lr->head[l] = 0;
			lr->count[l] = srv_queue_pop(&s->vout[l], lr->buf + l * BATCH, BATCH,
						     n == 0 ? -1 : 0);
			if (lr->count[l] == 0) {
				/* Only a lane closed with its request missing ends here: stop
				 * rather than spin (verifiers pass on every request). */
				*done = n == 0 && srv_queue_drained(&s->vout[l]);
				break;
			}
		}
		const struct srv_job *j = &lr->buf[l * BATCH + lr->head[l]++];
		lr->count[l]--;
		cur++;
		if (j->kind != SRV_JOB_SKIP)
			out[n++] = *j;
	}
	if (cur != first) {
		pthread_mutex_lock(&s->order_lock);
		s->order_tail = cur;
		pthread_mutex_unlock(&s->order_lock);
	}
	return n;
}

/* ---------- journal ---------- */

/* Starts the next segment at sequence `first` (synced, with its directory entry); on
 * failure the current one goes on growing and the next sync tries again. */
static void rotate(struct srv *s, uint64_t first)
{
	char path[SRV_CONFIG_TEXT_MAX + 40];
	snprintf(path, sizeof(path), "%s/journal-%020llu", s->cfg.journal_dir,
		 (unsigned long long)first);
	struct srv_journal *next;
	if (srv_journal_open(path, 0, &next) != SRV_JOURNAL_OK) {
		srv_log(SRV_LOG_WARN, "cannot start a new journal segment",
			"path=\"%s\" error=\"%s\"", path, strerror(errno));
		return;
	}
	if (srv_journal_sync_dir(s->cfg.journal_dir) != SRV_JOURNAL_OK) {
		srv_log(SRV_LOG_WARN, "cannot sync journal_dir", "error=\"%s\"", strerror(errno));
		srv_journal_close(next);
		unlink(path);
		return;
	}
	srv_journal_close(s->journal);
	s->journal = next;
	srv_log(SRV_LOG_INFO, "journal segment started", "path=\"%s\"", path);
}

/* Numbers verified requests, appends them to the journal and hands them to the core
 * only after the fdatasync that covers them (group commit): nothing the core does,
 * and so nothing a client is told, can be lost by a crash. When no request comes
 * for tick_ms it journals a clock tick, so that expiries replay too. */
static void *journal_main(void *arg)
{
	struct srv *s = arg;
	srv_thread_name("gx-journal");
	struct srv_job *jobs = malloc(JOURNAL_BATCH * sizeof(*jobs));
	struct srv_jrec *rec = malloc(sizeof(*rec));
	struct srv_lease_event *levents = malloc(JOURNAL_BATCH * sizeof(*levents));
	if (!jobs || !rec || !levents) {
		srv_log(SRV_LOG_ERROR, "journal out of memory", NULL);
		abort();
	}
	size_t nl = lanes(s);
	struct lanes_reader lr = {.buf = malloc(nl * BATCH * sizeof(*lr.buf)),
				  .head = calloc(nl, sizeof(size_t)),
				  .count = calloc(nl, sizeof(size_t))};
	if (!lr.buf || !lr.head || !lr.count) {
		srv_log(SRV_LOG_ERROR, "journal out of memory", NULL);
		abort();
	}
	thread_started(s);
	uint64_t seq = (uint64_t)s->seq_base;
	int64_t last_ms = s->journal_last_ms, last_record = srv_mono_ms();
	for (;;) {
		bool done;
		size_t n = lanes_take(s, &lr, jobs, JOURNAL_BATCH, (int)s->cfg.tick_ms, &done);
		if (done)
			break;
		int64_t now = srv_now_ms();
		if (now < last_ms)
			now = last_ms; /* journaled time never goes back, even if the clock does */
		/* What the hook dispatcher learned joins this group commit. */
		size_t ne = srv_provision_events(s, levents, JOURNAL_BATCH - n);
		for (size_t i = 0; i < ne; i++)
			jobs[n + i] = (struct srv_job){.kind = SRV_JOB_LEASE, .lease = levents[i]};
		n += ne;
		if (n == 0) {
			if (srv_mono_ms() - last_record < s->cfg.tick_ms)
				continue;
			jobs[0] = (struct srv_job){.kind = SRV_JOB_TICK};
			n = 1;
		}
		for (size_t i = 0; i < n; i++) {
			struct srv_job *job = &jobs[i];
			job->seq = ++seq;
			job->time_ms = now;
			rec->kind = job->kind == SRV_JOB_TICK	 ? SRV_J_TICK
				    : job->kind == SRV_JOB_LEASE ? SRV_J_LEASE
								 : SRV_J_REQUEST;
			rec->seq = seq;
			rec->time_ms = now;
			if (job->kind == SRV_JOB_LEASE) {
				rec->lease_id = job->lease.lease_id;
				rec->lease_event = job->lease.kind;
				snprintf(rec->lease_code, sizeof(rec->lease_code), "%s",
					 job->lease.code);
			}
			if (job->kind == SRV_JOB_REQUEST) {
				size_t len;
				const uint8_t *body = srv_request_body(&job->req, &len);
				rec->body_len = (uint16_t)len;
				memcpy(rec->body, body, len);
				memcpy(rec->signature, job->req.signature, SRV_SIGNATURE_BYTES);
			}
			if (srv_journal_append(s->journal, rec) != SRV_JOURNAL_OK) {
				srv_log(SRV_LOG_ERROR, "journal append failed: stopping", NULL);
				abort();
			}
		}
		int64_t t0 = srv_mono_ns();
		if (srv_journal_sync(s->journal) != SRV_JOURNAL_OK) {
			/* Nothing after this point could be made durable: stop rather than
			 * acknowledge what a restart would not know. */
			srv_log(SRV_LOG_ERROR, "journal write or fdatasync failed: stopping",
				"error=\"%s\"", strerror(errno));
			abort();
		}
		atomic_fetch_add_explicit(&s->m.journal_syncs, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->m.journal_records, n, memory_order_relaxed);
		int64_t synced = srv_mono_ns();
		atomic_store_explicit(&s->m.journal_sync_ms_last, (uint64_t)(synced - t0) / 1000000,
				      memory_order_relaxed);
		srv_stage_count(&s->m, SRV_STAGE_SYNC, synced - t0);
		last_ms = now;
		last_record = synced / 1000000; /* srv_mono_ms()'s clock */
		for (size_t i = 0; i < n; i++)
			jobs[i].t.journaled = synced;
		srv_queue_push(&s->core_q, jobs, n, true, NULL);
		if (srv_journal_size(s->journal) >= (uint64_t)s->cfg.journal_segment_bytes)
			rotate(s, seq + 1);
	}
	free(jobs);
	free(rec);
	free(levents);
	free(lr.buf);
	free(lr.head);
	free(lr.count);
	srv_queue_close(&s->core_q);
	return NULL;
}

/* ---------- core ---------- */

struct core_ctx {
	struct srv *s;
	struct srv_core_out out;
	struct srv_out *items; /* staged for out_q */
	size_t n_items;
	struct srv_wjob *wjobs; /* staged for writer_q */
	size_t n_wjobs;
	struct matching_level_view *bids, *asks;
	uint32_t *topic_books; /* a subscription's books: books_max */
	/* Settlement items the ledger may not have yet, in sequence order from
	 * pend_head: a snapshot carries them. */
	struct srv_wjob *pend;
	size_t pend_head, pend_len, pend_cap;
	uint64_t snap_seq;    /* of the last snapshot taken */
	int64_t snap_mono;    /* when */
	int64_t last_time_ms; /* the journaled time of the last input handled */
	struct srv_stamps t;  /* of the request being answered */
	int64_t step_ns;      /* when the core began the input it handles (with a hook) */
};

static void stage_flush(struct core_ctx *x)
{
	out_push(x->s, x->items, x->n_items);
	x->n_items = 0;
	srv_queue_push(&x->s->writer_q, x->wjobs, x->n_wjobs, true, NULL);
	x->n_wjobs = 0;
}

static struct srv_out *stage_out(struct core_ctx *x)
{
	if (x->n_items == BATCH)
		stage_flush(x);
	struct srv_out *o = &x->items[x->n_items++];
	memset(o, 0, sizeof(*o));
	return o;
}

static struct srv_wjob *stage_w(struct core_ctx *x)
{
	if (x->n_wjobs == BATCH)
		stage_flush(x);
	return &x->wjobs[x->n_wjobs++];
}

/* src (NULL: "") into dst of size bytes, cut to fit, without snprintf's formatting: a hook
 * job copies up to 20 names, and thousands of jobs may be written in one step. */
static void copy_text(char *dst, size_t size, const char *src)
{
	size_t n = src ? strnlen(src, size - 1) : 0;
	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

static void copy_name(char dst[MATCHING_PRODUCT_NAME_MAX + 1], const char *src)
{
	copy_text(dst, MATCHING_PRODUCT_NAME_MAX + 1, src);
}

static const char *book_name(uint32_t book, void *ctx)
{
	const char *n = srv_core_book_name(ctx, book);
	return n ? n : "";
}

/* Forgets the items the ledger has settled. */
static void pending_trim(struct core_ctx *x)
{
	int64_t settled = atomic_load(&x->s->settled_seq);
	while (x->pend_head < x->pend_len && x->pend[x->pend_head].seq < settled)
		x->pend_head++;
	if (x->pend_head > 0 && x->pend_head >= x->pend_len / 2) {
		memmove(x->pend, x->pend + x->pend_head,
			(x->pend_len - x->pend_head) * sizeof(*x->pend));
		x->pend_len -= x->pend_head;
		x->pend_head = 0;
	}
}

static void pending_add(struct core_ctx *x, const struct srv_wjob *w)
{
	if (x->pend_len == x->pend_cap)
		pending_trim(x);
	if (x->pend_len == x->pend_cap) {
		size_t cap = x->pend_cap ? 2 * x->pend_cap : 4096;
		struct srv_wjob *p = realloc(x->pend, cap * sizeof(*p));
		if (p == NULL) {
			srv_log(SRV_LOG_ERROR, "core out of memory", NULL);
			abort();
		}
		x->pend = p;
		x->pend_cap = cap;
	}
	x->pend[x->pend_len++] = *w;
}

static int stage_wjob(const struct srv_wjob *w, void *ctx)
{
	struct core_ctx *x = ctx;
	*stage_w(x) = *w;
	pending_add(x, w);
	return 0;
}

static void lease_names(const struct srv_lease_view *v, struct srv_lease_names *out, void *ctx)
{
	struct srv_core *core = ctx;
	const struct srv_host_view *h = srv_leases_host(srv_core_leases(core), v->host);
	*out = (struct srv_lease_names){.accelerator = srv_core_class_name(core, v->cls),
					.host = h ? h->name : "",
					.vendor = h ? h->spec.vendor : ""};
	for (uint32_t d = 0; h && d < h->spec.n_devices; d++)
		if (v->devmask & (UINT32_C(1) << d))
			out->devices[out->n_devices++] = h->spec.devices[d];
}

static void stage_blob(struct core_ctx *x, uint8_t kind, uint64_t conn, uint32_t account,
		       uint8_t *blob, size_t len)
{
	if (blob == NULL) {
		srv_log(SRV_LOG_ERROR, "lease frames out of memory", NULL);
		return;
	}
	struct srv_out *o = stage_out(x);
	o->kind = kind;
	o->conn = conn;
	o->u.report.account = account;
	o->blob = blob;
	o->blob_len = len;
}

/* A hook job for a lease: its names, devices and the buyer's workload. */
static void hookjob_of(struct srv_core *core, uint8_t kind, const struct srv_lease_view *v,
		       struct srv_hookjob *j)
{
	struct srv_lease_names nm;
	lease_names(v, &nm, core);
	memset(j, 0, sizeof(*j));
	j->kind = kind;
	j->lease_id = v->id;
	j->start_ms = v->start_ms;
	j->end_ms = v->end_ms;
	copy_text(j->host, sizeof(j->host), nm.host);
	copy_text(j->accelerator, sizeof(j->accelerator), nm.accelerator);
	copy_text(j->vendor, sizeof(j->vendor), nm.vendor);
	j->n_devices = (uint32_t)nm.n_devices;
	for (size_t d = 0; d < nm.n_devices; d++)
		copy_text(j->devices[d], sizeof(j->devices[d]), nm.devices[d]);
	const char *w = srv_leases_workload(srv_core_leases(core), v->buyer);
	copy_text(j->workload, sizeof(j->workload), w);
}

/* Who a query's answer goes to, and how it is cut: to query_bytes_max, and never past
 * what the client may leave unread (the frame, its length prefix included). */
static struct srv_answer answer_of(const struct srv *s, const struct srv_core_out *out,
				   uint32_t account, uint64_t nonce)
{
	int64_t unread = s->cfg.out_buffer_hard_bytes - WIRE_HEADER_BYTES;
	int64_t max = s->cfg.query_bytes_max < unread ? s->cfg.query_bytes_max : unread;
	return (struct srv_answer){.account = account,
				   .nonce = nonce,
				   .cut = out->rows_cut,
				   .bytes_max = (size_t)max,
				   .cursors = out->cursors};
}

/* A QUERY_HOSTS answer. */
static void emit_hosts(struct core_ctx *x, const struct srv_core_out *out, uint64_t conn,
		       const struct srv_request *req)
{
	const struct srv_leases *l = srv_core_leases(x->s->core);
	struct srv_host_row *rows = calloc(out->n_host_rows ? out->n_host_rows : 1, sizeof(*rows));
	uint8_t *b = NULL;
	size_t len = 0;
	if (rows) {
		for (size_t i = 0; i < out->n_host_rows; i++) {
			const struct srv_host_view *h = srv_leases_host(l, out->host_rows[i]);
			rows[i] = (struct srv_host_row){
				.host = h,
				.accelerator = srv_core_class_name(x->s->core, h->cls),
				.live_leases = srv_leases_host_live(l, out->host_rows[i])};
		}
		struct srv_answer a = answer_of(x->s, out, req->account, req->nonce);
		b = srv_frame_hosts(&a, rows, out->n_host_rows, &len);
		free(rows);
	}
	stage_blob(x, SRV_OUT_BLOB, conn, req->account, b, len);
}

/* Lease updates to buyer and seller, a lease or host query's answer, and the hook's
 * jobs. */
static void emit_leases(struct core_ctx *x, const struct srv_core_out *out, uint64_t conn,
			const struct srv_request *req)
{
	struct srv *s = x->s;
	const struct srv_lease_out *lo = out->leases;
	size_t len = 0;
	for (size_t i = 0; i < lo->n_updates; i++) {
		const struct srv_lease_view *v = &lo->updates[i];
		/* One frame for both parties (the I/O frees each item's copy). */
		uint8_t *b = srv_frame_leases(NULL, v, 1, lease_names, s->core, &len);
		uint8_t *c = b && v->seller != v->buyer ? malloc(len) : NULL;
		if (c)
			memcpy(c, b, len);
		stage_blob(x, SRV_OUT_ACCT_BLOB, 0, v->buyer, b, len);
		if (v->seller != v->buyer)
			stage_blob(x, SRV_OUT_ACCT_BLOB, 0, v->seller, c, len);
	}
	if (req && req->type == GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES && out->n_reports > 0 &&
	    out->reports[out->n_reports - 1].kind == SRV_REPORT_RESULT) {
		struct srv_answer a = answer_of(s, out, req->account, req->nonce);
		uint8_t *b = srv_frame_leases(&a, out->lease_rows, out->n_lease_rows, lease_names,
					      s->core, &len);
		stage_blob(x, SRV_OUT_BLOB, conn, req->account, b, len);
	}
	if (req && req->type == GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS && out->n_reports > 0 &&
	    out->reports[out->n_reports - 1].kind == SRV_REPORT_RESULT)
		emit_hosts(x, out, conn, req);
	/* Each job is written in place, in the dispatcher's blocks (none without a hook). */
	struct srv_hookjob *j;
	size_t starts = 0;
	for (size_t i = 0; i < lo->n_cmds && (j = srv_provision_job(s)) != NULL; i++) {
		bool start = lo->cmds[i].kind == SRV_HCMD_START;
		starts += start;
		hookjob_of(s->core, start ? SRV_HJ_START : SRV_HJ_STOP, &lo->cmds[i].lease, j);
	}
	srv_provision_flush(s);
	if (lo->n_cmds >= LEASE_COMMANDS_LOGGED && s->prov != NULL)
		srv_log(SRV_LOG_INFO, "lease commands",
			"starts=%zu stops=%zu updates=%zu core_ms=%.1f", starts,
			lo->n_cmds - starts, lo->n_updates,
			(double)(srv_mono_ns() - x->step_ns) / 1e6);
	uint64_t counts[7];
	srv_leases_counts(srv_core_leases(s->core), counts);
	for (int i = 0; i < 7; i++)
		atomic_store_explicit(&s->m.leases[i], counts[i], memory_order_relaxed);
}

/* After a start: a reconcile with every lease that should run, then a start of each. */
static void resume_leases(struct core_ctx *x)
{
	struct srv *s = x->s;
	if (srv_core_leases(s->core) == NULL)
		return;
	srv_core_lease_resume(s->core, &x->out);
	const struct srv_lease_out *lo = x->out.leases;
	size_t n = lo->n_cmds;
	struct srv_hookjob *r = srv_provision_job(s);
	if (r != NULL) {
		struct srv_hookjob *list = malloc((n ? n : 1) * sizeof(*list));
		if (list == NULL) {
			srv_log(SRV_LOG_ERROR, "hook jobs out of memory", NULL);
			abort();
		}
		for (size_t i = 0; i < n; i++)
			hookjob_of(s->core, SRV_HJ_START, &lo->cmds[i].lease, &list[i]);
		*r = (struct srv_hookjob){.kind = SRV_HJ_RECONCILE, .leases = list, .n_leases = n};
		for (size_t i = 0; i < n; i++)
			*srv_provision_job(s) = list[i];
		srv_provision_flush(s);
	}
	srv_log(SRV_LOG_INFO, "leases resumed", "running_or_starting=%zu", n);
}

/* Turns one call's results into messages for the I/O and the ledger. */
static void emit(struct core_ctx *x, uint64_t conn, const struct srv_request *req, uint64_t seq,
		 int64_t now_ms)
{
	struct srv *s = x->s;
	struct srv_core_out *out = &x->out;
	uint32_t type = req ? req->type : 0; /* ticks have no request */
	for (size_t i = 0; i < out->n_reports; i++) {
		const struct srv_report *r = &out->reports[i];
		if (r->kind == SRV_REPORT_RESULT &&
		    (type == GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES ||
		     type == GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS))
			continue; /* answered with its leases or hosts (emit_leases) */
		if (r->kind == SRV_REPORT_RESULT) {
			size_t len = 0;
			struct srv_answer a = answer_of(s, out, r->account, r->nonce);
			uint8_t *blob = srv_frame_result(
				&a, type, out->rows, out->n_rows, out->balance_available,
				out->balance_reserved, s->cfg.currency, book_name, s->core, &len);
			if (blob == NULL) {
				srv_log(SRV_LOG_ERROR, "query result out of memory", NULL);
				continue;
			}
			struct srv_out *o = stage_out(x);
			o->kind = SRV_OUT_BLOB;
			o->conn = conn;
			o->blob = blob;
			o->blob_len = len;
			continue;
		}
		struct srv_out *o = stage_out(x);
		bool reply = r->kind == SRV_REPORT_ACK || r->kind == SRV_REPORT_REJECT;
		o->kind = reply ? SRV_OUT_REPLY : SRV_OUT_EXEC;
		o->conn = conn;
		o->request_type = type;
		o->sequence = seq;
		o->time_ms = now_ms;
		o->u.report = *r;
		if (reply) {
			o->t = x->t;
			count_request(s, type, r->kind == SRV_REPORT_ACK ? 0 : (uint32_t)r->reason);
		}
		if (!reply)
			copy_name(o->product, srv_core_book_name(s->core, r->book));
	}
	for (size_t i = 0; i < out->n_md; i++) {
		struct srv_out *o = stage_out(x);
		o->kind = SRV_OUT_MD;
		o->u.md = out->md[i];
		copy_name(o->product, srv_core_book_name(s->core, out->md[i].book));
	}
	for (size_t i = 0; i < out->n_retired && s->cfg.http_listen[0] != '\0'; i++) {
		struct srv_out *o = stage_out(x);
		o->kind = SRV_OUT_RETIRED;
		copy_name(o->product, out->retired[i]);
	}
	srv_wjobs_of(out, (int64_t)seq, srv_mono_ms(), stage_wjob, x);
	atomic_fetch_add_explicit(&s->m.fills, out->n_fills, memory_order_relaxed);
	if (out->leases)
		emit_leases(x, out, conn, req);
	bool acked = false; /* the clock's expiry reports may come before the ACK */
	for (size_t i = 0; i < out->n_reports; i++)
		acked |= out->reports[i].kind == SRV_REPORT_ACK;
	if (acked && s->cfg.http_listen[0] != '\0' &&
	    (type == GRIDEX__V1__REQUEST_TYPE__HALT || type == GRIDEX__V1__REQUEST_TYPE__RESUME)) {
		struct srv_out *o = stage_out(x);
		o->kind = SRV_OUT_HALT;
		o->halted = type == GRIDEX__V1__REQUEST_TYPE__HALT;
		copy_name(o->product, req->product);
	}
}

/* Snapshots of every book a topic covers, encoded back to back (*len_out bytes; NULL and 0
 * when there are none, or no memory). */
static uint8_t *snapshots(struct core_ctx *x, const char *topic, size_t *len_out)
{
	struct srv *s = x->s;
	uint32_t *books = x->topic_books;
	size_t nb = srv_core_topic_books(s->core, topic, books, (size_t)s->cfg.books_max);
	size_t max = (size_t)s->cfg.snapshot_levels_max, cap = 0, len = 0;
	for (size_t i = 0; i < nb; i++)
		cap += srv_frame_snapshot_bound(srv_core_book_name(s->core, books[i]), 2 * max);
	uint8_t *blob = cap ? malloc(cap) : NULL;
	for (size_t i = 0; blob && i < nb; i++) {
		size_t n_bids, n_asks;
		uint64_t level_seq, trade_seq;
		bool found = srv_core_snapshot(s->core, books[i], x->bids, &n_bids, x->asks,
					       &n_asks, max, &level_seq, &trade_seq);
		assert(found);
		(void)found;
		size_t n = srv_frame_snapshot(blob + len, cap - len,
					      srv_core_book_name(s->core, books[i]), level_seq,
					      x->bids, n_bids, x->asks, n_asks);
		assert(n > 0);
		len += n;
	}
	/* A product without a book yet: an empty snapshot at sequence 0. */
	if (nb == 0 && strchr(topic, '/') != NULL) {
		cap = srv_frame_snapshot_bound(topic, 0);
		blob = malloc(cap);
		if (blob)
			len = srv_frame_snapshot(blob, cap, topic, 0, NULL, 0, NULL, 0);
	}
	*len_out = len;
	return blob;
}

/* Answers a Subscribe with the topic's snapshots; an Unsubscribe comes this way only to
 * stay in order with the Subscribes, and takes none. */
static void subscribe(struct core_ctx *x, const struct srv_job *job)
{
	size_t len = 0;
	uint8_t *blob = job->unsubscribe ? NULL : snapshots(x, job->topic, &len);
	struct srv_out *o = stage_out(x);
	o->kind = SRV_OUT_SUBSCRIBED;
	o->conn = job->conn;
	o->trades = job->trades;
	o->unsubscribe = job->unsubscribe;
	copy_name(o->product, job->topic);
	o->blob = blob;
	o->blob_len = len;
}

/* ---------- snapshots ---------- */

/*
 * Serializes the core (between inputs, so it is the state after `seq`) and the
 * unsettled items for the snapshot thread. The core waits for a snapshot still
 * being written only when `wait` (at the end); otherwise it skips this one.
 */
static void take_snapshot(struct core_ctx *x, uint64_t seq, bool wait)
{
	struct srv *s = x->s;
	pthread_mutex_lock(&s->snap_lock);
	while (wait && s->snap_busy)
		pthread_cond_wait(&s->snap_cond, &s->snap_lock);
	if (s->snap_busy) {
		pthread_mutex_unlock(&s->snap_lock);
		return;
	}
	int64_t t0 = srv_mono_ms();
	struct srv_snapshot_info info = {.seq = seq, .time_ms = x->last_time_ms};
	srv_settings_fingerprint(&s->cfg, info.settings);
	struct srv_snap_w *w = s->snap_buf;
	w->failed = false;
	srv_snapshot_begin(w, &info);
	srv_core_save(s->core, w);
	pending_trim(x);
	/* Items from the mark on; the ledger has every one below it. */
	int64_t mark = x->pend_head < x->pend_len ? x->pend[x->pend_head].seq
						  : atomic_load(&s->settled_seq);
	srv_snap_i64(w, mark);
	srv_snap_u32(w, (uint32_t)(x->pend_len - x->pend_head));
	for (size_t i = x->pend_head; i < x->pend_len; i++)
		srv_wjob_save(w, &x->pend[i]);
	/* Format 2: the last batch the ledger confirmed, at least the one that holds the
	 * items below the mark (read after settled_seq, in pending_trim, which the
	 * ledger thread stores after it): the ledger must have it. */
	srv_snap_i64(w, atomic_load(&s->settled_batch));
	srv_snapshot_finish(w);
	x->snap_seq = seq;
	x->snap_mono = srv_mono_ms();
	s->snap_seq = seq;
	s->snap_busy = true;
	pthread_cond_broadcast(&s->snap_cond);
	pthread_mutex_unlock(&s->snap_lock);
	atomic_store(&s->m.snapshot_pause_ms_last, (uint64_t)(x->snap_mono - t0));
}

static bool snapshot_due(const struct core_ctx *x, uint64_t seq)
{
	const struct srv_config *c = &x->s->cfg;
	if (seq <= x->snap_seq)
		return false;
	return (c->snapshot_every_records > 0 &&
		seq - x->snap_seq >= (uint64_t)c->snapshot_every_records) ||
	       (c->snapshot_every_ms > 0 && srv_mono_ms() - x->snap_mono >= c->snapshot_every_ms);
}

/* Keeps the newest snapshots_kept snapshots and moves the segments that only hold
 * records up to the newest snapshot to archive/. */
static void prune(struct srv *s, uint64_t seq)
{
	const char *dir = s->cfg.journal_dir;
	uint64_t *snaps = NULL;
	size_t n = 0;
	char path[SRV_CONFIG_TEXT_MAX + 48], to[SRV_CONFIG_TEXT_MAX + 64];
	if (srv_journal_list(dir, "snapshot-", &snaps, &n) == SRV_JOURNAL_OK)
		for (size_t i = 0; i + (size_t)s->cfg.snapshots_kept < n; i++) {
			snprintf(path, sizeof(path), "%s/snapshot-%020llu", dir,
				 (unsigned long long)snaps[i]);
			if (unlink(path) != 0)
				srv_log(SRV_LOG_WARN, "cannot remove an old snapshot",
					"path=\"%s\" error=\"%s\"", path, strerror(errno));
		}
	free(snaps);
	uint64_t *segs = NULL;
	if (srv_journal_list(dir, "journal-", &segs, &n) != SRV_JOURNAL_OK)
		return;
	snprintf(to, sizeof(to), "%s/archive", dir);
	bool moved = false;
	for (size_t i = 0; i + 1 < n && segs[i + 1] <= seq + 1; i++) {
		if (!moved && mkdir(to, 0750) != 0 && errno != EEXIST)
			break;
		snprintf(path, sizeof(path), "%s/journal-%020llu", dir,
			 (unsigned long long)segs[i]);
		snprintf(to, sizeof(to), "%s/archive/journal-%020llu", dir,
			 (unsigned long long)segs[i]);
		if (rename(path, to) != 0) {
			srv_log(SRV_LOG_WARN, "cannot archive a journal segment",
				"path=\"%s\" error=\"%s\"", path, strerror(errno));
			break;
		}
		moved = true;
	}
	if (moved) {
		snprintf(to, sizeof(to), "%s/archive", dir);
		if (srv_journal_sync_dir(to) != SRV_JOURNAL_OK ||
		    srv_journal_sync_dir(dir) != SRV_JOURNAL_OK)
			srv_log(SRV_LOG_WARN, "cannot sync journal_dir", NULL);
	}
	free(segs);
}

static void *snapshot_main(void *arg)
{
	struct srv *s = arg;
	srv_thread_name("gx-snapshot");
	pthread_mutex_lock(&s->snap_lock);
	for (;;) {
		while (!s->snap_busy && !s->snap_stop)
			pthread_cond_wait(&s->snap_cond, &s->snap_lock);
		if (!s->snap_busy)
			break;
		uint64_t seq = s->snap_seq;
		pthread_mutex_unlock(&s->snap_lock);
		int64_t t0 = srv_mono_ms();
		if (srv_snapshot_write(s->cfg.journal_dir, seq, s->snap_buf) != 0) {
			srv_log(SRV_LOG_ERROR, "snapshot not written", "sequence=%llu error=\"%s\"",
				(unsigned long long)seq, strerror(errno));
		} else {
			srv_log(SRV_LOG_INFO, "snapshot written",
				"sequence=%llu bytes=%zu core_pause_ms=%llu write_ms=%lld",
				(unsigned long long)seq, s->snap_buf->len,
				(unsigned long long)atomic_load(&s->m.snapshot_pause_ms_last),
				(long long)(srv_mono_ms() - t0));
			atomic_fetch_add(&s->m.snapshots, 1);
			prune(s, seq);
		}
		pthread_mutex_lock(&s->snap_lock);
		s->snap_busy = false;
		pthread_cond_broadcast(&s->snap_cond);
	}
	pthread_mutex_unlock(&s->snap_lock);
	return NULL;
}

static void *core_main(void *arg)
{
	struct srv *s = arg;
	srv_thread_name("gx-core");
	struct core_ctx x = {.s = s};
	struct srv_job *jobs = malloc(BATCH * sizeof(*jobs));
	x.items = calloc(BATCH, sizeof(*x.items));
	x.wjobs = calloc(BATCH, sizeof(*x.wjobs));
	x.bids = calloc((size_t)s->cfg.snapshot_levels_max, sizeof(*x.bids));
	x.asks = calloc((size_t)s->cfg.snapshot_levels_max, sizeof(*x.asks));
	x.topic_books = calloc((size_t)s->cfg.books_max, sizeof(*x.topic_books));
	if (!jobs || !x.items || !x.wjobs || !x.bids || !x.asks || !x.topic_books ||
	    srv_core_out_alloc(s->core, &x.out) != SRV_CORE_OK) {
		srv_log(SRV_LOG_ERROR, "core out of memory", NULL);
		abort();
	}
	thread_started(s);
	uint64_t seq = (uint64_t)s->seq_base;
	/* What start-up handed to the ledger again is unsettled too. */
	x.pend = s->resent;
	x.pend_len = x.pend_cap = s->n_resent;
	s->resent = NULL;
	x.snap_seq = s->snap_seq; /* the snapshot start-up loaded (0: none): replayed
				   * records count towards the next one */
	x.snap_mono = srv_mono_ms();
	x.last_time_ms = s->journal_last_ms;
	resume_leases(&x);
	for (;;) {
		size_t n = srv_queue_pop(&s->core_q, jobs, BATCH, -1);
		if (n == 0 && srv_queue_drained(&s->core_q))
			break;
		/* Journaled inputs in sequence order, with the journal's times: replaying
		 * the journal through this same code rebuilds exactly this state. */
		for (size_t i = 0; i < n; i++) {
			const struct srv_job *job = &jobs[i];
			if (s->prov != NULL) /* for the lease commands' line; none without leases */
				x.step_ns = srv_mono_ns();
			if (job->kind == SRV_JOB_SUBSCRIBE) {
				subscribe(&x, job);
				continue;
			}
			seq = job->seq;
			x.last_time_ms = job->time_ms;
			if (srv_core_leases(s->core))
				srv_leases_set_seq(srv_core_leases(s->core), seq);
			int rc;
			if (job->kind == SRV_JOB_LEASE) {
				rc = srv_core_lease_event(s->core, job->lease.lease_id,
							  job->lease.kind, job->lease.code,
							  job->time_ms, &x.out);
				assert(rc == SRV_CORE_OK);
				emit(&x, 0, NULL, seq, job->time_ms);
				continue;
			}
			if (job->kind == SRV_JOB_TICK) {
				rc = srv_core_tick(s->core, job->time_ms, &x.out);
				assert(rc == SRV_CORE_OK);
				emit(&x, 0, NULL, seq, job->time_ms);
				continue;
			}
			const struct srv_request *req = &job->req;
			bool registers = req->type == GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT;
			if (registers)
				pthread_rwlock_wrlock(&s->keys_lock);
			rc = srv_core_handle(s->core, req, job->time_ms, &x.out);
			if (registers)
				pthread_rwlock_unlock(&s->keys_lock);
			assert(rc == SRV_CORE_OK);
			(void)rc;
			x.t = job->t;
			x.t.core = srv_mono_ns();
			emit(&x, job->conn, req, seq, job->time_ms);
		}
		/* Gauges first: a client that reads the metrics after its answer sees them. */
		atomic_store_explicit(&s->m.sequence, seq, memory_order_relaxed);
		atomic_store_explicit(&s->m.orders_resting,
				      matching_order_count(srv_core_engine(s->core)),
				      memory_order_relaxed);
		atomic_store_explicit(&s->m.books, matching_book_live(srv_core_engine(s->core)),
				      memory_order_relaxed);
		const struct srv_leases *leases = srv_core_leases(s->core);
		if (leases) {
			uint32_t all = srv_leases_host_count(leases),
				 out = srv_leases_withdrawn_count(leases);
			atomic_store_explicit(&s->m.hosts[0], all - out, memory_order_relaxed);
			atomic_store_explicit(&s->m.hosts[1], out, memory_order_relaxed);
		}
		stage_flush(&x);
		if (snapshot_due(&x, seq))
			take_snapshot(&x, seq, false);
	}
	stage_flush(&x);
	/* A drained stop leaves a snapshot of the last state: the next start is quick. */
	if (seq > x.snap_seq)
		take_snapshot(&x, seq, true);
	pthread_mutex_lock(&s->snap_lock);
	s->snap_stop = true;
	pthread_cond_broadcast(&s->snap_cond);
	pthread_mutex_unlock(&s->snap_lock);
	free(x.pend);
	srv_core_out_free(&x.out);
	free(jobs);
	free(x.items);
	free(x.wjobs);
	free(x.bids);
	free(x.asks);
	free(x.topic_books);
	srv_queue_close(&s->writer_q);
	atomic_store(&s->core_done, true);
	srv_io_notify(s);
	return NULL;
}

/* ---------- ledger writer ---------- */

struct writer_ctx {
	struct srv *s;
	struct ledger_writer *w;
	int64_t oldest_mono;	/* of the pending batch's first item */
	int64_t last_seq;	/* of the last item handed to the ledger writer */
	int64_t batch_seq;	/* of the last item in the pending batch: its id */
	int64_t halted_ms;	/* when the ledger first refused what waits (0: none) */
	int64_t halt_logged_ms; /* when the halt was last logged */
	bool gave_up;		/* stopping with items the ledger has not taken */
};

/* After a failed attempt to hand the ledger something. A refusal (anything but
 * UNAVAILABLE, which is an outage and only waits) halts settlement: the ledger and
 * the engine disagree, so nothing that trades is taken until the ledger takes what
 * waits (an operator's repair; or a fixed gridexd, since the item stays in the
 * journal). Returns false when gridexd is stopping (the core is done and has taken
 * its last snapshot, which holds every item the ledger lacks): the next start
 * settles them. Else waits a second and returns true: try again. */
static bool writer_retry(struct writer_ctx *x, int rc, const char *what)
{
	struct srv *s = x->s;
	int64_t now = srv_mono_ms();
	if (rc != LEDGER_ERR_UNAVAILABLE && x->halted_ms == 0) {
		x->halted_ms = x->halt_logged_ms = now;
		atomic_store(&s->m.settlement_halted, true);
		srv_log(SRV_LOG_ERROR,
			"settlement halted: new orders refused until the ledger "
			"takes it",
			"item=\"%s\" status=%s error=\"%s\" settled_seq=%lld", what,
			ledger_status_name(rc), ledger_writer_error(x->w),
			(long long)atomic_load(&s->settled_seq));
	} else if (rc != LEDGER_ERR_UNAVAILABLE && now - x->halt_logged_ms >= 60000) {
		x->halt_logged_ms = now;
		srv_log(SRV_LOG_ERROR, "settlement still halted",
			"item=\"%s\" status=%s error=\"%s\" halted_s=%lld", what,
			ledger_status_name(rc), ledger_writer_error(x->w),
			(long long)((now - x->halted_ms) / 1000));
	}
	if (atomic_load(&s->core_done)) {
		x->gave_up = true;
		srv_log(SRV_LOG_WARN, "settlement stopped short",
			"reason=\"stopping; the journal and the last snapshot keep what the "
			"ledger lacks, and the next start settles it\" pending=%zu queued=%zu",
			ledger_writer_pending(x->w), srv_queue_depth(&s->writer_q));
		return false;
	}
	struct timespec pause = {.tv_sec = 1};
	nanosleep(&pause, NULL);
	return true;
}

/* The ledger took what it had refused: orders are taken again. */
static void writer_resumed(struct writer_ctx *x)
{
	if (x->halted_ms == 0)
		return;
	srv_log(SRV_LOG_WARN, "settlement resumed", "halted_ms=%lld",
		(long long)(srv_mono_ms() - x->halted_ms));
	x->halted_ms = 0;
	atomic_store(&x->s->m.settlement_halted, false);
}

/* Flushes until the pending batch is in the ledger; false when it gave up (stopping). */
static bool flush(struct writer_ctx *x)
{
	struct srv *s = x->s;
	size_t pending = ledger_writer_pending(x->w);
	if (pending == 0)
		return true;
	for (int attempt = 0;; attempt++) {
		int rc = ledger_writer_flush(x->w);
		atomic_store(&s->m.settlement_retries, ledger_writer_retries(x->w));
		if (rc == LEDGER_OK)
			break;
		atomic_fetch_add(&s->m.settlement_errors, 1);
		if (attempt % 60 == 0) /* once a minute after the first */
			srv_log(attempt == 0 ? SRV_LOG_WARN : SRV_LOG_ERROR,
				"settlement batch not written",
				"status=%s error=\"%s\" pending=%zu attempts=%d",
				ledger_status_name(rc), ledger_writer_error(x->w), pending,
				attempt + 1);
		/* The batch stays sealed and is tried again as it is; fills keep queueing. */
		if (!writer_retry(x, rc, "batch"))
			return false;
	}
	writer_resumed(x);
	atomic_store(&s->settled_batch, x->batch_seq);
	atomic_store(&s->settled_seq, x->last_seq);
	int64_t lag = srv_mono_ms() - x->oldest_mono;
	atomic_fetch_add(&s->m.batches, 1);
	atomic_store(&s->m.batch_fills_last, pending);
	atomic_fetch_add(&s->m.batch_fills_total, pending);
	atomic_store(&s->m.settlement_lag_ms, (uint64_t)(lag > 0 ? lag : 0));
	histogram_add(s->m.settle_count, &s->m.settle_sum_ns, srv_settle_bounds_ns,
		      SRV_SETTLE_BUCKETS, lag * 1000000);
	atomic_store(&s->m.settlement_pending, 0);
	return true;
}

/* A registration, after the batch before it: false when it gave up (stopping). Its
 * sequence counts as settled only once the participant is in the ledger. */
static bool writer_register(struct writer_ctx *x, const struct srv_wjob *j)
{
	const struct srv_ledger_op *op = &j->u.op;
	if (!flush(x))
		return false;
	for (;;) {
		int rc = ledger_writer_register(x->w, op->account, op->name, op->public_key);
		if (rc == LEDGER_OK)
			break;
		if (x->halted_ms == 0 || rc == LEDGER_ERR_UNAVAILABLE)
			srv_log(SRV_LOG_ERROR, "participant not registered in the ledger",
				"account=%u status=%s error=\"%s\"", op->account,
				ledger_status_name(rc), ledger_writer_error(x->w));
		if (!writer_retry(x, rc, "registration"))
			return false;
	}
	writer_resumed(x);
	x->last_seq = j->seq;
	atomic_store(&x->s->settled_seq, j->seq);
	return true;
}

/* One item into the pending batch; false when it gave up (stopping). A refused item
 * is tried again until it is taken: nothing after it may reach the ledger first. */
static bool writer_add(struct writer_ctx *x, const struct srv_wjob *j)
{
	if (j->kind == SRV_W_OP && j->u.op.kind == SRV_OP_REGISTER)
		return writer_register(x, j);
	int64_t first_mono = ledger_writer_pending(x->w) == 0 ? j->mono_ms : x->oldest_mono;
	for (;;) {
		int rc;
		if (j->kind == SRV_W_FILL) {
			rc = ledger_writer_add_fill(x->w, &j->u.trade, j->seq, j->mono_ms);
		} else if (j->kind == SRV_W_SETTLE) {
			const struct srv_settlement *t = &j->u.settle;
			rc = ledger_writer_add_settle(x->w, &t->fill, t->used, t->total,
						      t->lease_id, j->seq, j->mono_ms);
		} else {
			rc = ledger_writer_add_action(x->w, j->u.op.account, j->u.op.amount,
						      j->u.op.kind == SRV_OP_DEPOSIT, j->seq,
						      j->mono_ms);
		}
		if (rc == LEDGER_OK)
			break;
		if (x->halted_ms == 0)
			srv_log(SRV_LOG_ERROR, "settlement item refused",
				"seq=%lld status=%s error=\"%s\"", (long long)j->seq,
				ledger_status_name(rc), ledger_writer_error(x->w));
		/* Not UNAVAILABLE: an item is refused before any database is asked. */
		if (!writer_retry(x, rc == LEDGER_ERR_UNAVAILABLE ? LEDGER_ERR_REFUSED : rc,
				  "settlement item"))
			return false;
	}
	writer_resumed(x);
	x->oldest_mono = first_mono;
	x->last_seq = x->batch_seq = j->seq;
	return true;
}

static void *writer_main(void *arg)
{
	struct srv *s = arg;
	srv_thread_name("gx-ledger");
	struct writer_ctx x = {.s = s};
	struct ledger_writer_config wc;
	ledger_writer_config_default(&wc);
	wc.conninfo = s->cfg.database_url;
	wc.currency = s->cfg.currency;
	wc.fees.maker_bps = (uint32_t)s->cfg.maker_bps;
	wc.fees.taker_bps = (uint32_t)s->cfg.taker_bps;
	wc.batch_fills_max = (uint32_t)s->cfg.batch_fills_max;
	wc.batch_ms_max = (uint32_t)s->cfg.batch_ms_max;
	struct srv_wjob *jobs = malloc(256 * sizeof(*jobs));
	if (!jobs || ledger_writer_create(&wc, &x.w) != LEDGER_OK) {
		srv_log(SRV_LOG_ERROR, "ledger writer cannot start", NULL);
		abort();
	}
	/* Batches go over the connection that holds the writer lock: it lapses with
	 * that session, and the writer takes it again on the next (ledger_try_lock). */
	ledger_writer_adopt(x.w, s->lock);
	s->lock = NULL;
	/* A batch ends only after the last item of an input (its id is the input's
	 * sequence): a full batch takes the rest of its last input, one item at a time. */
	bool at_end = true;
	for (;;) {
		/* Fills and actions together stay within one batch's capacity. */
		size_t pending = ledger_writer_pending(x.w), max = (size_t)s->cfg.batch_fills_max;
		size_t room = pending < max ? max - pending : (at_end ? 0 : 1);
		if (room > 256)
			room = 256;
		size_t n = room ? srv_queue_pop(&s->writer_q, jobs, room, (int)s->cfg.batch_ms_max)
				: 0;
		for (size_t i = 0; i < n && !x.gave_up; i++) {
			if (writer_add(&x, &jobs[i]))
				at_end = jobs[i].seq_end;
		}
		atomic_store(&s->m.settlement_pending, ledger_writer_pending(x.w));
		if (!x.gave_up && at_end && (room == 0 || ledger_writer_due(x.w, srv_mono_ms())))
			flush(&x);
		if (x.gave_up || (n == 0 && srv_queue_drained(&s->writer_q))) {
			if (!x.gave_up)
				flush(&x);
			break;
		}
	}
	ledger_writer_destroy(x.w);
	free(jobs);
	atomic_store(&s->writer_done, true);
	srv_io_notify(s);
	return NULL;
}

bool srv_verifier_cpus(struct srv *s, char *err, size_t err_len)
{
	cpu_set_t set;
	static int allowed[SRV_CPUS_MAX]; /* once, at start */
	int n_allowed = 0;
	if (sched_getaffinity(0, sizeof(set), &set) != 0) {
		snprintf(err, err_len, "verifier_cpus: cannot read the CPUs gridexd may run on: %s",
			 strerror(errno));
		return false;
	}
	for (int cpu = 0; cpu < SRV_CPUS_MAX && cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &set))
			allowed[n_allowed++] = cpu;
	}
	return srv_cpus_plan(s->cfg.verifier_cpus, (int)s->cfg.verifier_threads, allowed, n_allowed,
			     &s->verifier_cpus, err, err_len);
}

/* Pins verifier i as planned; a CPU refused now (gone offline since the plan) leaves it
 * to the scheduler, with a warning. */
static void pin_verifier(struct srv *s, int i)
{
	const struct srv_cpus *p = &s->verifier_cpus;
	if (p->n == 0)
		return;
	int cpu = p->cpu[i % p->n];
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	int rc = pthread_setaffinity_np(s->verifiers[i], sizeof(set), &set);
	if (rc != 0)
		srv_log(SRV_LOG_WARN, "verifier not pinned", "verifier=%d cpu=%d reason=\"%s\"", i,
			cpu, strerror(rc));
}

int srv_pipeline_start(struct srv *s)
{
	int n = (int)s->cfg.verifier_threads;
	s->verifiers = calloc((size_t)n, sizeof(*s->verifiers));
	struct lane_arg *args = calloc((size_t)n, sizeof(*args));
	s->lane_args = args;
	if (!s->verifiers || !args)
		return -1;
	atomic_store(&s->verifiers_alive, n);
	if (pthread_mutex_init(&s->start_lock, NULL) != 0 ||
	    pthread_cond_init(&s->start_cond, NULL) != 0)
		return -1;
	s->start_pending = 2 + n; /* journal, core and the verifiers */
	for (int i = 0; i < n; i++) {
		args[i] = (struct lane_arg){.s = s, .lane = (size_t)i};
		if (pthread_create(&s->verifiers[i], NULL, verifier_main, &args[i]) != 0)
			return -1;
		pin_verifier(s, i);
	}
	if (s->cfg.hook[0] != '\0' && srv_provision_start(s) != 0)
		return -1;
	if (pthread_create(&s->snap_thread, NULL, snapshot_main, s) != 0 ||
	    pthread_create(&s->journal_thread, NULL, journal_main, s) != 0 ||
	    pthread_create(&s->core_thread, NULL, core_main, s) != 0 ||
	    pthread_create(&s->writer_thread, NULL, writer_main, s) != 0)
		return -1;
	pthread_mutex_lock(&s->start_lock);
	while (s->start_pending > 0)
		pthread_cond_wait(&s->start_cond, &s->start_lock);
	pthread_mutex_unlock(&s->start_lock);
	return 0;
}

void srv_pipeline_join(struct srv *s)
{
	for (int i = 0; i < (int)s->cfg.verifier_threads; i++)
		pthread_join(s->verifiers[i], NULL);
	pthread_join(s->journal_thread, NULL);
	pthread_join(s->core_thread, NULL);
	srv_provision_stop(s);
	pthread_join(s->writer_thread, NULL);
	pthread_join(s->snap_thread, NULL);
	free(s->verifiers);
	free(s->lane_args);
	s->verifiers = NULL;
	s->lane_args = NULL;
}
