/* ext4 writer: libext2fs in-process, no mkfs, no mount.
 *
 * Geometry comes from the tree (content + metadata + headroom). File data
 * bypasses libext2fs's per-block paths: blocks are allocated as long runs
 * from a cursor in the block bitmap and written with pwrite() on our own
 * descriptor in up to 1 MiB pieces; all-zero 4 KiB blocks become holes.
 * Extent trees of up to four extents are written straight into the inode;
 * longer ones go through the libext2fs extent API. Directories are
 * written as linear blocks (with checksum tails) in one piece each.
 */
#include "rootfs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#define BS 4096u
#define STAGE_BLOCKS 256u     /* 1 MiB of file data per write */
#define EXT_MAX_LEN 32768u    /* blocks in one initialized extent */
#define LINK_MAX_DIR 65000u
#define WRITEBACK_BLOCKS (64u << 20 >> 12) /* kick writeback every 64 MiB */
#define FAST_SYMLINK_MAX 59u
#define EXTRA_ISIZE ((uint16_t)(sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE))

struct run {
	uint64_t lblk, pblk;
	uint32_t len;
};

struct ext4w {
	ext2_filsys fs;
	blk64_t cursor;
	bool csum;
	uint8_t *stage;
	uint64_t stage_lblk;
	uint32_t stage_n;
	struct run *ext;
	size_t n_ext, cap_ext;
	uint64_t file_blocks;
	uint64_t unsynced;    /* blocks written since the last writeback kick */
	ext2_ino_t next_ino;
	uint8_t *dirbuf;
	size_t dir_cap;
};

static int e2fail(errcode_t err, const char *fmt, ...) LT_PRINTF(2, 3);
static int e2fail(errcode_t err, const char *fmt, ...)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, initialize_ext2_error_table);
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return lt_fail("ext4: %s: %s", msg, error_message(err));
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return lt_fail_errno("ext4: writing the image");
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static bool block_is_zero(const uint8_t *p)
{
	return p[0] == 0 && !memcmp(p, p + 1, BS - 1);
}

/* ---- sizing ---------------------------------------------------------- */

struct estimate {
	struct rf_tree *tree;
	uint64_t inodes, blocks;
};

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static int estimate_fn(struct rf_dentry *d, unsigned depth, void *ctx)
{
	(void)depth;
	struct estimate *e = ctx;
	struct rf_inode *in = d->inode;
	if (!rf_inode_first_visit(e->tree, in))
		return 0;
	e->inodes++;
	if (in->n_xattrs)
		e->blocks++;
	if (rf_is_reg(in)) {
		uint64_t nb = div_up(in->data_size, BS);
		uint64_t extents = div_up(nb, EXT_MAX_LEN) + 2;
		e->blocks += nb + (extents > 4 ? div_up(extents, 340) + 1 : 0);
	} else if (rf_is_lnk(in) && in->size > FAST_SYMLINK_MAX) {
		e->blocks++;
	} else if (rf_is_dir(in)) {
		uint64_t bytes = 24;
		for (struct rf_dentry *c = d->children; c; c = c->next)
			bytes += (8u + c->name_len + 3u) & ~3u;
		/* Each block may waste up to one maximal entry. */
		e->blocks += div_up(bytes, BS - 12 - 264) + 1;
	}
	return 0;
}

/* ---- allocation and extents ------------------------------------------ */

/* Free run at or after `from`, skipping gaps shorter than `min_len`
 * (the holes flex_bg leaves between group tables) so files stay in one
 * piece. ENOENT when there is none. */
static errcode_t find_run(ext2fs_block_bitmap map, blk64_t from, blk64_t end, uint64_t want,
			  uint64_t min_len, blk64_t *start, uint64_t *len)
{
	while (from <= end) {
		blk64_t first, next;
		errcode_t err = ext2fs_find_first_zero_block_bitmap2(map, from, end, &first);
		if (err)
			return err;
		blk64_t last = want - 1 > end - first ? end : first + want - 1;
		uint64_t n = ext2fs_find_first_set_block_bitmap2(map, first, last, &next) == 0
				     ? next - first : last - first + 1;
		if (n >= min_len || n == want) {
			*start = first;
			*len = n;
			return 0;
		}
		from = first + n;
	}
	return ENOENT;
}

