/* Capture of a paused VM into a snapshot file, and restore of one into a
 * created VM (see snapshot.h, "VM capture / restore"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "snapshot/snapshot.h"
#include "util/util.h"
#include "vmm/vmm.h"

int lt_vmsnap_mem_parse(const char *s, enum lt_vmsnap_mem *m)
{
	if (s && !strcmp(s, "eager"))
		*m = LT_VMSNAP_EAGER;
	else if (s && !strcmp(s, "lazy"))
		*m = LT_VMSNAP_LAZY;
	else if (s && !strcmp(s, "cached"))
		*m = LT_VMSNAP_CACHED;
	else
		return lt_fail("unknown memory strategy \"%.32s\" (eager, lazy or cached)",
			       s ? s : "");
	return 0;
}

const char *lt_vmsnap_mem_name(enum lt_vmsnap_mem m)
{
	static const char *n[] = {"eager", "lazy", "cached"};
	return (unsigned)m < LT_ARRAY_LEN(n) ? n[m] : "?";
}

/* ---- capture --------------------------------------------------------------- */

static int add_state(struct lt_snap_writer *w, struct lt_vm *vm, const char *reason)
{
	struct lt_vmsnap_config c;
	char *json = NULL;
	struct lt_buf b = {0};
	int rc = -1;
	if (lt_vmsnap_config_from_vm(vm, reason, &c) < 0)
		return -1;
	if (lt_vmsnap_config_encode(&c, &json) < 0 ||
	    lt_snap_writer_add_section(w, LT_SNAP_SEC_CONFIG, 0, json, strlen(json)) < 0)
		goto out;
	for (int i = 0; i < lt_vm_vcpu_count(vm); i++) {
		b.len = 0;
		if (lt_vm_save_vcpu(vm, i, &b) < 0 ||
		    lt_snap_writer_add_section(w, LT_SNAP_SEC_VCPU, (uint32_t)i, b.data, b.len) < 0)
			goto out;
	}
	b.len = 0;
	if (lt_vm_save_vm(vm, &b) < 0 ||
	    lt_snap_writer_add_section(w, LT_SNAP_SEC_VM_STATE, 0, b.data, b.len) < 0)
		goto out;
	b.len = 0;
	if (lt_vm_save_devices(vm, &b) < 0 ||
	    lt_snap_writer_add_section(w, LT_SNAP_SEC_DEVICE_STATE, 0, b.data, b.len) < 0)
		goto out;
	rc = 0;
out:
	lt_buf_free(&b);
	free(json);
	lt_vmsnap_config_free(&c);
	return rc;
}

int lt_vmsnap_capture(struct lt_vm *vm, const char *path, const struct lt_vmsnap_capture_opts *o,
		      struct lt_vmsnap_stats *st)
{
	struct lt_vmsnap_capture_opts def = {0};
	struct lt_vmsnap_stats local;
	if (!o)
		o = &def;
	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	uint64_t t0 = lt_now_ns();
	struct lt_snap_writer_opts wo = {
		.cpu_template = lt_cpu_template_name(lt_vm_cpu_template(vm)),
		.chunk_size = o->chunk_size,
		.level = o->level,
		.threads = o->threads,
	};
	struct lt_snap_writer *w;
	if (lt_snap_writer_begin(&w, path, &wo) < 0)
		return lt_fail_ctx("snapshot %s", path);
	if (add_state(w, vm, o->reason) < 0) {
		lt_snap_writer_abort(w);
		return lt_fail_ctx("snapshot %s", path);
	}
	st->state_ns = lt_now_ns() - t0;
	size_t n;
	const struct lt_mem_region *mr = lt_vm_mem_regions(vm, &n);
	struct lt_snap_region r[LT_VMSNAP_MAX_REGIONS];
	if (n > LT_VMSNAP_MAX_REGIONS) {
		lt_snap_writer_abort(w);
		return lt_fail("snapshot %s: VM has %zu memory regions", path, n);
	}
	for (size_t i = 0; i < n; i++)
		r[i] = (struct lt_snap_region){.gpa = mr[i].gpa, .host = mr[i].hva,
					       .size = mr[i].size,
					       .flags = o->mem_fresh_anon ? LT_SNAP_REGION_ANON : 0};
	if (lt_snap_writer_add_memory(w, r, n) < 0) {
		lt_snap_writer_abort(w);
		return lt_fail_ctx("snapshot %s: memory", path);
	}
	if (lt_snap_writer_commit(w, &st->mem) < 0)
		return lt_fail_ctx("snapshot %s", path);
	st->total_ns = lt_now_ns() - t0;
	return 0;
}

