/* Linux x86-64 boot: loaders and boot structures (see boot.h). Kernel
 * images are untrusted input: every offset and size is checked before use. */
#include <elf.h>
#include <string.h>

#include "vmm/boot.h"

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Low RAM end: the size of the region starting at gpa 0. */
static uint64_t low_ram_end(const struct lt_gmem *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->r[i].gpa == 0)
			return m->r[i].size;
	return 0;
}

int lt_bzimage_parse(const uint8_t *img, size_t n, struct lt_kernel *k,
		     uint64_t *pm_offset, uint64_t *pm_size)
{
	memset(k, 0, sizeof(*k));
	if (n < LT_BP_HDR_END)
		return lt_fail("bzImage: file too small (%zu bytes)", n);
	if (rd16(img + LT_BP_BOOT_FLAG) != 0xAA55 || rd32(img + LT_BP_HEADER) != LT_HDRS_MAGIC)
		return lt_fail("bzImage: no 'HdrS' setup header");
	uint16_t ver = rd16(img + LT_BP_VERSION);
	if (ver < 0x020c)
		return lt_fail("bzImage: boot protocol %u.%02u too old (need 2.12 for 64-bit entry)",
			       ver >> 8, ver & 0xff);
	if (!(rd16(img + LT_BP_XLOADFLAGS) & 1))
		return lt_fail("bzImage: kernel has no 64-bit entry point (XLF_KERNEL_64)");
	if (!(img[LT_BP_LOADFLAGS] & 1))
		return lt_fail("bzImage: not a bzImage (LOADED_HIGH clear)");
	uint32_t sects = img[LT_BP_SETUP_SECTS] ? img[LT_BP_SETUP_SECTS] : 4;
	uint64_t off = (uint64_t)(sects + 1) * 512;
	if (off >= n)
		return lt_fail("bzImage: setup (%u sectors) covers the whole file", sects);
	uint32_t hlen = 0x202 + img[0x201] - LT_BP_HDR;
	if (hlen > sizeof(k->hdr))
		hlen = sizeof(k->hdr);
	memcpy(k->hdr, img + LT_BP_HDR, hlen);
	k->hdr_len = hlen;
	k->is_bzimage = 1;
	k->initrd_addr_max = rd32(img + LT_BP_INITRD_ADDR_MAX);
	k->cmdline_size = rd32(img + LT_BP_CMDLINE_SIZE);
	*pm_offset = off;
	*pm_size = n - off;
	return 0;
}

static int load_bzimage(const struct lt_gmem *m, const uint8_t *img, size_t n, struct lt_kernel *k)
{
	uint64_t off, size;
	if (lt_bzimage_parse(img, n, k, &off, &size) < 0)
		return -1;
	uint64_t init = rd32(img + LT_BP_INIT_SIZE);
	uint64_t need = size > init ? size : init;
	uint64_t end = low_ram_end(m);
	if (end < LT_BOOT_KERNEL_MIN || need > end - LT_BOOT_KERNEL_MIN)
		return lt_fail("bzImage: kernel needs %llu bytes at 1 MiB, guest RAM too small",
			       (unsigned long long)need);
	if (lt_gmem_write(m, LT_BOOT_KERNEL_MIN, img + off, size) < 0)
		return lt_fail("bzImage: cannot place the kernel at 1 MiB");
	k->entry = LT_BOOT_KERNEL_MIN + 0x200;
	k->end = LT_BOOT_KERNEL_MIN + need;
	return 0;
}

