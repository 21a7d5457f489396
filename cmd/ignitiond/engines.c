/* Engines: choosing one (--engine auto|lttle|qemu), creating it on first
 * use, turning an app into its engine_cfg, and a thin wrapper around every
 * engine that records each VM process under instances/<key>/ (so a
 * restarted daemon can find and kill orphans) without the pool or the
 * engine knowing.
 *
 * Each engine kind exists twice: one object for the main pool and one for
 * deploy boots, with their own run directories, because both pools name
 * instances "<app>-<n>" and the engines key their per-VM files by that.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "engines_test.h"
#include "proxy/engine_lttle.h"
#include "proxy/engine_qemu.h"
#include "vmm/guest_abi.h"

enum ekind { EK_QEMU, EK_LTTLE, EK_PROC };

struct dmn_engine {
	struct dmn_engine *next;
	struct dmn *d;
	enum ekind kind;
	char name[16];
	bool deploy;
	const char *prefix; /* instance record key prefix */
	struct lt_engine *real;
	struct lt_engine wrap;
};

const struct dmn_test_engine *dmn_test_engine; /* set by the test build */

static struct dmn_engine *from_wrap(struct lt_engine *e)
{
	return e->priv;
}

/* ---- the recording wrapper -------------------------------------------- */

struct wcall {
	struct dmn_engine *we;
	struct lt_instance *inst;
	lt_engine_done done;
	void *arg;
	char key[128];
	char app[DMN_NAME_MAX + 1];
};

static void rec_key(struct dmn_engine *we, const struct lt_instance *inst, char *key, size_t n)
{
	snprintf(key, n, "%s%s", we->prefix, lt_instance_id(inst));
}

static struct wcall *wcall_new(struct dmn_engine *we, struct lt_instance *inst, const char *app,
			       lt_engine_done done, void *arg)
{
	struct wcall *c = lt_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->we = we;
	c->inst = inst;
	c->done = done;
	c->arg = arg;
	rec_key(we, inst, c->key, sizeof(c->key));
	snprintf(c->app, sizeof(c->app), "%s", app ? app : "");
	return c;
}

static void record_pid(struct wcall *c)
{
	int pid = dmn_engine_inst_pid(c->we, c->inst);
	if (pid > 0 && dmn_inst_record(c->we->d->state, c->key, pid, c->we->name, c->app) < 0)
		lt_warn("ignitiond: cannot record %s: %s", c->key, lt_errmsg());
}

static void started_done(void *arg, const struct lt_engine_result *r)
{
	struct wcall *c = arg;
	if (r->err) {
		dmn_inst_forget(c->we->d->state, c->key);
		if (c->we->deploy)
			dmn_deploy_note_failure(c->we->d, c->app, r->msg);
	} else
		record_pid(c);
	c->done(c->arg, r);
	free(c);
}

static void stopped_done(void *arg, const struct lt_engine_result *r)
{
	struct wcall *c = arg;
	dmn_inst_forget(c->we->d->state, c->key);
	c->done(c->arg, r);
	free(c);
}

static int w_boot(struct lt_engine *e, struct lt_instance *inst, const struct lt_app_spec *app,
		  lt_engine_done done, void *arg)
{
	struct dmn_engine *we = from_wrap(e);
	struct wcall *c = wcall_new(we, inst, app->name, done, arg);
	if (!c)
		return -1;
	int rc = we->real->ops->boot(we->real, inst, app, started_done, c);
	if (rc < 0) {
		free(c);
		return rc;
	}
	record_pid(c); /* early, so a crash during boot leaves a record */
	return 0;
}

static int w_restore(struct lt_engine *e, struct lt_instance *inst,
		     const struct lt_app_spec *app, struct lt_shell *shell, lt_engine_done done,
		     void *arg)
{
	struct dmn_engine *we = from_wrap(e);
	struct wcall *c = wcall_new(we, inst, app->name, done, arg);
	if (!c) {
		/* a shell is consumed whatever happens */
		if (shell && we->real->ops->shell_destroy)
			we->real->ops->shell_destroy(we->real, shell);
		return -1;
	}
	int rc = we->real->ops->restore(we->real, inst, app, shell, started_done, c);
	if (rc < 0) {
		free(c);
		return rc;
	}
	record_pid(c);
	return 0;
}

static int w_stop(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	struct dmn_engine *we = from_wrap(e);
	struct wcall *c = wcall_new(we, inst, NULL, done, arg);
	if (!c)
		return -1;
	int rc = we->real->ops->stop(we->real, inst, stopped_done, c);
	if (rc < 0)
		free(c);
	return rc;
}

