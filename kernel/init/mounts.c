/* The mount plan. The kernel has mounted the image (ext4 or squashfs on
 * /dev/vda) as /. When that root is read-only (squashfs, or ext4 mounted
 * ro) init stacks a writable overlay on it and pivots into it:
 *
 *   tmpfs          -> /.lttle             staging (hides the image's
 *                                         /.lttle only in the old root)
 *   [devtmpfs      -> /.lttle/dev         to reach the overlay disk]
 *   [DISK (ext4)   -> /.lttle/rw          persistent upper layer]
 *   bind /         -> /.lttle/lower       the image, without submounts
 *   overlay        -> /.lttle/root        lower + rw/upper + rw/work
 *   pivot_root /.lttle/root               old root detached
 *
 * and then, in the final root, the API filesystems:
 *
 *   proc /proc, sysfs /sys, devtmpfs /dev, devpts /dev/pts,
 *   tmpfs /dev/shm (1777), /tmp (1777), /run (0755)
 *
 * Mount points are created when missing (always possible on the overlay).
 */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OVL_OPTS "lowerdir=" LI_STAGE "/lower,upperdir=" LI_STAGE "/rw/upper,workdir=" LI_STAGE "/rw/work"

bool li_mount_uses_overlay(const struct li_mount_opts *o)
{
	switch (o->overlay) {
	case LI_OVL_NONE:
		return false;
	case LI_OVL_TMPFS:
	case LI_OVL_DISK:
		return true;
	case LI_OVL_AUTO:
	default:
		return o->root_ro;
	}
}

struct plan {
	struct li_mount_op *ops;
	size_t n, max;
	bool overflow;
};

static void add(struct plan *p, struct li_mount_op op)
{
	if (p->n >= p->max) {
		p->overflow = true;
		return;
	}
	p->ops[p->n++] = op;
}

static void mkdir_op(struct plan *p, const char *path, mode_t mode)
{
	/* EEXIST is fine; so is a read-only root whose image has the dir. */
	add(p, (struct li_mount_op){.kind = LI_OP_MKDIR, .target = path, .mode = mode,
				    .optional = true});
}

static void mount_op(struct plan *p, const char *src, const char *target, const char *fstype,
		     unsigned long flags, const char *data, bool optional)
{
	add(p, (struct li_mount_op){.kind = LI_OP_MOUNT, .source = src, .target = target,
				    .fstype = fstype, .flags = flags, .data = data,
				    .optional = optional});
}

