/* Internal interfaces of the oci module, shared by its files and its unit
 * tests. Nothing outside src/oci and tests/unit/test_oci_* includes this. */
#ifndef LTTLE_OCI_INTERNAL_H
#define LTTLE_OCI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "oci.h"

/* ---- media types ----------------------------------------------------- */

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define MT_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar"

#define OCI_ANN_REF_NAME "org.opencontainers.image.ref.name"
#define OCI_ANN_IMAGE_NAME "io.containerd.image.name"

#define OCI_INDEX_MAX 1024   /* entries in one index */
#define OCI_INDEX_DEPTH 4    /* nested indexes followed */

/* ---- references ------------------------------------------------------ */

/* Validates one part of a reference; each returns 0 or fails with a reason. */
int oci_ref_check_domain(const char *d);
int oci_ref_check_repository(const char *r);
int oci_ref_check_tag(const char *t);
/* Length of the hex part a user typed as a digest prefix ("sha256:abc..."
 * or "abc..."), or -1 when s is not one. */
int oci_digest_prefix_len(const char *s);

/* ---- platform -------------------------------------------------------- */

/* Canonical arch/variant spelling (x86_64 -> amd64, aarch64 -> arm64,
 * arm64/v8 -> arm64, arm -> arm/v7, ...). */
void oci_platform_normalize(struct oci_platform *p);
/* "os/arch[/variant]" into buf. */
const char *oci_platform_string(const struct oci_platform *p, char *buf, size_t len);
/* How well an image for `have` runs on `want`: 0 = not at all, higher is
 * better; an exact match scores highest. */
int oci_platform_score(const struct oci_platform *want, const struct oci_platform *have);

/* ---- manifests ------------------------------------------------------- */

struct oci_desc {
	char *media_type;
	char digest[OCI_DIGEST_MAX];
	uint64_t size;
	bool has_platform;
	struct oci_platform platform;
	char *ref_name;   /* annotation org.opencontainers.image.ref.name */
	char *image_name; /* annotation io.containerd.image.name */
};

enum oci_manifest_kind { OCI_KIND_MANIFEST, OCI_KIND_INDEX };

struct oci_manifest {
	enum oci_manifest_kind kind;
	char *media_type; /* the effective media type */
	struct oci_desc config;
	size_t n_layers;
	struct oci_desc *layers;
	size_t n_manifests;
	struct oci_desc *manifests;
};

/* Parses and validates a manifest or index. content_type is the HTTP
 * Content-Type (NULL when read from disk); when both it and the JSON
 * mediaType are present they must agree. */
int oci_manifest_parse(const void *data, size_t len, const char *content_type,
		       struct oci_manifest *out);
void oci_manifest_free(struct oci_manifest *m);
void oci_desc_free(struct oci_desc *d);
/* A single-platform manifest describes a container image: config media
 * type and every layer media type are ones we can unpack. */
int oci_manifest_check_image(const struct oci_manifest *m);
int oci_layer_compression(const char *media_type, enum oci_compression *out);
bool oci_media_type_is_index(const char *mt);
bool oci_media_type_is_manifest(const char *mt);
/* Checks an image config blob: a JSON object whose rootfs.diff_ids (if
 * any) match the layer count; its platform must suit want (when given):
 * an error if strict, a warning otherwise. */
int oci_config_check(const char *data, size_t len, const struct oci_manifest *m,
		     const struct oci_platform *want, bool strict);
/* Picks the best entry of an index for want; fails naming what exists. */
int oci_index_select(const struct oci_manifest *idx, const struct oci_platform *want);

/* ---- store ----------------------------------------------------------- */

/* A blob being written into the store: a temp file under tmp/, hashed as
 * it is written, renamed into blobs/ only once verified. */
struct oci_blob_writer;
int oci_blob_begin(struct oci_store *s, uint64_t limit, struct oci_blob_writer **out);
int oci_blob_write(struct oci_blob_writer *w, const void *data, size_t n);
uint64_t oci_blob_written(const struct oci_blob_writer *w);
/* Discards what was written so far (a retry restarts the download). */
int oci_blob_reset(struct oci_blob_writer *w);
/* Verifies (want_digest may be NULL to accept any; want_size < 0 = any),
 * renames into place, writes the digest to out (may be NULL), frees w. */
int oci_blob_commit(struct oci_blob_writer *w, const char *want_digest, int64_t want_size,
		    char out[OCI_DIGEST_MAX]);