/* ---- restore ----------------------------------------------------------- */

struct lt_vmsnap_restored {
	struct lt_snap_lazy *lazy;
};

struct lt_snap_lazy *lt_vmsnap_restored_lazy(struct lt_vmsnap_restored *r)
{
	return r ? r->lazy : NULL;
}

void lt_vmsnap_restored_free(struct lt_vmsnap_restored *r)
{
	if (!r)
		return;
	lt_snap_lazy_stop(r->lazy);
	free(r);
}

int lt_vmsnap_check_shape(struct lt_vm *vm, const struct lt_snap *s)
{
	const char *tmpl = lt_cpu_template_name(lt_vm_cpu_template(vm));
	if (strcmp(lt_snap_template(s), tmpl))
		return lt_fail("snapshot was taken with CPU template %s, the VM uses %s",
			       lt_snap_template(s), tmpl);
	if ((int)lt_snap_vcpu_count(s) != lt_vm_vcpu_count(vm))
		return lt_fail("snapshot has %zu vCPUs, the VM %d", lt_snap_vcpu_count(s),
			       lt_vm_vcpu_count(vm));
	size_t n, sn;
	const struct lt_mem_region *mr = lt_vm_mem_regions(vm, &n);
	const struct lt_snap_region *sr = lt_snap_regions(s, &sn);
	if (n != sn)
		return lt_fail("snapshot has %zu memory regions, the VM %zu", sn, n);
	for (size_t i = 0; i < n; i++)
		if (mr[i].gpa != sr[i].gpa || mr[i].size != sr[i].size)
			return lt_fail("snapshot memory region %zu is %llu MiB at 0x%llx, the VM's "
				       "%llu MiB at 0x%llx",
				       i, (unsigned long long)(sr[i].size >> 20),
				       (unsigned long long)sr[i].gpa,
				       (unsigned long long)(mr[i].size >> 20),
				       (unsigned long long)mr[i].gpa);
	return 0;
}

static int restore_memory(struct lt_vm *vm, struct lt_snap *s, const struct lt_vmsnap_restore_opts *o,
			  struct lt_vmsnap_restored *r)
{
	size_t n;
	const struct lt_mem_region *mr = lt_vm_mem_regions(vm, &n);
	struct lt_snap_region t[LT_VMSNAP_MAX_REGIONS];
	if (n > LT_VMSNAP_MAX_REGIONS)
		return lt_fail("VM has %zu memory regions", n);
	for (size_t i = 0; i < n; i++)
		t[i] = (struct lt_snap_region){.gpa = mr[i].gpa, .host = mr[i].hva,
					       .size = mr[i].size};
	switch (o->mem) {
	case LT_VMSNAP_EAGER:
		/* Fresh anonymous memory about to be written in bulk: huge pages
		 * turn ~10k page faults per 40 MiB into ~20. Advisory only. */
		for (size_t i = 0; i < n; i++)
			(void)madvise(t[i].host, t[i].size, MADV_HUGEPAGE);
		return lt_snap_restore_eager(s, t, n, o->threads);
	case LT_VMSNAP_LAZY: {
		struct lt_snap_lazy_opts lo = {
			.no_prefetch = o->no_prefetch,
			.fill_all = o->lazy_fill_all,
			.handlers = lt_vm_vcpu_count(vm),
			.on_error = o->on_lazy_error,
			.arg = o->arg,
		};
		return lt_snap_lazy_start(&r->lazy, s, t, n, &lo);
	}
	case LT_VMSNAP_CACHED: {
		char *dir = o->cache_dir ? lt_strdup(o->cache_dir)
					 : lt_path_join(lt_home(), "cache/memory");
		char *path = NULL;
		int rc = dir ? lt_snap_cache_prepare(s, dir, o->threads, &path) : -1;
		if (rc == 0)
			rc = lt_snap_cache_map(s, path, t, n);
		free(path);
		free(dir);
		return rc;
	}
	}
	return lt_fail("unknown memory strategy %d", (int)o->mem);
}

