/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Start-up: the ledger's writer lock, then the journal. A new journal begins
 * with a GENESIS record of the ledger's participants, keys and balances; an
 * existing one is replayed through the same core code that handled it live
 * (docs/durability.md), its torn tail cut off, and every fill and operator
 * action the ledger does not have yet is handed to the ledger thread again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "gridex.pb-c.h"
#include "srv_journal.h"
#include "srv_log.h"
#include "srv_server.h"

struct recovery {
	struct srv *s;
	struct srv_core_out out;
	int64_t ledger_batch; /* everything at or below it is in the ledger */
	struct srv_journal_participant *genesis;
	uint32_t n_genesis, cap_genesis;
	size_t resent;
	const char *error;
};

/* The settings that decide what the core does with an input: a journal replays
 * right only under the ones it was written with. */
static void settings_fingerprint(const struct srv_config *c,
				 uint8_t out[SRV_JOURNAL_SETTINGS_BYTES])
{
	char text[1024];
	snprintf(text, sizeof(text),
		 "orders_max=%lld levels_max=%lld books_max=%lld price_max=%lld qty_max=%lld "
		 "accounts_max=%lld open_orders_per_account_max=%lld maker_bps=%lld taker_bps=%lld "
		 "gate_lead_ms=%lld expiry_ahead_ms_max=%lld operator_account=%lld "
		 "orders_per_second=%lld orders_burst=%lld currency=%s",
		 (long long)c->orders_max, (long long)c->levels_max, (long long)c->books_max,
		 (long long)c->price_max, (long long)c->qty_max, (long long)c->accounts_max,
		 (long long)c->open_orders_per_account_max, (long long)c->maker_bps,
		 (long long)c->taker_bps, (long long)c->gate_lead_ms,
		 (long long)c->expiry_ahead_ms_max, (long long)c->operator_account,
		 (long long)c->orders_per_second, (long long)c->orders_burst, c->currency);
	crypto_generichash(out, SRV_JOURNAL_SETTINGS_BYTES, (const uint8_t *)text, strlen(text),
			   NULL, 0);
}

static int add_participant(struct srv *s, uint32_t id, const char *name, const uint8_t key[32],
			   int64_t balance, const char **error)
{
	if (id == (uint32_t)s->cfg.operator_account) {
		*error = "the operator account is also a participant";
		return -1;
	}
	if (srv_core_register(s->core, id, key) != SRV_CORE_OK ||
	    srv_core_set_name(s->core, id, name) != SRV_CORE_OK ||
	    srv_risk_add_cash(srv_core_risk(s->core), id, balance) != SRV_RISK_OK) {
		*error = "a participant could not be loaded (invalid key or accounts_max)";
		return -1;
	}
	return 0;
}

int srv_genesis_load(struct srv *s, const struct srv_jrec *g, const char **error)
{
	if (srv_core_make(s, g->time_ms) != 0) {
		*error = "the core cannot be created";
		return -1;
	}
	for (uint32_t i = 0; i < g->n_participants; i++) {
		const struct srv_journal_participant *p = &g->participants[i];
		if (add_participant(s, p->id, p->name, p->public_key, p->balance, error))
			return -1;
	}
	return 0;
}

int srv_replay_apply(struct srv_core *c, const struct srv_jrec *rec, struct srv_request *req,
		     struct srv_core_out *out, const char **error)
{
	int rc;
	if (rec->kind == SRV_J_TICK) {
		rc = srv_core_tick(c, rec->time_ms, out);
	} else {
		if (srv_request_from_body(rec->body, rec->body_len, rec->signature, req) != 0) {
			*error = "a journaled request does not decode";
			return -1;
		}
		rc = srv_core_handle(c, req, rec->time_ms, out);
	}
	if (rc != SRV_CORE_OK) {
		*error = "the core refused a journaled input";
		return -1;
	}
	return 0;
}

