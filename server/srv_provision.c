/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hook dispatcher (docs/provisioning.md): the thread that decides which
 * provisioning hook calls to make, and hook_calls_max caller threads that make
 * them (srv_hook_call: its own process, a timeout, a clean environment). The
 * core hands it start and stop jobs; it calls the hook, retries failed calls
 * with doubling pauses under the same lease id, asks running leases for their
 * status, and hands what it learned back as lease events, which the journal
 * thread journals before the core acts on them: a restart replays them exactly.
 *
 * Calls for different hosts run at once, up to hook_calls_max; one host's run
 * one at a time, in the order their jobs came (a stop before the start of the
 * next lease on the same devices). A reconcile runs alone: it waits for the
 * calls before it, and nothing after it starts until it is done.
 *
 * A job is durable before it is called: it follows from journaled inputs (the
 * tick that made a lease STARTING, the input that ended it), and start-up
 * re-creates the calls of every lease that should run (a reconcile, then a
 * start of each). A stop lost in a crash is covered by that reconcile, which
 * stops whatever the hook runs that is not in its list.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_dues.h"
#include "srv_hook.h"
#include "srv_idmap.h"
#include "srv_lease.h"
#include "srv_log.h"
#include "srv_server.h"
#include "srv_tindex.h"

/* A job in the list, in the order the jobs came. One that is done stays as a gap
 * (gone) until the list is compacted, so that removing it moves nothing. */
struct work {
	struct srv_hookjob job;
	uint32_t attempt;
	int64_t next_ms; /* monotonic: when to call (0: at once) */
	uint64_t no;	 /* which call's result is its own */
	uint32_t call;	 /* the call in flight, when running */
	bool running;	 /* its call is in flight */
	bool gone;	 /* done */
};

/* A running lease whose status is asked: a slot of a table that keeps its place (the
 * call in flight names it), found by lease id through by_lease, due through the heap.
 * It keeps what its calls need, not the start job (about 2 KB): the status request,
 * serialized once when the lease started running (the same each time: attempt 1), and
 * what the dispatcher reads of the lease. */
struct watch {
	uint64_t no; /* 0: the slot is free */
	uint64_t lease_id;
	int64_t end_ms;
	char *req; /* the status request, compact JSON (malloc'ed) */
	size_t req_len;
	char host[SRV_ACCOUNT_NAME_BYTES_MAX + 1];
};

/* One hook call: the dispatcher fills it in (READY), its caller thread makes it
 * (RUNNING) and hands it back (DONE); the dispatcher takes the result (FREE). */
enum { CALL_FREE, CALL_READY, CALL_RUNNING, CALL_DONE };

struct call {
	int state; /* under lock */
	bool used; /* the dispatcher's: given and not yet taken back */
	char host[SRV_ACCOUNT_NAME_BYTES_MAX + 1]; /* "" for a reconcile */
	bool status;				   /* of a watch, else of a work */
	uint64_t no;				   /* the work's or watch's */
	uint32_t slot;				   /* the watch's, or the work's place */
	uint64_t lease_id;
	uint32_t attempt;
	const char *op;
	json_t *req; /* a job's request, or NULL */
	char *text;  /* a status call's request, serialized (malloc'ed), or NULL */
	size_t text_len;
	int outcome;
	struct srv_hook_result res;
};

struct caller {
	struct srv_provision *p;
	struct call *call;
	pthread_t thread;
	bool started;
};

/* The first bytes of a hook's stderr that its log line shows (all of it is counted). */
#define HOOK_LOG_TEXT_MAX 1024

/* Jobs from the core come in blocks: the core fills one of its own without the lock,
 * and a block changes hands whole once full (or at the end of the core's step), so that
 * neither thread holds the lock while jobs (2 KB each) are written or read, however
 * many leases start at once. The dispatcher gives emptied blocks back for reuse: when
 * thousands of leases start at once the core writes into pages already in memory. */
#define JOB_BLOCK	 64
#define SPARE_BLOCKS_MAX 32 /* blocks kept for reuse (about 4 MB): their pages stay in */

/* The job list's places kept while it is empty (about 2 MB); a longer list is freed. */
#define WORK_KEPT 1024

struct job_block {
	struct job_block *next;
	size_t n;
	struct srv_hookjob jobs[JOB_BLOCK];
};

