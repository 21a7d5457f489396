/* The content-addressed store: verified blobs, refs, listing and GC. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define REFS_DEPTH_MAX 64
#define REFS_MAX 100000

struct oci_store {
	char *root;
	char *blobs; /* <root>/blobs/sha256 */
	char *refs;
	char *tmp;
	int lock_fd;
	int lock_depth;
	bool lock_excl;
};

struct oci_blob_writer {
	struct oci_store *s;
	int fd;
	char *tmp_path;
	struct lt_sha256 *h;
	uint64_t written;
	uint64_t limit;
	bool sealed;
	char digest[OCI_DIGEST_MAX]; /* once sealed */
};

int oci_store_open(const char *root, struct oci_store **out)
{
	struct oci_store *s = lt_calloc(1, sizeof(*s));
	if (!s)
		return -1;
	s->lock_fd = -1;
	s->root = lt_strdup(root);
	s->blobs = lt_path_join(root, "blobs/sha256");
	s->refs = lt_path_join(root, "refs");
	s->tmp = lt_path_join(root, "tmp");
	char *lock = lt_path_join(root, "lock");
	if (!s->root || !s->blobs || !s->refs || !s->tmp || !lock || lt_mkdir_p(s->blobs, 0755) < 0 ||
	    lt_mkdir_p(s->refs, 0755) < 0 || lt_mkdir_p(s->tmp, 0755) < 0)
		goto fail;
	s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lock_fd < 0) {
		lt_fail_errno("cannot open %s", lock);
		goto fail;
	}
	free(lock);
	*out = s;
	return 0;
fail:
	free(lock);
	lt_fail_ctx("cannot open the image store at %s", root);
	oci_store_close(s);
	return -1;
}

void oci_store_close(struct oci_store *s)
{
	if (!s)
		return;
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->root);
	free(s->blobs);
	free(s->refs);
	free(s->tmp);
	free(s);
}

const char *oci_store_root(const struct oci_store *s)
{
	return s->root;
}

int oci_store_lock(struct oci_store *s, bool exclusive)
{
	if (s->lock_depth > 0 && (s->lock_excl || !exclusive)) {
		s->lock_depth++;
		return 0;
	}
	int r;
	do
		r = flock(s->lock_fd, exclusive ? LOCK_EX : LOCK_SH);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return lt_fail_errno("cannot lock the image store %s", s->root);
	s->lock_excl = exclusive;
	s->lock_depth++;
	return 0;
}

void oci_store_unlock(struct oci_store *s)
{
	if (s->lock_depth <= 0)
		return;
	if (--s->lock_depth == 0) {
		flock(s->lock_fd, LOCK_UN);
		s->lock_excl = false;
	}
}

char *oci_store_blob_path(const struct oci_store *s, const char *digest)
{
	if (!oci_digest_valid(digest)) {
		lt_fail("invalid digest '%.80s'", digest ? digest : "");
		return NULL;
	}
	return lt_path_join(s->blobs, digest + 7);
}

bool oci_store_has_blob_sized(const struct oci_store *s, const char *digest, int64_t size)
{
	char *p = oci_store_blob_path(s, digest);
	if (!p)
		return false;
	struct stat st;
	bool ok = lstat(p, &st) == 0 && S_ISREG(st.st_mode) && (size < 0 || st.st_size == size);
	free(p);
	return ok;
}

bool oci_store_has_blob(const struct oci_store *s, const char *digest)
{
	return oci_store_has_blob_sized(s, digest, -1);
}

/* ---- blob writer ------------------------------------------------------ */

int oci_blob_begin(struct oci_store *s, uint64_t limit, struct oci_blob_writer **out)
{
	struct oci_blob_writer *w = lt_calloc(1, sizeof(*w));
	if (!w)
		return -1;
	w->s = s;
	w->limit = limit ? limit : OCI_BLOB_MAX;
	w->fd = -1;
	w->tmp_path = lt_path_join(s->tmp, "blob-XXXXXX");
	w->h = lt_sha256_new();
	if (!w->tmp_path || !w->h)
		goto fail;
	w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
	if (w->fd < 0) {
		lt_fail_errno("cannot create a temporary file in %s", s->tmp);
		goto fail;
	}
	*out = w;
	return 0;
fail:
	lt_sha256_free(w->h);
	free(w->tmp_path);
	free(w);
	return -1;
}

