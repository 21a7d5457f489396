/* Lazy restore: userfaultfd serves the first touch of each page. A fault in
 * stored memory installs the whole chunk holding it (every range the chunk
 * maps, UFFDIO_COPY); a fault in a hole maps zero pages (UFFDIO_ZEROPAGE).
 * A prefetch thread installs the working-set chunks meanwhile. Chunks are
 * claimed through a per-chunk state so each is decompressed once. */
#include "snap_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zstd.h>

#define ZERO_WINDOW (2u << 20) /* zero pages mapped per hole fault */
#define MSG_BATCH 16

enum { CH_NONE, CH_LOADING, CH_LOADED, CH_FAILED };

struct decoder {
	ZSTD_DCtx *d;
	uint8_t *cbuf, *out;
};

struct lt_snap_lazy {
	struct lt_snap *s;
	int uffd, stopfd;
	struct lt_snap_region *targets;
	size_t ntargets;
	uint8_t **hosts; /* per entry */
	struct lt_snap_lazy_opts opts;
	uint64_t t0;

	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint8_t *state; /* per chunk */
	uint32_t *touched;
	uint64_t *touched_ns;
	size_t ntouched;
	struct lt_snap_lazy_stats st;
	bool stopping, failed_reported;

	pthread_t handler[SNAP_MAX_THREADS], prefetcher;
	int nhandlers;
	bool prefetch_running;
};

static int decoder_init(struct decoder *dc, const struct lt_snap *s)
{
	dc->d = ZSTD_createDCtx();
	dc->cbuf = lt_malloc(s->max_clen ? s->max_clen : 1);
	dc->out = lt_malloc(s->chunk_size);
	if (!dc->d || !dc->cbuf || !dc->out)
		return lt_fail("out of memory for the lazy restore decoder");
	return 0;
}

static void decoder_free(struct decoder *dc)
{
	ZSTD_freeDCtx(dc->d);
	free(dc->cbuf);
	free(dc->out);
}

static void report_failure(struct lt_snap_lazy *l)
{
	pthread_mutex_lock(&l->lock);
	bool first = !l->failed_reported;
	l->failed_reported = true;
	l->st.failed = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->lock);
	if (!first)
		return;
	if (l->opts.on_error) {
		l->opts.on_error(l->opts.arg, lt_errmsg());
		return;
	}
	lt_error("lazy restore of %s failed, guest memory cannot be served: %s", l->s->name,
		 lt_errmsg());
	_exit(70);
}

/* UFFDIO_COPY, stepping over pages that are already present. */
static int uffd_copy(int uffd, uint8_t *dst, const uint8_t *src, size_t len)
{
	size_t done = 0;
	while (done < len) {
		struct uffdio_copy c = {.dst = (uintptr_t)(dst + done),
					.src = (uintptr_t)(src + done),
					.len = len - done};
		if (ioctl(uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		int err = errno;
		if (c.copy > 0)
			done += (size_t)c.copy;
		if (err == EEXIST)
			done += LT_SNAP_PAGE_SIZE;
		else if (err != EAGAIN && err != EINTR)
			return lt_fail("UFFDIO_COPY at %p: %s", (void *)(dst + done), strerror(err));
	}
	return 0;
}

static int uffd_wake(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = {.start = addr, .len = len};
	if (ioctl(uffd, UFFDIO_WAKE, &r) < 0)
		return lt_fail_errno("UFFDIO_WAKE");
	return 0;
}

/* Installs chunk c unless someone else has; returns 1 if it did. The
 * claim is counted (and a fault's touch logged) before the copy wakes the
 * faulting thread, so whoever was woken sees the stats already. */
static int install_chunk(struct lt_snap_lazy *l, uint32_t c, struct decoder *dc, bool fault)
{
	struct lt_snap *s = l->s;
	pthread_mutex_lock(&l->lock);
	while (l->state[c] == CH_LOADING)
		pthread_cond_wait(&l->cv, &l->lock);
	uint8_t st = l->state[c];
	if (st == CH_NONE) {
		l->state[c] = CH_LOADING;
		if (fault) {
			l->st.chunks_faulted++;
			l->touched[l->ntouched] = c;
			l->touched_ns[l->ntouched++] = lt_now_ns() - l->t0;
		} else {
			l->st.chunks_prefetched++;
		}
	}
	pthread_mutex_unlock(&l->lock);
	if (st == CH_FAILED)
		return lt_fail("%s: chunk %u failed earlier", s->name, c);
	if (st == CH_LOADED)
		return 0;
	int rc = snap_decode_chunk(s, c, dc->cbuf, dc->out, dc->d);
	for (uint32_t k = s->chunk_first[c]; rc == 0 && k < s->chunk_first[c + 1]; k++) {
		uint32_t e = s->by_chunk[k];
		rc = uffd_copy(l->uffd, l->hosts[e],
			       dc->out + (size_t)s->entries[e].poff * LT_SNAP_PAGE_SIZE,
			       (size_t)s->entries[e].count * LT_SNAP_PAGE_SIZE);
	}
	pthread_mutex_lock(&l->lock);
	l->state[c] = rc == 0 ? CH_LOADED : CH_FAILED;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->lock);
	return rc < 0 ? -1 : 1;
}

static const struct lt_snap_region *target_of(const struct lt_snap_lazy *l, uint64_t addr)
{
	for (size_t i = 0; i < l->ntargets; i++) {
		uint64_t h = (uintptr_t)l->targets[i].host;
		if (addr >= h && addr - h < l->targets[i].size)
			return &l->targets[i];
	}
	return NULL;
}

/* Index of the last entry starting at or before gpage, or -1. */
static ssize_t entry_at(const struct lt_snap *s, uint64_t gpage)
{
	size_t lo = 0, hi = s->nentries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->entries[mid].gpage <= gpage)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (ssize_t)lo - 1;
}

