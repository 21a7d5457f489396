/* ignitiond persistence and recovery: app records round-trip exactly,
 * damaged or foreign records are refused with the file named, listing
 * skips what is not an app, and recovery kills exactly the recorded (or
 * state-dir-naming) VM processes that still match their start time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../cmd/ignitiond/daemon.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/lttle-dstore.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	lt_rm_rf(dir);
	return 0;
}

static void make_rec(struct dmn_app_rec *r, const char *name)
{
	memset(r, 0, sizeof(*r));
	dmn_spec_defaults(&r->spec);
	const char *body = "{\"ref\":\"127.0.0.1:5000/demo/hello:1\",\"ports\":[\"127.0.0.1:0:8080\","
			   "\"127.0.0.1:9443:443\"],\"min\":1,\"max\":5,\"concurrency\":7,"
			   "\"idle_timeout\":\"2s\",\"scale_down\":\"1m\",\"queue_timeout\":\"3s\","
			   "\"trigger\":\"nth-listen:2\",\"mem\":128,\"cpus\":2,"
			   "\"env\":[\"GREETING=hi there\"],\"kernel\":\"/k/vmlinux\","
			   "\"engine\":\"qemu\"}";
	assert_int_equal(dmn_spec_parse(body, strlen(body), &r->spec), 0);
	snprintf(r->spec.name, sizeof(r->spec.name), "%s", name);
	snprintf(r->engine, sizeof(r->engine), "qemu");
	snprintf(r->kernel, sizeof(r->kernel), "/k/vmlinux");
	snprintf(r->rootfs, sizeof(r->rootfs), "/s/rootfs/abc.squashfs");
	snprintf(r->snapshot, sizeof(r->snapshot), "%s/apps/%s/gen-3.snap", dir, name);
	snprintf(r->digest, sizeof(r->digest), "sha256:%064d", 7);
	r->generation = 3;
	r->nports = 2;
	r->guest_ports[0] = 8080;
	r->guest_ports[1] = 443;
	r->bound[0] = 41234;
	r->bound[1] = 9443;
	r->deployed = 1700000000;
}

static void test_round_trip(void **state)
{
	(void)state;
	struct dmn_app_rec a, b;
	make_rec(&a, "web");
	assert_int_equal(dmn_app_save(dir, &a), 0);
	assert_int_equal(dmn_app_load(dir, "web", &b), 0);
	assert_string_equal(a.spec.name, b.spec.name);
	assert_string_equal(a.spec.ref, b.spec.ref);
	assert_int_equal(b.spec.min, 1);
	assert_int_equal(b.spec.max, 5);
	assert_int_equal(b.spec.concurrency, 7);
	assert_int_equal(b.spec.idle_timeout_ms, 2000);
	assert_int_equal(b.spec.scale_down_ms, 60000);
	assert_int_equal(b.spec.queue_timeout_ms, 3000);
	assert_int_equal(b.spec.trigger.kind, DMN_TRIG_NTH_LISTEN);
	assert_int_equal(b.spec.trigger.n, 2);
	assert_int_equal(b.spec.mem_mib, 128);
	assert_int_equal(b.spec.cpus, 2);
	assert_int_equal(b.spec.nenv, 1);
	assert_string_equal(b.spec.env[0], "GREETING=hi there");
	assert_string_equal(b.spec.ports[0].listen, "127.0.0.1:0");
	assert_string_equal(a.engine, b.engine);
	assert_string_equal(a.kernel, b.kernel);
	assert_string_equal(a.rootfs, b.rootfs);
	assert_string_equal(a.snapshot, b.snapshot);
	assert_string_equal(a.digest, b.digest);
	assert_int_equal(b.generation, 3);
	assert_int_equal(b.nports, 2);
	assert_int_equal(b.guest_ports[1], 443);
	assert_int_equal(b.bound[0], 41234);
	assert_int_equal(b.deployed, 1700000000);
	/* saving again replaces atomically (no temp file left) */
	a.generation = 4;
	assert_int_equal(dmn_app_save(dir, &a), 0);
	dmn_app_rec_free(&b);
	assert_int_equal(dmn_app_load(dir, "web", &b), 0);
	assert_int_equal(b.generation, 4);
	char **names;
	size_t n;
	assert_int_equal(dmn_app_list(dir, &names, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "web");
	free(names[0]);
	free(names);
	dmn_app_rec_free(&a);
	dmn_app_rec_free(&b);
}