int oci_blob_write(struct oci_blob_writer *w, const void *data, size_t n)
{
	if (w->sealed)
		return lt_fail("internal error: write to a sealed blob");
	if (n > w->limit - w->written)
		return lt_fail("blob is larger than expected (more than %llu bytes)",
			       (unsigned long long)w->limit);
	if (lt_sha256_update(w->h, data, n) < 0 || lt_write_all(w->fd, data, n) < 0)
		return lt_fail_ctx("writing %s", w->tmp_path);
	w->written += n;
	return 0;
}

uint64_t oci_blob_written(const struct oci_blob_writer *w)
{
	return w->written;
}

int oci_blob_reset(struct oci_blob_writer *w)
{
	if (w->sealed)
		return lt_fail("internal error: reset of a sealed blob");
	if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
		return lt_fail_errno("cannot truncate %s", w->tmp_path);
	lt_sha256_free(w->h);
	w->h = lt_sha256_new();
	w->written = 0;
	return w->h ? 0 : -1;
}

void oci_blob_abort(struct oci_blob_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp_path)
		unlink(w->tmp_path);
	lt_sha256_free(w->h);
	free(w->tmp_path);
	free(w);
}

const char *oci_blob_tmp_path(const struct oci_blob_writer *w)
{
	return w->tmp_path;
}

int oci_blob_seal(struct oci_blob_writer *w, char digest[OCI_DIGEST_MAX])
{
	if (!w->sealed) {
		uint8_t raw[LT_SHA256_LEN];
		if (lt_sha256_final(w->h, raw) < 0)
			return -1;
		strcpy(w->digest, "sha256:");
		lt_hex(raw, sizeof(raw), w->digest + 7);
		if (fchmod(w->fd, 0644) < 0 || fsync(w->fd) < 0)
			return lt_fail_errno("cannot sync %s", w->tmp_path);
		if (close(w->fd) < 0) {
			w->fd = -1;
			return lt_fail_errno("cannot close %s", w->tmp_path);
		}
		w->fd = -1;
		w->sealed = true;
	}
	if (digest)
		strcpy(digest, w->digest);
	return 0;
}

int oci_blob_commit(struct oci_blob_writer *w, const char *want_digest, int64_t want_size,
		    char out[OCI_DIGEST_MAX])
{
	char *final = NULL;
	int rc = oci_blob_seal(w, NULL);
	if (rc < 0)
		goto done;
	if (want_size >= 0 && w->written != (uint64_t)want_size) {
		rc = lt_fail("size mismatch: expected %lld bytes, got %llu", (long long)want_size,
			     (unsigned long long)w->written);
		goto done;
	}
	if (want_digest && strcmp(want_digest, w->digest)) {
		rc = lt_fail("digest mismatch: expected %s, got %s", want_digest, w->digest);
		goto done;
	}
	final = lt_path_join(w->s->blobs, w->digest + 7);
	if (!final) {
		rc = -1;
		goto done;
	}
	if (rename(w->tmp_path, final) < 0) {
		rc = lt_fail_errno("cannot rename %s to %s", w->tmp_path, final);
		goto done;
	}
	rc = lt_fsync_dir(w->s->blobs);
	if (rc == 0 && out)
		strcpy(out, w->digest);
done:
	free(final);
	oci_blob_abort(w); /* the temp file is gone after a rename */
	return rc;
}

int oci_store_put(struct oci_store *s, const void *data, size_t n, const char *want_digest,
		  char out[OCI_DIGEST_MAX])
{
	struct oci_blob_writer *w;
	if (want_digest && oci_store_has_blob_sized(s, want_digest, (int64_t)n)) {
		char hex[LT_SHA256_HEX];
		if (lt_sha256_hex(data, n, hex) < 0)
			return -1;
		if (strcmp(hex, want_digest + 7))
			return lt_fail("digest mismatch: expected %s, got sha256:%s", want_digest,
				       hex);
		if (out)
			strcpy(out, want_digest);
		return 0;
	}
	if (oci_blob_begin(s, n ? n : 1, &w) < 0)
		return -1;
	if (oci_blob_write(w, data, n) < 0) {
		oci_blob_abort(w);
		return -1;
	}
	return oci_blob_commit(w, want_digest, (int64_t)n, out);
}

