/* The QEMU engine (see engine_qemu.h and docs/engine-qemu.md).
 *
 * One QEMU process per VM ("qvm"): an instance (booted or restored) or a
 * pre-made shell waiting in `-incoming defer`. Everything runs on the
 * loop: QEMU's QMP socket and the isa-debugcon trigger stream are
 * socketpairs handed to QEMU as fd= chardevs, its exit is watched through
 * a pidfd, and the only threads are the snapshot (de)compressors, which
 * stream the migration through a pipe and post back when done.
 *
 * Completions are never delivered from inside an op: op_finish() arms a
 * due-now timer, and timers fire in arming order, so failures of pending
 * ops always reach the pool before the stop that caused them.
 */
#include "proxy/engine_qemu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "vmm/guest_abi.h"

extern char **environ;

#define QE_DEFAULT_MEM (256ull << 20)
#define QE_CMDLINE_MAX 2048 /* x86 COMMAND_LINE_SIZE */
#define QE_TRIG_READ 4096
#define QE_REASON_MAX 480
#define QE_PIPE_SIZE (1 << 20)
/* The guest console is bounded: past this, serial.log becomes serial.log.1. */
#define QE_SERIAL_CAP (1u << 20)
/* The raw cache beside a snapshot: "LTQRAW01" | u64 LE created | u64 LE
 * snapshot size | u64 LE snapshot mtime ns | the QEMU stream. */
#define QE_RAW_MAGIC "LTQRAW01"
#define QE_RAW_HDR 32
/* The guest's address on QEMU user networking and its gateway/DNS. */
#define QE_GUEST_IP "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3"
/* The second UART (after the console's ttyS0) carries restore notices:
 * isa-debugcon cannot answer the guest's reads (guest_abi.h). */
#define QE_RESTORE_TTY "ttyS1"
/* The guest init's "log" lines about notices (kernel/init/restore.c):
 * its reader is up; a notice was applied or failed. A restore of a guest
 * that announced the reader completes on the confirmation, so no request
 * reaches it before the reseed; QE_NOTICE_WAIT bounds the wait. */
#define QE_NOTICE_READY "restore-reader ready"
#define QE_NOTICE_DONE "restored"
#define QE_NOTICE_FAILED "restore failed"
#define QE_NOTICE_WAIT LT_MS(2000)

/* ==== guest lines, triggers, snapshot header (pure helpers) ============= */

static bool parse_dec(const char *s, long long lo, long long hi, long long *out)
{
	if (!*s)
		return false;
	bool neg = *s == '-';
	const char *p = s + neg;
	if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 11)
		return false;
	long long v = 0;
	for (; *p; p++)
		v = v * 10 + (*p - '0');
	v = neg ? -v : v;
	if (v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

int lt_gline_parse(const char *line, struct lt_gline *g)
{
	static const struct {
		const char *name;
		enum lt_gline_kind kind;
		int args; /* 0 none, 1 port, 2 port+ret, 3 optional code, 4 code, 5 text */
	} evs[] = {
		{LT_GUEST_EV_READY, LT_GL_READY, 0},
		{LT_GUEST_EV_LISTEN_BEFORE, LT_GL_LISTEN_BEFORE, 1},
		{LT_GUEST_EV_LISTEN_AFTER, LT_GL_LISTEN_AFTER, 2},
		{LT_GUEST_EV_BIND_BEFORE, LT_GL_BIND_BEFORE, 1},
		{LT_GUEST_EV_BIND_AFTER, LT_GL_BIND_AFTER, 2},
		{LT_GUEST_EV_EXIT, LT_GL_EXIT, 4},
		{LT_GUEST_EV_TRIGGER, LT_GL_TRIGGER, 3},
		{LT_GUEST_EV_HOLD, LT_GL_HOLD, 0},
		{LT_GUEST_EV_RELEASE, LT_GL_RELEASE, 0},
		{LT_GUEST_EV_LOG, LT_GL_LOG, 5},
		{LT_GUEST_EV_POWEROFF, LT_GL_POWEROFF, 0},
	};
	size_t len = strlen(line);
	if (len == 0 || len >= LT_GUEST_LINE_MAX)
		return -1;
	for (const char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return -1;
	size_t nl = strcspn(line, " ");
	for (size_t i = 0; i < LT_ARRAY_LEN(evs); i++) {
		if (strlen(evs[i].name) != nl || strncmp(line, evs[i].name, nl))
			continue;
		memset(g, 0, sizeof(*g));
		g->kind = evs[i].kind;
		const char *rest = line[nl] ? line + nl + 1 : NULL;
		if (evs[i].args == 5) {
			g->text = rest ? rest : "";
			return 0;
		}
		char a1[24] = "", a2[24] = "";
		int n = 0;
		if (rest) {
			size_t l1 = strcspn(rest, " ");
			if (l1 == 0 || l1 >= sizeof(a1))
				return -1;
			memcpy(a1, rest, l1);
			n = 1;
			if (rest[l1]) {
				const char *r2 = rest + l1 + 1;
				if (!*r2 || strlen(r2) >= sizeof(a2) || strchr(r2, ' '))
					return -1;
				strcpy(a2, r2);
				n = 2;
			}
		}
		long long v;
		switch (evs[i].args) {
		case 0:
			return n == 0 ? 0 : -1;
		case 1:
			if (n != 1 || !parse_dec(a1, 0, 65535, &v))
				return -1;
			g->port = (uint16_t)v;
			return 0;
		case 2:
			if (n != 2 || !parse_dec(a1, 0, 65535, &v))
				return -1;
			g->port = (uint16_t)v;
			if (!parse_dec(a2, INT32_MIN, INT32_MAX, &v))
				return -1;
			g->val = (int32_t)v;
			return 0;
		case 3:
		case 4:
			if (n > 1 || (n == 0 && evs[i].args == 4))
				return -1;
			if (n == 1) {
				if (!parse_dec(a1, INT32_MIN, INT32_MAX, &v))
					return -1;
				g->val = (int32_t)v;
			}
			return 0;
		}
	}
	return -1;
}

int lt_qemu_parse_trigger(const char *s, struct lt_qemu_trigger *t)
{
	long long v;
	memset(t, 0, sizeof(*t));
	if (!strcmp(s, "first-listen")) {
		t->kind = LT_QTRIG_FIRST_LISTEN;
	} else if (!strcmp(s, "userspace-ready")) {
		t->kind = LT_QTRIG_READY;
	} else if (!strcmp(s, "manual")) {
		t->kind = LT_QTRIG_MANUAL;
	} else if (!strncmp(s, "nth-listen:", 11)) {
		if (!parse_dec(s + 11, 1, 1000000, &v) || s[11] == '-')
			return lt_fail("trigger %s: N must be 1..1000000", s);
		t->kind = LT_QTRIG_NTH_LISTEN;
		t->n = (uint32_t)v;
	} else if (!strncmp(s, "listen-port:", 12)) {
		if (!parse_dec(s + 12, 1, 65535, &v) || s[12] == '-')
			return lt_fail("trigger %s: P must be a port 1..65535", s);
		t->kind = LT_QTRIG_LISTEN_PORT;
		t->port = (uint16_t)v;
	} else {
		return lt_fail("unknown trigger \"%.64s\" (expected first-listen, "
			       "nth-listen:N, listen-port:P, userspace-ready or manual)",
			       s);
	}
	return 0;
}

bool lt_qemu_trigger_fires(const struct lt_qemu_trigger *t, const struct lt_gline *g,
			   uint32_t *listens)
{
	bool listened = g->kind == LT_GL_LISTEN_AFTER && g->val == 0;
	if (listened)
		++*listens;
	switch (t->kind) {
	case LT_QTRIG_FIRST_LISTEN:
		return listened;
	case LT_QTRIG_NTH_LISTEN:
		return listened && *listens == t->n;
	case LT_QTRIG_LISTEN_PORT:
		return listened && g->port == t->port;
	case LT_QTRIG_READY:
		return g->kind == LT_GL_READY;
	case LT_QTRIG_MANUAL:
		return g->kind == LT_GL_TRIGGER;
	}
	return false;
}

int lt_qsnap_header_encode(const struct lt_qsnap_meta *m, uint8_t **out, size_t *len)
{
	json_t *ports = json_array();
	json_t *o = json_pack("{s:i, s:s, s:s, s:I, s:i, s:I, s:I, s:o}", "v", 1, "qemu",
			      m->qemu_version, "accel", m->accel, "mem", (json_int_t)m->mem,
			      "cpus", (int)m->cpus, "rootfs_size", (json_int_t)m->rootfs_size,
			      "created", (json_int_t)m->created_wall_ns, "listening", ports);
	if (!o)
		return lt_fail("snapshot header: out of memory");
	for (size_t i = 0; i < m->nlistening; i++)
		json_array_append_new(ports, json_integer(m->listening[i]));
	if (m->notices)
		json_object_set_new(o, "notices", json_true());
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!s)
		return lt_fail("snapshot header: out of memory");
	size_t n = strlen(s);
	if (n > LT_QSNAP_META_MAX) {
		free(s);
		return lt_fail("snapshot header too large");
	}
	uint8_t *b = lt_malloc(12 + n);
	if (!b) {
		free(s);
		return -1;
	}
	memcpy(b, LT_QSNAP_MAGIC, 8);
	for (int i = 0; i < 4; i++)
		b[8 + i] = (uint8_t)(n >> (8 * i));
	memcpy(b + 12, s, n);
	free(s);
	*out = b;
	*len = 12 + n;
	return 0;
}

static int meta_u64(json_t *o, const char *k, uint64_t lo, uint64_t hi, uint64_t *out)
{
	json_t *v = json_object_get(o, k);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) < lo || (uint64_t)json_integer_value(v) > hi)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int meta_str(json_t *o, const char *k, char *out, size_t cap)
{
	json_t *v = json_object_get(o, k);
	if (!json_is_string(v) || json_string_length(v) >= cap)
		return -1;
	const char *s = json_string_value(v);
	if (strspn(s, "0123456789abcdefghijklmnopqrstuvwxyz.-+~") != strlen(s))
		return -1;
	strcpy(out, s);
	return 0;
}

static int meta_parse(json_t *o, struct lt_qsnap_meta *m)
{
	uint64_t v, cpus;
	if (!json_is_object(o) || meta_u64(o, "v", 1, 1, &v) < 0)
		return lt_fail("unsupported header version");
	if (meta_str(o, "qemu", m->qemu_version, sizeof(m->qemu_version)) < 0 ||
	    meta_str(o, "accel", m->accel, sizeof(m->accel)) < 0 ||
	    (strcmp(m->accel, "kvm") && strcmp(m->accel, "tcg")))
		return lt_fail("bad qemu/accel field");
	if (meta_u64(o, "mem", 1 << 20, 1ull << 42, &m->mem) < 0 ||
	    meta_u64(o, "cpus", 1, 256, &cpus) < 0 ||
	    meta_u64(o, "rootfs_size", 0, UINT64_MAX >> 1, &m->rootfs_size) < 0 ||
	    meta_u64(o, "created", 0, UINT64_MAX >> 1, &m->created_wall_ns) < 0)
		return lt_fail("bad mem/cpus/rootfs_size/created field");
	m->cpus = (uint32_t)cpus;
	json_t *notices = json_object_get(o, "notices");
	if (notices && !json_is_boolean(notices))
		return lt_fail("bad notices field");
	m->notices = json_is_true(notices);
	json_t *ports = json_object_get(o, "listening");
	if (!json_is_array(ports) || json_array_size(ports) > LT_QEMU_MAX_PORTS)
		return lt_fail("bad listening field");
	m->nlistening = json_array_size(ports);
	for (size_t i = 0; i < m->nlistening; i++) {
		json_t *p = json_array_get(ports, i);
		if (!json_is_integer(p) || json_integer_value(p) < 1 ||
		    json_integer_value(p) > 65535)
			return lt_fail("bad port in listening field");
		m->listening[i] = (uint16_t)json_integer_value(p);
	}
	return 0;
}

int lt_qsnap_header_read(int fd, const char *what, struct lt_qsnap_meta *m)
{
	uint8_t h[12];
	memset(m, 0, sizeof(*m));
	if (lt_read_full(fd, h, sizeof(h)) < 0)
		return lt_fail("snapshot %s: too short for a header", what);
	if (memcmp(h, LT_QSNAP_MAGIC, 8))
		return lt_fail("snapshot %s: not a QEMU-engine snapshot (bad magic)", what);
	uint32_t n = (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 |
		     (uint32_t)h[11] << 24;
	if (n == 0 || n > LT_QSNAP_META_MAX)
		return lt_fail("snapshot %s: header length %u out of range", what, n);
	char *buf = lt_malloc(n);
	if (!buf)
		return -1;
	if (lt_read_full(fd, buf, n) < 0) {
		free(buf);
		return lt_fail("snapshot %s: truncated header", what);
	}
	json_error_t je;
	json_t *o = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!o)
		return lt_fail("snapshot %s: header is not JSON: %s", what, je.text);
	int rc = meta_parse(o, m);
	json_decref(o);
	return rc < 0 ? lt_fail_ctx("snapshot %s: header", what) : 0;
}

