#!/usr/bin/env bash
# The e2e runner behind `make e2e` (docs/e2e.md): images → compose up → client → log → compose down,
# once per mode in E2E_MODES. Writes test/e2e/runs/<UTC datetime>.log; exits 1 if any check failed,
# 2 if the run could not happen at all (no Docker, build failed).
#
#   run.sh           the whole run
#   run.sh --down    remove what a run left behind (containers, network)
set -uo pipefail
cd "$(dirname "$0")/../.."

PROJECT=${E2E_PROJECT:-featherlb-e2e}
MODES=${E2E_MODES:-proxy xdp}
BUILD=${E2E_BUILD:-host}
MAKE=${MAKE:-make}
RUNS=test/e2e/runs
STARTED=$(date +%s)
export E2E_NET=${E2E_NET:-10.213.61}

say() { printf '%s\n' "$*"; }
die() { say "e2e: $*" >&2; exit 2; }

# --- Docker and Compose ------------------------------------------------------------------------------
docker info >/dev/null 2>&1 || die "no Docker engine is reachable ('docker info' fails). Start Docker, or on Debian run: bash test/e2e/install-docker.sh"
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  die "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed"
fi
SERVER_VERSION=$(docker version --format '{{.Server.Version}}' 2>/dev/null)
# Docker before 23 does not know CAP_BPF: the xdp mode then gets SYS_ADMIN instead (see the files).
if [[ ${SERVER_VERSION%%.*} -lt 23 ]]; then XDP_OVERRIDE=test/e2e/compose.xdp-docker20.yml; else XDP_OVERRIDE=test/e2e/compose.xdp.yml; fi

FILES=(-f compose.yml)
compose() { "${COMPOSE[@]}" -p "$PROJECT" "${FILES[@]}" "$@"; }
down() {
  docker rm -f "$PROJECT-ipholder" >/dev/null 2>&1
  compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
}

if [[ ${1:-} == --down ]]; then
  FILES=(-f compose.yml -f "$XDP_OVERRIDE")
  down
  say "e2e: removed project $PROJECT"
  exit 0
fi

# --- Log -----------------------------------------------------------------------------------------------
mkdir -p "$RUNS"
LOG=$RUNS/$(date -u +%Y-%m-%dT%H-%M-%SZ).log
: > "$LOG"
log() { printf '%s\n' "$*" | tee -a "$LOG"; }
elapsed() { echo $(( $(date +%s) - ${1:-$STARTED} )); }
TTY=0; [[ -t 1 ]] && TTY=1
# A progress line is redrawn in place on a terminal, so it must not wrap.
COLS=$( ((TTY)) && tput cols 2>/dev/null || echo 120)

trap 'down' EXIT
trap 'say ""; say "e2e: interrupted, removing the containers…"; exit 130' INT TERM

log "featherlb e2e run $(date -u +%Y-%m-%dT%H:%M:%SZ) — modes: $MODES"
log ""

# --- Build ---------------------------------------------------------------------------------------------
t=$(date +%s)
say "e2e: building binaries and images ($BUILD build)…"
mkdir -p build/e2e
if ! "$MAKE" --no-print-directory e2e-images E2E_BUILD="$BUILD" > build/e2e/images.log 2>&1; then
  tail -n 30 build/e2e/images.log | tee -a "$LOG"
  log "RESULT build FAIL (make e2e-images; full output in build/e2e/images.log)"
  exit 2
fi
BUILD_SECS=$(elapsed "$t")

# --- Versions ------------------------------------------------------------------------------------------
size() { docker image inspect -f '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%.1f MB", $1/1e6}'; }
log "== versions"
log "  featherlb      $(docker run --rm featherlb:e2e --version 2>&1 | head -1)"
log "  commit         $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git status --porcelain -- src config test/e2e compose.yml 2>/dev/null) ]] && echo ' (+ uncommitted changes)')"
[[ -x node_modules/.bin/bun ]] && log "  bun            $(node_modules/.bin/bun --version)"
log "  docker         client $(docker version --format '{{.Client.Version}}' 2>/dev/null), engine $SERVER_VERSION"
log "  compose        ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -1)"
log "  kernel         $(uname -sr), $(nproc) CPUs"
log "  images         featherlb:e2e $(size featherlb:e2e), featherlb-e2e-backend $(size featherlb-e2e-backend:latest), featherlb-e2e-client $(size featherlb-e2e-client:latest) (FROM scratch; binary + glibc)"
log "  build          ${BUILD_SECS} s ($BUILD: binaries, rootfs, docker build)"
log ""