int oci_store_read_blob(const struct oci_store *s, const char *digest, size_t max, char **out,
			size_t *len)
{
	char *p = oci_store_blob_path(s, digest);
	if (!p)
		return -1;
	char *data;
	size_t n;
	int rc = lt_read_file(p, max, &data, &n);
	free(p);
	if (rc < 0)
		return lt_fail_ctx("blob %s", digest);
	char hex[LT_SHA256_HEX];
	if (lt_sha256_hex(data, n, hex) < 0 || strcmp(hex, digest + 7)) {
		free(data);
		return lt_fail("blob %s in the store is corrupt (digest mismatch)", digest);
	}
	*out = data;
	if (len)
		*len = n;
	return 0;
}

int oci_store_read_manifest(const struct oci_store *s, const char *digest,
			    struct oci_manifest *out)
{
	char *data;
	size_t n;
	if (oci_store_read_blob(s, digest, OCI_MANIFEST_MAX, &data, &n) < 0)
		return -1;
	int rc = oci_manifest_parse(data, n, NULL, out);
	free(data);
	return rc < 0 ? lt_fail_ctx("manifest %s", digest) : 0;
}

/* ---- refs ------------------------------------------------------------ */

/* refs/<registry>/<repository>/_tags/<tag> or .../_digests/<digest>.
 * Repository components start with [a-z0-9], so "_tags" and "_digests"
 * never collide with them, and every component stays a short name. */
char *oci_store_ref_path(const struct oci_store *s, const struct oci_ref *r)
{
	if (r->digest)
		return lt_sprintf("%s/%s/%s/_digests/%s", s->refs, r->registry, r->repository,
				  r->digest);
	return lt_sprintf("%s/%s/%s/_tags/%s", s->refs, r->registry, r->repository, r->tag);
}

static char *ref_path_of(const struct oci_store *s, const char *canonical)
{
	struct oci_ref r;
	if (oci_ref_parse(canonical, &r) < 0)
		return NULL;
	char *p = oci_store_ref_path(s, &r);
	oci_ref_free(&r);
	return p;
}

static int read_ref_file(const char *path, char digest[OCI_DIGEST_MAX])
{
	char *text;
	size_t n;
	if (lt_read_file(path, 4096, &text, &n) < 0)
		return -1;
	text[strcspn(text, "\r\n")] = '\0';
	int rc = 0;
	if (!oci_digest_valid(text))
		rc = lt_fail("ref file %s is corrupt", path);
	else
		strcpy(digest, text);
	free(text);
	return rc;
}

int oci_store_set_ref(struct oci_store *s, const char *canonical, const char *digest)
{
	if (!oci_digest_valid(digest))
		return lt_fail("invalid digest '%.80s'", digest);
	char *path = ref_path_of(s, canonical);
	if (!path)
		return -1;
	char *dir = lt_strdup(path);
	char *line = lt_sprintf("%s\n", digest);
	int rc = -1;
	if (dir && line && lt_mkdir_p(dirname(dir), 0755) == 0)
		rc = lt_write_file_atomic(path, line, strlen(line), 0644);
	free(dir);
	free(line);
	free(path);
	return rc < 0 ? lt_fail_ctx("cannot record ref %s", canonical) : 0;
}

int oci_store_get_ref(const struct oci_store *s, const char *canonical,
		      char digest[OCI_DIGEST_MAX])
{
	char *path = ref_path_of(s, canonical);
	if (!path)
		return -1;
	struct stat st;
	int rc;
	if (lstat(path, &st) < 0)
		rc = errno == ENOENT || errno == ENOTDIR ? 1 : lt_fail_errno("cannot stat %s", path);
	else if (!S_ISREG(st.st_mode))
		rc = lt_fail("ref file %s is not a regular file", path);
	else
		rc = read_ref_file(path, digest);
	free(path);
	return rc;
}

int oci_store_unset_ref(struct oci_store *s, const char *canonical)
{
	char *path = ref_path_of(s, canonical);
	if (!path)
		return -1;
	if (unlink(path) < 0) {
		int rc = errno == ENOENT ? 1 : lt_fail_errno("cannot remove %s", path);
		free(path);
		return rc;
	}
	/* Prune the now-empty directories up to refs/. */
	char *dir = path;
	size_t root_len = strlen(s->refs);
	for (;;) {
		char *slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) <= root_len)
			break;
		*slash = '\0';
		if (rmdir(dir) < 0)
			break;
	}
	free(path);
	return lt_fsync_dir(s->refs) < 0 ? -1 : 0;
}

struct ref_walk {
	struct oci_ref_entry *v;
	size_t n, cap;
};