int lt_elf_load(const struct lt_gmem *m, const uint8_t *img, size_t n, struct lt_kernel *k)
{
	memset(k, 0, sizeof(*k));
	if (n < SELFMAG || memcmp(img, ELFMAG, SELFMAG))
		return lt_fail("ELF: bad magic");
	if (n < sizeof(Elf64_Ehdr))
		return lt_fail("ELF: file too small (%zu bytes)", n);
	Elf64_Ehdr eh;
	memcpy(&eh, img, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return lt_fail("ELF: not a little-endian ELF64 file");
	if (eh.e_machine != EM_X86_64)
		return lt_fail("ELF: machine %u is not x86-64", eh.e_machine);
	if (eh.e_type != ET_EXEC)
		return lt_fail("ELF: not an executable (type %u)", eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 128)
		return lt_fail("ELF: bad program header table (%u x %u)", eh.e_phnum, eh.e_phentsize);
	if (eh.e_phoff > n || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > n - eh.e_phoff)
		return lt_fail("ELF: program headers beyond the end of the file");
	uint64_t end = 0;
	int loads = 0, entry_ok = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, img + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD)
			continue;
		if (ph.p_filesz > ph.p_memsz)
			return lt_fail("ELF: segment %u: file size exceeds memory size", i);
		if (ph.p_offset > n || ph.p_filesz > n - ph.p_offset)
			return lt_fail("ELF: segment %u: data beyond the end of the file", i);
		if (ph.p_paddr < LT_BOOT_KERNEL_MIN)
			return lt_fail("ELF: segment %u: physical address 0x%llx below 1 MiB", i,
				       (unsigned long long)ph.p_paddr);
		if (ph.p_paddr + ph.p_memsz < ph.p_paddr)
			return lt_fail("ELF: segment %u: address overflow", i);
		uint8_t *dst = lt_gmem_ptr(m, ph.p_paddr, ph.p_memsz);
		if (!dst)
			return lt_fail("ELF: segment %u [0x%llx, +0x%llx) is outside guest RAM", i,
				       (unsigned long long)ph.p_paddr,
				       (unsigned long long)ph.p_memsz);
		memcpy(dst, img + ph.p_offset, ph.p_filesz);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		if (ph.p_paddr + ph.p_memsz > end)
			end = ph.p_paddr + ph.p_memsz;
		/* vmlinux's e_entry is a physical address inside a segment. */
		if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_memsz)
			entry_ok = 1;
		loads++;
	}
	if (!loads)
		return lt_fail("ELF: no PT_LOAD segments");
	if (!entry_ok)
		return lt_fail("ELF: entry point 0x%llx is not inside a loaded segment",
			       (unsigned long long)eh.e_entry);
	k->entry = eh.e_entry;
	k->end = end;
	k->initrd_addr_max = 0;
	return 0;
}

int lt_kernel_load(const struct lt_gmem *m, const uint8_t *img, size_t n, struct lt_kernel *k)
{
	if (n >= SELFMAG && !memcmp(img, ELFMAG, SELFMAG))
		return lt_elf_load(m, img, n, k);
	if (n >= LT_BP_HDR_END && rd32(img + LT_BP_HEADER) == LT_HDRS_MAGIC)
		return load_bzimage(m, img, n, k);
	return lt_fail("not a vmlinux ELF or a bzImage");
}

int lt_boot_e820(const struct lt_mem_region *r, size_t nr, struct lt_e820 *out, size_t max)
{
	size_t k = 0;
#define ADD(a, s, t)                                                               \
	do {                                                                       \
		if (k >= max)                                                      \
			return lt_fail("e820: too many entries");                  \
		out[k++] = (struct lt_e820){(a), (s), (t)};                        \
	} while (0)
	for (size_t i = 0; i < nr; i++) {
		if (r[i].gpa == 0) {
			if (r[i].size < 2 * LT_BOOT_KERNEL_MIN)
				return lt_fail("e820: low RAM region too small");
			ADD(0, LT_BOOT_EBDA, LT_E820_RAM);
			ADD(LT_BOOT_EBDA, LT_BOOT_KERNEL_MIN - LT_BOOT_EBDA, LT_E820_RESERVED);
			ADD(LT_BOOT_KERNEL_MIN, r[i].size - LT_BOOT_KERNEL_MIN, LT_E820_RAM);
		} else {
			ADD(r[i].gpa, r[i].size, LT_E820_RAM);
		}
	}
#undef ADD
	return (int)k;
}

