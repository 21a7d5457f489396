/* The app table (loop thread only): deployed apps in the pool, their
 * listeners, their records on disk, and the JSON views of apps and
 * instances the API serves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

struct dapp {
	struct dapp *next;
	struct dmn_app_rec rec;
	struct dmn_engine *eng;
	struct lt_app *app;
	struct lt_listener *listeners[DMN_MAX_PORTS];
	bool routed;
	bool removing;
	char note[256]; /* a problem found when loading or listening */
	/* counters of earlier daemon runs (apps/<name>/counters.json), so the
	 * numbers count since the app was deployed, not since we started */
	struct lt_app_stats base;
	uint64_t saved_sum;
};

#define COUNTERS(X)                                                                       \
	X(connections) X(served) X(refused) X(queue_timeouts) X(queue_full) X(restores)   \
	X(shell_restores) X(resumes) X(cold_boots) X(pauses) X(drops) X(start_failures)   \
	X(deaths) X(connect_failures) X(lost) X(bytes_in) X(bytes_out)

/* The pool's live stats plus what earlier runs counted. */
static void stats_total(const struct dapp *a, struct lt_app_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (a->app)
		lt_app_get_stats(a->app, st);
#define ADD(f) st->f += a->base.f;
	COUNTERS(ADD)
#undef ADD
}

static char *counters_path(struct dmn *d, const char *name)
{
	char *dir = dmn_app_dir(d->state, name);
	char *p = dir ? lt_path_join(dir, "counters.json") : NULL;
	free(dir);
	return p;
}

