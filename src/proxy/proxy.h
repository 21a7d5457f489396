/* proxy: the front of ignitiond. Event loop, the engine interface, the
 * pool/acquire state machine, the forwarder and the listeners.
 *
 * Threading: everything here runs on ONE thread, the loop's. Engines that
 * need threads (or child processes) do their slow work elsewhere and post
 * completions back with lt_loop_post(). Nothing in this module blocks.
 *
 * Layering (each part usable alone, which is how the unit tests drive it):
 *   lt_clock/lt_timer   time and timers; the loop provides a real one, tests
 *                       a fake one they advance by hand
 *   lt_loop             epoll + timers + cross-thread posts
 *   lt_engine           what a VM backend implements (lttle VMM, QEMU, ...)
 *   lt_pool / lt_app    per-app instances, acquire tiers, pause/drop, metrics
 *   lt_fwd              one proxied connection (splice through pipes)
 *   lt_proxy            listeners (TCP per app port, shared HTTP by Host)
 *                       gluing accept -> acquire -> forward
 * See docs/proxy.md for the state machine and the engine contract.
 */
#ifndef LTTLE_PROXY_H
#define LTTLE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util/util.h"

#define LT_MS(x) ((uint64_t)(x) * 1000000ull)
#define LT_SEC(x) ((uint64_t)(x) * 1000000000ull)

/* ==== timers and clocks ================================================ */

/* An intrusive timer. Embed it, set fn, arm it on a clock. Arming never
 * allocates and so never fails. */
struct lt_timer {
	void (*fn)(struct lt_timer *t);
	uint64_t when; /* absolute deadline, ns on the clock's timeline */
	/* private: pairing-heap links */
	uint64_t seq;
	struct lt_timer *child, *next, *prev;
	bool armed;
};

/* A clock: a time source plus the queue of timers armed on it. The loop
 * owns a real one (CLOCK_MONOTONIC); tests make a fake one and move it. */
struct lt_clock {
	uint64_t (*now)(struct lt_clock *c);
	struct lt_timer *root; /* private */
	uint64_t seq;          /* private */
};

void lt_timer_init(struct lt_timer *t, void (*fn)(struct lt_timer *t));
/* Arms (or re-arms) t at the absolute time when. */
void lt_timer_arm(struct lt_clock *c, struct lt_timer *t, uint64_t when);
/* Arms t at now + delta. */
void lt_timer_arm_in(struct lt_clock *c, struct lt_timer *t, uint64_t delta);
void lt_timer_cancel(struct lt_clock *c, struct lt_timer *t);
static inline bool lt_timer_armed(const struct lt_timer *t)
{
	return t->armed;
}
static inline uint64_t lt_clock_now(struct lt_clock *c)
{
	return c->now(c);
}
/* Earliest armed deadline, or UINT64_MAX. */
uint64_t lt_clock_next(struct lt_clock *c);
/* Fires every timer due at or before now (in deadline order, timers armed
 * by callbacks included when due). Returns how many fired. */
size_t lt_clock_run(struct lt_clock *c, uint64_t now);

/* ==== event loop ======================================================= */

struct lt_loop;
struct lt_watch;
typedef void (*lt_watch_fn)(struct lt_watch *w, uint32_t events);

/* One fd watched by the loop (level-triggered epoll events). Embed it. */
struct lt_watch {
	int fd;
	uint32_t events;
	lt_watch_fn fn;
	struct lt_loop *loop; /* private */
};

struct lt_loop *lt_loop_new(void);
/* Frees the loop. Watches still registered are simply forgotten. */
void lt_loop_free(struct lt_loop *l);
struct lt_clock *lt_loop_clock(struct lt_loop *l);
/* The time the loop last woke up (cheap; what handlers should use). */
uint64_t lt_loop_now(struct lt_loop *l);

int lt_watch_add(struct lt_loop *l, struct lt_watch *w, int fd, uint32_t events,
		 lt_watch_fn fn);
