/* lttle run: boot a microVM on the lttle VMM with the console on stdout. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "vmm/guest_abi.h"
#include "vmm/vmm.h"
#include "vmproc.h"

#define DEFAULT_CMDLINE                                                                  \
	"console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux "     \
	"i8042.dumbkbd"


static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle run --kernel VMLINUX [OPTIONS]\n\n"
		"Boots a microVM on the lttle VMM; the serial console goes to stdout and\n"
		"Ctrl-C stops it. Exits when the guest halts, powers off or resets: with\n"
		"the guest's exit code if it reported one (\"exit CODE\"), else 0.\n\n"
		"  --kernel FILE         vmlinux ELF (or any x86-64 ELF entered like it) or bzImage\n"
		"  --rootfs IMG|REF      root disk: an image file, or an image reference built\n"
		"                        with 'lttle build REF --format ext4' (/dev/vda)\n"
		"  --ro                  attach the root disk read-only\n"
		"  --overlay[=FILE]      copy-on-write overlay over the root disk (base stays\n"
		"                        untouched); without FILE a temporary one\n"
		"  --disk IMG            an extra raw disk (repeatable; /dev/vdb, ...)\n"
		"  --mem MIB             guest memory in MiB (default 128)\n"
		"  --cpus N              vCPUs (default 1)\n"
		"  --cmdline STR         kernel command line (default: %s)\n"
		"  --initrd FILE         initial ramdisk\n"
		"  --vsock UDS           virtio-vsock; host side on unix socket UDS\n"
		"  --vsock-cid N         guest CID (default 3)\n"
		"  --tap NAME            virtio-net on TAP device NAME (needs CAP_NET_ADMIN)\n"
		"  --control SOCK        control socket (JSON lines: pause, resume, stop,\n"
		"                        status, events)\n"
		"  --events-log FILE     append every VM event to FILE as JSON lines\n"
		"  --cpu-template T      host (default) or baseline\n"
		"  --serial-log FILE     console to FILE instead of stdout\n"
		"  --no-seccomp          do not install the seccomp filter (debugging)\n"
		"  --no-ioeventfd        handle virtio notifications and interrupts in the\n"
		"                        vCPU exit path instead of ioeventfd/irqfd (debugging)\n"
		"  --no-coalesced-io     every serial byte exits to the VMM, instead of being\n"
		"                        queued by KVM and replayed (debugging)\n"
		"  --snapshot-on T       capture trigger: first-listen, nth-listen:N,\n"
		"                        listen-port:P, userspace-ready or manual; the VM\n"
		"                        pauses at that exit and is written to --snapshot-out\n"
		"                        (without it, waits paused for 'lttle snapshot')\n"
		"  --snapshot-out FILE   where the trigger's snapshot goes; then the VM stops\n"
		"  --keep-running        after the trigger's snapshot, continue instead\n"
		"  --help                this text\n",
		DEFAULT_CMDLINE);
}

/* Resolves an image reference through 'lttle build REF --format ext4',
 * whose last stdout line is the built image's path. */
