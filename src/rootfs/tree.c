/* The in-memory tree of the flattened image: metadata only, built from
 * layer headers in order, with OCI layer semantics.
 *
 * Path rules (documented in rootfs.h): "./etc/x", "etc/x" and "etc//x/"
 * name the same entry; "." components are dropped; ".." components and
 * absolute paths are rejected, as is any path whose non-final component
 * is a symlink (we never follow links while flattening).
 */
#include "rootfs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- arena ----------------------------------------------------------- */

#define RF_CHUNK_SIZE (256u << 10)

struct rf_chunk {
	struct rf_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

void *rf_alloc(struct rf_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (a->limit && a->used + n > a->limit) {
		lt_fail("image metadata needs more than %zu MiB of memory", a->limit >> 20);
		return NULL;
	}
	struct rf_chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		/* Big requests get their own chunk behind the current one so
		 * the current chunk's free space is not wasted. */
		size_t cap = n > RF_CHUNK_SIZE / 4 ? n : RF_CHUNK_SIZE;
		struct rf_chunk *nc = lt_malloc(sizeof(*nc) + cap);
		if (!nc)
			return NULL;
		nc->used = 0;
		nc->cap = cap;
		if (c && cap != RF_CHUNK_SIZE) {
			nc->next = c->next;
			c->next = nc;
		} else {
			nc->next = c;
			a->head = nc;
		}
		c = nc;
	}
	void *p = (uint8_t *)c->data + c->used;
	c->used += n;
	a->used += n;
	memset(p, 0, n);
	return p;
}

void rf_arena_free(struct rf_arena *a)
{
	struct rf_chunk *c = a->head;
	while (c) {
		struct rf_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used = 0;
}

/* ---- error context --------------------------------------------------- */

/* Copies s into buf with control and non-ASCII bytes escaped, so a
 * hostile name cannot break the one-line error. */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	for (; *s && o + 8 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
	}
	if (*s)
		memcpy(buf + o, "...", 4);
	else
		buf[o] = '\0';
	return buf;
}

static int efail(struct rf_tree *t, const char *fmt, ...) LT_PRINTF(2, 3);
static int efail(struct rf_tree *t, const char *fmt, ...)
{
	char msg[512], path[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (t->layer_name)
		return lt_fail("layer %u (%s): entry '%s': %s", t->layer + 1, t->layer_name,
			       printable(t->entry_path ? t->entry_path : "", path, sizeof(path)), msg);
	return lt_fail("'%s': %s", printable(t->entry_path ? t->entry_path : "", path, sizeof(path)),
		       msg);
}

/* "a/b/c" for the first n components of comp. */
static const char *prefix(const char **comp, size_t n, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "/" : "", comp[i]);
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s", buf);
	return printable(tmp, buf, len);
}

/* ---- hash of (parent, name) ------------------------------------------ */

static uint64_t hash_seed;

static uint64_t hash_name(const struct rf_dentry *parent, const char *name, size_t len)
{
	uint64_t h = hash_seed ^ ((uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ull);
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)name[i];
		h *= 0x100000001b3ull;
		h ^= h >> 32;
	}
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ (h >> 31);
}

