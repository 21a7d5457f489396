/* What the app runs with: argv and environment from the image config and
 * the cmdline overrides, and a PATH search done in the app's own PATH. */
#include "init.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int strv_append_all(char ***dst, char *const *src)
{
	for (size_t i = 0; src && src[i]; i++) {
		if (li_strv_push(dst, src[i], strlen(src[i])) < 0)
			return -1;
	}
	return 0;
}

int li_app_argv(const struct li_config *cfg, const struct li_cmdline *cl, char ***out)
{
	char *const *ep = cl->entrypoint_set ? cl->entrypoint : cfg->entrypoint;
	/* docker run --entrypoint resets the image's cmd */
	char *const *cmd = cl->cmd_set ? cl->cmd : cl->entrypoint_set ? NULL : cfg->cmd;
	char **v = lt_calloc(1, sizeof(char *));
	if (!v)
		return -1;
	if (strv_append_all(&v, ep) < 0 || strv_append_all(&v, cmd) < 0) {
		li_strv_free(v);
		return -1;
	}
	if (!v[0] || !v[0][0]) {
		li_strv_free(v);
		return lt_fail("nothing to run: the image has no entrypoint or cmd "
			       "(set lttle.cmd= on the kernel command line)");
	}
	*out = v;
	return 0;
}

const char *li_env_get(char *const *env, const char *key)
{
	size_t n = strlen(key);
	for (size_t i = 0; env && env[i]; i++) {
		if (!strncmp(env[i], key, n) && env[i][n] == '=')
			return env[i] + n + 1;
	}
	return NULL;
}

/* Sets KEY=VALUE (entry holds both), replacing an earlier KEY. */
static int env_set(char ***env, const char *entry)
{
	const char *eq = strchr(entry, '=');
	if (!eq || eq == entry)
		return lt_fail("environment entry \"%.40s\" is not KEY=VALUE", entry);
	size_t klen = (size_t)(eq - entry) + 1;
	for (size_t i = 0; (*env)[i]; i++) {
		if (!strncmp((*env)[i], entry, klen)) {
			char *copy = lt_strdup(entry);
			if (!copy)
				return -1;
			free((*env)[i]);
			(*env)[i] = copy;
			return 0;
		}
	}
	return li_strv_push(env, entry, strlen(entry));
}

int li_app_env(const struct li_config *cfg, const struct li_cmdline *cl,
	       const struct li_user *u, const char *hostname, char ***out)
{
	char **env = lt_calloc(1, sizeof(char *));
	char *home = lt_sprintf("HOME=%s", u->home[0] ? u->home : "/");
	char *host = hostname ? lt_sprintf("HOSTNAME=%s", hostname) : NULL;
	int rc = -1;
	if (!env || !home || (hostname && !host))
		goto out;
	/* Defaults first so the image and the cmdline override them. */
	if (env_set(&env, "PATH=" DEFAULT_PATH) < 0 || env_set(&env, home) < 0 ||
	    (host && env_set(&env, host) < 0))
		goto out;
	for (size_t i = 0; cfg->env && cfg->env[i]; i++) {
		if (env_set(&env, cfg->env[i]) < 0)
			goto out;
	}
	for (size_t i = 0; cl->env && cl->env[i]; i++) {
		if (env_set(&env, cl->env[i]) < 0)
			goto out;
	}
	*out = env;
	env = NULL;
	rc = 0;
out:
	li_strv_free(env);
	free(home);
	free(host);
	return rc;
}

int li_exec(char *const *argv, char *const *env)
{
	const char *file = argv[0];
	if (strchr(file, '/')) {
		execve(file, argv, env);
		return -1;
	}
	const char *path = li_env_get(env, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	int saved = ENOENT;
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		char full[PATH_MAX];
		int n = snprintf(full, sizeof(full), "%.*s%s%s", (int)(end - p), p,
				 end > p ? "/" : "", file);
		if (n > 0 && (size_t)n < sizeof(full)) {
			execve(full, argv, env);
			/* Keep looking past missing files, remember a real error. */
			if (errno != ENOENT && errno != ENOTDIR)
				saved = errno;
		}
		if (!*end)
			break;
		p = end;
	}
	errno = saved;
	return -1;
}
