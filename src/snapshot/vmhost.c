/* The VM host: runs one VM in this process behind a control socket, applies
 * the capture trigger, takes snapshots on request and restores into a
 * pre-made VM (a shell). See snapshot.h and docs/snapshot.md.
 *
 * Threads: the VM's own (vCPUs, I/O), the caller's (lt_vmhost_run: waits
 * for the VM) and one server thread (the control socket). Guest events and
 * the trigger arrive in vCPU threads through the VM callbacks; they are
 * published to the control clients through the line server. A capture
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
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/snapshot.h"
#include "util/util.h"
#include "vmm/vmm.h"

enum hstate { H_SHELL, H_RESTORING, H_RUNNING, H_DONE };

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
	int efd; /* wakes the server: quit, working-set deadline */
	atomic_bool server_quit;
	struct lt_lines *lines;
	pthread_mutex_t qlock; /* keeps the events log in publish order */
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
	lt_lines_publish(h->lines, s);
	pthread_mutex_unlock(&h->qlock);
	free(s);
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

static void handle_line(void *user, struct lt_lines_client *k, char *line);

int lt_vmhost_new(const struct lt_vmhost_opts *o, struct lt_vmhost **out)
{
	struct lt_vmhost *h = lt_calloc(1, sizeof(*h));
	if (!h)
		return -1;
	h->o = *o;
	h->efd = -1;
	if (!o->control_fd)
		h->o.control_fd = -1; /* a zeroed opts struct means none */
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->capture_lock, NULL);
	pthread_mutex_init(&h->qlock, NULL);
	pthread_cond_init(&h->cond, NULL);
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
	if (lt_lines_new(handle_line, h, "{\"ok\":false,\"error\":\"line too long\"}",
			 &h->lines) < 0) {
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

static void reply_json(struct lt_lines_client *k, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (s)
		lt_lines_send(k, s);
	free(s);
	json_decref(o);
}

static void reply_error(struct lt_lines_client *k, const char *msg)
{
	reply_json(k, json_pack("{s:b,s:s}", "ok", 0, "error", msg));
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

static void do_status(struct lt_vmhost *h, struct lt_lines_client *k)
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
	reply_json(k, o);
}

static bool vm_running(struct lt_vmhost *h)
{
	pthread_mutex_lock(&h->lock);
	bool r = h->state == H_RUNNING;
	pthread_mutex_unlock(&h->lock);
	return r;
}

static void do_pause(struct lt_vmhost *h, struct lt_lines_client *k)
{
	if (!vm_running(h) || lt_vm_pause(h->vm) < 0) {
		reply_error(k, vm_running(h) ? lt_errmsg() : "the VM is not running");
		return;
	}
	struct lt_vm_stats st;
	lt_vm_get_stats(h->vm, &st);
	publish_simple(h, "paused");
	reply_json(k, json_pack("{s:b,s:I}", "ok", 1, "pause_ns", (json_int_t)st.last_pause_ns));
}

static void do_resume(struct lt_vmhost *h, struct lt_lines_client *k)
{
	if (!vm_running(h)) {
		reply_error(k, "the VM is not running");
		return;
	}
	pthread_mutex_lock(&h->lock);
	h->at_trigger = false;
	pthread_mutex_unlock(&h->lock);
	lt_vm_resume(h->vm);
	struct lt_vm_stats st;
	lt_vm_get_stats(h->vm, &st);
	publish_simple(h, "resumed");
	reply_json(k,
		   json_pack("{s:b,s:I}", "ok", 1, "resume_ns", (json_int_t)st.last_resume_ns));
}

static void do_stop(struct lt_vmhost *h, struct lt_lines_client *k)
{
	reply_json(k, json_pack("{s:b}", "ok", 1));
	pthread_mutex_lock(&h->lock);
	h->stop_req = true;
	bool running = h->state == H_RUNNING;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (running)
		lt_vm_request_stop(h->vm);
}

static void do_snapshot(struct lt_vmhost *h, struct lt_lines_client *k, const char *path, bool keep)
{
	if (!path || !*path) {
		reply_error(k, "snapshot needs a \"path\"");
		return;
	}
	if (!vm_running(h)) {
		reply_error(k, "the VM is not running");
		return;
	}
	bool was_paused = lt_vm_is_paused(h->vm);
	if (!was_paused && lt_vm_pause(h->vm) < 0) {
		reply_error(k, lt_errmsg());
		return;
	}
	json_t *r = NULL;
	int rc = capture(h, path, "request", &r);
	if (rc < 0) {
		json_decref(r);
		reply_error(k, lt_errmsg());
	} else {
		json_object_del(r, "event");
		json_object_set_new(r, "ok", json_true());
		reply_json(k, r);
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

static void do_restore(struct lt_vmhost *h, struct lt_lines_client *k, const char *path, const char *mem)
{
	uint64_t t0 = lt_now_ns();
	enum lt_vmsnap_mem m = h->o.restore.mem;
	if (mem && lt_vmsnap_mem_parse(mem, &m) < 0) {
		reply_error(k, lt_errmsg());
		return;
	}
	pthread_mutex_lock(&h->lock);
	bool shell = h->state == H_SHELL && !h->stop_req;
	if (shell)
		h->state = H_RESTORING;
	pthread_mutex_unlock(&h->lock);
	if (!shell) {
		reply_error(k, "not a shell waiting for a restore");
		return;
	}
	if (!path || !*path) {
		reply_error(k, "restore needs a snapshot path");
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
		reply_error(k, msg);
		json_t *o = json_pack("{s:s,s:s}", "event", "restore-failed", "error", msg);
		publish(h, o);
		pthread_mutex_lock(&h->lock);
		h->stop_req = true;
		h->state = H_DONE;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
		return;
	}
	reply_json(k,
		   json_pack("{s:b,s:s,s:I}", "ok", 1, "mem", lt_vmsnap_mem_name(m), "restore_ns",
			     (json_int_t)(lt_now_ns() - t0)));
}

/* "restore FILE [MEM]" and other plain words: the shell protocol for hand
 * use (nc -U). */
static void handle_text(struct lt_vmhost *h, struct lt_lines_client *k, char *line)
{
	char *save = NULL, *cmd = strtok_r(line, " \t\r", &save);
	char *arg = cmd ? strtok_r(NULL, " \t\r", &save) : NULL;
	char *arg2 = arg ? strtok_r(NULL, " \t\r", &save) : NULL;
	if (!cmd)
		reply_error(k, "empty command");
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
		reply_error(k, "unknown command");
}

static void handle_line(void *user, struct lt_lines_client *k, char *line)
{
	struct lt_vmhost *h = user;
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
		reply_error(k, msg);
	} else if (!cmd) {
		reply_error(k, "missing \"cmd\"");
	} else if (!strcmp(cmd, "status")) {
		do_status(h, k);
	} else if (!strcmp(cmd, "pause")) {
		do_pause(h, k);
	} else if (!strcmp(cmd, "resume")) {
		do_resume(h, k);
	} else if (!strcmp(cmd, "stop")) {
		do_stop(h, k);
	} else if (!strcmp(cmd, "events")) {
		lt_lines_subscribe(k);
		lt_lines_send(k, "{\"ok\":true,\"subscribed\":true}");
	} else if (!strcmp(cmd, "snapshot")) {
		do_snapshot(h, k, json_string_value(json_object_get(o, "path")),
			    json_is_true(json_object_get(o, "keep_running")));
	} else if (!strcmp(cmd, "restore")) {
		do_restore(h, k, json_string_value(json_object_get(o, "path")),
			   json_string_value(json_object_get(o, "memory")));
	} else {
		reply_error(k, "unknown command");
	}
	json_decref(o);
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
		struct pollfd p[2] = {{.fd = lt_lines_fd(h->lines), .events = POLLIN},
				      {.fd = h->efd, .events = POLLIN}};
		if (poll(p, 2, timeout) <= 0)
			continue;
		if (p[1].revents) {
			uint64_t v;
			(void)!read(h->efd, &v, sizeof(v));
		}
		if (p[0].revents)
			lt_lines_dispatch(h->lines);
	}
	lt_lines_finish(h->lines);
	return NULL;
}

static int server_start(struct lt_vmhost *h)
{
	if (h->control && lt_lines_listen(h->lines, h->control, 64) < 0)
		return -1;
	if (h->o.control_fd >= 0) {
		int fl = fcntl(h->o.control_fd, F_GETFL);
		if (fl < 0 || fcntl(h->o.control_fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return lt_fail_errno("control fd %d", h->o.control_fd);
		fcntl(h->o.control_fd, F_SETFD, FD_CLOEXEC);
		/* The owner that handed us a connected socket sees every event
		 * from the first: subscribing only when its "events" command
		 * was read lost the ones published before (a shell's
		 * "shell-ready" under load, and the owner waited forever). */
		if (lt_lines_adopt(h->lines, h->o.control_fd, true) < 0)
			return -1;
		h->o.control_fd = -1; /* the line server owns it now */
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
	lt_lines_free(h->lines);
	if (h->efd >= 0)
		close(h->efd);
	free(h->control);
	free(h->snapshot_out);
	free(h->cache_dir);
	free(h->snap_path);
	free(h);
}
