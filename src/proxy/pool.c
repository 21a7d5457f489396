/* The pool: per-app instances and the acquire state machine.
 *
 * Pure logic over an injected clock and engine (no fds of its own), so the
 * unit tests drive it with a fake clock and a fake engine. The core is
 * plan(): serve waiters from running instances, then start just enough
 * capacity (resume > shell restore > restore > cold boot) within max, then
 * keep min warm and shells topped up. Every callback into the caller is
 * delivered from a timer or an engine completion, never from inside a call
 * the caller made.
 */
#include "proxy_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define START_BACKOFF_MIN LT_MS(50)
#define START_BACKOFF_MAX LT_SEC(2)
#define SHELL_BACKOFF_MIN LT_MS(200)
#define SHELL_BACKOFF_MAX LT_SEC(30)
/* After a wake took a shell, its replacement starts this much later: a new
 * VM process (exec, VM creation, seccomp) costs a few ms of CPU and would
 * compete with the restore it replaces (3 ms here, < 1 ms on a real KVM
 * host) for the same cores. */
#define SHELL_REFILL_HOLD LT_MS(20)
#define CONNECT_BACKOFF LT_MS(10)
#define START_FAILURES_REFUSE 3

struct lt_conn_op {
	struct lt_pool_conn *pc; /* NULL once the conn moved on */
};

struct shell_op {
	struct lt_app *app;
	struct lt_gen *gen;
};

static void plan(struct lt_app *a);
static void inst_stop(struct lt_instance *i, const char *why);
static void maybe_finish_remove(struct lt_app *a);
static void life_fired(struct lt_timer *t);
static void op_fired(struct lt_timer *t);
static void finish_fired(struct lt_timer *t);

/* ---- names ------------------------------------------------------------- */

const char *lt_inst_state_name(enum lt_inst_state s)
{
	static const char *const n[] = {"starting", "running", "pausing", "paused",
					"resuming", "stopping", "dead"};
	return (unsigned)s < LT_ARRAY_LEN(n) ? n[s] : "unknown";
}

const char *lt_started_by_name(enum lt_started_by b)
{
	static const char *const n[] = {"cold", "restore", "resume"};
	return (unsigned)b < LT_ARRAY_LEN(n) ? n[b] : "unknown";
}

const char *lt_tier_name(enum lt_tier t)
{
	static const char *const n[] = {"idle",    "busy", "resume", "shell",
					"restore", "cold", "queue"};
	return (unsigned)t < LT_ARRAY_LEN(n) ? n[t] : "unknown";
}

/* ---- policy ------------------------------------------------------------ */

void lt_policy_defaults(struct lt_policy *p)
{
	*p = (struct lt_policy){
		.min = 0,
		.max = 4,
		.concurrency = 64,
		.queue_max = 1024,
		.shells = 1,
		.idle_timeout = LT_SEC(30),
		.scale_down = LT_SEC(300),
		.queue_timeout = LT_SEC(10),
		.start_timeout = LT_SEC(60),
		.op_timeout = LT_SEC(10),
		.connect_timeout = LT_SEC(2),
		.connect_retries = 3,
		.drain_timeout = LT_SEC(30),
	};
}

int lt_policy_check(const struct lt_policy *p)
{
	if (p->max < 1)
		return lt_fail("policy: max must be at least 1");
	if (p->min > p->max)
		return lt_fail("policy: min (%u) exceeds max (%u)", p->min, p->max);
	if (p->concurrency < 1)
		return lt_fail("policy: concurrency must be at least 1");
	if (p->queue_timeout == 0)
		return lt_fail("policy: queue timeout must be positive");
	if (p->start_timeout == 0 || p->op_timeout == 0 || p->connect_timeout == 0)
		return lt_fail("policy: start, operation and connect timeouts must be positive");
	if (p->drain_timeout == 0)
		return lt_fail("policy: drain timeout must be positive");
	if (p->connect_retries > 100)
		return lt_fail("policy: connect retries must be at most 100");
	return 0;
}

/* ---- small helpers ----------------------------------------------------- */

static uint64_t now(struct lt_app *a)
{
	return lt_clock_now(a->pool->clock);
}

static struct lt_clock *clk(struct lt_app *a)
{
	return a->pool->clock;
}

static void emit(struct lt_pool *p, const struct lt_pool_event *ev)
{
	if (p->observer)
		p->observer(p->observer_ctx, ev);
}

static bool is_live(const struct lt_instance *i)
{
	return i->state <= LT_INST_RESUMING;
}

static bool is_current(const struct lt_instance *i)
{
	return i->gen == i->app->gen && !i->app->closing;
}

static bool snapshot_usable(const struct lt_gen *g)
{
	return g->spec.snapshot && !g->snapshot_bad;
}

static void set_state(struct lt_instance *i, enum lt_inst_state s)
{
	enum lt_inst_state old = i->state;
	i->state = s;
	i->state_since = now(i->app);
	struct lt_pool_event ev = {.kind = LT_EV_INSTANCE,
				   .app = i->app->name,
				   .instance = i->id,
				   .state = s,
				   .old_state = old,
				   .started_by = i->started_by};
	emit(i->app->pool, &ev);
}

static void gen_unref(struct lt_gen *g)
{
	if (!g || --g->refs > 0)
		return;
	if (g->spec.engine_cfg_free)
		g->spec.engine_cfg_free(g->spec.engine_cfg);
	free((char *)g->spec.name);
	free((char *)g->spec.snapshot);
	free(g);
}

static struct lt_gen *gen_new(struct lt_engine *e, const struct lt_app_spec *spec,
			      uint32_t id)
{
	struct lt_gen *g = lt_calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->refs = 1;
	g->engine = e;
	g->spec = *spec;
	g->spec.generation = id;
	g->spec.name = lt_strdup(spec->name);
	g->spec.snapshot = spec->snapshot ? lt_strdup(spec->snapshot) : NULL;
	if (!g->spec.name || (spec->snapshot && !g->spec.snapshot)) {
		free((char *)g->spec.name);
		free((char *)g->spec.snapshot);
		free(g);
		return NULL;
	}
	return g;
}

static uint32_t count_live_current(struct lt_app *a)
{
	uint32_t n = 0;
	for (struct lt_list *l = a->insts.next; l != &a->insts; l = l->next) {
		struct lt_instance *i = list_entry(l, struct lt_instance, link);
		if (is_live(i) && is_current(i))
			n++;
	}
	return n;
}

/* Instances that are (or are about to be) running: what min counts. */
static uint32_t count_warm(struct lt_app *a)
{
	uint32_t n = 0;
	for (struct lt_list *l = a->insts.next; l != &a->insts; l = l->next) {
		struct lt_instance *i = list_entry(l, struct lt_instance, link);
		if (!is_current(i))
			continue;
		if (i->state == LT_INST_STARTING || i->state == LT_INST_RUNNING ||
		    i->state == LT_INST_RESUMING ||
		    (i->state == LT_INST_PAUSING && i->cancel_pause))
			n++;
	}
	return n;
}

