/* rootfs_build on generated layers: OCI semantics, both formats, checked
 * with e2fsck/debugfs and sqfs2tar/unsquashfs. */
#include "test_rootfs_util.h"

#define T0 "1700000000"

/* Every entry type, ownership, modes, times, xattrs; three compressions. */
static void test_types_and_metadata(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar.gz", "{\"compression\":\"gzip\",\"entries\":["
		"{\"path\":\"./\",\"type\":\"dir\",\"mode\":493,\"mtime\":1600000000},"
		"{\"path\":\"./etc/\",\"type\":\"dir\",\"mode\":493,\"xattrs\":{\"user.dir\":\"d\"}},"
		"{\"path\":\"./etc/passwd\",\"content\":\"root:x:0:0::/root:/bin/sh\\n\",\"mode\":420},"
		"{\"path\":\"./etc/shadow\",\"content\":\"secret\",\"mode\":416,\"gid\":42},"
		"{\"path\":\"./bin/\",\"type\":\"dir\",\"mode\":493},"
		"{\"path\":\"./bin/busybox\",\"content\":\"BB\",\"mode\":3565,\"uid\":100000,\"gid\":70000,"
		" \"mtime\":1234567890},"
		"{\"path\":\"./bin/sh\",\"type\":\"symlink\",\"target\":\"busybox\","
		" \"xattrs\":{\"trusted.lnk\":\"l\"}},"
		"{\"path\":\"./bin/ls\",\"type\":\"hardlink\",\"target\":\"./bin/busybox\"},"
		"{\"path\":\"./bin/ping\",\"content\":\"PING\",\"mode\":493,\"xattrs\":"
		" {\"security.capability\":\"hex:0100000200200000000000000000000000000000\","
		"  \"user.note\":\"hello\"}},"
		"{\"path\":\"./lib/far\",\"type\":\"symlink\",\"target\":"
		" \"../../../a/very/long/symlink/target/that/does/not/fit/into/the/inode/itself/x\"},"
		"{\"path\":\"./dev/null\",\"type\":\"char\",\"major\":1,\"minor\":3,\"mode\":438},"
		"{\"path\":\"./dev/sda1\",\"type\":\"block\",\"major\":8,\"minor\":1,\"mode\":432,\"gid\":6},"
		"{\"path\":\"./run/initctl\",\"type\":\"fifo\",\"mode\":384},"
		"{\"path\":\"./tmp/\",\"type\":\"dir\",\"mode\":1023}"
		"]}");
	const char *l2 = rt_layer("l2.tar.zst", "{\"compression\":\"zstd\",\"entries\":["
		"{\"path\":\"usr/share/doc/x.txt\",\"size\":200000,\"fill\":\"doc \"},"
		"{\"path\":\"usr/lib/blob\",\"size\":1000000,\"seed\":7,\"mode\":384}"
		"]}");
	const char *l3 = rt_layer("l3.tar", "["
		"{\"path\":\"empty\",\"content\":\"\"},"
		"{\"path\":\"etc/libarchive-xattr\",\"content\":\"y\",\"xattr_style\":\"libarchive\","
		" \"xattrs\":{\"user.k\":\"v\"}}"
		"]");
	const char *layers[] = {l1, l2, l3};
	rt_build_both_expect(layers, 3,
		"/ d 0755 0:0 1600000000\n"
		"/bin d 0755 0:0 " T0 "\n"
		"/bin/busybox f 6755 100000:70000 1234567890 2 sha256:fc686c314491e1f6 nlink=2\n"
		"/bin/ls f 6755 100000:70000 1234567890 2 sha256:fc686c314491e1f6 link=/bin/busybox\n"
		"/bin/ping f 0755 0:0 " T0 " 4 sha256:906055e56391a936"
		" x:security.capability=0100000200200000000000000000000000000000 x:user.note=68656c6c6f\n"
		"/bin/sh l 0777 0:0 " T0 " -> busybox x:trusted.lnk=6c\n"
		"/dev d 0755 0:0 " T0 "\n"
		"/dev/null c 0666 0:0 " T0 " 1,3\n"
		"/dev/sda1 b 0660 0:6 " T0 " 8,1\n"
		"/empty f 0644 0:0 " T0 " 0 sha256:e3b0c44298fc1c14\n"
		"/etc d 0755 0:0 " T0 " x:user.dir=64\n"
		"/etc/libarchive-xattr f 0644 0:0 " T0 " 1 sha256:a1fce4363854ff88 x:user.k=76\n"
		"/etc/passwd f 0644 0:0 " T0 " 26 sha256:037d604c1c026b9f\n"
		"/etc/shadow f 0640 0:42 " T0 " 6 sha256:2bb80d537b1da3e3\n"
		"/lib d 0755 0:0 " T0 "\n"
		"/lib/far l 0777 0:0 " T0
		" -> ../../../a/very/long/symlink/target/that/does/not/fit/into/the/inode/itself/x\n"
		"/run d 0755 0:0 " T0 "\n"
		"/run/initctl p 0600 0:0 " T0 "\n"
		"/tmp d 1777 0:0 " T0 "\n"
		"/usr d 0755 0:0 " T0 "\n"
		"/usr/lib d 0755 0:0 " T0 "\n"
		"/usr/lib/blob f 0600 0:0 " T0 " 1000000 sha256:74afb6ba19d23a9f\n"
		"/usr/share d 0755 0:0 " T0 "\n"
		"/usr/share/doc d 0755 0:0 " T0 "\n"
		"/usr/share/doc/x.txt f 0644 0:0 " T0 " 200000 sha256:e424187b857d4804\n");
}