static int from_ledger(const struct ledger_participant *p, void *ctx)
{
	struct recovery *r = ctx;
	if (!p->has_key) {
		srv_log(SRV_LOG_WARN, "participant without a key cannot trade",
			"account=%u name=%s", p->id, p->name);
		return 0;
	}
	if (r->n_genesis == r->cap_genesis) {
		r->cap_genesis = r->cap_genesis ? 2 * r->cap_genesis : 64;
		void *g = realloc(r->genesis, r->cap_genesis * sizeof(*r->genesis));
		if (g == NULL) {
			r->error = "out of memory";
			return -1;
		}
		r->genesis = g;
	}
	struct srv_journal_participant *g = &r->genesis[r->n_genesis++];
	*g = (struct srv_journal_participant){.id = p->id, .balance = p->available};
	snprintf(g->name, sizeof(g->name), "%s", p->name);
	memcpy(g->public_key, p->public_key, 32);
	return add_participant(r->s, p->id, p->name, p->public_key, p->available, &r->error);
}

/* What the ledger does not have yet goes to the ledger thread, in order. */
static int resend(struct recovery *r, uint64_t seq)
{
	struct srv *s = r->s;
	const struct srv_core_out *out = &r->out;
	if ((int64_t)seq <= r->ledger_batch)
		return 0;
	for (size_t i = 0; i <= out->n_fills; i++) {
		struct srv_wjob w = {.seq = (int64_t)seq, .mono_ms = srv_mono_ms()};
		if (i < out->n_fills) {
			w.kind = SRV_W_FILL;
			w.u.fill = out->fills[i];
		} else if (out->has_op) {
			w.kind = SRV_W_OP;
			w.u.op = out->op;
		} else {
			break;
		}
		if (srv_queue_push(&s->writer_q, &w, 1, false, NULL) != 1) {
			r->error = "more unsettled fills than writer_queue_max: raise it";
			return -1;
		}
		r->resent++;
	}
	return 0;
}

static int replay_one(const struct srv_jrec *rec, void *ctx)
{
	struct recovery *r = ctx;
	struct srv *s = r->s;
	if (rec->kind == SRV_J_GENESIS) {
		if (s->core != NULL) {
			r->error = "a second GENESIS record";
			return -1;
		}
		uint8_t now[SRV_JOURNAL_SETTINGS_BYTES];
		settings_fingerprint(&s->cfg, now);
		if (memcmp(now, rec->settings, sizeof(now)) != 0) {
			r->error = "the journal was written under other settings (fees, limits, "
				   "engine sizes, gate lead, expiry, operator): restore them "
				   "(docs/durability.md)";
			return -1;
		}
		if (srv_genesis_load(s, rec, &r->error) != 0)
			return -1;
		if (srv_core_out_alloc(s->core, &r->out) != SRV_CORE_OK) {
			r->error = "out of memory";
			return -1;
		}
		return 0;
	}
	if (s->core == NULL) {
		r->error = "the journal does not begin with its GENESIS record";
		return -1;
	}
	static struct srv_request req;
	if (srv_replay_apply(s->core, rec, &req, &r->out, &r->error) != 0)
		return -1;
	return resend(r, rec->seq);
}