static void counters_load(struct dmn *d, struct dapp *a)
{
	char *p = counters_path(d, a->rec.spec.name);
	json_t *j = p && lt_path_exists(p) ? json_load_file(p, 0, NULL) : NULL;
#define GET(f)                                                                            \
	{                                                                                 \
		json_t *v = json_object_get(j, #f);                                       \
		if (json_is_integer(v) && json_integer_value(v) >= 0)                     \
			a->base.f = (uint64_t)json_integer_value(v);                      \
	}
	if (json_is_object(j))
		COUNTERS(GET)
#undef GET
	json_decref(j);
	free(p);
}

static void counters_save(struct dmn *d, struct dapp *a)
{
	struct lt_app_stats st;
	stats_total(a, &st);
	uint64_t sum = 0;
#define SUM(f) sum += st.f;
	COUNTERS(SUM)
#undef SUM
	if (sum == a->saved_sum || a->removing || !a->app)
		return;
	json_t *j = json_object();
#define PUT(f) json_object_set_new(j, #f, json_integer((json_int_t)st.f));
	COUNTERS(PUT)
#undef PUT
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	char *p = counters_path(d, a->rec.spec.name);
	if (s && p && lt_write_file_atomic(p, s, strlen(s), 0640) == 0)
		a->saved_sum = sum;
	else
		lt_clear_error(); /* counters are best effort */
	json_decref(j);
	free(s);
	free(p);
}

void dmn_apps_save_counters(struct dmn *d)
{
	for (struct dapp *a = d->apps; a; a = a->next)
		counters_save(d, a);
}

struct dapp *dmn_app_find(struct dmn *d, const char *name)
{
	for (struct dapp *a = d->apps; a; a = a->next)
		if (!strcmp(a->rec.spec.name, name))
			return a;
	return NULL;
}

static void dapp_free(struct dapp *a)
{
	dmn_app_rec_free(&a->rec);
	free(a);
}

static void dapp_unlink(struct dmn *d, struct dapp *a)
{
	for (struct dapp **pp = &d->apps; *pp; pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			return;
		}
}

/* ---- events --------------------------------------------------------------- */

void dmn_pool_observer(void *ctx, const struct lt_pool_event *ev)
{
	struct dmn *d = ctx;
	json_t *j = json_pack("{s:s}", "app", ev->app ? ev->app : "");
	if (!j)
		return;
	const char *kind = "app";
	switch (ev->kind) {
	case LT_EV_INSTANCE:
		kind = "instance";
		json_object_set_new(j, "instance", json_string(ev->instance ? ev->instance : ""));
		json_object_set_new(j, "state", json_string(lt_inst_state_name(ev->state)));
		json_object_set_new(j, "old_state", json_string(lt_inst_state_name(ev->old_state)));
		json_object_set_new(j, "started_by",
				    json_string(lt_started_by_name(ev->started_by)));
		break;
	case LT_EV_DEGRADED:
		json_object_set_new(j, "change", json_string("degraded"));
		break;
	case LT_EV_REPLACED:
		json_object_set_new(j, "change", json_string("replaced"));
		break;
	case LT_EV_REFUSED:
		kind = "refused";
		break;
	case LT_EV_REMOVED: {
		json_object_set_new(j, "change", json_string("removed"));
		/* the pool frees the app right after this (shutdown or rm):
		 * keep its counters and stop pointing at it */
		struct dapp *a = ev->app ? dmn_app_find(d, ev->app) : NULL;
		if (a && a->app) {
			counters_save(d, a);
			a->app = NULL;
		}
		break;
	}
	}
	if (ev->detail)
		json_object_set_new(j, "detail", json_string(ev->detail));
	dmn_events_publish(d, kind, j);
}

/* ---- install -------------------------------------------------------------- */

static void policy_of(struct dmn *d, const struct dmn_spec *s, struct lt_policy *p)
{
	lt_policy_defaults(p);
	p->min = s->min;
	p->max = s->max;
	p->concurrency = s->concurrency;
	p->idle_timeout = LT_MS(s->idle_timeout_ms);
	p->scale_down = LT_MS(s->scale_down_ms);
	p->queue_timeout = LT_MS(s->queue_timeout_ms);
	p->drain_timeout = d->drain_timeout_ns;
}

/* The listen address of port k, keeping the port a listener got before
 * (so an app deployed on port 0 keeps its port across restarts). */
static int listen_addr(const struct dmn_app_rec *r, size_t k, char *out, size_t len)
{
	const char *spec = r->spec.nports ? r->spec.ports[k].listen : DMN_DEF_LISTEN ":0";
	const char *colon = strrchr(spec, ':');
	if (!colon)
		return lt_fail("bad listen address %s", spec);
	if (r->bound[k] && !strcmp(colon, ":0"))
		snprintf(out, len, "%.*s:%u", (int)(colon - spec), spec, r->bound[k]);
	else
		snprintf(out, len, "%s", spec);
	return 0;
}

/* Same listen specs (as given, port 0 included) and guest ports: a
 * redeploy keeps its listeners and the ports they got. */
static bool same_ports(const struct dmn_app_rec *a, const struct dmn_app_rec *b)
{
	if (a->nports != b->nports || a->spec.nports != b->spec.nports)
		return false;
	for (size_t k = 0; k < a->nports; k++) {
		const char *x = a->spec.nports ? a->spec.ports[k].listen : "";
		const char *y = b->spec.nports ? b->spec.ports[k].listen : "";
		if (strcmp(x, y) || a->guest_ports[k] != b->guest_ports[k])
			return false;
	}
	return true;
}

static void close_listeners(struct dapp *a)
{
	for (size_t k = 0; k < DMN_MAX_PORTS; k++)
		if (a->listeners[k]) {
			lt_listener_close(a->listeners[k]);
			a->listeners[k] = NULL;
		}
}

static int open_listeners(struct dmn *d, struct dapp *a)
{
	for (size_t k = 0; k < a->rec.nports; k++) {
		char addr[96];
		if (listen_addr(&a->rec, k, addr, sizeof(addr)) < 0)
			return -1;
		a->listeners[k] = lt_proxy_listen_tcp(d->proxy, addr, a->app, a->rec.guest_ports[k]);
		if (!a->listeners[k]) {
			lt_fail_ctx("app %s", a->rec.spec.name);
			close_listeners(a);
			return -1;
		}
		a->rec.bound[k] = lt_listener_port(a->listeners[k]);
	}
	return 0;
}

static void route_host(struct dmn *d, struct dapp *a)
{
	if (a->routed && d->http)
		lt_listener_unroute(d->http, a->rec.spec.host);
	a->routed = false;
	if (!a->rec.spec.host[0])
		return;
	if (!d->http) {
		snprintf(a->note, sizeof(a->note),
			 "--host %.160s ignored: ignitiond runs without --http-listen",
			 a->rec.spec.host);
		return;
	}
	if (lt_listener_route(d->http, a->rec.spec.host, a->app, a->rec.guest_ports[0]) < 0)
		snprintf(a->note, sizeof(a->note), "host route: %s", lt_errmsg());
	else
		a->routed = true;
}

static int spec_for(struct dapp *a, struct lt_app_spec *spec)
{
	struct dmn_run_cfg c = {
		.spec = &a->rec.spec,
		.kernel = a->rec.kernel,
		.rootfs = a->rec.rootfs,
		.rootfs_type = "squashfs",
		.guest_ports = a->rec.guest_ports,
		.nports = a->rec.nports,
	};
	*spec = (struct lt_app_spec){.name = a->rec.spec.name,
				     .snapshot = a->rec.snapshot[0] ? a->rec.snapshot : NULL};
	spec->engine_cfg = dmn_engine_app_cfg(a->eng, &c, &spec->engine_cfg_free);
	return spec->engine_cfg ? 0 : -1;
}

/* A brand new app (deploy or restart): pool entry, listeners, route. */
static int install_new(struct dmn *d, struct dmn_app_rec *r, struct dmn_engine *eng)
{
	struct dapp *a = lt_calloc(1, sizeof(*a));
	if (!a)
		return -1;
	a->rec = *r;
	a->eng = eng;
	struct lt_app_spec spec;
	struct lt_policy pol;
	policy_of(d, &r->spec, &pol);
	if (spec_for(a, &spec) < 0) {
		free(a);
		return -1;
	}
	a->app = lt_pool_add_app(d->pool, dmn_engine_lt(eng), &spec, &pol);
	if (!a->app) {
		spec.engine_cfg_free(spec.engine_cfg);
		free(a);
		return -1;
	}
	if (open_listeners(d, a) < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", lt_errmsg());
		lt_app_remove(a->app, NULL, NULL);
		free(a);
		return lt_fail("%s", msg);
	}
	route_host(d, a);
	counters_load(d, a);
	memcpy(r->bound, a->rec.bound, sizeof(r->bound));
	a->next = d->apps;
	d->apps = a;
	return 0;
}

/* Redeploy: the pool switches generations (new connections go to the new
 * snapshot, old instances drain); listeners stay when the ports do. */
static int install_replace(struct dmn *d, struct dapp *a, struct dmn_app_rec *r,
			   struct dmn_engine *eng)
{
	struct dapp tmp = {.rec = *r, .eng = eng};
	bool keep = same_ports(&a->rec, r);
	if (keep)
		memcpy(tmp.rec.bound, a->rec.bound, sizeof(tmp.rec.bound));
	struct lt_app_spec spec;
	struct lt_policy pol;
	if (!a->app)
		return lt_fail("ignitiond is shutting down");
	policy_of(d, &r->spec, &pol);
	if (spec_for(&tmp, &spec) < 0)
		return -1;
	if (lt_app_replace(a->app, dmn_engine_lt(eng), &spec, &pol) < 0) {
		spec.engine_cfg_free(spec.engine_cfg);
		return -1;
	}
	if (!keep) {
		close_listeners(a);
		tmp.app = a->app;
		if (open_listeners(d, &tmp) < 0)
			snprintf(a->note, sizeof(a->note), "%s", lt_errmsg());
		memcpy(a->listeners, tmp.listeners, sizeof(a->listeners));
	}
	dmn_app_rec_free(&a->rec);
	a->rec = tmp.rec;
	a->eng = eng;
	a->note[0] = '\0';
	route_host(d, a);
	memcpy(r->bound, a->rec.bound, sizeof(r->bound));
	return 0;
}

int dmn_app_install(struct dmn *d, struct dmn_app_rec *r)
{
	struct dmn_engine *eng = dmn_engine_get(d, r->engine, false);
	if (!eng)
		return -1;
	struct dapp *a = dmn_app_find(d, r->spec.name);
	if (a && (a->removing || !a->app))
		return lt_fail("app %s is being removed or stopped", r->spec.name);
	int rc = a ? install_replace(d, a, r, eng) : install_new(d, r, eng);
	if (rc < 0)
		return -1;
	/* the table owns the record's env now; the caller's copy is a view */
	a = dmn_app_find(d, r->spec.name);
	if (dmn_app_save(d->state, &a->rec) < 0)
		lt_warn("ignitiond: cannot save app %s: %s", r->spec.name, lt_errmsg());
	return 0;
}

int dmn_apps_restore(struct dmn *d)
{
	char **names;
	size_t n;
	if (dmn_app_list(d->state, &names, &n) < 0)
		return -1;
	for (size_t k = 0; k < n; k++) {
		struct dmn_app_rec r;
		if (dmn_app_load(d->state, names[k], &r) < 0) {
			lt_error("ignitiond: cannot load app %s: %s", names[k], lt_errmsg());
			free(names[k]);
			continue;
		}
		if (r.snapshot[0] && !lt_path_exists(r.snapshot))
			lt_warn("ignitiond: app %s: snapshot %s is missing (its instances will "
				"cold boot)", names[k], r.snapshot);
		if (dmn_app_install(d, &r) < 0) {
			lt_error("ignitiond: cannot restore app %s: %s", names[k], lt_errmsg());
			dmn_app_rec_free(&r);
		} else {
			lt_info("ignitiond: app %s restored (generation %u)", names[k], r.generation);
		}
		free(names[k]);
	}
	free(names);
	return 0;
}

void dmn_apps_free(struct dmn *d)
{
	while (d->apps) {
		struct dapp *a = d->apps;
		d->apps = a->next;
		dapp_free(a);
	}
}

/* ---- views ---------------------------------------------------------------- */

json_t *dmn_instance_json(struct lt_instance *i)
{
	struct lt_instance_info info;
	lt_instance_get_info(i, &info);
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:b}", "id", info.id, "app", info.app,
			 "state", lt_inst_state_name(info.state), "started_by",
			 lt_started_by_name(info.started_by), "generation", (int)info.generation,
			 "connections", (int)info.conns, "held", info.held);
}

