/* virtio-vsock: the Firecracker-style host side over unix sockets, flow
 * control and hostile packets, driven through guest memory held by the
 * test and the device's own I/O loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "test_virtio_common.h"

#define CID 3
enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE,
       OP_CREDIT_REQUEST };

struct hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

static char dir[64], uds[128];
static struct tmem T;
static struct tq RQ, TQ, EQ;
static struct lt_virtio_dev *dev;
static struct lt_ioloop *loop;
static uint64_t rxbufs[16];

static void post_rx(int n, uint32_t size)
{
	for (int i = 0; i < n; i++) {
		uint64_t a[1] = {galloc(&T, size)};
		uint32_t l[1] = {size};
		uint16_t f[1] = {VIRTQ_DESC_F_WRITE};
		chain_add(&RQ, 1, a, l, f);
	}
	kick(dev, 0);
}

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/lttle-vsock.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	tmem_init(&T);
	tq_init(&RQ, &T, 0, 16);
	tq_init(&TQ, &T, 1, 16);
	tq_init(&EQ, &T, 2, 16);
	assert_int_equal(lt_virtio_vsock_new(&T.m, 0xd0000000, 5, CID, uds, &dev), 0);
	dev->raise = count_irq;
	loop = lt_ioloop_new();
	assert_non_null(loop);
	assert_int_equal(dev->ops->attach_loop(dev, loop), 0);
	struct tq qs[3] = {RQ, TQ, EQ};
	drv_init(dev, qs, 3, 0);
	memset(rxbufs, 0, sizeof(rxbufs));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	lt_virtio_free(dev);
	lt_ioloop_free(loop);
	tmem_free(&T);
	lt_rm_rf(dir);
	return 0;
}

static void spin(int rounds)
{
	for (int i = 0; i < rounds; i++)
		lt_ioloop_poll(loop, 5);
}

/* Waits for the next rx packet; copies header and payload. */
static bool rx_packet(struct hdr *h, uint8_t *payload, size_t max)
{
	uint32_t id, len;
	for (int i = 0; i < 200; i++) {
		if (used_next(&RQ, &id, &len)) {
			if (len == 0)
				continue; /* a buffer the device dropped */
			uint64_t addr;
			memcpy(&addr, gp(&T, RQ.desc + 16ULL * id), 8);
			assert_true(len >= sizeof(*h));
			memcpy(h, gp(&T, addr), sizeof(*h));
			assert_int_equal(len, sizeof(*h) + h->len);
			if (payload)
				memcpy(payload, gp(&T, addr + sizeof(*h)), h->len < max ? h->len : max);
			return true;
		}
		lt_ioloop_poll(loop, 5);
	}
	return false;
}

static void tx(uint32_t sport, uint32_t dport, uint16_t op, uint32_t flags, const void *data,
	       uint32_t len, uint32_t buf_alloc, uint32_t fwd_cnt)
{
	struct hdr h = {CID, 2, sport, dport, len, 1, op, flags, buf_alloc, fwd_cnt};
	uint64_t a = galloc(&T, sizeof(h) + len);
	memcpy(gp(&T, a), &h, sizeof(h));
	if (len)
		memcpy(gp(&T, a + sizeof(h)), data, len);
	uint64_t aa[1] = {a};
	uint32_t l[1] = {(uint32_t)sizeof(h) + len};
	uint16_t f[1] = {0};
	chain_add(&TQ, 1, aa, l, f);
	kick(dev, 1);
	uint32_t id, ulen;
	assert_true(used_next(&TQ, &id, &ulen));
}

static int host_connect(void)
{
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, uds);
	assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	return s;
}

static ssize_t read_wait(int fd, char *buf, size_t n)
{
	for (int i = 0; i < 200; i++) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 0) == 1)
			return read(fd, buf, n);
		lt_ioloop_poll(loop, 5);
	}
	return -2;
}

/* CONNECT from the host; returns the socket and the host port. */
static int establish(uint32_t gport, uint32_t buf_alloc, uint32_t *hport)
{
	post_rx(4, 4096);
	int s = host_connect();
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", gport);
	assert_int_equal(write(s, line, (size_t)n), n);
	struct hdr h;
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_REQUEST);
	assert_int_equal(h.src_cid, 2);
	assert_int_equal(h.dst_cid, CID);
	assert_int_equal(h.dst_port, gport);
	assert_int_equal(h.type, 1);
	*hport = h.src_port;
	tx(gport, h.src_port, OP_RESPONSE, 0, NULL, 0, buf_alloc, 0);
	char ok[32] = {0};
	assert_true(read_wait(s, ok, sizeof(ok) - 1) > 0);
	char want[32];
	snprintf(want, sizeof(want), "OK %u\n", h.src_port);
	assert_string_equal(ok, want);
	return s;
}