/* ==== per-app configuration ============================================= */

struct qcfg {
	char *kernel, *rootfs, *initrd;
	uint64_t mem;
	uint32_t cpus;
	uint16_t ports[LT_QEMU_MAX_PORTS];
	size_t nports;
	struct lt_qemu_trigger trig;
	bool no_outbound;
	uint64_t rootfs_size;
	char *append; /* the whole kernel command line */
};

void lt_qemu_app_free(void *cfg)
{
	struct qcfg *c = cfg;
	if (!c)
		return;
	free(c->kernel);
	free(c->rootfs);
	free(c->initrd);
	free(c->append);
	free(c);
}

static bool env_ok(const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv || (kv[0] >= '0' && kv[0] <= '9'))
		return false;
	for (const char *p = kv; p < eq; p++)
		if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9')))
			return false;
	for (const char *p = eq + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || *p == '"')
			return false;
	return true;
}

static int build_append(struct qcfg *c, const struct lt_qemu_app *a)
{
	struct lt_buf b = {.limit = QE_CMDLINE_MAX};
	int rc = lt_buf_printf(&b, "console=ttyS0 reboot=t panic=-1 quiet");
	if (!rc && c->rootfs)
		rc = lt_buf_printf(&b, " root=/dev/vda ro init=%s", LT_GUEST_INIT_PATH);
	if (!rc && c->rootfs && a->rootfs_type)
		rc = lt_buf_printf(&b, " rootfstype=%s", a->rootfs_type);
	if (!rc)
		rc = lt_buf_printf(&b, " " QE_GUEST_IP " " LT_GUEST_CMDLINE_RESTORE_TTY "%s",
				   QE_RESTORE_TTY);
	for (size_t i = 0; !rc && i < c->nports; i++)
		rc = lt_buf_printf(&b, "%s%u", i ? "," : " " LT_GUEST_CMDLINE_PORTS, c->ports[i]);
	for (size_t i = 0; !rc && a->env && a->env[i]; i++) {
		if (!env_ok(a->env[i])) {
			lt_buf_free(&b);
			return lt_fail("env \"%.64s\": expected KEY=VALUE with a printable "
				       "value and no double quote",
				       a->env[i]);
		}
		rc = lt_buf_printf(&b, strchr(a->env[i], ' ') ? " \"lttle.env=%s\"" : " lttle.env=%s",
				   a->env[i]);
	}
	if (!rc && a->cmdline && *a->cmdline)
		rc = lt_buf_printf(&b, " %s", a->cmdline);
	if (!rc)
		rc = lt_buf_cstr(&b);
	if (rc < 0 || b.len >= QE_CMDLINE_MAX) {
		lt_buf_free(&b);
		return lt_fail("kernel command line longer than %d bytes", QE_CMDLINE_MAX - 1);
	}
	c->append = (char *)b.data;
	return 0;
}

static int check_file(const char *what, const char *path, uint64_t *size)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return lt_fail_errno("%s %s", what, path);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return lt_fail("%s %s is not a file", what, path);
	if (size)
		*size = (uint64_t)st.st_size;
	return 0;
}

void *lt_qemu_app_new(const struct lt_qemu_app *a)
{
	if (!a->kernel)
		return lt_fail("qemu engine: no kernel given"), NULL;
	if (a->nports > LT_QEMU_MAX_PORTS)
		return lt_fail("qemu engine: at most %d guest ports", LT_QEMU_MAX_PORTS), NULL;
	uint64_t mem = a->mem ? a->mem : QE_DEFAULT_MEM;
	if (mem % (1 << 20) || mem < (32u << 20) || mem > (1ull << 40))
		return lt_fail("qemu engine: memory must be whole MiB, 32 MiB..1 TiB"), NULL;
	if (a->cpus > 64)
		return lt_fail("qemu engine: at most 64 vCPUs"), NULL;
	if (a->rootfs_type && strcmp(a->rootfs_type, "squashfs") && strcmp(a->rootfs_type, "ext4"))
		return lt_fail("qemu engine: rootfs type %.16s (expected squashfs or ext4)",
			       a->rootfs_type),
		       NULL;
	if (a->cmdline && strchr(a->cmdline, '\n'))
		return lt_fail("qemu engine: newline in the kernel command line"), NULL;
	struct qcfg *c = lt_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->mem = mem;
	c->cpus = a->cpus ? a->cpus : 1;
	c->trig = a->trigger;
	c->no_outbound = a->no_outbound;
	for (size_t i = 0; i < a->nports; i++) {
		if (a->ports[i] == 0) {
			lt_fail("qemu engine: guest port 0");
			goto fail;
		}
		for (size_t j = 0; j < i; j++)
			if (a->ports[j] == a->ports[i]) {
				lt_fail("qemu engine: guest port %u listed twice", a->ports[i]);
				goto fail;
			}
		c->ports[c->nports++] = a->ports[i];
	}
	if (check_file("kernel", a->kernel, NULL) < 0 ||
	    (a->initrd && check_file("initrd", a->initrd, NULL) < 0) ||
	    (a->rootfs && check_file("rootfs", a->rootfs, &c->rootfs_size) < 0))
		goto fail;
	c->kernel = lt_strdup(a->kernel);
	c->initrd = a->initrd ? lt_strdup(a->initrd) : NULL;
	c->rootfs = a->rootfs ? lt_strdup(a->rootfs) : NULL;
	if (!c->kernel || (a->initrd && !c->initrd) || (a->rootfs && !c->rootfs))
		goto fail;
	if (build_append(c, a) < 0)
		goto fail;
	return c;
fail:
	lt_qemu_app_free(c);
	return NULL;
}

/* ==== engine, VMs, ops =================================================== */

struct qvm;
struct qjob;

struct qengine {
	struct lt_engine pub; /* first: the engine pointer casts back */
	struct lt_loop *loop;
	struct lt_clock *clock;
	char *run_dir;
	char *qemu;
	bool kvm;
	char accel_why[160];
	uint64_t quit_timeout;
	int zstd_level;
	bool raw_cache;
	uint64_t shell_defer;    /* shells start this long after the last restore */
	uint32_t restoring;      /* VMs loading a snapshot right now */
	uint64_t last_restore;   /* when the last one finished */
	struct qop *shells_waiting; /* shell_create ops not spawned yet */
	struct lt_timer shell_t;
	uint64_t seq;
	struct qvm *vms;      /* every VM not yet destroyed */
	struct qop *delivering; /* completions armed but not yet delivered */
	pthread_mutex_t lock; /* guards threads */
	pthread_cond_t cond;
	int threads;          /* job threads that have not finished */
};

enum qop_kind { OP_BOOT, OP_RESTORE, OP_SHELL, OP_PAUSE, OP_RESUME, OP_SNAPSHOT, OP_CONNECT, OP_STOP };

struct qop {
	struct qengine *e;
	enum qop_kind kind;
	lt_engine_done done;
	void *arg;
	struct lt_timer t; /* delivery */
	struct qop *dnext, **dprev;
	struct lt_engine_result res;
	char msg[QE_REASON_MAX];
	/* shell_create waiting for restores to finish */
	void *cfg;
	char label[96];
	/* connect */
	struct qvm *vm;
	struct qop *cnext;
	int fd;
	struct lt_watch w;
	bool watching, awaiting_listen;
	struct lt_timer tmo;
	uint16_t gport, hport;
};

enum vm_state {
	V_BOOT,       /* booting, waiting for the trigger */
	V_SHELL_INIT, /* shell process starting */
	V_SHELL,      /* shell ready, owned by the pool */
	V_RESTORE,    /* loading a snapshot */
	V_LIVE,       /* an instance, running or paused */
	V_STOP,       /* stop called */
	V_DETACHED,   /* nobody's any more: being killed */
};

struct qvm {
	struct qengine *e;
	struct qvm *next, **pprev;
	struct qcfg *cfg;
	struct lt_instance *inst;
	enum vm_state state;
	char label[112];
	char *dir, *serial, *qlog;
	pid_t pid;
	int pidfd;
	struct lt_watch pidw;
	bool reaped;
	int wstatus;
	struct lt_qmp *qmp;
	bool qmp_ok; /* capabilities negotiated and migration events on */
	int trig_fd;
	struct lt_watch trigw;
	int ser_fd, ser_log;
	struct lt_watch serw;
	int rst_fd; /* host -> guest restore notices (ttyS1); never read */
	bool notice_ok;   /* the guest announced its notice reader */
	bool notice_sent; /* this restore's notice is in the UART */
	bool await_ack;   /* restore: cont done, waiting for the guest's word */
	struct lt_timer ack_t;
	uint64_t ser_bytes;
	char tl[LT_GUEST_LINE_MAX];
	size_t tl_len;
	bool tl_skip;
	uint16_t hport[LT_QEMU_MAX_PORTS];
	uint16_t listening[LT_QEMU_MAX_PORTS];
	size_t nlistening;
	bool hook_seen; /* the guest reports listen(): trust the set above */
	uint32_t listens;
	bool triggered;
	bool app_exited, poweroff;
	int app_exit;
	bool paused;
	struct qop *start, *ctl, *stopop, *conns;
	struct qjob *job;
	int snap_fd; /* restore: positioned after the header */
	int raw_fd;  /* restore: a valid raw cache, positioned at the stream */
	bool used_raw;
	struct lt_qsnap_meta meta;
	char snap_path[256];
	bool mig_done, mig_failed;
	char mig_err[160];
	struct lt_timer kill_t;
	char reason[QE_REASON_MAX];
	char kill_why[224]; /* set when the engine killed it for a fault */
	uint64_t t_op, t_loaded; /* restore timing (monotonic ns) */
};

static inline struct qengine *QE(struct lt_engine *e)
{
	return (struct qengine *)e;
}

/* ---- op completion -------------------------------------------------------- */

static void op_deliver(struct lt_timer *t)
{
	struct qop *op = (struct qop *)((char *)t - offsetof(struct qop, t));
	*op->dprev = op->dnext;
	if (op->dnext)
		op->dnext->dprev = op->dprev;
	op->done(op->arg, &op->res);
	free(op);
}

static struct qop *op_new(struct qengine *e, enum qop_kind kind, lt_engine_done done, void *arg)
{
	struct qop *op = lt_calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->e = e;
	op->kind = kind;
	op->done = done;
	op->arg = arg;
	op->fd = -1;
	op->res.fd = -1;
	lt_timer_init(&op->t, op_deliver);
	return op;
}

/* Completes op: delivered soon, in order with every other completion. */
static void op_finish(struct qop *op, int err, const char *msg)
{
	struct qengine *e = op->e;
	op->res.err = err ? -1 : 0;
	if (err) {
		snprintf(op->msg, sizeof(op->msg), "%s", msg && *msg ? msg : "failed");
		op->res.msg = op->msg;
	}
	op->dnext = e->delivering;
	op->dprev = &e->delivering;
	if (e->delivering)
		e->delivering->dprev = &op->dnext;
	e->delivering = op;
	lt_timer_arm(e->clock, &op->t, 0);
}

/* ---- small helpers ---------------------------------------------------------- */

/* QEMU option values escape ',' by doubling it. */
static char *opt_escape(const char *s)
{
	size_t n = strlen(s), extra = 0;
	for (size_t i = 0; i < n; i++)
		extra += s[i] == ',';
	char *o = lt_malloc(n + extra + 1), *p = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		*p++ = s[i];
		if (s[i] == ',')
			*p++ = ',';
	}
	*p = 0;
	return o;
}

/* The last non-empty line of a log file, made printable, or "". */
static void log_tail(const char *path, char *out, size_t cap)
{
	out[0] = 0;
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0)
		return;
	char buf[2048];
	struct stat st;
	off_t off = 0;
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(buf) - 1)
		off = st.st_size - (off_t)sizeof(buf) + 1;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, off);
	close(fd);
	if (n <= 0)
		return;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = 0;
	char *line = buf;
	for (ssize_t i = n - 1; i >= 0; i--)
		if (buf[i] == '\n') {
			line = buf + i + 1;
			break;
		}
	/* A panic's own line says more than whatever followed it. */
	char *panic = NULL;
	for (char *p = strstr(buf, "Kernel panic"); p; p = strstr(p + 1, "Kernel panic"))
		panic = p;
	if (panic) {
		while (panic > buf && panic[-1] != '\n')
			panic--;
		line = panic;
		line[strcspn(line, "\n")] = 0;
	}
	size_t j = 0;
	for (char *p = line; *p && j + 1 < cap; p++)
		out[j++] = ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) ? *p : '?';
	out[j] = 0;
}

static bool has_port(const uint16_t *ports, size_t n, uint16_t p)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == p)
			return true;
	return false;
}

/* A free loopback port for hostfwd (QEMU binds it right after). */
static int pick_port(uint16_t *port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return lt_fail_errno("socket");
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &len) < 0) {
		close(s);
		return lt_fail_errno("picking a loopback port");
	}
	close(s);
	*port = ntohs(a.sin_port);
	return 0;
}

