/* ignitiond: the lttle daemon. Apps, the instance pool, the proxy's
 * listeners and the HTTP/JSON API on a unix socket (docs/daemon.md).
 * Runs in the foreground and logs to stderr; SIGTERM drains and exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "engines_test.h"

struct opts {
	char *state, *socket, *tcp, *token, *http;
	uint64_t deploy_timeout_ms, drain_timeout_ms;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ignitiond [--state DIR] [--socket PATH] [--http-listen [ADDR:]PORT]\n"
		"                 [--listen-tcp ADDR:PORT --token TOKEN] [--deploy-timeout DUR]\n"
		"                 [--drain-timeout DUR]\n\n"
		"The lttle daemon: deploys apps (lttle deploy), holds their ports, wakes\n"
		"instances on connection, scales them to zero and back. Runs in the\n"
		"foreground, logs to stderr ($LTTLE_LOG: error|warn|info|debug, default info).\n\n"
		"  --state DIR           apps, snapshots, images and runtime files\n"
		"                        (default /var/lib/lttle as root, else\n"
		"                        ~/.local/share/lttle)\n"
		"  --socket PATH         the API's unix socket, mode 0660 (default\n"
		"                        <state>/ignitiond.sock); its permissions are the\n"
		"                        access control\n"
		"  --http-listen ADDR    a shared HTTP port routing by Host (lttle deploy --host)\n"
		"  --listen-tcp ADDR     also serve the API on TCP; refused without --token\n"
		"  --token TOKEN         bearer token the TCP API requires ($LTTLE_TOKEN)\n"
		"  --deploy-timeout DUR  longest a deploy boot may take to its trigger\n"
		"                        (default 300s)\n"
		"  --drain-timeout DUR   on SIGTERM, redeploy or removal, how long open\n"
		"                        connections may go on (default 30s)\n"
		"  -h, --help            this help\n\n"
		"SIGTERM/SIGINT: stop accepting, let connections finish (up to the drain\n"
		"timeout), stop every VM, exit 0. After a crash, a restart reloads every app\n"
		"and kills the VM processes the previous run left behind.\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"state", required_argument, NULL, 's'},
		{"socket", required_argument, NULL, 'S'},
		{"listen-tcp", required_argument, NULL, 'T'},
		{"token", required_argument, NULL, 't'},
		{"http-listen", required_argument, NULL, 'H'},
		{"deploy-timeout", required_argument, NULL, 'D'},
		{"drain-timeout", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	o->deploy_timeout_ms = 300000;
	o->drain_timeout_ms = 30000;
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': o->state = optarg; break;
		case 'S': o->socket = optarg; break;
		case 'T': o->tcp = optarg; break;
		case 't': o->token = optarg; break;
		case 'H': o->http = optarg; break;
		case 'D':
		case 'd':
			if (dmn_parse_duration_ms(optarg, c == 'D' ? &o->deploy_timeout_ms
								 : &o->drain_timeout_ms) < 0 ||
			    (c == 'D' ? o->deploy_timeout_ms : o->drain_timeout_ms) == 0) {
				fprintf(stderr, "ignitiond: --%s: %s\n",
					c == 'D' ? "deploy-timeout" : "drain-timeout", lt_errmsg());
				return 2;
			}
			break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("ignitiond 0.1.0\n"); return 1;
		default:
			fprintf(stderr, "ignitiond: invalid option (see ignitiond --help)\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "ignitiond: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o->token)
		o->token = getenv("LTTLE_TOKEN");
	if (o->tcp && (!o->token || !*o->token)) {
		fprintf(stderr, "ignitiond: --listen-tcp needs --token (a TCP API without a token "
				"is refused)\n");
		return 2;
	}
	return 0;
}

static char *default_state(void)
{
	if (getuid() == 0)
		return lt_strdup("/var/lib/lttle");
	const char *home = getenv("HOME");
	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home) {
		lt_fail("cannot find the home directory: pass --state");
		return NULL;
	}
	return lt_sprintf("%s/.local/share/lttle", home);
}

static char *self_dir(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	char *slash = strrchr(buf, '/');
	if (slash)
		*slash = '\0';
	return lt_strdup(buf);
}

/* One daemon per state dir: a second one would kill the first's VMs as
 * orphans. The lock dies with the process, kill -9 included. */