struct srv_provision {
	struct srv *s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job_block *filling;	     /* the core's own */
	struct job_block *in_head, *in_tail; /* core -> dispatcher, oldest first */
	struct job_block *spare;	     /* emptied by the dispatcher, for the core */
	size_t n_spare;
	struct srv_lease_event *events; /* dispatcher -> journal */
	size_t n_events, cap_events;
	bool stop;
	/* the calls (under lock for their state; their other fields belong to whoever
	 * the state says), and the callers that make them */
	struct call *calls;
	struct caller *callers;
	size_t n_calls;
	pthread_cond_t call_cond; /* a call is READY, or the callers are to stop */
	bool callers_stop;
	/* the dispatcher's own */
	struct work *work;
	size_t n_work, cap_work;
	size_t work_head;	   /* the first place not gone, or n_work */
	size_t n_gone, n_live;	   /* places gone, and jobs in the list */
	size_t n_jobs_running;	   /* jobs whose call is in flight */
	size_t n_timed;		   /* jobs with a next_ms (none: next_due reads none) */
	struct srv_idmap of_lease; /* lease id -> its jobs in the list (when any) */
	struct watch *watch;	   /* slots; those below n_watch are used or in free_slots */
	size_t n_watch, cap_watch;
	uint32_t *free_slots;
	size_t n_free, cap_free;
	struct srv_idmap by_lease; /* lease id -> slot */
	/* When each watch is due (monotonic; key: its no, of.slot: its slot): a watch has
	 * exactly one entry while its status call is not in flight, none while it is; an
	 * entry whose watch has gone (its slot free, or another watch's: another no) is
	 * dropped when it reaches the top. */
	struct srv_dues due;
	struct srv_due *held; /* due entries a pass put aside (their host busy) */
	size_t cap_held;
	uint64_t next_no;
	size_t n_running;	 /* calls not FREE */
	bool reconciling;	 /* a reconcile is in flight */
	struct srv_tindex busy;	 /* hosts that may not get a call now (one pass) */
	const char **busy_hosts; /* their names (the index's values) */
	size_t n_busy, max_busy;
	struct srv_hook_limits limits;
};

static void *grow(void *p, size_t *cap, size_t need, size_t item)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? 2 * *cap : 16;
	while (n < need)
		n *= 2;
	void *q = realloc(p, n * item);
	if (q == NULL) {
		srv_log(SRV_LOG_ERROR, "hook dispatcher out of memory", NULL);
		abort();
	}
	*cap = n;
	return q;
}

/* Under the lock: the core's block, when it holds jobs, to the dispatcher. */
static void hand_over(struct srv_provision *p)
{
	struct job_block *b = p->filling;
	if (b == NULL || b->n == 0)
		return;
	b->next = NULL;
	if (p->in_tail)
		p->in_tail->next = b;
	else
		p->in_head = b;
	p->in_tail = b;
	p->filling = NULL;
	pthread_cond_signal(&p->cond);
}

struct srv_hookjob *srv_provision_job(struct srv *s)
{
	struct srv_provision *p = s->prov;
	if (p == NULL)
		return NULL;
	if (p->filling == NULL || p->filling->n == JOB_BLOCK) {
		pthread_mutex_lock(&p->lock);
		hand_over(p);
		struct job_block *b = p->spare;
		if (b) {
			p->spare = b->next;
			p->n_spare--;
		}
		pthread_mutex_unlock(&p->lock);
		if (b == NULL && (b = malloc(sizeof(*b))) == NULL) {
			srv_log(SRV_LOG_ERROR, "hook dispatcher out of memory", NULL);
			abort();
		}
		b->n = 0;
		b->next = NULL; /* a spare one still names the next spare */
		p->filling = b;
	}
	return &p->filling->jobs[p->filling->n++];
}

void srv_provision_flush(struct srv *s)
{
	struct srv_provision *p = s->prov;
	if (p == NULL || p->filling == NULL || p->filling->n == 0)
		return;
	pthread_mutex_lock(&p->lock);
	hand_over(p);
	pthread_mutex_unlock(&p->lock);
}

/* The jobs in a list of blocks. */
static size_t jobs_in(const struct job_block *b)
{
	size_t n = 0;
	for (; b; b = b->next)
		n += b->n;
	return n;
}

/* Frees a list of blocks and the RECONCILE lists of their jobs. */
static void blocks_free(struct job_block *b, bool jobs_too)
{
	while (b) {
		struct job_block *next = b->next;
		for (size_t i = 0; jobs_too && i < b->n; i++)
			free(b->jobs[i].leases);
		free(b);
		b = next;
	}
}

