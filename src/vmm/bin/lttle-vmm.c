/* lttle-vmm: the lean, statically linked VMM process behind `lttle run`.
 *
 * One process per VM, linking only the VMM, util, jansson and libseccomp,
 * so it starts in a few ms and costs little memory. `lttle run` resolves
 * image references, the temporary overlay and the final command line,
 * then execs this with canonical options (LTTLE_VMM_INPROC=1 keeps
 * `lttle run` in-process instead):
 *
 *   lttle-vmm --kernel F [--rootfs IMG] [--ro] [--overlay-file F |
 *     --overlay-tmp F] [--disk IMG]... [--mem MIB] [--cpus N]
 *     [--cmdline S] [--initrd F] [--vsock UDS] [--vsock-cid N] [--tap T]
 *     [--control S] [--events-log F] [--cpu-template T] [--serial-log F]
 *     [--no-seccomp] [--no-ioeventfd] [--no-coalesced-io]
 *
 * The command line is used as given. Exit status as for `lttle run`. */
#include <signal.h>

#include "vmm/vmm.h"

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	return lt_vmm_main(argc, argv);
}
