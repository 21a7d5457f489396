/* Eager and cached memory restore. */
#include "snap_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* Where each entry's pages go: a host pointer (eager) or a cache file
 * offset (cached), and how to put them there. */
struct scatter_job {
	struct lt_snap *s;
	uint8_t **hosts;    /* eager */
	uint64_t *offsets;  /* cached */
	int fd;             /* cached */
	size_t next;
	struct snap_err err;
};

static int pwrite_full(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return lt_fail_errno("cannot write the memory cache");
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int scatter_chunk(struct scatter_job *j, uint32_t c, uint8_t *cbuf, uint8_t *out,
			 ZSTD_DCtx *d)
{
	struct lt_snap *s = j->s;
	uint32_t k0 = s->chunk_first[c], k1 = s->chunk_first[c + 1];
	/* A chunk that is one guest range decompresses straight into place. */
	if (j->hosts && k1 - k0 == 1)
		return snap_decode_chunk(s, c, cbuf, j->hosts[s->by_chunk[k0]], d);
	if (snap_decode_chunk(s, c, cbuf, out, d) < 0)
		return -1;
	for (uint32_t k = k0; k < k1; k++) {
		uint32_t e = s->by_chunk[k];
		const uint8_t *src = out + (size_t)s->entries[e].poff * LT_SNAP_PAGE_SIZE;
		size_t n = (size_t)s->entries[e].count * LT_SNAP_PAGE_SIZE;
		if (j->hosts)
			memcpy(j->hosts[e], src, n);
		else if (pwrite_full(j->fd, src, n, j->offsets[e]) < 0)
			return -1;
	}
	return 0;
}

static void *scatter_worker(void *arg)
{
	struct scatter_job *j = arg;
	struct lt_snap *s = j->s;
	ZSTD_DCtx *d = ZSTD_createDCtx();
	uint8_t *cbuf = lt_malloc(s->max_clen);
	uint8_t *out = lt_malloc(s->chunk_size);
	if (!d || !cbuf || !out) {
		lt_fail("out of memory restoring %s", s->name);
		snap_err_set(&j->err);
	}
	while (!snap_err_failed(&j->err)) {
		size_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (c >= s->nchunks)
			break;
		if (scatter_chunk(j, (uint32_t)c, cbuf, out, d) < 0) {
			snap_err_set(&j->err);
			break;
		}
	}
	ZSTD_freeDCtx(d);
	free(cbuf);
	free(out);
	return NULL;
}

static int run_scatter(struct scatter_job *j, int threads)
{
	threads = snap_default_threads(threads);
	if ((size_t)threads > j->s->nchunks)
		threads = j->s->nchunks ? (int)j->s->nchunks : 1;
	snap_err_init(&j->err);
	pthread_t tid[SNAP_MAX_THREADS];
	int started = 0;
	for (int i = 1; i < threads; i++)
		if (pthread_create(&tid[started], NULL, scatter_worker, j) == 0)
			started++;
	scatter_worker(j);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return snap_err_failed(&j->err) ? snap_err_raise(&j->err) : 0;
}

int lt_snap_restore_eager(struct lt_snap *s, const struct lt_snap_region *targets, size_t n,
			  int threads)
{
	struct scatter_job j = {.s = s, .fd = -1};
	if (snap_resolve_targets(s, targets, n, &j.hosts) < 0)
		return -1;
	int rc = run_scatter(&j, threads);
	free(j.hosts);
	return rc < 0 ? lt_fail_ctx("eager restore") : 0;
}

/* ---- cached ------------------------------------------------------------ */

/* Offset of gpa in the cache file (regions back to back), or -1. */
static int64_t cache_offset(const struct lt_snap *s, uint64_t gpa, uint64_t len)
{
	uint64_t base = 0;
	for (size_t i = 0; i < s->nregions; i++) {
		const struct lt_snap_region *r = &s->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return (int64_t)(base + (gpa - r->gpa));
		base += r->size;
	}
	return -1;
}

/* XXH3-128, not SHA-256: the name only has to tell snapshots apart, and
 * libcrypto's first use costs ~0.6 ms of every fresh-process restore. The
 * memory index names every chunk's checksum; the file identity keeps a
 * different file with a colliding index from reusing it. */
static void cache_name(const struct lt_snap *s, char hex[SNAP_NAME128_HEX])
{
	static const char tag[] = "lttle-snapshot-cache-v2";
	uint64_t id[4] = {(uint64_t)s->dev, (uint64_t)s->ino, s->file_size, (uint64_t)s->mtime_ns};
	struct iovec parts[] = {
		{(void *)tag, sizeof(tag) - 1},
		{(void *)s->index_raw, s->index_len},
		{id, sizeof(id)},
	};
	snap_name128(parts, 3, hex);
}

static int cache_build(struct lt_snap *s, const char *path, int threads)
{
	struct lt_atomic a;
	if (lt_atomic_open(&a, path, 0644) < 0)
		return -1;
	struct scatter_job j = {.s = s, .fd = a.fd};
	int rc = 0;
	if (ftruncate(a.fd, (off_t)s->mem_size) < 0)
		rc = lt_fail_errno("cannot size %s", a.tmp_path);
	if (rc == 0 && !(j.offsets = lt_calloc(s->nentries ? s->nentries : 1, sizeof(uint64_t))))
		rc = -1;
	for (size_t i = 0; rc == 0 && i < s->nentries; i++)
		j.offsets[i] = (uint64_t)cache_offset(s, s->entries[i].gpage * LT_SNAP_PAGE_SIZE,
						      (uint64_t)s->entries[i].count * LT_SNAP_PAGE_SIZE);
	if (rc == 0)
		rc = run_scatter(&j, threads);
	free(j.offsets);
	if (rc < 0) {
		lt_atomic_abort(&a);
		return -1;
	}
	return lt_atomic_commit(&a);
}

static bool cache_ready(const struct lt_snap *s, const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == s->mem_size;
}

int lt_snap_cache_prepare(struct lt_snap *s, const char *cache_dir, int threads, char **path)
{
	*path = NULL;
	char hex[SNAP_NAME128_HEX];
	cache_name(s, hex);
	char *p = lt_sprintf("%s/mem-%s.raw", cache_dir, hex);
	char *lock = lt_sprintf("%s/mem-%s.lock", cache_dir, hex);
	if (!p || !lock) {
		free(p);
		free(lock);
		return -1;
	}
	if (cache_ready(s, p)) {
		free(lock);
		*path = p;
		return 0;
	}
	/* A burst of restores on a cold cache: one builds, the others wait. */
	int rc = lt_mkdir_p(cache_dir, 0755);
	int lfd = rc == 0 ? open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
	if (rc == 0 && lfd < 0)
		rc = lt_fail_errno("cannot open %s", lock);
	while (rc == 0 && flock(lfd, LOCK_EX) < 0)
		if (errno != EINTR)
			rc = lt_fail_errno("cannot lock %s", lock);
	if (rc == 0 && !cache_ready(s, p))
		rc = cache_build(s, p, threads);
	if (lfd >= 0)
		close(lfd); /* releases the lock */
	free(lock);
	if (rc < 0) {
		free(p);
		return lt_fail_ctx("%s: memory cache", s->name);
	}
	*path = p;
	return 0;
}

int lt_snap_cache_map(struct lt_snap *s, const char *cache_path,
		      const struct lt_snap_region *targets, size_t n)
{
	if (snap_check_targets(targets, n, "cache restore target") < 0)
		return -1;
	int fd = open(cache_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("cannot open memory cache %s", cache_path);
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = lt_fail_errno("cannot stat %s", cache_path);
	else if ((uint64_t)st.st_size != s->mem_size)
		rc = lt_fail("memory cache %s is %lld bytes, snapshot memory is %llu", cache_path,
			     (long long)st.st_size, (unsigned long long)s->mem_size);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int64_t off = cache_offset(s, targets[i].gpa, targets[i].size);
		if (off < 0) {
			rc = lt_fail("%s: target at gpa 0x%llx is not inside one snapshot region",
				     s->name, (unsigned long long)targets[i].gpa);
			break;
		}
		void *m = mmap(targets[i].host, targets[i].size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_FIXED, fd, (off_t)off);
		if (m == MAP_FAILED)
			rc = lt_fail_errno("cannot map %s over the guest memory", cache_path);
	}
	close(fd);
	return rc;
}
