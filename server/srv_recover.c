/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Start-up: the ledger's writer lock, then the state. A new journal begins
 * with a GENESIS record of the ledger's participants, keys and balances.
 * Otherwise the newest usable snapshot is loaded and the journal after it is
 * replayed through the same core code that handled it live (without a
 * snapshot: the whole journal from GENESIS), the torn tail of its last
 * segment cut off, and every fill and operator action the ledger does not
 * have yet is handed to the ledger thread again (docs/durability.md).
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "gridex.pb-c.h"
#include "srv_journal.h"
#include "srv_log.h"
#include "srv_server.h"
#include "srv_snapshot.h"

struct recovery {
	struct srv *s;
	struct srv_core_out out;
	int64_t ledger_batch; /* everything at or below it is in the ledger */
	uint64_t after;	      /* records up to it are in the snapshot loaded */
	uint64_t last_seq;    /* of the last record applied (or the snapshot) */
	int64_t last_ms;      /* its time */
	struct srv_journal_participant *genesis;
	uint32_t n_genesis, cap_genesis;
	size_t resent;
	const char *error;
};

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
	if (srv_core_leases(c))
		srv_leases_set_seq(srv_core_leases(c), rec->seq);
	if (rec->kind == SRV_J_TICK) {
		rc = srv_core_tick(c, rec->time_ms, out);
	} else if (rec->kind == SRV_J_LEASE) {
		rc = srv_core_lease_event(c, rec->lease_id, rec->lease_event, rec->lease_code,
					  rec->time_ms, out);
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

static int resend_one(struct recovery *r, const struct srv_wjob *w)
{
	struct srv *s = r->s;
	if (srv_queue_push(&s->writer_q, w, 1, false, NULL) != 1) {
		r->error = "more unsettled fills than writer_queue_max: raise it";
		return -1;
	}
	/* The core keeps them until settled, for its snapshots (the queue bounds them). */
	if ((s->n_resent & (s->n_resent - 1)) == 0) {
		void *p = realloc(s->resent, (s->n_resent ? 2 * s->n_resent : 1) * sizeof(*w));
		if (p == NULL) {
			r->error = "out of memory";
			return -1;
		}
		s->resent = p;
	}
	s->resent[s->n_resent++] = *w;
	r->resent++;
	return 0;
}

static int resend_each(const struct srv_wjob *w, void *ctx)
{
	return resend_one(ctx, w);
}

/* What the ledger does not have yet goes to the ledger thread, in order. */
static int resend(struct recovery *r, uint64_t seq)
{
	if ((int64_t)seq <= r->ledger_batch)
		return 0;
	return srv_wjobs_of(&r->out, (int64_t)seq, srv_mono_ms(), resend_each, r);
}

static int replay_one(const struct srv_jrec *rec, void *ctx)
{
	struct recovery *r = ctx;
	struct srv *s = r->s;
	if (r->after > 0 && rec->seq <= r->after)
		return 0; /* in the snapshot already */
	if (r->last_seq != 0 && rec->seq != r->last_seq + 1) {
		r->error = "the journal has a gap in its sequence numbers (a segment missing?)";
		return -1;
	}
	r->last_seq = rec->seq;
	r->last_ms = rec->time_ms;
	if (rec->kind == SRV_J_GENESIS) {
		if (s->core != NULL) {
			r->error = "a second GENESIS record";
			return -1;
		}
		uint8_t now[SRV_JOURNAL_SETTINGS_BYTES];
		srv_settings_fingerprint(&s->cfg, now);
		if (memcmp(now, rec->settings, sizeof(now)) != 0) {
			r->error = "the journal was written under other settings (fees, limits, "
				   "engine sizes, gate lead, expiry, operator, leases, "
				   "book_retain_ms, product_horizon_ms, classes): restore them "
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
		r->error = "the journal does not begin with its GENESIS record (its first segment "
			   "is missing and no snapshot could be loaded)";
		return -1;
	}
	static struct srv_request req;
	if (srv_replay_apply(s->core, rec, &req, &r->out, &r->error) != 0)
		return -1;
	return resend(r, rec->seq);
}

/* ---------- the journal directory ---------- */

static int by_first(const void *a, const void *b)
{
	const struct srv_segment *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

int srv_segments_list(const char *dir, struct srv_segment **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	char archive[SRV_CONFIG_TEXT_MAX + 16];
	snprintf(archive, sizeof(archive), "%s/archive", dir);
	uint64_t *live = NULL, *old = NULL;
	size_t n_live = 0, n_old = 0;
	if (srv_journal_list(dir, "journal-", &live, &n_live) != SRV_JOURNAL_OK ||
	    srv_journal_list(archive, "journal-", &old, &n_old) != SRV_JOURNAL_OK) {
		free(live);
		return -1;
	}
	struct srv_segment *segs = calloc(n_live + n_old + 1, sizeof(*segs));
	if (segs == NULL) {
		free(live);
		free(old);
		return -1;
	}
	size_t k = 0;
	for (size_t i = 0; i < n_live + n_old; i++) {
		bool archived = i >= n_live;
		uint64_t first = archived ? old[i - n_live] : live[i];
		bool dup = false; /* a copy in both places: the live one counts */
		for (size_t j = 0; archived && j < n_live; j++)
			dup |= live[j] == first;
		if (dup)
			continue;
		segs[k].first = first;
		segs[k].archived = archived;
		snprintf(segs[k].path, sizeof(segs[k].path), "%s/journal-%020llu",
			 archived ? archive : dir, (unsigned long long)first);
		k++;
	}
	qsort(segs, k, sizeof(*segs), by_first);
	free(live);
	free(old);
	*out = segs;
	*n = k;
	return 0;
}

/* Removes what a crash while writing a snapshot left: snapshot-<seq>.tmp. */
static void remove_partial_snapshots(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	char path[SRV_CONFIG_TEXT_MAX + 64];
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		size_t len = strlen(e->d_name);
		if (len != 9 + 20 + 4 || strncmp(e->d_name, "snapshot-", 9) != 0 ||
		    strcmp(e->d_name + 29, ".tmp") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) == 0)
			srv_log(SRV_LOG_INFO, "partial snapshot removed", "path=\"%s\"", path);
	}
	closedir(d);
}

/* A journal from before segments ("journal") becomes the first segment. */
struct first {
	uint64_t seq;
	bool found;
};

static int first_record(const struct srv_jrec *rec, void *ctx)
{
	struct first *f = ctx;
	f->seq = rec->seq;
	f->found = true;
	return 1;
}

static int adopt_single_file(const char *dir)
{
	char old[SRV_CONFIG_TEXT_MAX + 16], seg[SRV_CONFIG_TEXT_MAX + 40];
	snprintf(old, sizeof(old), "%s/journal", dir);
	struct stat sb;
	if (stat(old, &sb) != 0 || !S_ISREG(sb.st_mode))
		return 0;
	struct first first = {0};
	struct srv_journal_stats st;
	int rc = srv_journal_scan(old, first_record, &first, &st);
	if (rc != 1 && rc != SRV_JOURNAL_OK)
		return -1; /* unreadable: leave it for the operator */
	if (!first.found)
		return unlink(old); /* nothing was ever written to it */
	snprintf(seg, sizeof(seg), "%s/journal-%020llu", dir, (unsigned long long)first.seq);
	srv_log(SRV_LOG_INFO, "journal file renamed as its first segment", "path=\"%s\"", seg);
	return rename(old, seg) == 0 && srv_journal_sync_dir(dir) == SRV_JOURNAL_OK ? 0 : -1;
}

/*
 * The newest snapshot that loads and that the ledger can continue from: every
 * settlement item below its mark must be in the ledger (it keeps those from
 * the mark on). Loads it into s->core and hands its items the ledger lacks to
 * the ledger thread. Returns its sequence, or 0 when there is none to use.
 */
static int load_snapshot(struct recovery *r, uint64_t *seq)
{
	struct srv *s = r->s;
	uint64_t *snaps = NULL;
	size_t n = 0;
	*seq = 0;
	if (srv_journal_list(s->cfg.journal_dir, "snapshot-", &snaps, &n) != SRV_JOURNAL_OK) {
		r->error = "cannot list journal_dir";
		return -1;
	}
	uint8_t want[SRV_JOURNAL_SETTINGS_BYTES];
	srv_settings_fingerprint(&s->cfg, want);
	int rc = 0;
	for (size_t i = n; i-- > 0 && *seq == 0;) {
		char path[SRV_CONFIG_TEXT_MAX + 40];
		snprintf(path, sizeof(path), "%s/snapshot-%020llu", s->cfg.journal_dir,
			 (unsigned long long)snaps[i]);
		uint8_t *data = NULL;
		struct srv_snapshot_info info;
		struct srv_snap_r body;
		const char *why = NULL;
		int64_t t0 = srv_mono_ms();
		if (srv_snapshot_read(path, &data, &info, &body, &why) != 0) {
			srv_log(SRV_LOG_WARN, "snapshot refused", "path=\"%s\" reason=\"%s\"", path,
				why);
			continue;
		}
		if (memcmp(info.settings, want, sizeof(want)) != 0) {
			free(data);
			r->error =
				"the newest snapshot was taken under other settings (fees, limits, "
				"engine sizes, gate lead, expiry, operator, leases, "
				"book_retain_ms, product_horizon_ms, classes): restore them "
				"(docs/durability.md)";
			rc = -1;
			break;
		}
		uint32_t count = 0;
		int64_t mark = 0, settled = 0;
		if (info.seq != snaps[i])
			srv_snap_fail(&body, "its name and its sequence differ");
		else if (srv_core_make(s, 0) != 0)
			srv_snap_fail(&body, "the core cannot be created");
		else if (srv_core_load(s->core, &body) == 0) {
			mark = srv_snap_get_i64(&body);
			count = srv_snap_get_count(&body, 9, UINT32_MAX);
		}
		if (!body.error && srv_core_out_alloc(s->core, &r->out) != SRV_CORE_OK)
			srv_snap_fail(&body, "out of memory");
		struct srv_wjob *items = count ? malloc(count * sizeof(*items)) : NULL;
		if (count && items == NULL)
			srv_snap_fail(&body, "out of memory");
		for (uint32_t k = 0; k < count && !body.error; k++)
			if (srv_wjob_load(&body, &items[k], info.format) == 0 &&
			    ((k > 0 && items[k].seq < items[k - 1].seq) || items[k].seq < mark ||
			     (uint64_t)items[k].seq > info.seq))
				srv_snap_fail(&body, "settlement items out of order or range");
		/* Format 2 ends with the last batch the ledger had confirmed. Format 1 did
		 * not say: every sequence below the mark stands for it there, which refuses
		 * a snapshot whose mark is past inputs without settlement items. */
		settled = info.format >= 2 ? srv_snap_get_i64(&body) : mark - 1;
		if (!body.error && info.format >= 2 &&
		    (settled < 0 || (uint64_t)settled > info.seq))
			srv_snap_fail(&body, "its settled batch is out of range");
		if (!body.error && body.off != body.len)
			srv_snap_fail(&body, "bytes after its end");
		if (!body.error && settled > r->ledger_batch)
			srv_snap_fail(&body, "the ledger lacks settlement batches this snapshot "
					     "counts on (was the database restored from an older "
					     "backup?)");
		if (body.error) {
			srv_log(SRV_LOG_WARN, "snapshot refused", "path=\"%s\" reason=\"%s\"", path,
				body.error);
			srv_core_out_free(&r->out);
			srv_core_destroy(s->core);
			s->core = NULL;
			free(items);
			free(data);
			continue;
		}
		for (uint32_t k = 0; k < count && rc == 0; k++) {
			items[k].mono_ms = srv_mono_ms();
			items[k].seq_end = k + 1 == count || items[k + 1].seq != items[k].seq;
			if (items[k].seq > r->ledger_batch && resend_one(r, &items[k]) != 0)
				rc = -1;
		}
		free(items);
		if (rc) {
			free(data);
			break;
		}
		*seq = info.seq;
		s->journal_last_ms = info.time_ms;
		srv_log(SRV_LOG_INFO, "snapshot loaded",
			"path=\"%s\" sequence=%llu resting_orders=%u unsettled=%u ms=%lld", path,
			(unsigned long long)info.seq,
			matching_order_count(srv_core_engine(s->core)), count,
			(long long)(srv_mono_ms() - t0));
		free(data);
	}
	free(snaps);
	return rc;
}

/* Starts a new journal segment whose first record will be `first`. */
static int new_segment(struct srv *s, uint64_t first)
{
	char path[SRV_CONFIG_TEXT_MAX + 40];
	snprintf(path, sizeof(path), "%s/journal-%020llu", s->cfg.journal_dir,
		 (unsigned long long)first);
	if (srv_journal_open(path, 0, &s->journal) != SRV_JOURNAL_OK ||
	    srv_journal_sync_dir(s->cfg.journal_dir) != SRV_JOURNAL_OK) {
		srv_log(SRV_LOG_ERROR, "cannot write the journal", "path=\"%s\" error=\"%s\"", path,
			strerror(errno));
		return -1;
	}
	return 0;
}

int srv_recover(struct srv *s)
{
	struct recovery r = {.s = s};
	struct ledger *l = NULL;
	struct srv_segment *segs = NULL;
	size_t nsegs = 0;
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
	s->lock = l; /* held open: the ledger writer adopts it, lock and all */
	r.ledger_batch = batch;
	atomic_store(&s->settled_batch, batch);
	atomic_store(&s->settled_seq, batch);

	const char *dir = s->cfg.journal_dir;
	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		srv_log(SRV_LOG_ERROR, "cannot create journal_dir", "path=\"%s\" error=\"%s\"", dir,
			strerror(errno));
		return -1;
	}
	int64_t t0 = srv_mono_ms();
	if (adopt_single_file(dir) != 0 || srv_segments_list(dir, &segs, &nsegs) != 0) {
		srv_log(SRV_LOG_ERROR, "cannot read journal_dir", "path=\"%s\" error=\"%s\"", dir,
			strerror(errno));
		goto fail;
	}
	remove_partial_snapshots(dir);
	uint64_t snap = 0;
	if (load_snapshot(&r, &snap) != 0) {
		srv_log(SRV_LOG_ERROR, "cannot start from the snapshots", "error=\"%s\"", r.error);
		goto fail;
	}
	r.after = r.last_seq = s->snap_seq = snap;
	/* Replay from the segment holding the record after the snapshot (or the first). */
	size_t from = 0;
	for (size_t i = 0; snap > 0 && i < nsegs; i++)
		if (segs[i].first <= snap + 1)
			from = i;
	struct srv_journal_stats st = {0}, last = {0};
	uint64_t records = 0;
	for (size_t i = from; i < nsegs; i++) {
		rc = srv_journal_scan(segs[i].path, replay_one, &r, &st);
		if (rc == SRV_JOURNAL_OK && st.torn_bytes > 0 && i + 1 < nsegs) {
			r.error = "a segment other than the last is torn or corrupt";
			rc = -1;
		}
		if (rc != SRV_JOURNAL_OK) {
			srv_log(SRV_LOG_ERROR, "journal cannot be replayed",
				"path=\"%s\" error=\"%s\"", segs[i].path,
				r.error ? r.error
					: (st.torn_reason[0] ? st.torn_reason : strerror(errno)));
			goto fail;
		}
		records += st.records;
		last = st;
	}
	if (r.last_seq == 0) { /* a new journal: its genesis is the ledger as it is now */
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
		srv_settings_fingerprint(&s->cfg, g.settings);
		if (new_segment(s, g.seq) != 0 ||
		    srv_journal_append(s->journal, &g) != SRV_JOURNAL_OK ||
		    srv_journal_sync(s->journal) != SRV_JOURNAL_OK) {
			srv_log(SRV_LOG_ERROR, "cannot write the journal", "error=\"%s\"",
				strerror(errno));
			goto fail;
		}
		if (ledger_mark_journal(l, s->seq_base) != LEDGER_OK) {
			srv_log(SRV_LOG_ERROR, "cannot record the journal in the ledger",
				"error=\"%s\"", ledger_error(l));
			goto fail;
		}
		s->journal_last_ms = now;
		srv_log(SRV_LOG_INFO, "journal started", "dir=\"%s\" participants=%u sequence=%lld",
			dir, r.n_genesis, (long long)s->seq_base);
	} else {
		if ((uint64_t)batch > r.last_seq) {
			srv_log(SRV_LOG_ERROR,
				"the ledger has batches this journal did not write (gridex-admin "
				"while gridexd was stopped, or journal segments lost); refusing to "
				"start",
				"ledger_batch=%lld journal_last=%llu", (long long)batch,
				(unsigned long long)r.last_seq);
			goto fail;
		}
		if (last.torn_bytes > 0)
			srv_log(SRV_LOG_WARN, "journal: torn tail cut off",
				"path=\"%s\" bytes=%llu reason=\"%s\"", segs[nsegs - 1].path,
				(unsigned long long)last.torn_bytes, last.torn_reason);
		/* Append to the last segment, unless it is archived or before the snapshot. */
		bool append = nsegs > 0 && !segs[nsegs - 1].archived && from < nsegs &&
			      (last.records > 0 || segs[nsegs - 1].first == r.last_seq + 1);
		if (append && srv_journal_open(segs[nsegs - 1].path, last.valid_bytes,
					       &s->journal) != SRV_JOURNAL_OK) {
			srv_log(SRV_LOG_ERROR, "cannot append to the journal",
				"path=\"%s\" error=\"%s\"", segs[nsegs - 1].path, strerror(errno));
			goto fail;
		}
		if (!append && new_segment(s, r.last_seq + 1) != 0)
			goto fail;
		s->seq_base = (int64_t)r.last_seq;
		if (r.last_seq > snap)
			s->journal_last_ms = r.last_ms;
		srv_log(SRV_LOG_INFO, "state recovered",
			"snapshot=%llu records_read=%llu last_sequence=%llu resent_to_ledger=%zu "
			"ledger_batch=%lld ms=%lld",
			(unsigned long long)snap, (unsigned long long)records,
			(unsigned long long)r.last_seq, r.resent, (long long)batch,
			(long long)(srv_mono_ms() - t0));
	}
	srv_core_out_free(&r.out);
	free(r.genesis);
	free(segs);
	return 0;
fail:
	srv_core_out_free(&r.out);
	free(r.genesis);
	free(segs);
	return -1;
}
