/* The QEMU engine's pure parts: the QMP client against a fake QEMU on a
 * socketpair (greeting, capabilities, id matching, events, fd passing,
 * every protocol violation, freeing from callbacks), the guest trigger
 * line parser, trigger specs, and the snapshot header. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/engine_qemu.h"
#include "vmm/guest_abi.h"

/* ---- fake QEMU ------------------------------------------------------------ */

static struct lt_loop *loop;
static struct lt_qmp *q;
static int peer = -1;

struct rec {
	int ready, closed, events;
	char closed_why[256];
	char event_name[64];
	char event_data[256];
	int replies;
	char reply[8][256]; /* "ok:<json>" or "err:<desc>" per reply, in order */
	bool free_in_reply, free_in_closed;
} R;

static void cb_ready(void *ctx)
{
	(void)ctx;
	R.ready++;
}

static void cb_event(void *ctx, const char *name, json_t *data)
{
	(void)ctx;
	R.events++;
	snprintf(R.event_name, sizeof(R.event_name), "%s", name);
	char *s = data ? json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	snprintf(R.event_data, sizeof(R.event_data), "%s", s ? s : "(none)");
	free(s);
}

static void cb_closed(void *ctx, const char *why)
{
	(void)ctx;
	R.closed++;
	snprintf(R.closed_why, sizeof(R.closed_why), "%s", why);
	if (R.free_in_closed) {
		lt_qmp_free(q);
		q = NULL;
	}
}

static const struct lt_qmp_cbs cbs = {cb_ready, cb_event, cb_closed};

static void cb_reply(void *arg, json_t *ret, const char *err)
{
	(void)arg;
	assert_true(R.replies < 8);
	char *s = ret ? json_dumps(ret, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
	if (err)
		snprintf(R.reply[R.replies], 256, "err:%s", err);
	else
		snprintf(R.reply[R.replies], 256, "ok:%s", s ? s : "?");
	free(s);
	R.replies++;
	if (R.free_in_reply) {
		lt_qmp_free(q);
		q = NULL;
	}
}

static int setup(void **state)
{
	(void)state;
	memset(&R, 0, sizeof(R));
	loop = lt_loop_new();
	assert_non_null(loop);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	peer = sv[1];
	q = lt_qmp_new(loop, sv[0], &cbs, NULL);
	assert_non_null(q);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	lt_qmp_free(q);
	q = NULL;
	close(peer);
	lt_loop_free(loop);
	return 0;
}

static void spin(void)
{
	for (int i = 0; i < 20; i++)
		lt_loop_run_once(loop, 2);
}

static void peer_send(const char *s)
{
	assert_int_equal(write(peer, s, strlen(s)), (ssize_t)strlen(s));
	spin();
}

/* Everything the client has sent so far (after running the loop). */
static char peer_buf[4096];
static int peer_fds[4];
static int peer_nfds;
static const char *peer_read(void)
{
	spin();
	size_t len = 0;
	peer_nfds = 0;
	for (;;) {
		struct pollfd p = {.fd = peer, .events = POLLIN};
		if (poll(&p, 1, 0) <= 0)
			break;
		union {
			char b[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr a;
		} u;
		struct iovec iov = {.iov_base = peer_buf + len, .iov_len = sizeof(peer_buf) - 1 - len};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				    .msg_controllen = sizeof(u.b)};
		ssize_t n = recvmsg(peer, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n <= 0)
			break;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && peer_nfds < 4)
				memcpy(&peer_fds[peer_nfds++], CMSG_DATA(c), sizeof(int));
		len += (size_t)n;
	}
	peer_buf[len] = 0;
	return peer_buf;
}

#define GREETING                                                                           \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "   \
	"\"package\": \"Debian\"}, \"capabilities\": [\"oob\"]}}\r\n"

static void handshake(void)
{
	peer_send(GREETING);
	assert_string_equal(peer_read(), "{\"execute\":\"qmp_capabilities\",\"id\":1}\n");
	peer_send("{\"return\": {}, \"id\": 1}\r\n");
	assert_int_equal(R.ready, 1);
}

/* ---- QMP tests -------------------------------------------------------------- */

