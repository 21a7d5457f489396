/* lttle-init: kernel command line parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "init.h"

static void test_typical_line(void **state)
{
	(void)state;
	struct li_cmdline c;
	const char *line =
		"console=ttyS0 root=/dev/vda ro init=/.lttle/init "
		"ip=10.0.2.15::10.0.2.2:255.255.255.0:web:eth0:off:10.0.2.3 "
		"lttle.ports=8080,9090 lttle.hook=seccomp lttle.overlay=/dev/vdb "
		"lttle.env=A=1 lttle.env=B=two=2 lttle.user=app:web lttle.workdir=/srv "
		"lttle.hostname=box lttle.dns=1.1.1.1,9.9.9.9\n";
	assert_int_equal(li_cmdline_parse(line, &c), 0);
	assert_int_equal(c.n_ports, 2);
	assert_int_equal(c.ports[0], 8080);
	assert_int_equal(c.ports[1], 9090);
	assert_int_equal(c.hook, LI_HOOK_SECCOMP);
	assert_int_equal(c.overlay, LI_OVL_DISK);
	assert_string_equal(c.overlay_dev, "/dev/vdb");
	assert_int_equal(li_strv_len(c.env), 2);
	assert_string_equal(c.env[0], "A=1");
	assert_string_equal(c.env[1], "B=two=2");
	assert_string_equal(c.user, "app:web");
	assert_string_equal(c.workdir, "/srv");
	assert_string_equal(c.hostname, "box");
	assert_true(c.net);
	assert_string_equal(c.ip, "10.0.2.15");
	assert_int_equal(li_strv_len(c.dns), 2);
	assert_string_equal(c.dns[1], "9.9.9.9");
	assert_false(c.cmd_set);
	assert_false(c.entrypoint_set);
	assert_null(c.cmd);
	li_cmdline_free(&c);
}

static void test_defaults(void **state)
{
	(void)state;
	struct li_cmdline c;
	assert_int_equal(li_cmdline_parse("console=ttyS0 quiet", &c), 0);
	assert_int_equal(c.hook, LI_HOOK_AUTO);
	assert_int_equal(c.overlay, LI_OVL_AUTO);
	assert_false(c.net);
	assert_null(c.ip);
	assert_int_equal(c.n_ports, 0);
	li_cmdline_free(&c);

	assert_int_equal(li_cmdline_parse("ip=off lttle.hook=on", &c), 0);
	assert_false(c.net);
	assert_int_equal(c.hook, LI_HOOK_AUTO);
	li_cmdline_free(&c);
	assert_int_equal(li_cmdline_parse("lttle.hook=0 lttle.overlay=none", &c), 0);
	assert_int_equal(c.hook, LI_HOOK_OFF);
	assert_int_equal(c.overlay, LI_OVL_NONE);
	assert_null(c.events);
	assert_false(c.log_console);
	li_cmdline_free(&c);
	assert_int_equal(li_cmdline_parse("lttle.events=/run/ev.log lttle.log=console", &c), 0);
	assert_string_equal(c.events, "/run/ev.log");
	assert_true(c.log_console);
	li_cmdline_free(&c);
}

static void test_quoted_commands(void **state)
{
	(void)state;
	struct li_cmdline c;
	const char *line = "root=/dev/vda \"lttle.cmd=sh -c 'echo hi; exit 3' x\\ y\" "
			   "lttle.entrypoint=/bin/tini";
	assert_int_equal(li_cmdline_parse(line, &c), 0);
	assert_true(c.cmd_set);
	assert_int_equal(li_strv_len(c.cmd), 4);
	assert_string_equal(c.cmd[0], "sh");
	assert_string_equal(c.cmd[1], "-c");
	assert_string_equal(c.cmd[2], "echo hi; exit 3");
	assert_string_equal(c.cmd[3], "x y");
	assert_true(c.entrypoint_set);
	assert_string_equal(c.entrypoint[0], "/bin/tini");
	li_cmdline_free(&c);

	/* given but empty: set, with no words (clears the image's value) */
	assert_int_equal(li_cmdline_parse("lttle.entrypoint= lttle.cmd=\"\"", &c), 0);
	assert_true(c.entrypoint_set);
	assert_true(c.cmd_set);
	assert_int_equal(li_strv_len(c.entrypoint), 0);
	assert_int_equal(li_strv_len(c.cmd), 0);
	li_cmdline_free(&c);
}

static void test_init_args_ignored(void **state)
{
	(void)state;
	struct li_cmdline c;
	assert_int_equal(li_cmdline_parse("lttle.ports=80 -- lttle.ports=81 lttle.hook=bogus", &c), 0);
	assert_int_equal(c.n_ports, 1);
	assert_int_equal(c.ports[0], 80);
	li_cmdline_free(&c);
}

static void test_bad_values(void **state)
{
	(void)state;
	struct li_cmdline c;
	static const char *bad[] = {
		"lttle.hook=maybe",       "lttle.ports=0",         "lttle.ports=65536",
		"lttle.ports=80,x",       "lttle.ports=80;81",     "lttle.overlay=/etc/x",
		"lttle.overlay=/dev/../x", "lttle.overlay=/dev/",  "lttle.env=NOEQUALS",
		"lttle.env==v",           "\"lttle.cmd=sh -c 'oops\"",
		"lttle.events=rel/path",  "lttle.log=syslog",
	};
	for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
		lt_clear_error();
		assert_int_equal(li_cmdline_parse(bad[i], &c), -1);
		assert_string_not_equal(lt_errmsg(), "unknown error"); /* says why */
		assert_int_equal(c.n_ports, 0);           /* nothing half-parsed */
		assert_null(c.env);
	}
	assert_int_equal(li_cmdline_parse("lttle.hook=maybe", &c), -1);
	assert_non_null(strstr(lt_errmsg(), "lttle.hook=maybe"));
}

static void test_bounds(void **state)
{
	(void)state;
	struct li_cmdline c;
	char big[9000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(li_cmdline_parse(big, &c), -1);

	char ports[2048] = "lttle.ports=";
	for (int p = 1; p <= LI_MAX_PORTS + 1; p++)
		snprintf(ports + strlen(ports), sizeof(ports) - strlen(ports), "%s%d",
			 p > 1 ? "," : "", 1000 + p);
	assert_int_equal(li_cmdline_parse(ports, &c), -1);
	assert_non_null(strstr(lt_errmsg(), "more than"));

	/* duplicates count once */
	assert_int_equal(li_cmdline_parse("lttle.ports=80,80,443,80", &c), 0);
	assert_int_equal(c.n_ports, 2);
	li_cmdline_free(&c);
}

static void test_split_words(void **state)
{
	(void)state;
	char **w;
	assert_int_equal(li_split_words("  a  'b c'd\\'e  ''  ", &w), 0);
	assert_int_equal(li_strv_len(w), 3);
	assert_string_equal(w[0], "a");
	assert_string_equal(w[1], "b cd'e");
	assert_string_equal(w[2], "");
	li_strv_free(w);
	assert_int_equal(li_split_words("", &w), 0);
	assert_int_equal(li_strv_len(w), 0);
	li_strv_free(w);
	assert_int_equal(li_split_words("'open", &w), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_typical_line),    cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_quoted_commands), cmocka_unit_test(test_init_args_ignored),
		cmocka_unit_test(test_bad_values),      cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_split_words),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
