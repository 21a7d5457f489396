/* Listeners + pool + forwarder on a real loop with an in-process engine:
 * an instance is an echo server on the same loop, reached through a
 * socketpair. Clients run in threads with blocking sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/proxy.h"

static struct lt_loop *loop;
static struct lt_pool *pool;
static struct lt_proxy *px;

/* ---- in-process engine: echo instances --------------------------------- */

struct echo_end {
	struct lt_watch w;
	int fd;
};

static void echo_event(struct lt_watch *w, uint32_t events)
{
	struct echo_end *e = (struct echo_end *)w;
	char buf[4096];
	(void)events;
	ssize_t n = read(e->fd, buf, sizeof(buf));
	if (n > 0) {
		/* tests send little: a blocking-ish write is fine here */
		if (lt_write_all(e->fd, buf, (size_t)n) == 0)
			return;
	}
	if (n < 0 && errno == EAGAIN)
		return;
	lt_watch_del(&e->w);
	close(e->fd);
	free(e);
}

struct done_post {
	lt_engine_done done;
	void *arg;
	int fd;
};

static void deliver(void *p)
{
	struct done_post *d = p;
	struct lt_engine_result r = {.err = 0, .fd = d->fd};
	d->done(d->arg, &r);
	free(d);
}

static int post(lt_engine_done done, void *arg, int fd)
{
	struct done_post *d = malloc(sizeof(*d));
	d->done = done;
	d->arg = arg;
	d->fd = fd;
	return lt_loop_post(loop, deliver, d);
}

static int e_start(struct lt_engine *e, struct lt_instance *i, const struct lt_app_spec *a,
		   lt_engine_done done, void *arg)
{
	(void)e;
	(void)i;
	(void)a;
	return post(done, arg, -1);
}
static int e_restore(struct lt_engine *e, struct lt_instance *i, const struct lt_app_spec *a,
		     struct lt_shell *s, lt_engine_done done, void *arg)
{
	(void)s;
	return e_start(e, i, a, done, arg);
}
static int e_op(struct lt_engine *e, struct lt_instance *i, lt_engine_done done, void *arg)
{
	(void)e;
	(void)i;
	return post(done, arg, -1);
}
static int e_connect(struct lt_engine *e, struct lt_instance *i, uint16_t port, uint64_t t,
		     lt_engine_done done, void *arg)
{
	(void)e;
	(void)i;
	(void)port;
	(void)t;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return lt_fail_errno("socketpair");
	struct echo_end *ee = calloc(1, sizeof(*ee));
	ee->fd = sv[1];
	lt_watch_add(loop, &ee->w, sv[1], EPOLLIN, echo_event);
	return post(done, arg, sv[0]);
}

static const struct lt_engine_ops echo_ops = {
	.name = "echo",
	.boot = e_start,
	.restore = e_restore,
	.pause = e_op,
	.resume = e_op,
	.connect = e_connect,
	.stop = e_op,
};
static struct lt_engine engine = {.ops = &echo_ops};

/* ---- client threads ------------------------------------------------------- */

struct client {
	uint16_t port;
	const char *send;
	bool half_close;
	int timeout_ms; /* read timeout; 0: 5 s */
	char got[8192];
	size_t len;
	int err;
	atomic_bool done;
};

static void *client_fn(void *arg)
{
	struct client *c = arg;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int ms = c->timeout_ms ? c->timeout_ms : 5000;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		c->err = errno;
		goto out;
	}
	if (c->send && lt_write_all(fd, c->send, strlen(c->send)) < 0)
		c->err = errno;
	if (c->half_close)
		shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n = read(fd, c->got + c->len, sizeof(c->got) - 1 - c->len);
		if (n <= 0) {
			if (n < 0)
				c->err = errno;
			break;
		}
		c->len += (size_t)n;
	}
out:
	c->got[c->len] = '\0';
	close(fd);
	atomic_store(&c->done, true);
	return NULL;
}

static void run_client(struct client *c)
{
	pthread_t t;
	pthread_create(&t, NULL, client_fn, c);
	uint64_t end = lt_now_ns() + LT_SEC(8);
	while (!atomic_load(&c->done) && lt_now_ns() < end)
		lt_loop_run_once(loop, 10);
	pthread_join(t, NULL);
	assert_true(atomic_load(&c->done));
}

