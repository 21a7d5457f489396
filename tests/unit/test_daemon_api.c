/* ignitiond API handlers with bad input: bounded bodies, malformed JSON,
 * invalid names, refs, ports, durations, triggers and fields all get a
 * 4xx with a message, and nothing reaches the pool. The handlers run
 * against a real loop (in a thread), pool and proxy with no app. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../cmd/ignitiond/daemon.h"

static struct dmn D;
static pthread_t loop_thread;

static void *run_loop(void *arg)
{
	(void)arg;
	lt_loop_run(D.loop);
	return NULL;
}

static int setup(void **state)
{
	(void)state;
	memset(&D, 0, sizeof(D));
	char tmpl[] = "/tmp/lttle-dapi.XXXXXX";
	if (!mkdtemp(tmpl))
		return -1;
	D.state = strdup(tmpl);
	D.run_dir = lt_path_join(D.state, "run");
	D.store_root = strdup(D.state);
	D.drain_timeout_ns = LT_SEC(1);
	D.deploy_timeout_ns = LT_SEC(5);
	D.started_wall = lt_wall_ns();
	dmn_events_init(&D);
	D.loop = lt_loop_new();
	D.pool = lt_pool_new(lt_loop_clock(D.loop));
	struct lt_proxy_config pc;
	lt_proxy_config_defaults(&pc);
	D.proxy = lt_proxy_new(D.loop, D.pool, &pc);
	if (!D.proxy)
		return -1;
	return pthread_create(&loop_thread, NULL, run_loop, NULL);
}

static int teardown(void **state)
{
	(void)state;
	lt_loop_stop(D.loop);
	pthread_join(loop_thread, NULL);
	atomic_store(&D.loop_dead, true);
	lt_proxy_free(D.proxy);
	lt_pool_free(D.pool);
	lt_loop_free(D.loop);
	dmn_events_fini(&D);
	lt_rm_rf(D.state);
	free(D.state);
	free(D.run_dir);
	free(D.store_root);
	return 0;
}

/* Runs one request; returns the status and leaves the reply in *r. */
static int req(const char *method, const char *path, const char *query, const char *body,
	       struct dmn_reply *r)
{
	dmn_api_handle(&D, method, path, query, body, body ? strlen(body) : 0, r);
	return r->status;
}

static const char *err_of(struct dmn_reply *r)
{
	const char *e = json_string_value(json_object_get(r->json, "error"));
	return e ? e : "";
}

/* Expects status with an error message containing want. */
static void expect(const char *method, const char *path, const char *body, int status,
		   const char *want)
{
	struct dmn_reply r;
	int got = req(method, path, NULL, body, &r);
	if (got != status || !strstr(err_of(&r), want))
		fail_msg("%s %s %.60s: got %d '%s', want %d '%s'", method, path, body ? body : "",
			 got, err_of(&r), status, want);
	assert_null(r.stream);
	dmn_reply_free(&r);
}

static void deploy_bad(const char *body, const char *want)
{
	expect("POST", "/v1/apps", body, 400, want);
}

static void test_health_and_metrics(void **state)
{
	(void)state;
	struct dmn_reply r;
	assert_int_equal(req("GET", "/v1/health", NULL, NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.json, "ok")));
	dmn_reply_free(&r);
	assert_int_equal(req("GET", "/metrics", NULL, NULL, &r), 200);
	assert_non_null(r.text);
	assert_non_null(strstr(r.text, "lttle_proxy_active_connections 0"));
	dmn_reply_free(&r);
	assert_int_equal(req("GET", "/v1/apps", NULL, NULL, &r), 200);
	assert_true(json_is_array(r.json));
	assert_int_equal(json_array_size(r.json), 0);
	dmn_reply_free(&r);
}

static void test_malformed_bodies(void **state)
{
	(void)state;
	deploy_bad("", "malformed JSON");
	deploy_bad("{\"ref\": ", "malformed JSON");
	deploy_bad("{\"ref\": \"a\", \"ref\": \"b\"}", "malformed JSON");
	deploy_bad("[1,2]", "must be a JSON object");
	deploy_bad("\"alpine\"", "malformed JSON");
	deploy_bad("{}", "'ref' is required");
	deploy_bad("{\"ref\":\"alpine\",\"bogus\":1}", "unknown field 'bogus'");
	deploy_bad("{\"ref\":42}", "field 'ref' must be a string");
	/* a body over the bound: 413, not parsed */
	size_t n = DMN_BODY_MAX + 10;
	char *big = malloc(n + 1);
	assert_non_null(big);
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	big[n] = '\0';
	expect("POST", "/v1/apps", big, 413, "too large");
	free(big);
	/* NUL inside a JSON string */
	deploy_bad("{\"ref\":\"alp\\u0000ine\"}", "NUL");
}