static int walk_add(struct ref_walk *w, const char *name_rel, const char *kind,
		    const char *leaf, const char *path)
{
	if (leaf[0] == '.')
		return 0; /* an atomic write's temp file */
	if (w->n >= REFS_MAX)
		return lt_fail("too many refs in the store");
	char digest[OCI_DIGEST_MAX];
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || read_ref_file(path, digest) < 0) {
		lt_warn("ignoring unreadable ref file %s", path);
		return 0;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct oci_ref_entry *v = lt_realloc(w->v, cap * sizeof(*v));
		if (!v)
			return -1;
		w->v = v;
		w->cap = cap;
	}
	struct oci_ref_entry *e = &w->v[w->n];
	e->ref = lt_sprintf("%s%s%s", name_rel, !strcmp(kind, "_tags") ? ":" : "@", leaf);
	if (!e->ref)
		return -1;
	strcpy(e->digest, digest);
	e->mtime = st.st_mtime;
	w->n++;
	return 0;
}

static int walk_dir(struct ref_walk *w, const char *path, const char *rel, int depth)
{
	if (depth > REFS_DEPTH_MAX)
		return lt_fail("refs directory is nested too deeply at %s", path);
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : lt_fail_errno("cannot open %s", path);
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	bool leaf_dir = depth > 1 && (!strcmp(base, "_tags") || !strcmp(base, "_digests"));
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *child = lt_path_join(path, de->d_name);
		if (!child) {
			rc = -1;
			break;
		}
		if (leaf_dir) {
			/* rel ends with "/_tags": the name is what precedes it. */
			char *name = lt_strndup(rel, strlen(rel) - strlen(base) - 1);
			rc = name ? walk_add(w, name, base, de->d_name, child) : -1;
			free(name);
		} else if (de->d_name[0] != '.') {
			struct stat st;
			if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) {
				char *crel = rel[0] ? lt_sprintf("%s/%s", rel, de->d_name)
						    : lt_strdup(de->d_name);
				rc = crel ? walk_dir(w, child, crel, depth + 1) : -1;
				free(crel);
			}
		}
		free(child);
	}
	closedir(d);
	return rc;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct oci_ref_entry *)a)->ref,
		      ((const struct oci_ref_entry *)b)->ref);
}

int oci_store_refs(const struct oci_store *s, struct oci_ref_entry **out, size_t *n)
{
	struct ref_walk w = {0};
	if (walk_dir(&w, s->refs, "", 0) < 0) {
		oci_ref_entries_free(w.v, w.n);
		return -1;
	}
	if (w.n)
		qsort(w.v, w.n, sizeof(*w.v), entry_cmp);
	*out = w.v;
	*n = w.n;
	return 0;
}

void oci_ref_entries_free(struct oci_ref_entry *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].ref);
	free(v);
}

int oci_store_tag(struct oci_store *s, const char *canonical, const char *manifest_digest)
{
	struct oci_manifest m;
	if (oci_store_read_manifest(s, manifest_digest, &m) < 0)
		return -1;
	int rc = oci_manifest_check_image(&m);
	if (rc == 0 && !oci_store_has_blob_sized(s, m.config.digest, (int64_t)m.config.size))
		rc = lt_fail("config %s is missing from the store", m.config.digest);
	for (size_t i = 0; rc == 0 && i < m.n_layers; i++)
		if (!oci_store_has_blob_sized(s, m.layers[i].digest, (int64_t)m.layers[i].size))
			rc = lt_fail("layer %s is missing from the store", m.layers[i].digest);
	oci_manifest_free(&m);
	if (rc == 0)
		rc = oci_store_set_ref(s, canonical, manifest_digest);
	return rc;
}

/* ---- resolve --------------------------------------------------------- */

static int resolve_prefix(struct oci_store *s, const char *input, char digest[OCI_DIGEST_MAX])
{
	const char *hex = strncmp(input, "sha256:", 7) ? input : input + 7;
	size_t n = strlen(hex);
	struct oci_ref_entry *refs;
	size_t nrefs;
	if (oci_store_refs(s, &refs, &nrefs) < 0)
		return -1;
	const char *found = NULL;
	int rc = 1;
	for (size_t i = 0; i < nrefs; i++) {
		if (strncmp(refs[i].digest + 7, hex, n))
			continue;
		if (found && strcmp(found, refs[i].digest)) {
			rc = lt_fail("digest prefix '%s' is ambiguous", input);
			break;
		}
		found = refs[i].digest;
	}
	if (found && rc == 1) {
		strcpy(digest, found);
		rc = 0;
	}
	oci_ref_entries_free(refs, nrefs);
	if (rc == 1 && n == 64) {
		/* A manifest present without any ref still resolves by full digest. */
		char full[OCI_DIGEST_MAX];
		snprintf(full, sizeof(full), "sha256:%s", hex);
		struct oci_manifest m;
		if (oci_store_has_blob(s, full) && oci_store_read_manifest(s, full, &m) == 0) {
			bool image = m.kind == OCI_KIND_MANIFEST;
			oci_manifest_free(&m);
			if (image) {
				strcpy(digest, full);
				rc = 0;
			}
		}
	}
	return rc;
}

