/* Import of OCI image layouts (directory or tar) and `docker save`
 * tarballs, and export of an image as an OCI layout tar. */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMPORT_ENTRIES_MAX 100000
#define IMPORT_IMAGES_MAX 256
#define LINK_HOPS_MAX 8
#define ARCHIVE_NAME_MAX 4096
#define SMALL_FILE_MAX 4096

/* ---- import sources --------------------------------------------------- */

/* One file of a tar source: streamed once into a sealed store temp file
 * (hashed on the way), or a link to another entry. */
struct src_file {
	char *name;
	char *link;
	struct oci_blob_writer *w; /* NULL once committed into the store */
	char digest[OCI_DIGEST_MAX];
	uint64_t size;
};

struct src {
	struct oci_store *s;
	const char *path;
	char *dir; /* directory sources */
	struct src_file *f;
	size_t n, cap;
};

/* Resolves "." and ".." and repeated slashes; fails when the path leaves
 * the archive root. */
static char *norm_path(const char *in)
{
	size_t len = strlen(in);
	if (len > ARCHIVE_NAME_MAX) {
		lt_fail("path too long in archive");
		return NULL;
	}
	char *out = lt_malloc(len + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (n == 0)
			break;
		if (n == 1 && p[0] == '.') {
			/* nothing */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (o == 0) {
				free(out);
				lt_fail("path '%.200s' leaves the archive", in);
				return NULL;
			}
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p += n;
	}
	out[o] = '\0';
	return out;
}

/* A link target relative to the directory of the entry that holds it. */
static char *link_target(const char *entry, const char *target)
{
	if (target[0] == '/')
		return norm_path(target);
	const char *slash = strrchr(entry, '/');
	char *joined = slash ? lt_sprintf("%.*s/%s", (int)(slash - entry), entry, target)
			     : lt_strdup(target);
	if (!joined)
		return NULL;
	char *n = norm_path(joined);
	free(joined);
	return n;
}

static void src_file_free(struct src_file *f)
{
	free(f->name);
	free(f->link);
	oci_blob_abort(f->w);
}

static void src_close(struct src *src)
{
	for (size_t i = 0; i < src->n; i++)
		src_file_free(&src->f[i]);
	free(src->f);
	free(src->dir);
}

static struct src_file *src_lookup(struct src *src, const char *name)
{
	for (size_t i = src->n; i-- > 0;)
		if (!strcmp(src->f[i].name, name))
			return &src->f[i];
	return NULL;
}

static struct src_file *src_add(struct src *src, char *name)
{
	struct src_file *f = src_lookup(src, name);
	if (f) {
		/* A later entry of the same name replaces the earlier one. */
		src_file_free(f);
		memset(f, 0, sizeof(*f));
		f->name = name;
		return f;
	}
	if (src->n == src->cap) {
		size_t cap = src->cap ? src->cap * 2 : 32;
		struct src_file *v = lt_realloc(src->f, cap * sizeof(*v));
		if (!v)
			return NULL;
		src->f = v;
		src->cap = cap;
	}
	f = &src->f[src->n++];
	memset(f, 0, sizeof(*f));
	f->name = name;
	return f;
}

static int read_entry_blob(struct src *src, struct archive *a, struct src_file *f)
{
	struct oci_blob_writer *w;
	if (oci_blob_begin(src->s, OCI_BLOB_MAX, &w) < 0)
		return -1;
	for (;;) {
		const void *buf;
		size_t n;
		la_int64_t off;
		int r = archive_read_data_block(a, &buf, &n, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			oci_blob_abort(w);
			return lt_fail("%s: %s", f->name, archive_error_string(a));
		}
		/* Sparse tar members: zero-fill the holes. */
		uint64_t at = oci_blob_written(w);
		static const uint8_t zeros[4096];
		while (off >= 0 && (uint64_t)off > at) {
			size_t z = (uint64_t)off - at > sizeof(zeros) ? sizeof(zeros)
								     : (size_t)((uint64_t)off - at);
			if (oci_blob_write(w, zeros, z) < 0) {
				oci_blob_abort(w);
				return lt_fail_ctx("%s", f->name);
			}
			at += z;
		}
		if (oci_blob_write(w, buf, n) < 0) {
			oci_blob_abort(w);
			return lt_fail_ctx("%s", f->name);
		}
	}
	f->size = oci_blob_written(w);
	if (oci_blob_seal(w, f->digest) < 0) {
		oci_blob_abort(w);
		return -1;
	}
	f->w = w;
	return 0;
}

static int read_tar_entry(struct src *src, struct archive *a, struct archive_entry *e)
{
	const char *raw = archive_entry_pathname(e);
	if (!raw)
		return lt_fail("archive entry without a name");
	char *name = norm_path(raw);
	if (!name)
		return -1;
	const char *hard = archive_entry_hardlink(e);
	mode_t type = archive_entry_filetype(e);
	if (!hard && type != AE_IFREG && type != AE_IFLNK) {
		free(name);
		return 0; /* directories and specials carry nothing we need */
	}
	struct src_file *f = src_add(src, name);
	if (!f) {
		free(name);
		return -1;
	}
	if (hard)
		f->link = norm_path(hard);
	else if (type == AE_IFLNK)
		f->link = archive_entry_symlink(e) ? link_target(name, archive_entry_symlink(e))
						   : NULL;
	else
		return read_entry_blob(src, a, f);
	return f->link ? 0 : lt_fail_ctx("link %.200s", name);
}

static int src_open_tar(struct src *src)
{
	struct archive *a = archive_read_new();
	if (!a)
		return lt_fail("out of memory");
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	int rc = 0;
	if (archive_read_open_filename(a, src->path, 1 << 16) != ARCHIVE_OK) {
		rc = lt_fail("%s", archive_error_string(a));
		goto done;
	}
	struct archive_entry *e;
	size_t count = 0;
	int r;
	while (rc == 0 && (r = archive_read_next_header(a, &e)) != ARCHIVE_EOF) {
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			rc = lt_fail("not a readable tar archive: %s", archive_error_string(a));
			break;
		}
		if (++count > IMPORT_ENTRIES_MAX) {
			rc = lt_fail("more than %d entries", IMPORT_ENTRIES_MAX);
			break;
		}
		rc = read_tar_entry(src, a, e);
	}
done:
	archive_read_free(a);
	return rc;
}