size_t srv_provision_events(struct srv *s, struct srv_lease_event *out, size_t max)
{
	struct srv_provision *p = s->prov;
	if (p == NULL)
		return 0;
	pthread_mutex_lock(&p->lock);
	size_t n = p->n_events < max ? p->n_events : max;
	if (n == 0) {
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	memcpy(out, p->events, n * sizeof(*out));
	memmove(p->events, p->events + n, (p->n_events - n) * sizeof(*out));
	p->n_events -= n;
	pthread_mutex_unlock(&p->lock);
	return n;
}

static void post(struct srv_provision *p, uint64_t lease_id, uint8_t kind, const char *code)
{
	pthread_mutex_lock(&p->lock);
	p->events = grow(p->events, &p->cap_events, p->n_events + 1, sizeof(*p->events));
	struct srv_lease_event *e = &p->events[p->n_events++];
	*e = (struct srv_lease_event){.lease_id = lease_id, .kind = kind};
	snprintf(e->code, sizeof(e->code), "%s", code);
	pthread_mutex_unlock(&p->lock);
}

/* ---------- requests ---------- */

static void lease_name(uint64_t id, char out[24])
{
	snprintf(out, 24, "L-%012" PRIu64, id);
}

/* The request of the contract for one lease (NULL when out of memory). */
static json_t *lease_request(const struct srv *s, const struct srv_hookjob *j, const char *op,
			     uint32_t attempt)
{
	char id[24];
	lease_name(j->lease_id, id);
	json_t *devices = json_array();
	for (uint32_t i = 0; devices && i < j->n_devices; i++)
		json_array_append_new(devices, json_string(j->devices[i]));
	json_t *workload = NULL;
	if (j->workload[0] != '\0')
		workload = json_loads(j->workload, JSON_REJECT_DUPLICATES, NULL);
	json_t *r = json_pack(
		"{s:i, s:s, s:s, s:i, s:s, s:s, s:s, s:o, s:{s:I, s:I}, s:I, s:o}", "version",
		SRV_HOOK_VERSION, "op", op, "lease_id", id, "attempt", (int)attempt, "host",
		j->host, "vendor", j->vendor, "model", j->accelerator, "devices", devices, "window",
		"start_ms", (json_int_t)j->start_ms, "end_ms", (json_int_t)j->end_ms, "grace_ms",
		(json_int_t)s->cfg.lease_grace_ms, "workload", workload ? workload : json_null());
	return r;
}

static int64_t backoff(const struct srv *s, uint32_t attempt)
{
	int64_t d = s->cfg.hook_retry_ms_min;
	for (uint32_t i = 1; i < attempt && d < s->cfg.hook_retry_ms_max; i++)
		d *= 2;
	return d < s->cfg.hook_retry_ms_max ? d : s->cfg.hook_retry_ms_max;
}

/* One hook call; logs its outcome (and the start of the hook's stderr, when it wrote
 * any) and counts it. A status call answered "running" changes nothing and is logged at
 * debug: at 100,000 running leases asked once a minute, info would get 1,667 such lines
 * a second. */
static int call(struct srv_provision *p, const char *op, const json_t *req, const char *req_text,
		size_t req_len, uint64_t lease_id, uint32_t attempt, struct srv_hook_result *res)
{
	struct srv *s = p->s;
	int out = req_text ? srv_hook_call_text(s->cfg.hook, op, req_text, req_len, &p->limits, res)
			   : srv_hook_call(s->cfg.hook, op, req, &p->limits, res);
	atomic_fetch_add(&s->m.hook_calls[out], 1);
	char id[24];
	lease_name(lease_id, id);
	/* The hook's own words (a state, a message, its stderr) are quoted values. */
	char text[HOOK_LOG_TEXT_MAX + 1];
	enum srv_log_level level = SRV_LOG_INFO;
	if (out == SRV_HOOK_OK && strcmp(op, "status") == 0) {
		const char *state = json_string_value(json_object_get(res->json, "state"));
		if (state && strcmp(state, "running") == 0)
			level = SRV_LOG_DEBUG;
		srv_log(level, "hook call done",
			"op=%s lease=%s attempt=%u elapsed_ms=%lld state=\"%s\"", op, id, attempt,
			(long long)res->elapsed_ms, srv_log_value(text, sizeof(text), state));
	} else if (out == SRV_HOOK_OK)
		srv_log(SRV_LOG_INFO, "hook call done", "op=%s lease=%s attempt=%u elapsed_ms=%lld",
			op, id, attempt, (long long)res->elapsed_ms);
	else
		srv_log(SRV_LOG_WARN, "hook call failed",
			"op=%s lease=%s attempt=%u outcome=%s code=%s retryable=%d message=\"%s\"",
			op, id, attempt, srv_hook_outcome_name(out), res->code, res->retryable,
			srv_log_value(text, sizeof(text), res->message));
	if (res->log != NULL)
		srv_log(level, "hook log", "op=%s lease=%s bytes=%zu dropped=%zu text=\"%s\"", op,
			id, res->log_len, res->log_dropped,
			srv_log_value(text, sizeof(text), res->log));
	return out;
}

/* ---------- the watches ---------- */

/* The time of the first entry whose watch is still there (the others at the top are
 * dropped), or INT64_MAX. */
static int64_t watch_first(struct srv_provision *p)
{
	while (p->due.n > 0 && p->watch[p->due.e[0].of.slot].no != p->due.e[0].key)
		srv_dues_pop(&p->due);
	return p->due.n > 0 ? p->due.e[0].at : INT64_MAX;
}

static void due_push(struct srv_provision *p, struct srv_due d)
{
	if (!srv_dues_push(&p->due, d)) {
		srv_log(SRV_LOG_ERROR, "hook dispatcher out of memory", NULL);
		abort();
	}
}

static void watch_due(struct srv_provision *p, uint32_t slot)
{
	due_push(p, (struct srv_due){.at = srv_mono_ms() + p->s->cfg.hook_status_every_ms,
				     .key = p->watch[slot].no,
				     .of.slot = slot});
}

/* Frees a watch's slot (a call in flight for it finds another number there). */
static void unwatch_slot(struct srv_provision *p, uint32_t slot)
{
	srv_idmap_del(&p->by_lease, p->watch[slot].lease_id);
	p->watch[slot].no = 0;
	free(p->watch[slot].req);
	p->watch[slot].req = NULL;
	p->free_slots = grow(p->free_slots, &p->cap_free, p->n_free + 1, sizeof(*p->free_slots));
	p->free_slots[p->n_free++] = slot;
}

static void unwatch(struct srv_provision *p, uint64_t lease_id)
{
	uint32_t slot = srv_idmap_get(&p->by_lease, lease_id);
	if (slot != UINT32_MAX)
		unwatch_slot(p, slot);
}

/* Watches the lease of a start job that succeeded; req: that start's request (the
 * call's, done with: it becomes the status request). */
static void watch_add(struct srv_provision *p, const struct srv_hookjob *j, json_t *req)
{
	unwatch(p, j->lease_id);
	uint32_t slot;
	if (p->n_free > 0) {
		slot = p->free_slots[--p->n_free];
	} else {
		p->watch = grow(p->watch, &p->cap_watch, p->n_watch + 1, sizeof(*p->watch));
		slot = (uint32_t)p->n_watch++;
	}
	char *text = NULL;
	if (json_object_set_new(req, "op", json_string("status")) == 0 &&
	    json_object_set_new(req, "attempt", json_integer(1)) == 0)
		text = json_dumps(req, JSON_COMPACT);
	if (text == NULL || !srv_idmap_put(&p->by_lease, j->lease_id, slot)) {
		srv_log(SRV_LOG_ERROR, "hook dispatcher out of memory", NULL);
		abort();
	}
	struct watch *wt = &p->watch[slot];
	*wt = (struct watch){.no = p->next_no++,
			     .lease_id = j->lease_id,
			     .end_ms = j->end_ms,
			     .req = text,
			     .req_len = strlen(text)};
	memcpy(wt->host, j->host, sizeof(wt->host));
	watch_due(p, slot);
}

/* ---------- the jobs ---------- */

/* How many jobs of lease_id are in the list (a reconcile's, lease id 0, are not counted). */
static uint32_t jobs_of(const struct srv_provision *p, uint64_t lease_id)
{
	uint32_t n = srv_idmap_get(&p->of_lease, lease_id);
	return n == UINT32_MAX ? 0 : n;
}

static void jobs_of_add(struct srv_provision *p, uint64_t lease_id, int d)
{
	if (lease_id == 0)
		return;
	uint32_t n = jobs_of(p, lease_id) + (uint32_t)d;
	if (n == 0)
		srv_idmap_del(&p->of_lease, lease_id);
	else if (!srv_idmap_put(&p->of_lease, lease_id, n)) {
		srv_log(SRV_LOG_ERROR, "hook dispatcher out of memory", NULL);
		abort();
	}
}

static void set_next(struct srv_provision *p, struct work *w, int64_t ms)
{
	p->n_timed += (w->next_ms == 0) - (ms == 0);
	w->next_ms = ms;
}

/* A new job replaces a waiting one of the same lease (a stop ends a start's retries);
 * one whose call is in flight stays, and the new one waits for it (the same host). */
static void accept_job(struct srv_provision *p, const struct srv_hookjob *j)
{
	if (j->kind == SRV_HJ_STOP)
		unwatch(p, j->lease_id);
	if (j->kind != SRV_HJ_RECONCILE && jobs_of(p, j->lease_id) > 0)
		for (size_t i = p->work_head; i < p->n_work; i++) {
			struct work *w = &p->work[i];
			if (!w->gone && w->job.kind != SRV_HJ_RECONCILE &&
			    w->job.lease_id == j->lease_id && !w->running) {
				free(w->job.leases);
				set_next(p, w, 0);
				*w = (struct work){
					.job = *j, .attempt = 1, .next_ms = 0, .no = p->next_no++};
				return;
			}
		}
	p->work = grow(p->work, &p->cap_work, p->n_work + 1, sizeof(*p->work));
	p->work[p->n_work++] =
		(struct work){.job = *j, .attempt = 1, .next_ms = 0, .no = p->next_no++};
	p->n_live++;
	jobs_of_add(p, j->lease_id, 1);
}

/* Whether a stop of lease_id waits (a start that succeeds then is not watched), asked by
 * a start of the lease that is in the list. */
static bool stop_waits(const struct srv_provision *p, uint64_t lease_id)
{
	if (jobs_of(p, lease_id) < 2)
		return false;
	for (size_t i = p->work_head; i < p->n_work; i++)
		if (!p->work[i].gone && p->work[i].job.kind == SRV_HJ_STOP &&
		    p->work[i].job.lease_id == lease_id)
			return true;
	return false;
}

/* The list without the places gone at its head; compacted (calls in flight told their
 * job's new place) once at least half of it and 64 places are gone. */
static void work_trim(struct srv_provision *p)
{
	while (p->work_head < p->n_work && p->work[p->work_head].gone)
		p->work_head++;
	if (p->work_head == p->n_work) {
		p->n_work = p->work_head = p->n_gone = 0;
		/* An hour's start may have grown the list to thousands of jobs (2 KB each):
		 * once it is empty, its pages go back. */
		if (p->cap_work > WORK_KEPT) {
			free(p->work);
			p->work = NULL;
			p->cap_work = 0;
		}
		return;
	}
	if (p->n_gone < 64 || 2 * p->n_gone < p->n_work)
		return;
	size_t n = 0;
	for (size_t i = p->work_head; i < p->n_work; i++) {
		if (p->work[i].gone)
			continue;
		p->work[n] = p->work[i];
		if (p->work[n].running)
			p->calls[p->work[n].call].slot = (uint32_t)n;
		n++;
	}
	p->n_work = n;
	p->work_head = p->n_gone = 0;
}

static const char *op_of(const struct srv_hookjob *j)
{
	return j->kind == SRV_HJ_START ? "start" : j->kind == SRV_HJ_STOP ? "stop" : "reconcile";
}

/* The request of a job's call (NULL when out of memory). */
static json_t *job_request(const struct srv *s, const struct work *w)
{
	const struct srv_hookjob *j = &w->job;
	if (j->kind != SRV_HJ_RECONCILE)
		return lease_request(s, j, op_of(j), w->attempt);
	json_t *list = json_array();
	for (size_t i = 0; list && i < j->n_leases; i++)
		json_array_append_new(list, lease_request(s, &j->leases[i], "start", 1));
	return json_pack("{s:i, s:s, s:i, s:o}", "version", SRV_HOOK_VERSION, "op", "reconcile",
			 "attempt", (int)w->attempt, "leases", list);
}

/* What a job's call came to: done (it leaves the list), or retried after a pause. */
static void job_done(struct srv_provision *p, size_t i, int out, const struct srv_hook_result *res,
		     json_t *req)
{
	struct srv *s = p->s;
	struct work *w = &p->work[i];
	const struct srv_hookjob *j = &w->job;
	bool final =
		out == SRV_HOOK_FAILED && (srv_hook_code_is_final(res->code) || !res->retryable);
	bool done = out == SRV_HOOK_OK;
	if (j->kind == SRV_HJ_START && out == SRV_HOOK_OK) {
		post(p, j->lease_id, SRV_LEV_STARTED, "");
		if (!stop_waits(p, j->lease_id))
			watch_add(p, j, req);
	} else if (j->kind == SRV_HJ_START && final) {
		post(p, j->lease_id, SRV_LEV_FAILED, res->code);
		done = true;
	} else if (j->kind != SRV_HJ_START && final) {
		/* A stop or reconcile the hook refuses for good: only an operator can help. */
		srv_log(SRV_LOG_ERROR, "hook refused a call for good: giving up",
			"op=%s lease_id=%" PRIu64 " code=%s", op_of(j), j->lease_id, res->code);
		done = true;
	}
	if (j->kind == SRV_HJ_RECONCILE)
		p->reconciling = false;
	w->running = false;
	p->n_jobs_running--;
	if (done) {
		free(w->job.leases);
		w->job.leases = NULL;
		set_next(p, w, 0);
		jobs_of_add(p, w->job.lease_id, -1);
		w->gone = true;
		p->n_gone++;
		p->n_live--;
		work_trim(p);
	} else {
		set_next(p, w, srv_mono_ms() + backoff(s, w->attempt));
		w->attempt++;
	}
}

/* What a status call came to: a lease that ended before its window did is reported. */
static void status_done(struct srv_provision *p, uint32_t slot, int out,
			const struct srv_hook_result *res)
{
	struct watch *wt = &p->watch[slot];
	const char *state =
		out == SRV_HOOK_OK ? json_string_value(json_object_get(res->json, "state")) : NULL;
	if (state && strcmp(state, "running") != 0 && srv_now_ms() < wt->end_ms) {
		char code[32];
		snprintf(code, sizeof(code), "ended_%s", state);
		for (char *c = code; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
				*c = '_';
		post(p, wt->lease_id, SRV_LEV_STOPPED, code);
		unwatch_slot(p, slot);
		return;
	}
	watch_due(p, slot);
}

/* A call handed back: its result goes to its job or watch (one that has gone since is
 * left alone). */
static void call_done(struct srv_provision *p, struct call *c)
{
	if (c->status) {
		if (p->watch[c->slot].no == c->no)
			status_done(p, c->slot, c->outcome, &c->res);
	} else if (c->slot < p->n_work && !p->work[c->slot].gone && p->work[c->slot].no == c->no) {
		job_done(p, c->slot, c->outcome, &c->res, c->req);
	}
	json_decref(c->req);
	free(c->text);
	srv_hook_result_free(&c->res);
	c->req = NULL;
	c->text = NULL;
	p->n_running--;
}

/* ---------- which calls to make ---------- */

static const char *busy_text(const void *ctx, uint32_t v)
{
	const struct srv_provision *p = ctx;
	return p->busy_hosts[v];
}

/* Marks host as taken for the rest of this pass: false when the table of such hosts is
 * full (the pass ends there). */
static bool busy_add(struct srv_provision *p, const char *host)
{
	if (srv_tindex_get(&p->busy, host) != UINT32_MAX)
		return true;
	if (p->n_busy == p->max_busy)
		return false;
	p->busy_hosts[p->n_busy] = host;
	srv_tindex_put(&p->busy, (uint32_t)p->n_busy++);
	return true;
}

static bool is_busy(const struct srv_provision *p, const char *host)
{
	return srv_tindex_get(&p->busy, host) != UINT32_MAX;
}

static void busy_clear(struct srv_provision *p)
{
	for (size_t i = 0; i < p->n_busy; i++)
		srv_tindex_del(&p->busy, p->busy_hosts[i]);
	p->n_busy = 0;
}

/* Hands a call to a free caller; NULL when none is free. */
static struct call *give(struct srv_provision *p, const char *host, bool status, uint64_t no,
			 uint32_t slot, uint64_t lease_id, uint32_t attempt, const char *op,
			 json_t *req, char *text, size_t text_len)
{
	for (size_t i = 0; i < p->n_calls; i++) {
		struct call *c = &p->calls[i];
		if (c->used)
			continue;
		c->used = true;
		snprintf(c->host, sizeof(c->host), "%s", host);
		c->status = status;
		c->no = no;
		c->slot = slot;
		c->lease_id = lease_id;
		c->attempt = attempt;
		c->op = op;
		c->req = req;
		c->text = text;
		c->text_len = text_len;
		pthread_mutex_lock(&p->lock);
		c->state = CALL_READY;
		pthread_cond_broadcast(&p->call_cond);
		pthread_mutex_unlock(&p->lock);
		p->n_running++;
		return c;
	}
	return NULL;
}

/* The earliest time a job or status call not yet due will be (at most a second from
 * now), given the first status call not yet due. What is due but waits for a call in
 * flight is woken by its result. */
static int64_t next_due(const struct srv_provision *p, int64_t now, int64_t watch_next)
{
	int64_t due = now + 1000;
	for (size_t i = p->work_head; p->n_timed > 0 && i < p->n_work; i++)
		if (!p->work[i].gone && !p->work[i].running && p->work[i].next_ms > now &&
		    p->work[i].next_ms < due)
			due = p->work[i].next_ms;
	if (watch_next > now && watch_next < due)
		due = watch_next;
	return due;
}

/* Starts the calls that are due and may run now: jobs in the order they came, then
 * status calls, each only for a host without a call in flight or an earlier job
 * waiting. Returns when to look again (unless a result or a job comes first). */
static int64_t schedule(struct srv_provision *p)
{
	struct srv *s = p->s;
	int64_t now = srv_mono_ms();
	if (p->reconciling || p->n_running == p->n_calls)
		return next_due(p, now, watch_first(p));
	bool full = false;
	/* The hosts of the calls in flight (also of those whose job or watch has gone). */
	for (size_t i = 0; i < p->n_calls && !full; i++)
		if (p->calls[i].used && p->calls[i].host[0] != '\0')
			full = !busy_add(p, p->calls[i].host);
	for (size_t i = p->work_head; i < p->n_work && !full && p->n_running < p->n_calls; i++) {
		struct work *w = &p->work[i];
		if (w->gone || w->running || w->next_ms > now)
			continue;
		if (w->job.kind == SRV_HJ_RECONCILE) {
			/* alone: once the calls before it are done, and nothing after it */
			full = true;
			if (p->n_running > 0)
				break;
		} else if (is_busy(p, w->job.host)) {
			continue; /* waits for that host's call */
		} else if (!busy_add(p, w->job.host)) {
			break;
		}
		json_t *req = job_request(s, w);
		if (req == NULL) {
			srv_log(SRV_LOG_ERROR, "hook request out of memory", NULL);
			set_next(p, w, now + backoff(s, w->attempt));
			w->attempt++;
			continue;
		}
		struct call *c = give(p, w->job.host, false, w->no, (uint32_t)i, w->job.lease_id,
				      w->attempt, op_of(&w->job), req, NULL, 0);
		if (c == NULL) {
			json_decref(req);
			break;
		}
		w->call = (uint32_t)(c - p->calls);
		w->running = true;
		p->n_jobs_running++;
		if (w->job.kind == SRV_HJ_RECONCILE)
			p->reconciling = true;
	}
	/* The status calls due, from the heap: those of a busy host are put aside for this
	 * pass, so a pass reads only the watches due, however many leases run. */
	size_t n_held = 0;
	while (!full && p->n_running < p->n_calls && watch_first(p) <= now) {
		struct srv_due d = srv_dues_pop(&p->due);
		struct watch *wt = &p->watch[d.of.slot];
		if (srv_now_ms() >= wt->end_ms) {
			unwatch_slot(p, d.of.slot); /* the core stops it at its end */
			continue;
		}
		p->held = grow(p->held, &p->cap_held, n_held + 1, sizeof(*p->held));
		p->held[n_held++] = d;
		if (is_busy(p, wt->host))
			continue;
		if (!busy_add(p, wt->host))
			break;
		/* The call gets its own copy: the watch may go while the call is in flight. */
		char *text = malloc(wt->req_len + 1);
		if (text != NULL)
			memcpy(text, wt->req, wt->req_len + 1);
		if (text == NULL || give(p, wt->host, true, wt->no, d.of.slot, wt->lease_id, 1,
					 "status", NULL, text, wt->req_len) == NULL) {
			free(text);
			break;
		}
		n_held--; /* in flight: its next entry comes with its result */
	}
	int64_t watch_next = watch_first(p);
	for (size_t i = 0; i < n_held; i++)
		due_push(p, p->held[i]);
	busy_clear(p);
	return next_due(p, now, watch_next);
}

/* ---------- the threads ---------- */

static void *caller_main(void *arg)
{
	struct caller *me = arg;
	struct srv_provision *p = me->p;
	struct call *c = me->call;
	srv_thread_name("gx-hook-call");
	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (c->state != CALL_READY && !p->callers_stop)
			pthread_cond_wait(&p->call_cond, &p->lock);
		if (c->state != CALL_READY) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		c->state = CALL_RUNNING;
		pthread_mutex_unlock(&p->lock);
		c->outcome = call(p, c->op, c->req, c->text, c->text_len, c->lease_id, c->attempt,
				  &c->res);
		pthread_mutex_lock(&p->lock);
		c->state = CALL_DONE;
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
}

/* Takes the results handed back (under p->lock). */
static size_t take_done(struct srv_provision *p, struct call **done)
{
	size_t n = 0;
	for (size_t i = 0; i < p->n_calls; i++)
		if (p->calls[i].state == CALL_DONE)
			done[n++] = &p->calls[i];
	return n;
}

static void *provision_main(void *arg)
{
	struct srv_provision *p = arg;
	struct srv *s = p->s;
	struct call **done = calloc(p->n_calls, sizeof(*done));
	if (done == NULL) {
		srv_log(SRV_LOG_ERROR, "hook dispatcher out of memory", NULL);
		abort();
	}
	srv_thread_name("gx-hooks");
	int64_t due = srv_mono_ms();
	for (;;) {
		/* Wait for a job, a result, or until the next call is due. */
		int64_t now = srv_mono_ms();
		pthread_mutex_lock(&p->lock);
		size_t n_done = take_done(p, done);
		if (p->in_head == NULL && !p->stop && n_done == 0 && due > now) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t ns = ts.tv_nsec + (due - now) * 1000000;
			ts.tv_sec += ns / 1000000000;
			ts.tv_nsec = ns % 1000000000;
			pthread_cond_timedwait(&p->cond, &p->lock, &ts);
			n_done = take_done(p, done);
		}
		bool stop = p->stop;
		struct job_block *in = p->in_head;
		p->in_head = p->in_tail = NULL;
		pthread_mutex_unlock(&p->lock);
		/* The new jobs came first: a start whose stop came with them is not watched. */
		if (in) {
			for (struct job_block *b = in; b; b = b->next)
				for (size_t i = 0; i < b->n; i++)
					accept_job(p, &b->jobs[i]);
			/* Back to the core, up to SPARE_BLOCKS_MAX; the rest freed. */
			pthread_mutex_lock(&p->lock);
			struct job_block *b = in;
			while (b && p->n_spare < SPARE_BLOCKS_MAX) {
				struct job_block *next = b->next;
				b->next = p->spare;
				p->spare = b;
				p->n_spare++;
				b = next;
			}
			pthread_mutex_unlock(&p->lock);
			blocks_free(b, false);
		}
		for (size_t i = 0; i < n_done; i++) {
			call_done(p, done[i]);
			pthread_mutex_lock(&p->lock);
			done[i]->state = CALL_FREE;
			pthread_mutex_unlock(&p->lock);
			done[i]->used = false;
		}
		if (stop)
			break;
		due = schedule(p);
		atomic_store(&s->m.hook_pending, p->n_live - p->n_jobs_running);
		atomic_store(&s->m.hook_in_flight, p->n_running);
	}
	/* Stopping: calls not begun are dropped (the next start calls them again), calls
	 * in flight are waited for. */
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n_calls; i++)
		if (p->calls[i].state == CALL_READY) {
			p->calls[i].state = CALL_DONE;
			p->calls[i].outcome = -1;
		}
	for (;;) {
		size_t busy = 0;
		for (size_t i = 0; i < p->n_calls; i++)
			busy += p->calls[i].state == CALL_RUNNING;
		if (busy == 0)
			break;
		pthread_cond_wait(&p->cond, &p->lock);
	}
	p->callers_stop = true;
	pthread_cond_broadcast(&p->call_cond);
	pthread_mutex_unlock(&p->lock);
	for (size_t i = 0; i < p->n_calls; i++) {
		struct call *c = &p->calls[i];
		if (c->state == CALL_DONE && c->outcome >= 0)
			call_done(p, c);
		else if (c->state == CALL_DONE) {
			json_decref(c->req);
			free(c->text);
			p->n_running--;
		}
		c->state = CALL_FREE;
		c->used = false;
	}
	free(done);
	return NULL;
}

