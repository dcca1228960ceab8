#!/usr/bin/env python3
"""Scale-out on one PostgreSQL: 1, 2, 4 and 8 `queuectl worker start` processes
against one server, with short `true` jobs (issue #14).

For each process count P, in a fresh schema:
  1. Throughput: JOBS jobs enqueued in bulk, then P processes of `--count W --burst`
     started together; wall time from their start to the last exit. PostgreSQL's CPU
     is read from /proc (every `postgres` process's utime+stime, plus the
     postmaster's reaped children) before and after; claim statements come from
     each process's `stopped` JSON event (`claim_round_trips`, `empty_claims`).
  2. Pickup latency: P idle processes (not `--burst`); LATENCY_JOBS jobs enqueued
     one at a time, GAP_MS apart, each by its own `queuectl enqueue`; latency is
     the job's `started_at - created_at` as the store recorded them. The claim
     statements per job here show what a NOTIFY costs when it wakes every idle
     process.

usage: bench/scale-out.py [--jobs N] [--count W] [--processes 1,2,4,8]
                          [--latency-jobs N] [--gap-ms MS] [--db URL] [--bin PATH]
Must run on the machine that runs the PostgreSQL server (it reads /proc).
Prints a Markdown table per phase; `--json` prints the raw figures instead."""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

TICK = os.sysconf('SC_CLK_TCK')


def postgres_cpu_seconds(args):
    """CPU used so far by the PostgreSQL server at `args.db`: its postmaster and
    live children, plus what the postmaster collected from children that already
    exited. Waits (up to 5 s) until no child is a zombie: an exited, unreaped
    backend shows no CPU time, and its time reaches the postmaster's only when it
    is reaped."""
    if not hasattr(args, 'postmaster'):
        data = sql(args, 'SHOW data_directory')
        with open(os.path.join(data, 'postmaster.pid')) as f:
            args.postmaster = int(f.readline())
    deadline = time.monotonic() + 5
    while True:
        total, zombies = read_server_cpu(args.postmaster)
        if not zombies or time.monotonic() > deadline:
            return total


def proc_stat(pid):
    with open(f'/proc/{pid}/stat') as f:
        stat = f.read()
    return stat[stat.rindex(')') + 2:].split()


def read_server_cpu(postmaster):
    fields = proc_stat(postmaster)
    total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    zombies = 0
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            fields = proc_stat(pid)
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            zombies += fields[0] == 'Z'
            total += int(fields[11]) + int(fields[12])
    return total / TICK, zombies


def sql(args, query):
    out = subprocess.run(['psql', '-At', '-d', args.db.split('?')[0], '-c', query],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f'psql failed: {out.stderr.strip()}')
    return out.stdout.strip()


def wal_lsn(args):
    return sql(args, 'SELECT pg_current_wal_lsn()')


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])}... failed: {out.stderr.strip()[-400:]}")
    return out.stdout


def stopped_events(outputs):
    events = []
    for text in outputs:
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get('event') == 'stopped' and 'claim_round_trips' in event:
                events.append(event)
    return events


def fresh_schema(args, name):
    base = args.db
    sep = '&' if '?' in base else '?'
    db = f"{base}{sep}schema={name}"
    subprocess.run(['psql', '-q', '-d', base.split('?')[0], '-c',
                    f'DROP SCHEMA IF EXISTS {name} CASCADE'], capture_output=True)
    return db


