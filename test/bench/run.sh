#!/usr/bin/env bash
# featherlb vs HAProxy vs NGINX vs a direct connection, in network namespaces. Root only. Every load is
# bounded in time; every namespace and process this script creates is removed on exit, Ctrl-C included.
#
#   run.sh [run]                   the benchmark (`make bench`): build/bench/results.jsonl, which
#                                  test/bench/report.ts turns into docs/benchmarks.md + .svg
#   run.sh profile                 featherlb proxy from source under Bun's CPU profiler and perf, then
#                                  the per-request comparison below (`make bench-profile`)
#   run.sh syscalls                only the per-request CPU / system call comparison of the balancers
#   run.sh lab [SYSTEM [SECONDS]]  the topology, the backends and one balancer (default featherlb-xdp)
#                                  left running SECONDS (default 600) for manual measurements
#   run.sh scale                   how featherlb's costs grow with its backends, 10 to 10,000 in both modes
#                                  (test/bench/scale.ts, its own namespaces): build/bench/scale.jsonl
#
# Topology (all names start with flbb, subnet 10.88.0.0/24, the root namespace is not touched):
#
#   flbb-cli 10.88.0.1 ─┐
#   flbb-lb  10.88.0.2 ─┤  bridge flbb-br in namespace flbb-sw; each balancer gets its own address
#                       │  (.2-.7, one at a time on the interface), see use_vip
#   flbb-be1 10.88.0.11 ┤  backends: nginx :80 (static files) + flbbtool serve :9000 (10 s streams)
#   flbb-be2 10.88.0.12 ┤
#   flbb-be3 10.88.0.13 ┘
#
# Knobs (environment): BENCH_SCALE_SIZES (scale: "10,100,1000,10000"), BENCH_REPS (3), BENCH_DURATION (5 s per wrk run), BENCH_STREAM_SECONDS (10),
# BENCH_IDLE_CONNS (10000, capped by the fd limit), BENCH_SYSTEMS (space-separated subset of
# "direct haproxy nginx featherlb-proxy featherlb-proxy-js featherlb-xdp featherlb-xdp-dsr xdp-floor featherlb-proxy-pp2
# haproxy-2 nginx-2 featherlb-proxy-2 splice-relay"; featherlb-xdp-dsr is the xdp row with forwarding: dsr;
# featherlb-proxy-pp2 is the proxy with send_proxy: v2, short and keep-alive only; the -2 rows run two
# threads or processes: HAProxy nbthread 2, NGINX worker_processes 2, featherlb workers: 2; the others
# one; featherlb-proxy runs with its default kernel_relay (connections that moved BENCH_RELAY_AFTER,
# 65536, are relayed with splice(2) by a relay thread) and featherlb-proxy-js is the same binary with
# kernel_relay off, every byte through JavaScript; splice-relay is a reference, not a balancer: tools/splice_relay.c, a one-thread epoll relay in C
# that moves the bytes of established connections with splice(2) through a pipe, never through user
# space — the splice half of issue 13's question (sockmap or splice), measured like the others, idle
# memory included, where its RSS leaves out the pipes' kernel buffers), BENCH_XDP (the xdp rows: auto = measured if
# the binary starts in xdp mode, else marked unavailable; on = required; off = left out),
# BENCH_BACKEND_WORKERS (nginx workers per backend, 2), BENCH_OFFLOAD (on: veth defaults, TSO/GSO and
# checksum offload, 64 KiB super-frames; off: wire-like MTU frames with full checksums, slower for
# every row), FEATHERLB (binary, dist/featherlb); profile: BENCH_PROFILE_SECONDS (8),
# BENCH_PROFILE_WORKLOADS; profile and syscalls: BENCH_COMPARE_SYSTEMS (haproxy nginx featherlb-proxy).
#
# This file is the one entry point (arguments: parse_args); the rest is sourced from lib/: procs.sh
# (processes, cleanup), topology.sh (namespaces, backends), balancers.sh (the systems under test),
# measure.sh (the loads and what they cost), rows.sh (the result rows: JSON lines written by jq).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${BENCH_OUT:-$ROOT/build/bench}
RUN=$OUT/run
RESULTS=$OUT/results.jsonl # per command, see parse_args
TOOL=$OUT/flbbtool
SPLICE_RELAY=$OUT/splice_relay
FLB=${FEATHERLB:-$ROOT/dist/featherlb}
REPS=${BENCH_REPS:-3}
DUR=${BENCH_DURATION:-5}
STREAM_SECS=${BENCH_STREAM_SECONDS:-10}
IDLE_WANT=${BENCH_IDLE_CONNS:-10000}
BACKEND_WORKERS=${BENCH_BACKEND_WORKERS:-2}
XDP=${BENCH_XDP:-auto}
RELAY_AFTER=${BENCH_RELAY_AFTER:-65536}
ALL_SYSTEMS="direct haproxy nginx featherlb-proxy featherlb-proxy-js featherlb-xdp featherlb-xdp-dsr xdp-floor featherlb-proxy-pp2 haproxy-2 nginx-2 featherlb-proxy-2 splice-relay"
SYSTEMS=${BENCH_SYSTEMS:-$ALL_SYSTEMS}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
OFFLOAD=${BENCH_OFFLOAD:-on} # on: veth defaults (TSO/GSO, checksum offload); off: wire-like MTU-sized frames

