/* The event loop: level-triggered epoll, the clock's timers and a queue of
 * posts other threads hand in through an eventfd. */
#include "proxy.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256

struct post {
	struct post *next;
	void (*fn)(void *arg);
	void *arg;
};

struct lt_loop {
	struct lt_clock clock; /* first: clock callbacks cast back */
	int epfd;
	int evfd;
	uint64_t now;
	bool stop;
	pthread_mutex_t lock;
	struct post *posts, **posts_tail;
	bool stop_req; /* under lock */
	/* the batch being dispatched, so lt_watch_del can drop stale events */
	struct epoll_event *batch;
	int batch_n;
};

static uint64_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t loop_clock_now(struct lt_clock *c)
{
	/* Timers are armed relative to real time, not the cached wakeup. */
	(void)c;
	return mono_now();
}

struct lt_loop *lt_loop_new(void)
{
	struct lt_loop *l = lt_calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->clock.now = loop_clock_now;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		lt_fail_errno("epoll_create1");
		free(l);
		return NULL;
	}
	l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->evfd < 0) {
		lt_fail_errno("eventfd");
		close(l->epfd);
		free(l);
		return NULL;
	}
	/* data.ptr NULL marks the post eventfd */
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0) {
		lt_fail_errno("epoll_ctl(eventfd)");
		close(l->evfd);
		close(l->epfd);
		free(l);
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	l->posts_tail = &l->posts;
	l->now = mono_now();
	return l;
}

void lt_loop_free(struct lt_loop *l)
{
	if (!l)
		return;
	struct post *p = l->posts;
	while (p) {
		struct post *n = p->next;
		free(p);
		p = n;
	}
	close(l->evfd);
	close(l->epfd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

struct lt_clock *lt_loop_clock(struct lt_loop *l)
{
	return &l->clock;
}

uint64_t lt_loop_now(struct lt_loop *l)
{
	return l->now;
}

int lt_loop_fd(struct lt_loop *l)
{
	return l->epfd;
}

int lt_watch_add(struct lt_loop *l, struct lt_watch *w, int fd, uint32_t events,
		 lt_watch_fn fn)
{
	w->fd = fd;
	w->events = events;
	w->fn = fn;
	w->loop = l;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		w->loop = NULL;
		return lt_fail_errno("epoll_ctl(ADD fd %d)", fd);
	}
	return 0;
}

int lt_watch_mod(struct lt_watch *w, uint32_t events)
{
	if (!w->loop)
		return lt_fail("watch is not registered");
	if (events == w->events)
		return 0;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	if (epoll_ctl(w->loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return lt_fail_errno("epoll_ctl(MOD fd %d)", w->fd);
	w->events = events;
	return 0;
}

void lt_watch_del(struct lt_watch *w)
{
	struct lt_loop *l = w->loop;
	if (!l)
		return;
	/* Fails only if the fd was closed already, which drops it anyway. */
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	for (int i = 0; i < l->batch_n; i++)
		if (l->batch[i].data.ptr == w)
			l->batch[i].data.ptr = NULL, l->batch[i].events = 0;
	w->loop = NULL;
}

int lt_loop_post(struct lt_loop *l, void (*fn)(void *arg), void *arg)
{
	struct post *p = malloc(sizeof(*p));
	if (!p)
		return lt_fail("out of memory posting to the loop");
	p->next = NULL;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&l->lock);
	*l->posts_tail = p;
	l->posts_tail = &p->next;
	pthread_mutex_unlock(&l->lock);
	uint64_t one = 1;
	/* EAGAIN means the counter is already non-zero: the loop will wake. */
	if (write(l->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		lt_warn("loop: eventfd write: %s", strerror(errno));
	return 0;
}

void lt_loop_stop(struct lt_loop *l)
{
	pthread_mutex_lock(&l->lock);
	l->stop_req = true;
	pthread_mutex_unlock(&l->lock);
	uint64_t one = 1;
	if (write(l->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		lt_warn("loop: eventfd write: %s", strerror(errno));
}

static int run_posts(struct lt_loop *l)
{
	uint64_t v;
	if (read(l->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		lt_warn("loop: eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&l->lock);
	struct post *p = l->posts;
	l->posts = NULL;
	l->posts_tail = &l->posts;
	if (l->stop_req) {
		l->stop = true;
		l->stop_req = false;
	}
	pthread_mutex_unlock(&l->lock);
	int n = 0;
	while (p) {
		struct post *next = p->next;
		p->fn(p->arg);
		free(p);
		p = next;
		n++;
	}
	return n;
}

int lt_loop_timeout_ms(struct lt_loop *l)
{
	uint64_t next = lt_clock_next(&l->clock);
	if (next == UINT64_MAX)
		return -1;
	uint64_t now = mono_now();
	if (next <= now)
		return 0;
	uint64_t ms = (next - now + 999999) / 1000000;
	return ms > 60000 ? 60000 : (int)ms;
}

int lt_loop_run_once(struct lt_loop *l, int max_wait_ms)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];
	int wait = lt_loop_timeout_ms(l);
	if (max_wait_ms >= 0 && (wait < 0 || wait > max_wait_ms))
		wait = max_wait_ms;
	int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, wait);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return lt_fail_errno("epoll_wait");
	}
	l->now = mono_now();
	int handled = 0;
	l->batch = evs;
	l->batch_n = n;
	for (int i = 0; i < n; i++) {
		struct lt_watch *w = evs[i].data.ptr;
		if (!w) {
			if (evs[i].events) /* eventfd (or an event dropped by del) */
				handled += run_posts(l);
			continue;
		}
		w->fn(w, evs[i].events);
		handled++;
	}
	l->batch = NULL;
	l->batch_n = 0;
	handled += (int)lt_clock_run(&l->clock, mono_now());
	return handled;
}

int lt_loop_run(struct lt_loop *l)
{
	while (!l->stop) {
		if (lt_loop_run_once(l, -1) < 0)
			return -1;
	}
	l->stop = false;
	return 0;
}
