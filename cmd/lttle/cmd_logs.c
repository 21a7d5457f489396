/* lttle logs: an app's or an instance's console (kernel + app output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "daemon_client.h"

static const char help[] =
	"usage: lttle logs [-f] APP|INSTANCE [--socket PATH]\n\n"
	"Prints the guest serial console (kernel, init and the app's output). For an\n"
	"app: its deploy boot's console, then each live instance's, lines prefixed\n"
	"with the instance id.\n"
	"  -f, --follow    keep printing new output (an app's new instances too) until\n"
	"                  interrupted, or until the instance is gone\n"
	"  --socket PATH   ignitiond's socket (default $LTTLE_SOCKET, else the daemon's)\n";

static int follow_opt(int opt, const char *arg, void *ctx)
{
	(void)arg;
	if (opt != 'f')
		return lt_fail("invalid option");
	*(bool *)ctx = true;
	return 0;
}

static int out_raw(void *ctx, const char *data, size_t n)
{
	(void)ctx;
	if (fwrite(data, 1, n, stdout) != n)
		return -1;
	fflush(stdout);
	return 0;
}

int cmd_logs(int argc, char **argv)
{
	static const struct option extra[] = {{"follow", no_argument, NULL, 'f'}, {0}};
	struct dc_common c = {0};
	bool follow = false;
	int r = dc_parse("logs", argc, argv, &c, help, extra, follow_opt, &follow);
	if (r)
		return r == 1 ? 0 : r;
	if (optind + 1 != argc)
		return cli_usage("logs", "expected one app or instance name");
	char *sock = dc_socket(c.socket);
	char *path = lt_sprintf("/v1/logs/%s%s", argv[optind], follow ? "?follow=1" : "");
	int rc = sock && path ? dc_stream(sock, "GET", path, NULL, NULL, out_raw, NULL) : -1;
	free(sock);
	free(path);
	return rc < 0 ? cli_fail("logs") : 0;
}
