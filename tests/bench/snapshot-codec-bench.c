/* Snapshot codec benchmark: a 256 MiB guest-like region of which ~40 MiB is
 * written with partly compressible data, captured and restored with each
 * strategy. Prints one table; every restore is checked byte for byte.
 *
 *   snapshot-codec-bench [--dir DIR] [--level N] [--threads N] [--chunk BYTES]
 *                        [--mem MIB] [--data MIB]
 */
#include "snapshot/snapshot.h"
#include "util/util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG 4096u
#define MiB (1024.0 * 1024.0)

static uint64_t rs = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

/* ---- guest-like content ------------------------------------------------ */

static char vocab[512][12];

static void make_vocab(void)
{
	for (int i = 0; i < 512; i++) {
		int n = 2 + (int)(rnd() % 9);
		for (int k = 0; k < n; k++)
			vocab[i][k] = (char)('a' + rnd() % 26);
		vocab[i][n] = '\0';
	}
}

/* Text: log lines / config / HTML-ish words with numbers. */
static void page_text(uint8_t *p)
{
	size_t i = 0;
	while (i < PG) {
		char w[40];
		uint64_t r = rnd();
		int n = (r & 15) == 0 ? snprintf(w, sizeof(w), "%llu ", (unsigned long long)(r >> 40))
		      : (r & 31) == 1 ? snprintf(w, sizeof(w), "\n")
				      : snprintf(w, sizeof(w), "%s ", vocab[(r >> 8) % 512]);
		size_t m = (size_t)n < PG - i ? (size_t)n : PG - i;
		memcpy(p + i, w, m);
		i += m;
	}
}

/* Heap / kernel data: pointers, small integers, flags. */
static void page_structs(uint8_t *p)
{
	uint64_t *q = (uint64_t *)p;
	uint64_t base = 0xffff888000000000ull + ((rnd() % 4096) << 20);
	for (size_t i = 0; i < PG / 8; i += 4) {
		q[i] = base + (rnd() % 65536) * 64;
		q[i + 1] = rnd() % 1000;
		q[i + 2] = (rnd() & 7) ? 0 : rnd();
		q[i + 3] = 0x0000000100000001ull * (i & 0xff);
	}
}

static void page_random(uint8_t *p)
{
	for (size_t i = 0; i < PG; i += 8) {
		uint64_t v = rnd();
		memcpy(p + i, &v, 8);
	}
}

static void page_repeat(uint8_t *p)
{
	uint8_t pat[16];
	size_t n = 1 + rnd() % 16;
	for (size_t i = 0; i < n; i++)
		pat[i] = (uint8_t)rnd();
	for (size_t i = 0; i < PG; i++)
		p[i] = pat[i % n];
}

static void page_sparse(uint8_t *p)
{
	for (int k = 0; k < 8; k++) {
		uint64_t v = rnd();
		memcpy(p + (rnd() % (PG / 8)) * 8, &v, 8);
	}
}

struct mix {
	const char *name;
	int percent;
	void (*fill)(uint8_t *);
	size_t pages;
};
static struct mix mixes[] = {
	{"text", 35, page_text, 0},       {"structs/pointers", 25, page_structs, 0},
	{"random", 15, page_random, 0},   {"repeating", 15, page_repeat, 0},
	{"sparse", 10, page_sparse, 0},
};

/* Writes about `data` bytes in extents of 16 KiB..2 MiB spread over the
 * region, each extent one kind of content (as page cache, heap and kernel
 * text come in runs). Returns the pages written. */
static size_t fill_guest(uint8_t *m, size_t size, size_t data)
{
	make_vocab();
	size_t pages = size / PG, written = 0;
	uint8_t *used = calloc(pages, 1);
	while (written * PG < data) {
		size_t len = 4u << (rnd() % 6); /* 4..128 pages */
		size_t at = rnd() % (pages - len);
		int pick = (int)(rnd() % 100), acc = 0;
		struct mix *k = &mixes[0];
		for (size_t i = 0; i < LT_ARRAY_LEN(mixes); i++) {
			acc += mixes[i].percent;
			if (pick < acc) {
				k = &mixes[i];
				break;
			}
		}
		for (size_t p = at; p < at + len && written * PG < data; p++) {
			if (used[p])
				continue;
			used[p] = 1;
			k->fill(m + p * PG);
			k->pages++;
			written++;
		}
	}
	free(used);
	return written;
}

