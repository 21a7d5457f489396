/* The forwarder: one proxied connection = two directions, each a pipe
 * between a source and a destination socket, moved with splice(2) so the
 * payload never enters user space.
 *
 * Level-triggered epoll. A direction reads its source only when its pipe is
 * empty (the pipe is the bounded per-direction buffer) and reads once per
 * wakeup (epoll says again if more is queued), then splices the pipe out
 * straight away; so a request/response exchange costs two splices per
 * message and no epoll_ctl. Interest is recomputed after each pump and
 * changed only when it differs: EPOLLIN while the pipe is empty, EPOLLOUT
 * only while the destination refused data.
 *
 * A source that reports HUP while nothing is wanted from it is taken off
 * epoll ("parked"): HUP is level-triggered and would spin; its remaining
 * data is read directly when the pipe has room, as that never blocks.
 */
#include "proxy_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_CACHE_MAX 128

struct pipe_pair {
	int r, w;
};

struct lt_forwarder {
	struct lt_loop *loop;
	struct lt_fwd_limits lim;
	size_t pipe_cap;
	struct pipe_pair cache[PIPE_CACHE_MAX];
	int ncache;
	struct lt_list conns;
	uint32_t active;
	uint64_t total;
};

struct dir {
	int src, dst;
	struct pipe_pair p;
	size_t inpipe;
	bool eof;      /* source said EOF */
	bool shut;     /* destination shut down for writing */
	bool blocked;  /* destination refused data */
	uint64_t blocked_since;
	const uint8_t *prefix;
	size_t prefix_left;
};

struct lt_fwd {
	struct lt_list link;
	struct lt_forwarder *fw;
	struct lt_watch w[2]; /* [0] client, [1] upstream */
	int fd[2];
	bool parked[2];
	bool hup[2];
	struct dir d[2]; /* [0] client -> upstream, [1] upstream -> client */
	struct lt_timer timer;
	uint64_t last_activity;
	lt_fwd_done done;
	void *ctx;
	uint8_t *prefix_buf;
	struct lt_fwd_stats st;
	bool finished;
};

void lt_fwd_limits_defaults(struct lt_fwd_limits *l)
{
	*l = (struct lt_fwd_limits){
		.pipe_size = 0,
		.idle_timeout = LT_SEC(600),
		.stall_timeout = LT_SEC(30),
		.max_conns = 16384,
	};
}

/* ---- pipes ---------------------------------------------------------------- */

static int pipe_get(struct lt_forwarder *fw, struct pipe_pair *pp)
{
	if (fw->ncache > 0) {
		*pp = fw->cache[--fw->ncache];
		return 0;
	}
	int fds[2];
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return lt_fail_errno("pipe2");
	if (fw->lim.pipe_size && fcntl(fds[0], F_SETPIPE_SZ, (int)fw->lim.pipe_size) < 0)
		lt_debug("proxy: F_SETPIPE_SZ %zu: %s (keeping the default)", fw->lim.pipe_size,
			 strerror(errno));
	pp->r = fds[0];
	pp->w = fds[1];
	return 0;
}

/* Only an empty pipe may be reused; anything else is closed. */
static void pipe_put(struct lt_forwarder *fw, struct pipe_pair *pp, bool empty)
{
	if (pp->r < 0)
		return;
	if (empty && fw->ncache < PIPE_CACHE_MAX) {
		fw->cache[fw->ncache++] = *pp;
	} else {
		close(pp->r);
		close(pp->w);
	}
	pp->r = pp->w = -1;
}

/* ---- forwarder -------------------------------------------------------------- */

struct lt_forwarder *lt_forwarder_new(struct lt_loop *loop, const struct lt_fwd_limits *lim)
{
	struct lt_forwarder *fw = lt_calloc(1, sizeof(*fw));
	if (!fw)
		return NULL;
	fw->loop = loop;
	if (lim)
		fw->lim = *lim;
	else
		lt_fwd_limits_defaults(&fw->lim);
	list_init(&fw->conns);
	/* Learn the real capacity once: it bounds each read. */
	struct pipe_pair pp;
	if (pipe_get(fw, &pp) < 0) {
		free(fw);
		return NULL;
	}
	int cap = fcntl(pp.r, F_GETPIPE_SZ);
	fw->pipe_cap = cap > 0 ? (size_t)cap : 65536;
	pipe_put(fw, &pp, true);
	return fw;
}

