/* The VM host: runs one VM in this process behind a control socket, applies
 * the capture trigger, takes snapshots on request and restores into a
 * pre-made VM (a shell). See snapshot.h and docs/snapshot.md.
 *
 * Threads: the VM's own (vCPUs, I/O), the caller's (lt_vmhost_run: waits
 * for the VM) and one server thread (the control socket). Guest events and
 * the trigger arrive in vCPU threads through the VM callbacks; they queue
 * event lines under qlock and wake the server with an eventfd. A capture
 * at the trigger runs in the vCPU thread that hit it, with every vCPU
 * parked; one on request runs in the server thread after lt_vm_pause. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/snapshot.h"
#include "util/util.h"
#include "vmm/vmm.h"

#define LINE_MAX_BYTES 4096
#define OUT_MAX_BYTES (1U << 20)
#define MAX_CLIENTS 32

enum hstate { H_SHELL, H_RESTORING, H_RUNNING, H_DONE };

struct client {
	int fd;
	bool subscribed;
	char in[LINE_MAX_BYTES];
	size_t in_len;
	struct lt_buf out;
};

struct lt_vmhost {
	struct lt_vmhost_opts o;
	char *control, *snapshot_out, *cache_dir;
	struct lt_vm *vm;
	bool booted;
	struct lt_snap *snap;
	char *snap_path;
	struct lt_vmsnap_restored *restored;
	enum lt_vmsnap_mem restored_mem;
	bool was_restored;

	pthread_mutex_t lock; /* state, cond */
	pthread_cond_t cond;
	enum hstate state;
	volatile sig_atomic_t stop_req; /* set by stop commands and signals */
	bool at_trigger;    /* paused at the trigger, waiting for a command */
	bool triggered;
	pthread_mutex_t capture_lock;

	/* server */
	pthread_t thread;
	bool thread_started;
	int listen_fd, efd, epfd;
	atomic_bool server_quit;
	struct client *cl[MAX_CLIENTS];
	pthread_mutex_t qlock;
	struct lt_buf queue; /* NUL-separated event lines */
	uint64_t ws_deadline; /* working-set recording, lt_now_ns */
};

/* ---- events ----------------------------------------------------------------- */

static void publish(struct lt_vmhost *h, json_t *o)
{
	if (!o)
		return;
	json_object_set_new(o, "t_ns", json_integer((json_int_t)lt_now_ns()));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return;
	pthread_mutex_lock(&h->qlock);
	if (h->o.events_fd >= 0) {
		(void)lt_write_all(h->o.events_fd, s, strlen(s));
		(void)lt_write_all(h->o.events_fd, "\n", 1);
	}
	if (lt_buf_append(&h->queue, s, strlen(s) + 1) < 0)
		lt_clear_error(); /* a full queue drops events */
	pthread_mutex_unlock(&h->qlock);
	free(s);
	if (h->efd >= 0) {
		uint64_t one = 1;
		(void)!write(h->efd, &one, sizeof(one));
	}
}

static void publish_simple(struct lt_vmhost *h, const char *name)
{
	json_t *o = json_object();
	if (o)
		json_object_set_new(o, "event", json_string(name));
	publish(h, o);
}

static void publish_guest_event(struct lt_vmhost *h, const struct lt_guest_event *ev)
{
	json_t *o = lt_guest_event_json(ev, true);
	if (o)
		publish(h, o);
}

/* ---- capture ---------------------------------------------------------------- */

