/* testguest: one tiny guest whose behaviour is picked on the kernel
 * command line, lt.t=<test>[,<test>...], run in order:
 *   hello     serial banner, zero page checks (HdrS, e820, cmdline)
 *   events    the guest-device events, in order, and the host replies
 *   mem       pattern over lt.mem=MiB at 16 MiB (and RAM above 4 GiB when
 *             the e820 has it): verify, report checksums
 *   count     count to lt.count=N, printing every lt.every=K
 *   pio       lt.pio=N port writes (VM-exit round trips)
 *   blk       virtio-blk: read sector 0, print it; blkw: write sector 1,
 *             read back, flush, get-id
 *   vsock     echo a host-initiated stream on port 1234, then connect to
 *             host port 5000 and send a line
 *   snap      report "trigger 1", print the host's reply and a sum kept
 *             across it (a snapshot point)
 *   net       virtio-net: broadcast an ethertype 0x88b5 frame until the
 *             host answers with one, print its payload
 *   uart      8250 register semantics the VMM's coalesced transmit must
 *             keep: the THRE interrupt identified after IER, output with
 *             it on, loopback echo through MCR, then plain output again
 * and then lt.end=halt|reset|poweroff|exit:N|spin|idle|crash (default halt).
 * After hello the guest drops to ring 3 with IOPL 3 (lt.ring0=1 keeps it
 * in ring 0): nested hosts emulate guest ring 0, ring 3 runs natively.
 * Ring 3 cannot halt: "halt" there means the guest device's "poweroff". */
#include "rt.h"
#include "vio.h"

static const char *cmdline;
static int bool_idle;
static u8 *zp;

static int has_test(const char *name)
{
	u64 n;
	const char *v = cmdline_get(cmdline, "lt.t", &n);
	u64 k = strlen(name);
	while (v && n) {
		u64 i = 0;
		while (i < n && v[i] != ',')
			i++;
		if (i == k && !strncmp(v, name, k))
			return 1;
		if (i == n)
			break;
		v += i + 1;
		n -= i + 1;
	}
	return 0;
}

static u64 opt(const char *key, u64 def)
{
	u64 n;
	const char *v = cmdline_get(cmdline, key, &n);
	return v ? parse_u64(v, n) : def;
}

static void fail(const char *what)
{
	puts("GUEST FAIL: ");
	puts(what);
	puts("\n");
	report_num("exit", 99);
	halt_forever();
}

static void t_hello(void)
{
	puts("hello from lttle guest\n");
	if (*(u32 *)(zp + 0x202) != 0x53726448)
		fail("no HdrS in zero page");
	u8 n = zp[0x1e8];
	u64 ram = 0;
	for (int i = 0; i < n; i++) {
		u8 *e = zp + 0x2d0 + 20 * i;
		if (*(u32 *)(e + 16) == 1)
			ram += *(u64 *)(e + 8);
	}
	puts("e820 entries ");
	putu(n);
	puts(" ram ");
	putu(ram >> 10);
	puts(" KiB\ncmdline: ");
	puts(cmdline);
	puts("\n");
	u64 rd = *(u32 *)(zp + 0x218), rs = *(u32 *)(zp + 0x21c);
	if (rs) {
		u64 h = 0xcbf29ce484222325ULL;
		for (u64 i = 0; i < rs; i++)
			h = (h ^ ((u8 *)rd)[i]) * 0x100000001b3ULL;
		puts("initrd ");
		putu(rs);
		puts(" bytes at ");
		putx(rd);
		puts(" fnv ");
		putx(h);
		puts("\n");
	}
}

static void t_events(void)
{
	char reply[128];
	report("ready", reply);
	puts("reply: ");
	puts(reply);
	puts("\n");
	report("bind-before 8080", reply);
	report("bind-after 8080 0", reply);
	report("listen-before 8080", reply);
	report("listen-after 8080 0", reply);
	report("log hello log", reply);
	report("trigger 7", reply);
	report("this-is-unknown 1", reply);
	report("listen-after notaport", reply);
	/* An overlong line is discarded up to its newline. */
	for (int i = 0; i < 300; i++)
		outb(0x7f0, 'x');
	outb(0x7f0, '\n');
	report("hold", reply);
	report("release", reply);
	puts("events done\n");
}

