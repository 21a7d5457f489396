/* The content-addressed store: verified puts, refs, resolve, list, GC, and
 * loading an image with its runtime config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oci/internal.h"

struct fx {
	char root[64];
	struct oci_store *s;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	strcpy(f->root, "/tmp/lttle-oci-store.XXXXXX");
	if (!mkdtemp(f->root) || oci_store_open(f->root, &f->s) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	oci_store_close(f->s);
	lt_rm_rf(f->root);
	free(f);
	return 0;
}

static void digest_of(const char *data, size_t n, char out[OCI_DIGEST_MAX])
{
	char hex[LT_SHA256_HEX];
	assert_int_equal(lt_sha256_hex(data, n, hex), 0);
	snprintf(out, OCI_DIGEST_MAX, "sha256:%s", hex);
}

static size_t count_files(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	struct dirent *de;
	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static size_t blob_count(struct fx *f)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/blobs/sha256", f->root);
	return count_files(p);
}

static size_t tmp_count(struct fx *f)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/tmp", f->root);
	return count_files(p);
}

static void test_put_verified(void **state)
{
	struct fx *f = *state;
	char want[OCI_DIGEST_MAX], got[OCI_DIGEST_MAX];
	digest_of("hello", 5, want);
	assert_int_equal(oci_store_put(f->s, "hello", 5, want, got), 0);
	assert_string_equal(got, want);
	assert_true(oci_store_has_blob(f->s, want));
	assert_true(oci_store_has_blob_sized(f->s, want, 5));
	assert_false(oci_store_has_blob_sized(f->s, want, 6));
	char *path = oci_store_blob_path(f->s, want);
	char expect[256];
	snprintf(expect, sizeof(expect), "%s/blobs/sha256/%s", f->root, want + 7);
	assert_string_equal(path, expect);
	free(path);
	/* Putting it again is a no-op that still verifies the bytes. */
	assert_int_equal(oci_store_put(f->s, "hello", 5, want, NULL), 0);
	assert_int_equal(oci_store_put(f->s, "hellO", 5, want, NULL), -1);
	assert_non_null(strstr(lt_errmsg(), "digest mismatch"));
	/* Wrong content: nothing stored under either name, no temp left. */
	char other[OCI_DIGEST_MAX];
	digest_of("world", 5, other);
	assert_int_equal(oci_store_put(f->s, "w0rld", 5, other, NULL), -1);
	assert_non_null(strstr(lt_errmsg(), "digest mismatch"));
	assert_false(oci_store_has_blob(f->s, other));
	assert_int_equal(blob_count(f), 1);
	assert_int_equal(tmp_count(f), 0);
	/* No expectation: stored under its computed digest. */
	assert_int_equal(oci_store_put(f->s, "world", 5, NULL, got), 0);
	assert_string_equal(got, other);
	assert_null(oci_store_blob_path(f->s, "sha256:../../etc/passwd"));
	assert_false(oci_store_has_blob(f->s, "md5:abc"));
}

