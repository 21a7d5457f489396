/* The VM options `lttle run` and lttle-vmm share: one parser for both
 * (vmm.h, "command-line options"). */
#include "vmm/vmm.h"

static int parse_u64_in(const char *arg, uint64_t lo, uint64_t hi, uint64_t *v)
{
	return lt_parse_u64(arg, v) < 0 || *v < lo || *v > hi ? -1 : 0;
}

int lt_vm_cli_option(int id, const char *arg, struct lt_vm_config *cfg)
{
	uint64_t v;
	switch (id) {
	case LT_VM_OPT_KERNEL: cfg->kernel = arg; return 1;
	case LT_VM_OPT_INITRD: cfg->initrd = arg; return 1;
	case LT_VM_OPT_VSOCK: cfg->vsock_uds = arg; return 1;
	case LT_VM_OPT_TAP: cfg->tap = arg; return 1;
	case LT_VM_OPT_CONTROL: cfg->control = arg; return 1;
	case LT_VM_OPT_NO_IOEVENTFD: cfg->no_ioeventfd = true; return 1;
	case LT_VM_OPT_NO_COALESCE: cfg->no_coalesced_io = true; return 1;
	case LT_VM_OPT_MEM:
		if (parse_u64_in(arg, 4, 1ULL << 20, &v) < 0)
			return lt_fail("--mem takes MiB (4..1048576), not '%s'", arg);
		cfg->mem_bytes = v << 20;
		return 1;
	case LT_VM_OPT_CPUS:
		if (parse_u64_in(arg, 1, LT_VM_MAX_VCPUS, &v) < 0)
			return lt_fail("--cpus takes 1..%d, not '%s'", LT_VM_MAX_VCPUS, arg);
		cfg->vcpus = (int)v;
		return 1;
	case LT_VM_OPT_VSOCK_CID:
		if (parse_u64_in(arg, 3, 0xffffffffULL, &v) < 0)
			return lt_fail("--vsock-cid takes 3..2^32-1");
		cfg->vsock_cid = (uint32_t)v;
		return 1;
	case LT_VM_OPT_TEMPLATE:
		return lt_cpu_template_parse(arg, &cfg->cpu_template) < 0 ? -1 : 1;
	default:
		return 0;
	}
}