void oci_blob_abort(struct oci_blob_writer *w);
/* Finishes hashing and closes the temp file without placing it, so many
 * candidate blobs can wait (without open files) until a caller knows which
 * ones it wants; commit or abort it afterwards. */
int oci_blob_seal(struct oci_blob_writer *w, char digest[OCI_DIGEST_MAX]);
const char *oci_blob_tmp_path(const struct oci_blob_writer *w);

int oci_store_put(struct oci_store *s, const void *data, size_t n, const char *want_digest,
		  char out[OCI_DIGEST_MAX]);
/* True when the blob is present with the expected size (size < 0: any). */
bool oci_store_has_blob_sized(const struct oci_store *s, const char *digest, int64_t size);
/* Reads a small blob (<= max) and re-verifies its digest. */
int oci_store_read_blob(const struct oci_store *s, const char *digest, size_t max,
			char **out, size_t *len);
/* Reads and parses a stored manifest or index. */
int oci_store_read_manifest(const struct oci_store *s, const char *digest,
			    struct oci_manifest *out);

/* refs: canonical ref string -> manifest digest. */
int oci_store_set_ref(struct oci_store *s, const char *canonical, const char *digest);
/* 0 found, 1 not found, <0 error. */
int oci_store_get_ref(const struct oci_store *s, const char *canonical,
		      char digest[OCI_DIGEST_MAX]);
/* Removes one ref (0), 1 if it did not exist. */
int oci_store_unset_ref(struct oci_store *s, const char *canonical);
/* Path of a ref file under refs/; caller frees. */
char *oci_store_ref_path(const struct oci_store *s, const struct oci_ref *r);
/* Every ref with its digest and mtime. */
struct oci_ref_entry {
	char *ref;
	char digest[OCI_DIGEST_MAX];
	int64_t mtime;
};
int oci_store_refs(const struct oci_store *s, struct oci_ref_entry **out, size_t *n);
void oci_ref_entries_free(struct oci_ref_entry *v, size_t n);

/* Store-wide lock: writers of blobs/refs hold it shared, GC exclusive, so
 * a GC never deletes blobs a concurrent pull committed but has not yet
 * referenced. Re-entrant within one process. */
int oci_store_lock(struct oci_store *s, bool exclusive);
void oci_store_unlock(struct oci_store *s);

/* The canonical ref input names when it is a stored ref of digest, else
 * any ref of digest, else NULL (no error). Caller frees. */
char *oci_store_ref_for(struct oci_store *s, const char *input, const char *digest);

/* Stores a single-platform manifest under ref after checking its config
 * and layers are present (import and pull end here). */
int oci_store_tag(struct oci_store *s, const char *canonical, const char *manifest_digest);

/* ---- auth ------------------------------------------------------------ */

struct oci_challenge {
	char scheme[16]; /* "bearer" or "basic" (lowercased) */
	char *realm;
	char *service;
	char *scope;
	char *error;
};
/* Parses a WWW-Authenticate value; with several challenges, prefers
 * Bearer. */
int oci_auth_parse_challenge(const char *header, struct oci_challenge *out);
void oci_challenge_free(struct oci_challenge *c);

/* Credentials for registry from a docker config.json text. Returns 0 with
 * user/pass set, 1 when there are none for that registry, <0 on error. */
int oci_docker_auth_parse(const char *json_text, const char *registry, char **user,
			  char **pass);
/* Loads $DOCKER_CONFIG/config.json or ~/.docker/config.json; 1 if absent. */
int oci_docker_auth_lookup(const char *registry, char **user, char **pass);

int oci_base64_decode(const char *in, uint8_t **out, size_t *len);
char *oci_base64_encode(const uint8_t *in, size_t len);

/* ---- registry policy ------------------------------------------------- */

/* True for localhost, 127.0.0.0/8 and ::1 (with an optional port). */
bool oci_host_is_loopback(const char *host_port);
/* URL schemes to try for a registry, in order: "https" and, for loopback
 * registries or with insecure, "http" as a fallback. Returns the count. */
int oci_registry_schemes(const char *registry, bool insecure, const char *out[2]);
/* Host to contact for a registry name (docker.io -> registry-1.docker.io). */
const char *oci_registry_api_host(const char *registry);
/* Whether a request may go to url: https always; http only to loopback
 * hosts or with insecure. */
bool oci_url_allowed(const char *url, bool insecure);
/* Delay before retry number attempt (0-based), honouring Retry-After
 * (seconds or HTTP date; NULL if absent). Milliseconds. */
long oci_retry_delay_ms(int attempt, const char *retry_after);

#endif