static int grow_buckets(struct rf_tree *t)
{
	size_t n = t->n_buckets ? t->n_buckets * 2 : 1024;
	struct rf_dentry **b = lt_calloc(n, sizeof(*b));
	if (!b)
		return -1;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct rf_dentry *d = t->buckets[i];
		while (d) {
			struct rf_dentry *next = d->hnext;
			size_t h = hash_name(d->parent, d->name, d->name_len) & (n - 1);
			d->hnext = b[h];
			b[h] = d;
			d = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = n;
	return 0;
}

struct rf_dentry *rf_tree_lookup(struct rf_tree *t, struct rf_dentry *dir, const char *name,
				 size_t len)
{
	size_t h = hash_name(dir, name, len) & (t->n_buckets - 1);
	for (struct rf_dentry *d = t->buckets[h]; d; d = d->hnext)
		if (d->parent == dir && d->name_len == len && !memcmp(d->name, name, len))
			return d;
	return NULL;
}

/* ---- dentries and inodes --------------------------------------------- */

static struct rf_inode *inode_new(struct rf_tree *t, uint32_t mode)
{
	struct rf_inode *in = rf_alloc(&t->arena, sizeof(*in));
	if (!in)
		return NULL;
	in->mode = mode;
	in->src_layer = RF_SRC_NONE;
	return in;
}

static struct rf_dentry *dentry_new(struct rf_tree *t, struct rf_dentry *parent, const char *name,
				    size_t len, struct rf_inode *in, uint16_t layer)
{
	if (in->nlink >= 65000) {
		lt_fail("more than 65000 hardlinks to one file");
		return NULL;
	}
	if (t->n_dentries + 1 > t->n_buckets && grow_buckets(t) < 0)
		return NULL;
	struct rf_dentry *d = rf_alloc(&t->arena, sizeof(*d) + len + 1);
	if (!d)
		return NULL;
	memcpy(d->name, name, len);
	d->name_len = (uint16_t)len;
	d->parent = parent;
	d->inode = in;
	d->layer = layer;
	in->nlink++;
	d->next = parent->children;
	if (parent->children)
		parent->children->prev = d;
	parent->children = d;
	parent->n_children++;
	size_t h = hash_name(parent, name, len) & (t->n_buckets - 1);
	d->hnext = t->buckets[h];
	t->buckets[h] = d;
	t->n_dentries++;
	return d;
}

static void dentry_unlink(struct rf_tree *t, struct rf_dentry *d)
{
	size_t h = hash_name(d->parent, d->name, d->name_len) & (t->n_buckets - 1);
	for (struct rf_dentry **pp = &t->buckets[h]; *pp; pp = &(*pp)->hnext) {
		if (*pp == d) {
			*pp = d->hnext;
			break;
		}
	}
	if (d->prev)
		d->prev->next = d->next;
	else
		d->parent->children = d->next;
	if (d->next)
		d->next->prev = d->prev;
	d->parent->n_children--;
	d->inode->nlink--;
	t->n_dentries--;
}

/* Depth is bounded: every dentry was created from a path of at most
 * RF_DEPTH_MAX components. */
static void remove_subtree(struct rf_tree *t, struct rf_dentry *d)
{
	while (d->children)
		remove_subtree(t, d->children);
	dentry_unlink(t, d);
}

/* Opaque semantics: hide everything below dir that no entry of `layer`
 * (or a later one) has touched. */
static void prune_lower(struct rf_tree *t, struct rf_dentry *dir, uint16_t layer)
{
	struct rf_dentry *c = dir->children;
	while (c) {
		struct rf_dentry *next = c->next;
		if (c->layer < layer)
			remove_subtree(t, c);
		else if (rf_is_dir(c->inode))
			prune_lower(t, c, layer);
		c = next;
	}
}

/* ---- paths ----------------------------------------------------------- */

/* Splits raw into components (in buf); "." and empty ones dropped. */
static int split_path(struct rf_tree *t, const char *raw, bool absolute_ok, char *buf,
		      const char **comp, size_t *n, const char *what)
{
	size_t len = strlen(raw);
	*n = 0;
	if (len == 0)
		return efail(t, "empty %s", what);
	if (len > t->lim.max_path_len)
		return efail(t, "%s is longer than %u bytes", what, t->lim.max_path_len);
	if (raw[0] == '/' && !absolute_ok)
		return efail(t, "absolute %s is not allowed", what);
	memcpy(buf, raw, len + 1);
	char *p = buf;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		char *s = p;
		while (*p && *p != '/')
			p++;
		size_t clen = (size_t)(p - s);
		if (*p)
			*p++ = '\0';
		if (clen == 1 && s[0] == '.')
			continue;
		if (clen == 2 && s[0] == '.' && s[1] == '.')
			return efail(t, "'..' in %s is not allowed", what);
		if (clen > RF_NAME_MAX)
			return efail(t, "a component of the %s is longer than %d bytes", what,
				     RF_NAME_MAX);
		if (*n >= RF_DEPTH_MAX)
			return efail(t, "%s is nested deeper than %d levels", what, RF_DEPTH_MAX);
		comp[(*n)++] = s;
	}
	return 0;
}