/* ---- snapshot (de)compression jobs -------------------------------------- */

struct qjob {
	struct qengine *e;     /* only touched by the thread for the counter */
	struct lt_loop *loop;
	struct qvm *vm;        /* loop side; NULL once nobody waits for it */
	bool compress;
	bool started;          /* a thread runs it (and will post) */
	int in_fd, out_fd;
	struct lt_atomic at;   /* compress: the snapshot being written */
	uint8_t *hdr;
	size_t hdr_len;
	int level;
	char what[256];        /* the snapshot path, for messages */
	char *cache_path;      /* decompress: also write the raw cache here */
	uint8_t cache_hdr[QE_RAW_HDR];
	/* results (written by the thread before it posts) */
	int err;
	bool decode_error;
	char msg[QE_REASON_MAX];
	uint64_t bytes_in, bytes_out;
	/* compress: the loop's verdict on the migration (1 keep, -1 drop) */
	pthread_mutex_t m;
	pthread_cond_t c;
	int verdict;
};

static void job_verdict(struct qjob *j, int v)
{
	pthread_mutex_lock(&j->m);
	if (!j->verdict)
		j->verdict = v;
	pthread_cond_signal(&j->c);
	pthread_mutex_unlock(&j->m);
}

static int job_fail(struct qjob *j, bool decode, const char *fmt, ...) LT_PRINTF(3, 4);
static int job_fail(struct qjob *j, bool decode, const char *fmt, ...)
{
	if (j->err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
	j->err = -1;
	j->decode_error = decode;
	return -1;
}

static int job_write(struct qjob *j, int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return job_fail(j, false, "snapshot %s: write: %s", j->what,
					w < 0 ? strerror(errno) : "short write");
		c += w;
		n -= (size_t)w;
		j->bytes_out += (uint64_t)w;
	}
	return 0;
}

static void run_compress(struct qjob *j)
{
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	size_t in_cap = 1 << 18, out_cap = ZSTD_CStreamOutSize();
	char *in = malloc(in_cap), *out = malloc(out_cap);
	if (!cc || !in || !out) {
		job_fail(j, false, "snapshot %s: out of memory", j->what);
		goto done;
	}
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, j->level);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, 2); /* fails harmlessly without MT */
	if (job_write(j, j->at.fd, j->hdr, j->hdr_len) < 0)
		goto done;
	for (;;) {
		ssize_t n = read(j->in_fd, in, in_cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			job_fail(j, false, "snapshot %s: reading the migration stream: %s", j->what,
				 strerror(errno));
			goto done;
		}
		j->bytes_in += (uint64_t)n;
		ZSTD_EndDirective mode = n ? ZSTD_e_continue : ZSTD_e_end;
		ZSTD_inBuffer ib = {in, (size_t)n, 0};
		size_t left;
		do {
			ZSTD_outBuffer ob = {out, out_cap, 0};
			left = ZSTD_compressStream2(cc, &ob, &ib, mode);
			if (ZSTD_isError(left)) {
				job_fail(j, false, "snapshot %s: zstd: %s", j->what,
					 ZSTD_getErrorName(left));
				goto done;
			}
			if (ob.pos && job_write(j, j->at.fd, out, ob.pos) < 0)
				goto done;
		} while (mode == ZSTD_e_end ? left != 0 : ib.pos < ib.size);
		if (!n)
			break;
	}
	if (fsync(j->at.fd) < 0)
		job_fail(j, false, "snapshot %s: fsync: %s", j->what, strerror(errno));
done:
	close(j->in_fd); /* a failure here makes QEMU's migration fail too */
	j->in_fd = -1;
	if (!j->err) {
		pthread_mutex_lock(&j->m);
		while (!j->verdict)
			pthread_cond_wait(&j->c, &j->m);
		int v = j->verdict;
		pthread_mutex_unlock(&j->m);
		if (v < 0)
			job_fail(j, false, "snapshot %s: migration did not complete", j->what);
		else if (lt_atomic_commit(&j->at) < 0)
			job_fail(j, false, "snapshot %s: %s", j->what, lt_errmsg());
	}
	if (j->err)
		lt_atomic_abort(&j->at);
	ZSTD_freeCCtx(cc);
	free(in);
	free(out);
}

/* The raw cache is best effort: any trouble just drops it. */
static void tee_write(struct qjob *j, struct lt_atomic *tee, const void *p, size_t n)
{
	if (tee->fd >= 0 && lt_write_all(tee->fd, p, n) < 0) {
		lt_warn("snapshot %s: raw cache: %s", j->what, lt_errmsg());
		lt_atomic_abort(tee);
	}
}

static void run_decompress(struct qjob *j)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	size_t in_cap = ZSTD_DStreamInSize(), out_cap = ZSTD_DStreamOutSize();
	char *in = malloc(in_cap), *out = malloc(out_cap);
	size_t last = 1; /* ZSTD_decompressStream: 0 = a frame just ended */
	struct lt_atomic tee = {.fd = -1};
	if (j->cache_path && lt_atomic_open(&tee, j->cache_path, 0600) == 0)
		tee_write(j, &tee, j->cache_hdr, sizeof(j->cache_hdr));
	if (!dc || !in || !out) {
		job_fail(j, false, "snapshot %s: out of memory", j->what);
		goto done;
	}
	for (;;) {
		ssize_t n = read(j->in_fd, in, in_cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			job_fail(j, false, "snapshot %s: read: %s", j->what, strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		j->bytes_in += (uint64_t)n;
		ZSTD_inBuffer ib = {in, (size_t)n, 0};
		while (ib.pos < ib.size) {
			ZSTD_outBuffer ob = {out, out_cap, 0};
			last = ZSTD_decompressStream(dc, &ob, &ib);
			if (ZSTD_isError(last)) {
				job_fail(j, true, "snapshot %s: corrupt data: %s", j->what,
					 ZSTD_getErrorName(last));
				goto done;
			}
			if (ob.pos && job_write(j, j->out_fd, out, ob.pos) < 0)
				goto done;
			if (ob.pos)
				tee_write(j, &tee, out, ob.pos);
		}
	}
	if (last != 0)
		job_fail(j, true, "snapshot %s: truncated data", j->what);
done:
	close(j->out_fd); /* QEMU has it all: end its stream before the fsync */
	j->out_fd = -1;
	if (!j->err && tee.fd >= 0 && lt_atomic_commit(&tee) < 0)
		lt_warn("snapshot %s: raw cache: %s", j->what, lt_errmsg());
	lt_atomic_abort(&tee);
	ZSTD_freeDCtx(dc);
	free(in);
	free(out);
}

static void job_done_cb(void *arg);

static void *job_main(void *arg)
{
	struct qjob *j = arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGPIPE); /* a dead QEMU is an EPIPE, not a signal */
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	if (j->compress)
		run_compress(j);
	else
		run_decompress(j);
	if (j->in_fd >= 0)
		close(j->in_fd);
	if (j->out_fd >= 0)
		close(j->out_fd);
	j->in_fd = j->out_fd = -1;
	struct qengine *e = j->e;
	while (lt_loop_post(j->loop, job_done_cb, j) < 0)
		usleep(1000);
	/* j now belongs to the loop; only the counter is touched below. */
	pthread_mutex_lock(&e->lock);
	e->threads--;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

static void job_free(struct qjob *j)
{
	lt_atomic_abort(&j->at); /* no-op once committed */
	if (j->in_fd >= 0)
		close(j->in_fd);
	if (j->out_fd >= 0)
		close(j->out_fd);
	pthread_mutex_destroy(&j->m);
	pthread_cond_destroy(&j->c);
	free(j->hdr);
	free(j->cache_path);
	free(j);
}

static struct qjob *job_new(struct qengine *e, struct qvm *vm, bool compress, const char *what)
{
	struct qjob *j = lt_calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->e = e;
	j->loop = e->loop;
	j->vm = vm;
	j->compress = compress;
	j->in_fd = j->out_fd = -1;
	j->at.fd = -1;
	j->level = e->zstd_level;
	snprintf(j->what, sizeof(j->what), "%s", what);
	pthread_mutex_init(&j->m, NULL);
	pthread_cond_init(&j->c, NULL);
	return j;
}

static int job_start(struct qjob *j)
{
	struct qengine *e = j->e;
	pthread_attr_t a;
	pthread_t t;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&e->lock);
	e->threads++;
	pthread_mutex_unlock(&e->lock);
	j->started = true;
	int rc = pthread_create(&t, &a, job_main, j);
	pthread_attr_destroy(&a);
	if (rc) {
		j->started = false;
		pthread_mutex_lock(&e->lock);
		e->threads--;
		pthread_mutex_unlock(&e->lock);
		errno = rc;
		return lt_fail_errno("starting a snapshot thread");
	}
	return 0;
}

static void shells_kick(struct qengine *e);

/* Every state change goes through here: restores in flight hold back the
 * spawning of new shells (on a small host a QEMU starting up takes the
 * CPU a restoring guest needs). */
static void vm_set_state(struct qvm *vm, enum vm_state st)
{
	struct qengine *e = vm->e;
	if (vm->state == st)
		return;
	if (st == V_RESTORE)
		e->restoring++;
	if (vm->state == V_RESTORE && e->restoring && --e->restoring == 0) {
		e->last_restore = lt_clock_now(e->clock);
		shells_kick(e);
	}
	vm->state = st;
}

/* The VM no longer waits for its job: a running one is told to drop its
 * output and frees itself when it posts; one never started goes now. */
static void job_detach(struct qvm *vm)
{
	struct qjob *j = vm->job;
	if (!j)
		return;
	vm->job = NULL;
	if (!j->started) {
		job_free(j);
		return;
	}
	j->vm = NULL;
	job_verdict(j, -1);
}

/* ---- VM lifecycle --------------------------------------------------------- */

static void vm_destroy(struct qvm *vm);
static void vm_on_exit(struct qvm *vm);
static void vm_kill(struct qvm *vm, int sig);
static void vm_kill_for(struct qvm *vm, const char *why);
static void vm_fail_start(struct qvm *vm, const char *why, bool snapshot_bad);
static void restore_begin(struct qvm *vm);
static void conn_start(struct qop *op);
static void conn_finish(struct qop *op, int err, const char *msg);

static void vm_set_inst(struct qvm *vm, struct lt_instance *inst)
{
	if (vm->inst)
		lt_instance_set_engine_data(vm->inst, NULL);
	vm->inst = inst;
	if (inst)
		lt_instance_set_engine_data(inst, vm);
}

/* Nobody needs the VM any more: kill it; it is destroyed once reaped. */
static void vm_teardown(struct qvm *vm)
{
	vm_set_inst(vm, NULL);
	vm_set_state(vm, V_DETACHED);
	job_detach(vm);
	if (vm->reaped)
		vm_destroy(vm);
	else
		vm_kill(vm, SIGKILL);
}