/* Whiteouts hide lower entries (files and whole trees) but never what
 * the same layer adds; a whiteout of a missing path is a no-op. */
static void test_whiteouts(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar", "["
		"{\"path\":\"a/file\",\"content\":\"1\"},"
		"{\"path\":\"a/gone\",\"content\":\"2\"},"
		"{\"path\":\"tree/x/y/z\",\"content\":\"3\"},"
		"{\"path\":\"keep\",\"content\":\"4\"}"
		"]");
	const char *l2 = rt_layer("l2.tar.gz", "{\"compression\":\"gzip\",\"entries\":["
		"{\"path\":\"a/gone\",\"type\":\"whiteout\"},"
		"{\"path\":\"tree\",\"type\":\"whiteout\"},"
		"{\"path\":\"nothere/at/all\",\"type\":\"whiteout\"},"
		"{\"path\":\"a/missing\",\"type\":\"whiteout\"},"
		"{\"path\":\"new\",\"content\":\"5\"},"
		"{\"path\":\"new\",\"type\":\"whiteout\"},"
		"{\"path\":\"keep\",\"type\":\"whiteout\"},"
		"{\"path\":\"keep\",\"content\":\"6\"}"
		"]}");
	const char *layers[] = {l1, l2};
	rt_build_both_expect(layers, 2,
		"/ d 0755 0:0 " T0 "\n"
		"/a d 0755 0:0 " T0 "\n"
		"/a/file f 0644 0:0 " T0 " 1 sha256:6b86b273ff34fce1\n"
		"/keep f 0644 0:0 " T0 " 1 sha256:e7f6c011776e8db7\n"
		"/new f 0644 0:0 " T0 " 1 sha256:ef2d127de37b942b\n");
}

/* An opaque directory hides everything lower layers put below it, at any
 * depth, and keeps this layer's entries whether they come before or
 * after the marker. */
static void test_opaque(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar", "["
		"{\"path\":\"opt/app/old\",\"content\":\"o\"},"
		"{\"path\":\"opt/app/sub/deep\",\"content\":\"d\"},"
		"{\"path\":\"opt/app/both\",\"content\":\"lower\"},"
		"{\"path\":\"opt/other\",\"content\":\"x\"}"
		"]");
	const char *l2 = rt_layer("l2.tar", "["
		"{\"path\":\"opt/app/before\",\"content\":\"b\"},"
		"{\"path\":\"opt/app/sub/mine\",\"content\":\"m\"},"
		"{\"path\":\"opt/app\",\"type\":\"opaque\"},"
		"{\"path\":\"opt/app/after\",\"content\":\"a\"},"
		"{\"path\":\"opt/app/both\",\"content\":\"upper\"}"
		"]");
	const char *layers[] = {l1, l2};
	rt_build_both_expect(layers, 2,
		"/ d 0755 0:0 " T0 "\n"
		"/opt d 0755 0:0 " T0 "\n"
		"/opt/app d 0755 0:0 " T0 "\n"
		"/opt/app/after f 0644 0:0 " T0 " 1 sha256:ca978112ca1bbdca\n"
		"/opt/app/before f 0644 0:0 " T0 " 1 sha256:3e23e8160039594a\n"
		"/opt/app/both f 0644 0:0 " T0 " 5 sha256:aee6105582920237\n"
		"/opt/app/sub d 0755 0:0 " T0 "\n"
		"/opt/app/sub/mine f 0644 0:0 " T0 " 1 sha256:62c66a7a5dd70c31\n"
		"/opt/other f 0644 0:0 " T0 " 1 sha256:2d711642b726b044\n");
}

