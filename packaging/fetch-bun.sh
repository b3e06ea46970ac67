#!/usr/bin/env bash
# Fetch the Bun runtime for one release target from the npm registry and unpack its executable:
#
#   fetch-bun.sh TARGET OUT      e.g. fetch-bun.sh linux-arm64 build/release/bun/linux-arm64/bun
#
# `bun build --compile --target=...` would download the runtime from GitHub; we hand it the same
# executable from Bun's npm package instead (--compile-executable-path, packaging/build.ts). The package
# and its integrity are pinned in packaging/bun-runtimes.txt, the version in package.json; `npm pack`
# keeps the tarball in npm's cache, so a second run needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fetch-bun.sh TARGET OUT}
out=${2:?usage: fetch-bun.sh TARGET OUT}

version=$(node -p 'require("./package.json").devDependencies.bun')
read -r pinned_version package integrity < <(awk -v t="$target" '!/^#/ && $2 == t { print $1, $3, $4 }' packaging/bun-runtimes.txt) || true
[[ -n ${package:-} ]] || { echo "fetch-bun: no target $target in packaging/bun-runtimes.txt" >&2; exit 1; }
if [[ $pinned_version != "$version" ]]; then
  echo "fetch-bun: package.json pins bun $version but packaging/bun-runtimes.txt has $pinned_version for $target;" \
    "update it with: npm view $package@$version dist.integrity" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tgz=$(npm pack --silent --pack-destination "$work" "$package@$version")
actual="sha512-$(openssl dgst -sha512 -binary "$work/$tgz" | base64 -w0)"
if [[ $actual != "$integrity" ]]; then
  echo "fetch-bun: $package@$version has integrity $actual, packaging/bun-runtimes.txt expects $integrity" >&2
  exit 1
fi
tar -xzf "$work/$tgz" -C "$work" package/bin/bun
mkdir -p "$(dirname "$out")"
mv "$work/package/bin/bun" "$out"
chmod 0755 "$out"
touch "$out"   # the package dates its files 1985: make would fetch again every time
echo "fetch-bun: $package@$version → $out"
