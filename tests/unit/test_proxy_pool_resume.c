/* The pool at max=1: its one paused instance is resumed for the next
 * connection (it is already counted in max, so the max check must not
 * stop the resume tier). A fake clock and a fake engine whose operations
 * complete 1 ms after they start. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/proxy.h"

static uint64_t fake_now;
static uint64_t fake_clock_now(struct lt_clock *c)
{
	(void)c;
	return fake_now;
}
static struct lt_clock clk = {.now = fake_clock_now};

/* Moves time forward, firing timers at their own deadlines. */
static void advance_ms(uint64_t ms)
{
	uint64_t target = fake_now + LT_MS(ms);
	for (;;) {
		uint64_t next = lt_clock_next(&clk);
		if (next > target)
			break;
		if (next > fake_now)
			fake_now = next;
		lt_clock_run(&clk, fake_now);
	}
	fake_now = target;
}

/* ---- fake engine: every op completes after 1 ms ------------------------------ */

enum { K_START, K_PAUSE, K_RESUME, K_CONNECT, K_STOP, K_KINDS };

struct fop {
	struct lt_timer t; /* first: the timer callback casts back */
	int kind;
	lt_engine_done done;
	void *arg;
	struct fop *next;
};

static struct fop *ops;
static int calls[K_KINDS];
static int live;
static int devnull = -1;

static void fop_fired(struct lt_timer *t)
{
	struct fop *op = (struct fop *)t;
	for (struct fop **pp = &ops; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	struct lt_engine_result r = {.fd = -1};
	if (op->kind == K_CONNECT)
		r.fd = dup(devnull);
	if (op->kind == K_START)
		live++;
	if (op->kind == K_STOP)
		live--;
	lt_engine_done done = op->done;
	void *arg = op->arg;
	free(op);
	done(arg, &r);
}

static int fop_start(int kind, lt_engine_done done, void *arg)
{
	calls[kind]++;
	struct fop *op = calloc(1, sizeof(*op));
	if (!op)
		return lt_fail("out of memory");
	op->kind = kind;
	op->done = done;
	op->arg = arg;
	op->next = ops;
	ops = op;
	lt_timer_init(&op->t, fop_fired);
	lt_timer_arm_in(&clk, &op->t, LT_MS(1));
	return 0;
}

static int f_boot(struct lt_engine *e, struct lt_instance *inst, const struct lt_app_spec *app,
		  lt_engine_done done, void *arg)
{
	(void)e, (void)inst, (void)app;
	return fop_start(K_START, done, arg);
}

static int f_restore(struct lt_engine *e, struct lt_instance *inst,
		     const struct lt_app_spec *app, struct lt_shell *shell, lt_engine_done done,
		     void *arg)
{
	(void)e, (void)inst, (void)app, (void)shell;
	return fop_start(K_START, done, arg);
}

static int f_pause(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	(void)e, (void)inst;
	return fop_start(K_PAUSE, done, arg);
}

static int f_resume(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done,
		    void *arg)
{
	(void)e, (void)inst;
	return fop_start(K_RESUME, done, arg);
}

static int f_connect(struct lt_engine *e, struct lt_instance *inst, uint16_t port,
		     uint64_t timeout, lt_engine_done done, void *arg)
{
	(void)e, (void)inst, (void)port, (void)timeout;
	return fop_start(K_CONNECT, done, arg);
}

static int f_stop(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	(void)e, (void)inst;
	return fop_start(K_STOP, done, arg);
}

static const struct lt_engine_ops fake_ops = {
	.name = "fake",
	.boot = f_boot,
	.restore = f_restore,
	.pause = f_pause,
	.resume = f_resume,
	.connect = f_connect,
	.stop = f_stop,
};
static struct lt_engine engine = {.ops = &fake_ops};

/* ---- connections ---------------------------------------------------------------- */

enum { C_WAIT, C_READY, C_REFUSED };
struct tconn {
	int state, fd;
	enum lt_tier tier;
	struct lt_pool_conn *pc;
};

static void t_ready(void *ctx, struct lt_pool_conn *pc, int fd)
{
	struct tconn *c = ctx;
	c->state = C_READY;
	c->fd = fd;
	c->pc = pc;
	c->tier = lt_pool_conn_tier(pc);
}

static void t_refused(void *ctx, const char *reason)
{
	(void)reason;
	struct tconn *c = ctx;
	c->state = C_REFUSED;
}

static void t_lost(void *ctx, const char *reason)
{
	(void)ctx, (void)reason;
	fail_msg("connection lost");
}

static const struct lt_acquire_ops tops = {t_ready, t_refused, t_lost};

static void acquire(struct lt_app *a, struct tconn *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->pc = lt_app_acquire(a, 80, &tops, c);
}

static void release(struct tconn *c)
{
	assert_int_equal(c->state, C_READY);
	close(c->fd);
	lt_pool_conn_release(c->pc, 10, 20);
}

static void shutdown_done(void *arg)
{
	*(bool *)arg = true;
}

static void test_max1_resumes_its_paused_instance(void **state)
{
	(void)state;
	fake_now = LT_SEC(1000);
	if (devnull < 0)
		devnull = open("/dev/null", O_RDWR);
	struct lt_pool *pool = lt_pool_new(&clk);
	assert_non_null(pool);
	struct lt_policy pol;
	lt_policy_defaults(&pol);
	pol.max = 1;
	pol.shells = 0;
	pol.idle_timeout = LT_MS(5);
	pol.scale_down = LT_SEC(600);
	pol.queue_timeout = LT_SEC(2);
	struct lt_app_spec spec = {.name = "web", .snapshot = "/snap/web"};
	struct lt_app *a = lt_pool_add_app(pool, &engine, &spec, &pol);
	assert_non_null(a);

	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	assert_int_equal(c.state, C_READY);
	assert_int_equal(c.tier, LT_TIER_RESTORE);
	release(&c);
	for (int round = 1; round <= 3; round++) {
		advance_ms(20); /* idle, paused, never dropped */
		struct lt_app_stats st;
		lt_app_get_stats(a, &st);
		assert_int_equal(st.pauses, round);
		struct lt_instance_info info;
		lt_instance_get_info(lt_app_first_instance(a), &info);
		assert_int_equal(info.state, LT_INST_PAUSED);
		acquire(a, &c);
		advance_ms(5);
		assert_int_equal(c.state, C_READY); /* not left to the queue timeout */
		assert_int_equal(c.tier, LT_TIER_RESUME);
		release(&c);
	}
	assert_int_equal(calls[K_START], 1);
	assert_int_equal(calls[K_RESUME], 3);

	bool done = false;
	lt_pool_shutdown(pool, shutdown_done, &done);
	for (int k = 0; k < 100 && !done; k++)
		advance_ms(10);
	assert_true(done);
	lt_pool_free(pool);
	assert_int_equal(live, 0);
	assert_null(ops);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max1_resumes_its_paused_instance),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
