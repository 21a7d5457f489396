/* Paravirtual idle: see idle.h. */
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"
#include "vmm/idle.h"

void lt_idle_kick(struct lt_idle *i)
{
	atomic_fetch_add(&i->seq, 1);
	if (atomic_load(&i->waiters) > 0)
		syscall(SYS_futex, &i->seq, FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
}

static bool aborted(const atomic_bool *a, const atomic_bool *b)
{
	return (a && atomic_load(a)) || (b && atomic_load(b));
}

bool lt_idle_wait(struct lt_idle *i, uint32_t *seen, uint32_t timeout_ms,
		  const atomic_bool *abort_a, const atomic_bool *abort_b)
{
	uint64_t end = lt_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	bool kicked = false;
	atomic_fetch_add(&i->waiters, 1);
	for (;;) {
		/* The futex compares against *seen: a kick after the load
		 * below makes the wait return at once. */
		uint32_t cur = atomic_load(&i->seq);
		if (cur != *seen) {
			kicked = true;
			break;
		}
		if (aborted(abort_a, abort_b))
			break;
		uint64_t now = lt_now_ns();
		if (now >= end)
			break;
		struct timespec ts = {.tv_sec = (time_t)((end - now) / 1000000000ULL),
				      .tv_nsec = (long)((end - now) % 1000000000ULL)};
		long r = syscall(SYS_futex, &i->seq, FUTEX_WAIT_PRIVATE, cur, &ts, NULL, 0);
		if (r < 0 && errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
			break; /* cannot sleep: let the guest poll */
	}
	atomic_fetch_sub(&i->waiters, 1);
	*seen = atomic_load(&i->seq);
	return kicked;
}
