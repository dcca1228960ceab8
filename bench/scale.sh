#!/usr/bin/env bash
# Does queuectl stay fast as the store grows? Builds a SQLite store with FINISHED
# completed jobs and PENDING pending ones, then measures, in the same run:
#   - claim+complete throughput (bench --mode noop) on that store vs an empty one;
#   - `status` and `list --state pending --limit 100` latency (median of 21 calls);
#   - RSS of `worker start --count 8` while it runs real jobs;
#   - `stats` (default --since 1h, and --since 8d over the whole history) and
#     `metrics` latency (median of 21; `metrics` also its first call, which rolls
#     up the whole history once), on SQLite and, with QUEUECTL_SCALE_POSTGRES_URL
#     set, on a PostgreSQL schema filled the same way with SQL (dropped afterwards).
# The finished history is made by marking enqueued jobs completed with python's
# sqlite3, each with one attempt, their ends spread evenly over the last 7 days
# (one in 200 a failed attempt); running a million real jobs would only measure sh.
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
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
n = int(sys.argv[2])
now = int(time.time() * 1000)
step = 7 * 86400 * 1000 // max(n, 1)
# Job `seq` ended `seq * step` ms ago, after running 1-50 ms, picked up 5 ms after
# it was created.
db.execute("UPDATE jobs SET state = 'completed', attempts = 1, lease_token = 1, "
           "finished_at = ?1 - seq * ?2, started_at = ?1 - seq * ?2 - (1 + seq % 50), "
           "created_at = ?1 - seq * ?2 - (6 + seq % 50), next_run_at = ?1 - seq * ?2, "
           "updated_at = ?1 - seq * ?2 WHERE seq <= ?3", (now, step, n))
# Attempts are keyed by their job's row (`pos`, schema version 7).
db.execute("INSERT INTO attempts (job_pos, job_id, lease_token, worker_id, started_at, "
           "finished_at, outcome, exit_code) SELECT pos, id, 1, 'w', started_at, finished_at, "
           "CASE WHEN seq % 200 = 0 THEN 'failed' ELSE 'succeeded' END, "
           "CASE WHEN seq % 200 = 0 THEN 1 ELSE 0 END FROM jobs WHERE seq <= ?", (n,))
db.commit()
db.close()
EOF
"$QUEUECTL" --db "$big" status

status_ms=$(median_ms "$QUEUECTL" --db "$big" status)
list_ms=$(median_ms "$QUEUECTL" --db "$big" list --state pending --limit 100)
"$QUEUECTL" --db "$WORK/empty.db" init >/dev/null  # reading commands create no store
empty_ms=$(median_ms "$QUEUECTL" --db "$WORK/empty.db" status)
once_ms() { # COMMAND...: wall time of one run, in ms
  python3 -c 'import subprocess, sys, time; t = time.perf_counter(); subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); print(f"{(time.perf_counter() - t) * 1000:.0f}")' "$@"
}
metrics_first_ms=$(once_ms "$QUEUECTL" --db "$big" metrics)
stats_ms=$(median_ms "$QUEUECTL" --db "$big" stats)
stats_all_ms=$(median_ms "$QUEUECTL" --db "$big" stats --since 8d)
metrics_ms=$(median_ms "$QUEUECTL" --db "$big" metrics)
pg_rows=""
if [ -n "${QUEUECTL_SCALE_POSTGRES_URL:-}" ]; then
  schema="scale_$$"
  sep='?'; case "$QUEUECTL_SCALE_POSTGRES_URL" in *\?*) sep='&';; esac
  pg="$QUEUECTL_SCALE_POSTGRES_URL${sep}schema=$schema"
  # Creates the schema (`init` rolls nothing up: `status` would move the
  # completed-jobs mark to now, and the history inserted below would land behind it).
  "$QUEUECTL" --db "$pg" init > /dev/null
  psql -q -v ON_ERROR_STOP=1 "$QUEUECTL_SCALE_POSTGRES_URL" <<SQL
SET search_path = $schema;
INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, created_at, updated_at,
    next_run_at, lease_token, started_at, finished_at)
  SELECT 'j' || g, 'true', '/', 'completed', 1, 3, f - 6 - g % 50, f, f, 1, f - 1 - g % 50, f
  FROM (SELECT g, now_ms() - g * (604800000 / $FINISHED) AS f
        FROM generate_series(1, $FINISHED) g) s;
INSERT INTO jobs (id, command, cwd, state, max_retries, created_at, updated_at, next_run_at)
  SELECT 'p' || g, 'true', '/', 'pending', 3, now_ms(), now_ms(), now_ms()
  FROM generate_series(1, $PENDING) g;
INSERT INTO attempts (job_seq, job_id, lease_token, worker_id, started_at, finished_at,
    outcome, exit_code)
  SELECT seq, id, 1, 'w', started_at, finished_at,
         CASE WHEN seq % 200 = 0 THEN 'failed' ELSE 'succeeded' END,
         CASE WHEN seq % 200 = 0 THEN 1 ELSE 0 END
  FROM jobs WHERE state = 'completed';
VACUUM ANALYZE jobs;
VACUUM ANALYZE attempts;
SQL
  pg_metrics_first_ms=$(once_ms "$QUEUECTL" --db "$pg" metrics)
  pg_stats_ms=$(median_ms "$QUEUECTL" --db "$pg" stats)
  pg_stats_all_ms=$(median_ms "$QUEUECTL" --db "$pg" stats --since 8d)
  pg_metrics_ms=$(median_ms "$QUEUECTL" --db "$pg" metrics)
  psql -q "$QUEUECTL_SCALE_POSTGRES_URL" -c "DROP SCHEMA $schema CASCADE"
  pg_rows="| PostgreSQL \`stats\` (last hour; median of 21) | $pg_stats_ms ms |
| PostgreSQL \`stats --since 8d\` (all $FINISHED attempts) | $pg_stats_all_ms ms |
| PostgreSQL \`metrics\` (median of 21) / first call, rolling up the history | $pg_metrics_ms / $pg_metrics_first_ms ms |"
fi

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
| \`stats\` (last hour, ~6,000 attempts; median of 21) | $stats_ms ms |
| \`stats --since 8d\` (all $FINISHED attempts) | $stats_all_ms ms |
| \`metrics\` (median of 21) / first call, rolling up the history | $metrics_ms / $metrics_first_ms ms |
${pg_rows}
| claim+complete, big store (noop, 100 workers) | $big_rate jobs/s |
| claim+complete, empty store, same job count | $empty_rate jobs/s |
| per-job cost, big / empty | $(python3 -c "import sys; print(f'{float(sys.argv[2])/float(sys.argv[1]):.2f}x')" "$big_rate" "$empty_rate") |
| \`worker start --count 8\` RSS: first / last / max sample (20,000 jobs) | $((first / 1024)) / $((last / 1024)) / $((max / 1024)) MiB |
EOF
