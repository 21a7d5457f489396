/* Persistence: app records and instance records under the state dir.
 *
 *   apps/<name>/app.json          the app (spec, engine, artefact paths,
 *                                 generation, bound ports), written atomically
 *   apps/<name>/gen-<N>.snap      snapshots (see deploy.c)
 *   apps/<name>/boot.log          the deploy boot's console
 *   instances/<key>/record.json   {pid, start, engine, app} of a live VM
 *
 * Every name that becomes a path component is validated first
 * (dmn_name_valid / dmn_instance_id_valid); nothing read back from these
 * files is trusted more than a request would be.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

#define APP_JSON_MAX (256 * 1024)

char *dmn_app_dir(const char *state, const char *name)
{
	if (!dmn_name_valid(name)) {
		lt_fail("invalid app name '%.64s'", name);
		return NULL;
	}
	return lt_sprintf("%s/apps/%s", state, name);
}

void dmn_app_rec_free(struct dmn_app_rec *r)
{
	dmn_spec_free(&r->spec);
}

int dmn_app_save(const char *state, const struct dmn_app_rec *r)
{
	char *dir = dmn_app_dir(state, r->spec.name);
	char *path = dir ? lt_path_join(dir, "app.json") : NULL;
	json_t *spec = dmn_spec_to_json(&r->spec);
	json_t *gp = json_array(), *bp = json_array();
	int rc = -1;
	if (!path || !spec || !gp || !bp || lt_mkdir_p(dir, 0750) < 0)
		goto out;
	for (size_t k = 0; k < r->nports; k++) {
		json_array_append_new(gp, json_integer(r->guest_ports[k]));
		json_array_append_new(bp, json_integer(r->bound[k]));
	}
	json_t *j = json_pack("{s:i, s:O, s:s, s:s, s:s, s:s, s:s, s:i, s:O, s:O, s:I}", "version",
			      1, "spec", spec, "engine", r->engine, "kernel", r->kernel, "rootfs",
			      r->rootfs, "snapshot", r->snapshot, "digest", r->digest, "generation",
			      (int)r->generation, "guest_ports", gp, "bound", bp, "deployed",
			      (json_int_t)r->deployed);
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!s) {
		lt_fail("cannot format the record of %s", r->spec.name);
		goto out;
	}
	rc = lt_write_file_atomic(path, s, strlen(s), 0640);
	free(s);
out:
	json_decref(spec);
	json_decref(gp);
	json_decref(bp);
	free(path);
	free(dir);
	return rc;
}

static int rec_str(json_t *j, const char *key, char *out, size_t size, bool path)
{
	json_t *v = json_object_get(j, key);
	if (!json_is_string(v) || json_string_length(v) >= size ||
	    json_string_length(v) != strlen(json_string_value(v)))
		return lt_fail("field '%s' missing or invalid", key);
	const char *s = json_string_value(v);
	if (path && s[0] && (s[0] != '/' || strstr(s, "/../")))
		return lt_fail("field '%s' is not an absolute path", key);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int rec_ports(json_t *j, const char *key, uint16_t *out, size_t n)
{
	json_t *v = json_object_get(j, key);
	if (!json_is_array(v) || json_array_size(v) != n)
		return lt_fail("field '%s' missing or of the wrong length", key);
	for (size_t k = 0; k < n; k++) {
		json_t *e = json_array_get(v, k);
		if (!json_is_integer(e) || json_integer_value(e) < 0 ||
		    json_integer_value(e) > 65535)
			return lt_fail("field '%s' holds a bad port", key);
		out[k] = (uint16_t)json_integer_value(e);
	}
	return 0;
}

static int rec_parse(json_t *j, const char *name, struct dmn_app_rec *r)
{
	dmn_spec_defaults(&r->spec);
	json_t *gen = json_object_get(j, "generation"), *dep = json_object_get(j, "deployed");
	json_t *gp = json_object_get(j, "guest_ports");
	if (dmn_spec_from_json(json_object_get(j, "spec"), &r->spec) < 0)
		return lt_fail_ctx("spec");
	if (strcmp(r->spec.name, name))
		return lt_fail("the record names app '%s'", r->spec.name);
	if (rec_str(j, "engine", r->engine, sizeof(r->engine), false) < 0 ||
	    rec_str(j, "kernel", r->kernel, sizeof(r->kernel), true) < 0 ||
	    rec_str(j, "rootfs", r->rootfs, sizeof(r->rootfs), true) < 0 ||
	    rec_str(j, "snapshot", r->snapshot, sizeof(r->snapshot), true) < 0 ||
	    rec_str(j, "digest", r->digest, sizeof(r->digest), false) < 0)
		return -1;
	if (!json_is_integer(gen) || json_integer_value(gen) < 1 ||
	    json_integer_value(gen) > UINT32_MAX)
		return lt_fail("field 'generation' missing or invalid");
	r->generation = (uint32_t)json_integer_value(gen);
	r->deployed = json_is_integer(dep) ? json_integer_value(dep) : 0;
	if (!json_is_array(gp) || json_array_size(gp) == 0 || json_array_size(gp) > DMN_MAX_PORTS)
		return lt_fail("field 'guest_ports' missing or invalid");
	r->nports = json_array_size(gp);
	if (rec_ports(j, "guest_ports", r->guest_ports, r->nports) < 0 ||
	    rec_ports(j, "bound", r->bound, r->nports) < 0)
		return -1;
	for (size_t k = 0; k < r->nports; k++)
		if (!r->guest_ports[k])
			return lt_fail("field 'guest_ports' holds port 0");
	return 0;
}

int dmn_app_load(const char *state, const char *name, struct dmn_app_rec *r)
{
	memset(r, 0, sizeof(*r));
	char *dir = dmn_app_dir(state, name);
	char *path = dir ? lt_path_join(dir, "app.json") : NULL;
	char *data = NULL;
	size_t len;
	int rc = -1;
	if (!path || lt_read_file(path, APP_JSON_MAX, &data, &len) < 0)
		goto out;
	json_error_t err;
	json_t *j = json_loadb(data, len, 0, &err);
	if (!j) {
		lt_fail("%s: malformed JSON at line %d: %s", path, err.line, err.text);
		goto out;
	}
	rc = rec_parse(j, name, r);
	json_decref(j);
	if (rc < 0) {
		lt_fail_ctx("%s", path);
		dmn_app_rec_free(r);
	}
out:
	free(data);
	free(path);
	free(dir);
	return rc;
}

int dmn_app_delete(const char *state, const char *name)
{
	char *dir = dmn_app_dir(state, name);
	if (!dir)
		return -1;
	int rc = lt_rm_rf(dir);
	free(dir);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int dmn_app_list(const char *state, char ***names, size_t *n)
{
	*names = NULL;
	*n = 0;
	char *dir = lt_path_join(state, "apps");
	if (!dir)
		return -1;
	DIR *dp = opendir(dir);
	if (!dp) {
		int e = errno;
		free(dir);
		if (e == ENOENT)
			return 0;
		errno = e;
		return lt_fail_errno("cannot list %s/apps", state);
	}
	size_t cap = 0;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(dp))) {
		if (!dmn_name_valid(de->d_name))
			continue; /* ".", "..", temp files, anything not ours */
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			char **nn = lt_realloc(*names, cap * sizeof(char *));
			if (!nn) {
				rc = -1;
				break;
			}
			*names = nn;
		}
		if (!((*names)[*n] = lt_strdup(de->d_name))) {
			rc = -1;
			break;
		}
		(*n)++;
	}
	closedir(dp);
	free(dir);
	if (*n)
		qsort(*names, *n, sizeof(char *), cmp_str);
	return rc;
}

