/* lttle-init: PID 1 of every lttle guest.
 *
 *   read the kernel cmdline -> mount plan (overlay + pivot when the root
 *   is read-only, API filesystems) -> console + log -> guest port ->
 *   image config, user, network files -> vsock forwarder -> "ready" ->
 *   fork the app (seccomp hook when the kernel has none) -> supervise:
 *   reap zombies, forward SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/2, answer
 *   seccomp notifications -> "exit CODE" -> stop everything, sync, reset.
 *
 * The VM ends with a reboot(RB_AUTOBOOT): boot the kernel with reboot=t
 * so it triple-faults, which the lttle VMM and `qemu -no-reboot` both
 * treat as the end of the VM (power-off needs ACPI, which we don't have).
 */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define INIT_FAILED_CODE 255

static struct li_port port = {.kind = LI_PORT_NONE, .fd = -1};
static const struct li_cmdline *cmdline; /* once parsed */

static void open_port(const struct li_cmdline *cl);

/* Everything the app child needs, prepared before the fork. */
struct app {
	char **argv;
	char **env;
	const char *workdir;
	struct li_user user;
	bool seccomp;
	pid_t forwarder; /* 0 when there is none */
};

static void end_vm(void) __attribute__((noreturn));
static void end_vm(void)
{
	sync();
	reboot(RB_AUTOBOOT);
	li_log("reboot failed: %s", strerror(errno));
	for (;;)
		pause();
}

static void fatal(void) __attribute__((noreturn));
static void fatal(void)
{
	li_log("fatal: %s", lt_errmsg());
	/* Early failures happen before the port is open; without a cmdline
	 * we cannot know it is safe to touch the I/O port. */
	char msg[LT_GUEST_LINE_MAX];
	snprintf(msg, sizeof(msg), "%s", lt_errmsg());
	if (port.kind == LI_PORT_NONE && cmdline)
		open_port(cmdline);
	li_port_send(&port, LT_GUEST_EV_LOG, "init failed: %.80s", msg);
	li_port_send(&port, LT_GUEST_EV_EXIT, "%d", INIT_FAILED_CODE);
	end_vm();
}

/* /proc is not mounted yet and the image may not even have a /proc:
 * mount a proc briefly over /.lttle, which every lttle image has. */
static char *read_cmdline(void)
{
	char *text = NULL;
	size_t len;
	if (lt_read_file("/proc/cmdline", 8192, &text, &len) == 0)
		return text;
	if (mount("proc", LI_STAGE, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		lt_fail_errno("mount proc on %s", LI_STAGE);
		return NULL;
	}
	if (lt_read_file(LI_STAGE "/cmdline", 8192, &text, &len) < 0)
		text = NULL;
	umount2(LI_STAGE, MNT_DETACH);
	return text;
}

static void setup_mounts(const struct li_cmdline *cl)
{
	struct statvfs sv;
	struct li_mount_opts o = {.overlay = cl->overlay, .overlay_dev = cl->overlay_dev};
	if (statvfs("/", &sv) == 0)
		o.root_ro = (sv.f_flag & ST_RDONLY) != 0;
	struct li_mount_op ops[LI_MOUNT_PLAN_MAX];
	int n = li_mount_plan(&o, ops, LI_MOUNT_PLAN_MAX);
	if (n < 0 || li_mount_exec(ops, (size_t)n) < 0)
		fatal();
}

/* The kernel gives init /dev/console as stdio only when the image has a
 * /dev; otherwise open it now that devtmpfs is mounted. */
static void setup_stdio(void)
{
	if (fcntl(STDOUT_FILENO, F_GETFD) >= 0)
		return;
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd < 0)
		return;
	for (int i = 0; i < 3; i++)
		dup2(fd, i);
	if (fd > 2)
		close(fd);
}

static char *pick_hostname(const struct li_cmdline *cl)
{
	char cur[65] = "";
	if (cl->hostname)
		return lt_strdup(cl->hostname);
	/* ip=...:HOST:... made the kernel set it already; without HOST the
	 * kernel uses the address itself, which is no name */
	if (gethostname(cur, sizeof(cur) - 1) == 0 && cur[0] && strcmp(cur, "(none)") &&
	    !(cl->ip && !strcmp(cur, cl->ip)))
		return lt_strdup(cur);
	return lt_strdup("lttle");
}

static void write_etc(const char *path, const char *content)
{
	/* A rename replaces even a symlink (e.g. resolv.conf -> /run/...). */
	if (lt_mkdir_p("/etc", 0755) < 0 ||
	    lt_write_file_atomic(path, content, strlen(content), 0644) < 0)
		li_log("cannot write %s: %s", path, lt_errmsg());
}