/* Captures the (paused) VM; publishes the outcome. */
static int capture(struct lt_vmhost *h, const char *path, const char *reason, json_t **reply)
{
	struct lt_vmsnap_stats st;
	struct lt_vmsnap_capture_opts co = h->o.capture;
	co.reason = reason;
	co.mem_fresh_anon = h->booted;
	pthread_mutex_lock(&h->capture_lock);
	int rc = lt_vmsnap_capture(h->vm, path, &co, &st);
	pthread_mutex_unlock(&h->capture_lock);
	json_t *o = json_object();
	if (!o)
		return rc;
	json_object_set_new(o, "event", json_string("snapshot"));
	json_object_set_new(o, "path", json_string(path));
	json_object_set_new(o, "ok", json_boolean(rc == 0));
	if (rc == 0) {
		json_object_set_new(o, "bytes", json_integer((json_int_t)st.mem.file_size));
		json_object_set_new(o, "capture_ns", json_integer((json_int_t)st.total_ns));
		json_object_set_new(o, "state_ns", json_integer((json_int_t)st.state_ns));
		json_object_set_new(o, "scan_ns", json_integer((json_int_t)st.mem.scan_ns));
		json_object_set_new(o, "compress_ns",
				    json_integer((json_int_t)st.mem.compress_ns));
		json_object_set_new(o, "stored_pages",
				    json_integer((json_int_t)st.mem.pages_stored));
		json_object_set_new(o, "compressed_bytes",
				    json_integer((json_int_t)st.mem.compressed_bytes));
		lt_info("snapshot %s: %llu bytes in %.1f ms", path,
			(unsigned long long)st.mem.file_size, (double)st.total_ns / 1e6);
	} else {
		json_object_set_new(o, "error", json_string(lt_errmsg()));
	}
	if (reply)
		*reply = json_deep_copy(o);
	publish(h, o);
	return rc;
}

/* ---- VM callbacks (vCPU threads) -------------------------------------------- */

static enum lt_vm_action on_event(struct lt_vm *vm, const struct lt_guest_event *ev, void *user)
{
	(void)vm;
	struct lt_vmhost *h = user;
	publish_guest_event(h, ev);
	if (h->o.trigger.kind == LT_TRIGGER_NONE)
		return LT_VM_ACT_CONTINUE;
	pthread_mutex_lock(&h->lock);
	bool fire = !h->triggered && lt_trigger_fires(&h->o.trigger, ev);
	if (fire)
		h->triggered = true;
	pthread_mutex_unlock(&h->lock);
	return fire ? LT_VM_ACT_PAUSE : LT_VM_ACT_CONTINUE;
}

static enum lt_vm_action on_paused(struct lt_vm *vm, const struct lt_guest_event *ev, void *user)
{
	(void)vm;
	struct lt_vmhost *h = user;
	char tb[48], reason[96];
	lt_trigger_str(&h->o.trigger, tb, sizeof(tb));
	json_t *o = json_pack("{s:s,s:s,s:s}", "event", "triggered", "trigger", tb, "by", ev->name);
	publish(h, o);
	if (!h->snapshot_out) {
		/* Wait at the capture point for a "snapshot" (or "resume"). */
		pthread_mutex_lock(&h->lock);
		h->at_trigger = true;
		pthread_mutex_unlock(&h->lock);
		publish_simple(h, "paused");
		return LT_VM_ACT_PAUSE;
	}
	snprintf(reason, sizeof(reason), "trigger %s", tb);
	int rc = capture(h, h->snapshot_out, reason, NULL);
	if (rc < 0) {
		lt_warn("snapshot at the trigger failed: %s", lt_errmsg());
		return LT_VM_ACT_STOP;
	}
	return h->o.keep_running ? LT_VM_ACT_CONTINUE : LT_VM_ACT_STOP;
}

/* ---- life cycle ------------------------------------------------------------------ */

