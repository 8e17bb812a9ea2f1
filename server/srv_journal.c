/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES 8	/* length, CRC */
#define FIXED_BYTES  17 /* seq, time, kind */
#define BUF_START    (1 << 16)

/* ---------- CRC32C ---------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc_bytes(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* SSE4.2 has the CRC32C instruction: eight bytes per step, several GB/s. */
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const uint8_t *p,
							    size_t len)
{
	uint64_t c = crc;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
	}
	crc = (uint32_t)c;
	for (; len > 0; p++, len--)
		crc = __builtin_ia32_crc32qi(crc, *p);
	return crc;
}
#endif

uint32_t srv_crc32c(uint32_t crc, const void *data, size_t len)
{
	crc = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc_sse42(crc, data, len);
#endif
	if (crc_table[1] == 0)
		crc_init(); /* idempotent: racing threads write the same values */
	return ~crc_bytes(crc, data, len);
}

/* ---------- little-endian fields ---------- */

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---------- decoding one payload ---------- */

static int decode(const uint8_t *p, size_t n, struct srv_jrec *r)
{
	if (n < FIXED_BYTES)
		return SRV_JOURNAL_BAD;
	memset(r, 0, offsetof(struct srv_jrec, body));
	r->participants = NULL;
	r->n_participants = 0;
	r->seq = get_u64(p);
	r->time_ms = (int64_t)get_u64(p + 8);
	r->kind = p[16];
	p += FIXED_BYTES;
	n -= FIXED_BYTES;
	switch (r->kind) {
	case SRV_J_TICK:
		return n == 0 ? SRV_JOURNAL_OK : SRV_JOURNAL_BAD;
	case SRV_J_LEASE:
		if (n < 10 || p[9] >= sizeof(r->lease_code) || n != 10u + p[9])
			return SRV_JOURNAL_BAD;
		r->lease_id = get_u64(p);
		r->lease_event = p[8];
		memcpy(r->lease_code, p + 10, p[9]);
		r->lease_code[p[9]] = '\0';
		return r->lease_id != 0 && r->lease_event >= 1 && r->lease_event <= 3 &&
				       memchr(r->lease_code, '\0', p[9]) == NULL
			       ? SRV_JOURNAL_OK
			       : SRV_JOURNAL_BAD;
	case SRV_J_REQUEST:
		if (n < 2)
			return SRV_JOURNAL_BAD;
		r->body_len = (uint16_t)(p[0] | p[1] << 8);
		if (r->body_len == 0 || r->body_len > SRV_BODY_BYTES_CEILING ||
		    n != 2u + r->body_len + SRV_SIGNATURE_BYTES)
			return SRV_JOURNAL_BAD;
		memcpy(r->body, p + 2, r->body_len);
		memcpy(r->signature, p + 2 + r->body_len, SRV_SIGNATURE_BYTES);
		return SRV_JOURNAL_OK;
	case SRV_J_GENESIS: {
		if (n < 12)
			return SRV_JOURNAL_BAD;
		r->seq_base = get_u64(p);
		uint32_t count = get_u32(p + 8);
		p += 12;
		n -= 12;
		if (count > SRV_JOURNAL_PARTICIPANTS_MAX)
			return SRV_JOURNAL_BAD;
		r->participants = calloc(count ? count : 1, sizeof(*r->participants));
		if (r->participants == NULL)
			return SRV_JOURNAL_NOMEM;
		for (uint32_t i = 0; i < count; i++) {
			struct srv_journal_participant *q = &r->participants[i];
			if (n < 5 || p[4] == 0 || p[4] > SRV_ACCOUNT_NAME_BYTES_MAX ||
			    n < 5u + p[4] + 32 + 8)
				return SRV_JOURNAL_BAD;
			q->id = get_u32(p);
			memcpy(q->name, p + 5, p[4]);
			q->name[p[4]] = '\0';
			memcpy(q->public_key, p + 5 + p[4], 32);
			q->balance = (int64_t)get_u64(p + 5 + p[4] + 32);
			size_t used = 5u + p[4] + 32 + 8;
			p += used;
			n -= used;
			r->n_participants = i + 1;
		}
		if (n != SRV_JOURNAL_SETTINGS_BYTES)
			return SRV_JOURNAL_BAD;
		memcpy(r->settings, p, SRV_JOURNAL_SETTINGS_BYTES);
		return SRV_JOURNAL_OK;
	}
	default:
		return SRV_JOURNAL_BAD;
	}
}

