#!/usr/bin/env bash
# featherlb vs HAProxy vs NGINX vs a direct connection, in network namespaces. Run by `make bench`
# (root). Every load is bounded in time; every namespace and process this script creates is removed on
# exit, Ctrl-C included. Raw results: build/bench/results.jsonl; report: docs/benchmarks.md + .svg.
#
# Topology (all names start with flbb, subnet 10.88.0.0/24, the root namespace is not touched):
#
#   flbb-cli 10.88.0.1 ─┐
#   flbb-lb  10.88.0.2 ─┤  bridge flbb-br in namespace flbb-sw; each balancer gets its own address
#                       │  (.2-.5, one at a time on the interface), see use_vip
#   flbb-be1 10.88.0.11 ┤  backends: nginx :80 (static files) + flbbtool serve :9000 (10 s streams)
#   flbb-be2 10.88.0.12 ┤
#   flbb-be3 10.88.0.13 ┘
#
# Knobs (environment): BENCH_REPS (3), BENCH_DURATION (5 s per wrk run), BENCH_STREAM_SECONDS (10),
# BENCH_IDLE_CONNS (10000, capped by the fd limit), BENCH_SYSTEMS (space-separated subset of
# "direct haproxy nginx featherlb-proxy featherlb-xdp xdp-floor"), BENCH_XDP (the xdp rows: auto = measured if
# the binary starts in xdp mode, else marked unavailable; on = required; off = left out),
# BENCH_BACKEND_WORKERS (nginx workers per backend, 2), BENCH_OFFLOAD (on: veth defaults, TSO/GSO and
# checksum offload, 64 KiB super-frames; off: wire-like MTU frames with full checksums, slower for
# every row), FEATHERLB (binary, dist/featherlb).
# `run.sh profile`: featherlb proxy from source under Bun's CPU profiler and perf (make bench-profile).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${BENCH_OUT:-$ROOT/build/bench}
RUN=$OUT/run
RESULTS=$OUT/results.jsonl
TOOL=$OUT/flbbtool
FLB=${FEATHERLB:-$ROOT/dist/featherlb}
REPS=${BENCH_REPS:-3}
DUR=${BENCH_DURATION:-5}
STREAM_SECS=${BENCH_STREAM_SECONDS:-10}
IDLE_WANT=${BENCH_IDLE_CONNS:-10000}
BACKEND_WORKERS=${BENCH_BACKEND_WORKERS:-2}
XDP=${BENCH_XDP:-auto}
SYSTEMS=${BENCH_SYSTEMS:-direct haproxy nginx featherlb-proxy featherlb-xdp xdp-floor}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
OFFLOAD=${BENCH_OFFLOAD:-on} # on: veth defaults (TSO/GSO, checksum offload); off: wire-like MTU-sized frames

NS_SW=flbb-sw NS_CLI=flbb-cli NS_LB=flbb-lb
BE_NS=(flbb-be1 flbb-be2 flbb-be3)
CLI_IP=10.88.0.1 VIP=10.88.0.2
declare -A VIPS=([haproxy]=10.88.0.2 [nginx]=10.88.0.3 [featherlb-proxy]=10.88.0.4 [featherlb-xdp]=10.88.0.5 [xdp-floor]=10.88.0.6)
BE_IPS=(10.88.0.11 10.88.0.12 10.88.0.13)
HZ=$(getconf CLK_TCK)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"

# ---------------------------------------------------------------- processes we start (by PID only)
PIDS=()
PIDFILE=$RUN/pids   # "pid start-time" lines, so a later run can clean up after a killed one

# A process's identity against PID reuse: its start time (field 22 of /proc/PID/stat), which, unlike
# its command line, survives exec (ip netns exec → nginx) and title rewrites (nginx: master process).
cmd_id() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $20 }'; }

track() { # track PID: remember a process we started (with its start time, against PID reuse)
  local id; id=$(cmd_id "$1")
  PIDS+=("$1:$id")
  echo "$1 $id" >>"$PIDFILE"
}