static int src_open(struct oci_store *s, const char *path, struct src *src)
{
	memset(src, 0, sizeof(*src));
	src->s = s;
	src->path = path;
	struct stat st;
	if (stat(path, &st) < 0)
		return lt_fail_errno("cannot open %s", path);
	if (S_ISDIR(st.st_mode)) {
		src->dir = lt_strdup(path);
		return src->dir ? 0 : -1;
	}
	return src_open_tar(src);
}

/* The tar entry a path names, links followed. */
static int src_find(struct src *src, const char *path, struct src_file **out)
{
	char *name = norm_path(path);
	if (!name)
		return -1;
	struct src_file *f = src_lookup(src, name);
	for (int hops = 0; f && f->link; hops++) {
		if (hops == LINK_HOPS_MAX) {
			free(name);
			return lt_fail("%s: too many levels of links", path);
		}
		f = src_lookup(src, f->link);
	}
	free(name);
	if (!f)
		return lt_fail("%.200s is missing from the archive", path);
	*out = f;
	return 0;
}

static char *src_dir_path(struct src *src, const char *path)
{
	char *name = norm_path(path);
	if (!name)
		return NULL;
	char *full = lt_path_join(src->dir, name);
	free(name);
	return full;
}

static bool src_has(struct src *src, const char *path)
{
	if (src->dir) {
		char *full = src_dir_path(src, path);
		bool ok = full && lt_path_exists(full);
		free(full);
		return ok;
	}
	struct src_file *f;
	bool ok = src_find(src, path, &f) == 0;
	lt_clear_error();
	return ok;
}

static int src_read(struct src *src, const char *path, size_t max, char **data, size_t *len)
{
	int rc;
	if (src->dir) {
		char *full = src_dir_path(src, path);
		rc = full ? lt_read_file(full, max, data, len) : -1;
		free(full);
		return rc < 0 ? lt_fail_ctx("%s", path) : 0;
	}
	struct src_file *f;
	if (src_find(src, path, &f) < 0)
		return -1;
	if (f->size > max)
		return lt_fail("%s is too large (%llu bytes)", path, (unsigned long long)f->size);
	if (f->w)
		return lt_read_file(oci_blob_tmp_path(f->w), max, data, len);
	return oci_store_read_blob(src->s, f->digest, max, data, len);
}

static int check_blob(const char *path, const char *digest, uint64_t size, const char *want,
		      int64_t want_size)
{
	if (want_size >= 0 && size != (uint64_t)want_size)
		return lt_fail("%s: size mismatch: expected %lld bytes, got %llu", path,
			       (long long)want_size, (unsigned long long)size);
	if (want && strcmp(want, digest))
		return lt_fail("%s: digest mismatch: expected %s, got %s", path, want, digest);
	return 0;
}

