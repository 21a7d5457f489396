/* Snapshot writer: blobs, then memory (zero-page scan, parallel zstd of
 * independent chunk frames, written in chunk order), then index, table and
 * header, committed atomically. */
#include "snap_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#define SCAN_SLICE_PAGES 2048u /* 8 MiB of guest memory per scan work item */

struct wsec {
	uint32_t type, index, flags;
	uint8_t *data;
	size_t len;
	uint64_t offset, sum;
};

struct run {
	uint64_t gpage;
	const uint8_t *host;
	uint64_t count;
};

struct lt_snap_writer {
	struct lt_atomic at;
	char *path;
	char template_id[SNAP_TEMPLATE_FIELD];
	uint32_t chunk_size;
	int level, threads;
	struct wsec *secs;
	size_t nsecs;
	uint32_t *ws;
	size_t nws;
	bool has_ws, mem_done, failed;
	uint64_t pos; /* bytes written so far */

	struct lt_snap_region *regions; /* gpa + size only, sorted */
	size_t nregions;
	uint64_t mem_size;
	struct snap_chunk *chunks;
	size_t nchunks;
	struct snap_entry *entries;
	size_t nentries;
	uint32_t *chunk_first; /* nchunks + 1 */
	const uint8_t **entry_host;
	uint64_t data_off, data_len;
	struct wsec data_sec, index_sec, ws_sec;
	struct lt_snap_writer_stats st;
};

static int check_template(const char *t)
{
	size_t n = t ? strlen(t) : 0;
	if (n == 0 || n > LT_SNAP_TEMPLATE_MAX)
		return lt_fail("CPU template id must be 1..%d bytes", LT_SNAP_TEMPLATE_MAX);
	for (size_t i = 0; i < n; i++)
		if (t[i] < 0x21 || t[i] > 0x7e)
			return lt_fail("CPU template id '%s' has a non-printable or space byte", t);
	return 0;
}

static bool valid_chunk_size(uint32_t c)
{
	return c >= LT_SNAP_MIN_CHUNK && c <= LT_SNAP_MAX_CHUNK && (c & (c - 1)) == 0;
}

int lt_snap_writer_begin(struct lt_snap_writer **out, const char *path,
			 const struct lt_snap_writer_opts *opts)
{
	*out = NULL;
	if (check_template(opts->cpu_template) < 0)
		return lt_fail_ctx("snapshot %s", path);
	uint32_t cs = opts->chunk_size ? opts->chunk_size : LT_SNAP_DEFAULT_CHUNK;
	if (!valid_chunk_size(cs))
		return lt_fail("snapshot %s: chunk size %u is not a power of two in 64 KiB..64 MiB",
			       path, cs);
	struct lt_snap_writer *w = lt_calloc(1, sizeof(*w));
	if (!w)
		return -1;
	w->path = lt_strdup(path);
	if (!w->path || lt_atomic_open(&w->at, path, 0644) < 0) {
		free(w->path);
		free(w);
		return lt_fail_ctx("snapshot %s", path);
	}
	snprintf(w->template_id, sizeof(w->template_id), "%s", opts->cpu_template);
	w->chunk_size = cs;
	w->level = opts->level ? opts->level : 1;
	w->threads = snap_default_threads(opts->threads);
	*out = w;
	return 0;
}

static bool known_type(uint32_t t)
{
	return t >= LT_SNAP_SEC_CONFIG && t <= LT_SNAP_SEC_WORKING_SET;
}

