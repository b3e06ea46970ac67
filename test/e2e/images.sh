#!/usr/bin/env bash
# Build the three e2e images: featherlb:e2e, featherlb-e2e-backend, featherlb-e2e-client.
#   images.sh host    from binaries compiled on this machine (make build, make e2e-bins): CI's path
#   images.sh docker  everything compiled inside Docker (images/builder.Dockerfile): needs a registry
set -euo pipefail
cd "$(dirname "$0")/../.."
how=${1:-host}
stage=build/e2e/images

if [[ $how == host ]]; then
  ip_bin=$(command -v ip || true)
  [[ -n $ip_bin ]] || { echo "images.sh: the client image needs the 'ip' tool (Debian: apt-get install iproute2)" >&2; exit 1; }
  # `ip` in the LB image too: the XDP data plane asks it for routes and neighbours (src/dataplane/xdp/netif.ts).
  bash test/e2e/rootfs.sh "$stage/lb/rootfs" dist/featherlb "$ip_bin=/usr/sbin/ip"
  # featherlb and `ip` in the backend image too: in xdp mode it prepares itself for the dsr service with
  # `featherlb dsr-backend <VIP> --apply` (test/e2e/backend/main.ts, docs/dsr.md).
  bash test/e2e/rootfs.sh "$stage/backend/rootfs" build/e2e/bin/featherlb-e2e-backend dist/featherlb "$ip_bin=/usr/sbin/ip"
  bash test/e2e/rootfs.sh "$stage/client/rootfs" build/e2e/bin/featherlb-e2e-client "$ip_bin=/usr/sbin/ip"
  # The legacy builder (Docker 20.10) sends the context each time; the layer cache makes repeats cheap.
  docker build -q -f test/e2e/images/featherlb.Dockerfile -t featherlb:e2e "$stage/lb" >/dev/null
  docker build -q -f test/e2e/images/backend.Dockerfile -t featherlb-e2e-backend:latest "$stage/backend" >/dev/null
  docker build -q -f test/e2e/images/client.Dockerfile -t featherlb-e2e-client:latest "$stage/client" >/dev/null
else
  ctx() { tar -c --exclude=./node_modules --exclude=./dist --exclude=./build --exclude=./.git --exclude=./test/e2e/runs .; }
  ctx | docker build -f test/e2e/images/builder.Dockerfile --target lb -t featherlb:e2e -
  ctx | docker build -f test/e2e/images/builder.Dockerfile --target backend -t featherlb-e2e-backend:latest -
  ctx | docker build -f test/e2e/images/builder.Dockerfile --target client -t featherlb-e2e-client:latest -
fi
# A rebuilt image leaves its predecessor untagged (~110 MB each): drop those, and only ours.
docker image prune -f --filter label=org.featherlb.e2e=1 >/dev/null
