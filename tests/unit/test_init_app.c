/* lttle-init: the app's argv/env, the PATH search, and the generated
 * /etc/hosts and /etc/resolv.conf. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

static char **words(const char *s)
{
	char **v;
	assert_int_equal(li_split_words(s, &v), 0);
	return v;
}

static char *joined(char **v)
{
	static char buf[512];
	buf[0] = '\0';
	for (size_t i = 0; v[i]; i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? "|" : "", v[i]);
	return buf;
}

static void test_argv(void **state)
{
	(void)state;
	struct li_config cfg = {.entrypoint = words("/entry.sh"), .cmd = words("httpd -f")};
	struct li_cmdline cl = {0};
	char **argv;
	assert_int_equal(li_app_argv(&cfg, &cl, &argv), 0);
	assert_string_equal(joined(argv), "/entry.sh|httpd|-f");
	li_strv_free(argv);

	cl.cmd = words("sh -c 'echo hi'");
	cl.cmd_set = true;
	assert_int_equal(li_app_argv(&cfg, &cl, &argv), 0);
	assert_string_equal(joined(argv), "/entry.sh|sh|-c|echo hi");
	li_strv_free(argv);
	li_strv_free(cl.cmd);

	/* an entrypoint override drops the image's cmd (docker semantics) */
	cl = (struct li_cmdline){.entrypoint = words("/bin/env"), .entrypoint_set = true};
	assert_int_equal(li_app_argv(&cfg, &cl, &argv), 0);
	assert_string_equal(joined(argv), "/bin/env");
	li_strv_free(argv);
	li_strv_free(cl.entrypoint);

	/* an empty entrypoint override leaves the image cmd only if cmd is given */
	cl = (struct li_cmdline){.entrypoint = words(""), .entrypoint_set = true,
				 .cmd = words("true"), .cmd_set = true};
	assert_int_equal(li_app_argv(&cfg, &cl, &argv), 0);
	assert_string_equal(joined(argv), "true");
	li_strv_free(argv);
	li_strv_free(cl.entrypoint);
	li_strv_free(cl.cmd);

	/* nothing at all to run */
	struct li_config empty = {0};
	cl = (struct li_cmdline){0};
	assert_int_equal(li_app_argv(&empty, &cl, &argv), -1);
	assert_non_null(strstr(lt_errmsg(), "nothing to run"));
	li_strv_free(cfg.entrypoint);
	li_strv_free(cfg.cmd);
}

static void test_env(void **state)
{
	(void)state;
	char *img_env[] = {"PATH=/img/bin", "A=image", "B=image", NULL};
	char *cl_env[] = {"B=cmdline", "C=x=y", NULL};
	struct li_config cfg = {.env = img_env};
	struct li_cmdline cl = {.env = cl_env};
	struct li_user u = {.uid = 1000};
	strcpy(u.home, "/home/app");
	char **env;
	assert_int_equal(li_app_env(&cfg, &cl, &u, "box", &env), 0);
	assert_string_equal(li_env_get(env, "PATH"), "/img/bin");
	assert_string_equal(li_env_get(env, "HOME"), "/home/app");
	assert_string_equal(li_env_get(env, "HOSTNAME"), "box");
	assert_string_equal(li_env_get(env, "A"), "image");
	assert_string_equal(li_env_get(env, "B"), "cmdline");
	assert_string_equal(li_env_get(env, "C"), "x=y");
	assert_null(li_env_get(env, "PAT"));
	assert_int_equal(li_strv_len(env), 6); /* no duplicates */
	li_strv_free(env);

	/* defaults when the image has none; the image's HOME wins */
	char *img2[] = {"HOME=/data", NULL};
	struct li_config cfg2 = {.env = img2};
	struct li_cmdline none = {0};
	assert_int_equal(li_app_env(&cfg2, &none, &u, NULL, &env), 0);
	assert_string_equal(li_env_get(env, "PATH"),
			    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	assert_string_equal(li_env_get(env, "HOME"), "/data");
	assert_null(li_env_get(env, "HOSTNAME"));
	li_strv_free(env);
}

/* Runs li_exec in a child and returns its exit status. */
static int exec_status(char *const *argv, char *const *env)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		li_exec(argv, env);
		_exit(errno == ENOENT ? 127 : 126);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_exec_path_search(void **state)
{
	(void)state;
	/* found through the app's PATH, past missing dirs */
	char *argv[] = {"sh", "-c", "exit 7", NULL};
	char *env[] = {"PATH=/nonexistent:/also/not:/bin:/usr/bin", NULL};
	assert_int_equal(exec_status(argv, env), 7);
	/* not in the app's PATH, even though it is in ours */
	char *env2[] = {"PATH=/nonexistent", NULL};
	assert_int_equal(exec_status(argv, env2), 127);
	/* an absolute path needs no search */
	char *argv3[] = {"/bin/sh", "-c", "exit 9", NULL};
	assert_int_equal(exec_status(argv3, env2), 9);
	/* found but not executable: EACCES, not "not found" */
	char *argv4[] = {"passwd", NULL};
	char *env4[] = {"PATH=/nonexistent:/etc", NULL};
	assert_int_equal(exec_status(argv4, env4), 126);
}

static void test_hosts_and_resolv(void **state)
{
	(void)state;
	char buf[1024];
	assert_int_equal(li_net_hosts("web", "10.0.2.15", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "127.0.0.1\tlocalhost\n"
				 "::1\tlocalhost ip6-localhost ip6-loopback\n"
				 "10.0.2.15\tweb\n");
	assert_int_equal(li_net_hosts("web", NULL, buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "127.0.1.1\tweb\n"));
	assert_int_equal(li_net_hosts("bad name\n10.0.0.1 evil", NULL, buf, sizeof(buf)), -1);
	assert_int_equal(li_net_hosts("web", "1.2.3.4\nx", buf, sizeof(buf)), -1);
	assert_int_equal(li_net_hosts("web", "10.0.2.15", buf, 20), -1); /* too small */

	const char *pnp = "#PROTO: MANUAL\nnameserver 10.0.2.3\nnameserver 0.0.0.0\n"
			  "domain example.org\nbootserver 10.0.2.2\nnameserver bad;rm\n";
	char *dns[] = {"1.1.1.1", NULL};
	assert_int_equal(li_net_resolv(pnp, dns, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "nameserver 10.0.2.3\ndomain example.org\nnameserver 1.1.1.1\n");
	assert_int_equal(li_net_resolv(NULL, NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	char *bad[] = {"1.1.1.1\nsearch evil", NULL};
	assert_int_equal(li_net_resolv(NULL, bad, buf, sizeof(buf)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_exec_path_search),
		cmocka_unit_test(test_hosts_and_resolv),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
