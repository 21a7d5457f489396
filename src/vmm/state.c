/* Save/load of vCPU, VM and device state as versioned blobs (vmm.h).
 *
 * vCPU blob (kind 1, version 1) tags:
 *   1 kvm_regs  2 kvm_sregs  3 kvm_fpu  4 xsave (KVM_GET_XSAVE2 size)
 *   5 kvm_xcrs  6 MSRs (kvm_msr_entry[])  7 kvm_lapic_state
 *   8 kvm_vcpu_events  9 kvm_mp_state  10 kvm_debugregs
 *   11 u64[2] {vCPU index, CPU template}
 * VM blob (kind 2, version 1) tags:
 *   1/2 PIC master/slave (kvm_irqchip)  3 IOAPIC (kvm_irqchip)
 *   4 kvm_pit_state2  5 kvm_clock_data  6 u64[4] {template, vCPUs,
 *   memory bytes, regions}
 * Device blob (kind 3, version 1) tags:
 *   1 serial  2 guest device  0x100+i virtio device i (transport, queues,
 *   device-specific record). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/virtio.h"
#include "vmm/vmm_int.h"

#define VCPU_VERSION 1
#define VM_VERSION 1
#define DEV_VERSION 1

static int msr_readable(struct lt_vm *vm, uint32_t idx)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = 1;
	m.e.index = idx;
	return ioctl(vm->vcpus[0].fd, KVM_GET_MSRS, &m) == 1;
}

int lt_vm_msr_list_init(struct lt_vm *vm)
{
	if (vm->msr_list)
		return 0;
	struct kvm_msr_list probe = {.nmsrs = 0};
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return lt_fail_errno("KVM_GET_MSR_INDEX_LIST");
	uint32_t n = probe.nmsrs;
	struct kvm_msr_list *l = lt_calloc(1, sizeof(*l) + n * sizeof(uint32_t));
	if (!l)
		return -1;
	l->nmsrs = n;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return lt_fail_errno("KVM_GET_MSR_INDEX_LIST");
	}
	uint32_t *keep = lt_calloc(l->nmsrs ? l->nmsrs : 1, sizeof(uint32_t));
	if (!keep) {
		free(l);
		return -1;
	}
	int k = 0;
	/* Some listed MSRs are not readable on this CPU/config: keep the rest. */
	for (uint32_t i = 0; i < l->nmsrs; i++)
		if (msr_readable(vm, l->indices[i]))
			keep[k++] = l->indices[i];
	free(l);
	vm->msr_list = keep;
	vm->nmsrs = k;
	return 0;
}