static int lock_state(const char *state)
{
	char *path = lt_path_join(state, "ignitiond.lock");
	if (!path)
		return -1;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		lt_fail_errno("cannot open %s", path);
		free(path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		lt_fail("another ignitiond (pid %s) uses %s", pid[0] ? pid : "?", state);
		free(path);
		close(fd);
		return -1;
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		lt_warn("ignitiond: cannot write %s", path);
	free(path);
	return fd; /* kept open for the process's life */
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return lt_fail("socket path %s is too long (at most %zu bytes)", path,
			       sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lt_fail_errno("socket");
	/* we hold the state lock: a socket file there is a dead daemon's */
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			close(fd);
			return lt_fail("%s exists and is not a socket", path);
		}
		unlink(path);
	}
	mode_t old = umask(0117);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(path, 0660) < 0 || listen(fd, 128) < 0) {
		lt_fail_errno("cannot listen on %s", path);
		close(fd);
		return -1;
	}
	return fd;
}

static int listen_tcp(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (lt_parse_listen_addr(addr, &ss, &len) < 0)
		return -1;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lt_fail_errno("socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
		lt_fail_errno("cannot listen on %s", addr);
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- shutdown ----------------------------------------------------------------------- */

static struct dmn D;
static struct MHD_Daemon *api_unix, *api_tcp;
static struct lt_timer finish_timer, force_timer, counters_timer;
static struct lt_watch sig_watch;

static void finish_check(struct lt_timer *t)
{
	if (D.pool_down && !dmn_deploys_booting(&D)) {
		lt_loop_stop(D.loop);
		return;
	}
	lt_timer_arm_in(lt_loop_clock(D.loop), t, LT_MS(50));
}

static void pool_down(void *arg)
{
	(void)arg;
	D.pool_down = true;
	finish_check(&finish_timer);
}

static void force_stop(struct lt_timer *t)
{
	(void)t;
	lt_warn("ignitiond: drain did not finish in time; stopping the VMs now");
	lt_loop_stop(D.loop);
}

static void begin_shutdown(void)
{
	if (atomic_exchange(&D.stopping, true)) {
		lt_warn("ignitiond: second signal: stopping now");
		lt_loop_stop(D.loop);
		return;
	}
	lt_info("ignitiond: draining (stop accepting, let connections finish, stop VMs)");
	dmn_apps_save_counters(&D);
	dmn_http_quiesce(api_tcp);
	lt_proxy_stop_accepting(D.proxy);
	dmn_deploys_abort(&D);
	lt_timer_init(&finish_timer, finish_check);
	lt_timer_init(&force_timer, force_stop);
	lt_timer_arm_in(lt_loop_clock(D.loop), &force_timer, D.drain_timeout_ns + LT_SEC(20));
	lt_pool_shutdown(D.pool, pool_down, NULL);
}

static void on_signal(struct lt_watch *w, uint32_t events)
{
	(void)events;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		begin_shutdown();
}

static void counters_fired(struct lt_timer *t)
{
	dmn_apps_save_counters(&D);
	lt_timer_arm_in(lt_loop_clock(D.loop), t, LT_SEC(2));
}

/* ---- startup -------------------------------------------------------------------------- */

static int setup(struct opts *o, int *sfd_out)
{
	D.state = o->state ? lt_strdup(o->state) : default_state();
	if (!D.state || lt_mkdir_p(D.state, 0750) < 0)
		return -1;
	char real[PATH_MAX];
	if (!realpath(D.state, real))
		return lt_fail_errno("%s", D.state);
	free(D.state);
	D.state = lt_strdup(real);
	D.run_dir = lt_path_join(D.state, "run");
	D.store_root = lt_strdup(D.state);
	D.libexec = self_dir();
	D.deploy_timeout_ns = LT_MS(o->deploy_timeout_ms);
	D.drain_timeout_ns = LT_MS(o->drain_timeout_ms);
	D.started_wall = lt_wall_ns();
	D.allow_proc_engine = dmn_test_engine != NULL;
	if (!D.run_dir || !D.store_root || lock_state(D.state) < 0)
		return -1;
	int killed = dmn_recover_orphans(D.state, D.run_dir);
	if (killed > 0)
		lt_warn("ignitiond: killed %d VM process(es) left by a previous run", killed);
	if (lt_mkdir_p(D.run_dir, 0750) < 0)
		return -1;
	dmn_events_init(&D);
	D.loop = lt_loop_new();
	D.pool = D.loop ? lt_pool_new(lt_loop_clock(D.loop)) : NULL;
	if (!D.pool)
		return -1;
	lt_pool_set_observer(D.pool, dmn_pool_observer, &D);
	struct lt_proxy_config pc;
	lt_proxy_config_defaults(&pc);
	D.proxy = lt_proxy_new(D.loop, D.pool, &pc);
	if (!D.proxy)
		return -1;
	if (o->http) {
		D.http = lt_proxy_listen_http(D.proxy, o->http);
		if (!D.http)
			return lt_fail_ctx("--http-listen");
		snprintf(D.http_addr, sizeof(D.http_addr), "%s", o->http);
	}
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	int sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0 || lt_watch_add(D.loop, &sig_watch, sfd, EPOLLIN, on_signal) < 0)
		return lt_fail_errno("signalfd");
	*sfd_out = sfd;
	if (dmn_apps_restore(&D) < 0)
		lt_error("ignitiond: %s", lt_errmsg());
	lt_timer_init(&counters_timer, counters_fired);
	lt_timer_arm_in(lt_loop_clock(D.loop), &counters_timer, LT_SEC(2));
	char *sock = o->socket ? lt_strdup(o->socket) : lt_path_join(D.state, "ignitiond.sock");
	int ufd = sock ? listen_unix(sock) : -1;
	if (ufd < 0 || !(api_unix = dmn_http_start_unix(&D, ufd))) {
		free(sock);
		return -1;
	}
	lt_info("ignitiond: API on unix:%s, state %s", sock, D.state);
	o->socket = sock;
	if (o->tcp) {
		int tfd = listen_tcp(o->tcp);
		if (tfd < 0 || !(api_tcp = dmn_http_start_tcp(&D, tfd, o->token)))
			return -1;
		lt_info("ignitiond: API on tcp:%s (bearer token required)", o->tcp);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	int r = parse_opts(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r;
	if (!getenv("LTTLE_LOG"))
		lt_log_set_level(LT_LOG_INFO);
	signal(SIGPIPE, SIG_IGN);
	/* blocked before any thread starts, so only the signalfd sees them */
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = -1;
	if (setup(&o, &sfd) < 0) {
		fprintf(stderr, "ignitiond: %s\n", lt_errmsg());
		return 1;
	}
	fprintf(stderr, "ignitiond: ready (pid %d)\n", (int)getpid());
	int rc = lt_loop_run(D.loop);
	atomic_store(&D.loop_dead, true);
	atomic_store(&D.stopping, true);
	dmn_deploys_join(&D);
	dmn_http_stop(api_tcp);
	dmn_http_stop(api_unix);
	dmn_apps_save_counters(&D);
	dmn_events_fini(&D);
	lt_proxy_free(D.proxy);
	lt_pool_free(D.pool);
	dmn_engines_free(&D); /* kills and reaps any VM still running */
	dmn_apps_free(&D);
	lt_watch_del(&sig_watch);
	close(sfd);
	lt_loop_free(D.loop);
	unlink(o.socket);
	/* instances were stopped: their records go too */
	char *inst = lt_path_join(D.state, "instances");
	if (inst)
		lt_rm_rf(inst);
	free(inst);
	lt_rm_rf(D.run_dir);
	free(o.socket);
	free(D.state);
	free(D.run_dir);
	free(D.store_root);
	free(D.libexec);
	fprintf(stderr, "ignitiond: stopped\n");
	return rc < 0 ? 1 : 0;
}
