/* The snapshot-facing API on real KVM: a guest reports "trigger", the
 * event callback pauses every vCPU at that exit, on_paused saves vCPU, VM
 * and device state; a second VM "shell" (created, never booted) gets the
 * memory and state loaded and continues the guest from exactly there: it
 * reads "!restored ..." as the reply to its trigger and finishes with the
 * values it had. Skipped without /dev/kvm or the test guest. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/vmm.h"

static char guest[512];
static char serial1[64], serial2[64];
static struct lt_buf vcpu_blob, vm_blob, dev_blob;
static int saved_rc = -1;
static int events_seen;

static enum lt_vm_action on_event(struct lt_vm *vm, const struct lt_guest_event *ev, void *u)
{
	(void)vm;
	(void)u;
	events_seen++;
	return ev->type == LT_GEV_TRIGGER ? LT_VM_ACT_PAUSE : LT_VM_ACT_CONTINUE;
}

static enum lt_vm_action on_paused(struct lt_vm *vm, const struct lt_guest_event *ev, void *u)
{
	(void)u;
	assert_int_equal(ev->type, LT_GEV_TRIGGER);
	assert_true(lt_vm_is_paused(vm));
	saved_rc = 0;
	if (lt_vm_save_vcpu(vm, 0, &vcpu_blob) < 0 || lt_vm_save_vm(vm, &vm_blob) < 0 ||
	    lt_vm_save_devices(vm, &dev_blob) < 0)
		saved_rc = -1;
	return LT_VM_ACT_STOP;
}

static int setup(void **state)
{
	(void)state;
	const char *b = getenv("LTTLE_BUILD");
	snprintf(guest, sizeof(guest), "%s/guest/testguest.elf", b ? b : "build");
	return 0;
}

static char *slurp(const char *path)
{
	char *s;
	size_t n;
	if (lt_read_file(path, 1 << 20, &s, &n) < 0)
		return lt_strdup("");
	return s;
}

static void config(struct lt_vm_config *c, int serial_fd)
{
	lt_vm_config_init(c);
	c->kernel = guest;
	c->mem_bytes = 64 << 20;
	c->cmdline = "lt.t=snap lt.end=exit:9";
	c->serial_out_fd = serial_fd;
	c->vsock_uds = NULL;
}

static void test_pause_save_load_continue(void **state)
{
	(void)state;
	if (access("/dev/kvm", W_OK) != 0 || access(guest, R_OK) != 0)
		skip();
	strcpy(serial1, "/tmp/lttle-st1.XXXXXX");
	strcpy(serial2, "/tmp/lttle-st2.XXXXXX");
	int s1 = mkstemp(serial1), s2 = mkstemp(serial2);
	assert_true(s1 >= 0 && s2 >= 0);

	struct lt_vm_config c;
	config(&c, s1);
	c.on_event = on_event;
	c.on_paused = on_paused;
	struct lt_vm *vm;
	assert_int_equal(lt_vm_create(&c, &vm), 0);
	/* State cannot be loaded while running; saving before start works. */
	assert_int_equal(lt_vm_boot(vm), 0);
	assert_int_equal(lt_vm_start(vm), 0);
	struct lt_vm_exit ex;
	lt_vm_wait(vm, &ex);
	assert_int_equal(ex.reason, LT_VM_EXIT_STOPPED);
	assert_int_equal(saved_rc, 0);
	assert_int_equal(events_seen, 1);
	char *out1 = slurp(serial1);
	assert_non_null(strstr(out1, "before trigger"));
	assert_null(strstr(out1, "after trigger")); /* stopped at the trigger */
	free(out1);

	/* A shell: same config, never booted. */
	struct lt_vm_config c2;
	config(&c2, s2);
	struct lt_vm *sh;
	assert_int_equal(lt_vm_create(&c2, &sh), 0);
	size_t n1, n2;
	const struct lt_mem_region *r1 = lt_vm_mem_regions(vm, &n1);
	const struct lt_mem_region *r2 = lt_vm_mem_regions(sh, &n2);
	assert_int_equal(n1, n2);
	for (size_t i = 0; i < n1; i++) {
		assert_int_equal(r1[i].gpa, r2[i].gpa);
		assert_int_equal(r1[i].size, r2[i].size);
		memcpy(r2[i].hva, r1[i].hva, r1[i].size);
	}
	/* Corrupt or mismatched blobs are refused without side effects. */
	assert_int_equal(lt_vm_load_vcpu(sh, 0, vcpu_blob.data, vcpu_blob.len / 2), -1);
	assert_int_equal(lt_vm_load_vcpu(sh, 1, vcpu_blob.data, vcpu_blob.len), -1);
	assert_int_equal(lt_vm_load_vm(sh, dev_blob.data, dev_blob.len, 0), -1); /* wrong kind */
	assert_int_equal(lt_vm_start(sh), -1); /* neither booted nor loaded */

	assert_int_equal(lt_vm_load_vm(sh, vm_blob.data, vm_blob.len, 0), 0);
	assert_int_equal(lt_vm_load_vcpu(sh, 0, vcpu_blob.data, vcpu_blob.len), 0);
	assert_int_equal(lt_vm_load_devices(sh, dev_blob.data, dev_blob.len), 0);
	lt_vm_mark_restored(sh);
	lt_vm_set_loaded(sh);
	assert_int_equal(lt_vm_start(sh), 0);
	lt_vm_wait(sh, &ex);
	assert_true(ex.guest_exit_reported);
	assert_int_equal(ex.guest_exit_code, 9);
	char *out2 = slurp(serial2);
	assert_null(strstr(out2, "before trigger")); /* nothing replayed */
	assert_non_null(strstr(out2, "reply: !restored "));
	assert_non_null(strstr(out2, "after trigger 500500")); /* the guest's sum survived */
	free(out2);

	lt_vm_destroy(sh);
	lt_vm_destroy(vm);
	close(s1);
	close(s2);
	unlink(serial1);
	unlink(serial2);
	lt_buf_free(&vcpu_blob);
	lt_buf_free(&vm_blob);
	lt_buf_free(&dev_blob);
}

