/* The Linux boot builder: ELF loader (and its refusals of hostile files),
 * bzImage header parsing and loading, e820, zero page, page tables, GDT,
 * MP table and initrd placement, all on guest memory held by the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/boot.h"

#define RAM (64ULL << 20)

static uint8_t *ram;
static struct lt_mem_region reg[2];
static struct lt_gmem M;

static int setup(void **state)
{
	(void)state;
	ram = calloc(1, RAM);
	reg[0] = (struct lt_mem_region){.gpa = 0, .size = RAM, .hva = ram};
	M = (struct lt_gmem){reg, 1};
	return ram ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	free(ram);
	return 0;
}

/* A one-segment ELF: code at paddr, filesz bytes of payload, memsz. */
static uint8_t *mkelf(size_t *n, uint64_t paddr, uint64_t filesz, uint64_t memsz, uint64_t entry)
{
	size_t total = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) + filesz;
	uint8_t *b = calloc(1, total);
	Elf64_Ehdr eh = {0};
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_entry = entry;
	eh.e_phoff = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 1;
	Elf64_Phdr ph = {0};
	ph.p_type = PT_LOAD;
	ph.p_offset = sizeof(eh) + sizeof(ph);
	ph.p_paddr = paddr;
	ph.p_vaddr = 0xffffffff80000000ULL + paddr;
	ph.p_filesz = filesz;
	ph.p_memsz = memsz;
	memcpy(b, &eh, sizeof(eh));
	memcpy(b + sizeof(eh), &ph, sizeof(ph));
	for (uint64_t i = 0; i < filesz; i++)
		b[sizeof(eh) + sizeof(ph) + i] = (uint8_t)(i + 1);
	*n = total;
	return b;
}

static Elf64_Phdr *phdr(uint8_t *b)
{
	return (Elf64_Phdr *)(b + sizeof(Elf64_Ehdr));
}

static void test_elf_load(void **state)
{
	(void)state;
	size_t n;
	uint8_t *b = mkelf(&n, 0x1000000, 100, 4096, 0x1000010);
	memset(ram + 0x1000000, 0xcc, 8192);
	struct lt_kernel k;
	assert_int_equal(lt_kernel_load(&M, b, n, &k), 0);
	assert_int_equal(k.entry, 0x1000010);
	assert_int_equal(k.end, 0x1000000 + 4096);
	assert_false(k.is_bzimage);
	assert_int_equal(ram[0x1000000], 1);
	assert_int_equal(ram[0x1000000 + 99], 100);
	assert_int_equal(ram[0x1000000 + 100], 0); /* bss zeroed */
	assert_int_equal(ram[0x1000000 + 4095], 0);
	assert_int_equal(ram[0x1000000 + 4096], 0xcc);
	free(b);
}

static void expect_elf_fail(uint8_t *b, size_t n, const char *msg)
{
	struct lt_kernel k;
	assert_int_equal(lt_kernel_load(&M, b, n, &k), -1);
	if (!strstr(lt_errmsg(), msg))
		fail_msg("error '%s' lacks '%s'", lt_errmsg(), msg);
}