/* Resolves the first n components as directories from the root, never
 * through a symlink. With create, missing ones become root-owned 0755
 * dirs and every one on the way is marked as touched by `layer`. *out
 * is NULL when a component is missing and create is false. */
static int walk_dirs(struct rf_tree *t, const char **comp, size_t n, bool create, uint16_t layer,
		     int64_t mtime, struct rf_dentry **out, const char *what)
{
	struct rf_dentry *cur = t->root;
	char pbuf[256];
	*out = NULL;
	for (size_t i = 0; i < n; i++) {
		struct rf_dentry *c = rf_tree_lookup(t, cur, comp[i], strlen(comp[i]));
		if (!c) {
			if (!create)
				return 0;
			struct rf_inode *in = inode_new(t, S_IFDIR | 0755);
			if (!in)
				return efail(t, "%s", lt_errmsg());
			in->mtime = mtime;
			c = dentry_new(t, cur, comp[i], strlen(comp[i]), in, layer);
			if (!c)
				return efail(t, "%s", lt_errmsg());
		} else if (rf_is_lnk(c->inode)) {
			return efail(t, "%s goes through the symlink '%s'", what,
				     prefix(comp, i + 1, pbuf, sizeof(pbuf)));
		} else if (!rf_is_dir(c->inode)) {
			return efail(t, "%s: '%s' is not a directory", what,
				     prefix(comp, i + 1, pbuf, sizeof(pbuf)));
		}
		if (layer > c->layer)
			c->layer = layer;
		cur = c;
	}
	*out = cur;
	return 0;
}

/* ---- metadata -------------------------------------------------------- */

static int64_t clamp_mtime(struct rf_tree *t, int64_t m)
{
	if (m < 0)
		m = 0;
	if (m > RF_MTIME_MAX)
		m = RF_MTIME_MAX;
	if (t->mtime_clamp && m > (int64_t)t->mtime_clamp)
		m = t->mtime_clamp;
	return m;
}

static int pack_xattrs(struct rf_tree *t, struct archive_entry *e, struct rf_inode *in)
{
	const char *name;
	const void *value;
	size_t size, total = 0, count = 0;
	in->xattrs = NULL;
	in->xattrs_len = 0;
	in->n_xattrs = 0;
	if (archive_entry_xattr_reset(e) == 0)
		return 0;
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		size_t nl = name ? strlen(name) : 0;
		if (nl == 0 || nl > RF_XATTR_NAME_MAX)
			return efail(t, "invalid xattr name");
		if (size > RF_XATTR_BYTES_MAX || total + nl + size > RF_XATTR_BYTES_MAX)
			return efail(t, "xattrs larger than %d bytes", RF_XATTR_BYTES_MAX);
		if (++count > RF_XATTR_COUNT_MAX)
			return efail(t, "more than %d xattrs", RF_XATTR_COUNT_MAX);
		total += nl + size;
	}
	size_t bytes = total + count * 5;
	uint8_t *buf = rf_alloc(&t->arena, bytes);
	if (!buf)
		return efail(t, "%s", lt_errmsg());
	uint8_t *p = buf;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		size_t nl = strlen(name);
		memcpy(p, name, nl + 1);
		p += nl + 1;
		uint32_t v = (uint32_t)size;
		for (int i = 0; i < 4; i++)
			*p++ = (uint8_t)(v >> (8 * i));
		if (size)
			memcpy(p, value, size);
		p += size;
	}
	in->xattrs = buf;
	in->xattrs_len = (uint32_t)bytes;
	in->n_xattrs = (uint16_t)count;
	return 0;
}

