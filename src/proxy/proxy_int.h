/* Private to src/proxy: pool structures shared by pool.c and metrics.c. */
#ifndef LTTLE_PROXY_INT_H
#define LTTLE_PROXY_INT_H

#include "proxy.h"

/* ---- intrusive circular lists ---------------------------------------- */

struct lt_list {
	struct lt_list *prev, *next;
};

static inline void list_init(struct lt_list *h)
{
	h->prev = h->next = h;
}
static inline bool list_empty(const struct lt_list *h)
{
	return h->next == h;
}
static inline void list_add_tail(struct lt_list *h, struct lt_list *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}
static inline void list_add_head(struct lt_list *h, struct lt_list *n)
{
	n->next = h->next;
	n->prev = h;
	h->next->prev = n;
	h->next = n;
}
static inline void list_del(struct lt_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}
#define list_entry(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* ---- histograms -------------------------------------------------------- */

#define LT_HIST_BUCKETS 16
extern const double lt_hist_bounds[LT_HIST_BUCKETS]; /* seconds, ascending */

struct lt_hist {
	uint64_t bucket[LT_HIST_BUCKETS]; /* non-cumulative counts */
	uint64_t count;
	uint64_t sum_ns;
};
void lt_hist_add(struct lt_hist *h, uint64_t ns);

/* Start-time histograms by how the instance came up. */
enum { START_COLD, START_RESTORE, START_SHELL, START_RESUME, START_KINDS };

/* ---- pool structures --------------------------------------------------- */

/* One deployed generation of an app; shared by its instances and shells. */
struct lt_gen {
	int refs;
	struct lt_engine *engine;
	struct lt_app_spec spec; /* name and snapshot are owned copies */
	bool snapshot_bad;
};

struct lt_shell_rec {
	struct lt_list link;
	struct lt_gen *gen;
	struct lt_shell *shell;
};

struct lt_app {
	struct lt_list link; /* pool->apps */
	struct lt_pool *pool;
	char *name;
	struct lt_policy pol;
	struct lt_gen *gen;
	struct lt_list insts; /* every instance of every generation */
	struct lt_list queue; /* waiting pool conns, FIFO */
	uint32_t nqueue;
	struct lt_list shells; /* ready shells */
	uint32_t shells_ready, shells_creating;
	struct lt_timer shell_retry;
	uint64_t shell_backoff;
	struct lt_timer shell_hold; /* refill waits while a wake uses a shell */
	struct lt_timer start_retry; /* backoff after start failures */
	struct lt_timer finish;      /* frees a removed app */
	uint64_t start_backoff;
	uint32_t start_failures_in_row;
	char last_error[256];
	char *degraded;
	bool closing;
	bool in_plan, replan;
	void (*removed_cb)(void *arg);
	void *removed_arg;
	struct lt_app_stats st; /* counters; gauges are computed */
	struct lt_hist wake[LT_TIER_COUNT];
	struct lt_hist start[START_KINDS];
};

struct lt_instance {
	struct lt_list link; /* app->insts */
	struct lt_app *app;
	struct lt_gen *gen;
	char id[96];
	enum lt_inst_state state;
	enum lt_started_by started_by;
	enum lt_tier start_tier; /* how it last became available */
	int start_kind;          /* START_* of the op in flight */
	bool fresh;              /* just became available (dispatching now) */
	bool cancel_pause;       /* a connection arrived while pausing */
	bool held;
	bool stop_called;
	uint32_t nconns;
	struct lt_list conns;
	struct lt_timer life; /* idle -> pause, paused -> drop */
	struct lt_timer op;   /* op timeout; drain deadline while RUNNING */
	uint64_t state_since;
	uint64_t last_active; /* when it last went idle */
	uint64_t op_started;
	void *engine_data;
};

enum pc_state {
	PC_WAITING,    /* in app->queue */
	PC_CONNECTING, /* engine connect in flight */
	PC_RETRY,      /* waiting to retry connect */
	PC_ACTIVE,     /* caller forwarding */
	PC_NOTIFY,     /* refusal/loss being delivered */
};

struct lt_conn_op; /* an engine connect in flight */

struct lt_pool_conn {
	struct lt_list link; /* app->queue, inst->conns or pool->notify */
	struct lt_app *app;
	struct lt_clock *clock;
	struct lt_instance *inst;
	enum pc_state state;
	uint16_t port;
	const struct lt_acquire_ops *ops;
	void *ctx;
	struct lt_timer deadline; /* queue timeout; also delivers notifications */
	struct lt_timer retry;
	struct lt_conn_op *op;
	uint32_t attempts;
	enum lt_tier tier;
	bool waited;
	bool notify_lost; /* PC_NOTIFY: lost (else refused) */
	uint64_t t0;
	char reason[256];
};

struct lt_pool {
	struct lt_clock *clock;
	struct lt_list apps;
	struct lt_list notify; /* conns whose refusal/loss is pending */
	lt_pool_observer observer;
	void *observer_ctx;
	uint64_t inst_seq;
	bool shutting_down;
	uint32_t removing;
	void (*shutdown_cb)(void *arg);
	void *shutdown_arg;
};

#endif
