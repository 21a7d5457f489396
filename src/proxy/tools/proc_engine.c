/* Process engine (test tool): see proc_engine.h. Every completion is
 * posted to the loop, so completions keep the order in which the engine
 * decided them (the contract: stop completes last). */
#include "proc_engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define list_entry(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

struct pe {
	struct lt_engine e;
	struct lt_loop *loop;
};

struct child {
	pid_t pid;
	int pidfd;
	int in_fd;  /* its stdin (shells wait for a line) */
	int out_fd; /* its stdout ("PORT n") */
};

struct pinst;

struct pconnect {
	struct pconnect *next;
	struct pinst *pi;
	int fd;
	struct lt_watch w;
	struct lt_timer t;
	lt_engine_done done;
	void *arg;
};

struct pinst {
	struct pe *pe;
	struct lt_instance *inst;
	const struct proc_app_cfg *cfg;
	struct child ch;
	struct lt_watch outw, pidw;
	bool outw_on, pidw_on;
	char out[64];
	size_t out_len;
	uint16_t port;
	bool starting;
	lt_engine_done start_done;
	void *start_arg;
	bool stopping;
	lt_engine_done stop_done;
	void *stop_arg;
	struct pconnect *connects;
};

struct shell_h {
	struct child ch;
};

/* ---- posted completions ------------------------------------------------- */

struct posted {
	lt_engine_done done;
	void *arg;
	struct lt_engine_result r;
	char msg[200];
	struct pinst *free_after; /* pinst freed once delivered */
};

static void deliver(void *p)
{
	struct posted *x = p;
	if (x->r.err)
		x->r.msg = x->msg;
	x->done(x->arg, &x->r);
	free(x->free_after);
	free(x);
}

static void post_done(struct pe *pe, lt_engine_done done, void *arg, int err, bool snap_bad,
		      int fd, struct lt_shell *shell, const char *msg, struct pinst *free_after)
{
	struct posted *x = calloc(1, sizeof(*x));
	if (!x)
		abort(); /* test tool: no way to honour the contract without memory */
	x->done = done;
	x->arg = arg;
	x->r = (struct lt_engine_result){.err = err, .snapshot_bad = snap_bad, .fd = fd,
					 .shell = shell};
	snprintf(x->msg, sizeof(x->msg), "%s", msg ? msg : "");
	x->free_after = free_after;
	if (lt_loop_post(pe->loop, deliver, x) < 0)
		abort();
}

/* ---- children ------------------------------------------------------------- */

static int spawn(const struct proc_app_cfg *cfg, const char *name, unsigned delay_ms,
		 bool wait_stdin, struct child *ch)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return lt_fail_errno("pipe");
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return lt_fail_errno("pipe");
	}
	char delay[16];
	snprintf(delay, sizeof(delay), "%u", delay_ms);
	char *argv[] = {(char *)cfg->backend, "--mode", (char *)cfg->mode, "--name", (char *)name,
			"--delay-ms", delay, "--print-port", wait_stdin ? "--wait-stdin" : NULL,
			NULL};
	pid_t pid = fork();
	if (pid < 0) {
		lt_fail_errno("fork");
		goto fail;
	}
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execv(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	ch->pid = pid;
	ch->in_fd = in[1];
	ch->out_fd = out[0];
	fcntl(ch->out_fd, F_SETFL, O_NONBLOCK);
	ch->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (ch->pidfd < 0) {
		lt_fail_errno("pidfd_open");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(ch->in_fd);
		close(ch->out_fd);
		return -1;
	}
	return 0;
fail:
	close(in[0]);
	close(in[1]);
	close(out[0]);
	close(out[1]);
	return -1;
}

static void child_reap(struct child *ch, int *status)
{
	if (ch->pid > 0) {
		int st = 0;
		waitpid(ch->pid, &st, 0);
		if (status)
			*status = st;
	}
	if (ch->pidfd >= 0)
		close(ch->pidfd);
	if (ch->in_fd >= 0)
		close(ch->in_fd);
	if (ch->out_fd >= 0)
		close(ch->out_fd);
	*ch = (struct child){.pid = 0, .pidfd = -1, .in_fd = -1, .out_fd = -1};
}

static void pinst_unwatch(struct pinst *pi)
{
	if (pi->outw_on)
		lt_watch_del(&pi->outw);
	if (pi->pidw_on)
		lt_watch_del(&pi->pidw);
	pi->outw_on = pi->pidw_on = false;
}

/* Fails every connect in flight (posted, before any stop completion). */
static void fail_connects(struct pinst *pi, const char *why)
{
	while (pi->connects) {
		struct pconnect *c = pi->connects;
		pi->connects = c->next;
		lt_watch_del(&c->w);
		lt_timer_cancel(lt_loop_clock(pi->pe->loop), &c->t);
		close(c->fd);
		post_done(pi->pe, c->done, c->arg, -1, false, -1, NULL, why, NULL);
		free(c);
	}
}

