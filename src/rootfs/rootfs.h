/* rootfs: flatten OCI layers straight into an ext4 or squashfs image.
 *
 * No unpacked directory, no mkfs: layers are streamed through libarchive
 * (gzip, zstd or plain tar, detected from content) and written through
 * libext2fs or libsquashfs in-process. Whiteouts, opaque directories,
 * hardlinks, symlinks, ownership, modes, mtimes, xattrs, device nodes and
 * sparse files come out exact. Paths are confined to the image root.
 *
 * This module does not know about registries: the caller hands it layer
 * files in order (bottom first).
 *
 * Layer paths: "./etc/x", "etc/x" and "etc//x/" name the same entry and
 * "." components are dropped ("./" itself is the root, whose metadata it
 * sets). Rejected, with an error naming the layer and the entry:
 * absolute paths, ".." components, components over 255 bytes, paths
 * nested deeper than 512 levels, any path (entry, whiteout or hardlink
 * target) whose non-final component is a symlink, hardlinks to missing
 * entries or to directories, sizes and counts past rootfs_limits, xattrs
 * over 3600 bytes per entry. Whiteouts (".wh.NAME") and opaque markers
 * (".wh..wh..opq") only hide what lower layers made; other ".wh..wh.*"
 * (aufs bookkeeping) entries are ignored. Symlink targets are stored
 * verbatim and never followed.
 */
#ifndef LTTLE_ROOTFS_H
#define LTTLE_ROOTFS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/util.h"

enum rootfs_format { ROOTFS_EXT4, ROOTFS_SQUASHFS };

int rootfs_format_parse(const char *s, enum rootfs_format *out);
const char *rootfs_format_name(enum rootfs_format f);

/* A file added on top of the flattened layers (the guest init, its
 * config). Parent directories are created as root:root 0755. */
struct rootfs_inject {
	const char *path;     /* absolute path inside the image */
	const char *src_path; /* host file to copy, or NULL to use data */
	const void *data;
	size_t len;
	mode_t mode;
};

/* Bounds against hostile layers; 0 picks the default. */
struct rootfs_limits {
	uint64_t max_entries;    /* default 1,000,000 */
	uint64_t max_file_size;  /* default 16 GiB */
	uint64_t max_total_size; /* default 64 GiB */
	uint32_t max_path_len;   /* default 4096 */
	uint64_t max_metadata;   /* in-memory tree; default 512 MiB */
};

struct rootfs_spec {
	enum rootfs_format format;
	const char *const *layers; /* layer blob paths, bottom first */
	size_t n_layers;
	const struct rootfs_inject *injects;
	size_t n_injects;
	uint64_t size;   /* ext4 image size; 0 = content + headroom */
	uint32_t headroom_pct;  /* ext4 auto size: free space as % of the content;
				   0 = 20 */
	uint64_t headroom_min;  /* ... and at least this many bytes; 0 = 16 MiB */
	uint32_t mtime_clamp; /* 0 = keep; otherwise clamp newer mtimes */
	struct rootfs_limits limits;
	struct lt_progress *progress; /* may be NULL */
};

struct rootfs_stats {
	uint64_t entries;     /* inodes in the final tree */
	uint64_t bytes;       /* file content bytes */
	uint64_t image_size;  /* bytes of the written image */
};

/* Writes the image atomically to out_path (temp + rename). On failure
 * nothing is left under out_path. stats may be NULL. */
int rootfs_build(const struct rootfs_spec *spec, const char *out_path,
		 struct rootfs_stats *stats);

#endif
