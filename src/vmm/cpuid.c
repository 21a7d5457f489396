/* CPUID: KVM_GET_SUPPORTED_CPUID filtered by a template, plus per-vCPU
 * APIC ids and topology (1 package, N cores, 1 thread each).
 *
 * Templates (the id is part of VM state; snapshots record it):
 *   host      everything KVM supports on this host.
 *   baseline  roughly x86-64-v3 (Haswell / Zen 1): SSE..SSE4.2, AVX, AVX2,
 *             FMA, BMI1/2, MOVBE, AES, PCLMUL, RDRAND, RDSEED, ADX, F16C,
 *             XSAVE with x87/SSE/AVX state only. Hidden: AVX-512 (all),
 *             AMX, AVX-VNNI and leaf 7.1, TSX (HLE/RTM), PKU/OSPKE, SGX, PT,
 *             MPX, RDT, SHA, GFNI/VAES/VPCLMULQDQ, LA57, UMIP, RDPID,
 *             WAITPKG, CET, MOVDIRI/MOVDIR64B, SERIALIZE, FSRM, XSAVES
 *             and supervisor xstate, ARCH_CAPABILITIES, CORE_CAPABILITIES,
 *             VMX/SVM, MONITOR, performance/thermal leaves, SEV.
 * A snapshot taken under "baseline" restores on any host whose "host" set
 * covers it (same vendor). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/vmm_int.h"

int lt_cpu_template_parse(const char *s, enum lt_cpu_template *out)
{
	if (!strcmp(s, "host"))
		*out = LT_CPU_TEMPLATE_HOST;
	else if (!strcmp(s, "baseline"))
		*out = LT_CPU_TEMPLATE_BASELINE;
	else
		return lt_fail("unknown CPU template '%s' (host or baseline)", s);
	return 0;
}

const char *lt_cpu_template_name(enum lt_cpu_template t)
{
	return t == LT_CPU_TEMPLATE_BASELINE ? "baseline" : "host";
}

#define BIT(n) (1U << (n))

void lt_cpuid_apply_template(struct kvm_cpuid_entry2 *e, enum lt_cpu_template t)
{
	if (e->function == 1)
		e->ecx |= BIT(31); /* hypervisor, under every template */
	if (t != LT_CPU_TEMPLATE_BASELINE)
		return;
	switch (e->function) {
	case 1:
		e->ecx &= BIT(0) | BIT(1) | BIT(9) | BIT(12) | BIT(13) | BIT(17) | BIT(19) |
			  BIT(20) | BIT(21) | BIT(22) | BIT(23) | BIT(24) | BIT(25) | BIT(26) |
			  BIT(27) | BIT(28) | BIT(29) | BIT(30) | BIT(31);
		break;
	case 6:
		e->eax &= BIT(2); /* ARAT only */
		e->ebx = e->ecx = e->edx = 0;
		break;
	case 7:
		if (e->index == 0) {
			e->eax = 0; /* no subleaf 1 */
			e->ebx &= BIT(0) | BIT(1) | BIT(3) | BIT(5) | BIT(6) | BIT(7) | BIT(8) |
				  BIT(9) | BIT(10) | BIT(13) | BIT(18) | BIT(19) | BIT(20) | BIT(23);
			e->ecx = 0;
			e->edx &= BIT(10) | BIT(26) | BIT(27) | BIT(28) | BIT(31);
		} else {
			e->eax = e->ebx = e->ecx = e->edx = 0;
		}
		break;
	case 0xd:
		if (e->index == 0) {
			e->eax &= 0x7; /* x87, SSE, AVX */
			e->edx = 0;
			e->ecx = 512 + 64 + 256;
		} else if (e->index == 1) {
			e->eax &= BIT(0) | BIT(1) | BIT(2);
			e->ecx = e->edx = 0;
		} else if (e->index > 2) {
			e->eax = e->ebx = e->ecx = e->edx = 0;
		}
		break;
	case 0xf: case 0x10: case 0x12: case 0x14: case 0x19: case 0x1d: case 0x1e:
	case 0x24: case 0x8000001f:
		e->eax = e->ebx = e->ecx = e->edx = 0;
		break;
	case 0x80000001:
		e->ecx &= BIT(0) | BIT(1) | BIT(4) | BIT(5) | BIT(6) | BIT(7) | BIT(8);
		break;
	default:
		break;
	}
}

int lt_cpuid_build(int kvm_fd, enum lt_cpu_template t, struct kvm_cpuid2 **out)
{
	for (int nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c =
			lt_calloc(1, sizeof(*c) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
		if (!c)
			return -1;
		c->nent = (uint32_t)nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
			int e = errno;
			free(c);
			if (e == E2BIG)
				continue;
			errno = e;
			return lt_fail_errno("KVM_GET_SUPPORTED_CPUID");
		}
		for (uint32_t i = 0; i < c->nent; i++)
			lt_cpuid_apply_template(&c->entries[i], t);
		*out = c;
		return 0;
	}
	return lt_fail("KVM_GET_SUPPORTED_CPUID: too many entries");
}

static uint32_t bits_for(int n)
{
	uint32_t b = 0;
	while ((1 << b) < n)
		b++;
	return b;
}

struct kvm_cpuid2 *lt_cpuid_for_vcpu(const struct kvm_cpuid2 *base, int idx, int n)
{
	size_t sz = sizeof(*base) + base->nent * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = lt_malloc(sz);
	if (!c)
		return NULL;
	memcpy(c, base, sz);
	uint32_t apic = (uint32_t)idx;
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffffU) | (apic << 24) | ((uint32_t)n << 16);
			if (n > 1)
				e->edx |= BIT(28);
			break;
		case 4:
			if ((e->eax & 0x1f) == 0)
				break; /* no cache at this index */
			e->eax &= 0x3fffU;
			e->eax |= (uint32_t)(n - 1) << 26;
			if (((e->eax >> 5) & 7) == 3)
				e->eax |= (uint32_t)(n - 1) << 14;
			break;
		case 0xb:
		case 0x1f:
			e->edx = apic;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1U << 8);
			} else if (e->index == 1) {
				e->eax = bits_for(n);
				e->ebx = (uint32_t)n;
				e->ecx = (2U << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index & 0xff;
			}
			break;
		case 0x80000008:
			e->ecx = (e->ecx & ~0xf0ffU) | ((uint32_t)(n - 1) & 0xff) |
				 (bits_for(n) << 12);
			break;
		case 0x8000001e:
			e->eax = apic;
			e->ebx = (e->ebx & ~0xffU) | apic;
			break;
		}
	}
	return c;
}
