/* The HTTP/JSON API, transport-independent part: routing, validation of
 * every path component and body, and the replies. The libmicrohttpd glue
 * (http.c) hands requests here; the unit tests call dmn_api_handle()
 * directly. docs/daemon.md is the reference.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

#define LOG_TAIL_MAX (1u << 20) /* bytes of each log in a non-follow reply */

void dmn_reply_free(struct dmn_reply *r)
{
	json_decref(r->json);
	free(r->text);
	dmn_stream_unref(r->stream);
	json_decref(r->follow);
	memset(r, 0, sizeof(*r));
}

static void reply_json(struct dmn_reply *r, int status, json_t *j)
{
	r->status = status;
	r->json = j;
	r->content_type = "application/json";
	if (!j) {
		r->status = 500;
		r->json = json_pack("{s:s}", "error", "out of memory");
	}
}

static void reply_error(struct dmn_reply *r, int status, const char *msg)
{
	reply_json(r, status, json_pack("{s:s}", "error", msg && *msg ? msg : "unknown error"));
}

/* ---- calls into the loop ---------------------------------------------------- */

enum qop { Q_APPS, Q_APP, Q_INSTS, Q_INST, Q_APP_ACT, Q_INST_ACT, Q_SCALE, Q_LOGS, Q_METRICS,
	   Q_HEALTH, Q_INST_ALIVE };

struct loopq {
	struct dmn *d;
	enum qop op;
	const char *a, *b;
	json_t *body;
	json_t *out;
	struct lt_buf text;
	int status;
	int rc;
	char err[512];
};

static void q_fail(struct loopq *q, int status)
{
	q->status = status;
	q->rc = -1;
	snprintf(q->err, sizeof(q->err), "%s", lt_errmsg());
}

static void q_run(void *arg)
{
	struct loopq *q = arg;
	struct dmn *d = q->d;
	q->status = 200;
	q->rc = 0;
	lt_clear_error();
	switch (q->op) {
	case Q_APPS:
		q->out = dmn_apps_json(d);
		break;
	case Q_APP: {
		struct dapp *a = dmn_app_find(d, q->a);
		if (!a) {
			lt_fail("no app '%s'", q->a);
			q_fail(q, 404);
			return;
		}
		q->out = dmn_app_json(d, a, true);
		break;
	}
	case Q_INSTS:
		if (q->a && !dmn_app_find(d, q->a)) {
			lt_fail("no app '%s'", q->a);
			q_fail(q, 404);
			return;
		}
		q->out = dmn_instances_json(d, q->a);
		break;
	case Q_INST:
	case Q_INST_ALIVE: {
		struct lt_instance *i = lt_pool_find_instance(d->pool, q->a);
		if (!i) {
			lt_fail("no instance '%s'", q->a);
			q_fail(q, 404);
			return;
		}
		q->out = dmn_instance_json(i);
		break;
	}
	case Q_APP_ACT: {
		int st = 500;
		int n = dmn_app_action(d, q->a, q->b, &st);
		if (n < 0) {
			q_fail(q, st);
			return;
		}
		q->out = json_pack("{s:s, s:s, s:i}", "app", q->a, "action", q->b, "instances", n);
		break;
	}
	case Q_INST_ACT: {
		int st = 500;
		if (dmn_instance_action(d, q->a, q->b, &st) < 0) {
			q_fail(q, st);
			return;
		}
		q->out = json_pack("{s:s, s:s}", "instance", q->a, "action", q->b);
		break;
	}
	case Q_SCALE: {
		int st = 500;
		if (dmn_app_scale(d, q->a, q->body, &st) < 0) {
			q_fail(q, st);
			return;
		}
		struct dapp *a = dmn_app_find(d, q->a);
		q->out = a ? dmn_app_json(d, a, false) : NULL;
		break;
	}
	case Q_LOGS: {
		int st = 404;
		q->out = dmn_log_sources(d, q->a, &st);
		if (!q->out) {
			q_fail(q, st);
			return;
		}
		break;
	}
	case Q_METRICS:
		if (lt_pool_metrics(d->pool, &q->text) < 0) {
			q_fail(q, 500);
			return;
		}
		lt_buf_printf(&q->text, "# HELP lttle_proxy_active_connections Forwarded connections open now.\n"
					"# TYPE lttle_proxy_active_connections gauge\n"
					"lttle_proxy_active_connections %u\n",
			      lt_proxy_active(d->proxy));
		break;
	case Q_HEALTH: {
		size_t n = 0;
		for (struct lt_app *a = lt_pool_first_app(d->pool); a; a = lt_app_next(a))
			n++;
		q->out = json_pack("{s:b, s:s, s:i, s:s, s:i, s:I, s:b}", "ok", true, "version",
				   "0.1.0", "pid", (int)getpid(), "state", d->state, "apps", (int)n,
				   "uptime_s",
				   (json_int_t)((lt_wall_ns() - d->started_wall) / 1000000000ull),
				   "stopping", atomic_load(&d->stopping));
		break;
	}
	}
	if (!q->out && q->op != Q_METRICS) {
		lt_fail("out of memory");
		q_fail(q, 500);
	}
}