static void test_names_and_refs(void **state)
{
	(void)state;
	deploy_bad("{\"ref\":\"alpine\",\"name\":\"../../etc\"}", "not a valid app name");
	deploy_bad("{\"ref\":\"alpine\",\"name\":\"Upper\"}", "not a valid app name");
	deploy_bad("{\"ref\":\"alpine\",\"name\":\"-dash\"}", "not a valid app name");
	deploy_bad("{\"ref\":\"alpine\",\"name\":\"a/b\"}", "not a valid app name");
	deploy_bad("{\"ref\":\"alpine\",\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
		   "too long");
	deploy_bad("{\"ref\":\"alp ine\"}", "space");
	deploy_bad("{\"ref\":\"alpine\\n\"}", "control byte");
	deploy_bad("{\"ref\":\"Alpine:UPPER\"}", "ref");
	deploy_bad("{\"ref\":\"alpine@sha256:xyz\"}", "ref");
	deploy_bad("{\"ref\":\"\"}", "ref");
	/* URL path components are validated before any lookup */
	expect("GET", "/v1/apps/..", NULL, 400, "invalid app name");
	expect("GET", "/v1/apps/Bad_Name", NULL, 400, "invalid app name");
	expect("DELETE", "/v1/apps/a.b", NULL, 400, "invalid app name");
	expect("GET", "/v1/instances/no-id-x", NULL, 400, "invalid instance name");
	expect("POST", "/v1/instances/x%2f1/stop", NULL, 400, "invalid instance name");
	expect("GET", "/v1/logs/..", NULL, 400, "invalid app or instance name");
	struct dmn_reply r;
	assert_int_equal(req("GET", "/v1/instances", "app=Bad!", NULL, &r), 400);
	dmn_reply_free(&r);
	char longpath[600];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	expect("GET", longpath, NULL, 400, "malformed path");
}

static void test_ports_durations_triggers(void **state)
{
	(void)state;
	deploy_bad("{\"ref\":\"alpine\",\"ports\":[\"99999:80\"]}", "port");
	deploy_bad("{\"ref\":\"alpine\",\"ports\":[\"8080:0\"]}", "bad port '0'");
	deploy_bad("{\"ref\":\"alpine\",\"ports\":[\"abc\"]}", "port");
	deploy_bad("{\"ref\":\"alpine\",\"ports\":[\"1.2.3:80:80\"]}", "port");
	deploy_bad("{\"ref\":\"alpine\",\"ports\":\"8080:80\"}", "must be an array");
	deploy_bad("{\"ref\":\"alpine\",\"ports\":[80]}", "must be a string");
	deploy_bad("{\"ref\":\"alpine\",\"ports\":[\"127.0.0.1:81:80\",\"127.0.0.1:81:82\"]}",
		   "given twice");
	char many[1024] = "{\"ref\":\"alpine\",\"ports\":[";
	for (int k = 0; k < DMN_MAX_PORTS + 1; k++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"%d:80\"",
			 k ? "," : "", 9000 + k);
	strcat(many, "]}");
	deploy_bad(many, "at most 16 ports");
	deploy_bad("{\"ref\":\"alpine\",\"idle_timeout\":\"5x\"}", "duration");
	deploy_bad("{\"ref\":\"alpine\",\"idle_timeout\":\"-1s\"}", "duration");
	deploy_bad("{\"ref\":\"alpine\",\"scale_down\":\"99999d\"}", "too long");
	deploy_bad("{\"ref\":\"alpine\",\"scale_down\":-5}", "must be 0..");
	deploy_bad("{\"ref\":\"alpine\",\"queue_timeout\":\"0\"}", "must be positive");
	deploy_bad("{\"ref\":\"alpine\",\"queue_timeout\":true}", "must be a string");
	deploy_bad("{\"ref\":\"alpine\",\"trigger\":\"sometimes\"}", "bad trigger");
	deploy_bad("{\"ref\":\"alpine\",\"trigger\":\"nth-listen:0\"}", "nth-listen");
	deploy_bad("{\"ref\":\"alpine\",\"trigger\":\"listen-port:70000\"}", "listen-port");
	deploy_bad("{\"ref\":\"alpine\",\"trigger\":\"nth-listen:\"}", "nth-listen");
}