static int src_store_dir(struct src *src, const char *path, const char *want, int64_t want_size,
			 char out[OCI_DIGEST_MAX], uint64_t *size)
{
	if (want && oci_store_has_blob_sized(src->s, want, want_size)) {
		strcpy(out, want);
		*size = (uint64_t)want_size;
		return 0;
	}
	char *full = src_dir_path(src, path);
	if (!full)
		return -1;
	int fd = open(full, O_RDONLY | O_CLOEXEC);
	free(full);
	if (fd < 0)
		return lt_fail_errno("cannot open %s", path);
	struct oci_blob_writer *w;
	if (oci_blob_begin(src->s, want_size >= 0 ? (uint64_t)want_size + 1 : OCI_BLOB_MAX, &w) < 0) {
		close(fd);
		return -1;
	}
	static uint8_t buf[1 << 16];
	int rc = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = lt_fail_errno("cannot read %s", path);
			break;
		}
		if (n == 0 || (rc = oci_blob_write(w, buf, (size_t)n)) < 0)
			break;
	}
	close(fd);
	if (rc < 0) {
		oci_blob_abort(w);
		return lt_fail_ctx("%s", path);
	}
	*size = oci_blob_written(w);
	if (oci_blob_commit(w, want, want_size, out) < 0)
		return lt_fail_ctx("%s", path);
	return 0;
}

/* Puts a file of the source into the store, verified against want and
 * want_size when given; writes its digest and size. */
static int src_store(struct src *src, const char *path, const char *want, int64_t want_size,
		     char out[OCI_DIGEST_MAX], uint64_t *size)
{
	uint64_t local;
	if (!size)
		size = &local;
	if (src->dir)
		return src_store_dir(src, path, want, want_size, out, size);
	struct src_file *f;
	if (src_find(src, path, &f) < 0 || check_blob(path, f->digest, f->size, want, want_size) < 0)
		return -1;
	strcpy(out, f->digest);
	*size = f->size;
	if (!f->w)
		return 0; /* already committed (a shared layer) */
	struct oci_blob_writer *w = f->w;
	f->w = NULL;
	return oci_blob_commit(w, f->digest, (int64_t)f->size, NULL) < 0 ? lt_fail_ctx("%s", path)
									: 0;
}

/* ---- naming ----------------------------------------------------------- */

/* "dir/my-App_1.tar.gz" -> "my-app_1"; NULL if nothing usable remains. */
static char *file_stem(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	char *s = lt_strdup(base);
	if (!s)
		return NULL;
	static const char *const exts[] = {".tar.gz", ".tgz", ".tar.zst", ".tar", ".oci"};
	for (size_t i = 0; i < LT_ARRAY_LEN(exts); i++) {
		size_t n = strlen(s), e = strlen(exts[i]);
		if (n > e && !strcasecmp(s + n - e, exts[i])) {
			s[n - e] = '\0';
			break;
		}
	}
	size_t o = 0;
	for (size_t i = 0; s[i]; i++) {
		char c = (char)tolower((unsigned char)s[i]);
		if (isalnum((unsigned char)c))
			s[o++] = c;
		else if (o && s[o - 1] != '-')
			s[o++] = '-';
	}
	while (o && s[o - 1] == '-')
		o--;
	s[o] = '\0';
	if (!o || o > 100) {
		free(s);
		return lt_strdup("import");
	}
	return s;
}

static char *canonical_of(const char *name)
{
	struct oci_ref r;
	if (oci_ref_parse(name, &r) < 0)
		return NULL;
	char *c = oci_ref_string(&r);
	oci_ref_free(&r);
	return c;
}

/* The ref an imported image is stored under: --tag, else the layout's
 * annotations (a full name, or a tag for localhost/<file stem>), else
 * localhost/<file stem>:latest. */
static char *import_name(const char *tag, const struct oci_desc *d, const char *path)
{
	if (tag)
		return canonical_of(tag);
	if (d && d->image_name) {
		char *c = canonical_of(d->image_name);
		if (c)
			return c;
		lt_warn("ignoring invalid image name '%.200s' in the layout", d->image_name);
	}
	const char *t = "latest";
	if (d && d->ref_name) {
		if (strchr(d->ref_name, '/') || strchr(d->ref_name, ':')) {
			char *c = canonical_of(d->ref_name);
			if (c)
				return c;
		} else if (oci_ref_check_tag(d->ref_name) == 0) {
			t = d->ref_name;
		}
	}
	lt_clear_error();
	char *stem = file_stem(path);
	char *name = stem ? lt_sprintf("localhost/%s:%s", stem, t) : NULL;
	free(stem);
	char *c = name ? canonical_of(name) : NULL;
	free(name);
	return c;
}

/* ---- OCI layout ------------------------------------------------------- */

struct import {
	struct oci_store *s;
	struct src src;
	const struct oci_import_opts *o;
	const char *path;
	struct oci_platform want;
	char last[OCI_DIGEST_MAX];
	int images;
};

static char *blob_path(const char *digest)
{
	return lt_sprintf("blobs/sha256/%s", digest + 7);
}