static void finish_start(struct pinst *pi, int err, bool snap_bad, const char *msg)
{
	if (!pi->starting)
		return;
	pi->starting = false;
	post_done(pi->pe, pi->start_done, pi->start_arg, err, snap_bad, -1, NULL, msg, NULL);
}

/* The child is gone: reap it and tell whoever waits. */
static void on_pidfd(struct lt_watch *w, uint32_t events)
{
	struct pinst *pi = list_entry(w, struct pinst, pidw);
	(void)events;
	pinst_unwatch(pi);
	int st = 0;
	child_reap(&pi->ch, &st);
	char why[96];
	if (WIFSIGNALED(st))
		snprintf(why, sizeof(why), "backend killed by signal %d", WTERMSIG(st));
	else
		snprintf(why, sizeof(why), "backend exited with status %d", WEXITSTATUS(st));
	if (pi->stopping) {
		fail_connects(pi, "instance stopped");
		finish_start(pi, -1, false, "instance stopped during start");
		post_done(pi->pe, pi->stop_done, pi->stop_arg, 0, false, -1, NULL, NULL, pi);
		return;
	}
	if (pi->starting) {
		/* a failed start ends the instance: no stop will come */
		finish_start(pi, -1, false, why);
		lt_instance_set_engine_data(pi->inst, NULL);
		free(pi);
		return;
	}
	fail_connects(pi, why);
	lt_instance_exited(pi->inst, why);
}

static void on_stdout(struct lt_watch *w, uint32_t events)
{
	struct pinst *pi = list_entry(w, struct pinst, outw);
	(void)events;
	ssize_t n = read(pi->ch.out_fd, pi->out + pi->out_len, sizeof(pi->out) - 1 - pi->out_len);
	if (n <= 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		lt_watch_del(&pi->outw); /* EOF: the pidfd will report the exit */
		pi->outw_on = false;
		return;
	}
	pi->out_len += (size_t)n;
	pi->out[pi->out_len] = '\0';
	char *nl = strchr(pi->out, '\n');
	if (!nl)
		return;
	unsigned port = 0;
	if (sscanf(pi->out, "PORT %u", &port) != 1 || port == 0 || port > 65535) {
		kill(pi->ch.pid, SIGKILL); /* the pidfd reports the failure */
		return;
	}
	pi->port = (uint16_t)port;
	lt_watch_del(&pi->outw);
	pi->outw_on = false;
	finish_start(pi, 0, false, NULL);
}

static int pinst_adopt(struct pinst *pi)
{
	if (lt_watch_add(pi->pe->loop, &pi->pidw, pi->ch.pidfd, EPOLLIN, on_pidfd) < 0)
		return -1;
	pi->pidw_on = true;
	if (lt_watch_add(pi->pe->loop, &pi->outw, pi->ch.out_fd, EPOLLIN, on_stdout) < 0) {
		lt_watch_del(&pi->pidw);
		pi->pidw_on = false;
		return -1;
	}
	pi->outw_on = true;
	return 0;
}

/* ---- ops ---------------------------------------------------------------------- */

static struct pinst *pinst_new(struct lt_engine *e, struct lt_instance *inst,
			       const struct lt_app_spec *app, lt_engine_done done, void *arg)
{
	struct pinst *pi = lt_calloc(1, sizeof(*pi));
	if (!pi)
		return NULL;
	pi->pe = (struct pe *)e;
	pi->inst = inst;
	pi->cfg = app->engine_cfg;
	pi->ch = (struct child){.pid = 0, .pidfd = -1, .in_fd = -1, .out_fd = -1};
	pi->starting = true;
	pi->start_done = done;
	pi->start_arg = arg;
	return pi;
}

/* Static mode: nothing to start; connect goes to a fixed address. */
static int start_static(struct pinst *pi)
{
	lt_instance_set_engine_data(pi->inst, pi);
	finish_start(pi, 0, false, NULL);
	return 0;
}

static int start_child(struct pinst *pi, unsigned delay_ms)
{
	if (spawn(pi->cfg, lt_instance_id(pi->inst), delay_ms, false, &pi->ch) < 0 ||
	    pinst_adopt(pi) < 0) {
		if (pi->ch.pid > 0) {
			kill(pi->ch.pid, SIGKILL);
			child_reap(&pi->ch, NULL);
		}
		free(pi);
		return -1;
	}
	lt_instance_set_engine_data(pi->inst, pi);
	return 0;
}