static void vm_kill(struct qvm *vm, int sig)
{
	if (vm->reaped || vm->pid <= 0)
		return;
	/* The pidfd names exactly our child, even if the pid was reused. */
	if (syscall(SYS_pidfd_send_signal, vm->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
		lt_warn("qemu %s: signal %d: %s", vm->label, sig, strerror(errno));
}

static void kill_fired(struct lt_timer *t)
{
	struct qvm *vm = (struct qvm *)((char *)t - offsetof(struct qvm, kill_t));
	if (vm->state == V_STOP) {
		lt_warn("qemu %s: did not quit in time; killing it", vm->label);
		vm_kill(vm, SIGKILL);
	} else {
		vm_kill_for(vm, "QMP connection closed but QEMU kept running");
	}
}

static void drop_trig(struct qvm *vm)
{
	if (vm->trig_fd < 0)
		return;
	lt_watch_del(&vm->trigw);
	close(vm->trig_fd);
	vm->trig_fd = -1;
}

static void drop_serial(struct qvm *vm)
{
	if (vm->rst_fd >= 0) {
		close(vm->rst_fd);
		vm->rst_fd = -1;
	}
	if (vm->ser_fd >= 0) {
		lt_watch_del(&vm->serw);
		close(vm->ser_fd);
		vm->ser_fd = -1;
	}
	if (vm->ser_log >= 0) {
		close(vm->ser_log);
		vm->ser_log = -1;
	}
}

static void serial_rotate(struct qvm *vm)
{
	char *old = lt_sprintf("%s.1", vm->serial);
	close(vm->ser_log);
	vm->ser_log = -1;
	if (!old || rename(vm->serial, old) < 0)
		lt_warn("qemu %s: rotating %s: %s", vm->label, vm->serial, strerror(errno));
	free(old);
	vm->ser_log = open(vm->serial, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	vm->ser_bytes = 0;
}

/* Copies what the console has to say into serial.log (bounded). A guest
 * that writes faster than this is throttled by its UART. */
static void serial_drain(struct qvm *vm, size_t budget)
{
	char buf[16384];
	while (vm->ser_fd >= 0 && budget) {
		ssize_t n = read(vm->ser_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			lt_watch_del(&vm->serw);
			close(vm->ser_fd);
			vm->ser_fd = -1;
			return;
		}
		budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
		if (vm->ser_log >= 0 && lt_write_all(vm->ser_log, buf, (size_t)n) < 0) {
			lt_warn("qemu %s: %s: %s", vm->label, vm->serial, lt_errmsg());
			close(vm->ser_log);
			vm->ser_log = -1;
		}
		vm->ser_bytes += (uint64_t)n;
		if (vm->ser_bytes >= QE_SERIAL_CAP)
			serial_rotate(vm);
	}
}

static void on_serial(struct lt_watch *w, uint32_t events)
{
	struct qvm *vm = (struct qvm *)((char *)w - offsetof(struct qvm, serw));
	(void)events;
	serial_drain(vm, 256 * 1024);
}

static void vm_destroy(struct qvm *vm)
{
	struct qengine *e = vm->e;
	vm_set_state(vm, V_DETACHED);
	*vm->pprev = vm->next;
	if (vm->next)
		vm->next->pprev = vm->pprev;
	lt_timer_cancel(e->clock, &vm->kill_t);
	lt_timer_cancel(e->clock, &vm->ack_t);
	job_detach(vm);
	lt_qmp_free(vm->qmp);
	drop_trig(vm);
	drop_serial(vm);
	if (vm->pidfd >= 0) {
		lt_watch_del(&vm->pidw);
		close(vm->pidfd);
	}
	if (vm->snap_fd >= 0)
		close(vm->snap_fd);
	if (vm->raw_fd >= 0)
		close(vm->raw_fd);
	if (vm->dir && lt_rm_rf(vm->dir) < 0)
		lt_warn("qemu %s: removing %s: %s", vm->label, vm->dir, lt_errmsg());
	free(vm->dir);
	free(vm->serial);
	free(vm->qlog);
	free(vm);
}

/* Fails every op still pending on vm (stop excepted). */
static void vm_fail_ops(struct qvm *vm, const char *why)
{
	if (vm->start) {
		struct qop *op = vm->start;
		vm->start = NULL;
		op_finish(op, -1, why);
	}
	if (vm->ctl) {
		struct qop *op = vm->ctl;
		vm->ctl = NULL;
		op_finish(op, -1, why);
	}
	while (vm->conns)
		conn_finish(vm->conns, -1, why);
	job_detach(vm);
}

static void vm_finish_stop(struct qvm *vm)
{
	struct qop *op = vm->stopop;
	vm->stopop = NULL;
	op_finish(op, 0, NULL);
	vm_set_inst(vm, NULL);
	vm_destroy(vm);
}

/* Why the VM is gone, from everything known about it. */
static void build_reason(struct qvm *vm)
{
	char err[200], ser[200];
	struct lt_buf b = {.limit = sizeof(vm->reason) - 1};
	if (vm->poweroff && vm->app_exited)
		lt_buf_printf(&b, "guest powered off after the app exited with code %d", vm->app_exit);
	else if (vm->poweroff)
		lt_buf_printf(&b, "guest powered off");
	else if (vm->app_exited)
		lt_buf_printf(&b, "app exited with code %d", vm->app_exit);
	else if (vm->kill_why[0])
		lt_buf_printf(&b, "%s", vm->kill_why);
	else if (WIFEXITED(vm->wstatus))
		lt_buf_printf(&b, "qemu exited with status %d", WEXITSTATUS(vm->wstatus));
	else if (WIFSIGNALED(vm->wstatus))
		lt_buf_printf(&b, "qemu killed by signal %d", WTERMSIG(vm->wstatus));
	else
		lt_buf_printf(&b, "qemu exited");
	log_tail(vm->qlog, err, sizeof(err));
	if (err[0])
		lt_buf_printf(&b, "; qemu: %s", err);
	log_tail(vm->serial, ser, sizeof(ser));
	if (!ser[0]) {
		char *old = lt_sprintf("%s.1", vm->serial);
		log_tail(old, ser, sizeof(ser));
		free(old);
	}
	if (ser[0])
		lt_buf_printf(&b, "; console: %s", ser);
	lt_buf_cstr(&b);
	snprintf(vm->reason, sizeof(vm->reason), "%s", b.data ? (char *)b.data : "qemu exited");
	lt_buf_free(&b);
}

static void on_pidfd(struct lt_watch *w, uint32_t events)
{
	struct qvm *vm = (struct qvm *)((char *)w - offsetof(struct qvm, pidw));
	(void)events;
	int st = 0;
	pid_t r = waitpid(vm->pid, &st, WNOHANG);
	if (r == 0)
		return; /* spurious */
	if (r < 0 && errno != ECHILD)
		lt_warn("qemu %s: waitpid: %s", vm->label, strerror(errno));
	vm->wstatus = r > 0 ? st : 0;
	vm->reaped = true;
	lt_watch_del(&vm->pidw);
	close(vm->pidfd);
	vm->pidfd = -1;
	vm_on_exit(vm);
}

/* The process is gone (reaped). Every path ends with vm destroyed or
 * handed to whoever still owns it; nothing touches vm afterwards. */
static void vm_on_exit(struct qvm *vm)
{
	struct qengine *e = vm->e;
	lt_timer_cancel(e->clock, &vm->kill_t);
	serial_drain(vm, 4u << 20); /* its last words are the best reason */
	drop_serial(vm);
	build_reason(vm);
	lt_qmp_free(vm->qmp);
	vm->qmp = NULL;
	drop_trig(vm);
	switch (vm->state) {
	case V_STOP:
		if (vm->stopop)
			vm_finish_stop(vm);
		return;
	case V_DETACHED:
		vm_destroy(vm);
		return;
	case V_SHELL:
		/* The pool holds it; restore notices and starts afresh. */
		lt_info("qemu %s: shell died: %s", vm->label, vm->reason);
		if (vm->dir && lt_rm_rf(vm->dir) < 0)
			lt_warn("qemu %s: %s", vm->label, lt_errmsg());
		return;
	case V_RESTORE:
		if (vm->job)
			return; /* its completion (soon: the pipe broke) says why */
		vm_fail_start(vm, vm->reason, strstr(vm->reason, "migration") != NULL);
		return;
	case V_SHELL_INIT:
	case V_BOOT:
		vm_fail_start(vm, vm->reason, false);
		return;
	case V_LIVE: {
		lt_info("qemu %s: exited: %s", vm->label, vm->reason);
		if (vm->ctl) {
			struct qop *op = vm->ctl;
			vm->ctl = NULL;
			op_finish(op, -1, vm->reason);
		}
		while (vm->conns)
			conn_finish(vm->conns, -1, vm->reason);
		job_detach(vm); /* a snapshot being written is dropped */
		vm_set_state(vm, V_STOP); /* only stop is left to do */
		/* Last: the pool usually calls stop right here, which frees vm. */
		lt_instance_exited(vm->inst, vm->reason);
		return;
	}
	}
}

/* A boot, restore or shell creation failed: report it, clean up. */
static void vm_fail_start(struct qvm *vm, const char *why, bool snapshot_bad)
{
	struct qop *op = vm->start;
	vm->start = NULL;
	if (vm->used_raw) {
		/* Blame the cache, not the snapshot: drop it; next time decompresses. */
		char *raw = lt_sprintf("%s.raw", vm->snap_path);
		if (raw && unlink(raw) == 0)
			lt_warn("qemu %s: dropped raw cache %s", vm->label, raw);
		free(raw);
		snapshot_bad = false;
	}
	if (op) {
		op->res.snapshot_bad = snapshot_bad;
		op_finish(op, -1, why);
	}
	lt_info("qemu %s: start failed: %s", vm->label, why);
	vm_teardown(vm);
}

/* ---- the trigger stream ------------------------------------------------- */

static void note_listen(struct qvm *vm, uint16_t port)
{
	vm->hook_seen = true;
	if (!has_port(vm->listening, vm->nlistening, port) && vm->nlistening < LT_QEMU_MAX_PORTS)
		vm->listening[vm->nlistening++] = port;
	for (struct qop *op = vm->conns, *n; op; op = n) {
		n = op->cnext;
		if (op->awaiting_listen && op->gport == port) {
			op->awaiting_listen = false;
			conn_start(op);
		}
	}
}

static void maybe_boot_done(struct qvm *vm)
{
	if (vm->state != V_BOOT || !vm->triggered || !vm->qmp_ok || !vm->start)
		return;
	vm_set_state(vm, V_LIVE);
	struct qop *op = vm->start;
	vm->start = NULL;
	lt_info("qemu %s: booted and triggered", vm->label);
	op_finish(op, 0, NULL);
}

static void restore_finish(struct qvm *vm, bool timed_out);
static void ack_fired(struct lt_timer *t);

static void guest_line(struct qvm *vm, const char *line)
{
	struct lt_gline g;
	if (lt_gline_parse(line, &g) < 0) {
		lt_debug("qemu %s: ignoring a malformed guest line", vm->label);
		return;
	}
	bool fires = lt_qemu_trigger_fires(&vm->cfg->trig, &g, &vm->listens);
	switch (g.kind) {
	case LT_GL_LISTEN_AFTER:
		if (g.val == 0)
			note_listen(vm, g.port);
		break;
	case LT_GL_LISTEN_BEFORE:
		vm->hook_seen = true;
		break;
	case LT_GL_EXIT:
		vm->app_exited = true;
		vm->app_exit = g.val;
		lt_info("qemu %s: app exited with code %d", vm->label, g.val);
		break;
	case LT_GL_POWEROFF:
		/* No ACPI: the guest halts; end QEMU for it. */
		vm->poweroff = true;
		vm_kill(vm, SIGKILL);
		break;
	case LT_GL_HOLD:
	case LT_GL_RELEASE:
		if (vm->state == V_LIVE && vm->inst)
			lt_instance_set_hold(vm->inst, g.kind == LT_GL_HOLD);
		break;
	case LT_GL_LOG:
		lt_info("qemu %s: guest: %s", vm->label, g.text);
		if (!strcmp(g.text, QE_NOTICE_READY))
			vm->notice_ok = true;
		else if (!strcmp(g.text, QE_NOTICE_DONE) || !strcmp(g.text, QE_NOTICE_FAILED))
			restore_finish(vm, false);
		break;
	default:
		break;
	}
	if (fires && vm->state == V_BOOT && !vm->triggered) {
		vm->triggered = true;
		maybe_boot_done(vm);
	}
}

static void on_trig(struct lt_watch *w, uint32_t events)
{
	struct qvm *vm = (struct qvm *)((char *)w - offsetof(struct qvm, trigw));
	char buf[QE_TRIG_READ];
	(void)events;
	ssize_t n = read(vm->trig_fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop_trig(vm); /* QEMU is going away; the pidfd reports it */
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char c = buf[i];
		if (c == '\n') {
			if (!vm->tl_skip) {
				vm->tl[vm->tl_len] = 0;
				guest_line(vm, vm->tl);
				if (vm->trig_fd < 0 || vm->state == V_DETACHED)
					return;
			}
			vm->tl_len = 0;
			vm->tl_skip = false;
		} else if (!vm->tl_skip) {
			if (vm->tl_len + 1 >= LT_GUEST_LINE_MAX)
				vm->tl_skip = true; /* over-long: dropped up to '\n' */
			else
				vm->tl[vm->tl_len++] = c;
		}
	}
}

/* ---- QMP ------------------------------------------------------------------ */

static void on_caps(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	if (err) {
		char m[200];
		snprintf(m, sizeof(m), "QMP: enabling migration events: %.150s", err);
		vm_kill_for(vm, m);
		return;
	}
	vm->qmp_ok = true;
	switch (vm->state) {
	case V_BOOT:
		maybe_boot_done(vm);
		break;
	case V_SHELL_INIT: {
		vm_set_state(vm, V_SHELL);
		struct qop *op = vm->start;
		vm->start = NULL;
		op->res.shell = (struct lt_shell *)vm;
		op_finish(op, 0, NULL);
		break;
	}
	case V_RESTORE:
		restore_begin(vm);
		break;
	default:
		break;
	}
}

static void qmp_ready(void *ctx)
{
	struct qvm *vm = ctx;
	json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "events",
				 "state", 1);
	if (!caps || lt_qmp_command(vm->qmp, "migrate-set-capabilities", caps, -1, on_caps, vm) < 0)
		vm_kill_for(vm, "QMP: cannot enable migration events");
}

static void snapshot_migrated(struct qvm *vm, bool ok, const char *why);
static void restore_migrated(struct qvm *vm, bool ok, const char *why);

static void qmp_event(void *ctx, const char *name, json_t *data)
{
	struct qvm *vm = ctx;
	if (!strcmp(name, "MIGRATION")) {
		const char *st = json_string_value(json_object_get(data, "status"));
		if (!st)
			return;
		bool ok = !strcmp(st, "completed");
		if (!ok && strcmp(st, "failed") && strcmp(st, "cancelled"))
			return; /* setup, active, ... */
		if (vm->state == V_RESTORE)
			restore_migrated(vm, ok, st);
		else if (vm->ctl && vm->ctl->kind == OP_SNAPSHOT)
			snapshot_migrated(vm, ok, st);
	} else if (!strcmp(name, "STOP")) {
		vm->paused = true;
	} else if (!strcmp(name, "RESUME")) {
		vm->paused = false;
	}
}

/* Kills the VM for a fault of its own; the reason outlives the process. */
static void vm_kill_for(struct qvm *vm, const char *why)
{
	if (!vm->kill_why[0])
		snprintf(vm->kill_why, sizeof(vm->kill_why), "%s", why);
	lt_warn("qemu %s: %s; killing it", vm->label, why);
	vm_kill(vm, SIGKILL);
}

static void qmp_closed(void *ctx, const char *why)
{
	struct qvm *vm = ctx;
	if (vm->state == V_STOP || vm->state == V_DETACHED || vm->reaped)
		return; /* quitting */
	if (strstr(why, "closed by QEMU")) {
		/* Usually QEMU is exiting (its exit status will say why): give
		 * the pidfd a moment before calling it a QMP fault. */
		lt_timer_arm_in(vm->e->clock, &vm->kill_t, LT_MS(500));
		return;
	}
	char m[200];
	snprintf(m, sizeof(m), "QMP failed: %.180s", why);
	vm_kill_for(vm, m);
}

static const struct lt_qmp_cbs qmp_cbs = {
	.ready = qmp_ready,
	.event = qmp_event,
	.closed = qmp_closed,
};

/* ---- spawning --------------------------------------------------------------- */

struct argv {
	char **v;
	size_t n, cap;
	bool oom;
};

static void arg_add(struct argv *a, char *s) /* takes s */
{
	if (!s || a->oom) {
		a->oom = true;
		free(s);
		return;
	}
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		char **v = realloc(a->v, cap * sizeof(*v));
		if (!v) {
			a->oom = true;
			free(s);
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void args_free(struct argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

#define QE_FD_TRIG 3
#define QE_FD_QMP 4
#define QE_FD_SER 5
#define QE_FD_RST 6

static int build_args(struct qvm *vm, bool incoming, struct argv *a)
{
	struct qengine *e = vm->e;
	struct qcfg *c = vm->cfg;
	arg_add(a, lt_strdup(e->qemu));
	arg_add(a, lt_strdup("-name"));
	arg_add(a, lt_sprintf("lttle-%s", vm->label));
	arg_add(a, lt_strdup("-M"));
	arg_add(a, lt_strdup("microvm,acpi=off"));
	arg_add(a, lt_strdup("-accel"));
	arg_add(a, lt_strdup(e->kvm ? "kvm" : "tcg"));
	if (e->kvm) {
		arg_add(a, lt_strdup("-cpu"));
		arg_add(a, lt_strdup("host"));
	}
	arg_add(a, lt_strdup("-nodefaults"));
	arg_add(a, lt_strdup("-no-user-config"));
	arg_add(a, lt_strdup("-no-reboot"));
	arg_add(a, lt_strdup("-display"));
	arg_add(a, lt_strdup("none"));
	arg_add(a, lt_strdup("-m"));
	arg_add(a, lt_sprintf("%lluM", (unsigned long long)(c->mem >> 20)));
	arg_add(a, lt_strdup("-smp"));
	arg_add(a, lt_sprintf("%u", c->cpus));
	arg_add(a, lt_strdup("-kernel"));
	arg_add(a, lt_strdup(c->kernel));
	if (c->initrd) {
		arg_add(a, lt_strdup("-initrd"));
		arg_add(a, lt_strdup(c->initrd));
	}
	arg_add(a, lt_strdup("-append"));
	arg_add(a, lt_strdup(c->append));
	if (c->rootfs) {
		char *f = opt_escape(c->rootfs);
		arg_add(a, lt_strdup("-drive"));
		arg_add(a, f ? lt_sprintf("if=none,id=root,file=%s,format=raw,readonly=on", f) : NULL);
		free(f);
		arg_add(a, lt_strdup("-device"));
		arg_add(a, lt_strdup("virtio-blk-device,drive=root"));
	}
	struct lt_buf nd = {0};
	lt_buf_printf(&nd, "user,id=n0,restrict=%s", c->no_outbound ? "on" : "off");
	for (size_t i = 0; i < c->nports; i++)
		lt_buf_printf(&nd, ",hostfwd=tcp:127.0.0.1:%u-:%u", vm->hport[i], c->ports[i]);
	if (lt_buf_cstr(&nd) < 0) {
		lt_buf_free(&nd);
		return -1;
	}
	arg_add(a, lt_strdup("-netdev"));
	arg_add(a, (char *)nd.data);
	arg_add(a, lt_strdup("-device"));
	arg_add(a, lt_strdup("virtio-net-device,netdev=n0"));
	arg_add(a, lt_strdup("-chardev"));
	arg_add(a, lt_sprintf("socket,id=trig,fd=%d", QE_FD_TRIG));
	arg_add(a, lt_strdup("-device"));
	arg_add(a, lt_sprintf("isa-debugcon,iobase=0x%x,chardev=trig", LT_GUEST_PORT));
	arg_add(a, lt_strdup("-chardev"));
	arg_add(a, lt_sprintf("socket,id=qmp,fd=%d", QE_FD_QMP));
	arg_add(a, lt_strdup("-mon"));
	arg_add(a, lt_strdup("chardev=qmp,mode=control"));
	arg_add(a, lt_strdup("-chardev"));
	arg_add(a, lt_sprintf("socket,id=ser,fd=%d", QE_FD_SER));
	arg_add(a, lt_strdup("-serial"));
	arg_add(a, lt_strdup("chardev:ser"));
	arg_add(a, lt_strdup("-chardev"));
	arg_add(a, lt_sprintf("socket,id=rst,fd=%d", QE_FD_RST));
	arg_add(a, lt_strdup("-device"));
	arg_add(a, lt_sprintf("isa-serial,chardev=rst,iobase=0x%x,irq=%d", LT_GUEST_RESTORE_IOBASE,
			      LT_GUEST_RESTORE_IRQ));
	if (incoming) {
		arg_add(a, lt_strdup("-S"));
		arg_add(a, lt_strdup("-incoming"));
		arg_add(a, lt_strdup("defer"));
	}
	return a->oom ? lt_fail("out of memory building the QEMU command line") : 0;
}

static int spawn_qemu(struct qvm *vm, char **argv, int trig_child, int qmp_child,
		      int ser_child, int rst_child)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, vm->qlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_adddup2(&fa, trig_child, QE_FD_TRIG);
	posix_spawn_file_actions_adddup2(&fa, qmp_child, QE_FD_QMP);
	posix_spawn_file_actions_adddup2(&fa, ser_child, QE_FD_SER);
	posix_spawn_file_actions_adddup2(&fa, rst_child, QE_FD_RST);
	posix_spawn_file_actions_addclosefrom_np(&fa, QE_FD_RST + 1);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setpgroup(&at, 0); /* terminal signals are the daemon's */
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					      POSIX_SPAWN_SETPGROUP);
	int rc = strchr(argv[0], '/') ? posix_spawn(&vm->pid, argv[0], &fa, &at, argv, environ)
				      : posix_spawnp(&vm->pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc) {
		errno = rc;
		return lt_fail_errno("starting %s", argv[0]);
	}
	return 0;
}

/* Fds the child gets must not collide with the slots they are moved to. */
static int high_fd(int fd)
{
	int h = fcntl(fd, F_DUPFD_CLOEXEC, 16);
	int saved = errno;
	close(fd);
	errno = saved;
	return h;
}

static struct qvm *vm_spawn(struct qengine *e, struct qcfg *cfg, const char *label,
			    bool incoming, enum vm_state state)
{
	struct qvm *vm = lt_calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->e = e;
	vm->cfg = cfg;
	vm->state = V_DETACHED;
	vm_set_state(vm, state);
	vm->pidfd = vm->trig_fd = vm->snap_fd = vm->raw_fd = vm->ser_fd = vm->ser_log = -1;
	vm->rst_fd = -1;
	lt_timer_init(&vm->kill_t, kill_fired);
	lt_timer_init(&vm->ack_t, ack_fired);
	vm->next = e->vms;
	vm->pprev = &e->vms;
	if (e->vms)
		e->vms->pprev = &vm->next;
	e->vms = vm;
	vm->reaped = true; /* until there is a process */
	snprintf(vm->label, sizeof(vm->label), "%.80s-%llu", label, (unsigned long long)++e->seq);
	for (char *p = vm->label; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p))
			*p = '_';
	if (vm->label[0] == '.')
		vm->label[0] = '_';
	int trig[2] = {-1, -1}, qmp[2] = {-1, -1}, ser[2] = {-1, -1}, rst[2] = {-1, -1};
	struct argv a = {0};
	vm->dir = lt_path_join(e->run_dir, vm->label);
	vm->serial = vm->dir ? lt_path_join(vm->dir, "serial.log") : NULL;
	vm->qlog = vm->dir ? lt_path_join(vm->dir, "qemu.log") : NULL;
	if (!vm->serial || !vm->qlog)
		goto fail;
	if (mkdir(vm->dir, 0700) < 0) {
		lt_fail_errno("mkdir %s", vm->dir);
		goto fail;
	}
	for (size_t i = 0; i < cfg->nports; i++)
		if (pick_port(&vm->hport[i]) < 0)
			goto fail;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, trig) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qmp) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ser) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rst) < 0) {
		lt_fail_errno("socketpair");
		goto fail;
	}
	trig[1] = high_fd(trig[1]);
	qmp[1] = high_fd(qmp[1]);
	ser[1] = high_fd(ser[1]);
	rst[1] = high_fd(rst[1]);
	if (trig[1] < 0 || qmp[1] < 0 || ser[1] < 0 || rst[1] < 0) {
		lt_fail_errno("fcntl(F_DUPFD)");
		goto fail;
	}
	vm->ser_log = open(vm->serial, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (vm->ser_log < 0) {
		lt_fail_errno("%s", vm->serial);
		goto fail;
	}
	if (build_args(vm, incoming, &a) < 0 ||
	    spawn_qemu(vm, a.v, trig[1], qmp[1], ser[1], rst[1]) < 0)
		goto fail;
	vm->reaped = false;
	close(trig[1]);
	close(qmp[1]);
	close(ser[1]);
	close(rst[1]);
	trig[1] = qmp[1] = ser[1] = rst[1] = -1;
	/* Nonblocking: a guest that never reads ttyS1 must not stall the loop. */
	vm->rst_fd = rst[0];
	rst[0] = -1;
	int rfl = fcntl(vm->rst_fd, F_GETFL);
	if (rfl < 0 || fcntl(vm->rst_fd, F_SETFL, rfl | O_NONBLOCK) < 0) {
		lt_warn("qemu %s: restore channel: %s", vm->label, strerror(errno));
		close(vm->rst_fd);
		vm->rst_fd = -1;
	}
	args_free(&a);
	a = (struct argv){0};
	char pid[24];
	snprintf(pid, sizeof(pid), "%d\n", vm->pid);
	char *pidf = lt_path_join(vm->dir, "pid");
	if (!pidf || lt_write_file_atomic(pidf, pid, strlen(pid), 0600) < 0)
		lt_warn("qemu %s: cannot record its pid: %s", vm->label, lt_errmsg());
	free(pidf);
	vm->pidfd = (int)syscall(SYS_pidfd_open, vm->pid, 0);
	if (vm->pidfd < 0) {
		lt_fail_errno("pidfd_open(%d)", vm->pid);
		kill(vm->pid, SIGKILL);
		waitpid(vm->pid, NULL, 0);
		vm->reaped = true;
		goto fail;
	}
	if (lt_watch_add(e->loop, &vm->pidw, vm->pidfd, EPOLLIN, on_pidfd) < 0) {
		/* Not watched: reap it here so nothing is left behind. */
		syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0);
		waitpid(vm->pid, NULL, 0);
		vm->reaped = true;
		close(vm->pidfd);
		vm->pidfd = -1;
		goto fail;
	}
	vm->trig_fd = trig[0];
	trig[0] = -1;
	int fl = fcntl(vm->trig_fd, F_GETFL);
	if (fl < 0 || fcntl(vm->trig_fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    lt_watch_add(e->loop, &vm->trigw, vm->trig_fd, EPOLLIN, on_trig) < 0) {
		lt_fail_errno("trigger socket");
		close(vm->trig_fd);
		vm->trig_fd = -1;
		goto fail_running;
	}
	vm->ser_fd = ser[0];
	ser[0] = -1;
	fl = fcntl(vm->ser_fd, F_GETFL);
	if (fl < 0 || fcntl(vm->ser_fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    lt_watch_add(e->loop, &vm->serw, vm->ser_fd, EPOLLIN, on_serial) < 0) {
		lt_fail_errno("serial socket");
		close(vm->ser_fd);
		vm->ser_fd = -1;
		goto fail_running;
	}
	vm->qmp = lt_qmp_new(e->loop, qmp[0], &qmp_cbs, vm);
	qmp[0] = -1;
	if (!vm->qmp)
		goto fail_running;
	lt_debug("qemu %s: started pid %d", vm->label, vm->pid);
	return vm;
fail_running:
	/* The process exists and is watched: kill it; its reaping frees vm. */
	for (int i = 0; i < 2; i++) {
		if (qmp[i] >= 0)
			close(qmp[i]);
		if (ser[i] >= 0)
			close(ser[i]);
	}
	{
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", lt_errmsg());
		vm_set_state(vm, V_DETACHED);
		vm_kill(vm, SIGKILL);
		lt_fail("%s", msg);
		return NULL;
	}
fail:
	for (int i = 0; i < 2; i++) {
		if (trig[i] >= 0)
			close(trig[i]);
		if (qmp[i] >= 0)
			close(qmp[i]);
		if (ser[i] >= 0)
			close(ser[i]);
		if (rst[i] >= 0)
			close(rst[i]);
	}
	args_free(&a);
	{
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", lt_errmsg());
		vm_destroy(vm);
		lt_fail("qemu engine: %s", msg);
	}
	return NULL;
}

/* ---- ops ---------------------------------------------------------------------- */

static int qe_boot(struct lt_engine *pe, struct lt_instance *inst, const struct lt_app_spec *app,
		   lt_engine_done done, void *arg)
{
	struct qengine *e = QE(pe);
	struct qcfg *cfg = app->engine_cfg;
	if (!cfg)
		return lt_fail("qemu engine: app %s has no engine configuration", app->name);
	struct qop *op = op_new(e, OP_BOOT, done, arg);
	if (!op)
		return -1;
	struct qvm *vm = vm_spawn(e, cfg, lt_instance_id(inst), false, V_BOOT);
	if (!vm) {
		free(op);
		return -1;
	}
	vm->start = op;
	vm_set_inst(vm, inst);
	return 0;
}

static void shell_spawn(struct qop *op)
{
	struct qvm *vm = vm_spawn(op->e, op->cfg, op->label, true, V_SHELL_INIT);
	if (!vm) {
		op_finish(op, -1, lt_errmsg());
		return;
	}
	vm->start = op;
}

static void shells_fired(struct lt_timer *t)
{
	struct qengine *e = (struct qengine *)((char *)t - offsetof(struct qengine, shell_t));
	if (e->restoring)
		return; /* kicked again when the last restore ends */
	while (e->shells_waiting) {
		struct qop *op = e->shells_waiting;
		e->shells_waiting = op->cnext;
		shell_spawn(op);
	}
}

static void shells_kick(struct qengine *e)
{
	if (!e->shells_waiting || e->restoring)
		return;
	lt_timer_arm(e->clock, &e->shell_t, e->last_restore + e->shell_defer);
}

static int qe_shell_create(struct lt_engine *pe, const struct lt_app_spec *app,
			   lt_engine_done done, void *arg)
{
	struct qengine *e = QE(pe);
	if (!app->engine_cfg)
		return lt_fail("qemu engine: app %s has no engine configuration", app->name);
	struct qop *op = op_new(e, OP_SHELL, done, arg);
	if (!op)
		return -1;
	op->cfg = app->engine_cfg;
	snprintf(op->label, sizeof(op->label), "%.80s-shell", app->name);
	uint64_t now = lt_clock_now(e->clock);
	if (!e->restoring && now >= e->last_restore + e->shell_defer) {
		struct qvm *vm = vm_spawn(e, op->cfg, op->label, true, V_SHELL_INIT);
		if (!vm) {
			free(op);
			return -1;
		}
		vm->start = op;
		return 0;
	}
	/* A restore is running (or just ended): start the shell after it. */
	struct qop **pp = &e->shells_waiting;
	while (*pp)
		pp = &(*pp)->cnext;
	*pp = op;
	shells_kick(e);
	return 0;
}

static void qe_shell_destroy(struct lt_engine *pe, struct lt_shell *shell)
{
	(void)pe;
	struct qvm *vm = (struct qvm *)shell;
	if (vm)
		vm_teardown(vm);
}

/* Opens and checks a snapshot against the app's machine shape. */
static int snapshot_open(struct qengine *e, struct qcfg *cfg, const char *path,
			 struct lt_qsnap_meta *m)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("snapshot %s", path);
	if (lt_qsnap_header_read(fd, path, m) < 0)
		goto bad;
	if (m->mem != cfg->mem || m->cpus != cfg->cpus) {
		lt_fail("snapshot %s was made with %llu MiB and %u vCPUs, the app has "
			"%llu MiB and %u",
			path, (unsigned long long)(m->mem >> 20), m->cpus,
			(unsigned long long)(cfg->mem >> 20), cfg->cpus);
		goto bad;
	}
	if (strcmp(m->accel, e->kvm ? "kvm" : "tcg")) {
		lt_fail("snapshot %s was made under %s, this host runs %s", path, m->accel,
			e->kvm ? "kvm" : "tcg");
		goto bad;
	}
	if (m->rootfs_size != cfg->rootfs_size) {
		lt_fail("snapshot %s was made with a different rootfs (%llu bytes, now %llu)",
			path, (unsigned long long)m->rootfs_size,
			(unsigned long long)cfg->rootfs_size);
		goto bad;
	}
	return fd;
bad:
	close(fd);
	return -1;
}