/* File <-> directory <-> symlink replacement across layers; a directory
 * over a directory merges and takes the new metadata. */
static void test_replacement(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar", "["
		"{\"path\":\"f2d\",\"content\":\"file\"},"
		"{\"path\":\"d2f/inner\",\"content\":\"i\"},"
		"{\"path\":\"l2d\",\"type\":\"symlink\",\"target\":\"/etc\"},"
		"{\"path\":\"merge/\",\"type\":\"dir\",\"mode\":448,\"uid\":5},"
		"{\"path\":\"merge/lower\",\"content\":\"l\"}"
		"]");
	const char *l2 = rt_layer("l2.tar", "["
		"{\"path\":\"f2d/\",\"type\":\"dir\"},"
		"{\"path\":\"f2d/child\",\"content\":\"c\"},"
		"{\"path\":\"d2f\",\"content\":\"now a file\"},"
		"{\"path\":\"l2d/\",\"type\":\"dir\",\"mode\":448},"
		"{\"path\":\"l2d/x\",\"content\":\"x\"},"
		"{\"path\":\"merge/\",\"type\":\"dir\",\"mode\":493,\"uid\":7,\"mtime\":1700000001},"
		"{\"path\":\"merge/upper\",\"content\":\"u\"}"
		"]");
	const char *layers[] = {l1, l2};
	rt_build_both_expect(layers, 2,
		"/ d 0755 0:0 1700000001\n"
		"/d2f f 0644 0:0 " T0 " 10 sha256:92af885f330ed4b1\n"
		"/f2d d 0755 0:0 " T0 "\n"
		"/f2d/child f 0644 0:0 " T0 " 1 sha256:2e7d2c03a9507ae2\n"
		"/l2d d 0700 0:0 " T0 "\n"
		"/l2d/x f 0644 0:0 " T0 " 1 sha256:2d711642b726b044\n"
		"/merge d 0755 7:0 1700000001\n"
		"/merge/lower f 0644 0:0 " T0 " 1 sha256:acac86c0e609ca90\n"
		"/merge/upper f 0644 0:0 " T0 " 1 sha256:0bfe935e70c321c7\n");
}

/* Hardlinks within a layer and to earlier layers; a link keeps the
 * content its target had in that layer; whiteouts drop single links. */
