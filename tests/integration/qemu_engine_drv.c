/* Drives the QEMU engine through the real pool on a real loop, with a real
 * guest (tests/integration/75-qemu-engine.sh supplies kernel and rootfs):
 *
 *   deploy   boot (min=1) -> trigger -> snapshot -> stop
 *   cold     acquire on an app without a snapshot: boot -> HTTP
 *   restore  acquire -> restore in a fresh QEMU -> HTTP   (N rounds)
 *   pause    pause; a direct connection waits; acquire resumes; both answered
 *   shell    acquire -> restore into a pre-made shell -> HTTP (N rounds)
 *   death    kill -9 of an instance's QEMU: reported, replaced, served again
 *   corrupt  damaged snapshot data: degraded, cold boot serves
 *   mismatch snapshot for another machine shape: degraded at once
 *   cleanup  every QEMU reaped, every run directory removed
 *
 * Prints "ok: ..." per step and a RESULT line with the timings; exits 1
 * with "FAIL: ..." on the first failed check.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/engine_qemu.h"

static struct lt_loop *loop;
static struct lt_pool *pool;
static struct lt_engine *eng;
static const char *expect = "hello";
static const char *http_path = "/";
static uint16_t gport = 8080;

#define FAIL(...)                                                                                \
	do {                                                                                     \
		fprintf(stderr, "FAIL: " __VA_ARGS__);                                           \
		fputc('\n', stderr);                                                             \
		exit(1);                                                                         \
	} while (0)

static double ms_since(uint64_t t0)
{
	return (double)(lt_now_ns() - t0) / 1e6;
}

/* Runs the loop until *flag or timeout. */
static bool run_until(volatile bool *flag, int timeout_ms)
{
	uint64_t end = lt_now_ns() + LT_MS(timeout_ms);
	while (!*flag && lt_now_ns() < end)
		lt_loop_run_once(loop, 10);
	return *flag;
}

static bool run_until_fn(bool (*pred)(void *), void *arg, int timeout_ms)
{
	uint64_t end = lt_now_ns() + LT_MS(timeout_ms);
	while (!pred(arg) && lt_now_ns() < end)
		lt_loop_run_once(loop, 10);
	return pred(arg);
}

static void spin_ms(int ms)
{
	uint64_t end = lt_now_ns() + LT_MS(ms);
	while (lt_now_ns() < end)
		lt_loop_run_once(loop, 5);
}

/* ---- observer ---------------------------------------------------------------- */

static char last_running[96];
static volatile bool saw_running;

static void observe(void *ctx, const struct lt_pool_event *ev)
{
	(void)ctx;
	if (ev->kind == LT_EV_INSTANCE) {
		if (getenv("DRV_VERBOSE"))
			fprintf(stderr, "  [%s %s: %s -> %s]\n", ev->app, ev->instance,
				lt_inst_state_name(ev->old_state), lt_inst_state_name(ev->state));
		if (ev->state == LT_INST_RUNNING) {
			snprintf(last_running, sizeof(last_running), "%s", ev->instance);
			saw_running = true;
		}
	} else if (ev->kind == LT_EV_DEGRADED || ev->kind == LT_EV_REFUSED) {
		fprintf(stderr, "  [%s: %s: %s]\n", ev->app,
			ev->kind == LT_EV_DEGRADED ? "degraded" : "refused",
			ev->detail ? ev->detail : "");
	}
}

/* ---- acquire + HTTP -------------------------------------------------------------- */

struct acq {
	volatile bool done;
	struct lt_pool_conn *pc;
	int fd;
	char why[256];
};

static void acq_ready(void *ctx, struct lt_pool_conn *pc, int fd)
{
	struct acq *a = ctx;
	a->pc = pc;
	a->fd = fd;
	a->done = true;
}

static void acq_refused(void *ctx, const char *reason)
{
	struct acq *a = ctx;
	snprintf(a->why, sizeof(a->why), "refused: %s", reason);
	a->done = true;
}

static void acq_lost(void *ctx, const char *reason)
{
	struct acq *a = ctx;
	snprintf(a->why, sizeof(a->why), "lost: %s", reason);
	a->pc = NULL;
}

static const struct lt_acquire_ops acq_ops = {acq_ready, acq_refused, acq_lost};

static char last_resp[65536]; /* the raw answer of the last http_get */

/* Sends a GET on fd and reads the whole answer (the loop keeps running).
 * Returns the body; *first_ns gets the time of the first response byte. */
