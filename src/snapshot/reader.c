/* Snapshot reader: validates the whole structure up front (header, table,
 * every section checksum, memory index, working set) before handing out
 * anything. Chunk frames are checked as they are decompressed. */
#include "snap_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define SNAP_MAX_LOADED (512ull << 20) /* all blobs together */

static int pread_exact(struct lt_snap *s, void *buf, size_t n, uint64_t off, const char *what)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = pread(s->fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return lt_fail_errno("%s: cannot read %s", s->name, what);
		if (r == 0)
			return lt_fail("%s: truncated while reading %s", s->name, what);
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static const char *type_name(uint32_t t)
{
	switch (t) {
	case LT_SNAP_SEC_CONFIG: return "config";
	case LT_SNAP_SEC_VCPU: return "vcpu";
	case LT_SNAP_SEC_VM_STATE: return "vm-state";
	case LT_SNAP_SEC_DEVICE_STATE: return "device-state";
	case LT_SNAP_SEC_MEM_INDEX: return "memory-index";
	case LT_SNAP_SEC_MEM_DATA: return "memory-data";
	case LT_SNAP_SEC_WORKING_SET: return "working-set";
	default: return "unknown";
	}
}

static int parse_header(struct lt_snap *s, const uint8_t *h, uint64_t actual_size,
			const char *expect, uint32_t *count, uint64_t *table_off, uint64_t *table_sum)
{
	if (memcmp(h + HO_MAGIC, SNAP_MAGIC, 8) != 0)
		return lt_fail("%s: bad magic (not an lttle snapshot)", s->name);
	uint32_t version = get32(h + HO_VERSION);
	if (version != LT_SNAP_VERSION)
		return lt_fail("%s: snapshot format version %u is not supported (this lttle reads "
			       "version %d)", s->name, version, LT_SNAP_VERSION);
	if (snap_sum(h, HO_HEADER_SUM) != get64(h + HO_HEADER_SUM))
		return lt_fail("%s: header checksum mismatch", s->name);
	if (get32(h + HO_HEADER_SIZE) != SNAP_HEADER_SIZE)
		return lt_fail("%s: header size %u, expected %u", s->name,
			       get32(h + HO_HEADER_SIZE), SNAP_HEADER_SIZE);
	for (size_t i = HO_RESERVED; i < HO_HEADER_SUM; i++)
		if (h[i])
			return lt_fail("%s: reserved header bytes are not zero", s->name);
	/* Template: printable bytes, then NUL padding to the end. */
	const uint8_t *t = h + HO_TEMPLATE;
	size_t tl = 0;
	while (tl < SNAP_TEMPLATE_FIELD && t[tl])
		tl++;
	if (tl == 0 || tl == SNAP_TEMPLATE_FIELD)
		return lt_fail("%s: malformed CPU template id", s->name);
	for (size_t i = 0; i < SNAP_TEMPLATE_FIELD; i++)
		if ((i < tl && (t[i] < 0x21 || t[i] > 0x7e)) || (i >= tl && t[i]))
			return lt_fail("%s: malformed CPU template id", s->name);
	memcpy(s->template_id, t, SNAP_TEMPLATE_FIELD);
	if (expect && strcmp(expect, s->template_id) != 0)
		return lt_fail("%s: CPU template '%s' does not match the expected '%s'", s->name,
			       s->template_id, expect);
	uint32_t page = get32(h + HO_PAGE_SIZE);
	if (page != LT_SNAP_PAGE_SIZE)
		return lt_fail("%s: page size %u is not supported", s->name, page);
	s->chunk_size = get32(h + HO_CHUNK_SIZE);
	if (s->chunk_size < LT_SNAP_MIN_CHUNK || s->chunk_size > LT_SNAP_MAX_CHUNK ||
	    (s->chunk_size & (s->chunk_size - 1)))
		return lt_fail("%s: invalid chunk size %u", s->name, s->chunk_size);
	s->flags = get32(h + HO_FLAGS);
	if (s->flags & ~SNAP_HF_KNOWN)
		return lt_fail("%s: unknown header flags 0x%x", s->name, s->flags);
	s->mem_size = get64(h + HO_MEM_SIZE);
	if (s->mem_size % LT_SNAP_PAGE_SIZE)
		return lt_fail("%s: guest memory size %llu is not page aligned", s->name,
			       (unsigned long long)s->mem_size);
	s->file_size = get64(h + HO_FILE_SIZE);
	if (s->file_size != actual_size)
		return lt_fail("%s: truncated or extended: header says %llu bytes, file has %llu",
			       s->name, (unsigned long long)s->file_size,
			       (unsigned long long)actual_size);
	s->created_ns = get64(h + HO_CREATED);
	*count = get32(h + HO_SECTION_COUNT);
	*table_off = get64(h + HO_TABLE_OFFSET);
	*table_sum = get64(h + HO_TABLE_SUM);
	if (*count < 2 || *count > LT_SNAP_MAX_SECTIONS)
		return lt_fail("%s: section count %u out of range", s->name, *count);
	if (*table_off < SNAP_HEADER_SIZE || *table_off > actual_size ||
	    (uint64_t)*count * SNAP_TABLE_ENTRY > actual_size - *table_off)
		return lt_fail("%s: section table lies outside the file", s->name);
	return 0;
}

static int cmp_sec_offset(const void *a, const void *b)
{
	const struct snap_section *x = *(struct snap_section *const *)a;
	const struct snap_section *y = *(struct snap_section *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int check_section_layout(struct lt_snap *s, uint64_t table_end)
{
	struct snap_section **v = lt_calloc(s->nsecs, sizeof(*v));
	if (!v)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < s->nsecs; i++)
		v[i] = &s->secs[i];
	qsort(v, s->nsecs, sizeof(*v), cmp_sec_offset);
	uint64_t end = table_end;
	for (size_t i = 0; i < s->nsecs && rc == 0; i++) {
		if (v[i]->offset < end)
			rc = lt_fail("%s: %s section at offset %llu overlaps the table or another "
				     "section", s->name, type_name(v[i]->type),
				     (unsigned long long)v[i]->offset);
		else if (v[i]->offset > s->file_size ||
			 v[i]->length > s->file_size - v[i]->offset)
			rc = lt_fail("%s: %s section (offset %llu, %llu bytes) extends past the end "
				     "of the file", s->name, type_name(v[i]->type),
				     (unsigned long long)v[i]->offset,
				     (unsigned long long)v[i]->length);
		else
			end = v[i]->offset + v[i]->length;
	}
	free(v);
	return rc;
}

static int parse_table(struct lt_snap *s, const uint8_t *t, uint32_t count)
{
	s->secs = lt_calloc(count, sizeof(*s->secs));
	if (!s->secs)
		return -1;
	s->nsecs = count;
	size_t seen[8] = {0};
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *p = t + SNAP_TABLE_ENTRY * i;
		struct snap_section *x = &s->secs[i];
		x->type = get32(p);
		x->index = get32(p + 4);
		x->flags = get32(p + 8);
		x->offset = get64(p + 16);
		x->length = get64(p + 24);
		x->checksum = get64(p + 32);
		if (get32(p + 12) || (x->flags & ~SNAP_SF_KNOWN))
			return lt_fail("%s: section %u has reserved bits set", s->name, i);
		bool known = x->type >= LT_SNAP_SEC_CONFIG && x->type <= LT_SNAP_SEC_WORKING_SET;
		if (!known && !(x->flags & SNAP_SF_OPTIONAL))
			return lt_fail("%s: section %u has unknown required type %u", s->name, i,
				       x->type);
		if (known && x->type != LT_SNAP_SEC_VCPU && x->index != 0)
			return lt_fail("%s: %s section with index %u", s->name, type_name(x->type),
				       x->index);
		bool chunked = x->flags & SNAP_SF_CHUNKED;
		if (chunked != (x->type == LT_SNAP_SEC_MEM_DATA) || (chunked && x->checksum))
			return lt_fail("%s: section %u has a wrong chunked flag", s->name, i);
		uint64_t limit = x->type == LT_SNAP_SEC_MEM_INDEX ? SNAP_MAX_INDEX : LT_SNAP_MAX_BLOB;
		if (!chunked && x->length > limit)
			return lt_fail("%s: %s section is %llu bytes (limit %llu)", s->name,
				       type_name(x->type), (unsigned long long)x->length,
				       (unsigned long long)limit);
		if (known)
			seen[x->type]++;
		for (uint32_t k = 0; known && k < i; k++)
			if (s->secs[k].type == x->type && s->secs[k].index == x->index)
				return lt_fail("%s: duplicate %s section (index %u)", s->name,
					       type_name(x->type), x->index);
		if (x->type == LT_SNAP_SEC_VCPU)
			s->nvcpus++;
	}
	if (seen[LT_SNAP_SEC_MEM_INDEX] != 1 || seen[LT_SNAP_SEC_MEM_DATA] != 1)
		return lt_fail("%s: needs exactly one memory index and one memory data section",
			       s->name);
	/* vCPU indexes are unique (checked above) and must be dense. */
	for (size_t i = 0; i < s->nsecs; i++)
		if (s->secs[i].type == LT_SNAP_SEC_VCPU && s->secs[i].index >= s->nvcpus)
			return lt_fail("%s: vcpu sections are not numbered 0..%zu", s->name,
				       s->nvcpus - 1);
	bool ws = seen[LT_SNAP_SEC_WORKING_SET] != 0;
	if (ws != !!(s->flags & SNAP_HF_WORKING_SET))
		return lt_fail("%s: working-set flag disagrees with the section table", s->name);
	return 0;
}

/* Loads and verifies every blob section. */
static int load_sections(struct lt_snap *s)
{
	uint64_t total = 0;
	for (size_t i = 0; i < s->nsecs; i++) {
		struct snap_section *x = &s->secs[i];
		if (x->flags & SNAP_SF_CHUNKED) {
			s->data_off = x->offset;
			s->data_len = x->length;
			continue;
		}
		total += x->length;
		if (total > SNAP_MAX_LOADED)
			return lt_fail("%s: sections total more than %llu bytes", s->name,
				       (unsigned long long)SNAP_MAX_LOADED);
		x->data = lt_malloc(x->length + 1);
		if (!x->data)
			return -1;
		if (pread_exact(s, x->data, x->length, x->offset, type_name(x->type)) < 0)
			return -1;
		x->data[x->length] = '\0';
		if (snap_sum(x->data, x->length) != x->checksum)
			return lt_fail("%s: %s section %zu (index %u) checksum mismatch", s->name,
				       type_name(x->type), i, x->index);
	}
	return 0;
}

static int parse_regions(struct lt_snap *s, const uint8_t *p)
{
	s->regions = lt_calloc(s->nregions ? s->nregions : 1, sizeof(*s->regions));
	if (!s->regions)
		return -1;
	uint64_t sum = 0, prev_end = 0;
	for (size_t i = 0; i < s->nregions; i++, p += SNAP_REGION_REC) {
		uint64_t gpa = get64(p), size = get64(p + 8);
		if (gpa % LT_SNAP_PAGE_SIZE || size % LT_SNAP_PAGE_SIZE || size == 0 ||
		    gpa + size < gpa)
			return lt_fail("%s: memory region %zu is malformed", s->name, i);
		if (i && gpa < prev_end)
			return lt_fail("%s: memory regions overlap or are unsorted", s->name);
		prev_end = gpa + size;
		sum += size;
		s->regions[i] = (struct lt_snap_region){.gpa = gpa, .size = size};
	}
	if (sum != s->mem_size)
		return lt_fail("%s: memory regions total %llu bytes, header says %llu", s->name,
			       (unsigned long long)sum, (unsigned long long)s->mem_size);
	return 0;
}

static int parse_chunks(struct lt_snap *s, const uint8_t *p)
{
	s->chunks = lt_calloc(s->nchunks ? s->nchunks : 1, sizeof(*s->chunks));
	if (!s->chunks)
		return -1;
	size_t bound = ZSTD_compressBound(s->chunk_size);
	uint64_t prev_end = 0;
	for (size_t i = 0; i < s->nchunks; i++, p += SNAP_CHUNK_REC) {
		struct snap_chunk *c = &s->chunks[i];
		c->offset = get64(p);
		c->clen = get32(p + 8);
		c->rlen = get32(p + 12);
		c->sum = get64(p + 16);
		if (c->clen == 0 || c->clen > bound || c->rlen == 0 || c->rlen > s->chunk_size ||
		    c->rlen % LT_SNAP_PAGE_SIZE)
			return lt_fail("%s: chunk %zu has invalid sizes", s->name, i);
		if (c->offset < prev_end || c->offset > s->data_len ||
		    c->clen > s->data_len - c->offset)
			return lt_fail("%s: chunk %zu lies outside the memory data or overlaps "
				       "another", s->name, i);
		prev_end = c->offset + c->clen;
		if (c->clen > s->max_clen)
			s->max_clen = c->clen;
	}
	return 0;
}

/* Is [gpage, gpage+count) inside one region? Entries and regions are both
 * sorted, so *cursor only moves forward: linear in entries + regions. */
static bool entry_in_regions(const struct lt_snap *s, size_t *cursor, uint64_t gpage,
			     uint32_t count)
{
	if (gpage > UINT64_MAX / LT_SNAP_PAGE_SIZE - count)
		return false;
	uint64_t gpa = gpage * LT_SNAP_PAGE_SIZE, end = gpa + (uint64_t)count * LT_SNAP_PAGE_SIZE;
	while (*cursor < s->nregions &&
	       s->regions[*cursor].gpa + s->regions[*cursor].size <= gpa)
		(*cursor)++;
	if (*cursor == s->nregions)
		return false;
	const struct lt_snap_region *r = &s->regions[*cursor];
	return gpa >= r->gpa && end <= r->gpa + r->size;
}

static int cmp_by_chunk(const void *a, const void *b, void *ctx)
{
	const struct lt_snap *s = ctx;
	const struct snap_entry *x = &s->entries[*(const uint32_t *)a];
	const struct snap_entry *y = &s->entries[*(const uint32_t *)b];
	if (x->chunk != y->chunk)
		return x->chunk < y->chunk ? -1 : 1;
	return x->poff < y->poff ? -1 : x->poff > y->poff;
}

/* Every chunk's pages are used exactly once: its entries tile it. */
static int index_chunks(struct lt_snap *s)
{
	s->by_chunk = lt_calloc(s->nentries ? s->nentries : 1, sizeof(uint32_t));
	s->chunk_first = lt_calloc(s->nchunks + 1, sizeof(uint32_t));
	if (!s->by_chunk || !s->chunk_first)
		return -1;
	for (size_t i = 0; i < s->nentries; i++)
		s->by_chunk[i] = (uint32_t)i;
	qsort_r(s->by_chunk, s->nentries, sizeof(uint32_t), cmp_by_chunk, s);
	size_t k = 0;
	for (size_t c = 0; c < s->nchunks; c++) {
		s->chunk_first[c] = (uint32_t)k;
		uint64_t next = 0;
		while (k < s->nentries && s->entries[s->by_chunk[k]].chunk == c) {
			const struct snap_entry *e = &s->entries[s->by_chunk[k]];
			if (e->poff != next)
				return lt_fail("%s: chunk %zu pages are not used exactly once", s->name,
					       c);
			next += e->count;
			k++;
		}
		if (next * LT_SNAP_PAGE_SIZE != s->chunks[c].rlen)
			return lt_fail("%s: chunk %zu holds %u bytes but the index maps %llu", s->name,
				       c, s->chunks[c].rlen,
				       (unsigned long long)(next * LT_SNAP_PAGE_SIZE));
	}
	s->chunk_first[s->nchunks] = (uint32_t)k;
	return 0;
}

static int parse_entries(struct lt_snap *s, const uint8_t *p)
{
	s->entries = lt_calloc(s->nentries ? s->nentries : 1, sizeof(*s->entries));
	if (!s->entries)
		return -1;
	uint64_t prev_end = 0, pages = 0;
	size_t cursor = 0;
	for (size_t i = 0; i < s->nentries; i++, p += SNAP_ENTRY_REC) {
		struct snap_entry *e = &s->entries[i];
		e->gpage = get64(p);
		e->chunk = get32(p + 8);
		e->poff = get32(p + 12);
		e->count = get32(p + 16);
		if (get32(p + 20))
			return lt_fail("%s: memory index entry %zu has reserved bits set", s->name, i);
		if (e->count == 0)
			return lt_fail("%s: memory index entry %zu is empty", s->name, i);
		if (e->chunk >= s->nchunks)
			return lt_fail("%s: memory index entry %zu names chunk %u (of %zu)", s->name,
				       i, e->chunk, s->nchunks);
		if ((uint64_t)e->poff + e->count > s->chunks[e->chunk].rlen / LT_SNAP_PAGE_SIZE)
			return lt_fail("%s: memory index entry %zu reaches past the end of chunk %u",
				       s->name, i, e->chunk);
		if (i && e->gpage < prev_end)
			return lt_fail("%s: memory index entries %zu and %zu overlap or are unsorted",
				       s->name, i - 1, i);
		if (!entry_in_regions(s, &cursor, e->gpage, e->count))
			return lt_fail("%s: memory index entry %zu (gpa 0x%llx) is outside the "
				       "memory regions", s->name, i,
				       (unsigned long long)(e->gpage * LT_SNAP_PAGE_SIZE));
		prev_end = e->gpage + e->count;
		pages += e->count;
	}
	s->stored_pages = pages;
	return index_chunks(s);
}

static int parse_index(struct lt_snap *s, const struct snap_section *x)
{
	const uint8_t *b = x->data;
	if (x->length < SNAP_INDEX_HEADER)
		return lt_fail("%s: memory index too short", s->name);
	s->nregions = get32(b);
	s->nchunks = get32(b + 4);
	s->nentries = get32(b + 8);
	if (get32(b + 12) || get64(b + 24))
		return lt_fail("%s: memory index reserved fields are not zero", s->name);
	uint64_t want = SNAP_INDEX_HEADER + (uint64_t)SNAP_REGION_REC * s->nregions +
			(uint64_t)SNAP_CHUNK_REC * s->nchunks + (uint64_t)SNAP_ENTRY_REC * s->nentries;
	if (want != x->length)
		return lt_fail("%s: memory index is %llu bytes, its counts need %llu", s->name,
			       (unsigned long long)x->length, (unsigned long long)want);
	if (s->nregions > SNAP_MAX_REGIONS)
		return lt_fail("%s: too many memory regions (%zu)", s->name, s->nregions);
	s->index_raw = b;
	s->index_len = x->length;
	const uint8_t *p = b + SNAP_INDEX_HEADER;
	if (parse_regions(s, p) < 0)
		return -1;
	p += SNAP_REGION_REC * s->nregions;
	if (parse_chunks(s, p) < 0)
		return -1;
	p += SNAP_CHUNK_REC * s->nchunks;
	if (parse_entries(s, p) < 0)
		return -1;
	if (get64(b + 16) != s->stored_pages)
		return lt_fail("%s: memory index page count disagrees with its entries", s->name);
	return 0;
}

static int parse_ws(struct lt_snap *s, const struct snap_section *x)
{
	if (x->length < SNAP_WS_HEADER)
		return lt_fail("%s: working set too short", s->name);
	uint32_t n = get32(x->data);
	if (get32(x->data + 4) || x->length != SNAP_WS_HEADER + 4ull * n)
		return lt_fail("%s: working set length disagrees with its count", s->name);
	s->ws = lt_calloc(n ? n : 1, sizeof(*s->ws));
	uint8_t *seen = lt_calloc(s->nchunks ? s->nchunks : 1, 1);
	int rc = (!s->ws || !seen) ? -1 : 0;
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		uint32_t id = get32(x->data + SNAP_WS_HEADER + 4 * i);
		if (id >= s->nchunks)
			rc = lt_fail("%s: working-set chunk %u out of range (%zu chunks)", s->name, id,
				     s->nchunks);
		else if (seen[id]++)
			rc = lt_fail("%s: working set lists chunk %u twice", s->name, id);
		else
			s->ws[i] = id;
	}
	free(seen);
	s->nws = n;
	return rc;
}