static void test_elf_rejects(void **state)
{
	(void)state;
	size_t n;
	uint8_t *b = mkelf(&n, 0x200000, 64, 64, 0x200000);
	uint8_t *c = malloc(n);
#define RESET() memcpy(c, b, n)
	RESET();
	c[EI_CLASS] = ELFCLASS32;
	expect_elf_fail(c, n, "not a little-endian ELF64");
	RESET();
	((Elf64_Ehdr *)c)->e_machine = EM_386;
	expect_elf_fail(c, n, "is not x86-64");
	RESET();
	((Elf64_Ehdr *)c)->e_type = ET_DYN;
	expect_elf_fail(c, n, "not an executable");
	RESET();
	((Elf64_Ehdr *)c)->e_phnum = 0;
	expect_elf_fail(c, n, "bad program header table");
	RESET();
	((Elf64_Ehdr *)c)->e_phnum = 60000;
	expect_elf_fail(c, n, "bad program header table");
	RESET();
	((Elf64_Ehdr *)c)->e_phoff = n - 8;
	expect_elf_fail(c, n, "program headers beyond");
	RESET();
	((Elf64_Ehdr *)c)->e_phoff = UINT64_MAX - 10;
	expect_elf_fail(c, n, "program headers beyond");
	RESET();
	phdr(c)->p_filesz = 128;
	expect_elf_fail(c, n, "file size exceeds memory size");
	RESET();
	phdr(c)->p_offset = n;
	expect_elf_fail(c, n, "beyond the end of the file");
	RESET();
	phdr(c)->p_offset = UINT64_MAX;
	expect_elf_fail(c, n, "beyond the end of the file");
	RESET();
	phdr(c)->p_paddr = 0x7000; /* over the zero page */
	expect_elf_fail(c, n, "below 1 MiB");
	RESET();
	phdr(c)->p_paddr = RAM - 32;
	expect_elf_fail(c, n, "outside guest RAM");
	RESET();
	phdr(c)->p_paddr = UINT64_MAX - 16;
	expect_elf_fail(c, n, "overflow");
	RESET();
	phdr(c)->p_memsz = UINT64_MAX;
	phdr(c)->p_filesz = 64;
	expect_elf_fail(c, n, "overflow");
	RESET();
	phdr(c)->p_type = PT_NOTE;
	expect_elf_fail(c, n, "no PT_LOAD");
	RESET();
	((Elf64_Ehdr *)c)->e_entry = 0x300000;
	expect_elf_fail(c, n, "entry point");
	expect_elf_fail(c, 10, "file too small");
	expect_elf_fail(c, 3, "not a vmlinux ELF or a bzImage");
	memset(c, 0, n);
	expect_elf_fail(c, n, "not a vmlinux ELF or a bzImage");
	free(c);
	free(b);
}

static uint8_t *mkbz(size_t *n, uint16_t ver, uint8_t sects, uint16_t xlf)
{
	*n = 64 * 1024;
	uint8_t *b = calloc(1, *n);
	b[LT_BP_SETUP_SECTS] = sects;
	uint16_t flag = 0xAA55;
	memcpy(b + LT_BP_BOOT_FLAG, &flag, 2);
	b[0x201] = 0x66; /* jump offset: header ends at 0x268 */
	memcpy(b + LT_BP_HEADER, "HdrS", 4);
	memcpy(b + LT_BP_VERSION, &ver, 2);
	b[LT_BP_LOADFLAGS] = 1;
	memcpy(b + LT_BP_XLOADFLAGS, &xlf, 2);
	uint32_t max = 0x37ffffff, init = 0x20000, csz = 2047;
	memcpy(b + LT_BP_INITRD_ADDR_MAX, &max, 4);
	memcpy(b + LT_BP_INIT_SIZE, &init, 4);
	memcpy(b + LT_BP_CMDLINE_SIZE, &csz, 4);
	uint32_t off = (uint32_t)((sects ? sects : 4) + 1) * 512;
	if (off + 8 <= *n)
		memcpy(b + off, "PMKERNEL", 8);
	return b;
}