/* ---- instance records ---------------------------------------------------- */

static bool key_valid(const char *key)
{
	const char *k = !strncmp(key, "deploy-", 7) ? key + 7 : key;
	return dmn_instance_id_valid(k);
}

uint64_t dmn_proc_start_time(int pid)
{
	if (pid <= 0)
		return 0;
	char path[64], *data = NULL;
	size_t len;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (lt_read_file(path, 4096, &data, &len) < 0) {
		lt_clear_error();
		return 0;
	}
	/* the command name may hold spaces and ')': fields start after the
	 * last ')' */
	char *p = strrchr(data, ')');
	uint64_t start = 0;
	/* a zombie is gone for our purposes (its parent may never reap it) */
	if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
		p = NULL;
	if (p) {
		p++;
		for (int field = 3; field < 22 && p; field++)
			p = strchr(p + 1, ' ');
		if (p)
			start = strtoull(p + 1, NULL, 10);
	}
	free(data);
	return start;
}

int dmn_inst_record(const char *state, const char *key, int pid, const char *engine,
		    const char *app)
{
	if (!key_valid(key))
		return lt_fail("invalid instance key '%.80s'", key);
	char *dir = lt_sprintf("%s/instances/%s", state, key);
	char *path = dir ? lt_path_join(dir, "record.json") : NULL;
	int rc = -1;
	if (!path || lt_mkdir_p(dir, 0750) < 0)
		goto out;
	json_t *j = json_pack("{s:i, s:I, s:s, s:s}", "pid", pid, "start",
			      (json_int_t)dmn_proc_start_time(pid), "engine", engine, "app", app);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (s)
		rc = lt_write_file_atomic(path, s, strlen(s), 0640);
	else
		lt_fail("cannot format the record of %s", key);
	free(s);
out:
	free(path);
	free(dir);
	return rc;
}

