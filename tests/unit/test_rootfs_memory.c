/* Peak memory of rootfs_build stays small whatever the image size: a
 * 600 MiB image (a 512 MiB file, 20000 small ones, a layer overwriting
 * half of those) is built in both formats, and this process's peak RSS (the builder
 * and everything else in it) must stay under 64 MiB. Layers are written
 * here with libarchive's writer, streaming, so the test itself stays
 * small too. */
#include "test_rootfs_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/resource.h>

#define BIG_FILE (512ull << 20)
#define SMALL_FILES 20000

static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void add_file(struct archive *a, struct archive_entry *e, const char *path, uint64_t size,
		     uint8_t *chunk, size_t chunk_len)
{
	archive_entry_clear(e);
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_mtime(e, 1700000000, 0);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	uint64_t counter = 0;
	while (size) {
		size_t n = size < chunk_len ? (size_t)size : chunk_len;
		/* every chunk differs, so nothing is deduplicated away */
		memcpy((uint8_t *)chunk + 1, &counter, sizeof(counter));
		counter++;
		assert_int_equal(archive_write_data(a, chunk, n), (la_ssize_t)n);
		size -= n;
	}
}

static void write_layer(const char *path, bool top)
{
	struct archive *a = archive_write_new();
	assert_non_null(a);
	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_gzip(a);
	archive_write_set_filter_option(a, "gzip", "compression-level", "1");
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	struct archive_entry *e = archive_entry_new();
	static uint8_t chunk[1 << 16];
	/* Varied but compressible content: a counter pattern. */
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)((i * 7) ^ (i >> 9));
	char name[64];
	if (!top) {
		add_file(a, e, "big/blob", BIG_FILE, chunk, sizeof(chunk));
		for (int i = 0; i < SMALL_FILES; i++) {
			snprintf(name, sizeof(name), "small/d%03d/f%05d", i % 200, i);
			chunk[0] = (uint8_t)i;
			add_file(a, e, name, 3000 + (uint64_t)(i % 5000), chunk, sizeof(chunk));
		}
	} else {
		for (int i = 0; i < SMALL_FILES; i += 2) {
			snprintf(name, sizeof(name), "small/d%03d/f%05d", i % 200, i);
			add_file(a, e, name, 100, chunk, sizeof(chunk));
		}
	}
	archive_entry_free(e);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

static void test_peak_rss(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_path("l1.tar.gz"), *l2 = rt_path("l2.tar.gz");
	write_layer(l1, false);
	write_layer(l2, true);
	const char *layers[] = {l1, l2};
	long before = peak_rss_kb();
	const enum rootfs_format fmts[] = {ROOTFS_EXT4, ROOTFS_SQUASHFS};
	for (size_t i = 0; i < 2; i++) {
		const char *img = rt_path(i ? "img.sqfs" : "img.ext4");
		struct rootfs_stats st;
		uint64_t t0 = lt_now_ns();
		assert_int_equal(rt_build_ex(fmts[i], img, layers, 2, NULL, 0, 0, &st), 0);
		print_message("%s: %llu entries, %llu MiB of data, %llu MiB image in %.1fs; "
			      "peak RSS %ld KiB (before: %ld)\n", rootfs_format_name(fmts[i]),
			      (unsigned long long)st.entries, (unsigned long long)(st.bytes >> 20),
			      (unsigned long long)(st.image_size >> 20),
			      (double)(lt_now_ns() - t0) / 1e9, peak_rss_kb(), before);
		assert_true(st.bytes > BIG_FILE);
		assert_int_equal(st.entries, SMALL_FILES + 200 + 4 + (fmts[i] == ROOTFS_EXT4));
		rt_check_fs(fmts[i], img);
		unlink(img);
	}
#if defined(__SANITIZE_ADDRESS__)
	/* ASan's shadow memory and quarantine say nothing about ours. */
	print_message("peak RSS not checked under AddressSanitizer\n");
#else
	assert_true(peak_rss_kb() < 64 * 1024);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_peak_rss, rt_setup, rt_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