int lt_snap_writer_add_section(struct lt_snap_writer *w, uint32_t type, uint32_t index,
			       const void *data, size_t len)
{
	if (w->failed || w->mem_done)
		return lt_fail("snapshot %s: sections must be added before the memory", w->path);
	if (type == LT_SNAP_SEC_MEM_INDEX || type == LT_SNAP_SEC_MEM_DATA ||
	    type == LT_SNAP_SEC_WORKING_SET || type == 0)
		return lt_fail("snapshot %s: section type %u is written by the snapshot module",
			       w->path, type);
	if (len > LT_SNAP_MAX_BLOB)
		return lt_fail("snapshot %s: section type %u is %zu bytes (limit %u)", w->path,
			       type, len, LT_SNAP_MAX_BLOB);
	if (type != LT_SNAP_SEC_VCPU && index != 0)
		return lt_fail("snapshot %s: section type %u takes index 0", w->path, type);
	if (w->nsecs + 4 > LT_SNAP_MAX_SECTIONS)
		return lt_fail("snapshot %s: too many sections", w->path);
	for (size_t i = 0; i < w->nsecs; i++)
		if (w->secs[i].type == type && w->secs[i].index == index)
			return lt_fail("snapshot %s: duplicate section type %u index %u", w->path,
				       type, index);
	struct wsec *n = lt_realloc(w->secs, (w->nsecs + 1) * sizeof(*n));
	if (!n)
		return -1;
	w->secs = n;
	struct wsec *s = &w->secs[w->nsecs];
	memset(s, 0, sizeof(*s));
	s->data = lt_malloc(len);
	if (!s->data)
		return -1;
	memcpy(s->data, data, len);
	s->type = type;
	s->index = index;
	s->len = len;
	s->flags = known_type(type) ? 0 : SNAP_SF_OPTIONAL;
	s->sum = snap_sum(s->data, len);
	w->nsecs++;
	return 0;
}

int lt_snap_writer_set_working_set(struct lt_snap_writer *w, const uint32_t *ids, size_t n)
{
	if (w->failed || w->mem_done)
		return lt_fail("snapshot %s: the working set must be set before the memory", w->path);
	if (n > (LT_SNAP_MAX_BLOB - SNAP_WS_HEADER) / 4)
		return lt_fail("snapshot %s: working set too long", w->path);
	uint32_t *c = lt_malloc(n * sizeof(*c));
	if (!c)
		return -1;
	memcpy(c, ids, n * sizeof(*c));
	free(w->ws);
	w->ws = c;
	w->nws = n;
	w->has_ws = n > 0;
	return 0;
}

/* ---- scan: which pages hold data ------------------------------------- */

static bool swap_enabled(void)
{
	FILE *f = fopen("/proc/swaps", "re");
	if (!f)
		return true; /* unknown: do not trust mincore */
	char line[256];
	int lines = 0;
	while (fgets(line, sizeof(line), f))
		lines++;
	fclose(f);
	return lines > 1;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	for (size_t i = 0; i < LT_SNAP_PAGE_SIZE / 8; i += 8) {
		uint64_t acc = q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] |
			       q[i + 6] | q[i + 7];
		if (acc)
			return false;
	}
	return true;
}

struct scan_item {
	const struct lt_snap_region *r;
	uint64_t first, count; /* pages within the region */
	struct run *runs;
	size_t nruns, cap;
	uint64_t scanned, skipped, zero;
};

struct scan_job {
	struct scan_item *items;
	size_t nitems;
	size_t next;
	bool use_mincore;
	pthread_mutex_t lock;
	struct snap_err err;
};

static int item_add_page(struct scan_item *it, uint64_t page)
{
	const uint8_t *host = (const uint8_t *)it->r->host + page * LT_SNAP_PAGE_SIZE;
	uint64_t gpage = it->r->gpa / LT_SNAP_PAGE_SIZE + page;
	if (it->nruns) {
		struct run *last = &it->runs[it->nruns - 1];
		if (last->gpage + last->count == gpage) {
			last->count++;
			return 0;
		}
	}
	if (it->nruns == it->cap) {
		size_t cap = it->cap ? it->cap * 2 : 16;
		struct run *n = lt_realloc(it->runs, cap * sizeof(*n));
		if (!n)
			return -1;
		it->runs = n;
		it->cap = cap;
	}
	it->runs[it->nruns++] = (struct run){gpage, host, 1};
	return 0;
}

