/* Test guest virtio-mmio driver (see vio.h). */
#include "vio.h"

#define R_MAGIC 0x000
#define R_VERSION 0x004
#define R_DEVICE_ID 0x008
#define R_DEV_FEAT 0x010
#define R_DEV_FEAT_SEL 0x014
#define R_DRV_FEAT 0x020
#define R_DRV_FEAT_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_INT_STATUS 0x060
#define R_INT_ACK 0x064
#define R_STATUS 0x070
#define R_DESC_LO 0x080
#define R_DESC_HI 0x084
#define R_DRIVER_LO 0x090
#define R_DRIVER_HI 0x094
#define R_DEVICE_LO 0x0a0
#define R_DEVICE_HI 0x0a4

static struct vq queues[6] __attribute__((aligned(4096)));
static int nqueues_used;

u64 vio_find(const char *c, u32 id)
{
	const char *key = "virtio_mmio.device=";
	u64 kl = strlen(key);
	while (*c) {
		while (*c == ' ')
			c++;
		if (!strncmp(c, key, kl)) {
			const char *p = c + kl;
			while (*p && *p != '@')
				p++;
			if (*p == '@') {
				p++;
				u64 n = 0;
				while (p[n] && p[n] != ':' && p[n] != ' ')
					n++;
				u64 base = parse_u64(p, n);
				if (mmio_r32(base + R_MAGIC) == 0x74726976 &&
				    mmio_r32(base + R_DEVICE_ID) == id)
					return base;
			}
		}
		while (*c && *c != ' ')
			c++;
	}
	return 0;
}

u32 vio_status(struct vdev *d)
{
	return mmio_r32(d->base + R_STATUS);
}

int vio_init(struct vdev *d, u64 base, int nq, u32 features_lo)
{
	d->base = base;
	if (mmio_r32(base + R_MAGIC) != 0x74726976 || mmio_r32(base + R_VERSION) != 2)
		return -1;
	mmio_w32(base + R_STATUS, 0);
	mmio_w32(base + R_STATUS, 1);
	mmio_w32(base + R_STATUS, 1 | 2);
	mmio_w32(base + R_DEV_FEAT_SEL, 1);
	if (!(mmio_r32(base + R_DEV_FEAT) & 1))
		return -2; /* no VERSION_1 */
	mmio_w32(base + R_DEV_FEAT_SEL, 0);
	u32 lo = mmio_r32(base + R_DEV_FEAT) & features_lo;
	mmio_w32(base + R_DRV_FEAT_SEL, 0);
	mmio_w32(base + R_DRV_FEAT, lo);
	mmio_w32(base + R_DRV_FEAT_SEL, 1);
	mmio_w32(base + R_DRV_FEAT, 1);
	mmio_w32(base + R_STATUS, 1 | 2 | 8);
	if (!(mmio_r32(base + R_STATUS) & 8))
		return -3;
	for (int i = 0; i < nq; i++) {
		if (nqueues_used >= 6)
			return -4;
		struct vq *q = &queues[nqueues_used++];
		memset(q, 0, sizeof(*q));
		d->q[i] = q;
		mmio_w32(base + R_QUEUE_SEL, (u32)i);
		if (mmio_r32(base + R_QUEUE_NUM_MAX) < VQ_SIZE)
			return -5;
		mmio_w32(base + R_QUEUE_NUM, VQ_SIZE);
		u64 da = (u64)q->desc, aa = (u64)&q->avail_flags, ua = (u64)&q->used_flags;
		mmio_w32(base + R_DESC_LO, (u32)da);
		mmio_w32(base + R_DESC_HI, (u32)(da >> 32));
		mmio_w32(base + R_DRIVER_LO, (u32)aa);
		mmio_w32(base + R_DRIVER_HI, (u32)(aa >> 32));
		mmio_w32(base + R_DEVICE_LO, (u32)ua);
		mmio_w32(base + R_DEVICE_HI, (u32)(ua >> 32));
		mmio_w32(base + R_QUEUE_READY, 1);
	}
	mmio_w32(base + R_STATUS, 1 | 2 | 8 | 4);
	return 0;
}

int vq_add(struct vdev *d, int qi, u64 *addr, u32 *len, u16 *flags, int n)
{
	struct vq *q = d->q[qi];
	int head = q->free_head;
	for (int i = 0; i < n; i++) {
		int di = (head + i) % VQ_SIZE;
		q->desc[di].addr = addr[i];
		q->desc[di].len = len[i];
		q->desc[di].flags = (u16)(flags[i] | (i + 1 < n ? 1 : 0));
		q->desc[di].next = (u16)((di + 1) % VQ_SIZE);
	}
	q->free_head = (u16)((head + n) % VQ_SIZE);
	q->avail_ring[q->avail_idx % VQ_SIZE] = (u16)head;
	barrier();
	q->avail_idx++;
	barrier();
	mmio_w32(d->base + R_QUEUE_NOTIFY, (u32)qi);
	return head;
}

int vq_poll(struct vdev *d, int qi)
{
	struct vq *q = d->q[qi];
	barrier();
	return q->used_idx != q->last_used;
}

int vq_wait(struct vdev *d, int qi, u32 *len, u64 spins)
{
	struct vq *q = d->q[qi];
	for (u64 i = 0; i < spins; i++) {
		barrier();
		if (q->used_idx != q->last_used) {
			int e = q->last_used % VQ_SIZE;
			q->last_used++;
			if (len)
				*len = q->used_ring[e].len;
			u32 isr = mmio_r32(d->base + R_INT_STATUS);
			if (isr)
				mmio_w32(d->base + R_INT_ACK, isr);
			return (int)q->used_ring[e].id;
		}
	}
	return -1;
}