static void note_error(struct lt_app *a, const char *msg)
{
	snprintf(a->last_error, sizeof(a->last_error), "%s", msg ? msg : "unknown error");
}

/* ---- connection notifications ------------------------------------------ */

/* Uses no app field: the app may be gone while a notification is pending. */
static void pc_free(struct lt_pool_conn *pc)
{
	lt_timer_cancel(pc->clock, &pc->deadline);
	lt_timer_cancel(pc->clock, &pc->retry);
	free(pc);
}

/* Delivers refused/lost from a timer so no callback runs inside a call the
 * caller made. The conn leaves every app structure now. */
static void pc_notify(struct lt_pool_conn *pc, bool lost, const char *fmt, ...)
	LT_PRINTF(3, 4);
static void pc_notify(struct lt_pool_conn *pc, bool lost, const char *fmt, ...)
{
	struct lt_app *a = pc->app;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pc->reason, sizeof(pc->reason), fmt, ap);
	va_end(ap);
	lt_timer_cancel(clk(a), &pc->retry);
	pc->state = PC_NOTIFY;
	pc->notify_lost = lost;
	pc->inst = NULL;
	list_add_tail(&a->pool->notify, &pc->link);
	if (lost)
		a->st.lost++;
	else
		a->st.refused++;
	lt_info("proxy: app %s: connection %s: %s", a->name, lost ? "lost" : "refused",
		pc->reason);
	struct lt_pool_event ev = {
		.kind = LT_EV_REFUSED, .app = a->name, .detail = pc->reason};
	if (!lost)
		emit(a->pool, &ev);
	lt_timer_arm(clk(a), &pc->deadline, now(a));
}

/* Takes pc off its instance; the instance may go idle or retire. */
static void pc_detach(struct lt_pool_conn *pc)
{
	struct lt_instance *i = pc->inst;
	if (!i)
		return;
	list_del(&pc->link);
	pc->inst = NULL;
	i->nconns--;
	if (pc->op) {
		pc->op->pc = NULL; /* its completion closes the fd */
		pc->op = NULL;
	}
}

static void inst_went_idle(struct lt_instance *i);

static void pc_detach_and_settle(struct lt_pool_conn *pc)
{
	struct lt_instance *i = pc->inst;
	pc_detach(pc);
	if (i && i->nconns == 0)
		inst_went_idle(i);
}

/* ---- connect ----------------------------------------------------------- */

static void on_connect(void *arg, const struct lt_engine_result *r);
static void connect_failed(struct lt_pool_conn *pc, const char *msg);

static void do_connect(struct lt_pool_conn *pc)
{
	struct lt_instance *i = pc->inst;
	struct lt_app *a = pc->app;
	struct lt_conn_op *op = malloc(sizeof(*op));
	if (!op) {
		connect_failed(pc, "out of memory");
		return;
	}
	op->pc = pc;
	pc->op = op;
	pc->state = PC_CONNECTING;
	pc->attempts++;
	struct lt_engine *e = i->gen->engine;
	lt_clear_error();
	if (e->ops->connect(e, i, pc->port, a->pol.connect_timeout, on_connect, op) < 0) {
		pc->op = NULL;
		free(op);
		connect_failed(pc, lt_errmsg());
	}
}

static void on_connect(void *arg, const struct lt_engine_result *r)
{
	struct lt_conn_op *op = arg;
	struct lt_pool_conn *pc = op->pc;
	free(op);
	if (!pc) {
		if (r->err == 0 && r->fd >= 0)
			close(r->fd);
		return;
	}
	pc->op = NULL;
	if (r->err) {
		connect_failed(pc, r->msg);
		return;
	}
	struct lt_app *a = pc->app;
	pc->state = PC_ACTIVE;
	lt_timer_cancel(clk(a), &pc->deadline);
	uint64_t t = now(a);
	lt_hist_add(&a->wake[pc->tier], t > pc->t0 ? t - pc->t0 : 0);
	a->st.served++;
	pc->ops->ready(pc->ctx, pc, r->fd);
}

static void retry_fired(struct lt_timer *t)
{
	struct lt_pool_conn *pc = list_entry(t, struct lt_pool_conn, retry);
	if (pc->state == PC_RETRY && pc->inst)
		do_connect(pc);
}

static void connect_failed(struct lt_pool_conn *pc, const char *msg)
{
	struct lt_app *a = pc->app;
	a->st.connect_failures++;
	lt_warn("proxy: app %s: connect to %s port %u failed (attempt %u): %s", a->name,
		pc->inst ? pc->inst->id : "?", pc->port, pc->attempts, msg);
	if (pc->attempts <= a->pol.connect_retries && pc->inst &&
	    pc->inst->state == LT_INST_RUNNING) {
		pc->state = PC_RETRY;
		lt_timer_arm_in(clk(a), &pc->retry, CONNECT_BACKOFF << (pc->attempts - 1));
		return;
	}
	struct lt_instance *i = pc->inst;
	char id[sizeof(i->id)];
	snprintf(id, sizeof(id), "%s", i ? i->id : "?");
	pc_detach_and_settle(pc);
	pc_notify(pc, false, "connect to guest port %u of %s failed: %s", pc->port, id, msg);
	plan(a);
}

/* ---- serving waiters --------------------------------------------------- */

/* Tier 1 (idle, most recently used first) then tier 2 (least loaded). */
static struct lt_instance *pick_available(struct lt_app *a)
{
	struct lt_instance *idle = NULL, *busy = NULL;
	for (struct lt_list *l = a->insts.next; l != &a->insts; l = l->next) {
		struct lt_instance *i = list_entry(l, struct lt_instance, link);
		if (i->state != LT_INST_RUNNING || !is_current(i) ||
		    i->nconns >= a->pol.concurrency)
			continue;
		if (i->nconns == 0) {
			if (!idle || i->last_active > idle->last_active)
				idle = i;
		} else if (!busy || i->nconns < busy->nconns) {
			busy = i;
		}
	}
	return idle ? idle : busy;
}

static void assign(struct lt_pool_conn *pc, struct lt_instance *i)
{
	if (pc->waited)
		pc->tier = i->fresh ? i->start_tier : LT_TIER_QUEUE;
	else
		pc->tier = i->nconns == 0 ? LT_TIER_IDLE : LT_TIER_BUSY;
	pc->inst = i;
	list_add_tail(&i->conns, &pc->link);
	i->nconns++;
	lt_timer_cancel(clk(i->app), &i->life);
	do_connect(pc);
}

