/* Snapshot format: round trip, sparseness, atomic writes and every reject
 * path of the reader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_snapshot_common.h"

#include <dirent.h>
#include <stdio.h>

#define CHUNK (256u << 10)

struct fixture {
	char *dir;
	char *path;
	struct lt_snap_region r[3];
	uint8_t vcpu[3][700];
	uint8_t *img;
	size_t len;
};

static const char *config_json = "{\"vcpus\": 3, \"memory\": [0, 268435456], \"cmdline\": \"x\"}";

static void fixture_memory(struct fixture *f)
{
	static const uint64_t gpa[3] = {0, 0x10000000ull, 0x100000000ull};
	static const uint64_t size[3] = {6 * MiB, 3 * MiB, 1 * MiB};
	for (int i = 0; i < 3; i++) {
		uint8_t *m = anon(size[i]);
		assert_non_null(m);
		fill_mixed(m, size[i] / PG);
		f->r[i] = (struct lt_snap_region){.gpa = gpa[i], .host = m, .size = size[i]};
	}
}

static int write_snapshot(const char *path, const struct lt_snap_region *r, size_t n,
			  uint8_t vcpu[3][700], struct lt_snap_writer_stats *st)
{
	struct lt_snap_writer *w;
	struct lt_snap_writer_opts o = {.cpu_template = TEMPLATE, .chunk_size = CHUNK};
	if (lt_snap_writer_begin(&w, path, &o) < 0)
		return -1;
	int rc = lt_snap_writer_add_section(w, LT_SNAP_SEC_CONFIG, 0, config_json,
					    strlen(config_json));
	/* vCPUs added out of order: the reader finds them by index. */
	for (int i = 2; rc == 0 && i >= 0; i--)
		rc = lt_snap_writer_add_section(w, LT_SNAP_SEC_VCPU, (uint32_t)i, vcpu[i],
						(size_t)(300 + 100 * i));
	if (rc == 0)
		rc = lt_snap_writer_add_section(w, LT_SNAP_SEC_VM_STATE, 0, "vmstate", 7);
	if (rc == 0)
		rc = lt_snap_writer_add_section(w, LT_SNAP_SEC_DEVICE_STATE, 0, "devices!", 8);
	if (rc == 0)
		rc = lt_snap_writer_add_memory(w, r, n);
	if (rc < 0) {
		lt_snap_writer_abort(w);
		return -1;
	}
	return lt_snap_writer_commit(w, st);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->dir = tmpdir_new();
	f->path = lt_path_join(f->dir, "a.snap");
	fixture_memory(f);
	for (int i = 0; i < 3; i++)
		for (size_t k = 0; k < sizeof(f->vcpu[i]); k++)
			f->vcpu[i][k] = (uint8_t)(rng() >> 13);
	if (write_snapshot(f->path, f->r, 3, f->vcpu, NULL) < 0) {
		fprintf(stderr, "setup: %s\n", lt_errmsg());
		return -1;
	}
	if (read_whole(f->path, &f->img, &f->len) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < 3; i++)
		munmap(f->r[i].host, f->r[i].size);
	lt_rm_rf(f->dir);
	free(f->dir);
	free(f->path);
	free(f->img);
	free(f);
	return 0;
}

/* Restores the snapshot at path eagerly into fresh memory shaped like f->r
 * and compares every byte. */
