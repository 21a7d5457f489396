/* The pool/acquire state machine, driven by a fake clock and a fake engine
 * whose operations complete after configurable delays (or by hand). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/proxy.h"

/* ---- fake clock --------------------------------------------------------- */

static uint64_t fake_now;
static uint64_t fake_clock_now(struct lt_clock *c)
{
	(void)c;
	return fake_now;
}
static struct lt_clock clk = {.now = fake_clock_now};

/* Moves time forward, firing timers at their own deadlines. */
static void advance_ns(uint64_t d)
{
	uint64_t target = fake_now + d;
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
static void advance_ms(uint64_t ms)
{
	advance_ns(LT_MS(ms));
}

/* ---- fake engine -------------------------------------------------------- */

enum op_kind { OP_BOOT, OP_RESTORE, OP_PAUSE, OP_RESUME, OP_CONNECT, OP_STOP, OP_SHELL, OP_KINDS };
static const char *const kind_names[] = {"boot", "restore", "pause", "resume",
					 "connect", "stop", "shell"};
#define MANUAL UINT64_MAX

struct fop {
	struct lt_timer t;
	enum op_kind kind;
	struct lt_instance *inst;
	lt_engine_done done;
	void *arg;
	struct fop *next; /* every op in flight is on fe.ops */
	bool manual;
};

struct fshell {
	int id;
};

struct finst {
	bool stopped;
	char snapshot[128];
	bool with_shell;
};

static struct {
	uint64_t delay[OP_KINDS];
	int fail_next[OP_KINDS];  /* fail this many of the next ops */
	int refuse_next[OP_KINDS]; /* fail synchronously */
	bool snapshot_bad;        /* restores report a bad snapshot */
	bool sync_snapshot_bad;   /* restore returns LT_ENGINE_ESNAPSHOT */
	int calls[OP_KINDS];
	int live, max_live;
	int shells_alive;
	struct fop *ops; /* in flight, FIFO */
	char last_snapshot[128];
	int stop_calls_during_start;
} fe;

static int devnull = -1;

static void unlink_op(struct fop *op)
{
	for (struct fop **pp = &fe.ops; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			return;
		}
}

static void fop_complete(struct fop *op, bool fail)
{
	unlink_op(op);
	lt_timer_cancel(&clk, &op->t);
	struct lt_engine_result r = {.fd = -1};
	char msg[64];
	if (fail) {
		snprintf(msg, sizeof(msg), "fake %s failure", kind_names[op->kind]);
		r.err = -1;
		r.msg = msg;
		if (op->kind == OP_RESTORE && fe.snapshot_bad)
			r.snapshot_bad = true;
	}
	if (op->kind == OP_CONNECT && !fail)
		r.fd = dup(devnull);
	if (op->kind == OP_SHELL && !fail) {
		struct fshell *s = calloc(1, sizeof(*s));
		s->id = fe.calls[OP_SHELL];
		fe.shells_alive++;
		r.shell = (struct lt_shell *)s;
	}
	struct finst *fi = op->inst ? lt_instance_engine_data(op->inst) : NULL;
	if ((op->kind == OP_BOOT || op->kind == OP_RESTORE) && !fail) {
		fe.live++;
		if (fe.live > fe.max_live)
			fe.max_live = fe.live;
	}
	if ((op->kind == OP_BOOT || op->kind == OP_RESTORE) && fail) {
		free(fi);
		lt_instance_set_engine_data(op->inst, NULL);
	}
	if (op->kind == OP_STOP) {
		if (fi && !fi->stopped)
			fe.live--;
		free(fi);
	}
	lt_engine_done done = op->done;
	void *arg = op->arg;
	free(op);
	done(arg, &r);
}

static bool take_failure(enum op_kind k)
{
	if (fe.fail_next[k] > 0) {
		fe.fail_next[k]--;
		return true;
	}
	return k == OP_RESTORE && fe.snapshot_bad;
}

static void fop_fired(struct lt_timer *t)
{
	struct fop *op = (struct fop *)t;
	fop_complete(op, take_failure(op->kind));
}

static int fop_start(enum op_kind k, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	fe.calls[k]++;
	if (fe.refuse_next[k] > 0) {
		fe.refuse_next[k]--;
		return lt_fail("fake %s refused", kind_names[k]);
	}
	struct fop *op = calloc(1, sizeof(*op));
	op->kind = k;
	op->inst = inst;
	op->done = done;
	op->arg = arg;
	lt_timer_init(&op->t, fop_fired);
	struct fop **pp = &fe.ops;
	while (*pp)
		pp = &(*pp)->next;
	*pp = op;
	op->manual = fe.delay[k] == MANUAL;
	if (!op->manual)
		lt_timer_arm_in(&clk, &op->t, fe.delay[k]);
	return 0;
}

/* Completes the oldest manual op of kind k. */
static void complete(enum op_kind k, bool fail)
{
	for (struct fop *op = fe.ops; op; op = op->next) {
		if (op->kind == k && op->manual) {
			fop_complete(op, fail);
			return;
		}
	}
	fail_msg("no pending %s op", kind_names[k]);
}

static int count_pending(enum op_kind k)
{
	int n = 0;
	for (struct fop *op = fe.ops; op; op = op->next)
		n += op->kind == k && op->manual;
	return n;
}

static int f_boot(struct lt_engine *e, struct lt_instance *inst, const struct lt_app_spec *app,
		  lt_engine_done done, void *arg)
{
	(void)e;
	(void)app;
	lt_instance_set_engine_data(inst, calloc(1, sizeof(struct finst)));
	return fop_start(OP_BOOT, inst, done, arg);
}

static int f_restore(struct lt_engine *e, struct lt_instance *inst,
		     const struct lt_app_spec *app, struct lt_shell *shell, lt_engine_done done,
		     void *arg)
{
	(void)e;
	if (shell) {
		free(shell);
		fe.shells_alive--;
	}
	snprintf(fe.last_snapshot, sizeof(fe.last_snapshot), "%s", app->snapshot);
	if (fe.sync_snapshot_bad) {
		fe.calls[OP_RESTORE]++;
		lt_fail("fake: snapshot %s has a bad checksum", app->snapshot);
		return LT_ENGINE_ESNAPSHOT;
	}
	struct finst *fi = calloc(1, sizeof(*fi));
	snprintf(fi->snapshot, sizeof(fi->snapshot), "%s", app->snapshot);
	fi->with_shell = shell != NULL;
	lt_instance_set_engine_data(inst, fi);
	int rc = fop_start(OP_RESTORE, inst, done, arg);
	if (rc < 0) {
		free(fi);
		lt_instance_set_engine_data(inst, NULL);
	}
	return rc;
}

static int f_pause(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	(void)e;
	return fop_start(OP_PAUSE, inst, done, arg);
}

static int f_resume(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done,
		    void *arg)
{
	(void)e;
	return fop_start(OP_RESUME, inst, done, arg);
}

static int f_connect(struct lt_engine *e, struct lt_instance *inst, uint16_t port,
		     uint64_t timeout, lt_engine_done done, void *arg)
{
	(void)e;
	(void)port;
	(void)timeout;
	return fop_start(OP_CONNECT, inst, done, arg);
}

static int f_stop(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	(void)e;
	/* Contract: stop completes after the instance's other completions. */
	for (struct fop *op = fe.ops, *n; op; op = n) {
		n = op->next;
		if (op->inst == inst && op->kind != OP_STOP) {
			if (op->kind == OP_BOOT || op->kind == OP_RESTORE)
				fe.stop_calls_during_start++;
			fop_complete(op, true);
			n = fe.ops; /* the list may have changed */
		}
	}
	return fop_start(OP_STOP, inst, done, arg);
}

static int f_shell_create(struct lt_engine *e, const struct lt_app_spec *app,
			  lt_engine_done done, void *arg)
{
	(void)e;
	(void)app;
	return fop_start(OP_SHELL, NULL, done, arg);
}

static void f_shell_destroy(struct lt_engine *e, struct lt_shell *s)
{
	(void)e;
	free(s);
	fe.shells_alive--;
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
static const struct lt_engine_ops fake_shell_ops = {
	.name = "fake-shells",
	.boot = f_boot,
	.restore = f_restore,
	.pause = f_pause,
	.resume = f_resume,
	.connect = f_connect,
	.stop = f_stop,
	.shell_create = f_shell_create,
	.shell_destroy = f_shell_destroy,
};
static struct lt_engine engine = {.ops = &fake_ops};
static struct lt_engine shell_engine = {.ops = &fake_shell_ops};

/* ---- test connections ------------------------------------------------------ */

enum { C_WAIT, C_READY, C_REFUSED, C_LOST, C_RELEASED };
struct tconn {
	int state;
	int fd;
	struct lt_pool_conn *pc;
	enum lt_tier tier;
	char inst[96];
	char reason[256];
	uint64_t ready_at;
};

static bool in_call; /* callbacks must never run inside a pool call */

static void t_ready(void *ctx, struct lt_pool_conn *pc, int fd)
{
	struct tconn *c = ctx;
	assert_false(in_call);
	assert_int_equal(c->state, C_WAIT);
	c->state = C_READY;
	c->fd = fd;
	c->pc = pc;
	c->tier = lt_pool_conn_tier(pc);
	snprintf(c->inst, sizeof(c->inst), "%s", lt_pool_conn_instance(pc));
	c->ready_at = fake_now;
}

static void t_refused(void *ctx, const char *reason)
{
	struct tconn *c = ctx;
	assert_false(in_call);
	assert_int_equal(c->state, C_WAIT);
	c->state = C_REFUSED;
	c->pc = NULL;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

static void t_lost(void *ctx, const char *reason)
{
	struct tconn *c = ctx;
	assert_false(in_call);
	assert_int_equal(c->state, C_READY);
	c->state = C_LOST;
	c->pc = NULL;
	close(c->fd);
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

static const struct lt_acquire_ops tops = {t_ready, t_refused, t_lost};

static struct lt_pool_conn *acquire(struct lt_app *a, struct tconn *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	in_call = true;
	struct lt_pool_conn *pc = lt_app_acquire(a, 80, &tops, c);
	in_call = false;
	c->pc = pc;
	return pc;
}

static void release(struct tconn *c)
{
	assert_int_equal(c->state, C_READY);
	close(c->fd);
	in_call = true;
	lt_pool_conn_release(c->pc, 10, 20);
	in_call = false;
	c->state = C_RELEASED;
	c->pc = NULL;
}

/* ---- fixtures ---------------------------------------------------------------- */

static struct lt_pool *pool;
static struct lt_policy pol;
static int events_degraded;

static void observer(void *ctx, const struct lt_pool_event *ev)
{
	(void)ctx;
	if (ev->kind == LT_EV_DEGRADED)
		events_degraded++;
}

static int setup(void **state)
{
	(void)state;
	fake_now = LT_SEC(1000);
	clk.root = NULL;
	memset(&fe, 0, sizeof(fe));
	fe.delay[OP_BOOT] = LT_MS(1500);
	fe.delay[OP_RESTORE] = LT_MS(5);
	fe.delay[OP_PAUSE] = LT_MS(1);
	fe.delay[OP_RESUME] = LT_MS(1);
	fe.delay[OP_CONNECT] = LT_MS(0);
	fe.delay[OP_STOP] = LT_MS(2);
	fe.delay[OP_SHELL] = LT_MS(20);
	lt_policy_defaults(&pol);
	pol.shells = 0;
	pol.idle_timeout = LT_SEC(1);
	pol.scale_down = LT_SEC(10);
	pol.queue_timeout = LT_SEC(2);
	events_degraded = 0;
	if (devnull < 0)
		devnull = open("/dev/null", O_RDWR);
	pool = lt_pool_new(&clk);
	lt_pool_set_observer(pool, observer, NULL);
	return pool ? 0 : -1;
}

static void shutdown_done(void *arg)
{
	*(bool *)arg = true;
}

static int teardown(void **state)
{
	(void)state;
	bool done = false;
	lt_pool_shutdown(pool, shutdown_done, &done);
	for (int k = 0; k < 1000 && !done; k++) {
		for (struct fop *op = fe.ops; op; op = fe.ops) {
			while (op && !op->manual)
				op = op->next;
			if (!op)
				break;
			fop_complete(op, false);
		}
		advance_ms(100);
	}
	assert_true(done);
	lt_pool_free(pool);
	pool = NULL;
	assert_int_equal(fe.live, 0);
	assert_int_equal(fe.shells_alive, 0);
	assert_null(clk.root); /* nothing left armed */
	return 0;
}

static struct lt_app *add_app(const char *snapshot, struct lt_engine *e)
{
	struct lt_app_spec spec = {.name = "web", .snapshot = snapshot};
	struct lt_app *a = lt_pool_add_app(pool, e ? e : &engine, &spec, &pol);
	assert_non_null(a);
	return a;
}

static struct lt_app_stats stats(struct lt_app *a)
{
	struct lt_app_stats st;
	lt_app_get_stats(a, &st);
	return st;
}

static struct lt_instance *only_instance(struct lt_app *a)
{
	struct lt_instance *i = lt_app_first_instance(a);
	assert_non_null(i);
	assert_null(lt_instance_next(i));
	return i;
}

static enum lt_inst_state state_of(struct lt_instance *i)
{
	struct lt_instance_info info;
	lt_instance_get_info(i, &info);
	return info.state;
}

/* ---- tiers ---------------------------------------------------------------------- */

static void test_cold_boot_without_snapshot(void **state)
{
	(void)state;
	struct lt_app *a = add_app(NULL, NULL);
	struct tconn c;
	assert_non_null(acquire(a, &c));
	assert_int_equal(c.state, C_WAIT);
	assert_int_equal(fe.calls[OP_BOOT], 1);
	assert_int_equal(fe.calls[OP_RESTORE], 0);
	advance_ms(1499);
	assert_int_equal(c.state, C_WAIT);
	advance_ms(1);
	assert_int_equal(c.state, C_READY);
	assert_int_equal(c.tier, LT_TIER_COLD);
	assert_int_equal(stats(a).cold_boots, 1);
	struct lt_instance_info info;
	lt_instance_get_info(only_instance(a), &info);
	assert_int_equal(info.started_by, LT_BY_COLD);
	assert_int_equal(info.state, LT_INST_RUNNING);
	release(&c);
	assert_int_equal(stats(a).bytes_in, 10);
	assert_int_equal(stats(a).bytes_out, 20);
}

static void test_restore_then_idle(void **state)
{
	(void)state;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c1, c2;
	acquire(a, &c1);
	assert_int_equal(fe.calls[OP_RESTORE], 1);
	assert_int_equal(fe.calls[OP_BOOT], 0);
	assert_string_equal(fe.last_snapshot, "/snap/web");
	advance_ms(5);
	assert_int_equal(c1.state, C_READY);
	assert_int_equal(c1.tier, LT_TIER_RESTORE);
	release(&c1);
	/* tier 1: the idle instance, nothing new started */
	acquire(a, &c2);
	advance_ms(0);
	assert_int_equal(c2.state, C_READY);
	assert_int_equal(c2.tier, LT_TIER_IDLE);
	assert_string_equal(c2.inst, c1.inst);
	assert_int_equal(fe.calls[OP_RESTORE], 1);
	assert_int_equal(stats(a).restores, 1);
	assert_int_equal(stats(a).served, 2);
	release(&c2);
}

static void test_busy_with_spare_concurrency(void **state)
{
	(void)state;
	pol.concurrency = 2;
	pol.max = 1;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c[4];
	acquire(a, &c[0]);
	acquire(a, &c[1]); /* covered by the starting instance's second slot */
	assert_int_equal(fe.calls[OP_RESTORE], 1);
	advance_ms(5);
	assert_int_equal(c[0].state, C_READY);
	assert_int_equal(c[1].state, C_READY);
	assert_int_equal(c[0].tier, LT_TIER_RESTORE);
	assert_int_equal(c[1].tier, LT_TIER_RESTORE);
	release(&c[1]);
	/* tier 2: busy instance with a free slot */
	acquire(a, &c[2]);
	advance_ms(0);
	assert_int_equal(c[2].state, C_READY);
	assert_int_equal(c[2].tier, LT_TIER_BUSY);
	/* full and at max: tier 7, the queue */
	acquire(a, &c[3]);
	advance_ms(100);
	assert_int_equal(c[3].state, C_WAIT);
	assert_int_equal(stats(a).queued, 1);
	assert_int_equal(fe.calls[OP_RESTORE], 1);
	release(&c[0]);
	advance_ms(0);
	assert_int_equal(c[3].state, C_READY);
	assert_int_equal(c[3].tier, LT_TIER_QUEUE);
	assert_int_equal(fe.max_live, 1);
	release(&c[2]);
	release(&c[3]);
}

static void test_pause_then_resume(void **state)
{
	(void)state;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	release(&c);
	struct lt_instance *i = only_instance(a);
	advance_ms(999);
	assert_int_equal(state_of(i), LT_INST_RUNNING);
	advance_ms(1);
	assert_int_equal(state_of(i), LT_INST_PAUSING);
	advance_ms(1);
	assert_int_equal(state_of(i), LT_INST_PAUSED);
	assert_int_equal(stats(a).pauses, 1);
	/* tier 3 */
	acquire(a, &c);
	assert_int_equal(state_of(i), LT_INST_RESUMING);
	advance_ms(1);
	assert_int_equal(c.state, C_READY);
	assert_int_equal(c.tier, LT_TIER_RESUME);
	assert_int_equal(stats(a).resumes, 1);
	assert_int_equal(fe.calls[OP_RESTORE], 1);
	struct lt_instance_info info;
	lt_instance_get_info(i, &info);
	assert_int_equal(info.started_by, LT_BY_RESUME);
	/* an instance with an open connection is never paused */
	advance_ms(5000);
	assert_int_equal(state_of(i), LT_INST_RUNNING);
	release(&c);
}

static void test_scale_down_then_restore(void **state)
{
	(void)state;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	release(&c);
	advance_ms(1001); /* paused */
	assert_int_equal(state_of(only_instance(a)), LT_INST_PAUSED);
	advance_ms(10000); /* dropped */
	assert_int_equal(stats(a).drops, 1);
	advance_ms(2);
	assert_null(lt_app_first_instance(a));
	assert_int_equal(fe.live, 0);
	acquire(a, &c);
	advance_ms(5);
	assert_int_equal(c.state, C_READY);
	assert_int_equal(c.tier, LT_TIER_RESTORE);
	assert_int_equal(stats(a).restores, 2);
	release(&c);
}

static void test_shell_tier_and_refill(void **state)
{
	(void)state;
	pol.shells = 1;
	pol.concurrency = 1;
	struct lt_app *a = add_app("/snap/web", &shell_engine);
	assert_int_equal(fe.calls[OP_SHELL], 1);
	advance_ms(20);
	assert_int_equal(stats(a).shells_ready, 1);
	struct tconn c1, c2;
	acquire(a, &c1); /* tier 4: restore into the shell */
	assert_int_equal(stats(a).shells_ready, 0);
	/* The refill waits until the wake that took the shell is served. */
	assert_int_equal(fe.calls[OP_SHELL], 1);
	acquire(a, &c2); /* no shell ready yet: tier 5 */
	advance_ms(5);
	assert_int_equal(c1.state, C_READY);
	assert_int_equal(c2.state, C_READY);
	assert_int_equal(c1.tier, LT_TIER_SHELL);
	assert_int_equal(c2.tier, LT_TIER_RESTORE);
	assert_int_equal(stats(a).shell_restores, 1);
	assert_int_equal(stats(a).restores, 2);
	assert_int_equal(fe.calls[OP_SHELL], 1);
	advance_ms(15); /* 20 ms after the take */
	assert_int_equal(fe.calls[OP_SHELL], 2);
	advance_ms(20);
	assert_int_equal(stats(a).shells_ready, 1);
	assert_int_equal(fe.shells_alive, 1);
	release(&c1);
	release(&c2);
}

static void test_shell_failure_backs_off(void **state)
{
	(void)state;
	pol.shells = 2;
	fe.fail_next[OP_SHELL] = 2;
	struct lt_app *a = add_app("/snap/web", &shell_engine);
	assert_int_equal(fe.calls[OP_SHELL], 2);
	advance_ms(20); /* both fail */
	assert_int_equal(stats(a).shells_ready, 0);
	advance_ms(100);
	assert_int_equal(fe.calls[OP_SHELL], 2); /* backing off */
	advance_ms(200);
	assert_int_equal(fe.calls[OP_SHELL], 4);
	advance_ms(20);
	assert_int_equal(stats(a).shells_ready, 2);
}

/* ---- cancellation ------------------------------------------------------------------ */

static void test_connection_cancels_pause_without_waiting(void **state)
{
	(void)state;
	pol.max = 2;
	fe.delay[OP_PAUSE] = MANUAL;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c1, c2;
	acquire(a, &c1);
	advance_ms(5);
	release(&c1);
	advance_ms(1000);
	struct lt_instance *i = only_instance(a);
	assert_int_equal(state_of(i), LT_INST_PAUSING);
	/* arrives mid-pause: the pause is cancelled, and the connection takes
	 * another path (a restore) rather than wait on the pause */
	acquire(a, &c2);
	assert_int_equal(fe.calls[OP_RESTORE], 2);
	advance_ms(5);
	assert_int_equal(c2.state, C_READY);
	assert_int_equal(c2.tier, LT_TIER_RESTORE);
	assert_string_not_equal(c2.inst, c1.inst);
	assert_int_equal(state_of(i), LT_INST_PAUSING);
	/* the pause completes: the instance comes straight back */
	complete(OP_PAUSE, false);
	assert_int_equal(state_of(i), LT_INST_RESUMING);
	advance_ms(1);
	assert_int_equal(state_of(i), LT_INST_RUNNING);
	assert_int_equal(stats(a).resumes, 1);
	release(&c2);
}

static void test_cancelled_pause_serves_queue_at_max(void **state)
{
	(void)state;
	pol.max = 1;
	fe.delay[OP_PAUSE] = MANUAL;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c1, c2;
	acquire(a, &c1);
	advance_ms(5);
	release(&c1);
	advance_ms(1000);
	struct lt_instance *i = only_instance(a);
	assert_int_equal(state_of(i), LT_INST_PAUSING);
	acquire(a, &c2); /* at max: waits in the bounded queue */
	assert_int_equal(fe.calls[OP_RESTORE], 1);
	assert_int_equal(c2.state, C_WAIT);
	complete(OP_PAUSE, false);
	advance_ms(1);
	assert_int_equal(c2.state, C_READY);
	assert_int_equal(c2.tier, LT_TIER_RESUME);
	assert_string_equal(c2.inst, c1.inst);
	release(&c2);
}

static void test_connection_cancels_scale_down(void **state)
{
	(void)state;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	release(&c);
	advance_ms(1001);
	struct lt_instance *i = only_instance(a);
	assert_int_equal(state_of(i), LT_INST_PAUSED);
	advance_ms(9999); /* one ms before the drop */
	acquire(a, &c);
	advance_ms(1);
	assert_int_equal(c.state, C_READY);
	assert_int_equal(c.tier, LT_TIER_RESUME);
	advance_ms(100); /* past the old drop time: still running */
	assert_int_equal(state_of(i), LT_INST_RUNNING);
	assert_int_equal(stats(a).drops, 0);
	assert_int_equal(fe.calls[OP_STOP], 0);
	release(&c);
}

static void test_client_cancel_while_waiting(void **state)
{
	(void)state;
	fe.delay[OP_RESTORE] = MANUAL;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	assert_int_equal(stats(a).queued, 1);
	in_call = true;
	lt_pool_conn_cancel(c.pc);
	in_call = false;
	assert_int_equal(stats(a).queued, 0);
	complete(OP_RESTORE, false);
	advance_ms(5000);
	assert_int_equal(c.state, C_WAIT); /* no callback ever */
	/* the instance came up anyway, went idle and paused */
	assert_int_equal(state_of(only_instance(a)), LT_INST_PAUSED);
}

static void test_cancel_while_connecting(void **state)
{
	(void)state;
	fe.delay[OP_CONNECT] = MANUAL;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	assert_int_equal(count_pending(OP_CONNECT), 1);
	lt_pool_conn_cancel(c.pc);
	complete(OP_CONNECT, false); /* the late fd is closed by the pool */
	advance_ms(10);
	assert_int_equal(c.state, C_WAIT);
	struct lt_instance_info info;
	lt_instance_get_info(only_instance(a), &info);
	assert_int_equal(info.conns, 0);
}

/* ---- queue ----------------------------------------------------------------------------- */

static void test_queue_bound_and_timeout(void **state)
{
	(void)state;
	pol.max = 1;
	pol.concurrency = 1;
	pol.queue_max = 2;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c[4];
	acquire(a, &c[0]);
	advance_ms(5);
	assert_int_equal(c[0].state, C_READY);
	assert_non_null(acquire(a, &c[1]));
	assert_non_null(acquire(a, &c[2]));
	assert_null(acquire(a, &c[3]));
	assert_non_null(strstr(lt_errmsg(), "queue full"));
	assert_int_equal(stats(a).queue_full, 1);
	advance_ms(1999);
	assert_int_equal(c[1].state, C_WAIT);
	advance_ms(1);
	assert_int_equal(c[1].state, C_REFUSED);
	assert_int_equal(c[2].state, C_REFUSED);
	assert_non_null(strstr(c[1].reason, "within 2000 ms"));
	assert_non_null(strstr(c[1].reason, "max 1"));
	assert_int_equal(stats(a).queue_timeouts, 2);
	assert_int_equal(stats(a).refused, 3);
	assert_int_equal(stats(a).queued, 0);
	release(&c[0]);
}

static void test_every_wait_is_bounded_when_restore_hangs(void **state)
{
	(void)state;
	fe.delay[OP_RESTORE] = MANUAL;
	pol.start_timeout = LT_SEC(5);
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(2000); /* queue timeout */
	assert_int_equal(c.state, C_REFUSED);
	advance_ms(3000); /* start timeout: the engine is told to stop */
	assert_int_equal(fe.calls[OP_STOP], 1);
	assert_int_equal(fe.stop_calls_during_start, 1);
	advance_ms(2);
	assert_null(lt_app_first_instance(a));
	assert_int_equal(stats(a).start_failures, 1);
}

static void test_pause_hang_stops_instance(void **state)
{
	(void)state;
	fe.delay[OP_PAUSE] = MANUAL;
	pol.op_timeout = LT_SEC(3);
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	release(&c);
	advance_ms(1000);
	assert_int_equal(state_of(only_instance(a)), LT_INST_PAUSING);
	advance_ms(3000);
	assert_int_equal(fe.calls[OP_STOP], 1);
	advance_ms(2);
	assert_null(lt_app_first_instance(a));
	acquire(a, &c); /* a fresh restore serves the next one */
	advance_ms(5);
	assert_int_equal(c.state, C_READY);
	release(&c);
}

/* ---- min / max ------------------------------------------------------------------------ */

static void test_min_kept_warm(void **state)
{
	(void)state;
	pol.min = 2;
	struct lt_app *a = add_app("/snap/web", NULL);
	assert_int_equal(fe.calls[OP_RESTORE], 2);
	advance_ms(5);
	assert_int_equal(stats(a).by_state[LT_INST_RUNNING], 2);
	advance_ms(60000); /* way past idle_timeout: nothing pauses */
	assert_int_equal(stats(a).by_state[LT_INST_RUNNING], 2);
	assert_int_equal(stats(a).pauses, 0);
	/* one dies: it is replaced to keep min */
	lt_instance_exited(lt_app_first_instance(a), "test kill");
	advance_ms(2);
	assert_int_equal(fe.calls[OP_RESTORE], 3);
	advance_ms(5);
	assert_int_equal(stats(a).by_state[LT_INST_RUNNING], 2);
	/* lowering min lets the extra one pause */
	pol.min = 1;
	assert_int_equal(lt_app_set_policy(a, &pol), 0);
	advance_ms(1001);
	assert_int_equal(stats(a).by_state[LT_INST_RUNNING], 1);
	assert_int_equal(stats(a).by_state[LT_INST_PAUSED], 1);
}

static void test_max_never_exceeded(void **state)
{
	(void)state;
	pol.max = 3;
	pol.concurrency = 1;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c[20];
	for (int k = 0; k < 20; k++)
		assert_non_null(acquire(a, &c[k]));
	assert_int_equal(fe.calls[OP_RESTORE], 3); /* starting ones count */
	advance_ms(5);
	int served = 0;
	for (int round = 0; round < 40 && served < 20; round++) {
		for (int k = 0; k < 20; k++)
			if (c[k].state == C_READY) {
				release(&c[k]);
				served++;
			}
		advance_ms(1);
	}
	assert_int_equal(served, 20);
	assert_int_equal(fe.max_live, 3);
	assert_int_equal(stats(a).peak_instances, 3);
	assert_int_equal(fe.calls[OP_RESTORE], 3);
	assert_int_equal(stats(a).refused, 0);
}

/* ---- failures ---------------------------------------------------------------------------- */

static void test_bad_snapshot_degrades_to_cold_boot(void **state)
{
	(void)state;
	fe.snapshot_bad = true;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c1, c2;
	acquire(a, &c1);
	advance_ms(5); /* restore fails: snapshot unusable */
	assert_non_null(lt_app_degraded(a));
	assert_non_null(strstr(lt_app_degraded(a), "/snap/web"));
	assert_int_equal(events_degraded, 1);
	assert_int_equal(fe.calls[OP_BOOT], 1);
	advance_ms(1500);
	assert_int_equal(c1.state, C_READY);
	assert_int_equal(c1.tier, LT_TIER_COLD);
	release(&c1);
	advance_ms(1001 + 10000 + 2); /* paused, dropped */
	assert_null(lt_app_first_instance(a));
	acquire(a, &c2); /* snapshot known bad: straight to cold boot */
	assert_int_equal(fe.calls[OP_RESTORE], 1);
	assert_int_equal(fe.calls[OP_BOOT], 2);
	advance_ms(1500);
	assert_int_equal(c2.tier, LT_TIER_COLD);
	release(&c2);
	/* a redeploy with a new snapshot clears degraded */
	fe.snapshot_bad = false;
	struct lt_app_spec spec = {.name = "web", .snapshot = "/snap/web2"};
	assert_int_equal(lt_app_replace(a, &engine, &spec, &pol), 0);
	assert_null(lt_app_degraded(a));
	acquire(a, &c2);
	advance_ms(5);
	assert_int_equal(c2.tier, LT_TIER_RESTORE);
	release(&c2);
}

static void test_sync_bad_snapshot_falls_back(void **state)
{
	(void)state;
	fe.sync_snapshot_bad = true;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	assert_non_null(lt_app_degraded(a));
	assert_non_null(strstr(lt_app_degraded(a), "bad checksum"));
	assert_int_equal(fe.calls[OP_BOOT], 1);
	advance_ms(1500);
	assert_int_equal(c.state, C_READY);
	assert_int_equal(c.tier, LT_TIER_COLD);
	release(&c);
}

static void test_start_failures_refuse_with_reason(void **state)
{
	(void)state;
	fe.fail_next[OP_RESTORE] = 100;
	pol.queue_timeout = LT_SEC(10);
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(1000);
	assert_int_equal(c.state, C_REFUSED);
	assert_non_null(strstr(c.reason, "no instance could be started"));
	assert_non_null(strstr(c.reason, "fake restore failure"));
	assert_int_equal(fe.calls[OP_RESTORE], 3);
	assert_null(lt_app_degraded(a)); /* a generic failure is not the snapshot's fault */
	fe.fail_next[OP_RESTORE] = 0;
	advance_ms(3000);
	acquire(a, &c);
	advance_ms(5);
	assert_int_equal(c.state, C_READY);
	release(&c);
}

static void test_instance_death_fails_only_its_connections(void **state)
{
	(void)state;
	pol.concurrency = 1;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c1, c2, c3;
	acquire(a, &c1);
	acquire(a, &c2);
	advance_ms(5);
	assert_int_equal(c1.state, C_READY);
	assert_int_equal(c2.state, C_READY);
	assert_string_not_equal(c1.inst, c2.inst);
	struct lt_instance *i1 = lt_pool_find_instance(pool, c1.inst);
	assert_non_null(i1);
	lt_instance_exited(i1, "VMM killed");
	advance_ms(0);
	assert_int_equal(c1.state, C_LOST);
	assert_non_null(strstr(c1.reason, "VMM killed"));
	assert_int_equal(c2.state, C_READY);
	assert_int_equal(stats(a).deaths, 1);
	advance_ms(2);
	assert_null(lt_pool_find_instance(pool, c1.inst));
	/* replaced on demand */
	acquire(a, &c3);
	advance_ms(5);
	assert_int_equal(c3.state, C_READY);
	assert_int_equal(c2.state, C_READY);
	release(&c2);
	release(&c3);
}

static void test_death_while_connecting_requeues(void **state)
{
	(void)state;
	fe.delay[OP_CONNECT] = MANUAL;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	assert_int_equal(count_pending(OP_CONNECT), 1);
	struct lt_instance *i = only_instance(a);
	lt_instance_exited(i, "crashed");
	/* the engine delivered the connect failure; the conn is queued again
	 * and a new restore serves it */
	assert_int_equal(fe.calls[OP_RESTORE], 2);
	advance_ms(5);
	assert_int_equal(count_pending(OP_CONNECT), 1);
	complete(OP_CONNECT, false);
	assert_int_equal(c.state, C_READY);
	release(&c);
}

static void test_connect_retries(void **state)
{
	(void)state;
	fe.fail_next[OP_CONNECT] = 2;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	assert_int_equal(c.state, C_WAIT);
	advance_ms(100);
	assert_int_equal(c.state, C_READY);
	assert_int_equal(fe.calls[OP_CONNECT], 3);
	assert_int_equal(stats(a).connect_failures, 2);
	release(&c);
	fe.fail_next[OP_CONNECT] = 100;
	acquire(a, &c);
	advance_ms(500);
	assert_int_equal(c.state, C_REFUSED);
	assert_non_null(strstr(c.reason, "connect to guest port 80"));
	assert_int_equal(fe.calls[OP_CONNECT], 3 + 4);
}

/* ---- redeploy ---------------------------------------------------------------------------- */

static void test_redeploy_drains_old_generation(void **state)
{
	(void)state;
	struct lt_app *a = add_app("/snap/v1", NULL);
	struct tconn old, fresh;
	acquire(a, &old);
	advance_ms(5);
	assert_int_equal(old.state, C_READY);
	struct lt_app_spec spec = {.name = "web", .snapshot = "/snap/v2"};
	assert_int_equal(lt_app_replace(a, &engine, &spec, &pol), 0);
	assert_int_equal(stats(a).generation, 2);
	/* new connections go to generation 2 at once */
	acquire(a, &fresh);
	assert_string_equal(fe.last_snapshot, "/snap/v2");
	advance_ms(5);
	assert_int_equal(fresh.state, C_READY);
	assert_string_not_equal(fresh.inst, old.inst);
	struct lt_instance *oi = lt_pool_find_instance(pool, old.inst);
	struct lt_instance_info info;
	lt_instance_get_info(oi, &info);
	assert_int_equal(info.generation, 1);
	assert_int_equal(info.state, LT_INST_RUNNING); /* draining, not killed */
	assert_int_equal(fe.calls[OP_STOP], 0);
	release(&old);
	assert_int_equal(fe.calls[OP_STOP], 1);
	advance_ms(2);
	assert_null(lt_pool_find_instance(pool, old.inst));
	release(&fresh);
}

static void test_redeploy_drain_timeout(void **state)
{
	(void)state;
	pol.drain_timeout = LT_SEC(5);
	struct lt_app *a = add_app("/snap/v1", NULL);
	struct tconn old;
	acquire(a, &old);
	advance_ms(5);
	struct lt_app_spec spec = {.name = "web", .snapshot = "/snap/v2"};
	assert_int_equal(lt_app_replace(a, &engine, &spec, &pol), 0);
	advance_ms(4999);
	assert_int_equal(old.state, C_READY);
	advance_ms(1);
	assert_int_equal(old.state, C_LOST);
	assert_non_null(strstr(old.reason, "drain timeout"));
}

static void test_redeploy_stops_paused_old(void **state)
{
	(void)state;
	struct lt_app *a = add_app("/snap/v1", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	release(&c);
	advance_ms(1001);
	assert_int_equal(state_of(only_instance(a)), LT_INST_PAUSED);
	struct lt_app_spec spec = {.name = "web", .snapshot = "/snap/v2"};
	assert_int_equal(lt_app_replace(a, &engine, &spec, &pol), 0);
	assert_int_equal(fe.calls[OP_STOP], 1);
	acquire(a, &c); /* never resumes the old generation */
	advance_ms(5);
	assert_int_equal(c.tier, LT_TIER_RESTORE);
	assert_int_equal(stats(a).resumes, 0);
	release(&c);
}

/* ---- admin, hold, shutdown, metrics --------------------------------------------------------- */

static void test_hold_prevents_pause(void **state)
{
	(void)state;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	struct lt_instance *i = only_instance(a);
	lt_instance_set_hold(i, true);
	release(&c);
	advance_ms(5000);
	assert_int_equal(state_of(i), LT_INST_RUNNING);
	lt_instance_set_hold(i, false);
	advance_ms(1001);
	assert_int_equal(state_of(i), LT_INST_PAUSED);
	/* admin resume and pause */
	assert_int_equal(lt_instance_resume(i), 0);
	advance_ms(1);
	assert_int_equal(state_of(i), LT_INST_RUNNING);
	assert_int_equal(lt_instance_pause(i), 0);
	assert_int_not_equal(lt_instance_pause(i), 0);
	advance_ms(1);
	assert_int_equal(state_of(i), LT_INST_PAUSED);
	assert_int_equal(lt_instance_stop(i), 0);
	advance_ms(2);
	assert_null(lt_app_first_instance(a));
}

static void test_shutdown_drains_and_stops(void **state)
{
	(void)state;
	pol.drain_timeout = LT_SEC(3);
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c, w;
	acquire(a, &c);
	advance_ms(5);
	bool done = false;
	lt_pool_shutdown(pool, shutdown_done, &done);
	assert_null(acquire(a, &w));
	advance_ms(2999);
	assert_int_equal(c.state, C_READY);
	assert_false(done);
	advance_ms(1);
	assert_int_equal(c.state, C_LOST);
	advance_ms(2);
	assert_true(done);
	assert_int_equal(fe.live, 0);
}

static void test_metrics_text(void **state)
{
	(void)state;
	struct lt_app *a = add_app("/snap/web", NULL);
	struct tconn c;
	acquire(a, &c);
	advance_ms(5);
	release(&c);
	struct lt_buf b = {0};
	assert_int_equal(lt_pool_metrics(pool, &b), 0);
	assert_int_equal(lt_buf_cstr(&b), 0);
	const char *t = (const char *)b.data;
	assert_non_null(strstr(t, "# TYPE lttle_restores_total counter\n"));
	assert_non_null(strstr(t, "lttle_restores_total{app=\"web\"} 1\n"));
	assert_non_null(strstr(t, "lttle_connections_total{app=\"web\"} 1\n"));
	assert_non_null(strstr(t, "lttle_cold_boots_total{app=\"web\"} 0\n"));
	assert_non_null(strstr(t, "lttle_queue_timeouts_total{app=\"web\"} 0\n"));
	assert_non_null(strstr(t, "lttle_resumes_total{app=\"web\"} 0\n"));
	assert_non_null(strstr(t, "lttle_instances{app=\"web\",state=\"running\"} 1\n"));
	assert_non_null(strstr(t, "# TYPE lttle_wake_seconds histogram\n"));
	/* 5 ms restore: in the 0.005 bucket and above, not below */
	assert_non_null(
		strstr(t, "lttle_wake_seconds_bucket{app=\"web\",tier=\"restore\",le=\"0.0025\"} 0\n"));
	assert_non_null(
		strstr(t, "lttle_wake_seconds_bucket{app=\"web\",tier=\"restore\",le=\"0.005\"} 1\n"));
	assert_non_null(
		strstr(t, "lttle_wake_seconds_bucket{app=\"web\",tier=\"restore\",le=\"+Inf\"} 1\n"));
	assert_non_null(strstr(t, "lttle_wake_seconds_count{app=\"web\",tier=\"restore\"} 1\n"));
	assert_non_null(strstr(t, "lttle_wake_seconds_sum{app=\"web\",tier=\"restore\"} 0.005000000\n"));
	assert_non_null(strstr(t, "lttle_start_seconds_count{app=\"web\",kind=\"restore\"} 1\n"));
	/* every family declared once, before its samples */
	const char *p = t;
	int types = 0;
	while ((p = strstr(p, "# TYPE ")) != NULL) {
		types++;
		char name[64];
		assert_int_equal(sscanf(p, "# TYPE %63s", name), 1);
		char again[80];
		snprintf(again, sizeof(again), "# TYPE %s ", name);
		assert_null(strstr(p + 1, again));
		p++;
	}
	assert_true(types >= 20);
	lt_buf_free(&b);
}

static void test_policy_and_app_validation(void **state)
{
	(void)state;
	struct lt_policy p = pol;
	p.min = 5;
	p.max = 2;
	assert_int_not_equal(lt_policy_check(&p), 0);
	assert_non_null(strstr(lt_errmsg(), "min"));
	p = pol;
	p.concurrency = 0;
	assert_int_not_equal(lt_policy_check(&p), 0);
	struct lt_app_spec bad = {.name = "../etc"};
	assert_null(lt_pool_add_app(pool, &engine, &bad, &pol));
	struct lt_app_spec ok = {.name = "web"};
	assert_non_null(lt_pool_add_app(pool, &engine, &ok, &pol));
	assert_null(lt_pool_add_app(pool, &engine, &ok, &pol)); /* duplicate */
}

enum { N = 500 };
static struct lt_timer t[N];
static int fired[N], nfired;
static void fire(struct lt_timer *x)
{
	fired[nfired++] = (int)(x - t);
}

static void test_timer_order(void **state)
{
	(void)state;
	/* random arms and cancels fire in deadline order, ties FIFO */
	nfired = 0;
	srand(7);
	bool cancelled[N] = {0};
	for (int k = 0; k < N; k++) {
		lt_timer_init(&t[k], fire);
		lt_timer_arm(&clk, &t[k], fake_now + (uint64_t)(rand() % 50));
	}
	for (int k = 0; k < N; k += 3) {
		lt_timer_cancel(&clk, &t[k]);
		cancelled[k] = true;
	}
	for (int k = 1; k < N; k += 7) { /* re-arm some, cancelled or not */
		lt_timer_arm(&clk, &t[k], fake_now + (uint64_t)(rand() % 50));
		cancelled[k] = false;
	}
	advance_ns(100);
	int expect = 0;
	for (int k = 0; k < N; k++)
		expect += !cancelled[k];
	assert_int_equal(nfired, expect);
	for (int k = 1; k < nfired; k++) {
		struct lt_timer *x = &t[fired[k - 1]], *y = &t[fired[k]];
		assert_true(x->when < y->when || (x->when == y->when && x->seq < y->seq));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cold_boot_without_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_then_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_with_spare_concurrency, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_then_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scale_down_then_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shell_tier_and_refill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shell_failure_backs_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_cancels_pause_without_waiting, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cancelled_pause_serves_queue_at_max, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_connection_cancels_scale_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_cancel_while_waiting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_while_connecting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_bound_and_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_wait_is_bounded_when_restore_hangs, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pause_hang_stops_instance, setup, teardown),
		cmocka_unit_test_setup_teardown(test_min_kept_warm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_never_exceeded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_snapshot_degrades_to_cold_boot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sync_bad_snapshot_falls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_failures_refuse_with_reason, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_instance_death_fails_only_its_connections,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_death_while_connecting_requeues, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_connect_retries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redeploy_drains_old_generation, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_redeploy_drain_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redeploy_stops_paused_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_prevents_pause, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_drains_and_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_and_app_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_order, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
