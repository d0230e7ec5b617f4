# mk/quality.mk - sanitizers, fuzzing and valgrind, included from the Makefile.
#
#   make fuzz             build both libFuzzer targets and run each for FUZZ_SECONDS (60),
#                         on a scratch copy of its committed corpus; fails on any crash,
#                         leak, sanitizer report or timeout
#   make fuzz-build       only build them: build/fuzz/fuzz_config, build/fuzz/fuzz_response
#   make asan-test        asan-unit, then asan-integration on every module (for
#                         developers, before a change to memory handling or a parser)
#   make asan-ci          asan-unit, then asan-integration on ASAN_CI_MODULES (CI)
#   make asan-unit        the unit tests built with ASan + UBSan (build/asan/tests/)
#   make asan-integration the integration tests against build/asan/jobdrainer (MediaWiki
#                         1.39: make integration runs them all on 1.43), then a scan
#                         of every sidecar log for sanitizer reports; ASAN_MODULES picks
#                         the modules (default: all of tests/integration, longest first)
#   make valgrind         build/jobdrainer drains a 2-wiki farm under valgrind, then
#                         SIGTERM: exit 0 and no definite or indirect leaks
#
# Tools (Debian): clang and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes),
# valgrind; scripts/install-deps.sh installs them. The fuzzers are built straight from
# the few leaf modules they exercise, instrumented for coverage, so they do not touch
# build/obj.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= build/fuzz
# Per-input limits: a slow or huge input is a finding, not a reason to wait.
FUZZ_ARGS    ?= -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_WARN     = -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
                -Wpointer-arith -Wvla -Wundef $(if $(CI),-Werror,)
# -iquote, not -I: sidecar/sched.h must not stand in for the system's <sched.h>.
FUZZ_CFLAGS   = -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                $(FUZZ_WARN) -iquote sidecar
FUZZ_TARGETS := config response
FUZZ_DEPS     = $(wildcard sidecar/*.h) mk/quality.mk
# $(call FUZZ_LINK,pkg-config packages): every .c prerequisite into one binary.
FUZZ_LINK     = @mkdir -p $(@D) && echo "CC $@" && \
                $(FUZZ_CC) $(FUZZ_CFLAGS) $(shell pkg-config --cflags $(1)) -o $@ \
                $(filter %.c,$^) $(shell pkg-config --libs $(1)) -lpthread

# Sanitizer runtime options for everything below: a report stops the process with a
# non-zero status (UBSan included, even where the code was built recoverable).
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# The same flags as the Makefile's asan target, so both build the same build/asan.
ASAN_BUILD   ?= build/asan
ASAN_CFLAGS  ?= -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_LDFLAGS ?= -fsanitize=address,undefined
ASAN_MAKE     = $(MAKE) BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_CFLAGS)" LDFLAGS="$(ASAN_LDFLAGS)"

.PHONY: fuzz fuzz-build $(FUZZ_TARGETS:%=fuzz-run-%) asan-test asan-ci asan-unit asan-integration \
        valgrind

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

# The INI loader, with the leaf modules it links (jobtype: the type-pattern lists).
$(FUZZ_BUILD)/fuzz_config: tests/fuzz/fuzz_config.c sidecar/config.c sidecar/util.c sidecar/jobtype.c \
		sidecar/log.c $(FUZZ_DEPS)
	$(call FUZZ_LINK,inih)

$(FUZZ_BUILD)/fuzz_response: tests/fuzz/fuzz_response.c sidecar/response.c $(FUZZ_DEPS)
	$(call FUZZ_LINK,jansson)

fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)

# Fuzzes build/fuzz/work/NAME/corpus, a fresh copy of tests/fuzz/corpus/NAME; crashes land
# in build/fuzz/work/NAME/ as crash-*, leak-*, timeout-*, oom-* (reproduce with
# build/fuzz/fuzz_NAME FILE). stdin is /dev/null: an input may name /dev/stdin as a
# password_file.
$(FUZZ_TARGETS:%=fuzz-run-%): fuzz-run-%: $(FUZZ_BUILD)/fuzz_%
	@rm -rf $(FUZZ_BUILD)/work/$* && mkdir -p $(FUZZ_BUILD)/work/$*/corpus
	@cp tests/fuzz/corpus/$*/* $(FUZZ_BUILD)/work/$*/corpus/
	@echo "== fuzz_$*: $(FUZZ_SECONDS) s, log in $(FUZZ_BUILD)/work/$*/fuzz.log"
	@cd $(FUZZ_BUILD)/work/$* && \
	if $(SAN_ENV) $(abspath $<) $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) \
	    -dict=$(abspath tests/fuzz/$*.dict) -artifact_prefix=$(abspath $(FUZZ_BUILD)/work/$*)/ \
	    corpus </dev/null >fuzz.log 2>&1; then \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' fuzz.log; \
	  echo "fuzz_$*: no crash"; \
	else \
	  tail -n 60 fuzz.log; \
	  echo "fuzz_$*: FAILED; input(s):" $$(ls -d $(abspath $(FUZZ_BUILD)/work/$*)/crash-* \
	    $(abspath $(FUZZ_BUILD)/work/$*)/leak-* $(abspath $(FUZZ_BUILD)/work/$*)/timeout-* \
	    $(abspath $(FUZZ_BUILD)/work/$*)/oom-* 2>/dev/null); \
	  exit 1; \
	fi

