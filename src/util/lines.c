/* Line servers: see util.h ("line servers"). One epoll fd holds the
 * listening socket, the publish eventfd and every client; the owner polls
 * it in its own loop (an epoll fd nests in another epoll) and calls
 * lt_lines_dispatch, so the VMM's I/O thread and lttle-vmhost's server
 * thread share this code. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/util.h"

#define LINES_MAX_CLIENTS 32

struct lt_lines_client {
	struct lt_lines *l;
	int fd;
	bool subscribed;
	bool dead;     /* drop after the current dispatch step */
	bool want_out; /* EPOLLOUT is set */
	char in[LT_LINES_IN_MAX];
	size_t in_len;
	struct lt_buf out;
};

struct lt_lines {
	lt_lines_fn on_line;
	void *user;
	char *too_long;
	char *path; /* unlinked at free */
	int epfd, listen_fd, efd;
	struct lt_lines_client *cl[LINES_MAX_CLIENTS];
	pthread_mutex_t qlock;
	struct lt_buf queue; /* NUL-separated lines published by any thread */
};

/* epoll data for the two fds that are not clients. */
static char tag_listen, tag_queue;

int lt_lines_new(lt_lines_fn on_line, void *user, const char *too_long_reply,
		 struct lt_lines **out)
{
	struct lt_lines *l = lt_calloc(1, sizeof(*l));
	if (!l)
		return -1;
	l->on_line = on_line;
	l->user = user;
	l->listen_fd = -1;
	pthread_mutex_init(&l->qlock, NULL);
	l->queue.limit = LT_LINES_OUT_MAX;
	l->too_long = lt_strdup(too_long_reply);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_queue};
	if (!l->too_long || l->epfd < 0 || l->efd < 0 ||
	    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->efd, &ev) < 0) {
		lt_fail_errno("line server");
		lt_lines_free(l);
		return -1;
	}
	*out = l;
	return 0;
}

int lt_lines_listen(struct lt_lines *l, const char *path, int backlog)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return lt_fail("control socket path too long: %s", path);
	if (l->listen_fd >= 0)
		return lt_fail("control socket already open");
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lt_fail_errno("control socket");
	unlink(path);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listen};
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, backlog) < 0 ||
	    epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return lt_fail_errno("control socket %s", path);
	}
	l->path = lt_strdup(path);
	l->listen_fd = fd;
	return l->path ? 0 : -1;
}

static void client_close(struct lt_lines *l, int i)
{
	struct lt_lines_client *k = l->cl[i];
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, k->fd, NULL);
	close(k->fd);
	lt_buf_free(&k->out);
	free(k);
	l->cl[i] = NULL;
}

int lt_lines_adopt(struct lt_lines *l, int fd, bool subscribed)
{
	int slot = -1;
	for (int i = 0; i < LINES_MAX_CLIENTS && slot < 0; i++)
		if (!l->cl[i])
			slot = i;
	if (slot < 0)
		return lt_fail("control socket: too many clients");
	struct lt_lines_client *k = lt_calloc(1, sizeof(*k));
	if (!k)
		return -1;
	k->l = l;
	k->fd = fd;
	k->subscribed = subscribed;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(k);
		return lt_fail_errno("control socket: epoll_ctl");
	}
	l->cl[slot] = k;
	return 0;
}

int lt_lines_fd(const struct lt_lines *l)
{
	return l->epfd;
}

/* Writes what it can; false if the client must go. */
static bool client_flush(struct lt_lines_client *k)
{
	while (k->out.len) {
		ssize_t n = send(k->fd, k->out.data, k->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return false;
		memmove(k->out.data, k->out.data + n, k->out.len - (size_t)n);
		k->out.len -= (size_t)n;
	}
	bool want = k->out.len > 0;
	if (want != k->want_out) {
		k->want_out = want;
		struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = k};
		epoll_ctl(k->l->epfd, EPOLL_CTL_MOD, k->fd, &ev);
	}
	return true;
}

void lt_lines_send(struct lt_lines_client *k, const char *line)
{
	size_t n = strlen(line);
	if (k->dead)
		return;
	/* A client that does not read its replies or events is dropped. */
	if (k->out.len + n + 1 > LT_LINES_OUT_MAX || lt_buf_append(&k->out, line, n) < 0 ||
	    lt_buf_append(&k->out, "\n", 1) < 0 || !client_flush(k)) {
		lt_clear_error();
		k->dead = true;
	}
}

