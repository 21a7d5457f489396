/* Block backends: a raw image, or a copy-on-write overlay over a shared
 * read-only base (many VMs share one rootfs).
 *
 * Overlay file format (version 1, little-endian):
 *   0    8  magic "LTOVRLY1"
 *   8    4  version (1)
 *   12   4  cluster size in bytes (4096)
 *   16   8  virtual size (= base size)
 *   24   8  base size, 32: 8 base mtime (ns) - the base's identity; an
 *           overlay never opens over a different or modified base
 *   40   8  bitmap offset (4096), 48: 8 bitmap bytes
 *   56   8  data offset (page aligned, after the bitmap)
 *   ...     zero up to 4096
 *   bitmap: bit i (byte i/8, bit i%8) set = cluster i lives in the overlay
 *   data:   cluster i at data offset + i * cluster size; clusters never
 *           written are holes, so the file stays sparse.
 * A write to a cluster not yet in the overlay copies the cluster up from
 * the base (read, merge, write whole) and sets its bit. Bits reach the file
 * on flush (after an fdatasync of the data) and on close: like a volatile
 * write cache, data the guest never flushed may be lost in a crash, but the
 * file is never inconsistent (a bit is only persisted after its data). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/virtio.h"

#define OVL_MAGIC "LTOVRLY1"
#define OVL_VERSION 1
#define OVL_CLUSTER 4096ULL
#define OVL_HDR 4096ULL

struct lt_blk_backend {
	int fd;     /* raw image or base */
	int ovl_fd; /* -1 without overlay */
	bool ro;
	uint64_t size;
	uint8_t *bitmap;
	uint64_t bitmap_bytes;
	uint64_t data_off;
	bool bitmap_dirty;
	char *path;
};

struct ovl_hdr {
	char magic[8];
	uint32_t version, cluster;
	uint64_t vsize, base_size, base_mtime, bitmap_off, bitmap_bytes, data_off;
};

