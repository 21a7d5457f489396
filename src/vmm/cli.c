/* The VM's command line, shared by `lttle run` and the lean lttle-vmm
 * (vmm.h, "command-line options"): the option parser, and lt_vmm_main,
 * which runs one VM from the resolved options. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/vmm.h"

static int parse_u64_in(const char *arg, uint64_t lo, uint64_t hi, uint64_t *v)
{
	return lt_parse_u64(arg, v) < 0 || *v < lo || *v > hi ? -1 : 0;
}

int lt_vm_cli_option(int id, const char *arg, struct lt_vm_config *cfg)
{
	uint64_t v;
	switch (id) {
	case LT_VM_OPT_KERNEL: cfg->kernel = arg; return 1;
	case LT_VM_OPT_INITRD: cfg->initrd = arg; return 1;
	case LT_VM_OPT_VSOCK: cfg->vsock_uds = arg; return 1;
	case LT_VM_OPT_TAP: cfg->tap = arg; return 1;
	case LT_VM_OPT_CONTROL: cfg->control = arg; return 1;
	case LT_VM_OPT_NO_IOEVENTFD: cfg->no_ioeventfd = true; return 1;
	case LT_VM_OPT_NO_COALESCE: cfg->no_coalesced_io = true; return 1;
	case LT_VM_OPT_MEM:
		if (parse_u64_in(arg, 4, 1ULL << 20, &v) < 0)
			return lt_fail("--mem takes MiB (4..1048576), not '%s'", arg);
		cfg->mem_bytes = v << 20;
		return 1;
	case LT_VM_OPT_CPUS:
		if (parse_u64_in(arg, 1, LT_VM_MAX_VCPUS, &v) < 0)
			return lt_fail("--cpus takes 1..%d, not '%s'", LT_VM_MAX_VCPUS, arg);
		cfg->vcpus = (int)v;
		return 1;
	case LT_VM_OPT_VSOCK_CID:
		if (parse_u64_in(arg, 3, 0xffffffffULL, &v) < 0)
			return lt_fail("--vsock-cid takes 3..2^32-1");
		cfg->vsock_cid = (uint32_t)v;
		return 1;
	case LT_VM_OPT_TEMPLATE:
		return lt_cpu_template_parse(arg, &cfg->cpu_template) < 0 ? -1 : 1;
	default:
		return 0;
	}
}

void lt_vm_config_disks(struct lt_vm_config *cfg, const char *rootfs, bool read_only,
			const char *overlay, const char *const *extra, int nextra)
{
	cfg->ndisks = 0;
	if (rootfs) {
		cfg->disks[0] = (struct lt_vm_disk){.path = rootfs, .read_only = read_only,
						    .overlay = overlay};
		snprintf(cfg->disks[0].id, sizeof(cfg->disks[0].id), "lttle-rootfs");
		cfg->ndisks = 1;
	}
	for (int i = 0; i < nextra && cfg->ndisks < LT_VM_MAX_DISKS; i++) {
		cfg->disks[cfg->ndisks] = (struct lt_vm_disk){.path = extra[i]};
		snprintf(cfg->disks[cfg->ndisks].id, sizeof(cfg->disks[0].id), "lttle-disk%u",
			 (unsigned char)(i + 1));
		cfg->ndisks++;
	}
}

static struct lt_vm *g_vm;
static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
	g_signal = sig;
	if (g_vm)
		lt_vm_request_stop(g_vm);
}

static int fail(const char *msg)
{
	fprintf(stderr, "lttle run: %s\n", msg);
	return 1;
}

enum {
	O_ROOTFS = 256, O_RO, O_OVL_FILE, O_OVL_TMP, O_DISK, O_CMDLINE, O_EVENTS, O_SERIAL,
	O_NO_SECCOMP,
};

static const struct option opts[] = {
	LT_VM_CLI_OPTIONS,
	{"rootfs", required_argument, 0, O_ROOTFS},
	{"ro", no_argument, 0, O_RO},
	{"overlay-file", required_argument, 0, O_OVL_FILE},
	{"overlay-tmp", required_argument, 0, O_OVL_TMP},
	{"disk", required_argument, 0, O_DISK},
	{"cmdline", required_argument, 0, O_CMDLINE},
	{"events-log", required_argument, 0, O_EVENTS},
	{"serial-log", required_argument, 0, O_SERIAL},
	{"no-seccomp", no_argument, 0, O_NO_SECCOMP},
	{0, 0, 0, 0},
};

struct args {
	const char *rootfs, *overlay, *serial_log, *events_log;
	const char *disks[LT_VM_MAX_DISKS];
	int ndisks;
	bool ro, overlay_tmp, no_seccomp;
};

static int parse(int argc, char **argv, struct lt_vm_config *c, struct args *a)
{
	int o;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int r = lt_vm_cli_option(o, optarg, c);
		if (r < 0)
			return fail(lt_errmsg());
		if (r > 0)
			continue;
		switch (o) {
		case O_ROOTFS: a->rootfs = optarg; break;
		case O_RO: a->ro = true; break;
		case O_OVL_FILE: a->overlay = optarg; break;
		case O_OVL_TMP: a->overlay = optarg; a->overlay_tmp = true; break;
		case O_DISK:
			if (a->ndisks >= LT_VM_MAX_DISKS - 1)
				return fail("too many --disk options");
			a->disks[a->ndisks++] = optarg;
			break;
		case O_CMDLINE: c->cmdline = optarg; break;
		case O_EVENTS: a->events_log = optarg; break;
		case O_SERIAL: a->serial_log = optarg; break;
		case O_NO_SECCOMP: a->no_seccomp = true; break;
		default: return fail("lttle-vmm: bad option (it takes lttle run's resolved options)");
		}
	}
	if (!c->kernel || optind < argc)
		return fail("lttle-vmm: --kernel is required and no arguments are taken");
	return 0;
}

static int open_out(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		lt_fail_errno("%s", path);
	return fd;
}

static void remove_tmp_overlay(const char *path)
{
	char *p = lt_strdup(path);
	if (!p)
		return;
	unlink(p);
	char *slash = strrchr(p, '/');
	if (slash) {
		*slash = '\0';
		rmdir(p); /* the per-run directory `lttle run` made */
	}
	free(p);
}

