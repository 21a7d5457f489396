/* Helpers shared by the rootfs unit tests (header-only, static).
 *
 * Layers are written by tests/lib/mklayer.py from JSON specs; results are
 * read back with the real tools (e2fsck, debugfs, sqfs2tar, rdsquashfs,
 * unsquashfs) through `mklayer.py ls-*`, which prints one canonical,
 * format-independent listing. */
#ifndef TEST_ROOTFS_UTIL_H
#define TEST_ROOTFS_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rootfs/rootfs.h"

static char rt_dir[64];

static inline const char *rt_root(void)
{
	const char *r = getenv("LTTLE_ROOT");
	return r && *r ? r : ".";
}

static inline bool rt_have(const char *tool)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

static inline int rt_setup(void **state)
{
	(void)state;
	snprintf(rt_dir, sizeof(rt_dir), "/tmp/lttle-rootfs.XXXXXX");
	if (!mkdtemp(rt_dir))
		return -1;
	return 0;
}

static inline int rt_teardown(void **state)
{
	(void)state;
	if (!getenv("KEEP_TMP"))
		lt_rm_rf(rt_dir);
	return 0;
}

/* A path inside the test's temp dir (rotating static buffers). */
static inline const char *rt_path(const char *name)
{
	static char bufs[8][512];
	static int i;
	char *b = bufs[i++ % 8];
	snprintf(b, 512, "%s/%s", rt_dir, name);
	return b;
}

/* Output of a shell command (caller frees); *status gets the exit code. */
static inline char *rt_run(const char *cmd, int *status)
{
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	struct lt_buf b = {0};
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		assert_int_equal(lt_buf_append(&b, tmp, n), 0);
	int st = pclose(f);
	if (status)
		*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	assert_int_equal(lt_buf_cstr(&b), 0);
	return (char *)b.data;
}

static inline char *rt_runf(int *status, const char *fmt, ...) LT_PRINTF(2, 3);
static inline char *rt_runf(int *status, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return rt_run(cmd, status);
}

/* Writes layer `name` from a JSON spec (see mklayer.py). */
static inline const char *rt_layer(const char *name, const char *spec)
{
	const char *specf = rt_path("spec.json");
	FILE *f = fopen(specf, "w");
	assert_non_null(f);
	fputs(spec, f);
	fclose(f);
	const char *out = rt_path(name);
	int st;
	char *o = rt_runf(&st, "python3 %s/tests/lib/mklayer.py %s %s 2>&1", rt_root(), specf, out);
	if (st != 0)
		fail_msg("mklayer failed: %s", o);
	free(o);
	return out;
}

static inline int rt_build_ex(enum rootfs_format fmt, const char *out, const char **layers, size_t n,
		       const struct rootfs_inject *inj, size_t n_inj, uint64_t size,
		       struct rootfs_stats *st)
{
	struct rootfs_spec s = {
		.format = fmt,
		.layers = layers,
		.n_layers = n,
		.injects = inj,
		.n_injects = n_inj,
		.size = size,
	};
	lt_clear_error();
	return rootfs_build(&s, out, st);
}

static inline int rt_build(enum rootfs_format fmt, const char *out, const char **layers, size_t n)
{
	return rt_build_ex(fmt, out, layers, n, NULL, 0, 0, NULL);
}

/* Canonical listing of an image (mklayer.py ls-ext4 / ls-sqfs). */
static inline char *rt_list(enum rootfs_format fmt, const char *img)
{
	int st;
	char *o = rt_runf(&st, "python3 %s/tests/lib/mklayer.py %s %s", rt_root(),
			  fmt == ROOTFS_EXT4 ? "ls-ext4" : "ls-sqfs", img);
	if (st != 0)
		fail_msg("listing %s failed (%d): %s", img, st, o);
	return o;
}

/* The image passes the format's own checker: e2fsck -fn (clean, exit 0)
 * or unsquashfs (squashfs-tools) listing it without error. */
static inline void rt_check_fs(enum rootfs_format fmt, const char *img)
{
	int st;
	char *o = fmt == ROOTFS_EXT4 ? rt_runf(&st, "e2fsck -fn %s 2>&1", img)
				     : rt_runf(&st, "unsquashfs -lln %s 2>&1 >/dev/null", img);
	if (st != 0)
		fail_msg("%s check of %s failed (exit %d):\n%s",
			 fmt == ROOTFS_EXT4 ? "e2fsck" : "unsquashfs", img, st, o);
	free(o);
}

static inline void rt_expect_listing(enum rootfs_format fmt, const char *img, const char *want)
{
	char *got = rt_list(fmt, img);
	if (strcmp(got, want) != 0)
		fail_msg("%s listing of %s differs.\n--- expected\n%s--- got\n%s",
			 rootfs_format_name(fmt), img, want, got);
	free(got);
}

/* Builds both formats from the same layers; checks each with its tool and
 * against the expected canonical listing. */
static inline void rt_build_both_expect(const char **layers, size_t n, const char *want)
{
	const enum rootfs_format fmts[] = {ROOTFS_EXT4, ROOTFS_SQUASHFS};
	for (size_t i = 0; i < 2; i++) {
		const char *img = rt_path(fmts[i] == ROOTFS_EXT4 ? "img.ext4" : "img.sqfs");
		if (rt_build(fmts[i], img, layers, n) != 0)
			fail_msg("%s build failed: %s", rootfs_format_name(fmts[i]), lt_errmsg());
		rt_check_fs(fmts[i], img);
		rt_expect_listing(fmts[i], img, want);
	}
}

/* Nothing but `keep` (NULL-terminated names) is left in the temp dir. */
static inline void rt_expect_dir_only(const char *const *keep)
{
	DIR *d = opendir(rt_dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		bool ok = false;
		for (size_t i = 0; keep[i]; i++)
			ok |= !strcmp(keep[i], e->d_name);
		if (!ok) {
			closedir(d);
			fail_msg("unexpected file left in the output dir: %s", e->d_name);
		}
	}
	closedir(d);
}

static inline void rt_need_tools(void)
{
	const char *tools[] = {"python3", "e2fsck", "debugfs", "sqfs2tar", "rdsquashfs",
			       "unsquashfs", "zstd"};
	for (size_t i = 0; i < LT_ARRAY_LEN(tools); i++)
		if (!rt_have(tools[i])) {
			print_message("skipped: %s is not installed\n", tools[i]);
			skip();
		}
}

#endif