int lt_vmhost_new(const struct lt_vmhost_opts *o, struct lt_vmhost **out)
{
	struct lt_vmhost *h = lt_calloc(1, sizeof(*h));
	if (!h)
		return -1;
	h->o = *o;
	h->listen_fd = h->efd = h->epfd = -1;
	if (!o->control_fd)
		h->o.control_fd = -1; /* a zeroed opts struct means none */
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->capture_lock, NULL);
	pthread_mutex_init(&h->qlock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->queue.limit = OUT_MAX_BYTES;
	h->control = o->control ? lt_strdup(o->control) : NULL;
	h->snapshot_out = o->snapshot_out ? lt_strdup(o->snapshot_out) : NULL;
	h->cache_dir = o->restore.cache_dir ? lt_strdup(o->restore.cache_dir) : NULL;
	h->o.control = h->control;
	h->o.snapshot_out = h->snapshot_out;
	h->o.restore.cache_dir = h->cache_dir;
	if ((o->control && !h->control) || (o->snapshot_out && !h->snapshot_out) ||
	    (o->restore.cache_dir && !h->cache_dir)) {
		lt_vmhost_free(h);
		return -1;
	}
	h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->efd < 0) {
		lt_vmhost_free(h);
		return lt_fail_errno("eventfd");
	}
	*out = h;
	return 0;
}

void lt_vmhost_hook(struct lt_vmhost *h, struct lt_vm_config *cfg)
{
	cfg->on_event = on_event;
	cfg->on_paused = on_paused;
	cfg->user = h;
	cfg->control = NULL;
	cfg->events_fd = -1;
}

void lt_vmhost_set_vm(struct lt_vmhost *h, struct lt_vm *vm, bool booted)
{
	h->vm = vm;
	h->booted = booted;
}

int lt_vmhost_restore(struct lt_vmhost *h, const char *path, struct lt_snap *s,
		      enum lt_vmsnap_mem mem)
{
	uint64_t t0 = lt_now_ns();
	if (!h->vm || h->was_restored)
		return lt_fail("no VM shell to restore into");
	if (!s && lt_snap_open(&s, path, NULL) < 0)
		return -1;
	h->snap = s;
	h->snap_path = lt_strdup(path);
	struct lt_vmsnap_restore_opts ro = h->o.restore;
	ro.mem = mem;
	if (mem == LT_VMSNAP_LAZY && h->o.record_ws_ms)
		ro.no_prefetch = true;
	struct lt_vmsnap_restore_stats st;
	if (!h->snap_path || lt_vmsnap_restore(h->vm, s, &ro, &h->restored, &st) < 0)
		return lt_fail_ctx("restore %s", path);
	h->was_restored = true;
	h->restored_mem = mem;
	h->booted = false;
	json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "event", "restored", "path", path,
			      "mem", lt_vmsnap_mem_name(mem), "mem_ns", (json_int_t)st.mem_ns,
			      "state_ns", (json_int_t)st.state_ns, "load_ns",
			      (json_int_t)(lt_now_ns() - t0), "clock_adjust_ns",
			      (json_int_t)st.clock_adjust_ns);
	publish(h, o);
	return 0;
}

void lt_vmhost_request_stop(struct lt_vmhost *h)
{
	h->stop_req = true; /* read under lock elsewhere; a signal only sets it */
	if (h->vm)
		lt_vm_request_stop(h->vm);
	uint64_t one = 1;
	(void)!write(h->efd, &one, sizeof(one));
}

/* ---- control server ----------------------------------------------------------- */

static void client_close(struct lt_vmhost *h, int i)
{
	struct client *k = h->cl[i];
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, k->fd, NULL);
	close(k->fd);
	lt_buf_free(&k->out);
	free(k);
	h->cl[i] = NULL;
}