/* Up to `want` contiguous free blocks, from the cursor onwards. */
static int alloc_run(struct ext4w *w, uint64_t want, blk64_t *start, uint64_t *got)
{
	ext2fs_block_bitmap map = w->fs->block_map;
	blk64_t first_data = w->fs->super->s_first_data_block;
	blk64_t end = ext2fs_blocks_count(w->fs->super) - 1;
	uint64_t min_len = want < 64 ? want : 64;
	errcode_t err = find_run(map, w->cursor, end, want, min_len, start, got);
	if (err == ENOENT) /* nearly full: take any gap, from the start */
		err = find_run(map, first_data, end, want, 1, start, got);
	if (err) {
		char hs[16];
		return lt_fail("ext4: the image is full (%s): use a larger size",
			       lt_human_size(ext2fs_blocks_count(w->fs->super) * BS, hs, sizeof(hs)));
	}
	ext2fs_block_alloc_stats_range(w->fs, *start, (blk_t)*got, +1);
	w->cursor = *start + *got;
	return 0;
}

static int add_extent(struct ext4w *w, uint64_t lblk, uint64_t pblk, uint64_t len)
{
	while (len) {
		struct run *last = w->n_ext ? &w->ext[w->n_ext - 1] : NULL;
		if (last && last->lblk + last->len == lblk && last->pblk + last->len == pblk &&
		    last->len < EXT_MAX_LEN) {
			uint64_t n = EXT_MAX_LEN - last->len < len ? EXT_MAX_LEN - last->len : len;
			last->len += (uint32_t)n;
			lblk += n;
			pblk += n;
			len -= n;
			continue;
		}
		if (w->n_ext == w->cap_ext) {
			size_t cap = w->cap_ext ? w->cap_ext * 2 : 16;
			struct run *v = lt_realloc(w->ext, cap * sizeof(*v));
			if (!v)
				return -1;
			w->ext = v;
			w->cap_ext = cap;
		}
		uint64_t n = len < EXT_MAX_LEN ? len : EXT_MAX_LEN;
		w->ext[w->n_ext++] = (struct run){lblk, pblk, (uint32_t)n};
		lblk += n;
		pblk += n;
		len -= n;
	}
	return 0;
}

/* Allocates and writes n blocks of buf at logical block lblk. */
static int write_blocks(struct ext4w *w, int fd, const uint8_t *buf, uint64_t lblk, uint64_t n)
{
	while (n) {
		blk64_t p = 0;
		uint64_t got = 0;
		if (alloc_run(w, n, &p, &got) < 0 || pwrite_all(fd, buf, got * BS, p * BS) < 0 ||
		    add_extent(w, lblk, p, got) < 0)
			return -1;
		w->file_blocks += got;
		w->unsynced += got;
		buf += got * BS;
		lblk += got;
		n -= got;
	}
	return 0;
}

/* ---- inodes ---------------------------------------------------------- */

static void put_time(int64_t sec, uint32_t nsec, __u32 *lo, __u32 *extra)
{
	*lo = (__u32)sec;
	*extra = (__u32)(((sec - (int32_t)sec) >> 32) & 3) | (nsec << 2);
}

static void fill_inode(const struct rf_inode *in, struct ext2_inode_large *li, uint16_t links)
{
	memset(li, 0, sizeof(*li));
	li->i_mode = (__u16)in->mode;
	li->i_uid = (__u16)in->uid;
	ext2fs_set_i_uid_high(*li, in->uid >> 16);
	li->i_gid = (__u16)in->gid;
	ext2fs_set_i_gid_high(*li, in->gid >> 16);
	li->i_links_count = links;
	li->i_extra_isize = EXTRA_ISIZE;
	put_time(in->mtime, in->mtime_ns, &li->i_mtime, &li->i_mtime_extra);
	put_time(in->mtime, in->mtime_ns, &li->i_atime, &li->i_atime_extra);
	put_time(in->mtime, in->mtime_ns, &li->i_ctime, &li->i_ctime_extra);
	put_time(in->mtime, in->mtime_ns, &li->i_crtime, &li->i_crtime_extra);
}