static void test_writer_bounds(void **state)
{
	struct fx *f = *state;
	struct oci_blob_writer *w;
	char want[OCI_DIGEST_MAX];
	digest_of("abcdef", 6, want);
	/* Larger than the limit: refused mid-stream. */
	assert_int_equal(oci_blob_begin(f->s, 4, &w), 0);
	assert_int_equal(oci_blob_write(w, "abc", 3), 0);
	assert_int_equal(oci_blob_write(w, "def", 3), -1);
	assert_non_null(strstr(lt_errmsg(), "larger than expected"));
	oci_blob_abort(w);
	/* Short: size mismatch, nothing placed. */
	assert_int_equal(oci_blob_begin(f->s, 6, &w), 0);
	assert_int_equal(oci_blob_write(w, "abc", 3), 0);
	assert_int_equal(oci_blob_commit(w, want, 6, NULL), -1);
	assert_non_null(strstr(lt_errmsg(), "size mismatch"));
	assert_false(oci_store_has_blob(f->s, want));
	/* Reset restarts the hash (a retried download). */
	assert_int_equal(oci_blob_begin(f->s, 6, &w), 0);
	assert_int_equal(oci_blob_write(w, "xyz", 3), 0);
	assert_int_equal(oci_blob_reset(w), 0);
	assert_int_equal(oci_blob_written(w), 0);
	assert_int_equal(oci_blob_write(w, "abcdef", 6), 0);
	assert_int_equal(oci_blob_commit(w, want, 6, NULL), 0);
	assert_true(oci_store_has_blob_sized(f->s, want, 6));
	/* Sealed writers keep their temp file until commit or abort. */
	assert_int_equal(oci_blob_begin(f->s, 0, &w), 0);
	assert_int_equal(oci_blob_write(w, "q", 1), 0);
	char d[OCI_DIGEST_MAX];
	assert_int_equal(oci_blob_seal(w, d), 0);
	assert_true(lt_path_exists(oci_blob_tmp_path(w)));
	assert_int_equal(oci_blob_write(w, "q", 1), -1);
	oci_blob_abort(w);
	assert_int_equal(tmp_count(f), 0);
}

static void test_read_blob_detects_corruption(void **state)
{
	struct fx *f = *state;
	char d[OCI_DIGEST_MAX];
	assert_int_equal(oci_store_put(f->s, "{\"a\":1}", 7, NULL, d), 0);
	char *data;
	size_t n;
	assert_int_equal(oci_store_read_blob(f->s, d, 100, &data, &n), 0);
	assert_int_equal(n, 7);
	free(data);
	assert_int_equal(oci_store_read_blob(f->s, d, 3, &data, &n), -1);
	char *p = oci_store_blob_path(f->s, d);
	assert_int_equal(lt_write_file_atomic(p, "{\"a\":2}", 7, 0644), 0);
	free(p);
	assert_int_equal(oci_store_read_blob(f->s, d, 100, &data, &n), -1);
	assert_non_null(strstr(lt_errmsg(), "corrupt"));
}

/* Stores a tiny image (config + two layers + manifest); returns the
 * manifest digest. */
static void put_image(struct fx *f, const char *tag, const char *salt, char md[OCI_DIGEST_MAX])
{
	char cfg[512], l1[64], l2[64], d_cfg[OCI_DIGEST_MAX], d1[OCI_DIGEST_MAX],
		d2[OCI_DIGEST_MAX];
	snprintf(cfg, sizeof(cfg),
		 "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"A=%s\"],"
		 "\"Entrypoint\":[\"/bin/app\"],\"Cmd\":[\"serve\",\"-v\"],\"WorkingDir\":\"/srv\","
		 "\"User\":\"1000:1000\",\"ExposedPorts\":{\"8080/tcp\":{},\"53/udp\":{},"
		 "\"8080/udp\":{},\"bogus\":{}}}}",
		 salt);
	snprintf(l1, sizeof(l1), "layer-one-%s", salt);
	snprintf(l2, sizeof(l2), "shared-layer");
	assert_int_equal(oci_store_put(f->s, cfg, strlen(cfg), NULL, d_cfg), 0);
	assert_int_equal(oci_store_put(f->s, l1, strlen(l1), NULL, d1), 0);
	assert_int_equal(oci_store_put(f->s, l2, strlen(l2), NULL, d2), 0);
	char man[1024];
	snprintf(man, sizeof(man),
		 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
		 "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":"
		 "\"%s\",\"size\":%zu},{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}]}",
		 MT_OCI_MANIFEST, MT_OCI_CONFIG, d_cfg, strlen(cfg), MT_OCI_LAYER_GZIP, d1,
		 strlen(l1), MT_OCI_LAYER_ZSTD, d2, strlen(l2));
	assert_int_equal(oci_store_put(f->s, man, strlen(man), NULL, md), 0);
	if (tag)
		assert_int_equal(oci_store_tag(f->s, tag, md), 0);
}