static void dispatch(struct lt_app *a)
{
	while (!list_empty(&a->queue)) {
		struct lt_instance *i = pick_available(a);
		if (!i)
			return;
		struct lt_pool_conn *pc = list_entry(a->queue.next, struct lt_pool_conn, link);
		list_del(&pc->link);
		a->nqueue--;
		assign(pc, i);
	}
}

/* ---- starting capacity ------------------------------------------------- */

static void on_started(void *arg, const struct lt_engine_result *r);
static void on_resumed(void *arg, const struct lt_engine_result *r);

static struct lt_instance *inst_new(struct lt_app *a)
{
	struct lt_instance *i = lt_calloc(1, sizeof(*i));
	if (!i)
		return NULL;
	i->app = a;
	i->gen = a->gen;
	a->gen->refs++;
	snprintf(i->id, sizeof(i->id), "%s-%llu", a->name,
		 (unsigned long long)++a->pool->inst_seq);
	list_init(&i->conns);
	lt_timer_init(&i->life, life_fired);
	lt_timer_init(&i->op, op_fired);
	i->state = LT_INST_STARTING;
	i->state_since = now(a);
	list_add_tail(&a->insts, &i->link);
	return i;
}

static void inst_free(struct lt_instance *i)
{
	struct lt_app *a = i->app;
	lt_timer_cancel(clk(a), &i->life);
	lt_timer_cancel(clk(a), &i->op);
	list_del(&i->link);
	gen_unref(i->gen);
	free(i);
}

static void note_live(struct lt_app *a)
{
	uint32_t n = count_live_current(a);
	if (n > a->st.peak_instances)
		a->st.peak_instances = n;
}

static void degrade(struct lt_app *a, struct lt_gen *g, const char *msg)
{
	g->snapshot_bad = true;
	if (g != a->gen)
		return;
	free(a->degraded);
	a->degraded = lt_sprintf("snapshot %s unusable: %s; falling back to cold boot",
				 g->spec.snapshot, msg ? msg : "unknown error");
	lt_warn("proxy: app %s degraded: %s", a->name, a->degraded ? a->degraded : msg);
	struct lt_pool_event ev = {
		.kind = LT_EV_DEGRADED, .app = a->name, .detail = a->degraded};
	emit(a->pool, &ev);
}

static void start_retry_fired(struct lt_timer *t)
{
	struct lt_app *a = list_entry(t, struct lt_app, start_retry);
	plan(a);
}

static void refuse_waiters(struct lt_app *a, const char *why)
{
	while (!list_empty(&a->queue)) {
		struct lt_pool_conn *pc = list_entry(a->queue.next, struct lt_pool_conn, link);
		list_del(&pc->link);
		a->nqueue--;
		pc_notify(pc, false, "%s", why);
	}
}

/* A start could not begin or failed: back off, and after a few in a row
 * tell the waiters why rather than let them time out. */
static void start_failed(struct lt_app *a, const char *msg)
{
	a->st.start_failures++;
	note_error(a, msg);
	lt_warn("proxy: app %s: instance start failed: %s", a->name, a->last_error);
	if (++a->start_failures_in_row >= START_FAILURES_REFUSE) {
		char why[320];
		snprintf(why, sizeof(why), "no instance could be started: %s", a->last_error);
		refuse_waiters(a, why);
		a->start_failures_in_row = 0;
	}
	if (lt_timer_armed(&a->start_retry))
		return;
	a->start_backoff = a->start_backoff ? a->start_backoff * 2 : START_BACKOFF_MIN;
	if (a->start_backoff > START_BACKOFF_MAX)
		a->start_backoff = START_BACKOFF_MAX;
	lt_timer_arm_in(clk(a), &a->start_retry, a->start_backoff);
}

static struct lt_shell_rec *take_shell(struct lt_app *a)
{
	if (list_empty(&a->shells))
		return NULL;
	struct lt_shell_rec *s = list_entry(a->shells.next, struct lt_shell_rec, link);
	list_del(&s->link);
	a->shells_ready--;
	return s;
}

static int inst_resume(struct lt_instance *i);

/* Starts one instance's worth of capacity; returns the tier or -1. */
static int start_one(struct lt_app *a)
{
	if (lt_timer_armed(&a->start_retry) || a->closing)
		return -1;
	/* Tier 3: the most recently paused instance. It is already counted
	 * in max, so it comes before that check (at max=1 it is the only
	 * way back). */
	for (;;) {
		struct lt_instance *p = NULL;
		for (struct lt_list *l = a->insts.next; l != &a->insts; l = l->next) {
			struct lt_instance *i = list_entry(l, struct lt_instance, link);
			if (i->state == LT_INST_PAUSED && is_current(i) &&
			    (!p || i->state_since > p->state_since))
				p = i;
		}
		if (!p)
			break;
		if (inst_resume(p) == 0)
			return LT_TIER_RESUME;
	}
	if (count_live_current(a) >= a->pol.max)
		return -1;
	struct lt_gen *g = a->gen;
	struct lt_engine *e = g->engine;
	for (;;) {
		struct lt_instance *i = inst_new(a);
		if (!i) {
			start_failed(a, "out of memory");
			return -1;
		}
		i->op_started = now(a);
		lt_timer_arm_in(clk(a), &i->op, a->pol.start_timeout);
		lt_clear_error();
		if (snapshot_usable(g)) {
			struct lt_shell_rec *s = e->ops->shell_create ? take_shell(a) : NULL;
			i->start_kind = s ? START_SHELL : START_RESTORE;
			i->start_tier = s ? LT_TIER_SHELL : LT_TIER_RESTORE;
			i->started_by = LT_BY_RESTORE;
			int rc = e->ops->restore(e, i, &g->spec, s ? s->shell : NULL, on_started, i);
			if (s && !lt_timer_armed(&a->shell_hold))
				lt_timer_arm_in(clk(a), &a->shell_hold, SHELL_REFILL_HOLD);
			if (s) {
				gen_unref(s->gen);
				free(s);
			}
			if (rc == 0) {
				set_state(i, LT_INST_STARTING);
				note_live(a);
				return i->start_tier;
			}
			char msg[256];
			snprintf(msg, sizeof(msg), "%s", lt_errmsg());
			inst_free(i);
			if (rc == LT_ENGINE_ESNAPSHOT) {
				degrade(a, g, msg);
				continue; /* now without a usable snapshot: cold boot */
			}
			start_failed(a, msg);
			return -1;
		}
		i->start_kind = START_COLD;
		i->start_tier = LT_TIER_COLD;
		i->started_by = LT_BY_COLD;
		if (e->ops->boot(e, i, &g->spec, on_started, i) == 0) {
			set_state(i, LT_INST_STARTING);
			note_live(a);
			return LT_TIER_COLD;
		}
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", lt_errmsg());
		inst_free(i);
		start_failed(a, msg);
		return -1;
	}
}

/* ---- shells ------------------------------------------------------------ */

static void on_shell(void *arg, const struct lt_engine_result *r);

