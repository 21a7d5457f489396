/* snapshot internals shared by the writer, reader and restore paths.
 * On-disk layout: docs/snapshot-format.md. */
#ifndef LTTLE_SNAP_INT_H
#define LTTLE_SNAP_INT_H

#include "snapshot/snapshot.h"
#include "util/util.h"

#include <pthread.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SNAP_MAGIC "LTTLSNAP"
#define SNAP_HEADER_SIZE 128u
#define SNAP_TABLE_ENTRY 40u
#define SNAP_TEMPLATE_FIELD 32u
#define SNAP_INDEX_HEADER 32u
#define SNAP_REGION_REC 16u
#define SNAP_CHUNK_REC 24u
#define SNAP_ENTRY_REC 24u
#define SNAP_WS_HEADER 8u
#define SNAP_MAX_REGIONS 1024u
#define SNAP_MAX_THREADS 64
#define SNAP_MAX_INDEX (256u << 20) /* memory index section */

/* header flags */
#define SNAP_HF_WORKING_SET 1u
#define SNAP_HF_KNOWN SNAP_HF_WORKING_SET
/* section flags */
#define SNAP_SF_OPTIONAL 1u /* readers may skip an unknown type */
#define SNAP_SF_CHUNKED 2u  /* integrity per chunk; checksum field is 0 */
#define SNAP_SF_KNOWN (SNAP_SF_OPTIONAL | SNAP_SF_CHUNKED)

/* Header field offsets. */
enum {
	HO_MAGIC = 0,
	HO_VERSION = 8,
	HO_HEADER_SIZE = 12,
	HO_TEMPLATE = 16,
	HO_MEM_SIZE = 48,
	HO_PAGE_SIZE = 56,
	HO_CHUNK_SIZE = 60,
	HO_FLAGS = 64,
	HO_SECTION_COUNT = 68,
	HO_TABLE_OFFSET = 72,
	HO_FILE_SIZE = 80,
	HO_CREATED = 88,
	HO_TABLE_SUM = 96,
	HO_RESERVED = 104,
	HO_HEADER_SUM = 120,
};

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* XXH3-64, seed 0: the checksum of every section, chunk and the header. */
uint64_t snap_sum(const void *data, size_t len);
/* XXH3-128 of the concatenated parts as 32 hex digits: names derived
 * files (the memory cache), not a security boundary. */
#define SNAP_NAME128_HEX 33
void snap_name128(const struct iovec *parts, int n, char hex[SNAP_NAME128_HEX]);

struct snap_section {
	uint32_t type, index, flags;
	uint64_t offset, length, checksum;
	uint8_t *data; /* loaded blob (NUL-terminated); NULL for MEM_DATA */
};

struct snap_chunk {
	uint64_t offset; /* within the memory data section */
	uint32_t clen, rlen;
	uint64_t sum;
};

struct snap_entry {
	uint64_t gpage; /* guest page number (gpa / page size) */
	uint32_t chunk, poff, count;
};

struct lt_snap {
	int fd;
	char *name;
	char template_id[SNAP_TEMPLATE_FIELD];
	uint64_t mem_size, created_ns, file_size;
	uint32_t chunk_size, flags;
	dev_t dev;
	ino_t ino;
	int64_t mtime_ns;

	struct snap_section *secs;
	size_t nsecs;
	uint64_t data_off, data_len; /* memory data section */
	const uint8_t *index_raw;
	size_t index_len;

	struct lt_snap_region *regions;
	size_t nregions;
	struct snap_chunk *chunks;
	size_t nchunks;
	uint32_t max_clen;
	struct snap_entry *entries; /* sorted by gpage */
	size_t nentries;
	uint64_t stored_pages;
	/* Entries of chunk c: by_chunk[chunk_first[c] .. chunk_first[c+1]). */
	uint32_t *by_chunk;
	uint32_t *chunk_first;

	uint32_t *ws;
	size_t nws;
	const char *config;
	size_t nvcpus;
};

/* Decodes chunk c: reads its frame into cbuf (>= max_clen bytes), checks
 * the checksum, frame size and content size, decompresses into out
 * (>= chunk_size bytes). Thread-safe with distinct buffers and dctx. */
struct ZSTD_DCtx_s;
int snap_decode_chunk(struct lt_snap *s, uint32_t c, uint8_t *cbuf, uint8_t *out,
		      struct ZSTD_DCtx_s *dctx);

/* Resolves each entry to its host address in the targets; fails if any
 * stored page lies outside them. *hosts is malloc'd (nentries). */
int snap_resolve_targets(struct lt_snap *s, const struct lt_snap_region *t, size_t n,
			 uint8_t ***hosts);
int snap_check_targets(const struct lt_snap_region *t, size_t n, const char *what);

int snap_default_threads(int threads);

/* First error from worker threads, copied back to the caller. */
struct snap_err {
	pthread_mutex_t lock;
	int failed;
	char msg[512];
};
void snap_err_init(struct snap_err *e);
static inline int snap_err_failed(struct snap_err *e)
{
	return __atomic_load_n(&e->failed, __ATOMIC_ACQUIRE);
}
void snap_err_set(struct snap_err *e); /* from lt_errmsg() of this thread */
int snap_err_raise(struct snap_err *e); /* re-records in the caller; -1 */

#endif
