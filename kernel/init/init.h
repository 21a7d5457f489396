/* lttle-init: the guest's PID 1 (static binary, injected by `lttle build`
 * at /.lttle/init). main.c wires these pieces together; each piece is a
 * plain function so the host unit tests can run it as ordinary userspace
 * (tests/unit/test_init_*.c).
 *
 * Everything read here (kernel cmdline, image config, /etc/passwd) comes
 * from the image or the VMM and is treated as hostile: sizes and counts
 * are bounded and errors name the field at fault.
 */
#ifndef LTTLE_INIT_H
#define LTTLE_INIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/util.h"
#include "vmm/guest_abi.h"

#define LI_MAX_ARGS 1024       /* argv / env entries from one source */
#define LI_MAX_STR (64 * 1024) /* one string from the config */
#define LI_CONFIG_MAX (1 << 20)
#define LI_MAX_PORTS 64
#define LI_MAX_GROUPS 256
#define LI_ETC_MAX (4 << 20) /* /etc/passwd, /etc/group */

/* NULL-terminated string vector. */
void li_strv_free(char **v);
size_t li_strv_len(char *const *v);
/* Appends a copy of s[0..n); at most LI_MAX_ARGS entries. */
int li_strv_push(char ***v, const char *s, size_t n);

/* ---- kernel command line (cmdline.c) ---------------------------------- */

/* AUTO: the kernel's hook when it has one (/proc/lttle), else seccomp. */
enum li_hook { LI_HOOK_AUTO, LI_HOOK_SECCOMP, LI_HOOK_OFF };
enum li_overlay { LI_OVL_AUTO, LI_OVL_NONE, LI_OVL_TMPFS, LI_OVL_DISK };

struct li_cmdline {
	/* argv overrides; *_set tells "given, maybe empty" from "absent". */
	char **entrypoint;
	bool entrypoint_set;
	char **cmd;
	bool cmd_set;
	char **env; /* lttle.env=K=V, repeatable; NULL-terminated */
	char *workdir;
	char *user;
	char *hostname;
	uint16_t ports[LI_MAX_PORTS];
	size_t n_ports;
	enum li_hook hook;
	enum li_overlay overlay;
	char *overlay_dev; /* LI_OVL_DISK: e.g. /dev/vdb */
	bool net;          /* ip=... configures a non-loopback interface */
	char *ip;          /* this guest's address from ip=, or NULL */
	char **dns;        /* lttle.dns=A,B, NULL-terminated */
	char *events;      /* lttle.events=PATH: events to a file, not the port */
	bool log_console;  /* lttle.log=console: init logs to stderr, not kmsg */
	char *restore_tty; /* lttle.restore_tty=ttyS1: the host's restore notices */
};

/* Parses /proc/cmdline text:
 *   lttle.entrypoint=WORDS lttle.cmd=WORDS  (split like a shell: blanks,
 *       'single quotes', backslash escapes; "double quotes" group a
 *       kernel parameter and are removed)
 *   lttle.env=K=V (repeatable)  lttle.workdir=DIR  lttle.user=U[:G]
 *   lttle.hostname=H  lttle.ports=P,Q  lttle.dns=A,B
 *   lttle.hook=auto|on|1|seccomp|off|0  (on = auto)
 *   lttle.overlay=auto|none|tmpfs|/dev/DISK
 *   lttle.events=PATH  lttle.log=kmsg|console  (running init outside a VM:
 *       event lines go to PATH instead of the guest port, logs to stderr)
 *   lttle.restore_tty=NAME  a tty under /dev ([A-Za-z0-9], at most 31
 *       characters) carrying the host's "!restored" lines (restore.c)
 *   ip=CLIENT:SERVER:GW:MASK:HOST:DEV:AUTOCONF[:DNS0:DNS1] (kernel IP_PNP)
 * Parameters after "--" belong to init's argv and are ignored. */
int li_cmdline_parse(const char *text, struct li_cmdline *out);
void li_cmdline_free(struct li_cmdline *c);
/* Shell-like word split (see above); NULL-terminated vector in *out. */
int li_split_words(const char *s, char ***out);
/* "80,443" -> ports, appended to ports[*n] (dedup, bounded). */
int li_parse_ports(const char *s, uint16_t *ports, size_t *n, size_t max);

/* ---- image config (config.c) ---------------------------------------- */

struct li_config {
	char **env;        /* "K=V" */
	char **entrypoint; /* NULL when absent */
	char **cmd;        /* NULL when absent */
	char *workdir;     /* "" when absent */
	char *user;        /* "" when absent */
	uint16_t ports[LI_MAX_PORTS];
	size_t n_ports;
};

/* Parses the JSON written by `lttle build` (LT_GUEST_CONFIG_PATH):
 * {"env":[..],"entrypoint":[..],"cmd":[..],"workdir":"","user":"",
 *  "exposed_ports":[80,"443/tcp",..], ...}; null means absent, unknown keys
 * are ignored. */
