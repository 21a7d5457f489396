/* The hook a test build of ignitiond uses to offer the process engine
 * (src/proxy/tools/proc_engine.c: "VMs" that are host processes) as
 * --engine proc. The production daemon leaves it NULL. */
#ifndef IGNITIOND_ENGINES_TEST_H
#define IGNITIOND_ENGINES_TEST_H

#include "proxy/proxy.h"

struct dmn_run_cfg;

struct dmn_test_engine {
	struct lt_engine *(*create)(struct lt_loop *loop);
	void (*destroy)(struct lt_engine *e);
	void *(*app_cfg)(const char *backend, const struct dmn_run_cfg *c,
			 void (**free_fn)(void *));
	int (*inst_pid)(const struct lt_instance *inst);
};
extern const struct dmn_test_engine *dmn_test_engine;

#endif