static void setup_network(const struct li_cmdline *cl, const char *hostname)
{
	char buf[4096];
	if (li_net_lo_up() < 0)
		li_log("%s", lt_errmsg());
	if (sethostname(hostname, strlen(hostname)) < 0)
		li_log("sethostname %s: %s", hostname, strerror(errno));
	if (!cl->net)
		return;
	if (li_net_hosts(hostname, cl->ip, buf, sizeof(buf)) == 0)
		write_etc("/etc/hosts", buf);
	else
		li_log("/etc/hosts: %s", lt_errmsg());
	char *pnp = NULL;
	size_t len;
	if (lt_read_file("/proc/net/pnp", 4096, &pnp, &len) < 0)
		pnp = NULL;
	if (li_net_resolv(pnp, cl->dns, buf, sizeof(buf)) < 0)
		li_log("/etc/resolv.conf: %s", lt_errmsg());
	else if (buf[0])
		write_etc("/etc/resolv.conf", buf);
	free(pnp);
}

/* The ports to forward from vsock: the image's exposed ports and
 * lttle.ports=. */
static size_t ingress_ports(const struct li_config *cfg, const struct li_cmdline *cl,
			    uint16_t *out)
{
	size_t n = 0;
	for (size_t i = 0; i < cfg->n_ports + cl->n_ports; i++) {
		uint16_t p = i < cfg->n_ports ? cfg->ports[i] : cl->ports[i - cfg->n_ports];
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup |= out[j] == p;
		if (!dup && n < LI_MAX_PORTS)
			out[n++] = p;
	}
	return n;
}

static void unblock_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static pid_t start_forwarder(const uint16_t *ports, size_t n)
{
	if (n == 0)
		return 0;
	pid_t pid = fork();
	if (pid != 0) {
		if (pid < 0)
			li_log("cannot fork the forwarder: %s", strerror(errno));
		return pid;
	}
	unblock_signals();
	prctl(PR_SET_NAME, "lttle-fwd");
	struct li_fwd f = {.stop_fd = -1};
	for (size_t i = 0; i < n; i++) {
		int fd = li_fwd_listen_vsock(ports[i]);
		if (fd < 0) {
			li_log("no vsock ingress on port %u: %s", ports[i], lt_errmsg());
			continue;
		}
		f.listen_fd[f.n] = fd;
		f.target_port[f.n++] = ports[i];
	}
	if (f.n > 0) {
		li_log("forwarding %zu vsock port(s) to 127.0.0.1", f.n);
		li_fwd_run(&f);
		li_log("forwarder: %s", lt_errmsg());
	}
	_exit(0);
}

/* In the forked child: hook, credentials, cwd, exec. */
static void run_app(struct app *a, int fd_sock) __attribute__((noreturn));
static void run_app(struct app *a, int fd_sock)
{
	unblock_signals();
	setsid();
	if (a->seccomp) {
		int listener = li_seccomp_install();
		if (listener < 0)
			li_log("no listen() hook: %s", lt_errmsg());
		else if (li_send_fd(fd_sock, listener) < 0)
			li_log("no listen() hook: %s", lt_errmsg());
		if (listener >= 0)
			close(listener);
	}
	close(fd_sock);
	/* Like runc: a missing workdir is created (as root). */
	if (lt_mkdir_p(a->workdir, 0755) < 0)
		li_log("workdir %s: %s", a->workdir, lt_errmsg());
	if (setgroups(a->user.n_groups, a->user.groups) < 0 || setgid(a->user.gid) < 0 ||
	    setuid(a->user.uid) < 0) {
		li_log("cannot become %u:%u: %s", (unsigned)a->user.uid, (unsigned)a->user.gid,
		       strerror(errno));
		_exit(126);
	}
	if (chdir(a->workdir) < 0) {
		li_log("cannot enter workdir %s: %s", a->workdir, strerror(errno));
		_exit(126);
	}
	li_log("exec %s as %u:%u in %s", a->argv[0], (unsigned)a->user.uid,
	       (unsigned)a->user.gid, a->workdir);
	li_exec(a->argv, a->env);
	int err = errno;
	li_log("cannot exec %s: %s", a->argv[0], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return INIT_FAILED_CODE;
}

/* Reaps every exited child; returns true once the app is among them. */
static bool reap(pid_t app, pid_t fwd, int *code)
{
	bool done = false;
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == app) {
			*code = exit_code(status);
			done = true;
		} else if (pid == fwd && fwd > 0) {
			li_log("the forwarder exited (%d)", exit_code(status));
		}
	}
	return done;
}

static int supervise(pid_t app, pid_t fwd, int sfd, int listener)
{
	int code = INIT_FAILED_CODE;
	for (;;) {
		struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN},
					{.fd = listener, .events = POLLIN}};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			li_log("poll: %s", strerror(errno));
			return code;
		}
		if (pfd[1].revents & POLLIN) {
			if (li_seccomp_handle(listener, &port) < 0)
				li_log("%s", lt_errmsg());
		} else if (pfd[1].revents & (POLLHUP | POLLERR | POLLNVAL)) {
			close(listener); /* every hooked process is gone */
			listener = -1;
		}
		if (!(pfd[0].revents & POLLIN))
			continue;
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGCHLD) {
				if (reap(app, fwd, &code))
					return code;
			} else {
				kill(app, (int)si.ssi_signo);
			}
		}
	}
}