static void test_hardlinks(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar", "["
		"{\"path\":\"a\",\"content\":\"v1\"},"
		"{\"path\":\"b\",\"type\":\"hardlink\",\"target\":\"a\"},"
		"{\"path\":\"s\",\"type\":\"symlink\",\"target\":\"a\"},"
		"{\"path\":\"s2\",\"type\":\"hardlink\",\"target\":\"s\"},"
		"{\"path\":\"dev/zero\",\"type\":\"char\",\"major\":1,\"minor\":5},"
		"{\"path\":\"dev/zero2\",\"type\":\"hardlink\",\"target\":\"dev/zero\"},"
		"{\"path\":\"w1\",\"content\":\"w\"},"
		"{\"path\":\"w2\",\"type\":\"hardlink\",\"target\":\"w1\"}"
		"]");
	const char *l2 = rt_layer("l2.tar", "["
		"{\"path\":\"sub/c\",\"type\":\"hardlink\",\"target\":\"a\"},"
		"{\"path\":\"a\",\"content\":\"v2!\"},"
		"{\"path\":\"w2\",\"type\":\"whiteout\"}"
		"]");
	const char *layers[] = {l1, l2};
	rt_build_both_expect(layers, 2,
		"/ d 0755 0:0 " T0 "\n"
		"/a f 0644 0:0 " T0 " 3 sha256:5582ec3db4db6ef8\n"
		"/b f 0644 0:0 " T0 " 2 sha256:3bfc269594ef6492 nlink=2\n"
		"/dev d 0755 0:0 " T0 "\n"
		"/dev/zero c 0644 0:0 " T0 " 1,5 nlink=2\n"
		"/dev/zero2 c 0644 0:0 " T0 " 1,5 link=/dev/zero\n"
		"/s l 0777 0:0 " T0 " -> a nlink=2\n"
		"/s2 l 0777 0:0 " T0 " -> a link=/s\n"
		"/sub d 0755 0:0 " T0 "\n"
		"/sub/c f 0644 0:0 " T0 " 2 sha256:3bfc269594ef6492 link=/b\n"
		"/w1 f 0644 0:0 " T0 " 1 sha256:50e721e49c013f00\n");
}

/* GNU sparse files keep their holes in ext4 (few blocks) and their
 * content everywhere; a many-island file needs a real extent tree. */
static void test_sparse(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar.gz", "{\"compression\":\"gzip\",\"entries\":["
		"{\"path\":\"sparse\",\"type\":\"sparse\",\"size\":104857600,"
		" \"data\":[[0,\"head\"],[52428800,\"middle\"],[104857590,\"tail\"]]},"
		"{\"path\":\"islands\",\"type\":\"sparse\",\"size\":4194304,\"data\":["
		"  [0,\"i0\"],[65536,\"i1\"],[131072,\"i2\"],[196608,\"i3\"],[262144,\"i4\"],"
		"  [327680,\"i5\"],[393216,\"i6\"],[458752,\"i7\"],[524288,\"i8\"],[589824,\"i9\"]]},"
		"{\"path\":\"zeros\",\"size\":1048576,\"fill\":\"\\u0000\"}"
		"]}");
	const char *layers[] = {l1};
	const char *img = rt_path("img.ext4");
	assert_int_equal(rt_build(ROOTFS_EXT4, img, layers, 1), 0);
	rt_check_fs(ROOTFS_EXT4, img);
	int st;
	/* 3 data blocks (plus none for the holes) = 24 sectors. */
	char *o = rt_runf(&st, "debugfs -R 'stat /sparse' %s 2>/dev/null", img);
	assert_non_null(strstr(o, "Size: 104857600"));
	assert_non_null(strstr(o, "Blockcount: 24\n"));
	free(o);
	/* 10 separate blocks: more extents than fit in the inode. */
	o = rt_runf(&st, "debugfs -R 'stat /islands' %s 2>/dev/null", img);
	assert_non_null(strstr(o, "Blockcount: 88\n")); /* 10 data + 1 index block */
	assert_non_null(strstr(o, "(ETB0)")); /* an extent tree block */
	free(o);
	o = rt_runf(&st, "debugfs -R 'stat /zeros' %s 2>/dev/null", img);
	assert_non_null(strstr(o, "Blockcount: 0\n"));
	free(o);
	rt_build_both_expect(layers, 1,
		"/ d 0755 0:0 " T0 "\n"
		"/islands f 0644 0:0 " T0 " 4194304 sha256:52f0bb2f2f64a805\n"
		"/sparse f 0644 0:0 " T0 " 104857600 sha256:dbe50ed774ff074d\n"
		"/zeros f 0644 0:0 " T0 " 1048576 sha256:30e14955ebf13522\n");
	o = rt_runf(&st, "rdsquashfs -s /sparse %s", rt_path("img.sqfs"));
	assert_int_equal(st, 0);
	assert_null(strstr(o, "Sparse: 0\n"));
	free(o);
}

/* Injected files land on top, replacing whatever the image had on the
 * way (a planted symlink included), with fresh root-owned parents. */
