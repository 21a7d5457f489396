/* Snapshot memory restore: eager, lazy (userfaultfd, served to this test
 * process touching the memory) and cached (shared MAP_PRIVATE mappings)
 * produce the captured memory; working-set recording and prefetch. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_snapshot_common.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>

#define CHUNK (256u << 10)
#define NREG 2

struct fixture {
	char *dir, *path;
	struct lt_snap_region r[NREG];
	int32_t *chunk_of[NREG]; /* per page: chunk id, or -1 for a zero page */
	uint32_t nchunks;
};

static void build_chunk_map(struct fixture *f)
{
	uint64_t rank = 0;
	for (int i = 0; i < NREG; i++) { /* regions are in gpa order */
		size_t pages = f->r[i].size / PG;
		f->chunk_of[i] = malloc(pages * sizeof(int32_t));
		for (size_t p = 0; p < pages; p++) {
			const uint8_t *pg = (const uint8_t *)f->r[i].host + p * PG;
			bool zero = true;
			for (size_t k = 0; k < PG && zero; k++)
				zero = pg[k] == 0;
			f->chunk_of[i][p] = zero ? -1 : (int32_t)(rank++ / (CHUNK / PG));
		}
	}
	f->nchunks = (uint32_t)((rank + CHUNK / PG - 1) / (CHUNK / PG));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->dir = tmpdir_new();
	f->path = lt_path_join(f->dir, "r.snap");
	static const uint64_t gpa[NREG] = {0, 0x40000000ull};
	static const uint64_t size[NREG] = {24 * MiB, 8 * MiB};
	for (int i = 0; i < NREG; i++) {
		uint8_t *m = anon(size[i]);
		if (!m)
			return -1;
		f->r[i] = (struct lt_snap_region){.gpa = gpa[i], .host = m, .size = size[i],
						  .flags = LT_SNAP_REGION_ANON};
	}
	uint8_t *a = f->r[0].host, *b = f->r[1].host;
	fill_mixed(a, 4 * MiB / PG);
	fill_mixed(a + 12 * MiB, 4 * MiB / PG);
	fill_mixed(b + 2 * MiB, 2 * MiB / PG);
	a[23 * MiB + 5] = 0x5a; /* a lone page far from the rest */
	build_chunk_map(f);

	struct lt_snap_writer *w;
	struct lt_snap_writer_opts o = {.cpu_template = TEMPLATE, .chunk_size = CHUNK};
	if (lt_snap_writer_begin(&w, f->path, &o) < 0 ||
	    lt_snap_writer_add_section(w, LT_SNAP_SEC_VCPU, 0, "cpu0", 4) < 0 ||
	    lt_snap_writer_add_memory(w, f->r, NREG) < 0 || lt_snap_writer_commit(w, NULL) < 0) {
		fprintf(stderr, "setup: %s\n", lt_errmsg());
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < NREG; i++) {
		munmap(f->r[i].host, f->r[i].size);
		free(f->chunk_of[i]);
	}
	lt_rm_rf(f->dir);
	free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

static void fresh_targets(struct fixture *f, struct lt_snap_region *t)
{
	for (int i = 0; i < NREG; i++) {
		t[i] = (struct lt_snap_region){.gpa = f->r[i].gpa, .size = f->r[i].size};
		t[i].host = anon(f->r[i].size);
		assert_non_null(t[i].host);
	}
}

static void free_targets(struct lt_snap_region *t)
{
	for (int i = 0; i < NREG; i++)
		munmap(t[i].host, t[i].size);
}

static void assert_same_memory(struct fixture *f, const struct lt_snap_region *t)
{
	for (int i = 0; i < NREG; i++)
		assert_memory_equal(t[i].host, f->r[i].host, f->r[i].size);
}

static struct lt_snap *open_ok(const char *path)
{
	struct lt_snap *s = NULL;
	int rc = lt_snap_open(&s, path, TEMPLATE);
	if (rc < 0)
		fprintf(stderr, "%s\n", lt_errmsg());
	assert_int_equal(rc, 0);
	return s;
}

static void on_error(void *arg, const char *msg)
{
	(void)msg;
	__atomic_store_n((int *)arg, 1, __ATOMIC_SEQ_CST);
}

/* Host address of page p of region r in the targets. */
static volatile uint8_t *page_at(struct lt_snap_region *t, int r, size_t p)
{
	return (volatile uint8_t *)t[r].host + p * PG;
}

/* First page of region r that belongs to chunk c. */
static size_t page_in_chunk(struct fixture *f, int *region, int32_t c)
{
	for (int i = 0; i < NREG; i++)
		for (size_t p = 0; p < f->r[i].size / PG; p++)
			if (f->chunk_of[i][p] == c) {
				*region = i;
				return p;
			}
	fail_msg("no page in chunk %d", c);
	return 0;
}

static void test_strategies_identical(void **state)
{
	struct fixture *f = *state;
	struct lt_snap *s = open_ok(f->path);
	struct lt_snap_mem_info mi;
	lt_snap_mem_info(s, &mi);
	assert_int_equal(mi.chunks, f->nchunks);
	assert_true(f->nchunks > 20);

	struct lt_snap_region eager[NREG], eager1[NREG], lazy[NREG], cached[NREG];
	fresh_targets(f, eager);
	fresh_targets(f, eager1);
	fresh_targets(f, lazy);
	fresh_targets(f, cached);

	assert_int_equal(lt_snap_restore_eager(s, eager, NREG, 0), 0);
	assert_int_equal(lt_snap_restore_eager(s, eager1, NREG, 1), 0);
	assert_same_memory(f, eager);
	assert_same_memory(f, eager1);

	struct lt_snap_lazy *l;
	int err = 0;
	struct lt_snap_lazy_opts lo = {.on_error = on_error, .arg = &err};
	assert_int_equal(lt_snap_lazy_start(&l, s, lazy, NREG, &lo), 0);
	assert_same_memory(f, lazy); /* every page faults in through the handler */
	struct lt_snap_lazy_stats st;
	lt_snap_lazy_stats(l, &st);
	assert_false(st.failed);
	assert_int_equal(err, 0);
	assert_int_equal(st.chunks_faulted, f->nchunks);
	assert_int_equal(st.chunks_prefetched, 0);
	assert_true(st.zero_fills > 0);
	assert_true(st.faults >= f->nchunks + st.zero_fills);
	lt_snap_lazy_stop(l);
	assert_same_memory(f, lazy); /* still there once the handler is gone */

	char *cache_dir = lt_path_join(f->dir, "cache");
	char *cpath = NULL;
	assert_int_equal(lt_snap_cache_prepare(s, cache_dir, 0, &cpath), 0);
	assert_int_equal(lt_snap_cache_map(s, cpath, cached, NREG), 0);
	assert_same_memory(f, cached);

	for (int i = 0; i < NREG; i++) {
		assert_memory_equal(eager[i].host, lazy[i].host, eager[i].size);
		assert_memory_equal(eager[i].host, cached[i].host, eager[i].size);
	}
	free_targets(eager);
	free_targets(eager1);
	free_targets(lazy);
	free_targets(cached);
	free(cpath);
	free(cache_dir);
	lt_snap_close(s);
}

/* Single touches, in a chosen order: each serves its chunk (all of it)
 * or a zero page, and the touch log keeps the order. */
static void test_lazy_touches(void **state)
{
	struct fixture *f = *state;
	struct lt_snap *s = open_ok(f->path);
	struct lt_snap_region t[NREG];
	fresh_targets(f, t);
	struct lt_snap_lazy *l;
	assert_int_equal(lt_snap_lazy_start(&l, s, t, NREG, NULL), 0);

	int32_t order[] = {7, 2, (int32_t)f->nchunks - 1, 11};
	for (size_t k = 0; k < LT_ARRAY_LEN(order); k++) {
		int r;
		size_t p = page_in_chunk(f, &r, order[k]);
		uint8_t first = *page_at(t, r, p); /* the fault */
		assert_int_equal(first, ((uint8_t *)f->r[r].host)[p * PG]);
		struct lt_snap_lazy_stats st;
		lt_snap_lazy_stats(l, &st);
		assert_int_equal(st.chunks_faulted, k + 1);
	}
	/* Every page of chunk 7 is in place now: no further chunk faults. */
	for (int i = 0; i < NREG; i++)
		for (size_t p = 0; p < f->r[i].size / PG; p++)
			if (f->chunk_of[i][p] == 7)
				assert_memory_equal((const void *)page_at(t, i, p),
						    (uint8_t *)f->r[i].host + p * PG, PG);
	struct lt_snap_lazy_stats st;
	lt_snap_lazy_stats(l, &st);
	assert_int_equal(st.chunks_faulted, 4);

	/* A hole: zero page, writable afterwards. */
	volatile uint8_t *hole = page_at(t, 0, 8 * MiB / PG);
	assert_int_equal(*hole, 0);
	hole[10] = 99;
	assert_int_equal(hole[10], 99);
	lt_snap_lazy_stats(l, &st);
	assert_int_equal(st.zero_fills, 1);
	assert_int_equal(hole[PG + 10], 0); /* its neighbour came with the window */
	lt_snap_lazy_stats(l, &st);
	assert_int_equal(st.zero_fills, 1);
	assert_int_equal(st.chunks_faulted, 4);

	uint32_t *ids;
	size_t n;
	assert_int_equal(lt_snap_lazy_touched(l, 0, &ids, &n), 0);
	assert_int_equal(n, 4);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(ids[k], order[k]);
	free(ids);
	assert_int_equal(lt_snap_lazy_touched(l, 60000, &ids, &n), 0);
	assert_int_equal(n, 4);
	free(ids);
	lt_snap_lazy_stop(l);
	free_targets(t);
	lt_snap_close(s);
}

/* Record the touch order as the working set; the next lazy restore
 * prefetches those chunks so touching them costs no fault. */
static void test_working_set_prefetch(void **state)
{
	struct fixture *f = *state;
	char *p2 = lt_path_join(f->dir, "ws.snap");
	uint8_t *img = NULL;
	size_t len;
	assert_int_equal(read_whole(f->path, &img, &len), 0);
	assert_int_equal(write_whole(p2, img, len), 0);
	free(img);

	/* Recording run: no prefetch, touch three chunks. */
	struct lt_snap *s = open_ok(p2);
	struct lt_snap_region t[NREG];
	fresh_targets(f, t);
	struct lt_snap_lazy *l;
	struct lt_snap_lazy_opts rec = {.no_prefetch = true};
	assert_int_equal(lt_snap_lazy_start(&l, s, t, NREG, &rec), 0);
	int32_t want[] = {12, 3, 20};
	for (size_t k = 0; k < 3; k++) {
		int r;
		size_t p = page_in_chunk(f, &r, want[k]);
		(void)*page_at(t, r, p);
	}
	uint32_t *ids;
	size_t n;
	assert_int_equal(lt_snap_lazy_touched(l, 0, &ids, &n), 0);
	lt_snap_lazy_stop(l);
	free_targets(t);
	lt_snap_close(s);
	assert_int_equal(n, 3);
	assert_int_equal(lt_snap_record_working_set(p2, TEMPLATE, ids, n), 0);
	free(ids);

	s = open_ok(p2);
	const uint32_t *ws = lt_snap_working_set(s, &n);
	assert_int_equal(n, 3);
	for (size_t k = 0; k < 3; k++)
		assert_int_equal(ws[k], want[k]);

	/* Prefetching run. */
	fresh_targets(f, t);
	assert_int_equal(lt_snap_lazy_start(&l, s, t, NREG, NULL), 0);
	lt_snap_lazy_wait_prefetch(l);
	struct lt_snap_lazy_stats st;
	lt_snap_lazy_stats(l, &st);
	assert_int_equal(st.chunks_prefetched, 3);
	assert_int_equal(st.faults, 0);
	for (size_t k = 0; k < 3; k++) {
		int r;
		size_t p = page_in_chunk(f, &r, want[k]);
		assert_memory_equal((const void *)page_at(t, r, p), (uint8_t *)f->r[r].host + p * PG,
				    PG);
	}
	lt_snap_lazy_stats(l, &st);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.chunks_faulted, 0);
	/* Everything else still arrives on demand. */
	assert_same_memory(f, t);
	lt_snap_lazy_stats(l, &st);
	assert_int_equal(st.chunks_faulted, f->nchunks - 3);
	lt_snap_lazy_stop(l);
	free_targets(t);
	lt_snap_close(s);
	free(p2);
}

