/* Tiny freestanding runtime for the test guests: port I/O, serial, the
 * lttle guest device, strings. Simple integer instructions only. */
#ifndef LTTLE_GUEST_RT_H
#define LTTLE_GUEST_RT_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;

#define barrier() __asm__ volatile("" ::: "memory")

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u32 mmio_r32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_w32(u64 a, u32 v) { *(volatile u32 *)a = v; }
extern int in_user;
/* Halts for good (ring 3: reports "poweroff" instead). */
void halt_forever(void) __attribute__((noreturn));
/* sti; hlt forever (ring 0 only): idle, not halted for good. */
void idle_forever(void) __attribute__((noreturn));
/* Drops to ring 3 (IOPL 3): user pages, GDT and TSS set up first. The
 * first 128 MiB (go_user) or `mib` MiB (<= 1024) of RAM, the virtio window
 * and RAM above 4 GiB become user-accessible; ring 3 faults elsewhere. */
void go_user(void);
void go_user_mib(u64 mib);

void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);
int memcmp(const void *a, const void *b, u64 n);
u64 strlen(const char *s);
int strncmp(const char *a, const char *b, u64 n);

void putc(char c);
void puts(const char *s);
void putu(u64 v);
void putx(u64 v);
/* Sends one guest-device line (without '\n') and reads the reply into
 * reply (up to 128 bytes, NUL-terminated). */
void report(const char *line, char *reply);
/* Builds "<word> <num>" lines. */
void report_num(const char *word, i64 v);

/* Command line helpers: value of key=... (up to a space), or 0. */
const char *cmdline_get(const char *cmdline, const char *key, u64 *len);
u64 parse_u64(const char *s, u64 n);

#endif
