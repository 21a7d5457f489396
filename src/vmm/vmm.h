/* vmm: lttle's own KVM microVM monitor. One process runs one VM.
 *
 * Life cycle
 *   struct lt_vm_config cfg; lt_vm_config_init(&cfg);  fill in fields
 *   lt_vm_create(&cfg, &vm)    KVM VM, memory slots (before the irqchip:
 *                              setting slots after it costs ~7 ms),
 *                              irqchip, PIT, vCPUs, CPUID, devices
 *   lt_vm_boot(vm)             load kernel/initrd, zero page, page tables,
 *                              BSP registers. A snapshot restore skips this
 *                              and loads saved state instead (a "shell").
 *   lt_vm_start(vm)            vCPU threads + one I/O thread
 *   lt_vm_pause / lt_vm_resume all vCPUs (from a non-vCPU thread)
 *   lt_vm_wait(vm, &exit)      blocks until the VM has stopped
 *   lt_vm_destroy(vm)
 *
 * Guest events (src/vmm/guest_abi.h) are parsed per vCPU and delivered to
 * cfg.on_event in the vCPU thread, at the exit of the '\n' that completes
 * the line. Returning LT_VM_ACT_PAUSE pauses every vCPU right there: each
 * vCPU re-enters KVM_RUN once with immediate_exit so that the pending port
 * I/O is completed and its state is consistent, then parks. Once all are
 * parked cfg.on_paused runs (same vCPU thread) — this is where a snapshot
 * is taken — and its return value says what happens next.
 *
 * State for snapshots: every piece of state is a byte blob with a
 * versioned, tagged little-endian layout (see "State blobs" below), saved
 * and loaded while the VM is paused (or before it first runs).
 *
 * Errors follow util.h: 0 / negative with lt_errmsg().
 */
#ifndef LTTLE_VMM_H
#define LTTLE_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "util/util.h"

#define LT_VM_MAX_VCPUS 64
#define LT_VM_MAX_DISKS 8

/* Guest physical layout. RAM is [0, min(mem, MMIO_START)) and, for larger
 * guests, [4 GiB, 4 GiB + rest). The hole holds the virtio-mmio windows,
 * the IOAPIC, the LAPIC and KVM's TSS/identity map pages. */
#define LT_VM_MMIO_START 0xC0000000ULL
#define LT_VM_HIGH_START 0x100000000ULL
#define LT_VM_VIRTIO_BASE 0xD0000000ULL
#define LT_VM_VIRTIO_SIZE 0x1000ULL
#define LT_VM_VIRTIO_IRQ0 5

enum lt_cpu_template { LT_CPU_TEMPLATE_HOST = 0, LT_CPU_TEMPLATE_BASELINE = 1 };
int lt_cpu_template_parse(const char *s, enum lt_cpu_template *out);
const char *lt_cpu_template_name(enum lt_cpu_template t);

enum lt_mem_backing {
	LT_MEM_ANON = 0,    /* MAP_PRIVATE|MAP_ANONYMOUS */
	LT_MEM_FILE_PRIVATE, /* file, MAP_PRIVATE (copy on write) */
	LT_MEM_FILE_SHARED,  /* file, MAP_SHARED */
};

/* A guest event from the guest device (one completed line). */
enum lt_guest_event_type {
	LT_GEV_READY = 1,
	LT_GEV_LISTEN_BEFORE,
	LT_GEV_LISTEN_AFTER,
	LT_GEV_BIND_BEFORE,
	LT_GEV_BIND_AFTER,
	LT_GEV_EXIT,
	LT_GEV_TRIGGER,
	LT_GEV_HOLD,
	LT_GEV_RELEASE,
	LT_GEV_LOG,
	LT_GEV_POWEROFF,
	LT_GEV_UNKNOWN, /* well-formed line with an unknown event name */
};
struct lt_guest_event {
	enum lt_guest_event_type type;
	int vcpu;
	uint16_t port; /* listen/bind */
	int32_t code;  /* ret (listen/bind-after), exit code, trigger code */
	char name[32]; /* the event word as the guest wrote it */
	char text[128]; /* log TEXT, or the raw line for unknown events */
	uint64_t seq;   /* 1, 2, ... per VM */
	uint64_t mono_ns;
};
const char *lt_guest_event_name(enum lt_guest_event_type t);
/* Parses one line (without '\n'). Returns 0, or -1 for a malformed line
 * (bad numbers, missing args). Exposed for tests. */
