/* Init's log. In the guest it goes to /dev/kmsg, so each line carries the
 * kernel's timestamp on the console (the boot benchmark reads them); until
 * then, and on the host, to stderr. */
#include "init.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static int kmsg_fd = -1;

void li_log_use_kmsg(void)
{
	/* userspace lines are rate-limited by default; ours are few but
	 * must not be dropped */
	int fd = open("/proc/sys/kernel/printk_devkmsg", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "on\n", 3);
		close(fd);
	}
	if (kmsg_fd < 0)
		kmsg_fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
}

void li_log(const char *fmt, ...)
{
	char line[512];
	int n;
	bool kmsg = kmsg_fd >= 0;
	/* <6> = KERN_INFO; /dev/kmsg takes one record per write */
	n = snprintf(line, sizeof(line), "%slttle-init: ", kmsg ? "<6>" : "");
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m < (int)(sizeof(line) - (size_t)n - 1) ? m : (int)(sizeof(line) - (size_t)n - 2);
	line[n++] = '\n';
	(void)!write(kmsg ? kmsg_fd : STDERR_FILENO, line, (size_t)n);
}
