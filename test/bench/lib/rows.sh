# test/bench/lib/rows.sh: the result rows, JSON lines written by jq.
# Sourced by run.sh (the only entry point), which sets the variables it uses.
#
# One writer per kind of line in $RESULTS, in the shapes test/bench/report.ts reads (rows.test.ts runs
# these writers and report.ts on what they wrote). jq does all quoting: text goes in with --arg,
# numbers and JSON with --argjson, and a number that is missing or garbled is written as null instead
# of breaking the line.

jnum() { [[ $1 =~ ^-?[0-9]+([.][0-9]+)?$ ]] && echo "$1" || echo null; } # jnum VALUE: VALUE if a number, else null

version_of() { # version_of PROGRAM: its version as the meta line records it ("" when it is missing)
  command -v "$1" >/dev/null || return 0
  case $1 in
    haproxy) haproxy -v 2>/dev/null | head -1 | awk '{ print $3 }' ;;
    nginx) nginx -v 2>&1 | sed 's|.*/||' ;;
    wrk) wrk -v 2>&1 | head -1 | awk '{ print $2 }' ;;
  esac
}

json_meta() { # json_meta FD_LIMIT: the run's conditions, the first line
  local featherlb=missing
  [[ -x $FLB ]] && featherlb=$(stat -c %y "$FLB" | cut -c1-19)
  jq -nc --arg date "$(date -u +%FT%TZ)" --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)" \
    --arg kernel "$(uname -r)" --argjson cpus "$(nproc)" --arg loadavg "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson reps "$(jnum "$REPS")" --argjson dur "$(jnum "$DUR")" --argjson stream "$(jnum "$STREAM_SECS")" \
    --argjson idle "$(jnum "$IDLE_CONNS")" --argjson fds "$(jnum "$1")" --argjson workers "$(jnum "$BACKEND_WORKERS")" \
    --argjson threads "$(jnum "$WRK_THREADS")" --arg offload "$OFFLOAD" --arg xdp "$XDP" \
    --arg haproxy "$(version_of haproxy)" --arg nginx "$(version_of nginx)" --arg wrk "$(version_of wrk)" --arg featherlb "$featherlb" \
    '{meta: {date: $date, commit: $commit, kernel: $kernel, cpus: $cpus, loadavg_start: $loadavg, reps: $reps,
      duration_s: $dur, stream_s: $stream, idle_conns: $idle, fd_limit: $fds, backend_workers: $workers,
      wrk_threads: $threads, offload: $offload, xdp: $xdp, haproxy: $haproxy, nginx: $nginx, wrk: $wrk,
      featherlb: $featherlb}}' >>"$RESULTS"
}

json_row() { # json_row REP SYSTEM WORKLOAD LB_CPU_PCT MACHINE_BUSY_PCT WALL_MS RESULT_JSON: one measured load
  jq -nc --argjson rep "$(jnum "$1")" --arg system "$2" --arg workload "$3" --argjson cpu "$(jnum "$4")" \
    --argjson busy "$(jnum "$5")" --argjson wall "$(jnum "$6")" --argjson result "$7" \
    '{rep: $rep, system: $system, workload: $workload, lb_cpu_pct: $cpu, machine_busy_pct: $busy, wall_ms: $wall, result: $result}' >>"$RESULTS"
}

# json_idle REP SYSTEM CONNS CONNECT_S LISTEN_OVERFLOWS SYN_RETRANS BACKEND_ESTABLISHED RSS_BEFORE_KIB RSS_HELD_KIB SETUP_MS:
# IDLE_CONNS connections held through the balancer, and its memory before and with them
json_idle() {
  jq -nc --argjson rep "$(jnum "$1")" --arg system "$2" --argjson conns "$(jnum "$3")" --argjson connect_s "$(jnum "$4")" \
    --argjson overflows "$(jnum "$5")" --argjson syn "$(jnum "$6")" --argjson est "$(jnum "$7")" \
    --argjson rss0 "$(jnum "$8")" --argjson rss1 "$(jnum "$9")" --argjson setup "$(jnum "${10}")" \
    '{rep: $rep, system: $system, workload: "idle", result: {conns: $conns, connect_s: $connect_s,
      listen_overflows: $overflows, syn_retrans: $syn, backend_established: $est, rss_before_kib: $rss0,
      rss_held_kib: $rss1, setup_ms: $setup}}' >>"$RESULTS"
}

json_unavailable() { # json_unavailable REP SYSTEM REASON: a system that could not run
  jq -nc --argjson rep "$(jnum "$1")" --arg system "$2" --arg reason "$3" \
    '{rep: $rep, system: $system, workload: "unavailable", result: {reason: $reason}}' >>"$RESULTS"
}

json_end() { # json_end ELAPSED_S: the last line
  jq -nc --arg loadavg "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson elapsed "$(jnum "$1")" \
    '{end: {loadavg_end: $loadavg, elapsed_s: $elapsed}}' >>"$RESULTS"
}

# result_json <OUTPUT: the JSON result a load printed — wrk's FLBB_WRK line (tools/report.lua) or
# flbbtool's one-line object — checked by jq; {"failed":true} when there is none.
result_json() {
  local out json
  out=$(cat)
  json=$(grep -o 'FLBB_WRK {.*}' <<<"$out" | head -n 1 | sed 's/^FLBB_WRK //' | jq -ce . 2>/dev/null) ||
    json=$(grep -x '{.*}' <<<"$out" | head -n 1 | jq -ce . 2>/dev/null) ||
    json='{"failed":true}'
  echo "$json"
}
