/* lttle resume: resume an app's instances or one instance on ignitiond. */
#include "cli.h"
#include "daemon_client.h"

int cmd_resume(int argc, char **argv)
{
	return dc_action("resume", argc, argv);
}