static int write_inode(struct ext4w *w, ext2_ino_t ino, struct ext2_inode_large *li)
{
	errcode_t err = ext2fs_write_inode_full(w->fs, ino, EXT2_INODE(li), sizeof(*li));
	return err ? e2fail(err, "writing inode %u", ino) : 0;
}

/* Puts w->ext into the inode (in i_block when it fits, else through the
 * extent API, which allocates index blocks) and writes the inode. */
static int put_extents(struct ext4w *w, ext2_ino_t ino, struct ext2_inode_large *li)
{
	li->i_flags |= EXT4_EXTENTS_FL;
	struct ext3_extent_header *eh = (struct ext3_extent_header *)li->i_block;
	eh->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
	eh->eh_max = ext2fs_cpu_to_le16(4);
	eh->eh_depth = 0;
	eh->eh_entries = 0;
	errcode_t err = ext2fs_iblk_set(w->fs, EXT2_INODE(li), w->file_blocks);
	if (err)
		return e2fail(err, "inode %u block count", ino);
	if (w->n_ext <= 4) {
		struct ext3_extent *ex = EXT_FIRST_EXTENT(eh);
		for (size_t i = 0; i < w->n_ext; i++) {
			ex[i].ee_block = ext2fs_cpu_to_le32((__u32)w->ext[i].lblk);
			ex[i].ee_len = ext2fs_cpu_to_le16((__u16)w->ext[i].len);
			ex[i].ee_start = ext2fs_cpu_to_le32((__u32)w->ext[i].pblk);
			ex[i].ee_start_hi = ext2fs_cpu_to_le16((__u16)(w->ext[i].pblk >> 32));
		}
		eh->eh_entries = ext2fs_cpu_to_le16((__u16)w->n_ext);
		return write_inode(w, ino, li);
	}
	if (write_inode(w, ino, li) < 0)
		return -1;
	ext2_extent_handle_t h;
	if ((err = ext2fs_extent_open2(w->fs, ino, EXT2_INODE(li), &h)))
		return e2fail(err, "opening the extent tree of inode %u", ino);
	for (size_t i = 0; i < w->n_ext && !err; i++) {
		struct ext2fs_extent e = {.e_pblk = w->ext[i].pblk, .e_lblk = w->ext[i].lblk,
					  .e_len = w->ext[i].len};
		err = ext2fs_extent_insert(h, EXT2_EXTENT_INSERT_AFTER, &e);
		if (!err)
			err = ext2fs_extent_fix_parents(h);
	}
	ext2fs_extent_free(h);
	if (err)
		return e2fail(err, "building the extent tree of inode %u", ino);
	return write_inode(w, ino, li);
}

static int put_xattrs(struct ext4w *w, const struct rf_inode *in)
{
	if (!in->n_xattrs)
		return 0;
	struct ext2_xattr_handle *h;
	errcode_t err = ext2fs_xattrs_open(w->fs, in->ino, &h);
	if (err)
		return e2fail(err, "xattrs of inode %u", in->ino);
	err = ext2fs_xattrs_read(h);
	struct rf_xattr_it it = {in->xattrs, in->xattrs + in->xattrs_len};
	const char *name;
	const void *value;
	size_t len;
	while (!err && rf_xattr_next(&it, &name, &value, &len))
		err = ext2fs_xattr_set(h, name, value, len);
	errcode_t cerr = ext2fs_xattrs_close(&h);
	if (err || cerr)
		return e2fail(err ? err : cerr, "xattrs of inode %u", in->ino);
	return 0;
}

/* ---- regular files (pass 2) ------------------------------------------ */

