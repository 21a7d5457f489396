/* The line server (src/util/lines.c) behind the VMM's and lttle-vmhost's
 * control sockets: lines in and replies out, partial lines, several lines
 * per read, the too-long refusal, publish to subscribers only (from
 * another thread), adopted sockets, and a client that stops reading. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/util.h"

struct fixture {
	char dir[64], path[96];
	struct lt_lines *l;
	int lines_seen;
};

/* Echoes "echo X" as "got X"; "sub" subscribes; counts lines. */
static void on_line(void *user, struct lt_lines_client *k, char *line)
{
	struct fixture *f = user;
	f->lines_seen++;
	char buf[LT_LINES_IN_MAX + 8];
	if (!strncmp(line, "echo ", 5)) {
		snprintf(buf, sizeof(buf), "got %s", line + 5);
		lt_lines_send(k, buf);
	} else if (!strcmp(line, "sub")) {
		lt_lines_subscribe(k);
		lt_lines_send(k, "subscribed");
	}
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/lt-lines.XXXXXX");
	if (!f || !mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/c.sock", f->dir);
	if (lt_lines_new(on_line, f, "TOO LONG", &f->l) < 0 || lt_lines_listen(f->l, f->path, 8) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	lt_lines_free(f->l);
	assert_int_equal(access(f->path, F_OK), -1); /* free unlinks it */
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Runs the server until fd has input or 2 s pass. */
static void pump_until_readable(struct fixture *f, int fd)
{
	for (int i = 0; i < 400; i++) {
		struct pollfd p[2] = {{.fd = lt_lines_fd(f->l), .events = POLLIN},
				      {.fd = fd, .events = POLLIN}};
		poll(p, 2, 5);
		if (p[0].revents)
			lt_lines_dispatch(f->l);
		if (p[1].revents)
			return;
	}
	fail_msg("no reply within 2 s");
}

static void pump(struct fixture *f, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		struct pollfd p = {.fd = lt_lines_fd(f->l), .events = POLLIN};
		if (poll(&p, 1, 5) > 0)
			lt_lines_dispatch(f->l);
	}
}

static int connect_to(struct fixture *f)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, f->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	pump(f, 2); /* accept */
	return fd;
}

/* Reads one line (without '\n'), driving the server meanwhile. */
static void read_line(struct fixture *f, int fd, char *out, size_t n)
{
	size_t len = 0;
	for (;;) {
		pump_until_readable(f, fd);
		char c;
		ssize_t r = recv(fd, &c, 1, 0);
		assert_int_equal(r, 1);
		if (c == '\n')
			break;
		assert_true(len + 1 < n);
		out[len++] = c;
	}
	out[len] = '\0';
}

static void test_lines_and_replies(void **state)
{
	struct fixture *f = *state;
	int fd = connect_to(f);
	char buf[256];
	/* Two lines in one write, then one split across writes. */
	assert_int_equal(send(fd, "echo a\necho b\n", 14, 0), 14);
	read_line(f, fd, buf, sizeof(buf));
	assert_string_equal(buf, "got a");
	read_line(f, fd, buf, sizeof(buf));
	assert_string_equal(buf, "got b");
	assert_int_equal(send(fd, "echo sp", 7, 0), 7);
	pump(f, 3);
	assert_int_equal(f->lines_seen, 2); /* no '\n' yet */
	assert_int_equal(send(fd, "lit\n", 4, 0), 4);
	read_line(f, fd, buf, sizeof(buf));
	assert_string_equal(buf, "got split");
	close(fd);
}

static void test_too_long_line_refused(void **state)
{
	struct fixture *f = *state;
	int fd = connect_to(f);
	char *big = malloc(LT_LINES_IN_MAX + 10);
	memset(big, 'x', LT_LINES_IN_MAX + 10);
	assert_int_equal(send(fd, big, LT_LINES_IN_MAX + 10, 0), LT_LINES_IN_MAX + 10);
	free(big);
	char buf[64];
	read_line(f, fd, buf, sizeof(buf));
	assert_string_equal(buf, "TOO LONG");
	pump(f, 3);
	char c;
	assert_int_equal(recv(fd, &c, 1, MSG_DONTWAIT), 0); /* then closed */
	assert_int_equal(f->lines_seen, 0);
	close(fd);
	/* The server goes on serving others. */
	fd = connect_to(f);
	assert_int_equal(send(fd, "echo ok\n", 8, 0), 8);
	read_line(f, fd, buf, sizeof(buf));
	assert_string_equal(buf, "got ok");
	close(fd);
}

static void *publish_from_thread(void *arg)
{
	lt_lines_publish(arg, "event one");
	lt_lines_publish(arg, "event two");
	return NULL;
}

static void test_publish_reaches_subscribers_only(void **state)
{
	struct fixture *f = *state;
	int sub = connect_to(f), other = connect_to(f);
	char buf[64];
	assert_int_equal(send(sub, "sub\n", 4, 0), 4);
	read_line(f, sub, buf, sizeof(buf));
	assert_string_equal(buf, "subscribed");
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, publish_from_thread, f->l), 0);
	pthread_join(t, NULL);
	read_line(f, sub, buf, sizeof(buf));
	assert_string_equal(buf, "event one");
	read_line(f, sub, buf, sizeof(buf));
	assert_string_equal(buf, "event two");
	pump(f, 3);
	assert_int_equal(recv(other, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	close(sub);
	close(other);
}

static void test_adopted_socket_subscribed(void **state)
{
	struct fixture *f = *state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	assert_int_equal(lt_lines_adopt(f->l, sv[1], true), 0);
	lt_lines_publish(f->l, "hello owner");
	char buf[64];
	read_line(f, sv[0], buf, sizeof(buf));
	assert_string_equal(buf, "hello owner");
	assert_int_equal(send(sv[0], "echo x\n", 7, 0), 7);
	read_line(f, sv[0], buf, sizeof(buf));
	assert_string_equal(buf, "got x");
	close(sv[0]);
}

static void test_client_that_stops_reading_is_dropped(void **state)
{
	struct fixture *f = *state;
	int fd = connect_to(f);
	char buf[64];
	assert_int_equal(send(fd, "sub\n", 4, 0), 4);
	read_line(f, fd, buf, sizeof(buf));
	/* Publish far more than the output bound without reading. */
	char line[1024];
	memset(line, 'e', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	for (unsigned i = 0; i < 2 * LT_LINES_OUT_MAX / sizeof(line); i++) {
		lt_lines_publish(f->l, line);
		if (i % 64 == 0)
			pump(f, 1);
	}
	pump(f, 5);
	/* Everything the kernel buffered, then EOF: the server let go. */
	size_t total = 0;
	ssize_t r;
	while ((r = recv(fd, line, sizeof(line), 0)) > 0)
		total += (size_t)r;
	assert_int_equal(r, 0);
	assert_true(total < 2 * LT_LINES_OUT_MAX);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lines_and_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_long_line_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_reaches_subscribers_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopted_socket_subscribed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_that_stops_reading_is_dropped, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
