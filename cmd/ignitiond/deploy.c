/* Deploy: image -> rootfs -> one boot to the trigger -> snapshot -> serve.
 *
 * A worker thread per deploy runs the blocking steps (pull, rootfs build)
 * and reports progress as NDJSON lines on the request's stream. The boot
 * runs on the loop in a private pool of its own (min 1, max 1, never
 * paused), so the engine sees an ordinary cold boot: when the instance
 * turns running the guest's trigger has fired, and the engine snapshots
 * it. The private pool is then removed (its VM stops) and the app is
 * installed in the main pool with the new snapshot; a redeploy switches
 * the pool's generation, so traffic is never dropped.
 */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "oci/oci.h"
#include "rootfs/oci_build.h"

struct deploy_job {
	struct deploy_job *next; /* d->jobs (loop thread) */
	struct dmn *d;
	struct dmn_spec spec;
	struct dmn_stream *out;
	struct dmn_app_rec rec;
	char engine_why[320];
	uint32_t prev_generation;
	/* boot phase (loop thread) */
	struct lt_pool *bpool;
	struct lt_app *bapp;
	struct dmn_engine *beng;
	struct lt_timer timeout;
	bool snapshotting, snapshotted, failed, removing;
	char err[512];
	uint64_t t_boot0, t_trigger, t_snap;
	/* hand-over to the worker */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool phase_done;
	int rc; /* result of dmn_call'd steps */
};

static atomic_int workers;

/* ---- progress ---------------------------------------------------------------- */

static void progress(struct deploy_job *j, const char *fmt, ...) LT_PRINTF(2, 3);
static void progress(struct deploy_job *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (!msg)
		return;
	lt_info("deploy %s: %s", j->spec.name, msg);
	dmn_stream_json(j->out, json_pack("{s:s, s:s}", "event", "progress", "msg", msg));
	free(msg);
}

/* A FILE* whose lines become progress events (for oci_pull's output). */
struct pline {
	struct deploy_job *j;
	char buf[512];
	size_t len;
};

static void pline_flush(struct pline *p)
{
	while (p->len && (p->buf[p->len - 1] == '\n' || p->buf[p->len - 1] == '\r'))
		p->len--;
	if (p->len) {
		p->buf[p->len] = '\0';
		progress(p->j, "%s", p->buf);
	}
	p->len = 0;
}

static ssize_t pline_write(void *cookie, const char *data, size_t n)
{
	struct pline *p = cookie;
	for (size_t k = 0; k < n; k++) {
		char c = data[k];
		if (c == '\n' || c == '\r' || p->len == sizeof(p->buf) - 1) {
			pline_flush(p);
			if (c == '\n' || c == '\r')
				continue;
		}
		if ((unsigned char)c >= 0x20 || c == '\t')
			p->buf[p->len++] = c;
		else if (c == 0x1b)
			p->buf[p->len++] = ' '; /* no terminal escapes in JSON text */
	}
	return (ssize_t)n;
}

static int pline_close(void *cookie)
{
	pline_flush(cookie);
	return 0;
}

/* ---- worker <-> loop ----------------------------------------------------------- */