static void test_config_and_host_connect_echo(void **state)
{
	(void)state;
	uint8_t c[8];
	lt_virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG, c, 8);
	uint64_t cid;
	memcpy(&cid, c, 8);
	assert_int_equal(cid, CID);
	uint32_t hport;
	int s = establish(1234, 65536, &hport);
	assert_true(hport >= (1U << 30));
	/* host -> guest */
	assert_int_equal(write(s, "ping", 4), 4);
	struct hdr h;
	uint8_t pl[64];
	spin(3);
	assert_true(rx_packet(&h, pl, sizeof(pl)));
	assert_int_equal(h.op, OP_RW);
	assert_int_equal(h.len, 4);
	assert_memory_equal(pl, "ping", 4);
	/* guest -> host */
	tx(1234, hport, OP_RW, 0, "pong!", 5, 65536, 4);
	char b[16] = {0};
	assert_int_equal(read_wait(s, b, sizeof(b)), 5);
	assert_string_equal(b, "pong!");
	/* The guest closes: the device answers RST and the host sees EOF. */
	tx(1234, hport, OP_SHUTDOWN, 3, NULL, 0, 65536, 4);
	spin(2);
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_RST);
	assert_int_equal(read_wait(s, b, sizeof(b)), 0);
	close(s);
}

static void test_host_close_sends_shutdown(void **state)
{
	(void)state;
	uint32_t hport;
	int s = establish(80, 65536, &hport);
	close(s);
	spin(3);
	struct hdr h;
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_SHUTDOWN);
	assert_int_equal(h.flags, 3);
	tx(80, hport, OP_RST, 0, NULL, 0, 0, 0);
	/* Data for the dead connection is answered with RST. */
	tx(80, hport, OP_RW, 0, "late", 4, 65536, 0);
	post_rx(1, 4096);
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_RST);
}

static void test_credit(void **state)
{
	(void)state;
	uint32_t hport;
	int s = establish(7, 16, &hport); /* the guest has room for 16 bytes */
	char big[100];
	memset(big, 'x', sizeof(big));
	assert_int_equal(write(s, big, sizeof(big)), (ssize_t)sizeof(big));
	spin(5);
	struct hdr h;
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_RW);
	assert_int_equal(h.len, 16);
	spin(5);
	uint32_t id, len;
	assert_false(used_next(&RQ, &id, &len)); /* no credit, nothing more */
	/* The guest consumed 16 and grants more. */
	tx(7, hport, OP_CREDIT_UPDATE, 0, NULL, 0, 1000, 16);
	spin(5);
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.len, 84);
	/* A credit request gets a credit update. */
	tx(7, hport, OP_CREDIT_REQUEST, 0, NULL, 0, 1000, 100);
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_CREDIT_UPDATE);
	assert_int_equal(h.buf_alloc, 256 * 1024);
	close(s);
}

static void test_guest_connect(void **state)
{
	(void)state;
	post_rx(4, 4096);
	/* Nobody listens on <uds>_5000: RST. */
	tx(999, 5000, OP_REQUEST, 0, NULL, 0, 65536, 0);
	struct hdr h;
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_RST);
	assert_int_equal(h.dst_port, 999);
	/* A listener there: RESPONSE, then data reaches it. */
	char p[160];
	snprintf(p, sizeof(p), "%s_5000", uds);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, p);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	tx(1000, 5000, OP_REQUEST, 0, NULL, 0, 65536, 0);
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_RESPONSE);
	assert_int_equal(h.src_port, 5000);
	int c = accept(l, NULL, NULL);
	assert_true(c >= 0);
	tx(1000, 5000, OP_RW, 0, "from guest", 10, 65536, 0);
	char b[16] = {0};
	assert_int_equal(read_wait(c, b, sizeof(b)), 10);
	assert_string_equal(b, "from guest");
	/* A second REQUEST for the same pair resets it. */
	tx(1000, 5000, OP_REQUEST, 0, NULL, 0, 65536, 0);
	assert_true(rx_packet(&h, NULL, 0));
	assert_int_equal(h.op, OP_RST);
	close(c);
	close(l);
}