static json_t *inst_json_pid(struct dapp *a, struct lt_instance *i)
{
	json_t *j = dmn_instance_json(i);
	if (j)
		json_object_set_new(j, "pid", json_integer(dmn_engine_inst_pid(a->eng, i)));
	return j;
}

json_t *dmn_app_json(struct dmn *d, struct dapp *a, bool detail)
{
	(void)d;
	struct lt_app_stats st;
	stats_total(a, &st);
	const struct dmn_spec *s = &a->rec.spec;
	json_t *ports = json_array();
	for (size_t k = 0; k < a->rec.nports; k++) {
		char addr[96];
		listen_addr(&a->rec, k, addr, sizeof(addr));
		char *colon = strrchr(addr, ':');
		if (colon && a->rec.bound[k])
			snprintf(colon + 1, sizeof(addr) - (size_t)(colon + 1 - addr), "%u",
				 a->rec.bound[k]);
		json_array_append_new(ports, json_pack("{s:s, s:i}", "listen", addr, "guest",
						       (int)a->rec.guest_ports[k]));
	}
	const char *deg = a->app ? lt_app_degraded(a->app) : NULL;
	json_t *j = json_pack(
		"{s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, "
		"s:o, s:s, s:s, s:I}",
		"name", s->name, "ref", s->ref, "engine", a->rec.engine, "instances",
		(int)st.instances, "restores", (json_int_t)st.restores, "resumes",
		(json_int_t)st.resumes, "cold_boots", (json_int_t)st.cold_boots, "connections",
		(json_int_t)st.connections, "served", (json_int_t)st.served, "refused",
		(json_int_t)st.refused, "queue_timeouts", (json_int_t)st.queue_timeouts, "pauses",
		(json_int_t)st.pauses, "drops", (json_int_t)st.drops, "deaths",
		(json_int_t)st.deaths, "shell_restores", (json_int_t)st.shell_restores,
		"generation", (int)a->rec.generation, "ports", ports, "state",
		a->removing ? "removing" : !a->app ? "stopped" : deg ? "degraded" : "serving",
		"digest", a->rec.digest,
		"deployed", (json_int_t)a->rec.deployed);
	if (!j)
		return NULL;
	json_object_set_new(j, "degraded", deg ? json_string(deg) : json_null());
	json_object_set_new(j, "note", a->note[0] ? json_string(a->note) : json_null());
	json_object_set_new(j, "host", s->host[0] ? json_string(s->host) : json_null());
	json_object_set_new(j, "policy",
			    json_pack("{s:i, s:i, s:i, s:I, s:I, s:I, s:s}", "min", (int)s->min,
				      "max", (int)s->max, "concurrency", (int)s->concurrency,
				      "idle_timeout_ms", (json_int_t)s->idle_timeout_ms,
				      "scale_down_ms", (json_int_t)s->scale_down_ms,
				      "queue_timeout_ms", (json_int_t)s->queue_timeout_ms, "trigger",
				      s->trigger_text));
	if (detail) {
		json_t *insts = json_array();
		for (struct lt_instance *i = a->app ? lt_app_first_instance(a->app) : NULL; i;
		     i = lt_instance_next(i))
			json_array_append_new(insts, inst_json_pid(a, i));
		json_object_set_new(j, "instance_list", insts);
		json_object_set_new(j, "spec", dmn_spec_to_json(s));
		json_object_set_new(j, "snapshot", json_string(a->rec.snapshot));
		json_object_set_new(j, "rootfs", json_string(a->rec.rootfs));
		json_object_set_new(j, "kernel", json_string(a->rec.kernel));
		json_object_set_new(j, "queued", json_integer(st.queued));
		json_object_set_new(j, "peak_instances", json_integer(st.peak_instances));
		json_object_set_new(j, "bytes_in", json_integer((json_int_t)st.bytes_in));
		json_object_set_new(j, "bytes_out", json_integer((json_int_t)st.bytes_out));
		json_object_set_new(j, "start_failures",
				    json_integer((json_int_t)st.start_failures));
	}
	return j;
}

