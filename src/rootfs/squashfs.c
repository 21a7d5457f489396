/* squashfs writer: libsquashfs (zstd) in-process.
 *
 * File data goes through the block processor (parallel compression,
 * fragments, sparse and duplicate detection) as pass 2 streams it. At the
 * end the tree is serialised children-first: inode table, directory
 * table, fragment, id and xattr tables, then the superblock. (No NFS
 * export table: a VM root is not exported, and it costs 8 bytes an inode.)
 */
#include "rootfs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqfs/block.h>
#include <sqfs/block_processor.h>
#include <sqfs/block_writer.h>
#include <sqfs/compressor.h>
#include <sqfs/dir_writer.h>
#include <sqfs/error.h>
#include <sqfs/frag_table.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/meta_writer.h>
#include <sqfs/super.h>
#include <sqfs/xattr.h>
#include <sqfs/xattr_writer.h>

#define SQ_BLOCK_SIZE (128u << 10)
#define SQ_DEVBLK 4096u
#define SQ_ZERO_LEN (64u << 10)
#define SQ_NO_XATTR 0xffffffffu

/* sqfs_file_t over the build's descriptor (owned by the build). */
struct fdfile {
	sqfs_file_t base;
	int fd;
	uint64_t size;
};

struct sqw {
	struct fdfile *file;
	sqfs_compressor_t *cmp, *uncmp;
	sqfs_block_writer_t *blkwr;
	sqfs_frag_table_t *frag;
	sqfs_block_processor_t *proc;
	sqfs_id_table_t *ids;
	sqfs_xattr_writer_t *xwr;
	sqfs_meta_writer_t *im, *dm;
	sqfs_dir_writer_t *dirw;
	sqfs_super_t super;
	uint32_t next_ino;
	uint8_t *zeros;
	bool warned_xattr;
	bool finished; /* the block processor has been drained */
};

static const char *sqerr(int err)
{
	switch (err) {
	case SQFS_ERROR_ALLOC: return "out of memory";
	case SQFS_ERROR_IO: return "I/O error";
	case SQFS_ERROR_COMPRESSOR: return "compressor error";
	case SQFS_ERROR_OVERFLOW: return "size overflow";
	case SQFS_ERROR_OUT_OF_BOUNDS: return "out of bounds";
	case SQFS_ERROR_UNSUPPORTED: return "unsupported";
	case SQFS_ERROR_ARG_INVALID: return "invalid argument";
	case SQFS_ERROR_SEQUENCE: return "call sequence error";
	}
	return "internal error";
}

static int sqfail(int err, const char *what)
{
	return lt_fail("squashfs: %s: %s (%d)", what, sqerr(err), err);
}

/* ---- file ------------------------------------------------------------ */

static void fd_destroy(sqfs_object_t *o)
{
	free(o);
}

