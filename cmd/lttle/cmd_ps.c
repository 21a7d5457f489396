/* lttle ps: list the live instances on ignitiond. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "daemon_client.h"

static const char help[] =
	"usage: lttle ps [APP] [--socket PATH] [--json]\n\n"
	"Lists live instances (all apps, or APP's): id, app, state (starting, running,\n"
	"pausing, paused, resuming, stopping), how it started (cold, restore, resume),\n"
	"open connections and the VM's process id.\n"
	"  --socket PATH   ignitiond's socket (default $LTTLE_SOCKET, else the daemon's)\n"
	"  --json          a JSON array of {id, app, state, started_by, generation,\n"
	"                  connections, held, pid}\n";

int cmd_ps(int argc, char **argv)
{
	struct dc_common c = {0};
	int r = dc_parse("ps", argc, argv, &c, help, NULL, NULL, NULL);
	if (r)
		return r == 1 ? 0 : r;
	if (argc - optind > 1)
		return cli_usage("ps", "expected at most one app name");
	char *path = optind < argc ? lt_sprintf("/v1/apps/%s/instances", argv[optind])
				   : lt_strdup("/v1/instances");
	char *sock = dc_socket(c.socket);
	json_t *insts = NULL;
	int rc = sock && path ? dc_json(sock, "GET", path, NULL, &insts, NULL) : -1;
	free(sock);
	free(path);
	if (rc < 0)
		return cli_fail("ps");
	if (c.json) {
		rc = dc_print_json(insts);
	} else {
		printf("%-28s %-20s %-9s %-10s %5s %8s\n", "ID", "APP", "STATE", "STARTED_BY",
		       "CONNS", "PID");
		size_t i;
		json_t *x;
		json_array_foreach(insts, i, x)
			printf("%-28s %-20s %-9s %-10s %5lld %8lld\n",
			       json_string_value(json_object_get(x, "id")),
			       json_string_value(json_object_get(x, "app")),
			       json_string_value(json_object_get(x, "state")),
			       json_string_value(json_object_get(x, "started_by")),
			       (long long)json_integer_value(json_object_get(x, "connections")),
			       (long long)json_integer_value(json_object_get(x, "pid")));
	}
	json_decref(insts);
	return rc < 0 ? cli_fail("ps") : 0;
}