stop_pid() { # stop_pid PID: TERM, up to 3 s grace, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_stale() { # processes of an earlier run that died without cleaning up (same PID and command line)
  [[ -f $PIDFILE ]] || return 0
  local pid id
  while read -r pid id; do
    [[ -n $id && $(cmd_id "$pid") == "$id" ]] && { log "stopping stale pid $pid"; kill -KILL "$pid" 2>/dev/null || true; }
  done <"$PIDFILE"
  rm -f "$PIDFILE"
}

del_netns() {
  local ns
  for ns in "$NS_CLI" "$NS_LB" "${BE_NS[@]}" "$NS_SW"; do
    ip netns del "$ns" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$? entry
  trap - EXIT INT TERM
  for entry in "${PIDS[@]}"; do
    [[ $(cmd_id "${entry%%:*}") == "${entry#*:}" ]] && stop_pid "${entry%%:*}"
  done
  rm -f "$PIDFILE"
  del_netns
  exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# ---------------------------------------------------------------- topology
# (background starts call `ip netns exec` directly, so that $! is the PID of the process itself)
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

tune_ns() { # sysctls for a load test (per namespace)
  nsx "$1" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 \
    net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 net.ipv4.tcp_max_tw_buckets=1000000 \
    >/dev/null
}

add_host() { # add_host NS IP: a namespace with interface flbb0 plugged into the bridge
  local ns=$1 ip=$2 port=${1#flbb-}
  ip netns add "$ns"
  ip -n "$ns" link add flbb0 type veth peer name "flbb-$port" netns "$NS_SW"
  ip -n "$NS_SW" link set "flbb-$port" master flbb-br up
  ip -n "$ns" addr add "$ip/24" dev flbb0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set flbb0 up
  tune_ns "$ns"
}

setup_topology() {
  del_netns
  ip netns add "$NS_SW"
  ip -n "$NS_SW" link add flbb-br type bridge forward_delay 0
  ip -n "$NS_SW" link set flbb-br up
  nsx "$NS_SW" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
  add_host "$NS_CLI" "$CLI_IP"
  add_host "$NS_LB" "$VIP"
  local i ns
  for i in 0 1 2; do add_host "${BE_NS[$i]}" "${BE_IPS[$i]}"; done
  if [[ $OFFLOAD == off ]]; then
    # Wire-like frames: without TX checksum offload a veth gets no TSO, so every sender hands the
    # bridge MTU-sized frames with complete checksums, as a real NIC puts them on the wire (default
    # veths pass 64 KiB GSO "super-frames" with partial checksums, which no XDP program ever sees
    # from a real NIC).
    for ns in "$NS_CLI" "$NS_LB" "${BE_NS[@]}"; do nsx "$ns" ethtool -K flbb0 tx off >/dev/null; done
  fi
}

# ---------------------------------------------------------------- backends
start_backends() {
  mkdir -p "$RUN/www"
  printf 'featherlb bench: a small response body, 64 bytes long, padded ....\n' >"$RUN/www/index.html"
  [[ -f $RUN/www/1m.bin ]] || head -c 1048576 /dev/urandom >"$RUN/www/1m.bin"
  local i ns ip name pid
  for i in 0 1 2; do
    ns=${BE_NS[$i]} ip=${BE_IPS[$i]} name=${BE_NS[$i]}
    mkdir -p "$RUN/$name.tmp"
    sed -e "s|@RUN@|$RUN|g" -e "s|@NAME@|$name|g" -e "s|@IP@|$ip|g" -e "s|@WORKERS@|$BACKEND_WORKERS|g" \
      "$HERE/conf/nginx-backend.conf" >"$RUN/$name.nginx.conf"
    ip netns exec "$ns" nginx -p "$RUN/" -e "$RUN/$name.error.log" -c "$RUN/$name.nginx.conf" &
    track $!
    ip netns exec "$ns" "$TOOL" serve "$ip" 9000 "$STREAM_SECS" &
    track $!
  done
  for i in 0 1 2; do
    wait_port "${BE_IPS[$i]}" 80 || die "backend nginx on ${BE_IPS[$i]} did not start (see $RUN/${BE_NS[$i]}.error.log)"
    wait_port "${BE_IPS[$i]}" 9000 || die "stream server on ${BE_IPS[$i]} did not start"
  done
}

wait_port() { # wait_port IP PORT [PID]: up to 10 s for a TCP connect from the client namespace
  local i
  for i in $(seq 50); do
    nsx "$NS_CLI" timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
    [[ -z ${3:-} ]] || kill -0 "$3" 2>/dev/null || return 1 # the server exited: no point waiting
    sleep 0.2
  done
  return 1
}

# ---------------------------------------------------------------- the balancers
# Each balancer has its own address, the only one on the LB interface while it runs. Why: the
# backends keep TIME_WAIT entries keyed by the balancer's address and port for 60 s. A kernel proxy's
# SYN that reuses such a port carries TCP timestamps from the same per-address clock, so the backend
# accepts it; the XDP plane rewrites timestamps on its own clock, so after a kernel proxy on the same
# address its SYNs were dropped by PAWS (hundreds of 1 s retransmits). Separate addresses keep one
# system's leftovers from penalising the next; a system meets only its own, as in production.
use_vip() { # use_vip SYSTEM: make that system's address the LB interface's only address
  VIP=${VIPS[$1]:-10.88.0.2}
  ip -n "$NS_LB" addr flush dev flbb0
  ip -n "$NS_LB" addr add "$VIP/24" dev flbb0
}

LB_PID=""      # the process we start
LB_WORK_PID="" # the process doing the work (NGINX: its single worker), measured for CPU and memory
LB_ERR=""

start_lb() { # start_lb SYSTEM: returns 1 (with LB_ERR set) if it does not come up
  local sys=$1 cfg
  LB_PID="" LB_WORK_PID="" LB_ERR=""
  case $sys in
    direct) return 0 ;;
    haproxy)
      sed -e "s|@RUN@|$RUN|g" -e "s|@VIP@|$VIP|g" -e "s|@MAXCONN@|$((IDLE_CONNS + 20))|g" "$HERE/conf/haproxy.cfg" >"$RUN/haproxy.cfg"
      ip netns exec "$NS_LB" haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/lb.log" 2>&1 &
      ;;
    nginx)
      sed -e "s|@RUN@|$RUN|g" -e "s|@VIP@|$VIP|g" "$HERE/conf/nginx-lb.conf" >"$RUN/nginx-lb.conf"
      ip netns exec "$NS_LB" nginx -p "$RUN/" -e "$RUN/nginx-lb.error.log" -c "$RUN/nginx-lb.conf" >"$RUN/lb.log" 2>&1 &
      ;;
    xdp-floor) # a reference, not a balancer process: see tools/xdp_floor.bpf.c
      attach_floor || return 1
      wait_port "$VIP" 8080 || { LB_ERR="the XDP floor program did not forward $VIP:8080"; detach_floor; return 1; }
      return 0
      ;;
    featherlb-proxy | featherlb-xdp)
      [[ -x $FLB ]] || { LB_ERR="$FLB not built"; return 1; }
      sed -e "s|@MODE@|${sys#featherlb-}|g" -e "s|@VIP@|$VIP|g" "$HERE/conf/featherlb.yaml" >"$RUN/$sys.yaml"
      ip netns exec "$NS_LB" "$FLB" "$RUN/$sys.yaml" >"$RUN/lb.log" 2>&1 &
      ;;
    *) die "unknown system $sys" ;;
  esac
  LB_PID=$!
  track "$LB_PID"
  if ! wait_port "$VIP" 8080 "$LB_PID" || ! kill -0 "$LB_PID" 2>/dev/null; then
    LB_ERR=$(grep -hv '^\s*$' "$RUN/lb.log" "$RUN/nginx-lb.error.log" 2>/dev/null | tail -n 3 | tr '\n"' ' ' | cut -c1-300)
    [[ -n $LB_ERR ]] || LB_ERR="did not accept connections on $VIP:8080 within 10 s"
    stop_pid "$LB_PID"
    return 1
  fi
  LB_WORK_PID=$LB_PID
  if [[ $sys == nginx ]]; then
    local i kids
    for i in $(seq 20); do
      kids=$(cat "/proc/$LB_PID/task/$LB_PID/children" 2>/dev/null || true)
      [[ -n $kids ]] && break
      sleep 0.1
    done
    LB_WORK_PID=${kids%% *}
  fi
  return 0
}

