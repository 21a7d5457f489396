/* epoll loop (see ioloop.h). Handlers live in a small table keyed by fd;
 * a deleted handler is marked dead so events already fetched in the same
 * round never reach a freed owner. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util/util.h"
#include "vmm/ioloop.h"

struct handler {
	int fd;
	bool live;
	lt_io_cb cb;
	void *opaque;
};

struct lt_ioloop {
	int epfd;
	struct handler *h;
	size_t nh, cap;
};

struct lt_ioloop *lt_ioloop_new(void)
{
	struct lt_ioloop *l = lt_calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		lt_fail_errno("epoll_create1");
		free(l);
		return NULL;
	}
	return l;
}

void lt_ioloop_free(struct lt_ioloop *l)
{
	if (!l)
		return;
	close(l->epfd);
	free(l->h);
	free(l);
}

static struct handler *find(struct lt_ioloop *l, int fd)
{
	for (size_t i = 0; i < l->nh; i++)
		if (l->h[i].live && l->h[i].fd == fd)
			return &l->h[i];
	return NULL;
}

int lt_ioloop_add(struct lt_ioloop *l, int fd, uint32_t events, lt_io_cb cb, void *opaque)
{
	size_t slot = l->nh;
	for (size_t i = 0; i < l->nh; i++)
		if (!l->h[i].live) {
			slot = i;
			break;
		}
	if (slot == l->nh) {
		if (l->nh == l->cap) {
			size_t nc = l->cap ? l->cap * 2 : 16;
			struct handler *nh = lt_realloc(l->h, nc * sizeof(*nh));
			if (!nh)
				return -1;
			l->h = nh;
			l->cap = nc;
		}
		l->nh++;
	}
	struct epoll_event ev = {.events = events, .data.u64 = slot};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		if (slot == l->nh - 1)
			l->nh--;
		return lt_fail_errno("epoll_ctl add fd %d", fd);
	}
	l->h[slot] = (struct handler){fd, true, cb, opaque};
	return 0;
}

int lt_ioloop_mod(struct lt_ioloop *l, int fd, uint32_t events)
{
	struct handler *h = find(l, fd);
	if (!h)
		return lt_fail("ioloop: fd %d not registered", fd);
	struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)(h - l->h)};
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return lt_fail_errno("epoll_ctl mod fd %d", fd);
	return 0;
}

void lt_ioloop_del(struct lt_ioloop *l, int fd)
{
	struct handler *h = find(l, fd);
	if (!h)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	h->live = false;
}

int lt_ioloop_poll(struct lt_ioloop *l, int timeout_ms)
{
	struct epoll_event evs[32];
	int n = epoll_wait(l->epfd, evs, 32, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return lt_fail_errno("epoll_wait");
	}
	for (int i = 0; i < n; i++) {
		size_t slot = evs[i].data.u64;
		if (slot >= l->nh || !l->h[slot].live)
			continue;
		struct handler h = l->h[slot];
		h.cb(h.opaque, h.fd, evs[i].events);
	}
	return n;
}