static char *http_get(int fd, int timeout_ms, uint64_t *first_ns)
{
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: test\r\n\r\n", http_path);
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		return NULL;
	char *buf = last_resp;
	size_t len = 0;
	uint64_t end = lt_now_ns() + LT_MS(timeout_ms);
	if (first_ns)
		*first_ns = 0;
	while (lt_now_ns() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2) > 0) {
			ssize_t r = read(fd, buf + len, sizeof(last_resp) - 1 - len);
			if (r > 0) {
				if (first_ns && !*first_ns)
					*first_ns = lt_now_ns();
				len += (size_t)r;
				if (len == sizeof(last_resp) - 1)
					break;
				continue;
			}
			if (r == 0 || (errno != EAGAIN && errno != EINTR))
				break;
		}
		lt_loop_run_once(loop, 0);
	}
	buf[len] = 0;
	if (!len)
		return NULL;
	char *body = strstr(buf, "\r\n\r\n");
	if (!body || strncmp(buf, "HTTP/1.", 7) || !strstr(buf, " 200 "))
		return NULL;
	return body + 4;
}

/* One request through the pool: acquire -> connect -> GET. Returns the
 * ms from acquire to the first response byte; checks the body and tier. */
static double serve_one(struct lt_app *app, int want, const char *what)
{
	struct acq a = {.fd = -1};
	uint64_t t0 = lt_now_ns();
	struct lt_pool_conn *pc = lt_app_acquire(app, gport, &acq_ops, &a);
	if (!pc)
		FAIL("%s: acquire refused at once: %s", what, lt_errmsg());
	if (!run_until(&a.done, 120000))
		FAIL("%s: no instance within 120 s", what);
	if (!a.pc)
		FAIL("%s: %s", what, a.why);
	enum lt_tier tier = lt_pool_conn_tier(a.pc);
	if (want >= 0 && (int)tier != want)
		FAIL("%s: served by tier %s, expected %s", what, lt_tier_name(tier),
		     lt_tier_name((enum lt_tier)want));
	uint64_t first, t_ready = lt_now_ns();
	char *body = http_get(a.fd, 20000, &first);
	if (!body)
		FAIL("%s: no HTTP 200 answer", what);
	if (!strstr(body, expect))
		FAIL("%s: body \"%.80s\" lacks \"%s\"", what, body, expect);
	double ms = (double)(first - t0) / 1e6;
	close(a.fd);
	lt_pool_conn_release(a.pc, 0, 0);
	printf("ok: %s: \"%s\" served (tier %s) %.1f ms after acquire (connected at %.1f ms)\n",
	       what, expect, lt_tier_name(tier), ms, (double)(t_ready - t0) / 1e6);
	fflush(stdout);
	return ms;
}

/* ---- helpers over the pool --------------------------------------------------------- */

static struct lt_policy policy(uint32_t min, uint32_t shells)
{
	struct lt_policy p;
	lt_policy_defaults(&p);
	p.min = min;
	p.max = 2;
	p.shells = shells;
	p.idle_timeout = 0;
	p.scale_down = 0;
	p.start_timeout = LT_SEC(120);
	p.queue_timeout = LT_SEC(120);
	p.connect_timeout = LT_SEC(5);
	return p;
}

static struct lt_app *add_app(const char *name, void *cfg, const char *snapshot,
			      uint32_t min, uint32_t shells)
{
	struct lt_app_spec spec = {.name = name, .snapshot = snapshot, .engine_cfg = cfg};
	struct lt_policy p = policy(min, shells);
	struct lt_app *a = lt_pool_add_app(pool, eng, &spec, &p);
	if (!a)
		FAIL("add app %s: %s", name, lt_errmsg());
	return a;
}

static void removed_cb(void *arg)
{
	*(volatile bool *)arg = true;
}

static void remove_app(struct lt_app *a)
{
	volatile bool done = false;
	lt_app_remove(a, removed_cb, (void *)&done);
	if (!run_until(&done, 20000))
		FAIL("removing an app took over 20 s");
}

static struct lt_app_stats stats(struct lt_app *a)
{
	struct lt_app_stats st;
	lt_app_get_stats(a, &st);
	return st;
}

static bool shells_ready(void *arg)
{
	return stats(arg).shells_ready >= 1;
}

static bool no_live(void *arg)
{
	return stats(arg).instances == 0;
}

