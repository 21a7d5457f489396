/* The capture hook for stock kernels: a seccomp user-notification filter on
 * listen() and bind(), installed in the app's process before exec and
 * inherited by everything it starts. init (the supervisor) receives each
 * notification and, for AF_INET/AF_INET6 sockets:
 *
 *   1. takes a copy of the target's socket fd (pidfd_getfd: the same
 *      socket, not a new one) and, for bind, the address from its memory;
 *   2. reports "*-before PORT";
 *   3. performs the call itself on that socket, with the target's
 *      CAP_NET_BIND_SERVICE mirrored in its own effective set (the only
 *      capability bind() checks), so the result is what the app would get;
 *   4. reports "*-after PORT RET";
 *   5. replies with that result; the app resumes only now, so a snapshot
 *      taken at "listen-after" restores into an already-listening app.
 *
 * Everything else (other families, bad fds, unreadable addresses, a target
 * that went away) is answered with SECCOMP_USER_NOTIF_FLAG_CONTINUE: the
 * kernel runs the call as the app, unreported. Reading the target's memory
 * races with its other threads (TOCTOU), but the supervisor binds exactly
 * the bytes it read and reports, so the report always matches the call.
 * Not covered: i386 (socketcall) binaries.
 */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define X32_SYSCALL_BIT 0x40000000u

int li_seccomp_install(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		/* x32 uses the same numbers with a high bit set */
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_SYSCALL_BIT),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_listen, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_bind, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
	};
	struct sock_fprog prog = {.len = LT_ARRAY_LEN(f), .filter = f};
	int fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
			      &prog);
	if (fd < 0)
		return lt_fail_errno("seccomp user-notification filter");
	return fd;
}

/* The local port of an inet socket, or -1 for other families. */
static int sock_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

/* CAP_NET_BIND_SERVICE in the target's effective set. */
static bool target_can_bind_low(pid_t pid)
{
	char path[64], *text;
	size_t len;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (lt_read_file(path, 1 << 16, &text, &len) < 0)
		return false;
	unsigned long long eff = 0;
	const char *p = strstr(text, "\nCapEff:");
	bool ok = p && sscanf(p + 8, "%llx", &eff) == 1 && (eff & (1ull << CAP_NET_BIND_SERVICE));
	free(text);
	return ok;
}

/* Sets our own effective CAP_NET_BIND_SERVICE (it stays permitted). */
static int set_bind_cap(bool on)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -1;
	if (on)
		data[0].effective |= 1u << CAP_NET_BIND_SERVICE;
	else
		data[0].effective &= ~(1u << CAP_NET_BIND_SERVICE);
	return (int)syscall(SYS_capset, &hdr, data);
}

static void reply_result(struct seccomp_notif_resp *resp, int ret)
{
	resp->flags = 0;
	resp->val = 0;
	resp->error = ret; /* 0 or -errno */
}

static void do_listen(const struct seccomp_notif *req, struct seccomp_notif_resp *resp, int fd,
		      struct li_port *port)
{
	li_port_send(port, LT_GUEST_EV_LISTEN_BEFORE, "%d", sock_port(fd));
	int ret = listen(fd, (int)req->data.args[1]) == 0 ? 0 : -errno;
	int after = sock_port(fd);
	li_log("%s %d %d (seccomp)", LT_GUEST_EV_LISTEN_AFTER, after, ret);
	li_port_send(port, LT_GUEST_EV_LISTEN_AFTER, "%d %d", after, ret);
	reply_result(resp, ret);
}

/* process_vm_readv, or /proc/PID/mem on kernels without
 * CONFIG_CROSS_MEMORY_ATTACH. */
static int read_target(const struct seccomp_notif *req, struct iovec *local,
		       struct iovec *remote)
{
	ssize_t n = process_vm_readv((pid_t)req->pid, local, 1, remote, 1, 0);
	if (n < 0 && errno == ENOSYS) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)req->pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		n = pread(fd, local->iov_base, local->iov_len, (off_t)(uintptr_t)remote->iov_base);
		close(fd);
	}
	return n == (ssize_t)local->iov_len ? 0 : -1;
}