json_t *dmn_apps_json(struct dmn *d)
{
	json_t *arr = json_array();
	/* by name, stable for scripts */
	size_t n = 0;
	for (struct dapp *a = d->apps; a; a = a->next)
		n++;
	struct dapp **v = n ? lt_calloc(n, sizeof(*v)) : NULL;
	size_t k = 0;
	for (struct dapp *a = d->apps; a && v; a = a->next)
		v[k++] = a;
	for (size_t x = 0; x < k; x++)
		for (size_t y = x + 1; y < k; y++)
			if (strcmp(v[x]->rec.spec.name, v[y]->rec.spec.name) > 0) {
				struct dapp *t = v[x];
				v[x] = v[y];
				v[y] = t;
			}
	for (size_t x = 0; x < k; x++)
		json_array_append_new(arr, dmn_app_json(d, v[x], false));
	free(v);
	return arr;
}

json_t *dmn_instances_json(struct dmn *d, const char *app)
{
	json_t *arr = json_array();
	for (struct dapp *a = d->apps; a; a = a->next) {
		if ((app && strcmp(a->rec.spec.name, app)) || !a->app)
			continue;
		for (struct lt_instance *i = lt_app_first_instance(a->app); i;
		     i = lt_instance_next(i)) {
			struct lt_instance_info info;
			lt_instance_get_info(i, &info);
			if (info.state == LT_INST_DEAD)
				continue;
			json_array_append_new(arr, inst_json_pid(a, i));
		}
	}
	return arr;
}