uint64_t lt_boot_initrd_addr(const struct lt_kernel *k, uint64_t low_end, uint64_t size)
{
	uint64_t top = low_end;
	/* A bzImage says how high its initrd may go; vmlinux: 32-bit field. */
	uint64_t max = k->initrd_addr_max ? (uint64_t)k->initrd_addr_max + 1 : 0x100000000ULL;
	if (top > max)
		top = max;
	if (size > top)
		return 0;
	uint64_t addr = (top - size) & ~0xfffULL;
	if (addr < k->end || addr < LT_BOOT_KERNEL_MIN)
		return 0;
	return addr;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return s;
}

int lt_boot_mptable(const struct lt_gmem *m, uint64_t addr, int vcpus)
{
	enum { NIRQ = 24 };
	size_t cfg_len = 44 + 20 * (size_t)vcpus + 8 + 8 + 8 * NIRQ + 8 * 2;
	size_t total = 16 + cfg_len;
	uint8_t *base = lt_gmem_ptr(m, addr, total);
	if (!base || vcpus < 1 || vcpus > 254)
		return lt_fail("MP table does not fit at 0x%llx", (unsigned long long)addr);
	memset(base, 0, total);
	uint8_t *fp = base, *cfg = base + 16;
	memcpy(fp, "_MP_", 4);
	wr32(fp + 4, (uint32_t)(addr + 16));
	fp[8] = 1;   /* length in 16-byte units */
	fp[9] = 4;   /* spec 1.4 */
	memcpy(cfg, "PCMP", 4);
	wr16(cfg + 4, (uint16_t)cfg_len);
	cfg[6] = 4;
	memcpy(cfg + 8, "LTTLE   ", 8);
	memcpy(cfg + 16, "MICROVM     ", 12);
	wr16(cfg + 34, (uint16_t)(vcpus + 1 + 1 + NIRQ + 2));
	wr32(cfg + 36, (uint32_t)LT_BOOT_LAPIC);
	uint8_t *e = cfg + 44;
	for (int i = 0; i < vcpus; i++, e += 20) {
		e[0] = 0;            /* processor */
		e[1] = (uint8_t)i;   /* APIC id */
		e[2] = 0x14;         /* APIC version */
		e[3] = 1 | (i == 0 ? 2 : 0); /* enabled, BSP */
		wr32(e + 4, 0x600);  /* family 6 */
		wr32(e + 8, 0x201);  /* FPU, APIC */
	}
	e[0] = 1; /* bus 0: ISA */
	memcpy(e + 2, "ISA   ", 6);
	e += 8;
	uint8_t ioapic_id = (uint8_t)vcpus;
	e[0] = 2; e[1] = ioapic_id; e[2] = 0x11; e[3] = 1;
	wr32(e + 4, (uint32_t)LT_BOOT_IOAPIC);
	e += 8;
	for (int i = 0; i < NIRQ; i++, e += 8) {
		e[0] = 3; /* I/O interrupt: ISA irq i -> IOAPIC pin i */
		e[1] = 0;
		e[5] = (uint8_t)i;
		e[6] = ioapic_id;
		e[7] = (uint8_t)i;
	}
	e[0] = 4; e[1] = 3; e[6] = 0; e[7] = 0; /* ExtINT -> LINT0 of the BSP */
	e += 8;
	e[0] = 4; e[1] = 1; e[6] = 0xff; e[7] = 1; /* NMI -> LINT1 of all */
	cfg[7] = (uint8_t)-sum8(cfg, cfg_len);
	fp[10] = (uint8_t)-sum8(fp, 16);
	return 0;
}

static int write_page_tables(const struct lt_gmem *m)
{
	uint8_t *pml4 = lt_gmem_ptr(m, LT_BOOT_PML4, 4096);
	uint8_t *pdpt = lt_gmem_ptr(m, LT_BOOT_PDPT, 4096);
	uint8_t *pd = lt_gmem_ptr(m, LT_BOOT_PD, 4 * 4096);
	if (!pml4 || !pdpt || !pd)
		return lt_fail("page tables do not fit in guest RAM");
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	wr64(pml4, LT_BOOT_PDPT | 3);
	/* Identity map of the first 4 GiB with 2 MiB pages: RAM and the MMIO
	 * hole alike, so early code can reach devices. */
	for (uint64_t i = 0; i < 4; i++)
		wr64(pdpt + 8 * i, (LT_BOOT_PD + i * 4096) | 3);
	for (uint64_t j = 0; j < 2048; j++)
		wr64(pd + 8 * j, (j << 21) | 0x83);
	return 0;
}

