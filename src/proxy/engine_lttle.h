/* The lttle engine: lt_engine_ops on lttle's own VMM, one VM-host process
 * (lttle-vmhost: boot, restore, vmm-shell) per VM, driven through a
 * control socketpair (the VM host's JSON-line protocol, docs/snapshot.md).
 * Ingress is the VM's vsock unix socket: "CONNECT <port>\n" -> "OK <n>\n".
 *
 * Boot runs the guest to its capture trigger and completes there with the
 * VM paused at that exact exit: a snapshot op then captures that point and
 * lets the VM go on; any other op (connect, pause, stop) resumes it first.
 * Restores run in a fresh process or in a pre-made shell (process started,
 * VM and memory created, seccomp loaded, waiting for "restore FILE").
 * The entry point lt_engine_lttle_new() is declared in proxy.h. */
#ifndef LTTLE_ENGINE_LTTLE_H
#define LTTLE_ENGINE_LTTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/proxy.h"

struct lt_lttle_engine_opts {
	struct lt_loop *loop;  /* required: every op runs on it */
	const char *run_dir;   /* required: one directory per VM (sockets, logs);
				  keep it short, unix socket paths are bounded */
	const char *vmhost;    /* the lttle-vmhost binary (required) */
	const char *memory;    /* restore strategy: "cached" (default), "eager",
				  "lazy" */
	const char *cache_dir; /* memory cache (NULL: lttle's default) */
	uint64_t stop_timeout; /* stop: SIGKILL after (0: 2 s) */
	bool no_seccomp;
};

/* struct lt_engine *lt_engine_lttle_new(const struct lt_lttle_engine_opts *o);
 * is in proxy.h. Frees the engine, killing and reaping every VM process
 * (blocking; for shutdown and tests). */
void lt_engine_lttle_free(struct lt_engine *e);

/* Per-app configuration (the app spec's engine_cfg). */
struct lt_lttle_app {
	const char *kernel;  /* required */
	const char *rootfs;  /* disk image attached read-only as /dev/vda, or NULL */
	const char *initrd;  /* optional */
	const char *cmdline; /* kernel command line (as the guest needs it) */
	uint64_t mem;        /* bytes (0: 256 MiB) */
	uint32_t cpus;       /* 0: 1 */
	const char *trigger; /* capture trigger (NULL: "first-listen") */
};
/* Validates and deep-copies a (pair with engine_cfg_free = lt_lttle_app_free).
 * NULL with a message. */
void *lt_lttle_app_new(const struct lt_lttle_app *a);
void lt_lttle_app_free(void *cfg);

/* Facts about an instance this engine runs (tests, logs). */
struct lt_lttle_inst_info {
	int pid;
	const char *dir;
	const char *serial_log;
};
int lt_lttle_instance_info(const struct lt_instance *inst, struct lt_lttle_inst_info *info);

#endif