static void fwd_finish(struct lt_fwd *f, const char *why, int reset_side);

void lt_forwarder_free(struct lt_forwarder *fw)
{
	if (!fw)
		return;
	while (!list_empty(&fw->conns))
		fwd_finish(list_entry(fw->conns.next, struct lt_fwd, link), "forwarder closed",
			   0);
	for (int k = 0; k < fw->ncache; k++) {
		close(fw->cache[k].r);
		close(fw->cache[k].w);
	}
	free(fw);
}

uint32_t lt_forwarder_active(const struct lt_forwarder *fw)
{
	return fw->active;
}

uint64_t lt_forwarder_total(const struct lt_forwarder *fw)
{
	return fw->total;
}

/* ---- one connection ------------------------------------------------------------ */

static void set_linger0(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* reset_side: -1 none, 0 client, 1 upstream, 2 both get RST. */
static void fwd_finish(struct lt_fwd *f, const char *why, int reset_side)
{
	if (f->finished)
		return;
	f->finished = true;
	struct lt_forwarder *fw = f->fw;
	lt_timer_cancel(lt_loop_clock(fw->loop), &f->timer);
	for (int k = 0; k < 2; k++) {
		if (!f->parked[k])
			lt_watch_del(&f->w[k]);
		if (reset_side == k || reset_side == 2)
			set_linger0(f->fd[k]);
		close(f->fd[k]);
	}
	for (int k = 0; k < 2; k++)
		pipe_put(fw, &f->d[k].p, f->d[k].inpipe == 0 && !why);
	list_del(&f->link);
	fw->active--;
	free(f->prefix_buf);
	lt_fwd_done done = f->done;
	void *ctx = f->ctx;
	struct lt_fwd_stats st = f->st;
	free(f);
	done(ctx, &st, why);
}

static void arm_timer(struct lt_fwd *f)
{
	struct lt_forwarder *fw = f->fw;
	uint64_t when = UINT64_MAX;
	if (fw->lim.idle_timeout)
		when = f->last_activity + fw->lim.idle_timeout;
	for (int k = 0; k < 2; k++)
		if (f->d[k].blocked && fw->lim.stall_timeout &&
		    f->d[k].blocked_since + fw->lim.stall_timeout < when)
			when = f->d[k].blocked_since + fw->lim.stall_timeout;
	struct lt_clock *c = lt_loop_clock(fw->loop);
	if (when == UINT64_MAX)
		lt_timer_cancel(c, &f->timer);
	else if (!lt_timer_armed(&f->timer) || when < f->timer.when)
		lt_timer_arm(c, &f->timer, when);
}

/* Deadlines move lazily: the timer checks the real ones when it fires. */
static void timer_fired(struct lt_timer *t)
{
	struct lt_fwd *f = list_entry(t, struct lt_fwd, timer);
	struct lt_forwarder *fw = f->fw;
	uint64_t now = lt_clock_now(lt_loop_clock(fw->loop));
	for (int k = 0; k < 2; k++) {
		if (f->d[k].blocked && fw->lim.stall_timeout &&
		    now >= f->d[k].blocked_since + fw->lim.stall_timeout) {
			fwd_finish(f,
				   k == 0 ? "upstream stalled: buffered data not accepted"
					  : "client stalled: buffered data not accepted",
				   2);
			return;
		}
	}
	if (fw->lim.idle_timeout && now >= f->last_activity + fw->lim.idle_timeout) {
		fwd_finish(f, "idle timeout", 2);
		return;
	}
	arm_timer(f);
}

static void mark_blocked(struct dir *d, uint64_t now)
{
	if (!d->blocked) {
		d->blocked = true;
		d->blocked_since = now;
	}
}

/* Moves what it can in one direction. Returns 0, or -1 with *why set
 * (and *blame: 0 source side, 1 destination side). */
static int pump_dir(struct lt_fwd *f, struct dir *d, bool src_ready, bool *progress,
		    const char **why, int *blame)
{
	uint64_t now = lt_loop_now(f->fw->loop);
	for (;;) {
		if (d->inpipe > 0) {
			if (d->blocked)
				return 0;
			ssize_t n = splice(d->p.r, NULL, d->dst, NULL, d->inpipe,
					   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n < 0) {
				if (errno == EAGAIN) {
					mark_blocked(d, now);
					return 0;
				}
				if (errno == EINTR)
					continue;
				*why = strerror(errno);
				*blame = 1;
				return -1;
			}
			d->inpipe -= (size_t)n;
			if (d == &f->d[0])
				f->st.bytes_up += (uint64_t)n;
			else
				f->st.bytes_down += (uint64_t)n;
			*progress = true;
			if (d->inpipe > 0) { /* socket buffer full */
				mark_blocked(d, now);
				return 0;
			}
			continue;
		}
		if (d->prefix_left) {
			ssize_t n = write(d->p.w, d->prefix, d->prefix_left);
			if (n <= 0) {
				*why = n < 0 ? strerror(errno) : "pipe write failed";
				*blame = 0;
				return -1;
			}
			d->prefix += n;
			d->prefix_left -= (size_t)n;
			d->inpipe += (size_t)n;
			continue;
		}
		if (d->eof) {
			if (!d->shut) {
				d->shut = true;
				/* ENOTCONN: the peer is gone already; nothing to tell */
				if (shutdown(d->dst, SHUT_WR) < 0 && errno != ENOTCONN) {
					*why = strerror(errno);
					*blame = 1;
					return -1;
				}
			}
			return 0;
		}
		if (!src_ready)
			return 0;
		src_ready = false; /* one read per wakeup; epoll repeats if more */
		ssize_t n = splice(d->src, NULL, d->p.w, NULL, f->fw->pipe_cap,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR) {
				src_ready = true;
				continue;
			}
			*why = strerror(errno);
			*blame = 0;
			return -1;
		}
		*progress = true;
		if (n == 0)
			d->eof = true;
		else
			d->inpipe = (size_t)n;
	}
}