int oci_store_resolve(struct oci_store *s, const char *input, char digest[OCI_DIGEST_MAX])
{
	struct oci_ref r;
	int plen = oci_digest_prefix_len(input);
	bool digestish = plen >= 12 || (plen > 0 && !strncmp(input, "sha256:", 7));
	if (plen > 0 && plen < 12 && !strncmp(input, "sha256:", 7))
		return lt_fail("digest prefix '%s' is too short (at least 12 hex digits)", input);
	if (!(plen == 64 || !strncmp(input, "sha256:", 7)) && oci_ref_parse(input, &r) == 0) {
		char *canon = oci_ref_string(&r);
		oci_ref_free(&r);
		if (!canon)
			return -1;
		int rc = oci_store_get_ref(s, canon, digest);
		free(canon);
		if (rc <= 0)
			return rc;
	}
	if (digestish) {
		int rc = resolve_prefix(s, input, digest);
		if (rc <= 0)
			return rc;
	}
	return lt_fail("no image '%s' in the store (see 'lttle images')", input);
}

/* ---- list, remove, gc ------------------------------------------------ */

int oci_store_list(struct oci_store *s, struct oci_image_info **out, size_t *n)
{
	struct oci_ref_entry *refs;
	size_t nrefs;
	if (oci_store_refs(s, &refs, &nrefs) < 0)
		return -1;
	struct oci_image_info *v = lt_calloc(nrefs ? nrefs : 1, sizeof(*v));
	if (!v) {
		oci_ref_entries_free(refs, nrefs);
		return -1;
	}
	for (size_t i = 0; i < nrefs; i++) {
		v[i].ref = refs[i].ref;
		refs[i].ref = NULL;
		strcpy(v[i].digest, refs[i].digest);
		v[i].created = refs[i].mtime;
		struct oci_manifest m;
		if (oci_store_read_manifest(s, refs[i].digest, &m) == 0) {
			v[i].size = m.config.size;
			for (size_t j = 0; j < m.n_layers; j++)
				v[i].size += m.layers[j].size;
			oci_manifest_free(&m);
		}
	}
	oci_ref_entries_free(refs, nrefs);
	*out = v;
	*n = nrefs;
	return 0;
}

void oci_image_info_free(struct oci_image_info *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].ref);
	free(v);
}

struct mark_set {
	char (*hex)[LT_SHA256_HEX];
	size_t n, cap;
};

static int mark_add(struct mark_set *m, const char *digest)
{
	if (!oci_digest_valid(digest))
		return 0;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		void *v = lt_realloc(m->hex, cap * sizeof(*m->hex));
		if (!v)
			return -1;
		m->hex = v;
		m->cap = cap;
	}
	memcpy(m->hex[m->n++], digest + 7, LT_SHA256_HEX);
	return 0;
}

static int hex_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int mark_manifest(struct oci_store *s, struct mark_set *m, const char *digest, int depth)
{
	if (mark_add(m, digest) < 0)
		return -1;
	struct oci_manifest man;
	if (depth > OCI_INDEX_DEPTH || !oci_store_has_blob(s, digest) ||
	    oci_store_read_manifest(s, digest, &man) < 0)
		return 0; /* nothing more reachable through it */
	int rc = 0;
	if (man.kind == OCI_KIND_INDEX) {
		for (size_t i = 0; rc == 0 && i < man.n_manifests; i++)
			rc = mark_manifest(s, m, man.manifests[i].digest, depth + 1);
	} else {
		rc = mark_add(m, man.config.digest);
		for (size_t i = 0; rc == 0 && i < man.n_layers; i++)
			rc = mark_add(m, man.layers[i].digest);
	}
	oci_manifest_free(&man);
	return rc;
}