stop_lb() { [[ -z $LB_PID ]] || stop_pid "$LB_PID"; LB_PID="" LB_WORK_PID=""; detach_floor; }

# The XDP floor: compiled for this topology's addresses and MACs, attached in generic mode (what
# featherlb's auto picks on a veth), so the two XDP rows differ only in what the program does.
ns_mac() { ip -n "$1" link show flbb0 | awk '/link\/ether/ { print "0x" $2 }' | sed 's/:/,0x/g'; }
ip_num() { local IFS=.; set -- $1; echo $((($1 << 24) | ($2 << 16) | ($3 << 8) | $4)); }
FLOOR_OBJ="" # compiled once per run: the namespaces, and so the MACs, live as long as the run
attach_floor() {
  local obj=$RUN/xdp_floor.o
  if [[ -z $FLOOR_OBJ ]] && ! clang -O2 -g -Wall -target bpf -I"/usr/include/$(uname -m)-linux-gnu" \
    -DVIP="$(ip_num "$VIP")" -DCLIENT_IP="$(ip_num "$CLI_IP")" \
    -DBE0="$(ip_num "${BE_IPS[0]}")" -DBE1="$(ip_num "${BE_IPS[1]}")" -DBE2="$(ip_num "${BE_IPS[2]}")" \
    -DLB_MAC="$(ns_mac "$NS_LB")" -DCLIENT_MAC="$(ns_mac "$NS_CLI")" -DBE0_MAC="$(ns_mac "${BE_NS[0]}")" \
    -DBE1_MAC="$(ns_mac "${BE_NS[1]}")" -DBE2_MAC="$(ns_mac "${BE_NS[2]}")" \
    -c "$HERE/tools/xdp_floor.bpf.c" -o "$obj" 2>"$RUN/lb.log"; then
    LB_ERR="could not compile tools/xdp_floor.bpf.c: $(head -c 200 "$RUN/lb.log")"
    return 1
  fi
  FLOOR_OBJ=$obj
  if ! ip -n "$NS_LB" link set dev flbb0 xdpgeneric obj "$obj" sec xdp 2>"$RUN/lb.log"; then
    LB_ERR="could not attach the XDP floor: $(head -c 200 "$RUN/lb.log")"
    return 1
  fi
}
detach_floor() { ip -n "$NS_LB" link set dev flbb0 xdpgeneric off 2>/dev/null || true; }