static void assert_restores_to(struct fixture *f, const char *path)
{
	struct lt_snap *s;
	assert_int_equal(lt_snap_open(&s, path, TEMPLATE), 0);
	struct lt_snap_region t[3];
	for (int i = 0; i < 3; i++) {
		t[i] = f->r[i];
		t[i].host = anon(f->r[i].size);
		assert_non_null(t[i].host);
	}
	int rc = lt_snap_restore_eager(s, t, 3, 0);
	if (rc < 0)
		fprintf(stderr, "%s\n", lt_errmsg());
	assert_int_equal(rc, 0);
	for (int i = 0; i < 3; i++) {
		assert_memory_equal(t[i].host, f->r[i].host, f->r[i].size);
		munmap(t[i].host, t[i].size);
	}
	lt_snap_close(s);
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct lt_snap *s;
	assert_int_equal(lt_snap_open(&s, f->path, TEMPLATE), 0);
	assert_string_equal(lt_snap_template(s), TEMPLATE);
	assert_int_equal(lt_snap_mem_size(s), 10 * MiB);
	assert_int_equal(lt_snap_chunk_size(s), CHUNK);
	assert_int_equal(lt_snap_vcpu_count(s), 3);
	assert_string_equal(lt_snap_config(s), config_json);
	for (uint32_t i = 0; i < 3; i++) {
		const void *d;
		size_t n;
		assert_int_equal(lt_snap_section(s, LT_SNAP_SEC_VCPU, i, &d, &n), 0);
		assert_int_equal(n, 300 + 100 * i);
		assert_memory_equal(d, f->vcpu[i], n);
	}
	const void *d;
	size_t n;
	assert_int_equal(lt_snap_section(s, LT_SNAP_SEC_DEVICE_STATE, 0, &d, &n), 0);
	assert_int_equal(n, 8);
	assert_memory_equal(d, "devices!", 8);
	assert_int_equal(lt_snap_section(s, LT_SNAP_SEC_VCPU, 3, &d, &n), -1);
	assert_non_null(strstr(lt_errmsg(), "no vcpu section with index 3"));
	/* Table order: blobs in add order, then memory data and index. */
	struct lt_snap_section_info info;
	assert_int_equal(lt_snap_section_count(s), 8);
	assert_int_equal(lt_snap_section_at(s, 0, &info, NULL), 0);
	assert_int_equal(info.type, LT_SNAP_SEC_CONFIG);
	assert_int_equal(lt_snap_section_at(s, 6, &info, &d), 0);
	assert_int_equal(info.type, LT_SNAP_SEC_MEM_DATA);
	assert_null(d);
	size_t nr;
	const struct lt_snap_region *regs = lt_snap_regions(s, &nr);
	assert_int_equal(nr, 3);
	assert_int_equal(regs[2].gpa, 0x100000000ull);
	struct lt_snap_mem_info mi;
	lt_snap_mem_info(s, &mi);
	/* About a quarter of the pages are zero and must not be stored. */
	assert_true(mi.stored_pages < 10 * MiB / PG * 85 / 100);
	assert_true(mi.stored_pages > 10 * MiB / PG * 60 / 100);
	assert_int_equal(mi.chunks, (mi.stored_pages * PG + CHUNK - 1) / CHUNK);
	lt_snap_close(s);
	assert_restores_to(f, f->path);
}

static void test_deterministic(void **state)
{
	struct fixture *f = *state;
	char *p2 = lt_path_join(f->dir, "b.snap");
	assert_int_equal(write_snapshot(p2, f->r, 3, f->vcpu, NULL), 0);
	uint8_t *img2 = NULL;
	size_t len2;
	assert_int_equal(read_whole(p2, &img2, &len2), 0);
	assert_int_equal(len2, f->len);
	/* Only the creation time (and so the header checksum) may differ. */
	assert_memory_equal(img2 + 128, f->img + 128, f->len - 128);
	assert_memory_equal(img2, f->img, 88);
	free(img2);
	free(p2);
}

static void test_zero_sparse(void **state)
{
	struct fixture *f = *state;
	size_t size = 40 * MiB;
	uint8_t *m = anon(size);
	assert_non_null(m);
	memset(m, 0, size); /* resident, so really read and found zero */
	char *p = lt_path_join(f->dir, "zero.snap");
	struct lt_snap_region r = {.gpa = 0, .host = m, .size = size};
	struct lt_snap_writer *w;
	struct lt_snap_writer_opts o = {.cpu_template = TEMPLATE};
	struct lt_snap_writer_stats st;
	assert_int_equal(lt_snap_writer_begin(&w, p, &o), 0);
	assert_int_equal(lt_snap_writer_add_memory(w, &r, 1), 0);
	assert_int_equal(lt_snap_writer_commit(w, &st), 0);
	assert_int_equal(st.pages_stored, 0);
	assert_int_equal(st.pages_zero + st.pages_skipped, size / PG);
	assert_true(st.file_size < 512);

	struct lt_snap *s;
	struct lt_snap_mem_info mi;
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	lt_snap_mem_info(s, &mi);
	assert_int_equal(mi.entries, 0);
	assert_int_equal(mi.chunks, 0);
	assert_int_equal(lt_snap_mem_size(s), size);
	lt_snap_close(s);

	/* Two non-zero pages far apart: two index entries, one chunk. */
	m[5 * PG + 17] = 1;
	m[9000 * PG] = 2;
	assert_int_equal(lt_snap_writer_begin(&w, p, &o), 0);
	assert_int_equal(lt_snap_writer_add_memory(w, &r, 1), 0);
	assert_int_equal(lt_snap_writer_commit(w, &st), 0);
	assert_true(st.file_size < 1024);
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	lt_snap_mem_info(s, &mi);
	assert_int_equal(mi.entries, 2);
	assert_int_equal(mi.chunks, 1);
	assert_int_equal(mi.stored_pages, 2);
	uint8_t *t = anon(size);
	struct lt_snap_region tr = {.gpa = 0, .host = t, .size = size};
	assert_int_equal(lt_snap_restore_eager(s, &tr, 1, 2), 0);
	/* Zero pages were left alone: nothing but the stored pages populated
	 * (a transparent huge page may bring its neighbours along). */
	unsigned char *vec = malloc(size / PG);
	assert_int_equal(mincore(t, size, vec), 0);
	size_t resident = 0;
	for (size_t i = 0; i < size / PG; i++)
		resident += vec[i] & 1;
	assert_true(resident >= 2 && resident <= 2 * 512);
	free(vec);
	assert_memory_equal(t, m, size);
	lt_snap_close(s);
	munmap(t, size);
	munmap(m, size);
	free(p);
}

