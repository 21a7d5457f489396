/* Control channel: a unix socket speaking JSON lines.
 *   {"cmd":"pause"|"resume"|"stop"|"status"|"events"}
 * Replies are one JSON object per line ({"ok":true,...} or
 * {"ok":false,"error":"..."}); after "events" the client also receives
 * every VM event as it happens ({"event":"listen-after","port":8080,...}).
 * Input lines are bounded; a client that overflows them or lets its
 * output pile up is disconnected. Runs in the VM's I/O thread; events from
 * other threads are queued and handed over through an eventfd. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "vmm/vmm_int.h"

struct lt_control {
	struct lt_vm *vm;
	struct lt_lines *lines;
	bool watched; /* lines fd in the VM's I/O loop */
};

static void reply_error(struct lt_lines_client *k, const char *msg)
{
	json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", msg);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (s)
		lt_lines_send(k, s);
	free(s);
	json_decref(o);
}

static void handle_line(void *user, struct lt_lines_client *k, char *line)
{
	struct lt_control *c = user;
	json_error_t err;
	json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
	const char *cmd = o && json_is_object(o) ? json_string_value(json_object_get(o, "cmd")) : NULL;
	struct lt_vm *vm = c->vm;
	if (!o) {
		char msg[200];
		snprintf(msg, sizeof(msg), "bad JSON: %s", err.text);
		reply_error(k, msg);
	} else if (!cmd) {
		reply_error(k, "missing \"cmd\"");
	} else if (!strcmp(cmd, "pause")) {
		if (lt_vm_pause(vm) < 0) {
			reply_error(k, lt_errmsg());
		} else {
			struct lt_vm_stats st;
			lt_vm_get_stats(vm, &st);
			char buf[96];
			snprintf(buf, sizeof(buf), "{\"ok\":true,\"pause_ns\":%llu}",
				 (unsigned long long)st.last_pause_ns);
			lt_lines_send(k, buf);
		}
	} else if (!strcmp(cmd, "resume")) {
		lt_vm_resume(vm);
		struct lt_vm_stats st;
		lt_vm_get_stats(vm, &st);
		char buf[96];
		snprintf(buf, sizeof(buf), "{\"ok\":true,\"resume_ns\":%llu}",
			 (unsigned long long)st.last_resume_ns);
		lt_lines_send(k, buf);
	} else if (!strcmp(cmd, "stop")) {
		lt_lines_send(k, "{\"ok\":true}");
		lt_vm_set_exit(vm, LT_VM_EXIT_STOPPED, "stopped by the control channel");
	} else if (!strcmp(cmd, "status")) {
		struct lt_buf b = {0};
		lt_vm_status_json(vm, &b);
		if (lt_buf_cstr(&b) == 0)
			lt_lines_send(k, (char *)b.data);
		lt_buf_free(&b);
	} else if (!strcmp(cmd, "events")) {
		lt_lines_subscribe(k);
		lt_lines_send(k, "{\"ok\":true,\"subscribed\":true}");
	} else {
		reply_error(k, "unknown command");
	}
	json_decref(o);
}

static void on_lines(void *opaque, int fd, uint32_t events)
{
	(void)fd;
	(void)events;
	struct lt_control *c = opaque;
	lt_lines_dispatch(c->lines);
}

void lt_control_publish(struct lt_control *c, const char *line)
{
	lt_lines_publish(c->lines, line);
}

void lt_control_drain(struct lt_control *c)
{
	lt_lines_finish(c->lines);
}

int lt_control_open(struct lt_vm *vm, const char *path, struct lt_control **out)
{
	struct lt_control *c = lt_calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->vm = vm;
	if (lt_lines_new(handle_line, c, "{\"ok\":false,\"error\":\"line too long\"}",
			 &c->lines) < 0 ||
	    lt_lines_listen(c->lines, path, 16) < 0 ||
	    lt_ioloop_add(vm->loop, lt_lines_fd(c->lines), EPOLLIN, on_lines, c) < 0) {
		lt_control_close(c);
		return -1;
	}
	c->watched = true;
	*out = c;
	return 0;
}

void lt_control_close(struct lt_control *c)
{
	if (!c)
		return;
	if (c->watched)
		lt_ioloop_del(c->vm->loop, lt_lines_fd(c->lines));
	lt_lines_free(c->lines);
	free(c);
}
