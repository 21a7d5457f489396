/* lttle rm: remove apps from ignitiond (their VMs stop, their snapshots go). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "daemon_client.h"

static const char help[] =
	"usage: lttle rm APP... [--socket PATH] [--json]\n\n"
	"Removes apps: their listeners close, open connections drain (up to the\n"
	"daemon's drain timeout), their VMs stop, and their records and snapshots\n"
	"are deleted. Images and rootfs builds stay in the store.\n"
	"  --socket PATH   ignitiond's socket (default $LTTLE_SOCKET, else the daemon's)\n"
	"  --json          print the daemon's answers as JSON\n";

int cmd_rm(int argc, char **argv)
{
	struct dc_common c = {0};
	int r = dc_parse("rm", argc, argv, &c, help, NULL, NULL, NULL);
	if (r)
		return r == 1 ? 0 : r;
	if (optind >= argc)
		return cli_usage("rm", "expected an app name");
	char *sock = dc_socket(c.socket);
	int rc = sock ? 0 : -1;
	for (int k = optind; k < argc && rc == 0; k++) {
		char *path = lt_sprintf("/v1/apps/%s", argv[k]);
		json_t *out = NULL;
		rc = path ? dc_json(sock, "DELETE", path, NULL, &out, NULL) : -1;
		free(path);
		if (rc == 0 && c.json)
			rc = dc_print_json(out);
		else if (rc == 0)
			printf("removed %s\n", argv[k]);
		json_decref(out);
	}
	free(sock);
	return rc < 0 ? cli_fail("rm") : 0;
}