static void shell_retry_fired(struct lt_timer *t)
{
	struct lt_app *a = list_entry(t, struct lt_app, shell_retry);
	plan(a);
}

static void shell_hold_fired(struct lt_timer *t)
{
	plan(list_entry(t, struct lt_app, shell_hold));
}

static void shell_backoff(struct lt_app *a)
{
	if (lt_timer_armed(&a->shell_retry))
		return; /* several failures of one round back off once */
	a->shell_backoff = a->shell_backoff ? a->shell_backoff * 2 : SHELL_BACKOFF_MIN;
	if (a->shell_backoff > SHELL_BACKOFF_MAX)
		a->shell_backoff = SHELL_BACKOFF_MAX;
	lt_timer_arm_in(clk(a), &a->shell_retry, a->shell_backoff);
}

static void refill_shells(struct lt_app *a)
{
	struct lt_gen *g = a->gen;
	struct lt_engine *e = g->engine;
	if (a->closing || !e->ops->shell_create || !snapshot_usable(g) ||
	    lt_timer_armed(&a->shell_retry) || lt_timer_armed(&a->shell_hold))
		return;
	while (a->shells_ready + a->shells_creating < a->pol.shells) {
		struct shell_op *op = malloc(sizeof(*op));
		if (!op) {
			shell_backoff(a);
			return;
		}
		op->app = a;
		op->gen = g;
		g->refs++;
		a->shells_creating++;
		lt_clear_error();
		if (e->ops->shell_create(e, &g->spec, on_shell, op) < 0) {
			lt_warn("proxy: app %s: cannot create a VM shell: %s", a->name,
				lt_errmsg());
			a->shells_creating--;
			gen_unref(g);
			free(op);
			shell_backoff(a);
			return;
		}
	}
}

static void on_shell(void *arg, const struct lt_engine_result *r)
{
	struct shell_op *op = arg;
	struct lt_app *a = op->app;
	struct lt_gen *g = op->gen;
	free(op);
	a->shells_creating--;
	if (r->err) {
		lt_warn("proxy: app %s: VM shell creation failed: %s", a->name, r->msg);
		gen_unref(g);
		if (!a->closing)
			shell_backoff(a);
		maybe_finish_remove(a);
		return;
	}
	if (a->closing || g != a->gen || a->shells_ready >= a->pol.shells) {
		g->engine->ops->shell_destroy(g->engine, r->shell);
		gen_unref(g);
		maybe_finish_remove(a);
		return;
	}
	struct lt_shell_rec *s = lt_calloc(1, sizeof(*s));
	if (!s) {
		g->engine->ops->shell_destroy(g->engine, r->shell);
		gen_unref(g);
		return;
	}
	a->shell_backoff = 0;
	s->gen = g; /* keeps the op's reference */
	s->shell = r->shell;
	list_add_tail(&a->shells, &s->link);
	a->shells_ready++;
}

static void destroy_shells(struct lt_app *a)
{
	struct lt_shell_rec *s;
	while ((s = take_shell(a))) {
		s->gen->engine->ops->shell_destroy(s->gen->engine, s->shell);
		gen_unref(s->gen);
		free(s);
	}
}

/* ---- the planner ------------------------------------------------------- */

/* Capacity (in connection slots) already on its way for the waiters.
 * A pause a connection cancelled is not counted: nobody waits on it. */
static uint64_t pending_slots(struct lt_app *a)
{
	uint64_t n = 0;
	for (struct lt_list *l = a->insts.next; l != &a->insts; l = l->next) {
		struct lt_instance *i = list_entry(l, struct lt_instance, link);
		if (is_current(i) &&
		    (i->state == LT_INST_STARTING || i->state == LT_INST_RESUMING))
			n += a->pol.concurrency;
	}
	return n;
}

/* A connection that arrives while instances are pausing cancels as many
 * pauses as it would fill (they resume as soon as the pause completes). */
static void cancel_pauses(struct lt_app *a, uint64_t need)
{
	for (struct lt_list *l = a->insts.next; l != &a->insts && need; l = l->next) {
		struct lt_instance *i = list_entry(l, struct lt_instance, link);
		if (i->state == LT_INST_PAUSING && is_current(i) && !i->cancel_pause) {
			i->cancel_pause = true;
			lt_info("proxy: %s: pause cancelled by an arriving connection", i->id);
			need = need > a->pol.concurrency ? need - a->pol.concurrency : 0;
		}
	}
}

static void plan_once(struct lt_app *a)
{
	if (a->closing)
		return;
	dispatch(a);
	uint64_t pending = pending_slots(a);
	if (a->nqueue > pending) {
		uint64_t need = a->nqueue - pending;
		cancel_pauses(a, need);
		while (need > 0 && start_one(a) >= 0)
			need = need > a->pol.concurrency ? need - a->pol.concurrency : 0;
	}
	while (count_warm(a) < a->pol.min && start_one(a) >= 0)
		;
	refill_shells(a);
}

/* Re-entrant calls (engine ops failing inside plan) just ask for a rerun. */
static void plan(struct lt_app *a)
{
	if (a->in_plan) {
		a->replan = true;
		return;
	}
	a->in_plan = true;
	do {
		a->replan = false;
		plan_once(a);
	} while (a->replan);
	a->in_plan = false;
	maybe_finish_remove(a);
}

/* ---- instance lifecycle ------------------------------------------------ */

static void on_stopped(void *arg, const struct lt_engine_result *r);
static void on_paused(void *arg, const struct lt_engine_result *r);

static void inst_went_idle(struct lt_instance *i)
{
	struct lt_app *a = i->app;
	if (i->state != LT_INST_RUNNING || i->nconns)
		return;
	i->last_active = now(a);
	if (!is_current(i)) {
		inst_stop(i, a->closing ? "app stopping" : "replaced by a new deploy");
		return;
	}
	if (a->pol.idle_timeout && !i->held)
		lt_timer_arm_in(clk(a), &i->life, a->pol.idle_timeout);
}

/* Fails the instance's connections: active ones are lost, the ones still
 * connecting go back to the head of the queue for another instance. */
static void lose_conns(struct lt_instance *i, const char *why)
{
	struct lt_app *a = i->app;
	while (!list_empty(&i->conns)) {
		struct lt_pool_conn *pc = list_entry(i->conns.prev, struct lt_pool_conn, link);
		pc_detach(pc);
		if (pc->state == PC_ACTIVE) {
			pc_notify(pc, true, "instance %s went away: %s", i->id, why);
		} else if (a->closing) {
			pc_notify(pc, false, "app %s is stopping", a->name);
		} else {
			lt_timer_cancel(clk(a), &pc->retry);
			pc->state = PC_WAITING;
			pc->waited = true;
			pc->attempts = 0;
			list_add_head(&a->queue, &pc->link);
			a->nqueue++;
		}
	}
}

