/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_frames.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "gridex.pb-c.h"
#include "wire.h"

int srv_client_frame_split(const uint8_t *buf, size_t len, int *field, const uint8_t **inner,
			   size_t *inner_len)
{
	if (len < 2)
		return -1;
	/* Tag: field number << 3 | wire type 2 (length-delimited), one byte for 1..3. */
	uint8_t tag = buf[0];
	int f = tag >> 3;
	if ((tag & 7) != 2 || f < SRV_CF_REQUEST || f > SRV_CF_UNSUBSCRIBE)
		return -1;
	uint64_t n = 0;
	size_t i = 1;
	for (int shift = 0; i < len && shift < 64; shift += 7) {
		uint8_t b = buf[i++];
		n |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			if (n != len - i) /* exactly the rest: no trailing or repeated fields */
				return -1;
			*field = f;
			*inner = buf + i;
			*inner_len = (size_t)n;
			return 0;
		}
	}
	return -1;
}

/* Packs a ServerFrame of body bytes (its packed size) after a length header; 0 when it
 * does not fit. */
static size_t pack_sized(uint8_t *buf, size_t cap, const Gridex__V1__ServerFrame *f, size_t body)
{
	if (body == 0 || body > WIRE_FRAME_BYTES_CEILING || cap < WIRE_HEADER_BYTES + body)
		return 0;
	int rc = wire_frame_header(body, buf);
	assert(rc == WIRE_OK);
	(void)rc;
	size_t n = gridex__v1__server_frame__pack(f, buf + WIRE_HEADER_BYTES);
	assert(n == body);
	return WIRE_HEADER_BYTES + n;
}

/* Packs a ServerFrame after a length header; 0 when it does not fit. */
static size_t pack(uint8_t *buf, size_t cap, const Gridex__V1__ServerFrame *f)
{
	return pack_sized(buf, cap, f, gridex__v1__server_frame__get_packed_size(f));
}

/* Bytes of n as a varint. */
static size_t varint_bytes(uint64_t n)
{
	size_t b = 1;
	for (; n >= 0x80; n >>= 7)
		b++;
	return b;
}

/* A query answer being filled with rows, in the bytes of its frame body. */
struct fit {
	size_t max;		 /* the frame body's limit */
	size_t bytes;		 /* the QueryResult's so far */
	const uint64_t *cursors; /* each row's (NULL: none) */
};

/* Starts a fit for q (its nonce, account and balances set). */
static void fit_begin(struct fit *f, Gridex__V1__QueryResult *q, const struct srv_answer *a)
{
	q->nonce = a->nonce;
	q->account = a->account;
	f->bytes = gridex__v1__query_result__get_packed_size(q);
	f->max = a->bytes_max;
	f->cursors = a->cursors;
}

/* Whether row i, of n bytes, still fits in the frame (it is then counted). Each row is a
 * repeated field of QueryResult (a one-byte tag, a length), and the QueryResult is
 * ServerFrame.result (the same). The row must leave room for what an answer cut after it
 * ends with: truncated (2 bytes) and next, its cursor (a tag and a varint). */
static bool fit_row(struct fit *f, size_t i, size_t n)
{
	size_t q = f->bytes + 1 + varint_bytes(n) + n;
	size_t end = q + 2 + (f->cursors && f->cursors[i] ? 1 + varint_bytes(f->cursors[i]) : 0);
	if (1 + varint_bytes(end) + end > f->max)
		return false;
	f->bytes = q;
	return true;
}

/* A query's answer q holding kept of its n rows, marked truncated when that left some
 * out or the core cut them (a->cut), as a ServerFrame packed into a new buffer (NULL:
 * out of memory or too big). */
static uint8_t *pack_answer(Gridex__V1__QueryResult *q, const struct srv_answer *a, size_t kept,
			    size_t n, size_t *len)
{
	q->truncated = a->cut || kept < n;
	/* No row fitted: there is no cursor that would get past the first. */
	q->next = q->truncated && kept > 0 && a->cursors ? a->cursors[kept - 1] : 0;
	Gridex__V1__ServerFrame f = GRIDEX__V1__SERVER_FRAME__INIT;
	f.result = q;
	size_t body = gridex__v1__server_frame__get_packed_size(&f);
	uint8_t *buf = malloc(WIRE_HEADER_BYTES + body);
	if (buf && (*len = pack_sized(buf, WIRE_HEADER_BYTES + body, &f, body)) == 0) {
		free(buf);
		buf = NULL;
	}
	return buf;
}