static int scan_item(struct scan_item *it, bool use_mincore)
{
	unsigned char vec[SCAN_SLICE_PAGES];
	const uint8_t *base = (const uint8_t *)it->r->host;
	bool have_vec = false;
	if (use_mincore && (it->r->flags & LT_SNAP_REGION_ANON))
		have_vec = mincore((void *)(base + it->first * LT_SNAP_PAGE_SIZE),
				   it->count * LT_SNAP_PAGE_SIZE, vec) == 0;
	for (uint64_t i = 0; i < it->count; i++) {
		uint64_t page = it->first + i;
		if (it->r->present && !(it->r->present[page / 8] & (1u << (page % 8)))) {
			it->skipped++;
			continue;
		}
		if (have_vec && !(vec[i] & 1)) {
			it->skipped++;
			continue;
		}
		it->scanned++;
		if (page_is_zero(base + page * LT_SNAP_PAGE_SIZE)) {
			it->zero++;
			continue;
		}
		if (item_add_page(it, page) < 0)
			return -1;
	}
	return 0;
}

static void *scan_worker(void *arg)
{
	struct scan_job *j = arg;
	for (;;) {
		pthread_mutex_lock(&j->lock);
		size_t i = j->next < j->nitems && !snap_err_failed(&j->err) ? j->next++ : j->nitems;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->nitems)
			break;
		if (scan_item(&j->items[i], j->use_mincore) < 0)
			snap_err_set(&j->err);
	}
	return NULL;
}

/* Runs one function on `threads` threads (the caller's being one). */
static int run_threads(int threads, void *(*fn)(void *), void *arg)
{
	pthread_t tid[SNAP_MAX_THREADS];
	int started = 0;
	for (int i = 1; i < threads; i++) {
		if (pthread_create(&tid[started], NULL, fn, arg) != 0)
			break; /* fewer threads still finish the work */
		started++;
	}
	fn(arg);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return 0;
}

static int scan_memory(struct lt_snap_writer *w, const struct lt_snap_region *r, size_t n,
		       struct run **runs_out, size_t *nruns_out)
{
	size_t nitems = 0;
	for (size_t i = 0; i < n; i++)
		nitems += (r[i].size / LT_SNAP_PAGE_SIZE + SCAN_SLICE_PAGES - 1) / SCAN_SLICE_PAGES;
	struct scan_job j = {.nitems = nitems, .use_mincore = !swap_enabled()};
	j.items = lt_calloc(nitems ? nitems : 1, sizeof(*j.items));
	if (!j.items)
		return -1;
	/* Items in gpa order so concatenated runs come out sorted. */
	const struct lt_snap_region **order = lt_calloc(n ? n : 1, sizeof(*order));
	if (!order) {
		free(j.items);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = &r[i];
	for (size_t a = 1; a < n; a++)
		for (size_t b = a; b > 0 && order[b - 1]->gpa > order[b]->gpa; b--) {
			const struct lt_snap_region *t = order[b];
			order[b] = order[b - 1];
			order[b - 1] = t;
		}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t pages = order[i]->size / LT_SNAP_PAGE_SIZE;
		for (uint64_t p = 0; p < pages; p += SCAN_SLICE_PAGES) {
			j.items[k].r = order[i];
			j.items[k].first = p;
			j.items[k].count = pages - p < SCAN_SLICE_PAGES ? pages - p : SCAN_SLICE_PAGES;
			k++;
		}
	}
	free(order);
	pthread_mutex_init(&j.lock, NULL);
	snap_err_init(&j.err);
	run_threads(w->threads, scan_worker, &j);

