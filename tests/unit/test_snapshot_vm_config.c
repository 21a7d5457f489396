/* The VM config section of VM snapshots (JSON) and capture triggers:
 * round trip, every reject path with malformed or hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/snapshot.h"
#include "vmm/vmm.h"

static void sample(struct lt_vmsnap_config *c)
{
	memset(c, 0, sizeof(*c));
	c->version = 1;
	c->mem_bytes = 256ULL << 20;
	c->vcpus = 2;
	strcpy(c->cpu_template, "host");
	c->regions[0].gpa = 0;
	c->regions[0].size = 256ULL << 20;
	c->nregions = 1;
	c->kernel = strdup("/boot/vmlinux");
	c->cmdline = strdup("console=ttyS0 sg.mem=40");
	c->vsock = true;
	c->vsock_cid = 7;
	c->created_wall_ns = 1700000000123456789ULL;
	c->reason = strdup("trigger first-listen");
	c->disks[0].path = strdup("/var/lib/lttle/rootfs/x.sqfs");
	c->disks[0].read_only = true;
	strcpy(c->disks[0].id, "lttle-rootfs");
	c->disks[0].size = 12345678;
	c->disks[0].mtime_ns = 99;
	c->ndisks = 1;
}

static void test_round_trip(void **st)
{
	(void)st;
	struct lt_vmsnap_config a, b;
	sample(&a);
	char *json;
	assert_int_equal(lt_vmsnap_config_encode(&a, &json), 0);
	assert_int_equal(lt_vmsnap_config_decode(json, strlen(json), &b), 0);
	assert_int_equal(b.mem_bytes, a.mem_bytes);
	assert_int_equal(b.vcpus, 2);
	assert_string_equal(b.cpu_template, "host");
	assert_int_equal(b.nregions, 1);
	assert_string_equal(b.cmdline, a.cmdline);
	assert_string_equal(b.kernel, a.kernel);
	assert_true(b.vsock);
	assert_int_equal(b.vsock_cid, 7);
	assert_int_equal(b.created_wall_ns, a.created_wall_ns);
	assert_int_equal(b.ndisks, 1);
	assert_string_equal(b.disks[0].path, a.disks[0].path);
	assert_null(b.disks[0].overlay);
	assert_true(b.disks[0].read_only);
	assert_string_equal(b.disks[0].id, "lttle-rootfs");
	assert_int_equal(b.disks[0].size, 12345678);
	assert_null(b.tap);
	/* apply: the VM shape */
	struct lt_vm_config cfg;
	lt_vm_config_init(&cfg);
	assert_int_equal(lt_vmsnap_config_apply(&b, &cfg), 0);
	assert_int_equal(cfg.mem_bytes, 256ULL << 20);
	assert_int_equal(cfg.vcpus, 2);
	assert_int_equal(cfg.vsock_cid, 7);
	assert_int_equal(cfg.ndisks, 1);
	assert_true(cfg.disks[0].read_only);
	free(json);
	lt_vmsnap_config_free(&a);
	lt_vmsnap_config_free(&b);
}

static void test_high_memory_layout(void **st)
{
	(void)st;
	struct lt_vmsnap_config a, b;
	sample(&a);
	a.mem_bytes = 4ULL << 30;
	a.regions[0].size = LT_VM_MMIO_START;
	a.regions[1].gpa = LT_VM_HIGH_START;
	a.regions[1].size = (4ULL << 30) - LT_VM_MMIO_START;
	a.nregions = 2;
	char *json;
	assert_int_equal(lt_vmsnap_config_encode(&a, &json), 0);
	assert_int_equal(lt_vmsnap_config_decode(json, strlen(json), &b), 0);
	assert_int_equal(b.nregions, 2);
	free(json);
	lt_vmsnap_config_free(&a);
	lt_vmsnap_config_free(&b);
}

/* Replaces the first occurrence of from in the sample's JSON with to and
 * expects a refusal whose message contains want. */
