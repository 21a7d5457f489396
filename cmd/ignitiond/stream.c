/* Cross-thread plumbing: streams (writer thread -> HTTP response thread),
 * the events hub, and dmn_call (API thread -> loop thread). */
#include <errno.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"

/* ---- streams ------------------------------------------------------------ */

struct dmn_stream {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int refs;
	struct lt_buf buf;
	size_t off; /* read position in buf */
	size_t limit;
	bool closed, detached, overflow;
};

struct dmn_stream *dmn_stream_new(size_t limit)
{
	struct dmn_stream *s = lt_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->refs = 1;
	s->limit = limit ? limit : (1u << 20);
	return s;
}

void dmn_stream_ref(struct dmn_stream *s)
{
	pthread_mutex_lock(&s->lock);
	s->refs++;
	pthread_mutex_unlock(&s->lock);
}

void dmn_stream_unref(struct dmn_stream *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&s->lock);
	if (!last)
		return;
	lt_buf_free(&s->buf);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int dmn_stream_write(struct dmn_stream *s, const void *data, size_t n)
{
	int rc = 0;
	pthread_mutex_lock(&s->lock);
	if (s->detached || s->closed) {
		rc = -1;
	} else if (s->buf.len - s->off + n > s->limit) {
		/* a reader this far behind is gone or stuck: end its stream */
		s->overflow = true;
		s->closed = true;
		rc = -1;
	} else {
		if (s->off && s->off == s->buf.len) {
			s->buf.len = 0;
			s->off = 0;
		}
		rc = lt_buf_append(&s->buf, data, n);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int dmn_stream_printf(struct dmn_stream *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *str = NULL;
	int n = vasprintf(&str, fmt, ap);
	va_end(ap);
	if (n < 0)
		return lt_fail("out of memory");
	int rc = dmn_stream_write(s, str, (size_t)n);
	free(str);
	return rc;
}

int dmn_stream_json(struct dmn_stream *s, json_t *j)
{
	if (!j)
		return -1;
	char *str = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!str)
		return -1;
	int rc = dmn_stream_printf(s, "%s\n", str);
	free(str);
	return rc;
}

void dmn_stream_close(struct dmn_stream *s)
{
	pthread_mutex_lock(&s->lock);
	s->closed = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

void dmn_stream_detach(struct dmn_stream *s)
{
	pthread_mutex_lock(&s->lock);
	s->detached = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
}

bool dmn_stream_detached(struct dmn_stream *s)
{
	pthread_mutex_lock(&s->lock);
	bool d = s->detached || s->closed;
	pthread_mutex_unlock(&s->lock);
	return d;
}

ssize_t dmn_stream_read(struct dmn_stream *s, char *buf, size_t max, int timeout_ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	while (s->off == s->buf.len && !s->closed && !s->detached) {
		if (pthread_cond_timedwait(&s->cv, &s->lock, &dl) == ETIMEDOUT)
			break;
	}
	ssize_t n;
	if (s->off < s->buf.len && !s->detached) {
		size_t avail = s->buf.len - s->off;
		n = (ssize_t)(avail < max ? avail : max);
		memcpy(buf, s->buf.data + s->off, (size_t)n);
		s->off += (size_t)n;
	} else if (s->closed || s->detached) {
		n = -1;
	} else {
		n = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- events hub ---------------------------------------------------------- */

struct dmn_sub {
	struct dmn_sub *next;
	struct dmn_stream *s;
};

void dmn_events_init(struct dmn *d)
{
	pthread_mutex_init(&d->ev_lock, NULL);
}

void dmn_events_fini(struct dmn *d)
{
	pthread_mutex_lock(&d->ev_lock);
	while (d->subs) {
		struct dmn_sub *x = d->subs;
		d->subs = x->next;
		dmn_stream_close(x->s);
		dmn_stream_unref(x->s);
		free(x);
	}
	pthread_mutex_unlock(&d->ev_lock);
	pthread_mutex_destroy(&d->ev_lock);
}

int dmn_events_subscribe(struct dmn *d, struct dmn_stream *s)
{
	struct dmn_sub *x = lt_calloc(1, sizeof(*x));
	if (!x)
		return -1;
	dmn_stream_ref(s);
	x->s = s;
	pthread_mutex_lock(&d->ev_lock);
	x->next = d->subs;
	d->subs = x;
	pthread_mutex_unlock(&d->ev_lock);
	return 0;
}

void dmn_events_publish(struct dmn *d, const char *kind, json_t *data)
{
	if (!data)
		return;
	pthread_mutex_lock(&d->ev_lock);
	json_object_set_new(data, "seq", json_integer((json_int_t)++d->ev_seq));
	json_object_set_new(data, "time", json_integer((json_int_t)(lt_wall_ns() / 1000000)));
	char *str = json_dumps(data, JSON_COMPACT);
	json_decref(data);
	for (struct dmn_sub **pp = &d->subs; *pp;) {
		struct dmn_sub *x = *pp;
		if (!str ||
		    dmn_stream_printf(x->s, "event: %s\ndata: %s\n\n", kind, str) < 0) {
			/* gone or too slow: drop it (its reader sees the end) */
			*pp = x->next;
			dmn_stream_close(x->s);
			dmn_stream_unref(x->s);
			free(x);
			continue;
		}
		pp = &x->next;
	}
	pthread_mutex_unlock(&d->ev_lock);
	free(str);
}

/* ---- dmn_call ------------------------------------------------------------ */

struct call {
	void (*fn)(void *arg);
	void *arg;
	sem_t done;
	atomic_int state; /* 0 queued, 1 running/ran, 2 abandoned */
};

static void call_run(void *p)
{
	struct call *c = p;
	int expect = 0;
	/* the caller gave up (daemon stopping): c is still valid, its fn is
	 * not run, and the caller frees c once it sees the post ran */
	if (!atomic_compare_exchange_strong(&c->state, &expect, 1)) {
		sem_post(&c->done);
		return;
	}
	c->fn(c->arg);
	sem_post(&c->done);
}

int dmn_call(struct dmn *d, void (*fn)(void *arg), void *arg)
{
	if (atomic_load(&d->loop_dead))
		return lt_fail("ignitiond is shutting down");
	struct call c = {.fn = fn, .arg = arg};
	sem_init(&c.done, 0, 0);
	atomic_init(&c.state, 0);
	if (lt_loop_post(d->loop, call_run, &c) < 0) {
		sem_destroy(&c.done);
		return -1;
	}
	for (;;) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (sem_timedwait(&c.done, &ts) == 0)
			break;
		if (!atomic_load(&d->loop_dead))
			continue;
		/* the loop is gone for good and no post runs any more */
		int expect = 0;
		if (atomic_compare_exchange_strong(&c.state, &expect, 2)) {
			sem_destroy(&c.done);
			return lt_fail("ignitiond is shutting down");
		}
	}
	sem_destroy(&c.done);
	return 0;
}