static bool do_bind(int listener, const struct seccomp_notif *req,
		    struct seccomp_notif_resp *resp, int fd, struct li_port *port)
{
	struct sockaddr_storage addr;
	int len = (int)req->data.args[2];
	if (len < (int)(offsetof(struct sockaddr_in, sin_port) + sizeof(in_port_t)) ||
	    len > (int)sizeof(addr))
		return false; /* let the kernel refuse it as the app */
	struct iovec local = {.iov_base = &addr, .iov_len = (size_t)len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)req->data.args[1],
			       .iov_len = (size_t)len};
	if (read_target(req, &local, &remote) < 0)
		return false;
	/* The pid could have been reused while we read its memory. */
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) < 0)
		return false;
	if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6)
		return false;
	int want = ntohs(((struct sockaddr_in *)&addr)->sin_port);

	bool drop = !target_can_bind_low((pid_t)req->pid);
	if (drop && set_bind_cap(false) < 0)
		return false;
	li_port_send(port, LT_GUEST_EV_BIND_BEFORE, "%d", want);
	int ret = bind(fd, (struct sockaddr *)&addr, (socklen_t)len) == 0 ? 0 : -errno;
	if (drop && set_bind_cap(true) < 0)
		li_log("cannot restore CAP_NET_BIND_SERVICE: %s", strerror(errno));
	li_port_send(port, LT_GUEST_EV_BIND_AFTER, "%d %d", ret == 0 ? sock_port(fd) : want, ret);
	reply_result(resp, ret);
	return true;
}

/* Fills resp for one notification; false means "continue unchanged". */
static bool handle_call(int listener, const struct seccomp_notif *req,
			struct seccomp_notif_resp *resp, struct li_port *port)
{
	unsigned nr = req->data.nr & ~X32_SYSCALL_BIT;
	int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)req->pid, 0);
	if (pidfd < 0)
		return false;
	int fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)req->data.args[0], 0);
	close(pidfd);
	if (fd < 0)
		return false;
	bool handled = false;
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) == 0 && sock_port(fd) >= 0) {
		if (nr == __NR_listen) {
			do_listen(req, resp, fd, port);
			handled = true;
		} else if (nr == __NR_bind) {
			handled = do_bind(listener, req, resp, fd, port);
		}
	}
	close(fd);
	return handled;
}

int li_seccomp_handle(int listener, struct li_port *port)
{
	static struct seccomp_notif_sizes sizes;
	if (!sizes.seccomp_notif &&
	    syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
		return lt_fail_errno("seccomp notification sizes");
	/* The kernel's structs may be larger than ours; give it room. */
	size_t req_size = sizes.seccomp_notif > sizeof(struct seccomp_notif)
				  ? sizes.seccomp_notif
				  : sizeof(struct seccomp_notif);
	size_t resp_size = sizes.seccomp_notif_resp > sizeof(struct seccomp_notif_resp)
				   ? sizes.seccomp_notif_resp
				   : sizeof(struct seccomp_notif_resp);
	struct seccomp_notif *req = lt_calloc(1, req_size);
	struct seccomp_notif_resp *resp = lt_calloc(1, resp_size);
	int rc = -1;
	if (!req || !resp)
		goto out;
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) < 0) {
		/* ENOENT: the target died before we looked; EINTR: a signal. */
		if (errno == ENOENT || errno == EINTR)
			rc = 0;
		else
			lt_fail_errno("seccomp notification");
		goto out;
	}
	resp->id = req->id;
	if (!handle_call(listener, req, resp, port)) {
		resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
		resp->error = 0;
		resp->val = 0;
	}
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp) < 0 && errno != ENOENT)
		li_log("seccomp reply: %s", strerror(errno));
	rc = 0;
out:
	free(req);
	free(resp);
	return rc;
}

int li_send_fd(int sock, int fd)
{
	char byte = 'F';
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	memset(&c, 0, sizeof(c));
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
			     .msg_controllen = sizeof(c.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != 1)
		return lt_fail_errno("send fd");
	return 0;
}

int li_recv_fd(int sock)
{
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
			     .msg_controllen = sizeof(c.buf)};
	ssize_t r;
	do
		r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return lt_fail_errno("receive fd");
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	if (r == 0 || !cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int)))
		return lt_fail("no fd received");
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}
