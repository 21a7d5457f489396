/* lttle snapshot: capture a running VM through its control socket. */
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

#define REPLY_MAX (64 * 1024)

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle snapshot --control SOCK -o FILE [--keep-running] [--json]\n\n"
		"Pauses every vCPU of the VM behind SOCK (started by 'lttle run\n"
		"--snapshot-on ...', 'lttle restore' or a shell), saves its vCPU, VM and\n"
		"device state and its memory (zero pages skipped, zstd chunks) to FILE\n"
		"atomically, then stops the VM, or lets it continue with --keep-running.\n\n"
		"  --control SOCK        the VM's control socket\n"
		"  -o, --output FILE     snapshot file to write\n"
		"  --keep-running        resume the VM afterwards instead of stopping it\n"
		"  --timeout SEC         give up waiting after SEC seconds (default 120)\n"
		"  --json                print the result as JSON\n"
		"  --help                this text\n");
}

enum { OPT_CONTROL = 256, OPT_KEEP, OPT_TIMEOUT, OPT_JSON, OPT_HELP };

static const struct option opts[] = {
	{"control", required_argument, 0, OPT_CONTROL},
	{"output", required_argument, 0, 'o'},
	{"keep-running", no_argument, 0, OPT_KEEP},
	{"timeout", required_argument, 0, OPT_TIMEOUT},
	{"json", no_argument, 0, OPT_JSON},
	{"help", no_argument, 0, OPT_HELP},
	{0, 0, 0, 0},
};

/* The VM process may run elsewhere: hand it an absolute path. */
static char *absolute(const char *path)
{
	char *copy = lt_strdup(path), *copy2 = lt_strdup(path);
	char dir[PATH_MAX];
	char *res = NULL;
	if (copy && copy2 && realpath(dirname(copy), dir))
		res = lt_path_join(dir, basename(copy2));
	else if (copy && copy2)
		lt_fail_errno("directory of %s", path);
	free(copy);
	free(copy2);
	return res;
}

static int connect_control(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return lt_fail("control socket path too long: %s", path);
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return lt_fail_errno("socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return lt_fail_errno("control socket %s", path);
	}
	return fd;
}

/* One reply line within timeout_ms. */
static int read_line(int fd, int timeout_ms, struct lt_buf *b)
{
	uint64_t deadline = lt_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	for (;;) {
		if (b->len && memchr(b->data, '\n', b->len))
			return 0;
		uint64_t now = lt_now_ns();
		if (now >= deadline)
			return lt_fail("no answer from the VM within %d s", timeout_ms / 1000);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		char buf[4096];
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return lt_fail("the VM closed the control connection (it may have stopped)");
		if (lt_buf_append(b, buf, (size_t)n) < 0)
			return lt_fail("reply from the VM too long");
	}
}

int cmd_snapshot(int argc, char **argv)
{
	const char *control = NULL, *out = NULL;
	bool keep = false, json_out = false;
	uint64_t timeout = 120;
	int c;
	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (c) {
		case OPT_CONTROL: control = optarg; break;
		case 'o': out = optarg; break;
		case OPT_KEEP: keep = true; break;
		case OPT_TIMEOUT:
			if (lt_parse_u64(optarg, &timeout) < 0 || timeout < 1 || timeout > 86400)
				return cli_usage("snapshot", "--timeout takes 1..86400 seconds");
			break;
		case OPT_JSON: json_out = true; break;
		case OPT_HELP: usage(stdout); return 0;
		default: return cli_usage("snapshot", "bad option");
		}
	}
	if (optind != argc)
		return cli_usage("snapshot", "unexpected argument '%s'", argv[optind]);
	if (!control || !out)
		return cli_usage("snapshot", "--control and -o are required");
	char *path = absolute(out);
	if (!path)
		return cli_fail("snapshot");
	int fd = connect_control(control);
	struct lt_buf b = {.limit = REPLY_MAX};
	json_t *req = json_pack("{s:s,s:s,s:b}", "cmd", "snapshot", "path", path, "keep_running",
				keep);
	char *line = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	json_t *rep = NULL;
	int ret = 1;
	if (fd < 0)
		goto fail;
	if (!line || lt_write_all(fd, line, strlen(line)) < 0 || lt_write_all(fd, "\n", 1) < 0) {
		lt_fail_ctx("control socket %s", control);
		goto fail;
	}
	if (read_line(fd, (int)(timeout * 1000), &b) < 0 || lt_buf_cstr(&b) < 0)
		goto fail;
	*(char *)memchr(b.data, '\n', b.len) = '\0';
	rep = json_loads((char *)b.data, 0, NULL);
	if (!json_is_object(rep)) {
		lt_fail("unexpected reply from the VM: %.200s", (char *)b.data);
		goto fail;
	}
	if (!json_is_true(json_object_get(rep, "ok"))) {
		const char *e = json_string_value(json_object_get(rep, "error"));
		if (e && !strcmp(e, "unknown command"))
			lt_fail("the VM behind %s cannot take snapshots (start it with 'lttle run "
				"--snapshot-on manual ...' or 'lttle restore')",
				control);
		else
			lt_fail("%s", e ? e : "snapshot failed");
		goto fail;
	}
	if (json_out) {
		char *s = json_dumps(rep, JSON_COMPACT);
		if (s)
			printf("%s\n", s);
		free(s);
	} else {
		char hs[32];
		json_int_t bytes = json_integer_value(json_object_get(rep, "bytes"));
		json_int_t ns = json_integer_value(json_object_get(rep, "capture_ns"));
		printf("%s: %s in %.1f ms (VM %s)\n", path,
		       lt_human_size((uint64_t)bytes, hs, sizeof(hs)), (double)ns / 1e6,
		       keep ? "keeps running" : "stopped");
	}
	ret = 0;
	goto done;
fail:
	ret = cli_fail("snapshot");
done:
	json_decref(rep);
	lt_buf_free(&b);
	free(line);
	free(path);
	if (fd >= 0)
		close(fd);
	return ret;
}