void dmn_inst_forget(const char *state, const char *key)
{
	if (!key_valid(key))
		return;
	char *dir = lt_sprintf("%s/instances/%s", state, key);
	if (dir && lt_rm_rf(dir) < 0)
		lt_warn("ignitiond: cannot remove %s: %s", dir, lt_errmsg());
	free(dir);
}

/* Kills pid if it is still the process the record describes. */
static bool kill_if_same(int pid, uint64_t start, const char *what)
{
	if (pid <= 1 || !start || dmn_proc_start_time(pid) != start)
		return false;
	lt_warn("ignitiond: killing orphaned VM process %d (%s)", pid, what);
	if (kill(pid, SIGKILL) < 0)
		return false;
	/* not our child (we are a new process): wait for it to vanish */
	for (int k = 0; k < 200 && dmn_proc_start_time(pid) == start; k++)
		usleep(10000);
	return true;
}

static int recover_record(const char *dir, const char *key)
{
	char *path = lt_sprintf("%s/%s/record.json", dir, key);
	char *data = NULL;
	size_t len;
	int killed = 0;
	if (path && lt_read_file(path, 4096, &data, &len) == 0) {
		json_t *j = json_loadb(data, len, 0, NULL);
		json_t *pid = json_object_get(j, "pid"), *start = json_object_get(j, "start");
		if (json_is_integer(pid) && json_is_integer(start) &&
		    json_integer_value(pid) > 1 && json_integer_value(pid) < (1 << 22))
			killed = kill_if_same((int)json_integer_value(pid),
					      (uint64_t)json_integer_value(start), key);
		json_decref(j);
	}
	lt_clear_error();
	free(data);
	free(path);
	return killed;
}

/* VM processes whose command line names a file in our state dir (a VM
 * started before a crash whose record was never written, or a pre-made
 * shell, which has no record) are ours too. Only VM binaries are
 * considered, never e.g. a shell tailing a log in the state dir. */
static bool vm_binary(const char *argv0)
{
	const char *base = strrchr(argv0, '/');
	base = base ? base + 1 : argv0;
	return !strncmp(base, "qemu-system-", 12) || !strcmp(base, "lttle-vmhost") ||
	       !strcmp(base, "lttle");
}

static int kill_by_cmdline(const char *state)
{
	DIR *dp = opendir("/proc");
	if (!dp)
		return 0;
	int killed = 0;
	uid_t me = getuid();
	struct dirent *de;
	char *needle = lt_sprintf("%s/", state);
	if (!needle) {
		closedir(dp);
		return 0;
	}
	while ((de = readdir(dp))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 1 || pid == getpid())
			continue;
		char path[64], *data = NULL;
		size_t len;
		struct stat st;
		snprintf(path, sizeof(path), "/proc/%ld", pid);
		if (stat(path, &st) < 0 || st.st_uid != me)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		if (lt_read_file(path, 64 * 1024, &data, &len) < 0) {
			lt_clear_error();
			continue;
		}
		bool ours = len && vm_binary(data);
		bool named = false;
		for (size_t off = 0; ours && off < len && !named; off += strlen(data + off) + 1)
			named = strstr(data + off, needle) != NULL;
		free(data);
		if (ours && named)
			killed += kill_if_same((int)pid, dmn_proc_start_time((int)pid), "by command line");
	}
	free(needle);
	closedir(dp);
	return killed;
}

int dmn_recover_orphans(const char *state, const char *run_dir)
{
	char *dir = lt_path_join(state, "instances");
	int killed = 0;
	if (!dir)
		return -1;
	DIR *dp = opendir(dir);
	if (dp) {
		struct dirent *de;
		while ((de = readdir(dp))) {
			if (de->d_name[0] == '.')
				continue;
			if (key_valid(de->d_name))
				killed += recover_record(dir, de->d_name);
		}
		closedir(dp);
	}
	if (lt_rm_rf(dir) < 0)
		lt_warn("ignitiond: cannot clean %s: %s", dir, lt_errmsg());
	free(dir);
	killed += kill_by_cmdline(state);
	if (run_dir) {
		if (lt_rm_rf(run_dir) < 0)
			lt_warn("ignitiond: cannot clean %s: %s", run_dir, lt_errmsg());
	}
	return killed;
}