/* Runs q on the loop; on failure fills r and returns -1. */
static int run_q(struct dmn *d, struct loopq *q, struct dmn_reply *r)
{
	q->d = d;
	if (dmn_call(d, q_run, q) < 0) {
		reply_error(r, 503, lt_errmsg());
		lt_buf_free(&q->text);
		return -1;
	}
	if (q->rc < 0) {
		reply_error(r, q->status, q->err);
		json_decref(q->out);
		lt_buf_free(&q->text);
		return -1;
	}
	return 0;
}

static void simple(struct dmn *d, enum qop op, const char *a, const char *b, json_t *body,
		   struct dmn_reply *r)
{
	struct loopq q = {.op = op, .a = a, .b = b, .body = body};
	if (run_q(d, &q, r) == 0)
		reply_json(r, 200, q.out);
}

/* ---- removal (waits for the app's VMs to stop) -------------------------------- */

struct rm_wait {
	sem_t sem;
	atomic_int refs;
};

static void rm_wait_put(struct rm_wait *w)
{
	if (atomic_fetch_sub(&w->refs, 1) == 1) {
		sem_destroy(&w->sem);
		free(w);
	}
}

static void rm_done(void *arg)
{
	struct rm_wait *w = arg;
	sem_post(&w->sem);
	rm_wait_put(w);
}

struct rm_call {
	struct dmn *d;
	const char *name;
	struct rm_wait *w;
	int rc, status;
	char err[512];
};

static void rm_run(void *arg)
{
	struct rm_call *c = arg;
	lt_clear_error();
	c->status = 200;
	if (dmn_deploy_running(c->d, c->name)) {
		c->status = 409;
		c->rc = -1;
		snprintf(c->err, sizeof(c->err), "app %s is being deployed; try again after it",
			 c->name);
		return;
	}
	c->rc = dmn_app_remove(c->d, c->name, &c->status, rm_done, c->w);
	if (c->rc < 0)
		snprintf(c->err, sizeof(c->err), "%s", lt_errmsg());
	else
		atomic_fetch_add(&c->w->refs, 1); /* held by the removal */
}

static void handle_remove(struct dmn *d, const char *name, struct dmn_reply *r)
{
	struct rm_wait *w = lt_calloc(1, sizeof(*w));
	if (!w) {
		reply_error(r, 500, lt_errmsg());
		return;
	}
	sem_init(&w->sem, 0, 0);
	atomic_init(&w->refs, 1);
	struct rm_call c = {.d = d, .name = name, .w = w};
	if (dmn_call(d, rm_run, &c) < 0) {
		reply_error(r, 503, lt_errmsg());
	} else if (c.rc < 0) {
		reply_error(r, c.status, c.err);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(d->drain_timeout_ns / LT_SEC(1)) + 15;
		bool done = true;
		while (sem_timedwait(&w->sem, &ts) < 0) {
			if (errno == EINTR)
				continue;
			done = false;
			break;
		}
		reply_json(r, 200, json_pack("{s:s, s:b}", "removed", name, "stopped", done));
	}
	rm_wait_put(w);
}