static void inst_stop(struct lt_instance *i, const char *why)
{
	struct lt_app *a = i->app;
	if (i->stop_called)
		return;
	i->stop_called = true;
	lt_info("proxy: stopping %s: %s", i->id, why);
	lose_conns(i, why);
	lt_timer_cancel(clk(a), &i->life);
	set_state(i, LT_INST_STOPPING);
	struct lt_engine *e = i->gen->engine;
	lt_clear_error();
	if (e->ops->stop(e, i, on_stopped, i) < 0) {
		lt_error("proxy: cannot stop %s: %s (forgetting it)", i->id, lt_errmsg());
		inst_free(i);
	} else {
		lt_timer_arm_in(clk(a), &i->op, a->pol.op_timeout);
	}
	plan(a);
}

static void on_stopped(void *arg, const struct lt_engine_result *r)
{
	struct lt_instance *i = arg;
	struct lt_app *a = i->app;
	if (r->err)
		lt_warn("proxy: stopping %s: %s", i->id, r->msg);
	if (i->state != LT_INST_DEAD)
		set_state(i, LT_INST_DEAD);
	inst_free(i);
	plan(a);
}

/* A running instance that is not needed any more (redeploy, removal,
 * max lowered) stops now or once its connections drain. */
static void retire(struct lt_instance *i)
{
	struct lt_app *a = i->app;
	if (i->stop_called)
		return;
	switch (i->state) {
	case LT_INST_RUNNING:
		if (i->nconns == 0)
			inst_stop(i, a->closing ? "app stopping" : "replaced by a new deploy");
		else if (!lt_timer_armed(&i->op))
			lt_timer_arm_in(clk(a), &i->op, a->pol.drain_timeout);
		break;
	case LT_INST_PAUSED:
		inst_stop(i, a->closing ? "app stopping" : "replaced by a new deploy");
		break;
	default: /* in flight: handled when the operation completes */
		break;
	}
}

/* The instance is running and current (or must retire): serve waiters. */
static void became_available(struct lt_instance *i)
{
	struct lt_app *a = i->app;
	if (!is_current(i)) {
		retire(i);
		plan(a);
		return;
	}
	i->fresh = true;
	dispatch(a);
	i->fresh = false;
	inst_went_idle(i);
	plan(a);
}

static void record_start(struct lt_instance *i)
{
	struct lt_app *a = i->app;
	uint64_t t = now(a);
	lt_hist_add(&a->start[i->start_kind], t > i->op_started ? t - i->op_started : 0);
}

static void on_started(void *arg, const struct lt_engine_result *r)
{
	struct lt_instance *i = arg;
	struct lt_app *a = i->app;
	if (i->stop_called)
		return; /* timed out or killed meanwhile: on_stopped frees it */
	lt_timer_cancel(clk(a), &i->op);
	if (r->err) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", r->msg ? r->msg : "unknown error");
		bool bad_snapshot = i->start_kind != START_COLD && r->snapshot_bad;
		struct lt_gen *g = i->gen;
		g->refs++;
		set_state(i, LT_INST_DEAD);
		inst_free(i);
		if (bad_snapshot) {
			a->st.start_failures++;
			degrade(a, g, msg);
		} else {
			start_failed(a, msg);
		}
		gen_unref(g);
		plan(a);
		return;
	}
	a->start_failures_in_row = 0;
	a->start_backoff = 0;
	if (i->start_kind == START_COLD) {
		a->st.cold_boots++;
	} else {
		a->st.restores++;
		if (i->start_kind == START_SHELL)
			a->st.shell_restores++;
	}
	record_start(i);
	set_state(i, LT_INST_RUNNING);
	became_available(i);
}

/* Stops i after a failed engine op: "<what> failed: <msg>". */
static void stop_failed(struct lt_instance *i, const char *what, const char *msg)
{
	char why[256];
	snprintf(why, sizeof(why), "%s failed: %s", what, msg ? msg : "unknown error");
	inst_stop(i, why);
}

/* How a pause or resume completion starts: false if the instance was
 * stopped meanwhile, or the op failed (it is stopped now). */
static bool op_succeeded(struct lt_instance *i, const struct lt_engine_result *r,
			 const char *what)
{
	if (i->stop_called)
		return false;
	lt_timer_cancel(clk(i->app), &i->op);
	if (r->err) {
		stop_failed(i, what, r->msg);
		return false;
	}
	return true;
}

static int inst_pause(struct lt_instance *i)
{
	struct lt_app *a = i->app;
	struct lt_engine *e = i->gen->engine;
	lt_timer_cancel(clk(a), &i->life);
	i->cancel_pause = false;
	set_state(i, LT_INST_PAUSING);
	lt_clear_error();
	if (e->ops->pause(e, i, on_paused, i) < 0) {
		stop_failed(i, "pause", lt_errmsg());
		return -1;
	}
	lt_timer_arm_in(clk(a), &i->op, a->pol.op_timeout);
	return 0;
}

static void on_paused(void *arg, const struct lt_engine_result *r)
{
	struct lt_instance *i = arg;
	struct lt_app *a = i->app;
	if (!op_succeeded(i, r, "pause"))
		return;
	a->st.pauses++;
	set_state(i, LT_INST_PAUSED);
	if (!is_current(i)) {
		retire(i);
		return;
	}
	if (i->cancel_pause) {
		inst_resume(i);
		plan(a);
		return;
	}
	if (a->pol.scale_down)
		lt_timer_arm_in(clk(a), &i->life, a->pol.scale_down);
	plan(a);
}

static int inst_resume(struct lt_instance *i)
{
	struct lt_app *a = i->app;
	struct lt_engine *e = i->gen->engine;
	lt_timer_cancel(clk(a), &i->life);
	i->cancel_pause = false;
	i->op_started = now(a);
	i->start_kind = START_RESUME;
	set_state(i, LT_INST_RESUMING);
	lt_clear_error();
	if (e->ops->resume(e, i, on_resumed, i) < 0) {
		stop_failed(i, "resume", lt_errmsg());
		return -1;
	}
	lt_timer_arm_in(clk(a), &i->op, a->pol.op_timeout);
	return 0;
}

static void on_resumed(void *arg, const struct lt_engine_result *r)
{
	struct lt_instance *i = arg;
	struct lt_app *a = i->app;
	if (!op_succeeded(i, r, "resume"))
		return;
	a->st.resumes++;
	record_start(i);
	i->started_by = LT_BY_RESUME;
	i->start_tier = LT_TIER_RESUME;
	set_state(i, LT_INST_RUNNING);
	became_available(i);
}

