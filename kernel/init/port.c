/* Reports to the VMM through the lttle guest device (guest_abi.h).
 *
 * On the patched kernel every line goes through /proc/lttle, so it is
 * serialised with the kernel's own listen()/bind() reports and the kernel
 * applies the host's reply. On a stock kernel init writes the port itself
 * (ioperm + outb) and applies a "!restored" reply in userspace. */
#include "init.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* "EVENT[ ARGS]" into buf; at most LT_GUEST_LINE_MAX - 1 bytes so the
 * '\n' still fits the line. */
static int vformat(char *buf, size_t cap, const char *event, const char *fmt, va_list ap)
{
	char tmp[2 * LT_GUEST_LINE_MAX];
	bool args = fmt && *fmt;
	int n = snprintf(tmp, sizeof(tmp), "%s%s", event, args ? " " : "");
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return lt_fail("event \"%.20s\" too long", event);
	if (args) {
		int m = vsnprintf(tmp + n, sizeof(tmp) - (size_t)n, fmt, ap);
		if (m < 0 || (size_t)(n + m) >= sizeof(tmp))
			return lt_fail("%s report too long", event);
		n += m;
	}
	size_t max = LT_GUEST_LINE_MAX - 1;
	if (cap == 0)
		return lt_fail("no room for the %s report", event);
	if (cap - 1 < max)
		max = cap - 1;
	if ((size_t)n > max)
		return lt_fail("%s report is %d bytes, more than %zu", event, n, max);
	for (int i = 0; i < n; i++) {
		if (!isprint((unsigned char)tmp[i]))
			return lt_fail("%s report holds a control character", event);
	}
	memcpy(buf, tmp, (size_t)n + 1);
	return n;
}

int li_port_format(char *buf, size_t cap, const char *event, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vformat(buf, cap, event, fmt, ap);
	va_end(ap);
	return n;
}

int li_port_parse_reply(const char *line, uint64_t *wall_ns, uint8_t seed[32])
{
	char hex[65];
	unsigned long long ns;
	int used = 0;
	if (sscanf(line, "!restored %llu %64[0-9a-fA-F]%n", &ns, hex, &used) != 2 ||
	    strlen(hex) != 64 || (line[used] && line[used] != '\n'))
		return 0;
	for (int i = 0; i < 32; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return 0;
		seed[i] = (uint8_t)v;
	}
	*wall_ns = ns;
	return 1;
}

/* A stock kernel does not know about restores: step the clock and reseed
 * the RNG here. */
static void apply_restored(uint64_t wall_ns, const uint8_t seed[32])
{
	struct timespec ts = {.tv_sec = (time_t)(wall_ns / 1000000000ull),
			      .tv_nsec = (long)(wall_ns % 1000000000ull)};
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		li_log("cannot step the clock after restore: %s", strerror(errno));
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct {
		struct rand_pool_info info;
		uint8_t buf[32];
	} e = {.info = {.entropy_count = 256, .buf_size = 32}};
	memcpy(e.buf, seed, 32);
	if (ioctl(fd, RNDADDENTROPY, &e) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
		li_log("cannot reseed the RNG after restore: %s", strerror(errno));
	explicit_bzero(&e, sizeof(e));
	close(fd);
}

static void raw_send(const char *line, size_t n)
{
	for (size_t i = 0; i < n; i++)
		outb((unsigned char)line[i], LT_GUEST_PORT);
	outb('\n', LT_GUEST_PORT);
	char reply[LT_GUEST_LINE_MAX + 1];
	size_t r = 0;
	unsigned char c = inb(LT_GUEST_PORT);
	if (c != LT_GUEST_REPLY_MARK)
		return; /* no host answer (e.g. isa-debugcon) */
	reply[r++] = (char)c;
	while (r < LT_GUEST_LINE_MAX && (c = inb(LT_GUEST_PORT)) != '\n')
		reply[r++] = (char)c;
	reply[r] = '\0';
	uint64_t ns;
	uint8_t seed[32];
	if (li_port_parse_reply(reply, &ns, seed))
		apply_restored(ns, seed);
	explicit_bzero(seed, sizeof(seed));
}

int li_port_open(struct li_port *p)
{
	p->fd = open(LT_GUEST_PROC_PATH, O_WRONLY | O_CLOEXEC);
	if (p->fd >= 0) {
		p->kind = LI_PORT_PROC;
		return 0;
	}
	if (ioperm(LT_GUEST_PORT, 1, 1) == 0) {
		p->kind = LI_PORT_RAW;
		return 0;
	}
	p->kind = LI_PORT_NONE;
	return lt_fail_errno("no %s and no port access", LT_GUEST_PROC_PATH);
}

void li_port_close(struct li_port *p)
{
	if (p->kind == LI_PORT_PROC && p->fd >= 0)
		close(p->fd);
	p->kind = LI_PORT_NONE;
	p->fd = -1;
}

int li_port_send(struct li_port *p, const char *event, const char *fmt, ...)
{
	char line[LT_GUEST_LINE_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	int n = vformat(line, sizeof(line), event, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	switch (p->kind) {
	case LI_PORT_NONE:
		return 0;
	case LI_PORT_RAW:
		raw_send(line, (size_t)n);
		return 0;
	case LI_PORT_PROC: /* one write per line: the kernel takes whole lines */
		if (write(p->fd, line, (size_t)n) != n)
			return lt_fail_errno("%s \"%s\"", LT_GUEST_PROC_PATH, line);
		return 0;
	case LI_PORT_FD:
		line[n++] = '\n';
		return lt_write_all(p->fd, line, (size_t)n);
	}
	return 0;
}