/* FNV-1a over the pattern, written then read back. */
static u64 pattern_check(u64 start, u64 bytes, u64 seed)
{
	volatile u64 *p = (u64 *)start;
	u64 words = bytes / 8;
	for (u64 i = 0; i < words; i++)
		p[i] = (i * 0x9E3779B97F4A7C15ULL) ^ seed;
	u64 h = 0xcbf29ce484222325ULL;
	for (u64 i = 0; i < words; i++) {
		u64 v = p[i];
		if (v != ((i * 0x9E3779B97F4A7C15ULL) ^ seed))
			fail("memory pattern mismatch");
		h = (h ^ (v & 0xffffffff)) * 0x100000001b3ULL;
	}
	return h;
}

static u64 high_pd[512] __attribute__((aligned(4096)));

/* RAM above 4 GiB: map 4..5 GiB through our own page directory (ring 0,
 * before dropping to ring 3). */
static u64 high_base, high_size;
static void map_high(void)
{
	u8 n = zp[0x1e8];
	for (int i = 0; i < n; i++) {
		u8 *e = zp + 0x2d0 + 20 * i;
		u64 a = *(u64 *)e, sz = *(u64 *)(e + 8);
		if (a != 0x100000000ULL || *(u32 *)(e + 16) != 1)
			continue;
		u64 cr3;
		__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
		u64 *pml4 = (u64 *)(cr3 & ~0xfffULL);
		u64 *pdpt = (u64 *)(pml4[0] & ~0xfffULL);
		for (u64 j = 0; j < 512; j++)
			high_pd[j] = (0x100000000ULL + (j << 21)) | 0x87;
		pdpt[4] = (u64)high_pd | 3;
		__asm__ volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");
		high_base = a;
		high_size = sz;
	}
}

static void t_mem(void)
{
	u64 mib = opt("lt.mem", 4);
	if (mib > 100)
		fail("lt.mem above 100 MiB (ring 3 maps 128 MiB)");
	u64 h = pattern_check(16ULL << 20, mib << 20, 0x1234);
	puts("memsum ");
	putx(h);
	puts("\n");
	if (high_size) {
		u64 len = high_size < (1ULL << 20) ? high_size : (1ULL << 20);
		u64 hh = pattern_check(high_base, len, 0x5678);
		puts("highmem ");
		putu(high_size >> 20);
		puts(" MiB sum ");
		putx(hh);
		puts("\n");
	}
}

static void t_count(void)
{
	u64 limit = opt("lt.count", 1000), every = opt("lt.every", 100);
	u64 spin = opt("lt.spin", 0);
	for (u64 i = 1; i <= limit; i++) {
		for (volatile u64 s = 0; s < spin; s++)
			;
		if (i % every == 0) {
			puts("count ");
			putu(i);
			puts("\n");
		}
	}
}

#define UART 0x3f8

static void t_uart(void)
{
	puts("uart: plain\n");
	outb(UART + 1, 0x02); /* IER: THRE interrupt on */
	if ((inb(UART + 2) & 0x0f) != 0x02)
		fail("uart: THRE not identified in IIR");
	puts("uart: with THRI\n");
	outb(UART + 1, 0x00);
	outb(UART + 4, 0x10); /* MCR: loopback */
	outb(UART, 'Z');
	if (!(inb(UART + 5) & 0x01) || inb(UART) != 'Z')
		fail("uart: loopback byte lost");
	outb(UART + 4, 0x00);
	puts("uart: ok\n");
}

static void t_pio(void)
{
	u64 n = opt("lt.pio", 1000);
	for (u64 i = 0; i < n; i++)
		outb(0x80, 0);
	puts("pio done\n");
}