static void raw_header(uint8_t h[QE_RAW_HDR], const struct lt_qsnap_meta *m,
		       const struct stat *st)
{
	uint64_t v[3] = {m->created_wall_ns, (uint64_t)st->st_size,
			 (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec};
	memcpy(h, QE_RAW_MAGIC, 8);
	for (int i = 0; i < 3; i++)
		for (int b = 0; b < 8; b++)
			h[8 + 8 * i + b] = (uint8_t)(v[i] >> (8 * b));
}

/* The raw cache of the snapshot open on snap_fd, positioned at its stream,
 * or -1 when there is none or it belongs to another snapshot. */
static int raw_cache_open(int snap_fd, const char *snap_path, const struct lt_qsnap_meta *m)
{
	struct stat st;
	uint8_t want[QE_RAW_HDR], got[QE_RAW_HDR];
	if (fstat(snap_fd, &st) < 0)
		return -1;
	raw_header(want, m, &st);
	char *path = lt_sprintf("%s.raw", snap_path);
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	free(path);
	if (fd < 0)
		return -1;
	if (lt_read_full(fd, got, sizeof(got)) < 0 || memcmp(got, want, sizeof(want))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int qe_restore(struct lt_engine *pe, struct lt_instance *inst,
		      const struct lt_app_spec *app, struct lt_shell *shell, lt_engine_done done,
		      void *arg)
{
	struct qengine *e = QE(pe);
	struct qcfg *cfg = app->engine_cfg;
	struct qvm *vm = (struct qvm *)shell;
	struct lt_qsnap_meta m;
	int fd = -1;
	if (!cfg) {
		lt_fail("qemu engine: app %s has no engine configuration", app->name);
		goto fail;
	}
	if (!app->snapshot) {
		lt_fail("qemu engine: app %s has no snapshot", app->name);
		goto fail_bad;
	}
	fd = snapshot_open(e, cfg, app->snapshot, &m);
	if (fd < 0)
		goto fail_bad;
	int raw = e->raw_cache ? raw_cache_open(fd, app->snapshot, &m) : -1;
	struct qop *op = op_new(e, OP_RESTORE, done, arg);
	if (!op) {
		if (raw >= 0)
			close(raw);
		goto fail;
	}
	if (vm && (vm->state != V_SHELL || vm->reaped || vm->cfg != cfg)) {
		lt_info("qemu %s: shell unusable; restoring in a new process", vm->label);
		vm_teardown(vm);
		vm = NULL;
	}
	if (!vm) {
		vm = vm_spawn(e, cfg, lt_instance_id(inst), true, V_RESTORE);
		if (!vm) {
			free(op);
			if (raw >= 0)
				close(raw);
			goto fail;
		}
	}
	vm_set_state(vm, V_RESTORE);
	vm->start = op;
	vm->mig_done = vm->mig_failed = false;
	vm->mig_err[0] = 0;
	vm->t_op = lt_now_ns();
	vm->snap_fd = fd;
	vm->raw_fd = raw;
	vm->meta = m;
	snprintf(vm->snap_path, sizeof(vm->snap_path), "%s", app->snapshot);
	vm_set_inst(vm, inst);
	if (vm->qmp_ok)
		restore_begin(vm);
	return 0;
fail_bad:
	if (shell)
		vm_teardown((struct qvm *)shell);
	return LT_ENGINE_ESNAPSHOT;
fail:
	if (fd >= 0)
		close(fd);
	if (shell && vm)
		vm_teardown(vm);
	return -1;
}

static void on_restore_getfd(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	if (err && vm->state == V_RESTORE) {
		char msg[256];
		snprintf(msg, sizeof(msg), "restore: getfd: %s", err);
		vm_fail_start(vm, msg, false);
	}
}

static void on_restore_incoming(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	if (err && vm->state == V_RESTORE) {
		char msg[256];
		snprintf(msg, sizeof(msg), "restore: migrate-incoming: %s", err);
		vm_fail_start(vm, msg, true);
	}
}

/* QMP is up and the snapshot is open: stream it in. */
static void restore_begin(struct qvm *vm)
{
	struct qengine *e = vm->e;
	char msg[QE_REASON_MAX];
	if (strcmp(vm->meta.qemu_version, lt_qmp_version(vm->qmp))) {
		snprintf(msg, sizeof(msg), "snapshot %s was made by QEMU %s, this is %s",
			 vm->snap_path, vm->meta.qemu_version, lt_qmp_version(vm->qmp));
		vm_fail_start(vm, msg, true);
		return;
	}
	json_t *fdargs = json_pack("{s:s}", "fdname", "lttle-in");
	json_t *inargs = json_pack("{s:s}", "uri", "fd:lttle-in");
	if (vm->raw_fd >= 0) {
		/* QEMU reads the decompressed stream straight from the cache. */
		int raw = vm->raw_fd;
		vm->raw_fd = -1;
		vm->used_raw = true;
		if (lt_qmp_command(vm->qmp, "getfd", fdargs, raw, on_restore_getfd, vm) < 0 ||
		    lt_qmp_command(vm->qmp, "migrate-incoming", inargs, -1, on_restore_incoming,
				   vm) < 0) {
			snprintf(msg, sizeof(msg), "restore: %s", lt_errmsg());
			vm_fail_start(vm, msg, false);
		}
		return;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(msg, sizeof(msg), "restore: pipe: %s", strerror(errno));
		json_decref(fdargs);
		json_decref(inargs);
		vm_fail_start(vm, msg, false);
		return;
	}
	fcntl(p[1], F_SETPIPE_SZ, QE_PIPE_SIZE); /* a hint: fewer wakeups */
	struct qjob *j = job_new(e, vm, false, vm->snap_path);
	if (!j) {
		close(p[0]);
		close(p[1]);
		json_decref(fdargs);
		json_decref(inargs);
		vm_fail_start(vm, "restore: out of memory", false);
		return;
	}
	j->in_fd = vm->snap_fd;
	vm->snap_fd = -1;
	j->out_fd = p[1];
	struct stat st;
	if (e->raw_cache && fstat(j->in_fd, &st) == 0) {
		j->cache_path = lt_sprintf("%s.raw", vm->snap_path);
		raw_header(j->cache_hdr, &vm->meta, &st);
	}
	if (job_start(j) < 0) {
		snprintf(msg, sizeof(msg), "%s", lt_errmsg());
		close(p[0]);
		job_free(j);
		json_decref(fdargs);
		json_decref(inargs);
		vm_fail_start(vm, msg, false);
		return;
	}
	vm->job = j;
	if (lt_qmp_command(vm->qmp, "getfd", fdargs, p[0], on_restore_getfd, vm) < 0 ||
	    lt_qmp_command(vm->qmp, "migrate-incoming", inargs, -1, on_restore_incoming, vm) < 0) {
		snprintf(msg, sizeof(msg), "restore: %s", lt_errmsg());
		vm_fail_start(vm, msg, false);
	}
}

static void on_restore_cont(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	if (vm->state != V_RESTORE)
		return;
	if (err) {
		char msg[256];
		snprintf(msg, sizeof(msg), "restore: cont: %s", err);
		vm_fail_start(vm, msg, false);
		return;
	}
	vm->notice_ok = vm->meta.notices; /* a later snapshot keeps it */
	if (vm->meta.notices && vm->notice_sent) {
		/* Running, but not handed out before the guest reseeded. */
		vm->await_ack = true;
		lt_timer_arm_in(vm->e->clock, &vm->ack_t, QE_NOTICE_WAIT);
		return;
	}
	vm->await_ack = true;
	restore_finish(vm, false);
}

static void ack_fired(struct lt_timer *t)
{
	struct qvm *vm = (struct qvm *)((char *)t - offsetof(struct qvm, ack_t));
	restore_finish(vm, true);
}

/* The restored guest runs (and confirmed its notice, or had none to
 * confirm, or the wait ran out): the instance is ready. */
static void restore_finish(struct qvm *vm, bool timed_out)
{
	if (!vm->await_ack || vm->state != V_RESTORE)
		return;
	vm->await_ack = false;
	lt_timer_cancel(vm->e->clock, &vm->ack_t);
	if (timed_out)
		lt_warn("qemu %s: no confirmation of the restore notice within %llu ms; serving anyway",
			vm->label, (unsigned long long)(QE_NOTICE_WAIT / 1000000));
	vm_set_state(vm, V_LIVE);
	vm->paused = false;
	memcpy(vm->listening, vm->meta.listening, sizeof(vm->listening));
	vm->nlistening = vm->meta.nlistening;
	vm->hook_seen = vm->nlistening > 0;
	struct qop *op = vm->start;
	vm->start = NULL;
	uint64_t now = lt_now_ns();
	lt_info("qemu %s: restored from %s in %.1f ms (state loaded at %.1f ms)", vm->label,
		vm->snap_path, (double)(now - vm->t_op) / 1e6,
		(double)(vm->t_loaded - vm->t_op) / 1e6);
	op_finish(op, 0, NULL);
}

int lt_qemu_restore_notice(char *buf, size_t cap, uint64_t wall_ns, const uint8_t seed[32])
{
	static const char hex[] = "0123456789abcdef";
	char h[65];
	for (int i = 0; i < 32; i++) {
		h[2 * i] = hex[seed[i] >> 4];
		h[2 * i + 1] = hex[seed[i] & 15];
	}
	h[64] = '\0';
	int n = snprintf(buf, cap, "%crestored %llu %s\n", LT_GUEST_REPLY_MARK,
			 (unsigned long long)wall_ns, h);
	explicit_bzero(h, sizeof(h));
	if (n < 0 || (size_t)n >= cap || n > LT_GUEST_LINE_MAX)
		return lt_fail("restore notice does not fit %zu bytes", cap);
	return n;
}

/* Sent before `cont`, once the state is loaded: the guest finds the line
 * in its UART as it resumes. 0 when it was written (the restore then
 * waits for the guest's word); a failure is logged: the instance still
 * works, but shares its RNG state with its siblings. */
static int send_restore_notice(struct qvm *vm)
{
	uint8_t seed[32];
	char line[LT_GUEST_LINE_MAX + 1];
	ssize_t got = getrandom(seed, sizeof(seed), 0);
	int n = got == (ssize_t)sizeof(seed)
			? lt_qemu_restore_notice(line, sizeof(line), lt_wall_ns(), seed)
			: lt_fail_errno("getrandom");
	explicit_bzero(seed, sizeof(seed));
	if (n >= 0 && vm->rst_fd < 0)
		n = lt_fail("no restore channel");
	else if (n >= 0 && write(vm->rst_fd, line, (size_t)n) != n)
		n = lt_fail_errno("writing the restore notice");
	explicit_bzero(line, sizeof(line));
	if (n < 0) {
		lt_warn("qemu %s: the guest gets no fresh entropy or clock: %s", vm->label,
			lt_errmsg());
		return -1;
	}
	return 0;
}

static void restore_cont(struct qvm *vm)
{
	vm->notice_sent = send_restore_notice(vm) == 0;
	if (lt_qmp_command(vm->qmp, "cont", NULL, -1, on_restore_cont, vm) < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "restore: %s", lt_errmsg());
		vm_fail_start(vm, msg, false);
	}
}

static void restore_load_failed(struct qvm *vm)
{
	char msg[QE_REASON_MAX];
	snprintf(msg, sizeof(msg), "QEMU could not load %s%.160s (migration failed)%s%.200s",
		 vm->used_raw ? "the raw cache of snapshot " : "snapshot ", vm->snap_path,
		 vm->mig_err[0] ? ": " : "", vm->mig_err);
	vm_fail_start(vm, msg, true);
}

static void restore_migrated(struct qvm *vm, bool ok, const char *status)
{
	(void)status;
	if (!ok) {
		if (vm->job) {
			/* The thread knows why (a corrupt frame, a bad checksum):
			 * end QEMU so it finishes, and fail with its words. */
			vm->mig_failed = true;
			vm_kill(vm, SIGKILL);
			return;
		}
		restore_load_failed(vm);
		return;
	}
	vm->t_loaded = lt_now_ns();
	vm->mig_done = true;
	/* zstd checks the frame checksum after QEMU has the last byte: run
	 * the guest only once the whole stream is known good. */
	if (!vm->job)
		restore_cont(vm);
}

static void job_done_cb(void *arg)
{
	struct qjob *j = arg;
	struct qvm *vm = j->vm;
	if (!vm) {
		job_free(j);
		return;
	}
	vm->job = NULL;
	if (!j->compress) {
		bool restoring = vm->state == V_RESTORE && vm->start;
		char msg[QE_REASON_MAX];
		snprintf(msg, sizeof(msg), "%s", j->msg);
		bool err = j->err, decode = j->decode_error;
		job_free(j);
		if (!restoring)
			return;
		if (err)
			snprintf(vm->mig_err, sizeof(vm->mig_err), "%.150s", msg);
		if (vm->mig_failed) {
			restore_load_failed(vm);
		} else if (decode || (err && vm->mig_done)) {
			/* The data is bad, whatever QEMU made of it: never cont. */
			vm_fail_start(vm, msg, true);
		} else if (vm->reaped) {
			char why[QE_REASON_MAX];
			snprintf(why, sizeof(why), "%.300s%s%.150s", vm->reason, err ? "; " : "",
				 err ? msg : "");
			vm_fail_start(vm, why, strstr(vm->reason, "migration") != NULL);
		} else if (err) {
			/* QEMU's own verdict (a failure) follows; mig_err says why. */
		} else if (vm->mig_done) {
			restore_cont(vm);
		}
		return;
	}
	struct qop *op = vm->ctl;
	if (op && op->kind == OP_SNAPSHOT) {
		vm->ctl = NULL;
		if (j->err) {
			char msg[QE_REASON_MAX];
			snprintf(msg, sizeof(msg), "%.300s%s%.150s", j->msg, vm->mig_err[0] ? "; " : "",
				 vm->mig_err);
			op_finish(op, -1, msg);
		} else {
			lt_info("qemu %s: snapshot %s: %llu bytes of state, %llu written",
				vm->label, j->what, (unsigned long long)j->bytes_in,
				(unsigned long long)j->bytes_out);
			char *raw = lt_sprintf("%s.raw", j->what);
			if (raw)
				unlink(raw); /* a cache of the file this one replaced */
			free(raw);
			op_finish(op, 0, NULL);
		}
	}
	job_free(j);
}

/* ---- snapshot --------------------------------------------------------------- */

static void snap_fail(struct qvm *vm, const char *what, const char *err)
{
	snprintf(vm->mig_err, sizeof(vm->mig_err), "%s: %s", what, err);
	if (vm->job && vm->job->started) {
		job_verdict(vm->job, -1); /* its completion fails the op */
		return;
	}
	job_detach(vm);
	if (vm->ctl && vm->ctl->kind == OP_SNAPSHOT) {
		struct qop *op = vm->ctl;
		vm->ctl = NULL;
		op_finish(op, -1, vm->mig_err);
	}
}

static void on_snap_migrate(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	if (err)
		snap_fail(vm, "migrate", err);
}

static void on_snap_getfd(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	if (err)
		snap_fail(vm, "getfd", err);
}

static void snapshot_migrated(struct qvm *vm, bool ok, const char *status)
{
	if (!ok) {
		snap_fail(vm, "migration", status);
		return;
	}
	vm->mig_done = true;
	vm->paused = true; /* postmigrate: stopped until resumed */
	if (vm->job)
		job_verdict(vm->job, 1);
}

/* The VM is stopped: start the writer and the migration. */
static void snapshot_stream(struct qvm *vm)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snap_fail(vm, "pipe", strerror(errno));
		return;
	}
	fcntl(p[0], F_SETPIPE_SZ, QE_PIPE_SIZE);
	struct qjob *j = vm->job;
	j->in_fd = p[0];
	if (job_start(j) < 0) {
		char m[256];
		snprintf(m, sizeof(m), "%s", lt_errmsg());
		j->in_fd = -1;
		close(p[0]);
		close(p[1]);
		snap_fail(vm, "thread", m);
		return;
	}
	json_t *fdargs = json_pack("{s:s}", "fdname", "lttle-out");
	json_t *margs = json_pack("{s:s}", "uri", "fd:lttle-out");
	if (lt_qmp_command(vm->qmp, "getfd", fdargs, p[1], on_snap_getfd, vm) < 0 ||
	    lt_qmp_command(vm->qmp, "migrate", margs, -1, on_snap_migrate, vm) < 0)
		snap_fail(vm, "qmp", lt_errmsg());
}

