/* The forwarder and the loop with real sockets: TCP on 127.0.0.1 and unix
 * socketpairs. Peers run in threads with blocking I/O; the loop runs on the
 * test's main thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/proxy.h"

static struct lt_loop *loop;
static struct lt_forwarder *fw;

struct done_rec {
	atomic_bool done;
	struct lt_fwd_stats st;
	char why[256];
	bool why_null;
};

static void on_done(void *ctx, const struct lt_fwd_stats *st, const char *why)
{
	struct done_rec *d = ctx;
	d->st = *st;
	d->why_null = why == NULL;
	snprintf(d->why, sizeof(d->why), "%s", why ? why : "");
	atomic_store(&d->done, true);
}

static void run_until(atomic_bool *flag, int ms)
{
	uint64_t end = lt_now_ns() + LT_MS(ms);
	while (!atomic_load(flag) && lt_now_ns() < end)
		lt_loop_run_once(loop, 20);
	assert_true(atomic_load(flag));
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* A connected TCP pair on 127.0.0.1: *ext for the test, *in for the proxy. */
static void tcp_pair(int *ext, int *in, int bufsize)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 4), 0);
	socklen_t len = sizeof(sa);
	getsockname(l, (struct sockaddr *)&sa, &len);
	*ext = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (bufsize) {
		setsockopt(*ext, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
		setsockopt(*ext, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
	}
	assert_int_equal(connect(*ext, (struct sockaddr *)&sa, sizeof(sa)), 0);
	*in = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*in >= 0);
	if (bufsize) {
		setsockopt(*in, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
		setsockopt(*in, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
	}
	set_nonblock(*in);
	close(l);
}

static void unix_pair(int *ext, int *in)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*ext = sv[0];
	*in = sv[1];
	set_nonblock(*in);
}

/* ---- peer threads ---------------------------------------------------------- */

/* Deterministic pseudo-random bytes (xorshift), so each side can verify
 * what it receives without sharing buffers. */
static void fill(uint8_t *p, size_t n, uint64_t *s)
{
	for (size_t k = 0; k < n; k++) {
		*s ^= *s << 13;
		*s ^= *s >> 7;
		*s ^= *s << 17;
		p[k] = (uint8_t)*s;
	}
}

struct xfer {
	int fd;
	size_t n;
	uint64_t seed;
	bool shut_after; /* shutdown(SHUT_WR) when done writing */
	/* results */
	size_t got;
	bool match;
	uint8_t digest[LT_SHA256_LEN];
	int err;
};

static void *writer(void *arg)
{
	struct xfer *x = arg;
	uint64_t s = x->seed;
	uint8_t buf[65536];
	struct lt_sha256 *h = lt_sha256_new();
	size_t left = x->n;
	while (left) {
		size_t chunk = left < sizeof(buf) ? left : (size_t)(1 + (s % sizeof(buf)));
		if (chunk > left)
			chunk = left;
		fill(buf, chunk, &s);
		lt_sha256_update(h, buf, chunk);
		if (lt_write_all(x->fd, buf, chunk) < 0) {
			x->err = errno;
			break;
		}
		left -= chunk;
	}
	lt_sha256_final(h, x->digest);
	lt_sha256_free(h);
	if (x->shut_after)
		shutdown(x->fd, SHUT_WR);
	return NULL;
}

static void *reader(void *arg)
{
	struct xfer *x = arg;
	uint64_t s = x->seed;
	uint8_t buf[65536], want[65536];
	struct lt_sha256 *h = lt_sha256_new();
	x->match = true;
	for (;;) {
		ssize_t n = read(x->fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			x->err = errno;
			break;
		}
		if (n == 0)
			break;
		fill(want, (size_t)n, &s);
		if (memcmp(buf, want, (size_t)n))
			x->match = false;
		lt_sha256_update(h, buf, (size_t)n);
		x->got += (size_t)n;
	}
	lt_sha256_final(h, x->digest);
	lt_sha256_free(h);
	return NULL;
}

/* ---- fixtures -------------------------------------------------------------- */

static struct lt_fwd_limits lim;

static int setup(void **state)
{
	(void)state;
	loop = lt_loop_new();
	lt_fwd_limits_defaults(&lim);
	fw = lt_forwarder_new(loop, &lim);
	return loop && fw ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	lt_forwarder_free(fw);
	lt_loop_free(loop);
	return 0;
}

static void reconfigure(void)
{
	lt_forwarder_free(fw);
	fw = lt_forwarder_new(loop, &lim);
	assert_non_null(fw);
}

/* Both directions at once, then half-close on each side. */
static void bidirectional(bool unix_upstream, size_t n)
{
	int c_ext, c_in, u_ext, u_in;
	tcp_pair(&c_ext, &c_in, 0);
	if (unix_upstream)
		unix_pair(&u_ext, &u_in);
	else
		tcp_pair(&u_ext, &u_in, 0);
	struct done_rec d = {0};
	assert_non_null(lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d));
	struct xfer up_w = {.fd = c_ext, .n = n, .seed = 11, .shut_after = true};
	struct xfer up_r = {.fd = u_ext, .seed = 11};
	struct xfer dn_w = {.fd = u_ext, .n = n / 2 + 12345, .seed = 99, .shut_after = true};
	struct xfer dn_r = {.fd = c_ext, .seed = 99};
	pthread_t t[4];
	pthread_create(&t[0], NULL, writer, &up_w);
	pthread_create(&t[1], NULL, reader, &up_r);
	pthread_create(&t[2], NULL, writer, &dn_w);
	pthread_create(&t[3], NULL, reader, &dn_r);
	run_until(&d.done, 30000);
	for (int k = 0; k < 4; k++)
		pthread_join(t[k], NULL);
	assert_true(d.why_null);
	assert_int_equal(up_r.got, n);
	assert_int_equal(dn_r.got, n / 2 + 12345);
	assert_true(up_r.match);
	assert_true(dn_r.match);
	assert_memory_equal(up_w.digest, up_r.digest, LT_SHA256_LEN);
	assert_memory_equal(dn_w.digest, dn_r.digest, LT_SHA256_LEN);
	assert_int_equal(d.st.bytes_up, n);
	assert_int_equal(d.st.bytes_down, n / 2 + 12345);
	assert_int_equal(lt_forwarder_active(fw), 0);
	close(c_ext);
	close(u_ext);
}