int lt_watch_mod(struct lt_watch *w, uint32_t events);
/* Stops watching (the fd is not closed). Safe from inside any callback,
 * including the watch's own: pending events for it are dropped. */
void lt_watch_del(struct lt_watch *w);

/* Runs fn(arg) on the loop thread soon. Thread-safe; async-signal-unsafe.
 * Posts are run in order. Fails only on allocation failure. */
int lt_loop_post(struct lt_loop *l, void (*fn)(void *arg), void *arg);

/* Dispatches what is ready, waiting at most max_wait_ms (-1: until
 * something happens). Returns the number of events handled, or -1. */
int lt_loop_run_once(struct lt_loop *l, int max_wait_ms);
/* Runs until lt_loop_stop() (thread-safe) is called. */
int lt_loop_run(struct lt_loop *l);
void lt_loop_stop(struct lt_loop *l);
/* For embedding in another poller: an fd that is readable whenever the loop
 * has I/O or posts to handle, and the ms until its next timer (-1: none).
 * Call lt_loop_run_once(l, 0) when either says so. */
int lt_loop_fd(struct lt_loop *l);
int lt_loop_timeout_ms(struct lt_loop *l);

/* ==== engine interface ================================================= */

struct lt_engine;
struct lt_instance; /* pool-owned; engines keep their state via engine_data */
struct lt_shell;    /* engine-owned: a pre-made VM process waiting for restore */

/* One generation (deploy) of an app, as an engine needs it. */
struct lt_app_spec {
	const char *name;     /* validated app name */
	uint32_t generation;  /* set by the pool: 1, 2, ... per redeploy */
	const char *snapshot; /* snapshot path; NULL when the app has none */
	void *engine_cfg;     /* engine-specific (kernel, rootfs, mem, cpus, env) */
	/* Called once no instance or shell of this generation remains. */
	void (*engine_cfg_free)(void *engine_cfg);
};

/* What an engine reports when an operation completes. */
struct lt_engine_result {
	int err;           /* 0 ok, negative failure */
	bool snapshot_bad; /* restore: the snapshot itself is unusable */
	int fd;            /* connect: connected stream to the guest port; the
			      receiver owns it */
	struct lt_shell *shell; /* shell_create: the new shell */
	const char *msg;   /* failure reason, valid during the callback */
};
typedef void (*lt_engine_done)(void *arg, const struct lt_engine_result *r);

/* Returned synchronously by restore when the snapshot is unusable. */
#define LT_ENGINE_ESNAPSHOT (-2)

/* The engine contract (docs/proxy.md has the long form):
 * - Ops are called on the loop thread and must not block. They return 0
 *   when started (done is then called exactly once, later, on the loop
 *   thread, never from inside the op itself) or a negative value with
 *   lt_fail() when they could not start (done is then never called).
 * - boot/restore create a running instance. If they complete with an error
 *   the engine has cleaned up and the instance is finished (no stop).
 * - After a successful boot/restore the pool calls stop exactly once. stop
 *   completes after every other completion for that instance has been
 *   delivered; afterwards the engine never touches the instance again.
 * - An instance that dies on its own is reported with lt_instance_exited().
 *   Completions still outstanding must be delivered (with errors).
 * - connect honours timeout_ns and yields a connected, non-blocking stream
 *   fd to guest_port. The pool retries; the engine need not.
 * - shell_create/shell_destroy are optional (NULL: no shells). A shell
 *   passed to restore is consumed by it, whatever the outcome.
 */