/* Reads a manifest/index/config blob of the layout, verifying it. */
static int read_layout_blob(struct import *im, const struct oci_desc *d, char **data,
			    size_t *len)
{
	char *p = blob_path(d->digest);
	if (!p)
		return -1;
	if (d->size > OCI_MANIFEST_MAX) {
		free(p);
		return lt_fail("%s is too large (%llu bytes)", d->digest,
			       (unsigned long long)d->size);
	}
	int rc = src_read(&im->src, p, OCI_MANIFEST_MAX, data, len);
	char hex[LT_SHA256_HEX];
	char got[OCI_DIGEST_MAX];
	if (rc == 0 && (rc = lt_sha256_hex(*data, *len, hex)) == 0) {
		snprintf(got, sizeof(got), "sha256:%s", hex);
		rc = check_blob(p, got, *len, d->digest, (int64_t)d->size);
		if (rc < 0)
			free(*data);
	}
	free(p);
	return rc;
}

static int store_image(struct import *im, const struct oci_manifest *m, const char *mdata,
		       size_t mlen, const char *mdigest)
{
	char *cfg;
	size_t clen;
	if (oci_manifest_check_image(m) < 0)
		return lt_fail_ctx("manifest %s", mdigest);
	if (read_layout_blob(im, &m->config, &cfg, &clen) < 0)
		return lt_fail_ctx("config");
	int rc = oci_config_check(cfg, clen, m, &im->want, im->o->platform != NULL);
	if (rc == 0)
		rc = oci_store_put(im->s, cfg, clen, m->config.digest, NULL);
	free(cfg);
	for (size_t i = 0; rc == 0 && i < m->n_layers; i++) {
		char *p = blob_path(m->layers[i].digest);
		char got[OCI_DIGEST_MAX];
		rc = p ? src_store(&im->src, p, m->layers[i].digest, (int64_t)m->layers[i].size, got,
				   NULL)
		       : -1;
		free(p);
		if (rc < 0)
			lt_fail_ctx("layer %zu", i);
	}
	if (rc == 0)
		rc = oci_store_put(im->s, mdata, mlen, mdigest, NULL);
	return rc;
}

/* Follows desc through nested indexes to one image and stores it. */
static int import_desc(struct import *im, const struct oci_desc *top, char digest[OCI_DIGEST_MAX])
{
	struct oci_desc cur = {0};
	char mt[128];
	strcpy(cur.digest, top->digest);
	cur.size = top->size;
	snprintf(mt, sizeof(mt), "%s", top->media_type);
	cur.media_type = mt;
	for (int depth = 0;; depth++) {
		char *data;
		size_t len;
		struct oci_manifest m;
		if (read_layout_blob(im, &cur, &data, &len) < 0)
			return -1;
		if (oci_manifest_parse(data, len, cur.media_type, &m) < 0) {
			free(data);
			return lt_fail_ctx("%s", cur.digest);
		}
		if (m.kind == OCI_KIND_MANIFEST) {
			int rc = store_image(im, &m, data, len, cur.digest);
			if (rc == 0)
				strcpy(digest, cur.digest);
			oci_manifest_free(&m);
			free(data);
			return rc;
		}
		free(data);
		int i = depth < OCI_INDEX_DEPTH ? oci_index_select(&m, &im->want)
						: lt_fail("indexes nested too deeply");
		if (i >= 0) {
			strcpy(cur.digest, m.manifests[i].digest);
			cur.size = m.manifests[i].size;
			snprintf(mt, sizeof(mt), "%s", m.manifests[i].media_type);
		}
		oci_manifest_free(&m);
		if (i < 0)
			return lt_fail_ctx("%s", top->digest);
	}
}

static int tag_image(struct import *im, const char *name, const char *digest)
{
	if (!name)
		return lt_fail_ctx("image name");
	int rc = oci_store_tag(im->s, name, digest);
	if (rc == 0 && !im->o->quiet)
		fprintf(stderr, "Loaded %s (%s)\n", name, digest);
	return rc;
}

static bool all_have_platform(const struct oci_manifest *idx)
{
	for (size_t i = 0; i < idx->n_manifests; i++)
		if (!idx->manifests[i].has_platform)
			return false;
	return idx->n_manifests > 1;
}