NS_SW=flbb-sw NS_CLI=flbb-cli NS_LB=flbb-lb
BE_NS=(flbb-be1 flbb-be2 flbb-be3)
CLI_IP=10.88.0.1 VIP=10.88.0.2
declare -A VIPS=([haproxy]=10.88.0.2 [nginx]=10.88.0.3 [featherlb-proxy]=10.88.0.4 [featherlb-xdp]=10.88.0.5 [xdp-floor]=10.88.0.6 [featherlb-proxy-pp2]=10.88.0.7 [featherlb-xdp-dsr]=10.88.0.8
  [haproxy-2]=10.88.0.20 [nginx-2]=10.88.0.21 [featherlb-proxy-2]=10.88.0.22 [splice-relay]=10.88.0.23 [featherlb-proxy-js]=10.88.0.24)
# featherlb-xdp-dsr: the LB's own address beside the VIP (the backends hold the VIP: see use_vip)
DSR_LB_IP=10.88.0.9
DSR_STREAM_PORT=9001
BE_IPS=(10.88.0.11 10.88.0.12 10.88.0.13)
HZ=$(getconf CLK_TCK)

IDLE_CONNS=100 # run and profile size it to the fd limit (bring_up)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for lib in procs topology balancers rows measure; do source "$HERE/lib/$lib.sh"; done

# ---------------------------------------------------------------- the commands
# run (make bench): every system in turn inside each repetition, so noise hits them all.
cmd_run() {
  local rep sys
  for rep in $(seq "$REPS"); do
    for sys in $SYSTEMS; do
      log "=== rep $rep/$REPS: $sys"
      run_system "$rep" "$sys"
    done
  done
}

