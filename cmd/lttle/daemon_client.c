/* ignitiond client (see daemon_client.h). */
#include "daemon_client.h"

#include "cli.h"

#include <curl/curl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DC_BODY_MAX (64u << 20)

char *dc_socket(const char *opt)
{
	if (opt && *opt)
		return lt_strdup(opt);
	const char *env = getenv("LTTLE_SOCKET");
	if (env && *env)
		return lt_strdup(env);
	if (getuid() == 0)
		return lt_strdup("/var/lib/lttle/ignitiond.sock");
	const char *home = getenv("HOME");
	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/";
	}
	return lt_sprintf("%s/.local/share/lttle/ignitiond.sock", home);
}

void dc_resp_free(struct dc_resp *r)
{
	lt_buf_free(&r->body);
}

struct xfer {
	struct lt_buf buf; /* whole body, or the unfinished line */
	long status;
	bool ok_known, ok;
	CURL *c;
	int (*line_fn)(void *ctx, const char *line);
	int (*raw_fn)(void *ctx, const char *data, size_t n);
	void *ctx;
	bool stopped;
};

static void know_status(struct xfer *x)
{
	if (x->ok_known)
		return;
	curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &x->status);
	x->ok_known = true;
	x->ok = x->status >= 200 && x->status < 300;
}

static int deliver_lines(struct xfer *x)
{
	size_t start = 0;
	for (size_t k = 0; k < x->buf.len; k++) {
		if (x->buf.data[k] != '\n')
			continue;
		x->buf.data[k] = '\0';
		if (x->line_fn(x->ctx, (char *)x->buf.data + start) < 0)
			return -1;
		start = k + 1;
	}
	memmove(x->buf.data, x->buf.data + start, x->buf.len - start);
	x->buf.len -= start;
	return 0;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	know_status(x);
	if (x->ok && x->raw_fn && !x->line_fn) {
		if (x->raw_fn(x->ctx, p, len) < 0) {
			x->stopped = true;
			return 0;
		}
		return len;
	}
	if (lt_buf_append(&x->buf, p, len) < 0)
		return 0;
	if (x->ok && x->line_fn && deliver_lines(x) < 0) {
		x->stopped = true;
		return 0;
	}
	return len;
}

static int unreachable(const char *sock, const char *why)
{
	return lt_fail("cannot reach ignitiond at %s (%s); start one with: ignitiond --socket %s",
		       sock, why, sock);
}

static int perform(const char *sock, const char *method, const char *path, const char *body,
		   struct xfer *x)
{
	static bool inited;
	if (!inited) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		inited = true;
	}
	if (access(sock, F_OK) < 0)
		return unreachable(sock, "no such socket");
	CURL *c = curl_easy_init();
	if (!c)
		return lt_fail("cannot start libcurl");
	char *url = lt_sprintf("http://localhost%s", path);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	x->c = c;
	x->buf.limit = DC_BODY_MAX;
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	CURLcode rc = curl_easy_perform(c);
	know_status(x);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(url);
	if (rc == CURLE_COULDNT_CONNECT)
		return unreachable(sock, "connection refused");
	if (rc != CURLE_OK && !(x->stopped && rc == CURLE_WRITE_ERROR))
		return lt_fail("talking to ignitiond at %s: %s", sock, curl_easy_strerror(rc));
	lt_buf_cstr(&x->buf);
	return 0;
}

