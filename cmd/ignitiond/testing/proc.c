/* Test build only (ignitiond-test): registers the process engine as
 * --engine proc. Its "VMs" are tests/bench/proxy_backend processes; the
 * app's env may set PROC_BOOT_MS / PROC_RESTORE_MS (start delays) and
 * PROC_MODE (http|echo). */
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../daemon.h"
#include "../engines_test.h"
#include "proxy/tools/proc_engine.h"

static void destroy(struct lt_engine *e)
{
	proc_engine_free(e);
}

static const char *env_get(const struct dmn_spec *s, const char *key)
{
	size_t n = strlen(key);
	for (size_t k = 0; k < s->nenv; k++)
		if (!strncmp(s->env[k], key, n) && s->env[k][n] == '=')
			return s->env[k] + n + 1;
	return NULL;
}

static void *app_cfg(const char *backend, const struct dmn_run_cfg *c, void (**free_fn)(void *))
{
	struct proc_app_cfg *cfg = lt_calloc(1, sizeof(*cfg));
	if (!cfg)
		return NULL;
	if (backend && backend[0]) {
		snprintf(cfg->backend, sizeof(cfg->backend), "%s", backend);
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0) {
			free(cfg);
			lt_fail_errno("readlink /proc/self/exe");
			return NULL;
		}
		self[n] = '\0';
		snprintf(cfg->backend, sizeof(cfg->backend), "%s/proxy/proxy_backend", dirname(self));
	}
	const char *mode = env_get(c->spec, "PROC_MODE");
	const char *boot = env_get(c->spec, "PROC_BOOT_MS");
	const char *restore = env_get(c->spec, "PROC_RESTORE_MS");
	snprintf(cfg->mode, sizeof(cfg->mode), "%s", mode ? mode : "http");
	cfg->boot_ms = boot ? (unsigned)atoi(boot) : 0;
	cfg->restore_ms = restore ? (unsigned)atoi(restore) : 0;
	*free_fn = free;
	return cfg;
}

static const struct dmn_test_engine proc = {
	.create = proc_engine_new,
	.destroy = destroy,
	.app_cfg = app_cfg,
	.inst_pid = proc_instance_pid,
};

__attribute__((constructor)) static void register_proc(void)
{
	dmn_test_engine = &proc;
}