/* Fully written memory: every chunk is one guest range (restored by
 * decompressing straight into place). */
static void test_dense_memory(void **state)
{
	struct fixture *f = *state;
	size_t size = 3 * MiB;
	uint8_t *m = anon(size);
	assert_non_null(m);
	for (size_t i = 0; i < size / PG; i++)
		fill_page(m + i * PG, 1 + (int)(i % 3), i);
	char *p = lt_path_join(f->dir, "dense.snap");
	struct lt_snap_region r = {.gpa = 1ull << 32, .host = m, .size = size};
	struct lt_snap_writer *w;
	struct lt_snap_writer_opts o = {.cpu_template = TEMPLATE, .chunk_size = CHUNK, .threads = 3};
	assert_int_equal(lt_snap_writer_begin(&w, p, &o), 0);
	assert_int_equal(lt_snap_writer_add_memory(w, &r, 1), 0);
	assert_int_equal(lt_snap_writer_commit(w, NULL), 0);
	struct lt_snap *s;
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	struct lt_snap_mem_info mi;
	lt_snap_mem_info(s, &mi);
	assert_int_equal(mi.chunks, size / CHUNK);
	assert_int_equal(mi.entries, size / CHUNK); /* one run split at chunk edges */
	assert_int_equal(mi.stored_pages, size / PG);
	uint8_t *t = anon(size);
	struct lt_snap_region tr = {.gpa = 1ull << 32, .host = t, .size = size};
	assert_int_equal(lt_snap_restore_eager(s, &tr, 1, 0), 0);
	assert_memory_equal(t, m, size);
	lt_snap_close(s);
	munmap(t, size);
	munmap(m, size);
	free(p);
}

static bool swap_on(void)
{
	FILE *fp = fopen("/proc/swaps", "r");
	char line[256];
	int n = 0;
	while (fp && fgets(line, sizeof(line), fp))
		n++;
	if (fp)
		fclose(fp);
	return n > 1;
}

static void test_skip_untouched(void **state)
{
	struct fixture *f = *state;
	size_t size = 64 * MiB;
	uint8_t *m = anon(size);
	assert_non_null(m);
	fill_mixed(m + 8 * MiB, MiB / PG); /* 256 pages touched */
	uint8_t *present = calloc(size / PG / 8, 1);
	for (size_t i = 0; i < size / PG / 2; i++) /* first half may hold data */
		present[i / 8] |= (uint8_t)(1u << (i % 8));
	m[40 * MiB] = 7; /* in the absent half: must be skipped */
	struct lt_snap_region r = {.host = m, .size = size, .present = present,
				   .flags = LT_SNAP_REGION_ANON};
	char *p = lt_path_join(f->dir, "skip.snap");
	struct lt_snap_writer *w;
	struct lt_snap_writer_opts o = {.cpu_template = TEMPLATE, .threads = 2};
	struct lt_snap_writer_stats st;
	assert_int_equal(lt_snap_writer_begin(&w, p, &o), 0);
	assert_int_equal(lt_snap_writer_add_memory(w, &r, 1), 0);
	assert_int_equal(lt_snap_writer_commit(w, &st), 0);
	if (!swap_on()) /* mincore skipped the untouched rest (THP may add 2 MiB) */
		assert_true(st.pages_scanned <= 256 + 2 * 512);
	assert_true(st.pages_skipped >= size / PG / 2);

	struct lt_snap *s;
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	uint8_t *t = anon(size);
	struct lt_snap_region tr = {.host = t, .size = size};
	assert_int_equal(lt_snap_restore_eager(s, &tr, 1, 0), 0);
	assert_memory_equal(t + 8 * MiB, m + 8 * MiB, MiB);
	assert_int_equal(t[40 * MiB], 0);
	lt_snap_close(s);
	munmap(t, size);
	munmap(m, size);
	free(present);
	free(p);
}

