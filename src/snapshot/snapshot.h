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

/* ==== VM capture / restore (vmconfig.c, vmsnap.c, vmhost.c) ==============
 * Everything above is VMM-agnostic. This section ties the format to the
 * lttle VMM (src/vmm/vmm.h): which sections a VM snapshot holds, taking
 * one from a paused VM, loading one into a created VM (a "shell"), and the
 * VM host that runs one VM in a process behind a control socket.
 *
 * A VM snapshot: CONFIG (the JSON below), one VCPU section per vCPU
 * (lt_vm_save_vcpu blob), VM_STATE (lt_vm_save_vm), DEVICE_STATE
 * (lt_vm_save_devices), the memory; CPU template id = the VMM's template
 * name ("host", "baseline"). docs/snapshot.md has the long form. */

struct lt_vm;
struct lt_vm_config;
struct lt_vm_exit;
struct lt_guest_event;

/* ---- capture triggers ---- */
enum lt_trigger_kind {
	LT_TRIGGER_NONE = 0,
	LT_TRIGGER_FIRST_LISTEN, /* the first "listen-after P 0" */
	LT_TRIGGER_NTH_LISTEN,   /* the n-th successful listen */
	LT_TRIGGER_LISTEN_PORT,  /* a successful listen on port */
	LT_TRIGGER_READY,        /* "ready" (userspace up) */
	LT_TRIGGER_MANUAL,       /* "trigger [CODE]" */
};
struct lt_trigger {
	enum lt_trigger_kind kind;
	uint32_t n;       /* NTH_LISTEN */
	uint16_t port;    /* LISTEN_PORT */
	uint32_t listens; /* state: successful listens seen */
};
/* "first-listen", "nth-listen:N", "listen-port:P", "userspace-ready",
 * "manual". -1 with a message otherwise. */
int lt_trigger_parse(const char *s, struct lt_trigger *t);
/* The canonical text of t (as lt_trigger_parse takes it). */
const char *lt_trigger_str(const struct lt_trigger *t, char *buf, size_t len);
/* Does this guest event fire t? Updates t's listen count. */
bool lt_trigger_fires(struct lt_trigger *t, const struct lt_guest_event *ev);

/* ---- the VM config section (JSON) ---- */
#define LT_VMSNAP_CONFIG_VERSION 1
#define LT_VMSNAP_MAX_DISKS 8
#define LT_VMSNAP_MAX_REGIONS 2
#define LT_VMSNAP_STR_MAX 4096 /* any string in the config */

struct lt_vmsnap_disk {
	char *path;
	char *overlay; /* NULL: none */
	bool read_only;
	char id[21];
	uint64_t size;     /* rootfs identity: size and mtime of path at capture */
	uint64_t mtime_ns;
};
struct lt_vmsnap_config {
	uint32_t version;
	uint64_t mem_bytes;
	int vcpus;
	char cpu_template[32];
	struct {
		uint64_t gpa, size;
	} regions[LT_VMSNAP_MAX_REGIONS];
	int nregions;
	char *kernel;  /* as booted (informative) */
	char *cmdline; /* the full command line the guest got */
	struct lt_vmsnap_disk disks[LT_VMSNAP_MAX_DISKS];
	int ndisks;
	bool vsock;
	uint32_t vsock_cid;
	char *tap; /* NULL: no virtio-net */
	uint64_t created_wall_ns;
	char *reason; /* what captured it: "trigger first-listen", "request" */
};
/* From a VM (created; booted or restored). reason may be NULL. */
int lt_vmsnap_config_from_vm(struct lt_vm *vm, const char *reason, struct lt_vmsnap_config *c);
/* JSON text, malloc'd, NUL-terminated. */
int lt_vmsnap_config_encode(const struct lt_vmsnap_config *c, char **json);
/* Parses and validates (types, ranges, the memory layout against
 * mem_bytes, string bounds). Unknown keys are ignored. */
int lt_vmsnap_config_decode(const char *json, size_t len, struct lt_vmsnap_config *c);
void lt_vmsnap_config_free(struct lt_vmsnap_config *c);
/* Fills the VM shape and devices of cfg from c (strings point into c;
 * the caller sets callbacks, fds, vsock_uds, control). */
int lt_vmsnap_config_apply(const struct lt_vmsnap_config *c, struct lt_vm_config *cfg);

/* ---- capture ---- */
struct lt_vmsnap_capture_opts {
	const char *reason;  /* recorded in the config */
	bool mem_fresh_anon; /* guest RAM is anonymous memory this process
				populated only through the guest (not restored
				from a file or userfaultfd): mincore skips */
	int threads;         /* compression threads; 0 = online CPUs */
	int level;           /* zstd level; 0 = default */
	uint32_t chunk_size; /* 0 = default */
};
struct lt_vmsnap_stats {
	uint64_t state_ns; /* vCPU, VM and device state */
	uint64_t total_ns; /* everything, fsync and rename included */
	struct lt_snap_writer_stats mem;
};
/* Writes a snapshot of vm (paused, or inside the on_paused callback, or
 * never started) to path atomically. */
int lt_vmsnap_capture(struct lt_vm *vm, const char *path, const struct lt_vmsnap_capture_opts *o,
		      struct lt_vmsnap_stats *st);

