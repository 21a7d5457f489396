/* Versioned, tagged state blobs (see blob.h). */
#include <string.h>

#include "vmm/blob.h"

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

int lt_blob_begin(struct lt_buf *b, uint16_t kind, uint16_t version, size_t *start)
{
	uint8_t h[LT_BLOB_HDR];
	put32(h, LT_BLOB_MAGIC);
	memcpy(h + 4, &version, 2);
	memcpy(h + 6, &kind, 2);
	put32(h + 8, 0);
	*start = b->len;
	return lt_buf_append(b, h, sizeof(h));
}

int lt_blob_end(struct lt_buf *b, size_t start)
{
	size_t n = b->len - start - LT_BLOB_HDR;
	if (n > UINT32_MAX)
		return lt_fail("state blob too large");
	put32(b->data + start + 8, (uint32_t)n);
	return 0;
}

int lt_blob_put(struct lt_buf *b, uint32_t tag, const void *data, uint32_t len)
{
	uint8_t h[8];
	put32(h, tag);
	put32(h + 4, len);
	if (lt_buf_append(b, h, 8) < 0)
		return -1;
	return len ? lt_buf_append(b, data, len) : 0;
}

int lt_blob_put_u64(struct lt_buf *b, uint32_t tag, uint64_t v)
{
	return lt_blob_put(b, tag, &v, sizeof(v));
}

int lt_blob_open(struct lt_blob_reader *r, const void *blob, size_t n, uint16_t kind,
		 uint16_t max_version, const char *what)
{
	const uint8_t *p = blob;
	if (!p || n < LT_BLOB_HDR || get32(p) != LT_BLOB_MAGIC)
		return lt_fail("%s state: bad magic", what);
	uint16_t ver, k;
	memcpy(&ver, p + 4, 2);
	memcpy(&k, p + 6, 2);
	if (k != kind)
		return lt_fail("%s state: wrong kind %u (want %u)", what, k, kind);
	if (ver == 0 || ver > max_version)
		return lt_fail("%s state: unsupported layout version %u", what, ver);
	uint32_t len = get32(p + 8);
	if (len > n - LT_BLOB_HDR)
		return lt_fail("%s state: truncated (%u bytes declared, %zu present)", what, len,
			       n - LT_BLOB_HDR);
	/* Every record must fit; checked once here so lookups can trust it. */
	size_t off = 0;
	const uint8_t *q = p + LT_BLOB_HDR;
	while (off < len) {
		if (len - off < 8)
			return lt_fail("%s state: truncated record header", what);
		uint32_t rl = get32(q + off + 4);
		if (rl > len - off - 8)
			return lt_fail("%s state: record %u overruns the blob", what, get32(q + off));
		off += 8 + (size_t)rl;
	}
	r->p = q;
	r->len = len;
	r->version = ver;
	return 0;
}

const void *lt_blob_find(const struct lt_blob_reader *r, uint32_t tag, uint32_t nth,
			 uint32_t *len)
{
	size_t off = 0;
	while (off + 8 <= r->len) {
		uint32_t t = get32(r->p + off), rl = get32(r->p + off + 4);
		if (t == tag) {
			if (nth == 0) {
				*len = rl;
				return r->p + off + 8;
			}
			nth--;
		}
		off += 8 + (size_t)rl;
	}
	return NULL;
}

int lt_blob_get(const struct lt_blob_reader *r, uint32_t tag, uint32_t nth, void *out,
		uint32_t len, const char *what)
{
	uint32_t rl;
	const void *p = lt_blob_find(r, tag, nth, &rl);
	if (!p)
		return lt_fail("state: %s missing", what);
	if (rl != len)
		return lt_fail("state: %s has size %u, expected %u", what, rl, len);
	memcpy(out, p, len);
	return 0;
}

int lt_blob_get_u64(const struct lt_blob_reader *r, uint32_t tag, uint64_t *v, const char *what)
{
	return lt_blob_get(r, tag, 0, v, sizeof(*v), what);
}
