/* rootfs_build_oci: see oci_build.h. */
#include "rootfs/oci_build.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/guest_abi.h"

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

static char *cache_base(const struct oci_image *img, const struct rootfs_oci_opts *o,
			const char *init_hex, const char *config)
{
	char cfg_hex[LT_SHA256_HEX], key_hex[LT_SHA256_HEX];
	if (lt_sha256_hex(config, strlen(config), cfg_hex) < 0)
		return NULL;
	const char *level = getenv("LTTLE_SQUASHFS_LEVEL");
	char *key = lt_sprintf("%s\nformat=%s\nsize=%llu\ninit=%s\nconfig=%s\nlevel=%s\n",
			       ROOTFS_OCI_WRITER_VERSION, rootfs_format_name(o->format),
			       (unsigned long long)o->size, init_hex ? init_hex : "none", cfg_hex,
			       level ? level : "");
	if (!key || lt_sha256_hex(key, strlen(key), key_hex) < 0) {
		free(key);
		return NULL;
	}
	free(key);
	const char *mhex = strchr(img->manifest_digest, ':');
	mhex = mhex ? mhex + 1 : img->manifest_digest;
	return lt_sprintf("%s/rootfs/%s-%.12s", o->root, mhex, key_hex);
}

static int info_load(const char *path, struct rootfs_oci_result *r)
{
	json_error_t jerr;
	json_t *j = json_load_file(path, 0, &jerr);
	if (!j)
		return -1;
	json_t *size = json_object_get(j, "size"), *entries = json_object_get(j, "entries");
	json_t *digest = json_object_get(j, "digest");
	int rc = -1;
	if (json_is_integer(size) && json_is_integer(entries)) {
		r->size = (uint64_t)json_integer_value(size);
		r->entries = (uint64_t)json_integer_value(entries);
		snprintf(r->digest, sizeof(r->digest), "%s",
			 json_is_string(digest) ? json_string_value(digest) : "");
		rc = 0;
	}
	json_decref(j);
	return rc;
}

static int info_save(const char *path, const struct rootfs_oci_result *r, enum rootfs_format f)
{
	json_t *j = json_pack("{s:s, s:I, s:I, s:s}", "format", rootfs_format_name(f), "size",
			      (json_int_t)r->size, "entries", (json_int_t)r->entries, "digest", r->digest);
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!s)
		return lt_fail("cannot format %s", path);
	int rc = lt_write_file_atomic(path, s, strlen(s), 0644);
	free(s);
	return rc;
}

static int build(const struct oci_image *img, const struct rootfs_oci_opts *o,
		 const char *config, struct rootfs_oci_result *r)
{
	const char **layers = lt_calloc(img->n_layers + 1, sizeof(*layers));
	if (!layers)
		return -1;
	for (size_t i = 0; i < img->n_layers; i++)
		layers[i] = img->layers[i].path;
	struct rootfs_inject inj[2] = {
		{.path = LT_GUEST_CONFIG_PATH, .data = config, .len = strlen(config), .mode = 0644},
		{.path = LT_GUEST_INIT_PATH, .src_path = o->init_path, .mode = 0755},
	};
	struct rootfs_spec spec = {
		.format = o->format,
		.layers = layers,
		.n_layers = img->n_layers,
		.injects = inj,
		.n_injects = o->init_path ? 2 : 1,
		.size = o->size,
		.progress = o->progress,
	};
	struct rootfs_stats st;
	int rc = rootfs_build(&spec, r->path, &st);
	free(layers);
	if (rc < 0)
		return lt_fail_ctx("building %s", img->ref ? img->ref : img->manifest_digest);
	r->size = st.image_size;
	r->entries = st.entries;
	return 0;
}

int rootfs_build_oci(const struct oci_image *img, const struct rootfs_oci_opts *o,
		     struct rootfs_oci_result *res)
{
	memset(res, 0, sizeof(*res));
	char init_hex[LT_SHA256_HEX];
	if (o->init_path && lt_sha256_file_hex(o->init_path, init_hex) < 0)
		return -1;
	char *config = runtime_config(img);
	char *base = config ? cache_base(img, o, o->init_path ? init_hex : NULL, config) : NULL;
	char *dir = lt_path_join(o->root, "rootfs");
	int rc = -1;
	if (base) {
		res->path = lt_sprintf("%s.%s", base, rootfs_format_name(o->format));
		res->config_path = lt_sprintf("%s.json", base);
		res->info_path = lt_sprintf("%s.build.json", base);
	}
	if (!config || !res->path || !res->config_path || !res->info_path || !dir ||
	    lt_mkdir_p(dir, 0755) < 0)
		goto out;
	res->cached = !o->no_cache && lt_path_exists(res->path) &&
		      lt_path_exists(res->config_path) && info_load(res->info_path, res) == 0;
	if (res->cached) {
		rc = 0;
		goto out;
	}
	res->digest[0] = '\0';
	if (build(img, o, config, res) < 0 ||
	    lt_write_file_atomic(res->config_path, config, strlen(config), 0644) < 0 ||
	    info_save(res->info_path, res, o->format) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		rootfs_oci_result_free(res);
	free(config);
	free(base);
	free(dir);
	return rc;
}

int rootfs_oci_digest(struct rootfs_oci_result *res, enum rootfs_format f)
{
	if (res->digest[0])
		return 0;
	char hex[LT_SHA256_HEX];
	if (lt_sha256_file_hex(res->path, hex) < 0)
		return -1;
	snprintf(res->digest, sizeof(res->digest), "sha256:%s", hex);
	/* Best effort: a later --json on the cached image skips the hash. */
	if (res->info_path && info_save(res->info_path, res, f) < 0)
		lt_clear_error();
	return 0;
}

void rootfs_oci_result_free(struct rootfs_oci_result *res)
{
	free(res->path);
	free(res->config_path);
	free(res->info_path);
	res->path = res->config_path = res->info_path = NULL;
}