	int rc = snap_err_failed(&j.err) ? snap_err_raise(&j.err) : 0;
	size_t total = 0;
	for (size_t i = 0; i < nitems; i++) {
		total += j.items[i].nruns;
		w->st.pages_scanned += j.items[i].scanned;
		w->st.pages_skipped += j.items[i].skipped;
		w->st.pages_zero += j.items[i].zero;
	}
	struct run *runs = rc == 0 ? lt_calloc(total ? total : 1, sizeof(*runs)) : NULL;
	if (!runs)
		rc = -1;
	size_t nr = 0;
	for (size_t i = 0; i < nitems; i++) {
		for (size_t q = 0; rc == 0 && q < j.items[i].nruns; q++) {
			struct run *x = &j.items[i].runs[q];
			struct run *last = nr ? &runs[nr - 1] : NULL;
			/* Join runs split by a slice boundary. */
			if (last && last->gpage + last->count == x->gpage &&
			    last->host + last->count * LT_SNAP_PAGE_SIZE == x->host)
				last->count += x->count;
			else
				runs[nr++] = *x;
		}
		free(j.items[i].runs);
	}
	free(j.items);
	if (rc < 0) {
		free(runs);
		return -1;
	}
	*runs_out = runs;
	*nruns_out = nr;
	return 0;
}

/* Splits the runs into chunk-sized groups of packed pages. */
static int build_entries(struct lt_snap_writer *w, const struct run *runs, size_t nruns)
{
	uint64_t per_chunk = w->chunk_size / LT_SNAP_PAGE_SIZE;
	uint64_t total = 0, nent = 0;
	for (size_t i = 0; i < nruns; i++) {
		uint64_t p0 = total, p1 = total + runs[i].count;
		nent += (p1 - 1) / per_chunk - p0 / per_chunk + 1;
		total = p1;
	}
	uint64_t nchunks = (total + per_chunk - 1) / per_chunk;
	uint64_t index_len = SNAP_INDEX_HEADER + SNAP_REGION_REC * w->nregions +
			     SNAP_CHUNK_REC * nchunks + SNAP_ENTRY_REC * nent;
	if (index_len > SNAP_MAX_INDEX || nchunks > UINT32_MAX)
		return lt_fail("snapshot %s: memory too fragmented (%llu ranges)", w->path,
			       (unsigned long long)nent);
	w->entries = lt_calloc(nent ? nent : 1, sizeof(*w->entries));
	w->entry_host = lt_calloc(nent ? nent : 1, sizeof(*w->entry_host));
	w->chunks = lt_calloc(nchunks ? nchunks : 1, sizeof(*w->chunks));
	w->chunk_first = lt_calloc(nchunks + 1, sizeof(*w->chunk_first));
	if (!w->entries || !w->entry_host || !w->chunks || !w->chunk_first)
		return -1;
	uint64_t pos = 0;
	size_t e = 0;
	for (size_t i = 0; i < nruns; i++) {
		uint64_t done = 0;
		while (done < runs[i].count) {
			uint64_t c = pos / per_chunk, off = pos % per_chunk;
			uint64_t take = per_chunk - off;
			if (take > runs[i].count - done)
				take = runs[i].count - done;
			if (off == 0)
				w->chunk_first[c] = (uint32_t)e;
			w->entries[e] = (struct snap_entry){runs[i].gpage + done, (uint32_t)c,
							    (uint32_t)off, (uint32_t)take};
			w->entry_host[e] = runs[i].host + done * LT_SNAP_PAGE_SIZE;
			e++;
			done += take;
			pos += take;
		}
	}
	w->chunk_first[nchunks] = (uint32_t)e;
	for (uint64_t c = 0; c < nchunks; c++) {
		uint64_t left = total - c * per_chunk;
		w->chunks[c].rlen = (uint32_t)((left < per_chunk ? left : per_chunk) * LT_SNAP_PAGE_SIZE);
	}
	w->nentries = e;
	w->nchunks = nchunks;
	w->st.pages_stored = total;
	w->st.chunks = nchunks;
	return 0;
}

/* ---- compress: workers fill a window of slots, the caller writes them
 * in chunk order ------------------------------------------------------- */

struct cslot {
	int state; /* 0 free, 1 compressing, 2 done */
	uint8_t *out;
	size_t clen;
};

struct cjob {
	struct lt_snap_writer *w;
	struct cslot *slots;
	size_t window;
	size_t next, written;
	size_t bound;
	pthread_mutex_t lock;
	pthread_cond_t space, done;
	struct snap_err err;
};