struct lt_engine_ops {
	const char *name;
	int (*boot)(struct lt_engine *e, struct lt_instance *inst,
		    const struct lt_app_spec *app, lt_engine_done done, void *arg);
	int (*restore)(struct lt_engine *e, struct lt_instance *inst,
		       const struct lt_app_spec *app, struct lt_shell *shell,
		       lt_engine_done done, void *arg);
	int (*snapshot)(struct lt_engine *e, struct lt_instance *inst,
			const char *path, lt_engine_done done, void *arg);
	int (*pause)(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done,
		     void *arg);
	int (*resume)(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done,
		      void *arg);
	int (*connect)(struct lt_engine *e, struct lt_instance *inst, uint16_t guest_port,
		       uint64_t timeout_ns, lt_engine_done done, void *arg);
	int (*stop)(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done,
		    void *arg);
	int (*shell_create)(struct lt_engine *e, const struct lt_app_spec *app,
			    lt_engine_done done, void *arg);
	void (*shell_destroy)(struct lt_engine *e, struct lt_shell *shell);
};

struct lt_engine {
	const struct lt_engine_ops *ops;
	void *priv;
};

/* Engine-side accessors for a pool instance. */
void lt_instance_set_engine_data(struct lt_instance *inst, void *data);
void *lt_instance_engine_data(const struct lt_instance *inst);
const char *lt_instance_id(const struct lt_instance *inst);
/* The instance died on its own (process exit, crash). Its connections are
 * failed and it is replaced when needed. Ignored after stop was called. */
void lt_instance_exited(struct lt_instance *inst, const char *reason);
/* Guest asked to stay awake (hold) or released it: a held instance is
 * never paused for idleness. */
void lt_instance_set_hold(struct lt_instance *inst, bool hold);

/* ==== pool ============================================================= */

enum lt_inst_state {
	LT_INST_STARTING,
	LT_INST_RUNNING,
	LT_INST_PAUSING,
	LT_INST_PAUSED,
	LT_INST_RESUMING,
	LT_INST_STOPPING,
	LT_INST_DEAD,
	LT_INST_NSTATES
};
enum lt_started_by { LT_BY_COLD, LT_BY_RESTORE, LT_BY_RESUME };
/* How a connection got its instance (the wake tiers, then the queue). */
enum lt_tier {
	LT_TIER_IDLE,    /* 1: an idle running instance */
	LT_TIER_BUSY,    /* 2: a busy one with spare concurrency */
	LT_TIER_RESUME,  /* 3: resumed a paused instance */
	LT_TIER_SHELL,   /* 4: restored into a pre-made shell */
	LT_TIER_RESTORE, /* 5: restored in a fresh VM process */
	LT_TIER_COLD,    /* 6: cold boot (no valid snapshot) */
	LT_TIER_QUEUE,   /* 7: waited at max for a free slot */
	LT_TIER_COUNT
};
const char *lt_inst_state_name(enum lt_inst_state s);
const char *lt_started_by_name(enum lt_started_by b);
const char *lt_tier_name(enum lt_tier t);

/* Per-app policy. Times are ns; 0 disables idle_timeout / scale_down. */
struct lt_policy {
	uint32_t min;              /* instances kept running (warm) */
	uint32_t max;              /* live instances, starting ones included */
	uint32_t concurrency;      /* connections per instance (>= 1) */
	uint32_t queue_max;        /* connections waiting for an instance */
	uint32_t shells;           /* pre-made shells kept ready (0: none) */
	uint64_t idle_timeout;     /* running, no connections -> pause */
	uint64_t scale_down;       /* paused -> dropped (snapshot stays) */
	uint64_t queue_timeout;    /* longest a connection waits for an instance */
	uint64_t start_timeout;    /* boot/restore must finish within */
	uint64_t op_timeout;       /* pause/resume/stop must finish within */
	uint64_t connect_timeout;  /* one engine connect attempt */
	uint32_t connect_retries;  /* extra attempts after the first */
	uint64_t drain_timeout;    /* redeploy/removal: old connections get this */
};
void lt_policy_defaults(struct lt_policy *p);
/* 0 if coherent; else -1 with a message naming the field. */
int lt_policy_check(const struct lt_policy *p);

struct lt_pool;
struct lt_app;
struct lt_pool_conn;

