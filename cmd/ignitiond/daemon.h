/* ignitiond internals: the daemon's state, its threads and its parts.
 *
 * Threads:
 *   - the loop thread (main) owns everything of the proxy: the pool, the
 *     listeners, the engines, and the app table below. Nothing else
 *     touches them.
 *   - libmicrohttpd runs the API with a thread per connection. A handler
 *     that needs daemon state runs a function on the loop with dmn_call()
 *     and waits for it; streamed replies (deploy progress, logs -f,
 *     events) read from a dmn_stream the loop or a worker writes into.
 *   - one worker thread per deploy does the slow, blocking steps (pull,
 *     rootfs build) and drives the rest through dmn_call().
 */
#ifndef IGNITIOND_DAEMON_H
#define IGNITIOND_DAEMON_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/proxy.h"
#include "spec.h"
#include "util/util.h"

struct dmn;
struct dmn_engine;

/* ---- streams: bytes from one thread to an HTTP response --------------- */

struct dmn_stream;
/* limit: bytes buffered before a writer's data is refused (the reader is
 * too slow: the stream is then closed with an overflow). */
struct dmn_stream *dmn_stream_new(size_t limit);
void dmn_stream_ref(struct dmn_stream *s);
void dmn_stream_unref(struct dmn_stream *s);
/* -1 once the reader went away or the stream overflowed. */
int dmn_stream_write(struct dmn_stream *s, const void *data, size_t n);
int dmn_stream_printf(struct dmn_stream *s, const char *fmt, ...) LT_PRINTF(2, 3);
/* One JSON value as a line (NDJSON); steals j. */
int dmn_stream_json(struct dmn_stream *s, json_t *j);
/* Writer: no more data. */
void dmn_stream_close(struct dmn_stream *s);
/* Reader: >0 bytes, 0 on timeout, -1 at the end (closed and drained). */
ssize_t dmn_stream_read(struct dmn_stream *s, char *buf, size_t max, int timeout_ms);
/* Reader gone: later writes fail. */
void dmn_stream_detach(struct dmn_stream *s);
bool dmn_stream_detached(struct dmn_stream *s);

/* ---- events (SSE hub, thread-safe) ------------------------------------- */

void dmn_events_init(struct dmn *d);
void dmn_events_fini(struct dmn *d);
/* Adds a subscriber; it receives "event: K\ndata: JSON\n\n" blocks. */
int dmn_events_subscribe(struct dmn *d, struct dmn_stream *s);
/* Publishes an event (steals data) to every subscriber. */
void dmn_events_publish(struct dmn *d, const char *kind, json_t *data);

/* ---- engines ----------------------------------------------------------- */

/* Why auto picked what it picked, and whether an engine is available. */
int dmn_engine_choose(struct dmn *d, const char *wanted, char *name, size_t name_len, char *why,
		      size_t why_len);
/* The engine (created on first use) for the main pool or for deploy boots. */
struct dmn_engine *dmn_engine_get(struct dmn *d, const char *name, bool deploy);
struct lt_engine *dmn_engine_lt(struct dmn_engine *e);
const char *dmn_engine_name(const struct dmn_engine *e);

/* What an engine needs to run one app generation. */
struct dmn_run_cfg {
	const struct dmn_spec *spec;
	const char *kernel;
	const char *rootfs;
	const char *rootfs_type;
	const uint16_t *guest_ports;
	size_t nports;
};
/* engine_cfg for lt_app_spec (+ its free function). NULL with a message. */
void *dmn_engine_app_cfg(struct dmn_engine *e, const struct dmn_run_cfg *c,
			 void (**free_fn)(void *));
/* The instance's VM process (0: none/unknown) and console log ("" : none). */
int dmn_engine_inst_pid(struct dmn_engine *e, const struct lt_instance *inst);
int dmn_engine_inst_log(struct dmn_engine *e, const struct lt_instance *inst, char *path,
			size_t len);
/* Kills and reaps every VM (shutdown). */
void dmn_engines_free(struct dmn *d);

/* ---- persistence (store.c) --------------------------------------------- */

/* What survives a restart of the daemon, one file per app. */
struct dmn_app_rec {
	struct dmn_spec spec;
	char engine[16];
	char kernel[DMN_PATH_MAX + 1];
	char rootfs[DMN_PATH_MAX + 1];
	char snapshot[DMN_PATH_MAX + 1]; /* "" : none */
	char digest[80];
	uint32_t generation;
	uint16_t guest_ports[DMN_MAX_PORTS];
	uint16_t bound[DMN_MAX_PORTS]; /* host ports the listeners got */
	size_t nports;
	int64_t deployed; /* unix seconds */
};
char *dmn_app_dir(const char *state, const char *name);
int dmn_app_save(const char *state, const struct dmn_app_rec *r);
int dmn_app_load(const char *state, const char *name, struct dmn_app_rec *r);
int dmn_app_delete(const char *state, const char *name);
/* Names of the stored apps (sorted); caller frees each and the array. */
int dmn_app_list(const char *state, char ***names, size_t *n);
void dmn_app_rec_free(struct dmn_app_rec *r);

/* Instance records: instances/<key>/record.json {pid, start, engine, app}. */
int dmn_inst_record(const char *state, const char *key, int pid, const char *engine,
		    const char *app);
void dmn_inst_forget(const char *state, const char *key);
/* A process's start time (clock ticks since boot, /proc/PID/stat field
 * 22); 0 when it does not exist. */