static int check_config(struct lt_snap *s, const struct snap_section *x)
{
	if (memchr(x->data, '\0', x->length))
		return lt_fail("%s: config section contains a NUL byte", s->name);
	json_error_t err;
	json_t *j = json_loadb((const char *)x->data, x->length, JSON_REJECT_DUPLICATES, &err);
	bool ok = j && json_is_object(j);
	json_decref(j);
	if (!ok)
		return lt_fail("%s: config section is not a JSON object (%s)", s->name, err.text);
	s->config = (const char *)x->data;
	return 0;
}

static int validate(struct lt_snap *s, const char *expect)
{
	struct stat st;
	if (fstat(s->fd, &st) < 0)
		return lt_fail_errno("%s: cannot stat", s->name);
	if (!S_ISREG(st.st_mode))
		return lt_fail("%s: not a regular file", s->name);
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	uint8_t h[SNAP_HEADER_SIZE];
	if ((uint64_t)st.st_size < SNAP_HEADER_SIZE)
		return lt_fail("%s: too short to be a snapshot (%lld bytes)", s->name,
			       (long long)st.st_size);
	if (pread_exact(s, h, sizeof(h), 0, "header") < 0)
		return -1;
	uint32_t count = 0;
	uint64_t toff = 0, tsum = 0;
	if (parse_header(s, h, (uint64_t)st.st_size, expect, &count, &toff, &tsum) < 0)
		return -1;
	size_t tlen = (size_t)count * SNAP_TABLE_ENTRY;
	uint8_t *t = lt_malloc(tlen);
	if (!t)
		return -1;
	int rc = pread_exact(s, t, tlen, toff, "section table");
	if (rc == 0 && snap_sum(t, tlen) != tsum)
		rc = lt_fail("%s: section table checksum mismatch", s->name);
	if (rc == 0)
		rc = parse_table(s, t, count);
	free(t);
	if (rc == 0)
		rc = check_section_layout(s, toff + tlen);
	if (rc == 0)
		rc = load_sections(s);
	for (size_t i = 0; rc == 0 && i < s->nsecs; i++)
		if (s->secs[i].type == LT_SNAP_SEC_MEM_INDEX)
			rc = parse_index(s, &s->secs[i]);
	for (size_t i = 0; rc == 0 && i < s->nsecs; i++) {
		if (s->secs[i].type == LT_SNAP_SEC_WORKING_SET)
			rc = parse_ws(s, &s->secs[i]);
		else if (s->secs[i].type == LT_SNAP_SEC_CONFIG)
			rc = check_config(s, &s->secs[i]);
	}
	return rc;
}

