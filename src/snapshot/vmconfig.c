/* The VM config section of a VM snapshot (JSON) and capture triggers.
 *
 * {"version":1, "mem_bytes":N, "vcpus":N, "cpu_template":"host",
 *  "regions":[{"gpa":N,"size":N},...], "kernel":"...", "cmdline":"...",
 *  "disks":[{"path":"...","overlay":"...","read_only":true,"id":"...",
 *            "size":N,"mtime_ns":N}],
 *  "vsock":{"cid":N} | null, "tap":"..." | null,
 *  "created_wall_ns":N, "reason":"..."}
 * The text comes from a snapshot file: every field is checked. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot/snapshot.h"
#include "util/util.h"
#include "vmm/vmm.h"

/* ---- triggers ------------------------------------------------------------ */

int lt_trigger_parse(const char *s, struct lt_trigger *t)
{
	memset(t, 0, sizeof(*t));
	uint64_t v;
	if (!s)
		return lt_fail("no trigger given");
	if (!strcmp(s, "first-listen")) {
		t->kind = LT_TRIGGER_FIRST_LISTEN;
	} else if (!strcmp(s, "userspace-ready") || !strcmp(s, "ready")) {
		t->kind = LT_TRIGGER_READY;
	} else if (!strcmp(s, "manual")) {
		t->kind = LT_TRIGGER_MANUAL;
	} else if (!strncmp(s, "nth-listen:", 11)) {
		if (lt_parse_u64(s + 11, &v) < 0 || v < 1 || v > 1000000)
			return lt_fail("trigger %s: N must be 1..1000000", s);
		t->kind = LT_TRIGGER_NTH_LISTEN;
		t->n = (uint32_t)v;
	} else if (!strncmp(s, "listen-port:", 12)) {
		if (lt_parse_u64(s + 12, &v) < 0 || v < 1 || v > 65535)
			return lt_fail("trigger %s: P must be a port 1..65535", s);
		t->kind = LT_TRIGGER_LISTEN_PORT;
		t->port = (uint16_t)v;
	} else {
		return lt_fail("unknown trigger \"%.64s\" (expected first-listen, nth-listen:N, "
			       "listen-port:P, userspace-ready or manual)",
			       s);
	}
	return 0;
}

const char *lt_trigger_str(const struct lt_trigger *t, char *buf, size_t len)
{
	switch (t->kind) {
	case LT_TRIGGER_FIRST_LISTEN: snprintf(buf, len, "first-listen"); break;
	case LT_TRIGGER_NTH_LISTEN: snprintf(buf, len, "nth-listen:%u", t->n); break;
	case LT_TRIGGER_LISTEN_PORT: snprintf(buf, len, "listen-port:%u", t->port); break;
	case LT_TRIGGER_READY: snprintf(buf, len, "userspace-ready"); break;
	case LT_TRIGGER_MANUAL: snprintf(buf, len, "manual"); break;
	default: snprintf(buf, len, "none"); break;
	}
	return buf;
}

bool lt_trigger_fires(struct lt_trigger *t, const struct lt_guest_event *ev)
{
	bool listened = ev->type == LT_GEV_LISTEN_AFTER && ev->code == 0;
	if (listened)
		t->listens++;
	switch (t->kind) {
	case LT_TRIGGER_FIRST_LISTEN: return listened && t->listens == 1;
	case LT_TRIGGER_NTH_LISTEN: return listened && t->listens == t->n;
	case LT_TRIGGER_LISTEN_PORT: return listened && ev->port == t->port;
	case LT_TRIGGER_READY: return ev->type == LT_GEV_READY;
	case LT_TRIGGER_MANUAL: return ev->type == LT_GEV_TRIGGER;
	default: return false;
	}
}

/* ---- config from a VM ---------------------------------------------------- */

static char *dup_opt(const char *s)
{
	return s ? lt_strdup(s) : NULL;
}

