# cmd/ignitiond: the daemon. The top Makefile links $(BUILD)/ignitiond from
# cmd/ignitiond/*.c. This fragment adds:
#   $(BUILD)/libignitiond.a    the daemon without main(), for unit tests
#   $(BUILD)/ignitiond-test    the daemon plus the process test engine
#                              (--engine proc; src/proxy/tools/proc_engine.c)
IGNITE_LIB_SRCS := $(filter-out cmd/ignitiond/main.c,$(IGNITE_SRCS))
IGNITE_LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(IGNITE_LIB_SRCS))
IGNITE_TEST_OBJS := $(BUILD)/cmd/ignitiond/testing/proc.o $(BUILD)/src/proxy/tools/proc_engine.o

$(BUILD)/libignitiond.a: $(IGNITE_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/ignitiond-test: $(BUILD)/cmd/ignitiond/main.o $(IGNITE_TEST_OBJS) $(BUILD)/libignitiond.a $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/cmd/ignitiond/main.o $(IGNITE_TEST_OBJS) \
		$(BUILD)/libignitiond.a $(LINK_LIBS) $(LDLIBS)

DAEMON_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_daemon_*.c))
$(foreach t,$(DAEMON_TESTS),$(eval UNIT_EXTRA_$(t) := $(BUILD)/libignitiond.a))
$(patsubst %,$(BUILD)/tests/%,$(DAEMON_TESTS)): $(BUILD)/libignitiond.a

test-prereqs:: $(BUILD)/ignitiond-test $(BUILD)/ignitiond $(BUILD)/lttle