static size_t dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

static void test_atomic(void **state)
{
	struct fixture *f = *state;
	char *dir = lt_path_join(f->dir, "atomic");
	char *p = lt_path_join(dir, "x.snap");
	assert_int_equal(lt_mkdir_p(dir, 0755), 0);
	struct lt_snap_writer *w;
	struct lt_snap_writer_opts o = {.cpu_template = TEMPLATE};
	assert_int_equal(lt_snap_writer_begin(&w, p, &o), 0);
	assert_int_equal(lt_snap_writer_add_section(w, LT_SNAP_SEC_VM_STATE, 0, "x", 1), 0);
	assert_int_equal(lt_snap_writer_add_memory(w, f->r, 1), 0);
	assert_false(lt_path_exists(p)); /* nothing under the final name yet */
	lt_snap_writer_abort(w);
	assert_int_equal(dir_entries(dir), 0);

	/* A failing step makes commit fail and leave nothing behind. */
	struct lt_snap_region bad[2] = {f->r[0], f->r[0]};
	bad[1].gpa += PG; /* overlaps */
	assert_int_equal(lt_snap_writer_begin(&w, p, &o), 0);
	assert_int_equal(lt_snap_writer_add_memory(w, bad, 2), -1);
	assert_non_null(strstr(lt_errmsg(), "overlap"));
	assert_int_equal(lt_snap_writer_add_section(w, LT_SNAP_SEC_VM_STATE, 0, "x", 1), -1);
	assert_int_equal(lt_snap_writer_commit(w, NULL), -1);
	assert_int_equal(dir_entries(dir), 0);

	/* Misuse is refused with a message. */
	assert_int_equal(lt_snap_writer_begin(&w, p, &(struct lt_snap_writer_opts){
						      .cpu_template = "has space"}), -1);
	assert_int_equal(lt_snap_writer_begin(&w, p, &(struct lt_snap_writer_opts){
						      .cpu_template = TEMPLATE, .chunk_size = 5000}),
			 -1);
	assert_int_equal(lt_snap_writer_begin(&w, p, &o), 0);
	assert_int_equal(lt_snap_writer_add_section(w, LT_SNAP_SEC_MEM_INDEX, 0, "x", 1), -1);
	assert_int_equal(lt_snap_writer_add_section(w, LT_SNAP_SEC_VCPU, 0, "x", 1), 0);
	assert_int_equal(lt_snap_writer_add_section(w, LT_SNAP_SEC_VCPU, 0, "y", 1), -1);
	assert_non_null(strstr(lt_errmsg(), "duplicate"));
	uint32_t ws[] = {99};
	assert_int_equal(lt_snap_writer_set_working_set(w, ws, 1), 0);
	assert_int_equal(lt_snap_writer_add_memory(w, f->r, 1), -1); /* only ~9 chunks */
	assert_non_null(strstr(lt_errmsg(), "working-set chunk 99"));
	assert_int_equal(lt_snap_writer_commit(w, NULL), -1);
	assert_int_equal(dir_entries(dir), 0);
	free(dir);
	free(p);
}

/* ---- reject paths ------------------------------------------------------ */

/* Writes img to bad.snap and expects lt_snap_open to fail with msg. */
static void expect_reject(struct fixture *f, const uint8_t *img, size_t len, const char *expect,
			  const char *msg)
{
	char *p = lt_path_join(f->dir, "bad.snap");
	assert_int_equal(write_whole(p, img, len), 0);
	struct lt_snap *s = NULL;
	int rc = lt_snap_open(&s, p, expect);
	if (rc == 0 || !strstr(lt_errmsg(), msg))
		fprintf(stderr, "expected failure '%s', got rc=%d '%s'\n", msg, rc, lt_errmsg());
	assert_int_equal(rc, -1);
	assert_null(s);
	assert_non_null(strstr(lt_errmsg(), msg));
	free(p);
}