static void test_refs_and_resolve(void **state)
{
	struct fx *f = *state;
	char a[OCI_DIGEST_MAX], b[OCI_DIGEST_MAX], got[OCI_DIGEST_MAX];
	put_image(f, "docker.io/library/app:v1", "a", a);
	put_image(f, "127.0.0.1:5000/team/app:v2", "b", b);
	/* As typed by a user, normalised. */
	assert_int_equal(oci_store_resolve(f->s, "app:v1", got), 0);
	assert_string_equal(got, a);
	assert_int_equal(oci_store_resolve(f->s, "docker.io/app:v1", got), 0);
	assert_int_equal(oci_store_resolve(f->s, "127.0.0.1:5000/team/app:v2", got), 0);
	assert_string_equal(got, b);
	/* Full digests and unique prefixes (with or without sha256:). */
	assert_int_equal(oci_store_resolve(f->s, a, got), 0);
	assert_string_equal(got, a);
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "%.12s", b + 7);
	assert_int_equal(oci_store_resolve(f->s, prefix, got), 0);
	assert_string_equal(got, b);
	snprintf(prefix, sizeof(prefix), "sha256:%.14s", a + 7);
	assert_int_equal(oci_store_resolve(f->s, prefix, got), 0);
	assert_string_equal(got, a);
	snprintf(prefix, sizeof(prefix), "sha256:%.8s", a + 7);
	assert_int_equal(oci_store_resolve(f->s, prefix, got), -1);
	assert_non_null(strstr(lt_errmsg(), "too short"));
	/* Misses name the input. */
	assert_int_equal(oci_store_resolve(f->s, "app:v3", got), -1);
	assert_non_null(strstr(lt_errmsg(), "app:v3"));
	assert_int_equal(oci_store_resolve(f->s, "0000000000000000", got), -1);
	/* Ref files live under refs/<registry>/<repo>/_tags/<tag>. */
	char p[256];
	snprintf(p, sizeof(p), "%s/refs/127.0.0.1:5000/team/app/_tags/v2", f->root);
	assert_true(lt_path_exists(p));
	/* A digest ref. */
	char dref[200];
	snprintf(dref, sizeof(dref), "127.0.0.1:5000/team/app@%s", b);
	assert_int_equal(oci_store_tag(f->s, dref, b), 0);
	assert_int_equal(oci_store_resolve(f->s, dref, got), 0);
	assert_string_equal(got, b);
	/* Tagging refuses manifests whose blobs are missing. */
	char orphan[OCI_DIGEST_MAX];
	const char *man = "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":"
			  "{\"mediaType\":\"" MT_OCI_CONFIG "\",\"digest\":\"sha256:"
			  "9999999999999999999999999999999999999999999999999999999999999999\","
			  "\"size\":3},\"layers\":[]}";
	assert_int_equal(oci_store_put(f->s, man, strlen(man), NULL, orphan), 0);
	assert_int_equal(oci_store_tag(f->s, "x:1", orphan), -1);
	assert_non_null(strstr(lt_errmsg(), "missing"));
	assert_int_equal(oci_store_resolve(f->s, "x:1", got), -1);
}

static void test_ambiguous_prefix(void **state)
{
	struct fx *f = *state;
	char d[OCI_DIGEST_MAX], got[OCI_DIGEST_MAX];
	/* Two refs whose digests share a prefix cannot be made on demand, so
	 * write ref files by hand. */
	const char *d1 = "sha256:abcdef0123451111111111111111111111111111111111111111111111111111";
	const char *d2 = "sha256:abcdef0123452222222222222222222222222222222222222222222222222222";
	assert_int_equal(oci_store_set_ref(f->s, "docker.io/library/one:latest", d1), 0);
	assert_int_equal(oci_store_set_ref(f->s, "docker.io/library/two:latest", d2), 0);
	assert_int_equal(oci_store_resolve(f->s, "abcdef012345", got), -1);
	assert_non_null(strstr(lt_errmsg(), "ambiguous"));
	assert_int_equal(oci_store_resolve(f->s, "abcdef0123451", got), 0);
	assert_string_equal(got, d1);
	(void)d;
}