enum lt_pool_event_kind {
	LT_EV_INSTANCE, /* an instance changed state (state, started_by set) */
	LT_EV_DEGRADED, /* app degraded (detail: reason) */
	LT_EV_REPLACED, /* app redeployed (new generation) */
	LT_EV_REFUSED,  /* a connection was refused (detail: reason) */
	LT_EV_REMOVED,  /* app gone: every instance stopped */
};
struct lt_pool_event {
	enum lt_pool_event_kind kind;
	const char *app;
	const char *instance; /* LT_EV_INSTANCE */
	enum lt_inst_state state;
	enum lt_inst_state old_state;
	enum lt_started_by started_by;
	const char *detail;
};
typedef void (*lt_pool_observer)(void *ctx, const struct lt_pool_event *ev);

struct lt_pool *lt_pool_new(struct lt_clock *clock);
/* Frees everything. Instances are not stopped: call lt_pool_shutdown first
 * and wait for its callback. */
void lt_pool_free(struct lt_pool *p);
void lt_pool_set_observer(struct lt_pool *p, lt_pool_observer fn, void *ctx);
/* Stops accepting, refuses waiters, lets open connections run up to each
 * app's drain_timeout, stops every instance, then calls done(arg). */
void lt_pool_shutdown(struct lt_pool *p, void (*done)(void *arg), void *arg);

/* Adds an app (copies spec and policy). NULL with lt_fail on bad input. */
struct lt_app *lt_pool_add_app(struct lt_pool *p, struct lt_engine *engine,
			       const struct lt_app_spec *spec, const struct lt_policy *pol);
struct lt_app *lt_pool_find_app(struct lt_pool *p, const char *name);
struct lt_app *lt_pool_first_app(struct lt_pool *p);
struct lt_app *lt_app_next(struct lt_app *a);
/* Redeploy: a new generation takes every new connection at once; old
 * instances drain (up to drain_timeout) and stop. Clears degraded. */
int lt_app_replace(struct lt_app *a, struct lt_engine *engine,
		   const struct lt_app_spec *spec, const struct lt_policy *pol);
int lt_app_set_policy(struct lt_app *a, const struct lt_policy *pol);
/* Drains and stops the app's instances, then frees it and calls done. */
void lt_app_remove(struct lt_app *a, void (*done)(void *arg), void *arg);
const char *lt_app_name(const struct lt_app *a);
const struct lt_policy *lt_app_policy(const struct lt_app *a);
/* Reason the app is degraded (snapshot unusable), or NULL. */
const char *lt_app_degraded(const struct lt_app *a);

struct lt_app_stats {
	uint64_t connections;   /* acquire calls while the app was serving */
	uint64_t served;        /* connections handed an instance fd */
	uint64_t refused;       /* all refusals, queue timeouts included */
	uint64_t queue_timeouts;
	uint64_t queue_full;
	uint64_t restores;      /* shell + fresh restores started successfully */
	uint64_t shell_restores;
	uint64_t resumes;
	uint64_t cold_boots;
	uint64_t pauses;
	uint64_t drops;         /* paused instances stopped for scale-down */
	uint64_t start_failures;
	uint64_t deaths;        /* instances that died on their own */
	uint64_t connect_failures;
	uint64_t lost;          /* connections failed by their instance going away */
	uint64_t bytes_in, bytes_out;
	uint32_t instances;     /* live: starting..resuming */
	uint32_t peak_instances;
	uint32_t by_state[LT_INST_NSTATES];
	uint32_t queued;
	uint32_t shells_ready;
	uint32_t generation;
};
void lt_app_get_stats(const struct lt_app *a, struct lt_app_stats *st);