static int import_layout(struct import *im)
{
	char *text = NULL, *idx_data = NULL;
	size_t len;
	struct oci_manifest idx = {0};
	int rc = src_read(&im->src, "oci-layout", SMALL_FILE_MAX, &text, &len);
	if (rc == 0) {
		json_t *j = json_loadb(text, len, 0, NULL);
		const char *v = json_string_value(json_object_get(j, "imageLayoutVersion"));
		if (!v || strncmp(v, "1.", 2))
			rc = lt_fail("oci-layout: unsupported or missing imageLayoutVersion");
		json_decref(j);
	}
	if (rc == 0) {
		rc = src_read(&im->src, "index.json", OCI_MANIFEST_MAX, &idx_data, &len);
		if (rc == 0 && (rc = oci_manifest_parse(idx_data, len, NULL, &idx)) == 0 &&
		    idx.kind != OCI_KIND_INDEX)
			rc = lt_fail("not an image index");
		if (rc < 0)
			lt_fail_ctx("index.json");
	}
	if (rc == 0 && all_have_platform(&idx)) {
		/* index.json itself is the multi-platform index of one image. */
		int i = oci_index_select(&idx, &im->want);
		rc = i < 0 ? -1 : import_desc(im, &idx.manifests[i], im->last);
		const struct oci_desc *named = i >= 0 ? &idx.manifests[i] : NULL;
		for (size_t k = 0; named && k < idx.n_manifests && !named->ref_name &&
				   !named->image_name; k++)
			named = &idx.manifests[k];
		if (rc == 0) {
			char *name = import_name(im->o->tag, named, im->path);
			rc = tag_image(im, name, im->last);
			free(name);
			im->images++;
		}
	} else if (rc == 0) {
		size_t usable = 0;
		for (size_t i = 0; i < idx.n_manifests; i++)
			usable += oci_media_type_is_manifest(idx.manifests[i].media_type) ||
				  oci_media_type_is_index(idx.manifests[i].media_type);
		if (usable == 0)
			rc = lt_fail("index.json names no image");
		else if (usable > 1 && im->o->tag)
			rc = lt_fail("the layout holds %zu images; --tag needs exactly one", usable);
		for (size_t i = 0; rc == 0 && i < idx.n_manifests; i++) {
			const struct oci_desc *d = &idx.manifests[i];
			if (!oci_media_type_is_manifest(d->media_type) &&
			    !oci_media_type_is_index(d->media_type)) {
				lt_warn("%s: skipping %s (media type %s)", im->path, d->digest,
					d->media_type);
				continue;
			}
			rc = import_desc(im, d, im->last);
			if (rc == 0) {
				char *name = import_name(im->o->tag, d, im->path);
				rc = tag_image(im, name, im->last);
				free(name);
				im->images++;
			}
		}
	}
	oci_manifest_free(&idx);
	free(idx_data);
	free(text);
	return rc;
}

/* ---- docker save ------------------------------------------------------ */

/* A 64-hex digest embedded in a file name ("<hex>.json", "blobs/sha256/<hex>"). */
static bool name_digest(const char *path, char out[OCI_DIGEST_MAX])
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = strcspn(base, ".");
	if (n != 64 || (base[n] && strcmp(base + n, ".json") && strcmp(base + n, ".tar")))
		return false;
	snprintf(out, OCI_DIGEST_MAX, "sha256:%.64s", base);
	return oci_digest_valid(out);
}

static int sniff_compression(const char *path, enum oci_compression *c)
{
	uint8_t m[4] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("cannot open %s", path);
	ssize_t n = read(fd, m, sizeof(m));
	close(fd);
	if (n < 0)
		return lt_fail_errno("cannot read %s", path);
	if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
		*c = OCI_COMP_GZIP;
	else if (n == 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
		*c = OCI_COMP_ZSTD;
	else
		*c = OCI_COMP_NONE;
	return 0;
}

/* sha256 of a compressed layer's content (its diff_id). */
static int uncompressed_digest(const char *path, char out[OCI_DIGEST_MAX])
{
	struct archive *a = archive_read_new();
	struct lt_sha256 *h = lt_sha256_new();
	int rc = a && h ? 0 : lt_fail("out of memory");
	struct archive_entry *e;
	if (rc == 0) {
		archive_read_support_filter_all(a);
		archive_read_support_format_raw(a);
		if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK ||
		    archive_read_next_header(a, &e) != ARCHIVE_OK)
			rc = lt_fail("%s", archive_error_string(a));
	}
	static uint8_t buf[1 << 16];
	uint64_t total = 0;
	while (rc == 0) {
		la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
		if (n < 0)
			rc = lt_fail("decompressing: %s", archive_error_string(a));
		else if (n == 0)
			break;
		else if ((total += (uint64_t)n) > 4 * OCI_BLOB_MAX)
			rc = lt_fail("layer decompresses to more than %llu bytes",
				     4 * (unsigned long long)OCI_BLOB_MAX);
		else
			rc = lt_sha256_update(h, buf, (size_t)n);
	}
	uint8_t raw[LT_SHA256_LEN];
	if (rc == 0 && (rc = lt_sha256_final(h, raw)) == 0) {
		strcpy(out, "sha256:");
		lt_hex(raw, sizeof(raw), out + 7);
	}
	lt_sha256_free(h);
	if (a)
		archive_read_free(a);
	return rc;
}

