/* Prometheus text exposition (format 0.0.4) of the pool's counters,
 * gauges and histograms. Families are written whole, one after another, as
 * the format requires; label values are escaped. */
#include "proxy_int.h"

#include <string.h>

const double lt_hist_bounds[LT_HIST_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10,
};

void lt_hist_add(struct lt_hist *h, uint64_t ns)
{
	double s = (double)ns / 1e9;
	for (int k = 0; k < LT_HIST_BUCKETS; k++) {
		if (s <= lt_hist_bounds[k]) {
			h->bucket[k]++;
			break;
		}
	}
	h->count++;
	h->sum_ns += ns;
}

/* Label value escaping: backslash, double quote and newline. */
static int put_label(struct lt_buf *b, const char *v)
{
	for (const char *p = v; *p; p++) {
		int rc;
		if (*p == '\\')
			rc = lt_buf_append(b, "\\\\", 2);
		else if (*p == '"')
			rc = lt_buf_append(b, "\\\"", 2);
		else if (*p == '\n')
			rc = lt_buf_append(b, "\\n", 2);
		else
			rc = lt_buf_append(b, p, 1);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int head(struct lt_buf *b, const char *name, const char *type, const char *help)
{
	return lt_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{app="A"[,extra]} value */
static int sample(struct lt_buf *b, const char *name, const struct lt_app *a,
		  const char *extra, uint64_t v)
{
	if (lt_buf_printf(b, "%s{app=\"", name) < 0 || put_label(b, a->name) < 0)
		return -1;
	return lt_buf_printf(b, "\"%s%s} %llu\n", extra ? "," : "", extra ? extra : "",
			     (unsigned long long)v);
}

struct counter {
	const char *name, *help;
	size_t off;
};

#define C(n, f, h) {"lttle_" n, h, offsetof(struct lt_app_stats, f)}
static const struct counter counters[] = {
	C("connections_total", connections, "Connections that asked an app for an instance."),
	C("connections_served_total", served, "Connections handed to an instance."),
	C("connections_refused_total", refused, "Connections refused (queue full or timeout, start or connect failure, stopping)."),
	C("queue_timeouts_total", queue_timeouts, "Connections refused because no instance was free in time."),
	C("queue_full_total", queue_full, "Connections refused because the wait queue was full."),
	C("connections_lost_total", lost, "Forwarded connections failed because their instance went away."),
	C("restores_total", restores, "Instances restored from the snapshot (with or without a shell)."),
	C("shell_restores_total", shell_restores, "Restores into a pre-made VM shell."),
	C("resumes_total", resumes, "Paused instances resumed."),
	C("cold_boots_total", cold_boots, "Instances booted from scratch."),
	C("pauses_total", pauses, "Idle instances paused."),
	C("drops_total", drops, "Paused instances dropped by scale-down."),
	C("start_failures_total", start_failures, "Boots or restores that failed."),
	C("instance_deaths_total", deaths, "Instances that died on their own."),
	C("connect_failures_total", connect_failures, "Failed connect attempts to a guest port."),
	C("bytes_in_total", bytes_in, "Bytes forwarded from clients to instances."),
	C("bytes_out_total", bytes_out, "Bytes forwarded from instances to clients."),
};
#undef C

static int hist_family(struct lt_buf *b, struct lt_pool *p, const char *name,
		       const char *help, const char *label, const char *const *values,
		       size_t nvalues, size_t hist_off)
{
	if (head(b, name, "histogram", help) < 0)
		return -1;
	for (struct lt_app *a = lt_pool_first_app(p); a; a = lt_app_next(a)) {
		const struct lt_hist *hs = (const struct lt_hist *)((const char *)a + hist_off);
		for (size_t v = 0; v < nvalues; v++) {
			const struct lt_hist *h = &hs[v];
			char extra[96], series[128];
			uint64_t cum = 0;
			snprintf(series, sizeof(series), "%s_bucket", name);
			for (int k = 0; k < LT_HIST_BUCKETS; k++) {
				cum += h->bucket[k];
				snprintf(extra, sizeof(extra), "%s=\"%s\",le=\"%g\"", label,
					 values[v], lt_hist_bounds[k]);
				if (sample(b, series, a, extra, cum) < 0)
					return -1;
			}
			snprintf(extra, sizeof(extra), "%s=\"%s\",le=\"+Inf\"", label, values[v]);
			if (sample(b, series, a, extra, h->count) < 0)
				return -1;
			snprintf(extra, sizeof(extra), "%s=\"%s\"", label, values[v]);
			if (lt_buf_printf(b, "%s_sum{app=\"", name) < 0 ||
			    put_label(b, a->name) < 0 ||
			    lt_buf_printf(b, "\",%s} %.9f\n", extra, (double)h->sum_ns / 1e9) < 0)
				return -1;
			snprintf(series, sizeof(series), "%s_count", name);
			if (sample(b, series, a, extra, h->count) < 0)
				return -1;
		}
	}
	return 0;
}

int lt_pool_metrics(struct lt_pool *p, struct lt_buf *b)
{
	for (size_t c = 0; c < LT_ARRAY_LEN(counters); c++) {
		if (head(b, counters[c].name, "counter", counters[c].help) < 0)
			return -1;
		for (struct lt_app *a = lt_pool_first_app(p); a; a = lt_app_next(a)) {
			struct lt_app_stats st;
			lt_app_get_stats(a, &st);
			uint64_t v = *(const uint64_t *)((const char *)&st + counters[c].off);
			if (sample(b, counters[c].name, a, NULL, v) < 0)
				return -1;
		}
	}
	if (head(b, "lttle_instances", "gauge", "Instances by state.") < 0)
		return -1;
	for (struct lt_app *a = lt_pool_first_app(p); a; a = lt_app_next(a)) {
		struct lt_app_stats st;
		lt_app_get_stats(a, &st);
		for (int s = 0; s < LT_INST_NSTATES; s++) {
			char extra[48];
			snprintf(extra, sizeof(extra), "state=\"%s\"", lt_inst_state_name(s));
			if (sample(b, "lttle_instances", a, extra, st.by_state[s]) < 0)
				return -1;
		}
	}
	static const struct {
		const char *name, *help;
	} gauges[] = {
		{"lttle_instances_peak", "Most live instances at once since deploy."},
		{"lttle_queue_length", "Connections waiting for an instance."},
		{"lttle_shells_ready", "Pre-made VM shells ready for a restore."},
		{"lttle_app_degraded", "1 when the snapshot is unusable and cold boot is used."},
		{"lttle_app_generation", "Deploy generation of the app."},
	};
	for (size_t g = 0; g < LT_ARRAY_LEN(gauges); g++) {
		if (head(b, gauges[g].name, "gauge", gauges[g].help) < 0)
			return -1;
		for (struct lt_app *a = lt_pool_first_app(p); a; a = lt_app_next(a)) {
			struct lt_app_stats st;
			lt_app_get_stats(a, &st);
			uint64_t v = g == 0   ? st.peak_instances
				     : g == 1 ? st.queued
				     : g == 2 ? st.shells_ready
				     : g == 3 ? (a->degraded != NULL)
					      : st.generation;
			if (sample(b, gauges[g].name, a, NULL, v) < 0)
				return -1;
		}
	}
	const char *tiers[LT_TIER_COUNT];
	for (int t = 0; t < LT_TIER_COUNT; t++)
		tiers[t] = lt_tier_name(t);
	if (hist_family(b, p, "lttle_wake_seconds",
			"Accept to instance connected, by acquire tier.", "tier", tiers,
			LT_TIER_COUNT, offsetof(struct lt_app, wake)) < 0)
		return -1;
	static const char *const kinds[START_KINDS] = {"cold", "restore", "shell", "resume"};
	return hist_family(b, p, "lttle_start_seconds",
			   "Engine time to bring an instance up, by kind.", "kind", kinds,
			   START_KINDS, offsetof(struct lt_app, start));
}
