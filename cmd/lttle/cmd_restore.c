/* lttle restore: a fresh VM process from a snapshot file. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "vmproc.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle restore SNAPSHOT [OPTIONS]\n\n"
		"Builds a fresh VM in this process from SNAPSHOT (made by 'lttle run\n"
		"--snapshot-on' or 'lttle snapshot') and runs it: the guest continues exactly\n"
		"where it was captured. The console goes to stdout; exits like 'lttle run'.\n"
		"A damaged, truncated or mismatched snapshot is refused before any VM runs.\n\n"
		"  --memory S            eager (decompress everything first), lazy\n"
		"                        (userfaultfd: a chunk on its first touch) or cached\n"
		"                        (decompressed once into a cache file, mapped\n"
		"                        copy-on-write; shared by every restore). Default cached\n"
		"  --cache-dir DIR       cache for --memory cached (default\n"
		"                        $LTTLE_HOME/cache/memory)\n"
		"  --vsock UDS           host side of the guest's vsock device (required when the\n"
		"                        snapshot has one)\n"
		"  --control SOCK        control socket (JSON lines: status, pause, resume, stop,\n"
		"                        events, snapshot)\n"
		"  --rootfs IMG          use IMG as disk 0 instead of the snapshot's (same size)\n"
		"  --record-working-set MS  lazy restores: store the chunks the guest touches in\n"
		"                        its first MS ms in the snapshot; later restores fetch\n"
		"                        them first\n"
		"  --serial-log FILE     console to FILE instead of stdout\n"
		"  --events-log FILE     append VM events (JSON lines) to FILE\n"
		"  --no-seccomp          do not install the seccomp filter (debugging)\n"
		"  --help                this text\n");
}

enum { OPT_HELP = 256 };

static const struct option opts[] = {
	VMPROC_COMMON_OPTIONS,
	{"help", no_argument, 0, OPT_HELP},
	{0, 0, 0, 0},
};

int cmd_restore(int argc, char **argv)
{
	vmproc_exec_lean("restore", argc, argv);
	uint64_t t0 = lt_now_ns();
	struct vmproc_opts o;
	memset(&o, 0, sizeof(o));
	o.mem = LT_VMSNAP_CACHED;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == OPT_HELP) {
			usage(stdout);
			return 0;
		}
		int r = vmproc_parse_common("restore", c, optarg, &o);
		if (r < 0)
			return 2;
		if (r == 0)
			return cli_usage("restore", "bad option");
	}
	if (optind + 1 != argc)
		return cli_usage("restore", "expected one SNAPSHOT argument");
	if (o.record_ws_ms && o.mem != LT_VMSNAP_LAZY)
		return cli_usage("restore", "--record-working-set needs --memory lazy");
	const char *path = argv[optind];

	struct lt_snap *s = NULL;
	struct lt_vmsnap_config sc;
	memset(&sc, 0, sizeof(sc));
	const char *json;
	int serial_fd = -1, events_fd = -1, ret = 1;
	struct lt_vmhost *h = NULL;
	if (lt_snap_open(&s, path, NULL) < 0)
		goto bad;
	json = lt_snap_config(s);
	if (!json) {
		lt_fail("snapshot %s has no VM config section", path);
		goto bad;
	}
	if (lt_vmsnap_config_decode(json, strlen(json), &sc) < 0) {
		lt_fail_ctx("snapshot %s", path);
		goto bad;
	}
	struct lt_vm_config cfg;
	lt_vm_config_init(&cfg);
	if (vmproc_config_from_snapshot(&sc, &o, &cfg) < 0) {
		lt_fail_ctx("snapshot %s", path);
		goto fail;
	}
	if (vmproc_open_logs(&o, &cfg, &serial_fd, &events_fd) < 0)
		goto fail;
	struct lt_vmhost_opts ho;
	vmproc_host_opts(&o, events_fd, &ho);
	ho.t0_ns = t0;
	if (lt_vmhost_new(&ho, &h) < 0)
		goto fail;
	ret = vmproc_run("restore", &cfg, h, path, s, o.mem, false);
	s = NULL; /* the host has it */
	goto done;
bad:
	ret = cli_fail("restore");
	ret = VMPROC_EXIT_BAD_SNAPSHOT;
	lt_snap_close(s);
	goto done;
fail:
	ret = cli_fail("restore");
	lt_snap_close(s);
done:
	lt_vmhost_free(h);
	lt_vmsnap_config_free(&sc);
	if (serial_fd >= 0)
		close(serial_fd);
	if (events_fd >= 0)
		close(events_fd);
	return ret;
}
