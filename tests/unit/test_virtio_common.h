/* Test harness for the virtio device models: guest memory held by the
 * test, and a "driver" that lays out descriptors, avail and used rings in
 * it exactly as a guest would, talking to the device through its MMIO
 * registers. Header-only; included by test_virtio_*.c. */
#ifndef LTTLE_TEST_VIRTIO_COMMON_H
#define LTTLE_TEST_VIRTIO_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "vmm/virtio.h"

#define TM_BASE 0x100000ULL /* guest physical base of the test RAM */
#define TM_SIZE (8ULL << 20)

struct tmem {
	uint8_t *buf;
	struct lt_mem_region r;
	struct lt_gmem m;
	uint64_t brk; /* bump allocator for buffers */
};

static inline void tmem_init(struct tmem *t)
{
	t->buf = calloc(1, TM_SIZE);
	assert_non_null(t->buf);
	t->r = (struct lt_mem_region){.gpa = TM_BASE, .size = TM_SIZE, .hva = t->buf};
	t->m = (struct lt_gmem){.r = &t->r, .n = 1};
	t->brk = TM_BASE + (1ULL << 20); /* first MiB: rings */
}

static inline void tmem_free(struct tmem *t)
{
	free(t->buf);
}

static inline void *gp(struct tmem *t, uint64_t gpa)
{
	assert_true(gpa >= TM_BASE && gpa < TM_BASE + TM_SIZE);
	return t->buf + (gpa - TM_BASE);
}

/* A fresh guest buffer of n bytes (zeroed). */
static inline uint64_t galloc(struct tmem *t, uint64_t n)
{
	uint64_t a = t->brk;
	t->brk = (t->brk + n + 15) & ~15ULL;
	assert_true(t->brk <= TM_BASE + TM_SIZE);
	memset(gp(t, a), 0, n);
	return a;
}

struct tq {
	struct tmem *t;
	uint16_t size;
	uint64_t desc, avail, used;
	uint16_t avail_idx, used_seen, next;
};

/* Driver-style MMIO helpers. */
static inline uint32_t mmio_rd(struct lt_virtio_dev *d, uint64_t off)
{
	uint32_t v;
	lt_virtio_mmio_read(d, off, (uint8_t *)&v, 4);
	return v;
}

static inline void mmio_wr(struct lt_virtio_dev *d, uint64_t off, uint32_t v)
{
	lt_virtio_mmio_write(d, off, (uint8_t *)&v, 4);
}

static int test_irqs;
static inline void count_irq(struct lt_virtio_dev *d)
{
	(void)d;
	test_irqs++;
}

/* Queue qi of size n at a fixed spot per queue in the first MiB. */
static inline void tq_init(struct tq *q, struct tmem *t, int qi, uint16_t n)
{
	memset(q, 0, sizeof(*q));
	q->t = t;
	q->size = n;
	q->desc = TM_BASE + (uint64_t)qi * 0x10000;
	q->avail = q->desc + 16ULL * n;
	q->used = (q->avail + 6 + 2ULL * n + 4095) & ~4095ULL;
}

/* Full driver init: reset, ACK, DRIVER, features (VERSION_1 + extra),
 * FEATURES_OK, queues, DRIVER_OK. */
static inline void drv_init(struct lt_virtio_dev *d, struct tq *qs, int nq, uint32_t feat_lo)
{
	mmio_wr(d, VIRTIO_MMIO_STATUS, 0);
	mmio_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACK);
	mmio_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
	mmio_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = mmio_rd(d, VIRTIO_MMIO_DEVICE_FEATURES) & feat_lo;
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, lo);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	mmio_wr(d, VIRTIO_MMIO_STATUS, 1 | 2 | 8);
	assert_int_equal(mmio_rd(d, VIRTIO_MMIO_STATUS) & 8, 8);
	for (int i = 0; i < nq; i++) {
		struct tq *q = &qs[i];
		mmio_wr(d, VIRTIO_MMIO_QUEUE_SEL, (uint32_t)i);
		assert_true(mmio_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX) >= q->size);
		mmio_wr(d, VIRTIO_MMIO_QUEUE_NUM, q->size);
		mmio_wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q->desc);
		mmio_wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(q->desc >> 32));
		mmio_wr(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)q->avail);
		mmio_wr(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
		mmio_wr(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)q->used);
		mmio_wr(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
		mmio_wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	mmio_wr(d, VIRTIO_MMIO_STATUS, 1 | 2 | 8 | 4);
}

static inline void desc_set(struct tq *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
			    uint16_t next)
{
	struct virtq_desc dd = {addr, len, flags, next};
	memcpy(gp(q->t, q->desc + 16ULL * i), &dd, 16);
}

static inline void avail_push(struct tq *q, uint16_t head)
{
	uint16_t *ring = gp(q->t, q->avail + 4);
	ring[q->avail_idx % q->size] = head;
	q->avail_idx++;
	uint16_t idx = q->avail_idx;
	memcpy(gp(q->t, q->avail + 2), &idx, 2);
}

/* Adds a chain from consecutive free descriptors; returns the head. */
static inline uint16_t chain_add(struct tq *q, int n, const uint64_t *addr, const uint32_t *len,
				 const uint16_t *flags)
{
	uint16_t head = q->next;
	for (int i = 0; i < n; i++) {
		uint16_t di = (uint16_t)((head + i) % q->size);
		uint16_t f = (uint16_t)(flags[i] | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		desc_set(q, di, addr[i], len[i], f, (uint16_t)((di + 1) % q->size));
	}
	q->next = (uint16_t)((head + n) % q->size);
	avail_push(q, head);
	return head;
}

static inline uint16_t used_idx(struct tq *q)
{
	uint16_t v;
	memcpy(&v, gp(q->t, q->used + 2), 2);
	return v;
}

/* Next used element; false if none. */
static inline bool used_next(struct tq *q, uint32_t *id, uint32_t *len)
{
	if (used_idx(q) == q->used_seen)
		return false;
	uint8_t *e = gp(q->t, q->used + 4 + 8ULL * (q->used_seen % q->size));
	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
	q->used_seen++;
	return true;
}

static inline void kick(struct lt_virtio_dev *d, int qi)
{
	mmio_wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, (uint32_t)qi);
}

#endif
