#!/usr/bin/env bash
# The single `enqueue` call against a hello-world Rust binary's start: alternating
# calls of hello world and `queuectl enqueue -- true` (each queuectl binary on its own
# fresh SQLite store in a temporary directory), medians per series and their ratio.
# The target (README, BENCHMARKS.md): the median `enqueue` at most 2.5x hello world.
#
# Usage: bench/enqueue.sh [QUEUECTL...]   (default: target/release/queuectl)
#        Several binaries are measured in the same alternation, e.g. two builds.
# Env:   CALLS (calls of each binary per series, default 300), SERIES (default 3).
# The machine is shared: compare ratios from the same series, and look at the spread
# across series rather than at one number.
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-300}
SERIES=${SERIES:-3}
[ $# -gt 0 ] || set -- target/release/queuectl
for bin in "$@"; do
  [ -x "$bin" ] || { echo "not an executable: $bin (cargo build --release first)" >&2; exit 2; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Built like `cargo new` + `cargo build --release`: opt-level 3, no debug info.
printf 'fn main() {\n    println!("Hello, world!");\n}\n' > "$WORK/hello.rs"
rustc -C opt-level=3 -o "$WORK/hello" "$WORK/hello.rs"

python3 - "$WORK" "$CALLS" "$SERIES" "$@" <<'PY'
import os, statistics, subprocess, sys, time

work, calls, series, bins = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
hello = os.path.join(work, "hello")

def once(argv):
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1000

print(f"machine: {os.cpu_count()} cores; {calls} calls of each binary per series, alternating")
ratios = {b: [] for b in bins}
for s in range(1, series + 1):
    commands = {"hello world": [hello]}
    for i, b in enumerate(bins):
        # A fresh store per binary and series, created before timing starts.
        db = os.path.join(work, f"s{s}-b{i}.db")
        # `init` (reading commands create no store since it came; older builds
        # have no `init`, and their `status` creates the store).
        made = subprocess.run([b, "--db", db, "init"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        if made.returncode != 0:
            subprocess.run([b, "--db", db, "status"], stdout=subprocess.DEVNULL, check=True)
        commands[b] = [b, "--db", db, "enqueue", "--", "true"]
    for argv in commands.values():  # warm the page cache
        for _ in range(5):
            once(argv)
    times = {name: [] for name in commands}
    for _ in range(calls):
        for name, argv in commands.items():
            times[name].append(once(argv))
    base = statistics.median(times["hello world"])
    print(f"series {s}: hello world {base:.3f} ms", end="")
    for b in bins:
        median = statistics.median(times[b])
        ratios[b].append(median / base)
        print(f" | {b} {median:.3f} ms = {median / base:.2f}x", end="")
    print()
for b in bins:
    r = ratios[b]
    print(f"{b}: {min(r):.2f}-{max(r):.2f}x hello world (median {statistics.median(r):.2f}x over {len(r)} series)")
PY