bool rf_xattr_next(struct rf_xattr_it *it, const char **name, const void **value, size_t *len)
{
	if (!it->p || it->p >= it->end)
		return false;
	*name = (const char *)it->p;
	const uint8_t *q = it->p + strlen(*name) + 1;
	uint32_t v = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
		     (uint32_t)q[3] << 24;
	*value = q + 4;
	*len = v;
	it->p = q + 4 + v;
	return true;
}

/* Ownership, permissions, times and xattrs of e onto in (type kept). */
static int set_meta(struct rf_tree *t, struct rf_inode *in, struct archive_entry *e)
{
	int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
	if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX)
		return efail(t, "uid/gid out of range");
	in->uid = (uint32_t)uid;
	in->gid = (uint32_t)gid;
	uint32_t perm = rf_is_lnk(in) ? 0777 : (uint32_t)archive_entry_perm(e) & 07777;
	in->mode = (in->mode & S_IFMT) | perm;
	in->mtime = clamp_mtime(t, archive_entry_mtime(e));
	long ns = archive_entry_mtime_is_set(e) ? archive_entry_mtime_nsec(e) : 0;
	in->mtime_ns = (ns >= 0 && ns < 1000000000 && in->mtime == archive_entry_mtime(e))
			       ? (uint32_t)ns : 0;
	if (in->mtime > t->max_mtime)
		t->max_mtime = in->mtime;
	return pack_xattrs(t, e, in);
}

/* Content bounds of a regular entry; data_size counts only stored runs
 * (sparse maps), rounded out to 4 KiB per run. */
static int set_content(struct rf_tree *t, struct rf_inode *in, struct archive_entry *e,
		       unsigned layer, uint32_t index)
{
	int64_t size = archive_entry_size(e);
	if (size < 0)
		return efail(t, "negative size");
	if ((uint64_t)size > t->lim.max_file_size)
		return efail(t, "file size %lld exceeds the limit of %llu bytes", (long long)size,
			     (unsigned long long)t->lim.max_file_size);
	t->total_bytes += (uint64_t)size;
	if (t->total_bytes > t->lim.max_total_size)
		return efail(t, "the layers hold more than %llu bytes of file data",
			     (unsigned long long)t->lim.max_total_size);
	in->size = (uint64_t)size;
	in->data_size = (uint64_t)size;
	int n = archive_entry_sparse_reset(e);
	if (n > 0) {
		la_int64_t off, len;
		uint64_t sum = 0;
		while (archive_entry_sparse_next(e, &off, &len) == ARCHIVE_OK)
			if (len > 0)
				sum += (uint64_t)len + 8192;
		if (sum < in->data_size)
			in->data_size = sum;
	}
	in->src_layer = (int32_t)layer;
	in->src_index = index;
	return 0;
}

/* ---- applying entries ------------------------------------------------ */

static int apply_whiteout(struct rf_tree *t, uint16_t layer, const char *base, int64_t mtime)
{
	struct rf_dentry *dir;
	size_t n = t->n_comp - 1;
	if (!strcmp(base, ".wh..wh..opq")) {
		if (walk_dirs(t, t->comp, n, true, layer, mtime, &dir, "path") < 0)
			return -1;
		prune_lower(t, dir, layer);
		return 0;
	}
	if (!strncmp(base, ".wh..wh.", 8))
		return 0; /* aufs bookkeeping (.wh..wh.plnk etc.): not content */
	const char *name = base + 4;
	if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
		return efail(t, "malformed whiteout");
	if (walk_dirs(t, t->comp, n, false, layer, mtime, &dir, "path") < 0)
		return -1;
	if (!dir)
		return 0;
	struct rf_dentry *victim = rf_tree_lookup(t, dir, name, strlen(name));
	if (!victim)
		return 0;
	/* A whiteout only hides lower layers; what this layer added stays. */
	if (victim->layer < layer)
		remove_subtree(t, victim);
	else if (rf_is_dir(victim->inode))
		prune_lower(t, victim, layer);
	return 0;
}

