/* The ingress forwarder: the host reaches the app over vsock (no guest
 * networking or root on the host needed); each accepted stream is joined
 * to 127.0.0.1:PORT in the guest. Bytes move with splice() through a pipe,
 * so they never enter userspace; when splice cannot be used on a socket the
 * pump falls back to read/write. A half-close on one side is passed on
 * (shutdown SHUT_WR) while the other direction keeps flowing. */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FWD_MAX_CONNS 4096
#define FWD_CHUNK (1 << 16)
#define FWD_STACK (256 * 1024)

static atomic_int live_conns;

static int listen_on(int fd, const struct sockaddr *a, socklen_t len, uint16_t port)
{
	if (bind(fd, a, len) < 0 || listen(fd, 128) < 0) {
		lt_fail_errno("listen on port %u", port);
		close(fd);
		return -1;
	}
	return fd;
}

int li_fwd_listen_vsock(uint16_t port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lt_fail_errno("vsock socket");
	struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
	return listen_on(fd, (struct sockaddr *)&a, sizeof(a), port);
}

int li_fwd_listen_tcp(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lt_fail_errno("tcp socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	return listen_on(fd, (struct sockaddr *)&a, sizeof(a), port);
}

/* read/write copy for sockets splice() does not support. */
static bool copy_fallback(int src, int dst, bool *eof)
{
	char *buf = malloc(FWD_CHUNK);
	if (!buf)
		return false;
	bool ok = true;
	for (;;) {
		ssize_t n = read(src, buf, FWD_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ok = n == 0;
			*eof = n == 0;
			break;
		}
		if (lt_write_all(dst, buf, (size_t)n) < 0) {
			ok = false;
			break;
		}
	}
	free(buf);
	return ok;
}

/* Moves src -> dst until EOF (then half-closes dst) or an error (then
 * shuts both down so the other direction's pump wakes up too). */
static void pump(int src, int dst)
{
	int p[2];
	bool eof = false, ok = true;
	if (pipe2(p, O_CLOEXEC) < 0) {
		ok = copy_fallback(src, dst, &eof);
		goto done;
	}
	bool moved = false;
	for (;;) {
		ssize_t n = splice(src, NULL, p[1], NULL, FWD_CHUNK, SPLICE_F_MOVE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && !moved) {
			ok = copy_fallback(src, dst, &eof);
			break;
		}
		if (n <= 0) {
			eof = n == 0;
			ok = eof;
			break;
		}
		moved = true;
		while (n > 0) {
			ssize_t w = splice(p[0], NULL, dst, NULL, (size_t)n, SPLICE_F_MOVE);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			n -= w;
		}
		if (n > 0) {
			ok = false;
			break;
		}
	}
	close(p[0]);
	close(p[1]);
done:
	if (ok && eof) {
		shutdown(dst, SHUT_WR);
	} else {
		shutdown(src, SHUT_RDWR);
		shutdown(dst, SHUT_RDWR);
	}
}

struct pump_args {
	int src, dst;
};

static void *pump_thread(void *arg)
{
	struct pump_args *a = arg;
	pump(a->src, a->dst);
	return NULL;
}

static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg, bool detached)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, FWD_STACK);
	if (detached)
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return rc == 0 ? 0 : -1;
}

void li_fwd_pair(int a, int b)
{
	struct pump_args back = {.src = b, .dst = a};
	pthread_t t;
	if (start_thread(&t, pump_thread, &back, false) < 0) {
		close(a);
		close(b);
		return;
	}
	pump(a, b);
	pthread_join(t, NULL);
	close(a);
	close(b);
}

/* Connects to 127.0.0.1:port, retrying while nothing listens yet (the
 * host may connect the moment the VM is restored or booted). */
static int connect_target(uint16_t port, unsigned timeout_ms)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	uint64_t deadline = lt_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			return fd;
		}
		int err = errno;
		close(fd);
		if (err != ECONNREFUSED || lt_now_ns() >= deadline)
			return -1;
		nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000}, NULL);
	}
}

struct conn_args {
	int client;
	uint16_t port;
	unsigned timeout_ms;
};

static void *conn_thread(void *arg)
{
	struct conn_args *c = arg;
	int target = connect_target(c->port, c->timeout_ms);
	if (target < 0)
		close(c->client);
	else
		li_fwd_pair(c->client, target);
	free(c);
	atomic_fetch_sub(&live_conns, 1);
	return NULL;
}

static void accept_one(int lfd, uint16_t port, unsigned timeout_ms)
{
	int client = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (client < 0)
		return;
	struct conn_args *c = malloc(sizeof(*c));
	pthread_t t;
	if (!c || atomic_fetch_add(&live_conns, 1) >= FWD_MAX_CONNS) {
		if (c)
			atomic_fetch_sub(&live_conns, 1);
		free(c);
		close(client);
		return;
	}
	*c = (struct conn_args){.client = client, .port = port, .timeout_ms = timeout_ms};
	if (start_thread(&t, conn_thread, c, true) < 0) {
		atomic_fetch_sub(&live_conns, 1);
		close(client);
		free(c);
	}
}

int li_fwd_run(struct li_fwd *f)
{
	struct pollfd pfd[LI_MAX_PORTS + 1];
	if (f->n > LI_MAX_PORTS)
		return lt_fail("more than %d forwarded ports", LI_MAX_PORTS);
	unsigned timeout_ms = f->connect_timeout_ms ? f->connect_timeout_ms : 3000;
	/* splice() into a socket whose peer is gone raises SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < f->n; i++)
		pfd[i] = (struct pollfd){.fd = f->listen_fd[i], .events = POLLIN};
	pfd[f->n] = (struct pollfd){.fd = f->stop_fd, .events = POLLIN};
	for (;;) {
		if (poll(pfd, f->n + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return lt_fail_errno("forwarder poll");
		}
		if (f->stop_fd >= 0 && pfd[f->n].revents)
			return 0;
		for (size_t i = 0; i < f->n; i++) {
			if (pfd[i].revents & POLLIN)
				accept_one(f->listen_fd[i], f->target_port[i], timeout_ms);
		}
	}
}
