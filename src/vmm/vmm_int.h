/* Internals shared by the vmm's files (not part of the public API). */
#ifndef LTTLE_VMM_INT_H
#define LTTLE_VMM_INT_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>

#include "vmm/blob.h"
#include "vmm/gmem.h"
#include "vmm/guest_abi.h"
#include "vmm/idle.h"
#include "vmm/ioloop.h"
#include "vmm/vmm.h"

struct lt_virtio_dev;

/* ---- guest device (guestdev.c) ------------------------------------------ */

struct lt_guestdev_vcpu {
	char line[LT_GUEST_LINE_MAX];
	uint32_t len;
	bool discarding;
	char reply[LT_GUEST_LINE_MAX + 1];
	uint32_t reply_len, reply_pos;
};

struct lt_guestdev {
	pthread_mutex_t lock;
	struct lt_guestdev_vcpu *v; /* one per vCPU */
	int nv;
	bool restored; /* next reply is "!restored ..." */
	uint64_t seq;
};
int lt_guestdev_init(struct lt_guestdev *g, int nvcpus);
void lt_guestdev_free(struct lt_guestdev *g);
/* Feeds one byte; returns 1 and fills ev when a line completed (with a
 * parse result: ev->type, or -1 for a malformed line -> returns 2). */
int lt_guestdev_out(struct lt_guestdev *g, int vcpu, uint8_t byte, struct lt_guest_event *ev);
uint8_t lt_guestdev_in(struct lt_guestdev *g, int vcpu);
/* After a restore: unread replies and the next report's reply become
 * "!restored WALL_NS ENTROPY". */
void lt_guestdev_mark_restored(struct lt_guestdev *g);
int lt_guestdev_save(struct lt_guestdev *g, struct lt_buf *b);
int lt_guestdev_load(struct lt_guestdev *g, const void *p, size_t n);

/* ---- serial (serial.c) ---------------------------------------------------- */

#define LT_SERIAL_BASE 0x3f8
#define LT_SERIAL_IRQ 4
#define LT_SERIAL_RX_MAX 1024

struct lt_serial {
	pthread_mutex_t lock;
	uint8_t ier, iir_thre_pending, lcr, mcr, lsr_extra, scr, dll, dlm, fcr;
	uint8_t rx[LT_SERIAL_RX_MAX];
	uint32_t rx_head, rx_len;
	int out_fd;
	uint8_t obuf[1024];
	uint32_t olen;
	bool wrote_any;
	uint64_t first_byte_ns;
	/* Raises the IRQ line (edge); set by the VM, counted in tests. */
	void (*irq)(void *opaque);
	void *irq_opaque;
};
void lt_serial_init(struct lt_serial *s, int out_fd);
void lt_serial_out(struct lt_serial *s, uint16_t off, uint8_t v);
uint8_t lt_serial_in(struct lt_serial *s, uint16_t off);
/* Queues input bytes; returns how many fitted. */
size_t lt_serial_feed(struct lt_serial *s, const uint8_t *data, size_t n);
size_t lt_serial_rx_room(struct lt_serial *s);
void lt_serial_flush(struct lt_serial *s);
bool lt_serial_pending(struct lt_serial *s);
/* A transmit-register write only emits output (no THRE interrupt wanted,
 * no loopback): it may then be coalesced and replayed later. */
bool lt_serial_thr_plain(struct lt_serial *s);
int lt_serial_save(struct lt_serial *s, struct lt_buf *b);
int lt_serial_load(struct lt_serial *s, const void *p, size_t n);

/* ---- coalesced I/O ring (cring.c) ------------------------------------------ */

typedef void (*lt_cring_fn)(void *arg, const struct kvm_coalesced_mmio *e);
/* Entries in a ring of one page. */
uint32_t lt_cring_capacity(long page_size);
/* Replays every entry in order through fn and frees the slots; returns
 * how many. The caller serialises drains of one ring. */
size_t lt_cring_drain(struct kvm_coalesced_mmio_ring *r, uint32_t cap, lt_cring_fn fn, void *arg);

/* ---- the VM ----------------------------------------------------------------- */

enum { LT_VCPU_RUNNING, LT_VCPU_PARKED, LT_VCPU_DONE };

struct lt_vcpu {
	struct lt_vm *vm;
	int idx;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	pid_t tid;
	bool started;
	int stat_fd; /* /proc/self/task/TID/stat for the halt watch */
	uint32_t idle_seen; /* lt_idle sequence at its last idle exit */
};

#define LT_VM_MAX_VIRTIO 12

