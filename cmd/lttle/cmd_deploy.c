/* lttle deploy: deploy an image as a scale-to-zero service on ignitiond. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ignitiond/spec.h"
#include "cli.h"
#include "daemon_client.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lttle deploy REF [--name N] [--port [ADDR:]HOSTPORT:GUESTPORT]...\n"
		"                    [--host NAME] [--min N] [--max N] [--concurrency N]\n"
		"                    [--idle-timeout DUR] [--scale-down DUR] [--queue-timeout DUR]\n"
		"                    [--trigger T] [--mem MiB] [--cpus N] [--env K=V]...\n"
		"                    [--kernel PATH] [--cmdline ARGS] [--engine auto|lttle|qemu]\n"
		"                    [--insecure] [--socket PATH] [--json] [--quiet]\n\n"
		"Asks ignitiond to deploy an image: pull it (or use an imported one), build a\n"
		"squashfs rootfs, boot it once until its trigger, snapshot it, stop it, and\n"
		"serve its ports: a connection restores an instance from the snapshot. Exits\n"
		"0 once the snapshot exists and the port accepts connections; the last line\n"
		"of stdout is the first port's address (ADDR:PORT). Deploying a name again\n"
		"replaces the app without dropping traffic (old instances drain).\n\n"
		"  REF                   image reference (pulled unless in the store)\n"
		"  -n, --name N          app name (default: from the image's repository)\n"
		"  -p, --port SPEC       [ADDR:]HOSTPORT:GUESTPORT, repeatable; ADDR defaults\n"
		"                        to " DMN_DEF_LISTEN ", HOSTPORT 0 picks a free port\n"
		"                        (default: " DMN_DEF_LISTEN ":0:P for the image's first\n"
		"                        exposed port P)\n"
		"      --host NAME       also route HTTP with this Host on the daemon's shared\n"
		"                        HTTP port (ignitiond --http-listen; default: none)\n"
		"      --min N           instances kept running (default %d: scale to zero)\n"
		"      --max N           most live instances (default %d)\n"
		"      --concurrency N   connections per instance (default %d)\n"
		"      --idle-timeout D  running with no connection for D -> paused\n"
		"                        (default " DMN_DEF_IDLE_TIMEOUT "; 0: never)\n"
		"      --scale-down D    paused for D -> stopped, the snapshot stays\n"
		"                        (default " DMN_DEF_SCALE_DOWN "; 0: never)\n"
		"      --queue-timeout D longest a connection waits for an instance before it\n"
		"                        is refused (default " DMN_DEF_QUEUE_TIMEOUT ")\n"
		"      --trigger T       when to snapshot: first-listen, nth-listen:N,\n"
		"                        listen-port:P, userspace-ready, manual\n"
		"                        (default " DMN_DEF_TRIGGER ")\n"
		"      --mem MiB         guest memory (default %d)\n"
		"      --cpus N          vCPUs (default %d)\n"
		"  -e, --env K=V         extra environment for the app, repeatable (default none)\n"
		"      --kernel PATH     guest kernel (default: $LTTLE_KERNEL, vmlinux beside\n"
		"                        ignitiond or in /usr/lib/lttle, else the newest one\n"
		"                        'make kernel' cached)\n"
		"      --cmdline ARGS    extra kernel parameters, appended (default none)\n"
		"      --engine E        auto, lttle or qemu (default " DMN_DEF_ENGINE ": lttle where\n"
		"                        hardware virtualization works, else qemu; says why)\n"
		"      --insecure        allow plain HTTP to a non-loopback registry\n"
		"      --socket PATH     ignitiond's socket (default $LTTLE_SOCKET, else\n"
		"                        /var/lib/lttle/ignitiond.sock as root, else\n"
		"                        ~/.local/share/lttle/ignitiond.sock)\n"
		"      --json            print the deployed app as JSON instead\n"
		"  -q, --quiet           no progress on stderr\n"
		"  -h, --help            this help\n\n"
		"Durations: 250ms, 30s, 5m, 1h (a bare number is seconds).\n",
		DMN_DEF_MIN, DMN_DEF_MAX, DMN_DEF_CONCURRENCY, DMN_DEF_MEM_MIB, DMN_DEF_CPUS);
}

struct dctx {
	bool json, quiet;
	json_t *done;
	char error[1024];
};

static int on_line(void *arg, const char *line)
{
	struct dctx *x = arg;
	if (!*line)
		return 0;
	json_t *j = json_loads(line, 0, NULL);
	const char *ev = json_string_value(json_object_get(j, "event"));
	if (!ev) {
		json_decref(j);
		return 0;
	}
	if (!strcmp(ev, "progress")) {
		if (!x->quiet)
			fprintf(stderr, "  %s\n", json_string_value(json_object_get(j, "msg")));
	} else if (!strcmp(ev, "done")) {
		json_decref(x->done);
		x->done = json_incref(j);
	} else if (!strcmp(ev, "error")) {
		const char *m = json_string_value(json_object_get(j, "message"));
		snprintf(x->error, sizeof(x->error), "%s", m ? m : "deploy failed");
	}
	json_decref(j);
	return 0;
}

static int set_uint(json_t *body, const char *key, const char *val, const char *opt)
{
	uint64_t v;
	if (lt_parse_u64(val, &v) < 0 || v > 1000000)
		return cli_usage("deploy", "%s: '%s' is not a number", opt, val);
	json_object_set_new(body, key, json_integer((json_int_t)v));
	return 0;
}

static int add_str(json_t *body, const char *key, const char *val)
{
	json_t *a = json_object_get(body, key);
	if (!a) {
		a = json_array();
		json_object_set_new(body, key, a);
	}
	return json_array_append_new(a, json_string(val));
}

static int parse(int argc, char **argv, json_t *body, struct dc_common *c, struct dctx *x)
{
	enum { O_HOST = 256, O_MIN, O_MAX, O_CONC, O_IDLE, O_SCALE, O_QUEUE, O_TRIG, O_MEM,
	       O_CPUS, O_KERNEL, O_ENGINE, O_INSECURE, O_SOCKET, O_JSON, O_CMDLINE };
	static const struct option lo[] = {
		{"name", required_argument, NULL, 'n'},
		{"port", required_argument, NULL, 'p'},
		{"env", required_argument, NULL, 'e'},
		{"host", required_argument, NULL, O_HOST},
		{"min", required_argument, NULL, O_MIN},
		{"max", required_argument, NULL, O_MAX},
		{"concurrency", required_argument, NULL, O_CONC},
		{"idle-timeout", required_argument, NULL, O_IDLE},
		{"scale-down", required_argument, NULL, O_SCALE},
		{"queue-timeout", required_argument, NULL, O_QUEUE},
		{"trigger", required_argument, NULL, O_TRIG},
		{"mem", required_argument, NULL, O_MEM},
		{"cpus", required_argument, NULL, O_CPUS},
		{"kernel", required_argument, NULL, O_KERNEL},
		{"cmdline", required_argument, NULL, O_CMDLINE},
		{"engine", required_argument, NULL, O_ENGINE},
		{"insecure", no_argument, NULL, O_INSECURE},
		{"socket", required_argument, NULL, O_SOCKET},
		{"json", no_argument, NULL, O_JSON},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int o, rc = 0;
	char real[PATH_MAX];
	while ((o = getopt_long(argc, argv, "n:p:e:qh", lo, NULL)) != -1 && rc == 0) {
		switch (o) {
		case 'n': json_object_set_new(body, "name", json_string(optarg)); break;
		case 'p': add_str(body, "ports", optarg); break;
		case 'e': add_str(body, "env", optarg); break;
		case O_HOST: json_object_set_new(body, "host", json_string(optarg)); break;
		case O_MIN: rc = set_uint(body, "min", optarg, "--min"); break;
		case O_MAX: rc = set_uint(body, "max", optarg, "--max"); break;
		case O_CONC: rc = set_uint(body, "concurrency", optarg, "--concurrency"); break;
		case O_MEM: rc = set_uint(body, "mem", optarg, "--mem"); break;
		case O_CPUS: rc = set_uint(body, "cpus", optarg, "--cpus"); break;
		case O_IDLE: json_object_set_new(body, "idle_timeout", json_string(optarg)); break;
		case O_SCALE: json_object_set_new(body, "scale_down", json_string(optarg)); break;
		case O_QUEUE: json_object_set_new(body, "queue_timeout", json_string(optarg)); break;
		case O_TRIG: json_object_set_new(body, "trigger", json_string(optarg)); break;
		case O_KERNEL:
			/* the daemon runs elsewhere: send an absolute path */
			if (!realpath(optarg, real))
				return cli_usage("deploy", "--kernel %s: no such file", optarg);
			json_object_set_new(body, "kernel", json_string(real));
			break;
		case O_ENGINE: json_object_set_new(body, "engine", json_string(optarg)); break;
		case O_CMDLINE: json_object_set_new(body, "cmdline", json_string(optarg)); break;
		case O_INSECURE: json_object_set_new(body, "insecure", json_true()); break;
		case O_SOCKET: c->socket = optarg; break;
		case O_JSON: c->json = x->json = true; break;
		case 'q': x->quiet = true; break;
		case 'h': usage(stdout); return 1;
		default: return cli_usage("deploy", "invalid option");
		}
	}
	if (rc)
		return rc;
	if (optind + 1 != argc)
		return cli_usage("deploy", "expected exactly one image reference");
	json_object_set_new(body, "ref", json_string(argv[optind]));
	return 0;
}