static void test_handshake(void **state)
{
	(void)state;
	/* Nothing may be sent before QEMU greets. */
	assert_string_equal(peer_read(), "");
	assert_false(lt_qmp_ready(q));
	assert_string_equal(lt_qmp_version(q), "");
	handshake();
	assert_true(lt_qmp_ready(q));
	assert_string_equal(lt_qmp_version(q), "7.2.22");
	assert_int_equal(R.closed, 0);
}

static void test_queue_before_greeting_and_match(void **state)
{
	(void)state;
	assert_int_equal(lt_qmp_command(q, "stop", NULL, -1, cb_reply, NULL), 0);
	json_t *args = json_pack("{s:s}", "uri", "fd:x");
	assert_int_equal(lt_qmp_command(q, "migrate", args, -1, cb_reply, NULL), 0);
	assert_int_equal(R.replies, 0); /* never from inside the call */
	peer_send(GREETING);
	assert_string_equal(peer_read(), "{\"execute\":\"qmp_capabilities\",\"id\":1}\n"
					 "{\"execute\":\"stop\",\"id\":2}\n"
					 "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:x\"},"
					 "\"id\":3}\n");
	/* Answers are matched by id, whatever their order; split reads too. */
	peer_send("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no");
	peer_send("pe\"}, \"id\": 3}\n{\"return\": {}, \"id\": 1}\n");
	peer_send("{\"return\": {\"status\": \"x\"}, \"id\": 2}\n");
	assert_int_equal(R.ready, 1);
	assert_int_equal(R.replies, 2);
	assert_string_equal(R.reply[0], "err:nope");
	assert_string_equal(R.reply[1], "ok:{\"status\":\"x\"}");
	assert_int_equal(R.closed, 0);
}

static void test_events(void **state)
{
	(void)state;
	handshake();
	peer_send("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": "
		  "\"MIGRATION\", \"data\": {\"status\": \"completed\"}}\n");
	assert_int_equal(R.events, 1);
	assert_string_equal(R.event_name, "MIGRATION");
	assert_string_equal(R.event_data, "{\"status\":\"completed\"}");
	peer_send("{\"event\": \"STOP\", \"timestamp\": {}}\n\n");
	assert_int_equal(R.events, 2);
	assert_string_equal(R.event_name, "STOP");
	assert_string_equal(R.event_data, "(none)");
	assert_int_equal(R.closed, 0);
}

static void test_fd_passing(void **state)
{
	(void)state;
	handshake();
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	json_t *args = json_pack("{s:s}", "fdname", "snap");
	assert_int_equal(lt_qmp_command(q, "getfd", args, p[1], cb_reply, NULL), 0);
	assert_string_equal(peer_read(),
			    "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"snap\"},\"id\":2}\n");
	assert_int_equal(peer_nfds, 1);
	/* The received fd is the pipe: what goes in comes out of p[0]. */
	assert_int_equal(write(peer_fds[0], "hi", 2), 2);
	close(peer_fds[0]);
	char b[4] = {0};
	assert_int_equal(read(p[0], b, sizeof(b)), 2);
	assert_string_equal(b, "hi");
	/* The client closed its copy: the pipe is at EOF now. */
	assert_int_equal(read(p[0], b, sizeof(b)), 0);
	close(p[0]);
}

static void test_fd_closed_when_connection_is(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(lt_qmp_command(q, "getfd", NULL, p[1], cb_reply, NULL), 0);
	lt_qmp_free(q);
	q = NULL;
	char b;
	assert_int_equal(read(p[0], &b, 1), 0); /* no write end left anywhere */
	close(p[0]);
}

struct violation {
	const char *what;
	const char *input; /* after the handshake */
	const char *why;   /* substring of the close reason */
};

static void check_violation(const struct violation *v)
{
	handshake();
	assert_int_equal(lt_qmp_command(q, "cont", NULL, -1, cb_reply, NULL), 0);
	peer_read();
	if (*v->input) {
		peer_send(v->input);
	} else {
		shutdown(peer, SHUT_WR);
		spin();
	}
	if (R.closed != 1)
		fail_msg("%s: not closed", v->what);
	if (!strstr(R.closed_why, v->why))
		fail_msg("%s: reason \"%s\" lacks \"%s\"", v->what, R.closed_why, v->why);
	/* The pending command was failed before the close was reported. */
	assert_int_equal(R.replies, 1);
	assert_true(!strncmp(R.reply[0], "err:", 4));
	assert_int_equal(lt_qmp_command(q, "cont", NULL, -1, cb_reply, NULL), -1);
	assert_int_equal(R.replies, 1);
}

