/* lttle-init: the mount plan (pure) and its executor (in a private mount
 * namespace, on a scratch directory). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include "init.h"

/* The plan as text, one op per line, for whole-plan comparisons. */
static char *plan_text(const struct li_mount_opts *o)
{
	struct li_mount_op ops[LI_MOUNT_PLAN_MAX];
	int n = li_mount_plan(o, ops, LI_MOUNT_PLAN_MAX);
	assert_true(n > 0);
	struct lt_buf b = {0};
	for (int i = 0; i < n; i++) {
		char line[256];
		lt_buf_printf(&b, "%s%s\n", li_mount_op_str(&ops[i], line, sizeof(line)),
			      ops[i].optional ? " ?" : "");
	}
	lt_buf_cstr(&b);
	return (char *)b.data;
}

static const char *api_plan =
	"mkdir /proc 0555 ?\n"
	"mount proc proc /proc\n"
	"mkdir /sys 0555 ?\n"
	"mount sysfs sysfs /sys\n"
	"mkdir /dev 0755 ?\n"
	"mount devtmpfs devtmpfs /dev (mode=0755)\n"
	"mkdir /dev/pts 0755 ?\n"
	"mount devpts devpts /dev/pts (newinstance,ptmxmode=0666,mode=0620,gid=5) ?\n"
	"mkdir /dev/shm 1777 ?\n"
	"mount tmpfs shm /dev/shm (mode=1777) ?\n"
	"mkdir /tmp 1777 ?\n"
	"mount tmpfs tmpfs /tmp (mode=1777) ?\n"
	"mkdir /run 0755 ?\n"
	"mount tmpfs tmpfs /run (mode=0755) ?\n"
	"symlink /dev/fd -> /proc/self/fd ?\n";

static void test_writable_root(void **state)
{
	(void)state;
	struct li_mount_opts o = {.root_ro = false, .overlay = LI_OVL_AUTO};
	assert_false(li_mount_uses_overlay(&o));
	char *t = plan_text(&o);
	assert_string_equal(t, api_plan);
	free(t);
}

static void test_readonly_root_gets_tmpfs_overlay(void **state)
{
	(void)state;
	struct li_mount_opts o = {.root_ro = true, .overlay = LI_OVL_AUTO};
	assert_true(li_mount_uses_overlay(&o));
	char *t = plan_text(&o);
	const char *overlay =
		"mount tmpfs tmpfs /.lttle (mode=0755)\n"
		"mkdir /.lttle/lower 0755 ?\n"
		"mkdir /.lttle/rw 0755 ?\n"
		"mkdir /.lttle/root 0755 ?\n"
		"mkdir /.lttle/rw/upper 0755 ?\n"
		"mkdir /.lttle/rw/work 0755 ?\n"
		"mount bind / /.lttle/lower\n"
		"mount overlay overlay /.lttle/root (lowerdir=/.lttle/lower,"
		"upperdir=/.lttle/rw/upper,workdir=/.lttle/rw/work)\n"
		"pivot /.lttle/root\n";
	assert_int_equal(strncmp(t, overlay, strlen(overlay)), 0);
	assert_string_equal(t + strlen(overlay), api_plan);
	free(t);

	/* a writable root can ask for one too */
	o.root_ro = false;
	o.overlay = LI_OVL_TMPFS;
	t = plan_text(&o);
	assert_int_equal(strncmp(t, overlay, strlen(overlay)), 0);
	free(t);
}

static void test_overlay_none(void **state)
{
	(void)state;
	struct li_mount_opts o = {.root_ro = true, .overlay = LI_OVL_NONE};
	char *t = plan_text(&o);
	assert_string_equal(t, api_plan);
	free(t);
}

static void test_overlay_disk(void **state)
{
	(void)state;
	struct li_mount_opts o = {.root_ro = true, .overlay = LI_OVL_DISK,
				  .overlay_dev = "/dev/vdb"};
	char *t = plan_text(&o);
	const char *head =
		"mount tmpfs tmpfs /.lttle (mode=0755)\n"
		"mkdir /.lttle/lower 0755 ?\n"
		"mkdir /.lttle/rw 0755 ?\n"
		"mkdir /.lttle/root 0755 ?\n"
		"mkdir /.lttle/dev 0755 ?\n"
		"mount devtmpfs devtmpfs /.lttle/dev\n"
		"mount ext4 /.lttle/dev/vdb /.lttle/rw\n"
		"mkdir /.lttle/rw/upper 0755 ?\n"
		"mkdir /.lttle/rw/work 0755 ?\n"
		"mount bind / /.lttle/lower\n";
	assert_int_equal(strncmp(t, head, strlen(head)), 0);
	assert_non_null(strstr(t, "pivot /.lttle/root\nmkdir /proc"));
	free(t);

	o.overlay_dev = NULL;
	struct li_mount_op ops[LI_MOUNT_PLAN_MAX];
	assert_int_equal(li_mount_plan(&o, ops, LI_MOUNT_PLAN_MAX), -1);
}