int lt_vmsnap_config_from_vm(struct lt_vm *vm, const char *reason, struct lt_vmsnap_config *c)
{
	memset(c, 0, sizeof(*c));
	const struct lt_vm_config *cfg = lt_vm_get_config(vm);
	c->version = LT_VMSNAP_CONFIG_VERSION;
	c->mem_bytes = cfg->mem_bytes;
	c->vcpus = lt_vm_vcpu_count(vm);
	snprintf(c->cpu_template, sizeof(c->cpu_template), "%s",
		 lt_cpu_template_name(cfg->cpu_template));
	size_t n;
	const struct lt_mem_region *r = lt_vm_mem_regions(vm, &n);
	if (n > LT_VMSNAP_MAX_REGIONS)
		return lt_fail("VM has %zu memory regions", n);
	for (size_t i = 0; i < n; i++) {
		c->regions[i].gpa = r[i].gpa;
		c->regions[i].size = r[i].size;
	}
	c->nregions = (int)n;
	c->kernel = dup_opt(cfg->kernel);
	c->cmdline = lt_strdup(lt_vm_cmdline(vm));
	c->reason = dup_opt(reason);
	c->tap = dup_opt(cfg->tap);
	c->vsock = cfg->vsock_uds != NULL;
	c->vsock_cid = cfg->vsock_cid;
	c->created_wall_ns = lt_wall_ns();
	for (int i = 0; i < cfg->ndisks && i < LT_VMSNAP_MAX_DISKS; i++) {
		struct lt_vmsnap_disk *d = &c->disks[i];
		d->path = dup_opt(cfg->disks[i].path);
		d->overlay = dup_opt(cfg->disks[i].overlay);
		d->read_only = cfg->disks[i].read_only;
		snprintf(d->id, sizeof(d->id), "%s", cfg->disks[i].id);
		struct stat st;
		if (d->path && stat(d->path, &st) == 0) {
			d->size = (uint64_t)st.st_size;
			d->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL +
				      (uint64_t)st.st_mtim.tv_nsec;
		}
		c->ndisks++;
	}
	if (!c->cmdline || (cfg->kernel && !c->kernel) || (reason && !c->reason)) {
		lt_vmsnap_config_free(c);
		return -1;
	}
	return 0;
}

void lt_vmsnap_config_free(struct lt_vmsnap_config *c)
{
	if (!c)
		return;
	free(c->kernel);
	free(c->cmdline);
	free(c->tap);
	free(c->reason);
	for (int i = 0; i < c->ndisks; i++) {
		free(c->disks[i].path);
		free(c->disks[i].overlay);
	}
	memset(c, 0, sizeof(*c));
}

/* ---- encode ------------------------------------------------------------ */

static json_t *jstr_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

int lt_vmsnap_config_encode(const struct lt_vmsnap_config *c, char **out)
{
	*out = NULL;
	json_t *o = json_object(), *regions = json_array(), *disks = json_array();
	if (!o || !regions || !disks) {
		json_decref(o);
		json_decref(regions);
		json_decref(disks);
		return lt_fail("VM config: out of memory");
	}
	json_object_set_new(o, "version", json_integer(c->version));
	json_object_set_new(o, "mem_bytes", json_integer((json_int_t)c->mem_bytes));
	json_object_set_new(o, "vcpus", json_integer(c->vcpus));
	json_object_set_new(o, "cpu_template", json_string(c->cpu_template));
	for (int i = 0; i < c->nregions; i++)
		json_array_append_new(regions,
				      json_pack("{s:I,s:I}", "gpa", (json_int_t)c->regions[i].gpa,
						"size", (json_int_t)c->regions[i].size));
	json_object_set_new(o, "regions", regions);
	json_object_set_new(o, "kernel", jstr_or_null(c->kernel));
	json_object_set_new(o, "cmdline", jstr_or_null(c->cmdline));
	for (int i = 0; i < c->ndisks; i++) {
		const struct lt_vmsnap_disk *d = &c->disks[i];
		json_t *j = json_object();
		if (!j)
			continue;
		json_object_set_new(j, "path", jstr_or_null(d->path));
		json_object_set_new(j, "overlay", jstr_or_null(d->overlay));
		json_object_set_new(j, "read_only", json_boolean(d->read_only));
		json_object_set_new(j, "id", json_string(d->id));
		json_object_set_new(j, "size", json_integer((json_int_t)d->size));
		json_object_set_new(j, "mtime_ns", json_integer((json_int_t)d->mtime_ns));
		json_array_append_new(disks, j);
	}
	json_object_set_new(o, "disks", disks);
	json_object_set_new(o, "vsock",
			    c->vsock ? json_pack("{s:I}", "cid", (json_int_t)c->vsock_cid)
				     : json_null());
	json_object_set_new(o, "tap", jstr_or_null(c->tap));
	json_object_set_new(o, "created_wall_ns", json_integer((json_int_t)c->created_wall_ns));
	json_object_set_new(o, "reason", jstr_or_null(c->reason));
	*out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return *out ? 0 : lt_fail("VM config: cannot encode JSON");
}