static ProtobufCBinaryData text(const char *s)
{
	return (ProtobufCBinaryData){.len = s ? strlen(s) : 0, .data = (uint8_t *)s};
}

size_t srv_frame_ack(uint8_t *buf, size_t cap, uint32_t account, uint64_t nonce, uint64_t sequence)
{
	Gridex__V1__Ack a = GRIDEX__V1__ACK__INIT;
	a.account = account;
	a.nonce = nonce;
	a.sequence = sequence;
	Gridex__V1__ServerFrame f = GRIDEX__V1__SERVER_FRAME__INIT;
	f.ack = &a;
	return pack(buf, cap, &f);
}

size_t srv_frame_reject(uint8_t *buf, size_t cap, uint32_t account, uint64_t nonce, uint32_t reason,
			const char *detail)
{
	Gridex__V1__Reject r = GRIDEX__V1__REJECT__INIT;
	r.account = account;
	r.nonce = nonce;
	r.reason = (Gridex__V1__RejectReason)reason;
	r.detail = text(detail);
	Gridex__V1__ServerFrame f = GRIDEX__V1__SERVER_FRAME__INIT;
	f.reject = &r;
	return pack(buf, cap, &f);
}

static void fill_report(Gridex__V1__ExecutionReport *e, const struct srv_report *r,
			const char *product, uint64_t sequence, int64_t time_ms)
{
	e->account = r->account;
	e->client_order_id = r->client_order_id;
	e->order_id = r->order_id;
	e->product = text(product);
	e->side = r->side == MATCHING_BUY ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL;
	e->exec_type = (Gridex__V1__ExecType)r->exec_type;
	e->price = r->price;
	e->last_price = r->last_price;
	e->last_quantity = r->last_quantity;
	e->cumulative_quantity = r->cumulative_quantity;
	e->leaves_quantity = r->leaves_quantity;
	e->fill_id = r->fill_id;
	e->fee = r->fee;
	e->sequence = sequence;
	e->time_ms = time_ms;
}

size_t srv_frame_report(uint8_t *buf, size_t cap, const struct srv_report *r, const char *product,
			uint64_t sequence, int64_t time_ms)
{
	Gridex__V1__ExecutionReport e = GRIDEX__V1__EXECUTION_REPORT__INIT;
	fill_report(&e, r, product, sequence, time_ms);
	Gridex__V1__ServerFrame f = GRIDEX__V1__SERVER_FRAME__INIT;
	f.report = &e;
	return pack(buf, cap, &f);
}

size_t srv_frame_md(uint8_t *buf, size_t cap, const struct srv_md *m, const char *product)
{
	Gridex__V1__ServerFrame f = GRIDEX__V1__SERVER_FRAME__INIT;
	Gridex__V1__BookUpdate u = GRIDEX__V1__BOOK_UPDATE__INIT;
	Gridex__V1__Trade t = GRIDEX__V1__TRADE__INIT;
	Gridex__V1__Side side =
		m->side == MATCHING_BUY ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL;
	if (m->kind == SRV_MD_LEVEL) {
		u.product = text(product);
		u.sequence = m->sequence;
		u.side = side;
		u.price = m->price;
		u.quantity = m->qty;
		u.orders = m->orders;
		f.update = &u;
	} else {
		t.product = text(product);
		t.sequence = m->sequence;
		t.price = m->price;
		t.quantity = m->qty;
		t.aggressor = side;
		t.time_ms = m->time_ms;
		f.trade = &t;
	}
	return pack(buf, cap, &f);
}

size_t srv_frame_snapshot_bound(const char *product, size_t n_levels)
{
	/* Per level: a tag and length, three fields of up to 11 bytes. */
	return WIRE_HEADER_BYTES + 64 + strlen(product) + n_levels * (2 + 3 * 11);
}