static void test_hostile_packets(void **state)
{
	(void)state;
	post_rx(2, 4096);
	/* Shorter than a header. */
	uint64_t a[1] = {galloc(&T, 10)};
	uint32_t l[1] = {10};
	uint16_t f[1] = {0};
	chain_add(&TQ, 1, a, l, f);
	kick(dev, 1);
	uint32_t id, len;
	assert_true(used_next(&TQ, &id, &len));
	/* A len field larger than the payload present. */
	struct hdr h = {CID, 2, 1, 2, 5000, 1, OP_RW, 0, 0, 0};
	uint64_t b = galloc(&T, sizeof(h));
	memcpy(gp(&T, b), &h, sizeof(h));
	a[0] = b;
	l[0] = sizeof(h);
	chain_add(&TQ, 1, a, l, f);
	kick(dev, 1);
	assert_true(used_next(&TQ, &id, &len));
	/* Wrong source CID (spoofing) and non-stream types. */
	tx(1, 2, OP_REQUEST, 0, NULL, 0, 0, 0);
	struct hdr s = {CID + 1, 2, 1, 2, 0, 1, OP_REQUEST, 0, 0, 0};
	b = galloc(&T, sizeof(s));
	memcpy(gp(&T, b), &s, sizeof(s));
	a[0] = b;
	chain_add(&TQ, 1, a, l, f);
	kick(dev, 1);
	assert_true(used_next(&TQ, &id, &len));
	/* Unknown op. */
	tx(1, 2, 99, 0, NULL, 0, 0, 0);
	/* A descriptor outside RAM. */
	desc_set(&TQ, TQ.next, 0x10, 64, 0, 0);
	avail_push(&TQ, TQ.next);
	TQ.next++;
	kick(dev, 1);
	assert_true(used_next(&TQ, &id, &len));
	assert_true(dev->errors >= 2);
	/* rx buffers too small for a header are dropped, not written past. */
	post_rx(1, 8);
	int c = host_connect();
	assert_int_equal(write(c, "BAD LINE\n", 9), 9);
	char buf[8];
	ssize_t n = read_wait(c, buf, sizeof(buf));
	assert_true(n == 0 || (n > 0 && !memcmp(buf, "ERR", 3)));
	close(c);
	/* The refused REQUEST and the RW for no connection were answered
	 * with RSTs (the 8-byte buffer waits: nothing else to send). */
	post_rx(4, 4096);
	spin(3);
	int rsts = 0, dropped = 0;
	while (used_next(&RQ, &id, &len)) {
		if (len == 0) {
			dropped++;
			continue;
		}
		uint64_t addr;
		memcpy(&addr, gp(&T, RQ.desc + 16ULL * id), 8);
		struct hdr r;
		memcpy(&r, gp(&T, addr), sizeof(r));
		assert_int_equal(r.op, OP_RST);
		rsts++;
	}
	assert_int_equal(rsts, 2);
	assert_int_equal(dropped, 0);
	/* Still alive: a full connection works; its REQUEST skips (drops) the
	 * 8-byte buffer. */
	uint64_t errs = dev->errors;
	uint32_t hp;
	int s2 = establish(55, 65536, &hp);
	assert_int_equal(dev->errors, errs + 1);
	close(s2);
}

static void test_reset_event_after_load(void **state)
{
	(void)state;
	uint64_t a[1] = {galloc(&T, 8)};
	uint32_t l[1] = {8};
	uint16_t f[1] = {VIRTQ_DESC_F_WRITE};
	chain_add(&EQ, 1, a, l, f);
	struct lt_buf b = {0};
	assert_int_equal(lt_virtio_save(dev, &b), 0);
	assert_int_equal(lt_virtio_load(dev, b.data, b.len), 0);
	lt_buf_free(&b);
	assert_int_equal(dev->ops->attach_loop(dev, loop), -1); /* listen fd already there */
	lt_clear_error();
	uint32_t id, len;
	assert_true(used_next(&EQ, &id, &len));
	assert_int_equal(len, 4);
	uint32_t ev;
	memcpy(&ev, gp(&T, a[0]), 4);
	assert_int_equal(ev, 0); /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config_and_host_connect_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_close_sends_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guest_connect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_packets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_event_after_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