static const char *layer_media_type(enum oci_compression c)
{
	return c == OCI_COMP_GZIP ? MT_OCI_LAYER_GZIP : c == OCI_COMP_ZSTD ? MT_OCI_LAYER_ZSTD
									 : MT_OCI_LAYER;
}

/* Stores one docker-save layer, checking it against its diff_id. */
static int docker_layer(struct import *im, const char *path, const char *diff_id, json_t *layers)
{
	char digest[OCI_DIGEST_MAX], content[OCI_DIGEST_MAX];
	uint64_t size;
	enum oci_compression c;
	if (src_store(&im->src, path, NULL, -1, digest, &size) < 0)
		return -1;
	char *blob = oci_store_blob_path(im->s, digest);
	int rc = blob ? sniff_compression(blob, &c) : -1;
	if (rc == 0) {
		if (c == OCI_COMP_NONE)
			strcpy(content, digest);
		else
			rc = uncompressed_digest(blob, content);
	}
	free(blob);
	if (rc == 0 && strcmp(content, diff_id))
		rc = lt_fail("diff_id mismatch: the config says %s, the layer is %s", diff_id,
			     content);
	json_t *d = rc == 0 ? json_pack("{s:s, s:s, s:I}", "mediaType", layer_media_type(c),
					"digest", digest, "size", (json_int_t)size)
			    : NULL;
	if (rc == 0 && (!d || json_array_append_new(layers, d) < 0))
		rc = lt_fail("out of memory");
	return rc < 0 ? lt_fail_ctx("%.200s", path) : 0;
}

/* Builds and stores the OCI manifest of one manifest.json entry. */
static int docker_entry(struct import *im, json_t *entry, char mdigest[OCI_DIGEST_MAX])
{
	const char *cfg_path = json_string_value(json_object_get(entry, "Config"));
	json_t *lpaths = json_object_get(entry, "Layers");
	if (!cfg_path || !json_is_array(lpaths))
		return lt_fail("entry without Config or Layers");
	if (json_array_size(lpaths) > OCI_LAYERS_MAX)
		return lt_fail("too many layers (%zu)", json_array_size(lpaths));
	char *cfg = NULL;
	size_t clen;
	char cdigest[OCI_DIGEST_MAX], named[OCI_DIGEST_MAX];
	if (src_read(&im->src, cfg_path, OCI_MANIFEST_MAX, &cfg, &clen) < 0)
		return -1;
	int rc = oci_store_put(im->s, cfg, clen, NULL, cdigest);
	if (rc == 0 && name_digest(cfg_path, named) && strcmp(named, cdigest))
		rc = lt_fail("config %s: digest mismatch (content is %s)", cfg_path, cdigest);
	json_t *config = rc == 0 ? json_loadb(cfg, clen, 0, NULL) : NULL;
	free(cfg);
	json_t *ids = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
	if (rc == 0 && (!json_is_array(ids) || json_array_size(ids) != json_array_size(lpaths)))
		rc = lt_fail("config %s: rootfs.diff_ids does not match the %zu layers", cfg_path,
			     json_array_size(lpaths));
	json_t *layers = json_array();
	for (size_t i = 0; rc == 0 && i < json_array_size(lpaths); i++) {
		const char *lp = json_string_value(json_array_get(lpaths, i));
		const char *id = json_string_value(json_array_get(ids, i));
		if (!lp || !id || !oci_digest_valid(id))
			rc = lt_fail("layer %zu: bad path or diff_id", i);
		else
			rc = docker_layer(im, lp, id, layers);
	}
	char *text = NULL;
	if (rc == 0) {
		json_t *m = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:O}", "schemaVersion", 2,
				      "mediaType", MT_OCI_MANIFEST, "config", "mediaType",
				      MT_OCI_CONFIG, "digest", cdigest, "size", (json_int_t)clen,
				      "layers", layers);
		text = m ? json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		json_decref(m);
		rc = text ? oci_store_put(im->s, text, strlen(text), NULL, mdigest)
			  : lt_fail("out of memory");
	}
	free(text);
	json_decref(layers);
	json_decref(config);
	return rc;
}