/* The /dev/userfaultfd path (for hosts where the syscall is restricted). */
static void test_lazy_dev_userfaultfd(void **state)
{
	struct fixture *f = *state;
	if (access("/dev/userfaultfd", R_OK | W_OK) != 0) {
		fprintf(stderr, "note: /dev/userfaultfd not usable here, device path not tested\n");
		skip();
	}
	struct lt_snap *s = open_ok(f->path);
	struct lt_snap_region t[NREG];
	fresh_targets(f, t);
	struct lt_snap_lazy *l;
	setenv("LTTLE_UFFD_DEV", "1", 1);
	int rc = lt_snap_lazy_start(&l, s, t, NREG, NULL);
	unsetenv("LTTLE_UFFD_DEV");
	if (rc < 0)
		fprintf(stderr, "%s\n", lt_errmsg());
	assert_int_equal(rc, 0);
	assert_same_memory(f, t);
	struct lt_snap_lazy_stats st;
	lt_snap_lazy_stats(l, &st);
	assert_int_equal(st.chunks_faulted, f->nchunks);
	lt_snap_lazy_stop(l);
	free_targets(t);
	lt_snap_close(s);
}

struct toucher {
	struct fixture *f;
	struct lt_snap_region *t;
	uint64_t seed;
	int bad;
};