static int run(struct lt_vm_config *c, const struct args *a)
{
	int serial_fd = -1, events_fd = -1, ret = 1;
	struct lt_vm *vm = NULL;
	lt_vm_config_disks(c, a->rootfs, a->ro, a->overlay, a->disks, a->ndisks);
	if (a->serial_log && (serial_fd = open_out(a->serial_log)) < 0)
		goto out;
	if (serial_fd >= 0)
		c->serial_out_fd = serial_fd;
	if (a->events_log && (events_fd = open_out(a->events_log)) < 0)
		goto out;
	c->events_fd = events_fd;
	if (isatty(0))
		c->serial_in_fd = 0;
	if (lt_vm_create(c, &vm) < 0 || lt_vm_boot(vm) < 0)
		goto out;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	g_vm = vm;
	/* VM threads inherit the stop signals blocked; this thread handles them. */
	pthread_sigmask(SIG_BLOCK, &set, &old);
	int rc = lt_vm_start(vm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		goto out;
	if (!a->no_seccomp && lt_vm_seccomp(vm, NULL) < 0) {
		lt_vm_request_stop(vm);
		lt_vm_wait(vm, NULL);
		goto out;
	}
	struct lt_vm_exit ex;
	lt_vm_wait(vm, &ex);
	lt_info("run: VM ended: %s%s%s", lt_vm_exit_reason_name(ex.reason),
		ex.message[0] ? ": " : "", ex.message);
	if (ex.reason == LT_VM_EXIT_ERROR) {
		fail(ex.message);
		ret = 1;
	} else if (g_signal) {
		ret = 128 + g_signal;
	} else if (ex.guest_exit_reported) {
		ret = ex.guest_exit_code < 0 || ex.guest_exit_code > 255 ? 1 : ex.guest_exit_code;
	} else {
		ret = 0;
	}
	goto done;
out:
	fail(lt_errmsg());
done:
	g_vm = NULL;
	lt_vm_destroy(vm);
	if (a->overlay_tmp)
		remove_tmp_overlay(a->overlay);
	if (serial_fd >= 0)
		close(serial_fd);
	if (events_fd >= 0)
		close(events_fd);
	return ret;
}

int lt_vmm_main(int argc, char **argv)
{
	struct lt_vm_config c;
	struct args a;
	memset(&a, 0, sizeof(a));
	lt_vm_config_init(&c);
	c.serial_out_fd = 1;
	int rc = parse(argc, argv, &c, &a);
	if (rc != 0) {
		if (a.overlay_tmp)
			remove_tmp_overlay(a.overlay);
		return 2;
	}
	return run(&c, &a);
}
