/* snapguest: the tiny guest of the snapshot tests and benchmarks. Its
 * behaviour is picked on the kernel command line:
 *
 *   sg.mode=snap (default)
 *     Fills sg.mem=MiB (default 8) at 16 MiB with partly compressible data
 *     (sg.rand=N random 8-byte words per 4 KiB page, default 64; the rest
 *     drawn from a small vocabulary, like text or structs), prints
 *     "memsum HEX", then for t = 1..sg.triggers (default 4): counts
 *     sg.spin loops, prints "count t", reports "trigger t". When the reply
 *     says the VM was restored it prints "restored at t" (and, unless
 *     sg.verify=0, regenerates the data and compares every byte:
 *     "verify t ok HEX" or "GUEST FAIL"). Ends with "exit sg.exit".
 *   sg.mode=echo
 *     An app's start-up: about sg.work=N million rounds of integer work and
 *     sg.mem MiB filled, then virtio-vsock, "listen-before P" and
 *     "listen-after P 0" (P = sg.port, default 8080; a snapshot taken at
 *     first-listen resumes right there), then an echo server on vsock port
 *     P for any number of concurrent host connections, forever.
 *
 * Ring 3 with IOPL 3 (see rt.c): the loops run natively on nested hosts.
 * Simple integer instructions only. */
#include "rt.h"
#include "vio.h"
#include "vmm/guest_abi.h"

#define DATA_BASE (16ULL << 20)

/* ---- port I/O in strings ------------------------------------------------
 * Every port access is a VM exit to the VMM, 20-50 us each on nested
 * hosts, and a restored guest's first work is exactly that: read the
 * "!restored" reply, print a line. KVM hands a whole `rep outsb` or
 * `rep insb` (up to a page) to the VMM in one exit, so lines and replies
 * go as strings: one exit instead of one or two per byte. */
#define SG_COM1 0x3f8

static void port_out(u16 port, const char *s, u64 n)
{
	__asm__ volatile("rep outsb" : "+S"(s), "+c"(n) : "d"(port) : "memory");
}

static void port_in(u16 port, char *d, u64 n)
{
	__asm__ volatile("rep insb" : "+D"(d), "+c"(n) : "d"(port) : "memory");
}

/* The emulated UART always takes a byte (THRE stays set), so no per-byte
 * status poll. */
static void say(const char *s)
{
	port_out(SG_COM1, s, strlen(s));
}

