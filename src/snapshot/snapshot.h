/* snapshot: the lttle snapshot file format, its memory codec and the three
 * memory restore strategies (eager, lazy via userfaultfd, cached mmap).
 *
 * The module knows nothing about KVM: non-memory state travels as opaque
 * byte blobs tagged with a section type (and an index, e.g. the vCPU id),
 * and guest memory is described by regions of host memory. The byte layout
 * is specified in docs/snapshot-format.md.
 *
 * Typical capture:
 *     lt_snap_writer_begin(&w, path, &opts);
 *     lt_snap_writer_add_section(w, LT_SNAP_SEC_CONFIG, 0, json, len);
 *     lt_snap_writer_add_section(w, LT_SNAP_SEC_VCPU, id, blob, len); ...
 *     lt_snap_writer_add_memory(w, regions, n);
 *     lt_snap_writer_commit(w, &stats);  (atomic; frees w)
 * Typical restore:
 *     lt_snap_open(&s, path, "template-id");   (validates everything)
 *     lt_snap_section(s, LT_SNAP_SEC_VCPU, id, &data, &len); ...
 *     lt_snap_restore_eager(s, targets, n, 0);   or lazy / cached below
 *     lt_snap_close(s);
 */
#ifndef LTTLE_SNAPSHOT_H
#define LTTLE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LT_SNAP_VERSION 1
#define LT_SNAP_PAGE_SIZE 4096u
#define LT_SNAP_TEMPLATE_MAX 31 /* bytes of CPU template id, without NUL */
#define LT_SNAP_DEFAULT_CHUNK (512u << 10)
#define LT_SNAP_MIN_CHUNK (64u << 10)
#define LT_SNAP_MAX_CHUNK (64u << 20)
#define LT_SNAP_MAX_SECTIONS 4096
#define LT_SNAP_MAX_BLOB (64u << 20) /* any non-memory section */

/* Section types (on-disk values; never renumber). */
enum lt_snap_section_type {
	LT_SNAP_SEC_CONFIG = 1,       /* VM config, JSON object text */
	LT_SNAP_SEC_VCPU = 2,         /* one per vCPU; index = vCPU id */
	LT_SNAP_SEC_VM_STATE = 3,     /* irqchip, PIT, clock: opaque */
	LT_SNAP_SEC_DEVICE_STATE = 4, /* device models: opaque */
	LT_SNAP_SEC_MEM_INDEX = 5,    /* regions, chunk table, page ranges */
	LT_SNAP_SEC_MEM_DATA = 6,     /* concatenated zstd frames */
	LT_SNAP_SEC_WORKING_SET = 7,  /* chunk ids in first-touch order */
};

/* A range of guest memory and the host memory backing it. Used both to
 * capture (source) and to restore (target). */
struct lt_snap_region {
	uint64_t gpa;  /* guest physical address, page aligned */
	void *host;    /* page aligned */
	uint64_t size; /* bytes, page aligned */
	/* Capture only, both optional: */
	const uint8_t *present; /* bit i (LSB first) = page i may be non-zero;
	                           NULL = every page may be. E.g. the
	                           KVM dirty log, ORed since boot. */
	uint32_t flags;         /* LT_SNAP_REGION_* */
};
/* The region is private anonymous memory that was never populated from a
 * file or by userfaultfd: pages mincore() reports non-resident are then
 * known to be zero and are skipped without being read. Ignored while swap
 * is enabled (a swapped-out page is non-resident yet holds data). */
#define LT_SNAP_REGION_ANON 1u

/* ---- writer ------------------------------------------------------------ */

struct lt_snap_writer_opts {
	const char *cpu_template; /* required, 1..31 printable ASCII bytes */
	uint32_t chunk_size;      /* 0 = 512 KiB; power of two, 64 KiB..64 MiB */
	int level;                /* zstd level; 0 = default (1) */
	int threads;              /* 0 = online CPUs */
};

struct lt_snap_writer_stats {
	uint64_t pages_scanned;   /* pages read by the zero check */
	uint64_t pages_skipped;   /* skipped by bitmap or mincore, never read */
	uint64_t pages_zero;      /* read and found zero */
	uint64_t pages_stored;    /* non-zero pages written */
	uint64_t chunks;
	uint64_t compressed_bytes;
	uint64_t file_size;       /* after commit */
	uint64_t scan_ns, compress_ns; /* wall time of the two phases */
};