int srv_journal_scan(const char *path, int (*each)(const struct srv_jrec *r, void *ctx), void *ctx,
		     struct srv_journal_stats *st)
{
	memset(st, 0, sizeof(*st));
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return errno == ENOENT ? SRV_JOURNAL_MISSING : SRV_JOURNAL_IO;
	uint8_t magic[SRV_JOURNAL_MAGIC_BYTES];
	size_t got = fread(magic, 1, sizeof(magic), f);
	int rc = SRV_JOURNAL_OK;
	if (got == 0 && feof(f)) { /* empty: created, nothing written yet */
		fclose(f);
		return SRV_JOURNAL_OK;
	}
	if (got != sizeof(magic) || memcmp(magic, SRV_JOURNAL_MAGIC, sizeof(magic)) != 0) {
		fclose(f);
		return SRV_JOURNAL_BAD;
	}
	st->valid_bytes = SRV_JOURNAL_MAGIC_BYTES;
	struct srv_jrec *r = malloc(sizeof(*r));
	size_t cap = 4096;
	uint8_t *buf = malloc(cap); /* grows to the largest record, at most the ceiling */
	if (!r || !buf) {
		rc = SRV_JOURNAL_NOMEM;
		goto out;
	}
	for (;;) {
		uint8_t hdr[HEADER_BYTES];
		got = fread(hdr, 1, sizeof(hdr), f);
		if (got == 0 && feof(f))
			break;
		const char *why = NULL;
		uint32_t len = 0;
		if (got != sizeof(hdr)) {
			why = "short record header";
		} else {
			len = get_u32(hdr);
			if (len < FIXED_BYTES || len > SRV_JOURNAL_PAYLOAD_MAX)
				why = "impossible record length";
			else if (len > cap) {
				uint8_t *b = realloc(buf, len);
				if (b == NULL) {
					rc = SRV_JOURNAL_NOMEM;
					goto out;
				}
				buf = b;
				cap = len;
			}
			if (why == NULL && fread(buf, 1, len, f) != len)
				why = "short record";
			if (why == NULL && srv_crc32c(0, buf, len) != get_u32(hdr + 4))
				why = "CRC mismatch";
		}
		if (why) { /* a torn or corrupt tail: what follows cannot be trusted */
			snprintf(st->torn_reason, sizeof(st->torn_reason), "%s at byte %llu", why,
				 (unsigned long long)st->valid_bytes);
			struct stat sb;
			if (fstat(fileno(f), &sb) == 0 && (uint64_t)sb.st_size > st->valid_bytes)
				st->torn_bytes = (uint64_t)sb.st_size - st->valid_bytes;
			break;
		}
		rc = decode(buf, len, r);
		if (rc == SRV_JOURNAL_OK && st->records > 0 && r->seq < st->last_seq)
			rc = SRV_JOURNAL_BAD;
		if (rc) {
			free(r->participants);
			snprintf(st->torn_reason, sizeof(st->torn_reason),
				 "undecodable record at byte %llu",
				 (unsigned long long)st->valid_bytes);
			goto out;
		}
		if (st->records++ == 0) {
			st->first_seq = r->seq;
			st->first_ms = r->time_ms;
		}
		st->last_seq = r->seq;
		st->last_ms = r->time_ms;
		st->requests += r->kind == SRV_J_REQUEST;
		st->ticks += r->kind == SRV_J_TICK;
		st->genesis += r->kind == SRV_J_GENESIS;
		st->valid_bytes += HEADER_BYTES + len;
		int stop = each ? each(r, ctx) : 0;
		free(r->participants);
		r->participants = NULL;
		if (stop) {
			rc = stop;
			goto out;
		}
	}
	if (ferror(f))
		rc = SRV_JOURNAL_IO;
out:
	free(r);
	free(buf);
	fclose(f);
	return rc;
}

