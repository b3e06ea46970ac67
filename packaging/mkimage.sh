#!/usr/bin/env bash
# Build the release image featherlb:VERSION from one release binary (`make image`), then run it once:
#
#   mkimage.sh BINARY VERSION
#
# Needs a Docker engine (Debian without one: bash test/e2e/install-docker.sh). FROM scratch: no
# registry is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: mkimage.sh BINARY VERSION}
version=${2:?usage: mkimage.sh BINARY VERSION}
tag=featherlb:$version
docker info >/dev/null 2>&1 || { echo "mkimage: no Docker engine answers; on Debian: bash test/e2e/install-docker.sh" >&2; exit 1; }
ip_bin=$(command -v ip || true)
[[ -n $ip_bin ]] || { echo "mkimage: the image needs the 'ip' tool (Debian: apt-get install iproute2)" >&2; exit 1; }

stage=build/release/image
bash test/e2e/rootfs.sh "$stage/rootfs" "$bin=/usr/bin/featherlb" "$ip_bin=/usr/sbin/ip"
install -D -m 0644 config/lb.yaml "$stage/rootfs/etc/featherlb/lb.yaml"
install -d -m 0755 "$stage/rootfs/run/featherlb"
docker build -q -f packaging/Dockerfile --build-arg VERSION="$version" --build-arg COMMIT="$(cat build/commit)" -t "$tag" "$stage" >/dev/null

# The image runs: the version, and the config it carries checks as a non-root user.
docker run --rm "$tag" --version
docker run --rm --user 65534:65534 "$tag" check /etc/featherlb/lb.yaml

# mode: xdp with the capabilities README names, in a container with its own network namespace
# (--network none: XDP attaches to that namespace's lo, nothing else is touched). An engine that does
# not know CAP_BPF / CAP_PERFMON (Docker 20.10, Debian 12's) gets CAP_SYS_ADMIN, which covers both.
cat > "$stage/xdp.yaml" <<'YAML'
mode: xdp
admin: { listen: off }
xdp: { interface: lo, attach: generic }
services:
  - name: web
    listen: 127.0.0.1:8080
    backends:
      - address: 127.0.0.2:80
YAML
name=featherlb-image-check-$$
xdp_run() { docker run -d --name "$name" --network none "$@" -v "$PWD/$stage/xdp.yaml:/etc/featherlb/lb.yaml:ro" "$tag" >/dev/null; }
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
if ! xdp_run --cap-add BPF --cap-add PERFMON --cap-add NET_ADMIN 2>"$stage/run.err"; then
  grep -q 'unknown capability' "$stage/run.err" || { cat "$stage/run.err" >&2; exit 1; }
  docker rm -f "$name" >/dev/null 2>&1 || true
  caps="SYS_ADMIN NET_ADMIN"
  xdp_run --cap-add SYS_ADMIN --cap-add NET_ADMIN
else
  caps="BPF PERFMON NET_ADMIN"
fi
for _ in $(seq 1 100); do
  docker logs "$name" 2>&1 | grep -q '"xdp services applied"' && break
  [[ $(docker inspect -f '{{.State.Running}}' "$name") == true ]] || break
  sleep 0.1
done
docker logs "$name" 2>&1 | grep -q '"xdp program attached"' || { echo "mkimage: mode: xdp did not attach in the image:" >&2; docker logs "$name" >&2; exit 1; }
docker stop -t 10 "$name" >/dev/null
[[ $(docker inspect -f '{{.State.ExitCode}}' "$name") == 0 ]] || { echo "mkimage: mode: xdp did not exit 0 on SIGTERM" >&2; docker logs "$name" >&2; exit 1; }
echo "mkimage: mode: xdp attaches in the image with --cap-add ${caps// / --cap-add }, drains and exits 0 on docker stop"

size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "mkimage: $tag ($(awk -v s="$size" 'BEGIN { printf "%.1f MB", s / 1e6 }'))"