static char *resolve_ref(const char *ref)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		lt_fail_errno("pipe");
		return NULL;
	}
	/* The build's errors go to a memfd: they become part of our one line. */
	int errfd = memfd_create("lttle-build-stderr", MFD_CLOEXEC);
	pid_t pid = fork();
	if (pid < 0) {
		lt_fail_errno("fork");
		close(p[0]);
		close(p[1]);
		if (errfd >= 0)
			close(errfd);
		return NULL;
	}
	if (pid == 0) {
		dup2(p[1], 1);
		if (errfd >= 0)
			dup2(errfd, 2);
		execl("/proc/self/exe", "lttle", "build", ref, "--format", "ext4", "--quiet", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	struct lt_buf out = {.limit = 1 << 20};
	char buf[4096];
	ssize_t n;
	while ((n = read(p[0], buf, sizeof(buf))) > 0)
		if (lt_buf_append(&out, buf, (size_t)n) < 0)
			break;
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	char *path = NULL;
	char why[256] = "";
	if (errfd >= 0) {
		ssize_t k = pread(errfd, why, sizeof(why) - 1, 0);
		why[k > 0 ? k : 0] = '\0';
		why[strcspn(why, "\n")] = '\0';
		close(errfd);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		lt_fail("'%s' is not an image file, and building it failed: %s", ref,
			why[0] ? why : "lttle build exited with an error");
	} else if (lt_buf_cstr(&out) == 0) {
		char *s = (char *)out.data;
		size_t len = out.len;
		while (len && (s[len - 1] == '\n' || s[len - 1] == '\r'))
			s[--len] = '\0';
		char *last = strrchr(s, '\n');
		last = last ? last + 1 : s;
		if (*last && access(last, R_OK) == 0)
			path = lt_strdup(last);
		else
			lt_fail("lttle build %s did not print an image path", ref);
	}
	lt_buf_free(&out);
	return path;
}

static int open_out(const char *path, int *fd)
{
	*fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (*fd < 0)
		return lt_fail_errno("%s", path);
	return 0;
}

enum {
	OPT_ROOTFS = 256, OPT_RO, OPT_OVERLAY, OPT_DISK, OPT_CMDLINE, OPT_EVENTS, OPT_SERIAL_LOG,
	OPT_NO_SECCOMP, OPT_HELP, OPT_OVERLAY_FILE, OPT_OVERLAY_TMP,
	OPT_SNAP_ON, OPT_SNAP_OUT, OPT_KEEP, /* snapshot capture (vmproc.c) */
};

static const struct option opts[] = {
	LT_VM_CLI_OPTIONS,
	{"rootfs", required_argument, 0, OPT_ROOTFS},
	{"ro", no_argument, 0, OPT_RO},
	{"overlay", optional_argument, 0, OPT_OVERLAY},
	{"overlay-file", required_argument, 0, OPT_OVERLAY_FILE},
	{"overlay-tmp", required_argument, 0, OPT_OVERLAY_TMP},
	{"disk", required_argument, 0, OPT_DISK},
	{"cmdline", required_argument, 0, OPT_CMDLINE},
	{"events-log", required_argument, 0, OPT_EVENTS},
	{"serial-log", required_argument, 0, OPT_SERIAL_LOG},
	{"no-seccomp", no_argument, 0, OPT_NO_SECCOMP},
	{"help", no_argument, 0, OPT_HELP},
	{"snapshot-on", required_argument, 0, OPT_SNAP_ON},
	{"snapshot-out", required_argument, 0, OPT_SNAP_OUT},
	{"keep-running", no_argument, 0, OPT_KEEP},
	{0, 0, 0, 0},
};

struct run_args {
	const char *rootfs, *overlay, *cmdline, *serial_log, *events_log;
	const char *disks[LT_VM_MAX_DISKS - 1];
	int ndisks;
	bool ro, overlay_tmp, no_seccomp;
	const char *mem, *cpus, *vsock_cid, *template;
	struct vmproc_opts snap; /* --snapshot-on: the VM host runs the VM */
};

static int parse(int argc, char **argv, struct lt_vm_config *cfg, struct run_args *a)
{
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int r = lt_vm_cli_option(c, optarg, cfg);
		if (r < 0)
			return cli_usage("run", "%s", lt_errmsg());
		if (r > 0) {
			/* As given, to hand on to lttle-vmm. */
			if (c == LT_VM_OPT_MEM)
				a->mem = optarg;
			else if (c == LT_VM_OPT_CPUS)
				a->cpus = optarg;
			else if (c == LT_VM_OPT_VSOCK_CID)
				a->vsock_cid = optarg;
			else if (c == LT_VM_OPT_TEMPLATE)
				a->template = optarg;
			continue;
		}
		switch (c) {
		case OPT_ROOTFS: a->rootfs = optarg; break;
		case OPT_RO: a->ro = true; break;
		case OPT_OVERLAY:
			if (optarg)
				a->overlay = optarg;
			else
				a->overlay_tmp = true;
			break;
		case OPT_OVERLAY_FILE: a->overlay = optarg; break;
		case OPT_OVERLAY_TMP: /* internal: a temporary overlay to remove */
			a->overlay = optarg;
			a->overlay_tmp = true;
			break;
		case OPT_DISK:
			if (a->ndisks >= (int)LT_ARRAY_LEN(a->disks))
				return cli_usage("run", "too many --disk options");
			a->disks[a->ndisks++] = optarg;
			break;
		case OPT_CMDLINE: a->cmdline = optarg; break;
		case OPT_EVENTS: a->events_log = optarg; break;
		case OPT_SERIAL_LOG: a->serial_log = optarg; break;
		case OPT_NO_SECCOMP: a->no_seccomp = true; break;
		case OPT_HELP: usage(stdout); return -1;
		case OPT_SNAP_ON:
			if (lt_trigger_parse(optarg, &a->snap.trigger) < 0)
				return cli_usage("run", "%s", lt_errmsg());
			break;
		case OPT_SNAP_OUT: a->snap.snapshot_out = optarg; break;
		case OPT_KEEP: a->snap.keep_running = true; break;
		default: return cli_usage("run", "bad option");
		}
	}
	if (optind < argc)
		return cli_usage("run", "unexpected argument '%s'", argv[optind]);
	if (!cfg->kernel)
		return cli_usage("run", "--kernel is required");
	if ((a->overlay || a->overlay_tmp || a->ro) && !a->rootfs)
		return cli_usage("run", "--overlay and --ro need --rootfs");
	if ((a->snap.snapshot_out || a->snap.keep_running) && !a->snap.trigger.kind)
		return cli_usage("run", "--snapshot-out and --keep-running need --snapshot-on");
	if (a->snap.trigger.kind && !a->snap.snapshot_out && !cfg->control)
		return cli_usage("run", "--snapshot-on needs --snapshot-out or --control");
	return 0;
}

