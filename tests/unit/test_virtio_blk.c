/* virtio-blk and the block backends (raw, copy-on-write overlay), driven
 * through guest memory laid out by the test as a driver would. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_virtio_common.h"

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define DISK_BYTES (1U << 20)

static char dir[64];
static char base_path[128], ovl_path[128];
static struct tmem T;
static struct tq Q;
static struct lt_virtio_dev *dev;

static void write_disk(const char *path)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	for (uint32_t i = 0; i < DISK_BYTES; i++)
		fputc((int)(i / 512 + 'A') & 0x7f, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/lttle-vblk.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(base_path, sizeof(base_path), "%s/base.img", dir);
	snprintf(ovl_path, sizeof(ovl_path), "%s/ovl", dir);
	write_disk(base_path);
	tmem_init(&T);
	tq_init(&Q, &T, 0, 16);
	test_irqs = 0;
	dev = NULL;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	lt_virtio_free(dev);
	tmem_free(&T);
	lt_rm_rf(dir);
	return 0;
}

static void make_dev(bool ro, const char *overlay)
{
	struct lt_blk_backend *be;
	assert_int_equal(lt_blk_open(base_path, ro, overlay, &be), 0);
	assert_int_equal(lt_virtio_blk_new(&T.m, 0xd0000000, 5, be, "disk-id-1", &dev), 0);
	dev->raise = count_irq;
	drv_init(dev, &Q, 1, (1U << 9) | (1U << 5) | (1U << 2) | (1U << 28));
}

struct req {
	uint64_t hdr, data, status;
	uint32_t id, len;
};

/* header (readable) + data (dir per type) + status (writable). */
static struct req submit(uint32_t type, uint64_t sector, uint32_t data_len)
{
	struct req r = {.hdr = galloc(&T, 16), .status = galloc(&T, 1)};
	r.data = data_len ? galloc(&T, data_len) : 0;
	uint32_t h[4] = {type, 0, (uint32_t)sector, (uint32_t)(sector >> 32)};
	memcpy(gp(&T, r.hdr), h, 16);
	*(uint8_t *)gp(&T, r.status) = 0xee;
	uint64_t a[3] = {r.hdr, r.data, r.status};
	uint32_t l[3] = {16, data_len, 1};
	uint16_t f[3] = {0, (uint16_t)(type == T_OUT ? 0 : VIRTQ_DESC_F_WRITE), VIRTQ_DESC_F_WRITE};
	if (!data_len) {
		a[1] = r.status;
		l[1] = 1;
		f[1] = VIRTQ_DESC_F_WRITE;
	}
	chain_add(&Q, data_len ? 3 : 2, a, l, f);
	return r;
}

static uint8_t complete(struct req *r)
{
	kick(dev, 0);
	assert_true(used_next(&Q, &r->id, &r->len));
	return *(uint8_t *)gp(&T, r->status);
}

static void test_read_write_flush_id(void **state)
{
	(void)state;
	make_dev(false, NULL);
	uint8_t cfg[8];
	lt_virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG, cfg, 8);
	uint64_t cap;
	memcpy(&cap, cfg, 8);
	assert_int_equal(cap, DISK_BYTES / 512);

	struct req r = submit(T_IN, 3, 1024);
	assert_int_equal(complete(&r), 0);
	assert_int_equal(r.len, 1025);
	assert_int_equal(((uint8_t *)gp(&T, r.data))[0], 'D');
	assert_int_equal(((uint8_t *)gp(&T, r.data))[600], 'E');
	assert_true(test_irqs > 0);

	struct req w = submit(T_OUT, 1, 512);
	memset(gp(&T, w.data), 'z', 512);
	assert_int_equal(complete(&w), 0);
	assert_int_equal(w.len, 1);
	struct req f = submit(T_FLUSH, 0, 0);
	assert_int_equal(complete(&f), 0);
	int fd = open(base_path, O_RDONLY);
	char b[4];
	assert_int_equal(pread(fd, b, 4, 512), 4);
	close(fd);
	assert_memory_equal(b, "zzzz", 4);

	struct req id = submit(T_GET_ID, 0, 20);
	assert_int_equal(complete(&id), 0);
	assert_string_equal((char *)gp(&T, id.data), "disk-id-1");
}

static void test_bad_requests_fail_device_lives(void **state)
{
	(void)state;
	make_dev(false, NULL);
	struct req r = submit(T_IN, DISK_BYTES / 512, 512); /* one past the end */
	assert_int_equal(complete(&r), 1);
	r = submit(T_IN, UINT64_MAX / 256, 512); /* sector * 512 overflows */
	assert_int_equal(complete(&r), 1);
	r = submit(T_IN, 0, 100); /* not whole sectors */
	assert_int_equal(complete(&r), 1);
	r = submit(77, 0, 512);
	assert_int_equal(complete(&r), 2); /* UNSUPP */
	/* Header shorter than 16 bytes. */
	uint64_t st = galloc(&T, 1), h = galloc(&T, 8);
	uint64_t a[2] = {h, st};
	uint32_t l[2] = {8, 1};
	uint16_t f[2] = {0, VIRTQ_DESC_F_WRITE};
	chain_add(&Q, 2, a, l, f);
	struct req x = {.status = st};
	assert_int_equal(complete(&x), 1);
	/* No writable byte at all: completed with length 0. */
	uint64_t a1[1] = {galloc(&T, 16)};
	uint32_t l1[1] = {16};
	uint16_t f1[1] = {0};
	chain_add(&Q, 1, a1, l1, f1);
	kick(dev, 0);
	uint32_t id, len;
	assert_true(used_next(&Q, &id, &len));
	assert_int_equal(len, 0);
	/* A descriptor outside RAM after the status: IOERR written there. */
	st = galloc(&T, 1);
	uint64_t a2[3] = {galloc(&T, 16), st, 0x10};
	uint32_t l2[3] = {16, 1, 512};
	uint16_t f2[3] = {0, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_WRITE};
	chain_add(&Q, 3, a2, l2, f2);
	x.status = st;
	assert_int_equal(complete(&x), 1);
	/* A loop. */
	desc_set(&Q, 14, galloc(&T, 16), 16, VIRTQ_DESC_F_NEXT, 15);
	desc_set(&Q, 15, galloc(&T, 16), 16, VIRTQ_DESC_F_NEXT, 14);
	avail_push(&Q, 14);
	kick(dev, 0);
	assert_true(used_next(&Q, &id, &len));
	assert_int_equal(id, 14);
	assert_true(dev->errors >= 2);
	/* Still alive: a good read works. */
	Q.next = 0;
	r = submit(T_IN, 0, 512);
	assert_int_equal(complete(&r), 0);
	assert_int_equal(((uint8_t *)gp(&T, r.data))[0], 'A');
}

