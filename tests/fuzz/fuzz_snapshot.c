/* libFuzzer target for the snapshot reader: open + validate, section
 * accessors, chunk decompression into a bounded buffer, and an eager
 * restore into small anonymous targets.
 *
 * Input: one mode byte, then the file. Mode bit 0 set: the harness first
 * recomputes the header, table and section checksums (as a writer would),
 * so mutations get past the checksums into the structural checks. */
#include "snapshot/snapshot.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void wr64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void reseal(uint8_t *b, size_t len)
{
	if (len < 128)
		return;
	uint64_t toff = rd64(b + 72);
	uint32_t n = (uint32_t)rd64(b + 68) & 0xffffffffu;
	if (toff <= len && n <= (len - toff) / 40) {
		for (uint32_t i = 0; i < n; i++) {
			uint8_t *e = b + toff + 40 * i;
			uint64_t off = rd64(e + 16), l = rd64(e + 24);
			if (!(e[8] & 2) && off <= len && l <= len - off)
				wr64(e + 32, XXH3_64bits(b + off, l));
		}
		wr64(b + 96, XXH3_64bits(b + toff, 40 * (size_t)n));
	}
	wr64(b + 80, len);
	wr64(b + 120, XXH3_64bits(b, 120));
}

static int memfd = -1;

static void exercise(struct lt_snap *s)
{
	for (size_t i = 0; i < lt_snap_section_count(s); i++) {
		struct lt_snap_section_info info;
		const void *d;
		if (lt_snap_section_at(s, i, &info, &d) == 0 && d && info.length)
			(void)((volatile const uint8_t *)d)[info.length - 1];
	}
	const void *d;
	size_t n;
	lt_snap_section(s, LT_SNAP_SEC_VCPU, 0, &d, &n);
	(void)lt_snap_config(s);
	size_t nws;
	(void)lt_snap_working_set(s, &nws);

	struct lt_snap_mem_info mi;
	lt_snap_mem_info(s, &mi);
	uint32_t cs = lt_snap_chunk_size(s);
	if (cs <= (1u << 20)) {
		uint8_t *buf = malloc(cs);
		for (uint32_t c = 0; buf && c < mi.chunks && c < 16; c++)
			lt_snap_read_chunk(s, c, buf, cs);
		free(buf);
	}
	/* Eager restore into targets shaped like the recorded regions. */
	size_t nr;
	const struct lt_snap_region *r = lt_snap_regions(s, &nr);
	if (nr == 0 || nr > 4 || lt_snap_mem_size(s) > (16u << 20))
		return;
	struct lt_snap_region t[4];
	size_t k;
	for (k = 0; k < nr; k++) {
		t[k] = (struct lt_snap_region){.gpa = r[k].gpa, .size = r[k].size};
		t[k].host = mmap(NULL, r[k].size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (t[k].host == MAP_FAILED)
			break;
	}
	if (k == nr)
		lt_snap_restore_eager(s, t, nr, 1);
	for (size_t i = 0; i < k; i++)
		munmap(t[i].host, t[i].size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (memfd < 0 && (memfd = memfd_create("fuzz-snapshot", MFD_CLOEXEC)) < 0)
		abort();
	uint8_t *b = malloc(size);
	if (!b)
		return 0;
	memcpy(b, data + 1, size - 1);
	if (data[0] & 1)
		reseal(b, size - 1);
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, b, size - 1, 0) != (ssize_t)(size - 1))
		abort();
	free(b);
	struct lt_snap *s = NULL;
	if (lt_snap_open_fd(&s, memfd, "fuzz.snap", NULL) == 0) {
		exercise(s);
		lt_snap_close(s);
	}
	return 0;
}
