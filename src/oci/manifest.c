/* Manifest and index parsing: OCI image manifest and index, Docker schema2
 * manifest and manifest list. Every field is validated; the input is
 * hostile. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const manifest_types[] = {MT_OCI_MANIFEST, MT_DOCKER_MANIFEST};
static const char *const index_types[] = {MT_OCI_INDEX, MT_DOCKER_LIST};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

bool oci_media_type_is_index(const char *mt)
{
	return in_list(mt, index_types, LT_ARRAY_LEN(index_types));
}

bool oci_media_type_is_manifest(const char *mt)
{
	return in_list(mt, manifest_types, LT_ARRAY_LEN(manifest_types));
}

int oci_layer_compression(const char *mt, enum oci_compression *out)
{
	static const struct {
		const char *mt;
		enum oci_compression c;
	} known[] = {
		{MT_OCI_LAYER, OCI_COMP_NONE},
		{MT_OCI_LAYER_GZIP, OCI_COMP_GZIP},
		{MT_OCI_LAYER_ZSTD, OCI_COMP_ZSTD},
		{MT_DOCKER_LAYER_GZIP, OCI_COMP_GZIP},
		{MT_DOCKER_LAYER, OCI_COMP_NONE},
	};
	for (size_t i = 0; mt && i < LT_ARRAY_LEN(known); i++) {
		if (!strcmp(mt, known[i].mt)) {
			*out = known[i].c;
			return 0;
		}
	}
	if (mt && (strstr(mt, "nondistributable") || strstr(mt, "foreign")))
		return lt_fail("foreign (non-distributable) layer %s is not supported", mt);
	return lt_fail("unsupported layer media type '%s'", mt ? mt : "(none)");
}

/* "application/vnd...+json; charset=utf-8" -> compares the type only. */
static bool content_type_equals(const char *ct, const char *mt)
{
	size_t n = strcspn(ct, "; \t");
	return strlen(mt) == n && !strncasecmp(ct, mt, n);
}

/* Generic content types some registries and servers send for JSON. */
static bool content_type_generic(const char *ct)
{
	return !*ct || content_type_equals(ct, "application/json") ||
	       content_type_equals(ct, "text/plain") ||
	       content_type_equals(ct, "application/octet-stream");
}

void oci_desc_free(struct oci_desc *d)
{
	if (!d)
		return;
	free(d->media_type);
	free(d->ref_name);
	free(d->image_name);
	memset(d, 0, sizeof(*d));
}

void oci_manifest_free(struct oci_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	oci_desc_free(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		oci_desc_free(&m->layers[i]);
	free(m->layers);
	for (size_t i = 0; i < m->n_manifests; i++)
		oci_desc_free(&m->manifests[i]);
	free(m->manifests);
	memset(m, 0, sizeof(*m));
}

static int get_optional_string(json_t *obj, const char *key, const char *what, char **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return lt_fail("%s: \"%s\" is not a string", what, key);
	const char *s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return lt_fail("%s: \"%s\" contains a NUL byte", what, key);
	if (json_string_length(v) > 4096)
		return lt_fail("%s: \"%s\" is too long", what, key);
	*out = lt_strdup(s);
	return *out ? 0 : -1;
}

static int parse_platform(json_t *v, const char *what, struct oci_platform *out)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(v))
		return lt_fail("%s: \"platform\" is not an object", what);
	static const char *const keys[] = {"os", "architecture", "variant"};
	char *dst[] = {out->os, out->arch, out->variant};
	for (size_t i = 0; i < LT_ARRAY_LEN(keys); i++) {
		json_t *f = json_object_get(v, keys[i]);
		if (!f)
			continue;
		if (!json_is_string(f) || json_string_length(f) >= sizeof(out->os) ||
		    strlen(json_string_value(f)) != json_string_length(f))
			return lt_fail("%s: invalid platform %s", what, keys[i]);
		strcpy(dst[i], json_string_value(f));
	}
	if (!out->os[0] || !out->arch[0])
		return lt_fail("%s: platform without os or architecture", what);
	oci_platform_normalize(out);
	return 0;
}

static int parse_annotations(json_t *obj, const char *what, struct oci_desc *d)
{
	json_t *a = json_object_get(obj, "annotations");
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_object(a))
		return lt_fail("%s: \"annotations\" is not an object", what);
	if (get_optional_string(a, OCI_ANN_REF_NAME, what, &d->ref_name) < 0)
		return -1;
	return get_optional_string(a, OCI_ANN_IMAGE_NAME, what, &d->image_name);
}

