/* Talking to ignitiond: HTTP/JSON over its unix socket (libcurl with
 * CURLOPT_UNIX_SOCKET_PATH). Shared by the fleet commands (deploy, apps,
 * ps, info, logs, pause, resume, stop, rm, scale). */
#ifndef LTTLE_DAEMON_CLIENT_H
#define LTTLE_DAEMON_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include <getopt.h>

#include "util/util.h"

/* The socket: opt (--socket), else $LTTLE_SOCKET, else the daemon's
 * default (/var/lib/lttle/ignitiond.sock as root, else
 * ~/.local/share/lttle/ignitiond.sock). Caller frees. */
char *dc_socket(const char *opt);

struct dc_resp {
	long status;
	struct lt_buf body; /* NUL-terminated */
};
void dc_resp_free(struct dc_resp *r);

/* One request; body may be NULL. -1 (with a message saying how to start
 * the daemon) when it cannot be reached. */
int dc_request(const char *sock, const char *method, const char *path, const char *body,
	       struct dc_resp *r);
/* As dc_request, with a 2xx body parsed as JSON into *out; a non-2xx
 * reply becomes -1 with the daemon's error message. *status (may be
 * NULL) gets the HTTP status. */
int dc_json(const char *sock, const char *method, const char *path, const char *body,
	    json_t **out, long *status);
/* Streams a reply: on 2xx each line goes to line_fn (without '\n'), or
 * each chunk to raw_fn when line_fn is NULL; a callback returning -1
 * stops the transfer. Non-2xx replies: -1 with the daemon's message. */
int dc_stream(const char *sock, const char *method, const char *path, const char *body,
	      int (*line_fn)(void *ctx, const char *line),
	      int (*raw_fn)(void *ctx, const char *data, size_t n), void *ctx);

/* Common options of the fleet commands. */
struct dc_common {
	const char *socket;
	bool json;
};
/* Prints JSON (pretty) to stdout. */
int dc_print_json(json_t *j);

#endif

/* Parses [--socket PATH] [--json] [-h] plus extra long options handled by
 * extra_fn (may be NULL); returns 0, 1 after --help (printed with
 * help), or a cli_usage() code. Positional arguments are left at
 * argv[optind..]. */
int dc_parse(const char *cmd, int argc, char **argv, struct dc_common *c, const char *help,
	     const struct option *extra, int (*extra_fn)(int opt, const char *arg, void *ctx),
	     void *ctx);
/* pause / resume / stop NAME...: an app (all its instances) or an
 * instance. */
int dc_action(const char *cmd, int argc, char **argv);