static bool vm_quiet(struct lt_vm *vm)
{
	bool ok;
	pthread_mutex_lock(&vm->lock);
	ok = !vm->started || vm->paused || atomic_load(&vm->stopping);
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

#define GET(fd, req, ptr, name)                                           \
	do {                                                              \
		if (ioctl(fd, req, ptr) < 0) {                            \
			rc = lt_fail_errno("vCPU %d: " name, idx);        \
			goto out;                                         \
		}                                                         \
	} while (0)

int lt_vm_save_vcpu(struct lt_vm *vm, int idx, struct lt_buf *out)
{
	if (idx < 0 || idx >= vm->nvcpus)
		return lt_fail("vCPU %d does not exist", idx);
	if (!vm_quiet(vm))
		return lt_fail("save vCPU state: VM is running (pause it first)");
	if (lt_vm_msr_list_init(vm) < 0)
		return -1;
	int fd = vm->vcpus[idx].fd, rc = 0;
	size_t start;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	void *xsave = lt_calloc(1, (size_t)vm->xsave_size);
	struct kvm_msrs *msrs =
		lt_calloc(1, sizeof(*msrs) + (size_t)vm->nmsrs * sizeof(struct kvm_msr_entry));
	if (!xsave || !msrs) {
		rc = -1;
		goto out;
	}
	GET(fd, KVM_GET_REGS, &regs, "KVM_GET_REGS");
	GET(fd, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	GET(fd, KVM_GET_FPU, &fpu, "KVM_GET_FPU");
	GET(fd, vm->has_xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, xsave, "KVM_GET_XSAVE");
	GET(fd, KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS");
	GET(fd, KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
	GET(fd, KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS");
	GET(fd, KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
	GET(fd, KVM_GET_DEBUGREGS, &dbg, "KVM_GET_DEBUGREGS");
	msrs->nmsrs = (uint32_t)vm->nmsrs;
	for (int i = 0; i < vm->nmsrs; i++)
		msrs->entries[i].index = vm->msr_list[i];
	int got = ioctl(fd, KVM_GET_MSRS, msrs);
	if (got != vm->nmsrs) {
		rc = lt_fail("vCPU %d: KVM_GET_MSRS read %d of %d MSRs", idx, got, vm->nmsrs);
		goto out;
	}
	uint64_t info[2] = {(uint64_t)idx, (uint64_t)vm->cfg.cpu_template};
	if (lt_blob_begin(out, LT_STATE_VCPU, VCPU_VERSION, &start) < 0 ||
	    lt_blob_put(out, 1, &regs, sizeof(regs)) < 0 ||
	    lt_blob_put(out, 2, &sregs, sizeof(sregs)) < 0 ||
	    lt_blob_put(out, 3, &fpu, sizeof(fpu)) < 0 ||
	    lt_blob_put(out, 4, xsave, (uint32_t)vm->xsave_size) < 0 ||
	    lt_blob_put(out, 5, &xcrs, sizeof(xcrs)) < 0 ||
	    lt_blob_put(out, 6, msrs->entries,
			(uint32_t)(vm->nmsrs * sizeof(struct kvm_msr_entry))) < 0 ||
	    lt_blob_put(out, 7, &lapic, sizeof(lapic)) < 0 ||
	    lt_blob_put(out, 8, &events, sizeof(events)) < 0 ||
	    lt_blob_put(out, 9, &mp, sizeof(mp)) < 0 ||
	    lt_blob_put(out, 10, &dbg, sizeof(dbg)) < 0 ||
	    lt_blob_put(out, 11, info, sizeof(info)) < 0 || lt_blob_end(out, start) < 0)
		rc = -1;
out:
	free(xsave);
	free(msrs);
	return rc;
}

#define SET(fd, req, ptr, name)                                           \
	do {                                                              \
		if (ioctl(fd, req, ptr) < 0) {                            \
			rc = lt_fail_errno("vCPU %d: " name, idx);        \
			goto out;                                         \
		}                                                         \
	} while (0)

int lt_vm_load_vcpu(struct lt_vm *vm, int idx, const void *blob, size_t n)
{
	if (idx < 0 || idx >= vm->nvcpus)
		return lt_fail("vCPU %d does not exist", idx);
	if (!vm_quiet(vm))
		return lt_fail("load vCPU state: VM is running");
	struct lt_blob_reader r;
	if (lt_blob_open(&r, blob, n, LT_STATE_VCPU, VCPU_VERSION, "vCPU") < 0)
		return -1;
	int fd = vm->vcpus[idx].fd, rc = 0;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	uint64_t info[2];
	struct kvm_msrs *msrs = NULL;
	void *xsave = NULL;
	if (lt_blob_get(&r, 11, 0, info, sizeof(info), "vCPU info") < 0)
		return -1;
	if (info[1] != (uint64_t)vm->cfg.cpu_template)
		return lt_fail("vCPU state: CPU template %s, VM uses %s",
			       lt_cpu_template_name((enum lt_cpu_template)info[1]),
			       lt_cpu_template_name(vm->cfg.cpu_template));
	if (lt_blob_get(&r, 1, 0, &regs, sizeof(regs), "regs") < 0 ||
	    lt_blob_get(&r, 2, 0, &sregs, sizeof(sregs), "sregs") < 0 ||
	    lt_blob_get(&r, 5, 0, &xcrs, sizeof(xcrs), "xcrs") < 0 ||
	    lt_blob_get(&r, 7, 0, &lapic, sizeof(lapic), "lapic") < 0 ||
	    lt_blob_get(&r, 8, 0, &events, sizeof(events), "vcpu events") < 0 ||
	    lt_blob_get(&r, 9, 0, &mp, sizeof(mp), "mp state") < 0 ||
	    lt_blob_get(&r, 10, 0, &dbg, sizeof(dbg), "debug regs") < 0)
		return -1;
	if (xcrs.nr_xcrs > KVM_MAX_XCRS)
		return lt_fail("vCPU state: %u XCRs", xcrs.nr_xcrs);
	uint32_t xl, ml;
	const void *xp = lt_blob_find(&r, 4, 0, &xl);
	const void *mpp = lt_blob_find(&r, 6, 0, &ml);
	if (!xp || xl < sizeof(struct kvm_xsave) || !mpp || ml % sizeof(struct kvm_msr_entry))
		return lt_fail("vCPU state: xsave or MSR record missing or malformed");
	/* A bigger saved xsave than this host supports cannot be loaded. */
	if (xl > (uint32_t)vm->xsave_size)
		return lt_fail("vCPU state: xsave area %u bytes, host supports %d", xl,
			       vm->xsave_size);
	xsave = lt_calloc(1, (size_t)vm->xsave_size);
	msrs = lt_calloc(1, sizeof(*msrs) + ml);
	if (!xsave || !msrs) {
		rc = -1;
		goto out;
	}
	memcpy(xsave, xp, xl);
	msrs->nmsrs = ml / sizeof(struct kvm_msr_entry);
	memcpy(msrs->entries, mpp, ml);
	SET(fd, KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
	SET(fd, KVM_SET_REGS, &regs, "KVM_SET_REGS");
	SET(fd, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	SET(fd, KVM_SET_XSAVE, xsave, "KVM_SET_XSAVE");
	SET(fd, KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
	SET(fd, KVM_SET_DEBUGREGS, &dbg, "KVM_SET_DEBUGREGS");
	SET(fd, KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
	int set = ioctl(fd, KVM_SET_MSRS, msrs);
	if (set != (int)msrs->nmsrs) {
		rc = lt_fail("vCPU %d: KVM_SET_MSRS stopped at MSR 0x%x (%d of %u)", idx,
			     set >= 0 && set < (int)msrs->nmsrs ? msrs->entries[set].index : 0, set,
			     msrs->nmsrs);
		goto out;
	}
	SET(fd, KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
out:
	free(xsave);
	free(msrs);
	return rc;
}

int lt_vm_save_vm(struct lt_vm *vm, struct lt_buf *out)
{
	if (!vm_quiet(vm))
		return lt_fail("save VM state: VM is running (pause it first)");
	struct kvm_irqchip chips[3];
	for (int i = 0; i < 3; i++) {
		memset(&chips[i], 0, sizeof(chips[i]));
		chips[i].chip_id = (uint32_t)i;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0)
			return lt_fail_errno("KVM_GET_IRQCHIP %d", i);
	}
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk;
	memset(&clk, 0, sizeof(clk));
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return lt_fail_errno("KVM_GET_PIT2");
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) < 0)
		return lt_fail_errno("KVM_GET_CLOCK");
	uint64_t info[4] = {(uint64_t)vm->cfg.cpu_template, (uint64_t)vm->nvcpus,
			    vm->cfg.mem_bytes, (uint64_t)vm->nregions};
	size_t start;
	if (lt_blob_begin(out, LT_STATE_VM, VM_VERSION, &start) < 0 ||
	    lt_blob_put(out, 1, &chips[0], sizeof(chips[0])) < 0 ||
	    lt_blob_put(out, 2, &chips[1], sizeof(chips[1])) < 0 ||
	    lt_blob_put(out, 3, &chips[2], sizeof(chips[2])) < 0 ||
	    lt_blob_put(out, 4, &pit, sizeof(pit)) < 0 ||
	    lt_blob_put(out, 5, &clk, sizeof(clk)) < 0 ||
	    lt_blob_put(out, 6, info, sizeof(info)) < 0 || lt_blob_end(out, start) < 0)
		return -1;
	return 0;
}

int lt_vm_load_vm(struct lt_vm *vm, const void *blob, size_t n, uint64_t adjust_ns)
{
	if (!vm_quiet(vm))
		return lt_fail("load VM state: VM is running");
	struct lt_blob_reader r;
	if (lt_blob_open(&r, blob, n, LT_STATE_VM, VM_VERSION, "VM") < 0)
		return -1;
	uint64_t info[4];
	if (lt_blob_get(&r, 6, 0, info, sizeof(info), "VM info") < 0)
		return -1;
	if (info[0] != (uint64_t)vm->cfg.cpu_template)
		return lt_fail("VM state: CPU template %s, VM uses %s",
			       lt_cpu_template_name((enum lt_cpu_template)info[0]),
			       lt_cpu_template_name(vm->cfg.cpu_template));
	if (info[1] != (uint64_t)vm->nvcpus || info[2] != vm->cfg.mem_bytes)
		return lt_fail("VM state: %llu vCPUs / %llu bytes, VM has %d / %llu",
			       (unsigned long long)info[1], (unsigned long long)info[2], vm->nvcpus,
			       (unsigned long long)vm->cfg.mem_bytes);
	struct kvm_irqchip chips[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk;
	for (int i = 0; i < 3; i++) {
		if (lt_blob_get(&r, (uint32_t)i + 1, 0, &chips[i], sizeof(chips[i]), "irqchip") < 0)
			return -1;
		if (chips[i].chip_id != (uint32_t)i)
			return lt_fail("VM state: irqchip %d has id %u", i, chips[i].chip_id);
	}
	if (lt_blob_get(&r, 4, 0, &pit, sizeof(pit), "PIT") < 0 ||
	    lt_blob_get(&r, 5, 0, &clk, sizeof(clk), "kvmclock") < 0)
		return -1;
	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
			return lt_fail_errno("KVM_SET_IRQCHIP %d", i);
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return lt_fail_errno("KVM_SET_PIT2");
	struct kvm_clock_data set;
	memset(&set, 0, sizeof(set));
	set.clock = clk.clock + adjust_ns;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0)
		return lt_fail_errno("KVM_SET_CLOCK");
	return 0;
}

int lt_vm_save_devices(struct lt_vm *vm, struct lt_buf *out)
{
	if (!vm_quiet(vm))
		return lt_fail("save device state: VM is running (pause it first)");
	size_t start;
	struct lt_buf s = {0}, g = {0};
	int rc = -1;
	lt_vm_serial_sync(vm); /* coalesced output first: it is the UART's past */
	if (lt_serial_save(&vm->serial, &s) < 0 || lt_guestdev_save(&vm->guestdev, &g) < 0)
		goto out;
	if (lt_blob_begin(out, LT_STATE_DEVICES, DEV_VERSION, &start) < 0 ||
	    lt_blob_put(out, 1, s.data, (uint32_t)s.len) < 0 ||
	    lt_blob_put(out, 2, g.data, (uint32_t)g.len) < 0 || lt_vm_devices_save(vm, out) < 0 ||
	    lt_blob_end(out, start) < 0)
		goto out;
	rc = 0;
out:
	lt_buf_free(&s);
	lt_buf_free(&g);
	return rc;
}

int lt_vm_load_devices(struct lt_vm *vm, const void *blob, size_t n)
{
	if (!vm_quiet(vm))
		return lt_fail("load device state: VM is running");
	struct lt_blob_reader r;
	if (lt_blob_open(&r, blob, n, LT_STATE_DEVICES, DEV_VERSION, "device") < 0)
		return -1;
	uint32_t len;
	const void *p = lt_blob_find(&r, 1, 0, &len);
	if (!p || lt_serial_load(&vm->serial, p, len) < 0)
		return p ? -1 : lt_fail("device state: serial missing");
	lt_vm_serial_sync(vm); /* the restored IER/MCR decide coalescing */
	p = lt_blob_find(&r, 2, 0, &len);
	if (!p || lt_guestdev_load(&vm->guestdev, p, len) < 0)
		return p ? -1 : lt_fail("device state: guest device missing");
	return lt_vm_devices_load(vm, &r);
}
