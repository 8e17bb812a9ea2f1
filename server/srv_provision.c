/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hook dispatcher (docs/provisioning.md): the one thread that runs the
 * provisioning hook. The core hands it start and stop jobs; it calls the hook
 * (srv_hook_call: its own process, a timeout, a clean environment), retries
 * failed calls with doubling pauses under the same lease id, asks running
 * leases for their status, and hands what it learned back as lease events,
 * which the journal thread journals before the core acts on them: a restart
 * replays them exactly.
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

#include "srv_hook.h"
#include "srv_lease.h"
#include "srv_log.h"
#include "srv_server.h"

struct work {
	struct srv_hookjob job;
	uint32_t attempt;
	int64_t next_ms; /* monotonic: when to call */
};

struct watch {
	struct srv_hookjob job; /* the start job of a running lease */
	int64_t next_ms;	/* monotonic: next status call */
};

struct srv_provision {
	struct srv *s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct srv_hookjob *inbox; /* core -> dispatcher */
	size_t n_inbox, cap_inbox;
	struct srv_lease_event *events; /* dispatcher -> journal */
	size_t n_events, cap_events;
	bool stop;
	/* the dispatcher's own */
	struct work *work;
	size_t n_work, cap_work;
	struct watch *watch;
	size_t n_watch, cap_watch;
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

void srv_provision_submit(struct srv *s, const struct srv_hookjob *jobs, size_t n)
{
	struct srv_provision *p = s->prov;
	if (p == NULL || n == 0)
		return;
	pthread_mutex_lock(&p->lock);
	p->inbox = grow(p->inbox, &p->cap_inbox, p->n_inbox + n, sizeof(*p->inbox));
	memcpy(p->inbox + p->n_inbox, jobs, n * sizeof(*jobs));
	p->n_inbox += n;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
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

/* One hook call; logs its outcome and counts it. */
static int call(struct srv_provision *p, const char *op, const json_t *req, uint64_t lease_id,
		uint32_t attempt, struct srv_hook_result *res)
{
	struct srv *s = p->s;
	int out = srv_hook_call(s->cfg.hook, op, req, &p->limits, res);
	atomic_fetch_add(&s->m.hook_calls[out], 1);
	char id[24];
	lease_name(lease_id, id);
	if (out == SRV_HOOK_OK)
		srv_log(SRV_LOG_INFO, "hook call done", "op=%s lease=%s attempt=%u elapsed_ms=%lld",
			op, id, attempt, (long long)res->elapsed_ms);
	else
		srv_log(SRV_LOG_WARN, "hook call failed",
			"op=%s lease=%s attempt=%u outcome=%s code=%s retryable=%d message=\"%s\"",
			op, id, attempt, srv_hook_outcome_name(out), res->code, res->retryable,
			res->message);
	if (res->log != NULL)
		srv_log(SRV_LOG_INFO, "hook log", "op=%s lease=%s bytes=%zu dropped=%zu", op, id,
			res->log_len, res->log_dropped);
	return out;
}

/* ---------- the jobs ---------- */

static void unwatch(struct srv_provision *p, uint64_t lease_id)
{
	for (size_t i = 0; i < p->n_watch; i++)
		if (p->watch[i].job.lease_id == lease_id) {
			p->watch[i] = p->watch[--p->n_watch];
			return;
		}
}

static void watch_add(struct srv_provision *p, const struct srv_hookjob *j)
{
	unwatch(p, j->lease_id);
	p->watch = grow(p->watch, &p->cap_watch, p->n_watch + 1, sizeof(*p->watch));
	p->watch[p->n_watch++] = (struct watch){
		.job = *j, .next_ms = srv_mono_ms() + p->s->cfg.hook_status_every_ms};
}

/* A new job replaces a waiting one of the same lease (a stop ends a start's retries). */
static void accept_job(struct srv_provision *p, const struct srv_hookjob *j)
{
	if (j->kind == SRV_HJ_STOP)
		unwatch(p, j->lease_id);
	for (size_t i = 0; i < p->n_work; i++)
		if (j->kind != SRV_HJ_RECONCILE && p->work[i].job.kind != SRV_HJ_RECONCILE &&
		    p->work[i].job.lease_id == j->lease_id) {
			free(p->work[i].job.leases);
			p->work[i] = (struct work){.job = *j, .attempt = 1, .next_ms = 0};
			return;
		}
	p->work = grow(p->work, &p->cap_work, p->n_work + 1, sizeof(*p->work));
	p->work[p->n_work++] = (struct work){.job = *j, .attempt = 1, .next_ms = 0};
}

/* Runs a due job; true when it is done (false: retry it later). */
static bool run_job(struct srv_provision *p, struct work *w)
{
	struct srv *s = p->s;
	const struct srv_hookjob *j = &w->job;
	const char *op = j->kind == SRV_HJ_START  ? "start"
			 : j->kind == SRV_HJ_STOP ? "stop"
						  : "reconcile";
	json_t *req;
	if (j->kind == SRV_HJ_RECONCILE) {
		json_t *list = json_array();
		for (size_t i = 0; list && i < j->n_leases; i++)
			json_array_append_new(list, lease_request(s, &j->leases[i], "start", 1));
		req = json_pack("{s:i, s:s, s:i, s:o}", "version", SRV_HOOK_VERSION, "op",
				"reconcile", "attempt", (int)w->attempt, "leases", list);
	} else {
		req = lease_request(s, j, op, w->attempt);
	}
	if (req == NULL) {
		srv_log(SRV_LOG_ERROR, "hook request out of memory", NULL);
		return false;
	}
	struct srv_hook_result res;
	int out = call(p, op, req, j->lease_id, w->attempt, &res);
	json_decref(req);
	bool final = out == SRV_HOOK_FAILED && (srv_hook_code_is_final(res.code) || !res.retryable);
	bool done = out == SRV_HOOK_OK;
	if (j->kind == SRV_HJ_START && out == SRV_HOOK_OK) {
		post(p, j->lease_id, SRV_LEV_STARTED, "");
		watch_add(p, j);
	} else if (j->kind == SRV_HJ_START && final) {
		post(p, j->lease_id, SRV_LEV_FAILED, res.code);
		done = true;
	} else if (j->kind != SRV_HJ_START && final) {
		/* A stop or reconcile the hook refuses for good: only an operator can help. */
		srv_log(SRV_LOG_ERROR, "hook refused a call for good: giving up",
			"op=%s lease_id=%" PRIu64 " code=%s", op, j->lease_id, res.code);
		done = true;
	}
	srv_hook_result_free(&res);
	return done;
}

/* Asks a running lease how it is; one that ended before its window did is reported. */
static void check_status(struct srv_provision *p, size_t i)
{
	struct srv *s = p->s;
	struct watch *wt = &p->watch[i];
	if (srv_now_ms() >= wt->job.end_ms) {
		p->watch[i] = p->watch[--p->n_watch]; /* the core stops it at the window's end */
		return;
	}
	json_t *req = lease_request(s, &wt->job, "status", 1);
	struct srv_hook_result res;
	int out = req ? call(p, "status", req, wt->job.lease_id, 1, &res) : -1;
	json_decref(req);
	if (out < 0)
		return;
	const char *state =
		out == SRV_HOOK_OK ? json_string_value(json_object_get(res.json, "state")) : NULL;
	wt->next_ms = srv_mono_ms() + s->cfg.hook_status_every_ms;
	if (state && strcmp(state, "running") != 0 && srv_now_ms() < wt->job.end_ms) {
		char code[32];
		snprintf(code, sizeof(code), "ended_%s", state);
		for (char *c = code; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
				*c = '_';
		post(p, wt->job.lease_id, SRV_LEV_STOPPED, code);
		p->watch[i] = p->watch[--p->n_watch];
	}
	srv_hook_result_free(&res);
}

static void *provision_main(void *arg)
{
	struct srv_provision *p = arg;
	struct srv *s = p->s;
	srv_thread_name("gx-hooks");
	for (;;) {
		/* Wait for a job, or until the next call is due. */
		int64_t now = srv_mono_ms(), due = now + 1000;
		for (size_t i = 0; i < p->n_work; i++)
			if (p->work[i].next_ms < due)
				due = p->work[i].next_ms;
		for (size_t i = 0; i < p->n_watch; i++)
			if (p->watch[i].next_ms < due)
				due = p->watch[i].next_ms;
		pthread_mutex_lock(&p->lock);
		if (p->n_inbox == 0 && !p->stop && due > now) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t ns = ts.tv_nsec + (due - now) * 1000000;
			ts.tv_sec += ns / 1000000000;
			ts.tv_nsec = ns % 1000000000;
			pthread_cond_timedwait(&p->cond, &p->lock, &ts);
		}
		bool stop = p->stop;
		for (size_t i = 0; i < p->n_inbox; i++)
			accept_job(p, &p->inbox[i]);
		p->n_inbox = 0;
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
		/* Due jobs in arrival order: a stop comes before the start of the next lease on
		 * the same devices. */
		for (size_t i = 0; i < p->n_work;) {
			struct work *w = &p->work[i];
			if (w->next_ms > srv_mono_ms()) {
				i++;
				continue;
			}
			if (run_job(p, w)) {
				free(w->job.leases);
				memmove(w, w + 1, (p->n_work - i - 1) * sizeof(*w));
				p->n_work--;
			} else {
				w->next_ms = srv_mono_ms() + backoff(s, w->attempt);
				w->attempt++;
				i++;
			}
			pthread_mutex_lock(&p->lock);
			bool more = p->n_inbox > 0 || p->stop;
			pthread_mutex_unlock(&p->lock);
			if (more)
				break; /* a stop may have replaced a job: take the inbox first */
		}
		for (size_t i = 0; i < p->n_watch;) {
			size_t before = p->n_watch;
			if (p->watch[i].next_ms <= srv_mono_ms())
				check_status(p, i);
			if (p->n_watch == before)
				i++;
		}
		atomic_store(&s->m.hook_pending, p->n_work);
	}
	for (size_t i = 0; i < p->n_work; i++)
		free(p->work[i].job.leases);
	return NULL;
}

int srv_provision_start(struct srv *s)
{
	struct srv_provision *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -1;
	p->s = s;
	srv_hook_limits_default(&p->limits);
	p->limits.timeout_ms = s->cfg.hook_timeout_ms;
	p->limits.kill_grace_ms = s->cfg.hook_kill_grace_ms;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	s->prov = p;
	if (pthread_create(&p->thread, NULL, provision_main, p) != 0) {
		s->prov = NULL;
		free(p);
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
	for (size_t i = 0; i < p->n_inbox; i++)
		free(p->inbox[i].leases);
	if (p->n_work > 0 || p->n_inbox > 0)
		srv_log(SRV_LOG_INFO, "hook calls left for the next start", "pending=%zu",
			p->n_work + p->n_inbox);
	free(p->inbox);
	free(p->events);
	free(p->work);
	free(p->watch);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	s->prov = NULL;
}
