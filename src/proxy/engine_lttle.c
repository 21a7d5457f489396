/* The lttle engine (see engine_lttle.h).
 *
 * One lttle-vmhost process per VM ("lvm"): an instance (booted or
 * restored) or a shell. Everything runs on the loop: the control channel
 * is a socketpair handed to the process as --control-fd 3 (so it works
 * from the first instant, no socket file to wait for), the process's exit
 * is watched through a pidfd, vsock connects are non-blocking unix-socket
 * handshakes. Completions are posted (lt_loop_post), in order, so they
 * never run inside an op and the stop of an instance is delivered after
 * everything before it. */
#include "proxy/engine_lttle.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define LE_DEFAULT_MEM (256ull << 20)
#define LE_LINE_MAX (64 * 1024)
#define LE_EXIT_BAD_SNAPSHOT 65 /* lttle-vmhost restore: unusable snapshot */

/* ---- per-app config ------------------------------------------------------ */

struct lcfg {
	char *kernel, *rootfs, *initrd, *cmdline, *trigger;
	uint64_t mem;
	uint32_t cpus;
};

void lt_lttle_app_free(void *p)
{
	struct lcfg *c = p;
	if (!c)
		return;
	free(c->kernel);
	free(c->rootfs);
	free(c->initrd);
	free(c->cmdline);
	free(c->trigger);
	free(c);
}

static bool dup_opt(char **dst, const char *src)
{
	*dst = src ? lt_strdup(src) : NULL;
	return !src || *dst;
}

void *lt_lttle_app_new(const struct lt_lttle_app *a)
{
	if (!a->kernel || !*a->kernel) {
		lt_fail("lttle engine: an app needs a kernel");
		return NULL;
	}
	if (a->mem && (a->mem < (4ull << 20) || a->mem % (1ull << 20))) {
		lt_fail("lttle engine: memory must be whole MiB, at least 4");
		return NULL;
	}
	if (a->cpus > 64) {
		lt_fail("lttle engine: at most 64 vCPUs");
		return NULL;
	}
	struct lcfg *c = lt_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->mem = a->mem ? a->mem : LE_DEFAULT_MEM;
	c->cpus = a->cpus ? a->cpus : 1;
	if (!dup_opt(&c->kernel, a->kernel) || !dup_opt(&c->rootfs, a->rootfs) ||
	    !dup_opt(&c->initrd, a->initrd) || !dup_opt(&c->cmdline, a->cmdline) ||
	    !dup_opt(&c->trigger, a->trigger ? a->trigger : "first-listen")) {
		lt_lttle_app_free(c);
		return NULL;
	}
	return c;
}

/* ---- engine and VM processes ---------------------------------------------- */

struct le {
	struct lt_engine pub;
	struct lt_loop *loop;
	char *run_dir, *vmhost, *memory, *cache_dir;
	uint64_t stop_timeout;
	bool no_seccomp;
	struct lvm *vms;
	uint64_t seq;
};

enum lstate { L_STARTING, L_SHELL, L_LIVE, L_DEAD };
enum lstart { S_NONE, S_BOOT, S_RESTORE, S_SHELL };

struct lreq {
	struct lreq *next;
	void (*cb)(struct lvm *vm, json_t *reply, const char *err, void *arg);
	void *arg;
};

struct lconn;

struct lvm {
	struct lvm *next;
	struct le *e;
	struct lt_instance *inst; /* NULL while a shell */
	char label[96];
	char dir[512], vsock[600], serial[600], log[600];
	enum lstate state;
	enum lstart start_kind;
	lt_engine_done start_done; /* boot/restore/shell_create pending */
	void *start_arg;
	lt_engine_done stop_done; /* stop pending */
	void *stop_arg;
	bool stopping, at_trigger;
	bool orphan; /* nobody refers to it: free when its process is gone */
	int pid, pidfd, cfd;
	struct lt_watch pidw, cw;
	bool pidw_on, cw_on;
	char in[LE_LINE_MAX];
	size_t in_len;
	struct lt_buf out;
	struct lreq *rq_head, *rq_tail;
	struct lconn *conns;
	struct lt_timer kill_timer;
	char reason[320];
};

#define LE(e) ((struct le *)(e)->priv)

/* ---- completions ------------------------------------------------------------ */

struct post {
	lt_engine_done done;
	void *arg;
	struct lt_engine_result r;
	char msg[400];
};

static void run_post(void *p)
{
	struct post *q = p;
	q->r.msg = q->msg[0] ? q->msg : NULL;
	q->done(q->arg, &q->r);
	free(q);
}

