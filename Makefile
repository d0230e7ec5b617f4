# jobdrainer - see README.md.
#
#   make            build build/jobdrainer
#   make test       install what the tests need, build, run unit + integration tests
#   make demo       a local MariaDB + MediaWiki farm drained by two sidecars
#   make unit-unsigned-char  the unit tests built with -funsigned-char (as on arm64)
#   make format-check  fails when clang-format (.clang-format) would change a source
#   make asan       the same binary with AddressSanitizer + UBSan, in build/asan/
#   make asan-test  unit + integration tests on the ASan/UBSan build  (mk/quality.mk)
#   make fuzz       libFuzzer on the config and RunJobs response parsers (mk/quality.mk)
#   make valgrind   a short daemon run under valgrind: no leaks      (mk/quality.mk)
#   make bench      the benchmark against the baselines (quick size; see tests/bench)
#   make bench-flood  lanes: a bot flood and a one-wiki backlog (about 55 min; tests/bench)
#   make bench-detection  detection at 20,000 wikis on two servers, faults, feeds (tests/bench)
#   make deps       install the Debian packages (as root)
#   make image-test build the Dockerfile with podman, run the image on a test farm
#   make deb-test   build the Debian package, lintian, install, drain a farm, purge

PKGS     := libmariadb libcurl inih jansson libcrypto libmicrohttpd
CC       ?= cc
BUILD    ?= build
WERROR   ?= $(if $(CI),-Werror,)
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-align -Wvla -Wundef $(WERROR)
HARDEN   := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(WARN) $(HARDEN) $(CFLAGS) \
             $(shell pkg-config --cflags $(PKGS)) \
             -DINIH_VERSION='"$(shell pkg-config --modversion inih)"' -MMD -MP
LDFLAGS  ?=
ALL_LDFLAGS = -pie -Wl,-z,relro,-z,now $(LDFLAGS)
LIBS     = $(shell pkg-config --libs $(PKGS)) -lpthread

