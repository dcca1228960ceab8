#!/usr/bin/env python3
"""Runs one shell command and prints `WALL_S CPU_S CONTEXT_SWITCHES` for it and
everything it waited for (RUSAGE_CHILDREN: the tool, its threads and every job it
ran), so a tool's whole cost per job can be set beside `xargs`'s (bench/compare.sh).

usage: bench/measure.py 'SHELL COMMAND'"""
import resource, subprocess, sys, time

before = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
code = subprocess.run(['sh', '-c', sys.argv[1]]).returncode
wall = time.monotonic() - t0
after = resource.getrusage(resource.RUSAGE_CHILDREN)
if code != 0:
    sys.exit(f'measure.py: command exited {code}: {sys.argv[1]}')
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
switches = (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
print(f'{wall:.3f} {cpu:.3f} {switches}')
