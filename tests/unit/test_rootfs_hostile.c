/* Hostile layers: every case must fail with an error naming the layer and
 * the entry, leave nothing at the output path (nor a temp file), and
 * write nothing outside the image. Both formats. */
#include "test_rootfs_util.h"

#include <fcntl.h>

/* Case tables below leave unused limits zero (the defaults). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

struct hostile {
	const char *name;
	const char *layers[3];        /* JSON specs, bottom first */
	const char *want[3];          /* substrings of the error */
	struct rootfs_limits limits;
};

#define OUTSIDE "/tmp/lttle-rootfs-hostile-outside"

static const struct hostile cases[] = {
	{"dotdot", {"[{\"type\":\"raw\",\"name\":\"../etc/passwd\",\"content\":\"x\"}]"},
	 {"layer 1 (", "'../etc/passwd'", "'..'"}},
	{"dotdot-inside", {"[{\"type\":\"raw\",\"name\":\"a/b/../../../x\",\"content\":\"x\"}]"},
	 {"layer 1 (", "a/b/../../../x", "'..'"}},
	{"absolute", {"[{\"type\":\"raw\",\"name\":\"/etc/shadow\",\"content\":\"x\"}]"},
	 {"layer 1 (", "'/etc/shadow'", "absolute"}},
	{"symlink-same-layer",
	 {"[{\"path\":\"a\",\"type\":\"symlink\",\"target\":\"" OUTSIDE "\"},"
	  "{\"path\":\"a/passwd\",\"content\":\"x\"}]"},
	 {"layer 1 (", "'a/passwd'", "symlink 'a'"}},
	{"symlink-earlier-layer",
	 {"[{\"path\":\"usr/lib\",\"type\":\"symlink\",\"target\":\"" OUTSIDE "\"}]",
	  "{\"compression\":\"gzip\",\"entries\":[{\"path\":\"usr/lib/x/evil.so\",\"content\":\"x\"}]}"},
	 {"layer 2 (", "'usr/lib/x/evil.so'", "symlink 'usr/lib'"}},
	{"symlink-dir-entry",
	 {"[{\"path\":\"d\",\"type\":\"symlink\",\"target\":\"..\"}]",
	  "[{\"path\":\"d/sub/\",\"type\":\"dir\"}]"},
	 {"layer 2 (", "'d/sub/'", "symlink 'd'"}},
	{"symlink-whiteout",
	 {"[{\"path\":\"s\",\"type\":\"symlink\",\"target\":\"/etc\"}]",
	  "[{\"path\":\"s/passwd\",\"type\":\"whiteout\"}]"},
	 {"layer 2 (", "s/.wh.passwd", "symlink 's'"}},
	{"symlink-opaque",
	 {"[{\"path\":\"s\",\"type\":\"symlink\",\"target\":\"/etc\"}]",
	  "[{\"path\":\"s\",\"type\":\"opaque\"}]"},
	 {"layer 2 (", "s/.wh..wh..opq", "symlink 's'"}},
	{"hardlink-through-symlink",
	 {"[{\"path\":\"etc/passwd\",\"content\":\"x\"},"
	  "{\"path\":\"s\",\"type\":\"symlink\",\"target\":\"etc\"}]",
	  "[{\"path\":\"h\",\"type\":\"hardlink\",\"target\":\"s/passwd\"}]"},
	 {"layer 2 (", "'h'", "hardlink target goes through the symlink 's'"}},
	{"hardlink-missing", {"[{\"path\":\"h\",\"type\":\"hardlink\",\"target\":\"nothere\"}]"},
	 {"layer 1 (", "'h'", "'nothere' does not exist"}},
	{"hardlink-dir",
	 {"[{\"path\":\"d/\",\"type\":\"dir\"},{\"path\":\"h\",\"type\":\"hardlink\",\"target\":\"d\"}]"},
	 {"layer 1 (", "'h'", "directory 'd'"}},
	{"hardlink-absolute", {"[{\"path\":\"h\",\"type\":\"hardlink\",\"target\":\"/etc/passwd\"}]"},
	 {"layer 1 (", "'h'", "absolute hardlink target"}},
	{"hardlink-dotdot",
	 {"[{\"path\":\"a\",\"content\":\"x\"},{\"path\":\"d/h\",\"type\":\"hardlink\",\"target\":\"d/../a\"}]"},
	 {"layer 1 (", "'d/h'", "'..' in hardlink target"}},
	{"hardlink-whited-out",
	 {"[{\"path\":\"a\",\"content\":\"x\"}]",
	  "[{\"path\":\"a\",\"type\":\"whiteout\"},{\"path\":\"h\",\"type\":\"hardlink\",\"target\":\"a\"}]"},
	 {"layer 2 (", "'h'", "'a' does not exist"}},
	{"file-too-large", {"[{\"path\":\"big\",\"size\":5000,\"fill\":\"b\"}]"},
	 {"layer 1 (", "'big'", "exceeds the limit of 4096"}, {.max_file_size = 4096}},
	{"too-many-entries",
	 {"[{\"path\":\"a\"},{\"path\":\"b\"}]", "[{\"path\":\"c\"},{\"path\":\"d\"}]"},
	 {"layer 2 (", "'d'", "more than 3 entries"}, {.max_entries = 3}},
	{"too-much-data",
	 {"[{\"path\":\"a\",\"size\":3000,\"fill\":\"a\"}]", "[{\"path\":\"b\",\"size\":3000,\"fill\":\"b\"}]"},
	 {"layer 2 (", "'b'", "more than 5000 bytes"}, {.max_total_size = 5000}},
	{"path-too-long",
	 {"[{\"path\":\"aaaaaaaaaa/bbbbbbbbbb/cccccccccc/dddddddddd\",\"content\":\"x\"}]"},
	 {"layer 1 (", "aaaaaaaaaa/bbbbbbbbbb", "longer than 32 bytes"}, {.max_path_len = 32}},
	{"symlink-empty", {"[{\"path\":\"l\",\"type\":\"symlink\",\"target\":\"\"}]"},
	 {"layer 1 (", "'l'", "symlink target is empty"}},
	{"device-number", {"[{\"path\":\"dev/x\",\"type\":\"char\",\"major\":70000,\"minor\":1}]"},
	 {"layer 1 (", "'dev/x'", "device number 70000:1"}},
	{"whiteout-empty", {"[{\"type\":\"raw\",\"name\":\"etc/.wh.\",\"content\":\"\"}]"},
	 {"layer 1 (", "'etc/.wh.'", "malformed whiteout"}},
	{"whiteout-dotdot", {"[{\"type\":\"raw\",\"name\":\"etc/.wh...\",\"content\":\"\"}]"},
	 {"layer 1 (", "'etc/.wh...'", "malformed whiteout"}},
	{"root-not-dir", {"[{\"type\":\"raw\",\"name\":\".\",\"as\":\"file\",\"content\":\"x\"}]"},
	 {"layer 1 (", "root must be a directory"}},
	{"xattr-huge",
	 {"[{\"path\":\"f\",\"content\":\"x\",\"xattrs\":{\"user.big\":\"hex:"
	  "%BIG%\"}}]"},
	 {"layer 1 (", "'f'", "xattrs larger than 3600 bytes"}},
	{"sparse-outside",
	 {"[{\"path\":\"a\",\"content\":\"x\"},"
	  "{\"path\":\"sp\",\"type\":\"sparse\",\"size\":700000,"
	  "\"data\":[[0,\"%HUGE%\"],[800000,\"y\"]]}]"},
	 {"layer 1 (", "'sp'", "data outside the declared size"}},
	{"xattr-many", {"%MANY%"}, {"layer 1 (", "'f'", "more than 64 xattrs"}},
	{"too-deep", {"%DEEP%"}, {"layer 1 (", "deeper than 512 levels"}},
	{"name-too-long", {"%LONGNAME%"}, {"layer 1 (", "longer than 255 bytes"}},
};