/* Idle running -> pause (unless min needs it warm); paused -> drop. */
static void life_fired(struct lt_timer *t)
{
	struct lt_instance *i = list_entry(t, struct lt_instance, life);
	struct lt_app *a = i->app;
	if (i->state == LT_INST_RUNNING) {
		if (i->nconns || i->held || i->stop_called)
			return;
		if (!is_current(i)) {
			retire(i);
			return;
		}
		if (count_warm(a) <= a->pol.min)
			return; /* min keeps it warm; re-armed when it next goes idle */
		inst_pause(i);
	} else if (i->state == LT_INST_PAUSED) {
		a->st.drops++;
		inst_stop(i, "scale-down after idle");
	}
}

/* Op timeout (start/pause/resume/stop) or the drain deadline. */
static void op_fired(struct lt_timer *t)
{
	struct lt_instance *i = list_entry(t, struct lt_instance, op);
	struct lt_app *a = i->app;
	char why[128];
	switch (i->state) {
	case LT_INST_RUNNING:
		inst_stop(i, "drain timeout");
		return;
	case LT_INST_STOPPING:
		/* The engine never finished; keep the record (not counted as
		 * live) so its late completion still finds it. */
		lt_error("proxy: %s did not stop within %llu ms", i->id,
			 (unsigned long long)(a->pol.op_timeout / 1000000));
		set_state(i, LT_INST_DEAD);
		return;
	case LT_INST_STARTING:
		snprintf(why, sizeof(why), "%s timed out",
			 i->start_kind == START_COLD ? "boot" : "restore");
		start_failed(a, why);
		inst_stop(i, why);
		return;
	default:
		snprintf(why, sizeof(why), "%s timed out", lt_inst_state_name(i->state));
		inst_stop(i, why);
		return;
	}
}

/* ---- engine-facing accessors ------------------------------------------- */

void lt_instance_set_engine_data(struct lt_instance *inst, void *data)
{
	inst->engine_data = data;
}

void *lt_instance_engine_data(const struct lt_instance *inst)
{
	return inst->engine_data;
}

const char *lt_instance_id(const struct lt_instance *inst)
{
	return inst->id;
}

void lt_instance_exited(struct lt_instance *i, const char *reason)
{
	if (i->stop_called)
		return;
	i->app->st.deaths++;
	char why[256];
	snprintf(why, sizeof(why), "died: %s", reason ? reason : "unknown reason");
	lt_warn("proxy: instance %s %s", i->id, why);
	inst_stop(i, why);
}

void lt_instance_set_hold(struct lt_instance *i, bool hold)
{
	i->held = hold;
	if (hold)
		lt_timer_cancel(clk(i->app), &i->life);
	else if (i->state == LT_INST_RUNNING && i->nconns == 0)
		inst_went_idle(i);
}

/* ---- conn deadline ----------------------------------------------------- */

static void deadline_fired(struct lt_timer *t)
{
	struct lt_pool_conn *pc = list_entry(t, struct lt_pool_conn, deadline);
	if (pc->state == PC_NOTIFY) {
		list_del(&pc->link);
		if (pc->notify_lost)
			pc->ops->lost(pc->ctx, pc->reason);
		else
			pc->ops->refused(pc->ctx, pc->reason);
		pc_free(pc);
		return;
	}
	struct lt_app *a = pc->app;
	unsigned ms = (unsigned)(a->pol.queue_timeout / 1000000);
	if (pc->state == PC_WAITING) {
		list_del(&pc->link);
		a->nqueue--;
		a->st.queue_timeouts++;
		if (a->last_error[0] && lt_timer_armed(&a->start_retry))
			pc_notify(pc, false,
				  "no instance of %s within %u ms (starts failing: %s)",
				  a->name, ms, a->last_error);
		else
			pc_notify(pc, false,
				  "no instance of %s within %u ms (%u live, max %u, %u queued)",
				  a->name, ms, count_live_current(a), a->pol.max, a->nqueue);
		return;
	}
	/* connecting or between retries: give up on this attempt */
	char id[sizeof(pc->inst->id)];
	snprintf(id, sizeof(id), "%s", pc->inst ? pc->inst->id : "?");
	a->st.queue_timeouts++;
	pc_detach_and_settle(pc);
	pc_notify(pc, false, "connect to guest port %u of %s timed out after %u ms", pc->port,
		  id, ms);
	plan(a);
}

/* ---- public: conns ----------------------------------------------------- */

struct lt_pool_conn *lt_app_acquire(struct lt_app *a, uint16_t guest_port,
				    const struct lt_acquire_ops *ops, void *ctx)
{
	if (a->closing || a->pool->shutting_down) {
		a->st.refused++;
		lt_fail("app %s is stopping", a->name);
		return NULL;
	}
	a->st.connections++;
	struct lt_instance *i = list_empty(&a->queue) ? pick_available(a) : NULL;
	if (!i && a->nqueue >= a->pol.queue_max) {
		a->st.refused++;
		a->st.queue_full++;
		lt_fail("app %s: queue full (%u connections waiting)", a->name, a->nqueue);
		struct lt_pool_event ev = {
			.kind = LT_EV_REFUSED, .app = a->name, .detail = lt_errmsg()};
		emit(a->pool, &ev);
		return NULL;
	}
	struct lt_pool_conn *pc = lt_calloc(1, sizeof(*pc));
	if (!pc)
		return NULL;
	pc->app = a;
	pc->clock = clk(a);
	pc->port = guest_port;
	pc->ops = ops;
	pc->ctx = ctx;
	pc->t0 = now(a);
	list_init(&pc->link);
	lt_timer_init(&pc->deadline, deadline_fired);
	lt_timer_init(&pc->retry, retry_fired);
	lt_timer_arm_in(clk(a), &pc->deadline, a->pol.queue_timeout);
	if (i) {
		assign(pc, i);
		return pc;
	}
	pc->waited = true;
	pc->state = PC_WAITING;
	pc->tier = LT_TIER_QUEUE;
	list_add_tail(&a->queue, &pc->link);
	a->nqueue++;
	plan(a);
	return pc;
}

void lt_pool_conn_cancel(struct lt_pool_conn *pc)
{
	struct lt_app *a = pc->app;
	switch (pc->state) {
	case PC_WAITING:
		list_del(&pc->link);
		a->nqueue--;
		break;
	case PC_NOTIFY:
		/* the app may be gone: touch nothing of it */
		list_del(&pc->link);
		pc_free(pc);
		return;
	default:
		pc_detach_and_settle(pc);
		break;
	}
	pc_free(pc);
	plan(a);
}

void lt_pool_conn_release(struct lt_pool_conn *pc, uint64_t bytes_in, uint64_t bytes_out)
{
	if (pc->state != PC_NOTIFY) { /* else the app may be on its way out */
		pc->app->st.bytes_in += bytes_in;
		pc->app->st.bytes_out += bytes_out;
	}
	lt_pool_conn_cancel(pc);
}

const char *lt_pool_conn_instance(const struct lt_pool_conn *pc)
{
	return pc->inst ? pc->inst->id : NULL;
}