int lt_guest_event_parse(const char *line, size_t len, struct lt_guest_event *ev);
/* The event as a control-socket JSON object ({"event","seq","vcpu",...});
 * malformed lines (ok false) become "malformed" with their text. NULL on
 * allocation failure. Caller owns the reference. */
json_t *lt_guest_event_json(const struct lt_guest_event *ev, bool ok);

/* What a callback asks for. */
enum lt_vm_action {
	LT_VM_ACT_CONTINUE = 0,
	LT_VM_ACT_PAUSE,  /* on_event: pause all vCPUs now */
	LT_VM_ACT_STOP,   /* stop the VM */
};

struct lt_vm;

enum lt_vm_exit_reason {
	LT_VM_EXIT_NONE = 0,
	LT_VM_EXIT_HALT,     /* every vCPU halted with interrupts off */
	LT_VM_EXIT_RESET,    /* i8042 reset, triple fault, KVM reset event */
	LT_VM_EXIT_POWEROFF, /* guest "poweroff" event or KVM shutdown event */
	LT_VM_EXIT_STOPPED,  /* lt_vm_stop / control "stop" / callback */
	LT_VM_EXIT_ERROR,    /* KVM internal error, failed entry, ... */
};
const char *lt_vm_exit_reason_name(enum lt_vm_exit_reason r);

struct lt_vm_exit {
	enum lt_vm_exit_reason reason;
	bool guest_exit_reported; /* guest said "exit CODE" */
	int guest_exit_code;
	char message[256]; /* detail for errors */
};

struct lt_vm_disk {
	const char *path;    /* raw image (the base when overlay is set) */
	bool read_only;
	const char *overlay; /* copy-on-write overlay file, created if missing */
	char id[21];         /* VIRTIO_BLK_T_GET_ID answer (<= 20 bytes) */
};

struct lt_vm_config {
	uint64_t mem_bytes;          /* default 128 MiB */
	int vcpus;                   /* default 1 */
	enum lt_cpu_template cpu_template;
	/* Memory backing; file ones map mem_file at offset 0 for RAM below
	 * the hole and right after it for RAM above 4 GiB. */
	enum lt_mem_backing mem_backing;
	const char *mem_file;
	const char *kernel;  /* vmlinux ELF or bzImage */
	const char *initrd;  /* optional */
	const char *cmdline; /* user part; devices are appended */
	int serial_out_fd;   /* -1: discard; the fd stays the caller's */
	int serial_in_fd;    /* -1: none */
	struct lt_vm_disk disks[LT_VM_MAX_DISKS];
	int ndisks;
	const char *vsock_uds; /* virtio-vsock host socket path, or NULL */
	uint32_t vsock_cid;    /* default 3 */
	const char *tap;       /* TAP interface name, or NULL */
	const char *control;   /* control socket path, or NULL */
	int events_fd;         /* -1, or fd to write JSON event lines to */
	bool no_ioeventfd;     /* force in-exit handling (tests) */
	bool no_coalesced_io;  /* every serial byte exits to the VMM (tests) */
	/* Callbacks; run in vCPU threads. NULL = continue. */
	enum lt_vm_action (*on_event)(struct lt_vm *vm, const struct lt_guest_event *ev,
				      void *user);
	/* All vCPUs are parked after on_event asked to pause; the event is the
	 * one that asked. CONTINUE resumes, PAUSE stays paused (until
	 * lt_vm_resume), STOP stops the VM. */
	enum lt_vm_action (*on_paused)(struct lt_vm *vm, const struct lt_guest_event *ev,
				       void *user);
	void *user;
};
void lt_vm_config_init(struct lt_vm_config *cfg);