/* ---- decode ------------------------------------------------------------ */

static int get_u64(json_t *o, const char *key, uint64_t min, uint64_t max, uint64_t *v)
{
	json_t *j = json_object_get(o, key);
	if (!json_is_integer(j))
		return lt_fail("VM config: \"%s\" missing or not an integer", key);
	json_int_t x = json_integer_value(j);
	if (x < 0 || (uint64_t)x < min || (uint64_t)x > max)
		return lt_fail("VM config: \"%s\" = %lld out of range", key, (long long)x);
	*v = (uint64_t)x;
	return 0;
}

/* NULL stays NULL; a string is bounded and copied. */
static int get_str(json_t *o, const char *key, bool required, char **out)
{
	json_t *j = json_object_get(o, key);
	*out = NULL;
	if (!j || json_is_null(j))
		return required ? lt_fail("VM config: \"%s\" missing", key) : 0;
	if (!json_is_string(j))
		return lt_fail("VM config: \"%s\" is not a string", key);
	size_t n = json_string_length(j);
	const char *s = json_string_value(j);
	if (n > LT_VMSNAP_STR_MAX || strlen(s) != n)
		return lt_fail("VM config: \"%s\" too long or holds NUL bytes", key);
	*out = lt_strdup(s);
	return *out ? 0 : -1;
}

static int decode_regions(json_t *o, struct lt_vmsnap_config *c)
{
	json_t *a = json_object_get(o, "regions");
	if (!json_is_array(a) || json_array_size(a) < 1 ||
	    json_array_size(a) > LT_VMSNAP_MAX_REGIONS)
		return lt_fail("VM config: \"regions\" must be an array of 1..%d",
			       LT_VMSNAP_MAX_REGIONS);
	uint64_t total = 0, end = 0;
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *r = json_array_get(a, i);
		uint64_t gpa, size;
		if (!json_is_object(r))
			return lt_fail("VM config: region %zu is not an object", i);
		if (get_u64(r, "gpa", 0, 1ULL << 52, &gpa) < 0 ||
		    get_u64(r, "size", 4096, 1ULL << 52, &size) < 0)
			return lt_fail_ctx("region %zu", i);
		if (gpa % 4096 || size % 4096 || gpa < end)
			return lt_fail("VM config: region %zu unaligned or out of order", i);
		c->regions[i].gpa = gpa;
		c->regions[i].size = size;
		end = gpa + size;
		total += size;
	}
	c->nregions = (int)json_array_size(a);
	if (total != c->mem_bytes)
		return lt_fail("VM config: regions hold %llu bytes, mem_bytes says %llu",
			       (unsigned long long)total, (unsigned long long)c->mem_bytes);
	/* The VMM's fixed layout: RAM at 0 up to the MMIO hole, the rest at 4 GiB. */
	uint64_t low = c->mem_bytes < LT_VM_MMIO_START ? c->mem_bytes : LT_VM_MMIO_START;
	if (c->regions[0].gpa != 0 || c->regions[0].size != low ||
	    (c->nregions == 2 && c->regions[1].gpa != LT_VM_HIGH_START))
		return lt_fail("VM config: memory layout does not match this VMM's");
	return 0;
}

static int decode_disk(json_t *j, struct lt_vmsnap_disk *d, size_t i)
{
	if (!json_is_object(j))
		return lt_fail("VM config: disk %zu is not an object", i);
	json_t *ro = json_object_get(j, "read_only");
	if (!json_is_boolean(ro))
		return lt_fail("VM config: disk %zu: \"read_only\" must be a boolean", i);
	d->read_only = json_is_true(ro);
	char *id = NULL;
	if (get_str(j, "path", true, &d->path) < 0 || get_str(j, "overlay", false, &d->overlay) < 0 ||
	    get_str(j, "id", false, &id) < 0 || get_u64(j, "size", 0, UINT64_MAX >> 1, &d->size) < 0 ||
	    get_u64(j, "mtime_ns", 0, UINT64_MAX >> 1, &d->mtime_ns) < 0) {
		free(id);
		return lt_fail_ctx("disk %zu", i);
	}
	int rc = 0;
	if (id && strlen(id) >= sizeof(d->id))
		rc = lt_fail("VM config: disk %zu: id longer than 20 bytes", i);
	else if (id)
		memcpy(d->id, id, strlen(id) + 1);
	free(id);
	return rc;
}