struct lt_vm {
	struct lt_vm_config cfg; /* strings point into owned copies below */
	char *owned[16 + LT_VM_MAX_DISKS * 2];
	int nowned;
	int kvm_fd, vm_fd;
	int run_size;
	struct lt_mem_region regions[2];
	size_t nregions;
	struct lt_gmem gmem;
	struct lt_vcpu vcpus[LT_VM_MAX_VCPUS];
	int nvcpus;
	struct kvm_cpuid2 *cpuid; /* filtered by the template, shared */
	uint32_t *msr_list;      /* saveable MSRs */
	int nmsrs;
	bool has_irqfd, has_ioeventfd, has_xsave2;
	int xsave_size;
	char *cmdline_full;
	bool booted, loaded;

	/* run state, under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool pause_req;
	atomic_bool stopping;
	bool paused; /* all parked after a pause request */
	bool internal_pause; /* the halt watch's probe: no events */
	int parked;
	int running_threads;
	struct lt_vm_exit exit;
	bool exit_set;
	bool started;
	bool waited;

	/* I/O thread */
	struct lt_ioloop *loop;
	pthread_t io_thread;
	bool io_started;
	int stop_efd;
	uint64_t halt_next_probe_ns;
	int halt_idle_samples;
	struct lt_idle idle; /* LT_GUEST_IDLE_PORT waits */

	/* Coalesced serial transmit (vm.c): NULL without KVM support. */
	struct kvm_coalesced_mmio_ring *cring;
	uint32_t cring_cap;
	pthread_mutex_t cring_lock;
	bool thr_coalesced; /* the zone is registered */

	/* devices */
	struct lt_serial serial;
	struct lt_guestdev guestdev;
	struct lt_virtio_dev *virtio[LT_VM_MAX_VIRTIO];
	int nvirtio;
	struct lt_notify_ctx {
		struct lt_virtio_dev *d;
		int q;
	} notify_ctx[LT_VM_MAX_VIRTIO][4];
	struct lt_control *control;

	/* stats */
	atomic_uint_fast64_t st_exits, st_io, st_mmio, st_events;
	uint64_t last_pause_ns, last_resume_ns;
	uint64_t t_create, t_created, t_booted, t_started; /* CLOCK_MONOTONIC */
};

/* vm.c */
/* Replays coalesced serial writes; then (re)registers the zone for what
 * the UART's registers now allow. Any thread. */
void lt_vm_serial_sync(struct lt_vm *vm);
void lt_vm_set_exit(struct lt_vm *vm, enum lt_vm_exit_reason r, const char *fmt, ...)
	LT_PRINTF(3, 4);
/* Publishes an event (JSON) to the events fd and control subscribers. */
void lt_vm_publish(struct lt_vm *vm, const char *json_line);
void lt_vm_status_json(struct lt_vm *vm, struct lt_buf *b);

/* cpuid.c */
int lt_cpuid_build(int kvm_fd, enum lt_cpu_template t, struct kvm_cpuid2 **out);
/* A per-vCPU copy with APIC ids/topology filled in; caller frees. */
struct kvm_cpuid2 *lt_cpuid_for_vcpu(const struct kvm_cpuid2 *base, int idx, int nvcpus);
/* Applies the template to a single entry (exposed for tests). */
void lt_cpuid_apply_template(struct kvm_cpuid_entry2 *e, enum lt_cpu_template t);

/* state.c */
int lt_vm_msr_list_init(struct lt_vm *vm);

/* control.c */
struct lt_control;
int lt_control_open(struct lt_vm *vm, const char *path, struct lt_control **out);
void lt_control_publish(struct lt_control *c, const char *json_line);
/* Delivers queued events synchronously (after the I/O thread ended). */
void lt_control_drain(struct lt_control *c);
void lt_control_close(struct lt_control *c);

/* devices.c: virtio devices from the config */
int lt_vm_devices_create(struct lt_vm *vm);
void lt_vm_devices_destroy(struct lt_vm *vm);
int lt_vm_devices_attach_loop(struct lt_vm *vm);
/* Dispatches an MMIO exit; false if no device claims the address. */
bool lt_vm_mmio(struct lt_vm *vm, uint64_t addr, uint8_t *data, uint32_t len, bool write);
int lt_vm_devices_save(struct lt_vm *vm, struct lt_buf *b);
int lt_vm_devices_load(struct lt_vm *vm, const struct lt_blob_reader *r);

/* seccomp.c */
int lt_seccomp_install(const char *const *extra);

#endif