static struct lt_instance *running_instance(struct lt_app *a)
{
	for (struct lt_instance *i = lt_app_first_instance(a); i; i = lt_instance_next(i)) {
		struct lt_instance_info info;
		lt_instance_get_info(i, &info);
		if (info.state == LT_INST_RUNNING)
			return i;
	}
	return NULL;
}

/* Stops the app's instance and waits until none is left. */
static void drop_instances(struct lt_app *a)
{
	struct lt_instance *i;
	while ((i = lt_app_first_instance(a))) {
		struct lt_instance_info info;
		lt_instance_get_info(i, &info);
		if (info.state != LT_INST_STOPPING && lt_instance_stop(i) < 0)
			FAIL("stop %s: %s", info.id, lt_errmsg());
		if (!run_until_fn(no_live, a, 20000))
			FAIL("instance %s did not stop", info.id);
		spin_ms(20);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- engine-level snapshot ------------------------------------------------------------ */

struct opdone {
	volatile bool done;
	int err;
	char msg[512];
};

static void op_cb(void *arg, const struct lt_engine_result *r)
{
	struct opdone *o = arg;
	o->err = r->err;
	snprintf(o->msg, sizeof(o->msg), "%s", r->msg ? r->msg : "");
	o->done = true;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static bool pid_alive(int pid)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/stat", pid);
	char *s = NULL;
	size_t len;
	if (lt_read_file(p, 4096, &s, &len) < 0)
		return false;
	/* A zombie is as good as gone. */
	char *rp = strrchr(s, ')');
	bool alive = rp && rp[1] == ' ' && rp[2] != 'Z';
	free(s);
	return alive;
}

/* ---- uniqueness after restore ------------------------------------------------------------ */

/* One request through the pool on a fresh restore; prints its body's
 * lines as "BODY<n> <line>" for the script to compare. */
static void unique_request(struct lt_app *app, int n)
{
	struct acq a = {.fd = -1};
	if (!lt_app_acquire(app, gport, &acq_ops, &a))
		FAIL("unique %d: acquire refused at once: %s", n, lt_errmsg());
	if (!run_until(&a.done, 120000) || !a.pc)
		FAIL("unique %d: no instance: %s", n, a.why);
	if (lt_pool_conn_tier(a.pc) != LT_TIER_RESTORE)
		FAIL("unique %d: served by tier %s, not a restore", n,
		     lt_tier_name(lt_pool_conn_tier(a.pc)));
	/* A CGI's own header may end in a bare "\n\n": take the lines, not
	 * http_get's body. */
	http_get(a.fd, 20000, NULL);
	if (strncmp(last_resp, "HTTP/1.", 7) || !strstr(last_resp, " 200 ") ||
	    !strstr(last_resp, expect))
		FAIL("unique %d: answer \"%.200s\" lacks \"%s\"", n, last_resp, expect);
	printf("HOST%d %lld\n", n, (long long)(lt_wall_ns() / 1000000000ull));
	for (char *l = strtok(last_resp, "\r\n"); l; l = strtok(NULL, "\r\n"))
		printf("BODY%d %s\n", n, l);
	fflush(stdout);
	close(a.fd);
	lt_pool_conn_release(a.pc, 0, 0);
}

/* Snapshot once, wait stale_s seconds (a restored guest without a fresh
 * clock is then visibly behind), restore two instances in turn and show
 * what each serves. */
static void unique_mode(void *cfg, const char *snap, int stale_s)
{
	struct lt_app *dep = add_app("deploy", cfg, NULL, 1, 0);
	if (!run_until(&saw_running, 120000))
		FAIL("unique: no instance reached its trigger within 120 s");
	struct lt_instance *inst = running_instance(dep);
	struct opdone sd = {0};
	if (!inst || eng->ops->snapshot(eng, inst, snap, op_cb, &sd) < 0)
		FAIL("unique: snapshot: %s", inst ? lt_errmsg() : "no running instance");
	if (!run_until(&sd.done, 60000) || sd.err)
		FAIL("unique: snapshot: %s", sd.done ? sd.msg : "timed out");
	printf("SNAPSHOT %lld\n", (long long)(lt_wall_ns() / 1000000000ull));
	remove_app(dep);
	spin_ms(stale_s * 1000);
	struct lt_app *app = add_app("unique", cfg, snap, 0, 0);
	for (int n = 1; n <= 2; n++) {
		unique_request(app, n);
		drop_instances(app);
	}
	if (stats(app).restores != 2)
		FAIL("unique: %llu restores, expected 2", (unsigned long long)stats(app).restores);
	remove_app(app);
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: qemu-engine-drv --kernel K (--rootfs R [--rootfs-type T] | --initrd I)\n"
		"         --work DIR [--cmdline X] [--port 8080] [--path /] [--expect TEXT]\n"
		"         [--mem MiB] [--rounds N] [--skip-corrupt] [--no-raw-cache]\n"
		"         [--leave-orphan | --check-orphan PID | --bench SNAPSHOT |\n"
		"          --console-check BYTES | --expect-boot-fail | --unique STALE_S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"kernel", 1, 0, 'k'}, {"rootfs", 1, 0, 'r'}, {"rootfs-type", 1, 0, 't'},
		{"initrd", 1, 0, 'i'}, {"cmdline", 1, 0, 'c'}, {"port", 1, 0, 'p'},
		{"path", 1, 0, 'P'},   {"expect", 1, 0, 'e'}, {"work", 1, 0, 'w'},
		{"mem", 1, 0, 'm'},    {"rounds", 1, 0, 'n'}, {"skip-corrupt", 0, 0, 'S'},
		{"no-raw-cache", 0, 0, 'R'},
		{"leave-orphan", 0, 0, 'O'},  {"check-orphan", 1, 0, 'C'},
		{"bench", 1, 0, 'B'},	      {"console-check", 1, 0, 'K'},
		{"expect-boot-fail", 0, 0, 'F'}, {"unique", 1, 0, 'U'},
		{0, 0, 0, 0}};
	struct lt_qemu_app app = {0};
	const char *work = NULL;
	int rounds = 3, c;
	bool skip_corrupt = false, no_raw = false, leave_orphan = false;
	int check_orphan = 0;
	const char *bench = NULL;
	long console_min = 0;
	bool expect_boot_fail = false;
	int unique_stale = -1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k': app.kernel = optarg; break;
		case 'r': app.rootfs = optarg; break;
		case 't': app.rootfs_type = optarg; break;
		case 'i': app.initrd = optarg; break;
		case 'c': app.cmdline = optarg; break;
		case 'p': gport = (uint16_t)atoi(optarg); break;
		case 'P': http_path = optarg; break;
		case 'e': expect = optarg; break;
		case 'w': work = optarg; break;
		case 'm': app.mem = (uint64_t)atoi(optarg) << 20; break;
		case 'n': rounds = atoi(optarg); break;
		case 'S': skip_corrupt = true; break;
		case 'R': no_raw = true; break;
		case 'O': leave_orphan = true; break;
		case 'C': check_orphan = atoi(optarg); break;
		case 'B': bench = optarg; break;
		case 'K': console_min = atol(optarg); break;
		case 'F': expect_boot_fail = true; break;
		case 'U': unique_stale = atoi(optarg); break;
		default: usage();
		}
	}
	if (!app.kernel || !work || rounds < 1 || rounds > 50)
		usage();
	signal(SIGPIPE, SIG_IGN);
	app.ports = &gport;
	app.nports = 1;
	lt_qemu_parse_trigger("first-listen", &app.trigger);
	char *run_dir = lt_path_join(work, "run");
	char *snap = lt_path_join(work, "app.qsnap");
	loop = lt_loop_new();
	struct lt_qemu_opts qo = {.loop = loop, .run_dir = run_dir, .no_raw_cache = no_raw};
	eng = lt_engine_qemu_new(&qo);
	if (!eng)
		FAIL("engine: %s", lt_errmsg());
	if (check_orphan) {
		/* A new engine on the same run dir cleaned up what the dead
		 * process left. */
		spin_ms(100);
		if (pid_alive(check_orphan))
			FAIL("orphan QEMU %d still alive", check_orphan);
		if (count_dir(run_dir) != 0)
			FAIL("run dir %s still holds %d entries", run_dir, count_dir(run_dir));
		printf("ok: the orphaned QEMU %d was killed and its directory removed\n",
		       check_orphan);
		lt_engine_qemu_free(eng);
		lt_loop_free(loop);
		free(run_dir);
		free(snap);
		return 0;
	}
	printf("ok: engine accel %s\n", lt_engine_qemu_accel(eng));
	void *cfg = lt_qemu_app_new(&app);
	if (!cfg)
		FAIL("app config: %s", lt_errmsg());
	pool = lt_pool_new(lt_loop_clock(loop));
	lt_pool_set_observer(pool, observe, NULL);

	if (expect_boot_fail) {
		/* The guest dies while booting: the start fails with a reason
		 * (the pool logs it) and nothing is left behind. */
		struct lt_app *b = add_app("doomed", cfg, NULL, 1, 0);
		uint64_t end = lt_now_ns() + LT_SEC(60);
		while (stats(b).start_failures == 0 && lt_now_ns() < end)
			lt_loop_run_once(loop, 10);
		if (stats(b).start_failures == 0)
			FAIL("boot did not fail within 60 s");
		if (saw_running)
			FAIL("a doomed instance reached RUNNING");
		remove_app(b);
		spin_ms(100);
		lt_pool_free(pool);
		lt_engine_qemu_free(eng);
		lt_qemu_app_free(cfg);
		lt_loop_free(loop);
		if (count_dir(run_dir) != 0)
			FAIL("run dir not empty after a failed boot");
		printf("ok: the failed boot was reported and cleaned up\n");
		free(run_dir);
		free(snap);
		return 0;
	}
	if (console_min) {
		/* A guest that floods its console: the log on disk stays bounded. */
		struct lt_app *c = add_app("chatty", cfg, NULL, 1, 0);
		if (!run_until(&saw_running, 120000))
			FAIL("console: no instance booted");
		struct lt_qemu_inst_info ci;
		if (lt_qemu_instance_info(running_instance(c), &ci) < 0)
			FAIL("console: %s", lt_errmsg());
		spin_ms(200);
		char *old = lt_sprintf("%s.1", ci.serial_log);
		struct stat a, b;
		if (stat(ci.serial_log, &a) < 0 || stat(old, &b) < 0)
			FAIL("console: %s or %s missing", ci.serial_log, old);
		const off_t cap = 1 << 20, slack = 64 << 10;
		if (b.st_size < cap || b.st_size > cap + slack || a.st_size > cap + slack)
			FAIL("console: logs of %lld and %lld bytes, cap %lld", (long long)a.st_size,
			     (long long)b.st_size, (long long)cap);
		if (a.st_size + b.st_size < console_min)
			FAIL("console: only %lld bytes logged, the guest wrote %ld",
			     (long long)(a.st_size + b.st_size), console_min);
		printf("ok: a %ld-byte console flood is kept as %lld + %lld bytes (cap %lld)\n",
		       console_min, (long long)b.st_size, (long long)a.st_size, (long long)cap);
		free(old);
		free(run_dir);
		free(snap);
		remove_app(c);
		lt_pool_free(pool);
		lt_engine_qemu_free(eng);
		lt_qemu_app_free(cfg);
		lt_loop_free(loop);
		return 0;
	}
	if (bench) {
		/* Restores of an existing snapshot only: one in a fresh QEMU,
		 * one into a shell (for side-by-side runs with bare QEMU). */
		struct lt_app *f = add_app("fresh", cfg, bench, 0, 0);
		double fm = serve_one(f, LT_TIER_RESTORE, "bench restore");
		remove_app(f); /* nothing else runs while the next one is timed */
		struct lt_app *sa = add_app("shell", cfg, bench, 0, 1);
		if (!run_until_fn(shells_ready, sa, 30000))
			FAIL("bench: no shell ready within 30 s");
		spin_ms(300);
		double sm = serve_one(sa, LT_TIER_SHELL, "bench shell restore");
		remove_app(sa);
		lt_pool_free(pool);
		lt_engine_qemu_free(eng);
		lt_qemu_app_free(cfg);
		lt_loop_free(loop);
		if (count_dir(run_dir) != 0)
			FAIL("bench: run dir not empty");
		printf("BENCH fresh_ms=%.0f shell_ms=%.0f\n", fm, sm);
		free(run_dir);
		free(snap);
		return 0;
	}
	if (leave_orphan) {
		/* Boot one VM, then die the way a killed daemon does. */
		struct lt_app *o = add_app("orphan", cfg, NULL, 1, 0);
		if (!run_until(&saw_running, 120000))
			FAIL("orphan: no instance booted");
		struct lt_qemu_inst_info oi;
		if (lt_qemu_instance_info(running_instance(o), &oi) < 0)
			FAIL("orphan: %s", lt_errmsg());
		printf("ORPHAN %d\n", oi.pid);
		fflush(stdout);
		_exit(0);
	}

	if (unique_stale >= 0) {
		unique_mode(cfg, snap, unique_stale);
		lt_pool_free(pool);
		lt_engine_qemu_free(eng);
		lt_qemu_app_free(cfg);
		lt_loop_free(loop);
		free(run_dir);
		free(snap);
		return 0;
	}

	/* deploy: min=1 boots one instance; at its trigger it is RUNNING. */
	uint64_t t0 = lt_now_ns();
	struct lt_app *dep = add_app("deploy", cfg, NULL, 1, 0);
	if (!run_until(&saw_running, 120000))
		FAIL("deploy: no instance reached its trigger within 120 s");
	double boot_ms = ms_since(t0);
	struct lt_instance *inst = running_instance(dep);
	if (!inst)
		FAIL("deploy: running instance not found");
	printf("ok: deploy: booted to the first-listen trigger in %.0f ms\n", boot_ms);
	struct opdone sd = {0};
	t0 = lt_now_ns();
	if (eng->ops->snapshot(eng, inst, snap, op_cb, &sd) < 0)
		FAIL("snapshot: %s", lt_errmsg());
	if (sd.done)
		FAIL("snapshot: completion delivered from inside the op");
	if (!run_until(&sd.done, 60000))
		FAIL("snapshot: not done within 60 s");
	if (sd.err)
		FAIL("snapshot: %s", sd.msg);
	double snap_ms = ms_since(t0);
	struct stat st;
	if (stat(snap, &st) < 0 || st.st_size < 4096)
		FAIL("snapshot: %s missing or tiny", snap);
	printf("ok: snapshot: %.1f MB in %.0f ms\n", (double)st.st_size / 1e6, snap_ms);
	/* No temp file is left beside it. */
	if (count_dir(work) != 2)
		FAIL("work dir holds %d entries, expected run/ and the snapshot", count_dir(work));
	/* The source stays stopped after a snapshot; resume brings it back. */
	struct opdone rd = {0};
	if (eng->ops->resume(eng, inst, op_cb, &rd) < 0)
		FAIL("resume after snapshot: %s", lt_errmsg());
	if (!run_until(&rd.done, 10000) || rd.err)
		FAIL("resume after snapshot: %s", rd.done ? rd.msg : "timed out");
	struct lt_qemu_inst_info di;
	if (lt_qemu_instance_info(inst, &di) < 0)
		FAIL("instance info: %s", lt_errmsg());
	int ds = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in dsa = {.sin_family = AF_INET, .sin_port = htons(di.host_port[0]),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(ds, (struct sockaddr *)&dsa, sizeof(dsa)) < 0)
		FAIL("connect to the snapshotted instance: %s", strerror(errno));
	char *dbody = http_get(ds, 20000, NULL);
	if (!dbody || !strstr(dbody, expect))
		FAIL("the instance resumed after its snapshot does not serve");
	close(ds);
	printf("ok: the snapshotted instance resumes and serves\n");
	remove_app(dep);
	printf("ok: deploy instance stopped\n");

	/* cold: no snapshot, acquire boots. */
	struct lt_app *cold = add_app("cold", cfg, NULL, 0, 0);
	double cold_ms = serve_one(cold, LT_TIER_COLD, "cold boot");
	remove_app(cold);

	/* restore in fresh processes. */
	struct lt_app *warm = add_app("warm", cfg, snap, 0, 0);
	double rs[50], sh[50];
	for (int r = 0; r < rounds; r++) {
		char what[64];
		snprintf(what, sizeof(what), "restore %d", r + 1);
		rs[r] = serve_one(warm, LT_TIER_RESTORE, what);
		if (r + 1 < rounds)
			drop_instances(warm);
	}
	char *raw = lt_sprintf("%s.raw", snap);
	if (!no_raw && !lt_path_exists(raw))
		FAIL("restore did not leave the raw cache %s", raw);
	if (stats(warm).restores != (uint64_t)rounds)
		FAIL("restore counter %llu, expected %d",
		     (unsigned long long)stats(warm).restores, rounds);
	/* A second request goes to the same, now idle, instance. */
	serve_one(warm, LT_TIER_IDLE, "warm request");

	/* pause: a direct connection waits, then both are answered. */
	inst = running_instance(warm);
	struct lt_qemu_inst_info qi;
	if (!inst || lt_qemu_instance_info(inst, &qi) < 0)
		FAIL("pause: no running instance");
	if (lt_instance_pause(inst) < 0)
		FAIL("pause: %s", lt_errmsg());
	spin_ms(300);
	struct lt_instance_info ii;
	lt_instance_get_info(inst, &ii);
	if (ii.state != LT_INST_PAUSED)
		FAIL("pause: state %s", lt_inst_state_name(ii.state));
	int direct = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(qi.host_port[0]),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(direct, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		FAIL("pause: direct connect: %s", strerror(errno));
	char req[128];
	int rn = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", http_path);
	if (send(direct, req, (size_t)rn, MSG_NOSIGNAL) != rn)
		FAIL("pause: send");
	struct pollfd pp = {.fd = direct, .events = POLLIN};
	if (poll(&pp, 1, 500) != 0)
		FAIL("pause: a paused guest answered");
	printf("ok: paused guest does not answer (connection held by user networking)\n");
	serve_one(warm, LT_TIER_RESUME, "resume");
	char dbuf[4096];
	size_t dl = 0;
	uint64_t dend = lt_now_ns() + LT_SEC(10);
	while (lt_now_ns() < dend && dl < sizeof(dbuf) - 1) {
		if (poll(&pp, 1, 5) > 0) {
			ssize_t r = read(direct, dbuf + dl, sizeof(dbuf) - 1 - dl);
			if (r <= 0)
				break;
			dl += (size_t)r;
		}
		lt_loop_run_once(loop, 0);
	}
	dbuf[dl] = 0;
	close(direct);
	if (!strstr(dbuf, expect))
		FAIL("pause: the connection made while paused got \"%.60s\"", dbuf);
	printf("ok: the connection made while paused was answered after resume\n");
	if (stats(warm).resumes != 1 || stats(warm).pauses != 1)
		FAIL("pause/resume counters %llu/%llu", (unsigned long long)stats(warm).pauses,
		     (unsigned long long)stats(warm).resumes);

	/* death: kill -9 QEMU; the pool learns it and restores anew. */
	int pid = qi.pid;
	kill(pid, SIGKILL);
	if (!run_until_fn(no_live, warm, 10000))
		FAIL("death: instance still live after kill -9 of %d", pid);
	if (stats(warm).deaths != 1)
		FAIL("death: deaths counter %llu", (unsigned long long)stats(warm).deaths);
	printf("ok: kill -9 of QEMU %d reported as a death\n", pid);
	serve_one(warm, LT_TIER_RESTORE, "after death");
	remove_app(warm);

	/* shells: restore into a pre-made QEMU. */
	struct lt_app *sapp = add_app("shelled", cfg, snap, 0, 1);
	for (int r = 0; r < rounds; r++) {
		if (!run_until_fn(shells_ready, sapp, 30000))
			FAIL("shell: none ready within 30 s");
		spin_ms(300); /* let the shell's QEMU settle: measure the restore alone */
		char what[64];
		snprintf(what, sizeof(what), "shell restore %d", r + 1);
		sh[r] = serve_one(sapp, LT_TIER_SHELL, what);
		drop_instances(sapp);
	}
	if (stats(sapp).shell_restores != (uint64_t)rounds)
		FAIL("shell restore counter %llu", (unsigned long long)stats(sapp).shell_restores);
	remove_app(sapp);

	if (!skip_corrupt) {
		/* mismatch: a snapshot for another memory size is refused at once. */
		struct lt_qemu_app other = app;
		other.mem = (app.mem ? app.mem : 256ull << 20) * 2;
		void *ocfg = lt_qemu_app_new(&other);
		if (!ocfg)
			FAIL("config: %s", lt_errmsg());
		struct lt_app *mm = add_app("mismatch", ocfg, snap, 0, 0);
		struct acq a = {.fd = -1};
		struct lt_pool_conn *pc = lt_app_acquire(mm, gport, &acq_ops, &a);
		spin_ms(50);
		const char *deg = lt_app_degraded(mm);
		if (!deg || !strstr(deg, "MiB"))
			FAIL("mismatch: app not degraded with a reason (%s)", deg ? deg : "none");
		printf("ok: mismatched snapshot degrades the app: %s\n", deg);
		if (pc && !a.done)
			lt_pool_conn_cancel(pc);
		else if (a.pc) {
			close(a.fd);
			lt_pool_conn_release(a.pc, 0, 0);
		}
		remove_app(mm);
		lt_qemu_app_free(ocfg);

		if (!no_raw) {
			/* A cut raw cache fails one restore, is dropped, and the
			 * retry decompresses the snapshot: not the snapshot's fault. */
			if (truncate(raw, 5 << 20) < 0)
				FAIL("truncate %s: %s", raw, strerror(errno));
			struct lt_app *rb = add_app("rawbad", cfg, snap, 0, 0);
			serve_one(rb, LT_TIER_RESTORE, "cut raw cache");
			if (lt_app_degraded(rb))
				FAIL("raw cache: app degraded: %s", lt_app_degraded(rb));
			if (stats(rb).start_failures != 1)
				FAIL("raw cache: %llu start failures, expected 1",
				     (unsigned long long)stats(rb).start_failures);
			struct stat rst;
			if (stat(raw, &rst) < 0 || rst.st_size <= (5 << 20))
				FAIL("raw cache was not rebuilt");
			printf("ok: a cut raw cache fails one restore, is rebuilt, the app stays healthy\n");
			remove_app(rb);
		}

		/* A wrong frame checksum shows only after QEMU has read the whole
		 * stream: the guest must never run on it. */
		char *badsum = lt_path_join(work, "badsum.qsnap");
		char *sdata;
		size_t slen;
		if (lt_read_file(snap, 1 << 30, &sdata, &slen) < 0)
			FAIL("read snapshot: %s", lt_errmsg());
		sdata[slen - 1] ^= 0x01;
		if (lt_write_file_atomic(badsum, sdata, slen, 0600) < 0)
			FAIL("write %s: %s", badsum, lt_errmsg());
		free(sdata);
		struct lt_app *bs = add_app("badsum", cfg, badsum, 0, 0);
		struct acq ba = {.fd = -1};
		struct lt_pool_conn *bpc = lt_app_acquire(bs, gport, &acq_ops, &ba);
		uint64_t bend = lt_now_ns() + LT_SEC(30);
		while (!lt_app_degraded(bs) && lt_now_ns() < bend && !ba.done)
			lt_loop_run_once(loop, 10);
		deg = lt_app_degraded(bs);
		if (!deg || !strstr(deg, "checksum"))
			FAIL("bad checksum: app not degraded for it (%s)", deg ? deg : "none");
		if (stats(bs).restores != 0)
			FAIL("bad checksum: a restore was counted as started");
		printf("ok: a bad frame checksum stops the restore before the guest runs: %s\n", deg);
		if (bpc && !ba.done)
			lt_pool_conn_cancel(bpc);
		else if (ba.pc) {
			close(ba.fd);
			lt_pool_conn_release(ba.pc, 0, 0);
		}
		remove_app(bs);
		unlink(badsum);
		free(badsum);

		/* corrupt: damaged zstd data fails the restore; cold boot serves. */
		char *bad = lt_path_join(work, "bad.qsnap");
		char *data;
		size_t len;
		if (lt_read_file(snap, 1 << 30, &data, &len) < 0)
			FAIL("read snapshot: %s", lt_errmsg());
		for (size_t o = len / 3; o < len / 3 + 4096 && o < len; o++)
			data[o] ^= 0x5a;
		if (lt_write_file_atomic(bad, data, len, 0600) < 0)
			FAIL("write %s: %s", bad, lt_errmsg());
		free(data);
		struct lt_app *ca = add_app("corrupt", cfg, bad, 0, 0);
		serve_one(ca, -1, "corrupt snapshot");
		deg = lt_app_degraded(ca);
		if (!deg)
			FAIL("corrupt: app not degraded");
		if (stats(ca).cold_boots != 1)
			FAIL("corrupt: cold boots %llu", (unsigned long long)stats(ca).cold_boots);
		printf("ok: corrupt snapshot degrades the app (%s) and a cold boot serves\n", deg);
		remove_app(ca);
		unlink(bad);
		free(bad);
	}

	/* cleanup: nothing left running or on disk. */
	volatile bool down = false;
	lt_pool_shutdown(pool, removed_cb, (void *)&down);
	if (!run_until(&down, 20000))
		FAIL("pool shutdown took over 20 s");
	spin_ms(200);
	if (pid_alive(pid))
		FAIL("QEMU %d still alive", pid);
	int left = count_dir(run_dir);
	if (left != 0)
		FAIL("run dir %s still holds %d entries", run_dir, left);
	printf("ok: every QEMU reaped, run dir empty\n");
	lt_pool_free(pool);
	lt_engine_qemu_free(eng);
	lt_qemu_app_free(cfg);
	lt_loop_free(loop);

	printf("RESULT boot_to_trigger_ms=%.0f snapshot_ms=%.0f snapshot_bytes=%lld "
	       "cold_http_ms=%.0f restore_http_ms_median=%.0f shell_http_ms_median=%.0f "
	       "rounds=%d\n",
	       boot_ms, snap_ms, (long long)st.st_size, cold_ms, median(rs, rounds),
	       median(sh, rounds), rounds);
	free(run_dir);
	free(snap);
	free(raw);
	return 0;
}
