/* The VM's virtio devices: creation from the config, irqfd/ioeventfd
 * wiring (with in-exit fallbacks), MMIO dispatch and their state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/virtio.h"
#include "vmm/vmm_int.h"

static void wire(struct lt_vm *vm, struct lt_virtio_dev *d)
{
	d->vm_fd = vm->vm_fd;
	d->idle = &vm->idle;
	if (vm->has_irqfd) {
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		struct kvm_irqfd irqfd = {.fd = (uint32_t)efd, .gsi = (uint32_t)d->irq};
		if (efd >= 0 && ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) == 0) {
			d->irq_fd = efd;
		} else if (efd >= 0) {
			lt_debug("vmm: irqfd for irq %d unavailable, using KVM_IRQ_LINE", d->irq);
			close(efd);
		}
	}
	if (!vm->has_ioeventfd)
		return;
	for (int q = 0; q < d->ops->nqueues; q++) {
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (efd < 0)
			continue;
		struct kvm_ioeventfd io = {
			.datamatch = (uint64_t)q,
			.addr = d->base + VIRTIO_MMIO_QUEUE_NOTIFY,
			.len = 4,
			.fd = efd,
			.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
		};
		if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
			close(efd); /* the MMIO exit path handles this queue */
			continue;
		}
		d->notify_fd[q] = efd;
	}
}

static int add(struct lt_vm *vm, struct lt_virtio_dev *d)
{
	wire(vm, d);
	vm->virtio[vm->nvirtio++] = d;
	return 0;
}

static uint64_t slot_base(struct lt_vm *vm)
{
	return LT_VM_VIRTIO_BASE + (uint64_t)vm->nvirtio * LT_VM_VIRTIO_SIZE;
}

int lt_vm_devices_create(struct lt_vm *vm)
{
	for (int i = 0; i < vm->cfg.ndisks; i++) {
		const struct lt_vm_disk *dk = &vm->cfg.disks[i];
		struct lt_blk_backend *be;
		if (lt_blk_open(dk->path, dk->read_only, dk->overlay, &be) < 0)
			return -1;
		struct lt_virtio_dev *d;
		if (lt_virtio_blk_new(&vm->gmem, slot_base(vm), LT_VM_VIRTIO_IRQ0 + vm->nvirtio, be,
				      dk->id, &d) < 0) {
			lt_blk_close(be);
			return -1;
		}
		add(vm, d);
	}
	if (vm->cfg.tap) {
		int fd;
		if (lt_tap_open(vm->cfg.tap, &fd) < 0)
			return -1;
		/* A locally administered MAC derived from the pid. */
		uint32_t pid = (uint32_t)getpid();
		uint8_t mac[6] = {0x06, 0x1e, (uint8_t)(pid >> 24), (uint8_t)(pid >> 16),
				  (uint8_t)(pid >> 8), (uint8_t)pid};
		struct lt_virtio_dev *d;
		if (lt_virtio_net_new(&vm->gmem, slot_base(vm), LT_VM_VIRTIO_IRQ0 + vm->nvirtio, fd,
				      mac, &d) < 0) {
			close(fd);
			return -1;
		}
		add(vm, d);
	}
	if (vm->cfg.vsock_uds) {
		struct lt_virtio_dev *d;
		if (lt_virtio_vsock_new(&vm->gmem, slot_base(vm), LT_VM_VIRTIO_IRQ0 + vm->nvirtio,
					vm->cfg.vsock_cid, vm->cfg.vsock_uds, &d) < 0)
			return -1;
		add(vm, d);
	}
	return 0;
}

void lt_vm_devices_destroy(struct lt_vm *vm)
{
	for (int i = 0; i < vm->nvirtio; i++)
		lt_virtio_free(vm->virtio[i]);
	vm->nvirtio = 0;
}

static void on_notify(void *opaque, int fd, uint32_t events)
{
	(void)events;
	struct lt_notify_ctx *c = opaque;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	pthread_mutex_lock(&c->d->lock);
	if (lt_virtio_queue(c->d, c->q))
		c->d->ops->notify(c->d, c->q);
	pthread_mutex_unlock(&c->d->lock);
}

int lt_vm_devices_attach_loop(struct lt_vm *vm)
{
	for (int i = 0; i < vm->nvirtio; i++) {
		struct lt_virtio_dev *d = vm->virtio[i];
		for (int q = 0; q < d->ops->nqueues && q < 4; q++) {
			if (d->notify_fd[q] < 0)
				continue;
			vm->notify_ctx[i][q] = (struct lt_notify_ctx){d, q};
			if (lt_ioloop_add(vm->loop, d->notify_fd[q], EPOLLIN, on_notify,
					  &vm->notify_ctx[i][q]) < 0)
				return -1;
		}
		if (d->ops->attach_loop && d->ops->attach_loop(d, vm->loop) < 0)
			return -1;
	}
	return 0;
}

bool lt_vm_mmio(struct lt_vm *vm, uint64_t addr, uint8_t *data, uint32_t len, bool write)
{
	if (addr < LT_VM_VIRTIO_BASE)
		return false;
	uint64_t i = (addr - LT_VM_VIRTIO_BASE) / LT_VM_VIRTIO_SIZE;
	if (i >= (uint64_t)vm->nvirtio)
		return false;
	struct lt_virtio_dev *d = vm->virtio[i];
	uint64_t off = addr - d->base;
	if (write)
		lt_virtio_mmio_write(d, off, data, len);
	else
		lt_virtio_mmio_read(d, off, data, len);
	return true;
}

int lt_vm_devices_save(struct lt_vm *vm, struct lt_buf *b)
{
	for (int i = 0; i < vm->nvirtio; i++) {
		struct lt_buf one = {0};
		int rc = lt_virtio_save(vm->virtio[i], &one);
		if (rc == 0)
			rc = lt_blob_put(b, 0x100 + (uint32_t)i, one.data, (uint32_t)one.len);
		lt_buf_free(&one);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int lt_vm_devices_load(struct lt_vm *vm, const struct lt_blob_reader *r)
{
	for (int i = 0; i < vm->nvirtio; i++) {
		uint32_t len;
		const void *p = lt_blob_find(r, 0x100 + (uint32_t)i, 0, &len);
		if (!p)
			return lt_fail("device state: virtio device %d (%s) missing", i,
				       vm->virtio[i]->ops->name);
		if (lt_virtio_load(vm->virtio[i], p, len) < 0)
			return lt_fail_ctx("virtio device %d (%s)", i, vm->virtio[i]->ops->name);
	}
	return 0;
}
