/* ignitiond: the lttle daemon (apps, pool, proxy). Lands with issue 7. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: ignitiond [--state DIR] [--socket PATH]\n"
		       "The lttle daemon. Not implemented yet in this build.\n");
		return 0;
	}
	fprintf(stderr, "ignitiond: not implemented yet in this build\n");
	return 1;
}
