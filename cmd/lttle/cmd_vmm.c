/* lttle vmm-shell: a pre-made VM process waiting for a restore. Started by
 * the lttle engine so that process start, VM creation (memory slots before
 * the irqchip, vCPUs) and the seccomp filter are off the wake path. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "vmproc.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle vmm-shell --control SOCK (--like SNAPSHOT | --mem MIB) [OPTIONS]\n\n"
		"Internal: creates a VM (memory, irqchip, vCPUs, devices), loads the seccomp\n"
		"filter, then waits on SOCK for {\"cmd\":\"restore\",\"path\":FILE} (or the text line\n"
		"'restore FILE [eager|lazy|cached]') and runs the restored guest. The VM's\n"
		"shape comes from --like (a snapshot of the same app) or the options below.\n\n"
		"  --like SNAPSHOT       take memory, vCPUs, CPU template and devices from it\n"
		"  --mem MIB             guest memory (without --like)\n"
		"  --cpus N              vCPUs (without --like; default 1)\n"
		"  --cpu-template T      host (default) or baseline (without --like)\n"
		"  --memory S            default strategy for restores: eager, lazy, cached\n"
		"                        (default cached)\n"
		"  --cache-dir DIR       --memory cached cache directory\n"
		"  --vsock UDS           host side of the vsock device\n"
		"  --rootfs IMG          disk 0 (with --like: instead of the snapshot's)\n"
		"  --record-working-set MS, --serial-log FILE, --events-log FILE, --no-seccomp\n"
		"                        as for 'lttle restore'\n"
		"  --help                this text\n");
}

enum { OPT_LIKE = 256, OPT_MEM, OPT_CPUS, OPT_TEMPLATE, OPT_HELP };

static const struct option opts[] = {
	VMPROC_COMMON_OPTIONS,
	{"like", required_argument, 0, OPT_LIKE},
	{"mem", required_argument, 0, OPT_MEM},
	{"cpus", required_argument, 0, OPT_CPUS},
	{"cpu-template", required_argument, 0, OPT_TEMPLATE},
	{"help", no_argument, 0, OPT_HELP},
	{0, 0, 0, 0},
};

/* The shape from a snapshot's config (its memory is not read). */
static int shape_from(const char *like, struct lt_vmsnap_config *sc)
{
	struct lt_snap *s;
	if (lt_snap_open(&s, like, NULL) < 0)
		return -1;
	const char *json = lt_snap_config(s);
	int rc = json ? lt_vmsnap_config_decode(json, strlen(json), sc)
		      : lt_fail("snapshot %s has no VM config section", like);
	lt_snap_close(s);
	return rc < 0 ? lt_fail_ctx("snapshot %s", like) : 0;
}

int cmd_vmm_shell(int argc, char **argv)
{
	vmproc_exec_lean("vmm-shell", argc, argv);
	struct vmproc_opts o;
	memset(&o, 0, sizeof(o));
	o.mem = LT_VMSNAP_CACHED;
	const char *like = NULL;
	struct lt_vm_config cfg;
	lt_vm_config_init(&cfg);
	bool have_mem = false;
	uint64_t v;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_LIKE: like = optarg; break;
		case OPT_MEM:
			if (lt_parse_u64(optarg, &v) < 0 || v < 4 || v > (1ULL << 20))
				return cli_usage("vmm-shell", "--mem takes MiB (4..1048576)");
			cfg.mem_bytes = v << 20;
			have_mem = true;
			break;
		case OPT_CPUS:
			if (lt_parse_u64(optarg, &v) < 0 || v < 1 || v > LT_VM_MAX_VCPUS)
				return cli_usage("vmm-shell", "--cpus takes 1..%d", LT_VM_MAX_VCPUS);
			cfg.vcpus = (int)v;
			break;
		case OPT_TEMPLATE:
			if (lt_cpu_template_parse(optarg, &cfg.cpu_template) < 0)
				return cli_usage("vmm-shell", "%s", lt_errmsg());
			break;
		case OPT_HELP: usage(stdout); return 0;
		default: {
			int r = vmproc_parse_common("vmm-shell", c, optarg, &o);
			if (r < 0)
				return 2;
			if (r == 0)
				return cli_usage("vmm-shell", "bad option");
		}
		}
	}
	if (optind != argc)
		return cli_usage("vmm-shell", "unexpected argument '%s'", argv[optind]);
	if (!o.control && !o.control_fd)
		return cli_usage("vmm-shell", "--control (or --control-fd) is required");
	if (!like && !have_mem)
		return cli_usage("vmm-shell", "give --like SNAPSHOT or --mem MIB");

	struct lt_vmsnap_config sc;
	memset(&sc, 0, sizeof(sc));
	int serial_fd = -1, events_fd = -1, ret;
	struct lt_vmhost *h = NULL;
	if (like) {
		if (shape_from(like, &sc) < 0 || vmproc_config_from_snapshot(&sc, &o, &cfg) < 0)
			goto fail;
	} else {
		cfg.vsock_uds = o.vsock;
		lt_vm_config_disks(&cfg, o.rootfs, true, NULL, NULL, 0);
	}
	if (vmproc_open_logs(&o, &cfg, &serial_fd, &events_fd) < 0)
		goto fail;
	struct lt_vmhost_opts ho;
	vmproc_host_opts(&o, events_fd, &ho);
	if (lt_vmhost_new(&ho, &h) < 0)
		goto fail;
	ret = vmproc_run("vmm-shell", &cfg, h, NULL, NULL, o.mem, true);
	goto done;
