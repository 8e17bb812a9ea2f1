/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* ---------- writing ---------- */

static void grow_put(struct srv_snap_w *w, const void *data, size_t len)
{
	if (w->failed)
		return;
	if (len > w->cap - w->len) {
		size_t cap = w->cap ? w->cap : 4096;
		while (len > cap - w->len) {
			if (cap > SIZE_MAX / 2) {
				w->failed = true;
				return;
			}
			cap *= 2;
		}
		uint8_t *p = realloc(w->p, cap);
		if (p == NULL) {
			w->failed = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, data, len);
	w->len += len;
}

/* The common case, room in the buffer, without a call. */
static inline void put(struct srv_snap_w *w, const void *data, size_t len)
{
	if (__builtin_expect(len <= w->cap - w->len && !w->failed, 1)) {
		memcpy(w->p + w->len, data, len);
		w->len += len;
	} else {
		grow_put(w, data, len);
	}
}

void srv_snap_put(struct srv_snap_w *w, const void *data, size_t len)
{
	put(w, data, len);
}

void srv_snap_u8(struct srv_snap_w *w, uint8_t v)
{
	put(w, &v, 1);
}

void srv_snap_u32(struct srv_snap_w *w, uint32_t v)
{
	uint8_t b[4];
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(w, b, 4);
}

void srv_snap_u64(struct srv_snap_w *w, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(w, b, 8);
}

void srv_snap_i64(struct srv_snap_w *w, int64_t v)
{
	srv_snap_u64(w, (uint64_t)v);
}

void srv_snap_w_free(struct srv_snap_w *w)
{
	free(w->p);
	*w = (struct srv_snap_w){0};
}

/* ---------- reading ---------- */

void srv_snap_fail(struct srv_snap_r *r, const char *why)
{
	if (r->error == NULL)
		r->error = why;
}

static inline void get(struct srv_snap_r *r, void *out, size_t len)
{
	if (__builtin_expect(r->error == NULL && len <= r->len - r->off, 1)) {
		memcpy(out, r->p + r->off, len);
		r->off += len;
		return;
	}
	srv_snap_fail(r, "the snapshot ends inside its state");
	memset(out, 0, len);
}

void srv_snap_get(struct srv_snap_r *r, void *out, size_t len)
{
	get(r, out, len);
}

uint8_t srv_snap_get_u8(struct srv_snap_r *r)
{
	uint8_t v;
	get(r, &v, 1);
	return v;
}

uint32_t srv_snap_get_u32(struct srv_snap_r *r)
{
	uint8_t b[4];
	get(r, b, 4);
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

uint64_t srv_snap_get_u64(struct srv_snap_r *r)
{
	uint8_t b[8];
	get(r, b, 8);
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

int64_t srv_snap_get_i64(struct srv_snap_r *r)
{
	return (int64_t)srv_snap_get_u64(r);
}

uint32_t srv_snap_get_count(struct srv_snap_r *r, size_t item_bytes, uint32_t max)
{
	uint32_t n = srv_snap_get_u32(r);
	if (r->error)
		return 0;
	if (n > max || (item_bytes > 0 && n > (r->len - r->off) / item_bytes)) {
		srv_snap_fail(r, "a count in the snapshot exceeds its limit or the file");
		return 0;
	}
	return n;
}

/* ---------- files ---------- */

void srv_snapshot_begin(struct srv_snap_w *w, const struct srv_snapshot_info *info)
{
	w->len = 0;
	srv_snap_put(w, SRV_SNAPSHOT_MAGIC, SRV_SNAPSHOT_MAGIC_BYTES);
	srv_snap_u64(w, info->seq);
	srv_snap_i64(w, info->time_ms);
	srv_snap_put(w, info->settings, sizeof(info->settings));
	srv_snap_u64(w, 0); /* the body's length, set by finish */
}

void srv_snapshot_finish(struct srv_snap_w *w)
{
	if (w->failed || w->len < SRV_SNAPSHOT_HEADER_BYTES)
		return;
	uint64_t body = w->len - SRV_SNAPSHOT_HEADER_BYTES;
	for (int i = 0; i < 8; i++)
		w->p[SRV_SNAPSHOT_HEADER_BYTES - 8 + i] = (uint8_t)(body >> (8 * i));
	uint8_t hash[SRV_SNAPSHOT_HASH_BYTES];
	crypto_generichash(hash, sizeof(hash), w->p, w->len, NULL, 0);
	srv_snap_put(w, hash, sizeof(hash));
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int srv_snapshot_write(const char *dir, uint64_t seq, const struct srv_snap_w *w)
{
	if (w->failed) {
		errno = ENOMEM;
		return -1;
	}
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof(tmp), "%s/snapshot-%020llu.tmp", dir, (unsigned long long)seq);
	snprintf(path, sizeof(path), "%s/snapshot-%020llu", dir, (unsigned long long)seq);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (write_all(fd, w->p, w->len) != 0 || fsync(fd) != 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	int rc = fsync(dfd);
	close(dfd);
	return rc;
}

int srv_snapshot_read(const char *path, uint8_t **data, struct srv_snapshot_info *info,
		      struct srv_snap_r *body, const char **error)
{
	*data = NULL;
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		*error = "cannot open the snapshot";
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
		fclose(f);
		*error = "cannot read the snapshot";
		return -1;
	}
	size_t len = (size_t)st.st_size;
	if (len < SRV_SNAPSHOT_HEADER_BYTES + SRV_SNAPSHOT_HASH_BYTES) {
		fclose(f);
		*error = "the snapshot is shorter than its header";
		return -1;
	}
	uint8_t *p = malloc(len);
	if (p == NULL || fread(p, 1, len, f) != len) {
		fclose(f);
		free(p);
		*error = p ? "cannot read the snapshot" : "out of memory";
		return -1;
	}
	fclose(f);
	struct srv_snap_r r = {.p = p, .len = len};
	char magic[SRV_SNAPSHOT_MAGIC_BYTES];
	srv_snap_get(&r, magic, sizeof(magic));
	info->seq = srv_snap_get_u64(&r);
	info->time_ms = srv_snap_get_i64(&r);
	srv_snap_get(&r, info->settings, sizeof(info->settings));
	uint64_t body_len = srv_snap_get_u64(&r);
	uint8_t hash[SRV_SNAPSHOT_HASH_BYTES];
	info->format = memcmp(magic, SRV_SNAPSHOT_MAGIC, sizeof(magic)) == 0	 ? 2
		       : memcmp(magic, SRV_SNAPSHOT_MAGIC_1, sizeof(magic)) == 0 ? 1
										 : 0;
	if (info->format == 0)
		*error = "not a gridex snapshot, or of a format this gridexd does not read "
			 "(magic)";
	else if (body_len != len - SRV_SNAPSHOT_HEADER_BYTES - SRV_SNAPSHOT_HASH_BYTES)
		*error = "the snapshot's length does not match its header (torn write?)";
	else if (crypto_generichash(hash, sizeof(hash), p, len - sizeof(hash), NULL, 0) != 0 ||
		 sodium_memcmp(hash, p + len - sizeof(hash), sizeof(hash)) != 0)
		*error = "the snapshot's hash does not match (corrupt)";
	else {
		*data = p;
		*body = (struct srv_snap_r){.p = p + SRV_SNAPSHOT_HEADER_BYTES, .len = body_len};
		return 0;
	}
	free(p);
	return -1;
}
