#!/usr/bin/env python3
"""Two builds of queuectl, side by side: `bench --mode MODE` alternating A and B
(ABBA order, so neither always runs first), one fresh store per run, then each
build's median throughput and the ratio B/A.

usage: bench/alternate.py sqlite|pg MODE ROUNDS BIN_A BIN_B [-- bench args]
  e.g. bench/alternate.py sqlite noop 8 /tmp/before/queuectl target/release/queuectl -- --jobs 20000

PostgreSQL runs use the schemas bench_a and bench_b of QUEUECTL_BENCH_PG (default
postgres://postgres@127.0.0.1:5432/test); drop them between builds of different
schema versions."""
import json, subprocess, sys, tempfile, statistics, os, shutil
store, mode, rounds, a, b = sys.argv[1:6]
extra = sys.argv[7:] if len(sys.argv) > 6 and sys.argv[6] == '--' else []
def tput(res):
    for k in ('throughput_jobs_per_second', 'throughput (jobs/s)'):
        if k in res: return res[k]
    raise KeyError(res)
runs = {a: [], b: []}
for i in range(int(rounds)):
    for n, binary in enumerate((a, b) if i % 2 == 0 else (b, a)):
        if store == 'pg':
            base = os.environ.get("QUEUECTL_BENCH_PG", "postgres://postgres@127.0.0.1:5432/test")
            db = f"{base}?schema=bench_{'a' if binary == a else 'b'}"
            tmp = None
        else:
            tmp = tempfile.mkdtemp(); db = os.path.join(tmp, 'q.db')
        out = subprocess.run([binary, 'bench', '--mode', mode, '--db', db, '--json', *extra],
                             capture_output=True, text=True)
        if tmp: shutil.rmtree(tmp)
        try:
            t = tput(json.loads(out.stdout)['results'])
        except Exception as e:
            print('fail', binary, out.stderr[-300:]); continue
        runs[binary].append(t)
        print(f"{'A' if binary == a else 'B'} {t:10.1f}", flush=True)
ma, mb = statistics.median(runs[a]), statistics.median(runs[b])
print(f"A median {ma:.1f}  B median {mb:.1f}  B/A {mb/ma:.3f}  (n={len(runs[a])},{len(runs[b])})")