static int docker_names(struct import *im, json_t *entry, const char *digest)
{
	if (im->o->tag) {
		char *name = import_name(im->o->tag, NULL, im->path);
		int rc = tag_image(im, name, digest);
		free(name);
		return rc;
	}
	json_t *tags = json_object_get(entry, "RepoTags");
	size_t i, done = 0;
	json_t *t;
	int rc = 0;
	json_array_foreach(tags, i, t) {
		const char *s = json_string_value(t);
		char *name = s ? canonical_of(s) : NULL;
		if (!name) {
			lt_warn("%s: ignoring invalid RepoTag '%.200s'", im->path, s ? s : "");
			continue;
		}
		rc = tag_image(im, name, digest);
		free(name);
		if (rc < 0)
			return rc;
		done++;
	}
	if (done == 0) {
		char *name = import_name(NULL, NULL, im->path);
		rc = tag_image(im, name, digest);
		free(name);
	}
	return rc;
}

static int import_docker(struct import *im)
{
	char *text;
	size_t len;
	if (src_read(&im->src, "manifest.json", OCI_MANIFEST_MAX, &text, &len) < 0)
		return -1;
	json_error_t err;
	json_t *root = json_loadb(text, len, 0, &err);
	free(text);
	int rc = 0;
	if (!json_is_array(root) || json_array_size(root) == 0)
		rc = lt_fail("manifest.json is not a non-empty array");
	else if (json_array_size(root) > IMPORT_IMAGES_MAX)
		rc = lt_fail("manifest.json lists too many images");
	else if (json_array_size(root) > 1 && im->o->tag)
		rc = lt_fail("the archive holds %zu images; --tag needs exactly one",
			     json_array_size(root));
	for (size_t i = 0; rc == 0 && i < json_array_size(root); i++) {
		json_t *entry = json_array_get(root, i);
		rc = docker_entry(im, entry, im->last);
		if (rc < 0)
			lt_fail_ctx("manifest.json[%zu]", i);
		else
			rc = docker_names(im, entry, im->last);
		im->images++;
	}
	json_decref(root);
	return rc;
}

int oci_import(struct oci_store *s, const char *path, const struct oci_import_opts *o,
	       char digest[OCI_DIGEST_MAX])
{
	static const struct oci_import_opts defaults = {0};
	struct import im = {.s = s, .o = o ? o : &defaults, .path = path};
	int rc = im.o->platform ? oci_platform_parse(im.o->platform, &im.want) : 0;
	if (!im.o->platform)
		oci_platform_host(&im.want);
	if (rc == 0 && im.o->tag) {
		struct oci_ref r;
		if ((rc = oci_ref_parse(im.o->tag, &r)) == 0)
			oci_ref_free(&r);
	}
	if (rc < 0)
		return -1;
	if (oci_store_lock(s, false) < 0)
		return -1;
	rc = src_open(s, path, &im.src);
	if (rc == 0) {
		if (src_has(&im.src, "index.json"))
			rc = import_layout(&im);
		else if (src_has(&im.src, "manifest.json"))
			rc = import_docker(&im);
		else
			rc = lt_fail("neither an OCI image layout (no index.json) nor a docker-save "
				     "archive (no manifest.json)");
	}
	src_close(&im.src);
	oci_store_unlock(s);
	if (rc == 0 && digest)
		strcpy(digest, im.last);
	return rc < 0 ? lt_fail_ctx("%s", path) : 0;
}

/* ---- export ----------------------------------------------------------- */

static int write_header(struct archive *a, const char *name, mode_t type, uint64_t size)
{
	struct archive_entry *e = archive_entry_new();
	if (!e)
		return lt_fail("out of memory");
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
	archive_entry_set_size(e, type == AE_IFDIR ? 0 : (la_int64_t)size);
	archive_entry_set_mtime(e, 0, 0);
	int r = archive_write_header(a, e);
	archive_entry_free(e);
	return r == ARCHIVE_OK ? 0 : lt_fail("%s: %s", name, archive_error_string(a));
}

static int write_mem(struct archive *a, const char *name, const void *data, size_t n)
{
	if (write_header(a, name, AE_IFREG, n) < 0)
		return -1;
	if (n && archive_write_data(a, data, n) != (la_ssize_t)n)
		return lt_fail("%s: %s", name, archive_error_string(a));
	return 0;
}

/* Streams a store blob into the archive, re-verifying its digest. */
static int write_blob(struct archive *a, struct oci_store *s, const char *digest, uint64_t size)
{
	char *path = oci_store_blob_path(s, digest);
	char *name = lt_sprintf("blobs/sha256/%s", digest + 7);
	struct lt_sha256 *h = lt_sha256_new();
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	int rc = 0;
	if (!path || !name || !h)
		rc = -1;
	else if (fd < 0)
		rc = lt_fail_errno("cannot open blob %s", digest);
	else
		rc = write_header(a, name, AE_IFREG, size);
	static uint8_t buf[1 << 16];
	uint64_t total = 0;
	while (rc == 0) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = lt_fail_errno("cannot read blob %s", digest);
			break;
		}
		if (n == 0)
			break;
		if ((total += (uint64_t)n) > size) {
			rc = lt_fail("blob %s is larger than recorded", digest);
			break;
		}
		if ((rc = lt_sha256_update(h, buf, (size_t)n)) == 0 &&
		    archive_write_data(a, buf, (size_t)n) != n)
			rc = lt_fail("%s: %s", name, archive_error_string(a));
	}
	uint8_t raw[LT_SHA256_LEN];
	char hex[LT_SHA256_HEX];
	if (rc == 0 && total != size)
		rc = lt_fail("blob %s is shorter than recorded", digest);
	if (rc == 0 && (rc = lt_sha256_final(h, raw)) == 0) {
		lt_hex(raw, sizeof(raw), hex);
		if (strcmp(hex, digest + 7))
			rc = lt_fail("blob %s in the store is corrupt", digest);
	}
	if (fd >= 0)
		close(fd);
	lt_sha256_free(h);
	free(path);
	free(name);
	return rc;
}