static int serve_hole(struct lt_snap_lazy *l, const struct lt_snap_region *t, uint64_t addr,
		      ssize_t prev)
{
	const struct lt_snap *s = l->s;
	uint64_t host0 = (uintptr_t)t->host;
	/* Hole bounds in guest addresses, clipped to the target and window. */
	uint64_t lo = prev >= 0 ? (s->entries[prev].gpage + s->entries[prev].count) *
				     LT_SNAP_PAGE_SIZE : 0;
	uint64_t hi = (size_t)(prev + 1) < s->nentries ?
			      s->entries[prev + 1].gpage * LT_SNAP_PAGE_SIZE : UINT64_MAX;
	uint64_t hole_lo = lo > t->gpa ? host0 + (lo - t->gpa) : host0;
	uint64_t hole_hi = hi < t->gpa + t->size ? host0 + (hi - t->gpa) : host0 + t->size;
	uint64_t start = addr & ~(uint64_t)(ZERO_WINDOW - 1), end = start + ZERO_WINDOW;
	if (start < hole_lo)
		start = hole_lo;
	if (end > hole_hi)
		end = hole_hi;
	struct uffdio_zeropage z = {.range = {.start = start, .len = end - start}};
	if (ioctl(l->uffd, UFFDIO_ZEROPAGE, &z) == 0)
		return 0;
	if (errno != EEXIST && errno != EAGAIN)
		return lt_fail_errno("UFFDIO_ZEROPAGE");
	z = (struct uffdio_zeropage){.range = {.start = addr, .len = LT_SNAP_PAGE_SIZE}};
	if (ioctl(l->uffd, UFFDIO_ZEROPAGE, &z) == 0)
		return 0;
	if (errno != EEXIST)
		return lt_fail_errno("UFFDIO_ZEROPAGE");
	return uffd_wake(l->uffd, addr, LT_SNAP_PAGE_SIZE);
}

