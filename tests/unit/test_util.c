#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

static char tmpdir[64];

static int setup_tmp(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/lttle-util.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
	(void)state;
	return lt_rm_rf(tmpdir);
}

static void test_error_context_chain(void **state)
{
	(void)state;
	assert_int_equal(lt_fail("digest mismatch in %s", "layer 2"), -1);
	assert_int_equal(lt_fail_ctx("pulling %s", "app:v1"), -1);
	assert_string_equal(lt_errmsg(), "pulling app:v1: digest mismatch in layer 2");
	errno = ENOENT;
	lt_fail_errno("cannot open %s", "/nope");
	assert_string_equal(lt_errmsg(), "cannot open /nope: No such file or directory");
	lt_clear_error();
	assert_string_equal(lt_errmsg(), "unknown error");
}

static void test_sha256_known_vectors(void **state)
{
	(void)state;
	char hex[LT_SHA256_HEX];
	assert_int_equal(lt_sha256_hex("", 0, hex), 0);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_int_equal(lt_sha256_hex("abc", 3, hex), 0);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	/* Streaming over a file gives the same digest as one shot. */
	char *path = lt_path_join(tmpdir, "abc");
	assert_int_equal(lt_write_file_atomic(path, "abc", 3, 0644), 0);
	char fhex[LT_SHA256_HEX];
	assert_int_equal(lt_sha256_file_hex(path, fhex), 0);
	assert_string_equal(fhex, hex);
	free(path);
}

static void test_parse_size(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(lt_parse_size("512", &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(lt_parse_size("64K", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(lt_parse_size("100M", &v), 0);
	assert_int_equal(v, 100ull << 20);
	assert_int_equal(lt_parse_size("2GiB", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(lt_parse_size("1X", &v), -1);
	assert_int_equal(lt_parse_size("", &v), -1);
	assert_int_equal(lt_parse_size("-1", &v), -1);
	assert_int_equal(lt_parse_size("99999999999999T", &v), -1);
	assert_int_equal(lt_parse_u64("12a", &v), -1);
}

static void test_atomic_abort_leaves_nothing(void **state)
{
	(void)state;
	char *dir = lt_path_join(tmpdir, "atomic");
	assert_int_equal(lt_mkdir_p(dir, 0755), 0);
	char *path = lt_path_join(dir, "blob");
	struct lt_atomic a;
	assert_int_equal(lt_atomic_open(&a, path, 0600), 0);
	assert_int_equal(lt_write_all(a.fd, "partial", 7), 0);
	assert_false(lt_path_exists(path));
	lt_atomic_abort(&a);
	assert_false(lt_path_exists(path));

	/* The directory holds no temp files either. */
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", dir);
	assert_int_equal(system(cmd), 0);

	assert_int_equal(lt_atomic_open(&a, path, 0640), 0);
	assert_int_equal(lt_write_all(a.fd, "complete", 8), 0);
	assert_int_equal(lt_atomic_commit(&a), 0);
	char *data;
	size_t len;
	assert_int_equal(lt_read_file(path, 100, &data, &len), 0);
	assert_int_equal(len, 8);
	assert_string_equal(data, "complete");
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	free(data);

	/* A file over the limit is refused. */
	assert_int_equal(lt_read_file(path, 4, &data, &len), -1);
	assert_non_null(strstr(lt_errmsg(), "limit"));
	free(path);
	free(dir);
}

static void test_mkdir_p_and_rm_rf(void **state)
{
	(void)state;
	char *deep = lt_path_join(tmpdir, "a/b/c");
	assert_int_equal(lt_mkdir_p(deep, 0755), 0);
	assert_int_equal(lt_mkdir_p(deep, 0755), 0); /* idempotent */
	char *file = lt_path_join(deep, "f");
	assert_int_equal(lt_write_file_atomic(file, "x", 1, 0644), 0);
	/* A symlink inside must be removed, not followed. */
	char *outside = lt_path_join(tmpdir, "keep");
	assert_int_equal(lt_write_file_atomic(outside, "y", 1, 0644), 0);
	char *link = lt_path_join(deep, "link");
	assert_int_equal(symlink(outside, link), 0);
	char *top = lt_path_join(tmpdir, "a");
	assert_int_equal(lt_rm_rf(top), 0);
	assert_false(lt_path_exists(top));
	assert_true(lt_path_exists(outside));
	assert_int_equal(lt_rm_rf(top), 0); /* missing is fine */
	/* mkdir_p over a file fails with a message naming it. */
	assert_int_equal(lt_mkdir_p(outside, 0755), -1);
	assert_non_null(strstr(lt_errmsg(), "keep"));
	free(deep);
	free(file);
	free(outside);
	free(link);
	free(top);
}

static void test_buf_limit_and_printf(void **state)
{
	(void)state;
	struct lt_buf b = {.limit = 10};
	assert_int_equal(lt_buf_printf(&b, "%d-%s", 42, "ab"), 0);
	assert_string_equal((char *)b.data, "42-ab");
	assert_int_equal(lt_buf_append(&b, "12345", 5), 0);
	assert_int_equal(b.len, 10);
	assert_int_equal(lt_buf_append(&b, "x", 1), -1);
	assert_int_equal(b.len, 10);
	lt_buf_free(&b);
}

static void test_path_join_and_home(void **state)
{
	(void)state;
	char *p = lt_path_join("/a/", "/b");
	assert_string_equal(p, "/a/b");
	free(p);
	/* lt_home caches, so only check the env-driven first call here. */
	setenv("LTTLE_HOME", "/srv/lttle", 1);
	assert_string_equal(lt_home(), "/srv/lttle");
}

static void test_human_size(void **state)
{
	(void)state;
	char buf[32];
	assert_string_equal(lt_human_size(999, buf, sizeof(buf)), "999 B");
	assert_string_equal(lt_human_size(1500000, buf, sizeof(buf)), "1.5 MB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_context_chain),
		cmocka_unit_test(test_sha256_known_vectors),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_atomic_abort_leaves_nothing),
		cmocka_unit_test(test_mkdir_p_and_rm_rf),
		cmocka_unit_test(test_buf_limit_and_printf),
		cmocka_unit_test(test_path_join_and_home),
		cmocka_unit_test(test_human_size),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
