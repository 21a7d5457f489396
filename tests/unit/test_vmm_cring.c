/* The coalesced I/O ring consumer (src/vmm/cring.c): entries replayed in
 * order across the wrap, slots handed back, and a ring with out-of-range
 * indices (not one KVM wrote) left alone. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "vmm/vmm_int.h"

#define PAGE 4096

struct seen {
	char bytes[2048];
	size_t n;
	int not_pio;
};

static void collect(void *arg, const struct kvm_coalesced_mmio *e)
{
	struct seen *s = arg;
	if (!e->pio)
		s->not_pio++;
	s->bytes[s->n++] = (char)e->data[0];
}

static struct kvm_coalesced_mmio_ring *new_ring(void)
{
	struct kvm_coalesced_mmio_ring *r = calloc(1, PAGE);
	assert_non_null(r);
	return r;
}

/* Appends like KVM: write the entry, then move last. */
static void produce(struct kvm_coalesced_mmio_ring *r, uint32_t cap, char c)
{
	struct kvm_coalesced_mmio *e = &r->coalesced_mmio[r->last];
	memset(e, 0, sizeof(*e));
	e->phys_addr = 0x3f8;
	e->len = 1;
	e->pio = 1;
	e->data[0] = (uint8_t)c;
	r->last = (r->last + 1) % cap;
}

static void test_capacity(void **state)
{
	(void)state;
	uint32_t cap = lt_cring_capacity(PAGE);
	assert_true(cap > 100);
	assert_true(sizeof(struct kvm_coalesced_mmio_ring) +
			    cap * sizeof(struct kvm_coalesced_mmio) <= PAGE);
	assert_true(sizeof(struct kvm_coalesced_mmio_ring) +
			    (cap + 1) * sizeof(struct kvm_coalesced_mmio) > PAGE);
}

static void test_in_order_across_the_wrap(void **state)
{
	(void)state;
	uint32_t cap = lt_cring_capacity(PAGE);
	struct kvm_coalesced_mmio_ring *r = new_ring();
	struct seen s = {0};
	assert_int_equal(lt_cring_drain(r, cap, collect, &s), 0); /* empty */
	/* Start near the end so the entries wrap. */
	r->first = r->last = cap - 3;
	const char *msg = "hello, ring\n";
	for (const char *p = msg; *p; p++)
		produce(r, cap, *p);
	assert_int_equal(lt_cring_drain(r, cap, collect, &s), strlen(msg));
	assert_memory_equal(s.bytes, msg, strlen(msg));
	assert_int_equal(s.not_pio, 0);
	assert_int_equal(r->first, r->last); /* every slot handed back */
	/* More after a drain continue in order. */
	produce(r, cap, '!');
	assert_int_equal(lt_cring_drain(r, cap, collect, &s), 1);
	assert_int_equal(s.bytes[s.n - 1], '!');
	free(r);
}

static void test_full_ring(void **state)
{
	(void)state;
	uint32_t cap = lt_cring_capacity(PAGE);
	struct kvm_coalesced_mmio_ring *r = new_ring();
	struct seen s = {0};
	/* KVM keeps one slot free: cap - 1 entries at most. */
	for (uint32_t i = 0; i < cap - 1; i++)
		produce(r, cap, (char)('a' + i % 26));
	assert_int_equal(lt_cring_drain(r, cap, collect, &s), cap - 1);
	for (uint32_t i = 0; i < cap - 1; i++)
		assert_int_equal(s.bytes[i], 'a' + i % 26);
	free(r);
}

static void test_out_of_range_indices_left_alone(void **state)
{
	(void)state;
	uint32_t cap = lt_cring_capacity(PAGE);
	struct kvm_coalesced_mmio_ring *r = new_ring();
	struct seen s = {0};
	r->first = 0;
	r->last = cap + 5;
	assert_int_equal(lt_cring_drain(r, cap, collect, &s), 0);
	r->first = cap;
	r->last = 0;
	assert_int_equal(lt_cring_drain(r, cap, collect, &s), 0);
	assert_int_equal(s.n, 0);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_in_order_across_the_wrap),
		cmocka_unit_test(test_full_ring),
		cmocka_unit_test(test_out_of_range_indices_left_alone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