static void test_violations(void **state)
{
	static const struct violation vs[] = {
		{"unknown id", "{\"return\": {}, \"id\": 99}\n", "no pending command"},
		{"foreign id", "{\"return\": {}, \"id\": \"x\"}\n", "foreign id"},
		{"bad json", "{\"return\": \n", "bad JSON"},
		{"not an object", "[1,2]\n", "not an object"},
		{"neither", "{\"id\": 2}\n", "neither a reply nor an event"},
		{"both", "{\"return\": {}, \"error\": {}, \"id\": 2}\n", "neither"},
		{"event name", "{\"event\": 5}\n", "event name"},
		{"event data", "{\"event\": \"X\", \"data\": 3}\n", "event data"},
		{"error type", "{\"error\": \"x\", \"id\": 2}\n", "error is not an object"},
		{"duplicate key", "{\"return\": {}, \"return\": {}, \"id\": 2}\n", "bad JSON"},
		{"eof", "", "closed by QEMU"},
	};
	(void)state;
	for (size_t i = 0; i < LT_ARRAY_LEN(vs); i++) {
		teardown(NULL);
		setup(NULL);
		check_violation(&vs[i]);
	}
}

static void test_eof_is_reported(void **state)
{
	(void)state;
	handshake();
	assert_int_equal(lt_qmp_command(q, "cont", NULL, -1, cb_reply, NULL), 0);
	peer_read();
	close(peer);
	peer = -1;
	spin();
	assert_int_equal(R.closed, 1);
	assert_non_null(strstr(R.closed_why, "closed by QEMU"));
	assert_int_equal(R.replies, 1);
	peer = open("/dev/null", O_RDONLY); /* for teardown */
}

static void test_overlong_line(void **state)
{
	(void)state;
	handshake();
	char *big = malloc(LT_QMP_LINE_MAX + 10);
	assert_non_null(big);
	memset(big, ' ', LT_QMP_LINE_MAX + 9);
	big[LT_QMP_LINE_MAX + 9] = 0;
	/* The socket buffer may not take it all at once. */
	int fl = fcntl(peer, F_GETFL);
	fcntl(peer, F_SETFL, fl | O_NONBLOCK);
	size_t off = 0, len = strlen(big);
	for (int i = 0; i < 1000 && off < len && !R.closed; i++) {
		ssize_t n = write(peer, big + off, len - off);
		if (n > 0)
			off += (size_t)n;
		spin();
	}
	free(big);
	assert_int_equal(R.closed, 1);
	assert_non_null(strstr(R.closed_why, "longer than"));
}

static void test_bad_greeting(void **state)
{
	(void)state;
	assert_int_equal(lt_qmp_command(q, "stop", NULL, -1, cb_reply, NULL), 0);
	peer_send("{\"return\": {}, \"id\": 1}\n");
	assert_int_equal(R.closed, 1);
	assert_non_null(strstr(R.closed_why, "greeting"));
	assert_int_equal(R.replies, 1);
	assert_int_equal(R.ready, 0);
}

static void test_free_in_reply_stops_processing(void **state)
{
	(void)state;
	handshake();
	assert_int_equal(lt_qmp_command(q, "a", NULL, -1, cb_reply, NULL), 0);
	assert_int_equal(lt_qmp_command(q, "b", NULL, -1, cb_reply, NULL), 0);
	peer_read();
	R.free_in_reply = true;
	/* Both answers arrive in one read; the first reply frees q. */
	peer_send("{\"return\": 1, \"id\": 2}\n{\"return\": 2, \"id\": 3}\n"
		  "{\"event\": \"STOP\"}\n");
	assert_null(q);
	assert_int_equal(R.replies, 1);
	assert_int_equal(R.events, 0);
	assert_int_equal(R.closed, 0);
}

static void test_free_in_closed(void **state)
{
	(void)state;
	handshake();
	R.free_in_closed = true;
	peer_send("garbage\n");
	assert_int_equal(R.closed, 1);
	assert_null(q);
}