static int parse_desc(json_t *v, const char *what, struct oci_desc *d)
{
	memset(d, 0, sizeof(*d));
	if (!json_is_object(v))
		return lt_fail("%s is not an object", what);
	if (get_optional_string(v, "mediaType", what, &d->media_type) < 0)
		return -1;
	if (!d->media_type)
		return lt_fail("%s has no mediaType", what);
	json_t *dg = json_object_get(v, "digest");
	if (!json_is_string(dg))
		return lt_fail("%s has no digest", what);
	const char *ds = json_string_value(dg);
	if (!oci_digest_valid(ds)) {
		if (strncmp(ds, "sha256:", 7) && strchr(ds, ':'))
			return lt_fail("%s: unsupported digest algorithm in '%.80s'", what, ds);
		return lt_fail("%s: invalid digest '%.80s'", what, ds);
	}
	strcpy(d->digest, ds);
	json_t *sz = json_object_get(v, "size");
	if (!json_is_integer(sz) || json_integer_value(sz) < 0 ||
	    (uint64_t)json_integer_value(sz) > OCI_BLOB_MAX)
		return lt_fail("%s: missing or invalid size", what);
	d->size = (uint64_t)json_integer_value(sz);
	json_t *urls = json_object_get(v, "urls");
	if (urls && !json_is_null(urls) && json_array_size(urls) > 0)
		return lt_fail("%s: descriptors with external urls (foreign layers) are not "
			       "supported", what);
	json_t *pf = json_object_get(v, "platform");
	if (pf && !json_is_null(pf)) {
		if (parse_platform(pf, what, &d->platform) < 0)
			return -1;
		d->has_platform = true;
	}
	return parse_annotations(v, what, d);
}

static int parse_desc_array(json_t *arr, const char *key, size_t max, struct oci_desc **out,
			    size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!json_is_array(arr))
		return lt_fail("\"%s\" is missing or not an array", key);
	size_t count = json_array_size(arr);
	if (count > max)
		return lt_fail("too many %s (%zu, at most %zu)", key, count, max);
	if (count == 0)
		return 0;
	struct oci_desc *v = lt_calloc(count, sizeof(*v));
	if (!v)
		return -1;
	*out = v;
	for (size_t i = 0; i < count; i++) {
		char what[64];
		snprintf(what, sizeof(what), "%s[%zu]", key, i);
		if (parse_desc(json_array_get(arr, i), what, &v[i]) < 0) {
			oci_desc_free(&v[i]);
			return -1;
		}
		*n = i + 1;
	}
	return 0;
}

/* Decides the effective media type from the JSON field, the HTTP
 * Content-Type and (when both are absent) the document's shape. */
static int effective_media_type(json_t *root, const char *ct, char **out)
{
	char *field = NULL;
	if (get_optional_string(root, "mediaType", "manifest", &field) < 0)
		return -1;
	const char *cts = (ct && !content_type_generic(ct)) ? ct : NULL;
	if (field && cts && !content_type_equals(cts, field)) {
		int rc = lt_fail("Content-Type '%.100s' does not match mediaType '%.100s'", cts,
				 field);
		free(field);
		return rc;
	}
	if (field) {
		*out = field;
		return 0;
	}
	if (cts) {
		size_t n = strcspn(cts, "; \t");
		*out = lt_strndup(cts, n);
		return *out ? 0 : -1;
	}
	/* OCI allows mediaType to be absent: infer from the fields present. */
	const char *mt = json_object_get(root, "manifests") ? MT_OCI_INDEX
			 : json_object_get(root, "config") ? MT_OCI_MANIFEST
							   : NULL;
	if (!mt)
		return lt_fail("neither a manifest nor an index (no mediaType, config or "
			       "manifests)");
	*out = lt_strdup(mt);
	return *out ? 0 : -1;
}

static int check_media_type(const char *mt)
{
	if (oci_media_type_is_manifest(mt) || oci_media_type_is_index(mt))
		return 0;
	if (strstr(mt, "distribution.manifest.v1"))
		return lt_fail("Docker schema1 manifests (%s) are not supported; re-push the "
			       "image with a current client", mt);
	return lt_fail("unsupported manifest media type '%.100s'", mt);
}

static int parse_root(json_t *root, const char *ct, struct oci_manifest *m)
{
	if (!json_is_object(root))
		return lt_fail("manifest is not a JSON object");
	json_t *sv = json_object_get(root, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		if (json_is_integer(sv) && json_integer_value(sv) == 1)
			return lt_fail("Docker schema1 manifests are not supported");
		return lt_fail("schemaVersion must be 2");
	}
	if (effective_media_type(root, ct, &m->media_type) < 0 ||
	    check_media_type(m->media_type) < 0)
		return -1;
	if (oci_media_type_is_index(m->media_type)) {
		m->kind = OCI_KIND_INDEX;
		if (json_object_get(root, "config") || json_object_get(root, "layers"))
			return lt_fail("index has config or layers");
		return parse_desc_array(json_object_get(root, "manifests"), "manifests",
					OCI_INDEX_MAX, &m->manifests, &m->n_manifests);
	}
	m->kind = OCI_KIND_MANIFEST;
	if (json_object_get(root, "manifests"))
		return lt_fail("manifest has a \"manifests\" field");
	if (parse_desc(json_object_get(root, "config"), "config", &m->config) < 0)
		return -1;
	if (m->config.size > OCI_MANIFEST_MAX)
		return lt_fail("config blob is too large (%llu bytes)",
			       (unsigned long long)m->config.size);
	return parse_desc_array(json_object_get(root, "layers"), "layers", OCI_LAYERS_MAX,
				&m->layers, &m->n_layers);
}