static bool client_flush(struct lt_vmhost *h, struct client *k)
{
	while (k->out.len) {
		ssize_t n = send(k->fd, k->out.data, k->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return false;
		memmove(k->out.data, k->out.data + n, k->out.len - (size_t)n);
		k->out.len -= (size_t)n;
	}
	struct epoll_event ev = {.events = EPOLLIN | (k->out.len ? EPOLLOUT : 0), .data.fd = k->fd};
	epoll_ctl(h->epfd, EPOLL_CTL_MOD, k->fd, &ev);
	return true;
}

static bool client_send(struct lt_vmhost *h, struct client *k, const char *line)
{
	size_t n = strlen(line);
	if (k->out.len + n + 1 > OUT_MAX_BYTES)
		return false;
	if (lt_buf_append(&k->out, line, n) < 0 || lt_buf_append(&k->out, "\n", 1) < 0)
		return false;
	return client_flush(h, k);
}

static void reply_json(struct lt_vmhost *h, struct client *k, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (s)
		client_send(h, k, s);
	free(s);
	json_decref(o);
}

static void reply_error(struct lt_vmhost *h, struct client *k, const char *msg)
{
	reply_json(h, k, json_pack("{s:b,s:s}", "ok", 0, "error", msg));
}

static const char *state_name(struct lt_vmhost *h)
{
	switch (h->state) {
	case H_SHELL: return "shell";
	case H_RESTORING: return "restoring";
	case H_DONE: return "stopping";
	default: return lt_vm_is_paused(h->vm) ? "paused" : "running";
	}
}

static void do_status(struct lt_vmhost *h, struct client *k)
{
	struct lt_vm_stats st;
	memset(&st, 0, sizeof(st));
	pthread_mutex_lock(&h->lock);
	bool running = h->state == H_RUNNING;
	const char *state = state_name(h);
	bool at_trigger = h->at_trigger;
	pthread_mutex_unlock(&h->lock);
	if (running)
		lt_vm_get_stats(h->vm, &st);
	const struct lt_vm_config *c = lt_vm_get_config(h->vm);
	json_t *o = json_pack("{s:b,s:s,s:i,s:I,s:s,s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:i}", "ok", 1,
			      "state", state, "vcpus", lt_vm_vcpu_count(h->vm), "mem_mib",
			      (json_int_t)(c->mem_bytes >> 20), "cpu_template",
			      lt_cpu_template_name(c->cpu_template), "restored", h->was_restored,
			      "at_trigger", at_trigger, "exits", (json_int_t)st.exits, "io_exits",
			      (json_int_t)st.io_exits, "events", (json_int_t)st.events,
			      "last_pause_ns", (json_int_t)st.last_pause_ns, "last_resume_ns",
			      (json_int_t)st.last_resume_ns, "pid", (int)getpid());
	if (o && h->snap_path)
		json_object_set_new(o, "snapshot", json_string(h->snap_path));
	reply_json(h, k, o);
}

static bool vm_running(struct lt_vmhost *h)
{
	pthread_mutex_lock(&h->lock);
	bool r = h->state == H_RUNNING;
	pthread_mutex_unlock(&h->lock);
	return r;
}

static void do_pause(struct lt_vmhost *h, struct client *k)
{
	if (!vm_running(h) || lt_vm_pause(h->vm) < 0) {
		reply_error(h, k, vm_running(h) ? lt_errmsg() : "the VM is not running");
		return;
	}
	struct lt_vm_stats st;
	lt_vm_get_stats(h->vm, &st);
	publish_simple(h, "paused");
	reply_json(h, k, json_pack("{s:b,s:I}", "ok", 1, "pause_ns", (json_int_t)st.last_pause_ns));
}

static void do_resume(struct lt_vmhost *h, struct client *k)
{
	if (!vm_running(h)) {
		reply_error(h, k, "the VM is not running");
		return;
	}
	pthread_mutex_lock(&h->lock);
	h->at_trigger = false;
	pthread_mutex_unlock(&h->lock);
	lt_vm_resume(h->vm);
	struct lt_vm_stats st;
	lt_vm_get_stats(h->vm, &st);
	publish_simple(h, "resumed");
	reply_json(h, k,
		   json_pack("{s:b,s:I}", "ok", 1, "resume_ns", (json_int_t)st.last_resume_ns));
}

static void do_stop(struct lt_vmhost *h, struct client *k)
{
	reply_json(h, k, json_pack("{s:b}", "ok", 1));
	pthread_mutex_lock(&h->lock);
	h->stop_req = true;
	bool running = h->state == H_RUNNING;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (running)
		lt_vm_request_stop(h->vm);
}

static void do_snapshot(struct lt_vmhost *h, struct client *k, const char *path, bool keep)
{
	if (!path || !*path) {
		reply_error(h, k, "snapshot needs a \"path\"");
		return;
	}
	if (!vm_running(h)) {
		reply_error(h, k, "the VM is not running");
		return;
	}
	bool was_paused = lt_vm_is_paused(h->vm);
	if (!was_paused && lt_vm_pause(h->vm) < 0) {
		reply_error(h, k, lt_errmsg());
		return;
	}
	json_t *r = NULL;
	int rc = capture(h, path, "request", &r);
	if (rc < 0) {
		json_decref(r);
		reply_error(h, k, lt_errmsg());
	} else {
		json_object_del(r, "event");
		json_object_set_new(r, "ok", json_true());
		reply_json(h, k, r);
	}
	pthread_mutex_lock(&h->lock);
	bool at_trigger = h->at_trigger;
	h->at_trigger = false;
	pthread_mutex_unlock(&h->lock);
	if (!keep) {
		pthread_mutex_lock(&h->lock);
		h->stop_req = true;
		pthread_mutex_unlock(&h->lock);
		lt_vm_request_stop(h->vm);
	} else if (!was_paused || at_trigger) {
		lt_vm_resume(h->vm);
		publish_simple(h, "resumed");
	}
}

static int start_vm(struct lt_vmhost *h);

static void do_restore(struct lt_vmhost *h, struct client *k, const char *path, const char *mem)
{
	uint64_t t0 = lt_now_ns();
	enum lt_vmsnap_mem m = h->o.restore.mem;
	if (mem && lt_vmsnap_mem_parse(mem, &m) < 0) {
		reply_error(h, k, lt_errmsg());
		return;
	}
	pthread_mutex_lock(&h->lock);
	bool shell = h->state == H_SHELL && !h->stop_req;
	if (shell)
		h->state = H_RESTORING;
	pthread_mutex_unlock(&h->lock);
	if (!shell) {
		reply_error(h, k, "not a shell waiting for a restore");
		return;
	}
	if (!path || !*path) {
		reply_error(h, k, "restore needs a snapshot path");
		pthread_mutex_lock(&h->lock);
		h->state = H_SHELL;
		pthread_mutex_unlock(&h->lock);
		return;
	}
	int rc = lt_vmhost_restore(h, path, NULL, m);
	if (rc == 0)
		rc = start_vm(h);
	if (rc < 0) {
		/* A half-loaded shell cannot be used again: end the process. */
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", lt_errmsg());
		reply_error(h, k, msg);
		json_t *o = json_pack("{s:s,s:s}", "event", "restore-failed", "error", msg);
		publish(h, o);
		pthread_mutex_lock(&h->lock);
		h->stop_req = true;
		h->state = H_DONE;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
		return;
	}
	reply_json(h, k,
		   json_pack("{s:b,s:s,s:I}", "ok", 1, "mem", lt_vmsnap_mem_name(m), "restore_ns",
			     (json_int_t)(lt_now_ns() - t0)));
}

/* "restore FILE [MEM]" and other plain words: the shell protocol for hand
 * use (nc -U). */
static void handle_text(struct lt_vmhost *h, struct client *k, char *line)
{
	char *save = NULL, *cmd = strtok_r(line, " \t\r", &save);
	char *arg = cmd ? strtok_r(NULL, " \t\r", &save) : NULL;
	char *arg2 = arg ? strtok_r(NULL, " \t\r", &save) : NULL;
	if (!cmd)
		reply_error(h, k, "empty command");
	else if (!strcmp(cmd, "restore"))
		do_restore(h, k, arg, arg2);
	else if (!strcmp(cmd, "status"))
		do_status(h, k);
	else if (!strcmp(cmd, "stop"))
		do_stop(h, k);
	else if (!strcmp(cmd, "pause"))
		do_pause(h, k);
	else if (!strcmp(cmd, "resume"))
		do_resume(h, k);
	else if (!strcmp(cmd, "snapshot"))
		do_snapshot(h, k, arg, arg2 && !strcmp(arg2, "keep-running"));
	else
		reply_error(h, k, "unknown command");
}

static void handle_line(struct lt_vmhost *h, struct client *k, char *line)
{
	if (line[0] != '{') {
		handle_text(h, k, line);
		return;
	}
	json_error_t err;
	json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
	const char *cmd = o && json_is_object(o) ? json_string_value(json_object_get(o, "cmd")) : NULL;
	if (!o) {
		char msg[200];
		snprintf(msg, sizeof(msg), "bad JSON: %s", err.text);
		reply_error(h, k, msg);
	} else if (!cmd) {
		reply_error(h, k, "missing \"cmd\"");
	} else if (!strcmp(cmd, "status")) {
		do_status(h, k);
	} else if (!strcmp(cmd, "pause")) {
		do_pause(h, k);
	} else if (!strcmp(cmd, "resume")) {
		do_resume(h, k);
	} else if (!strcmp(cmd, "stop")) {
		do_stop(h, k);
	} else if (!strcmp(cmd, "events")) {
		k->subscribed = true;
		client_send(h, k, "{\"ok\":true,\"subscribed\":true}");
	} else if (!strcmp(cmd, "snapshot")) {
		do_snapshot(h, k, json_string_value(json_object_get(o, "path")),
			    json_is_true(json_object_get(o, "keep_running")));
	} else if (!strcmp(cmd, "restore")) {
		do_restore(h, k, json_string_value(json_object_get(o, "path")),
			   json_string_value(json_object_get(o, "memory")));
	} else {
		reply_error(h, k, "unknown command");
	}
	json_decref(o);
}

static void on_client(struct lt_vmhost *h, int i, uint32_t events)
{
	struct client *k = h->cl[i];
	if ((events & EPOLLOUT) && !client_flush(h, k)) {
		client_close(h, i);
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t n = recv(k->fd, k->in + k->in_len, sizeof(k->in) - k->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(h, i);
		return;
	}
	k->in_len += (size_t)n;
	for (;;) {
		char *nl = memchr(k->in, '\n', k->in_len);
		if (!nl)
			break;
		*nl = '\0';
		handle_line(h, k, k->in);
		if (!h->cl[i])
			return;
		size_t used = (size_t)(nl - k->in) + 1;
		memmove(k->in, nl + 1, k->in_len - used);
		k->in_len -= used;
	}
	if (k->in_len == sizeof(k->in)) {
		reply_error(h, k, "line too long");
		client_close(h, i);
	}
}

static void on_accept(struct lt_vmhost *h)
{
	int fd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	int slot = -1;
	for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
		if (!h->cl[i])
			slot = i;
	struct client *k = slot >= 0 ? lt_calloc(1, sizeof(*k)) : NULL;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if (!k || epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(k);
		close(fd);
		return;
	}
	k->fd = fd;
	h->cl[slot] = k;
}

static void drain_queue(struct lt_vmhost *h)
{
	pthread_mutex_lock(&h->qlock);
	struct lt_buf q = h->queue;
	memset(&h->queue, 0, sizeof(h->queue));
	h->queue.limit = OUT_MAX_BYTES;
	pthread_mutex_unlock(&h->qlock);
	for (size_t off = 0; off < q.len;) {
		const char *line = (const char *)q.data + off;
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (h->cl[i] && h->cl[i]->subscribed && !client_send(h, h->cl[i], line))
				client_close(h, i);
		off += strlen(line) + 1;
	}
	lt_buf_free(&q);
}

/* Working set: the chunks the guest touched in its first record_ws_ms. */
static void record_working_set(struct lt_vmhost *h)
{
	pthread_mutex_lock(&h->capture_lock);
	bool due = h->ws_deadline != 0;
	h->ws_deadline = 0;
	pthread_mutex_unlock(&h->capture_lock);
	if (!due)
		return;
	struct lt_snap_lazy *l = lt_vmsnap_restored_lazy(h->restored);
	uint32_t *ids = NULL;
	size_t n = 0;
	int rc = l ? lt_snap_lazy_touched(l, h->o.record_ws_ms, &ids, &n) : -1;
	if (rc == 0)
		rc = lt_snap_record_working_set(h->snap_path, lt_snap_template(h->snap), ids, n);
	json_t *o = json_pack("{s:s,s:b,s:I}", "event", "working-set", "ok", rc == 0, "chunks",
			      (json_int_t)n);
	if (o && rc < 0)
		json_object_set_new(o, "error", json_string(lt_errmsg()));
	publish(h, o);
	free(ids);
}

static void *server_main(void *arg)
{
	struct lt_vmhost *h = arg;
	while (!atomic_load(&h->server_quit)) {
		int timeout = 1000;
		pthread_mutex_lock(&h->capture_lock);
		uint64_t due = h->ws_deadline;
		pthread_mutex_unlock(&h->capture_lock);
		if (due) {
			uint64_t now = lt_now_ns();
			if (now >= due)
				record_working_set(h);
			else
				timeout = (int)((due - now) / 1000000) + 1;
		}
		struct epoll_event evs[16];
		int n = epoll_wait(h->epfd, evs, 16, timeout);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == h->efd) {
				uint64_t v;
				(void)!read(h->efd, &v, sizeof(v));
				drain_queue(h);
			} else if (fd == h->listen_fd) {
				on_accept(h);
			} else {
				for (int c = 0; c < MAX_CLIENTS; c++)
					if (h->cl[c] && h->cl[c]->fd == fd) {
						on_client(h, c, evs[i].events);
						break;
					}
			}
		}
	}
	drain_queue(h);
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (h->cl[i] && h->cl[i]->out.len)
			(void)lt_write_all(h->cl[i]->fd, h->cl[i]->out.data, h->cl[i]->out.len);
	return NULL;
}