static void finish(struct le *e, lt_engine_done done, void *arg, int err, const char *msg,
		   int fd, struct lt_shell *shell, bool bad)
{
	struct post *q = lt_calloc(1, sizeof(*q));
	if (!q) {
		if (fd >= 0)
			close(fd);
		return; /* out of memory: the op's timeout cleans up */
	}
	q->done = done;
	q->arg = arg;
	q->r.err = err;
	q->r.fd = fd;
	q->r.shell = shell;
	q->r.snapshot_bad = bad;
	snprintf(q->msg, sizeof(q->msg), "%s", msg ? msg : "");
	if (lt_loop_post(e->loop, run_post, q) < 0) {
		if (fd >= 0)
			close(fd);
		free(q);
	}
}

/* ---- the control channel ------------------------------------------------------ */

static void vm_gone(struct lvm *vm, const char *why, bool bad);

static void ignore_reply(struct lvm *vm, json_t *r, const char *err, void *arg)
{
	(void)vm;
	(void)r;
	(void)err;
	(void)arg;
}

static void ctl_flush(struct lvm *vm)
{
	while (vm->out.len) {
		ssize_t n = send(vm->cfd, vm->out.data, vm->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return; /* the read side reports the end */
		memmove(vm->out.data, vm->out.data + n, vm->out.len - (size_t)n);
		vm->out.len -= (size_t)n;
	}
	if (vm->cw_on)
		lt_watch_mod(&vm->cw, EPOLLIN | (vm->out.len ? EPOLLOUT : 0));
}

/* Sends one command (o is stolen); cb gets the reply (or an error). */
static int send_cmd(struct lvm *vm, json_t *o,
		    void (*cb)(struct lvm *, json_t *, const char *, void *), void *arg)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	struct lreq *r = s ? lt_calloc(1, sizeof(*r)) : NULL;
	if (!r || vm->cfd < 0 || lt_buf_append(&vm->out, s, strlen(s)) < 0 ||
	    lt_buf_append(&vm->out, "\n", 1) < 0) {
		free(s);
		free(r);
		return lt_fail("lttle engine: %s: control channel unavailable", vm->label);
	}
	free(s);
	r->cb = cb;
	r->arg = arg;
	if (vm->rq_tail)
		vm->rq_tail->next = r;
	else
		vm->rq_head = r;
	vm->rq_tail = r;
	ctl_flush(vm);
	return 0;
}

static void fail_requests(struct lvm *vm, const char *why)
{
	while (vm->rq_head) {
		struct lreq *r = vm->rq_head;
		vm->rq_head = r->next;
		if (!vm->rq_head)
			vm->rq_tail = NULL;
		r->cb(vm, NULL, why, r->arg);
		free(r);
	}
}

static void start_complete(struct lvm *vm, int err, const char *msg, bool bad)
{
	lt_engine_done d = vm->start_done;
	void *arg = vm->start_arg;
	enum lstart kind = vm->start_kind;
	vm->start_done = NULL;
	vm->start_kind = S_NONE;
	if (!d)
		return;
	if (err == 0) {
		vm->state = kind == S_SHELL ? L_SHELL : L_LIVE;
		finish(vm->e, d, arg, 0, NULL, -1, kind == S_SHELL ? (struct lt_shell *)vm : NULL,
		       false);
	} else {
		/* A failed start is cleaned up here; the pool sends no stop. */
		if (vm->inst)
			lt_instance_set_engine_data(vm->inst, NULL);
		vm->inst = NULL;
		finish(vm->e, d, arg, -1, msg, -1, NULL, bad);
	}
}

static void on_event(struct lvm *vm, json_t *o)
{
	const char *ev = json_string_value(json_object_get(o, "event"));
	if (!ev)
		return;
	if (!strcmp(ev, "triggered") && vm->start_kind == S_BOOT) {
		vm->at_trigger = true;
		start_complete(vm, 0, NULL, false);
	} else if (!strcmp(ev, "shell-ready") && vm->start_kind == S_SHELL) {
		start_complete(vm, 0, NULL, false);
	} else if (!strcmp(ev, "running") && vm->start_kind == S_RESTORE) {
		start_complete(vm, 0, NULL, false);
	} else if ((!strcmp(ev, "hold") || !strcmp(ev, "release")) && vm->inst &&
		   vm->state == L_LIVE) {
		lt_instance_set_hold(vm->inst, ev[0] == 'h');
	} else if (!strcmp(ev, "stopped")) {
		const char *m = json_string_value(json_object_get(o, "message"));
		const char *r = json_string_value(json_object_get(o, "reason"));
		snprintf(vm->reason, sizeof(vm->reason), "VM stopped (%s%s%s)", r ? r : "?",
			 m ? ": " : "", m ? m : "");
	} else if (!strcmp(ev, "restore-failed")) {
		const char *m = json_string_value(json_object_get(o, "error"));
		snprintf(vm->reason, sizeof(vm->reason), "restore failed: %s", m ? m : "?");
	}
}