def throughput(args, processes, tmp):
    db = fresh_schema(args, f'scale_out_{processes}')
    jobs_file = os.path.join(tmp, 'jobs.jsonl')
    with open(jobs_file, 'w') as f:
        f.write('{"command":"true"}\n' * args.jobs)
    run([args.bin, '--db', db, 'enqueue', '--file', jobs_file])
    lsn0 = wal_lsn(args)
    cpu0 = postgres_cpu_seconds(args)
    t0 = time.monotonic()
    procs = [subprocess.Popen([args.bin, '--db', db, '--json', 'worker', 'start',
                               '--count', str(args.count), '--burst'],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(processes)]
    outputs = [p.communicate()[0] for p in procs]
    wall = time.monotonic() - t0
    cpu = postgres_cpu_seconds(args) - cpu0
    wal = int(sql(args, f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}')").split('.')[0])
    events = stopped_events(outputs)
    done = sum(e['succeeded'] for e in events)
    claims = sum(e['claim_round_trips'] for e in events)
    empty = sum(e['empty_claims'] for e in events)
    return {'processes': processes, 'workers': processes * args.count, 'jobs': done,
            'seconds': round(wall, 3), 'jobs_per_second': round(done / wall, 1),
            'postgres_cpu_seconds_per_1000_jobs': round(cpu / done * 1000, 3),
            'wal_bytes_per_job': round(wal / done),
            'claim_statements_per_job': round(claims / done, 3),
            'empty_claims_per_job': round(empty / done, 3)}


def wait_for_workers(args, db, want):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = json.loads(run([args.bin, '--db', db, '--json', 'worker', 'list']) or '[]')
        live = [w for w in workers if w.get('state') in ('idle', 'busy')]
        if len(live) >= want:
            return
        time.sleep(0.1)
    sys.exit(f'{want} workers did not register within 30 s')


def latency(args, processes):
    db = fresh_schema(args, f'scale_out_{processes}')
    run([args.bin, '--db', db, 'init'])  # creates the schema before the workers race to
    procs = [subprocess.Popen([args.bin, '--db', db, '--json', 'worker', 'start',
                               '--count', str(args.count)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(processes)]
    wait_for_workers(args, db, processes * args.count)
    connections = int(sql(args, "SELECT count(*) FROM pg_stat_activity "
                                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"))
    for _ in range(args.latency_jobs):
        run([args.bin, '--db', db, 'enqueue', '--', 'true'])
        time.sleep(args.gap_ms / 1000)
    run([args.bin, '--db', db, 'wait', '--timeout', '60s'])
    run([args.bin, '--db', db, 'worker', 'stop'])
    events = stopped_events(p.communicate()[0] for p in procs)
    jobs = json.loads(run([args.bin, '--db', db, '--json', 'list', '--all']))
    lat = sorted(ms(j['started_at']) - ms(j['created_at']) for j in jobs if j['started_at'])
    claims = sum(e['claim_round_trips'] for e in events)
    empty = sum(e['empty_claims'] for e in events)
    return {'processes': processes, 'jobs': len(lat), 'connections': connections,
            'pickup_ms_p50': percentile(lat, 50), 'pickup_ms_p99': percentile(lat, 99),
            'claim_statements_per_job': round(claims / len(lat), 2),
            'empty_claims_per_job': round(empty / len(lat), 2)}


def ms(stamp):
    from datetime import datetime
    return datetime.fromisoformat(stamp.replace('Z', '+00:00')).timestamp() * 1000


def percentile(values, p):
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return round(values[k], 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--jobs', type=int, default=20000)
    ap.add_argument('--count', type=int, default=2, help='workers per process')
    ap.add_argument('--processes', default='1,2,4,8')
    ap.add_argument('--latency-jobs', type=int, default=200)
    ap.add_argument('--gap-ms', type=float, default=20)
    ap.add_argument('--db', default=os.environ.get(
        'QUEUECTL_BENCH_PG', 'postgres://postgres@127.0.0.1:5432/test'))
    ap.add_argument('--bin', default='target/release/queuectl')
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()
    args.bin = os.path.realpath(args.bin)
    counts = [int(p) for p in args.processes.split(',')]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ['QUEUECTL_HOME'] = tmp
        rows = [throughput(args, p, tmp) for p in counts]
        lats = [latency(args, p) for p in counts]
    for p in counts:
        fresh_schema(args, f'scale_out_{p}')
    if args.json:
        print(json.dumps({'throughput': rows, 'latency': lats}, indent=2))
        return
    print(f'## Throughput: {args.jobs} `true` jobs, {args.count} workers per process, '
          f'{os.cpu_count()} cores (server and workers share them)')
    print('| processes | workers | jobs/s | PG CPU-s per 1,000 jobs | WAL bytes per job | claim statements per job | empty claims per job |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['processes']} | {r['workers']} | {r['jobs_per_second']:,.0f} | "
              f"{r['postgres_cpu_seconds_per_1000_jobs']} | {r['wal_bytes_per_job']:,} | "
              f"{r['claim_statements_per_job']} | "
              f"{r['empty_claims_per_job']} |")
    print()
    print(f'## Pickup latency: {args.latency_jobs} jobs, one `queuectl enqueue` every '
          f'{args.gap_ms:g} ms, idle workers')
    print('| processes | connections (all clients) | p50 ms | p99 ms | claim statements per job | empty claims per job |')
    print('|---|---|---|---|---|---|')
    for r in lats:
        print(f"| {r['processes']} | {r['connections']} | {r['pickup_ms_p50']} | {r['pickup_ms_p99']} | "
              f"{r['claim_statements_per_job']} | {r['empty_claims_per_job']} |")


if __name__ == '__main__':
    main()
