#!/usr/bin/env bash
# hostprof demo: the embedded store + a demo workload + the agent, then the UI URL.
#
#   scripts/setup.sh      # once, on a fresh machine
#   scripts/demo.sh       # Ctrl-C stops everything it started
#
# What runs (all from this checkout's .venv, state in .demo/ unless HOSTPROF_DEMO_DIR is set):
#   1. hostprof store serve         on 127.0.0.1:${HOSTPROF_DEMO_PORT:-4040}
#   2. python -m hostprof.demo_workload   (handle_request -> parse/compute_prices/render)
#   3. hostprof agent run           profiling the workload, pushing 10 s windows to the store
# A flamegraph of the workload shows in the UI within ~20 s. Re-running the script stops the
# previous demo's processes first (only those it recorded), so it is safe to run again.
# Needs root (or CAP_SYS_PTRACE) for the agent to read the workload's memory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${HOSTPROF_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
PORT=${HOSTPROF_DEMO_PORT:-4040}
DIR=${HOSTPROF_DEMO_DIR:-$ROOT/.demo}
URL="http://127.0.0.1:$PORT"
UI="$URL/#service=hostprof-demo&type=process_cpu:cpu:nanoseconds:cpu:nanoseconds&range=5m"

say() { printf '[demo] %s\n' "$*"; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no $PY: run scripts/setup.sh first"
"$PY" -c 'import hostprof.native._core' 2>/dev/null || die "the native core is not built: run scripts/setup.sh"
if [ "$(id -u)" != 0 ]; then
  say "warning: not root; the agent needs CAP_SYS_PTRACE to read the workload (try sudo)"
fi
mkdir -p "$DIR"

# --- idempotence: stop what a previous run of this script started (recorded pids only) -----
stop_recorded() {
  local f pid
  for f in "$DIR"/agent.pid "$DIR"/workload.pid "$DIR"/store.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    # Only a process whose command line is still ours (pids get reused).
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q hostprof; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}
stop_recorded

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  die "port $PORT is in use by another program: set HOSTPROF_DEMO_PORT=4041 (for example)"
fi

cat >"$DIR/agent.toml" <<EOF
# Written by scripts/demo.sh.
[store]
url = "$URL"
[agent]
host_cpu = "off"
spool_dir = "$DIR/spool"
status_socket = "$DIR/agent.sock"
metrics_addr = "127.0.0.1:0"
[[rule]]
name = "demo"
cmdline = "hostprof[.]demo_workload"
service_name = "hostprof-demo"
[rule.collectors]
python = { rate_hz = 100 }
[[rule]]
# the demo profiles only its own workload
action = "exclude"
python_only = false
EOF

PIDS=()
cleanup() {
  trap - INT TERM EXIT
  say "stopping"
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$DIR"/*.pid
}
trap cleanup INT TERM EXIT

"$PY" -m hostprof store serve --listen "127.0.0.1:$PORT" --data "$DIR/store" >"$DIR/store.log" 2>&1 &
PIDS+=($!); echo $! >"$DIR/store.pid"
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "${PIDS[0]}" 2>/dev/null || { cat "$DIR/store.log" >&2; die "the store did not start"; }
  sleep 0.1
done
say "store     $URL  (data $DIR/store, log $DIR/store.log)"

"$PY" -m hostprof.demo_workload >"$DIR/workload.log" 2>&1 &
PIDS+=($!); echo $! >"$DIR/workload.pid"
say "workload  pid $! (python -m hostprof.demo_workload)"

"$PY" -m hostprof agent run --config "$DIR/agent.toml" >"$DIR/agent.log" 2>&1 &
PIDS+=($!); echo $! >"$DIR/agent.pid"
say "agent     pid $! (log $DIR/agent.log; status: $VENV/bin/hostprof agent status --socket $DIR/agent.sock)"

say "waiting for the first window (windows are 10 s, aligned to the clock)..."
t0=$(date +%s)
has_data() {
  # This agent has pushed at least once, and the store lists the demo service.
  "$PY" - "$DIR/agent.sock" "$URL/api/services" <<'PYEOF' 2>/dev/null
import sys, urllib.request
from hostprof.control import read_status
if not read_status(sys.argv[1], timeout=2).get("push", {}).get("last_push_ok_ns"):
    sys.exit(1)
with urllib.request.urlopen(sys.argv[2], timeout=2) as r:
    sys.exit(0 if b"hostprof-demo" in r.read() else 1)
PYEOF
}
until has_data; do
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { tail -5 "$DIR"/*.log >&2; die "a demo process exited"; }
  done
  [ $(( $(date +%s) - t0 )) -lt 60 ] || { tail -5 "$DIR/agent.log" >&2; die "no data after 60 s"; }
  sleep 1
done
say "flamegraph ready after $(( $(date +%s) - t0 )) s:"
echo
echo "    $UI"
echo
say "Ctrl-C to stop"
wait "${PIDS[@]}"
