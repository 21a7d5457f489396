/* Pieces shared by the snapshot writer, reader and restore paths. */
#include "snap_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zstd.h>

/* Header-only build of xxHash: no runtime library to link. */
#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t snap_sum(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

void snap_name128(const struct iovec *parts, int n, char hex[SNAP_NAME128_HEX])
{
	XXH3_state_t st;
	XXH3_128bits_reset(&st);
	for (int i = 0; i < n; i++)
		XXH3_128bits_update(&st, parts[i].iov_base, parts[i].iov_len);
	XXH128_hash_t h = XXH3_128bits_digest(&st);
	snprintf(hex, SNAP_NAME128_HEX, "%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
}

int snap_default_threads(int threads)
{
	if (threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (int)n : 1;
	}
	return threads > SNAP_MAX_THREADS ? SNAP_MAX_THREADS : threads;
}

void snap_err_init(struct snap_err *e)
{
	pthread_mutex_init(&e->lock, NULL);
	e->failed = 0;
	e->msg[0] = '\0';
}

void snap_err_set(struct snap_err *e)
{
	pthread_mutex_lock(&e->lock);
	if (!snap_err_failed(e)) {
		snprintf(e->msg, sizeof(e->msg), "%s", lt_errmsg());
		__atomic_store_n(&e->failed, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&e->lock);
}

int snap_err_raise(struct snap_err *e)
{
	return lt_fail("%s", e->msg);
}

static int pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return lt_fail_errno("read failed");
		if (r == 0)
			return lt_fail("unexpected end of file");
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int snap_decode_chunk(struct lt_snap *s, uint32_t c, uint8_t *cbuf, uint8_t *out,
		      struct ZSTD_DCtx_s *dctx)
{
	if (c >= s->nchunks)
		return lt_fail("%s: chunk %u out of range (%zu chunks)", s->name, c, s->nchunks);
	const struct snap_chunk *ch = &s->chunks[c];
	if (pread_full(s->fd, cbuf, ch->clen, s->data_off + ch->offset) < 0)
		return lt_fail_ctx("%s: chunk %u", s->name, c);
	if (snap_sum(cbuf, ch->clen) != ch->sum)
		return lt_fail("%s: chunk %u checksum mismatch", s->name, c);
	/* Exactly one frame, declaring exactly the recorded size. */
	size_t fsz = ZSTD_findFrameCompressedSize(cbuf, ch->clen);
	if (ZSTD_isError(fsz) || fsz != ch->clen)
		return lt_fail("%s: chunk %u is not a single zstd frame", s->name, c);
	unsigned long long csz = ZSTD_getFrameContentSize(cbuf, ch->clen);
	if (csz != ch->rlen)
		return lt_fail("%s: chunk %u declares %llu bytes, index says %u", s->name, c,
			       csz, ch->rlen);
	size_t r = ZSTD_decompressDCtx((ZSTD_DCtx *)dctx, out, ch->rlen, cbuf, ch->clen);
	if (ZSTD_isError(r))
		return lt_fail("%s: chunk %u: zstd: %s", s->name, c, ZSTD_getErrorName(r));
	if (r != ch->rlen)
		return lt_fail("%s: chunk %u decompressed to %zu bytes, index says %u", s->name, c,
			       r, ch->rlen);
	return 0;
}

static int cmp_region_gpa(const void *a, const void *b)
{
	const struct lt_snap_region *x = *(struct lt_snap_region *const *)a;
	const struct lt_snap_region *y = *(struct lt_snap_region *const *)b;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

int snap_check_targets(const struct lt_snap_region *t, size_t n, const char *what)
{
	if (n > SNAP_MAX_REGIONS)
		return lt_fail("%s: too many memory regions (%zu)", what, n);
	const struct lt_snap_region **v = lt_calloc(n, sizeof(*v));
	if (!v)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		v[i] = &t[i];
		if (t[i].gpa % LT_SNAP_PAGE_SIZE || t[i].size % LT_SNAP_PAGE_SIZE ||
		    (uintptr_t)t[i].host % LT_SNAP_PAGE_SIZE)
			rc = lt_fail("%s: region %zu is not page aligned", what, i);
		else if (t[i].size == 0 || !t[i].host)
			rc = lt_fail("%s: region %zu is empty", what, i);
		else if (t[i].gpa + t[i].size < t[i].gpa)
			rc = lt_fail("%s: region %zu wraps the address space", what, i);
	}
	if (rc == 0) {
		qsort(v, n, sizeof(*v), cmp_region_gpa);
		for (size_t i = 1; i < n && rc == 0; i++)
			if (v[i - 1]->gpa + v[i - 1]->size > v[i]->gpa)
				rc = lt_fail("%s: regions at gpa 0x%llx and 0x%llx overlap", what,
					     (unsigned long long)v[i - 1]->gpa,
					     (unsigned long long)v[i]->gpa);
	}
	free(v);
	return rc;
}

int snap_resolve_targets(struct lt_snap *s, const struct lt_snap_region *t, size_t n,
			 uint8_t ***hosts)
{
	if (snap_check_targets(t, n, "restore target") < 0)
		return -1;
	/* Targets sorted by address; entries are sorted too: one merged walk. */
	const struct lt_snap_region **v = lt_calloc(n ? n : 1, sizeof(*v));
	uint8_t **h = lt_calloc(s->nentries ? s->nentries : 1, sizeof(*h));
	if (!v || !h) {
		free(v);
		free(h);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = &t[i];
	qsort(v, n, sizeof(*v), cmp_region_gpa);
	size_t j = 0;
	for (size_t i = 0; i < s->nentries; i++) {
		const struct snap_entry *e = &s->entries[i];
		uint64_t gpa = e->gpage * LT_SNAP_PAGE_SIZE;
		uint64_t len = (uint64_t)e->count * LT_SNAP_PAGE_SIZE;
		while (j < n && v[j]->gpa + v[j]->size <= gpa)
			j++;
		if (j == n || gpa < v[j]->gpa || len > v[j]->size - (gpa - v[j]->gpa)) {
			free(v);
			free(h);
			return lt_fail("%s: stored pages at gpa 0x%llx (+%llu bytes) lie outside the "
				       "restore target regions",
				       s->name, (unsigned long long)gpa, (unsigned long long)len);
		}
		h[i] = (uint8_t *)v[j]->host + (gpa - v[j]->gpa);
	}
	free(v);
	*hosts = h;
	return 0;
}