static void test_bzimage(void **state)
{
	(void)state;
	size_t n;
	uint8_t *b = mkbz(&n, 0x020f, 0, 1);
	struct lt_kernel k;
	uint64_t off, size;
	assert_int_equal(lt_bzimage_parse(b, n, &k, &off, &size), 0);
	assert_int_equal(off, 5 * 512); /* setup_sects 0 means 4 */
	assert_int_equal(size, n - off);
	assert_int_equal(k.initrd_addr_max, 0x37ffffff);
	assert_int_equal(k.cmdline_size, 2047);
	assert_int_equal(k.hdr_len, 0x268 - LT_BP_HDR);
	assert_int_equal(lt_kernel_load(&M, b, n, &k), 0);
	assert_int_equal(k.entry, 0x100200);
	assert_int_equal(k.end, 0x100000 + 0x20000);
	assert_memory_equal(ram + 0x100000, "PMKERNEL", 8);
	free(b);
	b = mkbz(&n, 0x020b, 4, 1);
	assert_int_equal(lt_bzimage_parse(b, n, &k, &off, &size), -1);
	assert_non_null(strstr(lt_errmsg(), "too old"));
	free(b);
	b = mkbz(&n, 0x020f, 4, 0);
	assert_int_equal(lt_bzimage_parse(b, n, &k, &off, &size), -1);
	assert_non_null(strstr(lt_errmsg(), "XLF_KERNEL_64"));
	free(b);
	b = mkbz(&n, 0x020f, 200, 1);
	assert_int_equal(lt_bzimage_parse(b, n, &k, &off, &size), -1);
	assert_non_null(strstr(lt_errmsg(), "covers the whole file"));
	b[LT_BP_SETUP_SECTS] = 4;
	memcpy(b + LT_BP_HEADER, "HdrX", 4);
	assert_int_equal(lt_bzimage_parse(b, n, &k, &off, &size), -1);
	free(b);
	/* init_size larger than RAM. */
	b = mkbz(&n, 0x020f, 4, 1);
	uint32_t huge = 0x7fffffff;
	memcpy(b + LT_BP_INIT_SIZE, &huge, 4);
	assert_int_equal(lt_kernel_load(&M, b, n, &k), -1);
	assert_non_null(strstr(lt_errmsg(), "RAM too small"));
	free(b);
}

