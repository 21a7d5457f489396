/* Control channel: a unix socket speaking JSON lines.
 *   {"cmd":"pause"|"resume"|"stop"|"status"|"events"}
 * Replies are one JSON object per line ({"ok":true,...} or
 * {"ok":false,"error":"..."}); after "events" the client also receives
 * every VM event as it happens ({"event":"listen-after","port":8080,...}).
 * Input lines are bounded; a client that overflows them or lets its
 * output pile up is disconnected. Runs in the VM's I/O thread; events from
 * other threads are queued and handed over through an eventfd. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/vmm_int.h"

#define LINE_MAX_BYTES 4096
#define OUT_MAX_BYTES (1U << 20)
#define MAX_CLIENTS 32

struct client {
	int fd;
	bool subscribed;
	char in[LINE_MAX_BYTES];
	size_t in_len;
	struct lt_buf out;
	bool want_out;
};

struct lt_control {
	struct lt_vm *vm;
	char *path;
	int listen_fd, efd;
	struct client *cl[MAX_CLIENTS];
	pthread_mutex_t qlock;
	struct lt_buf queue;
};

static void client_close(struct lt_control *c, int i)
{
	struct client *k = c->cl[i];
	lt_ioloop_del(c->vm->loop, k->fd);
	close(k->fd);
	lt_buf_free(&k->out);
	free(k);
	c->cl[i] = NULL;
}

static int client_index(struct lt_control *c, int fd)
{
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (c->cl[i] && c->cl[i]->fd == fd)
			return i;
	return -1;
}

/* Writes what it can; false if the client must go. */
static bool client_flush(struct lt_control *c, struct client *k)
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
		lt_ioloop_mod(c->vm->loop, k->fd, EPOLLIN | (want ? EPOLLOUT : 0));
	}
	return true;
}

static bool client_send(struct lt_control *c, struct client *k, const char *line)
{
	size_t n = strlen(line);
	if (k->out.len + n + 1 > OUT_MAX_BYTES)
		return false; /* not reading: drop it */
	if (lt_buf_append(&k->out, line, n) < 0 || lt_buf_append(&k->out, "\n", 1) < 0)
		return false;
	return client_flush(c, k);
}

static void reply_error(struct lt_control *c, struct client *k, const char *msg)
{
	json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", msg);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (s)
		client_send(c, k, s);
	free(s);
	json_decref(o);
}

static void handle_line(struct lt_control *c, struct client *k, const char *line)
{
	json_error_t err;
	json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
	const char *cmd = o && json_is_object(o) ? json_string_value(json_object_get(o, "cmd")) : NULL;
	struct lt_vm *vm = c->vm;
	if (!o) {
		char msg[200];
		snprintf(msg, sizeof(msg), "bad JSON: %s", err.text);
		reply_error(c, k, msg);
	} else if (!cmd) {
		reply_error(c, k, "missing \"cmd\"");
	} else if (!strcmp(cmd, "pause")) {
		if (lt_vm_pause(vm) < 0) {
			reply_error(c, k, lt_errmsg());
		} else {
			struct lt_vm_stats st;
			lt_vm_get_stats(vm, &st);
			char buf[96];
			snprintf(buf, sizeof(buf), "{\"ok\":true,\"pause_ns\":%llu}",
				 (unsigned long long)st.last_pause_ns);
			client_send(c, k, buf);
		}
	} else if (!strcmp(cmd, "resume")) {
		lt_vm_resume(vm);
		struct lt_vm_stats st;
		lt_vm_get_stats(vm, &st);
		char buf[96];
		snprintf(buf, sizeof(buf), "{\"ok\":true,\"resume_ns\":%llu}",
			 (unsigned long long)st.last_resume_ns);
		client_send(c, k, buf);
	} else if (!strcmp(cmd, "stop")) {
		client_send(c, k, "{\"ok\":true}");
		lt_vm_set_exit(vm, LT_VM_EXIT_STOPPED, "stopped by the control channel");
	} else if (!strcmp(cmd, "status")) {
		struct lt_buf b = {0};
		lt_vm_status_json(vm, &b);
		if (lt_buf_cstr(&b) == 0)
			client_send(c, k, (char *)b.data);
		lt_buf_free(&b);
	} else if (!strcmp(cmd, "events")) {
		k->subscribed = true;
		client_send(c, k, "{\"ok\":true,\"subscribed\":true}");
	} else {
		reply_error(c, k, "unknown command");
	}
	json_decref(o);
}