static void test_integrity_tcp(void **state)
{
	(void)state;
	bidirectional(false, 24u << 20);
}

static void test_integrity_unix_upstream(void **state)
{
	(void)state;
	bidirectional(true, 8u << 20);
}

static void test_integrity_small_pipe(void **state)
{
	(void)state;
	lim.pipe_size = 4096;
	reconfigure();
	bidirectional(false, 2u << 20);
}

struct rd_arg {
	struct xfer *x;
	atomic_bool *flag;
	char buf[64];
	size_t len;
};

static void *rd(void *p)
{
	struct rd_arg *q = p;
	for (;;) {
		ssize_t n = read(q->x->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (n <= 0)
			break;
		q->len += (size_t)n;
	}
	atomic_store(q->flag, true);
	return NULL;
}

/* Client sends a request and shuts down its write side; upstream must see
 * EOF (the FIN propagated), answer, and close; client gets it all. */
static void test_half_close(void **state)
{
	(void)state;
	int c_ext, c_in, u_ext, u_in;
	tcp_pair(&c_ext, &c_in, 0);
	tcp_pair(&u_ext, &u_in, 0);
	struct done_rec d = {0};
	assert_non_null(lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d));
	assert_int_equal(lt_write_all(c_ext, "question", 8), 0);
	shutdown(c_ext, SHUT_WR);
	struct xfer r = {.fd = u_ext};
	pthread_t t;
	/* read upstream until EOF in a thread while the loop runs */
	atomic_bool eof_seen = false;
	struct rd_arg a = {&r, &eof_seen, {0}, 0};
	pthread_create(&t, NULL, rd, &a);
	run_until(&eof_seen, 5000);
	pthread_join(t, NULL);
	assert_int_equal(a.len, 8);
	assert_memory_equal(a.buf, "question", 8);
	/* the other direction is still open: the answer flows after the FIN */
	assert_false(atomic_load(&d.done));
	assert_int_equal(lt_write_all(u_ext, "answer!", 7), 0);
	close(u_ext);
	run_until(&d.done, 5000);
	assert_true(d.why_null);
	char buf[32];
	ssize_t n = read(c_ext, buf, sizeof(buf));
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "answer!", 7);
	assert_int_equal(read(c_ext, buf, sizeof(buf)), 0);
	close(c_ext);
}

/* Upstream never reads: the proxy holds at most one pipe of data and the
 * client is pushed back; after stall_timeout the connection is closed. */