static void write_raw(const char *name, const char *text)
{
	char *d = lt_sprintf("%s/apps/%s", dir, name);
	char *p = lt_sprintf("%s/app.json", d);
	assert_int_equal(lt_mkdir_p(d, 0750), 0);
	assert_int_equal(lt_write_file_atomic(p, text, strlen(text), 0640), 0);
	free(d);
	free(p);
}

static void load_fails(const char *name, const char *want)
{
	struct dmn_app_rec r;
	lt_clear_error();
	assert_int_equal(dmn_app_load(dir, name, &r), -1);
	if (!strstr(lt_errmsg(), want) || !strstr(lt_errmsg(), "app.json"))
		fail_msg("load %s: '%s' lacks '%s' or the file name", name, lt_errmsg(), want);
}

static void test_damaged_records(void **state)
{
	(void)state;
	struct dmn_app_rec a;
	make_rec(&a, "good");
	assert_int_equal(dmn_app_save(dir, &a), 0);
	char *d = lt_sprintf("%s/apps/good/app.json", dir), *text = NULL;
	size_t len;
	assert_int_equal(lt_read_file(d, 1 << 20, &text, &len), 0);
	free(d);

	write_raw("trunc", "{\"version\": 1, \"spec\": {");
	load_fails("trunc", "malformed JSON");
	/* a record that names another app */
	write_raw("other", text);
	load_fails("other", "names app 'good'");
	/* relative snapshot path */
	char *bad = strdup(text), *p = strstr(bad, "\"snapshot\": \"");
	assert_non_null(p);
	p += strlen("\"snapshot\": \"");
	*p = 'x'; /* "/tmp/..." -> "xtmp/..." */
	write_raw("good", bad);
	load_fails("good", "not an absolute path");
	free(bad);
	/* a bad port inside */
	bad = strdup(text);
	p = strstr(bad, "41234");
	assert_non_null(p);
	memcpy(p, "99999", 5);
	write_raw("good", bad);
	load_fails("good", "bad port");
	free(bad);
	/* a spec field out of range */
	bad = strdup(text);
	p = strstr(bad, "\"cpus\": 2");
	assert_non_null(p);
	memcpy(p, "\"cpus\": 0", 9);
	write_raw("good", bad);
	load_fails("good", "cpus");
	free(bad);
	free(text);
	dmn_app_rec_free(&a);
	/* names that are not apps are never paths */
	assert_null(dmn_app_dir(dir, "../x"));
	assert_int_equal(dmn_app_delete(dir, "../../etc"), -1);
	struct dmn_app_rec r;
	assert_int_equal(dmn_app_load(dir, "a/../../b", &r), -1);
	/* listing skips temp files and foreign names */
	char *junk = lt_sprintf("%s/apps/.tmp-zzz", dir), *up = lt_sprintf("%s/apps/UP", dir);
	assert_int_equal(lt_mkdir_p(junk, 0750), 0);
	assert_int_equal(lt_mkdir_p(up, 0750), 0);
	free(junk);
	free(up);
	char **names;
	size_t n;
	assert_int_equal(dmn_app_list(dir, &names, &n), 0);
	for (size_t k = 0; k < n; k++) {
		assert_true(dmn_name_valid(names[k]));
		free(names[k]);
	}
	free(names);
	assert_int_equal(dmn_app_delete(dir, "trunc"), 0);
	char *gone = lt_sprintf("%s/apps/trunc", dir);
	assert_false(lt_path_exists(gone));
	free(gone);
}

