/* A QMP client on the loop (see engine_qemu.h). QEMU is treated as an
 * untrusted peer: messages are bounded, typed and matched, and anything
 * unexpected closes the connection rather than being guessed at. */
#include "proxy/engine_qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct qmp_out {
	struct qmp_out *next;
	char *data;
	size_t len, off;
	int fd; /* sent with the first byte, then closed */
};

struct qmp_pending {
	struct qmp_pending *next;
	uint64_t id;
	lt_qmp_reply_fn fn;
	void *arg;
};

enum qmp_state { Q_GREETING, Q_NEGOTIATING, Q_READY, Q_CLOSED };

struct lt_qmp {
	struct lt_loop *loop;
	int fd;
	struct lt_watch w;
	struct lt_qmp_cbs cbs;
	void *ctx;
	enum qmp_state state;
	char *in;
	size_t in_len;
	struct qmp_out *out_head, **out_tail;
	struct qmp_pending *pend_head, **pend_tail;
	uint64_t next_id;
	char version[32];
	int busy;   /* inside the watch callback */
	bool freed; /* lt_qmp_free was called while busy */
};

static void out_free(struct qmp_out *o)
{
	if (o->fd >= 0)
		close(o->fd);
	free(o->data);
	free(o);
}

static void destroy(struct lt_qmp *q)
{
	struct qmp_out *o = q->out_head;
	while (o) {
		struct qmp_out *n = o->next;
		out_free(o);
		o = n;
	}
	struct qmp_pending *p = q->pend_head;
	while (p) {
		struct qmp_pending *n = p->next;
		free(p);
		p = n;
	}
	free(q->in);
	free(q);
}

static void drop_socket(struct lt_qmp *q)
{
	if (q->fd < 0)
		return;
	lt_watch_del(&q->w);
	close(q->fd);
	q->fd = -1;
}

void lt_qmp_free(struct lt_qmp *q)
{
	if (!q)
		return;
	drop_socket(q);
	if (q->busy) {
		q->freed = true;
		return;
	}
	destroy(q);
}

bool lt_qmp_ready(const struct lt_qmp *q)
{
	return q->state == Q_READY;
}

const char *lt_qmp_version(const struct lt_qmp *q)
{
	return q->version;
}

/* Watch for output only once QEMU has greeted us: nothing may precede
 * qmp_capabilities. */
static void update_watch(struct lt_qmp *q)
{
	if (q->fd < 0)
		return;
	uint32_t ev = EPOLLIN;
	if (q->out_head && q->state != Q_GREETING)
		ev |= EPOLLOUT;
	if (lt_watch_mod(&q->w, ev) < 0)
		lt_warn("qmp: %s", lt_errmsg());
}

static int enqueue(struct lt_qmp *q, const char *name, json_t *args, int pass_fd,
		   lt_qmp_reply_fn fn, void *arg)
{
	struct qmp_out *o = NULL;
	struct qmp_pending *p = NULL;
	json_t *msg = json_object();
	if (!msg || json_object_set_new(msg, "execute", json_string(name)) < 0 ||
	    (args && json_object_set(msg, "arguments", args) < 0) ||
	    json_object_set_new(msg, "id", json_integer((json_int_t)q->next_id)) < 0)
		goto oom;
	o = lt_calloc(1, sizeof(*o));
	p = lt_calloc(1, sizeof(*p));
	if (!o || !p)
		goto fail;
	o->fd = pass_fd;
	pass_fd = -1;
	char *s = json_dumps(msg, JSON_COMPACT);
	if (!s)
		goto oom;
	o->data = lt_sprintf("%s\n", s);
	free(s);
	if (!o->data)
		goto fail;
	o->len = strlen(o->data);
	p->id = q->next_id++;
	p->fn = fn;
	p->arg = arg;
	*q->out_tail = o;
	q->out_tail = &o->next;
	*q->pend_tail = p;
	q->pend_tail = &p->next;
	json_decref(msg);
	json_decref(args);
	update_watch(q);
	return 0;
oom:
	lt_fail("qmp %s: out of memory", name);
fail:
	if (o)
		out_free(o);
	free(p);
	if (pass_fd >= 0)
		close(pass_fd);
	json_decref(msg);
	json_decref(args);
	return -1;
}