size_t srv_frame_snapshot(uint8_t *buf, size_t cap, const char *product, uint64_t sequence,
			  const struct matching_level_view *bids, size_t n_bids,
			  const struct matching_level_view *asks, size_t n_asks)
{
	size_t n = n_bids + n_asks;
	Gridex__V1__PriceLevel *levels = calloc(n ? n : 1, sizeof(*levels));
	Gridex__V1__PriceLevel **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	size_t out = 0;
	if (levels && ptrs) {
		for (size_t i = 0; i < n; i++) {
			const struct matching_level_view *v =
				i < n_bids ? &bids[i] : &asks[i - n_bids];
			gridex__v1__price_level__init(&levels[i]);
			levels[i].price = v->price;
			levels[i].quantity = v->qty;
			levels[i].orders = v->orders;
			ptrs[i] = &levels[i];
		}
		Gridex__V1__BookSnapshot s = GRIDEX__V1__BOOK_SNAPSHOT__INIT;
		s.product = text(product);
		s.sequence = sequence;
		s.n_bids = n_bids;
		s.bids = ptrs;
		s.n_asks = n_asks;
		s.asks = ptrs + n_bids;
		Gridex__V1__ServerFrame f = GRIDEX__V1__SERVER_FRAME__INIT;
		f.snapshot = &s;
		out = pack(buf, cap, &f);
	}
	free(levels);
	free(ptrs);
	return out;
}

uint8_t *srv_frame_result(const struct srv_answer *a, uint32_t query_type,
			  const struct srv_report *rows, size_t n_rows, int64_t available,
			  int64_t reserved, const char *currency,
			  const char *(*product)(uint32_t book, void *ctx), void *ctx, size_t *len)
{
	Gridex__V1__ExecutionReport *reports = calloc(n_rows ? n_rows : 1, sizeof(*reports));
	Gridex__V1__ExecutionReport **ptrs = calloc(n_rows ? n_rows : 1, sizeof(*ptrs));
	uint8_t *buf = NULL;
	if (!reports || !ptrs)
		goto out;
	Gridex__V1__Balance bal = GRIDEX__V1__BALANCE__INIT;
	Gridex__V1__Balance *balp = &bal;
	Gridex__V1__QueryResult q = GRIDEX__V1__QUERY_RESULT__INIT;
	if (query_type == GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE) {
		bal.currency = text(currency);
		bal.available = available;
		bal.reserved = reserved;
		q.n_balances = 1;
		q.balances = &balp;
		n_rows = 0;
	}
	struct fit f;
	fit_begin(&f, &q, a);
	size_t n = 0;
	for (; n < n_rows; n++) {
		gridex__v1__execution_report__init(&reports[n]);
		fill_report(&reports[n], &rows[n], product(rows[n].book, ctx), 0, 0);
		if (!fit_row(&f, n, gridex__v1__execution_report__get_packed_size(&reports[n])))
			break;
		ptrs[n] = &reports[n];
	}
	if (query_type == GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS) {
		q.n_fills = n;
		q.fills = ptrs;
	} else if (query_type != GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE) {
		q.n_orders = n;
		q.orders = ptrs;
	}
	buf = pack_answer(&q, a, n, n_rows, len);
out:
	free(reports);
	free(ptrs);
	return buf;
}

static void fill_lease(Gridex__V1__Lease *m, ProtobufCBinaryData *devs,
		       const struct srv_lease_view *v, const struct srv_lease_names *nm)
{
	gridex__v1__lease__init(m);
	m->lease_id = v->id;
	m->buyer = v->buyer;
	m->seller = v->seller;
	m->host = text(nm->host);
	m->accelerator = text(nm->accelerator);
	m->vendor = text(nm->vendor);
	for (size_t i = 0; i < nm->n_devices; i++)
		devs[i] = text(nm->devices[i]);
	m->n_devices = nm->n_devices;
	m->devices = devs;
	m->start_ms = v->start_ms;
	m->end_ms = v->end_ms;
	m->state = (Gridex__V1__LeaseState)v->state;
	m->reason = text(v->reason);
	m->running_ms = v->running_ms;
	m->ended_ms = v->ended_ms;
	m->n_fill_ids = v->n_fills;
	m->fill_ids = (uint64_t *)v->fill_ids;
	m->sequence = v->seq;
	m->quantity = v->quantity;
}

