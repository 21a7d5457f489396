/* Manifest and index parsing, validation and platform selection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"

#define CFG(mt) "{\"mediaType\":\"" mt "\",\"digest\":\"" D1 "\",\"size\":100}"
#define LAYER(mt, d, sz) "{\"mediaType\":\"" mt "\",\"digest\":\"" d "\",\"size\":" #sz "}"

static const char oci_manifest[] =
	"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":" CFG(MT_OCI_CONFIG)
	",\"layers\":[" LAYER(MT_OCI_LAYER_GZIP, D2, 10) "," LAYER(MT_OCI_LAYER_ZSTD, D3, 20) ","
	LAYER(MT_OCI_LAYER, D4, 30) "]}";

static const char docker_manifest[] =
	"{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"config\":"
	CFG(MT_DOCKER_CONFIG) ",\"layers\":[" LAYER(MT_DOCKER_LAYER_GZIP, D2, 10) "]}";

#define ENTRY(mt, d, os, arch, variant)                                                     \
	"{\"mediaType\":\"" mt "\",\"digest\":\"" d "\",\"size\":50,\"platform\":{\"os\":\"" os \
	"\",\"architecture\":\"" arch "\"" variant "}}"

static const char oci_index[] =
	"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":["
	ENTRY(MT_OCI_MANIFEST, D1, "linux", "arm64", ",\"variant\":\"v8\"") ","
	ENTRY(MT_OCI_MANIFEST, D2, "linux", "amd64", "") ","
	ENTRY(MT_OCI_MANIFEST, D3, "linux", "arm", ",\"variant\":\"v6\"") ","
	ENTRY(MT_OCI_MANIFEST, D4, "unknown", "unknown", "") "]}";

static int parse(const char *json, const char *ct, struct oci_manifest *m)
{
	return oci_manifest_parse(json, strlen(json), ct, m);
}

static void expect_reject(const char *json, const char *ct, const char *msg_part)
{
	struct oci_manifest m;
	if (parse(json, ct, &m) == 0) {
		oci_manifest_free(&m);
		fail_msg("accepted: %s", json);
	}
	if (msg_part && !strstr(lt_errmsg(), msg_part))
		fail_msg("message '%s' lacks '%s' (input %s)", lt_errmsg(), msg_part, json);
}

/* The manifest with one substring replaced. */
static char *edit(const char *base, const char *from, const char *to)
{
	const char *at = strstr(base, from);
	assert_non_null(at);
	char *out = malloc(strlen(base) + strlen(to) + 1);
	size_t pre = (size_t)(at - base);
	memcpy(out, base, pre);
	strcpy(out + pre, to);
	strcat(out, at + strlen(from));
	return out;
}

static void expect_edit_rejected(const char *from, const char *to, const char *msg)
{
	char *j = edit(oci_manifest, from, to);
	expect_reject(j, NULL, msg);
	free(j);
}

static void test_oci_manifest(void **state)
{
	(void)state;
	struct oci_manifest m;
	assert_int_equal(parse(oci_manifest, MT_OCI_MANIFEST, &m), 0);
	assert_int_equal(m.kind, OCI_KIND_MANIFEST);
	assert_string_equal(m.media_type, MT_OCI_MANIFEST);
	assert_string_equal(m.config.digest, D1);
	assert_int_equal(m.config.size, 100);
	assert_int_equal(m.n_layers, 3);
	assert_string_equal(m.layers[1].digest, D3);
	assert_int_equal(m.layers[2].size, 30);
	assert_int_equal(oci_manifest_check_image(&m), 0);
	enum oci_compression c;
	assert_int_equal(oci_layer_compression(m.layers[0].media_type, &c), 0);
	assert_int_equal(c, OCI_COMP_GZIP);
	assert_int_equal(oci_layer_compression(m.layers[1].media_type, &c), 0);
	assert_int_equal(c, OCI_COMP_ZSTD);
	assert_int_equal(oci_layer_compression(m.layers[2].media_type, &c), 0);
	assert_int_equal(c, OCI_COMP_NONE);
	oci_manifest_free(&m);
	/* Content-Type parameters and generic JSON types are fine. */
	assert_int_equal(parse(oci_manifest, MT_OCI_MANIFEST "; charset=utf-8", &m), 0);
	oci_manifest_free(&m);
	assert_int_equal(parse(oci_manifest, "application/json", &m), 0);
	oci_manifest_free(&m);
}

