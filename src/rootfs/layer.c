/* Layer blobs through libarchive: tar, plain or compressed (gzip, zstd,
 * and whatever else libarchive detects from the content). */
#include "rootfs_int.h"

#include <string.h>

#define RF_READ_BLOCK (1u << 20)

const char *rf_layer_label(const char *path, char *buf, size_t len)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	snprintf(buf, len, "%.12s", base);
	return buf;
}

static int layer_fail(struct rf_layer *l, const char *what)
{
	char label[16];
	const char *msg = l->a ? archive_error_string(l->a) : NULL;
	return lt_fail("layer %u (%s): %s%s%s", l->idx + 1, rf_layer_label(l->path, label, sizeof(label)),
		       what, msg ? ": " : "", msg ? msg : "");
}

int rf_layer_open(struct rf_layer *l, const char *path, unsigned idx)
{
	memset(l, 0, sizeof(*l));
	l->path = path;
	l->idx = idx;
	l->a = archive_read_new();
	if (!l->a)
		return lt_fail("out of memory creating an archive reader");
	if (archive_read_support_filter_all(l->a) != ARCHIVE_OK ||
	    archive_read_support_format_tar(l->a) != ARCHIVE_OK) {
		layer_fail(l, "cannot set up the archive reader");
		rf_layer_close(l);
		return -1;
	}
	if (archive_read_open_filename(l->a, path, RF_READ_BLOCK) != ARCHIVE_OK) {
		layer_fail(l, "cannot open");
		rf_layer_close(l);
		return -1;
	}
	return 0;
}

int rf_layer_next(struct rf_layer *l, struct archive_entry **e)
{
	int r = archive_read_next_header(l->a, e);
	if (r == ARCHIVE_EOF)
		return 0;
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
		char what[64];
		snprintf(what, sizeof(what), "bad tar entry #%u", l->entry + 1);
		return layer_fail(l, what);
	}
	l->entry++;
	return 1;
}

static int layer_next_run(struct rf_data *d, const void **buf, size_t *len, uint64_t *off)
{
	struct rf_layer *l = d->ctx;
	la_int64_t o;
	int r = archive_read_data_block(l->a, buf, len, &o);
	if (r == ARCHIVE_EOF)
		return 0;
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
		char what[320];
		snprintf(what, sizeof(what), "reading '%.256s'", d->what);
		return layer_fail(l, what);
	}
	/* Runs must move forward and stay inside the declared size. */
	if (o < 0 || (uint64_t)o < d->pos || (uint64_t)o > d->size || *len > d->size - (uint64_t)o) {
		char what[320];
		snprintf(what, sizeof(what), "'%.256s': data outside the declared size", d->what);
		return layer_fail(l, what);
	}
	d->pos = (uint64_t)o + *len;
	*off = (uint64_t)o;
	return 1;
}

void rf_layer_data(struct rf_layer *l, struct rf_data *d, uint64_t size, const char *what)
{
	memset(d, 0, sizeof(*d));
	d->next = layer_next_run;
	d->size = size;
	d->ctx = l;
	d->what = what;
}

uint64_t rf_layer_bytes_read(struct rf_layer *l)
{
	la_int64_t n = l->a ? archive_filter_bytes(l->a, -1) : 0;
	return n > 0 ? (uint64_t)n : 0;
}

void rf_layer_close(struct rf_layer *l)
{
	if (l->a)
		archive_read_free(l->a);
	l->a = NULL;
}