/* Expands the %MACROS% that are too large to spell out above. */
static char *expand(const char *spec)
{
	struct lt_buf b = {0};
	if (!strcmp(spec, "%MANY%")) {
		lt_buf_printf(&b, "[{\"path\":\"f\",\"content\":\"x\",\"xattrs\":{");
		for (int i = 0; i < 70; i++)
			lt_buf_printf(&b, "%s\"user.k%d\":\"v\"", i ? "," : "", i);
		lt_buf_printf(&b, "}}]");
	} else if (!strcmp(spec, "%DEEP%")) {
		lt_buf_printf(&b, "[{\"path\":\"");
		for (int i = 0; i < 600; i++)
			lt_buf_printf(&b, "d/");
		lt_buf_printf(&b, "f\",\"content\":\"x\"}]");
	} else if (!strcmp(spec, "%LONGNAME%")) {
		lt_buf_printf(&b, "[{\"path\":\"dir/");
		for (int i = 0; i < 256; i++)
			lt_buf_printf(&b, "n");
		lt_buf_printf(&b, "\",\"content\":\"x\"}]");
	} else {
		const char *big = strstr(spec, "%BIG%"), *huge = strstr(spec, "%HUGE%");
		if (big || huge) {
			/* 8000 or 600000 bytes of text */
			const char *at = big ? big : huge;
			lt_buf_append(&b, spec, (size_t)(at - spec));
			for (int i = 0; i < (big ? 4000 : 300000); i++)
				lt_buf_printf(&b, "ab");
			lt_buf_printf(&b, "%s", at + (big ? 5 : 6));
		} else {
			lt_buf_printf(&b, "%s", spec);
		}
	}
	lt_buf_cstr(&b);
	return (char *)b.data;
}