static int compress_chunk(struct cjob *j, ZSTD_CCtx *cc, uint8_t *in, size_t c,
			  struct cslot *slot)
{
	struct lt_snap_writer *w = j->w;
	uint32_t e0 = w->chunk_first[c], e1 = w->chunk_first[c + 1];
	const uint8_t *src = w->entry_host[e0];
	size_t rlen = w->chunks[c].rlen;
	if (e1 - e0 > 1) { /* gather scattered pages; one run compresses in place */
		size_t off = 0;
		for (uint32_t e = e0; e < e1; e++) {
			size_t n = (size_t)w->entries[e].count * LT_SNAP_PAGE_SIZE;
			memcpy(in + off, w->entry_host[e], n);
			off += n;
		}
		src = in;
	}
	size_t r = ZSTD_compress2(cc, slot->out, j->bound, src, rlen);
	if (ZSTD_isError(r))
		return lt_fail("snapshot %s: zstd: %s", w->path, ZSTD_getErrorName(r));
	slot->clen = r;
	return 0;
}

static void *compress_worker(void *arg)
{
	struct cjob *j = arg;
	struct lt_snap_writer *w = j->w;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	uint8_t *in = lt_malloc(w->chunk_size);
	if (!cc || !in ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, w->level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1))) {
		lt_fail("snapshot %s: cannot set up zstd compression", w->path);
		snap_err_set(&j->err);
	}
	for (;;) {
		pthread_mutex_lock(&j->lock);
		while (!snap_err_failed(&j->err) && j->next < w->nchunks &&
		       j->next >= j->written + j->window)
			pthread_cond_wait(&j->space, &j->lock);
		if (snap_err_failed(&j->err) || j->next >= w->nchunks) {
			pthread_cond_broadcast(&j->done);
			pthread_mutex_unlock(&j->lock);
			break;
		}
		size_t c = j->next++;
		struct cslot *slot = &j->slots[c % j->window];
		slot->state = 1;
		pthread_mutex_unlock(&j->lock);

		int rc = compress_chunk(j, cc, in, c, slot);
		if (rc < 0)
			snap_err_set(&j->err);
		pthread_mutex_lock(&j->lock);
		slot->state = 2;
		pthread_cond_broadcast(&j->done);
		pthread_mutex_unlock(&j->lock);
	}
	ZSTD_freeCCtx(cc);
	free(in);
	return NULL;
}

static int write_at_end(struct lt_snap_writer *w, const void *data, size_t n)
{
	if (lt_write_all(w->at.fd, data, n) < 0)
		return lt_fail_ctx("snapshot %s", w->path);
	w->pos += n;
	return 0;
}

static int write_chunks(struct lt_snap_writer *w)
{
	struct cjob j = {.w = w, .window = (size_t)w->threads * 2, .bound = ZSTD_compressBound(w->chunk_size)};
	j.slots = lt_calloc(j.window, sizeof(*j.slots));
	if (!j.slots)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < j.window && rc == 0; i++)
		if (!(j.slots[i].out = lt_malloc(j.bound)))
			rc = -1;
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.space, NULL);
	pthread_cond_init(&j.done, NULL);
	snap_err_init(&j.err);
	pthread_t tid[SNAP_MAX_THREADS];
	int started = 0;
	for (int i = 0; rc == 0 && i < w->threads; i++)
		if (pthread_create(&tid[started], NULL, compress_worker, &j) == 0)
			started++;
	if (rc == 0 && started == 0)
		rc = lt_fail_errno("snapshot %s: cannot start compression threads", w->path);

	for (size_t c = 0; rc == 0 && c < w->nchunks; c++) {
		struct cslot *slot = &j.slots[c % j.window];
		pthread_mutex_lock(&j.lock);
		while (!snap_err_failed(&j.err) && slot->state != 2)
			pthread_cond_wait(&j.done, &j.lock);
		pthread_mutex_unlock(&j.lock);
		if (snap_err_failed(&j.err))
			break;
		w->chunks[c].offset = w->pos - w->data_off;
		w->chunks[c].clen = (uint32_t)slot->clen;
		w->chunks[c].sum = snap_sum(slot->out, slot->clen);
		if (write_at_end(w, slot->out, slot->clen) < 0) {
			snap_err_set(&j.err);
			break;
		}
		pthread_mutex_lock(&j.lock);
		slot->state = 0;
		j.written++;
		pthread_cond_broadcast(&j.space);
		pthread_mutex_unlock(&j.lock);
	}
	if (rc == 0 && snap_err_failed(&j.err))
		rc = snap_err_raise(&j.err);
	pthread_mutex_lock(&j.lock);
	if (rc < 0 && !snap_err_failed(&j.err))
		__atomic_store_n(&j.err.failed, 1, __ATOMIC_RELEASE); /* stop the workers */
	pthread_cond_broadcast(&j.space);
	pthread_mutex_unlock(&j.lock);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	for (size_t i = 0; i < j.window; i++)
		free(j.slots[i].out);
	free(j.slots);
	pthread_mutex_destroy(&j.lock);
	pthread_cond_destroy(&j.space);
	pthread_cond_destroy(&j.done);
	if (rc == 0)
		w->data_len = w->pos - w->data_off;
	return rc;
}