/* Stops whatever the app left behind, politely first. */
static void stop_all(void)
{
	kill(-1, SIGTERM);
	uint64_t deadline = lt_now_ns() + 2000000000ull;
	while (lt_now_ns() < deadline) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);
		if (pid < 0 && errno == ECHILD)
			return;
		if (pid == 0)
			usleep(10000);
	}
	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0)
		;
}

static void open_port(const struct li_cmdline *cl)
{
	if (cl->events) {
		port.fd = open(cl->events, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (port.fd >= 0)
			port.kind = LI_PORT_FD;
		else
			li_log("lttle.events=%s: %s", cl->events, strerror(errno));
		return;
	}
	if (li_port_open(&port) < 0)
		li_log("%s: events will not reach the VMM", lt_errmsg());
}

/* Chooses the capture hook: the kernel's (it made /proc/lttle and was not
 * turned off with lttle.hook=) or the seccomp fallback. */
static bool want_seccomp(const struct li_cmdline *cl)
{
	if (cl->hook == LI_HOOK_OFF)
		return false;
	if (cl->hook == LI_HOOK_SECCOMP)
		return true;
	return access(LT_GUEST_PROC_PATH, F_OK) != 0;
}

static int prepare_app(const struct li_cmdline *cl, struct app *a)
{
	struct li_config cfg;
	memset(a, 0, sizeof(*a));
	if (li_config_load(LT_GUEST_CONFIG_PATH, &cfg) < 0)
		return -1;
	const char *spec = cl->user ? cl->user : cfg.user;
	char *hostname = pick_hostname(cl);
	int rc = -1;
	if (!hostname)
		goto out;
	if (li_user_resolve("/etc/passwd", "/etc/group", spec, &a->user) < 0) {
		lt_fail_ctx("user");
		goto out;
	}
	setup_network(cl, hostname);
	if (li_app_argv(&cfg, cl, &a->argv) < 0 ||
	    li_app_env(&cfg, cl, &a->user, hostname, &a->env) < 0)
		goto out;
	const char *wd = cl->workdir ? cl->workdir : cfg.workdir;
	a->workdir = lt_strdup(wd && *wd ? wd : "/");
	if (!a->workdir)
		goto out;
	uint16_t ports[LI_MAX_PORTS];
	size_t n = ingress_ports(&cfg, cl, ports);
	a->forwarder = start_forwarder(ports, n);
	a->seccomp = want_seccomp(cl);
	rc = 0;
out:
	free(hostname);
	li_config_free(&cfg);
	return rc;
}

int main(void)
{
	if (getpid() != 1) {
		fprintf(stderr, "lttle-init: must run as PID 1 in an lttle guest\n");
		return 2;
	}
	struct li_cmdline cl;
	char *text = read_cmdline();
	if (!text || li_cmdline_parse(text, &cl) < 0)
		fatal();
	free(text);
	cmdline = &cl;
	setup_mounts(&cl);
	setup_stdio();
	if (!cl.log_console)
		li_log_use_kmsg();
	open_port(&cl);

	/* Blocked before the first fork, so no child's exit goes unseen;
	 * children unblock them. */
	sigset_t set;
	sigemptyset(&set);
	static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < LT_ARRAY_LEN(sigs); i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		lt_fail_errno("signalfd");
		fatal();
	}

	/* Before the app: it is listening (and snapshotted) by the time the
	 * first restore can happen. */
	li_restore_start(cl.restore_tty, &port);

	struct app a;
	if (prepare_app(&cl, &a) < 0)
		fatal();
	li_log("capture hook: %s", a.seccomp ? "seccomp" : cl.hook == LI_HOOK_OFF ? "off" : "kernel");

	/* After the forwarder's fork: only the app may hold the other end,
	 * so its exit without a listener fd reads as EOF here. */
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		lt_fail_errno("socketpair");
		fatal();
	}

	li_log("ready");
	li_port_send(&port, LT_GUEST_EV_READY, NULL);
	pid_t app = fork();
	if (app < 0) {
		lt_fail_errno("fork");
		fatal();
	}
	if (app == 0) {
		close(sp[0]);
		run_app(&a, sp[1]);
	}
	close(sp[1]);
	int listener = -1;
	if (a.seccomp && (listener = li_recv_fd(sp[0])) < 0)
		li_log("no seccomp listener from the app: %s", lt_errmsg());
	close(sp[0]);

	int code = supervise(app, a.forwarder, sfd, listener);
	li_log("app exited with %d", code);
	li_port_send(&port, LT_GUEST_EV_EXIT, "%d", code);
	stop_all();
	end_vm();
}
