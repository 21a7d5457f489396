/* lttle stop: stop an app's instances or one instance on ignitiond. */
#include "cli.h"
#include "daemon_client.h"

int cmd_stop(int argc, char **argv)
{
	return dc_action("stop", argc, argv);
}