static void reject(const char *from, const char *to, const char *want)
{
	struct lt_vmsnap_config a, b;
	sample(&a);
	char *json;
	assert_int_equal(lt_vmsnap_config_encode(&a, &json), 0);
	char *p = strstr(json, from);
	if (!p)
		fail_msg("'%s' not in %s", from, json);
	size_t n = strlen(json) - strlen(from) + strlen(to) + 1;
	char *m = malloc(n);
	memcpy(m, json, (size_t)(p - json));
	strcpy(m + (p - json), to);
	strcat(m, p + strlen(from));
	int rc = lt_vmsnap_config_decode(m, strlen(m), &b);
	if (rc == 0)
		fail_msg("accepted: %s", m);
	if (want && !strstr(lt_errmsg(), want))
		fail_msg("message '%s' lacks '%s' (input %s)", lt_errmsg(), want, m);
	free(m);
	free(json);
	lt_vmsnap_config_free(&a);
}

static void test_rejects(void **st)
{
	(void)st;
	reject("\"version\":1", "\"version\":2", "version 2");
	reject("\"version\":1", "\"version\":\"1\"", "version");
	reject("\"mem_bytes\":268435456", "\"mem_bytes\":268435457", "page aligned");
	reject("\"mem_bytes\":268435456", "\"mem_bytes\":1024", "mem_bytes");
	reject("\"mem_bytes\":268435456", "\"mem_bytes\":-4096", "mem_bytes");
	reject("\"vcpus\":2", "\"vcpus\":0", "vcpus");
	reject("\"vcpus\":2", "\"vcpus\":65", "vcpus");
	reject("\"cpu_template\":\"host\"", "\"cpu_template\":\"pentium\"", "cpu_template");
	reject("\"size\":268435456", "\"size\":134217728", "regions hold");
	reject("\"gpa\":0", "\"gpa\":4096", "layout");
	reject("\"gpa\":0", "\"gpa\":1", "unaligned");
	reject("\"regions\":[", "\"regions\":7,\"x\":[", "regions");
	reject("\"cid\":7", "\"cid\":2", "vsock");
	reject("\"read_only\":true", "\"read_only\":1", "read_only");
	reject("\"id\":\"lttle-rootfs\"", "\"id\":\"an-id-longer-than-twenty-bytes\"", "id");
	reject("\"path\":\"/var", "\"path\":7,\"p\":\"/var", "path");
	reject("\"cmdline\":\"console", "\"cmdline\":\"con\\u0000sole", "NUL");
	reject("\"disks\":[", "\"disks\":{\"a\":1},\"z\":[", "disks");
	reject("\"created_wall_ns\":", "\"created_wall_ns\":-", NULL);
	reject("{", "[", NULL);
	reject("\"vcpus\":2", "\"vcpus\":2,\"vcpus\":3", NULL); /* duplicate keys */
}

static void test_garbage(void **st)
{
	(void)st;
	struct lt_vmsnap_config c;
	assert_int_equal(lt_vmsnap_config_decode("", 0, &c), -1);
	assert_int_equal(lt_vmsnap_config_decode("{", 1, &c), -1);
	assert_int_equal(lt_vmsnap_config_decode("null", 4, &c), -1);
	assert_int_equal(lt_vmsnap_config_decode("{}", 2, &c), -1);
	/* A long string is bounded. */
	size_t n = LT_VMSNAP_STR_MAX + 100;
	char *big = malloc(n + 400);
	struct lt_vmsnap_config a;
	sample(&a);
	free(a.cmdline);
	a.cmdline = malloc(n);
	memset(a.cmdline, 'x', n - 1);
	a.cmdline[n - 1] = 0;
	char *json;
	assert_int_equal(lt_vmsnap_config_encode(&a, &json), 0);
	assert_int_equal(lt_vmsnap_config_decode(json, strlen(json), &c), -1);
	assert_non_null(strstr(lt_errmsg(), "too long"));
	/* Random byte flips never crash and never half-fill. */
	lt_vmsnap_config_free(&a);
	sample(&a);
	free(json);
	assert_int_equal(lt_vmsnap_config_encode(&a, &json), 0);
	size_t len = strlen(json);
	unsigned seed = 1;
	for (int i = 0; i < 20000; i++) {
		memcpy(big, json, len);
		for (int k = 0; k < 3; k++) {
			seed = seed * 1103515245 + 12345;
			big[(seed >> 8) % len] = (char)(seed >> 20);
		}
		if (lt_vmsnap_config_decode(big, len, &c) == 0)
			lt_vmsnap_config_free(&c);
	}
	free(big);
	free(json);
	lt_vmsnap_config_free(&a);
}