static void test_free_in_failed_reply(void **state)
{
	(void)state;
	handshake();
	assert_int_equal(lt_qmp_command(q, "a", NULL, -1, cb_reply, NULL), 0);
	assert_int_equal(lt_qmp_command(q, "b", NULL, -1, cb_reply, NULL), 0);
	peer_read();
	R.free_in_reply = true;
	peer_send("nonsense\n");
	/* The first failed reply freed q: no more callbacks at all. */
	assert_int_equal(R.replies, 1);
	assert_int_equal(R.closed, 0);
	assert_null(q);
}

/* ---- guest lines --------------------------------------------------------------- */

static void test_gline_parse(void **state)
{
	(void)state;
	struct lt_gline g;
	assert_int_equal(lt_gline_parse("ready", &g), 0);
	assert_int_equal(g.kind, LT_GL_READY);
	assert_int_equal(lt_gline_parse("listen-after 8080 0", &g), 0);
	assert_int_equal(g.kind, LT_GL_LISTEN_AFTER);
	assert_int_equal(g.port, 8080);
	assert_int_equal(g.val, 0);
	assert_int_equal(lt_gline_parse("listen-after 80 -98", &g), 0);
	assert_int_equal(g.val, -98);
	assert_int_equal(lt_gline_parse("bind-before 65535", &g), 0);
	assert_int_equal(g.port, 65535);
	assert_int_equal(lt_gline_parse("exit 137", &g), 0);
	assert_int_equal(g.kind, LT_GL_EXIT);
	assert_int_equal(g.val, 137);
	assert_int_equal(lt_gline_parse("trigger", &g), 0);
	assert_int_equal(g.kind, LT_GL_TRIGGER);
	assert_int_equal(g.val, 0);
	assert_int_equal(lt_gline_parse("trigger 7", &g), 0);
	assert_int_equal(g.val, 7);
	assert_int_equal(lt_gline_parse("log hello there", &g), 0);
	assert_string_equal(g.text, "hello there");
	assert_int_equal(lt_gline_parse("hold", &g), 0);
	assert_int_equal(g.kind, LT_GL_HOLD);
	assert_int_equal(lt_gline_parse("poweroff", &g), 0);
	assert_int_equal(g.kind, LT_GL_POWEROFF);

	static const char *const bad[] = {
		"", "readyx", "ready 1", "listen-after 8080", "listen-after 65536 0",
		"listen-after -1 0", "listen-after 80 0 1", "listen-after 80  0",
		"listen-after 0x50 0", "listen-after 80 99999999999", "exit", "exit x",
		"trigger 1 2", "hold now", "listen-before", "bind-after 80 +1", "nonsense",
		"log \x01", "listen-after 80 2147483648",
	};
	for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++)
		if (lt_gline_parse(bad[i], &g) == 0)
			fail_msg("accepted \"%s\"", bad[i]);
	char longl[LT_GUEST_LINE_MAX + 8];
	memset(longl, 'a', sizeof(longl) - 1);
	longl[sizeof(longl) - 1] = 0;
	memcpy(longl, "log ", 4);
	assert_int_equal(lt_gline_parse(longl, &g), -1);
}

