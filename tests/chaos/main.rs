//! The chaos suite (issue #15, "the proof, kept in the project"): random workloads
//! run by several `queuectl worker start` processes while a driver SIGKILLs,
//! SIGSTOPs/SIGCONTs, SIGTERMs and restarts them (and on PostgreSQL kills their
//! connections and crashes and restarts a private server); then a checker compares
//! what the jobs' commands logged with what the store says. See RELIABILITY.md.
//!
//! - `QUEUECTL_CHAOS_SECONDS`: how long faults are injected, per store (default 60).
//! - `QUEUECTL_CHAOS_SEED`: the seed of the schedule (default: from the clock). Every
//!   run prints it, and a failure prints the command that replays it: the same jobs
//!   and the same faults in the same order (the timing of a loaded machine differs).

#[path = "../common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
pub mod common;

mod checker;
mod driver;
mod pg;
mod rng;
mod workload;

use std::time::{Duration, Instant};

use common::{Backend, Env, PrivateServer, private_server_available};
use driver::Pool;
use pg::PgFaults;
use rng::Rng;

/// Worker processes, and jobs each runs at once.
const WORKERS: usize = 4;
const SLOTS_PER_WORKER: u32 = 2;
/// How long the queue may take to finish its jobs once the faults stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

struct Config {
    seed: u64,
    seconds: u64,
}

fn config() -> Config {
    let seed = std::env::var("QUEUECTL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.as_nanos() as u64 % 1_000_000_000_000
        });
    let seconds = std::env::var("QUEUECTL_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(60);
    Config { seed, seconds }
}

