#!/usr/bin/env python3
"""The share of wall time a busy SQLite worker holds the store's write lock (issue
#15, defect 1: a worker SIGSTOPped while it holds it freezes the queue).

Runs `queuectl worker start --count W --burst` on JOBS `sh -c true` jobs under
`strace -f --seccomp-bpf -ttt -e trace=fcntl` (only `fcntl` stops the process), and adds up the time between each take of the WAL
write lock (an F_WRLCK on byte 120 of the `-shm` file, SQLite's WAL_WRITE_LOCK) and
its release. strace slows every system call, and the lock is held across several
(pwrite, fdatasync), so the share it reports is an upper bound.

usage: bench/lock-share.py [--jobs N] [--count W] [--bin PATH]"""
import argparse, os, re, subprocess, tempfile

ap = argparse.ArgumentParser()
ap.add_argument('--jobs', type=int, default=2000)
ap.add_argument('--count', type=int, default=2)
ap.add_argument('--bin', default='target/release/queuectl')
ap.add_argument('--command', default='true')
args = ap.parse_args()
binary = os.path.realpath(args.bin)
with tempfile.TemporaryDirectory() as tmp:
    db = os.path.join(tmp, 'q.db')
    jobs = os.path.join(tmp, 'jobs.jsonl')
    with open(jobs, 'w') as f:
        f.write(('{"command":%s}\n' % __import__('json').dumps(args.command)) * args.jobs)
    subprocess.run([binary, '--db', db, 'enqueue', '--file', jobs], check=True,
                   capture_output=True)
    trace = os.path.join(tmp, 'trace')
    subprocess.run(['strace', '-f', '--seccomp-bpf', '-ttt', '-e', 'trace=fcntl', '-o', trace, binary,
                    '--db', db, 'worker', 'start', '--count', str(args.count), '--burst'],
                   check=True, capture_output=True)
    lock = re.compile(r'^(\d+)\s+([\d.]+) fcntl\(\d+, F_SETLK, \{l_type=(F_WRLCK|F_UNLCK), '
                      r'l_whence=SEEK_SET, l_start=120, l_len=1\}\) = 0')
    held, taken, first, last, takes = 0.0, {}, None, None, 0
    with open(trace) as f:
        for line in f:
            t = re.match(r'^\d+\s+([\d.]+)', line)
            if t:
                stamp = float(t.group(1))
                first = stamp if first is None else first
                last = stamp
            m = lock.match(line)
            if not m:
                continue
            pid, stamp, kind = m.group(1), float(m.group(2)), m.group(3)
            if kind == 'F_WRLCK':
                taken[pid] = stamp
                takes += 1
            elif pid in taken:
                held += stamp - taken.pop(pid)
    wall = last - first
    print(f'{args.jobs} jobs, {args.count} workers, command {args.command!r}: '
          f'{takes} write transactions, lock held {held:.3f} s of {wall:.3f} s '
          f'= {100 * held / wall:.1f}% (under strace; an upper bound), '
          f'{1000 * held / max(takes, 1):.3f} ms per transaction')