struct lt_snap_writer;
/* Creates a temp file beside path; nothing appears under path until commit. */
int lt_snap_writer_begin(struct lt_snap_writer **w, const char *path,
			 const struct lt_snap_writer_opts *opts);
/* Copies the blob. Sections must be added before the memory. */
int lt_snap_writer_add_section(struct lt_snap_writer *w, uint32_t type, uint32_t index,
			       const void *data, size_t len);
/* Chunk ids (as the lazy restore reports them) to prefetch first. Only
 * before the memory; ids are checked against the chunk count at commit. */
int lt_snap_writer_set_working_set(struct lt_snap_writer *w, const uint32_t *ids, size_t n);
/* Scans, compresses (all threads) and writes the memory. Once per writer.
 * Regions must not overlap in guest address space. The memory must not
 * change until this returns. */
int lt_snap_writer_add_memory(struct lt_snap_writer *w, const struct lt_snap_region *regions,
			      size_t n);
/* Writes index, table and header, fsyncs and renames. Frees w either way. */
int lt_snap_writer_commit(struct lt_snap_writer *w, struct lt_snap_writer_stats *stats);
/* Discards everything; no file appears. NULL is fine. */
void lt_snap_writer_abort(struct lt_snap_writer *w);

/* ---- reader ------------------------------------------------------------ */

struct lt_snap;
/* Opens and validates the whole file structure: header, version, template
 * (skipped when expect_template is NULL), sizes, section table bounds and
 * overlaps, every section checksum, the memory index and working set.
 * Memory chunk frames are verified when decompressed. */
int lt_snap_open(struct lt_snap **s, const char *path, const char *expect_template);
/* Same from an open fd (duplicated; the caller keeps its own). name is used
 * in messages. */
int lt_snap_open_fd(struct lt_snap **s, int fd, const char *name, const char *expect_template);
void lt_snap_close(struct lt_snap *s);

struct lt_snap_section_info {
	uint32_t type, index, flags;
	uint64_t offset, length;
};
const char *lt_snap_template(const struct lt_snap *s);
uint64_t lt_snap_mem_size(const struct lt_snap *s);
uint32_t lt_snap_chunk_size(const struct lt_snap *s);
uint64_t lt_snap_created_ns(const struct lt_snap *s);
size_t lt_snap_section_count(const struct lt_snap *s);
/* Section i in table order; data stays valid until lt_snap_close. The
 * memory data section has no blob in memory (*data = NULL). */
int lt_snap_section_at(const struct lt_snap *s, size_t i, struct lt_snap_section_info *info,
		       const void **data);
/* The section with this type and index; fails (with a message) if absent. */
int lt_snap_section(const struct lt_snap *s, uint32_t type, uint32_t index, const void **data,
		    size_t *len);
bool lt_snap_has_section(const struct lt_snap *s, uint32_t type, uint32_t index);
/* Number of vCPU sections; their indexes are 0..n-1 (checked on open). */
size_t lt_snap_vcpu_count(const struct lt_snap *s);
/* The VM config text (NUL-terminated), or NULL if the file has none. */
const char *lt_snap_config(const struct lt_snap *s);

struct lt_snap_mem_info {
	uint64_t regions, chunks, entries;
	uint64_t stored_pages;     /* non-zero pages in the file */
	uint64_t compressed_bytes; /* memory data section length */
};
void lt_snap_mem_info(const struct lt_snap *s, struct lt_snap_mem_info *info);
/* Guest regions recorded at capture (gpa, size; host is NULL). */
const struct lt_snap_region *lt_snap_regions(const struct lt_snap *s, size_t *n);
/* Working-set chunk ids in prefetch order (NULL, 0 when none). */
const uint32_t *lt_snap_working_set(const struct lt_snap *s, size_t *n);

/* ---- restore ----------------------------------------------------------- */

/* Targets are checked first: page aligned, no overlaps, and every stored
 * page must fall inside one target. Stored pages are written; zero pages
 * are left untouched (targets must be zero-filled, e.g. fresh anonymous
 * memory). */