uint64_t dmn_proc_start_time(int pid);
/* Kills every recorded VM process still alive with the recorded start
 * time, removes every record and the engines' run directory. Returns the
 * number of processes killed. */
int dmn_recover_orphans(const char *state, const char *run_dir);

/* ---- the daemon -------------------------------------------------------- */

struct dapp; /* one deployed app (apps.c) */
struct deploy_job;

struct dmn {
	char *state;
	char *run_dir; /* <state>/run: engines' per-VM files */
	char *store_root;
	char *libexec; /* where lttle-init / vmlinux may live (beside us) */
	struct lt_loop *loop;
	struct lt_pool *pool;
	struct lt_proxy *proxy;
	struct lt_listener *http; /* shared Host-routing listener, optional */
	char http_addr[80];
	struct dapp *apps;
	struct deploy_job *jobs; /* in flight (loop thread) */
	struct dmn_engine *engines; /* created on demand (loop thread) */
	atomic_bool loop_dead;   /* dmn_call refuses once set */
	atomic_bool stopping;    /* SIGTERM: streams end, deploys abort */
	uint64_t deploy_timeout_ns;
	uint64_t drain_timeout_ns;
	uint64_t started_wall;
	/* events hub */
	pthread_mutex_t ev_lock;
	struct dmn_sub *subs;
	uint64_t ev_seq;
	/* --engine proc (test builds only) */
	bool allow_proc_engine;
	char proc_backend[512];
	/* shutdown */
	bool pool_down;
};

/* Runs fn(arg) on the loop thread and waits for it. -1 (with a message)
 * when the daemon is shutting down and fn did not run. */
int dmn_call(struct dmn *d, void (*fn)(void *arg), void *arg);

/* ---- apps (loop thread) ------------------------------------------------ */

void dmn_pool_observer(void *ctx, const struct lt_pool_event *ev);
/* Loads the stored apps into the pool and opens their listeners. */
int dmn_apps_restore(struct dmn *d);
struct dapp *dmn_app_find(struct dmn *d, const char *name);
/* Installs (or replaces, without dropping traffic) an app from a record
 * whose snapshot exists; fills r->bound and saves the record. */
int dmn_app_install(struct dmn *d, struct dmn_app_rec *r);
/* JSON views. */
json_t *dmn_app_json(struct dmn *d, struct dapp *a, bool detail);
json_t *dmn_apps_json(struct dmn *d);
json_t *dmn_instances_json(struct dmn *d, const char *app);
json_t *dmn_instance_json(struct lt_instance *i);
/* Admin actions: 0, or -1 with a message and *status set (404/409). */
int dmn_app_action(struct dmn *d, const char *name, const char *action, int *status);
int dmn_instance_action(struct dmn *d, const char *id, const char *action, int *status);
int dmn_app_scale(struct dmn *d, const char *name, json_t *body, int *status);
int dmn_app_remove(struct dmn *d, const char *name, int *status, void (*done)(void *), void *arg);
/* Log files of an app (its deploy boot's console, then live instances')
 * or of one instance: [{"id":..,"path":..,"live":bool}]. */
json_t *dmn_log_sources(struct dmn *d, const char *what, int *status);
/* Writes each app's counters (apps/<name>/counters.json) when they
 * changed; a restarted daemon counts on from them. */
void dmn_apps_save_counters(struct dmn *d);
void dmn_apps_free(struct dmn *d);

/* ---- deploy ------------------------------------------------------------ */

/* Validated spec in, streamed NDJSON progress out ({"event":"progress",..},
 * then {"event":"done","app":{..}} or {"event":"error","message":..}).
 * Returns 0 when the deploy started (its thread owns spec), -1 with
 * *status (409: the app is being deployed already; 503: shutting down). */
int dmn_deploy_start(struct dmn *d, struct dmn_spec *spec, struct dmn_stream *out,
		     int *status);
/* SIGTERM: stop every deploy boot (loop thread). */
void dmn_deploys_abort(struct dmn *d);
bool dmn_deploy_running(struct dmn *d, const char *name);
/* Joins finished deploy threads (any thread but the loop's). */
void dmn_deploys_join(struct dmn *d);
/* Some deploy still has its boot pool (loop thread). */
bool dmn_deploys_booting(struct dmn *d);
/* The engine's reason a deploy boot failed (loop thread). */
void dmn_deploy_note_failure(struct dmn *d, const char *app, const char *msg);

/* ---- API (api.c) -------------------------------------------------------- */

/* One API reply: a JSON body (or text) with a status, or a stream. */
struct dmn_reply {
	int status;
	json_t *json;          /* owned */
	char *text;            /* owned, e.g. /metrics */
	const char *content_type;
	struct dmn_stream *stream; /* owned ref; streamed reply */
	/* for streams that follow log files */
	json_t *follow;        /* log sources to tail (owned) */
	char follow_what[128];
	bool follow_on;
};
void dmn_reply_free(struct dmn_reply *r);
/* The transport-independent handler: method, path (no query), query
 * parameters as "k=v&..." (may be NULL), body. */
void dmn_api_handle(struct dmn *d, const char *method, const char *path, const char *query,
		    const char *body, size_t body_len, struct dmn_reply *r);
/* MHD glue. tcp_token: NULL for the unix socket. */
struct MHD_Daemon *dmn_http_start_unix(struct dmn *d, int listen_fd);
struct MHD_Daemon *dmn_http_start_tcp(struct dmn *d, int listen_fd, const char *token);
void dmn_http_stop(struct MHD_Daemon *m);
void dmn_http_quiesce(struct MHD_Daemon *m);

#endif