static void test_list_and_gc(void **state)
{
	struct fx *f = *state;
	char a[OCI_DIGEST_MAX], b[OCI_DIGEST_MAX];
	put_image(f, "docker.io/library/app:v1", "a", a);
	put_image(f, "docker.io/library/app:v2", "b", b);
	assert_int_equal(oci_store_tag(f->s, "docker.io/library/alias:1", a), 0);
	/* 2 images x (config + own layer + manifest) + 1 shared layer. */
	assert_int_equal(blob_count(f), 7);
	struct oci_image_info *v;
	size_t n;
	assert_int_equal(oci_store_list(f->s, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].ref, "docker.io/library/alias:1");
	assert_string_equal(v[1].ref, "docker.io/library/app:v1");
	assert_string_equal(v[2].ref, "docker.io/library/app:v2");
	assert_string_equal(v[0].digest, a);
	assert_true(v[0].size > 100);
	assert_true(v[0].created > 1600000000);
	oci_image_info_free(v, n);
	/* An unreferenced blob and a stale temp file are collected. */
	char junk[OCI_DIGEST_MAX];
	assert_int_equal(oci_store_put(f->s, "junk!", 5, NULL, junk), 0);
	char tmp[128];
	snprintf(tmp, sizeof(tmp), "%s/tmp/blob-stale", f->root);
	assert_int_equal(lt_write_file_atomic(tmp, "xx", 2, 0644), 0);
	uint64_t freed = 0;
	assert_int_equal(oci_store_gc(f->s, &freed), 0);
	assert_int_equal(freed, 7);
	assert_false(oci_store_has_blob(f->s, junk));
	assert_int_equal(tmp_count(f), 0);
	assert_int_equal(blob_count(f), 7);
	/* Removing one of two refs of an image frees nothing. */
	assert_int_equal(oci_store_remove(f->s, "alias:1", &freed), 0);
	assert_int_equal(freed, 0);
	assert_int_equal(blob_count(f), 7);
	/* Removing app:v1 frees its own blobs but keeps the shared layer. */
	assert_int_equal(oci_store_remove(f->s, "app:v1", &freed), 0);
	assert_true(freed > 0);
	assert_int_equal(blob_count(f), 4);
	assert_false(oci_store_has_blob(f->s, a));
	assert_true(oci_store_has_blob(f->s, b));
	char got[OCI_DIGEST_MAX];
	assert_int_equal(oci_store_resolve(f->s, "app:v2", got), 0);
	/* Empty ref directories are pruned. */
	char p[256];
	snprintf(p, sizeof(p), "%s/refs/docker.io/library/alias", f->root);
	assert_false(lt_path_exists(p));
	/* Removing by digest prefix. */
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "%.12s", b + 7);
	assert_int_equal(oci_store_remove(f->s, prefix, &freed), 0);
	assert_int_equal(blob_count(f), 0);
	assert_int_equal(oci_store_list(f->s, &v, &n), 0);
	assert_int_equal(n, 0);
	oci_image_info_free(v, n);
	assert_int_equal(oci_store_remove(f->s, "app:v2", &freed), -1);
	assert_non_null(strstr(lt_errmsg(), "no image"));
}

static void test_remove_digest_with_two_refs(void **state)
{
	struct fx *f = *state;
	char a[OCI_DIGEST_MAX];
	uint64_t freed;
	put_image(f, "docker.io/library/app:v1", "a", a);
	assert_int_equal(oci_store_tag(f->s, "docker.io/library/app:latest", a), 0);
	assert_int_equal(oci_store_remove(f->s, a, &freed), -1);
	assert_non_null(strstr(lt_errmsg(), "several refs"));
	assert_true(oci_store_has_blob(f->s, a));
}

