/* lttle-init: user:group resolution through an image's passwd/group. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"

static char dir[64], pw[96], gr[96];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/lttle-init-user.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(pw, sizeof(pw), "%s/passwd", dir);
	snprintf(gr, sizeof(gr), "%s/group", dir);
	const char *passwd = "root:x:0:0:root:/root:/bin/sh\n"
			     "# a comment:x:5:5::/:\n"
			     "broken line without fields\n"
			     "bad:x:notanumber:1::/:/bin/sh\n"
			     "app:x:1000:1000:App:/home/app:/bin/sh\n"
			     "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
			     "huge:x:4294967295:1::/:/bin/sh\n";
	const char *group = "root:x:0:\n"
			    "app:x:1000:\n"
			    "web:x:2000:nobody,app\n"
			    "logs:x:3000:app\n"
			    "other:x:4000:nobody\n"
			    "junk:x:bad:app\n";
	if (lt_write_file_atomic(pw, passwd, strlen(passwd), 0644) < 0 ||
	    lt_write_file_atomic(gr, group, strlen(group), 0644) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return lt_rm_rf(dir);
}

static bool has_group(const struct li_user *u, gid_t g)
{
	for (size_t i = 0; i < u->n_groups; i++)
		if (u->groups[i] == g)
			return true;
	return false;
}

static void test_by_name(void **state)
{
	(void)state;
	struct li_user u;
	assert_int_equal(li_user_resolve(pw, gr, "app", &u), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 1000);
	assert_string_equal(u.name, "app");
	assert_string_equal(u.home, "/home/app");
	/* primary first, then /etc/group memberships, no duplicates */
	assert_int_equal(u.n_groups, 3);
	assert_int_equal(u.groups[0], 1000);
	assert_true(has_group(&u, 2000));
	assert_true(has_group(&u, 3000));
	assert_false(has_group(&u, 4000));
}

static void test_default_is_root(void **state)
{
	(void)state;
	struct li_user u;
	assert_int_equal(li_user_resolve(pw, gr, "", &u), 0);
	assert_int_equal(u.uid, 0);
	assert_int_equal(u.gid, 0);
	assert_string_equal(u.name, "root");
	assert_string_equal(u.home, "/root");
	assert_int_equal(u.n_groups, 1);
}

static void test_numeric(void **state)
{
	(void)state;
	struct li_user u;
	/* a uid with an entry takes its gid and home */
	assert_int_equal(li_user_resolve(pw, gr, "65534", &u), 0);
	assert_int_equal(u.gid, 65534);
	assert_string_equal(u.name, "nobody");
	assert_true(has_group(&u, 2000));
	assert_true(has_group(&u, 4000));
	/* a bare uid without one: gid 0, home / */
	assert_int_equal(li_user_resolve(pw, gr, "4242", &u), 0);
	assert_int_equal(u.uid, 4242);
	assert_int_equal(u.gid, 0);
	assert_string_equal(u.home, "/");
	assert_string_equal(u.name, "");
	assert_int_equal(u.n_groups, 1);
	/* uid:gid, neither needs an entry */
	assert_int_equal(li_user_resolve(pw, gr, "4242:77", &u), 0);
	assert_int_equal(u.uid, 4242);
	assert_int_equal(u.gid, 77);
}

static void test_with_group(void **state)
{
	(void)state;
	struct li_user u;
	assert_int_equal(li_user_resolve(pw, gr, "app:web", &u), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 2000);
	assert_int_equal(u.groups[0], 2000);
	assert_true(has_group(&u, 3000)); /* memberships still apply */
	assert_int_equal(li_user_resolve(pw, gr, "app:5", &u), 0);
	assert_int_equal(u.gid, 5);
	assert_int_equal(li_user_resolve(pw, gr, "1000:logs", &u), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 3000);
}

static void test_errors(void **state)
{
	(void)state;
	struct li_user u;
	assert_int_equal(li_user_resolve(pw, gr, "ghost", &u), -1);
	assert_non_null(strstr(lt_errmsg(), "\"ghost\""));
	assert_non_null(strstr(lt_errmsg(), pw));
	assert_int_equal(li_user_resolve(pw, gr, "app:ghosts", &u), -1);
	assert_non_null(strstr(lt_errmsg(), "group \"ghosts\""));
	assert_int_equal(li_user_resolve(pw, gr, "app:", &u), -1);
	/* malformed lines never match */
	assert_int_equal(li_user_resolve(pw, gr, "bad", &u), -1);
	/* (uid_t)-1 is not a uid: treated as a name, which does not exist */
	assert_int_equal(li_user_resolve(pw, gr, "4294967295", &u), -1);
	assert_int_equal(li_user_resolve(pw, gr, "huge", &u), -1);
	char longname[400];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(li_user_resolve(pw, gr, longname, &u), -1);
}

static void test_missing_files(void **state)
{
	(void)state;
	struct li_user u;
	char nopw[128], nogr[128];
	snprintf(nopw, sizeof(nopw), "%s/none-passwd", dir);
	snprintf(nogr, sizeof(nogr), "%s/none-group", dir);
	/* numeric users work on images without /etc/passwd (scratch images) */
	assert_int_equal(li_user_resolve(nopw, nogr, "1234:1234", &u), 0);
	assert_int_equal(u.uid, 1234);
	assert_int_equal(u.gid, 1234);
	assert_int_equal(li_user_resolve(nopw, nogr, "", &u), 0);
	assert_int_equal(u.uid, 0);
	assert_int_equal(li_user_resolve(nopw, nogr, "app", &u), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_by_name),    cmocka_unit_test(test_default_is_root),
		cmocka_unit_test(test_numeric),    cmocka_unit_test(test_with_group),
		cmocka_unit_test(test_errors),     cmocka_unit_test(test_missing_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