/* ---- admin ---------------------------------------------------------------- */

static struct dapp *app_of_instance(struct dmn *d, const char *id, struct lt_instance **out)
{
	struct lt_instance *i = lt_pool_find_instance(d->pool, id);
	if (!i)
		return NULL;
	struct lt_instance_info info;
	lt_instance_get_info(i, &info);
	*out = i;
	return dmn_app_find(d, info.app);
}

static int inst_do(struct lt_instance *i, const char *action)
{
	if (!strcmp(action, "pause"))
		return lt_instance_pause(i);
	if (!strcmp(action, "resume"))
		return lt_instance_resume(i);
	if (!strcmp(action, "stop"))
		return lt_instance_stop(i);
	return lt_fail("unknown action '%s'", action);
}

int dmn_instance_action(struct dmn *d, const char *id, const char *action, int *status)
{
	struct lt_instance *i = NULL;
	if (!app_of_instance(d, id, &i) || !i) {
		*status = 404;
		return lt_fail("no instance '%s'", id);
	}
	if (inst_do(i, action) < 0) {
		*status = 409;
		return -1;
	}
	return 0;
}

/* Every instance the action applies to; returns how many took it. */
int dmn_app_action(struct dmn *d, const char *name, const char *action, int *status)
{
	struct dapp *a = dmn_app_find(d, name);
	if (!a) {
		*status = 404;
		return lt_fail("no app '%s'", name);
	}
	if (!a->app) {
		*status = 409;
		return lt_fail("app %s is stopped (ignitiond is shutting down)", name);
	}
	/* collect ids first: an action may change the list */
	char ids[DMN_MAX_INSTANCES][96];
	size_t n = 0;
	for (struct lt_instance *i = lt_app_first_instance(a->app); i && n < DMN_MAX_INSTANCES;
	     i = lt_instance_next(i))
		snprintf(ids[n++], sizeof(ids[0]), "%s", lt_instance_id(i));
	int done = 0;
	for (size_t k = 0; k < n; k++) {
		struct lt_instance *i = lt_pool_find_instance(d->pool, ids[k]);
		if (i && inst_do(i, action) == 0)
			done++;
	}
	lt_clear_error();
	return done;
}