static void test_triggers(void **state)
{
	(void)state;
	struct lt_qemu_trigger t;
	struct lt_gline g;
	uint32_t n = 0;
	assert_int_equal(lt_qemu_parse_trigger("first-listen", &t), 0);
	lt_gline_parse("listen-after 80 -13", &g);
	assert_false(lt_qemu_trigger_fires(&t, &g, &n)); /* failed listen */
	lt_gline_parse("listen-before 80", &g);
	assert_false(lt_qemu_trigger_fires(&t, &g, &n));
	lt_gline_parse("listen-after 80 0", &g);
	assert_true(lt_qemu_trigger_fires(&t, &g, &n));
	assert_int_equal(n, 1);

	assert_int_equal(lt_qemu_parse_trigger("nth-listen:3", &t), 0);
	n = 0;
	lt_gline_parse("listen-after 81 0", &g);
	assert_false(lt_qemu_trigger_fires(&t, &g, &n));
	assert_false(lt_qemu_trigger_fires(&t, &g, &n));
	assert_true(lt_qemu_trigger_fires(&t, &g, &n));
	assert_false(lt_qemu_trigger_fires(&t, &g, &n));

	assert_int_equal(lt_qemu_parse_trigger("listen-port:8080", &t), 0);
	n = 0;
	assert_false(lt_qemu_trigger_fires(&t, &g, &n));
	lt_gline_parse("listen-after 8080 0", &g);
	assert_true(lt_qemu_trigger_fires(&t, &g, &n));

	assert_int_equal(lt_qemu_parse_trigger("userspace-ready", &t), 0);
	assert_false(lt_qemu_trigger_fires(&t, &g, &n));
	lt_gline_parse("ready", &g);
	assert_true(lt_qemu_trigger_fires(&t, &g, &n));

	assert_int_equal(lt_qemu_parse_trigger("manual", &t), 0);
	assert_false(lt_qemu_trigger_fires(&t, &g, &n));
	lt_gline_parse("trigger 0", &g);
	assert_true(lt_qemu_trigger_fires(&t, &g, &n));

	static const char *const bad[] = {"", "first", "nth-listen:", "nth-listen:0",
					  "nth-listen:-1", "listen-port:0", "listen-port:70000",
					  "listen-port:8080x", "manual:1"};
	for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++)
		if (lt_qemu_parse_trigger(bad[i], &t) == 0)
			fail_msg("accepted trigger \"%s\"", bad[i]);
}

/* ---- snapshot header ------------------------------------------------------------- */

static int header_fd(const void *data, size_t len)
{
	char path[] = "/tmp/lttle-qsnap.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static void test_header_round_trip(void **state)
{
	(void)state;
	struct lt_qsnap_meta m = {.mem = 256ull << 20, .cpus = 2, .rootfs_size = 12345,
				  .listening = {8080, 9090}, .nlistening = 2,
				  .created_wall_ns = 42};
	strcpy(m.qemu_version, "7.2.22");
	strcpy(m.accel, "tcg");
	uint8_t *b;
	size_t len;
	assert_int_equal(lt_qsnap_header_encode(&m, &b, &len), 0);
	uint8_t *withdata = malloc(len + 4);
	memcpy(withdata, b, len);
	memcpy(withdata + len, "\x28\xb5\x2f\xfd", 4); /* zstd magic follows */
	int fd = header_fd(withdata, len + 4);
	struct lt_qsnap_meta r;
	assert_int_equal(lt_qsnap_header_read(fd, "t", &r), 0);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)len);
	close(fd);
	assert_string_equal(r.qemu_version, "7.2.22");
	assert_string_equal(r.accel, "tcg");
	assert_int_equal(r.mem, m.mem);
	assert_int_equal(r.cpus, 2);
	assert_int_equal(r.rootfs_size, 12345);
	assert_int_equal(r.nlistening, 2);
	assert_int_equal(r.listening[1], 9090);
	assert_int_equal(r.created_wall_ns, 42);
	free(b);
	free(withdata);
}

static void expect_header_reject(const void *data, size_t len, const char *why)
{
	int fd = header_fd(data, len);
	struct lt_qsnap_meta r;
	lt_clear_error();
	assert_int_equal(lt_qsnap_header_read(fd, "bad.snap", &r), -1);
	close(fd);
	if (!strstr(lt_errmsg(), why) || !strstr(lt_errmsg(), "bad.snap"))
		fail_msg("message \"%s\" lacks \"%s\" or the file name", lt_errmsg(), why);
}

static void reject_json(const char *json, const char *why)
{
	size_t n = strlen(json);
	uint8_t *b = malloc(12 + n);
	memcpy(b, LT_QSNAP_MAGIC, 8);
	for (int i = 0; i < 4; i++)
		b[8 + i] = (uint8_t)(n >> (8 * i));
	memcpy(b + 12, json, n);
	expect_header_reject(b, 12 + n, why);
	free(b);
}