static void expect_failure(const char **layers, size_t n, const struct rootfs_limits *lim,
			   const char *const *want, const char *label)
{
	const enum rootfs_format fmts[] = {ROOTFS_EXT4, ROOTFS_SQUASHFS};
	for (size_t f = 0; f < 2; f++) {
		const char *out = rt_path("out.img");
		struct rootfs_spec s = {.format = fmts[f], .layers = layers, .n_layers = n};
		if (lim)
			s.limits = *lim;
		lt_clear_error();
		if (rootfs_build(&s, out, NULL) == 0)
			fail_msg("%s (%s): hostile layers were accepted", label,
				 rootfs_format_name(fmts[f]));
		const char *msg = lt_errmsg();
		for (size_t i = 0; i < 3 && want[i]; i++)
			if (!strstr(msg, want[i]))
				fail_msg("%s (%s): error '%s' lacks '%s'", label,
					 rootfs_format_name(fmts[f]), msg, want[i]);
		assert_false(lt_path_exists(out));
		assert_false(lt_path_exists(OUTSIDE));
	}
}

static void test_hostile_cases(void **state)
{
	(void)state;
	rt_need_tools();
	lt_rm_rf(OUTSIDE);
	for (size_t c = 0; c < LT_ARRAY_LEN(cases); c++) {
		const struct hostile *h = &cases[c];
		const char *layers[3];
		char names[3][16];
		size_t n = 0;
		for (; n < 3 && h->layers[n]; n++) {
			snprintf(names[n], sizeof(names[n]), "l%zu.tar", n + 1);
			char *spec = expand(h->layers[n]);
			layers[n] = lt_strdup(rt_layer(names[n], spec));
			free(spec);
		}
		print_message("case %s\n", h->name);
		expect_failure(layers, n, &h->limits, h->want, h->name);
		const char *keep[] = {"l1.tar", "l2.tar", "l3.tar", "spec.json", NULL};
		rt_expect_dir_only(keep);
		for (size_t i = 0; i < n; i++) {
			unlink(layers[i]);
			free((char *)layers[i]);
		}
	}
}