static int serve_fault(struct lt_snap_lazy *l, uint64_t addr, struct decoder *dc)
{
	const struct lt_snap *s = l->s;
	addr &= ~(uint64_t)(LT_SNAP_PAGE_SIZE - 1);
	const struct lt_snap_region *t = target_of(l, addr);
	if (!t)
		return lt_fail("fault at 0x%llx outside the lazy restore targets",
			       (unsigned long long)addr);
	uint64_t gpage = (t->gpa + (addr - (uintptr_t)t->host)) / LT_SNAP_PAGE_SIZE;
	ssize_t e = entry_at(s, gpage);
	pthread_mutex_lock(&l->lock);
	l->st.faults++;
	pthread_mutex_unlock(&l->lock);
	if (e < 0 || gpage >= s->entries[e].gpage + s->entries[e].count) {
		pthread_mutex_lock(&l->lock);
		l->st.zero_fills++;
		pthread_mutex_unlock(&l->lock);
		return serve_hole(l, t, addr, e);
	}
	uint32_t c = s->entries[e].chunk;
	uint64_t t0 = lt_now_ns();
	int rc = install_chunk(l, c, dc, true);
	if (rc < 0)
		return -1;
	if (rc == 0) /* installed by the prefetcher: the copy woke most waiters */
		return uffd_wake(l->uffd, addr, LT_SNAP_PAGE_SIZE);
	pthread_mutex_lock(&l->lock);
	l->st.fault_ns += lt_now_ns() - t0;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static void *handler_main(void *arg)
{
	struct lt_snap_lazy *l = arg;
	struct decoder dc = {0};
	if (decoder_init(&dc, l->s) < 0) {
		report_failure(l);
		decoder_free(&dc);
		return NULL;
	}
	struct pollfd p[2] = {{.fd = l->uffd, .events = POLLIN}, {.fd = l->stopfd, .events = POLLIN}};
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			lt_fail_errno("poll on userfaultfd");
			report_failure(l);
			break;
		}
		if (p[1].revents)
			break;
		struct uffd_msg msg[MSG_BATCH];
		ssize_t r = read(l->uffd, msg, sizeof(msg));
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0) {
			lt_fail_errno("read from userfaultfd");
			report_failure(l);
			break;
		}
		int rc = 0;
		for (size_t i = 0; rc == 0 && i < (size_t)r / sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				rc = serve_fault(l, msg[i].arg.pagefault.address, &dc);
		if (rc < 0) {
			report_failure(l);
			break;
		}
	}
	decoder_free(&dc);
	return NULL;
}

static bool stopping(struct lt_snap_lazy *l)
{
	pthread_mutex_lock(&l->lock);
	bool s = l->stopping || l->st.failed;
	pthread_mutex_unlock(&l->lock);
	return s;
}

static void *prefetch_main(void *arg)
{
	struct lt_snap_lazy *l = arg;
	struct lt_snap *s = l->s;
	struct decoder dc = {0};
	int rc = decoder_init(&dc, s);
	size_t nws = l->opts.no_prefetch ? 0 : s->nws;
	for (size_t i = 0; rc >= 0 && i < nws && !stopping(l); i++)
		rc = install_chunk(l, s->ws[i], &dc, false);
	for (uint32_t c = 0; rc >= 0 && l->opts.fill_all && c < s->nchunks && !stopping(l); c++)
		rc = install_chunk(l, c, &dc, false);
	if (rc < 0)
		report_failure(l);
	decoder_free(&dc);
	return NULL;
}

static int open_uffd(void)
{
	/* Kernel-mode faults (KVM reading guest memory) need the fd without
	 * UFFD_USER_MODE_ONLY, which needs privilege: the syscall as root or
	 * with CAP_SYS_PTRACE, else /dev/userfaultfd if its mode allows. */
	/* LTTLE_UFFD_DEV=1 skips the syscall (tests the device path). */
	const char *dev_only = getenv("LTTLE_UFFD_DEV");
	int fd = -1, err = ENOSYS;
	if (!dev_only || strcmp(dev_only, "1") != 0) {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0)
			return fd;
		err = errno;
	}
#ifdef USERFAULTFD_IOC_NEW
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		err = errno;
		close(dev);
		if (fd >= 0)
			return fd;
	}
#endif
	errno = err;
	return lt_fail_errno("userfaultfd unavailable");
}

static int setup_uffd(struct lt_snap_lazy *l)
{
	if ((l->uffd = open_uffd()) < 0)
		return -1;
	struct uffdio_api api = {.api = UFFD_API};
	if (ioctl(l->uffd, UFFDIO_API, &api) < 0)
		return lt_fail_errno("UFFDIO_API");
	uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);
	for (size_t i = 0; i < l->ntargets; i++) {
		struct uffdio_register reg = {
			.range = {.start = (uintptr_t)l->targets[i].host, .len = l->targets[i].size},
			.mode = UFFDIO_REGISTER_MODE_MISSING};
		if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0)
			return lt_fail_errno("UFFDIO_REGISTER of %llu bytes at %p",
					     (unsigned long long)l->targets[i].size,
					     l->targets[i].host);
		if ((reg.ioctls & need) != need)
			return lt_fail("userfaultfd cannot copy into this memory (anonymous memory "
				       "needed)");
	}
	l->stopfd = eventfd(0, EFD_CLOEXEC);
	if (l->stopfd < 0)
		return lt_fail_errno("eventfd");
	return 0;
}