static int fd_read_at(sqfs_file_t *f, sqfs_u64 off, void *buf, size_t size)
{
	struct fdfile *ff = (struct fdfile *)f;
	if (off > ff->size || size > ff->size - off)
		return SQFS_ERROR_OUT_OF_BOUNDS;
	uint8_t *p = buf;
	while (size) {
		ssize_t n = pread(ff->fd, p, size, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return SQFS_ERROR_IO;
		p += n;
		size -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int fd_write_at(sqfs_file_t *f, sqfs_u64 off, const void *buf, size_t size)
{
	struct fdfile *ff = (struct fdfile *)f;
	const uint8_t *p = buf;
	uint64_t end = off + size;
	while (size) {
		ssize_t n = pwrite(ff->fd, p, size, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return SQFS_ERROR_IO;
		p += n;
		size -= (size_t)n;
		off += (uint64_t)n;
	}
	if (end > ff->size)
		ff->size = end;
	return 0;
}

static sqfs_u64 fd_get_size(const sqfs_file_t *f)
{
	return ((const struct fdfile *)f)->size;
}

static int fd_truncate(sqfs_file_t *f, sqfs_u64 size)
{
	struct fdfile *ff = (struct fdfile *)f;
	if (ftruncate(ff->fd, (off_t)size) < 0)
		return SQFS_ERROR_IO;
	ff->size = size;
	return 0;
}

static struct fdfile *fdfile_new(int fd)
{
	struct fdfile *f = lt_calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->base.base.destroy = fd_destroy;
	f->base.read_at = fd_read_at;
	f->base.write_at = fd_write_at;
	f->base.get_size = fd_get_size;
	f->base.truncate = fd_truncate;
	f->fd = fd;
	return f;
}

/* ---- open ------------------------------------------------------------ */

/* Compressor threads: $LTTLE_SQUASHFS_THREADS, else one per CPU. */
static unsigned workers(void)
{
	const char *s = getenv("LTTLE_SQUASHFS_THREADS");
	uint64_t v;
	if (s && lt_parse_u64(s, &v) == 0 && v >= 1 && v <= 64)
		return (unsigned)v;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 16 ? 16 : (unsigned)n;
}

static int compressor_level(void)
{
	const char *s = getenv("LTTLE_SQUASHFS_LEVEL");
	uint64_t v;
	if (s && lt_parse_u64(s, &v) == 0 && v >= SQFS_ZSTD_MIN_LEVEL && v <= SQFS_ZSTD_MAX_LEVEL)
		return (int)v;
	return SQFS_ZSTD_DEFAULT_LEVEL;
}

static int make_compressors(struct sqw *w)
{
	sqfs_compressor_config_t cfg;
	int err = sqfs_compressor_config_init(&cfg, SQFS_COMP_ZSTD, SQ_BLOCK_SIZE, 0);
	if (err)
		return sqfail(err, "zstd configuration");
	cfg.level = (sqfs_u32)compressor_level();
	if ((err = sqfs_compressor_create(&cfg, &w->cmp)))
		return sqfail(err, "creating the zstd compressor");
	cfg.flags |= SQFS_COMP_FLAG_UNCOMPRESS;
	if ((err = sqfs_compressor_create(&cfg, &w->uncmp)))
		return sqfail(err, "creating the zstd decompressor");
	return 0;
}

static int sq_open(struct rf_build *b)
{
	struct sqw *w = lt_calloc(1, sizeof(*w));
	if (!w)
		return -1;
	b->w = w;
	if (!(w->zeros = lt_calloc(1, SQ_ZERO_LEN)) || !(w->file = fdfile_new(b->fd)))
		return -1;
	sqfs_file_t *file = &w->file->base;
	if (make_compressors(w) < 0)
		return -1;
	uint32_t mtime = b->fs_time > UINT32_MAX ? UINT32_MAX : (uint32_t)b->fs_time;
	int err = sqfs_super_init(&w->super, SQ_BLOCK_SIZE, mtime, SQFS_COMP_ZSTD);
	if (!err)
		err = sqfs_super_write(&w->super, file);
	if (err)
		return sqfail(err, "writing the superblock");
	err = w->cmp->write_options(w->cmp, file);
	if (err < 0)
		return sqfail(err, "writing compressor options");
	if (err > 0)
		w->super.flags |= SQFS_FLAG_COMPRESSOR_OPTIONS;
	if (!(w->blkwr = sqfs_block_writer_create(file, SQ_DEVBLK, 0)) ||
	    !(w->frag = sqfs_frag_table_create(0)) || !(w->ids = sqfs_id_table_create(0)) ||
	    !(w->xwr = sqfs_xattr_writer_create(0)) ||
	    !(w->im = sqfs_meta_writer_create(file, w->cmp, 0)) ||
	    !(w->dm = sqfs_meta_writer_create(file, w->cmp, SQFS_META_WRITER_KEEP_IN_MEMORY)) ||
	    !(w->dirw = sqfs_dir_writer_create(w->dm, 0)))
		return lt_fail("squashfs: out of memory setting up the writer");
	/* One compressor per core; a deep queue rides out files whose
	 * blocks compress slowly (the output is written in order). */
	unsigned nw = workers();
	unsigned backlog = 10 * nw;
	sqfs_block_processor_desc_t desc = {
		.size = sizeof(desc),
		.max_block_size = SQ_BLOCK_SIZE,
		.num_workers = nw,
		.max_backlog = backlog,
		.cmp = w->cmp,
		.wr = w->blkwr,
		.tbl = w->frag,
		.file = file,
		.uncmp = w->uncmp,
	};
	if ((err = sqfs_block_processor_create_ex(&desc, &w->proc)))
		return sqfail(err, "creating the block processor");
	return 0;
}

/* ---- pass 2 ---------------------------------------------------------- */

static int feed_zeros(struct sqw *w, uint64_t n)
{
	while (n) {
		size_t k = n < SQ_ZERO_LEN ? (size_t)n : SQ_ZERO_LEN;
		int err = sqfs_block_processor_append(w->proc, w->zeros, k);
		if (err)
			return sqfail(err, "compressing file data");
		n -= k;
	}
	return 0;
}

static int feed_file(struct sqw *w, struct rf_inode *in, struct rf_data *d)
{
	const void *buf;
	size_t len;
	uint64_t off, pos = 0;
	int r, err;
	while ((r = d->next(d, &buf, &len, &off)) > 0) {
		if (off > pos && feed_zeros(w, off - pos) < 0)
			return -1;
		if (len && (err = sqfs_block_processor_append(w->proc, buf, len)))
			return sqfail(err, "compressing file data");
		pos = off + len;
	}
	if (r < 0 || feed_zeros(w, in->size - pos) < 0)
		return -1;
	return 0;
}

static int sq_file(struct rf_build *b, struct rf_inode *in, struct rf_data *d)
{
	struct sqw *w = b->w;
	int err = sqfs_block_processor_begin_file(w->proc, (sqfs_inode_generic_t **)&in->wdata,
						  NULL, 0);
	if (err)
		return sqfail(err, "starting a file");
	/* end_file even on failure: the processor must not be torn down
	 * in the middle of a file (it would leak the blocks in flight). */
	int r = feed_file(w, in, d);
	err = sqfs_block_processor_end_file(w->proc);
	if (r < 0)
		return -1;
	if (err)
		return sqfail(err, "finishing a file");
	in->written = 1;
	return 0;
}

/* ---- serialisation --------------------------------------------------- */

/* Numbers inodes the way squashfs packs best: every directory's
 * children get consecutive numbers (and adjacent inode-table slots, so a
 * directory needs few headers), subdirectories' subtrees come first, the
 * root last. order[] collects one dentry per inode in that order. */
static int number_dir(struct rf_build *b, struct rf_dentry *d, struct rf_dentry **order)
{
	struct sqw *w = b->w;
	struct rf_dentry **kids;
	size_t n;
	if (rf_dir_sorted(d, &kids, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (rf_is_dir(kids[i]->inode) && number_dir(b, kids[i], order) < 0) {
			free(kids);
			return -1;
		}
	for (size_t i = 0; i < n; i++)
		if (rf_inode_first_visit(&b->tree, kids[i]->inode)) {
			order[w->next_ino - 1] = kids[i];
			kids[i]->inode->ino = w->next_ino++;
		}
	free(kids);
	return 0;
}

static int xattr_index(struct sqw *w, const struct rf_inode *in, sqfs_u32 *idx)
{
	*idx = SQ_NO_XATTR;
	if (!in->n_xattrs)
		return 0;
	int err = sqfs_xattr_writer_begin(w->xwr, 0);
	struct rf_xattr_it it = {in->xattrs, in->xattrs + in->xattrs_len};
	const char *name;
	const void *value;
	size_t len, added = 0;
	while (!err && rf_xattr_next(&it, &name, &value, &len)) {
		/* squashfs stores only user., trusted. and security. */
		if (sqfs_get_xattr_prefix_id(name) < 0) {
			if (!w->warned_xattr)
				lt_warn("squashfs cannot store xattr '%.64s'; skipping such xattrs", name);
			w->warned_xattr = true;
			continue;
		}
		err = sqfs_xattr_writer_add(w->xwr, name, value, len);
		added++;
	}
	sqfs_u32 out = SQ_NO_XATTR;
	if (!err)
		err = sqfs_xattr_writer_end(w->xwr, &out);
	if (err)
		return sqfail(err, "storing xattrs");
	if (added)
		*idx = out;
	return 0;
}

static sqfs_inode_generic_t *new_inode(size_t extra)
{
	sqfs_inode_generic_t *n = calloc(1, sizeof(*n) + extra);
	if (!n)
		lt_fail("squashfs: out of memory");
	return n;
}

static sqfs_inode_generic_t *dir_inode(struct rf_build *b, struct rf_dentry *d,
				       struct rf_dentry **kids, size_t n, sqfs_u32 xattr)
{
	struct sqw *w = b->w;
	int err = sqfs_dir_writer_begin(w->dirw, 0);
	uint32_t subdirs = 0;
	for (size_t i = 0; i < n && !err; i++) {
		struct rf_inode *c = kids[i]->inode;
		err = sqfs_dir_writer_add_entry(w->dirw, kids[i]->name, c->ino, c->ref,
						(sqfs_u16)c->mode);
		subdirs += rf_is_dir(c);
	}
	if (!err)
		err = sqfs_dir_writer_end(w->dirw);
	if (err) {
		sqfail(err, "writing a directory");
		return NULL;
	}
	uint32_t parent = d->parent ? d->parent->inode->ino : w->next_ino;
	sqfs_inode_generic_t *in = sqfs_dir_writer_create_inode(w->dirw, 0, xattr, parent);
	if (!in) {
		lt_fail("squashfs: out of memory");
		return NULL;
	}
	if (in->base.type == SQFS_INODE_DIR)
		in->data.dir.nlink = 2 + subdirs;
	else
		in->data.dir_ext.nlink = 2 + subdirs;
	return in;
}

static sqfs_inode_generic_t *other_inode(struct rf_inode *in)
{
	sqfs_inode_generic_t *n;
	switch (in->mode & S_IFMT) {
	case S_IFREG:
		if ((n = in->wdata)) {
			in->wdata = NULL;
			return n;
		}
		if ((n = new_inode(0))) { /* empty file */
			n->base.type = SQFS_INODE_FILE;
			n->data.file.fragment_index = 0xffffffff;
		}
		return n;
	case S_IFLNK:
		if ((n = new_inode(in->size))) {
			n->base.type = SQFS_INODE_SLINK;
			n->data.slink.nlink = in->nlink;
			n->data.slink.target_size = (sqfs_u32)in->size;
			n->payload_bytes_available = n->payload_bytes_used = (sqfs_u32)in->size;
			memcpy(n->extra, in->target, in->size);
		}
		return n;
	case S_IFCHR:
	case S_IFBLK:
		if ((n = new_inode(0))) {
			n->base.type = S_ISCHR(in->mode) ? SQFS_INODE_CDEV : SQFS_INODE_BDEV;
			n->data.dev.nlink = in->nlink;
			n->data.dev.devno = (in->rdev_minor & 0xff) | (in->rdev_major << 8) |
					    ((in->rdev_minor & ~0xffu) << 12);
		}
		return n;
	default:
		if ((n = new_inode(0))) {
			n->base.type = S_ISFIFO(in->mode) ? SQFS_INODE_FIFO : SQFS_INODE_SOCKET;
			n->data.ipc.nlink = in->nlink;
		}
		return n;
	}
}

static int write_inode(struct rf_build *b, struct rf_dentry *d, struct rf_dentry **kids,
		       size_t n)
{
	struct sqw *w = b->w;
	struct rf_inode *in = d->inode;
	sqfs_u32 xattr;
	if (xattr_index(w, in, &xattr) < 0)
		return -1;
	sqfs_inode_generic_t *n_in = rf_is_dir(in) ? dir_inode(b, d, kids, n, xattr) : other_inode(in);
	if (!n_in)
		return -1;
	n_in->base.mode = (sqfs_u16)in->mode;
	n_in->base.mod_time = in->mtime > UINT32_MAX ? UINT32_MAX : (sqfs_u32)in->mtime;
	n_in->base.inode_number = in->ino;
	int err = sqfs_inode_set_xattr_index(n_in, xattr);
	if (!err && rf_is_reg(in) && in->nlink > 1) {
		err = sqfs_inode_make_extended(n_in);
		n_in->data.file_ext.nlink = in->nlink;
	}
	if (!err)
		err = sqfs_id_table_id_to_index(w->ids, in->uid, &n_in->base.uid_idx);
	if (!err)
		err = sqfs_id_table_id_to_index(w->ids, in->gid, &n_in->base.gid_idx);
	sqfs_u64 block;
	sqfs_u32 offset;
	sqfs_meta_writer_get_position(w->im, &block, &offset);
	in->ref = (block << 16) | offset;
	if (!err)
		err = sqfs_meta_writer_write_inode(w->im, n_in);
	sqfs_free(n_in);
	return err ? sqfail(err, "writing an inode") : 0;
}

/* In inode-number order: every directory comes after its entries, so
 * their references are known when it is written. */
static int serialize(struct rf_build *b, struct rf_dentry **order, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		struct rf_dentry *d = order[i];
		struct rf_dentry **kids = NULL;
		size_t n = 0;
		if (rf_is_dir(d->inode) && rf_dir_sorted(d, &kids, &n) < 0)
			return -1;
		int r = write_inode(b, d, kids, n);
		free(kids);
		if (r < 0)
			return -1;
	}
	return 0;
}

static int pad_image(struct sqw *w)
{
	uint64_t size = w->file->size, rem = size % SQ_DEVBLK;
	if (!rem)
		return 0;
	int err = w->file->base.write_at(&w->file->base, size, w->zeros, SQ_DEVBLK - rem);
	return err ? sqfail(err, "padding the image") : 0;
}

static int sq_finish(struct rf_build *b)
{
	struct sqw *w = b->w;
	sqfs_file_t *file = &w->file->base;
	int err = sqfs_block_processor_finish(w->proc);
	w->finished = true;
	if (err)
		return sqfail(err, "finishing data blocks");
	struct rf_dentry **order = lt_calloc(b->stats.entries + 1, sizeof(*order));
	if (!order)
		return -1;
	w->next_ino = 1;
	rf_tree_new_walk(&b->tree);
	int r = number_dir(b, b->tree.root, order);
	if (r == 0 && w->next_ino > b->stats.entries)
		r = lt_fail("squashfs: internal error: %u inodes, %llu expected", w->next_ino,
			    (unsigned long long)b->stats.entries);
	if (r == 0) {
		struct rf_dentry *root = b->tree.root;
		order[w->next_ino - 1] = root;
		root->inode->ino = w->next_ino++;
		w->super.inode_table_start = w->file->size;
		r = serialize(b, order, w->next_ino - 1);
	}
	free(order);
	if (r < 0)
		return -1;
	uint32_t count = w->next_ino - 1;
	if ((err = sqfs_meta_writer_flush(w->im)) || (err = sqfs_meta_writer_flush(w->dm)))
		return sqfail(err, "flushing the inode table");
	struct rf_inode *root = b->tree.root->inode;
	w->super.root_inode_ref = root->ref;
	w->super.directory_table_start = w->file->size;
	if ((err = sqfs_meta_write_write_to_file(w->dm)))
		return sqfail(err, "writing the directory table");
	if ((err = sqfs_frag_table_write(w->frag, file, &w->super, w->cmp)))
		return sqfail(err, "writing the fragment table");
	if ((err = sqfs_id_table_write(w->ids, file, &w->super, w->cmp)))
		return sqfail(err, "writing the id table");
	if ((err = sqfs_xattr_writer_flush(w->xwr, file, &w->super, w->cmp)))
		return sqfail(err, "writing the xattr table");
	w->super.inode_count = count;
	w->super.bytes_used = w->file->size;
	if ((err = sqfs_super_write(&w->super, file)))
		return sqfail(err, "writing the superblock");
	if (pad_image(w) < 0)
		return -1;
	b->stats.image_size = w->file->size;
	return 0;
}

static int free_wdata(struct rf_dentry *d, unsigned depth, void *ctx)
{
	(void)depth;
	(void)ctx;
	if (d->inode->wdata) {
		sqfs_free(d->inode->wdata);
		d->inode->wdata = NULL;
	}
	return 0;
}

static void sq_close(struct rf_build *b)
{
	struct sqw *w = b->w;
	if (!w)
		return;
	/* After a failure, drain the blocks still in flight first (1.2
	 * leaks them otherwise); the processor may still hold pointers to
	 * file inodes, so it goes before them. */
	if (w->proc && !w->finished)
		sqfs_block_processor_finish(w->proc);
	sqfs_destroy(w->proc);
	if (b->tree.root)
		rf_tree_walk(&b->tree, free_wdata, NULL);
	sqfs_destroy(w->dirw);
	sqfs_destroy(w->dm);
	sqfs_destroy(w->im);
	sqfs_destroy(w->xwr);
	sqfs_destroy(w->ids);
	sqfs_destroy(w->frag);
	sqfs_destroy(w->blkwr);
	sqfs_destroy(w->uncmp);
	sqfs_destroy(w->cmp);
	if (w->file)
		sqfs_destroy(&w->file->base);
	free(w->zeros);
	free(w);
	b->w = NULL;
}

const struct rf_writer_ops rf_squashfs_ops = {
	.open = sq_open,
	.file = sq_file,
	.finish = sq_finish,
	.close = sq_close,
};
