# src/proxy: libproxy comes from the generic module rules. This fragment
# builds the proxy's test tools (kept out of libproxy) and its benchmark:
#   $(BUILD)/proxy/proxy_backend   fast host HTTP/echo backend (tests/bench/)
#   $(BUILD)/proxy/proxy_latency   paired direct/proxied latency probe
#   $(BUILD)/proxy/lt-proxy-testd  listeners + pool + forwarder driving the
#                                  process engine (src/proxy/tools/)
#   make bench-proxy-overhead      wrk direct vs through the proxy
# The tools link only libproxy and libutil.
PROXY_TOOLS := $(BUILD)/proxy/lt-proxy-testd $(BUILD)/proxy/proxy_backend \
	$(BUILD)/proxy/proxy_latency
PROXY_TOOL_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/proxy/tools/*.c))

$(BUILD)/proxy/proxy_backend: tests/bench/proxy_backend.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE $(SAN) -o $@ $<

$(BUILD)/proxy/proxy_latency: tests/bench/proxy_latency.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $<

$(BUILD)/proxy/lt-proxy-testd: $(PROXY_TOOL_OBJS) $(BUILD)/libproxy.a $(BUILD)/libutil.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(PROXY_TOOL_OBJS) $(BUILD)/libproxy.a $(BUILD)/libutil.a \
		$(LDLIBS)

.PHONY: proxy-tools bench-proxy-overhead
proxy-tools: $(PROXY_TOOLS)
test-prereqs:: $(PROXY_TOOLS)

bench-proxy-overhead: $(PROXY_TOOLS)
	BUILD=$(BUILD) bash tests/bench/proxy-bench.sh
