/* Minimal polling virtio-mmio (v2) driver for the test guests. */
#ifndef LTTLE_GUEST_VIO_H
#define LTTLE_GUEST_VIO_H

#include "rt.h"

#define VQ_SIZE 8

struct vdesc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct vq {
	struct vdesc desc[VQ_SIZE] __attribute__((aligned(16)));
	u16 avail_flags, avail_idx, avail_ring[VQ_SIZE], used_event;
	volatile u16 used_flags __attribute__((aligned(4096)));
	volatile u16 used_idx;
	struct {
		u32 id, len;
	} used_ring[VQ_SIZE];
	u16 last_used;
	u16 free_head;
};

struct vdev {
	u64 base;
	struct vq *q[3];
};

/* Finds a virtio-mmio device with the given id among the cmdline's
 * virtio_mmio.device= entries; 0 if none. */
u64 vio_find(const char *cmdline, u32 device_id);
/* Reset, negotiate VERSION_1 (plus extra low features), set up nq queues,
 * DRIVER_OK. Returns 0 or a negative step number. */
int vio_init(struct vdev *d, u64 base, int nq, u32 features_lo);
/* Adds a chain of n buffers (flags per buffer: 2 = device-writable) and
 * kicks. Returns the head. */
int vq_add(struct vdev *d, int q, u64 *addr, u32 *len, u16 *flags, int n);
/* Waits for the next used entry; returns its id and sets *len. -1 on
 * timeout. */
int vq_wait(struct vdev *d, int q, u32 *len, u64 spins);
/* Non-blocking: 1 if a used entry is ready. */
int vq_poll(struct vdev *d, int q);
u32 vio_status(struct vdev *d);

#endif
