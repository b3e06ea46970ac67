# test/bench/lib/balancers.sh: starting and stopping each system under test on its own address.
# Sourced by run.sh (the only entry point), which sets the variables it uses.

# Each balancer has its own address, the only one on the LB interface while it runs. Why: the
# backends keep TIME_WAIT entries keyed by the balancer's address and port for 60 s. A kernel proxy's
# SYN that reuses such a port carries TCP timestamps from the same per-address clock, so the backend
# accepts it; the XDP plane rewrites timestamps on its own clock, so after a kernel proxy on the same
# address its SYNs were dropped by PAWS (hundreds of 1 s retransmits). Separate addresses keep one
# system's leftovers from penalising the next; a system meets only its own, as in production.
# The dsr row is the exception: its backends hold the VIP (on lo), so the LB's own packets (its ARP
# requests) come from an address of its own, added first (the primary), the VIP beside it.
use_vip() { # use_vip SYSTEM: make that system's address the LB interface's only address
  VIP=${VIPS[$1]:-10.88.0.2}
  ip -n "$NS_LB" addr flush dev flbb0
  if [[ $1 == featherlb-xdp-dsr ]]; then
    ip -n "$NS_LB" addr add "$DSR_LB_IP/24" dev flbb0
    ip -n "$NS_LB" addr add "$VIP/32" dev flbb0
  else
    ip -n "$NS_LB" addr add "$VIP/24" dev flbb0
  fi
}

# dsr_backends add|del: the dsr row's backends hold its VIP while it runs, prepared by the documented
# steps (featherlb dsr-backend --apply: the VIP on lo, arp_ignore=1, arp_announce=2; the ARP settings
# stay, harmless to the other rows: the backends keep answering for their own addresses).
dsr_backends() {
  local ns
  for ns in "${BE_NS[@]}"; do
    if [[ $1 == add ]]; then
      ip netns exec "$ns" "$FLB" dsr-backend "$VIP" --apply >"$RUN/dsr-backend.log" 2>&1 || return 1
    else
      ip -n "$ns" addr del "$VIP/32" dev lo 2>/dev/null || true
    fi
  done
}

LB_PID=""      # the process we start
LB_WORK_PID="" # the processes doing the work (NGINX: its workers), space-separated, measured for CPU and memory
LB_ERR=""

# start_lb SYSTEM: returns 1 (with LB_ERR set) if it does not come up. A SYSTEM ending in -2 is the same
# balancer on two threads or processes: HAProxy nbthread 2, NGINX worker_processes 2, featherlb workers: 2.
start_lb() {
  local sys=$1 cfg n=1
  [[ $sys == *-2 ]] && n=2
  LB_PID="" LB_WORK_PID="" LB_ERR=""
  case ${sys%-2} in
    direct) return 0 ;;
    haproxy)
      sed -e "s|@RUN@|$RUN|g" -e "s|@VIP@|$VIP|g" -e "s|@MAXCONN@|$((IDLE_CONNS + 20))|g" -e "s|@THREADS@|$n|g" "$HERE/conf/haproxy.cfg" >"$RUN/haproxy.cfg"
      ip netns exec "$NS_LB" haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/lb.log" 2>&1 &
      ;;
    nginx)
      sed -e "s|@RUN@|$RUN|g" -e "s|@VIP@|$VIP|g" -e "s|@WORKERS@|$n|g" "$HERE/conf/nginx-lb.conf" >"$RUN/nginx-lb.conf"
      ip netns exec "$NS_LB" nginx -p "$RUN/" -e "$RUN/nginx-lb.error.log" -c "$RUN/nginx-lb.conf" >"$RUN/lb.log" 2>&1 &
      ;;
    xdp-floor) # a reference, not a balancer process: see tools/xdp_floor.bpf.c
      attach_floor || return 1
      wait_port "$VIP" 8080 || { LB_ERR="the XDP floor program did not forward $VIP:8080"; detach_floor; return 1; }
      return 0
      ;;
    splice-relay) # a reference, not a balancer: see tools/splice_relay.c; the two services of conf/featherlb.yaml
      local be http="" stream=""
      for be in "${BE_IPS[@]}"; do http+=",$be:80" stream+=",$be:9000"; done
      ip netns exec "$NS_LB" "$SPLICE_RELAY" -l "$VIP:8080=${http#,}" -l "$VIP:9000=${stream#,}" >"$RUN/lb.log" 2>&1 &
      ;;
    featherlb-proxy | featherlb-xdp | featherlb-proxy-pp2 | featherlb-xdp-dsr | featherlb-proxy-js)
      [[ -x $FLB ]] || { LB_ERR="$FLB not built"; return 1; }
      local mode=${sys%-2} send=off port=80 forwarding=nat sport=9000 krelay=true
      mode=${mode#featherlb-}
      [[ $sys == featherlb-proxy-pp2 ]] && mode=proxy send=v2 port=81
      [[ $sys == featherlb-proxy-js ]] && mode=proxy krelay=false
      # dsr translates no ports: the backends' nginx also listens on 8080 and a second stream server on
      # 9001, on every address (the VIP included); see topology.sh.
      if [[ $sys == featherlb-xdp-dsr ]]; then
        mode=xdp forwarding=dsr port=8080 sport=$DSR_STREAM_PORT
        dsr_backends add || { LB_ERR="featherlb dsr-backend --apply failed: $(tail -n 1 "$RUN/dsr-backend.log")"; return 1; }
      fi
      sed -e "s|@MODE@|$mode|g" -e "s|@VIP@|$VIP|g" -e "s|@SEND_PROXY@|$send|g" -e "s|@HTTP_PORT@|$port|g" -e "s|@WORKERS@|$n|g" \
        -e "s|@FORWARDING@|$forwarding|g" -e "s|@STREAM_PORT@|$sport|g" -e "s|@KERNEL_RELAY@|$krelay|g" -e "s|@RELAY_AFTER@|$RELAY_AFTER|g" \
        "$HERE/conf/featherlb.yaml" >"$RUN/$sys.yaml"
      ip netns exec "$NS_LB" "$FLB" "$RUN/$sys.yaml" >"$RUN/lb.log" 2>&1 &
      ;;
    *) die "unknown system $sys" ;;
  esac
  LB_PID=$!
  track "$LB_PID"
  if ! wait_port "$VIP" 8080 "$LB_PID" || ! kill -0 "$LB_PID" 2>/dev/null; then
    LB_ERR=$(grep -hv '^\s*$' "$RUN/lb.log" "$RUN/nginx-lb.error.log" 2>/dev/null | tail -n 3 | tr '\n' ' ' | cut -c1-300)
    [[ -n $LB_ERR ]] || LB_ERR="did not accept connections on $VIP:8080 within 10 s"
    stop_pid "$LB_PID"
    return 1
  fi
  LB_WORK_PID=$LB_PID
  if [[ ${sys%-2} == nginx ]]; then
    local i kids
    for i in $(seq 20); do
      kids=$(cat "/proc/$LB_PID/task/$LB_PID/children" 2>/dev/null || true)
      (($(wc -w <<<"$kids") >= n)) && break
      sleep 0.1
    done
    LB_WORK_PID=$(xargs <<<"$kids")
  fi
  return 0
}

stop_lb() {
  [[ -z $LB_PID ]] || stop_pid "$LB_PID"
  LB_PID="" LB_WORK_PID=""
  detach_floor
  [[ $VIP != "${VIPS[featherlb-xdp-dsr]}" ]] || dsr_backends del
}

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