/* ---- logs ------------------------------------------------------------------------ */

/* The last LOG_TAIL_MAX bytes of each source; lines prefixed with the
 * source id when there are several. */
static char *read_logs(json_t *sources, size_t *len)
{
	struct lt_buf b = {0};
	size_t n = json_array_size(sources);
	for (size_t k = 0; k < n; k++) {
		json_t *s = json_array_get(sources, k);
		const char *id = json_string_value(json_object_get(s, "id"));
		const char *path = json_string_value(json_object_get(s, "path"));
		FILE *f = path ? fopen(path, "re") : NULL;
		if (!f)
			continue;
		if (fseeko(f, 0, SEEK_END) == 0) {
			off_t end = ftello(f);
			fseeko(f, end > (off_t)LOG_TAIL_MAX ? end - (off_t)LOG_TAIL_MAX : 0, SEEK_SET);
		}
		char line[4096];
		while (fgets(line, sizeof(line), f)) {
			if (n > 1)
				lt_buf_printf(&b, "[%s] ", id);
			lt_buf_append(&b, line, strlen(line));
		}
		if (b.len && b.data[b.len - 1] != '\n')
			lt_buf_append(&b, "\n", 1);
		fclose(f);
	}
	lt_buf_cstr(&b);
	*len = b.len;
	if (!b.data)
		return lt_strdup("");
	return (char *)b.data;
}

static void handle_logs(struct dmn *d, const char *what, bool follow, struct dmn_reply *r)
{
	struct loopq q = {.op = Q_LOGS, .a = what};
	if (run_q(d, &q, r) < 0)
		return;
	if (follow) {
		r->status = 200;
		r->content_type = "text/plain; charset=utf-8";
		r->follow = q.out;
		r->follow_on = true;
		snprintf(r->follow_what, sizeof(r->follow_what), "%s", what);
		return;
	}
	size_t len;
	r->status = 200;
	r->content_type = "text/plain; charset=utf-8";
	r->text = read_logs(q.out, &len);
	json_decref(q.out);
}

/* Is the instance (or app) still there? For log followers. */
int dmn_api_exists(struct dmn *d, const char *what, bool app, json_t **sources);
int dmn_api_exists(struct dmn *d, const char *what, bool app, json_t **sources)
{
	struct loopq q = {.d = d, .op = app ? Q_LOGS : Q_INST_ALIVE, .a = what};
	if (dmn_call(d, q_run, &q) < 0)
		return -1;
	if (q.rc < 0)
		return 0;
	if (sources && app)
		*sources = q.out;
	else
		json_decref(q.out);
	return 1;
}

/* ---- routing ---------------------------------------------------------------------- */

static bool query_get(const char *query, const char *key, char *out, size_t size)
{
	size_t kl = strlen(key);
	for (const char *p = query; p && *p;) {
		const char *amp = strchr(p, '&');
		size_t l = amp ? (size_t)(amp - p) : strlen(p);
		if (l > kl && !strncmp(p, key, kl) && p[kl] == '=') {
			size_t vl = l - kl - 1;
			if (vl >= size)
				return false;
			memcpy(out, p + kl + 1, vl);
			out[vl] = '\0';
			return true;
		}
		if (l == kl && !strncmp(p, key, kl)) {
			snprintf(out, size, "1");
			return true;
		}
		p = amp ? amp + 1 : NULL;
	}
	return false;
}

static bool query_flag(const char *query, const char *key)
{
	char v[8];
	return query_get(query, key, v, sizeof(v)) && (!strcmp(v, "1") || !strcmp(v, "true"));
}