static void test_injects(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar", "["
		"{\"path\":\".lttle\",\"type\":\"symlink\",\"target\":\"/etc\"},"
		"{\"path\":\"etc/keep\",\"content\":\"k\"}"
		"]");
	const char *init = rt_path("init.bin");
	FILE *f = fopen(init, "w");
	assert_non_null(f);
	fputs("#!/bin/init\n", f);
	fclose(f);
	struct rootfs_inject inj[] = {
		{.path = "/.lttle/init", .src_path = init, .mode = 0755},
		{.path = "/.lttle/config.json", .data = "{\"a\":1}", .len = 7, .mode = 0644},
		{.path = "/etc/keep/nested/x", .data = "", .len = 0, .mode = 0600},
	};
	const char *layers[] = {l1};
	const enum rootfs_format fmts[] = {ROOTFS_EXT4, ROOTFS_SQUASHFS};
	for (size_t i = 0; i < 2; i++) {
		const char *img = rt_path(i ? "img.sqfs" : "img.ext4");
		struct rootfs_stats st;
		assert_int_equal(rt_build_ex(fmts[i], img, layers, 1, inj, 3, 0, &st), 0);
		assert_int_equal(st.bytes, 12 + 7);
		rt_check_fs(fmts[i], img);
		rt_expect_listing(fmts[i], img,
			"/ d 0755 0:0 " T0 "\n"
			"/.lttle d 0755 0:0 " T0 "\n"
			"/.lttle/config.json f 0644 0:0 " T0 " 7 sha256:015abd7f5cc57a2d\n"
			"/.lttle/init f 0755 0:0 " T0 " 12 sha256:2eb9f9a6ab551495\n"
			"/etc d 0755 0:0 " T0 "\n"
			"/etc/keep d 0755 0:0 " T0 "\n"
			"/etc/keep/nested d 0755 0:0 " T0 "\n"
			"/etc/keep/nested/x f 0600 0:0 " T0 " 0 sha256:e3b0c44298fc1c14\n");
	}
}

/* A directory of thousands of entries spans many blocks; long names and
 * deep paths survive. */
static void test_big_dir_and_long_names(void **state)
{
	(void)state;
	rt_need_tools();
	struct lt_buf spec = {0};
	lt_buf_printf(&spec, "[");
	for (int i = 0; i < 3000; i++)
		lt_buf_printf(&spec, "{\"path\":\"many/entry-with-a-longish-name-%05d\",\"content\":\"%d\"},",
			      i, i % 10);
	char name[256];
	memset(name, 'n', 255);
	name[255] = '\0';
	lt_buf_printf(&spec, "{\"path\":\"%s\",\"content\":\"long\"},", name);
	lt_buf_printf(&spec, "{\"path\":\"");
	for (int i = 0; i < 100; i++)
		lt_buf_printf(&spec, "d/");
	lt_buf_printf(&spec, "leaf\",\"content\":\"deep\"}]");
	lt_buf_cstr(&spec);
	const char *l1 = rt_layer("l1.tar", (const char *)spec.data);
	lt_buf_free(&spec);
	const char *layers[] = {l1};
	const enum rootfs_format fmts[] = {ROOTFS_EXT4, ROOTFS_SQUASHFS};
	for (size_t i = 0; i < 2; i++) {
		const char *img = rt_path(i ? "img.sqfs" : "img.ext4");
		struct rootfs_stats st;
		assert_int_equal(rt_build_ex(fmts[i], img, layers, 1, NULL, 0, 0, &st), 0);
		rt_check_fs(fmts[i], img);
		char *l = rt_list(fmts[i], img);
		size_t lines = 0;
		for (char *p = l; *p; p++)
			lines += *p == '\n';
		/* root, many/, 3000 files, the long name, 100 dirs + leaf */
		assert_int_equal(lines, 1 + 1 + 3000 + 1 + 100 + 1);
		assert_non_null(strstr(l, "/many/entry-with-a-longish-name-02999 f 0644 0:0 " T0 " 1 "));
		char want[300];
		snprintf(want, sizeof(want), "\n/%s f 0644", name);
		assert_non_null(strstr(l, want));
		assert_non_null(strstr(l, "/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d"
					  "/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d"
					  "/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d"
					  "/d/d/d/d/leaf f"));
		free(l);
		/* ext4 adds lost+found */
		assert_int_equal(st.entries, 3000 + 1 + 100 + 1 + 2 + (fmts[i] == ROOTFS_EXT4));
	}
}