/// Status counts of jobs not finished yet (pending, running, waiting for a retry);
/// `None` if `status` failed (e.g. the server is restarting).
fn unfinished(env: &Env) -> Option<u64> {
    let out = env.run(&["status", "--json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        ["pending", "processing", "failed"]
            .iter()
            .map(|k| v[*k].as_u64().unwrap_or(0))
            .sum(),
    )
}

fn chaos(mut env: Env, store: &str, worker_db: String, mut pg: Option<PgFaults>) {
    let Config { seed, seconds } = config();
    let replay = format!(
        "QUEUECTL_CHAOS_SEED={seed} QUEUECTL_CHAOS_SECONDS={seconds} \
         cargo test --release --test chaos {store} -- --nocapture"
    );
    eprintln!("chaos {store}: seed {seed}, {seconds} s of faults (replay: {replay})");
    let mut rng = Rng::new(seed);
    env.ensure_store();
    // Retries a second apart keep the run short; 64 KiB kept per attempt keeps the
    // export small although loud jobs print 2 MB.
    env.ok(&["config", "set", "backoff-base", "1"]);
    env.ok(&["config", "set", "output-limit", "64KiB"]);
    let token = format!("{seed}-{store}-{}", std::process::id());
    let log = env.path().join("runs.log");
    let mut numbered = 0;
    let mut batch = |rng: &mut Rng, n: usize| {
        let (plans, lines): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| {
                numbered += 1;
                workload::next_job(rng, numbered, &log, &token)
            })
            .unzip();
        (plans, lines)
    };
    let mut pool = Pool::new(WORKERS, SLOTS_PER_WORKER, worker_db, env.path());
    // Jobs are enqueued by a thread of their own: `enqueue` may wait for a worker
    // that is stopped inside its write transaction (SQLite), and the loop that
    // resumes stopped workers must never wait for it.
    let (queue, batches) = std::sync::mpsc::channel::<(Vec<workload::Plan>, Vec<String>)>();
    let (plans, enqueue_errors) = std::thread::scope(|scope| {
        let env = &env;
        let enqueuer = scope.spawn(move || {
            let mut plans = Vec::new();
            let mut errors = Vec::new();
            for (batch_plans, lines) in batches {
                match workload::enqueue(env, &lines) {
                    Ok(()) => plans.extend(batch_plans),
                    Err(e) => errors.push(format!("enqueue failed: {e}")),
                }
            }
            (plans, errors)
        });
        let _ = queue.send(batch(&mut rng, 30));
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut next_fault = start + Duration::from_millis(rng.range(200, 900));
        let mut next_batch = start + Duration::from_millis(rng.range(1000, 3000));
        while Instant::now() < end {
            pool.tend(env, &mut rng);
            let now = Instant::now();
            if now >= next_batch {
                let n = rng.range(3, 13) as usize;
                let _ = queue.send(batch(&mut rng, n));
                next_batch = now + Duration::from_millis(rng.range(1000, 3000));
            }
            if now >= next_fault {
                pool.inject(&mut rng, pg.as_mut());
                next_fault = Instant::now() + Duration::from_millis(rng.range(200, 900));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(queue);
        // Keep tending (resuming stopped workers) until the last batch is in.
        while !enqueuer.is_finished() {
            pool.tend(env, &mut rng);
            std::thread::sleep(Duration::from_millis(20));
        }
        enqueuer.join().expect("the enqueuer thread")
    });
    let mut problems = enqueue_errors;

    // Faults stop: every job must now finish.
    pool.calm(&env, &mut rng);
    let drain_start = Instant::now();
    let mut left = unfinished(&env);
    while left != Some(0) && drain_start.elapsed() < DRAIN_LIMIT {
        std::thread::sleep(Duration::from_millis(250));
        pool.tend(&env, &mut rng);
        left = unfinished(&env);
    }
    let drained = drain_start.elapsed();
    pool.stop_all();
    let export = env.ok(&["export"]);
    let leftovers = checker::leftover_processes(&token);
    let faults = std::mem::take(&mut pool.faults);
    let (summary, found) = checker::check(&plans, &export, &log, &faults);
    problems.extend(found);
    problems.extend(faults.anomalies.iter().cloned());
    if !leftovers.is_empty() {
        problems.push(format!(
            "processes of attempts outlived their run: {}",
            leftovers.join("; ")
        ));
    }

    eprintln!(
        "chaos {store}: seed {seed}: {} jobs {:?}; {} completed, {} dead ({} after {} interruptions); \
         {} runs logged, {} attempts, {} interrupted ({} by SIGKILL, {} forced stops); \
         faults {:?}; {} worker processes started; recovery after SIGKILL p50 {:.0} ms, \
         p90 {:.0} ms, max {:.0} ms; drained in {:.1} s; {} attempt rows out of order{}; {} early timeouts{}; {} problems",
        summary.jobs,
        summary.by_kind,
        summary.completed,
        summary.dead,
        summary.dead_by_interruptions,
        queuectl::job::MAX_INTERRUPTIONS,
        summary.runs,
        summary.attempts,
        summary.interrupted,
        summary.interrupted_by_sigkill,
        summary.forced_stops,
        faults.counts,
        faults.workers_started,
        summary.percentile_ms(0.5),
        summary.percentile_ms(0.9),
        summary.percentile_ms(1.0),
        drained.as_secs_f64(),
        summary.row_inversions.len(),
        summary
            .row_inversions
            .iter()
            .take(5)
            .map(|r| format!(" [{r}]"))
            .collect::<String>(),
        summary.early_timeouts.len(),
        summary
            .early_timeouts
            .iter()
            .take(5)
            .map(|r| format!(" [{r}]"))
            .collect::<String>(),
        problems.len(),
    );
    let kept = if problems.is_empty() {
        String::new()
    } else {
        keep_evidence(&env, store, seed, &export)
    };
    assert!(
        problems.is_empty(),
        "chaos {store} failed with seed {seed} ({} problems; replay: {replay}){kept}:\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Copies the run log, the export and the workers' logs out of the test's temporary
/// directory (removed when the test ends), and says where.
fn keep_evidence(env: &Env, store: &str, seed: u64, export: &str) -> String {
    let dir = std::env::temp_dir().join(format!("queuectl-chaos-{store}-{seed}"));
    let copied = std::fs::create_dir_all(dir.join("workers")).is_ok()
        && std::fs::write(dir.join("export.jsonl"), export).is_ok()
        && std::fs::copy(env.path().join("runs.log"), dir.join("runs.log")).is_ok()
        && std::fs::copy(env.path().join("faults.log"), dir.join("faults.log")).is_ok();
    for entry in std::fs::read_dir(env.path().join("workers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::copy(entry.path(), dir.join("workers").join(entry.file_name()));
    }
    if copied {
        format!(
            "; run log, export and worker logs kept in {}",
            dir.display()
        )
    } else {
        String::new()
    }
}

#[test]
fn sqlite() {
    let env = Env::sqlite();
    let db = env.db.clone();
    chaos(env, "sqlite", db, None);
}

/// On a private server (restarted now and then) when `initdb` and `pg_ctl` are
/// found, else on `QUEUECTL_TEST_POSTGRES_URL`'s server (connections killed only).
#[test]
fn postgres() {
    let Some(mut env) = Env::new(Backend::Postgres) else {
        return;
    };
    let server = private_server_available().then(PrivateServer::start);
    if let Some(server) = &server {
        env.db = format!("{}?schema=chaos", server.url());
    }
    let app = format!("queuectl_chaos_{}", std::process::id());
    let worker_db = format!("{}&application_name={app}", env.db);
    let admin = env.db.split('?').next().unwrap_or_default().to_owned();
    let faults = PgFaults::new(admin, app, server);
    chaos(env, "postgres", worker_db, Some(faults));
}
