/* A test engine whose "VMs" are host processes (tests/bench/proxy_backend)
 * listening on 127.0.0.1: boot/restore spawn one, pause/resume are
 * SIGSTOP/SIGCONT, stop is SIGKILL, connect is TCP to its port. It follows
 * the engine contract exactly, so the proxy and pool can be tested end to
 * end without KVM. Not part of libproxy (lives under tools/). */
#ifndef LTTLE_PROC_ENGINE_H
#define LTTLE_PROC_ENGINE_H

#include "proxy/proxy.h"

struct proc_app_cfg {
	char backend[512];    /* path of proxy_backend */
	char mode[8];         /* http | echo */
	unsigned boot_ms;     /* cold boot delay inside the child */
	unsigned restore_ms;  /* restore delay inside the child */
	char static_addr[108]; /* non-empty: no processes; connect here (bench):
				  IP:PORT or unix:PATH */
};

/* Snapshots this engine accepts contain exactly this line. */
#define PROC_SNAPSHOT_MAGIC "lttle-proc-snapshot v1\n"

struct lt_engine *proc_engine_new(struct lt_loop *loop);
void proc_engine_free(struct lt_engine *e);
/* The child's pid (0 when none), for tests that kill instances. */
int proc_instance_pid(const struct lt_instance *inst);

#endif
