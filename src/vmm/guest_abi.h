/* The lttle guest device ABI: how a guest reports events to its VMM.
 *
 * Shared by src/vmm (the host side), kernel/patches (the listen()/bind()
 * hook, which copies this file into the kernel tree at build time) and the
 * guest init. Plain #defines only, so any of them can include it.
 *
 * Transport: one x86 I/O port, LT_GUEST_PORT. The guest writes a report as
 * a line of ASCII with byte-wide `outb`, one byte per write:
 *
 *     <event>[ <arg>[ <arg>]]\n
 *
 * A line is at most LT_GUEST_LINE_MAX bytes including the '\n'; a longer
 * one is discarded by the host up to the next '\n'. Being plain text, the
 * same stream can be captured by QEMU's `-device isa-debugcon,iobase=...`.
 * A writer that can race with others (several CPUs) holds a lock for the
 * whole line; the lttle VMM also buffers per vCPU.
 *
 * Events (guest -> host):
 *     ready                     userspace is up (init is about to exec)
 *     listen-before PORT        listen() on a socket bound to PORT
 *     listen-after PORT RET     listen() returned RET (0 or -errno)
 *     bind-before PORT          bind() to PORT
 *     bind-after PORT RET       bind() returned RET
 *     exit CODE                 the app exited with CODE (0..255, or
 *                               128+signal)
 *     trigger [CODE]            manual trigger (default code 0)
 *     hold / release            keep the instance awake / let it idle
 *     log TEXT                  free text for the VMM's log
 *     poweroff                  the guest is powering off: the VMM stops
 *                               the VM cleanly (no ACPI needed)
 * PORT is decimal, host byte order. RET and CODE are decimal, signed.
 *
 * Replies (host -> guest): after a report, the writer may read the port
 * with `inb`. The lttle VMM answers with a line that starts with
 * LT_GUEST_REPLY_MARK; any other first byte (isa-debugcon returns 0xe9)
 * means "no host answer". The answer to every report is one of:
 *     !ok\n
 *     !restored WALL_NS ENTROPY_HEX\n   the VM was restored from a
 *         snapshot since the last report: WALL_NS is the host's
 *         CLOCK_REALTIME in ns, ENTROPY_HEX 64 hex digits of fresh
 *         randomness to mix into the guest RNG.
 * A reader stops at '\n' or after LT_GUEST_LINE_MAX bytes.
 *
 * Capture points: the VMM pauses all vCPUs on the exit of the '\n' that
 * completes the triggering line. For listen that is "listen-after", so a
 * restored guest returns from listen() with the socket already listening.
 */
#ifndef LTTLE_GUEST_ABI_H
#define LTTLE_GUEST_ABI_H

#define LT_GUEST_PORT 0x7f0

/* Paravirtual idle, for guests that cannot execute HLT (code in ring 3):
 * `outb MS, LT_GUEST_IDLE_PORT` returns once a device raised an interrupt
 * since this vCPU's previous idle write, the VM is paused or stopped, or
 * after MS milliseconds (0: do not wait). The guest then polls its queues
 * again, so a wake-up is never lost. Linux guests HLT instead. */
#define LT_GUEST_IDLE_PORT 0x7f1
#define LT_GUEST_LINE_MAX 128
#define LT_GUEST_REPLY_MARK '!'

#define LT_GUEST_EV_READY "ready"
#define LT_GUEST_EV_LISTEN_BEFORE "listen-before"
#define LT_GUEST_EV_LISTEN_AFTER "listen-after"
#define LT_GUEST_EV_BIND_BEFORE "bind-before"
#define LT_GUEST_EV_BIND_AFTER "bind-after"
#define LT_GUEST_EV_EXIT "exit"
#define LT_GUEST_EV_TRIGGER "trigger"
#define LT_GUEST_EV_HOLD "hold"
#define LT_GUEST_EV_RELEASE "release"
#define LT_GUEST_EV_LOG "log"
#define LT_GUEST_EV_POWEROFF "poweroff"

/* /proc/lttle inside the guest (kernel patch): writing one of
 * "ready", "trigger [CODE]", "hold", "release" sends that event. */
#define LT_GUEST_PROC_PATH "/proc/lttle"

/* Where `lttle build` puts the guest init and the image config inside
 * every rootfs. The kernel is started with init=LT_GUEST_INIT_PATH. */
#define LT_GUEST_INIT_PATH "/.lttle/init"
#define LT_GUEST_CONFIG_PATH "/.lttle/config.json"

/* Ingress: the guest init's forwarder accepts on vsock port P and
 * connects each stream to 127.0.0.1:P inside the guest, for every P in
 * the image's exposed ports and in the kernel cmdline's lttle.ports=P,Q.
 * The host side says "CONNECT P\n" on the VM's vsock unix socket. */
#define LT_GUEST_CMDLINE_PORTS "lttle.ports="

/* Restore notice without a reply path: QEMU's isa-debugcon cannot answer
 * reads, so the QEMU engine gives the guest a second UART (ISA 0x2f8, irq
 * 3: ttyS1) and names it on the cmdline as lttle.restore_tty=ttyS1. After
 * each restore the host writes one "!restored WALL_NS ENTROPY_HEX\n" line
 * there (the reply format above); the guest init reads the tty, steps the
 * clock, reseeds the RNG and reports "log restored". */
#define LT_GUEST_CMDLINE_RESTORE_TTY "lttle.restore_tty="
#define LT_GUEST_RESTORE_IOBASE 0x2f8
#define LT_GUEST_RESTORE_IRQ 3

#endif