static void sayu(u64 v)
{
	char b[24], *e = b + sizeof(b);
	*--e = 0;
	do {
		*--e = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	say(e);
}

static void sayx(u64 v)
{
	static const char hex[] = "0123456789abcdef";
	char b[17];
	for (int i = 15; i >= 0; i--, v >>= 4)
		b[i] = hex[v & 15];
	b[16] = 0;
	say(b);
}

/* report() in two exits: the line with its '\n' (a trigger pauses the VM
 * at that exit, after the whole string), then 127 bytes of reply. Reading
 * past the reply's '\n' only starts a fresh "!ok" that the next report's
 * '\n' replaces. */
static void say_report(const char *line, char *reply)
{
	char buf[64];
	u64 n = strlen(line);
	if (n > sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	memcpy(buf, line, n);
	buf[n++] = '\n';
	port_out(LT_GUEST_PORT, buf, n);
	port_in(LT_GUEST_PORT, reply, 127);
	int i = 0;
	if (reply[0] == '!')
		while (i < 127 && reply[i] != '\n')
			i++;
	reply[i] = 0;
}

static const char *cmdline;

static u64 opt(const char *key, u64 def)
{
	u64 n;
	const char *v = cmdline_get(cmdline, key, &n);
	return v ? parse_u64(v, n) : def;
}

static int opt_is(const char *key, const char *val)
{
	u64 n;
	const char *v = cmdline_get(cmdline, key, &n);
	return v && n == strlen(val) && !strncmp(v, val, n);
}

static void fail(const char *what)
{
	say("GUEST FAIL: ");
	say(what);
	say("\n");
	report_num("exit", 99);
	halt_forever();
}

/* ---- data ------------------------------------------------------------- */

static const char vocab[32][8] = {
	"GET /api", "HTTP/1.1", "Content-", "Type: ap", "plicatio", "n/json\r\n", "{\"id\":12",
	"\"name\":\"", "user_acc", "ount\",\"e", "mail\":\"a", "lice@exa", "mple.org", "\"},\n\t\t  ",
	"        ", "00000000", "ffffffff", "00000001", "\x01\x00\x00\x00\x00\x00\x00\x00",
	"\x10\x20\x30\x40\x00\x00\x00\x00", "lttle-vm", "snapshot", "restore ", "memory  ",
	"function", "return 0", "if (x) {", "} else {", "while (1", "for (i =", "struct a",
	"static v",
};

static u64 rng_next(u64 *s)
{
	u64 x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* Word i of the data set for seed: the same on every call, so a restored
 * guest can check its memory against a fresh computation. */
static void fill_page(u64 *p, u64 page, u64 seed, u64 nrand)
{
	u64 s = (page + 1) * 0x9E3779B97F4A7C15ULL ^ seed;
	if (!s)
		s = 1;
	for (u64 w = 0; w < 512; w++) {
		u64 r = rng_next(&s);
		if (w < nrand)
			p[w] = r;
		else
			memcpy(&p[w], vocab[r & 31], 8);
	}
}

static u64 fnv(u64 h, u64 v)
{
	return (h ^ (v & 0xffffffff)) * 0x100000001b3ULL ^ (v >> 32);
}

static u64 data_fill(u64 mib, u64 seed, u64 nrand)
{
	u64 h = 0xcbf29ce484222325ULL;
	u64 pages = mib << 8;
	for (u64 pg = 0; pg < pages; pg++) {
		u64 *p = (u64 *)(DATA_BASE + (pg << 12));
		fill_page(p, pg, seed, nrand);
		for (int w = 0; w < 512; w++)
			h = fnv(h, p[w]);
	}
	return h;
}

static u64 data_verify(u64 mib, u64 seed, u64 nrand)
{
	static u64 want[512];
	u64 h = 0xcbf29ce484222325ULL;
	u64 pages = mib << 8;
	for (u64 pg = 0; pg < pages; pg++) {
		u64 *p = (u64 *)(DATA_BASE + (pg << 12));
		fill_page(want, pg, seed, nrand);
		for (int w = 0; w < 512; w++) {
			if (p[w] != want[w])
				fail("memory differs after restore");
			h = fnv(h, p[w]);
		}
	}
	return h;
}

/* ---- snap mode -------------------------------------------------------- */

static int is_restored(const char *reply)
{
	return !strncmp(reply, "!restored ", 10);
}

/* Reports "<word> <v><tail>" and keeps the host's reply. */
static void report_u(const char *word, u64 v, const char *tail, char *reply)
{
	char line[48], digits[24];
	u64 n = strlen(word), k = 0;
	memcpy(line, word, n);
	line[n++] = ' ';
	do {
		digits[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (k)
		line[n++] = digits[--k];
	memcpy(line + n, tail, strlen(tail) + 1);
	say_report(line, reply);
}

static void snap_mode(void)
{
	u64 mib = opt("sg.mem", 8), nrand = opt("sg.rand", 64), seed = opt("sg.seed", 7);
	u64 triggers = opt("sg.triggers", 4), spin = opt("sg.spin", 0);
	int verify = (int)opt("sg.verify", 1);
	if (mib > 100)
		fail("sg.mem above 100 MiB (ring 3 maps 128 MiB)");
	u64 sum = data_fill(mib, seed, nrand);
	say("memsum ");
	sayx(sum);
	say("\n");
	volatile u64 counter = 0;
	char reply[128];
	for (u64 t = 1; t <= triggers; t++) {
		for (volatile u64 s = 0; s < spin; s++)
			;
		counter++;
		say("count ");
		sayu(counter);
		say("\n");
		report_u("trigger", t, "", reply);
		if (!is_restored(reply))
			continue;
		say("restored at ");
		sayu(counter);
		/* "!restored WALL_NS ENTROPY": show the entropy's start. */
		const char *e = reply + 10;
		while (*e && *e != ' ')
			e++;
		char ent[17];
		memcpy(ent, *e ? e + 1 : e, 16);
		ent[16] = 0;
		say(" entropy ");
		say(ent);
		say("\n");
		if (verify) {
			u64 v = data_verify(mib, seed, nrand);
			if (v != sum)
				fail("memory checksum differs after restore");
			say("verify ");
			sayu(t);
			say(" ok ");
			sayx(v);
			say("\n");
		}
	}
	say("done counter ");
	sayu(counter);
	say("\n");
	report_num("exit", (i64)opt("sg.exit", 0));
	halt_forever();
}

/* ---- echo mode: a vsock echo server ------------------------------------- */

struct vhdr {
	u64 src_cid, dst_cid;
	u32 src_port, dst_port, len;
	u16 type, op;
	u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE,
       OP_CREDIT_REQUEST };

#define HDR 44
#define RXB 6
#define RX_SIZE 4096
#define MAX_CONNS 128
#define BUF_ALLOC (64u * 1024)

static u8 rxbuf[RXB][RX_SIZE] __attribute__((aligned(4096)));
static u8 txbuf[RX_SIZE] __attribute__((aligned(4096)));
static u8 pkt[RX_SIZE];
static u64 guest_cid;
static u32 listen_port;

static struct conn {
	u32 peer; /* host port; 0 = free */
	u32 fwd_cnt;
} conns[MAX_CONNS];

static struct conn *conn_find(u32 peer)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].peer == peer)
			return &conns[i];
	return 0;
}

/* Nothing to do: block in the VMM until a device raises an interrupt
 * (ring 3 cannot HLT), so an idle guest leaves the host core to the
 * device threads, as a halted Linux guest does. */
static void idle(void)
{
	outb(LT_GUEST_IDLE_PORT, 10);
}

/* vq_take() polls, then idles, until queue qi has a used entry. */
static int vq_take_wait(struct vdev *d, int qi, u32 *len);

/* vq_wait() without its interrupt-status read and acknowledge (two MMIO
 * exits per entry): this guest polls with interrupts off, so it never
 * needs them. -1 if no used entry is ready. */
static int vq_take(struct vdev *d, int qi, u32 *len)
{
	struct vq *q = d->q[qi];
	for (int i = 0; i < 256; i++) {
		barrier();
		if (q->used_idx != q->last_used) {
			int e = q->last_used % VQ_SIZE;
			q->last_used++;
			if (len)
				*len = q->used_ring[e].len;
			return (int)q->used_ring[e].id;
		}
	}
	return -1;
}

static int vq_take_wait(struct vdev *d, int qi, u32 *len)
{
	for (;;) {
		/* A short spin first: the device usually answers within
		 * microseconds, and an idle exit costs more than that. */
		for (int k = 0; k < 64; k++) {
			int id = vq_take(d, qi, len);
			if (id >= 0)
				return id;
		}
		idle();
	}
}

static void rx_post(struct vdev *d, int i)
{
	u64 a = (u64)rxbuf[i];
	u32 l = RX_SIZE;
	u16 f = 2;
	vq_add(d, 0, &a, &l, &f, 1);
}

static void vs_send(struct vdev *d, u32 peer, u16 op, u32 fwd, const u8 *data, u32 len)
{
	struct vhdr *h = (struct vhdr *)txbuf;
	memset(h, 0, sizeof(*h));
	h->src_cid = guest_cid;
	h->dst_cid = 2;
	h->src_port = listen_port;
	h->dst_port = peer;
	h->len = len;
	h->type = 1;
	h->op = op;
	h->buf_alloc = BUF_ALLOC;
	h->fwd_cnt = fwd;
	if (len)
		memcpy(txbuf + HDR, data, len);
	u64 a = (u64)txbuf;
	u32 l = HDR + len;
	u16 f = 0;
	vq_add(d, 1, &a, &l, &f, 1);
	vq_take_wait(d, 1, 0);
}

static void echo_packet(struct vdev *d, struct vhdr *h)
{
	if (h->dst_port != listen_port) {
		if (h->op != OP_RST)
			vs_send(d, h->src_port, OP_RST, 0, 0, 0);
		return;
	}
	struct conn *c = conn_find(h->src_port);
	switch (h->op) {
	case OP_REQUEST:
		if (!c)
			c = conn_find(0);
		if (!c) {
			vs_send(d, h->src_port, OP_RST, 0, 0, 0);
			return;
		}
		c->peer = h->src_port;
		c->fwd_cnt = 0;
		vs_send(d, c->peer, OP_RESPONSE, 0, 0, 0);
		break;
	case OP_RW:
		if (!c) {
			vs_send(d, h->src_port, OP_RST, 0, 0, 0);
			return;
		}
		c->fwd_cnt += h->len;
		vs_send(d, c->peer, OP_RW, c->fwd_cnt, pkt + HDR, h->len);
		break;
	case OP_CREDIT_REQUEST:
		if (c)
			vs_send(d, c->peer, OP_CREDIT_UPDATE, c->fwd_cnt, 0, 0);
		break;
	case OP_SHUTDOWN:
		if (c) {
			vs_send(d, c->peer, OP_RST, c->fwd_cnt, 0, 0);
			c->peer = 0;
		}
		break;
	case OP_RST:
		if (c)
			c->peer = 0;
		break;
	default:
		break;
	}
}

static void echo_mode(void)
{
	/* Start-up work: computation, then memory. */
	u64 rounds = opt("sg.work", 0) * 1000000ULL;
	volatile u64 acc = 1;
	for (u64 i = 0; i < rounds; i++)
		acc = acc * 6364136223846793005ULL + i;
	u64 mib = opt("sg.mem", 0);
	if (mib > 100)
		fail("sg.mem above 100 MiB (ring 3 maps 128 MiB)");
	u64 sum = mib ? data_fill(mib, opt("sg.seed", 7), opt("sg.rand", 64)) : 0;
	say("startup done ");
	sayx(sum ^ acc);
	say("\n");

	struct vdev d;
	u64 base = vio_find(cmdline, 19);
	if (!base)
		fail("no virtio-vsock device");
	if (vio_init(&d, base, 3, 0) < 0)
		fail("virtio-vsock init");
	guest_cid = *(volatile u64 *)(base + 0x100);
	for (int i = 0; i < RXB; i++)
		rx_post(&d, i);
	listen_port = (u32)opt("sg.port", 8080);
	char reply[128];
	report_u("listen-before", listen_port, "", reply);
	/* The first-listen capture point. */
	report_u("listen-after", listen_port, " 0", reply);
	/* A restored guest logs right after its first echo went out: the
	 * serial line costs an exit per byte (`rep outsb` is not batched), and
	 * the first request should not wait on it. */
	int announce = is_restored(reply);
	if (!announce)
		say("echo: serving\n");
	int next = 0;
	for (;;) {
		u32 len;
		vq_take_wait(&d, 0, &len);
		int i = next;
		next = (next + 1) % RXB;
		if (len > RX_SIZE)
			len = RX_SIZE;
		memcpy(pkt, rxbuf[i], len);
		rx_post(&d, i);
		struct vhdr *h = (struct vhdr *)pkt;
		if (len < HDR || h->len > len - HDR)
			continue;
		echo_packet(&d, h);
		if (announce && h->op == OP_RW) { /* the echo is already sent */
			say("echo: restored, serving\n");
			announce = 0;
		}
	}
}

void gmain(u8 *zero_page)
{
	cmdline = (const char *)(u64) * (u32 *)(zero_page + 0x228);
	go_user();
	if (opt_is("sg.mode", "echo"))
		echo_mode();
	snap_mode();
}
