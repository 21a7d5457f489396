/* Layer blobs through libarchive: tar, plain or compressed (gzip, zstd,
 * and whatever else libarchive detects from the content).
 *
 * gzip, by far the most common layer compression, is inflated here with
 * ISA-L (2-3x faster than zlib) and handed to libarchive as a plain tar
 * stream; every layer is read twice, so this is most of the CPU time of
 * an ext4 build. Everything else goes through libarchive's own filters.
 */
#include "rootfs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <isa-l/igzip_lib.h>

#define RF_READ_BLOCK (1u << 20)

struct gz {
	int fd;
	struct inflate_state st;
	uint8_t *in, *out;
	size_t in_len;     /* bytes in `in` from next_in on */
	bool eof;          /* no more file data */
	bool done;         /* last member finished */
	uint64_t raw;      /* compressed bytes read */
};

static int gz_fill(struct archive *a, struct gz *g)
{
	if (g->st.avail_in || g->eof)
		return 0;
	ssize_t n;
	do
		n = read(g->fd, g->in, RF_READ_BLOCK);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		archive_set_error(a, errno, "read error");
		return -1;
	}
	if (n == 0)
		g->eof = true;
	g->raw += (uint64_t)n;
	g->st.next_in = g->in;
	g->st.avail_in = (uint32_t)n;
	return 0;
}

/* Starts the next gzip member, if the input holds one (trailing bytes
 * that are not a gzip header are ignored, as gzip -d does). */
static int gz_next_member(struct archive *a, struct gz *g)
{
	if (gz_fill(a, g) < 0)
		return -1;
	if (g->st.avail_in == 0) {
		g->done = true;
		return 0;
	}
	if (g->st.avail_in >= 2 && (g->st.next_in[0] != 0x1f || g->st.next_in[1] != 0x8b)) {
		g->done = true;
		return 0;
	}
	uint8_t *next = g->st.next_in;
	uint32_t avail = g->st.avail_in;
	isal_inflate_reset(&g->st);
	g->st.crc_flag = ISAL_GZIP;
	g->st.next_in = next;
	g->st.avail_in = avail;
	return 0;
}

static la_ssize_t gz_read(struct archive *a, void *ctx, const void **buf)
{
	struct gz *g = ctx;
	g->st.next_out = g->out;
	g->st.avail_out = RF_READ_BLOCK;
	while (g->st.avail_out == RF_READ_BLOCK && !g->done) {
		if (gz_fill(a, g) < 0)
			return -1;
		if (g->eof && g->st.avail_in == 0) {
			if (g->st.block_state != ISAL_BLOCK_FINISH) {
				archive_set_error(a, EILSEQ, "truncated gzip data");
				return -1;
			}
			g->done = true;
			break;
		}
		int r = isal_inflate(&g->st);
		if (r < 0) {
			archive_set_error(a, EILSEQ, "corrupt gzip data (%s)",
					  r == ISAL_INCORRECT_CHECKSUM ? "checksum mismatch"
					  : r == ISAL_INVALID_WRAPPER ? "bad header" : "bad deflate stream");
			return -1;
		}
		if (g->st.block_state == ISAL_BLOCK_FINISH && gz_next_member(a, g) < 0)
			return -1;
	}
	*buf = g->out;
	return (la_ssize_t)(RF_READ_BLOCK - g->st.avail_out);
}

static int gz_close(struct archive *a, void *ctx)
{
	(void)a;
	struct gz *g = ctx;
	close(g->fd);
	free(g->in);
	free(g->out);
	free(g);
	return ARCHIVE_OK;
}

/* A gzip reader for path when it starts with the gzip magic; NULL (no
 * error) when it does not, or on error (recorded, *failed set). */
static struct gz *gz_open(const char *path, bool *failed)
{
	*failed = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL; /* libarchive reports it */
	uint8_t magic[2];
	ssize_t n = pread(fd, magic, 2, 0);
	if (n != 2 || magic[0] != 0x1f || magic[1] != 0x8b) {
		close(fd);
		return NULL;
	}
	struct gz *g = lt_calloc(1, sizeof(*g));
	if (g) {
		g->in = lt_malloc(RF_READ_BLOCK);
		g->out = lt_malloc(RF_READ_BLOCK);
	}
	if (!g || !g->in || !g->out) {
		if (g) {
			free(g->in);
			free(g->out);
			free(g);
		}
		close(fd);
		*failed = true;
		return NULL;
	}
	g->fd = fd;
	isal_inflate_init(&g->st);
	g->st.crc_flag = ISAL_GZIP;
	return g;
}

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
	bool failed;
	struct gz *g = gz_open(path, &failed);
	if (failed) {
		layer_fail(l, "cannot open");
		rf_layer_close(l);
		return -1;
	}
	/* libarchive owns g from here on: gz_close runs even if open fails. */
	int r = g ? archive_read_open(l->a, g, NULL, gz_read, gz_close)
		  : archive_read_open_filename(l->a, path, RF_READ_BLOCK);
	l->gz = g;
	if (r != ARCHIVE_OK) {
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
	if (l->gz)
		return ((struct gz *)l->gz)->raw;
	la_int64_t n = l->a ? archive_filter_bytes(l->a, -1) : 0;
	return n > 0 ? (uint64_t)n : 0;
}

void rf_layer_close(struct rf_layer *l)
{
	if (l->a)
		archive_read_free(l->a);
	l->a = NULL;
	l->gz = NULL;
}