# --- One mode ------------------------------------------------------------------------------------------
# Reads the client's output: "~ " progress goes to the console only, "@@ACTION kill|start X" makes the
# runner kill (SIGKILL) or start backend container X, everything else is the report.
handle_output() {
  local line verb target
  while IFS= read -r line; do
    case $line in
      "~ "*)
        if ((TTY)); then printf '\r\033[K%s' "${line:2:COLS-1}"; else say "${line:2}"; fi ;;
      "@@ACTION "*)
        read -r _ verb target <<<"$line"
        ((TTY)) && printf '\r\033[K'
        case $verb in
          kill) (fault_kill "$target") & ;;
          start) (fault_start "$target") & ;;
        esac ;;
      *)
        ((TTY)) && printf '\r\033[K'
        log "$line" ;;
    esac
  done
  wait
}

# Containers are found by Compose's labels (v1 and v2 both set them) with plain docker: a
# docker-compose v1 invocation costs a second or two, too slow to time a kill.
container_of() { docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1" | head -1; }
ip_of() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1" 2>/dev/null; }
net_of() { docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$1" 2>/dev/null; }
HOLDER=$PROJECT-ipholder

# The victim dies hard (SIGKILL: no clean shutdown, no drain) and comes back as a new container on a
# new address: while it is down a placeholder holds its old IP (listening on another port, so health
# checks of the old address keep failing), and Compose recreates it. featherlb only gets it back by
# re-resolving the name.
fault_kill() {
  local id was net
  id=$(container_of "$1"); was=$(ip_of "$id"); net=$(net_of "$id")
  if docker kill -s KILL "$id" >/dev/null 2>&1; then
    log "  [runner $(date -u +%T)] docker kill -s KILL $1 (it had IP $was)"
  else
    log "  [runner] kill $1 FAILED"; return
  fi
  docker run -d --rm --name "$HOLDER" --network "$net" --ip "$was" -e BACKEND_ID=ipholder -e PORT=7999 \
    featherlb-e2e-backend:latest >/dev/null 2>&1 && echo "$was" > "build/e2e/$1.oldip"
}
fault_start() {
  local was now
  was=$(cat "build/e2e/$1.oldip" 2>/dev/null)
  if compose rm -f "$1" >/dev/null 2>&1 && compose up -d --no-deps "$1" >/dev/null 2>&1; then
    now=$(ip_of "$(container_of "$1")")
    log "  [runner $(date -u +%T)] new $1 container up with IP $now ($( [[ $now == "$was" ]] && echo "same IP as before" || echo "was $was, held by a placeholder: featherlb must re-resolve the name"))"
  else
    log "  [runner] start $1 FAILED"
  fi
  # The placeholder stays until the mode's `down`: removing a container mid-measurement is one more
  # disturbance on a loaded 2-core host.
}

declare -A RESULT=()
run_mode() {
  local mode=$1 config=config/e2e-$1.yaml t rc
  [[ -f $config ]] || { log "RESULT $mode FAIL: $config is missing"; RESULT[$mode]=FAIL; return; }
  FILES=(-f compose.yml)
  [[ $mode == xdp ]] && FILES+=(-f "$XDP_OVERRIDE")
  # The configs are written for the default network; a changed E2E_NET is applied to a copy.
  sed "s/10\.213\.61\./$E2E_NET./g" "$config" > "build/e2e/lb-$mode.yaml"
  export E2E_LB_CONFIG=build/e2e/lb-$mode.yaml E2E_MODE=$mode
  down
  log "== mode $mode: $config$( [[ $E2E_NET != 10.213.61 ]] && echo " (network $E2E_NET.0/24)")"
  sed 's/^/  | /' "$E2E_LB_CONFIG" >> "$LOG"
  [[ $mode == xdp ]] && log "  LB container capabilities: $(grep -o 'cap_add: .*' "$XDP_OVERRIDE")"
  t=$(date +%s)
  if ! compose up -d lb backend-a backend-b backend-c > build/e2e/up.log 2>&1; then
    log "$(cat build/e2e/up.log)"
    log "RESULT $mode FAIL (compose up)"
    RESULT[$mode]=FAIL
    return
  fi
  log "  compose up: $(elapsed "$t") s"
  # featherlb refuses a bad config or a missing privilege at once (exit 2): say so now, not after the
  # client's readiness wait.
  sleep 1
  if [[ $(docker inspect -f '{{.State.Running}}' "$(container_of lb)" 2>/dev/null) != true ]]; then
    log "  featherlb exited at start:"
    compose logs --no-color lb 2>&1 | sed -E 's/^[^|]*\| ?//' | grep -v '"previous":null' | grep -v "^Attaching" | tail -n 20 | sed 's/^/  | /' | tee -a "$LOG"
    log "RESULT $mode FAIL (featherlb did not start)"
    RESULT[$mode]=FAIL
    down
    return
  fi
  # forwarding: dsr needs its VIP on the LB as an address of its own (config/e2e-xdp.yaml, docs/dsr.md).
  if [[ $mode == xdp ]] && grep -q 'forwarding: dsr' "$E2E_LB_CONFIG"; then
    if docker exec "$(container_of lb)" /usr/sbin/ip addr add "$E2E_NET.150/32" dev eth0 2>> build/e2e/up.log; then
      log "  dsr VIP $E2E_NET.150/32 added to the LB container's eth0 (docker exec … ip addr add)"
    else
      log "  adding the dsr VIP to the LB container failed: $(tail -1 build/e2e/up.log)"
    fi
  fi
  t=$(date +%s)
  # Compose's own chatter ("Creating …", v1 prints the exit code) goes to stderr: keep it out of the report.
  # In the background and waited for, so Ctrl-C reaches the traps at once (bash defers traps while a
  # foreground pipeline runs).
  rm -f build/e2e/client.rc
  { compose run --rm -T client 2> build/e2e/client.stderr; echo $? > build/e2e/client.rc; } | handle_output &
  wait $!
  rc=$(cat build/e2e/client.rc 2>/dev/null || echo 3)
  ((TTY)) && printf '\r\033[K'
  log "  client exit code $rc after $(elapsed "$t") s"
  grep -vE '^(Creating|Starting|Pulling) |^[0-9]+$|^\s*$' build/e2e/client.stderr | tr -d '\r' | sed 's/^/  client stderr: /' | tee -a "$LOG"
  log ""
  log "-- featherlb log ($mode), without the initial name resolutions:"
  # Its JSON lines, less the first resolution of every name (21 lines saying the obvious).
  # A failing name repeats every second for every service: shown once per backend, then counted.
  compose logs --no-color lb 2>&1 | sed -E 's/^[^|]*\| ?//' | grep -v '^Attaching' | grep -v '"previous":null' \
    | awk '/"backend name did not resolve"/ { match($0, /"backend":"[^"]*"/); k = substr($0, RSTART, RLENGTH);
             if (seen[k]++) { more++; next } }
           { print } END { if (more) print "(" more " more \"did not resolve\" lines like the above)" }' \
    | tail -n 60 | sed 's/^/  /' >> "$LOG"
  [[ $(docker inspect -f "{{.State.Running}}" "$(container_of lb)" 2>/dev/null) == true ]] || log "  (the LB container is not running any more: it exited during the run)"
  t=$(date +%s)
  down
  log "  compose down: $(elapsed "$t") s"
  if ((rc == 0)); then RESULT[$mode]=PASS; else RESULT[$mode]=FAIL; fi
  log ""
}

for mode in $MODES; do run_mode "$mode"; done

overall=PASS
summary=""
for mode in $MODES; do
  summary+=" $mode ${RESULT[$mode]:-FAIL}"
  [[ ${RESULT[$mode]:-FAIL} == PASS ]] || overall=FAIL
done
log "== overall: $overall (${summary# }) in $(elapsed) s"
say "e2e: log written to $LOG"
[[ $overall == PASS ]]