static uint8_t *copy_img(const struct fixture *f)
{
	uint8_t *c = malloc(f->len);
	memcpy(c, f->img, f->len);
	return c;
}

static void test_reject_header(void **state)
{
	struct fixture *f = *state;
	uint8_t *c = copy_img(f);
	c[0] = 'X';
	expect_reject(f, c, f->len, TEMPLATE, "bad magic");

	memcpy(c, f->img, f->len);
	wr32(c + 8, 2);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "version 2 is not supported");

	expect_reject(f, f->img, f->len, "other-cpu", "does not match the expected 'other-cpu'");

	memcpy(c, f->img, f->len);
	c[90] ^= 1; /* creation time, without resealing */
	expect_reject(f, c, f->len, TEMPLATE, "header checksum mismatch");

	memcpy(c, f->img, f->len);
	wr32(c + 64, 0x80);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "unknown header flags");

	memcpy(c, f->img, f->len);
	wr32(c + 56, 8192);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "page size 8192");

	memcpy(c, f->img, f->len);
	wr32(c + 60, 3 * 65536);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "invalid chunk size");

	memcpy(c, f->img, f->len);
	wr64(c + 48, 11 * MiB);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "regions total");

	memcpy(c, f->img, f->len);
	wr32(c + 68, 100000);
	wr64(c + 120, XXH3_64bits(c, 120)); /* the table cannot be resealed */
	expect_reject(f, c, f->len, TEMPLATE, "section count");

	memcpy(c, f->img, f->len);
	c[110] = 1;
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "reserved header bytes");

	memcpy(c, f->img, f->len);
	c[20] = ' ';
	reseal(c, f->len);
	expect_reject(f, c, f->len, NULL, "malformed CPU template");

	expect_reject(f, f->img, 100, TEMPLATE, "too short");
	free(c);
}

static void test_reject_table(void **state)
{
	struct fixture *f = *state;
	uint8_t *c = copy_img(f);
	int v1 = find_sec(c, LT_SNAP_SEC_VCPU);
	assert_true(v1 >= 0);

	/* A blob byte flipped: its section checksum no longer matches. */
	c[rd64(tab(c, v1) + 16) + 5] ^= 0x40;
	expect_reject(f, c, f->len, TEMPLATE, "vcpu section 1 (index 2) checksum mismatch");

	memcpy(c, f->img, f->len);
	tab(c, 0)[3] ^= 1; /* table byte, table checksum not updated */
	wr64(c + 120, XXH3_64bits(c, 120));
	expect_reject(f, c, f->len, TEMPLATE, "section table checksum mismatch");

	memcpy(c, f->img, f->len);
	wr64(tab(c, v1) + 24, f->len); /* length past the end */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "extends past the end");

	memcpy(c, f->img, f->len);
	wr64(tab(c, v1) + 16, UINT64_MAX - 10); /* offset wraps */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "extends past the end");

	memcpy(c, f->img, f->len);
	wr64(tab(c, v1 + 1) + 16, rd64(tab(c, v1) + 16) + 10); /* overlap */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "overlaps");

	memcpy(c, f->img, f->len);
	wr64(tab(c, 0) + 16, 130); /* inside the table */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "overlaps the table");

	memcpy(c, f->img, f->len);
	wr64(c + 72, f->len - 10); /* table offset */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "section table lies outside");

	memcpy(c, f->img, f->len);
	wr32(tab(c, v1), 77); /* unknown required type */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "unknown required type 77");

	memcpy(c, f->img, f->len);
	wr32(tab(c, v1) + 4, 1); /* two vCPUs with index 1 */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "duplicate vcpu section");

	memcpy(c, f->img, f->len);
	wr32(tab(c, v1) + 4, 7); /* vCPU ids 7, 1, 0 */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "not numbered");

	memcpy(c, f->img, f->len);
	wr32(tab(c, v1) + 12, 1);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "reserved bits");

	memcpy(c, f->img, f->len);
	int d = find_sec(c, LT_SNAP_SEC_MEM_DATA);
	wr32(tab(c, d) + 8, 0); /* memory data without the chunked flag */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "chunked flag");

	memcpy(c, f->img, f->len);
	wr32(tab(c, d), LT_SNAP_SEC_DEVICE_STATE); /* no memory data section at all */
	wr32(tab(c, d) + 8, 0);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "duplicate device-state");

	/* An unknown optional section is skipped. */
	memcpy(c, f->img, f->len);
	int vm = find_sec(c, LT_SNAP_SEC_VM_STATE);
	wr32(tab(c, vm), 200);
	wr32(tab(c, vm) + 8, 1);
	reseal(c, f->len);
	char *p = lt_path_join(f->dir, "opt.snap");
	assert_int_equal(write_whole(p, c, f->len), 0);
	struct lt_snap *s;
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	assert_false(lt_snap_has_section(s, LT_SNAP_SEC_VM_STATE, 0));
	assert_true(lt_snap_has_section(s, 200, 0));
	lt_snap_close(s);
	free(p);

	memcpy(c, f->img, f->len);
	int cfg = find_sec(c, LT_SNAP_SEC_CONFIG);
	c[rd64(tab(c, cfg) + 16)] = '[';
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "not a JSON object");
	free(c);
}