static bool dir_done(const struct dir *d)
{
	return d->eof && d->inpipe == 0 && d->shut;
}

static uint32_t want_events(struct lt_fwd *f, int k)
{
	/* fd k is the source of d[k] and the destination of d[1-k] */
	const struct dir *in = &f->d[k], *out = &f->d[1 - k];
	uint32_t ev = 0;
	if (!in->eof && in->inpipe == 0 && in->prefix_left == 0)
		ev |= EPOLLIN;
	if (out->inpipe > 0 && out->blocked)
		ev |= EPOLLOUT;
	return ev;
}

/* One round over both directions; returns true to go again (a parked
 * source may have more to give), false when done or finished. */
static bool pump_round(struct lt_fwd *f, const uint32_t ev[2])
{
	bool progress = false;
	const char *why = NULL;
	int blame = 0;
	for (int k = 0; k < 2; k++) {
		if (ev[k] & EPOLLERR) {
			/* a socket error (a reset) is terminal: end now, even if
			 * nothing is moving that would notice it */
			int err = 0;
			socklen_t l = sizeof(err);
			getsockopt(f->fd[k], SOL_SOCKET, SO_ERROR, &err, &l);
			char msg[160];
			snprintf(msg, sizeof(msg), "%s %s", k == 0 ? "client:" : "upstream:",
				 strerror(err ? err : ECONNRESET));
			fwd_finish(f, msg, 1 - k);
			return false;
		}
		if (ev[k] & EPOLLHUP)
			f->hup[k] = true;
		if (ev[k] & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			f->d[1 - k].blocked = false; /* try writing to fd k again */
	}
	for (int k = 0; k < 2; k++) {
		bool src_ready = f->parked[k] || (ev[k] & (EPOLLIN | EPOLLHUP | EPOLLERR));
		if (pump_dir(f, &f->d[k], src_ready, &progress, &why, &blame) < 0) {
			/* a failure on one side resets the other */
			int side = blame == 0 ? k : 1 - k;
			char msg[160];
			snprintf(msg, sizeof(msg), "%s %s", side == 0 ? "client:" : "upstream:",
				 why);
			fwd_finish(f, msg, 1 - side);
			return false;
		}
	}
	if (progress)
		f->last_activity = lt_loop_now(f->fw->loop);
	if (dir_done(&f->d[0]) && dir_done(&f->d[1])) {
		fwd_finish(f, NULL, -1);
		return false;
	}
	for (int k = 0; k < 2; k++) {
		if (f->parked[k])
			continue;
		uint32_t want = want_events(f, k);
		if (f->hup[k] && want == 0) {
			lt_watch_del(&f->w[k]);
			f->parked[k] = true;
			continue;
		}
		if (lt_watch_mod(&f->w[k], want) < 0) {
			fwd_finish(f, lt_errmsg(), 2);
			return false;
		}
	}
	/* Parked sources are read without epoll: go on while they give. */
	for (int k = 0; k < 2; k++)
		if (f->parked[k] && !f->d[k].eof && f->d[k].inpipe == 0 && progress)
			return true;
	arm_timer(f);
	return false;
}

static void pump(struct lt_fwd *f, const uint32_t ev[2])
{
	static const uint32_t none[2] = {0, 0};
	if (pump_round(f, ev))
		while (pump_round(f, none))
			;
}

static void on_client(struct lt_watch *w, uint32_t events)
{
	struct lt_fwd *f = list_entry(w, struct lt_fwd, w[0]);
	uint32_t ev[2] = {events, 0};
	pump(f, ev);
}

static void on_upstream(struct lt_watch *w, uint32_t events)
{
	struct lt_fwd *f = list_entry(w, struct lt_fwd, w[1]);
	uint32_t ev[2] = {0, events};
	pump(f, ev);
}

static void set_nodelay(int fd)
{
	int one = 1;
	/* fails harmlessly on unix sockets */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct lt_fwd *lt_fwd_start(struct lt_forwarder *fw, int client, int upstream,
			    const void *prefix, size_t prefix_len, lt_fwd_done done, void *ctx)
{
	if (fw->lim.max_conns && fw->active >= fw->lim.max_conns) {
		lt_fail("too many forwarded connections (%u)", fw->active);
		return NULL;
	}
	struct lt_fwd *f = lt_calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->fw = fw;
	f->fd[0] = client;
	f->fd[1] = upstream;
	f->done = done;
	f->ctx = ctx;
	f->d[0] = (struct dir){.src = client, .dst = upstream, .p = {-1, -1}};
	f->d[1] = (struct dir){.src = upstream, .dst = client, .p = {-1, -1}};
	if (prefix_len) {
		f->prefix_buf = lt_malloc(prefix_len);
		if (!f->prefix_buf)
			goto fail;
		memcpy(f->prefix_buf, prefix, prefix_len);
		f->d[0].prefix = f->prefix_buf;
		f->d[0].prefix_left = prefix_len;
	}
	if (pipe_get(fw, &f->d[0].p) < 0 || pipe_get(fw, &f->d[1].p) < 0)
		goto fail;
	set_nodelay(client);
	set_nodelay(upstream);
	f->last_activity = lt_loop_now(fw->loop);
	f->st.started = f->last_activity;
	lt_timer_init(&f->timer, timer_fired);
	/* With a prefix the first thing to do is write upstream. */
	uint32_t ev_up = prefix_len ? EPOLLOUT : EPOLLIN;
	if (lt_watch_add(fw->loop, &f->w[0], client, prefix_len ? 0 : EPOLLIN, on_client) < 0)
		goto fail;
	if (lt_watch_add(fw->loop, &f->w[1], upstream, ev_up, on_upstream) < 0) {
		lt_watch_del(&f->w[0]);
		goto fail;
	}
	list_add_tail(&fw->conns, &f->link);
	fw->active++;
	fw->total++;
	arm_timer(f);
	return f;
fail:
	pipe_put(fw, &f->d[0].p, true);
	pipe_put(fw, &f->d[1].p, true);
	free(f->prefix_buf);
	free(f);
	return NULL;
}

void lt_fwd_abort(struct lt_fwd *f, bool reset, const char *why)
{
	fwd_finish(f, why ? why : "aborted", reset ? 0 : -1);
}