asan-test: asan-unit asan-integration

# CI's sanitizer run: every integration module but the four whose time goes to long
# observation windows (a database down for two minutes, 30 s MediaWiki outages and the
# minute after, a minute of fairness feeding, six sweeps at 1 % of a core: leases, fault
# and scan isolation, the scan budget) and the alert rules (Prometheus's side). Most of
# the C those four drive, the rest drive too: leases and the coordination database in
# every module, the breaker in test_limits and test_db_servers, the scanner's failures
# and pace in test_db_servers and test_binlog. Reached only by them, and so left to make
# asan-test: a lease lost to SIGSTOP or kill -9 (fencing), a read-only primary, a
# shutdown with the database stopped. What CI keeps covers every module of sidecar/ on
# hostile input: config and reload, the CLI, MediaWiki's garbage, discovery's bad rows,
# the HTTP endpoints under slowloris, the binary log parser, steering, two database
# servers, the lanes (the drain loop, contention, drain --lanes and its signals), odd
# job_cmd bytes and hostile database servers. Until issue 23 CI ran every module here,
# taking as long as make test again.
ASAN_CI_MODULES := $(addprefix tests/integration/,test_binlog.py test_lanes.py test_limits.py \
                   test_steer.py test_drain.py test_db_servers.py test_operate.py \
                   test_reload.py test_hardening.py test_bad_input.py test_cli.py \
                   test_scan_values.py test_server_trust.py)
asan-ci:
	$(MAKE) asan-unit
	$(MAKE) asan-integration ASAN_MODULES="$(ASAN_CI_MODULES)"

asan-unit:
	$(ASAN_MAKE) all
	$(SAN_ENV) $(ASAN_MAKE) unit

# Only tests/integration: tests/docker inspects JOBDRAINER's shared libraries, which
# for this build include libasan and libubsan. Sidecar logs live in pytest's tmp_path
# dirs, pinned under build/asan/pytest (one dir per pytest-xdist process); a report
# there (say a leak at the exit of a pod whose exit code no test checks) fails the run
# too. The modules run PYTEST_JOBS at a time, as in make integration.
ASAN_MODULES ?= $(INTEGRATION_MODULES)
asan-integration:
	$(ASAN_MAKE) all
	@rm -rf $(ASAN_BUILD)/pytest
	@rc=0; $(SAN_ENV) FARM_MW=1.39 JOBDRAINER=$(abspath $(ASAN_BUILD)/jobdrainer) $(PYTEST) \
	    $(PYTEST_PAR) --basetemp=$(abspath $(ASAN_BUILD))/pytest $(ASAN_MODULES) \
	    || rc=1; \
	/usr/bin/python3 tests/sanitize/check_logs.py $(ASAN_BUILD)/pytest || rc=1; \
	exit $$rc

valgrind: all
	/usr/bin/python3 tests/sanitize/valgrind_run.py --binary $(abspath $(BUILD)/jobdrainer) \
	    --workdir $(abspath $(BUILD))/valgrind