/* Enough inodes to fill whole block groups (the last inode of a group in
 * use) and many groups: the group summaries must still add up. */
static void test_many_inodes(void **state)
{
	(void)state;
	rt_need_tools();
	struct lt_buf spec = {0};
	lt_buf_printf(&spec, "[");
	for (int i = 0; i < 24000; i++)
		lt_buf_printf(&spec, "%s{\"path\":\"d%02d/f%05d\",\"content\":\"%d\"}", i ? "," : "",
			      i % 40, i, i % 7);
	lt_buf_printf(&spec, "]");
	lt_buf_cstr(&spec);
	const char *l1 = rt_layer("l1.tar", (const char *)spec.data);
	lt_buf_free(&spec);
	const char *layers[] = {l1};
	const char *img = rt_path("img.ext4");
	struct rootfs_stats st;
	/* 256 MiB: two block groups, the first one's inode table full */
	assert_int_equal(rt_build_ex(ROOTFS_EXT4, img, layers, 1, NULL, 0, 256u << 20, &st), 0);
	assert_int_equal(st.entries, 24000 + 40 + 2);
	rt_check_fs(ROOTFS_EXT4, img);
	int status;
	char *o = rt_runf(&status, "dumpe2fs %s 2>/dev/null | grep -c '^Group '", img);
	assert_true(atoi(o) >= 2);
	free(o);
	o = rt_runf(&status, "debugfs -R 'cat /d39/f23999' %s 2>/dev/null", img);
	assert_string_equal(o, "3"); /* 23999 % 7 */
	free(o);
}

/* Explicit sizes: honoured when the content fits, a clear error (and no
 * file) when it does not. Auto-size leaves headroom. */
