#!/usr/bin/env bash
# Build the Debian package of one architecture with dpkg-deb (no debhelper: one binary, one unit).
#
#   mkdeb.sh ARCH BINARY VERSION OUT_DIR      → OUT_DIR/featherlb_VERSION_ARCH.deb
#
# Contents: /usr/bin/featherlb, /etc/featherlb/lb.yaml (a conffile: config/lb.yaml, commented),
# /usr/lib/systemd/system/featherlb.service, /usr/share/doc/featherlb/{README.md,copyright}; the
# maintainer scripts in packaging/deb/ create the `featherlb` system user and tell systemd.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:?usage: mkdeb.sh ARCH BINARY VERSION OUT_DIR}
bin=${2:?}
version=${3:?}
out=${4:?}

stage=build/release/deb/$arch
rm -rf "$stage"
install -D -m 0755 "$bin" "$stage/usr/bin/featherlb"
install -D -m 0644 config/lb.yaml "$stage/etc/featherlb/lb.yaml"
install -D -m 0644 packaging/featherlb.service "$stage/usr/lib/systemd/system/featherlb.service"
install -D -m 0644 README.md "$stage/usr/share/doc/featherlb/README.md"
install -D -m 0644 LICENSE "$stage/usr/share/doc/featherlb/copyright"
install -d -m 0755 "$stage/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage/DEBIAN/"
echo /etc/featherlb/lb.yaml > "$stage/DEBIAN/conffiles"
# glibc 2.33: the embedded libelf's newest symbol version (Bun itself needs 2.17); passwd: useradd in
# postinst; procps: /bin/kill, the unit's ExecReload.
cat > "$stage/DEBIAN/control" <<CONTROL
Package: featherlb
Version: $version
Architecture: $arch
Maintainer: featherlb developers <featherlb@users.noreply.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: libc6 (>= 2.33), passwd, procps
Recommends: iproute2
Section: net
Priority: optional
Description: lightweight TCP (layer-4) load balancer
 featherlb balances TCP connections across healthy backends with seven
 algorithms (round robin, weighted, least connections, random, power of two,
 source hash, Maglev), in one of two data planes behind one control plane: a
 user-space proxy, or an eBPF/XDP program (one-arm full NAT) loaded from the
 same binary. Health checks, DNS re-resolution, Prometheus metrics, reload on
 SIGHUP and drain on SIGTERM.
CONTROL
mkdir -p "$out"
# gzip: xz would make the package ~25% smaller but takes ~50 s per package on two cores.
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$out/featherlb_${version}_${arch}.deb" >/dev/null
echo "mkdeb: $out/featherlb_${version}_${arch}.deb"