int lt_snap_open_fd(struct lt_snap **out, int fd, const char *name, const char *expect)
{
	*out = NULL;
	struct lt_snap *s = lt_calloc(1, sizeof(*s));
	if (!s)
		return -1;
	s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	s->name = lt_strdup(name);
	if (s->fd < 0 || !s->name) {
		if (s->fd < 0)
			lt_fail_errno("%s: cannot duplicate fd", name);
		lt_snap_close(s);
		return -1;
	}
	if (validate(s, expect) < 0) {
		lt_snap_close(s);
		return -1;
	}
	*out = s;
	return 0;
}

int lt_snap_open(struct lt_snap **out, const char *path, const char *expect)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("cannot open snapshot %s", path);
	int rc = lt_snap_open_fd(out, fd, path, expect);
	close(fd);
	return rc;
}

void lt_snap_close(struct lt_snap *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	for (size_t i = 0; i < s->nsecs; i++)
		free(s->secs[i].data);
	free(s->secs);
	free(s->regions);
	free(s->chunks);
	free(s->entries);
	free(s->by_chunk);
	free(s->chunk_first);
	free(s->ws);
	free(s->name);
	free(s);
}

const char *lt_snap_template(const struct lt_snap *s) { return s->template_id; }
uint64_t lt_snap_mem_size(const struct lt_snap *s) { return s->mem_size; }
uint32_t lt_snap_chunk_size(const struct lt_snap *s) { return s->chunk_size; }
uint64_t lt_snap_created_ns(const struct lt_snap *s) { return s->created_ns; }
size_t lt_snap_section_count(const struct lt_snap *s) { return s->nsecs; }
size_t lt_snap_vcpu_count(const struct lt_snap *s) { return s->nvcpus; }
const char *lt_snap_config(const struct lt_snap *s) { return s->config; }

