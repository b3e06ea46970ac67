#!/usr/bin/env bash
# Put this machine in the state of a fresh host before `make test`, so a test that passes only because
# of something an earlier run left (dockerd turns net.ipv4.ip_forward on; a crashed test leaves
# namespaces) fails here as it would on a new server:
#   - no Docker engine running (stopped, not uninstalled: `make e2e` starts it again afterwards);
#   - IPv4 forwarding off, host-wide and as the default for new interfaces and namespaces;
#   - no network namespaces left by featherlb's test suites (names start with "flb");
#   - no bpffs at /sys/fs/bpf (none is mounted on a fresh host of this kind).
# Prints what it changed. Root only (CI runs as root).
set -euo pipefail

if pgrep -x dockerd >/dev/null 2>&1 || [ -e /var/run/docker.pid ]; then
  echo "fresh-host: stopping the Docker engine"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
    systemctl stop docker.socket docker containerd 2>/dev/null || true
  elif [ -s /var/run/docker.pid ]; then
    pid=$(cat /var/run/docker.pid)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
fi

for key in net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding; do
  if [ "$(sysctl -n "$key")" != 0 ]; then
    echo "fresh-host: $key was $(sysctl -n "$key"), now 0"
    sysctl -q -w "$key=0"
  fi
done

for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^flb' || true); do
  echo "fresh-host: removing leftover namespace $ns"
  ip netns del "$ns" || true
done

# A fresh host here has no bpffs at /sys/fs/bpf (featherlb mounts one when it pins its maps): unmount
# one a previous run left, if nothing but featherlb's pins is in it.
# (findmnt lists stacked mounts in order: the last one is the one visible.)
for _ in 1 2 3; do
  [ "$(findmnt -n -o FSTYPE --mountpoint /sys/fs/bpf 2>/dev/null | tail -n 1)" = bpf ] || break
  others=$(ls -A /sys/fs/bpf | grep -v -x -e featherlb -e maps.debug -e progs.debug || true)
  if [ -n "$others" ]; then
    echo "fresh-host: leaving the bpffs at /sys/fs/bpf (it holds: $(echo $others))"
    break
  fi
  echo "fresh-host: unmounting a bpffs at /sys/fs/bpf (featherlb's pins only)"
  umount /sys/fs/bpf
done

echo "fresh-host: ip_forward=$(sysctl -n net.ipv4.ip_forward), dockerd $(pgrep -x dockerd >/dev/null && echo running || echo stopped), namespaces: $(ip netns list 2>/dev/null | wc -l)"
