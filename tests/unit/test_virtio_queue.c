/* Virtqueue parsing over hostile guest memory, and the virtio-mmio
 * transport, driven through guest memory held by the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_virtio_common.h"

static struct tmem T;
static struct lt_virtq Q;
static struct tq D;
static struct lt_vq_chain C;

static int setup(void **state)
{
	(void)state;
	tmem_init(&T);
	tq_init(&D, &T, 0, 16);
	memset(&Q, 0, sizeof(Q));
	Q = (struct lt_virtq){.size = 16, .max = 256, .ready = true, .desc = D.desc,
			      .avail = D.avail, .used = D.used};
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tmem_free(&T);
	return 0;
}

static int pop(bool indirect)
{
	return lt_virtq_pop(&Q, &T.m, indirect, &C);
}

static void test_empty_and_simple_chain(void **state)
{
	(void)state;
	assert_int_equal(pop(false), LT_VQ_EMPTY);
	uint64_t a[2] = {galloc(&T, 16), galloc(&T, 100)};
	uint32_t l[2] = {16, 100};
	uint16_t f[2] = {0, VIRTQ_DESC_F_WRITE};
	uint16_t head = chain_add(&D, 2, a, l, f);
	memcpy(gp(&T, a[0]), "0123456789abcdef", 16);
	assert_int_equal(pop(false), LT_VQ_OK);
	assert_int_equal(C.head, head);
	assert_int_equal(C.nsegs, 2);
	assert_int_equal(C.rlen, 16);
	assert_int_equal(C.wlen, 100);
	char buf[17] = {0};
	assert_int_equal(lt_vq_read(&C, 0, buf, 16), 16);
	assert_string_equal(buf, "0123456789abcdef");
	assert_int_equal(lt_vq_write(&C, 98, "xyz", 3), 2); /* bounded by the buffer */
	assert_int_equal(lt_virtq_push(&Q, &T.m, C.head, 42), 0);
	uint32_t id, len;
	assert_true(used_next(&D, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(len, 42);
	assert_int_equal(pop(false), LT_VQ_EMPTY);
}

static void expect_bad(const char *why_part)
{
	int rc = pop(true);
	assert_int_equal(rc, LT_VQ_BAD_CHAIN);
	assert_non_null(C.error);
	assert_non_null(strstr(C.error, why_part));
	/* The queue itself stays usable. */
	assert_false(Q.broken);
}

static void test_out_of_range_buffers(void **state)
{
	(void)state;
	desc_set(&D, 0, 0x10, 16, 0, 0); /* below RAM */
	avail_push(&D, 0);
	expect_bad("outside guest RAM");
	desc_set(&D, 1, TM_BASE + TM_SIZE - 8, 16, 0, 0); /* crosses the end */
	avail_push(&D, 1);
	expect_bad("outside guest RAM");
	desc_set(&D, 2, UINT64_MAX - 4, 16, 0, 0); /* wraps */
	avail_push(&D, 2);
	expect_bad("outside guest RAM");
}

static void test_loops_and_bad_links(void **state)
{
	(void)state;
	uint64_t b = galloc(&T, 64);
	desc_set(&D, 0, b, 8, VIRTQ_DESC_F_NEXT, 1);
	desc_set(&D, 1, b, 8, VIRTQ_DESC_F_NEXT, 0); /* 0 -> 1 -> 0 */
	avail_push(&D, 0);
	expect_bad("loops");
	desc_set(&D, 2, b, 8, VIRTQ_DESC_F_NEXT, 2); /* self loop */
	avail_push(&D, 2);
	expect_bad("loops");
	desc_set(&D, 3, b, 8, VIRTQ_DESC_F_NEXT, 999);
	avail_push(&D, 3);
	expect_bad("next index out of range");
	avail_push(&D, 77); /* head beyond the table */
	assert_int_equal(pop(false), LT_VQ_BAD_CHAIN);
	assert_int_equal(C.head, 0xffff);
	assert_int_equal(lt_virtq_push(&Q, &T.m, C.head, 0), -1);
}

static void test_direction_and_size(void **state)
{
	(void)state;
	uint64_t b = galloc(&T, 64);
	desc_set(&D, 0, b, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	desc_set(&D, 1, b, 8, 0, 0); /* readable after writable */
	avail_push(&D, 0);
	expect_bad("device-readable buffer after");
	desc_set(&D, 2, TM_BASE, 3U << 20, VIRTQ_DESC_F_NEXT, 3);
	desc_set(&D, 3, TM_BASE, 3U << 20, 0, 0); /* 6 MiB total */
	avail_push(&D, 2);
	expect_bad("size cap");
	/* Zero-length buffers are skipped, not errors. */
	desc_set(&D, 4, 0, 0, VIRTQ_DESC_F_NEXT, 5);
	desc_set(&D, 5, b, 4, 0, 0);
	avail_push(&D, 4);
	assert_int_equal(pop(false), LT_VQ_OK);
	assert_int_equal(C.nsegs, 1);
}

static void test_indirect(void **state)
{
	(void)state;
	uint64_t b = galloc(&T, 256);
	uint64_t tbl = galloc(&T, 4 * 16);
	struct virtq_desc ind[4] = {
		{b, 16, VIRTQ_DESC_F_NEXT, 1},
		{b + 16, 32, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2},
		{b + 48, 1, VIRTQ_DESC_F_WRITE, 0},
	};
	memcpy(gp(&T, tbl), ind, sizeof(ind));
	desc_set(&D, 0, tbl, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(&D, 0);
	assert_int_equal(pop(true), LT_VQ_OK);
	assert_int_equal(C.nsegs, 3);
	assert_int_equal(C.rlen, 16);
	assert_int_equal(C.wlen, 33);
	/* Not negotiated. */
	avail_push(&D, 0);
	assert_int_equal(pop(false), LT_VQ_BAD_CHAIN);
	/* Loop inside the table. */
	ind[2].flags |= VIRTQ_DESC_F_NEXT;
	ind[2].next = 0;
	memcpy(gp(&T, tbl), ind, sizeof(ind));
	avail_push(&D, 0);
	expect_bad("loop in indirect table");
	/* next beyond the table. */
	ind[2].next = 3;
	memcpy(gp(&T, tbl), ind, sizeof(ind));
	avail_push(&D, 0);
	expect_bad("indirect next index out of range");
	/* Nested indirect. */
	ind[0].flags = VIRTQ_DESC_F_INDIRECT;
	memcpy(gp(&T, tbl), ind, sizeof(ind));
	avail_push(&D, 0);
	expect_bad("nested indirect");
	/* Table size not a multiple of 16, empty, or outside RAM. */
	desc_set(&D, 1, tbl, 20, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(&D, 1);
	expect_bad("bad indirect table size");
	desc_set(&D, 2, tbl, 0, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(&D, 2);
	expect_bad("bad indirect table size");
	desc_set(&D, 3, 0x1000, 64, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(&D, 3);
	expect_bad("indirect table outside");
	/* Indirect with NEXT, and indirect in the middle of a chain. */
	desc_set(&D, 4, tbl, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 5);
	avail_push(&D, 4);
	expect_bad("indirect descriptor with NEXT");
	desc_set(&D, 6, b, 4, VIRTQ_DESC_F_NEXT, 7);
	desc_set(&D, 7, tbl, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(&D, 6);
	expect_bad("inside a chain");
}

static void test_broken_rings(void **state)
{
	(void)state;
	/* The driver claims 100 new buffers in a 16-entry ring. */
	uint16_t idx = 100;
	memcpy(gp(&T, D.avail + 2), &idx, 2);
	assert_int_equal(pop(false), LT_VQ_BROKEN);
	assert_true(Q.broken);
	assert_int_equal(pop(false), LT_VQ_EMPTY); /* stays off */
	/* Rings outside RAM. */
	Q = (struct lt_virtq){.size = 16, .ready = true, .desc = D.desc, .avail = 0x20,
			      .used = D.used};
	assert_int_equal(pop(false), LT_VQ_BROKEN);
	Q = (struct lt_virtq){.size = 16, .ready = true, .desc = 0x40, .avail = D.avail,
			      .used = D.used};
	idx = 1;
	memcpy(gp(&T, D.avail + 2), &idx, 2);
	assert_int_equal(pop(false), LT_VQ_BROKEN);
	Q = (struct lt_virtq){.size = 16, .ready = true, .desc = D.desc, .avail = D.avail,
			      .used = TM_BASE + TM_SIZE - 4};
	assert_int_equal(lt_virtq_push(&Q, &T.m, 0, 0), -1);
}

static void test_notify_suppression(void **state)
{
	(void)state;
	assert_true(lt_virtq_should_notify(&Q, &T.m));
	uint16_t flags = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT */
	memcpy(gp(&T, D.avail), &flags, 2);
	assert_false(lt_virtq_should_notify(&Q, &T.m));
}

/* Random descriptor tables and rings: every result is a valid code and
 * every segment lies inside the test RAM. */
static void test_random_garbage(void **state)
{
	(void)state;
	srand(1234);
	for (int round = 0; round < 3000; round++) {
		uint8_t *dt = gp(&T, D.desc);
		for (int i = 0; i < 16 * 16; i++)
			dt[i] = (uint8_t)rand();
		for (int i = 0; i < 16; i++) {
			struct virtq_desc d;
			memcpy(&d, dt + 16 * i, 16);
			if (rand() % 2)
				d.addr = TM_BASE + (uint64_t)(rand() % (int)TM_SIZE);
			if (rand() % 2)
				d.len = (uint32_t)(rand() % 5000);
			if (rand() % 2)
				d.next = (uint16_t)(rand() % 20);
			memcpy(dt + 16 * i, &d, 16);
		}
		Q.broken = false;
		avail_push(&D, (uint16_t)(rand() % 20));
		int rc = pop(rand() % 2);
		assert_true(rc == LT_VQ_OK || rc == LT_VQ_BAD_CHAIN || rc == LT_VQ_BROKEN);
		for (int s = 0; s < C.nsegs; s++) {
			assert_true(C.segs[s].p >= T.buf);
			assert_true(C.segs[s].p + C.segs[s].len <= T.buf + TM_SIZE);
		}
		Q.last_avail = D.avail_idx;
	}
}

/* ---- transport ------------------------------------------------------- */

static uint64_t feat(struct lt_virtio_dev *d)
{
	(void)d;
	return 1ULL << 5;
}
static int notified;
static void note(struct lt_virtio_dev *d, int q)
{
	(void)d;
	notified += 1 + q;
}
static void cfg_read(struct lt_virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	(void)d;
	for (uint32_t i = 0; i < len; i++)
		data[i] = (uint8_t)(0xa0 + off + i);
}
static const struct lt_virtio_ops dummy_ops = {
	.name = "dummy", .device_id = 42, .nqueues = 2, .features = feat,
	.read_config = cfg_read, .notify = note,
};

static void test_transport(void **state)
{
	(void)state;
	struct lt_virtio_dev d;
	lt_virtio_init(&d, &dummy_ops, NULL, &T.m, 0xd0000000, 5);
	d.raise = count_irq;
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_MAGIC), 0x74726976);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_DEVICE_ID), 42);
	mmio_wr(&d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_DEVICE_FEATURES), 1); /* VERSION_1 */
	uint8_t c[2];
	lt_virtio_mmio_read(&d, VIRTIO_MMIO_CONFIG + 3, c, 2);
	assert_int_equal(c[0], 0xa3);
	/* A legacy driver (no VERSION_1) cannot get FEATURES_OK. */
	mmio_wr(&d, VIRTIO_MMIO_STATUS, 3);
	mmio_wr(&d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_wr(&d, VIRTIO_MMIO_DRIVER_FEATURES, 1U << 5);
	mmio_wr(&d, VIRTIO_MMIO_STATUS, 3 | 8);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_STATUS) & 8, 0);
	/* Nor one asking for features never offered. */
	mmio_wr(&d, VIRTIO_MMIO_STATUS, 0);
	mmio_wr(&d, VIRTIO_MMIO_STATUS, 3);
	mmio_wr(&d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_wr(&d, VIRTIO_MMIO_DRIVER_FEATURES, 1 | 2);
	mmio_wr(&d, VIRTIO_MMIO_STATUS, 3 | 8);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_STATUS) & 8, 0);
	/* Queue sizes: powers of two up to the max only. */
	mmio_wr(&d, VIRTIO_MMIO_STATUS, 0);
	mmio_wr(&d, VIRTIO_MMIO_QUEUE_SEL, 0);
	mmio_wr(&d, VIRTIO_MMIO_QUEUE_NUM, 100);
	assert_int_equal(d.q[0].size, 0);
	mmio_wr(&d, VIRTIO_MMIO_QUEUE_NUM, 1024);
	assert_int_equal(d.q[0].size, 0);
	mmio_wr(&d, VIRTIO_MMIO_QUEUE_READY, 1); /* no size: stays off */
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_QUEUE_READY), 0);
	/* Proper init; then layout registers are locked. */
	struct tq qs[2];
	tq_init(&qs[0], &T, 0, 16);
	tq_init(&qs[1], &T, 1, 16);
	drv_init(&d, qs, 2, 1U << 5);
	assert_int_equal(d.driver_features, (1ULL << 32) | (1ULL << 5));
	mmio_wr(&d, VIRTIO_MMIO_QUEUE_SEL, 0);
	mmio_wr(&d, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1234);
	assert_int_equal(d.q[0].desc, qs[0].desc);
	/* Notifications reach the device for valid queues only. */
	notified = 0;
	kick(&d, 1);
	kick(&d, 7);
	assert_int_equal(notified, 2);
	/* Interrupt status and ack. */
	lt_virtio_interrupt(&d);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
	mmio_wr(&d, VIRTIO_MMIO_INTERRUPT_ACK, 1);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* A broken ring sets NEEDS_RESET and silences the queue. */
	lt_virtio_note_error(&d, 0, LT_VQ_BROKEN, "test");
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET,
			 VIRTIO_STATUS_NEEDS_RESET);
	assert_null(lt_virtio_queue(&d, 0));
	notified = 0;
	kick(&d, 0);
	assert_int_equal(notified, 0);
	/* Reset brings it back. */
	mmio_wr(&d, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_STATUS), 0);
	drv_init(&d, qs, 2, 0);
	assert_non_null(lt_virtio_queue(&d, 0));
	/* Odd widths and offsets are ignored, never crash. */
	uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	lt_virtio_mmio_write(&d, VIRTIO_MMIO_STATUS + 1, junk, 2);
	lt_virtio_mmio_write(&d, 0xfff, junk, 8);
	lt_virtio_mmio_read(&d, 0x2, junk, 1);
	assert_int_equal(mmio_rd(&d, VIRTIO_MMIO_STATUS), 15);
	/* State round trip. */
	struct lt_buf b = {0};
	assert_int_equal(lt_virtio_save(&d, &b), 0);
	struct lt_virtio_dev e;
	lt_virtio_init(&e, &dummy_ops, NULL, &T.m, 0xd0000000, 5);
	assert_int_equal(lt_virtio_load(&e, b.data, b.len), 0);
	assert_int_equal(e.status, 15);
	assert_int_equal(e.q[1].used, qs[1].used);
	assert_true(e.q[1].ready);
	assert_int_equal(lt_virtio_load(&e, b.data, 10), -1); /* truncated */
	lt_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_and_simple_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loops_and_bad_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direction_and_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_rings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_suppression, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transport, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
