/* virtio-mmio transport, version 2 (modern) only. */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "vmm/blob.h"
#include "vmm/idle.h"
#include "vmm/virtio.h"

static void default_raise(struct lt_virtio_dev *d)
{
	if (d->irq_fd >= 0) {
		uint64_t one = 1;
		(void)!write(d->irq_fd, &one, sizeof(one));
	} else if (d->vm_fd >= 0) {
		struct kvm_irq_level l = {.irq = (uint32_t)d->irq, .level = 1};
		ioctl(d->vm_fd, KVM_IRQ_LINE, &l);
		l.level = 0;
		ioctl(d->vm_fd, KVM_IRQ_LINE, &l);
	}
	if (d->idle)
		lt_idle_kick(d->idle);
}

void lt_virtio_init(struct lt_virtio_dev *d, const struct lt_virtio_ops *ops, void *impl,
		    const struct lt_gmem *mem, uint64_t base, int irq)
{
	memset(d, 0, sizeof(*d));
	d->ops = ops;
	d->impl = impl;
	d->mem = *mem;
	d->base = base;
	d->irq = irq;
	d->irq_fd = d->vm_fd = -1;
	d->raise = default_raise;
	for (int i = 0; i < LT_VIRTQ_MAX_QUEUES; i++) {
		d->notify_fd[i] = -1;
		d->q[i].max = LT_VIRTQ_MAX_SIZE;
	}
	pthread_mutex_init(&d->lock, NULL);
}

void lt_virtio_free(struct lt_virtio_dev *d)
{
	if (!d)
		return;
	if (d->irq_fd >= 0)
		close(d->irq_fd);
	for (int i = 0; i < LT_VIRTQ_MAX_QUEUES; i++)
		if (d->notify_fd[i] >= 0)
			close(d->notify_fd[i]);
	if (d->ops->destroy)
		d->ops->destroy(d); /* frees impl and d */
}

bool lt_virtio_has_feature(const struct lt_virtio_dev *d, int bit)
{
	return (d->driver_features >> bit) & 1;
}

struct lt_virtq *lt_virtio_queue(struct lt_virtio_dev *d, int q)
{
	if (q < 0 || q >= d->ops->nqueues || !(d->status & VIRTIO_STATUS_DRIVER_OK) ||
	    (d->status & VIRTIO_STATUS_NEEDS_RESET))
		return NULL;
	struct lt_virtq *vq = &d->q[q];
	return vq->ready && !vq->broken ? vq : NULL;
}

void lt_virtio_interrupt(struct lt_virtio_dev *d)
{
	d->isr |= VIRTIO_MMIO_INT_VRING;
	d->irq_count++;
	d->raise(d);
}

void lt_virtio_config_changed(struct lt_virtio_dev *d)
{
	d->config_gen++;
	d->isr |= VIRTIO_MMIO_INT_CONFIG;
	d->irq_count++;
	d->raise(d);
}

void lt_virtio_note_error(struct lt_virtio_dev *d, int q, int rc, const char *why)
{
	d->errors++;
	if (d->errors <= 10)
		lt_warn("%s: queue %d: %s", d->ops->name, q, why ? why : "bad request");
	if (rc == LT_VQ_BROKEN) {
		d->status |= VIRTIO_STATUS_NEEDS_RESET;
		lt_virtio_config_changed(d);
	}
}

static void reset(struct lt_virtio_dev *d)
{
	if (d->ops->reset)
		d->ops->reset(d);
	d->status = 0;
	d->dev_feat_sel = d->drv_feat_sel = d->queue_sel = 0;
	d->isr = 0;
	d->driver_features = 0;
	for (int i = 0; i < LT_VIRTQ_MAX_QUEUES; i++) {
		uint16_t max = d->q[i].max;
		memset(&d->q[i], 0, sizeof(d->q[i]));
		d->q[i].max = max;
	}
}

