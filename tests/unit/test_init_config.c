/* lttle-init: the image config JSON (valid, malformed, oversized). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"

static int parse(const char *json, struct li_config *c)
{
	return li_config_parse(json, strlen(json), c);
}

static void test_full_config(void **state)
{
	(void)state;
	struct li_config c;
	const char *json =
		"{\"env\":[\"PATH=/bin\",\"A=x=y\",\"EMPTY=\"],"
		"\"entrypoint\":[\"/entry.sh\"],\"cmd\":[\"httpd\",\"-f\",\"-p\",\"8080\"],"
		"\"workdir\":\"/srv\",\"user\":\"app:web\","
		"\"exposed_ports\":[8080,\"9090/tcp\",\"53/udp\",\"7000\"],"
		"\"ref\":\"r/x:1\",\"digest\":\"sha256:00\",\"future\":{\"a\":[1,2]}}";
	assert_int_equal(parse(json, &c), 0);
	assert_int_equal(li_strv_len(c.env), 3);
	assert_string_equal(c.env[1], "A=x=y");
	assert_string_equal(c.env[2], "EMPTY=");
	assert_int_equal(li_strv_len(c.entrypoint), 1);
	assert_int_equal(li_strv_len(c.cmd), 4);
	assert_string_equal(c.cmd[3], "8080");
	assert_string_equal(c.workdir, "/srv");
	assert_string_equal(c.user, "app:web");
	assert_int_equal(c.n_ports, 3); /* udp is not forwarded */
	assert_int_equal(c.ports[0], 8080);
	assert_int_equal(c.ports[1], 9090);
	assert_int_equal(c.ports[2], 7000);
	li_config_free(&c);
}

static void test_absent_and_null(void **state)
{
	(void)state;
	struct li_config c;
	assert_int_equal(parse("{\"cmd\":null,\"entrypoint\":null,\"env\":null,\"user\":null}", &c), 0);
	assert_null(c.cmd);
	assert_null(c.entrypoint);
	assert_non_null(c.env);
	assert_int_equal(li_strv_len(c.env), 0);
	assert_string_equal(c.user, "");
	assert_string_equal(c.workdir, "");
	li_config_free(&c);

	/* an empty cmd is not an absent one */
	assert_int_equal(parse("{\"cmd\":[]}", &c), 0);
	assert_non_null(c.cmd);
	assert_int_equal(li_strv_len(c.cmd), 0);
	li_config_free(&c);
}

static void expect_error(const char *json, const char *needle)
{
	struct li_config c;
	assert_int_equal(parse(json, &c), -1);
	if (!strstr(lt_errmsg(), needle))
		fail_msg("error \"%s\" does not mention \"%s\"", lt_errmsg(), needle);
	assert_null(c.env);
	assert_null(c.cmd);
}

static void test_malformed(void **state)
{
	(void)state;
	expect_error("", "not valid JSON");
	expect_error("{\"cmd\":[\"a\"", "not valid JSON");
	expect_error("[1,2]", "not a JSON object");
	expect_error("{\"cmd\":\"sh\"}", "\"cmd\" is not an array");
	expect_error("{\"cmd\":[\"a\",3]}", "\"cmd\"[1] is not a string");
	expect_error("{\"env\":[\"NOEQ\"]}", "\"env\"[0]");
	expect_error("{\"env\":[\"=v\"]}", "not KEY=VALUE");
	expect_error("{\"user\":5}", "\"user\" is not a string");
	expect_error("{\"workdir\":[\"/\"]}", "\"workdir\" is not a string");
	expect_error("{\"exposed_ports\":[0]}", "out of range");
	expect_error("{\"exposed_ports\":[70000]}", "out of range");
	expect_error("{\"exposed_ports\":[\"80/sctp\"]}", "PORT[/tcp]");
	expect_error("{\"exposed_ports\":[\"http\"]}", "PORT[/tcp]");
	expect_error("{\"exposed_ports\":[true]}", "is not a port");
	expect_error("{\"exposed_ports\":{}}", "not an array");
	expect_error("{\"cmd\":[\"a\"],\"cmd\":[\"b\"]}", "not valid JSON"); /* duplicate key */
	expect_error("{\"cmd\":[\"a\\u0000b\"]}", "not valid JSON");      /* NUL in a string */
}

static void test_oversized(void **state)
{
	(void)state;
	struct li_config c;
	/* larger than the bound: refused before parsing */
	size_t n = LI_CONFIG_MAX + 16;
	char *big = malloc(n + 1);
	assert_non_null(big);
	memset(big, ' ', n);
	memcpy(big, "{}", 2);
	big[n] = '\0';
	assert_int_equal(li_config_parse(big, n, &c), -1);
	assert_non_null(strstr(lt_errmsg(), "more than"));

	/* too many entries in one array */
	struct lt_buf b = {0};
	assert_int_equal(lt_buf_printf(&b, "{\"cmd\":["), 0);
	for (int i = 0; i <= LI_MAX_ARGS; i++)
		assert_int_equal(lt_buf_printf(&b, "%s\"a\"", i ? "," : ""), 0);
	assert_int_equal(lt_buf_printf(&b, "]}"), 0);
	assert_int_equal(li_config_parse((char *)b.data, b.len, &c), -1);
	assert_non_null(strstr(lt_errmsg(), "more than"));
	lt_buf_free(&b);

	/* one string past the bound */
	size_t slen = LI_MAX_STR + 1;
	char *s = malloc(slen + 32);
	assert_non_null(s);
	strcpy(s, "{\"cmd\":[\"");
	memset(s + strlen(s), 'x', slen);
	strcpy(s + 9 + slen, "\"]}");
	assert_int_equal(li_config_parse(s, strlen(s), &c), -1);
	assert_non_null(strstr(lt_errmsg(), "too long"));
	free(s);

	/* deep nesting is an error, not a crash */
	size_t depth = 100000;
	memset(big, '[', depth);
	big[depth] = '\0';
	assert_int_equal(li_config_parse(big, depth, &c), -1);
	free(big);
}

static void test_load_file(void **state)
{
	(void)state;
	struct li_config c;
	char path[] = "/tmp/lttle-init-config.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *json = "{\"cmd\":[\"true\"]}";
	assert_int_equal(lt_write_all(fd, json, strlen(json)), 0);
	close(fd);
	assert_int_equal(li_config_load(path, &c), 0);
	assert_string_equal(c.cmd[0], "true");
	li_config_free(&c);
	unlink(path);
	assert_int_equal(li_config_load(path, &c), -1);
	assert_non_null(strstr(lt_errmsg(), path));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_config), cmocka_unit_test(test_absent_and_null),
		cmocka_unit_test(test_malformed),   cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