static int report(struct dctx *x)
{
	json_t *app = json_object_get(x->done, "app");
	const char *addr = json_string_value(json_object_get(x->done, "address"));
	if (x->json)
		return dc_print_json(app);
	if (!x->quiet) {
		json_t *t = json_object_get(x->done, "timings");
		fprintf(stderr,
			"deployed %s (generation %lld) on engine %s: %s\n"
			"  boot to trigger %lld ms, snapshot %lld ms, deploy %lld ms in all\n",
			json_string_value(json_object_get(app, "name")),
			(long long)json_integer_value(json_object_get(app, "generation")),
			json_string_value(json_object_get(x->done, "engine")),
			json_string_value(json_object_get(x->done, "engine_why")),
			(long long)json_integer_value(json_object_get(t, "boot_to_trigger_ms")),
			(long long)json_integer_value(json_object_get(t, "snapshot_ms")),
			(long long)json_integer_value(json_object_get(t, "total_ms")));
		size_t i;
		json_t *p;
		json_array_foreach(json_object_get(app, "ports"), i, p)
			fprintf(stderr, "  %s -> guest port %lld\n",
				json_string_value(json_object_get(p, "listen")),
				(long long)json_integer_value(json_object_get(p, "guest")));
	}
	printf("%s\n", addr ? addr : "");
	return 0;
}

int cmd_deploy(int argc, char **argv)
{
	json_t *body = json_object();
	struct dc_common c = {0};
	struct dctx x = {0};
	int r = body ? parse(argc, argv, body, &c, &x) : (lt_fail("out of memory"), -1);
	if (r) {
		json_decref(body);
		return r == 1 ? 0 : r < 0 ? cli_fail("deploy") : r;
	}
	char *req = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	char *sock = dc_socket(c.socket);
	int rc = req && sock ? dc_stream(sock, "POST", "/v1/apps", req, on_line, NULL, &x) : -1;
	free(req);
	free(sock);
	if (rc == 0 && !x.done)
		rc = lt_fail("%s", x.error[0] ? x.error : "the daemon ended the deploy without a result");
	if (rc == 0)
		rc = report(&x);
	json_decref(x.done);
	return rc < 0 ? cli_fail("deploy") : 0;
}