static uint32_t read_reg(struct lt_virtio_dev *d, uint64_t off)
{
	struct lt_virtq *q = d->queue_sel < (uint32_t)d->ops->nqueues ? &d->q[d->queue_sel] : NULL;
	uint64_t feat = d->ops->features(d) | (1ULL << VIRTIO_F_VERSION_1);
	switch (off) {
	case VIRTIO_MMIO_MAGIC: return VIRTIO_MMIO_MAGIC_VALUE;
	case VIRTIO_MMIO_VERSION: return 2;
	case VIRTIO_MMIO_DEVICE_ID: return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID: return 0x4c54544c; /* "LTTL" */
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return d->dev_feat_sel == 0 ? (uint32_t)feat
		       : d->dev_feat_sel == 1 ? (uint32_t)(feat >> 32) : 0;
	case VIRTIO_MMIO_QUEUE_NUM_MAX: return q ? q->max : 0;
	case VIRTIO_MMIO_QUEUE_READY: return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS: return d->isr;
	case VIRTIO_MMIO_STATUS: return d->status;
	case VIRTIO_MMIO_QUEUE_DESC_LOW: return q ? (uint32_t)q->desc : 0;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH: return q ? (uint32_t)(q->desc >> 32) : 0;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW: return q ? (uint32_t)q->avail : 0;
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH: return q ? (uint32_t)(q->avail >> 32) : 0;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW: return q ? (uint32_t)q->used : 0;
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH: return q ? (uint32_t)(q->used >> 32) : 0;
	case VIRTIO_MMIO_CONFIG_GENERATION: return d->config_gen;
	default: return 0;
	}
}

static void set_lo(uint64_t *v, uint32_t x) { *v = (*v & ~0xffffffffULL) | x; }
static void set_hi(uint64_t *v, uint32_t x) { *v = (*v & 0xffffffffULL) | ((uint64_t)x << 32); }

static void write_status(struct lt_virtio_dev *d, uint32_t v)
{
	if (v == 0) {
		reset(d);
		return;
	}
	uint32_t old = d->status;
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t offered = d->ops->features(d) | (1ULL << VIRTIO_F_VERSION_1);
		/* Modern only: a driver that does not accept VERSION_1, or asks for
		 * more than offered, cannot have FEATURES_OK. */
		if (!lt_virtio_has_feature(d, VIRTIO_F_VERSION_1) || (d->driver_features & ~offered))
			v &= ~VIRTIO_STATUS_FEATURES_OK;
	}
	d->status = (v & 0xff) | (old & VIRTIO_STATUS_NEEDS_RESET);
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) && d->ops->activate)
		d->ops->activate(d);
}

static void write_reg(struct lt_virtio_dev *d, uint64_t off, uint32_t v)
{
	struct lt_virtq *q = d->queue_sel < (uint32_t)d->ops->nqueues ? &d->q[d->queue_sel] : NULL;
	/* Queue layout may only change while the queue is not ready. */
	bool qcfg = q && !q->ready && !(d->status & VIRTIO_STATUS_DRIVER_OK);
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: d->dev_feat_sel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: d->drv_feat_sel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (d->status & VIRTIO_STATUS_FEATURES_OK)
			break;
		if (d->drv_feat_sel == 0)
			set_lo(&d->driver_features, v);
		else if (d->drv_feat_sel == 1)
			set_hi(&d->driver_features, v);
		break;
	case VIRTIO_MMIO_QUEUE_SEL: d->queue_sel = v; break;
	case VIRTIO_MMIO_QUEUE_NUM:
		/* Split rings index modulo the size: powers of two only. */
		if (qcfg && v && v <= q->max && !(v & (v - 1)))
			q->size = (uint16_t)v;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!q)
			break;
		if (v == 0) {
			q->ready = false;
		} else if (q->size) {
			q->ready = true;
			q->broken = false;
		}
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (v < (uint32_t)d->ops->nqueues && lt_virtio_queue(d, (int)v))
			d->ops->notify(d, (int)v);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK: d->isr &= ~v; break;
	case VIRTIO_MMIO_STATUS: write_status(d, v); break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW: if (qcfg) set_lo(&q->desc, v); break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH: if (qcfg) set_hi(&q->desc, v); break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW: if (qcfg) set_lo(&q->avail, v); break;
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH: if (qcfg) set_hi(&q->avail, v); break;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW: if (qcfg) set_lo(&q->used, v); break;
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH: if (qcfg) set_hi(&q->used, v); break;
	default: break;
	}
}

