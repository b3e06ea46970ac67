#!/usr/bin/env bash
# Collect the shared libraries the XDP data plane embeds (libbpf.so.1 and what it links: libelf.so.1,
# libz.so.1) for one Debian architecture, under their sonames:
#
#   target-libs.sh ARCH OUT_DIR [PACKAGE...]   e.g. target-libs.sh arm64 build/release/lib/arm64
#
# For another architecture than this host's, apt downloads Debian's packages of it (after
# `dpkg --add-architecture`; no cross toolchain: nothing is compiled or linked against them) and
# dpkg-deb unpacks them. The versions are the host's own (the libbpf whose headers test/xdp/layout.test.ts
# checks libbpf-opts.ts against), so every target embeds the same libbpf. Extra PACKAGEs (e.g. libc6) are
# unpacked whole into OUT_DIR/root, for tests that run the target's binaries under qemu-user.
set -euo pipefail
arch=${1:?usage: target-libs.sh ARCH OUT_DIR [PACKAGE...]}
out=${2:?usage: target-libs.sh ARCH OUT_DIR [PACKAGE...]}
shift 2
extra=("$@")
LIBS=(libbpf1:libbpf.so.1 libelf1:libelf.so.1 zlib1g:libz.so.1)   # Debian package : soname

triplet() { case $1 in amd64) echo x86_64-linux-gnu ;; arm64) echo aarch64-linux-gnu ;; *) echo "target-libs: unknown architecture $1" >&2; exit 1 ;; esac; }
host_version() { dpkg-query -W -f='${Version}' "$1:$(dpkg --print-architecture)"; }

mkdir -p "$out"
if [[ $arch == "$(dpkg --print-architecture)" && ${#extra[@]} -eq 0 ]]; then
  for entry in "${LIBS[@]}"; do cp -L "/usr/lib/$(triplet "$arch")/${entry#*:}" "$out/"; done
  exit 0
fi

if ! dpkg --print-foreign-architectures | grep -qx "$arch" && [[ $arch != "$(dpkg --print-architecture)" ]]; then
  [[ $(id -u) == 0 ]] || { echo "target-libs: run as root once: dpkg --add-architecture $arch && apt-get update" >&2; exit 1; }
  dpkg --add-architecture "$arch"
fi
wanted=()
for entry in "${LIBS[@]}"; do wanted+=("${entry%%:*}:$arch=$(host_version "${entry%%:*}")"); done
for p in "${extra[@]}"; do wanted+=("$p:$arch=$(host_version "$p")"); done
# The package lists know the architecture only after an update that followed --add-architecture.
if ! apt-cache show "${wanted[0]}" >/dev/null 2>&1; then
  [[ $(id -u) == 0 ]] || { echo "target-libs: run as root: apt-get update" >&2; exit 1; }
  apt-get update -qq
fi

debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
chmod 0755 "$debs"   # apt downloads as _apt where it can
if ! (cd "$debs" && apt-get download -qq "${wanted[@]}" >"$debs/log" 2>&1); then
  echo "target-libs: apt-get download ${wanted[*]} failed:" >&2; cat "$debs/log" >&2; exit 1
fi
root="$out/root"
rm -rf "$root" && mkdir -p "$root"
for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
for entry in "${LIBS[@]}"; do
  so=${entry#*:}
  cp -L "$root/usr/lib/$(triplet "$arch")/$so" "$out/" 2>/dev/null || cp -L "$root/lib/$(triplet "$arch")/$so" "$out/"
done
[[ ${#extra[@]} -gt 0 ]] || rm -rf "$root"
echo "target-libs: ${wanted[*]} → $out"
