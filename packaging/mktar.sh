#!/usr/bin/env bash
# Pack one release tarball:
#
#   mktar.sh TARGET BINARY VERSION OUT_DIR   → OUT_DIR/featherlb-VERSION-TARGET.tar.gz
#
# One top directory featherlb-VERSION-TARGET/ with the binary, lb.yaml (config/lb.yaml, commented),
# README.md, LICENSE and featherlb.service. Entries sorted, owned by root, dated by the commit
# (SOURCE_DATE_EPOCH), gzip without a timestamp: the same binary packs to the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: mktar.sh TARGET BINARY VERSION OUT_DIR}
bin=${2:?}
version=${3:?}
out=${4:?}

name=featherlb-$version-$target
stage=build/release/tar/$target
rm -rf "$stage"
install -D -m 0755 "$bin" "$stage/$name/featherlb"
install -m 0644 config/lb.yaml "$stage/$name/lb.yaml"
install -m 0644 README.md LICENSE packaging/featherlb.service "$stage/$name/"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$out"
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - "$name" | gzip -n > "$out/$name.tar.gz"
echo "mktar: $out/$name.tar.gz"