static u8 blkbuf[4096] __attribute__((aligned(4096)));
struct blkreq {
	u32 type, reserved;
	u64 sector;
};
static struct blkreq breq;
static u8 bstatus;

static int blk_rw(struct vdev *d, u32 type, u64 sector, u8 *buf, u32 len)
{
	breq.type = type;
	breq.sector = sector;
	bstatus = 0xff;
	u64 a[3] = {(u64)&breq, (u64)buf, (u64)&bstatus};
	u32 l[3] = {16, len, 1};
	u16 f[3] = {0, (u16)(type == 1 ? 0 : 2), 2};
	int nb = len ? 3 : 2;
	if (!len) {
		a[1] = a[2];
		l[1] = 1;
		f[1] = 2;
	}
	vq_add(d, 0, a, l, f, nb);
	if (vq_wait(d, 0, 0, 1ULL << 32) < 0)
		fail("virtio-blk timeout");
	return bstatus;
}

static void t_blk(int write)
{
	struct vdev d;
	u64 base = vio_find(cmdline, 2);
	if (!base)
		fail("no virtio-blk device");
	int r = vio_init(&d, base, 1, 1u << 9);
	if (r < 0)
		fail("virtio-blk init");
	if (blk_rw(&d, 0, 0, blkbuf, 512) != 0)
		fail("virtio-blk read");
	blkbuf[64] = 0;
	for (int i = 0; i < 64; i++)
		if (blkbuf[i] < 0x20 || blkbuf[i] > 0x7e)
			blkbuf[i] = '.';
	puts("blk sector0: ");
	puts((char *)blkbuf);
	puts("\n");
	if (blk_rw(&d, 8, 0, blkbuf, 20) != 0)
		fail("virtio-blk get-id");
	blkbuf[20] = 0;
	puts("blk id: ");
	puts((char *)blkbuf);
	puts("\n");
	/* Out of range must fail cleanly. */
	if (blk_rw(&d, 0, 1ULL << 40, blkbuf, 512) != 1)
		fail("virtio-blk out-of-range read did not fail");
	if (!write)
		return;
	const char *msg = "written by the lttle guest";
	memset(blkbuf, 0, 512);
	memcpy(blkbuf, msg, strlen(msg));
	int st = blk_rw(&d, 1, 1, blkbuf, 512);
	puts("blk write status ");
	putu((u64)st);
	puts("\n");
	if (st != 0)
		return;
	memset(blkbuf, 0, 512);
	if (blk_rw(&d, 0, 1, blkbuf, 512) != 0)
		fail("virtio-blk read back");
	puts("blk sector1: ");
	puts((char *)blkbuf);
	puts("\n");
	if (blk_rw(&d, 4, 0, 0, 0) != 0)
		fail("virtio-blk flush");
}

