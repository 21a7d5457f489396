/* lt-proxy-testd: the proxy (listeners, pool, forwarder) with the process
 * engine, for integration tests and the proxy benchmark. Not installed.
 *
 *   lt-proxy-testd --backend PATH --app NAME[,k=v...] [--tcp NAME=[ADDR:]PORT:GPORT]
 *                  [--http [ADDR:]PORT] [--host HOST=NAME[:GPORT]]
 *                  [--ready-file F] [--state-file F]
 *
 * App keys: snapshot=PATH mode=http|echo min= max= conc= qmax= shells=
 *           idle=MS scaledown=MS queue=MS drain=MS connect=MS boot=MS
 *           restore=MS static=ADDR:PORT|unix:PATH
 * SIGTERM/SIGINT drain and exit 0; SIGUSR1 rewrites the state file (it is
 * also rewritten every 100 ms): Prometheus metrics, then one
 * "# instance ..." and "# app ..." line each.
 */
#include "proc_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_APPS 16

struct app_def {
	char name[64];
	char snapshot[512];
	struct lt_policy pol;
	struct proc_app_cfg cfg;
	struct lt_app *app;
};

static struct app_def apps[MAX_APPS];
static int napps;
static struct lt_loop *loop;
static struct lt_pool *pool;
static struct lt_proxy *px;
static struct lt_engine *engine;
static const char *state_file;
static struct lt_timer state_timer;
static bool draining;

static void die(const char *msg)
{
	fprintf(stderr, "lt-proxy-testd: %s\n", msg);
	exit(1);
}

static struct app_def *find_def(const char *name)
{
	for (int k = 0; k < napps; k++)
		if (!strcmp(apps[k].name, name))
			return &apps[k];
	return NULL;
}

static uint64_t ms_val(const char *k, const char *v)
{
	uint64_t x;
	if (lt_parse_u64(v, &x) < 0) {
		fprintf(stderr, "lt-proxy-testd: bad value for %s: %s\n", k, v);
		exit(2);
	}
	return x;
}

static void parse_app(char *spec, const char *backend)
{
	if (napps == MAX_APPS)
		die("too many apps");
	struct app_def *d = &apps[napps++];
	char *save = NULL;
	char *name = strtok_r(spec, ",", &save);
	if (!name)
		die("--app needs a name");
	snprintf(d->name, sizeof(d->name), "%s", name);
	lt_policy_defaults(&d->pol);
	d->pol.shells = 0;
	snprintf(d->cfg.backend, sizeof(d->cfg.backend), "%s", backend);
	snprintf(d->cfg.mode, sizeof(d->cfg.mode), "http");
	for (char *kv; (kv = strtok_r(NULL, ",", &save));) {
		char *eq = strchr(kv, '=');
		if (!eq)
			die("app option without '='");
		*eq = '\0';
		const char *k = kv, *v = eq + 1;
		if (!strcmp(k, "snapshot"))
			snprintf(d->snapshot, sizeof(d->snapshot), "%s", v);
		else if (!strcmp(k, "mode"))
			snprintf(d->cfg.mode, sizeof(d->cfg.mode), "%s", v);
		else if (!strcmp(k, "static"))
			snprintf(d->cfg.static_addr, sizeof(d->cfg.static_addr), "%s", v);
		else if (!strcmp(k, "min"))
			d->pol.min = (uint32_t)ms_val(k, v);
		else if (!strcmp(k, "max"))
			d->pol.max = (uint32_t)ms_val(k, v);
		else if (!strcmp(k, "conc"))
			d->pol.concurrency = (uint32_t)ms_val(k, v);
		else if (!strcmp(k, "qmax"))
			d->pol.queue_max = (uint32_t)ms_val(k, v);
		else if (!strcmp(k, "shells"))
			d->pol.shells = (uint32_t)ms_val(k, v);
		else if (!strcmp(k, "idle"))
			d->pol.idle_timeout = LT_MS(ms_val(k, v));
		else if (!strcmp(k, "scaledown"))
			d->pol.scale_down = LT_MS(ms_val(k, v));
		else if (!strcmp(k, "queue"))
			d->pol.queue_timeout = LT_MS(ms_val(k, v));
		else if (!strcmp(k, "drain"))
			d->pol.drain_timeout = LT_MS(ms_val(k, v));
		else if (!strcmp(k, "connect"))
			d->pol.connect_timeout = LT_MS(ms_val(k, v));
		else if (!strcmp(k, "boot"))
			d->cfg.boot_ms = (unsigned)ms_val(k, v);
		else if (!strcmp(k, "restore"))
			d->cfg.restore_ms = (unsigned)ms_val(k, v);
		else {
			fprintf(stderr, "lt-proxy-testd: unknown app option %s\n", k);
			exit(2);
		}
	}
}