/* ---- layout ------------------------------------------------------------ */

/* Drops duplicates (keeping first occurrences) and checks the range. */
static int build_ws_blob(struct lt_snap_writer *w)
{
	uint8_t *seen = lt_calloc(w->nchunks ? w->nchunks : 1, 1);
	uint8_t *blob = lt_malloc(SNAP_WS_HEADER + 4 * w->nws);
	if (!seen || !blob) {
		free(seen);
		free(blob);
		return -1;
	}
	uint32_t n = 0;
	for (size_t i = 0; i < w->nws; i++) {
		if (w->ws[i] >= w->nchunks) {
			free(seen);
			free(blob);
			return lt_fail("snapshot %s: working-set chunk %u out of range (%zu chunks)",
				       w->path, w->ws[i], w->nchunks);
		}
		if (seen[w->ws[i]]++)
			continue;
		put32(blob + SNAP_WS_HEADER + 4 * n++, w->ws[i]);
	}
	free(seen);
	put32(blob, n);
	put32(blob + 4, 0);
	w->ws_sec = (struct wsec){.type = LT_SNAP_SEC_WORKING_SET, .data = blob,
				  .len = SNAP_WS_HEADER + 4 * (size_t)n};
	w->ws_sec.sum = snap_sum(blob, w->ws_sec.len);
	return 0;
}

static size_t section_total(const struct lt_snap_writer *w)
{
	return w->nsecs + (w->has_ws ? 1 : 0) + 2;
}

/* Header and table are filled in at commit; blobs go right after. */
static int write_front(struct lt_snap_writer *w)
{
	size_t front = SNAP_HEADER_SIZE + SNAP_TABLE_ENTRY * section_total(w);
	uint8_t *zero = lt_calloc(front, 1);
	if (!zero)
		return -1;
	int rc = write_at_end(w, zero, front);
	free(zero);
	if (rc == 0 && w->has_ws) {
		w->ws_sec.offset = w->pos;
		rc = write_at_end(w, w->ws_sec.data, w->ws_sec.len);
	}
	for (size_t i = 0; rc == 0 && i < w->nsecs; i++) {
		w->secs[i].offset = w->pos;
		rc = write_at_end(w, w->secs[i].data, w->secs[i].len);
	}
	return rc;
}

static int set_regions(struct lt_snap_writer *w, const struct lt_snap_region *r, size_t n)
{
	if (snap_check_targets(r, n, "snapshot memory") < 0)
		return lt_fail_ctx("snapshot %s", w->path);
	w->regions = lt_calloc(n ? n : 1, sizeof(*w->regions));
	if (!w->regions)
		return -1;
	for (size_t i = 0; i < n; i++) {
		w->regions[i] = (struct lt_snap_region){.gpa = r[i].gpa, .size = r[i].size};
		w->mem_size += r[i].size;
	}
	for (size_t a = 1; a < n; a++)
		for (size_t b = a; b > 0 && w->regions[b - 1].gpa > w->regions[b].gpa; b--) {
			struct lt_snap_region t = w->regions[b];
			w->regions[b] = w->regions[b - 1];
			w->regions[b - 1] = t;
		}
	w->nregions = n;
	return 0;
}