static void provision_free(struct srv_provision *p)
{
	blocks_free(p->filling, true);
	blocks_free(p->in_head, true);
	blocks_free(p->spare, false);
	for (size_t i = 0; i < p->n_work; i++)
		free(p->work[i].job.leases); /* NULL once gone */
	free(p->events);
	free(p->work);
	for (size_t i = 0; i < p->n_watch; i++)
		free(p->watch[i].req); /* NULL once free */
	free(p->watch);
	free(p->free_slots);
	srv_idmap_free(&p->by_lease);
	srv_idmap_free(&p->of_lease);
	srv_dues_free(&p->due);
	free(p->held);
	free(p->calls);
	free(p->callers);
	free(p->busy_hosts);
	srv_tindex_free(&p->busy);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	pthread_cond_destroy(&p->call_cond);
	free(p);
}

/* Stops and joins the callers started so far (the dispatcher is not running). */
static void callers_join(struct srv_provision *p)
{
	pthread_mutex_lock(&p->lock);
	p->callers_stop = true;
	pthread_cond_broadcast(&p->call_cond);
	pthread_mutex_unlock(&p->lock);
	for (size_t i = 0; i < p->n_calls; i++)
		if (p->callers[i].started)
			pthread_join(p->callers[i].thread, NULL);
}

