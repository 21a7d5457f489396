/* Helpers shared by the snapshot unit tests: guest-like memory, file
 * surgery (patch a field, re-seal the checksums) and temp dirs. */
#ifndef TEST_SNAPSHOT_COMMON_H
#define TEST_SNAPSHOT_COMMON_H

#include "snapshot/snapshot.h"
#include "util/util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define PG 4096u
#define MiB (1024u * 1024u)
#define TEMPLATE "test-tmpl-1"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static inline void *anon(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Guest-like content for one page: kind 0 zero, 1 random, 2 text, 3 repeat. */
static inline void fill_page(uint8_t *p, int kind, uint64_t seed)
{
	static const char *words[] = {"GET ", "/index.html ", "HTTP/1.1\r\n", "Host: ",
				      "example.org ", "content-type: ", "text/plain ", "{\"id\": ",
				      "42, ", "\"name\": \"lttle\"} ", "\n", "the ", "quick ", "fox "};
	switch (kind) {
	case 0:
		memset(p, 0, PG);
		break;
	case 1:
		for (size_t i = 0; i < PG; i += 8) {
			uint64_t v = rng();
			memcpy(p + i, &v, 8);
		}
		break;
	case 2: {
		size_t i = 0;
		while (i < PG) {
			const char *w = words[rng() % LT_ARRAY_LEN(words)];
			size_t n = strlen(w);
			if (n > PG - i)
				n = PG - i;
			memcpy(p + i, w, n);
			i += n;
		}
		break;
	}
	default:
		for (size_t i = 0; i < PG; i += 8)
			memcpy(p + i, &seed, 8);
		break;
	}
}

/* Fills `pages` pages at p with a mix: ~1/3 zero, the rest mixed. */
static inline void fill_mixed(uint8_t *p, size_t pages)
{
	for (size_t i = 0; i < pages; i++)
		fill_page(p + i * PG, (int)(rng() % 4), i * 0x1234567ull);
}

static inline char *tmpdir_new(void)
{
	char tmpl[] = "/tmp/lttle-snaptest.XXXXXX";
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

static inline int read_whole(const char *path, uint8_t **buf, size_t *len)
{
	char *b;
	if (lt_read_file(path, 1u << 30, &b, len) < 0)
		return -1;
	*buf = (uint8_t *)b;
	return 0;
}

static inline int write_whole(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	int rc = lt_write_all(fd, buf, len);
	close(fd);
	return rc;
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static inline void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void wr64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Table entry i of a snapshot image. */
static inline uint8_t *tab(uint8_t *img, size_t i) { return img + rd64(img + 72) + 40 * i; }
static inline size_t nsec(const uint8_t *img) { return rd32(img + 68); }

/* Table index of the first section of this type, or -1. */
static inline int find_sec(uint8_t *img, uint32_t type)
{
	for (size_t i = 0; i < nsec(img); i++)
		if (rd32(tab(img, i)) == type)
			return (int)i;
	return -1;
}

/* Recomputes every blob section checksum, the table and header checksums,
 * as a writer would: lets a test reach the checks behind them. */
static inline void reseal(uint8_t *img, size_t len)
{
	if (rd64(img + 72) > len || 40 * nsec(img) > len - rd64(img + 72)) {
		wr64(img + 120, XXH3_64bits(img, 120)); /* the table is out of reach */
		return;
	}
	for (size_t i = 0; i < nsec(img); i++) {
		uint8_t *e = tab(img, i);
		uint64_t off = rd64(e + 16), n = rd64(e + 24);
		if ((rd32(e + 8) & 2) == 0 && off <= len && n <= len - off)
			wr64(e + 32, XXH3_64bits(img + off, n));
	}
	wr64(img + 96, XXH3_64bits(tab(img, 0), 40 * nsec(img)));
	wr64(img + 120, XXH3_64bits(img, 120));
}

#endif