/* Truncation at and around every section boundary. A plain cut is caught
 * by the header's file size; a cut with the size patched to match must
 * still be caught by the section bounds. */
static void test_reject_truncation(void **state)
{
	struct fixture *f = *state;
	uint8_t *c = copy_img(f);
	size_t cuts[256], n = 0;
	cuts[n++] = 128;
	cuts[n++] = rd64(f->img + 72) + 40 * nsec(f->img);
	for (size_t i = 0; i < nsec(f->img); i++) {
		cuts[n++] = rd64(tab(f->img, i) + 16);
		cuts[n++] = rd64(tab(f->img, i) + 16) + rd64(tab(f->img, i) + 24);
	}
	static const int delta[] = {-7, -1, 0, 1, 5};
	size_t tried = 0;
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < LT_ARRAY_LEN(delta); k++) {
			long cut = (long)cuts[i] + delta[k];
			if (cut < 0 || (size_t)cut >= f->len)
				continue;
			expect_reject(f, f->img, (size_t)cut, TEMPLATE, "");
			if (cut >= 128) {
				memcpy(c, f->img, 128);
				wr64(c + 80, (uint64_t)cut);
				wr64(c + 120, XXH3_64bits(c, 120));
				memcpy(c + 128, f->img + 128, (size_t)cut - 128);
				expect_reject(f, c, (size_t)cut, TEMPLATE, "");
			}
			tried++;
		}
	}
	assert_true(tried > 40);
	/* The plain cut names the problem. */
	expect_reject(f, f->img, f->len - 1, TEMPLATE, "truncated");
	free(c);
}

/* Patches the memory index (and reseals). */
static uint8_t *index_of(uint8_t *img, uint32_t *nreg, uint32_t *nch, uint32_t *nent)
{
	int i = find_sec(img, LT_SNAP_SEC_MEM_INDEX);
	uint8_t *b = img + rd64(tab(img, i) + 16);
	*nreg = rd32(b);
	*nch = rd32(b + 4);
	*nent = rd32(b + 8);
	return b;
}
#define CHUNK_REC(b, nreg, i) ((b) + 32 + 16 * (nreg) + 24 * (i))
#define ENTRY_REC(b, nreg, nch, i) ((b) + 32 + 16 * (nreg) + 24 * (nch) + 24 * (i))

