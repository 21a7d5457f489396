/* rootfs_build: pass 1 (headers -> tree), plan, pass 2 (data -> writer). */
#include "rootfs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int rootfs_format_parse(const char *s, enum rootfs_format *out)
{
	if (s && !strcmp(s, "ext4")) {
		*out = ROOTFS_EXT4;
		return 0;
	}
	if (s && (!strcmp(s, "squashfs") || !strcmp(s, "sqfs"))) {
		*out = ROOTFS_SQUASHFS;
		return 0;
	}
	return lt_fail("unknown rootfs format '%s' (expected ext4 or squashfs)", s ? s : "");
}

const char *rootfs_format_name(enum rootfs_format f)
{
	switch (f) {
	case ROOTFS_EXT4:
		return "ext4";
	case ROOTFS_SQUASHFS:
		return "squashfs";
	}
	return "unknown";
}

static void limits_with_defaults(const struct rootfs_limits *in, struct rootfs_limits *out)
{
	*out = *in;
	if (!out->max_entries)
		out->max_entries = 1000000;
	if (!out->max_file_size)
		out->max_file_size = 16ull << 30;
	if (!out->max_total_size)
		out->max_total_size = 64ull << 30;
	if (!out->max_path_len)
		out->max_path_len = 4096;
	if (out->max_path_len > 65536)
		out->max_path_len = 65536;
	if (!out->max_metadata)
		out->max_metadata = 512ull << 20;
}

/* ---- injects -------------------------------------------------------- */

static int inject_size(const struct rootfs_inject *inj, uint64_t *size)
{
	if (!inj->src_path) {
		if (!inj->data && inj->len)
			return lt_fail("inject %s: no data", inj->path ? inj->path : "?");
		*size = inj->len;
		return 0;
	}
	struct stat st;
	if (stat(inj->src_path, &st) < 0)
		return lt_fail_errno("cannot stat %s", inj->src_path);
	if (!S_ISREG(st.st_mode))
		return lt_fail("%s is not a regular file", inj->src_path);
	*size = (uint64_t)st.st_size;
	return 0;
}

static int add_injects(struct rf_build *b)
{
	/* A root no layer described gets the newest time, not 1970. */
	if (!b->tree.root_set)
		b->tree.root->inode->mtime = b->tree.max_mtime;
	int64_t now = (int64_t)time(NULL);
	int64_t mtime = b->tree.max_mtime ? b->tree.max_mtime : now;
	for (size_t i = 0; i < b->spec->n_injects; i++) {
		const struct rootfs_inject *inj = &b->spec->injects[i];
		uint64_t size = 0;
		if (inject_size(inj, &size) < 0 ||
		    rf_tree_inject(&b->tree, (unsigned)i, inj->path, inj->mode, size, mtime) < 0)
			return lt_fail_ctx("injecting %s", inj->path ? inj->path : "?");
	}
	return 0;
}

/* ---- plan: which entry of which layer feeds which inode -------------- */

struct want {
	uint32_t index;
	struct rf_inode *in;
};
struct plan {
	struct want **v; /* per layer, sorted by entry index */
	size_t *n, *cap;
	struct rf_inode **injects; /* per inject index */
	uint64_t inodes;
};

static int plan_fn(struct rf_dentry *d, unsigned depth, void *ctx)
{
	(void)depth;
	struct rf_build *b = ctx;
	struct plan *p = b->w;
	struct rf_inode *in = d->inode;
	if (!rf_inode_first_visit(&b->tree, in))
		return 0;
	p->inodes++;
	if (!rf_is_reg(in) || in->size == 0)
		return 0;
	if (in->src_layer == RF_SRC_INJECT) {
		p->injects[in->src_index] = in;
		return 0;
	}
	if (in->src_layer < 0 || (size_t)in->src_layer >= b->spec->n_layers)
		return lt_fail("internal error: file without a source");
	size_t L = (size_t)in->src_layer;
	if (p->n[L] == p->cap[L]) {
		size_t cap = p->cap[L] ? p->cap[L] * 2 : 64;
		struct want *v = lt_realloc(p->v[L], cap * sizeof(*v));
		if (!v)
			return -1;
		p->v[L] = v;
		p->cap[L] = cap;
	}
	p->v[L][p->n[L]++] = (struct want){in->src_index, in};
	return 0;
}

static int cmp_want(const void *a, const void *b)
{
	uint32_t x = ((const struct want *)a)->index, y = ((const struct want *)b)->index;
	return x < y ? -1 : x > y;
}

static void plan_free(struct plan *p, size_t n_layers)
{
	if (p->v)
		for (size_t i = 0; i < n_layers; i++)
			free(p->v[i]);
	free(p->v);
	free(p->n);
	free(p->cap);
	free(p->injects);
	memset(p, 0, sizeof(*p));
}

