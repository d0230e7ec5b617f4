# jobdrainer container image: the sidecar the mediawiki chart adds to its pods
# (chart-patch/). Built on Debian 12 with the same install script and the same make
# target as CI; shipped on bookworm-slim with only the libraries the binary links.
#
#   docker build -t ghcr.io/wbstack/jobdrainer:0.1.0 .
#   podman build -t ghcr.io/wbstack/jobdrainer:0.1.0 .
#
# tests/docker/test_dockerfile.py checks this file against the built binary (its shared
# libraries, their Debian packages, --check-config of the default INI) in make test;
# make image-test (tests/docker/test_image.py) builds it with podman and runs the image
# against the test farm.

FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . .
# scripts/install-deps.sh build: the Debian packages README and CI install to build.
# make clean: never ship a build/ that came in with the context (.dockerignore drops it
# too). make CI=1: the CI build, warnings are errors; then the unit tests. The shipped
# binary is stripped (the image carries no debugger; build/ keeps the symbols here).
RUN scripts/install-deps.sh build \
 && make clean \
 && make CI=1 \
 && make CI=1 unit \
 && strip --strip-unneeded -o build/jobdrainer.stripped build/jobdrainer

FROM debian:bookworm-slim
# No debconf questions (an ARG: set for this stage's RUNs, not in the image's environment).
ARG DEBIAN_FRONTEND=noninteractive
# Runtime libraries only: one package per library the binary links (objdump -p
# build/jobdrainer | grep NEEDED); apt pulls in what they depend on.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmariadb3 libcurl4 libinih1 libjansson4 libssl3 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed, non-root uid/gid: the chart's securityContext runs the container as
# runAsUser/runAsGroup 10001 (jobdrainer.securityContext in values.yaml). Not --system:
# 10001 lies above Debian's SYS_UID_MAX (999), where useradd --system warns; in the
# regular range it is simply a user without a home or a login shell.
RUN groupadd --gid 10001 jobdrainer \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin jobdrainer
COPY --from=build /src/build/jobdrainer.stripped /usr/local/bin/jobdrainer
# The documented defaults; the chart mounts its rendered INI over /etc/jobdrainer/.
COPY conf/jobdrainer.ini /etc/jobdrainer/jobdrainer.ini
USER 10001:10001
# [http] listen: /healthz, /readyz, /metrics.
EXPOSE 9180
# No init process (tini, dumb-init) in front: jobdrainer is fit to be PID 1. It blocks
# SIGTERM, SIGINT and SIGHUP before it starts any thread and takes them with sigwait(),
# and the kernel delivers blocked signals even to PID 1 (which otherwise drops signals
# it has no handler for). It starts no child processes, so there is nothing to reap.
ENTRYPOINT ["/usr/local/bin/jobdrainer"]
CMD ["--config", "/etc/jobdrainer/jobdrainer.ini"]
