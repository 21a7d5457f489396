/* Working-set recording: rewrite a snapshot with a new working-set section
 * placed right after the table, every other section copied verbatim. */
#include "snap_int.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int copy_range(int in, uint64_t off, int out, uint64_t len)
{
	loff_t ioff = (loff_t)off;
	while (len) {
		ssize_t r = copy_file_range(in, &ioff, out, NULL, len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break; /* fall back to read/write below */
		len -= (uint64_t)r;
	}
	uint8_t buf[1 << 16];
	while (len) {
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		ssize_t r = pread(in, buf, n, ioff);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? lt_fail_errno("read failed") : lt_fail("unexpected end of file");
		if (lt_write_all(out, buf, (size_t)r) < 0)
			return -1;
		ioff += r;
		len -= (uint64_t)r;
	}
	return 0;
}

static uint8_t *ws_blob(const struct lt_snap *s, const uint32_t *ids, size_t n, size_t *len)
{
	uint8_t *seen = lt_calloc(s->nchunks ? s->nchunks : 1, 1);
	uint8_t *b = lt_malloc(SNAP_WS_HEADER + 4 * n);
	if (!seen || !b)
		goto fail;
	uint32_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= s->nchunks) {
			lt_fail("%s: working-set chunk %u out of range (%zu chunks)", s->name, ids[i],
				s->nchunks);
			goto fail;
		}
		if (!seen[ids[i]]++)
			put32(b + SNAP_WS_HEADER + 4 * k++, ids[i]);
	}
	put32(b, k);
	put32(b + 4, 0);
	*len = SNAP_WS_HEADER + 4 * (size_t)k;
	free(seen);
	return b;
fail:
	free(seen);
	free(b);
	return NULL;
}

static void put_table_entry(uint8_t *p, uint32_t type, uint32_t index, uint32_t flags,
			    uint64_t off, uint64_t len, uint64_t sum)
{
	put32(p, type);
	put32(p + 4, index);
	put32(p + 8, flags);
	put32(p + 12, 0);
	put64(p + 16, off);
	put64(p + 24, len);
	put64(p + 32, sum);
}

static int rewrite(struct lt_snap *s, struct lt_atomic *a, const uint8_t *ws, size_t wslen)
{
	size_t count = 0;
	for (size_t i = 0; i < s->nsecs; i++)
		count += s->secs[i].type != LT_SNAP_SEC_WORKING_SET;
	count += ws ? 1 : 0;
	size_t tlen = count * SNAP_TABLE_ENTRY;
	uint8_t h[SNAP_HEADER_SIZE];
	uint8_t *t = lt_calloc(tlen, 1);
	if (!t)
		return -1;
	int rc = lseek(a->fd, (off_t)(SNAP_HEADER_SIZE + tlen), SEEK_SET) < 0 ?
			 lt_fail_errno("seek failed") : 0;
	uint64_t pos = SNAP_HEADER_SIZE + tlen;
	size_t k = 0;
	if (rc == 0 && ws) {
		put_table_entry(t, LT_SNAP_SEC_WORKING_SET, 0, 0, pos, wslen, snap_sum(ws, wslen));
		rc = lt_write_all(a->fd, ws, wslen);
		pos += wslen;
		k++;
	}
	for (size_t i = 0; rc == 0 && i < s->nsecs; i++) {
		const struct snap_section *x = &s->secs[i];
		if (x->type == LT_SNAP_SEC_WORKING_SET)
			continue;
		put_table_entry(t + SNAP_TABLE_ENTRY * k++, x->type, x->index, x->flags, pos,
				x->length, x->checksum);
		if (x->data)
			rc = lt_write_all(a->fd, x->data, x->length);
		else
			rc = copy_range(s->fd, x->offset, a->fd, x->length);
		pos += x->length;
	}
	if (rc == 0 && pread(s->fd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
		rc = lt_fail("%s: cannot re-read the header", s->name);
	if (rc == 0) {
		put32(h + HO_FLAGS, ws ? SNAP_HF_WORKING_SET : 0);
		put32(h + HO_SECTION_COUNT, (uint32_t)count);
		put64(h + HO_TABLE_OFFSET, SNAP_HEADER_SIZE);
		put64(h + HO_FILE_SIZE, pos);
		put64(h + HO_TABLE_SUM, snap_sum(t, tlen));
		put64(h + HO_HEADER_SUM, snap_sum(h, HO_HEADER_SUM));
		if (pwrite(a->fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
		    pwrite(a->fd, t, tlen, SNAP_HEADER_SIZE) != (ssize_t)tlen)
			rc = lt_fail_errno("write failed");
	}
	free(t);
	return rc;
}

int lt_snap_record_working_set(const char *path, const char *expect_template,
			       const uint32_t *ids, size_t n)
{
	struct lt_snap *s;
	if (lt_snap_open(&s, path, expect_template) < 0)
		return lt_fail_ctx("recording the working set");
	size_t wslen = 0;
	uint8_t *ws = NULL;
	if (n && !(ws = ws_blob(s, ids, n, &wslen))) {
		lt_snap_close(s);
		return -1;
	}
	struct lt_atomic a;
	int rc = lt_atomic_open(&a, path, 0644);
	if (rc == 0) {
		rc = rewrite(s, &a, ws, wslen);
		if (rc == 0)
			rc = lt_atomic_commit(&a);
		else
			lt_atomic_abort(&a);
	}
	free(ws);
	lt_snap_close(s);
	return rc < 0 ? lt_fail_ctx("recording the working set of %s", path) : 0;
}