static char *make_cmdline(const struct run_args *a, bool is_ref)
{
	struct lt_buf b = {0};
	lt_buf_printf(&b, "%s", a->cmdline ? a->cmdline : DEFAULT_CMDLINE);
	if (a->rootfs && !strstr((char *)b.data, "root="))
		lt_buf_printf(&b, " root=/dev/vda %s", a->ro ? "ro" : "rw");
	if (is_ref && !strstr((char *)b.data, "init="))
		lt_buf_printf(&b, " init=%s", LT_GUEST_INIT_PATH);
	if (lt_buf_cstr(&b) < 0) {
		lt_buf_free(&b);
		return NULL;
	}
	return (char *)b.data;
}

/* Runs the VM in the lean lttle-vmm, with canonical options: the resolved
 * rootfs path and the final command line. Without it (or with
 * LTTLE_VMM_INPROC=1) the same code runs in this process. */
static int run_vmm(const struct lt_vm_config *cfg, const struct run_args *a, const char *rootfs,
		   const char *cmdline)
{
	const char *v[64];
	int n = 0;
#define ARG(x) (v[n++] = (x))
#define OPT(name, val) do { if (val) { ARG(name); ARG(val); } } while (0)
	ARG("lttle-vmm");
	OPT("--kernel", cfg->kernel);
	OPT("--rootfs", rootfs);
	if (a->ro)
		ARG("--ro");
	if (a->overlay_tmp)
		OPT("--overlay-tmp", a->overlay);
	else if (a->overlay)
		OPT("--overlay-file", a->overlay);
	for (int i = 0; i < a->ndisks; i++)
		OPT("--disk", a->disks[i]);
	OPT("--mem", a->mem);
	OPT("--cpus", a->cpus);
	OPT("--cmdline", cmdline);
	OPT("--initrd", cfg->initrd);
	OPT("--vsock", cfg->vsock_uds);
	OPT("--vsock-cid", a->vsock_cid);
	OPT("--tap", cfg->tap);
	OPT("--control", cfg->control);
	OPT("--events-log", a->events_log);
	OPT("--cpu-template", a->template);
	OPT("--serial-log", a->serial_log);
	if (a->no_seccomp)
		ARG("--no-seccomp");
	if (cfg->no_ioeventfd)
		ARG("--no-ioeventfd");
	if (cfg->no_coalesced_io)
		ARG("--no-coalesced-io");
	v[n] = NULL;
#undef OPT
#undef ARG
	char *vmm = getenv("LTTLE_VMM_INPROC") ? NULL : cli_find_libexec("lttle-vmm");
	if (vmm) {
		fflush(NULL);
		execv(vmm, (char *const *)v);
		lt_warn("run: cannot exec %s (%s), running in-process", vmm, strerror(errno));
		free(vmm);
	}
	lt_clear_error();
	cli_reset_getopt();
	return lt_vmm_main(n, (char **)v);
}