# profile (make bench-profile): featherlb proxy from source under Bun's CPU profiler (JS view) and perf
# (kernel/native view), one balancer process per workload so each profile shows one workload; then
# compare_syscalls. Output: build/bench/profile/.
cmd_profile() {
  local dir=$OUT/profile secs=${BENCH_PROFILE_SECONDS:-8} bun=$ROOT/node_modules/.bin/bun wl pid ppid
  rm -rf "$dir" && mkdir -p "$dir"
  use_vip featherlb-proxy
  sed -e "s|@MODE@|proxy|g" -e "s|@VIP@|$VIP|g" -e "s|@WORKERS@|1|g" -e "s|@SEND_PROXY@|off|g" -e "s|@HTTP_PORT@|80|g" -e "s|@FORWARDING@|nat|g" -e "s|@STREAM_PORT@|9000|g" \
    -e "s|@KERNEL_RELAY@|true|g" -e "s|@RELAY_AFTER@|$RELAY_AFTER|g" "$HERE/conf/featherlb.yaml" >"$RUN/profile.yaml"
  for wl in ${BENCH_PROFILE_WORKLOADS:-idle short keepalive bulk stream}; do
    log "profile: $wl (${secs} s)"
    ip netns exec "$NS_LB" "$bun" --cpu-prof --cpu-prof-md --cpu-prof-dir="$dir/$wl" \
      "$ROOT/src/main.ts" "$RUN/profile.yaml" >"$RUN/lb.log" 2>&1 &
    pid=$!
    track "$pid"
    wait_port "$VIP" 8080 "$pid" || die "featherlb (bun src/main.ts) did not start: $(tail -n 3 "$RUN/lb.log")"
    LB_WORK_PID=$pid
    warm_up "$VIP:8080"
    perf record -q -F 499 -g -p "$pid" -o "$dir/$wl.perf.data" -- sleep "$secs" >/dev/null 2>&1 &
    ppid=$!
    case $wl in
      idle) idle_test 0 profile ;;
      short) DUR=$secs wrk_cmd "$VIP:8080" / 64 -H "Connection: close"; measure 0 profile short "${CMD[@]}" ;;
      keepalive) DUR=$secs wrk_cmd "$VIP:8080" / 64; measure 0 profile keepalive "${CMD[@]}" ;;
      bulk) DUR=$secs wrk_cmd "$VIP:8080" /1m.bin 8; measure 0 profile bulk "${CMD[@]}" ;;
      stream) measure 0 profile stream ip netns exec "$NS_CLI" timeout $((STREAM_SECS + 15)) "$TOOL" stream "$VIP" 9000 ;;
    esac
    wait "$ppid" 2>/dev/null || true
    stop_pid "$pid"
    perf report -i "$dir/$wl.perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12 >"$dir/$wl.perf-dso.txt" || true
    perf report -i "$dir/$wl.perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 >"$dir/$wl.perf-sym.txt" || true
  done
  compare_syscalls "$dir"
  log "profiles in $dir (*.md: Bun CPU profile; *.perf-*.txt: perf by library and symbol; syscalls.md)"
}

# lab SYSTEM SECONDS: one balancer left running for manual measurements (perf, bpftool, wrk from
# flbb-cli), then removed like a run.
cmd_lab() {
  local sys=$1 secs=$2 target=${BE_IPS[0]}:80
  if [[ $sys != direct ]]; then
    use_vip "$sys"
    start_lb "$sys" || die "$sys did not start: $LB_ERR"
    target=$VIP:8080
  fi
  warm_up "$target"
  log "lab: $sys at $target (pid ${LB_WORK_PID:-none}); e.g. ip netns exec $NS_CLI wrk -c64 -d5s http://$target/"
  log "lab: removed in $secs s (or on Ctrl-C / SIGTERM to this script, pid $$)"
  sleep "$secs" &
  track $!
  wait $! || true
}

# scale (part of make bench): test/bench/scale.ts builds its own namespaces (flbs…) and farm of backends.
cmd_scale() {
  local modes=proxy,xdp
  [[ $XDP == off ]] && modes=proxy
  FEATHERLB=$FLB "$ROOT/node_modules/.bin/bun" "$HERE/scale.ts" --modes "$modes" --sizes "${BENCH_SCALE_SIZES:-10,100,1000,10000}" --out "$RESULTS"
}

# ---------------------------------------------------------------- main
usage() { sed -n '/^#   run.sh \[run\]/,/^#$/{/^#$/d;s/^# //;p}' "${BASH_SOURCE[0]}"; }