int srv_recover(struct srv *s)
{
	struct recovery r = {.s = s};
	struct ledger *l = NULL;
	bool locked = false;
	int64_t batch = 0, action = 0;
	int rc = ledger_open(s->cfg.database_url, s->cfg.currency, &l);
	if (rc == LEDGER_OK)
		rc = ledger_try_lock(l, &locked);
	if (rc == LEDGER_OK && !locked) {
		srv_log(SRV_LOG_ERROR,
			"another gridexd or gridex-admin holds the ledger's writer lock", NULL);
		ledger_close(l);
		return -1;
	}
	if (rc == LEDGER_OK)
		rc = ledger_last_batch(l, &batch);
	if (rc == LEDGER_OK)
		rc = ledger_last_action(l, &action);
	if (rc != LEDGER_OK) {
		srv_log(SRV_LOG_ERROR, "cannot read the ledger", "status=%s error=\"%s\"",
			ledger_status_name(rc), l ? ledger_error(l) : "");
		ledger_close(l);
		return -1;
	}
	s->lock = l; /* held open: the writer lock lasts as long as gridexd */
	r.ledger_batch = batch;

	char path[SRV_CONFIG_TEXT_MAX + 16];
	if (mkdir(s->cfg.journal_dir, 0750) != 0 && errno != EEXIST) {
		srv_log(SRV_LOG_ERROR, "cannot create journal_dir", "path=\"%s\" error=\"%s\"",
			s->cfg.journal_dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/journal", s->cfg.journal_dir);
	struct srv_journal_stats st;
	int64_t t0 = srv_mono_ms();
	rc = srv_journal_scan(path, replay_one, &r, &st);
	if (rc != SRV_JOURNAL_OK && rc != SRV_JOURNAL_MISSING) {
		srv_log(SRV_LOG_ERROR, "journal cannot be replayed", "path=\"%s\" error=\"%s\"",
			path,
			r.error ? r.error : (st.torn_reason[0] ? st.torn_reason : strerror(errno)));
		goto fail;
	}
	if (st.records == 0) { /* a new journal: its genesis is the ledger as it is now */
		s->seq_base = batch > action ? batch : action;
		int64_t now = srv_now_ms();
		if (srv_core_make(s, now) != 0 || srv_core_out_alloc(s->core, &r.out) != 0) {
			srv_log(SRV_LOG_ERROR, "the core cannot be created", NULL);
			goto fail;
		}
		if (ledger_load_participants(l, from_ledger, &r) != LEDGER_OK) {
			srv_log(SRV_LOG_ERROR, "cannot load participants", "error=\"%s\"",
				r.error ? r.error : ledger_error(l));
			goto fail;
		}
		struct srv_jrec g = {.kind = SRV_J_GENESIS,
				     .seq = (uint64_t)s->seq_base,
				     .time_ms = now,
				     .seq_base = (uint64_t)s->seq_base,
				     .participants = r.genesis,
				     .n_participants = r.n_genesis};
		settings_fingerprint(&s->cfg, g.settings);
		if (srv_journal_open(path, 0, &s->journal) != SRV_JOURNAL_OK ||
		    srv_journal_append(s->journal, &g) != SRV_JOURNAL_OK ||
		    srv_journal_sync(s->journal) != SRV_JOURNAL_OK) {
			srv_log(SRV_LOG_ERROR, "cannot write the journal",
				"path=\"%s\" error=\"%s\"", path, strerror(errno));
			goto fail;
		}
		if (ledger_mark_journal(l, s->seq_base) != LEDGER_OK) {
			srv_log(SRV_LOG_ERROR, "cannot record the journal in the ledger",
				"error=\"%s\"", ledger_error(l));
			goto fail;
		}
		s->journal_last_ms = now;
		srv_log(SRV_LOG_INFO, "journal started",
			"path=\"%s\" participants=%u sequence=%lld", path, r.n_genesis,
			(long long)s->seq_base);
	} else {
		if ((uint64_t)batch > st.last_seq) {
			srv_log(SRV_LOG_ERROR,
				"the ledger has batches this journal did not write (gridex-admin "
				"while "
				"gridexd was stopped?); refusing to start",
				"ledger_batch=%lld journal_last=%llu", (long long)batch,
				(unsigned long long)st.last_seq);
			goto fail;
		}
		if (st.torn_bytes > 0)
			srv_log(SRV_LOG_WARN, "journal: torn tail cut off",
				"bytes=%llu reason=\"%s\"", (unsigned long long)st.torn_bytes,
				st.torn_reason);
		if (srv_journal_open(path, st.valid_bytes, &s->journal) != SRV_JOURNAL_OK) {
			srv_log(SRV_LOG_ERROR, "cannot append to the journal",
				"path=\"%s\" error=\"%s\"", path, strerror(errno));
			goto fail;
		}
		s->seq_base = (int64_t)st.last_seq;
		s->journal_last_ms = st.last_ms;
		srv_log(SRV_LOG_INFO, "journal replayed",
			"records=%llu requests=%llu ticks=%llu last_sequence=%llu "
			"resent_to_ledger=%zu "
			"ledger_batch=%lld ms=%lld",
			(unsigned long long)st.records, (unsigned long long)st.requests,
			(unsigned long long)st.ticks, (unsigned long long)st.last_seq, r.resent,
			(long long)batch, (long long)(srv_mono_ms() - t0));
	}
	srv_core_out_free(&r.out);
	free(r.genesis);
	return 0;
fail:
	srv_core_out_free(&r.out);
	free(r.genesis);
	return -1;
}
