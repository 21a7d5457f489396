/* lttle scale: set an app's min/max instances on ignitiond. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "daemon_client.h"

static const char help[] =
	"usage: lttle scale APP [--min N] [--max N] [--socket PATH] [--json]\n\n"
	"Sets how many instances an app keeps running (--min; 0 scales to zero) and\n"
	"how many it may run at most (--max). Unset ones keep their value.\n"
	"  --socket PATH   ignitiond's socket (default $LTTLE_SOCKET, else the daemon's)\n"
	"  --json          print the updated app as JSON\n";

static int scale_opt(int opt, const char *arg, void *ctx)
{
	json_t *body = ctx;
	uint64_t v;
	if (lt_parse_u64(arg, &v) < 0 || v > 1000000)
		return lt_fail("--%s: '%s' is not a number", opt == 'm' ? "min" : "max", arg);
	json_object_set_new(body, opt == 'm' ? "min" : "max", json_integer((json_int_t)v));
	return 0;
}

int cmd_scale(int argc, char **argv)
{
	static const struct option extra[] = {
		{"min", required_argument, NULL, 'm'},
		{"max", required_argument, NULL, 'M'},
		{0},
	};
	struct dc_common c = {0};
	json_t *body = json_object();
	int r = dc_parse("scale", argc, argv, &c, help, extra, scale_opt, body);
	if (r) {
		json_decref(body);
		return r == 1 ? 0 : r;
	}
	if (optind + 1 != argc || !json_object_size(body)) {
		json_decref(body);
		return cli_usage("scale", "expected APP and --min and/or --max");
	}
	char *req = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	char *sock = dc_socket(c.socket);
	char *path = lt_sprintf("/v1/apps/%s/scale", argv[optind]);
	json_t *out = NULL;
	int rc = sock && path && req ? dc_json(sock, "POST", path, req, &out, NULL) : -1;
	free(sock);
	free(path);
	free(req);
	if (rc == 0 && c.json)
		rc = dc_print_json(out);
	else if (rc == 0)
		printf("%s: min %lld, max %lld\n", argv[optind],
		       (long long)json_integer_value(json_object_get(
			       json_object_get(out, "policy"), "min")),
		       (long long)json_integer_value(json_object_get(
			       json_object_get(out, "policy"), "max")));
	json_decref(out);
	return rc < 0 ? cli_fail("scale") : 0;
}