static void test_header_rejects(void **state)
{
	(void)state;
	expect_header_reject("LTQ", 3, "too short");
	expect_header_reject("NOTASNAP\x02\0\0\0{}", 14, "bad magic");
	expect_header_reject("LTQSNAP1\0\0\0\0", 12, "out of range");
	expect_header_reject("LTQSNAP1\xff\xff\0\0", 12, "out of range");
	expect_header_reject("LTQSNAP1\x10\0\0\0{}", 14, "truncated");
	reject_json("{x", "not JSON");
	reject_json("[]", "version");
	const char *ok_rest = "\"accel\":\"tcg\",\"mem\":268435456,\"cpus\":1,\"rootfs_size\":0,"
			      "\"created\":1,\"listening\":[]";
	char j[512];
	snprintf(j, sizeof(j), "{\"v\":2,\"qemu\":\"7.2.22\",%s}", ok_rest);
	reject_json(j, "version");
	snprintf(j, sizeof(j), "{\"v\":1,\"qemu\":\"7.2/../x\",%s}", ok_rest);
	reject_json(j, "qemu/accel");
	reject_json("{\"v\":1,\"qemu\":\"7\",\"accel\":\"hvf\",\"mem\":268435456,\"cpus\":1,"
		    "\"rootfs_size\":0,\"created\":1,\"listening\":[]}",
		    "qemu/accel");
	reject_json("{\"v\":1,\"qemu\":\"7\",\"accel\":\"tcg\",\"mem\":-1,\"cpus\":1,"
		    "\"rootfs_size\":0,\"created\":1,\"listening\":[]}",
		    "mem");
	reject_json("{\"v\":1,\"qemu\":\"7\",\"accel\":\"tcg\",\"mem\":268435456,\"cpus\":0,"
		    "\"rootfs_size\":0,\"created\":1,\"listening\":[]}",
		    "cpus");
	reject_json("{\"v\":1,\"qemu\":\"7\",\"accel\":\"tcg\",\"mem\":268435456,\"cpus\":1,"
		    "\"rootfs_size\":0,\"created\":1,\"listening\":[0]}",
		    "port");
	reject_json("{\"v\":1,\"qemu\":\"7\",\"accel\":\"tcg\",\"mem\":268435456,\"cpus\":1,"
		    "\"rootfs_size\":0,\"created\":1,\"listening\":[1,2,3,4,5,6,7,8,9,10,11,12,"
		    "13,14,15,16,17]}",
		    "listening");
	snprintf(j, sizeof(j), "{\"v\":1,\"v\":1,\"qemu\":\"7\",%s}", ok_rest);
	reject_json(j, "not JSON");
}

/* ---- app config ------------------------------------------------------------------- */

static void test_app_config(void **state)
{
	(void)state;
	const char *env[] = {"A=1", "MSG=hello world", NULL};
	uint16_t ports[] = {8080, 9090};
	struct lt_qemu_app a = {.kernel = "/proc/self/exe", .ports = ports, .nports = 2,
				.env = env, .cmdline = "rdinit=/init"};
	void *c = lt_qemu_app_new(&a);
	assert_non_null(c);
	lt_qemu_app_free(c);

	const char *badenv[] = {"NOEQUALS", NULL};
	a.env = badenv;
	assert_null(lt_qemu_app_new(&a));
	const char *quote[] = {"A=\"x\"", NULL};
	a.env = quote;
	assert_null(lt_qemu_app_new(&a));
	a.env = env;
	uint16_t dup[] = {80, 80};
	a.ports = dup;
	assert_null(lt_qemu_app_new(&a));
	assert_non_null(strstr(lt_errmsg(), "twice"));
	a.ports = ports;
	a.mem = 1000;
	assert_null(lt_qemu_app_new(&a));
	a.mem = 0;
	a.kernel = "/nonexistent/vmlinux";
	assert_null(lt_qemu_app_new(&a));
	assert_non_null(strstr(lt_errmsg(), "/nonexistent/vmlinux"));
	a.kernel = "/proc/self/exe";
	char longcmd[2100];
	memset(longcmd, 'x', sizeof(longcmd) - 1);
	longcmd[sizeof(longcmd) - 1] = 0;
	a.cmdline = longcmd;
	assert_null(lt_qemu_app_new(&a));
	assert_non_null(strstr(lt_errmsg(), "command line"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_before_greeting_and_match, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_passing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_closed_when_connection_is, setup, teardown),
		cmocka_unit_test_setup_teardown(test_violations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlong_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_greeting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_in_reply_stops_processing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_in_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_in_failed_reply, setup, teardown),
		cmocka_unit_test(test_gline_parse),
		cmocka_unit_test(test_triggers),
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_header_rejects),
		cmocka_unit_test(test_app_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
