/* virtio-blk: read, write, flush, get-id over an lt_blk_backend. */
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio.h"

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define BLK_SEG_MAX 128
#define BLK_ID_BYTES 20

struct blk {
	struct lt_virtio_dev dev;
	struct lt_blk_backend *be;
	char id[BLK_ID_BYTES];
	struct lt_vq_chain chain; /* big; kept off the stack */
};

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static uint64_t blk_features(struct lt_virtio_dev *d)
{
	struct blk *b = d->impl;
	uint64_t f = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_FLUSH) |
		     (1ULL << VIRTIO_F_INDIRECT_DESC);
	if (lt_blk_read_only(b->be))
		f |= 1ULL << VIRTIO_BLK_F_RO;
	return f;
}

static void blk_read_config(struct lt_virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct blk *b = d->impl;
	uint8_t cfg[24];
	memset(cfg, 0, sizeof(cfg));
	uint64_t cap = lt_blk_size(b->be) / 512;
	uint32_t seg = BLK_SEG_MAX;
	memcpy(cfg, &cap, 8);
	memcpy(cfg + 12, &seg, 4);
	if (off < sizeof(cfg) && len <= sizeof(cfg) - off)
		memcpy(data, cfg + off, len);
}

/* Runs fn over the data part of the chain: writable bytes minus the
 * trailing status byte (IN) or readable bytes after the header (OUT). */
static int blk_io(struct blk *b, const struct lt_vq_chain *c, bool in, uint64_t off,
		  uint32_t *written)
{
	uint32_t skip = in ? 0 : sizeof(struct blk_req_hdr);
	uint32_t left = in ? c->wlen - 1 : c->rlen - skip;
	for (int i = 0; i < c->nsegs && left; i++) {
		const struct lt_vq_seg *s = &c->segs[i];
		if (s->write != in)
			continue;
		uint32_t pos = 0;
		if (skip) {
			uint32_t k = skip < s->len ? skip : s->len;
			skip -= k;
			pos = k;
		}
		uint32_t n = s->len - pos;
		if (n > left)
			n = left;
		if (!n)
			continue;
		int r = in ? lt_blk_pread(b->be, s->p + pos, n, off)
			   : lt_blk_pwrite(b->be, s->p + pos, n, off);
		if (r < 0)
			return -1;
		off += n;
		left -= n;
		if (in)
			*written += n;
	}
	return 0;
}

static uint8_t *status_byte(const struct lt_vq_chain *c)
{
	for (int i = c->nsegs - 1; i >= 0; i--)
		if (c->segs[i].write)
			return c->segs[i].p + c->segs[i].len - 1;
	return NULL;
}

static uint32_t blk_handle(struct blk *b, const struct lt_vq_chain *c)
{
	struct blk_req_hdr h;
	uint8_t *st = status_byte(c);
	if (!st)
		return 0; /* nowhere to say anything */
	uint32_t written = 0;
	uint8_t status = VIRTIO_BLK_S_OK;
	if (c->rlen < sizeof(h) || lt_vq_read(c, 0, &h, sizeof(h)) != sizeof(h)) {
		status = VIRTIO_BLK_S_IOERR;
		goto done;
	}
	uint64_t size = lt_blk_size(b->be);
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool in = h.type == VIRTIO_BLK_T_IN;
		uint64_t len = in ? c->wlen - 1 : c->rlen - sizeof(h);
		if (h.sector > size / 512 || len > size - h.sector * 512 || len % 512) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		if (!in && lt_blk_read_only(b->be)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		if (blk_io(b, c, in, h.sector * 512, &written) < 0) {
			lt_warn("virtio-blk: %s", lt_errmsg());
			status = VIRTIO_BLK_S_IOERR;
		}
		break;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (lt_blk_flush(b->be) < 0) {
			lt_warn("virtio-blk: %s", lt_errmsg());
			status = VIRTIO_BLK_S_IOERR;
		}
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint32_t n = c->wlen - 1 < BLK_ID_BYTES ? c->wlen - 1 : BLK_ID_BYTES;
		written = (uint32_t)lt_vq_write(c, 0, b->id, n);
		break;
	}
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
done:
	*st = status;
	return written + 1;
}

static void blk_notify(struct lt_virtio_dev *d, int qi)
{
	struct blk *b = d->impl;
	struct lt_virtq *q = lt_virtio_queue(d, qi);
	if (!q)
		return;
	bool indirect = lt_virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC);
	bool any = false;
	for (int budget = 0; budget < 4 * LT_VIRTQ_MAX_SIZE; budget++) {
		struct lt_vq_chain *c = &b->chain;
		int rc = lt_virtq_pop(q, &d->mem, indirect, c);
		if (rc == LT_VQ_EMPTY)
			break;
		if (rc == LT_VQ_BROKEN) {
			lt_virtio_note_error(d, qi, rc, c->error);
			break;
		}
		uint32_t len;
		if (rc == LT_VQ_BAD_CHAIN) {
			lt_virtio_note_error(d, qi, rc, c->error);
			if (c->head == 0xffff)
				continue;
			/* Best effort: IOERR in the last writable byte we validated. */
			uint8_t *st = status_byte(c);
			if (st)
				*st = VIRTIO_BLK_S_IOERR;
			len = st ? 1 : 0;
		} else {
			len = blk_handle(b, c);
		}
		lt_virtq_push(q, &d->mem, c->head, len);
		any = true;
	}
	if (any && lt_virtq_should_notify(q, &d->mem))
		lt_virtio_interrupt(d);
}

static void blk_destroy(struct lt_virtio_dev *d)
{
	struct blk *b = d->impl;
	lt_blk_close(b->be);
	pthread_mutex_destroy(&d->lock);
	free(b);
}

static const struct lt_virtio_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.nqueues = 1,
	.features = blk_features,
	.read_config = blk_read_config,
	.notify = blk_notify,
	.destroy = blk_destroy,
};

int lt_virtio_blk_new(const struct lt_gmem *mem, uint64_t base, int irq,
		      struct lt_blk_backend *be, const char *id, struct lt_virtio_dev **out)
{
	struct blk *b = lt_calloc(1, sizeof(*b));
	if (!b)
		return -1;
	lt_virtio_init(&b->dev, &blk_ops, b, mem, base, irq);
	b->be = be;
	if (id)
		memcpy(b->id, id, strnlen(id, sizeof(b->id)));
	*out = &b->dev;
	return 0;
}
