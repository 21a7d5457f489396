/* virtio: split virtqueues over hostile guest memory, the virtio-mmio v2
 * transport, and the device models (blk, net, vsock).
 *
 * Guest memory is read through lt_gmem only. A descriptor chain is
 * validated as a whole before a device sees it: every buffer lies in RAM,
 * indices are in range, the chain is no longer than the queue (no loops),
 * device-readable buffers precede device-writable ones, the total size is
 * capped, indirect tables are well formed and not nested. A bad chain is
 * reported to the device, which fails that request (IOERR where the
 * protocol has a status byte) and stays alive. A broken ring (an avail
 * index running more than a queue size ahead) sets DEVICE_NEEDS_RESET.
 *
 * Threading: each device has one mutex; the transport takes it for MMIO
 * accesses (vCPU threads), notifications and the device's own I/O-thread
 * callbacks take it too. */
#ifndef LTTLE_VMM_VIRTIO_H
#define LTTLE_VMM_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/blob.h"
#include "vmm/gmem.h"
#include "vmm/ioloop.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_VSOCK 19

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_STATUS_ACK 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4

/* virtio-mmio register offsets */
#define VIRTIO_MMIO_MAGIC 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100
#define VIRTIO_MMIO_MAGIC_VALUE 0x74726976
#define VIRTIO_MMIO_INT_VRING 1
#define VIRTIO_MMIO_INT_CONFIG 2

#define LT_VIRTQ_MAX_SIZE 256
#define LT_VIRTQ_MAX_QUEUES 4
#define LT_VIRTQ_MAX_CHAIN_BYTES (4U << 20)

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct lt_virtq {
	uint16_t size; /* set by the driver (QueueNum), <= max */
	uint16_t max;
	bool ready;
	uint64_t desc, avail, used;
	uint16_t last_avail;
	uint16_t used_idx;
	bool broken;
};

struct lt_vq_seg {
	uint8_t *p; /* host pointer, valid for len bytes */
	uint32_t len;
	bool write; /* device-writable */
};

#define LT_VQ_MAX_SEGS LT_VIRTQ_MAX_SIZE
struct lt_vq_chain {
	uint16_t head;
	int nsegs;
	struct lt_vq_seg segs[LT_VQ_MAX_SEGS];
	uint32_t rlen, wlen; /* device-readable / -writable bytes */
	const char *error;   /* why a chain was rejected */
};

enum { LT_VQ_EMPTY = 0, LT_VQ_OK = 1, LT_VQ_BAD_CHAIN = -1, LT_VQ_BROKEN = -2 };
/* Takes the next available chain. LT_VQ_BAD_CHAIN: c->head is valid and
 * must be returned with lt_virtq_push (the request failed); c->segs holds
 * the buffers validated so far. LT_VQ_BROKEN: the ring itself is unusable. */
int lt_virtq_pop(struct lt_virtq *q, const struct lt_gmem *m, bool indirect_ok,
		 struct lt_vq_chain *c);
/* Puts a chain back unconsumed (device out of buffers for it). */
void lt_virtq_unpop(struct lt_virtq *q);
int lt_virtq_push(struct lt_virtq *q, const struct lt_gmem *m, uint16_t head, uint32_t len);
/* True if the driver did not suppress interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT). */
bool lt_virtq_should_notify(struct lt_virtq *q, const struct lt_gmem *m);
bool lt_virtq_has_avail(struct lt_virtq *q, const struct lt_gmem *m);

/* Copy helpers over a chain's readable / writable parts. */
size_t lt_vq_read(const struct lt_vq_chain *c, size_t off, void *dst, size_t n);
size_t lt_vq_write(const struct lt_vq_chain *c, size_t off, const void *src, size_t n);

/* ---- device + transport ---------------------------------------------- */

struct lt_virtio_dev;

struct lt_virtio_ops {
	const char *name;
	uint32_t device_id;
	int nqueues;
	uint64_t (*features)(struct lt_virtio_dev *d);
	void (*read_config)(struct lt_virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len);
	void (*write_config)(struct lt_virtio_dev *d, uint32_t off, const uint8_t *data,
			     uint32_t len);
	/* The driver kicked queue q (dev lock held). */
	void (*notify)(struct lt_virtio_dev *d, int q);
	/* DRIVER_OK set / device reset (dev lock held). */
	void (*activate)(struct lt_virtio_dev *d);
	void (*reset)(struct lt_virtio_dev *d);
	/* I/O-thread fds (tap, sockets); may be NULL. */
	int (*attach_loop)(struct lt_virtio_dev *d, struct lt_ioloop *l);
	/* Device-specific state (dev lock held); may be NULL. */
	int (*save)(struct lt_virtio_dev *d, struct lt_buf *b);
	int (*load)(struct lt_virtio_dev *d, const void *p, size_t n);
	void (*destroy)(struct lt_virtio_dev *d);
};

