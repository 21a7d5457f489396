/* lttle-init: the seccomp listen()/bind() hook end to end, as a normal
 * process. A child installs the filter (as init does before exec) and
 * makes real calls; the test's supervisor thread handles the
 * notifications and writes the reports to a pipe. Each call must be
 * reported with the right port and return what it would without the hook.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		return -1;
	close(fd);
	return ntohs(a.sin_port);
}

static int bind_lo(int fd, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	return bind(fd, (struct sockaddr *)&a, sizeof(a));
}

struct sup {
	int listener;
	struct li_port port;
	int handled;
};

static void *supervisor(void *arg)
{
	struct sup *s = arg;
	for (;;) {
		struct pollfd p = {.fd = s->listener, .events = POLLIN};
		if (poll(&p, 1, 10000) <= 0)
			break;
		if (p.revents & POLLIN) {
			if (li_seccomp_handle(s->listener, &s->port) < 0)
				break;
			s->handled++;
		} else {
			break; /* POLLHUP: the hooked process is gone */
		}
	}
	return NULL;
}

/* The hooked program. Reports its findings on `out`; exit 0 = all calls
 * behaved as without the hook. */
static int hooked_child(int fdsock, int out, int port, bool test_low_port)
{
	int listener = li_seccomp_install();
	if (listener < 0 || li_send_fd(fdsock, listener) < 0)
		return 10;
	close(listener);

	/* bind + listen + serve one connection */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind_lo(s, port) != 0)
		return 11;
	if (listen(s, 8) != 0)
		return 12;
	dprintf(out, "listening\n");
	int c = accept(s, NULL, NULL);
	if (c < 0 || write(c, "hi", 2) != 2)
		return 13;
	close(c);

	/* the same port again: the app's error, unchanged */
	int s2 = socket(AF_INET, SOCK_STREAM, 0);
	if (bind_lo(s2, port) != -1 || errno != EADDRINUSE)
		return 14;
	close(s2);

	/* listen() without bind(): the kernel picks the port */
	int s3 = socket(AF_INET6, SOCK_STREAM, 0);
	if (s3 < 0 || listen(s3, 1) != 0)
		return 15;
	struct sockaddr_in6 a6;
	socklen_t len = sizeof(a6);
	if (getsockname(s3, (struct sockaddr *)&a6, &len) < 0)
		return 16;
	dprintf(out, "auto %d\n", ntohs(a6.sin6_port));

	/* other families pass through, unreported */
	int u = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un ua = {.sun_family = AF_UNIX};
	snprintf(ua.sun_path, sizeof(ua.sun_path), "/tmp/lttle-hook-%d.sock", (int)getpid());
	unlink(ua.sun_path);
	if (bind(u, (struct sockaddr *)&ua, sizeof(ua)) != 0 || listen(u, 1) != 0)
		return 17;
	unlink(ua.sun_path);

	/* bad arguments keep their errors too */
	if (listen(9999, 1) != -1 || errno != EBADF)
		return 18;
	int s5 = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(s5, (struct sockaddr *)1, sizeof(struct sockaddr_in)) != -1 || errno != EFAULT)
		return 19;

	/* an unprivileged app still may not bind a low port, although the
	 * supervisor (root) performs the call */
	if (test_low_port) {
		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			return 20;
		int s4 = socket(AF_INET, SOCK_STREAM, 0);
		if (bind_lo(s4, 80) != -1 || errno != EACCES)
			return 21;
	}
	dprintf(out, "done\n");
	return 0;
}

static void test_hook_reports_and_preserves(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip(); /* installs the filter without no_new_privs, like init */
	int port = free_port();
	assert_true(port > 0);
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
	int unpriv_start = 1024;
	if (f) {
		if (fscanf(f, "%d", &unpriv_start) != 1)
			unpriv_start = 1024;
		fclose(f);
	}
	bool low = unpriv_start > 80;

	int sp[2], rep[2], out[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(pipe(rep), 0);
	assert_int_equal(pipe(out), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sp[0]);
		close(out[0]);
		close(rep[0]);
		close(rep[1]);
		_exit(hooked_child(sp[1], out[1], port, low));
	}
	close(sp[1]);
	close(out[1]);
	struct sup s = {.port = {.kind = LI_PORT_FD, .fd = rep[1]}};
	s.listener = li_recv_fd(sp[0]);
	assert_true(s.listener >= 0);
	close(sp[0]);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, supervisor, &s), 0);

	/* the app's listening socket really works */
	FILE *o = fdopen(out[0], "r");
	char line[128];
	assert_non_null(fgets(line, sizeof(line), o));
	assert_string_equal(line, "listening\n");
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	char hi[3] = "";
	assert_int_equal(read(c, hi, 2), 2);
	assert_string_equal(hi, "hi");
	close(c);

	int autoport = -1;
	assert_non_null(fgets(line, sizeof(line), o));
	assert_int_equal(sscanf(line, "auto %d", &autoport), 1);
	assert_true(autoport > 0);
	assert_non_null(fgets(line, sizeof(line), o));
	assert_string_equal(line, "done\n");
	fclose(o);

	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	pthread_join(t, NULL);
	close(s.listener);
	close(rep[1]);

	char expect[1024];
	snprintf(expect, sizeof(expect),
		 "bind-before %d\nbind-after %d 0\n"
		 "listen-before %d\nlisten-after %d 0\n"
		 "bind-before %d\nbind-after %d -%d\n"
		 "listen-before 0\nlisten-after %d 0\n"
		 "%s",
		 port, port, port, port, port, port, EADDRINUSE, autoport,
		 low ? "bind-before 80\nbind-after 80 -13\n" : "");
	char got[1024] = "";
	size_t n = 0;
	ssize_t r;
	while ((r = read(rep[0], got + n, sizeof(got) - 1 - n)) > 0)
		n += (size_t)r;
	got[n] = '\0';
	close(rep[0]);
	assert_string_equal(got, expect);
	/* every call was seen: bind, listen, bind, listen, unix bind + listen,
	 * + bad listen + bad bind (+ low bind) */
	assert_int_equal(s.handled, low ? 9 : 8);
}

static void test_fd_passing(void **state)
{
	(void)state;
	int sp[2], p[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(li_send_fd(sp[0], p[1]), 0);
	int got = li_recv_fd(sp[1]);
	assert_true(got >= 0 && got != p[1]);
	assert_int_equal(write(got, "x", 1), 1);
	char c;
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(c, 'x');
	/* a peer that closes without sending: an error, not a hang */
	close(sp[0]);
	assert_int_equal(li_recv_fd(sp[1]), -1);
	close(sp[1]);
	close(p[0]);
	close(p[1]);
	close(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hook_reports_and_preserves),
		cmocka_unit_test(test_fd_passing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
