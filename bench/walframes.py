#!/usr/bin/env python3
"""Where a SQLite worker's commits write: runs `bench --mode noop` under strace,
decodes the header of every WAL frame the run appends (SQLite writes each frame's
24-byte header with its own pwrite64), and attributes each frame's page to the
table or index that owns it (the `dbstat` table of the store the run leaves).

usage: bench/walframes.py BINARY [bench args]
  e.g. bench/walframes.py target/release/queuectl --jobs 20000 --queues 10 --random-priorities

Prints commits, frames (pages written) per commit, and frames per commit for each
b-tree. Needs strace and Python's sqlite3 with dbstat (Debian's has it). Pages
freed and reused during the run are attributed to their owner at the end, so the
split is close, not exact; the totals are exact. strace slows the run down: use
it for counts, never for rates."""
import collections, os, re, shutil, sqlite3, subprocess, sys, tempfile

binary, args = sys.argv[1], sys.argv[2:]
tmp = tempfile.mkdtemp()
db, log = os.path.join(tmp, 'q.db'), os.path.join(tmp, 'strace.log')
subprocess.run(['strace', '-f', '-qq', '-e', 'trace=pwrite64', '-s', '24', '-x', '-o', log,
                binary, 'bench', '--mode', 'noop', '--db', db, '--json', *args],
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
owner = dict((page, name) for name, page in
             sqlite3.connect(db).execute('SELECT name, pageno FROM dbstat'))
header = re.compile(r'pwrite64\(\d+, "((?:\\x[0-9a-f]{2}){24})", 24, \d+\)')
per_tree, commits, frames = collections.Counter(), 0, 0
with open(log) as lines:
    for line in lines:
        m = header.search(line)
        if not m:
            continue
        raw = bytes(int(h, 16) for h in m.group(1).split('\\x')[1:])
        frames += 1
        per_tree[owner.get(int.from_bytes(raw[0:4], 'big'), '?')] += 1
        # A commit frame carries the database size after the commit.
        commits += int.from_bytes(raw[4:8], 'big') != 0
shutil.rmtree(tmp)
print(f'commits {commits}  frames {frames}  frames/commit {frames / max(commits, 1):.1f}')
for name, n in per_tree.most_common():
    print(f'  {name:28s} {n:8d} {n / max(commits, 1):7.1f}/commit')