static void test_bounded_buffer_and_stall(void **state)
{
	(void)state;
	lim.stall_timeout = LT_MS(800);
	reconfigure();
	int c_ext, c_in, u_ext, u_in;
	int bs = 32768;
	tcp_pair(&c_ext, &c_in, bs);
	tcp_pair(&u_ext, &u_in, bs);
	struct done_rec d = {0};
	assert_non_null(lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d));
	set_nonblock(c_ext);
	static uint8_t chunk[65536];
	size_t sent = 0;
	uint64_t t_end = lt_now_ns() + LT_MS(250);
	while (lt_now_ns() < t_end) {
		ssize_t n = write(c_ext, chunk, sizeof(chunk));
		if (n > 0)
			sent += (size_t)n;
		lt_loop_run_once(loop, 5);
	}
	assert_false(atomic_load(&d.done));
	/* kernel buffers (doubled by the kernel, four sockets) + one pipe */
	int sz[4];
	socklen_t l = sizeof(int);
	getsockopt(c_ext, SOL_SOCKET, SO_SNDBUF, &sz[0], &l);
	getsockopt(c_in, SOL_SOCKET, SO_RCVBUF, &sz[1], &l);
	getsockopt(u_in, SOL_SOCKET, SO_SNDBUF, &sz[2], &l);
	getsockopt(u_ext, SOL_SOCKET, SO_RCVBUF, &sz[3], &l);
	size_t bound = (size_t)sz[0] + sz[1] + sz[2] + sz[3] + 65536 + 65536;
	print_message("sent %zu bytes into a stalled upstream; bound %zu\n", sent, bound);
	assert_true(sent > 0);
	assert_true(sent <= bound);
	run_until(&d.done, 2000);
	assert_non_null(strstr(d.why, "upstream stalled"));
	close(c_ext);
	close(u_ext);
}

/* Upstream resets: the forwarder ends with a reason naming it and the
 * client sees the reset too. */
static void test_peer_reset(void **state)
{
	(void)state;
	int c_ext, c_in, u_ext, u_in;
	tcp_pair(&c_ext, &c_in, 0);
	tcp_pair(&u_ext, &u_in, 0);
	struct done_rec d = {0};
	assert_non_null(lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d));
	assert_int_equal(lt_write_all(c_ext, "hello", 5), 0);
	for (int k = 0; k < 20; k++)
		lt_loop_run_once(loop, 5);
	struct linger lg = {1, 0};
	setsockopt(u_ext, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(u_ext); /* RST, with "hello" unread */
	run_until(&d.done, 3000);
	assert_false(d.why_null);
	assert_non_null(strstr(d.why, "upstream"));
	char buf[16];
	ssize_t n = read(c_ext, buf, sizeof(buf));
	assert_int_equal(n, -1);
	assert_int_equal(errno, ECONNRESET);
	close(c_ext);
}

static void test_client_reset(void **state)
{
	(void)state;
	int c_ext, c_in, u_ext, u_in;
	tcp_pair(&c_ext, &c_in, 0);
	tcp_pair(&u_ext, &u_in, 0);
	struct done_rec d = {0};
	assert_non_null(lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d));
	struct linger lg = {1, 0};
	setsockopt(c_ext, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c_ext);
	run_until(&d.done, 3000);
	assert_non_null(strstr(d.why, "client"));
	char buf[16];
	ssize_t n = read(u_ext, buf, sizeof(buf));
	assert_true(n <= 0);
	close(u_ext);
}

/* read() on a blocking socket while running the loop (the proxy must move
 * the data); gives up after 3 s. */
static ssize_t pumped_read(int fd, void *buf, size_t n)
{
	uint64_t end = lt_now_ns() + LT_SEC(3);
	while (lt_now_ns() < end) {
		ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
		if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return r;
		lt_loop_run_once(loop, 5);
	}
	return -2;
}

/* The client resets while only the upstream could speak: the connection
 * ends at once (not at the idle timeout) and the upstream is reset too. */