static int pe_boot(struct lt_engine *e, struct lt_instance *inst, const struct lt_app_spec *app,
		   lt_engine_done done, void *arg)
{
	struct pinst *pi = pinst_new(e, inst, app, done, arg);
	if (!pi)
		return -1;
	if (pi->cfg->static_addr[0])
		return start_static(pi);
	return start_child(pi, pi->cfg->boot_ms);
}

static int pe_restore(struct lt_engine *e, struct lt_instance *inst,
		      const struct lt_app_spec *app, struct lt_shell *shell, lt_engine_done done,
		      void *arg)
{
	struct shell_h *sh = (struct shell_h *)shell;
	char *data = NULL;
	size_t len = 0;
	if (!app->snapshot || lt_read_file(app->snapshot, 4096, &data, &len) < 0) {
		if (sh) {
			kill(sh->ch.pid, SIGKILL);
			child_reap(&sh->ch, NULL);
			free(sh);
		}
		lt_fail_ctx("snapshot %s", app->snapshot ? app->snapshot : "(none)");
		return LT_ENGINE_ESNAPSHOT;
	}
	bool ok = len == strlen(PROC_SNAPSHOT_MAGIC) && !memcmp(data, PROC_SNAPSHOT_MAGIC, len);
	free(data);
	struct pinst *pi = pinst_new(e, inst, app, done, arg);
	if (!pi)
		return -1;
	if (!ok) {
		if (sh) {
			kill(sh->ch.pid, SIGKILL);
			child_reap(&sh->ch, NULL);
			free(sh);
		}
		/* the instance never existed: complete the failed start */
		post_done(pi->pe, done, arg, -1, true, -1, NULL, "bad snapshot magic", NULL);
		free(pi);
		return 0;
	}
	if (pi->cfg->static_addr[0])
		return start_static(pi);
	if (!sh)
		return start_child(pi, pi->cfg->restore_ms);
	pi->ch = sh->ch;
	free(sh);
	char go[32];
	int n = snprintf(go, sizeof(go), "go %s\n", lt_instance_id(inst));
	if (pinst_adopt(pi) < 0 || write(pi->ch.in_fd, go, (size_t)n) != n) {
		lt_fail_errno("restore into shell");
		pinst_unwatch(pi);
		kill(pi->ch.pid, SIGKILL);
		child_reap(&pi->ch, NULL);
		free(pi);
		return -1;
	}
	lt_instance_set_engine_data(inst, pi);
	return 0;
}

static int pe_snapshot(struct lt_engine *e, struct lt_instance *inst, const char *path,
		       lt_engine_done done, void *arg)
{
	(void)inst;
	if (lt_write_file_atomic(path, PROC_SNAPSHOT_MAGIC, strlen(PROC_SNAPSHOT_MAGIC), 0644) < 0)
		return -1;
	post_done((struct pe *)e, done, arg, 0, false, -1, NULL, NULL, NULL);
	return 0;
}

static int signal_op(struct lt_engine *e, struct lt_instance *inst, int sig,
		     lt_engine_done done, void *arg)
{
	struct pinst *pi = lt_instance_engine_data(inst);
	if (!pi)
		return lt_fail("%s has no process", lt_instance_id(inst));
	if (pi->ch.pid > 0 && kill(pi->ch.pid, sig) < 0)
		return lt_fail_errno("kill %d", (int)pi->ch.pid);
	post_done((struct pe *)e, done, arg, 0, false, -1, NULL, NULL, NULL);
	return 0;
}

static int pe_pause(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	return signal_op(e, inst, SIGSTOP, done, arg);
}

static int pe_resume(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done,
		     void *arg)
{
	return signal_op(e, inst, SIGCONT, done, arg);
}

