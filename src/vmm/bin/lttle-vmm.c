/* lttle-vmm: the lean, statically linked VMM process behind `lttle run`.
 * One process per VM; it links only the VMM, util, jansson and libseccomp,
 * so it starts fast and costs little memory. `lttle run` resolves image
 * references and the command line, then execs this with canonical
 * options (LTTLE_VMM_INPROC=1 makes `lttle run` stay in-process). The
 * options are those of `lttle run` (cmd/lttle/cmd_run.c, built in here
 * too). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_fail(const char *cmd)
{
	fprintf(stderr, "lttle %s: %s\n", cmd, lt_errmsg());
	return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "lttle %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'lttle %s --help')\n", cmd);
	return 2;
}

void cli_reset_getopt(void)
{
	optind = 0;
	opterr = 1;
}

char *cli_find_libexec(const char *name)
{
	lt_fail("%s: not available inside lttle-vmm", name);
	return NULL;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	cli_reset_getopt();
	return cmd_run(argc, argv);
}