static int apply_hardlink(struct rf_tree *t, uint16_t layer, uint32_t index,
			  struct archive_entry *e, const char *link)
{
	const char *lcomp[RF_DEPTH_MAX];
	size_t nl;
	char *lbuf = t->pathbuf + t->lim.max_path_len + 1;
	if (split_path(t, link, false, lbuf, lcomp, &nl, "hardlink target") < 0)
		return -1;
	if (nl == 0)
		return efail(t, "hardlink to the root directory");
	if (t->n_comp == 0)
		return efail(t, "hardlink at the root directory");
	struct rf_dentry *tdir, *target = NULL;
	if (walk_dirs(t, lcomp, nl - 1, false, 0, 0, &tdir, "hardlink target") < 0)
		return -1;
	if (tdir)
		target = rf_tree_lookup(t, tdir, lcomp[nl - 1], strlen(lcomp[nl - 1]));
	char pbuf[256];
	if (!target)
		return efail(t, "hardlink target '%s' does not exist",
			     prefix(lcomp, nl, pbuf, sizeof(pbuf)));
	if (rf_is_dir(target->inode))
		return efail(t, "hardlink to the directory '%s'", prefix(lcomp, nl, pbuf, sizeof(pbuf)));
	struct rf_inode *in = target->inode;
	struct rf_dentry *dir;
	if (walk_dirs(t, t->comp, t->n_comp - 1, true, layer, clamp_mtime(t, archive_entry_mtime(e)),
		      &dir, "path") < 0)
		return -1;
	/* A hardlink entry may carry data (pax): it becomes the content. */
	if (archive_entry_size(e) > 0) {
		if (!rf_is_reg(in))
			return efail(t, "hardlink with data to a non-regular file");
		if (set_content(t, in, e, layer, index) < 0)
			return -1;
	}
	const char *name = t->comp[t->n_comp - 1];
	size_t len = strlen(name);
	struct rf_dentry *old = rf_tree_lookup(t, dir, name, len);
	if (old && old->inode == in) {
		old->layer = layer;
		return 0;
	}
	if (old)
		remove_subtree(t, old);
	if (!dentry_new(t, dir, name, len, in, layer))
		return efail(t, "%s", lt_errmsg());
	return 0;
}

static int make_inode(struct rf_tree *t, unsigned layer, uint32_t index, struct archive_entry *e,
		      struct rf_inode **out)
{
	unsigned type = archive_entry_filetype(e);
	struct rf_inode *in;
	switch (type) {
	case AE_IFREG:
	case AE_IFDIR:
	case AE_IFIFO:
	case AE_IFSOCK:
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFLNK:
		break;
	default:
		return efail(t, "unsupported entry type 0%o", type);
	}
	if (!(in = inode_new(t, type)))
		return efail(t, "%s", lt_errmsg());
	if (set_meta(t, in, e) < 0)
		return -1;
	if (type == AE_IFREG && set_content(t, in, e, layer, index) < 0)
		return -1;
	if (type == AE_IFLNK) {
		const char *target = archive_entry_symlink(e);
		if (!target)
			target = archive_entry_symlink_utf8(e);
		size_t len = target ? strlen(target) : 0;
		if (len == 0 || len > RF_SYMLINK_MAX)
			return efail(t, "symlink target is empty or longer than %d bytes",
				     RF_SYMLINK_MAX);
		char *copy = rf_alloc(&t->arena, len + 1);
		if (!copy)
			return efail(t, "%s", lt_errmsg());
		memcpy(copy, target, len);
		in->target = copy;
		in->size = len;
	}
	if (type == AE_IFCHR || type == AE_IFBLK) {
		unsigned long maj = (unsigned long)archive_entry_rdevmajor(e);
		unsigned long min = (unsigned long)archive_entry_rdevminor(e);
		if (maj > 0xfff || min > 0xfffff)
			return efail(t, "device number %lu:%lu out of range", maj, min);
		in->rdev_major = (uint32_t)maj;
		in->rdev_minor = (uint32_t)min;
	}
	*out = in;
	return 0;
}

