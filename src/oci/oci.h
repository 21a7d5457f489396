/* oci: image references, the content-addressed store, the registry client,
 * and OCI-layout / docker-archive import and export.
 *
 * Store layout under a root (normally lt_home()):
 *     blobs/sha256/<hex>     layers, configs, manifests, indexes
 *     refs/<registry>/<repository>/_tags/<tag>         text file: "<manifest
 *     refs/<registry>/<repository>/_digests/sha256:<hex>  digest>\n" (always a
 *                            single-platform manifest; mtime = when stored)
 *     tmp/                   partial downloads (same filesystem, for rename)
 *     lock                   flock: writers shared, GC exclusive
 * Every blob is verified (digest and size) before it is renamed into place.
 * Repository components start with [a-z0-9], so "_tags"/"_digests" never
 * collide with them.
 */
#ifndef LTTLE_OCI_H
#define LTTLE_OCI_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "util/util.h"

#define OCI_DIGEST_MAX 80 /* "sha256:" + 64 hex + NUL, with room */

/* Hard limits on hostile input. */
#define OCI_MANIFEST_MAX (4u << 20)   /* manifests, indexes, configs */
#define OCI_LAYERS_MAX 512
#define OCI_BLOB_MAX (64ull << 30)

/* ---- references ------------------------------------------------------ */

/* Docker-style: "alpine" -> docker.io/library/alpine:latest,
 * "ghcr.io/org/app:tag", "localhost:5000/name@sha256:...". */
struct oci_ref {
	char *registry;   /* "docker.io", "127.0.0.1:5000" */
	char *repository; /* "library/alpine" */
	char *tag;        /* NULL when only a digest was given */
	char *digest;     /* "sha256:<hex>" or NULL */
};
int oci_ref_parse(const char *s, struct oci_ref *out);
/* Canonical "registry/repository[:tag][@digest]"; caller frees. */
char *oci_ref_string(const struct oci_ref *r);
void oci_ref_free(struct oci_ref *r);
/* True for "sha256:" + 64 lowercase hex. */
bool oci_digest_valid(const char *digest);

/* ---- platform -------------------------------------------------------- */

struct oci_platform {
	char os[32];
	char arch[32];
	char variant[32]; /* may be empty */
};
/* "linux/amd64", "linux/arm64/v8". */
int oci_platform_parse(const char *s, struct oci_platform *out);
void oci_platform_host(struct oci_platform *out);

/* ---- store ----------------------------------------------------------- */

struct oci_store;
int oci_store_open(const char *root, struct oci_store **out);
void oci_store_close(struct oci_store *s);
const char *oci_store_root(const struct oci_store *s);
/* Path of a blob (may not exist); caller frees. NULL on bad digest. */
char *oci_store_blob_path(const struct oci_store *s, const char *digest);
bool oci_store_has_blob(const struct oci_store *s, const char *digest);
/* Resolves a ref (as typed by a user, or a manifest digest / unique
 * digest prefix) to the stored single-platform manifest digest. */
int oci_store_resolve(struct oci_store *s, const char *ref, char digest[OCI_DIGEST_MAX]);

/* ---- images ---------------------------------------------------------- */

enum oci_compression { OCI_COMP_NONE, OCI_COMP_GZIP, OCI_COMP_ZSTD };

struct oci_layer {
	char digest[OCI_DIGEST_MAX];
	char *media_type;
	uint64_t size;
	enum oci_compression compression;
	char *path; /* blob path in the store */
};

/* A resolved single-platform image, loaded from the store. */
struct oci_image {
	char *ref; /* canonical ref it was stored under, or NULL */
	char manifest_digest[OCI_DIGEST_MAX];
	char config_digest[OCI_DIGEST_MAX];
	size_t n_layers;
	struct oci_layer *layers;
	json_t *config; /* the whole image config blob (owned) */
};
int oci_image_load(struct oci_store *s, const char *ref, struct oci_image **out);
void oci_image_free(struct oci_image *img);
/* The runtime part of the config, normalised for the guest init:
 * {"env":[...],"entrypoint":[...],"cmd":[...],"workdir":"","user":"",
 *  "exposed_ports":[80,...],"ref":"...","digest":"sha256:..."} */
json_t *oci_image_runtime_config(const struct oci_image *img);

/* ---- pull / import / export ------------------------------------------ */

struct oci_pull_opts {
	const char *platform; /* NULL: host */
	bool insecure;        /* allow plain HTTP to non-loopback registries */
	bool quiet;
	FILE *progress;       /* NULL: stderr */
};
/* Pulls ref into the store; writes the manifest digest when out != NULL. */
int oci_pull(struct oci_store *s, const char *ref, const struct oci_pull_opts *o,
	     char digest[OCI_DIGEST_MAX]);

struct oci_import_opts {
	const char *tag;      /* ref to store the image under */
	const char *platform; /* for multi-platform layouts */
	bool quiet;
};
/* Imports an OCI layout (directory or tar) or a docker-save tarball. */
int oci_import(struct oci_store *s, const char *path, const struct oci_import_opts *o,
	       char digest[OCI_DIGEST_MAX]);
/* Writes an OCI image layout tar of ref (for skopeo oci-archive:). */
int oci_export(struct oci_store *s, const char *ref, const char *out_path);

/* ---- listing / removal ----------------------------------------------- */

struct oci_image_info {
	char *ref;
	char digest[OCI_DIGEST_MAX];
	uint64_t size; /* compressed layers + config */
	int64_t created; /* unix seconds of the ref, 0 when unknown */
};
int oci_store_list(struct oci_store *s, struct oci_image_info **out, size_t *n);
void oci_image_info_free(struct oci_image_info *v, size_t n);
/* Removes a ref, then deletes blobs no remaining ref reaches. */
int oci_store_remove(struct oci_store *s, const char *ref, uint64_t *freed);
int oci_store_gc(struct oci_store *s, uint64_t *freed);

#endif