/* Splits "/v1/a/b/c" into at most 5 components (no empty ones). */
static int split_path(const char *path, char comp[5][96], size_t *n)
{
	*n = 0;
	if (strlen(path) > 400)
		return -1;
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		size_t l = strcspn(p, "/");
		if (*n == 5 || l >= 96)
			return -1;
		memcpy(comp[*n], p, l);
		comp[*n][l] = '\0';
		(*n)++;
		p += l;
	}
	return 0;
}

static json_t *parse_body(const char *body, size_t len, struct dmn_reply *r)
{
	if (len > DMN_BODY_MAX) {
		char msg[96];
		snprintf(msg, sizeof(msg), "request body too large (at most %d bytes)", DMN_BODY_MAX);
		reply_error(r, 413, msg);
		return NULL;
	}
	json_error_t err;
	json_t *j = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &err);
	if (!j) {
		char msg[256];
		snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d: %s", err.line,
			 err.column, err.text);
		reply_error(r, 400, msg);
	}
	return j;
}

static void handle_deploy(struct dmn *d, const char *body, size_t len, struct dmn_reply *r)
{
	json_t *j = parse_body(body, len, r);
	if (!j)
		return;
	struct dmn_spec spec;
	dmn_spec_defaults(&spec);
	lt_clear_error();
	int rc = dmn_spec_from_json(j, &spec);
	json_decref(j);
	if (rc < 0) {
		reply_error(r, 400, lt_errmsg());
		dmn_spec_free(&spec);
		return;
	}
	if (!strcmp(spec.engine, "proc") && !d->allow_proc_engine) {
		reply_error(r, 400, "field 'engine': 'proc' is not auto, lttle or qemu");
		dmn_spec_free(&spec);
		return;
	}
	struct dmn_stream *s = dmn_stream_new(1u << 20);
	if (!s) {
		reply_error(r, 500, lt_errmsg());
		dmn_spec_free(&spec);
		return;
	}
	int status = 500;
	if (dmn_deploy_start(d, &spec, s, &status) < 0) {
		reply_error(r, status, lt_errmsg());
		dmn_stream_unref(s);
		dmn_spec_free(&spec);
		return;
	}
	r->status = 200;
	r->content_type = "application/x-ndjson";
	r->stream = s;
}

static void handle_events(struct dmn *d, struct dmn_reply *r)
{
	struct dmn_stream *s = dmn_stream_new(4u << 20);
	if (!s || dmn_events_subscribe(d, s) < 0) {
		dmn_stream_unref(s);
		reply_error(r, 500, lt_errmsg());
		return;
	}
	dmn_stream_printf(s, ": lttle events\n\n");
	r->status = 200;
	r->content_type = "text/event-stream";
	r->stream = s;
}

static bool is_action(const char *s)
{
	return !strcmp(s, "pause") || !strcmp(s, "resume") || !strcmp(s, "stop");
}

static void not_found(struct dmn_reply *r, const char *method, const char *path)
{
	char msg[200];
	snprintf(msg, sizeof(msg), "no such endpoint: %.8s %.120s", method, path);
	reply_error(r, 404, msg);
}

static void bad_name(struct dmn_reply *r, const char *what, const char *s)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "invalid %s name '%.96s'", what, s);
	reply_error(r, 400, msg);
}