static void on_snap_params(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	if (!vm->ctl || vm->ctl->kind != OP_SNAPSHOT)
		return;
	if (err)
		snap_fail(vm, "migrate-set-parameters", err);
	else
		snapshot_stream(vm);
}

static void on_snap_stop(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	if (!vm->ctl || vm->ctl->kind != OP_SNAPSHOT)
		return;
	if (err) {
		snap_fail(vm, "stop", err);
		return;
	}
	vm->paused = true;
	/* The VM is stopped: no bandwidth cap, no downtime goal to meet. */
	json_t *args = json_pack("{s:I, s:I}", "max-bandwidth", (json_int_t)(1ll << 40),
				 "downtime-limit", (json_int_t)2000);
	if (lt_qmp_command(vm->qmp, "migrate-set-parameters", args, -1, on_snap_params, vm) < 0)
		snap_fail(vm, "qmp", lt_errmsg());
}

static int qe_snapshot(struct lt_engine *pe, struct lt_instance *inst, const char *path,
		       lt_engine_done done, void *arg)
{
	struct qengine *e = QE(pe);
	struct qvm *vm = lt_instance_engine_data(inst);
	if (!vm || vm->state != V_LIVE)
		return lt_fail("qemu engine: instance %s is not running", lt_instance_id(inst));
	if (vm->ctl)
		return lt_fail("qemu engine: instance %s is busy", lt_instance_id(inst));
	struct lt_qsnap_meta m = {0};
	snprintf(m.qemu_version, sizeof(m.qemu_version), "%s", lt_qmp_version(vm->qmp));
	snprintf(m.accel, sizeof(m.accel), "%s", e->kvm ? "kvm" : "tcg");
	m.mem = vm->cfg->mem;
	m.cpus = vm->cfg->cpus;
	m.rootfs_size = vm->cfg->rootfs_size;
	memcpy(m.listening, vm->listening, sizeof(m.listening));
	m.nlistening = vm->nlistening;
	m.created_wall_ns = lt_wall_ns();
	m.notices = vm->notice_ok;
	struct qjob *j = job_new(e, vm, true, path);
	struct qop *op = op_new(e, OP_SNAPSHOT, done, arg);
	if (!j || !op || lt_qsnap_header_encode(&m, &j->hdr, &j->hdr_len) < 0)
		goto fail;
	if (lt_atomic_open(&j->at, path, 0600) < 0) {
		lt_fail_ctx("snapshot");
		goto fail;
	}
	vm->ctl = op;
	vm->job = j;
	vm->mig_done = false;
	vm->mig_err[0] = 0;
	if (lt_qmp_command(vm->qmp, "stop", NULL, -1, on_snap_stop, vm) < 0) {
		vm->ctl = NULL;
		vm->job = NULL;
		goto fail;
	}
	return 0;
fail:
	if (j)
		job_free(j);
	free(op);
	return -1;
}