static int lazy_init(struct lt_snap_lazy *l, struct lt_snap *s,
		     const struct lt_snap_region *targets, size_t n)
{
	if (snap_resolve_targets(s, targets, n, &l->hosts) < 0)
		return -1;
	l->targets = lt_calloc(n ? n : 1, sizeof(*targets));
	l->state = lt_calloc(s->nchunks ? s->nchunks : 1, 1);
	l->touched = lt_calloc(s->nchunks ? s->nchunks : 1, sizeof(uint32_t));
	l->touched_ns = lt_calloc(s->nchunks ? s->nchunks : 1, sizeof(uint64_t));
	if (!l->targets || !l->state || !l->touched || !l->touched_ns)
		return -1;
	memcpy(l->targets, targets, n * sizeof(*targets));
	l->ntargets = n;
	return setup_uffd(l);
}

int lt_snap_lazy_start(struct lt_snap_lazy **out, struct lt_snap *s,
		       const struct lt_snap_region *targets, size_t n,
		       const struct lt_snap_lazy_opts *opts)
{
	*out = NULL;
	struct lt_snap_lazy *l = lt_calloc(1, sizeof(*l));
	if (!l)
		return -1;
	l->s = s;
	l->uffd = l->stopfd = -1;
	if (opts)
		l->opts = *opts;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cv, NULL);
	l->t0 = lt_now_ns();
	if (lazy_init(l, s, targets, n) < 0) {
		lt_fail_ctx("lazy restore of %s", s->name);
		lt_snap_lazy_stop(l);
		return -1;
	}
	int want_handlers = l->opts.handlers > 0 ? l->opts.handlers : 1, err = 0;
	if (want_handlers > SNAP_MAX_THREADS)
		want_handlers = SNAP_MAX_THREADS;
	while (err == 0 && l->nhandlers < want_handlers)
		if ((err = pthread_create(&l->handler[l->nhandlers], NULL, handler_main, l)) == 0)
			l->nhandlers++;
	bool want = (!l->opts.no_prefetch && s->nws) || l->opts.fill_all;
	if (err == 0 && want && (err = pthread_create(&l->prefetcher, NULL, prefetch_main, l)) == 0)
		l->prefetch_running = true;
	if (err) {
		errno = err;
		lt_fail_errno("lazy restore of %s: cannot start a thread", s->name);
		lt_snap_lazy_stop(l);
		return -1;
	}
	*out = l;
	return 0;
}

void lt_snap_lazy_stats(struct lt_snap_lazy *l, struct lt_snap_lazy_stats *st)
{
	pthread_mutex_lock(&l->lock);
	*st = l->st;
	pthread_mutex_unlock(&l->lock);
}

int lt_snap_lazy_touched(struct lt_snap_lazy *l, uint64_t max_ms, uint32_t **ids, size_t *n)
{
	pthread_mutex_lock(&l->lock);
	uint32_t *v = lt_calloc(l->ntouched ? l->ntouched : 1, sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; v && i < l->ntouched; i++)
		if (max_ms == 0 || l->touched_ns[i] <= max_ms * 1000000)
			v[k++] = l->touched[i];
	pthread_mutex_unlock(&l->lock);
	if (!v)
		return -1;
	*ids = v;
	*n = k;
	return 0;
}

void lt_snap_lazy_wait_prefetch(struct lt_snap_lazy *l)
{
	if (l->prefetch_running) {
		pthread_join(l->prefetcher, NULL);
		l->prefetch_running = false;
	}
}

void lt_snap_lazy_stop(struct lt_snap_lazy *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stopping = true;
	pthread_mutex_unlock(&l->lock);
	lt_snap_lazy_wait_prefetch(l);
	if (l->nhandlers) {
		/* The eventfd stays readable: every handler sees it and leaves. */
		uint64_t one = 1;
		if (write(l->stopfd, &one, sizeof(one)) != sizeof(one))
			lt_warn("lazy restore: cannot signal the fault handlers");
		for (int i = 0; i < l->nhandlers; i++)
			pthread_join(l->handler[i], NULL);
	}
	if (l->uffd >= 0) {
		for (size_t i = 0; i < l->ntargets; i++) {
			struct uffdio_range r = {.start = (uintptr_t)l->targets[i].host,
						 .len = l->targets[i].size};
			ioctl(l->uffd, UFFDIO_UNREGISTER, &r); /* best effort; close drops it too */
		}
		close(l->uffd);
	}
	if (l->stopfd >= 0)
		close(l->stopfd);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cv);
	free(l->hosts);
	free(l->targets);
	free(l->state);
	free(l->touched);
	free(l->touched_ns);
	free(l);
}