int rf_tree_apply(struct rf_tree *t, unsigned layer, uint32_t index, struct archive_entry *e)
{
	const char *raw = archive_entry_pathname(e);
	if (!raw)
		raw = archive_entry_pathname_utf8(e);
	t->layer = layer;
	t->entry_path = raw;
	if (!raw)
		return efail(t, "entry without a path");
	if (++t->n_entries > t->lim.max_entries)
		return efail(t, "the layers hold more than %llu entries",
			     (unsigned long long)t->lim.max_entries);
	if (split_path(t, raw, false, t->pathbuf, t->comp, &t->n_comp, "path") < 0)
		return -1;
	uint16_t L = (uint16_t)layer;
	int64_t mtime = clamp_mtime(t, archive_entry_mtime(e));
	if (t->n_comp > 0 && !strncmp(t->comp[t->n_comp - 1], ".wh.", 4))
		return apply_whiteout(t, L, t->comp[t->n_comp - 1], mtime);
	const char *link = archive_entry_hardlink(e);
	if (!link)
		link = archive_entry_hardlink_utf8(e);
	if (link)
		return apply_hardlink(t, L, index, e, link);
	if (t->n_comp == 0) {
		if (archive_entry_filetype(e) != AE_IFDIR)
			return efail(t, "the root must be a directory");
		t->root_set = true;
		return set_meta(t, t->root->inode, e);
	}
	struct rf_dentry *dir;
	if (walk_dirs(t, t->comp, t->n_comp - 1, true, L, mtime, &dir, "path") < 0)
		return -1;
	const char *name = t->comp[t->n_comp - 1];
	size_t len = strlen(name);
	struct rf_dentry *old = rf_tree_lookup(t, dir, name, len);
	/* A directory over a directory merges: only the metadata changes. */
	if (old && rf_is_dir(old->inode) && archive_entry_filetype(e) == AE_IFDIR) {
		old->layer = L;
		return set_meta(t, old->inode, e);
	}
	struct rf_inode *in = NULL;
	if (make_inode(t, layer, index, e, &in) < 0)
		return -1;
	if (old)
		remove_subtree(t, old);
	if (!dentry_new(t, dir, name, len, in, L))
		return efail(t, "%s", lt_errmsg());
	return 0;
}

int rf_tree_inject(struct rf_tree *t, unsigned idx, const char *path, mode_t mode, uint64_t size,
		   int64_t mtime)
{
	t->layer_name = NULL;
	t->entry_path = path;
	if (!path || path[0] != '/')
		return efail(t, "injected path must be absolute");
	if (split_path(t, path, true, t->pathbuf, t->comp, &t->n_comp, "injected path") < 0)
		return -1;
	if (t->n_comp == 0)
		return efail(t, "cannot inject over the root directory");
	/* Trusted content: anything in the way (even an image symlink)
	 * is replaced, never followed. */
	struct rf_dentry *cur = t->root;
	for (size_t i = 0; i + 1 <= t->n_comp; i++) {
		const char *name = t->comp[i];
		size_t len = strlen(name);
		bool last = i + 1 == t->n_comp;
		struct rf_dentry *c = rf_tree_lookup(t, cur, name, len);
		if (c && !last && rf_is_dir(c->inode)) {
			cur = c;
			continue;
		}
		if (c)
			remove_subtree(t, c);
		struct rf_inode *in = inode_new(t, last ? (S_IFREG | (mode & 07777)) : (S_IFDIR | 0755));
		if (!in)
			return -1;
		in->mtime = clamp_mtime(t, mtime);
		if (last) {
			in->size = in->data_size = size;
			in->src_layer = RF_SRC_INJECT;
			in->src_index = idx;
		}
		if (!(c = dentry_new(t, cur, name, len, in, UINT16_MAX)))
			return -1;
		cur = c;
	}
	return 0;
}