static void on_line(struct lvm *vm, char *line)
{
	json_t *o = json_loads(line, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return; /* the VM host speaks JSON; ignore noise */
	}
	if (json_object_get(o, "event")) {
		on_event(vm, o);
	} else if (vm->rq_head) {
		struct lreq *r = vm->rq_head;
		vm->rq_head = r->next;
		if (!vm->rq_head)
			vm->rq_tail = NULL;
		const char *err = json_is_true(json_object_get(o, "ok"))
					  ? NULL
					  : json_string_value(json_object_get(o, "error"));
		if (!err && !json_is_true(json_object_get(o, "ok")))
			err = "command failed";
		r->cb(vm, o, err, r->arg);
		free(r);
	}
	json_decref(o);
}

static void on_ctl(struct lt_watch *w, uint32_t events)
{
	struct lvm *vm = (struct lvm *)((char *)w - offsetof(struct lvm, cw));
	if (events & EPOLLOUT)
		ctl_flush(vm);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t n = recv(vm->cfd, vm->in + vm->in_len, sizeof(vm->in) - vm->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || vm->in_len + (size_t)n >= sizeof(vm->in)) {
		/* The process is ending (the pidfd tells) or misbehaving. */
		lt_watch_del(&vm->cw);
		vm->cw_on = false;
		close(vm->cfd);
		vm->cfd = -1;
		fail_requests(vm, "the VM process closed its control channel");
		return;
	}
	vm->in_len += (size_t)n;
	size_t start = 0;
	for (size_t i = 0; i < vm->in_len; i++) {
		if (vm->in[i] != '\n')
			continue;
		vm->in[i] = '\0';
		on_line(vm, vm->in + start);
		if (vm->cfd < 0)
			return;
		start = i + 1;
	}
	memmove(vm->in, vm->in + start, vm->in_len - start);
	vm->in_len -= start;
}

/* ---- vsock connects ---------------------------------------------------------------- */

struct lconn {
	struct lconn *next;
	struct lvm *vm;
	int fd;
	uint16_t port;
	struct lt_watch w;
	bool w_on;
	struct lt_timer timer, kick;
	lt_engine_done done;
	void *arg;
};

static void conn_end(struct lconn *c, int err, const char *msg)
{
	struct lvm *vm = c->vm;
	for (struct lconn **p = &vm->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	if (c->w_on)
		lt_watch_del(&c->w);
	lt_timer_cancel(lt_loop_clock(vm->e->loop), &c->timer);
	lt_timer_cancel(lt_loop_clock(vm->e->loop), &c->kick);
	int fd = c->fd;
	if (err && fd >= 0)
		close(fd);
	finish(vm->e, c->done, c->arg, err, msg, err ? -1 : fd, NULL, false);
	free(c);
}

static void on_conn(struct lt_watch *w, uint32_t events)
{
	struct lconn *c = (struct lconn *)((char *)w - offsetof(struct lconn, w));
	(void)events;
	char buf[64];
	ssize_t n = recv(c->fd, buf, sizeof(buf) - 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_end(c, -1, "the VM's vsock socket closed before OK");
		return;
	}
	buf[n] = '\0';
	char *nl = memchr(buf, '\n', (size_t)n);
	if (!nl) {
		if (n >= (ssize_t)sizeof(buf) - 1)
			conn_end(c, -1, "bad vsock handshake reply");
		return;
	}
	/* Consume exactly the handshake line: what follows is the stream. */
	size_t len = (size_t)(nl - buf) + 1;
	if (recv(c->fd, buf, len, MSG_DONTWAIT) != (ssize_t)len) {
		conn_end(c, -1, "vsock handshake read failed");
		return;
	}
	buf[len - 1] = '\0';
	if (strncmp(buf, "OK ", 3)) {
		char m[128];
		snprintf(m, sizeof(m), "guest port %u refused (%.60s)", c->port, buf);
		conn_end(c, -1, m);
		return;
	}
	conn_end(c, 0, NULL);
}

static void on_conn_timeout(struct lt_timer *t)
{
	struct lconn *c = (struct lconn *)((char *)t - offsetof(struct lconn, timer));
	conn_end(c, -1, "vsock connect timed out");
}

static void conn_begin(struct lconn *c);
static void on_conn_kick(struct lt_timer *t)
{
	conn_begin((struct lconn *)((char *)t - offsetof(struct lconn, kick)));
}

static void conn_begin(struct lconn *c)
{
	struct lvm *vm = c->vm;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, vm->vsock, strlen(vm->vsock) + 1); /* length checked in vm_new */
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", c->port);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    send(c->fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		char m[700];
		snprintf(m, sizeof(m), "vsock %.600s: %s", vm->vsock, strerror(errno));
		conn_end(c, -1, m);
		return;
	}
	if (lt_watch_add(vm->e->loop, &c->w, c->fd, EPOLLIN, on_conn) < 0) {
		conn_end(c, -1, "cannot watch the vsock connection");
		return;
	}
	c->w_on = true;
}

