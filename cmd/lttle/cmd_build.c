/* lttle build: flatten a stored image into an ext4 or squashfs rootfs.
 *
 * Cache: $LTTLE_HOME/rootfs/<manifest-hex>-<options-hash>.<fmt>, beside
 *   <same>.json        the runtime config (also inside the image at
 *                      LT_GUEST_CONFIG_PATH) for the guest init
 *   <same>.build.json  {"format","size","entries","digest"} of the image
 * The options hash covers the format, --size, the guest init's content,
 * the runtime config and the rootfs writer version, so a change to any
 * of them builds a new image. The three files are written in that order
 * and an entry counts as cached only when all three exist.
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
#include "rootfs/rootfs.h"
#include "vmm/guest_abi.h"

/* Bump when the writers' output changes for the same input. */
#define ROOTFS_WRITER_VERSION "lttle-rootfs-1"

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
	while ((c = getopt_long(argc, argv, "f:o:s:qh", opts, NULL)) != -1) {
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
		default: return cli_usage("build", "invalid option");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("build", "expected exactly one image reference");
	if (o->size && o->format != ROOTFS_EXT4)
		return cli_usage("build", "--size applies to ext4 images only");
	o->ref = argv[optind];
	return 0;
}

/* ---- cache key -------------------------------------------------------- */

static char *cache_base(const struct oci_image *img, const struct build_opts *o,
			const char *init_hex, const char *config)
{
	char cfg_hex[LT_SHA256_HEX], key_hex[LT_SHA256_HEX];
	if (lt_sha256_hex(config, strlen(config), cfg_hex) < 0)
		return NULL;
	const char *level = getenv("LTTLE_SQUASHFS_LEVEL");
	char *key = lt_sprintf("%s\nformat=%s\nsize=%llu\ninit=%s\nconfig=%s\nlevel=%s\n",
			       ROOTFS_WRITER_VERSION, rootfs_format_name(o->format),
			       (unsigned long long)o->size, init_hex ? init_hex : "none", cfg_hex,
			       level ? level : "");
	if (!key || lt_sha256_hex(key, strlen(key), key_hex) < 0) {
		free(key);
		return NULL;
	}
	free(key);
	const char *mhex = strchr(img->manifest_digest, ':');
	mhex = mhex ? mhex + 1 : img->manifest_digest;
	return lt_sprintf("%s/rootfs/%s-%.12s", lt_home(), mhex, key_hex);
}

/* ---- build info ------------------------------------------------------- */

struct info {
	uint64_t size, entries;
	char digest[80];
};

static int info_load(const char *path, struct info *in)
{
	json_error_t jerr;
	json_t *j = json_load_file(path, 0, &jerr);
	if (!j)
		return -1;
	json_t *size = json_object_get(j, "size"), *entries = json_object_get(j, "entries");
	json_t *digest = json_object_get(j, "digest");
	int rc = -1;
	if (json_is_integer(size) && json_is_integer(entries)) {
		in->size = (uint64_t)json_integer_value(size);
		in->entries = (uint64_t)json_integer_value(entries);
		snprintf(in->digest, sizeof(in->digest), "%s",
			 json_is_string(digest) ? json_string_value(digest) : "");
		rc = 0;
	}
	json_decref(j);
	return rc;
}

static int info_save(const char *path, const struct info *in, enum rootfs_format f)
{
	json_t *j = json_pack("{s:s, s:I, s:I, s:s}", "format", rootfs_format_name(f), "size",
			      (json_int_t)in->size, "entries", (json_int_t)in->entries, "digest",
			      in->digest);
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!s)
		return lt_fail("cannot format %s", path);
	int rc = lt_write_file_atomic(path, s, strlen(s), 0644);
	free(s);
	return rc;
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

/* ---- the build -------------------------------------------------------- */