/* ---- timing helpers ---------------------------------------------------- */

static double ms(uint64_t ns) { return (double)ns / 1e6; }

/* CPU time (user + system) of the whole process, all threads: unlike wall
 * time it holds up when other work shares the cores. */
static uint64_t cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static void *fresh(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static void check(const char *what, const void *a, const void *b, size_t n)
{
	if (memcmp(a, b, n) != 0) {
		fprintf(stderr, "bench: %s restored different memory\n", what);
		exit(1);
	}
}

static void die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, lt_errmsg());
	exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int level = 0, threads = 0;
	uint64_t chunk = 0, mem_mib = 256, data_mib = 40;
	static const struct option lo[] = {{"dir", 1, 0, 'd'},   {"level", 1, 0, 'l'},
					   {"threads", 1, 0, 't'}, {"chunk", 1, 0, 'c'},
					   {"mem", 1, 0, 'm'},     {"data", 1, 0, 'D'},
					   {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'd': dir = optarg; break;
		case 'l': level = atoi(optarg); break;
		case 't': threads = atoi(optarg); break;
		case 'c':
			if (lt_parse_size(optarg, &chunk) < 0)
				die("--chunk");
			break;
		case 'm': mem_mib = strtoull(optarg, NULL, 10); break;
		case 'D': data_mib = strtoull(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: %s [--dir D] [--level N] [--threads N] [--chunk B] "
					"[--mem MIB] [--data MIB]\n", argv[0]);
			return 2;
		}
	}
	size_t size = mem_mib << 20, data = data_mib << 20;
	char tmpl[4096];
	snprintf(tmpl, sizeof(tmpl), "%s/lttle-snapbench.XXXXXX", dir);
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	char *path = lt_path_join(tmpl, "bench.snap");
	char *cache_dir = lt_path_join(tmpl, "cache");

	uint8_t *guest = fresh(size);
	size_t wpages = fill_guest(guest, size, data);
	struct lt_snap_region r = {.gpa = 0, .host = guest, .size = size,
				   .flags = LT_SNAP_REGION_ANON};
	char vcpu[4096];
	memset(vcpu, 0x11, sizeof(vcpu));

	/* ---- capture ---- */
	uint64_t t0 = lt_now_ns(), cpu0 = cpu_ns();
	struct lt_snap_writer *w;
	struct lt_snap_writer_opts wo = {.cpu_template = "bench", .chunk_size = (uint32_t)chunk,
					 .level = level, .threads = threads};
	struct lt_snap_writer_stats st;
	if (lt_snap_writer_begin(&w, path, &wo) < 0 ||
	    lt_snap_writer_add_section(w, LT_SNAP_SEC_CONFIG, 0, "{}", 2) < 0 ||
	    lt_snap_writer_add_section(w, LT_SNAP_SEC_VCPU, 0, vcpu, sizeof(vcpu)) < 0 ||
	    lt_snap_writer_add_memory(w, &r, 1) < 0)
		die("capture");
	uint64_t t_mem = lt_now_ns(), cpu1 = cpu_ns();
	if (lt_snap_writer_commit(w, &st) < 0)
		die("commit");
	uint64_t t1 = lt_now_ns();
	double stored_mb = (double)st.pages_stored * PG / 1e6;

	/* ---- eager ---- */
	struct lt_snap *s;
	uint64_t e0 = lt_now_ns();
	if (lt_snap_open(&s, path, "bench") < 0)
		die("open");
	uint64_t e1 = lt_now_ns(), cpu2 = cpu_ns();
	uint8_t *t_eager = fresh(size);
	struct lt_snap_region tr = {.gpa = 0, .host = t_eager, .size = size};
	if (lt_snap_restore_eager(s, &tr, 1, threads) < 0)
		die("eager restore");
	uint64_t e2 = lt_now_ns(), cpu3 = cpu_ns();
	check("eager", t_eager, guest, size);
	/* Same again into pre-faulted memory: decompression alone. */
	memset(t_eager, 0, size);
	uint64_t e3 = lt_now_ns();
	if (lt_snap_restore_eager(s, &tr, 1, threads) < 0)
		die("eager restore");
	uint64_t e4 = lt_now_ns();
	munmap(t_eager, size);

	/* ---- lazy: touch one page of each chunk, in order ---- */
	struct lt_snap_mem_info mi;
	lt_snap_mem_info(s, &mi);
	uint32_t per_chunk = lt_snap_chunk_size(s) / PG;
	uint64_t *touch = calloc(mi.chunks ? mi.chunks : 1, sizeof(uint64_t));
	size_t *first_page = calloc(mi.chunks ? mi.chunks : 1, sizeof(size_t));
	size_t rank = 0;
	for (size_t p = 0; p < size / PG; p++) {
		const uint64_t *q = (const uint64_t *)(guest + p * PG);
		bool zero = true;
		for (size_t k = 0; k < PG / 8 && zero; k++)
			zero = q[k] == 0;
		if (zero)
			continue;
		if (rank % per_chunk == 0)
			first_page[rank / per_chunk] = p;
		rank++;
	}
	uint8_t *t_lazy = fresh(size);
	struct lt_snap_region lr = {.gpa = 0, .host = t_lazy, .size = size};
	struct lt_snap_lazy *l;
	uint64_t l0 = lt_now_ns();
	if (lt_snap_lazy_start(&l, s, &lr, 1, NULL) < 0)
		die("lazy start");
	uint64_t l1 = lt_now_ns();
	for (size_t c = 0; c < mi.chunks; c++) {
		uint64_t a = lt_now_ns();
		(void)*(volatile uint8_t *)(t_lazy + first_page[c] * PG);
		touch[c] = lt_now_ns() - a;
	}
	uint64_t l2 = lt_now_ns();
	check("lazy", t_lazy, guest, size);
	uint64_t l3 = lt_now_ns();
	struct lt_snap_lazy_stats ls;
	lt_snap_lazy_stats(l, &ls);
	lt_snap_lazy_stop(l);
	munmap(t_lazy, size);
	qsort(touch, mi.chunks, sizeof(uint64_t), cmp_u64);
	uint64_t touch_sum = 0;
	for (size_t c = 0; c < mi.chunks; c++)
		touch_sum += touch[c];

	/* ---- cached ---- */
	char *cpath = NULL;
	uint64_t c0 = lt_now_ns();
	if (lt_snap_cache_prepare(s, cache_dir, threads, &cpath) < 0)
		die("cache build");
	uint64_t c1 = lt_now_ns();
	free(cpath);
	if (lt_snap_cache_prepare(s, cache_dir, threads, &cpath) < 0)
		die("cache lookup");
	uint64_t c2 = lt_now_ns();
	uint8_t *t_cached = fresh(size);
	struct lt_snap_region cr = {.gpa = 0, .host = t_cached, .size = size};
	uint64_t c3 = lt_now_ns();
	if (lt_snap_cache_map(s, cpath, &cr, 1) < 0)
		die("cache map");
	uint64_t c4 = lt_now_ns();
	volatile uint64_t sink = 0;
	for (size_t p = 0; p < size / PG; p++) /* first touch of every page */
		sink += t_cached[p * PG];
	uint64_t c5 = lt_now_ns();
	check("cached", t_cached, guest, size);
	munmap(t_cached, size);

	int eff_threads = threads ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	printf("snapshot codec benchmark: %llu MiB guest, %.1f MiB written (%zu pages), "
	       "chunk %u KiB, zstd level %d, threads %d\n",
	       (unsigned long long)mem_mib, (double)wpages * PG / MiB, wpages,
	       lt_snap_chunk_size(s) >> 10, level ? level : 1,
	       eff_threads);
	printf("  content mix:");
	for (size_t i = 0; i < LT_ARRAY_LEN(mixes); i++)
		printf(" %s %.0f%%", mixes[i].name, 100.0 * (double)mixes[i].pages / (double)wpages);
	printf("\n\n");
	printf("  %-38s %12s   %s\n", "metric", "value", "target");
	printf("  %-38s %9.2f MiB   (%.2f%% of guest RAM; <= 8%%)\n", "snapshot size",
	       (double)st.file_size / MiB, 100.0 * (double)st.file_size / (double)size);
	printf("  %-38s %12llu   (stored %llu, zero %llu, skipped %llu)\n", "pages scanned",
	       (unsigned long long)st.pages_scanned, (unsigned long long)st.pages_stored,
	       (unsigned long long)st.pages_zero, (unsigned long long)st.pages_skipped);
	printf("  %-38s %9.1f ms\n", "capture: scan (zero/mincore)", ms(st.scan_ns));
	printf("  %-38s %9.1f ms\n", "capture: compress + write", ms(st.compress_ns));
	printf("  %-38s %9.1f ms\n", "capture: total before fsync", ms(t_mem - t0));
	printf("  %-38s %9.1f ms\n", "capture: commit (fsync + rename)", ms(t1 - t_mem));
	printf("  %-38s %9.0f MB/s (>= 300 MB/s)\n", "compression throughput (stored data)",
	       stored_mb / ((double)st.compress_ns / 1e9));
	printf("  %-38s %9.0f MB/s per CPU-second (capture used %.0f ms CPU)\n",
	       "compression, CPU-time based", stored_mb / ((double)(cpu1 - cpu0) / 1e9),
	       ms(cpu1 - cpu0));
	printf("  %-38s %9.0f MB/s\n", "capture throughput (guest RAM)",
	       (double)size / 1e6 / ((double)(t_mem - t0) / 1e9));
	printf("  %-38s %9.2f ms\n", "open + validate", ms(e1 - e0));
	printf("  %-38s %9.1f ms   (< 50 ms)\n", "eager restore (fresh anon memory)", ms(e2 - e1));
	printf("  %-38s %9.1f ms   (%.0f ms CPU over %d threads)\n",
	       "eager restore, CPU time", ms(cpu3 - cpu2) / (double)eff_threads, ms(cpu3 - cpu2),
	       eff_threads);
	printf("  %-38s %9.1f ms\n", "eager restore (pre-faulted memory)", ms(e4 - e3));
	printf("  %-38s %9.0f MB/s\n", "eager decompression throughput",
	       stored_mb / ((double)(e2 - e1) / 1e9));
	printf("  %-38s %9.2f ms\n", "lazy: start (register + threads)", ms(l1 - l0));
	printf("  %-38s %9.0f us   (median %.0f, p90 %.0f us; %llu chunks)\n",
	       "lazy: first touch per chunk (mean)",
	       (double)touch_sum / 1e3 / (double)(mi.chunks ? mi.chunks : 1),
	       (double)touch[mi.chunks / 2] / 1e3, (double)touch[mi.chunks * 9 / 10] / 1e3,
	       (unsigned long long)mi.chunks);
	printf("  %-38s %9.1f ms\n", "lazy: touch one page of every chunk", ms(l2 - l1));
	printf("  %-38s %9.1f ms   (%llu faults, %llu zero-page fills)\n",
	       "lazy: then read all RAM", ms(l3 - l2),
	       (unsigned long long)ls.faults, (unsigned long long)ls.zero_fills);
	printf("  %-38s %9.1f ms\n", "cached: build cache file (once)", ms(c1 - c0));
	printf("  %-38s %9.3f ms\n", "cached: lookup existing cache", ms(c2 - c1));
	printf("  %-38s %9.3f ms\n", "cached: mmap over guest range", ms(c4 - c3));
	printf("  %-38s %9.1f ms\n", "cached: first touch of all RAM", ms(c5 - c4));
	(void)sink;
	free(touch);
	free(first_page);
	free(cpath);
	lt_snap_close(s);
	lt_rm_rf(tmpl);
	free(path);
	free(cache_dir);
	munmap(guest, size);
	return 0;
}
