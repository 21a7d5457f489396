/* lttle apps: list the apps deployed on ignitiond. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "daemon_client.h"

static const char help[] =
	"usage: lttle apps [--socket PATH] [--json]\n\n"
	"Lists the apps deployed on ignitiond: name, engine, state, live instances,\n"
	"restores / resumes / cold boots since deploy, ports and image.\n"
	"  --socket PATH   ignitiond's socket (default $LTTLE_SOCKET, else the daemon's)\n"
	"  --json          a JSON array of {name, ref, engine, instances, restores,\n"
	"                  resumes, cold_boots, ports, state, degraded, ...}\n";

static const char *first_port(json_t *app)
{
	const char *s = json_string_value(
		json_object_get(json_array_get(json_object_get(app, "ports"), 0), "listen"));
	return s ? s : "-";
}

int cmd_apps(int argc, char **argv)
{
	struct dc_common c = {0};
	int r = dc_parse("apps", argc, argv, &c, help, NULL, NULL, NULL);
	if (r)
		return r == 1 ? 0 : r;
	if (optind != argc)
		return cli_usage("apps", "unexpected argument '%s'", argv[optind]);
	char *sock = dc_socket(c.socket);
	json_t *apps = NULL;
	int rc = sock ? dc_json(sock, "GET", "/v1/apps", NULL, &apps, NULL) : -1;
	free(sock);
	if (rc < 0)
		return cli_fail("apps");
	if (c.json) {
		rc = dc_print_json(apps);
	} else {
		printf("%-20s %-6s %-9s %9s %8s %7s %5s  %-21s %s\n", "NAME", "ENGINE", "STATE",
		       "INSTANCES", "RESTORES", "RESUMES", "COLD", "ADDRESS", "IMAGE");
		size_t i;
		json_t *a;
		json_array_foreach(apps, i, a) {
			printf("%-20s %-6s %-9s %9lld %8lld %7lld %5lld  %-21s %s\n",
			       json_string_value(json_object_get(a, "name")),
			       json_string_value(json_object_get(a, "engine")),
			       json_string_value(json_object_get(a, "state")),
			       (long long)json_integer_value(json_object_get(a, "instances")),
			       (long long)json_integer_value(json_object_get(a, "restores")),
			       (long long)json_integer_value(json_object_get(a, "resumes")),
			       (long long)json_integer_value(json_object_get(a, "cold_boots")),
			       first_port(a), json_string_value(json_object_get(a, "ref")));
		}
	}
	json_decref(apps);
	return rc < 0 ? cli_fail("apps") : 0;
}