static void test_reject_index(void **state)
{
	struct fixture *f = *state;
	uint8_t *c = copy_img(f);
	uint32_t nreg, nch, nent;
	uint8_t *b = index_of(c, &nreg, &nch, &nent);
	assert_int_equal(nreg, 3);
	assert_true(nch > 10 && nent > 10);

	wr32(ENTRY_REC(b, nreg, nch, 3) + 8, nch + 5);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "names chunk");

	memcpy(c, f->img, f->len);
	wr64(ENTRY_REC(b, nreg, nch, 4), rd64(ENTRY_REC(b, nreg, nch, 3)));
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "overlap or are unsorted");

	memcpy(c, f->img, f->len);
	wr64(ENTRY_REC(b, nreg, nch, nent - 1), 0x200000000ull / PG); /* past region 2 */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "outside the memory regions");

	memcpy(c, f->img, f->len);
	wr32(ENTRY_REC(b, nreg, nch, 0) + 16, 0);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "is empty");

	memcpy(c, f->img, f->len);
	wr32(ENTRY_REC(b, nreg, nch, 0) + 12, CHUNK / PG); /* offset past its chunk */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "past the end of chunk");

	memcpy(c, f->img, f->len);
	wr32(CHUNK_REC(b, nreg, 2) + 12, CHUNK - PG); /* chunk shorter than its pages */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "past the end of chunk 2");

	memcpy(c, f->img, f->len);
	uint32_t rl = rd32(CHUNK_REC(b, nreg, nch - 1) + 12);
	assert_true(rl < CHUNK); /* the last chunk is partly filled */
	wr32(CHUNK_REC(b, nreg, nch - 1) + 12, rl + PG); /* a page no entry uses */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "the index maps");

	memcpy(c, f->img, f->len);
	wr64(CHUNK_REC(b, nreg, nch - 1), 1ull << 40); /* frame outside the data */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "outside the memory data");

	memcpy(c, f->img, f->len);
	wr64(CHUNK_REC(b, nreg, 1), rd64(CHUNK_REC(b, nreg, 0))); /* frames overlap */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "overlaps another");

	memcpy(c, f->img, f->len);
	wr64(b + 32 + 16, 0x100); /* region 1 gpa not page aligned */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "region 1 is malformed");

	memcpy(c, f->img, f->len);
	wr64(b + 32 + 16, 0); /* region 1 on top of region 0 */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "regions overlap");

	memcpy(c, f->img, f->len);
	wr32(b + 8, nent + 1); /* counts disagree with the length */
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "its counts need");

	memcpy(c, f->img, f->len);
	wr64(b + 16, rd64(b + 16) + 1);
	reseal(c, f->len);
	expect_reject(f, c, f->len, TEMPLATE, "page count disagrees");
	free(c);
}

/* Faults only found while decompressing: the index is self-consistent. */
static void test_reject_chunks(void **state)
{
	struct fixture *f = *state;
	uint8_t *c = copy_img(f);
	char *p = lt_path_join(f->dir, "chunk.snap");
	struct lt_snap_region t[3];
	for (int i = 0; i < 3; i++) {
		t[i] = f->r[i];
		t[i].host = anon(f->r[i].size);
	}
	struct lt_snap *s;

	/* A flipped byte in a frame. */
	int d = find_sec(c, LT_SNAP_SEC_MEM_DATA);
	c[rd64(tab(c, d) + 16) + 100] ^= 1;
	assert_int_equal(write_whole(p, c, f->len), 0);
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	assert_int_equal(lt_snap_restore_eager(s, t, 3, 0), -1);
	assert_non_null(strstr(lt_errmsg(), "chunk 0 checksum mismatch"));
	uint8_t *buf = malloc(CHUNK);
	assert_int_equal(lt_snap_read_chunk(s, 0, buf, CHUNK), -1);
	assert_true(lt_snap_read_chunk(s, 1, buf, CHUNK) > 0);
	assert_int_equal(lt_snap_read_chunk(s, 100000, buf, CHUNK), -1);
	assert_non_null(strstr(lt_errmsg(), "out of range"));
	lt_snap_close(s);

	/* The last chunk is short; claim one page less in the chunk record
	 * and the last entry: the frame then decompresses to a wrong size. */
	memcpy(c, f->img, f->len);
	uint32_t nreg, nch, nent;
	uint8_t *b = index_of(c, &nreg, &nch, &nent);
	uint8_t *last = ENTRY_REC(b, nreg, nch, nent - 1);
	assert_int_equal(rd32(last + 8), nch - 1);
	uint32_t cnt = rd32(last + 16);
	if (cnt == 1) { /* keep the entry non-empty: shorten the one before */
		last = ENTRY_REC(b, nreg, nch, nent - 2);
		assert_int_equal(rd32(last + 8), nch - 1);
		cnt = rd32(last + 16);
		wr32(ENTRY_REC(b, nreg, nch, nent - 1) + 12,
		     rd32(ENTRY_REC(b, nreg, nch, nent - 1) + 12) - 1);
	}
	wr32(last + 16, cnt - 1);
	uint8_t *ch = CHUNK_REC(b, nreg, nch - 1);
	wr32(ch + 12, rd32(ch + 12) - PG);
	wr64(b + 16, rd64(b + 16) - 1);
	reseal(c, f->len);
	assert_int_equal(write_whole(p, c, f->len), 0);
	int rc = lt_snap_open(&s, p, TEMPLATE);
	if (rc < 0)
		fprintf(stderr, "%s\n", lt_errmsg());
	assert_int_equal(rc, 0);
	assert_int_equal(lt_snap_restore_eager(s, t, 3, 0), -1);
	assert_non_null(strstr(lt_errmsg(), "index says"));
	lt_snap_close(s);

	/* Targets must cover every stored page. */
	assert_int_equal(lt_snap_open(&s, f->path, TEMPLATE), 0);
	assert_int_equal(lt_snap_restore_eager(s, t, 2, 0), -1);
	assert_non_null(strstr(lt_errmsg(), "outside the restore target"));
	struct lt_snap_region un = t[0];
	un.host = (uint8_t *)un.host + 1;
	assert_int_equal(lt_snap_restore_eager(s, &un, 1, 0), -1);
	assert_non_null(strstr(lt_errmsg(), "not page aligned"));
	lt_snap_close(s);

	for (int i = 0; i < 3; i++)
		munmap(t[i].host, t[i].size);
	free(buf);
	free(p);
	free(c);
}