parse_args() { # parse_args ARGS...: COMMAND (+ LAB_SYSTEM, LAB_SECONDS) and RESULTS; exits on a bad call
  COMMAND=${1:-run}
  (($# == 0)) || shift
  case $COMMAND in
    run | profile | syscalls | scale) (($# == 0)) || { usage >&2; die "run.sh $COMMAND takes no arguments"; } ;;
    lab)
      (($# <= 2)) || { usage >&2; die "run.sh lab takes SYSTEM and SECONDS"; }
      LAB_SYSTEM=${1:-featherlb-xdp} LAB_SECONDS=${2:-600}
      [[ " $ALL_SYSTEMS " == *" $LAB_SYSTEM "* ]] || die "unknown system $LAB_SYSTEM (one of: $ALL_SYSTEMS)"
      [[ $LAB_SECONDS =~ ^[0-9]+$ ]] || die "SECONDS must be a whole number, got $LAB_SECONDS"
      ;;
    -h | --help | help) usage; exit 0 ;;
    *) usage >&2; die "unknown command $COMMAND" ;;
  esac
  case $COMMAND in
    run) RESULTS=$OUT/results.jsonl ;;
    profile | syscalls) RESULTS=$OUT/profile-results.jsonl ;;
    lab) RESULTS=$OUT/lab-results.jsonl ;;
    scale) RESULTS=$OUT/scale.jsonl ;;
  esac
  local knob var
  for knob in REPS:BENCH_REPS DUR:BENCH_DURATION STREAM_SECS:BENCH_STREAM_SECONDS IDLE_WANT:BENCH_IDLE_CONNS \
    BACKEND_WORKERS:BENCH_BACKEND_WORKERS WRK_THREADS:BENCH_WRK_THREADS; do
    var=${knob%%:*}
    [[ ${!var} =~ ^[0-9]+$ ]] || die "${knob#*:} must be a whole number, got ${!var}"
  done
  case $XDP in
    off) SYSTEMS=${SYSTEMS//featherlb-xdp-dsr/} SYSTEMS=${SYSTEMS//featherlb-xdp/} SYSTEMS=${SYSTEMS//xdp-floor/} ;;
    on | auto) ;;
    *) die "BENCH_XDP must be auto, on or off" ;;
  esac
}

# What every command does first: output folders, leftovers of a killed earlier run stopped, the
# bench's own client/server tool built, the fd limit raised, the topology and the backends.
bring_up() {
  mkdir -p "$OUT" "$RUN"
  stop_stale
  : >"$PIDFILE"
  gcc -O2 -Wall -o "$TOOL" "$HERE/tools/flbbtool.c"
  gcc -O2 -Wall -o "$SPLICE_RELAY" "$HERE/tools/splice_relay.c"
  # Idle connections: the balancer needs two descriptors per proxied connection. Raise the soft
  # limit to the hard one; where the hard limit cannot be raised (no CAP_SYS_RESOURCE), hold fewer.
  ulimit -Hn 1048576 2>/dev/null || true
  ulimit -n "$(ulimit -Hn)"
  FD_LIMIT=$(ulimit -n)
  if [[ $COMMAND == run || $COMMAND == profile ]]; then
    IDLE_CONNS=$IDLE_WANT
    ((2 * IDLE_CONNS + 200 > FD_LIMIT)) && IDLE_CONNS=$(((FD_LIMIT - 200) / 2 / 100 * 100))
    log "fd limit $FD_LIMIT: $IDLE_CONNS idle connections"
  fi
  setup_topology
  start_backends
}

main() {
  parse_args "$@"
  [[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
  command -v jq >/dev/null || die "needs jq for its result rows (make bench-deps installs it)"
  if [[ $COMMAND == scale ]]; then
    mkdir -p "$OUT"
    cmd_scale
    log "raw results: $RESULTS"
    return
  fi
  trap cleanup EXIT
  trap 'log interrupted; exit 130' INT TERM
  local t_start; t_start=$(now_ms)
  bring_up
  : >"$RESULTS"
  case $COMMAND in
    run)
      json_meta "$FD_LIMIT"
      cmd_run
      json_end $((($(now_ms) - t_start) / 1000))
      log "raw results: $RESULTS"
      ;;
    profile) cmd_profile ;;
    syscalls) mkdir -p "$OUT/profile" && compare_syscalls "$OUT/profile" ;;
    lab) cmd_lab "$LAB_SYSTEM" "$LAB_SECONDS" ;;
  esac
}

main "$@"
