/* lttle-init: restore notices on a tty (restore.c): strict parsing,
 * applying through an injected sink, bounded line reading, the reader loop,
 * and lttle.restore_tty= on the cmdline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"

#define HEX64 "00112233445566778899aabbccddeeffFFEEDDCCBBAA99887766554433221100"

struct fake {
	int clock_calls, entropy_calls;
	uint64_t ns;
	uint8_t seed[LI_RESTORE_SEED];
	bool fail_clock, fail_entropy;
};

static int fake_clock(void *ctx, uint64_t ns)
{
	struct fake *f = ctx;
	f->clock_calls++;
	f->ns = ns;
	return f->fail_clock ? lt_fail("clock refused") : 0;
}

static int fake_entropy(void *ctx, const uint8_t *seed, size_t n)
{
	struct fake *f = ctx;
	f->entropy_calls++;
	assert_int_equal(n, LI_RESTORE_SEED);
	memcpy(f->seed, seed, n);
	return f->fail_entropy ? lt_fail("entropy refused") : 0;
}

static int parse(const char *s, uint64_t *ns, uint8_t *seed)
{
	return li_restore_parse(s, strlen(s), ns, seed);
}

static void test_parse_valid(void **state)
{
	(void)state;
	uint64_t ns = 0;
	uint8_t seed[LI_RESTORE_SEED];
	assert_int_equal(parse("!restored 1764000000123456789 " HEX64, &ns, seed), 0);
	assert_true(ns == 1764000000123456789ull);
	assert_int_equal(seed[0], 0x00);
	assert_int_equal(seed[1], 0x11);
	assert_int_equal(seed[15], 0xff);
	assert_int_equal(seed[16], 0xff); /* upper case */
	assert_int_equal(seed[31], 0x00);
	/* a tty's trailing \r is tolerated */
	assert_int_equal(parse("!restored 1 " HEX64 "\r", &ns, seed), 0);
	assert_true(ns == 1);
	/* the largest time that fits a time_t in ns */
	assert_int_equal(parse("!restored 9223372036854775807 " HEX64, &ns, seed), 0);
}

static void test_parse_malformed(void **state)
{
	(void)state;
	static const char *bad[] = {
		"",
		"!ok",
		"!restored",
		"!restored ",
		"!restored 123",
		"!restored 123 ",
		"!restored  123 " HEX64,            /* two spaces */
		"!restored 123  " HEX64,            /* two spaces */
		"!restored +123 " HEX64,            /* sign */
		"!restored -123 " HEX64,
		"!restored 0 " HEX64,               /* no time */
		"!restored 0x10 " HEX64,
		"!restored 9223372036854775808 " HEX64,  /* > INT64_MAX */
		"!restored 18446744073709551616 " HEX64, /* overflows u64 */
		"!restored 00000000000000000001 " HEX64, /* 20 digits */
		"!restored 123 " HEX64 "0",         /* 65 hex */
		"!restored 123 " HEX64 " ",
		"!restored 123 " HEX64 "\n",
		"!restored 123 " HEX64 "\r\r",
		"!restored 123 0011223344556677889900112233445566778899001122334455667788990g",
		"!restored 123 001122334455667788990011223344556677889900112233445566778899",
		" !restored 123 " HEX64,
		"!RESTORED 123 " HEX64,
		"!restoredx 123 " HEX64,
		"restored 123 " HEX64,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t ns = 42;
		uint8_t seed[LI_RESTORE_SEED];
		memset(seed, 0xa5, sizeof(seed));
		if (parse(bad[i], &ns, seed) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_true(ns == 42);
		for (size_t k = 0; k < sizeof(seed); k++)
			assert_int_equal(seed[k], 0xa5); /* untouched */
	}
	/* an embedded NUL is not the end of the line */
	char nul[] = "!restored 123 " HEX64;
	size_t len = strlen(nul);
	nul[20] = '\0';
	uint64_t ns;
	uint8_t seed[LI_RESTORE_SEED];
	assert_int_equal(li_restore_parse(nul, len, &ns, seed), -1);
	/* a length shorter than the string cuts it */
	assert_int_equal(li_restore_parse("!restored 123 " HEX64, 40, &ns, seed), -1);
}

static void test_apply(void **state)
{
	(void)state;
	struct fake f = {0};
	struct li_restore_sink s = {fake_clock, fake_entropy, &f};
	const char *ok = "!restored 1764000000000000001 " HEX64;
	assert_int_equal(li_restore_apply(ok, strlen(ok), &s), 1);
	assert_int_equal(f.clock_calls, 1);
	assert_int_equal(f.entropy_calls, 1);
	assert_true(f.ns == 1764000000000000001ull);
	assert_int_equal(f.seed[1], 0x11);

	/* not a notice: nothing is applied */
	const char *bad = "!restored 1764000000000000001 zz";
	assert_int_equal(li_restore_apply(bad, strlen(bad), &s), 0);
	assert_int_equal(f.clock_calls, 1);
	assert_int_equal(f.entropy_calls, 1);

	/* a refused clock fails the apply but the entropy went in */
	f.fail_clock = true;
	assert_int_equal(li_restore_apply(ok, strlen(ok), &s), -1);
	assert_int_equal(f.entropy_calls, 2);
	assert_string_equal(lt_errmsg(), "clock refused");
	/* a refused entropy still steps the clock */
	f.fail_clock = false;
	f.fail_entropy = true;
	assert_int_equal(li_restore_apply(ok, strlen(ok), &s), -1);
	assert_int_equal(f.clock_calls, 3);
}

static int pipe_with(const char *data, size_t n)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], data, n), (ssize_t)n);
	close(p[1]);
	return p[0];
}

