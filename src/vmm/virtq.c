/* Split virtqueues over hostile guest memory (see virtio.h). Every field
 * the guest can change is read once into a local copy before it is
 * checked and used. */
#include <string.h>

#include "vmm/virtio.h"

#define AVAIL_F_NO_INTERRUPT 1

static uint16_t load16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static bool avail_idx(struct lt_virtq *q, const struct lt_gmem *m, uint16_t *idx)
{
	uint8_t *a = lt_gmem_ptr(m, q->avail, 4 + 2 * (uint64_t)q->size);
	if (!a)
		return false;
	*idx = __atomic_load_n((uint16_t *)(a + 2), __ATOMIC_ACQUIRE);
	return true;
}

bool lt_virtq_has_avail(struct lt_virtq *q, const struct lt_gmem *m)
{
	uint16_t idx;
	return q->ready && !q->broken && avail_idx(q, m, &idx) && idx != q->last_avail;
}

static int add_seg(struct lt_vq_chain *c, const struct lt_gmem *m, const struct virtq_desc *d,
		   bool *seen_write)
{
	bool w = d->flags & VIRTQ_DESC_F_WRITE;
	if (!w && *seen_write) {
		c->error = "device-readable buffer after a device-writable one";
		return -1;
	}
	if (w)
		*seen_write = true;
	if (d->len == 0)
		return 0;
	uint64_t total = (uint64_t)c->rlen + c->wlen + d->len;
	if (total > LT_VIRTQ_MAX_CHAIN_BYTES) {
		c->error = "chain larger than the size cap";
		return -1;
	}
	uint8_t *p = lt_gmem_ptr(m, d->addr, d->len);
	if (!p) {
		c->error = "buffer outside guest RAM";
		return -1;
	}
	if (c->nsegs >= LT_VQ_MAX_SEGS) {
		c->error = "too many buffers";
		return -1;
	}
	c->segs[c->nsegs++] = (struct lt_vq_seg){p, d->len, w};
	if (w)
		c->wlen += d->len;
	else
		c->rlen += d->len;
	return 0;
}

