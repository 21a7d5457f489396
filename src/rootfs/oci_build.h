/* Building a rootfs for a stored OCI image, with the cache `lttle build`
 * uses: the one code path for `lttle build` and ignitiond's deploy.
 *
 * Cache: <root>/rootfs/<manifest-hex>-<options-hash>.<fmt>, beside
 *   <same>.json        the runtime config (also inside the image at
 *                      LT_GUEST_CONFIG_PATH) for the guest init
 *   <same>.build.json  {"format","size","entries","digest"}
 * The options hash covers the format, the ext4 size, the guest init's
 * content, the runtime config, $LTTLE_SQUASHFS_LEVEL and the writer
 * version, so a change to any of them builds a new image. The three
 * files are written in that order (each atomically) and an entry counts
 * as cached only when all three exist.
 */
#ifndef LTTLE_ROOTFS_OCI_BUILD_H
#define LTTLE_ROOTFS_OCI_BUILD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "oci/oci.h"
#include "rootfs/rootfs.h"

#define ROOTFS_OCI_WRITER_VERSION "lttle-rootfs-1"

struct rootfs_oci_opts {
	const char *root;          /* cache root (the store root) */
	enum rootfs_format format;
	uint64_t size;             /* ext4 only; 0: content + headroom */
	const char *init_path;     /* guest init to inject; NULL: none */
	bool no_cache;
	struct lt_progress *progress; /* may be NULL */
};

struct rootfs_oci_result {
	char *path;        /* the image (malloc'd) */
	char *config_path; /* the runtime config beside it (malloc'd) */
	char *info_path;   /* <same>.build.json (malloc'd) */
	uint64_t size, entries;
	bool cached;
	char digest[80];   /* "sha256:<hex>" once known, else "" */
};

int rootfs_build_oci(const struct oci_image *img, const struct rootfs_oci_opts *o,
		     struct rootfs_oci_result *res);
/* Fills res->digest: from <same>.build.json, else by hashing the image
 * (then remembered there). */
int rootfs_oci_digest(struct rootfs_oci_result *res, enum rootfs_format f);
void rootfs_oci_result_free(struct rootfs_oci_result *res);

#endif
