#!/usr/bin/env bash
# Install what the XDP data plane needs to build and test (Debian/Ubuntu; idempotent).
# Used by `make test` (bpf/bpf.mk) and CI, which runs as root on a fresh machine.
# bird2: the scale-out suite (test/scaleout/) runs BIRD as the router and beside each instance.
set -euo pipefail
# hping3: the spoofed SYN flood of test/xdp/hostile.test.ts.
PKGS=(clang llvm libbpf-dev libelf-dev zlib1g-dev linux-libc-dev bpftool iproute2 ethtool iputils-ping procps bird2 hping3)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian enables bird.service on install; the tests run their own BIRDs in namespaces, and a host BIRD
# with the package's default config is not wanted on a test machine.
if [[ " ${missing[*]:-} " == *" bird2 "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now bird >/dev/null 2>&1 || true
fi