static void test_triggers(void **st)
{
	(void)st;
	struct lt_trigger t;
	char buf[48];
	const char *good[] = {"first-listen", "nth-listen:3", "listen-port:8080", "userspace-ready",
			      "manual"};
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(lt_trigger_parse(good[i], &t), 0);
		assert_string_equal(lt_trigger_str(&t, buf, sizeof(buf)), good[i]);
	}
	const char *bad[] = {"", "first", "nth-listen:0", "nth-listen:x", "listen-port:0",
			     "listen-port:70000", "nth-listen:", "manual ", NULL};
	for (size_t i = 0; bad[i]; i++)
		assert_int_equal(lt_trigger_parse(bad[i], &t), -1);
	assert_int_equal(lt_trigger_parse(NULL, &t), -1);

	struct lt_guest_event ok = {.type = LT_GEV_LISTEN_AFTER, .port = 80, .code = 0};
	struct lt_guest_event err = {.type = LT_GEV_LISTEN_AFTER, .port = 81, .code = -98};
	struct lt_guest_event ready = {.type = LT_GEV_READY};
	struct lt_guest_event trig = {.type = LT_GEV_TRIGGER};
	lt_trigger_parse("first-listen", &t);
	assert_false(lt_trigger_fires(&t, &err));  /* a failed listen never fires */
	assert_false(lt_trigger_fires(&t, &ready));
	assert_true(lt_trigger_fires(&t, &ok));
	assert_false(lt_trigger_fires(&t, &ok));   /* only the first */
	lt_trigger_parse("nth-listen:3", &t);
	assert_false(lt_trigger_fires(&t, &ok));
	assert_false(lt_trigger_fires(&t, &err));
	assert_false(lt_trigger_fires(&t, &ok));
	assert_true(lt_trigger_fires(&t, &ok));
	lt_trigger_parse("listen-port:81", &t);
	assert_false(lt_trigger_fires(&t, &ok));
	assert_false(lt_trigger_fires(&t, &err));
	struct lt_guest_event ok81 = {.type = LT_GEV_LISTEN_AFTER, .port = 81, .code = 0};
	assert_true(lt_trigger_fires(&t, &ok81));
	lt_trigger_parse("userspace-ready", &t);
	assert_true(lt_trigger_fires(&t, &ready));
	lt_trigger_parse("manual", &t);
	assert_false(lt_trigger_fires(&t, &ok));
	assert_true(lt_trigger_fires(&t, &trig));
}

static void test_mem_names(void **st)
{
	(void)st;
	enum lt_vmsnap_mem m;
	assert_int_equal(lt_vmsnap_mem_parse("lazy", &m), 0);
	assert_int_equal(m, LT_VMSNAP_LAZY);
	assert_string_equal(lt_vmsnap_mem_name(LT_VMSNAP_CACHED), "cached");
	assert_int_equal(lt_vmsnap_mem_parse("fast", &m), -1);
	assert_int_equal(lt_vmsnap_mem_parse(NULL, &m), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_high_memory_layout),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_triggers),
		cmocka_unit_test(test_mem_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
