/* The VMM's seccomp allow-list (libseccomp), applied to every thread once
 * the VM runs. It covers the run loop, devices, the control channel and
 * what a snapshot writer/restorer in the same process needs (files,
 * threads, userfaultfd); ioctls are limited to KVM, TTY and userfaultfd
 * requests. Anything else raises SIGSYS, which names the syscall. */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/vmm_int.h"

static const char *const allowed[] = {
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"lseek", "close", "fstat", "newfstatat", "statx", "openat", "fsync", "fdatasync",
	"ftruncate", "fallocate", "rename", "renameat", "renameat2", "unlink", "unlinkat",
	"mkdirat", "getdents64", "readlinkat", "faccessat", "faccessat2", "fcntl", "dup",
	"dup3", "pipe2", "epoll_wait", "epoll_pwait", "epoll_ctl", "epoll_create1",
	"eventfd2", "timerfd_create", "timerfd_settime", "poll", "ppoll", "accept4",
	"connect", "bind", "listen", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown",
	"getsockopt", "setsockopt", "getsockname", "getpeername", "futex", "rt_sigreturn",
	"rt_sigprocmask", "rt_sigaction", "sigaltstack", "tgkill", "tkill", "gettid",
	"getpid", "exit", "exit_group", "mmap", "munmap", "mprotect", "madvise", "brk",
	"mremap", "mincore", "clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
	"getrandom", "sched_yield", "sched_getaffinity", "clone", "clone3",
	"set_robust_list", "rseq", "prlimit64", "restart_syscall", "userfaultfd",
	"memfd_create", "uname", "getuid", "geteuid", "membarrier", "copy_file_range",
	"sendfile", "splice", "wait4", "rmdir", "mkdir", "access", "stat", "lstat",
	"readlink", "open",
};

static const unsigned long ioctls[] = {
	KVM_RUN, KVM_REGISTER_COALESCED_MMIO, KVM_UNREGISTER_COALESCED_MMIO, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_FPU,
	KVM_SET_FPU, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_SET_XSAVE, KVM_GET_XCRS,
	KVM_SET_XCRS, KVM_GET_MSRS, KVM_SET_MSRS, KVM_GET_LAPIC, KVM_SET_LAPIC,
	KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
	KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, KVM_GET_IRQCHIP, KVM_SET_IRQCHIP,
	KVM_GET_PIT2, KVM_SET_PIT2, KVM_GET_CLOCK, KVM_SET_CLOCK, KVM_IRQ_LINE,
	KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG, KVM_CHECK_EXTENSION, KVM_KVMCLOCK_CTRL,
	KVM_GET_MSR_INDEX_LIST, KVM_SET_TSC_KHZ, KVM_GET_TSC_KHZ, KVM_GET_CPUID2,
	FIONBIO, FIONREAD, TCGETS, TCSETS, TIOCGWINSZ, UFFDIO_API, UFFDIO_REGISTER,
	UFFDIO_UNREGISTER, UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE,
};

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	char msg[128];
	int n = snprintf(msg, sizeof(msg),
			 "lttle: seccomp blocked syscall %d (run with --no-seccomp to debug)\n",
			 si->si_syscall);
	if (n > 0)
		(void)!write(2, msg, (size_t)n);
	_exit(159);
}

int lt_seccomp_install(const char *const *extra)
{
#if defined(__SANITIZE_ADDRESS__)
	/* Sanitizer runtimes (make asan) make syscalls at unpredictable times
	 * (the leak checker even ptraces from a helper task): no filter. */
	(void)extra;
	lt_warn("seccomp: not installed in a sanitizer build");
	return 0;
#endif
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return lt_fail_errno("sigaction SIGSYS");
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx)
		return lt_fail("seccomp_init failed");
	int rc = 0;
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) < 0)
		rc = lt_fail("seccomp: cannot sync threads");
	for (size_t i = 0; i < LT_ARRAY_LEN(allowed) && rc == 0; i++) {
		int nr = seccomp_syscall_resolve_name(allowed[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0)
			rc = lt_fail("seccomp: rule for %s", allowed[i]);
	}
	for (size_t i = 0; extra && extra[i] && rc == 0; i++) {
		int nr = seccomp_syscall_resolve_name(extra[i]);
		if (nr == __NR_SCMP_ERROR || seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0)
			rc = lt_fail("seccomp: unknown syscall %s", extra[i]);
	}
	/* Guest-initiated vsock connections open unix sockets only. */
	/* Spelled out: clang's -Wmissing-field-initializers rejects SCMP_A0(). */
	const struct scmp_arg_cmp unix_only = {.arg = 0, .op = SCMP_CMP_EQ, .datum_a = AF_UNIX};
	if (rc == 0 && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, unix_only) < 0)
		rc = lt_fail("seccomp: socket rule");
	for (size_t i = 0; i < LT_ARRAY_LEN(ioctls) && rc == 0; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     (struct scmp_arg_cmp){.arg = 1, .op = SCMP_CMP_MASKED_EQ,
							   .datum_a = 0xffffffffUL,
							   .datum_b = ioctls[i]}) < 0)
			rc = lt_fail("seccomp: ioctl rule");
	if (rc == 0) {
		int e = seccomp_load(ctx);
		if (e < 0) {
			errno = -e;
			rc = lt_fail_errno("seccomp_load");
		}
	}
	seccomp_release(ctx);
	return rc;
}

int lt_vm_seccomp(struct lt_vm *vm, const char *const *extra)
{
	(void)vm;
	return lt_seccomp_install(extra);
}