/* ---- pause / resume --------------------------------------------------------- */

static void on_ctl_reply(void *arg, json_t *ret, const char *err)
{
	struct qvm *vm = arg;
	(void)ret;
	struct qop *op = vm->ctl;
	if (!op || (op->kind != OP_PAUSE && op->kind != OP_RESUME))
		return;
	vm->ctl = NULL;
	if (!err)
		vm->paused = op->kind == OP_PAUSE;
	op_finish(op, err ? -1 : 0, err);
}

static int ctl_op(struct lt_engine *pe, struct lt_instance *inst, enum qop_kind kind,
		  lt_engine_done done, void *arg)
{
	struct qvm *vm = lt_instance_engine_data(inst);
	if (!vm || vm->state != V_LIVE)
		return lt_fail("qemu engine: instance %s is not running", lt_instance_id(inst));
	if (vm->ctl)
		return lt_fail("qemu engine: instance %s is busy", lt_instance_id(inst));
	struct qop *op = op_new(QE(pe), kind, done, arg);
	if (!op)
		return -1;
	if (lt_qmp_command(vm->qmp, kind == OP_PAUSE ? "stop" : "cont", NULL, -1, on_ctl_reply,
			   vm) < 0) {
		free(op);
		return -1;
	}
	vm->ctl = op;
	return 0;
}