static void test_numbers_env_engine(void **state)
{
	(void)state;
	deploy_bad("{\"ref\":\"alpine\",\"min\":5,\"max\":2}", "exceeds max");
	deploy_bad("{\"ref\":\"alpine\",\"max\":0}", "'max' must be in 1..");
	deploy_bad("{\"ref\":\"alpine\",\"min\":-1}", "'min' must be in 0..");
	deploy_bad("{\"ref\":\"alpine\",\"concurrency\":0}", "'concurrency'");
	deploy_bad("{\"ref\":\"alpine\",\"concurrency\":1.5}", "must be an integer");
	deploy_bad("{\"ref\":\"alpine\",\"mem\":1}", "'mem' must be in 32..");
	deploy_bad("{\"ref\":\"alpine\",\"cpus\":0}", "'cpus'");
	deploy_bad("{\"ref\":\"alpine\",\"cpus\":\"2\"}", "must be an integer");
	deploy_bad("{\"ref\":\"alpine\",\"env\":[\"1BAD=x\"]}", "KEY=VALUE");
	deploy_bad("{\"ref\":\"alpine\",\"env\":[\"NOEQUALS\"]}", "KEY=VALUE");
	deploy_bad("{\"ref\":\"alpine\",\"env\":[\"K=a\\u0001b\"]}", "KEY=VALUE");
	deploy_bad("{\"ref\":\"alpine\",\"env\":\"K=V\"}", "must be an array");
	deploy_bad("{\"ref\":\"alpine\",\"kernel\":\"relative/vmlinux\"}", "absolute path");
	deploy_bad("{\"ref\":\"alpine\",\"kernel\":\"/a/../../etc/shadow\"}", "absolute path");
	deploy_bad("{\"ref\":\"alpine\",\"engine\":\"firecracker\"}", "is not auto, lttle or qemu");
	deploy_bad("{\"ref\":\"alpine\",\"engine\":\"proc\"}", "is not auto, lttle or qemu");
	deploy_bad("{\"ref\":\"alpine\",\"host\":\"bad host\"}", "not a host name");
	deploy_bad("{\"ref\":\"alpine\",\"insecure\":\"yes\"}", "true or false");
}

static void test_routes(void **state)
{
	(void)state;
	expect("GET", "/v1/nope", NULL, 404, "no such endpoint");
	expect("GET", "/v2/apps", NULL, 404, "no such endpoint");
	expect("PUT", "/v1/apps", NULL, 405, "use GET or POST");
	expect("GET", "/v1/apps/missing", NULL, 404, "no app 'missing'");
	expect("DELETE", "/v1/apps/missing", NULL, 404, "no app 'missing'");
	expect("POST", "/v1/apps/missing/pause", NULL, 404, "no app 'missing'");
	expect("POST", "/v1/apps/missing/explode", NULL, 404, "no such endpoint");
	expect("GET", "/v1/apps/missing/instances", NULL, 404, "no app 'missing'");
	expect("POST", "/v1/instances/missing-1/stop", NULL, 404, "no instance 'missing-1'");
	expect("GET", "/v1/logs/missing", NULL, 404, "no app or instance 'missing'");
	expect("POST", "/v1/apps/missing/scale", "{\"min\":", 400, "malformed JSON");
	expect("POST", "/v1/apps/missing/scale", "{\"min\":1}", 404, "no app 'missing'");
}

/* A spec survives to_json -> from_json unchanged. */
static void test_spec_round_trip(void **state)
{
	(void)state;
	struct dmn_spec a, b;
	dmn_spec_defaults(&a);
	assert_int_equal(dmn_spec_parse("{\"ref\":\"reg.example:5000/org/my_app:1\","
					"\"ports\":[\"127.0.0.1:0:8080\",\"[::1]:9000:90\"],"
					"\"min\":1,\"max\":3,\"idle_timeout\":\"250ms\","
					"\"scale_down\":\"2m\",\"trigger\":\"listen-port:8080\","
					"\"env\":[\"A=1\",\"B=two words\"],\"host\":\"App.Example\"}",
					300, &a),
			 -1); /* length lies: truncated JSON */
	dmn_spec_free(&a);
	dmn_spec_defaults(&a);
	const char *body = "{\"ref\":\"reg.example:5000/org/my_app:1\","
			   "\"ports\":[\"127.0.0.1:0:8080\",\"[::1]:9000:90\"],"
			   "\"min\":1,\"max\":3,\"idle_timeout\":\"250ms\","
			   "\"scale_down\":\"2m\",\"trigger\":\"listen-port:8080\","
			   "\"env\":[\"A=1\",\"B=two words\"],\"host\":\"App.Example\"}";
	assert_int_equal(dmn_spec_parse(body, strlen(body), &a), 0);
	assert_string_equal(a.name, "my-app");
	assert_string_equal(a.host, "app.example");
	assert_int_equal(a.idle_timeout_ms, 250);
	assert_int_equal(a.scale_down_ms, 120000);
	assert_int_equal(a.trigger.kind, DMN_TRIG_LISTEN_PORT);
	assert_int_equal(a.trigger.port, 8080);
	assert_int_equal(a.nports, 2);
	assert_string_equal(a.ports[1].listen, "[::1]:9000");
	json_t *j = dmn_spec_to_json(&a);
	assert_non_null(j);
	dmn_spec_defaults(&b);
	assert_int_equal(dmn_spec_from_json(j, &b), 0);
	json_decref(j);
	assert_string_equal(a.name, b.name);
	assert_string_equal(a.ref, b.ref);
	assert_int_equal(a.nports, b.nports);
	for (size_t k = 0; k < a.nports; k++) {
		assert_string_equal(a.ports[k].listen, b.ports[k].listen);
		assert_int_equal(a.ports[k].guest, b.ports[k].guest);
	}
	assert_int_equal(b.nenv, 2);
	assert_string_equal(b.env[1], "B=two words");
	assert_int_equal(a.idle_timeout_ms, b.idle_timeout_ms);
	assert_int_equal(a.min, b.min);
	assert_int_equal(a.max, b.max);
	assert_string_equal(a.trigger_text, b.trigger_text);
	dmn_spec_free(&a);
	dmn_spec_free(&b);
}