static int server_start(struct lt_vmhost *h)
{
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->epfd < 0)
		return lt_fail_errno("epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = h->efd};
	if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->efd, &ev) < 0)
		return lt_fail_errno("epoll_ctl");
	if (h->control) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		if (strlen(h->control) >= sizeof(a.sun_path))
			return lt_fail("control socket path too long: %s", h->control);
		strcpy(a.sun_path, h->control);
		h->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (h->listen_fd < 0)
			return lt_fail_errno("control socket");
		unlink(h->control);
		if (bind(h->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    listen(h->listen_fd, 64) < 0)
			return lt_fail_errno("control socket %s", h->control);
		ev.data.fd = h->listen_fd;
		if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->listen_fd, &ev) < 0)
			return lt_fail_errno("epoll_ctl");
	}
	if (h->o.control_fd >= 0) {
		struct client *k = lt_calloc(1, sizeof(*k));
		int fl = fcntl(h->o.control_fd, F_GETFL);
		if (!k || fl < 0 || fcntl(h->o.control_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			free(k);
			return lt_fail_errno("control fd %d", h->o.control_fd);
		}
		fcntl(h->o.control_fd, F_SETFD, FD_CLOEXEC);
		k->fd = h->o.control_fd;
		/* The owner that handed us a connected socket sees every event
		 * from the first: subscribing only when its "events" command
		 * was read lost the ones published before (a shell's
		 * "shell-ready" under load, and the owner waited forever). */
		k->subscribed = true;
		ev.data.fd = k->fd;
		if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, k->fd, &ev) < 0) {
			free(k);
			return lt_fail_errno("epoll_ctl");
		}
		h->cl[0] = k;
		h->o.control_fd = -1; /* the client owns it now */
	}
	/* The server never takes the VM's kick signal. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int e = pthread_create(&h->thread, NULL, server_main, h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		errno = e;
		return lt_fail_errno("pthread_create");
	}
	h->thread_started = true;
	return 0;
}

static int start_vm(struct lt_vmhost *h)
{
	if (lt_vm_start(h->vm) < 0)
		return -1;
	pthread_mutex_lock(&h->lock);
	h->state = H_RUNNING;
	pthread_cond_broadcast(&h->cond);
	bool stop = h->stop_req;
	pthread_mutex_unlock(&h->lock);
	if (stop)
		lt_vm_request_stop(h->vm);
	publish_simple(h, "running");
	if (h->was_restored && h->restored_mem == LT_VMSNAP_LAZY && h->o.record_ws_ms) {
		pthread_mutex_lock(&h->capture_lock);
		h->ws_deadline = lt_now_ns() + h->o.record_ws_ms * 1000000ULL;
		pthread_mutex_unlock(&h->capture_lock);
		uint64_t one = 1; /* re-arm the server's timeout */
		(void)!write(h->efd, &one, sizeof(one));
	}
	return 0;
}

