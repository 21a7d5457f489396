#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int lt_mkdir_p(const char *path, mode_t mode)
{
	char *p = lt_strdup(path);
	if (!p)
		return -1;
	size_t len = strlen(p);
	for (size_t i = 1; i <= len; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		char saved = p[i];
		p[i] = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			int rc = lt_fail_errno("cannot create directory %s", p);
			free(p);
			return rc;
		}
		p[i] = saved;
	}
	free(p);
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return lt_fail("%s exists and is not a directory", path);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
	if (r < 0 && errno != ENOENT) {
		lt_fail_errno("cannot remove %s", path);
		return -1;
	}
	return 0;
}

int lt_rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : lt_fail_errno("cannot stat %s", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return lt_fail_errno("cannot remove %s", path);
		return 0;
	}
	return nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == 0 ? 0 : -1;
}

bool lt_path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int lt_write_all(int fd, const void *data, size_t n)
{
	const uint8_t *p = data;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return lt_fail_errno("write failed");
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int lt_read_full(int fd, void *data, size_t n)
{
	uint8_t *p = data;
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return lt_fail_errno("read failed");
		if (r == 0)
			return lt_fail("unexpected end of file");
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int lt_read_file(const char *path, size_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("cannot open %s", path);
	struct lt_buf b = {.limit = max};
	uint8_t tmp[1 << 15];
	int rc = 0;
	for (;;) {
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = lt_fail_errno("cannot read %s", path);
			break;
		}
		if (r == 0)
			break;
		if (lt_buf_append(&b, tmp, (size_t)r) < 0) {
			rc = lt_fail_ctx("%s", path);
			break;
		}
	}
	close(fd);
	if (rc == 0)
		rc = lt_buf_cstr(&b);
	if (rc < 0) {
		lt_buf_free(&b);
		return rc;
	}
	*out = (char *)b.data;
	if (len)
		*len = b.len;
	return 0;
}

int lt_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("cannot open directory %s", dir);
	int r = fsync(fd);
	close(fd);
	if (r < 0 && errno != EINVAL)
		return lt_fail_errno("cannot fsync %s", dir);
	return 0;
}

static char *dir_of(const char *path)
{
	char *copy = lt_strdup(path);
	if (!copy)
		return NULL;
	char *d = lt_strdup(dirname(copy));
	free(copy);
	return d;
}

int lt_atomic_open(struct lt_atomic *a, const char *final_path, mode_t mode)
{
	a->fd = -1;
	a->tmp_path = NULL;
	a->final_path = lt_strdup(final_path);
	char *dir = dir_of(final_path);
	char *copy = lt_strdup(final_path);
	if (!a->final_path || !dir || !copy)
		goto fail;
	a->tmp_path = lt_sprintf("%s/.%s.tmp.XXXXXX", dir, basename(copy));
	if (!a->tmp_path)
		goto fail;
	a->fd = mkostemp(a->tmp_path, O_CLOEXEC);
	if (a->fd < 0) {
		lt_fail_errno("cannot create a temporary file in %s", dir);
		goto fail;
	}
	if (fchmod(a->fd, mode) < 0) {
		lt_fail_errno("cannot chmod %s", a->tmp_path);
		unlink(a->tmp_path);
		close(a->fd);
		a->fd = -1;
		goto fail;
	}
	free(dir);
	free(copy);
	return 0;
fail:
	free(dir);
	free(copy);
	free(a->tmp_path);
	free(a->final_path);
	a->tmp_path = a->final_path = NULL;
	return -1;
}

int lt_atomic_commit(struct lt_atomic *a)
{
	int rc = 0;
	if (fsync(a->fd) < 0)
		rc = lt_fail_errno("cannot fsync %s", a->tmp_path);
	if (close(a->fd) < 0 && rc == 0)
		rc = lt_fail_errno("cannot close %s", a->tmp_path);
	a->fd = -1;
	if (rc == 0 && rename(a->tmp_path, a->final_path) < 0)
		rc = lt_fail_errno("cannot rename %s to %s", a->tmp_path, a->final_path);
	if (rc < 0) {
		unlink(a->tmp_path);
	} else {
		char *dir = dir_of(a->final_path);
		if (dir)
			rc = lt_fsync_dir(dir);
		free(dir);
	}
	free(a->tmp_path);
	free(a->final_path);
	a->tmp_path = a->final_path = NULL;
	return rc;
}

void lt_atomic_abort(struct lt_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd);
	if (a->tmp_path)
		unlink(a->tmp_path);
	free(a->tmp_path);
	free(a->final_path);
	a->fd = -1;
	a->tmp_path = a->final_path = NULL;
}

int lt_write_file_atomic(const char *path, const void *data, size_t n, mode_t mode)
{
	struct lt_atomic a;
	if (lt_atomic_open(&a, path, mode) < 0)
		return -1;
	if (lt_write_all(a.fd, data, n) < 0) {
		lt_fail_ctx("writing %s", path);
		lt_atomic_abort(&a);
		return -1;
	}
	return lt_atomic_commit(&a);
}