static int decode(json_t *o, struct lt_vmsnap_config *c)
{
	uint64_t v;
	if (!json_is_object(o))
		return lt_fail("VM config is not a JSON object");
	if (get_u64(o, "version", 1, 1000, &v) < 0)
		return -1;
	if (v != LT_VMSNAP_CONFIG_VERSION)
		return lt_fail("VM config version %llu is not supported (this lttle reads %d)",
			       (unsigned long long)v, LT_VMSNAP_CONFIG_VERSION);
	c->version = (uint32_t)v;
	if (get_u64(o, "mem_bytes", 4ULL << 20, 1ULL << 40, &c->mem_bytes) < 0)
		return -1;
	if (c->mem_bytes % 4096)
		return lt_fail("VM config: mem_bytes not page aligned");
	if (get_u64(o, "vcpus", 1, LT_VM_MAX_VCPUS, &v) < 0)
		return -1;
	c->vcpus = (int)v;
	json_t *t = json_object_get(o, "cpu_template");
	enum lt_cpu_template tmpl;
	if (!json_is_string(t) || lt_cpu_template_parse(json_string_value(t), &tmpl) < 0)
		return lt_fail("VM config: \"cpu_template\" missing or unknown");
	snprintf(c->cpu_template, sizeof(c->cpu_template), "%s", lt_cpu_template_name(tmpl));
	if (decode_regions(o, c) < 0)
		return -1;
	if (get_str(o, "kernel", false, &c->kernel) < 0 ||
	    get_str(o, "cmdline", false, &c->cmdline) < 0 ||
	    get_str(o, "tap", false, &c->tap) < 0 || get_str(o, "reason", false, &c->reason) < 0)
		return -1;
	if (get_u64(o, "created_wall_ns", 0, UINT64_MAX >> 1, &c->created_wall_ns) < 0)
		return -1;
	json_t *vs = json_object_get(o, "vsock");
	if (vs && !json_is_null(vs)) {
		if (!json_is_object(vs) || get_u64(vs, "cid", 3, 0xffffffffULL, &v) < 0)
			return lt_fail("VM config: \"vsock\" must be null or {\"cid\": 3..2^32-1}");
		c->vsock = true;
		c->vsock_cid = (uint32_t)v;
	}
	json_t *disks = json_object_get(o, "disks");
	if (disks && !json_is_array(disks))
		return lt_fail("VM config: \"disks\" is not an array");
	if (json_array_size(disks) > LT_VMSNAP_MAX_DISKS)
		return lt_fail("VM config: more than %d disks", LT_VMSNAP_MAX_DISKS);
	for (size_t i = 0; i < json_array_size(disks); i++) {
		c->ndisks = (int)i + 1; /* freed even if half decoded */
		if (decode_disk(json_array_get(disks, i), &c->disks[i], i) < 0)
			return -1;
	}
	return 0;
}

int lt_vmsnap_config_decode(const char *text, size_t len, struct lt_vmsnap_config *c)
{
	memset(c, 0, sizeof(*c));
	if (!text || len == 0 || len > LT_SNAP_MAX_BLOB)
		return lt_fail("VM config: empty or too large");
	json_error_t err;
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	if (!o)
		return lt_fail("VM config is not valid JSON: %s (at %d)", err.text, err.position);
	int rc = decode(o, c);
	json_decref(o);
	if (rc < 0)
		lt_vmsnap_config_free(c);
	return rc;
}

int lt_vmsnap_config_apply(const struct lt_vmsnap_config *c, struct lt_vm_config *cfg)
{
	cfg->mem_bytes = c->mem_bytes;
	cfg->vcpus = c->vcpus;
	if (lt_cpu_template_parse(c->cpu_template, &cfg->cpu_template) < 0)
		return -1;
	cfg->mem_backing = LT_MEM_ANON;
	cfg->kernel = c->kernel;
	cfg->cmdline = NULL; /* a restore never boots */
	cfg->tap = c->tap;
	cfg->vsock_cid = c->vsock_cid ? c->vsock_cid : 3;
	cfg->ndisks = c->ndisks;
	for (int i = 0; i < c->ndisks; i++) {
		cfg->disks[i].path = c->disks[i].path;
		cfg->disks[i].overlay = c->disks[i].overlay;
		cfg->disks[i].read_only = c->disks[i].read_only;
		snprintf(cfg->disks[i].id, sizeof(cfg->disks[i].id), "%s", c->disks[i].id);
	}
	return 0;
}