int li_config_parse(const char *json, size_t len, struct li_config *out);
int li_config_load(const char *path, struct li_config *out);
void li_config_free(struct li_config *c);

/* ---- users (user.c) --------------------------------------------------- */

struct li_user {
	uid_t uid;
	gid_t gid;
	gid_t groups[LI_MAX_GROUPS]; /* supplementary, gid first */
	size_t n_groups;
	char name[64]; /* "" for a numeric uid with no passwd entry */
	char home[256];
};

/* Resolves an OCI "user" ("", "name", "uid", with ":group" or ":gid")
 * like runc: names must exist in passwd/group; a numeric uid without an
 * entry gets gid 0 and home "/"; supplementary groups are those of
 * /etc/group listing the user's name. Missing files count as empty. */
int li_user_resolve(const char *passwd_path, const char *group_path, const char *spec,
		    struct li_user *out);

/* ---- mounts (mounts.c) ------------------------------------------------ */

enum li_mount_kind { LI_OP_MKDIR, LI_OP_MOUNT, LI_OP_PIVOT, LI_OP_SYMLINK };

struct li_mount_op {
	enum li_mount_kind kind;
	const char *source; /* MOUNT: source; SYMLINK: link target */
	const char *target; /* path acted on */
	const char *fstype;
	unsigned long flags;
	const char *data;   /* MOUNT options; MKDIR: unused */
	mode_t mode;        /* MKDIR */
	bool optional;      /* failure is logged, not fatal */
};

struct li_mount_opts {
	bool root_ro;           /* the kernel mounted / read-only */
	enum li_overlay overlay;
	const char *overlay_dev; /* LI_OVL_DISK */
};

/* Where the overlay is assembled before the pivot (a tmpfs mounted over
 * the image's /.lttle, which always exists). */
#define LI_STAGE "/.lttle"

#define LI_MOUNT_PLAN_MAX 40
/* The mount plan as a list of operations: overlay assembly (when the root
 * is read-only, or asked for) and pivot, then the API filesystems. Returns
 * the number of ops (<= max) or -1. Pure: no system calls. */
int li_mount_plan(const struct li_mount_opts *o, struct li_mount_op *ops, size_t max);
/* Does the overlay decision of the plan: true when an overlay is built. */
bool li_mount_uses_overlay(const struct li_mount_opts *o);
/* Runs a plan; the first failing required op stops it. */
int li_mount_exec(const struct li_mount_op *ops, size_t n);
/* One op as text ("mount overlay /.lttle/root (lowerdir=...)"), for logs
 * and tests. */
const char *li_mount_op_str(const struct li_mount_op *op, char *buf, size_t len);

/* ---- guest port (port.c) --------------------------------------------- */

enum li_port_kind { LI_PORT_NONE, LI_PORT_PROC, LI_PORT_RAW, LI_PORT_FD };

struct li_port {
	enum li_port_kind kind;
	int fd; /* PROC: /proc/lttle; FD: any fd (tests, host runs) */
};

/* Formats "EVENT[ ARGS]" (no '\n') into buf; -1 when it would not fit a
 * LT_GUEST_LINE_MAX line or contains a control character. */
int li_port_format(char *buf, size_t cap, const char *event, const char *fmt, ...)
	LT_PRINTF(4, 5);
/* Picks the writer: /proc/lttle (patched kernel) when present, else raw
 * port I/O (ioperm; needs CAP_SYS_RAWIO), else none. */
int li_port_open(struct li_port *p);
void li_port_close(struct li_port *p);
/* Sends one event line; errors are logged by the caller only. */
int li_port_send(struct li_port *p, const char *event, const char *fmt, ...) LT_PRINTF(3, 4);
/* Parses a host reply line. Returns 1 for "!restored WALL_NS HEX" (fills
 * wall_ns and seed), 0 for any other line. */
int li_port_parse_reply(const char *line, uint64_t *wall_ns, uint8_t seed[32]);

/* ---- restore notices on a tty (restore.c) ------------------------------ */

#define LI_RESTORE_SEED 32
/* "log" texts the reader sends (the QEMU engine matches them): the reader
 * is up (before the app starts); a notice was applied / failed. */
#define LI_RESTORE_READY "restore-reader ready"

/* Where a valid notice goes; tests inject their own. Each returns 0 or
 * -1 with lt_fail(). */
struct li_restore_sink {
	int (*set_clock)(void *ctx, uint64_t wall_ns);
	int (*add_entropy)(void *ctx, const uint8_t *seed, size_t n);
	void *ctx;
};
/* clock_settime(CLOCK_REALTIME); RNDADDENTROPY (credited) + RNDRESEEDCRNG. */
extern const struct li_restore_sink li_restore_sink_system;

