#!/usr/bin/env bash
# Make a Docker engine reachable for `make e2e`, on Debian without systemd (CI, dev containers).
# Idempotent: does nothing when `docker info` already works. Otherwise installs what is missing
# (docker.io, docker-compose v1, iproute2 for the client image's `ip`) with apt-get and starts dockerd
# in the background, waiting until it answers. Its log: /var/log/featherlb-dockerd.log.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  echo "install-docker: a Docker engine is already reachable ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "install-docker: run as root (apt-get, dockerd)" >&2; exit 1; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
{ command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; } || missing+=(docker-compose)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if ((${#missing[@]})); then
  echo "install-docker: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# No systemd here: start the daemon ourselves (it starts its own containerd).
if [[ ! -S /var/run/docker.sock ]] || ! docker info >/dev/null 2>&1; then
  echo "install-docker: starting dockerd"
  nohup dockerd >/var/log/featherlb-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "install-docker: engine $(docker version --format '{{.Server.Version}}') ready"
    exit 0
  fi
  sleep 1
done
echo "install-docker: dockerd did not answer within 60 s; last lines of its log:" >&2
tail -n 20 /var/log/featherlb-dockerd.log >&2 || true
exit 1