int srv_provision_start(struct srv *s)
{
	struct srv_provision *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -1;
	p->s = s;
	p->next_no = 1; /* a watch's 0 marks a free slot */
	srv_hook_limits_default(&p->limits);
	p->limits.timeout_ms = s->cfg.hook_timeout_ms;
	p->limits.kill_grace_ms = s->cfg.hook_kill_grace_ms;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_cond_init(&p->call_cond, NULL);
	p->n_calls = (size_t)s->cfg.hook_calls_max;
	/* Hosts with a call in flight or an earlier job waiting: at most those of the
	 * table, and of the calls in flight for hosts no longer in it. */
	p->max_busy = (size_t)s->cfg.hosts_max + p->n_calls;
	p->calls = calloc(p->n_calls, sizeof(*p->calls));
	p->callers = calloc(p->n_calls, sizeof(*p->callers));
	p->busy_hosts = calloc(p->max_busy, sizeof(*p->busy_hosts));
	if (!p->calls || !p->callers || !p->busy_hosts ||
	    !srv_tindex_init(&p->busy, p->max_busy, busy_text, p)) {
		provision_free(p);
		return -1;
	}
	for (size_t i = 0; i < p->n_calls; i++) {
		p->callers[i] = (struct caller){.p = p, .call = &p->calls[i]};
		if (pthread_create(&p->callers[i].thread, NULL, caller_main, &p->callers[i]) != 0) {
			callers_join(p);
			provision_free(p);
			return -1;
		}
		p->callers[i].started = true;
	}
	s->prov = p;
	if (pthread_create(&p->thread, NULL, provision_main, p) != 0) {
		s->prov = NULL;
		callers_join(p);
		provision_free(p);
		return -1;
	}
	return 0;
}

void srv_provision_stop(struct srv *s)
{
	struct srv_provision *p = s->prov;
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	for (size_t i = 0; i < p->n_calls; i++)
		pthread_join(p->callers[i].thread, NULL);
	size_t left = p->n_live + jobs_in(p->filling) + jobs_in(p->in_head);
	if (left > 0)
		srv_log(SRV_LOG_INFO, "hook calls left for the next start", "pending=%zu", left);
	s->prov = NULL;
	provision_free(p);
}