static void test_plan_bound(void **state)
{
	(void)state;
	struct li_mount_opts o = {.root_ro = true};
	struct li_mount_op ops[LI_MOUNT_PLAN_MAX];
	assert_int_equal(li_mount_plan(&o, ops, 5), -1);
	assert_non_null(strstr(lt_errmsg(), "more than 5"));
	int n = li_mount_plan(&o, ops, LI_MOUNT_PLAN_MAX);
	assert_true(n > 5 && n <= LI_MOUNT_PLAN_MAX);
}

/* Runs the executor in a child with its own mount namespace, so the host's
 * mounts are never touched. Exit code 0 means every check passed. */
static int exec_in_namespace(const char *dir)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 77;
	char a[128], b[128], link[128], missing[128];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/a/b", dir);
	snprintf(link, sizeof(link), "%s/a/fd", dir);
	snprintf(missing, sizeof(missing), "%s/no/such/dir", dir);
	struct li_mount_op ops[] = {
		{.kind = LI_OP_MKDIR, .target = a, .mode = 0755, .optional = true},
		{.kind = LI_OP_MOUNT, .source = "tmpfs", .target = a, .fstype = "tmpfs",
		 .data = "mode=0750"},
		{.kind = LI_OP_MKDIR, .target = b, .mode = 01777, .optional = true},
		{.kind = LI_OP_MKDIR, .target = b, .mode = 01777, .optional = true}, /* exists */
		{.kind = LI_OP_SYMLINK, .source = "/proc/self/fd", .target = link},
		{.kind = LI_OP_MOUNT, .source = "tmpfs", .target = missing, .fstype = "tmpfs",
		 .optional = true}, /* fails, continues */
	};
	if (li_mount_exec(ops, LT_ARRAY_LEN(ops)) < 0)
		return 1;
	struct statfs sf;
	struct stat st;
	if (statfs(a, &sf) < 0 || sf.f_type != TMPFS_MAGIC)
		return 2;
	if (stat(a, &st) < 0 || (st.st_mode & 07777) != 0750)
		return 3;
	if (stat(b, &st) < 0 || (st.st_mode & 07777) != 01777)
		return 4; /* the sticky bit survives the umask */
	char target[64] = "";
	if (readlink(link, target, sizeof(target) - 1) < 0 || strcmp(target, "/proc/self/fd"))
		return 5;
	/* a required op that fails stops the plan and says which */
	struct li_mount_op req = {.kind = LI_OP_MOUNT, .source = "tmpfs", .target = missing,
				  .fstype = "tmpfs"};
	if (li_mount_exec(&req, 1) != -1 || !strstr(lt_errmsg(), "mount tmpfs on") ||
	    !strstr(lt_errmsg(), missing))
		return 6;
	return 0;
}

static void test_exec(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	char dir[] = "/tmp/lttle-init-mnt.XXXXXX";
	assert_non_null(mkdtemp(dir));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(exec_in_namespace(dir));
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		lt_rm_rf(dir);
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the namespace died with the child: nothing left mounted here */
	char a[128];
	snprintf(a, sizeof(a), "%s/a", dir);
	struct statfs sa, sd;
	assert_int_equal(statfs(a, &sa), 0);
	assert_int_equal(statfs(dir, &sd), 0);
	assert_true(sa.f_type == sd.f_type && !memcmp(&sa.f_fsid, &sd.f_fsid, sizeof(sa.f_fsid)));
	assert_int_equal(lt_rm_rf(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writable_root),
		cmocka_unit_test(test_readonly_root_gets_tmpfs_overlay),
		cmocka_unit_test(test_overlay_none),
		cmocka_unit_test(test_overlay_disk),
		cmocka_unit_test(test_plan_bound),
		cmocka_unit_test(test_exec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