static void phase_signal(struct deploy_job *j)
{
	pthread_mutex_lock(&j->mu);
	j->phase_done = true;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

/* Waits for the loop to finish the boot phase; -1 if the loop died. */
static int phase_wait(struct deploy_job *j)
{
	pthread_mutex_lock(&j->mu);
	while (!j->phase_done) {
		if (atomic_load(&j->d->loop_dead)) {
			pthread_mutex_unlock(&j->mu);
			return lt_fail("ignitiond is shutting down");
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&j->cv, &j->mu, &ts);
	}
	pthread_mutex_unlock(&j->mu);
	return 0;
}

/* ---- artefacts (worker thread) --------------------------------------------------- */

static char *find_file(struct dmn *d, const char *env, const char *name)
{
	const char *e = env ? getenv(env) : NULL;
	if (e && *e)
		return lt_strdup(e);
	const char *lib = getenv("LTTLE_LIBEXEC");
	const char *dirs[] = {lib, d->libexec, "/usr/local/lib/lttle", "/usr/lib/lttle"};
	for (size_t k = 0; k < LT_ARRAY_LEN(dirs); k++) {
		if (!dirs[k])
			continue;
		char *p = lt_path_join(dirs[k], name);
		if (p && access(p, R_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

/* The newest kernel `make kernel` cached. */
static char *cached_kernel(void)
{
	const char *cache = getenv("LTTLE_CACHE");
	char *pat = lt_sprintf("%s/kernel/*/vmlinux", cache && *cache ? cache : "/var/cache/lttle");
	glob_t g;
	char *best = NULL;
	time_t best_t = 0;
	if (pat && glob(pat, 0, NULL, &g) == 0) {
		for (size_t k = 0; k < g.gl_pathc; k++) {
			struct stat st;
			if (stat(g.gl_pathv[k], &st) == 0 && S_ISREG(st.st_mode) &&
			    (!best || st.st_mtime > best_t)) {
				free(best);
				best = lt_strdup(g.gl_pathv[k]);
				best_t = st.st_mtime;
			}
		}
		globfree(&g);
	}
	free(pat);
	return best;
}

static int resolve_kernel(struct deploy_job *j)
{
	struct dmn_app_rec *r = &j->rec;
	char *k = NULL;
	if (j->spec.kernel[0])
		k = lt_strdup(j->spec.kernel);
	else if (!(k = find_file(j->d, "LTTLE_KERNEL", "vmlinux")))
		k = cached_kernel();
	if (!k) {
		if (!strcmp(r->engine, "proc"))
			return 0;
		return lt_fail("no guest kernel: pass --kernel PATH or set LTTLE_KERNEL "
			       "('make kernel' builds one and prints its path)");
	}
	struct stat st;
	if (stat(k, &st) < 0 || !S_ISREG(st.st_mode)) {
		lt_fail("kernel %s is not a readable file", k);
		free(k);
		return -1;
	}
	snprintf(r->kernel, sizeof(r->kernel), "%s", k);
	free(k);
	return 0;
}

static int exposed_ports(const struct oci_image *img, uint16_t *out, size_t max, size_t *n)
{
	json_t *rc = oci_image_runtime_config(img);
	json_t *ports = json_object_get(rc, "exposed_ports");
	*n = 0;
	size_t i;
	json_t *v;
	json_array_foreach(ports, i, v) {
		if (*n < max && json_is_integer(v) && json_integer_value(v) > 0 &&
		    json_integer_value(v) < 65536)
			out[(*n)++] = (uint16_t)json_integer_value(v);
	}
	json_decref(rc);
	return 0;
}

static int image_and_rootfs(struct deploy_job *j)
{
	struct dmn *d = j->d;
	struct oci_store *s;
	if (oci_store_open(d->store_root, &s) < 0)
		return -1;
	char digest[OCI_DIGEST_MAX];
	int rc = -1;
	struct oci_image *img = NULL;
	if (oci_store_resolve(s, j->spec.ref, digest) == 0) {
		progress(j, "image %s is in the store (%.19s)", j->spec.ref, digest);
	} else {
		lt_clear_error();
		progress(j, "pulling %s", j->spec.ref);
		struct pline pl = {.j = j};
		FILE *pf = fopencookie(&pl, "w", (cookie_io_functions_t){.write = pline_write,
									  .close = pline_close});
		if (pf)
			setvbuf(pf, NULL, _IOLBF, 0);
		struct oci_pull_opts po = {.insecure = j->spec.insecure, .progress = pf,
					   .quiet = !pf};
		rc = oci_pull(s, j->spec.ref, &po, digest);
		if (pf)
			fclose(pf);
		if (rc < 0)
			goto out;
		rc = -1;
	}
	if (oci_image_load(s, j->spec.ref, &img) < 0)
		goto out;
	snprintf(j->rec.digest, sizeof(j->rec.digest), "%s", img->manifest_digest);
	/* ports: as given, or the image's first exposed port on a free one */
	struct dmn_app_rec *r = &j->rec;
	if (j->spec.nports) {
		r->nports = j->spec.nports;
		for (size_t k = 0; k < r->nports; k++)
			r->guest_ports[k] = j->spec.ports[k].guest;
	} else {
		uint16_t ex[DMN_MAX_PORTS];
		size_t n;
		exposed_ports(img, ex, DMN_MAX_PORTS, &n);
		if (!n) {
			lt_fail("image %s exposes no port: pass --port [ADDR:]HOSTPORT:GUESTPORT",
				j->spec.ref);
			goto out;
		}
		r->nports = 1;
		r->guest_ports[0] = ex[0];
		progress(j, "no --port given: forwarding the image's port %u from %s:<free port>",
			 ex[0], DMN_DEF_LISTEN);
	}
	char *init = find_file(d, NULL, "lttle-init");
	if (!init && strcmp(r->engine, "proc")) {
		lt_fail("cannot find the guest init lttle-init (looked in $LTTLE_LIBEXEC, beside "
			"ignitiond and in /usr/lib/lttle)");
		goto out;
	}
	struct rootfs_oci_opts ro = {.root = d->store_root, .format = ROOTFS_SQUASHFS,
				     .init_path = init};
	struct rootfs_oci_result res;
	uint64_t t0 = lt_now_ns();
	rc = rootfs_build_oci(img, &ro, &res);
	free(init);
	if (rc < 0)
		goto out;
	char hs[16];
	progress(j, "rootfs: %s %s (squashfs, %s, %llu entries) in %.2f s", res.path,
		 res.cached ? "from the cache" : "built", lt_human_size(res.size, hs, sizeof(hs)),
		 (unsigned long long)res.entries, (double)(lt_now_ns() - t0) / 1e9);
	snprintf(r->rootfs, sizeof(r->rootfs), "%s", res.path);
	rootfs_oci_result_free(&res);
	rc = 0;
out:
	oci_image_free(img);
	oci_store_close(s);
	return rc;
}

/* ---- the boot phase (loop thread) --------------------------------------------------- */

static void boot_free_pool(void *arg)
{
	struct deploy_job *j = arg;
	lt_pool_free(j->bpool);
	j->bpool = NULL;
	j->bapp = NULL;
	phase_signal(j);
}

static void boot_removed(void *arg)
{
	struct deploy_job *j = arg;
	/* not from inside the pool's own callback */
	if (lt_loop_post(j->d->loop, boot_free_pool, j) < 0)
		lt_error("deploy %s: cannot free the boot pool", j->spec.name);
}

/* Ends the boot phase: the VM stops, then the worker goes on. */
static void boot_end(struct deploy_job *j, const char *fail_msg)
{
	if (fail_msg && !j->failed) {
		j->failed = true;
		snprintf(j->err, sizeof(j->err), "%s", fail_msg);
	}
	lt_timer_cancel(lt_loop_clock(j->d->loop), &j->timeout);
	if (j->removing)
		return;
	j->removing = true;
	lt_app_remove(j->bapp, boot_removed, j);
}

static void copy_console(struct deploy_job *j, struct lt_instance *inst)
{
	char path[DMN_PATH_MAX];
	if (dmn_engine_inst_log(j->beng, inst, path, sizeof(path)) < 0)
		return;
	char *data = NULL, *dir = dmn_app_dir(j->d->state, j->spec.name);
	char *dst = dir ? lt_path_join(dir, "boot.log") : NULL;
	size_t len;
	if (dst && lt_mkdir_p(dir, 0750) == 0 && lt_read_file(path, 16 << 20, &data, &len) == 0)
		lt_write_file_atomic(dst, data, len, 0640);
	lt_clear_error();
	free(data);
	free(dst);
	free(dir);
}

static void snap_done(void *arg, const struct lt_engine_result *r)
{
	struct deploy_job *j = arg;
	j->snapshotting = false;
	j->t_snap = lt_now_ns();
	if (r->err) {
		char msg[400];
		snprintf(msg, sizeof(msg), "snapshot failed: %s", r->msg ? r->msg : "unknown error");
		boot_end(j, msg);
		return;
	}
	j->snapshotted = true;
	struct lt_instance *i = lt_app_first_instance(j->bapp);
	if (i)
		copy_console(j, i);
	boot_end(j, NULL);
}

/* Pool events arrive from inside the pool's own code: act on them from a
 * post, never re-entrantly. */
struct boot_ev {
	struct deploy_job *j;
	char instance[96];
	enum lt_inst_state state, old_state;
};

static void boot_event(void *arg)
{
	struct boot_ev *b = arg;
	struct deploy_job *j = b->j;
	if (j->removing || !j->bpool) {
		free(b);
		return;
	}
	struct lt_instance *i = lt_pool_find_instance(j->bpool, b->instance);
	if (b->state == LT_INST_RUNNING) {
		struct lt_engine *e = dmn_engine_lt(j->beng);
		if (!i) {
			boot_end(j, "the booted instance vanished");
			free(b);
			return;
		}
		copy_console(j, i);
		j->snapshotting = true;
		lt_clear_error();
		if (e->ops->snapshot(e, i, j->rec.snapshot, snap_done, j) < 0) {
			j->snapshotting = false;
			char msg[400];
			snprintf(msg, sizeof(msg), "snapshot failed: %s", lt_errmsg());
			boot_end(j, msg);
		}
		free(b);
		return;
	}
	if (!j->snapshotted) {
		if (i)
			copy_console(j, i);
		char msg[sizeof(j->err)];
		snprintf(msg, sizeof(msg), "%s",
			 j->err[0] ? j->err
				   : b->old_state == LT_INST_STARTING
					     ? "the VM failed before its trigger fired"
					     : "the VM died before its snapshot was taken");
		boot_end(j, msg);
	}
	free(b);
}

static void boot_observer(void *ctx, const struct lt_pool_event *ev)
{
	struct deploy_job *j = ctx;
	if (ev->kind != LT_EV_INSTANCE || j->removing)
		return;
	bool up = ev->state == LT_INST_RUNNING && ev->old_state == LT_INST_STARTING;
	bool down = ev->state == LT_INST_DEAD || ev->state == LT_INST_STOPPING;
	if (!up && !down)
		return;
	if (up)
		j->t_trigger = lt_now_ns();
	struct boot_ev *b = lt_calloc(1, sizeof(*b));
	if (!b) {
		boot_end(j, "out of memory");
		return;
	}
	b->j = j;
	snprintf(b->instance, sizeof(b->instance), "%s", ev->instance ? ev->instance : "");
	b->state = ev->state;
	b->old_state = ev->old_state;
	if (lt_loop_post(j->d->loop, boot_event, b) < 0) {
		free(b);
		boot_end(j, "out of memory");
	}
}

static void boot_timeout(struct lt_timer *t)
{
	struct deploy_job *j = (struct deploy_job *)((char *)t - offsetof(struct deploy_job, timeout));
	char msg[200];
	snprintf(msg, sizeof(msg), "the trigger (%s) did not fire within %llu s",
		 j->spec.trigger_text, (unsigned long long)(j->d->deploy_timeout_ns / LT_SEC(1)));
	boot_end(j, msg);
}

/* Records why a deploy boot failed (engine message), from the wrapper. */
void dmn_deploy_note_failure(struct dmn *d, const char *app, const char *msg)
{
	for (struct deploy_job *j = d->jobs; j; j = j->next)
		if (!strcmp(j->spec.name, app) && !j->err[0])
			snprintf(j->err, sizeof(j->err), "boot failed: %s", msg ? msg : "unknown");
}

static void boot_start(void *arg)
{
	struct deploy_job *j = arg;
	struct dmn *d = j->d;
	j->rc = -1;
	if (atomic_load(&d->stopping)) {
		lt_fail("ignitiond is shutting down");
		return;
	}
	j->beng = dmn_engine_get(d, j->rec.engine, true);
	if (!j->beng)
		return;
	struct dmn_run_cfg c = {.spec = &j->spec, .kernel = j->rec.kernel, .rootfs = j->rec.rootfs,
				.rootfs_type = "squashfs", .guest_ports = j->rec.guest_ports,
				.nports = j->rec.nports};
	struct lt_app_spec spec = {.name = j->spec.name};
	spec.engine_cfg = dmn_engine_app_cfg(j->beng, &c, &spec.engine_cfg_free);
	if (!spec.engine_cfg)
		return;
	struct lt_policy pol;
	lt_policy_defaults(&pol);
	pol.min = pol.max = 1;
	pol.idle_timeout = pol.scale_down = 0;
	pol.shells = 0;
	/* our own timer (with the better message) fires first */
	pol.start_timeout = d->deploy_timeout_ns + LT_SEC(5);
	pol.drain_timeout = LT_SEC(1);
	j->bpool = lt_pool_new(lt_loop_clock(d->loop));
	if (!j->bpool) {
		spec.engine_cfg_free(spec.engine_cfg);
		return;
	}
	lt_pool_set_observer(j->bpool, boot_observer, j);
	j->t_boot0 = lt_now_ns();
	j->bapp = lt_pool_add_app(j->bpool, dmn_engine_lt(j->beng), &spec, &pol);
	if (!j->bapp) {
		spec.engine_cfg_free(spec.engine_cfg);
		lt_pool_free(j->bpool);
		j->bpool = NULL;
		return;
	}
	lt_timer_init(&j->timeout, boot_timeout);
	lt_timer_arm_in(lt_loop_clock(d->loop), &j->timeout, d->deploy_timeout_ns);
	j->rc = 0;
}

/* ---- loop-side steps the worker calls ----------------------------------------------- */

static void choose_engine(void *arg)
{
	struct deploy_job *j = arg;
	char name[16];
	j->rc = dmn_engine_choose(j->d, j->spec.engine, name, sizeof(name), j->engine_why,
				  sizeof(j->engine_why));
	if (j->rc == 0)
		snprintf(j->rec.engine, sizeof(j->rec.engine), "%s", name);
	struct dapp *a = dmn_app_find(j->d, j->spec.name);
	j->prev_generation = 0;
	if (a) {
		json_t *aj = dmn_app_json(j->d, a, false);
		j->prev_generation = (uint32_t)json_integer_value(json_object_get(aj, "generation"));
		json_decref(aj);
	}
}

struct install_call {
	struct deploy_job *j;
	json_t *app;
};

static void install(void *arg)
{
	struct install_call *c = arg;
	struct deploy_job *j = c->j;
	j->rc = -1;
	if (atomic_load(&j->d->stopping)) {
		lt_fail("ignitiond is shutting down");
		return;
	}
	if (dmn_app_install(j->d, &j->rec) < 0)
		return;
	j->rc = 0;
	/* the table owns the record's allocations now */
	j->rec.spec.env = NULL;
	j->rec.spec.nenv = 0;
	struct dapp *a = dmn_app_find(j->d, j->spec.name);
	c->app = a ? dmn_app_json(j->d, a, false) : NULL;
	dmn_events_publish(j->d, "app",
			   json_pack("{s:s, s:s, s:i}", "app", j->spec.name, "change", "deployed",
				     "generation", (int)j->rec.generation));
}

static void job_unlink(void *arg)
{
	struct deploy_job *j = arg;
	for (struct deploy_job **pp = &j->d->jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
}

/* Keeps the current and the previous generation's snapshots. */
static void prune_snapshots(struct deploy_job *j)
{
	char *dir = dmn_app_dir(j->d->state, j->spec.name);
	DIR *dp = dir ? opendir(dir) : NULL;
	if (!dp) {
		free(dir);
		return;
	}
	struct dirent *de;
	while ((de = readdir(dp))) {
		unsigned g;
		char tail[8];
		if (sscanf(de->d_name, "gen-%u.sna%1s", &g, tail) != 2 || g + 1 >= j->rec.generation)
			continue;
		char *p = lt_path_join(dir, de->d_name);
		if (p)
			unlink(p);
		free(p);
	}
	closedir(dp);
	free(dir);
}

/* ---- the worker ---------------------------------------------------------------------- */

static int deploy_steps(struct deploy_job *j)
{
	struct dmn *d = j->d;
	uint64_t t0 = lt_now_ns();
	progress(j, "deploying %s as app %s", j->spec.ref, j->spec.name);
	if (dmn_call(d, choose_engine, j) < 0 || j->rc < 0)
		return -1;
	progress(j, "engine: %s (%s)", j->rec.engine, j->engine_why);
	if (image_and_rootfs(j) < 0 || resolve_kernel(j) < 0)
		return -1;
	if (j->rec.kernel[0])
		progress(j, "kernel: %s", j->rec.kernel);
	j->rec.generation = j->prev_generation + 1;
	char *dir = dmn_app_dir(d->state, j->spec.name);
	if (!dir || lt_mkdir_p(dir, 0750) < 0) {
		free(dir);
		return -1;
	}
	snprintf(j->rec.snapshot, sizeof(j->rec.snapshot), "%s/gen-%u.snap", dir,
		 j->rec.generation);
	free(dir);
	progress(j, "booting once (%s engine, %u MiB, %u vCPU) until the trigger %s", j->rec.engine,
		 j->spec.mem_mib, j->spec.cpus, j->spec.trigger_text);
	if (dmn_call(d, boot_start, j) < 0 || j->rc < 0)
		return lt_fail_ctx("starting the boot");
	if (phase_wait(j) < 0)
		return -1;
	if (j->failed) {
		unlink(j->rec.snapshot);
		return lt_fail("%s (console: lttle logs %s)", j->err, j->spec.name);
	}
	struct stat st;
	if (stat(j->rec.snapshot, &st) < 0)
		return lt_fail_errno("snapshot %s", j->rec.snapshot);
	char hs[16];
	progress(j, "trigger fired after %.2f s; snapshot %s (%s) in %.2f s",
		 (double)(j->t_trigger - j->t_boot0) / 1e9, j->rec.snapshot,
		 lt_human_size((uint64_t)st.st_size, hs, sizeof(hs)),
		 (double)(j->t_snap - j->t_trigger) / 1e9);
	/* the record takes the spec; the job keeps a view for messages */
	j->rec.spec = j->spec;
	j->rec.deployed = (int64_t)(lt_wall_ns() / 1000000000ull);
	j->spec.env = NULL;
	j->spec.nenv = 0;
	struct install_call ic = {.j = j};
	if (dmn_call(d, install, &ic) < 0 || j->rc < 0) {
		json_decref(ic.app);
		return -1;
	}
	prune_snapshots(j);
	const char *addr = "";
	json_t *ports = json_object_get(ic.app, "ports");
	if (json_array_size(ports))
		addr = json_string_value(json_object_get(json_array_get(ports, 0), "listen"));
	uint64_t t1 = lt_now_ns();
	dmn_stream_json(j->out,
			json_pack("{s:s, s:O, s:s, s:s, s:s, s:{s:I, s:I, s:I}}", "event", "done",
				  "app", ic.app, "address", addr ? addr : "", "engine", j->rec.engine,
				  "engine_why", j->engine_why, "timings", "boot_to_trigger_ms",
				  (json_int_t)((j->t_trigger - j->t_boot0) / 1000000), "snapshot_ms",
				  (json_int_t)((j->t_snap - j->t_trigger) / 1000000), "total_ms",
				  (json_int_t)((t1 - t0) / 1000000)));
	json_decref(ic.app);
	return 0;
}

static void *worker(void *arg)
{
	struct deploy_job *j = arg;
	if (deploy_steps(j) < 0) {
		lt_warn("deploy %s failed: %s", j->spec.name, lt_errmsg());
		dmn_stream_json(j->out,
				json_pack("{s:s, s:s}", "event", "error", "message", lt_errmsg()));
		dmn_events_publish(j->d, "app",
				   json_pack("{s:s, s:s, s:s}", "app", j->spec.name, "change",
					     "deploy-failed", "detail", lt_errmsg()));
	}
	dmn_stream_close(j->out);
	if (dmn_call(j->d, job_unlink, j) < 0)
		lt_clear_error(); /* the loop is gone: so is the list */
	dmn_stream_unref(j->out);
	dmn_spec_free(&j->spec);
	dmn_app_rec_free(&j->rec);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	free(j);
	atomic_fetch_sub(&workers, 1);
	return NULL;
}

/* ---- starting, listing, aborting ------------------------------------------------------ */

struct start_call {
	struct deploy_job *j;
	int status;
	int rc;
};

static void job_link(void *arg)
{
	struct start_call *c = arg;
	struct dmn *d = c->j->d;
	c->rc = -1;
	if (atomic_load(&d->stopping)) {
		c->status = 503;
		lt_fail("ignitiond is shutting down");
		return;
	}
	for (struct deploy_job *x = d->jobs; x; x = x->next)
		if (!strcmp(x->spec.name, c->j->spec.name)) {
			c->status = 409;
			lt_fail("app %s is being deployed already", c->j->spec.name);
			return;
		}
	c->j->next = d->jobs;
	d->jobs = c->j;
	c->rc = 0;
}

int dmn_deploy_start(struct dmn *d, struct dmn_spec *spec, struct dmn_stream *out, int *status)
{
	struct deploy_job *j = lt_calloc(1, sizeof(*j));
	if (!j) {
		*status = 500;
		return -1;
	}
	j->d = d;
	j->spec = *spec;
	j->out = out;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	struct start_call c = {.j = j, .status = 500};
	if (dmn_call(d, job_link, &c) < 0 || c.rc < 0) {
		*status = c.rc < 0 ? c.status : 503;
		pthread_mutex_destroy(&j->mu);
		pthread_cond_destroy(&j->cv);
		free(j);
		return -1;
	}
	/* from here the job owns spec and a reference to out */
	dmn_stream_ref(out);
	spec->env = NULL;
	spec->nenv = 0;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	atomic_fetch_add(&workers, 1);
	int rc = pthread_create(&t, &at, worker, j);
	pthread_attr_destroy(&at);
	if (rc) {
		atomic_fetch_sub(&workers, 1);
		errno = rc;
		*status = 500;
		dmn_call(d, job_unlink, j);
		*spec = j->spec;
		dmn_stream_unref(out);
		free(j);
		return lt_fail_errno("cannot start the deploy thread");
	}
	return 0;
}

bool dmn_deploy_running(struct dmn *d, const char *name)
{
	for (struct deploy_job *j = d->jobs; j; j = j->next)
		if (!strcmp(j->spec.name, name))
			return true;
	return false;
}

bool dmn_deploys_booting(struct dmn *d)
{
	for (struct deploy_job *j = d->jobs; j; j = j->next)
		if (j->bpool)
			return true;
	return false;
}

void dmn_deploys_abort(struct dmn *d)
{
	for (struct deploy_job *j = d->jobs; j; j = j->next)
		if (j->bapp && !j->removing)
			boot_end(j, "ignitiond is shutting down");
}

void dmn_deploys_join(struct dmn *d)
{
	(void)d;
	/* workers end promptly once the loop is dead (every wait checks it) */
	for (int k = 0; k < 300 && atomic_load(&workers) > 0; k++)
		usleep(10000);
}
