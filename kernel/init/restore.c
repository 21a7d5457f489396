/* The restore notice on engines whose guest device cannot answer (QEMU's
 * isa-debugcon): the host writes "!restored WALL_NS ENTROPY_HEX\n" on a
 * tty named by lttle.restore_tty= after every restore (guest_abi.h), and
 * a child of init applies it: steps the clock, reseeds the CRNG, reports
 * "log restored". Every byte on that tty is hostile: lines are bounded
 * and parsed strictly, anything else is dropped. */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define RESTORED_PREFIX "!restored "
/* 2^63 - 1 ns is year 2262: more digits can only be hostile. */
#define WALL_DIGITS_MAX 19

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int li_restore_parse(const char *line, size_t len, uint64_t *wall_ns, uint8_t seed[LI_RESTORE_SEED])
{
	size_t pl = strlen(RESTORED_PREFIX);
	if (len > 0 && line[len - 1] == '\r') /* a tty may add one */
		len--;
	if (len < pl || memcmp(line, RESTORED_PREFIX, pl))
		return -1;
	size_t i = pl, d0 = i;
	uint64_t ns = 0;
	while (i < len && line[i] >= '0' && line[i] <= '9') {
		if (i - d0 >= WALL_DIGITS_MAX)
			return -1;
		ns = ns * 10 + (uint64_t)(line[i] - '0');
		i++;
	}
	if (i == d0 || ns == 0 || ns > (uint64_t)INT64_MAX || i >= len || line[i] != ' ')
		return -1;
	i++;
	if (len - i != 2 * LI_RESTORE_SEED)
		return -1;
	uint8_t tmp[LI_RESTORE_SEED];
	for (size_t k = 0; k < LI_RESTORE_SEED; k++) {
		int hi = hexval(line[i + 2 * k]), lo = hexval(line[i + 2 * k + 1]);
		if (hi < 0 || lo < 0) {
			explicit_bzero(tmp, sizeof(tmp));
			return -1;
		}
		tmp[k] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(seed, tmp, sizeof(tmp));
	explicit_bzero(tmp, sizeof(tmp));
	*wall_ns = ns;
	return 0;
}

int li_restore_apply(const char *line, size_t len, const struct li_restore_sink *s)
{
	uint64_t ns;
	uint8_t seed[LI_RESTORE_SEED];
	if (li_restore_parse(line, len, &ns, seed) < 0)
		return 0;
	/* Entropy first: a clock failure must not leave the RNG shared. */
	int rc = s->add_entropy(s->ctx, seed, sizeof(seed));
	explicit_bzero(seed, sizeof(seed));
	if (s->set_clock(s->ctx, ns) < 0)
		rc = -1;
	return rc < 0 ? -1 : 1;
}

ssize_t li_restore_read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	bool over = false;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return lt_fail_errno("restore tty");
		if (r == 0)
			return lt_fail("restore tty: end of file");
		if (c == '\n')
			break;
		if (n + 1 < cap)
			buf[n++] = c;
		else
			over = true;
	}
	buf[n] = '\0';
	return over ? -2 : (ssize_t)n;
}

static int sys_set_clock(void *ctx, uint64_t wall_ns)
{
	(void)ctx;
	struct timespec ts = {.tv_sec = (time_t)(wall_ns / 1000000000ull),
			      .tv_nsec = (long)(wall_ns % 1000000000ull)};
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		return lt_fail_errno("cannot step the clock");
	return 0;
}

/* Credited, then an immediate reseed: without it the CRNG would keep
 * the snapshot's key until its next scheduled reseed. */
static int sys_add_entropy(void *ctx, const uint8_t *seed, size_t n)
{
	(void)ctx;
	if (n != LI_RESTORE_SEED)
		return lt_fail("entropy of %zu bytes", n);
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("/dev/urandom");
	struct {
		struct rand_pool_info info;
		uint8_t buf[LI_RESTORE_SEED];
	} e = {.info = {.entropy_count = 8 * LI_RESTORE_SEED, .buf_size = LI_RESTORE_SEED}};
	memcpy(e.buf, seed, LI_RESTORE_SEED);
	int rc = 0;
	if (ioctl(fd, RNDADDENTROPY, &e) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
		rc = lt_fail_errno("cannot reseed the RNG");
	explicit_bzero(&e, sizeof(e));
	close(fd);
	return rc;
}

const struct li_restore_sink li_restore_sink_system = {sys_set_clock, sys_add_entropy, NULL};

/* Raw: no echo of the secret back to the host, no line editing, no
 * signals from bytes the host sends. */
static int open_tty(const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/dev/%s", name);
	int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("%s", path);
	struct termios t;
	if (tcgetattr(fd, &t) < 0) {
		lt_fail_errno("%s: not a tty", path);
		close(fd);
		return -1;
	}
	cfmakeraw(&t);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSANOW, &t) < 0) {
		lt_fail_errno("%s: raw mode", path);
		close(fd);
		return -1;
	}
	tcflush(fd, TCIFLUSH); /* nothing from before boot counts */
	return fd;
}

int li_restore_serve(int fd, const struct li_restore_sink *s, struct li_port *port)
{
	char line[LT_GUEST_LINE_MAX + 1];
	for (;;) {
		ssize_t n = li_restore_read_line(fd, line, sizeof(line));
		if (n == -1)
			return -1;
		if (n == -2) {
			li_log("restore tty: line longer than %d bytes dropped", LT_GUEST_LINE_MAX);
			continue;
		}
		int rc = li_restore_apply(line, (size_t)n, s);
		explicit_bzero(line, sizeof(line));
		if (rc == 0) {
			li_log("restore tty: malformed line dropped");
		} else if (rc < 0) {
			li_log("restore: %s", lt_errmsg());
			li_port_send(port, LT_GUEST_EV_LOG, "restore failed");
		} else {
			li_log("restored: clock stepped, RNG reseeded");
			li_port_send(port, LT_GUEST_EV_LOG, "restored");
		}
	}
}

pid_t li_restore_start(const char *tty, struct li_port *port)
{
	if (!tty)
		return 0;
	int fd = open_tty(tty);
	if (fd < 0) {
		li_log("no restore channel: %s", lt_errmsg());
		return 0;
	}
	pid_t pid = fork();
	if (pid != 0) {
		if (pid < 0)
			li_log("cannot fork the restore reader: %s", strerror(errno));
		close(fd);
		/* The QEMU engine then waits for "restored" after each restore
		 * before it hands the instance out. */
		if (pid > 0)
			li_port_send(port, LT_GUEST_EV_LOG, LI_RESTORE_READY);
		return pid < 0 ? 0 : pid;
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_NAME, "lttle-restore");
	li_restore_serve(fd, &li_restore_sink_system, port);
	li_log("restore reader: %s", lt_errmsg());
	_exit(0);
}