static void test_client_reset_while_upstream_silent(void **state)
{
	(void)state;
	int c_ext, c_in, u_ext, u_in;
	tcp_pair(&c_ext, &c_in, 0);
	tcp_pair(&u_ext, &u_in, 0);
	struct done_rec d = {0};
	assert_non_null(lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d));
	assert_int_equal(lt_write_all(c_ext, "req", 3), 0);
	shutdown(c_ext, SHUT_WR); /* its direction is done */
	char buf[8];
	assert_int_equal(pumped_read(u_ext, buf, sizeof(buf)), 3);
	assert_int_equal(pumped_read(u_ext, buf, sizeof(buf)), 0); /* FIN passed on */
	struct linger lg = {1, 0};
	setsockopt(c_ext, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c_ext);
	run_until(&d.done, 1000);
	assert_non_null(strstr(d.why, "client"));
	/* the upstream got a reset: it can no longer send */
	assert_int_equal(send(u_ext, "late", 4, MSG_NOSIGNAL), -1);
	assert_true(errno == ECONNRESET || errno == EPIPE);
	close(u_ext);
}

static void test_idle_timeout(void **state)
{
	(void)state;
	lim.idle_timeout = LT_MS(500);
	reconfigure();
	int c_ext, c_in, u_ext, u_in;
	tcp_pair(&c_ext, &c_in, 0);
	tcp_pair(&u_ext, &u_in, 0);
	struct done_rec d = {0};
	uint64_t t0 = lt_now_ns();
	assert_non_null(lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d));
	/* traffic keeps it alive */
	for (int k = 0; k < 4; k++) {
		uint64_t t = lt_now_ns() + LT_MS(100);
		while (lt_now_ns() < t)
			lt_loop_run_once(loop, 10);
		assert_int_equal(lt_write_all(c_ext, "x", 1), 0);
	}
	assert_false(atomic_load(&d.done));
	run_until(&d.done, 2000);
	assert_string_equal(d.why, "idle timeout");
	assert_true(lt_now_ns() - t0 >= LT_MS(900));
	close(c_ext);
	close(u_ext);
}

/* The prefix (an HTTP head read by the router) reaches upstream first. */
static void test_prefix_first(void **state)
{
	(void)state;
	int c_ext, c_in, u_ext, u_in;
	tcp_pair(&c_ext, &c_in, 0);
	unix_pair(&u_ext, &u_in);
	struct done_rec d = {0};
	assert_int_equal(lt_write_all(c_ext, "-body", 5), 0);
	shutdown(c_ext, SHUT_WR);
	assert_non_null(lt_fwd_start(fw, c_in, u_in, "GET / HTTP/1.1\r\n\r\n", 18, on_done, &d));
	char buf[64];
	size_t got = 0;
	uint64_t end = lt_now_ns() + LT_SEC(3);
	set_nonblock(u_ext);
	while (lt_now_ns() < end) {
		lt_loop_run_once(loop, 10);
		ssize_t n = read(u_ext, buf + got, sizeof(buf) - got);
		if (n == 0)
			break;
		if (n > 0)
			got += (size_t)n;
	}
	assert_int_equal(got, 23);
	assert_memory_equal(buf, "GET / HTTP/1.1\r\n\r\n-body", 23);
	close(u_ext);
	run_until(&d.done, 3000);
	assert_int_equal(d.st.bytes_up, 23);
	close(c_ext);
}

static void test_abort_and_limits(void **state)
{
	(void)state;
	lim.max_conns = 1;
	reconfigure();
	int c_ext, c_in, u_ext, u_in, c2_ext, c2_in;
	tcp_pair(&c_ext, &c_in, 0);
	unix_pair(&u_ext, &u_in);
	struct done_rec d = {0};
	struct lt_fwd *f = lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d);
	assert_non_null(f);
	tcp_pair(&c2_ext, &c2_in, 0);
	int s2[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s2), 0);
	assert_null(lt_fwd_start(fw, c2_in, s2[1], NULL, 0, on_done, &d));
	assert_non_null(strstr(lt_errmsg(), "too many"));
	close(c2_in);
	close(s2[1]);
	close(s2[0]);
	close(c2_ext);
	lt_fwd_abort(f, true, "instance lost");
	assert_true(atomic_load(&d.done));
	assert_string_equal(d.why, "instance lost");
	char buf[8];
	assert_int_equal(read(c_ext, buf, sizeof(buf)), -1);
	assert_int_equal(errno, ECONNRESET);
	close(c_ext);
	close(u_ext);
}