static void connect_end(struct pconnect *c, int err, const char *msg)
{
	struct pinst *pi = c->pi;
	for (struct pconnect **pp = &pi->connects; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	lt_watch_del(&c->w);
	lt_timer_cancel(lt_loop_clock(pi->pe->loop), &c->t);
	if (err)
		close(c->fd);
	post_done(pi->pe, c->done, c->arg, err, false, err ? -1 : c->fd, NULL, msg, NULL);
	free(c);
}

static void connect_ready(struct lt_watch *w, uint32_t events)
{
	struct pconnect *c = list_entry(w, struct pconnect, w);
	(void)events;
	int soerr = 0;
	socklen_t l = sizeof(soerr);
	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
	if (soerr)
		connect_end(c, -1, strerror(soerr));
	else
		connect_end(c, 0, NULL);
}

static void connect_timeout(struct lt_timer *t)
{
	struct pconnect *c = list_entry(t, struct pconnect, t);
	connect_end(c, -1, "connect timed out");
}

static int pe_connect(struct lt_engine *e, struct lt_instance *inst, uint16_t guest_port,
		      uint64_t timeout, lt_engine_done done, void *arg)
{
	(void)guest_port; /* each backend serves one port */
	(void)e;
	struct pinst *pi = lt_instance_engine_data(inst);
	if (!pi)
		return lt_fail("%s has no process", lt_instance_id(inst));
	struct sockaddr_storage ss;
	socklen_t sl;
	char addr[sizeof(pi->cfg->static_addr) + 8];
	if (pi->cfg->static_addr[0])
		snprintf(addr, sizeof(addr), "%s", pi->cfg->static_addr);
	else
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", pi->port);
	if (!strncmp(addr, "unix:", 5)) {
		struct sockaddr_un *su = (struct sockaddr_un *)&ss;
		memset(su, 0, sizeof(*su));
		su->sun_family = AF_UNIX;
		if (strlen(addr + 5) >= sizeof(su->sun_path))
			return lt_fail("unix path too long: %s", addr + 5);
		strcpy(su->sun_path, addr + 5);
		sl = sizeof(*su);
	} else if (lt_parse_listen_addr(addr, &ss, &sl) < 0) {
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lt_fail_errno("socket");
	struct pconnect *c = lt_calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -1;
	}
	c->pi = pi;
	c->fd = fd;
	c->done = done;
	c->arg = arg;
	lt_timer_init(&c->t, connect_timeout);
	int rc = connect(fd, (struct sockaddr *)&ss, sl);
	if (rc < 0 && errno != EINPROGRESS) {
		int err = errno;
		close(fd);
		free(c);
		errno = err;
		return lt_fail_errno("connect %s", addr);
	}
	if (lt_watch_add(pi->pe->loop, &c->w, fd, EPOLLOUT, connect_ready) < 0) {
		close(fd);
		free(c);
		return -1;
	}
	c->next = pi->connects;
	pi->connects = c;
	lt_timer_arm_in(lt_loop_clock(pi->pe->loop), &c->t, timeout);
	return 0;
}

static int pe_stop(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	struct pinst *pi = lt_instance_engine_data(inst);
	if (!pi) { /* its failed start is already on its way */
		post_done((struct pe *)e, done, arg, 0, false, -1, NULL, NULL, NULL);
		return 0;
	}
	pi->stopping = true;
	pi->stop_done = done;
	pi->stop_arg = arg;
	if (pi->ch.pid > 0) {
		kill(pi->ch.pid, SIGKILL);
		kill(pi->ch.pid, SIGCONT);
		return 0; /* on_pidfd completes */
	}
	fail_connects(pi, "instance stopped");
	finish_start(pi, -1, false, "instance stopped during start");
	post_done(pi->pe, done, arg, 0, false, -1, NULL, NULL, pi);
	return 0;
}

static int pe_shell_create(struct lt_engine *e, const struct lt_app_spec *app,
			   lt_engine_done done, void *arg)
{
	const struct proc_app_cfg *cfg = app->engine_cfg;
	if (cfg->static_addr[0])
		return lt_fail("static backends have no shells");
	struct shell_h *sh = lt_calloc(1, sizeof(*sh));
	if (!sh)
		return -1;
	if (spawn(cfg, "shell", cfg->restore_ms, true, &sh->ch) < 0) {
		free(sh);
		return -1;
	}
	post_done((struct pe *)e, done, arg, 0, false, -1, (struct lt_shell *)sh, NULL, NULL);
	return 0;
}

static void pe_shell_destroy(struct lt_engine *e, struct lt_shell *shell)
{
	struct shell_h *sh = (struct shell_h *)shell;
	(void)e;
	kill(sh->ch.pid, SIGKILL);
	child_reap(&sh->ch, NULL);
	free(sh);
}

static const struct lt_engine_ops proc_ops = {
	.name = "proc",
	.boot = pe_boot,
	.restore = pe_restore,
	.snapshot = pe_snapshot,
	.pause = pe_pause,
	.resume = pe_resume,
	.connect = pe_connect,
	.stop = pe_stop,
	.shell_create = pe_shell_create,
	.shell_destroy = pe_shell_destroy,
};

struct lt_engine *proc_engine_new(struct lt_loop *loop)
{
	struct pe *pe = lt_calloc(1, sizeof(*pe));
	if (!pe)
		return NULL;
	pe->e.ops = &proc_ops;
	pe->e.priv = pe;
	pe->loop = loop;
	return &pe->e;
}

void proc_engine_free(struct lt_engine *e)
{
	free(e);
}

int proc_instance_pid(const struct lt_instance *inst)
{
	const struct pinst *pi = lt_instance_engine_data(inst);
	return pi ? (int)pi->ch.pid : 0;
}
