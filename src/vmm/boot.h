/* Linux x86-64 boot: kernel loaders (vmlinux ELF, bzImage), the zero page
 * (boot_params) with e820 and cmdline, identity page tables, the boot GDT
 * and an Intel MP table (CPUs and IOAPIC for a guest without ACPI).
 * Everything writes through an lt_gmem, so tests run it on a buffer. */
#ifndef LTTLE_VMM_BOOT_H
#define LTTLE_VMM_BOOT_H

#include <stdint.h>

#include "vmm/gmem.h"

/* Fixed low-memory layout (guest physical). */
#define LT_BOOT_GDT 0x500ULL
#define LT_BOOT_IDT 0x520ULL
#define LT_BOOT_ZERO_PAGE 0x7000ULL
#define LT_BOOT_STACK 0x8ff0ULL
#define LT_BOOT_PML4 0x9000ULL
#define LT_BOOT_PDPT 0xa000ULL
#define LT_BOOT_PD 0xb000ULL /* 4 pages: 4 GiB of 2 MiB pages */
#define LT_BOOT_CMDLINE 0x20000ULL
#define LT_BOOT_CMDLINE_MAX 4096
#define LT_BOOT_EBDA 0x9fc00ULL
#define LT_BOOT_MPTABLE 0xf0000ULL
#define LT_BOOT_KERNEL_MIN 0x100000ULL /* nothing loads below 1 MiB */
#define LT_BOOT_IOAPIC 0xfec00000ULL
#define LT_BOOT_LAPIC 0xfee00000ULL

/* Selectors the 64-bit boot protocol requires. */
#define LT_BOOT_CS 0x10
#define LT_BOOT_DS 0x18
#define LT_BOOT_TSS 0x20

/* Zero page offsets (struct boot_params / setup_header). */
#define LT_BP_EXT_RAMDISK_IMAGE 0x0c0
#define LT_BP_EXT_RAMDISK_SIZE 0x0c4
#define LT_BP_EXT_CMD_LINE_PTR 0x0c8
#define LT_BP_E820_ENTRIES 0x1e8
#define LT_BP_HDR 0x1f1
#define LT_BP_SETUP_SECTS 0x1f1
#define LT_BP_BOOT_FLAG 0x1fe
#define LT_BP_HEADER 0x202
#define LT_BP_VERSION 0x206
#define LT_BP_TYPE_OF_LOADER 0x210
#define LT_BP_LOADFLAGS 0x211
#define LT_BP_RAMDISK_IMAGE 0x218
#define LT_BP_RAMDISK_SIZE 0x21c
#define LT_BP_CMD_LINE_PTR 0x228
#define LT_BP_INITRD_ADDR_MAX 0x22c
#define LT_BP_KERNEL_ALIGNMENT 0x230
#define LT_BP_XLOADFLAGS 0x236
#define LT_BP_CMDLINE_SIZE 0x238
#define LT_BP_INIT_SIZE 0x260
#define LT_BP_HDR_END 0x290 /* end of the setup header area we copy */
#define LT_BP_E820_TABLE 0x2d0
#define LT_BP_E820_MAX 128
#define LT_HDRS_MAGIC 0x53726448U /* "HdrS" */

#define LT_E820_RAM 1
#define LT_E820_RESERVED 2

struct lt_e820 {
	uint64_t addr, size;
	uint32_t type;
};

struct lt_kernel {
	uint64_t entry;      /* 64-bit entry point (guest physical) */
	uint64_t end;        /* first byte after the loaded kernel */
	int is_bzimage;
	uint8_t hdr[LT_BP_HDR_END - LT_BP_HDR]; /* bzImage setup header */
	uint32_t hdr_len;
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
};

/* Parses a bzImage's setup header (no loading). Exposed for tests. */
int lt_bzimage_parse(const uint8_t *img, size_t n, struct lt_kernel *k,
		     uint64_t *pm_offset, uint64_t *pm_size);
/* Loads an ELF64 x86-64 (PT_LOAD at p_paddr) into guest memory. */
int lt_elf_load(const struct lt_gmem *m, const uint8_t *img, size_t n, struct lt_kernel *k);
/* Detects the format and loads it. */
int lt_kernel_load(const struct lt_gmem *m, const uint8_t *img, size_t n, struct lt_kernel *k);

/* e820 from the RAM regions (low region split around the EBDA/BIOS). */
int lt_boot_e820(const struct lt_mem_region *r, size_t nr, struct lt_e820 *out, size_t max);

struct lt_boot_opts {
	const char *cmdline;
	uint64_t initrd_addr, initrd_size; /* size 0: none */
	int vcpus;
	const struct lt_mem_region *regions;
	size_t nregions;
};
/* Where an initrd of size goes: highest 4K-aligned spot below
 * initrd_addr_max and low RAM's end, above the kernel; 0 if none. */
uint64_t lt_boot_initrd_addr(const struct lt_kernel *k, uint64_t low_ram_end, uint64_t size);
/* Zero page, cmdline, e820, page tables, GDT/IDT, MP table. */
int lt_boot_write(const struct lt_gmem *m, const struct lt_kernel *k, const struct lt_boot_opts *o);
/* Intel MP table for vcpus CPUs + one IOAPIC (id vcpus) at addr. */
int lt_boot_mptable(const struct lt_gmem *m, uint64_t addr, int vcpus);

#endif
