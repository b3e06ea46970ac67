# test/bench/lib/measure.sh: the loads, what they cost the balancer, and the per-request comparison.
# Sourced by run.sh (the only entry point), which sets the variables it uses.

cpu_ticks() { # cpu_ticks "PID...": utime+stime of the processes (all their threads), in clock ticks (0 for none)
  local pid n=0 rest
  for pid in $1; do
    [[ -r /proc/$pid/stat ]] || continue
    # the command name (field 2) may hold spaces: cut after the last ')'
    rest=$(sed 's/.*) //' "/proc/$pid/stat")
    n=$((n + $(awk '{ print $12 + $13 }' <<<"$rest")))
  done
  echo "$n"
}

rss_kib() { # rss_kib "PID...": resident set of the processes, summed (NGINX's workers share some pages: counted twice)
  local pid n=0
  for pid in $1; do n=$((n + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0))); done
  echo "$n"
}

machine_busy() { # "busy total" jiffies, all CPUs
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

now_ms() { date +%s%3N; }

# measure REP SYS WORKLOAD CMD...: runs CMD (bounded), records its JSON with the LB's CPU use
measure() {
  local rep=$1 sys=$2 wl=$3; shift 3
  local c0 c1 m0 m1 t0 t1 json
  c0=$(cpu_ticks "$LB_WORK_PID"); read -r m0 mt0 < <(machine_busy); t0=$(now_ms)
  run_bg "$RUN/measure.out" "$@" || log "$sys/$wl: command exited non-zero"
  t1=$(now_ms); c1=$(cpu_ticks "$LB_WORK_PID"); read -r m1 mt1 < <(machine_busy)
  json=$(result_json <"$RUN/measure.out")
  [[ $json != '{"failed":true}' ]] || log "$sys/$wl: no result: $(tail -n 2 "$RUN/measure.out" | tr '\n' ' ')"
  local lb_cpu=null
  [[ -n $LB_WORK_PID ]] && lb_cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", d / hz / (ms / 1000) * 100 }')
  local busy; busy=$(awk -v b=$((m1 - m0)) -v t=$((mt1 - mt0)) 'BEGIN { printf "%.1f", t ? b / t * 100 : 0 }')
  json_row "$rep" "$sys" "$wl" "$lb_cpu" "$busy" $((t1 - t0)) "$json"
  log "$sys/$wl rep $rep: $json lb_cpu=$lb_cpu% machine=$busy%"
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

backend_established() { # established connections to the backends' port 80 (8080: dsr), all three summed
  local ns n=0 c
  for ns in "${BE_NS[@]}"; do
    c=$(nsx "$ns" ss -Htn state established '( sport = :80 or sport = :8080 )' | wc -l)
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
  json_idle "$rep" "$sys" "$held" "$connect_s" "$ovf" "$syn" "$est" "$rss0" "$rss1" $(($(now_ms) - t0))
  log "$sys/idle rep $rep: held=$held in ${connect_s}s (listen overflows $ovf, SYN retransmits $syn) backend_established=$est rss ${rss0} -> ${rss1} KiB"
  stop_pid "$hpid"
  sleep 2 # let the balancer see 2 x $IDLE_CONNS closes before the next workload
}

run_system() { # run_system REP SYS
  local rep=$1 sys=$2
  [[ $sys == direct ]] || use_vip "$sys"
  local target=$VIP:8080 shost=$VIP sport=9000
  if [[ $sys == direct ]]; then target=${BE_IPS[0]}:80 shost=${BE_IPS[0]}; fi
  [[ $sys == featherlb-xdp-dsr ]] && sport=$DSR_STREAM_PORT
  if ! start_lb "$sys"; then
    [[ $sys == featherlb-xdp* && $XDP == on ]] && die "BENCH_XDP=on but the xdp row did not start: $LB_ERR"
    log "$sys: unavailable: $LB_ERR"
    json_unavailable "$rep" "$sys" "$LB_ERR"
    return 0
  fi
  # The send_proxy row answers one question, what the header costs per connection: short and
  # keep-alive only (bulk, stream and idle connections carry the same one header per connection).
  # The two-worker rows measure what a second worker adds, which needs many connections: no idle
  # test (per-connection memory does not depend on the worker that holds it) and no single stream
  # (one connection is relayed by one worker). That keeps `make bench` near its time budget.
  local pp=0 two=0
  [[ $sys == featherlb-proxy-pp2 ]] && pp=1
  [[ $sys == *-2 ]] && two=1
  ((pp || two)) || [[ $sys == direct || $sys == xdp-floor ]] || idle_test "$rep" "$sys"
  warm_up "$target"
  wrk_cmd "$target" / 64 -H "Connection: close"
  measure "$rep" "$sys" short "${CMD[@]}"
  sleep 1
  wrk_cmd "$target" / 64
  measure "$rep" "$sys" keepalive "${CMD[@]}"
  sleep 1
  if ((pp)); then stop_lb; return 0; fi
  wrk_cmd "$target" /1m.bin 8
  measure "$rep" "$sys" bulk "${CMD[@]}"
  sleep 1
  if ((two)); then stop_lb; return 0; fi
  measure "$rep" "$sys" stream ip netns exec "$NS_CLI" timeout $((STREAM_SECS + 15)) "$TOOL" stream "$shost" "$sport"
  stop_lb
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
      perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "${LB_WORK_PID// /,}" -o "$RUN/cmp.stat" -- sleep "$secs" >/dev/null 2>&1 || true
      wait "$wpid" || true
      local rps clk cs sc top
      rps=$(result_json <"$RUN/cmp.wrk" | jq -r 'if .requests and .duration_us then .requests / (.duration_us / 1e6) | floor else 0 end')
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
      top=$(timeout 10 perf trace -s -p "${LB_WORK_PID// /,}" -- sleep 2 2>&1 | tee "$dir/trace-$sys-$wl.txt" | awk '$2 ~ /^[0-9]+$/ && $1 ~ /^[a-z_0-9]+$/ { n[$1] += $2; t += $2 } END { for (k in n) printf "%d %s\n", n[k], k; }' | sort -rn | head -5 | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $2 }')
      wait "$wpid" || true
      awk -v s="$sys" -v w="$wl" -v rps="$rps" -v clk="$clk" -v cs="$cs" -v sc="$sc" -v secs="$secs" -v top="$top" 'BEGIN {
        req = rps * secs; if (req <= 0) req = 1
        printf "| %s | %s | %d | %.1f | %.2f | %.2f | %s |\n", s, w, rps, clk * 1000 / req, sc / req, cs / req, top }' >>"$out"
    done
    stop_lb
  done
  cat "$out" >&2
}