/* Damaged blobs: truncated compressed data, garbage, a missing file. */
static void test_damaged_layers(void **state)
{
	(void)state;
	rt_need_tools();
	const char *good = rt_layer("good.tar.gz", "{\"compression\":\"gzip\",\"entries\":["
		"{\"path\":\"a\",\"size\":300000,\"seed\":1},{\"path\":\"b\",\"size\":300000,\"seed\":2}]}");
	struct stat st;
	assert_int_equal(stat(good, &st), 0);
	const char *cut = rt_path("cut.tar.gz");
	char *o = rt_runf(NULL, "head -c %lld %s > %s", (long long)st.st_size / 2, good, cut);
	free(o);
	const char *layers1[] = {good, cut};
	const char *want1[] = {"layer 2 (cut.tar.gz)", NULL};
	expect_failure(layers1, 2, NULL, want1, "truncated gzip");

	const char *plain = rt_layer("plain.tar", "[{\"path\":\"a\",\"size\":300000,\"seed\":1}]");
	assert_int_equal(truncate(plain, 100000), 0);
	const char *layers2[] = {plain};
	const char *want2[] = {"layer 1 (plain.tar)", NULL};
	expect_failure(layers2, 1, NULL, want2, "truncated tar");

	const char *junk = rt_path("junk.bin");
	int fd = open(junk, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	for (int i = 0; i < 4096; i++) {
		uint8_t byte = (uint8_t)(i * 131 + 7);
		assert_int_equal(write(fd, &byte, 1), 1);
	}
	close(fd);
	const char *layers3[] = {junk};
	const char *want3[] = {"layer 1 (junk.bin)", NULL};
	expect_failure(layers3, 1, NULL, want3, "garbage");

	/* valid gzip around bytes that are not a tar */
	const char *gzjunk = rt_path("junk.gz");
	o = rt_runf(NULL, "gzip -c < %s > %s", junk, gzjunk);
	free(o);
	const char *layers5[] = {gzjunk};
	const char *want5[] = {"layer 1 (junk.gz)", NULL};
	expect_failure(layers5, 1, NULL, want5, "gzip of garbage");

	/* a corrupt deflate stream behind a valid gzip header */
	const char *gzbad = rt_path("bad.tar.gz");
	o = rt_runf(NULL, "head -c 20 %s > %s && head -c 4000 %s >> %s", good, gzbad, junk, gzbad);
	free(o);
	const char *layers6[] = {gzbad};
	const char *want6[] = {"layer 1 (bad.tar.gz)", NULL};
	expect_failure(layers6, 1, NULL, want6, "corrupt deflate");

	const char *layers4[] = {rt_path("missing.tar")};
	const char *want4[] = {"layer 1 (missing.tar)", "cannot open", NULL};
	expect_failure(layers4, 1, NULL, want4, "missing");

	const char *keep[] = {"good.tar.gz", "cut.tar.gz", "plain.tar", "junk.bin", "junk.gz",
			      "bad.tar.gz", "spec.json", NULL};
	rt_expect_dir_only(keep);
}

/* A failed build leaves an earlier image at the same path untouched. */
static void test_failure_keeps_old_output(void **state)
{
	(void)state;
	rt_need_tools();
	const char *ok = rt_layer("ok.tar", "[{\"path\":\"a\",\"content\":\"x\"}]");
	const char *bad = rt_layer("bad.tar", "[{\"type\":\"raw\",\"name\":\"../a\",\"content\":\"x\"}]");
	const char *out = rt_path("out.img");
	const char *good[] = {ok};
	assert_int_equal(rt_build(ROOTFS_SQUASHFS, out, good, 1), 0);
	char before[LT_SHA256_HEX], after[LT_SHA256_HEX];
	assert_int_equal(lt_sha256_file_hex(out, before), 0);
	const char *evil[] = {ok, bad};
	assert_int_not_equal(rt_build(ROOTFS_SQUASHFS, out, evil, 2), 0);
	assert_int_equal(lt_sha256_file_hex(out, after), 0);
	assert_string_equal(before, after);
	const char *keep[] = {"ok.tar", "bad.tar", "out.img", "spec.json", NULL};
	rt_expect_dir_only(keep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hostile_cases, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_layers, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_failure_keeps_old_output, rt_setup, rt_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