static int make_plan(struct rf_build *b, struct plan *p)
{
	size_t nl = b->spec->n_layers;
	memset(p, 0, sizeof(*p));
	p->v = lt_calloc(nl + 1, sizeof(*p->v));
	p->n = lt_calloc(nl + 1, sizeof(*p->n));
	p->cap = lt_calloc(nl + 1, sizeof(*p->cap));
	p->injects = lt_calloc(b->spec->n_injects + 1, sizeof(*p->injects));
	if (!p->v || !p->n || !p->cap || !p->injects)
		return -1;
	rf_tree_new_walk(&b->tree);
	b->w = p;
	int r = rf_tree_walk(&b->tree, plan_fn, b);
	b->w = NULL;
	if (r < 0)
		return -1;
	for (size_t i = 0; i < nl; i++)
		if (p->n[i])
			qsort(p->v[i], p->n[i], sizeof(*p->v[i]), cmp_want);
	return 0;
}

/* ---- pass 2 ---------------------------------------------------------- */

static int write_layer(struct rf_build *b, const struct rf_writer_ops *ops, struct plan *p,
		       unsigned i)
{
	if (!p->n[i])
		return 0;
	const char *path = b->spec->layers[i];
	char label[16], title[64];
	rf_layer_label(path, label, sizeof(label));
	snprintf(title, sizeof(title), "writing layer %u/%zu %s", i + 1, b->spec->n_layers, label);
	struct stat st;
	int item = lt_progress_add(b->spec->progress, title, stat(path, &st) == 0 ? (uint64_t)st.st_size : 0);
	struct rf_layer l;
	if (rf_layer_open(&l, path, i) < 0)
		return -1;
	struct archive_entry *e;
	size_t k = 0;
	int r = 0;
	uint64_t bytes = 0;
	/* Stop reading as soon as the last wanted entry is written. */
	while (k < p->n[i] && (r = rf_layer_next(&l, &e)) > 0) {
		if (l.entry != p->v[i][k].index)
			continue;
		struct rf_inode *in = p->v[i][k++].in;
		const char *name = archive_entry_pathname(e);
		if (archive_entry_size(e) != (int64_t)in->size) {
			char lb[16];
			r = lt_fail("layer %u (%s): entry '%.200s' changed between passes", i + 1,
				    rf_layer_label(path, lb, sizeof(lb)), name ? name : "?");
			break;
		}
		struct rf_data d;
		rf_layer_data(&l, &d, in->size, name ? name : "?");
		if ((r = ops->file(b, in, &d)) < 0)
			break;
		bytes += in->size;
		b->stats.bytes += in->size;
		lt_progress_update(b->spec->progress, item, rf_layer_bytes_read(&l));
	}
	rf_layer_close(&l);
	if (r < 0)
		return -1;
	if (k < p->n[i]) {
		char lb[16];
		return lt_fail("layer %u (%s): entries vanished between passes", i + 1,
			       rf_layer_label(path, lb, sizeof(lb)));
	}
	char status[32], hs[16];
	snprintf(status, sizeof(status), "wrote %s", lt_human_size(bytes, hs, sizeof(hs)));
	lt_progress_done(b->spec->progress, item, status);
	return 0;
}

struct inject_src {
	const struct rootfs_inject *inj;
	int fd;
	uint8_t *buf;
	uint64_t done;
};

static int inject_next_run(struct rf_data *d, const void **buf, size_t *len, uint64_t *off)
{
	struct inject_src *s = d->ctx;
	if (s->done >= d->size)
		return 0;
	if (!s->inj->src_path) {
		*buf = s->inj->data;
		*len = (size_t)d->size;
		*off = 0;
		s->done = d->size;
		return 1;
	}
	size_t want = d->size - s->done < (1u << 20) ? (size_t)(d->size - s->done) : (1u << 20);
	ssize_t n;
	do
		n = read(s->fd, s->buf, want);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return lt_fail_errno("cannot read %s", s->inj->src_path);
	if (n == 0)
		return lt_fail("%s shrank while being copied", s->inj->src_path);
	*buf = s->buf;
	*len = (size_t)n;
	*off = s->done;
	s->done += (uint64_t)n;
	return 1;
}

static int write_injects(struct rf_build *b, const struct rf_writer_ops *ops, struct plan *p)
{
	for (size_t i = 0; i < b->spec->n_injects; i++) {
		struct rf_inode *in = p->injects[i];
		if (!in)
			continue; /* empty, or replaced by a later inject */
		const struct rootfs_inject *inj = &b->spec->injects[i];
		struct inject_src s = {.inj = inj, .fd = -1};
		if (inj->src_path) {
			s.fd = open(inj->src_path, O_RDONLY | O_CLOEXEC);
			s.buf = lt_malloc(1u << 20);
			if (s.fd < 0 || !s.buf) {
				if (s.fd < 0)
					lt_fail_errno("cannot open %s", inj->src_path);
				if (s.fd >= 0)
					close(s.fd);
				free(s.buf);
				return -1;
			}
		}
		struct rf_data d = {.next = inject_next_run, .size = in->size, .ctx = &s,
				    .what = inj->path};
		int r = ops->file(b, in, &d);
		b->stats.bytes += in->size;
		if (s.fd >= 0)
			close(s.fd);
		free(s.buf);
		if (r < 0)
			return lt_fail_ctx("injecting %s", inj->path);
	}
	return 0;
}