/* ---- process life -------------------------------------------------------------------- */

static void vm_free(struct lvm *vm)
{
	struct le *e = vm->e;
	for (struct lvm **p = &e->vms; *p; p = &(*p)->next)
		if (*p == vm) {
			*p = vm->next;
			break;
		}
	while (vm->conns)
		conn_end(vm->conns, -1, "the VM is gone");
	fail_requests(vm, "the VM is gone");
	lt_timer_cancel(lt_loop_clock(e->loop), &vm->kill_timer);
	if (vm->cw_on)
		lt_watch_del(&vm->cw);
	if (vm->pidw_on)
		lt_watch_del(&vm->pidw);
	if (vm->cfd >= 0)
		close(vm->cfd);
	if (vm->pidfd >= 0)
		close(vm->pidfd);
	if (vm->pid > 0) {
		kill(vm->pid, SIGKILL);
		waitpid(vm->pid, NULL, 0);
	}
	lt_buf_free(&vm->out);
	/* The per-VM directory: sockets and logs of a gone VM. */
	unlink(vm->vsock);
	unlink(vm->serial);
	unlink(vm->log);
	rmdir(vm->dir);
	free(vm);
}

/* Last lines of the VM host's own log: the reason a start failed. */
static void log_tail(struct lvm *vm, char *out, size_t n)
{
	char buf[512];
	int fd = open(vm->log, O_RDONLY | O_CLOEXEC);
	out[0] = '\0';
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t r = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (r <= 0)
		return;
	buf[r] = '\0';
	while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == '\r'))
		buf[--r] = '\0';
	char *last = strrchr(buf, '\n');
	const char *l = last ? last + 1 : buf;
	size_t k = strlen(l) < n - 1 ? strlen(l) : n - 1;
	memcpy(out, l, k);
	out[k] = '\0';
}

static void on_exit_fd(struct lt_watch *w, uint32_t events)
{
	struct lvm *vm = (struct lvm *)((char *)w - offsetof(struct lvm, pidw));
	(void)events;
	int st = 0;
	pid_t r = waitpid(vm->pid, &st, WNOHANG);
	if (r == 0)
		return;
	vm->pid = -1;
	lt_watch_del(&vm->pidw);
	vm->pidw_on = false;
	char why[400], tail[256];
	log_tail(vm, tail, sizeof(tail));
	if (WIFEXITED(st))
		snprintf(why, sizeof(why), "VM process exited with %d%s%s", WEXITSTATUS(st),
			 tail[0] ? ": " : "", tail);
	else
		snprintf(why, sizeof(why), "VM process killed by signal %d", WTERMSIG(st));
	bool bad = vm->start_kind == S_RESTORE && WIFEXITED(st) &&
		   WEXITSTATUS(st) == LE_EXIT_BAD_SNAPSHOT;
	vm_gone(vm, vm->reason[0] && !vm->start_done ? vm->reason : why, bad);
}

/* The process is gone: fail what waits, report, free when nothing else
 * will refer to it. */
static void vm_gone(struct lvm *vm, const char *why, bool bad)
{
	while (vm->conns)
		conn_end(vm->conns, -1, why);
	fail_requests(vm, why);
	enum lstate was = vm->state;
	vm->state = L_DEAD;
	if (vm->start_done) {
		start_complete(vm, -1, why, bad);
		vm_free(vm);
		return;
	}
	if (vm->stop_done) {
		lt_engine_done d = vm->stop_done;
		vm->stop_done = NULL;
		finish(vm->e, d, vm->stop_arg, 0, NULL, -1, NULL, false);
		vm_free(vm);
		return;
	}
	if (!vm->inst && vm->orphan) {
		vm_free(vm);
		return;
	}
	if (!vm->inst) {
		/* A dead shell stays until the pool hands it to restore (which
		 * then starts a fresh process) or to shell_destroy. */
		return;
	}
	if (vm->inst && was == L_LIVE)
		lt_instance_exited(vm->inst, why);
	/* The pool still calls stop; it completes at once then. */
}