static int qe_pause(struct lt_engine *pe, struct lt_instance *inst, lt_engine_done done,
		    void *arg)
{
	return ctl_op(pe, inst, OP_PAUSE, done, arg);
}

static int qe_resume(struct lt_engine *pe, struct lt_instance *inst, lt_engine_done done,
		     void *arg)
{
	return ctl_op(pe, inst, OP_RESUME, done, arg);
}

/* ---- connect ------------------------------------------------------------------- */

static void conn_finish(struct qop *op, int err, const char *msg)
{
	struct qvm *vm = op->vm;
	for (struct qop **pp = &vm->conns; *pp; pp = &(*pp)->cnext)
		if (*pp == op) {
			*pp = op->cnext;
			break;
		}
	lt_timer_cancel(op->e->clock, &op->tmo);
	if (op->watching) {
		lt_watch_del(&op->w);
		op->watching = false;
	}
	if (err && op->fd >= 0) {
		close(op->fd);
		op->fd = -1;
	}
	op->res.fd = err ? -1 : op->fd;
	op->fd = -1;
	op_finish(op, err, msg);
}

static void conn_writable(struct lt_watch *w, uint32_t events)
{
	struct qop *op = (struct qop *)((char *)w - offsetof(struct qop, w));
	(void)events;
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr == EINPROGRESS)
		return;
	if (soerr) {
		char msg[160];
		snprintf(msg, sizeof(msg), "connect to 127.0.0.1:%u (guest port %u): %s", op->hport,
			 op->gport, strerror(soerr));
		conn_finish(op, -1, msg);
		return;
	}
	conn_finish(op, 0, NULL);
}

static void conn_start(struct qop *op)
{
	char msg[160];
	op->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (op->fd < 0) {
		snprintf(msg, sizeof(msg), "socket: %s", strerror(errno));
		conn_finish(op, -1, msg);
		return;
	}
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(op->hport),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(op->fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		conn_finish(op, 0, NULL);
		return;
	}
	if (errno != EINPROGRESS) {
		snprintf(msg, sizeof(msg), "connect to 127.0.0.1:%u (guest port %u): %s", op->hport,
			 op->gport, strerror(errno));
		conn_finish(op, -1, msg);
		return;
	}
	if (lt_watch_add(op->e->loop, &op->w, op->fd, EPOLLOUT, conn_writable) < 0) {
		conn_finish(op, -1, lt_errmsg());
		return;
	}
	op->watching = true;
}

static void conn_timeout(struct lt_timer *t)
{
	struct qop *op = (struct qop *)((char *)t - offsetof(struct qop, tmo));
	char msg[160];
	snprintf(msg, sizeof(msg), "%s guest port %u timed out",
		 op->awaiting_listen ? "waiting for the guest to listen on" : "connecting to",
		 op->gport);
	conn_finish(op, -1, msg);
}

static int qe_connect(struct lt_engine *pe, struct lt_instance *inst, uint16_t guest_port,
		      uint64_t timeout_ns, lt_engine_done done, void *arg)
{
	struct qengine *e = QE(pe);
	struct qvm *vm = lt_instance_engine_data(inst);
	if (!vm || vm->state != V_LIVE)
		return lt_fail("qemu engine: instance %s is not running", lt_instance_id(inst));
	size_t i;
	for (i = 0; i < vm->cfg->nports && vm->cfg->ports[i] != guest_port; i++)
		;
	if (i == vm->cfg->nports)
		return lt_fail("qemu engine: guest port %u is not forwarded for %s", guest_port,
			       lt_instance_id(inst));
	struct qop *op = op_new(e, OP_CONNECT, done, arg);
	if (!op)
		return -1;
	op->vm = vm;
	op->gport = guest_port;
	op->hport = vm->hport[i];
	op->cnext = vm->conns;
	vm->conns = op;
	lt_timer_init(&op->tmo, conn_timeout);
	lt_timer_arm_in(e->clock, &op->tmo, timeout_ns ? timeout_ns : LT_SEC(5));
	/* slirp accepts for the guest: while the guest is known not to listen
	 * on the port yet, a connection would only be reset. */
	if (vm->hook_seen && !has_port(vm->listening, vm->nlistening, guest_port))
		op->awaiting_listen = true;
	else
		conn_start(op);
	return 0;
}

/* ---- stop ---------------------------------------------------------------------- */

static int qe_stop(struct lt_engine *pe, struct lt_instance *inst, lt_engine_done done,
		   void *arg)
{
	struct qengine *e = QE(pe);
	struct qvm *vm = lt_instance_engine_data(inst);
	if (!vm)
		return lt_fail("qemu engine: instance %s is not ours", lt_instance_id(inst));
	if (vm->stopop)
		return lt_fail("qemu engine: instance %s is already stopping", lt_instance_id(inst));
	struct qop *op = op_new(e, OP_STOP, done, arg);
	if (!op)
		return -1;
	vm_fail_ops(vm, "instance stopped");
	vm->stopop = op;
	vm_set_state(vm, V_STOP);
	if (vm->reaped) {
		vm_finish_stop(vm);
		return 0;
	}
	if (!vm->qmp || !lt_qmp_ready(vm->qmp) ||
	    lt_qmp_command(vm->qmp, "quit", NULL, -1, NULL, NULL) < 0)
		vm_kill(vm, SIGTERM);
	lt_timer_arm_in(e->clock, &vm->kill_t, e->quit_timeout);
	return 0;
}

/* ---- engine ---------------------------------------------------------------------- */

static const struct lt_engine_ops qemu_ops = {
	.name = "qemu",
	.boot = qe_boot,
	.restore = qe_restore,
	.snapshot = qe_snapshot,
	.pause = qe_pause,
	.resume = qe_resume,
	.connect = qe_connect,
	.stop = qe_stop,
	.shell_create = qe_shell_create,
	.shell_destroy = qe_shell_destroy,
};

bool lt_qemu_kvm_usable(char *why, size_t why_len)
{
	char *info = NULL;
	size_t len;
	bool flag = false;
	if (lt_read_file("/proc/cpuinfo", 16 << 20, &info, &len) == 0) {
		for (char *l = info; l && *l;) {
			char *nl = strchr(l, '\n');
			if (nl)
				*nl = 0;
			if (!strncmp(l, "flags", 5) && (strstr(l, " vmx") || strstr(l, " svm")))
				flag = true;
			l = nl ? nl + 1 : NULL;
		}
		free(info);
	}
	if (!flag) {
		snprintf(why, why_len, "tcg: no vmx/svm flag in /proc/cpuinfo");
		return false;
	}
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "tcg: cannot open /dev/kvm: %s", strerror(errno));
		return false;
	}
	close(fd);
	snprintf(why, why_len, "kvm: the CPU has hardware virtualization and /dev/kvm opens");
	return true;
}

/* Is pid a QEMU we started for the VM directory named label? */
static bool is_our_qemu(pid_t pid, const char *label)
{
	char path[64], *cmd = NULL;
	size_t len;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if (lt_read_file(path, 1 << 16, &cmd, &len) < 0)
		return false;
	char want[160];
	int wl = snprintf(want, sizeof(want), "-name%clttle-%s%c", 0, label, 0);
	bool ours = false;
	for (size_t i = 0; wl > 0 && i + (size_t)wl <= len && !ours; i++)
		ours = (i == 0 || cmd[i - 1] == 0) && !memcmp(cmd + i, want, (size_t)wl);
	free(cmd);
	return ours;
}

static void wait_gone(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return; /* already gone */
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 3000) <= 0)
		lt_warn("qemu engine: orphan %d is slow to die", (int)pid);
	close(fd);
}

int lt_qemu_cleanup_orphans(const char *run_dir)
{
	DIR *d = opendir(run_dir);
	if (!d)
		return errno == ENOENT ? 0 : lt_fail_errno("%s", run_dir);
	int killed = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || strlen(de->d_name) > 100)
			continue;
		char *dir = lt_path_join(run_dir, de->d_name);
		char *pidf = dir ? lt_path_join(dir, "pid") : NULL;
		char *txt = NULL;
		size_t len;
		long long pid;
		struct stat st;
		if (!pidf || lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			goto next;
		if (lt_read_file(pidf, 64, &txt, &len) == 0) {
			txt[strcspn(txt, "\n")] = 0;
			if (parse_dec(txt, 2, INT32_MAX, &pid) && is_our_qemu((pid_t)pid, de->d_name)) {
				lt_warn("qemu engine: killing VM %d left behind in %s", (int)pid, dir);
				if (kill((pid_t)pid, SIGKILL) == 0) {
					killed++;
					wait_gone((pid_t)pid);
				}
			}
		}
		if (lt_rm_rf(dir) < 0)
			lt_warn("qemu engine: %s", lt_errmsg());
	next:
		free(txt);
		free(pidf);
		free(dir);
	}
	closedir(d);
	return killed;
}

struct lt_engine *lt_engine_qemu_new(const struct lt_qemu_opts *o)
{
	if (!o || !o->loop || !o->run_dir)
		return lt_fail("qemu engine: loop and run_dir are required"), NULL;
	if (lt_mkdir_p(o->run_dir, 0700) < 0)
		return lt_fail_ctx("qemu engine: run dir"), NULL;
	if (lt_qemu_cleanup_orphans(o->run_dir) < 0)
		lt_warn("qemu engine: cleaning up %s: %s", o->run_dir, lt_errmsg());
	struct qengine *e = lt_calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->pub.ops = &qemu_ops;
	e->pub.priv = e;
	e->loop = o->loop;
	e->clock = lt_loop_clock(o->loop);
	e->run_dir = lt_strdup(o->run_dir);
	e->qemu = lt_strdup(o->qemu ? o->qemu : "qemu-system-x86_64");
	e->quit_timeout = o->quit_timeout ? o->quit_timeout : LT_SEC(3);
	e->zstd_level = o->zstd_level ? o->zstd_level : 3;
	e->raw_cache = !o->no_raw_cache;
	lt_timer_init(&e->shell_t, shells_fired);
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	if (!e->run_dir || !e->qemu) {
		lt_engine_qemu_free(&e->pub);
		return NULL;
	}
	switch (o->accel) {
	case LT_QEMU_ACCEL_AUTO:
		e->kvm = lt_qemu_kvm_usable(e->accel_why, sizeof(e->accel_why));
		break;
	case LT_QEMU_ACCEL_KVM:
		e->kvm = true;
		snprintf(e->accel_why, sizeof(e->accel_why), "kvm: requested");
		break;
	case LT_QEMU_ACCEL_TCG:
		snprintf(e->accel_why, sizeof(e->accel_why), "tcg: requested");
		break;
	}
	/* Under TCG a restored guest spends its first ~100-200 ms retranslating
	 * code: keep the CPU for it. */
	e->shell_defer = o->shell_defer ? o->shell_defer : e->kvm ? LT_MS(20) : LT_MS(300);
	return &e->pub;
}

const char *lt_engine_qemu_accel(const struct lt_engine *pe)
{
	return ((const struct qengine *)pe)->accel_why;
}

void lt_engine_qemu_free(struct lt_engine *pe)
{
	struct qengine *e = QE(pe);
	if (!e)
		return;
	while (e->vms) {
		struct qvm *vm = e->vms;
		if (!vm->reaped) {
			syscall(SYS_pidfd_send_signal, vm->pidfd, SIGKILL, NULL, 0);
			waitpid(vm->pid, NULL, 0);
			vm->reaped = true;
		}
		vm_set_inst(vm, NULL);
		while (vm->conns)
			conn_finish(vm->conns, -1, "engine freed");
		free(vm->start);
		free(vm->ctl);
		free(vm->stopop);
		vm->start = vm->ctl = vm->stopop = NULL;
		vm_destroy(vm);
	}
	lt_timer_cancel(e->clock, &e->shell_t);
	while (e->shells_waiting) {
		struct qop *op = e->shells_waiting;
		e->shells_waiting = op->cnext;
		free(op);
	}
	while (e->delivering) {
		struct qop *op = e->delivering;
		e->delivering = op->dnext;
		lt_timer_cancel(e->clock, &op->t);
		if (op->res.fd >= 0)
			close(op->res.fd);
		free(op);
	}
	pthread_mutex_lock(&e->lock);
	while (e->threads > 0)
		pthread_cond_wait(&e->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	free(e->run_dir);
	free(e->qemu);
	free(e);
}

int lt_qemu_instance_info(const struct lt_instance *inst, struct lt_qemu_inst_info *info)
{
	struct qvm *vm = lt_instance_engine_data(inst);
	if (!vm)
		return lt_fail("instance %s has no QEMU VM", lt_instance_id(inst));
	memset(info, 0, sizeof(*info));
	info->pid = vm->reaped ? 0 : vm->pid;
	info->dir = vm->dir;
	info->serial_log = vm->serial;
	info->nports = vm->cfg->nports;
	memcpy(info->host_port, vm->hport, sizeof(info->host_port));
	return 0;
}