/* ---- restore ---- */
enum lt_vmsnap_mem { LT_VMSNAP_EAGER = 0, LT_VMSNAP_LAZY, LT_VMSNAP_CACHED };
int lt_vmsnap_mem_parse(const char *s, enum lt_vmsnap_mem *m);
const char *lt_vmsnap_mem_name(enum lt_vmsnap_mem m);

struct lt_vmsnap_restore_opts {
	enum lt_vmsnap_mem mem;
	const char *cache_dir; /* cached; NULL = $LTTLE_HOME/cache/memory */
	int threads;           /* eager / cache build; 0 = online CPUs */
	bool no_prefetch;      /* lazy: ignore the working set (recording) */
	bool lazy_fill_all;    /* lazy: install every chunk in the background */
	/* lazy: a chunk failed verification, the guest cannot go on. */
	void (*on_lazy_error)(void *arg, const char *msg);
	void *arg;
};
struct lt_vmsnap_restore_stats {
	uint64_t mem_ns;   /* memory strategy set-up (eager: all of it) */
	uint64_t state_ns; /* vCPU, VM and device state */
	uint64_t clock_adjust_ns; /* kvmclock moved forward by this much */
};
/* What must live as long as the restored VM (the lazy fault server). */
struct lt_vmsnap_restored;
/* Checks that vm (created, never started) has the snapshot's shape:
 * memory layout, vCPUs, CPU template. */
int lt_vmsnap_check_shape(struct lt_vm *vm, const struct lt_snap *s);
/* Loads memory (by strategy), vCPU, VM (kvmclock moved on by the wall
 * time since capture) and device state into vm, marks it restored (the
 * guest's pending report reads "!restored ...") and loaded; the caller
 * then lt_vm_start()s it. s must stay open until lt_vmsnap_restored_free.
 * On failure the VM must be destroyed, never started. */
int lt_vmsnap_restore(struct lt_vm *vm, struct lt_snap *s, const struct lt_vmsnap_restore_opts *o,
		      struct lt_vmsnap_restored **out, struct lt_vmsnap_restore_stats *st);
/* The lazy server (NULL for other strategies). */
struct lt_snap_lazy *lt_vmsnap_restored_lazy(struct lt_vmsnap_restored *r);
/* After the VM has stopped. NULL is fine. */
void lt_vmsnap_restored_free(struct lt_vmsnap_restored *r);

/* ---- the VM host: one VM per process, driven over a control socket ----
 * The control socket speaks JSON lines like the VMM's own (docs/
 * snapshot.md): {"cmd": "status"|"pause"|"resume"|"stop"|"events"|
 * "snapshot"|"restore"}, plus plain-text "restore FILE" for shells. The
 * host also applies the capture trigger and publishes events
 * ({"event": ...}) to subscribers and events_fd. */
struct lt_vmhost_opts {
	const char *control;     /* socket path; NULL: none */
	int control_fd;          /* an inherited connected control socket (a
				    client from the start, e.g. a socketpair
				    end from the engine); -1: none */
	int events_fd;           /* JSON event lines also go here; -1: none */
	struct lt_trigger trigger; /* NONE: no trigger */
	const char *snapshot_out;  /* capture there when the trigger fires;
				      NULL: pause at the trigger and wait */
	bool keep_running;       /* after a trigger capture: continue (else stop) */
	bool no_seccomp;
	struct lt_vmsnap_capture_opts capture;
	struct lt_vmsnap_restore_opts restore; /* for "restore" commands */
	uint64_t record_ws_ms;   /* >0: lazy restores record a working set of
				    the first N ms and store it in the snapshot */
	uint64_t t0_ns;          /* process start (lt_now_ns) for timings */
};
struct lt_vmhost;
int lt_vmhost_new(const struct lt_vmhost_opts *o, struct lt_vmhost **out);
/* Routes cfg's callbacks through the host; cfg->control is cleared (the
 * host serves it). Call before lt_vm_create(cfg). */
void lt_vmhost_hook(struct lt_vmhost *h, struct lt_vm_config *cfg);
/* The VM the host runs (created with a hooked cfg). booted: memory is
 * fresh anonymous memory written only by the guest. */
void lt_vmhost_set_vm(struct lt_vmhost *h, struct lt_vm *vm, bool booted);
/* Restores snapshot path into the host's VM (not started); s may be an
 * already opened snapshot of it (the host takes it) or NULL. */
int lt_vmhost_restore(struct lt_vmhost *h, const char *path, struct lt_snap *s,
		      enum lt_vmsnap_mem mem);
/* Runs the VM: starts it (unless shell: then first serves the control
 * socket until a "restore" arrives), installs seccomp, serves control
 * until the VM ends. Returns 0 with *exit filled, or -1 (nothing ran). */
int lt_vmhost_run(struct lt_vmhost *h, bool shell, struct lt_vm_exit *exit);
/* Stops the VM from a signal handler (async-signal-safe). */
void lt_vmhost_request_stop(struct lt_vmhost *h);
/* Frees the host, its VM and what the restore keeps. NULL is fine. */
void lt_vmhost_free(struct lt_vmhost *h);

#endif
