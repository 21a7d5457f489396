/* rootfs internals: the in-memory tree, layer reading and the writers.
 *
 * Flow: pass 1 reads only the headers of every layer (bottom first) and
 * applies OCI semantics to a metadata-only tree (tree.c). The tree then
 * knows, for every regular file that survives, which (layer, entry) holds
 * its final content. Pass 2 streams each layer again and hands just those
 * entries' data to the writer (ext4.c or squashfs.c), which finally emits
 * the directories and the remaining inodes from the tree.
 */
#ifndef LTTLE_ROOTFS_INT_H
#define LTTLE_ROOTFS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include "rootfs/rootfs.h"

#define RF_NAME_MAX 255       /* one path component (ext4 limit) */
#define RF_DEPTH_MAX 512      /* path components; bounds every recursion */
#define RF_SYMLINK_MAX 4095   /* symlink target length (ext4 limit) */
#define RF_XATTR_BYTES_MAX 3600 /* names + values of one entry: one ext4 block */
#define RF_XATTR_COUNT_MAX 64
#define RF_XATTR_NAME_MAX 255
#define RF_LAYERS_MAX 4096
#define RF_MTIME_MAX ((int64_t)0x1ffffffff) /* 2242: ext4 extra-epoch range */

/* ---- arena: the tree is allocated in chunks and freed at once -------- */

struct rf_chunk;
struct rf_arena {
	struct rf_chunk *head;
	size_t used;  /* bytes handed out */
	size_t limit; /* 0 = unlimited */
};
/* Zeroed, 8-byte aligned; NULL (with error) past the limit. */
void *rf_alloc(struct rf_arena *a, size_t n);
void rf_arena_free(struct rf_arena *a);

/* ---- tree ------------------------------------------------------------ */

enum { RF_SRC_NONE = -1, RF_SRC_INJECT = -2 };

/* An inode: shared by every dentry that hardlinks to it. */
struct rf_inode {
	uint32_t mode; /* S_IFMT | 07777 */
	uint32_t uid, gid;
	int64_t mtime;
	uint32_t mtime_ns;
	uint32_t nlink;     /* live dentries pointing here */
	uint64_t size;      /* regular: logical size; symlink: target length */
	uint64_t data_size; /* regular: bytes actually stored (sparse maps) */
	uint32_t rdev_major, rdev_minor;
	int32_t src_layer;  /* regular: layer holding the content, or RF_SRC_* */
	uint32_t src_index; /* entry index in that layer, or inject index */
	const char *target; /* symlink target */
	const uint8_t *xattrs; /* packed: name\0 u32le-len value ... */
	uint32_t xattrs_len;
	uint16_t n_xattrs;
	uint32_t mark;      /* walk generation (see rf_tree_walk) */
	/* owned by the writer */
	uint32_t ino;       /* ext4 inode number / squashfs inode number */
	uint64_t ref;       /* squashfs inode reference */
	void *wdata;        /* squashfs: sqfs_inode_generic_t * of a file */
	uint8_t written;
};

struct rf_dentry {
	struct rf_dentry *parent;
	struct rf_dentry *hnext;       /* hash chain */
	struct rf_dentry *children;    /* directories: first child */
	struct rf_dentry *next, *prev; /* siblings */
	struct rf_inode *inode;
	uint32_t n_children;
	uint16_t layer;                /* last layer that touched this path */
	uint16_t name_len;
	char name[];
};

struct rf_tree {
	struct rf_arena arena;
	struct rf_dentry *root;
	struct rf_dentry **buckets;
	size_t n_buckets, n_dentries;
	struct rootfs_limits lim;
	uint32_t mtime_clamp;
	uint64_t n_entries;   /* tar entries seen, all layers */
	uint64_t total_bytes; /* regular-file bytes seen, all layers */
	int64_t max_mtime;
	bool root_set;        /* a layer had an entry for "/" */
	uint32_t mark;        /* current walk generation */
	/* context for error messages */
	unsigned layer;
	const char *layer_name;
	const char *entry_path;
	/* path scratch: components of the path being applied */
	char *pathbuf;
	const char **comp;
	size_t n_comp;
};

int rf_tree_init(struct rf_tree *t, const struct rootfs_limits *lim, uint32_t mtime_clamp);
void rf_tree_free(struct rf_tree *t);
/* Applies entry number `index` of layer `layer` (OCI whiteouts, opaque
 * dirs, hardlinks, replacement). Errors name the layer and the entry. */
int rf_tree_apply(struct rf_tree *t, unsigned layer, uint32_t index, struct archive_entry *e);
/* Adds an injected regular file (trusted path; replaces whatever is
 * there, including non-directories on the way). */