/* Instances, for listings and admin commands. */
struct lt_instance_info {
	const char *id;
	const char *app;
	enum lt_inst_state state;
	enum lt_started_by started_by;
	uint32_t generation;
	uint32_t conns;
	bool held;
	uint64_t state_since; /* clock time of the last state change */
};
struct lt_instance *lt_app_first_instance(struct lt_app *a);
struct lt_instance *lt_instance_next(struct lt_instance *i);
struct lt_instance *lt_pool_find_instance(struct lt_pool *p, const char *id);
void lt_instance_get_info(const struct lt_instance *i, struct lt_instance_info *info);
/* Admin: pause a running idle instance, resume a paused one, stop one
 * (its connections are failed). -1 with a message when not applicable. */
int lt_instance_pause(struct lt_instance *i);
int lt_instance_resume(struct lt_instance *i);
int lt_instance_stop(struct lt_instance *i);

/* Acquire: ask for a connection to guest_port of app's instance.
 * Returns NULL with lt_fail() when refused at once (queue full, app
 * stopping). Otherwise exactly one of ready/refused follows later; after
 * ready, lost may follow (instance gone: stop forwarding, do NOT release).
 * The callbacks are never called from inside lt_app_acquire. */
struct lt_acquire_ops {
	/* The caller now owns fd and must later lt_pool_conn_release(pc). */
	void (*ready)(void *ctx, struct lt_pool_conn *pc, int fd);
	/* pc is gone. */
	void (*refused)(void *ctx, const char *reason);
	/* pc is gone; close the connection. */
	void (*lost)(void *ctx, const char *reason);
};
struct lt_pool_conn *lt_app_acquire(struct lt_app *a, uint16_t guest_port,
				    const struct lt_acquire_ops *ops, void *ctx);
/* Before ready: the client went away. pc is gone; no callback follows. */
void lt_pool_conn_cancel(struct lt_pool_conn *pc);
/* After ready: the connection ended. pc is gone. */
void lt_pool_conn_release(struct lt_pool_conn *pc, uint64_t bytes_in, uint64_t bytes_out);
const char *lt_pool_conn_instance(const struct lt_pool_conn *pc);
enum lt_tier lt_pool_conn_tier(const struct lt_pool_conn *pc);

/* Prometheus text exposition of every app's counters, gauges and
 * histograms (wake latency by tier, start time by kind). */
int lt_pool_metrics(struct lt_pool *p, struct lt_buf *out);

/* ==== forwarder ======================================================== */

struct lt_forwarder;
struct lt_fwd;

struct lt_fwd_limits {
	size_t pipe_size;      /* bytes buffered per direction (0: kernel default) */
	uint64_t idle_timeout; /* no bytes either way for this long -> close (0: off) */
	uint64_t stall_timeout;/* buffered data not accepted for this long -> close */
	uint32_t max_conns;    /* open forwarded connections (0: unlimited) */
};
void lt_fwd_limits_defaults(struct lt_fwd_limits *l);

struct lt_fwd_stats {
	uint64_t bytes_up;   /* client -> instance */
	uint64_t bytes_down; /* instance -> client */
	uint64_t started;    /* loop time */
};
/* why: NULL after an orderly close of both directions, else the reason. */
typedef void (*lt_fwd_done)(void *ctx, const struct lt_fwd_stats *st, const char *why);

struct lt_forwarder *lt_forwarder_new(struct lt_loop *loop, const struct lt_fwd_limits *lim);
/* Frees the forwarder; connections still open are aborted (done called). */
void lt_forwarder_free(struct lt_forwarder *fw);
uint32_t lt_forwarder_active(const struct lt_forwarder *fw);
uint64_t lt_forwarder_total(const struct lt_forwarder *fw);

/* Forwards between client and upstream (non-blocking stream sockets; both
 * are owned and closed by the forwarder). prefix bytes (e.g. an HTTP head
 * already read) go upstream first. done is called once, never from inside
 * lt_fwd_start. NULL (fds untouched) on failure. */
struct lt_fwd *lt_fwd_start(struct lt_forwarder *fw, int client, int upstream,
			    const void *prefix, size_t prefix_len, lt_fwd_done done,
			    void *ctx);