static int stage_flush(struct ext4w *w, int fd)
{
	uint32_t i = 0;
	while (i < w->stage_n) {
		if (block_is_zero(w->stage + (size_t)i * BS)) {
			i++;
			continue;
		}
		uint32_t j = i + 1;
		while (j < w->stage_n && !block_is_zero(w->stage + (size_t)j * BS))
			j++;
		if (write_blocks(w, fd, w->stage + (size_t)i * BS, w->stage_lblk + i, j - i) < 0)
			return -1;
		i = j;
	}
	w->stage_n = 0;
	return 0;
}

/* The staging slot of logical block lblk (zeroed when new). */
static uint8_t *stage_block(struct ext4w *w, int fd, uint64_t lblk)
{
	if (w->stage_n && lblk >= w->stage_lblk && lblk < w->stage_lblk + w->stage_n)
		return w->stage + (size_t)(lblk - w->stage_lblk) * BS;
	if (!w->stage_n || lblk != w->stage_lblk + w->stage_n || w->stage_n == STAGE_BLOCKS) {
		if (stage_flush(w, fd) < 0)
			return NULL;
		w->stage_lblk = lblk;
	}
	uint8_t *p = w->stage + (size_t)w->stage_n * BS;
	memset(p, 0, BS);
	w->stage_n++;
	return p;
}

