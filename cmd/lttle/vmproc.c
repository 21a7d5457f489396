/* Shared parts of the VM-host processes (see vmproc.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "vmproc.h"

static struct lt_vmhost *g_host;
static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
	g_signal = sig;
	if (g_host)
		lt_vmhost_request_stop(g_host);
}

static int disk_identity(const struct lt_vmsnap_disk *d, const char *path, bool overridden)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return lt_fail_errno("disk %s (attached when the snapshot was taken)", path);
	uint64_t mt = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
	if ((uint64_t)st.st_size != d->size)
		return lt_fail("disk %s is %llu bytes, the snapshot was taken with %llu", path,
			       (unsigned long long)st.st_size, (unsigned long long)d->size);
	if (!overridden && d->mtime_ns && mt != d->mtime_ns)
		return lt_fail("disk %s changed since the snapshot was taken (pass --rootfs to "
			       "use it anyway)",
			       path);
	return 0;
}

int vmproc_parse_common(const char *cmd, int c, const char *arg, struct vmproc_opts *o)
{
	uint64_t v;
	switch (c) {
	case VMPROC_OPT_MEMORY:
		if (lt_vmsnap_mem_parse(arg, &o->mem) < 0)
			return cli_usage(cmd, "%s", lt_errmsg()), -1;
		return 1;
	case VMPROC_OPT_CACHE: o->cache_dir = arg; return 1;
	case VMPROC_OPT_VSOCK: o->vsock = arg; return 1;
	case VMPROC_OPT_CONTROL: o->control = arg; return 1;
	case VMPROC_OPT_ROOTFS: o->rootfs = arg; return 1;
	case VMPROC_OPT_WS:
		if (lt_parse_u64(arg, &v) < 0 || v < 1 || v > 600000)
			return cli_usage(cmd, "--record-working-set takes 1..600000 ms"), -1;
		o->record_ws_ms = v;
		return 1;
	case VMPROC_OPT_SERIAL: o->serial_log = arg; return 1;
	case VMPROC_OPT_EVENTS: o->events_log = arg; return 1;
	case VMPROC_OPT_NO_SECCOMP: o->no_seccomp = true; return 1;
	case VMPROC_OPT_CONTROL_FD:
		if (lt_parse_u64(arg, &v) < 0 || v < 3 || v > 65535)
			return cli_usage(cmd, "--control-fd takes an inherited fd >= 3"), -1;
		o->control_fd = (int)v;
		return 1;
	default: return 0;
	}
}

int vmproc_config_from_snapshot(const struct lt_vmsnap_config *c, const struct vmproc_opts *o,
				struct lt_vm_config *cfg)
{
	if (lt_vmsnap_config_apply(c, cfg) < 0)
		return -1;
	if (o->rootfs && c->ndisks == 0)
		return lt_fail("--rootfs: the snapshot has no disk");
	for (int i = 0; i < c->ndisks; i++) {
		bool over = i == 0 && o->rootfs;
		if (over)
			cfg->disks[0].path = o->rootfs;
		if (disk_identity(&c->disks[i], cfg->disks[i].path, over) < 0)
			return -1;
	}
	if (c->vsock && !o->vsock)
		return lt_fail("the snapshot has a vsock device: give --vsock UDS");
	if (!c->vsock && o->vsock)
		return lt_fail("--vsock: the snapshot has no vsock device");
	cfg->vsock_uds = o->vsock;
	if (c->tap)
		return lt_fail("the snapshot has a TAP network device; restoring one is not "
			       "supported");
	return 0;
}

static int open_append(const char *path, int *fd)
{
	*fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	return *fd < 0 ? lt_fail_errno("%s", path) : 0;
}

int vmproc_open_logs(const struct vmproc_opts *o, struct lt_vm_config *cfg, int *serial_fd,
		     int *events_fd)
{
	*serial_fd = *events_fd = -1;
	cfg->serial_out_fd = 1;
	if (o->serial_log) {
		if (open_append(o->serial_log, serial_fd) < 0)
			return -1;
		cfg->serial_out_fd = *serial_fd;
	}
	if (o->events_log && open_append(o->events_log, events_fd) < 0)
		return -1;
	return 0;
}

void vmproc_host_opts(const struct vmproc_opts *o, int events_fd, struct lt_vmhost_opts *ho)
{
	memset(ho, 0, sizeof(*ho));
	ho->control = o->control;
	ho->control_fd = o->control_fd ? o->control_fd : -1;
	ho->events_fd = events_fd;
	ho->trigger = o->trigger;
	ho->snapshot_out = o->snapshot_out;
	ho->keep_running = o->keep_running;
	ho->no_seccomp = o->no_seccomp;
	ho->restore.mem = o->mem;
	ho->restore.cache_dir = o->cache_dir;
	ho->record_ws_ms = o->record_ws_ms;
}

void vmproc_exec_lean(const char *sub, int argc, char **argv)
{
#ifndef LTTLE_VMHOST_BINARY
	if (getenv("LTTLE_VMM_INPROC"))
		return;
	char *bin = cli_find_libexec("lttle-vmhost");
	char **v = bin ? lt_calloc((size_t)argc + 2, sizeof(char *)) : NULL;
	if (v) {
		v[0] = (char *)"lttle-vmhost";
		v[1] = (char *)sub;
		for (int i = 1; i < argc; i++)
			v[i + 1] = argv[i];
		fflush(NULL);
		execv(bin, v);
		lt_warn("%s: cannot exec %s (%s), running in-process", sub, bin, strerror(errno));
	}
	free(v);
	free(bin);
	lt_clear_error();
#else
	(void)sub;
	(void)argc;
	(void)argv;
#endif
}

int vmproc_exit_code(const char *cmd, const struct lt_vm_exit *ex)
{
	if (ex->reason == LT_VM_EXIT_ERROR) {
		fprintf(stderr, "lttle %s: %s\n", cmd, ex->message);
		return 1;
	}
	if (g_signal)
		return 128 + g_signal;
	if (ex->guest_exit_reported)
		return ex->guest_exit_code < 0 || ex->guest_exit_code > 255 ? 1
									    : ex->guest_exit_code;
	return 0;
}

int vmproc_run(const char *cmd, struct lt_vm_config *cfg, struct lt_vmhost *h,
	       const char *restore_path, struct lt_snap *s, enum lt_vmsnap_mem mem, bool shell)
{
	/* Only this thread takes the stop signals; every thread the VM and
	 * the host create inherits the mask with them blocked. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	pthread_sigmask(SIG_BLOCK, &set, &old);

	struct lt_vm *vm = NULL;
	int rc = -1;
	lt_vmhost_hook(h, cfg);
	if (lt_vm_create(cfg, &vm) < 0) {
		lt_snap_close(s);
		goto out;
	}
	lt_vmhost_set_vm(h, vm, !restore_path && !shell);
	if (restore_path) {
		if (lt_vmhost_restore(h, restore_path, s, mem) < 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			cli_fail(cmd);
			return VMPROC_EXIT_BAD_SNAPSHOT;
		}
	} else if (!shell && lt_vm_boot(vm) < 0) {
		goto out;
	}
	g_host = h;
	struct lt_vm_exit ex;
	/* The host's threads start here (signals blocked); then unblock. */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (g_signal)
		lt_vmhost_request_stop(h);
	rc = lt_vmhost_run(h, shell, &ex);
	g_host = NULL;
	if (rc == 0) {
		lt_info("%s: VM ended: %s%s%s", cmd, lt_vm_exit_reason_name(ex.reason),
			ex.message[0] ? ": " : "", ex.message);
		return vmproc_exit_code(cmd, &ex);
	}
out:
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	g_host = NULL;
	return cli_fail(cmd);
}

int vmproc_run_boot(struct lt_vm_config *cfg, const struct vmproc_opts *o)
{
	struct lt_vmhost_opts ho;
	int events_fd = -1;
	if (o->events_log) {
		events_fd = open(o->events_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (events_fd < 0)
			return lt_fail_errno("%s", o->events_log), cli_fail("run");
	}
	vmproc_host_opts(o, events_fd, &ho);
	ho.t0_ns = lt_now_ns();
	struct lt_vmhost *h;
	if (lt_vmhost_new(&ho, &h) < 0) {
		if (events_fd >= 0)
			close(events_fd);
		return cli_fail("run");
	}
	int ret = vmproc_run("run", cfg, h, NULL, NULL, LT_VMSNAP_EAGER, false);
	lt_vmhost_free(h);
	if (events_fd >= 0)
		close(events_fd);
	return ret;
}