static int walk_indirect(struct lt_vq_chain *c, const struct lt_gmem *m,
			 const struct virtq_desc *d, bool *seen_write)
{
	if (d->flags & VIRTQ_DESC_F_NEXT) {
		c->error = "indirect descriptor with NEXT";
		return -1;
	}
	if (d->len == 0 || d->len % sizeof(struct virtq_desc) ||
	    d->len / sizeof(struct virtq_desc) > LT_VIRTQ_MAX_SIZE) {
		c->error = "bad indirect table size";
		return -1;
	}
	uint32_t n = d->len / sizeof(struct virtq_desc);
	const uint8_t *tbl = lt_gmem_ptr(m, d->addr, d->len);
	if (!tbl) {
		c->error = "indirect table outside guest RAM";
		return -1;
	}
	uint32_t i = 0, steps = 0;
	for (;;) {
		struct virtq_desc e;
		memcpy(&e, tbl + (size_t)i * sizeof(e), sizeof(e));
		if (e.flags & VIRTQ_DESC_F_INDIRECT) {
			c->error = "nested indirect table";
			return -1;
		}
		if (add_seg(c, m, &e, seen_write) < 0)
			return -1;
		if (!(e.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (e.next >= n) {
			c->error = "indirect next index out of range";
			return -1;
		}
		if (++steps >= n) {
			c->error = "loop in indirect table";
			return -1;
		}
		i = e.next;
	}
}

int lt_virtq_pop(struct lt_virtq *q, const struct lt_gmem *m, bool indirect_ok,
		 struct lt_vq_chain *c)
{
	c->nsegs = 0;
	c->rlen = c->wlen = 0;
	c->error = NULL;
	if (!q->ready || q->broken)
		return LT_VQ_EMPTY;
	uint16_t idx;
	if (!avail_idx(q, m, &idx)) {
		q->broken = true;
		c->error = "avail ring outside guest RAM";
		return LT_VQ_BROKEN;
	}
	if (idx == q->last_avail)
		return LT_VQ_EMPTY;
	if ((uint16_t)(idx - q->last_avail) > q->size) {
		q->broken = true;
		c->error = "avail index ran ahead by more than the queue size";
		return LT_VQ_BROKEN;
	}
	const uint8_t *a = lt_gmem_ptr(m, q->avail, 4 + 2 * (uint64_t)q->size);
	uint16_t head = load16(a + 4 + 2 * (q->last_avail % q->size));
	q->last_avail++;
	if (head >= q->size) {
		/* No valid id to hand back: drop it, the driver will time out. */
		c->head = 0xffff;
		c->error = "head index out of range";
		return LT_VQ_BAD_CHAIN;
	}
	c->head = head;
	const uint8_t *dt = lt_gmem_ptr(m, q->desc, 16 * (uint64_t)q->size);
	if (!dt) {
		q->broken = true;
		c->error = "descriptor table outside guest RAM";
		return LT_VQ_BROKEN;
	}
	bool seen_write = false;
	uint16_t i = head;
	for (uint32_t steps = 0;; steps++) {
		if (steps >= q->size) {
			c->error = "descriptor chain loops (longer than the queue)";
			return LT_VQ_BAD_CHAIN;
		}
		struct virtq_desc d;
		memcpy(&d, dt + 16 * (size_t)i, sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!indirect_ok) {
				c->error = "indirect descriptor not negotiated";
				return LT_VQ_BAD_CHAIN;
			}
			if (steps != 0 || c->nsegs) {
				c->error = "indirect descriptor inside a chain";
				return LT_VQ_BAD_CHAIN;
			}
			return walk_indirect(c, m, &d, &seen_write) < 0 ? LT_VQ_BAD_CHAIN : LT_VQ_OK;
		}
		if (add_seg(c, m, &d, &seen_write) < 0)
			return LT_VQ_BAD_CHAIN;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return LT_VQ_OK;
		if (d.next >= q->size) {
			c->error = "next index out of range";
			return LT_VQ_BAD_CHAIN;
		}
		i = d.next;
	}
}

void lt_virtq_unpop(struct lt_virtq *q)
{
	q->last_avail--;
}

int lt_virtq_push(struct lt_virtq *q, const struct lt_gmem *m, uint16_t head, uint32_t len)
{
	if (head >= q->size)
		return -1;
	uint8_t *u = lt_gmem_ptr(m, q->used, 4 + 8 * (uint64_t)q->size);
	if (!u) {
		q->broken = true;
		return -1;
	}
	uint8_t *e = u + 4 + 8 * (size_t)(q->used_idx % q->size);
	uint32_t id = head;
	memcpy(e, &id, 4);
	memcpy(e + 4, &len, 4);
	q->used_idx++;
	/* The entry must be visible before the index that publishes it. */
	__atomic_store_n((uint16_t *)(u + 2), q->used_idx, __ATOMIC_RELEASE);
	return 0;
}

bool lt_virtq_should_notify(struct lt_virtq *q, const struct lt_gmem *m)
{
	const uint8_t *a = lt_gmem_ptr(m, q->avail, 2);
	if (!a)
		return true;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(load16(a) & AVAIL_F_NO_INTERRUPT);
}

size_t lt_vq_read(const struct lt_vq_chain *c, size_t off, void *dst, size_t n)
{
	size_t done = 0;
	for (int i = 0; i < c->nsegs && done < n; i++) {
		const struct lt_vq_seg *s = &c->segs[i];
		if (s->write)
			break;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		size_t k = s->len - off;
		if (k > n - done)
			k = n - done;
		memcpy((uint8_t *)dst + done, s->p + off, k);
		done += k;
		off = 0;
	}
	return done;
}

size_t lt_vq_write(const struct lt_vq_chain *c, size_t off, const void *src, size_t n)
{
	size_t done = 0;
	for (int i = 0; i < c->nsegs && done < n; i++) {
		const struct lt_vq_seg *s = &c->segs[i];
		if (!s->write)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		size_t k = s->len - off;
		if (k > n - done)
			k = n - done;
		memcpy(s->p + off, (const uint8_t *)src + done, k);
		done += k;
		off = 0;
	}
	return done;
}