static void test_e820(void **state)
{
	(void)state;
	struct lt_e820 e[8];
	assert_int_equal(lt_boot_e820(reg, 1, e, 8), 3);
	assert_int_equal(e[0].addr, 0);
	assert_int_equal(e[0].size, LT_BOOT_EBDA);
	assert_int_equal(e[0].type, LT_E820_RAM);
	assert_int_equal(e[1].type, LT_E820_RESERVED);
	assert_int_equal(e[2].addr, 0x100000);
	assert_int_equal(e[2].size, RAM - 0x100000);
	struct lt_mem_region two[2] = {{.gpa = 0, .size = 0xC0000000ULL},
				       {.gpa = 0x100000000ULL, .size = 1ULL << 30}};
	assert_int_equal(lt_boot_e820(two, 2, e, 8), 4);
	assert_int_equal(e[3].addr, 0x100000000ULL);
	assert_int_equal(e[3].size, 1ULL << 30);
	assert_int_equal(lt_boot_e820(two, 2, e, 3), -1);
	struct lt_mem_region tiny = {.gpa = 0, .size = 0x100000};
	assert_int_equal(lt_boot_e820(&tiny, 1, e, 8), -1);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

static void test_boot_write(void **state)
{
	(void)state;
	size_t n;
	uint8_t *b = mkelf(&n, 0x1000000, 16, 16, 0x1000000);
	struct lt_kernel k;
	assert_int_equal(lt_kernel_load(&M, b, n, &k), 0);
	free(b);
	struct lt_boot_opts o = {.cmdline = "console=ttyS0 root=/dev/vda",
				 .initrd_addr = 0x2000000,
				 .initrd_size = 12345,
				 .vcpus = 4,
				 .regions = reg,
				 .nregions = 1};
	assert_int_equal(lt_boot_write(&M, &k, &o), 0);
	uint8_t *zp = ram + LT_BOOT_ZERO_PAGE;
	assert_memory_equal(zp + LT_BP_HEADER, "HdrS", 4);
	assert_int_equal(*(uint16_t *)(zp + LT_BP_BOOT_FLAG), 0xAA55);
	assert_int_equal(zp[LT_BP_TYPE_OF_LOADER], 0xff);
	assert_int_equal(*(uint32_t *)(zp + LT_BP_CMD_LINE_PTR), LT_BOOT_CMDLINE);
	assert_string_equal((char *)ram + LT_BOOT_CMDLINE, "console=ttyS0 root=/dev/vda");
	assert_int_equal(*(uint32_t *)(zp + LT_BP_RAMDISK_IMAGE), 0x2000000);
	assert_int_equal(*(uint32_t *)(zp + LT_BP_RAMDISK_SIZE), 12345);
	assert_int_equal(zp[LT_BP_E820_ENTRIES], 3);
	assert_int_equal(*(uint64_t *)(zp + LT_BP_E820_TABLE + 40), 0x100000);
	assert_int_equal(*(uint32_t *)(zp + LT_BP_E820_TABLE + 20 + 16), LT_E820_RESERVED);
	/* Identity map: PML4[0] -> PDPT, 4 PDs, 2 MiB pages. */
	uint64_t *pml4 = (uint64_t *)(ram + LT_BOOT_PML4);
	uint64_t *pdpt = (uint64_t *)(ram + LT_BOOT_PDPT);
	uint64_t *pd = (uint64_t *)(ram + LT_BOOT_PD);
	assert_int_equal(pml4[0], LT_BOOT_PDPT | 3);
	assert_int_equal(pdpt[3], (LT_BOOT_PD + 3 * 4096) | 3);
	assert_int_equal(pd[0], 0x83);
	assert_int_equal(pd[2047], (2047ULL << 21) | 0x83);
	/* GDT: 64-bit code at 0x10, data at 0x18. */
	uint64_t *gdt = (uint64_t *)(ram + LT_BOOT_GDT);
	assert_int_equal(gdt[2], 0x00af9b000000ffffULL);
	assert_int_equal(gdt[3], 0x00cf93000000ffffULL);
	/* MP table: signatures, checksums, one entry per CPU plus the rest. */
	uint8_t *fp = ram + LT_BOOT_MPTABLE;
	assert_memory_equal(fp, "_MP_", 4);
	assert_int_equal(sum(fp, 16), 0);
	uint8_t *cfg = ram + *(uint32_t *)(fp + 4);
	assert_memory_equal(cfg, "PCMP", 4);
	uint16_t len = *(uint16_t *)(cfg + 4);
	assert_int_equal(sum(cfg, len), 0);
	assert_int_equal(*(uint16_t *)(cfg + 34), 4 + 1 + 1 + 24 + 2);
	uint8_t *cpu = cfg + 44;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(cpu[20 * i], 0);
		assert_int_equal(cpu[20 * i + 1], i);
	}
	assert_int_equal(cpu[3] & 2, 2); /* BSP */
	assert_int_equal(cpu[20 + 3] & 2, 0);
	/* Command line limits. */
	char *longc = malloc(5000);
	memset(longc, 'a', 4999);
	longc[4999] = 0;
	o.cmdline = longc;
	assert_int_equal(lt_boot_write(&M, &k, &o), -1);
	assert_non_null(strstr(lt_errmsg(), "command line too long"));
	free(longc);
}

static void test_initrd_placement(void **state)
{
	(void)state;
	struct lt_kernel k = {.end = 0x2000000, .initrd_addr_max = 0x37ffffff};
	uint64_t a = lt_boot_initrd_addr(&k, RAM, 1000000);
	assert_int_equal(a % 4096, 0);
	assert_true(a + 1000000 <= RAM);
	assert_true(a >= k.end);
	/* The kernel's limit wins over RAM's end. */
	k.initrd_addr_max = 0x2ffffff;
	a = lt_boot_initrd_addr(&k, RAM, 4096);
	assert_int_equal(a, 0x3000000 - 4096);
	/* Too big: no place. */
	assert_int_equal(lt_boot_initrd_addr(&k, RAM, RAM), 0);
	assert_int_equal(lt_boot_initrd_addr(&k, RAM, 0x2000000), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_elf_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bzimage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_e820, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boot_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_placement, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