static int w_snapshot(struct lt_engine *e, struct lt_instance *inst, const char *path,
		      lt_engine_done done, void *arg)
{
	struct dmn_engine *we = from_wrap(e);
	if (!we->real->ops->snapshot)
		return lt_fail("engine %s cannot snapshot", we->name);
	return we->real->ops->snapshot(we->real, inst, path, done, arg);
}

static int w_pause(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done, void *arg)
{
	struct dmn_engine *we = from_wrap(e);
	return we->real->ops->pause(we->real, inst, done, arg);
}

static int w_resume(struct lt_engine *e, struct lt_instance *inst, lt_engine_done done,
		    void *arg)
{
	struct dmn_engine *we = from_wrap(e);
	return we->real->ops->resume(we->real, inst, done, arg);
}

static int w_connect(struct lt_engine *e, struct lt_instance *inst, uint16_t port,
		     uint64_t timeout, lt_engine_done done, void *arg)
{
	struct dmn_engine *we = from_wrap(e);
	return we->real->ops->connect(we->real, inst, port, timeout, done, arg);
}

static int w_shell_create(struct lt_engine *e, const struct lt_app_spec *app,
			  lt_engine_done done, void *arg)
{
	struct dmn_engine *we = from_wrap(e);
	return we->real->ops->shell_create(we->real, app, done, arg);
}

static void w_shell_destroy(struct lt_engine *e, struct lt_shell *shell)
{
	struct dmn_engine *we = from_wrap(e);
	we->real->ops->shell_destroy(we->real, shell);
}

static const struct lt_engine_ops wrap_ops = {
	.name = "recorded",
	.boot = w_boot,
	.restore = w_restore,
	.snapshot = w_snapshot,
	.pause = w_pause,
	.resume = w_resume,
	.connect = w_connect,
	.stop = w_stop,
	.shell_create = w_shell_create,
	.shell_destroy = w_shell_destroy,
};
static const struct lt_engine_ops wrap_ops_noshell = {
	.name = "recorded",
	.boot = w_boot,
	.restore = w_restore,
	.snapshot = w_snapshot,
	.pause = w_pause,
	.resume = w_resume,
	.connect = w_connect,
	.stop = w_stop,
};

/* ---- choosing ------------------------------------------------------------ */

/* The lttle engine's VM-host binary: $LTTLE_VMHOST, beside ignitiond, in
 * $LTTLE_LIBEXEC or /usr/lib/lttle. Caller frees. */