/* ---------- appending ---------- */

struct srv_journal {
	int fd;
	uint8_t *buf;
	size_t len, cap;
	uint64_t size; /* the file's length after the last sync */
};

int srv_journal_open(const char *path, uint64_t valid_bytes, struct srv_journal **out)
{
	struct srv_journal *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return SRV_JOURNAL_NOMEM;
	j->cap = BUF_START;
	j->buf = malloc(j->cap);
	j->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
	if (j->buf == NULL || j->fd < 0) {
		int rc = j->fd < 0 ? SRV_JOURNAL_IO : SRV_JOURNAL_NOMEM;
		srv_journal_close(j);
		return rc;
	}
	int rc = SRV_JOURNAL_OK;
	if (valid_bytes < SRV_JOURNAL_MAGIC_BYTES) { /* a new journal */
		if (ftruncate(j->fd, 0) != 0 ||
		    pwrite(j->fd, SRV_JOURNAL_MAGIC, SRV_JOURNAL_MAGIC_BYTES, 0) !=
			    SRV_JOURNAL_MAGIC_BYTES)
			rc = SRV_JOURNAL_IO;
		valid_bytes = SRV_JOURNAL_MAGIC_BYTES;
	} else if (ftruncate(j->fd, (off_t)valid_bytes) != 0) { /* cut a torn tail */
		rc = SRV_JOURNAL_IO;
	}
	if (rc == SRV_JOURNAL_OK &&
	    (lseek(j->fd, (off_t)valid_bytes, SEEK_SET) < 0 || fdatasync(j->fd) != 0))
		rc = SRV_JOURNAL_IO;
	j->size = valid_bytes;
	if (rc) {
		srv_journal_close(j);
		return rc;
	}
	*out = j;
	return SRV_JOURNAL_OK;
}

void srv_journal_close(struct srv_journal *j)
{
	if (j == NULL)
		return;
	if (j->fd >= 0)
		close(j->fd);
	free(j->buf);
	free(j);
}

static int reserve(struct srv_journal *j, size_t more)
{
	if (j->len + more <= j->cap)
		return SRV_JOURNAL_OK;
	size_t cap = j->cap;
	while (cap < j->len + more)
		cap *= 2;
	uint8_t *b = realloc(j->buf, cap);
	if (b == NULL)
		return SRV_JOURNAL_NOMEM;
	j->buf = b;
	j->cap = cap;
	return SRV_JOURNAL_OK;
}