/* Closes now; reset sends RST to the client. done is called from here. */
void lt_fwd_abort(struct lt_fwd *f, bool reset, const char *why);

/* ==== listeners and routing ============================================ */

struct lt_proxy;
struct lt_listener;

struct lt_proxy_config {
	struct lt_fwd_limits fwd;
	uint64_t http_head_timeout; /* whole request head must arrive within */
	size_t http_head_max;       /* bytes (<= 64 KiB) */
	uint32_t accept_batch;      /* accepts per wakeup per listener */
};
void lt_proxy_config_defaults(struct lt_proxy_config *c);

struct lt_proxy *lt_proxy_new(struct lt_loop *loop, struct lt_pool *pool,
			      const struct lt_proxy_config *cfg);
/* Closes every listener and aborts open connections. */
void lt_proxy_free(struct lt_proxy *px);
/* Closes every listener (SIGTERM drain); open connections go on. */
void lt_proxy_stop_accepting(struct lt_proxy *px);
uint32_t lt_proxy_active(const struct lt_proxy *px);
/* Prometheus text for the proxy itself: connections accepted and open,
 * TCP refusals, HTTP error replies by status. Append after
 * lt_pool_metrics() for /metrics. */
int lt_proxy_metrics(const struct lt_proxy *px, struct lt_buf *out);

/* A TCP listener forwarding any protocol to app's guest_port.
 * addr: "[ADDR:]PORT" ("8080", "127.0.0.1:8080", "[::1]:8080"; ADDR
 * defaults to 0.0.0.0; PORT 0 picks a free one). */
struct lt_listener *lt_proxy_listen_tcp(struct lt_proxy *px, const char *addr,
					struct lt_app *app, uint16_t guest_port);
/* A shared HTTP listener routing by Host header (see lt_listener_route). */
struct lt_listener *lt_proxy_listen_http(struct lt_proxy *px, const char *addr);
/* Maps host (case-insensitive, no port) to app:guest_port on an HTTP
 * listener. Replaces an existing route for host. */
int lt_listener_route(struct lt_listener *l, const char *host, struct lt_app *app,
		      uint16_t guest_port);
int lt_listener_unroute(struct lt_listener *l, const char *host);
/* Drops every listener and route bound to app (before lt_app_remove). */
void lt_proxy_forget_app(struct lt_proxy *px, struct lt_app *app);
void lt_listener_close(struct lt_listener *l);
uint16_t lt_listener_port(const struct lt_listener *l);

/* ---- parsing helpers (shared with the daemon and CLI) ---------------- */

/* "[ADDR:]PORT" -> sockaddr (IPv4 or bracketed IPv6). */
int lt_parse_listen_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* "[ADDR:]HOSTPORT:GUESTPORT" -> listen address string (malloc'd, as
 * lt_parse_listen_addr takes it) and guest port. */
int lt_parse_port_spec(const char *s, char **listen, uint16_t *guest_port);

/* Finds the Host of an HTTP/1.x request head (absolute-form target wins,
 * port stripped, lowercased, validated) in the first len bytes.
 * Returns 1 with host filled when the head is complete and has one,
 * 0 when more bytes are needed, -1 (with message and *status = 400/431)
 * on a bad or missing Host. *head_len gets the head's length. */
int lt_http_find_host(const char *buf, size_t len, size_t max, char *host,
		      size_t host_size, size_t *head_len, int *status);

/* ==== QEMU engine (src/proxy/engine_qemu.c; types in proxy/engine_qemu.h) == */
struct lt_qemu_opts;
struct lt_engine *lt_engine_qemu_new(const struct lt_qemu_opts *o);

/* ==== lttle engine (src/proxy/engine_lttle.c; types in proxy/engine_lttle.h) == */
struct lt_lttle_engine_opts;
struct lt_engine *lt_engine_lttle_new(const struct lt_lttle_engine_opts *o);

#endif