fail:
	ret = cli_fail("vmm-shell");
done:
	lt_vmhost_free(h);
	lt_vmsnap_config_free(&sc);
	if (serial_fd >= 0)
		close(serial_fd);
	if (events_fd >= 0)
		close(events_fd);
	return ret;
}

/* lttle-vmhost boot: a cold boot under the VM host, for the lttle engine
 * (lttle run --snapshot-on is the user-facing form). Internal. */
enum { OPT_KERNEL = 400, OPT_INITRD, OPT_CMDLINE, OPT_SNAP_ON, OPT_SNAP_OUT, OPT_KEEP,
       OPT_RW };

static const struct option boot_opts[] = {
	VMPROC_COMMON_OPTIONS,
	{"kernel", required_argument, 0, OPT_KERNEL},
	{"initrd", required_argument, 0, OPT_INITRD},
	{"cmdline", required_argument, 0, OPT_CMDLINE},
	{"mem", required_argument, 0, OPT_MEM},
	{"cpus", required_argument, 0, OPT_CPUS},
	{"cpu-template", required_argument, 0, OPT_TEMPLATE},
	{"snapshot-on", required_argument, 0, OPT_SNAP_ON},
	{"snapshot-out", required_argument, 0, OPT_SNAP_OUT},
	{"keep-running", no_argument, 0, OPT_KEEP},
	{"rootfs-rw", no_argument, 0, OPT_RW},
	{"help", no_argument, 0, OPT_HELP},
	{0, 0, 0, 0},
};

int cmd_vmm_boot(int argc, char **argv);
int cmd_vmm_boot(int argc, char **argv)
{
	struct vmproc_opts o;
	memset(&o, 0, sizeof(o));
	struct lt_vm_config cfg;
	lt_vm_config_init(&cfg);
	bool rw = false;
	uint64_t v;
	int c;
	while ((c = getopt_long(argc, argv, "", boot_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL: cfg.kernel = optarg; break;
		case OPT_INITRD: cfg.initrd = optarg; break;
		case OPT_CMDLINE: cfg.cmdline = optarg; break;
		case OPT_MEM:
			if (lt_parse_u64(optarg, &v) < 0 || v < 4 || v > (1ULL << 20))
				return cli_usage("boot", "--mem takes MiB (4..1048576)");
			cfg.mem_bytes = v << 20;
			break;
		case OPT_CPUS:
			if (lt_parse_u64(optarg, &v) < 0 || v < 1 || v > LT_VM_MAX_VCPUS)
				return cli_usage("boot", "--cpus takes 1..%d", LT_VM_MAX_VCPUS);
			cfg.vcpus = (int)v;
			break;
		case OPT_TEMPLATE:
			if (lt_cpu_template_parse(optarg, &cfg.cpu_template) < 0)
				return cli_usage("boot", "%s", lt_errmsg());
			break;
		case OPT_SNAP_ON:
			if (lt_trigger_parse(optarg, &o.trigger) < 0)
				return cli_usage("boot", "%s", lt_errmsg());
			break;
		case OPT_SNAP_OUT: o.snapshot_out = optarg; break;
		case OPT_KEEP: o.keep_running = true; break;
		case OPT_RW: rw = true; break;
		case OPT_HELP:
			printf("usage: lttle-vmhost boot --kernel K [--initrd F] [--rootfs IMG "
			       "[--rootfs-rw]] [--cmdline S] [--mem MIB] [--cpus N] [--snapshot-on T "
			       "[--snapshot-out F] [--keep-running]] [--vsock UDS] [--control SOCK | "
			       "--control-fd N] [--serial-log F] [--events-log F]\n");
			return 0;
		default: {
			int r = vmproc_parse_common("boot", c, optarg, &o);
			if (r < 0)
				return 2;
			if (r == 0)
				return cli_usage("boot", "bad option");
		}
		}
	}
	if (optind != argc || !cfg.kernel)
		return cli_usage("boot", "--kernel is required, and nothing else");
	cfg.vsock_uds = o.vsock;
	lt_vm_config_disks(&cfg, o.rootfs, !rw, NULL, NULL, 0);
	int serial_fd = -1, events_fd = -1, ret;
	struct lt_vmhost *h = NULL;
	struct lt_vmhost_opts ho;
	if (vmproc_open_logs(&o, &cfg, &serial_fd, &events_fd) < 0)
		goto fail;
	vmproc_host_opts(&o, events_fd, &ho);
	if (lt_vmhost_new(&ho, &h) < 0)
		goto fail;
	ret = vmproc_run("boot", &cfg, h, NULL, NULL, LT_VMSNAP_EAGER, false);
	goto done;
fail:
	ret = cli_fail("boot");
done:
	lt_vmhost_free(h);
	if (serial_fd >= 0)
		close(serial_fd);
	if (events_fd >= 0)
		close(events_fd);
	return ret;
}