static void route_apps(struct dmn *d, const char *method, char c[5][96], size_t n,
		       const char *query, const char *body, size_t len, struct dmn_reply *r)
{
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	if (n == 2) {
		if (get)
			simple(d, Q_APPS, NULL, NULL, NULL, r);
		else if (post)
			handle_deploy(d, body, len, r);
		else
			reply_error(r, 405, "use GET or POST on /v1/apps");
		return;
	}
	const char *name = c[2];
	if (!dmn_name_valid(name)) {
		bad_name(r, "app", name);
		return;
	}
	if (n == 3) {
		if (get)
			simple(d, Q_APP, name, NULL, NULL, r);
		else if (!strcmp(method, "DELETE"))
			handle_remove(d, name, r);
		else
			reply_error(r, 405, "use GET or DELETE on /v1/apps/NAME");
		return;
	}
	if (n == 4 && post && is_action(c[3])) {
		simple(d, Q_APP_ACT, name, c[3], NULL, r);
	} else if (n == 4 && post && !strcmp(c[3], "scale")) {
		json_t *j = parse_body(body, len, r);
		if (j)
			simple(d, Q_SCALE, name, NULL, j, r);
		json_decref(j);
	} else if (n == 4 && get && !strcmp(c[3], "logs")) {
		handle_logs(d, name, query_flag(query, "follow"), r);
	} else if (n == 4 && get && !strcmp(c[3], "instances")) {
		simple(d, Q_INSTS, name, NULL, NULL, r);
	} else {
		not_found(r, method, "/v1/apps/...");
	}
}

static void route_instances(struct dmn *d, const char *method, char c[5][96], size_t n,
			    const char *query, struct dmn_reply *r)
{
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	if (n == 2) {
		char app[DMN_NAME_MAX + 2];
		bool filter = query_get(query, "app", app, sizeof(app));
		if (filter && !dmn_name_valid(app)) {
			bad_name(r, "app", app);
			return;
		}
		if (get)
			simple(d, Q_INSTS, filter ? app : NULL, NULL, NULL, r);
		else
			reply_error(r, 405, "use GET on /v1/instances");
		return;
	}
	const char *id = c[2];
	if (!dmn_instance_id_valid(id)) {
		bad_name(r, "instance", id);
		return;
	}
	if (n == 3 && get)
		simple(d, Q_INST, id, NULL, NULL, r);
	else if (n == 4 && post && is_action(c[3]))
		simple(d, Q_INST_ACT, id, c[3], NULL, r);
	else if (n == 4 && get && !strcmp(c[3], "logs"))
		handle_logs(d, id, query_flag(query, "follow"), r);
	else
		not_found(r, method, "/v1/instances/...");
}

void dmn_api_handle(struct dmn *d, const char *method, const char *path, const char *query,
		    const char *body, size_t body_len, struct dmn_reply *r)
{
	memset(r, 0, sizeof(*r));
	char c[5][96];
	size_t n;
	if (split_path(path, c, &n) < 0) {
		reply_error(r, 400, "malformed path");
		return;
	}
	bool get = !strcmp(method, "GET");
	if (n == 1 && !strcmp(c[0], "metrics") && get) {
		struct loopq q = {.op = Q_METRICS};
		if (run_q(d, &q, r) == 0) {
			lt_buf_cstr(&q.text);
			r->status = 200;
			r->content_type = "text/plain; version=0.0.4; charset=utf-8";
			r->text = q.text.data ? (char *)q.text.data : lt_strdup("");
		}
		return;
	}
	if (n < 2 || strcmp(c[0], "v1")) {
		not_found(r, method, path);
		return;
	}
	if (!strcmp(c[1], "health") && n == 2 && get) {
		simple(d, Q_HEALTH, NULL, NULL, NULL, r);
	} else if (!strcmp(c[1], "events") && n == 2 && get) {
		handle_events(d, r);
	} else if (!strcmp(c[1], "apps")) {
		route_apps(d, method, c, n, query, body, body_len, r);
	} else if (!strcmp(c[1], "instances")) {
		route_instances(d, method, c, n, query, r);
	} else if (!strcmp(c[1], "logs") && n == 3 && get) {
		/* an app or an instance, whichever the name is */
		if (!dmn_name_valid(c[2]) && !dmn_instance_id_valid(c[2]))
			bad_name(r, "app or instance", c[2]);
		else
			handle_logs(d, c[2], query_flag(query, "follow"), r);
	} else {
		not_found(r, method, path);
	}
}