/* ---- state dump ------------------------------------------------------------ */

static void write_state(void)
{
	if (!state_file)
		return;
	struct lt_buf b = {0};
	lt_pool_metrics(pool, &b);
	lt_proxy_metrics(px, &b);
	for (struct lt_app *a = lt_pool_first_app(pool); a; a = lt_app_next(a)) {
		const char *deg = lt_app_degraded(a);
		lt_buf_printf(&b, "# app %s degraded=%d reason=%s\n", lt_app_name(a), deg != NULL,
			      deg ? deg : "-");
		for (struct lt_instance *i = lt_app_first_instance(a); i; i = lt_instance_next(i)) {
			struct lt_instance_info info;
			lt_instance_get_info(i, &info);
			lt_buf_printf(&b,
				      "# instance %s app=%s state=%s started_by=%s gen=%u conns=%u "
				      "pid=%d\n",
				      info.id, info.app, lt_inst_state_name(info.state),
				      lt_started_by_name(info.started_by), info.generation,
				      info.conns, proc_instance_pid(i));
		}
	}
	lt_buf_printf(&b, "# proxy active=%u\n", lt_proxy_active(px));
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", state_file);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (lt_write_all(fd, b.data, b.len) == 0 && close(fd) == 0)
			rename(tmp, state_file);
		else
			close(fd);
	}
	lt_buf_free(&b);
}

static void state_fired(struct lt_timer *t)
{
	write_state();
	lt_timer_arm_in(lt_loop_clock(loop), t, LT_MS(100));
}

/* ---- signals ------------------------------------------------------------------ */

static struct lt_watch sigw;

static void shutdown_done(void *arg)
{
	(void)arg;
	lt_loop_stop(loop);
}

static void on_signal(struct lt_watch *w, uint32_t events)
{
	(void)events;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGUSR1) {
			write_state();
		} else if (!draining) {
			draining = true;
			write_state();
			lt_timer_cancel(lt_loop_clock(loop), &state_timer);
			lt_info("lt-proxy-testd: draining");
			lt_proxy_stop_accepting(px);
			lt_pool_shutdown(pool, shutdown_done, NULL);
		}
	}
}

static void write_ready(const char *path, struct lt_buf *b)
{
	if (lt_write_file_atomic(path, b->data, b->len, 0644) < 0)
		die(lt_errmsg());
}