# ---------------------------------------------------------------- measurements
cpu_ticks() { # utime+stime of a process, in clock ticks (0 when there is none)
  [[ -n $1 && -r /proc/$1/stat ]] || { echo 0; return; }
  # the command name (field 2) may hold spaces: cut after the last ')'
  local rest; rest=$(sed 's/.*) //' "/proc/$1/stat")
  awk '{ print $12 + $13 }' <<<"$rest"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

machine_busy() { # "busy total" jiffies, all CPUs
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

now_ms() { date +%s%3N; }

emit() { echo "$1" >>"$RESULTS"; }

# measure REP SYS WORKLOAD CMD...: runs CMD (bounded), records its JSON with the LB's CPU use
measure() {
  local rep=$1 sys=$2 wl=$3; shift 3
  local c0 c1 m0 m1 t0 t1 out json
  c0=$(cpu_ticks "$LB_WORK_PID"); read -r m0 mt0 < <(machine_busy); t0=$(now_ms)
  run_bg "$RUN/measure.out" "$@" || log "$sys/$wl: command exited non-zero"
  out=$(cat "$RUN/measure.out")
  t1=$(now_ms); c1=$(cpu_ticks "$LB_WORK_PID"); read -r m1 mt1 < <(machine_busy)
  json=$(grep -o 'FLBB_WRK {.*}' <<<"$out" | sed 's/^FLBB_WRK //' || true)
  [[ -n $json ]] || json=$(grep -o '^{.*}$' <<<"$out" || true)
  [[ -n $json ]] || { log "$sys/$wl: no result: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; json='{"failed":true}'; }
  local lb_cpu=null
  [[ -n $LB_WORK_PID ]] && lb_cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", d / hz / (ms / 1000) * 100 }')
  local busy; busy=$(awk -v b=$((m1 - m0)) -v t=$((mt1 - mt0)) 'BEGIN { printf "%.1f", t ? b / t * 100 : 0 }')
  emit "{\"rep\":$rep,\"system\":\"$sys\",\"workload\":\"$wl\",\"lb_cpu_pct\":$lb_cpu,\"machine_busy_pct\":$busy,\"wall_ms\":$((t1 - t0)),\"result\":$json}"
  log "$sys/$wl rep $rep: $json lb_cpu=$lb_cpu% machine=$busy%"
}

# Loads run as external commands in the background, tracked, while the script `wait`s: a signal
# interrupts `wait` at once (it would wait for a foreground command), and cleanup stops the load.
run_bg() { # run_bg OUTFILE CMD...: run CMD, wait for it, return its status
  local f=$1 p; shift
  "$@" >"$f" 2>&1 &
  p=$!
  track "$p"
  wait "$p"
}

wrk_cmd() { # wrk_cmd HOST:PORT PATH CONNS [wrk args]: CMD=(one bounded wrk run from the client namespace)
  local target=$1 path=$2 conns=$3; shift 3
  local threads=$WRK_THREADS
  ((conns < threads)) && threads=$conns
  CMD=(ip netns exec "$NS_CLI" timeout $((DUR + 20)) wrk -t"$threads" -c"$conns" -d"${DUR}s" --timeout 2s
    -s "$HERE/tools/report.lua" "$@" "http://$target$path")
}

warm_up() { # warm_up HOST:PORT: 1 s of keep-alive load, not recorded (JIT, pools, ARP)
  DUR=1 wrk_cmd "$1" / 64
  run_bg /dev/null "${CMD[@]}" || true
}

backend_established() { # established connections to the backends' port 80, all three summed
  local ns n=0 c
  for ns in "${BE_NS[@]}"; do
    c=$(nsx "$ns" ss -Htn state established '( sport = :80 )' | wc -l)
    n=$((n + c))
  done
  echo "$n"
}

counter() { nsx "$1" nstat -asz "$2" 2>/dev/null | awk -v k="$2" '$1 == k { print $2 }'; } # counter NS NAME

idle_test() { # idle_test REP SYS: hold IDLE_CONNS connections through the LB, record its memory
  local rep=$1 sys=$2 base rss0 rss1 i ready="" est=0 t0 hpid ovf0 syn0
  base=$(backend_established)
  ovf0=$(counter "$NS_LB" TcpExtListenOverflows) syn0=$(counter "$NS_CLI" TcpExtTCPSynRetrans)
  rss0=$(rss_kib "$LB_WORK_PID")
  t0=$(now_ms)
  ip netns exec "$NS_CLI" "$TOOL" hold "$VIP" 8080 "$IDLE_CONNS" 60 >"$RUN/hold.out" 2>&1 &
  hpid=$!
  track "$hpid"
  for i in $(seq 600); do # up to 60 s
    ready=$(grep -o '^READY [0-9]* [0-9.]*' "$RUN/hold.out" || true)
    [[ -n $ready ]] && break
    kill -0 "$hpid" 2>/dev/null || break
    sleep 0.1
  done
  for i in $(seq 150); do # up to 15 s for the balancer to open every backend connection
    est=$(($(backend_established) - base))
    ((est >= IDLE_CONNS)) && break
    sleep 0.1
  done
  sleep 1 # let the balancer settle (lazy allocations, GC)
  rss1=$(rss_kib "$LB_WORK_PID")
  local held connect_s
  read -r _ held connect_s <<<"${ready:-READY 0 0}"
  local ovf=$(($(counter "$NS_LB" TcpExtListenOverflows) - ovf0)) syn=$(($(counter "$NS_CLI" TcpExtTCPSynRetrans) - syn0))
  emit "{\"rep\":$rep,\"system\":\"$sys\",\"workload\":\"idle\",\"result\":{\"conns\":$held,\"connect_s\":$connect_s,\"listen_overflows\":$ovf,\"syn_retrans\":$syn,\"backend_established\":$est,\"rss_before_kib\":$rss0,\"rss_held_kib\":$rss1,\"setup_ms\":$(($(now_ms) - t0))}}"
  log "$sys/idle rep $rep: held=$held in ${connect_s}s (listen overflows $ovf, SYN retransmits $syn) backend_established=$est rss ${rss0} -> ${rss1} KiB"
  stop_pid "$hpid"
  sleep 2 # let the balancer see 2 x $IDLE_CONNS closes before the next workload
}

run_system() { # run_system REP SYS
  local rep=$1 sys=$2
  [[ $sys == direct ]] || use_vip "$sys"
  local target=$VIP:8080 shost=$VIP
  if [[ $sys == direct ]]; then target=${BE_IPS[0]}:80 shost=${BE_IPS[0]}; fi
  if ! start_lb "$sys"; then
    [[ $sys == featherlb-xdp && $XDP == on ]] && die "BENCH_XDP=on but the xdp row did not start: $LB_ERR"
    log "$sys: unavailable: $LB_ERR"
    emit "{\"rep\":$rep,\"system\":\"$sys\",\"workload\":\"unavailable\",\"result\":{\"reason\":\"$LB_ERR\"}}"
    return 0
  fi
  [[ $sys == direct || $sys == xdp-floor ]] || idle_test "$rep" "$sys"
  warm_up "$target"
  wrk_cmd "$target" / 64 -H "Connection: close"
  measure "$rep" "$sys" short "${CMD[@]}"
  sleep 1
  wrk_cmd "$target" / 64
  measure "$rep" "$sys" keepalive "${CMD[@]}"
  sleep 1
  wrk_cmd "$target" /1m.bin 8
  measure "$rep" "$sys" bulk "${CMD[@]}"
  sleep 1
  measure "$rep" "$sys" stream ip netns exec "$NS_CLI" timeout $((STREAM_SECS + 15)) "$TOOL" stream "$shost" 9000
  stop_lb
}

# ---------------------------------------------------------------- main
# What every entry point (run, profile, syscalls, lab) does first: output folders, leftovers of a
# killed earlier run stopped, and the bench's own client/server tool built.
prepare_run() {
  mkdir -p "$OUT" "$RUN"
  stop_stale
  : >"$PIDFILE"
  gcc -O2 -Wall -o "$TOOL" "$HERE/tools/flbbtool.c"
}

main() {
  local t_start; t_start=$(now_ms)
  prepare_run

  # Idle connections: the balancer needs two descriptors per proxied connection. Raise the soft
  # limit to the hard one; where the hard limit cannot be raised (no CAP_SYS_RESOURCE), hold fewer.
  ulimit -Hn 1048576 2>/dev/null || true
  ulimit -n "$(ulimit -Hn)"
  local fdmax; fdmax=$(ulimit -n)
  IDLE_CONNS=$IDLE_WANT
  ((2 * IDLE_CONNS + 200 > fdmax)) && IDLE_CONNS=$(((fdmax - 200) / 2 / 100 * 100))
  log "fd limit $fdmax: $IDLE_CONNS idle connections"

  case $XDP in
    off) SYSTEMS=${SYSTEMS//featherlb-xdp/} SYSTEMS=${SYSTEMS//xdp-floor/} ;;
    on | auto) ;;
    *) die "BENCH_XDP must be auto, on or off" ;;
  esac

  setup_topology
  start_backends
  : >"$RESULTS"
  emit "{\"meta\":{\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)\",\"kernel\":\"$(uname -r)\",\"cpus\":$(nproc),\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"reps\":$REPS,\"duration_s\":$DUR,\"stream_s\":$STREAM_SECS,\"idle_conns\":$IDLE_CONNS,\"fd_limit\":$fdmax,\"backend_workers\":$BACKEND_WORKERS,\"wrk_threads\":$WRK_THREADS,\"offload\":\"$OFFLOAD\",\"xdp\":\"$XDP\",\"haproxy\":\"$(haproxy -v | head -1 | awk '{print $3}')\",\"nginx\":\"$(nginx -v 2>&1 | sed 's|.*/||')\",\"wrk\":\"$(wrk -v 2>&1 | head -1 | awk '{print $2}')\",\"featherlb\":\"$( [[ -x $FLB ]] && stat -c %y "$FLB" | cut -c1-19 || echo missing)\"}}"

  local rep sys
  for rep in $(seq "$REPS"); do # systems interleaved inside each repetition: noise hits them all
    for sys in $SYSTEMS; do
      log "=== rep $rep/$REPS: $sys"
      run_system "$rep" "$sys"
    done
  done
  emit "{\"end\":{\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"elapsed_s\":$((($(now_ms) - t_start) / 1000))}}"
  log "raw results: $RESULTS"
}

# ---------------------------------------------------------------- profile (make bench-profile)
# featherlb proxy from source under Bun's CPU profiler (JS view) and perf (kernel/native view), one
# balancer process per workload so each profile shows one workload. Output: build/bench/profile/.
profile_main() {
  local dir=$OUT/profile secs=${BENCH_PROFILE_SECONDS:-8} bun=$ROOT/node_modules/.bin/bun wl pid ppid
  prepare_run
  ulimit -n "$(ulimit -Hn)"
  rm -rf "$dir" && mkdir -p "$dir"
  setup_topology
  start_backends
  use_vip featherlb-proxy
  sed -e "s|@MODE@|proxy|g" -e "s|@VIP@|$VIP|g" "$HERE/conf/featherlb.yaml" >"$RUN/profile.yaml"
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
      idle) IDLE_CONNS=$(((${BENCH_IDLE_CONNS:-10000} < ($(ulimit -n) - 200) / 2) ? ${BENCH_IDLE_CONNS:-10000} : ($(ulimit -n) - 200) / 2 / 100 * 100))
        idle_test 0 profile ;;
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

# Per request (or per MiB), what each balancer process costs the machine: CPU time, system calls,
# context switches (perf stat over the middle of a wrk run), and which system calls (perf trace -s).
compare_syscalls() {
  local dir=$1 sys wl wpid secs=4 out=$1/syscalls.md
  {
    echo "| balancer | workload | req/s | CPU µs / req | syscalls / req | ctx switches / req | top syscalls (count share) |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | --- |"
  } >"$out"
  for sys in ${BENCH_COMPARE_SYSTEMS:-haproxy nginx featherlb-proxy}; do
    use_vip "$sys"
    start_lb "$sys" || { log "$sys: $LB_ERR"; continue; }
    warm_up "$VIP:8080"
    for wl in short keepalive bulk; do
      local args=(/ 64)
      [[ $wl == short ]] && args=(/ 64 -H "Connection: close")
      [[ $wl == bulk ]] && args=(/1m.bin 8)
      DUR=$((secs + 2)) wrk_cmd "$VIP:8080" "${args[@]}"
      "${CMD[@]}" >"$RUN/cmp.wrk" 2>&1 &
      wpid=$!
      track "$wpid"
      sleep 1
      perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "$LB_WORK_PID" -o "$RUN/cmp.stat" -- sleep "$secs" >/dev/null 2>&1 || true
      wait "$wpid" || true
      local json rps clk cs sc top
      json=$(grep -o 'FLBB_WRK {.*}' "$RUN/cmp.wrk" | sed 's/^FLBB_WRK //')
      rps=$(awk -v j="$json" 'BEGIN { match(j, /"requests":[0-9]+/); r = substr(j, RSTART + 11, RLENGTH - 11); match(j, /"duration_us":[0-9]+/); d = substr(j, RSTART + 14, RLENGTH - 14); printf "%d", r / (d / 1e6) }')
      clk=$(awk -F, '$3 == "task-clock" { print $1 }' "$RUN/cmp.stat")
      cs=$(awk -F, '$3 == "context-switches" { print $1 }' "$RUN/cmp.stat")
      sc=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$RUN/cmp.stat")
      # which calls: a short perf trace summary in a second run window would perturb the numbers
      # above, so it runs separately, on a 2 s slice
      DUR=4 wrk_cmd "$VIP:8080" "${args[@]}"
      "${CMD[@]}" >/dev/null 2>&1 &
      wpid=$!
      track "$wpid"
      sleep 1
      top=$(timeout 10 perf trace -s -p "$LB_WORK_PID" -- sleep 2 2>&1 | tee "$dir/trace-$sys-$wl.txt" | awk '$2 ~ /^[0-9]+$/ && $1 ~ /^[a-z_0-9]+$/ { n[$1] += $2; t += $2 } END { for (k in n) printf "%d %s\n", n[k], k; }' | sort -rn | head -5 | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $2 }')
      wait "$wpid" || true
      awk -v s="$sys" -v w="$wl" -v rps="$rps" -v clk="$clk" -v cs="$cs" -v sc="$sc" -v secs="$secs" -v top="$top" 'BEGIN {
        req = rps * secs; if (req <= 0) req = 1
        printf "| %s | %s | %d | %.1f | %.2f | %.2f | %s |\n", s, w, rps, clk * 1000 / req, sc / req, cs / req, top }' >>"$out"
    done
    stop_lb
  done
  cat "$out" >&2
}

# `run.sh lab SYSTEM [SECONDS]`: the topology, the backends and one balancer, left running for SECONDS
# (default 600) for manual measurements (perf, bpftool, wrk from flbb-cli), then removed like a run.
lab_main() {
  local sys=${1:-featherlb-xdp} secs=${2:-600}
  prepare_run; ulimit -n "$(ulimit -Hn)"; IDLE_CONNS=100
  setup_topology; start_backends
  local target=${BE_IPS[0]}:80
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

if [[ ${1:-} == lab ]]; then
  RESULTS=$OUT/lab-results.jsonl
  lab_main "${@:2}"
elif [[ ${1:-} == profile || ${1:-} == syscalls ]]; then
  RESULTS=$OUT/profile-results.jsonl
  : >"$RESULTS"
  if [[ $1 == profile ]]; then
    profile_main
  else # only the per-request syscall/CPU comparison
    prepare_run; mkdir -p "$OUT/profile"; ulimit -n "$(ulimit -Hn)"; IDLE_CONNS=100
    setup_topology; start_backends; compare_syscalls "$OUT/profile"
  fi
else
  main "$@"
fi
