/* The deploy spec: what `lttle deploy` asks ignitiond for (POST /v1/apps),
 * its defaults and its validation. Every field of a request is checked
 * here before the daemon builds a path, starts a VM or opens a port from
 * it. Shared by the daemon and the CLI (cmd_deploy.c includes this header
 * for the defaults it states in --help).
 */
#ifndef IGNITIOND_SPEC_H
#define IGNITIOND_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Defaults (the CLI's --help prints these very macros). Scale to zero. */
#define DMN_DEF_MIN 0
#define DMN_DEF_MAX 4
#define DMN_DEF_CONCURRENCY 64
#define DMN_DEF_IDLE_TIMEOUT "30s"
#define DMN_DEF_SCALE_DOWN "5m"
#define DMN_DEF_QUEUE_TIMEOUT "10s"
#define DMN_DEF_TRIGGER "first-listen"
#define DMN_DEF_MEM_MIB 256
#define DMN_DEF_CPUS 1
#define DMN_DEF_ENGINE "auto"
#define DMN_DEF_LISTEN "127.0.0.1"

/* Bounds on hostile requests. */
#define DMN_BODY_MAX (64 * 1024)
#define DMN_NAME_MAX 63
#define DMN_REF_MAX 512
#define DMN_MAX_PORTS 16
#define DMN_MAX_ENV 128
#define DMN_ENV_LEN_MAX 4096
#define DMN_PATH_MAX 1024
#define DMN_CMDLINE_MAX 1024
#define DMN_HOST_MAX 253
#define DMN_MAX_INSTANCES 1024
#define DMN_MAX_CONCURRENCY 100000
#define DMN_MAX_MEM_MIB (64 * 1024)
#define DMN_MAX_CPUS 64
#define DMN_DURATION_MAX_MS (30ull * 24 * 3600 * 1000)

enum dmn_trigger_kind {
	DMN_TRIG_FIRST_LISTEN,
	DMN_TRIG_NTH_LISTEN,
	DMN_TRIG_LISTEN_PORT,
	DMN_TRIG_READY,
	DMN_TRIG_MANUAL,
};
struct dmn_trigger {
	enum dmn_trigger_kind kind;
	uint32_t n;    /* NTH_LISTEN */
	uint16_t port; /* LISTEN_PORT */
};

struct dmn_port {
	char listen[80];  /* "ADDR:PORT" as lt_parse_listen_addr takes it */
	uint16_t guest;
};

struct dmn_spec {
	char name[DMN_NAME_MAX + 1];
	char ref[DMN_REF_MAX + 1];
	struct dmn_port ports[DMN_MAX_PORTS];
	size_t nports; /* 0: the image's first exposed port, on a free port */
	char host[DMN_HOST_MAX + 1]; /* "" : no Host route */
	uint32_t min, max, concurrency;
	uint64_t idle_timeout_ms, scale_down_ms, queue_timeout_ms;
	char trigger_text[32];
	struct dmn_trigger trigger;
	uint32_t mem_mib, cpus;
	char **env; /* NULL-terminated, owned */
	size_t nenv;
	char kernel[DMN_PATH_MAX + 1]; /* "" : the default kernel */
	char cmdline[DMN_CMDLINE_MAX + 1]; /* extra kernel parameters, appended */
	char engine[16];               /* auto | lttle | qemu (| proc in tests) */
	bool insecure;
};

void dmn_spec_defaults(struct dmn_spec *s);
void dmn_spec_free(struct dmn_spec *s);
/* Parses and validates a deploy request (unknown fields are refused). -1
 * with a message naming the field otherwise. */
int dmn_spec_from_json(json_t *j, struct dmn_spec *s);
/* Bounded parse of raw bytes (the request body) into s. */
int dmn_spec_parse(const char *body, size_t len, struct dmn_spec *s);
/* The spec as the JSON the API takes (round-trips through _from_json). */
json_t *dmn_spec_to_json(const struct dmn_spec *s);

/* ---- validators (also used for URL path components) ------------------ */

/* [a-z0-9][a-z0-9-]* up to DMN_NAME_MAX, no trailing '-'. */
bool dmn_name_valid(const char *s);
/* An instance id as the pool makes them: "<app>-<n>". */
bool dmn_instance_id_valid(const char *s);
/* A name derived from a reference ("reg/org/my_app:1" -> "my-app"). */
int dmn_name_from_ref(const char *ref, char out[DMN_NAME_MAX + 1]);
/* "250ms", "30s", "5m", "1h", "2d", a bare number of seconds, "0". */
int dmn_parse_duration_ms(const char *s, uint64_t *ms);
/* "first-listen", "nth-listen:N", "listen-port:P", "userspace-ready",
 * "manual". */
int dmn_parse_trigger(const char *s, struct dmn_trigger *t);
/* "[ADDR:]HOSTPORT:GUESTPORT"; a missing ADDR means DMN_DEF_LISTEN. */
int dmn_parse_port(const char *s, struct dmn_port *p);

#endif
