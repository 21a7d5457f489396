/* VM processes run by the VM host (src/snapshot, "VM host"): the parts
 * lttle restore, lttle vmm-shell and lttle run --snapshot-on share. */
#ifndef LTTLE_VMPROC_H
#define LTTLE_VMPROC_H

#include "snapshot/snapshot.h"
#include "vmm/vmm.h"

/* Options every VM-host process takes. */
struct vmproc_opts {
	const char *control, *vsock, *serial_log, *events_log;
	int control_fd; /* --control-fd (0: none) */
	const char *rootfs; /* restore: replaces disk 0 (same size) */
	const char *cache_dir;
	enum lt_vmsnap_mem mem;
	uint64_t record_ws_ms;
	bool no_seccomp;
	/* capture at a trigger (lttle run --snapshot-on) */
	struct lt_trigger trigger;
	const char *snapshot_out;
	bool keep_running;
};

/* Options lttle restore and lttle vmm-shell share (getopt_long values). */
enum {
	VMPROC_OPT_MEMORY = 300, VMPROC_OPT_CACHE, VMPROC_OPT_VSOCK, VMPROC_OPT_CONTROL,
	VMPROC_OPT_ROOTFS, VMPROC_OPT_WS, VMPROC_OPT_SERIAL, VMPROC_OPT_EVENTS,
	VMPROC_OPT_NO_SECCOMP, VMPROC_OPT_CONTROL_FD,
};
#define VMPROC_COMMON_OPTIONS                                                     \
	{"memory", required_argument, 0, VMPROC_OPT_MEMORY},                      \
	{"cache-dir", required_argument, 0, VMPROC_OPT_CACHE},                    \
	{"vsock", required_argument, 0, VMPROC_OPT_VSOCK},                        \
	{"control", required_argument, 0, VMPROC_OPT_CONTROL},                    \
	{"rootfs", required_argument, 0, VMPROC_OPT_ROOTFS},                      \
	{"record-working-set", required_argument, 0, VMPROC_OPT_WS},              \
	{"serial-log", required_argument, 0, VMPROC_OPT_SERIAL},                  \
	{"events-log", required_argument, 0, VMPROC_OPT_EVENTS},                  \
	{"no-seccomp", no_argument, 0, VMPROC_OPT_NO_SECCOMP},                    \
	{"control-fd", required_argument, 0, VMPROC_OPT_CONTROL_FD}
/* 1 if c is a common option (stored in o), 0 if not, -1 after a usage
 * message for a bad value. */
int vmproc_parse_common(const char *cmd, int c, const char *arg, struct vmproc_opts *o);

/* Fills cfg from a snapshot's VM config with o's overrides, checking the
 * rootfs identity (size and mtime at capture) and the vsock device. The
 * strings in cfg point into c and o. */
int vmproc_config_from_snapshot(const struct lt_vmsnap_config *c, const struct vmproc_opts *o,
				struct lt_vm_config *cfg);
/* Opens serial/event logs (stdout by default) into cfg and hopts. */
int vmproc_open_logs(const struct vmproc_opts *o, struct lt_vm_config *cfg, int *serial_fd,
		     int *events_fd);
/* Host options from o. */
void vmproc_host_opts(const struct vmproc_opts *o, int events_fd, struct lt_vmhost_opts *ho);
/* Creates the VM (hooked to h), runs it to the end with signals stopping it;
 * restore_path: restore that snapshot (s already open) first; shell: wait
 * for a "restore" command; neither: boot. Returns the exit code to use. */
int vmproc_run(const char *cmd, struct lt_vm_config *cfg, struct lt_vmhost *h,
	       const char *restore_path, struct lt_snap *s, enum lt_vmsnap_mem mem, bool shell);
/* lttle run --snapshot-on: boots cfg under the VM host. Exit code. */
int vmproc_run_boot(struct lt_vm_config *cfg, const struct vmproc_opts *o);
/* In the lttle CLI: execs the lean static lttle-vmhost (beside the lttle
 * binary) with "sub" and the same arguments, unless LTTLE_VMM_INPROC is
 * set or it is missing. Returns only when it did not exec. */
void vmproc_exec_lean(const char *sub, int argc, char **argv);
/* lttle restore's exit code when the snapshot itself is unusable (bad
 * file, checksum, version, template, VM config, shape): the engine marks
 * the app degraded on it. */
#define VMPROC_EXIT_BAD_SNAPSHOT 65
/* Exit code for a VM's end, as lttle run has it. */
int vmproc_exit_code(const char *cmd, const struct lt_vm_exit *ex);

#endif