/* ---- build ----------------------------------------------------------- */

/* Filesystem UUID and timestamp derived from the inputs, so the same
 * layers give the same image. */
static int derive_identity(struct rf_build *b)
{
	struct lt_sha256 *h = lt_sha256_new();
	if (!h)
		return -1;
	const struct rootfs_spec *s = b->spec;
	lt_sha256_update(h, rootfs_format_name(s->format), strlen(rootfs_format_name(s->format)) + 1);
	for (size_t i = 0; i < s->n_layers; i++) {
		const char *base = strrchr(s->layers[i], '/');
		base = base ? base + 1 : s->layers[i];
		lt_sha256_update(h, base, strlen(base) + 1);
	}
	for (size_t i = 0; i < s->n_injects; i++)
		lt_sha256_update(h, s->injects[i].path, strlen(s->injects[i].path) + 1);
	lt_sha256_update(h, &s->size, sizeof(s->size));
	uint8_t d[LT_SHA256_LEN];
	lt_sha256_final(h, d);
	lt_sha256_free(h);
	memcpy(b->uuid, d, 16);
	b->uuid[6] = (uint8_t)((b->uuid[6] & 0x0f) | 0x40);
	b->uuid[8] = (uint8_t)((b->uuid[8] & 0x3f) | 0x80);
	int64_t now = (int64_t)time(NULL);
	b->fs_time = b->tree.max_mtime && b->tree.max_mtime < now ? b->tree.max_mtime : now;
	return 0;
}

static int check_spec(const struct rootfs_spec *spec, const char *out_path)
{
	if (!spec || !out_path || !*out_path)
		return lt_fail("rootfs: no spec or output path");
	if (spec->format != ROOTFS_EXT4 && spec->format != ROOTFS_SQUASHFS)
		return lt_fail("rootfs: unknown format %d", (int)spec->format);
	if (spec->n_layers > RF_LAYERS_MAX)
		return lt_fail("rootfs: %zu layers is more than the limit of %d", spec->n_layers,
			       RF_LAYERS_MAX);
	if (spec->n_layers && !spec->layers)
		return lt_fail("rootfs: no layer paths");
	for (size_t i = 0; i < spec->n_injects; i++)
		if (!spec->injects[i].path)
			return lt_fail("rootfs: inject %zu has no path", i);
	return 0;
}

int rootfs_build(const struct rootfs_spec *spec, const char *out_path, struct rootfs_stats *stats)
{
	if (check_spec(spec, out_path) < 0)
		return -1;
	const struct rf_writer_ops *ops =
		spec->format == ROOTFS_EXT4 ? &rf_ext4_ops : &rf_squashfs_ops;
	struct rf_build b = {.spec = spec, .fd = -1};
	struct rootfs_limits lim;
	limits_with_defaults(&spec->limits, &lim);
	if (rf_tree_init(&b.tree, &lim, spec->mtime_clamp) < 0)
		return -1;
	struct plan plan = {0};
	struct lt_atomic out = {.fd = -1};
	bool opened = false;
	int rc = -1;

	uint64_t t0 = lt_now_ns();
	if (rf_scan_layers(&b) < 0)
		goto done;
	uint64_t t1 = lt_now_ns();
	if (add_injects(&b) < 0 || derive_identity(&b) < 0 || make_plan(&b, &plan) < 0)
		goto done;
	if (lt_atomic_open(&out, out_path, 0644) < 0)
		goto done;
	b.fd = out.fd;
	b.tmp_path = out.tmp_path;
	opened = true;
	b.stats.entries = plan.inodes;
	if (ops->open(&b) < 0)
		goto done;
	uint64_t t2 = lt_now_ns();
	for (unsigned i = 0; i < spec->n_layers; i++)
		if (write_layer(&b, ops, &plan, i) < 0)
			goto done;
	if (write_injects(&b, ops, &plan) < 0)
		goto done;
	uint64_t t3 = lt_now_ns();
	if (ops->finish(&b) < 0)
		goto done;
	ops->close(&b);
	uint64_t t4 = lt_now_ns();
	if (lt_atomic_commit(&out) < 0) {
		opened = false;
		goto done;
	}
	opened = false;
	lt_debug("rootfs %s: scan %.2fs, open %.2fs, data %.2fs, tree %.2fs, sync %.2fs; "
		 "%llu entries, %zu KiB of metadata", rootfs_format_name(spec->format),
		 (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, (double)(t3 - t2) / 1e9,
		 (double)(t4 - t3) / 1e9, (double)(lt_now_ns() - t4) / 1e9,
		 (unsigned long long)b.stats.entries, b.tree.arena.used >> 10);
	if (stats)
		*stats = b.stats;
	rc = 0;
done:
	if (rc < 0) {
		ops->close(&b);
		if (opened)
			lt_atomic_abort(&out);
	}
	plan_free(&plan, spec->n_layers);
	rf_tree_free(&b.tree);
	return rc;
}