enum lt_tier lt_pool_conn_tier(const struct lt_pool_conn *pc)
{
	return pc->tier;
}

/* ---- public: pool and apps --------------------------------------------- */

struct lt_pool *lt_pool_new(struct lt_clock *clock)
{
	struct lt_pool *p = lt_calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->clock = clock;
	list_init(&p->apps);
	list_init(&p->notify);
	return p;
}

static void app_free(struct lt_app *a)
{
	struct lt_clock *c = clk(a);
	lt_timer_cancel(c, &a->shell_retry);
	lt_timer_cancel(c, &a->shell_hold);
	lt_timer_cancel(c, &a->start_retry);
	lt_timer_cancel(c, &a->finish);
	while (!list_empty(&a->queue)) {
		struct lt_pool_conn *pc = list_entry(a->queue.next, struct lt_pool_conn, link);
		list_del(&pc->link);
		pc_free(pc);
	}
	while (!list_empty(&a->insts)) {
		struct lt_instance *i = list_entry(a->insts.next, struct lt_instance, link);
		while (!list_empty(&i->conns)) {
			struct lt_pool_conn *pc =
				list_entry(i->conns.next, struct lt_pool_conn, link);
			pc_detach(pc);
			pc_free(pc);
		}
		inst_free(i);
	}
	destroy_shells(a);
	list_del(&a->link);
	gen_unref(a->gen);
	free(a->degraded);
	free(a->name);
	free(a);
}

void lt_pool_free(struct lt_pool *p)
{
	if (!p)
		return;
	while (!list_empty(&p->notify)) {
		struct lt_pool_conn *pc = list_entry(p->notify.next, struct lt_pool_conn, link);
		list_del(&pc->link);
		pc_free(pc);
	}
	while (!list_empty(&p->apps))
		app_free(list_entry(p->apps.next, struct lt_app, link));
	free(p);
}

void lt_pool_set_observer(struct lt_pool *p, lt_pool_observer fn, void *ctx)
{
	p->observer = fn;
	p->observer_ctx = ctx;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (size_t k = 0; k < n; k++) {
		char c = s[k];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '_' || c == '.' || (c >= 'A' && c <= 'Z')))
			return false;
	}
	return true;
}

static int check_engine(const struct lt_engine *e)
{
	const struct lt_engine_ops *o = e ? e->ops : NULL;
	if (!o || !o->boot || !o->restore || !o->pause || !o->resume || !o->connect ||
	    !o->stop)
		return lt_fail("engine lacks a required operation");
	if (!o->shell_create != !o->shell_destroy)
		return lt_fail("engine %s: shell_create and shell_destroy go together",
			       o->name ? o->name : "?");
	return 0;
}

struct lt_app *lt_pool_add_app(struct lt_pool *p, struct lt_engine *engine,
			       const struct lt_app_spec *spec, const struct lt_policy *pol)
{
	if (!spec->name || !valid_name(spec->name)) {
		lt_fail("invalid app name '%s'", spec->name ? spec->name : "");
		return NULL;
	}
	if (check_engine(engine) < 0 || lt_policy_check(pol) < 0) {
		lt_fail_ctx("app %s", spec->name);
		return NULL;
	}
	if (p->shutting_down) {
		lt_fail("pool is shutting down");
		return NULL;
	}
	if (lt_pool_find_app(p, spec->name)) {
		lt_fail("app %s exists already", spec->name);
		return NULL;
	}
	struct lt_app *a = lt_calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->pool = p;
	a->name = lt_strdup(spec->name);
	a->gen = gen_new(engine, spec, 1);
	if (!a->name || !a->gen) {
		free(a->name);
		gen_unref(a->gen);
		free(a);
		return NULL;
	}
	a->pol = *pol;
	a->st.generation = 1;
	list_init(&a->insts);
	list_init(&a->queue);
	list_init(&a->shells);
	lt_timer_init(&a->shell_retry, shell_retry_fired);
	lt_timer_init(&a->shell_hold, shell_hold_fired);
	lt_timer_init(&a->start_retry, start_retry_fired);
	lt_timer_init(&a->finish, finish_fired);
	list_add_tail(&p->apps, &a->link);
	plan(a);
	return a;
}

struct lt_app *lt_pool_find_app(struct lt_pool *p, const char *name)
{
	for (struct lt_list *l = p->apps.next; l != &p->apps; l = l->next) {
		struct lt_app *a = list_entry(l, struct lt_app, link);
		if (!strcmp(a->name, name))
			return a;
	}
	return NULL;
}

struct lt_app *lt_pool_first_app(struct lt_pool *p)
{
	return list_empty(&p->apps) ? NULL : list_entry(p->apps.next, struct lt_app, link);
}

struct lt_app *lt_app_next(struct lt_app *a)
{
	struct lt_list *n = a->link.next;
	return n == &a->pool->apps ? NULL : list_entry(n, struct lt_app, link);
}

const char *lt_app_name(const struct lt_app *a)
{
	return a->name;
}

const struct lt_policy *lt_app_policy(const struct lt_app *a)
{
	return &a->pol;
}

const char *lt_app_degraded(const struct lt_app *a)
{
	return a->degraded;
}

int lt_app_replace(struct lt_app *a, struct lt_engine *engine,
		   const struct lt_app_spec *spec, const struct lt_policy *pol)
{
	if (a->closing)
		return lt_fail("app %s is being removed", a->name);
	if (!spec->name || strcmp(spec->name, a->name))
		return lt_fail("app %s: replacement spec names another app", a->name);
	if (check_engine(engine) < 0 || lt_policy_check(pol) < 0)
		return lt_fail_ctx("app %s", a->name);
	struct lt_gen *g = gen_new(engine, spec, a->gen->spec.generation + 1);
	if (!g)
		return -1;
	destroy_shells(a);
	gen_unref(a->gen);
	a->gen = g;
	a->st.generation = g->spec.generation;
	a->pol = *pol;
	free(a->degraded);
	a->degraded = NULL;
	a->last_error[0] = '\0';
	a->start_failures_in_row = 0;
	a->start_backoff = 0;
	lt_timer_cancel(clk(a), &a->start_retry);
	lt_timer_cancel(clk(a), &a->shell_retry);
	lt_timer_cancel(clk(a), &a->shell_hold);
	a->shell_backoff = 0;
	lt_info("proxy: app %s: generation %u deployed; old instances drain", a->name,
		g->spec.generation);
	struct lt_pool_event ev = {.kind = LT_EV_REPLACED, .app = a->name};
	emit(a->pool, &ev);
	a->in_plan = true; /* retire may stop instances; plan once after */
	for (struct lt_list *l = a->insts.next, *n; l != &a->insts; l = n) {
		n = l->next;
		retire(list_entry(l, struct lt_instance, link));
	}
	a->in_plan = false;
	plan(a);
	return 0;
}