static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		execv(argv[0], argv + 1);
		_exit(127);
	}
	setpgid(pid, pid);
	usleep(50000);
	return pid;
}

static bool killed_by_9(pid_t pid)
{
	int st = 0;
	for (int k = 0; k < 200; k++) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
		usleep(10000);
	}
	return false;
}

static void test_recovery(void **state)
{
	(void)state;
	char *sleep_argv[] = {"/bin/sleep", "sleep", "30", NULL};
	assert_true(dmn_proc_start_time(getpid()) > 0);
	assert_int_equal(dmn_proc_start_time(0), 0);
	assert_int_equal(dmn_proc_start_time(1 << 30), 0);

	/* 1: a recorded VM process still alive with its start time: killed */
	pid_t a = spawn(sleep_argv);
	assert_int_equal(dmn_inst_record(dir, "web-1", a, "qemu", "web"), 0);
	/* 2: a record whose pid was reused (start time differs): spared */
	pid_t b = spawn(sleep_argv);
	assert_int_equal(dmn_inst_record(dir, "web-2", b, "qemu", "web"), 0);
	char *rp = lt_sprintf("%s/instances/web-2/record.json", dir);
	char *j = lt_sprintf("{\"pid\":%d,\"start\":12345,\"engine\":\"qemu\",\"app\":\"web\"}",
			     (int)b);
	assert_int_equal(lt_write_file_atomic(rp, j, strlen(j), 0640), 0);
	free(rp);
	free(j);
	/* 3: a deploy boot's record (prefixed key) */
	pid_t c = spawn(sleep_argv);
	assert_int_equal(dmn_inst_record(dir, "deploy-web-1", c, "qemu", "web"), 0);
	/* 4: an unrecorded VM (e.g. a pre-made shell) naming the state dir */
	char *arg = lt_sprintf("sleep 30; : %s/rootfs/x.squashfs", dir);
	char *shell_argv[] = {"/bin/sh", "qemu-system-x86_64", "-c", arg, NULL};
	pid_t d = spawn(shell_argv);
	/* 5: an unrecorded non-VM process naming the state dir: spared */
	char *arg2 = lt_sprintf("sleep 30; : %s/apps/web/boot.log", dir);
	char *tail_argv[] = {"/bin/sh", "sh", "-c", arg2, NULL};
	pid_t e = spawn(tail_argv);
	/* invalid record keys are never used as paths */
	assert_int_equal(dmn_inst_record(dir, "../../x-1", a, "qemu", "web"), -1);

	char *run = lt_sprintf("%s/run", dir);
	char *sub = lt_sprintf("%s/qemu-main/web-1", run);
	assert_int_equal(lt_mkdir_p(sub, 0750), 0);
	int killed = dmn_recover_orphans(dir, run);
	assert_int_equal(killed, 3);
	assert_true(killed_by_9(a));
	assert_true(killed_by_9(c));
	assert_true(killed_by_9(d));
	assert_int_equal(waitpid(b, NULL, WNOHANG), 0); /* still running */
	assert_int_equal(waitpid(e, NULL, WNOHANG), 0);
	char *inst = lt_sprintf("%s/instances", dir);
	assert_false(lt_path_exists(inst));
	assert_false(lt_path_exists(run));
	kill(-b, SIGKILL);
	kill(-d, SIGKILL);
	kill(-e, SIGKILL);
	waitpid(b, NULL, 0);
	waitpid(e, NULL, 0);
	free(inst);
	free(run);
	free(sub);
	free(arg);
	free(arg2);
	/* a zombie counts as gone */
	pid_t z = fork();
	if (z == 0)
		_exit(0);
	usleep(50000);
	assert_int_equal(dmn_proc_start_time(z), 0);
	waitpid(z, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_damaged_records),
		cmocka_unit_test(test_recovery),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