int main(int argc, char **argv)
{
	char backend[512];
	char self[512];
	snprintf(self, sizeof(self), "%s", argv[0]);
	snprintf(backend, sizeof(backend), "%s/proxy_backend", dirname(self));
	const char *ready_file = NULL;
	/* two passes: apps first, so listeners can name them in any order */
	for (int k = 1; k + 1 < argc; k++)
		if (!strcmp(argv[k], "--backend"))
			snprintf(backend, sizeof(backend), "%s", argv[k + 1]);
	for (int k = 1; k < argc; k++) {
		if (!strcmp(argv[k], "--help")) {
			printf("usage: lt-proxy-testd --app NAME[,k=v...] [--tcp NAME=[ADDR:]PORT:GPORT] "
			       "[--http [ADDR:]PORT] [--host HOST=NAME[:GPORT]] [--backend PATH] "
			       "[--ready-file F] [--state-file F]\n");
			return 0;
		}
		if (!strcmp(argv[k], "--app") && k + 1 < argc)
			parse_app(argv[++k], backend);
	}
	signal(SIGPIPE, SIG_IGN);
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGUSR1);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);

	loop = lt_loop_new();
	pool = loop ? lt_pool_new(lt_loop_clock(loop)) : NULL;
	engine = loop ? proc_engine_new(loop) : NULL;
	struct lt_proxy_config pcfg;
	lt_proxy_config_defaults(&pcfg);
	px = pool ? lt_proxy_new(loop, pool, &pcfg) : NULL;
	if (!px || !engine || sfd < 0)
		die(lt_errmsg());
	if (lt_watch_add(loop, &sigw, sfd, EPOLLIN, on_signal) < 0)
		die(lt_errmsg());
	for (int k = 0; k < napps; k++) {
		struct app_def *d = &apps[k];
		struct lt_app_spec spec = {.name = d->name,
					   .snapshot = d->snapshot[0] ? d->snapshot : NULL,
					   .engine_cfg = &d->cfg};
		d->app = lt_pool_add_app(pool, engine, &spec, &d->pol);
		if (!d->app)
			die(lt_errmsg());
	}
	struct lt_buf ready = {0};
	struct lt_listener *http = NULL;
	for (int k = 1; k < argc; k++) {
		const char *a = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
		if (!strcmp(a, "--app") || !strcmp(a, "--backend")) {
			k++;
		} else if (!strcmp(a, "--tcp") && v) {
			k++;
			char buf[256];
			snprintf(buf, sizeof(buf), "%s", v);
			char *eq = strchr(buf, '=');
			if (!eq)
				die("--tcp wants NAME=[ADDR:]PORT:GUESTPORT");
			*eq = '\0';
			struct app_def *d = find_def(buf);
			char *listen = NULL;
			uint16_t gport;
			if (!d)
				die("--tcp names an unknown app");
			if (lt_parse_port_spec(eq + 1, &listen, &gport) < 0)
				die(lt_errmsg());
			struct lt_listener *l = lt_proxy_listen_tcp(px, listen, d->app, gport);
			free(listen);
			if (!l)
				die(lt_errmsg());
			lt_buf_printf(&ready, "tcp %s %u\n", d->name, lt_listener_port(l));
		} else if (!strcmp(a, "--http") && v) {
			k++;
			http = lt_proxy_listen_http(px, v);
			if (!http)
				die(lt_errmsg());
			lt_buf_printf(&ready, "http %u\n", lt_listener_port(http));
		} else if (!strcmp(a, "--host") && v) {
			k++;
			char buf[300];
			snprintf(buf, sizeof(buf), "%s", v);
			char *eq = strchr(buf, '=');
			if (!eq || !http)
				die("--host HOST=NAME[:GPORT] after --http");
			*eq = '\0';
			char *colon = strchr(eq + 1, ':');
			uint16_t gport = 80;
			if (colon) {
				*colon = '\0';
				gport = (uint16_t)atoi(colon + 1);
			}
			struct app_def *d = find_def(eq + 1);
			if (!d)
				die("--host names an unknown app");
			if (lt_listener_route(http, buf, d->app, gport) < 0)
				die(lt_errmsg());
		} else if (!strcmp(a, "--ready-file") && v) {
			ready_file = argv[++k];
		} else if (!strcmp(a, "--state-file") && v) {
			state_file = argv[++k];
		} else {
			fprintf(stderr, "lt-proxy-testd: unknown argument %s\n", a);
			return 2;
		}
	}
	if (state_file) {
		lt_timer_init(&state_timer, state_fired);
		state_fired(&state_timer);
	}
	if (ready_file)
		write_ready(ready_file, &ready);
	lt_buf_free(&ready);
	fprintf(stderr, "lt-proxy-testd: serving %d apps\n", napps);
	if (lt_loop_run(loop) < 0)
		die(lt_errmsg());
	/* the last state written (before the drain) stays for post-mortems */
	lt_timer_cancel(lt_loop_clock(loop), &state_timer);
	lt_proxy_free(px);
	lt_pool_free(pool);
	proc_engine_free(engine);
	lt_watch_del(&sigw);
	close(sfd);
	lt_loop_free(loop);
	fprintf(stderr, "lt-proxy-testd: drained, bye\n");
	return 0;
}
