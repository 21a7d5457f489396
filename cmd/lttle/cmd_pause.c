/* lttle pause: pause an app's instances or one instance on ignitiond. */
#include "cli.h"
#include "daemon_client.h"

int cmd_pause(int argc, char **argv)
{
	return dc_action("pause", argc, argv);
}
