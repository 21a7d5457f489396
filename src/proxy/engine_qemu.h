/* The QEMU engine: lt_engine_ops on qemu-system-x86_64 -M microvm (KVM
 * where usable, TCG otherwise). Snapshots are QEMU's own migration stream,
 * zstd-compressed, behind a small validated header; ingress is QEMU user
 * networking (hostfwd on 127.0.0.1, one fresh host port per instance and
 * guest port); the guest's trigger lines arrive through isa-debugcon on
 * the lttle guest port. docs/engine-qemu.md has the long form.
 *
 * The entry point lt_engine_qemu_new() is declared in proxy.h; the types
 * it and the daemon need live here. The lower half (QMP client, snapshot
 * header, guest line parser) is internal to src/proxy and exposed only so
 * the unit tests can drive it.
 */
#ifndef LTTLE_ENGINE_QEMU_H
#define LTTLE_ENGINE_QEMU_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy/proxy.h"

/* ---- engine ------------------------------------------------------------ */

enum lt_qemu_accel { LT_QEMU_ACCEL_AUTO, LT_QEMU_ACCEL_KVM, LT_QEMU_ACCEL_TCG };

struct lt_qemu_opts {
	struct lt_loop *loop;     /* required: every op runs on it */
	const char *run_dir;      /* required: per-VM dirs (logs, sockets) go here */
	const char *qemu;         /* binary; NULL: qemu-system-x86_64 from PATH */
	enum lt_qemu_accel accel; /* AUTO: KVM when the host has VT-x/AMD-V and
				     /dev/kvm opens, else TCG */
	uint64_t quit_timeout;    /* stop: QMP quit, SIGKILL after (0: 3 s) */
	int zstd_level;           /* snapshot compression (0: 3) */
	bool no_raw_cache;        /* don't keep "<snapshot>.raw", the decompressed
				     stream QEMU reads directly (faster restores,
				     the stream's size on disk) */
	uint64_t shell_defer;     /* new shells start this long after the last
				     restore ended (0: 300 ms under TCG, 20 ms
				     under KVM), so they don't take its CPU */
};

/* struct lt_engine *lt_engine_qemu_new(const struct lt_qemu_opts *o); is in
 * proxy.h. Frees the engine: every VM still running is killed and reaped
 * (blocking; for shutdown and tests). */
void lt_engine_qemu_free(struct lt_engine *e);
/* A new engine owns run_dir: VMs a previous process left behind there (it
 * died without stopping them; their QMP and trigger sockets died with it)
 * are killed and their directories removed. Only a directory whose "pid"
 * file names a live QEMU started as "lttle-<dirname>" is killed. Returns
 * how many processes it killed. lt_engine_qemu_new calls it. */
int lt_qemu_cleanup_orphans(const char *run_dir);
/* Which accelerator the engine uses and why ("tcg: no vmx/svm flag in
 * /proc/cpuinfo"), for `--engine auto` to print. */
const char *lt_engine_qemu_accel(const struct lt_engine *e);

/* Decides AUTO: true for KVM. why gets a one-line reason. */
bool lt_qemu_kvm_usable(char *why, size_t why_len);

/* ---- per-app configuration (the app spec's engine_cfg) ----------------- */

enum lt_qemu_trigger_kind {
	LT_QTRIG_FIRST_LISTEN,
	LT_QTRIG_NTH_LISTEN,
	LT_QTRIG_LISTEN_PORT,
	LT_QTRIG_READY,
	LT_QTRIG_MANUAL,
};
struct lt_qemu_trigger {
	enum lt_qemu_trigger_kind kind;
	uint32_t n;    /* NTH_LISTEN */
	uint16_t port; /* LISTEN_PORT */
};
/* "first-listen", "nth-listen:N", "listen-port:P", "userspace-ready",
 * "manual". -1 with a message otherwise. */
int lt_qemu_parse_trigger(const char *s, struct lt_qemu_trigger *t);

#define LT_QEMU_MAX_PORTS 16

struct lt_qemu_app {
	const char *kernel;      /* vmlinux or bzImage (required) */
	const char *rootfs;      /* squashfs/ext4 image, attached read-only as
				    /dev/vda; NULL: none (initrd only) */
	const char *rootfs_type; /* "squashfs", "ext4" or NULL (kernel probes) */
	const char *initrd;      /* optional */
	uint64_t mem;            /* bytes (0: 256 MiB) */
	uint32_t cpus;           /* 0: 1 */
	const char *cmdline;     /* extra kernel parameters, appended */
	const char *const *env;  /* NULL-terminated KEY=VALUE list (lttle.env=) */
	const uint16_t *ports;   /* guest ports forwarded from 127.0.0.1 */
	size_t nports;
	struct lt_qemu_trigger trigger;
	bool no_outbound;        /* user-net restrict=on: no traffic out */
};

/* Validates and deep-copies a into an engine_cfg for lt_app_spec (pair it
 * with engine_cfg_free = lt_qemu_app_free). NULL with a message. */
void *lt_qemu_app_new(const struct lt_qemu_app *a);
void lt_qemu_app_free(void *cfg);

/* ---- per-instance facts, for `lttle logs` and tests --------------------- */