SRCS := $(wildcard sidecar/*.c)
OBJS := $(SRCS:sidecar/%.c=$(BUILD)/obj/%.o)
LIB_OBJS := $(filter-out $(BUILD)/obj/main.o,$(OBJS))

.PHONY: all deps test unit unit-unsigned-char integration demo asan bench bench-flood \
	bench-detection clean \
	format format-check \
	image-test deb-test
all: $(BUILD)/jobdrainer

$(BUILD)/jobdrainer: $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/obj/%.o: sidecar/%.c | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

# Unit tests: one cmocka program per module, linked against the daemon's objects.
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -iquote sidecar $(ALL_LDFLAGS) -o $@ $< $(LIB_OBJS) $(LIBS) -lcmocka

deps:
	scripts/install-deps.sh test
	scripts/fetch-mediawiki.sh 1.43

unit: $(UNIT_BINS)
	@failed=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || failed=1; done; exit $$failed

# The whole suite on MediaWiki 1.43 (what Wikibase Cloud runs, fetched from Debian 13 by
# scripts/fetch-mediawiki.sh), then a smoke subset on Debian 12's own 1.39 (CI's sanitizer
# run, make asan-ci, runs more modules on 1.39; make asan-test runs all of them).
# Another choice: make integration MW_FULL=1.39 MW_SMOKE= (an empty MW_SMOKE skips it).
MW_FULL  ?= 1.43
MW_SMOKE ?= 1.39
MW_SMOKE_TESTS := tests/farm tests/integration/test_drain.py tests/integration/test_cli.py
# Test modules run in PYTEST_JOBS pytest processes at once (pytest-xdist, a whole module
# per process: a module's farm stays in one process, and its tests in their order). Most
# of a module's time is spent waiting: on MediaWiki's jobs, on the daemon's timers, on
# observation windows; one module keeps about one core of two busy (load ~1). Measured
# here (shared machine, issue 23): the 1.43 suite in 31.5 min one module at a time,
# 16.3 min two at a time, every test passing at a load average of 5-7. Three at a time
# keeps make test within 15 min with room for new modules. PYTEST_JOBS=1: one process,
# the modules one after the other.
PYTEST_JOBS ?= 3
PYTEST_PAR   = $(if $(filter-out 0 1,$(PYTEST_JOBS)),-n $(PYTEST_JOBS) --dist loadfile)
# The longest modules first, so that the processes finish together rather than one
# waiting on a long module handed out last; the rest (new modules too) follow by name.
SLOW_MODULES := $(addprefix tests/integration/,test_leases.py test_lanes.py test_fault_isolation.py \
                test_scan_isolation.py test_scan_budget.py test_limits.py test_binlog.py)
INTEGRATION_MODULES = $(SLOW_MODULES) \
                $(filter-out $(SLOW_MODULES),$(sort $(wildcard tests/integration/test_*.py)))
PYTEST := /usr/bin/python3 -m pytest -v -p no:cacheprovider --durations=15
integration: $(BUILD)/jobdrainer
	FARM_MW=$(MW_FULL) JOBDRAINER=$(abspath $(BUILD)/jobdrainer) $(PYTEST) $(PYTEST_PAR) \
	    $(INTEGRATION_MODULES) tests/farm tests/chart tests/docker tests/monitoring tests/docs
	$(if $(MW_SMOKE),FARM_MW=$(MW_SMOKE) JOBDRAINER=$(abspath $(BUILD)/jobdrainer) $(PYTEST) $(PYTEST_PAR) $(MW_SMOKE_TESTS))

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration

demo: deps
	$(MAKE) all
	/usr/bin/python3 scripts/demo.py

bench: deps
	$(MAKE) all
	/usr/bin/python3 tests/bench/run.py --size quick

# Writes tests/bench/results/flood.md and flood.json (issue 24's measurements).
bench-flood: deps
	$(MAKE) all
	FARM_MW=1.43 /usr/bin/python3 tests/bench/bench_flood.py

# Issue 21's measurements: this build as DETECTION_LABEL (detection_<label>.json), beside
# BEFORE_JSON (the main binary's, committed) in tests/bench/results/detection.md. About 30
# min on 2 cores; BENCH_DETECTION_ARGS adds options (e.g. --set 'server {db2}.KEY=VALUE').
DETECTION_LABEL ?= after
BEFORE_JSON ?= tests/bench/results/detection_before.json
bench-detection: all
	nice -n 19 /usr/bin/python3 tests/bench/bench_detection.py --binary $(BUILD)/jobdrainer \
	    --label $(DETECTION_LABEL) --before-json $(BEFORE_JSON) $(BENCH_DETECTION_ARGS)

asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	    LDFLAGS="-fsanitize=address,undefined" all

# The unit tests once more with char unsigned, as on arm64: a check written for signed
# char (e.g. `c <= ' '` to refuse high bytes) passes there.
unit-unsigned-char:
	$(MAKE) BUILD=build/uchar CFLAGS="-O2 -g -funsigned-char" unit

# The image, built with a private podman store and run against a test farm
# (tests/docker/test_image.py; about 3 minutes, most of it making the base image).
image-test:
	scripts/install-deps.sh image
	JD_IMAGE_TEST=1 /usr/bin/python3 -m pytest -v -s -p no:cacheprovider tests/docker/test_image.py

# The Debian package: dpkg-buildpackage, lintian, install, systemd-analyze verify, the
# installed binary draining a test farm as the package's user, remove, purge
# (tests/deb/test_package.py).
deb-test: all
	scripts/install-deps.sh deb
	JD_DEB_TEST=1 /usr/bin/python3 -m pytest -v -s -p no:cacheprovider tests/deb

clean:
	rm -rf build

# The pinned formatter (.clang-format, clang-format 14): format rewrites the sources,
# format-check (CI) fails when any differs from what format would write.
FORMAT_SRCS = sidecar/*.c sidecar/*.h tests/unit/*.c
format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRCS)

include mk/quality.mk

-include $(OBJS:.o=.d)