/* Creates everything but does not load a kernel: the result is a "shell"
 * into which a snapshot's state can be loaded (lt_vm_load_*). */
int lt_vm_create(const struct lt_vm_config *cfg, struct lt_vm **out);
/* Linux 64-bit boot: kernel, zero page, e820, cmdline, initrd, page
 * tables, GDT, MP table, BSP registers. */
int lt_vm_boot(struct lt_vm *vm);
/* The kernel command line actually given to the guest (after boot). */
const char *lt_vm_cmdline(const struct lt_vm *vm);
int lt_vm_start(struct lt_vm *vm);
/* Blocks until every vCPU is parked with consistent state. Not from a
 * vCPU thread (use LT_VM_ACT_PAUSE there). */
int lt_vm_pause(struct lt_vm *vm);
/* Releases the parked vCPUs and returns without waiting for their threads
 * to run; a pause right after it is still exact (they are still parked). */
int lt_vm_resume(struct lt_vm *vm);
bool lt_vm_is_paused(struct lt_vm *vm);
/* Asks the VM to stop; returns at once. Async-signal-safe. */
void lt_vm_request_stop(struct lt_vm *vm);
int lt_vm_wait(struct lt_vm *vm, struct lt_vm_exit *exit);
void lt_vm_destroy(struct lt_vm *vm);
/* Installs the seccomp allow-list on every thread of the process. Call
 * after lt_vm_start (lt_vm_start does not do it by itself). extra: NULL or
 * a NULL-terminated list of further syscall names a caller needs. */
int lt_vm_seccomp(struct lt_vm *vm, const char *const *extra);
/* After loading state: the guest device answers "!restored WALL_NS
 * ENTROPY" to the report the snapshot was taken at (its unread reply) and,
 * if there is none, to the next report. Call after lt_vm_load_devices. */
void lt_vm_mark_restored(struct lt_vm *vm);

struct lt_vm_stats {
	uint64_t exits;       /* all vCPUs */
	uint64_t io_exits;
	uint64_t mmio_exits;
	uint64_t events;
	uint64_t last_pause_ns;  /* duration of the last pause */
	uint64_t last_resume_ns;
};
void lt_vm_get_stats(struct lt_vm *vm, struct lt_vm_stats *st);
int lt_vm_vcpu_count(const struct lt_vm *vm);
enum lt_cpu_template lt_vm_cpu_template(const struct lt_vm *vm);
const struct lt_vm_config *lt_vm_get_config(const struct lt_vm *vm);

/* ---- memory ------------------------------------------------------------ */

struct lt_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
	uint64_t file_offset; /* offset in mem_file for file backings */
	uint32_t slot;
};
/* The RAM regions (stable for the VM's life). */
const struct lt_mem_region *lt_vm_mem_regions(const struct lt_vm *vm, size_t *n);
/* Host pointer for [gpa, gpa+len) if it lies in one RAM region. */
void *lt_vm_gpa_to_hva(const struct lt_vm *vm, uint64_t gpa, uint64_t len);
/* Replaces region idx's memory with fd at offset (MAP_FIXED over the
 * slot's host range; KVM follows the new mapping). shared: MAP_SHARED,
 * else MAP_PRIVATE. fd -1 maps fresh anonymous memory. VM paused or not
 * started. */
int lt_vm_mem_remap(struct lt_vm *vm, size_t idx, int fd, uint64_t offset, bool shared);

/* ---- state blobs ---------------------------------------------------------
 * Each blob: "LTST" u32 magic, u16 layout version, u16 kind, u32 payload
 * length, then tagged records (u32 tag, u32 length, bytes). Loaders verify
 * the magic, kind, version and every length; unknown tags are skipped,
 * required ones missing are errors. KVM structs are stored as the kernel
 * defines them (x86-64 ABI, stable). Save/load only while paused or
 * before the first run. */