/* Decompresses every chunk (threads; 0 = online CPUs) into the targets.
 * Returns 0 only when every chunk verified; on failure the target memory
 * is partly written and must be discarded. */
int lt_snap_restore_eager(struct lt_snap *s, const struct lt_snap_region *targets, size_t n,
			  int threads);
/* Decompresses one chunk into buf (chunk_size bytes); returns its length.
 * For tools and the fuzzer. */
int64_t lt_snap_read_chunk(struct lt_snap *s, uint32_t chunk, void *buf, size_t buf_len);

/* Lazy: userfaultfd serves first touches, decompressing the whole chunk
 * holding the address (UFFDIO_COPY) or mapping zero pages over holes
 * (UFFDIO_ZEROPAGE). A prefetch thread installs the working-set chunks
 * first. The snapshot must stay open until lt_snap_lazy_stop. */
struct lt_snap_lazy_opts {
	bool no_prefetch; /* ignore the working set (use when recording one) */
	bool fill_all;    /* after the working set, install every other chunk */
	int handlers;     /* fault-serving threads (e.g. one per vCPU); 0 = 1 */
	/* Called (from the handler thread) if a chunk fails verification or
	 * userfaultfd fails; the faulting access can never be served, so the
	 * caller must stop the guest. NULL: log and _exit(70). */
	void (*on_error)(void *arg, const char *msg);
	void *arg;
};
struct lt_snap_lazy_stats {
	uint64_t faults;            /* page-fault messages handled */
	uint64_t zero_fills;        /* faults served with UFFDIO_ZEROPAGE */
	uint64_t chunks_faulted;    /* chunks decompressed on a fault */
	uint64_t chunks_prefetched; /* chunks installed by the prefetcher */
	uint64_t fault_ns;          /* total handler time for faulted chunks */
	bool failed;
};
struct lt_snap_lazy;
/* Tries the userfaultfd syscall (kernel-mode faults included, as KVM needs),
 * then /dev/userfaultfd; LTTLE_UFFD_DEV=1 in the environment skips the
 * syscall. Targets must be private anonymous memory, not yet touched. */
int lt_snap_lazy_start(struct lt_snap_lazy **l, struct lt_snap *s,
		       const struct lt_snap_region *targets, size_t n,
		       const struct lt_snap_lazy_opts *opts);
void lt_snap_lazy_stats(struct lt_snap_lazy *l, struct lt_snap_lazy_stats *st);
/* Chunk ids first touched by faults within max_ms of start (0 = any time),
 * in touch order; *ids is malloc'd. The input for a working set. */
int lt_snap_lazy_touched(struct lt_snap_lazy *l, uint64_t max_ms, uint32_t **ids, size_t *n);
/* Waits until the prefetcher is done (fill_all: all memory is in). */
void lt_snap_lazy_wait_prefetch(struct lt_snap_lazy *l);
/* Stops the threads, unregisters the targets and frees l; the memory stays
 * mapped. From then on every page not yet installed reads as zero, so call
 * it once the guest is gone, or after fill_all + lt_snap_lazy_wait_prefetch
 * to detach from a running guest. NULL is fine. */
void lt_snap_lazy_stop(struct lt_snap_lazy *l);

/* Cached: the memory decompressed once into a sparse raw file in cache_dir
 * (created atomically if missing; regions laid out back to back in the
 * order lt_snap_regions gives), keyed by the memory index and the snapshot
 * file's identity. *path is malloc'd. */
int lt_snap_cache_prepare(struct lt_snap *s, const char *cache_dir, int threads, char **path);
/* Maps the cache file MAP_PRIVATE|MAP_FIXED over each target (writes stay
 * private to this mapping; clean pages are shared page cache). Each target
 * must lie inside one snapshot region. */
int lt_snap_cache_map(struct lt_snap *s, const char *cache_path,
		      const struct lt_snap_region *targets, size_t n);

/* Working-set recording: rewrites the snapshot at path atomically with its
 * working set replaced by ids (duplicates dropped, order kept; n = 0
 * removes it). */
int lt_snap_record_working_set(const char *path, const char *expect_template,
			       const uint32_t *ids, size_t n);

#endif