void lt_virtio_mmio_read(struct lt_virtio_dev *d, uint64_t off, uint8_t *data, uint32_t len)
{
	memset(data, 0, len);
	pthread_mutex_lock(&d->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		if (len <= 8 && d->ops->read_config)
			d->ops->read_config(d, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
	} else if (len == 4 && !(off & 3)) {
		uint32_t v = read_reg(d, off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&d->lock);
}

void lt_virtio_mmio_write(struct lt_virtio_dev *d, uint64_t off, const uint8_t *data, uint32_t len)
{
	pthread_mutex_lock(&d->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		if (len <= 8 && d->ops->write_config)
			d->ops->write_config(d, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
	} else if (len == 4 && !(off & 3)) {
		uint32_t v;
		memcpy(&v, data, 4);
		write_reg(d, off, v);
	}
	pthread_mutex_unlock(&d->lock);
}

/* State: tag 1 transport, tag 2 (per queue), tag 3 device-specific. */
struct transport_state {
	uint32_t status, dev_feat_sel, drv_feat_sel, queue_sel, isr, config_gen;
	uint64_t driver_features;
};
struct queue_state {
	uint64_t desc, avail, used;
	uint16_t size, last_avail, used_idx, ready;
};

int lt_virtio_save(struct lt_virtio_dev *d, struct lt_buf *b)
{
	pthread_mutex_lock(&d->lock);
	struct transport_state t = {d->status, d->dev_feat_sel, d->drv_feat_sel, d->queue_sel,
				    d->isr, d->config_gen, d->driver_features};
	int rc = lt_blob_put(b, 1, &t, sizeof(t));
	for (int i = 0; i < d->ops->nqueues && rc == 0; i++) {
		struct lt_virtq *q = &d->q[i];
		struct queue_state s = {q->desc, q->avail, q->used, q->size, q->last_avail,
					q->used_idx, q->ready};
		rc = lt_blob_put(b, 2, &s, sizeof(s));
	}
	if (rc == 0 && d->ops->save) {
		struct lt_buf dev = {0};
		rc = d->ops->save(d, &dev);
		if (rc == 0)
			rc = lt_blob_put(b, 3, dev.data, (uint32_t)dev.len);
		lt_buf_free(&dev);
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int lt_virtio_load(struct lt_virtio_dev *d, const void *p, size_t n)
{
	struct lt_blob_reader r = {.p = p, .len = n, .version = 1};
	struct transport_state t;
	if (lt_blob_get(&r, 1, 0, &t, sizeof(t), "virtio transport") < 0)
		return -1;
	struct queue_state qs[LT_VIRTQ_MAX_QUEUES];
	for (int i = 0; i < d->ops->nqueues; i++) {
		if (lt_blob_get(&r, 2, (uint32_t)i, &qs[i], sizeof(qs[i]), "virtio queue") < 0)
			return -1;
		if (qs[i].size > LT_VIRTQ_MAX_SIZE || (qs[i].size & (qs[i].size - 1)))
			return lt_fail("virtio queue %d: bad size %u", i, qs[i].size);
	}
	pthread_mutex_lock(&d->lock);
	d->status = t.status & 0xff;
	d->dev_feat_sel = t.dev_feat_sel;
	d->drv_feat_sel = t.drv_feat_sel;
	d->queue_sel = t.queue_sel;
	d->isr = t.isr & 3;
	d->config_gen = t.config_gen;
	d->driver_features = t.driver_features;
	for (int i = 0; i < d->ops->nqueues; i++) {
		struct lt_virtq *q = &d->q[i];
		q->desc = qs[i].desc;
		q->avail = qs[i].avail;
		q->used = qs[i].used;
		q->size = qs[i].size;
		q->last_avail = qs[i].last_avail;
		q->used_idx = qs[i].used_idx;
		q->ready = qs[i].ready && qs[i].size;
		q->broken = false;
	}
	int rc = 0;
	uint32_t dl;
	const void *dp = lt_blob_find(&r, 3, 0, &dl);
	if (d->ops->load)
		rc = d->ops->load(d, dp, dp ? dl : 0);
	pthread_mutex_unlock(&d->lock);
	return rc;
}