static const char *const seccomp_extra[] = {"flock", "sysinfo", "fchmod", "fchown", NULL};

int lt_vmhost_run(struct lt_vmhost *h, bool shell, struct lt_vm_exit *exit)
{
	memset(exit, 0, sizeof(*exit));
	if (!h->vm)
		return lt_fail("no VM");
	h->state = shell ? H_SHELL : H_RESTORING;
	if (server_start(h) < 0)
		return -1;
	if (shell) {
		/* Everything but the restore is done: seccomp now, then wait. */
		if (!h->o.no_seccomp && lt_vm_seccomp(h->vm, seccomp_extra) < 0)
			return -1;
		publish_simple(h, "shell-ready");
		pthread_mutex_lock(&h->lock);
		while (h->state != H_RUNNING && !h->stop_req) {
			/* Timed: a signal handler sets stop_req without the lock. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&h->cond, &h->lock, &ts);
		}
		bool running = h->state == H_RUNNING;
		pthread_mutex_unlock(&h->lock);
		if (!running) {
			exit->reason = LT_VM_EXIT_STOPPED;
			snprintf(exit->message, sizeof(exit->message), "shell stopped before a restore");
			goto out;
		}
	} else {
		if (start_vm(h) < 0)
			return -1;
		if (!h->o.no_seccomp && lt_vm_seccomp(h->vm, seccomp_extra) < 0) {
			lt_vm_request_stop(h->vm);
			lt_vm_wait(h->vm, NULL);
			return -1;
		}
	}
	lt_vm_wait(h->vm, exit);
	/* A guest that stopped before the recording window ended: record what
	 * it touched. */
	record_working_set(h);
out:;
	pthread_mutex_lock(&h->lock);
	h->state = H_DONE;
	pthread_mutex_unlock(&h->lock);
	json_t *o = json_pack("{s:s,s:s}", "event", "stopped", "reason",
			      lt_vm_exit_reason_name(exit->reason));
	if (o && exit->guest_exit_reported)
		json_object_set_new(o, "code", json_integer(exit->guest_exit_code));
	if (o && exit->message[0])
		json_object_set_new(o, "message", json_string(exit->message));
	publish(h, o);
	return 0;
}

void lt_vmhost_free(struct lt_vmhost *h)
{
	if (!h)
		return;
	if (h->thread_started) {
		atomic_store(&h->server_quit, true);
		uint64_t one = 1;
		(void)!write(h->efd, &one, sizeof(one));
		pthread_join(h->thread, NULL);
	}
	/* The lazy server first: a vCPU still blocked on a fault then reads
	 * zeros and the VM can be torn down. */
	lt_vmsnap_restored_free(h->restored);
	lt_vm_destroy(h->vm);
	lt_snap_close(h->snap);
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (h->cl[i])
			client_close(h, i);
	if (h->listen_fd >= 0) {
		close(h->listen_fd);
		unlink(h->control);
	}
	if (h->efd >= 0)
		close(h->efd);
	if (h->epfd >= 0)
		close(h->epfd);
	lt_buf_free(&h->queue);
	free(h->control);
	free(h->snapshot_out);
	free(h->cache_dir);
	free(h->snap_path);
	free(h);
}
