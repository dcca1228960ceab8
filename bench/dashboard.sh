#!/usr/bin/env bash
# The dashboard under load (issue 13): with JOBS jobs in the store (90% completed,
# 3% dead, 7% pending, over four queues, each finished one with its attempt in the
# last hour), how long each page and API call takes (median of 11 curl calls), and
# whether a dashboard polled as one open overview and one open job list slow
# workers (5,000 `true` jobs through `worker start --burst --count 4`, alternately
# without and with the polling, 3 rounds).
#
# Usage: bench/dashboard.sh [JOBS]  (default 100000); with PG_URL set, also on that
# PostgreSQL database (in a scratch schema, dropped afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-100000}
QUEUECTL=${QUEUECTL:-target/release/queuectl}
[ -x "$QUEUECTL" ] || cargo build --release --quiet
QUEUECTL=$(realpath "$QUEUECTL")
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

python3 - "$JOBS" > "$WORK/jobs.jsonl" <<'EOF'
import datetime, json, random, sys
random.seed(1)
n = int(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
ts = lambda d: d.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'
for i in range(n):
    c = now - datetime.timedelta(minutes=55) + datetime.timedelta(milliseconds=i * 3_000_000 // n)
    f = c + datetime.timedelta(milliseconds=20)
    r = random.random()
    state = 'completed' if r < 0.9 else 'dead' if r < 0.93 else 'pending'
    done = state != 'pending'
    hist = [{"attempt_token": 1, "worker": "w-1", "started_at": ts(c), "finished_at": ts(f),
             "outcome": "succeeded" if state == 'completed' else "failed",
             "exit_code": 0 if state == 'completed' else 1, "error": None, "output_tail": "ok\n",
             "host": "h%d" % (i % 3), "pid": 1, "max_rss_kb": 1, "cpu_ms": 0, "output_total": 3}] if done else []
    print(json.dumps({"id": "load-%07d" % i, "command": "echo %d" % i, "cwd": "/tmp", "state": state,
        "attempts": int(done), "max_retries": 0 if state == 'dead' else 3, "interruptions": 0,
        "created_at": ts(c), "updated_at": ts(f if done else c), "next_run_at": ts(f if done else c),
        "exit_code": (0 if state == 'completed' else 1) if done else None,
        "last_error": "exit code 1" if state == 'dead' else None, "worker": "w-1" if done else None,
        "started_at": ts(c) if done else None, "finished_at": ts(f) if done else None,
        "lease_token": int(done), "priority": 0, "queue": ["default", "emails", "reports", "images"][i % 4],
        "run_at": None, "after": [], "unique_key": None, "env": None, "attempts_history": hist}))
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

measure() { # DB LABEL
  local db=$1 label=$2 port
  export QUEUECTL_DB=$db
  "$QUEUECTL" import "$WORK/jobs.jsonl" > /dev/null
  port=$(free_port)
  "$QUEUECTL" dashboard --listen "127.0.0.1:$port" 2>/dev/null & PIDS+=($!)
  local base="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf -o /dev/null "$base/api/v1/session" && break; sleep 0.1; done
  echo "== $label, $JOBS jobs: median ms of 11 calls"
  local mid=$((JOBS / 2))
  for path in / /app.js /api/v1/overview '/api/v1/overview?queues=0' /api/v1/throughput \
      '/api/v1/jobs?limit=50' "/api/v1/jobs?limit=50&offset=$mid" '/api/v1/jobs?state=completed&limit=50' \
      '/api/v1/jobs?state=pending&limit=50' '/api/v1/jobs?queue=emails&limit=50' \
      '/api/v1/jobs?prefix=load-00500&limit=50' /api/v1/dlq "/api/v1/jobs/load-$(printf %07d $mid)" \
      "/api/v1/jobs/load-$(printf %07d $mid)/output" /api/v1/queues /api/v1/workers /metrics; do
    for _ in $(seq 11); do curl -s -o /dev/null -w '%{time_total}\n' "$base$path"; done |
      sort -n | sed -n 6p | awk -v p="$path" '{printf "  %-50s %6.1f\n", p, $1 * 1000}'
  done
  seq 5000 | sed 's/.*/true/' > "$WORK/lines.txt"
  run() {
    "$QUEUECTL" enqueue --lines "$WORK/lines.txt" > /dev/null
    local s e; s=$(date +%s.%N); "$QUEUECTL" worker start --burst --count 4 2>/dev/null; e=$(date +%s.%N)
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$s" "$e"
  }
  poll() { local i=0; while true; do
    if ((i % 5 == 0)); then curl -s -o /dev/null "$base/api/v1/overview"; else curl -s -o /dev/null "$base/api/v1/overview?queues=0"; fi
    if ((i % 10 == 0)); then curl -s -o /dev/null "$base/api/v1/throughput"; fi
    curl -s -o /dev/null "$base/api/v1/jobs?limit=50"; i=$((i + 1)); sleep 1; done; }
  run > /dev/null
  echo "  5,000 jobs through 4 workers, seconds (without / with a polled dashboard):"
  for round in 1 2 3; do
    local a b pp; a=$(run); poll & pp=$!; b=$(run); kill $pp; wait $pp 2>/dev/null || true
    echo "    round $round: $a / $b"
  done
}

measure "$WORK/q.db" SQLite
if [ -n "${PG_URL:-}" ]; then
  schema="dash_bench_$$"
  measure "$PG_URL?schema=$schema" PostgreSQL
  psql "$PG_URL" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE" > /dev/null
fi