struct lt_virtio_dev {
	const struct lt_virtio_ops *ops;
	void *impl;
	pthread_mutex_t lock;
	struct lt_gmem mem;
	uint64_t base;
	int irq;
	/* Interrupt delivery: irqfd, else KVM_IRQ_LINE on vm_fd; tests
	 * replace it. */
	void (*raise)(struct lt_virtio_dev *d);
	int irq_fd, vm_fd;
	struct lt_idle *idle; /* kicked on every raise; may be NULL */
	int notify_fd[LT_VIRTQ_MAX_QUEUES]; /* ioeventfds, -1 if none */
	uint64_t irq_count;
	/* transport state */
	uint32_t status, dev_feat_sel, drv_feat_sel, queue_sel, isr, config_gen;
	uint64_t driver_features;
	struct lt_virtq q[LT_VIRTQ_MAX_QUEUES];
	uint64_t errors; /* rejected chains, for tests and status */
};

/* Initialises the transport part; ops->... are the device's. */
void lt_virtio_init(struct lt_virtio_dev *d, const struct lt_virtio_ops *ops, void *impl,
		    const struct lt_gmem *mem, uint64_t base, int irq);
void lt_virtio_mmio_read(struct lt_virtio_dev *d, uint64_t off, uint8_t *data, uint32_t len);
void lt_virtio_mmio_write(struct lt_virtio_dev *d, uint64_t off, const uint8_t *data,
			  uint32_t len);
/* Sets the used-ring bit in ISR and raises the IRQ (dev lock held). */
void lt_virtio_interrupt(struct lt_virtio_dev *d);
void lt_virtio_config_changed(struct lt_virtio_dev *d);
bool lt_virtio_has_feature(const struct lt_virtio_dev *d, int bit);
/* A queue usable by the device: DRIVER_OK, ready, not broken. */
struct lt_virtq *lt_virtio_queue(struct lt_virtio_dev *d, int q);
/* Handles a pop result: counts errors, marks NEEDS_RESET on a broken ring. */
void lt_virtio_note_error(struct lt_virtio_dev *d, int q, int rc, const char *why);
int lt_virtio_save(struct lt_virtio_dev *d, struct lt_buf *b);
int lt_virtio_load(struct lt_virtio_dev *d, const void *p, size_t n);

/* ---- devices ----------------------------------------------------------- */

/* blk: backend over a raw image, optionally with a copy-on-write overlay. */
struct lt_blk_backend;
int lt_blk_open(const char *path, bool read_only, const char *overlay,
		struct lt_blk_backend **out);
uint64_t lt_blk_size(const struct lt_blk_backend *b);
bool lt_blk_read_only(const struct lt_blk_backend *b);
int lt_blk_pread(struct lt_blk_backend *b, void *buf, size_t n, uint64_t off);
int lt_blk_pwrite(struct lt_blk_backend *b, const void *buf, size_t n, uint64_t off);
int lt_blk_flush(struct lt_blk_backend *b);
void lt_blk_close(struct lt_blk_backend *b);

/* Creates a device; the lt_virtio_dev is allocated by the device. */
int lt_virtio_blk_new(const struct lt_gmem *mem, uint64_t base, int irq,
		      struct lt_blk_backend *be, const char *id, struct lt_virtio_dev **out);
/* tap_fd: a TAP fd (IFF_NO_PI, no vnet header) or any datagram fd. */
int lt_virtio_net_new(const struct lt_gmem *mem, uint64_t base, int irq, int tap_fd,
		      const uint8_t mac[6], struct lt_virtio_dev **out);
int lt_tap_open(const char *name, int *fd);
/* uds: host socket path ("CONNECT <port>" from the host; guest-initiated
 * connections to port P go to "<uds>_<P>"). */
int lt_virtio_vsock_new(const struct lt_gmem *mem, uint64_t base, int irq, uint64_t cid,
			const char *uds, struct lt_virtio_dev **out);
void lt_virtio_free(struct lt_virtio_dev *d);

#endif