static void test_working_set_record(void **state)
{
	struct fixture *f = *state;
	char *p = lt_path_join(f->dir, "ws.snap");
	assert_int_equal(write_whole(p, f->img, f->len), 0);
	uint32_t ids[] = {3, 1, 3, 0, 7};
	assert_int_equal(lt_snap_record_working_set(p, TEMPLATE, ids, 5), 0);
	struct lt_snap *s;
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	size_t n;
	const uint32_t *ws = lt_snap_working_set(s, &n);
	assert_int_equal(n, 4);
	assert_int_equal(ws[0], 3);
	assert_int_equal(ws[1], 1);
	assert_int_equal(ws[2], 0);
	assert_int_equal(ws[3], 7);
	/* Stored first, right after the table. */
	struct lt_snap_section_info info;
	assert_int_equal(lt_snap_section_at(s, 0, &info, NULL), 0);
	assert_int_equal(info.type, LT_SNAP_SEC_WORKING_SET);
	assert_int_equal(info.offset, 128 + 40 * lt_snap_section_count(s));
	assert_int_equal(lt_snap_vcpu_count(s), 3);
	lt_snap_close(s);
	assert_restores_to(f, p);

	/* Replacing keeps one working set; out-of-range ids are refused and
	 * leave the file as it was. */
	uint32_t again[] = {2};
	assert_int_equal(lt_snap_record_working_set(p, TEMPLATE, again, 1), 0);
	uint32_t bad[] = {100000};
	assert_int_equal(lt_snap_record_working_set(p, TEMPLATE, bad, 1), -1);
	assert_non_null(strstr(lt_errmsg(), "out of range"));
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	ws = lt_snap_working_set(s, &n);
	assert_int_equal(n, 1);
	assert_int_equal(ws[0], 2);
	lt_snap_close(s);

	/* Bad working sets in the file are rejected. */
	uint8_t *img = NULL;
	size_t len;
	assert_int_equal(read_whole(p, &img, &len), 0);
	uint8_t *wsb = img + rd64(tab(img, 0) + 16);
	wr32(wsb + 8, 100000);
	reseal(img, len);
	expect_reject(f, img, len, TEMPLATE, "working-set chunk 100000 out of range");
	wr32(wsb, 2);
	reseal(img, len);
	expect_reject(f, img, len, TEMPLATE, "disagrees with its count");
	wr32(img + 64, 0);
	wr32(wsb, 1);
	wr32(wsb + 8, 0);
	reseal(img, len);
	expect_reject(f, img, len, TEMPLATE, "working-set flag");
	free(img);

	/* n = 0 removes it. */
	assert_int_equal(lt_snap_record_working_set(p, TEMPLATE, NULL, 0), 0);
	assert_int_equal(lt_snap_open(&s, p, TEMPLATE), 0);
	assert_null(lt_snap_working_set(s, &n));
	assert_int_equal(n, 0);
	lt_snap_close(s);
	assert_int_equal(read_whole(p, &img, &len), 0);
	assert_int_equal(len, f->len);
	assert_memory_equal(img + 128, f->img + 128, len - 128);
	free(img);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_zero_sparse),
		cmocka_unit_test(test_dense_memory),
		cmocka_unit_test(test_skip_untouched),
		cmocka_unit_test(test_atomic),
		cmocka_unit_test(test_reject_header),
		cmocka_unit_test(test_reject_table),
		cmocka_unit_test(test_reject_truncation),
		cmocka_unit_test(test_reject_index),
		cmocka_unit_test(test_reject_chunks),
		cmocka_unit_test(test_working_set_record),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
