/* lttle info: show an app (or an instance) on ignitiond. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "daemon_client.h"

static const char help[] =
	"usage: lttle info APP|INSTANCE [--socket PATH] [--json]\n\n"
	"Shows an app: its image, engine, snapshot, rootfs, kernel, policy, ports,\n"
	"counters and instances (or one instance's state).\n"
	"  --socket PATH   ignitiond's socket (default $LTTLE_SOCKET, else the daemon's)\n"
	"  --json          the daemon's JSON\n";

static void show(const char *prefix, json_t *j)
{
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v) {
		if (json_is_object(v)) {
			char p[128];
			snprintf(p, sizeof(p), "%s%s.", prefix, k);
			show(p, v);
			continue;
		}
		if (json_is_array(v) && json_array_size(v) && json_is_object(json_array_get(v, 0))) {
			size_t i;
			json_t *e;
			json_array_foreach(v, i, e) {
				char p[128];
				snprintf(p, sizeof(p), "%s%s[%zu].", prefix, k, i);
				show(p, e);
			}
			continue;
		}
		char *s = json_is_string(v) ? strdup(json_string_value(v))
					    : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		printf("%s%s: %s\n", prefix, k, s ? s : "?");
		free(s);
	}
}

int cmd_info(int argc, char **argv)
{
	struct dc_common c = {0};
	int r = dc_parse("info", argc, argv, &c, help, NULL, NULL, NULL);
	if (r)
		return r == 1 ? 0 : r;
	if (optind + 1 != argc)
		return cli_usage("info", "expected one app or instance name");
	const char *name = argv[optind];
	char *sock = dc_socket(c.socket);
	char *path = lt_sprintf("/v1/apps/%s", name);
	json_t *out = NULL;
	long status = 0;
	int rc = sock && path ? dc_json(sock, "GET", path, NULL, &out, &status) : -1;
	free(path);
	if (rc < 0 && (status == 404 || status == 400)) {
		path = lt_sprintf("/v1/instances/%s", name);
		rc = path ? dc_json(sock, "GET", path, NULL, &out, &status) : -1;
		free(path);
		if (rc < 0 && (status == 404 || status == 400))
			rc = lt_fail("no app or instance '%s'", name);
	}
	free(sock);
	if (rc < 0)
		return cli_fail("info");
	if (c.json)
		rc = dc_print_json(out);
	else
		show("", out);
	json_decref(out);
	return rc < 0 ? cli_fail("info") : 0;
}