int lt_snap_section_at(const struct lt_snap *s, size_t i, struct lt_snap_section_info *info,
		       const void **data)
{
	if (i >= s->nsecs)
		return lt_fail("%s: no section %zu (%zu sections)", s->name, i, s->nsecs);
	const struct snap_section *x = &s->secs[i];
	if (info)
		*info = (struct lt_snap_section_info){x->type, x->index, x->flags, x->offset,
						      x->length};
	if (data)
		*data = x->data;
	return 0;
}

static const struct snap_section *find(const struct lt_snap *s, uint32_t type, uint32_t index)
{
	for (size_t i = 0; i < s->nsecs; i++)
		if (s->secs[i].type == type && s->secs[i].index == index)
			return &s->secs[i];
	return NULL;
}

bool lt_snap_has_section(const struct lt_snap *s, uint32_t type, uint32_t index)
{
	return find(s, type, index) != NULL;
}

int lt_snap_section(const struct lt_snap *s, uint32_t type, uint32_t index, const void **data,
		    size_t *len)
{
	const struct snap_section *x = find(s, type, index);
	if (!x)
		return lt_fail("%s: no %s section with index %u", s->name, type_name(type), index);
	if (data)
		*data = x->data;
	if (len)
		*len = x->length;
	return 0;
}

