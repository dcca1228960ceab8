#!/usr/bin/env python3
"""Two builds of queuectl, side by side: `bench --mode MODE` alternating A and B
(ABBA order, so neither always runs first), one fresh store per run, then each
build's median throughput and the ratio B/A.

usage: bench/alternate.py sqlite|pg MODE ROUNDS A B [-- bench args]
  e.g. bench/alternate.py sqlite noop 8 /tmp/before/queuectl target/release/queuectl -- --jobs 20000

A and B are each a binary, optionally with bench arguments of that side only (and
VAR=value words before the binary for its environment), as one shell-quoted word:
the same binary with two job mixes is
  bench/alternate.py sqlite noop 8 target/release/queuectl \\
      'target/release/queuectl --queues 10 --random-priorities' -- --jobs 30000

PostgreSQL runs use the schemas bench_a and bench_b of QUEUECTL_BENCH_PG (default
postgres://postgres@127.0.0.1:5432/test); drop them between builds of different
schema versions."""
import json, subprocess, sys, tempfile, statistics, os, shlex, shutil
store, mode, rounds, a, b = sys.argv[1:6]
extra = sys.argv[7:] if len(sys.argv) > 6 and sys.argv[6] == '--' else []
def side(spec):
    words = shlex.split(spec)
    env = dict(os.environ)
    while words and '=' in words[0] and not words[0].startswith(('/', '.')):
        k, v = words.pop(0).split('=', 1); env[k] = v
    return words[0], words[1:], env
sides = {'A': side(a), 'B': side(b)}
def tput(res):
    for k in ('throughput_jobs_per_second', 'throughput (jobs/s)'):
        if k in res: return res[k]
    raise KeyError(res)
runs = {'A': [], 'B': []}
for i in range(int(rounds)):
    for name in ('A', 'B') if i % 2 == 0 else ('B', 'A'):
        binary, own, env = sides[name]
        if store == 'pg':
            base = os.environ.get("QUEUECTL_BENCH_PG", "postgres://postgres@127.0.0.1:5432/test")
            db = f"{base}?schema=bench_{name.lower()}"
            tmp = None
        else:
            tmp = tempfile.mkdtemp(); db = os.path.join(tmp, 'q.db')
        out = subprocess.run([binary, 'bench', '--mode', mode, '--db', db, '--json', *extra, *own],
                             capture_output=True, text=True, env=env)
        if tmp: shutil.rmtree(tmp)
        try:
            t = tput(json.loads(out.stdout)['results'])
        except Exception as e:
            print('fail', name, out.stderr[-300:]); continue
        runs[name].append(t)
        print(f"{name} {t:10.1f}", flush=True)
ma, mb = statistics.median(runs['A']), statistics.median(runs['B'])
print(f"A median {ma:.1f}  B median {mb:.1f}  B/A {mb/ma:.3f}  (n={len(runs['A'])},{len(runs['B'])})")