static int add_memory(struct lt_snap_writer *w, const struct lt_snap_region *r, size_t n)
{
	if (set_regions(w, r, n) < 0)
		return -1;
	uint64_t t0 = lt_now_ns();
	struct run *runs = NULL;
	size_t nruns = 0;
	if (scan_memory(w, r, n, &runs, &nruns) < 0)
		return lt_fail_ctx("snapshot %s", w->path);
	int rc = build_entries(w, runs, nruns);
	free(runs);
	w->st.scan_ns = lt_now_ns() - t0;
	if (rc == 0 && w->has_ws)
		rc = build_ws_blob(w);
	if (rc == 0)
		rc = write_front(w);
	if (rc < 0)
		return -1;
	t0 = lt_now_ns();
	w->data_off = w->pos;
	rc = write_chunks(w);
	w->st.compress_ns = lt_now_ns() - t0;
	w->st.compressed_bytes = w->data_len;
	return rc;
}

int lt_snap_writer_add_memory(struct lt_snap_writer *w, const struct lt_snap_region *regions,
			      size_t n)
{
	if (w->failed || w->mem_done)
		return lt_fail("snapshot %s: memory was already added", w->path);
	w->mem_done = true;
	if (add_memory(w, regions, n) < 0) {
		w->failed = true;
		return -1;
	}
	return 0;
}

static uint8_t *encode_index(const struct lt_snap_writer *w, size_t *len)
{
	size_t n = SNAP_INDEX_HEADER + SNAP_REGION_REC * w->nregions +
		   SNAP_CHUNK_REC * w->nchunks + SNAP_ENTRY_REC * w->nentries;
	uint8_t *b = lt_calloc(n, 1);
	if (!b)
		return NULL;
	put32(b + 0, (uint32_t)w->nregions);
	put32(b + 4, (uint32_t)w->nchunks);
	put32(b + 8, (uint32_t)w->nentries);
	put64(b + 16, w->st.pages_stored);
	uint8_t *p = b + SNAP_INDEX_HEADER;
	for (size_t i = 0; i < w->nregions; i++, p += SNAP_REGION_REC) {
		put64(p, w->regions[i].gpa);
		put64(p + 8, w->regions[i].size);
	}
	for (size_t i = 0; i < w->nchunks; i++, p += SNAP_CHUNK_REC) {
		put64(p, w->chunks[i].offset);
		put32(p + 8, w->chunks[i].clen);
		put32(p + 12, w->chunks[i].rlen);
		put64(p + 16, w->chunks[i].sum);
	}
	for (size_t i = 0; i < w->nentries; i++, p += SNAP_ENTRY_REC) {
		put64(p, w->entries[i].gpage);
		put32(p + 8, w->entries[i].chunk);
		put32(p + 12, w->entries[i].poff);
		put32(p + 16, w->entries[i].count);
	}
	*len = n;
	return b;
}

static void put_entry(uint8_t *p, const struct wsec *s)
{
	put32(p, s->type);
	put32(p + 4, s->index);
	put32(p + 8, s->flags);
	put32(p + 12, 0);
	put64(p + 16, s->offset);
	put64(p + 24, s->len);
	put64(p + 32, s->sum);
}