static char *find_vmhost(struct dmn *d)
{
	const char *env = getenv("LTTLE_VMHOST");
	if (env && *env)
		return access(env, X_OK) == 0 ? lt_strdup(env) : NULL;
	const char *dirs[] = {d->libexec, getenv("LTTLE_LIBEXEC"), "/usr/local/lib/lttle",
			      "/usr/lib/lttle"};
	for (size_t k = 0; k < LT_ARRAY_LEN(dirs); k++) {
		if (!dirs[k])
			continue;
		char *p = lt_path_join(dirs[k], "lttle-vmhost");
		if (p && access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

static bool have_kind(struct dmn *d, const char *name)
{
	if (!strcmp(name, "qemu"))
		return true;
	if (!strcmp(name, "proc"))
		return d->allow_proc_engine && dmn_test_engine;
	if (!strcmp(name, "lttle")) {
		char *v = find_vmhost(d);
		free(v);
		return v != NULL;
	}
	return false;
}

/* Hardware virtualization as the lttle engine needs it. */
static bool hw_virt(char *why, size_t len)
{
	char *cpu = NULL;
	size_t n;
	if (lt_read_file("/proc/cpuinfo", 4 << 20, &cpu, &n) < 0) {
		snprintf(why, len, "cannot read /proc/cpuinfo");
		lt_clear_error();
		return false;
	}
	bool flag = strstr(cpu, " vmx") || strstr(cpu, " svm");
	free(cpu);
	if (!flag) {
		snprintf(why, len, "no vmx/svm flag in /proc/cpuinfo (no hardware virtualization)");
		return false;
	}
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	close(fd);
	snprintf(why, len, "hardware virtualization and /dev/kvm are usable");
	return true;
}

int dmn_engine_choose(struct dmn *d, const char *wanted, char *name, size_t name_len, char *why,
		      size_t why_len)
{
	if (strcmp(wanted, "auto")) {
		if (!have_kind(d, wanted)) {
			if (!strcmp(wanted, "lttle"))
				return lt_fail("the lttle engine needs lttle-vmhost (beside ignitiond, "
					       "in $LTTLE_LIBEXEC or /usr/lib/lttle; or "
					       "$LTTLE_VMHOST)");
			return lt_fail("engine '%s' is not available in this build", wanted);
		}
		snprintf(name, name_len, "%s", wanted);
		snprintf(why, why_len, "requested with --engine %s", wanted);
		return 0;
	}
	char hw[160];
	bool virt = hw_virt(hw, sizeof(hw));
	if (virt && have_kind(d, "lttle")) {
		snprintf(name, name_len, "lttle");
		snprintf(why, why_len, "%s", hw);
		return 0;
	}
	if (!have_kind(d, "qemu"))
		return lt_fail("no engine available: the QEMU engine is not part of this build");
	snprintf(name, name_len, "qemu");
	char acc[160];
	bool kvm = lt_qemu_kvm_usable(acc, sizeof(acc));
	if (!virt)
		snprintf(why, why_len, "%s; qemu runs the guest under %s", hw, kvm ? "KVM" : "TCG");
	else
		snprintf(why, why_len, "lttle-vmhost (the lttle engine) was not found; qemu uses %s (%s)",
			 kvm ? "KVM" : "TCG", acc);
	return 0;
}

/* ---- creating ------------------------------------------------------------ */

static struct lt_engine *create_real(struct dmn *d, enum ekind kind, const char *run_dir)
{
	if (lt_mkdir_p(run_dir, 0750) < 0)
		return NULL;
	switch (kind) {
	case EK_QEMU: {
		struct lt_qemu_opts o = {.loop = d->loop, .run_dir = run_dir,
					 .accel = LT_QEMU_ACCEL_AUTO};
		return lt_engine_qemu_new(&o);
	}
	case EK_LTTLE: {
		char *vmhost = find_vmhost(d);
		char *cache = lt_path_join(d->state, "cache");
		struct lt_lttle_engine_opts o = {.loop = d->loop, .run_dir = run_dir,
						 .vmhost = vmhost, .cache_dir = cache};
		struct lt_engine *e = vmhost && cache ? lt_engine_lttle_new(&o) : NULL;
		if (!vmhost)
			lt_fail("lttle-vmhost not found");
		free(vmhost);
		free(cache);
		return e;
	}
	case EK_PROC:
		return dmn_test_engine->create(d->loop);
	}
	return NULL;
}

struct dmn_engine *dmn_engine_get(struct dmn *d, const char *name, bool deploy)
{
	for (struct dmn_engine *e = d->engines; e; e = e->next)
		if (!strcmp(e->name, name) && e->deploy == deploy)
			return e;
	if (!have_kind(d, name)) {
		lt_fail("engine '%s' is not available in this build", name);
		return NULL;
	}
	struct dmn_engine *e = lt_calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->d = d;
	e->kind = !strcmp(name, "proc") ? EK_PROC : !strcmp(name, "lttle") ? EK_LTTLE : EK_QEMU;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->deploy = deploy;
	e->prefix = deploy ? "deploy-" : "";
	char *dir = lt_sprintf("%s/%s-%s", d->run_dir, name, deploy ? "deploy" : "main");
	e->real = dir ? create_real(d, e->kind, dir) : NULL;
	free(dir);
	if (!e->real) {
		lt_fail_ctx("engine %s", name);
		free(e);
		return NULL;
	}
	e->wrap.ops = e->real->ops->shell_create ? &wrap_ops : &wrap_ops_noshell;
	e->wrap.priv = e;
	e->next = d->engines;
	d->engines = e;
	return e;
}

struct lt_engine *dmn_engine_lt(struct dmn_engine *e)
{
	return &e->wrap;
}

const char *dmn_engine_name(const struct dmn_engine *e)
{
	return e->name;
}

void dmn_engines_free(struct dmn *d)
{
	while (d->engines) {
		struct dmn_engine *e = d->engines;
		d->engines = e->next;
		switch (e->kind) {
		case EK_QEMU:
			lt_engine_qemu_free(e->real);
			break;
		case EK_LTTLE:
			lt_engine_lttle_free(e->real);
			break;
		case EK_PROC:
			dmn_test_engine->destroy(e->real);
			break;
		}
		free(e);
	}
}

/* ---- per-app configuration and per-instance facts ------------------------- */

static void *qemu_cfg(const struct dmn_run_cfg *c, void (**free_fn)(void *))
{
	static const enum lt_qemu_trigger_kind tk[] = {
		[DMN_TRIG_FIRST_LISTEN] = LT_QTRIG_FIRST_LISTEN,
		[DMN_TRIG_NTH_LISTEN] = LT_QTRIG_NTH_LISTEN,
		[DMN_TRIG_LISTEN_PORT] = LT_QTRIG_LISTEN_PORT,
		[DMN_TRIG_READY] = LT_QTRIG_READY,
		[DMN_TRIG_MANUAL] = LT_QTRIG_MANUAL,
	};
	const struct dmn_spec *s = c->spec;
	struct lt_qemu_app a = {
		.kernel = c->kernel,
		.rootfs = c->rootfs,
		.rootfs_type = c->rootfs_type,
		.mem = (uint64_t)s->mem_mib << 20,
		.cpus = s->cpus,
		.env = (const char *const *)s->env,
		.ports = c->guest_ports,
		.nports = c->nports,
		.trigger = {.kind = tk[s->trigger.kind], .n = s->trigger.n, .port = s->trigger.port},
		.cmdline = s->cmdline[0] ? s->cmdline : NULL,
	};
	*free_fn = lt_qemu_app_free;
	return lt_qemu_app_new(&a);
}

/* The lttle VMM boots the kernel with the command line we give it: the
 * guest init's contract (root, init, ports, env), then the extras. */
static void *lttle_cfg(const struct dmn_run_cfg *c, void (**free_fn)(void *))
{
	const struct dmn_spec *s = c->spec;
	struct lt_buf b = {.limit = 2047};
	int rc = lt_buf_printf(&b, "console=ttyS0 reboot=t panic=-1 quiet");
	if (!rc && c->rootfs && c->rootfs[0])
		rc = lt_buf_printf(&b, " root=/dev/vda ro init=%s rootfstype=%s",
				   LT_GUEST_INIT_PATH, c->rootfs_type ? c->rootfs_type : "squashfs");
	for (size_t i = 0; !rc && i < c->nports; i++)
		rc = lt_buf_printf(&b, "%s%u", i ? "," : " " LT_GUEST_CMDLINE_PORTS,
				   c->guest_ports[i]);
	for (size_t i = 0; !rc && i < s->nenv; i++) {
		if (strchr(s->env[i], '"')) {
			lt_buf_free(&b);
			lt_fail("env \"%.64s\": no double quotes on a kernel command line", s->env[i]);
			return NULL;
		}
		rc = lt_buf_printf(&b, strchr(s->env[i], ' ') ? " \"lttle.env=%s\"" : " lttle.env=%s",
				   s->env[i]);
	}
	if (!rc && s->cmdline[0])
		rc = lt_buf_printf(&b, " %s", s->cmdline);
	if (!rc)
		rc = lt_buf_cstr(&b);
	if (rc < 0) {
		lt_buf_free(&b);
		lt_fail_ctx("kernel command line");
		return NULL;
	}
	struct lt_lttle_app a = {
		.kernel = c->kernel,
		.rootfs = c->rootfs && c->rootfs[0] ? c->rootfs : NULL,
		.cmdline = (char *)b.data,
		.mem = (uint64_t)s->mem_mib << 20,
		.cpus = s->cpus,
		.trigger = s->trigger_text,
	};
	*free_fn = lt_lttle_app_free;
	void *cfg = lt_lttle_app_new(&a);
	lt_buf_free(&b);
	return cfg;
}

void *dmn_engine_app_cfg(struct dmn_engine *e, const struct dmn_run_cfg *c,
			 void (**free_fn)(void *))
{
	switch (e->kind) {
	case EK_QEMU:
		return qemu_cfg(c, free_fn);
	case EK_LTTLE:
		return lttle_cfg(c, free_fn);
	case EK_PROC:
		return dmn_test_engine->app_cfg(e->d->proc_backend, c, free_fn);
	}
	lt_fail("engine %s has no configuration", e->name);
	return NULL;
}

int dmn_engine_inst_pid(struct dmn_engine *e, const struct lt_instance *inst)
{
	switch (e->kind) {
	case EK_QEMU: {
		struct lt_qemu_inst_info info;
		if (lt_qemu_instance_info(inst, &info) == 0)
			return info.pid;
		return 0;
	}
	case EK_LTTLE: {
		struct lt_lttle_inst_info info;
		if (lt_lttle_instance_info(inst, &info) == 0)
			return info.pid;
		return 0;
	}
	case EK_PROC:
		return dmn_test_engine->inst_pid(inst);
	}
	return 0;
}

int dmn_engine_inst_log(struct dmn_engine *e, const struct lt_instance *inst, char *path,
			size_t len)
{
	path[0] = '\0';
	switch (e->kind) {
	case EK_QEMU: {
		struct lt_qemu_inst_info info;
		if (lt_qemu_instance_info(inst, &info) == 0 && info.serial_log)
			snprintf(path, len, "%s", info.serial_log);
		break;
	}
	case EK_LTTLE: {
		struct lt_lttle_inst_info info;
		if (lt_lttle_instance_info(inst, &info) == 0 && info.serial_log)
			snprintf(path, len, "%s", info.serial_log);
		break;
	}
	case EK_PROC:
		break;
	}
	return path[0] ? 0 : -1;
}