int oci_manifest_parse(const void *data, size_t len, const char *content_type,
		       struct oci_manifest *out)
{
	memset(out, 0, sizeof(*out));
	if (len > OCI_MANIFEST_MAX)
		return lt_fail("manifest is too large (%zu bytes, at most %u)", len,
			       OCI_MANIFEST_MAX);
	json_error_t err;
	json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		return lt_fail("malformed manifest JSON at line %d: %s", err.line, err.text);
	int rc = parse_root(root, content_type, out);
	json_decref(root);
	if (rc < 0)
		oci_manifest_free(out);
	return rc;
}

int oci_manifest_check_image(const struct oci_manifest *m)
{
	if (m->kind != OCI_KIND_MANIFEST)
		return lt_fail("expected an image manifest, got an index");
	const char *cmt = m->config.media_type;
	if (strcmp(cmt, MT_OCI_CONFIG) && strcmp(cmt, MT_DOCKER_CONFIG))
		return lt_fail("not a container image (config media type '%.100s')", cmt);
	for (size_t i = 0; i < m->n_layers; i++) {
		enum oci_compression c;
		if (oci_layer_compression(m->layers[i].media_type, &c) < 0)
			return lt_fail_ctx("layer %zu (%s)", i, m->layers[i].digest);
	}
	return 0;
}

int oci_index_select(const struct oci_manifest *idx, const struct oci_platform *want)
{
	int best = -1, best_score = 0;
	for (size_t i = 0; i < idx->n_manifests; i++) {
		const struct oci_desc *d = &idx->manifests[i];
		if (!d->has_platform)
			continue;
		if (!oci_media_type_is_manifest(d->media_type) &&
		    !oci_media_type_is_index(d->media_type))
			continue;
		int s = oci_platform_score(want, &d->platform);
		if (s > best_score) {
			best = (int)i;
			best_score = s;
		}
	}
	if (best >= 0)
		return best;
	/* An index whose only image says nothing about its platform places
	 * no restriction on it. */
	if (idx->n_manifests == 1 && !idx->manifests[0].has_platform &&
	    (oci_media_type_is_manifest(idx->manifests[0].media_type) ||
	     oci_media_type_is_index(idx->manifests[0].media_type)))
		return 0;
	/* Name what the index does offer (attestation entries excluded). */
	char avail[512] = "";
	size_t used = 0;
	for (size_t i = 0; i < idx->n_manifests && used < sizeof(avail) - 64; i++) {
		const struct oci_desc *d = &idx->manifests[i];
		if (!d->has_platform || !strcmp(d->platform.os, "unknown"))
			continue;
		char p[100];
		used += (size_t)snprintf(avail + used, sizeof(avail) - used, "%s%s",
					 used ? ", " : "",
					 oci_platform_string(&d->platform, p, sizeof(p)));
	}
	char w[100];
	return lt_fail("no image for platform %s in the index (available: %s)",
		       oci_platform_string(want, w, sizeof(w)), used ? avail : "none");
}

int oci_config_check(const char *data, size_t len, const struct oci_manifest *m,
		     const struct oci_platform *want, bool explicit_pf)
{
	json_error_t err;
	json_t *cfg = json_loadb(data, len, 0, &err);
	int rc = 0;
	if (!json_is_object(cfg)) {
		rc = lt_fail("config %s is not a JSON object", m->config.digest);
		goto done;
	}
	json_t *ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
	if (json_is_array(ids) && json_array_size(ids) != m->n_layers) {
		rc = lt_fail("config %s lists %zu diff_ids for %zu layers", m->config.digest,
			     json_array_size(ids), m->n_layers);
		goto done;
	}
	struct oci_platform have = {0};
	const char *os = json_string_value(json_object_get(cfg, "os"));
	const char *arch = json_string_value(json_object_get(cfg, "architecture"));
	const char *var = json_string_value(json_object_get(cfg, "variant"));
	if (want && os && arch && strlen(os) < sizeof(have.os) && strlen(arch) < sizeof(have.arch)) {
		strcpy(have.os, os);
		strcpy(have.arch, arch);
		if (var && strlen(var) < sizeof(have.variant))
			strcpy(have.variant, var);
		if (oci_platform_score(want, &have) == 0) {
			char a[100], b[100];
			oci_platform_string(&have, a, sizeof(a));
			oci_platform_string(want, b, sizeof(b));
			if (explicit_pf)
				rc = lt_fail("the image is for %s, not %s", a, b);
			else
				lt_warn("the image is for %s, not for this host (%s)", a, b);
		}
	}
done:
	json_decref(cfg);
	return rc;
}