int lt_app_set_policy(struct lt_app *a, const struct lt_policy *pol)
{
	if (lt_policy_check(pol) < 0)
		return lt_fail_ctx("app %s", a->name);
	a->pol = *pol;
	a->in_plan = true;
	/* Over max: drop paused instances first, then idle running ones. */
	for (int pass = 0; pass < 2; pass++) {
		for (struct lt_list *l = a->insts.next, *n; l != &a->insts; l = n) {
			n = l->next;
			struct lt_instance *i = list_entry(l, struct lt_instance, link);
			if (count_live_current(a) <= a->pol.max)
				break;
			if (!is_current(i) || i->stop_called)
				continue;
			if ((pass == 0 && i->state == LT_INST_PAUSED) ||
			    (pass == 1 && i->state == LT_INST_RUNNING && i->nconns == 0))
				inst_stop(i, "scaled down");
		}
	}
	for (struct lt_list *l = a->insts.next; l != &a->insts; l = l->next) {
		struct lt_instance *i = list_entry(l, struct lt_instance, link);
		lt_timer_cancel(clk(a), &i->life);
		if (i->state == LT_INST_RUNNING)
			inst_went_idle(i);
		else if (i->state == LT_INST_PAUSED && a->pol.scale_down)
			lt_timer_arm_in(clk(a), &i->life, a->pol.scale_down);
	}
	while (!list_empty(&a->shells) && a->shells_ready > a->pol.shells) {
		struct lt_shell_rec *s = take_shell(a);
		s->gen->engine->ops->shell_destroy(s->gen->engine, s->shell);
		gen_unref(s->gen);
		free(s);
	}
	a->in_plan = false;
	plan(a);
	return 0;
}

static bool removable(const struct lt_app *a)
{
	return a->closing && !a->in_plan && list_empty(&a->insts) && !a->shells_creating &&
	       !a->nqueue;
}

/* Freeing happens from a timer so no caller up the stack holds a freed app. */
static void maybe_finish_remove(struct lt_app *a)
{
	if (removable(a) && !lt_timer_armed(&a->finish))
		lt_timer_arm(clk(a), &a->finish, now(a));
}

static void finish_fired(struct lt_timer *t)
{
	struct lt_app *a = list_entry(t, struct lt_app, finish);
	if (!removable(a))
		return;
	struct lt_pool *p = a->pool;
	void (*cb)(void *) = a->removed_cb;
	void *arg = a->removed_arg;
	struct lt_pool_event ev = {.kind = LT_EV_REMOVED, .app = a->name};
	emit(p, &ev);
	app_free(a);
	if (cb)
		cb(arg);
}

void lt_app_remove(struct lt_app *a, void (*done)(void *arg), void *arg)
{
	if (a->closing)
		return;
	a->closing = true;
	a->removed_cb = done;
	a->removed_arg = arg;
	lt_timer_cancel(clk(a), &a->start_retry);
	lt_timer_cancel(clk(a), &a->shell_retry);
	lt_timer_cancel(clk(a), &a->shell_hold);
	char why[128];
	snprintf(why, sizeof(why), "app %s is stopping", a->name);
	refuse_waiters(a, why);
	destroy_shells(a);
	a->in_plan = true;
	for (struct lt_list *l = a->insts.next, *n; l != &a->insts; l = n) {
		n = l->next;
		retire(list_entry(l, struct lt_instance, link));
	}
	a->in_plan = false;
	maybe_finish_remove(a);
}

static void shutdown_app_done(void *arg)
{
	struct lt_pool *p = arg;
	if (--p->removing == 0 && p->shutdown_cb)
		p->shutdown_cb(p->shutdown_arg);
}

void lt_pool_shutdown(struct lt_pool *p, void (*done)(void *arg), void *arg)
{
	p->shutting_down = true;
	p->shutdown_cb = done;
	p->shutdown_arg = arg;
	p->removing = 1; /* held until every app has been asked */
	for (struct lt_list *l = p->apps.next, *n; l != &p->apps; l = n) {
		n = l->next;
		struct lt_app *a = list_entry(l, struct lt_app, link);
		if (a->closing)
			continue;
		p->removing++;
		lt_app_remove(a, shutdown_app_done, p);
	}
	shutdown_app_done(p);
}

/* ---- public: introspection and admin ----------------------------------- */

void lt_app_get_stats(const struct lt_app *a, struct lt_app_stats *st)
{
	*st = a->st;
	memset(st->by_state, 0, sizeof(st->by_state));
	st->instances = 0;
	for (const struct lt_list *l = a->insts.next; l != &a->insts; l = l->next) {
		const struct lt_instance *i = list_entry(l, struct lt_instance, link);
		st->by_state[i->state]++;
		if (is_live(i))
			st->instances++;
	}
	st->queued = a->nqueue;
	st->shells_ready = a->shells_ready;
}

struct lt_instance *lt_app_first_instance(struct lt_app *a)
{
	return list_empty(&a->insts) ? NULL
				     : list_entry(a->insts.next, struct lt_instance, link);
}

struct lt_instance *lt_instance_next(struct lt_instance *i)
{
	struct lt_list *n = i->link.next;
	return n == &i->app->insts ? NULL : list_entry(n, struct lt_instance, link);
}

struct lt_instance *lt_pool_find_instance(struct lt_pool *p, const char *id)
{
	for (struct lt_app *a = lt_pool_first_app(p); a; a = lt_app_next(a))
		for (struct lt_instance *i = lt_app_first_instance(a); i;
		     i = lt_instance_next(i))
			if (!strcmp(i->id, id))
				return i;
	return NULL;
}

void lt_instance_get_info(const struct lt_instance *i, struct lt_instance_info *info)
{
	*info = (struct lt_instance_info){
		.id = i->id,
		.app = i->app->name,
		.state = i->state,
		.started_by = i->started_by,
		.generation = i->gen->spec.generation,
		.conns = i->nconns,
		.held = i->held,
		.state_since = i->state_since,
	};
}

int lt_instance_pause(struct lt_instance *i)
{
	if (i->state != LT_INST_RUNNING || i->stop_called)
		return lt_fail("%s is %s, not running", i->id, lt_inst_state_name(i->state));
	if (i->nconns)
		return lt_fail("%s has %u open connections", i->id, i->nconns);
	return inst_pause(i);
}

int lt_instance_resume(struct lt_instance *i)
{
	if (i->state != LT_INST_PAUSED || i->stop_called)
		return lt_fail("%s is %s, not paused", i->id, lt_inst_state_name(i->state));
	if (inst_resume(i) < 0)
		return -1;
	return 0;
}

int lt_instance_stop(struct lt_instance *i)
{
	if (i->stop_called)
		return lt_fail("%s is stopping already", i->id);
	inst_stop(i, "stopped by request");
	return 0;
}