static void test_read_line(void **state)
{
	(void)state;
	char big[600];
	memset(big, 'x', sizeof(big));
	char data[1024];
	int n = snprintf(data, sizeof(data), "one\n\n%.*s\nthree\npartial", (int)sizeof(big), big);
	int fd = pipe_with(data, (size_t)n);
	char buf[LT_GUEST_LINE_MAX + 1];
	assert_int_equal(li_restore_read_line(fd, buf, sizeof(buf)), 3);
	assert_string_equal(buf, "one");
	assert_int_equal(li_restore_read_line(fd, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	/* too long: dropped whole, the next line is intact */
	assert_int_equal(li_restore_read_line(fd, buf, sizeof(buf)), -2);
	assert_int_equal(li_restore_read_line(fd, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "three");
	/* EOF before the '\n' */
	assert_int_equal(li_restore_read_line(fd, buf, sizeof(buf)), -1);
	close(fd);
}

static void test_serve(void **state)
{
	(void)state;
	char big[300];
	memset(big, '1', sizeof(big));
	char data[2048];
	int n = snprintf(data, sizeof(data),
			 "garbage\n!restored 5 " HEX64 "\n!restored %.*s " HEX64
			 "\n!restored 7 " HEX64 "\r\n",
			 (int)sizeof(big), big);
	int fd = pipe_with(data, (size_t)n);
	char events[] = "/tmp/lttle-restore-events.XXXXXX";
	int ev = mkstemp(events);
	assert_true(ev >= 0);
	struct li_port port = {.kind = LI_PORT_FD, .fd = ev};
	struct fake f = {0};
	struct li_restore_sink s = {fake_clock, fake_entropy, &f};
	assert_int_equal(li_restore_serve(fd, &s, &port), -1); /* ends at EOF */
	close(fd);
	assert_int_equal(f.clock_calls, 2);
	assert_true(f.ns == 7);
	char got[256] = "";
	assert_true(pread(ev, got, sizeof(got) - 1, 0) > 0);
	assert_string_equal(got, "log restored\nlog restored\n");
	close(ev);
	unlink(events);
}

static void test_cmdline(void **state)
{
	(void)state;
	struct li_cmdline c;
	assert_int_equal(li_cmdline_parse("console=ttyS0 lttle.restore_tty=ttyS1", &c), 0);
	assert_string_equal(c.restore_tty, "ttyS1");
	li_cmdline_free(&c);
	assert_int_equal(li_cmdline_parse("console=ttyS0", &c), 0);
	assert_null(c.restore_tty);
	li_cmdline_free(&c);
	static const char *bad[] = {"lttle.restore_tty=", "lttle.restore_tty=../sda",
				    "lttle.restore_tty=tty/S1", "lttle.restore_tty=ttyS1.",
				    "lttle.restore_tty=abcdefghijklmnopqrstuvwxyz0123456"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (li_cmdline_parse(bad[i], &c) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(strstr(lt_errmsg(), "lttle.restore_tty"));
	}
}

static void test_start_inert(void **state)
{
	(void)state;
	struct li_port port = {.kind = LI_PORT_NONE, .fd = -1};
	assert_int_equal(li_restore_start(NULL, &port), 0);
	/* not a tty: nothing is forked */
	assert_int_equal(li_restore_start("null", &port), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid), cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_apply),       cmocka_unit_test(test_read_line),
		cmocka_unit_test(test_serve),       cmocka_unit_test(test_cmdline),
		cmocka_unit_test(test_start_inert),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