static int sweep_blobs(struct oci_store *s, struct mark_set *m, uint64_t *freed)
{
	DIR *d = opendir(s->blobs);
	if (!d)
		return lt_fail_errno("cannot open %s", s->blobs);
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (m->n && bsearch(de->d_name, m->hex, m->n, sizeof(*m->hex), hex_cmp))
			continue;
		char *p = lt_path_join(s->blobs, de->d_name);
		struct stat st;
		if (!p) {
			rc = -1;
			break;
		}
		if (lstat(p, &st) == 0 && unlink(p) == 0)
			*freed += (uint64_t)st.st_size;
		else if (errno != ENOENT)
			rc = lt_fail_errno("cannot remove %s", p);
		free(p);
	}
	closedir(d);
	return rc;
}

/* With the exclusive lock held nobody is writing: tmp/ holds only leftovers
 * of interrupted pulls. */
static void clear_tmp(struct oci_store *s, uint64_t *freed)
{
	DIR *d = opendir(s->tmp);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *p = lt_path_join(s->tmp, de->d_name);
		struct stat st;
		if (p && lstat(p, &st) == 0) {
			if (lt_rm_rf(p) == 0 && S_ISREG(st.st_mode))
				*freed += (uint64_t)st.st_size;
		}
		free(p);
	}
	closedir(d);
}

int oci_store_gc(struct oci_store *s, uint64_t *freed)
{
	uint64_t total = 0;
	if (oci_store_lock(s, true) < 0)
		return -1;
	struct oci_ref_entry *refs = NULL;
	size_t nrefs = 0;
	struct mark_set m = {0};
	int rc = oci_store_refs(s, &refs, &nrefs);
	for (size_t i = 0; rc == 0 && i < nrefs; i++)
		rc = mark_manifest(s, &m, refs[i].digest, 0);
	if (rc == 0) {
		if (m.n)
			qsort(m.hex, m.n, sizeof(*m.hex), hex_cmp);
		rc = sweep_blobs(s, &m, &total);
	}
	if (rc == 0)
		clear_tmp(s, &total);
	oci_ref_entries_free(refs, nrefs);
	free(m.hex);
	oci_store_unlock(s);
	if (freed)
		*freed = total;
	return rc < 0 ? lt_fail_ctx("garbage collection") : 0;
}

/* The refs that input names: the ref itself, or every ref of a digest. */
static int refs_to_remove(struct oci_store *s, const char *input, char ***out, size_t *n)
{
	char digest[OCI_DIGEST_MAX];
	struct oci_ref r;
	*out = NULL;
	*n = 0;
	if (strncmp(input, "sha256:", 7) && oci_digest_prefix_len(input) != 64 &&
	    oci_ref_parse(input, &r) == 0) {
		char *canon = oci_ref_string(&r);
		oci_ref_free(&r);
		if (!canon)
			return -1;
		int rc = oci_store_get_ref(s, canon, digest);
		if (rc == 0) {
			*out = lt_calloc(1, sizeof(char *));
			if (!*out) {
				free(canon);
				return -1;
			}
			(*out)[0] = canon;
			*n = 1;
			return 0;
		}
		free(canon);
		if (rc < 0)
			return -1;
	}
	if (oci_store_resolve(s, input, digest) < 0)
		return -1;
	struct oci_ref_entry *refs;
	size_t nrefs;
	if (oci_store_refs(s, &refs, &nrefs) < 0)
		return -1;
	char **v = lt_calloc(nrefs ? nrefs : 1, sizeof(char *));
	if (!v) {
		oci_ref_entries_free(refs, nrefs);
		return -1;
	}
	for (size_t i = 0; i < nrefs; i++) {
		if (!strcmp(refs[i].digest, digest)) {
			v[(*n)++] = refs[i].ref;
			refs[i].ref = NULL;
		}
	}
	oci_ref_entries_free(refs, nrefs);
	*out = v;
	if (*n > 1) {
		char names[512] = "";
		size_t used = 0;
		for (size_t i = 0; i < *n && used < sizeof(names) - 1; i++)
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
						 i ? ", " : "", v[i]);
		return lt_fail("%s is referenced by several refs (%s); remove them by name",
			       input, names);
	}
	return 0;
}

int oci_store_remove(struct oci_store *s, const char *input, uint64_t *freed)
{
	if (oci_store_lock(s, true) < 0)
		return -1;
	char **names;
	size_t n;
	int rc = refs_to_remove(s, input, &names, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = oci_store_unset_ref(s, names[i]) < 0 ? -1 : 0;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc == 0)
		rc = oci_store_gc(s, freed);
	oci_store_unlock(s);
	return rc;
}
