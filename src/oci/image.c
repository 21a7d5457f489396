/* Loading a stored image and extracting its runtime configuration. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

char *oci_store_ref_for(struct oci_store *s, const char *input, const char *digest)
{
	struct oci_ref r;
	char d[OCI_DIGEST_MAX];
	if (strncmp(input, "sha256:", 7) && oci_ref_parse(input, &r) == 0) {
		char *canon = oci_ref_string(&r);
		oci_ref_free(&r);
		if (canon && oci_store_get_ref(s, canon, d) == 0 && !strcmp(d, digest))
			return canon;
		free(canon);
	}
	lt_clear_error();
	struct oci_ref_entry *refs;
	size_t n;
	char *found = NULL;
	if (oci_store_refs(s, &refs, &n) < 0)
		return NULL;
	for (size_t i = 0; i < n && !found; i++)
		if (!strcmp(refs[i].digest, digest))
			found = lt_strdup(refs[i].ref);
	oci_ref_entries_free(refs, n);
	return found;
}

static int load_config(struct oci_store *s, const struct oci_desc *d, json_t **out)
{
	char *data;
	size_t n;
	if (oci_store_read_blob(s, d->digest, OCI_MANIFEST_MAX, &data, &n) < 0)
		return -1;
	if (n != d->size) {
		free(data);
		return lt_fail("config %s has %zu bytes, manifest says %llu", d->digest, n,
			       (unsigned long long)d->size);
	}
	json_error_t err;
	*out = json_loadb(data, n, 0, &err);
	free(data);
	if (!*out || !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return lt_fail("config %s is not a JSON object", d->digest);
	}
	return 0;
}

static int fill_layers(struct oci_store *s, const struct oci_manifest *m, struct oci_image *img)
{
	img->layers = lt_calloc(m->n_layers ? m->n_layers : 1, sizeof(*img->layers));
	if (!img->layers)
		return -1;
	for (size_t i = 0; i < m->n_layers; i++) {
		struct oci_layer *l = &img->layers[i];
		const struct oci_desc *d = &m->layers[i];
		img->n_layers = i + 1;
		strcpy(l->digest, d->digest);
		l->size = d->size;
		if (oci_layer_compression(d->media_type, &l->compression) < 0)
			return -1;
		l->media_type = lt_strdup(d->media_type);
		l->path = oci_store_blob_path(s, d->digest);
		if (!l->media_type || !l->path)
			return -1;
		if (!oci_store_has_blob_sized(s, d->digest, (int64_t)d->size))
			return lt_fail("layer %s is missing from the store or has the wrong size",
				       d->digest);
	}
	return 0;
}

int oci_image_load(struct oci_store *s, const char *ref, struct oci_image **out)
{
	char digest[OCI_DIGEST_MAX];
	if (oci_store_resolve(s, ref, digest) < 0)
		return -1;
	struct oci_image *img = lt_calloc(1, sizeof(*img));
	if (!img)
		return -1;
	strcpy(img->manifest_digest, digest);
	struct oci_manifest m;
	int rc = oci_store_read_manifest(s, digest, &m);
	if (rc < 0) {
		free(img);
		return lt_fail_ctx("image %s", ref);
	}
	rc = oci_manifest_check_image(&m);
	if (rc == 0) {
		strcpy(img->config_digest, m.config.digest);
		rc = load_config(s, &m.config, &img->config);
	}
	if (rc == 0)
		rc = fill_layers(s, &m, img);
	oci_manifest_free(&m);
	if (rc == 0)
		img->ref = oci_store_ref_for(s, ref, digest);
	if (rc < 0) {
		oci_image_free(img);
		return lt_fail_ctx("image %s", ref);
	}
	*out = img;
	return 0;
}

void oci_image_free(struct oci_image *img)
{
	if (!img)
		return;
	for (size_t i = 0; i < img->n_layers; i++) {
		free(img->layers[i].media_type);
		free(img->layers[i].path);
	}
	free(img->layers);
	json_decref(img->config);
	free(img->ref);
	free(img);
}

/* An array of the string members of v (non-strings dropped). */
static json_t *string_array(json_t *v)
{
	json_t *out = json_array();
	size_t i;
	json_t *e;
	if (!out)
		return NULL;
	if (json_is_array(v))
		json_array_foreach(v, i, e)
			if (json_is_string(e))
				json_array_append(out, e);
	return out;
}

static int port_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* {"80/tcp":{}, "53/udp":{}} -> [53, 80]. */
static json_t *exposed_ports(json_t *v)
{
	json_t *out = json_array();
	if (!out || !json_is_object(v))
		return out;
	int ports[256];
	size_t n = 0;
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val) {
		char *end;
		long p = strtol(key, &end, 10);
		if (end == key || p <= 0 || p > 65535 || (*end && *end != '/'))
			continue;
		bool dup = false;
		for (size_t i = 0; i < n; i++)
			dup |= ports[i] == (int)p;
		if (!dup && n < LT_ARRAY_LEN(ports))
			ports[n++] = (int)p;
	}
	qsort(ports, n, sizeof(int), port_cmp);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, json_integer(ports[i]));
	return out;
}

static const char *str_or_empty(json_t *v)
{
	return json_is_string(v) ? json_string_value(v) : "";
}

json_t *oci_image_runtime_config(const struct oci_image *img)
{
	json_t *c = json_object_get(img->config, "config");
	json_t *rc = json_object();
	if (!rc) {
		lt_fail("out of memory");
		return NULL;
	}
	int err = 0;
	err |= json_object_set_new(rc, "env", string_array(json_object_get(c, "Env")));
	err |= json_object_set_new(rc, "entrypoint",
				   string_array(json_object_get(c, "Entrypoint")));
	err |= json_object_set_new(rc, "cmd", string_array(json_object_get(c, "Cmd")));
	err |= json_object_set_new(rc, "workdir",
				   json_string(str_or_empty(json_object_get(c, "WorkingDir"))));
	err |= json_object_set_new(rc, "user",
				   json_string(str_or_empty(json_object_get(c, "User"))));
	err |= json_object_set_new(rc, "exposed_ports",
				   exposed_ports(json_object_get(c, "ExposedPorts")));
	err |= json_object_set_new(rc, "ref", img->ref ? json_string(img->ref) : json_null());
	err |= json_object_set_new(rc, "digest", json_string(img->manifest_digest));
	if (err) {
		json_decref(rc);
		lt_fail("cannot build the runtime config (invalid UTF-8 in the image config?)");
		return NULL;
	}
	return rc;
}