static void test_docker_manifest(void **state)
{
	(void)state;
	struct oci_manifest m;
	assert_int_equal(parse(docker_manifest, MT_DOCKER_MANIFEST, &m), 0);
	assert_int_equal(m.kind, OCI_KIND_MANIFEST);
	assert_int_equal(oci_manifest_check_image(&m), 0);
	enum oci_compression c;
	assert_int_equal(oci_layer_compression(m.layers[0].media_type, &c), 0);
	assert_int_equal(c, OCI_COMP_GZIP);
	oci_manifest_free(&m);
}

static void test_media_type_inference(void **state)
{
	(void)state;
	struct oci_manifest m;
	/* No mediaType field: Content-Type decides, else the shape. */
	char *j = edit(oci_manifest, "\"mediaType\":\"" MT_OCI_MANIFEST "\",", "");
	assert_int_equal(parse(j, NULL, &m), 0);
	assert_string_equal(m.media_type, MT_OCI_MANIFEST);
	oci_manifest_free(&m);
	assert_int_equal(parse(j, MT_DOCKER_MANIFEST, &m), 0);
	assert_string_equal(m.media_type, MT_DOCKER_MANIFEST);
	oci_manifest_free(&m);
	expect_reject(j, MT_OCI_INDEX, "index has config");
	free(j);
	expect_reject("{\"schemaVersion\":2}", NULL, "neither");
}

static void test_media_type_mismatch(void **state)
{
	(void)state;
	expect_reject(oci_manifest, MT_DOCKER_MANIFEST, "does not match");
	expect_reject(oci_manifest, MT_OCI_INDEX, "does not match");
	expect_reject(oci_manifest, "application/vnd.oci.image.manifest.v2+json", "does not match");
	char *j = edit(oci_manifest, MT_OCI_MANIFEST, "application/vnd.example+json");
	expect_reject(j, NULL, "unsupported manifest media type");
	free(j);
	j = edit(oci_manifest, MT_OCI_MANIFEST,
		 "application/vnd.docker.distribution.manifest.v1+prettyjws");
	expect_reject(j, NULL, "schema1");
	free(j);
	expect_reject("{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}", NULL, "schema1");
	/* A manifest must not carry an index's fields and vice versa. */
	j = edit(oci_manifest, "\"layers\"", "\"manifests\":[],\"layers\"");
	expect_reject(j, NULL, "manifests");
	free(j);
}

static void test_malformed(void **state)
{
	(void)state;
	expect_reject("", NULL, "malformed");
	expect_reject("{", NULL, "malformed");
	expect_reject("[]", NULL, "object");
	expect_reject("null", NULL, "malformed");
	expect_reject("{\"schemaVersion\":2,\"schemaVersion\":2}", NULL, "malformed");
	expect_edit_rejected("\"schemaVersion\":2", "\"schemaVersion\":3", "schemaVersion");
	expect_edit_rejected("\"schemaVersion\":2", "\"schemaVersion\":\"2\"", "schemaVersion");
	expect_edit_rejected("\"schemaVersion\":2,", "", "schemaVersion");
	expect_edit_rejected("\"config\":", "\"konfig\":", "config");
	expect_edit_rejected("\"layers\":[", "\"layers\":{\"x\":[", NULL);
	expect_edit_rejected("\"layers\":", "\"layerz\":", "layers");
	expect_edit_rejected("\"size\":10}", "\"size\":-1}", "size");
	expect_edit_rejected("\"size\":10}", "\"size\":1.5}", "size");
	expect_edit_rejected("\"size\":10}", "\"size\":\"10\"}", "size");
	expect_edit_rejected("\"size\":10}", "\"size\":99999999999999999}", "size");
	expect_edit_rejected("\"size\":100}", "\"size\":100000000}", "too large");
	expect_edit_rejected("\"mediaType\":\"" MT_OCI_LAYER_GZIP "\",", "", "mediaType");
	expect_edit_rejected("\"mediaType\":\"" MT_OCI_LAYER_GZIP "\"", "\"mediaType\":7", "string");
	/* A NUL byte inside a string. */
	expect_edit_rejected(MT_OCI_LAYER_GZIP, "application/vnd.oci\\u0000.tar", "NUL");
	/* Oversized input is refused before parsing. */
	struct oci_manifest m;
	assert_int_equal(oci_manifest_parse(oci_manifest, OCI_MANIFEST_MAX + 1ul, NULL, &m), -1);
	assert_non_null(strstr(lt_errmsg(), "too large"));
}