enum lt_state_kind {
	LT_STATE_VCPU = 1,   /* regs, sregs, fpu, xsave, xcrs, msrs, lapic,
				events, mp_state, debugregs */
	LT_STATE_VM = 2,     /* PIC master/slave, IOAPIC, PIT2, kvmclock */
	LT_STATE_DEVICES = 3, /* serial, guest device, virtio transports,
				 queues, blk, net, vsock */
};
int lt_vm_save_vcpu(struct lt_vm *vm, int idx, struct lt_buf *out);
int lt_vm_load_vcpu(struct lt_vm *vm, int idx, const void *blob, size_t n);
int lt_vm_save_vm(struct lt_vm *vm, struct lt_buf *out);
/* Loads VM state; kvmclock is set to the saved value (pass adjust_ns to
 * move guest time forward, e.g. the wall time the snapshot slept). */
int lt_vm_load_vm(struct lt_vm *vm, const void *blob, size_t n, uint64_t adjust_ns);
int lt_vm_save_devices(struct lt_vm *vm, struct lt_buf *out);
/* Vsock connections do not survive: the device sends a transport reset
 * event to the guest after a load. */
int lt_vm_load_devices(struct lt_vm *vm, const void *blob, size_t n);
/* Marks the VM as booted from loaded state (so lt_vm_start runs it). */
void lt_vm_set_loaded(struct lt_vm *vm);

/* ---- command-line options (cli.c) -------------------------------------
 * The VM options `lttle run` takes and hands on to the lean lttle-vmm:
 * LT_VM_CLI_OPTIONS goes into both getopt_long tables (<getopt.h>), and
 * lt_vm_cli_option applies one of them. */
enum {
	LT_VM_OPT_KERNEL = 1000, LT_VM_OPT_MEM, LT_VM_OPT_CPUS, LT_VM_OPT_INITRD,
	LT_VM_OPT_VSOCK, LT_VM_OPT_VSOCK_CID, LT_VM_OPT_TAP, LT_VM_OPT_CONTROL,
	LT_VM_OPT_TEMPLATE, LT_VM_OPT_NO_IOEVENTFD, LT_VM_OPT_NO_COALESCE,
};
#define LT_VM_CLI_OPTIONS                                                   \
	{"kernel", required_argument, 0, LT_VM_OPT_KERNEL},                  \
	{"mem", required_argument, 0, LT_VM_OPT_MEM},                        \
	{"cpus", required_argument, 0, LT_VM_OPT_CPUS},                      \
	{"initrd", required_argument, 0, LT_VM_OPT_INITRD},                  \
	{"vsock", required_argument, 0, LT_VM_OPT_VSOCK},                    \
	{"vsock-cid", required_argument, 0, LT_VM_OPT_VSOCK_CID},            \
	{"tap", required_argument, 0, LT_VM_OPT_TAP},                        \
	{"control", required_argument, 0, LT_VM_OPT_CONTROL},                \
	{"cpu-template", required_argument, 0, LT_VM_OPT_TEMPLATE},          \
	{"no-ioeventfd", no_argument, 0, LT_VM_OPT_NO_IOEVENTFD},            \
	{"no-coalesced-io", no_argument, 0, LT_VM_OPT_NO_COALESCE}
/* 1: id is one of them and was applied to cfg; 0: not one of them;
 * -1: a bad value (lt_errmsg() names the option and the value). */
int lt_vm_cli_option(int id, const char *arg, struct lt_vm_config *cfg);
/* Disk 0 "lttle-rootfs" from rootfs (if any), then "lttle-diskN" for each
 * extra disk (read-write): how every command lays out a VM's disks. */
void lt_vm_config_disks(struct lt_vm_config *cfg, const char *rootfs, bool read_only,
			const char *overlay, const char *const *extra, int nextra);
/* lttle-vmm's main: runs one VM from `lttle run`'s resolved options
 * (src/vmm/bin/lttle-vmm.c lists them) until it ends; the exit status of
 * `lttle run`. `lttle run` calls it in-process when it cannot exec. */
int lt_vmm_main(int argc, char **argv);

#endif