int lt_qmp_command(struct lt_qmp *q, const char *name, json_t *args, int pass_fd,
		   lt_qmp_reply_fn fn, void *arg)
{
	if (q->state == Q_CLOSED || q->freed) {
		if (pass_fd >= 0)
			close(pass_fd);
		json_decref(args);
		return lt_fail("qmp %s: the QMP connection is closed", name);
	}
	return enqueue(q, name, args, pass_fd, fn, arg);
}

/* Fails every pending reply, then reports the close. Stops early if a
 * callback frees q. */
static void close_with(struct lt_qmp *q, const char *why)
{
	if (q->state == Q_CLOSED)
		return;
	q->state = Q_CLOSED;
	drop_socket(q);
	while (q->pend_head && !q->freed) {
		struct qmp_pending *p = q->pend_head;
		q->pend_head = p->next;
		if (!q->pend_head)
			q->pend_tail = &q->pend_head;
		if (p->fn)
			p->fn(p->arg, NULL, why);
		free(p);
	}
	if (!q->freed && q->cbs.closed)
		q->cbs.closed(q->ctx, why);
}

static void caps_reply(void *arg, json_t *ret, const char *err)
{
	struct lt_qmp *q = arg;
	(void)ret;
	if (err)
		return; /* closed (or refused): close_with reports it */
	q->state = Q_READY;
	if (q->cbs.ready)
		q->cbs.ready(q->ctx);
}

static int on_greeting(struct lt_qmp *q, json_t *msg)
{
	json_t *g = json_object_get(msg, "QMP");
	if (!json_is_object(g))
		return lt_fail("QMP greeting expected");
	json_t *v = json_object_get(json_object_get(g, "version"), "qemu");
	json_t *ma = json_object_get(v, "major"), *mi = json_object_get(v, "minor"),
	       *mc = json_object_get(v, "micro");
	if (json_is_integer(ma) && json_is_integer(mi) && json_is_integer(mc))
		snprintf(q->version, sizeof(q->version), "%lld.%lld.%lld",
			 (long long)json_integer_value(ma), (long long)json_integer_value(mi),
			 (long long)json_integer_value(mc));
	q->state = Q_NEGOTIATING;
	update_watch(q);
	return 0;
}

static struct qmp_pending *take_pending(struct lt_qmp *q, uint64_t id)
{
	for (struct qmp_pending **pp = &q->pend_head; *pp; pp = &(*pp)->next) {
		struct qmp_pending *p = *pp;
		if (p->id != id)
			continue;
		*pp = p->next;
		if (q->pend_tail == &p->next)
			q->pend_tail = pp;
		return p;
	}
	return NULL;
}

static int on_reply(struct lt_qmp *q, json_t *msg, json_t *idv)
{
	if (!json_is_integer(idv) || json_integer_value(idv) < 0)
		return lt_fail("QMP reply with a foreign id");
	struct qmp_pending *p = take_pending(q, (uint64_t)json_integer_value(idv));
	if (!p)
		return lt_fail("QMP reply to no pending command (id %lld)",
			       (long long)json_integer_value(idv));
	json_t *ret = json_object_get(msg, "return");
	json_t *err = json_object_get(msg, "error");
	char desc[256];
	const char *e = NULL;
	if (err) {
		json_t *d = json_object_get(err, "desc");
		snprintf(desc, sizeof(desc), "%s",
			 json_is_string(d) ? json_string_value(d) : "error without description");
		e = desc;
		ret = NULL;
	}
	if (p->fn)
		p->fn(p->arg, ret, e);
	free(p);
	return 0;
}

static int on_message(struct lt_qmp *q, json_t *msg)
{
	if (!json_is_object(msg))
		return lt_fail("QMP message is not an object");
	if (q->state == Q_GREETING)
		return on_greeting(q, msg);
	json_t *ev = json_object_get(msg, "event");
	if (ev) {
		if (!json_is_string(ev))
			return lt_fail("QMP event name is not a string");
		json_t *data = json_object_get(msg, "data");
		if (data && !json_is_object(data))
			return lt_fail("QMP event data is not an object");
		if (q->cbs.event)
			q->cbs.event(q->ctx, json_string_value(ev), data);
		return 0;
	}
	bool has_ret = json_object_get(msg, "return") != NULL;
	json_t *err = json_object_get(msg, "error");
	if (err && !json_is_object(err))
		return lt_fail("QMP error is not an object");
	if (has_ret == (err != NULL))
		return lt_fail("QMP message is neither a reply nor an event");
	return on_reply(q, msg, json_object_get(msg, "id"));
}

