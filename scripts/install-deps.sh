#!/bin/sh
# Installs, from Debian's archive, everything jobdrainer needs to build, test and run its
# demo farm. Used by `make deps` (and so by `make test`, `make demo`), by .ci/run and by
# the Dockerfile's build stage, so that all three install the same things.
#
#   scripts/install-deps.sh [build|test|image|deb]   (default: test = build + the real
#   test farm; image: make image-test; deb: make deb-test)
set -eu

what=${1:-test}

# Build: compiler, the libraries the daemon links, and the unit-test runner.
build_pkgs="build-essential pkg-config libmariadb-dev libcurl4-openssl-dev libinih-dev
  libjansson-dev libssl-dev libcmocka-dev libmicrohttpd-dev"

# Test farm: a private MariaDB, Debian's MediaWiki served by Apache httpd + mod_php (as
# production serves it), and the Python test runner with its MySQL driver and xdist
# (make integration runs three modules at a time).
test_pkgs="mariadb-server mariadb-client mediawiki apache2 libapache2-mod-php php-cli
  php-mysql php-intl php-mbstring php-xml python3 python3-pytest python3-pytest-xdist
  python3-pymysql curl procps golang-go golang-github-masterminds-sprig-dev
  golang-k8s-sigs-yaml-dev python3-yaml patch git clang clang-format libclang-rt-14-dev
  valgrind python3-matplotlib prometheus unzip"

# make image-test: a daemonless podman (with runc) and debuerreotype for the base image.
image_pkgs="podman runc debuerreotype debootstrap"
# make deb-test: Debian's packaging tools, lintian, systemd-analyze (package systemd).
deb_pkgs="debhelper dpkg-dev fakeroot lintian systemd adduser"

case "$what" in
  build) pkgs=$build_pkgs ;;
  test) pkgs="$build_pkgs $test_pkgs" ;;
  image) pkgs=$image_pkgs ;;
  deb) pkgs="$build_pkgs $deb_pkgs" ;;
  *) echo "usage: $0 [build|test|image|deb]" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages:$missing; run as root to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# policy-rc.d keeps the packages' own services (mariadb, apache2) from starting: the
# tests and the demo start private instances on loopback ports of their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