static char *export_index(const char *name, const char *mt, const char *digest, size_t size)
{
	json_t *ann = json_object();
	struct oci_ref r;
	if (name && ann && oci_ref_parse(name, &r) == 0) {
		json_object_set_new(ann, OCI_ANN_IMAGE_NAME, json_string(name));
		if (r.tag)
			json_object_set_new(ann, OCI_ANN_REF_NAME, json_string(r.tag));
		oci_ref_free(&r);
	}
	json_t *idx = json_pack("{s:i, s:s, s:[{s:s, s:s, s:I, s:o}]}", "schemaVersion", 2,
				"mediaType", MT_OCI_INDEX, "manifests", "mediaType", mt, "digest",
				digest, "size", (json_int_t)size, "annotations", ann);
	char *text = idx ? json_dumps(idx, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(idx);
	if (!text)
		lt_fail("out of memory");
	return text;
}

static int export_to(struct archive *a, struct oci_store *s, const struct oci_manifest *m,
		     const char *index, const char *digest, size_t mlen)
{
	static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	int rc = write_mem(a, "oci-layout", layout, strlen(layout));
	if (rc == 0)
		rc = write_mem(a, "index.json", index, strlen(index));
	if (rc == 0)
		rc = write_header(a, "blobs/", AE_IFDIR, 0);
	if (rc == 0)
		rc = write_header(a, "blobs/sha256/", AE_IFDIR, 0);
	if (rc == 0)
		rc = write_blob(a, s, digest, mlen);
	if (rc == 0)
		rc = write_blob(a, s, m->config.digest, m->config.size);
	for (size_t i = 0; rc == 0 && i < m->n_layers; i++) {
		bool dup = false;
		for (size_t j = 0; j < i; j++)
			dup |= !strcmp(m->layers[j].digest, m->layers[i].digest);
		if (!dup)
			rc = write_blob(a, s, m->layers[i].digest, m->layers[i].size);
	}
	if (rc == 0 && archive_write_close(a) != ARCHIVE_OK)
		rc = lt_fail("%s", archive_error_string(a));
	return rc;
}

int oci_export(struct oci_store *s, const char *ref, const char *out_path)
{
	char digest[OCI_DIGEST_MAX];
	if (oci_store_resolve(s, ref, digest) < 0)
		return -1;
	char *mdata;
	size_t mlen;
	struct oci_manifest m;
	if (oci_store_read_blob(s, digest, OCI_MANIFEST_MAX, &mdata, &mlen) < 0)
		return lt_fail_ctx("%s", ref);
	int rc = oci_manifest_parse(mdata, mlen, NULL, &m);
	free(mdata);
	if (rc < 0)
		return lt_fail_ctx("%s: manifest %s", ref, digest);
	char *name = oci_store_ref_for(s, ref, digest);
	char *index = export_index(name, m.media_type, digest, mlen);
	struct lt_atomic at = {.fd = -1};
	bool to_stdout = !strcmp(out_path, "-");
	struct archive *a = archive_write_new();
	rc = index && a ? 0 : lt_fail("out of memory");
	if (rc == 0 && !to_stdout)
		rc = lt_atomic_open(&at, out_path, 0644);
	if (rc == 0 && (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
			archive_write_open_fd(a, to_stdout ? STDOUT_FILENO : at.fd) != ARCHIVE_OK))
		rc = lt_fail("%s", archive_error_string(a));
	if (rc == 0)
		rc = export_to(a, s, &m, index, digest, mlen);
	if (a)
		archive_write_free(a);
	if (!to_stdout && at.tmp_path) {
		if (rc == 0)
			rc = lt_atomic_commit(&at);
		else
			lt_atomic_abort(&at);
	}
	oci_manifest_free(&m);
	free(index);
	free(name);
	return rc < 0 ? lt_fail_ctx("exporting %s to %s", ref, out_path) : 0;
}