int srv_journal_append(struct srv_journal *j, const struct srv_jrec *r)
{
	size_t body = 0;
	size_t code_len =
		r->kind == SRV_J_LEASE ? strnlen(r->lease_code, sizeof(r->lease_code)) : 0;
	if (r->kind == SRV_J_REQUEST)
		body = 2u + r->body_len + SRV_SIGNATURE_BYTES;
	else if (r->kind == SRV_J_LEASE)
		body = code_len < sizeof(r->lease_code) ? 10 + code_len : SRV_JOURNAL_PAYLOAD_MAX;
	else if (r->kind == SRV_J_GENESIS)
		for (uint32_t i = 0,
			      n = (body = 12 + SRV_JOURNAL_SETTINGS_BYTES, r->n_participants);
		     i < n; i++)
			body += 5 + strlen(r->participants[i].name) + 32 + 8;
	size_t len = FIXED_BYTES + body;
	if (len > SRV_JOURNAL_PAYLOAD_MAX || (r->kind == SRV_J_REQUEST && r->body_len == 0))
		return SRV_JOURNAL_BAD;
	if (reserve(j, HEADER_BYTES + len))
		return SRV_JOURNAL_NOMEM;
	uint8_t *h = j->buf + j->len, *p = h + HEADER_BYTES;
	put_u64(p, r->seq);
	put_u64(p + 8, (uint64_t)r->time_ms);
	p[16] = r->kind;
	uint8_t *q = p + FIXED_BYTES;
	if (r->kind == SRV_J_REQUEST) {
		q[0] = (uint8_t)r->body_len;
		q[1] = (uint8_t)(r->body_len >> 8);
		memcpy(q + 2, r->body, r->body_len);
		memcpy(q + 2 + r->body_len, r->signature, SRV_SIGNATURE_BYTES);
	} else if (r->kind == SRV_J_LEASE) {
		put_u64(q, r->lease_id);
		q[8] = r->lease_event;
		q[9] = (uint8_t)code_len;
		memcpy(q + 10, r->lease_code, code_len);
	} else if (r->kind == SRV_J_GENESIS) {
		put_u64(q, r->seq_base);
		put_u32(q + 8, r->n_participants);
		q += 12;
		for (uint32_t i = 0; i < r->n_participants; i++) {
			const struct srv_journal_participant *x = &r->participants[i];
			size_t nl = strlen(x->name);
			put_u32(q, x->id);
			q[4] = (uint8_t)nl;
			memcpy(q + 5, x->name, nl);
			memcpy(q + 5 + nl, x->public_key, 32);
			put_u64(q + 5 + nl + 32, (uint64_t)x->balance);
			q += 5 + nl + 32 + 8;
		}
		memcpy(q, r->settings, SRV_JOURNAL_SETTINGS_BYTES);
	}
	put_u32(h, (uint32_t)len);
	put_u32(h + 4, srv_crc32c(0, p, len));
	j->len += HEADER_BYTES + len;
	return SRV_JOURNAL_OK;
}

int srv_journal_sync(struct srv_journal *j)
{
	size_t off = 0;
	while (off < j->len) {
		ssize_t w = write(j->fd, j->buf + off, j->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return SRV_JOURNAL_IO;
		off += (size_t)w;
	}
	j->size += j->len;
	j->len = 0;
	return fdatasync(j->fd) == 0 ? SRV_JOURNAL_OK : SRV_JOURNAL_IO;
}

uint64_t srv_journal_size(const struct srv_journal *j)
{
	return j->size;
}

/* ---------- directories ---------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int srv_journal_list(const char *dir, const char *prefix, uint64_t **nums, size_t *n)
{
	*nums = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? SRV_JOURNAL_OK : SRV_JOURNAL_IO;
	size_t cap = 0, plen = strlen(prefix);
	int rc = SRV_JOURNAL_OK;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		const char *name = e->d_name;
		if (strncmp(name, prefix, plen) != 0 || strlen(name) != plen + 20 ||
		    strspn(name + plen, "0123456789") != 20)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			uint64_t *p = realloc(*nums, cap * sizeof(**nums));
			if (p == NULL) {
				rc = SRV_JOURNAL_NOMEM;
				break;
			}
			*nums = p;
		}
		(*nums)[(*n)++] = strtoull(name + plen, NULL, 10);
	}
	closedir(d);
	if (rc) {
		free(*nums);
		*nums = NULL;
		*n = 0;
		return rc;
	}
	if (*n > 1)
		qsort(*nums, *n, sizeof(**nums), cmp_u64);
	return SRV_JOURNAL_OK;
}

int srv_journal_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return SRV_JOURNAL_IO;
	int rc = fsync(fd) == 0 ? SRV_JOURNAL_OK : SRV_JOURNAL_IO;
	close(fd);
	return rc;
}
