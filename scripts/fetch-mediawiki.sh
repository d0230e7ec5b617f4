#!/bin/sh
# Fetches a MediaWiki release that Debian 12 does not ship from Debian's archive, for the
# test farm (tests/farm/farm.py, FARM_MW=SERIES), and unpacks it into a private root:
#
#   scripts/fetch-mediawiki.sh 1.43     -> $JD_MW_CACHE/mediawiki-1.43/root/usr/share/mediawiki
#
# 1.43 comes from Debian 13 (trixie): `mediawiki` and `mediawiki-classes` are
# architecture-independent and run on Debian 12's PHP 8.2. The trixie source list is used
# only by this script's own `apt-get update` / `apt-get download` (a private sources file,
# lists and cache under the cache dir): the system's sources are never touched and nothing
# is installed with dpkg. The packages are unpacked with `dpkg-deb -x`, and their absolute
# symlinks (/usr/share/mediawiki/LocalSettings.php -> /var/lib/mediawiki/..., extensions ->
# /var/lib/mediawiki/extensions -> /usr/share/mediawiki/extensions-core/...) are rewritten
# to point inside the private root.
#
# A release already unpacked is reused without any network access (delete its directory,
# or pass --refresh, to fetch the archive's current point release again). 1.39 is Debian
# 12's own package (scripts/install-deps.sh installs it): nothing to fetch.
#
#   JD_MW_CACHE   where releases are kept (default /var/cache/jobdrainer-test)
#   JD_MW_MIRROR  the Debian mirror (default: the first http(s) URI of the system's
#                 Debian sources, else http://deb.debian.org/debian)
set -eu

usage() { echo "usage: $0 [--refresh] 1.39|1.43" >&2; exit 2; }
refresh=0
[ "${1:-}" = "--refresh" ] && { refresh=1; shift; }
[ $# -eq 1 ] || usage
series=$1

case "$series" in
  1.39) exit 0 ;;
  1.43) suite=trixie ;;
  *) usage ;;
esac

cache=${JD_MW_CACHE:-/var/cache/jobdrainer-test}
dest=$cache/mediawiki-$series
if [ -f "$dest/VERSION" ] && [ "$refresh" -eq 0 ]; then
  echo "fetch-mediawiki: MediaWiki $(cat "$dest/VERSION") already in $dest"
  exit 0
fi

mirror=${JD_MW_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
             /etc/apt/sources.list.d/*.list 2>/dev/null |
           grep -Eo 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 |
           sed 's/[ /]*$//') || true
  mirror=${mirror:-http://deb.debian.org/debian}
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch-$series.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
  > "$work/sources.list"

# Every apt option that keeps this fetch private: its own sources (no sources.list.d),
# its own lists and package cache. Dir::State::status stays the system's, read only.
apt_private() {
  "$@" -q -o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=- \
    -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" \
    -o APT::Sandbox::User=root
}
apt_private apt-get update >"$work/update.log" 2>&1 || { cat "$work/update.log" >&2; exit 1; }
version=$(apt_private apt-cache show mediawiki |
          awk -v s="$series" '/^Version:/ { v = $2; if (index(v, ":" s ".")) { print v; exit } }')
[ -n "$version" ] || { echo "fetch-mediawiki: $suite has no mediawiki $series" >&2; exit 1; }
(cd "$work/debs" && apt_private apt-get download "mediawiki=$version" "mediawiki-classes=$version")
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
done

# Absolute symlinks point at the system's /usr/share/mediawiki, /var/lib/mediawiki and
# /etc/mediawiki (1.39's, or nothing): make each one relative, into the private root.
find "$work/root" -type l | while read -r link; do
  target=$(readlink "$link")
  case "$target" in
    /*) ln -sfn "$(realpath -m -s --relative-to="$(dirname "$link")" "$work/root$target")" "$link" ;;
  esac
done
left=$(find "$work/root" -type l -lname '/*' | head -n 1)
[ -z "$left" ] || { echo "fetch-mediawiki: absolute symlink left: $left" >&2; exit 1; }
mw=$work/root/usr/share/mediawiki
for f in index.php maintenance/install.php extensions/ParserFunctions skins/Vector vendor/autoload.php; do
  [ -e "$mw/$f" ] || { echo "fetch-mediawiki: $f missing from the unpacked package" >&2; exit 1; }
done
grep -q "'MW_VERSION', '$series\." "$mw/includes/Defines.php" ||
  { echo "fetch-mediawiki: $mw/includes/Defines.php is not MediaWiki $series" >&2; exit 1; }

# Apache's workers (www-data) read it; the farm writes nothing into it.
chmod -R go+rX "$work/root"
echo "$version" > "$work/root/VERSION.tmp"
rm -rf "$dest.old"
[ -e "$dest" ] && mv "$dest" "$dest.old"
mkdir "$dest"
mv "$work/root" "$dest/root"
mv "$dest/root/VERSION.tmp" "$dest/VERSION"
rm -rf "$dest.old"
echo "fetch-mediawiki: MediaWiki $version from $mirror $suite in $dest"