int cmd_run(int argc, char **argv)
{
	struct lt_vm_config cfg;
	struct run_args a;
	memset(&a, 0, sizeof(a));
	lt_vm_config_init(&cfg);
	cfg.serial_out_fd = 1;
	int rc = parse(argc, argv, &cfg, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;

	char *rootfs_path = NULL, *tmp_overlay = NULL, *cmdline = NULL;
	int serial_fd = -1, ret = 1;
	bool is_ref = false;
	if (a.rootfs) {
		struct stat st;
		if (stat(a.rootfs, &st) == 0) {
			rootfs_path = lt_strdup(a.rootfs);
		} else {
			is_ref = true;
			rootfs_path = resolve_ref(a.rootfs);
		}
		if (!rootfs_path)
			goto out;
	}
	cmdline = make_cmdline(&a, is_ref);
	if (!cmdline)
		goto out;
	cfg.cmdline = cmdline;
	if (a.overlay_tmp) {
		/* exec keeps the pid: the directory stays this run's. */
		char *dir = lt_sprintf("%s/instances/run-%d", lt_home(), (int)getpid());
		if (!dir || lt_mkdir_p(dir, 0700) < 0) {
			free(dir);
			goto out;
		}
		tmp_overlay = lt_path_join(dir, "rootfs.overlay");
		free(dir);
		if (!tmp_overlay)
			goto out;
		a.overlay = tmp_overlay;
	}
	if (!a.snap.trigger.kind) {
		/* lttle-vmm's code runs the VM and removes the temporary overlay. */
		ret = run_vmm(&cfg, &a, rootfs_path, cmdline);
		free(tmp_overlay);
		tmp_overlay = NULL;
		goto done;
	}
	/* A snapshot capture runs in-process, under the VM host. */
	lt_vm_config_disks(&cfg, rootfs_path, a.ro, a.overlay, a.disks, a.ndisks);
	if (a.serial_log) {
		if (open_out(a.serial_log, &serial_fd) < 0)
			goto out;
		cfg.serial_out_fd = serial_fd;
	}
	if (isatty(0))
		cfg.serial_in_fd = 0;
	a.snap.control = cfg.control;
	a.snap.events_log = a.events_log;
	a.snap.no_seccomp = a.no_seccomp;
	ret = vmproc_run_boot(&cfg, &a.snap);
	goto done;
out:
	cli_fail("run");
done:
	if (tmp_overlay) {
		unlink(tmp_overlay);
		char *slash = strrchr(tmp_overlay, '/');
		if (slash) {
			*slash = '\0';
			rmdir(tmp_overlay); /* the run-<pid> directory */
		}
	}
	if (serial_fd >= 0)
		close(serial_fd);
	free(rootfs_path);
	free(tmp_overlay);
	free(cmdline);
	return ret;
}
