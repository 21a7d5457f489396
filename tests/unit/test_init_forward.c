/* lttle-init: the ingress forwarder, with TCP on 127.0.0.1 standing in for
 * vsock: bulk data both ways, half-close, a target that is not up yet, a
 * target that never comes, and many connections at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

/* A free port: bind 0, read it back, close. */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int dial(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The "app": for each connection, reads everything until EOF, then
 * answers with a checksum line followed by the data reversed in blocks,
 * then closes. Answering only after EOF proves half-close is passed on
 * while the other direction stays open. */
struct app {
	int lfd;
	int conns; /* how many to serve */
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static void *serve_one(void *arg)
{
	int c = (int)(intptr_t)arg;
	struct lt_buf b = {.limit = 64 << 20};
	uint8_t tmp[65536];
	ssize_t n;
	while ((n = read(c, tmp, sizeof(tmp))) > 0)
		lt_buf_append(&b, tmp, (size_t)n);
	char head[64];
	int hl = snprintf(head, sizeof(head), "%zu %016llx\n", b.len,
			  (unsigned long long)fnv(b.data, b.len));
	lt_write_all(c, head, (size_t)hl);
	lt_write_all(c, b.data, b.len);
	lt_buf_free(&b);
	close(c);
	return NULL;
}

static void *app_thread(void *arg)
{
	struct app *a = arg;
	pthread_t t[64];
	int n = 0;
	for (; n < a->conns && n < 64; n++) {
		int c = accept(a->lfd, NULL, NULL);
		if (c < 0)
			break;
		pthread_create(&t[n], NULL, serve_one, (void *)(intptr_t)c);
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	return NULL;
}

struct fwd_run {
	struct li_fwd f;
	int stop[2];
	pthread_t t;
};

static void *fwd_thread(void *arg)
{
	struct fwd_run *r = arg;
	li_fwd_run(&r->f);
	return NULL;
}

static void fwd_start(struct fwd_run *r, uint16_t front, uint16_t target, unsigned timeout_ms)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(pipe(r->stop), 0);
	r->f.listen_fd[0] = li_fwd_listen_tcp(front);
	assert_true(r->f.listen_fd[0] >= 0);
	r->f.target_port[0] = target;
	r->f.n = 1;
	r->f.stop_fd = r->stop[0];
	r->f.connect_timeout_ms = timeout_ms;
	assert_int_equal(pthread_create(&r->t, NULL, fwd_thread, r), 0);
}

static void fwd_stop(struct fwd_run *r)
{
	assert_int_equal(write(r->stop[1], "x", 1), 1);
	pthread_join(r->t, NULL);
	close(r->f.listen_fd[0]);
	close(r->stop[0]);
	close(r->stop[1]);
}

/* Sends size bytes through the front port, half-closes, and checks the
 * app's answer. */
static void round_trip(uint16_t front, size_t size, unsigned seed)
{
	uint8_t *data = malloc(size);
	assert_non_null(data);
	for (size_t i = 0; i < size; i++)
		data[i] = (uint8_t)((i * 2654435761u) >> 13 ^ seed);
	int c = dial(front);
	assert_true(c >= 0);
	assert_int_equal(lt_write_all(c, data, size), 0);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	struct lt_buf b = {0};
	uint8_t tmp[65536];
	ssize_t n;
	while ((n = read(c, tmp, sizeof(tmp))) > 0)
		assert_int_equal(lt_buf_append(&b, tmp, (size_t)n), 0);
	assert_int_equal(n, 0); /* a clean EOF after the app closed */
	close(c);
	char head[64];
	int hl = snprintf(head, sizeof(head), "%zu %016llx\n", size,
			  (unsigned long long)fnv(data, size));
	assert_true(b.len == (size_t)hl + size);
	assert_memory_equal(b.data, head, (size_t)hl);
	assert_memory_equal(b.data + hl, data, size);
	lt_buf_free(&b);
	free(data);
}

static void test_bulk_and_half_close(void **state)
{
	(void)state;
	uint16_t front = free_port(), back = free_port();
	struct app a = {.lfd = li_fwd_listen_tcp(back), .conns = 3};
	assert_true(a.lfd >= 0);
	pthread_t at;
	assert_int_equal(pthread_create(&at, NULL, app_thread, &a), 0);
	struct fwd_run r;
	fwd_start(&r, front, back, 2000);
	round_trip(front, 0, 1);                /* nothing, then EOF */
	round_trip(front, 13, 2);               /* tiny */
	round_trip(front, 24u << 20, 3);        /* larger than any pipe */
	pthread_join(at, NULL);
	fwd_stop(&r);
	close(a.lfd);
}

struct late {
	uint16_t port;
	struct app a;
};

static void *late_app(void *arg)
{
	struct late *l = arg;
	nanosleep(&(struct timespec){.tv_nsec = 300 * 1000000}, NULL);
	l->a.lfd = li_fwd_listen_tcp(l->port);
	if (l->a.lfd >= 0)
		app_thread(&l->a);
	return NULL;
}

static void test_target_not_up_yet(void **state)
{
	(void)state;
	uint16_t front = free_port(), back = free_port();
	struct late l = {.port = back, .a = {.lfd = -1, .conns = 1}};
	pthread_t t;
	struct fwd_run r;
	fwd_start(&r, front, back, 3000);
	assert_int_equal(pthread_create(&t, NULL, late_app, &l), 0);
	round_trip(front, 1000, 4); /* the forwarder retries until it listens */
	pthread_join(t, NULL);
	assert_true(l.a.lfd >= 0);
	close(l.a.lfd);
	fwd_stop(&r);
}

static void test_target_never_up(void **state)
{
	(void)state;
	uint16_t front = free_port(), back = free_port();
	struct fwd_run r;
	fwd_start(&r, front, back, 200);
	int c = dial(front);
	assert_true(c >= 0);
	struct pollfd p = {.fd = c, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1); /* closed after the timeout */
	char x;
	assert_true(read(c, &x, 1) <= 0);
	close(c);
	fwd_stop(&r);
}

struct par {
	uint16_t front;
	unsigned seed;
};

static void *par_client(void *arg)
{
	struct par *p = arg;
	round_trip(p->front, 100000 + p->seed * 997, p->seed);
	return NULL;
}

static void test_many_connections(void **state)
{
	(void)state;
	enum { N = 32 };
	uint16_t front = free_port(), back = free_port();
	struct app a = {.lfd = li_fwd_listen_tcp(back), .conns = N};
	assert_true(a.lfd >= 0);
	pthread_t at, t[N];
	struct par p[N];
	assert_int_equal(pthread_create(&at, NULL, app_thread, &a), 0);
	struct fwd_run r;
	fwd_start(&r, front, back, 2000);
	for (int i = 0; i < N; i++) {
		p[i] = (struct par){.front = front, .seed = (unsigned)i};
		assert_int_equal(pthread_create(&t[i], NULL, par_client, &p[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	pthread_join(at, NULL);
	fwd_stop(&r);
	close(a.lfd);
}

struct pair_args {
	int a, b;
};

static void *pair_thread(void *arg)
{
	struct pair_args *p = arg;
	li_fwd_pair(p->a, p->b);
	return NULL;
}

static void test_pair_peer_gone(void **state)
{
	(void)state;
	/* One side going away ends both pumps instead of hanging. Unix
	 * socket pairs: splice works on any stream socket. */
	int a[2], b[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	struct pair_args pa = {a[1], b[0]};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, pair_thread, &pa), 0);
	char buf[8] = "";
	assert_int_equal(write(a[0], "ping", 4), 4);
	assert_int_equal(read(b[1], buf, 4), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(write(b[1], "pong", 4), 4);
	assert_int_equal(read(a[0], buf, 4), 4);
	assert_memory_equal(buf, "pong", 4);
	close(b[1]);                                /* the app goes away */
	assert_int_equal(read(a[0], buf, 1), 0);    /* its EOF is passed on */
	(void)!write(a[0], "more", 4);              /* nowhere to go: EPIPE */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	assert_int_equal(pthread_timedjoin_np(t, NULL, &ts), 0);
	close(a[0]);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as in the forwarder process */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bulk_and_half_close),
		cmocka_unit_test(test_target_not_up_yet),
		cmocka_unit_test(test_target_never_up),
		cmocka_unit_test(test_many_connections),
		cmocka_unit_test(test_pair_peer_gone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
