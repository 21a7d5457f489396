/* lttle build: flatten a stored image into an ext4 or squashfs rootfs.
 *
 * The build and its cache live in src/rootfs/oci_build.c (shared with
 * ignitiond's deploy); this file is the command line around it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "oci/oci.h"
#include "rootfs/oci_build.h"
#include "rootfs/rootfs.h"
#include "vmm/guest_abi.h"

struct build_opts {
	const char *ref;
	enum rootfs_format format;
	const char *out;
	uint64_t size;
	bool no_cache, json, quiet;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle build REF [--format ext4|squashfs] [-o PATH] [--size N]\n"
		"                   [--no-cache] [--json] [--quiet]\n\n"
		"Flattens a stored image (see 'lttle pull' / 'lttle import') straight into a\n"
		"filesystem image, with the guest init (lttle-init) and the image config\n"
		"injected at " LT_GUEST_INIT_PATH " and " LT_GUEST_CONFIG_PATH ".\n"
		"Prints the image path as the last line of stdout.\n\n"
		"  -f, --format F   ext4 (default) or squashfs (zstd)\n"
		"  -o, --output P   also write the image to P (atomically)\n"
		"  -s, --size N     ext4 image size (e.g. 512M, 2G); default: content +\n"
		"                   20%% (at least 16 MiB) of headroom\n"
		"      --no-cache   rebuild even if a cached image exists\n"
		"      --json       print {path, format, size, entries, digest, cached}\n"
		"  -q, --quiet      no progress output\n"
		"  -h, --help       this help\n\n"
		"Built images are cached under $LTTLE_HOME/rootfs/, keyed by the manifest\n"
		"digest and the options, next to the runtime config as JSON.\n");
}

static int parse_args(int argc, char **argv, struct build_opts *o)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"output", required_argument, NULL, 'o'},
		{"size", required_argument, NULL, 's'},
		{"no-cache", no_argument, NULL, 'N'},
		{"json", no_argument, NULL, 'j'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;
	opterr = 0; /* one error line: ours */
	while ((c = getopt_long(argc, argv, ":f:o:s:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (rootfs_format_parse(optarg, &o->format) < 0)
				return cli_usage("build", "%s", lt_errmsg());
			break;
		case 'o': o->out = optarg; break;
		case 's':
			if (lt_parse_size(optarg, &o->size) < 0 || o->size == 0)
				return cli_usage("build", "--size: '%s' is not a size", optarg);
			break;
		case 'N': o->no_cache = true; break;
		case 'j': o->json = true; break;
		case 'q': o->quiet = true; break;
		case 'h': usage(stdout); return 1;
		case ':': return cli_usage("build", "%s needs a value", argv[optind - 1]);
		default: return cli_usage("build", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind + 1 != argc)
		return cli_usage("build", "expected exactly one image reference");
	if (o->size && o->format != ROOTFS_EXT4)
		return cli_usage("build", "--size applies to ext4 images only");
	o->ref = argv[optind];
	return 0;
}

/* ---- copying the image out --------------------------------------------- */

/* Copies src to dst keeping holes: a reflink when the filesystem can,
 * else data ranges (SEEK_DATA/SEEK_HOLE) through copy_file_range. */
static int copy_sparse(int in, int out, uint64_t size)
{
	if (ioctl(out, FICLONE, in) == 0)
		return 0;
	off_t pos = 0;
	while ((uint64_t)pos < size) {
		off_t data = lseek(in, pos, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			return lt_fail_errno("cannot seek in the image");
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return lt_fail_errno("cannot seek in the image");
		off_t off_in = data, off_out = data;
		while (off_in < hole) {
			ssize_t n = copy_file_range(in, &off_in, out, &off_out, (size_t)(hole - off_in), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return lt_fail_errno("cannot copy the image");
		}
		pos = hole;
	}
	if (ftruncate(out, (off_t)size) < 0)
		return lt_fail_errno("cannot size the copy");
	return 0;
}

static int write_copy(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return lt_fail_errno("cannot open %s", src);
	struct stat st;
	if (fstat(in, &st) < 0) {
		close(in);
		return lt_fail_errno("cannot stat %s", src);
	}
	struct lt_atomic a;
	if (lt_atomic_open(&a, dst, 0644) < 0) {
		close(in);
		return -1;
	}
	int rc = copy_sparse(in, a.fd, (uint64_t)st.st_size);
	close(in);
	if (rc < 0) {
		lt_fail_ctx("writing %s", dst);
		lt_atomic_abort(&a);
		return -1;
	}
	return lt_atomic_commit(&a);
}

/* ---- the build ---------------------------------------------------- */

static int print_json(const char *path, const struct build_opts *o,
		      const struct rootfs_oci_result *r)
{
	json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:s, s:b}", "path", path, "format",
			      rootfs_format_name(o->format), "size", (json_int_t)r->size, "entries",
			      (json_int_t)r->entries, "digest", r->digest, "cached", r->cached);
	if (!j || json_dumpf(j, stdout, JSON_INDENT(2)) < 0) {
		json_decref(j);
		return lt_fail("cannot format the result");
	}
	json_decref(j);
	putchar('\n');
	return 0;
}

/* The guest init beside the binary (or $LTTLE_LIBEXEC...); NULL, with a
 * warning (even with --quiet), when there is none: the image then boots
 * only with an init of its own. */
static char *find_init(void)
{
	char *init = cli_find_libexec("lttle-init");
	if (!init) {
		fprintf(stderr, "lttle build: warning: the guest init (lttle-init) was not found; "
				"building without it\n");
		lt_clear_error();
	}
	return init;
}

static int run(const struct build_opts *o, struct oci_image *img)
{
	char *init = find_init();
	struct lt_progress *p = lt_progress_new(stderr, o->quiet);
	struct rootfs_oci_opts ro = {
		.root = lt_home(),
		.format = o->format,
		.size = o->size,
		.init_path = init,
		.no_cache = o->no_cache,
		.progress = p,
	};
	struct rootfs_oci_result r;
	uint64_t t0 = lt_now_ns();
	int rc = rootfs_build_oci(img, &ro, &r);
	lt_progress_free(p);
	free(init);
	if (rc < 0)
		return -1;
	if (!o->quiet) {
		char a[16];
		if (r.cached)
			fprintf(stderr, "using the cached %s image of %s\n",
				rootfs_format_name(o->format), o->ref);
		else
			fprintf(stderr, "built %s image: %s, %llu entries in %.2fs\n",
				rootfs_format_name(o->format), lt_human_size(r.size, a, sizeof(a)),
				(unsigned long long)r.entries, (double)(lt_now_ns() - t0) / 1e9);
	}
	const char *shown = r.path;
	rc = 0;
	if (o->json && rootfs_oci_digest(&r, o->format) < 0)
		rc = -1;
	if (rc == 0 && o->out) {
		rc = write_copy(r.path, o->out);
		shown = o->out;
	}
	if (rc == 0 && o->json)
		rc = print_json(shown, o, &r);
	else if (rc == 0 && printf("%s\n", shown) < 0)
		rc = lt_fail_errno("cannot write to stdout");
	rootfs_oci_result_free(&r);
	return rc;
}

int cmd_build(int argc, char **argv)
{
	struct build_opts o = {.format = ROOTFS_EXT4};
	int r = parse_args(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r;
	struct oci_store *s;
	if (oci_store_open(lt_home(), &s) < 0)
		return cli_fail("build");
	struct oci_image *img;
	if (oci_image_load(s, o.ref, &img) < 0) {
		oci_store_close(s);
		return cli_fail("build");
	}
	int rc = run(&o, img);
	oci_image_free(img);
	oci_store_close(s);
	return rc < 0 ? cli_fail("build") : 0;
}