static int ext4_file(struct rf_build *b, struct rf_inode *in, struct rf_data *d)
{
	struct ext4w *w = b->w;
	if (in->size > (uint64_t)UINT32_MAX * BS)
		return lt_fail("ext4: '%s' is too large for ext4", d->what);
	w->n_ext = 0;
	w->stage_n = 0;
	w->file_blocks = 0;
	const void *buf;
	size_t len;
	uint64_t off;
	int r;
	while ((r = d->next(d, &buf, &len, &off)) > 0) {
		const uint8_t *p = buf;
		while (len) {
			uint8_t *blk = stage_block(w, b->fd, off / BS);
			if (!blk)
				return -1;
			size_t bo = (size_t)(off % BS), n = BS - bo < len ? BS - bo : len;
			memcpy(blk + bo, p, n);
			p += n;
			off += n;
			len -= n;
		}
	}
	if (r < 0 || stage_flush(w, b->fd) < 0)
		return -1;
	/* Start writeback as we go, so the final fsync has little left. */
	if (w->unsynced >= WRITEBACK_BLOCKS) {
		sync_file_range(b->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		w->unsynced = 0;
	}
	struct ext2_inode_large li;
	fill_inode(in, &li, (uint16_t)in->nlink);
	errcode_t err = ext2fs_inode_size_set(w->fs, EXT2_INODE(&li), in->size);
	if (err)
		return e2fail(err, "size of '%s'", d->what);
	if (put_extents(w, in->ino, &li) < 0 || put_xattrs(w, in) < 0)
		return -1;
	in->written = 1;
	return 0;
}

/* ---- everything else (finish) ---------------------------------------- */

struct dirw {
	uint8_t *blk;   /* current block */
	size_t off;     /* next free byte in it */
	size_t last;    /* offset of the last entry in it */
	size_t limit;   /* usable bytes (minus the checksum tail) */
	size_t nblocks;
};

static int dir_grow(struct ext4w *w, struct dirw *dw)
{
	size_t need = (dw->nblocks + 1) * BS;
	if (need > w->dir_cap) {
		size_t cap = w->dir_cap ? w->dir_cap * 2 : 16 * BS;
		while (cap < need)
			cap *= 2;
		uint8_t *p = lt_realloc(w->dirbuf, cap);
		if (!p)
			return -1;
		w->dirbuf = p;
		w->dir_cap = cap;
	}
	dw->blk = w->dirbuf + dw->nblocks * BS;
	memset(dw->blk, 0, BS);
	dw->nblocks++;
	dw->off = 0;
	dw->last = 0;
	return 0;
}

static int dir_end_block(struct ext4w *w, struct dirw *dw, ext2_ino_t ino)
{
	struct ext2_dir_entry *last = (struct ext2_dir_entry *)(dw->blk + dw->last);
	if (dw->off == 0) /* an empty block: one unused entry spanning it */
		last->inode = 0;
	last->rec_len = (__u16)(dw->limit - dw->last);
	if (!w->csum)
		return 0;
	ext2fs_initialize_dirent_tail(w->fs, EXT2_DIRENT_TAIL(dw->blk, BS));
	errcode_t err = ext2fs_dir_block_csum_set(w->fs, ino, (struct ext2_dir_entry *)dw->blk);
	return err ? e2fail(err, "directory %u checksum", ino) : 0;
}

static int dir_add(struct ext4w *w, struct dirw *dw, ext2_ino_t dir, ext2_ino_t ino,
		   const char *name, size_t len, int type)
{
	size_t rec = (8 + len + 3) & ~(size_t)3;
	if (dw->off + rec > dw->limit) {
		if (dir_end_block(w, dw, dir) < 0 || dir_grow(w, dw) < 0)
			return -1;
	}
	struct ext2_dir_entry *de = (struct ext2_dir_entry *)(dw->blk + dw->off);
	de->inode = ino;
	de->rec_len = (__u16)rec;
	ext2fs_dirent_set_name_len(de, (int)len);
	ext2fs_dirent_set_file_type(de, type);
	memcpy(de->name, name, len);
	dw->last = dw->off;
	dw->off += rec;
	return 0;
}

static int file_type(const struct rf_inode *in)
{
	switch (in->mode & S_IFMT) {
	case S_IFREG: return EXT2_FT_REG_FILE;
	case S_IFDIR: return EXT2_FT_DIR;
	case S_IFCHR: return EXT2_FT_CHRDEV;
	case S_IFBLK: return EXT2_FT_BLKDEV;
	case S_IFIFO: return EXT2_FT_FIFO;
	case S_IFSOCK: return EXT2_FT_SOCK;
	case S_IFLNK: return EXT2_FT_SYMLINK;
	}
	return EXT2_FT_UNKNOWN;
}

static int write_dir(struct rf_build *b, struct rf_dentry *d)
{
	struct ext4w *w = b->w;
	struct rf_inode *in = d->inode;
	ext2_ino_t ino = in->ino;
	struct dirw dw = {.limit = BS - (w->csum ? sizeof(struct ext2_dir_entry_tail) : 0)};
	if (dir_grow(w, &dw) < 0)
		return -1;
	ext2_ino_t parent = d->parent ? d->parent->inode->ino : ino;
	if (dir_add(w, &dw, ino, ino, ".", 1, EXT2_FT_DIR) < 0 ||
	    dir_add(w, &dw, ino, parent, "..", 2, EXT2_FT_DIR) < 0)
		return -1;
	uint32_t subdirs = 0;
	for (struct rf_dentry *c = d->children; c; c = c->next) {
		if (dir_add(w, &dw, ino, c->inode->ino, c->name, c->name_len, file_type(c->inode)) < 0)
			return -1;
		subdirs += rf_is_dir(c->inode);
	}
	/* lost+found gets 16 KiB up front, as mke2fs does, so e2fsck can
	 * reconnect files without allocating. */
	bool lpf = d->parent == b->tree.root && !strcmp(d->name, "lost+found");
	while (lpf && dw.nblocks < 4)
		if (dir_end_block(w, &dw, ino) < 0 || dir_grow(w, &dw) < 0)
			return -1;
	if (dir_end_block(w, &dw, ino) < 0)
		return -1;
	w->n_ext = 0;
	w->file_blocks = 0;
	if (write_blocks(w, b->fd, w->dirbuf, 0, dw.nblocks) < 0)
		return -1;
	uint32_t links = 2 + subdirs;
	struct ext2_inode_large li;
	fill_inode(in, &li, (uint16_t)(links > LINK_MAX_DIR ? 1 : links));
	li.i_size = (__u32)(dw.nblocks * BS);
	li.i_size_high = (__u32)((uint64_t)dw.nblocks * BS >> 32);
	return put_extents(w, ino, &li);
}

static int write_symlink(struct rf_build *b, struct rf_inode *in)
{
	struct ext4w *w = b->w;
	struct ext2_inode_large li;
	fill_inode(in, &li, (uint16_t)in->nlink);
	li.i_size = (__u32)in->size;
	if (in->size <= FAST_SYMLINK_MAX) {
		memcpy(li.i_block, in->target, in->size);
		return write_inode(w, in->ino, &li);
	}
	uint8_t *blk = w->stage;
	memset(blk, 0, BS);
	memcpy(blk, in->target, in->size);
	w->n_ext = 0;
	w->file_blocks = 0;
	if (write_blocks(w, b->fd, blk, 0, 1) < 0)
		return -1;
	return put_extents(w, in->ino, &li);
}

static int write_special(struct ext4w *w, struct rf_inode *in)
{
	struct ext2_inode_large li;
	fill_inode(in, &li, (uint16_t)in->nlink);
	uint32_t maj = in->rdev_major, min = in->rdev_minor;
	if (S_ISCHR(in->mode) || S_ISBLK(in->mode)) {
		if (maj < 256 && min < 256)
			li.i_block[0] = ext2fs_cpu_to_le32(maj * 256 + min);
		else
			li.i_block[1] = ext2fs_cpu_to_le32((min & 0xff) | (maj << 8) |
							   ((min & ~0xffu) << 12));
	}
	return write_inode(w, in->ino, &li);
}

static int finish_fn(struct rf_dentry *d, unsigned depth, void *ctx)
{
	(void)depth;
	struct rf_build *b = ctx;
	struct ext4w *w = b->w;
	struct rf_inode *in = d->inode;
	if (!rf_inode_first_visit(&b->tree, in) || in->written)
		return 0;
	int r;
	if (rf_is_dir(in)) {
		r = write_dir(b, d);
	} else if (rf_is_lnk(in)) {
		r = write_symlink(b, in);
	} else if (rf_is_reg(in)) { /* empty files: never went through pass 2 */
		struct ext2_inode_large li;
		fill_inode(in, &li, (uint16_t)in->nlink);
		w->n_ext = 0;
		w->file_blocks = 0;
		r = put_extents(w, in->ino, &li);
	} else {
		r = write_special(w, in);
	}
	if (r < 0 || put_xattrs(w, in) < 0)
		return -1;
	in->written = 1;
	return 0;
}

/* ---- numbering ------------------------------------------------------- */

static int number_fn(struct rf_dentry *d, unsigned depth, void *ctx)
{
	(void)depth;
	struct ext4w *w = ctx;
	struct rf_inode *in = d->inode;
	if (in->ino)
		return 0;
	if (w->next_ino > w->fs->super->s_inodes_count)
		return lt_fail("ext4: out of inodes (internal sizing error)");
	in->ino = w->next_ino++;
	ext2fs_inode_alloc_stats2(w->fs, in->ino, +1, rf_is_dir(in));
	return 0;
}

static int number_inodes(struct rf_build *b, struct ext4w *w, struct rf_dentry *lpf)
{
	struct rf_tree *t = &b->tree;
	t->root->inode->ino = EXT2_ROOT_INO;
	ext2fs_inode_alloc_stats2(w->fs, EXT2_ROOT_INO, +1, 1);
	w->next_ino = EXT2_FIRST_INODE(w->fs->super);
	if (lpf && number_fn(lpf, 1, w) < 0)
		return -1;
	return rf_tree_walk(t, number_fn, w);
}

/* ---- open / finish / close ------------------------------------------- */

static void set_features(struct ext2_super_block *p, bool want_64bit)
{
	ext2fs_set_feature_xattr(p);
	ext2fs_set_feature_dir_index(p);
	ext2fs_set_feature_filetype(p);
	ext2fs_set_feature_extents(p);
	ext2fs_set_feature_flex_bg(p);
	if (want_64bit)
		ext2fs_set_feature_64bit(p);
	ext2fs_set_feature_sparse_super(p);
	ext2fs_set_feature_large_file(p);
	ext2fs_set_feature_huge_file(p);
	ext2fs_set_feature_dir_nlink(p);
	ext2fs_set_feature_extra_isize(p);
	ext2fs_set_feature_metadata_csum(p);
}

static int make_fs(struct rf_build *b, struct ext4w *w, uint64_t need, uint64_t inodes)
{
	uint64_t blocks;
	if (b->spec->size) {
		blocks = b->spec->size / BS;
		if (b->spec->size / 16384 > inodes)
			inodes = b->spec->size / 16384;
	} else {
		/* content + 20% (at least 16 MiB) + inode tables */
		uint64_t pct = b->spec->headroom_pct ? b->spec->headroom_pct : 20;
		uint64_t min = b->spec->headroom_min ? b->spec->headroom_min / BS : 4096;
		uint64_t head = need * pct / 100 > min ? need * pct / 100 : min;
		blocks = need + head + div_up(inodes * 256, BS) + 64;
	}
	if (inodes > UINT32_MAX - 65536)
		return lt_fail("ext4: too many inodes");
	for (int attempt = 0; attempt < 16; attempt++) {
		struct ext2_super_block p;
		memset(&p, 0, sizeof(p));
		ext2fs_blocks_count_set(&p, blocks);
		p.s_log_block_size = 2; /* 1024 << 2 */
		p.s_rev_level = EXT2_DYNAMIC_REV;
		p.s_inode_size = 256;
		p.s_inodes_count = (__u32)inodes;
		p.s_log_groups_per_flex = 4;
		p.s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
		p.s_min_extra_isize = p.s_want_extra_isize = EXTRA_ISIZE;
		p.s_max_mnt_count = (__u16)-1;
		set_features(&p, true);
		ext2_filsys fs;
		errcode_t err = ext2fs_initialize(b->tmp_path, EXT2_FLAG_64BITS, &p, unix_io_manager, &fs);
		if (err)
			return e2fail(err, "creating a %llu-block filesystem", (unsigned long long)blocks);
		if ((err = ext2fs_allocate_tables(fs))) {
			ext2fs_free(fs);
			return e2fail(err, "allocating group tables");
		}
		uint64_t free_blocks = ext2fs_free_blocks_count(fs->super);
		if (free_blocks >= need) {
			w->fs = fs;
			return 0;
		}
		ext2fs_free(fs);
		if (b->spec->size) {
			char a[16], c[16];
			return lt_fail("ext4: the content needs about %s but the image size is %s",
				       lt_human_size((need + (blocks - free_blocks)) * BS, a, sizeof(a)),
				       lt_human_size(b->spec->size, c, sizeof(c)));
		}
		blocks += need - free_blocks + need / 16 + 256;
	}
	return lt_fail("ext4: cannot size the filesystem");
}

static int ext4_open(struct rf_build *b)
{
	struct ext4w *w = lt_calloc(1, sizeof(*w));
	if (!w)
		return -1;
	b->w = w;
	if (!(w->stage = lt_malloc((size_t)STAGE_BLOCKS * BS)))
		return -1;
	struct rf_dentry *lpf = rf_tree_ensure_dir(&b->tree, "lost+found", 0700);
	if (!lpf)
		return -1;
	if (!rf_is_dir(lpf->inode))
		lpf = NULL;
	struct estimate est = {.tree = &b->tree};
	rf_tree_new_walk(&b->tree);
	if (rf_tree_walk(&b->tree, estimate_fn, &est) < 0)
		return -1;
	b->stats.entries = est.inodes;
	if (make_fs(b, w, est.blocks + 16, est.inodes + est.inodes / 8 + 64 + EXT2_GOOD_OLD_FIRST_INO) < 0)
		return -1;
	ext2_filsys fs = w->fs;
	/* Sparse from the start: libext2fs reads inode table blocks back. */
	if (ftruncate(b->fd, (off_t)(ext2fs_blocks_count(fs->super) * BS)) < 0)
		return lt_fail_errno("ext4: sizing the image");
	w->csum = ext2fs_has_feature_metadata_csum(fs->super);
	fs->super->s_checksum_type = EXT2_CRC32C_CHKSUM;
	memcpy(fs->super->s_uuid, b->uuid, sizeof(fs->super->s_uuid));
	ext2fs_init_csum_seed(fs);
	memcpy(fs->super->s_hash_seed, b->uuid, sizeof(fs->super->s_hash_seed));
	fs->super->s_hash_seed[0] ^= 0x5a5a5a5a;
	fs->super->s_def_hash_version = EXT2_HASH_HALF_MD4;
	fs->super->s_mkfs_time = fs->super->s_lastcheck = (__u32)b->fs_time;
	fs->now = (time_t)b->fs_time;
	w->cursor = fs->super->s_first_data_block;
	return number_inodes(b, w, lpf);
}

/* Per-group inode counts and the unused-inode watermark. (The library's
 * ext2fs_calculate_summary_stats() in e2fsprogs 1.47.0 gets the watermark
 * wrong for a group whose last inode is in use: it reports the whole
 * table unused, which e2fsck rejects.) */
static void inode_summary(ext2_filsys fs)
{
	uint32_t ipg = fs->super->s_inodes_per_group;
	uint64_t total_free = 0;
	for (dgrp_t g = 0; g < fs->group_desc_count; g++) {
		uint32_t used = 0, last = 0;
		for (uint32_t i = 1; i <= ipg; i++) {
			if (ext2fs_test_inode_bitmap2(fs->inode_map, (ext2_ino_t)g * ipg + i)) {
				used++;
				last = i;
			}
		}
		ext2fs_bg_free_inodes_count_set(fs, g, ipg - used);
		total_free += ipg - used;
		if (used) {
			ext2fs_bg_flags_clear(fs, g, EXT2_BG_INODE_UNINIT);
			ext2fs_bg_itable_unused_set(fs, g, ipg - last);
		} else {
			ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_UNINIT);
			ext2fs_bg_itable_unused_set(fs, g, ipg);
		}
		ext2fs_group_desc_csum_set(fs, g);
	}
	fs->super->s_free_inodes_count = (__u32)total_free;
}