/* ---- vsock ---- */
struct vhdr {
	u64 src_cid, dst_cid;
	u32 src_port, dst_port, len;
	u16 type, op;
	u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

#define RXB 4
static u8 rxbuf[RXB][44 + 512];
static u8 txbuf[44 + 512];
static u64 guest_cid;
static u32 fwd_cnt;

static void rx_post(struct vdev *d, int i)
{
	u64 a = (u64)rxbuf[i];
	u32 l = sizeof(rxbuf[i]);
	u16 f = 2;
	vq_add(d, 0, &a, &l, &f, 1);
}

static void vs_send(struct vdev *d, u32 sport, u32 dport, u16 op, u32 flags, const u8 *data,
		    u32 len)
{
	struct vhdr *h = (struct vhdr *)txbuf;
	memset(h, 0, sizeof(*h));
	h->src_cid = guest_cid;
	h->dst_cid = 2;
	h->src_port = sport;
	h->dst_port = dport;
	h->len = len;
	h->type = 1;
	h->op = op;
	h->flags = flags;
	h->buf_alloc = 64 * 1024;
	h->fwd_cnt = fwd_cnt;
	if (len)
		memcpy(txbuf + 44, data, len);
	u64 a = (u64)txbuf;
	u32 l = 44 + len;
	u16 f = 0;
	vq_add(d, 1, &a, &l, &f, 1);
	if (vq_wait(d, 1, 0, 1ULL << 32) < 0)
		fail("vsock tx timeout");
}

/* Next rx packet (copied to out); reposts the buffer. */
static struct vhdr *vs_recv(struct vdev *d, u8 *out)
{
	static int next;
	u32 len;
	if (vq_wait(d, 0, &len, 1ULL << 34) < 0)
		fail("vsock rx timeout");
	int i = next;
	next = (next + 1) % RXB;
	memcpy(out, rxbuf[i], len < sizeof(rxbuf[i]) ? len : sizeof(rxbuf[i]));
	rx_post(d, i);
	return (struct vhdr *)out;
}

static void t_vsock(void)
{
	struct vdev d;
	u64 base = vio_find(cmdline, 19);
	if (!base)
		fail("no virtio-vsock device");
	if (vio_init(&d, base, 3, 0) < 0)
		fail("virtio-vsock init");
	guest_cid = *(volatile u64 *)(base + 0x100);
	puts("vsock cid ");
	putu(guest_cid);
	puts("\n");
	for (int i = 0; i < RXB; i++)
		rx_post(&d, i);
	report("ready", (char *)txbuf);
	puts("vsock listening\n");
	static u8 pkt[44 + 512];
	u32 hport = 0;
	/* Host-initiated echo on port 1234: upper-case what arrives. */
	for (;;) {
		struct vhdr *h = vs_recv(&d, pkt);
		if (h->op == 1 && h->dst_port == 1234) {
			hport = h->src_port;
			vs_send(&d, 1234, hport, 2, 0, 0, 0);
			puts("vsock accepted\n");
		} else if (h->op == 5 && hport) {
			u8 *p = pkt + 44;
			for (u32 i = 0; i < h->len; i++)
				if (p[i] >= 'a' && p[i] <= 'z')
					p[i] = (u8)(p[i] - 32);
			fwd_cnt += h->len;
			vs_send(&d, 1234, hport, 5, 0, p, h->len);
		} else if (h->op == 4) {
			vs_send(&d, 1234, hport, 3, 0, 0, 0);
			puts("vsock echo closed\n");
			break;
		} else if (h->op == 3) {
			break;
		}
	}
	/* Guest-initiated: connect to host port 5000. */
	fwd_cnt = 0;
	vs_send(&d, 4321, 5000, 1, 0, 0, 0);
	struct vhdr *h = vs_recv(&d, pkt);
	if (h->op != 2) {
		puts("vsock connect refused\n");
		return;
	}
	const char *msg = "hello from the guest over vsock\n";
	vs_send(&d, 4321, 5000, 5, 0, (const u8 *)msg, (u32)strlen(msg));
	vs_send(&d, 4321, 5000, 4, 3, 0, 0);
	for (int i = 0; i < 8; i++) {
		h = vs_recv(&d, pkt);
		if (h->op == 3)
			break;
	}
	puts("vsock connect done\n");
}

/* ---- snap: a trigger a snapshot can be taken at ---- */
static void t_snap(void)
{
	char reply[128];
	volatile u64 x = 0;
	for (u64 i = 1; i <= 1000; i++)
		x += i;
	puts("before trigger\n");
	report("trigger 1", reply);
	puts("reply: ");
	puts(reply);
	puts("\nafter trigger ");
	putu(x);
	puts("\n");
}

/* ---- net: broadcast an 0x88b5 frame until the host answers ---- */
static u8 net_rx[2][12 + 1514];
static u8 net_tx[12 + 64];

static void t_net(void)
{
	struct vdev d;
	u64 base = vio_find(cmdline, 1);
	if (!base)
		fail("no virtio-net device");
	if (vio_init(&d, base, 2, 1u << 5) < 0)
		fail("virtio-net init");
	u8 mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = *(volatile u8 *)(base + 0x100 + i);
	puts("net mac ");
	putx(((u64)mac[0] << 40) | ((u64)mac[1] << 32) | ((u64)mac[2] << 24) |
	     ((u64)mac[3] << 16) | ((u64)mac[4] << 8) | mac[5]);
	puts("\n");
	for (int i = 0; i < 2; i++) {
		u64 a = (u64)net_rx[i];
		u32 l = sizeof(net_rx[i]);
		u16 f = 2;
		vq_add(&d, 0, &a, &l, &f, 1);
	}
	const char *ping = "lttle-net-ping";
	memset(net_tx, 0, sizeof(net_tx));
	u8 *fr = net_tx + 12;
	memset(fr, 0xff, 6);
	memcpy(fr + 6, mac, 6);
	fr[12] = 0x88;
	fr[13] = 0xb5;
	memcpy(fr + 14, ping, strlen(ping));
	int next = 0;
	for (int tries = 0; tries < 400; tries++) {
		u64 a = (u64)net_tx;
		u32 l = sizeof(net_tx);
		u16 f = 0;
		vq_add(&d, 1, &a, &l, &f, 1);
		if (vq_wait(&d, 1, 0, 1ULL << 32) < 0)
			fail("virtio-net tx timeout");
		for (u64 spin = 0; spin < 20000000; spin++) {
			if (!vq_poll(&d, 0))
				continue;
			u32 len;
			vq_wait(&d, 0, &len, 1);
			u8 *p = net_rx[next] + 12;
			if (len > 12 + 14 && p[12] == 0x88 && p[13] == 0xb5) {
				p[len - 12 < 64 ? len - 12 : 63] = 0;
				puts("net rx: ");
				puts((char *)p + 14);
				puts("\n");
				return;
			}
			/* Something else (IPv6 chatter): give the buffer back. */
			u64 ra = (u64)net_rx[next];
			u32 rl = sizeof(net_rx[next]);
			u16 rf = 2;
			vq_add(&d, 0, &ra, &rl, &rf, 1);
			next ^= 1;
		}
	}
	fail("no frame from the host");
}

void gmain(u8 *zero_page)
{
	zp = zero_page;
	cmdline = (const char *)(u64) * (u32 *)(zp + 0x228);
	u64 en;
	const char *e = cmdline_get(cmdline, "lt.end", &en);
	bool_idle = e && en == 4 && !strncmp(e, "idle", 4);
	map_high();
	/* Ring 0 is emulated on nested hosts: run the rest in ring 3, first
	 * thing (idling needs ring 0 for sti; hlt). */
	if (!opt("lt.ring0", 0) && !bool_idle)
		go_user();
	if (has_test("hello"))
		t_hello();
	if (has_test("events"))
		t_events();
	if (has_test("uart"))
		t_uart();
	if (has_test("mem"))
		t_mem();
	if (has_test("count"))
		t_count();
	if (has_test("pio"))
		t_pio();
	if (has_test("blk") || has_test("blkw"))
		t_blk(has_test("blkw"));
	if (has_test("vsock"))
		t_vsock();
	if (has_test("net"))
		t_net();
	if (has_test("snap"))
		t_snap();
	u64 n;
	const char *end = cmdline_get(cmdline, "lt.end", &n);
	if (end && n == 5 && !strncmp(end, "reset", 5)) {
		puts("resetting\n");
		outb(0x64, 0xfe);
	} else if (end && n == 8 && !strncmp(end, "poweroff", 8)) {
		char r[128];
		report("poweroff", r);
	} else if (end && n > 5 && !strncmp(end, "exit:", 5)) {
		report_num("exit", (i64)parse_u64(end + 5, n - 5));
	} else if (end && n == 4 && !strncmp(end, "spin", 4)) {
		for (;;)
			barrier();
	} else if (end && n == 4 && !strncmp(end, "idle", 4)) {
		idle_forever();
	} else if (end && n == 5 && !strncmp(end, "crash", 5)) {
		puts("crashing\n");
		__asm__ volatile("ud2"); /* no IDT: triple fault */
	}
	puts("halting\n");
	halt_forever();
}