static void test_read_only(void **state)
{
	(void)state;
	make_dev(true, NULL);
	uint32_t feat;
	mmio_wr(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	feat = mmio_rd(dev, VIRTIO_MMIO_DEVICE_FEATURES);
	assert_true(feat & (1U << 5)); /* VIRTIO_BLK_F_RO */
	struct req w = submit(T_OUT, 0, 512);
	assert_int_equal(complete(&w), 1);
	struct req r = submit(T_IN, 0, 512);
	assert_int_equal(complete(&r), 0);
	assert_int_equal(((uint8_t *)gp(&T, r.data))[0], 'A');
}

static void test_overlay_cow(void **state)
{
	(void)state;
	struct stat st0;
	assert_int_equal(stat(base_path, &st0), 0);
	make_dev(false, ovl_path);
	/* A 512-byte write into cluster 1 (sectors 8..15): copy-up keeps the
	 * rest of the cluster. */
	struct req w = submit(T_OUT, 9, 512);
	memset(gp(&T, w.data), 'w', 512);
	assert_int_equal(complete(&w), 0);
	struct req r = submit(T_IN, 7, 4 * 512); /* spans base and overlay */
	assert_int_equal(complete(&r), 0);
	uint8_t *d = gp(&T, r.data);
	assert_int_equal(d[0], 'A' + 7);
	assert_int_equal(d[512], 'A' + 8);
	assert_int_equal(d[1024], 'w');
	assert_int_equal(d[1536], 'A' + 10);
	struct req f = submit(T_FLUSH, 0, 0);
	assert_int_equal(complete(&f), 0);
	lt_virtio_free(dev);
	dev = NULL;
	/* Base untouched. */
	struct stat st1;
	assert_int_equal(stat(base_path, &st1), 0);
	assert_int_equal(st1.st_mtim.tv_nsec, st0.st_mtim.tv_nsec);
	int fd = open(base_path, O_RDONLY);
	char b;
	assert_int_equal(pread(fd, &b, 1, 9 * 512), 1);
	close(fd);
	assert_int_equal(b, 'A' + 9);
	/* Reopened, the overlay still has the write. */
	struct lt_blk_backend *be;
	assert_int_equal(lt_blk_open(base_path, false, ovl_path, &be), 0);
	uint8_t buf[1024];
	assert_int_equal(lt_blk_pread(be, buf, sizeof(buf), 8 * 512), 0);
	assert_int_equal(buf[0], 'A' + 8);
	assert_int_equal(buf[512], 'w');
	/* Whole-cluster writes and reads past the end. */
	memset(buf, 'q', sizeof(buf));
	assert_int_equal(lt_blk_pwrite(be, buf, sizeof(buf), DISK_BYTES - 1024), 0);
	assert_int_equal(lt_blk_pread(be, buf, 1, DISK_BYTES), -1);
	assert_int_equal(lt_blk_pwrite(be, buf, 2, DISK_BYTES - 1), -1);
	lt_blk_close(be);
	/* The overlay stays sparse. */
	struct stat so;
	assert_int_equal(stat(ovl_path, &so), 0);
	assert_true(so.st_blocks * 512 < 64 * 1024);
}

static void test_overlay_rejects(void **state)
{
	(void)state;
	struct lt_blk_backend *be;
	/* Corrupt magic. */
	int fd = open(ovl_path, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, "NOTANOVERLAY", 12), 12);
	close(fd);
	assert_int_equal(lt_blk_open(base_path, false, ovl_path, &be), -1);
	assert_non_null(strstr(lt_errmsg(), "bad magic"));
	unlink(ovl_path);
	/* A different base (size changed). */
	assert_int_equal(lt_blk_open(base_path, false, ovl_path, &be), 0);
	lt_blk_close(be);
	assert_int_equal(truncate(base_path, DISK_BYTES / 2), 0);
	assert_int_equal(lt_blk_open(base_path, false, ovl_path, &be), -1);
	assert_non_null(strstr(lt_errmsg(), "size changed"));
	/* Missing base. */
	assert_int_equal(lt_blk_open("/nonexistent/x.img", false, NULL, &be), -1);
	assert_non_null(strstr(lt_errmsg(), "/nonexistent/x.img"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_write_flush_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests_fail_device_lives, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlay_cow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlay_rejects, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