/* Handles every complete line in the input buffer. -1 on a protocol
 * violation (message set). */
static int process_lines(struct lt_qmp *q)
{
	size_t start = 0;
	while (!q->freed && q->state != Q_CLOSED) {
		char *nl = memchr(q->in + start, '\n', q->in_len - start);
		if (!nl)
			break;
		size_t n = (size_t)(nl - (q->in + start));
		json_error_t je;
		json_t *msg = n ? json_loadb(q->in + start, n, JSON_REJECT_DUPLICATES, &je) : NULL;
		start += n + 1;
		if (!n)
			continue;
		if (!msg)
			return lt_fail("QMP sent bad JSON: %s", je.text);
		int rc = on_message(q, msg);
		json_decref(msg);
		if (rc < 0)
			return -1;
	}
	if (q->freed || q->state == Q_CLOSED)
		return 0;
	memmove(q->in, q->in + start, q->in_len - start);
	q->in_len -= start;
	if (q->in_len >= LT_QMP_LINE_MAX)
		return lt_fail("QMP message longer than %d bytes", LT_QMP_LINE_MAX);
	return 0;
}

static int do_read(struct lt_qmp *q)
{
	for (int rounds = 0; rounds < 16 && !q->freed && q->state != Q_CLOSED; rounds++) {
		ssize_t n = read(q->fd, q->in + q->in_len, LT_QMP_LINE_MAX - q->in_len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return lt_fail_errno("QMP read");
		}
		if (n == 0)
			return lt_fail("QMP connection closed by QEMU");
		q->in_len += (size_t)n;
		if (process_lines(q) < 0)
			return -1;
	}
	return 0;
}

static ssize_t send_first(struct lt_qmp *q, struct qmp_out *o)
{
	struct iovec iov = {.iov_base = o->data, .iov_len = o->len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	if (o->fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &o->fd, sizeof(int));
	}
	return sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int do_write(struct lt_qmp *q)
{
	while (q->out_head) {
		struct qmp_out *o = q->out_head;
		ssize_t n;
		if (o->off == 0)
			n = send_first(q, o);
		else
			n = send(q->fd, o->data + o->off, o->len - o->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return lt_fail_errno("QMP write");
		}
		if (n > 0 && o->fd >= 0) {
			close(o->fd);
			o->fd = -1;
		}
		o->off += (size_t)n;
		if (o->off < o->len)
			continue;
		q->out_head = o->next;
		if (!q->out_head)
			q->out_tail = &q->out_head;
		out_free(o);
	}
	update_watch(q);
	return 0;
}

static void on_io(struct lt_watch *w, uint32_t events)
{
	struct lt_qmp *q = (struct lt_qmp *)((char *)w - offsetof(struct lt_qmp, w));
	q->busy++;
	int rc = 0;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		rc = do_read(q);
	if (rc == 0 && !q->freed && q->state != Q_CLOSED && (events & EPOLLOUT))
		rc = do_write(q);
	if (rc < 0 && !q->freed) {
		char why[256];
		snprintf(why, sizeof(why), "%s", lt_errmsg());
		close_with(q, why);
	}
	if (--q->busy == 0 && q->freed)
		destroy(q);
}

struct lt_qmp *lt_qmp_new(struct lt_loop *loop, int fd, const struct lt_qmp_cbs *cbs, void *ctx)
{
	struct lt_qmp *q = lt_calloc(1, sizeof(*q));
	if (!q) {
		close(fd);
		return NULL;
	}
	q->loop = loop;
	q->fd = fd;
	q->cbs = *cbs;
	q->ctx = ctx;
	q->out_tail = &q->out_head;
	q->pend_tail = &q->pend_head;
	q->next_id = 1;
	q->in = lt_malloc(LT_QMP_LINE_MAX);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		lt_fail_errno("qmp: making the socket non-blocking");
		close(fd);
		q->fd = -1;
		destroy(q);
		return NULL;
	}
	if (!q->in || lt_watch_add(loop, &q->w, fd, EPOLLIN, on_io) < 0) {
		close(fd);
		q->fd = -1;
		destroy(q);
		return NULL;
	}
	if (enqueue(q, "qmp_capabilities", NULL, -1, caps_reply, q) < 0) {
		lt_qmp_free(q);
		return NULL;
	}
	return q;
}