static void test_bad_digests(void **state)
{
	(void)state;
	expect_edit_rejected(D2, "sha256:abc", "invalid digest");
	expect_edit_rejected(D2, "sha512:" "22222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222",
			     "unsupported digest algorithm");
	expect_edit_rejected(D2, "sha256:2222222222222222222222222222222222222222222222222222222222222222/../x",
			     "invalid digest");
	expect_edit_rejected(D2, "SHA256:2222222222222222222222222222222222222222222222222222222222222222",
			     "digest");
	expect_edit_rejected("\"digest\":\"" D1 "\"", "\"digest\":null", "digest");
}

static void test_layer_media_types(void **state)
{
	(void)state;
	struct oci_manifest m;
	static const char *const bad[] = {
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
		"application/vnd.oci.image.layer.v1.tar+bzip2",
		"application/octet-stream",
	};
	for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
		char *j = edit(oci_manifest, MT_OCI_LAYER_ZSTD, bad[i]);
		assert_int_equal(parse(j, NULL, &m), 0);
		assert_int_equal(oci_manifest_check_image(&m), -1);
		assert_non_null(strstr(lt_errmsg(), i < 2 ? "foreign" : "unsupported layer"));
		assert_non_null(strstr(lt_errmsg(), D3));
		oci_manifest_free(&m);
		free(j);
	}
	/* Descriptors with urls are foreign layers too. */
	char *j = edit(oci_manifest, "\"size\":20}", "\"size\":20,\"urls\":[\"https://x/y\"]}");
	expect_reject(j, NULL, "urls");
	free(j);
	/* Not an image: an artifact's config type. */
	j = edit(oci_manifest, MT_OCI_CONFIG, "application/vnd.example.config+json");
	assert_int_equal(parse(j, NULL, &m), 0);
	assert_int_equal(oci_manifest_check_image(&m), -1);
	assert_non_null(strstr(lt_errmsg(), "not a container image"));
	oci_manifest_free(&m);
	free(j);
}

