#!/usr/bin/env bash
# Side-by-side: the same `true` jobs through xargs -P (the operating system's limit),
# queuectl, task-spooler (tsp) and pueue, alternating tools within each round, then
# medians and ratios to the limit. Also: queuectl with 1 and 4 workers against
# xargs -P1/-P4, and the `queuectl enqueue` call against a hello-world Rust binary
# (bench/enqueue.sh, which measures that alone).
#
# Usage: bench/compare.sh [JOBS] [ROUNDS]      (defaults: 10000 jobs, 3 rounds)
# Env:   QUEUECTL (binary, default target/release/queuectl), PUEUE_JOBS (default 300:
#        pueue takes ~0.2 s per job, so it runs fewer jobs and is compared per job).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${1:-10000}
ROUNDS=${2:-3}
PUEUE_JOBS=${PUEUE_JOBS:-300}
QUEUECTL=${QUEUECTL:-target/release/queuectl}
[ -x "$QUEUECTL" ] || cargo build --release --quiet
QUEUECTL=$(realpath "$QUEUECTL")
WORK=$(mktemp -d)
trap 'cleanup' EXIT
cleanup() {
  [ -n "${PUEUED_PID:-}" ] && kill "$PUEUED_PID" 2>/dev/null || true
  [ -n "${TS_SOCKET:-}" ] && tsp -K >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# run_xargs and run_queuectl print "WALL_S CPU_S CONTEXT_SWITCHES" (bench/measure.py:
# the whole process tree, the jobs' own `sh` included, so the two tools compare).
run_xargs() { # PARALLEL JOBS
  bench/measure.py "seq $2 | xargs -P$1 -I{} sh -c true"
}

run_queuectl() { # WORKERS JOBS
  local db="$WORK/q-$RANDOM$RANDOM.db"
  python3 -c "import sys; sys.stdout.write('{\"command\":\"true\"}\n' * int(sys.argv[1]))" "$2" > "$WORK/jobs.jsonl"
  bench/measure.py "'$QUEUECTL' --db '$db' enqueue --file '$WORK/jobs.jsonl' >/dev/null &&
    '$QUEUECTL' --db '$db' worker start --count $1 --burst 2>/dev/null"
  rm -rf "$db" "$db"-* "$db.spool"
}

run_tsp() { # PARALLEL JOBS
  export TS_SOCKET="$WORK/tsp.socket" TS_MAXFINISHED=$(( $2 + 10 )) TMPDIR="$WORK"
  tsp -K >/dev/null 2>&1 || true
  tsp -S "$1" >/dev/null
  local t0 last; t0=$(now)
  for _ in $(seq "$2"); do last=$(tsp -n sh -c true); done
  tsp -w "$last" >/dev/null 2>&1 || true
  while [ -n "$(tsp -l | awk 'NR>1 && $2 != "finished"')" ]; do sleep 0.01; done
  elapsed "$t0" "$(now)"
  tsp -K >/dev/null 2>&1 || true
}

start_pueued() {
  export PUEUE_CONFIG_DIR="$WORK/pueue"
  mkdir -p "$PUEUE_CONFIG_DIR"
  cat > "$PUEUE_CONFIG_DIR/pueue.yml" <<EOF
shared:
  pueue_directory: $WORK/pueue/data
  use_unix_socket: true
  unix_socket_path: $WORK/pueue/pueue.socket
EOF
  pueued -c "$PUEUE_CONFIG_DIR/pueue.yml" >/dev/null 2>&1 &
  PUEUED_PID=$!
  for _ in $(seq 100); do pueue -c "$PUEUE_CONFIG_DIR/pueue.yml" status >/dev/null 2>&1 && return; sleep 0.1; done
  echo "pueued did not start" >&2
  return 1
}

run_pueue() { # PARALLEL JOBS
  local c=(-c "$PUEUE_CONFIG_DIR/pueue.yml")
  pueue "${c[@]}" reset --force >/dev/null 2>&1 || true
  pueue "${c[@]}" parallel "$1" >/dev/null
  local t0; t0=$(now)
  for _ in $(seq "$2"); do pueue "${c[@]}" add -- true >/dev/null; done
  pueue "${c[@]}" wait >/dev/null 2>&1
  elapsed "$t0" "$(now)"
}

have() { command -v "$1" >/dev/null 2>&1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "jobs: $JOBS x 'true', $ROUNDS rounds, tools alternating within each round"
tools="xargs queuectl"
have tsp && tools="$tools tsp" || echo "tsp not installed (apt-get install task-spooler): skipped"
if have pueue && have pueued; then tools="$tools pueue"; start_pueued; else echo "pueue not installed (cargo install pueue): skipped"; fi

declare -A results costs
for round in $(seq "$ROUNDS"); do
  for tool in $tools; do
    case $tool in
      xargs) m=$(run_xargs 2 "$JOBS"); t=${m%% *}; costs[$tool]+="${m#* }," ;;
      queuectl) m=$(run_queuectl 2 "$JOBS"); t=${m%% *}; costs[$tool]+="${m#* }," ;;
      tsp) t=$(run_tsp 2 "$JOBS") ;;
      pueue) t=$(run_pueue 2 "$PUEUE_JOBS") ;;
    esac
    results[$tool]+="$t "
    echo "round $round: $tool $t s" >&2
  done
