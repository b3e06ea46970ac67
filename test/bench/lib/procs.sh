# test/bench/lib/procs.sh: the processes the bench starts, tracked by PID and start time; cleanup on exit.
# Sourced by run.sh (the only entry point), which sets the variables it uses.

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

# Loads run as external commands in the background, tracked, while the script `wait`s: a signal
# interrupts `wait` at once (it would wait for a foreground command), and cleanup stops the load.
run_bg() { # run_bg OUTFILE CMD...: run CMD, wait for it, return its status
  local f=$1 p; shift
  "$@" >"$f" 2>&1 &
  p=$!
  track "$p"
  wait "$p"
}