int dmn_app_scale(struct dmn *d, const char *name, json_t *body, int *status)
{
	struct dapp *a = dmn_app_find(d, name);
	if (!a) {
		*status = 404;
		return lt_fail("no app '%s'", name);
	}
	if (!a->app || a->removing) {
		*status = 409;
		return lt_fail("app %s is being removed or stopped", name);
	}
	uint32_t min = a->rec.spec.min, max = a->rec.spec.max;
	const char *key;
	json_t *v;
	*status = 400;
	if (!json_is_object(body))
		return lt_fail("the request body must be a JSON object {\"min\":N, \"max\":N}");
	json_object_foreach(body, key, v) {
		uint32_t *dst = !strcmp(key, "min") ? &min : !strcmp(key, "max") ? &max : NULL;
		if (!dst)
			return lt_fail("unknown field '%.64s'", key);
		if (!json_is_integer(v) || json_integer_value(v) < (dst == &max ? 1 : 0) ||
		    json_integer_value(v) > DMN_MAX_INSTANCES)
			return lt_fail("field '%s' must be an integer in %d..%d", key,
				       dst == &max ? 1 : 0, DMN_MAX_INSTANCES);
		*dst = (uint32_t)json_integer_value(v);
	}
	if (min > max)
		return lt_fail("min (%u) exceeds max (%u)", min, max);
	struct lt_policy pol = *lt_app_policy(a->app);
	pol.min = min;
	pol.max = max;
	if (lt_app_set_policy(a->app, &pol) < 0)
		return -1;
	a->rec.spec.min = min;
	a->rec.spec.max = max;
	if (dmn_app_save(d->state, &a->rec) < 0)
		lt_warn("ignitiond: cannot save app %s: %s", name, lt_errmsg());
	*status = 200;
	return 0;
}