static void on_kill_timer(struct lt_timer *t)
{
	struct lvm *vm = (struct lvm *)((char *)t - offsetof(struct lvm, kill_timer));
	if (vm->pid > 0)
		kill(vm->pid, SIGKILL);
}

static struct lvm *vm_new(struct le *e, const char *label)
{
	struct lvm *vm = lt_calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->e = e;
	vm->pid = vm->pidfd = vm->cfd = -1;
	lt_timer_init(&vm->kill_timer, on_kill_timer);
	snprintf(vm->label, sizeof(vm->label), "%s", label);
	snprintf(vm->dir, sizeof(vm->dir), "%s/%s.%llu", e->run_dir, label,
		 (unsigned long long)++e->seq);
	snprintf(vm->vsock, sizeof(vm->vsock), "%s/v.sock", vm->dir);
	snprintf(vm->serial, sizeof(vm->serial), "%s/serial.log", vm->dir);
	snprintf(vm->log, sizeof(vm->log), "%s/vmhost.log", vm->dir);
	if (strlen(vm->vsock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		lt_fail("lttle engine: run directory path too long for unix sockets: %s", vm->dir);
		free(vm);
		return NULL;
	}
	if (lt_mkdir_p(vm->dir, 0700) < 0) {
		free(vm);
		return NULL;
	}
	vm->next = e->vms;
	e->vms = vm;
	return vm;
}

/* Starts lttle-vmhost with argv (NULL-terminated, argv[0] set here) and
 * the control socketpair on fd 3. */
static int vm_spawn(struct lvm *vm, const char **argv)
{
	struct le *e = vm->e;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return lt_fail_errno("socketpair");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, vm->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	argv[0] = "lttle-vmhost";
	pid_t pid;
	int rc = posix_spawn(&pid, e->vmhost, &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(sv[1]);
	if (rc != 0) {
		close(sv[0]);
		errno = rc;
		return lt_fail_errno("lttle engine: cannot start %s", e->vmhost);
	}
	vm->pid = pid;
	vm->cfd = sv[0];
	fcntl(vm->cfd, F_SETFL, O_NONBLOCK);
	vm->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (vm->pidfd < 0 || lt_watch_add(e->loop, &vm->pidw, vm->pidfd, EPOLLIN, on_exit_fd) < 0 ||
	    lt_watch_add(e->loop, &vm->cw, vm->cfd, EPOLLIN, on_ctl) < 0)
		return lt_fail_errno("lttle engine: watching the VM process");
	vm->pidw_on = vm->cw_on = true;
	/* Events first: every later reply and event is ours. */
	json_t *o = json_pack("{s:s}", "cmd", "events");
	return send_cmd(vm, o, ignore_reply, NULL);
}

/* ---- ops -------------------------------------------------------------------------- */

static char *mib(uint64_t bytes, char *buf, size_t n)
{
	snprintf(buf, n, "%llu", (unsigned long long)(bytes >> 20));
	return buf;
}

#define ARGS_MAX 48

/* Memory strategy and cache: a restore's and a shell's. */
static void memory_args(struct le *e, const char **v, int *n)
{
	v[(*n)++] = "--memory";
	v[(*n)++] = e->memory;
	if (e->cache_dir) {
		v[(*n)++] = "--cache-dir";
		v[(*n)++] = e->cache_dir;
	}
}

/* Appends what every VM process takes and starts it; frees vm on failure. */
static int spawn_vm(struct le *e, struct lvm *vm, const char **v, int n)
{
	v[n++] = "--control-fd";
	v[n++] = "3";
	v[n++] = "--vsock";
	v[n++] = vm->vsock;
	v[n++] = "--serial-log";
	v[n++] = vm->serial;
	if (e->no_seccomp)
		v[n++] = "--no-seccomp";
	v[n] = NULL;
	if (vm_spawn(vm, v) < 0) {
		vm_free(vm);
		return -1;
	}
	return 0;
}

/* The start the VM process now owes: done runs once it completes. inst
 * is NULL for a shell (it serves no instance yet). */
static void expect_start(struct lvm *vm, struct lt_instance *inst, enum lstart kind,
			 lt_engine_done done, void *arg)
{
	vm->start_kind = kind;
	vm->start_done = done;
	vm->start_arg = arg;
	if (inst) {
		vm->inst = inst;
		lt_instance_set_engine_data(inst, vm);
	}
}

static int le_boot(struct lt_engine *pe, struct lt_instance *inst, const struct lt_app_spec *app,
		   lt_engine_done done, void *arg)
{
	struct le *e = LE(pe);
	struct lcfg *c = app->engine_cfg;
	struct lvm *vm = vm_new(e, lt_instance_id(inst));
	if (!vm)
		return -1;
	char m[32], cpus[16];
	snprintf(cpus, sizeof(cpus), "%u", c->cpus);
	const char *v[ARGS_MAX];
	int n = 1;
	v[n++] = "boot";
	v[n++] = "--kernel";
	v[n++] = c->kernel;
	v[n++] = "--mem";
	v[n++] = mib(c->mem, m, sizeof(m));
	v[n++] = "--cpus";
	v[n++] = cpus;
	v[n++] = "--snapshot-on";
	v[n++] = c->trigger;
	if (c->cmdline) {
		v[n++] = "--cmdline";
		v[n++] = c->cmdline;
	}
	if (c->initrd) {
		v[n++] = "--initrd";
		v[n++] = c->initrd;
	}
	if (c->rootfs) {
		v[n++] = "--rootfs";
		v[n++] = c->rootfs;
	}
	if (spawn_vm(e, vm, v, n) < 0)
		return -1;
	expect_start(vm, inst, S_BOOT, done, arg);
	return 0;
}

static void restore_reply(struct lvm *vm, json_t *r, const char *err, void *arg)
{
	(void)r;
	(void)arg;
	if (err && vm->start_done) {
		bool bad = r && json_is_true(json_object_get(r, "snapshot_bad"));
		char msg[400];
		snprintf(msg, sizeof(msg), "restore in shell: %s", err);
		start_complete(vm, -1, msg, bad);
		/* The shell ends itself after a failed restore; free it then. */
		if (vm->inst)
			lt_instance_set_engine_data(vm->inst, NULL);
		vm->inst = NULL;
		vm->orphan = true;
	} else if (!err && vm->start_done) {
		start_complete(vm, 0, NULL, false);
	}
}

static int le_restore(struct lt_engine *pe, struct lt_instance *inst,
		      const struct lt_app_spec *app, struct lt_shell *shell, lt_engine_done done,
		      void *arg)
{
	struct le *e = LE(pe);
	if (!app->snapshot) {
		if (shell)
			pe->ops->shell_destroy(pe, shell);
		return lt_fail("lttle engine: app %s has no snapshot", app->name);
	}
	if (shell && (((struct lvm *)shell)->state != L_SHELL || ((struct lvm *)shell)->cfd < 0)) {
		/* The shell died while it waited: restore in a fresh process. */
		vm_free((struct lvm *)shell);
		shell = NULL;
	}
	if (shell) {
		struct lvm *vm = (struct lvm *)shell;
		json_t *o = json_pack("{s:s,s:s,s:s}", "cmd", "restore", "path", app->snapshot,
				      "memory", e->memory);
		vm->state = L_STARTING;
		if (send_cmd(vm, o, restore_reply, NULL) < 0) {
			vm_free(vm);
			return -1;
		}
		snprintf(vm->label, sizeof(vm->label), "%s", lt_instance_id(inst));
		expect_start(vm, inst, S_RESTORE, done, arg);
		return 0;
	}
	struct lvm *vm = vm_new(e, lt_instance_id(inst));
	if (!vm)
		return -1;
	const char *v[ARGS_MAX];
	int n = 1;
	v[n++] = "restore";
	v[n++] = app->snapshot;
	memory_args(e, v, &n);
	if (spawn_vm(e, vm, v, n) < 0)
		return -1;
	expect_start(vm, inst, S_RESTORE, done, arg);
	return 0;
}

static int le_shell_create(struct lt_engine *pe, const struct lt_app_spec *app,
			   lt_engine_done done, void *arg)
{
	struct le *e = LE(pe);
	if (!app->snapshot)
		return lt_fail("lttle engine: app %s has no snapshot for a shell", app->name);
	char label[80];
	snprintf(label, sizeof(label), "%s-shell", app->name);
	struct lvm *vm = vm_new(e, label);
	if (!vm)
		return -1;
	const char *v[ARGS_MAX];
	int n = 1;
	v[n++] = "vmm-shell";
	v[n++] = "--like";
	v[n++] = app->snapshot;
	memory_args(e, v, &n);
	if (spawn_vm(e, vm, v, n) < 0)
		return -1;
	expect_start(vm, NULL, S_SHELL, done, arg);
	return 0;
}

static void le_shell_destroy(struct lt_engine *pe, struct lt_shell *shell)
{
	(void)pe;
	struct lvm *vm = (struct lvm *)shell;
	if (vm)
		vm_free(vm); /* kills and reaps: a shell never ran a guest */
}

struct cmdop {
	lt_engine_done done;
	void *arg;
	const char *what;
};

static void cmd_reply(struct lvm *vm, json_t *r, const char *err, void *arg)
{
	(void)r;
	struct cmdop *op = arg;
	char msg[400];
	if (err)
		snprintf(msg, sizeof(msg), "%s %s: %s", op->what, vm->label, err);
	finish(vm->e, op->done, op->arg, err ? -1 : 0, err ? msg : NULL, -1, NULL, false);
	free(op);
}

static int simple_cmd(struct lt_instance *inst, json_t *o, const char *what, lt_engine_done done,
		      void *arg)
{
	struct lvm *vm = lt_instance_engine_data(inst);
	struct cmdop *op = lt_calloc(1, sizeof(*op));
	if (!vm || vm->state != L_LIVE || !op) {
		json_decref(o);
		free(op);
		return op ? lt_fail("lttle engine: instance %s is not running", lt_instance_id(inst))
			  : -1;
	}
	op->done = done;
	op->arg = arg;
	op->what = what;
	if (send_cmd(vm, o, cmd_reply, op) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

static int le_snapshot(struct lt_engine *pe, struct lt_instance *inst, const char *path,
		       lt_engine_done done, void *arg)
{
	(void)pe;
	struct lvm *vm = lt_instance_engine_data(inst);
	int rc = simple_cmd(inst,
			    json_pack("{s:s,s:s,s:b}", "cmd", "snapshot", "path", path,
				      "keep_running", 1),
			    "snapshot", done, arg);
	if (rc == 0 && vm)
		vm->at_trigger = false; /* the host resumes after the capture */
	return rc;
}

static int le_pause(struct lt_engine *pe, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	(void)pe;
	struct lvm *vm = lt_instance_engine_data(inst);
	int rc = simple_cmd(inst, json_pack("{s:s}", "cmd", "pause"), "pause", done, arg);
	if (rc == 0 && vm)
		vm->at_trigger = false;
	return rc;
}

static void resume_reply(struct lvm *vm, json_t *r, const char *err, void *arg)
{
	(void)r;
	(void)arg;
	if (err && vm->pid > 0) {
		/* Already reported as resumed: end it, and the pool replaces it. */
		lt_warn("lttle engine: resume %s failed: %s; stopping it", vm->label, err);
		kill(vm->pid, SIGKILL);
	}
}

/* Pipelined: done follows the send, not the reply. The control channel is
 * ordered (a later pause or stop comes after the resume), and the wake's
 * vsock connect then overlaps the VM host's handling of the resume
 * instead of waiting a round trip for it. A failed resume ends the VM. */
static int le_resume(struct lt_engine *pe, struct lt_instance *inst, lt_engine_done done,
		     void *arg)
{
	struct le *e = LE(pe);
	struct lvm *vm = lt_instance_engine_data(inst);
	if (!vm || vm->state != L_LIVE)
		return lt_fail("lttle engine: instance %s is not running", lt_instance_id(inst));
	if (send_cmd(vm, json_pack("{s:s}", "cmd", "resume"), resume_reply, NULL) < 0)
		return -1;
	finish(e, done, arg, 0, NULL, -1, NULL, false);
	return 0;
}

static void resumed_then_connect(struct lvm *vm, json_t *r, const char *err, void *arg)
{
	(void)r;
	struct lconn *c = arg;
	(void)vm;
	if (err) {
		conn_end(c, -1, err);
		return;
	}
	conn_begin(c);
}

static int le_connect(struct lt_engine *pe, struct lt_instance *inst, uint16_t port,
		      uint64_t timeout_ns, lt_engine_done done, void *arg)
{
	struct le *e = LE(pe);
	struct lvm *vm = lt_instance_engine_data(inst);
	if (!vm || vm->state != L_LIVE)
		return lt_fail("lttle engine: instance %s is not running", lt_instance_id(inst));
	struct lconn *c = lt_calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->vm = vm;
	c->fd = -1;
	c->port = port;
	c->done = done;
	c->arg = arg;
	lt_timer_init(&c->timer, on_conn_timeout);
	lt_timer_init(&c->kick, on_conn_kick);
	c->next = vm->conns;
	vm->conns = c;
	lt_timer_arm_in(lt_loop_clock(e->loop), &c->timer, timeout_ns ? timeout_ns : LT_SEC(2));
	if (vm->at_trigger) {
		/* Booted and still at its capture point: let it run first. */
		vm->at_trigger = false;
		if (send_cmd(vm, json_pack("{s:s}", "cmd", "resume"), resumed_then_connect, c) < 0)
			conn_end(c, -1, "cannot resume the VM");
		return 0;
	}
	/* Started from a due-now timer so that done never runs inside the op. */
	lt_timer_arm_in(lt_loop_clock(e->loop), &c->kick, 0);
	return 0;
}

static int le_stop(struct lt_engine *pe, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	struct le *e = LE(pe);
	struct lvm *vm = lt_instance_engine_data(inst);
	if (!vm) {
		/* Never started here, or already gone: nothing to stop. */
		finish(e, done, arg, 0, NULL, -1, NULL, false);
		return 0;
	}
	lt_instance_set_engine_data(inst, NULL);
	vm->inst = NULL;
	if (vm->start_done)
		start_complete(vm, -1, "stopped while starting", false);
	if (vm->state == L_DEAD || vm->pid <= 0) {
		while (vm->conns)
			conn_end(vm->conns, -1, "the VM is gone");
		finish(e, done, arg, 0, NULL, -1, NULL, false);
		vm_free(vm);
		return 0;
	}
	vm->stop_done = done;
	vm->stop_arg = arg;
	vm->stopping = true;
	if (vm->cfd < 0 || send_cmd(vm, json_pack("{s:s}", "cmd", "stop"), ignore_reply, NULL) < 0) {
		lt_clear_error();
		kill(vm->pid, SIGKILL);
	}
	lt_timer_arm_in(lt_loop_clock(e->loop), &vm->kill_timer, e->stop_timeout);
	return 0;
}

static const struct lt_engine_ops le_ops = {
	.name = "lttle",
	.boot = le_boot,
	.restore = le_restore,
	.snapshot = le_snapshot,
	.pause = le_pause,
	.resume = le_resume,
	.connect = le_connect,
	.stop = le_stop,
	.shell_create = le_shell_create,
	.shell_destroy = le_shell_destroy,
};

struct lt_engine *lt_engine_lttle_new(const struct lt_lttle_engine_opts *o)
{
	if (!o->loop || !o->run_dir || !o->vmhost) {
		lt_fail("lttle engine: loop, run_dir and vmhost are required");
		return NULL;
	}
	if (access(o->vmhost, X_OK) < 0) {
		lt_fail_errno("lttle engine: %s", o->vmhost);
		return NULL;
	}
	const char *mem = o->memory ? o->memory : "cached";
	if (strcmp(mem, "cached") && strcmp(mem, "eager") && strcmp(mem, "lazy")) {
		lt_fail("lttle engine: unknown memory strategy %s", mem);
		return NULL;
	}
	struct le *e = lt_calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->pub.ops = &le_ops;
	e->pub.priv = e;
	e->loop = o->loop;
	e->stop_timeout = o->stop_timeout ? o->stop_timeout : LT_SEC(2);
	e->no_seccomp = o->no_seccomp;
	e->run_dir = lt_strdup(o->run_dir);
	e->vmhost = lt_strdup(o->vmhost);
	e->memory = lt_strdup(mem);
	e->cache_dir = o->cache_dir ? lt_strdup(o->cache_dir) : NULL;
	if (!e->run_dir || !e->vmhost || !e->memory || (o->cache_dir && !e->cache_dir) ||
	    lt_mkdir_p(e->run_dir, 0700) < 0) {
		lt_engine_lttle_free(&e->pub);
		return NULL;
	}
	return &e->pub;
}

void lt_engine_lttle_free(struct lt_engine *pe)
{
	if (!pe)
		return;
	struct le *e = LE(pe);
	while (e->vms) {
		struct lvm *vm = e->vms;
		if (vm->inst)
			lt_instance_set_engine_data(vm->inst, NULL);
		vm->start_done = NULL;
		vm->stop_done = NULL;
		vm_free(vm);
	}
	free(e->run_dir);
	free(e->vmhost);
	free(e->memory);
	free(e->cache_dir);
	free(e);
}

int lt_lttle_instance_info(const struct lt_instance *inst, struct lt_lttle_inst_info *info)
{
	struct lvm *vm = lt_instance_engine_data(inst);
	if (!vm)
		return -1;
	info->pid = vm->pid;
	info->dir = vm->dir;
	info->serial_log = vm->serial;
	return 0;
}
