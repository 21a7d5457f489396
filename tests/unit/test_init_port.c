/* lttle-init: guest-port lines (format, the fake sink) and host replies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "init.h"

static void test_format(void **state)
{
	(void)state;
	char buf[LT_GUEST_LINE_MAX];
	assert_int_equal(li_port_format(buf, sizeof(buf), LT_GUEST_EV_READY, NULL), 5);
	assert_string_equal(buf, "ready");
	assert_int_equal(li_port_format(buf, sizeof(buf), LT_GUEST_EV_LISTEN_AFTER, "%d %d", 8080, -98),
			 strlen("listen-after 8080 -98"));
	assert_string_equal(buf, "listen-after 8080 -98");
	assert_int_equal(li_port_format(buf, sizeof(buf), LT_GUEST_EV_TRIGGER, "%d", 3), 9);
	assert_string_equal(buf, "trigger 3");
}

static void test_format_bounds(void **state)
{
	(void)state;
	char buf[2 * LT_GUEST_LINE_MAX];
	char text[LT_GUEST_LINE_MAX];
	/* "log " + text: LT_GUEST_LINE_MAX - 1 bytes fit (the '\n' makes the max) */
	size_t fit = LT_GUEST_LINE_MAX - 1 - 4;
	memset(text, 'x', fit);
	text[fit] = '\0';
	assert_int_equal(li_port_format(buf, sizeof(buf), "log", "%s", text), LT_GUEST_LINE_MAX - 1);
	text[fit] = 'x';
	text[fit + 1] = '\0';
	assert_int_equal(li_port_format(buf, sizeof(buf), "log", "%s", text), -1);
	assert_non_null(strstr(lt_errmsg(), "more than"));
	/* a small caller buffer bounds it too */
	char small[8];
	assert_int_equal(li_port_format(small, sizeof(small), "ready", NULL), 5);
	assert_int_equal(li_port_format(small, sizeof(small), "listen-before", "%d", 1), -1);
	/* no line breaks or control bytes can be smuggled into the stream */
	assert_int_equal(li_port_format(buf, sizeof(buf), "log", "a\nexit 0"), -1);
	assert_int_equal(li_port_format(buf, sizeof(buf), "log", "a\rb"), -1);
	assert_int_equal(li_port_format(buf, sizeof(buf), "log", "\x7f"), -1);
}

static void test_fd_sink(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct li_port port = {.kind = LI_PORT_FD, .fd = p[1]};
	assert_int_equal(li_port_send(&port, LT_GUEST_EV_READY, NULL), 0);
	assert_int_equal(li_port_send(&port, LT_GUEST_EV_BIND_BEFORE, "%d", 80), 0);
	assert_int_equal(li_port_send(&port, LT_GUEST_EV_EXIT, "%d", 137), 0);
	assert_int_equal(li_port_send(&port, "log", "bad\n"), -1); /* refused, nothing written */
	close(p[1]);
	char got[256] = "";
	ssize_t n = read(p[0], got, sizeof(got) - 1);
	assert_true(n > 0);
	got[n] = '\0';
	assert_string_equal(got, "ready\nbind-before 80\nexit 137\n");
	close(p[0]);

	/* LI_PORT_NONE accepts and drops */
	struct li_port none = {.kind = LI_PORT_NONE, .fd = -1};
	assert_int_equal(li_port_send(&none, LT_GUEST_EV_READY, NULL), 0);
}

static void test_reply(void **state)
{
	(void)state;
	uint64_t ns = 0;
	uint8_t seed[32];
	const char *hex = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
	char line[200];
	snprintf(line, sizeof(line), "!restored 1700000000123456789 %s", hex);
	assert_int_equal(li_port_parse_reply(line, &ns, seed), 1);
	assert_true(ns == 1700000000123456789ull);
	for (int i = 0; i < 32; i++)
		assert_int_equal(seed[i], i);
	snprintf(line, sizeof(line), "!restored 5 %s\n", hex);
	assert_int_equal(li_port_parse_reply(line, &ns, seed), 1);
	assert_true(ns == 5);

	assert_int_equal(li_port_parse_reply("!ok", &ns, seed), 0);
	assert_int_equal(li_port_parse_reply("", &ns, seed), 0);
	assert_int_equal(li_port_parse_reply("!restored 5", &ns, seed), 0);
	assert_int_equal(li_port_parse_reply("!restored x 00", &ns, seed), 0);
	snprintf(line, sizeof(line), "!restored 5 %.62s", hex); /* short */
	assert_int_equal(li_port_parse_reply(line, &ns, seed), 0);
	snprintf(line, sizeof(line), "!restored 5 %sff", hex); /* long */
	assert_int_equal(li_port_parse_reply(line, &ns, seed), 0);
	snprintf(line, sizeof(line), "!restored 5 %.63sg", hex); /* not hex */
	assert_int_equal(li_port_parse_reply(line, &ns, seed), 0);
	snprintf(line, sizeof(line), "!restored 5 %s junk", hex);
	assert_int_equal(li_port_parse_reply(line, &ns, seed), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_bounds),
		cmocka_unit_test(test_fd_sink),
		cmocka_unit_test(test_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
