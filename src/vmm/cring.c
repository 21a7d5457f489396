/* The coalesced MMIO/PIO ring KVM shares with user space: writes to a
 * registered zone are appended there instead of exiting, and the VMM
 * replays them in order. Only the serial transmit register is coalesced
 * (vm.c): a console byte then costs no exit to user space. */
#include <linux/kvm.h>
#include <stdatomic.h>

#include "vmm/vmm_int.h"

uint32_t lt_cring_capacity(long page_size)
{
	return (uint32_t)(((size_t)page_size - sizeof(struct kvm_coalesced_mmio_ring)) /
			  sizeof(struct kvm_coalesced_mmio));
}

size_t lt_cring_drain(struct kvm_coalesced_mmio_ring *r, uint32_t cap, lt_cring_fn fn, void *arg)
{
	size_t n = 0;
	uint32_t first = __atomic_load_n(&r->first, __ATOMIC_RELAXED);
	/* KVM writes the entry, then publishes last (release). */
	uint32_t last = __atomic_load_n(&r->last, __ATOMIC_ACQUIRE);
	if (first >= cap || last >= cap)
		return 0; /* not a ring KVM would write: leave it */
	while (first != last) {
		struct kvm_coalesced_mmio e = r->coalesced_mmio[first];
		fn(arg, &e);
		n++;
		first = (first + 1) % cap;
		/* The slot is free for KVM once first moves past it. */
		__atomic_store_n(&r->first, first, __ATOMIC_RELEASE);
		if (first == last)
			last = __atomic_load_n(&r->last, __ATOMIC_ACQUIRE);
		if (last >= cap)
			break;
	}
	return n;
}