static void on_client(void *opaque, int fd, uint32_t events)
{
	struct lt_control *c = opaque;
	int i = client_index(c, fd);
	if (i < 0)
		return;
	struct client *k = c->cl[i];
	if ((events & EPOLLOUT) && !client_flush(c, k)) {
		client_close(c, i);
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t n = recv(fd, k->in + k->in_len, sizeof(k->in) - k->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c, i);
		return;
	}
	k->in_len += (size_t)n;
	for (;;) {
		char *nl = memchr(k->in, '\n', k->in_len);
		if (!nl)
			break;
		*nl = '\0';
		handle_line(c, k, k->in);
		if (!c->cl[i])
			return;
		size_t used = (size_t)(nl - k->in) + 1;
		memmove(k->in, nl + 1, k->in_len - used);
		k->in_len -= used;
	}
	if (k->in_len == sizeof(k->in)) {
		reply_error(c, k, "line too long");
		/* Drop what is already queued so the close does not reset the
		 * connection before the client reads the error. */
		char sink[4096];
		while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
		client_close(c, i);
	}
}

static void on_accept(void *opaque, int fd, uint32_t events)
{
	(void)events;
	struct lt_control *c = opaque;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0)
		return;
	int slot = -1;
	for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
		if (!c->cl[i])
			slot = i;
	struct client *k = slot >= 0 ? lt_calloc(1, sizeof(*k)) : NULL;
	if (!k) {
		close(cfd);
		return;
	}
	k->fd = cfd;
	c->cl[slot] = k;
	if (lt_ioloop_add(c->vm->loop, cfd, EPOLLIN, on_client, c) < 0) {
		close(cfd);
		free(k);
		c->cl[slot] = NULL;
	}
}

/* Hands queued event lines to subscribers (I/O thread, or after it ended). */
static void drain(struct lt_control *c)
{
	pthread_mutex_lock(&c->qlock);
	struct lt_buf q = c->queue;
	memset(&c->queue, 0, sizeof(c->queue));
	c->queue.limit = OUT_MAX_BYTES;
	pthread_mutex_unlock(&c->qlock);
	size_t off = 0;
	while (off < q.len) {
		char *line = (char *)q.data + off;
		size_t n = strlen(line);
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (c->cl[i] && c->cl[i]->subscribed && !client_send(c, c->cl[i], line))
				client_close(c, i);
		off += n + 1;
	}
	lt_buf_free(&q);
}

static void on_queue(void *opaque, int fd, uint32_t events)
{
	(void)events;
	uint64_t v;
	(void)!read(fd, &v, sizeof(v));
	drain(opaque);
}

void lt_control_publish(struct lt_control *c, const char *line)
{
	pthread_mutex_lock(&c->qlock);
	/* Lines are stored NUL-separated; a full queue drops events. */
	if (lt_buf_append(&c->queue, line, strlen(line) + 1) < 0)
		lt_clear_error();
	pthread_mutex_unlock(&c->qlock);
	uint64_t one = 1;
	(void)!write(c->efd, &one, sizeof(one));
}

void lt_control_drain(struct lt_control *c)
{
	drain(c);
	/* Last chance for blocked clients: a short blocking flush. */
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (c->cl[i] && c->cl[i]->out.len)
			(void)lt_write_all(c->cl[i]->fd, c->cl[i]->out.data, c->cl[i]->out.len);
}

int lt_control_open(struct lt_vm *vm, const char *path, struct lt_control **out)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return lt_fail("control socket path too long: %s", path);
	struct lt_control *c = lt_calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->vm = vm;
	c->listen_fd = c->efd = -1;
	pthread_mutex_init(&c->qlock, NULL);
	c->queue.limit = OUT_MAX_BYTES;
	c->path = lt_strdup(path);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!c->path || c->listen_fd < 0 || c->efd < 0) {
		lt_fail_errno("control socket");
		goto fail;
	}
	strcpy(a.sun_path, path);
	unlink(path);
	if (bind(c->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(c->listen_fd, 16) < 0) {
		lt_fail_errno("control socket %s", path);
		goto fail;
	}
	if (lt_ioloop_add(vm->loop, c->listen_fd, EPOLLIN, on_accept, c) < 0 ||
	    lt_ioloop_add(vm->loop, c->efd, EPOLLIN, on_queue, c) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	lt_control_close(c);
	return -1;
}

void lt_control_close(struct lt_control *c)
{
	if (!c)
		return;
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (c->cl[i])
			client_close(c, i);
	if (c->listen_fd >= 0) {
		lt_ioloop_del(c->vm->loop, c->listen_fd);
		close(c->listen_fd);
		unlink(c->path);
	}
	if (c->efd >= 0) {
		lt_ioloop_del(c->vm->loop, c->efd);
		close(c->efd);
	}
	lt_buf_free(&c->queue);
	pthread_mutex_destroy(&c->qlock);
	free(c->path);
	free(c);
}