struct rf_dentry *rf_tree_ensure_dir(struct rf_tree *t, const char *name, mode_t mode)
{
	size_t len = strlen(name);
	struct rf_dentry *d = rf_tree_lookup(t, t->root, name, len);
	if (d)
		return d;
	struct rf_inode *in = inode_new(t, S_IFDIR | (mode & 07777));
	if (!in)
		return NULL;
	in->mtime = t->root->inode->mtime;
	return dentry_new(t, t->root, name, len, in, UINT16_MAX);
}

/* ---- setup and traversal --------------------------------------------- */

int rf_tree_init(struct rf_tree *t, const struct rootfs_limits *lim, uint32_t mtime_clamp)
{
	memset(t, 0, sizeof(*t));
	t->lim = *lim;
	t->mtime_clamp = mtime_clamp;
	t->arena.limit = lim->max_metadata;
	if (!hash_seed) {
		uint64_t s = 0;
		if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != sizeof(s))
			s = (uint64_t)lt_now_ns() ^ (uint64_t)(uintptr_t)t;
		hash_seed = s | 1;
	}
	/* Two path buffers: the entry's and a hardlink target's. */
	t->pathbuf = lt_malloc(2 * ((size_t)lim->max_path_len + 1));
	t->comp = lt_calloc(RF_DEPTH_MAX, sizeof(*t->comp));
	if (!t->pathbuf || !t->comp || grow_buckets(t) < 0)
		goto fail;
	struct rf_inode *in = inode_new(t, S_IFDIR | 0755);
	if (!in)
		goto fail;
	t->root = rf_alloc(&t->arena, sizeof(*t->root) + 1);
	if (!t->root)
		goto fail;
	t->root->inode = in;
	in->nlink = 1;
	return 0;
fail:
	rf_tree_free(t);
	return -1;
}

void rf_tree_free(struct rf_tree *t)
{
	rf_arena_free(&t->arena);
	free(t->buckets);
	free(t->pathbuf);
	free(t->comp);
	t->buckets = NULL;
	t->pathbuf = NULL;
	t->comp = NULL;
	t->root = NULL;
}

static int cmp_dentry(const void *a, const void *b)
{
	const struct rf_dentry *x = *(struct rf_dentry *const *)a;
	const struct rf_dentry *y = *(struct rf_dentry *const *)b;
	return strcmp(x->name, y->name);
}

int rf_dir_sorted(const struct rf_dentry *d, struct rf_dentry ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!d->n_children)
		return 0;
	struct rf_dentry **v = lt_malloc(sizeof(*v) * d->n_children);
	if (!v)
		return -1;
	size_t i = 0;
	for (struct rf_dentry *c = d->children; c && i < d->n_children; c = c->next)
		v[i++] = c;
	qsort(v, i, sizeof(*v), cmp_dentry);
	*out = v;
	*n = i;
	return 0;
}

void rf_tree_new_walk(struct rf_tree *t)
{
	t->mark++;
}

static int walk(struct rf_dentry *d, unsigned depth, rf_walk_fn fn, void *ctx)
{
	int r = fn(d, depth, ctx);
	if (r < 0)
		return r;
	for (struct rf_dentry *c = d->children; c; c = c->next)
		if ((r = walk(c, depth + 1, fn, ctx)) < 0)
			return r;
	return 0;
}

int rf_tree_walk(struct rf_tree *t, rf_walk_fn fn, void *ctx)
{
	return walk(t->root, 0, fn, ctx);
}
