/* virtio-net over a datagram socketpair standing in for the TAP device,
 * driven through guest memory held by the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_virtio_common.h"

static struct tmem T;
static struct tq RQ, TQ;
static struct lt_virtio_dev *dev;
static struct lt_ioloop *loop;
static int peer;
static const uint8_t MAC[6] = {0x06, 0x1e, 1, 2, 3, 4};

static int setup(void **state)
{
	(void)state;
	tmem_init(&T);
	tq_init(&RQ, &T, 0, 16);
	tq_init(&TQ, &T, 1, 16);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
	peer = sv[1];
	assert_int_equal(lt_virtio_net_new(&T.m, 0xd0000000, 6, sv[0], MAC, &dev), 0);
	dev->raise = count_irq;
	loop = lt_ioloop_new();
	assert_int_equal(dev->ops->attach_loop(dev, loop), 0);
	struct tq qs[2] = {RQ, TQ};
	drv_init(dev, qs, 2, 1U << 5);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	lt_virtio_free(dev);
	lt_ioloop_free(loop);
	close(peer);
	tmem_free(&T);
	return 0;
}

static void post_rx(uint32_t size)
{
	uint64_t a[1] = {galloc(&T, size)};
	uint32_t l[1] = {size};
	uint16_t f[1] = {VIRTQ_DESC_F_WRITE};
	chain_add(&RQ, 1, a, l, f);
	kick(dev, 0);
}

static void send_frame(const char *payload)
{
	uint8_t hdr[12] = {0};
	uint64_t h = galloc(&T, 12), d = galloc(&T, 64);
	memcpy(gp(&T, h), hdr, 12);
	memset(gp(&T, d), 0, 64);
	memcpy(gp(&T, d), payload, strlen(payload));
	uint64_t a[2] = {h, d};
	uint32_t l[2] = {12, 64};
	uint16_t f[2] = {0, 0};
	chain_add(&TQ, 2, a, l, f); /* header and frame in separate buffers */
	kick(dev, 1);
}

static bool rx_frame(uint8_t *out, uint32_t *len)
{
	uint32_t id;
	for (int i = 0; i < 100; i++) {
		if (used_next(&RQ, &id, len)) {
			uint64_t addr;
			memcpy(&addr, gp(&T, RQ.desc + 16ULL * id), 8);
			if (*len)
				memcpy(out, gp(&T, addr), *len);
			return true;
		}
		lt_ioloop_poll(loop, 5);
	}
	return false;
}

static void test_mac_tx_rx(void **state)
{
	(void)state;
	uint8_t mac[6];
	lt_virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG, mac, 6);
	assert_memory_equal(mac, MAC, 6);
	send_frame("frame-one");
	uint32_t id, len;
	assert_true(used_next(&TQ, &id, &len));
	char buf[128] = {0};
	assert_int_equal(recv(peer, buf, sizeof(buf), MSG_DONTWAIT), 64); /* header stripped */
	assert_string_equal(buf, "frame-one");
	post_rx(2048);
	assert_int_equal(send(peer, "incoming-frame", 14, 0), 14);
	uint8_t f[2048];
	assert_true(rx_frame(f, &len));
	assert_int_equal(len, 12 + 14);
	assert_int_equal(f[10], 1); /* num_buffers */
	assert_memory_equal(f + 12, "incoming-frame", 14);
}

static void test_rx_waits_for_buffers(void **state)
{
	(void)state;
	assert_int_equal(send(peer, "early", 5, 0), 5);
	for (int i = 0; i < 5; i++)
		lt_ioloop_poll(loop, 5);
	uint32_t id, len;
	assert_false(used_next(&RQ, &id, &len));
	/* A buffer too small is given back empty; the frame waits for the
	 * next good one. */
	post_rx(8);
	post_rx(2048);
	uint8_t f[2048];
	assert_true(rx_frame(f, &len));
	assert_int_equal(len, 0);
	assert_true(rx_frame(f, &len));
	assert_int_equal(len, 12 + 5);
	assert_memory_equal(f + 12, "early", 5);
}

static void test_bad_tx(void **state)
{
	(void)state;
	/* Writable buffer in a tx chain, too short for the header, out of RAM. */
	uint64_t a[1] = {galloc(&T, 64)};
	uint32_t l[1] = {64};
	uint16_t f[1] = {VIRTQ_DESC_F_WRITE};
	chain_add(&TQ, 1, a, l, f);
	f[0] = 0;
	l[0] = 4;
	chain_add(&TQ, 1, a, l, f);
	a[0] = 0x100;
	l[0] = 100;
	chain_add(&TQ, 1, a, l, f);
	kick(dev, 1);
	uint32_t id, len;
	for (int i = 0; i < 3; i++)
		assert_true(used_next(&TQ, &id, &len));
	char buf[64];
	assert_int_equal(recv(peer, buf, sizeof(buf), MSG_DONTWAIT), -1); /* nothing sent */
	assert_int_equal(dev->errors, 3);
	send_frame("still-works");
	assert_true(used_next(&TQ, &id, &len));
	assert_int_equal(recv(peer, buf, sizeof(buf), MSG_DONTWAIT), 64);
	assert_string_equal(buf, "still-works");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mac_tx_rx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_waits_for_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_tx, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
