/* The paravirtual idle wait (src/vmm/idle.c): a kick wakes a blocked
 * vCPU, a kick before the wait is never lost, timeouts and aborts end it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#include "vmm/idle.h"

static uint64_t ms_since(uint64_t t0)
{
	return (lt_now_ns() - t0) / 1000000ULL;
}

static void test_timeout_without_kick(void **state)
{
	(void)state;
	struct lt_idle i;
	memset(&i, 0, sizeof(i));
	uint32_t seen = 0;
	uint64_t t0 = lt_now_ns();
	assert_false(lt_idle_wait(&i, &seen, 30, NULL, NULL));
	uint64_t ms = ms_since(t0);
	assert_true(ms >= 29);
	assert_true(ms < 1000);
	assert_int_equal(atomic_load(&i.waiters), 0);
	/* 0 ms: a poll, never a sleep. */
	t0 = lt_now_ns();
	assert_false(lt_idle_wait(&i, &seen, 0, NULL, NULL));
	assert_true(ms_since(t0) < 20);
}

static void test_kick_before_wait_not_lost(void **state)
{
	(void)state;
	struct lt_idle i;
	memset(&i, 0, sizeof(i));
	uint32_t seen = 0;
	lt_idle_kick(&i); /* raised while the guest was busy */
	uint64_t t0 = lt_now_ns();
	assert_true(lt_idle_wait(&i, &seen, 5000, NULL, NULL));
	assert_true(ms_since(t0) < 100);
	assert_int_equal(seen, 1);
	/* Consumed: the next wait sleeps until its timeout. */
	assert_false(lt_idle_wait(&i, &seen, 20, NULL, NULL));
}

struct kicker {
	struct lt_idle *i;
	atomic_bool *flag; /* set instead of kicking the sequence, if non-NULL */
	int delay_ms;
};

static void *kick_later(void *arg)
{
	struct kicker *k = arg;
	struct timespec ts = {0, (long)k->delay_ms * 1000000L};
	nanosleep(&ts, NULL);
	if (k->flag)
		atomic_store(k->flag, true);
	lt_idle_kick(k->i); /* a pause sets its flag, then kicks */
	return NULL;
}

static void test_kick_wakes_waiter(void **state)
{
	(void)state;
	struct lt_idle i;
	memset(&i, 0, sizeof(i));
	uint32_t seen = 0;
	struct kicker k = {&i, NULL, 50};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, kick_later, &k), 0);
	uint64_t t0 = lt_now_ns();
	assert_true(lt_idle_wait(&i, &seen, 10000, NULL, NULL));
	uint64_t ms = ms_since(t0);
	pthread_join(t, NULL);
	assert_true(ms >= 40);
	assert_true(ms < 5000);
}

static void test_abort_flag_ends_wait(void **state)
{
	(void)state;
	struct lt_idle i;
	memset(&i, 0, sizeof(i));
	uint32_t seen = 0;
	atomic_bool pause_req = false, stopping = false;
	struct kicker k = {&i, &pause_req, 30};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, kick_later, &k), 0);
	uint64_t t0 = lt_now_ns();
	lt_idle_wait(&i, &seen, 10000, &pause_req, &stopping);
	pthread_join(t, NULL);
	assert_true(ms_since(t0) < 5000);
	/* Already set: no sleep at all. */
	stopping = true;
	pause_req = false;
	t0 = lt_now_ns();
	assert_false(lt_idle_wait(&i, &seen, 10000, &pause_req, &stopping));
	assert_true(ms_since(t0) < 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timeout_without_kick),
		cmocka_unit_test(test_kick_before_wait_not_lost),
		cmocka_unit_test(test_kick_wakes_waiter),
		cmocka_unit_test(test_abort_flag_ends_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