static void test_gc_keeps_index_children(void **state)
{
	struct fx *f = *state;
	char a[OCI_DIGEST_MAX], idx[OCI_DIGEST_MAX];
	put_image(f, NULL, "a", a);
	char text[512];
	snprintf(text, sizeof(text),
		 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
		 "\"digest\":\"%s\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":"
		 "\"amd64\"}}]}",
		 MT_OCI_INDEX, MT_OCI_MANIFEST, a);
	assert_int_equal(oci_store_put(f->s, text, strlen(text), NULL, idx), 0);
	assert_int_equal(oci_store_set_ref(f->s, "docker.io/library/multi:1", idx), 0);
	uint64_t freed;
	assert_int_equal(oci_store_gc(f->s, &freed), 0);
	assert_int_equal(freed, 0);
	assert_int_equal(blob_count(f), 5);
}

static void test_image_load(void **state)
{
	struct fx *f = *state;
	char a[OCI_DIGEST_MAX];
	put_image(f, "docker.io/library/app:v1", "a", a);
	struct oci_image *img;
	assert_int_equal(oci_image_load(f->s, "app:v1", &img), 0);
	assert_string_equal(img->ref, "docker.io/library/app:v1");
	assert_string_equal(img->manifest_digest, a);
	assert_int_equal(img->n_layers, 2);
	assert_int_equal(img->layers[0].compression, OCI_COMP_GZIP);
	assert_int_equal(img->layers[1].compression, OCI_COMP_ZSTD);
	assert_true(lt_path_exists(img->layers[1].path));
	json_t *rt = oci_image_runtime_config(img);
	assert_non_null(rt);
	char *s = json_dumps(rt, JSON_COMPACT | JSON_SORT_KEYS);
	char want[512];
	snprintf(want, sizeof(want),
		 "{\"cmd\":[\"serve\",\"-v\"],\"digest\":\"%s\",\"entrypoint\":[\"/bin/app\"],"
		 "\"env\":[\"A=a\"],\"exposed_ports\":[53,8080],\"ref\":\"docker.io/library/app:v1\","
		 "\"user\":\"1000:1000\",\"workdir\":\"/srv\"}",
		 a);
	assert_string_equal(s, want);
	free(s);
	json_decref(rt);
	oci_image_free(img);
	/* By digest prefix, the ref is still found. */
	char prefix[20];
	snprintf(prefix, sizeof(prefix), "%.12s", a + 7);
	assert_int_equal(oci_image_load(f->s, prefix, &img), 0);
	assert_string_equal(img->ref, "docker.io/library/app:v1");
	oci_image_free(img);
	/* A missing layer is reported, not half-loaded. */
	struct oci_manifest m;
	assert_int_equal(oci_store_read_manifest(f->s, a, &m), 0);
	char *p = oci_store_blob_path(f->s, m.layers[0].digest);
	assert_int_equal(unlink(p), 0);
	free(p);
	assert_int_equal(oci_image_load(f->s, "app:v1", &img), -1);
	assert_non_null(strstr(lt_errmsg(), m.layers[0].digest));
	oci_manifest_free(&m);
}

static void test_runtime_config_empty(void **state)
{
	(void)state;
	struct oci_image img = {0};
	strcpy(img.manifest_digest, "sha256:0");
	img.config = json_pack("{s:s}", "os", "linux");
	json_t *rt = oci_image_runtime_config(&img);
	char *s = json_dumps(rt, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"cmd\":[],\"digest\":\"sha256:0\",\"entrypoint\":[],\"env\":[],"
			       "\"exposed_ports\":[],\"ref\":null,\"user\":\"\",\"workdir\":\"\"}");
	free(s);
	json_decref(rt);
	json_decref(img.config);
}

int main(void)
{
	lt_log_set_level(LT_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_verified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_blob_detects_corruption, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refs_and_resolve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ambiguous_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_and_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_digest_with_two_refs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc_keeps_index_children, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_load, setup, teardown),
		cmocka_unit_test(test_runtime_config_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
