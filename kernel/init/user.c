/* OCI "user" resolution through the image's own /etc/passwd and /etc/group
 * (never the host's NSS: the static init has none, and the image is what
 * counts). Follows runc's rules; see li_user_resolve in init.h. */
#include "init.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One colon-separated line split in place; returns the field count. */
static size_t split_fields(char *line, char **f, size_t max)
{
	size_t n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++) {
		if (*p == ':') {
			*p = '\0';
			f[n++] = p + 1;
		}
	}
	return n;
}

/* A decimal id below 2^32-1 ((uid_t)-1 means "unchanged" to setuid). */
static bool parse_id(const char *s, uint32_t *out)
{
	if (!*s || strlen(s) > 10)
		return false;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v >= UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Reads an /etc file; a missing one reads as empty. */
static int read_etc(const char *path, char **out)
{
	size_t len;
	if (lt_read_file(path, LI_ETC_MAX, out, &len) == 0)
		return 0;
	if (errno == ENOENT) {
		*out = lt_strdup("");
		return *out ? 0 : -1;
	}
	return -1;
}

/* Calls fn on each well-formed line with at least min fields; fn returns
 * true to stop. */
typedef bool (*line_fn)(char **f, size_t n, void *ctx);
static void each_line(char *text, size_t min, line_fn fn, void *ctx)
{
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[8];
		size_t n = split_fields(line, f, LT_ARRAY_LEN(f));
		if (line[0] == '#' || n < min)
			continue;
		if (fn(f, n, ctx))
			return;
	}
}

struct pw_query {
	const char *name; /* match by name, or by uid when NULL */
	uint32_t uid;
	bool found;
	struct li_user *u;
};

static bool pw_match(char **f, size_t n, void *ctx)
{
	struct pw_query *q = ctx;
	uint32_t uid, gid;
	(void)n;
	if (!parse_id(f[2], &uid) || !parse_id(f[3], &gid))
		return false;
	if (q->name ? strcmp(f[0], q->name) != 0 : uid != q->uid)
		return false;
	if (strlen(f[0]) >= sizeof(q->u->name) || strlen(f[5]) >= sizeof(q->u->home))
		return false;
	q->u->uid = uid;
	q->u->gid = gid;
	strcpy(q->u->name, f[0]);
	strcpy(q->u->home, f[5]);
	q->found = true;
	return true;
}

struct gr_query {
	const char *name; /* the group to find (by name), or NULL */
	uint32_t gid;
	bool found;
	const char *member; /* collect groups listing this user */
	struct li_user *u;
};

static void add_group(struct li_user *u, gid_t gid)
{
	for (size_t i = 0; i < u->n_groups; i++) {
		if (u->groups[i] == gid)
			return;
	}
	if (u->n_groups < LI_MAX_GROUPS)
		u->groups[u->n_groups++] = gid;
}

static bool gr_match(char **f, size_t n, void *ctx)
{
	struct gr_query *q = ctx;
	uint32_t gid;
	(void)n;
	if (!parse_id(f[2], &gid))
		return false;
	if (q->name && !q->found && !strcmp(f[0], q->name)) {
		q->gid = gid;
		q->found = true;
	}
	if (q->member && *q->member && n >= 4) {
		char *save = NULL;
		for (char *m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save)) {
			if (!strcmp(m, q->member))
				add_group(q->u, gid);
		}
	}
	return false;
}

int li_user_resolve(const char *passwd_path, const char *group_path, const char *spec,
		    struct li_user *out)
{
	memset(out, 0, sizeof(*out));
	strcpy(out->home, "/");
	if (strlen(spec) > 256)
		return lt_fail("user \"%.40s...\" is too long", spec);
	char user[257], *group = NULL;
	strcpy(user, spec);
	char *colon = strchr(user, ':');
	if (colon) {
		*colon = '\0';
		group = colon + 1;
	}
	const char *uname = *user ? user : "0";

	char *pw = NULL, *gr = NULL, *gr_copy = NULL;
	int rc = -1;
	if (read_etc(passwd_path, &pw) < 0 || read_etc(group_path, &gr) < 0)
		goto out;

	uint32_t id;
	struct pw_query pq = {.u = out};
	if (parse_id(uname, &id)) {
		pq.uid = id;
		each_line(pw, 7, pw_match, &pq);
		if (!pq.found) /* runc: a bare uid is fine, with gid 0 */
			out->uid = id;
	} else {
		pq.name = uname;
		each_line(pw, 7, pw_match, &pq);
		if (!pq.found) {
			lt_fail("user \"%s\" is not in %s", uname, passwd_path);
			goto out;
		}
	}

	if (group && *group) {
		if (parse_id(group, &id)) {
			out->gid = id;
		} else {
			struct gr_query gq = {.name = group};
			gr_copy = lt_strdup(gr);
			if (!gr_copy)
				goto out;
			each_line(gr_copy, 3, gr_match, &gq);
			if (!gq.found) {
				lt_fail("group \"%s\" is not in %s", group, group_path);
				goto out;
			}
			out->gid = gq.gid;
		}
	} else if (group) {
		lt_fail("user \"%s\" has an empty group", spec);
		goto out;
	}

	add_group(out, out->gid);
	struct gr_query mq = {.member = out->name, .u = out};
	each_line(gr, 4, gr_match, &mq);
	rc = 0;
out:
	free(pw);
	free(gr);
	free(gr_copy);
	return rc;
}