/* Many short exchanges on many connections at once. */
static void test_many_connections(void **state)
{
	(void)state;
	enum { N = 64 };
	int c_ext[N], u_ext[N];
	struct done_rec d[N];
	memset(d, 0, sizeof(d));
	for (int k = 0; k < N; k++) {
		int c_in, u_in;
		tcp_pair(&c_ext[k], &c_in, 0);
		unix_pair(&u_ext[k], &u_in);
		assert_non_null(lt_fwd_start(fw, c_in, u_in, NULL, 0, on_done, &d[k]));
	}
	assert_int_equal(lt_forwarder_active(fw), N);
	for (int round = 0; round < 20; round++) {
		for (int k = 0; k < N; k++) {
			char msg[32];
			int len = snprintf(msg, sizeof(msg), "ping %d/%d", k, round);
			assert_int_equal(lt_write_all(c_ext[k], msg, (size_t)len), 0);
		}
		for (int k = 0; k < N; k++) {
			char buf[32], want[32];
			int len = snprintf(want, sizeof(want), "ping %d/%d", k, round);
			size_t got = 0;
			while (got < (size_t)len) {
				lt_loop_run_once(loop, 0);
				ssize_t n = recv(u_ext[k], buf + got, (size_t)len - got, MSG_DONTWAIT);
				if (n > 0)
					got += (size_t)n;
			}
			assert_memory_equal(buf, want, (size_t)len);
			assert_int_equal(lt_write_all(u_ext[k], buf, (size_t)len), 0);
		}
		for (int k = 0; k < N; k++) {
			char buf[32];
			size_t got = 0, len = strlen("ping ") + (size_t)snprintf(buf, sizeof(buf), "%d/%d", k, round);
			while (got < len) {
				lt_loop_run_once(loop, 0);
				ssize_t n = recv(c_ext[k], buf, len - got, MSG_DONTWAIT);
				if (n > 0)
					got += (size_t)n;
			}
		}
	}
	for (int k = 0; k < N; k++) {
		close(c_ext[k]);
		close(u_ext[k]);
	}
	for (int k = 0; k < N; k++)
		run_until(&d[k].done, 3000);
	assert_int_equal(lt_forwarder_active(fw), 0);
}

/* ---- the loop itself -------------------------------------------------------------- */

static atomic_int posted;
static void post_fn(void *arg)
{
	atomic_fetch_add(&posted, (int)(intptr_t)arg);
}

static void *poster(void *arg)
{
	(void)arg;
	for (int k = 0; k < 1000; k++)
		lt_loop_post(loop, post_fn, (void *)(intptr_t)1);
	return NULL;
}

static void test_loop_posts_from_threads(void **state)
{
	(void)state;
	atomic_store(&posted, 0);
	pthread_t t[4];
	for (int k = 0; k < 4; k++)
		pthread_create(&t[k], NULL, poster, NULL);
	for (int k = 0; k < 4; k++)
		pthread_join(t[k], NULL);
	uint64_t end = lt_now_ns() + LT_SEC(2);
	while (atomic_load(&posted) < 4000 && lt_now_ns() < end)
		lt_loop_run_once(loop, 10);
	assert_int_equal(atomic_load(&posted), 4000);
}

static int timer_hits;
static void timer_cb(struct lt_timer *t)
{
	(void)t;
	timer_hits++;
}

static void stop_cb(void *arg)
{
	lt_loop_stop(arg);
}

static void test_loop_timers_and_stop(void **state)
{
	(void)state;
	struct lt_timer t1, t2;
	lt_timer_init(&t1, timer_cb);
	lt_timer_init(&t2, timer_cb);
	timer_hits = 0;
	struct lt_clock *c = lt_loop_clock(loop);
	uint64_t t0 = lt_now_ns();
	lt_timer_arm_in(c, &t1, LT_MS(30));
	lt_timer_arm_in(c, &t2, LT_MS(60));
	lt_timer_cancel(c, &t2);
	assert_true(lt_loop_timeout_ms(loop) > 0);
	assert_true(lt_loop_fd(loop) >= 0);
	while (timer_hits == 0)
		lt_loop_run_once(loop, -1);
	assert_true(lt_now_ns() - t0 >= LT_MS(30));
	assert_int_equal(lt_loop_timeout_ms(loop), -1);
	lt_loop_post(loop, stop_cb, loop);
	assert_int_equal(lt_loop_run(loop), 0);
	assert_int_equal(timer_hits, 1);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_integrity_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_integrity_unix_upstream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_integrity_small_pipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounded_buffer_and_stall, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_reset_while_upstream_silent, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefix_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_and_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_posts_from_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_timers_and_stop, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
