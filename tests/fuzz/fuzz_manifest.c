/* libFuzzer target: the manifest/index parser and what consumes its
 * result (image checks, platform selection, config checks), plus the other
 * parsers fed by registries: WWW-Authenticate challenges and references.
 *   make fuzz && build-fuzz/fuzz_manifest tests/fuzz/seeds/manifest */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"

static const char *const content_types[] = {
	NULL, MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST, MT_DOCKER_LIST,
	"application/json", "text/html",
};

static void exercise(const struct oci_manifest *m, const uint8_t *data, size_t size)
{
	static const char *const platforms[] = {"linux/amd64", "linux/arm64", "linux/arm/v7",
						"linux/amd64/v3"};
	struct oci_platform p;
	if (m->kind == OCI_KIND_INDEX) {
		for (size_t i = 0; i < LT_ARRAY_LEN(platforms); i++) {
			oci_platform_parse(platforms[i], &p);
			int k = oci_index_select(m, &p);
			if (k >= (int)m->n_manifests)
				abort();
		}
		return;
	}
	oci_manifest_check_image(m);
	oci_platform_parse("linux/amd64", &p);
	/* The same bytes as a config blob for this manifest. */
	oci_config_check((const char *)data, size, m, &p, size & 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lt_log_set_level(LT_LOG_ERROR);
	if (size == 0)
		return 0;
	const char *ct = content_types[data[0] % LT_ARRAY_LEN(content_types)];
	struct oci_manifest m;
	if (oci_manifest_parse(data + 1, size - 1, ct, &m) == 0) {
		exercise(&m, data + 1, size - 1);
		oci_manifest_free(&m);
	}
	if (size > 8192)
		return 0;
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct oci_challenge c;
	if (oci_auth_parse_challenge(s, &c) == 0)
		oci_challenge_free(&c);
	struct oci_ref r;
	if (oci_ref_parse(s, &r) == 0) {
		char *canon = oci_ref_string(&r);
		struct oci_ref again;
		/* A canonical string must parse back to itself. */
		if (!canon || oci_ref_parse(canon, &again) < 0)
			abort();
		char *twice = oci_ref_string(&again);
		if (!twice || strcmp(canon, twice))
			abort();
		free(twice);
		free(canon);
		oci_ref_free(&again);
		oci_ref_free(&r);
	}
	char *u, *pw;
	if (oci_docker_auth_parse(s, "127.0.0.1:5000", &u, &pw) == 0) {
		free(u);
		free(pw);
	}
	free(s);
	return 0;
}