static void test_ext4_sizes(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar", "[{\"path\":\"big\",\"size\":20000000,\"seed\":3}]");
	const char *layers[] = {l1};
	const char *img = rt_path("img.ext4");
	struct rootfs_stats st;
	assert_int_equal(rt_build_ex(ROOTFS_EXT4, img, layers, 1, NULL, 0, 0, &st), 0);
	/* content + 20% (16 MiB minimum) + metadata */
	assert_true(st.image_size >= 20000000 + (16u << 20));
	assert_true(st.image_size < 20000000 + (24u << 20));
	struct stat sb;
	assert_int_equal(stat(img, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, st.image_size);
	int status;
	char *o = rt_runf(&status, "debugfs -R 'stat /big' %s 2>/dev/null", img);
	assert_non_null(strstr(o, "EXTENTS:\n(0-4882):"));  /* one contiguous run */
	free(o);

	/* tunable headroom: +100%, at least 1 MiB */
	struct rootfs_spec hs = {.format = ROOTFS_EXT4, .layers = layers, .n_layers = 1,
				 .headroom_pct = 100, .headroom_min = 1u << 20};
	assert_int_equal(rootfs_build(&hs, img, &st), 0);
	assert_true(st.image_size >= 2 * 20000000ull);
	assert_true(st.image_size < 2 * 20000000ull + (4u << 20));
	rt_check_fs(ROOTFS_EXT4, img);

	assert_int_equal(rt_build_ex(ROOTFS_EXT4, img, layers, 1, NULL, 0, 256u << 20, &st), 0);
	assert_int_equal(st.image_size, 256u << 20);
	rt_check_fs(ROOTFS_EXT4, img);
	o = rt_runf(&status, "dumpe2fs -h %s 2>/dev/null", img);
	assert_non_null(strstr(o, "metadata_csum"));
	assert_non_null(strstr(o, "extent"));
	assert_non_null(strstr(o, "flex_bg"));
	assert_non_null(strstr(o, "Filesystem state:         clean"));
	free(o);

	unlink(img);
	assert_int_not_equal(rt_build_ex(ROOTFS_EXT4, img, layers, 1, NULL, 0, 8u << 20, NULL), 0);
	assert_non_null(strstr(lt_errmsg(), "image size"));
	const char *keep[] = {"l1.tar", "spec.json", NULL};
	rt_expect_dir_only(keep);
}

/* The same inputs give byte-identical images. */
static void test_reproducible(void **state)
{
	(void)state;
	rt_need_tools();
	const char *l1 = rt_layer("l1.tar.gz", "{\"compression\":\"gzip\",\"entries\":["
		"{\"path\":\"a/b\",\"content\":\"x\"},{\"path\":\"c\",\"size\":300000,\"seed\":1},"
		"{\"path\":\"l\",\"type\":\"symlink\",\"target\":\"c\"}]}");
	const char *layers[] = {l1};
	const enum rootfs_format fmts[] = {ROOTFS_EXT4, ROOTFS_SQUASHFS};
	for (size_t i = 0; i < 2; i++) {
		char h1[LT_SHA256_HEX], h2[LT_SHA256_HEX];
		const char *a = rt_path("a.img"), *b = rt_path("b.img");
		assert_int_equal(rt_build(fmts[i], a, layers, 1), 0);
		sleep(1); /* a clock leak would show */
		assert_int_equal(rt_build(fmts[i], b, layers, 1), 0);
		assert_int_equal(lt_sha256_file_hex(a, h1), 0);
		assert_int_equal(lt_sha256_file_hex(b, h2), 0);
		assert_string_equal(h1, h2);
	}
}

/* gzip streams of several members (pigz / concatenated gzip) and with
 * trailing zero padding decode whole. */
static void test_gzip_members(void **state)
{
	(void)state;
	rt_need_tools();
	const char *tar = rt_layer("l.tar", "[{\"path\":\"a\",\"size\":700000,\"seed\":5},"
				   "{\"path\":\"b/c\",\"content\":\"tail\"}]");
	const char *gz = rt_path("multi.tar.gz");
	char *o = rt_runf(NULL, "(head -c 300032 %s | gzip -1; tail -c +300033 %s | gzip -9;"
			  " head -c 1000 /dev/zero) > %s", tar, tar, gz);
	free(o);
	const char *layers[] = {gz};
	rt_build_both_expect(layers, 1,
		"/ d 0755 0:0 " T0 "\n"
		"/a f 0644 0:0 " T0 " 700000 sha256:c90bd60de569a7b6\n"
		"/b d 0755 0:0 " T0 "\n"
		"/b/c f 0644 0:0 " T0 " 4 sha256:0c62f876ef1dea83\n");
}

/* No layers at all: just the injects (and the root). */
static void test_no_layers(void **state)
{
	(void)state;
	rt_need_tools();
	struct rootfs_inject inj[] = {{.path = "/init", .data = "x", .len = 1, .mode = 0700}};
	const enum rootfs_format fmts[] = {ROOTFS_EXT4, ROOTFS_SQUASHFS};
	for (size_t i = 0; i < 2; i++) {
		const char *img = rt_path(i ? "img.sqfs" : "img.ext4");
		assert_int_equal(rt_build_ex(fmts[i], img, NULL, 0, inj, 1, 0, NULL), 0);
		rt_check_fs(fmts[i], img);
		char *l = rt_list(fmts[i], img);
		assert_non_null(strstr(l, "/init f 0700 0:0 "));
		free(l);
	}
}

static void test_format_names(void **state)
{
	(void)state;
	enum rootfs_format f;
	assert_int_equal(rootfs_format_parse("ext4", &f), 0);
	assert_int_equal(f, ROOTFS_EXT4);
	assert_int_equal(rootfs_format_parse("squashfs", &f), 0);
	assert_int_equal(f, ROOTFS_SQUASHFS);
	assert_string_equal(rootfs_format_name(ROOTFS_SQUASHFS), "squashfs");
	assert_int_not_equal(rootfs_format_parse("xfs", &f), 0);
	assert_non_null(strstr(lt_errmsg(), "xfs"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_names),
		cmocka_unit_test_setup_teardown(test_types_and_metadata, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_whiteouts, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_opaque, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_replacement, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_hardlinks, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_sparse, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_injects, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_big_dir_and_long_names, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_ext4_sizes, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_many_inodes, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_reproducible, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_no_layers, rt_setup, rt_teardown),
		cmocka_unit_test_setup_teardown(test_gzip_members, rt_setup, rt_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