static void *touch_random(void *arg)
{
	struct toucher *x = arg;
	uint64_t r = x->seed;
	for (int k = 0; k < 3000; k++) {
		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		int reg = (int)(r % NREG);
		size_t p = (r >> 8) % (x->f->r[reg].size / PG);
		size_t off = (r >> 32) % PG;
		if (page_at(x->t, reg, p)[off] != ((uint8_t *)x->f->r[reg].host)[p * PG + off])
			x->bad++;
	}
	return NULL;
}

/* Four threads fault at random, served by several handlers, with or
 * without the prefetcher filling everything meanwhile. */
static void lazy_concurrent(struct fixture *f, bool fill_all, int handlers)
{
	struct lt_snap *s = open_ok(f->path);
	struct lt_snap_region t[NREG];
	fresh_targets(f, t);
	struct lt_snap_lazy *l;
	struct lt_snap_lazy_opts o = {.fill_all = fill_all, .handlers = handlers};
	assert_int_equal(lt_snap_lazy_start(&l, s, t, NREG, &o), 0);
	pthread_t th[4];
	struct toucher tc[4];
	for (int i = 0; i < 4; i++) {
		tc[i] = (struct toucher){f, t, 0x1234567ull * (uint64_t)(i + 1), 0};
		assert_int_equal(pthread_create(&th[i], NULL, touch_random, &tc[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(tc[i].bad, 0);
	}
	lt_snap_lazy_wait_prefetch(l);
	struct lt_snap_lazy_stats st;
	lt_snap_lazy_stats(l, &st);
	assert_false(st.failed);
	if (fill_all)
		assert_int_equal(st.chunks_prefetched + st.chunks_faulted, f->nchunks);
	else
		assert_int_equal(st.chunks_prefetched, 0);
	assert_same_memory(f, t);
	lt_snap_lazy_stats(l, &st);
	assert_int_equal(st.chunks_prefetched + st.chunks_faulted, f->nchunks);
	lt_snap_lazy_stop(l);
	free_targets(t);
	lt_snap_close(s);
}

static void test_lazy_concurrent(void **state)
{
	lazy_concurrent(*state, true, 3);
	lazy_concurrent(*state, false, 2);
	lazy_concurrent(*state, false, 1);
}

struct reader_arg {
	volatile uint8_t *p;
	uint8_t v;
	int done;
};

static void *read_one(void *arg)
{
	struct reader_arg *a = arg;
	a->v = *a->p; /* blocks until served (or the range is unregistered) */
	__atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* A chunk that fails verification is reported, never served. */
static void test_lazy_corrupt_chunk(void **state)
{
	struct fixture *f = *state;
	uint8_t *img = NULL;
	size_t len;
	assert_int_equal(read_whole(f->path, &img, &len), 0);
	int d = find_sec(img, LT_SNAP_SEC_MEM_DATA);
	img[rd64(tab(img, d) + 16) + 50] ^= 0x10; /* inside chunk 0 */
	char *p2 = lt_path_join(f->dir, "bad.snap");
	assert_int_equal(write_whole(p2, img, len), 0);
	free(img);

	struct lt_snap *s = open_ok(p2);
	struct lt_snap_region t[NREG];
	fresh_targets(f, t);
	struct lt_snap_lazy *l;
	int err = 0;
	struct lt_snap_lazy_opts o = {.on_error = on_error, .arg = &err};
	assert_int_equal(lt_snap_lazy_start(&l, s, t, NREG, &o), 0);
	int r;
	size_t p = page_in_chunk(f, &r, 0);
	struct reader_arg ra = {.p = page_at(t, r, p)};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, read_one, &ra), 0);
	for (int i = 0; i < 500 && !__atomic_load_n(&err, __ATOMIC_SEQ_CST); i++)
		poll(NULL, 0, 10);
	assert_int_equal(err, 1);
	assert_int_equal(__atomic_load_n(&ra.done, __ATOMIC_SEQ_CST), 0); /* not served */
	struct lt_snap_lazy_stats st;
	lt_snap_lazy_stats(l, &st);
	assert_true(st.failed);
	lt_snap_lazy_stop(l); /* unregisters: the reader sees a plain zero page */
	pthread_join(th, NULL);
	assert_int_equal(ra.v, 0);
	free_targets(t);
	lt_snap_close(s);
	free(p2);
}

static void test_cached_shared(void **state)
{
	struct fixture *f = *state;
	struct lt_snap *s = open_ok(f->path);
	char *cache_dir = lt_path_join(f->dir, "cache2");
	char *c1 = NULL, *c2 = NULL;
	assert_int_equal(lt_snap_cache_prepare(s, cache_dir, 2, &c1), 0);
	struct stat st1, st2;
	assert_int_equal(stat(c1, &st1), 0);
	assert_int_equal((uint64_t)st1.st_size, 32 * MiB);
	/* Sparse: only the ~10 MiB of stored pages take blocks. */
	assert_true((uint64_t)st1.st_blocks * 512 < 16 * MiB);
	assert_int_equal(lt_snap_cache_prepare(s, cache_dir, 2, &c2), 0);
	assert_string_equal(c1, c2);
	assert_int_equal(stat(c2, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino); /* reused, not rebuilt */

	struct lt_snap_region m[3][NREG];
	for (int k = 0; k < 3; k++) {
		fresh_targets(f, m[k]);
		assert_int_equal(lt_snap_cache_map(s, c1, m[k], NREG), 0);
	}
	for (int k = 0; k < 3; k++)
		assert_same_memory(f, m[k]);
	/* Writes stay private to their mapping. */
	uint8_t *a = m[0][0].host;
	uint8_t before = ((uint8_t *)m[1][0].host)[100];
	a[100] = (uint8_t)~before;
	memset(a + 13 * MiB, 0xee, PG);
	assert_int_equal(((uint8_t *)m[1][0].host)[100], before);
	assert_int_equal(((uint8_t *)m[2][0].host)[100], before);
	assert_memory_equal(m[1][0].host, f->r[0].host, f->r[0].size);
	int fd = open(c1, O_RDONLY);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, 100), 1);
	assert_int_equal(b, before);
	close(fd);

	/* A target that straddles two snapshot regions is refused. */
	struct lt_snap_region wide = {.gpa = 0, .host = anon(64 * MiB), .size = 64 * MiB};
	assert_int_equal(lt_snap_cache_map(s, c1, &wide, 1), -1);
	assert_non_null(strstr(lt_errmsg(), "not inside one snapshot region"));
	munmap(wide.host, wide.size);
	for (int k = 0; k < 3; k++)
		free_targets(m[k]);
	lt_snap_close(s);

	/* A rewritten snapshot is a new file: it gets its own cache entry. */
	char *p2 = lt_path_join(f->dir, "copy.snap");
	uint8_t *img = NULL;
	size_t len;
	assert_int_equal(read_whole(f->path, &img, &len), 0);
	assert_int_equal(write_whole(p2, img, len), 0);
	free(img);
	s = open_ok(p2);
	char *c3 = NULL;
	assert_int_equal(lt_snap_cache_prepare(s, cache_dir, 0, &c3), 0);
	assert_string_not_equal(c1, c3);
	lt_snap_close(s);
	free(c1);
	free(c2);
	free(c3);
	free(p2);
	free(cache_dir);
}

/* Several processes restore one snapshot at once from a cold cache: one
 * builds the cache file, all map it and see the captured memory, and each
 * one's writes stay its own. */
static void test_cached_multiprocess(void **state)
{
	struct fixture *f = *state;
	char *cache_dir = lt_path_join(f->dir, "cache-mp");
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pids[4];
	for (int k = 0; k < 4; k++) {
		pids[k] = fork();
		assert_true(pids[k] >= 0);
		if (pids[k] > 0)
			continue;
		close(fds[0]);
		struct lt_snap *s;
		char *c = NULL;
		struct lt_snap_region t[NREG];
		struct stat st;
		if (lt_snap_open(&s, f->path, TEMPLATE) < 0 ||
		    lt_snap_cache_prepare(s, cache_dir, 1, &c) < 0 || stat(c, &st) < 0)
			_exit(1);
		for (int i = 0; i < NREG; i++) {
			t[i] = (struct lt_snap_region){.gpa = f->r[i].gpa, .size = f->r[i].size,
						       .host = anon(f->r[i].size)};
			if (!t[i].host)
				_exit(2);
		}
		if (lt_snap_cache_map(s, c, t, NREG) < 0)
			_exit(3);
		((uint8_t *)t[0].host)[k * PG] ^= 0xff; /* private write */
		((uint8_t *)t[0].host)[k * PG] ^= 0xff;
		((uint8_t *)t[1].host)[3 * MiB + (size_t)k] = (uint8_t)(k + 1);
		for (int i = 0; i < NREG; i++) {
			uint8_t *want = f->r[i].host;
			if (i == 1)
				want[3 * MiB + (size_t)k] = (uint8_t)(k + 1); /* the fork's copy */
			if (memcmp(t[i].host, want, f->r[i].size) != 0)
				_exit(4);
		}
		uint64_t ino = st.st_ino;
		if (write(fds[1], &ino, sizeof(ino)) != sizeof(ino))
			_exit(5);
		_exit(0);
	}
	close(fds[1]);
	uint64_t inos[4];
	for (int k = 0; k < 4; k++) {
		int status;
		assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(read(fds[0], inos, sizeof(inos)), sizeof(inos));
	close(fds[0]);
	for (int k = 1; k < 4; k++)
		assert_int_equal(inos[k], inos[0]); /* built once, by whoever came first */
	free(cache_dir);
}

int main(void)
{
	if (access("/dev/userfaultfd", F_OK) != 0 && geteuid() != 0)
		fprintf(stderr, "note: userfaultfd may be unavailable\n");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strategies_identical),
		cmocka_unit_test(test_lazy_touches),
		cmocka_unit_test(test_working_set_prefetch),
		cmocka_unit_test(test_lazy_concurrent),
		cmocka_unit_test(test_lazy_dev_userfaultfd),
		cmocka_unit_test(test_lazy_corrupt_chunk),
		cmocka_unit_test(test_cached_shared),
		cmocka_unit_test(test_cached_multiprocess),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