int rf_tree_inject(struct rf_tree *t, unsigned idx, const char *path, mode_t mode,
		   uint64_t size, int64_t mtime);
/* Adds an empty root-owned directory under the root if no entry of that
 * name exists (lost+found). Returns the dentry or NULL. */
struct rf_dentry *rf_tree_ensure_dir(struct rf_tree *t, const char *name, mode_t mode);
struct rf_dentry *rf_tree_lookup(struct rf_tree *t, struct rf_dentry *dir, const char *name,
				 size_t len);

/* Children of a directory in strcmp order (squashfs needs it, and it
 * makes ext4 output deterministic). Caller frees *out. */
int rf_dir_sorted(const struct rf_dentry *d, struct rf_dentry ***out, size_t *n);

/* Starts a new walk generation: rf_inode_first_visit() is true once per
 * inode until the next rf_tree_new_walk(). */
void rf_tree_new_walk(struct rf_tree *t);
static inline bool rf_inode_first_visit(struct rf_tree *t, struct rf_inode *in)
{
	if (in->mark == t->mark)
		return false;
	in->mark = t->mark;
	return true;
}

/* Pre-order walk of every dentry (root first, depth included). */
typedef int (*rf_walk_fn)(struct rf_dentry *d, unsigned depth, void *ctx);
int rf_tree_walk(struct rf_tree *t, rf_walk_fn fn, void *ctx);

/* Iterates packed xattrs: returns false at the end. */
struct rf_xattr_it {
	const uint8_t *p, *end;
};
bool rf_xattr_next(struct rf_xattr_it *it, const char **name, const void **value, size_t *len);

static inline bool rf_is_dir(const struct rf_inode *in) { return (in->mode & S_IFMT) == S_IFDIR; }
static inline bool rf_is_reg(const struct rf_inode *in) { return (in->mode & S_IFMT) == S_IFREG; }
static inline bool rf_is_lnk(const struct rf_inode *in) { return (in->mode & S_IFMT) == S_IFLNK; }

/* ---- file content ---------------------------------------------------- */

/* The data of one regular file, as (offset, bytes) runs in increasing
 * offset order; gaps are holes. Bounded by `size`. */
struct rf_data {
	/* 1: a run (buf, len) at off; 0: end; <0: error (recorded). */
	int (*next)(struct rf_data *d, const void **buf, size_t *len, uint64_t *off);
	uint64_t size;
	uint64_t pos;    /* end of the last run (validation) */
	void *ctx;
	const char *what; /* for errors */
};

/* ---- layers (libarchive) --------------------------------------------- */

struct rf_layer {
	struct archive *a;
	void *gz;       /* our gzip reader, when the layer is gzip */
	const char *path;
	unsigned idx;
	uint32_t entry; /* index of the current entry */
};
int rf_layer_open(struct rf_layer *l, const char *path, unsigned idx);
/* 1: *e holds the next header; 0: end of archive; <0: error. */
int rf_layer_next(struct rf_layer *l, struct archive_entry **e);
/* Binds d to the data of the current entry. */
void rf_layer_data(struct rf_layer *l, struct rf_data *d, uint64_t size, const char *what);
uint64_t rf_layer_bytes_read(struct rf_layer *l);
void rf_layer_close(struct rf_layer *l);
/* A short printable name for a layer path (its file name, shortened). */
const char *rf_layer_label(const char *path, char *buf, size_t len);

/* ---- writers --------------------------------------------------------- */

struct rf_build;
struct rf_writer_ops {
	/* After pass 1: create the filesystem in b->fd / b->tmp_path. */
	int (*open)(struct rf_build *b);
	/* Pass 2: the content of one regular file (in->size > 0). */
	int (*file)(struct rf_build *b, struct rf_inode *in, struct rf_data *d);
	/* Everything else: directories, other inodes, superblock. Sets
	 * b->stats.image_size. */
	int (*finish)(struct rf_build *b);
	/* Frees the writer state (after finish, or on failure). */
	void (*close)(struct rf_build *b);
};
extern const struct rf_writer_ops rf_ext4_ops;
extern const struct rf_writer_ops rf_squashfs_ops;

struct rf_build {
	const struct rootfs_spec *spec;
	struct rf_tree tree;
	int fd;               /* the temporary output file */
	const char *tmp_path;
	void *w;              /* writer state */
	struct rootfs_stats stats;
	int64_t fs_time;      /* timestamp for the filesystem itself */
	uint8_t uuid[16];     /* derived from the inputs */
};

/* Pass 1 (scan.c): every layer's headers, applied to b->tree in order. */
int rf_scan_layers(struct rf_build *b);

#endif