static int pwrite_all(int fd, const void *data, size_t n, uint64_t off)
{
	const uint8_t *p = data;
	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return lt_fail_errno("write failed");
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* Table in file order: working set, blobs, memory data, memory index. */
static int write_table_and_header(struct lt_snap_writer *w)
{
	size_t count = section_total(w);
	size_t tlen = SNAP_TABLE_ENTRY * count;
	uint8_t *t = lt_calloc(tlen, 1);
	if (!t)
		return -1;
	size_t k = 0;
	if (w->has_ws)
		put_entry(t + SNAP_TABLE_ENTRY * k++, &w->ws_sec);
	for (size_t i = 0; i < w->nsecs; i++)
		put_entry(t + SNAP_TABLE_ENTRY * k++, &w->secs[i]);
	put_entry(t + SNAP_TABLE_ENTRY * k++, &w->data_sec);
	put_entry(t + SNAP_TABLE_ENTRY * k++, &w->index_sec);

	uint8_t h[SNAP_HEADER_SIZE] = {0};
	memcpy(h + HO_MAGIC, SNAP_MAGIC, 8);
	put32(h + HO_VERSION, LT_SNAP_VERSION);
	put32(h + HO_HEADER_SIZE, SNAP_HEADER_SIZE);
	memcpy(h + HO_TEMPLATE, w->template_id, strlen(w->template_id));
	put64(h + HO_MEM_SIZE, w->mem_size);
	put32(h + HO_PAGE_SIZE, LT_SNAP_PAGE_SIZE);
	put32(h + HO_CHUNK_SIZE, w->chunk_size);
	put32(h + HO_FLAGS, w->has_ws ? SNAP_HF_WORKING_SET : 0);
	put32(h + HO_SECTION_COUNT, (uint32_t)count);
	put64(h + HO_TABLE_OFFSET, SNAP_HEADER_SIZE);
	put64(h + HO_FILE_SIZE, w->pos);
	put64(h + HO_CREATED, lt_wall_ns());
	put64(h + HO_TABLE_SUM, snap_sum(t, tlen));
	put64(h + HO_HEADER_SUM, snap_sum(h, HO_HEADER_SUM));
	int rc = pwrite_all(w->at.fd, t, tlen, SNAP_HEADER_SIZE);
	if (rc == 0)
		rc = pwrite_all(w->at.fd, h, sizeof(h), 0);
	free(t);
	return rc < 0 ? lt_fail_ctx("snapshot %s", w->path) : 0;
}

static int finish(struct lt_snap_writer *w)
{
	if (!w->mem_done && lt_snap_writer_add_memory(w, NULL, 0) < 0)
		return -1;
	if (w->failed)
		return lt_fail("snapshot %s: an earlier step failed", w->path);
	w->data_sec = (struct wsec){.type = LT_SNAP_SEC_MEM_DATA, .flags = SNAP_SF_CHUNKED,
				    .offset = w->data_off, .len = w->data_len};
	size_t ilen = 0;
	uint8_t *index = encode_index(w, &ilen);
	if (!index)
		return -1;
	w->index_sec = (struct wsec){.type = LT_SNAP_SEC_MEM_INDEX, .offset = w->pos, .len = ilen,
				     .sum = snap_sum(index, ilen)};
	int rc = write_at_end(w, index, ilen);
	free(index);
	if (rc == 0)
		rc = write_table_and_header(w);
	return rc;
}

static void writer_free(struct lt_snap_writer *w)
{
	for (size_t i = 0; i < w->nsecs; i++)
		free(w->secs[i].data);
	free(w->secs);
	free(w->ws);
	free(w->ws_sec.data);
	free(w->regions);
	free(w->chunks);
	free(w->entries);
	free(w->entry_host);
	free(w->chunk_first);
	free(w->path);
	free(w);
}

int lt_snap_writer_commit(struct lt_snap_writer *w, struct lt_snap_writer_stats *stats)
{
	int rc = finish(w);
	if (rc == 0) {
		rc = lt_atomic_commit(&w->at);
		if (rc < 0)
			lt_fail_ctx("snapshot %s", w->path);
	} else {
		lt_atomic_abort(&w->at);
	}
	w->st.file_size = w->pos;
	if (stats)
		*stats = w->st;
	writer_free(w);
	return rc;
}

void lt_snap_writer_abort(struct lt_snap_writer *w)
{
	if (!w)
		return;
	lt_atomic_abort(&w->at);
	writer_free(w);
}