static int daemon_error(struct xfer *x)
{
	json_t *j = json_loadb(x->buf.data ? (char *)x->buf.data : "", x->buf.len, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	int rc;
	if (msg)
		rc = lt_fail("%s", msg);
	else
		rc = lt_fail("ignitiond answered HTTP %ld", x->status);
	json_decref(j);
	return rc;
}

int dc_request(const char *sock, const char *method, const char *path, const char *body,
	       struct dc_resp *r)
{
	struct xfer x = {0};
	memset(r, 0, sizeof(*r));
	if (perform(sock, method, path, body, &x) < 0) {
		lt_buf_free(&x.buf);
		return -1;
	}
	r->status = x.status;
	r->body = x.buf;
	return 0;
}

int dc_json(const char *sock, const char *method, const char *path, const char *body,
	    json_t **out, long *status)
{
	struct xfer x = {0};
	*out = NULL;
	int rc = perform(sock, method, path, body, &x);
	if (status)
		*status = x.status;
	if (rc == 0 && !x.ok)
		rc = daemon_error(&x);
	if (rc == 0) {
		json_error_t e;
		*out = json_loadb(x.buf.data ? (char *)x.buf.data : "", x.buf.len, 0, &e);
		if (!*out)
			rc = lt_fail("ignitiond sent malformed JSON: %s", e.text);
	}
	lt_buf_free(&x.buf);
	return rc;
}

int dc_stream(const char *sock, const char *method, const char *path, const char *body,
	      int (*line_fn)(void *ctx, const char *line),
	      int (*raw_fn)(void *ctx, const char *data, size_t n), void *ctx)
{
	struct xfer x = {.line_fn = line_fn, .raw_fn = raw_fn, .ctx = ctx};
	int rc = perform(sock, method, path, body, &x);
	if (rc == 0 && !x.ok)
		rc = daemon_error(&x);
	else if (rc == 0 && line_fn && x.buf.len && !x.stopped)
		rc = line_fn(ctx, (char *)x.buf.data); /* a last line without '\n' */
	lt_buf_free(&x.buf);
	return rc;
}

int dc_print_json(json_t *j)
{
	if (json_dumpf(j, stdout, JSON_INDENT(2)) < 0)
		return lt_fail("cannot write JSON");
	putchar('\n');
	return 0;
}

int dc_parse(const char *cmd, int argc, char **argv, struct dc_common *c, const char *help,
	     const struct option *extra, int (*extra_fn)(int opt, const char *arg, void *ctx),
	     void *ctx)
{
	struct option lo[24] = {
		{"socket", required_argument, NULL, 'S'},
		{"json", no_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
	};
	size_t n = 3;
	for (const struct option *e = extra; e && e->name && n < LT_ARRAY_LEN(lo) - 1; e++)
		lo[n++] = *e;
	lo[n] = (struct option){0};
	int o;
	while ((o = getopt_long(argc, argv, "hf", lo, NULL)) != -1) {
		switch (o) {
		case 'S': c->socket = optarg; break;
		case 'J': c->json = true; break;
		case 'h': fputs(help, stdout); return 1;
		case '?': return cli_usage(cmd, "invalid option");
		default:
			if (!extra_fn || extra_fn(o, optarg, ctx) < 0)
				return cli_usage(cmd, "%s", extra_fn ? lt_errmsg() : "invalid option");
		}
	}
	return 0;
}

/* An app name or an instance id? Asks the daemon (404 -> not an app). */
static int act_one(const char *sock, const char *cmd, const char *name, bool json)
{
	char *path = lt_sprintf("/v1/apps/%s/%s", name, cmd);
	json_t *out = NULL;
	long status = 0;
	int rc = path ? dc_json(sock, "POST", path, "{}", &out, &status) : -1;
	free(path);
	if (rc < 0 && status == 404) {
		path = lt_sprintf("/v1/instances/%s/%s", name, cmd);
		rc = path ? dc_json(sock, "POST", path, "{}", &out, &status) : -1;
		free(path);
		if (rc < 0 && status == 404)
			rc = lt_fail("no app or instance '%s'", name);
		else if (rc < 0 && status == 400)
			rc = lt_fail("'%s' is neither an app nor an instance name", name);
	}
	if (rc < 0)
		return -1;
	if (json) {
		rc = dc_print_json(out);
	} else if (json_object_get(out, "app")) {
		printf("%s: %s on %lld instance(s)\n", name, cmd,
		       (long long)json_integer_value(json_object_get(out, "instances")));
	} else {
		printf("%s: %s\n", name, cmd);
	}
	json_decref(out);
	return rc;
}

int dc_action(const char *cmd, int argc, char **argv)
{
	char help[512];
	snprintf(help, sizeof(help),
		 "usage: lttle %s APP|INSTANCE... [--socket PATH] [--json]\n\n"
		 "%s an instance, or every instance of an app it applies to, on ignitiond.\n"
		 "  --socket PATH   ignitiond's socket (default $LTTLE_SOCKET, else the daemon's)\n"
		 "  --json          print the daemon's answers as JSON\n",
		 cmd,
		 !strcmp(cmd, "pause") ? "Pauses (running, idle)"
		 : !strcmp(cmd, "resume") ? "Resumes (paused)"
					  : "Stops (they come back on the next connection)");
	struct dc_common c = {0};
	int r = dc_parse(cmd, argc, argv, &c, help, NULL, NULL, NULL);
	if (r)
		return r == 1 ? 0 : r;
	if (optind >= argc)
		return cli_usage(cmd, "expected an app or instance name");
	char *sock = dc_socket(c.socket);
	if (!sock)
		return cli_fail(cmd);
	int rc = 0;
	for (int k = optind; k < argc && rc == 0; k++)
		rc = act_one(sock, cmd, argv[k], c.json);
	free(sock);
	return rc < 0 ? cli_fail(cmd) : 0;
}