static int write_gdt(const struct lt_gmem *m)
{
	uint64_t gdt[5] = {
		0,
		0,
		0x00af9b000000ffffULL, /* 0x10: 64-bit code, DPL0 */
		0x00cf93000000ffffULL, /* 0x18: flat data */
		0x008f8b000000ffffULL, /* 0x20: TSS (busy), never used */
	};
	if (lt_gmem_write(m, LT_BOOT_GDT, gdt, sizeof(gdt)) < 0)
		return lt_fail("GDT does not fit in guest RAM");
	uint64_t idt = 0;
	if (lt_gmem_write(m, LT_BOOT_IDT, &idt, sizeof(idt)) < 0)
		return lt_fail("IDT does not fit in guest RAM");
	return 0;
}

int lt_boot_write(const struct lt_gmem *m, const struct lt_kernel *k, const struct lt_boot_opts *o)
{
	uint8_t *zp = lt_gmem_ptr(m, LT_BOOT_ZERO_PAGE, 4096);
	if (!zp)
		return lt_fail("zero page does not fit in guest RAM");
	memset(zp, 0, 4096);
	if (k->is_bzimage)
		memcpy(zp + LT_BP_HDR, k->hdr, k->hdr_len);
	wr16(zp + LT_BP_BOOT_FLAG, 0xAA55);
	wr32(zp + LT_BP_HEADER, LT_HDRS_MAGIC);
	if (!k->is_bzimage) {
		wr16(zp + LT_BP_VERSION, 0x020f);
		wr32(zp + LT_BP_KERNEL_ALIGNMENT, 0x01000000);
	}
	zp[LT_BP_TYPE_OF_LOADER] = 0xff;
	zp[LT_BP_LOADFLAGS] |= 1; /* LOADED_HIGH */

	size_t clen = strlen(o->cmdline ? o->cmdline : "");
	size_t cmax = LT_BOOT_CMDLINE_MAX;
	if (k->cmdline_size && k->cmdline_size + 1 < cmax)
		cmax = k->cmdline_size + 1;
	if (clen + 1 > cmax)
		return lt_fail("kernel command line too long (%zu bytes, limit %zu)", clen, cmax - 1);
	if (lt_gmem_write(m, LT_BOOT_CMDLINE, o->cmdline ? o->cmdline : "", clen + 1) < 0)
		return lt_fail("command line does not fit in guest RAM");
	wr32(zp + LT_BP_CMD_LINE_PTR, (uint32_t)LT_BOOT_CMDLINE);
	wr32(zp + LT_BP_CMDLINE_SIZE, (uint32_t)clen);

	if (o->initrd_size) {
		wr32(zp + LT_BP_RAMDISK_IMAGE, (uint32_t)o->initrd_addr);
		wr32(zp + LT_BP_RAMDISK_SIZE, (uint32_t)o->initrd_size);
		wr32(zp + LT_BP_EXT_RAMDISK_IMAGE, (uint32_t)(o->initrd_addr >> 32));
		wr32(zp + LT_BP_EXT_RAMDISK_SIZE, (uint32_t)(o->initrd_size >> 32));
	}

	struct lt_e820 e[LT_BP_E820_MAX];
	int ne = lt_boot_e820(o->regions, o->nregions, e, LT_BP_E820_MAX);
	if (ne < 0)
		return -1;
	zp[LT_BP_E820_ENTRIES] = (uint8_t)ne;
	for (int i = 0; i < ne; i++) {
		uint8_t *p = zp + LT_BP_E820_TABLE + 20 * i;
		wr64(p, e[i].addr);
		wr64(p + 8, e[i].size);
		wr32(p + 16, e[i].type);
	}
	if (write_page_tables(m) < 0 || write_gdt(m) < 0)
		return -1;
	return lt_boot_mptable(m, LT_BOOT_MPTABLE, o->vcpus);
}
