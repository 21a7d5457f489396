/* The lttle guest device: event line parser, per-vCPU line buffers,
 * replies (incl. "!restored"), and its state round trip. Plus the state
 * blob format and the CPUID templates. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "vmm/vmm_int.h"

static int parse(const char *s, struct lt_guest_event *ev)
{
	return lt_guest_event_parse(s, strlen(s), ev);
}

static void test_parse_events(void **state)
{
	(void)state;
	struct lt_guest_event ev;
	assert_int_equal(parse("ready", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_READY);
	assert_string_equal(ev.name, "ready");
	assert_int_equal(parse("listen-before 8080", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_LISTEN_BEFORE);
	assert_int_equal(ev.port, 8080);
	assert_int_equal(parse("listen-after 443 -98", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_LISTEN_AFTER);
	assert_int_equal(ev.port, 443);
	assert_int_equal(ev.code, -98);
	assert_int_equal(parse("bind-before 0", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_BIND_BEFORE);
	assert_int_equal(parse("bind-after 65535 0\r", &ev), 0); /* CR tolerated */
	assert_int_equal(ev.port, 65535);
	assert_int_equal(parse("exit 137", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_EXIT);
	assert_int_equal(ev.code, 137);
	assert_int_equal(parse("trigger", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_TRIGGER);
	assert_int_equal(ev.code, 0);
	assert_int_equal(parse("trigger 3", &ev), 0);
	assert_int_equal(ev.code, 3);
	assert_int_equal(parse("hold", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_HOLD);
	assert_int_equal(parse("release", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_RELEASE);
	assert_int_equal(parse("poweroff", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_POWEROFF);
	assert_int_equal(parse("log  hello   world ", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_LOG);
	assert_string_equal(ev.text, "hello   world ");
	assert_int_equal(parse("log bin\x01\xff", &ev), 0);
	assert_string_equal(ev.text, "bin??");
	assert_int_equal(parse("frobnicate 1 2", &ev), 0);
	assert_int_equal(ev.type, LT_GEV_UNKNOWN);
	assert_string_equal(ev.text, "frobnicate 1 2");
	assert_string_equal(lt_guest_event_name(LT_GEV_LISTEN_AFTER), "listen-after");
}

static void test_parse_malformed(void **state)
{
	(void)state;
	struct lt_guest_event ev;
	const char *bad[] = {
		"", "   ", "listen-before", "listen-before x", "listen-before 65536",
		"listen-before -1", "listen-before 80 extra", "listen-after 80",
		"listen-after 80 1x", "exit", "exit abc", "exit 99999999999999",
		"trigger 1 2", "ready now", "bind-after 80 --1", "listen-before 0x50",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i], &ev) != -1)
			fail_msg("'%s' was accepted", bad[i]);
}

static void feed(struct lt_guestdev *g, int vcpu, const char *s, int *events,
		 struct lt_guest_event *last)
{
	for (; *s; s++) {
		struct lt_guest_event ev;
		int rc = lt_guestdev_out(g, vcpu, (uint8_t)*s, &ev);
		if (rc) {
			(*events)++;
			*last = ev;
		}
	}
}

static void read_reply(struct lt_guestdev *g, int vcpu, char *out, size_t max)
{
	size_t i = 0;
	while (i + 1 < max) {
		char c = (char)lt_guestdev_in(g, vcpu);
		out[i++] = c;
		if (c == '\n')
			break;
	}
	out[i] = 0;
}

static void test_line_buffers_and_replies(void **state)
{
	(void)state;
	struct lt_guestdev g;
	assert_int_equal(lt_guestdev_init(&g, 2), 0);
	int n = 0;
	struct lt_guest_event last;
	/* Interleaved vCPUs keep separate lines. */
	feed(&g, 0, "listen-", &n, &last);
	feed(&g, 1, "trig", &n, &last);
	feed(&g, 0, "after 80 0\n", &n, &last);
	assert_int_equal(n, 1);
	assert_int_equal(last.type, LT_GEV_LISTEN_AFTER);
	assert_int_equal(last.vcpu, 0);
	assert_int_equal(last.seq, 1);
	feed(&g, 1, "ger 9\n", &n, &last);
	assert_int_equal(n, 2);
	assert_int_equal(last.type, LT_GEV_TRIGGER);
	assert_int_equal(last.vcpu, 1);
	assert_int_equal(last.code, 9);
	char r[200];
	read_reply(&g, 0, r, sizeof(r));
	assert_string_equal(r, "!ok\n");
	/* An overlong line is dropped up to its newline; the next one works. */
	char longl[400];
	memset(longl, 'y', sizeof(longl) - 2);
	longl[sizeof(longl) - 2] = '\n';
	longl[sizeof(longl) - 1] = 0;
	feed(&g, 0, longl, &n, &last);
	assert_int_equal(n, 2);
	/* 127 bytes + '\n' is the longest accepted line. */
	char maxl[130] = "log ";
	memset(maxl + 4, 'z', 123);
	maxl[127] = '\n';
	maxl[128] = 0;
	feed(&g, 0, maxl, &n, &last);
	assert_int_equal(n, 3);
	assert_int_equal(strlen(last.text), 123);
	/* A malformed line is reported as such (rc 2). */
	struct lt_guest_event ev;
	const char *m = "exit nope\n";
	int rc = 0;
	for (const char *p = m; *p; p++)
		rc = lt_guestdev_out(&g, 0, (uint8_t)*p, &ev);
	assert_int_equal(rc, 2);
	assert_string_equal(ev.text, "exit nope");
	/* After a restore the next report gets fresh entropy and the time,
	 * once. */
	g.restored = true;
	feed(&g, 1, "ready\n", &n, &last);
	read_reply(&g, 1, r, sizeof(r));
	assert_int_equal(strncmp(r, "!restored ", 10), 0);
	char *sp = strchr(r + 10, ' ');
	assert_non_null(sp);
	assert_true(strtoull(r + 10, NULL, 10) > 1600000000ULL * 1000000000ULL);
	assert_int_equal(strlen(sp + 1), 65); /* 64 hex + '\n' */
	feed(&g, 1, "ready\n", &n, &last);
	read_reply(&g, 1, r, sizeof(r));
	assert_string_equal(r, "!ok\n");
	/* Out-of-range vCPU indexes are ignored. */
	assert_int_equal(lt_guestdev_out(&g, 5, '\n', &ev), 0);
	assert_int_equal(lt_guestdev_in(&g, -1), 0xff);
	/* State round trip keeps a half-written line. */
	feed(&g, 0, "bind-bef", &n, &last);
	struct lt_buf b = {0};
	assert_int_equal(lt_guestdev_save(&g, &b), 0);
	struct lt_guestdev h;
	assert_int_equal(lt_guestdev_init(&h, 2), 0);
	assert_int_equal(lt_guestdev_load(&h, b.data, b.len), 0);
	int n2 = 0;
	feed(&h, 0, "ore 22\n", &n2, &last);
	assert_int_equal(n2, 1);
	assert_int_equal(last.type, LT_GEV_BIND_BEFORE);
	assert_int_equal(last.port, 22);
	struct lt_guestdev one;
	assert_int_equal(lt_guestdev_init(&one, 1), 0);
	assert_int_equal(lt_guestdev_load(&one, b.data, b.len), -1); /* vCPU count */
	assert_int_equal(lt_guestdev_load(&one, b.data, 5), -1);
	lt_buf_free(&b);
	lt_guestdev_free(&g);
	lt_guestdev_free(&h);
	lt_guestdev_free(&one);
}

static void test_blobs(void **state)
{
	(void)state;
	struct lt_buf b = {0};
	size_t start;
	assert_int_equal(lt_blob_begin(&b, 7, 2, &start), 0);
	assert_int_equal(lt_blob_put(&b, 1, "abc", 3), 0);
	assert_int_equal(lt_blob_put_u64(&b, 2, 42), 0);
	assert_int_equal(lt_blob_put(&b, 1, "de", 2), 0);
	assert_int_equal(lt_blob_end(&b, start), 0);
	struct lt_blob_reader r;
	assert_int_equal(lt_blob_open(&r, b.data, b.len, 7, 2, "t"), 0);
	uint32_t len;
	const char *p = lt_blob_find(&r, 1, 1, &len);
	assert_non_null(p);
	assert_int_equal(len, 2);
	assert_memory_equal(p, "de", 2);
	uint64_t v;
	assert_int_equal(lt_blob_get_u64(&r, 2, &v, "v"), 0);
	assert_int_equal(v, 42);
	char three[3];
	assert_int_equal(lt_blob_get(&r, 1, 0, three, 4, "wrong size"), -1);
	assert_int_equal(lt_blob_get(&r, 9, 0, three, 3, "missing"), -1);
	assert_int_equal(lt_blob_open(&r, b.data, b.len, 8, 2, "t"), -1); /* kind */
	assert_int_equal(lt_blob_open(&r, b.data, b.len, 7, 1, "t"), -1); /* too new */
	/* Every truncation fails cleanly. */
	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(lt_blob_open(&r, b.data, n, 7, 2, "t"), -1);
	/* A record claiming more than the blob holds. */
	uint32_t big = 1000;
	memcpy(b.data + LT_BLOB_HDR + 4, &big, 4);
	assert_int_equal(lt_blob_open(&r, b.data, b.len, 7, 2, "t"), -1);
	b.data[0] ^= 1;
	assert_int_equal(lt_blob_open(&r, b.data, b.len, 7, 2, "t"), -1);
	lt_buf_free(&b);
}

static void test_cpuid_templates(void **state)
{
	(void)state;
	struct kvm_cpuid_entry2 e = {.function = 7, .index = 0, .eax = 2,
				     .ebx = 0xffffffff, .ecx = 0xffffffff, .edx = 0xffffffff};
	struct kvm_cpuid_entry2 h = e;
	lt_cpuid_apply_template(&h, LT_CPU_TEMPLATE_HOST);
	assert_int_equal(h.ebx, 0xffffffff);
	lt_cpuid_apply_template(&e, LT_CPU_TEMPLATE_BASELINE);
	assert_int_equal(e.eax, 0);
	assert_int_equal(e.ebx & (1U << 16), 0); /* AVX512F */
	assert_int_equal(e.ebx & (1U << 11), 0); /* RTM */
	assert_int_equal(e.ebx & (1U << 4), 0);  /* HLE */
	assert_true(e.ebx & (1U << 5));          /* AVX2 kept */
	assert_int_equal(e.ecx & (1U << 3), 0);  /* PKU */
	assert_int_equal(e.edx & (1U << 29), 0); /* ARCH_CAPABILITIES */
	struct kvm_cpuid_entry2 x = {.function = 0xd, .index = 0, .eax = 0xe7, .edx = 2};
	lt_cpuid_apply_template(&x, LT_CPU_TEMPLATE_BASELINE);
	assert_int_equal(x.eax, 7); /* x87 SSE AVX only */
	assert_int_equal(x.edx, 0);
	assert_int_equal(x.ecx, 832);
	struct kvm_cpuid_entry2 one = {.function = 1, .ecx = 1U << 5};
	lt_cpuid_apply_template(&one, LT_CPU_TEMPLATE_BASELINE);
	assert_int_equal(one.ecx & (1U << 5), 0); /* VMX */
	assert_true(one.ecx & (1U << 31));        /* hypervisor */
	enum lt_cpu_template t;
	assert_int_equal(lt_cpu_template_parse("baseline", &t), 0);
	assert_int_equal(t, LT_CPU_TEMPLATE_BASELINE);
	assert_int_equal(lt_cpu_template_parse("fancy", &t), -1);
	/* Topology: APIC ids and counts per vCPU. */
	struct kvm_cpuid2 *base = calloc(1, sizeof(*base) + 3 * sizeof(struct kvm_cpuid_entry2));
	base->nent = 3;
	base->entries[0] = (struct kvm_cpuid_entry2){.function = 1, .ebx = 0x00000800};
	base->entries[1] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 1};
	base->entries[2] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 0};
	struct kvm_cpuid2 *c = lt_cpuid_for_vcpu(base, 2, 3);
	assert_int_equal(c->entries[0].ebx >> 24, 2);
	assert_int_equal((c->entries[0].ebx >> 16) & 0xff, 3);
	assert_int_equal(c->entries[0].ebx & 0xffff, 0x0800);
	assert_int_equal(c->entries[1].ebx, 3);
	assert_int_equal(c->entries[1].eax, 2); /* bits for 3 cores */
	assert_int_equal(c->entries[1].edx, 2);
	assert_int_equal(c->entries[2].ebx, 1);
	free(c);
	free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_events),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_line_buffers_and_replies),
		cmocka_unit_test(test_blobs),
		cmocka_unit_test(test_cpuid_templates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