uint8_t *srv_frame_leases(const struct srv_answer *a, const struct srv_lease_view *views, size_t n,
			  void (*names)(const struct srv_lease_view *v, struct srv_lease_names *out,
					void *ctx),
			  void *ctx, size_t *len)
{
	size_t k = n ? n : 1;
	Gridex__V1__Lease *msgs = calloc(k, sizeof(*msgs));
	Gridex__V1__Lease **ptrs = calloc(k, sizeof(*ptrs));
	struct srv_lease_names *nms = calloc(k, sizeof(*nms));
	ProtobufCBinaryData *devs = calloc(k * SRV_HOST_DEVICES_MAX, sizeof(*devs));
	uint8_t *buf = NULL;
	if (!msgs || !ptrs || !nms || !devs)
		goto out;
	Gridex__V1__QueryResult q = GRIDEX__V1__QUERY_RESULT__INIT;
	struct fit fit = {0};
	if (a)
		fit_begin(&fit, &q, a);
	size_t rows = 0;
	for (; rows < n; rows++) {
		names(&views[rows], &nms[rows], ctx);
		fill_lease(&msgs[rows], devs + rows * SRV_HOST_DEVICES_MAX, &views[rows],
			   &nms[rows]);
		if (a && !fit_row(&fit, rows, gridex__v1__lease__get_packed_size(&msgs[rows])))
			break;
		ptrs[rows] = &msgs[rows];
	}
	if (a) {
		q.n_leases = rows;
		q.leases = ptrs;
		buf = pack_answer(&q, a, rows, n, len);
		goto out;
	}
	/* Lease updates: a frame each, back to back. */
	Gridex__V1__ServerFrame f = GRIDEX__V1__SERVER_FRAME__INIT;
	size_t cap = 0;
	for (size_t i = 0; i < n; i++) {
		f.lease = ptrs[i];
		cap += WIRE_HEADER_BYTES + gridex__v1__server_frame__get_packed_size(&f);
	}
	buf = malloc(cap ? cap : 1);
	if (buf == NULL)
		goto out;
	*len = 0;
	for (size_t i = 0; i < n; i++) {
		f.lease = ptrs[i];
		size_t m = pack(buf + *len, cap - *len, &f);
		if (m == 0) {
			free(buf);
			buf = NULL;
			goto out;
		}
		*len += m;
	}
out:
	free(msgs);
	free(ptrs);
	free(nms);
	free(devs);
	return buf;
}

uint8_t *srv_frame_hosts(const struct srv_answer *a, const struct srv_host_row *rows, size_t n,
			 size_t *len)
{
	size_t k = n ? n : 1;
	Gridex__V1__Host *msgs = calloc(k, sizeof(*msgs));
	Gridex__V1__Host **ptrs = calloc(k, sizeof(*ptrs));
	ProtobufCBinaryData *devs = calloc(k * SRV_HOST_DEVICES_MAX, sizeof(*devs));
	uint8_t *buf = NULL;
	if (!msgs || !ptrs || !devs)
		goto out;
	Gridex__V1__QueryResult q = GRIDEX__V1__QUERY_RESULT__INIT;
	struct fit f;
	fit_begin(&f, &q, a);
	size_t i = 0;
	for (; i < n; i++) {
		const struct srv_host_view *h = rows[i].host;
		Gridex__V1__Host *m = &msgs[i];
		gridex__v1__host__init(m);
		m->name = text(h->name);
		m->seller = h->seller;
		m->accelerator = text(rows[i].accelerator);
		m->vendor = text(h->spec.vendor);
		m->devices = devs + i * SRV_HOST_DEVICES_MAX;
		for (uint32_t d = 0; d < h->spec.n_devices; d++)
			m->devices[d] = text(h->spec.devices[d]);
		m->n_devices = h->spec.n_devices;
		m->withdrawn = h->withdrawn;
		m->live_leases = rows[i].live_leases;
		if (!fit_row(&f, i, gridex__v1__host__get_packed_size(m)))
			break;
		ptrs[i] = m;
	}
	q.n_hosts = i;
	q.hosts = ptrs;
	buf = pack_answer(&q, a, i, n, len);
out:
	free(msgs);
	free(ptrs);
	free(devs);
	return buf;
}