static void overlay_ops(struct plan *p, const struct li_mount_opts *o)
{
	/* Static storage: the plan holds pointers, not copies. */
	static char disk[128];
	mount_op(p, "tmpfs", LI_STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", false);
	mkdir_op(p, LI_STAGE "/lower", 0755);
	mkdir_op(p, LI_STAGE "/rw", 0755);
	mkdir_op(p, LI_STAGE "/root", 0755);
	if (o->overlay == LI_OVL_DISK && o->overlay_dev) {
		const char *name = strrchr(o->overlay_dev, '/');
		snprintf(disk, sizeof(disk), LI_STAGE "/dev/%s", name ? name + 1 : o->overlay_dev);
		mkdir_op(p, LI_STAGE "/dev", 0755);
		mount_op(p, "devtmpfs", LI_STAGE "/dev", "devtmpfs", MS_NOSUID, NULL, false);
		mount_op(p, disk, LI_STAGE "/rw", "ext4", MS_NOSUID | MS_NODEV, NULL, false);
	}
	mkdir_op(p, LI_STAGE "/rw/upper", 0755);
	mkdir_op(p, LI_STAGE "/rw/work", 0755);
	mount_op(p, "/", LI_STAGE "/lower", NULL, MS_BIND, NULL, false);
	mount_op(p, "overlay", LI_STAGE "/root", "overlay", 0, OVL_OPTS, false);
	add(p, (struct li_mount_op){.kind = LI_OP_PIVOT, .target = LI_STAGE "/root"});
}

static void api_ops(struct plan *p)
{
	const unsigned long nse = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	mkdir_op(p, "/proc", 0555);
	mount_op(p, "proc", "/proc", "proc", nse, NULL, false);
	mkdir_op(p, "/sys", 0555);
	mount_op(p, "sysfs", "/sys", "sysfs", nse, NULL, false);
	mkdir_op(p, "/dev", 0755);
	mount_op(p, "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", false);
	mkdir_op(p, "/dev/pts", 0755);
	mount_op(p, "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		 "newinstance,ptmxmode=0666,mode=0620,gid=5", true);
	mkdir_op(p, "/dev/shm", 01777);
	mount_op(p, "shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", true);
	mkdir_op(p, "/tmp", 01777);
	mount_op(p, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", true);
	mkdir_op(p, "/run", 0755);
	mount_op(p, "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", true);
	add(p, (struct li_mount_op){.kind = LI_OP_SYMLINK, .source = "/proc/self/fd",
				    .target = "/dev/fd", .optional = true});
}

int li_mount_plan(const struct li_mount_opts *o, struct li_mount_op *ops, size_t max)
{
	struct plan p = {.ops = ops, .max = max};
	if (o->overlay == LI_OVL_DISK && (!o->overlay_dev || !*o->overlay_dev))
		return lt_fail("overlay disk not named");
	if (li_mount_uses_overlay(o))
		overlay_ops(&p, o);
	api_ops(&p);
	if (p.overflow)
		return lt_fail("mount plan needs more than %zu steps", max);
	return (int)p.n;
}

/* pivot_root(".", ".") then detach the old root stacked under "/": no
 * directory for the old root is needed in the new one. */
static int pivot_into(const char *new_root)
{
	if (chdir(new_root) < 0)
		return lt_fail_errno("chdir %s", new_root);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return lt_fail_errno("pivot_root %s", new_root);
	if (umount2(".", MNT_DETACH) < 0)
		return lt_fail_errno("detach the old root");
	if (chdir("/") < 0)
		return lt_fail_errno("chdir /");
	return 0;
}

static int exec_op(const struct li_mount_op *op)
{
	switch (op->kind) {
	case LI_OP_MKDIR:
		if (mkdir(op->target, op->mode) == 0) {
			if (op->mode & 07000) /* mkdir drops the sticky bit */
				(void)chmod(op->target, op->mode);
			return 0;
		}
		if (errno == EEXIST)
			return 0;
		return lt_fail_errno("mkdir %s", op->target);
	case LI_OP_MOUNT:
		if (mount(op->source, op->target, op->fstype, op->flags, op->data) < 0) {
			/* CONFIG_DEVTMPFS_MOUNT put the one devtmpfs there already */
			if (errno == EBUSY && op->fstype && !strcmp(op->fstype, "devtmpfs"))
				return 0;
			return lt_fail_errno("mount %s on %s", op->fstype ? op->fstype : op->source,
					     op->target);
		}
		return 0;
	case LI_OP_PIVOT:
		return pivot_into(op->target);
	case LI_OP_SYMLINK:
		if (symlink(op->source, op->target) < 0 && errno != EEXIST)
			return lt_fail_errno("symlink %s", op->target);
		return 0;
	}
	return lt_fail("unknown mount op %d", (int)op->kind);
}

int li_mount_exec(const struct li_mount_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (exec_op(&ops[i]) == 0)
			continue;
		if (!ops[i].optional)
			return -1;
		li_log("%s (continuing)", lt_errmsg());
	}
	return 0;
}

const char *li_mount_op_str(const struct li_mount_op *op, char *buf, size_t len)
{
	switch (op->kind) {
	case LI_OP_MKDIR:
		snprintf(buf, len, "mkdir %s %04o", op->target, (unsigned)op->mode);
		break;
	case LI_OP_MOUNT:
		snprintf(buf, len, "mount %s %s %s%s%s%s", op->fstype ? op->fstype : "bind",
			 op->source, op->target, op->data ? " (" : "", op->data ? op->data : "",
			 op->data ? ")" : "");
		break;
	case LI_OP_PIVOT:
		snprintf(buf, len, "pivot %s", op->target);
		break;
	case LI_OP_SYMLINK:
		snprintf(buf, len, "symlink %s -> %s", op->target, op->source);
		break;
	}
	return buf;
}
