/* lttle-engine-drv: the pool, proxy and forwarder driving the lttle engine
 * (real VMs), for the engine integration test and the wake benchmark. A
 * deploy-like start, then serving:
 *
 *   lttle-engine-drv --vmhost BIN --run-dir DIR --kernel K --snapshot PATH
 *       [--mem MIB] [--cmdline S] [--trigger T] [--memory cached|eager|lazy]
 *       [--cache-dir DIR] [--listen [ADDR:]PORT] [--gport P] [--no-snapshot]
 *       [--policy k=v,...] --ready-file F [--state-file F]
 *
 * Without PATH on disk it first boots the app once in a private pool
 * (min 1, max 1) until the guest's trigger, has the engine snapshot it to
 * PATH, and removes that pool (its VM stops). --no-snapshot serves by cold
 * boots only. Policy keys: min max conc qmax shells idle scaledown queue
 * connect (times in ms). The ready file gets "port N\ndeploy_ms N\n"; the
 * state file (every 20 ms) one JSON object of the app's counters and
 * instance states. SIGTERM/SIGINT: drain and exit 0. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/engine_lttle.h"
#include "proxy/proxy.h"

static struct lt_loop *loop;
static struct lt_pool *pool, *bpool;
static struct lt_proxy *px;
static struct lt_engine *engine;
static struct lt_app *app, *bapp;
static struct lt_policy pol;
static struct lt_app_spec spec;
static void *cfg;
static const char *snap_path, *listen_addr = "127.0.0.1:0", *ready_file, *state_file;
static uint16_t gport = 8080;
static bool no_snapshot, snapshotting, snapshotted;
static uint64_t t_deploy0;
static struct lt_timer state_timer;
static struct lt_watch sigw;

static void die(const char *msg)
{
	fprintf(stderr, "lttle-engine-drv: %s\n", msg);
	exit(1);
}

static void parse_policy(const char *s)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", s);
	char *save = NULL;
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq)
			die("--policy wants k=v,...");
		*eq = '\0';
		unsigned long long v = strtoull(eq + 1, NULL, 10);
		if (!strcmp(kv, "min")) pol.min = (uint32_t)v;
		else if (!strcmp(kv, "max")) pol.max = (uint32_t)v;
		else if (!strcmp(kv, "conc")) pol.concurrency = (uint32_t)v;
		else if (!strcmp(kv, "qmax")) pol.queue_max = (uint32_t)v;
		else if (!strcmp(kv, "shells")) pol.shells = (uint32_t)v;
		else if (!strcmp(kv, "idle")) pol.idle_timeout = LT_MS(v);
		else if (!strcmp(kv, "scaledown")) pol.scale_down = LT_MS(v);
		else if (!strcmp(kv, "queue")) pol.queue_timeout = LT_MS(v);
		else if (!strcmp(kv, "connect")) pol.connect_timeout = LT_MS(v);
		else die("unknown policy key");
	}
}

static void write_state(void)
{
	if (!state_file)
		return;
	struct lt_buf b = {0};
	if (app) {
		struct lt_app_stats st;
		lt_app_get_stats(app, &st);
		lt_buf_printf(&b,
			      "{\"instances\":%u,\"running\":%u,\"paused\":%u,\"starting\":%u,"
			      "\"restores\":%llu,\"shell_restores\":%llu,\"resumes\":%llu,"
			      "\"cold_boots\":%llu,\"pauses\":%llu,\"drops\":%llu,\"served\":%llu,"
			      "\"refused\":%llu,\"shells_ready\":%u,\"deaths\":%llu,"
			      "\"start_failures\":%llu,\"degraded\":%s}\n",
			      st.instances, st.by_state[LT_INST_RUNNING], st.by_state[LT_INST_PAUSED],
			      st.by_state[LT_INST_STARTING], (unsigned long long)st.restores,
			      (unsigned long long)st.shell_restores, (unsigned long long)st.resumes,
			      (unsigned long long)st.cold_boots, (unsigned long long)st.pauses,
			      (unsigned long long)st.drops, (unsigned long long)st.served,
			      (unsigned long long)st.refused, st.shells_ready,
			      (unsigned long long)st.deaths, (unsigned long long)st.start_failures,
			      lt_app_degraded(app) ? "true" : "false");
	} else {
		lt_buf_printf(&b, "{\"deploying\":true}\n");
	}
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", state_file);
	FILE *f = fopen(tmp, "w");
	if (f) {
		fwrite(b.data, 1, b.len, f);
		fclose(f);
		rename(tmp, state_file);
	}
	lt_buf_free(&b);
}

static void on_state_timer(struct lt_timer *t)
{
	write_state();
	lt_timer_arm_in(lt_loop_clock(loop), t, LT_MS(20));
}

static void serve(void)
{
	spec.snapshot = no_snapshot ? NULL : snap_path;
	app = lt_pool_add_app(pool, engine, &spec, &pol);
	if (!app)
		die(lt_errmsg());
	struct lt_listener *l = lt_proxy_listen_tcp(px, listen_addr, app, gport);
	if (!l)
		die(lt_errmsg());
	FILE *f = fopen(ready_file, "w");
	if (!f)
		die("cannot write the ready file");
	fprintf(f, "port %u\ndeploy_ms %llu\n", lt_listener_port(l),
		(unsigned long long)((lt_now_ns() - t_deploy0) / 1000000));
	fclose(f);
}

static void bpool_removed(void *arg)
{
	(void)arg;
	bapp = NULL;
	serve();
}

static void snap_done(void *arg, const struct lt_engine_result *r)
{
	(void)arg;
	snapshotting = false;
	snapshotted = true;
	if (r->err)
		die(r->msg ? r->msg : "snapshot failed");
	fprintf(stderr, "lttle-engine-drv: snapshot %s after %.1f ms\n", snap_path,
		(double)(lt_now_ns() - t_deploy0) / 1e6);
	lt_app_remove(bapp, bpool_removed, NULL);
}

static void boot_up(void *arg)
{
	(void)arg;
	if (!bapp || snapshotting)
		return;
	struct lt_instance *i = lt_app_first_instance(bapp);
	if (!i)
		die("the deploy boot vanished");
	snapshotting = true;
	if (engine->ops->snapshot(engine, i, snap_path, snap_done, NULL) < 0)
		die(lt_errmsg());
}

static void boot_observer(void *ctx, const struct lt_pool_event *ev)
{
	(void)ctx;
	if (ev->kind != LT_EV_INSTANCE || !bapp)
		return;
	if (ev->state == LT_INST_RUNNING && ev->old_state == LT_INST_STARTING)
		lt_loop_post(loop, boot_up, NULL);
	else if (ev->state == LT_INST_DEAD && !snapshotting && !snapshotted)
		die("the deploy boot failed before its trigger");
}

static void deploy(void)
{
	struct lt_policy bp;
	lt_policy_defaults(&bp);
	bp.min = 1;
	bp.max = 1;
	bp.shells = 0;
	bp.idle_timeout = 0;
	bp.scale_down = 0;
	bp.start_timeout = LT_SEC(120);
	struct lt_app_spec bs = spec;
	bs.snapshot = NULL;
	bpool = lt_pool_new(lt_loop_clock(loop));
	if (!bpool)
		die(lt_errmsg());
	lt_pool_set_observer(bpool, boot_observer, NULL);
	bapp = lt_pool_add_app(bpool, engine, &bs, &bp);
	if (!bapp)
		die(lt_errmsg());
}

static void shut_done(void *arg)
{
	(void)arg;
	lt_loop_stop(loop);
}

static void on_signal(struct lt_watch *w, uint32_t events)
{
	(void)events;
	struct signalfd_siginfo si;
	if (read(w->fd, &si, sizeof(si)) != sizeof(si))
		return;
	lt_proxy_stop_accepting(px);
	lt_pool_shutdown(pool, shut_done, NULL);
}

int main(int argc, char **argv)
{
	struct lt_lttle_engine_opts eo = {0};
	struct lt_lttle_app la = {0};
	lt_policy_defaults(&pol);
	for (int k = 1; k < argc; k++) {
		const char *a = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
#define VAL() (v ? (k++, v) : (die("missing value"), ""))
		if (!strcmp(a, "--vmhost")) eo.vmhost = VAL();
		else if (!strcmp(a, "--run-dir")) eo.run_dir = VAL();
		else if (!strcmp(a, "--memory")) eo.memory = VAL();
		else if (!strcmp(a, "--cache-dir")) eo.cache_dir = VAL();
		else if (!strcmp(a, "--kernel")) la.kernel = VAL();
		else if (!strcmp(a, "--cmdline")) la.cmdline = VAL();
		else if (!strcmp(a, "--trigger")) la.trigger = VAL();
		else if (!strcmp(a, "--mem")) la.mem = strtoull(VAL(), NULL, 10) << 20;
		else if (!strcmp(a, "--snapshot")) snap_path = VAL();
		else if (!strcmp(a, "--no-snapshot")) no_snapshot = true;
		else if (!strcmp(a, "--listen")) listen_addr = VAL();
		else if (!strcmp(a, "--gport")) gport = (uint16_t)atoi(VAL());
		else if (!strcmp(a, "--policy")) parse_policy(VAL());
		else if (!strcmp(a, "--ready-file")) ready_file = VAL();
		else if (!strcmp(a, "--state-file")) state_file = VAL();
		else die("unknown option");
#undef VAL
	}
	if (!ready_file || (!snap_path && !no_snapshot))
		die("--ready-file and --snapshot (or --no-snapshot) are required");
	signal(SIGPIPE, SIG_IGN);
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	loop = lt_loop_new();
	if (!loop || sfd < 0)
		die("loop");
	eo.loop = loop;
	engine = lt_engine_lttle_new(&eo);
	cfg = lt_lttle_app_new(&la);
	pool = lt_pool_new(lt_loop_clock(loop));
	struct lt_proxy_config pcfg;
	lt_proxy_config_defaults(&pcfg);
	px = pool ? lt_proxy_new(loop, pool, &pcfg) : NULL;
	if (!engine || !cfg || !px)
		die(lt_errmsg());
	if (lt_watch_add(loop, &sigw, sfd, EPOLLIN, on_signal) < 0)
		die(lt_errmsg());
	spec.name = "app";
	spec.engine_cfg = cfg;
	lt_timer_init(&state_timer, on_state_timer);
	lt_timer_arm_in(lt_loop_clock(loop), &state_timer, 0);
	t_deploy0 = lt_now_ns();
	struct stat st;
	if (no_snapshot || (snap_path && stat(snap_path, &st) == 0))
		serve();
	else
		deploy();
	lt_loop_run(loop);
	write_state();
	lt_proxy_free(px);
	lt_pool_free(pool);
	if (bpool)
		lt_pool_free(bpool);
	lt_engine_lttle_free(engine);
	lt_lttle_app_free(cfg);
	lt_loop_free(loop);
	return 0;
}