/* Strict "!restored WALL_NS HEX64" (one optional trailing '\r'): WALL_NS
 * 1..2^63-1 in at most 19 digits, exactly 64 hex digits, single spaces,
 * nothing else. line[0..len) need not be NUL-terminated. 0 or -1. */
int li_restore_parse(const char *line, size_t len, uint64_t *wall_ns,
		     uint8_t seed[LI_RESTORE_SEED]);
/* Parses and applies one line: 1 applied, 0 not a valid notice (nothing
 * done), -1 a sink failed (entropy is still offered first). */
int li_restore_apply(const char *line, size_t len, const struct li_restore_sink *s);
/* Reads one '\n'-terminated line into buf (NUL-terminated, no '\n').
 * Returns its length, -2 when it did not fit cap - 1 bytes (the rest of
 * it was consumed), -1 on EOF or error. */
ssize_t li_restore_read_line(int fd, char *buf, size_t cap);
/* Applies notices from fd until it fails; reports through port. */
int li_restore_serve(int fd, const struct li_restore_sink *s, struct li_port *port);
/* Opens /dev/TTY raw and forks the reader ("lttle-restore"), then sends
 * "log " LI_RESTORE_READY; returns its pid, or 0 when tty is NULL or it
 * cannot start (logged). */
pid_t li_restore_start(const char *tty, struct li_port *port);

/* ---- seccomp listen()/bind() hook (seccomp.c) --------------------------- */

/* Installs the user-notification filter on listen() and bind() in the
 * calling process (inherited by what it execs) and returns the listener
 * fd. Needs CAP_SYS_ADMIN or no_new_privs. */
int li_seccomp_install(void);
/* Handles one pending notification on the listener: for AF_INET/AF_INET6
 * sockets it reports before/after through port and performs the call on
 * the target's socket (same socket, the target's CAP_NET_BIND_SERVICE),
 * replying with its result; anything else continues unchanged.
 * Returns 0, or -1 when the listener is gone. */
int li_seccomp_handle(int listener, struct li_port *port);
/* Passing the listener fd from the app child to init. */
int li_send_fd(int sock, int fd);
int li_recv_fd(int sock);

/* ---- ingress forwarder (forward.c) ------------------------------------ */

/* Opens a listening socket on port for one family: AF_VSOCK in the
 * guest, AF_INET (127.0.0.1) as the stand-in in tests. */
typedef int (*li_fwd_listen_fn)(uint16_t port);
int li_fwd_listen_vsock(uint16_t port);
int li_fwd_listen_tcp(uint16_t port);

struct li_fwd {
	int listen_fd[LI_MAX_PORTS];
	uint16_t target_port[LI_MAX_PORTS]; /* on 127.0.0.1 */
	size_t n;
	int stop_fd; /* readable -> li_fwd_run returns; -1: run forever */
	unsigned connect_timeout_ms; /* retry while the app is not listening */
};

/* Accepts on every listener and forwards each connection to 127.0.0.1
 * with splice() both ways (honouring half-close), one thread per
 * direction. Returns when stop_fd becomes readable. Ignores SIGPIPE for
 * the whole process (it runs in a process of its own in the guest). */
int li_fwd_run(struct li_fwd *f);
/* Forwards one established pair until both directions end; closes both.
 * SIGPIPE must be ignored. */
void li_fwd_pair(int a, int b);

/* ---- the app (app.c) -------------------------------------------------- */

/* entrypoint + cmd after cmdline overrides (an entrypoint override drops
 * the image cmd, as `docker run --entrypoint` does). */
int li_app_argv(const struct li_config *cfg, const struct li_cmdline *cl, char ***out);
/* Environment: defaults (PATH, HOME, HOSTNAME) < image env < lttle.env. */
int li_app_env(const struct li_config *cfg, const struct li_cmdline *cl,
	       const struct li_user *u, const char *hostname, char ***out);
/* getenv on a vector. */
const char *li_env_get(char *const *env, const char *key);
/* execve with a PATH search done in the app's own PATH; returns only on
 * failure (errno set). */
int li_exec(char *const *argv, char *const *env);

/* ---- network (net.c) -------------------------------------------------- */

int li_net_lo_up(void);
/* /etc/hosts and /etc/resolv.conf content. ip may be NULL. pnp is the
 * text of /proc/net/pnp (kernel ip= nameservers) or NULL; dns the
 * lttle.dns servers or NULL. resolv returns 0 with an empty buf when no
 * server is known. */
int li_net_hosts(const char *hostname, const char *ip, char *buf, size_t cap);
int li_net_resolv(const char *pnp, char *const *dns, char *buf, size_t cap);

/* ---- logging (main.c owns the sink) ----------------------------------- */

/* Init's log: "lttle-init: ..." to /dev/kmsg once available (so lines get
 * the kernel's timestamps on the console), else stderr. */
void li_log(const char *fmt, ...) LT_PRINTF(1, 2);
void li_log_use_kmsg(void);

#endif