static char *runtime_config(const struct oci_image *img)
{
	json_t *rc = oci_image_runtime_config(img);
	if (!rc)
		return NULL;
	char *s = json_dumps(rc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(rc);
	char *out = s ? lt_sprintf("%s\n", s) : NULL;
	free(s);
	if (!out)
		lt_fail("cannot format the runtime config");
	return out;
}

static int build_image(const struct build_opts *o, const struct oci_image *img,
		       const char *init, const char *config, const char *path, struct info *info)
{
	const char **layers = lt_calloc(img->n_layers + 1, sizeof(*layers));
	if (!layers)
		return -1;
	for (size_t i = 0; i < img->n_layers; i++)
		layers[i] = img->layers[i].path;
	struct rootfs_inject inj[2] = {
		{.path = LT_GUEST_CONFIG_PATH, .data = config, .len = strlen(config), .mode = 0644},
		{.path = LT_GUEST_INIT_PATH, .src_path = init, .mode = 0755},
	};
	struct lt_progress *p = lt_progress_new(stderr, o->quiet);
	struct rootfs_spec spec = {
		.format = o->format,
		.layers = layers,
		.n_layers = img->n_layers,
		.injects = inj,
		.n_injects = init ? 2 : 1,
		.size = o->size,
		.progress = p,
	};
	struct rootfs_stats st;
	uint64_t t0 = lt_now_ns();
	int rc = rootfs_build(&spec, path, &st);
	lt_progress_free(p);
	free(layers);
	if (rc < 0)
		return lt_fail_ctx("building %s", o->ref);
	info->size = st.image_size;
	info->entries = st.entries;
	info->digest[0] = '\0';
	if (!o->quiet) {
		char a[16], b[16];
		fprintf(stderr, "built %s image: %s, %llu entries, %s of file data in %.2fs\n",
			rootfs_format_name(o->format), lt_human_size(st.image_size, a, sizeof(a)),
			(unsigned long long)st.entries, lt_human_size(st.bytes, b, sizeof(b)),
			(double)(lt_now_ns() - t0) / 1e9);
	}
	return 0;
}

static int print_json(const char *path, const struct build_opts *o, const struct info *in,
		      bool cached)
{
	json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:s, s:b}", "path", path, "format",
			      rootfs_format_name(o->format), "size", (json_int_t)in->size, "entries",
			      (json_int_t)in->entries, "digest", in->digest, "cached", cached);
	if (!j || json_dumpf(j, stdout, JSON_INDENT(2)) < 0) {
		json_decref(j);
		return lt_fail("cannot format the result");
	}
	json_decref(j);
	putchar('\n');
	return 0;
}

static char *find_init(bool quiet, char hex[LT_SHA256_HEX])
{
	char *init = cli_find_libexec("lttle-init");
	if (!init) {
		if (!quiet)
			fprintf(stderr, "lttle build: warning: the guest init (lttle-init) was not "
					"found; building without it\n");
		lt_clear_error();
		return NULL;
	}
	if (lt_sha256_file_hex(init, hex) < 0) {
		free(init);
		return NULL;
	}
	return init;
}

static int run(const struct build_opts *o, struct oci_image *img)
{
	char init_hex[LT_SHA256_HEX];
	char *init = find_init(o->quiet, init_hex);
	char *config = runtime_config(img);
	char *base = config ? cache_base(img, o, init ? init_hex : NULL, config) : NULL;
	char *path = base ? lt_sprintf("%s.%s", base, rootfs_format_name(o->format)) : NULL;
	char *cfg_path = base ? lt_sprintf("%s.json", base) : NULL;
	char *info_path = base ? lt_sprintf("%s.build.json", base) : NULL;
	char *dir = lt_path_join(lt_home(), "rootfs");
	int rc = -1;
	struct info info = {0};
	bool cached = false;
	if (!config || !path || !cfg_path || !info_path || !dir || lt_mkdir_p(dir, 0755) < 0)
		goto out;
	cached = !o->no_cache && lt_path_exists(path) && lt_path_exists(cfg_path) &&
		 info_load(info_path, &info) == 0;
	if (cached) {
		if (!o->quiet)
			fprintf(stderr, "using the cached %s image of %s\n",
				rootfs_format_name(o->format), o->ref);
	} else {
		if (build_image(o, img, init, config, path, &info) < 0 ||
		    lt_write_file_atomic(cfg_path, config, strlen(config), 0644) < 0 ||
		    info_save(info_path, &info, o->format) < 0)
			goto out;
	}
	if (o->json && !info.digest[0]) {
		char hex[LT_SHA256_HEX];
		if (lt_sha256_file_hex(path, hex) < 0)
			goto out;
		snprintf(info.digest, sizeof(info.digest), "sha256:%s", hex);
		if (info_save(info_path, &info, o->format) < 0)
			goto out;
	}
	const char *shown = path;
	if (o->out) {
		if (write_copy(path, o->out) < 0)
			goto out;
		shown = o->out;
	}
	if (o->json)
		rc = print_json(shown, o, &info, cached);
	else
		rc = printf("%s\n", shown) < 0 ? lt_fail_errno("cannot write to stdout") : 0;
out:
	free(init);
	free(config);
	free(base);
	free(path);
	free(cfg_path);
	free(info_path);
	free(dir);
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
