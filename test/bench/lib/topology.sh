# test/bench/lib/topology.sh: the namespaces, the bridge and the backends (nginx + flbbtool serve).
# Sourced by run.sh (the only entry point), which sets the variables it uses.

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
    # The dsr row's stream server: every address (the VIP on lo included), its own port.
    ip netns exec "$ns" "$TOOL" serve 0.0.0.0 "$DSR_STREAM_PORT" "$STREAM_SECS" &
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