/* ---- fixtures -------------------------------------------------------------- */

static struct lt_policy pol;
static struct lt_proxy_config cfg;

static int setup(void **state)
{
	(void)state;
	loop = lt_loop_new();
	pool = lt_pool_new(lt_loop_clock(loop));
	lt_policy_defaults(&pol);
	pol.shells = 0;
	lt_proxy_config_defaults(&cfg);
	px = lt_proxy_new(loop, pool, &cfg);
	return px ? 0 : -1;
}

static bool shut;
static void shut_done(void *arg)
{
	(void)arg;
	shut = true;
}

static int teardown(void **state)
{
	(void)state;
	lt_proxy_free(px);
	shut = false;
	lt_pool_shutdown(pool, shut_done, NULL);
	uint64_t end = lt_now_ns() + LT_SEC(5);
	while (!shut && lt_now_ns() < end)
		lt_loop_run_once(loop, 10);
	assert_true(shut);
	lt_pool_free(pool);
	lt_loop_free(loop);
	return 0;
}

static struct lt_app *app(const char *name)
{
	struct lt_app_spec spec = {.name = name, .snapshot = "/snap"};
	struct lt_app *a = lt_pool_add_app(pool, &engine, &spec, &pol);
	assert_non_null(a);
	return a;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_tcp_listener_echo(void **state)
{
	(void)state;
	struct lt_app *a = app("echo");
	struct lt_listener *l = lt_proxy_listen_tcp(px, "127.0.0.1:0", a, 7);
	assert_non_null(l);
	assert_true(lt_listener_port(l) > 0);
	struct client c = {.port = lt_listener_port(l), .send = "hello proxy", .half_close = true};
	run_client(&c);
	assert_int_equal(c.err, 0);
	assert_string_equal(c.got, "hello proxy");
	struct lt_app_stats st;
	lt_app_get_stats(a, &st);
	assert_int_equal(st.served, 1);
	assert_int_equal(st.restores, 1);
	struct lt_buf b = {0};
	assert_int_equal(lt_proxy_metrics(px, &b), 0);
	lt_buf_cstr(&b);
	assert_non_null(strstr((char *)b.data, "lttle_proxy_accepted_total 1\n"));
	lt_buf_free(&b);
}

static void test_http_routes_and_errors(void **state)
{
	(void)state;
	struct lt_app *a = app("site");
	struct lt_listener *l = lt_proxy_listen_http(px, "127.0.0.1:0");
	assert_non_null(l);
	assert_int_equal(lt_listener_route(l, "Site.Example", a, 80), 0);
	uint16_t port = lt_listener_port(l);
	/* routed: the echo instance returns the head (the prefix) and body */
	const char *req = "GET / HTTP/1.1\r\nHost: site.example:99\r\n\r\nbody!";
	struct client c = {.port = port, .send = req, .half_close = true};
	run_client(&c);
	assert_int_equal(c.err, 0);
	assert_string_equal(c.got, req);
	/* unknown host */
	struct client c2 = {.port = port, .send = "GET / HTTP/1.1\r\nHost: other\r\n\r\n"};
	run_client(&c2);
	assert_non_null(strstr(c2.got, "HTTP/1.1 404 Not Found\r\n"));
	assert_non_null(strstr(c2.got, "no app serves host 'other'"));
	/* routes dropped with the app */
	lt_proxy_forget_app(px, a);
	struct client c3 = {.port = port, .send = req};
	run_client(&c3);
	assert_non_null(strstr(c3.got, "404"));
	assert_int_not_equal(lt_listener_unroute(l, "site.example"), 0);
}

static void test_http_503_at_queue_timeout(void **state)
{
	(void)state;
	pol.max = 1;
	pol.concurrency = 1;
	pol.queue_timeout = LT_MS(300);
	struct lt_app *a = app("busy");
	struct lt_listener *l = lt_proxy_listen_http(px, "127.0.0.1:0");
	lt_listener_route(l, "busy", a, 80);
	struct lt_listener *t = lt_proxy_listen_tcp(px, "127.0.0.1:0", a, 80);
	/* the holder keeps the only slot (never half-closes) */
	struct client holder = {.port = lt_listener_port(t), .send = "x"};
	pthread_t th;
	pthread_create(&th, NULL, client_fn, &holder);
	uint64_t end = lt_now_ns() + LT_SEC(2);
	struct lt_app_stats st = {0};
	while (lt_now_ns() < end) {
		lt_loop_run_once(loop, 10);
		lt_app_get_stats(a, &st);
		if (st.served == 1)
			break;
	}
	assert_int_equal(st.served, 1);
	struct client c = {.port = lt_listener_port(l), .send = "GET / HTTP/1.1\r\nHost: busy\r\n\r\n"};
	uint64_t t0 = lt_now_ns();
	run_client(&c);
	assert_true(lt_now_ns() - t0 >= LT_MS(280));
	assert_non_null(strstr(c.got, "HTTP/1.1 503 Service Unavailable\r\n"));
	assert_non_null(strstr(c.got, "no instance of busy within 300 ms"));
	/* plain TCP: closed after the same wait */
	struct client c2 = {.port = lt_listener_port(t), .send = "y"};
	run_client(&c2);
	assert_int_equal(c2.len, 0);
	lt_listener_close(t); /* the holder's forwarded connection survives */
	while (!atomic_load(&holder.done))
		lt_loop_run_once(loop, 10);
	pthread_join(th, NULL);
	assert_string_equal(holder.got, "x"); /* echoed, then SO_RCVTIMEO */
}

static void test_listener_close_mid_head(void **state)
{
	(void)state;
	struct lt_listener *l = lt_proxy_listen_http(px, "127.0.0.1:0");
	struct client c = {.port = lt_listener_port(l), .send = "GET / HTTP/1.1\r\nHo"};
	pthread_t th;
	pthread_create(&th, NULL, client_fn, &c);
	uint64_t end = lt_now_ns() + LT_SEC(2);
	while (lt_proxy_active(px) == 0 && lt_now_ns() < end)
		lt_loop_run_once(loop, 10);
	assert_int_equal(lt_proxy_active(px), 1);
	for (int k = 0; k < 5; k++)
		lt_loop_run_once(loop, 10);
	lt_listener_close(l);
	assert_int_equal(lt_proxy_active(px), 0);
	while (!atomic_load(&c.done))
		lt_loop_run_once(loop, 10);
	pthread_join(th, NULL);
	assert_int_equal(c.len, 0);
}

static void test_connection_limit_pauses_accepts(void **state)
{
	(void)state;
	lt_proxy_free(px);
	cfg.fwd.max_conns = 1;
	px = lt_proxy_new(loop, pool, &cfg);
	struct lt_app *a = app("lim");
	struct lt_listener *l = lt_proxy_listen_tcp(px, "127.0.0.1:0", a, 7);
	struct client first = {.port = lt_listener_port(l), .send = "1", .timeout_ms = 1500};
	pthread_t th;
	pthread_create(&th, NULL, client_fn, &first);
	uint64_t end = lt_now_ns() + LT_SEC(2);
	while (lt_proxy_active(px) == 0 && lt_now_ns() < end)
		lt_loop_run_once(loop, 10);
	/* the second waits in the kernel backlog until the first is gone */
	struct client second = {.port = lt_listener_port(l), .send = "2", .half_close = true};
	pthread_t th2;
	pthread_create(&th2, NULL, client_fn, &second);
	end = lt_now_ns() + LT_MS(500);
	while (lt_now_ns() < end)
		lt_loop_run_once(loop, 10);
	assert_int_equal(lt_proxy_active(px), 1);
	assert_false(atomic_load(&second.done));
	while (!atomic_load(&first.done)) /* SO_RCVTIMEO ends it */
		lt_loop_run_once(loop, 10);
	while (!atomic_load(&second.done))
		lt_loop_run_once(loop, 10);
	pthread_join(th, NULL);
	pthread_join(th2, NULL);
	assert_string_equal(second.got, "2");
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tcp_listener_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_routes_and_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_503_at_queue_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_close_mid_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_limit_pauses_accepts, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
