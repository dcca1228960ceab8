#!/usr/bin/env bash
# Does queuectl stay fast as the store grows? Builds a SQLite store with FINISHED
# completed jobs and PENDING pending ones, then measures, in the same run:
#   - claim+complete throughput (bench --mode noop) on that store vs an empty one;
#   - `status` and `list --state pending --limit 100` latency (median of 21 calls);
#   - RSS of `worker start --count 8` while it runs real jobs.
# The finished history is made by marking enqueued jobs completed with python's
# sqlite3 (running a million real jobs would only measure sh).
#
# Usage: bench/scale.sh [FINISHED] [PENDING]   (defaults: 1000000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
FINISHED=${1:-1000000}
PENDING=${2:-100000}
QUEUECTL=${QUEUECTL:-target/release/queuectl}
[ -x "$QUEUECTL" ] || cargo build --release --quiet
QUEUECTL=$(realpath "$QUEUECTL")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

jsonl() { python3 -c "import sys; sys.stdout.write('{\"command\":\"true\"}\n' * int(sys.argv[1]))" "$1"; }
median_ms() { # COMMAND...: median wall time of 21 runs, in ms
  python3 - "$@" <<'EOF'
import statistics, subprocess, sys, time
times = []
for _ in range(21):
    t = time.perf_counter()
    subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times.append((time.perf_counter() - t) * 1000)
print(f"{statistics.median(times):.1f}")
EOF
}
throughput() { grep -E '^throughput' | awk '{print $2}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
big="$WORK/big.db"
jsonl $((FINISHED + PENDING)) > "$WORK/all.jsonl"
t0=$(date +%s.%N)
"$QUEUECTL" --db "$big" enqueue --file "$WORK/all.jsonl" > /dev/null
echo "enqueued $((FINISHED + PENDING)) jobs in $(python3 -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$t0") s"
python3 - "$big" "$FINISHED" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE jobs SET state = 'completed', attempts = 1, finished_at = updated_at WHERE seq <= ?", (int(sys.argv[2]),))
db.commit()
db.close()
EOF
"$QUEUECTL" --db "$big" status

status_ms=$(median_ms "$QUEUECTL" --db "$big" status)
list_ms=$(median_ms "$QUEUECTL" --db "$big" list --state pending --limit 100)
empty_ms=$(median_ms "$QUEUECTL" --db "$WORK/empty.db" status)

# Claim+complete: the big store's pending jobs against the same number on an empty store.
big_rate=$("$QUEUECTL" bench --mode noop --db "$big" --in-place --jobs 1 2>/dev/null | throughput)
empty_rate=$("$QUEUECTL" bench --mode noop --jobs "$PENDING" 2>/dev/null | throughput)

# Memory: 8 workers running 20,000 real jobs; RSS sampled every 0.5 s.
mem="$WORK/mem.db"
jsonl 20000 > "$WORK/mem.jsonl"
"$QUEUECTL" --db "$mem" enqueue --file "$WORK/mem.jsonl" > /dev/null
"$QUEUECTL" --db "$mem" worker start --count 8 --burst 2>/dev/null &
pid=$!
samples=()
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$rss" ] && samples+=("$rss")
  sleep 0.5
done
wait "$pid" || true
first=${samples[0]:-0}; last=${samples[-1]:-0}
max=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)

cat <<EOF

| measurement | value |
|---|---|
| \`status\`, $FINISHED completed + $PENDING pending (median of 21) | $status_ms ms |
| \`status\`, empty store (median of 21, process start included) | $empty_ms ms |
| \`list --state pending --limit 100\` (median of 21) | $list_ms ms |
| claim+complete, big store (noop, 100 workers) | $big_rate jobs/s |
| claim+complete, empty store, same job count | $empty_rate jobs/s |
| per-job cost, big / empty | $(python3 -c "import sys; print(f'{float(sys.argv[2])/float(sys.argv[1]):.2f}x')" "$big_rate" "$empty_rate") |
| \`worker start --count 8\` RSS: first / last / max sample (20,000 jobs) | $((first / 1024)) / $((last / 1024)) / $((max / 1024)) MiB |
EOF