void lt_snap_mem_info(const struct lt_snap *s, struct lt_snap_mem_info *info)
{
	*info = (struct lt_snap_mem_info){s->nregions, s->nchunks, s->nentries, s->stored_pages,
					  s->data_len};
}

const struct lt_snap_region *lt_snap_regions(const struct lt_snap *s, size_t *n)
{
	*n = s->nregions;
	return s->regions;
}

const uint32_t *lt_snap_working_set(const struct lt_snap *s, size_t *n)
{
	*n = s->nws;
	return s->nws ? s->ws : NULL;
}

int64_t lt_snap_read_chunk(struct lt_snap *s, uint32_t chunk, void *buf, size_t buf_len)
{
	if (chunk >= s->nchunks)
		return lt_fail("%s: chunk %u out of range (%zu chunks)", s->name, chunk, s->nchunks);
	if (buf_len < s->chunks[chunk].rlen)
		return lt_fail("%s: buffer too small for chunk %u", s->name, chunk);
	uint8_t *cbuf = lt_malloc(s->chunks[chunk].clen);
	ZSTD_DCtx *d = ZSTD_createDCtx();
	int rc = -1;
	if (!cbuf || !d)
		lt_fail("out of memory decompressing chunk %u", chunk);
	else
		rc = snap_decode_chunk(s, chunk, cbuf, buf, (struct ZSTD_DCtx_s *)d);
	free(cbuf);
	ZSTD_freeDCtx(d);
	return rc < 0 ? -1 : (int64_t)s->chunks[chunk].rlen;
}