static int ext4_finish(struct rf_build *b)
{
	struct ext4w *w = b->w;
	ext2_filsys fs = w->fs;
	rf_tree_new_walk(&b->tree);
	if (rf_tree_walk(&b->tree, finish_fn, b) < 0)
		return -1;
	/* Reserved inodes (bad blocks, journal, resize...), as mke2fs. */
	for (ext2_ino_t i = 1; i < EXT2_FIRST_INODE(fs->super); i++)
		if (i != EXT2_ROOT_INO)
			ext2fs_inode_alloc_stats2(fs, i, +1, 0);
	errcode_t err = ext2fs_update_bb_inode(fs, NULL);
	if (err)
		return e2fail(err, "writing the bad-blocks inode");
	/* A fresh sparse file: every inode table reads as zeroes. */
	for (dgrp_t g = 0; g < fs->group_desc_count; g++) {
		ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_ZEROED);
		ext2fs_group_desc_csum_set(fs, g);
	}
	if ((err = ext2fs_calculate_summary_stats(fs, 0)))
		return e2fail(err, "computing summary counts");
	inode_summary(fs);
	ext2fs_mark_super_dirty(fs);
	uint64_t size = ext2fs_blocks_count(fs->super) * BS;
	err = ext2fs_close2(fs, EXT2_FLAG_FLUSH_NO_SYNC);
	w->fs = NULL;
	if (err)
		return e2fail(err, "writing the filesystem metadata");
	if (ftruncate(b->fd, (off_t)size) < 0)
		return lt_fail_errno("ext4: sizing the image");
	b->stats.image_size = size;
	return 0;
}

static void ext4_close(struct rf_build *b)
{
	struct ext4w *w = b->w;
	if (!w)
		return;
	if (w->fs)
		ext2fs_free(w->fs);
	free(w->stage);
	free(w->ext);
	free(w->dirbuf);
	free(w);
	b->w = NULL;
}

const struct rf_writer_ops rf_ext4_ops = {
	.open = ext4_open,
	.file = ext4_file,
	.finish = ext4_finish,
	.close = ext4_close,
};