uint64_t lt_blk_size(const struct lt_blk_backend *b) { return b->size; }
bool lt_blk_read_only(const struct lt_blk_backend *b) { return b->ro; }

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) { /* past EOF of a sparse file reads as zeroes */
			memset(p, 0, n);
			return 0;
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int ovl_create(const char *path, const struct stat *bst)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return lt_fail_errno("%s", path);
	struct ovl_hdr h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, OVL_MAGIC, 8);
	h.version = OVL_VERSION;
	h.cluster = (uint32_t)OVL_CLUSTER;
	h.vsize = h.base_size = (uint64_t)bst->st_size;
	h.base_mtime = (uint64_t)bst->st_mtim.tv_sec * 1000000000ULL + (uint64_t)bst->st_mtim.tv_nsec;
	uint64_t clusters = (h.vsize + OVL_CLUSTER - 1) / OVL_CLUSTER;
	h.bitmap_off = OVL_HDR;
	h.bitmap_bytes = (clusters + 7) / 8;
	h.data_off = OVL_HDR + ((h.bitmap_bytes + 4095) & ~4095ULL);
	uint8_t page[OVL_HDR];
	memset(page, 0, sizeof(page));
	memcpy(page, &h, sizeof(h));
	if (pwrite_all(fd, page, sizeof(page), 0) < 0 || ftruncate(fd, (off_t)h.data_off) < 0 ||
	    fsync(fd) < 0) {
		lt_fail_errno("%s: writing overlay header", path);
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

static int ovl_open(struct lt_blk_backend *b, const char *path, const struct stat *bst)
{
	if (access(path, F_OK) != 0 && ovl_create(path, bst) < 0)
		return -1;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("%s", path);
	struct ovl_hdr h;
	struct stat ost;
	if (fstat(fd, &ost) < 0 || pread_all(fd, &h, sizeof(h), 0) < 0) {
		close(fd);
		return lt_fail_errno("%s", path);
	}
	uint64_t mtime = (uint64_t)bst->st_mtim.tv_sec * 1000000000ULL + (uint64_t)bst->st_mtim.tv_nsec;
	const char *bad = NULL;
	uint64_t clusters = (h.vsize + OVL_CLUSTER - 1) / OVL_CLUSTER;
	if (memcmp(h.magic, OVL_MAGIC, 8))
		bad = "not an lttle overlay (bad magic)";
	else if (h.version != OVL_VERSION)
		bad = "unsupported overlay version";
	else if (h.cluster != OVL_CLUSTER)
		bad = "unsupported cluster size";
	else if (h.base_size != (uint64_t)bst->st_size || h.vsize != h.base_size)
		bad = "base image size changed since the overlay was made";
	else if (h.base_mtime != mtime)
		bad = "base image modified since the overlay was made";
	else if (h.bitmap_off != OVL_HDR || h.bitmap_bytes != (clusters + 7) / 8 ||
		 h.data_off < h.bitmap_off + h.bitmap_bytes || h.data_off % 4096 ||
		 (uint64_t)ost.st_size < h.bitmap_off + h.bitmap_bytes)
		bad = "corrupt overlay header";
	if (bad) {
		close(fd);
		return lt_fail("%s: %s", path, bad);
	}
	b->bitmap = lt_calloc(1, h.bitmap_bytes ? h.bitmap_bytes : 1);
	if (!b->bitmap || pread_all(fd, b->bitmap, h.bitmap_bytes, h.bitmap_off) < 0) {
		close(fd);
		return b->bitmap ? lt_fail_errno("%s: reading bitmap", path) : -1;
	}
	b->bitmap_bytes = h.bitmap_bytes;
	b->data_off = h.data_off;
	b->ovl_fd = fd;
	return 0;
}

int lt_blk_open(const char *path, bool read_only, const char *overlay,
		struct lt_blk_backend **out)
{
	struct lt_blk_backend *b = lt_calloc(1, sizeof(*b));
	if (!b)
		return -1;
	b->ovl_fd = -1;
	b->ro = read_only;
	/* With an overlay the base is never written. */
	b->fd = open(path, ((read_only || overlay) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	struct stat st;
	if (b->fd < 0 || fstat(b->fd, &st) < 0) {
		lt_fail_errno("%s", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		lt_fail("%s: not a file or block device", path);
		goto fail;
	}
	b->size = (uint64_t)st.st_size & ~511ULL;
	if (overlay && ovl_open(b, overlay, &st) < 0)
		goto fail;
	b->path = lt_strdup(path);
	*out = b;
	return 0;
fail:
	lt_blk_close(b);
	return -1;
}

static bool bit(const struct lt_blk_backend *b, uint64_t c)
{
	return (b->bitmap[c / 8] >> (c % 8)) & 1;
}

int lt_blk_pread(struct lt_blk_backend *b, void *buf, size_t n, uint64_t off)
{
	if (off > b->size || n > b->size - off)
		return lt_fail("read beyond the end of the disk");
	if (b->ovl_fd < 0)
		return pread_all(b->fd, buf, n, off) < 0 ? lt_fail_errno("%s: read", b->path) : 0;
	uint8_t *p = buf;
	while (n) {
		uint64_t c = off / OVL_CLUSTER, in = off % OVL_CLUSTER;
		size_t k = (size_t)(OVL_CLUSTER - in) < n ? (size_t)(OVL_CLUSTER - in) : n;
		int r = bit(b, c) ? pread_all(b->ovl_fd, p, k, b->data_off + c * OVL_CLUSTER + in)
				  : pread_all(b->fd, p, k, off);
		if (r < 0)
			return lt_fail_errno("%s: read", b->path);
		p += k;
		off += k;
		n -= k;
	}
	return 0;
}

int lt_blk_pwrite(struct lt_blk_backend *b, const void *buf, size_t n, uint64_t off)
{
	if (b->ro)
		return lt_fail("disk is read-only");
	if (off > b->size || n > b->size - off)
		return lt_fail("write beyond the end of the disk");
	if (b->ovl_fd < 0)
		return pwrite_all(b->fd, buf, n, off) < 0 ? lt_fail_errno("%s: write", b->path) : 0;
	const uint8_t *p = buf;
	uint8_t tmp[OVL_CLUSTER];
	while (n) {
		uint64_t c = off / OVL_CLUSTER, in = off % OVL_CLUSTER;
		size_t k = (size_t)(OVL_CLUSTER - in) < n ? (size_t)(OVL_CLUSTER - in) : n;
		uint64_t dst = b->data_off + c * OVL_CLUSTER;
		int r;
		if (bit(b, c) || k == OVL_CLUSTER) {
			r = pwrite_all(b->ovl_fd, p, k, dst + in);
		} else {
			/* Copy up: the whole cluster from the base, merged. */
			uint64_t cstart = c * OVL_CLUSTER;
			size_t clen = b->size - cstart < OVL_CLUSTER ? (size_t)(b->size - cstart)
								     : (size_t)OVL_CLUSTER;
			memset(tmp, 0, sizeof(tmp));
			r = pread_all(b->fd, tmp, clen, cstart);
			if (r == 0) {
				memcpy(tmp + in, p, k);
				r = pwrite_all(b->ovl_fd, tmp, clen, dst);
			}
		}
		if (r < 0)
			return lt_fail_errno("%s: overlay write", b->path);
		if (!bit(b, c)) {
			b->bitmap[c / 8] |= (uint8_t)(1U << (c % 8));
			b->bitmap_dirty = true;
		}
		p += k;
		off += k;
		n -= k;
	}
	return 0;
}

int lt_blk_flush(struct lt_blk_backend *b)
{
	if (b->ovl_fd < 0)
		return b->ro || fdatasync(b->fd) == 0 ? 0 : lt_fail_errno("%s: flush", b->path);
	if (fdatasync(b->ovl_fd) < 0)
		return lt_fail_errno("%s: overlay flush", b->path);
	if (!b->bitmap_dirty)
		return 0;
	/* Data first, then the bits that point at it. */
	if (pwrite_all(b->ovl_fd, b->bitmap, b->bitmap_bytes, OVL_HDR) < 0 ||
	    fdatasync(b->ovl_fd) < 0)
		return lt_fail_errno("%s: overlay bitmap", b->path);
	b->bitmap_dirty = false;
	return 0;
}

void lt_blk_close(struct lt_blk_backend *b)
{
	if (!b)
		return;
	if (b->ovl_fd >= 0) {
		if (lt_blk_flush(b) < 0)
			lt_warn("%s", lt_errmsg());
		close(b->ovl_fd);
	}
	if (b->fd >= 0)
		close(b->fd);
	free(b->bitmap);
	free(b->path);
	free(b);
}