struct rm_ctx {
	struct dmn *d;
	struct dapp *a;
	void (*done)(void *);
	void *arg;
};

static void removed(void *arg)
{
	struct rm_ctx *c = arg;
	dapp_unlink(c->d, c->a);
	dapp_free(c->a);
	if (c->done)
		c->done(c->arg);
	free(c);
}

int dmn_app_remove(struct dmn *d, const char *name, int *status, void (*done)(void *), void *arg)
{
	struct dapp *a = dmn_app_find(d, name);
	if (!a) {
		*status = 404;
		return lt_fail("no app '%s'", name);
	}
	if (a->removing || !a->app) {
		*status = 409;
		return lt_fail("app %s is being removed or stopped already", name);
	}
	struct rm_ctx *c = lt_calloc(1, sizeof(*c));
	if (!c) {
		*status = 500;
		return -1;
	}
	*c = (struct rm_ctx){.d = d, .a = a, .done = done, .arg = arg};
	/* forget it on disk first: a crash from here on must not bring it back */
	if (dmn_app_delete(d->state, name) < 0)
		lt_warn("ignitiond: removing %s: %s", name, lt_errmsg());
	a->removing = true;
	if (a->routed && d->http)
		lt_listener_unroute(d->http, a->rec.spec.host);
	a->routed = false;
	lt_proxy_forget_app(d->proxy, a->app);
	memset(a->listeners, 0, sizeof(a->listeners));
	lt_app_remove(a->app, removed, c);
	return 0;
}

/* ---- logs ------------------------------------------------------------------- */

json_t *dmn_log_sources(struct dmn *d, const char *what, int *status)
{
	json_t *arr = json_array();
	struct dapp *a = dmn_app_find(d, what);
	if (a) {
		char *dir = dmn_app_dir(d->state, what);
		char *boot = dir ? lt_path_join(dir, "boot.log") : NULL;
		if (boot && lt_path_exists(boot))
			json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "id", "deploy-boot",
							     "path", boot, "live", false));
		free(boot);
		free(dir);
		for (struct lt_instance *i = a->app ? lt_app_first_instance(a->app) : NULL; i;
		     i = lt_instance_next(i)) {
			char path[DMN_PATH_MAX];
			if (dmn_engine_inst_log(a->eng, i, path, sizeof(path)) == 0)
				json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "id",
								     lt_instance_id(i), "path", path,
								     "live", true));
		}
		return arr;
	}
	struct lt_instance *i = NULL;
	a = app_of_instance(d, what, &i);
	if ((!a || !i) && dmn_name_valid(what)) {
		/* a deploy that failed leaves its boot console behind */
		char *dir = dmn_app_dir(d->state, what);
		char *boot = dir ? lt_path_join(dir, "boot.log") : NULL;
		bool there = boot && lt_path_exists(boot);
		if (there)
			json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "id", "deploy-boot",
							     "path", boot, "live", false));
		free(boot);
		free(dir);
		if (there)
			return arr;
	}
	if (!a || !i) {
		json_decref(arr);
		*status = 404;
		lt_fail("no app or instance '%s'", what);
		return NULL;
	}
	char path[DMN_PATH_MAX];
	if (dmn_engine_inst_log(a->eng, i, path, sizeof(path)) < 0) {
		json_decref(arr);
		*status = 404;
		lt_fail("instance %s has no console log (engine %s)", what, a->rec.engine);
		return NULL;
	}
	json_array_append_new(arr,
			      json_pack("{s:s, s:s, s:b}", "id", what, "path", path, "live", true));
	return arr;
}