void lt_lines_subscribe(struct lt_lines_client *k)
{
	k->subscribed = true;
}

void lt_lines_publish(struct lt_lines *l, const char *line)
{
	pthread_mutex_lock(&l->qlock);
	if (lt_buf_append(&l->queue, line, strlen(line) + 1) < 0)
		lt_clear_error(); /* a full queue drops events */
	pthread_mutex_unlock(&l->qlock);
	uint64_t one = 1;
	(void)!write(l->efd, &one, sizeof(one));
}

static void reap(struct lt_lines *l)
{
	for (int i = 0; i < LINES_MAX_CLIENTS; i++)
		if (l->cl[i] && l->cl[i]->dead)
			client_close(l, i);
}

/* Hands queued lines to the subscribers. */
static void deliver_queue(struct lt_lines *l)
{
	pthread_mutex_lock(&l->qlock);
	struct lt_buf q = l->queue;
	memset(&l->queue, 0, sizeof(l->queue));
	l->queue.limit = LT_LINES_OUT_MAX;
	pthread_mutex_unlock(&l->qlock);
	for (size_t off = 0; off < q.len;) {
		const char *line = (const char *)q.data + off;
		for (int i = 0; i < LINES_MAX_CLIENTS; i++)
			if (l->cl[i] && l->cl[i]->subscribed)
				lt_lines_send(l->cl[i], line);
		off += strlen(line) + 1;
	}
	lt_buf_free(&q);
}

static void on_accept(struct lt_lines *l)
{
	int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (lt_lines_adopt(l, fd, false) < 0) {
		lt_clear_error();
		close(fd);
	}
}

/* Refuses an over-long line: the error, then the connection. */
static void refuse_long_line(struct lt_lines_client *k)
{
	lt_lines_send(k, k->l->too_long);
	/* Drop what is already queued so the close does not reset the
	 * connection before the client reads the error. */
	char sink[4096];
	while (recv(k->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
	k->dead = true;
}

static void on_client(struct lt_lines_client *k, uint32_t events)
{
	if ((events & EPOLLOUT) && !client_flush(k)) {
		k->dead = true;
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t n = recv(k->fd, k->in + k->in_len, sizeof(k->in) - k->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		k->dead = true;
		return;
	}
	k->in_len += (size_t)n;
	for (;;) {
		char *nl = memchr(k->in, '\n', k->in_len);
		if (!nl || k->dead)
			break;
		*nl = '\0';
		k->l->on_line(k->l->user, k, k->in);
		size_t used = (size_t)(nl - k->in) + 1;
		memmove(k->in, nl + 1, k->in_len - used);
		k->in_len -= used;
	}
	if (k->in_len == sizeof(k->in) && !k->dead)
		refuse_long_line(k);
}

void lt_lines_dispatch(struct lt_lines *l)
{
	struct epoll_event evs[16];
	int n = epoll_wait(l->epfd, evs, 16, 0);
	for (int i = 0; i < n; i++) {
		void *p = evs[i].data.ptr;
		if (p == &tag_queue) {
			uint64_t v;
			(void)!read(l->efd, &v, sizeof(v));
			deliver_queue(l);
		} else if (p == &tag_listen) {
			on_accept(l);
		} else {
			/* Clients closed earlier in this batch are not looked at:
			 * reap runs after the batch. */
			on_client(p, evs[i].events);
		}
	}
	reap(l);
}

void lt_lines_finish(struct lt_lines *l)
{
	deliver_queue(l);
	reap(l);
	/* Last chance for slow clients: a short blocking flush. */
	for (int i = 0; i < LINES_MAX_CLIENTS; i++)
		if (l->cl[i] && l->cl[i]->out.len)
			(void)lt_write_all(l->cl[i]->fd, l->cl[i]->out.data, l->cl[i]->out.len);
}

void lt_lines_free(struct lt_lines *l)
{
	if (!l)
		return;
	for (int i = 0; i < LINES_MAX_CLIENTS; i++)
		if (l->cl[i])
			client_close(l, i);
	if (l->listen_fd >= 0) {
		close(l->listen_fd);
		unlink(l->path);
	}
	if (l->efd >= 0)
		close(l->efd);
	if (l->epfd >= 0)
		close(l->epfd);
	lt_buf_free(&l->queue);
	pthread_mutex_destroy(&l->qlock);
	free(l->too_long);
	free(l->path);
	free(l);
}