static void test_parsers(void **state)
{
	(void)state;
	uint64_t ms;
	assert_int_equal(dmn_parse_duration_ms("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(dmn_parse_duration_ms("15", &ms), 0);
	assert_int_equal(ms, 15000);
	assert_int_equal(dmn_parse_duration_ms("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(dmn_parse_duration_ms("30d", &ms), 0);
	assert_int_equal(dmn_parse_duration_ms("31d", &ms), -1);
	assert_int_equal(dmn_parse_duration_ms("99999999999999999999999s", &ms), -1);
	assert_int_equal(dmn_parse_duration_ms("1.5s", &ms), -1);
	assert_int_equal(dmn_parse_duration_ms("", &ms), -1);
	assert_int_equal(dmn_parse_duration_ms("s", &ms), -1);
	struct dmn_port p;
	assert_int_equal(dmn_parse_port("8080:80", &p), 0);
	assert_string_equal(p.listen, "127.0.0.1:8080"); /* loopback unless told */
	assert_int_equal(p.guest, 80);
	assert_int_equal(dmn_parse_port("0.0.0.0:0:80", &p), 0);
	assert_string_equal(p.listen, "0.0.0.0:0");
	assert_int_equal(dmn_parse_port("80", &p), -1);
	char name[DMN_NAME_MAX + 1];
	assert_int_equal(dmn_name_from_ref("docker.io/library/busybox:1.36", name), 0);
	assert_string_equal(name, "busybox");
	assert_int_equal(dmn_name_from_ref("localhost:5000/x/my_app.v2", name), 0);
	assert_string_equal(name, "my-app-v2");
	assert_true(dmn_instance_id_valid("web-12"));
	assert_false(dmn_instance_id_valid("web-"));
	assert_false(dmn_instance_id_valid("-12"));
	assert_false(dmn_instance_id_valid("web-1a"));
	assert_false(dmn_instance_id_valid("We-1"));
}

/* Streams: writes after the reader left fail; a slow reader overflows. */
static void test_streams(void **state)
{
	(void)state;
	struct dmn_stream *s = dmn_stream_new(16);
	char buf[32];
	assert_int_equal(dmn_stream_write(s, "0123456789", 10), 0);
	assert_int_equal(dmn_stream_read(s, buf, sizeof(buf), 10), 10);
	assert_int_equal(dmn_stream_read(s, buf, sizeof(buf), 10), 0); /* timeout */
	assert_int_equal(dmn_stream_write(s, "0123456789", 10), 0);
	assert_int_equal(dmn_stream_write(s, "0123456789", 10), -1); /* over 16 */
	assert_int_equal(dmn_stream_read(s, buf, sizeof(buf), 10), 10);
	assert_int_equal(dmn_stream_read(s, buf, sizeof(buf), 10), -1); /* closed */
	dmn_stream_unref(s);
	s = dmn_stream_new(1024);
	dmn_stream_detach(s);
	assert_int_equal(dmn_stream_write(s, "x", 1), -1);
	dmn_stream_unref(s);
	/* events: a subscriber gets a numbered SSE block */
	s = dmn_stream_new(4096);
	assert_int_equal(dmn_events_subscribe(&D, s), 0);
	dmn_events_publish(&D, "app", json_pack("{s:s}", "app", "x"));
	ssize_t n = dmn_stream_read(s, buf, sizeof(buf) - 1, 100);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "event: app\ndata: {"));
	dmn_stream_detach(s);
	dmn_events_publish(&D, "app", json_pack("{s:s}", "app", "y")); /* drops it */
	dmn_stream_unref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_and_metrics),
		cmocka_unit_test(test_malformed_bodies),
		cmocka_unit_test(test_names_and_refs),
		cmocka_unit_test(test_ports_durations_triggers),
		cmocka_unit_test(test_numbers_env_engine),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_spec_round_trip),
		cmocka_unit_test(test_parsers),
		cmocka_unit_test(test_streams),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
