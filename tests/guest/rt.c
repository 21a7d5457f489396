/* Test guest runtime (see rt.h). */
#include "rt.h"

#define COM1 0x3f8
#define GUEST_PORT 0x7f0

void *memset(void *d, int c, u64 n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, u64 n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, u64 n)
{
	const u8 *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p < *q ? -1 : 1;
	return 0;
}

u64 strlen(const char *s)
{
	u64 n = 0;
	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, u64 n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return *a < *b ? -1 : 1;
		if (!*a)
			return 0;
	}
	return 0;
}

void putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}

void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

static char *utoa(u64 v, char *end)
{
	*--end = 0;
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

void putu(u64 v)
{
	char b[24];
	puts(utoa(v, b + sizeof(b)));
}

void putx(u64 v)
{
	static const char hex[] = "0123456789abcdef";
	char b[17];
	for (int i = 15; i >= 0; i--, v >>= 4)
		b[i] = hex[v & 15];
	b[16] = 0;
	puts(b);
}

void report(const char *line, char *reply)
{
	while (*line)
		outb(GUEST_PORT, (u8)*line++);
	outb(GUEST_PORT, '\n');
	int i = 0;
	for (; i < 127; i++) {
		char c = (char)inb(GUEST_PORT);
		if (i == 0 && c != '!')
			break; /* no lttle host listening */
		reply[i] = c;
		if (c == '\n')
			break;
	}
	reply[i] = 0;
}

void report_num(const char *word, i64 v)
{
	char line[64], reply[128];
	u64 n = strlen(word);
	memcpy(line, word, n);
	line[n++] = ' ';
	if (v < 0) {
		line[n++] = '-';
		v = -v;
	}
	char b[24];
	char *s = utoa((u64)v, b + sizeof(b));
	u64 k = strlen(s);
	memcpy(line + n, s, k + 1);
	report(line, reply);
}

const char *cmdline_get(const char *c, const char *key, u64 *len)
{
	u64 kl = strlen(key);
	while (*c) {
		while (*c == ' ')
			c++;
		if (!strncmp(c, key, kl) && c[kl] == '=') {
			const char *v = c + kl + 1, *e = v;
			while (*e && *e != ' ')
				e++;
			*len = (u64)(e - v);
			return v;
		}
		while (*c && *c != ' ')
			c++;
	}
	return 0;
}

u64 parse_u64(const char *s, u64 n)
{
	u64 v = 0;
	int base = 10;
	if (n > 2 && s[0] == '0' && s[1] == 'x') {
		base = 16;
		s += 2;
		n -= 2;
	}
	for (u64 i = 0; i < n; i++) {
		char c = s[i];
		u64 d;
		if (c >= '0' && c <= '9')
			d = (u64)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (u64)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (u64)(c - 'A' + 10);
		else
			break;
		v = v * (u64)base + d;
	}
	return v;
}

int in_user;

static u64 gdt[8] __attribute__((aligned(16))) = {
	0,
	0,
	0x00af9b000000ffffULL, /* 0x10 kernel code */
	0x00cf93000000ffffULL, /* 0x18 kernel data */
	0x00cff3000000ffffULL, /* 0x20 user data */
	0x00affb000000ffffULL, /* 0x28 user code */
	0, 0,                  /* 0x30 TSS (filled in) */
};
/* 104-byte TSS, then an all-zero I/O bitmap (every port allowed) and the
 * terminating 0xff byte. */
static u32 tss[26 + 8192 / 4 + 1] __attribute__((aligned(16)));
static u8 kstack[4096] __attribute__((aligned(16)));

extern void enter_user(void);

void go_user(void)
{
	go_user_mib(128);
}

void go_user_mib(u64 mib)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) d = {sizeof(gdt) - 1, (u64)gdt};
	/* A TSS whose I/O bitmap allows every port: emulators that check it
	 * even under IOPL 3 then let ring 3 do port I/O. */
	u64 sp0 = (u64)(kstack + sizeof(kstack));
	tss[1] = (u32)sp0;
	tss[2] = (u32)(sp0 >> 32);
	tss[25] = 104U << 16; /* I/O bitmap right after the TSS */
	((u8 *)tss)[104 + 8192] = 0xff;
	u64 tb = (u64)tss, tl = sizeof(tss) - 1;
	gdt[6] = (tl & 0xffff) | ((tb & 0xffffff) << 16) | (0x89ULL << 40) |
		 (((tl >> 16) & 0xf) << 48) | (((tb >> 24) & 0xff) << 56);
	gdt[7] = tb >> 32;
	__asm__ volatile("lgdt %0; ltr %w1" ::"m"(d), "r"(0x30) : "memory");
	/* User bit on what ring 3 touches: the first `mib` MiB, the virtio
	 * window at 0xd0000000 and RAM above 4 GiB (pdpt[4], already set up).
	 * Few entries: on nested hosts every ring-0 store to a page table
	 * traps (~15 us each), and 1 GiB pages made ring 3 slower still. */
	u64 n2m = (mib + 1) / 2 > 512 ? 512 : (mib + 1) / 2;
	u64 cr3;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	u64 *pml4 = (u64 *)(cr3 & ~0xfffULL);
	pml4[0] |= 4;
	u64 *pdpt = (u64 *)(pml4[0] & ~0xfffULL);
	for (int i = 0; i < 5; i++) {
		if (!(pdpt[i] & 1))
			continue;
		pdpt[i] |= 4;
		if (pdpt[i] & 0x80)
			continue; /* a 1 GiB page (the PVH entry's map) */
		u64 *pd = (u64 *)(pdpt[i] & ~0xfffULL);
		if (i == 0)
			for (u64 j = 0; j < n2m; j++)
				pd[j] |= 4;
		else if (i == 3)
			pd[(0xd0000000ULL >> 21) & 511] |= 4;
		else if (i == 4)
			for (int j = 0; j < 512; j++)
				pd[j] |= 4;
	}
	__asm__ volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");
	enter_user();
	in_user = 1;
}

void halt_forever(void)
{
	/* Ring 3 cannot halt, and on nested hosts it cannot get back to ring 0
	 * (SYSCALL and INT misbehave under the ring-0 emulation): power off
	 * through the guest device instead. */
	if (in_user) {
		char r[128];
		report("poweroff", r);
		for (;;)
			barrier();
	}
	for (;;)
		__asm__ volatile("cli; hlt");
}

void idle_forever(void)
{
	for (;;)
		__asm__ volatile("sti; hlt; cli");
}