struct lt_qemu_inst_info {
	int pid;                /* QEMU's pid, 0 when gone */
	const char *dir;        /* its run directory */
	const char *serial_log; /* the guest console */
	uint16_t host_port[LT_QEMU_MAX_PORTS]; /* per cfg port, 127.0.0.1 */
	size_t nports;
};
/* 0 and info filled for an instance this engine runs, else -1. */
int lt_qemu_instance_info(const struct lt_instance *inst, struct lt_qemu_inst_info *info);

/* ==== internal (src/proxy and unit tests) ================================ */

/* ---- QMP client ---------------------------------------------------------- */

/* A QMP connection on the loop: JSON lines, the greeting, then
 * qmp_capabilities (sent by the client itself), command/response matching
 * by id, and async events. Every byte from QEMU is bounded
 * (LT_QMP_LINE_MAX per message) and checked; a protocol violation closes
 * the connection. Callbacks run from the loop, never from inside a call. */
#define LT_QMP_LINE_MAX (64 * 1024)

struct lt_qmp;
struct lt_qmp_cbs {
	/* Capabilities negotiated (commands sent earlier are already on the
	 * wire). Optional. */
	void (*ready)(void *ctx);
	/* An async event; data may be NULL. Optional. */
	void (*event)(void *ctx, const char *name, json_t *data);
	/* The connection ended (EOF, error, protocol violation): every pending
	 * reply has been called with an error first. Called once. */
	void (*closed)(void *ctx, const char *why);
};
/* ret: the "return" value on success (borrowed), NULL on error;
 * err: NULL on success, else QEMU's error description or the reason the
 * command never got an answer. */
typedef void (*lt_qmp_reply_fn)(void *arg, json_t *ret, const char *err);

/* Takes ownership of fd (a connected stream socket). */
struct lt_qmp *lt_qmp_new(struct lt_loop *loop, int fd, const struct lt_qmp_cbs *cbs,
			  void *ctx);
/* Frees q and closes its socket. Pending replies are dropped uncalled.
 * Safe from inside any of q's callbacks. */
void lt_qmp_free(struct lt_qmp *q);
/* Queues a command; args (may be NULL) is stolen. pass_fd >= 0 is sent
 * with the command's first byte (SCM_RIGHTS, for getfd) and is owned by
 * q from here on, whatever happens. Commands queued before the greeting
 * go out right after qmp_capabilities. -1 if q is closed. */
int lt_qmp_command(struct lt_qmp *q, const char *name, json_t *args, int pass_fd,
		   lt_qmp_reply_fn fn, void *arg);
bool lt_qmp_ready(const struct lt_qmp *q);
/* The greeting's version ("7.2.22"), or "" before it. */
const char *lt_qmp_version(const struct lt_qmp *q);

/* ---- snapshot file header ------------------------------------------------ */

/* A QEMU-engine snapshot is:
 *   "LTQSNAP1" | u32 LE n | n bytes of JSON metadata | zstd frames of the
 *   QEMU migration stream
 * The metadata says what the stream needs to load (machine shape) and what
 * the guest was doing (its listening ports). */
#define LT_QSNAP_MAGIC "LTQSNAP1"
#define LT_QSNAP_META_MAX (16 * 1024)

struct lt_qsnap_meta {
	char qemu_version[32];
	char accel[8]; /* "kvm" / "tcg" */
	uint64_t mem;
	uint32_t cpus;
	uint64_t rootfs_size; /* 0: no rootfs */
	uint16_t listening[LT_QEMU_MAX_PORTS];
	size_t nlistening;
	uint64_t created_wall_ns;
	/* The guest's init reads restore notices and confirms them (it said
	 * QE_NOTICE_READY before the snapshot): a restore waits for the
	 * confirmation. Optional in the header ("notices": true). */
	bool notices;
};
/* Encodes the header into out (malloc'd). */
int lt_qsnap_header_encode(const struct lt_qsnap_meta *m, uint8_t **out, size_t *len);
/* Reads and validates the header at fd's current offset, leaving the
 * offset at the first zstd byte. what names the file in messages. */
int lt_qsnap_header_read(int fd, const char *what, struct lt_qsnap_meta *m);

/* ---- guest trigger lines -------------------------------------------------- */

enum lt_gline_kind {
	LT_GL_READY,
	LT_GL_LISTEN_BEFORE,
	LT_GL_LISTEN_AFTER,
	LT_GL_BIND_BEFORE,
	LT_GL_BIND_AFTER,
	LT_GL_EXIT,
	LT_GL_TRIGGER,
	LT_GL_HOLD,
	LT_GL_RELEASE,
	LT_GL_LOG,
	LT_GL_POWEROFF,
};
struct lt_gline {
	enum lt_gline_kind kind;
	uint16_t port;
	int32_t val;      /* RET or CODE */
	const char *text; /* LOG: points into the parsed line */
};
/* Parses one line (without its '\n'). -1 (no message: the guest is not
 * worth a log line per byte) for anything malformed. */
int lt_gline_parse(const char *line, struct lt_gline *g);
/* The line the engine writes on the guest's restore tty after a restore
 * (guest_abi.h): "!restored WALL_NS HEX64\n" into buf. Returns its length
 * or -1 when cap is too small. */
int lt_qemu_restore_notice(char *buf, size_t cap, uint64_t wall_ns, const uint8_t seed[32]);

/* Does g fire trigger t? *listens counts successful listens so far and is
 * updated. */
bool lt_qemu_trigger_fires(const struct lt_qemu_trigger *t, const struct lt_gline *g,
			   uint32_t *listens);

#endif