/* LTTLE_TRACE=1: one stderr line per restore step, microseconds since
 * the restore began (where a restore's time goes, without strace's own
 * cost). */
static void trace_step(uint64_t t0, const char *step)
{
	static int on = -1;
	if (on < 0) {
		const char *e = getenv("LTTLE_TRACE");
		on = e && *e && strcmp(e, "0");
	}
	if (on)
		fprintf(stderr, "lttle trace: restore +%llu us %s\n",
			(unsigned long long)((lt_now_ns() - t0) / 1000), step);
}

static int restore_state(struct lt_vm *vm, struct lt_snap *s, uint64_t adjust_ns, uint64_t t0)
{
	const void *p;
	size_t len;
	if (lt_snap_section(s, LT_SNAP_SEC_VM_STATE, 0, &p, &len) < 0 ||
	    lt_vm_load_vm(vm, p, len, adjust_ns) < 0)
		return lt_fail_ctx("VM state");
	trace_step(t0, "VM state (irqchip, PIT, clock)");
	for (int i = 0; i < lt_vm_vcpu_count(vm); i++)
		if (lt_snap_section(s, LT_SNAP_SEC_VCPU, (uint32_t)i, &p, &len) < 0 ||
		    lt_vm_load_vcpu(vm, i, p, len) < 0)
			return lt_fail_ctx("vCPU %d state", i);
	trace_step(t0, "vCPU state");
	if (lt_snap_section(s, LT_SNAP_SEC_DEVICE_STATE, 0, &p, &len) < 0 ||
	    lt_vm_load_devices(vm, p, len) < 0)
		return lt_fail_ctx("device state");
	trace_step(t0, "device state");
	return 0;
}

/* Wall time the snapshot slept, from the config's capture time (0 if the
 * clock went backwards or the config lacks it). */
static uint64_t slept_ns(const struct lt_snap *s)
{
	const char *json = lt_snap_config(s);
	struct lt_vmsnap_config c;
	if (!json || lt_vmsnap_config_decode(json, strlen(json), &c) < 0) {
		lt_clear_error();
		return 0;
	}
	uint64_t now = lt_wall_ns(), then = c.created_wall_ns;
	lt_vmsnap_config_free(&c);
	return then && now > then ? now - then : 0;
}

int lt_vmsnap_restore(struct lt_vm *vm, struct lt_snap *s, const struct lt_vmsnap_restore_opts *o,
		      struct lt_vmsnap_restored **out, struct lt_vmsnap_restore_stats *st)
{
	struct lt_vmsnap_restore_opts def = {0};
	struct lt_vmsnap_restore_stats local;
	if (!o)
		o = &def;
	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	*out = NULL;
	if (lt_vmsnap_check_shape(vm, s) < 0)
		return -1;
	struct lt_vmsnap_restored *r = lt_calloc(1, sizeof(*r));
	if (!r)
		return -1;
	uint64_t t0 = lt_now_ns();
	if (restore_memory(vm, s, o, r) < 0) {
		lt_vmsnap_restored_free(r);
		return lt_fail_ctx("memory (%s)", lt_vmsnap_mem_name(o->mem));
	}
	uint64_t t1 = lt_now_ns();
	trace_step(t0, lt_vmsnap_mem_name(o->mem));
	st->mem_ns = t1 - t0;
	st->clock_adjust_ns = slept_ns(s);
	if (restore_state(vm, s, st->clock_adjust_ns, t0) < 0) {
		lt_vmsnap_restored_free(r);
		return -1;
	}
	lt_vm_mark_restored(vm);
	lt_vm_set_loaded(vm);
	st->state_ns = lt_now_ns() - t1;
	*out = r;
	return 0;
}