static void test_too_many_layers(void **state)
{
	(void)state;
	struct lt_buf b = {0};
	for (int n = OCI_LAYERS_MAX; n <= OCI_LAYERS_MAX + 1; n++) {
		b.len = 0;
		lt_buf_printf(&b, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[",
			      MT_OCI_MANIFEST, CFG(MT_OCI_CONFIG));
		for (int i = 0; i < n; i++)
			lt_buf_printf(&b, "%s%s", i ? "," : "", LAYER(MT_OCI_LAYER, D2, 1));
		lt_buf_printf(&b, "]}");
		struct oci_manifest m;
		int rc = oci_manifest_parse(b.data, b.len, NULL, &m);
		if (n == OCI_LAYERS_MAX) {
			assert_int_equal(rc, 0);
			assert_int_equal(m.n_layers, OCI_LAYERS_MAX);
			oci_manifest_free(&m);
		} else {
			assert_int_equal(rc, -1);
			assert_non_null(strstr(lt_errmsg(), "too many layers"));
		}
	}
	lt_buf_free(&b);
}

static void test_index(void **state)
{
	(void)state;
	struct oci_manifest m;
	assert_int_equal(parse(oci_index, MT_OCI_INDEX, &m), 0);
	assert_int_equal(m.kind, OCI_KIND_INDEX);
	assert_int_equal(m.n_manifests, 4);
	assert_true(m.manifests[0].has_platform);
	/* arm64/v8 normalises to arm64. */
	assert_string_equal(m.manifests[0].platform.arch, "arm64");
	assert_string_equal(m.manifests[0].platform.variant, "");
	assert_int_equal(oci_manifest_check_image(&m), -1);
	oci_manifest_free(&m);
	/* Docker manifest list. */
	char *j = edit(oci_index, MT_OCI_INDEX, MT_DOCKER_LIST);
	assert_int_equal(parse(j, MT_DOCKER_LIST, &m), 0);
	assert_int_equal(m.kind, OCI_KIND_INDEX);
	oci_manifest_free(&m);
	expect_reject(j, MT_OCI_INDEX, "does not match");
	free(j);
	/* No mediaType: "manifests" makes it an index. */
	j = edit(oci_index, "\"mediaType\":\"" MT_OCI_INDEX "\",", "");
	assert_int_equal(parse(j, NULL, &m), 0);
	assert_int_equal(m.kind, OCI_KIND_INDEX);
	oci_manifest_free(&m);
	free(j);
	expect_reject("{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\"}", NULL, "manifests");
	j = edit(oci_index, "\"architecture\":\"amd64\"", "\"architecture\":5");
	expect_reject(j, NULL, "platform");
	free(j);
	j = edit(oci_index, ",\"architecture\":\"amd64\"", "");
	expect_reject(j, NULL, "platform");
	free(j);
}

static void test_index_bound(void **state)
{
	(void)state;
	struct lt_buf b = {0};
	lt_buf_printf(&b, "{\"schemaVersion\":2,\"manifests\":[");
	for (int i = 0; i <= OCI_INDEX_MAX; i++)
		lt_buf_printf(&b, "%s%s", i ? "," : "",
			      ENTRY(MT_OCI_MANIFEST, D1, "linux", "amd64", ""));
	lt_buf_printf(&b, "]}");
	struct oci_manifest m;
	assert_int_equal(oci_manifest_parse(b.data, b.len, NULL, &m), -1);
	assert_non_null(strstr(lt_errmsg(), "too many manifests"));
	lt_buf_free(&b);
}

static int select_for(const char *index, const char *platform)
{
	struct oci_manifest m;
	struct oci_platform p;
	assert_int_equal(parse(index, NULL, &m), 0);
	assert_int_equal(oci_platform_parse(platform, &p), 0);
	int i = oci_index_select(&m, &p);
	oci_manifest_free(&m);
	return i;
}

static void test_platform_selection(void **state)
{
	(void)state;
	assert_int_equal(select_for(oci_index, "linux/amd64"), 1);
	assert_int_equal(select_for(oci_index, "linux/arm64"), 0);
	assert_int_equal(select_for(oci_index, "linux/arm64/v8"), 0);
	assert_int_equal(select_for(oci_index, "linux/arm/v6"), 2);
	/* An arm/v7 host takes the v6 image. */
	assert_int_equal(select_for(oci_index, "linux/arm/v7"), 2);
	assert_int_equal(select_for(oci_index, "linux/arm/v5"), -1);
	assert_int_equal(select_for(oci_index, "linux/s390x"), -1);
	/* The error names what is available, not the attestation entry. */
	assert_non_null(strstr(lt_errmsg(), "linux/s390x"));
	assert_non_null(strstr(lt_errmsg(), "linux/amd64"));
	assert_non_null(strstr(lt_errmsg(), "linux/arm/v6"));
	assert_null(strstr(lt_errmsg(), "unknown"));
	/* Exact variant beats a compatible one. */
	static const char two_arm[] =
		"{\"schemaVersion\":2,\"manifests\":["
		ENTRY(MT_OCI_MANIFEST, D1, "linux", "arm", ",\"variant\":\"v6\"") ","
		ENTRY(MT_OCI_MANIFEST, D2, "linux", "arm", ",\"variant\":\"v7\"") "]}";
	assert_int_equal(select_for(two_arm, "linux/arm/v7"), 1);
	assert_int_equal(select_for(two_arm, "linux/arm/v6"), 0);
	/* amd64 variants: baseline host takes baseline only. */
	static const char amd_v[] =
		"{\"schemaVersion\":2,\"manifests\":["
		ENTRY(MT_OCI_MANIFEST, D1, "linux", "amd64", ",\"variant\":\"v3\"") ","
		ENTRY(MT_OCI_MANIFEST, D2, "linux", "amd64", "") "]}";
	assert_int_equal(select_for(amd_v, "linux/amd64"), 1);
	assert_int_equal(select_for(amd_v, "linux/amd64/v3"), 0);
	assert_int_equal(select_for(amd_v, "linux/amd64/v2"), 1);
	/* Entries of unknown media type are never selected. */
	static const char odd[] =
		"{\"schemaVersion\":2,\"manifests\":["
		ENTRY("application/vnd.example+json", D1, "linux", "amd64", "") "]}";
	assert_int_equal(select_for(odd, "linux/amd64"), -1);
	/* A lone entry without a platform is taken. */
	static const char lone[] = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\""
		MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":5}]}";
	assert_int_equal(select_for(lone, "linux/arm64"), 0);
}

static void test_annotations(void **state)
{
	(void)state;
	static const char idx[] = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\""
		MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":5,\"annotations\":{\""
		OCI_ANN_REF_NAME "\":\"v1\",\"" OCI_ANN_IMAGE_NAME "\":\"docker.io/x/y:v1\"}}]}";
	struct oci_manifest m;
	assert_int_equal(parse(idx, NULL, &m), 0);
	assert_string_equal(m.manifests[0].ref_name, "v1");
	assert_string_equal(m.manifests[0].image_name, "docker.io/x/y:v1");
	oci_manifest_free(&m);
	char *j = edit(idx, "\"v1\",", "5,");
	expect_reject(j, NULL, "string");
	free(j);
}

static void test_config_check(void **state)
{
	(void)state;
	struct oci_manifest m;
	assert_int_equal(parse(oci_manifest, NULL, &m), 0);
	struct oci_platform amd, arm;
	oci_platform_parse("linux/amd64", &amd);
	oci_platform_parse("linux/arm64", &arm);
	static const char good[] = "{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":"
				   "{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\",\"" D3 "\"]}}";
	assert_int_equal(oci_config_check(good, strlen(good), &m, &amd, true), 0);
	assert_int_equal(oci_config_check(good, strlen(good), &m, NULL, true), 0);
	assert_int_equal(oci_config_check(good, strlen(good), &m, &arm, true), -1);
	assert_non_null(strstr(lt_errmsg(), "linux/amd64"));
	assert_int_equal(oci_config_check(good, strlen(good), &m, &arm, false), 0);
	static const char short_ids[] = "{\"rootfs\":{\"diff_ids\":[\"" D1 "\"]}}";
	assert_int_equal(oci_config_check(short_ids, strlen(short_ids), &m, NULL, false), -1);
	assert_non_null(strstr(lt_errmsg(), "diff_ids"));
	assert_int_equal(oci_config_check("[1]", 3, &m, NULL, false), -1);
	assert_int_equal(oci_config_check("{", 1, &m, NULL, false), -1);
	oci_manifest_free(&m);
}

int main(void)
{
	lt_log_set_level(LT_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oci_manifest),
		cmocka_unit_test(test_docker_manifest),
		cmocka_unit_test(test_media_type_inference),
		cmocka_unit_test(test_media_type_mismatch),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_bad_digests),
		cmocka_unit_test(test_layer_media_types),
		cmocka_unit_test(test_too_many_layers),
		cmocka_unit_test(test_index),
		cmocka_unit_test(test_index_bound),
		cmocka_unit_test(test_platform_selection),
		cmocka_unit_test(test_annotations),
		cmocka_unit_test(test_config_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
