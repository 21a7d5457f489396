/* Paravirtual idle for guests that cannot HLT (the ring-3 test guests):
 * a vCPU blocks in its exit until a device raises an interrupt, the VM is
 * paused or stopped, or a timeout passes, instead of spinning on a host
 * core that the device threads need. A sequence word with futex wait/wake
 * keeps it free of lost wake-ups. */
#ifndef LTTLE_VMM_IDLE_H
#define LTTLE_VMM_IDLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct lt_idle {
	_Atomic uint32_t seq;  /* bumped by every kick */
	atomic_int waiters;   /* vCPUs blocked in lt_idle_wait */
};

/* An interrupt was raised (or the VM changes state): wakes idle vCPUs. */
void lt_idle_kick(struct lt_idle *i);

/* Blocks up to timeout_ms unless a kick happened since *seen (the value
 * from this vCPU's previous wait) or *abort is set. Updates *seen. Returns
 * true if a kick ended (or preceded) the wait, false on timeout/abort. */
bool lt_idle_wait(struct lt_idle *i, uint32_t *seen, uint32_t timeout_ms,
		  const atomic_bool *abort_a, const atomic_bool *abort_b);

#endif