done

rate() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.0f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}')" "$1" "$2"; }

# "CPU_S SWITCHES,CPU_S SWITCHES,..." over JOBS -> "CPU_MS_PER_JOB SWITCHES_PER_JOB" (medians)
per_job() {
  python3 -c "
import statistics, sys
runs = [r.split() for r in sys.argv[1].split(',') if r.strip()]
n = int(sys.argv[2])
print(f'{statistics.median(float(c) for c, _ in runs) / n * 1000:.3f}',
      f'{statistics.median(int(s) for _, s in runs) / n:.2f}')" "$1" "$2"
}

echo
echo "## Two at a time ($JOBS jobs; pueue: $PUEUE_JOBS jobs)"
echo "CPU and context switches: the whole process tree (the jobs' sh included), per job."
printf '| %-9s | %10s | %10s | %14s | %11s | %16s |\n' tool "median s" "jobs/s" "ratio to xargs" "CPU ms/job" "switches per job"
printf '|%s|%s|%s|%s|%s|%s|\n' ----------- ------------ ------------ ---------------- ------------- ------------------
limit_rate=$(rate "$JOBS" "$(echo "${results[xargs]}" | tr ' ' '\n' | grep . | median)")
for tool in $tools; do
  med=$(echo "${results[$tool]}" | tr ' ' '\n' | grep . | median)
  n=$JOBS; [ "$tool" = pueue ] && n=$PUEUE_JOBS
  r=$(rate "$n" "$med")
  cost="- -"; [ -n "${costs[$tool]:-}" ] && cost=$(per_job "${costs[$tool]}" "$n")
  printf '| %-9s | %10s | %10s | %14s | %11s | %16s |\n' "$tool" "$med" "$r" "$(ratio "$r" "$limit_rate")" ${cost}
done
read -r xcpu xcs <<<"$(per_job "${costs[xargs]}" "$JOBS")"
read -r qcpu qcs <<<"$(per_job "${costs[queuectl]}" "$JOBS")"
python3 -c "import sys; a = [float(x) for x in sys.argv[1:]]; print(f'queuectl beyond xargs: {a[2]-a[0]:+.3f} CPU ms per job, {a[3]-a[1]:+.2f} context switches per job')" "$xcpu" "$xcs" "$qcpu" "$qcs"

echo
echo "## Worker count (queuectl --count N against xargs -PN, $JOBS jobs, medians)"
printf '| %-3s | %12s | %15s | %6s | %21s | %26s |\n' N "xargs jobs/s" "queuectl jobs/s" ratio "CPU ms/job xargs, q" "switches/job xargs, q"
printf '|%s|%s|%s|%s|%s|%s|\n' ----- -------------- ----------------- -------- ----------------------- ----------------------------
for n in 1 4; do
  xs=(); qs=(); xc=""; qc=""
  for _ in $(seq "$ROUNDS"); do
    m=$(run_xargs "$n" "$JOBS"); xs+=("${m%% *}"); xc+="${m#* },"
    m=$(run_queuectl "$n" "$JOBS"); qs+=("${m%% *}"); qc+="${m#* },"
  done
  xr=$(rate "$JOBS" "$(printf '%s\n' "${xs[@]}" | median)")
  qr=$(rate "$JOBS" "$(printf '%s\n' "${qs[@]}" | median)")
  read -r xcpu xcs <<<"$(per_job "$xc" "$JOBS")"
  read -r qcpu qcs <<<"$(per_job "$qc" "$JOBS")"
  printf '| %-3s | %12s | %15s | %6s | %21s | %26s |\n' "$n" "$xr" "$qr" "$(ratio "$qr" "$xr")" "$xcpu, $qcpu" "$xcs, $qcs"
done

echo
echo "## enqueue call against a hello-world Rust binary (bench/enqueue.sh, 1 series)"
CALLS=200 SERIES=1 bench/enqueue.sh "$QUEUECTL"