static void test_template_mismatch(void **state)
{
	(void)state;
	if (access("/dev/kvm", W_OK) != 0)
		skip();
	struct lt_vm_config c;
	config(&c, -1);
	struct lt_vm *a, *b;
	assert_int_equal(lt_vm_create(&c, &a), 0);
	c.cpu_template = LT_CPU_TEMPLATE_BASELINE;
	assert_int_equal(lt_vm_create(&c, &b), 0);
	struct lt_buf va = {0}, ma = {0};
	assert_int_equal(lt_vm_save_vcpu(a, 0, &va), 0);
	assert_int_equal(lt_vm_save_vm(a, &ma), 0);
	assert_int_equal(lt_vm_load_vcpu(b, 0, va.data, va.len), -1);
	assert_non_null(strstr(lt_errmsg(), "CPU template host, VM uses baseline"));
	assert_int_equal(lt_vm_load_vm(b, ma.data, ma.len, 0), -1);
	/* Same template: fine, including a remap of the memory region. */
	assert_int_equal(lt_vm_load_vcpu(a, 0, va.data, va.len), 0);
	size_t n;
	const struct lt_mem_region *r = lt_vm_mem_regions(a, &n);
	r[0].hva[0x200000] = 0x5a;
	assert_int_equal(lt_vm_mem_remap(a, 0, -1, 0, false), 0); /* fresh anonymous */
	assert_int_equal(r[0].hva[0x200000], 0);
	assert_int_equal(lt_vm_mem_remap(a, 7, -1, 0, false), -1);
	assert_non_null(lt_vm_gpa_to_hva(a, 0x1000, 16));
	assert_null(lt_vm_gpa_to_hva(a, (64 << 20) - 8, 16));
	lt_buf_free(&va);
	lt_buf_free(&ma);
	lt_vm_destroy(a);
	lt_vm_destroy(b);
}

/* File-backed guest RAM: MAP_SHARED lets the guest's writes reach the
 * file; MAP_PRIVATE shows the file to the guest but keeps it unchanged. */
static void run_mem_guest(enum lt_mem_backing backing, const char *file)
{
	struct lt_vm_config c;
	config(&c, -1);
	c.cmdline = "lt.t=mem lt.mem=1 lt.end=exit:0";
	c.mem_backing = backing;
	c.mem_file = file;
	struct lt_vm *vm;
	assert_int_equal(lt_vm_create(&c, &vm), 0);
	assert_int_equal(lt_vm_boot(vm), 0);
	assert_int_equal(lt_vm_start(vm), 0);
	struct lt_vm_exit ex;
	lt_vm_wait(vm, &ex);
	assert_true(ex.guest_exit_reported);
	assert_int_equal(ex.guest_exit_code, 0);
	lt_vm_destroy(vm);
}

static void test_file_backed_memory(void **state)
{
	(void)state;
	if (access("/dev/kvm", W_OK) != 0 || access(guest, R_OK) != 0)
		skip();
	char path[] = "/tmp/lttle-mem.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 << 20), 0);
	uint64_t v[2];
	run_mem_guest(LT_MEM_FILE_SHARED, path);
	assert_int_equal(pread(fd, v, sizeof(v), 16 << 20), (ssize_t)sizeof(v));
	assert_int_equal(v[0], 0x1234);
	assert_int_equal(v[1], 0x9E3779B97F4A7C15ULL ^ 0x1234);
	uint64_t mark[2] = {0xfeedfacecafebeefULL, 7};
	assert_int_equal(pwrite(fd, mark, sizeof(mark), 16 << 20), (ssize_t)sizeof(mark));
	run_mem_guest(LT_MEM_FILE_PRIVATE, path);
	assert_int_equal(pread(fd, v, sizeof(v), 16 << 20), (ssize_t)sizeof(v));
	assert_int_equal(v[0], mark[0]); /* the guest's writes stayed private */
	/* A file smaller than guest RAM is refused for MAP_PRIVATE. */
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	struct lt_vm_config c;
	config(&c, -1);
	c.mem_backing = LT_MEM_FILE_PRIVATE;
	c.mem_file = path;
	struct lt_vm *vm;
	assert_int_equal(lt_vm_create(&c, &vm), -1);
	assert_non_null(strstr(lt_errmsg(), "guest memory needs"));
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_pause_save_load_continue, setup),
		cmocka_unit_test_setup(test_template_mismatch, setup),
		cmocka_unit_test_setup(test_file_backed_memory, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
